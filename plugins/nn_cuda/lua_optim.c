/* Lua binding of the CUDA optimizer update kernels: one call updates one parameter in place, with
 * the CPU plugin's arguments (lua_optim.c). */
#include <math.h>

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
    cu_sgd_opts_t o;

    if (!lua_isnoneornil(L, 3))
        buf = check_like(L, 3, p, "momentum buffer");
    o.lr = (float)luaL_checknumber(L, 4);
    o.momentum = (float)luaL_checknumber(L, 5);
    o.dampening = (float)luaL_checknumber(L, 6);
    o.weight_decay = (float)luaL_checknumber(L, 7);
    o.nesterov = lua_toboolean(L, 8);
    cu_check_cuda(L, cu_sgd_step(cu_lua_ctx(L)->stream, p->data, g->data, buf ? buf->data : NULL,
                                 (int64_t)(p->nbytes / 4), &o, lua_toboolean(L, 9)),
                  "sgd_step");
    return 0;
}

/* K.adam_step(p, g, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled); the per-step
 * constants as nn_adam_step computes them, so both devices round them alike. */
static int l_adam_step(lua_State *L)
{
    cu_tensor_t *p = cu_check_f32(L, 1), *g = check_like(L, 2, p, "gradient");
    cu_tensor_t *m = check_like(L, 3, p, "first moment");
    cu_tensor_t *v = check_like(L, 4, p, "second moment");
    lua_Integer step = luaL_checkinteger(L, 5);
    float lr, beta1, beta2, wd;
    bool decoupled;
    double bc1, bc2;
    cu_adam_consts_t k;

    luaL_argcheck(L, step >= 1, 5, "steps count from 1");
    lr = (float)luaL_checknumber(L, 6);
    beta1 = (float)luaL_checknumber(L, 7);
    beta2 = (float)luaL_checknumber(L, 8);
    k.eps = (float)luaL_checknumber(L, 9);
    wd = (float)luaL_checknumber(L, 10);
    decoupled = lua_toboolean(L, 11);
    bc1 = 1.0 - pow(beta1, (double)step);
    bc2 = 1.0 - pow(beta2, (double)step);
    k.beta1 = beta1;
    k.beta2 = beta2;
    k.step_size = (float)(lr / bc1);
    k.inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    k.l2 = decoupled ? 0.0f : wd;
    k.shrink = decoupled ? 1.0f - lr * wd : 1.0f;
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
