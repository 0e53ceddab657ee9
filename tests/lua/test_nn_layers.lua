-- luray.nn tensors, layers, losses and optimizers against hand-computed values; small models
-- that must learn XOR and a separable set; determinism under a seed; state_dict round trips.
local t = require("harness")
local luray = require("luray")
local nn = require("luray.nn")

local exp, log, sqrt = math.exp, math.log, math.sqrt

local function sigmoid(x) return 1 / (1 + exp(-x)) end

-- Sets a parameter's values (outside autograd).
local function set(p, values)
    nn.no_grad(function() p.data = nn.tensor(values).data end)
end

-- ---- tensors ----

t.test("constructors, shape, get, totable, item, size, #", function()
    local a = nn.tensor({ { 1, 2, 3 }, { 4, 5, 6 } })
    t.eq(a:shape(), { 2, 3 })
    t.eq(a:dtype(), "float32")
    t.eq(a:get(2, 3), 6.0)
    t.eq(a:totable(), { { 1.0, 2.0, 3.0 }, { 4.0, 5.0, 6.0 } })
    t.eq(#a, 2)
    t.eq(a:size(-1), 3)
    t.eq(a:numel(), 6)
    t.eq(a:sum():item(), 21.0)
    t.eq(nn.zeros(2, 2):totable(), { { 0.0, 0.0 }, { 0.0, 0.0 } })
    t.eq(nn.ones({ 3 }):totable(), { 1.0, 1.0, 1.0 })
    t.eq(nn.full({ 2 }, 7):totable(), { 7.0, 7.0 })
    t.eq(nn.tensor(3):shape(), {})
    t.eq(nn.tensor({ 1, 2 }, { dtype = "int64" }):totable(), { 1, 2 })
    t.eq(nn.zeros_like(a):shape(), { 2, 3 })
end)

t.test("core tensors: float32 shared without a copy, float64 converted, ints kept", function()
    local core = luray.tensor({ 1, 2, 3 }, { dtype = "float32" })
    local a = nn.tensor(core)
    t.truthy(rawequal(a.data, core), "float32 core tensor is shared")
    local d = nn.tensor(luray.tensor({ 1.5, 2.5 }, { dtype = "float64" }))
    t.eq(d:dtype(), "float32")
    t.eq(d:totable(), { 1.5, 2.5 })
    local i = nn.tensor(luray.tensor({ 1, 2 }, { dtype = "int32" }))
    t.eq(i:dtype(), "int32")
    t.eq((i * 2):totable(), { 2.0, 4.0 }) -- math on an integer tensor runs in float32
    t.eq(nn.tensor(core, { dtype = "float64" }):dtype(), "float64")
    t.raises(function() nn.tensor({ 1 }, { dtype = "int64", requires_grad = true }) end,
        "only float32")
    t.raises(function() nn.tensor({ 1 }, { dtype = "float16" }) end, "unknown dtype")
    t.raises(function() nn.tensor({ 1 }, { shape = 2 }) end, "unknown option 'shape'")
end)

t.test("element-wise math with broadcasting, comparisons, matmul, reductions", function()
    local a = nn.tensor({ { 1, 2 }, { 3, 4 } })
    local b = nn.tensor({ 10, 20 })
    t.eq((a + b):totable(), { { 11.0, 22.0 }, { 13.0, 24.0 } })
    t.eq((a - 1):totable(), { { 0.0, 1.0 }, { 2.0, 3.0 } })
    t.eq((2 / a):get(1, 2), 1.0)
    t.eq((a ^ 2):totable(), { { 1.0, 4.0 }, { 9.0, 16.0 } })
    t.eq((-a):get(2, 1), -3.0)
    t.eq(a:gt(2):totable(), { { 0.0, 0.0 }, { 1.0, 1.0 } })
    t.eq(a:eq(nn.tensor({ 1, 4 })):totable(), { { 1.0, 0.0 }, { 0.0, 1.0 } })
    t.eq(a:matmul(a):totable(), { { 7.0, 10.0 }, { 15.0, 22.0 } })
    t.eq(a:matmul(nn.tensor({ 1, 1 })):totable(), { 3.0, 7.0 })
    t.eq(a:t():totable(), { { 1.0, 3.0 }, { 2.0, 4.0 } })
    t.eq(a:sum(1):totable(), { 4.0, 6.0 })
    t.eq(a:mean(2, true):totable(), { { 1.5 }, { 3.5 } })
    t.eq(a:max():item(), 4.0)
    t.eq(a:max(1):totable(), { 3.0, 4.0 })
    t.eq(nn.tensor({ { 1, 9, 3 }, { 7, 2, 7 } }):argmax(2):totable(), { 1, 0 })
    t.eq(a:reshape(4):totable(), { 1.0, 2.0, 3.0, 4.0 })
    t.eq(a:narrow(2, 1):totable(), { { 3.0, 4.0 } })
    t.eq(a:index({ 2, 2, 1 }):totable(), { { 3.0, 4.0 }, { 3.0, 4.0 }, { 1.0, 2.0 } })
    t.raises(function() return a + nn.tensor({ 1, 2, 3 }) end, "do not broadcast")
    t.raises(function() return a:matmul(nn.ones(3, 2)) end, "inner dimensions differ")
    t.raises(function() return a:sum(3) end, "out of range")
    t.raises(function() return a:index({ 3 }) end, "out of range")
    t.raises(function() return a:reshape(3) end, "cannot view")
end)

t.test("unary functions and softmax against math", function()
    local xs = { -1.5, -0.2, 0.3, 2 }
    local x = nn.tensor(xs)
    local function map(f)
        local out = {}
        for i, v in ipairs(xs) do out[i] = f(v) end
        return out
    end
    t.near(x:exp():totable(), map(exp), 1e-5)
    t.near(x:relu():totable(), map(function(v) return math.max(v, 0) end), 1e-7)
    t.near(x:sigmoid():totable(), map(sigmoid), 1e-6)
    t.near(x:tanh():totable(),
        map(function(v) return (exp(v) - exp(-v)) / (exp(v) + exp(-v)) end), 1e-6)
    t.near(nn.tensor({ 1, 2, 4 }):log():totable(), { 0, log(2), log(4) }, 1e-6)
    local s = 0
    for _, v in ipairs(xs) do s = s + exp(v) end
    t.near(x:softmax():totable(), map(function(v) return exp(v) / s end), 1e-6)
    t.near(x:log_softmax():totable(), map(function(v) return v - log(s) end), 1e-5)
    -- large logits do not overflow
    t.near(nn.tensor({ 1000, 1000 }):softmax():totable(), { 0.5, 0.5 }, 1e-6)
end)

t.test("random tensors: seeded, repeatable, with the asked distribution", function()
    local a = nn.randn({ 1000 }, { seed = 7 })
    local b = nn.randn({ 1000 }, { seed = 7 })
    t.eq(a:totable(), b:totable())
    t.ne(nn.randn({ 1000 }, { seed = 8 }):totable(), a:totable())
    local m = a:mean():item()
    local sd = sqrt(((a - m) ^ 2):mean():item())
    t.near(m, 0, 0.1)
    t.near(sd, 1, 0.1)
    local u = nn.rand({ 1000 }, { seed = 3, low = 2, high = 5 })
    t.truthy(u:max():item() < 5 and (-u):max():item() <= -2)
    nn.manual_seed(42)
    local c = nn.randn(5):totable()
    nn.manual_seed(42)
    t.eq(nn.randn(5):totable(), c)
    local perm = nn.randperm(6, { seed = 1 }):totable()
    table.sort(perm)
    t.eq(perm, { 1, 2, 3, 4, 5, 6 })
end)

t.test("devices: cpu works, cuda is refused clearly, dtypes convert", function()
    local a = nn.tensor({ 1.5, 2 })
    t.truthy(rawequal(a:to("cpu"), a))
    t.eq(a.device, "cpu")
    if not nn.cuda_available() then
        t.raises(function() a:to("cuda") end, "device 'cuda' is not available")
        t.raises(function() nn.Linear(2, 2):to("cuda") end, "not available")
    end
    t.raises(function() a:to("tpu") end, "unknown device")
    t.eq(a:to("int64"):totable(), { 1, 2 })
    t.eq(a:to("float64"):dtype(), "float64")
end)

-- ---- layers ----

t.test("Linear: hand-computed output, torch's init bounds and parameter shapes", function()
    local lin = nn.Linear(3, 2, { seed = 1 })
    t.eq(lin.weight:shape(), { 2, 3 })
    t.eq(lin.bias:shape(), { 2 })
    local bound = 1 / sqrt(3)
    for _, v in ipairs(lin.weight:view(-1):totable()) do t.truthy(math.abs(v) <= bound) end
    set(lin.weight, { { 1, 2, 3 }, { -1, 0, 1 } })
    set(lin.bias, { 0.5, -0.5 })
    local y = lin(nn.tensor({ { 1, 1, 1 }, { 2, 0, -1 } }))
    t.near(y:totable(), { { 6.5, -0.5 }, { -0.5, -3.5 } }, 1e-6)
    t.near(lin(nn.tensor({ 1, 0, 0 })):totable(), { 1.5, -1.5 }, 1e-6)
    t.eq(#nn.Linear(3, 2, { bias = false }):parameters(), 1)
    t.raises(function() nn.Linear(0, 2) end, "positive integer")
    t.raises(function() lin(nn.ones(2, 4)) end, "4 features")
end)

t.test("activations, Softmax and Dropout layers", function()
    local x = nn.tensor({ { -1, 2 } })
    t.eq(nn.ReLU()(x):totable(), { { 0.0, 2.0 } })
    t.near(nn.Sigmoid()(x):totable(), { { sigmoid(-1), sigmoid(2) } }, 1e-6)
    local z = exp(-1) + exp(2)
    t.near(nn.Softmax()(x):totable(), { { exp(-1) / z, exp(2) / z } }, 1e-6)
    t.raises(function() nn.Softmax(1)(x) end, "only the last dimension")
    local drop = nn.Dropout(0.25, { seed = 3 })
    local ones = nn.ones(100, 100)
    local y = drop(ones)
    local zeros, kept = 0, 0
    for _, row in ipairs(y:totable()) do
        for _, v in ipairs(row) do
            if v == 0 then zeros = zeros + 1 else kept = kept + 1; t.near(v, 1 / 0.75, 1e-6) end
        end
    end
    t.near(zeros / 10000, 0.25, 0.02)
    drop:eval()
    t.truthy(rawequal(drop(ones), ones))
    t.eq(nn.Dropout(1)(nn.ones(3)):totable(), { 0.0, 0.0, 0.0 })
    t.raises(function() nn.Dropout(1.5) end, "probability")
end)

t.test("Sequential: table, varargs and Torch7 add chaining; names; fused equals unfused", function()
    local l1, l2 = nn.Linear(4, 5, { seed = 1 }), nn.Linear(5, 2, { seed = 2 })
    local seq = nn.Sequential()
    t.truthy(rawequal(seq:add(l1), seq))
    seq:add(nn.ReLU()):add(l2)
    t.eq(#seq, 3)
    t.truthy(rawequal(seq:get(1), l1))
    local names = {}
    for i, np in ipairs(seq:named_parameters()) do names[i] = np[1] end
    t.eq(names, { "0.weight", "0.bias", "2.weight", "2.bias" })
    local x = nn.randn({ 3, 4 }, { seed = 5 })
    local manual = l2(nn.ReLU()(l1(x)))
    t.near(seq(x):totable(), manual:totable(), 1e-6)
    local same = nn.Sequential(l1, nn.ReLU(), l2)
    t.near(same(x):totable(), manual:totable(), 1e-6)
    t.eq(tostring(nn.Sequential{ nn.Linear(2, 3), nn.Tanh() }),
        "Sequential(\n  (0): Linear(in_features=2, out_features=3, bias=true)\n  (1): Tanh()\n)")
    t.raises(function() nn.Sequential():add(42) end, "expected a module")
end)

t.test("custom modules: fields keep their order; nested names as torch", function()
    local Net = nn.Module:extend("Net")
    function Net:init()
        self.fc1 = nn.Linear(3, 4, { seed = 1 })
        self.act = nn.Tanh()
        self.scale = nn.Parameter(nn.ones(1))
        self.fc2 = nn.Linear(4, 2, { seed = 2 })
    end
    function Net:forward(x) return self.fc2(self.act(self.fc1(x))) * self.scale end
    local net = Net()
    local names = {}
    for i, np in ipairs(net:named_parameters()) do names[i] = np[1] end
    t.eq(names, { "scale", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias" })
    t.eq(net:num_parameters(), 1 + 12 + 4 + 8 + 2)
    local y = net(nn.ones(2, 3))
    t.eq(y:shape(), { 2, 2 })
    net:train(false)
    t.eq(net.fc1.training, false)
end)

t.test("state_dict round trip; load_state_dict checks names and shapes", function()
    local function mlp(s1, s2)
        return nn.Sequential{ nn.Linear(3, 4, { seed = s1 }), nn.ReLU(),
            nn.Linear(4, 2, { seed = s2 }) }
    end
    local a, b = mlp(1, 2), mlp(3, 4)
    local x = nn.randn({ 5, 3 }, { seed = 9 })
    t.ne(a(x):totable(), b(x):totable())
    local sd = a:state_dict()
    t.eq(sd["0.weight"]:shape(), { 4, 3 })
    t.eq(sd["2.bias"]:shape(), { 2 })
    b:load_state_dict(sd)
    t.eq(b(x):totable(), a(x):totable())
    -- a copy, not shared memory
    set(a:get(1).bias, { 0, 0, 0, 0 })
    t.ne(b:get(1).bias:totable(), a:get(1).bias:totable())
    -- the tensors travel through the object store and load again
    local back = luray.get(luray.put(sd))
    b:load_state_dict(back)
    t.raises(function() b:load_state_dict({ ["0.weight"] = sd["0.weight"] }) end, "missing 0.bias")
    local extra = {}
    for k, v in pairs(sd) do extra[k] = v end
    extra["9.weight"] = sd["0.bias"]
    t.raises(function() b:load_state_dict(extra) end, "unexpected 9.weight")
    b:load_state_dict(extra, { strict = false })
    local bad = {}
    for k, v in pairs(sd) do bad[k] = v end
    bad["0.bias"] = luray.tensor({ 1, 2 }, { dtype = "float32" })
    t.raises(function() b:load_state_dict(bad) end, "'0.bias' has shape {2}, the model's is {4}")
end)

-- ---- losses ----

t.test("losses against hand-computed values", function()
    local logits = { { 1, 2, 0.5 }, { -1, 0, 3 } }
    local labels = { 1, 2 }
    local want = 0
    for r, row in ipairs(logits) do
        local s = 0
        for _, v in ipairs(row) do s = s + exp(v) end
        want = want - log(exp(row[labels[r] + 1]) / s)
    end
    t.near(nn.cross_entropy(nn.tensor(logits), labels):item(), want / 2, 1e-6)
    t.near(nn.cross_entropy(nn.tensor(logits), nn.tensor(labels, { dtype = "int32" }),
        { reduction = "sum" }):item(), want, 1e-5)
    t.near(nn.mse(nn.tensor({ 1, 2, 3 }), nn.tensor({ 1, 0, 0 })):item(), (0 + 4 + 9) / 3, 1e-6)
    local p, y = { 0.9, 0.2 }, { 1, 0 }
    t.near(nn.bce(nn.tensor(p), nn.tensor(y)):item(), -(log(0.9) + log(0.8)) / 2, 1e-6)
    t.near(nn.bce_with_logits(nn.tensor({ 2, -1 }), nn.tensor(y)):item(),
        -(log(sigmoid(2)) + log(1 - sigmoid(-1))) / 2, 1e-6)
    -- bce clamps log(0) to -100 as torch does
    t.near(nn.bce(nn.tensor({ 0 }), nn.tensor({ 1 })):item(), 100, 1e-4)
    t.near(nn.accuracy(nn.tensor(logits), { 1, 0 }), 0.5, 0)
end)

t.test("losses reject bad labels and shapes clearly", function()
    local logits = nn.zeros(2, 3)
    t.raises(function() nn.cross_entropy(logits, { 0, 3 }) end,
        "label 3 %(row 2%) is not a class id in 0..2")
    t.raises(function() nn.cross_entropy(logits, { 0, -1 }) end, "row 2")
    t.raises(function() nn.cross_entropy(logits, { 0 }) end, "2 rows of logits but 1 labels")
    t.raises(function() nn.cross_entropy(logits, nn.tensor({ 0, 1.5 })) end, "not a whole number")
    t.raises(function() nn.mse(nn.zeros(2, 3), nn.zeros(3, 2)) end, "differ")
    t.raises(function() nn.mse(nn.zeros(2), nn.zeros(2), { reduction = "max" }) end, "reduction")
end)

-- ---- optimizers ----

-- A parameter p = {1, -2} with the loss sum(p * c), whose gradient is c.
local function linear_problem()
    local p = nn.tensor({ 1, -2 }, { requires_grad = true })
    local c = nn.tensor({ 0.5, 3 })
    return p, function() return (p * c):sum() end, { 0.5, 3 }
end

t.test("sgd: plain, weight decay, momentum, nesterov against hand-computed steps", function()
    local p, loss, g = linear_problem()
    local opt = nn.optim.sgd({ p }, { lr = 0.1 })
    loss():backward()
    opt:step()
    t.near(p:totable(), { 1 - 0.1 * g[1], -2 - 0.1 * g[2] }, 1e-6)

    p, loss, g = linear_problem()
    opt = nn.optim.sgd({ p }, { lr = 0.1, weight_decay = 0.01 })
    loss():backward()
    opt:step()
    t.near(p:totable(), { 1 - 0.1 * (g[1] + 0.01 * 1), -2 - 0.1 * (g[2] - 0.01 * 2) }, 1e-6)

    p, loss, g = linear_problem()
    opt = nn.optim.sgd(p and { p }, { lr = 0.1, momentum = 0.9, dampening = 0.1 })
    local want, buf = { 1, -2 }, nil
    for step = 1, 3 do
        opt:zero_grad()
        loss():backward()
        opt:step()
        buf = step == 1 and { g[1], g[2] }
            or { 0.9 * buf[1] + 0.9 * g[1], 0.9 * buf[2] + 0.9 * g[2] }
        want = { want[1] - 0.1 * buf[1], want[2] - 0.1 * buf[2] }
    end
    t.near(p:totable(), want, 1e-5)

    p, loss, g = linear_problem()
    opt = nn.optim.sgd({ p }, { lr = 0.1, momentum = 0.5, nesterov = true })
    want, buf = { 1, -2 }, nil
    for step = 1, 2 do
        opt:zero_grad()
        loss():backward()
        opt:step()
        buf = step == 1 and { g[1], g[2] } or { 0.5 * buf[1] + g[1], 0.5 * buf[2] + g[2] }
        want = { want[1] - 0.1 * (g[1] + 0.5 * buf[1]), want[2] - 0.1 * (g[2] + 0.5 * buf[2]) }
    end
    t.near(p:totable(), want, 1e-5)
    t.raises(function() nn.optim.sgd({ p }, { lr = -1 }) end, "lr must be")
    t.raises(function() nn.optim.sgd({ nn.ones(2) }) end, "not a leaf tensor that requires grad")
end)

local function adam_reference(p, g, steps, lr, b1, b2, eps, wd, decoupled)
    local m, v = { 0, 0 }, { 0, 0 }
    for s = 1, steps do
        for i = 1, 2 do
            local d = g[i]
            if decoupled then p[i] = p[i] * (1 - lr * wd) else d = d + wd * p[i] end
            m[i] = b1 * m[i] + (1 - b1) * d
            v[i] = b2 * v[i] + (1 - b2) * d * d
            local mh, vh = m[i] / (1 - b1 ^ s), v[i] / (1 - b2 ^ s)
            p[i] = p[i] - lr * mh / (sqrt(vh) + eps)
        end
    end
    return p
end

t.test("adam and adamw against hand-computed steps", function()
    local p, loss, g = linear_problem()
    local opt = nn.optim.adam({ p },
        { lr = 0.1, betas = { 0.8, 0.9 }, eps = 1e-6, weight_decay = 0.1 })
    for _ = 1, 3 do
        opt:zero_grad()
        loss():backward()
        opt:step()
    end
    t.near(p:totable(), adam_reference({ 1, -2 }, g, 3, 0.1, 0.8, 0.9, 1e-6, 0.1, false), 1e-5)
    p, loss, g = linear_problem()
    opt = nn.optim.adamw({ p }, { lr = 0.05 })
    for _ = 1, 2 do
        opt:zero_grad()
        loss():backward()
        opt:step()
    end
    t.near(p:totable(), adam_reference({ 1, -2 }, g, 2, 0.05, 0.9, 0.999, 1e-8, 0.01, true), 1e-5)
    t.eq(#opt:parameters(), 1)
    t.raises(function() nn.optim.adam({ p }, { betas = { 1, 0.5 } }) end, "betas")
end)

t.test("zero_grad zeroes in place and the next backward reuses the buffers", function()
    local model = nn.Sequential{ nn.Linear(3, 2, { seed = 1 }) }
    local opt = nn.optim.sgd(model, { lr = 0.1 })
    nn.cross_entropy(model(nn.ones(4, 3)), { 0, 1, 0, 1 }):backward()
    local w = model:get(1).weight
    local buf = w.grad.data
    opt:zero_grad()
    t.eq(w.grad:totable(), { { 0.0, 0.0, 0.0 }, { 0.0, 0.0, 0.0 } })
    nn.cross_entropy(model(nn.ones(4, 3)), { 0, 1, 0, 1 }):backward()
    t.truthy(rawequal(w.grad.data, buf), "the gradient buffer is reused")
    t.ne(w.grad:totable(), { { 0.0, 0.0, 0.0 }, { 0.0, 0.0, 0.0 } })
end)

-- ---- training ----

local function train(model, opt, x, y, steps, loss_fn)
    local loss
    for _ = 1, steps do
        loss = loss_fn(model(x), y)
        opt:zero_grad()
        loss:backward()
        opt:step()
    end
    return loss:item()
end

t.test("an MLP learns XOR", function()
    nn.manual_seed(1)
    local model = nn.Sequential{ nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2) }
    local x = nn.tensor({ { 0, 0 }, { 0, 1 }, { 1, 0 }, { 1, 1 } })
    local y = { 0, 1, 1, 0 }
    local loss = train(model, nn.optim.adam(model, { lr = 0.05 }), x, y, 300, nn.cross_entropy)
    t.truthy(loss < 0.05, "loss " .. loss)
    t.eq(nn.accuracy(model(x), y), 1.0)
end)

-- Three Gaussian blobs in 4-D, 600 points, labels 0..2.
local function blobs(seed)
    local centers = nn.tensor({ { 3, 0, 0, 1 }, { -3, 1, 0, 0 }, { 0, -3, 2, 0 } })
    local labels = {}
    for i = 1, 600 do labels[i] = (i - 1) % 3 end
    local x = centers:index((function()
        local pos = {}
        for i, l in ipairs(labels) do pos[i] = l + 1 end
        return pos
    end)()) + nn.randn({ 600, 4 }, { seed = seed })
    return x, labels
end

t.test("an MLP separates three blobs with sgd+momentum, in minibatches", function()
    nn.manual_seed(2)
    local x, y = blobs(11)
    local yt = nn.tensor(y, { dtype = "int64" })
    local model = nn.Sequential{ nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3) }
    local opt = nn.optim.sgd(model, { lr = 0.1, momentum = 0.9 })
    for _ = 1, 20 do
        for first = 1, 600, 50 do
            local loss = nn.cross_entropy(model(x:narrow(first, 50)), yt:narrow(first, 50))
            opt:zero_grad()
            loss:backward()
            opt:step()
        end
    end
    model:eval()
    t.truthy(nn.accuracy(model(x), yt) > 0.95)
end)

t.test("a regression and a binary classifier train (mse, bce_with_logits)", function()
    nn.manual_seed(3)
    local x = nn.randn({ 64, 3 }, { seed = 5 })
    local w = nn.tensor({ { 1 }, { -2 }, { 0.5 } })
    local target = x:matmul(w) + 0.3
    local reg = nn.Linear(3, 1)
    local loss = train(reg, nn.optim.sgd(reg, { lr = 0.1 }), x, target, 200, nn.mse)
    t.truthy(loss < 1e-4, "mse " .. loss)
    t.near(reg.bias:item(), 0.3, 0.01)
    local labels = target:gt(0.3)
    local clf = nn.Linear(3, 1)
    loss = train(clf, nn.optim.adam(clf, { lr = 0.1 }), x, labels, 200, nn.bce_with_logits)
    t.truthy(loss < 0.1, "bce " .. loss)
end)

t.test("the same seed gives the same weights and the same training trajectory", function()
    local function run(seed)
        nn.manual_seed(seed)
        local model = nn.Sequential{ nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3) }
        local init = model:get(1).weight:totable()
        local x, y = blobs(4)
        local losses = {}
        local opt = nn.optim.adam(model, { lr = 0.01 })
        for i = 1, 5 do
            local loss = nn.cross_entropy(model(x), y)
            losses[i] = loss:item()
            opt:zero_grad()
            loss:backward()
            opt:step()
        end
        return init, losses, model:get(4).weight:totable()
    end
    local i1, l1, w1 = run(5)
    local i2, l2, w2 = run(5)
    t.eq(i2, i1)
    t.eq(l2, l1)
    t.eq(w2, w1)
    local i3 = run(6)
    t.ne(i3, i1)
end)

t.test("a parameter shared by two layers gets both gradients", function()
    local lin = nn.Linear(2, 2, { seed = 1 })
    local model = nn.Sequential{ lin, nn.Tanh(), lin }
    t.eq(#model:parameters(), 2)
    local x = nn.ones(3, 2)
    nn.mse(model(x), nn.zeros(3, 2)):backward()
    t.truthy(lin.weight.grad ~= nil)
end)

t.done()
