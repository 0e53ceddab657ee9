-- Data columns: element-wise arithmetic, comparisons, masks and reductions in C, checked against
-- plain Lua on the same values; tensor views of columns; columns inside map_batches.
local t = require("harness")
luray.init{num_cpus = 2, object_store_memory = 256 * 1024 * 1024}
local data = require("luray.data")
local C = data.C

local function gen_ints(n, seed, lo, hi)
    math.randomseed(seed)
    local out = {}
    for i = 1, n do out[i] = math.random(lo, hi) end
    return out
end

local function gen_floats(n, seed)
    math.randomseed(seed)
    local out = {}
    for i = 1, n do out[i] = math.random() * 200 - 100 end
    return out
end

local N = 1000
local ai = gen_ints(N, 1, -500, 500)
local bi = gen_ints(N, 2, 1, 50)
local af = gen_floats(N, 3)
local bf = gen_floats(N, 4)

-- The values of a column as a Lua list (through #col and col[i], not totable).
local function values(col)
    local out = {}
    for i = 1, #col do out[i] = col[i] end
    return out
end

local function map_list(a, b, f)
    local out = {}
    local list = type(b) == "table"
    for i = 1, #a do
        if list then out[i] = f(a[i], b[i]) else out[i] = f(a[i], b) end
    end
    return out
end

local function lua_sum(list)
    local s = math.type(list[1]) == "integer" and 0 or 0.0
    for _, v in ipairs(list) do s = s + v end
    return s
end

local function lua_std(list)
    local m = 0.0
    for _, v in ipairs(list) do m = m + v end
    m = m / #list
    local s = 0.0
    for _, v in ipairs(list) do s = s + (v - m) ^ 2 end
    return math.sqrt(s / (#list - 1))
end

t.test("a column from a list: #col, col[i], type, totable, out of range", function()
    local ci = data.column("int64", ai)
    t.eq(#ci, N)
    t.eq(ci:type(), "int64")
    t.eq(values(ci), ai)
    t.eq(ci:totable(), ai)
    t.eq(ci[0], nil)
    t.eq(ci[N + 1], nil)
    t.eq(math.type(ci[1]), "integer")
    local cf = data.column("float64", af)
    t.eq(cf:type(), "float64")
    t.eq(values(cf), af)
    local cb = data.column("bool", {true, false, true})
    t.eq(cb:type(), "bool")
    t.eq(values(cb), {true, false, true})
    local cs = data.column("string", {"a", "", "b\0c", "long string value"})
    t.eq(cs:type(), "string")
    t.eq(values(cs), {"a", "", "b\0c", "long string value"})
    t.eq(#data.column("int64", {}), 0)
    t.truthy(tostring(cf):find("float64", 1, true), tostring(cf))
end)

t.test("int64 arithmetic stays int64 and equals Lua's integer arithmetic", function()
    local a, b = data.column("int64", ai), data.column("int64", bi)
    local cases = {
        {"+", a + b, map_list(ai, bi, function(x, y) return x + y end)},
        {"-", a - b, map_list(ai, bi, function(x, y) return x - y end)},
        {"*", a * b, map_list(ai, bi, function(x, y) return x * y end)},
        {"//", a // b, map_list(ai, bi, function(x, y) return x // y end)},
        {"%", a % b, map_list(ai, bi, function(x, y) return x % y end)},
        {"+ 7", a + 7, map_list(ai, 7, function(x, y) return x + y end)},
        {"3 - a", 3 - a, map_list(ai, 3, function(x, y) return y - x end)},
        {"* -2", a * -2, map_list(ai, -2, function(x, y) return x * y end)},
        {"// 7", a // 7, map_list(ai, 7, function(x, y) return x // y end)},
        {"% 7", a % 7, map_list(ai, 7, function(x, y) return x % y end)},
        {"unary -", -a, map_list(ai, 0, function(x) return -x end)},
    }
    for _, c in ipairs(cases) do
        t.eq(c[2]:type(), "int64", c[1])
        t.eq(values(c[2]), c[3], c[1])
    end
end)

t.test("/ and ^ give float64; anything with a float64 gives float64", function()
    local a, b = data.column("int64", ai), data.column("int64", bi)
    local fa, fb = data.column("float64", af), data.column("float64", bf)
    local cases = {
        {"int / int", a / b, map_list(ai, bi, function(x, y) return x / y end)},
        {"int / 4", a / 4, map_list(ai, 4, function(x, y) return x / y end)},
        {"int ^ 2", b ^ 2, map_list(bi, 2, function(x, y) return x ^ y end)},
        {"int + 0.5", a + 0.5, map_list(ai, 0.5, function(x, y) return x + y end)},
        {"int * float", a * fa, map_list(ai, af, function(x, y) return x * y end)},
        {"float + float", fa + fb, map_list(af, bf, function(x, y) return x + y end)},
        {"float - float", fa - fb, map_list(af, bf, function(x, y) return x - y end)},
        {"float * 3", fa * 3, map_list(af, 3, function(x, y) return x * y end)},
        {"float / float", fa / fb, map_list(af, bf, function(x, y) return x / y end)},
        {"2.5 - float", 2.5 - fa, map_list(af, 2.5, function(x, y) return y - x end)},
        {"float // 3", fa // 3, map_list(af, 3, function(x, y) return x // y end)},
        {"float % 3", fa % 3, map_list(af, 3, function(x, y) return x % y end)},
        {"unary - float", -fa, map_list(af, 0, function(x) return -x end)},
    }
    for _, c in ipairs(cases) do
        t.eq(c[2]:type(), "float64", c[1])
        local got = values(c[2])
        for i = 1, N do
            t.eq(math.type(got[i]), "float", c[1])
            t.near(got[i], c[3][i], 1e-9 * math.max(1, math.abs(c[3][i])), c[1] .. " row " .. i)
        end
    end
end)

t.test("bool columns act as 0/1 in arithmetic", function()
    local m = data.column("bool", {true, false, true, true})
    local v = data.column("int64", {10, 20, 30, 40})
    t.eq(values(v * m), {10, 0, 30, 40})
    t.eq(values(m + 1), {2, 1, 2, 2})
end)

t.test("arithmetic errors: length mismatch, // and % by zero, string columns", function()
    local a = data.column("int64", {1, 2, 3})
    local b = data.column("int64", {1, 2})
    local err = t.raises(function() return a + b end)
    t.truthy(tostring(err):find("3", 1, true) and tostring(err):find("2", 1, true),
        "the error should name both lengths: " .. tostring(err))
    local z = data.column("int64", {1, 0, 2})
    t.raises(function() return a // z end, "2")
    t.raises(function() return a % z end, "2")
    t.raises(function() return a // 0 end)
    local s = data.column("string", {"x", "y", "z"})
    t.raises(function() return s + 1 end, "string")
    t.raises(function() return s * a end, "string")
    -- .. concatenates strings.
    t.eq(values(s .. "!"), {"x!", "y!", "z!"})
    t.eq(values(s .. s), {"xx", "yy", "zz"})
end)

t.test("comparisons give bool columns equal to Lua's comparisons", function()
    local a, b = data.column("int64", ai), data.column("int64", bi)
    local fa = data.column("float64", af)
    local cases = {
        {"eq", a:eq(b), map_list(ai, bi, function(x, y) return x == y end)},
        {"ne", a:ne(b), map_list(ai, bi, function(x, y) return x ~= y end)},
        {"lt", a:lt(b), map_list(ai, bi, function(x, y) return x < y end)},
        {"le", a:le(b), map_list(ai, bi, function(x, y) return x <= y end)},
        {"gt", a:gt(b), map_list(ai, bi, function(x, y) return x > y end)},
        {"ge", a:ge(b), map_list(ai, bi, function(x, y) return x >= y end)},
        {"gt 0", a:gt(0), map_list(ai, 0, function(x, y) return x > y end)},
        {"le 0.5 float", fa:le(0.5), map_list(af, 0.5, function(x, y) return x <= y end)},
        {"int lt float col", a:lt(fa), map_list(ai, af, function(x, y) return x < y end)},
        {"eq 7", (a % 10):eq(7), map_list(ai, 0, function(x) return x % 10 == 7 end)},
    }
    for _, c in ipairs(cases) do
        t.eq(c[2]:type(), "bool", c[1])
        t.eq(values(c[2]), c[3], c[1])
    end
    local s = data.column("string", {"apple", "pear", "fig", "pear"})
    t.eq(values(s:eq("pear")), {false, true, false, true})
    t.eq(values(s:lt("g")), {true, false, true, false})
end)

t.test("the < <= > >= operators compute the mask take_last_mask returns", function()
    local fa = data.column("float64", af)
    local a, b = data.column("int64", ai), data.column("int64", bi)
    t.eq(C.take_last_mask(), nil)
    local r = fa > 0.5
    t.eq(r, true)
    local m = C.take_last_mask()
    t.eq(values(m), map_list(af, 0.5, function(x, y) return x > y end))
    t.eq(C.take_last_mask(), nil, "the mask is forgotten once taken")
    local _ = 0.5 < fa
    t.eq(values(C.take_last_mask()), map_list(af, 0.5, function(x, y) return x > y end))
    _ = fa <= 10
    t.eq(values(C.take_last_mask()), map_list(af, 10, function(x, y) return x <= y end))
    _ = a >= b
    t.eq(values(C.take_last_mask()), map_list(ai, bi, function(x, y) return x >= y end))
    _ = a < b
    t.eq(values(C.take_last_mask()), map_list(ai, bi, function(x, y) return x < y end))
end)

t.test("masks: & | ~, count, isnan, select", function()
    local a = data.column("int64", ai)
    local m1, m2 = a:gt(0), (a % 2):eq(0)
    local l1 = map_list(ai, 0, function(x) return x > 0 end)
    local l2 = map_list(ai, 0, function(x) return x % 2 == 0 end)
    t.eq(values(m1 & m2), map_list(l1, l2, function(x, y) return x and y end))
    t.eq(values(m1 | m2), map_list(l1, l2, function(x, y) return x or y end))
    t.eq(values(~m1), map_list(l1, 0, function(x) return not x end))
    local n = 0
    for _, v in ipairs(l1) do if v then n = n + 1 end end
    t.eq(m1:count(), n)
    local want = {}
    for i, x in ipairs(ai) do if l1[i] and l2[i] then want[#want + 1] = x end end
    t.eq(values(a:select(m1 & m2)), want)
    local f = data.column("float64", {1.0, 0 / 0, 3.0, 0 / 0})
    t.eq(values(f:isnan()), {false, true, false, true})
    t.eq(values(f:select(~f:isnan())), {1.0, 3.0})
end)

t.test("reductions equal plain Lua; int64 gives integers; NaN skipped; empty", function()
    local a, fa = data.column("int64", ai), data.column("float64", af)
    t.eq(a:sum(), lua_sum(ai))
    t.eq(math.type(a:sum()), "integer")
    local mn, mx = math.huge, -math.huge
    for _, v in ipairs(ai) do mn, mx = math.min(mn, v), math.max(mx, v) end
    t.eq(a:min(), mn)
    t.eq(a:max(), mx)
    t.eq(math.type(a:min()), "integer")
    t.near(a:mean(), lua_sum(ai) / N, 1e-12)
    t.near(a:std(), lua_std(ai), 1e-9)
    t.near(fa:sum(), lua_sum(af), 1e-9)
    t.near(fa:mean(), lua_sum(af) / N, 1e-12)
    t.near(fa:std(), lua_std(af), 1e-9)
    local fmn, fmx = math.huge, -math.huge
    for _, v in ipairs(af) do fmn, fmx = math.min(fmn, v), math.max(fmx, v) end
    t.eq(fa:min(), fmn)
    t.eq(fa:max(), fmx)
    local nan = data.column("float64", {1.0, 0 / 0, 2.0, 6.0, 0 / 0})
    t.eq(nan:sum(), 9.0)
    t.eq(nan:mean(), 3.0)
    t.eq(nan:min(), 1.0)
    t.eq(nan:max(), 6.0)
    t.near(nan:std(), lua_std({1.0, 2.0, 6.0}), 1e-12)
    local empty = data.column("float64", {})
    t.truthy(empty:sum() == 0, "sum of an empty column is 0")
    t.eq(empty:mean(), nil)
    t.eq(empty:min(), nil)
    t.eq(empty:max(), nil)
    t.eq(empty:std(), nil)
    t.eq(data.column("float64", {4.0}):std(), nil)
    local s = data.column("string", {"pear", "apple", "fig"})
    t.eq(s:min(), "apple")
    t.eq(s:max(), "pear")
end)

t.test("col:tensor() is a view sharing memory, with the column's shape and dtype", function()
    local ci = data.column("int64", {1, 2, 3, 4})
    local ti = ci:tensor()
    t.eq(ti:shape(), {4})
    t.eq(ti:dtype(), "int64")
    t.eq(#ti, 4)
    t.eq(ti:get(3), 3)
    ti:set(2, 99)
    t.eq(ci[2], 99, "writing the tensor writes the column: no copy")
    local cf = data.column("float64", {0.5, 1.5})
    local tf = cf:tensor()
    t.eq(tf:dtype(), "float64")
    t.eq(tf:totable(), {0.5, 1.5})
    local cb = data.column("bool", {true, false})
    t.eq(cb:tensor():dtype(), "bool")
    t.raises(function() data.column("string", {"a"}):tensor() end, "string")
end)

t.test("column_from_tensor is zero-copy for int64/float64, converts other dtypes", function()
    local tt = luray.tensor({1, 2, 3}, {dtype = "int64"})
    local c = C.column_from_tensor(tt)
    t.eq(c:type(), "int64")
    tt:set(1, 42)
    t.eq(c[1], 42, "a column over an int64 tensor views its memory")
    local c32 = C.column_from_tensor(luray.tensor({1.5, 2.5}, {dtype = "float32"}))
    t.eq(c32:type(), "float64")
    t.eq(values(c32), {1.5, 2.5})
    local ci32 = C.column_from_tensor(luray.tensor({7, 8}, {dtype = "int32"}))
    t.eq(ci32:type(), "int64")
    t.eq(values(ci32), {7, 8})
end)

t.test("tensor columns: row shape, rows as tensor views, the whole as an N-D tensor", function()
    local rows = {}
    for i = 1, 6 do rows[i] = {i, i * 2, i * 3} end
    local c = data.column("tensor", rows)
    t.eq(c:type(), "tensor")
    t.eq(#c, 6)
    t.eq(c:shape(), {3})
    t.eq(c[2]:shape(), {3})
    t.eq(c[2]:totable(), {2.0, 4.0, 6.0})
    local whole = c:tensor()
    t.eq(whole:shape(), {6, 3})
    t.eq(whole:dtype(), "float32")
    t.eq(whole:get(6, 3), 18.0)
    local t2 = luray.tensor({{{1, 2}, {3, 4}}, {{5, 6}, {7, 8}}}, {dtype = "float32"})
    local c2 = C.column_from_tensor(t2)
    t.eq(c2:type(), "tensor")
    t.eq(c2:shape(), {2, 2})
    t.eq(c2[2]:totable(), {{5.0, 6.0}, {7.0, 8.0}})
end)

t.test("astype, slice, take, select", function()
    local a = data.column("int64", {5, 6, 7, 8, 9})
    t.eq(values(a:astype("float64")), {5.0, 6.0, 7.0, 8.0, 9.0})
    t.eq(values(a:astype("string")), {"5", "6", "7", "8", "9"})
    t.eq(values(data.column("string", {"1", "-2", "30"}):astype("int64")), {1, -2, 30})
    t.raises(function() data.column("string", {"1", "x", "3"}):astype("int64") end, "2")
    t.eq(values(a:slice(2, 3)), {6, 7, 8})
    t.eq(values(a:take(data.column("int64", {4, 0, 2}))), {9, 5, 7})
    t.eq(values(a:select(data.column("bool", {true, false, false, true, true}))), {5, 8, 9})
end)

t.test("columns and blocks travel through the object store and to tasks", function()
    local a = data.column("float64", af)
    local back = luray.get(luray.put(a))
    t.eq(back:type(), "float64")
    t.eq(values(back), af)
    local s = data.column("string", {"a", "bc", ""})
    t.eq(values(luray.get(luray.put(s))), {"a", "bc", ""})
    local total = luray.remote(function(col) return col:sum() end)
    t.near(luray.get(total:remote(a)), lua_sum(af), 1e-9)
    local blk = data.block({"x", "s"}, {data.column("int64", {1, 2, 3}), s})
    local b2 = luray.get(luray.put(blk))
    t.eq(b2:num_rows(), 3)
    t.eq(b2:names(), {"x", "s"})
    t.eq(b2:rows(), {{x = 1, s = "a"}, {x = 2, s = "bc"}, {x = 3, s = ""}})
end)

t.test("inside map_batches, column arithmetic types and reductions match Lua", function()
    local rows = {}
    for i = 1, N do rows[i] = {a = ai[i], b = bi[i], f = af[i]} end
    local got = data.from_items(rows):map_batches(function(batch)
        local out = {}
        out.ab = batch.a * batch.b + 1
        out.q = batch.a // batch.b
        out.r = batch.a / batch.b
        out.g = batch.f * 2 - batch.a
        out.pos = batch.f:gt(0)
        out.bsum = batch.a:sum()
        out.n = #batch.a
        return out
    end, {batch_size = 128}):take_all()
    t.eq(#got, N)
    local start = 1
    while start <= N do
        local n = got[start].n
        local s = 0
        for i = start, start + n - 1 do s = s + ai[i] end
        for i = start, start + n - 1 do
            local r = got[i]
            t.eq(r.ab, ai[i] * bi[i] + 1)
            t.eq(math.type(r.ab), "integer")
            t.eq(r.q, ai[i] // bi[i])
            t.eq(r.r, ai[i] / bi[i])
            t.eq(math.type(r.r), "float")
            t.near(r.g, af[i] * 2 - ai[i], 1e-9)
            t.eq(r.pos, af[i] > 0)
            t.eq(r.bsum, s)
            t.eq(r.n, n)
        end
        t.truthy(n <= 128)
        start = start + n
    end
end)

t.test("tensor columns in batches: col:tensor() has the batch's rows", function()
    local feats = {}
    for i = 1, 40 do feats[i] = {i, -i} end
    local ds = data.from_tensors{feat = luray.tensor(feats, {dtype = "float32"}),
        id = luray.tensor((function() local l = {} for i = 1, 40 do l[i] = i end return l end)(),
            {dtype = "int64"})}
    local seen = 0
    for b in ds:iter_batches{batch_size = 16} do
        local tt = b.feat:tensor()
        t.eq(tt:shape(), {#b, 2})
        t.eq(tt:dtype(), "float32")
        for i = 1, #b do
            local id = b.id[i]
            t.eq(tt:get(i, 1), id + 0.0)
            t.eq(tt:get(i, 2), -id + 0.0)
        end
        local ti = b.id:tensor()
        t.eq(ti:shape(), {#b})
        t.eq(ti:dtype(), "int64")
        seen = seen + #b
    end
    t.eq(seen, 40)
end)

luray.shutdown()
t.done()
