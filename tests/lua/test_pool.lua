-- The worker pool: extra workers started while tasks block in get go away after idling.
local t = require("harness")
local core = require("luray.core")
core.setenv("LURAY_IDLE_WORKER_TIMEOUT", "0.5")
luray.init{num_cpus = 2}

local leaf = luray.remote(function(x) return x end)
local mid = luray.remote(function(x) return luray.get(leaf:remote(x)) end)

local function burst()
    local refs = {}
    for i = 1, 8 do refs[i] = mid:remote(i) end
    return luray.get(refs)
end

t.test("blocked tasks get extra workers, which retire after idling", function()
    t.eq(burst(), {1, 2, 3, 4, 5, 6, 7, 8})
    t.truthy(luray._info().workers > 2, "expected extra workers during the burst")
    local deadline = core.now() + 5
    while luray._info().workers > 2 and core.now() < deadline do luray.sleep(0.1) end
    t.eq(luray._info().workers, 2)
end)

t.test("the pool still serves after retiring workers", function()
    t.eq(burst(), {1, 2, 3, 4, 5, 6, 7, 8})
    t.eq(luray.get(leaf:remote("again")), "again")
end)

t.done()
