/* C.from_rows(rows [, names_hint]): a Block from a list of row tables, each column's type
 * inferred from its values (integers, numbers, booleans, strings, fixed-shape arrays, tensors). */
#include "lua_block.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum { K_NONE, K_INT, K_FLOAT, K_BOOL, K_STRING, K_TENSOR } kind_t;

static const char *const kind_names[] = {"nothing", "int64", "float64", "bool", "string",
                                         "tensor"};
static const char *const kind_articles[] = {"", "an", "a", "a", "a", "a"};

typedef struct {
    kind_t kind;
    lua_Integer first_missing; /* first row (1-based) without a value, 0 when none */
    int ndim;                  /* K_TENSOR: the row shape */
    int64_t shape[DCOL_MAX_DIMS];
} colinfo_t;

/* ---- pass 1: the column names, in order ---- */

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Pushes a list of the column names: names_hint entries that occur, then the rest sorted. The
 * strings stay alive in the list. Returns how many. */
static int collect_names(lua_State *L, int rows, lua_Integer nrows, int hint)
{
    lua_newtable(L); /* name -> true */
    int set = lua_gettop(L);
    int count = 0;
    for (lua_Integer i = 1; i <= nrows; i++) {
        lua_rawgeti(L, rows, i);
        if (!lua_istable(L, -1))
            luaL_error(L, "from_rows: row %I is a %s, expected a table", i, luaL_typename(L, -1));
        lua_pushnil(L);
        while (lua_next(L, -2) != 0) {
            lua_pop(L, 1);
            if (lua_type(L, -1) != LUA_TSTRING)
                luaL_error(L, "row %I: a key is a %s, expected a column name", i,
                           luaL_typename(L, -1));
            if (lua_rawlen(L, -1) == 0)
                luaL_error(L, "row %I: empty column name", i);
            lua_pushvalue(L, -1);
            if (lua_rawget(L, set) == LUA_TNIL) {
                lua_pushvalue(L, -2);
                lua_pushboolean(L, 1);
                lua_rawset(L, set);
                count++;
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_createtable(L, count, 0);
    int list = lua_gettop(L), n = 0;
    if (hint != 0) {
        lua_Integer nh = (lua_Integer)lua_rawlen(L, hint);
        for (lua_Integer j = 1; j <= nh; j++) {
            if (lua_rawgeti(L, hint, j) == LUA_TSTRING) {
                lua_pushvalue(L, -1);
                if (lua_rawget(L, set) != LUA_TNIL && lua_toboolean(L, -1)) {
                    lua_pushvalue(L, -2);
                    lua_pushboolean(L, 0); /* placed: not among the sorted rest */
                    lua_rawset(L, set);
                    lua_pushvalue(L, -2);
                    lua_rawseti(L, list, ++n);
                }
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
    }
    const char **rest = data_scratch(L, (size_t)(count - n) * sizeof(*rest));
    int nrest = 0;
    lua_pushnil(L);
    while (lua_next(L, set) != 0) {
        if (lua_toboolean(L, -1))
            rest[nrest++] = lua_tostring(L, -2); /* the set keeps the string */
        lua_pop(L, 1);
    }
    qsort(rest, (size_t)nrest, sizeof(*rest), cmp_cstr);
    for (int j = 0; j < nrest; j++) {
        lua_pushstring(L, rest[j]);
        lua_rawseti(L, list, ++n);
    }
    lua_pop(L, 1);       /* rest */
    lua_replace(L, set); /* the list takes the set's slot */
    return n;
}

/* ---- pass 2: each column's type ---- */

/* The shape of a nested table of numbers from its first elements; 0 or -1 when not one. */
static int nested_shape(lua_State *L, int idx, int *ndim, int64_t *shape)
{
    int d = 0;
    lua_pushvalue(L, idx);
    while (lua_istable(L, -1)) {
        if (d == DCOL_MAX_DIMS) {
            lua_pop(L, d + 1);
            return -1;
        }
        shape[d++] = (int64_t)lua_rawlen(L, -1);
        lua_rawgeti(L, -1, 1);
    }
    bool leaf_ok = lua_type(L, -1) == LUA_TNUMBER;
    lua_pop(L, d + 1);
    *ndim = d;
    for (int k = 0; k < d; k++)
        if (shape[k] < 1)
            return -1;
    return leaf_ok ? 0 : -1;
}

/* Whether the table at idx is a full nested array of numbers of shape[depth..ndim). */
static bool nested_check(lua_State *L, int idx, int depth, int ndim, const int64_t *shape)
{
    if (!lua_istable(L, idx) || (int64_t)lua_rawlen(L, idx) != shape[depth])
        return false;
    luaL_checkstack(L, 2, "from_rows");
    for (int64_t j = 1; j <= shape[depth]; j++) {
        lua_rawgeti(L, idx, j);
        bool ok = depth + 1 == ndim ? lua_type(L, -1) == LUA_TNUMBER
                                    : nested_check(L, lua_gettop(L), depth + 1, ndim, shape);
        lua_pop(L, 1);
        if (!ok)
            return false;
    }
    return true;
}

static void shape_text(lua_State *L, int ndim, const int64_t *shape)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addchar(&b, '(');
    for (int d = 0; d < ndim; d++) {
        lua_pushfstring(L, d ? ", %I" : "%I", (lua_Integer)shape[d]);
        luaL_addvalue(&b);
    }
    luaL_addchar(&b, ')');
    luaL_pushresult(&b);
}

/* Classifies the value on top of the stack; tensors and tables fill ndim/shape. */
static kind_t value_kind(lua_State *L, lua_Integer row, const char *name, int *ndim,
                         int64_t *shape)
{
    int top = lua_gettop(L);
    switch (lua_type(L, top)) {
    case LUA_TNUMBER:
        return lua_isinteger(L, top) ? K_INT : K_FLOAT;
    case LUA_TBOOLEAN:
        return K_BOOL;
    case LUA_TSTRING:
        return K_STRING;
    case LUA_TTABLE:
        if (nested_shape(L, top, ndim, shape) != 0 || !nested_check(L, top, 0, *ndim, shape))
            luaL_error(L, "row %I: column '%s' is a table that is not a nested array of numbers "
                       "of one shape", row, name);
        return K_TENSOR;
    case LUA_TUSERDATA: {
        luray_tensor_t *t = data_host->tensor_test(L, top);
        if (t != NULL) {
            if (t->ndim < 1 || t->ndim > DCOL_MAX_DIMS)
                luaL_error(L, "row %I: column '%s' is a %d-dimensional tensor (1 to %d allowed)",
                           row, name, t->ndim, DCOL_MAX_DIMS);
            *ndim = t->ndim;
            for (int d = 0; d < t->ndim; d++) {
                if (t->shape[d] < 1)
                    luaL_error(L, "row %I: column '%s' is an empty tensor", row, name);
                shape[d] = t->shape[d];
            }
            return K_TENSOR;
        }
        break;
    }
    default:
        break;
    }
    return luaL_error(L, "row %I: column '%s' is a %s, which a column cannot hold", row, name,
                      luaL_typename(L, top));
}

static void infer_column(lua_State *L, int rows, lua_Integer nrows, int name_idx, colinfo_t *ci)
{
    const char *name = lua_tostring(L, name_idx);
    memset(ci, 0, sizeof(*ci));
    for (lua_Integer i = 1; i <= nrows; i++) {
        lua_rawgeti(L, rows, i);
        lua_pushvalue(L, name_idx);
        if (lua_rawget(L, -2) == LUA_TNIL) {
            if (ci->first_missing == 0)
                ci->first_missing = i;
            lua_pop(L, 2);
            continue;
        }
        int ndim = 0;
        int64_t shape[DCOL_MAX_DIMS];
        kind_t k = value_kind(L, i, name, &ndim, shape);
        lua_pop(L, 2);
        if (ci->kind == K_NONE) {
            ci->kind = k;
            ci->ndim = ndim;
            memcpy(ci->shape, shape, sizeof(shape));
        } else if (k == K_TENSOR && ci->kind == K_TENSOR) {
            if (ndim != ci->ndim || memcmp(shape, ci->shape, (size_t)ndim * sizeof(int64_t))) {
                shape_text(L, ndim, shape);
                shape_text(L, ci->ndim, ci->shape);
                luaL_error(L, "row %I: column '%s' has shape %s, earlier rows have %s", i, name,
                           lua_tostring(L, -2), lua_tostring(L, -1));
            }
        } else if ((k == K_INT || k == K_FLOAT) && (ci->kind == K_INT || ci->kind == K_FLOAT)) {
            if (k == K_FLOAT)
                ci->kind = K_FLOAT;
        } else if (k != ci->kind) {
            luaL_error(L, "row %I: column '%s' is %s %s, earlier rows have %s", i, name,
                       kind_articles[k], kind_names[k], kind_names[ci->kind]);
        }
    }
    if (ci->first_missing != 0 && ci->kind != K_FLOAT)
        luaL_error(L, "row %I: column '%s' has no value (only float64 columns may miss values; "
                   "this one is %s)", ci->first_missing, name, kind_names[ci->kind]);
}

/* ---- pass 3: the values (no Lua errors while a builder holds memory) ---- */

static float tensor_elem(const luray_tensor_t *t, int64_t off)
{
    const char *p = t->data;
    switch (t->dtype) {
    case LURAY_DTYPE_FLOAT32:
        return ((const float *)(const void *)p)[off];
    case LURAY_DTYPE_FLOAT64:
        return (float)((const double *)(const void *)p)[off];
    case LURAY_DTYPE_INT32:
        return (float)((const int32_t *)(const void *)p)[off];
    case LURAY_DTYPE_INT64:
        return (float)((const int64_t *)(const void *)p)[off];
    default: /* uint8, bool */
        return (float)((const uint8_t *)p)[off];
    }
}

/* Copies a tensor of any layout into out (row-major float32). */
static void tensor_to_f32(const luray_tensor_t *t, float *out)
{
    int64_t pos[LURAY_TENSOR_MAX_DIMS] = {0};
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= t->shape[d];
    for (int64_t k = 0; k < n; k++) {
        int64_t off = 0;
        for (int d = 0; d < t->ndim; d++)
            off += pos[d] * t->strides[d];
        out[k] = tensor_elem(t, off);
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++pos[d] < t->shape[d])
                break;
            pos[d] = 0;
        }
    }
}

/* Reads a checked nested table at idx into out; returns the next free slot. */
static float *nested_to_f32(lua_State *L, int idx, int depth, int ndim, const int64_t *shape,
                            float *out)
{
    for (int64_t j = 1; j <= shape[depth]; j++) {
        lua_rawgeti(L, idx, j);
        if (depth + 1 == ndim)
            *out++ = (float)lua_tonumber(L, -1);
        else
            out = nested_to_f32(L, lua_gettop(L), depth + 1, ndim, shape, out);
        lua_pop(L, 1);
    }
    return out;
}

/* Appends the value on top of the stack (already checked to fit the column). */
static int append_value(lua_State *L, dcol_builder_t *b, const colinfo_t *ci, float *row)
{
    int top = lua_gettop(L);
    switch (ci->kind) {
    case K_INT:
        return dcol_append_i64(b, (int64_t)lua_tointeger(L, top));
    case K_FLOAT:
        return dcol_append_f64(b, lua_isnil(L, top) ? (double)NAN : lua_tonumber(L, top));
    case K_BOOL:
        return dcol_append_bool(b, lua_toboolean(L, top));
    case K_STRING: {
        size_t len;
        const char *s = lua_tolstring(L, top, &len); /* a string already: no conversion */
        return dcol_append_str(b, s, len);
    }
    default: {
        luray_tensor_t *t = data_host->tensor_test(L, top);
        if (t != NULL)
            tensor_to_f32(t, row);
        else
            nested_to_f32(L, top, 0, ci->ndim, ci->shape, row);
        return dcol_append_row_f32(b, row);
    }
    }
}

static const dcol_type_t kind_types[] = {DCOL_FLOAT64, DCOL_INT64, DCOL_FLOAT64, DCOL_BOOL,
                                         DCOL_STRING, DCOL_TENSOR};

static int fill_column(lua_State *L, int rows, lua_Integer nrows, int name_idx,
                       const colinfo_t *ci, float *row, dcol_t *out)
{
    dcol_builder_t b;
    if (dcol_builder_init(&b, kind_types[ci->kind], ci->ndim, ci->shape) != 0 ||
        dcol_builder_reserve(&b, nrows) != 0)
        goto err;
    for (lua_Integer i = 1; i <= nrows; i++) {
        lua_rawgeti(L, rows, i);
        lua_pushvalue(L, name_idx);
        lua_rawget(L, -2);
        int rc = append_value(L, &b, ci, row);
        lua_pop(L, 2);
        if (rc != 0)
            goto err;
    }
    dcol_free(out);
    dcol_builder_finish(&b, out);
    return out->data != NULL ? 0 : -1;
err:
    dcol_builder_free(&b);
    return -1;
}

int data_block_from_rows(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int hint = 0;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        hint = 2;
    }
    lua_settop(L, 2);
    lua_Integer nrows = (lua_Integer)lua_rawlen(L, 1);
    int ncols = collect_names(L, 1, nrows, hint);
    int list = lua_gettop(L);
    luaL_checkstack(L, ncols + 16 + 2 * DCOL_MAX_DIMS, "from_rows");
    colinfo_t *info = data_scratch(L, (size_t)ncols * sizeof(*info));
    const char **names = data_scratch(L, (size_t)ncols * sizeof(*names));
    size_t row_elems = 1;
    for (int k = 0; k < ncols; k++) {
        lua_rawgeti(L, list, k + 1);
        names[k] = lua_tostring(L, -1); /* the list keeps it */
        infer_column(L, 1, nrows, lua_gettop(L), &info[k]);
        lua_pop(L, 1);
        size_t elems = 1;
        for (int d = 0; d < info[k].ndim; d++)
            elems *= (size_t)info[k].shape[d];
        if (info[k].kind == K_TENSOR && elems > row_elems)
            row_elems = elems;
    }
    float *row = data_scratch(L, row_elems * sizeof(float));
    dcol_t **cols = data_scratch(L, (size_t)ncols * sizeof(*cols));
    data_push_empty_columns(L, ncols, cols);
    for (int k = 0; k < ncols; k++) {
        lua_rawgeti(L, list, k + 1);
        int rc = fill_column(L, 1, nrows, lua_gettop(L), &info[k], row, cols[k]);
        lua_pop(L, 1);
        if (rc != 0)
            return luaL_error(L, "from_rows: out of memory");
    }
    data_account(L, cols, ncols);
    data_block_push_columns(L, ncols, names);
    return 1;
}
