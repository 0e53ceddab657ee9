-- luray: the Lua API of the runtime (tasks, actors, objects), built over the C module luray.core.
local core = require("luray.core")

local M = {}
local config = package.loaded["luray.config"] or {}

local state = {
    initialized = false,
    embedded_pid = nil,
    session = nil,
    node_id = nil,
    worker_id = nil,
    is_worker = false,
    task_id = nil,
    actor_id = nil,
}

-- ---------------------------------------------------------------- errors

local Error = {}
Error.__index = Error
Error.__name = "luray.Error"
Error.__tostring = function(e)
    local lines = { (e.type or "Error") .. ": " .. tostring(e.message) }
    if e.task and e.task ~= "" then
        lines[#lines + 1] = "  in task " .. e.task .. (e.node_id and (" on node " .. e.node_id) or "")
    end
    if e.traceback and e.traceback ~= "" then
        lines[#lines + 1] = "remote traceback:"
        lines[#lines + 1] = e.traceback
    end
    return table.concat(lines, "\n")
end

-- Makes an error value of one of the documented types.
function M._error(etype, message, extra)
    local e = { type = etype, message = message, traceback = "" }
    for k, v in pairs(extra or {}) do e[k] = v end
    return setmetatable(e, Error)
end

local function raise(etype, message, extra)
    error(M._error(etype, message, extra), 0)
end

local function as_error(v)
    if type(v) == "table" and v.type then return setmetatable(v, Error) end
    return M._error("TaskError", tostring(v))
end

function M.is_error(v) return getmetatable(v) == Error end

-- ---------------------------------------------------------------- init

local function connect(session, kind, worker_id)
    local info, err = core.connect(session, kind, worker_id)
    if not info then return nil, err end
    state.initialized = true
    state.session = session
    state.node_id = info.node_id
    state.worker_id = info.proc_id
    return info
end

local init_keys = {
    address = true, num_cpus = true, num_gpus = true, resources = true,
    object_store_memory = true, token = true, runtime_env = true, log_level = true,
    namespace = true,
}

-- Packs runtime_env.working_dir and keeps the argument that goes before every task's and actor's
-- own arguments: {__luray_runtime_env = hash, ref = the packed folder, env = env_vars}.
local function ship_runtime_env(working_dir, env_vars)
    local arg = { env = {} }
    for k, v in pairs(env_vars or {}) do
        if type(k) ~= "string" or (type(v) ~= "string" and type(v) ~= "number") then
            error("runtime_env.env_vars must map names to strings", 0)
        end
        arg.env[k] = tostring(v)
    end
    if working_dir then
        if type(working_dir) ~= "string" then error("runtime_env.working_dir must be a path", 0) end
        if working_dir:sub(1, 1) ~= "/" then working_dir = (os.getenv("PWD") or ".") .. "/" .. working_dir end
        local blob, hash = core.pack_dir(working_dir)
        arg.__luray_runtime_env = hash
        arg.ref = M.put(blob)
        package.path = working_dir .. "/?.lua;" .. working_dir .. "/?/init.lua;" .. package.path
    else
        arg.__luray_runtime_env = "env"
    end
    state.runtime_env = arg
end

function M.init(opts)
    opts = opts or {}
    if state.initialized then
        error("luray.init: already initialized (call luray.shutdown() first)", 2)
    end
    for k in pairs(opts) do
        if not init_keys[k] then error("luray.init: unknown option '" .. tostring(k) .. "'", 2) end
    end
    local address = opts.address or config.address or os.getenv("LURAY_ADDRESS")
    if address == "" then address = nil end
    local renv = opts.runtime_env or {}
    if type(renv) ~= "table" then error("luray.init: runtime_env must be a table", 2) end
    for k in pairs(renv) do
        if k ~= "working_dir" and k ~= "env_vars" then
            error("luray.init: unknown runtime_env field '" .. tostring(k) .. "'", 2)
        end
    end
    local working_dir = renv.working_dir or config.working_dir
    local job_env = os.getenv("LURAY_JOB_ENV_VARS") -- `luray job submit --env`: for its tasks too
    if job_env and job_env ~= "" then
        local ok, vars = pcall(core.json_decode, job_env)
        if ok and type(vars) == "table" then
            local merged = {}
            for k, v in pairs(vars) do merged[k] = v end
            for k, v in pairs(renv.env_vars or {}) do merged[k] = v end
            renv = { working_dir = renv.working_dir, env_vars = merged }
        end
    end
    local wants_env = working_dir ~= nil or renv.env_vars ~= nil
    if opts.log_level then
        local ok, lerr = pcall(core.set_log_level, tostring(opts.log_level))
        if not ok then error("luray.init: " .. tostring(lerr), 2) end
        core.setenv("LURAY_LOG_LEVEL", tostring(opts.log_level))
    end
    local session, err
    if address == nil then
        session = core.find_session(nil)
        if not session then
            if working_dir then
                if type(working_dir) ~= "string" then error("luray.init: runtime_env.working_dir must be a path", 2) end
                if working_dir:sub(1, 1) ~= "/" then working_dir = (os.getenv("PWD") or ".") .. "/" .. working_dir end
                local probe = io.open(working_dir .. "/.", "r")
                if not probe then error("luray.init: runtime_env.working_dir " .. working_dir .. " is not a directory", 2) end
                probe:close()
                core.setenv("LURAY_WORKING_DIR", working_dir)
            end
            for k, v in pairs(renv.env_vars or {}) do
                if type(k) ~= "string" or (type(v) ~= "string" and type(v) ~= "number") then
                    error("luray.init: runtime_env.env_vars must map names to strings", 2)
                end
                core.setenv(k, tostring(v))
            end
            local res_json
            if opts.resources then
                local parts = {}
                for k, v in pairs(opts.resources) do
                    parts[#parts + 1] = string.format("%q: %.17g", k, v)
                end
                res_json = "{" .. table.concat(parts, ", ") .. "}"
            end
            local pid
            session, pid = core.start_node{
                num_cpus = opts.num_cpus or config.num_cpus,
                num_gpus = opts.num_gpus or config.num_gpus,
                object_store_memory = opts.object_store_memory or config.object_store_memory,
                resources_json = res_json,
            }
            if not session then error("luray.init: cannot start a local cluster: " .. tostring(pid), 2) end
            state.embedded_pid = pid
        end
    else
        session, err = core.find_session(address == "auto" and nil or address)
        if not session then error("luray.init: " .. tostring(err), 0) end
    end
    state.namespace = opts.namespace or "default"
    local ok, cerr = connect(session, "driver")
    if not ok then
        if state.embedded_pid then core.reap(state.embedded_pid, 1, session) end
        state.embedded_pid = nil
        error("luray.init: " .. tostring(cerr), 2)
    end
    if wants_env and not state.embedded_pid then
        -- A running cluster: the folder travels through the object store to every worker that
        -- runs this driver's tasks and actors (the worker unpacks it once per node).
        local ok2, e2 = pcall(ship_runtime_env, working_dir, renv.env_vars)
        if not ok2 then error("luray.init: " .. tostring(e2), 2) end
    end
    return M
end

function M._connect_worker()
    local session = os.getenv("LURAY_SESSION")
    local id = tonumber(os.getenv("LURAY_WORKER_ID"))
    local ok, err = connect(session, "worker", id)
    if not ok then error("worker: " .. tostring(err)) end
    state.is_worker = true
    state.namespace = "default"
end

function M.is_initialized() return state.initialized end

-- A script that ends with os.exit still takes its embedded cluster down in order (its node runs
-- inside this process and would otherwise leave its store behind).
local real_exit = os.exit
os.exit = function(...)
    if state.initialized and state.embedded_pid then pcall(M.shutdown) end
    return real_exit(...)
end

local function ensure()
    if not state.initialized then M.init() end
end

function M.shutdown()
    if not state.initialized then return end
    collectgarbage()
    if state.embedded_pid then
        core.shutdown_node()
        core.reap(state.embedded_pid, 5, state.session)
        core.disconnect()
        state.embedded_pid = nil
    else
        core.disconnect()
    end
    state.initialized = false
    state.runtime_env = nil
end

-- ---------------------------------------------------------------- options

local PlacementGroup = {}
PlacementGroup.__index = PlacementGroup
PlacementGroup.__name = "luray.PlacementGroup"

-- Returns strategy, target node, soft, placement group id (16 bytes), bundle index (0-based).
local function parse_strategy(s, where)
    if s == nil or s == "DEFAULT" then return 0 end
    if s == "SPREAD" then return 1 end
    if type(s) == "table" and s.node_id then
        local id = tonumber(s.node_id, 16)
        if not id then error(where .. ": scheduling_strategy.node_id must be a node id", 3) end
        return 2, id, s.soft
    end
    if type(s) == "table" and s.placement_group then
        local pg = s.placement_group
        if getmetatable(pg) ~= PlacementGroup then
            error(where .. ": scheduling_strategy.placement_group must be a placement group", 3)
        end
        local i = s.bundle_index
        if i ~= nil and (math.type(i) ~= "integer" or i < 1 or i > #pg.bundles) then
            error(where .. ": bundle_index must be an integer from 1 to " .. #pg.bundles, 3)
        end
        return 3, nil, nil, pg.id, i and i - 1 or -1
    end
    error(where .. ": unknown scheduling_strategy " .. tostring(s), 3)
end

local function resources_of(o, default_cpus, where)
    local res = {}
    local cpus = o.num_cpus
    if cpus == nil then cpus = default_cpus end
    if type(cpus) ~= "number" or cpus < 0 then error(where .. ": num_cpus must be a number >= 0", 3) end
    if cpus > 0 then res.CPU = cpus end
    if o.num_gpus then
        if type(o.num_gpus) ~= "number" or o.num_gpus < 0 then error(where .. ": num_gpus must be a number >= 0", 3) end
        if o.num_gpus > 0 then res.GPU = o.num_gpus end
    end
    if o.memory then res.memory = o.memory end
    for k, v in pairs(o.resources or {}) do
        if k == "CPU" or k == "GPU" then
            error(where .. ": use num_cpus/num_gpus instead of resources." .. k, 3)
        end
        if type(v) ~= "number" or v < 0 then error(where .. ": resources." .. tostring(k) .. " must be a number >= 0", 3) end
        res[k] = v
    end
    return res
end

local function merge(a, b)
    local r = {}
    for k, v in pairs(a or {}) do r[k] = v end
    for k, v in pairs(b or {}) do r[k] = v end
    return r
end

local function check_keys(opts, allowed, where)
    for k in pairs(opts) do
        if not allowed[k] then error(where .. ": unknown option '" .. tostring(k) .. "'", 3) end
    end
end

-- ---------------------------------------------------------------- tasks

local task_keys = {
    num_cpus = true, num_gpus = true, resources = true, max_retries = true, retry_exceptions = true,
    num_returns = true, scheduling_strategy = true, name = true, memory = true,
}

local RemoteFunction = {}
RemoteFunction.__index = RemoteFunction
RemoteFunction.__name = "luray.RemoteFunction"

local blob_cache = setmetatable({}, { __mode = "k" })

local function fn_blob(fn)
    local b = blob_cache[fn]
    if not b then
        b = core.encode(fn)
        blob_cache[fn] = b
    end
    return b
end

local function fn_name(fn, opts)
    if opts.name then return opts.name end
    local info = debug.getinfo(fn, "S")
    return (info.short_src or "?") .. ":" .. tostring(info.linedefined)
end

local function make_remote(fn, opts)
    check_keys(opts, task_keys, "luray.remote")
    if opts.num_returns ~= nil and (math.type(opts.num_returns) ~= "integer" or opts.num_returns < 0) then
        error("luray.remote: num_returns must be an integer >= 0", 3)
    end
    resources_of(opts, 1, "luray.remote")
    parse_strategy(opts.scheduling_strategy, "luray.remote")
    return setmetatable({ fn = fn, opts = opts }, RemoteFunction)
end

local templates = setmetatable({}, { __mode = "k" })

function RemoteFunction:_template()
    local t = templates[self]
    if t then return t end
    local o = self.opts
    local strategy, node, soft, pg, bundle = parse_strategy(o.scheduling_strategy, "remote")
    t = core.template{
        kind = "task",
        func_blob = fn_blob(self.fn),
        name = fn_name(self.fn, o),
        num_returns = o.num_returns or 1,
        max_retries = o.max_retries or 3,
        retry_exceptions = o.retry_exceptions,
        resources = resources_of(o, 1, "remote"),
        strategy = strategy, target_node = node, soft = soft, pg_id = pg, bundle_index = bundle,
    }
    templates[self] = t
    return t
end

function RemoteFunction:remote(...)
    ensure()
    if state.runtime_env then
        return core.submit(templates[self] or self:_template(), state.runtime_env, ...)
    end
    return core.submit(templates[self] or self:_template(), ...)
end

function RemoteFunction:options(o)
    return make_remote(self.fn, merge(self.opts, o))
end

RemoteFunction.__call = function()
    error("remote functions cannot be called directly; use f:remote(...)", 2)
end
core.register_metatable(RemoteFunction)

function M.remote(a, b)
    if type(a) == "function" then return make_remote(a, {}) end
    if type(a) == "table" and type(b) == "function" then return make_remote(b, a) end
    if type(a) == "table" and b == nil then
        return function(fn) return make_remote(fn, a) end
    end
    error("luray.remote: expected a function, or an options table and a function", 2)
end

-- ---------------------------------------------------------------- objects

function M.put(v)
    ensure()
    return core.put(v)
end

local function entry_error(st, v, ref)
    if st == 1 then return as_error(v) end
    if st == 2 then
        return M._error("ObjectLostError", "object " .. (ref and ref:hex() or "?") ..
            " is gone: it was freed or its owner died")
    end
    return M._error("GetTimeoutError", "luray.get timed out")
end

-- In a concurrent actor method, blocking calls yield so other calls can run.
local function concurrent_wait(refs)
    local co, main = coroutine.running()
    if main or not state.concurrent then return end
    while true do
        local flags = core.wait(refs, 0, 0)
        local all = true
        for i = 1, #refs do if not flags[i] then all = false break end end
        if all then return end
        coroutine.yield("poll")
    end
end

function M.get(x, opts)
    ensure()
    local timeout = opts and opts.timeout
    if core.is_ref(x) then
        if state.concurrent then concurrent_wait({ x }) end
        local st, v = core.get(x, timeout)
        if st == 0 then return v end
        error(entry_error(st, v, x), 2)
    elseif type(x) == "table" then
        if state.concurrent then concurrent_wait(x) end
        local st, vals, errs = core.get(x, timeout)
        if st == 3 then error(entry_error(3), 2) end
        if errs then
            for i = 1, #x do
                local e = errs[i]
                if e then error(entry_error(e[1], e[2], x[i]), 2) end
            end
        end
        return vals
    end
    error("luray.get: expected an ObjectRef or a list of ObjectRefs, got " .. type(x), 2)
end

local known_ready = setmetatable({}, { __mode = "k" })

local function split_ready(refs, flags, want)
    local ready, not_ready = {}, {}
    for i = 1, #refs do
        if flags[i] and #ready < want then ready[#ready + 1] = refs[i]
        else not_ready[#not_ready + 1] = refs[i] end
    end
    return ready, not_ready
end

function M.wait(refs, opts)
    ensure()
    opts = opts or {}
    if type(refs) ~= "table" then error("luray.wait: expected a list of ObjectRefs", 2) end
    local want = opts.num_returns or 1
    if math.type(want) ~= "integer" or want < 0 or want > #refs then
        error("luray.wait: num_returns must be an integer between 0 and #refs (" .. #refs .. ")", 2)
    end
    local flags
    -- Objects once ready stay ready while a ref to them lives: answer from what earlier waits
    -- learnt when that is enough, without asking the node.
    local known = 0
    for i = 1, #refs do if known_ready[refs[i]] then known = known + 1 end end
    if known >= want and want > 0 then
        flags = {}
        for i = 1, #refs do flags[i] = known_ready[refs[i]] or false end
        return split_ready(refs, flags, want)
    end
    local co, main = coroutine.running()
    if state.concurrent and not main then
        -- In a concurrent actor method: poll and yield so the actor's other calls run.
        local deadline = opts.timeout and core.now() + opts.timeout
        while true do
            flags = core.wait(refs, 0, 0)
            local n = 0
            for i = 1, #refs do if flags[i] then n = n + 1 end end
            if n >= want or (deadline and core.now() >= deadline) then break end
            coroutine.yield("poll")
        end
    else
        flags = core.wait(refs, want, opts.timeout)
    end
    for i = 1, #refs do if flags[i] then known_ready[refs[i]] = true end end
    return split_ready(refs, flags, want)
end

function M.cancel(ref, opts)
    ensure()
    if not core.is_ref(ref) then error("luray.cancel: expected an ObjectRef", 2) end
    core.cancel(ref, opts and opts.force)
end

function M.sleep(seconds)
    if state.concurrent then
        local co, main = coroutine.running()
        if not main then
            local untill = core.now() + seconds
            while core.now() < untill do coroutine.yield("poll") end
            return
        end
    end
    core.sleep(seconds)
end

-- ---------------------------------------------------------------- actors

local actor_keys = {
    name = true, namespace = true, lifetime = true, get_if_exists = true, max_restarts = true,
    max_task_retries = true, max_concurrency = true, num_cpus = true, num_gpus = true,
    resources = true, scheduling_strategy = true, memory = true, class_name = true,
}

local ActorClass = {}
ActorClass.__index = ActorClass
ActorClass.__name = "luray.ActorClass"

local function method_names(class)
    local names = {}
    for k, v in pairs(class) do
        if type(k) == "string" and type(v) == "function" and k ~= "init" then names[#names + 1] = k end
    end
    table.sort(names)
    return table.concat(names, ",")
end

local function make_actor_class(class, opts)
    if type(class) ~= "table" then error("luray.actor: expected a table of methods", 3) end
    check_keys(opts, actor_keys, "luray.actor")
    if opts.lifetime ~= nil and opts.lifetime ~= "detached" and opts.lifetime ~= "non_detached" then
        error("luray.actor: lifetime must be \"detached\" or \"non_detached\"", 3)
    end
    resources_of(opts, 0, "luray.actor")
    return setmetatable({ class = class, opts = opts }, ActorClass)
end

function M.actor(a, b)
    if b == nil then return make_actor_class(a, {}) end
    return make_actor_class(b, a)
end

core.register_metatable(ActorClass)

function ActorClass:options(o) return make_actor_class(self.class, merge(self.opts, o)) end

function ActorClass:remote(...)
    ensure()
    local o = self.opts
    local ns = o.namespace or state.namespace or "default"
    if o.name and o.get_if_exists then
        local h = core.lookup(ns .. "/" .. o.name)
        if h then return h end
    end
    local methods = method_names(self.class)
    local strategy, node, soft, pg, bundle = parse_strategy(o.scheduling_strategy, "actor")
    local tmpl = core.template{
        kind = "create",
        func_blob = fn_blob(self.class),
        name = (o.class_name or "Actor") .. ":" .. methods,
        num_returns = 1,
        max_retries = 0,
        resources = resources_of(o, 0, "actor"),
        strategy = strategy, target_node = node, soft = soft, pg_id = pg, bundle_index = bundle,
        actor_name = o.name,
        namespace = ns,
        detached = o.lifetime == "detached",
        max_restarts = o.max_restarts or 0,
        max_task_retries = o.max_task_retries or 0,
        max_concurrency = o.max_concurrency or 1,
    }
    local ref
    if state.runtime_env then
        ref = core.submit(tmpl, state.runtime_env, ...)
    else
        ref = core.submit(tmpl, ...)
    end
    local h = core.handle(core.ref_task(ref), methods)
    if o.name then
        -- A named actor's creation is checked at once, so a duplicate name raises here.
        local ok, st = pcall(core.wait, { ref }, 1, 0.05)
        if ok and st[1] then
            local s, v = core.get(ref, 0)
            if s == 1 and v and v.type == "ValueError" then raise("ValueError", v.message) end
        end
    end
    return h
end

local Method = {}
Method.__index = Method
Method.__name = "luray.ActorMethod"
core.register_metatable(Method)
local call_templates = {}

function Method:remote(...)
    ensure()
    local key = self.id .. self.name .. "\0" .. tostring(self.num_returns or 1)
    local t = call_templates[key]
    if not t then
        t = core.template{ kind = "call", actor_id = self.id, name = self.name,
                           num_returns = self.num_returns or 1, max_retries = 0 }
        call_templates[key] = t
    end
    return core.submit(t, ...)
end

function Method:options(o)
    return setmetatable({ id = self.id, name = self.name, num_returns = o.num_returns or self.num_returns }, Method)
end

local method_cache = setmetatable({}, { __mode = "k" })

core.handle_mt.__index = function(h, k)
    local cache = method_cache[h]
    if not cache then cache = {} method_cache[h] = cache end
    local m = cache[k]
    if m then return m end
    local id, methods = core.handle_id(h)
    if k == "_actor_id" then return core.hex(id) end
    local found = false
    for name in methods:gmatch("[^,]+") do if name == k then found = true break end end
    if not found then
        error("actor has no method '" .. tostring(k) .. "' (methods: " .. methods .. ")", 2)
    end
    m = setmetatable({ id = id, name = k }, Method)
    cache[k] = m
    return m
end
core.handle_mt.__tostring = function(h)
    local id = core.handle_id(h)
    return "ActorHandle(" .. core.hex(id) .. ")"
end
core.handle_mt.__eq = function(a, b)
    return core.handle_id(a) == core.handle_id(b)
end

function M.get_actor(name, opts)
    ensure()
    local ns = (opts and opts.namespace) or state.namespace or "default"
    local h = core.lookup(ns .. "/" .. name)
    if not h then raise("ValueError", "no actor named \"" .. name .. "\" in namespace \"" .. ns .. "\"") end
    return h
end

-- The runtime_env a worker is in, so the tasks it submits carry it on (see _worker.lua).
function M._set_runtime_env(m) state.runtime_env = m end

-- ---------------------------------------------------------------- placement groups

local pg_strategies = { PACK = 0, SPREAD = 1, STRICT_PACK = 2, STRICT_SPREAD = 3 }

-- bundles: a list of resource tables ({CPU = 1}, {CPU = 2, GPU = 1}, ...).
function M.placement_group(bundles, strategy, opts)
    ensure()
    if type(bundles) ~= "table" or #bundles == 0 then
        error("luray.placement_group: bundles must be a non-empty list of resource tables", 2)
    end
    strategy = strategy or "PACK"
    local code = pg_strategies[strategy]
    if not code then
        error("luray.placement_group: strategy must be PACK, SPREAD, STRICT_PACK or STRICT_SPREAD, not "
            .. tostring(strategy), 2)
    end
    local list = {}
    for i, b in ipairs(bundles) do
        if type(b) ~= "table" then error("luray.placement_group: bundle " .. i .. " is not a table", 2) end
        local r, n = {}, 0
        for k, v in pairs(b) do
            if type(k) ~= "string" or type(v) ~= "number" or v < 0 then
                error("luray.placement_group: bundle " .. i .. ": resource amounts must be numbers >= 0", 2)
            end
            r[k] = v
            n = n + 1
        end
        if n == 0 then error("luray.placement_group: bundle " .. i .. " is empty", 2) end
        list[i] = r
    end
    local ready, id = core.pg_create(code, list)
    return setmetatable({ id = id, bundles = list, strategy = strategy,
                          name = opts and opts.name, _ready = ready }, PlacementGroup)
end

-- An ObjectRef that is ready (true) once every bundle is reserved, or raises
-- PlacementGroupError when the group can never be placed.
function PlacementGroup:ready() return self._ready end

function PlacementGroup:__tostring()
    return "PlacementGroup(" .. core.hex(self.id) .. ", " .. self.strategy .. ", "
        .. #self.bundles .. " bundles)"
end

function M.remove_placement_group(pg)
    if getmetatable(pg) ~= PlacementGroup then
        error("luray.remove_placement_group: expected a placement group", 2)
    end
    core.pg_remove(pg.id)
end

function M.kill(h, opts)
    ensure()
    if not core.is_handle(h) then error("luray.kill: expected an ActorHandle", 2) end
    local no_restart = true
    if opts and opts.no_restart == false then no_restart = false end
    core.kill(h, no_restart)
end

-- ---------------------------------------------------------------- cluster

local function info()
    ensure()
    return core.json_decode(core.info())
end

function M.nodes()
    local out = {}
    for _, n in ipairs(info().nodes) do
        out[#out + 1] = { node_id = n.node_id, address = n.address, alive = n.alive,
                          resources = n.resources, available = n.available,
                          is_head = n.is_head or false }
    end
    return out
end

function M.cluster_resources() return info().resources end
function M.available_resources() return info().available end
function M._info() return info() end

function M._status_json(address)
    local session, err = core.find_session(address)
    if not session then error(err, 0) end
    local ok, cerr = connect(session, "driver")
    if not ok then error(cerr, 0) end
    local s = core.info()
    core.disconnect()
    state.initialized = false
    return s
end

function M.get_runtime_context()
    ensure()
    return {
        job_id = "01",
        node_id = state.node_id,
        worker_id = string.format("%08x", state.worker_id or 0),
        task_id = state.task_id and core.hex(state.task_id) or nil,
        actor_id = state.actor_id and core.hex(state.actor_id) or nil,
    }
end

function M._set_current(task_id, actor_id, concurrent)
    state.task_id = task_id
    if actor_id then state.actor_id = actor_id end
    if concurrent ~= nil then state.concurrent = concurrent end
end

-- ---------------------------------------------------------------- tensors

M.tensor = core.tensor
M.zeros = core.zeros
M.empty = core.empty

M.ObjectRef = core.ref_mt

return M
