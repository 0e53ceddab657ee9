/* Lua bindings of safetensors files: C.save_safetensors(path, tensors, metadata) and
 * C.load_safetensors(path, {copy = false}) -> tensors, metadata. Loaded tensors are read-only
 * views of a private mapping of the file (copies when asked, or when a tensor's data is not
 * aligned for its dtype). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "coll.h"
#include "lua_coll.h"
#include "safetensors.h"

#define MAPPING_MT "collective.Mapping"
#define HEADER_MT "collective.SafetensorsHeader"

/* ---- guards: what C holds lives in userdata, so a Lua error on the way never leaks it ---- */

typedef struct {
    void *base;
    size_t len;
} mapping_t;

static void unmap(mapping_t *m)
{
    if (m->base)
        munmap(m->base, m->len);
    m->base = NULL;
}

static int l_mapping_gc(lua_State *L)
{
    unmap(luaL_checkudata(L, 1, MAPPING_MT));
    return 0;
}

static int l_header_gc(lua_State *L)
{
    safetensors_header_close(luaL_checkudata(L, 1, HEADER_MT));
    return 0;
}

/* ---- save ---- */

/* Copies a strided tensor's elements, in row-major order, to dst. */
static void gather(const luray_tensor_t *t, uint8_t *dst, size_t es)
{
    int64_t idx[LURAY_TENSOR_MAX_DIMS] = {0}, numel = 1;
    const uint8_t *base = t->data;

    for (int d = 0; d < t->ndim; d++)
        numel *= t->shape[d];
    for (int64_t i = 0; i < numel; i++) {
        int64_t off = 0;

        for (int d = 0; d < t->ndim; d++)
            off += idx[d] * t->strides[d];
        memcpy(dst + (size_t)i * es, base + (size_t)off * es, es);
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d])
                break;
            idx[d] = 0;
        }
    }
}

/* The data of the tensor at idx as one block: its own, or a contiguous copy pushed on the stack
 * (the caller keeps it there until written). */
static const void *contiguous_data(lua_State *L, luray_tensor_t *t)
{
    luray_tensor_t *c;

    if (coll_tensor_contiguous(t))
        return t->data;
    c = coll_host->tensor_push(L);
    if (coll_host->tensor_init(c, t->dtype, t->ndim, t->shape, false) < 0)
        luaL_error(L, "save_safetensors: not enough memory to copy a strided tensor");
    gather(t, c->data, coll_host->dtype_size(t->dtype));
    return c->data;
}

static size_t table_count(lua_State *L, int t)
{
    size_t n = 0;

    for (lua_pushnil(L); lua_next(L, t); lua_pop(L, 1))
        n++;
    return n;
}

static int l_save(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    safetensors_tensor_t *ts;
    safetensors_meta_t *ms;
    size_t n, nmeta = 0, i = 0;
    char err[COLL_ERR_MAX];
    int top;

    luaL_checktype(L, 2, LUA_TTABLE);
    if (!lua_isnoneornil(L, 3))
        luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    n = table_count(L, 2);
    nmeta = lua_isnil(L, 3) ? 0 : table_count(L, 3);
    ts = lua_newuserdatauv(L, (n ? n : 1) * sizeof *ts, 0);       /* 4 */
    ms = lua_newuserdatauv(L, (nmeta ? nmeta : 1) * sizeof *ms, 0); /* 5 */
    lua_newtable(L);                                                /* 6: copies kept alive */
    for (lua_pushnil(L); lua_next(L, 2); lua_pop(L, 1)) {
        luray_tensor_t *t = coll_host->tensor_test(L, -1);

        if (lua_type(L, -2) != LUA_TSTRING)
            return luaL_error(L, "save_safetensors: tensor names must be strings, got a %s key",
                              luaL_typename(L, -2));
        if (!t)
            return luaL_error(L, "save_safetensors: '%s' is a %s, not a tensor",
                              lua_tostring(L, -2), luaL_typename(L, -1));
        if (!t->data && t->nbytes)
            return luaL_error(L, "save_safetensors: tensor '%s' is closed", lua_tostring(L, -2));
        ts[i].name = lua_tostring(L, -2);
        ts[i].dtype = t->dtype;
        ts[i].ndim = t->ndim;
        ts[i].shape = t->shape;
        top = lua_gettop(L);
        ts[i].data = contiguous_data(L, t);
        if (lua_gettop(L) > top) /* a copy was pushed: keep it */
            lua_rawseti(L, 6, (lua_Integer)i + 1);
        i++;
    }
    for (i = 0, lua_pushnil(L); nmeta && lua_next(L, 3); lua_pop(L, 1), i++) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "save_safetensors: metadata must map strings to strings");
        ms[i].key = (char *)lua_tostring(L, -2);
        ms[i].value = (char *)lua_tostring(L, -1);
    }
    if (safetensors_write(path, ts, n, ms, nmeta, err, sizeof err) < 0)
        return luaL_error(L, "%s", err);
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- load ---- */

/* Maps the file privately into m (pages are copied only if written) and returns its bytes. */
static const uint8_t *map_file(lua_State *L, const char *path, mapping_t *m, size_t *size)
{
    static const uint8_t empty[1];
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        luaL_error(L, "load_safetensors: cannot open '%s': %s", path, strerror(errno));
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        luaL_error(L, "load_safetensors: '%s' is not a regular file", path);
    }
    *size = (size_t)st.st_size;
    if (*size == 0) {
        close(fd);
        return empty;
    }
    m->base = mmap(NULL, *size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m->base == MAP_FAILED) {
        m->base = NULL;
        luaL_error(L, "load_safetensors: cannot map '%s': %s", path, strerror(errno));
    }
    m->len = *size;
    return m->base;
}

static void push_tensor(lua_State *L, const safetensors_entry_t *e, const uint8_t *data,
                        bool copy, int keeper)
{
    size_t es = coll_host->dtype_size(e->dtype), n = (size_t)(e->end - e->begin);
    luray_tensor_t *t = coll_host->tensor_push(L);

    if (!copy && (uintptr_t)data % es == 0) {
        if (coll_host->tensor_init_data(t, e->dtype, e->ndim, e->shape, (void *)data, n, NULL,
                                        true) < 0)
            luaL_error(L, "load_safetensors: tensor '%s' cannot be made", e->name);
        lua_pushvalue(L, keeper);
        lua_setiuservalue(L, -2, 1);
        return;
    }
    if (coll_host->tensor_init(t, e->dtype, e->ndim, e->shape, false) < 0)
        luaL_error(L, "load_safetensors: not enough memory for tensor '%s'", e->name);
    if (n)
        memcpy(t->data, data, n);
}

static int l_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    safetensors_header_t *h;
    char err[COLL_ERR_MAX];
    const uint8_t *bytes;
    bool copy = false;
    mapping_t *m;
    size_t size;

    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "copy");
        copy = lua_toboolean(L, -1);
    }
    lua_settop(L, 2);
    m = lua_newuserdatauv(L, sizeof *m, 0); /* 3 */
    m->base = NULL;
    luaL_setmetatable(L, MAPPING_MT);
    h = lua_newuserdatauv(L, sizeof *h, 0); /* 4 */
    memset(h, 0, sizeof *h);
    luaL_setmetatable(L, HEADER_MT);
    bytes = map_file(L, path, m, &size);
    if (safetensors_parse(path, bytes, size, h, err, sizeof err) < 0)
        return luaL_error(L, "%s", err);

    lua_createtable(L, 0, (int)h->count); /* 5 */
    for (size_t i = 0; i < h->count; i++) {
        const safetensors_entry_t *e = &h->entries[i];

        push_tensor(L, e, bytes + h->data_start + e->begin, copy, 3);
        lua_setfield(L, 5, e->name);
    }
    lua_createtable(L, 0, (int)h->nmeta); /* 6 */
    for (size_t i = 0; i < h->nmeta; i++) {
        lua_pushstring(L, h->meta[i].value);
        lua_setfield(L, 6, h->meta[i].key);
    }
    safetensors_header_close(h);
    if (copy) /* nothing views the mapping */
        unmap(m);
    return 2;
}

void coll_safetensors_open_lua(lua_State *L, int module)
{
    static const luaL_Reg funcs[] = {
        {"save_safetensors", l_save},
        {"load_safetensors", l_load},
        {NULL, NULL},
    };

    module = lua_absindex(L, module);
    if (luaL_newmetatable(L, MAPPING_MT)) {
        lua_pushcfunction(L, l_mapping_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, HEADER_MT)) {
        lua_pushcfunction(L, l_header_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_pushvalue(L, module);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
}
