/* Lua binding of the nn matrix kernels: matmul with transposes and accumulation, the fused
 * linear layer, bias gradients and OpenBLAS's thread count. */
#include <lauxlib.h>

#include "lua_nn.h"
#include "nn_blas.h"

static const char *const act_names[] = {"none", "relu", "sigmoid", "tanh", NULL};
static const int act_codes[] = {NN_ACT_NONE, NN_RELU, NN_SIGMOID, NN_TANH};

static luray_tensor_t *check_matrix(lua_State *L, int arg)
{
    luray_tensor_t *t = nn_check_f32(L, arg);

    if (t->ndim != 2)
        luaL_argerror(L, arg, lua_pushfstring(L, "expected a 2-D tensor, got %d-D", t->ndim));
    return t;
}

static void raise_blas(lua_State *L, int rc)
{
    luaL_error(L, "matmul: %s (a dimension exceeds BLAS's 32-bit int)", nn_host->strerror(rc));
}

/* C.matmul(a, b [, ta, tb, out, beta]): op(a) op(b) into a new tensor, or out = that +
 * beta * out (beta 0 by default: out is overwritten). */
static int l_matmul(lua_State *L)
{
    luray_tensor_t *a = check_matrix(L, 1), *b = check_matrix(L, 2), *out;
    bool ta = lua_toboolean(L, 3), tb = lua_toboolean(L, 4);
    float beta = (float)luaL_optnumber(L, 6, 0.0);
    int64_t m = ta ? a->shape[1] : a->shape[0], k = ta ? a->shape[0] : a->shape[1];
    int64_t kb = tb ? b->shape[1] : b->shape[0], n = tb ? b->shape[0] : b->shape[1];
    nn_shape_t os = {2, {m, n}};
    int rc;

    if (k != kb)
        luaL_error(L, "matmul: inner dimensions differ (%I and %I)", (lua_Integer)k,
                   (lua_Integer)kb);
    if (lua_isnoneornil(L, 5))
        beta = 0.0f;
    out = nn_push_out(L, 5, &os, false);
    if (out->data == a->data || out->data == b->data)
        luaL_argerror(L, 5, "the output must not be an operand");
    if ((rc = nn_sgemm(ta, tb, m, n, k, 1.0f, a->data, b->data, beta, out->data)) < 0)
        raise_blas(L, rc);
    return 1;
}

/* C.linear(x, w, bias|nil, act|nil): act(x w^T + bias) for x (m x k), w (n x k). */
static int l_linear(lua_State *L)
{
    luray_tensor_t *x = check_matrix(L, 1), *w = check_matrix(L, 2), *bias = NULL, *out;
    int act = act_codes[luaL_checkoption(L, 4, "none", act_names)], rc;
    nn_shape_t os = {2, {x->shape[0], w->shape[0]}};

    if (x->shape[1] != w->shape[1])
        luaL_error(L, "linear: input has %I features, the weight expects %I",
                   (lua_Integer)x->shape[1], (lua_Integer)w->shape[1]);
    if (!lua_isnoneornil(L, 3)) {
        bias = nn_check_f32(L, 3);
        if (bias->nbytes != (size_t)w->shape[0] * 4)
            luaL_argerror(L, 3, "bias size differs from the weight's output size");
    }
    out = nn_push_new(L, LURAY_DTYPE_FLOAT32, &os, false);
    rc = nn_linear_forward(x->data, w->data, bias ? bias->data : NULL, x->shape[0], w->shape[0],
                           x->shape[1], act, out->data);
    if (rc < 0)
        raise_blas(L, rc);
    return 1;
}

/* C.sum_rows(g [, out, beta]): the column sums of a 2-D g (a bias gradient), into a new
 * tensor or out = sums + beta * out. */
static int l_sum_rows(lua_State *L)
{
    luray_tensor_t *g = check_matrix(L, 1), *out;
    nn_shape_t os = {1, {g->shape[1]}};
    float beta = lua_isnoneornil(L, 2) ? 0.0f : (float)luaL_optnumber(L, 3, 0.0);

    out = nn_push_out(L, 2, &os, false);
    nn_sum_rows(g->data, g->shape[0], g->shape[1], beta, out->data);
    return 1;
}

static int l_set_num_threads(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);

    luaL_argcheck(L, n >= 1 && n <= 1024, 1, "expected a thread count from 1 to 1024");
    nn_blas_set_threads((int)n);
    return 0;
}

static int l_get_num_threads(lua_State *L)
{
    lua_pushinteger(L, nn_blas_threads());
    return 1;
}

void nn_open_linalg(lua_State *L, int idx)
{
    static const luaL_Reg funcs[] = {
        {"matmul", l_matmul},
        {"linear", l_linear},
        {"sum_rows", l_sum_rows},
        {"set_num_threads", l_set_num_threads},
        {"get_num_threads", l_get_num_threads},
        {NULL, NULL},
    };

    lua_pushvalue(L, idx);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
}
