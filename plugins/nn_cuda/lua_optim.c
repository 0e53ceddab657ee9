/* Lua binding of the CUDA optimizer update kernels: one call updates one parameter in place, with
 * the CPU plugin's arguments (lua_optim.c). */
#include <lauxlib.h>

#include "cu_kernels.h"
#include "lua_cuda.h"

/* A same-sized float32 CUDA tensor at arg. */
static cu_tensor_t *check_like(lua_State *L, int arg, const cu_tensor_t *p, const char *what)
{
    cu_tensor_t *t = cu_check_f32(L, arg);

    if (t->nbytes != p->nbytes)
        luaL_argerror(L, arg, lua_pushfstring(L, "%s differs in size from the parameter", what));
    return t;
}

/* K.sgd_step(p, g, buf|nil, lr, momentum, dampening, weight_decay, nesterov, first) */
static int l_sgd_step(lua_State *L)
{
    cu_tensor_t *p = cu_check_f32(L, 1), *g = check_like(L, 2, p, "gradient"), *buf = NULL;
    nn_sgd_opts_t o;

    if (!lua_isnoneornil(L, 3))
        buf = check_like(L, 3, p, "momentum buffer");
    nn_check_sgd_opts(L, 4, &o);
    cu_check_cuda(L, cu_sgd_step(cu_lua_ctx(L)->stream, p->data, g->data, buf ? buf->data : NULL,
                                 (int64_t)(p->nbytes / 4), &o, lua_toboolean(L, 9)),
                  "sgd_step");
    return 0;
}

/* K.adam_step(p, g, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled); the per-step
 * constants from nn_adam_consts, as nn_adam_step takes them, so both devices round them alike. */
static int l_adam_step(lua_State *L)
{
    cu_tensor_t *p = cu_check_f32(L, 1), *g = check_like(L, 2, p, "gradient");
    cu_tensor_t *m = check_like(L, 3, p, "first moment");
    cu_tensor_t *v = check_like(L, 4, p, "second moment");
    lua_Integer step = luaL_checkinteger(L, 5);
    nn_adam_opts_t o;
    nn_adam_consts_t k;

    luaL_argcheck(L, step >= 1, 5, "steps count from 1");
    nn_check_adam_opts(L, 6, &o);
    nn_adam_consts(&o, step, &k);
    cu_check_cuda(L, cu_adam_step(cu_lua_ctx(L)->stream, p->data, g->data, m->data, v->data,
                                  (int64_t)(p->nbytes / 4), &k),
                  "adam_step");
    return 0;
}

void cu_open_optim(lua_State *L, int idx)
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
