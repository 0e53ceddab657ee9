/* Lua values to JSON text and back, for request and response bodies. */
#ifndef LURAY_SERVE_LUA_JSON_H
#define LURAY_SERVE_LUA_JSON_H

#include <stddef.h>

#include <lua.h>

#include "sbuf.h"

/* Appends the value at idx as JSON. A table whose keys are 1..n is an array, any other table an
 * object (number keys written as strings), an empty table {}; a core tensor a nested array;
 * NaN and infinities null. Returns 0, or -1 with err naming what could not be written and where
 * ("value.items[3]: a function cannot be sent as JSON"). */
int serve_json_encode(lua_State *L, int idx, sbuf_t *out, char *err, size_t errlen);

/* Pushes the Lua value of a JSON text; returns 0, or -1 with err saying where it is invalid. */
int serve_json_push(lua_State *L, const char *text, size_t len, char *err, size_t errlen);

#endif
