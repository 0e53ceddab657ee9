-- Data all-to-all operations: shuffle, sort, repartition, zip, groupby aggregates and map_groups,
-- split and train_test_split, each checked against plain Lua on the same seeded input.
local t = require("harness")
luray.init{num_cpus = 2, object_store_memory = 256 * 1024 * 1024}
local data = require("luray.data")
local h = require("data_helpers")
local ids, multiset = h.ids, h.multiset

-- Checks that the id values of rows are 0..n-1, each exactly once.
local function each_once(rows, n, what)
    t.eq(#rows, n, what .. ": row count")
    local seen = {}
    for _, r in ipairs(rows) do
        t.truthy(r.id >= 0 and r.id < n, what .. ": id out of range " .. tostring(r.id))
        t.truthy(not seen[r.id], what .. ": id " .. r.id .. " twice")
        seen[r.id] = true
    end
end

-- Seeded rows: g a string key of 7 values, h an int key of 3 values, x float, n int, w a word.
local function gen_rows(count, seed)
    math.randomseed(seed)
    local rows = {}
    for i = 1, count do
        rows[i] = {g = "k" .. (i * 7919 % 7), h = i % 3, x = math.random() * 10 - 5,
            n = math.random(-100, 100), w = h.rand_word(math.random(1, 6))}
    end
    return rows
end

local items = gen_rows(1200, 21)

-- ------------------------------------------------------------------ shuffle

t.test("random_shuffle: every row once; same seed same order; another seed another", function()
    local ds = data.range(10000)
    local a = ds:random_shuffle{seed = 42}:take_all()
    each_once(a, 10000, "seed 42")
    local b = ds:random_shuffle{seed = 42}:take_all()
    t.eq(b, a, "the same seed gives the same order")
    local c = ds:random_shuffle{seed = 43}:take_all()
    each_once(c, 10000, "seed 43")
    t.ne(c, a, "another seed gives another order")
    t.ne(a, ids(10000), "a shuffle changes the order")
    -- Rows move between blocks, not only within them.
    local moved = 0
    for i = 1, 2500 do if a[i].id >= 2500 then moved = moved + 1 end end
    t.truthy(moved > 1000, "only " .. moved .. " of the first 2500 rows came from other blocks")
    -- Without a seed: still every row once.
    each_once(ds:random_shuffle():take_all(), 10000, "no seed")
    t.eq(ds:random_shuffle{seed = 1}:count(), 10000)
    t.eq(ds:random_shuffle{seed = 1}:sum("id"), 49995000)
end)

t.test("random_shuffle keeps every column of every row", function()
    local got = data.from_items(items):random_shuffle{seed = 9}:take_all()
    t.eq(multiset(got), multiset(items))
    t.eq(data.range(0):random_shuffle{seed = 1}:take_all(), {})
end)

-- ------------------------------------------------------------------ sort

t.test("sort by an int column, ascending and descending, over several blocks", function()
    local shuffled = data.range(10000):random_shuffle{seed = 5}
    t.eq(shuffled:sort("id"):take_all(), ids(10000))
    local desc = shuffled:sort("id", {descending = true}):take_all()
    local want = {}
    for i = 1, 10000 do want[i] = {id = 10000 - i} end
    t.eq(desc, want)
    t.eq(shuffled:sort("id"):limit(3):take_all(), ids(3))
end)

t.test("sort by float and string columns equals Lua's table.sort", function()
    local ds = data.from_items(items)
    local xs = {}
    for i, r in ipairs(items) do xs[i] = r.x end
    table.sort(xs)
    local got = ds:sort("x"):take_all()
    t.eq(#got, #items)
    for i, r in ipairs(got) do t.eq(r.x, xs[i], "row " .. i) end
    t.eq(multiset(got), multiset(items))

    local ws = {}
    for i, r in ipairs(items) do ws[i] = r.w end
    table.sort(ws)
    local gs = ds:sort("w"):take_all()
    for i, r in ipairs(gs) do t.eq(r.w, ws[i], "row " .. i) end
    table.sort(ws, function(p, q) return p > q end)
    local gd = ds:sort("w", {descending = true}):take_all()
    for i, r in ipairs(gd) do t.eq(r.w, ws[i], "row " .. i) end
    t.eq(multiset(gd), multiset(items))
end)

t.test("sort by several keys, each with its own direction", function()
    local ds = data.from_items(items)
    local function before(p, q)
        if p.g ~= q.g then return p.g < q.g end
        return p.n > q.n
    end
    local got = ds:sort({"g", "n"}, {descending = {false, true}}):take_all()
    t.eq(#got, #items)
    for i = 2, #got do
        t.truthy(not before(got[i], got[i - 1]),
            "rows " .. (i - 1) .. " and " .. i .. " out of order: " .. t.show(got[i - 1]) ..
            " then " .. t.show(got[i]))
    end
    t.eq(multiset(got), multiset(items))
    local asc = ds:sort({"h", "x"}):take_all()
    for i = 2, #asc do
        local p, q = asc[i - 1], asc[i]
        t.truthy(p.h < q.h or (p.h == q.h and p.x <= q.x), "row " .. i)
    end
end)

t.test("sort puts NaN last", function()
    local list = {}
    math.randomseed(3)
    for i = 1, 400 do list[i] = {id = i, x = (i % 9 == 0) and (0 / 0) or math.random()} end
    local got = data.from_items(list):sort("x"):take_all()
    t.eq(#got, 400)
    local nans = 400 // 9
    for i = 1, 400 - nans do
        t.truthy(got[i].x == got[i].x, "a NaN before the numbers at row " .. i)
        if i > 1 then t.truthy(got[i - 1].x <= got[i].x, "row " .. i) end
    end
    for i = 400 - nans + 1, 400 do t.truthy(got[i].x ~= got[i].x, "row " .. i .. " not NaN") end
end)

-- ------------------------------------------------------------------ repartition, zip

-- The sizes of the (non-empty) blocks a dataset produces, in order.
local function block_sizes(ds)
    local out = {}
    for b in ds:iter_batches{batch_size = false} do out[#out + 1] = #b end
    return out
end

t.test("repartition(n): n blocks of near-equal size, rows and order kept", function()
    t.eq(block_sizes(data.range(10):repartition(3)), {3, 3, 4})
    t.eq(data.range(10):repartition(3):take_all(), ids(10))
    local sizes = block_sizes(data.range(10000):repartition(7))
    t.eq(#sizes, 7)
    local total = 0
    for _, s in ipairs(sizes) do
        t.truthy(s == 10000 // 7 or s == 10000 // 7 + 1, "block of " .. s)
        total = total + s
    end
    t.eq(total, 10000)
    t.eq(data.range(10000):repartition(7):take_all(), ids(10000))
    t.eq(block_sizes(data.range(10000):repartition(1)), {10000})
    t.eq(data.from_items(items):repartition(5):count(), #items)
    -- Blocks a filter thinned out are evened out.
    local thin = data.range(10000):filter(function(r) return r.id < 100 or r.id >= 9900 end)
    t.eq(block_sizes(thin:repartition(4)), {50, 50, 50, 50})
end)

t.test("zip lines rows up by position, whatever the blocks on each side", function()
    local left = data.range(1000)
    local right = data.range(1000):map(function(r) return {sq = r.id * r.id} end):repartition(3)
    local rows = left:zip(right):take_all()
    t.eq(#rows, 1000)
    for i, r in ipairs(rows) do t.eq(r, {id = i - 1, sq = (i - 1) * (i - 1)}) end
    -- A name both sides have gets a suffix on the right.
    local dup = data.range(5):zip(data.range(5):map(function(r) return {id = r.id * 10} end))
        :take_all()
    for i, r in ipairs(dup) do t.eq(r, {id = i - 1, id_1 = (i - 1) * 10}) end
    t.raises(function() data.range(5):zip(data.range(6)):take_all() end, "5.*6")
end)

t.test("union then sort holds every row once, in order", function()
    local u = data.range(3000):union(data.range(2000):map(function(r) return {id = r.id + 3000} end))
    t.eq(u:sort("id"):take_all(), ids(5000))
    t.eq(u:random_shuffle{seed = 2}:sort("id", {descending = true}):take(2),
        {{id = 4999}, {id = 4998}})
end)

t.test("all-to-all operations after a flat_map that empties whole blocks", function()
    -- range(100) spans several blocks; the first ones give no rows at all.
    local ds = data.range(100):flat_map(function(r)
        if r.id < 50 then return {} end
        return {{z = r.id}}
    end)
    local want = {}
    for i = 50, 99 do want[#want + 1] = {z = i} end
    t.eq(ds:count(), 50)
    t.eq(ds:take_all(), want)
    t.eq(ds:sort("z"):take_all(), want)
    t.eq(ds:repartition(2):take_all(), want)
    t.eq(multiset(ds:random_shuffle{seed = 4}:take_all()), multiset(want))
    t.eq(ds:groupby("z"):count():count(), 50)
    t.eq(ds:zip(data.range(50)):count(), 50)
end)

-- ------------------------------------------------------------------ groupby

-- Plain Lua groupby: key -> {count, sum, values} by the key function.
local function lua_groups(rows, keyf, col)
    local groups, keys = {}, {}
    for _, r in ipairs(rows) do
        local k = keyf(r)
        local g = groups[k]
        if not g then
            g = {count = 0, values = {}, row = r}
            groups[k] = g
            keys[#keys + 1] = k
        end
        g.count = g.count + 1
        if col then g.values[#g.values + 1] = r[col] end
    end
    table.sort(keys)
    return groups, keys
end

local function stats_of(vals)
    local s = math.type(vals[1]) == "integer" and 0 or 0.0
    local mn, mx = vals[1], vals[1]
    for _, v in ipairs(vals) do
        s = s + v
        if v < mn then mn = v end
        if v > mx then mx = v end
    end
    local mean = s / #vals
    local m2 = 0.0
    for _, v in ipairs(vals) do m2 = m2 + (v - mean) ^ 2 end
    return {sum = s, mean = mean, min = mn, max = mx, std = math.sqrt(m2 / (#vals - 1))}
end

t.test("groupby count, sum, mean, min, max, std equal plain Lua, sorted by key", function()
    local ds = data.from_items(items)
    local groups, keys = lua_groups(items, function(r) return r.g end, "n")
    local cnt = ds:groupby("g"):count():take_all()
    t.eq(#cnt, #keys)
    for i, k in ipairs(keys) do t.eq(cnt[i], {g = k, ["count()"] = groups[k].count}) end

    local sums = ds:groupby("g"):sum("n"):take_all()
    local mins = ds:groupby("g"):min("n"):take_all()
    local maxs = ds:groupby("g"):max("n"):take_all()
    local means = ds:groupby("g"):mean("n"):take_all()
    local stds = ds:groupby("g"):std("n"):take_all()
    for i, k in ipairs(keys) do
        local st = stats_of(groups[k].values)
        t.eq(sums[i], {g = k, ["sum(n)"] = st.sum})
        t.eq(math.type(sums[i]["sum(n)"]), "integer")
        t.eq(mins[i], {g = k, ["min(n)"] = st.min})
        t.eq(maxs[i], {g = k, ["max(n)"] = st.max})
        t.eq(means[i].g, k)
        t.near(means[i]["mean(n)"], st.mean, 1e-12)
        t.eq(stds[i].g, k)
        t.near(stds[i]["std(n)"], st.std, 1e-9)
    end

    local fgroups, fkeys = lua_groups(items, function(r) return r.h end, "x")
    local fm = ds:groupby("h"):mean("x"):take_all()
    local fs = ds:groupby("h"):std("x"):take_all()
    local fsum = ds:groupby("h"):sum("x"):take_all()
    local fmin = ds:groupby("h"):min("x"):take_all()
    t.eq(#fm, #fkeys)
    for i, k in ipairs(fkeys) do
        local st = stats_of(fgroups[k].values)
        t.eq(fm[i].h, k)
        t.near(fm[i]["mean(x)"], st.mean, 1e-12)
        t.near(fs[i]["std(x)"], st.std, 1e-9)
        t.near(fsum[i]["sum(x)"], st.sum, 1e-9)
        t.eq(fmin[i]["min(x)"], st.min)
    end
end)

t.test("groupby over many blocks of range equals plain Lua", function()
    local ds = data.range(10000):map(function(r) return {k = r.id % 13, v = r.id} end)
    local got = ds:groupby("k"):sum("v"):take_all()
    t.eq(#got, 13)
    for i, r in ipairs(got) do
        local s = 0
        for v = i - 1, 9999, 13 do s = s + v end
        t.eq(r, {k = i - 1, ["sum(v)"] = s})
    end
    local c = ds:groupby("k"):count():take_all()
    for i, r in ipairs(c) do t.eq(r["count()"], #ids(10000) // 13 + ((i - 1) < 10000 % 13 and 1 or 0)) end
end)

t.test("groupby several keys", function()
    local ds = data.from_items(items)
    local groups, keys = lua_groups(items, function(r) return r.g .. "\0" .. r.h end)
    local got = ds:groupby({"g", "h"}):count():take_all()
    t.eq(#got, #keys)
    for i, k in ipairs(keys) do
        local g = groups[k].row
        t.eq(got[i], {g = g.g, h = g.h, ["count()"] = groups[k].count})
    end
end)

t.test("map_groups calls the function once per group with all its rows", function()
    local ds = data.from_items(items)
    local got = ds:groupby("g"):map_groups(function(b)
        return {g = {b.g[1]}, rows = {#b.g}, total = {b.n:sum()}, distinct = {b.g:ne(b.g[1]):count()}}
    end):take_all()
    table.sort(got, function(p, q) return p.g < q.g end)
    local groups, keys = lua_groups(items, function(r) return r.g end, "n")
    t.eq(#got, #keys)
    for i, k in ipairs(keys) do
        local st = stats_of(groups[k].values)
        t.eq(got[i], {g = k, rows = groups[k].count, total = st.sum, distinct = 0})
    end
    -- Returning the group unchanged gives back every row once.
    local same = ds:groupby("h"):map_groups(function(b) return b end):take_all()
    t.eq(multiset(same), multiset(items))
end)

-- ------------------------------------------------------------------ split

t.test("split(n): equal parts, disjoint, covering the rows", function()
    local parts = data.range(1000):split(3)
    t.eq(#parts, 3)
    local all = {}
    for i, p in ipairs(parts) do
        local rows = p:take_all()
        t.eq(#rows, 333, "part " .. i)
        t.eq(p:count(), 333)
        for _, r in ipairs(rows) do all[#all + 1] = r end
    end
    local seen = {}
    for _, r in ipairs(all) do
        t.truthy(not seen[r.id], "id " .. r.id .. " in two parts")
        seen[r.id] = true
    end
    local four = data.range(1000):split(4)
    local n = 0
    for _, p in ipairs(four) do
        t.eq(p:count(), 250)
        n = n + p:count()
    end
    t.eq(n, 1000)
end)

t.test("split(n, {equal = false}): every row in exactly one part", function()
    local parts = data.range(1001):split(4, {equal = false})
    t.eq(#parts, 4)
    local all = {}
    for _, p in ipairs(parts) do
        for _, r in ipairs(p:take_all()) do all[#all + 1] = r end
    end
    each_once(all, 1001, "split unequal")
    -- Parts are datasets: they can be transformed further.
    t.eq(parts[1]:map(function(r) return {v = r.id * 2} end):count(), parts[1]:count())
end)

t.test("train_test_split: sizes, disjoint, covering; shuffled with a seed", function()
    local train, test = data.range(1000):train_test_split(0.25)
    local tr, te = train:take_all(), test:take_all()
    t.eq(#tr, 750)
    t.eq(#te, 250)
    t.eq(tr, ids(750))
    t.eq(te, ids(250, 750))

    local s_train, s_test = data.range(1000):train_test_split(0.2, {shuffle = true, seed = 7})
    local a, b = s_train:take_all(), s_test:take_all()
    t.eq(#a, 800)
    t.eq(#b, 200)
    local all = {}
    for _, r in ipairs(a) do all[#all + 1] = r end
    for _, r in ipairs(b) do all[#all + 1] = r end
    each_once(all, 1000, "train + test")
    local high = 0
    for _, r in ipairs(b) do if r.id < 800 then high = high + 1 end end
    t.truthy(high > 100, "a shuffled test set should not be the last rows")
    local a2, b2 = data.range(1000):train_test_split(0.2, {shuffle = true, seed = 7})
    t.eq(a2:take_all(), a, "the same seed gives the same split")
    t.eq(b2:take_all(), b)
end)

luray.shutdown()
t.done()
