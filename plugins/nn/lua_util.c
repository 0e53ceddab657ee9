/* Argument checkers and result allocation shared by the nn plugin's Lua binding (lua_nn.h). */
#include <math.h>
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
                                              nn_dtype_name(t->dtype)));
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

    if (t)
        nn_shape_of(t, s);
    else
        nn_check_dims(L, arg, s);
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
