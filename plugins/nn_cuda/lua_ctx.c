/* The Lua state's device context (kept in the registry, made on first use) and the raising of
 * CUDA and cuBLAS failures as Lua errors. */
#include <lauxlib.h>

#include "lua_cuda.h"

#define CTX_KEY "luray.nn_cuda.context"
#define CTX_MT "luray.nn_cuda.Context"

bool cu_push_no_device(lua_State *L)
{
    int n = 0;
    cudaError_t err = cu_device_count(&n);

    if (err != cudaSuccess)
        lua_pushfstring(L, "no CUDA device was found (cudaGetDeviceCount: %s)",
                        cudaGetErrorString(err));
    else if (n == 0)
        lua_pushliteral(L, "no CUDA device was found (cudaGetDeviceCount: 0 devices)");
    else
        return false;
    return true;
}

void cu_check_cuda(lua_State *L, cudaError_t err, const char *what)
{
    if (err == cudaSuccess)
        return;
    (void)cudaGetLastError(); /* a failure that is not sticky must not be reported twice */
    luaL_error(L, "%s: %s (%s)", what, cudaGetErrorString(err), cudaGetErrorName(err));
}

void cu_check_msg(lua_State *L, const char *msg, const char *what)
{
    if (msg)
        luaL_error(L, "%s: %s", what, msg);
}

/* The box's __gc: the context itself lives on while tensors hold it. */
static int l_ctx_gc(lua_State *L)
{
    cu_ctx_t **box = luaL_checkudata(L, 1, CTX_MT);

    cu_ctx_release(*box);
    *box = NULL;
    return 0;
}

static cu_ctx_t *open_ctx(lua_State *L)
{
    cu_ctx_t **box;
    cublasStatus_t bst;
    const char *why = "";
    cudaError_t err;

    if (cu_push_no_device(L))
        lua_error(L);
    box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL; /* closed until the context exists, so an error leaves nothing to release */
    if (luaL_newmetatable(L, CTX_MT)) {
        lua_pushcfunction(L, l_ctx_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    if ((err = cu_ctx_new(box, &why, &bst)) != cudaSuccess) {
        if (bst != CUBLAS_STATUS_SUCCESS)
            luaL_error(L, "cannot start CUDA: %s: %s", why, cublasGetStatusString(bst));
        luaL_error(L, "cannot start CUDA: %s: %s", why, cudaGetErrorString(err));
    }
    lua_setfield(L, LUA_REGISTRYINDEX, CTX_KEY);
    return *box;
}

cu_ctx_t *cu_lua_ctx(lua_State *L)
{
    cu_ctx_t *ctx = NULL;

    if (lua_getfield(L, LUA_REGISTRYINDEX, CTX_KEY) == LUA_TUSERDATA)
        ctx = *(cu_ctx_t **)lua_touserdata(L, -1);
    lua_pop(L, 1);
    return ctx ? ctx : open_ctx(L);
}
