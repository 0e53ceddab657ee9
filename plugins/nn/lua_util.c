/* Argument checkers and result allocation shared by the nn plugin's Lua binding (lua_nn.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "lua_nn.h"
#include "nn_index.h"

bool nn_is_contiguous(const luray_tensor_t *t)
{
    int64_t step = 1;

    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->strides[i] != step)
            return false;
        step *= t->shape[i];
    }
    return true;
}

void nn_shape_of(const luray_tensor_t *t, nn_shape_t *s)
{
    s->ndim = t->ndim;
    for (int i = 0; i < t->ndim; i++)
        s->dim[i] = t->shape[i];
}

const char *nn_push_shape_string(lua_State *L, const nn_shape_t *s)
{
    luaL_Buffer b;
    char num[32];

    luaL_buffinit(L, &b);
    luaL_addchar(&b, '{');
    for (int i = 0; i < s->ndim; i++) {
        snprintf(num, sizeof num, i ? ", %lld" : "%lld", (long long)s->dim[i]);
        luaL_addstring(&b, num);
    }
    luaL_addchar(&b, '}');
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

static const char *dtype_name(int dtype)
{
    static const char *const names[] = {"float32", "float64", "int32", "int64", "uint8", "bool"};

    return dtype >= 0 && dtype < LURAY_DTYPE_COUNT ? names[dtype] : "unknown";
}

luray_tensor_t *nn_check_tensor(lua_State *L, int arg)
{
    luray_tensor_t *t = nn_host->tensor_test(L, arg);

    if (!t)
        luaL_typeerror(L, arg, "tensor");
    if (!t->data && t->ndim == 0)
        luaL_argerror(L, arg, "tensor is closed");
    return t;
}

luray_tensor_t *nn_check_f32(lua_State *L, int arg)
{
    luray_tensor_t *t = nn_check_tensor(L, arg);

    if (t->dtype != LURAY_DTYPE_FLOAT32)
        luaL_argerror(L, arg, lua_pushfstring(L, "expected a float32 tensor, got %s",
                                              dtype_name(t->dtype)));
    if (!nn_is_contiguous(t))
        luaL_argerror(L, arg, "expected a contiguous tensor");
    return t;
}

const float *nn_check_operand(lua_State *L, int arg, float *scalar, nn_shape_t *s)
{
    luray_tensor_t *t;

    if (lua_type(L, arg) == LUA_TNUMBER) {
        *scalar = (float)lua_tonumber(L, arg);
        s->ndim = 0;
        return scalar;
    }
    t = nn_check_f32(L, arg);
    nn_shape_of(t, s);
    return t->data;
}

void nn_check_writable(lua_State *L, const luray_tensor_t *t, int arg)
{
    if (t->readonly)
        luaL_argerror(L, arg, "tensor is read-only (a view of the object store); copy it first");
}

void nn_check_shape(lua_State *L, int arg, nn_shape_t *s)
{
    luray_tensor_t *t = nn_host->tensor_test(L, arg);

    if (t) {
        nn_shape_of(t, s);
        return;
    }
    if (lua_isinteger(L, arg)) {
        s->ndim = 1;
        s->dim[0] = lua_tointeger(L, arg);
        if (s->dim[0] < 0)
            luaL_argerror(L, arg, "dimensions must be non-negative");
        return;
    }
    luaL_checktype(L, arg, LUA_TTABLE);
    lua_Integer n = (lua_Integer)lua_rawlen(L, arg);
    if (n > NN_MAX_DIMS)
        luaL_argerror(L, arg, lua_pushfstring(L, "a shape has at most %d dimensions, got %I",
                                              NN_MAX_DIMS, n));
    s->ndim = (int)n;
    for (lua_Integer i = 1; i <= n; i++) {
        int isnum;
        lua_Integer v;

        lua_rawgeti(L, arg, i);
        v = lua_tointegerx(L, -1, &isnum);
        lua_pop(L, 1);
        if (!isnum || v < 0)
            luaL_argerror(L, arg, lua_pushfstring(L, "shape[%I] is not a non-negative integer",
                                                  i));
        s->dim[i - 1] = v;
    }
}

int nn_check_axis(lua_State *L, int arg, int ndim)
{
    lua_Integer d = luaL_checkinteger(L, arg);

    if (d < 0)
        d += ndim + 1;
    if (d < 1 || d > ndim)
        luaL_argerror(L, arg, lua_pushfstring(L, "dimension %I out of range for a %d-dimensional "
                                                 "tensor", luaL_checkinteger(L, arg), ndim));
    return (int)d - 1;
}

luray_tensor_t *nn_push_new(lua_State *L, int dtype, const nn_shape_t *s, bool zero)
{
    luray_tensor_t *t = nn_host->tensor_push(L);
    int rc = nn_host->tensor_init(t, dtype, s->ndim, s->dim, zero);

    if (rc < 0)
        luaL_error(L, "cannot make a tensor of shape %s: %s", nn_push_shape_string(L, s),
                   nn_host->strerror(rc));
    /* The buffer lives outside Lua's heap: advance the collector as if Lua had allocated it, so
     * that dropped tensors are freed at the pace they are made. */
    if (t->nbytes >= 1024)
        lua_gc(L, LUA_GCSTEP, (int)(t->nbytes >> 10 < INT32_MAX ? t->nbytes >> 10 : INT32_MAX));
    return t;
}

luray_tensor_t *nn_push_out(lua_State *L, int arg, const nn_shape_t *s, bool zero)
{
    luray_tensor_t *t;
    nn_shape_t ts;

    if (lua_isnoneornil(L, arg))
        return nn_push_new(L, LURAY_DTYPE_FLOAT32, s, zero);
    t = nn_check_f32(L, arg);
    nn_check_writable(L, t, arg);
    nn_shape_of(t, &ts);
    if (!nn_shape_eq(&ts, s)) {
        const char *want = nn_push_shape_string(L, s);
        luaL_argerror(L, arg, lua_pushfstring(L, "output tensor has shape %s, expected %s",
                                              nn_push_shape_string(L, &ts), want));
    }
    if (zero)
        memset(t->data, 0, t->nbytes);
    lua_pushvalue(L, arg);
    return t;
}

const int64_t *nn_push_int64(lua_State *L, int arg, const char *what, int64_t *n)
{
    luray_tensor_t *t = nn_check_tensor(L, arg), *out;
    nn_shape_t s;

    nn_shape_of(t, &s);
    *n = nn_shape_numel(&s);
    out = nn_push_new(L, LURAY_DTYPE_INT64, &s, false);
    if (t->dtype == LURAY_DTYPE_FLOAT32 || t->dtype == LURAY_DTYPE_FLOAT64) {
        /* read as float64 first: a float label must be a whole number */
        nn_shape_t flat = {1, {*n}};
        luray_tensor_t *f = nn_push_new(L, LURAY_DTYPE_FLOAT64, &flat, false);
        const double *v = f->data;

        nn_convert(t->data, t->dtype, t->ndim, t->shape, t->strides, f->data,
                   LURAY_DTYPE_FLOAT64);
        for (int64_t i = 0; i < *n; i++) {
            if (v[i] != floor(v[i]) || fabs(v[i]) > 9007199254740992.0)
                luaL_error(L, "%s: element %I is %f, not a whole number", what,
                           (lua_Integer)i + 1, v[i]);
            ((int64_t *)out->data)[i] = (int64_t)v[i];
        }
        lua_pop(L, 1);
    } else {
        nn_convert(t->data, t->dtype, t->ndim, t->shape, t->strides, out->data,
                   LURAY_DTYPE_INT64);
    }
    return out->data;
}
