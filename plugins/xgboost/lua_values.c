/* Conversions shared by the xgboost bindings: libxgboost's errors as Lua errors, float32
 * arrays from tensors, Data columns and Lua lists, float32 tensors from libxgboost's results. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "../data/lua_data.h"
#include "frame.h"
#include "lua_xgb.h"

int xgb_raise(lua_State *L, const char *where)
{
    const char *msg = XGBGetLastError();
    if (msg == NULL || *msg == '\0')
        msg = "unknown error";
    /* "[12:34:56] " time stamp first, a stack trace last: neither helps the reader. */
    if (msg[0] == '[') {
        const char *close = strstr(msg, "] ");
        if (close != NULL && close - msg < 16)
            msg = close + 2;
    }
    const char *trace = strstr(msg, "\nStack trace:");
    size_t len = trace != NULL ? (size_t)(trace - msg) : strlen(msg);
    while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
        len--;
    lua_pushfstring(L, "%s: ", where);
    lua_pushlstring(L, msg, len);
    lua_concat(L, 2);
    return lua_error(L);
}

static double tensor_value(const luray_tensor_t *t, int64_t i)
{
    int64_t off = i * t->strides[0];
    switch (t->dtype) {
    case LURAY_DTYPE_FLOAT32: return ((const float *)t->data)[off];
    case LURAY_DTYPE_FLOAT64: return ((const double *)t->data)[off];
    case LURAY_DTYPE_INT32: return ((const int32_t *)t->data)[off];
    case LURAY_DTYPE_INT64: return (double)((const int64_t *)t->data)[off];
    default: return ((const uint8_t *)t->data)[off];
    }
}

static float *tensor_floats(const luray_tensor_t *t, const char *what, int64_t *n, char *err,
                            size_t errlen)
{
    if (t->ndim != 1 && !(t->ndim == 2 && t->shape[1] == 1)) {
        snprintf(err, errlen, "the %s tensor has %d dimensions; it needs one number per row",
                 what, t->ndim);
        return NULL;
    }
    float *v = malloc((size_t)(t->shape[0] ? t->shape[0] : 1) * sizeof(float));
    if (v == NULL) {
        snprintf(err, errlen, "out of memory for the %s values", what);
        return NULL;
    }
    for (int64_t i = 0; i < t->shape[0]; i++)
        v[i] = (float)tensor_value(t, i);
    *n = t->shape[0];
    return v;
}

static float *list_floats(lua_State *L, int idx, const char *what, int64_t *n, char *err,
                          size_t errlen)
{
    int64_t len = (int64_t)lua_rawlen(L, idx);
    float *v = malloc((size_t)(len ? len : 1) * sizeof(float));
    if (v == NULL) {
        snprintf(err, errlen, "out of memory for the %s values", what);
        return NULL;
    }
    for (int64_t i = 0; i < len; i++) {
        int isnum;
        lua_rawgeti(L, idx, (lua_Integer)i + 1);
        double x = lua_tonumberx(L, -1, &isnum);
        int type = lua_type(L, -1);
        lua_pop(L, 1);
        if (!isnum) {
            snprintf(err, errlen, "%s value %lld is a %s, expected a number", what,
                     (long long)i + 1, lua_typename(L, type));
            free(v);
            return NULL;
        }
        v[i] = (float)x;
    }
    *n = len;
    return v;
}

float *xgb_floats_arg(lua_State *L, int idx, const char *what, int64_t *n, char *err,
                      size_t errlen)
{
    luray_tensor_t *t = xgb_host->tensor_test(L, idx);
    if (t != NULL)
        return tensor_floats(t, what, n, err, errlen);
    data_column_t *col = luaL_testudata(L, idx, DATA_COLUMN_MT);
    if (col != NULL) {
        const dcol_t *c = &col->c;
        float *v;
        return xgb_floats_gather(&c, 1, what, &v, n, err, errlen) == 0 ? v : NULL;
    }
    if (lua_type(L, idx) == LUA_TTABLE)
        return list_floats(L, idx, what, n, err, errlen);
    snprintf(err, errlen, "%s: expected a tensor, a data.Column or a list of numbers, got %s",
             what, luaL_typename(L, idx));
    return NULL;
}

void xgb_push_float_tensor(lua_State *L, const float *data, int ndim, const int64_t *shape)
{
    luray_tensor_t *t = xgb_host->tensor_push(L);
    if (xgb_host->tensor_init(t, LURAY_DTYPE_FLOAT32, ndim, shape, false) != 0)
        luaL_error(L, "out of memory for a result tensor");
    if (t->nbytes > 0)
        memcpy(t->data, data, t->nbytes);
}
