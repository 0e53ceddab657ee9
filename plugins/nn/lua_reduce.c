/* Lua binding of the nn reductions (sum, mean, max, argmax over everything or one dimension)
 * and of softmax / log-softmax along the last dimension, with their gradients. */
#include <lauxlib.h>

#include "lua_nn.h"
#include "nn_reduce.h"

/* A reduction's geometry: the axis (or -1 for everything) as outer x len x inner, and the shape
 * of the result. */
typedef struct {
    int axis;
    int64_t outer, len, inner;
    nn_shape_t out;
} reduction_t;

/* Reads the dimension at arg (nil: all) and keepdim at arg + 1. */
static void check_reduction(lua_State *L, const luray_tensor_t *t, int arg, reduction_t *r)
{
    bool keep = lua_toboolean(L, arg + 1);
    nn_shape_t s;

    nn_shape_of(t, &s);
    r->axis = lua_isnoneornil(L, arg) ? -1 : nn_check_axis(L, arg, t->ndim);
    r->outer = 1;
    r->inner = 1;
    r->out.ndim = 0;
    if (r->axis < 0) {
        r->len = nn_shape_numel(&s);
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

/* C.sum(a [, dim, keepdim, mean]): the sum (or the mean) over everything or along dim. */
static int l_sum(lua_State *L)
{
    luray_tensor_t *a = nn_check_f32(L, 1), *out;
    bool mean = lua_toboolean(L, 4);
    reduction_t r;
    float scale;

    check_reduction(L, a, 2, &r);
    scale = mean ? 1.0f / (float)r.len : 1.0f; /* a mean over nothing is NaN, as in PyTorch */
    out = nn_push_new(L, LURAY_DTYPE_FLOAT32, &r.out, false);
    if (r.axis < 0)
        *(float *)out->data = (float)(nn_sum_all(a->data, r.len) * (mean ? 1.0 / r.len : 1.0));
    else
        nn_sum_axis(a->data, r.outer, r.len, r.inner, scale, out->data);
    return 1;
}

/* C.sum_backward(g, a [, dim, mean]): g spread back over a's shape. */
static int l_sum_backward(lua_State *L)
{
    luray_tensor_t *g = nn_check_f32(L, 1), *a = nn_check_f32(L, 2), *dst;
    bool mean = lua_toboolean(L, 4);
    reduction_t r;
    nn_shape_t s;

    lua_pushboolean(L, 0); /* keepdim does not change the layout of g */
    lua_pushvalue(L, 3);
    check_reduction(L, a, lua_gettop(L), &r);
    lua_pop(L, 2);
    if ((int64_t)(g->nbytes / 4) != r.outer * r.inner)
        luaL_argerror(L, 1, "gradient size does not match the reduction");
    nn_shape_of(a, &s);
    dst = nn_push_new(L, LURAY_DTYPE_FLOAT32, &s, false);
    nn_sum_axis_backward(g->data, r.outer, r.len, r.inner, mean ? 1.0f / (float)r.len : 1.0f,
                         dst->data);
    return 1;
}

/* C.max(a [, dim, keepdim]): the values and their 0-based positions (int64; over everything,
 * the flat position). */
static int l_max(lua_State *L)
{
    luray_tensor_t *a = nn_check_f32(L, 1), *out, *arg;
    reduction_t r;

    check_reduction(L, a, 2, &r);
    if (r.len == 0)
        luaL_argerror(L, 1, "max of an empty tensor (or an empty dimension)");
    out = nn_push_new(L, LURAY_DTYPE_FLOAT32, &r.out, false);
    arg = nn_push_new(L, LURAY_DTYPE_INT64, &r.out, false);
    if (r.axis < 0)
        *(float *)out->data = nn_max_all(a->data, r.len, arg->data);
    else
        nn_max_axis(a->data, r.outer, r.len, r.inner, out->data, arg->data);
    return 2;
}

/* C.max_backward(g, positions, a [, dim]): g routed to the positions max took. */
static int l_max_backward(lua_State *L)
{
    luray_tensor_t *g = nn_check_f32(L, 1), *arg = nn_check_tensor(L, 2), *a = nn_check_f32(L, 3);
    luray_tensor_t *dst;
    reduction_t r;
    nn_shape_t s;

    lua_pushvalue(L, 4);
    lua_pushboolean(L, 0);
    check_reduction(L, a, lua_gettop(L) - 1, &r);
    lua_pop(L, 2);
    if (arg->dtype != LURAY_DTYPE_INT64 || (int64_t)(arg->nbytes / 8) != r.outer * r.inner ||
        (int64_t)(g->nbytes / 4) != r.outer * r.inner)
        luaL_argerror(L, 2, "positions do not match the reduction");
    nn_shape_of(a, &s);
    dst = nn_push_new(L, LURAY_DTYPE_FLOAT32, &s, false);
    nn_max_axis_backward(g->data, arg->data, r.outer, r.len, r.inner, dst->data);
    return 1;
}

/* C.argmax(a [, dim, keepdim]): 0-based positions of the largest values (int64). */
static int l_argmax(lua_State *L)
{
    int n = l_max(L);

    (void)n;
    lua_remove(L, -2);
    return 1;
}

static luray_tensor_t *check_rows(lua_State *L, int arg, int64_t *rows, int64_t *cols)
{
    luray_tensor_t *t = nn_check_f32(L, arg);

    if (t->ndim < 1)
        luaL_argerror(L, arg, "softmax needs a tensor of at least one dimension");
    *cols = t->shape[t->ndim - 1];
    *rows = *cols ? (int64_t)(t->nbytes / 4) / *cols : 0;
    return t;
}

/* C.softmax(a [, log]): softmax (or log-softmax) along the last dimension. */
static int l_softmax(lua_State *L)
{
    int64_t rows, cols;
    luray_tensor_t *a = check_rows(L, 1, &rows, &cols), *out;
    nn_shape_t s;

    nn_shape_of(a, &s);
    out = nn_push_new(L, LURAY_DTYPE_FLOAT32, &s, false);
    nn_softmax_rows(a->data, rows, cols, lua_toboolean(L, 2), out->data);
    return 1;
}

/* C.softmax_backward(g, y [, log]): the input's gradient from the forward result y. */
static int l_softmax_backward(lua_State *L)
{
    int64_t rows, cols;
    luray_tensor_t *g = nn_check_f32(L, 1), *y = check_rows(L, 2, &rows, &cols), *dst;
    nn_shape_t s;

    if (g->nbytes != y->nbytes)
        luaL_argerror(L, 1, "gradient size differs from the forward result's");
    nn_shape_of(y, &s);
    dst = nn_push_new(L, LURAY_DTYPE_FLOAT32, &s, false);
    nn_softmax_rows_backward(g->data, y->data, rows, cols, lua_toboolean(L, 3), dst->data);
    return 1;
}

void nn_open_reduce(lua_State *L, int idx)
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
