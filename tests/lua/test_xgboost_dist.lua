-- Distributed xgboost: two luray actors join one job through the C rabit tracker, each trains on
-- half the rows with xgboost's own collective; both end with the same model, as accurate as one
-- worker trained on all the rows. A job whose worker gives the wrong world size fails clearly.
local t = require("harness")
luray.init{num_cpus = 2, object_store_memory = 128 * 1024 * 1024}
local data = require("luray.data")
local xgb = require("luray.xgboost")

local function make_block(n, seed)
    math.randomseed(seed)
    local cols, y = { {}, {}, {}, {} }, {}
    for i = 1, n do
        for j = 1, 4 do cols[j][i] = math.random() * 2 - 1 end
        y[i] = (cols[1][i] - cols[2][i] + 0.5 * cols[3][i] > 0) and 1 or 0
    end
    return data.block({ "a", "b", "c", "d", "y" }, { data.column("float64", cols[1]),
        data.column("float64", cols[2]), data.column("float64", cols[3]),
        data.column("float64", cols[4]), data.column("int64", y) }), y
end

local function accuracy(pred, y)
    local right = 0
    for i = 1, #y do
        if (pred:get(i) > 0.5 and 1 or 0) == y[i] then right = right + 1 end
    end
    return right / #y
end

local PARAMS = { objective = "binary:logistic", max_depth = 4, eta = 0.3, tree_method = "hist",
    nthread = 1 }
local ROUNDS = 20

local Worker = luray.actor{
    fit = function(self, cfg, block, params, rounds)
        local x = require("luray.xgboost")
        return x.collective(cfg, function()
            local dm = x.DMatrix(block, { label = "y" })
            local bst = x.train(params, dm, rounds)
            return { model = bst:save_raw(), rank = x.rank(), world = x.world_size(),
                rows = dm:num_row() }
        end)
    end,
    pid = function(self)
        local f = io.open("/proc/self/stat")
        local s = f:read("l")
        f:close()
        return tonumber(s:match("^(%d+)"))
    end,
}

local train_blk = make_block(4000, 11)
local test_blk, test_y = make_block(2000, 12)

t.test("two workers over rabit end with the same model, as accurate as one", function()
    local tracker = xgb.tracker(2, "127.0.0.1")
    t.truthy(tracker.port > 0)
    local half = train_blk:num_rows() // 2
    local halves = { train_blk:slice(1, half), train_blk:slice(half + 1, half) }
    local workers = { Worker:remote(), Worker:remote() }
    t.ne(luray.get(workers[1].pid:remote()), luray.get(workers[2].pid:remote()))
    local refs = {}
    for i = 1, 2 do
        local cfg = { tracker_uri = tracker.host, tracker_port = tracker.port, task_id = i - 1,
            world_size = 2 }
        refs[i] = workers[i].fit:remote(cfg, halves[i], PARAMS, ROUNDS)
    end
    local out = luray.get(refs)
    t.truthy(tracker.handle:wait(30), "every worker told the tracker it finished")
    t.eq(tracker.handle:state(), "done")
    tracker.handle:close()
    for i = 1, 2 do
        t.eq(out[i].rank, i - 1)
        t.eq(out[i].world, 2)
        t.eq(out[i].rows, half)
    end
    t.eq(out[1].model, out[2].model, "the two workers' models")

    local dist = xgb.from_raw(out[1].model)
    t.eq(dist:num_boosted_rounds(), ROUNDS)
    local single = xgb.train(PARAMS, xgb.DMatrix(train_blk, { label = "y" }), ROUNDS)
    local acc_dist = accuracy(dist:predict(test_blk), test_y)
    local acc_single = accuracy(single:predict(test_blk), test_y)
    t.truthy(acc_single > 0.95, "one worker: " .. acc_single)
    t.truthy(math.abs(acc_dist - acc_single) < 0.02,
        string.format("two workers %.4f, one worker %.4f", acc_dist, acc_single))

    -- The same actors can join a second job.
    local again = xgb.tracker(2)
    for i = 1, 2 do
        refs[i] = workers[i].fit:remote({ tracker_uri = again.host, tracker_port = again.port,
            task_id = i - 1 }, halves[i], PARAMS, 3)
    end
    out = luray.get(refs)
    t.eq(out[1].model, out[2].model)
    t.truthy(again.handle:wait(30))
    for _, w in ipairs(workers) do luray.kill(w) end
end)

t.test("a worker with the wrong world size fails the job with a reason", function()
    local tracker = xgb.tracker(2)
    local w = Worker:remote()
    local err = t.raises(function()
        luray.get(w.fit:remote({ tracker_uri = tracker.host, tracker_port = tracker.port,
            world_size = 3, rabit_timeout = 1, rabit_timeout_sec = 5,
            DMLC_WORKER_CONNECT_RETRY = 1 }, train_blk, PARAMS, 1))
    end, "XGCommunicatorInit")
    t.truthy(tostring(err):find("rabit_init", 1, true), tostring(err))
    t.raises(function() tracker.handle:wait(5) end, "world size is 3, the tracker serves 2")
    tracker.handle:close()
    t.raises(function() tracker.handle:wait() end, "closed")
    luray.kill(w)
end)

t.test("rabit_init checks its arguments", function()
    t.raises(function() xgb.collective_init{ tracker_port = 1 } end, "needs tracker_uri")
    t.raises(function() xgb.collective_init{ tracker_uri = "h", tracker_port = 1, bogus = 1 } end,
        "unknown key bogus")
    t.raises(function()
        xgb.collective_init{ tracker_uri = "a b", tracker_port = 1 }
    end, "holds a space")
    t.raises(function() xgb.tracker(0) end, "out of range")
    t.eq(xgb.rank(), 0)
    t.eq(xgb.world_size(), 1)
end)

t.done()
