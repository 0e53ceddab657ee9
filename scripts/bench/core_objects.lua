-- Bench group "objects": Ray's object-store microbenchmarks (BENCH.md Core): small put/get calls
-- and the put and get of an 800 MB int64 tensor.
local luray = require("luray")
local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local B = dofile(dir .. "/lib/bench.lua")

B.rate("single_client_put_calls", "puts/s", B.n(10000), function()
    for _ = 1, B.n(10000) do luray.put(0) end
end)

local small = luray.put(0)
B.rate("single_client_get_calls", "gets/s", B.n(10000), function()
    for _ = 1, B.n(10000) do luray.get(small) end
end)

-- 100M int64 = 0.8 GB (decimal), as in BENCH.md; the scale shrinks the tensor too.
-- One write per 4 KiB page makes the source real memory: an untouched zeros tensor reads the
-- kernel's shared zero page, which would make the copy look faster than memcpy_gigabytes.
-- 7 timed runs: the first puts into a fresh store pay its page faults (see the report).
local elems = B.n(100000000)
local gb = elems * 8 / 1e9
local big = luray.zeros({ elems }, "int64")
for i = 1, elems, 512 do big:set(i, 1) end
B.rate("single_client_put_gigabytes", "GB/s", gb, function()
    luray.put(big) -- the ref is dropped here and freed by the collection before the next run
end, { bytes = elems * 8, source = "pages touched" }, 7)
big = nil
collectgarbage()

-- get returns a zero-copy view of the stored tensor; several gets per run so a run is measurable.
local stored = luray.put(luray.zeros({ elems }, "int64"))
collectgarbage()
local gets = 10
B.rate("single_client_get_gigabytes", "GB/s", gb * gets, function()
    for _ = 1, gets do
        local t = luray.get(stored)
        assert(#t == elems)
    end
end, { bytes = elems * 8, gets_per_run = gets })

B.finish()
