/* Lua values to JSON text (written by hand: one pass, no intermediate tree) and JSON text to Lua
 * values (parsed by cJSON). */
#include "lua_json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <lauxlib.h>

#include "serve.h"

#define JSON_MAX_DEPTH 64

typedef struct {
    lua_State *L;
    sbuf_t *out;
    char *err;
    size_t errlen;
    char path[256]; /* where the encoder is, for errors: response.items[3] */
} enc_t;

static void put_string(sbuf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    sbuf_reserve(b, n + 2);
    sbuf_putc(b, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        sbuf_put(b, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': sbuf_put(b, "\\\"", 2); break;
        case '\\': sbuf_put(b, "\\\\", 2); break;
        case '\n': sbuf_put(b, "\\n", 2); break;
        case '\r': sbuf_put(b, "\\r", 2); break;
        case '\t': sbuf_put(b, "\\t", 2); break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            sbuf_put(b, u, 6);
        }
        }
    }
    sbuf_put(b, s + run, n - run);
    sbuf_putc(b, '"');
}

/* The shortest of %.15g, %.16g and %.17g that reads back as v. */
static void put_double(sbuf_t *b, double v)
{
    if (!isfinite(v)) {
        sbuf_put(b, "null", 4);
        return;
    }
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "%.15g", v);
    if (strtod(tmp, NULL) != v)
        n = snprintf(tmp, sizeof(tmp), "%.16g", v);
    if (strtod(tmp, NULL) != v)
        n = snprintf(tmp, sizeof(tmp), "%.17g", v);
    /* keep it a number JSON readers take as a float where Lua had one */
    sbuf_put(b, tmp, (size_t)n);
}

static void put_integer(sbuf_t *b, lua_Integer v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%lld", (long long)v);
    sbuf_put(b, tmp, (size_t)n);
}

static int fail(enc_t *e, const char *what)
{
    snprintf(e->err, e->errlen, "value%s: %s", e->path, what);
    return -1;
}

static double tensor_at(const luray_tensor_t *t, int64_t off)
{
    switch (t->dtype) {
    case LURAY_DTYPE_FLOAT32: return ((const float *)t->data)[off];
    case LURAY_DTYPE_FLOAT64: return ((const double *)t->data)[off];
    case LURAY_DTYPE_INT32: return ((const int32_t *)t->data)[off];
    case LURAY_DTYPE_INT64: return (double)((const int64_t *)t->data)[off];
    case LURAY_DTYPE_UINT8: return ((const uint8_t *)t->data)[off];
    default: return ((const bool *)t->data)[off];
    }
}

static void put_tensor_dim(sbuf_t *b, const luray_tensor_t *t, int dim, int64_t off)
{
    sbuf_putc(b, '[');
    for (int64_t i = 0; i < t->shape[dim]; i++) {
        if (i)
            sbuf_putc(b, ',');
        int64_t at = off + i * t->strides[dim];
        if (dim + 1 < t->ndim) {
            put_tensor_dim(b, t, dim + 1, at);
        } else if (t->dtype == LURAY_DTYPE_BOOL) {
            sbuf_puts(b, tensor_at(t, at) != 0 ? "true" : "false");
        } else if (t->dtype == LURAY_DTYPE_FLOAT32 || t->dtype == LURAY_DTYPE_FLOAT64) {
            put_double(b, tensor_at(t, at));
        } else {
            put_integer(b, (lua_Integer)tensor_at(t, at));
        }
    }
    sbuf_putc(b, ']');
}

/* 1..n with nothing else, n >= 1 */
static lua_Integer array_length(lua_State *L, int idx)
{
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    if (n == 0)
        return 0;
    lua_Integer count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (++count > n) {
            lua_pop(L, 1);
            return 0;
        }
    }
    return count == n ? n : 0;
}

static int encode(enc_t *e, int idx, int depth);

static int encode_table(enc_t *e, int idx, int depth)
{
    lua_State *L = e->L;
    size_t path_len = strlen(e->path);
    lua_Integer n = array_length(L, idx);
    if (n > 0) {
        sbuf_putc(e->out, '[');
        for (lua_Integer i = 1; i <= n; i++) {
            if (i > 1)
                sbuf_putc(e->out, ',');
            snprintf(e->path + path_len, sizeof(e->path) - path_len, "[%lld]", (long long)i);
            lua_rawgeti(L, idx, i);
            int rc = encode(e, lua_gettop(L), depth + 1);
            lua_pop(L, 1);
            if (rc)
                return rc;
        }
        e->path[path_len] = 0;
        sbuf_putc(e->out, ']');
        return 0;
    }
    sbuf_putc(e->out, '{');
    bool first = true;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int kt = lua_type(L, -2);
        if (kt != LUA_TSTRING && kt != LUA_TNUMBER) {
            lua_pop(L, 2);
            return fail(e, "a table key must be a string or a number to be sent as JSON");
        }
        if (!first)
            sbuf_putc(e->out, ',');
        first = false;
        size_t kl;
        lua_pushvalue(L, -2); /* tostring a copy: lua_next needs the key as it is */
        const char *k = lua_tolstring(L, -1, &kl);
        put_string(e->out, k, kl);
        snprintf(e->path + path_len, sizeof(e->path) - path_len, ".%.*s", (int)(kl > 64 ? 64 : kl),
                 k);
        lua_pop(L, 1);
        sbuf_putc(e->out, ':');
        int rc = encode(e, lua_gettop(L), depth + 1);
        lua_pop(L, 1);
        if (rc) {
            lua_pop(L, 1);
            return rc;
        }
    }
    e->path[path_len] = 0;
    sbuf_putc(e->out, '}');
    return 0;
}

static int encode(enc_t *e, int idx, int depth)
{
    lua_State *L = e->L;
    if (depth > JSON_MAX_DEPTH)
        return fail(e, "nested deeper than 64 levels (a table that holds itself?)");
    switch (lua_type(L, idx)) {
    case LUA_TNIL: sbuf_put(e->out, "null", 4); return 0;
    case LUA_TBOOLEAN: sbuf_puts(e->out, lua_toboolean(L, idx) ? "true" : "false"); return 0;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            put_integer(e->out, lua_tointeger(L, idx));
        else
            put_double(e->out, lua_tonumber(L, idx));
        return 0;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        put_string(e->out, s, n);
        return 0;
    }
    case LUA_TTABLE:
        luaL_checkstack(L, 8, "JSON nesting");
        return encode_table(e, idx, depth);
    case LUA_TUSERDATA: {
        luray_tensor_t *t = serve_host->tensor_test(L, idx);
        if (!t)
            return fail(e, "this userdata cannot be sent as JSON");
        if (t->ndim == 0) {
            if (t->dtype == LURAY_DTYPE_FLOAT32 || t->dtype == LURAY_DTYPE_FLOAT64)
                put_double(e->out, tensor_at(t, 0));
            else
                put_integer(e->out, (lua_Integer)tensor_at(t, 0));
            return 0;
        }
        put_tensor_dim(e->out, t, 0, 0);
        return 0;
    }
    default: {
        char what[96];
        snprintf(what, sizeof(what), "a %s cannot be sent as JSON", luaL_typename(L, idx));
        return fail(e, what);
    }
    }
}

int serve_json_encode(lua_State *L, int idx, sbuf_t *out, char *err, size_t errlen)
{
    enc_t e = {.L = L, .out = out, .err = err, .errlen = errlen};
    e.path[0] = 0;
    int rc = encode(&e, lua_absindex(L, idx), 0);
    if (!rc && out->oom)
        return fail(&e, "out of memory");
    return rc;
}

static void push_json(lua_State *L, const cJSON *j)
{
    luaL_checkstack(L, 4, "JSON too deep");
    if (cJSON_IsObject(j)) {
        lua_newtable(L);
        const cJSON *it;
        cJSON_ArrayForEach(it, j)
        {
            push_json(L, it);
            lua_setfield(L, -2, it->string);
        }
    } else if (cJSON_IsArray(j)) {
        lua_createtable(L, cJSON_GetArraySize(j), 0);
        int i = 1;
        const cJSON *it;
        cJSON_ArrayForEach(it, j)
        {
            push_json(L, it);
            lua_rawseti(L, -2, i++);
        }
    } else if (cJSON_IsString(j)) {
        lua_pushstring(L, j->valuestring);
    } else if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d == floor(d) && d > -9e15 && d < 9e15)
            lua_pushinteger(L, (lua_Integer)d);
        else
            lua_pushnumber(L, d);
    } else if (cJSON_IsBool(j)) {
        lua_pushboolean(L, cJSON_IsTrue(j));
    } else {
        lua_pushnil(L);
    }
}

static int depth_ok(const cJSON *j, int depth)
{
    if (depth > JSON_MAX_DEPTH)
        return 0;
    for (const cJSON *it = j ? j->child : NULL; it; it = it->next)
        if (!depth_ok(it, depth + 1))
            return 0;
    return 1;
}

int serve_json_push(lua_State *L, const char *text, size_t len, char *err, size_t errlen)
{
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!j) {
        const char *bad = cJSON_GetErrorPtr();
        size_t at = bad && bad >= text && bad <= text + len ? (size_t)(bad - text) : 0;
        snprintf(err, errlen, "invalid JSON at byte %zu", at);
        return -1;
    }
    if (!depth_ok(j, 0)) {
        cJSON_Delete(j);
        snprintf(err, errlen, "JSON nested deeper than %d levels", JSON_MAX_DEPTH);
        return -1;
    }
    push_json(L, j);
    cJSON_Delete(j);
    return 0;
}
