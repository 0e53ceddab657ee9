/* Lua binding of the CUDA reductions (sum, mean, max, argmax over everything or one dimension)
 * and of softmax / log-softmax along the last dimension, with their gradients: the same
 * functions, arguments and errors as the CPU plugin's lua_reduce.c. */
#include <lauxlib.h>

#include "cu_kernels.h"
#include "lua_cuda.h"

/* The reduction of t by the dimension at arg (nil: all), keepdim at arg + 1. */
static void check_reduction(lua_State *L, const cu_tensor_t *t, int arg, nn_reduction_t *r)
{
    nn_shape_t s;

    cu_shape_of(t, &s);
    nn_check_reduction(L, &s, arg, r);
}

/* K.sum(a [, dim, keepdim, mean]): the sum (or the mean) over everything or along dim. */
static int l_sum(lua_State *L)
{
    cu_tensor_t *a = cu_check_f32(L, 1), *out;
    bool mean = lua_toboolean(L, 4);
    cu_ctx_t *ctx = cu_lua_ctx(L);
    nn_reduction_t r;
    cudaError_t err;

    check_reduction(L, a, 2, &r);
    out = cu_push_new(L, LURAY_DTYPE_FLOAT32, &r.out, false);
    if (r.axis < 0) /* a mean over nothing is NaN, as in PyTorch */
        err = cu_sum_all(ctx->stream, a->data, r.len, mean ? 1.0 / (double)r.len : 1.0, 1.0,
                         out->data, ctx->scratch);
    else
        err = cu_sum_axis(ctx->stream, a->data, r.outer, r.len, r.inner,
                          mean ? 1.0f / (float)r.len : 1.0f, out->data);
    cu_check_cuda(L, err, "sum");
    return 1;
}

/* K.sum_backward(g, a [, dim, mean]): g spread back over a's shape. */
static int l_sum_backward(lua_State *L)
{
    cu_tensor_t *g = cu_check_f32(L, 1), *a = cu_check_f32(L, 2), *dst;
    bool mean = lua_toboolean(L, 4);
    nn_reduction_t r;
    nn_shape_t s;

    lua_pushboolean(L, 0); /* keepdim does not change the layout of g */
    lua_pushvalue(L, 3);
    check_reduction(L, a, lua_gettop(L), &r);
    lua_pop(L, 2);
    if ((int64_t)(g->nbytes / 4) != r.outer * r.inner)
        luaL_argerror(L, 1, "gradient size does not match the reduction");
    cu_shape_of(a, &s);
    dst = cu_push_new(L, LURAY_DTYPE_FLOAT32, &s, false);
    cu_check_cuda(L, cu_sum_axis_backward(cu_lua_ctx(L)->stream, g->data, r.outer, r.len,
                                          r.inner, mean ? 1.0f / (float)r.len : 1.0f, dst->data),
                  "sum_backward");
    return 1;
}

/* K.max(a [, dim, keepdim]): the values and their 0-based positions (int64; over everything,
 * the flat position). */
static int l_max(lua_State *L)
{
    cu_tensor_t *a = cu_check_f32(L, 1), *out, *arg;
    cu_ctx_t *ctx = cu_lua_ctx(L);
    nn_reduction_t r;
    cudaError_t err;

    check_reduction(L, a, 2, &r);
    if (r.len == 0)
        luaL_argerror(L, 1, "max of an empty tensor (or an empty dimension)");
    out = cu_push_new(L, LURAY_DTYPE_FLOAT32, &r.out, false);
    arg = cu_push_new(L, LURAY_DTYPE_INT64, &r.out, false);
    if (r.axis < 0)
        err = cu_max_all(ctx->stream, a->data, r.len, out->data, arg->data, ctx->scratch);
    else
        err = cu_max_axis(ctx->stream, a->data, r.outer, r.len, r.inner, out->data, arg->data);
    cu_check_cuda(L, err, "max");
    return 2;
}

/* K.max_backward(g, positions, a [, dim]): g routed to the positions max took. */
static int l_max_backward(lua_State *L)
{
    cu_tensor_t *g = cu_check_f32(L, 1), *arg = cu_check_tensor(L, 2), *a = cu_check_f32(L, 3);
    cu_tensor_t *dst;
    nn_reduction_t r;
    nn_shape_t s;

    lua_pushvalue(L, 4);
    lua_pushboolean(L, 0);
    check_reduction(L, a, lua_gettop(L) - 1, &r);
    lua_pop(L, 2);
    if (arg->dtype != LURAY_DTYPE_INT64 || (int64_t)(arg->nbytes / 8) != r.outer * r.inner ||
        (int64_t)(g->nbytes / 4) != r.outer * r.inner)
        luaL_argerror(L, 2, "positions do not match the reduction");
    cu_shape_of(a, &s);
    dst = cu_push_new(L, LURAY_DTYPE_FLOAT32, &s, false);
    cu_check_cuda(L, cu_max_axis_backward(cu_lua_ctx(L)->stream, g->data, arg->data, r.outer,
                                          r.len, r.inner, dst->data),
                  "max_backward");
    return 1;
}

/* K.argmax(a [, dim, keepdim]): 0-based positions of the largest values (int64). */
static int l_argmax(lua_State *L)
{
    l_max(L);
    lua_remove(L, -2);
    return 1;
}

/* K.softmax(a [, log]): softmax (or log-softmax) along the last dimension. */
static int l_softmax(lua_State *L)
{
    cu_tensor_t *a = cu_check_f32(L, 1), *out;
    int64_t rows, cols;
    nn_shape_t s;

    cu_shape_of(a, &s);
    nn_check_softmax_rows(L, 1, &s, &rows, &cols);
    out = cu_push_new(L, LURAY_DTYPE_FLOAT32, &s, false);
    cu_check_cuda(L, cu_softmax_rows(cu_lua_ctx(L)->stream, a->data, rows, cols,
                                     lua_toboolean(L, 2), out->data),
                  "softmax");
    return 1;
}

/* K.softmax_backward(g, y [, log]): the input's gradient from the forward result y. */
static int l_softmax_backward(lua_State *L)
{
    cu_tensor_t *g = cu_check_f32(L, 1), *y = cu_check_f32(L, 2), *dst;
    int64_t rows, cols;
    nn_shape_t s;

    cu_shape_of(y, &s);
    nn_check_softmax_rows(L, 2, &s, &rows, &cols);
    if (g->nbytes != y->nbytes)
        luaL_argerror(L, 1, "gradient size differs from the forward result's");
    dst = cu_push_new(L, LURAY_DTYPE_FLOAT32, &s, false);
    cu_check_cuda(L, cu_softmax_rows_backward(cu_lua_ctx(L)->stream, g->data, y->data, rows,
                                              cols, lua_toboolean(L, 3), dst->data),
                  "softmax_backward");
    return 1;
}

void cu_open_reduce(lua_State *L, int idx)
{
    static const luaL_Reg funcs[] = {
        {"sum", l_sum},
        {"sum_backward", l_sum_backward},
        {"max", l_max},
        {"max_backward", l_max_backward},
        {"argmax", l_argmax},
        {"softmax", l_softmax},
        {"softmax_backward", l_softmax_backward},
        {NULL, NULL},
    };

    lua_pushvalue(L, idx);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
}
