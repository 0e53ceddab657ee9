-- The Data benchmarks' input: a deterministic CSV `id,x,y,cat` (x, y uniform in [0, 1), cat one
-- of 20 names cat_00..cat_19) from a splitmix64 stream, so every system reads the same bytes.
-- Usage: luray run scripts/bench/gen_csv.lua OUT ROWS [SEED]   (SEED defaults to 20240601)

local USAGE = "usage: luray run gen_csv.lua OUT ROWS [SEED]"
local NCATS = 20
local CHUNK = 65536 -- rows formatted per write

local function fail(fmt, ...)
    io.stderr:write("gen_csv: ", string.format(fmt, ...), "\n", USAGE, "\n")
    os.exit(2)
end

local function parse_int(s, what, min)
    local v = math.tointeger(tonumber(s or ""))
    if not v or v < min then
        fail("%s must be an integer >= %d, got %q", what, min, tostring(s))
    end
    return v
end

local out_path = arg and arg[1]
if not out_path or out_path == "" then fail("missing OUT") end
local rows = parse_int(arg[2], "ROWS", 0)
local seed = arg[3] and parse_int(arg[3], "SEED", 0) or 20240601

-- splitmix64 (Steele, Lea, Flood 2014) in Lua's wrapping 64-bit integers; `>>` is a logical shift.
local state = seed
local function next64()
    state = state + 0x9E3779B97F4A7C15
    local z = state
    z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ~ (z >> 27)) * 0x94D049BB133111EB
    return z ~ (z >> 31)
end

-- The top 53 bits as a double in [0, 1).
local TWO_M53 = 2.0 ^ -53
local function uniform()
    return (next64() >> 11) * TWO_M53
end

local cats = {}
for i = 1, NCATS do cats[i] = string.format("cat_%02d", i - 1) end

local f, err = io.open(out_path, "wb")
if not f then fail("cannot open OUT: %s", tostring(err)) end

local function write(s)
    local ok, werr = f:write(s)
    if not ok then
        f:close()
        fail("cannot write %s: %s", out_path, tostring(werr))
    end
end

write("id,x,y,cat\n")
local fmt = string.format
local buf = {}
local id = 0
while id < rows do
    local n = math.min(CHUNK, rows - id)
    for i = 1, n do
        local x, y = uniform(), uniform()
        -- cat from the top bits: (2^64 / 20) buckets differ by < 2^-59 in probability
        local c = (next64() >> 32) % NCATS + 1
        buf[i] = fmt("%d,%.6f,%.6f,%s\n", id, x, y, cats[c])
        id = id + 1
    end
    for i = n + 1, #buf do buf[i] = nil end
    write(table.concat(buf))
end

local ok, cerr = f:close()
if not ok then fail("cannot close %s: %s", out_path, tostring(cerr)) end
