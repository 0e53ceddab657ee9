/* Lua binding of the CUDA reductions (sum, mean, max, argmax over everything or one dimension)
 * and of softmax / log-softmax along the last dimension, with their gradients: the same
 * functions, arguments and errors as the CPU plugin's lua_reduce.c. */
#include <lauxlib.h>

#include "cu_kernels.h"
#include "lua_cuda.h"

/* A reduction's geometry: the axis (or -1 for everything) as outer x len x inner, and the shape
 * of the result. */
typedef struct {
    int axis;
    int64_t outer, len, inner;
    cu_shape_t out;
} reduction_t;

/* Reads the dimension at arg (nil: all) and keepdim at arg + 1. */
static void check_reduction(lua_State *L, const cu_tensor_t *t, int arg, reduction_t *r)
{
    bool keep = lua_toboolean(L, arg + 1);
    cu_shape_t s;

    cu_shape_of(t, &s);
    r->axis = lua_isnoneornil(L, arg) ? -1 : cu_check_axis(L, arg, t->ndim);
    r->outer = 1;
    r->inner = 1;
    r->out.ndim = 0;
    if (r->axis < 0) {
        r->len = cu_shape_numel(&s);
        if (keep) {
            r->out.ndim = s.ndim;
            for (int d = 0; d < s.ndim; d++)
                r->out.dim[d] = 1;
        }
        return;
    }
    r->len = s.dim[r->axis];
    for (int d = 0; d < s.ndim; d++) {
        if (d < r->axis)
            r->outer *= s.dim[d];
        else if (d > r->axis)
            r->inner *= s.dim[d];
        if (d != r->axis)
            r->out.dim[r->out.ndim++] = s.dim[d];
        else if (keep)
            r->out.dim[r->out.ndim++] = 1;
    }
}

/* K.sum(a [, dim, keepdim, mean]): the sum (or the mean) over everything or along dim. */
static int l_sum(lua_State *L)
{
    cu_tensor_t *a = cu_check_f32(L, 1), *out;
    bool mean = lua_toboolean(L, 4);
    cu_ctx_t *ctx = cu_lua_ctx(L);
    reduction_t r;
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
    reduction_t r;
    cu_shape_t s;

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
    reduction_t r;
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
    reduction_t r;
    cu_shape_t s;

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

static cu_tensor_t *check_rows(lua_State *L, int arg, int64_t *rows, int64_t *cols)
{
    cu_tensor_t *t = cu_check_f32(L, arg);

    if (t->ndim < 1)
        luaL_argerror(L, arg, "softmax needs a tensor of at least one dimension");
    *cols = t->shape[t->ndim - 1];
    *rows = *cols ? (int64_t)(t->nbytes / 4) / *cols : 0;
    return t;
}

/* K.softmax(a [, log]): softmax (or log-softmax) along the last dimension. */
static int l_softmax(lua_State *L)
{
    int64_t rows, cols;
    cu_tensor_t *a = check_rows(L, 1, &rows, &cols), *out;
    cu_shape_t s;

    cu_shape_of(a, &s);
    out = cu_push_new(L, LURAY_DTYPE_FLOAT32, &s, false);
    cu_check_cuda(L, cu_softmax_rows(cu_lua_ctx(L)->stream, a->data, rows, cols,
                                     lua_toboolean(L, 2), out->data),
                  "softmax");
    return 1;
}

/* K.softmax_backward(g, y [, log]): the input's gradient from the forward result y. */
static int l_softmax_backward(lua_State *L)
{
    int64_t rows, cols;
    cu_tensor_t *g = cu_check_f32(L, 1), *y = check_rows(L, 2, &rows, &cols), *dst;
    cu_shape_t s;

    if (g->nbytes != y->nbytes)
        luaL_argerror(L, 1, "gradient size differs from the forward result's");
    cu_shape_of(y, &s);
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
