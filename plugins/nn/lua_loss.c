/* Lua binding of the nn losses: cross-entropy over logits and class ids, mean squared error and
 * binary cross-entropy (on probabilities or on logits), each with its gradient. A loss is a 0-d
 * float32 tensor: the mean over the elements (or rows, for cross-entropy), or the sum. */
#include <math.h>

#include <lauxlib.h>

#include "lua_nn.h"
#include "nn_loss.h"

static void push_scalar(lua_State *L, double v)
{
    nn_shape_t s = {0, {0}};

    *(float *)nn_push_new(L, LURAY_DTYPE_FLOAT32, &s, false)->data = (float)v;
}

/* The gradient flowing into a loss: a 0-d (one element) tensor or a number. */
static float check_seed(lua_State *L, int arg)
{
    luray_tensor_t *g;

    if (lua_type(L, arg) == LUA_TNUMBER)
        return (float)lua_tonumber(L, arg);
    g = nn_check_f32(L, arg);
    if (g->nbytes != 4)
        luaL_argerror(L, arg, "the gradient of a loss has one element");
    return *(const float *)g->data;
}

/* C.cross_entropy(logits, labels [, reduction]): the loss, the softmax (saved for backward) and
 * the labels as int64. logits are n x c (or c for one sample), labels n class ids from 0. */
static int l_cross_entropy(lua_State *L)
{
    luray_tensor_t *x = nn_check_f32(L, 1), *probs;
    bool mean = nn_check_mean(L, 3);
    int64_t n, c, nlabels, bad;
    const int64_t *labels;
    nn_shape_t s;
    double sum;

    if (x->ndim != 1 && x->ndim != 2)
        luaL_argerror(L, 1, lua_pushfstring(L, "expected logits of shape {n, classes}, got a "
                                               "%d-D tensor", x->ndim));
    c = x->shape[x->ndim - 1];
    n = x->ndim == 2 ? x->shape[0] : 1;
    labels = nn_push_int64(L, 2, "cross_entropy labels", &nlabels);
    if (nlabels != n)
        luaL_error(L, "cross_entropy: %I rows of logits but %I labels", (lua_Integer)n,
                   (lua_Integer)nlabels);
    nn_shape_of(x, &s);
    probs = nn_push_new(L, LURAY_DTYPE_FLOAT32, &s, false);
    if (nn_cross_entropy(x->data, labels, n, c, probs->data, &sum, &bad) < 0)
        luaL_error(L, "cross_entropy: label %I (row %I) is not a class id in 0..%I",
                   (lua_Integer)labels[bad], (lua_Integer)bad + 1, (lua_Integer)c - 1);
    push_scalar(L, mean ? (n ? sum / (double)n : NAN) : sum);
    lua_rotate(L, -3, 1); /* labels, probs, loss -> loss, labels, probs */
    lua_rotate(L, -2, 1); /* -> loss, probs, labels */
    return 3;
}

/* C.cross_entropy_backward(g, probs, labels [, reduction]): the logits' gradient. */
static int l_cross_entropy_backward(lua_State *L)
{
    float g = check_seed(L, 1);
    luray_tensor_t *probs = nn_check_f32(L, 2), *labels = nn_check_tensor(L, 3), *dst;
    bool mean = nn_check_mean(L, 4);
    int64_t c = probs->ndim ? probs->shape[probs->ndim - 1] : 1;
    int64_t n = probs->ndim == 2 ? probs->shape[0] : 1;
    nn_shape_t s;

    if (labels->dtype != LURAY_DTYPE_INT64 || (int64_t)(labels->nbytes / 8) != n)
        luaL_argerror(L, 3, "expected the int64 labels cross_entropy returned");
    nn_shape_of(probs, &s);
    dst = nn_push_new(L, LURAY_DTYPE_FLOAT32, &s, false);
    nn_cross_entropy_backward(probs->data, labels->data, n, c, mean && n ? g / (float)n : g,
                              dst->data);
    return 1;
}

/* Checks an element-wise loss's operands (nn_check_loss_shapes); returns their element count. */
static int64_t check_pair(lua_State *L, const char *name, luray_tensor_t **p, luray_tensor_t **t)
{
    nn_shape_t ps, ts;

    *p = nn_check_f32(L, 1);
    *t = nn_check_f32(L, 2);
    nn_shape_of(*p, &ps);
    nn_shape_of(*t, &ts);
    nn_check_loss_shapes(L, name, &ps, &ts);
    return nn_shape_numel(&ps);
}

typedef double (*loss_fn)(const float *, const float *, int64_t);
typedef void (*loss_grad_fn)(const float *, const float *, int64_t, float, float *);

/* The kernels of the losses nn_pair_loss_names names, in its order. */
static const struct {
    loss_fn fwd;
    loss_grad_fn bwd;
} losses[] = {
    {nn_mse, nn_mse_backward},
    {nn_bce, nn_bce_backward},
    {nn_bce_logits, nn_bce_logits_backward},
};

/* C.<loss>(pred, target [, reduction]); the loss is the upvalue. */
static int l_pair_loss(lua_State *L)
{
    int which = (int)lua_tointeger(L, lua_upvalueindex(1));
    bool mean = nn_check_mean(L, 3);
    luray_tensor_t *p, *t;
    int64_t n = check_pair(L, nn_pair_loss_names[which], &p, &t);
    double sum = losses[which].fwd(p->data, t->data, n);

    push_scalar(L, mean ? (n ? sum / (double)n : NAN) : sum);
    return 1;
}

/* C.<loss>_backward(g, pred, target [, reduction]): the prediction's gradient. */
static int l_pair_loss_backward(lua_State *L)
{
    int which = (int)lua_tointeger(L, lua_upvalueindex(1));
    float g = check_seed(L, 1);
    bool mean = nn_check_mean(L, 4);
    luray_tensor_t *p, *t, *dst;
    int64_t n;
    nn_shape_t s;

    lua_remove(L, 1); /* check_pair reads pred and target at 1 and 2 */
    n = check_pair(L, nn_pair_loss_names[which], &p, &t);
    nn_shape_of(p, &s);
    dst = nn_push_new(L, LURAY_DTYPE_FLOAT32, &s, false);
    losses[which].bwd(p->data, t->data, n, mean && n ? g / (float)n : g, dst->data);
    return 1;
}

void nn_open_loss(lua_State *L, int idx)
{
    lua_pushcfunction(L, l_cross_entropy);
    lua_setfield(L, idx, "cross_entropy");
    lua_pushcfunction(L, l_cross_entropy_backward);
    lua_setfield(L, idx, "cross_entropy_backward");
    nn_set_closures(L, idx, nn_pair_loss_names, "", l_pair_loss);
    nn_set_closures(L, idx, nn_pair_loss_names, "_backward", l_pair_loss_backward);
}
