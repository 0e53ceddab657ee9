-- Bench group "actors": Ray's actor-call microbenchmarks (BENCH.md Core): 1:1 sync, async and
-- concurrent calls, and n:n calls from 4 tasks over num_cpus/2 actors.
local luray = require("luray")
local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local B = dofile(dir .. "/lib/bench.lua")

local Actor = luray.actor{
    small_value = function(self) return 0 end,
}

local a = Actor:remote()
B.rate("1_1_actor_calls_sync", "calls/s", B.n(1000), function()
    for _ = 1, B.n(1000) do luray.get(a.small_value:remote()) end
end)

B.rate("1_1_actor_calls_async", "calls/s", B.n(1000) * 5, function()
    for _ = 1, 5 do
        local refs = {}
        for i = 1, B.n(1000) do refs[i] = a.small_value:remote() end
        luray.get(refs)
    end
end)

local c = Actor:options{ max_concurrency = 16 }:remote()
B.rate("1_1_actor_calls_concurrent", "calls/s", B.n(1000) * 5, function()
    for _ = 1, 5 do
        local refs = {}
        for i = 1, B.n(1000) do refs[i] = c.small_value:remote() end
        luray.get(refs)
    end
end)

-- 4 tasks, each making n calls spread over num_cpus/2 actors.
local cpus = (luray.cluster_resources() or {}).CPU or 2
local nactors = math.max(1, math.floor(cpus / 2))
local actors = {}
for i = 1, nactors do actors[i] = Actor:remote() end
local calls = B.n(5000)
local work = luray.remote(function(hs, n)
    local refs = {}
    for i = 1, n do refs[i] = hs[(i - 1) % #hs + 1].small_value:remote() end
    luray.get(refs)
    return n
end)
B.rate("n_n_actor_calls_async", "calls/s", 4 * calls, function(share)
    local refs = {}
    local n = math.max(1, math.floor(calls * share))
    for i = 1, 4 do refs[i] = work:remote(actors, n) end
    luray.get(refs)
end, { actors = nactors, tasks = 4, calls_per_task = calls })

B.finish()
