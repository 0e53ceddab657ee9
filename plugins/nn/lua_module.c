/* The nn plugin's entry point: its description for the host, the ABI check and BLAS threads in
 * init, and the C module table (require("luray._plugin.nn")) that lualib/luray/nn.lua drives. */
#include <stddef.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>

#include "lua_nn.h"
#include "nn_blas.h"

#define NN_VERSION "1.0.0"
/* BLAS threads when LURAY_NN_THREADS is not set. */
#define NN_DEFAULT_THREADS 2

const luray_host_api_t *nn_host;

/* The tensor functions came after ABI 1's first release; the plugin needs all of them. */
#define NN_HOST_MIN_SIZE \
    (offsetof(luray_host_api_t, dtype_size) + sizeof(((luray_host_api_t *)0)->dtype_size))

static int threads_from_env(void)
{
    const char *s = getenv("LURAY_NN_THREADS");
    char *end;
    long n;

    if (!s || !*s)
        return NN_DEFAULT_THREADS;
    n = strtol(s, &end, 10);
    if (*end || n < 1 || n > 1024) {
        nn_host->log(1, "nn", "LURAY_NN_THREADS=%s is not a thread count from 1 to 1024; using %d",
                     s, NN_DEFAULT_THREADS);
        return NN_DEFAULT_THREADS;
    }
    return (int)n;
}

static int nn_init(const luray_host_api_t *host)
{
    if (host->size < NN_HOST_MIN_SIZE) {
        host->log(0, "nn", "host API is %u bytes, the nn plugin needs %zu (tensor functions); "
                  "rebuild luray", (unsigned)host->size, (size_t)NN_HOST_MIN_SIZE);
        return LURAY_EABI;
    }
    nn_host = host;
    nn_blas_set_threads(threads_from_env());
    return 0;
}

static void nn_shutdown(void)
{
    nn_host = NULL;
}

static int nn_luaopen(lua_State *L)
{
    lua_newtable(L);
    int module = lua_gettop(L);
    nn_open_elem(L, module);
    nn_open_linalg(L, module);
    nn_open_reduce(L, module);
    nn_open_loss(L, module);
    nn_open_random(L, module);
    nn_open_optim(L, module);
    lua_pushliteral(L, NN_VERSION);
    lua_setfield(L, module, "version");
    return 1;
}

static const luray_plugin_t nn_plugin = {
    .abi = LURAY_PLUGIN_ABI,
    .size = sizeof(luray_plugin_t),
    .name = "nn",
    .version = NN_VERSION,
    .description = "tensor math, autograd kernels, layers' and optimizers' kernels for luray.nn",
    .init = nn_init,
    .shutdown = nn_shutdown,
    .luaopen = nn_luaopen,
    .serializers = NULL,
};

LURAY_PLUGIN_EXPORT const luray_plugin_t *luray_plugin_entry(void)
{
    return &nn_plugin;
}
