-- Bench group "nn" (BENCH.md, ours): mlp_train_samples_per_s, one epoch of an MLP 784-256-10
-- (ReLU) over 60,000 synthetic samples, batch 128, SGD lr 0.01, cross-entropy, 2 BLAS threads.
-- peers/nn_torch.py runs the same with PyTorch on the CPU.
--
-- Where a GPU is (the nn_cuda plugin built and a CUDA device found), the same epoch also runs on
-- "cuda": once with the samples uploaded before timing (device = "cuda", as torch keeps a data
-- set on the GPU) and once uploading each batch as Train does (data = "host"), then
-- mlp_train_gpu_speedup, the first against the CPU figure. Without a GPU that part is skipped
-- with a message on stderr. scripts/gpu-check.sh runs this on a GPU machine.
--
--   luray run nn.lua        (LURAY_BENCH_SCALE scales the sample count, LURAY_BENCH_RUNS the runs)
local nn = require("luray.nn")
local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local B = dofile(dir .. "/lib/bench.lua")

local SAMPLES = B.n(60000)
local BATCH = 128
local THREADS = tonumber(os.getenv("LURAY_NN_THREADS") or "") or 2

nn.set_num_threads(THREADS)
nn.manual_seed(0)

-- Synthetic inputs and labels: the values do not change the work, only that it is float32.
local X = nn.randn({ SAMPLES, 784 }, { seed = 1 })
local Y = nn.rand({ SAMPLES }, { seed = 2, low = 0, high = 10 }):to("int64")

-- One pass over the first share * SAMPLES samples of x (labels y) in batches of BATCH; device
-- is where the model runs, x may be elsewhere (its batches are moved). Returns the samples.
local function trainer(device, x_all, y_all)
    nn.manual_seed(0)
    local model = nn.Sequential{ nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10) }:to(device)
    local opt = nn.optim.sgd(model, { lr = 0.01 })
    return function(share)
        local n = math.max(BATCH, math.floor(SAMPLES * share))
        for first = 1, n, BATCH do
            local count = math.min(BATCH, n - first + 1)
            local x, y = x_all:narrow(first, count), y_all:narrow(first, count)
            local loss = nn.cross_entropy(model(x:to(device)), y)
            opt:zero_grad()
            loss:backward()
            opt:step()
        end
        if device ~= "cpu" then nn.synchronize(device) end -- the GPU runs behind the loop
        return n
    end
end

-- B.rate's warm-up and median of timed runs, returning the figure (nil when it failed).
local function rate(name, epoch, extra)
    local ok, res = pcall(function()
        B.log("%s (%s): warm-up", name, extra.device)
        epoch(B.WARMUP)
        local runs = {}
        for i = 1, B.runs do
            collectgarbage()
            local t0 = B.now()
            local did = epoch(1)
            runs[i] = did / (B.now() - t0)
        end
        local v = B.median(runs)
        B.log("%s (%s): %.6g samples/s", name, extra.device, v)
        B.emit(name, v, "samples/s", runs, extra)
        return v
    end)
    if not ok then
        B.log("%s (%s): FAILED: %s", name, extra.device, tostring(res))
        B.failed = (B.failed or 0) + 1
        return nil
    end
    return res
end

local cpu = rate("mlp_train_samples_per_s", trainer("cpu", X, Y),
    { batch_size = BATCH, threads = THREADS, samples = SAMPLES, device = "cpu" })

local has_gpu, why = nn.cuda_available()
if not has_gpu then
    B.log("mlp_train_samples_per_s (cuda): skipped: %s", tostring(why))
else
    local info = nn.cuda_info()
    local extra = { batch_size = BATCH, samples = SAMPLES, device = "cuda", gpu = info.name,
        data = "device" }
    -- The samples go to the GPU once; labels stay on the host (a device's labels are checked
    -- with a read back that would wait for the GPU every step).
    local gpu = rate("mlp_train_samples_per_s", trainer("cuda", X:to("cuda"), Y), extra)
    extra.data = "host"
    rate("mlp_train_samples_per_s", trainer("cuda", X, Y), extra)
    if cpu and gpu then
        B.log("mlp_train_gpu_speedup: %.3gx the CPU path (%d threads)", gpu / cpu, THREADS)
        B.emit("mlp_train_gpu_speedup", gpu / cpu, "x", nil,
            { cpu = cpu, cuda = gpu, threads = THREADS, gpu = info.name, target = 10 })
    end
end
B.finish()
