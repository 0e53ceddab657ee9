-- Timing helpers shared by the bench scripts: monotonic clock, median of timed runs after a
-- warm-up, and one JSON line per figure on stdout (progress and failures go to stderr).
local core = require("luray.core")

local B = {}

B.now = core.now

-- LURAY_BENCH_SCALE shrinks (or grows) the work of every figure; 1 is the defined work.
B.scale = tonumber(os.getenv("LURAY_BENCH_SCALE") or "") or 1
-- LURAY_BENCH_RUNS: timed runs per figure (at least 3, as BENCH.md asks).
B.runs = math.max(3, math.tointeger(tonumber(os.getenv("LURAY_BENCH_RUNS") or "") or 3) or 3)

-- Scales a work count, keeping it an integer >= 1.
function B.n(count)
    return math.max(1, math.floor(count * B.scale + 0.5))
end

function B.log(fmt, ...)
    io.stderr:write("[bench] ", string.format(fmt, ...), "\n")
    io.stderr:flush()
end

function B.median(xs)
    local s = {}
    for i = 1, #xs do s[i] = xs[i] end
    table.sort(s)
    local m = #s // 2
    if #s % 2 == 1 then return s[m + 1] end
    return (s[m] + s[m + 1]) / 2
end

-- JSON number: finite values only (JSON has no inf/nan).
local function num(x)
    if x ~= x or x == math.huge or x == -math.huge then return "null" end
    if math.type(x) == "integer" then return tostring(x) end
    return string.format("%.6g", x)
end

local function str(s)
    return '"' .. tostring(s):gsub('[%c"\\]', function(c)
        if c == '"' then return '\\"' end
        if c == "\\" then return "\\\\" end
        return string.format("\\u%04x", c:byte())
    end) .. '"'
end

-- Prints one figure as a JSON line; extra holds further fields (numbers or strings).
function B.emit(name, value, unit, runs, extra)
    local parts = { '"name": ' .. str(name), '"value": ' .. num(value), '"unit": ' .. str(unit) }
    if runs then
        local r = {}
        for i = 1, #runs do r[i] = num(runs[i]) end
        parts[#parts + 1] = '"runs": [' .. table.concat(r, ", ") .. "]"
    end
    parts[#parts + 1] = '"system": "luray"'
    local keys = {}
    for k in pairs(extra or {}) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do
        local v = extra[k]
        local text
        if type(v) == "number" then text = num(v)
        elseif type(v) == "boolean" then text = tostring(v)
        else text = str(v) end
        parts[#parts + 1] = str(k) .. ": " .. text
    end
    io.stdout:write("{" .. table.concat(parts, ", ") .. "}\n")
    io.stdout:flush()
end

-- Runs fn once to warm up, then B.runs times timed. Each run does `work` units (fn may return
-- the units it did instead); the figure is the median of work/seconds. fn gets the share of
-- the work to do: 1 for timed runs, B.WARMUP for the warm-up (long figures use it to keep the
-- warm-up short; it only has to start workers and fill caches). Errors are reported on stderr
-- and the figure is left out, so one broken figure does not hide the others.
B.WARMUP = 0.1

-- nruns (optional) asks for more timed runs than B.runs for a noisy figure.
function B.rate(name, unit, work, fn, extra, nruns)
    local ok, err = pcall(function()
        B.log("%s: warm-up", name)
        fn(B.WARMUP)
        local runs = {}
        for i = 1, math.max(B.runs, nruns or 0) do
            collectgarbage()
            local t0 = B.now()
            local did, timed = fn(1)
            local dt = timed or (B.now() - t0) -- fn may time the part that counts itself
            runs[i] = (did or work) / dt
        end
        local v = B.median(runs)
        B.log("%s: %.6g %s", name, v, unit)
        B.emit(name, v, unit, runs, extra)
    end)
    if not ok then
        B.log("%s: FAILED: %s", name, tostring(err))
        B.failed = (B.failed or 0) + 1
    end
end

-- Ends a bench script: raises (so `luray run` exits 1 and takes its embedded cluster down)
-- when a figure failed.
function B.finish()
    if B.failed then error(string.format("%d figure(s) failed", B.failed), 0) end
end

return B
