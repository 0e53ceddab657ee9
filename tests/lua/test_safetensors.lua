-- safetensors files through the collective plugin (C.save_safetensors, C.load_safetensors): a
-- round trip of every dtype, read-only views and copies, malformed files refused naming the
-- file, and files exchanged with Python's safetensors package when it is installed.
local t = require("harness")
local C = require("luray._plugin.collective")

local dir = os.getenv("LURAY_TMPDIR") or "/tmp"
local seq = 0
local function path(name)
    seq = seq + 1
    return string.format("%s/st-%d-%d-%s.safetensors", dir, math.random(1, 1e9), seq, name)
end

local function write_file(p, bytes)
    local f = assert(io.open(p, "wb"))
    f:write(bytes)
    f:close()
end

local function read_file(p)
    local f = assert(io.open(p, "rb"))
    local s = f:read("a")
    f:close()
    return s
end

-- A file image: the little-endian header length, the header, the data.
local function image(header, data)
    return string.pack("<I8", #header) .. header .. (data or "")
end

local tensors = {
    weight = luray.tensor({{1.5, -2, 3}, {4, 5, 6.25}}),
    bias = luray.tensor({0.1, 0.2}, "float64"),
    steps = luray.tensor({-3, 1 << 40}, "int64"),
    idx = luray.tensor({{7}, {-8}}, "int32"),
    bytes = luray.tensor({0, 127, 255}, "uint8"),
    mask = luray.tensor({true, false, true}, "bool"),
    scalar = luray.tensor(2.5, "float64"),
    empty = luray.zeros({0, 4}),
}

t.test("round trip of every dtype, with metadata", function()
    local p = path("all")
    t.eq(C.save_safetensors(p, tensors, {format = "pt", note = "quote \" and é"}), true)
    local got, meta = C.load_safetensors(p)
    t.eq(meta, {format = "pt", note = "quote \" and é"})
    local names = {}
    for name, x in pairs(got) do
        names[#names + 1] = name
        t.eq(x:dtype(), tensors[name]:dtype(), name)
        t.eq(x:shape(), tensors[name]:shape(), name)
        t.eq(x:totable(), tensors[name]:totable(), name)
    end
    -- Tensors whose data is aligned for their dtype are read-only views of the file (bias is
    -- first; bytes and mask have 1-byte elements); the others are copies.
    for _, name in ipairs({"bias", "bytes", "mask"}) do
        t.truthy(got[name]:is_readonly(), name .. " is a view")
    end
    table.sort(names)
    t.eq(names, {"bias", "bytes", "empty", "idx", "mask", "scalar", "steps", "weight"})
    -- The data section starts at a multiple of 8 and holds the tensors in name order.
    local s = read_file(p)
    local hlen = string.unpack("<I8", s)
    t.eq((8 + hlen) % 8, 0)
    local header = s:sub(9, 8 + hlen)
    t.truthy(header:find('^{"__metadata__":'))
    t.truthy(header:find('"bias".*"bytes".*"empty".*"idx".*"mask".*"scalar".*"steps".*"weight"'))
    os.remove(p)
end)

t.test("copies on request are writable; views outlive the loaded table", function()
    local p = path("copy")
    C.save_safetensors(p, {w = tensors.weight})
    local got, meta = C.load_safetensors(p, {copy = true})
    t.eq(meta, {})
    t.eq(got.w:is_readonly(), false)
    got.w:set(1, 1, 9)
    t.eq(got.w:get(1, 1), 9.0)
    local view = C.load_safetensors(p).w
    os.remove(p)
    collectgarbage()
    t.eq(view:totable(), tensors.weight:totable())
end)

t.test("overwriting a file replaces it whole", function()
    local p = path("over")
    C.save_safetensors(p, {a = luray.tensor({1, 2, 3})})
    C.save_safetensors(p, {b = luray.tensor({4.0}, "float64")})
    local got = C.load_safetensors(p)
    t.eq(got.a, nil)
    t.eq(got.b:totable(), {4.0})
    os.remove(p)
end)

t.test("misaligned data (another writer's layout) loads as copies", function()
    local p = path("unaligned")
    local header = '{"u":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},' ..
        '"d":{"dtype":"F64","shape":[1],"data_offsets":[1,9]}}'
    write_file(p, image(header, "\7" .. string.pack("<d", 1.25)))
    local got = C.load_safetensors(p)
    t.eq(got.u:totable(), {7})
    t.eq(got.d:totable(), {1.25})
    os.remove(p)
end)

t.test("malformed files are refused, naming the file", function()
    local cases = {
        {"", "too short"},
        {string.pack("<I8", 1000) .. "{}", "runs past the end"},
        {image("not json"), "does not start with '{'"},
        {image('{"a":'), "not valid JSON"},
        {image('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}}', ("\0"):rep(4)),
            "out of range"},
        {image('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},' ..
            '"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', ("\0"):rep(12)),
            "tensors 'a' and 'b' overlap"},
        {image('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', ("\0"):rep(6)),
            "belong to no tensor"},
        {image('{"a":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}}', "\0\0"),
            "dtype 'BF16' is not supported"},
    }
    for i, case in ipairs(cases) do
        local p = path("bad" .. i)
        write_file(p, case[1])
        local err = t.raises(function() C.load_safetensors(p) end, case[2], "case " .. i)
        t.truthy(tostring(err):find(p, 1, true), "the message names the file")
        os.remove(p)
    end
    t.raises(function() C.load_safetensors(path("missing")) end, "cannot open")
end)

t.test("bad arguments to save are refused", function()
    local p = path("args")
    t.raises(function() C.save_safetensors(p, {1}) end, "names must be strings")
    t.raises(function() C.save_safetensors(p, {a = 1}) end, "'a' is a number, not a tensor")
    t.raises(function() C.save_safetensors(p, {__metadata__ = luray.tensor({1})}) end,
        "not allowed")
    t.raises(function() C.save_safetensors(p, {}, {k = 1}) end, "map strings to strings")
    t.raises(function() C.save_safetensors(dir .. "/no/such/dir/x.safetensors", {}) end,
        "cannot create")
    t.eq(io.open(p, "rb"), nil)
end)

local function python_ok()
    local ok = os.execute("python3 -c 'import safetensors, numpy' >/dev/null 2>&1")
    return ok == true or ok == 0
end

if not python_ok() then
    t.skip("files written by Python's safetensors load here",
        "python3 with safetensors and numpy is not installed")
    t.skip("files written here load in Python's safetensors",
        "python3 with safetensors and numpy is not installed")
else
    t.test("files written by Python's safetensors load here", function()
        local p = path("from-python")
        local script = table.concat({
            "import numpy as np, sys",
            "from safetensors.numpy import save_file",
            "save_file({'w': np.arange(6, dtype=np.float32).reshape(2, 3) / 4,",
            "           'i': np.array([-1, 2**40], dtype=np.int64),",
            "           'b': np.array([True, False]), 'u': np.array([3], dtype=np.uint8),",
            "           'd': np.array(0.5), 'h': np.array([[1, -2]], dtype=np.int32)},",
            "          sys.argv[1], metadata={'by': 'python'})",
        }, "\n")
        local sp = path("gen") .. ".py"
        write_file(sp, script)
        t.truthy(os.execute("python3 " .. sp .. " " .. p))
        local got, meta = C.load_safetensors(p)
        t.eq(meta, {by = "python"})
        t.eq(got.w:totable(), {{0.0, 0.25, 0.5}, {0.75, 1.0, 1.25}})
        t.eq(got.i:totable(), {-1, 1 << 40})
        t.eq(got.b:totable(), {true, false})
        t.eq(got.u:totable(), {3})
        t.eq(got.d:shape(), {})
        t.eq(got.d:get(), 0.5)
        t.eq(got.h:totable(), {{1, -2}})
        os.remove(p)
        os.remove(sp)
    end)

    t.test("files written here load in Python's safetensors", function()
        local p = path("to-python")
        C.save_safetensors(p, tensors, {epoch = "3"})
        local script = table.concat({
            "import numpy as np, sys",
            "from safetensors import safe_open",
            "with safe_open(sys.argv[1], 'np') as f:",
            "    assert f.metadata() == {'epoch': '3'}, f.metadata()",
            "    t = {k: f.get_tensor(k) for k in f.keys()}",
            "assert t['weight'].dtype == np.float32 and t['weight'].tolist() == "
                .. "[[1.5, -2, 3], [4, 5, 6.25]]",
            "assert t['bias'].dtype == np.float64 and t['bias'].tolist() == [0.1, 0.2]",
            "assert t['steps'].tolist() == [-3, 2**40] and t['idx'].tolist() == [[7], [-8]]",
            "assert t['bytes'].tolist() == [0, 127, 255]",
            "assert t['mask'].tolist() == [True, False, True]",
            "assert t['scalar'].shape == () and t['scalar'] == 2.5",
            "assert t['empty'].shape == (0, 4)",
        }, "\n")
        local sp = path("check") .. ".py"
        write_file(sp, script)
        t.truthy(os.execute("python3 " .. sp .. " " .. p), "python could read the file")
        os.remove(p)
        os.remove(sp)
    end)
end

t.done()
