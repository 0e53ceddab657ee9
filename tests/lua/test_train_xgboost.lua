-- The Trainer with the xgboost framework: the same pipeline as nn with other fields; 1 and 2
-- workers (xgboost's own collective, the driver's tracker) reach the same accuracy with identical
-- boosters, and the checkpoint is xgboost's JSON that train.load predicts with.
local t = require("harness")
local data = require("luray.data")
local train = require("luray.train")
luray.init{num_cpus = 2, object_store_memory = 256 * 1024 * 1024}

local helpers = require("train_helpers")
local base = helpers.folder()
local separable = helpers.separable

local function fit(n)
    return train.Trainer{
        framework = "xgboost",
        params = {objective = "binary:logistic", max_depth = 3, eta = 0.3, tree_method = "hist",
            eval_metric = "error"},
        num_boost_round = 20, label_column = "label", scaling = {num_workers = n},
        datasets = {train = separable(4000, 3), valid = separable(1000, 11)},
        checkpoint = {dir = base .. "/xgb" .. n},
    }:fit()
end

t.test("one and two workers fit alike; the workers' boosters are identical", function()
    local r1, r2 = fit(1), fit(2)
    t.truthy(r1.metrics.valid_error < 0.05, "1 worker valid error " .. r1.metrics.valid_error)
    t.truthy(r2.metrics.valid_error < 0.05, "2 workers valid error " .. r2.metrics.valid_error)
    t.truthy(math.abs(r1.metrics.valid_error - r2.metrics.valid_error) < 0.02)
    t.eq(r2.reports_by_rank[1][1].metrics.model_checksum,
        r2.reports_by_rank[2][1].metrics.model_checksum)
    t.eq(r2.metrics.rounds, 20)
    -- xgboost's own JSON model file, loaded back as a model with predict.
    local f = assert(io.open(r2.checkpoint .. "/model.json"))
    t.truthy(f:read(1) == "{")
    f:close()
    local m = train.load(r2.checkpoint)
    local p = m:predict({{x1 = 0.5, x2 = 0.3}, {x1 = -0.5, x2 = -0.3, label = 1}})
    t.truthy(p[1] > 0.9 and p[2] < 0.1, tostring(p[1]) .. " " .. tostring(p[2]))
end)

t.test("framework-specific fields are checked", function()
    t.raises(function() train.Trainer{framework = "xgboost", num_boost_round = 5,
        label_column = "label", datasets = {train = separable(10, 1)}} end, "needs params")
    t.raises(function() train.Trainer{framework = "xgboost", params = {}, num_boost_round = 0,
        label_column = "label", datasets = {train = separable(10, 1)}} end, "num_boost_round")
end)

helpers.cleanup(base)
t.done()
