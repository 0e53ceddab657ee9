/* The CUDA tensor type ("luray.nn_cuda.Tensor"): argument checkers, allocation of results and
 * views, and the methods nn.lua calls on a tensor's data (shape, dtype, view, clone, get, set,
 * totable, ...), the element-reading ones by way of a copy on the host. */
#include <string.h>

#include <lauxlib.h>

#include "lua_cuda.h"

void cu_shape_of(const cu_tensor_t *t, nn_shape_t *s)
{
    s->ndim = t->ndim;
    for (int i = 0; i < t->ndim; i++)
        s->dim[i] = t->shape[i];
}

/* ---- checkers ---- */

cu_tensor_t *cu_test_tensor(lua_State *L, int arg)
{
    return luaL_testudata(L, arg, CU_TENSOR_MT);
}

cu_tensor_t *cu_check_tensor(lua_State *L, int arg)
{
    cu_tensor_t *t = cu_test_tensor(L, arg);

    if (!t) {
        if (cu_host->tensor_test(L, arg))
            luaL_argerror(L, arg, "expected a CUDA tensor, got a CPU tensor (move it with "
                                  ":to(\"cuda\"))");
        luaL_typeerror(L, arg, "CUDA tensor");
    }
    if (!t->buf)
        luaL_argerror(L, arg, "tensor is closed");
    return t;
}

cu_tensor_t *cu_check_f32(lua_State *L, int arg)
{
    cu_tensor_t *t = cu_check_tensor(L, arg);

    if (t->dtype != LURAY_DTYPE_FLOAT32)
        luaL_argerror(L, arg, lua_pushfstring(L, "expected a float32 tensor, got %s",
                                              nn_dtype_name(t->dtype)));
    return t;
}

const float *cu_check_operand(lua_State *L, int arg, float *scalar, nn_shape_t *s)
{
    cu_tensor_t *t;

    if (lua_type(L, arg) == LUA_TNUMBER) {
        *scalar = (float)lua_tonumber(L, arg);
        s->ndim = 0;
        return NULL;
    }
    t = cu_check_f32(L, arg);
    cu_shape_of(t, s);
    *scalar = 0.0f;
    return t->data;
}

void cu_check_shape(lua_State *L, int arg, nn_shape_t *s)
{
    luray_tensor_t *h = cu_host->tensor_test(L, arg);
    cu_tensor_t *t = cu_test_tensor(L, arg);

    if (h || t) {
        s->ndim = h ? h->ndim : t->ndim;
        for (int i = 0; i < s->ndim; i++)
            s->dim[i] = h ? h->shape[i] : t->shape[i];
        return;
    }
    nn_check_dims(L, arg, s);
}

/* ---- allocation ---- */

/* The bytes of a shape's elements, or 0 with *ok false when they do not fit a size_t. */
static size_t shape_bytes(const nn_shape_t *s, size_t es, bool *ok)
{
    size_t n = es;

    *ok = true;
    for (int i = 0; i < s->ndim; i++) {
        size_t d = (size_t)s->dim[i];

        if (s->dim[i] < 0 || (d && n > SIZE_MAX / d)) {
            *ok = false;
            return 0;
        }
        n *= d;
    }
    return n;
}

/* A new closed tensor userdata of shape s: filled in by the caller. */
static cu_tensor_t *push_closed(lua_State *L, int dtype, const nn_shape_t *s)
{
    cu_tensor_t *t = lua_newuserdatauv(L, sizeof *t, 0);

    memset(t, 0, sizeof *t);
    luaL_setmetatable(L, CU_TENSOR_MT);
    t->dtype = dtype;
    t->ndim = s->ndim;
    for (int i = 0; i < s->ndim; i++)
        t->shape[i] = s->dim[i];
    return t;
}

cu_tensor_t *cu_push_new(lua_State *L, int dtype, const nn_shape_t *s, bool zero)
{
    cu_ctx_t *ctx = cu_lua_ctx(L);
    size_t es = cu_host->dtype_size(dtype), nbytes;
    cu_tensor_t *t;
    cudaError_t err;
    bool ok;

    nbytes = shape_bytes(s, es, &ok);
    if (!es || !ok)
        luaL_error(L, "cannot make a CUDA tensor of shape %s and dtype %s: too large",
                   nn_push_shape_string(L, s), nn_dtype_name(dtype));
    t = push_closed(L, dtype, s);
    err = cu_buf_new(ctx, nbytes, &t->buf);
    if (err == cudaErrorMemoryAllocation) {
        /* Tensors nothing refers to any more may hold the memory: collect them and retry. */
        lua_gc(L, LUA_GCCOLLECT);
        err = cu_buf_new(ctx, nbytes, &t->buf);
    }
    if (err != cudaSuccess) {
        const char *shape = nn_push_shape_string(L, s);

        (void)cudaGetLastError();
        luaL_error(L, "cannot allocate a CUDA tensor of shape %s (%I bytes): %s", shape,
                   (lua_Integer)nbytes, cudaGetErrorString(err));
    }
    t->data = t->buf->ptr;
    t->nbytes = nbytes;
    if (zero && nbytes)
        cu_check_cuda(L, cudaMemsetAsync(t->data, 0, nbytes, ctx->stream), "cudaMemsetAsync");
    /* The memory lives outside Lua's heap: advance the collector as if Lua had allocated it, so
     * that dropped tensors give their blocks back at the pace new ones are made. */
    if (nbytes >= 1024)
        lua_gc(L, LUA_GCSTEP, (int)(nbytes >> 10 < INT32_MAX ? nbytes >> 10 : INT32_MAX));
    return t;
}

cu_tensor_t *cu_push_out(lua_State *L, int arg, const nn_shape_t *s, bool zero)
{
    cu_tensor_t *t;
    nn_shape_t ts;

    if (lua_isnoneornil(L, arg))
        return cu_push_new(L, LURAY_DTYPE_FLOAT32, s, zero);
    t = cu_check_f32(L, arg);
    cu_shape_of(t, &ts);
    if (!nn_shape_eq(&ts, s)) {
        const char *want = nn_push_shape_string(L, s);
        luaL_argerror(L, arg, lua_pushfstring(L, "output tensor has shape %s, expected %s",
                                              nn_push_shape_string(L, &ts), want));
    }
    if (zero && t->nbytes)
        cu_check_cuda(L, cudaMemsetAsync(t->data, 0, t->nbytes, cu_lua_ctx(L)->stream),
                      "cudaMemsetAsync");
    lua_pushvalue(L, arg);
    return t;
}

cu_tensor_t *cu_push_view(lua_State *L, const cu_tensor_t *t, const nn_shape_t *s, size_t offset,
                          size_t nbytes)
{
    cu_tensor_t *v = push_closed(L, t->dtype, s);

    cu_buf_retain(t->buf);
    v->buf = t->buf;
    v->data = nbytes ? (char *)t->data + offset : NULL;
    v->nbytes = nbytes;
    return v;
}

/* ---- methods ---- */

static int l_tensor_gc(lua_State *L)
{
    cu_tensor_t *t = luaL_checkudata(L, 1, CU_TENSOR_MT);

    cu_buf_release(t->buf);
    t->buf = NULL;
    t->data = NULL;
    return 0;
}

static int l_tensor_shape(lua_State *L)
{
    cu_tensor_t *t = luaL_checkudata(L, 1, CU_TENSOR_MT);

    lua_createtable(L, t->ndim, 0);
    for (int i = 0; i < t->ndim; i++) {
        lua_pushinteger(L, t->shape[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int l_tensor_dtype(lua_State *L)
{
    lua_pushstring(L, nn_dtype_name(((cu_tensor_t *)luaL_checkudata(L, 1, CU_TENSOR_MT))->dtype));
    return 1;
}

static int l_tensor_numel(lua_State *L)
{
    cu_tensor_t *t = luaL_checkudata(L, 1, CU_TENSOR_MT);
    int64_t n = 1;

    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    lua_pushinteger(L, n);
    return 1;
}

static int l_tensor_ndim(lua_State *L)
{
    lua_pushinteger(L, ((cu_tensor_t *)luaL_checkudata(L, 1, CU_TENSOR_MT))->ndim);
    return 1;
}

static int l_tensor_len(lua_State *L)
{
    cu_tensor_t *t = luaL_checkudata(L, 1, CU_TENSOR_MT);

    lua_pushinteger(L, t->ndim ? t->shape[0] : 0);
    return 1;
}

static int l_tensor_is_readonly(lua_State *L)
{
    luaL_checkudata(L, 1, CU_TENSOR_MT);
    lua_pushboolean(L, 0);
    return 1;
}

static int l_tensor_device(lua_State *L)
{
    luaL_checkudata(L, 1, CU_TENSOR_MT);
    lua_pushliteral(L, "cuda");
    return 1;
}

/* Calls the core tensor method `name` on a host copy of the tensor at 1 with the arguments
 * after it; with writeback, the copy goes back to the device afterwards (for set). */
static int call_on_host(lua_State *L, const char *name, bool writeback)
{
    cu_tensor_t *t = cu_check_tensor(L, 1);
    int top = lua_gettop(L), host = top + 1;

    cu_push_download(L, t);
    lua_getfield(L, host, name);
    lua_pushvalue(L, host);
    for (int i = 2; i <= top; i++)
        lua_pushvalue(L, i);
    lua_call(L, top, writeback ? 0 : LUA_MULTRET);
    if (writeback) {
        cu_upload_into(L, t, host);
        return 0;
    }
    return lua_gettop(L) - host;
}

static int l_tensor_get(lua_State *L) { return call_on_host(L, "get", false); }
static int l_tensor_totable(lua_State *L) { return call_on_host(L, "totable", false); }
static int l_tensor_set(lua_State *L) { return call_on_host(L, "set", true); }

static int l_tensor_cpu(lua_State *L)
{
    cu_push_download(L, cu_check_tensor(L, 1));
    return 1;
}

/* t:view(shape): the same elements in another shape (one dimension may be -1), sharing memory. */
static int l_tensor_view(lua_State *L)
{
    cu_tensor_t *t = cu_check_tensor(L, 1);
    int64_t numel = 1, known = 1;
    int infer = -1;
    nn_shape_t s;

    for (int i = 0; i < t->ndim; i++)
        numel *= t->shape[i];
    luaL_checktype(L, 2, LUA_TTABLE);
    s.ndim = (int)lua_rawlen(L, 2);
    if (s.ndim > NN_MAX_DIMS)
        luaL_argerror(L, 2, "too many dimensions");
    for (int i = 0; i < s.ndim; i++) {
        int isnum;

        lua_rawgeti(L, 2, i + 1);
        s.dim[i] = lua_tointegerx(L, -1, &isnum);
        lua_pop(L, 1);
        if (!isnum || s.dim[i] < -1 || (s.dim[i] == -1 && infer >= 0))
            luaL_argerror(L, 2, "expected non-negative integers, and at most one -1");
        if (s.dim[i] == -1)
            infer = i;
        else
            known *= s.dim[i];
    }
    if (infer >= 0 && known > 0 && numel % known == 0)
        s.dim[infer] = numel / known;
    if ((infer >= 0 && (known == 0 || numel % known)) || nn_shape_numel(&s) != numel)
        luaL_error(L, "cannot view a tensor of %I elements with that shape", (lua_Integer)numel);
    cu_push_view(L, t, &s, 0, t->nbytes);
    return 1;
}

static int l_tensor_clone(lua_State *L)
{
    cu_tensor_t *t = cu_check_tensor(L, 1), *c;
    nn_shape_t s;

    cu_shape_of(t, &s);
    c = cu_push_new(L, t->dtype, &s, false);
    if (t->nbytes)
        cu_check_cuda(L, cudaMemcpyAsync(c->data, t->data, t->nbytes, cudaMemcpyDeviceToDevice,
                                         cu_lua_ctx(L)->stream),
                      "clone: cudaMemcpyAsync");
    return 1;
}

static int l_tensor_tostring(lua_State *L)
{
    cu_tensor_t *t = luaL_checkudata(L, 1, CU_TENSOR_MT);
    nn_shape_t s;

    cu_shape_of(t, &s);
    lua_pushfstring(L, "CudaTensor(%s, %s%s)", nn_dtype_name(t->dtype),
                    nn_push_shape_string(L, &s), t->buf ? "" : ", closed");
    return 1;
}

void cu_open_tensor(lua_State *L, int idx)
{
    static const luaL_Reg methods[] = {
        {"__gc", l_tensor_gc},
        {"__close", l_tensor_gc},
        {"__len", l_tensor_len},
        {"__tostring", l_tensor_tostring},
        {"close", l_tensor_gc},
        {"shape", l_tensor_shape},
        {"dtype", l_tensor_dtype},
        {"numel", l_tensor_numel},
        {"ndim", l_tensor_ndim},
        {"is_readonly", l_tensor_is_readonly},
        {"device", l_tensor_device},
        {"get", l_tensor_get},
        {"set", l_tensor_set},
        {"totable", l_tensor_totable},
        {"cpu", l_tensor_cpu},
        {"view", l_tensor_view},
        {"clone", l_tensor_clone},
        {NULL, NULL},
    };

    (void)idx;
    if (luaL_newmetatable(L, CU_TENSOR_MT)) {
        luaL_setfuncs(L, methods, 0);
        lua_pushvalue(L, -1);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
}
