/* The data plugin's Lua types, shared by its binding files: Column ("data.Column") and Block
 * ("data.Block") userdata, their constructors and checkers, and the module's openers. */
#ifndef LURAY_DATA_LUA_DATA_H
#define LURAY_DATA_LUA_DATA_H

#include <lua.h>
#include <stdbool.h>

#include "dcol.h"
#include "luray/plugin.h"

#define DATA_COLUMN_MT "data.Column"
#define DATA_BLOCK_MT "data.Block"

/* The host API table, set by the plugin's init. */
extern const luray_host_api_t *data_host;

/* A Column userdata: the column plus whether it may be written (columns viewing the object store
 * are read-only). User value 1 keeps borrowed memory alive (the store keeper, a tensor, or the
 * column a slice views); nil when the column owns its memory. */
typedef struct {
    dcol_t c;
    bool readonly;
} data_column_t;

/* A new Column userdata holding an empty int64 column of length 0; fill c afterwards. */
data_column_t *data_column_push(lua_State *L);
data_column_t *data_column_check(lua_State *L, int idx);
data_column_t *data_column_test(lua_State *L, int idx);
/* Pushes a Column that takes over *c's owned memory (c is left zeroed). */
void data_column_push_owned(lua_State *L, dcol_t *c);
/* Pushes a read-only Column viewing memory kept alive by the value at owner_idx. */
void data_column_push_view(lua_State *L, const dcol_t *view, int owner_idx);

/* A Block userdata. User value 1 is a Lua list of its Column userdata, which keeps cols[] alive;
 * names are owned (malloc'd) by the block. */
typedef struct {
    int64_t nrows;
    int ncols;
    char **names;
    dcol_t **cols; /* &column->c of each Column in user value 1 */
} data_block_t;

data_block_t *data_block_check(lua_State *L, int idx);
data_block_t *data_block_test(lua_State *L, int idx);
/* Pushes a Block of the ncols Columns on top of the stack (popping them), named names[]
 * (copied). Raises on bad input (lengths differ, duplicate or empty name). */
void data_block_push_columns(lua_State *L, int ncols, const char *const *names);
/* Pushes a Block taking over owned columns cols[0..ncols) (each left zeroed). */
void data_block_push_owned(lua_State *L, int ncols, const char *const *names, dcol_t *cols);

/* Openers: each adds its functions to the module table at module_idx and sets up metatables. */
void data_column_open(lua_State *L, int module_idx);
void data_block_open(lua_State *L, int module_idx);
void data_io_open(lua_State *L, int module_idx);
void data_fs_open(lua_State *L, int module_idx);
void data_tensors_open(lua_State *L, int module_idx);

extern const luray_serializer_t data_column_serializer;
extern const luray_serializer_t data_block_serializer;

#endif
