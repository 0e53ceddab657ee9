/* Lua values to luray object blobs and back (layout in serialize.h): the stream encoder and
 * decoder, the module reverse map, and the hooks through which extension types travel. */
#include "serialize.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "copy.h"
#include "errors.h"
#include "errors_str.h"

/* Stream tags. The high bit on a table, function or extension tag says that a later TAG_REF
 * points back at the value (the encoder patches it in when it meets the value again): only then
 * does the decoder remember the value, so values nobody shares cost the decoder nothing. A REF
 * names its target by the stream offset of the target's tag. */
enum {
    TAG_NIL = 0,
    TAG_FALSE,
    TAG_TRUE,
    TAG_INT,   /* zigzag varint */
    TAG_FLOAT, /* f64 bits, so NaN payloads and -0.0 survive */
    TAG_STR,   /* varint length, bytes */
    TAG_TABLE, /* varint narr, padded varint nhash, narr values, nhash key/value pairs */
    TAG_FUNC,  /* varint bytecode length, bytecode, varint nups, nups values or UPREFs */
    TAG_EXT,   /* str type name, padded varint header length, header, varint buffer count */
    TAG_REF,   /* varint stream offset of an earlier shared value */
    TAG_MODULE,  /* str name: require(name) */
    TAG_CFUNC,   /* str module, str key: require(module)[key] */
    TAG_GLOBALS, /* the decoding state's globals table */
    TAG_UPREF,   /* only as an upvalue: varint function offset, varint index: share that one */
    TAG_META,    /* str metatable name, then a table: a table whose metatable travels by name */
};
#define TAG_SHARED 0x80u

/* Counts only known after their items are written go into a 4-byte varint patched afterwards
 * (LEB128 allows the padding, so the reader needs no special case). */
#define PATCH_LEN 4
#define PATCH_MAX ((1u << 28) - 1)
#define HEADER_LEN 16
#define OOB_ENTRY_LEN 16

/* Registry keys: the addresses are what matters. */
static char k_serializers, k_resolver, k_modmap, k_dumps, k_nobytecode;

#define BYTES_MT "luray.Bytes"

static size_t align_up(size_t n)
{
    return (n + (LURAY_BLOB_ALIGN - 1)) & ~(size_t)(LURAY_BLOB_ALIGN - 1);
}

/* ---- writing helpers (the common one-byte cases skip the out-of-line call) ---- */

static inline void put_u8(luray_buf_t *b, uint8_t v)
{
    if (b->len < b->cap)
        b->data[b->len++] = v;
    else
        luray_buf_put_u8(b, v);
}

static inline void put_varint(luray_buf_t *b, uint64_t v)
{
    if (v < 0x80)
        put_u8(b, (uint8_t)v);
    else
        luray_buf_put_varint(b, v);
}

static size_t put_patch(luray_buf_t *b)
{
    static const uint8_t zero[PATCH_LEN] = {0x80, 0x80, 0x80, 0x00};
    size_t pos = b->len;
    luray_buf_put(b, zero, PATCH_LEN);
    return pos;
}

static void patch_varint(luray_buf_t *b, size_t pos, uint32_t v)
{
    if (b->err || pos + PATCH_LEN > b->len)
        return;
    b->data[pos] = (uint8_t)((v & 0x7f) | 0x80);
    b->data[pos + 1] = (uint8_t)(((v >> 7) & 0x7f) | 0x80);
    b->data[pos + 2] = (uint8_t)(((v >> 14) & 0x7f) | 0x80);
    b->data[pos + 3] = (uint8_t)((v >> 21) & 0x7f);
}

/* ---- encoder state ---- */

struct luray_ser_writer {
    luray_ser_t *s;
    size_t nbuf;
};

typedef struct {
    const void *key;
    size_t pos; /* stream offset of the value's tag */
} seen_t;

/* One step of the path to the value being encoded, rendered only when an error happens (while
 * the keys it points at are still on the stack). */
enum { SEG_INDEX, SEG_KEY, SEG_TABLEKEY, SEG_UPVALUE };
typedef struct {
    int kind;
    int idx;          /* SEG_KEY: stack index of the key */
    lua_Integer i;    /* SEG_INDEX */
    const char *name; /* SEG_UPVALUE */
} seg_t;

#define SEEN_INLINE 32
#define PATH_KEEP 8

typedef struct {
    lua_State *L;
    luray_ser_t *s;
    const char *what;
    int argi;
    int depth;
    int rc;
    const void *globals;
    int slot_modmap, slot_sers, slot_dumps; /* stack slots, nil until first needed */
    int modmap_checked, modmap_rebuilt;
    seen_t *seen; /* tables, Lua functions and extension values met so far (open addressing) */
    size_t seen_cap, seen_n;
    int nseg;
    seen_t seen_inline[SEEN_INLINE];
    seg_t seg[LURAY_SER_MAX_DEPTH + 8];
} enc_t;

static size_t appendf(char *out, size_t cap, size_t n, const char *fmt, ...)
{
    if (n >= cap)
        return n;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(out + n, cap - n, fmt, ap);
    va_end(ap);
    return k < 0 ? n : n + (size_t)k;
}

static size_t render_key(lua_State *L, int idx, char *out, size_t cap, size_t n)
{
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t len;
        const char *k = lua_tolstring(L, idx, &len);
        if (len > 60)
            return appendf(out, cap, n, ": field \"%.60s...\"", k);
        return appendf(out, cap, n, ": field \"%.*s\"", (int)len, k);
    }
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            return appendf(out, cap, n, "[%lld]", (long long)lua_tointeger(L, idx));
        return appendf(out, cap, n, "[%.14g]", (double)lua_tonumber(L, idx));
    case LUA_TBOOLEAN:
        return appendf(out, cap, n, "[%s]", lua_toboolean(L, idx) ? "true" : "false");
    default:
        return appendf(out, cap, n, "[<%s>]", luaL_typename(L, idx));
    }
}

/* Fills s->err as `cannot serialize argument 2: field "conn" is a userdata (FILE*)`. */
static int enc_fail(enc_t *e, int rc, const char *fmt, ...)
{
    char *out = e->s->err;
    size_t cap = sizeof e->s->err;
    size_t n = appendf(out, cap, 0, "cannot serialize %s %d", e->what, e->argi);
    for (int i = 0; i < e->nseg; i++) {
        const seg_t *g = &e->seg[i];
        /* A very deep path keeps its first and last steps, so the reason still fits. */
        if (e->nseg > 2 * PATH_KEEP && i == PATH_KEEP) {
            n = appendf(out, cap, n, "...");
            i = e->nseg - PATH_KEEP - 1;
            continue;
        }
        switch (g->kind) {
        case SEG_INDEX:
            n = appendf(out, cap, n, "[%lld]", (long long)g->i);
            break;
        case SEG_KEY:
            n = render_key(e->L, g->idx, out, cap, n);
            break;
        case SEG_TABLEKEY:
            n = appendf(out, cap, n, ": table key");
            break;
        case SEG_UPVALUE:
            n = appendf(out, cap, n, ": upvalue \"%s\" of function",
                        g->name && *g->name ? g->name : "?");
            break;
        }
    }
    n = appendf(out, cap, n, e->nseg ? " is " : ": ");
    if (n < cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(out + n, cap - n, fmt, ap);
        va_end(ap);
    }
    e->rc = rc;
    return rc;
}

static size_t seen_slot(const void *p, size_t cap)
{
    uint64_t h = (uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ull;
    return (size_t)(h ^ (h >> 31)) & (cap - 1);
}

static seen_t *seen_find(enc_t *e, const void *p)
{
    if (!e->seen_n)
        return NULL;
    for (size_t i = seen_slot(p, e->seen_cap);; i = (i + 1) & (e->seen_cap - 1)) {
        if (e->seen[i].key == p)
            return &e->seen[i];
        if (!e->seen[i].key)
            return NULL;
    }
}

static int seen_add(enc_t *e, const void *p, size_t pos)
{
    if (!e->seen_cap) {
        memset(e->seen_inline, 0, sizeof e->seen_inline);
        e->seen = e->seen_inline;
        e->seen_cap = SEEN_INLINE;
    }
    if ((e->seen_n + 1) * 2 > e->seen_cap) {
        size_t cap = e->seen_cap * 2;
        seen_t *t = calloc(cap, sizeof *t);
        if (!t)
            return LURAY_ENOMEM;
        for (size_t j = 0; j < e->seen_cap; j++) {
            if (!e->seen[j].key)
                continue;
            size_t i = seen_slot(e->seen[j].key, cap);
            while (t[i].key)
                i = (i + 1) & (cap - 1);
            t[i] = e->seen[j];
        }
        if (e->seen != e->seen_inline)
            free(e->seen);
        e->seen = t;
        e->seen_cap = cap;
    }
    size_t i = seen_slot(p, e->seen_cap);
    while (e->seen[i].key)
        i = (i + 1) & (e->seen_cap - 1);
    e->seen[i].key = p;
    e->seen[i].pos = pos;
    e->seen_n++;
    return 0;
}

/* Writes a back-reference if p was met before: returns 1 when written, else 0. */
static int enc_backref(enc_t *e, const void *p)
{
    seen_t *sn = seen_find(e, p);
    if (!sn)
        return 0;
    luray_buf_t *b = &e->s->stream;
    if (!b->err)
        b->data[sn->pos] |= TAG_SHARED;
    put_u8(b, TAG_REF);
    put_varint(b, sn->pos);
    return 1;
}

/* Starts a table or function: depth and stack checks, then remembers it for back-references. */
static int enc_enter(enc_t *e, const void *p)
{
    if (e->depth >= LURAY_SER_MAX_DEPTH)
        return enc_fail(e, LURAY_ESERIALIZE, "nested too deeply (more than %d levels)",
                        LURAY_SER_MAX_DEPTH);
    if (!lua_checkstack(e->L, 8))
        return enc_fail(e, LURAY_ENOMEM, "too deep for the Lua stack");
    if (seen_add(e, p, e->s->stream.len))
        return enc_fail(e, LURAY_ENOMEM, "out of memory");
    e->depth++;
    return 0;
}

/* ---- module reverse map ----
 * A registry table (weak keys) maps every table in package.loaded to its name and every C
 * function field of those tables to "module\0key". Integer keys 1 and 2 hold a fingerprint of
 * package.loaded (entry count, mixed value addresses) taken when the map was built: a table the
 * map misses is checked against it once per encode, a C function it misses rebuilds it. */

static void loaded_fingerprint(lua_State *L, int loaded, lua_Integer *count, lua_Integer *mix)
{
    uint64_t c = 0, m = 0;
    if (lua_type(L, loaded) == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, loaded)) {
            uint64_t h = (uint64_t)(uintptr_t)lua_topointer(L, -1) * 0x9E3779B97F4A7C15ull;
            m += h ^ (h >> 29);
            c++;
            lua_pop(L, 1);
        }
    }
    *count = (lua_Integer)c;
    *mix = (lua_Integer)m;
}

static void modmap_build(enc_t *e)
{
    lua_State *L = e->L;
    lua_createtable(L, 2, 64);
    int map = lua_gettop(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, map);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    int loaded = map + 1;
    lua_Integer count, mix;
    loaded_fingerprint(L, loaded, &count, &mix);
    if (lua_type(L, loaded) == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, loaded)) { /* map loaded name mod */
            int name = map + 2, mod = map + 3;
            if (lua_type(L, name) != LUA_TSTRING || lua_type(L, mod) != LUA_TTABLE) {
                lua_pop(L, 1);
                continue;
            }
            lua_pushvalue(L, mod);
            if (lua_rawget(L, map) == LUA_TNIL) {
                lua_pushvalue(L, mod);
                lua_pushvalue(L, name);
                lua_rawset(L, map);
            }
            lua_pop(L, 1);
            lua_pushnil(L);
            while (lua_next(L, mod)) { /* ... mod key value */
                if (lua_type(L, -2) == LUA_TSTRING && lua_iscfunction(L, -1)) {
                    lua_pushvalue(L, -1);
                    if (lua_rawget(L, map) == LUA_TNIL) {
                        lua_pushvalue(L, -2);
                        lua_pushvalue(L, name);
                        lua_pushlstring(L, "", 1);
                        lua_pushvalue(L, -6);
                        lua_concat(L, 3);
                        lua_rawset(L, map);
                    }
                    lua_pop(L, 1);
                }
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    lua_pushinteger(L, count);
    lua_rawseti(L, map, 1);
    lua_pushinteger(L, mix);
    lua_rawseti(L, map, 2);
    lua_pushvalue(L, map);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &k_modmap);
    lua_replace(L, e->slot_modmap);
    e->modmap_rebuilt = 1;
    e->modmap_checked = 1;
}

static int modmap_stale(enc_t *e)
{
    lua_State *L = e->L;
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_Integer count, mix;
    loaded_fingerprint(L, lua_gettop(L), &count, &mix);
    lua_pop(L, 1);
    lua_rawgeti(L, e->slot_modmap, 1);
    lua_rawgeti(L, e->slot_modmap, 2);
    int same = lua_tointeger(L, -2) == count && lua_tointeger(L, -1) == mix;
    lua_pop(L, 2);
    return !same;
}

/* Pushes the map's string for the value at idx and returns 1, or pushes nothing and returns 0. */
static int modmap_get(enc_t *e, int idx)
{
    lua_pushvalue(e->L, idx);
    if (lua_rawget(e->L, e->slot_modmap) == LUA_TSTRING)
        return 1;
    lua_pop(e->L, 1);
    return 0;
}

/* Writes the table or C function at idx as a module reference if it is one: returns 1 when
 * written, 0 when it is no module value, or an error code. */
static int enc_module(enc_t *e, int idx, int cfunc)
{
    lua_State *L = e->L;
    if (!lua_checkstack(L, 12))
        return enc_fail(e, LURAY_ENOMEM, "too deep for the Lua stack");
    if (lua_isnil(L, e->slot_modmap)) {
        if (lua_rawgetp(L, LUA_REGISTRYINDEX, &k_modmap) == LUA_TTABLE)
            lua_replace(L, e->slot_modmap);
        else {
            lua_pop(L, 1);
            modmap_build(e);
        }
    }
    int found = modmap_get(e, idx);
    if (!found && !e->modmap_rebuilt && (cfunc || (!e->modmap_checked && modmap_stale(e)))) {
        modmap_build(e);
        found = modmap_get(e, idx);
    }
    e->modmap_checked = 1;
    if (!found)
        return 0;
    size_t n;
    const char *name = lua_tolstring(L, -1, &n);
    const char *nul = memchr(name, '\0', n);
    luray_buf_t *b = &e->s->stream;
    if (cfunc && nul) {
        put_u8(b, TAG_CFUNC);
        luray_buf_put_str(b, name, (size_t)(nul - name));
        luray_buf_put_str(b, nul + 1, n - (size_t)(nul - name) - 1);
    } else if (!cfunc && !nul) {
        put_u8(b, TAG_MODULE);
        luray_buf_put_str(b, name, n);
    } else {
        found = 0;
    }
    lua_pop(L, 1);
    return found;
}

/* ---- encoding values ---- */

/* Pushes the metatable registered under name and returns true, else pushes nothing. */
static bool lookup_metatable(lua_State *L, const char *name, size_t n)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, LURAY_SER_METATABLES) != LUA_TTABLE) {
        lua_pop(L, 1);
        return false;
    }
    lua_pushlstring(L, name, n);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    if (lua_istable(L, -1))
        return true;
    lua_pop(L, 1);
    return false;
}

/* As lookup_metatable; a class named "mod.sub.Class" that this process has not seen yet is
 * looked for again after require("mod.sub"), which registers it (a luray.data Dataset sent to a
 * worker that never required luray.data, say). */
static bool push_named_metatable(lua_State *L, const char *name, size_t n)
{
    if (lookup_metatable(L, name, n))
        return true;
    const char *dot = NULL;
    for (size_t i = 0; i < n; i++)
        if (name[i] == '.')
            dot = name + i;
    if (dot == NULL || dot == name)
        return false;
    lua_getglobal(L, "require");
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        return false;
    }
    lua_pushlstring(L, name, (size_t)(dot - name));
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        lua_pop(L, 1); /* the module cannot load here: the caller reports the class as missing */
        return false;
    }
    return lookup_metatable(L, name, n);
}

static int enc_value(enc_t *e, int idx);

/* Metatables of plain tables are not carried: a table arrives as a plain table (classes travel
 * as their methods' table when passed explicitly, or as modules by name). */
static int enc_table(enc_t *e, int idx)
{
    lua_State *L = e->L;
    luray_buf_t *b = &e->s->stream;
    const void *p = lua_topointer(L, idx);
    if (p == e->globals) {
        put_u8(b, TAG_GLOBALS);
        return 0;
    }
    if (enc_backref(e, p))
        return 0;
    int rc = enc_module(e, idx, 0);
    if (rc)
        return rc < 0 ? rc : 0;
    if ((rc = enc_enter(e, p)))
        return rc;
    /* The array part goes first without keys; rawlen is a border, so it may hold nils. */
    lua_Unsigned narr = lua_rawlen(L, idx);
    put_u8(b, TAG_TABLE);
    put_varint(b, narr);
    size_t hpos = put_patch(b);
    seg_t *g = &e->seg[e->nseg++];
    g->kind = SEG_INDEX;
    for (lua_Unsigned i = 1; i <= narr; i++) {
        lua_rawgeti(L, idx, (lua_Integer)i);
        g->i = (lua_Integer)i;
        if ((rc = enc_value(e, lua_gettop(L))))
            return rc;
        lua_pop(L, 1);
    }
    size_t nhash = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int top = lua_gettop(L);
        if (lua_isinteger(L, top - 1)) {
            lua_Integer k = lua_tointeger(L, top - 1);
            if (k >= 1 && (lua_Unsigned)k <= narr) {
                lua_pop(L, 1);
                continue;
            }
        }
        g->kind = SEG_TABLEKEY;
        if ((rc = enc_value(e, top - 1)))
            return rc;
        g->kind = SEG_KEY;
        g->idx = top - 1;
        if ((rc = enc_value(e, top)))
            return rc;
        lua_pop(L, 1);
        nhash++;
    }
    if (nhash > PATCH_MAX)
        return enc_fail(e, LURAY_ETOOBIG, "a table with too many fields");
    patch_varint(b, hpos, (uint32_t)nhash);
    e->nseg--;
    e->depth--;
    if (b->err)
        return enc_fail(e, LURAY_ENOMEM, "out of memory");
    return 0;
}

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud)
{
    (void)L;
    luray_buf_t *b = ud;
    luray_buf_put(b, p, sz);
    return b->err;
}

/* Writes the bytecode (with debug info, so remote tracebacks keep line numbers) of the Lua
 * function at idx. A closure's bytecode never changes, so it is cached per closure. */
static int enc_bytecode(enc_t *e, int idx)
{
    lua_State *L = e->L;
    luray_buf_t *b = &e->s->stream;
    if (lua_isnil(L, e->slot_dumps)) {
        if (lua_rawgetp(L, LUA_REGISTRYINDEX, &k_dumps) != LUA_TTABLE) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_createtable(L, 0, 1);
            lua_pushliteral(L, "k");
            lua_setfield(L, -2, "__mode");
            lua_setmetatable(L, -2);
            lua_pushvalue(L, -1);
            lua_rawsetp(L, LUA_REGISTRYINDEX, &k_dumps);
        }
        lua_replace(L, e->slot_dumps);
    }
    lua_pushvalue(L, idx);
    if (lua_rawget(L, e->slot_dumps) == LUA_TSTRING) {
        size_t n;
        const char *code = lua_tolstring(L, -1, &n);
        luray_buf_put_str(b, code, n);
        lua_pop(L, 1);
        return 0;
    }
    lua_pop(L, 1);
    size_t lenpos = put_patch(b);
    size_t start = b->len;
    lua_pushvalue(L, idx);
    lua_dump(L, dump_writer, b, 0);
    lua_pop(L, 1);
    if (b->err)
        return enc_fail(e, LURAY_ENOMEM, "out of memory");
    size_t n = b->len - start;
    if (n > PATCH_MAX)
        return enc_fail(e, LURAY_ETOOBIG, "a function too large");
    patch_varint(b, lenpos, (uint32_t)n);
    lua_pushvalue(L, idx);
    lua_pushlstring(L, (const char *)b->data + start, n);
    lua_rawset(L, e->slot_dumps);
    return 0;
}

/* A Lua function: bytecode, then its upvalues by value. The function is remembered before its
 * upvalues are written, so a function recursive through an upvalue becomes a back-reference. An
 * upvalue already met in another function travelling along (closures over one local) is written
 * as a reference to that function's upvalue, and the decoder joins the two again. */
static int enc_lfunc(enc_t *e, int idx)
{
    lua_State *L = e->L;
    luray_buf_t *b = &e->s->stream;
    const void *p = lua_topointer(L, idx);
    if (enc_backref(e, p))
        return 0;
    size_t fpos = b->len;
    int rc = enc_enter(e, p);
    if (rc)
        return rc;
    put_u8(b, TAG_FUNC);
    if ((rc = enc_bytecode(e, idx)))
        return rc;
    lua_Debug ar;
    lua_pushvalue(L, idx);
    lua_getinfo(L, ">u", &ar);
    put_varint(b, ar.nups);
    seg_t *g = &e->seg[e->nseg++];
    g->kind = SEG_UPVALUE;
    for (int i = 1; i <= ar.nups; i++) {
        const void *uid = lua_upvalueid(L, idx, i);
        seen_t *sn = uid ? seen_find(e, uid) : NULL;
        if (sn) {
            if (!b->err)
                b->data[sn->pos >> 8] |= TAG_SHARED;
            put_u8(b, TAG_UPREF);
            put_varint(b, sn->pos >> 8);
            put_varint(b, sn->pos & 0xff);
            continue;
        }
        /* nups <= 255, so the owner's offset and the index share one word */
        if (uid && seen_add(e, uid, fpos << 8 | (size_t)i))
            return enc_fail(e, LURAY_ENOMEM, "out of memory");
        g->name = lua_getupvalue(L, idx, i);
        if ((rc = enc_value(e, lua_gettop(L))))
            return rc;
        lua_pop(L, 1);
    }
    e->nseg--;
    e->depth--;
    return 0;
}

static int enc_cfunc(enc_t *e, int idx)
{
    int rc = enc_module(e, idx, 1);
    if (rc)
        return rc < 0 ? rc : 0;
    return enc_fail(e, LURAY_ESERIALIZE, "a C function that is not a field of a loaded module");
}

static int enc_udata(enc_t *e, int idx)
{
    lua_State *L = e->L;
    luray_buf_t *b = &e->s->stream;
    int top = lua_gettop(L);
    if (!lua_checkstack(L, 8))
        return enc_fail(e, LURAY_ENOMEM, "too deep for the Lua stack");
    if (!lua_getmetatable(L, idx))
        return enc_fail(e, LURAY_ESERIALIZE, "a userdata");
    lua_pushliteral(L, "__name");
    if (lua_rawget(L, -2) != LUA_TSTRING)
        return enc_fail(e, LURAY_ESERIALIZE, "a userdata");
    const char *name = lua_tostring(L, -1);
    if (lua_isnil(L, e->slot_sers)) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &k_serializers);
        lua_replace(L, e->slot_sers);
    }
    const luray_serializer_t *ser = NULL;
    if (lua_istable(L, e->slot_sers)) {
        lua_pushvalue(L, -1);
        lua_rawget(L, e->slot_sers);
        ser = lua_touserdata(L, -1);
    }
    if (!ser)
        return enc_fail(e, LURAY_ESERIALIZE, "a userdata (%s)", name);
    lua_settop(L, top);
    const void *p = lua_touserdata(L, idx);
    if (enc_backref(e, p))
        return 0;
    if (seen_add(e, p, b->len))
        return enc_fail(e, LURAY_ENOMEM, "out of memory");
    put_u8(b, TAG_EXT);
    luray_buf_put_str(b, ser->type_name, strlen(ser->type_name));
    size_t hpos = put_patch(b);
    size_t hstart = b->len;
    struct luray_ser_writer w = {e->s, 0};
    int rc = ser->encode(luray_host_api(), L, idx, &w);
    lua_settop(L, top);
    if (rc)
        return enc_fail(e, rc, "a userdata (%s) whose serializer failed: %s", ser->type_name,
                        luray_strerror(rc));
    if (b->err)
        return enc_fail(e, LURAY_ENOMEM, "out of memory");
    if (b->len - hstart > PATCH_MAX)
        return enc_fail(e, LURAY_ETOOBIG, "a userdata (%s) with too large a header",
                        ser->type_name);
    patch_varint(b, hpos, (uint32_t)(b->len - hstart));
    put_varint(b, w.nbuf);
    return 0;
}

static int enc_value(enc_t *e, int idx)
{
    lua_State *L = e->L;
    luray_buf_t *b = &e->s->stream;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        put_u8(b, TAG_NIL);
        return 0;
    case LUA_TBOOLEAN:
        put_u8(b, lua_toboolean(L, idx) ? TAG_TRUE : TAG_FALSE);
        return 0;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            uint64_t u = (uint64_t)lua_tointeger(L, idx);
            put_u8(b, TAG_INT);
            put_varint(b, (u << 1) ^ (0 - (u >> 63)));
        } else {
            put_u8(b, TAG_FLOAT);
            luray_buf_put_f64(b, (double)lua_tonumber(L, idx));
        }
        return 0;
    case LUA_TSTRING: {
        size_t n;
        const char *p = lua_tolstring(L, idx, &n);
        put_u8(b, TAG_STR);
        put_varint(b, n);
        luray_buf_put(b, p, n);
        return 0;
    }
    case LUA_TTABLE:
        if (lua_getmetatable(L, idx)) {
            lua_getfield(L, -1, "__name");
            const char *name = lua_tostring(L, -1);
            bool travels = false;
            if (name) {
                if (lua_getfield(L, LUA_REGISTRYINDEX, LURAY_SER_METATABLES) == LUA_TTABLE) {
                    lua_getfield(L, -1, name);
                    travels = lua_rawequal(L, -1, -4);
                    lua_pop(L, 1);
                }
                if (travels) {
                    put_u8(b, TAG_META);
                    put_varint(b, strlen(name));
                    luray_buf_put(b, name, strlen(name));
                }
                lua_pop(L, 1);
            }
            lua_pop(L, 2);
        }
        return enc_table(e, idx);
    case LUA_TFUNCTION:
        return lua_iscfunction(L, idx) ? enc_cfunc(e, idx) : enc_lfunc(e, idx);
    case LUA_TUSERDATA:
        return enc_udata(e, idx);
    case LUA_TLIGHTUSERDATA:
        return enc_fail(e, LURAY_ESERIALIZE, "a light userdata");
    case LUA_TTHREAD:
        return enc_fail(e, LURAY_ESERIALIZE, "a thread (coroutine)");
    default:
        return enc_fail(e, LURAY_ESERIALIZE, "a %s", luaL_typename(L, idx));
    }
}

/* Runs protected: memory errors (and errors raised by extension encoders) are caught by
 * luray_ser_encode. Arguments: the enc_t, then the values. */
static int enc_main(lua_State *L)
{
    enc_t *e = lua_touserdata(L, 1);
    int n = lua_gettop(L) - 1;
    lua_settop(L, n + 4);
    e->slot_modmap = n + 2;
    e->slot_sers = n + 3;
    e->slot_dumps = n + 4;
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    e->globals = lua_topointer(L, -1);
    lua_pop(L, 1);
    luray_buf_t *b = &e->s->stream;
    put_varint(b, (uint64_t)n);
    for (int i = 0; i < n; i++) {
        e->argi = i + 1;
        if (enc_value(e, i + 2))
            return 0;
    }
    if (b->err)
        enc_fail(e, LURAY_ENOMEM, "out of memory");
    return 0;
}

void luray_ser_init(luray_ser_t *s)
{
    luray_buf_init(&s->stream);
    s->oob = NULL;
    s->n_oob = s->cap_oob = 0;
    s->refs = NULL;
    s->n_refs = s->cap_refs = 0;
    s->err[0] = '\0';
}

void luray_ser_close(luray_ser_t *s)
{
    luray_buf_close(&s->stream);
    free(s->oob);
    free(s->refs);
    luray_ser_init(s);
}

int luray_ser_encode(lua_State *L, int first, int n, const char *what, luray_ser_t *s)
{
    enc_t e;
    e.L = L;
    e.s = s;
    e.what = what ? what : "value";
    e.argi = 0;
    e.depth = 0;
    e.rc = 0;
    e.globals = NULL;
    e.modmap_checked = e.modmap_rebuilt = 0;
    e.seen = NULL;
    e.seen_cap = e.seen_n = 0;
    e.nseg = 0;
    s->err[0] = '\0';
    if (n < 0) {
        snprintf(s->err, sizeof s->err, "cannot serialize: negative value count");
        return LURAY_EINVAL;
    }
    first = lua_absindex(L, first);
    if (!lua_checkstack(L, n + 3)) {
        snprintf(s->err, sizeof s->err, "cannot serialize %d %ss: stack overflow", n, e.what);
        return LURAY_ENOMEM;
    }
    lua_pushcfunction(L, enc_main);
    lua_pushlightuserdata(L, &e);
    for (int i = 0; i < n; i++)
        lua_pushvalue(L, first + i);
    int st = lua_pcall(L, n + 1, 0, 0);
    int rc = e.rc;
    if (st != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        snprintf(s->err, sizeof s->err, "cannot serialize %s %d: %s", e.what, e.argi,
                 msg ? msg : "error object is not a string");
        lua_pop(L, 1);
        rc = st == LUA_ERRMEM ? LURAY_ENOMEM : LURAY_ESERIALIZE;
    }
    if (e.seen && e.seen != e.seen_inline)
        free(e.seen);
    return rc;
}

size_t luray_ser_blob_size(const luray_ser_t *s)
{
    size_t pos = HEADER_LEN + s->n_oob * OOB_ENTRY_LEN + s->stream.len;
    for (size_t i = 0; i < s->n_oob; i++)
        pos = align_up(pos) + s->oob[i].len;
    return pos;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

void luray_ser_write(const luray_ser_t *s, void *dst)
{
    uint8_t *d = dst;
    put_le(d, LURAY_BLOB_MAGIC, 4);
    put_le(d + 4, s->n_oob, 4);
    put_le(d + 8, s->stream.len, 8);
    size_t pos = HEADER_LEN + s->n_oob * OOB_ENTRY_LEN;
    if (s->stream.len)
        memcpy(d + pos, s->stream.data, s->stream.len);
    pos += s->stream.len;
    for (size_t i = 0; i < s->n_oob; i++) {
        size_t off = align_up(pos);
        memset(d + pos, 0, off - pos);
        put_le(d + HEADER_LEN + i * OOB_ENTRY_LEN, off, 8);
        put_le(d + HEADER_LEN + i * OOB_ENTRY_LEN + 8, s->oob[i].len, 8);
        if (s->oob[i].len)
            luray_copy(d + off, s->oob[i].ptr, s->oob[i].len);
        pos = off + s->oob[i].len;
    }
}

/* ---- extension writer (host API) ---- */

int luray_ser_writer_write(luray_ser_writer_t *w, const void *bytes, size_t len)
{
    luray_buf_put(&w->s->stream, bytes, len);
    return w->s->stream.err;
}

int luray_ser_writer_buffer(luray_ser_writer_t *w, const void *data, size_t len)
{
    luray_ser_t *s = w->s;
    if (s->n_oob == s->cap_oob) {
        size_t cap = s->cap_oob ? s->cap_oob * 2 : 4;
        luray_span_t *t = realloc(s->oob, cap * sizeof *t);
        if (!t)
            return LURAY_ENOMEM;
        s->oob = t;
        s->cap_oob = cap;
    }
    s->oob[s->n_oob].ptr = data;
    s->oob[s->n_oob].len = len;
    s->n_oob++;
    w->nbuf++;
    return 0;
}

int luray_ser_writer_ref(luray_ser_writer_t *w, luray_oid_t id)
{
    luray_ser_t *s = w->s;
    if (s->n_refs == s->cap_refs) {
        size_t cap = s->cap_refs ? s->cap_refs * 2 : 4;
        luray_oid_t *t = realloc(s->refs, cap * sizeof *t);
        if (!t)
            return LURAY_ENOMEM;
        s->refs = t;
        s->cap_refs = cap;
    }
    s->refs[s->n_refs++] = id;
    return 0;
}

/* ---- decoder ---- */

typedef struct {
    lua_State *L;
    luray_rd_t rd;
    const uint8_t *blob;
    const uint8_t *stream; /* REF offsets count from here */
    const uint8_t *oobtab;
    size_t n_oob, next_oob;
    int keeper; /* stack slot of the keeper, 0 when the blob is only valid during the call */
    int slot_refs, slot_copy, slot_sers, slot_loaded;
    int depth;
    int allow_bc; /* -1 until looked up */
    int rc;
    char *err;
    size_t errlen;
} dec_t;

struct luray_ser_reader {
    dec_t *d;
    const void *hdr;
    size_t hdrlen;
    const uint8_t *tab; /* this value's entries of the out-of-band table */
    size_t nbuf;
    void *copy; /* bytes_t holding copies of the buffers (keeper-less decode) */
};

/* A "luray.Bytes" userdata: nbuf, total, then size_t offsets[nbuf], lens[nbuf], then the data
 * at a 64-byte aligned address (Lua never moves a userdata, so the address stays). */
typedef struct {
    size_t nbuf;
    size_t total;
} bytes_t;

static uint8_t *bytes_base(bytes_t *b)
{
    uintptr_t p = (uintptr_t)((size_t *)(b + 1) + 2 * b->nbuf);
    return (uint8_t *)((p + (LURAY_BLOB_ALIGN - 1)) & ~(uintptr_t)(LURAY_BLOB_ALIGN - 1));
}

static int l_bytes_len(lua_State *L)
{
    bytes_t *b = luaL_checkudata(L, 1, BYTES_MT);
    lua_pushinteger(L, (lua_Integer)b->total);
    return 1;
}

static int dec_fail(dec_t *d, int rc, const char *fmt, ...)
{
    if (!d->rc) {
        d->rc = rc;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->err, d->errlen, fmt, ap);
        va_end(ap);
    }
    return d->rc;
}

static int dec_corrupt(dec_t *d, const char *why)
{
    return dec_fail(d, LURAY_EPROTO, "malformed object blob: %s (stream offset %zu)", why,
                    (size_t)(d->rd.p - d->stream));
}

static void oob_entry(const uint8_t *p, size_t *off, size_t *len)
{
    luray_rd_t r;
    luray_rd_init(&r, p, OOB_ENTRY_LEN);
    *off = (size_t)luray_rd_u64(&r);
    *len = (size_t)luray_rd_u64(&r);
}

/* Remembers the value on top under its tag offset when a later REF points at it. */
static void dec_remember(dec_t *d, size_t at, int shared)
{
    lua_State *L = d->L;
    if (!shared)
        return;
    if (lua_isnil(L, d->slot_refs)) {
        lua_newtable(L);
        lua_replace(L, d->slot_refs);
    }
    lua_pushvalue(L, -1);
    lua_rawseti(L, d->slot_refs, (lua_Integer)at);
}

static int dec_enter(dec_t *d)
{
    if (d->depth >= LURAY_SER_MAX_DEPTH)
        return dec_fail(d, LURAY_EPROTO, "malformed object blob: nested more than %d levels",
                        LURAY_SER_MAX_DEPTH);
    if (!lua_checkstack(d->L, 8))
        return dec_fail(d, LURAY_ENOMEM, "cannot decode value: Lua stack overflow");
    d->depth++;
    return 0;
}

static int dec_value(dec_t *d);

static int dec_table(dec_t *d, size_t at, int shared)
{
    lua_State *L = d->L;
    uint64_t narr = luray_rd_varint(&d->rd);
    uint64_t nhash = luray_rd_varint(&d->rd);
    size_t left = luray_rd_left(&d->rd);
    if (d->rd.err || narr > left || nhash > left / 2 || narr > INT32_MAX || nhash > INT32_MAX)
        return dec_corrupt(d, "bad table size");
    int rc = dec_enter(d);
    if (rc)
        return rc;
    lua_createtable(L, (int)narr, (int)nhash);
    dec_remember(d, at, shared);
    int t = lua_gettop(L);
    for (uint64_t i = 1; i <= narr; i++) {
        if ((rc = dec_value(d)))
            return rc;
        lua_rawseti(L, t, (lua_Integer)i);
    }
    for (uint64_t i = 0; i < nhash; i++) {
        if ((rc = dec_value(d)))
            return rc;
        int kt = lua_type(L, -1);
        if (kt == LUA_TNIL || (kt == LUA_TNUMBER && lua_tonumber(L, -1) != lua_tonumber(L, -1)))
            return dec_corrupt(d, "nil or NaN table key");
        if ((rc = dec_value(d)))
            return rc;
        lua_rawset(L, t);
    }
    d->depth--;
    return 0;
}

typedef struct {
    const char *p;
    size_t n;
} mem_src_t;

static const char *mem_reader(lua_State *L, void *ud, size_t *size)
{
    (void)L;
    mem_src_t *m = ud;
    *size = m->n;
    m->n = 0;
    return *size ? m->p : NULL;
}

/* Makes upvalue i of the function at f the same variable as an upvalue of an earlier one. */
static int dec_upref(dec_t *d, int f, int i)
{
    lua_State *L = d->L;
    (void)luray_rd_u8(&d->rd);
    uint64_t off = luray_rd_varint(&d->rd);
    uint64_t j = luray_rd_varint(&d->rd);
    if (d->rd.err || lua_isnil(L, d->slot_refs) || off > INT64_MAX)
        return dec_corrupt(d, "bad upvalue reference");
    lua_rawgeti(L, d->slot_refs, (lua_Integer)off);
    lua_Debug ar;
    ar.nups = 0;
    if (lua_type(L, -1) == LUA_TFUNCTION && !lua_iscfunction(L, -1)) {
        lua_pushvalue(L, -1);
        lua_getinfo(L, ">u", &ar);
    }
    if (j < 1 || j > ar.nups) {
        lua_pop(L, 1);
        return dec_corrupt(d, "bad upvalue reference");
    }
    lua_upvaluejoin(L, f, i, -1, (int)j);
    lua_pop(L, 1);
    return 0;
}

static int dec_func(dec_t *d, size_t at, int shared)
{
    lua_State *L = d->L;
    uint64_t len = luray_rd_varint(&d->rd);
    if (d->rd.err || len > luray_rd_left(&d->rd))
        return dec_corrupt(d, "bad function length");
    const char *code = luray_rd_bytes(&d->rd, (size_t)len);
    uint64_t nups = luray_rd_varint(&d->rd);
    if (d->rd.err || nups > 255 || nups > luray_rd_left(&d->rd))
        return dec_corrupt(d, "bad upvalue count");
    if (d->allow_bc < 0) {
        d->allow_bc = lua_rawgetp(L, LUA_REGISTRYINDEX, &k_nobytecode) == LUA_TNIL;
        lua_pop(L, 1);
    }
    if (!d->allow_bc)
        return dec_fail(d, LURAY_EPROTO,
                        "cannot decode value: it holds a function and bytecode is not allowed");
    int rc = dec_enter(d);
    if (rc)
        return rc;
    mem_src_t src = {code, (size_t)len};
    if (lua_load(L, mem_reader, &src, "=luray", "b") != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        return dec_fail(d, LURAY_EPROTO, "cannot decode function: %s", msg ? msg : "?");
    }
    lua_Debug ar;
    lua_pushvalue(L, -1);
    lua_getinfo(L, ">u", &ar);
    if ((uint64_t)ar.nups != nups)
        return dec_corrupt(d, "upvalue count does not match the function");
    dec_remember(d, at, shared);
    int f = lua_gettop(L);
    for (int i = 1; i <= (int)nups; i++) {
        if (luray_rd_left(&d->rd) && *d->rd.p == TAG_UPREF) {
            if ((rc = dec_upref(d, f, i)))
                return rc;
            continue;
        }
        if ((rc = dec_value(d)))
            return rc;
        if (!lua_setupvalue(L, f, i))
            lua_pop(L, 1);
    }
    d->depth--;
    return 0;
}

/* Pushes require(name): package.loaded first, then the state's `require`. */
static int dec_require(dec_t *d, const char *name, size_t n)
{
    lua_State *L = d->L;
    if (!lua_checkstack(L, 4))
        return dec_fail(d, LURAY_ENOMEM, "cannot decode value: Lua stack overflow");
    if (lua_isnil(L, d->slot_loaded)) {
        lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
        lua_replace(L, d->slot_loaded);
    }
    if (lua_istable(L, d->slot_loaded)) {
        lua_pushlstring(L, name, n);
        if (lua_rawget(L, d->slot_loaded) != LUA_TNIL)
            return 0;
        lua_pop(L, 1);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    lua_getfield(L, -1, "require");
    lua_remove(L, -2);
    if (!lua_isfunction(L, -1))
        return dec_fail(d, LURAY_ESERIALIZE, "cannot decode module \"%.*s\": no require",
                        (int)(n > 80 ? 80 : n), name);
    lua_pushlstring(L, name, n);
    lua_call(L, 1, 1); /* errors reach luray_ser_decode's protected call */
    return 0;
}

static int dec_cfunc(dec_t *d)
{
    lua_State *L = d->L;
    size_t mn, kn;
    const char *mod = luray_rd_str(&d->rd, &mn);
    const char *key = luray_rd_str(&d->rd, &kn);
    if (d->rd.err)
        return dec_corrupt(d, "bad module function");
    int rc = dec_require(d, mod, mn);
    if (rc)
        return rc;
    if (lua_istable(L, -1)) {
        lua_pushlstring(L, key, kn);
        lua_rawget(L, -2);
        lua_remove(L, -2);
        if (lua_isfunction(L, -1))
            return 0;
    }
    return dec_fail(d, LURAY_ESERIALIZE, "cannot decode function %.*s.%.*s: not found",
                    (int)(mn > 80 ? 80 : mn), mod, (int)(kn > 80 ? 80 : kn), key);
}

static const luray_serializer_t *find_serializer(dec_t *d, const char *name, size_t n)
{
    lua_State *L = d->L;
    for (int tries = 0;; tries++) {
        if (lua_isnil(L, d->slot_sers)) {
            lua_rawgetp(L, LUA_REGISTRYINDEX, &k_serializers);
            lua_replace(L, d->slot_sers);
        }
        const luray_serializer_t *ser = NULL;
        if (lua_istable(L, d->slot_sers)) {
            lua_pushlstring(L, name, n);
            lua_rawget(L, d->slot_sers);
            ser = lua_touserdata(L, -1);
            lua_pop(L, 1);
        }
        if (ser || tries > 0 || memchr(name, '\0', n))
            return ser;
        if (lua_rawgetp(L, LUA_REGISTRYINDEX, &k_resolver) != LUA_TUSERDATA) {
            lua_pop(L, 1);
            return NULL;
        }
        luray_ser_resolver_fn fn = *(luray_ser_resolver_fn *)lua_touserdata(L, -1);
        lua_pop(L, 1);
        lua_pushlstring(L, name, n); /* a NUL-terminated copy for the resolver */
        int rc = fn(L, lua_tostring(L, -1));
        lua_pop(L, 1);
        if (rc)
            return NULL;
        lua_pushnil(L); /* the resolver may have created the table: look again */
        lua_replace(L, d->slot_sers);
    }
}

static int dec_ext(dec_t *d, size_t at, int shared)
{
    lua_State *L = d->L;
    size_t nn, hn;
    const char *name = luray_rd_str(&d->rd, &nn);
    const char *hdr = luray_rd_str(&d->rd, &hn);
    uint64_t nbuf = luray_rd_varint(&d->rd);
    if (d->rd.err || nbuf > d->n_oob - d->next_oob)
        return dec_corrupt(d, "bad extension value");
    int shown = (int)(nn > 80 ? 80 : nn);
    if (!lua_checkstack(L, LUA_MINSTACK))
        return dec_fail(d, LURAY_ENOMEM, "cannot decode value: Lua stack overflow");
    const luray_serializer_t *ser = find_serializer(d, name, nn);
    if (!ser)
        return dec_fail(d, LURAY_ESERIALIZE, "cannot decode a value of type \"%.*s\": no "
                        "serializer is registered for it", shown, name);
    luray_ser_reader_t r = {d, hdr, hn, d->oobtab + d->next_oob * OOB_ENTRY_LEN, (size_t)nbuf,
                            NULL};
    d->next_oob += (size_t)nbuf;
    int top = lua_gettop(L);
    int rc = ser->decode(luray_host_api(), L, &r);
    if (rc) {
        lua_settop(L, top);
        return dec_fail(d, rc, "cannot decode a value of type \"%.*s\": %s", shown, name,
                        luray_strerror(rc));
    }
    if (lua_gettop(L) != top + 1) {
        lua_settop(L, top);
        return dec_fail(d, LURAY_EPROTO, "cannot decode a value of type \"%.*s\": its decoder "
                        "did not push exactly one value", shown, name);
    }
    dec_remember(d, at, shared);
    return 0;
}

static int dec_value(dec_t *d)
{
    lua_State *L = d->L;
    size_t at = (size_t)(d->rd.p - d->stream);
    uint8_t tag = luray_rd_u8(&d->rd);
    if (d->rd.err)
        return dec_corrupt(d, "truncated");
    int shared = (tag & TAG_SHARED) != 0;
    tag &= (uint8_t)~TAG_SHARED;
    if (shared && tag != TAG_TABLE && tag != TAG_FUNC && tag != TAG_EXT)
        return dec_corrupt(d, "bad tag");
    switch (tag) {
    case TAG_NIL:
        lua_pushnil(L);
        return 0;
    case TAG_FALSE:
    case TAG_TRUE:
        lua_pushboolean(L, tag == TAG_TRUE);
        return 0;
    case TAG_INT: {
        uint64_t z = luray_rd_varint(&d->rd);
        if (d->rd.err)
            return dec_corrupt(d, "truncated");
        lua_pushinteger(L, (lua_Integer)((z >> 1) ^ (0 - (z & 1))));
        return 0;
    }
    case TAG_FLOAT: {
        double v = luray_rd_f64(&d->rd);
        if (d->rd.err)
            return dec_corrupt(d, "truncated");
        lua_pushnumber(L, (lua_Number)v);
        return 0;
    }
    case TAG_STR: {
        size_t n;
        const char *p = luray_rd_str(&d->rd, &n);
        if (d->rd.err)
            return dec_corrupt(d, "bad string");
        lua_pushlstring(L, p, n);
        return 0;
    }
    case TAG_TABLE:
        return dec_table(d, at, shared);
    case TAG_META: {
        size_t n;
        const char *name = luray_rd_str(&d->rd, &n);
        if (d->rd.err || n == 0 || n > 200 || luray_rd_left(&d->rd) == 0 ||
            ((*d->rd.p & (uint8_t)~TAG_SHARED) != TAG_TABLE && *d->rd.p != TAG_REF))
            return dec_corrupt(d, "bad metatable name");
        int rc = dec_value(d);
        if (rc)
            return rc;
        if (!lua_istable(L, -1))
            return dec_corrupt(d, "metatable on a non-table");
        if (push_named_metatable(L, name, n)) {
            lua_setmetatable(L, -2);
            return 0;
        }
        return dec_fail(d, LURAY_ESERIALIZE, "no metatable named \"%.*s\" in this process",
                        (int)n, name);
    }
    case TAG_FUNC:
        return dec_func(d, at, shared);
    case TAG_EXT:
        return dec_ext(d, at, shared);
    case TAG_REF: {
        uint64_t off = luray_rd_varint(&d->rd);
        if (d->rd.err || off >= at || lua_isnil(L, d->slot_refs))
            return dec_corrupt(d, "bad back-reference");
        if (lua_rawgeti(L, d->slot_refs, (lua_Integer)off) == LUA_TNIL) {
            lua_pop(L, 1);
            return dec_corrupt(d, "bad back-reference");
        }
        return 0;
    }
    case TAG_MODULE: {
        size_t n;
        const char *name = luray_rd_str(&d->rd, &n);
        if (d->rd.err)
            return dec_corrupt(d, "bad module name");
        return dec_require(d, name, n);
    }
    case TAG_CFUNC:
        return dec_cfunc(d);
    case TAG_GLOBALS:
        lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
        return 0;
    default:
        return dec_corrupt(d, "unknown tag");
    }
}

/* Runs protected. Arguments: the dec_t, the keeper (or nil). Returns the decoded values. */
static int dec_main(lua_State *L)
{
    dec_t *d = lua_touserdata(L, 1);
    lua_settop(L, 6);
    if (d->keeper)
        d->keeper = 2;
    d->slot_refs = 3;
    d->slot_copy = 4;
    d->slot_sers = 5;
    d->slot_loaded = 6;
    uint64_t count = luray_rd_varint(&d->rd);
    if (d->rd.err || count > luray_rd_left(&d->rd) || count > INT32_MAX - 16) {
        dec_corrupt(d, "bad value count");
        return 0;
    }
    if (!lua_checkstack(L, (int)count + 8)) {
        dec_fail(d, LURAY_EPROTO, "cannot decode value: too many values (%llu)",
                 (unsigned long long)count);
        return 0;
    }
    for (uint64_t i = 0; i < count; i++)
        if (dec_value(d))
            return 0;
    if (luray_rd_left(&d->rd)) {
        dec_corrupt(d, "trailing bytes");
        return 0;
    }
    return (int)count;
}

int luray_ser_check(const void *blob, size_t len)
{
    if (!blob || len < HEADER_LEN)
        return LURAY_EPROTO;
    luray_rd_t r;
    luray_rd_init(&r, blob, len);
    uint32_t magic = luray_rd_u32(&r);
    uint64_t n_oob = luray_rd_u32(&r);
    uint64_t stream_len = luray_rd_u64(&r);
    if (magic != LURAY_BLOB_MAGIC || n_oob > (len - HEADER_LEN) / OOB_ENTRY_LEN)
        return LURAY_EPROTO;
    uint64_t end = HEADER_LEN + n_oob * OOB_ENTRY_LEN;
    if (stream_len > len - end)
        return LURAY_EPROTO;
    end += stream_len;
    /* Buffers lie in order after the stream without overlapping: a copy of them all is then
     * never larger than the blob. */
    for (uint64_t i = 0; i < n_oob; i++) {
        uint64_t off = luray_rd_u64(&r);
        uint64_t blen = luray_rd_u64(&r);
        if (off % LURAY_BLOB_ALIGN || off < end || off > len || blen > len - off)
            return LURAY_EPROTO;
        end = off + blen;
    }
    return 0;
}

int luray_ser_decode(lua_State *L, const void *blob, size_t len, int keeper_idx, char *err,
                     size_t errlen)
{
    char scratch[1];
    if (!err || !errlen) {
        err = scratch;
        errlen = sizeof scratch;
    }
    err[0] = '\0';
    if (luray_ser_check(blob, len)) {
        snprintf(err, errlen, "malformed object blob: bad header");
        return LURAY_EPROTO;
    }
    const uint8_t *b = blob;
    luray_rd_t hr;
    luray_rd_init(&hr, b, HEADER_LEN);
    (void)luray_rd_u32(&hr);
    size_t n_oob = luray_rd_u32(&hr);
    size_t stream_len = (size_t)luray_rd_u64(&hr);
    dec_t d;
    d.L = L;
    d.blob = b;
    d.oobtab = b + HEADER_LEN;
    d.n_oob = n_oob;
    d.next_oob = 0;
    d.stream = b + HEADER_LEN + n_oob * OOB_ENTRY_LEN;
    luray_rd_init(&d.rd, d.stream, stream_len);
    d.keeper = keeper_idx != 0;
    d.depth = 0;
    d.allow_bc = -1;
    d.rc = 0;
    d.err = err;
    d.errlen = errlen;
    if (keeper_idx)
        keeper_idx = lua_absindex(L, keeper_idx);
    if (!lua_checkstack(L, 3)) {
        snprintf(err, errlen, "cannot decode value: Lua stack overflow");
        return LURAY_ENOMEM;
    }
    int base = lua_gettop(L);
    lua_pushcfunction(L, dec_main);
    lua_pushlightuserdata(L, &d);
    if (keeper_idx)
        lua_pushvalue(L, keeper_idx);
    else
        lua_pushnil(L);
    int st = lua_pcall(L, 2, LUA_MULTRET, 0);
    if (st != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        if (!d.rc)
            snprintf(err, errlen, "cannot decode value: %s",
                     msg ? msg : "error object is not a string");
        lua_settop(L, base);
        return st == LUA_ERRMEM ? LURAY_ENOMEM : d.rc ? d.rc : LURAY_ESERIALIZE;
    }
    if (d.rc) {
        lua_settop(L, base);
        return d.rc;
    }
    return lua_gettop(L) - base;
}

/* ---- extension reader (host API) ---- */

const void *luray_ser_reader_header(luray_ser_reader_t *r, size_t *len)
{
    if (len)
        *len = r->hdrlen;
    return r->hdr;
}

size_t luray_ser_reader_buffer_count(luray_ser_reader_t *r) { return r->nbuf; }

/* Without a keeper the blob dies with the call, so the value's buffers are copied (once, into
 * one "luray.Bytes" userdata) and that userdata becomes the keeper. */
static bytes_t *reader_copy(luray_ser_reader_t *r)
{
    if (r->copy)
        return r->copy;
    lua_State *L = r->d->L;
    if (!lua_checkstack(L, 3))
        return NULL;
    size_t total = 0;
    for (size_t i = 0; i < r->nbuf; i++) {
        size_t off, len;
        oob_entry(r->tab + i * OOB_ENTRY_LEN, &off, &len);
        total = align_up(total) + len;
    }
    size_t size = sizeof(bytes_t) + 2 * r->nbuf * sizeof(size_t) + LURAY_BLOB_ALIGN + total;
    bytes_t *b = lua_newuserdatauv(L, size, 0);
    b->nbuf = r->nbuf;
    b->total = total;
    size_t *offs = (size_t *)(b + 1), *lens = offs + r->nbuf;
    uint8_t *base = bytes_base(b);
    size_t pos = 0;
    for (size_t i = 0; i < r->nbuf; i++) {
        size_t off, len;
        oob_entry(r->tab + i * OOB_ENTRY_LEN, &off, &len);
        pos = align_up(pos);
        offs[i] = pos;
        lens[i] = len;
        if (len)
            memcpy(base + pos, r->d->blob + off, len);
        pos += len;
    }
    if (luaL_newmetatable(L, BYTES_MT)) {
        lua_pushcfunction(L, l_bytes_len);
        lua_setfield(L, -2, "__len");
    }
    lua_setmetatable(L, -2);
    lua_replace(L, r->d->slot_copy);
    r->copy = b;
    return b;
}

const void *luray_ser_reader_buffer(luray_ser_reader_t *r, size_t i, size_t *len)
{
    if (i >= r->nbuf) {
        if (len)
            *len = 0;
        return NULL;
    }
    size_t off, n;
    oob_entry(r->tab + i * OOB_ENTRY_LEN, &off, &n);
    if (len)
        *len = n;
    if (r->d->keeper)
        return r->d->blob + off;
    bytes_t *b = reader_copy(r);
    if (!b) {
        if (len)
            *len = 0;
        return NULL;
    }
    return bytes_base(b) + ((size_t *)(b + 1))[i];
}

void luray_ser_reader_push_keeper(lua_State *L, luray_ser_reader_t *r)
{
    if (r->d->keeper) {
        lua_pushvalue(L, r->d->keeper);
        return;
    }
    if (reader_copy(r))
        lua_pushvalue(L, r->d->slot_copy);
    else
        lua_pushnil(L);
}

/* ---- per-state settings ---- */

int luray_ser_register(lua_State *L, const luray_serializer_t *ser)
{
    if (!L || !ser || !ser->type_name || !ser->encode || !ser->decode)
        return LURAY_EINVAL;
    if (!lua_checkstack(L, 3))
        return LURAY_ENOMEM;
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &k_serializers) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &k_serializers);
    }
    lua_pushlightuserdata(L, (void *)ser);
    lua_setfield(L, -2, ser->type_name);
    lua_pop(L, 1);
    return 0;
}

void luray_ser_set_resolver(lua_State *L, luray_ser_resolver_fn fn)
{
    if (fn) {
        luray_ser_resolver_fn *box = lua_newuserdatauv(L, sizeof *box, 0);
        *box = fn;
    } else {
        lua_pushnil(L);
    }
    lua_rawsetp(L, LUA_REGISTRYINDEX, &k_resolver);
}

void luray_ser_set_allow_bytecode(lua_State *L, int allow)
{
    if (allow)
        lua_pushnil(L);
    else
        lua_pushboolean(L, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &k_nobytecode);
}

/* ---- host API ---- */

void luray_host_api_fill_ser(luray_host_api_t *api)
{
    api->register_serializer = luray_ser_register;
    api->ser_write = luray_ser_writer_write;
    api->ser_write_buffer = luray_ser_writer_buffer;
    api->ser_header = luray_ser_reader_header;
    api->ser_buffer_count = luray_ser_reader_buffer_count;
    api->ser_buffer = luray_ser_reader_buffer;
    api->ser_push_keeper = luray_ser_reader_push_keeper;
}


void luray_ser_register_metatable(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    if (lua_getfield(L, LUA_REGISTRYINDEX, LURAY_SER_METATABLES) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, LURAY_SER_METATABLES);
    }
    lua_getfield(L, idx, "__name");
    lua_pushvalue(L, idx);
    lua_settable(L, -3);
    lua_pop(L, 1);
}
