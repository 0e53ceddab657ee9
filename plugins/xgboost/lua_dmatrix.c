/* xgboost.DMatrix: libxgboost's training matrix, built from Data blocks' column buffers (read in
 * place, no rows in between) or from a 2-D tensor, with labels, weights and feature names. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "../data/lua_data.h"
#include "frame.h"
#include "lua_xgb.h"

#define ERR_LEN 512

xgb_dmatrix_t *xgb_dmatrix_check(lua_State *L, int idx)
{
    xgb_dmatrix_t *d = luaL_checkudata(L, idx, XGB_DMATRIX_MT);
    if (d->h == NULL)
        luaL_error(L, "the DMatrix was freed");
    return d;
}

/* A new DMatrix userdata holding no handle yet: an error before the handle is set leaks
 * nothing, and once set the collector frees it. */
static xgb_dmatrix_t *dmatrix_push(lua_State *L)
{
    xgb_dmatrix_t *d = lua_newuserdatauv(L, sizeof(*d), 0);
    d->h = NULL;
    luaL_setmetatable(L, XGB_DMATRIX_MT);
    return d;
}

/* An integer option of the table at opts (nil: dflt). */
static lua_Integer opt_integer(lua_State *L, int opts, const char *key, lua_Integer dflt)
{
    if (opts == 0 || lua_getfield(L, opts, key) == LUA_TNIL) {
        if (opts != 0)
            lua_pop(L, 1);
        return dflt;
    }
    int isnum;
    lua_Integer v = lua_tointegerx(L, -1, &isnum);
    if (!isnum)
        luaL_error(L, "option %s: expected an integer, got %s", key, luaL_typename(L, -1));
    lua_pop(L, 1);
    return v;
}

/* Sets a float field (label, weight, ...) from the value at idx; 0, or -1 with err set. */
static int set_floats(lua_State *L, DMatrixHandle h, int idx, const char *field, char *err,
                      size_t errlen)
{
    int64_t n;
    bst_ulong rows = 0;
    float *v = xgb_floats_arg(L, idx, field, &n, err, errlen);
    if (v == NULL)
        return -1;
    XGDMatrixNumRow(h, &rows);
    int rc = -1;
    if ((bst_ulong)n != rows)
        snprintf(err, errlen, "%s: %" PRId64 " values for %llu rows", field, n,
                 (unsigned long long)rows);
    else if (XGDMatrixSetFloatInfo(h, field, v, (bst_ulong)n) != 0)
        snprintf(err, errlen, "XGDMatrixSetFloatInfo(%s): %s", field, XGBGetLastError());
    else
        rc = 0;
    free(v);
    return rc;
}

/* Feature names from the list at idx; 0, or -1 with err set. */
static int set_names(lua_State *L, DMatrixHandle h, int idx, char *err, size_t errlen)
{
    bst_ulong cols = 0, n = (bst_ulong)lua_rawlen(L, idx);
    XGDMatrixNumCol(h, &cols);
    if (n != cols) {
        snprintf(err, errlen, "feature_names: %llu names for %llu features",
                 (unsigned long long)n, (unsigned long long)cols);
        return -1;
    }
    const char **names = malloc((n ? n : 1) * sizeof(char *));
    if (names == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = 0;
    for (bst_ulong i = 0; i < n && rc == 0; i++) {
        if (lua_rawgeti(L, idx, (lua_Integer)i + 1) != LUA_TSTRING) {
            snprintf(err, errlen, "feature_names: name %llu is a %s, expected a string",
                     (unsigned long long)i + 1, luaL_typename(L, -1));
            rc = -1;
        }
        names[i] = lua_tostring(L, -1);
        lua_pop(L, 1); /* the list keeps the string alive */
    }
    if (rc == 0 && XGDMatrixSetStrFeatureInfo(h, "feature_name", names, n) != 0) {
        snprintf(err, errlen, "XGDMatrixSetStrFeatureInfo: %s", XGBGetLastError());
        rc = -1;
    }
    free(names);
    return rc;
}

/* label=, weight= and feature_names= of the options table at opts, for the DMatrix h. */
static int apply_options(lua_State *L, DMatrixHandle h, int opts, char *err, size_t errlen)
{
    static const char *const fields[] = {"label", "weight", "base_margin"};
    if (opts == 0)
        return 0;
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        int rc = 0;
        if (lua_getfield(L, opts, fields[i]) != LUA_TNIL)
            rc = set_floats(L, h, lua_gettop(L), fields[i], err, errlen);
        lua_pop(L, 1);
        if (rc != 0)
            return rc;
    }
    int rc = 0, type = lua_getfield(L, opts, "feature_names");
    if (type == LUA_TTABLE) {
        rc = set_names(L, h, lua_gettop(L), err, errlen);
    } else if (type != LUA_TNIL) {
        snprintf(err, errlen, "feature_names: expected a list of strings, got %s",
                 luaL_typename(L, -1));
        rc = -1;
    }
    lua_pop(L, 1);
    return rc;
}

/* The column at the top of the stack as a dcol_t, or NULL. */
static const dcol_t *top_column(lua_State *L)
{
    data_column_t *c = luaL_testudata(L, -1, DATA_COLUMN_MT);
    return c != NULL ? &c->c : NULL;
}

/* Reads parts (a list of lists of data.Column) and names (a list of strings) into scratch
 * arrays held by a userdata pushed on the stack. Raises on bad input. */
static void read_parts(lua_State *L, int parts_idx, int names_idx, const dcol_t ***cols,
                       const char ***names, int *nparts, int *ncols)
{
    lua_Integer np = luaL_len(L, parts_idx), nc = luaL_len(L, names_idx);
    if (np < 1 || nc < 1)
        luaL_error(L, "dmatrix_from_columns: needs at least one block and one column");
    if (np > INT32_MAX / nc)
        luaL_error(L, "dmatrix_from_columns: too many columns");
    size_t cells = (size_t)(np * nc);
    void *scratch = lua_newuserdatauv(L, cells * sizeof(dcol_t *) + (size_t)nc * sizeof(char *),
                                      0);
    *cols = scratch;
    *names = (const char **)((char *)scratch + cells * sizeof(dcol_t *));
    for (lua_Integer c = 0; c < nc; c++) {
        lua_rawgeti(L, names_idx, c + 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "dmatrix_from_columns: column name %I is a %s, expected a string",
                       c + 1, luaL_typename(L, -1));
        (*names)[c] = lua_tostring(L, -1); /* the names list keeps it */
        lua_pop(L, 1);
    }
    for (lua_Integer p = 0; p < np; p++) {
        if (lua_rawgeti(L, parts_idx, p + 1) != LUA_TTABLE)
            luaL_error(L, "dmatrix_from_columns: block %I is a %s, expected a list of columns",
                       p + 1, luaL_typename(L, -1));
        if ((lua_Integer)lua_rawlen(L, -1) != nc)
            luaL_error(L, "dmatrix_from_columns: block %I has %I columns, expected %I", p + 1,
                       (lua_Integer)lua_rawlen(L, -1), nc);
        for (lua_Integer c = 0; c < nc; c++) {
            lua_rawgeti(L, -1, c + 1);
            const dcol_t *col = top_column(L);
            if (col == NULL)
                luaL_error(L, "dmatrix_from_columns: block %I, column \"%s\" is a %s, expected "
                           "a data.Column", p + 1, (*names)[c], luaL_typename(L, -1));
            (*cols)[p * nc + c] = col;
            lua_pop(L, 1); /* the parts list keeps it */
        }
        lua_pop(L, 1);
    }
    *nparts = (int)np;
    *ncols = (int)nc;
}

/* The float32 values of option field (label= or weight=) of the options at opts: a list of one
 * data.Column per block, gathered into *out (NULL when the option is absent). 0, or -1 with err
 * set. Leaves the stack as it found it. */
static int gather_option(lua_State *L, int opts, const char *field, int nparts, char *err,
                         size_t errlen, float **out, int64_t *n)
{
    *out = NULL;
    if (opts == 0 || lua_getfield(L, opts, field) == LUA_TNIL) {
        if (opts != 0)
            lua_pop(L, 1);
        return 0;
    }
    int list = lua_gettop(L);
    if (lua_type(L, list) != LUA_TTABLE || (lua_Integer)lua_rawlen(L, list) != nparts) {
        snprintf(err, errlen, "%s: expected a list of %d columns, one per block", field, nparts);
        lua_pop(L, 1);
        return -1;
    }
    const dcol_t **cols = lua_newuserdatauv(L, (size_t)nparts * sizeof(dcol_t *), 0);
    for (int p = 0; p < nparts; p++) {
        lua_rawgeti(L, list, p + 1);
        cols[p] = top_column(L);
        lua_pop(L, 1);
        if (cols[p] == NULL) {
            snprintf(err, errlen, "%s: block %d's value is not a data.Column", field, p + 1);
            lua_pop(L, 2);
            return -1;
        }
    }
    int rc = xgb_floats_gather(cols, nparts, field, out, n, err, errlen);
    lua_pop(L, 2);
    return rc == 0 ? 0 : -1;
}

static int set_gathered(DMatrixHandle h, const char *field, const float *v, int64_t n,
                        int64_t nrows, char *err, size_t errlen)
{
    if (v == NULL)
        return 0;
    if (n != nrows) {
        snprintf(err, errlen, "%s: %" PRId64 " values for %" PRId64 " rows", field, n, nrows);
        return -1;
    }
    if (XGDMatrixSetFloatInfo(h, field, v, (bst_ulong)n) != 0) {
        snprintf(err, errlen, "XGDMatrixSetFloatInfo(%s): %s", field, XGBGetLastError());
        return -1;
    }
    return 0;
}

static int create_from_frame(const xgb_frame_t *f, int nthread, DMatrixHandle *out, char *err,
                             size_t errlen)
{
    if (f->kind == XGB_FRAME_COLUMNS) {
        if (XGDMatrixCreateFromDT(f->cols, f->stypes, (bst_ulong)f->nrows, (bst_ulong)f->nfeat,
                                  out, nthread) != 0) {
            snprintf(err, errlen, "XGDMatrixCreateFromDT: %s", XGBGetLastError());
            return -1;
        }
        return 0;
    }
    char ai[256], config[96];
    int64_t row = f->nfeat * (int64_t)sizeof(float);
    xgb_array_interface(ai, sizeof(ai), f->dense, f->nrows, f->nfeat, row, sizeof(float), "<f4");
    snprintf(config, sizeof(config), "{\"missing\": NaN, \"nthread\": %d}", nthread);
    if (XGDMatrixCreateFromDense(ai, config, out) != 0) {
        snprintf(err, errlen, "XGDMatrixCreateFromDense: %s", XGBGetLastError());
        return -1;
    }
    return 0;
}

/* dmatrix_from_columns(parts, names [, {label=, weight=, nthread=}]): parts is a list of blocks,
 * each a list of data.Column (the features named names, in order); label= and weight= are lists
 * of one data.Column per block. One block's int64/float64/bool columns are read in place. */
static int l_dmatrix_from_columns(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    int opts = lua_istable(L, 3) ? 3 : 0;
    int nthread = (int)opt_integer(L, opts, "nthread", 0);
    const dcol_t **cols;
    const char **names;
    int nparts, ncols;
    read_parts(L, 1, 2, &cols, &names, &nparts, &ncols);
    xgb_dmatrix_t *d = dmatrix_push(L);

    char err[ERR_LEN];
    float *label = NULL, *weight = NULL;
    int64_t nlabel = 0, nweight = 0;
    xgb_frame_t f;
    if (gather_option(L, opts, "label", nparts, err, sizeof(err), &label, &nlabel) != 0)
        return luaL_error(L, "dmatrix_from_columns: %s", err);
    if (gather_option(L, opts, "weight", nparts, err, sizeof(err), &weight, &nweight) != 0)
        goto err_label;
    if (xgb_frame_init(&f, cols, names, nparts, ncols, err, sizeof(err)) != 0)
        goto err_weight;
    if (create_from_frame(&f, nthread, &d->h, err, sizeof(err)) != 0)
        goto err_frame;
    if (XGDMatrixSetStrFeatureInfo(d->h, "feature_name", (const char **)f.names,
                                   (bst_ulong)f.nfeat) != 0) {
        snprintf(err, sizeof(err), "XGDMatrixSetStrFeatureInfo: %s", XGBGetLastError());
        goto err_frame;
    }
    if (set_gathered(d->h, "label", label, nlabel, f.nrows, err, sizeof(err)) != 0 ||
        set_gathered(d->h, "weight", weight, nweight, f.nrows, err, sizeof(err)) != 0)
        goto err_frame;
    xgb_frame_close(&f);
    free(weight);
    free(label);
    return 1;
err_frame:
    xgb_frame_close(&f);
err_weight:
    free(weight);
err_label:
    free(label);
    return luaL_error(L, "dmatrix_from_columns: %s", err);
}

static const char *typestr_of(int dtype)
{
    switch (dtype) {
    case LURAY_DTYPE_FLOAT32: return "<f4";
    case LURAY_DTYPE_FLOAT64: return "<f8";
    case LURAY_DTYPE_INT32: return "<i4";
    case LURAY_DTYPE_INT64: return "<i8";
    case LURAY_DTYPE_UINT8: return "|u1";
    default: return NULL;
    }
}

/* dmatrix_from_tensor(x [, {label=, weight=, missing=, nthread=, feature_names=}]): x is a 2-D
 * tensor (rows x features); label= and weight= are 1-D tensors, data.Columns or lists. */
static int l_dmatrix_from_tensor(lua_State *L)
{
    luray_tensor_t *x = xgb_host->tensor_test(L, 1);
    if (x == NULL)
        return luaL_typeerror(L, 1, "tensor");
    if (x->ndim != 2)
        return luaL_error(L, "dmatrix_from_tensor: the features tensor has %d dimensions, "
                          "expected 2 (rows x features)", x->ndim);
    const char *typestr = typestr_of(x->dtype);
    if (typestr == NULL)
        return luaL_error(L, "dmatrix_from_tensor: bool tensors are not taken; use float32");
    if (x->shape[0] == 0 || x->shape[1] == 0)
        return luaL_error(L, "dmatrix_from_tensor: the features tensor is empty (%I x %I)",
                          (lua_Integer)x->shape[0], (lua_Integer)x->shape[1]);
    int opts = lua_istable(L, 2) ? 2 : 0;
    int nthread = (int)opt_integer(L, opts, "nthread", 0);
    double missing = NAN;
    if (opts != 0) {
        int t = lua_getfield(L, opts, "missing");
        if (t != LUA_TNIL && t != LUA_TNUMBER)
            return luaL_error(L, "dmatrix_from_tensor: option missing: expected a number, got "
                              "%s", luaL_typename(L, -1));
        if (t == LUA_TNUMBER)
            missing = lua_tonumber(L, -1);
        lua_pop(L, 1);
    }

    char ai[256], config[128], err[ERR_LEN];
    size_t es = xgb_host->dtype_size(x->dtype);
    xgb_array_interface(ai, sizeof(ai), x->data, x->shape[0], x->shape[1],
                        x->strides[0] * (int64_t)es, x->strides[1] * (int64_t)es, typestr);
    if (isnan(missing))
        snprintf(config, sizeof(config), "{\"missing\": NaN, \"nthread\": %d}", nthread);
    else if (isinf(missing))
        snprintf(config, sizeof(config), "{\"missing\": %sInfinity, \"nthread\": %d}",
                 missing < 0 ? "-" : "", nthread);
    else
        snprintf(config, sizeof(config), "{\"missing\": %.17g, \"nthread\": %d}", missing,
                 nthread);
    xgb_dmatrix_t *d = dmatrix_push(L);
    if (XGDMatrixCreateFromDense(ai, config, &d->h) != 0)
        return xgb_raise(L, "dmatrix_from_tensor: XGDMatrixCreateFromDense");
    if (apply_options(L, d->h, opts, err, sizeof(err)) != 0)
        return luaL_error(L, "dmatrix_from_tensor: %s", err);
    return 1;
}

static int l_dmatrix_num_row(lua_State *L)
{
    bst_ulong n;
    if (XGDMatrixNumRow(xgb_dmatrix_check(L, 1)->h, &n) != 0)
        return xgb_raise(L, "XGDMatrixNumRow");
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

static int l_dmatrix_num_col(lua_State *L)
{
    bst_ulong n;
    if (XGDMatrixNumCol(xgb_dmatrix_check(L, 1)->h, &n) != 0)
        return xgb_raise(L, "XGDMatrixNumCol");
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

static int l_dmatrix_feature_names(lua_State *L)
{
    bst_ulong n;
    const char **names;
    if (XGDMatrixGetStrFeatureInfo(xgb_dmatrix_check(L, 1)->h, "feature_name", &n, &names) != 0)
        return xgb_raise(L, "XGDMatrixGetStrFeatureInfo");
    lua_createtable(L, (int)n, 0);
    for (bst_ulong i = 0; i < n; i++) {
        lua_pushstring(L, names[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int l_dmatrix_set_feature_names(lua_State *L)
{
    xgb_dmatrix_t *d = xgb_dmatrix_check(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    char err[ERR_LEN];
    if (set_names(L, d->h, 2, err, sizeof(err)) != 0)
        return luaL_error(L, "set_feature_names: %s", err);
    return 0;
}

/* dm:get_float(field): "label", "weight" or "base_margin" as a float32 tensor. */
static int l_dmatrix_get_float(lua_State *L)
{
    xgb_dmatrix_t *d = xgb_dmatrix_check(L, 1);
    const char *field = luaL_checkstring(L, 2);
    bst_ulong n;
    const float *v;
    if (XGDMatrixGetFloatInfo(d->h, field, &n, &v) != 0)
        return xgb_raise(L, "XGDMatrixGetFloatInfo");
    int64_t shape[1] = {(int64_t)n};
    xgb_push_float_tensor(L, v, 1, shape);
    return 1;
}

/* dm:set_float(field, values): values a 1-D tensor, a data.Column or a list of numbers. */
static int l_dmatrix_set_float(lua_State *L)
{
    xgb_dmatrix_t *d = xgb_dmatrix_check(L, 1);
    const char *field = luaL_checkstring(L, 2);
    luaL_checkany(L, 3);
    char err[ERR_LEN];
    if (set_floats(L, d->h, 3, field, err, sizeof(err)) != 0)
        return luaL_error(L, "set_float: %s", err);
    return 0;
}

static int l_dmatrix_free(lua_State *L)
{
    xgb_dmatrix_t *d = luaL_checkudata(L, 1, XGB_DMATRIX_MT);
    if (d->h != NULL) {
        XGDMatrixFree(d->h);
        d->h = NULL;
    }
    return 0;
}

static int l_dmatrix_tostring(lua_State *L)
{
    xgb_dmatrix_t *d = luaL_checkudata(L, 1, XGB_DMATRIX_MT);
    bst_ulong rows = 0, cols = 0;
    if (d->h == NULL) {
        lua_pushliteral(L, "DMatrix(freed)");
        return 1;
    }
    XGDMatrixNumRow(d->h, &rows);
    XGDMatrixNumCol(d->h, &cols);
    lua_pushfstring(L, "DMatrix(%I rows x %I features)", (lua_Integer)rows, (lua_Integer)cols);
    return 1;
}

static const luaL_Reg dmatrix_methods[] = {
    {"num_row", l_dmatrix_num_row},
    {"num_col", l_dmatrix_num_col},
    {"feature_names", l_dmatrix_feature_names},
    {"set_feature_names", l_dmatrix_set_feature_names},
    {"get_float", l_dmatrix_get_float},
    {"set_float", l_dmatrix_set_float},
    {"free", l_dmatrix_free},
    {NULL, NULL},
};

static const luaL_Reg dmatrix_meta[] = {
    {"__gc", l_dmatrix_free},
    {"__close", l_dmatrix_free},
    {"__tostring", l_dmatrix_tostring},
    {NULL, NULL},
};

static const luaL_Reg dmatrix_functions[] = {
    {"dmatrix_from_columns", l_dmatrix_from_columns},
    {"dmatrix_from_tensor", l_dmatrix_from_tensor},
    {NULL, NULL},
};

void xgb_dmatrix_open(lua_State *L, int module_idx)
{
    luaL_newmetatable(L, XGB_DMATRIX_MT);
    luaL_setfuncs(L, dmatrix_meta, 0);
    luaL_newlib(L, dmatrix_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_pushvalue(L, module_idx);
    luaL_setfuncs(L, dmatrix_functions, 0);
    lua_pop(L, 1);
}
