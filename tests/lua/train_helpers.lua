-- Shared by the Train tests: a private folder and a seeded separable data set.
local data = require("luray.data")

local M = {}

-- A fresh folder; remove it with M.cleanup(path).
function M.folder()
    local base = os.tmpname()
    os.remove(base)
    assert(data.C.mkdirs(base))
    return base
end

function M.cleanup(path) os.execute("rm -rf '" .. path .. "'") end

-- n rows {x1, x2, label = (x1 + x2 > 0) and 1 or 0} from a seeded generator.
function M.separable(n, seed)
    local s = seed
    local function rnd()
        s = (s * 1103515245 + 12345) % 2147483648
        return s / 2147483648 * 2 - 1
    end
    local rows = {}
    for i = 1, n do
        local a, b = rnd(), rnd()
        rows[i] = {x1 = a, x2 = b, label = (a + b > 0) and 1 or 0}
    end
    return data.from_items(rows)
end

return M
