-- Bench group "xgb" (BENCH.md: xgboost): luray.xgboost training on a synthetic binary set of
-- 100,000 rows x 28 float64 features (times LURAY_BENCH_SCALE), hist, depth 6, 100 rounds,
-- nthread 2. peers/xgb_python.py makes the same rows (the same splitmix64 stream, the same sums
-- in the same order) and trains the Python package on them with the same parameters.
--
--   luray run xgb.lua       xgboost_train_seconds (median of the timed runs: booster creation and
--                           100 rounds on a fresh DMatrix each run, quantile sketch included),
--                           xgboost_dmatrix_seconds (the DMatrix from the block's columns)
local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local B = dofile(dir .. "/lib/bench.lua")
local data = require("luray.data")
local xgb = require("luray.xgboost")

local ROWS = B.n(100000)
local FEATURES = 28
local ROUNDS = 100
local SEED = 20240601
local PARAMS = { objective = "binary:logistic", tree_method = "hist", max_depth = 6, eta = 0.3,
    nthread = 2 }

-- splitmix64: Lua 5.4 integers wrap around on overflow and >> is a logical shift, as the
-- uint64 arithmetic of the Python side.
local function splitmix(seed)
    local state = seed
    return function()
        state = state + 0x9E3779B97F4A7C15
        local z = state
        z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
        z = (z ~ (z >> 27)) * 0x94D049BB133111EB
        z = z ~ (z >> 31)
        return (z >> 11) * 2.0 ^ -53 -- uniform in [0, 1)
    end
end

-- Row i draws 28 features then a noise value, each 2u - 1. The label is 1 when
-- sum_j w_j x_j + x_1 x_2 + noise / 2 > 0, with w_j = ((j mod 7) - 3) / 3 for j = 0..27,
-- summed left to right.
local function make_block()
    local rand = splitmix(SEED)
    local cols, y = {}, {}
    local w = {}
    for j = 1, FEATURES do
        cols[j] = {}
        w[j] = (((j - 1) % 7) - 3) / 3
    end
    local positives, sum0 = 0, 0.0
    for i = 1, ROWS do
        local z = 0.0
        for j = 1, FEATURES do
            local x = rand() * 2 - 1
            cols[j][i] = x
            z = z + w[j] * x
        end
        z = z + cols[1][i] * cols[2][i]
        z = z + (rand() * 2 - 1) * 0.5
        y[i] = z > 0 and 1 or 0
        positives = positives + y[i]
        sum0 = sum0 + cols[1][i]
    end
    local names, columns = {}, {}
    for j = 1, FEATURES do
        names[j] = "f" .. (j - 1)
        columns[j] = data.column("float64", cols[j])
    end
    names[FEATURES + 1] = "label"
    columns[FEATURES + 1] = data.column("int64", y)
    return data.block(names, columns), positives, sum0
end

local function figures()
    B.log("xgb: making %d x %d rows", ROWS, FEATURES)
    local block, positives, sum0 = make_block()
    local extra = { rows = ROWS, features = FEATURES, rounds = ROUNDS, nthread = PARAMS.nthread,
        max_depth = PARAMS.max_depth, positives = positives,
        sum_f0 = string.format("%.6f", sum0), libxgboost = xgb.version() }
    B.log("xgb: %d positives, sum of f0 %.6f, libxgboost %s", positives, sum0, xgb.version())

    local function dmatrix()
        return xgb.DMatrix(block, { label = "label", nthread = PARAMS.nthread })
    end

    -- Warm-up: a short fit (threads started, pages touched).
    B.log("xgboost_train_seconds: warm-up")
    xgb.train(PARAMS, dmatrix(), 10):free()
    local train_runs, dm_runs = {}, {}
    local final
    for i = 1, B.runs do
        collectgarbage()
        local t0 = B.now()
        local dm = dmatrix()
        local t1 = B.now()
        local bst = xgb.train(PARAMS, dm, ROUNDS)
        local t2 = B.now()
        dm_runs[i], train_runs[i] = t1 - t0, t2 - t1
        B.log("xgboost_train_seconds: run %d: %.3f s (DMatrix %.3f s)", i, t2 - t1, t1 - t0)
        if final then final:free() end
        final = bst
        dm:free()
    end
    -- The model must have learned the set: training accuracy far above chance.
    local pred = final:predict(block)
    local right = 0
    local labels = block:column("label")
    for i = 1, ROWS do
        if (pred:get(i) > 0.5 and 1 or 0) == labels[i] then right = right + 1 end
    end
    extra.train_accuracy = string.format("%.4f", right / ROWS)
    if right / ROWS < 0.8 then
        error(string.format("training accuracy %.3f: the model did not learn", right / ROWS), 0)
    end
    local v = B.median(train_runs)
    B.log("xgboost_train_seconds: %.4f s", v)
    B.emit("xgboost_train_seconds", v, "s", train_runs, extra)
    B.emit("xgboost_dmatrix_seconds", B.median(dm_runs), "s", dm_runs,
        { rows = ROWS, features = FEATURES })
end

local ok, err = pcall(figures)
if not ok then
    B.log("xgboost_train_seconds: FAILED: %s", tostring(err))
    B.failed = (B.failed or 0) + 1
end
B.finish()
