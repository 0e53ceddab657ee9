/* Batches to model inputs: C.stack_float32(batch, names) packs columns into one [rows, features]
 * float32 core tensor, the layout training and serving want, in one pass over each column. */
#include <lauxlib.h>
#include <lua.h>
#include <string.h>

#include "lua_data.h"

/* The column called name of the batch table or block at src_idx. */
static const dcol_t *column_of(lua_State *L, int src_idx, const char *name)
{
    data_block_t *b = data_block_test(L, src_idx);
    if (b != NULL) {
        for (int k = 0; k < b->ncols; k++)
            if (strcmp(b->names[k], name) == 0)
                return b->cols[k];
        luaL_error(L, "stack_float32: no column '%s'", name);
    }
    lua_getfield(L, src_idx, name);
    data_column_t *c = data_column_test(L, -1);
    lua_pop(L, 1); /* the batch table keeps the column alive */
    if (c == NULL)
        luaL_error(L, "stack_float32: no column '%s'", name);
    return &c->c;
}

/* Values per row a column adds to the features: 1, or a tensor column's row size. */
static int64_t width_of(lua_State *L, const dcol_t *c, const char *name)
{
    switch (c->type) {
    case DCOL_INT64:
    case DCOL_FLOAT64:
    case DCOL_BOOL:
        return 1;
    case DCOL_TENSOR:
        return (int64_t)(dcol_value_size(c) / sizeof(float));
    default:
        luaL_error(L, "stack_float32: column '%s' is a %s; features must be numbers", name,
                   dcol_type_name(c->type));
        return 0;
    }
}

static void put_column(const dcol_t *c, float *out, int64_t rows, int64_t stride, int64_t at,
                       int64_t w)
{
    switch (c->type) {
    case DCOL_INT64: {
        const int64_t *v = c->data;
        for (int64_t i = 0; i < rows; i++)
            out[i * stride + at] = (float)v[i];
        break;
    }
    case DCOL_FLOAT64: {
        const double *v = c->data;
        for (int64_t i = 0; i < rows; i++)
            out[i * stride + at] = (float)v[i];
        break;
    }
    case DCOL_BOOL: {
        const uint8_t *v = c->data;
        for (int64_t i = 0; i < rows; i++)
            out[i * stride + at] = v[i] ? 1.0f : 0.0f;
        break;
    }
    default: { /* DCOL_TENSOR: w floats per row */
        const float *v = c->data;
        for (int64_t i = 0; i < rows; i++)
            memcpy(out + i * stride + at, v + i * w, (size_t)w * sizeof(float));
        break;
    }
    }
}

/* C.stack_float32(batch_or_block, {names...}) -> float32 tensor [rows, features] */
static int l_stack_float32(lua_State *L)
{
    luaL_checktype(L, 2, LUA_TTABLE);
    if (data_block_test(L, 1) == NULL)
        luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
    if (n < 1)
        return luaL_error(L, "stack_float32: give at least one column name");
    if (n > 100000)
        return luaL_error(L, "stack_float32: too many columns (%I)", n);
    const dcol_t **cols = lua_newuserdatauv(L, (size_t)n * sizeof(*cols), 0);
    int64_t *widths = lua_newuserdatauv(L, (size_t)n * sizeof(*widths), 0);
    int64_t rows = -1, features = 0;
    for (lua_Integer k = 0; k < n; k++) {
        lua_rawgeti(L, 2, k + 1);
        const char *name = lua_tostring(L, -1);
        if (name == NULL)
            return luaL_error(L, "stack_float32: name %I is not a string", k + 1);
        cols[k] = column_of(L, 1, name);
        widths[k] = width_of(L, cols[k], name);
        if (rows >= 0 && cols[k]->len != rows)
            return luaL_error(L, "stack_float32: column '%s' has %I rows, others %I", name,
                              (lua_Integer)cols[k]->len, (lua_Integer)rows);
        rows = cols[k]->len;
        features += widths[k];
        lua_pop(L, 1);
    }
    luray_tensor_t *t = data_host->tensor_push(L);
    int64_t shape[2] = {rows, features};
    int rc = data_host->tensor_init(t, LURAY_DTYPE_FLOAT32, 2, shape, false);
    if (rc != 0)
        return luaL_error(L, "stack_float32: %s", data_host->strerror(rc));
    int64_t at = 0;
    for (lua_Integer k = 0; k < n; k++) {
        put_column(cols[k], t->data, rows, features, at, widths[k]);
        at += widths[k];
    }
    return 1;
}

void data_tensors_open(lua_State *L, int module_idx)
{
    lua_pushcfunction(L, l_stack_float32);
    lua_setfield(L, module_idx, "stack_float32");
}
