/* The "data.Column" Lua type: constructors from Lua lists and tensors, element access, zero-copy
 * views, element-wise ops and reductions (computed by column_math.c) and its serializer, which
 * sends the column's buffers out of band and reads them back in place. */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "column_math.h"
#include "dcol_ops.h"
#include "lua_data.h"

/* Registry key of the mask the last __lt/__le computed (see l_column_lt). */
static const char last_mask_key;

/* Values tostring shows before "...". */
#define TOSTRING_VALUES 5

static const luaL_Reg column_meta[];
static const luaL_Reg column_methods[];

static int l_column_index(lua_State *L);

/* Creates the metatable on first use: a worker may decode a Column before any script there
 * required the module. */
static void push_column_mt(lua_State *L)
{
    if (luaL_newmetatable(L, DATA_COLUMN_MT)) {
        luaL_setfuncs(L, column_meta, 0);
        lua_newtable(L);
        luaL_setfuncs(L, column_methods, 0);
        lua_pushcclosure(L, l_column_index, 1);
        lua_setfield(L, -2, "__index");
    }
}

data_column_t *data_column_push(lua_State *L)
{
    data_column_t *col = lua_newuserdatauv(L, sizeof(*col), 1);

    memset(col, 0, sizeof(*col));
    col->c.type = DCOL_INT64;
    push_column_mt(L);
    lua_setmetatable(L, -2);
    return col;
}

data_column_t *data_column_check(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, DATA_COLUMN_MT);
}

data_column_t *data_column_test(lua_State *L, int idx)
{
    return luaL_testudata(L, idx, DATA_COLUMN_MT);
}

/* Lua's collector sees only the small userdata, not a column's malloc'd buffers: it is told about
 * them as if Lua had allocated them, so that garbage columns are collected at the pace their
 * memory calls for instead of piling up. Returns 1, the column on top of the stack. */
static int account_owned(lua_State *L, const dcol_t *c)
{
    size_t bytes = c->owned_data != NULL ? c->nbytes : 0;
    if (c->owned_offsets != NULL)
        bytes += ((size_t)c->len + 1) * sizeof(int64_t);
    size_t kb = bytes >> 10;
    if (kb > 0 && lua_gc(L, LUA_GCISRUNNING))
        lua_gc(L, LUA_GCSTEP, kb < INT_MAX ? (int)kb : INT_MAX);
    return 1;
}

void data_column_push_owned(lua_State *L, dcol_t *c)
{
    data_column_t *col = data_column_push(L);

    col->c = *c;
    memset(c, 0, sizeof(*c));
    account_owned(L, &col->c);
}

/* A Column over memory kept alive by the value at owner_idx, which becomes its user value. */
static void push_borrowed(lua_State *L, const dcol_t *view, int owner_idx, bool readonly)
{
    owner_idx = lua_absindex(L, owner_idx);
    data_column_t *col = data_column_push(L);
    col->c = *view;
    col->c.owned_data = NULL;
    col->c.owned_offsets = NULL;
    col->readonly = readonly;
    lua_pushvalue(L, owner_idx);
    lua_setiuservalue(L, -2, 1);
}

void data_column_push_view(lua_State *L, const dcol_t *view, int owner_idx)
{
    push_borrowed(L, view, owner_idx, true);
}

/* Gives a column a buffer of len values of w bytes, owned (data is never NULL). */
static void column_alloc(lua_State *L, dcol_t *c, dcol_type_t type, int64_t len, size_t w)
{
    if (len < 0 || (w > 0 && (uint64_t)len > (SIZE_MAX - 1) / w))
        luaL_error(L, "a column of %I rows is too large", (lua_Integer)len);
    c->type = type;
    c->len = len;
    c->nbytes = (size_t)len * w;
    c->data = c->owned_data = malloc(c->nbytes > 0 ? c->nbytes : 1);
    if (c->data == NULL)
        luaL_error(L, "not enough memory for a column of %I rows", (lua_Integer)len);
}

/* ---- tensors ---- */

static bool tensor_contiguous(const luray_tensor_t *t)
{
    int64_t expect = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->strides[d] != expect)
            return false;
        expect *= t->shape[d];
    }
    return true;
}

static int64_t tensor_numel(const luray_tensor_t *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= t->shape[d];
    return n;
}

static double elem_f64(int dtype, const void *p)
{
    switch (dtype) {
    case LURAY_DTYPE_FLOAT32: {
        float v;
        memcpy(&v, p, sizeof(v));
        return v;
    }
    case LURAY_DTYPE_FLOAT64: {
        double v;
        memcpy(&v, p, sizeof(v));
        return v;
    }
    case LURAY_DTYPE_INT32: {
        int32_t v;
        memcpy(&v, p, sizeof(v));
        return v;
    }
    case LURAY_DTYPE_INT64: {
        int64_t v;
        memcpy(&v, p, sizeof(v));
        return (double)v;
    }
    default: /* UINT8, BOOL */
        return *(const uint8_t *)p;
    }
}

static int64_t elem_i64(int dtype, const void *p)
{
    if (dtype == LURAY_DTYPE_INT64) { /* read as is: a double would round past 2^53 */
        int64_t v;
        memcpy(&v, p, sizeof(v));
        return v;
    }
    return (int64_t)elem_f64(dtype, p); /* exact for int32, uint8 and bool; floats truncate */
}

/* Copies a tensor's elements in row-major order (any strides) into dst as the values of a column
 * type: float32 for DCOL_TENSOR, else int64, float64 or bool (0/1). */
static void tensor_read(const luray_tensor_t *t, dcol_type_t as, void *dst)
{
    int64_t idx[LURAY_TENSOR_MAX_DIMS] = {0}, numel = tensor_numel(t);
    size_t es = data_host->dtype_size(t->dtype);
    bool linear = tensor_contiguous(t);

    for (int64_t k = 0; k < numel; k++) {
        int64_t off = linear ? k : 0;
        for (int d = 0; !linear && d < t->ndim; d++)
            off += idx[d] * t->strides[d];
        const char *p = (const char *)t->data + off * (int64_t)es;
        switch (as) {
        case DCOL_TENSOR:
            ((float *)dst)[k] = (float)elem_f64(t->dtype, p);
            break;
        case DCOL_FLOAT64:
            ((double *)dst)[k] = elem_f64(t->dtype, p);
            break;
        case DCOL_INT64:
            ((int64_t *)dst)[k] = elem_i64(t->dtype, p);
            break;
        default:
            ((uint8_t *)dst)[k] = elem_i64(t->dtype, p) != 0;
            break;
        }
        for (int d = t->ndim - 1; !linear && d >= 0; d--) {
            if (++idx[d] < t->shape[d])
                break;
            idx[d] = 0;
        }
    }
}

/* Pushes a tensor over n rows of the column at col_idx starting at row `first` (a single row when
 * `one_row`: the row shape; else the shape {n, row...}); the tensor keeps the column alive. */
static void push_tensor_of(lua_State *L, int col_idx, data_column_t *col, int64_t first, int64_t n,
                           bool one_row)
{
    static const int dtypes[] = {[DCOL_INT64] = LURAY_DTYPE_INT64,
                                 [DCOL_FLOAT64] = LURAY_DTYPE_FLOAT64,
                                 [DCOL_BOOL] = LURAY_DTYPE_BOOL,
                                 [DCOL_TENSOR] = LURAY_DTYPE_FLOAT32};
    int64_t shape[LURAY_TENSOR_MAX_DIMS];
    int ndim = 0;
    size_t w = dcol_value_size(&col->c);

    col_idx = lua_absindex(L, col_idx);
    if (!one_row)
        shape[ndim++] = n;
    if (col->c.type == DCOL_TENSOR)
        for (int d = 0; d < col->c.ndim; d++)
            shape[ndim++] = col->c.shape[d];
    size_t nbytes = (size_t)n * w;
    void *data = nbytes > 0 ? (char *)col->c.data + (size_t)first * w : NULL;
    luray_tensor_t *t = data_host->tensor_push(L);
    int rc = data_host->tensor_init_data(t, dtypes[col->c.type], ndim, shape, data, nbytes, NULL,
                                         col->readonly);
    if (rc != 0)
        luaL_error(L, "cannot make a tensor of the column: %s", data_host->strerror(rc));
    lua_pushvalue(L, col_idx);
    lua_setiuservalue(L, -2, 1);
}

/* ---- constructors ---- */

/* Raises for list entry i (on top of the stack) not being of the column's type. */
static int bad_value(lua_State *L, lua_Integer i, const char *expected)
{
    return luaL_error(L, "column: value %I is a %s, expected %s", i, luaL_typename(L, -1),
                      expected);
}

static void fill_fixed(lua_State *L, dcol_t *c, int64_t n)
{
    for (lua_Integer i = 1; i <= n; i++) {
        int t = lua_rawgeti(L, 2, i);
        switch (c->type) {
        case DCOL_INT64: {
            int isint = 0;
            lua_Integer v = t == LUA_TNUMBER ? lua_tointegerx(L, -1, &isint) : 0;
            if (!isint) {
                if (t == LUA_TNUMBER)
                    luaL_error(L, "column: value %I (%s) is not an integer", i,
                               luaL_tolstring(L, -1, NULL));
                bad_value(L, i, "an integer");
            }
            ((int64_t *)c->data)[i - 1] = v;
            break;
        }
        case DCOL_FLOAT64:
            if (t != LUA_TNUMBER && t != LUA_TNIL) /* nil: a missing float, NaN */
                bad_value(L, i, "a number");
            ((double *)c->data)[i - 1] = t == LUA_TNIL ? NAN : lua_tonumber(L, -1);
            break;
        default: /* DCOL_BOOL */
            if (t != LUA_TBOOLEAN)
                bad_value(L, i, "a boolean");
            ((uint8_t *)c->data)[i - 1] = (uint8_t)lua_toboolean(L, -1);
            break;
        }
        lua_pop(L, 1);
    }
}

/* Strings in two passes, types and sizes first, so the column is allocated once. */
static void fill_strings(lua_State *L, dcol_t *c, int64_t n)
{
    size_t total = 0, len;

    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, 2, i) != LUA_TSTRING)
            bad_value(L, i, "a string");
        lua_tolstring(L, -1, &len);
        total += len;
        lua_pop(L, 1);
    }
    c->type = DCOL_STRING;
    c->len = n;
    c->nbytes = total;
    c->data = c->owned_data = malloc(total > 0 ? total : 1);
    c->offsets = c->owned_offsets = malloc(((size_t)n + 1) * sizeof(int64_t));
    if (c->data == NULL || c->offsets == NULL)
        luaL_error(L, "not enough memory for a string column of %I rows", (lua_Integer)n);
    c->offsets[0] = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        const char *s = lua_tolstring(L, -1, &len);
        if (len > 0)
            memcpy((char *)c->data + c->offsets[i - 1], s, len);
        c->offsets[i] = c->offsets[i - 1] + (int64_t)len;
        lua_pop(L, 1);
    }
}

/* Reads a row shape: a list of 1 to DCOL_MAX_DIMS positive integers. */
static int check_row_shape(lua_State *L, int arg, int64_t *shape)
{
    luaL_checktype(L, arg, LUA_TTABLE);
    lua_Integer n = (lua_Integer)lua_rawlen(L, arg);
    if (n < 1 || n > DCOL_MAX_DIMS)
        luaL_argerror(L, arg, lua_pushfstring(L, "a row shape has 1 to %d dimensions, got %I",
                                              DCOL_MAX_DIMS, n));
    for (lua_Integer i = 1; i <= n; i++) {
        int isint;
        lua_rawgeti(L, arg, i);
        lua_Integer v = lua_tointegerx(L, -1, &isint);
        if (!isint || v < 1)
            luaL_argerror(L, arg, lua_pushfstring(L, "row_shape[%I] is not a positive integer", i));
        shape[i - 1] = v;
        lua_pop(L, 1);
    }
    return (int)n;
}

/* Checks that a tensor column's row shape has positive dimensions and a size that fits memory. */
static void check_row_size(lua_State *L, const dcol_t *c)
{
    uint64_t size = sizeof(float);
    for (int d = 0; d < c->ndim; d++) {
        if (c->shape[d] < 1)
            luaL_error(L, "column: tensor rows need dimensions of 1 or more, got %I in "
                          "dimension %d",
                       (lua_Integer)c->shape[d], d + 1);
        if ((uint64_t)c->shape[d] > SIZE_MAX / 2 / size)
            luaL_error(L, "column: the row shape is too large");
        size *= (uint64_t)c->shape[d];
    }
}

/* Infers a row shape from the value on top of the stack: a tensor or nested tables. */
static int infer_row_shape(lua_State *L, int64_t *shape)
{
    luray_tensor_t *t = data_host->tensor_test(L, -1);
    int ndim = 0;

    if (t != NULL) {
        if (t->ndim < 1 || t->ndim > DCOL_MAX_DIMS)
            luaL_error(L, "column: a tensor row has 1 to %d dimensions, got %d", DCOL_MAX_DIMS,
                       t->ndim);
        memcpy(shape, t->shape, (size_t)t->ndim * sizeof(int64_t));
        return t->ndim;
    }
    lua_pushvalue(L, -1);
    while (lua_type(L, -1) == LUA_TTABLE) {
        if (ndim == DCOL_MAX_DIMS)
            luaL_error(L, "column: tensor rows have at most %d dimensions", DCOL_MAX_DIMS);
        shape[ndim++] = (int64_t)lua_rawlen(L, -1);
        lua_rawgeti(L, -1, 1);
        lua_remove(L, -2);
    }
    lua_pop(L, 1);
    if (ndim == 0)
        luaL_error(L, "column: value 1 is a %s, expected a table of numbers or a tensor",
                   luaL_typename(L, -1));
    return ndim;
}

/* Copies the nested table on top of the stack (depth d of the row shape) into *dst. */
static void fill_nested(lua_State *L, const dcol_t *c, lua_Integer row, int d, float **dst)
{
    if (d == c->ndim) {
        if (lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "column: row %I holds a %s, expected a number", row,
                       luaL_typename(L, -1));
        *(*dst)++ = (float)lua_tonumber(L, -1);
        return;
    }
    if (lua_type(L, -1) != LUA_TTABLE || (int64_t)lua_rawlen(L, -1) != c->shape[d])
        luaL_error(L, "column: row %I does not have the row shape (dimension %d: expected %I "
                      "entries)",
                   row, d + 1, (lua_Integer)c->shape[d]);
    luaL_checkstack(L, 2, "tensor row too deep");
    for (int64_t k = 1; k <= c->shape[d]; k++) {
        lua_rawgeti(L, -1, (lua_Integer)k);
        fill_nested(L, c, row, d + 1, dst);
        lua_pop(L, 1);
    }
}

static void fill_tensor_rows(lua_State *L, dcol_t *c, int64_t n)
{
    size_t w = dcol_value_size(c);
    float *dst = c->data;

    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        luray_tensor_t *t = data_host->tensor_test(L, -1);
        if (t != NULL) {
            bool same = t->ndim == c->ndim;
            for (int d = 0; same && d < c->ndim; d++)
                same = t->shape[d] == c->shape[d];
            if (!same)
                luaL_error(L, "column: row %I is a tensor of another shape than the rows", i);
            tensor_read(t, DCOL_TENSOR, dst);
            dst += w / sizeof(float);
        } else {
            fill_nested(L, c, i, 0, &dst);
        }
        lua_pop(L, 1);
    }
}

/* C.column(type, list [, row_shape]) */
static int l_column_new(lua_State *L)
{
    const char *tname = luaL_checkstring(L, 1);
    dcol_type_t type;

    if (dcol_type_parse(tname, &type) != 0)
        return luaL_argerror(L, 1, lua_pushfstring(L, "unknown column type '%s' (expected int64, "
                                                      "float64, bool, string or tensor)",
                                                   tname));
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 3); /* the new column goes above the arguments */
    int64_t n = (int64_t)lua_rawlen(L, 2);
    data_column_t *col = data_column_push(L);
    switch (type) {
    case DCOL_STRING:
        fill_strings(L, &col->c, n);
        break;
    case DCOL_TENSOR:
        col->c.type = DCOL_TENSOR;
        if (!lua_isnoneornil(L, 3)) {
            col->c.ndim = check_row_shape(L, 3, col->c.shape);
        } else if (n > 0) {
            lua_rawgeti(L, 2, 1);
            col->c.ndim = infer_row_shape(L, col->c.shape);
            lua_pop(L, 1);
        } else {
            return luaL_error(L, "column: an empty tensor column needs a row_shape");
        }
        check_row_size(L, &col->c);
        column_alloc(L, &col->c, DCOL_TENSOR, n, dcol_value_size(&col->c));
        fill_tensor_rows(L, &col->c, n);
        break;
    default:
        column_alloc(L, &col->c, type, n, type == DCOL_BOOL ? 1 : 8);
        fill_fixed(L, &col->c, n);
        break;
    }
    return account_owned(L, &col->c);
}

/* C.column_from_tensor(t): 1-D int64/float64/bool and N-D float32 tensors are viewed in place
 * when contiguous; anything else is converted into a new column. */
static int l_column_from_tensor(lua_State *L)
{
    luray_tensor_t *t = data_host->tensor_test(L, 1);
    dcol_t view = {0};

    if (t == NULL)
        return luaL_typeerror(L, 1, "tensor");
    if (t->ndim < 1)
        return luaL_error(L, "column_from_tensor: a 0-dimensional tensor has no rows");
    if (t->ndim == 1) {
        switch (t->dtype) {
        case LURAY_DTYPE_INT64:
        case LURAY_DTYPE_INT32:
        case LURAY_DTYPE_UINT8:
            view.type = DCOL_INT64;
            break;
        case LURAY_DTYPE_BOOL:
            view.type = DCOL_BOOL;
            break;
        default:
            view.type = DCOL_FLOAT64;
            break;
        }
    } else {
        if (t->ndim - 1 > DCOL_MAX_DIMS)
            return luaL_error(L, "column_from_tensor: rows have at most %d dimensions",
                              DCOL_MAX_DIMS);
        view.type = DCOL_TENSOR;
        view.ndim = t->ndim - 1;
        for (int d = 1; d < t->ndim; d++) {
            if (t->shape[d] < 1)
                return luaL_error(L, "column_from_tensor: dimension %d has size 0; rows need "
                                     "at least one element",
                                  d + 1);
            view.shape[d - 1] = t->shape[d];
        }
    }
    view.len = t->shape[0];
    size_t w = dcol_value_size(&view);
    bool same_layout = t->ndim == 1 ? t->dtype == LURAY_DTYPE_INT64 ||
                                          t->dtype == LURAY_DTYPE_FLOAT64 ||
                                          t->dtype == LURAY_DTYPE_BOOL
                                    : t->dtype == LURAY_DTYPE_FLOAT32;
    if (same_layout && tensor_contiguous(t) && t->nbytes > 0 && t->data != NULL) {
        view.data = t->data;
        view.nbytes = t->nbytes;
        push_borrowed(L, &view, 1, t->readonly);
        return 1;
    }
    data_column_t *col = data_column_push(L);
    col->c.ndim = view.ndim;
    memcpy(col->c.shape, view.shape, sizeof(view.shape));
    column_alloc(L, &col->c, view.type, view.len, w);
    if (view.len > 0)
        tensor_read(t, view.type, col->c.data);
    return account_owned(L, &col->c);
}

/* ---- element access ---- */

static void push_value(lua_State *L, int col_idx, data_column_t *col, int64_t i)
{
    switch (col->c.type) {
    case DCOL_INT64:
        lua_pushinteger(L, ((const int64_t *)col->c.data)[i]);
        break;
    case DCOL_FLOAT64:
        lua_pushnumber(L, ((const double *)col->c.data)[i]);
        break;
    case DCOL_BOOL:
        lua_pushboolean(L, ((const uint8_t *)col->c.data)[i] != 0);
        break;
    case DCOL_STRING: {
        size_t len;
        const char *s = dcol_str(&col->c, i, &len);
        lua_pushlstring(L, s, len);
        break;
    }
    default:
        push_tensor_of(L, col_idx, col, i, 1, true);
        break;
    }
}

/* col[i] for integer keys (1-based, nil out of range), the methods for the rest. */
static int l_column_index(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TNUMBER) {
        data_column_t *col = data_column_check(L, 1);
        int isint;
        lua_Integer i = lua_tointegerx(L, 2, &isint);
        if (!isint || i < 1 || i > col->c.len)
            lua_pushnil(L);
        else
            push_value(L, 1, col, i - 1);
        return 1;
    }
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    return 1;
}

static int l_column_len(lua_State *L)
{
    lua_pushinteger(L, data_column_check(L, 1)->c.len);
    return 1;
}

static int l_column_gc(lua_State *L)
{
    dcol_free(&data_column_check(L, 1)->c);
    return 0;
}

static int l_column_type(lua_State *L)
{
    lua_pushstring(L, dcol_type_name(data_column_check(L, 1)->c.type));
    return 1;
}

static int l_column_shape(lua_State *L)
{
    data_column_t *col = data_column_check(L, 1);

    if (col->c.type != DCOL_TENSOR) {
        lua_pushnil(L);
        return 1;
    }
    lua_createtable(L, col->c.ndim, 0);
    for (int d = 0; d < col->c.ndim; d++) {
        lua_pushinteger(L, col->c.shape[d]);
        lua_rawseti(L, -2, d + 1);
    }
    return 1;
}

/* Nested tables of numbers for one tensor row (from d on), starting at *p. */
static void push_row_table(lua_State *L, const dcol_t *c, int d, const float **p)
{
    luaL_checkstack(L, 3, "tensor row too deep");
    lua_createtable(L, (int)c->shape[d], 0);
    for (int64_t k = 1; k <= c->shape[d]; k++) {
        if (d + 1 == c->ndim)
            lua_pushnumber(L, *(*p)++);
        else
            push_row_table(L, c, d + 1, p);
        lua_rawseti(L, -2, (lua_Integer)k);
    }
}

static int l_column_totable(lua_State *L)
{
    data_column_t *col = data_column_check(L, 1);
    int64_t n = col->c.len;
    const float *p = col->c.data;

    lua_createtable(L, n < INT_MAX ? (int)n : 0, 0);
    for (int64_t i = 0; i < n; i++) {
        if (col->c.type == DCOL_TENSOR)
            push_row_table(L, &col->c, 0, &p);
        else
            push_value(L, 1, col, i);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int l_column_tensor(lua_State *L)
{
    data_column_t *col = data_column_check(L, 1);

    if (col->c.type == DCOL_STRING)
        return luaL_error(L, "tensor: a string column has no tensor form");
    push_tensor_of(L, 1, col, 0, col->c.len, false);
    return 1;
}

static dcol_type_t check_type_arg(lua_State *L, int arg)
{
    const char *name = luaL_checkstring(L, arg);
    dcol_type_t type;

    if (dcol_type_parse(name, &type) != 0)
        luaL_argerror(L, arg, lua_pushfstring(L, "unknown column type '%s' (expected int64, "
                                                 "float64, bool, string or tensor)",
                                              name));
    return type;
}

static int l_column_astype(lua_State *L)
{
    data_column_t *col = data_column_check(L, 1);
    dcol_type_t to = check_type_arg(L, 2);
    char err[256];

    if (to == col->c.type) { /* columns are values: the same type is the same column */
        lua_settop(L, 1);
        return 1;
    }
    data_column_t *res = data_column_push(L);
    if (dcol_cast(&col->c, to, &res->c, err, sizeof(err)) != 0)
        return luaL_error(L, "astype: %s", err);
    return account_owned(L, &res->c);
}

static int l_column_slice(lua_State *L)
{
    data_column_t *col = data_column_check(L, 1);
    lua_Integer start = luaL_checkinteger(L, 2), n = luaL_checkinteger(L, 3);
    dcol_t view;

    if (start < 1 || n < 0 || start - 1 > col->c.len || n > col->c.len - (start - 1))
        return luaL_error(L, "slice: %I rows from row %I are out of range (the column has %I "
                             "rows)",
                          n, start, (lua_Integer)col->c.len);
    dcol_slice_view(&col->c, start - 1, n, &view);
    push_borrowed(L, &view, 1, col->readonly);
    return 1;
}

/* Pushes the mask the last __lt/__le made and forgets it; nil when there is none. */
static void take_last_mask(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &last_mask_key);
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &last_mask_key);
}

/* A bool column argument; `true` stands for the last mask a comparison operator made. */
static data_column_t *check_mask_arg(lua_State *L, int arg, int64_t len, const char *fn)
{
    if (lua_type(L, arg) == LUA_TBOOLEAN && lua_toboolean(L, arg)) {
        take_last_mask(L);
        if (lua_isnil(L, -1))
            luaL_error(L, "%s: got true but no comparison made a mask (use col:gt(x) and the "
                          "like, or write the comparison inside the call)",
                       fn);
        lua_replace(L, arg);
    }
    data_column_t *m = data_column_check(L, arg);
    if (m->c.type != DCOL_BOOL)
        luaL_error(L, "%s: the mask is a %s column, expected bool", fn,
                   dcol_type_name(m->c.type));
    if (m->c.len != len)
        luaL_error(L, "%s: the mask has %I rows, the column %I", fn, (lua_Integer)m->c.len,
                   (lua_Integer)len);
    return m;
}

static int l_column_select(lua_State *L)
{
    data_column_t *col = data_column_check(L, 1);
    data_column_t *mask = check_mask_arg(L, 2, col->c.len, "select");
    data_column_t *res = data_column_push(L);

    if (dcol_filter(&col->c, mask->c.data, &res->c) != 0)
        return luaL_error(L, "select: not enough memory");
    return account_owned(L, &res->c);
}

static int l_column_take(lua_State *L)
{
    data_column_t *col = data_column_check(L, 1), *idx = data_column_check(L, 2);

    if (idx->c.type != DCOL_INT64)
        return luaL_error(L, "take: indices must be an int64 column, got %s",
                          dcol_type_name(idx->c.type));
    const int64_t *ix = idx->c.data;
    for (int64_t k = 0; k < idx->c.len; k++)
        if (ix[k] < 0 || ix[k] >= col->c.len)
            return luaL_error(L, "take: index %I (entry %I) is out of range for %I rows "
                                 "(indices are 0-based)",
                              (lua_Integer)ix[k], (lua_Integer)k + 1, (lua_Integer)col->c.len);
    data_column_t *res = data_column_push(L);
    if (dcol_take(&col->c, ix, idx->c.len, &res->c) != 0)
        return luaL_error(L, "take: not enough memory");
    return account_owned(L, &res->c);
}

static int l_column_tostring(lua_State *L)
{
    data_column_t *col = data_column_check(L, 1);
    int64_t n = col->c.len;
    luaL_Buffer b;

    luaL_buffinit(L, &b);
    lua_pushfstring(L, "Column<%s", dcol_type_name(col->c.type));
    luaL_addvalue(&b);
    if (col->c.type == DCOL_TENSOR) {
        for (int d = 0; d < col->c.ndim; d++) {
            lua_pushfstring(L, d == 0 ? "{%I" : ", %I", (lua_Integer)col->c.shape[d]);
            luaL_addvalue(&b);
        }
        luaL_addchar(&b, '}');
    }
    lua_pushfstring(L, ">[%I]", (lua_Integer)n);
    luaL_addvalue(&b);
    if (col->c.type == DCOL_TENSOR) {
        luaL_pushresult(&b);
        return 1;
    }
    for (int64_t i = 0; i < n && i < TOSTRING_VALUES; i++) {
        luaL_addstring(&b, i == 0 ? " " : ", ");
        if (col->c.type == DCOL_STRING) {
            size_t len;
            const char *s = dcol_str(&col->c, i, &len);
            luaL_addchar(&b, '"');
            luaL_addlstring(&b, s, len > 20 ? 20 : len);
            luaL_addstring(&b, len > 20 ? "...\"" : "\"");
        } else {
            push_value(L, 1, col, i);
            luaL_tolstring(L, -1, NULL);
            lua_remove(L, -2);
            luaL_addvalue(&b);
        }
    }
    if (n > TOSTRING_VALUES)
        luaL_addstring(&b, ", ...");
    luaL_pushresult(&b);
    return 1;
}

/* ---- element-wise ops ---- */

/* A column, number, string or boolean (as 0/1) argument as an operand. */
static void to_operand(lua_State *L, int idx, dcol_operand_t *o, const char *what)
{
    data_column_t *c = data_column_test(L, idx);
    size_t len;

    if (c != NULL) {
        *o = dcol_operand_col(&c->c);
        return;
    }
    switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
        *o = lua_isinteger(L, idx) ? dcol_operand_int(lua_tointeger(L, idx))
                                   : dcol_operand_float(lua_tonumber(L, idx));
        return;
    case LUA_TSTRING: {
        const char *s = lua_tolstring(L, idx, &len);
        *o = dcol_operand_str(s, len);
        return;
    }
    case LUA_TBOOLEAN:
        *o = dcol_operand_int(lua_toboolean(L, idx));
        return;
    default:
        luaL_error(L, "%s: cannot combine a column with a %s value", what, luaL_typename(L, idx));
    }
}

static int column_arith(lua_State *L, dcol_arith_op_t op)
{
    dcol_operand_t a, b;
    char err[256];

    to_operand(L, 1, &a, dcol_arith_symbol(op));
    to_operand(L, 2, &b, dcol_arith_symbol(op));
    data_column_t *res = data_column_push(L);
    if (dcol_arith(op, &a, &b, &res->c, err, sizeof(err)) != 0)
        return luaL_error(L, "%s", err);
    return account_owned(L, &res->c);
}

static int l_column_add(lua_State *L) { return column_arith(L, DCOL_ADD); }
static int l_column_sub(lua_State *L) { return column_arith(L, DCOL_SUB); }
static int l_column_mul(lua_State *L) { return column_arith(L, DCOL_MUL); }
static int l_column_div(lua_State *L) { return column_arith(L, DCOL_DIV); }
static int l_column_idiv(lua_State *L) { return column_arith(L, DCOL_IDIV); }
static int l_column_mod(lua_State *L) { return column_arith(L, DCOL_MOD); }
static int l_column_pow(lua_State *L) { return column_arith(L, DCOL_POW); }

/* Pushes the column op(a); raises op's error. */
static int push_unary(lua_State *L, const dcol_t *a,
                      int (*op)(const dcol_t *a, dcol_t *out, char *err, size_t errlen))
{
    char err[256];

    data_column_t *res = data_column_push(L);
    if (op(a, &res->c, err, sizeof(err)) != 0)
        return luaL_error(L, "%s", err);
    return account_owned(L, &res->c);
}

static int l_column_unm(lua_State *L)
{
    return push_unary(L, &data_column_check(L, 1)->c, dcol_negate);
}

static int l_column_concat(lua_State *L)
{
    dcol_operand_t a, b;
    char err[256];

    for (int k = 1; k <= 2; k++)
        if (lua_type(L, k) == LUA_TNUMBER)
            lua_tolstring(L, k, NULL); /* a number joins as Lua would write it */
    to_operand(L, 1, &a, "..");
    to_operand(L, 2, &b, "..");
    data_column_t *res = data_column_push(L);
    if (dcol_str_concat(&a, &b, &res->c, err, sizeof(err)) != 0)
        return luaL_error(L, "%s", err);
    return account_owned(L, &res->c);
}

/* Pushes the mask of (arg 1) op (arg 2). */
static void push_comparison(lua_State *L, dcol_cmp_op_t op)
{
    dcol_operand_t a, b;
    char err[256];

    lua_settop(L, 2);
    to_operand(L, 1, &a, dcol_cmp_name(op));
    to_operand(L, 2, &b, dcol_cmp_name(op));
    data_column_t *res = data_column_push(L);
    if (dcol_compare(op, &a, &b, &res->c, err, sizeof(err)) != 0)
        luaL_error(L, "%s", err);
    account_owned(L, &res->c);
}

static int column_cmp_method(lua_State *L, dcol_cmp_op_t op)
{
    data_column_check(L, 1);
    luaL_checkany(L, 2);
    push_comparison(L, op);
    return 1;
}

static int l_column_eq(lua_State *L) { return column_cmp_method(L, DCOL_EQ); }
static int l_column_ne(lua_State *L) { return column_cmp_method(L, DCOL_NE); }
static int l_column_lt(lua_State *L) { return column_cmp_method(L, DCOL_LT); }
static int l_column_le(lua_State *L) { return column_cmp_method(L, DCOL_LE); }
static int l_column_gt(lua_State *L) { return column_cmp_method(L, DCOL_GT); }
static int l_column_ge(lua_State *L) { return column_cmp_method(L, DCOL_GE); }

/* Lua 5.4 turns the result of < and <= into a boolean, so the operators keep the mask they make
 * as the state's "last mask" and return true: batch:select(col > 0.5) receives true and takes
 * the mask with C.take_last_mask(). (a > b runs as b < a, so the column may be either side.) */
static int column_cmp_operator(lua_State *L, dcol_cmp_op_t op)
{
    push_comparison(L, op);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &last_mask_key);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_column_lt_op(lua_State *L) { return column_cmp_operator(L, DCOL_LT); }
static int l_column_le_op(lua_State *L) { return column_cmp_operator(L, DCOL_LE); }

static int l_take_last_mask(lua_State *L)
{
    take_last_mask(L);
    return 1;
}

static const dcol_t *check_bool_operand(lua_State *L, int idx, const char *op)
{
    data_column_t *c = data_column_test(L, idx);

    if (c == NULL)
        luaL_error(L, "%s needs bool columns, got a %s value", op, luaL_typename(L, idx));
    return &c->c;
}

static int column_mask_op(lua_State *L, bool is_and)
{
    const char *op = is_and ? "&" : "|";
    const dcol_t *a = check_bool_operand(L, 1, op), *b = check_bool_operand(L, 2, op);
    char err[256];

    data_column_t *res = data_column_push(L);
    int rc = is_and ? dcol_mask_and(a, b, &res->c, err, sizeof(err))
                    : dcol_mask_or(a, b, &res->c, err, sizeof(err));
    if (rc != 0)
        return luaL_error(L, "%s", err);
    return account_owned(L, &res->c);
}

static int l_column_band(lua_State *L) { return column_mask_op(L, true); }
static int l_column_bor(lua_State *L) { return column_mask_op(L, false); }

static int l_column_bnot(lua_State *L)
{
    return push_unary(L, check_bool_operand(L, 1, "~"), dcol_mask_not);
}

static int l_column_count(lua_State *L)
{
    data_column_t *col = data_column_check(L, 1);

    if (col->c.type != DCOL_BOOL)
        return luaL_error(L, "count: needs a bool column (a mask), got %s",
                          dcol_type_name(col->c.type));
    lua_pushinteger(L, dcol_mask_count(&col->c));
    return 1;
}

static int l_column_isnan(lua_State *L)
{
    return push_unary(L, &data_column_check(L, 1)->c, dcol_isnan);
}

/* ---- reductions ---- */

static int column_reduce(lua_State *L, dcol_reduce_op_t op)
{
    data_column_t *col = data_column_check(L, 1);
    dcol_stat_t st;
    char err[256];

    if (col->c.type == DCOL_STRING && (op == DCOL_MIN || op == DCOL_MAX)) {
        int64_t row = dcol_str_extreme(&col->c, op == DCOL_MAX);
        if (row < 0) {
            lua_pushnil(L);
        } else {
            size_t len;
            const char *s = dcol_str(&col->c, row, &len);
            lua_pushlstring(L, s, len);
        }
        return 1;
    }
    if (dcol_reduce(op, &col->c, &st, err, sizeof(err)) != 0)
        return luaL_error(L, "%s", err);
    if (!st.valid)
        lua_pushnil(L);
    else if (st.is_int)
        lua_pushinteger(L, st.i);
    else
        lua_pushnumber(L, st.f);
    return 1;
}

static int l_column_sum(lua_State *L) { return column_reduce(L, DCOL_SUM); }
static int l_column_mean(lua_State *L) { return column_reduce(L, DCOL_MEAN); }
static int l_column_min(lua_State *L) { return column_reduce(L, DCOL_MIN); }
static int l_column_max(lua_State *L) { return column_reduce(L, DCOL_MAX); }
static int l_column_std(lua_State *L) { return column_reduce(L, DCOL_STD); }

static const luaL_Reg column_meta[] = {
    {"__gc", l_column_gc},
    {"__len", l_column_len},
    {"__tostring", l_column_tostring},
    {"__add", l_column_add},
    {"__sub", l_column_sub},
    {"__mul", l_column_mul},
    {"__div", l_column_div},
    {"__idiv", l_column_idiv},
    {"__mod", l_column_mod},
    {"__pow", l_column_pow},
    {"__unm", l_column_unm},
    {"__concat", l_column_concat},
    {"__lt", l_column_lt_op},
    {"__le", l_column_le_op},
    {"__band", l_column_band},
    {"__bor", l_column_bor},
    {"__bnot", l_column_bnot},
    {NULL, NULL},
};

static const luaL_Reg column_methods[] = {
    {"type", l_column_type},
    {"shape", l_column_shape},
    {"totable", l_column_totable},
    {"tensor", l_column_tensor},
    {"astype", l_column_astype},
    {"slice", l_column_slice},
    {"select", l_column_select},
    {"take", l_column_take},
    {"eq", l_column_eq},
    {"ne", l_column_ne},
    {"lt", l_column_lt},
    {"le", l_column_le},
    {"gt", l_column_gt},
    {"ge", l_column_ge},
    {"count", l_column_count},
    {"isnan", l_column_isnan},
    {"sum", l_column_sum},
    {"mean", l_column_mean},
    {"min", l_column_min},
    {"max", l_column_max},
    {"std", l_column_std},
    {NULL, NULL},
};

/* ---- serializer ---- */

/* Header: u8 version | u8 type | u8 ndim | u8 0 | u32 0 | i64 rows | ndim x i64 row shape, little
 * endian. Buffers: the values (fixed-width types), or the offsets and then the bytes (strings). */
#define COLUMN_SER_VERSION 1
#define COLUMN_HDR_FIXED 16
#define COLUMN_HDR_MAX (COLUMN_HDR_FIXED + 8 * DCOL_MAX_DIMS)

static void put_i64(uint8_t *p, int64_t v)
{
    for (int k = 0; k < 8; k++)
        p[k] = (uint8_t)((uint64_t)v >> (8 * k));
}

static int64_t get_i64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int k = 0; k < 8; k++)
        v |= (uint64_t)p[k] << (8 * k);
    return (int64_t)v;
}

static int column_encode(const luray_host_api_t *host, lua_State *L, int idx,
                         luray_ser_writer_t *w)
{
    static const uint8_t none = 0; /* a valid address for empty buffers */
    data_column_t *col = luaL_testudata(L, idx, DATA_COLUMN_MT);
    uint8_t h[COLUMN_HDR_MAX] = {0};
    int rc;

    if (col == NULL)
        return LURAY_EINVAL;
    const dcol_t *c = &col->c;
    int ndim = c->type == DCOL_TENSOR ? c->ndim : 0;
    h[0] = COLUMN_SER_VERSION;
    h[1] = (uint8_t)c->type;
    h[2] = (uint8_t)ndim;
    put_i64(h + 8, c->len);
    for (int d = 0; d < ndim; d++)
        put_i64(h + COLUMN_HDR_FIXED + 8 * d, c->shape[d]);
    if ((rc = host->ser_write(w, h, COLUMN_HDR_FIXED + 8 * (size_t)ndim)) != 0)
        return rc;
    if (c->type != DCOL_STRING) {
        size_t nbytes = (size_t)c->len * dcol_value_size(c);
        return host->ser_write_buffer(w, c->data != NULL ? c->data : &none, nbytes);
    }
    if (c->offsets == NULL) /* an unfilled empty column */
        return LURAY_EINVAL;
    /* A slice's offsets do not start at 0: the bytes go from its first row, and the decoder
     * rebases the offsets. */
    rc = host->ser_write_buffer(w, c->offsets, ((size_t)c->len + 1) * sizeof(int64_t));
    if (rc != 0)
        return rc;
    size_t nbytes = (size_t)(c->offsets[c->len] - c->offsets[0]);
    const void *bytes = &none;
    if (c->data != NULL)
        bytes = (const char *)c->data + c->offsets[0];
    return host->ser_write_buffer(w, bytes, nbytes);
}

/* Checks a decoded header and fills the column's type, length and row shape. */
static int parse_header(const uint8_t *h, size_t hlen, dcol_t *c)
{
    if (h == NULL || hlen < COLUMN_HDR_FIXED || h[0] != COLUMN_SER_VERSION || h[1] >= DCOL_NTYPES)
        return LURAY_EPROTO;
    c->type = (dcol_type_t)h[1];
    c->ndim = h[2];
    c->len = get_i64(h + 8);
    if (c->len < 0 || hlen != COLUMN_HDR_FIXED + 8 * (size_t)c->ndim)
        return LURAY_EPROTO;
    if ((c->type == DCOL_TENSOR) != (c->ndim > 0) || c->ndim > DCOL_MAX_DIMS)
        return LURAY_EPROTO;
    uint64_t row = 4;
    for (int d = 0; d < c->ndim; d++) {
        c->shape[d] = get_i64(h + COLUMN_HDR_FIXED + 8 * d);
        if (c->shape[d] < 1 || (uint64_t)c->shape[d] > SIZE_MAX / row)
            return LURAY_EPROTO;
        row *= (uint64_t)c->shape[d];
    }
    return 0;
}

/* Points c at the decoded buffers after checking their sizes (and a string column's offsets);
 * a string column whose offsets do not start at 0 gets rebased offsets of its own. */
static int attach_buffers(const luray_host_api_t *host, luray_ser_reader_t *r, dcol_t *c)
{
    size_t len;

    if (c->type != DCOL_STRING) {
        size_t w = dcol_value_size(c);
        if (host->ser_buffer_count(r) != 1 || (uint64_t)c->len > SIZE_MAX / w)
            return LURAY_EPROTO;
        c->data = (void *)host->ser_buffer(r, 0, &len);
        if (c->data == NULL || len != (size_t)c->len * w)
            return LURAY_EPROTO;
        c->nbytes = len;
        return 0;
    }
    if (host->ser_buffer_count(r) != 2 || (uint64_t)c->len >= SIZE_MAX / sizeof(int64_t))
        return LURAY_EPROTO;
    const int64_t *off = host->ser_buffer(r, 0, &len);
    if (off == NULL || len != ((size_t)c->len + 1) * sizeof(int64_t))
        return LURAY_EPROTO;
    c->data = (void *)host->ser_buffer(r, 1, &c->nbytes);
    if (c->data == NULL || off[0] < 0)
        return LURAY_EPROTO;
    for (int64_t i = 0; i < c->len; i++)
        if (off[i + 1] < off[i])
            return LURAY_EPROTO;
    if ((uint64_t)(off[c->len] - off[0]) != c->nbytes)
        return LURAY_EPROTO;
    if (off[0] == 0) {
        c->offsets = (int64_t *)off;
        return 0;
    }
    c->offsets = c->owned_offsets = malloc(((size_t)c->len + 1) * sizeof(int64_t));
    if (c->offsets == NULL)
        return LURAY_ENOMEM;
    for (int64_t i = 0; i <= c->len; i++)
        c->offsets[i] = off[i] - off[0];
    return 0;
}

static int column_decode(const luray_host_api_t *host, lua_State *L, luray_ser_reader_t *r)
{
    size_t hlen;
    const uint8_t *h = host->ser_header(r, &hlen);
    dcol_t copy;
    int rc;

    /* The Column is made first, so what attach_buffers allocates has an owner. */
    data_column_t *col = data_column_push(L);
    if ((rc = parse_header(h, hlen, &col->c)) != 0 ||
        (rc = attach_buffers(host, r, &col->c)) != 0) {
        lua_pop(L, 1);
        return rc;
    }
    host->ser_push_keeper(L, r);
    if (!lua_isnil(L, -1)) {
        lua_setiuservalue(L, -2, 1);
        col->readonly = true;
        return 0;
    }
    /* No keeper: the buffers only live during this call, so the column takes a copy. */
    lua_pop(L, 1);
    if (dcol_copy(&col->c, &copy) != 0) {
        lua_pop(L, 1);
        return LURAY_ENOMEM;
    }
    dcol_free(&col->c);
    col->c = copy;
    return 0;
}

const luray_serializer_t data_column_serializer = {
    .type_name = DATA_COLUMN_MT,
    .encode = column_encode,
    .decode = column_decode,
};

/* ---- module ---- */

void data_column_open(lua_State *L, int module_idx)
{
    static const luaL_Reg funcs[] = {
        {"column", l_column_new},
        {"column_from_tensor", l_column_from_tensor},
        {"take_last_mask", l_take_last_mask},
        {NULL, NULL},
    };

    module_idx = lua_absindex(L, module_idx);
    push_column_mt(L);
    lua_pop(L, 1);
    lua_pushvalue(L, module_idx);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
}
