-- A tiny TAP test library for the Lua tests that the real `luray` binary runs:
--   local t = require("harness"); t.test("name", function() t.eq(1 + 1, 2) end); t.done()

local M = {}

local count, failed, skipped = 0, 0, 0

-- Readable text of a value for failure messages: tables nested (bounded), strings quoted,
-- integers and floats told apart (3 vs 3.0).
local function show(v, depth, seen)
    depth, seen = depth or 0, seen or {}
    if type(v) == "string" then return (string.format("%q", v):gsub("\\\n", "\\n")) end
    if math.type(v) == "float" then
        local s = string.format("%.14g", v)
        if tonumber(s) ~= v then s = string.format("%.17g", v) end
        return (s:gsub("^(-?%d+)$", "%1.0"))
    end
    local mt = getmetatable(v)
    if type(v) ~= "table" or (type(mt) == "table" and mt.__tostring) then return tostring(v) end
    if seen[v] then return "<cycle>" end
    if depth > 4 then return "{...}" end
    seen[v] = true
    local parts, n = {}, 0
    for k, x in next, v do
        n = n + 1
        if n > 20 then parts[#parts + 1] = "..." break end
        parts[#parts + 1] = "[" .. show(k, depth + 1, seen) .. "] = " .. show(x, depth + 1, seen)
    end
    seen[v] = nil
    table.sort(parts)
    return "{" .. table.concat(parts, ", ") .. "}"
end
M.show = show

-- Deep equality; numbers must also agree on integer vs float; NaN equals NaN.
local function deep_eq(a, b, seen)
    if type(a) ~= type(b) then return false, "types differ" end
    if type(a) == "number" then
        if a ~= a and b ~= b then return true end
        if a ~= b then return false end
        if math.type(a) ~= math.type(b) then return false, "integer vs float" end
        return true
    end
    if type(a) ~= "table" or a == b then return a == b end
    seen = seen or {}
    if seen[a] == b then return true end
    seen[a] = b
    for k, v in next, a do
        local ok, why = deep_eq(v, rawget(b, k), seen)
        if not ok then return false, "at key " .. show(k) .. (why and (": " .. why) or "") end
    end
    for k in next, b do
        if rawget(a, k) == nil then return false, "extra key " .. show(k) end
    end
    return true
end
M.deep_eq = deep_eq

-- Assertion failures point at the test's line, not at this file.
local function fail(msg, text)
    error((msg and (msg .. ": ") or "") .. text, 3)
end

function M.eq(a, b, msg)
    local ok, why = deep_eq(a, b)
    if not ok then
        fail(msg, "expected " .. show(b) .. ", got " .. show(a) .. (why and (" (" .. why .. ")") or ""))
    end
    return a
end

function M.ne(a, b, msg)
    if deep_eq(a, b) then fail(msg, "expected a value other than " .. show(b)) end
    return a
end

function M.truthy(v, msg)
    if not v then fail(msg, "expected a true value, got " .. show(v)) end
    return v
end

-- Numbers, or tables of them (nested), equal within tol (default 1e-6).
local function near(a, b, tol)
    if type(a) == "number" and type(b) == "number" then return math.abs(a - b) <= tol end
    if type(a) ~= "table" or type(b) ~= "table" or #a ~= #b then return false end
    for k, v in pairs(a) do
        if not near(v, b[k], tol) then return false end
    end
    for k in pairs(b) do
        if a[k] == nil then return false end
    end
    return true
end

function M.near(a, b, tol, msg)
    tol = tol or 1e-6
    if not near(a, b, tol) then
        fail(msg, "expected " .. show(b) .. " within " .. tol .. ", got " .. show(a))
    end
    return a
end

-- Calls fn, which must raise; pattern (a Lua pattern) must match tostring(err). Returns err.
function M.raises(fn, pattern, msg)
    local ok, err = pcall(fn)
    if ok then fail(msg, "expected an error" .. (pattern and (" matching " .. show(pattern)) or "")) end
    if pattern and not tostring(err):find(pattern) then
        fail(msg, "error " .. show(tostring(err)) .. " does not match " .. show(pattern))
    end
    return err
end

local function comment(text)
    for line in (tostring(text) .. "\n"):gmatch("(.-)\n") do
        io.write("# ", line, "\n")
    end
end

local function on_error(err)
    local mt = getmetatable(err)
    local text = (type(err) == "string" or (type(mt) == "table" and mt.__tostring)) and tostring(err)
        or ("(error object is " .. show(err) .. ")")
    return debug.traceback(text, 2)
end

function M.test(name, fn)
    count = count + 1
    local ok, err = xpcall(fn, on_error)
    if ok then
        io.write("ok ", count, " - ", name, "\n")
    else
        failed = failed + 1
        io.write("not ok ", count, " - ", name, "\n")
        comment(err)
    end
    io.flush()
    return ok
end

function M.skip(name, reason)
    count, skipped = count + 1, skipped + 1
    io.write("ok ", count, " - ", name, " # SKIP ", reason or "", "\n")
    io.flush()
end

function M.done()
    io.write("1..", count, "\n")
    if failed > 0 then comment(failed .. " of " .. count .. " failed") end
    io.flush()
    os.exit(failed == 0 and 0 or 1)
end

return M
