-- luray.nn: luray's neural-network framework. Tensors with reverse-mode autograd, layers, losses
-- and optimizers, over the nn plugin's C kernels (require("luray._plugin.nn")).
--
-- An nn tensor is a Lua object around a core tensor (luray.Tensor, float32 for math): `t.data`
-- the core tensor, `t.grad`, `t.requires_grad`, `t.device`. An op on tensors that require grad
-- records a node: the backward function and the parents (_a, _b, _c) and whatever it saved (_s1,
-- _s2). `loss:backward()` walks the nodes in reverse topological order. Every kernel call goes
-- through the backend of the tensors' device: "cpu" is the plugin, "cuda" the nn_cuda plugin,
-- loaded the first time "cuda" is asked for; other backends register with nn.register_backend
-- (see docs/nn.md for the contract).
local luray = require("luray")
local C = require("luray._plugin.nn")

local nn = {}

local fmt = string.format
local mtype = math.type
local setmetatable, getmetatable, rawequal, type, select = setmetatable, getmetatable, rawequal,
    type, select

nn.version = C.version

-- ------------------------------------------------------------------ backends and devices

local backends = { cpu = C }

-- Adds the kernels of a device. A backend has every function of the CPU kernel table
-- (luray._plugin.nn) over its own tensor userdata, plus upload(core) -> device tensor and
-- download(device tensor) -> core tensor (see docs/nn.md).
function nn.register_backend(name, kernels)
    if type(name) ~= "string" or type(kernels) ~= "table" then
        error("nn.register_backend(name, kernels): expected a string and a table", 2)
    end
    if name == "cpu" then error("nn.register_backend: the cpu backend is built in", 2) end
    local needed = { "upload", "download" }
    for f, v in pairs(C) do
        if type(v) == "function" then needed[#needed + 1] = f end
    end
    table.sort(needed)
    for _, f in ipairs(needed) do
        if type(kernels[f]) ~= "function" then
            error(fmt("nn.register_backend: backend '%s' lacks the function '%s'", name, f), 2)
        end
    end
    backends[name] = kernels
end

-- The CUDA backend is the nn_cuda plugin, loaded the first time a "cuda" device is asked for
-- (a process without a GPU never opens CUDA). Why it is not available is remembered, so every
-- later call fails the same way without trying again.
local cuda_why, cuda_info

local function load_cuda()
    if backends.cuda then return true end
    if cuda_why then return false, cuda_why end
    local ok, K = pcall(require, "luray._plugin.nn_cuda")
    if not ok then
        if tostring(K):find("plugin 'nn_cuda' not found", 1, true) then
            cuda_why = "no nn CUDA backend is loaded in this process (it needs a GPU and luray "
                .. "built with CUDA)"
        else
            cuda_why = "the nn_cuda plugin does not load: " .. tostring(K)
        end
        return false, cuda_why
    end
    local up, info = K.init()
    if not up then
        cuda_why = info
        return false, cuda_why
    end
    nn.register_backend("cuda", K)
    cuda_info = info
    return true
end

-- "cpu", "cuda" or "cuda:N" (one GPU per process: the index selects nothing yet).
local function check_device(device, level)
    if type(device) ~= "string" then
        error(fmt("expected a device name (\"cpu\" or \"cuda\"), got %s", type(device)), level + 1)
    end
    local name = device:match("^(%a+)") or device
    if device ~= name and not device:match("^%a+:%d+$") then
        error(fmt("invalid device '%s' (expected \"cpu\", \"cuda\" or \"cuda:N\")", device),
            level + 1)
    end
    if not backends[name] then
        if name == "cuda" then
            local ok, why = load_cuda()
            if not ok then
                error(fmt("device 'cuda' is not available: %s; use \"cpu\"", why), level + 1)
            end
        else
            error(fmt("unknown device '%s' (expected \"cpu\" or \"cuda\")", device), level + 1)
        end
    end
    return name
end

function nn.is_available(device)
    if device == "cuda" then return (load_cuda()) end
    return backends[device] ~= nil
end

-- Whether tensors can go to "cuda"; false and why not when they cannot.
function nn.cuda_available()
    return load_cuda()
end

-- The GPU the cuda backend runs on ({name, device, count, compute_capability, total_memory}),
-- or nil and why there is none.
function nn.cuda_info()
    local ok, why = load_cuda()
    if not ok then return nil, why end
    if cuda_info == nil and backends.cuda.init then -- registered by someone else
        local _, info = backends.cuda.init()
        cuda_info = info
    end
    return cuda_info
end

-- The kernel table of a device ("cpu" or "cuda"), for code that moves data itself (Train's
-- gradient averaging): upload, download, copy_, ...
function nn.backend(device)
    return backends[check_device(device, 2)]
end

-- Waits for the kernels queued on a device ("cuda" by default): GPU kernels run behind the
-- Lua code that queued them, so a timing must end with this (or with reading a value).
function nn.synchronize(device)
    local K = backends[check_device(device or "cuda", 2)]
    if K.synchronize then K.synchronize() end
end

function nn.set_num_threads(n) C.set_num_threads(n) end
function nn.get_num_threads() return C.get_num_threads() end

-- ------------------------------------------------------------------ tensors

local Tensor = {}
Tensor.__index = Tensor
Tensor.__name = "luray.nn.Tensor"
nn.Tensor = Tensor

local grad_enabled = true

-- A tensor outside any graph. `other` marks a dtype other than float32 (labels, indices).
local function plain(data, device, other)
    return setmetatable({ data = data, requires_grad = false, device = device, grad = nil,
        _other = other }, Tensor)
end

-- A tensor made by an op that is recorded for backward.
local function node(data, device, bw, a, b, c, s1, s2)
    return setmetatable({ data = data, requires_grad = true, device = device, grad = nil,
        _bw = bw, _a = a, _b = b, _c = c, _s1 = s1, _s2 = s2 }, Tensor)
end

local function is_tensor(v) return getmetatable(v) == Tensor end
nn.is_tensor = is_tensor

local registry = debug.getregistry()
local function is_core_tensor(v)
    return type(v) == "userdata" and getmetatable(v) == registry["luray.Tensor"]
end

-- Whether v (a tensor or a number) takes part in autograd.
local function tracked(v)
    return type(v) == "table" and v.requires_grad
end

-- The float32 data of a tensor operand (a converted copy for other dtypes), or the number.
local function fdata(v)
    if type(v) ~= "table" then return v end
    if v._other then return backends[v.device].as_f32(v.data) end
    return v.data
end

-- The shape from (t) or (n1, n2, ...), and the options table that may follow.
local function shape_args(...)
    local first = ...
    if type(first) == "table" and not is_tensor(first) then return first, (select(2, ...)) end
    local shape, n = {}, select("#", ...)
    for i = 1, n do
        local v = select(i, ...)
        if type(v) == "table" then return shape, v end
        if mtype(v) ~= "integer" then
            if v == nil then break end
            error(fmt("shape: dimension %d is %s, expected an integer", i, tostring(v)), 3)
        end
        shape[i] = v
    end
    return shape, nil
end

local check_opts = require("luray._opts").check

local DTYPES = { float32 = true, float64 = true, int32 = true, int64 = true, uint8 = true,
    bool = true }

local function check_dtype(dtype, level)
    if dtype ~= nil and not DTYPES[dtype] then
        error(fmt("unknown dtype '%s' (expected float32, float64, int32, int64, uint8 or bool)",
            tostring(dtype)), level + 1)
    end
    return dtype
end

-- Wraps a core tensor; the float32 ones feed the kernels directly.
local function wrap(data, device, requires_grad)
    local t = plain(data, device or "cpu", data:dtype() ~= "float32" or nil)
    if requires_grad then
        if t._other then error("only float32 tensors can require gradients", 3) end
        t.requires_grad = true
    end
    return t
end

local TENSOR_OPTS = { dtype = true, requires_grad = true, device = true }

-- nn.tensor(value [, {dtype=, requires_grad=, device=}]): value is a nested table of numbers, a
-- number, a core tensor (float32 is shared, not copied; float64 becomes float32 unless dtype
-- says otherwise; integer tensors keep their dtype) or an nn tensor (copied).
function nn.tensor(value, opts)
    opts = check_opts(opts, TENSOR_OPTS, "nn.tensor")
    local dtype = check_dtype(opts.dtype, 2)
    local data
    if is_tensor(value) then
        value = value.device == "cpu" and value.data or backends[value.device].download(value.data)
        data = C.convert(value, dtype or value:dtype())
    elseif is_core_tensor(value) then
        local have = value:dtype()
        local want = dtype or (have == "float64" and "float32" or have)
        if want == "float32" then
            data = C.as_f32(value)
            -- a parameter must be writable: a read-only view of the object store is copied
            if opts.requires_grad and data:is_readonly() then data = data:clone() end
        elseif want == have then
            data = value
        else
            data = C.convert(value, want)
        end
    elseif type(value) == "table" or type(value) == "number" or type(value) == "boolean" then
        data = luray.tensor(value, { dtype = dtype or "float32" })
    else
        error(fmt("nn.tensor: expected a nested table of numbers, a number or a tensor, got %s",
            type(value)), 2)
    end
    local t = wrap(data, "cpu", opts.requires_grad)
    if opts.device and check_device(opts.device, 2) ~= "cpu" then return t:to(opts.device) end
    return t
end

-- Any operand as a tensor: nn tensors as they are, the rest through nn.tensor.
local function as_tensor(v, level)
    if is_tensor(v) then return v end
    if v == nil then error("expected a tensor, got nil", (level or 1) + 1) end
    return nn.tensor(v)
end

-- Filled on the device itself: nothing to copy over.
local function filled(value, where, ...)
    local shape, opts = shape_args(...)
    opts = check_opts(opts, TENSOR_OPTS, where)
    local dtype = check_dtype(opts.dtype, 3) or "float32"
    local device = opts.device and check_device(opts.device, 3) or "cpu"
    local K = backends[device]
    local data = K.full(shape, value)
    if dtype ~= "float32" then data = K.convert(data, dtype) end
    return wrap(data, device, opts.requires_grad)
end

function nn.zeros(...) return filled(0, "nn.zeros", ...) end
function nn.ones(...) return filled(1, "nn.ones", ...) end

function nn.full(shape, value, opts)
    if type(value) ~= "number" then error("nn.full(shape, value): value must be a number", 2) end
    return filled(value, "nn.full", shape, opts)
end

function nn.zeros_like(t, opts) return nn.zeros(as_tensor(t, 2):shape(), opts) end
function nn.ones_like(t, opts) return nn.ones(as_tensor(t, 2):shape(), opts) end

-- ------------------------------------------------------------------ random numbers

-- The default generator; torch also starts from a fixed seed, so runs repeat unless seeded.
local DEFAULT_SEED = 67280421310721
local default_gen = C.generator(DEFAULT_SEED)

function nn.manual_seed(seed)
    if mtype(seed) ~= "integer" then
        error("nn.manual_seed(seed): seed must be an integer", 2)
    end
    default_gen:seed(seed)
end

-- A generator of its own: nn.generator(seed); pass it as {generator=} to the random functions.
function nn.generator(seed)
    if mtype(seed) ~= "integer" then error("nn.generator(seed): seed must be an integer", 2) end
    return C.generator(seed)
end

function nn.default_generator() return default_gen end

local RANDOM_OPTS = { seed = true, generator = true, requires_grad = true, device = true,
    mean = true, std = true, low = true, high = true, dtype = true }

local function pick_generator(opts)
    if opts.seed ~= nil then
        if mtype(opts.seed) ~= "integer" then error("seed must be an integer", 4) end
        return C.generator(opts.seed)
    end
    return opts.generator or default_gen
end

local function random(where, fill, ...)
    local shape, opts = shape_args(...)
    opts = check_opts(opts, RANDOM_OPTS, where)
    if opts.dtype ~= nil and opts.dtype ~= "float32" then
        error(where .. ": random tensors are float32", 3)
    end
    local t = wrap(fill(pick_generator(opts), shape, opts), "cpu", opts.requires_grad)
    if opts.device and check_device(opts.device, 3) ~= "cpu" then return t:to(opts.device) end
    return t
end

-- nn.randn(shape [, {seed=, generator=, mean=0, std=1, requires_grad=}])
function nn.randn(...)
    return random("nn.randn", function(gen, shape, o)
        return C.randn(gen, shape, o.mean or 0, o.std or 1)
    end, ...)
end

-- nn.rand(shape [, {seed=, generator=, low=0, high=1, requires_grad=}]): uniform in [low, high).
function nn.rand(...)
    return random("nn.rand", function(gen, shape, o)
        return C.rand(gen, shape, o.low or 0, o.high or 1)
    end, ...)
end

-- nn.randperm(n [, {seed=, generator=}]): the positions 1..n in a random order (an int64 tensor).
function nn.randperm(n, opts)
    opts = check_opts(opts, RANDOM_OPTS, "nn.randperm")
    return wrap(C.randperm(pick_generator(opts), n), "cpu")
end

-- ------------------------------------------------------------------ grad mode

function nn.is_grad_enabled() return grad_enabled end

function nn.set_grad_enabled(on)
    local was = grad_enabled
    grad_enabled = not not on
    return was
end

-- Runs fn(...) with autograd off (nothing is recorded) and returns its results.
function nn.no_grad(fn, ...)
    local was = grad_enabled
    grad_enabled = false
    local res = table.pack(pcall(fn, ...))
    grad_enabled = was
    if not res[1] then error(res[2], 0) end
    return table.unpack(res, 2, res.n)
end

-- ------------------------------------------------------------------ ops: element-wise

-- The device two operands share (numbers go anywhere).
local function common_device(a, b, where)
    local da = type(a) == "table" and a.device
    local db = type(b) == "table" and b.device
    if da and db and da ~= db then
        error(fmt("%s: tensors are on different devices (%s and %s)", where, da, db), 3)
    end
    return da or db
end

local function operand(v)
    if type(v) == "number" or is_tensor(v) then return v end
    return as_tensor(v, 3)
end

local function bw_binary(t, g)
    local a, b, op = t._a, t._b, t._s1
    local K = backends[t.device]
    local ad, bd = fdata(a), fdata(b)
    local ga, gb
    if tracked(a) then
        if (op == "add" or op == "sub") and K.same_shape(g, ad) then
            ga = g
        else
            ga = K.binary_backward(op, 1, g, ad, bd, t.data)
        end
    end
    if tracked(b) then
        if op == "add" and K.same_shape(g, bd) then
            gb = g
        else
            gb = K.binary_backward(op, 2, g, ad, bd, t.data)
        end
    end
    return ga, gb
end

local function binary(op, a, b)
    a, b = operand(a), operand(b)
    local dev = common_device(a, b, op)
    local out = backends[dev][op](fdata(a), fdata(b))
    if grad_enabled and (tracked(a) or tracked(b)) then
        return node(out, dev, bw_binary, a, b, nil, op)
    end
    return plain(out, dev)
end

Tensor.__add = function(a, b) return binary("add", a, b) end
Tensor.__sub = function(a, b) return binary("sub", a, b) end
Tensor.__mul = function(a, b) return binary("mul", a, b) end
Tensor.__div = function(a, b) return binary("div", a, b) end
Tensor.__pow = function(a, b) return binary("pow", a, b) end

function Tensor:add(o) return binary("add", self, o) end
function Tensor:sub(o) return binary("sub", self, o) end
function Tensor:mul(o) return binary("mul", self, o) end
function Tensor:div(o) return binary("div", self, o) end
function Tensor:pow(o) return binary("pow", self, o) end

-- Comparisons give float32 1/0 tensors, outside autograd.
for _, op in ipairs({ "eq", "ne", "lt", "le", "gt", "ge" }) do
    Tensor[op] = function(a, b)
        a, b = operand(a), operand(b)
        local dev = common_device(a, b, op)
        return plain(backends[dev][op](fdata(a), fdata(b)), dev)
    end
end

local function bw_unary(t, g, owned)
    return backends[t.device].unary_backward(t._s1, g, fdata(t._a), t.data, owned and g or nil)
end

local function unary(op, a)
    a = as_tensor(a, 3)
    local out = backends[a.device][op](fdata(a))
    if grad_enabled and a.requires_grad then
        return node(out, a.device, bw_unary, a, nil, nil, op)
    end
    return plain(out, a.device)
end

Tensor.__unm = function(a) return unary("neg", a) end
for _, op in ipairs({ "neg", "exp", "log", "relu", "sigmoid", "tanh" }) do
    Tensor[op] = function(a) return unary(op, a) end
    nn[op] = Tensor[op]
end

-- ------------------------------------------------------------------ ops: shapes

local function bw_view(t, g, owned)
    local shape = t._s1
    if not owned then g = g:clone() end
    return g:view(shape)
end

-- t:reshape(shape) / t:view(shape): the same elements in another shape (one dimension may be
-- -1), sharing memory.
function Tensor:reshape(...)
    local shape = shape_args(...)
    local ok, data = pcall(self.data.view, self.data, shape)
    if not ok then
        error(fmt("reshape: cannot view a tensor of shape {%s} as {%s}",
            table.concat(self:shape(), ", "), table.concat(shape, ", ")), 2)
    end
    if grad_enabled and self.requires_grad then
        return node(data, self.device, bw_view, self, nil, nil, self.data:shape())
    end
    return plain(data, self.device, self._other)
end
Tensor.view = Tensor.reshape

local function bw_transpose(t, g)
    return backends[t.device].transpose(g)
end

-- t:t(): the transpose of a 2-D tensor (a copy).
function Tensor:t()
    local out = backends[self.device].transpose(fdata(self))
    if grad_enabled and self.requires_grad then
        return node(out, self.device, bw_transpose, self)
    end
    return plain(out, self.device)
end

local function bw_narrow(t, g)
    local K = backends[t.device]
    local dst = K.full(t._a.data:shape(), 0)
    K.copy_(K.narrow(dst, t._s1, t._s2), g)
    return dst
end

-- t:narrow(first, count): rows first .. first+count-1 (1-based) as a view of t.
function Tensor:narrow(first, count)
    local data = backends[self.device].narrow(self.data, first, count)
    if grad_enabled and self.requires_grad then
        return node(data, self.device, bw_narrow, self, nil, nil, first, count)
    end
    return plain(data, self.device, self._other)
end

local function bw_index(t, g)
    local K = backends[t.device]
    return K.index_add_rows(K.full(t._a.data:shape(), 0), t._s1, g)
end

-- t:index(positions): a new tensor of the rows at the 1-based positions (a list or an integer
-- tensor).
function Tensor:index(positions)
    if is_tensor(positions) then positions = positions.data end
    local data = backends[self.device].gather_rows(self.data, positions)
    if grad_enabled and self.requires_grad then
        return node(data, self.device, bw_index, self, nil, nil, positions)
    end
    return plain(data, self.device, self._other)
end

local function bw_identity(_, g) return g end

function Tensor:clone()
    local data = self.data:clone()
    if grad_enabled and self.requires_grad then
        return node(data, self.device, bw_identity, self)
    end
    return plain(data, self.device, self._other)
end

function Tensor:detach()
    return plain(self.data, self.device, self._other)
end

-- t:requires_grad_([flag]): makes a leaf tensor a parameter (or not); returns t.
function Tensor:requires_grad_(flag)
    if flag == nil then flag = true end
    if self._bw then
        error("requires_grad_: only leaf tensors (not results of ops) can change", 2)
    end
    if flag and self._other then error("only float32 tensors can require gradients", 2) end
    self.requires_grad = not not flag
    return self
end

-- ------------------------------------------------------------------ ops: matrices

-- The accumulation target for a leaf's gradient: its existing .grad, which a kernel adds into
-- (beta 1) instead of making a new tensor to add afterwards.
local function acc_target(x, K)
    local g = x.grad
    if x._bw == nil and g ~= nil and K.same_shape(g.data, x.data) then return g.data, 1 end
    return nil, nil
end

local function bw_matmul(t, g)
    local a, b = t._a, t._b
    local K = backends[t.device]
    local ga, gb
    if tracked(a) then
        local out, beta = acc_target(a, K)
        ga = K.matmul(g, fdata(b), false, true, out, beta)
    end
    if tracked(b) then
        local out, beta = acc_target(b, K)
        gb = K.matmul(fdata(a), g, true, false, out, beta)
    end
    return ga, gb
end

local function matmul2(a, b)
    local dev = common_device(a, b, "matmul")
    local out = backends[dev].matmul(fdata(a), fdata(b))
    if grad_enabled and (a.requires_grad or b.requires_grad) then
        return node(out, dev, bw_matmul, a, b)
    end
    return plain(out, dev)
end

-- a:matmul(b): a is 1-D or N-D (its leading dimensions are batch rows), b is 1-D or 2-D.
function Tensor:matmul(other)
    other = as_tensor(other, 2)
    local an, bn = self:dim(), other:dim()
    if an == 0 or bn == 0 then error("matmul: both operands need at least one dimension", 2) end
    if bn > 2 then
        error("matmul: the second operand must be 1-D or 2-D (batched products are not "
            .. "supported)", 2)
    end
    if an == 2 and bn == 2 then return matmul2(self, other) end
    local ashape = self:shape()
    local a2 = an == 1 and self:reshape({ 1, ashape[1] }) or self:reshape({ -1, ashape[an] })
    local b2 = bn == 1 and other:reshape({ -1, 1 }) or other
    local out = {}
    for i = 1, an - 1 do out[i] = ashape[i] end
    if bn == 2 then out[#out + 1] = other:size(2) end
    return matmul2(a2, b2):reshape(out)
end
nn.matmul = function(a, b) return as_tensor(a, 2):matmul(b) end

local function bw_linear(t, g, owned)
    local x, w, bias, act = t._a, t._b, t._c, t._s1
    local K = backends[t.device]
    local gm = g
    if act then gm = K.unary_backward(act, g, nil, t.data, owned and g or nil) end
    local gx, gw, gb
    if x.requires_grad then gx = K.matmul(gm, w.data) end
    if w.requires_grad then
        local out, beta = acc_target(w, K)
        gw = K.matmul(gm, fdata(x), true, false, out, beta)
    end
    if bias and bias.requires_grad then
        local out, beta = acc_target(bias, K)
        gb = K.sum_rows(gm, out, beta)
    end
    if not rawequal(gm, g) then nn._release(gm, K) end
    return gx, gw, gb
end

-- x (rows x in) times w^T (w is out x in) plus bias, then the activation: one kernel call.
local function linear2(x, w, bias, act)
    local dev = common_device(x, w, "linear")
    local out = backends[dev].linear(fdata(x), w.data, bias and bias.data, act)
    if grad_enabled and (x.requires_grad or w.requires_grad or (bias and bias.requires_grad)) then
        return node(out, dev, bw_linear, x, w, bias, act)
    end
    return plain(out, dev)
end

-- nn.linear(x, weight [, bias, activation]): x of shape {..., in}; activation "relu",
-- "sigmoid" or "tanh" is fused into the same pass.
function nn.linear(x, w, bias, act)
    x = as_tensor(x, 2)
    local nd = x:dim()
    if nd == 2 then return linear2(x, w, bias, act) end
    if nd == 0 then error("linear: input needs at least one dimension", 2) end
    local shape = x:shape()
    local x2 = nd == 1 and x:reshape({ 1, shape[1] }) or x:reshape({ -1, shape[nd] })
    shape[nd] = w:size(1)
    return linear2(x2, w, bias, act):reshape(shape)
end

-- ------------------------------------------------------------------ ops: reductions

local function norm_dim(t, dim, where)
    if dim == nil then return nil end
    if mtype(dim) ~= "integer" then error(where .. ": dimension must be an integer", 3) end
    local n = t:dim()
    local d = dim < 0 and dim + n + 1 or dim
    if d < 1 or d > n then
        error(fmt("%s: dimension %d out of range for a %d-dimensional tensor", where, dim, n), 3)
    end
    return d
end

local function bw_sum(t, g)
    return backends[t.device].sum_backward(g, fdata(t._a), t._s1, t._s2)
end

local function reduce_sum(a, dim, keepdim, mean, where)
    dim = norm_dim(a, dim, where)
    local out = backends[a.device].sum(fdata(a), dim, keepdim, mean)
    if grad_enabled and a.requires_grad then
        return node(out, a.device, bw_sum, a, nil, nil, dim, mean)
    end
    return plain(out, a.device)
end

-- t:sum([dim, keepdim]) / t:mean([dim, keepdim]): over everything (a 0-d tensor) or along dim.
function Tensor:sum(dim, keepdim) return reduce_sum(self, dim, keepdim, false, "sum") end
function Tensor:mean(dim, keepdim) return reduce_sum(self, dim, keepdim, true, "mean") end

local function bw_max(t, g)
    return backends[t.device].max_backward(g, t._s2, fdata(t._a), t._s1)
end

-- t:max([dim, keepdim]): the largest values (the gradient goes to the first of equal maxima).
function Tensor:max(dim, keepdim)
    dim = norm_dim(self, dim, "max")
    local out, arg = backends[self.device].max(fdata(self), dim, keepdim)
    if grad_enabled and self.requires_grad then
        return node(out, self.device, bw_max, self, nil, nil, dim, arg)
    end
    return plain(out, self.device)
end

-- t:argmax([dim, keepdim]): positions of the largest values as class ids counted from 0 (an
-- int64 tensor), the way cross_entropy takes labels.
function Tensor:argmax(dim, keepdim)
    dim = norm_dim(self, dim, "argmax")
    return plain(backends[self.device].argmax(fdata(self), dim, keepdim), self.device, true)
end

local function last_dim(t, dim, where)
    local n = t:dim()
    if n == 0 then error(where .. ": needs a tensor of at least one dimension", 3) end
    if dim ~= nil and dim ~= -1 and dim ~= n then
        error(fmt("%s: only the last dimension (-1 or %d) is supported, got %s", where, n,
            tostring(dim)), 3)
    end
end

local function bw_softmax(t, g)
    return backends[t.device].softmax_backward(g, t.data, t._s1)
end

local function softmax(a, dim, log, where)
    a = as_tensor(a, 3)
    last_dim(a, dim, where)
    local out = backends[a.device].softmax(fdata(a), log)
    if grad_enabled and a.requires_grad then
        return node(out, a.device, bw_softmax, a, nil, nil, log)
    end
    return plain(out, a.device)
end

function Tensor:softmax(dim) return softmax(self, dim, false, "softmax") end
function Tensor:log_softmax(dim) return softmax(self, dim, true, "log_softmax") end
function nn.softmax(x, dim) return softmax(x, dim, false, "softmax") end
function nn.log_softmax(x, dim) return softmax(x, dim, true, "log_softmax") end

-- ------------------------------------------------------------------ reading tensors

function Tensor:shape() return self.data:shape() end
function Tensor:dim() return self.data:ndim() end
Tensor.ndim = Tensor.dim
function Tensor:numel() return self.data:numel() end
function Tensor:dtype() return self.data:dtype() end
function Tensor:totable() return self.data:totable() end
function Tensor:get(...) return self.data:get(...) end
function Tensor:item() return backends[self.device].item(self.data) end

-- t:size([dim]): the whole shape, or one dimension (negative counts from the end).
function Tensor:size(dim)
    local shape = self.data:shape()
    if dim == nil then return shape end
    local d = norm_dim(self, dim, "size")
    return shape[d]
end

-- t:set(i, ..., value): writes one element; only outside autograd (a tensor that does not
-- require grad, or inside nn.no_grad).
function Tensor:set(...)
    if self.requires_grad and grad_enabled then
        error("set: cannot write into a tensor that requires grad (use nn.no_grad)", 2)
    end
    self.data:set(...)
    return self
end

Tensor.__len = function(t) return #t.data end

local PRINT_MAX = 64

local function format_values(v)
    if type(v) ~= "table" then
        if mtype(v) == "float" then
            local text = fmt("%.4g", v)
            return text:find("[%.eni]") and text or text .. ".0" -- 2.0 reads as a float
        end
        return tostring(v)
    end
    local parts = {}
    for i = 1, #v do parts[i] = format_values(v[i]) end
    return "{" .. table.concat(parts, ", ") .. "}"
end

Tensor.__tostring = function(t)
    local extra = t.requires_grad and ", requires_grad=true" or ""
    if t.device ~= "cpu" then extra = extra .. ", device=" .. t.device end
    if t.data:numel() <= PRINT_MAX then
        local dtype = t.data:dtype()
        local values = t.device == "cpu" and t.data or backends[t.device].download(t.data)
        return fmt("tensor(%s%s%s)", format_values(values:totable()),
            dtype ~= "float32" and (", dtype=" .. dtype) or "", extra)
    end
    return fmt("tensor(%s, {%s}%s)", t.data:dtype(), table.concat(t.data:shape(), ", "), extra)
end

-- ------------------------------------------------------------------ devices and dtypes

local function bw_to(t, g)
    local from, to = t._s1, t.device
    local host = to == "cpu" and g or backends[to].download(g)
    return from == "cpu" and host or backends[from].upload(host)
end

-- t:to(device_or_dtype): the tensor on another device ("cpu", "cuda") or converted to another
-- dtype; t itself when nothing changes.
function Tensor:to(target)
    if DTYPES[target] then
        if self.data:dtype() == target then return self end
        local data = backends[self.device].convert(self.data, target)
        if target == "float32" and grad_enabled and self.requires_grad then
            return node(data, self.device, bw_identity, self)
        end
        return plain(data, self.device, target ~= "float32" or nil)
    end
    local device = check_device(target, 2)
    if device == self.device then return self end
    local host = self.device == "cpu" and self.data or backends[self.device].download(self.data)
    local data = device == "cpu" and host or backends[device].upload(host)
    if grad_enabled and self.requires_grad then
        return node(data, device, bw_to, self, nil, nil, self.device)
    end
    return plain(data, device, self._other)
end

function Tensor:cpu() return self:to("cpu") end
function Tensor:cuda() return self:to("cuda") end
function Tensor:float() return self:to("float32") end

-- ------------------------------------------------------------------ autograd

-- Closes a private tensor now, instead of leaving its memory to the collector: a core tensor,
-- or a device tensor through its backend's release (K, when it is known).
local close_core = getmetatable(C.full({ 0 }, 0)).__close
function nn._release(data, K)
    if is_core_tensor(data) then
        close_core(data)
    elseif K and K.release then
        K.release(data)
    end
end
local release = nn._release

local function bw_freed()
    error("backward through a graph a second time: its saved tensors were freed by the first "
        .. "backward (pass {retain_graph=true} to the first one)", 0)
end

-- The tensors that lead to root and need gradients, parents before children.
local function topo_order(root)
    local order, state, stack = {}, {}, { root }
    local n = 1
    while n > 0 do
        local t = stack[n]
        local s = state[t]
        if s == nil then
            state[t] = 1
            local a, b, c = t._a, t._b, t._c
            if tracked(a) and state[a] == nil then n = n + 1; stack[n] = a end
            if tracked(b) and state[b] == nil then n = n + 1; stack[n] = b end
            if tracked(c) and state[c] == nil then n = n + 1; stack[n] = c end
        else
            stack[n] = nil
            n = n - 1
            if s == 1 then
                state[t] = 2
                order[#order + 1] = t
            end
        end
    end
    return order
end

-- Adds r, the gradient one backward function produced for tensor p, where it belongs: into a
-- leaf's .grad, or into the pending gradient of an inner node. own says whether r is private
-- (free to change in place, and to close once used). r is on p's device.
local function deliver(grads, owns, p, r, own)
    local K = backends[p.device]
    if p._bw == nil then -- a leaf
        local g = p.grad
        if g == nil then
            p.grad = plain(own and r or r:clone(), p.device)
        elseif not rawequal(g.data, r) then -- (a kernel may have accumulated into it already)
            K.axpy_(g.data, r)
            if own then release(r, K) end
        end
        return
    end
    local e = grads[p]
    if e == nil then
        grads[p], owns[p] = r, own
    elseif owns[p] then
        K.axpy_(e, r)
        if own and not rawequal(e, r) then release(r, K) end
    else
        grads[p], owns[p] = K.add(e, r), true
        if own then release(r, K) end
    end
end

-- t:backward([grad, {retain_graph=false}]): accumulates d(t)/d(leaf) into every leaf's .grad;
-- grad defaults to 1 for a one-element t.
function Tensor:backward(grad, opts)
    opts = check_opts(opts, { retain_graph = true }, "backward")
    if not self.requires_grad then
        error("backward: the tensor does not require grad (no parameter or requires_grad "
            .. "tensor led to it, or it was made under nn.no_grad)", 2)
    end
    local K = backends[self.device]
    local seed, seed_own
    if grad == nil then
        if self.data:numel() ~= 1 then
            error("backward: a gradient is implied only for a one-element tensor (a loss); "
                .. "pass one of the tensor's shape", 2)
        end
        seed, seed_own = K.full(self.data:shape(), 1), true
    else
        grad = as_tensor(grad, 2)
        if grad.device ~= self.device then
            error(fmt("backward: the gradient is on %s, the tensor on %s", grad.device,
                self.device), 2)
        end
        if not K.same_shape(grad.data, self.data) then
            error("backward: the gradient's shape differs from the tensor's", 2)
        end
        seed, seed_own = fdata(grad), false
    end
    local order = topo_order(self)
    local grads, owns = { [self] = seed }, { [self] = seed_own }
    if self._bw == nil then -- backward of a leaf: its gradient is the seed
        deliver(grads, owns, self, seed, seed_own)
        return
    end
    for i = #order, 1, -1 do
        local t = order[i]
        local g = grads[t]
        if g ~= nil and t._bw ~= nil then
            grads[t] = nil
            local own = owns[t]
            local ra, rb, rc = t._bw(t, g, own)
            local a, b, c = t._a, t._b, t._c
            ra = tracked(a) and ra or nil
            rb = tracked(b) and rb or nil
            rc = tracked(c) and rc or nil
            -- A returned g is passed on, not copied: its only taker owns it if t did; when
            -- several take it, none may change it, and the collector frees it.
            local aliases = (rawequal(ra, g) and 1 or 0) + (rawequal(rb, g) and 1 or 0)
                + (rawequal(rc, g) and 1 or 0)
            local pass = own and aliases == 1
            if ra ~= nil then deliver(grads, owns, a, ra, not rawequal(ra, g) or pass) end
            if rb ~= nil then deliver(grads, owns, b, rb, not rawequal(rb, g) or pass) end
            if rc ~= nil then deliver(grads, owns, c, rc, not rawequal(rc, g) or pass) end
            if own and aliases == 0 then release(g, backends[t.device]) end
        end
    end
    if not opts.retain_graph then
        for i = 1, #order do
            local t = order[i]
            if t._bw ~= nil then
                t._bw, t._a, t._b, t._c, t._s1, t._s2 = bw_freed, nil, nil, nil, nil, nil
            end
        end
    end
end

-- ------------------------------------------------------------------ losses

local LOSS_OPTS = { reduction = true }

local function reduction_of(opts, where)
    opts = check_opts(opts, LOSS_OPTS, where)
    local r = opts.reduction or "mean"
    if r ~= "mean" and r ~= "sum" then
        error(fmt("%s: reduction must be \"mean\" or \"sum\", got %s", where, tostring(r)), 3)
    end
    return r
end

local bw_cross_entropy = {}
for _, reduction in ipairs({ "mean", "sum" }) do
    bw_cross_entropy[reduction] = function(t, g)
        return backends[t.device].cross_entropy_backward(g, t._s1, t._s2, reduction)
    end
end

-- nn.cross_entropy(logits, labels [, {reduction="mean"}]): logits {n, classes} (or {classes}),
-- labels n class ids counted from 0 (a tensor of any number type, or a list).
function nn.cross_entropy(logits, labels, opts)
    local reduction = reduction_of(opts, "cross_entropy")
    logits = as_tensor(logits, 2)
    if is_tensor(labels) then labels = labels.data end
    if type(labels) == "table" then labels = luray.tensor(labels, { dtype = "int64" }) end
    local K = backends[logits.device]
    local loss, probs, ids = K.cross_entropy(fdata(logits), labels, reduction)
    if grad_enabled and logits.requires_grad then
        return node(loss, logits.device, bw_cross_entropy[reduction], logits, nil, nil, probs, ids)
    end
    return plain(loss, logits.device)
end

-- The target of an element-wise loss: float32 data on the prediction's device.
local function target_of(pred, target, where)
    if type(target) == "number" then
        return nn.full(pred:shape(), target, { device = pred.device })
    end
    target = as_tensor(target, 3)
    if target.device ~= pred.device then
        error(fmt("%s: prediction and target are on different devices (%s and %s)", where,
            pred.device, target.device), 3)
    end
    return target
end

local function pair_loss(name)
    local back = name .. "_backward"
    local function bw(t, g)
        return backends[t.device][back](g, fdata(t._a), fdata(t._s1), t._s2)
    end
    return function(pred, target, opts)
        local reduction = reduction_of(opts, name)
        pred = as_tensor(pred, 2)
        target = target_of(pred, target, name)
        if grad_enabled and target.requires_grad then
            if name ~= "mse" then
                error(name .. ": the target cannot require grad (detach it)", 2)
            end
            local d = pred - target
            local sq = d * d
            return reduction == "mean" and sq:mean() or sq:sum()
        end
        local loss = backends[pred.device][name](fdata(pred), fdata(target), reduction)
        if grad_enabled and pred.requires_grad then
            return node(loss, pred.device, bw, pred, nil, nil, target, reduction)
        end
        return plain(loss, pred.device)
    end
end

-- nn.mse(pred, target), nn.bce(probabilities, target), nn.bce_with_logits(logits, target): the
-- same shape (size-1 dimensions aside); {reduction="mean"|"sum"}.
nn.mse = pair_loss("mse")
nn.bce = pair_loss("bce")
nn.bce_with_logits = pair_loss("bce_with_logits")

nn.losses = {
    mse = nn.mse,
    cross_entropy = nn.cross_entropy,
    bce = nn.bce,
    bce_with_logits = nn.bce_with_logits,
}

-- nn.accuracy(logits, labels): the fraction of rows whose largest logit is the label.
function nn.accuracy(logits, labels)
    logits = as_tensor(logits, 2)
    local pred = logits:dim() == 1 and logits:argmax() or logits:argmax(2)
    if is_tensor(labels) then labels = labels.data end
    if type(labels) == "table" then labels = luray.tensor(labels, { dtype = "int64" }) end
    local K = backends[logits.device]
    if K ~= C and is_core_tensor(labels) then labels = K.upload(labels) end
    local eq = K.eq(K.convert(pred.data, "float32"), K.convert(labels, "float32"))
    return K.item(K.sum(eq, nil, false, true))
end

-- ------------------------------------------------------------------ modules

local Module = {}
nn.Module = Module

-- Fields assigned to a module are remembered in order, so that parameters come out in the order
-- they were created ("0.weight" before "0.bias", as in torch).
local function record_field(self, k, v)
    rawset(self, k, v)
    if type(k) == "string" then
        local keys = rawget(self, "_keys")
        keys[#keys + 1] = k
    end
end

local function is_module(v)
    local mt = getmetatable(v)
    return type(mt) == "table" and rawget(mt, "_is_module_class") == true
end
nn.is_module = is_module

local function instantiate(cls, ...)
    local self = setmetatable({ _keys = {}, training = true }, cls)
    cls.init(self, ...)
    return self
end

-- A module class: instances are made by calling it (Class(...) runs Class.init).
local function class(name, parent)
    local cls = {}
    cls.__index = cls
    cls.__name = "nn." .. name
    cls.__newindex = record_field
    cls.__call = function(self, ...) return self:forward(...) end
    cls.__tostring = function(self) return self:repr() end
    cls._is_module_class = true
    cls._class_name = name
    return setmetatable(cls, { __index = parent, __call = instantiate })
end

-- nn.Module:extend(name): a new module class; define :init(...) and :forward(x) on it.
function Module.extend(parent, name)
    if type(name) ~= "string" then error("extend(name): expected a class name", 2) end
    return class(name, parent)
end

function Module:init() end

function Module:forward()
    error(fmt("%s has no forward method", self._class_name), 2)
end

-- The direct sub-modules, as a list of {name, module}, in the order they were assigned.
function Module:children()
    local out, seen = {}, {}
    for _, k in ipairs(self._keys) do
        local v = rawget(self, k)
        if not seen[k] and is_module(v) then out[#out + 1] = { k, v } end
        seen[k] = true
    end
    return out
end

-- The parameters as a list of {name, tensor}: the module's own (leaf tensors that require
-- grad), then each child's, prefixed with its name.
function Module:named_parameters(prefix, out, seen)
    prefix, out, seen = prefix or "", out or {}, seen or {}
    local fields = {}
    for _, k in ipairs(self._keys) do
        local v = rawget(self, k)
        if not fields[k] and is_tensor(v) and v.requires_grad and v._bw == nil and not seen[v] then
            seen[v] = true
            out[#out + 1] = { prefix .. k, v }
        end
        fields[k] = true
    end
    for _, child in ipairs(self:children()) do
        child[2]:named_parameters(prefix .. child[1] .. ".", out, seen)
    end
    return out
end

function Module:parameters()
    local out = {}
    for i, np in ipairs(self:named_parameters()) do out[i] = np[2] end
    return out
end

function Module:num_parameters()
    local n = 0
    for _, p in ipairs(self:parameters()) do n = n + p:numel() end
    return n
end

-- name -> core tensor of every parameter (sharing memory with the model); the order is
-- model:named_parameters()'s.
function Module:state_dict()
    local sd = {}
    for _, np in ipairs(self:named_parameters()) do
        local p = np[2]
        sd[np[1]] = p.device == "cpu" and p.data or backends[p.device].download(p.data)
    end
    return sd
end

-- Copies the tensors of sd (name -> core or nn tensor) into the parameters; every parameter
-- must be there with its shape, and (strict, the default) nothing else.
function Module:load_state_dict(sd, opts)
    opts = check_opts(opts, { strict = true }, "load_state_dict")
    if type(sd) ~= "table" then error("load_state_dict: expected a table of name -> tensor", 2) end
    local strict = opts.strict ~= false
    local known, missing = {}, {}
    for _, np in ipairs(self:named_parameters()) do
        local name, p = np[1], np[2]
        known[name] = true
        local v = sd[name]
        if v == nil then
            missing[#missing + 1] = name
        else
            if is_tensor(v) then
                v = v.device == "cpu" and v.data or backends[v.device].download(v.data)
            end
            if not is_core_tensor(v) then
                error(fmt("load_state_dict: '%s' is a %s, expected a tensor", name, type(v)), 2)
            end
            local K = backends[p.device]
            if not K.same_shape(v, p.data) then
                error(fmt("load_state_dict: '%s' has shape {%s}, the model's is {%s}", name,
                    table.concat(v:shape(), ", "), table.concat(p:shape(), ", ")), 2)
            end
            K.copy_(p.data, v) -- converting the dtype, and across to the device if need be
        end
    end
    if strict and #missing > 0 then
        error("load_state_dict: missing " .. table.concat(missing, ", "), 2)
    end
    if strict then
        local extra = {}
        for k in pairs(sd) do
            if not known[k] then extra[#extra + 1] = tostring(k) end
        end
        table.sort(extra)
        if #extra > 0 then error("load_state_dict: unexpected " .. table.concat(extra, ", "), 2) end
    end
    return self
end

-- Zeroes every parameter's gradient in place (the buffers stay, so the next backward adds
-- into them without allocating).
function Module:zero_grad()
    for _, p in ipairs(self:parameters()) do
        if p.grad then backends[p.grad.device].fill_(p.grad.data, 0) end
    end
end

function Module:train(mode)
    if mode == nil then mode = true end
    self.training = not not mode
    for _, child in ipairs(self:children()) do child[2]:train(mode) end
    return self
end

function Module:eval() return self:train(false) end

-- Moves the parameters to a device in place (the tensor objects stay, so optimizers made
-- before keep working).
function Module:to(device)
    device = check_device(device, 2)
    for _, p in ipairs(self:parameters()) do
        if p.device ~= device then
            local host = p.device == "cpu" and p.data or backends[p.device].download(p.data)
            p.data = device == "cpu" and host or backends[device].upload(host)
            p.device = device
            p.grad = nil
        end
    end
    return self
end

function Module:extra_repr() return "" end

function Module:repr()
    local children = self:children()
    local head = self._class_name .. "(" .. self:extra_repr()
    if #children == 0 then return head .. ")" end
    local lines = { head }
    for _, child in ipairs(children) do
        local text = child[2]:repr():gsub("\n", "\n  ")
        lines[#lines + 1] = "  (" .. child[1] .. "): " .. text
    end
    lines[#lines + 1] = ")"
    return table.concat(lines, "\n")
end

-- ------------------------------------------------------------------ layers

local function check_count(v, what, where)
    if mtype(v) ~= "integer" or v < 1 then
        error(fmt("%s: %s must be a positive integer, got %s", where, what, tostring(v)), 4)
    end
end

-- nn.Linear(in_features, out_features [, {bias=true, seed=, generator=}]): y = x W^T + b, with
-- W {out, in} and b {out} drawn uniform in +-1/sqrt(in) as torch's default (Kaiming) init.
local Linear = class("Linear", Module)
nn.Linear = Linear

function Linear:init(nin, nout, opts)
    check_count(nin, "in_features", "nn.Linear")
    check_count(nout, "out_features", "nn.Linear")
    opts = check_opts(opts, { bias = true, seed = true, generator = true }, "nn.Linear")
    local gen = pick_generator(opts)
    local bound = 1 / math.sqrt(nin)
    self.in_features, self.out_features = nin, nout
    self.weight = wrap(C.rand(gen, { nout, nin }, -bound, bound), "cpu", true)
    if opts.bias ~= false then
        self.bias = wrap(C.rand(gen, { nout }, -bound, bound), "cpu", true)
    end
end

function Linear:forward(x) return nn.linear(x, self.weight, self.bias) end

function Linear:extra_repr()
    return fmt("in_features=%d, out_features=%d, bias=%s", self.in_features, self.out_features,
        tostring(self.bias ~= nil))
end

local function activation(name, op)
    local cls = class(name, Module)
    cls.forward = function(_, x) return unary(op, x) end
    cls._fused_act = op
    nn[name] = cls
    return cls
end

activation("ReLU", "relu")
activation("Sigmoid", "sigmoid")
activation("Tanh", "tanh")

-- nn.Dropout(p = 0.5 [, {seed=, generator=}]): in training, zeroes each element with
-- probability p and scales the rest by 1 / (1 - p); in eval, passes x through.
local Dropout = class("Dropout", Module)
nn.Dropout = Dropout

function Dropout:init(p, opts)
    p = p or 0.5
    if type(p) ~= "number" or p < 0 or p > 1 then
        error("nn.Dropout: p must be a probability in [0, 1]", 3)
    end
    opts = check_opts(opts, { seed = true, generator = true }, "nn.Dropout")
    self.p = p
    rawset(self, "_gen", (opts.seed or opts.generator) and pick_generator(opts) or nil)
end

function Dropout:forward(x)
    x = as_tensor(x, 2)
    if not self.training or self.p == 0 then return x end
    local mask = C.dropout_mask(self._gen or default_gen, x.data:shape(), self.p)
    if x.device ~= "cpu" then mask = backends[x.device].upload(mask) end
    return x * plain(mask, x.device)
end

function Dropout:extra_repr() return fmt("p=%g", self.p) end

function nn.dropout(x, p, training)
    x = as_tensor(x, 2)
    if training == false or p == 0 then return x end
    local mask = C.dropout_mask(default_gen, x.data:shape(), p or 0.5)
    if x.device ~= "cpu" then mask = backends[x.device].upload(mask) end
    return x * plain(mask, x.device)
end

-- nn.Softmax(dim = -1) / nn.LogSoftmax(dim = -1): along the last dimension.
local Softmax = class("Softmax", Module)
nn.Softmax = Softmax
function Softmax:init(dim) self.dim = dim end
function Softmax:forward(x) return softmax(x, self.dim, false, "Softmax") end

local LogSoftmax = class("LogSoftmax", Module)
nn.LogSoftmax = LogSoftmax
function LogSoftmax:init(dim) self.dim = dim end
function LogSoftmax:forward(x) return softmax(x, self.dim, true, "LogSoftmax") end

-- nn.Sequential{m1, m2, ...}, nn.Sequential(m1, m2, ...) or Torch7's
-- nn.Sequential():add(m1):add(m2). Children are named "0", "1", ... as in torch; a Linear
-- followed by ReLU, Sigmoid or Tanh runs as one fused kernel.
local Sequential = class("Sequential", Module)
nn.Sequential = Sequential

function Sequential:init(...)
    self.modules = {}
    local list = ...
    if select("#", ...) == 1 and type(list) == "table" and not is_module(list) then
        for i = 1, #list do self:add(list[i]) end
    else
        for i = 1, select("#", ...) do self:add((select(i, ...))) end
    end
end

function Sequential:add(m)
    if not is_module(m) then
        error(fmt("Sequential:add: expected a module (nn.Linear, nn.ReLU, ...), got %s",
            type(m) == "table" and "a table" or type(m)), 2)
    end
    self.modules[#self.modules + 1] = m
    return self
end

function Sequential:get(i) return self.modules[i] end
function Sequential:size() return #self.modules end
Sequential.__len = function(self) return #self.modules end

function Sequential:children()
    local out = {}
    for i, m in ipairs(self.modules) do out[i] = { tostring(i - 1), m } end
    return out
end

function Sequential:forward(x)
    local mods = self.modules
    local i, n = 1, #mods
    while i <= n do
        local m = mods[i]
        local nxt = mods[i + 1]
        local act = nxt and getmetatable(nxt)._fused_act
        if act and getmetatable(m) == Linear then
            x = nn.linear(x, m.weight, m.bias, act)
            i = i + 2
        else
            x = m:forward(x)
            i = i + 1
        end
    end
    return x
end

-- Loss modules, for torch-style code: nn.CrossEntropyLoss()(logits, labels).
local function loss_module(name, fn)
    local cls = class(name, Module)
    cls.init = function(self, opts) self.opts = opts end
    cls.forward = function(self, a, b) return fn(a, b, self.opts) end
    nn[name] = cls
end

loss_module("MSELoss", nn.mse)
loss_module("CrossEntropyLoss", nn.cross_entropy)
loss_module("BCELoss", nn.bce)
loss_module("BCEWithLogitsLoss", nn.bce_with_logits)

-- nn.Parameter(t): t as a leaf that requires grad (a copy when t came out of an op).
function nn.Parameter(t)
    t = as_tensor(t, 2)
    if t._bw ~= nil then t = t:detach():clone() end
    return t:requires_grad_(true)
end

-- ------------------------------------------------------------------ optimizers

local optim = {}
nn.optim = optim

-- The parameter list of an optimizer: a model, or a list of tensors that require grad.
local function check_params(params, where)
    if is_module(params) then params = params:parameters() end
    if type(params) ~= "table" then
        error(where .. ": expected a list of parameters or a model", 3)
    end
    local out = {}
    for i, p in ipairs(params) do
        if not is_tensor(p) or not p.requires_grad or p._bw ~= nil then
            error(fmt("%s: parameter %d is not a leaf tensor that requires grad", where, i), 3)
        end
        out[i] = p
    end
    if #out == 0 then error(where .. ": no parameters to optimize", 3) end
    return out
end

local function check_number(v, default, what, where, lo)
    if v == nil then return default end
    if type(v) ~= "number" or v < (lo or 0) then
        error(fmt("%s: %s must be a number >= %g, got %s", where, what, lo or 0, tostring(v)), 4)
    end
    return v
end

local Optimizer = {}
Optimizer.__index = Optimizer

-- The parameters, in order: a trainer averages their .grad across workers before :step().
function Optimizer:parameters() return self.params end

-- Zeroes the gradients in place (see Module:zero_grad).
function Optimizer:zero_grad()
    for _, p in ipairs(self.params) do
        if p.grad then backends[p.grad.device].fill_(p.grad.data, 0) end
    end
end

local SGD = setmetatable({}, { __index = Optimizer })
SGD.__index = SGD

-- nn.optim.sgd(params, {lr=0.01, momentum=0, dampening=0, weight_decay=0, nesterov=false});
-- a `name` field is ignored, so Train's optimizer = {name = "sgd", ...} table passes as is.
function optim.sgd(params, opts)
    local where = "optim.sgd"
    opts = check_opts(opts, { name = true, lr = true, momentum = true, dampening = true,
        weight_decay = true, nesterov = true }, where)
    local self = setmetatable({
        params = check_params(params, where),
        lr = check_number(opts.lr, 0.01, "lr", where),
        momentum = check_number(opts.momentum, 0, "momentum", where),
        dampening = check_number(opts.dampening, 0, "dampening", where),
        weight_decay = check_number(opts.weight_decay, 0, "weight_decay", where),
        nesterov = opts.nesterov and true or false,
        state = {},
    }, SGD)
    if self.nesterov and (self.momentum == 0 or self.dampening ~= 0) then
        error("optim.sgd: nesterov needs momentum > 0 and dampening 0", 2)
    end
    return self
end

function SGD:step()
    for i, p in ipairs(self.params) do
        local g = p.grad
        if g ~= nil then
            local K = backends[p.device]
            local buf, first = nil, false
            if self.momentum ~= 0 then
                buf = self.state[i]
                if buf == nil then
                    buf = K.full(p.data:shape(), 0)
                    self.state[i] = buf
                    first = true
                end
            end
            K.sgd_step(p.data, g.data, buf, self.lr, self.momentum, self.dampening,
                self.weight_decay, self.nesterov, first)
        end
    end
end

local Adam = setmetatable({}, { __index = Optimizer })
Adam.__index = Adam

local function make_adam(params, opts, where, decoupled, default_wd)
    opts = check_opts(opts, { name = true, lr = true, betas = true, eps = true,
        weight_decay = true }, where)
    local betas = opts.betas or { 0.9, 0.999 }
    if type(betas) ~= "table" or type(betas[1]) ~= "number" or type(betas[2]) ~= "number"
        or betas[1] < 0 or betas[1] >= 1 or betas[2] < 0 or betas[2] >= 1 then
        error(where .. ": betas must be {beta1, beta2}, each in [0, 1)", 3)
    end
    return setmetatable({
        params = check_params(params, where),
        lr = check_number(opts.lr, 1e-3, "lr", where),
        betas = { betas[1], betas[2] },
        eps = check_number(opts.eps, 1e-8, "eps", where),
        weight_decay = check_number(opts.weight_decay, default_wd, "weight_decay", where),
        decoupled = decoupled,
        state = {},
    }, Adam)
end

-- nn.optim.adam(params, {lr=1e-3, betas={0.9, 0.999}, eps=1e-8, weight_decay=0}) and
-- nn.optim.adamw (decoupled weight decay, default 0.01), as torch defines them.
function optim.adam(params, opts) return make_adam(params, opts, "optim.adam", false, 0) end
function optim.adamw(params, opts) return make_adam(params, opts, "optim.adamw", true, 0.01) end

function Adam:step()
    local b1, b2 = self.betas[1], self.betas[2]
    for i, p in ipairs(self.params) do
        local g = p.grad
        if g ~= nil then
            local K = backends[p.device]
            local s = self.state[i]
            if s == nil then
                s = { step = 0, m = K.full(p.data:shape(), 0), v = K.full(p.data:shape(), 0) }
                self.state[i] = s
            end
            s.step = s.step + 1
            K.adam_step(p.data, g.data, s.m, s.v, s.step, self.lr, b1, b2, self.eps,
                self.weight_decay, self.decoupled)
        end
    end
end

-- The optimizer's buffers (core tensors) and step counts, by parameter position, for a
-- checkpoint; load_state_dict puts them back into an optimizer over the same parameters.
function Optimizer:state_dict()
    local out = {}
    for i, s in pairs(self.state) do out[i] = s end
    return { state = out, lr = self.lr }
end

function Optimizer:load_state_dict(sd)
    if type(sd) ~= "table" or type(sd.state) ~= "table" then
        error("load_state_dict: expected what optimizer:state_dict() returned", 2)
    end
    self.state = {}
    for i, s in pairs(sd.state) do self.state[i] = s end
    self.lr = sd.lr or self.lr
end

optim.SGD, optim.Adam, optim.AdamW = optim.sgd, optim.adam, optim.adamw

return nn
