/* libFuzzer target: luray_ser_decode of arbitrary bytes into a fresh Lua state must either decode
 * or fail with an error, never crash, leak or touch memory outside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "errors.h"
#include "serialize.h"

/* An extension type whose decoder reads everything the reader offers, so the fuzzer reaches the
 * out-of-band buffer paths (with and without a keeper). */
static int fz_encode(const luray_host_api_t *host, lua_State *L, int idx, luray_ser_writer_t *w)
{
    (void)host;
    (void)L;
    (void)idx;
    (void)w;
    return LURAY_EUNSUPPORTED;
}

static int fz_decode(const luray_host_api_t *host, lua_State *L, luray_ser_reader_t *r)
{
    size_t hl;
    const uint8_t *h = host->ser_header(r, &hl);
    unsigned sum = 0;
    for (size_t i = 0; i < hl; i++)
        sum += h[i];
    size_t n = host->ser_buffer_count(r);
    for (size_t i = 0; i <= n; i++) { /* one past the end must come back NULL */
        size_t len;
        const uint8_t *p = host->ser_buffer(r, i, &len);
        if (i == n && p)
            abort();
        if (p && len)
            sum += p[0] + p[len - 1];
    }
    if (hl && h[0] == 0xff)
        return LURAY_EPROTO;
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, (lua_Integer)sum);
    lua_setfield(L, -2, "sum");
    host->ser_push_keeper(L, r);
    lua_setfield(L, -2, "keeper");
    return 0;
}

static const luray_serializer_t fz_ser = {"fuzz.T", fz_encode, fz_decode};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_State *L = luaL_newstate();
    if (!L)
        return 0;
    luaL_openlibs(L);
    /* Module names come from the input: require must find nothing on disk. */
    luaL_dostring(L, "package.path = '' package.cpath = ''");
    lua_settop(L, 0);
    luray_ser_set_allow_bytecode(L, 0);
    luray_ser_register(L, &fz_ser);

    /* A private, 64-byte aligned copy: buffer offsets are checked against real alignment. */
    uint8_t *blob = aligned_alloc(LURAY_BLOB_ALIGN, (size + LURAY_BLOB_ALIGN) & ~(size_t)63);
    if (!blob) {
        lua_close(L);
        return 0;
    }
    if (size)
        memcpy(blob, data, size);
    char err[256];
    int n = luray_ser_decode(L, blob, size, 0, err, sizeof err);
    if (n < 0 ? lua_gettop(L) != 0 || !err[0] : lua_gettop(L) != n)
        abort();
    lua_settop(L, 0);
    lua_pushboolean(L, 1); /* a keeper: decoders may hold views into the blob */
    n = luray_ser_decode(L, blob, size, 1, err, sizeof err);
    if (n < 0 ? lua_gettop(L) != 1 : lua_gettop(L) != n + 1)
        abort();
    lua_close(L);
    free(blob);
    return 0;
}
