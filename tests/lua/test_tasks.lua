-- Tasks: submit, get, wait, options, nested tasks, errors, retries, cancel.
local t = require("harness")
luray.init{num_cpus = 2}

local double = luray.remote(function(x) return x * 2 end)

t.test("remote returns a ref and get returns the value", function()
    local r = double:remote(21)
    t.truthy(luray.ObjectRef == getmetatable(r))
    t.eq(luray.get(r), 42)
    t.truthy(tostring(r):match("^ObjectRef%(%x+%)$"))
    t.eq(#r:hex(), 32)
end)

t.test("get of a list keeps order", function()
    local refs = {}
    for i = 1, 200 do refs[i] = double:remote(i) end
    local vals = luray.get(refs)
    t.eq(#vals, 200)
    for i = 1, 200 do t.eq(vals[i], 2 * i) end
end)

t.test("integers and floats stay distinct through a task", function()
    local id = luray.remote(function(a, b) return a, b end):options{num_returns = 2}
    local ra, rb = id:remote(3, 3.0)
    t.eq(math.type(luray.get(ra)), "integer")
    t.eq(math.type(luray.get(rb)), "float")
end)

t.test("num_returns gives several refs", function()
    local three = luray.remote({num_returns = 3}, function() return 1, "two", {3} end)
    local a, b, c = three:remote()
    t.eq(luray.get(a), 1)
    t.eq(luray.get(b), "two")
    t.eq(luray.get(c), {3})
end)

t.test("top-level ref arguments are resolved, nested ones stay refs", function()
    local r = luray.put(10)
    local f = luray.remote(function(x, tbl)
        return x + 1, luray.ObjectRef == getmetatable(tbl.ref)
    end):options{num_returns = 2}
    local a, b = f:remote(r, {ref = r})
    t.eq(luray.get(a), 11)
    t.eq(luray.get(b), true)
end)

t.test("a task's result feeds the next task", function()
    local r = double:remote(1)
    for _ = 1, 5 do r = double:remote(r) end
    t.eq(luray.get(r), 64)
end)

t.test("nested tasks: a task submits and gets tasks", function()
    local inner = luray.remote(function(x) return x + 1 end)
    local outer = luray.remote(function(n)
        local refs = {}
        for i = 1, n do refs[i] = inner:remote(i) end
        local s = 0
        for _, v in ipairs(luray.get(refs)) do s = s + v end
        return s
    end)
    -- more outer tasks than CPUs: blocked workers must release their CPU
    local refs = {}
    for i = 1, 4 do refs[i] = outer:remote(10) end
    t.eq(luray.get(refs), {65, 65, 65, 65})
end)

t.test("nested tasks behind a long queue: pipelined tasks are handed back, no deadlock", function()
    local leaf = luray.remote(function(x) return x * 3 end)
    local mid = luray.remote(function(x)
        return luray.get(leaf:remote(x)) + luray.get(leaf:remote(x + 1))
    end)
    local refs = {}
    for i = 1, 20 do refs[i] = mid:remote(i) end
    local vals = luray.get(refs)
    for i = 1, 20 do t.eq(vals[i], 3 * i + 3 * (i + 1)) end
end)

t.test("many tasks at once: every result arrives once and in order", function()
    local id = luray.remote(function(i) return i end)
    local refs = {}
    for i = 1, 5000 do refs[i] = id:remote(i) end
    local vals = luray.get(refs)
    t.eq(#vals, 5000)
    for i = 1, 5000 do
        if vals[i] ~= i then t.eq(vals[i], i) end
    end
end)

t.test("cancel reaches tasks queued behind others", function()
    local slow = luray.remote(function(s) luray.sleep(s) return s end)
    local refs = {}
    for i = 1, 30 do refs[i] = slow:remote(0.02) end
    local victim = refs[20]
    luray.cancel(victim)
    local err = t.raises(function() luray.get(victim) end, "cancel")
    t.eq(err.type, "TaskCancelledError")
    for i = 21, 30 do t.eq(luray.get(refs[i]), 0.02) end
end)

t.test("cancel of tasks queued on a busy worker: no value leaks to anyone", function()
    local core = require("luray.core")
    local busy = luray.remote(function(i)
        local t0 = core.now()
        while core.now() - t0 < 0.15 do end
        return i
    end)
    local refs = {}
    for i = 1, 16 do refs[i] = busy:remote(i) end
    luray.wait(refs, {num_returns = 0, timeout = 0})
    luray.sleep(0.05)
    for i = 3, 10 do luray.cancel(refs[i]) end
    local peek = luray.remote(function(box)
        local ok, v = pcall(luray.get, box[1])
        return ok and v or v.type
    end)
    for i = 1, 16 do
        if i >= 3 and i <= 10 then
            local err = t.raises(function() luray.get(refs[i]) end, "cancel")
            t.eq(err.type, "TaskCancelledError")
            t.eq(luray.get(peek:remote({refs[i]})), "TaskCancelledError")
        else
            t.eq(luray.get(refs[i]), i)
        end
    end
end)

t.test("short get and wait timeouts answer on time", function()
    local core = require("luray.core")
    local slow = luray.remote(function() luray.sleep(3) return 1 end):remote()
    local t0 = core.now()
    local ready = luray.wait({slow}, {num_returns = 1, timeout = 0.05})
    t.eq(#ready, 0)
    t.truthy(core.now() - t0 < 0.4, "wait took " .. (core.now() - t0) .. " s")
    t0 = core.now()
    t.raises(function() luray.get(slow, {timeout = 0.1}) end, "timed out")
    t.truthy(core.now() - t0 < 0.5, "get took " .. (core.now() - t0) .. " s")
    luray.cancel(slow, {force = true})
end)

t.test("upvalues are captured by value, modules by name", function()
    local factor = 7
    local helper = { scale = function(x) return x * factor end }
    local f = luray.remote(function(x) return helper.scale(x), math.floor(2.5), string.rep("a", 2) end)
    f = f:options{num_returns = 3}
    local a, b, c = f:remote(6)
    t.eq(luray.get(a), 42)
    t.eq(luray.get(b), 2)
    t.eq(luray.get(c), "aa")
end)

t.test("a task that raises gives TaskError with the remote traceback", function()
    local bad = luray.remote(function() error("boom from the task") end)
    local err = t.raises(function() luray.get(bad:remote()) end, "boom from the task")
    t.eq(err.type, "TaskError")
    t.truthy(err.traceback:find("stack traceback", 1, true))
    t.truthy(err.task:find("test_tasks.lua", 1, true))
    t.truthy(tostring(err):find("TaskError", 1, true))
end)

t.test("a non-string error keeps its value as cause", function()
    local bad = luray.remote(function() error({code = 7}) end)
    local ok, err = pcall(luray.get, bad:remote())
    t.eq(ok, false)
    t.eq(err.type, "TaskError")
    t.eq(err.cause.code, 7)
end)

t.test("an error propagates through a dependent task", function()
    local bad = luray.remote(function() error("first") end)
    local err = t.raises(function() luray.get(double:remote(bad:remote())) end, "first")
    t.eq(err.type, "TaskError")
end)

t.test("get with a timeout raises GetTimeoutError", function()
    local slow = luray.remote(function() luray.sleep(2) return 1 end)
    local r = slow:remote()
    local err = t.raises(function() luray.get(r, {timeout = 0.1}) end, "timed out")
    t.eq(err.type, "GetTimeoutError")
    luray.cancel(r, {force = true})
end)

t.test("wait splits ready and not ready, keeping order", function()
    local slow = luray.remote(function(s) luray.sleep(s) return s end)
    local fast = double:remote(1)
    local long = slow:remote(3)
    luray.get(fast)
    local ready, not_ready = luray.wait({long, fast}, {num_returns = 1, timeout = 2})
    t.eq(#ready, 1)
    t.truthy(ready[1] == fast)
    t.truthy(not_ready[1] == long)
    local r2, nr2 = luray.wait({fast}, {num_returns = 1})
    t.eq(#r2, 1)
    t.eq(#nr2, 0)
    luray.cancel(long, {force = true})
end)

t.test("a task that can never fit raises a clear error", function()
    local huge = luray.remote({num_cpus = 64}, function() return 1 end)
    local err = t.raises(function() luray.get(huge:remote()) end, "can never be scheduled")
    t.eq(err.type, "TaskUnschedulableError")
    local custom = luray.remote({resources = {TPU = 1}}, function() return 1 end)
    t.raises(function() luray.get(custom:remote()) end, "TPU")
end)

t.test("fractional CPUs let more tasks run at once", function()
    local quarter = luray.remote({num_cpus = 0.25}, function()
        luray.sleep(0.3)
        return luray.get_runtime_context().worker_id
    end)
    local refs = {}
    for i = 1, 8 do refs[i] = quarter:remote() end
    local t0 = require("luray.core").now()
    local ids = luray.get(refs)
    local elapsed = require("luray.core").now() - t0
    local distinct = {}
    for _, id in ipairs(ids) do distinct[id] = true end
    local n = 0
    for _ in pairs(distinct) do n = n + 1 end
    t.truthy(n >= 3, "expected several workers at once, got " .. n)
    t.truthy(elapsed < 2.0, "8 quarter-CPU tasks of 0.3 s took " .. elapsed .. " s")
end)

t.test("worker death is retried, then WorkerCrashedError", function()
    local dir = os.tmpname()
    os.remove(dir)
    local flaky = luray.remote({max_retries = 2}, function(path)
        local f = io.open(path, "r")
        if not f then
            io.open(path, "w"):close()
            os.exit(1)
        end
        f:close()
        return "survived"
    end)
    t.eq(luray.get(flaky:remote(dir)), "survived")
    os.remove(dir)
    local dies = luray.remote({max_retries = 1}, function() os.exit(3) end)
    local err = t.raises(function() luray.get(dies:remote()) end, "exited with status 3")
    t.eq(err.type, "WorkerCrashedError")
end)

t.test("retry_exceptions retries a raising task", function()
    local path = os.tmpname()
    local f = luray.remote({max_retries = 2, retry_exceptions = true}, function(p)
        local fh = io.open(p, "r")
        local n = tonumber(fh:read("a")) or 0
        fh:close()
        fh = io.open(p, "w")
        fh:write(tostring(n + 1))
        fh:close()
        if n < 2 then error("not yet") end
        return n
    end)
    t.eq(luray.get(f:remote(path)), 2)
    os.remove(path)
end)

t.test("cancel of a queued task and of a running one", function()
    local slow = luray.remote(function() luray.sleep(5) return 1 end)
    local running = {slow:remote(), slow:remote()}
    luray.sleep(0.3)
    local queued = slow:remote()
    luray.cancel(queued)
    local e1 = t.raises(function() luray.get(queued) end, "cancel")
    t.eq(e1.type, "TaskCancelledError")
    luray.cancel(running[1], {force = true})
    local e2 = t.raises(function() luray.get(running[1]) end, "cancel")
    t.eq(e2.type, "TaskCancelledError")
    luray.cancel(running[2])
    local e3 = t.raises(function() luray.get(running[2]) end, "cancel")
    t.eq(e3.type, "TaskCancelledError")
end)

t.test("what cannot travel raises SerializationError naming the path", function()
    local err = t.raises(function() double:remote(1, {conn = io.stdout}) end, "FILE%*")
    t.eq(err.type, "SerializationError")
    t.truthy(err.message:find('argument 2: field "conn"', 1, true))
    t.raises(function() double:remote(coroutine.create(function() end)) end, "argument 1")
end)

t.test("bad options are refused with the option's name", function()
    t.raises(function() luray.remote({num_cpu = 1}, function() end) end, "num_cpu")
    t.raises(function() luray.remote({num_returns = -1}, function() end) end, "num_returns")
    t.raises(function() double(1) end, "remote")
    t.raises(function() luray.get(42) end, "ObjectRef")
end)

t.test("runtime context and cluster resources", function()
    local ctx = luray.get_runtime_context()
    t.truthy(ctx.node_id)
    local res = luray.cluster_resources()
    t.eq(res.CPU, 2)
    local nodes = luray.nodes()
    t.eq(#nodes, 1)
    t.eq(nodes[1].alive, true)
    t.eq(nodes[1].resources.CPU, 2)
    local avail = luray.available_resources()
    t.truthy(avail.CPU <= 2)
    local remote_ctx = luray.get(luray.remote(function()
        return luray.get_runtime_context()
    end):remote())
    t.truthy(remote_ctx.task_id)
    t.eq(remote_ctx.node_id, ctx.node_id)
end)

t.done()
