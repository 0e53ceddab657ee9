/* The proxy as Lua sees it: started inside the proxy actor, given routing tables and dead
 * replicas by the controller, asked for its stats, stopped with a drain. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

#include "lua_json.h"
#include "lua_serve.h"
#include "proxy.h"

#define PROXY_MT "luray.serve.Proxy"

typedef struct {
    proxy_t *p;
} lproxy_t;

double serve_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static proxy_t *check_proxy(lua_State *L)
{
    lproxy_t *lp = luaL_checkudata(L, 1, PROXY_MT);
    if (!lp->p)
        luaL_error(L, "this proxy is stopped");
    return lp->p;
}

static void opt_string(lua_State *L, const char *k, char *out, size_t cap)
{
    lua_getfield(L, 1, k);
    if (lua_type(L, -1) == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        if (n >= cap)
            luaL_error(L, "proxy_start: %s is too long", k);
        memcpy(out, s, n + 1);
    } else if (!lua_isnil(L, -1)) {
        luaL_error(L, "proxy_start: %s must be a string", k);
    }
    lua_pop(L, 1);
}

static double opt_number(lua_State *L, const char *k, double dflt, double lo)
{
    lua_getfield(L, 1, k);
    double v = dflt;
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1) || lua_tonumber(L, -1) < lo)
            luaL_error(L, "proxy_start: %s must be a number >= %g", k, lo);
        v = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

/* S.proxy_start{host=, port=, session=, tcp_host=, access_log=, keep_alive_timeout_s=,
 * request_read_timeout_s=, request_timeout_s=, max_header_bytes=, max_body_bytes=} */
static int l_proxy_start(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    proxy_opts_t o;
    proxy_opts_default(&o);
    opt_string(L, "host", o.host, sizeof(o.host));
    opt_string(L, "session", o.session, sizeof(o.session));
    opt_string(L, "tcp_host", o.tcp_host, sizeof(o.tcp_host));
    opt_string(L, "access_log", o.access_log, sizeof(o.access_log));
    o.port = (int)opt_number(L, "port", o.port, 0);
    if (o.port > 65535)
        return luaL_error(L, "proxy_start: port must be 0 to 65535");
    o.keep_alive_timeout_s = opt_number(L, "keep_alive_timeout_s", o.keep_alive_timeout_s, 0);
    o.request_read_timeout_s = opt_number(L, "request_read_timeout_s", o.request_read_timeout_s,
                                          0);
    o.request_timeout_s = opt_number(L, "request_timeout_s", o.request_timeout_s, 0);
    o.max_header_bytes = (size_t)opt_number(L, "max_header_bytes", (double)o.max_header_bytes,
                                            256);
    o.max_body_bytes = (size_t)opt_number(L, "max_body_bytes", (double)o.max_body_bytes, 0);
    if (!o.session[0])
        return luaL_error(L, "proxy_start: session (a directory for sockets) is required");
    lproxy_t *lp = lua_newuserdatauv(L, sizeof(*lp), 0);
    lp->p = NULL;
    luaL_setmetatable(L, PROXY_MT);
    char err[600];
    lp->p = proxy_start(&o, err, sizeof(err));
    if (!lp->p) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    return 1;
}

/* p:info() -> port, reply address (ipc), reply address (tcp) or nil */
static int l_info(lua_State *L)
{
    proxy_t *p = check_proxy(L);
    lua_pushinteger(L, proxy_port(p));
    lua_pushstring(L, proxy_reply_addr(p, 0));
    const char *tcp = proxy_reply_addr(p, 1);
    if (tcp[0])
        lua_pushstring(L, tcp);
    else
        lua_pushnil(L);
    return 3;
}

/* p:set_routes(table) */
static int l_set_routes(lua_State *L)
{
    proxy_t *p = check_proxy(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    sbuf_t b;
    sbuf_init(&b);
    char err[300];
    if (serve_json_encode(L, 2, &b, err, sizeof(err)) != 0) {
        sbuf_free(&b);
        return luaL_error(L, "set_routes: %s", err);
    }
    sbuf_putc(&b, 0);
    proxy_set_routes(p, b.data);
    sbuf_free(&b);
    return 0;
}

static int l_replica_dead(lua_State *L)
{
    proxy_replica_dead(check_proxy(L), luaL_checkstring(L, 2));
    return 0;
}

/* p:stats() -> {port=, connections=, deployments={name={queued=, ongoing=, requests=,
 * replicas={id=in flight}}}} */
static int l_stats(lua_State *L)
{
    char *s = proxy_stats(check_proxy(L));
    if (!s) {
        lua_newtable(L);
        return 1;
    }
    char err[128];
    int rc = serve_json_push(L, s, strlen(s), err, sizeof(err));
    free(s);
    if (rc)
        return luaL_error(L, "stats: %s", err);
    return 1;
}

/* p:stop(drain_s): blocks until requests in flight are answered (or drain_s passed). */
static int l_stop(lua_State *L)
{
    lproxy_t *lp = luaL_checkudata(L, 1, PROXY_MT);
    double drain = luaL_optnumber(L, 2, 5);
    if (lp->p) {
        proxy_stop(lp->p, drain);
        lp->p = NULL;
    }
    return 0;
}

static int l_gc(lua_State *L)
{
    lproxy_t *lp = luaL_checkudata(L, 1, PROXY_MT);
    if (lp->p) {
        proxy_stop(lp->p, 0);
        lp->p = NULL;
    }
    return 0;
}

/* S.json_encode(v) -> text; S.json_decode(text) -> v */
static int l_json_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    sbuf_t b;
    sbuf_init(&b);
    char err[300];
    if (serve_json_encode(L, 1, &b, err, sizeof(err)) != 0) {
        sbuf_free(&b);
        return luaL_error(L, "json_encode: %s", err);
    }
    lua_pushlstring(L, b.data ? b.data : "", b.len);
    sbuf_free(&b);
    return 1;
}

static int l_json_decode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    char err[128];
    if (serve_json_push(L, s, n, err, sizeof(err)) != 0)
        return luaL_error(L, "json_decode: %s", err);
    return 1;
}

void serve_json_open_lua(lua_State *L, int module)
{
    lua_pushcfunction(L, l_json_encode);
    lua_setfield(L, module, "json_encode");
    lua_pushcfunction(L, l_json_decode);
    lua_setfield(L, module, "json_decode");
}

void serve_proxy_open_lua(lua_State *L, int module)
{
    static const luaL_Reg methods[] = {
        {"info", l_info},   {"set_routes", l_set_routes}, {"replica_dead", l_replica_dead},
        {"stats", l_stats}, {"stop", l_stop},             {NULL, NULL},
    };
    luaL_newmetatable(L, PROXY_MT);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_proxy_start);
    lua_setfield(L, module, "proxy_start");
}
