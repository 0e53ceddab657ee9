/* Protected calls from C into Lua with a traceback, and printing of the errors they return.
 * Every entry from C into Lua (a task, a timer, a message, a REPL line) goes through these. */
#ifndef LURAY_CORE_LUA_UTIL_H
#define LURAY_CORE_LUA_UTIL_H

#include <lua.h>

/* Message handler for lua_pcall: turns the error value into a string (its __tostring when it has
 * one) and appends a traceback of the stack where it was raised. */
int luray_lua_msghandler(lua_State *L);

/* lua_pcall with luray_lua_msghandler: calls the function below the nargs arguments on the
 * stack. Returns the Lua status (LUA_OK or LUA_ERR*); on error the message with its traceback is
 * on top. */
int luray_lua_pcall_traceback(lua_State *L, int nargs, int nresults);

/* When status is not LUA_OK, prints the error value on top of the stack to stderr and pops it.
 * Never raises, even when the value's __tostring does. */
void luray_lua_report(lua_State *L, int status);

#endif
