-- The Trainer with the nn framework: 1 and 2 workers reach the same accuracy, workers end with
-- identical weights, checkpoints load as models, and a worker killed mid-fit is survived.
local t = require("harness")
local data = require("luray.data")
local train = require("luray.train")
luray.init{num_cpus = 2, object_store_memory = 256 * 1024 * 1024}

local helpers = require("train_helpers")
local base = helpers.folder()
local separable = helpers.separable

local function mlp()
    local nn = require("luray.nn")
    return nn.Sequential{nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2)}
end

local function trainer(n, extra)
    local cfg = {
        framework = "nn", model = mlp, loss = "cross_entropy",
        optimizer = {name = "adam", lr = 0.05}, label_column = "label",
        epochs = 4, batch_size = 64, scaling = {num_workers = n},
        datasets = {train = separable(4000, 7), valid = separable(1000, 99)},
        checkpoint = {dir = base .. "/ckpt" .. n},
    }
    for k, v in pairs(extra or {}) do cfg[k] = v end
    return train.Trainer(cfg)
end

t.test("one worker fits a separable set; the checkpoint loads and predicts", function()
    local r = trainer(1):fit()
    t.truthy(r.metrics.accuracy > 0.95, "accuracy " .. r.metrics.accuracy)
    t.truthy(r.metrics.valid_accuracy > 0.95, "valid accuracy " .. r.metrics.valid_accuracy)
    t.eq(#r.history, 4)
    t.truthy(r.history[4].loss < r.history[1].loss, "the loss falls")
    local m = train.load(r.checkpoint)
    local p = m:predict({{x1 = 0.6, x2 = 0.3}, {x1 = -0.6, x2 = -0.1, label = 5}})
    t.truthy(p[1][2] > p[1][1], "row 1 is class 1")
    t.truthy(p[2][1] > p[2][2], "row 2 is class 0")
    -- A batch predicts too, one entry per row.
    for b in separable(10, 3):iter_batches{batch_size = 10} do t.eq(#m:predict(b), 10) end
end)

t.test("two workers reach the accuracy one does, holding identical weights", function()
    local r = trainer(2):fit()
    t.truthy(r.metrics.accuracy > 0.95, "accuracy " .. r.metrics.accuracy)
    t.truthy(r.metrics.valid_accuracy > 0.95, "valid accuracy " .. r.metrics.valid_accuracy)
    local ranks = r.reports_by_rank
    t.eq(#ranks, 2)
    for e = 1, 4 do
        t.eq(ranks[1][e].metrics.weights_checksum, ranks[2][e].metrics.weights_checksum,
            "epoch " .. e)
    end
end)

t.test("a worker killed mid-fit: the trainer resumes from the last checkpoint and finishes", function()
    local marker = base .. "/killed-once"
    local r = trainer(2, {
        epochs = 4,
        checkpoint = {dir = base .. "/ckpt-fail", every_epochs = 1},
        failure = {max_failures = 1},
        model = function()
            local nn = require("luray.nn")
            local Killer = nn.Module.extend(nn.Module, "Killer")
            local calls = 0
            function Killer:forward(x)
                calls = calls + 1
                -- Rank 1 dies once, in its fourth epoch (about 40 calls an epoch), after the
                -- checkpoint of epoch 3.
                local ctx = require("luray.train").get_context()
                if ctx.world_rank == 1 and calls == 150 and not io.open(marker) then
                    io.open(marker, "w"):close()
                    os.exit(9)
                end
                return x
            end
            return nn.Sequential{nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2), Killer()}
        end,
    }):fit()
    t.truthy(io.open(marker) ~= nil, "the worker did die")
    t.eq(r.failures, 1)
    t.eq(#r.history, 4)
    t.truthy(r.metrics.accuracy > 0.95, "accuracy " .. r.metrics.accuracy)
    t.truthy(r.checkpoint:match("epoch_000004$"), r.checkpoint)
    -- Epochs 1-3 came from the checkpoint; epoch 4 ran again after the restart.
    t.eq(r.history[3].resumed, true)
    t.eq(r.history[4].resumed, nil)
    t.eq(r.history[4].epoch, 4)
end)

t.test("a custom train_loop: context, allreduce, barrier, its shard and report", function()
    local r = train.Trainer{
        scaling = {num_workers = 2},
        datasets = {train = data.range(100)},
        config = {scale = 10},
        train_loop = function(config)
            local tr = require("luray.train")
            local ctx = tr.get_context()
            local shard = tr.get_dataset_shard("train")
            local n, sum = 0, 0
            for b in shard:iter_batches{batch_size = 7} do
                n = n + #b
                sum = sum + b.id:sum()
            end
            local totals = ctx:allreduce({n, sum}, "sum")
            local t2 = luray.tensor({ctx.world_rank + 1.0, 2.0}, {dtype = "float32"})
            ctx:allreduce(t2, "mean")
            ctx:barrier()
            tr.report({rank = ctx.world_rank, world = ctx.world_size, rows = totals[1],
                sum = totals[2], mean_rank = t2:get(1), mine = n, scaled = config.scale})
        end,
    }:fit()
    t.eq(r.metrics.world, 2)
    t.eq(r.metrics.rows, 100)
    t.eq(r.metrics.sum, 4950)
    t.eq(r.metrics.mean_rank, 1.5)
    t.eq(r.metrics.mine, 50)
    t.eq(r.metrics.scaled, 10)
    t.eq(r.reports_by_rank[2][1].metrics.rank, 1)
    t.raises(function() train.get_context() end, "not inside a training worker")
end)

t.test("bad options are refused by name", function()
    t.raises(function() train.Trainer{framework = "torch"} end, "framework must be one of")
    t.raises(function() train.Trainer{framework = "nn", model = mlp, loss = "hinge",
        label_column = "label", datasets = {train = separable(10, 1)}} end, "loss must be one of")
    t.raises(function() train.Trainer{framework = "nn", modle = mlp} end, "unknown option 'modle'")
    t.raises(function() train.load(base .. "/nothing") end, "not a luray checkpoint")
end)

helpers.cleanup(base)
t.done()
