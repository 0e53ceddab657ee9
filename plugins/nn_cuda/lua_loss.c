/* Lua binding of the CUDA losses: cross-entropy over logits and class ids, mean squared error
 * and binary cross-entropy (on probabilities or on logits), each with its gradient; the same
 * functions, arguments and errors as the CPU plugin's lua_loss.c. Labels from the host are
 * checked there before they are copied over; labels already on the GPU are checked there, with
 * one small read back. */
#include <lauxlib.h>

#include "cu_kernels.h"
#include "lua_cuda.h"

/* The gradient flowing into a loss: a number (returned, *gp NULL) or a one-element float32
 * CUDA tensor (*gp its element, read by the kernel). */
static float check_seed(lua_State *L, int arg, const float **gp)
{
    cu_tensor_t *g;

    *gp = NULL;
    if (lua_type(L, arg) == LUA_TNUMBER)
        return (float)lua_tonumber(L, arg);
    g = cu_check_f32(L, arg);
    if (g->nbytes != 4)
        luaL_argerror(L, arg, "the gradient of a loss has one element");
    *gp = g->data;
    return 0.0f;
}

static void raise_label(lua_State *L, int64_t label, int64_t row, int64_t c)
{
    luaL_error(L, "cross_entropy: label %I (row %I) is not a class id in 0..%I",
               (lua_Integer)label, (lua_Integer)row + 1, (lua_Integer)c - 1);
}

/* The labels at arg as an int64 CUDA tensor of n class ids in [0, c), pushed: the tensor
 * itself when it is one already (checked on the device), else a checked copy. */
static cu_tensor_t *push_labels(lua_State *L, int arg, int64_t n, int64_t c)
{
    cu_tensor_t *t = cu_test_tensor(L, arg);
    cu_ctx_t *ctx = cu_lua_ctx(L);
    const int64_t *host;
    int64_t count;

    if (t && cu_check_tensor(L, arg)->dtype == LURAY_DTYPE_INT64) {
        unsigned long long bad = 0;
        int64_t label = 0;

        if ((int64_t)(t->nbytes / 8) != n)
            luaL_error(L, "cross_entropy: %I rows of logits but %I labels", (lua_Integer)n,
                       (lua_Integer)(t->nbytes / 8));
        cu_check_cuda(L, cu_check_index(ctx->stream, t->data, n, c, ctx->scratch),
                      "cross_entropy labels");
        cu_check_cuda(L, cudaMemcpyAsync(&bad, ctx->scratch, sizeof bad, cudaMemcpyDeviceToHost,
                                         ctx->stream),
                      "cross_entropy labels");
        cu_check_cuda(L, cu_ctx_sync(ctx), "cross_entropy labels");
        if (bad < (unsigned long long)n) {
            cu_check_cuda(L, cudaMemcpyAsync(&label, (const int64_t *)t->data + bad,
                                             sizeof label, cudaMemcpyDeviceToHost, ctx->stream),
                          "cross_entropy labels");
            cu_check_cuda(L, cu_ctx_sync(ctx), "cross_entropy labels");
            raise_label(L, label, (int64_t)bad, c);
        }
        lua_pushvalue(L, arg);
        return t;
    }
    host = cu_push_host_i64(L, arg, "cross_entropy labels", &count);
    if (count != n)
        luaL_error(L, "cross_entropy: %I rows of logits but %I labels", (lua_Integer)n,
                   (lua_Integer)count);
    for (int64_t r = 0; r < n; r++)
        if (host[r] < 0 || host[r] >= c)
            raise_label(L, host[r], r, c);
    t = cu_push_upload_i64(L, host, n);
    lua_remove(L, -2); /* the host copy */
    return t;
}

/* K.cross_entropy(logits, labels [, reduction]): the loss, the softmax (saved for backward) and
 * the labels as an int64 CUDA tensor. logits are n x c (or c for one sample), labels n class
 * ids from 0 (a CPU or CUDA tensor of any number type). */
static int l_cross_entropy(lua_State *L)
{
    cu_tensor_t *x = cu_check_f32(L, 1), *labels, *probs, *rowloss, *loss;
    bool mean = nn_check_mean(L, 3);
    cu_ctx_t *ctx = cu_lua_ctx(L);
    int64_t n, c;
    nn_shape_t s, rs, ls = {0, {0}};
    int top = lua_gettop(L);

    if (x->ndim != 1 && x->ndim != 2)
        luaL_argerror(L, 1, lua_pushfstring(L, "expected logits of shape {n, classes}, got a "
                                               "%d-D tensor", x->ndim));
    c = x->shape[x->ndim - 1];
    n = x->ndim == 2 ? x->shape[0] : 1;
    labels = push_labels(L, 2, n, c); /* top + 1 */
    cu_shape_of(x, &s);
    probs = cu_push_new(L, LURAY_DTYPE_FLOAT32, &s, false); /* top + 2 */
    rs.ndim = 1;
    rs.dim[0] = n;
    rowloss = cu_push_new(L, LURAY_DTYPE_FLOAT64, &rs, false);
    loss = cu_push_new(L, LURAY_DTYPE_FLOAT32, &ls, false); /* top + 4 */
    cu_check_cuda(L, cu_cross_entropy_rows(ctx->stream, x->data, labels->data, n, c, probs->data,
                                           rowloss->data),
                  "cross_entropy");
    /* a mean over no rows is NaN (0 / 0), as on the CPU */
    cu_check_cuda(L, cu_sum_f64(ctx->stream, rowloss->data, n, 1.0, mean ? (double)n : 1.0,
                                loss->data, ctx->scratch),
                  "cross_entropy");
    lua_pushvalue(L, top + 4);
    lua_pushvalue(L, top + 2);
    lua_pushvalue(L, top + 1);
    return 3;
}

/* K.cross_entropy_backward(g, probs, labels [, reduction]): the logits' gradient. */
static int l_cross_entropy_backward(lua_State *L)
{
    const float *gp;
    float gv = check_seed(L, 1, &gp);
    cu_tensor_t *probs = cu_check_f32(L, 2), *labels = cu_check_tensor(L, 3), *dst;
    bool mean = nn_check_mean(L, 4);
    int64_t c = probs->ndim ? probs->shape[probs->ndim - 1] : 1;
    int64_t n = probs->ndim == 2 ? probs->shape[0] : 1;
    nn_shape_t s;

    if (labels->dtype != LURAY_DTYPE_INT64 || (int64_t)(labels->nbytes / 8) != n)
        luaL_argerror(L, 3, "expected the int64 labels cross_entropy returned");
    cu_shape_of(probs, &s);
    dst = cu_push_new(L, LURAY_DTYPE_FLOAT32, &s, false);
    cu_check_cuda(L, cu_cross_entropy_backward(cu_lua_ctx(L)->stream, probs->data, labels->data,
                                               n, c, gp, gv, mean, dst->data),
                  "cross_entropy_backward");
    return 1;
}

/* Checks an element-wise loss's operands at parg and parg + 1 (nn_check_loss_shapes); returns
 * their element count. */
static int64_t check_pair(lua_State *L, const char *name, int parg, cu_tensor_t **p,
                          cu_tensor_t **t)
{
    nn_shape_t ps, ts;

    *p = cu_check_f32(L, parg);
    *t = cu_check_f32(L, parg + 1);
    cu_shape_of(*p, &ps);
    cu_shape_of(*t, &ts);
    nn_check_loss_shapes(L, name, &ps, &ts);
    return nn_shape_numel(&ps);
}

/* K.<loss>(pred, target [, reduction]); the loss is the upvalue. */
static int l_pair_loss(lua_State *L)
{
    int which = (int)lua_tointeger(L, lua_upvalueindex(1));
    bool mean = nn_check_mean(L, 3);
    nn_shape_t ls = {0, {0}};
    cu_ctx_t *ctx = cu_lua_ctx(L);
    cu_tensor_t *p, *t, *out;
    int64_t n = check_pair(L, nn_pair_loss_names[which], 1, &p, &t);

    out = cu_push_new(L, LURAY_DTYPE_FLOAT32, &ls, false);
    cu_check_cuda(L, cu_pair_loss(ctx->stream, which, p->data, t->data, n, mean, out->data,
                                  ctx->scratch),
                  nn_pair_loss_names[which]);
    return 1;
}

/* K.<loss>_backward(g, pred, target [, reduction]): the prediction's gradient. */
static int l_pair_loss_backward(lua_State *L)
{
    int which = (int)lua_tointeger(L, lua_upvalueindex(1));
    const float *gp;
    float gv = check_seed(L, 1, &gp);
    bool mean = nn_check_mean(L, 4);
    cu_tensor_t *p, *t, *dst;
    int64_t n = check_pair(L, nn_pair_loss_names[which], 2, &p, &t);
    nn_shape_t s;

    cu_shape_of(p, &s);
    dst = cu_push_new(L, LURAY_DTYPE_FLOAT32, &s, false);
    cu_check_cuda(L, cu_pair_loss_backward(cu_lua_ctx(L)->stream, which, p->data, t->data, n, gp,
                                           gv, mean, dst->data),
                  nn_pair_loss_names[which]);
    return 1;
}

void cu_open_loss(lua_State *L, int idx)
{
    lua_pushcfunction(L, l_cross_entropy);
    lua_setfield(L, idx, "cross_entropy");
    lua_pushcfunction(L, l_cross_entropy_backward);
    lua_setfield(L, idx, "cross_entropy_backward");
    nn_set_closures(L, idx, nn_pair_loss_names, "", l_pair_loss);
    nn_set_closures(L, idx, nn_pair_loss_names, "_backward", l_pair_loss_backward);
}
