-- Custom and fractional resources: counted exactly, held while tasks run, given back after.
local t = require("harness")
luray.init{num_cpus = 2, resources = {TPU = 2}}

t.test("custom resources appear in the cluster's totals", function()
    local res = luray.cluster_resources()
    t.eq(res.TPU, 2)
    t.eq(res.CPU, 2)
end)

t.test("tasks hold custom resources while they run and give them back", function()
    local hold = luray.remote({num_cpus = 0, resources = {TPU = 1}}, function(s)
        luray.sleep(s)
        return 1
    end)
    local a, b, c = hold:remote(0.5), hold:remote(0.5), hold:remote(0.5)
    luray.sleep(0.2)
    t.eq(luray.available_resources().TPU, 0)
    -- the third waits for a TPU: two at a time
    local ready = luray.wait({a, b, c}, {num_returns = 3, timeout = 0.2})
    t.eq(#ready, 0)
    t.eq(luray.get({a, b, c}), {1, 1, 1})
    luray.sleep(0.1)
    t.eq(luray.available_resources().TPU, 2)
    t.eq(luray.available_resources().CPU, 2)
end)

t.test("fractions add up exactly", function()
    local third = luray.remote({num_cpus = 1 / 3}, function() luray.sleep(0.3) return 1 end)
    local refs = {}
    for i = 1, 6 do refs[i] = third:remote() end
    luray.sleep(0.15)
    local avail = luray.available_resources().CPU
    t.truthy(math.abs(avail) < 1e-3, "expected all CPU in use, available " .. avail)
    t.eq(#luray.get(refs), 6)
    luray.sleep(0.1)
    t.truthy(math.abs(luray.available_resources().CPU - 2) < 1e-3)
end)

t.test("more of a custom resource than exists is refused", function()
    local greedy = luray.remote({resources = {TPU = 3}}, function() return 1 end)
    local err = t.raises(function() luray.get(greedy:remote()) end, "TPU")
    t.eq(err.type, "TaskUnschedulableError")
    t.raises(function() luray.remote({resources = {CPU = 1}}, function() end) end, "num_cpus")
end)

t.done()
