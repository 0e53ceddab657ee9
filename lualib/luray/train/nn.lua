-- The Trainer's "nn" framework: the data-parallel loop on each worker (gradients averaged every
-- step), checkpoints (safetensors weights, the model factory, a JSON description) and loading a
-- checkpoint as a model with predict. With scaling.use_gpu the model and every batch live on
-- "cuda"; gradients cross to the host for the allreduce, checkpoints are written from the host.
local luray = require("luray")
local data = require("luray.data")
local core = require("luray.core")
local common = require("luray.train.common")

local F = {}
local fmt = string.format

local LOSSES = { cross_entropy = true, mse = true, bce = true }
local OPTIMIZERS = { sgd = true, adam = true, adamw = true }

function F.check(cfg)
    if type(cfg.model) ~= "function" then
        error("train.Trainer: framework 'nn' needs model = function() return <module> end", 3)
    end
    if not LOSSES[cfg.loss or ""] then
        error("train.Trainer: loss must be one of cross_entropy, mse, bce", 3)
    end
    local o = cfg.optimizer or { name = "sgd", lr = 0.01 }
    if type(o) ~= "table" or not OPTIMIZERS[o.name or ""] then
        error("train.Trainer: optimizer = {name = 'sgd'|'adam'|'adamw', lr = ...}", 3)
    end
    if type(cfg.label_column) ~= "string" then
        error("train.Trainer: label_column must name a column", 3)
    end
    if cfg.datasets == nil or cfg.datasets.train == nil then
        error("train.Trainer: datasets.train is needed", 3)
    end
end

-- The batch's features as an nn tensor [B, F] on device.
local function inputs(nn, batch, features, device)
    local only = #features == 1 and batch[features[1]]
    if only and only:type() == "tensor" then
        local t = only:tensor()
        local shape = t:shape()
        local f = 1
        for i = 2, #shape do f = f * shape[i] end
        return nn.tensor(t:view({ shape[1], f }), { device = device })
    end
    return nn.tensor(data.C.stack_float32(batch, features), { device = device })
end

-- The batch's labels as the loss wants them: class ids for cross_entropy (a core tensor, which
-- the loss takes on any device), [B, 1] floats on device else.
local function targets(nn, batch, label, loss, device)
    local col = batch[label]
    if col == nil then error(fmt("train: the batch has no label column '%s'", label), 0) end
    if loss == "cross_entropy" then
        if col:type() ~= "int64" then col = col:astype("int64") end
        return col:tensor()
    end
    return nn.tensor(data.C.stack_float32(batch, { label }), { device = device })
end

-- "cuda" when the trainer asked for GPUs, else "cpu".
local function device_of(cfg)
    return cfg.scaling and cfg.scaling.use_gpu and "cuda" or "cpu"
end

-- Averages a gradient across the workers in place; a device's gradient goes through the host,
-- where the collective works.
local function average_grad(nn, group, g)
    if g.device == "cpu" then
        group:allreduce(g.data, "mean")
        return
    end
    local K = nn.backend(g.device)
    local host = K.download(g.data)
    group:allreduce(host, "mean")
    K.copy_(g.data, host)
end

-- Sum of loss * rows, rows, and correct predictions for one batch.
local function batch_stats(nn, out, y, loss_value, rows, loss)
    local correct = 0
    if loss == "cross_entropy" then
        local pred = out:argmax(2):totable()
        local labels = y:totable()
        for i = 1, rows do
            local p = pred[i]
            if type(p) == "table" then p = p[1] end
            if p == labels[i] then correct = correct + 1 end
        end
    elseif loss == "bce" then
        local p, t = out:totable(), y:totable()
        for i = 1, rows do
            if ((p[i][1] >= 0.5) and 1 or 0) == t[i][1] then correct = correct + 1 end
        end
    end
    return loss_value * rows, rows, correct
end

local function evaluate(nn, model, shard, features, cfg, lossfn)
    local s, n, c = 0, 0, 0
    local device = device_of(cfg)
    if shard == nil then return nil end
    model:eval()
    nn.no_grad(function()
        for batch in shard:iter_batches{ batch_size = cfg.batch_size or 128 } do
            local x = inputs(nn, batch, features, device)
            local y = targets(nn, batch, cfg.label_column, cfg.loss, device)
            local out = model(x)
            local l = lossfn(out, y):item()
            local a, b, d = batch_stats(nn, out, y, l, #batch, cfg.loss)
            s, n, c = s + a, n + b, c + d
        end
    end)
    model:train()
    return s, n, c
end

-- Rank 0's checkpoint of an epoch: <dir>/epoch_NNNNNN/{model.safetensors, model.luray,
-- luray_checkpoint.json}.
local function save(cfg, model, features, epoch)
    local coll = require("luray._plugin.collective")
    return common.save_checkpoint(cfg.checkpoint.dir, fmt("epoch_%06d", epoch), {
        framework = "nn", epoch = epoch, label_column = cfg.label_column,
        feature_columns = features, loss = cfg.loss,
    }, function(tmp)
        coll.save_safetensors(tmp .. "/model.safetensors", model:state_dict(),
            { framework = "luray.nn", epoch = tostring(epoch) })
        local f = assert(io.open(tmp .. "/model.luray", "wb"))
        f:write(core.encode(cfg.model))
        f:close()
    end)
end

local function load_weights(model, path)
    local coll = require("luray._plugin.collective")
    local tensors = coll.load_safetensors(path .. "/model.safetensors")
    model:load_state_dict(tensors)
end

function F.loop(cfg, ctx)
    local nn = require("luray.nn")
    -- BLAS threads: this worker's share of CPUs, so workers on one node do not oversubscribe it.
    local share = cfg.scaling and cfg.scaling.resources_per_worker and
        cfg.scaling.resources_per_worker.CPU or 1
    nn.set_num_threads(math.max(1, math.floor(share)))
    nn.manual_seed(cfg.seed or 0) -- every worker starts from the same weights
    local model = cfg.model()
    local start = 0
    if ctx.resume then
        load_weights(model, ctx.resume.checkpoint)
        start = ctx.resume.epoch
    end
    -- Before the optimizer is made, so that its buffers are made on the same device.
    local device = device_of(cfg)
    if device ~= "cpu" then model:to(device) end
    local params = model:parameters()
    local o = cfg.optimizer or { name = "sgd", lr = 0.01 }
    local oopts = {}
    for k, v in pairs(o) do if k ~= "name" then oopts[k] = v end end
    local opt = nn.optim[o.name](params, oopts)
    local lossfn = nn[cfg.loss]
    local shard = ctx.shards.train
    local features = common.features(cfg, shard)
    local every = cfg.checkpoint and (cfg.checkpoint.every_epochs or 1)
    for epoch = start + 1, cfg.epochs or 1 do
        model:train()
        local s, n, c = 0, 0, 0
        for batch in shard:iter_batches{ batch_size = cfg.batch_size or 128 } do
            local x = inputs(nn, batch, features, device)
            local y = targets(nn, batch, cfg.label_column, cfg.loss, device)
            local out = model(x)
            local loss = lossfn(out, y)
            opt:zero_grad()
            loss:backward()
            if ctx.world_size > 1 then
                for _, p in ipairs(params) do
                    if p.grad then average_grad(nn, ctx.group, p.grad) end
                end
            end
            opt:step()
            local a, b, d = batch_stats(nn, out, y, loss:item(), #batch, cfg.loss)
            s, n, c = s + a, n + b, c + d
        end
        local totals = ctx:allreduce({ s, n, c }, "sum")
        local metrics = { epoch = epoch, loss = totals[1] / math.max(totals[2], 1) }
        if cfg.loss ~= "mse" then metrics.accuracy = totals[3] / math.max(totals[2], 1) end
        local vs, vn, vc = evaluate(nn, model, ctx.shards.valid, features, cfg, lossfn)
        if vs then
            local v = ctx:allreduce({ vs, vn, vc }, "sum")
            metrics.valid_loss = v[1] / math.max(v[2], 1)
            if cfg.loss ~= "mse" then metrics.valid_accuracy = v[3] / math.max(v[2], 1) end
        end
        -- Per worker, not averaged: equal on every rank exactly when the weights are.
        local digest = 0
        for _, p in ipairs(params) do
            local d = p.data:totable()
            local function add(v)
                if type(v) == "table" then for _, x in ipairs(v) do add(x) end
                else digest = digest + math.abs(v) end
            end
            add(d)
        end
        metrics.weights_checksum = fmt("%.17g", digest)
        local ckpt
        if every and (epoch % every == 0 or epoch == cfg.epochs) and ctx.world_rank == 0 then
            ckpt = save(cfg, model, features, epoch)
        end
        if ctx.world_size > 1 then ctx:barrier() end
        require("luray.train").report(metrics, { checkpoint = ckpt })
    end
end

-- The newest whole checkpoint under cfg.checkpoint.dir: {path=, epoch=}, or nil.
function F.latest(cfg)
    if not (cfg.checkpoint and cfg.checkpoint.dir) then return nil end
    local names = data.C.list_dir(cfg.checkpoint.dir) or {}
    local best
    for _, n in ipairs(names) do
        local e = n:match("^epoch_(%d+)$")
        local path = cfg.checkpoint.dir .. "/" .. n
        if e and io.open(path .. "/luray_checkpoint.json") then
            e = tonumber(e)
            if best == nil or e > best.epoch then best = { path = path, epoch = e } end
        end
    end
    return best
end

-- A loaded nn checkpoint: model:predict(batch_or_rows) -> one list of outputs per row.
local Model = {}
Model.__index = Model

function F.load(path, text)
    local nn = require("luray.nn")
    local f = io.open(path .. "/model.luray", "rb")
    if not f then error("train.load: " .. path .. " has no model.luray", 0) end
    local factory = core.decode(f:read("a"))
    f:close()
    local model = factory()
    load_weights(model, path)
    model:eval()
    return setmetatable({ framework = "nn", model = model, path = path,
        feature_columns = common.feature_columns(text),
        label_column = text:match('"label_column"%s*:%s*"([^"]*)"') }, Model)
end

function Model:predict(input)
    local nn = require("luray.nn")
    local C = data.C
    local batch = input
    if type(input) == "table" and input[1] ~= nil and getmetatable(input) == nil then
        -- A list of row tables: only the features the model was trained on are read.
        local rows = {}
        for i, r in ipairs(input) do
            local row = {}
            for _, f in ipairs(self.feature_columns) do
                if r[f] == nil then
                    error(fmt("predict: row %d has no feature '%s'", i, f), 2)
                end
                row[f] = r[f] + 0.0
            end
            rows[i] = row
        end
        batch = C.from_rows(rows, self.feature_columns)
    end
    local x = inputs(nn, batch, self.feature_columns)
    local out = nn.no_grad(function() return self.model(x) end)
    local rows = out:totable()
    for i, r in ipairs(rows) do
        if type(r) ~= "table" then rows[i] = { r } end
    end
    return rows
end

return F
