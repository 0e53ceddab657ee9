/* Copies between the host's core tensors and CUDA tensors (upload, download, copies into an
 * existing tensor), and integer labels or positions read as int64 on the host. Host-to-device
 * copies go through the context's pinned staging (cu_ctx_upload), so the host side may be freed
 * as soon as they are queued. */
#include <math.h>
#include <string.h>

#include <lauxlib.h>

#include "lua_cuda.h"

static luray_tensor_t *check_core(lua_State *L, int arg)
{
    luray_tensor_t *h = cu_host->tensor_test(L, arg);

    if (!h) {
        if (cu_test_tensor(L, arg))
            luaL_argerror(L, arg, "expected a CPU tensor, got a CUDA tensor");
        luaL_typeerror(L, arg, "tensor");
    }
    if (!h->data && h->ndim == 0)
        luaL_argerror(L, arg, "tensor is closed");
    return h;
}

static int64_t core_numel(const luray_tensor_t *h)
{
    int64_t n = 1;

    for (int i = 0; i < h->ndim; i++)
        n *= h->shape[i];
    return n;
}

static bool core_contiguous(const luray_tensor_t *h)
{
    int64_t step = 1;

    for (int i = h->ndim - 1; i >= 0; i--) {
        if (h->shape[i] != 1 && h->strides[i] != step)
            return false;
        step *= h->shape[i];
    }
    return true;
}

/* Calls fn(element, ctx) for each element of h in row-major order. */
typedef void (*elem_fn)(const void *elem, int64_t i, void *ctx);

static void each_elem(const luray_tensor_t *h, size_t es, elem_fn fn, void *ctx)
{
    int64_t idx[LURAY_TENSOR_MAX_DIMS] = {0}, n = core_numel(h), off = 0;

    for (int64_t e = 0; e < n; e++) {
        fn((const char *)h->data + off * (int64_t)es, e, ctx);
        for (int i = h->ndim - 1; i >= 0; i--) { /* the last index moves fastest */
            off += h->strides[i];
            if (++idx[i] < h->shape[i])
                break;
            off -= h->strides[i] * h->shape[i];
            idx[i] = 0;
        }
    }
}

typedef struct {
    char *dst;
    size_t es;
} pack_t;

static void pack_one(const void *elem, int64_t i, void *ctx)
{
    pack_t *p = ctx;

    memcpy(p->dst + (size_t)i * p->es, elem, p->es);
}

/* h's bytes in row-major order, and one pushed value that keeps them: h itself when it is
 * contiguous, else a packed copy. */
static const void *push_host_bytes(lua_State *L, int arg, const luray_tensor_t *h)
{
    size_t es = cu_host->dtype_size(h->dtype), n = (size_t)core_numel(h);
    pack_t p;

    if (core_contiguous(h)) {
        lua_pushvalue(L, arg);
        return h->data;
    }
    p.dst = lua_newuserdatauv(L, n * es > 0 ? n * es : 1, 0);
    p.es = es;
    each_elem(h, es, pack_one, &p);
    return p.dst;
}

void cu_upload_into(lua_State *L, cu_tensor_t *t, int arg)
{
    luray_tensor_t *h;
    int64_t n = 1;
    const void *src;

    arg = lua_absindex(L, arg);
    h = check_core(L, arg);
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    if (h->dtype != t->dtype || core_numel(h) != n)
        luaL_error(L, "copy to the GPU: a %s tensor of %I elements cannot fill a %s tensor of %I "
                   "elements", nn_dtype_name(h->dtype), (lua_Integer)core_numel(h),
                   nn_dtype_name(t->dtype), (lua_Integer)n);
    if (!t->nbytes)
        return;
    src = push_host_bytes(L, arg, h);
    cu_check_cuda(L, cu_ctx_upload(cu_lua_ctx(L), t->data, src, t->nbytes), "copy to the GPU");
    lua_pop(L, 1);
}

cu_tensor_t *cu_push_upload(lua_State *L, int arg)
{
    luray_tensor_t *h;
    cu_tensor_t *t;
    nn_shape_t s;

    arg = lua_absindex(L, arg);
    h = check_core(L, arg);
    s.ndim = h->ndim;
    for (int i = 0; i < h->ndim; i++)
        s.dim[i] = h->shape[i];
    t = cu_push_new(L, h->dtype, &s, false);
    cu_upload_into(L, t, arg);
    return t;
}

luray_tensor_t *cu_push_download(lua_State *L, const cu_tensor_t *t)
{
    cu_ctx_t *ctx = cu_lua_ctx(L);
    luray_tensor_t *h = cu_host->tensor_push(L);
    int rc = cu_host->tensor_init(h, t->dtype, t->ndim, t->shape, false);

    if (rc < 0)
        luaL_error(L, "copy from the GPU: cannot make a host tensor of %I bytes: %s",
                   (lua_Integer)t->nbytes, cu_host->strerror(rc));
    if (h->nbytes >= 1024) /* as for device memory: pace the collector (cu_push_new) */
        lua_gc(L, LUA_GCSTEP, (int)(h->nbytes >> 10 < INT32_MAX ? h->nbytes >> 10 : INT32_MAX));
    if (!t->nbytes)
        return h;
    cu_check_cuda(L, cudaMemcpyAsync(h->data, t->data, t->nbytes, cudaMemcpyDeviceToHost,
                                     ctx->stream),
                  "copy from the GPU");
    cu_check_cuda(L, cu_ctx_sync(ctx), "copy from the GPU");
    return h;
}

cu_tensor_t *cu_push_upload_i64(lua_State *L, const int64_t *host, int64_t n)
{
    nn_shape_t s = {1, {n}};
    cu_tensor_t *t = cu_push_new(L, LURAY_DTYPE_INT64, &s, false);

    if (t->nbytes)
        cu_check_cuda(L, cu_ctx_upload(cu_lua_ctx(L), t->data, host, t->nbytes),
                      "copy to the GPU");
    return t;
}

/* ---- integer values on the host ---- */

typedef struct {
    int dtype;
    int64_t *out;
    int64_t bad; /* the first element that is not a whole number, or -1 */
    double bad_value;
} ints_t;

static void read_int(const void *elem, int64_t i, void *ctx)
{
    ints_t *r = ctx;
    double v;

    switch (r->dtype) {
    case LURAY_DTYPE_FLOAT32:
    case LURAY_DTYPE_FLOAT64:
        v = r->dtype == LURAY_DTYPE_FLOAT32 ? *(const float *)elem : *(const double *)elem;
        if (v != floor(v) || fabs(v) > 9007199254740992.0) {
            if (r->bad < 0) {
                r->bad = i;
                r->bad_value = v;
            }
            r->out[i] = 0;
        } else {
            r->out[i] = (int64_t)v;
        }
        break;
    case LURAY_DTYPE_INT32: r->out[i] = *(const int32_t *)elem; break;
    case LURAY_DTYPE_INT64: r->out[i] = *(const int64_t *)elem; break;
    default: r->out[i] = *(const uint8_t *)elem; break;
    }
}

const int64_t *cu_push_host_i64(lua_State *L, int arg, const char *what, int64_t *n)
{
    ints_t r = {0, NULL, -1, 0.0};
    bool downloaded = false;
    luray_tensor_t *h;

    arg = lua_absindex(L, arg);
    if (cu_test_tensor(L, arg)) {
        h = cu_push_download(L, cu_check_tensor(L, arg));
        downloaded = true;
    } else {
        h = check_core(L, arg);
    }
    *n = core_numel(h);
    r.dtype = h->dtype;
    r.out = lua_newuserdatauv(L, (size_t)(*n ? *n : 1) * sizeof(int64_t), 0);
    each_elem(h, cu_host->dtype_size(h->dtype), read_int, &r);
    if (r.bad >= 0)
        luaL_error(L, "%s: element %I is %f, not a whole number", what, (lua_Integer)r.bad + 1,
                   r.bad_value);
    if (downloaded)
        lua_remove(L, -2); /* the buffer is all the caller needs */
    return r.out;
}

/* ---- Lua functions ---- */

/* K.upload(core): a new CUDA tensor with the core tensor's elements. */
static int l_upload(lua_State *L)
{
    cu_push_upload(L, 1);
    return 1;
}

/* K.download(t): a new core tensor with the CUDA tensor's elements. */
static int l_download(lua_State *L)
{
    cu_push_download(L, cu_check_tensor(L, 1));
    return 1;
}

void cu_open_transfer(lua_State *L, int idx)
{
    static const luaL_Reg funcs[] = {
        {"upload", l_upload},
        {"download", l_download},
        {NULL, NULL},
    };

    lua_pushvalue(L, idx);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
}
