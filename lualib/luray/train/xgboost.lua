-- The Trainer's "xgboost" framework: each worker builds a DMatrix from its shard's blocks (no
-- row-by-row copy), the workers boost together through xgboost's own collective (rabit) with a
-- tracker the driver runs, and rank 0 writes the model as xgboost's JSON.
local common = require("luray.train.common")

local F = {}
local fmt = string.format

function F.check(cfg)
    if type(cfg.params) ~= "table" then
        error("train.Trainer: framework 'xgboost' needs params = {objective = ..., ...}", 3)
    end
    if math.type(cfg.num_boost_round) ~= "integer" or cfg.num_boost_round < 1 then
        error("train.Trainer: num_boost_round must be an integer >= 1", 3)
    end
    if type(cfg.label_column) ~= "string" then
        error("train.Trainer: label_column must name a column", 3)
    end
    if cfg.datasets == nil or cfg.datasets.train == nil then
        error("train.Trainer: datasets.train is needed", 3)
    end
end

-- On the driver, before the workers start: a tracker for num_workers > 1. What it returns
-- reaches every worker's loop as ctx.prepared.
function F.prepare(trainer)
    if trainer.num_workers < 2 then return nil end
    local xgb = require("luray.xgboost")
    local t = xgb.tracker(trainer.num_workers, "127.0.0.1")
    trainer.tracker = t -- kept alive (and serving) while the fit runs
    return { host = t.host, port = t.port }
end

local function save(cfg, booster, features, rounds)
    local dir = cfg.checkpoint and cfg.checkpoint.dir
    if not dir then return nil end
    return common.save_checkpoint(dir, fmt("round_%06d", rounds), {
        framework = "xgboost", epoch = rounds, label_column = cfg.label_column,
        feature_columns = features,
    }, function(tmp) booster:save(tmp .. "/model.json") end)
end

-- The last value of each metric of each evaluation set.
local function last_metrics(history, out)
    for set, metrics in pairs(history or {}) do
        for m, values in pairs(metrics) do out[set .. "_" .. m] = values[#values] end
    end
    return out
end

function F.loop(cfg, ctx)
    local xgb = require("luray.xgboost")
    local shard = ctx.shards.train
    local features = common.features(cfg, shard)
    local share = cfg.scaling and cfg.scaling.resources_per_worker and
        cfg.scaling.resources_per_worker.CPU or 1
    local params = {}
    for k, v in pairs(cfg.params) do params[k] = v end
    if params.nthread == nil then params.nthread = math.max(1, math.floor(share)) end
    local function fit()
        local dtrain = xgb.DMatrix(shard, { label = cfg.label_column, features = features })
        local evals = { { dtrain, "train" } }
        if ctx.shards.valid then
            evals[2] = { xgb.DMatrix(ctx.shards.valid, { label = cfg.label_column,
                features = features }), "valid" }
        end
        local booster, history = xgb.train(params, dtrain, cfg.num_boost_round, { evals = evals })
        local metrics = last_metrics(history, { epoch = cfg.num_boost_round,
            rounds = booster:num_boosted_rounds() })
        local ckpt
        if ctx.world_rank == 0 then ckpt = save(cfg, booster, features, cfg.num_boost_round) end
        return metrics, ckpt, booster:save_raw()
    end
    local metrics, ckpt, raw
    if ctx.prepared then
        -- rabit_timeout: a worker whose peer died fails after a minute instead of waiting for
        -- ever, so the Trainer can start the group again.
        metrics, ckpt, raw = xgb.collective({ tracker_uri = ctx.prepared.host,
            tracker_port = ctx.prepared.port, task_id = tostring(ctx.world_rank),
            world_size = ctx.world_size, rabit_timeout = 1, rabit_timeout_sec = 60 }, fit)
    else
        metrics, ckpt, raw = fit()
    end
    -- Equal on every rank exactly when the boosters are.
    local h = 0
    for i = 1, #raw do h = (h * 31 + raw:byte(i)) % 4294967296 end
    metrics.model_checksum = fmt("%d:%d", #raw, h)
    require("luray.train").report(metrics, { checkpoint = ckpt })
end

-- Boosting is not resumed from a checkpoint (that needs each round's state, not only the
-- model): after a lost worker the fit starts again from the first round.
function F.latest(cfg)
    return nil
end

local Model = {}
Model.__index = Model

function F.load(path, text)
    local xgb = require("luray.xgboost")
    return setmetatable({ framework = "xgboost", path = path,
        feature_columns = common.feature_columns(text),
        booster = xgb.load(path .. "/model.json") }, Model)
end

-- One prediction per row: a number (binary, regression) or a list (multi-class).
function Model:predict(input)
    local out = self.booster:predict(input, { features = self.feature_columns })
    local t = out:totable()
    return t
end

return F
