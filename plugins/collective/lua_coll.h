/* What the collective plugin's Lua binding files share: the host API table and each file's
 * opener, which adds its functions to the module table. */
#ifndef LURAY_COLLECTIVE_LUA_COLL_H
#define LURAY_COLLECTIVE_LUA_COLL_H

#include <stdbool.h>

#include <lua.h>

#include "luray/plugin.h"

/* Set by the plugin's init. */
extern const luray_host_api_t *coll_host;

/* Whether t's elements lie in row-major order without gaps. */
bool coll_tensor_contiguous(const luray_tensor_t *t);

/* C.group, C.free_port and the Group type. */
void coll_group_open_lua(lua_State *L, int module);
/* C.save_safetensors, C.load_safetensors. */
void coll_safetensors_open_lua(lua_State *L, int module);

#endif
