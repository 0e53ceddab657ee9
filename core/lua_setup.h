/* Making a Lua state ready for luray (standard libraries, lualib paths, plugins, the `luray`
 * global). Implemented in lua_core.c; declared here for the command line and the worker. */
#ifndef LURAY_CORE_LUA_SETUP_H
#define LURAY_CORE_LUA_SETUP_H

#include <stddef.h>

#include <lua.h>

/* Prepares a Lua state for luray: opens the standard libraries, sets package.path/cpath so that
 * the install's lualib is found (<dir of exe>/../share/luray/lua/?.lua and ?/init.lua) plus
 * `extra_path_dir` (the script's directory, may be NULL), installs the plugin searcher and type
 * resolver, preloads the C module "luray.core", and sets the global `luray` = require("luray").
 * `config` is a table at stack index config_idx (or 0) stored as package.loaded["luray.config"].
 * Returns 0 or a LURAY_E* code with a message in err. */
int luray_lua_setup(lua_State *L, const char *extra_path_dir, int config_idx, char *err,
                    size_t errlen);

#endif
