-- The luray demo, end to end: a synthetic credit-default data set written by parallel tasks,
-- cleaned and featurised with luray.data, an MLP (nn) and boosted trees (xgboost) trained through
-- the same Trainer, compared on a held-out split, and the better one served over HTTP with
-- dynamic batching. Run with `make demo` or `build/bin/luray run scripts/demo.lua [ROWS]`;
-- docs/tutorial.md walks through it. Its files go to a temporary folder removed at the end, or to
-- $LURAY_DEMO_DIR, kept: customers/*.csv, ckpt-nn/, ckpt-xgb/, stats.json (the scaling).
local luray = require("luray")
local core = require("luray.core")
local data = require("luray.data")
local train = require("luray.train")

local fmt = string.format
local ROWS = math.tointeger(tonumber(arg and arg[1] or "80000"))
if ROWS == nil or ROWS < 1000 then error("demo: ROWS must be an integer >= 1000", 0) end
local PARTS = 4 -- CSV files, one task each
local KEEP = os.getenv("LURAY_DEMO_DIR")
if KEEP == "" then KEEP = nil end
if KEEP and KEEP:find("[\"'\\%c]") then
    -- The folder goes into shell commands and curl's config quoted, so these cannot appear.
    error("demo: LURAY_DEMO_DIR must not contain quotes, backslashes or control characters", 0)
end

-- ------------------------------------------------------------------ the data set's shape

local EMPLOYMENT = { "salaried", "self_employed", "retired", "unemployed", "student" }
local HOME = { "rent", "mortgage", "own" }
local REGION = { "north", "south", "east", "west" }
local HEADER = "customer_id,age,income,debt,credit_limit,balance,late_payments,tenure_years," ..
    "employment,home,region,default"
local LABEL = "default"

-- What a model sees: numeric columns standardised with the training split's mean and standard
-- deviation, each category one-hot (a bool column per value).
local NUMERIC = { "age", "income", "debt", "credit_limit", "balance", "late_payments",
    "tenure_years", "debt_to_income", "utilization" }
local CATEGORIES = { employment = EMPLOYMENT, home = HOME, region = REGION }

-- ------------------------------------------------------------------ step output

local t_step
local function step(title)
    t_step = core.now()
    print(fmt("\n== %s", title))
end
local function done(what) print(fmt("   %s  [%.2f s]", what, core.now() - t_step)) end

-- ------------------------------------------------------------------ 1. generate

-- Writes customers first .. first + n - 1 to path as CSV, drawn from seed `part`. About 1% of
-- the incomes are missing and 0.3% of the ages are entry errors (0 or 150), for the cleaning step
-- to drop. Returns the bytes written.
local write_part = luray.remote(function(path, part, first, n)
    math.randomseed(part)
    local rnd = math.random
    local function normal()
        return math.sqrt(-2 * math.log(1 - rnd())) * math.cos(2 * math.pi * rnd())
    end
    local function pick(list, weights)
        local u = rnd()
        for i, w in ipairs(weights) do
            if u < w then return list[i] end
            u = u - w
        end
        return list[#list]
    end
    local f = assert(io.open(path, "wb"))
    local buf = { HEADER, "\n" }
    for id = first, first + n - 1 do
        local e = pick(EMPLOYMENT, { 0.6, 0.15, 0.1, 0.08, 0.07 })
        local h = pick(HOME, { 0.4, 0.4, 0.2 })
        local r = REGION[rnd(1, #REGION)]
        local age = math.floor(math.min(90, math.max(18, 42 + 12 * normal())))
        if e == "student" then
            age = 18 + rnd(0, 8)
        elseif e == "retired" then
            age = 62 + rnd(0, 25)
        end
        local income = math.exp(10.7 + 0.5 * normal()) *
            (({ unemployed = 0.3, retired = 0.6, student = 0.25 })[e] or 1.0)
        local limit = (income * (0.1 + 0.3 * rnd()) // 100 + 1) * 100
        local util = math.min(1.0, rnd() ^ 1.6 * (e == "unemployed" and 1.5 or 1.0))
        local debt = income * math.exp(-0.9 + 0.7 * normal())
        local late = 0
        while rnd() < 0.15 + 0.5 * util * util and late < 12 do late = late + 1 end
        local tenure = rnd(0, math.min(30, age - 18))
        -- The rule the models have to find, with noise on top: thresholds and an interaction (a
        -- maxed-out card, a third late payment, high debt on a low income) make it more than a
        -- linear score.
        local logit = -3.4 + 2.0 * util + (util > 0.9 and 1.2 or 0) + 0.3 * late
            + (late >= 3 and 1.0 or 0) + (debt / income > 0.8 and income < 30000 and 1.5 or 0)
            + (({ unemployed = 1.2, student = 0.5, self_employed = 0.3 })[e] or 0)
            - 0.015 * (age - 40) - 0.03 * tenure + (h == "own" and -0.4 or 0)
            + (r == "south" and 0.15 or 0) + 0.3 * normal()
        local label = rnd() < 1 / (1 + math.exp(-logit)) and 1 or 0
        local income_s = string.format("%.2f", income)
        if rnd() < 0.01 then income_s = "" end
        if rnd() < 0.003 then age = (rnd() < 0.5) and 0 or 150 end
        buf[#buf + 1] = string.format("%d,%d,%s,%.2f,%d,%.2f,%d,%d,%s,%s,%s,%d\n", id, age,
            income_s, debt, limit, limit * util, late, tenure, e, h, r, label)
        if #buf >= 4096 then
            assert(f:write(table.concat(buf)))
            buf = {}
        end
    end
    assert(f:write(table.concat(buf)))
    local bytes = f:seek("end")
    assert(f:close())
    return bytes
end)

local function generate(dir)
    step(fmt("1. Generate %d customers: %d CSV files written by parallel tasks", ROWS, PARTS))
    local refs, first = {}, 1
    for p = 1, PARTS do
        local n = ROWS // PARTS + (p <= ROWS % PARTS and 1 or 0)
        refs[p] = write_part:remote(fmt("%s/part-%d.csv", dir, p), p, first, n)
        first = first + n
    end
    local bytes = 0
    for _, b in ipairs(luray.get(refs)) do bytes = bytes + b end
    done(fmt("%.1f MB in %s", bytes / 1e6, dir))
end

-- ------------------------------------------------------------------ 2. prepare

-- Derived columns, computed in C over whole columns.
local function add_derived(b)
    b.debt_to_income = b.debt / b.income
    b.utilization = b.balance / b.credit_limit
    return b
end

-- Model inputs from raw columns (a batch, or any table of columns): standardised numbers, one-hot
-- categories, and the label when the batch has one. Training and serving both call it.
local function featurize(b, stats)
    if b.utilization == nil then b = add_derived(b) end
    local out = {}
    for _, c in ipairs(NUMERIC) do out[c] = (b[c] - stats[c].mean) / stats[c].std end
    for col, values in pairs(CATEGORIES) do
        for _, v in ipairs(values) do out[col .. "_" .. v] = b[col]:eq(v) end
    end
    if b[LABEL] then out[LABEL] = b[LABEL] end
    return out
end

local function prepare(dir)
    step("2. Prepare with luray.data: read, clean, derive, split, standardise, one-hot")
    local raw = data.read_csv(dir)
    local types = {}
    for i, n in ipairs(raw:schema().names) do types[i] = n .. ":" .. raw:schema().types[i] end
    print("   columns: " .. table.concat(types, " "))
    local clean = raw
        :filter(function(r) return r.age >= 18 and r.age <= 100 and r.income == r.income end)
        :map_batches(add_derived)
    local train_raw, test_raw = clean:train_test_split(0.2, { shuffle = true, seed = 42 })
    -- Scaling statistics come from the training split only, so the test split stays unseen.
    local stats = {}
    for _, c in ipairs(NUMERIC) do
        stats[c] = { mean = train_raw:mean(c), std = train_raw:std(c) }
    end
    local function to_features(b) return featurize(b, stats) end
    local train_ds = train_raw:map_batches(to_features):materialize()
    local test_ds = test_raw:map_batches(to_features):materialize()
    local n_train, n_test = train_ds:count(), test_ds:count()
    local positives = train_ds:sum(LABEL)
    print(fmt("   %d rows kept, %d dropped (missing income or impossible age)",
        n_train + n_test, ROWS - n_train - n_test))
    print(fmt("   train %d rows, test %d rows, %d features; %.1f%% of the training rows default",
        n_train, n_test, #train_ds:schema().names - 1, 100 * positives / n_train))
    done("datasets materialised in the object store")
    return train_ds, test_ds, stats, test_raw
end

-- ------------------------------------------------------------------ 3. train

local function fit_nn(train_ds, test_ds, dir)
    step("3a. Train an MLP (luray.nn) on 2 workers, gradients averaged every step")
    local n_features = #train_ds:schema().names - 1
    local result = train.Trainer{
        framework = "nn",
        model = function()
            local nn = require("luray.nn")
            return nn.Sequential{ nn.Linear(n_features, 32), nn.ReLU(), nn.Linear(32, 16),
                nn.ReLU(), nn.Linear(16, 2) }
        end,
        loss = "cross_entropy", optimizer = { name = "adam", lr = 3e-3 },
        label_column = LABEL, epochs = 6, batch_size = 256,
        scaling = { num_workers = 2, resources_per_worker = { CPU = 1 } },
        datasets = { train = train_ds, valid = test_ds },
        checkpoint = { dir = dir .. "/ckpt-nn" },
    }:fit()
    for _, m in ipairs(result.history) do
        print(fmt("   epoch %d: loss %.4f, accuracy %.4f, valid loss %.4f, valid accuracy %.4f",
            m.epoch, m.loss, m.accuracy, m.valid_loss, m.valid_accuracy))
    end
    done("checkpoint " .. result.checkpoint)
    return result, core.now() - t_step
end

local function fit_xgboost(train_ds, test_ds, dir)
    step("3b. Train boosted trees (xgboost) on 2 workers through the same Trainer")
    local result = train.Trainer{
        framework = "xgboost",
        params = { objective = "binary:logistic", tree_method = "hist", max_depth = 4,
            eta = 0.15, eval_metric = { "logloss", "auc" } },
        num_boost_round = 100,
        label_column = LABEL,
        scaling = { num_workers = 2, resources_per_worker = { CPU = 1 } },
        datasets = { train = train_ds, valid = test_ds },
        checkpoint = { dir = dir .. "/ckpt-xgb" },
    }:fit()
    local m = result.metrics
    print(fmt("   %d rounds: train logloss %.4f, valid logloss %.4f, valid auc %.4f", m.rounds,
        m.train_logloss, m.valid_logloss, m.valid_auc))
    done("checkpoint " .. result.checkpoint)
    return result, core.now() - t_step
end

-- ------------------------------------------------------------------ 4. compare

-- P(default) from one prediction: nn gives the two logits, xgboost the probability itself.
local function probability(p)
    if type(p) == "table" then return 1 / (1 + math.exp(p[1] - p[2])) end
    return p
end

-- Area under the ROC curve: the chance that a random defaulter scores above a random
-- non-defaulter (ties count half), from the ranks of the scores.
local function auc(scores, labels)
    local order = {}
    for i = 1, #scores do order[i] = i end
    table.sort(order, function(a, b) return scores[a] < scores[b] end)
    local rank_sum, pos, i = 0, 0, 1
    while i <= #order do
        local j = i
        while j < #order and scores[order[j + 1]] == scores[order[i]] do j = j + 1 end
        for k = i, j do
            if labels[order[k]] == 1 then
                rank_sum = rank_sum + (i + j) / 2
                pos = pos + 1
            end
        end
        i = j + 1
    end
    local neg = #order - pos
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)
end

local function evaluate(checkpoint, test_ds)
    local model = train.load(checkpoint)
    local scores, labels = {}, {}
    local t0 = core.now()
    for b in test_ds:iter_batches{ batch_size = 4096 } do
        local out, y = model:predict(b), b[LABEL]:totable()
        for i = 1, #out do
            scores[#scores + 1] = probability(out[i])
            labels[#labels + 1] = y[i]
        end
    end
    local predict_s = core.now() - t0
    local correct, logloss, positives = 0, 0, 0
    for i, p in ipairs(scores) do
        if (p >= 0.5 and 1 or 0) == labels[i] then correct = correct + 1 end
        positives = positives + labels[i]
        local q = math.min(math.max(p, 1e-7), 1 - 1e-7)
        logloss = logloss - (labels[i] == 1 and math.log(q) or math.log(1 - q))
    end
    return { accuracy = correct / #scores, auc = auc(scores, labels),
        logloss = logloss / #scores, rows = #scores, predict_s = predict_s,
        positives = positives / #labels }
end

local function compare(runs, test_ds)
    step("4. Compare on the held-out split")
    print(fmt("   %-18s %9s %7s %8s %9s %11s", "model", "accuracy", "AUC", "logloss", "train s",
        "predict/s"))
    local best
    for _, r in ipairs(runs) do
        local m = evaluate(r.result.checkpoint, test_ds)
        r.eval = m
        print(fmt("   %-18s %9.4f %7.4f %8.4f %9.2f %11.0f", r.name, m.accuracy, m.auc, m.logloss,
            r.seconds, m.rows / m.predict_s))
        if best == nil or m.auc > best.eval.auc then best = r end
    end
    print(fmt("   %-18s %9.4f %7s %8s", "always 'no default'", 1 - runs[1].eval.positives, "0.5",
        "-"))
    done(fmt("best by AUC: %s", best.name))
    return best
end

-- ------------------------------------------------------------------ 5. serve

-- The fields a customer record sends, as in the CSV.
local RAW_NUMBERS = { "age", "income", "debt", "credit_limit", "balance", "late_payments",
    "tenure_years" }

-- Nil when the record can be scored, else what is wrong with it.
local function check_customer(c, k)
    if type(c) ~= "table" then return fmt("customer %d is not an object", k) end
    for _, f in ipairs(RAW_NUMBERS) do
        if type(c[f]) ~= "number" or c[f] ~= c[f] then
            return fmt("customer %d: '%s' must be a number", k, f)
        end
    end
    if c.income <= 0 or c.credit_limit <= 0 then
        return fmt("customer %d: 'income' and 'credit_limit' must be above 0", k)
    end
    for f in pairs(CATEGORIES) do
        if type(c[f]) ~= "string" then return fmt("customer %d: '%s' must be a string", k, f) end
    end
    return nil
end

-- Customer records as a table of columns, the form featurize takes.
local function to_columns(customers)
    local cols = {}
    for _, f in ipairs(RAW_NUMBERS) do
        local list = {}
        for i, c in ipairs(customers) do list[i] = c[f] + 0.0 end
        cols[f] = data.column("float64", list)
    end
    for f in pairs(CATEGORIES) do
        local list = {}
        for i, c in ipairs(customers) do list[i] = c[f] end
        cols[f] = data.column("string", list)
    end
    return cols
end

-- The deployment: each replica loads the checkpoint once; the batch handler gets the requests
-- that arrived together (up to max_batch_size, waiting at most batch_wait_timeout_s for more)
-- and scores all their customers with one featurize and one predict.
local CreditScorer = {
    init = function(self, checkpoint, stats)
        self.model = require("luray.train").load(checkpoint)
        self.stats = stats
    end,
    batch = function(self, reqs)
        local json = require("luray.serve").json_encode
        local results, customers, owner = {}, {}, {}
        for i, req in ipairs(reqs) do
            local body = req.json
            local list = type(body) == "table" and (body.customers or (body.age and { body }))
            local err
            if type(list) ~= "table" or #list == 0 then
                err = 'send one customer object or {"customers": [...]}'
            else
                for k, c in ipairs(list) do
                    err = err or check_customer(c, k)
                end
            end
            if err then
                results[i] = { status = 400, headers = { ["content-type"] = "application/json" },
                    body = json({ error = err }) }
            else
                results[i] = { model = self.model.framework, single = body.customers == nil,
                    default_probability = {} }
                for _, c in ipairs(list) do
                    customers[#customers + 1] = c
                    owner[#owner + 1] = i
                end
            end
        end
        if #customers > 0 then
            local out = self.model:predict(featurize(to_columns(customers), self.stats))
            for k, p in ipairs(out) do
                local probs = results[owner[k]].default_probability
                probs[#probs + 1] = math.floor(probability(p) * 1e4 + 0.5) / 1e4
            end
        end
        for _, r in ipairs(results) do
            if r.single then r.default_probability = r.default_probability[1] end
            r.single = nil
        end
        return results
    end,
}

-- A customer's request record: the raw fields only, as a client would send them.
local function record(row)
    local c = {}
    for _, f in ipairs(RAW_NUMBERS) do c[f] = row[f] end
    for f in pairs(CATEGORIES) do c[f] = row[f] end
    return c
end

-- Clients: send(bodies) posts each JSON body, up to 32 at a time, and returns {code, text} per
-- body in order. The HTTP one runs one curl process per call (bodies go through files, never
-- through the shell); where curl is missing, the requests go through a deployment handle, which
-- calls the replicas without HTTP.
local function curl_client(url, dir)
    local seq = 0
    return function(bodies)
        seq = seq + 1
        local cfg = {}
        for i, body in ipairs(bodies) do
            local name = fmt("%s/request-%d-%d", dir, seq, i)
            local f = assert(io.open(name .. ".json", "wb"))
            assert(f:write(body))
            assert(f:close())
            cfg[#cfg + 1] = fmt('url = "%s"\ndata-binary = "@%s.json"\noutput = "%s.out"\n' ..
                'header = "content-type: application/json"\nwrite-out = "%d %%{http_code}\\n"\n',
                url, name, name, i)
            if i < #bodies then cfg[#cfg + 1] = "next\n" end
        end
        local cfg_path = fmt("%s/requests-%d.cfg", dir, seq)
        local f = assert(io.open(cfg_path, "wb"))
        assert(f:write(table.concat(cfg)))
        assert(f:close())
        local p = assert(io.popen(fmt("curl --no-progress-meter --parallel --parallel-max 32 " ..
            "-K '%s'", cfg_path)))
        local codes = {}
        for line in p:lines() do
            local i, code = line:match("^(%d+) (%d+)$")
            if i then codes[tonumber(i)] = tonumber(code) end
        end
        p:close()
        local out = {}
        for i = 1, #bodies do
            local name = fmt("%s/request-%d-%d", dir, seq, i)
            local r = io.open(name .. ".out", "rb")
            out[i] = { code = codes[i] or 0, text = r and r:read("a") or "" }
            if r then r:close() end
            os.remove(name .. ".json")
            os.remove(name .. ".out")
        end
        os.remove(cfg_path)
        return out
    end
end

local function handle_client(serve, name)
    local handle = serve.get_deployment_handle(name)
    return function(bodies)
        local refs = {}
        for i, body in ipairs(bodies) do
            local ok, decoded = pcall(serve.json_decode, body)
            refs[i] = handle:remote({ method = "POST", path = "/score", query = {}, body = body,
                headers = { ["content-type"] = "application/json" },
                json = ok and decoded or nil })
        end
        local out = {}
        for i, r in ipairs(luray.get(refs)) do
            if r.status then out[i] = { code = r.status, text = r.body }
            else out[i] = { code = 200, text = serve.json_encode(r) } end
        end
        return out
    end
end

local function serve_best(best, stats, test_raw, dir)
    step(fmt("5. Serve %s over HTTP: a batch handler calling train.load(checkpoint):predict",
        best.name))
    local serve = require("luray.serve")
    local json = serve.json_encode
    local app = serve.deployment({ name = "credit_scorer", route_prefix = "/score",
        num_replicas = 1, max_batch_size = 32, batch_wait_timeout_s = 0.005,
        max_ongoing_requests = 64 }, CreditScorer)
    -- Port 0: the system picks a free port; serve.run says which.
    local _, where = serve.run(app:bind(best.result.checkpoint, stats),
        { host = "127.0.0.1", port = 0 })
    local url = fmt("http://%s:%d/score", where.host, where.port)
    local st = serve.status().deployments.credit_scorer
    done(fmt("%s: %s, %d replica", url, st.status, st.replicas))

    local send
    if os.execute("command -v curl >/dev/null 2>&1") then
        step("6. Ask it with curl: single requests, several customers, a bad record, a burst")
        send = curl_client(url, dir)
    else
        step("6. Ask it (curl is not installed: through a deployment handle instead of HTTP)")
        send = handle_client(serve, "credit_scorer")
    end
    local rows = test_raw:take(508)
    -- Three customers to show: a low-risk profile, a maxed-out card with late payments, and an
    -- unemployed customer without either.
    local shown = {}
    for _, want in ipairs({
        function(r) return r.utilization < 0.3 and r.late_payments == 0 end,
        function(r) return r.utilization > 0.9 and r.late_payments >= 3 end,
        function(r) return r.employment == "unemployed" and r.late_payments < 3 end }) do
        for _, r in ipairs(rows) do
            if want(r) then shown[#shown + 1] = r break end
        end
    end
    for _, r in ipairs(shown) do
        local a = send({ json(record(r)) })[1]
        print(fmt("   customer %d (age %d, %s, utilization %.2f, %d late payments)\n" ..
            "     -> %d %s   defaulted: %s", r.customer_id, r.age, r.employment, r.utilization,
            r.late_payments, a.code, a.text, r[LABEL] == 1 and "yes" or "no"))
    end
    local several = {}
    for i = 4, 8 do several[#several + 1] = record(rows[i]) end
    local a = send({ json({ customers = several }) })[1]
    print(fmt("   5 customers in one request\n     -> %d %s", a.code, a.text))
    a = send({ '{"customers": [{"age": "forty"}]}' })[1]
    print(fmt("   a bad record\n     -> %d %s", a.code, a.text))

    -- The burst: one customer per request, 32 requests in flight at a time; the batch handler
    -- scores the requests that arrive together in one call.
    local bodies = {}
    for i = 9, #rows do bodies[#bodies + 1] = json(record(rows[i])) end
    local t0 = core.now()
    local answers = send(bodies)
    local secs = core.now() - t0
    local ok_count, hits, expected, predicted = 0, 0, 0, 0
    for i, ans in ipairs(answers) do
        if ans.code == 200 then
            ok_count = ok_count + 1
            local p = serve.json_decode(ans.text).default_probability
            local y = rows[8 + i][LABEL]
            predicted, expected = predicted + p, expected + y
            if (p >= 0.5 and 1 or 0) == y then hits = hits + 1 end
        end
    end
    print(fmt("   a burst of %d requests: %d answered 200 in %.2f s (%.0f requests/s)", #bodies,
        ok_count, secs, #bodies / secs))
    print(fmt("     %d of %d classified right at the 0.5 threshold; expected defaults (the sum of "
        .. "the probabilities) %.1f, actual %d", hits, ok_count, predicted, expected))
    serve.shutdown()
    done("serve shut down")
end

-- ------------------------------------------------------------------ main

-- The folder for the data set, the checkpoints and the requests: $LURAY_DEMO_DIR, or a private
-- one removed at the end.
local function make_workdir()
    local dir = KEEP
    if dir == nil then
        dir = os.tmpname()
        os.remove(dir)
    end
    local ok, err = data.C.mkdirs(dir .. "/customers")
    if not ok then error("demo: cannot make " .. dir .. "/customers: " .. tostring(err), 0) end
    return dir
end

-- The scaling statistics, for serving the model elsewhere (docs/tutorial.md's app.lua).
local function save_stats(stats, path)
    local f = assert(io.open(path, "wb"))
    f:write(require("luray.serve").json_encode(stats), "\n")
    f:close()
end

local function main(dir)
    local t_start = core.now()
    luray.init()
    print(fmt("luray demo: a credit-default model from raw CSV to an HTTP endpoint (%d CPUs)",
        math.floor(luray.cluster_resources().CPU)))
    generate(dir .. "/customers")
    local train_ds, test_ds, stats, test_raw = prepare(dir .. "/customers")
    save_stats(stats, dir .. "/stats.json")
    local nn_result, nn_s = fit_nn(train_ds, test_ds, dir)
    local xgb_result, xgb_s = fit_xgboost(train_ds, test_ds, dir)
    local best = compare({
        { name = "MLP (nn)", result = nn_result, seconds = nn_s },
        { name = "trees (xgboost)", result = xgb_result, seconds = xgb_s },
    }, test_ds)
    serve_best(best, stats, test_raw, dir)
    if KEEP then
        print(fmt("\nkept in %s: customers/, ckpt-nn/, ckpt-xgb/, stats.json; best checkpoint:\n  %s",
            dir, best.result.checkpoint))
    end
    print(fmt("\ndemo finished in %.1f s", core.now() - t_start))
end

local dir = make_workdir()
local ok, err = xpcall(main, debug.traceback, dir)
if not ok then pcall(function() require("luray.serve").shutdown() end) end
if not KEEP then os.execute(fmt("rm -rf '%s'", dir)) end
luray.shutdown()
if not ok then error(err, 0) end
