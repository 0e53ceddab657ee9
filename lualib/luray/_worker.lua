-- The worker process's loop: receive tasks from the node, run them, send their results.
-- Actor calls run in order; with max_concurrency > 1 they run as coroutines, and a call blocked
-- in luray.get, luray.wait or luray.sleep lets the others run.
local core = require("luray.core")
local luray = require("luray")

local M = {}

local NORMAL, CREATE, CALL = 0, 1, 2

local actor = { self = nil, class = nil, concurrency = 1 }

-- A descriptor the actor asked this loop to watch beside its inbox (M.watch), and the function
-- to call when it is readable. Tasks come first: the function runs when no task is waiting.
local watch = { fd = nil, fn = nil }

-- Runs the watched descriptor's function; an error in it is printed, the loop goes on. True
-- when the function says it has more to do (then it runs again once no task waits).
local function run_watch()
    if not watch.fn then return false end
    local ok, again = xpcall(watch.fn, debug.traceback)
    if not ok then io.stderr:write("luray worker: ", tostring(again), "\n") end
    return ok and again == true
end

local function error_value(t, err, tb)
    if luray.is_error(err) then return err end
    if type(err) == "table" and type(err.type) == "string" and err.message then return err end
    local msg = type(err) == "string" and err or tostring(err)
    local etype = "TaskError"
    if type(err) == "string" and err:find("TaskCancelledError", 1, true) then etype = "TaskCancelledError" end
    local ctx = luray.get_runtime_context()
    return {
        type = etype,
        message = msg,
        traceback = tb or "",
        task = t.name,
        node_id = ctx.node_id,
        cause = type(err) ~= "string" and err or nil,
    }
end

local function handler(err)
    local tb = debug.traceback("", 2)
    return { err = err, tb = tb }
end

-- Large arguments come as one table in the store: read it (tensors in it are views).
local function load_args(t)
    if not t.args_object then return end
    local ok, packed = pcall(luray.get, t.args_object)
    t.args_object = nil
    t.had_args_object = true
    if not ok then return packed end
    t.args = packed
end

-- Replaces top-level ObjectRef arguments by their values; returns an error value if one failed.
-- Returns an error value, or nil and whether a resolved argument is a view into the store.
local function resolve_args(args)
    local views = false
    for i = 1, args.n do
        local a = args[i]
        if core.is_ref(a) then
            local ok, v = pcall(luray.get, a)
            if not ok then return v end
            args[i] = v
            views = views or type(v) == "userdata"
        end
    end
    return nil, views
end

-- ---- runtime_env of drivers on a running cluster (luray.init{runtime_env=...})

local base_path = package.path
local env_hash -- the environment this worker is in now
local env_saved = {} -- variables it set, with the values they had before

local function exists(path)
    local f = io.open(path .. "/.", "r")
    if f then f:close() end
    return f ~= nil
end

-- Makes the folder a task's driver shipped this worker's current directory and the first place
-- `require` looks, unpacking it once per node; sets its env_vars. Returns an error value or nil.
local function enter_env(t, m)
    if env_hash == m.__luray_runtime_env then return nil end
    for k, v in pairs(env_saved) do core.setenv(k, v) end
    env_saved = {}
    package.path = base_path
    if m.ref then
        local session = os.getenv("LURAY_SESSION") or "."
        local dir = session .. "/runtime_env-" .. m.__luray_runtime_env
        if not exists(dir) then
            local ok, blob = pcall(luray.get, m.ref)
            if not ok then return blob end
            local tmp = dir .. ".tmp" .. tostring(os.time()) .. "-" .. tostring(math.random(1 << 30))
            local done, err = core.pack_unpack(blob, tmp)
            if not done then
                return error_value(t, luray._error("RuntimeEnvSetupError",
                    "cannot unpack the driver's working_dir: " .. tostring(err)))
            end
            if not core.rename(tmp, dir) and not exists(dir) then
                return error_value(t, luray._error("RuntimeEnvSetupError",
                    "cannot move the driver's working_dir into place at " .. dir))
            end
            os.execute("rm -rf '" .. tmp .. "' 2>/dev/null") -- another worker was first
        end
        package.path = dir .. "/?.lua;" .. dir .. "/?/init.lua;" .. base_path
        core.chdir(dir)
    end
    for k, v in pairs(m.env or {}) do
        env_saved[k] = os.getenv(k) or ""
        core.setenv(k, v)
    end
    env_hash = m.__luray_runtime_env
    return nil
end

local start_dir = os.getenv("PWD")

-- Back to the worker's own environment, for a task whose driver has none.
local function leave_env()
    if not env_hash then return end
    for k, v in pairs(env_saved) do core.setenv(k, v) end
    env_saved = {}
    package.path = base_path
    if start_dir then core.chdir(start_dir) end
    env_hash = nil
    luray._set_runtime_env(nil)
end

-- The first argument is the driver's runtime_env when it has one: entered, then dropped. Tasks
-- this worker submits while in it carry it on.
local function take_env(t, args)
    local m = args[1]
    if args.n < 1 or type(m) ~= "table" or not m.__luray_runtime_env then
        leave_env()
        return nil
    end
    table.remove(args, 1)
    args.n = args.n - 1
    local err = enter_env(t, m)
    if not err then luray._set_runtime_env(m) end
    return err
end

local function finish(t, ok, ...)
    if ok then
        local err = core.done(t.id, 0, t.num_returns, ...)
        if err then
            core.done(t.id, 1, t.num_returns, error_value(t, luray._error("SerializationError", err)))
        end
    else
        local e = ...
        local value = error_value(t, e.err, e.tb)
        local status = 1
        if t.retry_exceptions and t.kind == NORMAL then status = 2 end
        local serr = core.done(t.id, status, t.num_returns, value)
        if serr then
            core.done(t.id, status, t.num_returns,
                { type = value.type, message = tostring(value.message), traceback = value.traceback, task = t.name })
        end
    end
end

local function decode_failed(t)
    if not t.error then return false end
    core.done(t.id, 1, t.num_returns, { type = "TaskError", task = t.name, traceback = "",
        message = t.error })
    return true
end

local function run(t, fn, self)
    luray._set_current(t.id)
    if decode_failed(t) then return end
    local derr = load_args(t)
    local args = t.args
    local views = false
    if not derr and not self then derr = take_env(t, args) end
    if not derr then derr, views = resolve_args(args) end
    if derr then
        core.done(t.id, 1, t.num_returns, derr)
        return
    end
    local stored = t.args_object ~= nil or t.had_args_object or views
    if self then
        finish(t, xpcall(fn, handler, self, table.unpack(args, 1, args.n)))
    else
        finish(t, xpcall(fn, handler, table.unpack(args, 1, args.n)))
    end
    if stored then
        -- views of the stored arguments pin them in the store: let them go now
        t.args = nil
        args = nil
        collectgarbage()
    end
end

local function create_actor(t)
    if decode_failed(t) then return end
    local class = t.fn
    actor.class = class
    actor.self = setmetatable({}, { __index = class })
    actor.concurrency = t.max_concurrency or 1
    luray._set_current(t.id, t.id, actor.concurrency > 1)
    local derr = load_args(t)
    local args = t.args
    derr = derr or take_env(t, args)
    derr = derr or resolve_args(args)
    if derr then
        core.done(t.id, 1, t.num_returns, derr)
        return
    end
    if class.init then
        local ok, e = xpcall(class.init, handler, actor.self, table.unpack(args, 1, args.n))
        if not ok then
            core.done(t.id, 1, t.num_returns, error_value(t, e.err, e.tb))
            return
        end
    end
    core.done(t.id, 0, t.num_returns)
end

local function method_of(t)
    local fn = actor.class and actor.class[t.name]
    if type(fn) ~= "function" then
        core.done(t.id, 1, t.num_returns, { type = "TaskError", task = t.name, traceback = "",
            message = "actor has no method '" .. tostring(t.name) .. "'" })
        return nil
    end
    return fn
end

local function serial_loop()
    local again = false
    while true do
        local kind, t = core.recv(again and 0 or nil, watch.fd)
        again = false
        if kind == "exit" then return end
        if kind == "fd" or kind == nil then again = run_watch() end
        if kind == "exec" then
            if t.kind == NORMAL then
                run(t, t.fn)
            elseif t.kind == CREATE then
                create_actor(t)
                if actor.concurrency > 1 then return "concurrent" end
            else
                local fn = method_of(t)
                if fn then run(t, fn, actor.self) end
            end
            luray._set_current(nil)
        end
    end
end

local function concurrent_loop()
    local running, queued = {}, {}
    local function start(t)
        local fn = method_of(t)
        if not fn then return end
        local co = coroutine.create(function() run(t, fn, actor.self) end)
        running[#running + 1] = co
    end
    while true do
        local kind, t = core.recv(#running > 0 and 0.001 or nil, watch.fd)
        if kind == "exit" then return end
        if kind == "fd" then run_watch() end
        if kind == "exec" then
            if #running < actor.concurrency then start(t) else queued[#queued + 1] = t end
        end
        local i = 1
        while i <= #running do
            local co = running[i]
            local ok, err = coroutine.resume(co)
            if not ok then io.stderr:write("luray worker: ", tostring(err), "\n") end
            if coroutine.status(co) == "dead" then
                table.remove(running, i)
                if #queued > 0 then start(table.remove(queued, 1)) end
            else
                i = i + 1
            end
        end
    end
end

-- Has this worker's loop call fn whenever fd (a socket a plugin opened, say) is readable and no
-- task is waiting; M.watch(nil) stops it. For the actor this worker hosts (serve's replicas).
function M.watch(fd, fn)
    if fd ~= nil and (math.type(fd) ~= "integer" or type(fn) ~= "function") then
        error("watch(fd, fn): expected an integer descriptor and a function", 2)
    end
    watch.fd, watch.fn = fd, fn
end

function M.main()
    local wd = os.getenv("LURAY_WORKING_DIR")
    if wd and wd ~= "" then
        package.path = wd .. "/?.lua;" .. wd .. "/?/init.lua;" .. package.path
    end
    luray._connect_worker()
    core.enable_cancel()
    if serial_loop() == "concurrent" then concurrent_loop() end
    core.flush()
    core.disconnect()
end

return M
