/* The serve plugin's Lua bindings: each file adds its functions to the module table. */
#ifndef LURAY_SERVE_LUA_SERVE_H
#define LURAY_SERVE_LUA_SERVE_H

#include <lua.h>

#include "serve.h"

void serve_replica_open_lua(lua_State *L, int module);
void serve_proxy_open_lua(lua_State *L, int module);
void serve_json_open_lua(lua_State *L, int module);

/* Seconds on a monotonic clock. */
double serve_now(void);

#endif
