-- Setup shared by the data tests (tests/lua/test_data_*.lua): a private temp folder, file helpers,
-- seeded words and the row lists the tests compare against.
local t = require("harness")

local M = {}

-- A fresh private folder under LURAY_TMPDIR (or /tmp) for the files a test writes; `name` tells
-- whose it is when one is left behind. The test removes it with M.rmtree.
function M.mkdtemp(name)
    local base = os.getenv("LURAY_TMPDIR") or "/tmp"
    local h = assert(io.popen("mktemp -d '" .. base .. "/" .. name .. ".XXXXXX'"))
    local dir = h:read("l")
    h:close()
    assert(dir and dir ~= "", "mktemp failed")
    return dir
end

function M.rmtree(dir)
    os.execute("rm -rf '" .. dir .. "'")
end

function M.mkdir(path)
    assert(os.execute("mkdir -p '" .. path .. "'"))
    return path
end

function M.write_file(path, text)
    local f = assert(io.open(path, "wb"))
    f:write(text)
    f:close()
    return path
end

-- Writes the lines, each ending in a newline; returns the path.
function M.write_lines(path, lines)
    return M.write_file(path, table.concat(lines, "\n") .. "\n")
end

function M.read_file(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("a")
    f:close()
    return s
end

-- The number of lines of a file; 0 when it does not exist.
function M.lines_of(path)
    local n = 0
    local f = io.open(path, "r")
    if not f then return 0 end
    for _ in f:lines() do n = n + 1 end
    f:close()
    return n
end

-- The names in a folder, hidden ones included.
function M.list_dir(dir)
    local h = assert(io.popen("ls -A '" .. dir .. "'"))
    local out = {}
    for l in h:lines() do out[#out + 1] = l end
    h:close()
    return out
end

-- A word of len lowercase letters from math.random, so a seeded caller gets the same word.
function M.rand_word(len)
    local cs = {}
    for j = 1, len do cs[j] = string.char(math.random(97, 122)) end
    return table.concat(cs)
end

-- The rows {id = from}, ..., {id = from + n - 1}: what range(n) gives with from = 0.
function M.ids(n, from)
    local out = {}
    for i = 1, n do out[i] = {id = (from or 0) + i - 1} end
    return out
end

-- The rows as a sorted list of their printed forms: equal multisets give equal lists.
function M.multiset(rows)
    local out = {}
    for i, r in ipairs(rows) do out[i] = t.show(r) end
    table.sort(out)
    return out
end

return M
