/* The serve plugin's entry point: its description for the host, the ABI check in init and the
 * C module table (require("luray._plugin.serve")). */
#include <stddef.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "lua_serve.h"

#define SERVE_VERSION "1.0.0"

const luray_host_api_t *serve_host;

#define SERVE_HOST_MIN_SIZE \
    (offsetof(luray_host_api_t, tensor_test) + sizeof(((luray_host_api_t *)0)->tensor_test))

static int serve_init(const luray_host_api_t *host)
{
    if (host->size < SERVE_HOST_MIN_SIZE) {
        host->log(0, "serve", "host API is %u bytes, the serve plugin needs %zu; rebuild luray",
                  (unsigned)host->size, (size_t)SERVE_HOST_MIN_SIZE);
        return LURAY_EABI;
    }
    serve_host = host;
    return 0;
}

static void serve_shutdown(void)
{
    serve_host = NULL;
}

/* S.getpid(): the replica's process, for status and for tests that kill it. */
static int l_getpid(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)getpid());
    return 1;
}

static int serve_luaopen(lua_State *L)
{
    lua_newtable(L);
    int module = lua_gettop(L);
    serve_replica_open_lua(L, module);
    serve_proxy_open_lua(L, module);
    serve_json_open_lua(L, module);
    lua_pushcfunction(L, l_getpid);
    lua_setfield(L, module, "getpid");
    lua_pushliteral(L, SERVE_VERSION);
    lua_setfield(L, module, "version");
    return 1;
}

static const luray_plugin_t serve_plugin = {
    .abi = LURAY_PLUGIN_ABI,
    .size = sizeof(luray_plugin_t),
    .name = "serve",
    .version = SERVE_VERSION,
    .description = "HTTP serving: the ingress proxy and the replicas' request links",
    .init = serve_init,
    .shutdown = serve_shutdown,
    .luaopen = serve_luaopen,
    .serializers = NULL,
};

LURAY_PLUGIN_EXPORT const luray_plugin_t *luray_plugin_entry(void)
{
    return &serve_plugin;
}
