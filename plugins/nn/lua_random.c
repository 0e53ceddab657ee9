/* Lua binding of the nn random generator: a userdata ("luray.nn.Generator") holding xoshiro256**
 * state, and the fills drawn from it (uniform, normal, dropout masks). */
#include <lauxlib.h>

#include "lua_nn.h"
#include "nn_rng.h"

#define GENERATOR_MT "luray.nn.Generator"

static nn_rng_t *check_generator(lua_State *L, int arg)
{
    return luaL_checkudata(L, arg, GENERATOR_MT);
}

/* A seed: any Lua integer (its 64 bits), or a float with an integer value. */
static uint64_t check_seed(lua_State *L, int arg)
{
    return (uint64_t)luaL_checkinteger(L, arg);
}

/* C.generator(seed): a new generator. */
static int l_generator(lua_State *L)
{
    uint64_t seed = check_seed(L, 1);
    nn_rng_t *r = lua_newuserdatauv(L, sizeof *r, 0);

    nn_rng_seed(r, seed);
    luaL_setmetatable(L, GENERATOR_MT);
    return 1;
}

/* gen:seed(n): restarts the stream from seed n. */
static int l_generator_seed(lua_State *L)
{
    nn_rng_t *r = check_generator(L, 1);

    nn_rng_seed(r, check_seed(L, 2));
    lua_settop(L, 1);
    return 1;
}

/* gen:state() / gen:set_state(s): the 32 bytes of state as a string, for checkpoints. */
static int l_generator_state(lua_State *L)
{
    nn_rng_t *r = check_generator(L, 1);
    unsigned char b[32];

    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 8; k++)
            b[i * 8 + k] = (unsigned char)(r->s[i] >> (8 * k));
    lua_pushlstring(L, (const char *)b, sizeof b);
    return 1;
}

static int l_generator_set_state(lua_State *L)
{
    nn_rng_t *r = check_generator(L, 1);
    size_t len;
    const unsigned char *b = (const unsigned char *)luaL_checklstring(L, 2, &len);
    uint64_t s[4] = {0};

    luaL_argcheck(L, len == 32, 2, "expected the 32-byte string gen:state() returned");
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 8; k++)
            s[i] |= (uint64_t)b[i * 8 + k] << (8 * k);
    luaL_argcheck(L, s[0] | s[1] | s[2] | s[3], 2, "an all-zero state is not valid");
    for (int i = 0; i < 4; i++)
        r->s[i] = s[i];
    lua_settop(L, 1);
    return 1;
}

/* C.rand(gen, shape [, lo, hi]): uniform in [lo, hi), default [0, 1). */
static int l_rand(lua_State *L)
{
    nn_rng_t *r = check_generator(L, 1);
    float lo = (float)luaL_optnumber(L, 3, 0.0), hi = (float)luaL_optnumber(L, 4, 1.0);
    nn_shape_t s;

    nn_check_shape(L, 2, &s);
    luaL_argcheck(L, lo <= hi, 3, "lower bound above the upper bound");
    luray_tensor_t *t = nn_push_new(L, LURAY_DTYPE_FLOAT32, &s, false);
    nn_rng_fill_uniform(r, t->data, nn_shape_numel(&s), lo, hi);
    return 1;
}

/* C.randn(gen, shape [, mean, std]): normal, default mean 0 and standard deviation 1. */
static int l_randn(lua_State *L)
{
    nn_rng_t *r = check_generator(L, 1);
    float mean = (float)luaL_optnumber(L, 3, 0.0), std = (float)luaL_optnumber(L, 4, 1.0);
    nn_shape_t s;

    nn_check_shape(L, 2, &s);
    luaL_argcheck(L, std >= 0, 4, "standard deviation must be non-negative");
    luray_tensor_t *t = nn_push_new(L, LURAY_DTYPE_FLOAT32, &s, false);
    nn_rng_fill_normal(r, t->data, nn_shape_numel(&s), mean, std);
    return 1;
}

/* C.dropout_mask(gen, shape, p): 0 with probability p, else 1 / (1 - p). */
static int l_dropout_mask(lua_State *L)
{
    nn_rng_t *r = check_generator(L, 1);
    lua_Number p = luaL_checknumber(L, 3);
    nn_shape_t s;

    nn_check_shape(L, 2, &s);
    luaL_argcheck(L, p >= 0 && p <= 1, 3, "dropout probability must be in [0, 1]");
    luray_tensor_t *t = nn_push_new(L, LURAY_DTYPE_FLOAT32, &s, false);
    nn_rng_dropout_mask(r, t->data, nn_shape_numel(&s), (float)p);
    return 1;
}

/* C.randperm(gen, n): the positions 1..n in a random order (int64). */
static int l_randperm(lua_State *L)
{
    nn_rng_t *r = check_generator(L, 1);
    lua_Integer n = luaL_checkinteger(L, 2);
    nn_shape_t s = {1, {n}};
    int64_t *v;

    luaL_argcheck(L, n >= 0, 2, "count must be non-negative");
    v = nn_push_new(L, LURAY_DTYPE_INT64, &s, false)->data;
    /* Fisher-Yates; j from the high bits of a 64x64-bit product (Lemire), not a biased % */
    for (int64_t i = 0; i < n; i++)
        v[i] = i + 1;
    for (int64_t i = n - 1; i > 0; i--) {
        unsigned __int128 m = (unsigned __int128)nn_rng_next(r) * (uint64_t)(i + 1);
        int64_t j = (int64_t)(m >> 64), t = v[i];

        v[i] = v[j];
        v[j] = t;
    }
    return 1;
}

void nn_open_random(lua_State *L, int idx)
{
    static const luaL_Reg methods[] = {
        {"seed", l_generator_seed},
        {"state", l_generator_state},
        {"set_state", l_generator_set_state},
        {NULL, NULL},
    };
    static const luaL_Reg funcs[] = {
        {"generator", l_generator},
        {"rand", l_rand},
        {"randn", l_randn},
        {"dropout_mask", l_dropout_mask},
        {"randperm", l_randperm},
        {NULL, NULL},
    };

    if (luaL_newmetatable(L, GENERATOR_MT)) {
        luaL_setfuncs(L, methods, 0);
        lua_pushvalue(L, -1);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    lua_pushvalue(L, idx);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
}
