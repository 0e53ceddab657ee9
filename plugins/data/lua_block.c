/* The "data.Block" type: named Columns of equal length. Constructors (C.block, C.range, C.concat),
 * row and column access, zero-copy slicing and column selection, and C.isatty/now/rss. */
#include "lua_block.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "dcol_ops.h"

/* ---- the type ---- */

data_block_t *data_block_check(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, DATA_BLOCK_MT);
}

data_block_t *data_block_test(lua_State *L, int idx)
{
    return luaL_testudata(L, idx, DATA_BLOCK_MT);
}

static int l_block_gc(lua_State *L)
{
    data_block_t *b = luaL_checkudata(L, 1, DATA_BLOCK_MT);
    if (b->names != NULL)
        for (int k = 0; k < b->ncols; k++)
            free(b->names[k]);
    free(b->names);
    free(b->cols);
    memset(b, 0, sizeof(*b));
    return 0;
}

void *data_scratch(lua_State *L, size_t size)
{
    return lua_newuserdatauv(L, size ? size : 1, 0);
}

/* Checks the ncols values on top of the stack and the names before anything is allocated. */
static void check_new_columns(lua_State *L, int base, int ncols, const char *const *names)
{
    int64_t nrows = 0;
    for (int k = 0; k < ncols; k++) {
        const char *name = names[k];
        if (name == NULL || name[0] == '\0')
            luaL_error(L, "block: column %d has an empty name", k + 1);
        data_column_t *c = data_column_test(L, base + k);
        if (c == NULL)
            luaL_error(L, "block: column '%s' is a %s, expected a Column", name,
                       luaL_typename(L, base + k));
        if (k == 0)
            nrows = c->c.len;
        else if (c->c.len != nrows)
            luaL_error(L, "block: column '%s' has %I rows, column '%s' has %I", name,
                       (lua_Integer)c->c.len, names[0], (lua_Integer)nrows);
        for (int j = 0; j < k; j++)
            if (strcmp(names[j], name) == 0)
                luaL_error(L, "block: duplicate column name '%s'", name);
    }
}

void data_block_push_columns(lua_State *L, int ncols, const char *const *names)
{
    luaL_checkstack(L, 4, "block");
    int base = lua_gettop(L) - ncols + 1;
    check_new_columns(L, base, ncols, names);
    lua_createtable(L, ncols, 0);
    for (int k = 0; k < ncols; k++) {
        lua_pushvalue(L, base + k);
        lua_rawseti(L, -2, k + 1);
    }
    /* Created closed (no columns) and filled after, so an allocation failure leaks nothing. */
    data_block_t *b = lua_newuserdatauv(L, sizeof(*b), 1);
    memset(b, 0, sizeof(*b));
    data_block_push_mt(L);
    lua_setmetatable(L, -2);
    lua_rotate(L, -2, 1);
    lua_setiuservalue(L, -2, 1);
    size_t n = (size_t)(ncols ? ncols : 1);
    b->names = calloc(n, sizeof(*b->names));
    b->cols = calloc(n, sizeof(*b->cols));
    if (b->names == NULL || b->cols == NULL)
        luaL_error(L, "block: out of memory");
    b->ncols = ncols;
    for (int k = 0; k < ncols; k++) {
        b->names[k] = strdup(names[k]);
        if (b->names[k] == NULL)
            luaL_error(L, "block: out of memory");
        b->cols[k] = &data_column_check(L, base + k)->c;
    }
    b->nrows = ncols ? b->cols[0]->len : 0;
    if (ncols > 0) { /* else the block already sits at base */
        lua_replace(L, base);
        lua_settop(L, base);
    }
}

void data_push_empty_columns(lua_State *L, int n, dcol_t **cols)
{
    luaL_checkstack(L, n + 4, "block");
    for (int k = 0; k < n; k++) {
        data_column_t *c = data_column_push(L);
        dcol_free(&c->c);
        cols[k] = &c->c;
    }
}

void data_account(lua_State *L, dcol_t *const *cols, size_t n)
{
    size_t bytes = 0;
    for (size_t k = 0; k < n; k++) {
        if (cols[k]->owned_data != NULL)
            bytes += cols[k]->nbytes;
        if (cols[k]->owned_offsets != NULL)
            bytes += ((size_t)cols[k]->len + 1) * sizeof(int64_t);
    }
    size_t kb = bytes >> 10;
    if (kb > 0 && lua_gc(L, LUA_GCISRUNNING))
        lua_gc(L, LUA_GCSTEP, kb < INT_MAX ? (int)kb : INT_MAX);
}

void data_block_push_owned(lua_State *L, int ncols, const char *const *names, dcol_t *cols)
{
    dcol_t **made = data_scratch(L, (size_t)ncols * sizeof(*made));
    data_push_empty_columns(L, ncols, made);
    /* Nothing raises from here until every column has an owner. */
    for (int k = 0; k < ncols; k++) {
        *made[k] = cols[k];
        memset(&cols[k], 0, sizeof(cols[k]));
    }
    data_account(L, made, ncols);
    data_block_push_columns(L, ncols, names);
    lua_replace(L, -2); /* drop the scratch */
}

/* ---- helpers shared with the other block files ---- */

int data_block_find(const data_block_t *b, const char *name)
{
    for (int k = 0; k < b->ncols; k++)
        if (strcmp(b->names[k], name) == 0)
            return k;
    return -1;
}

int data_block_no_column(lua_State *L, const data_block_t *b, const char *what, const char *name)
{
    luaL_Buffer buf;
    luaL_buffinit(L, &buf);
    for (int k = 0; k < b->ncols; k++) {
        if (k > 0)
            luaL_addstring(&buf, ", ");
        luaL_addstring(&buf, b->names[k]);
    }
    luaL_pushresult(&buf);
    return luaL_error(L, "%s: no column '%s' (columns: %s)", what, name, lua_tostring(L, -1));
}

int *data_block_check_keys(lua_State *L, int arg, const data_block_t *b, const char *what,
                           int *n)
{
    arg = lua_absindex(L, arg);
    if (lua_type(L, arg) == LUA_TSTRING) {
        int *idx = data_scratch(L, sizeof(int));
        const char *name = lua_tostring(L, arg);
        if ((idx[0] = data_block_find(b, name)) < 0)
            data_block_no_column(L, b, what, name);
        *n = 1;
        return idx;
    }
    if (lua_isnoneornil(L, arg)) {
        *n = 0;
        return data_scratch(L, sizeof(int));
    }
    if (!lua_istable(L, arg))
        luaL_error(L, "%s: keys must be a column name or a list of names, got a %s", what,
                   luaL_typename(L, arg));
    lua_Integer len = (lua_Integer)lua_rawlen(L, arg);
    int *idx = data_scratch(L, (size_t)len * sizeof(int));
    for (lua_Integer i = 1; i <= len; i++) {
        if (lua_rawgeti(L, arg, i) != LUA_TSTRING)
            luaL_error(L, "%s: key %I is a %s, expected a column name", what, i,
                       luaL_typename(L, -1));
        const char *name = lua_tostring(L, -1);
        if ((idx[i - 1] = data_block_find(b, name)) < 0)
            data_block_no_column(L, b, what, name);
        lua_pop(L, 1);
    }
    *n = (int)len;
    return idx;
}

void data_block_push_column(lua_State *L, int block_idx, int k)
{
    lua_getiuservalue(L, block_idx, 1);
    lua_rawgeti(L, -1, k + 1);
    lua_remove(L, -2);
}

void data_block_push_take(lua_State *L, int block_idx, const int64_t *idx, int64_t n)
{
    block_idx = lua_absindex(L, block_idx);
    data_block_t *b = data_block_check(L, block_idx);
    dcol_t **cols = data_scratch(L, (size_t)b->ncols * sizeof(*cols));
    data_push_empty_columns(L, b->ncols, cols);
    for (int k = 0; k < b->ncols; k++)
        if (dcol_take(b->cols[k], idx, n, cols[k]) != 0)
            luaL_error(L, "take: out of memory");
    data_account(L, cols, b->ncols);
    data_block_push_columns(L, b->ncols, (const char *const *)b->names);
    lua_replace(L, -2);
}

void data_push_cell(lua_State *L, const dcol_t *c, int64_t i, int col_idx)
{
    switch (c->type) {
    case DCOL_INT64:
        lua_pushinteger(L, ((const int64_t *)c->data)[i]);
        break;
    case DCOL_FLOAT64:
        lua_pushnumber(L, ((const double *)c->data)[i]);
        break;
    case DCOL_BOOL:
        lua_pushboolean(L, ((const uint8_t *)c->data)[i] != 0);
        break;
    case DCOL_STRING: {
        size_t len;
        const char *s = dcol_str(c, i, &len);
        lua_pushlstring(L, s, len);
        break;
    }
    case DCOL_TENSOR: {
        col_idx = lua_absindex(L, col_idx);
        data_column_t *col = data_column_check(L, col_idx);
        size_t w = dcol_value_size(c);
        luray_tensor_t *t = data_host->tensor_push(L);
        int rc = data_host->tensor_init_data(t, LURAY_DTYPE_FLOAT32, c->ndim, c->shape,
                                             (char *)c->data + (size_t)i * w, w, NULL,
                                             col->readonly);
        if (rc != 0)
            luaL_error(L, "tensor row: %s", data_host->strerror(rc));
        lua_pushvalue(L, col_idx);
        lua_setiuservalue(L, -2, 1);
        break;
    }
    default:
        lua_pushnil(L);
        break;
    }
}

uint64_t data_check_seed(lua_State *L, int arg)
{
    if (lua_isnoneornil(L, arg)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^
               ((uint64_t)getpid() << 32);
    }
    if (!lua_isinteger(L, arg)) {
        lua_Number x = luaL_checknumber(L, arg);
        lua_Integer v = 0;
        if (!lua_numbertointeger(x, &v))
            luaL_argerror(L, arg, "seed must be an integer");
        return (uint64_t)v;
    }
    return (uint64_t)lua_tointeger(L, arg);
}

/* ---- constructors ---- */

/* C.block(names, cols) */
static int l_block(lua_State *L)
{
    lua_settop(L, 2);
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    if ((lua_Integer)lua_rawlen(L, 2) != n)
        return luaL_error(L, "block: %I names but %I columns", n, (lua_Integer)lua_rawlen(L, 2));
    if (n > 1000000)
        return luaL_error(L, "block: too many columns (%I)", n);
    const char **names = data_scratch(L, (size_t)n * sizeof(*names));
    luaL_checkstack(L, (int)n + 4, "block");
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, 1, i) != LUA_TSTRING)
            return luaL_error(L, "block: name %I is a %s, expected a string", i,
                              luaL_typename(L, -1));
        names[i - 1] = lua_tostring(L, -1); /* the names table keeps it alive */
        lua_pop(L, 1);
    }
    for (lua_Integer i = 1; i <= n; i++)
        lua_rawgeti(L, 2, i);
    data_block_push_columns(L, (int)n, names);
    return 1;
}

/* C.range(start, n) */
static int l_range(lua_State *L)
{
    lua_Integer start = luaL_checkinteger(L, 1), n = luaL_checkinteger(L, 2);
    if (n < 0)
        return luaL_error(L, "range: negative row count %I", n);
    if (n > ((lua_Integer)1 << 40))
        return luaL_error(L, "range: %I rows is too many", n);
    data_column_t *c = data_column_push(L);
    dcol_free(&c->c);
    c->c.type = DCOL_INT64;
    c->c.data = malloc((size_t)(n ? n : 1) * 8);
    if (c->c.data == NULL)
        return luaL_error(L, "range: out of memory");
    c->c.owned_data = c->c.data;
    c->c.len = n;
    c->c.nbytes = (size_t)n * 8;
    int64_t *v = c->c.data;
    for (lua_Integer i = 0; i < n; i++)
        v[i] = (int64_t)((uint64_t)start + (uint64_t)i);
    dcol_t *made = &c->c;
    data_account(L, &made, 1);
    const char *names[] = {"id"};
    data_block_push_columns(L, 1, names);
    return 1;
}

/* Whether block j has exactly the columns of the first block (any order). */
static void check_same_names(lua_State *L, const data_block_t *first, const data_block_t *b,
                             lua_Integer j)
{
    for (int k = 0; k < first->ncols; k++)
        if (data_block_find(b, first->names[k]) < 0)
            data_block_no_column(L, b, lua_pushfstring(L, "concat: block %I", j),
                                 first->names[k]);
    for (int k = 0; k < b->ncols; k++)
        if (data_block_find(first, b->names[k]) < 0)
            luaL_error(L, "concat: block %I has column '%s', which block 1 lacks", j,
                       b->names[k]);
}

/* C.concat(blocks) */
static int l_concat(lua_State *L)
{
    lua_settop(L, 1);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    if (n == 0)
        return luaL_error(L, "concat: no blocks");
    data_block_t **blocks = data_scratch(L, (size_t)n * sizeof(*blocks));
    lua_Integer used = 0, first = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, i);
        data_block_t *b = data_block_test(L, -1);
        if (b == NULL)
            return luaL_error(L, "concat: item %I is a %s, expected a Block", i,
                              luaL_typename(L, -1));
        lua_pop(L, 1);
        if (b->ncols == 0)
            continue; /* a block without columns has no rows to add */
        if (used == 0)
            first = i;
        else
            check_same_names(L, blocks[0], b, i);
        blocks[used++] = b;
    }
    if (used <= 1) {
        lua_rawgeti(L, 1, used ? first : 1);
        return 1;
    }
    const data_block_t *b0 = blocks[0];
    const dcol_t **parts = data_scratch(L, (size_t)used * sizeof(*parts));
    dcol_t **cols = data_scratch(L, (size_t)b0->ncols * sizeof(*cols));
    data_push_empty_columns(L, b0->ncols, cols);
    for (int k = 0; k < b0->ncols; k++) {
        for (lua_Integer j = 0; j < used; j++)
            parts[j] = blocks[j]->cols[data_block_find(blocks[j], b0->names[k])];
        char err[160];
        if (dcol_concat(parts, (int)used, cols[k], err, sizeof(err)) != 0)
            return luaL_error(L, "concat: column '%s': %s", b0->names[k], err);
    }
    data_account(L, cols, b0->ncols);
    data_block_push_columns(L, b0->ncols, (const char *const *)b0->names);
    return 1;
}

/* ---- methods ---- */

static int l_num_rows(lua_State *L)
{
    lua_pushinteger(L, data_block_check(L, 1)->nrows);
    return 1;
}

static int l_num_columns(lua_State *L)
{
    lua_pushinteger(L, data_block_check(L, 1)->ncols);
    return 1;
}

static int l_names(lua_State *L)
{
    data_block_t *b = data_block_check(L, 1);
    lua_createtable(L, b->ncols, 0);
    for (int k = 0; k < b->ncols; k++) {
        lua_pushstring(L, b->names[k]);
        lua_rawseti(L, -2, k + 1);
    }
    return 1;
}

static void push_shape(lua_State *L, const dcol_t *c)
{
    lua_createtable(L, c->ndim, 0);
    for (int d = 0; d < c->ndim; d++) {
        lua_pushinteger(L, c->shape[d]);
        lua_rawseti(L, -2, d + 1);
    }
}

static int l_schema(lua_State *L)
{
    data_block_t *b = data_block_check(L, 1);
    lua_createtable(L, b->ncols, 0);
    for (int k = 0; k < b->ncols; k++) {
        lua_createtable(L, 0, 3);
        lua_pushstring(L, b->names[k]);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, dcol_type_name(b->cols[k]->type));
        lua_setfield(L, -2, "type");
        if (b->cols[k]->type == DCOL_TENSOR) {
            push_shape(L, b->cols[k]);
            lua_setfield(L, -2, "shape");
        }
        lua_rawseti(L, -2, k + 1);
    }
    return 1;
}

static int64_t column_bytes(const dcol_t *c)
{
    if (c->type == DCOL_STRING)
        return (c->len + 1) * 8 + (c->offsets[c->len] - c->offsets[0]);
    return c->len * (int64_t)dcol_value_size(c);
}

static int l_nbytes(lua_State *L)
{
    data_block_t *b = data_block_check(L, 1);
    int64_t total = 0;
    for (int k = 0; k < b->ncols; k++)
        total += column_bytes(b->cols[k]);
    lua_pushinteger(L, total);
    return 1;
}

static int l_column(lua_State *L)
{
    data_block_t *b = data_block_check(L, 1);
    int k = data_block_find(b, luaL_checkstring(L, 2));
    if (k < 0)
        lua_pushnil(L);
    else
        data_block_push_column(L, 1, k);
    return 1;
}

static int l_columns(lua_State *L)
{
    data_block_t *b = data_block_check(L, 1);
    lua_createtable(L, b->ncols, 0);
    for (int k = 0; k < b->ncols; k++) {
        data_block_push_column(L, 1, k);
        lua_rawseti(L, -2, k + 1);
    }
    return 1;
}

/* Pushes the Column userdata of every column (at base .. base + ncols - 1), then the names as
 * Lua strings (base + ncols ..), so that making rows neither looks up nor hashes them again. */
static int push_all_columns(lua_State *L, int block_idx, const data_block_t *b)
{
    luaL_checkstack(L, 2 * b->ncols + 8, "block");
    int base = lua_gettop(L) + 1;
    lua_getiuservalue(L, block_idx, 1);
    for (int k = 0; k < b->ncols; k++)
        lua_rawgeti(L, base, k + 1);
    lua_remove(L, base);
    for (int k = 0; k < b->ncols; k++)
        lua_pushstring(L, b->names[k]);
    return base;
}

static void push_row(lua_State *L, const data_block_t *b, int64_t i, int col_base)
{
    lua_createtable(L, 0, b->ncols);
    for (int k = 0; k < b->ncols; k++) {
        lua_pushvalue(L, col_base + b->ncols + k);
        data_push_cell(L, b->cols[k], i, col_base + k);
        lua_rawset(L, -3);
    }
}

static int l_row(lua_State *L)
{
    lua_settop(L, 2);
    data_block_t *b = data_block_check(L, 1);
    lua_Integer i = luaL_checkinteger(L, 2);
    if (i < 1 || i > b->nrows) {
        lua_pushnil(L);
        return 1;
    }
    int base = push_all_columns(L, 1, b);
    push_row(L, b, i - 1, base);
    return 1;
}

/* Clamps (start1, n) arguments at arg, arg + 1 to rows of b: *start 0-based, *n in range. */
static void check_range(lua_State *L, int arg, const data_block_t *b, int64_t *start, int64_t *n)
{
    lua_Integer s = luaL_optinteger(L, arg, 1);
    lua_Integer cnt = luaL_optinteger(L, arg + 1, b->nrows);
    luaL_argcheck(L, s >= 1, arg, "start must be >= 1");
    luaL_argcheck(L, cnt >= 0, arg + 1, "count must be >= 0");
    if (s - 1 > b->nrows)
        s = b->nrows + 1;
    if (cnt > b->nrows - (s - 1))
        cnt = b->nrows - (s - 1);
    *start = s - 1;
    *n = cnt;
}

/* b:rows([start1 [, n]]) */
static int l_rows(lua_State *L)
{
    lua_settop(L, 3);
    data_block_t *b = data_block_check(L, 1);
    int64_t start, n;
    check_range(L, 2, b, &start, &n);
    int base = push_all_columns(L, 1, b);
    lua_createtable(L, (int)(n < 1 << 24 ? n : 1 << 24), 0);
    for (int64_t i = 0; i < n; i++) {
        push_row(L, b, start + i, base);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* b:slice(start1, n): columns viewing the block's (the source Columns keep the memory). */
static int l_slice(lua_State *L)
{
    lua_settop(L, 3);
    data_block_t *b = data_block_check(L, 1);
    int64_t start, n;
    luaL_checkinteger(L, 2);
    check_range(L, 2, b, &start, &n);
    int base = push_all_columns(L, 1, b);
    for (int k = 0; k < b->ncols; k++) {
        dcol_t view;
        dcol_slice_view(b->cols[k], start, n, &view);
        data_column_push_view(L, &view, base + k);
    }
    data_block_push_columns(L, b->ncols, (const char *const *)b->names);
    return 1;
}

/* The Column at arg, which must hold values of type `type`; `must` is the error's start ("take:
 * indexes must be an int64 Column"), which goes on with what the argument is. */
static data_column_t *check_column_of(lua_State *L, int arg, dcol_type_t type, const char *must)
{
    data_column_t *c = data_column_test(L, arg);
    if (c == NULL || c->c.type != type)
        luaL_error(L, "%s, got %s", must, c ? dcol_type_name(c->c.type) : luaL_typename(L, arg));
    return c;
}

/* b:take(idx): idx an int64 Column of 0-based row indexes. */
static int l_take(lua_State *L)
{
    lua_settop(L, 2);
    data_block_t *b = data_block_check(L, 1);
    data_column_t *ic = check_column_of(L, 2, DCOL_INT64, "take: indexes must be an int64 Column");
    const int64_t *idx = ic->c.data;
    for (int64_t i = 0; i < ic->c.len; i++)
        if (idx[i] < 0 || idx[i] >= b->nrows)
            return luaL_error(L, "take: index %I (entry %I) is out of range for %I rows",
                              (lua_Integer)idx[i], (lua_Integer)(i + 1),
                              (lua_Integer)b->nrows);
    data_block_push_take(L, 1, idx, ic->c.len);
    return 1;
}

/* b:filter(mask): mask a bool Column of the block's length. */
static int l_filter(lua_State *L)
{
    lua_settop(L, 2);
    data_block_t *b = data_block_check(L, 1);
    data_column_t *m = check_column_of(L, 2, DCOL_BOOL, "filter: mask must be a bool Column");
    if (m->c.len != b->nrows)
        return luaL_error(L, "filter: mask has %I rows, the block has %I", (lua_Integer)m->c.len,
                          (lua_Integer)b->nrows);
    dcol_t **cols = data_scratch(L, (size_t)b->ncols * sizeof(*cols));
    data_push_empty_columns(L, b->ncols, cols);
    for (int k = 0; k < b->ncols; k++)
        if (dcol_filter(b->cols[k], m->c.data, cols[k]) != 0)
            return luaL_error(L, "filter: out of memory");
    data_account(L, cols, b->ncols);
    data_block_push_columns(L, b->ncols, (const char *const *)b->names);
    return 1;
}

/* Pushes the chosen columns (indexes idx[0..n)) and makes a block of them named names. */
static void push_subset(lua_State *L, int block_idx, const int *idx, int n, const char **names)
{
    data_block_t *b = data_block_check(L, block_idx);
    luaL_checkstack(L, n + 4, "block");
    for (int k = 0; k < n; k++) {
        data_block_push_column(L, block_idx, idx[k]);
        if (names[k] == NULL)
            names[k] = b->names[idx[k]];
    }
    data_block_push_columns(L, n, names);
}

static int l_select(lua_State *L)
{
    lua_settop(L, 2);
    data_block_t *b = data_block_check(L, 1);
    int n;
    int *idx = data_block_check_keys(L, 2, b, "select", &n);
    const char **names = data_scratch(L, (size_t)n * sizeof(*names));
    memset(names, 0, (size_t)n * sizeof(*names));
    push_subset(L, 1, idx, n, names);
    return 1;
}

static int l_drop(lua_State *L)
{
    lua_settop(L, 2);
    data_block_t *b = data_block_check(L, 1);
    int n;
    int *drop = data_block_check_keys(L, 2, b, "drop", &n);
    int *keep = data_scratch(L, (size_t)b->ncols * sizeof(*keep));
    const char **names = data_scratch(L, (size_t)b->ncols * sizeof(*names));
    int kept = 0;
    for (int k = 0; k < b->ncols; k++) {
        bool dropped = false;
        for (int j = 0; j < n && !dropped; j++)
            dropped = drop[j] == k;
        if (!dropped) {
            names[kept] = NULL;
            keep[kept++] = k;
        }
    }
    push_subset(L, 1, keep, kept, names);
    return 1;
}

/* b:rename({old = new, ...}) */
static int l_rename(lua_State *L)
{
    lua_settop(L, 2);
    data_block_t *b = data_block_check(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 2) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "rename: the map must be {old_name = new_name}");
        if (data_block_find(b, lua_tostring(L, -2)) < 0)
            data_block_no_column(L, b, "rename", lua_tostring(L, -2));
        lua_pop(L, 1);
    }
    int *idx = data_scratch(L, (size_t)b->ncols * sizeof(*idx));
    const char **names = data_scratch(L, (size_t)b->ncols * sizeof(*names));
    for (int k = 0; k < b->ncols; k++) {
        idx[k] = k;
        lua_getfield(L, 2, b->names[k]); /* kept on the stack while names[] points at it */
        names[k] = lua_isstring(L, -1) ? lua_tostring(L, -1) : b->names[k];
    }
    push_subset(L, 1, idx, b->ncols, names);
    return 1;
}

/* b:with_column(name, col): replaces or appends. */
static int l_with_column(lua_State *L)
{
    lua_settop(L, 3);
    data_block_t *b = data_block_check(L, 1);
    const char *name = luaL_checkstring(L, 2);
    data_column_t *c = data_column_test(L, 3);
    if (c == NULL)
        return luaL_error(L, "with_column: '%s' is a %s, expected a Column", name,
                          luaL_typename(L, 3));
    if (b->ncols > 0 && c->c.len != b->nrows)
        return luaL_error(L, "with_column: column '%s' has %I rows, the block has %I", name,
                          (lua_Integer)c->c.len, (lua_Integer)b->nrows);
    int at = data_block_find(b, name), n = b->ncols + (at < 0);
    const char **names = data_scratch(L, (size_t)n * sizeof(*names));
    luaL_checkstack(L, n + 4, "block");
    for (int k = 0; k < b->ncols; k++) {
        names[k] = b->names[k];
        if (k == at)
            lua_pushvalue(L, 3);
        else
            data_block_push_column(L, 1, k);
    }
    if (at < 0) {
        names[n - 1] = name;
        lua_pushvalue(L, 3);
    }
    data_block_push_columns(L, n, names);
    return 1;
}

/* b:zip(other): other's columns appended; a name already taken gets a suffix _1 (or _2, ...). */
static int l_zip(lua_State *L)
{
    lua_settop(L, 2);
    data_block_t *a = data_block_check(L, 1), *o = data_block_check(L, 2);
    if (a->nrows != o->nrows)
        return luaL_error(L, "zip: blocks have %I and %I rows", (lua_Integer)a->nrows,
                          (lua_Integer)o->nrows);
    int n = a->ncols + o->ncols;
    const char **names = data_scratch(L, (size_t)n * sizeof(*names));
    luaL_checkstack(L, n + 8, "block");
    lua_newtable(L); /* the suffixed names, kept alive here */
    int keep_idx = lua_gettop(L);
    for (int k = 0; k < a->ncols; k++)
        names[k] = a->names[k];
    for (int k = 0; k < o->ncols; k++) {
        const char *name = o->names[k];
        for (int s = 1; ; s++) {
            bool taken = false;
            for (int j = 0; j < a->ncols + k && !taken; j++)
                taken = strcmp(names[j], name) == 0;
            if (!taken)
                break;
            name = lua_pushfstring(L, "%s_%d", o->names[k], s);
            lua_rawseti(L, keep_idx, (lua_Integer)lua_rawlen(L, keep_idx) + 1);
        }
        names[a->ncols + k] = name;
    }
    for (int k = 0; k < a->ncols; k++)
        data_block_push_column(L, 1, k);
    for (int k = 0; k < o->ncols; k++)
        data_block_push_column(L, 2, k);
    data_block_push_columns(L, n, names);
    return 1;
}

static int l_tostring(lua_State *L)
{
    data_block_t *b = data_block_check(L, 1);
    luaL_Buffer buf;
    luaL_buffinit(L, &buf);
    lua_pushfstring(L, "Block(%I rows", (lua_Integer)b->nrows);
    luaL_addvalue(&buf);
    for (int k = 0; k < b->ncols; k++) {
        lua_pushfstring(L, "%s %s %s", k == 0 ? ":" : ",", b->names[k],
                        dcol_type_name(b->cols[k]->type));
        luaL_addvalue(&buf);
    }
    luaL_addchar(&buf, ')');
    luaL_pushresult(&buf);
    return 1;
}

static const luaL_Reg block_methods[] = {
    {"num_rows", l_num_rows},
    {"num_columns", l_num_columns},
    {"names", l_names},
    {"schema", l_schema},
    {"nbytes", l_nbytes},
    {"column", l_column},
    {"columns", l_columns},
    {"row", l_row},
    {"rows", l_rows},
    {"slice", l_slice},
    {"take", l_take},
    {"filter", l_filter},
    {"select", l_select},
    {"drop", l_drop},
    {"rename", l_rename},
    {"with_column", l_with_column},
    {"zip", l_zip},
    {NULL, NULL},
};

void data_block_push_mt(lua_State *L)
{
    if (!luaL_newmetatable(L, DATA_BLOCK_MT))
        return;
    luaL_newlib(L, block_methods);
    luaL_setfuncs(L, data_block_ops_methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_block_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_num_rows);
    lua_setfield(L, -2, "__len");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
}

/* ---- process helpers ---- */

static int l_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
    return 1;
}

static int l_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
    return 1;
}

/* Peak resident set size in bytes (Linux reports ru_maxrss in KiB). */
static int l_rss(lua_State *L)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return luaL_error(L, "rss: getrusage failed");
    lua_pushinteger(L, (lua_Integer)ru.ru_maxrss * 1024);
    return 1;
}

static const luaL_Reg block_funcs[] = {
    {"block", l_block},
    {"range", l_range},
    {"concat", l_concat},
    {"from_rows", data_block_from_rows},
    {"isatty", l_isatty},
    {"now", l_now},
    {"rss", l_rss},
    {NULL, NULL},
};

void data_block_open(lua_State *L, int module_idx)
{
    module_idx = lua_absindex(L, module_idx);
    data_block_push_mt(L);
    lua_pop(L, 1);
    lua_pushvalue(L, module_idx);
    luaL_setfuncs(L, block_funcs, 0);
    luaL_setfuncs(L, data_block_ops_funcs, 0);
    lua_pop(L, 1);
}
