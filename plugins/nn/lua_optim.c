/* Lua binding of the optimizer update kernels: one call updates one parameter in place. */
#include <lauxlib.h>

#include "lua_nn.h"
#include "nn_optim.h"

/* The parameter at 1 (writable) and a same-sized float32 tensor at arg. */
static luray_tensor_t *check_like(lua_State *L, int arg, const luray_tensor_t *p, const char *what)
{
    luray_tensor_t *t = nn_check_f32(L, arg);

    if (t->nbytes != p->nbytes)
        luaL_argerror(L, arg, lua_pushfstring(L, "%s differs in size from the parameter", what));
    return t;
}

/* C.sgd_step(p, g, buf|nil, lr, momentum, dampening, weight_decay, nesterov, first) */
static int l_sgd_step(lua_State *L)
{
    luray_tensor_t *p = nn_check_f32(L, 1), *g = check_like(L, 2, p, "gradient"), *buf = NULL;
    nn_sgd_opts_t o;

    nn_check_writable(L, p, 1);
    if (!lua_isnoneornil(L, 3)) {
        buf = check_like(L, 3, p, "momentum buffer");
        nn_check_writable(L, buf, 3);
    }
    nn_check_sgd_opts(L, 4, &o);
    nn_sgd_step(p->data, g->data, buf ? buf->data : NULL, (int64_t)(p->nbytes / 4), &o,
                lua_toboolean(L, 9));
    return 0;
}

/* C.adam_step(p, g, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled) */
static int l_adam_step(lua_State *L)
{
    luray_tensor_t *p = nn_check_f32(L, 1), *g = check_like(L, 2, p, "gradient");
    luray_tensor_t *m = check_like(L, 3, p, "first moment");
    luray_tensor_t *v = check_like(L, 4, p, "second moment");
    lua_Integer step = luaL_checkinteger(L, 5);
    nn_adam_opts_t o;

    nn_check_writable(L, p, 1);
    luaL_argcheck(L, step >= 1, 5, "steps count from 1");
    nn_check_adam_opts(L, 6, &o);
    nn_adam_step(p->data, g->data, m->data, v->data, (int64_t)(p->nbytes / 4), step, &o);
    return 0;
}

void nn_open_optim(lua_State *L, int idx)
{
    static const luaL_Reg funcs[] = {
        {"sgd_step", l_sgd_step},
        {"adam_step", l_adam_step},
        {NULL, NULL},
    };

    lua_pushvalue(L, idx);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
}
