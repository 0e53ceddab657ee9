-- Data: sources, row and batch transforms and consumers, each checked against the same computation
-- done in plain Lua on the same (seeded) input, over datasets of several blocks.
local t = require("harness")
luray.init{num_cpus = 2, object_store_memory = 256 * 1024 * 1024}
local data = require("luray.data")
local h = require("data_helpers")
local ids, multiset, lines_of = h.ids, h.multiset, h.lines_of

-- A private folder for the files this test writes; removed at the end.
local tmp = h.mkdtemp("data_basic")

-- Seeded rows of every scalar type: k int64, x float64, s string, b bool.
local function gen_rows(n, seed)
    math.randomseed(seed)
    local rows = {}
    for i = 1, n do
        local s = h.rand_word(math.random(0, 8))
        rows[i] = {k = math.random(-1000, 1000), x = math.random() * 100 - 50, s = s,
            b = math.random() < 0.5}
    end
    return rows
end

local items = gen_rows(1000, 11)

-- ------------------------------------------------------------------ sources

t.test("range(n): one int64 column id 0..n-1, in order, over several blocks", function()
    local ds = data.range(10000)
    t.eq(ds:count(), 10000)
    local rows = ds:take_all()
    t.eq(#rows, 10000)
    t.eq(rows, ids(10000))
    t.eq(math.type(rows[9999].id), "integer")
    local blocks = 0
    for b in ds:iter_batches{batch_size = false} do
        blocks = blocks + 1
        t.truthy(#b.id > 0)
    end
    t.truthy(blocks >= 2, "range(10000) should span several blocks, got " .. blocks)
    t.eq(data.range(0):count(), 0)
    t.eq(data.range(0):take_all(), {})
    t.eq(data.range(1):take_all(), {{id = 0}})
end)

t.test("from_items keeps the rows, their order and their types", function()
    local ds = data.from_items(items)
    t.eq(ds:count(), #items)
    t.eq(ds:take_all(), items)
    local s = ds:schema()
    t.eq(s.k, "int64")
    t.eq(s.x, "float64")
    t.eq(s.s, "string")
    t.eq(s.b, "bool")
    -- Plain values become rows {item = v}.
    t.eq(data.from_items({5, 6, 7}):take_all(), {{item = 5}, {item = 6}, {item = 7}})
    t.eq(data.from_items({"a", "b"}):take_all(), {{item = "a"}, {item = "b"}})
end)

t.test("from_items: a column mixing integers and floats is float64 in every row", function()
    local list = {}
    for i = 1, 10 do list[i] = {v = i} end
    list[9] = {v = 8.5}
    local rows = data.from_items(list):take_all()
    t.eq(#rows, 10)
    for i, r in ipairs(rows) do
        t.eq(math.type(r.v), "float", "row " .. i)
        t.eq(r.v, i == 9 and 8.5 or i + 0.0, "row " .. i)
    end
end)

t.test("from_tensors: 1-D tensors give scalar columns, 2-D float32 a tensor column", function()
    local n = 12
    local ids_t, vals_t, feats = {}, {}, {}
    for i = 1, n do
        ids_t[i] = i * 10
        vals_t[i] = i / 4
        feats[i] = {i, i + 0.5, -i}
    end
    local ds = data.from_tensors{
        id = luray.tensor(ids_t, {dtype = "int64"}),
        val = luray.tensor(vals_t, {dtype = "float64"}),
        feat = luray.tensor(feats, {dtype = "float32"}),
    }
    t.eq(ds:count(), n)
    local s = ds:schema()
    t.eq(s.id, "int64")
    t.eq(s.val, "float64")
    t.truthy(tostring(s.feat):find("^tensor"), "feat type " .. tostring(s.feat))
    local rows = ds:take_all()
    t.eq(#rows, n)
    for i, r in ipairs(rows) do
        t.eq(r.id, i * 10)
        t.eq(r.val, i / 4)
        t.eq(r.feat:shape(), {3})
        t.eq(r.feat:totable(), {i + 0.0, i + 0.5, -i + 0.0})
    end
    t.raises(function() data.from_tensors{x = {1, 2, 3}} end, "x")
end)

-- ------------------------------------------------------------------ row transforms

t.test("map equals the function applied in plain Lua", function()
    local function f(r)
        return {k = r.k * 3 - 1, y = r.x * 2 + 0.25, s = r.s .. "!", nb = not r.b}
    end
    local want = {}
    for i, r in ipairs(items) do want[i] = f(r) end
    t.eq(data.from_items(items):map(f):take_all(), want)
    -- Over range: integers stay integers, divisions give floats.
    local got = data.range(5000):map(function(r) return {id = r.id, h = r.id / 2, q = r.id // 3} end)
        :take_all()
    for i, r in ipairs(got) do
        local v = i - 1
        t.eq(r, {id = v, h = v / 2, q = v // 3})
    end
end)

t.test("filter keeps exactly the rows plain Lua keeps", function()
    local function keep(r) return r.k % 3 == 0 and r.b end
    local want = {}
    for _, r in ipairs(items) do if keep(r) then want[#want + 1] = r end end
    t.eq(data.from_items(items):filter(keep):take_all(), want)
    t.eq(data.range(10000):filter(function(r) return r.id % 7 == 3 end):count(),
        (function() local n = 0 for i = 0, 9999 do if i % 7 == 3 then n = n + 1 end end return n end)())
    t.eq(data.range(1000):filter(function() return false end):count(), 0)
    t.eq(data.range(1000):filter(function() return false end):take_all(), {})
end)

t.test("flat_map equals the concatenation of the lists plain Lua makes", function()
    local function f(r)
        local out = {}
        for j = 1, r.k % 4 do out[j] = {k = r.k, j = j, tag = r.s .. j} end
        return out
    end
    local want = {}
    for _, r in ipairs(items) do
        for _, o in ipairs(f(r)) do want[#want + 1] = o end
    end
    t.eq(data.from_items(items):flat_map(f):take_all(), want)
    t.eq(data.range(3000):flat_map(function(r) return {r, r} end):count(), 6000)
end)

t.test("chained map, filter and flat_map equal the plain Lua pipeline", function()
    local ds = data.range(10000)
        :map(function(r) return {id = r.id, sq = r.id * r.id} end)
        :filter(function(r) return r.sq % 5 == 1 end)
        :flat_map(function(r) return {{v = r.id}, {v = -r.id}} end)
    local want = {}
    for i = 0, 9999 do
        if (i * i) % 5 == 1 then
            want[#want + 1] = {v = i}
            want[#want + 1] = {v = -i}
        end
    end
    t.eq(ds:take_all(), want)
    t.eq(ds:count(), #want)
end)

-- ------------------------------------------------------------------ batch transforms

t.test("map_batches computes in C what plain Lua computes per row", function()
    local ds = data.range(10000):map_batches(function(b)
        b.sq = b.id * b.id
        b.half = b.id / 2
        b.neg = -b.id + 7
        return b
    end)
    local rows = ds:take_all()
    t.eq(#rows, 10000)
    for i, r in ipairs(rows) do
        local v = i - 1
        t.eq(r, {id = v, sq = v * v, half = v / 2, neg = -v + 7})
    end
    local s = ds:schema()
    t.eq(s.sq, "int64")
    t.eq(s.half, "float64")
end)

t.test("map_batches batch_size: batches of exactly that many rows, the last of a block fewer", function()
    local bs = 700
    local ds = data.range(10000):map_batches(function(b)
        b.first = b.id[1]
        b.size = #b.id
        return b
    end, {batch_size = bs})
    local rows = ds:take_all()
    t.eq(#rows, 10000)
    local sizes, order = {}, {}
    for i, r in ipairs(rows) do
        t.eq(r.id, i - 1)
        if not sizes[r.first] then
            sizes[r.first] = {size = r.size, n = 0}
            order[#order + 1] = r.first
        end
        local s = sizes[r.first]
        s.n = s.n + 1
        t.eq(r.size, s.size, "every row of a batch sees the same size")
        t.eq(r.id, r.first + s.n - 1, "a batch is a run of consecutive rows")
    end
    local small, blocks = 0, 0
    for _ in data.range(10000):iter_batches{batch_size = false} do blocks = blocks + 1 end
    for _, first in ipairs(order) do
        local s = sizes[first]
        t.eq(s.n, s.size, "batch starting at " .. first)
        t.truthy(s.size <= bs, "batch of " .. s.size .. " rows > batch_size " .. bs)
        if s.size < bs then small = small + 1 end
    end
    t.truthy(small <= blocks, small .. " short batches over " .. blocks .. " blocks")
    t.truthy(#order >= 10000 // bs, "only " .. #order .. " batches")
end)

t.test("map_batches: batch:select(col > 0.5) and col:gt(0.5) equal a Lua filter", function()
    local rows = {}
    math.randomseed(5)
    for i = 1, 2000 do rows[i] = {i = i, x = math.random()} end
    local want = {}
    for _, r in ipairs(rows) do if r.x > 0.5 then want[#want + 1] = r end end
    local ds = data.from_items(rows)
    t.eq(ds:map_batches(function(b) return b:select(b.x > 0.5) end):take_all(), want)
    t.eq(ds:map_batches(function(b) return b:select(b.x:gt(0.5)) end):take_all(), want)
    t.eq(ds:map_batches(function(b) return b:select(b.x:gt(0.5)) end, {batch_size = 37})
        :take_all(), want)
    local want2 = {}
    for _, r in ipairs(rows) do
        if r.x <= 0.25 or (r.x > 0.5 and r.i % 2 == 0) then want2[#want2 + 1] = r end
    end
    t.eq(ds:map_batches(function(b)
        return b:select(b.x:le(0.25) | (b.x:gt(0.5) & (b.i % 2):eq(0)))
    end):take_all(), want2)
end)

t.test("map_batches may return a plain table of lists or columns", function()
    local got = data.range(1000):map_batches(function(b)
        local doubled = {}
        for i = 1, #b.id do doubled[i] = b.id[i] * 2 end
        return {id = b.id, doubled = doubled, label = "x"}
    end, {batch_size = 128}):take_all()
    t.eq(#got, 1000)
    for i, r in ipairs(got) do t.eq(r, {id = i - 1, doubled = 2 * (i - 1), label = "x"}) end
    -- A batch may change its row count.
    t.eq(data.range(1000):map_batches(function(b) return b:select(b.id:lt(10)) end):count(), 10)
end)

t.test("map_batches with concurrency and num_cpus gives the same rows", function()
    local function f(b)
        b.tripled = b.id * 3
        return b
    end
    local want = data.range(10000):map_batches(f):take_all()
    t.eq(#want, 10000)
    t.eq(data.range(10000):map_batches(f, {concurrency = 1}):take_all(), want)
    t.eq(data.range(10000):map_batches(f, {num_cpus = 0.5, batch_size = 999}):take_all(), want)
    t.eq(data.range(10000):map_batches(f, {concurrency = 2, num_cpus = 1})
        :filter(function(r) return r.tripled % 2 == 0 end):count(), 5000)
end)

t.test("add_column, drop_columns, select_columns, rename_columns", function()
    local ds = data.from_items(items)
    local want = {}
    for i, r in ipairs(items) do
        want[i] = {k = r.k, x = r.x, s = r.s, b = r.b, z = r.k * 2 + 1}
    end
    local added = ds:add_column("z", function(b) return b.k * 2 + 1 end)
    t.eq(added:take_all(), want)
    t.eq(added:schema().z, "int64")
    -- add_column replaces a column of the same name.
    local replaced = ds:add_column("k", function(b) return b.k + 0.5 end):take_all()
    for i, r in ipairs(replaced) do t.eq(r.k, items[i].k + 0.5) end

    local dropped = ds:drop_columns({"s", "b"}):take_all()
    for i, r in ipairs(dropped) do t.eq(r, {k = items[i].k, x = items[i].x}) end
    t.eq(ds:drop_columns("s"):schema().names, {"b", "k", "x"})

    local sel = ds:select_columns({"x", "k"})
    for i, r in ipairs(sel:take_all()) do t.eq(r, {k = items[i].k, x = items[i].x}) end
    t.eq(sel:schema().names, {"x", "k"})

    local ren = ds:rename_columns({k = "key", s = "str"}):take_all()
    for i, r in ipairs(ren) do
        t.eq(r, {key = items[i].k, x = items[i].x, str = items[i].s, b = items[i].b})
    end
end)

-- ------------------------------------------------------------------ limit, union

t.test("limit returns the first n rows, across block boundaries", function()
    t.eq(data.range(10000):limit(2600):take_all(), ids(2600))
    t.eq(data.range(10000):limit(2600):count(), 2600)
    t.eq(data.range(10000):limit(0):take_all(), {})
    t.eq(data.range(100):limit(1000):count(), 100)
    local mapped = data.range(10000):map(function(r) return {v = r.id * 10} end):limit(7):take_all()
    t.eq(mapped, {{v = 0}, {v = 10}, {v = 20}, {v = 30}, {v = 40}, {v = 50}, {v = 60}})
end)

t.test("union holds every row of every input once", function()
    local u = data.range(2500):union(data.range(300), data.from_items({{id = 100000}}))
    t.eq(u:count(), 2801)
    local want = ids(2500)
    for _, r in ipairs(ids(300)) do want[#want + 1] = r end
    want[#want + 1] = {id = 100000}
    t.eq(multiset(u:take_all()), multiset(want))
    t.eq(u:sum("id"), 2499 * 2500 // 2 + 299 * 300 // 2 + 100000)
end)

-- ------------------------------------------------------------------ consumers

t.test("take, take_all, show and schema", function()
    local ds = data.range(10000)
    t.eq(ds:take(5), ids(5))
    t.eq(#ds:take(), 20)
    t.eq(ds:take(0), {})
    t.eq(#ds:take_all(), 10000)
    local printed = {}
    local real_print = print
    print = function(...)
        local parts = {}
        for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
        printed[#printed + 1] = table.concat(parts, "\t")
    end
    local ok, err = pcall(function() ds:show(3) end)
    print = real_print
    t.truthy(ok, tostring(err))
    local text = table.concat(printed, "\n")
    t.truthy(#printed >= 3, "show(3) printed " .. #printed .. " lines")
    t.truthy(text:find("id", 1, true), text)
    t.truthy(text:find("2", 1, true), text)
    t.truthy(not text:find("3", 1, true), "show(3) printed a fourth row: " .. text)
    local s = ds:schema()
    t.eq(s.names, {"id"})
    t.eq(s.types, {"int64"})
    t.truthy(tostring(s):find("int64", 1, true))
    local s2 = data.from_items(items):map(function(r) return {a = r.k, c = r.s} end):schema()
    t.eq(s2.a, "int64")
    t.eq(s2.c, "string")
end)

t.test("iter_rows yields every row in order", function()
    local got = {}
    for r in data.range(10000):iter_rows() do got[#got + 1] = r end
    t.eq(got, ids(10000))
    local n = 0
    for r in data.from_items(items):iter_rows() do
        n = n + 1
        t.eq(r, items[n])
    end
    t.eq(n, #items)
end)

t.test("iter_batches: exact batch sizes across blocks, drop_last", function()
    local sizes, all = {}, {}
    for b in data.range(10000):iter_batches{batch_size = 300} do
        sizes[#sizes + 1] = #b
        t.eq(#b.id, #b)
        for i = 1, #b.id do all[#all + 1] = b.id[i] end
    end
    t.eq(#sizes, 34)
    for i = 1, 33 do t.eq(sizes[i], 300, "batch " .. i) end
    t.eq(sizes[34], 100)
    for i = 1, 10000 do t.eq(all[i], i - 1) end
    t.eq(#all, 10000)

    local n, rows = 0, 0
    for b in data.range(10000):iter_batches{batch_size = 300, drop_last = true} do
        n = n + 1
        t.eq(#b, 300)
        rows = rows + #b
    end
    t.eq(n, 33)
    t.eq(rows, 9900)

    -- Batches larger than a block join blocks.
    local big = {}
    for b in data.range(10000):iter_batches{batch_size = 4096, prefetch_batches = 2} do
        big[#big + 1] = #b
    end
    t.eq(big, {4096, 4096, 1808})
    local cnt = 0
    for b in data.range(0):iter_batches{batch_size = 10} do cnt = cnt + #b end
    t.eq(cnt, 0)
    -- Columns of the batch keep their types.
    for b in data.from_items(items):iter_batches{batch_size = 64} do
        t.eq(b.k:type(), "int64")
        t.eq(b.x:type(), "float64")
        t.eq(b.s:type(), "string")
        t.eq(b.b:type(), "bool")
        break
    end
end)

t.test("sum, mean, min, max, std equal plain Lua (std: sample, ddof 1)", function()
    local n = #items
    local sk, sx, mink, maxk, minx, maxx = 0, 0.0, math.huge, -math.huge, math.huge, -math.huge
    for _, r in ipairs(items) do
        sk, sx = sk + r.k, sx + r.x
        mink, maxk = math.min(mink, r.k), math.max(maxk, r.k)
        minx, maxx = math.min(minx, r.x), math.max(maxx, r.x)
    end
    local mx = sx / n
    local m2 = 0
    for _, r in ipairs(items) do m2 = m2 + (r.x - mx) ^ 2 end
    local stdx = math.sqrt(m2 / (n - 1))
    local ds = data.from_items(items)
    t.eq(ds:sum("k"), sk)
    t.eq(math.type(ds:sum("k")), "integer")
    t.eq(ds:min("k"), mink)
    t.eq(ds:max("k"), maxk)
    t.eq(math.type(ds:max("k")), "integer")
    t.near(ds:sum("x"), sx, 1e-9)
    t.near(ds:mean("x"), mx, 1e-12)
    t.near(ds:mean("k"), sk / n, 1e-12)
    t.eq(ds:min("x"), minx)
    t.eq(ds:max("x"), maxx)
    t.near(ds:std("x"), stdx, 1e-9)

    local r = data.range(10000)
    t.eq(r:sum("id"), 49995000)
    t.eq(r:mean("id"), 4999.5)
    t.eq(r:min("id"), 0)
    t.eq(r:max("id"), 9999)
    local m = 0
    for i = 0, 9999 do m = m + (i - 4999.5) ^ 2 end
    t.near(r:std("id"), math.sqrt(m / 9999), 1e-9)

    -- No rows: mean, min, max and std have no value.
    local none = r:filter(function() return false end)
    t.eq(none:mean("id"), nil)
    t.eq(none:min("id"), nil)
    t.eq(none:max("id"), nil)
    t.eq(none:std("id"), nil)
    local s0 = none:sum("id")
    t.truthy(s0 == nil or s0 == 0, "sum of no rows: " .. tostring(s0))
end)

t.test("aggregates skip NaN, as pandas does", function()
    local list = {}
    for i = 1, 20 do list[i] = {x = (i % 5 == 0) and (0 / 0) or i + 0.0} end
    local s, n = 0, 0
    for _, r in ipairs(list) do if r.x == r.x then s, n = s + r.x, n + 1 end end
    local ds = data.from_items(list)
    t.eq(ds:sum("x"), s)
    t.near(ds:mean("x"), s / n, 1e-12)
    t.eq(ds:max("x"), 19.0)
    t.eq(ds:min("x"), 1.0)
end)

t.test("materialize runs the plan once; the result is read again without rerunning it", function()
    local log = tmp .. "/calls.log"
    local ds = data.range(10000):map_batches(function(b)
        local f = assert(io.open(log, "a"))
        f:write("call\n")
        f:close()
        b.sq = b.id * b.id
        return b
    end, {batch_size = false})
    local m = ds:materialize()
    local calls = lines_of(log)
    t.truthy(calls >= 2, "the UDF ran " .. calls .. " times")
    local first = m:take_all()
    t.eq(m:count(), 10000)
    t.eq(m:take_all(), first)
    t.eq(m:sum("sq"), (function() local s = 0 for i = 0, 9999 do s = s + i * i end return s end)())
    local n = 0
    for _ in m:iter_rows() do n = n + 1 end
    t.eq(n, 10000)
    t.eq(lines_of(log), calls, "reading a materialized dataset must not rerun its UDF")
    -- Transforms over a materialized dataset run over its blocks.
    t.eq(m:filter(function(r) return r.id < 10 end):count(), 10)
    t.eq(lines_of(log), calls)
    os.remove(log)
end)

t.test("stats() names each stage of the last run with its rows", function()
    local ds = data.range(1000)
        :map(function(r) return {id = r.id, v = r.id + 1} end)
        :filter(function(r) return r.id % 2 == 0 end)
        :map_batches(function(b) return b end)
    t.eq(type(ds:stats()), "string")
    t.eq(ds:count(), 500)
    local s = ds:stats()
    t.truthy(s:find("Range", 1, true), s)
    t.truthy(s:find("Map(", 1, true), s)
    t.truthy(s:find("Filter(", 1, true), s)
    t.truthy(s:find("MapBatches(", 1, true), s)
    t.truthy(s:find("1000", 1, true), s)
    t.truthy(s:find("500", 1, true), s)
    local sorted = data.range(1000):random_shuffle{seed = 1}:sort("id")
    sorted:take_all()
    local s2 = sorted:stats()
    t.truthy(s2:find("RandomShuffle", 1, true), s2)
    t.truthy(s2:find("Sort", 1, true), s2)
end)

t.test("a Dataset prints its plan", function()
    local ds = data.range(10):map(function(r) return r end):limit(3)
    local s = tostring(ds)
    t.truthy(s:find("Range", 1, true), s)
    t.truthy(s:find("Map", 1, true), s)
    t.truthy(s:find("Limit", 1, true), s)
end)

h.rmtree(tmp)
t.test("iter_batches runs blocks ahead of a slow consumer", function()
    -- Each block records when its task finished (a monotonic clock every process shares); the
    -- consumer records when it asked for the next batch. With work running ahead, every block
    -- after the first is finished before the consumer asks for it.
    local C = data.C
    local ds = data.range(8, {parallelism = 8}):map_batches(function(b)
        luray.sleep(0.05)
        b.done = require("luray._plugin.data").now()
        return b
    end, {batch_size = false})
    local asked, finished = {}, {}
    local it = ds:iter_batches{batch_size = 1, prefetch_batches = 2}
    while true do
        local t_ask = C.now()
        local b = it()
        if b == nil then break end
        asked[#asked + 1] = t_ask
        finished[#finished + 1] = b.done[1]
        luray.sleep(0.2)
    end
    t.eq(#asked, 8)
    for i = 2, 8 do
        t.truthy(finished[i] < asked[i], "block " .. i .. " was ready before it was asked for")
    end
end)

t.test("a Dataset travels to a task and runs there, split shards too", function()
    local ds = data.range(1000):map_batches(function(b) b.y = b.id * 2 return b end)
    local total = luray.remote(function(d) return d:sum("y") end)
    t.eq(luray.get(total:remote(ds)), 999000)
    local shards = data.range(100):split(2)
    local count = luray.remote(function(d) return {d:count(), d:sum("id")} end)
    t.eq(luray.get(count:remote(shards[2])), {50, 3725})
end)

luray.shutdown()
t.done()
