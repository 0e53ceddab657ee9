-- Data errors: bad CSV and JSON lines, values that do not parse as their column's type, missing
-- files, raising UDFs and misused API calls each give the driver a clear error naming what and
-- where (file and line, column); never a crash, a hang or rows silently skipped.
local t = require("harness")
luray.init{num_cpus = 2, object_store_memory = 256 * 1024 * 1024}
local data = require("luray.data")
local h = require("data_helpers")

local tmp = h.mkdtemp("data_errors")

-- The file `name` in the test's folder, holding text; returns its path.
local function write_file(name, text)
    return h.write_file(tmp .. "/" .. name, text)
end

-- The file `name` in the test's folder, holding the lines; returns its path.
local function write_lines(name, lines)
    return h.write_lines(tmp .. "/" .. name, lines)
end

-- Runs fn, which must raise an error whose text holds every one of the given strings (plain
-- text, not patterns). Returns the error value.
local function fails_with(fn, ...)
    local ok, err = pcall(fn)
    if ok then error("expected an error, got none", 2) end
    local text = tostring(err)
    for i = 1, select("#", ...) do
        local want = select(i, ...)
        if not text:find(want, 1, true) then
            error(string.format("error %q should mention %q", text, want), 2)
        end
    end
    return err
end

-- The error of a task that raised reaches the driver as a TaskError.
local function is_task_error(err)
    t.eq(type(err), "table", "error value")
    t.eq(err.type, "TaskError")
end

-- n lines "i,i*2,name<i>" after a header a,b,c.
local function csv_lines(n)
    local lines = {"a,b,c"}
    for i = 1, n do lines[#lines + 1] = i .. "," .. (i * 2) .. ",name" .. i end
    return lines
end

-- ------------------------------------------------------------------ CSV

t.test("a ragged CSV line (too few fields) names the file and its line", function()
    local lines = csv_lines(10)
    lines[6] = "5,10"  -- line 6 of the file
    local p = write_lines("ragged_few.csv", lines)
    local err = fails_with(function() data.read_csv(p):take_all() end, p .. ":6", "2 fields",
        "expected 3")
    if type(err) == "table" then t.eq(err.type, "TaskError") end
    -- Every consumer raises: no count that silently leaves the line out.
    fails_with(function() data.read_csv(p):count() end, p .. ":6")
    fails_with(function() for _ in data.read_csv(p):iter_rows() do end end, p .. ":6")
end)

t.test("a ragged CSV line (too many fields) names the file and its line", function()
    local lines = csv_lines(10)
    lines[9] = "8,16,name8,extra"
    local p = write_lines("ragged_many.csv", lines)
    fails_with(function() data.read_csv(p):take_all() end, p .. ":9", "4 fields", "expected 3")
end)

t.test("a bad line far into a big file, read in byte ranges, reports the file's line", function()
    local lines = csv_lines(3000)
    lines[2501] = "2500,5000"  -- line 2501 of the file
    local p = write_lines("ragged_far.csv", lines)
    fails_with(function() data.read_csv(p, {block_size = 4096}):take_all() end,
        p .. ":2501", "2 fields")
    -- Past the rows inference reads, the error comes from the task reading that range.
    local opts = {block_size = 4096, infer_rows = 100}
    local err = fails_with(function() data.read_csv(p, opts):take_all() end, p .. ":2501",
        "2 fields")
    is_task_error(err)
    fails_with(function() data.read_csv(p, opts):count() end, p .. ":2501")
    fails_with(function() data.read_csv(p, opts):sum("a") end, p .. ":2501")
end)

t.test("an unterminated quoted field names the file and the line it starts on", function()
    local lines = csv_lines(5)
    lines[4] = '3,6,"never closed'
    local p = write_lines("unterminated.csv", lines)
    fails_with(function() data.read_csv(p):take_all() end, p .. ":4", "unterminated")
end)

t.test("text after a closing quote names the file, line and column", function()
    local lines = csv_lines(5)
    lines[3] = '2,4,"name"2'
    local p = write_lines("after_quote.csv", lines)
    fails_with(function() data.read_csv(p):take_all() end, p .. ":3", "column 'c'")
end)

t.test("a value that does not parse as its column's type names file, line, column, value", function()
    local lines = csv_lines(10)
    lines[5] = "4,abc,name4"
    local p = write_lines("badvalue.csv", lines)
    -- The column's type given by the caller.
    local err = fails_with(function()
        data.read_csv(p, {columns = {b = "int64"}}):take_all()
    end, p .. ":5", "column 'b'", "abc")
    is_task_error(err)
    -- The column's type inferred from the first rows only.
    local many = {"id,v"}
    for i = 1, 200 do many[#many + 1] = i .. "," .. (i / 4) end
    many[151] = "150,zz"
    local q = write_lines("badfloat.csv", many)
    fails_with(function() data.read_csv(q, {infer_rows = 20}):take_all() end,
        q .. ":151", "column 'v'", "zz", "float64")
    local bools = {"id,flag"}
    for i = 1, 50 do bools[#bools + 1] = i .. "," .. tostring(i % 2 == 0) end
    bools[41] = "40,maybe"
    local r = write_lines("badbool.csv", bools)
    fails_with(function() data.read_csv(r, {infer_rows = 10}):take_all() end,
        r .. ":41", "column 'flag'", "maybe")
end)

t.test("columns = {} naming a column the file lacks is an error naming it", function()
    local p = write_lines("small.csv", csv_lines(3))
    fails_with(function() data.read_csv(p, {columns = {nope = "int64"}}):take_all() end, "nope")
    fails_with(function() data.read_csv(p, {columns = {a = "complex"}}):take_all() end, "complex")
end)

t.test("a missing file, folder or glob match is an error naming the path", function()
    local p = tmp .. "/does_not_exist.csv"
    fails_with(function() data.read_csv(p):take_all() end, p, "No such file")
    local j = tmp .. "/does_not_exist.jsonl"
    fails_with(function() data.read_json(j):take_all() end, j, "No such file")
    fails_with(function() data.read_csv(tmp .. "/nothing_*.csv"):take_all() end, "nothing_*.csv")
    assert(os.execute("mkdir -p '" .. tmp .. "/empty'"))
    fails_with(function() data.read_csv(tmp .. "/empty"):take_all() end, tmp .. "/empty")
    -- A file removed between planning and reading: the task's error names it.
    local gone = write_lines("gone.csv", csv_lines(5))
    local ds = data.read_csv(gone)
    os.remove(gone)
    local err = fails_with(function() ds:take_all() end, gone)
    is_task_error(err)
end)

t.test("bad options for read_csv are refused by name", function()
    local p = write_file("opts.csv", "a,b\n1,2\n")
    fails_with(function() data.read_csv(p, {delimeter = ";"}) end, "delimeter")
    fails_with(function() data.read_csv(p, {delimiter = ";;"}):take_all() end, "delimiter")
end)

-- ------------------------------------------------------------------ JSON

local function json_lines(n)
    local lines = {}
    for i = 1, n do lines[i] = string.format('{"a": %d, "s": "v%d", "f": %d.5}', i, i, i) end
    return lines
end

t.test("a broken JSON line names the file and its line", function()
    local lines = json_lines(10)
    lines[7] = '{"a": 7, "s": "v7", '
    local p = write_lines("broken.jsonl", lines)
    local err = fails_with(function() data.read_json(p):take_all() end, p .. ":7", "JSON")
    if type(err) == "table" then t.eq(err.type, "TaskError") end
    fails_with(function() data.read_json(p):count() end, p .. ":7")
    local big = json_lines(3000)
    big[2222] = '{"a": 2222, "s": "v2222" "f": 1}'
    local q = write_lines("broken_far.jsonl", big)
    fails_with(function() data.read_json(q, {block_size = 8192}):take_all() end, q .. ":2222")
end)

t.test("a JSON line that is not an object names the file and line", function()
    local lines = json_lines(10)
    lines[4] = "[1, 2, 3]"
    local p = write_lines("notobject.jsonl", lines)
    fails_with(function() data.read_json(p):take_all() end, p .. ":4", "not an object")
end)

t.test("a JSON value of the wrong type names file, line and key", function()
    local lines = json_lines(100)
    lines[60] = '{"a": "sixty", "s": "v60", "f": 60.5}'
    local p = write_lines("wrongtype.jsonl", lines)
    fails_with(function() data.read_json(p, {infer_rows = 10}):take_all() end,
        p .. ":60", "'a'", "string")
    lines = json_lines(100)
    lines[90] = '{"a": 90, "s": "v90", "f": "ninety"}'
    local s = write_lines("strfloat.jsonl", lines)
    fails_with(function() data.read_json(s, {infer_rows = 10}):take_all() end, s .. ":90", "'f'")
end)

t.test("a JSON number or bool in a string column is kept as its text", function()
    local lines = json_lines(100)
    lines[90] = '{"a": 90, "s": 90, "f": 90.5}'
    lines[91] = '{"a": 91, "s": true, "f": 91.5}'
    local s = write_lines("numstring.jsonl", lines)
    local rows = data.read_json(s, {infer_rows = 10}):take_all()
    t.eq(rows[90].s, "90")
    t.eq(rows[91].s, "true")
end)

t.test("a JSON null or missing key turns an int64 column float64 with NaN, as pandas does", function()
    local lines = json_lines(100)
    lines[70] = '{"a": null, "s": "v70", "f": 70.5}'
    local q = write_lines("nullint.jsonl", lines)
    local rows = data.read_json(q, {infer_rows = 10}):take_all()
    t.truthy(rows[70].a ~= rows[70].a, "NaN for the null")
    t.eq(rows[71].a, 71.0)
    t.eq(math.type(rows[71].a), "float")
    -- A missing or null string is an error: there is no value to stand for it.
    lines = json_lines(100)
    lines[80] = '{"a": 80, "f": 80.5}'
    local r = write_lines("missingstr.jsonl", lines)
    fails_with(function() data.read_json(r, {infer_rows = 10}):take_all() end, r .. ":80", "'s'")
end)

-- ------------------------------------------------------------------ UDFs

t.test("a map UDF that raises surfaces as a TaskError with its message", function()
    local ds = data.range(1000):map(function(r)
        if r.id == 742 then error("boom at row 742") end
        return r
    end)
    local err = fails_with(function() ds:take_all() end, "boom at row 742")
    is_task_error(err)
    t.truthy(tostring(err.message):find("boom at row 742", 1, true), tostring(err.message))
    fails_with(function() ds:count() end, "boom at row 742")
end)

t.test("every kind of UDF that raises surfaces its message", function()
    local cases = {
        {"filter", function()
            return data.range(500):filter(function(r)
                if r.id == 300 then error("filter failed") end
                return true
            end):take_all()
        end, "filter failed"},
        {"flat_map", function()
            return data.range(500):flat_map(function(r)
                if r.id == 400 then error("flat_map failed") end
                return {r}
            end):count()
        end, "flat_map failed"},
        {"map_batches", function()
            return data.range(5000):map_batches(function(b)
                if b.id:max() >= 4000 then error("map_batches failed") end
                return b
            end, {batch_size = 100}):take_all()
        end, "map_batches failed"},
        {"add_column", function()
            return data.range(500):add_column("z", function() error("add_column failed") end)
                :take_all()
        end, "add_column failed"},
        {"map_groups", function()
            return data.range(500):map(function(r) return {k = r.id % 5, v = r.id} end)
                :groupby("k"):map_groups(function(b)
                    if b.k[1] == 3 then error("map_groups failed") end
                    return b
                end):take_all()
        end, "map_groups failed"},
        {"iter_batches", function()
            for _ in data.range(5000):map(function(r)
                if r.id == 4999 then error("late failure") end
                return r
            end):iter_batches{batch_size = 100} do end
        end, "late failure"},
    }
    for _, c in ipairs(cases) do
        local err = fails_with(c[2], c[3])
        t.eq(type(err) == "table" and err.type, "TaskError", c[1])
    end
end)

t.test("a UDF that raises a table keeps it as the error's cause", function()
    local err = fails_with(function()
        data.range(100):map(function(r)
            if r.id == 50 then error({code = 7, why = "custom"}) end
            return r
        end):take_all()
    end)
    is_task_error(err)
    t.eq(type(err.cause), "table")
    t.eq(err.cause.code, 7)
    t.eq(err.cause.why, "custom")
end)

t.test("a UDF returning the wrong thing is a clear error", function()
    fails_with(function() data.range(10):map(function(r) return r.id end):take_all() end,
        "map", "number")
    fails_with(function() data.range(10):flat_map(function(r) return r.id end):take_all() end,
        "flat_map", "number")
    fails_with(function()
        data.range(10):map_batches(function() return 5 end):take_all()
    end, "map_batches")
    fails_with(function()
        data.range(100):map_batches(function(b) return {id = b.id, short = {1, 2, 3}} end)
            :take_all()
    end, "short")
    fails_with(function()
        data.range(100):add_column("z", function() return {1, 2} end):take_all()
    end, "z", "2")
    fails_with(function()
        data.range(10):map(function(r) return {id = r.id, v = r.id % 2 == 0 and "s" or 1} end)
            :take_all()
    end, "'v'")
end)

t.test("batch:select without a mask says what to give it", function()
    fails_with(function()
        data.range(10):map_batches(function(b) return b:select(true) end):take_all()
    end, "mask")
    fails_with(function()
        data.range(10):map_batches(function(b) return b:select(b.id) end):take_all()
    end, "bool")
end)

-- ------------------------------------------------------------------ API misuse

t.test("from_items with a column of mixed types names the row and column", function()
    local list = {}
    for i = 1, 10 do list[i] = {x = i, y = "s" .. i} end
    list[3] = {x = "three", y = "s3"}
    fails_with(function() data.from_items(list):take_all() end, "row 3", "'x'")
    -- The mixed row in a later block of the list: still named by its place in the list.
    list[3] = {x = 3, y = "s3"}
    list[8] = {x = "eight", y = "s8"}
    fails_with(function() data.from_items(list):take_all() end, "row 8", "'x'")
    -- A whole later stretch of another type is refused too, not kept as a second type.
    for i = 7, 10 do list[i] = {x = "s" .. i, y = "s" .. i} end
    fails_with(function() data.from_items(list):take_all() end, "row 7", "'x'")
end)

t.test("wrong arguments are refused at once with the call's name", function()
    local ds = data.range(10)
    fails_with(function() ds:map(42) end, "map", "function")
    fails_with(function() ds:filter() end, "filter")
    fails_with(function() ds:map_batches(function(b) return b end, {batchsize = 3}) end,
        "batchsize")
    fails_with(function() ds:map_batches(function(b) return b end, {batch_size = 0}) end,
        "batch_size")
    fails_with(function() ds:repartition(0) end, "repartition")
    fails_with(function() ds:limit(-1) end, "limit")
    fails_with(function() ds:random_shuffle{seed = "x"} end, "seed")
    fails_with(function() ds:split(0) end, "split")
    fails_with(function() ds:train_test_split(1.5) end, "fraction")
    fails_with(function() ds:union(5) end, "union")
    fails_with(function() ds:zip({}) end, "zip")
    fails_with(function() ds:iter_batches{batch_size = -1} end, "batch_size")
    fails_with(function() data.range(-1) end, "range")
    fails_with(function() data.from_items(5) end, "from_items")
    fails_with(function() ds:sum(nil) end, "sum")
end)

t.test("an unknown column is an error naming it and the columns there are", function()
    local ds = data.from_items({{a = 1, b = 2}, {a = 3, b = 4}})
    fails_with(function() ds:select_columns({"a", "zz"}):take_all() end, "zz", "a", "b")
    fails_with(function() ds:drop_columns({"zz"}):take_all() end, "zz")
    fails_with(function() ds:rename_columns({zz = "q"}):take_all() end, "zz")
    fails_with(function() ds:sort("zz"):take_all() end, "zz")
    fails_with(function() ds:groupby("zz"):count():take_all() end, "zz")
    fails_with(function() ds:sum("zz") end, "zz")
end)

t.test("zip of datasets with different row counts names both counts", function()
    fails_with(function() data.range(10):zip(data.range(12)):take_all() end, "10", "12")
end)

t.test("after all these errors the cluster still runs pipelines", function()
    t.eq(data.range(10000):map(function(r) return {v = r.id * 2} end):sum("v"), 99990000)
    t.eq(luray.get(luray.remote(function() return "alive" end):remote()), "alive")
end)

h.rmtree(tmp)
luray.shutdown()
t.done()
