/* Lua bindings of luray_tensor_t (metatable "luray.Tensor") and its serializer, through which a
 * tensor travels the object store as one out-of-band buffer and comes back as a zero-copy view. */
#ifndef LURAY_CORE_LUA_TENSOR_H
#define LURAY_CORE_LUA_TENSOR_H

#include <lua.h>

#include "luray/plugin.h"
#include "tensor.h"

#define LURAY_TENSOR_MT "luray.Tensor"

/* Sets tensor, zeros and empty into the table at module_idx and registers the serializer.
 * Returns 0 or the LURAY_E* code of the registration. */
int luray_lua_tensor_open(lua_State *L, int module_idx);
/* Pushes a new tensor userdata, closed (no data), with one user value slot for a keeper. Fill
 * the returned struct with luray_tensor_init* afterwards; if that fails, __gc still is safe. */
luray_tensor_t *luray_lua_tensor_push(lua_State *L);
/* The tensor at idx, or raises a type error. */
luray_tensor_t *luray_lua_tensor_check(lua_State *L, int idx);
/* The tensor at idx, or NULL. */
luray_tensor_t *luray_lua_tensor_test(lua_State *L, int idx);

extern const luray_serializer_t luray_tensor_serializer;

#endif
