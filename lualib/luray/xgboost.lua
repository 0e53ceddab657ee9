-- luray.xgboost: gradient boosted trees through libxgboost (the C plugin luray._plugin.xgboost).
-- DMatrix from Data blocks, batches, datasets or tensors; Booster training, evaluation,
-- prediction and xgboost's own JSON model files; the rabit tracker and collective for training
-- over several workers. docs/xgboost.md describes the API.
local C = require("luray._plugin.xgboost")

local M = {}
M.C = C

local fmt = string.format
local registry = debug.getregistry()

local function is_block(v) return getmetatable(v) == registry["data.Block"] end
local function is_column(v) return getmetatable(v) == registry["data.Column"] end
local function is_dmatrix(v) return getmetatable(v) == registry["xgboost.DMatrix"] end
local function is_booster(v) return getmetatable(v) == registry["xgboost.Booster"] end
local function is_tensor(v)
    local mt = getmetatable(v)
    return type(v) == "userdata" and type(mt) == "table" and mt.__name == "luray.Tensor"
end
M.is_dmatrix = is_dmatrix
M.is_booster = is_booster

local check_keys = require("luray._opts").check

-- A batch of columns: a Data Batch (ordered names), a plain {name = Column} table (names
-- sorted) or a Block. Returns names and a name -> Column lookup.
local function columns_of(part)
    if is_block(part) then
        local names, cols = part:names(), {}
        for _, n in ipairs(names) do cols[n] = part:column(n) end
        return names, cols
    end
    local names
    if type(part.names) == "function" then
        names = part:names()
    else
        names = {}
        for k in pairs(part) do names[#names + 1] = k end
        table.sort(names)
    end
    local cols = {}
    for _, n in ipairs(names) do
        local c = rawget(part, n)
        if not is_column(c) then
            error(fmt("DMatrix: field %s of a batch is a %s, not a data.Column", tostring(n),
                type(c)), 4)
        end
        cols[n] = c
    end
    return names, cols
end

local function is_part(v)
    if is_block(v) then return true end
    if type(v) ~= "table" or getmetatable(v) == nil and #v > 0 then return false end
    local k, c = next(v)
    return k ~= nil and is_column(c)
end

-- The blocks or batches of data: one of them, a list of them, or a Dataset (its blocks).
local function parts_of(data)
    if is_part(data) then return { data } end
    if type(data) == "table" and type(data.iter_batches) == "function" then
        local parts = {}
        for batch in data:iter_batches{ batch_size = false } do parts[#parts + 1] = batch end
        if #parts == 0 then error("DMatrix: the dataset has no rows", 3) end
        return parts
    end
    if type(data) == "table" and #data > 0 then
        for i, p in ipairs(data) do
            if not is_part(p) then
                error(fmt("DMatrix: item %d is a %s, expected a data block or batch", i,
                    type(p)), 3)
            end
        end
        return data
    end
    error("DMatrix: expected a data block or batch, a list of them, a dataset or a 2-D tensor, " ..
        "got " .. type(data), 3)
end

-- Names of the columns a booster's feature names came from ("x_0", "x_1" come from tensor
-- column x), in order; nil when some are not in the part.
local function columns_for_features(features, cols)
    local out, seen = {}, {}
    for _, f in ipairs(features) do
        local name = cols[f] and f or f:match("^(.*)_%d+$")
        if name == nil or cols[name] == nil then return nil end
        if not seen[name] then
            seen[name] = true
            out[#out + 1] = name
        end
    end
    return out
end

local function dmatrix_from_parts(parts, opts)
    local names, first = columns_of(parts[1])
    local skip = {}
    if opts.label ~= nil then skip[opts.label] = true end
    if opts.weight ~= nil then skip[opts.weight] = true end
    local features = opts.features
    if features == nil then
        features = {}
        for _, n in ipairs(names) do
            if not skip[n] then features[#features + 1] = n end
        end
    end
    for _, key in ipairs{ "label", "weight" } do
        local n = opts[key]
        if n ~= nil and (type(n) ~= "string" or first[n] == nil) then
            error(fmt("DMatrix: %s must name a column of the data (columns: %s), got %s", key,
                table.concat(names, ", "), tostring(n)), 3)
        end
    end
    if #features == 0 then error("DMatrix: no feature columns", 3) end
    local cparts, labels, weights = {}, {}, {}
    for i, part in ipairs(parts) do
        local _, cols = columns_of(part)
        local list = {}
        for j, f in ipairs(features) do
            list[j] = cols[f]
            if list[j] == nil then
                error(fmt("DMatrix: block %d has no column %q", i, tostring(f)), 3)
            end
        end
        cparts[i] = list
        if opts.label then labels[i] = cols[opts.label] end
        if opts.weight then weights[i] = cols[opts.weight] end
    end
    return C.dmatrix_from_columns(cparts, features, {
        label = opts.label and labels or nil,
        weight = opts.weight and weights or nil,
        nthread = opts.nthread,
    })
end

local DMATRIX_OPTS = { label = true, weight = true, features = true, feature_names = true,
    missing = true, nthread = true, base_margin = true }

-- DMatrix(data, {label=, weight=, features=, nthread=}) from blocks, batches or a dataset:
-- label and weight name columns, features lists the feature columns (default: every other
-- column). DMatrix(tensor, {label=, weight=, missing=, feature_names=, nthread=}) from a 2-D
-- tensor: label and weight are 1-D tensors, data.Columns or lists of numbers.
function M.DMatrix(data, opts)
    opts = check_keys(opts, DMATRIX_OPTS, "DMatrix")
    if is_tensor(data) then
        return C.dmatrix_from_tensor(data, opts)
    end
    for _, k in ipairs{ "missing", "feature_names", "base_margin" } do
        if opts[k] ~= nil then
            error(fmt("DMatrix: option %s is for tensor input (blocks use NaN for missing " ..
                "and their column names)", k), 2)
        end
    end
    return dmatrix_from_parts(parts_of(data), opts)
end

-- ------------------------------------------------------------------ Booster

-- Booster(params [, cache]): a new booster with params (strings, numbers, booleans, or lists
-- for repeated keys such as eval_metric) over the DMatrix list cache; it takes the feature names
-- of the first.
function M.Booster(params, cache)
    if params ~= nil and type(params) ~= "table" then
        error("Booster: params must be a table", 2)
    end
    cache = cache or {}
    if is_dmatrix(cache) then cache = { cache } end
    local b = C.booster(cache, params or {})
    if cache[1] ~= nil then
        local names = cache[1]:feature_names()
        if #names > 0 then b:set_feature_names(names) end
    end
    return b
end

M.load = C.booster_load
M.from_raw = C.booster_from_raw

-- Whether data is a list of rows: tables of numbers, as lists or by feature name.
local function is_rows(data)
    if type(data) ~= "table" or getmetatable(data) ~= nil or type(data[1]) ~= "table" then
        return false
    end
    return not is_part(data[1])
end

-- A float32 tensor of rows x features from a list of rows: each a list of numbers in feature
-- order, or a table by feature name (the booster's names).
local function rows_tensor(rows, names)
    local m = {}
    for i, r in ipairs(rows) do
        if type(r) ~= "table" then
            error(fmt("predict: row %d is a %s, expected a table of numbers", i, type(r)), 3)
        end
        if #r > 0 then
            m[i] = r
        else
            if #names == 0 then
                error("predict: rows by feature name need a booster with feature names", 3)
            end
            local row = {}
            for j, n in ipairs(names) do
                row[j] = r[n]
                if type(row[j]) ~= "number" then
                    error(fmt("predict: row %d has no number for feature %q", i, n), 3)
                end
            end
            m[i] = row
        end
    end
    return require("luray").tensor(m, { dtype = "float32" })
end

-- booster:predict(data [, opts]) takes a DMatrix, or anything DMatrix takes: for blocks and
-- batches the feature columns default to the booster's feature names. A list of rows (lists of
-- numbers, or tables by feature name) works too.
local methods = registry["xgboost.Booster"].__index
local c_predict = methods.predict
local PREDICT_OPTS = { output_margin = true, pred_leaf = true, pred_contribs = true,
    iteration_begin = true, iteration_end = true, training = true, features = true,
    missing = true, nthread = true }
function methods.predict(self, data, opts)
    opts = check_keys(opts, PREDICT_OPTS, "predict")
    if is_dmatrix(data) then return c_predict(self, data, opts) end
    local dm
    if is_rows(data) then data = rows_tensor(data, self:feature_names()) end
    if is_tensor(data) then
        dm = C.dmatrix_from_tensor(data, { missing = opts.missing, nthread = opts.nthread })
    else
        local parts = parts_of(data)
        local features = opts.features
        if features == nil then
            local names = self:feature_names()
            if #names > 0 then
                local _, cols = columns_of(parts[1])
                features = columns_for_features(names, cols)
                if features == nil then
                    error("predict: the data lacks some of the booster's features (" ..
                        table.concat(names, ", ") .. ")", 2)
                end
            end
        end
        dm = dmatrix_from_parts(parts, { features = features, nthread = opts.nthread })
    end
    local out = c_predict(self, dm, opts)
    dm:free()
    return out
end

-- Copies history[set][metric] lists out of one round's results.
local function record(history, results)
    for set, metrics in pairs(results) do
        local h = history[set] or {}
        history[set] = h
        for m, v in pairs(metrics) do
            h[m] = h[m] or {}
            h[m][#h[m] + 1] = v
        end
    end
end

local TRAIN_OPTS = { evals = true, verbose_eval = true, callback = true, xgb_model = true }

-- train(params, dtrain, num_boost_round [, {evals=, verbose_eval=, callback=, xgb_model=}]):
-- a trained Booster and the evaluation history {set = {metric = {round 1, round 2, ...}}}.
-- evals is a list of {dmatrix, name}; verbose_eval (true or every N rounds) prints the
-- evaluation to stderr; callback(round, booster, results) may return true to stop early;
-- xgb_model (a Booster) continues training it.
function M.train(params, dtrain, num_boost_round, opts)
    opts = check_keys(opts, TRAIN_OPTS, "train")
    if not is_dmatrix(dtrain) then error("train: dtrain must be a DMatrix", 2) end
    if math.type(num_boost_round) ~= "integer" or num_boost_round < 0 then
        error("train: num_boost_round must be an integer >= 0", 2)
    end
    local evals = opts.evals or {}
    local cache = { dtrain }
    for i, e in ipairs(evals) do
        if type(e) ~= "table" or not is_dmatrix(e[1]) or type(e[2]) ~= "string" then
            error(fmt("train: evals[%d] must be {dmatrix, name}", i), 2)
        end
        cache[#cache + 1] = e[1]
    end
    local booster = opts.xgb_model
    if booster ~= nil then
        if not is_booster(booster) then error("train: xgb_model must be a Booster", 2) end
        booster:set_param(params or {})
    else
        booster = M.Booster(params, cache)
    end
    local start = booster:num_boosted_rounds()
    local every = opts.verbose_eval == true and 1 or tonumber(opts.verbose_eval)
    local history = {}
    for i = start, start + num_boost_round - 1 do
        booster:update(dtrain, i)
        local results, text
        if #evals > 0 then
            results, text = booster:eval(evals, i)
            record(history, results)
            if every and every > 0 and (i - start) % every == 0 then
                io.stderr:write(text, "\n")
            end
        end
        if opts.callback and opts.callback(i + 1, booster, results) == true then break end
    end
    return booster, history
end

-- ------------------------------------------------------------------ distributed training

M.version = C.xgboost_version

-- tracker(n_workers [, host [, port]]): starts a rabit tracker for n_workers on a background
-- thread: {host=, port=, handle=} (handle:wait([seconds]), handle:state(), handle:close()).
M.tracker = C.tracker_start

-- collective_init{tracker_uri=, tracker_port=, task_id=, world_size=} joins the job of a tracker
-- (returns the rank); collective_finalize() leaves it.
M.collective_init = C.rabit_init
M.collective_finalize = C.rabit_finalize
M.rank = C.rabit_rank
M.world_size = C.rabit_world_size

-- collective(cfg, fn, ...): runs fn(...) inside the collective of cfg and leaves it afterwards,
-- also when fn raises; returns what fn returned.
function M.collective(cfg, fn, ...)
    C.rabit_init(cfg)
    local res = table.pack(pcall(fn, ...))
    local ok_fin, fin_err = pcall(C.rabit_finalize)
    if not res[1] then error(res[2], 0) end
    if not ok_fin then error(fin_err, 0) end
    return table.unpack(res, 2, res.n)
end

return M
