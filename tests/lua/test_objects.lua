-- Objects: put/get of every value kind, tensors through shared memory, reference counting.
local t = require("harness")
luray.init{num_cpus = 2, object_store_memory = 512 * 1024 * 1024}

t.test("put and get round-trip values", function()
    local cyc = {name = "cycle"}
    cyc.self = cyc
    local shared = {1, 2}
    local v = {
        i = 3, f = 3.0, s = "bin\0ary", b = false, nested = {a = {b = {c = "deep"}}},
        cyc = cyc, s1 = shared, s2 = shared, [7] = "seven", [2.5] = "key",
    }
    local got = luray.get(luray.put(v))
    t.eq(math.type(got.i), "integer")
    t.eq(math.type(got.f), "float")
    t.eq(got.s, "bin\0ary")
    t.eq(got.b, false)
    t.eq(got.nested.a.b.c, "deep")
    t.truthy(got.cyc.self == got.cyc)
    t.truthy(got.s1 == got.s2)
    t.eq(got[7], "seven")
    t.eq(got[2.5], "key")
    t.eq(luray.get(luray.put(nil)), nil)
end)

t.test("every get returns a fresh value: changing one does not change the object", function()
    local r = luray.put({1, {2}})
    local a = luray.get(r)
    a[1] = 99
    a[2][1] = 98
    t.eq(luray.get(r), {1, {2}})
    local f = luray.remote(function() return {5} end)
    local rr = f:remote()
    local b = luray.get(rr)
    b[1] = 0
    t.eq(luray.get(rr), {5})
    t.eq(luray.get({r, rr}), {{1, {2}}, {5}})
end)

t.test("refs are equal by id and print their hex", function()
    local r = luray.put(1)
    local copy = luray.get(luray.put({r}))[1]
    t.truthy(copy == r)
    t.eq(copy:hex(), r:hex())
end)

t.test("a random nested value survives put/get and a task", function()
    math.randomseed(42)
    local function gen(depth)
        local k = math.random(1, depth > 3 and 5 or 7)
        if k == 1 then return math.random(-1000000, 1000000)
        elseif k == 2 then return math.random() * 1e6
        elseif k == 3 then
            local n = math.random(0, 20)
            local cs = {}
            for i = 1, n do cs[i] = string.char(math.random(0, 255)) end
            return table.concat(cs)
        elseif k == 4 then return math.random() < 0.5
        elseif k == 5 then return math.mininteger
        else
            local tbl = {}
            for i = 1, math.random(0, 6) do tbl[i] = gen(depth + 1) end
            for _ = 1, math.random(0, 4) do tbl["k" .. math.random(1, 100)] = gen(depth + 1) end
            return tbl
        end
    end
    local echo = luray.remote(function(x) return x end)
    for _ = 1, 50 do
        local v = gen(0)
        t.eq(luray.get(luray.put(v)), v)
        t.eq(luray.get(echo:remote(v)), v)
    end
end)

t.test("tensors: create, read, travel as shared-memory views", function()
    local a = luray.tensor({{1, 2, 3}, {4, 5, 6}})
    t.eq(a:shape(), {2, 3})
    t.eq(a:dtype(), "float32")
    t.eq(#a, 2)
    t.eq(a:get(2, 3), 6.0)
    a:set(1, 1, 10)
    t.eq(a:totable(), {{10.0, 2.0, 3.0}, {4.0, 5.0, 6.0}})
    local big = luray.zeros({1000, 1000}, "float64")
    big:set(1000, 1000, 7)
    local got = luray.get(luray.put(big))
    t.eq(got:shape(), {1000, 1000})
    t.eq(got:get(1000, 1000), 7.0)
    t.raises(function() got:set(1, 1, 1) end, "read%-only")
    local sum = luray.remote(function(x) return x:get(1000, 1000) + #x end)
    t.eq(luray.get(sum:remote(luray.put(big))), 1007.0)
    local ints = luray.tensor({1, 2, 3}, {dtype = "int64"})
    t.eq(math.type(ints:get(1)), "integer")
end)

t.test("large values are written once and read in place", function()
    local s = string.rep("x", 5 * 1024 * 1024)
    local r = luray.put(s)
    t.eq(#luray.get(r), #s)
    local len = luray.remote(function(x) return #x end)
    t.eq(luray.get(len:remote(r)), #s)
    local make = luray.remote(function(n) return string.rep("y", n) end)
    t.eq(#luray.get(make:remote(3 * 1024 * 1024)), 3 * 1024 * 1024)
end)

t.test("large arguments travel through the store and arrive as views", function()
    local big = luray.zeros({2 * 1024 * 1024}, "float64") -- 16 MB
    big:set(7, 3.5)
    local probe = luray.remote(function(x, s, small)
        return x:get(7), x:is_readonly(), #s, small
    end):options{num_returns = 4}
    local a, b, c, d = probe:remote(big, string.rep("z", 3 * 1024 * 1024), {k = 1})
    t.eq(luray.get(a), 3.5)
    t.eq(luray.get(b), true)
    t.eq(luray.get(c), 3 * 1024 * 1024)
    t.eq(luray.get(d), {k = 1})
    -- the arguments' object is freed once the task is done
    collectgarbage()
    luray.sleep(0.1)
    t.truthy(luray._info().object_store.used < 8 * 1024 * 1024, "store still holds the arguments")
end)

t.test("memory comes back: 2 GB through a 512 MB store", function()
    for i = 1, 20 do
        local tt = luray.zeros({100 * 1024 * 1024 // 8}, "int64")
        local r = luray.put(tt)
        t.eq(#luray.get(r), 100 * 1024 * 1024 // 8)
        r = nil
        tt = nil
        if i % 3 == 0 then collectgarbage() end
    end
    collectgarbage()
    luray.sleep(0.1)
    local info = luray._info()
    t.truthy(info.object_store.used < 512 * 1024 * 1024)
end)

t.test("objects spill to disk when the store is full and come back", function()
    local refs = {}
    for i = 1, 7 do
        local tt = luray.zeros({100 * 1024 * 1024 // 8}, "int64")
        tt:set(1, i)
        refs[i] = luray.put(tt)
    end
    collectgarbage()
    local info = luray._info()
    t.truthy(info.object_store.spilled_objects > 0, "expected spilled objects")
    for i = 1, 7 do
        local v = luray.get(refs[i])
        t.eq(v:get(1), i)
        v = nil
        collectgarbage()
    end
end)

t.test("a dropped ref's object is freed", function()
    local before = luray._info().objects
    local refs = {}
    for i = 1, 100 do refs[i] = luray.put(i) end
    t.truthy(luray._info().objects >= before + 100)
    refs = nil
    collectgarbage()
    collectgarbage()
    luray.get(luray.put(0))
    luray.sleep(0.05)
    t.truthy(luray._info().objects < before + 10)
end)

t.test("ref:release() frees the object at once, and a released ref says so", function()
    local before = luray._info().objects
    local refs = {}
    for i = 1, 100 do refs[i] = luray.put(luray.zeros({1000}, "float64")) end
    t.truthy(luray._info().objects >= before + 100)
    for i = 1, 100 do refs[i]:release() end
    refs[1]:release() -- a second release is a no-op
    luray.get(luray.put(0))
    luray.sleep(0.05)
    t.truthy(luray._info().objects < before + 10) -- no collectgarbage: release alone freed them
    t.raises(function() luray.get(refs[1]) end, "released")
    t.raises(function() luray.get({refs[2]}) end, "released")
    t.raises(function() luray.put({refs[3]}) end, "")
end)

t.test("core.encode/decode keep a function with its upvalues, and refuse other bytes", function()
    local core = require("luray.core")
    local k = 5
    local f = core.decode(core.encode(function(x) return x + k end))
    t.eq(f(1), 6)
    t.raises(function() core.decode("not a blob") end, "not a luray value blob")
end)

t.done()
