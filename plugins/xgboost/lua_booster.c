/* xgboost.Booster: libxgboost's model. Parameters pass through as strings; training one round at
 * a time, evaluation text parsed into numbers, predictions as float32 tensors, xgboost's own JSON
 * model files, attributes, and a serializer so a booster travels between tasks as its JSON. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <lua.h>

#include "eval_text.h"
#include "lua_xgb.h"

#define ERR_LEN 512

static const char json_format[] = "{\"format\": \"json\"}";

static const luaL_Reg booster_methods[];
static const luaL_Reg booster_meta[];

/* The metatable is made on first use: a Booster may be decoded before the module is opened. */
static void booster_metatable(lua_State *L)
{
    if (luaL_newmetatable(L, XGB_BOOSTER_MT)) {
        luaL_setfuncs(L, booster_meta, 0);
        lua_newtable(L);
        luaL_setfuncs(L, booster_methods, 0);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
}

xgb_booster_t *xgb_booster_push(lua_State *L)
{
    xgb_booster_t *b = lua_newuserdatauv(L, sizeof(*b), 0);
    b->h = NULL;
    booster_metatable(L);
    luaL_setmetatable(L, XGB_BOOSTER_MT);
    return b;
}

xgb_booster_t *xgb_booster_check(lua_State *L, int idx)
{
    xgb_booster_t *b = luaL_checkudata(L, idx, XGB_BOOSTER_MT);
    if (b->h == NULL)
        luaL_error(L, "the Booster was freed");
    return b;
}

/* A parameter value as xgboost's text: strings as they are, integers plainly, floats in the
 * shortest form that reads back the same, booleans as 1 and 0. NULL for other types. */
static const char *param_text(lua_State *L, int idx, char *buf, size_t len)
{
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        return lua_tostring(L, idx);
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? "1" : "0";
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            snprintf(buf, len, "%lld", (long long)lua_tointeger(L, idx));
        } else {
            double v = lua_tonumber(L, idx);
            snprintf(buf, len, "%.15g", v);
            if (strtod(buf, NULL) != v)
                snprintf(buf, len, "%.17g", v);
        }
        return buf;
    default:
        return NULL;
    }
}

/* Sets parameter key to the value at idx; a list sets each of its values in turn (eval_metric
 * takes several). Raises on a bad value. */
static void set_param(lua_State *L, BoosterHandle h, const char *key, int idx)
{
    char buf[64];
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TTABLE) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
        if (n == 0)
            luaL_error(L, "parameter %s: an empty list (give a value, or several in a list)", key);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, i);
            set_param(L, h, key, -1);
            lua_pop(L, 1);
        }
        return;
    }
    const char *text = param_text(L, idx, buf, sizeof(buf));
    if (text == NULL)
        luaL_error(L, "parameter %s: a %s is not a parameter value (use a string, number, "
                   "boolean or a list of them)", key, luaL_typename(L, idx));
    if (XGBoosterSetParam(h, key, text) != 0)
        xgb_raise(L, lua_pushfstring(L, "XGBoosterSetParam(%s=%s)", key, text));
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Every key = value of the table at idx, keys in sorted order so runs repeat exactly. */
static void set_params(lua_State *L, BoosterHandle h, int idx)
{
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "params: keys must be parameter names (strings), got a %s",
                       luaL_typename(L, -2));
        lua_pop(L, 1);
        n++;
    }
    const char **keys = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof(char *), 0);
    int k = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        keys[k++] = lua_tostring(L, -2); /* the params table keeps it */
        lua_pop(L, 1);
    }
    qsort(keys, (size_t)n, sizeof(char *), key_cmp);
    for (int i = 0; i < n; i++) {
        lua_getfield(L, idx, keys[i]);
        set_param(L, h, keys[i], -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* booster(cache, params): cache a list of DMatrix the booster trains and evaluates on (may be
 * empty), params a table of parameters. */
static int l_booster(lua_State *L)
{
    int ncache = 0;
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        ncache = (int)luaL_len(L, 1);
    }
    DMatrixHandle *cache = lua_newuserdatauv(L, (size_t)(ncache ? ncache : 1) *
                                             sizeof(DMatrixHandle), 0);
    for (int i = 0; i < ncache; i++) {
        lua_rawgeti(L, 1, i + 1);
        if (luaL_testudata(L, -1, XGB_DMATRIX_MT) == NULL)
            return luaL_error(L, "booster: cache entry %d is a %s, expected a DMatrix", i + 1,
                              luaL_typename(L, -1));
        cache[i] = xgb_dmatrix_check(L, -1)->h;
        lua_pop(L, 1);
    }
    xgb_booster_t *b = xgb_booster_push(L);
    if (XGBoosterCreate(cache, (bst_ulong)ncache, &b->h) != 0)
        return xgb_raise(L, "XGBoosterCreate");
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        set_params(L, b->h, 2);
    }
    /* libxgboost checks parameters when it configures the booster, which it does on first
     * use: do it now, so a bad parameter is reported here. It needs data for that. */
    int rounds;
    if (ncache > 0 && XGBoosterBoostedRounds(b->h, &rounds) != 0)
        return xgb_raise(L, "booster: bad parameters");
    return 1;
}

static int l_booster_set_param(lua_State *L)
{
    xgb_booster_t *b = xgb_booster_check(L, 1);
    if (lua_type(L, 2) == LUA_TTABLE) {
        set_params(L, b->h, 2);
        return 0;
    }
    set_param(L, b->h, luaL_checkstring(L, 2), 3);
    return 0;
}

/* b:update(dtrain, iteration): one boosting round (iterations count from 0). */
static int l_booster_update(lua_State *L)
{
    xgb_booster_t *b = xgb_booster_check(L, 1);
    xgb_dmatrix_t *d = xgb_dmatrix_check(L, 2);
    lua_Integer it = luaL_checkinteger(L, 3);
    if (it < 0 || it > INT32_MAX)
        return luaL_error(L, "update: iteration %I is out of range", it);
    if (XGBoosterUpdateOneIter(b->h, (int)it, d->h) != 0)
        return xgb_raise(L, "XGBoosterUpdateOneIter");
    return 0;
}

static int booster_rounds(lua_State *L, BoosterHandle h)
{
    int rounds;
    if (XGBoosterBoostedRounds(h, &rounds) != 0)
        return xgb_raise(L, "XGBoosterBoostedRounds");
    return rounds;
}

typedef struct {
    lua_State *L;
    int result;
    const char *const *names;
} eval_ctx_t;

static int eval_field(void *ctx, int set, const char *metric, size_t metric_len, double value)
{
    eval_ctx_t *e = ctx;
    lua_getfield(e->L, e->result, e->names[set]);
    lua_pushlstring(e->L, metric, metric_len);
    lua_pushnumber(e->L, value);
    lua_rawset(e->L, -3);
    lua_pop(e->L, 1);
    return 0;
}

/* b:eval(sets [, iteration]): sets a list of {dmatrix, name}. Returns {name = {metric = value}}
 * and libxgboost's text. */
static int l_booster_eval(lua_State *L)
{
    xgb_booster_t *b = xgb_booster_check(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    int n = (int)luaL_len(L, 2);
    if (n < 1)
        return luaL_error(L, "eval: no data sets given");
    lua_Integer it = luaL_optinteger(L, 3, -1);
    if (it < 0) {
        int rounds = booster_rounds(L, b->h);
        it = rounds > 0 ? rounds - 1 : 0;
    }
    DMatrixHandle *dms = lua_newuserdatauv(L, (size_t)n * sizeof(DMatrixHandle), 0);
    const char **names = lua_newuserdatauv(L, (size_t)n * sizeof(char *), 0);
    lua_newtable(L);
    int result = lua_gettop(L);
    for (int i = 0; i < n; i++) {
        if (lua_rawgeti(L, 2, i + 1) != LUA_TTABLE)
            return luaL_error(L, "eval: set %d is a %s, expected {dmatrix, name}", i + 1,
                              luaL_typename(L, -1));
        lua_rawgeti(L, -1, 1);
        if (luaL_testudata(L, -1, XGB_DMATRIX_MT) == NULL)
            return luaL_error(L, "eval: set %d: the first value is a %s, expected a DMatrix",
                              i + 1, luaL_typename(L, -1));
        dms[i] = xgb_dmatrix_check(L, -1)->h;
        if (lua_rawgeti(L, -2, 2) != LUA_TSTRING)
            return luaL_error(L, "eval: set %d: the name is a %s, expected a string", i + 1,
                              luaL_typename(L, -1));
        names[i] = lua_tostring(L, -1);
        if (strchr(names[i], '\t') != NULL || strchr(names[i], ':') != NULL || !*names[i])
            return luaL_error(L, "eval: set %d: the name \"%s\" is empty or holds a tab or ':'",
                              i + 1, names[i]);
        lua_newtable(L);
        lua_setfield(L, result, names[i]);
        lua_pop(L, 3); /* the sets list keeps the name and the DMatrix */
    }
    const char *text;
    if (XGBoosterEvalOneIter(b->h, (int)it, dms, names, (bst_ulong)n, &text) != 0)
        return xgb_raise(L, "XGBoosterEvalOneIter");
    char err[ERR_LEN];
    eval_ctx_t ctx = {L, result, names};
    if (xgb_eval_parse(text, names, n, eval_field, &ctx, err, sizeof(err)) < 0)
        return luaL_error(L, "eval: %s (text \"%s\")", err, text);
    lua_pushstring(L, text);
    return 2;
}

static int opt_int_field(lua_State *L, int opts, const char *key, int dflt)
{
    if (opts == 0)
        return dflt;
    lua_getfield(L, opts, key);
    int isnum;
    lua_Integer v = lua_tointegerx(L, -1, &isnum);
    int nil = lua_isnil(L, -1);
    lua_pop(L, 1);
    if (nil)
        return dflt;
    if (!isnum || v < 0 || v > INT32_MAX)
        return luaL_error(L, "predict: option %s must be a non-negative integer", key);
    return (int)v;
}

static int opt_bool_field(lua_State *L, int opts, const char *key)
{
    if (opts == 0)
        return 0;
    lua_getfield(L, opts, key);
    int v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* b:predict(dmatrix [, {output_margin=, pred_leaf=, pred_contribs=, iteration_begin=,
 * iteration_end=, training=}]): a float32 tensor, one value per row (binary, regression) or
 * rows x classes (multi:softprob) and so on, as libxgboost shapes it. */
static int l_booster_predict(lua_State *L)
{
    xgb_booster_t *b = xgb_booster_check(L, 1);
    xgb_dmatrix_t *d = xgb_dmatrix_check(L, 2);
    int opts = lua_istable(L, 3) ? 3 : 0;
    int type = 0;
    if (opt_bool_field(L, opts, "output_margin"))
        type = 1;
    if (opt_bool_field(L, opts, "pred_contribs"))
        type = 2;
    if (opt_bool_field(L, opts, "pred_leaf"))
        type = 6;
    char config[256];
    snprintf(config, sizeof(config),
             "{\"type\": %d, \"training\": %s, \"iteration_begin\": %d, \"iteration_end\": %d, "
             "\"strict_shape\": false}",
             type, opt_bool_field(L, opts, "training") ? "true" : "false",
             opt_int_field(L, opts, "iteration_begin", 0),
             opt_int_field(L, opts, "iteration_end", 0));
    const bst_ulong *shape;
    bst_ulong dim;
    const float *out;
    if (XGBoosterPredictFromDMatrix(b->h, d->h, config, &shape, &dim, &out) != 0)
        return xgb_raise(L, "XGBoosterPredictFromDMatrix");
    if (dim < 1 || dim > LURAY_TENSOR_MAX_DIMS)
        return luaL_error(L, "predict: libxgboost returned %d dimensions", (int)dim);
    int64_t tshape[LURAY_TENSOR_MAX_DIMS];
    for (bst_ulong i = 0; i < dim; i++)
        tshape[i] = (int64_t)shape[i];
    xgb_push_float_tensor(L, out, (int)dim, tshape);
    return 1;
}

static int l_booster_save_raw(lua_State *L)
{
    xgb_booster_t *b = xgb_booster_check(L, 1);
    const char *format = luaL_optstring(L, 2, "json");
    if (strcmp(format, "json") != 0 && strcmp(format, "ubj") != 0)
        return luaL_error(L, "save_raw: format \"%s\": expected \"json\" or \"ubj\"", format);
    char config[64];
    snprintf(config, sizeof(config), "{\"format\": \"%s\"}", format);
    bst_ulong len;
    const char *buf;
    if (XGBoosterSaveModelToBuffer(b->h, config, &len, &buf) != 0)
        return xgb_raise(L, "XGBoosterSaveModelToBuffer");
    lua_pushlstring(L, buf, (size_t)len);
    return 1;
}

/* b:save(path): xgboost's JSON model file, whatever the name ends with. */
static int l_booster_save(lua_State *L)
{
    xgb_booster_t *b = xgb_booster_check(L, 1);
    const char *path = luaL_checkstring(L, 2);
    bst_ulong len;
    const char *buf;
    if (XGBoosterSaveModelToBuffer(b->h, json_format, &len, &buf) != 0)
        return xgb_raise(L, "XGBoosterSaveModelToBuffer");
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return luaL_error(L, "save: cannot open \"%s\": %s", path, strerror(errno));
    size_t wrote = fwrite(buf, 1, (size_t)len, f);
    int werr = ferror(f) ? errno : 0;
    if (fclose(f) != 0 && werr == 0)
        werr = errno;
    if (wrote != (size_t)len || werr != 0)
        return luaL_error(L, "save: cannot write \"%s\": %s", path, strerror(werr ? werr : EIO));
    return 0;
}

/* Reads the file at path into a buffer userdata pushed on the stack (made before the file is
 * opened, so no error can leave the file open); *len is its size. */
static const char *push_file(lua_State *L, const char *path, const char *where, size_t *len)
{
    struct stat st;
    if (stat(path, &st) != 0)
        luaL_error(L, "%s: cannot open \"%s\": %s", where, path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        luaL_error(L, "%s: \"%s\" is not a file", where, path);
    size_t size = (size_t)st.st_size;
    char *buf = lua_newuserdatauv(L, size ? size : 1, 0);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        luaL_error(L, "%s: cannot open \"%s\": %s", where, path, strerror(errno));
    size_t n = fread(buf, 1, size, f);
    int failed = ferror(f), saved = errno, more = fgetc(f) != EOF;
    fclose(f);
    if (failed)
        luaL_error(L, "%s: cannot read \"%s\": %s", where, path, strerror(saved));
    if (n != size || more)
        luaL_error(L, "%s: \"%s\" changed while it was read", where, path);
    *len = size;
    return buf;
}

static void load_bytes(lua_State *L, BoosterHandle h, const char *bytes, size_t len)
{
    if (XGBoosterLoadModelFromBuffer(h, bytes, (bst_ulong)len) != 0)
        xgb_raise(L, "XGBoosterLoadModelFromBuffer");
}

/* b:load(path): replaces the model with the one in a model file (JSON, UBJSON or the old
 * binary format). */
static int l_booster_load(lua_State *L)
{
    xgb_booster_t *b = xgb_booster_check(L, 1);
    size_t len;
    const char *bytes = push_file(L, luaL_checkstring(L, 2), "load", &len);
    load_bytes(L, b->h, bytes, len);
    return 0;
}

static int l_booster_load_raw(lua_State *L)
{
    xgb_booster_t *b = xgb_booster_check(L, 1);
    size_t len;
    const char *bytes = luaL_checklstring(L, 2, &len);
    load_bytes(L, b->h, bytes, len);
    return 0;
}

/* A new Booster holding the model in bytes (kept alive by the caller's stack). */
static int push_loaded(lua_State *L, const char *bytes, size_t len)
{
    xgb_booster_t *b = xgb_booster_push(L);
    if (XGBoosterCreate(NULL, 0, &b->h) != 0)
        return xgb_raise(L, "XGBoosterCreate");
    load_bytes(L, b->h, bytes, len);
    return 1;
}

/* booster_load(path): a new Booster from a model file. */
static int l_booster_load_file(lua_State *L)
{
    size_t len;
    const char *bytes = push_file(L, luaL_checkstring(L, 1), "booster_load", &len);
    return push_loaded(L, bytes, len);
}

static int l_booster_from_raw(lua_State *L)
{
    size_t len;
    const char *bytes = luaL_checklstring(L, 1, &len);
    return push_loaded(L, bytes, len);
}

static int l_booster_num_boosted_rounds(lua_State *L)
{
    lua_pushinteger(L, booster_rounds(L, xgb_booster_check(L, 1)->h));
    return 1;
}

static int l_booster_num_features(lua_State *L)
{
    bst_ulong n;
    if (XGBoosterGetNumFeature(xgb_booster_check(L, 1)->h, &n) != 0)
        return xgb_raise(L, "XGBoosterGetNumFeature");
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

static int l_booster_feature_names(lua_State *L)
{
    bst_ulong n;
    const char **names;
    if (XGBoosterGetStrFeatureInfo(xgb_booster_check(L, 1)->h, "feature_name", &n, &names) != 0)
        return xgb_raise(L, "XGBoosterGetStrFeatureInfo");
    lua_createtable(L, (int)n, 0);
    for (bst_ulong i = 0; i < n; i++) {
        lua_pushstring(L, names[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

/* b:set_feature_names(list): nil or an empty list clears them. */
static int l_booster_set_feature_names(lua_State *L)
{
    xgb_booster_t *b = xgb_booster_check(L, 1);
    int n = lua_isnoneornil(L, 2) ? 0 : (luaL_checktype(L, 2, LUA_TTABLE), (int)luaL_len(L, 2));
    const char **names = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof(char *), 0);
    for (int i = 0; i < n; i++) {
        if (lua_rawgeti(L, 2, i + 1) != LUA_TSTRING)
            return luaL_error(L, "set_feature_names: name %d is a %s, expected a string", i + 1,
                              luaL_typename(L, -1));
        names[i] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    if (XGBoosterSetStrFeatureInfo(b->h, "feature_name", names, (bst_ulong)n) != 0)
        return xgb_raise(L, "XGBoosterSetStrFeatureInfo");
    return 0;
}

static int l_booster_attr(lua_State *L)
{
    xgb_booster_t *b = xgb_booster_check(L, 1);
    const char *out;
    int success;
    if (XGBoosterGetAttr(b->h, luaL_checkstring(L, 2), &out, &success) != 0)
        return xgb_raise(L, "XGBoosterGetAttr");
    if (success)
        lua_pushstring(L, out);
    else
        lua_pushnil(L);
    return 1;
}

/* b:set_attr(key, value): value a string, or nil to remove the attribute. */
static int l_booster_set_attr(lua_State *L)
{
    xgb_booster_t *b = xgb_booster_check(L, 1);
    const char *key = luaL_checkstring(L, 2);
    const char *value = lua_isnoneornil(L, 3) ? NULL : luaL_checkstring(L, 3);
    if (XGBoosterSetAttr(b->h, key, value) != 0)
        return xgb_raise(L, "XGBoosterSetAttr");
    return 0;
}

static int l_booster_attributes(lua_State *L)
{
    xgb_booster_t *b = xgb_booster_check(L, 1);
    bst_ulong n;
    const char **keys;
    if (XGBoosterGetAttrNames(b->h, &n, &keys) != 0)
        return xgb_raise(L, "XGBoosterGetAttrNames");
    lua_newtable(L);
    for (bst_ulong i = 0; i < n; i++) {
        const char *out;
        int success;
        if (XGBoosterGetAttr(b->h, keys[i], &out, &success) != 0)
            return xgb_raise(L, "XGBoosterGetAttr");
        if (success) {
            lua_pushstring(L, out);
            lua_setfield(L, -2, keys[i]);
        }
    }
    return 1;
}

/* b:config(): the booster's whole configuration as libxgboost's JSON text (it configures the
 * booster first, so bad parameters raise here). */
static int l_booster_config(lua_State *L)
{
    xgb_booster_t *b = xgb_booster_check(L, 1);
    bst_ulong len;
    const char *out;
    if (XGBoosterSaveJsonConfig(b->h, &len, &out) != 0)
        return xgb_raise(L, "XGBoosterSaveJsonConfig");
    lua_pushlstring(L, out, (size_t)len);
    return 1;
}

static int l_booster_load_config(lua_State *L)
{
    xgb_booster_t *b = xgb_booster_check(L, 1);
    if (XGBoosterLoadJsonConfig(b->h, luaL_checkstring(L, 2)) != 0)
        return xgb_raise(L, "XGBoosterLoadJsonConfig");
    return 0;
}

static int l_booster_free(lua_State *L)
{
    xgb_booster_t *b = luaL_checkudata(L, 1, XGB_BOOSTER_MT);
    if (b->h != NULL) {
        XGBoosterFree(b->h);
        b->h = NULL;
    }
    return 0;
}

static int l_booster_tostring(lua_State *L)
{
    xgb_booster_t *b = luaL_checkudata(L, 1, XGB_BOOSTER_MT);
    int rounds = 0;
    if (b->h == NULL) {
        lua_pushliteral(L, "Booster(freed)");
        return 1;
    }
    XGBoosterBoostedRounds(b->h, &rounds);
    lua_pushfstring(L, "Booster(%d rounds)", rounds);
    return 1;
}

static const luaL_Reg booster_methods[] = {
    {"set_param", l_booster_set_param},
    {"update", l_booster_update},
    {"eval", l_booster_eval},
    {"predict", l_booster_predict},
    {"save", l_booster_save},
    {"save_raw", l_booster_save_raw},
    {"load", l_booster_load},
    {"load_raw", l_booster_load_raw},
    {"num_boosted_rounds", l_booster_num_boosted_rounds},
    {"num_features", l_booster_num_features},
    {"feature_names", l_booster_feature_names},
    {"set_feature_names", l_booster_set_feature_names},
    {"attr", l_booster_attr},
    {"set_attr", l_booster_set_attr},
    {"attributes", l_booster_attributes},
    {"config", l_booster_config},
    {"load_config", l_booster_load_config},
    {"free", l_booster_free},
    {NULL, NULL},
};

static const luaL_Reg booster_meta[] = {
    {"__gc", l_booster_free},
    {"__close", l_booster_free},
    {"__tostring", l_booster_tostring},
    {NULL, NULL},
};

static const luaL_Reg booster_functions[] = {
    {"booster", l_booster},
    {"booster_load", l_booster_load_file},
    {"booster_from_raw", l_booster_from_raw},
    {NULL, NULL},
};

/* A Booster travels as its JSON model, copied into the value's header. */
static int booster_encode(const luray_host_api_t *host, lua_State *L, int idx,
                          luray_ser_writer_t *w)
{
    xgb_booster_t *b = luaL_testudata(L, idx, XGB_BOOSTER_MT);
    if (b == NULL || b->h == NULL)
        return LURAY_EINVAL;
    bst_ulong len;
    const char *buf;
    if (XGBoosterSaveModelToBuffer(b->h, json_format, &len, &buf) != 0) {
        host->log(0, "xgboost", "cannot serialize a Booster: %s", XGBGetLastError());
        return LURAY_ESERIALIZE;
    }
    return host->ser_write(w, buf, (size_t)len);
}

static int booster_decode(const luray_host_api_t *host, lua_State *L, luray_ser_reader_t *r)
{
    size_t len;
    const void *bytes = host->ser_header(r, &len);
    xgb_booster_t *b = xgb_booster_push(L);
    if (XGBoosterCreate(NULL, 0, &b->h) != 0) {
        lua_pop(L, 1);
        return LURAY_ENOMEM;
    }
    if (XGBoosterLoadModelFromBuffer(b->h, bytes, (bst_ulong)len) != 0) {
        host->log(0, "xgboost", "cannot read a serialized Booster: %s", XGBGetLastError());
        XGBoosterFree(b->h);
        b->h = NULL;
        lua_pop(L, 1);
        return LURAY_ESERIALIZE;
    }
    return 0;
}

const luray_serializer_t xgb_booster_serializer = {
    .type_name = XGB_BOOSTER_MT,
    .encode = booster_encode,
    .decode = booster_decode,
};

void xgb_booster_open(lua_State *L, int module_idx)
{
    booster_metatable(L);
    lua_pushvalue(L, module_idx);
    luaL_setfuncs(L, booster_functions, 0);
    lua_pop(L, 1);
}
