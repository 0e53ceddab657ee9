-- Bench group "pg": placement_group_create_removal (BENCH.md Core), as Ray's ray_perf: create
-- 100 one-bundle groups (small bundles, so all fit at once), wait for each, remove them; on the
-- embedded one-node cluster.
local luray = require("luray")
local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local B = dofile(dir .. "/lib/bench.lua")

local n = B.n(100)
B.rate("placement_group_create_removal", "groups/s", n, function(part)
    local count = math.max(1, math.floor(n * part))
    local groups = {}
    for i = 1, count do groups[i] = luray.placement_group({{CPU = 0.001}}, "PACK") end
    for i = 1, count do luray.get(groups[i]:ready()) end
    for i = 1, count do luray.remove_placement_group(groups[i]) end
    return count
end)

B.finish()
