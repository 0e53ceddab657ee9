-- Bench group "tasks": Ray's task microbenchmarks (BENCH.md Core): sync and async no-op tasks
-- from one driver, from 4 actors at once, and 1,000 successive waits.
local luray = require("luray")
local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local B = dofile(dir .. "/lib/bench.lua")

local noop = luray.remote(function() return 0 end)

B.rate("single_client_tasks_sync", "tasks/s", B.n(1000), function()
    for _ = 1, B.n(1000) do luray.get(noop:remote()) end
end)

B.rate("single_client_tasks_async", "tasks/s", B.n(1000) * 5, function()
    for _ = 1, 5 do
        local refs = {}
        for i = 1, B.n(1000) do refs[i] = noop:remote() end
        luray.get(refs)
    end
end)

-- 4 actors, each submitting n no-op tasks from inside the cluster and getting them.
local per_client = B.n(10000)
local Client = luray.actor{
    init = function(self)
        self.noop = luray.remote(function() return 0 end)
    end,
    batch = function(self, n)
        local refs = {}
        for i = 1, n do refs[i] = self.noop:remote() end
        luray.get(refs)
        return n
    end,
}
local clients = {}
for i = 1, 4 do clients[i] = Client:remote() end
B.rate("multi_client_tasks_async", "tasks/s", per_client * #clients, function(share)
    local refs = {}
    local n = math.max(1, math.floor(per_client * share))
    for i = 1, #clients do refs[i] = clients[i].batch:remote(n) end
    luray.get(refs)
end, { clients = #clients, tasks_per_client = per_client })

-- One round: submit 1,000 tasks, then wait for them one at a time.
local nwait = B.n(1000)
B.rate("single_client_wait_1k_refs", "rounds/s", 1, function()
    local not_ready = {}
    for i = 1, nwait do not_ready[i] = noop:remote() end
    for _ = 1, nwait do
        local _
        _, not_ready = luray.wait(not_ready, { num_returns = 1 })
    end
end, { refs = nwait })

B.finish()
