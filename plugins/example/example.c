/* The example plugin: a small module (example.add, example.version) and two userdata types that
 * travel between tasks: example.Point (two doubles in the header) and example.Blob (bytes carried
 * as one out-of-band buffer and decoded as a zero-copy view). docs/plugins.md walks through it. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "luray/plugin.h"

#define EXAMPLE_VERSION "1.0.0"
#define POINT_MT "example.Point"
#define BLOB_MT "example.Blob"

/* Set once by init; the host table lives as long as the process. */
static const luray_host_api_t *host;

/* --- example.Point ------------------------------------------------------------------------- */

typedef struct {
    double x, y;
} point_t;

static point_t *check_point(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, POINT_MT);
}

static int l_point_x(lua_State *L)
{
    lua_pushnumber(L, check_point(L, 1)->x);
    return 1;
}

static int l_point_y(lua_State *L)
{
    lua_pushnumber(L, check_point(L, 1)->y);
    return 1;
}

static int l_point_norm(lua_State *L)
{
    point_t *p = check_point(L, 1);
    lua_pushnumber(L, hypot(p->x, p->y));
    return 1;
}

static int l_point_tostring(lua_State *L)
{
    point_t *p = check_point(L, 1);
    char text[96];
    snprintf(text, sizeof(text), "Point(%.14g, %.14g)", p->x, p->y);
    lua_pushstring(L, text);
    return 1;
}

static int l_point_eq(lua_State *L)
{
    point_t *a = check_point(L, 1), *b = check_point(L, 2);
    lua_pushboolean(L, a->x == b->x && a->y == b->y);
    return 1;
}

static const luaL_Reg point_methods[] = {
    {"x", l_point_x},
    {"y", l_point_y},
    {"norm", l_point_norm},
    {NULL, NULL},
};

/* Pushes the metatable, creating it on first use: a worker may decode a Point before any script
 * there required the module, so the decoder cannot rely on luaopen having run. */
static void push_point_mt(lua_State *L)
{
    if (luaL_newmetatable(L, POINT_MT)) {
        luaL_newlib(L, point_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_point_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushcfunction(L, l_point_eq);
        lua_setfield(L, -2, "__eq");
    }
}

static void push_point(lua_State *L, double x, double y)
{
    point_t *p = lua_newuserdatauv(L, sizeof(*p), 0);
    p->x = x;
    p->y = y;
    push_point_mt(L);
    lua_setmetatable(L, -2);
}

static int l_point_new(lua_State *L)
{
    double x = luaL_checknumber(L, 1), y = luaL_checknumber(L, 2);
    push_point(L, x, y);
    return 1;
}

/* A Point travels as 16 header bytes: x then y, as the sending machine lays out doubles (every
 * node luray runs on is little-endian IEEE 754). */
static int point_encode(const luray_host_api_t *h, lua_State *L, int idx, luray_ser_writer_t *w)
{
    point_t *p = luaL_testudata(L, idx, POINT_MT);
    if (p == NULL)
        return LURAY_EINVAL;
    double xy[2] = {p->x, p->y};
    return h->ser_write(w, xy, sizeof(xy));
}

static int point_decode(const luray_host_api_t *h, lua_State *L, luray_ser_reader_t *r)
{
    size_t len;
    const void *bytes = h->ser_header(r, &len);
    double xy[2];
    if (bytes == NULL || len != sizeof(xy))
        return LURAY_EPROTO;
    memcpy(xy, bytes, sizeof(xy));
    push_point(L, xy[0], xy[1]);
    return 0;
}

/* --- example.Blob -------------------------------------------------------------------------- */

/* Either owns its bytes (stored right after the struct) or views a decoded object's buffer; a
 * view keeps the object alive through user value 1. */
typedef struct {
    const uint8_t *data;
    size_t len;
    int is_view;
} blob_t;

static blob_t *check_blob(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, BLOB_MT);
}

static int l_blob_len(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)check_blob(L, 1)->len);
    return 1;
}

static int l_blob_tostring(lua_State *L)
{
    blob_t *b = check_blob(L, 1);
    lua_pushlstring(L, (const char *)b->data, b->len);
    return 1;
}

/* b:byte(i), 1-based like string.byte. */
static int l_blob_byte(lua_State *L)
{
    blob_t *b = check_blob(L, 1);
    lua_Integer i = luaL_checkinteger(L, 2);
    luaL_argcheck(L, i >= 1 && (lua_Unsigned)i <= b->len, 2, "index out of range");
    lua_pushinteger(L, b->data[i - 1]);
    return 1;
}

static int l_blob_is_view(lua_State *L)
{
    lua_pushboolean(L, check_blob(L, 1)->is_view);
    return 1;
}

static int l_blob_repr(lua_State *L)
{
    blob_t *b = check_blob(L, 1);
    lua_pushfstring(L, "Blob(%I bytes%s)", (lua_Integer)b->len, b->is_view ? ", view" : "");
    return 1;
}

static const luaL_Reg blob_methods[] = {
    {"len", l_blob_len},
    {"tostring", l_blob_tostring},
    {"byte", l_blob_byte},
    {"is_view", l_blob_is_view},
    {NULL, NULL},
};

static void push_blob_mt(lua_State *L)
{
    if (luaL_newmetatable(L, BLOB_MT)) {
        luaL_newlib(L, blob_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_blob_len);
        lua_setfield(L, -2, "__len");
        lua_pushcfunction(L, l_blob_repr);
        lua_setfield(L, -2, "__tostring");
    }
}

/* A blob that owns a copy of len bytes. */
static void push_blob_copy(lua_State *L, const void *bytes, size_t len)
{
    blob_t *b = lua_newuserdatauv(L, sizeof(*b) + len, 1);
    uint8_t *own = (uint8_t *)(b + 1); /* Lua never moves a userdata's memory */
    if (len > 0)
        memcpy(own, bytes, len);
    b->data = own;
    b->len = len;
    b->is_view = 0;
    push_blob_mt(L);
    lua_setmetatable(L, -2);
}

static int l_blob_new(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    push_blob_copy(L, s, len);
    return 1;
}

/* The bytes go out of band: the host copies them once, into the object store. */
static int blob_encode(const luray_host_api_t *h, lua_State *L, int idx, luray_ser_writer_t *w)
{
    blob_t *b = luaL_testudata(L, idx, BLOB_MT);
    if (b == NULL)
        return LURAY_EINVAL;
    return h->ser_write_buffer(w, b->data, b->len);
}

static int blob_decode(const luray_host_api_t *h, lua_State *L, luray_ser_reader_t *r)
{
    size_t len;
    if (h->ser_buffer_count(r) != 1)
        return LURAY_EPROTO;
    const void *data = h->ser_buffer(r, 0, &len);
    if (data == NULL && len != 0)
        return LURAY_EPROTO;
    h->ser_push_keeper(L, r);
    if (lua_isnil(L, -1)) {
        /* No keeper: the buffer only lives during this call, so take a copy. */
        lua_pop(L, 1);
        push_blob_copy(L, data, len);
        return 0;
    }
    blob_t *b = lua_newuserdatauv(L, sizeof(*b), 1);
    b->data = data;
    b->len = len;
    b->is_view = 1;
    push_blob_mt(L);
    lua_setmetatable(L, -2);
    lua_rotate(L, -2, 1); /* keeper on top */
    lua_setiuservalue(L, -2, 1);
    return 0;
}

/* --- the module and the plugin description ------------------------------------------------- */

static int l_add(lua_State *L)
{
    luaL_checknumber(L, 1);
    luaL_checknumber(L, 2);
    lua_settop(L, 2);
    lua_arith(L, LUA_OPADD); /* integers stay integers */
    return 1;
}

static int l_version(lua_State *L)
{
    lua_pushliteral(L, EXAMPLE_VERSION);
    return 1;
}

static const luaL_Reg example_funcs[] = {
    {"add", l_add},
    {"version", l_version},
    {"point", l_point_new},
    {"blob", l_blob_new},
    {NULL, NULL},
};

static int example_luaopen(lua_State *L)
{
    push_point_mt(L);
    push_blob_mt(L);
    lua_pop(L, 2);
    luaL_newlib(L, example_funcs);
    return 1;
}

static int example_init(const luray_host_api_t *h)
{
    host = h;
    host->log(3, "example", "initialised (host ABI %u)", (unsigned)host->abi);
    return 0;
}

static void example_shutdown(void)
{
    if (host != NULL)
        host->log(3, "example", "shut down");
    host = NULL;
}

static const luray_serializer_t example_serializers[] = {
    {POINT_MT, point_encode, point_decode},
    {BLOB_MT, blob_encode, blob_decode},
    {NULL, NULL, NULL},
};

static const luray_plugin_t example_plugin = {
    .abi = LURAY_PLUGIN_ABI,
    .size = sizeof(luray_plugin_t),
    .name = "example",
    .version = EXAMPLE_VERSION,
    .description = "example module: add, version, Point and Blob types that travel between tasks",
    .init = example_init,
    .shutdown = example_shutdown,
    .luaopen = example_luaopen,
    .serializers = example_serializers,
};

LURAY_PLUGIN_EXPORT const luray_plugin_t *luray_plugin_entry(void)
{
    return &example_plugin;
}
