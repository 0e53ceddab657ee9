-- Actors: ordered calls, state, named actors, kill, restarts, concurrency, errors.
local t = require("harness")
luray.init{num_cpus = 2}

local Counter = luray.actor{
    init = function(self, start) self.n = start or 0 end,
    incr = function(self, by) self.n = self.n + (by or 1); return self.n end,
    get = function(self) return self.n end,
    fail = function(self) error("method failed") end,
    pid = function(self)
        local f = io.open("/proc/self/stat")
        local s = f:read("l")
        f:close()
        return tonumber(s:match("^(%d+)"))
    end,
    die = function(self) os.exit(9) end,
}

t.test("calls from one caller run in order and keep state", function()
    local c = Counter:remote(10)
    t.truthy(tostring(c):match("^ActorHandle%(%x+%)$"))
    local refs = {}
    for i = 1, 100 do refs[i] = c.incr:remote() end
    local vals = luray.get(refs)
    for i = 1, 100 do t.eq(vals[i], 10 + i) end
    t.eq(luray.get(c.incr:remote(5)), 115)
    luray.kill(c)
end)

t.test("an error in a method leaves the actor alive", function()
    local c = Counter:remote()
    local err = t.raises(function() luray.get(c.fail:remote()) end, "method failed")
    t.eq(err.type, "TaskError")
    t.eq(luray.get(c.incr:remote()), 1)
    luray.kill(c)
end)

t.test("unknown methods are refused by name", function()
    local c = Counter:remote()
    t.raises(function() return c.nope end, "no method 'nope'")
    luray.kill(c)
end)

t.test("handles travel to tasks", function()
    local c = Counter:remote()
    local bump = luray.remote(function(h, k)
        for _ = 1, k do luray.get(h.incr:remote()) end
        return luray.get(h.get:remote())
    end)
    t.eq(luray.get(bump:remote(c, 5)), 5)
    t.eq(luray.get(c.get:remote()), 5)
    luray.kill(c)
end)

t.test("named actors and get_actor", function()
    local c = Counter:options{name = "global_counter"}:remote(100)
    local again = luray.get_actor("global_counter")
    t.truthy(again == c)
    t.eq(luray.get(again.incr:remote()), 101)
    local err = t.raises(function() Counter:options{name = "global_counter"}:remote() end, "already exists")
    t.eq(err.type, "ValueError")
    local same = Counter:options{name = "global_counter", get_if_exists = true}:remote()
    t.eq(luray.get(same.get:remote()), 101)
    -- every method works through a looked-up handle, the alphabetically first one too
    t.eq(luray.get(again.die ~= nil and again.fail:remote() and again.incr:remote()), 102)
    local e2 = t.raises(function() luray.get_actor("nobody") end, "no actor named")
    t.eq(e2.type, "ValueError")
    luray.kill(c)
    luray.sleep(0.2)
    t.raises(function() luray.get_actor("global_counter") end, "no actor named")
end)

t.test("kill makes later calls fail with ActorDiedError", function()
    local c = Counter:remote()
    t.eq(luray.get(c.incr:remote()), 1)
    luray.kill(c)
    local err = t.raises(function() luray.get(c.incr:remote()) end, "died")
    t.eq(err.type, "ActorDiedError")
end)

t.test("max_restarts restarts a dead actor with fresh state", function()
    local c = Counter:options{max_restarts = 1}:remote(0)
    t.eq(luray.get(c.incr:remote()), 1)
    local p1 = luray.get(c.pid:remote())
    local e = t.raises(function() luray.get(c.die:remote()) end, "died")
    t.eq(e.type, "ActorDiedError")
    t.eq(luray.get(c.incr:remote()), 1)
    t.ne(luray.get(c.pid:remote()), p1)
    -- the one restart is used up: the next death is final
    pcall(luray.get, c.die:remote())
    local err = t.raises(function() luray.get(c.get:remote()) end, "died")
    t.eq(err.type, "ActorDiedError")
end)

t.test("an actor without restarts stays dead", function()
    local c = Counter:remote()
    pcall(luray.get, c.die:remote())
    local err = t.raises(function() luray.get(c.get:remote()) end, "died")
    t.eq(err.type, "ActorDiedError")
end)

t.test("a constructor that raises kills the actor with its message", function()
    local Bad = luray.actor{init = function() error("bad constructor") end, m = function() return 1 end}
    local b = Bad:remote()
    local err = t.raises(function() luray.get(b.m:remote()) end, "bad constructor")
    t.eq(err.type, "ActorDiedError")
end)

t.test("max_concurrency runs blocked methods as coroutines", function()
    local Sleeper = luray.actor{
        nap = function(self, s) luray.sleep(s) return s end,
    }
    local a = Sleeper:options{max_concurrency = 8}:remote()
    local core = require("luray.core")
    local t0 = core.now()
    local refs = {}
    for i = 1, 8 do refs[i] = a.nap:remote(0.5) end
    luray.get(refs)
    local elapsed = core.now() - t0
    t.truthy(elapsed < 2.0, "8 naps of 0.5 s took " .. elapsed .. " s")
    luray.kill(a)
end)

t.test("wait and get inside a concurrent actor let other calls run", function()
    local Gate = luray.actor{
        init = function(self) self.opened = false end,
        open = function(self) self.opened = true return true end,
        waiter = function(self, box)
            local ready = luray.wait({box.ref}, {num_returns = 1, timeout = 10})
            return #ready, self.opened
        end,
    }
    local g = Gate:options{max_concurrency = 4}:remote()
    local slow = luray.remote(function() luray.sleep(0.5) return 1 end):remote()
    local w = g.waiter:options{num_returns = 2}
    local n, opened = w:remote({ref = slow})
    luray.sleep(0.1)
    t.eq(luray.get(g.open:remote()), true)
    t.eq(luray.get(n), 1)
    t.eq(luray.get(opened), true)
    luray.kill(g)
end)

t.test("bad actor options are refused", function()
    t.raises(function() luray.actor({lifetime = "forever"}, {}) end, "lifetime")
    t.raises(function() luray.actor({nme = "x"}, {}) end, "nme")
    t.raises(function() luray.actor(42) end, "table")
end)

t.done()
