-- Bench group "serve" (BENCH.md, ours), each figure measured with
-- `wrk -t2 -c64 -d10s --latency --timeout 30s` against one replica on 127.0.0.1 (the long
-- timeout keeps slow answers in the latency figures instead of dropping them as errors):
--   serve_noop_requests_per_s, serve_noop_p99_ms: a Lua handler returning {"ok": true};
--   serve_mlp_predictions_per_s: an nn MLP 64-256-256-10 loaded from a Trainer checkpoint behind
--     a batch handler (up to 32 requests per call), one sample per request;
--   serve_mlp_batched_predictions_per_s: the same endpoint, 16 samples per request.
-- Medians of LURAY_BENCH_RUNS runs after a 2 s warm-up; LURAY_BENCH_SCALE scales the 10 s.
-- Both deployments use max_ongoing_requests = 100, luray's default; peers/serve_ray.py sets the
-- same for Ray Serve, whose default of 5 stalls at 64 connections.
--
--   luray run serve.lua        (needs wrk: scripts/install-deps.sh bench)
local luray = require("luray")
local data = require("luray.data")
local serve = require("luray.serve")
local train = require("luray.train")
local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local B = dofile(dir .. "/lib/bench.lua")

local fmt = string.format
local SECONDS = math.max(1, math.floor(10 * B.scale + 0.5))
local FEATURES, CLASSES = 64, 10
local MAX_ONGOING = 100

if not os.execute("command -v wrk >/dev/null 2>&1") then
    error("serve bench: wrk is not installed (scripts/install-deps.sh bench installs it)", 0)
end

-- A private folder for the checkpoint and wrk's request script, removed at the end.
local work = os.tmpname()
os.remove(work)
assert(data.C.mkdirs(work))

local UNIT_MS = { us = 1e-3, ms = 1, s = 1e3, m = 6e4 }

-- One wrk run against url (with an optional request script): requests/s and p99 in ms. Raises
-- when wrk fails, its output cannot be read, or any request failed.
local function wrk(url, seconds, script)
    local cmd = fmt("wrk -t2 -c64 -d%ds --latency --timeout 30s%s '%s' 2>&1", seconds,
        script and fmt(" -s '%s'", script) or "", url)
    local p = assert(io.popen(cmd))
    local out = p:read("a")
    local ok = p:close()
    if not ok then error("wrk failed: " .. out, 0) end
    local rps = tonumber(out:match("Requests/sec:%s+([%d.]+)"))
    local v, unit = out:match("\n%s+99%%%s+([%d.]+)(%a+)")
    if rps == nil or v == nil or UNIT_MS[unit] == nil then
        error("cannot read wrk's output:\n" .. out, 0)
    end
    local bad = tonumber(out:match("Non%-2xx or 3xx responses:%s+(%d+)") or "0")
    local c, r, w, t = out:match("Socket errors: connect (%d+), read (%d+), write (%d+), " ..
        "timeout (%d+)")
    local sock = c and (tonumber(c) + tonumber(r) + tonumber(w) + tonumber(t)) or 0
    if bad + sock > 0 then
        error(fmt("%d non-2xx answers and %d socket errors:\n%s", bad, sock, out), 0)
    end
    return rps, tonumber(v) * UNIT_MS[unit]
end

-- A warm-up, then B.runs timed wrk runs; emits the median requests/s times per_request (as
-- name, in unit) and, when p99_name is given, the median p99.
local function figure(name, unit, url, opts)
    local ok, err = pcall(function()
        B.log("%s: warm-up", name)
        wrk(url, 2, opts.script)
        local rates, p99s = {}, {}
        for i = 1, B.runs do
            local rps, p99 = wrk(url, SECONDS, opts.script)
            rates[i] = rps * (opts.per_request or 1)
            p99s[i] = p99
            B.log("%s run %d: %.1f %s, p99 %.2f ms", name, i, rates[i], unit, p99)
        end
        local extra = { wrk = fmt("-t2 -c64 -d%ds", SECONDS), replicas = 1,
            max_ongoing_requests = MAX_ONGOING }
        for k, v in pairs(opts.extra or {}) do extra[k] = v end
        B.emit(name, B.median(rates), unit, rates, extra)
        if opts.p99_name then B.emit(opts.p99_name, B.median(p99s), "ms", p99s, extra) end
    end)
    if not ok then
        B.log("%s: FAILED: %s", name, tostring(err))
        B.failed = (B.failed or 0) + 1
    end
end

-- Deploys one application on a port the system picks; returns its base URL.
local function deploy(app)
    local _, where = serve.run(app, { host = "127.0.0.1", port = 0 })
    return fmt("http://%s:%d", where.host, where.port)
end

-- ------------------------------------------------------------------ no-op

local function bench_noop()
    local url = deploy(serve.deployment({ name = "noop", route_prefix = "/",
        max_ongoing_requests = MAX_ONGOING }, {
        call = function(self, req) return { ok = true } end,
    }):bind())
    figure("serve_noop_requests_per_s", "req/s", url .. "/",
        { p99_name = "serve_noop_p99_ms" })
    serve.shutdown()
end

-- ------------------------------------------------------------------ MLP

-- A real checkpoint: one epoch of the Trainer over random samples (the weights do not change
-- the work of a prediction).
local function mlp_checkpoint()
    local nn = require("luray.nn")
    local n = 4096
    local ds = data.from_tensors{
        x = nn.randn({ n, FEATURES }, { seed = 1 }).data,
        label = nn.rand({ n }, { seed = 2, low = 0, high = CLASSES }):to("int64").data,
    }
    local result = train.Trainer{
        framework = "nn",
        model = function()
            local m = require("luray.nn")
            return m.Sequential{ m.Linear(FEATURES, 256), m.ReLU(), m.Linear(256, 256), m.ReLU(),
                m.Linear(256, CLASSES) }
        end,
        loss = "cross_entropy", optimizer = { name = "sgd", lr = 0.01 }, label_column = "label",
        epochs = 1, batch_size = 128, scaling = { num_workers = 1 },
        datasets = { train = ds }, checkpoint = { dir = work .. "/ckpt" },
    }:fit()
    return result.checkpoint
end

-- {"instances": [[64 numbers], ...]} -> {"predictions": [class id, ...]}; every request of a
-- batch goes through one predict.
local Classifier = {
    init = function(self, checkpoint)
        self.model = require("luray.train").load(checkpoint)
    end,
    batch = function(self, reqs)
        local rows, owner, out = {}, {}, {}
        for i, req in ipairs(reqs) do
            local inst = type(req.json) == "table" and req.json.instances
            local bad = type(inst) ~= "table" or #inst == 0
            for _, x in ipairs(type(inst) == "table" and inst or {}) do
                if type(x) ~= "table" or #x ~= FEATURES then bad = true end
            end
            if bad then
                out[i] = { status = 400, body = fmt('{"error": "send {\\"instances\\": ' ..
                    '[[%d numbers], ...]}"}', FEATURES) }
            else
                out[i] = { predictions = {} }
                for _, x in ipairs(inst) do
                    rows[#rows + 1] = x
                    owner[#owner + 1] = i
                end
            end
        end
        if #rows > 0 then
            local x = luray.tensor(rows, { dtype = "float32" })
            local logits = self.model:predict({ x = data.C.column_from_tensor(x) })
            for k, l in ipairs(logits) do
                local best = 1
                for j = 2, #l do if l[j] > l[best] then best = j end end
                local preds = out[owner[k]].predictions
                preds[#preds + 1] = best - 1
            end
        end
        return out
    end,
}

-- wrk's request script: a POST of `samples` samples.
local function post_script(samples)
    local inst = {}
    for s = 1, samples do
        local x = {}
        for j = 1, FEATURES do x[j] = fmt("%.4f", math.sin(s * 31 + j)) end
        inst[s] = "[" .. table.concat(x, ",") .. "]"
    end
    local body = '{"instances": [' .. table.concat(inst, ",") .. "]}"
    local path = fmt("%s/post-%d.lua", work, samples)
    local f = assert(io.open(path, "wb"))
    f:write('wrk.method = "POST"\n', 'wrk.headers["Content-Type"] = "application/json"\n',
        fmt("wrk.body = %q\n", body))
    f:close()
    return path, body
end

-- The endpoint answers a request with the right number of predictions (checked once with curl,
-- where it is installed; wrk itself only sees status codes).
local function check_answer(url, body, samples)
    if not os.execute("command -v curl >/dev/null 2>&1") then return end
    local path = work .. "/check.json"
    local f = assert(io.open(path, "wb"))
    f:write(body)
    f:close()
    local p = assert(io.popen(fmt("curl -sS -H 'content-type: application/json' " ..
        "--data-binary @'%s' '%s' 2>&1", path, url)))
    local out = p:read("a")
    p:close()
    local preds = serve.json_decode(out)
    if type(preds) ~= "table" or type(preds.predictions) ~= "table" or
        #preds.predictions ~= samples then
        error(fmt("serve bench: %s answered %s", url, out), 0)
    end
end

local function bench_mlp()
    local checkpoint = mlp_checkpoint()
    local url = deploy(serve.deployment({ name = "mlp", route_prefix = "/predict",
        max_batch_size = 32, batch_wait_timeout_s = 0.002,
        max_ongoing_requests = MAX_ONGOING }, Classifier):bind(checkpoint)) .. "/predict"
    local model = fmt("mlp %d-256-256-%d", FEATURES, CLASSES)
    for _, samples in ipairs({ 1, 16 }) do
        local script, body = post_script(samples)
        check_answer(url, body, samples)
        figure(samples == 1 and "serve_mlp_predictions_per_s" or
            "serve_mlp_batched_predictions_per_s", "predictions/s", url, {
                script = script, per_request = samples,
                extra = { model = model, samples_per_request = samples, max_batch_size = 32 },
            })
    end
    serve.shutdown()
end

local ok, err = pcall(function()
    bench_noop()
    bench_mlp()
end)
pcall(serve.shutdown)
os.execute(fmt("rm -rf '%s'", work))
if not ok then error(err, 0) end
B.finish()
