-- Data I/O: read_csv (options, folders, globs, byte ranges), read_json, write_csv/write_json round
-- trips, against rows generated in plain Lua and the files written from them.
local t = require("harness")
luray.init{num_cpus = 2, object_store_memory = 256 * 1024 * 1024}
local data = require("luray.data")
local h = require("data_helpers")
local write_file, read_file, list_dir, mkdir = h.write_file, h.read_file, h.list_dir, h.mkdir
local multiset = h.multiset

local tmp = h.mkdtemp("data_io")

-- CSV text of a field, quoted as RFC 4180 says when needed.
local function csv_field(v)
    if type(v) == "string" then
        if v:find('[,"\r\n]') then return '"' .. v:gsub('"', '""') .. '"' end
        return v
    end
    if math.type(v) == "float" then
        if v ~= v then return "" end
        return string.format("%.17g", v)
    end
    return tostring(v)
end

local function csv_text(names, rows, delim)
    delim = delim or ","
    local lines = {table.concat(names, delim)}
    for _, r in ipairs(rows) do
        local f = {}
        for j, n in ipairs(names) do f[j] = csv_field(r[n]) end
        lines[#lines + 1] = table.concat(f, delim)
    end
    return table.concat(lines, "\n") .. "\n"
end

-- Seeded rows: id int64, x float64, name string (some needing quotes), ok bool.
local function gen_rows(n, seed, plain_names)
    math.randomseed(seed)
    local rows = {}
    local extras = {",", '"', " ", "'", "é"}
    for i = 1, n do
        local name = h.rand_word(math.random(1, 7))
        if not plain_names and math.random() < 0.3 then
            name = name .. extras[math.random(1, #extras)]
        end
        rows[i] = {id = i, x = math.random() * 1000 - 500, name = name, ok = math.random() < 0.5}
    end
    return rows
end

local names = {"id", "x", "name", "ok"}
local rows = gen_rows(2000, 31)
local csv_path = write_file(tmp .. "/rows.csv", csv_text(names, rows))

-- ------------------------------------------------------------------ read_csv

t.test("read_csv reads every row and infers int64, float64, string, bool", function()
    local ds = data.read_csv(csv_path)
    local s = ds:schema()
    t.eq(s.names, names)
    t.eq(s.types, {"int64", "float64", "string", "bool"})
    t.eq(ds:count(), #rows)
    t.eq(ds:take_all(), rows)
    t.eq(ds:sum("id"), #rows * (#rows + 1) // 2)
end)

t.test("read_csv with a small block_size reads every row of every byte range once", function()
    local size = #read_file(csv_path)
    for _, bs in ipairs({211, 4096}) do
        local ds = data.read_csv(csv_path, {block_size = bs})
        local blocks = 0
        for _ in ds:iter_batches{batch_size = false} do blocks = blocks + 1 end
        t.truthy(blocks >= math.min(10, size // bs), "block_size " .. bs .. ": " .. blocks ..
            " blocks for " .. size .. " bytes")
        t.eq(ds:take_all(), rows, "block_size " .. bs)
    end
end)

t.test("read_csv options: delimiter, header = false, columns", function()
    local p = write_file(tmp .. "/semi.csv", csv_text(names, rows, ";"))
    t.eq(data.read_csv(p, {delimiter = ";"}):take_all(), rows)
    local tab = write_file(tmp .. "/tab.tsv", "a\tb\n1\tx y\n2\tz\n")
    t.eq(data.read_csv(tab, {delimiter = "\t"}):take_all(), {{a = 1, b = "x y"}, {a = 2, b = "z"}})

    local nh = write_file(tmp .. "/noheader.csv", "1,2.5,foo\n3,4.5,bar\n")
    local ds = data.read_csv(nh, {header = false})
    t.eq(ds:schema().names, {"column1", "column2", "column3"})
    t.eq(ds:take_all(), {{column1 = 1, column2 = 2.5, column3 = "foo"},
        {column1 = 3, column2 = 4.5, column3 = "bar"}})

    local zp = write_file(tmp .. "/zip.csv", "zip,n\n00123,1\n04567,2\n")
    t.eq(data.read_csv(zp):take_all(), {{zip = 123, n = 1}, {zip = 4567, n = 2}})
    local typed = data.read_csv(zp, {columns = {zip = "string", n = "float64"}})
    t.eq(typed:schema().types, {"string", "float64"})
    t.eq(typed:take_all(), {{zip = "00123", n = 1.0}, {zip = "04567", n = 2.0}})
end)

t.test("read_csv: quoting, quoted newlines, CRLF, BOM, missing final newline, empty floats", function()
    local q = write_file(tmp .. "/quoted.csv",
        'id,text\n1,"a, b"\n2,"say ""hi"""\n3,"two\nlines"\n4,plain\n')
    t.eq(data.read_csv(q):take_all(), {{id = 1, text = "a, b"}, {id = 2, text = 'say "hi"'},
        {id = 3, text = "two\nlines"}, {id = 4, text = "plain"}})
    local crlf = write_file(tmp .. "/crlf.csv", "\xEF\xBB\xBFa,b\r\n1,x\r\n2,y")
    local ds = data.read_csv(crlf)
    t.eq(ds:schema().names, {"a", "b"})
    t.eq(ds:take_all(), {{a = 1, b = "x"}, {a = 2, b = "y"}})
    local nan = write_file(tmp .. "/nan.csv", "a,f\n1,1.5\n2,\n3,2.5\n")
    local got = data.read_csv(nan):take_all()
    t.eq(#got, 3)
    t.eq(got[1], {a = 1, f = 1.5})
    t.truthy(got[2].f ~= got[2].f, "an empty float is NaN")
    t.eq(got[3], {a = 3, f = 2.5})
    local hdr = write_file(tmp .. "/header_only.csv", "a,b\n")
    t.eq(data.read_csv(hdr):count(), 0)
end)

t.test("read_csv of a folder, a glob, and a list of files", function()
    local dir = mkdir(tmp .. "/parts")
    local want = {}
    for k = 1, 3 do
        local part = {}
        for i = 1, 100 do
            local r = {id = k * 1000 + i, x = (k * 1000 + i) / 8, name = "p" .. k, ok = i % 2 == 0}
            part[i] = r
            want[#want + 1] = r
        end
        write_file(dir .. "/part" .. k .. ".csv", csv_text(names, part))
    end
    write_file(dir .. "/notes.txt", "not,a,csv\n")
    t.eq(data.read_csv(dir .. "/*.csv"):take_all(), want)
    t.eq(data.read_csv(dir .. "/part?.csv"):count(), 300)
    t.eq(data.read_csv({dir .. "/part1.csv", dir .. "/part3.csv"}):count(), 200)
    os.remove(dir .. "/notes.txt")
    -- A folder's hidden and underscore files (.crc, _SUCCESS markers) are not data.
    write_file(dir .. "/.hidden.csv", "junk\n")
    write_file(dir .. "/_SUCCESS", "")
    t.eq(data.read_csv(dir):take_all(), want)
    t.eq(data.read_csv(dir, {block_size = 512}):take_all(), want)
end)

t.test("materialize keeps what was read: the file may go", function()
    local p = write_file(tmp .. "/gone.csv", csv_text(names, rows))
    local m = data.read_csv(p, {block_size = 8192}):materialize()
    os.remove(p)
    t.eq(m:count(), #rows)
    t.eq(m:take_all(), rows)
    t.eq(m:take_all(), rows)
    t.eq(m:filter(function(r) return r.ok end):count(),
        (function() local n = 0 for _, r in ipairs(rows) do if r.ok then n = n + 1 end end return n end)())
end)

-- ------------------------------------------------------------------ read_json

local function json_string(s)
    return '"' .. s:gsub('[%c"\\]', function(c)
        if c == '"' then return '\\"' end
        if c == "\\" then return "\\\\" end
        return string.format("\\u%04x", c:byte())
    end) .. '"'
end

t.test("read_json reads JSON Lines with every type, over byte ranges", function()
    local lines, want = {}, {}
    math.randomseed(41)
    for i = 1, 1500 do
        local x = math.random() * 100
        local name = "n" .. i .. (i % 5 == 0 and '"q\\' or "") .. (i % 7 == 0 and "\t" or "")
        local v = {i + 0.5, -i + 0.0, 2.0}
        lines[#lines + 1] = string.format('{"id": %d, "x": %.17g, "name": %s, "ok": %s, "v": [%s, %s, %s]}',
            i, x, json_string(name), tostring(i % 3 == 0), v[1], v[2], v[3])
        if i % 100 == 0 then lines[#lines + 1] = "" end
        want[i] = {id = i, x = x, name = name, ok = i % 3 == 0, v = v}
    end
    local p = h.write_lines(tmp .. "/rows.jsonl", lines)
    for _, opts in ipairs({{}, {block_size = 2048}}) do
        local ds = data.read_json(p, opts)
        local s = ds:schema()
        t.eq(s.names, {"id", "x", "name", "ok", "v"})
        t.eq(s.id, "int64")
        t.eq(s.x, "float64")
        t.eq(s.name, "string")
        t.eq(s.ok, "bool")
        t.truthy(tostring(s.v):find("^tensor"), tostring(s.v))
        local got = ds:take_all()
        t.eq(#got, #want)
        for i, r in ipairs(got) do
            t.eq(r.v:totable(), want[i].v, "row " .. i)
            r.v = nil
            local w = {id = want[i].id, x = want[i].x, name = want[i].name, ok = want[i].ok}
            t.eq(r, w, "row " .. i)
        end
    end
end)

t.test("read_json: null and missing floats are NaN, integers widen to floats", function()
    local p = write_file(tmp .. "/nulls.jsonl",
        '{"a": 1, "f": 1.5}\n{"a": 2, "f": null}\n{"a": 3}\n{"a": 4, "f": 2}\n')
    local got = data.read_json(p):take_all()
    t.eq(#got, 4)
    t.eq(got[1], {a = 1, f = 1.5})
    t.truthy(got[2].f ~= got[2].f)
    t.truthy(got[3].f ~= got[3].f)
    t.eq(got[4], {a = 4, f = 2.0})
    local w = write_file(tmp .. "/widen.jsonl", '{"n": 1}\n{"n": 2.5}\n')
    t.eq(data.read_json(w):take_all(), {{n = 1.0}, {n = 2.5}})
end)

-- ------------------------------------------------------------------ writes

local function part_names(dir, ext)
    local out = {}
    for _, n in ipairs(list_dir(dir)) do
        if n:match("^part%-") then out[#out + 1] = n end
    end
    return out
end

t.test("write_csv: stable part names; reading them back gives the rows", function()
    local dir = tmp .. "/out_csv"
    local ds = data.from_items(rows)
    local files = ds:write_csv(dir)
    local got_names = part_names(dir)
    t.truthy(#got_names >= 2, "expected several parts, got " .. #got_names)
    for i, n in ipairs(got_names) do t.eq(n, string.format("part-%06d.csv", i - 1)) end
    t.eq(#files, #got_names)
    for _, n in ipairs(list_dir(dir)) do t.truthy(not n:find("%.tmp$"), "left " .. n) end
    local back = data.read_csv(dir)
    t.eq(back:schema().names, {"id", "name", "ok", "x"})
    t.eq(back:schema().types, {"int64", "string", "bool", "float64"})
    t.eq(back:take_all(), rows)
    -- A second write of fewer blocks replaces the parts of the first.
    data.range(10):repartition(2):write_csv(dir)
    t.eq(part_names(dir), {"part-000000.csv", "part-000001.csv"})
    t.eq(data.read_csv(dir):sort("id"):take_all(),
        (function() local l = {} for i = 1, 10 do l[i] = {id = i - 1} end return l end)())
end)

t.test("write_csv round trips NaN, odd strings, floats and a delimiter", function()
    local list = {
        {s = "plain", f = 1.0, i = 1, b = true},
        {s = "comma, inside", f = 0 / 0, i = -2, b = false},
        {s = 'quote "q"', f = 0.1, i = 3, b = true},
        {s = "line\nbreak", f = 1e300, i = math.maxinteger, b = false},
        {s = "", f = -2.5e-310, i = math.mininteger, b = true},
        {s = "semi;colon", f = 1 / 3, i = 0, b = false},
    }
    local dir = tmp .. "/odd_csv"
    data.from_items(list):repartition(1):write_csv(dir)
    local got = data.read_csv(dir):take_all()
    t.eq(#got, #list)
    for k, r in ipairs(got) do
        local w = list[k]
        t.eq(r.s, w.s, "row " .. k)
        t.eq(r.i, w.i, "row " .. k)
        t.eq(r.b, w.b, "row " .. k)
        if w.f ~= w.f then t.truthy(r.f ~= r.f, "NaN row " .. k) else t.eq(r.f, w.f, "row " .. k) end
    end
    local sdir = tmp .. "/semi_csv"
    data.from_items(list):write_csv(sdir, {delimiter = ";"})
    local sgot = data.read_csv(sdir, {delimiter = ";"}):take_all()
    t.eq(#sgot, #list)
    for k, r in ipairs(sgot) do t.eq(r.s, list[k].s) end
end)

t.test("write_json round trips every type, tensors and NaN included", function()
    local list = {}
    for i = 1, 300 do
        list[i] = {id = i, x = (i % 10 == 0) and (0 / 0) or i / 7, s = "s" .. i .. '"\\\n',
            ok = i % 2 == 0, v = {i + 0.0, i * 0.5}}
    end
    local dir = tmp .. "/out_json"
    local files = data.from_items(list):write_json(dir)
    local got_names = part_names(dir)
    t.truthy(#got_names >= 2)
    t.eq(#files, #got_names)
    for i, n in ipairs(got_names) do t.eq(n, string.format("part-%06d.json", i - 1)) end
    local back = data.read_json(dir):take_all()
    t.eq(#back, #list)
    for i, r in ipairs(back) do
        local w = list[i]
        t.eq(r.id, w.id)
        t.eq(r.s, w.s)
        t.eq(r.ok, w.ok)
        if w.x ~= w.x then t.truthy(r.x ~= r.x, "NaN row " .. i) else t.eq(r.x, w.x, "row " .. i) end
        t.eq(r.v:totable(), w.v)
    end
    -- Every line is one JSON object; NaN is written as null.
    local text = read_file(dir .. "/part-000000.json")
    for line in text:gmatch("[^\n]+") do t.truthy(line:match("^{.*}$"), line) end
    t.truthy(text:find("null", 1, true), "NaN should be written as null")
    -- write_csv refuses a tensor column and says what to use.
    t.raises(function() data.from_items(list):write_csv(tmp .. "/tensor_csv") end, "write_json")
end)

t.test("a larger pipeline: range -> columns -> write_csv -> read_csv in ranges -> sums", function()
    local dir = tmp .. "/big"
    data.range(20000):map_batches(function(b)
        b.half = b.id / 2
        b.tag = b.id % 3
        return b
    end):write_csv(dir)
    local back = data.read_csv(dir, {block_size = 16384})
    t.eq(back:count(), 20000)
    t.eq(back:sum("id"), 19999 * 20000 // 2)
    t.eq(back:sum("half"), 19999 * 20000 / 4)
    t.eq(back:groupby("tag"):count():take_all(),
        {{tag = 0, ["count()"] = 6667}, {tag = 1, ["count()"] = 6667}, {tag = 2, ["count()"] = 6666}})
    t.eq(multiset(back:take_all()), multiset(data.range(20000):map(function(r)
        return {id = r.id, half = r.id / 2, tag = r.id % 3}
    end):take_all()))
end)

h.rmtree(tmp)
luray.shutdown()
t.done()
