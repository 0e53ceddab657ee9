/* The data plugin's I/O bindings: C.csv_infer, read_csv, json_infer, read_json, write_csv and
 * write_json over the plain C readers and writers. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "csv_read.h"
#include "json_read.h"
#include "lua_data.h"
#include "write.h"

#define IO_SCHEMA_MT "data.io.Schema"
#define IO_COLUMNS_MT "data.io.Columns"

/* ---- guards ---- */

/* Memory the C side hands over lives in guard userdata until a Block owns it, so an error raised
 * on the way never leaks it. */

static int l_schema_gc(lua_State *L)
{
    data_schema_close(luaL_checkudata(L, 1, IO_SCHEMA_MT));
    return 0;
}

/* Pushes an empty schema that Lua frees if it is dropped. */
static data_schema_t *push_schema(lua_State *L)
{
    data_schema_t *s = lua_newuserdatauv(L, sizeof(*s), 0);
    memset(s, 0, sizeof(*s));
    luaL_setmetatable(L, IO_SCHEMA_MT);
    return s;
}

typedef struct {
    int n;
    dcol_t cols[];
} io_columns_t;

static int l_columns_gc(lua_State *L)
{
    io_columns_t *g = luaL_checkudata(L, 1, IO_COLUMNS_MT);
    for (int k = 0; k < g->n; k++)
        dcol_free(&g->cols[k]);
    g->n = 0;
    return 0;
}

/* Pushes n empty columns that Lua frees unless a Block takes them over (which zeroes them). */
static dcol_t *push_columns(lua_State *L, int n)
{
    io_columns_t *g = lua_newuserdatauv(L, sizeof(*g) + (size_t)n * sizeof(dcol_t), 0);
    g->n = n;
    memset(g->cols, 0, (size_t)n * sizeof(dcol_t));
    luaL_setmetatable(L, IO_COLUMNS_MT);
    return g->cols;
}

/* ---- arguments ---- */

/* Pushes opts[key] (nil when opts is absent or nil) and returns its type. */
static int opt_field(lua_State *L, int opts, const char *key)
{
    if (lua_isnoneornil(L, opts)) {
        lua_pushnil(L);
        return LUA_TNIL;
    }
    return lua_getfield(L, opts, key);
}

static void check_opts_table(lua_State *L, int opts, const char *what)
{
    if (!lua_isnoneornil(L, opts) && !lua_istable(L, opts))
        luaL_error(L, "%s: options must be a table, got a %s", what, luaL_typename(L, opts));
}

/* opts[key] as one byte: a one-character string (or, if none_ok, "" for none: -1). */
static int opt_byte(lua_State *L, int opts, const char *key, int dflt, bool none_ok,
                    const char *what)
{
    int t = opt_field(L, opts, key);
    int v = dflt;
    if (t != LUA_TNIL) {
        size_t len = 0;
        const char *s = t == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
        if (s == NULL || len > 1 || (len == 0 && !none_ok))
            luaL_error(L, "%s: option '%s' must be one character", what, key);
        v = len == 1 ? (unsigned char)s[0] : -1;
    }
    lua_pop(L, 1);
    return v;
}

static bool opt_bool(lua_State *L, int opts, const char *key, bool dflt, const char *what)
{
    int t = opt_field(L, opts, key);
    bool v = dflt;
    if (t != LUA_TNIL) {
        if (t != LUA_TBOOLEAN)
            luaL_error(L, "%s: option '%s' must be a boolean", what, key);
        v = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

static int64_t opt_rows(lua_State *L, int opts, const char *what)
{
    int t = opt_field(L, opts, "infer_rows");
    int64_t v = 10000;
    if (t != LUA_TNIL) {
        int ok;
        v = (int64_t)lua_tointegerx(L, -1, &ok);
        if (!ok || v < 1)
            luaL_error(L, "%s: option 'infer_rows' must be a positive integer", what);
    }
    lua_pop(L, 1);
    return v;
}

static void check_csv_opts(lua_State *L, int opts, csv_opts_t *o, const char *what)
{
    check_opts_table(L, opts, what);
    csv_opts_init(o);
    o->delimiter = opt_byte(L, opts, "delimiter", ',', false, what);
    o->quote = opt_byte(L, opts, "quote", '"', true, what);
    o->header = opt_bool(L, opts, "header", true, what);
    o->infer_rows = opt_rows(L, opts, what);
    char err[256];
    if (csv_opts_check(o, what, err, sizeof(err)) != 0)
        luaL_error(L, "%s", err);
}

/* opts.columns ({name = type}) as overrides in a scratch userdata it pushes; the names stay
 * valid while opts is on the stack. */
static data_override_t *check_overrides(lua_State *L, int opts, const char *what, int *n)
{
    *n = 0;
    int t = opt_field(L, opts, "columns");
    int cols = lua_gettop(L);
    if (t != LUA_TNIL && t != LUA_TTABLE)
        luaL_error(L, "%s: option 'columns' must be a table of name = type", what);
    if (t == LUA_TTABLE)
        for (lua_pushnil(L); lua_next(L, cols) != 0; lua_pop(L, 1))
            (*n)++;
    data_override_t *ov = lua_newuserdatauv(L, (size_t)(*n ? *n : 1) * sizeof(*ov), 0);
    int k = 0;
    if (t == LUA_TTABLE)
        for (lua_pushnil(L); lua_next(L, cols) != 0; lua_pop(L, 1)) {
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
                luaL_error(L, "%s: option 'columns' must map column names to type names", what);
            ov[k].name = lua_tostring(L, -2);
            if (dcol_type_parse(lua_tostring(L, -1), &ov[k].type) != 0)
                luaL_error(L, "%s: column '%s': unknown type '%s'", what, ov[k].name,
                           lua_tostring(L, -1));
            k++;
        }
    lua_remove(L, cols); /* opts.columns stays referenced by opts */
    return ov;
}

/* "tensor(2,3)" into a row shape; 0, or -1 when the text is not one. */
static int parse_tensor_type(const char *s, int *ndim, int64_t *shape)
{
    if (strncmp(s, "tensor(", 7) != 0)
        return -1;
    s += 7;
    *ndim = 0;
    for (;;) {
        char *end;
        long long d = strtoll(s, &end, 10);
        if (end == s || d < 1 || *ndim == DCOL_MAX_DIMS)
            return -1;
        shape[(*ndim)++] = d;
        if (*end == ')' && end[1] == '\0')
            return 0;
        if (*end != ',')
            return -1;
        s = end + 1;
    }
}

/* The {names = {...}, types = {...}} table at idx as a schema it pushes. */
static data_schema_t *check_schema(lua_State *L, int idx, const char *what)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    if (lua_getfield(L, idx, "names") != LUA_TTABLE || lua_getfield(L, idx, "types") != LUA_TTABLE)
        luaL_error(L, "%s: the schema needs lists 'names' and 'types'", what);
    int names = lua_gettop(L) - 1, types = names + 1;
    lua_Integer n = (lua_Integer)lua_rawlen(L, names);
    if (n < 1 || n > INT_MAX / DCOL_MAX_DIMS || (lua_Integer)lua_rawlen(L, types) != n)
        luaL_error(L, "%s: the schema's names and types must be lists of one length", what);
    data_schema_t *s = push_schema(L);
    if (data_schema_init(s, (int)n) != 0)
        luaL_error(L, "%s: out of memory", what);
    for (int c = 0; c < (int)n; c++) {
        size_t len;
        if (lua_rawgeti(L, names, c + 1) != LUA_TSTRING || lua_rawgeti(L, types, c + 1) !=
            LUA_TSTRING)
            luaL_error(L, "%s: schema column %d needs a name and a type name", what, c + 1);
        const char *name = lua_tolstring(L, -2, &len), *type = lua_tostring(L, -1);
        if (data_schema_set_name(s, c, name, len) != 0)
            luaL_error(L, "%s: out of memory", what);
        if (parse_tensor_type(type, &s->ndims[c], &s->shapes[(size_t)c * DCOL_MAX_DIMS]) == 0)
            s->types[c] = DCOL_TENSOR;
        else if (dcol_type_parse(type, &s->types[c]) != 0 || s->types[c] == DCOL_TENSOR)
            luaL_error(L, "%s: schema column '%s' has bad type '%s'", what, name, type);
        lua_pop(L, 2);
    }
    lua_replace(L, names); /* keep just the schema userdata */
    lua_pop(L, 1);
    return s;
}

/* Pushes {names = {...}, types = {...}}; tensor types read "tensor(2,3)". */
static void push_schema_table(lua_State *L, const data_schema_t *s)
{
    lua_createtable(L, 0, 2);
    lua_createtable(L, s->ncols, 0);
    lua_createtable(L, s->ncols, 0);
    for (int c = 0; c < s->ncols; c++) {
        lua_pushstring(L, s->names[c]);
        lua_rawseti(L, -3, c + 1);
        if (s->types[c] != DCOL_TENSOR) {
            lua_pushstring(L, dcol_type_name(s->types[c]));
        } else {
            luaL_Buffer b;
            luaL_buffinit(L, &b);
            luaL_addstring(&b, "tensor(");
            for (int d = 0; d < s->ndims[c]; d++) {
                lua_pushfstring(L, d ? ",%I" : "%I",
                                (lua_Integer)s->shapes[(size_t)c * DCOL_MAX_DIMS + d]);
                luaL_addvalue(&b);
            }
            luaL_addchar(&b, ')');
            luaL_pushresult(&b);
        }
        lua_rawseti(L, -2, c + 1);
    }
    lua_setfield(L, -3, "types");
    lua_setfield(L, -2, "names");
}

/* ---- the functions ---- */

/* C.csv_infer(path, opts) -> {names = {...}, types = {...}} */
static int l_csv_infer(lua_State *L)
{
    lua_settop(L, 2);
    const char *path = luaL_checkstring(L, 1);
    csv_opts_t o;
    int nov;
    check_csv_opts(L, 2, &o, "csv_infer");
    data_override_t *ov = check_overrides(L, 2, "csv_infer", &nov);
    data_schema_t *s = push_schema(L);
    char err[512];
    if (csv_infer_file(path, &o, ov, nov, s, err, sizeof(err)) != 0)
        return luaL_error(L, "%s", err);
    push_schema_table(L, s);
    return 1;
}

/* C.json_infer(path, opts) -> {names = {...}, types = {...}} */
static int l_json_infer(lua_State *L)
{
    lua_settop(L, 2);
    const char *path = luaL_checkstring(L, 1);
    int nov;
    check_opts_table(L, 2, "json_infer");
    int64_t rows = opt_rows(L, 2, "json_infer");
    data_override_t *ov = check_overrides(L, 2, "json_infer", &nov);
    data_schema_t *s = push_schema(L);
    char err[512];
    if (json_infer_file(path, rows, ov, nov, s, err, sizeof(err)) != 0)
        return luaL_error(L, "%s", err);
    push_schema_table(L, s);
    return 1;
}

/* The byte range arguments: start, and stop (nil: to the end). */
static void check_range(lua_State *L, int64_t *start, int64_t *stop)
{
    *start = (int64_t)luaL_checkinteger(L, 2);
    *stop = (int64_t)luaL_optinteger(L, 3, LUA_MAXINTEGER);
}

/* C.read_csv(path, start, stop, schema, opts) -> Block */
static int l_read_csv(lua_State *L)
{
    lua_settop(L, 5);
    const char *path = luaL_checkstring(L, 1);
    int64_t start, stop;
    check_range(L, &start, &stop);
    csv_opts_t o;
    check_csv_opts(L, 5, &o, "read_csv");
    data_schema_t *s = check_schema(L, 4, "read_csv");
    dcol_t *cols = push_columns(L, s->ncols);
    char err[512];
    if (csv_read_file(path, start, stop, s, &o, cols, err, sizeof(err)) != 0)
        return luaL_error(L, "%s", err);
    data_block_push_owned(L, s->ncols, (const char *const *)s->names, cols);
    return 1;
}

/* C.read_json(path, start, stop, schema) -> Block */
static int l_read_json(lua_State *L)
{
    lua_settop(L, 4);
    const char *path = luaL_checkstring(L, 1);
    int64_t start, stop;
    check_range(L, &start, &stop);
    data_schema_t *s = check_schema(L, 4, "read_json");
    dcol_t *cols = push_columns(L, s->ncols);
    char err[512];
    if (json_read_file(path, start, stop, s, cols, err, sizeof(err)) != 0)
        return luaL_error(L, "%s", err);
    data_block_push_owned(L, s->ncols, (const char *const *)s->names, cols);
    return 1;
}

/* C.write_csv(block, path, opts) -> bytes written */
static int l_write_csv(lua_State *L)
{
    lua_settop(L, 3);
    data_block_t *b = data_block_check(L, 1);
    const char *path = luaL_checkstring(L, 2);
    check_opts_table(L, 3, "write_csv");
    csv_write_opts_t o;
    csv_write_opts_init(&o);
    o.delimiter = opt_byte(L, 3, "delimiter", ',', false, "write_csv");
    o.header = opt_bool(L, 3, "header", true, "write_csv");
    int64_t bytes;
    char err[512];
    if (data_write_csv(path, b->ncols, (const char *const *)b->names,
                       (const dcol_t *const *)b->cols, &o, &bytes, err, sizeof(err)) != 0)
        return luaL_error(L, "%s", err);
    lua_pushinteger(L, (lua_Integer)bytes);
    return 1;
}

/* C.write_json(block, path) -> bytes written */
static int l_write_json(lua_State *L)
{
    data_block_t *b = data_block_check(L, 1);
    const char *path = luaL_checkstring(L, 2);
    int64_t bytes;
    char err[512];
    if (data_write_json(path, b->ncols, (const char *const *)b->names,
                        (const dcol_t *const *)b->cols, &bytes, err, sizeof(err)) != 0)
        return luaL_error(L, "%s", err);
    lua_pushinteger(L, (lua_Integer)bytes);
    return 1;
}

static const luaL_Reg io_funcs[] = {
    {"csv_infer", l_csv_infer},   {"read_csv", l_read_csv},   {"json_infer", l_json_infer},
    {"read_json", l_read_json},   {"write_csv", l_write_csv}, {"write_json", l_write_json},
    {NULL, NULL},
};

void data_io_open(lua_State *L, int module_idx)
{
    module_idx = lua_absindex(L, module_idx);
    luaL_newmetatable(L, IO_SCHEMA_MT);
    lua_pushcfunction(L, l_schema_gc);
    lua_setfield(L, -2, "__gc");
    luaL_newmetatable(L, IO_COLUMNS_MT);
    lua_pushcfunction(L, l_columns_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 2);
    lua_pushvalue(L, module_idx);
    luaL_setfuncs(L, io_funcs, 0);
    lua_pop(L, 1);
}
