/* The nn_cuda plugin's entry point: its description, the ABI check in init, and the module table
 * (require("luray._plugin.nn_cuda")) that lualib/luray/nn.lua registers as the "cuda" backend:
 * every function of the CPU kernel table over CUDA tensors, plus upload, download, init,
 * synchronize, memory and empty_cache. Loading it needs no GPU; the device is opened by init or
 * by the first kernel. Random numbers are drawn on the host by the CPU plugin and copied over,
 * so a seed gives the same numbers on both devices. */
#include <stddef.h>

#include <lauxlib.h>

#include "lua_cuda.h"

#define NN_CUDA_VERSION "1.0.0"

const luray_host_api_t *cu_host;

/* The tensor functions came after ABI 1's first release; the plugin needs all of them. */
#define HOST_MIN_SIZE \
    (offsetof(luray_host_api_t, dtype_size) + sizeof(((luray_host_api_t *)0)->dtype_size))

static int nn_cuda_init(const luray_host_api_t *host)
{
    if (host->size < HOST_MIN_SIZE) {
        host->log(0, "nn_cuda", "host API is %u bytes, the nn_cuda plugin needs %zu (tensor "
                  "functions); rebuild luray", (unsigned)host->size, (size_t)HOST_MIN_SIZE);
        return LURAY_EABI;
    }
    cu_host = host;
    return 0;
}

static void nn_cuda_shutdown(void)
{
    cu_host = NULL;
}

static int open_ctx(lua_State *L)
{
    cu_lua_ctx(L);
    return 0;
}

/* K.init(): true and a table describing the device ({name, device, count, compute_capability,
 * total_memory}), or nil and why CUDA cannot run here. */
static int l_init(lua_State *L)
{
    struct cudaDeviceProp prop;
    cu_ctx_t *ctx;
    int count = 0;

    if (cu_push_no_device(L)) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    lua_pushcfunction(L, open_ctx);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    ctx = cu_lua_ctx(L);
    cu_check_cuda(L, cu_device_count(&count), "cudaGetDeviceCount");
    cu_check_cuda(L, cudaGetDeviceProperties(&prop, ctx->device), "cudaGetDeviceProperties");
    lua_pushboolean(L, 1);
    lua_createtable(L, 0, 5);
    lua_pushstring(L, prop.name);
    lua_setfield(L, -2, "name");
    lua_pushinteger(L, ctx->device);
    lua_setfield(L, -2, "device");
    lua_pushinteger(L, count);
    lua_setfield(L, -2, "count");
    lua_pushfstring(L, "%d.%d", prop.major, prop.minor);
    lua_setfield(L, -2, "compute_capability");
    lua_pushinteger(L, (lua_Integer)prop.totalGlobalMem);
    lua_setfield(L, -2, "total_memory");
    return 2;
}

/* K.synchronize(): waits for every kernel queued so far (and raises the first fault among
 * them). */
static int l_synchronize(lua_State *L)
{
    cu_check_cuda(L, cu_ctx_sync(cu_lua_ctx(L)), "synchronize");
    return 0;
}

/* K.memory(): bytes held by live tensors, kept in the cache, and the device's free and total. */
static int l_memory(lua_State *L)
{
    cu_ctx_t *ctx = cu_lua_ctx(L);
    size_t free_b = 0, total_b = 0;

    cu_check_cuda(L, cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, (lua_Integer)ctx->live_bytes);
    lua_setfield(L, -2, "live");
    lua_pushinteger(L, (lua_Integer)ctx->cached_bytes);
    lua_setfield(L, -2, "cached");
    lua_pushinteger(L, (lua_Integer)free_b);
    lua_setfield(L, -2, "free");
    lua_pushinteger(L, (lua_Integer)total_b);
    lua_setfield(L, -2, "total");
    return 1;
}

/* K.empty_cache(): gives the cached blocks back to the driver. */
static int l_empty_cache(lua_State *L)
{
    cu_ctx_t *ctx = cu_lua_ctx(L);

    cu_check_cuda(L, cu_ctx_sync(ctx), "empty_cache");
    cu_ctx_trim(ctx);
    return 0;
}

/* A CPU random function (the upvalue) run with the same arguments, its result copied over. */
static int l_host_then_upload(lua_State *L)
{
    int n = lua_gettop(L);

    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, 1);
    cu_push_upload(L, -1);
    return 1;
}

/* Takes the random functions (drawn on the host, then copied) and the thread settings (the
 * host's BLAS threads) from the CPU module. */
static void open_from_cpu(lua_State *L, int module)
{
    static const char *const drawn[] = {"rand", "randn", "dropout_mask", "randperm", NULL};
    static const char *const shared[] = {"generator", "set_num_threads", "get_num_threads",
                                         NULL};

    lua_getglobal(L, "require");
    lua_pushliteral(L, "luray._plugin.nn");
    lua_call(L, 1, 1);
    for (int i = 0; drawn[i]; i++) {
        lua_getfield(L, -1, drawn[i]);
        lua_pushcclosure(L, l_host_then_upload, 1);
        lua_setfield(L, module, drawn[i]);
    }
    for (int i = 0; shared[i]; i++) {
        lua_getfield(L, -1, shared[i]);
        lua_setfield(L, module, shared[i]);
    }
    lua_pop(L, 1);
}

static int nn_cuda_luaopen(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"init", l_init},
        {"synchronize", l_synchronize},
        {"memory", l_memory},
        {"empty_cache", l_empty_cache},
        {NULL, NULL},
    };
    int module;

    lua_newtable(L);
    module = lua_gettop(L);
    luaL_setfuncs(L, funcs, 0);
    cu_open_tensor(L, module);
    cu_open_transfer(L, module);
    cu_open_elem(L, module);
    cu_open_linalg(L, module);
    cu_open_reduce(L, module);
    cu_open_loss(L, module);
    cu_open_optim(L, module);
    open_from_cpu(L, module);
    lua_pushliteral(L, NN_CUDA_VERSION);
    lua_setfield(L, module, "version");
    return 1;
}

static const luray_plugin_t nn_cuda_plugin = {
    .abi = LURAY_PLUGIN_ABI,
    .size = sizeof(luray_plugin_t),
    .name = "nn_cuda",
    .version = NN_CUDA_VERSION,
    .description = "the CUDA backend of luray.nn: its kernels on the GPU, matmul through cuBLAS",
    .init = nn_cuda_init,
    .shutdown = nn_cuda_shutdown,
    .luaopen = nn_cuda_luaopen,
    .serializers = NULL,
};

LURAY_PLUGIN_EXPORT const luray_plugin_t *luray_plugin_entry(void)
{
    return &nn_cuda_plugin;
}
