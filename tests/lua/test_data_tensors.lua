-- Batches to model inputs: stack_float32 packs numeric and tensor columns into one float32
-- [rows, features] tensor, as training and serving read them.
local t = require("harness")
local data = require("luray.data")
local C = data.C
luray.init{num_cpus = 1, object_store_memory = 64 * 1024 * 1024}

t.test("scalar columns of every numeric type stack in the order named", function()
    local b = C.block({"a", "b", "c"}, {C.column("int64", {1, 2, 3}),
        C.column("float64", {0.5, 1.5, 2.5}), C.column("bool", {true, false, true})})
    local x = C.stack_float32(b, {"c", "a", "b"})
    t.eq(x:dtype(), "float32")
    t.eq(x:shape(), {3, 3})
    t.eq(x:totable(), {{1.0, 1.0, 0.5}, {0.0, 2.0, 1.5}, {1.0, 3.0, 2.5}})
end)

t.test("a tensor column adds its row's values; a batch works like a block", function()
    local v = C.column_from_tensor(luray.tensor({{1, 2}, {3, 4}, {5, 6}}, {dtype = "float32"}))
    local batch = {v = v, a = C.column("int64", {7, 8, 9})}
    local x = C.stack_float32(batch, {"v", "a"})
    t.eq(x:totable(), {{1.0, 2.0, 7.0}, {3.0, 4.0, 8.0}, {5.0, 6.0, 9.0}})
    -- Batches from a dataset, as a training loop sees them.
    local ds = data.from_items({{x = 1.0, y = 2, label = 0}, {x = 3.0, y = 4, label = 1}})
    for batch2 in ds:iter_batches{batch_size = 2} do
        t.eq(C.stack_float32(batch2, {"x", "y"}):totable(), {{1.0, 2.0}, {3.0, 4.0}})
    end
end)

t.test("strings, unknown names and uneven columns are refused by name", function()
    local b = C.block({"s", "n"}, {C.column("string", {"a", "b"}), C.column("int64", {1, 2})})
    t.raises(function() C.stack_float32(b, {"s"}) end, "column 's' is a string")
    t.raises(function() C.stack_float32(b, {"zz"}) end, "no column 'zz'")
    t.raises(function() C.stack_float32({n = C.column("int64", {1}), m = C.column("int64", {1, 2})},
        {"n", "m"}) end, "column 'm' has 2 rows")
    t.raises(function() C.stack_float32(b, {}) end, "at least one column")
end)

t.test("an actor holding every CPU still reads its split shard (no task needed)", function()
    local shards = data.range(1000):split(2)
    local Reader = luray.actor({num_cpus = 1}, {
        read = function(self, shard)
            local n, sum = 0, 0
            for b in shard:iter_batches{batch_size = 100} do
                n = n + #b
                sum = sum + b.id:sum()
            end
            return {n, sum, shard:schema().names[1]}
        end,
    })
    local r = Reader:remote()
    local got = luray.get(r.read:remote(shards[2]), {timeout = 30})
    t.eq(got, {500, (500 + 999) * 500 // 2, "id"})
    luray.kill(r)
end)

t.done()
