-- luray.xgboost on one process: DMatrix from blocks (NaN missing, several blocks, a dataset) and
-- tensors, binary, regression and multi-class fits, predictions as tensors, xgboost's JSON model
-- files and their round trip, boosters travelling through the object store, clear errors.
local t = require("harness")
luray.init{num_cpus = 2, object_store_memory = 128 * 1024 * 1024}
local data = require("luray.data")
local xgb = require("luray.xgboost")

local tmp = os.getenv("LURAY_TMPDIR") or os.tmpname():match("^(.*)/")

-- n rows of nf uniform features in [-1, 1) and the label fn(row) gives, as a block.
local function make_block(n, nf, seed, fn, label_type)
    math.randomseed(seed)
    local names, cols, rows = {}, {}, {}
    for j = 1, nf do
        names[j] = "f" .. j
        cols[j] = {}
    end
    local y = {}
    for i = 1, n do
        local row = {}
        for j = 1, nf do
            row[j] = math.random() * 2 - 1
            cols[j][i] = row[j]
        end
        y[i] = fn(row)
        rows[i] = row
    end
    local columns = {}
    for j = 1, nf do columns[j] = data.column("float64", cols[j]) end
    names[nf + 1] = "y"
    columns[nf + 1] = data.column(label_type or "int64", y)
    return data.block(names, columns), rows, y
end

local function binary(row) return (row[1] + 0.5 * row[2] - row[3] > 0) and 1 or 0 end

local function accuracy(pred, y)
    local right = 0
    for i = 1, #y do
        if (pred:get(i) > 0.5 and 1 or 0) == y[i] then right = right + 1 end
    end
    return right / #y
end

local BIN = { objective = "binary:logistic", max_depth = 4, eta = 0.3, tree_method = "hist",
    nthread = 2, eval_metric = "logloss" }

local train_blk, _, train_y = make_block(2000, 5, 1, binary)
local test_blk, test_rows, test_y = make_block(1000, 5, 2, binary)

t.test("binary fit and predict from blocks: accuracy above 0.95", function()
    local dtrain = xgb.DMatrix(train_blk, { label = "y" })
    local dtest = xgb.DMatrix(test_blk, { label = "y" })
    t.eq(dtrain:num_row(), 2000)
    t.eq(dtrain:num_col(), 5)
    t.eq(dtrain:feature_names(), { "f1", "f2", "f3", "f4", "f5" })
    local bst, history = xgb.train(BIN, dtrain, 30, { evals = { { dtrain, "train" },
        { dtest, "valid" } } })
    t.eq(bst:num_boosted_rounds(), 30)
    t.eq(#history.valid.logloss, 30)
    t.truthy(history.valid.logloss[30] < history.valid.logloss[1])
    local pred = bst:predict(dtest)
    t.eq(pred:dtype(), "float32")
    t.eq(pred:shape(), { 1000 })
    local acc = accuracy(pred, test_y)
    t.truthy(acc > 0.95, "accuracy " .. acc)
    -- eval gives numbers per set and metric, and libxgboost's text
    local res, text = bst:eval({ { dtest, "valid" } })
    t.near(res.valid.logloss, history.valid.logloss[30], 1e-12)
    t.truthy(text:find("valid-logloss:", 1, true), text)
    -- predict on the block itself: the booster's feature columns, the label ignored
    t.eq(bst:feature_names(), { "f1", "f2", "f3", "f4", "f5" })
    t.eq(bst:predict(test_blk):totable(), pred:totable())
    t.eq(bst:predict(dtest, { output_margin = true }):shape(), { 1000 })
end)

t.test("regression: training RMSE goes down every round", function()
    local blk = make_block(1500, 3, 3, function(r) return 2 * r[1] + math.sin(3 * r[2]) end,
        "float64")
    local dm = xgb.DMatrix(blk, { label = "y" })
    local _, history = xgb.train({ objective = "reg:squarederror", max_depth = 3, eta = 0.3,
        tree_method = "hist", nthread = 2 }, dm, 20, { evals = { { dm, "train" } } })
    local rmse = history.train.rmse
    t.eq(#rmse, 20)
    for i = 2, #rmse do t.truthy(rmse[i] < rmse[i - 1], "round " .. i) end
    t.truthy(rmse[20] < rmse[1] / 4, "rmse " .. rmse[1] .. " -> " .. rmse[20])
end)

t.test("multi-class: softprob gives rows x classes, softmax one class per row", function()
    local function argmax(r)
        if r[1] >= r[2] and r[1] >= r[3] then return 0 end
        return r[2] >= r[3] and 1 or 2
    end
    local blk, _, y = make_block(900, 3, 4, argmax)
    local dm = xgb.DMatrix(blk, { label = "y" })
    local params = { objective = "multi:softprob", num_class = 3, max_depth = 3,
        tree_method = "hist", nthread = 2 }
    local bst = xgb.train(params, dm, 15)
    local p = bst:predict(dm)
    t.eq(p:shape(), { 900, 3 })
    local right = 0
    for i = 1, 900 do
        local s = p:get(i, 1) + p:get(i, 2) + p:get(i, 3)
        t.near(s, 1, 1e-4)
        local best = argmax{ p:get(i, 1), p:get(i, 2), p:get(i, 3) }
        if best == y[i] then right = right + 1 end
    end
    t.truthy(right / 900 > 0.9, "accuracy " .. right / 900)
    params.objective = "multi:softmax"
    local p2 = xgb.train(params, dm, 5):predict(dm)
    t.eq(p2:shape(), { 900 })
end)

t.test("save and load: xgboost's JSON model, same predictions", function()
    local dm = xgb.DMatrix(train_blk, { label = "y" })
    local bst = xgb.train(BIN, dm, 10)
    local path = tmp .. "/model-" .. os.time() .. ".json"
    bst:save(path)
    local f = assert(io.open(path, "rb"))
    local text = f:read("a")
    f:close()
    t.eq(text:sub(1, 1), "{")
    t.truthy(text:find('"learner"', 1, true))
    t.truthy(text:find('"f1"', 1, true), "feature names are in the file")
    local loaded = xgb.load(path)
    t.eq(loaded:num_boosted_rounds(), 10)
    t.eq(loaded:feature_names(), bst:feature_names())
    t.eq(loaded:predict(dm):totable(), bst:predict(dm):totable())
    -- a name without .json still gets JSON
    local path2 = tmp .. "/model-" .. os.time() .. ".bin"
    bst:save(path2)
    local g = assert(io.open(path2, "rb"))
    t.eq(g:read(1), "{")
    g:close()
    local other = xgb.Booster()
    other:load(path2)
    t.eq(other:predict(dm):totable(), bst:predict(dm):totable())
    os.remove(path)
    os.remove(path2)
    -- raw bytes, and a booster travelling through the object store as its JSON
    t.eq(xgb.from_raw(bst:save_raw()):predict(dm):totable(), bst:predict(dm):totable())
    local back = luray.get(luray.put(bst))
    t.eq(back:predict(dm):totable(), bst:predict(dm):totable())
    t.raises(function() xgb.load(tmp .. "/no-such-model.json") end, "cannot open")
end)

t.test("predict from rows: lists of numbers or tables by feature name", function()
    local bst = xgb.train(BIN, xgb.DMatrix(train_blk, { label = "y" }), 10)
    local want = bst:predict(test_blk):totable()
    local named = {}
    for i = 1, 20 do
        named[i] = { y = 1 }
        for j = 1, 5 do named[i]["f" .. j] = test_rows[i][j] end
    end
    local by_list = bst:predict({ table.unpack(test_rows, 1, 20) }):totable()
    local by_name = bst:predict(named):totable()
    for i = 1, 20 do
        t.near(by_list[i], want[i], 1e-6)
        t.near(by_name[i], want[i], 1e-6)
    end
    named[3].f2 = nil
    t.raises(function() bst:predict(named) end, 'row 3 has no number for feature "f2"')
end)

-- The Python package must load the JSON model files and predict what we predict.
local function python_has_xgboost()
    local p = io.popen("python3 -c 'import xgboost' 2>/dev/null && echo yes")
    local out = p and p:read("a") or ""
    if p then p:close() end
    return out:find("yes", 1, true) ~= nil
end

if python_has_xgboost() then
    t.test("xgboost's Python package loads the model file and predicts the same", function()
        local bst = xgb.train(BIN, xgb.DMatrix(train_blk, { label = "y" }), 10)
        local stamp = tostring(os.time()) .. tostring(math.random(1e6))
        local model, csv = tmp .. "/py-" .. stamp .. ".json", tmp .. "/py-" .. stamp .. ".csv"
        bst:save(model)
        local f = assert(io.open(csv, "w"))
        for i = 1, 50 do
            local r = {}
            for j = 1, 5 do r[j] = string.format("%.17g", test_rows[i][j]) end
            f:write(table.concat(r, ","), "\n")
        end
        f:close()
        local script = "import sys, numpy, xgboost; b = xgboost.Booster(model_file=sys.argv[1]); " ..
            "x = numpy.loadtxt(sys.argv[2], delimiter=',', ndmin=2); " ..
            "p = b.predict(xgboost.DMatrix(x, feature_names=b.feature_names)); " ..
            "print(','.join(b.feature_names)); print('\\n'.join('%.9g' % v for v in p))"
        local p = io.popen(string.format("python3 -c \"%s\" '%s' '%s' 2>&1", script, model, csv))
        local out = p:read("a")
        p:close()
        os.remove(model)
        os.remove(csv)
        local lines = {}
        for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
        t.eq(lines[1], "f1,f2,f3,f4,f5", out)
        local ours = bst:predict(test_blk):totable()
        for i = 1, 50 do t.near(tonumber(lines[i + 1]), ours[i], 1e-6) end
    end)
else
    t.skip("xgboost's Python package loads the model file", "python3 has no xgboost module")
end

t.test("continuing training and attributes", function()
    local dm = xgb.DMatrix(train_blk, { label = "y" })
    local bst = xgb.train(BIN, dm, 5)
    xgb.train(BIN, dm, 3, { xgb_model = bst })
    t.eq(bst:num_boosted_rounds(), 8)
    bst:set_attr("best_iteration", "7")
    t.eq(bst:attr("best_iteration"), "7")
    t.eq(bst:attributes().best_iteration, "7")
    bst:set_attr("best_iteration", nil)
    t.eq(bst:attr("best_iteration"), nil)
    t.truthy(bst:config():find('"binary:logistic"', 1, true))
    local stopped = xgb.train(BIN, dm, 50, { callback = function(round) return round == 4 end })
    t.eq(stopped:num_boosted_rounds(), 4)
end)

t.test("DMatrix from blocks: NaN is missing, int64 and bool features, as from a tensor", function()
    local n = 400
    local a, b, c, y, flat = {}, {}, {}, {}, {}
    math.randomseed(5)
    for i = 1, n do
        a[i] = (i % 7 == 0) and 0 / 0 or math.random() * 2 - 1
        b[i] = math.random(0, 9)
        c[i] = math.random() < 0.5
        y[i] = ((a[i] == a[i] and a[i] or 0) + b[i] / 10 > 0.4) and 1 or 0
        flat[i] = { a[i], b[i], c[i] and 1 or 0 }
    end
    local blk = data.block({ "a", "b", "c", "y" }, { data.column("float64", a),
        data.column("int64", b), data.column("bool", c), data.column("int64", y) })
    local dm = xgb.DMatrix(blk, { label = "y" })
    t.eq(dm:num_col(), 3)
    t.eq(dm:get_float("label"):totable()[7], y[7] + 0.0)
    local x = luray.tensor(flat, { dtype = "float32" })
    local dt = xgb.DMatrix(x, { label = y, feature_names = { "a", "b", "c" } })
    local params = { objective = "binary:logistic", max_depth = 3, tree_method = "hist",
        nthread = 1, seed = 1 }
    local b1 = xgb.train(params, dm, 5)
    local b2 = xgb.train(params, dt, 5)
    -- Same trees either way: NaN in the block is a missing value like NaN in the tensor.
    t.eq(b1:predict(dm):totable(), b2:predict(dt):totable())
    t.eq(b1:save_raw(), b2:save_raw())
    local p = b1:predict(dm)
    t.truthy(p:get(7) == p:get(7), "a row with a missing value gets a prediction")
end)

t.test("DMatrix from several blocks, batches and a dataset equals one block", function()
    local blk = train_blk
    local half = blk:num_rows() // 2
    local parts = { blk:slice(1, half), blk:slice(half + 1, blk:num_rows() - half) }
    local params = { objective = "binary:logistic", max_depth = 3, tree_method = "hist",
        nthread = 1 }
    local want = xgb.train(params, xgb.DMatrix(blk, { label = "y" }), 5):save_raw()
    t.eq(xgb.train(params, xgb.DMatrix(parts, { label = "y" }), 5):save_raw(), want)
    local batch = {}
    for _, n in ipairs(blk:names()) do batch[n] = blk:column(n) end
    t.eq(xgb.train(params, xgb.DMatrix(batch, { label = "y" }), 5):save_raw(), want)
    local ds = data.from_blocks(parts)
    local dm = xgb.DMatrix(ds, { label = "y", features = { "f1", "f2", "f3", "f4", "f5" } })
    t.eq(dm:num_row(), blk:num_rows())
    t.eq(xgb.train(params, dm, 5):save_raw(), want)
end)

t.test("a tensor column becomes one feature per element", function()
    local n = 300
    local rows, y = {}, {}
    math.randomseed(6)
    for i = 1, n do
        rows[i] = { math.random(), math.random(), math.random() }
        y[i] = rows[i][2] > 0.5 and 1 or 0
    end
    local x = luray.tensor(rows, { dtype = "float32" })
    local blk = data.block({ "x", "y" }, { data.C.column_from_tensor(x), data.column("int64", y) })
    local dm = xgb.DMatrix(blk, { label = "y" })
    t.eq(dm:num_col(), 3)
    t.eq(dm:feature_names(), { "x_0", "x_1", "x_2" })
    local bst = xgb.train({ objective = "binary:logistic", tree_method = "hist", nthread = 1 },
        dm, 5)
    t.eq(bst:predict(blk):totable(), bst:predict(dm):totable())
    t.eq(bst:predict(x):shape(), { n })
end)

t.test("bad input gets a clear error", function()
    local dm = xgb.DMatrix(train_blk, { label = "y" })
    t.raises(function() xgb.Booster({ objective = "nope" }, { dm }) end,
        "Unknown objective function: `nope`")
    t.raises(function() xgb.train({ max_depth = "abc" }, dm, 1) end,
        "max_depth expect int but value='abc'")
    t.raises(function() xgb.Booster({ eta = {} }, { dm }) end, "eta")
    t.raises(function() xgb.Booster({ max_depth = function() end }, { dm }) end,
        "parameter max_depth: a function")
    t.raises(function() xgb.DMatrix(train_blk, { label = "nope" }) end,
        "label must name a column")
    local s = data.block({ "s", "y" }, { data.column("string", { "a", "b" }),
        data.column("int64", { 0, 1 }) })
    t.raises(function() xgb.DMatrix(s, { label = "y" }) end, '"s" is a string column')
    t.raises(function() xgb.DMatrix(42) end, "expected a data block")
    t.raises(function() xgb.DMatrix(train_blk, { lable = "y" }) end, "unknown option 'lable'")
    t.raises(function() xgb.DMatrix(luray.tensor({ 1, 2, 3 })) end, "2 %(rows x features%)")
    local x = luray.tensor({ { 1, 2 }, { 3, 4 } }, { dtype = "float32" })
    t.raises(function() xgb.DMatrix(x, { label = { 1 } }) end, "1 values for 2 rows")
    t.raises(function() xgb.DMatrix(x, { label = { "a", 1 } }) end, "label value 1 is a string")
    local bst = xgb.train(BIN, dm, 2)
    t.raises(function() bst:predict(data.block({ "f1" }, { data.column("float64", { 1 }) })) end,
        "lacks some of the booster's features")
    t.raises(function() bst:eval({ { dm, "a:b" } }) end, "holds a tab or ':'")
    bst:free()
    t.raises(function() bst:predict(dm) end, "freed")
end)

t.done()
