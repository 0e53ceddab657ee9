/* Protected calls from C into Lua with a traceback (the lua.c message handler, shared by the
 * REPL, `luray run`, tasks and callbacks), and printing of the errors they return. */
#include "lua_util.h"

#include <stdio.h>

#include <lauxlib.h>

int luray_lua_msghandler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        /* luray's error values (TaskError, ...) are tables that know how to print themselves. */
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
            msg = lua_tostring(L, -1);
        } else {
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
        }
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

int luray_lua_pcall_traceback(lua_State *L, int nargs, int nresults)
{
    int base = lua_gettop(L) - nargs; /* where the function is */
    lua_pushcfunction(L, luray_lua_msghandler);
    lua_insert(L, base);
    int status = lua_pcall(L, nargs, nresults, base);
    lua_remove(L, base);
    return status;
}

/* Runs under lua_pcall so that a __tostring that raises cannot escape from luray_lua_report. */
static int error_tostring(lua_State *L)
{
    luaL_tolstring(L, 1, NULL);
    return 1;
}

void luray_lua_report(lua_State *L, int status)
{
    if (status == LUA_OK)
        return;
    if (lua_type(L, -1) == LUA_TSTRING) {
        fprintf(stderr, "%s\n", lua_tostring(L, -1));
    } else {
        lua_pushcfunction(L, error_tostring);
        lua_pushvalue(L, -2);
        if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING)
            fprintf(stderr, "%s\n", lua_tostring(L, -1));
        else
            fprintf(stderr, "(error object is a %s value)\n", luaL_typename(L, -2));
        lua_pop(L, 1);
    }
    fflush(stderr);
    lua_pop(L, 1);
}
