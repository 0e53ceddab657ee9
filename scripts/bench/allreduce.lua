-- Bench group "allreduce" (BENCH.md, ours): allreduce_10mb_ms, the mean of 10 MiB of float32
-- (2,621,440 elements) between 2 actors on one node, through the collective plugin's shared
-- memory group. Each actor times its own calls; a call counts as long as the slower rank took,
-- and the figure is the median over 30 calls after 5 warm-up calls.
--
--   luray run allreduce.lua                  allreduce_10mb_ms
local luray = require("luray")
local C = require("luray._plugin.collective")
local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local B = dofile(dir .. "/lib/bench.lua")

local BYTES = 10 * 1024 * 1024
local WARMUP, CALLS = 5, 30

local Rank = luray.actor{
    join = function(self, spec)
        self.g = require("luray._plugin.collective").group(spec)
        return true
    end,
    -- Per-call seconds of `calls` allreduces (after `warmup` untimed ones) of n float32 values.
    run = function(self, n, warmup, calls)
        local now = require("luray.core").now
        local x = luray.tensor(string.pack("<f", 0.5 + self.g:rank()):rep(n))
        for _ = 1, warmup do self.g:allreduce(x, "mean") end
        local times = {}
        for i = 1, calls do
            local t0 = now()
            self.g:allreduce(x, "mean")
            times[i] = now() - t0
        end
        if x:get(n) ~= 1.0 then error("allreduce gave " .. x:get(n) .. ", not 1.0", 0) end
        return times
    end,
}

local function figure()
    local n = BYTES // 4
    local id = string.format("bench-allreduce-%d-%d", os.time(), math.random(1, 1e9))
    local ranks, joins = {}, {}
    for k = 1, 2 do
        ranks[k] = Rank:remote()
        joins[k] = ranks[k].join:remote({id = id, rank = k - 1, world_size = 2,
                                         transport = "shm", timeout_s = 60})
    end
    luray.get(joins)
    local per_rank = luray.get({ranks[1].run:remote(n, WARMUP, CALLS),
                                ranks[2].run:remote(n, WARMUP, CALLS)})
    for _, r in ipairs(ranks) do luray.kill(r) end
    local runs = {}
    for i = 1, CALLS do runs[i] = math.max(per_rank[1][i], per_rank[2][i]) * 1e3 end
    return B.median(runs), runs
end

local ok, err = pcall(function()
    B.log("allreduce_10mb_ms: %d warm-up and %d timed calls", WARMUP, CALLS)
    local v, runs = figure()
    B.log("allreduce_10mb_ms: %.3f ms", v)
    B.emit("allreduce_10mb_ms", v, "ms", runs,
           { bytes = BYTES, ranks = 2, transport = "shm", dtype = "float32", op = "mean" })
end)
if not ok then
    B.log("allreduce_10mb_ms: FAILED: %s", tostring(err))
    B.failed = (B.failed or 0) + 1
end
B.finish()
