-- Bench group "nn" (BENCH.md, ours): mlp_train_samples_per_s, one epoch of an MLP 784-256-10
-- (ReLU) over 60,000 synthetic samples, batch 128, SGD lr 0.01, cross-entropy, 2 BLAS threads.
-- peers/nn_torch.py runs the same with PyTorch on the CPU.
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

local model = nn.Sequential{ nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10) }
local opt = nn.optim.sgd(model, { lr = 0.01 })

-- One pass over the first share * SAMPLES samples in batches of BATCH; returns the samples.
local function epoch(share)
    local n = math.max(BATCH, math.floor(SAMPLES * share))
    for first = 1, n, BATCH do
        local count = math.min(BATCH, n - first + 1)
        local x, y = X:narrow(first, count), Y:narrow(first, count)
        local loss = nn.cross_entropy(model(x), y)
        opt:zero_grad()
        loss:backward()
        opt:step()
    end
    return n
end

B.rate("mlp_train_samples_per_s", "samples/s", SAMPLES, epoch,
    { batch_size = BATCH, threads = THREADS, samples = SAMPLES })
B.finish()
