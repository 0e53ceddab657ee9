/* Internals shared by the Block binding files: lua_block.c (the type and its plain methods),
 * lua_block_ops.c (sort, partitions, group-by), lua_block_rows.c (from_rows), lua_block_ser.c. */
#ifndef LURAY_DATA_LUA_BLOCK_H
#define LURAY_DATA_LUA_BLOCK_H

#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>

#include "lua_data.h"

/* Pushes the Block metatable, creating it on first use (a worker may decode a Block before any
 * script there opened the module). */
void data_block_push_mt(lua_State *L);

/* Index of the column called name, or -1. */
int data_block_find(const data_block_t *b, const char *name);
/* Raises "<what>: no column 'name' (columns: a, b, c)". */
int data_block_no_column(lua_State *L, const data_block_t *b, const char *what, const char *name);
/* Reads argument arg, a column name or a list of names (nil: none), as column indexes into a
 * scratch array that it pushes; *n is how many. Raises on a name the block lacks. */
int *data_block_check_keys(lua_State *L, int arg, const data_block_t *b, const char *what,
                           int *n);

/* Temporary memory that Lua collects: a userdata pushed on the stack, so that raising an error
 * never leaks it. Functions using it first fix their argument count (lua_settop), so that
 * optional arguments are not confused with scratch values. */
void *data_scratch(lua_State *L, size_t size);

/* Pushes the Column userdata of column k (0-based) of the Block at block_idx. */
void data_block_push_column(lua_State *L, int block_idx, int k);
/* Pushes a new Block with the columns of the Block at block_idx holding rows idx[0..n). */
void data_block_push_take(lua_State *L, int block_idx, const int64_t *idx, int64_t n);
/* Pushes n new empty Columns, filling cols[0..n) with their column structs to fill in. */
void data_push_empty_columns(lua_State *L, int n, dcol_t **cols);
/* Tells Lua's collector about the malloc'd memory of new columns, as if Lua had allocated it, so
 * that garbage blocks are collected at the pace their memory calls for. */
void data_account(lua_State *L, dcol_t *const *cols, size_t n);
/* Pushes row i's value of c; tensor rows become tensor views kept alive by the Column userdata
 * at col_idx. */
void data_push_cell(lua_State *L, const dcol_t *c, int64_t i, int col_idx);

/* A seed argument: an integer, or nil for a seed from the clock. */
uint64_t data_check_seed(lua_State *L, int arg);

/* Methods and module functions defined by lua_block_ops.c and lua_block_rows.c. */
extern const luaL_Reg data_block_ops_methods[];
extern const luaL_Reg data_block_ops_funcs[];
int data_block_from_rows(lua_State *L);

#endif
