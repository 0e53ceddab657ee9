-- Bench group "cluster" (BENCH.md Core, multi-node rows): run by cluster.sh as a driver on the
-- head of a three-node local cluster: SPREAD no-op tasks over the three nodes, and a 1 GB
-- tensor pulled from one node to another.
local luray = require("luray")
local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local B = dofile(dir .. "/lib/bench.lua")

local nodes = {}
for _, n in ipairs(luray.nodes()) do
    if n.alive and not n.is_head then nodes[#nodes + 1] = n.node_id end
end
table.sort(nodes)
assert(#nodes >= 2, "the cluster needs two nodes besides the head")

local noop = luray.remote({scheduling_strategy = "SPREAD"}, function() return 0 end)
B.rate("multi_node_tasks_async", "tasks/s", B.n(1000) * 5, function(part)
    for _ = 1, 5 do
        local refs = {}
        for i = 1, math.max(1, math.floor(B.n(1000) * part)) do refs[i] = noop:remote() end
        luray.get(refs)
    end
end, { nodes = 3, strategy = "SPREAD" })

-- The tensor is made on node A (pages written, so they are real memory); the clock runs from
-- the submit of a task pinned to node B that takes it as its argument until that task's result
-- (its length) is back: the pull from A into B's store, chunk by chunk. A new tensor each run.
-- 5 timed runs: the first pull into a fresh store pays its page faults (as put_gigabytes).
local A, Bn = nodes[1], nodes[2]
local make = luray.remote({scheduling_strategy = {node_id = A}}, function(n)
    local t = luray.zeros({n}, "uint8")
    for i = 1, n, 4096 do t:set(i, 1) end
    return t
end)
local use = luray.remote({scheduling_strategy = {node_id = Bn}}, function(t) return #t end)
local bytes = math.floor(1e9 * B.scale)
B.rate("object_transfer_gigabytes", "GB/s", bytes / 1e9, function(part)
    local n = math.max(4096, math.floor(bytes * part))
    local ref = make:remote(n)
    luray.wait({ref})
    local t0 = B.now()
    assert(luray.get(use:remote(ref)) == n)
    local dt = B.now() - t0
    ref = nil
    collectgarbage()
    return nil, dt
end, { bytes = bytes, chunk_bytes = 1048576, window = 16, source = "pages touched" }, 5)

B.finish()
