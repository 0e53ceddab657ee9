-- The luray demo: parallel tasks, an actor, and shared-memory objects on an embedded cluster.
-- Run with `make demo` or `build/bin/luray run scripts/demo.lua`.
local core = require("luray.core")
luray.init()
print(string.format("cluster: %d CPUs, object store %.0f MB",
    luray.cluster_resources().CPU, luray.cluster_resources().object_store_memory / 1e6))

-- 1. Tasks: estimate pi with many parallel samples.
local sample = luray.remote(function(n, seed)
    math.randomseed(seed)
    local inside = 0
    for _ = 1, n do
        local x, y = math.random(), math.random()
        if x * x + y * y <= 1 then inside = inside + 1 end
    end
    return inside
end)
local t0 = core.now()
local refs = {}
for i = 1, 16 do refs[i] = sample:remote(200000, i) end
local inside = 0
for _, v in ipairs(luray.get(refs)) do inside = inside + v end
print(string.format("pi is about %.4f (16 tasks, %.2f s)", 4 * inside / (16 * 200000), core.now() - t0))

-- 2. An actor keeps state between calls: a word counter fed by tasks.
local Counter = luray.actor{
    init = function(self) self.counts = {} end,
    add = function(self, words)
        for w, n in pairs(words) do self.counts[w] = (self.counts[w] or 0) + n end
    end,
    top = function(self, k)
        local list = {}
        for w, n in pairs(self.counts) do list[#list + 1] = {w, n} end
        table.sort(list, function(a, b) return a[2] > b[2] or (a[2] == b[2] and a[1] < b[1]) end)
        local out = {}
        for i = 1, math.min(k, #list) do out[i] = list[i][1] .. "=" .. list[i][2] end
        return table.concat(out, " ")
    end,
}
local counter = Counter:remote()
local text = {
    "the quick brown fox jumps over the lazy dog",
    "the dog sleeps and the fox runs",
    "a fox and a dog are friends in the end",
}
local count_words = luray.remote(function(line, c)
    local words = {}
    for w in line:gmatch("%a+") do words[w] = (words[w] or 0) + 1 end
    return luray.get(c.add:remote(words))
end)
local done = {}
for i, line in ipairs(text) do done[i] = count_words:remote(line, counter) end
luray.get(done)
print("top words: " .. luray.get(counter.top:remote(4)))

-- 3. Objects: a 80 MB tensor put once, read in place by tasks on the node.
local big = luray.zeros({10 * 1000 * 1000}, "float64")
for i = 1, 10 do big:set(i * 1000000, i) end
local ref = luray.put(big)
local partial = luray.remote(function(t, from, to)
    local s = 0
    for i = from, to, 1000000 do s = s + t:get(i) end
    return s
end)
local parts = luray.get({partial:remote(ref, 1000000, 5000000), partial:remote(ref, 6000000, 10000000)})
print(string.format("sum over a shared 80 MB tensor: %g + %g = %g", parts[1], parts[2], parts[1] + parts[2]))

-- 4. Failures are values: a task that raises gives a TaskError with its remote traceback.
local ok, err = pcall(luray.get, luray.remote(function() error("no such file: data.csv") end):remote())
print("caught " .. err.type .. ": " .. err.message)
luray.shutdown()
print("demo finished")
