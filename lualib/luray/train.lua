-- luray.train: one data-parallel Trainer over framework plugins ("nn" and "xgboost").
--
-- fit() starts num_workers actors, gives each its shard of every dataset (Data's split), joins
-- them in a collective group (shared memory on one node, a tcp ring across nodes) and runs the
-- framework's loop (or the user's train_loop) on each. The nn loop averages gradients every step,
-- so every worker holds the same weights; xgboost uses its own collective (rabit), whose tracker
-- the driver runs. Rank 0 writes checkpoints; a worker lost mid-fit makes the trainer start the
-- group again from the last checkpoint, up to failure.max_failures times. With scaling.use_gpu
-- each worker holds a GPU (the cluster must have them) and the nn loop runs on "cuda".
local luray = require("luray")
local data = require("luray.data")

local M = {}
local fmt = string.format

-- ------------------------------------------------------------------ worker side

local context -- the current worker's TrainContext (nil on the driver)

local Context = {}
Context.__index = Context

function Context:allreduce(v, op)
    op = op or "mean"
    if type(v) == "table" then
        -- A list of numbers: through a float64 tensor; integers summed stay integers.
        local ints = op ~= "mean"
        for _, x in ipairs(v) do
            if math.type(x) ~= "integer" then ints = false end
        end
        local t = luray.tensor(v, { dtype = "float64" })
        t = t:is_readonly() and t:clone() or t
        self.group:allreduce(t, op)
        local out = t:totable()
        if ints then
            for i, x in ipairs(out) do out[i] = math.tointeger(x) or x end
        end
        return out
    end
    return self.group:allreduce(v, op)
end

function Context:barrier() return self.group:barrier() end

function M.get_context()
    if context == nil then error("train.get_context: not inside a training worker", 2) end
    return context
end

function M.get_dataset_shard(name)
    if context == nil then error("train.get_dataset_shard: not inside a training worker", 2) end
    local shard = context.shards[name or "train"]
    if shard == nil then
        error(fmt("train.get_dataset_shard: no dataset named '%s'", tostring(name)), 2)
    end
    return shard
end

function M.report(metrics, opts)
    if context == nil then error("train.report: not inside a training worker", 2) end
    if type(metrics) ~= "table" then error("train.report: metrics must be a table", 2) end
    local r = { metrics = metrics }
    if opts and opts.checkpoint then r.checkpoint = opts.checkpoint end
    context.reports[#context.reports + 1] = r
end

-- ------------------------------------------------------------------ frameworks

local frameworks = {}
M._frameworks = frameworks

-- ------------------------------------------------------------------ the worker actor

-- The actor's methods travel as code with their upvalues copied, so each is a thin call into
-- this module as the worker process loaded it: the context it sets is the one train.report and
-- train.get_context see there.
local Worker = {}
local W = {}
M._worker = W

function W.init(self, rank, world, config)
    self.rank, self.world, self.config = rank, world, config
end

-- Where this worker can be reached for a tcp ring, and on which node it runs.
function W.locate(self)
    local coll = require("luray._plugin.collective")
    local ctx = luray.get_runtime_context()
    local node = ctx.node_id
    local addr
    for _, n in ipairs(luray.nodes()) do
        if n.node_id == node then addr = n.address end
    end
    local host = (addr or "127.0.0.1"):match("^(.*):%d+$") or "127.0.0.1"
    self.port = coll.free_port()
    return { node = node, address = host .. ":" .. self.port }
end

function W.join(self, spec)
    local coll = require("luray._plugin.collective")
    spec.rank = self.rank
    spec.world_size = self.world
    self.group = coll.group(spec)
    return true
end

function W.run(self, shards, resume, prepared)
    local config = self.config
    context = setmetatable({
        world_size = self.world, world_rank = self.rank, local_rank = self.rank,
        group = self.group, shards = shards, reports = {}, resume = resume,
        prepared = prepared,
    }, Context)
    local ok, err = pcall(function()
        if config.train_loop then
            config.train_loop(config.config or {})
        else
            frameworks[config.framework].loop(config, context)
        end
    end)
    local reports = context.reports
    context = nil
    if not ok then error(err, 0) end
    return reports
end

function W.leave(self)
    if self.group then self.group:close() end
    self.group = nil
    return true
end

for _, name in ipairs({ "init", "locate", "join", "run", "leave" }) do
    Worker[name] = function(...) return require("luray.train")._worker[name](...) end
end

local WorkerClass = luray.actor(Worker)

-- ------------------------------------------------------------------ the Trainer

local Trainer = {}
Trainer.__index = Trainer

local trainer_keys = {
    framework = true, model = true, loss = true, optimizer = true, label_column = true,
    feature_columns = true, epochs = true, batch_size = true, scaling = true, datasets = true,
    checkpoint = true, failure = true, params = true, num_boost_round = true, train_loop = true,
    config = true, seed = true,
}

function M.Trainer(cfg)
    if type(cfg) ~= "table" then error("train.Trainer: expected a table of options", 2) end
    for k in pairs(cfg) do
        if not trainer_keys[k] then
            error(fmt("train.Trainer: unknown option '%s'", tostring(k)), 2)
        end
    end
    if cfg.train_loop == nil then
        if frameworks[cfg.framework or ""] == nil then
            local names = {}
            for n in pairs(frameworks) do names[#names + 1] = n end
            table.sort(names)
            error(fmt("train.Trainer: framework must be one of %s (or give train_loop)",
                table.concat(names, ", ")), 2)
        end
        frameworks[cfg.framework].check(cfg)
    elseif type(cfg.train_loop) ~= "function" then
        error("train.Trainer: train_loop must be a function", 2)
    end
    local scaling = cfg.scaling or {}
    local n = scaling.num_workers or 1
    if math.type(n) ~= "integer" or n < 1 then
        error("train.Trainer: scaling.num_workers must be an integer >= 1", 2)
    end
    if scaling.use_gpu ~= nil and type(scaling.use_gpu) ~= "boolean" then
        error("train.Trainer: scaling.use_gpu must be true or false", 2)
    end
    return setmetatable({ cfg = cfg, num_workers = n }, Trainer)
end

-- The GPUs one worker holds: resources_per_worker.GPU, else 1 with use_gpu.
local function gpus_per_worker(cfg)
    local scaling = cfg.scaling or {}
    local res = scaling.resources_per_worker or {}
    return res.GPU or (scaling.use_gpu and 1 or 0)
end

-- Workers that ask for GPUs the cluster does not have would never be placed: say so before
-- starting any.
local function check_gpus(self)
    local per = gpus_per_worker(self.cfg)
    if per <= 0 then return end
    local have = luray.cluster_resources().GPU or 0
    local need = per * self.num_workers
    if have <= 0 then
        error("train: the workers need GPUs (scaling.use_gpu), but the cluster has no GPU "
            .. "resources (start its nodes with --num-gpus N, or luray.init{num_gpus = N} for a "
            .. "local one)", 0)
    end
    if have < need then
        error(fmt("train: %d workers with %g GPU(s) each need %g GPUs, but the cluster has %g",
            self.num_workers, per, need, have), 0)
    end
end

local group_seq = 0

-- Starts the workers, joins them in a group, returns the handles.
local function start_workers(self)
    local cfg = self.cfg
    local scaling = cfg.scaling or {}
    local res = scaling.resources_per_worker or {}
    local opts = { num_cpus = res.CPU or 1, num_gpus = gpus_per_worker(cfg),
        max_concurrency = 1, scheduling_strategy = self.num_workers > 1 and "SPREAD" or nil }
    local extra = {}
    for k, v in pairs(res) do
        if k ~= "CPU" and k ~= "GPU" then extra[k] = v end
    end
    if next(extra) then opts.resources = extra end
    local workers = {}
    for rank = 0, self.num_workers - 1 do
        workers[rank + 1] = WorkerClass:options(opts):remote(rank, self.num_workers, cfg)
    end
    local locs = {}
    for i, w in ipairs(workers) do locs[i] = w.locate:remote() end
    locs = luray.get(locs)
    local same = true
    local addresses = {}
    for i, l in ipairs(locs) do
        addresses[i] = l.address
        if l.node ~= locs[1].node then same = false end
    end
    group_seq = group_seq + 1
    local spec = { id = fmt("train-%d-%d-%d", os.time(), math.random(1, 1e9), group_seq),
        transport = same and "shm" or "tcp", addresses = addresses, timeout_s = 60 }
    local joins = {}
    for i, w in ipairs(workers) do joins[i] = w.join:remote(spec) end
    luray.get(joins)
    return workers
end

local function shards_of(self)
    local out = {}
    for i = 1, self.num_workers do out[i] = {} end
    for name, ds in pairs(self.cfg.datasets or {}) do
        if getmetatable(ds) ~= data.Dataset then
            error(fmt("train: datasets.%s is not a Dataset", tostring(name)), 0)
        end
        local parts = ds:split(self.num_workers, { equal = name == "train" })
        for i = 1, self.num_workers do out[i][name] = parts[i] end
    end
    return out
end

local function stop_workers(workers)
    for _, w in ipairs(workers) do pcall(luray.kill, w) end
end

-- The history of epoch metrics, from rank 0's reports.
local function collect(reports)
    local history, last_ckpt = {}, nil
    for _, r in ipairs(reports) do
        history[#history + 1] = r.metrics
        if r.checkpoint then last_ckpt = r.checkpoint end
    end
    return history, last_ckpt
end

function Trainer:fit()
    local cfg = self.cfg
    local max_failures = (cfg.failure and cfg.failure.max_failures) or 0
    local failures = 0
    check_gpus(self)
    local shards = shards_of(self)
    local history, checkpoint = {}, nil
    while true do
        local fw = frameworks[cfg.framework]
        local prepared = fw and fw.prepare and fw.prepare(self) or nil
        local workers = start_workers(self)
        local runs = {}
        local resume = checkpoint and { checkpoint = checkpoint, epoch = #history } or nil
        for i, w in ipairs(workers) do runs[i] = w.run:remote(shards[i], resume, prepared) end
        local ok, res = pcall(luray.get, runs)
        if not ok then
            -- The first error in rank order may be a survivor's (its collective call saw the
            -- peer die): a lost worker anywhere makes this attempt one to retry.
            for _, r in ipairs(runs) do
                local rok, rerr = pcall(luray.get, r)
                if not rok and type(rerr) == "table" and (rerr.type == "ActorDiedError" or
                        rerr.type == "WorkerCrashedError" or rerr.type == "NodeDiedError") then
                    res = rerr
                    break
                end
            end
        end
        self.tracker = nil -- the framework's helper process for this attempt, if any
        if ok then
            for _, w in ipairs(workers) do pcall(function() luray.get(w.leave:remote()) end) end
            stop_workers(workers)
            self.last_reports = res
            local h, c = collect(res[1])
            for _, m in ipairs(h) do history[#history + 1] = m end
            checkpoint = c or checkpoint
            break
        end
        stop_workers(workers)
        local etype = type(res) == "table" and res.type or nil
        local lost = etype == "ActorDiedError" or etype == "WorkerCrashedError" or
            etype == "NodeDiedError"
        if not lost or failures >= max_failures then error(res, 0) end
        failures = failures + 1
        -- Start again from the last checkpoint rank 0 wrote (the reports of the failed attempt
        -- are lost with it; the checkpoint folder says how far it got).
        local ck = frameworks[cfg.framework] and frameworks[cfg.framework].latest(cfg)
        if ck then
            checkpoint = ck.path
            while #history > ck.epoch do table.remove(history) end
            for e = #history + 1, ck.epoch do history[e] = { epoch = e, resumed = true } end
        end
    end
    return { metrics = history[#history], history = history, checkpoint = checkpoint,
        failures = failures, reports_by_rank = self.last_reports }
end

-- ------------------------------------------------------------------ loading

function M.load(path)
    if type(path) ~= "string" then error("train.load: expected a checkpoint folder", 2) end
    local f = io.open(path .. "/luray_checkpoint.json", "rb")
    if not f then
        error(fmt("train.load: '%s' is not a luray checkpoint (no luray_checkpoint.json)", path), 2)
    end
    local text = f:read("a")
    f:close()
    local fw = text:match('"framework"%s*:%s*"([^"]+)"')
    if frameworks[fw] == nil then
        error(fmt("train.load: '%s' names an unknown framework '%s'", path, tostring(fw)), 2)
    end
    return frameworks[fw].load(path, text)
end

frameworks.nn = require("luray.train.nn")
frameworks.xgboost = require("luray.train.xgboost")

M.Context = Context
return M
