-- luray.nn autograd: the gradient of every op, layer and loss against central finite
-- differences. The ops run in float32; the scalar each check differentiates, sum(out * w) with
-- fixed random weights w, is summed in Lua's doubles from the float32 outputs, so the finite
-- differences lose only the outputs' own rounding.
local t = require("harness")
local nn = require("luray.nn")

-- Deterministic test values (a small LCG, independent of the nn generator).
local seed = 12345
local function rnd()
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed / 2147483648
end

-- A nested table of the given shape, values from gen().
local function values(shape, gen, d)
    d = d or 1
    local out = {}
    for i = 1, shape[d] do
        out[i] = d == #shape and gen() or values(shape, gen, d + 1)
    end
    return out
end

local function uniform(lo, hi) return function() return lo + (hi - lo) * rnd() end end
-- Away from 0 by at least `gap`, either sign (kinks of relu, abs, max sit at 0).
local function away(gap, hi)
    return function()
        local v = gap + (hi - gap) * rnd()
        return rnd() < 0.5 and -v or v
    end
end

local function param(shape, gen)
    if #shape == 0 then return nn.tensor((gen or uniform(-1, 1))(), { requires_grad = true }) end
    return nn.tensor(values(shape, gen or uniform(-1, 1)), { requires_grad = true })
end

local function flat(v, out)
    out = out or {}
    if type(v) ~= "table" then out[#out + 1] = v return out end
    for i = 1, #v do flat(v[i], out) end
    return out
end

-- sum(out * w) in double precision.
local function project(out, w)
    local vals = flat(out:totable())
    local s = 0
    for i = 1, #vals do s = s + vals[i] * w[i] end
    return s
end

-- Checks d sum(f() * w) / d x for every x in inputs against central differences with step h.
local function check(f, inputs, opts)
    opts = opts or {}
    local h, atol, rtol = opts.h or 1e-2, opts.atol or 2e-3, opts.rtol or 1e-2
    local out = f()
    local n = out:numel()
    local w = {}
    for i = 1, n do w[i] = 0.5 + rnd() end
    local wt = n == 1 and nn.tensor(w[1]) or nn.tensor(w):reshape(out:shape())
    for _, x in ipairs(inputs) do x.grad = nil end
    local loss = (out * wt):sum()
    loss:backward()
    for k, x in ipairs(inputs) do
        t.truthy(x.grad ~= nil, "input " .. k .. " got no gradient")
        local analytic = flat(x.grad:totable())
        local xf = x.data:view({ -1 })
        for i = 1, xf:numel() do
            local orig = xf:get(i)
            local up, down
            nn.no_grad(function()
                xf:set(i, orig + h)
                up = project(f(), w)
                xf:set(i, orig - h)
                down = project(f(), w)
            end)
            xf:set(i, orig)
            local numeric = (up - down) / (2 * h)
            local a = analytic[i]
            local tol = atol + rtol * math.max(math.abs(numeric), math.abs(a))
            if math.abs(numeric - a) > tol then
                error(string.format("input %d element %d: analytic %.6g, numeric %.6g", k, i, a,
                    numeric), 2)
            end
        end
    end
end

-- ---- element-wise binary ops, with broadcasting ----

local shapes = {
    { "same shape", { 3, 4 }, { 3, 4 } },
    { "row broadcast", { 3, 4 }, { 4 } },
    { "column times row", { 3, 1 }, { 1, 4 } },
    { "3-D against 2-D", { 2, 3, 4 }, { 3, 1 } },
    { "tensor and 0-d", { 2, 3 }, {} },
}

for _, op in ipairs({ "add", "sub", "mul", "div" }) do
    for _, case in ipairs(shapes) do
        t.test(op .. ": " .. case[1], function()
            local a = param(case[2])
            local b = param(case[3], op == "div" and away(0.5, 1.5) or nil)
            check(function() return a[op](a, b) end, { a, b })
        end)
    end
end

t.test("operators + - * / ^ and unary - build the same gradients", function()
    local a, b = param({ 2, 3 }, uniform(0.5, 1.5)), param({ 3 }, uniform(0.5, 1.5))
    check(function() return -(a + b) * (a - b) / b + a ^ 2 end, { a, b })
end)

t.test("ops with numbers on either side", function()
    local a = param({ 2, 3 }, uniform(0.5, 1.5))
    check(function() return 2 * a + 1 - a / 3 + 4 / a - (1 - a) end, { a })
end)

t.test("pow: tensor ^ number, number ^ tensor, tensor ^ tensor (broadcast)", function()
    local a = param({ 2, 3 }, uniform(0.5, 2))
    local b = param({ 3 }, uniform(-1, 2))
    check(function() return a ^ 3 end, { a })
    check(function() return a ^ 0.5 end, { a })
    check(function() return 2 ^ a end, { a })
    check(function() return a ^ b end, { a, b })
end)

t.test("a tensor used twice sums both paths (x * x, x + x)", function()
    local x = param({ 4 })
    check(function() return x * x + x + x end, { x })
end)

-- ---- unary ----

for _, case in ipairs({
    { "neg", uniform(-2, 2) },
    { "exp", uniform(-2, 2) },
    { "log", uniform(0.3, 3) },
    { "relu", away(0.05, 2) },
    { "sigmoid", uniform(-4, 4) },
    { "tanh", uniform(-2, 2) },
}) do
    t.test("unary " .. case[1], function()
        local x = param({ 3, 5 }, case[2])
        check(function() return x[case[1]](x) end, { x })
    end)
end

t.test("unary ops chained (in-place gradient reuse keeps values right)", function()
    local x = param({ 6 }, uniform(0.2, 2))
    check(function() return x:log():tanh():sigmoid():exp():relu() end, { x })
end)

-- ---- matrices ----

t.test("matmul 2-D x 2-D", function()
    local a, b = param({ 3, 5 }), param({ 5, 4 })
    check(function() return a:matmul(b) end, { a, b })
end)

t.test("matmul with 1-D operands and a 3-D left operand", function()
    local v, m, w = param({ 5 }), param({ 5, 3 }), param({ 3 })
    check(function() return v:matmul(m) end, { v, m })
    check(function() return m:matmul(w) end, { m, w })
    check(function() return v:matmul(v) end, { v })
    local x = param({ 2, 3, 5 })
    check(function() return x:matmul(m) end, { x, m })
end)

t.test("transpose", function()
    local a, b = param({ 3, 4 }), param({ 3, 2 })
    check(function() return a:t():matmul(b) end, { a, b })
end)

t.test("gradients accumulate into an existing .grad across backward calls", function()
    local a, b = param({ 2, 3 }), param({ 3, 2 })
    local l1 = a:matmul(b):sum()
    l1:backward()
    local g1 = a.grad:totable()
    local gb1 = b.grad:totable()
    local l2 = a:matmul(b):sum()
    l2:backward()
    t.near(a.grad:totable(), { { 2 * g1[1][1], 2 * g1[1][2], 2 * g1[1][3] },
        { 2 * g1[2][1], 2 * g1[2][2], 2 * g1[2][3] } }, 1e-5)
    t.near(b.grad:get(3, 2), 2 * gb1[3][2], 1e-5)
end)

-- ---- reductions and shapes ----

t.test("sum and mean: all, along each dimension, keepdim", function()
    local x = param({ 2, 3, 4 })
    check(function() return x:sum() end, { x })
    check(function() return x:mean() end, { x })
    for d = 1, 3 do
        check(function() return x:sum(d) end, { x })
        check(function() return x:mean(d, true) end, { x })
    end
    check(function() return x:sum(-1) end, { x })
end)

t.test("max: all and along a dimension", function()
    -- distinct values far apart: a small step never changes which element is largest
    local vals, perm = {}, {}
    for i = 1, 12 do perm[i] = i end
    for i = 12, 2, -1 do
        local j = 1 + math.floor(rnd() * i)
        perm[i], perm[j] = perm[j], perm[i]
    end
    for i = 1, 12 do vals[i] = perm[i] * 0.25 end
    local x = nn.tensor(vals, { requires_grad = true }):reshape({ 3, 4 }):detach()
    x:requires_grad_()
    check(function() return x:max() end, { x })
    check(function() return x:max(1) end, { x })
    check(function() return x:max(2, true) end, { x })
end)

t.test("softmax and log_softmax along the last dimension", function()
    local x = param({ 3, 5 }, uniform(-2, 2))
    check(function() return x:softmax() end, { x })
    check(function() return x:log_softmax(-1) end, { x })
    check(function() return nn.softmax(x, 2) end, { x })
end)

t.test("reshape, view, narrow, index, clone", function()
    local x = param({ 4, 3 })
    check(function() return x:reshape({ 2, 6 }) * x:view(12):reshape(4, 3):sum(2, true):view(2, 2)
        :reshape(4, 1):reshape(-1):reshape(2, 2):sum(2, true) end, { x })
    check(function() return x:narrow(2, 2) end, { x })
    check(function() return x:index({ 4, 1, 4 }) end, { x })
    check(function() return x:clone() * 3 end, { x })
end)

-- ---- layers ----

t.test("Linear (with and without bias) on 2-D, 1-D and 3-D inputs", function()
    local lin = nn.Linear(5, 3, { seed = 1 })
    local x = param({ 4, 5 })
    check(function() return lin(x) end, { x, lin.weight, lin.bias })
    local nb = nn.Linear(5, 2, { bias = false, seed = 2 })
    check(function() return nb(x) end, { x, nb.weight })
    local v = param({ 5 })
    check(function() return lin(v) end, { v, lin.weight, lin.bias })
    local x3 = param({ 2, 3, 5 })
    check(function() return lin(x3) end, { x3, lin.weight, lin.bias })
end)

t.test("fused Linear + activation in Sequential (relu, sigmoid, tanh)", function()
    for _, act in ipairs({ nn.ReLU, nn.Sigmoid, nn.Tanh }) do
        local model = nn.Sequential{ nn.Linear(4, 6, { seed = 3 }), act(),
            nn.Linear(6, 2, { seed = 4 }) }
        local x = param({ 5, 4 })
        local ps = model:parameters()
        check(function() return model(x) end, { x, ps[1], ps[2], ps[3], ps[4] })
    end
end)

t.test("nn.linear with each fused activation", function()
    local w, b, x = param({ 3, 4 }), param({ 3 }), param({ 2, 4 })
    for _, act in ipairs({ "relu", "sigmoid", "tanh" }) do
        check(function() return nn.linear(x, w, b, act) end, { x, w, b })
    end
end)

t.test("activation layers, Softmax and LogSoftmax layers", function()
    local x = param({ 3, 4 }, away(0.05, 2))
    for _, cls in ipairs({ nn.ReLU, nn.Sigmoid, nn.Tanh, nn.Softmax, nn.LogSoftmax }) do
        local m = cls()
        check(function() return m(x) end, { x })
    end
end)

t.test("Dropout in training (the same mask for every evaluation) and in eval", function()
    local gen = nn.generator(9)
    local drop = nn.Dropout(0.4, { generator = gen })
    local x = param({ 4, 5 })
    check(function() gen:seed(9) return drop(x) end, { x })
    drop:eval()
    check(function() return drop(x) end, { x })
end)

t.test("Sequential of every layer kind", function()
    local gen = nn.generator(4)
    local model = nn.Sequential()
        :add(nn.Linear(3, 5, { seed = 5 })):add(nn.Tanh())
        :add(nn.Dropout(0.2, { generator = gen }))
        :add(nn.Linear(5, 4, { seed = 6 })):add(nn.Sigmoid())
        :add(nn.Linear(4, 3, { seed = 7 })):add(nn.Softmax())
    local x = param({ 2, 3 })
    local inputs = { x }
    for _, p in ipairs(model:parameters()) do inputs[#inputs + 1] = p end
    check(function() gen:seed(4) return model(x) end, inputs)
end)

-- ---- losses ----

t.test("cross_entropy (mean and sum) over logits and 0-based labels", function()
    local logits = param({ 4, 3 }, uniform(-2, 2))
    local labels = nn.tensor({ 0, 2, 1, 2 }, { dtype = "int64" })
    check(function() return nn.cross_entropy(logits, labels) end, { logits })
    check(function() return nn.cross_entropy(logits, { 1, 1, 0, 2 }, { reduction = "sum" }) end,
        { logits })
    local one = param({ 5 }, uniform(-1, 1))
    check(function() return nn.cross_entropy(one, { 3 }) end, { one })
end)

t.test("mse (mean and sum), with a target that requires grad too", function()
    local p, y = param({ 3, 2 }), param({ 3, 2 })
    check(function() return nn.mse(p, y:detach()) end, { p })
    check(function() return nn.mse(p, y:detach(), { reduction = "sum" }) end, { p })
    check(function() return nn.mse(p, y) end, { p, y })
    local col = param({ 4, 1 })
    check(function() return nn.mse(col, nn.tensor({ 1, 2, 3, 4 })) end, { col })
end)

t.test("bce on probabilities and bce_with_logits", function()
    local p = param({ 2, 3 }, uniform(0.1, 0.9))
    local y = nn.tensor({ { 1, 0, 1 }, { 0, 0, 1 } })
    check(function() return nn.bce(p, y) end, { p }, { h = 1e-3 })
    local z = param({ 2, 3 }, uniform(-3, 3))
    check(function() return nn.bce_with_logits(z, y) end, { z })
    check(function() return nn.bce(z:sigmoid(), y, { reduction = "sum" }) end, { z })
end)

t.test("losses as modules and nn.losses", function()
    local logits = param({ 2, 3 })
    check(function() return nn.CrossEntropyLoss()(logits, { 0, 2 }) end, { logits })
    check(function() return nn.losses.mse(logits, nn.zeros(2, 3)) end, { logits })
end)

t.test("an MLP's loss end to end: every parameter against finite differences", function()
    local model = nn.Sequential{ nn.Linear(6, 8, { seed = 11 }), nn.ReLU(),
        nn.Linear(8, 8, { seed = 12 }), nn.Tanh(), nn.Linear(8, 3, { seed = 13 }) }
    local x = nn.tensor(values({ 5, 6 }, uniform(-1, 1)))
    local y = { 0, 1, 2, 1, 0 }
    check(function() return nn.cross_entropy(model(x), y) end, model:parameters(), { h = 5e-3 })
end)

-- ---- graph handling ----

t.test("requires_grad propagates; no_grad and detach record nothing", function()
    local a = param({ 2 })
    local b = nn.tensor({ 1, 2 })
    t.eq((a + b).requires_grad, true)
    t.eq((b * 2).requires_grad, false)
    t.eq(nn.no_grad(function() return (a * 2).requires_grad end), false)
    t.eq(nn.is_grad_enabled(), true)
    t.eq(a:detach().requires_grad, false)
    t.raises(function() (b * 2):sum():backward() end, "does not require grad")
end)

t.test("no_grad restores grad mode after an error", function()
    t.raises(function() nn.no_grad(function() error("boom") end) end, "boom")
    t.eq(nn.is_grad_enabled(), true)
end)

t.test("a second backward through a freed graph fails clearly; retain_graph keeps it", function()
    local a = param({ 3 })
    local l = (a * a):sum()
    l:backward()
    t.raises(function() l:backward() end, "second time")
    a.grad = nil
    local l2 = (a * 3):sum()
    l2:backward(nil, { retain_graph = true })
    l2:backward()
    t.near(a.grad:totable(), { 6, 6, 6 }, 1e-6)
end)

t.test("backward with an explicit gradient and on a non-scalar", function()
    local a = param({ 2, 2 })
    local y = a * 2
    t.raises(function() y:backward() end, "one%-element")
    y:backward(nn.tensor({ { 1, 2 }, { 3, 4 } }))
    t.near(a.grad:totable(), { { 2, 4 }, { 6, 8 } }, 1e-6)
end)

t.test("the user's tensors keep their values after backward (no private buffer reused)", function()
    local a = param({ 3 })
    local h = a * 2
    local keep = h:totable()
    local out = (h:relu() + h):sum()
    out:backward()
    t.near(h:totable(), keep, 0)
end)

t.done()
