-- luray.serve: deployments of Lua handlers behind HTTP. The proxy (C, in the serve plugin) reads
-- HTTP on its own event loop and hands each request to a replica over nanomsg; replicas are
-- actors that run the handler; the controller (a detached actor that takes no CPU) starts and
-- replaces replicas, scales them and tells the proxy where they are. See docs/serve.md.
local luray = require("luray")
local opts_check = require("luray._opts").check

local serve = {}
local fmt = string.format

local NS = "serve"
local CONTROLLER = "SERVE_CONTROLLER"
local PROXY = "SERVE_PROXY"

local function C() return require("luray._plugin.serve") end

-- ------------------------------------------------------------------ deployments

local dep_keys = {
    name = true, num_replicas = true, route_prefix = true, max_ongoing_requests = true,
    max_queued_requests = true, max_batch_size = true, batch_wait_timeout_s = true,
    autoscaling = true, actor_options = true, health_check_period_s = true,
    graceful_shutdown_timeout_s = true,
}
local autoscaling_keys = {
    min_replicas = true, max_replicas = true, target_ongoing_requests = true,
    initial_replicas = true, upscale_delay_s = true, downscale_delay_s = true,
}

local Deployment = {}
Deployment.__index = Deployment
Deployment.__name = "luray.serve.Deployment"
local Application = {}
Application.__index = Application
Application.__name = "luray.serve.Application"

local function positive_int(v, what, where)
    if v ~= nil and (math.type(v) ~= "integer" or v < 1) then
        error(fmt("%s: %s must be an integer >= 1, not %s", where, what, tostring(v)), 4)
    end
end

local function nonneg_number(v, what, where)
    if v ~= nil and (type(v) ~= "number" or v < 0) then
        error(fmt("%s: %s must be a number >= 0, not %s", where, what, tostring(v)), 4)
    end
end

local function check_deployment(opts, class, where)
    opts_check(opts, dep_keys, where)
    if type(class) ~= "table" then error(where .. ": expected a table of methods", 3) end
    if type(class.call) ~= "function" and type(class.batch) ~= "function" then
        error(where .. ": the class needs a call(self, request) or a batch(self, requests) method", 3)
    end
    if class.call and class.batch then
        error(where .. ": give call or batch, not both", 3)
    end
    local name = opts.name
    if name ~= nil and (type(name) ~= "string" or not name:match("^[%w_%.%-]+$")) then
        error(where .. ": name must be letters, digits, '_', '.' or '-', not " .. tostring(name), 3)
    end
    local prefix = opts.route_prefix
    if prefix ~= nil and prefix ~= false and
        (type(prefix) ~= "string" or not prefix:match("^/[%w_%.%-/~]*$") or
            (#prefix > 1 and prefix:sub(-1) == "/")) then
        error(where .. ": route_prefix must be a path like \"/predict\" (no trailing '/'), not "
            .. tostring(prefix), 3)
    end
    positive_int(opts.num_replicas, "num_replicas", where)
    positive_int(opts.max_ongoing_requests, "max_ongoing_requests", where)
    positive_int(opts.max_queued_requests, "max_queued_requests", where)
    positive_int(opts.max_batch_size, "max_batch_size", where)
    nonneg_number(opts.batch_wait_timeout_s, "batch_wait_timeout_s", where)
    nonneg_number(opts.health_check_period_s, "health_check_period_s", where)
    nonneg_number(opts.graceful_shutdown_timeout_s, "graceful_shutdown_timeout_s", where)
    if opts.max_batch_size and not class.batch then
        error(where .. ": max_batch_size needs a batch(self, requests) method", 3)
    end
    local a = opts.autoscaling
    if a ~= nil then
        if type(a) ~= "table" then error(where .. ": autoscaling must be a table", 3) end
        opts_check(a, autoscaling_keys, where .. " autoscaling")
        local lo = a.min_replicas or 1
        if math.type(lo) ~= "integer" or lo < 0 then
            error(where .. ": autoscaling.min_replicas must be an integer >= 0", 3)
        end
        positive_int(a.max_replicas, "autoscaling.max_replicas", where)
        if (a.max_replicas or lo) < lo then
            error(where .. ": autoscaling.max_replicas is below min_replicas", 3)
        end
        nonneg_number(a.target_ongoing_requests, "autoscaling.target_ongoing_requests", where)
        nonneg_number(a.upscale_delay_s, "autoscaling.upscale_delay_s", where)
        nonneg_number(a.downscale_delay_s, "autoscaling.downscale_delay_s", where)
        if opts.num_replicas then
            error(where .. ": give num_replicas or autoscaling, not both", 3)
        end
    end
    if opts.actor_options ~= nil and type(opts.actor_options) ~= "table" then
        error(where .. ": actor_options must be a table", 3)
    end
end

-- serve.deployment(opts, class) or serve.deployment(class).
function serve.deployment(a, b)
    local opts, class = a, b
    if b == nil then opts, class = {}, a end
    check_deployment(opts or {}, class, "serve.deployment")
    return setmetatable({ opts = opts or {}, class = class }, Deployment)
end

function Deployment:options(o)
    local merged = {}
    for k, v in pairs(self.opts) do merged[k] = v end
    for k, v in pairs(o or {}) do merged[k] = v end
    check_deployment(merged, self.class, "Deployment:options")
    return setmetatable({ opts = merged, class = self.class }, Deployment)
end

-- The deployment with the arguments its replicas' init gets.
function Deployment:bind(...)
    return setmetatable({ deployment = self, args = table.pack(...) }, Application)
end

-- ------------------------------------------------------------------ the actors' classes

-- Thin wrappers: the code lives in this module on every worker (_ctl, _proxy, _replica below).
local ControllerClass = {
    init = function(self) require("luray.serve")._ctl.init(self) end,
    deploy = function(self, ...) return require("luray.serve")._ctl.deploy(self, ...) end,
    wait_ready = function(self, ...) return require("luray.serve")._ctl.wait_ready(self, ...) end,
    loop = function(self) return require("luray.serve")._ctl.loop(self) end,
    status = function(self) return require("luray.serve")._ctl.status(self) end,
    delete = function(self, ...) return require("luray.serve")._ctl.delete(self, ...) end,
    shutdown = function(self, ...) return require("luray.serve")._ctl.shutdown(self, ...) end,
    get_replicas = function(self, ...) return require("luray.serve")._ctl.get_replicas(self, ...) end,
}

local ProxyClass = {
    start = function(self, ...) return require("luray.serve")._proxy.start(self, ...) end,
    set_routes = function(self, r) self.p:set_routes(r) end,
    replica_dead = function(self, id) self.p:replica_dead(id) end,
    stats = function(self) return self.p:stats() end,
    stop = function(self, drain) if self.p then self.p:stop(drain) self.p = nil end end,
}

local ReplicaClass = {
    init = function(self, spec) require("luray.serve")._replica.init(self, spec) end,
    __ready = function(self) return self.info end,
    __ping = function() return true end,
    __handle = function(self, x) return require("luray.serve")._replica.handle(self, x) end,
    __stop = function(self) return require("luray.serve")._replica.stop(self) end,
}

local function controller_class()
    return luray.actor({ name = CONTROLLER, namespace = NS, lifetime = "detached",
                         get_if_exists = true, num_cpus = 0, max_concurrency = 64 },
                       ControllerClass)
end

local function find_controller()
    local ok, h = pcall(luray.get_actor, CONTROLLER, { namespace = NS })
    if ok then return h end
    return nil
end

-- The host other nodes reach this node at, when it belongs to a cluster others can join (a
-- node with a tcp port); nil for an embedded cluster, where ipc is all there is.
local function cluster_host(node_id)
    for _, n in ipairs(luray.nodes()) do
        if n.node_id == node_id and n.alive then
            local host, port = tostring(n.address or ""):match("^(.*):(%d+)$")
            if host and tonumber(port) ~= 0 then return host end
            return nil
        end
    end
    return nil
end

-- ------------------------------------------------------------------ the proxy actor

serve._proxy = {}

function serve._proxy.start(self, http)
    local session = os.getenv("LURAY_SESSION") or "/tmp"
    local node = luray.get_runtime_context().node_id
    local tcp_host = cluster_host(node)
    local access = http.access_log
    if access == nil or access == true then access = session .. "/logs/serve_access.log" end
    if access == false then access = nil end
    local p, err = C().proxy_start{
        host = http.host or "127.0.0.1", port = http.port or 8000, session = session,
        tcp_host = tcp_host, access_log = access,
        keep_alive_timeout_s = http.keep_alive_timeout_s,
        request_read_timeout_s = http.request_read_timeout_s,
        request_timeout_s = http.request_timeout_s,
        max_header_bytes = http.max_header_bytes, max_body_bytes = http.max_body_bytes,
    }
    if not p then error(err, 0) end
    self.p = p
    local port, ipc, tcp = p:info()
    return { port = port, host = http.host or "127.0.0.1", ipc = ipc, tcp = tcp, node_id = node,
             pid = C().getpid(),
             access_log = access }
end

-- ------------------------------------------------------------------ replicas

serve._replica = {}

local function error_text(e)
    if type(e) == "table" and e.message then return tostring(e.message) end
    return tostring(e)
end

local function traceback_handler(e)
    return { err = e, tb = debug.traceback("", 2) }
end

-- Answers what waits on the replica's socket. True when there may be more (a full batch came).
local function serve_requests(self)
    local rep, user, class = self.rep, self.user, self.class
    local max = self.max_batch
    local reqs = rep:recv(max, self.batch_wait)
    local n = #reqs
    if n == 0 then
        rep:flush() -- requests recv answered itself (a body that is not JSON)
        return false
    end
    if class.batch then
        local ok, out = xpcall(class.batch, traceback_handler, user, reqs)
        if not ok then
            io.stderr:write(fmt("luray serve: %s: batch handler failed: %s%s\n", self.name,
                error_text(out.err), out.tb))
            for i = 1, n do rep:respond_error(i, 500, error_text(out.err)) end
        elseif type(out) ~= "table" or #out ~= n then
            local msg = fmt("the batch handler of %s returned %s results for %d requests",
                self.name, type(out) == "table" and tostring(#out) or "no list of", n)
            for i = 1, n do rep:respond_error(i, 500, msg) end
        else
            for i = 1, n do rep:respond(i, out[i]) end
        end
    else
        local call = class.call
        for i = 1, n do
            local ok, out = xpcall(call, traceback_handler, user, reqs[i])
            if ok then
                rep:respond(i, out)
            else
                io.stderr:write(fmt("luray serve: %s: handler failed: %s%s\n", self.name,
                    error_text(out.err), out.tb))
                rep:respond_error(i, 500, error_text(out.err))
            end
        end
    end
    rep:flush()
    return n == max
end

function serve._replica.init(self, spec)
    self.name = spec.name
    self.class = spec.class
    self.user = setmetatable({}, { __index = spec.class })
    if type(spec.class.init) == "function" then
        local args = spec.args
        spec.class.init(self.user, table.unpack(args, 1, args.n or #args))
    end
    local session = os.getenv("LURAY_SESSION") or "/tmp"
    local node = luray.get_runtime_context().node_id
    local tcp_host = cluster_host(node)
    self.rep = C().replica_open(session, tcp_host)
    self.max_batch = spec.class.batch and (spec.opts.max_batch_size or 8) or 64
    self.batch_wait = spec.class.batch and (spec.opts.batch_wait_timeout_s or 0.01) or 0
    local ipc, tcp = self.rep:addresses()
    self.info = { ipc = ipc, tcp = tcp, node_id = node, pid = C().getpid() }
    require("luray._worker").watch(self.rep:fd(), function() return serve_requests(self) end)
end

-- A call through a deployment handle: the handler's result as it is.
function serve._replica.handle(self, x)
    local class = self.class
    if class.call then return class.call(self.user, x) end
    local out = class.batch(self.user, { x })
    if type(out) ~= "table" or #out ~= 1 then
        error(fmt("the batch handler of %s returned %s results for 1 request", self.name,
            type(out) == "table" and tostring(#out) or "no list of"), 0)
    end
    return out[1]
end

function serve._replica.stop(self)
    require("luray._worker").watch(nil)
    if self.rep then self.rep:close() self.rep = nil end
    if type(self.class.shutdown) == "function" then pcall(self.class.shutdown, self.user) end
    return true
end

-- ------------------------------------------------------------------ the controller

serve._ctl = {}
local ctl = serve._ctl

local function now() return require("luray.core").now() end

function ctl.init(self)
    self.deps = {}
    self.order = {}
    self.proxy = nil
    self.proxy_info = nil
    self.loop_started = false
    self.stopping = false
    self.routes_dirty = false
    self.seq = 0
end

local function settings(spec)
    local o = spec.opts
    local a = o.autoscaling
    local s = {
        max_ongoing = o.max_ongoing_requests or 100,
        max_queued = o.max_queued_requests or 1000,
        health_period = o.health_check_period_s or 0.2,
        graceful = o.graceful_shutdown_timeout_s or 5,
    }
    if a then
        s.min = a.min_replicas or 1
        s.max = a.max_replicas or math.max(s.min, 1)
        s.target_ongoing = a.target_ongoing_requests or 2
        s.up_delay = a.upscale_delay_s or 0.5
        s.down_delay = a.downscale_delay_s or 10
        s.initial = a.initial_replicas or math.max(s.min, 1)
    else
        s.initial = o.num_replicas or 1
    end
    return s
end

local function start_replica(self, d)
    self.seq = self.seq + 1
    local ao = d.spec.opts.actor_options or {}
    local aopts = { num_cpus = 1, max_concurrency = 1, namespace = NS }
    for k, v in pairs(ao) do aopts[k] = v end
    aopts.name = nil
    aopts.lifetime = "detached"
    local ok, h = pcall(function()
        return luray.actor(aopts, ReplicaClass):remote({ name = d.name, class = d.spec.class,
            args = d.spec.args, opts = d.spec.opts })
    end)
    if not ok then
        d.message = "cannot start a replica: " .. error_text(h)
        d.failures = d.failures + 1
        return
    end
    local r = { handle = h, id = h._actor_id, state = "STARTING", started = now() }
    r.ready_ref = h.__ready:remote()
    d.replicas[r.id] = r
end

local function replica_count(d, states)
    local n = 0
    for _, r in pairs(d.replicas) do if states[r.state] then n = n + 1 end end
    return n
end

local LIVE = { STARTING = true, RUNNING = true }
local RUNNING = { RUNNING = true }

local function push_routes(self)
    if not self.proxy then return end
    local list = {}
    for _, name in ipairs(self.order) do
        local d = self.deps[name]
        if d and d.prefix then
            local reps = {}
            for _, r in pairs(d.replicas) do
                if r.state == "RUNNING" then
                    local addr = r.info.ipc
                    if r.info.node_id ~= self.proxy_info.node_id and r.info.tcp then addr = r.info.tcp end
                    reps[#reps + 1] = { id = r.id, addr = addr }
                end
            end
            list[#list + 1] = { name = d.name, prefix = d.prefix, max_ongoing = d.s.max_ongoing,
                                max_queued = d.s.max_queued, replicas = reps }
        end
    end
    self.proxy.set_routes:remote({ deployments = list })
    self.routes_dirty = false
end

local function ready(ref)
    local done = luray.wait({ ref }, { num_returns = 1, timeout = 0 })
    return #done == 1
end

-- Lets the replica close its socket and run the class's shutdown (up to a second), then ends it.
local function stop_replica(r)
    pcall(function()
        luray.wait({ r.handle.__stop:remote() }, { num_returns = 1, timeout = 1 })
    end)
    pcall(luray.kill, r.handle)
end

-- Starting replicas that came up, or failed.
local function check_starting(self, d, r)
    if not ready(r.ready_ref) then return end
    local ok, info = pcall(luray.get, r.ready_ref)
    r.ready_ref = nil
    if ok then
        r.state = "RUNNING"
        r.info = info
        r.ping_at = now() + d.s.health_period
        d.failures = 0
        self.routes_dirty = true
    else
        d.replicas[r.id] = nil
        d.failures = d.failures + 1
        d.message = "a replica failed to start: " .. error_text(info)
        pcall(luray.kill, r.handle)
    end
end

-- Running replicas answer pings; a dead one's requests go to the others.
local function check_running(self, d, r, t)
    if r.ping_ref then
        if not ready(r.ping_ref) then return end
        local ok, err = pcall(luray.get, r.ping_ref)
        r.ping_ref = nil
        if ok then
            r.ping_at = t + d.s.health_period
            return
        end
        d.replicas[r.id] = nil
        d.restarts = d.restarts + 1
        d.message = "replica " .. r.id .. " died: " .. error_text(err)
        if self.proxy then self.proxy.replica_dead:remote(r.id) end
        self.routes_dirty = true
        pcall(luray.kill, r.handle)
    elseif t >= r.ping_at then
        r.ping_ref = r.handle.__ping:remote()
    end
end

local function autoscale(self, d, stats, t)
    local s = d.s
    if not s.target_ongoing then return end
    local st = stats and stats.deployments and stats.deployments[d.name]
    local ongoing = st and (st.queued + st.ongoing) or 0
    local samples = d.samples
    samples[#samples + 1] = { t = t, v = ongoing }
    while #samples > 0 and samples[1].t < t - 1.0 do table.remove(samples, 1) end
    local sum = 0
    for _, x in ipairs(samples) do sum = sum + x.v end
    local avg = sum / #samples
    local desired = math.ceil(avg / math.max(s.target_ongoing, 1e-9) - 1e-9)
    desired = math.max(s.min, math.min(s.max, desired))
    if desired > d.target then
        d.down_since = nil
        d.up_since = d.up_since or t
        if t - d.up_since >= s.up_delay then
            d.target = desired
            d.up_since = nil
        end
    elseif desired < d.target then
        d.up_since = nil
        d.down_since = d.down_since or t
        if t - d.down_since >= s.down_delay then
            d.target = d.target - 1 -- down one at a time, each after the delay
            d.down_since = t
        end
    else
        d.up_since, d.down_since = nil, nil
    end
end

-- Starts or drains replicas to meet the target; drained replicas stop once idle.
local function reconcile(self, d, stats, t)
    local live = replica_count(d, LIVE)
    if d.failures < 3 then
        for _ = live + 1, d.target do start_replica(self, d) end
        d.status = replica_count(d, RUNNING) >= d.target and "HEALTHY" or "UPDATING"
    else
        d.status = "UNHEALTHY"
    end
    if live > d.target then
        local st = stats and stats.deployments and stats.deployments[d.name]
        local inflight = st and st.replicas or {}
        local victims = {}
        for _, r in pairs(d.replicas) do
            if LIVE[r.state] then victims[#victims + 1] = r end
        end
        table.sort(victims, function(a, b)
            if a.state ~= b.state then return a.state == "STARTING" end
            return (inflight[a.id] or 0) < (inflight[b.id] or 0)
        end)
        for i = 1, live - d.target do
            victims[i].state = "DRAINING"
            victims[i].drain_since = t
        end
        self.routes_dirty = true
    end
    for id, r in pairs(d.replicas) do
        if r.state == "DRAINING" then
            local st = stats and stats.deployments and stats.deployments[d.name]
            local busy = st and st.replicas and st.replicas[id] or 0
            if (busy == 0 and t - r.drain_since > 0.2) or t - r.drain_since > d.s.graceful then
                d.replicas[id] = nil
                stop_replica(r)
            end
        end
    end
end

local start_proxy

-- A proxy whose process died is started again on the same node and port, with the routes.
local function restart_proxy(self)
    local http = {}
    for k, v in pairs(self.http) do http[k] = v end
    http.port = self.proxy_info.port
    local ok, err = pcall(start_proxy, self, http, self.proxy_info.node_id)
    if ok then
        self.proxy_down = false
        self.routes_dirty = true
        io.stderr:write(fmt("luray serve: the proxy died; started again on port %d\n", http.port))
    elseif not self.proxy_down then
        io.stderr:write("luray serve: the proxy died and cannot start again yet: ",
            error_text(err), "\n")
    end
end

local function tick(self)
    local t = now()
    local stats
    if self.proxy and not self.proxy_down then
        local ok, s = pcall(luray.get, self.proxy.stats:remote())
        if ok then
            stats = s
        elseif type(s) == "table" and s.type == "ActorDiedError" and not self.stopping then
            self.proxy_down = true
        end
    end
    if self.proxy_down and not self.stopping then restart_proxy(self) end
    for _, name in ipairs(self.order) do
        local d = self.deps[name]
        for _, r in pairs(d.replicas) do
            if r.state == "STARTING" then check_starting(self, d, r)
            elseif r.state == "RUNNING" then check_running(self, d, r, t) end
        end
        autoscale(self, d, stats, t)
        reconcile(self, d, stats, t)
    end
    if self.routes_dirty then push_routes(self) end
end

function ctl.loop(self)
    while not self.stopping do
        local ok, err = pcall(tick, self)
        if not ok then io.stderr:write("luray serve: controller: ", error_text(err), "\n") end
        luray.sleep(0.05)
    end
    return true
end

function start_proxy(self, http, node_id)
    local P = luray.actor({ name = PROXY, namespace = NS, lifetime = "detached", num_cpus = 0,
                            scheduling_strategy = { node_id = node_id, soft = false } }, ProxyClass)
    local h = P:remote()
    local ok, info = pcall(luray.get, h.start:remote(http))
    if not ok then
        pcall(luray.kill, h)
        error(error_text(info), 0)
    end
    self.proxy = h
    self.proxy_info = info
    self.http = http
end

-- specs: {{name, class, args, opts}}; http: serve.run's options; node_id: where the proxy goes.
function ctl.deploy(self, specs, http, node_id)
    if self.stopping then error("serve is shutting down", 0) end
    if not self.proxy then
        start_proxy(self, http, node_id)
    elseif (http.port and http.port ~= self.http.port) or (http.host and http.host ~= self.http.host) then
        error(fmt("serve already listens on %s:%d; serve.shutdown() first to move it",
            self.proxy_info.host, self.proxy_info.port), 0)
    end
    for _, spec in ipairs(specs) do
        local old = self.deps[spec.name]
        local d = { name = spec.name, spec = spec, s = settings(spec), replicas = {},
                    failures = 0, restarts = 0, samples = {}, status = "UPDATING",
                    prefix = spec.prefix }
        d.target = d.s.initial
        if old then
            -- a new version: the old replicas drain once the new ones take over
            for id, r in pairs(old.replicas) do
                r.state = "DRAINING"
                r.drain_since = now() + 30
                d.replicas[id] = r
            end
        else
            self.order[#self.order + 1] = spec.name
        end
        self.deps[spec.name] = d
    end
    self.routes_dirty = true
    if not self.loop_started then
        self.loop_started = true
        luray.get_actor(CONTROLLER, { namespace = NS }).loop:remote()
    end
    return { host = self.proxy_info.host, port = self.proxy_info.port }
end

-- Waits until the named deployments run their replicas; nil, or an error message.
function ctl.wait_ready(self, names, timeout_s)
    local deadline = now() + (timeout_s or 60)
    while true do
        local waiting = nil
        for _, name in ipairs(names) do
            local d = self.deps[name]
            if not d then return "deployment " .. name .. " was deleted" end
            if d.status == "UNHEALTHY" then
                return fmt("deployment %s cannot start its replicas: %s", name, d.message or "")
            end
            if replica_count(d, RUNNING) < math.max(1, math.min(d.target, d.s.initial)) then
                waiting = d
            end
        end
        if not waiting then
            -- old versions drain once the new replicas are in the routing table
            for _, name in ipairs(names) do
                for _, r in pairs(self.deps[name].replicas) do
                    if r.state == "DRAINING" and r.drain_since > now() then r.drain_since = now() end
                end
            end
            return nil
        end
        if now() > deadline then
            return fmt("deployment %s has %d of %d replicas running after %gs%s", waiting.name,
                replica_count(waiting, RUNNING), waiting.target, timeout_s or 60,
                waiting.message and (": " .. waiting.message) or "")
        end
        luray.sleep(0.02)
    end
end

function ctl.status(self)
    local out = { deployments = {} }
    if self.proxy_info then
        out.proxy = { host = self.proxy_info.host, port = self.proxy_info.port,
                      node_id = self.proxy_info.node_id, access_log = self.proxy_info.access_log,
                      pid = self.proxy_info.pid, restarting = self.proxy_down or nil }
    end
    for _, name in ipairs(self.order) do
        local d = self.deps[name]
        out.deployments[name] = {
            status = d.status, route_prefix = d.prefix or false,
            replicas = replica_count(d, RUNNING), target_replicas = d.target,
            starting = replica_count(d, { STARTING = true }),
            draining = replica_count(d, { DRAINING = true }),
            restarts = d.restarts, message = d.message, replica_list = {},
        }
        local list = out.deployments[name].replica_list
        for id, r in pairs(d.replicas) do
            list[#list + 1] = { id = id, state = r.state, pid = r.info and r.info.pid,
                                node_id = r.info and r.info.node_id }
        end
        table.sort(list, function(a, b) return a.id < b.id end)
    end
    out.shutting_down = self.stopping
    return out
end

function ctl.get_replicas(self, name)
    local d = self.deps[name]
    if not d then return nil end
    local list = {}
    for _, r in pairs(d.replicas) do
        if r.state == "RUNNING" then list[#list + 1] = r.handle end
    end
    return list
end

function ctl.delete(self, name)
    local d = self.deps[name]
    if not d then return false end
    self.deps[name] = nil
    for i, n in ipairs(self.order) do
        if n == name then table.remove(self.order, i) break end
    end
    push_routes(self)
    for _, r in pairs(d.replicas) do stop_replica(r) end
    return true
end

function ctl.shutdown(self, drain_s)
    self.stopping = true
    if self.proxy then
        pcall(luray.get, self.proxy.stop:remote(drain_s or 5))
        pcall(luray.kill, self.proxy)
        self.proxy = nil
    end
    for _, name in ipairs(self.order) do
        for _, r in pairs(self.deps[name].replicas) do stop_replica(r) end
    end
    self.deps, self.order = {}, {}
    return true
end

-- ------------------------------------------------------------------ the driver's side

local function as_apps(x)
    if getmetatable(x) == Application then return { x } end
    if getmetatable(x) == Deployment then return { x:bind() } end
    if type(x) == "table" and #x > 0 then
        local out = {}
        for i, a in ipairs(x) do
            if getmetatable(a) == Deployment then a = a:bind() end
            if getmetatable(a) ~= Application then
                error(fmt("serve.run: item %d is not a bound deployment (Deployment:bind(...))", i), 3)
            end
            out[i] = a
        end
        return out
    end
    error("serve.run: expected a bound deployment (Deployment:bind(...)) or a list of them", 3)
end

local http_keys = {
    host = true, port = true, access_log = true, keep_alive_timeout_s = true,
    request_read_timeout_s = true, request_timeout_s = true, max_header_bytes = true,
    max_body_bytes = true, timeout_s = true,
}

local Handle = {}
Handle.__index = Handle
Handle.__name = "luray.serve.DeploymentHandle"

local function controller()
    local h = find_controller()
    if not h then error("serve is not running (serve.run starts it)", 3) end
    return h
end

function serve.get_deployment_handle(name)
    if type(name) ~= "string" then error("serve.get_deployment_handle(name): expected a string", 2) end
    return setmetatable({ name = name, replicas = {}, fetched = -1, next = 0 }, Handle)
end

local function refresh(h, wait_s)
    local deadline = now() + wait_s
    while true do
        local list = luray.get(controller().get_replicas:remote(h.name))
        if list == nil then error(fmt("serve: no deployment named %s", h.name), 3) end
        h.replicas, h.fetched = list, now()
        if #list > 0 or now() > deadline then return end
        luray.sleep(0.05)
    end
end

-- An ObjectRef of the deployment's answer to x (a request table or any value).
function Handle:remote(x)
    if #self.replicas == 0 or now() - self.fetched > 2 then refresh(self, 30) end
    if #self.replicas == 0 then
        error(fmt("serve: deployment %s has no running replica", self.name), 2)
    end
    self.next = self.next % #self.replicas + 1
    return self.replicas[self.next].__handle:remote(x)
end

function Handle:__tostring() return "DeploymentHandle(" .. self.name .. ")" end

-- Deploys the applications and returns once their replicas run: the handle of the first one
-- (or one handle per application when given a list).
function serve.run(target, http)
    local apps = as_apps(target)
    http = opts_check(http, http_keys, "serve.run")
    if http.port ~= nil and (math.type(http.port) ~= "integer" or http.port < 0 or http.port > 65535) then
        error("serve.run: port must be an integer 0-65535", 2)
    end
    local specs, names, seen = {}, {}, {}
    for i, app in ipairs(apps) do
        local d = app.deployment
        local name = d.opts.name or (i == 1 and "default" or ("deployment" .. i))
        if seen[name] then error("serve.run: two deployments are named " .. name, 2) end
        seen[name] = true
        local prefix = d.opts.route_prefix
        if prefix == nil then prefix = i == 1 and "/" or false end
        local args = {}
        for k = 1, app.args.n do
            local a = app.args[k]
            if getmetatable(a) == Application then
                error("serve.run: pass other deployments in the list and reach them with "
                    .. "serve.get_deployment_handle(name), not as bind arguments", 2)
            end
            args[k] = a
        end
        args.n = app.args.n
        specs[i] = { name = name, class = d.class, args = args, opts = d.opts,
                     prefix = prefix or nil }
        names[i] = name
    end
    local ctl_h = controller_class():remote()
    local node = luray.get_runtime_context().node_id
    local hopts = {}
    for k, v in pairs(http) do if k ~= "timeout_s" then hopts[k] = v end end
    local ok, where = pcall(luray.get, ctl_h.deploy:remote(specs, hopts, node))
    if not ok then error("serve.run: " .. error_text(where), 2) end
    local err = luray.get(ctl_h.wait_ready:remote(names, http.timeout_s or 120))
    if err then error("serve.run: " .. err, 2) end
    if #names == 1 or getmetatable(target) == Application or getmetatable(target) == Deployment then
        return serve.get_deployment_handle(names[1]), where
    end
    local hs = {}
    for i, n in ipairs(names) do hs[i] = serve.get_deployment_handle(n) end
    return hs, where
end

-- {proxy = {host, port, ...}, deployments = {name = {status, replicas, ...}}}; {deployments =
-- {}} when serve is not running.
function serve.status()
    local h = find_controller()
    if not h then return { deployments = {} } end
    return luray.get(h.status:remote())
end

function serve.delete(name)
    if type(name) ~= "string" then error("serve.delete(name): expected a string", 2) end
    local h = find_controller()
    if not h then return false end
    return luray.get(h.delete:remote(name))
end

-- Stops the proxy (letting requests in flight finish, up to drain_s, default 5), the replicas
-- and the controller.
function serve.shutdown(drain_s)
    local h = find_controller()
    if not h then return end
    pcall(luray.get, h.shutdown:remote(drain_s))
    -- the name goes once the controller is dead: wait for that, so a driver that ends right
    -- after this leaves nothing behind
    local deadline = require("luray.core").now() + 5
    repeat
        pcall(luray.kill, h)
        luray.sleep(0.02)
        h = find_controller()
    until not h or require("luray.core").now() > deadline
end

-- `luray serve run`: keeps the process up while serve runs; Ctrl-C (or SIGTERM) shuts it down.
function serve._block()
    local ok, err = pcall(function()
        while true do
            local h = find_controller()
            if not h then return end
            local st = luray.get(h.status:remote())
            if st.shutting_down then return end
            luray.sleep(0.5)
        end
    end)
    if not ok and not tostring(err):find("interrupted", 1, true) then
        io.stderr:write("luray serve: ", error_text(err), "\n")
    end
    serve.shutdown()
end

serve.json_encode = function(v) return C().json_encode(v) end
serve.json_decode = function(s) return C().json_decode(s) end

return serve
