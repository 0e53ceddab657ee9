/* The collective plugin's entry point: its description for the host, the ABI check in init and
 * the C module table (require("luray._plugin.collective")). */
#include <stddef.h>

#include <lauxlib.h>
#include <lua.h>

#include "lua_coll.h"

#define COLL_VERSION "1.0.0"

const luray_host_api_t *coll_host;

/* The tensor functions came after ABI 1's first release; the plugin needs all of them. */
#define COLL_HOST_MIN_SIZE \
    (offsetof(luray_host_api_t, dtype_size) + sizeof(((luray_host_api_t *)0)->dtype_size))

static int coll_init(const luray_host_api_t *host)
{
    if (host->size < COLL_HOST_MIN_SIZE) {
        host->log(0, "collective", "host API is %u bytes, the collective plugin needs %zu "
                  "(tensor functions); rebuild luray", (unsigned)host->size,
                  (size_t)COLL_HOST_MIN_SIZE);
        return LURAY_EABI;
    }
    coll_host = host;
    return 0;
}

static void coll_shutdown(void)
{
    coll_host = NULL;
}

static int coll_luaopen(lua_State *L)
{
    int module;

    lua_newtable(L);
    module = lua_gettop(L);
    coll_group_open_lua(L, module);
    coll_safetensors_open_lua(L, module);
    lua_pushliteral(L, COLL_VERSION);
    lua_setfield(L, module, "version");
    return 1;
}

static const luray_plugin_t coll_plugin = {
    .abi = LURAY_PLUGIN_ABI,
    .size = sizeof(luray_plugin_t),
    .name = "collective",
    .version = COLL_VERSION,
    .description = "allreduce, broadcast and barrier for training groups; safetensors files",
    .init = coll_init,
    .shutdown = coll_shutdown,
    .luaopen = coll_luaopen,
    .serializers = NULL,
};

LURAY_PLUGIN_EXPORT const luray_plugin_t *luray_plugin_entry(void)
{
    return &coll_plugin;
}
