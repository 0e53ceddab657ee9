-- Bench "idle RSS": starts the embedded cluster, lets its workers start and go idle, then reads
-- VmRSS of the node daemon (`luray _node`, run as a process: LURAY_EMBEDDED=process) and its
-- workers (`luray _worker`) from /proc.
local luray = require("luray")
local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local B = dofile(dir .. "/lib/bench.lua")

local function read(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local s = f:read("a")
    f:close()
    return s
end

local function rss_kb(pid)
    local s = read("/proc/" .. pid .. "/status")
    return s and tonumber(s:match("VmRSS:%s*(%d+)"))
end

-- Every process below `root`, with its command line (NULs as spaces).
local function descendants(root)
    local parent, cmd = {}, {}
    local ls = io.popen("ls /proc")
    for name in ls:lines() do
        local pid = tonumber(name)
        local stat = pid and read("/proc/" .. pid .. "/stat")
        if stat then
            -- the command in stat is in parentheses and may hold spaces: read after the last ')'
            parent[pid] = tonumber(stat:match("%)%s+%S+%s+(%d+)"))
            cmd[pid] = (read("/proc/" .. pid .. "/cmdline") or ""):gsub("%z", " ")
        end
    end
    ls:close()
    local out = {}
    for pid in pairs(parent) do
        local p, depth = parent[pid], 0
        while p and p > 1 and depth < 64 do
            if p == root then out[#out + 1] = { pid = pid, cmd = cmd[pid] } break end
            p, depth = parent[p], depth + 1
        end
    end
    return out
end

local ok, err = pcall(function()
    local self_pid = tonumber(read("/proc/self/stat"):match("^(%d+)"))
    luray.init{}
    local cpus = math.floor((luray.cluster_resources() or {}).CPU or 2)
    -- Run a few tasks at once so every CPU's worker starts, then let them idle.
    local f = luray.remote(function() luray.sleep(0.2) return 0 end)
    local refs = {}
    for i = 1, cpus * 2 do refs[i] = f:remote() end
    luray.get(refs)
    luray.sleep(2)
    local node_kb, worker_kbs = nil, {}
    for _, p in ipairs(descendants(self_pid)) do
        if p.cmd:find("_node", 1, true) then
            node_kb = (node_kb or 0) + (rss_kb(p.pid) or 0)
        elseif p.cmd:find("_worker", 1, true) then
            worker_kbs[#worker_kbs + 1] = rss_kb(p.pid) or 0
        end
    end
    assert(node_kb, "no `luray _node` process found below the driver")
    assert(#worker_kbs > 0, "no `luray _worker` process found below the driver")
    local sum = 0
    for _, k in ipairs(worker_kbs) do sum = sum + k end
    local driver_kb = rss_kb(self_pid)
    B.emit("idle_node_rss_mb", node_kb / 1024, "MB", nil, { driver_rss_mb = driver_kb / 1024 })
    table.sort(worker_kbs)
    B.emit("idle_worker_rss_mb", sum / #worker_kbs / 1024, "MB", nil, {
        workers = #worker_kbs, min_mb = worker_kbs[1] / 1024, max_mb = worker_kbs[#worker_kbs] / 1024,
    })
end)
if not ok then
    B.log("idle_rss: FAILED: %s", tostring(err))
    B.failed = 1
end
B.finish()
