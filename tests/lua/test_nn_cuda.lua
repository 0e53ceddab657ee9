-- The CUDA backend of luray.nn (plugins/nn_cuda). With a GPU: every kernel against its CPU twin
-- (the nn plugin) on random inputs, forward and backward, the optimizers, nn's tensors and
-- autograd on "cuda", a small model trained on both devices to the same losses, and the Trainer
-- with use_gpu. Without one those cases are skipped, saying why, and what the CPU can check
-- runs: that the plugin is built wherever nvcc is, and the errors of to("cuda") and use_gpu.
local t = require("harness")
local nn = require("luray.nn")
local C = require("luray._plugin.nn")

local fmt = string.format
local registry = debug.getregistry()

local has_gpu, no_gpu_why = nn.cuda_available()
local K = has_gpu and nn.backend("cuda") or nil
local GPU_SKIP = not has_gpu and ("no GPU: " .. tostring(no_gpu_why)) or nil
if not has_gpu then io.write("# skipped: the CUDA checks need a GPU (", no_gpu_why, ")\n") end

-- A test that needs a GPU, skipped with the reason where there is none.
local function gpu_test(name, fn)
    if has_gpu then return t.test(name, fn) end
    t.skip(name, GPU_SKIP)
end

local function is_core(v)
    return type(v) == "userdata" and getmetatable(v) == registry["luray.Tensor"]
end

local function is_cuda(v)
    return type(v) == "userdata" and getmetatable(v) == registry["luray.nn_cuda.Tensor"]
end

local function nvcc_present()
    local f = io.open("/usr/local/cuda/bin/nvcc")
    if f then
        f:close()
        return true
    end
    local p = io.popen("command -v nvcc 2>/dev/null")
    local out = p and p:read("a") or ""
    if p then p:close() end
    return out ~= ""
end

-- ------------------------------------------------------------------ what runs everywhere

if os.getenv("NVCC") == "" then -- NVCC= make: the backend was left out on purpose
    t.skip("the CUDA plugin is built where nvcc is, and loads without opening a GPU",
        "NVCC is set empty")
elseif nvcc_present() then
    t.test("the CUDA plugin is built where nvcc is, and loads without opening a GPU", function()
        local ok, M = pcall(require, "luray._plugin.nn_cuda")
        t.truthy(ok, "require: " .. tostring(M))
        t.eq(type(M.version), "string")
        for name, f in pairs(C) do
            if type(f) == "function" then
                t.eq(type(M[name]), "function", "the CPU kernel table's " .. name)
            end
        end
        for _, name in ipairs({ "upload", "download", "init", "synchronize", "release" }) do
            t.eq(type(M[name]), "function", name)
        end
        local up, info = M.init()
        if up then
            t.eq(type(info.name), "string")
        else
            t.eq(up, nil)
            t.truthy(tostring(info):find("no CUDA device was found", 1, true), info)
        end
    end)
else
    t.skip("the CUDA plugin is built where nvcc is, and loads without opening a GPU",
        "nvcc not found (neither /usr/local/cuda/bin/nvcc nor nvcc on PATH)")
end

if not has_gpu then
    t.test("without a GPU, \"cuda\" is refused with the reason", function()
        local ok, why = nn.cuda_available()
        t.eq(ok, false)
        t.truthy(why:find("no CUDA device was found", 1, true)
            or why:find("no nn CUDA backend is loaded", 1, true), why)
        t.eq(nn.is_available("cuda"), false)
        t.eq(nn.cuda_info(), nil)
        local a = nn.tensor({ 1, 2 })
        for _, fn in ipairs({
            function() return a:to("cuda") end,
            function() return a:cuda() end,
            function() return nn.Linear(2, 2):to("cuda") end,
            function() return nn.zeros({ 2 }, { device = "cuda:0" }) end,
            function() return nn.tensor({ 1 }, { device = "cuda" }) end,
            function() return nn.backend("cuda") end,
            function() return nn.synchronize() end,
        }) do
            local err = tostring(t.raises(fn, "device 'cuda' is not available: "))
            t.truthy(err:find(why, 1, true), "the reason is given: " .. err)
        end
        -- the same answer every time (the failure is remembered, not retried)
        t.eq(select(2, nn.cuda_available()), why)
        -- and the plugin's kernels, called directly, say why too
        local ok2, M = pcall(require, "luray._plugin.nn_cuda")
        if ok2 then
            t.raises(function() return M.full({ 2 }, 0) end, "no CUDA device was found")
        end
    end)
else
    t.skip("without a GPU, \"cuda\" is refused with the reason", "a GPU is present")
end

-- ------------------------------------------------------------------ comparing the twins

local function flat(v, out)
    out = out or {}
    if type(v) == "table" then
        for _, x in ipairs(v) do flat(x, out) end
    else
        out[#out + 1] = v
    end
    return out
end

-- Equal within rtol * |cpu| + atol; NaN equals NaN, infinities must match exactly.
local function close(g, c, rtol, atol)
    if type(c) ~= "number" or type(g) ~= "number" then return g == c end
    if c ~= c then return g ~= g end
    if g == c then return true end
    if c == math.huge or c == -math.huge then return false end
    return math.abs(g - c) <= atol + rtol * math.abs(c)
end

local DEFAULT_TOL = { rtol = 1e-5, atol = 1e-6 }

-- The GPU's result g agrees with the CPU's c: a CUDA tensor against a core tensor (dtype, shape
-- and every element), or a plain value.
local function same(label, c, g, tol)
    tol = tol or DEFAULT_TOL
    if is_core(c) then
        if not is_cuda(g) then
            error(fmt("%s: the GPU gave %s, not a CUDA tensor", label, tostring(g)), 2)
        end
        local h = K.download(g)
        if h:dtype() ~= c:dtype() then
            error(fmt("%s: dtype %s on the GPU, %s on the CPU", label, h:dtype(), c:dtype()), 2)
        end
        if not t.deep_eq(h:shape(), c:shape()) then
            error(fmt("%s: shape {%s} on the GPU, {%s} on the CPU", label,
                table.concat(h:shape(), ", "), table.concat(c:shape(), ", ")), 2)
        end
        local cv, gv = flat(c:totable()), flat(h:totable())
        for i = 1, #cv do
            if not close(gv[i], cv[i], tol.rtol, tol.atol) then
                error(fmt("%s: element %d is %s on the GPU, %s on the CPU", label, i,
                    tostring(gv[i]), tostring(cv[i])), 2)
            end
        end
    elseif not close(g, c, tol.rtol, tol.atol) then
        error(fmt("%s: %s on the GPU, %s on the CPU", label, tostring(g), tostring(c)), 2)
    end
end

-- Runs kernel `name` on both devices: core tensors among args are cloned for the CPU and
-- uploaded for the GPU, anything else passes as it is. Every result must agree, and so must the
-- arguments at the positions in `mutated` (kernels that work in place).
local function twin(label, name, args, tol, mutated)
    local n = args.n or #args
    local ca, ga = {}, {}
    for i = 1, n do
        local a = args[i]
        if is_core(a) then
            ca[i], ga[i] = a:clone(), K.upload(a)
        else
            ca[i], ga[i] = a, a
        end
    end
    local cr = table.pack(C[name](table.unpack(ca, 1, n)))
    local gr = table.pack(K[name](table.unpack(ga, 1, n)))
    if gr.n ~= cr.n then
        error(fmt("%s: %d results on the GPU, %d on the CPU", label, gr.n, cr.n), 2)
    end
    for i = 1, cr.n do same(label .. ": result " .. i, cr[i], gr[i], tol) end
    for _, i in ipairs(mutated or {}) do same(label .. ": argument " .. i, ca[i], ga[i], tol) end
end

-- Both raise, with the same message (but for the function's name in "bad argument" ones, which
-- is the module's: luray._plugin.nn.item against luray._plugin.nn_cuda.item).
local function same_error(label, name, args)
    local n = args.n or #args
    local ga = {}
    for i = 1, n do ga[i] = is_core(args[i]) and K.upload(args[i]) or args[i] end
    local cok, cerr = pcall(C[name], table.unpack(args, 1, n))
    local gok, gerr = pcall(K[name], table.unpack(ga, 1, n))
    t.eq(cok, false, label .. ": the CPU raises")
    t.eq(gok, false, label .. ": the GPU raises")
    local function plain_msg(e)
        return (tostring(e):gsub("^[^%s:]+%.lua:%d+: ", ""):gsub(" to '[^']*'", ""))
    end
    t.eq(plain_msg(gerr), plain_msg(cerr), label .. ": the same message")
end

local gen = C.generator(20240601)
local function randn(shape, std) return C.randn(gen, shape, 0, std or 1) end
local function rand(shape, lo, hi) return C.rand(gen, shape, lo or 0, hi or 1) end
local function core(values, dtype) return require("luray").tensor(values, { dtype = dtype }) end

local nan, inf = 0 / 0, math.huge

-- ------------------------------------------------------------------ kernels

local BINARY = { "add", "sub", "mul", "div", "pow", "eq", "ne", "lt", "le", "gt", "ge" }
local UNARY = { "neg", "exp", "log", "relu", "sigmoid", "tanh" }
local SHAPE_PAIRS = {
    { { 3, 4 }, { 3, 4 } }, { { 3, 4 }, { 4 } }, { { 3, 1 }, { 1, 4 } },
    { { 2, 3, 4 }, { 3, 1 } }, { { 5 }, {} }, { { 257, 33 }, { 33 } }, { { 0, 3 }, { 3 } },
    { { 300, 70 }, { 70 } }, { { 2, 5000 }, { 1 } },
}

-- Operands for op: positive bases and divisors keep pow and div away from NaN and huge values.
local function operands(op, as, bs)
    if op == "pow" then return rand(as, 0.5, 2), rand(bs, -2, 2) end
    if op == "div" then return randn(as), rand(bs, 0.5, 2) end
    return randn(as), randn(bs)
end

gpu_test("binary ops with broadcasting, numbers and an out tensor match the CPU", function()
    for _, op in ipairs(BINARY) do
        for _, pair in ipairs(SHAPE_PAIRS) do
            local a, b = operands(op, pair[1], pair[2])
            local label = fmt("%s {%s} {%s}", op, table.concat(pair[1], ","),
                table.concat(pair[2], ","))
            twin(label, op, { a, b })
            twin(label .. " swapped", op, { b, a })
        end
        local a = op == "pow" and rand({ 4, 5 }, 0.5, 2) or randn({ 4, 5 })
        twin(op .. " tensor, number", op, { a, 2.5 })
        twin(op .. " number, tensor", op, { 1.5, a })
        twin(op .. " with itself", op, { a, a })
        twin(op .. " into out", op, { a, a, C.full({ 4, 5 }, 0) })
    end
    -- pow's square is a product, not powf, on both
    twin("pow 2", "pow", { randn({ 6 }), 2 })
end)

-- The tolerance of a sum of `terms` float32 terms of about unit size, which the CPU adds one
-- by one and the GPU as a tree: their rounding differs by up to about terms * 1e-7.
local function sum_tol(terms)
    return { rtol = 1e-4, atol = 1e-6 * math.max(terms, 10) }
end

gpu_test("binary gradients, summed to each operand's shape, match the CPU", function()
    local tol = sum_tol(1)
    for _, op in ipairs({ "add", "sub", "mul", "div", "pow", "eq" }) do
        for _, pair in ipairs(SHAPE_PAIRS) do
            local a, b = operands(op, pair[1], pair[2])
            local fwd = C[op](a, b)
            local g = randn(fwd:shape())
            for which = 1, 2 do
                local label = fmt("%s' (%d) {%s} {%s}", op, which, table.concat(pair[1], ","),
                    table.concat(pair[2], ","))
                local terms = fwd:numel() / math.max(1, (which == 1 and a or b):numel())
                twin(label, "binary_backward", { op, which, g, a, b, fwd }, sum_tol(terms))
                twin(label .. " swapped", "binary_backward",
                    { op, which, randn(C[op](b, a):shape()), b, a, C[op](b, a) },
                    sum_tol(fwd:numel() / math.max(1, (which == 1 and b or a):numel())))
            end
        end
        local a = op == "pow" and rand({ 7, 3 }, 0.5, 2) or randn({ 7, 3 })
        local g = randn({ 7, 3 })
        twin(op .. "' by a number", "binary_backward", { op, 1, g, a, 3, C[op](a, 3) }, tol)
        twin(op .. "' of a number", "binary_backward", { op, 2, g, 0.5, a, C[op](0.5, a) }, tol)
    end
    -- without the forward result (only pow's exponent needs it)
    local a, b = randn({ 3, 4 }), randn({ 4 })
    twin("mul' without out", "binary_backward", { "mul", 2, randn({ 3, 4 }), a, b }, tol)
end)

gpu_test("unary ops and their gradients match the CPU, special values included", function()
    local special = core({ -100, -1, 0, 1, 100, -0.0, inf, -inf, nan, 1e-30 }, "float32")
    for _, op in ipairs(UNARY) do
        local a = op == "log" and rand({ 37, 19 }, 0.1, 3) or randn({ 37, 19 }, 3)
        twin(op, op, { a })
        twin(op .. " special", op, { special })
        local out = C[op](a)
        local g = randn({ 37, 19 })
        twin(op .. "'", "unary_backward", { op, g, a, out })
        if op ~= "log" then
            twin(op .. "' from the output", "unary_backward", { op, g, nil, out, n = 4 })
        end
        twin(op .. "' into dst", "unary_backward", { op, g, a, out, C.full({ 37, 19 }, 7) })
    end
    -- in place: out = a, and the gradient written over g
    local a = randn({ 50 })
    local ga = K.upload(a)
    local r = K.relu(ga, ga)
    t.truthy(rawequal(r, ga), "relu in place returns its output")
    same("relu in place", C.relu(a), ga)
    local g, out = randn({ 50 }), C.tanh(a)
    local gg = K.upload(g)
    K.unary_backward("tanh", gg, nil, K.upload(out), gg)
    same("tanh' in place", C.unary_backward("tanh", g, nil, out), gg)
end)

gpu_test("fills, copies, axpy and dtype conversions match the CPU", function()
    twin("full", "full", { { 3, 4 }, 2.5 })
    twin("full 0", "full", { { 3, 4 }, 0 })
    twin("full 0-d", "full", { {}, -1 })
    twin("full empty", "full", { { 0, 4 }, 1 })
    twin("full from a shape tensor", "full", { randn({ 2, 2 }), 3 })
    twin("fill_", "fill_", { randn({ 5, 5 }), 1.25 })
    twin("fill_ 0", "fill_", { randn({ 5, 5 }), 0 })
    twin("axpy_", "axpy_", { randn({ 100 }), randn({ 100 }) })
    twin("axpy_ alpha", "axpy_", { randn({ 100 }), randn({ 100 }), -0.5 })
    local tricky = core({ 1.5, -2.7, 300, -1, 0, nan, 1e20, -1e20, 255.9, 0.2, -0.0, 4e9 },
        "float64")
    local ints = core({ -5, 0, 7, 300, 1099511627776, -1 }, "int64")
    local dtypes = { "float32", "float64", "int32", "int64", "uint8", "bool" }
    for _, from in ipairs(dtypes) do
        for _, src in ipairs({ tricky, ints }) do
            local x = C.convert(src, from)
            for _, to in ipairs(dtypes) do
                twin(fmt("convert %s (%s values) to %s", from, src:dtype(), to), "convert",
                    { x, to })
                twin(fmt("copy_ %s into %s", from, to), "copy_",
                    { C.convert(C.full(x:shape(), 0), to), x })
            end
        end
    end
    twin("as_f32 of int64", "as_f32", { ints })
    local x = K.upload(randn({ 3 }))
    t.truthy(rawequal(K.as_f32(x), x), "as_f32 of a float32 tensor is the tensor")
    -- copy_ from the host, in the same dtype and in another, and from a strided core tensor
    local dst = K.upload(C.full({ 2, 3 }, 0))
    local src = randn({ 2, 3 })
    K.copy_(dst, src)
    same("copy_ from the host", src, dst)
    K.copy_(dst, core({ { 1, 2, 3 }, { 4, 5, 6 } }, "int64"))
    same("copy_ from int64 on the host", core({ { 1, 2, 3 }, { 4, 5, 6 } }, "float32"), dst)
    t.raises(function() K.copy_(dst, randn({ 7 })) end, "cannot copy a tensor of shape")
end)

gpu_test("transposes, row views, gathers, scatters, item and same_shape match the CPU", function()
    twin("transpose", "transpose", { randn({ 5, 7 }) })
    twin("transpose 1-row", "transpose", { randn({ 1, 3 }) })
    twin("transpose empty", "transpose", { randn({ 0, 4 }) })
    twin("narrow", "narrow", { randn({ 10, 3 }), 4, 5 })
    twin("narrow none", "narrow", { randn({ 10, 3 }), 11, 0 })
    twin("narrow int64", "narrow", { core({ 1, 2, 3, 4 }, "int64"), 2, 2 })
    local x = randn({ 10, 3 })
    local pos = { 3, 1, 3, 10 }
    twin("gather_rows (list)", "gather_rows", { x, pos })
    twin("gather_rows (int64)", "gather_rows", { x, core(pos, "int64") })
    twin("gather_rows (float positions)", "gather_rows", { x, core(pos, "float32") })
    twin("gather_rows of int64 rows", "gather_rows", { core({ 5, 6, 7 }, "int64"), { 3, 1 } })
    twin("gather_rows of 3-byte rows", "gather_rows",
        { C.convert(randn({ 5, 3 }), "uint8"), { 5, 2, 2 } })
    twin("gather_rows of none", "gather_rows", { x, {} })
    -- positions already on the GPU
    same("gather_rows (CUDA positions)", C.gather_rows(x, pos),
        K.gather_rows(K.upload(x), K.upload(core(pos, "int64"))))
    same_error("gather_rows out of range", "gather_rows", { x, { 2, 11 } })
    same_error("gather_rows not whole", "gather_rows", { x, core({ 1.5 }, "float32") })
    twin("index_add_rows (repeated rows)", "index_add_rows",
        { randn({ 10, 3 }), { 3, 1, 3, 10, 3 }, randn({ 5, 3 }) }, { rtol = 1e-5, atol = 1e-6 })
    same_error("index_add_rows out of range", "index_add_rows",
        { randn({ 10, 3 }), { 0 }, randn({ 1, 3 }) })
    for _, v in ipairs({ core(2.5, "float32"), core({ 7 }, "int64"), core(true, "bool"),
        core(-3, "int32"), core(0.25, "float64") }) do
        twin("item " .. v:dtype(), "item", { v })
    end
    same_error("item of two", "item", { randn({ 2 }) })
    t.eq(K.same_shape(K.upload(randn({ 2, 3 })), randn({ 2, 3 })), true)
    t.eq(K.same_shape(K.upload(randn({ 2, 3 })), K.upload(randn({ 3, 2 }))), false)
end)

gpu_test("matmul, linear and bias gradients through cuBLAS match the CPU", function()
    local tol = { rtol = 1e-4, atol = 1e-4 }
    local m, n, k = 33, 17, 65
    for _, ta in ipairs({ false, true }) do
        for _, tb in ipairs({ false, true }) do
            local a = ta and randn({ k, m }) or randn({ m, k })
            local b = tb and randn({ n, k }) or randn({ k, n })
            local label = fmt("matmul ta=%s tb=%s", tostring(ta), tostring(tb))
            twin(label, "matmul", { a, b, ta, tb }, tol)
            twin(label .. " beta 1", "matmul", { a, b, ta, tb, randn({ m, n }), 1 }, tol)
            twin(label .. " beta 0.5", "matmul", { a, b, ta, tb, randn({ m, n }), 0.5 }, tol)
            twin(label .. " beta 0", "matmul", { a, b, ta, tb, C.full({ m, n }, nan), 0 }, tol)
        end
    end
    -- Empty operands (the CPU twin refuses them as not contiguous): nothing to add up gives
    -- zeros, or beta * out.
    local ka, kb = K.full({ 3, 0 }, 0), K.full({ 0, 4 }, 0)
    same("matmul k=0", C.full({ 3, 4 }, 0), K.matmul(ka, kb))
    local out = randn({ 3, 4 })
    same("matmul k=0 beta", C.mul(out, 0.5), K.matmul(ka, kb, false, false, K.upload(out), 0.5))
    t.eq(K.matmul(K.full({ 0, 5 }, 0), K.full({ 5, 4 }, 1)):shape(), { 0, 4 })
    twin("matmul 784x256", "matmul", { randn({ 128, 784 }), randn({ 256, 784 }), false, true },
        { rtol = 1e-4, atol = 1e-3 })
    same_error("matmul inner dimensions", "matmul", { randn({ 2, 3 }), randn({ 4, 2 }) })
    local x, w, bias = randn({ 64, 100 }), randn({ 30, 100 }, 0.1), randn({ 30 })
    for _, act in ipairs({ "none", "relu", "sigmoid", "tanh" }) do
        twin("linear " .. act, "linear", { x, w, bias, act }, tol)
        twin("linear " .. act .. " without bias", "linear", { x, w, nil, act, n = 4 }, tol)
    end
    twin("linear no act", "linear", { x, w, bias }, tol)
    same_error("linear features", "linear", { randn({ 2, 3 }), randn({ 4, 5 }) })
    local g = randn({ 129, 70 })
    twin("sum_rows", "sum_rows", { g }, sum_tol(129))
    twin("sum_rows beta 1", "sum_rows", { g, randn({ 70 }), 1 }, sum_tol(129))
    twin("sum_rows beta 0.5", "sum_rows", { g, randn({ 70 }), 0.5 }, sum_tol(129))
    local b5 = randn({ 5 })
    same("sum_rows of no rows", C.mul(b5, 0.5), K.sum_rows(K.full({ 0, 5 }, 0), K.upload(b5), 0.5))
    same("sum_rows of no rows, beta 0", C.full({ 5 }, 0),
        K.sum_rows(K.full({ 0, 5 }, 0), K.upload(b5)))
    twin("sum_rows 60000 rows", "sum_rows", { randn({ 60000, 10 }) }, sum_tol(60000))
end)

gpu_test("sums, means, maxima, argmax and softmax, with their gradients, match the CPU", function()
    local tol = { rtol = 1e-5, atol = 1e-5 }
    local a = randn({ 7, 5, 3 })
    for _, dim in ipairs({ false, 1, 2, 3, -1 }) do
        for _, keep in ipairs({ false, true }) do
            for _, mean in ipairs({ false, true }) do
                local d = dim or nil
                local label = fmt("sum dim=%s keep=%s mean=%s", tostring(d), tostring(keep),
                    tostring(mean))
                twin(label, "sum", { a, d, keep, mean, n = 4 }, tol)
                local out = C.sum(a, d, false, mean)
                twin(label .. " backward", "sum_backward",
                    { randn(out:shape()), a, d, mean, n = 4 })
            end
            local label = fmt("max dim=%s keep=%s", tostring(dim), tostring(keep))
            twin(label, "max", { a, dim or nil, keep, n = 3 })
            twin("arg" .. label, "argmax", { a, dim or nil, keep, n = 3 })
            local v, pos = C.max(a, dim or nil)
            twin(label .. " backward", "max_backward",
                { randn(v:shape()), pos, a, dim or nil, n = 4 })
        end
    end
    local big = randn({ 1000, 300 })
    twin("sum of 300,000", "sum", { big }, { rtol = 1e-5, atol = 1e-3 })
    twin("mean of 300,000", "sum", { big, nil, false, true, n = 4 }, tol)
    twin("sum along long rows", "sum", { big, 2 }, { rtol = 1e-5, atol = 1e-4 })
    twin("sum along columns", "sum", { big, 1 }, sum_tol(1000))
    twin("max of 300,000", "max", { big })
    twin("sum of nothing", "sum", { randn({ 0 }) })
    twin("mean of nothing", "sum", { randn({ 0 }), nil, false, true, n = 4 })
    -- first of equal maxima, NaN wins, across the blocks of a long vector
    twin("max ties", "max", { core({ { 1, 3, 3 }, { 2, 2, 1 } }, "float32"), 2 })
    twin("max NaN", "max", { core({ { 1, nan, 5, nan } }, "float32"), 2 })
    twin("max NaN all", "max", { core({ 1, nan, 5, nan }, "float32") })
    local long = C.full({ 100000 }, 0)
    long:set(70001, 1)
    long:set(90001, 1)
    twin("max ties far apart", "max", { long })
    long:set(95001, nan)
    twin("max NaN far away", "max", { long })
    same_error("max of nothing", "max", { randn({ 0 }) })
    for _, shape in ipairs({ { 33, 10 }, { 4, 1000 }, { 10 }, { 2, 3, 7 } }) do
        for _, log in ipairs({ false, true }) do
            local x = randn(shape, 3)
            local label = fmt("%ssoftmax {%s}", log and "log_" or "", table.concat(shape, ","))
            twin(label, "softmax", { x, log }, tol)
            local y = C.softmax(x, log)
            twin(label .. " backward", "softmax_backward", { randn(shape), y, log }, tol)
        end
    end
    local rows = core({ { -inf, -inf }, { 1, 2 }, { inf, 1 }, { nan, 0 } }, "float32")
    twin("softmax of special rows", "softmax", { rows })
    twin("log_softmax of special rows", "softmax", { rows, true })
end)

gpu_test("losses and their gradients match the CPU, labels from the host or the GPU", function()
    local tol = { rtol = 1e-5, atol = 1e-6 }
    local logits = randn({ 64, 10 }, 3)
    local labels = C.convert(rand({ 64 }, 0, 10), "int64")
    for _, red in ipairs({ "mean", "sum" }) do
        twin("cross_entropy " .. red, "cross_entropy", { logits, labels, red }, tol)
        twin("cross_entropy float labels " .. red, "cross_entropy",
            { logits, C.convert(labels, "float32"), red }, tol)
        -- labels left on the host: checked there, copied over
        local loss, probs, ids = K.cross_entropy(K.upload(logits), labels, red)
        local closs, cprobs, cids = C.cross_entropy(logits, labels, red)
        same("cross_entropy host labels: loss", closs, loss, tol)
        same("cross_entropy host labels: probs", cprobs, probs, tol)
        same("cross_entropy host labels: ids", cids, ids)
        twin("cross_entropy_backward " .. red, "cross_entropy_backward",
            { 1.0, cprobs, cids, red }, tol)
        twin("cross_entropy_backward seed tensor " .. red, "cross_entropy_backward",
            { core(0.5, "float32"), cprobs, cids, red }, tol)
    end
    twin("cross_entropy of one sample", "cross_entropy", { randn({ 10 }), core({ 3 }, "int64") },
        tol)
    twin("cross_entropy of no rows", "cross_entropy", { randn({ 0, 10 }), core({}, "int64") })
    local bad = C.convert(core({ 1, 2, 10, 0 }, "float32"), "int64")
    same_error("cross_entropy label out of range (GPU labels)", "cross_entropy",
        { randn({ 4, 10 }), bad })
    local ok, err = pcall(K.cross_entropy, K.upload(randn({ 4, 10 })), bad)
    t.eq(ok, false)
    t.truthy(tostring(err):find("label 10 (row 3) is not a class id in 0..9", 1, true), err)
    same_error("cross_entropy label count", "cross_entropy", { randn({ 4, 10 }), labels })
    local pred, target = rand({ 50, 1 }, 0.01, 0.99), rand({ 50 })
    local edges = core({ 0, 1, 0.5, 1e-9 }, "float32")
    for _, loss in ipairs({ "mse", "bce", "bce_with_logits" }) do
        for _, red in ipairs({ "mean", "sum" }) do
            local p = loss == "bce_with_logits" and randn({ 50, 1 }, 4) or pred
            twin(loss .. " " .. red, loss, { p, target, red }, tol)
            twin(loss .. " " .. red .. " backward", loss .. "_backward",
                { 1.0, p, target, red }, tol)
            twin(loss .. " " .. red .. " backward seed tensor", loss .. "_backward",
                { core({ 2.0 }, "float32"), p, target, red }, tol)
        end
        twin(loss .. " at the edges", loss, { edges, core({ 1, 0, 1, 1 }, "float32") }, tol)
        twin(loss .. "' at the edges", loss .. "_backward",
            { 1.0, edges, core({ 1, 0, 1, 1 }, "float32") }, tol)
        twin(loss .. " of nothing", loss, { randn({ 0 }), randn({ 0 }) })
        same_error(loss .. " shapes", loss, { randn({ 3, 2 }), randn({ 6 }) })
    end
end)

gpu_test("SGD and Adam steps match the CPU", function()
    local tol = { rtol = 1e-5, atol = 1e-6 }
    local p, g = randn({ 40, 30 }), randn({ 40, 30 })
    twin("sgd plain", "sgd_step", { p, g, nil, 0.1, 0, 0, 0, false, false, n = 9 }, tol, { 1 })
    twin("sgd weight decay", "sgd_step", { p, g, nil, 0.1, 0, 0, 0.01, false, false, n = 9 }, tol,
        { 1 })
    local buf = randn({ 40, 30 })
    twin("sgd momentum, first step", "sgd_step", { p, g, buf, 0.1, 0.9, 0, 0, false, true }, tol,
        { 1, 3 })
    twin("sgd momentum", "sgd_step", { p, g, buf, 0.1, 0.9, 0.1, 0.01, false, false }, tol,
        { 1, 3 })
    twin("sgd nesterov", "sgd_step", { p, g, buf, 0.1, 0.9, 0, 0, true, false }, tol, { 1, 3 })
    local m, v = randn({ 40, 30 }), rand({ 40, 30 })
    for _, step in ipairs({ 1, 5 }) do
        for _, decoupled in ipairs({ false, true }) do
            twin(fmt("adam step %d decoupled=%s", step, tostring(decoupled)), "adam_step",
                { p, g, m, v, step, 1e-3, 0.9, 0.999, 1e-8, 0.01, decoupled }, tol, { 1, 3, 4 })
        end
    end
end)

gpu_test("random numbers: the same seed draws the same numbers on both devices", function()
    for _, case in ipairs({
        { "rand", { { 100 }, -1, 1 } }, { "randn", { { 3, 33 }, 1, 2 } },
        { "dropout_mask", { { 1000 }, 0.3 } }, { "randperm", { 50 } },
    }) do
        local name, args = case[1], case[2]
        local c = C[name](C.generator(77), table.unpack(args))
        local g = K[name](K.generator(77), table.unpack(args))
        same(name, c, g, { rtol = 0, atol = 0 })
    end
end)

-- ------------------------------------------------------------------ nn on cuda

gpu_test("nn tensors on cuda: ops, moves, printing, errors", function()
    local info = nn.cuda_info()
    t.eq(type(info.name), "string")
    local a = nn.tensor({ { 1, 2 }, { 3, 4 } }, { device = "cuda" })
    t.eq(a.device, "cuda")
    t.eq((a + 1):totable(), { { 2.0, 3.0 }, { 4.0, 5.0 } })
    t.eq(a:sum():item(), 10.0)
    t.eq(a:matmul(a):totable(), { { 7.0, 10.0 }, { 15.0, 22.0 } })
    t.eq(a:t():totable(), { { 1.0, 3.0 }, { 2.0, 4.0 } })
    t.eq(a:narrow(2, 1):totable(), { { 3.0, 4.0 } })
    t.eq(a:index({ 2, 1 }):totable(), { { 3.0, 4.0 }, { 1.0, 2.0 } })
    t.eq(a:reshape(4):totable(), { 1.0, 2.0, 3.0, 4.0 })
    t.eq(a:argmax(2):totable(), { 1, 1 })
    t.eq(a:get(2, 1), 3.0)
    t.eq(#a, 2)
    t.eq(a:to("cpu").device, "cpu")
    t.eq(a:cpu():totable(), a:totable())
    t.truthy(tostring(a):find("device=cuda", 1, true), tostring(a))
    t.eq(nn.accuracy(a, { 1, 0 }), 0.5)
    local b = nn.zeros({ 2 }, { device = "cuda" })
    nn.no_grad(function() b:set(2, 5) end)
    t.eq(b:totable(), { 0.0, 5.0 })
    t.raises(function() return a + nn.tensor({ 1, 2 }) end, "different devices")
    t.raises(function() return nn.mse(a, nn.tensor({ { 1, 2 }, { 3, 4 } })) end,
        "different devices")
    local labels = nn.tensor({ 1, 0 }, { dtype = "int64", device = "cuda" })
    t.eq(labels:dtype(), "int64")
    t.near(nn.cross_entropy(a, labels):item(),
        nn.cross_entropy(a:cpu(), { 1, 0 }):item(), 1e-6)
    nn.synchronize()
    local mem = K.memory()
    t.truthy(mem.live > 0 and mem.total > 0, "memory figures")
end)

-- The same graph on both devices: every leaf's gradient must agree.
gpu_test("autograd on cuda gives the CPU's gradients", function()
    local function grads(device)
        local function leaf(shape, seed)
            return nn.randn(shape, { seed = seed }):to(device):requires_grad_()
        end
        local x, w1, b1 = leaf({ 16, 8 }, 1), leaf({ 12, 8 }, 2), leaf({ 12 }, 3)
        local w2, s = leaf({ 5, 12 }, 4), leaf({ 5 }, 5)
        local h = nn.linear(x, w1, b1, "relu")
        local z = (h:matmul(w2:t()) * s + 0.5):sigmoid()
        local y = (z - z:max(2, true)):log_softmax()
        local loss = nn.cross_entropy(y, nn.tensor({ 0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2, 3,
            4, 0 }, { dtype = "int64" })) + (z:index({ 3, 1 }):narrow(1, 1):mean() ^ 2)
            + nn.mse(z:tanh(), 0.25) + z:exp():sum(1):mean() * 0.01
        loss:backward()
        return { loss = loss:item(), x = x.grad:cpu(), w1 = w1.grad:cpu(), b1 = b1.grad:cpu(),
            w2 = w2.grad:cpu(), s = s.grad:cpu() }
    end
    local c, g = grads("cpu"), grads("cuda")
    t.near(g.loss, c.loss, 1e-5 * math.abs(c.loss) + 1e-6, "loss")
    for _, k in ipairs({ "x", "w1", "b1", "w2", "s" }) do
        local cv, gv = flat(c[k]:totable()), flat(g[k]:totable())
        for i = 1, #cv do
            t.truthy(close(gv[i], cv[i], 1e-4, 1e-5),
                fmt("grad %s[%d]: %s on the GPU, %s on the CPU", k, i, gv[i], cv[i]))
        end
    end
end)

-- A small model trained step by step on each device from the same seed.
local function train_losses(device, optname)
    nn.manual_seed(3)
    local model = nn.Sequential{ nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 16), nn.Tanh(),
        nn.Linear(16, 4) }
    model:to(device)
    local opt = nn.optim[optname](model, { lr = 0.05, momentum = optname == "sgd" and 0.9 or nil })
    local x = nn.randn({ 256, 20 }, { seed = 4 }):to(device)
    local y = nn.rand({ 256 }, { seed = 5, low = 0, high = 4 }):to("int64")
    local losses = {}
    for step = 1, 40 do
        local loss = nn.cross_entropy(model(x), y)
        opt:zero_grad()
        loss:backward()
        opt:step()
        losses[step] = loss:item()
    end
    return losses, model:state_dict()
end

gpu_test("a model trained on cuda reaches the CPU's losses, step by step", function()
    for _, optname in ipairs({ "sgd", "adam" }) do
        local cl, cw = train_losses("cpu", optname)
        local gl, gw = train_losses("cuda", optname)
        for step = 1, #cl do
            t.truthy(close(gl[step], cl[step], 1e-3, 1e-5),
                fmt("%s step %d: loss %.9g on the GPU, %.9g on the CPU", optname, step, gl[step],
                    cl[step]))
        end
        t.truthy(cl[#cl] < cl[1], optname .. ": the loss falls")
        for name, w in pairs(cw) do
            local cv, gv = flat(w:totable()), flat(gw[name]:totable())
            for i = 1, #cv do
                t.truthy(close(gv[i], cv[i], 1e-3, 1e-4),
                    fmt("%s %s[%d]: %s on the GPU, %s on the CPU", optname, name, i, gv[i], cv[i]))
            end
        end
    end
end)

gpu_test("modules move, save and load on cuda; dropout draws the CPU's masks", function()
    nn.manual_seed(9)
    local model = nn.Sequential{ nn.Linear(6, 5), nn.Sigmoid(), nn.Linear(5, 3) }
    local x = nn.randn({ 4, 6 }, { seed = 1 })
    local want = model(x):totable()
    model:to("cuda")
    for _, p in ipairs(model:parameters()) do t.eq(p.device, "cuda") end
    local got = model(x:cuda()):cpu():totable()
    t.near(got, want, 1e-5)
    local sd = model:state_dict()
    for _, v in pairs(sd) do t.truthy(is_core(v), "state_dict gives host tensors") end
    nn.manual_seed(10)
    local other = nn.Sequential{ nn.Linear(6, 5), nn.Sigmoid(), nn.Linear(5, 3) }:to("cuda")
    other:load_state_dict(sd)
    t.near(other(x:cuda()):cpu():totable(), want, 1e-5)
    t.raises(function() other:load_state_dict({ ["0.weight"] = nn.zeros(2, 2).data },
        { strict = false }) end, "has shape")
    model:to("cpu")
    t.near(model(x):totable(), want, 1e-6)
    local d1 = nn.Dropout(0.5, { seed = 3 })
    local d2 = nn.Dropout(0.5, { seed = 3 })
    local ones = nn.ones(8, 8)
    t.eq(d2(ones:cuda()):cpu():totable(), d1(ones):totable())
end)

-- ------------------------------------------------------------------ the Trainer

local luray = require("luray")
luray.init{ num_cpus = 2, num_gpus = has_gpu and 1 or 0,
    object_store_memory = 256 * 1024 * 1024 }
local train = require("luray.train")
local helpers = require("train_helpers")

local function trainer(scaling)
    return train.Trainer{
        framework = "nn",
        model = function()
            local m = require("luray.nn")
            return m.Sequential{ m.Linear(2, 16), m.ReLU(), m.Linear(16, 2) }
        end,
        loss = "cross_entropy", optimizer = { name = "sgd", lr = 0.1 }, label_column = "label",
        epochs = 3, batch_size = 64, scaling = scaling,
        datasets = { train = helpers.separable(2000, 7), valid = helpers.separable(500, 99) },
    }
end

if not has_gpu then
    t.test("use_gpu without GPU resources, or without a GPU, fails clearly", function()
        t.raises(function() trainer({ num_workers = 1, use_gpu = true }):fit() end,
            "the cluster has no GPU resources")
        -- a worker that holds no GPU yet asks for cuda: the loop's to("cuda") says why
        t.raises(function()
            trainer({ num_workers = 1, use_gpu = true, resources_per_worker = { GPU = 0 } }):fit()
        end, "device 'cuda' is not available")
        t.raises(function() trainer({ use_gpu = "yes" }) end, "use_gpu must be true or false")
    end)
else
    t.skip("use_gpu without GPU resources, or without a GPU, fails clearly", "a GPU is present")
end

gpu_test("the Trainer with use_gpu trains on the GPU to the CPU's loss", function()
    t.raises(function() trainer({ num_workers = 2, use_gpu = true }):fit() end,
        "need 2 GPUs, but the cluster has 1")
    local cpu = trainer({ num_workers = 1 }):fit()
    local gpu = trainer({ num_workers = 1, use_gpu = true }):fit()
    t.truthy(gpu.metrics.accuracy > 0.95, "accuracy " .. gpu.metrics.accuracy)
    t.truthy(gpu.metrics.valid_accuracy > 0.95, "valid accuracy " .. gpu.metrics.valid_accuracy)
    for e = 1, 3 do
        t.truthy(close(gpu.history[e].loss, cpu.history[e].loss, 1e-3, 1e-6),
            fmt("epoch %d: loss %.9g on the GPU, %.9g on the CPU", e, gpu.history[e].loss,
                cpu.history[e].loss))
    end
end)

t.done()
