-- End-to-end test of the example plugin through a real cluster: run with
--   LURAY_PLUGIN_PATH=build/lib/luray/plugins build/bin/luray run plugins/example/test_example.lua
-- It prints TAP lines: the checks raise on the first failure.
local t = require("harness")

t.test("the example plugin loads, and its types travel to tasks and back", function()
local luray = require("luray")
local example = require("luray.example")

-- The module itself.
assert(example.add(2, 3) == 5 and math.type(example.add(2, 3)) == "integer")
assert(example.version() == "1.0.0")
local p = example.point(3, 4)
assert(tostring(p) == "Point(3, 4)" and p:norm() == 5)

-- A Point travels to a task as an argument and back as its result (header bytes only).
local scale = luray.remote(function(q, k)
    return example.point(q:x() * k, q:y() * k)
end)
local scaled = luray.get(scale:remote(p, 2))
assert(tostring(scaled) == "Point(6, 8)", tostring(scaled))

-- A Blob travels as one out-of-band buffer; on this node it comes back as a view of the store.
local bytes = string.rep("luray", 100000)
local blob = example.blob(bytes)
local got = luray.get(luray.put(blob))
assert(#got == #bytes and got:tostring() == bytes)
local count = luray.remote(function(b, byte)
    local n = 0
    for i = 1, #b do
        if b:byte(i) == byte then n = n + 1 end
    end
    return n
end)
assert(luray.get(count:remote(blob, string.byte("l"))) == 100000)

print("example plugin: ok (blob view: " .. tostring(got:is_view()) .. ")")

end)

t.done()
