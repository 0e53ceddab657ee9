/* Lua binding of the element-wise CUDA kernels (binary with broadcasting, unary, their
 * gradients) and of the tensor plumbing nn.lua needs: fills, copies, dtype conversion,
 * transposes, row views, row gathers. The same functions, arguments and errors as the CPU
 * plugin's lua_elem.c. */
#include <string.h>

#include <lauxlib.h>

#include "cu_kernels.h"
#include "lua_cuda.h"

/* Operands a and b (tensors or numbers) and their broadcast shape; raises when they do not
 * broadcast. */
typedef struct {
    const float *a, *b;
    float sa, sb;
    nn_shape_t as, bs, os;
} operands_t;

static void check_operands(lua_State *L, int arg, int op, operands_t *o)
{
    o->a = cu_check_operand(L, arg, &o->sa, &o->as);
    o->b = cu_check_operand(L, arg + 1, &o->sb, &o->bs);
    nn_check_broadcast(L, nn_binary_names[op], &o->as, &o->bs, &o->os);
}

/* K.<op>(a, b [, out]) for each binary op; the op is the upvalue. */
static int l_binary(lua_State *L)
{
    int op = (int)lua_tointeger(L, lua_upvalueindex(1));
    const nn_shape_t *ops[3];
    cu_tensor_t *out;
    operands_t o;
    cu_geom_t g;

    check_operands(L, 1, op, &o);
    out = cu_push_out(L, 3, &o.os, false);
    ops[0] = &o.os;
    ops[1] = &o.as;
    ops[2] = &o.bs;
    cu_geom_init(&g, &o.os, 3, ops);
    cu_check_cuda(L, cu_binary(cu_lua_ctx(L)->stream, op, o.a, o.sa, o.b, o.sb, out->data, &g,
                               nn_shape_numel(&o.os)),
                  nn_binary_names[op]);
    return 1;
}

/* K.binary_backward(op, which, g, a, b [, out]): the gradient of operand `which` (1 or 2),
 * summed to its shape; out is the forward result (needed by pow). */
static int l_binary_backward(lua_State *L)
{
    int op = luaL_checkoption(L, 1, NULL, nn_binary_names);
    lua_Integer which = luaL_checkinteger(L, 2);
    cu_tensor_t *g = cu_check_f32(L, 3), *dst;
    const nn_shape_t *ops[4];
    const float *fwd;
    int64_t kept, summed;
    nn_shape_t gs;
    operands_t o;
    cu_split_t split;
    cu_geom_t geo;

    luaL_argcheck(L, which == 1 || which == 2, 2, "expected 1 or 2");
    check_operands(L, 4, op, &o);
    cu_shape_of(g, &gs);
    if (!nn_shape_eq(&gs, &o.os))
        luaL_argerror(L, 3, "gradient shape differs from the broadcast shape");
    fwd = g->data;
    if (!lua_isnoneornil(L, 6)) {
        cu_tensor_t *out = cu_check_f32(L, 6);

        if ((int64_t)out->nbytes != nn_shape_numel(&o.os) * 4)
            luaL_argerror(L, 6, "forward result has the wrong size");
        fwd = out->data;
    }
    dst = cu_push_new(L, LURAY_DTYPE_FLOAT32, which == 1 ? &o.as : &o.bs, false);
    ops[0] = &o.os;
    ops[1] = &o.as;
    ops[2] = &o.bs;
    ops[3] = which == 1 ? &o.as : &o.bs;
    cu_geom_init(&geo, &o.os, 4, ops);
    cu_split_init(&split, &geo, 4, 3, &kept, &summed);
    cu_check_cuda(L, cu_binary_backward(cu_lua_ctx(L)->stream, op, (int)which - 1, g->data, o.a,
                                        o.sa, o.b, o.sb, fwd, dst->data, &split, kept, summed),
                  "binary_backward");
    return 1;
}

/* K.<op>(a [, out]) for each unary op; out may be a (in place). */
static int l_unary(lua_State *L)
{
    int op = (int)lua_tointeger(L, lua_upvalueindex(1));
    cu_tensor_t *a = cu_check_f32(L, 1), *out;
    nn_shape_t s;

    cu_shape_of(a, &s);
    out = cu_push_out(L, 2, &s, false);
    cu_check_cuda(L, cu_unary(cu_lua_ctx(L)->stream, op, a->data, out->data, nn_shape_numel(&s)),
                  nn_unary_names[op]);
    return 1;
}

/* K.unary_backward(op, g, a, out [, dst]): g * op'(a), from the forward input a and result
 * out; a may be nil for ops whose gradient needs only out; dst may be g (in place). */
static int l_unary_backward(lua_State *L)
{
    int op = luaL_checkoption(L, 1, NULL, nn_unary_names);
    cu_tensor_t *g = cu_check_f32(L, 2), *a = NULL, *out = cu_check_f32(L, 4), *dst;
    nn_shape_t s;

    if (op == CU_LOG || !lua_isnoneornil(L, 3))
        a = cu_check_f32(L, 3);
    cu_shape_of(g, &s);
    if (out->nbytes != g->nbytes || (a && a->nbytes != g->nbytes))
        luaL_argerror(L, 2, "gradient and forward tensors differ in size");
    dst = cu_push_out(L, 5, &s, false);
    cu_check_cuda(L, cu_unary_backward(cu_lua_ctx(L)->stream, op, g->data, a ? a->data : NULL,
                                       out->data, dst->data, nn_shape_numel(&s)),
                  "unary_backward");
    return 1;
}

/* Fills t's n floats with v; zero by a memset, as the CPU's fills do. */
static void fill(lua_State *L, cu_tensor_t *t, float v)
{
    cudaStream_t st = cu_lua_ctx(L)->stream;
    int64_t n = (int64_t)(t->nbytes / 4);

    if (v == 0.0f)
        cu_check_cuda(L, t->nbytes ? cudaMemsetAsync(t->data, 0, t->nbytes, st) : cudaSuccess,
                      "fill");
    else
        cu_check_cuda(L, cu_fill(st, t->data, v, n), "fill");
}

/* K.full(shape, value): a new float32 tensor filled with value. */
static int l_full(lua_State *L)
{
    nn_shape_t s;
    float v;

    cu_check_shape(L, 1, &s);
    v = (float)luaL_checknumber(L, 2);
    fill(L, cu_push_new(L, LURAY_DTYPE_FLOAT32, &s, false), v);
    return 1;
}

/* K.fill_(t, value): in place; returns t. */
static int l_fill(lua_State *L)
{
    cu_tensor_t *t = cu_check_f32(L, 1);

    fill(L, t, (float)luaL_checknumber(L, 2));
    lua_settop(L, 1);
    return 1;
}

/* K.copy_(dst, src): copies the elements of src (a CUDA or a CPU tensor, any dtype, the same
 * count) into dst, converting. */
static int l_copy(lua_State *L)
{
    cu_tensor_t *dst = cu_check_tensor(L, 1), *src = NULL;
    cudaStream_t st = cu_lua_ctx(L)->stream;
    luray_tensor_t *host = NULL;
    nn_shape_t ds, ss;

    if (cu_test_tensor(L, 2))
        src = cu_check_tensor(L, 2);
    else if (!(host = cu_host->tensor_test(L, 2)))
        luaL_typeerror(L, 2, "tensor");
    cu_shape_of(dst, &ds);
    cu_check_shape(L, 2, &ss);
    nn_check_copy_sizes(L, &ds, &ss);
    if (host && host->dtype == dst->dtype) { /* from the host, straight in */
        cu_upload_into(L, dst, 2);
        lua_settop(L, 1);
        return 1;
    }
    if (host) /* from the host in another dtype: converted on the device */
        src = cu_push_upload(L, 2);
    if (src->dtype == dst->dtype)
        cu_check_cuda(L, dst->nbytes ? cudaMemcpyAsync(dst->data, src->data, dst->nbytes,
                                                       cudaMemcpyDeviceToDevice, st)
                                     : cudaSuccess,
                      "copy");
    else
        cu_check_cuda(L, cu_convert(st, src->data, src->dtype, dst->data, dst->dtype,
                                    nn_shape_numel(&ds)),
                      "copy");
    lua_settop(L, 1);
    return 1;
}

/* K.axpy_(dst, src [, alpha]): dst += alpha * src in place (same element count). */
static int l_axpy(lua_State *L)
{
    cu_tensor_t *dst = cu_check_f32(L, 1), *src = cu_check_f32(L, 2);
    float alpha = (float)luaL_optnumber(L, 3, 1.0);

    if (dst->nbytes != src->nbytes)
        luaL_argerror(L, 2, "tensors differ in size");
    cu_check_cuda(L, cu_axpy(cu_lua_ctx(L)->stream, dst->data, alpha, src->data,
                             (int64_t)(dst->nbytes / 4)),
                  "axpy_");
    lua_settop(L, 1);
    return 1;
}

static void push_converted(lua_State *L, cu_tensor_t *t, int dtype)
{
    cu_tensor_t *out;
    nn_shape_t s;

    cu_shape_of(t, &s);
    out = cu_push_new(L, dtype, &s, false);
    cu_check_cuda(L, cu_convert(cu_lua_ctx(L)->stream, t->data, t->dtype, out->data, dtype,
                                nn_shape_numel(&s)),
                  "convert");
}

/* K.convert(t, dtype): a new copy of t in dtype. */
static int l_convert(lua_State *L)
{
    cu_tensor_t *t = cu_check_tensor(L, 1);

    push_converted(L, t, luaL_checkoption(L, 2, NULL, nn_dtype_names));
    return 1;
}

/* K.as_f32(t): t itself when it is float32, else a float32 copy. */
static int l_as_f32(lua_State *L)
{
    cu_tensor_t *t = cu_check_tensor(L, 1);

    if (t->dtype == LURAY_DTYPE_FLOAT32)
        lua_settop(L, 1);
    else
        push_converted(L, t, LURAY_DTYPE_FLOAT32);
    return 1;
}

/* K.transpose(a): a new 2-D tensor, the transpose of a. */
static int l_transpose(lua_State *L)
{
    cu_tensor_t *a = cu_check_f32(L, 1), *out;
    nn_shape_t s;

    if (a->ndim != 2)
        luaL_argerror(L, 1, lua_pushfstring(L, "transpose needs a 2-D tensor, got %d-D",
                                            a->ndim));
    s.ndim = 2;
    s.dim[0] = a->shape[1];
    s.dim[1] = a->shape[0];
    out = cu_push_new(L, LURAY_DTYPE_FLOAT32, &s, false);
    cu_check_cuda(L, cu_transpose(cu_lua_ctx(L)->stream, a->data, a->shape[0], a->shape[1],
                                  out->data),
                  "transpose");
    return 1;
}

static size_t row_bytes(const cu_tensor_t *t)
{
    return t->shape[0] ? t->nbytes / (size_t)t->shape[0] : 0;
}

/* K.narrow(t, first, count): a view of rows first..first+count-1 (1-based), sharing t's
 * memory. */
static int l_narrow(lua_State *L)
{
    cu_tensor_t *t = cu_check_tensor(L, 1);
    lua_Integer first = luaL_checkinteger(L, 2), count = luaL_checkinteger(L, 3);
    nn_shape_t s;

    if (t->ndim < 1)
        luaL_argerror(L, 1, "expected a tensor of at least one dimension");
    nn_check_row_range(L, first, count, t->shape[0]);
    cu_shape_of(t, &s);
    s.dim[0] = count;
    cu_push_view(L, t, &s, (size_t)(first - 1) * row_bytes(t), (size_t)count * row_bytes(t));
    return 1;
}

/* The positions at arg (a tensor, CUDA or not, or a list of integers; 1-based) as 0-based
 * int64 on the host, in a pushed buffer. */
static int64_t *push_positions(lua_State *L, int arg, int64_t *n)
{
    int64_t *idx;

    if (lua_istable(L, arg)) {
        *n = (int64_t)lua_rawlen(L, arg);
        idx = lua_newuserdatauv(L, (size_t)(*n ? *n : 1) * sizeof *idx, 0);
        nn_read_position_list(L, arg, idx, *n);
        return idx;
    }
    idx = (int64_t *)cu_push_host_i64(L, arg, "index", n); /* our own buffer */
    for (int64_t i = 0; i < *n; i++)
        idx[i] -= 1;
    return idx;
}

/* K.gather_rows(t, positions): a new tensor of the rows of t (any dtype) at the 1-based
 * positions. */
static int l_gather_rows(lua_State *L)
{
    cu_tensor_t *t = cu_check_tensor(L, 1), *idx, *out;
    const int64_t *host;
    int64_t n;
    nn_shape_t s;

    if (t->ndim < 1)
        luaL_argerror(L, 1, "expected a tensor of at least one dimension");
    host = push_positions(L, 2, &n);
    for (int64_t i = 0; i < n; i++)
        if (host[i] < 0 || host[i] >= t->shape[0])
            luaL_error(L, "index %I (element %I of the index) out of range for a tensor of %I "
                       "rows", (lua_Integer)host[i] + 1, (lua_Integer)i + 1,
                       (lua_Integer)t->shape[0]);
    idx = cu_push_upload_i64(L, host, n);
    cu_shape_of(t, &s);
    s.dim[0] = n;
    out = cu_push_new(L, t->dtype, &s, false);
    cu_check_cuda(L, cu_gather_rows(cu_lua_ctx(L)->stream, t->data, row_bytes(t), idx->data, n,
                                    out->data),
                  "gather_rows");
    return 1;
}

/* K.index_add_rows(dst, positions, g): dst rows at the 1-based positions += rows of g. */
static int l_index_add_rows(lua_State *L)
{
    cu_tensor_t *dst = cu_check_f32(L, 1), *g = cu_check_f32(L, 3), *idx;
    const int64_t *host;
    int64_t n, rowlen;

    if (dst->ndim < 1)
        luaL_argerror(L, 1, "expected a tensor of at least one dimension");
    host = push_positions(L, 2, &n);
    rowlen = dst->shape[0] ? (int64_t)(dst->nbytes / 4) / dst->shape[0] : 0;
    if ((int64_t)(g->nbytes / 4) != n * rowlen)
        luaL_argerror(L, 3, "gradient size does not match the index");
    nn_check_positions(L, host, n, dst->shape[0]);
    idx = cu_push_upload_i64(L, host, n);
    cu_check_cuda(L, cu_index_add_rows(cu_lua_ctx(L)->stream, dst->data, rowlen, idx->data, n,
                                       g->data),
                  "index_add_rows");
    lua_settop(L, 1);
    return 1;
}

/* K.item(t): the one element of a tensor of one element, as a Lua number. */
static int l_item(lua_State *L)
{
    cu_tensor_t *t = cu_check_tensor(L, 1);
    cu_ctx_t *ctx = cu_lua_ctx(L);
    union {
        float f;
        double d;
        int32_t i32;
        int64_t i64;
        uint8_t u8;
    } v;

    if (t->nbytes != cu_host->dtype_size(t->dtype))
        luaL_argerror(L, 1, "item() needs a tensor of exactly one element");
    cu_check_cuda(L, cudaMemcpyAsync(&v, t->data, t->nbytes, cudaMemcpyDeviceToHost,
                                     ctx->stream),
                  "item");
    cu_check_cuda(L, cu_ctx_sync(ctx), "item");
    switch (t->dtype) {
    case LURAY_DTYPE_FLOAT32: lua_pushnumber(L, v.f); break;
    case LURAY_DTYPE_FLOAT64: lua_pushnumber(L, v.d); break;
    case LURAY_DTYPE_INT32: lua_pushinteger(L, v.i32); break;
    case LURAY_DTYPE_INT64: lua_pushinteger(L, v.i64); break;
    case LURAY_DTYPE_BOOL: lua_pushboolean(L, v.u8 != 0); break;
    default: lua_pushinteger(L, v.u8); break;
    }
    return 1;
}

/* K.same_shape(a, b): whether two tensors (CUDA or CPU) have the same shape. */
static int l_same_shape(lua_State *L)
{
    nn_shape_t as, bs;

    luaL_argcheck(L, cu_test_tensor(L, 1) || cu_host->tensor_test(L, 1), 1, "expected a tensor");
    luaL_argcheck(L, cu_test_tensor(L, 2) || cu_host->tensor_test(L, 2), 2, "expected a tensor");
    cu_check_shape(L, 1, &as);
    cu_check_shape(L, 2, &bs);
    lua_pushboolean(L, nn_shape_eq(&as, &bs));
    return 1;
}

/* K.release(t): closes a CUDA tensor now, handing its memory back (anything else is left
 * alone), for tensors nn.lua knows nobody else holds. */
static int l_release(lua_State *L)
{
    if (cu_test_tensor(L, 1)) {
        lua_settop(L, 1);
        lua_getfield(L, 1, "close");
        lua_insert(L, 1);
        lua_call(L, 1, 0);
    }
    return 0;
}

void cu_open_elem(lua_State *L, int idx)
{
    static const luaL_Reg funcs[] = {
        {"binary_backward", l_binary_backward},
        {"unary_backward", l_unary_backward},
        {"full", l_full},
        {"fill_", l_fill},
        {"copy_", l_copy},
        {"axpy_", l_axpy},
        {"convert", l_convert},
        {"as_f32", l_as_f32},
        {"transpose", l_transpose},
        {"narrow", l_narrow},
        {"gather_rows", l_gather_rows},
        {"index_add_rows", l_index_add_rows},
        {"item", l_item},
        {"same_shape", l_same_shape},
        {"release", l_release},
        {NULL, NULL},
    };

    nn_set_closures(L, idx, nn_binary_names, "", l_binary);
    nn_set_closures(L, idx, nn_unary_names, "", l_unary);
    lua_pushvalue(L, idx);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
}
