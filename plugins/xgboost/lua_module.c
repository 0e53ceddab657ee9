/* The xgboost plugin's entry point: its description for the host, the ABI check in init, the
 * routing of libxgboost's log into luray's, and the C module table
 * (require("luray._plugin.xgboost")) that lualib/luray/xgboost.lua drives. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "lua_xgb.h"

#define XGB_PLUGIN_VERSION "1.0.0"

const luray_host_api_t *xgb_host;

static luray_serializer_t xgb_serializers[2];

/* Tensors came after ABI 1's first release; the plugin returns predictions as tensors. */
#define XGB_HOST_MIN_SIZE \
    (offsetof(luray_host_api_t, dtype_size) + sizeof(((luray_host_api_t *)0)->dtype_size))

static int xgb_init(const luray_host_api_t *host)
{
    if (host->size < XGB_HOST_MIN_SIZE) {
        host->log(0, "xgboost", "host API is %u bytes, the xgboost plugin needs %zu (tensor "
                  "functions); rebuild luray", (unsigned)host->size, (size_t)XGB_HOST_MIN_SIZE);
        return LURAY_EABI;
    }
    xgb_host = host;
    xgb_serializers[0] = xgb_booster_serializer;
    return 0;
}

static void xgb_shutdown(void)
{
    xgb_host = NULL;
}

/* libxgboost's messages: its warnings stay warnings, the rest (rank assignment, progress) is
 * information. */
static void xgb_log(const char *msg)
{
    if (xgb_host == NULL)
        return;
    size_t len = strlen(msg);
    while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
        len--;
    int level = strstr(msg, "WARNING") != NULL ? 1 : 2;
    xgb_host->log(level, "xgboost", "%.*s", (int)len, msg);
}

static int l_version(lua_State *L)
{
    int major, minor, patch;
    XGBoostVersion(&major, &minor, &patch);
    lua_pushfstring(L, "%d.%d.%d", major, minor, patch);
    return 1;
}

static int xgb_luaopen(lua_State *L)
{
    /* The callback registry of libxgboost is per thread: register from the thread that runs Lua
     * and calls the library. */
    XGBRegisterLogCallback(xgb_log);
    lua_newtable(L);
    int module = lua_gettop(L);
    xgb_dmatrix_open(L, module);
    xgb_booster_open(L, module);
    xgb_collective_open(L, module);
    lua_pushcfunction(L, l_version);
    lua_setfield(L, module, "xgboost_version");
    lua_pushliteral(L, XGB_PLUGIN_VERSION);
    lua_setfield(L, module, "version");
    return 1;
}

static const luray_plugin_t xgb_plugin = {
    .abi = LURAY_PLUGIN_ABI,
    .size = sizeof(luray_plugin_t),
    .name = "xgboost",
    .version = XGB_PLUGIN_VERSION,
    .description = "gradient boosted trees through libxgboost: DMatrix from blocks, Booster, "
                   "rabit tracker for distributed training",
    .init = xgb_init,
    .shutdown = xgb_shutdown,
    .luaopen = xgb_luaopen,
    .serializers = xgb_serializers,
};

LURAY_PLUGIN_EXPORT const luray_plugin_t *luray_plugin_entry(void)
{
    return &xgb_plugin;
}
