/* Lua binding of the CUDA matrix kernels: matmul with transposes and accumulation through
 * cuBLAS, the linear layer (sgemm, then bias and activation in one pass) and bias gradients. */
#include <lauxlib.h>

#include "cu_blas.h"
#include "cu_kernels.h"
#include "lua_cuda.h"

static const char *const act_names[] = {"none", "relu", "sigmoid", "tanh", NULL};
static const int act_codes[] = {CU_ACT_NONE, CU_RELU, CU_SIGMOID, CU_TANH};

static cu_tensor_t *check_matrix(lua_State *L, int arg)
{
    cu_tensor_t *t = cu_check_f32(L, arg);

    if (t->ndim != 2)
        luaL_argerror(L, arg, lua_pushfstring(L, "expected a 2-D tensor, got %d-D", t->ndim));
    return t;
}

/* K.matmul(a, b [, ta, tb, out, beta]): op(a) op(b) into a new tensor, or out = that +
 * beta * out (beta 0 by default: out is overwritten). */
static int l_matmul(lua_State *L)
{
    cu_tensor_t *a = check_matrix(L, 1), *b = check_matrix(L, 2), *out;
    bool ta = lua_toboolean(L, 3), tb = lua_toboolean(L, 4);
    float beta = (float)luaL_optnumber(L, 6, 0.0);
    int64_t m = ta ? a->shape[1] : a->shape[0], k = ta ? a->shape[0] : a->shape[1];
    int64_t kb = tb ? b->shape[1] : b->shape[0], n = tb ? b->shape[0] : b->shape[1];
    nn_shape_t os = {2, {m, n}};

    if (k != kb)
        luaL_error(L, "matmul: inner dimensions differ (%I and %I)", (lua_Integer)k,
                   (lua_Integer)kb);
    if (lua_isnoneornil(L, 5))
        beta = 0.0f;
    out = cu_push_out(L, 5, &os, false);
    if (out->nbytes && (out->data == a->data || out->data == b->data))
        luaL_argerror(L, 5, "the output must not be an operand");
    cu_check_msg(L, cu_sgemm(cu_lua_ctx(L), ta, tb, m, n, k, 1.0f, a->data, b->data, beta,
                             out->data),
                 "matmul");
    return 1;
}

/* K.linear(x, w, bias|nil, act|nil): act(x w^T + bias) for x (m x k), w (n x k). */
static int l_linear(lua_State *L)
{
    cu_tensor_t *x = check_matrix(L, 1), *w = check_matrix(L, 2), *bias = NULL, *out;
    int act = act_codes[luaL_checkoption(L, 4, "none", act_names)];
    nn_shape_t os = {2, {x->shape[0], w->shape[0]}};
    cu_ctx_t *ctx = cu_lua_ctx(L);

    if (x->shape[1] != w->shape[1])
        luaL_error(L, "linear: input has %I features, the weight expects %I",
                   (lua_Integer)x->shape[1], (lua_Integer)w->shape[1]);
    if (!lua_isnoneornil(L, 3)) {
        bias = cu_check_f32(L, 3);
        if (bias->nbytes != (size_t)w->shape[0] * 4)
            luaL_argerror(L, 3, "bias size differs from the weight's output size");
    }
    out = cu_push_new(L, LURAY_DTYPE_FLOAT32, &os, false);
    cu_check_msg(L, cu_sgemm(ctx, false, true, x->shape[0], w->shape[0], x->shape[1], 1.0f,
                             x->data, w->data, 0.0f, out->data),
                 "linear");
    cu_check_cuda(L, cu_bias_act(ctx->stream, out->data, bias ? bias->data : NULL, x->shape[0],
                                 w->shape[0], act),
                  "linear");
    return 1;
}

/* K.sum_rows(g [, out, beta]): the column sums of a 2-D g (a bias gradient), into a new
 * tensor or out = sums + beta * out. */
static int l_sum_rows(lua_State *L)
{
    cu_tensor_t *g = check_matrix(L, 1), *out;
    nn_shape_t os = {1, {g->shape[1]}};
    float beta = lua_isnoneornil(L, 2) ? 0.0f : (float)luaL_optnumber(L, 3, 0.0);

    out = cu_push_out(L, 2, &os, false);
    cu_check_msg(L, cu_sum_rows(cu_lua_ctx(L), g->data, g->shape[0], g->shape[1], beta,
                                out->data),
                 "sum_rows");
    return 1;
}

void cu_open_linalg(lua_State *L, int idx)
{
    static const luaL_Reg funcs[] = {
        {"matmul", l_matmul},
        {"linear", l_linear},
        {"sum_rows", l_sum_rows},
        {NULL, NULL},
    };

    lua_pushvalue(L, idx);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
}
