/* The data plugin's entry point: its description for the host, the ABI check in init and the C
 * module table (require("luray._plugin.data")) that lualib/luray/data.lua drives. */
#include <stddef.h>

#include <lauxlib.h>
#include <lua.h>

#include "lua_data.h"

#define DATA_VERSION "1.0.0"

const luray_host_api_t *data_host;

/* Filled by init: a static initialiser cannot copy the other files' serializer structs. */
static luray_serializer_t data_serializers[3];

/* The tensor functions came after ABI 1's first release; the plugin needs all of them. */
#define DATA_HOST_MIN_SIZE \
    (offsetof(luray_host_api_t, dtype_size) + sizeof(((luray_host_api_t *)0)->dtype_size))

static int data_init(const luray_host_api_t *host)
{
    if (host->size < DATA_HOST_MIN_SIZE) {
        host->log(0, "data", "host API is %u bytes, the data plugin needs %zu (tensor "
                  "functions); rebuild luray", (unsigned)host->size, (size_t)DATA_HOST_MIN_SIZE);
        return LURAY_EABI;
    }
    data_host = host;
    data_serializers[0] = data_column_serializer;
    data_serializers[1] = data_block_serializer;
    return 0;
}

static void data_shutdown(void)
{
    data_host = NULL;
}

static int data_luaopen(lua_State *L)
{
    lua_newtable(L);
    int module = lua_gettop(L);
    data_column_open(L, module);
    data_block_open(L, module);
    data_io_open(L, module);
    data_fs_open(L, module);
    data_tensors_open(L, module);
    lua_pushliteral(L, DATA_VERSION);
    lua_setfield(L, module, "version");
    return 1;
}

static const luray_plugin_t data_plugin = {
    .abi = LURAY_PLUGIN_ABI,
    .size = sizeof(luray_plugin_t),
    .name = "data",
    .version = DATA_VERSION,
    .description = "columnar blocks, CSV/JSON readers and writers for luray.data",
    .init = data_init,
    .shutdown = data_shutdown,
    .luaopen = data_luaopen,
    .serializers = data_serializers,
};

LURAY_PLUGIN_EXPORT const luray_plugin_t *luray_plugin_entry(void)
{
    return &data_plugin;
}
