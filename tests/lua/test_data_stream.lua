-- Streaming: a CSV several times larger than the object store goes through read -> filter ->
-- write without failing, because only a window of blocks is ever in flight.
local t = require("harness")
local data = require("luray.data")
local h = require("data_helpers")
local STORE = 96 * 1024 * 1024
luray.init{num_cpus = 2, object_store_memory = STORE}

local dir = h.mkdtemp("data_stream")

t.test("a CSV three times the store's size streams through it", function()
    local lines = {}
    for i = 1, 50000 do
        lines[i] = string.format("%d,%.6f,cat_%02d,%s", i, (i * 7919 % 10007) / 10007, i % 20,
            string.rep("p", 20))
    end
    local chunk = table.concat(lines, "\n") .. "\n"
    local f = assert(io.open(dir .. "/big.csv", "wb"))
    f:write("id,x,cat,pad\n")
    local copies = math.ceil(3 * STORE / #chunk)
    for _ = 1, copies do f:write(chunk) end
    f:close()
    local kept_per_copy = 0
    for i = 1, 50000 do
        if (i * 7919 % 10007) / 10007 > 0.5 then kept_per_copy = kept_per_copy + 1 end
    end
    local ds = data.read_csv(dir .. "/big.csv", {block_size = 8 * 1024 * 1024})
        :map_batches(function(b) return b:select(b.x > 0.5) end)
    local files = ds:write_csv(dir .. "/out")
    t.truthy(#files > 10, "one file per block: " .. #files)
    local back = data.read_csv(dir .. "/out")
    t.eq(back:count(), kept_per_copy * copies)
    -- Blocks that come back to a slow consumer on the driver pass through the store too: tasks
    -- run ahead of it only as far as the window lets them.
    local n, peak = 0, 0
    for b in ds:iter_batches{batch_size = 10000} do
        n = n + #b
        luray.sleep(0.005)
        peak = math.max(peak, luray._info().object_store.used)
    end
    t.truthy(peak < STORE * 0.6, "the store held " .. peak .. " bytes at most")
    t.eq(n, kept_per_copy * copies)
    -- Only a window of blocks was ever in the store: nothing had to spill to disk.
    t.eq(luray._info().object_store.spilled_bytes, 0)
    local stages = ds:stats()
    t.truthy(stages:find("ReadCSV") and stages:find("MapBatches"), stages)
end)

h.rmtree(dir)
t.done()
