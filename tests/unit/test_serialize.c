/* Unit tests of core/serialize.c: round trips between two Lua states, sharing and cycles,
 * functions, modules, extension types with out-of-band buffers, error paths, corrupt blobs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "errors.h"
#include "serialize.h"

/* ---- a test extension type: a vector of doubles whose data travels out of band ---- */

#define VEC_MT "test.Vec"

typedef struct {
    const double *data;
    size_t n;
    double *owned;
} vec_t;

static int vec_gc(lua_State *L)
{
    vec_t *v = luaL_checkudata(L, 1, VEC_MT);
    free(v->owned);
    v->owned = NULL;
    return 0;
}

static vec_t *vec_push(lua_State *L)
{
    vec_t *v = lua_newuserdatauv(L, sizeof *v, 1);
    memset(v, 0, sizeof *v);
    if (luaL_newmetatable(L, VEC_MT)) {
        lua_pushcfunction(L, vec_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return v;
}

static int l_vec_new(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    vec_t *v = vec_push(L);
    v->owned = malloc((size_t)n * sizeof(double) + 1);
    for (lua_Integer i = 0; i < n; i++)
        v->owned[i] = (double)i * 0.5;
    v->data = v->owned;
    v->n = (size_t)n;
    return 1;
}

static int l_vec_get(lua_State *L)
{
    vec_t *v = luaL_checkudata(L, 1, VEC_MT);
    lua_Integer i = luaL_checkinteger(L, 2);
    luaL_argcheck(L, i >= 1 && (size_t)i <= v->n, 2, "out of range");
    lua_pushnumber(L, v->data[i - 1]);
    return 1;
}

static int l_vec_addr(lua_State *L)
{
    vec_t *v = luaL_checkudata(L, 1, VEC_MT);
    lua_pushinteger(L, (lua_Integer)(uintptr_t)v->data);
    return 1;
}

static int vec_encode(const luray_host_api_t *host, lua_State *L, int idx, luray_ser_writer_t *w)
{
    vec_t *v = lua_touserdata(L, idx);
    uint64_t n = v->n;
    int rc = host->ser_write(w, "VEC1", 4);
    if (!rc)
        rc = host->ser_write(w, &n, sizeof n);
    if (!rc)
        rc = luray_ser_writer_ref(w, (luray_oid_t){7, 8, n});
    if (!rc)
        rc = host->ser_write_buffer(w, v->data, v->n * sizeof(double));
    return rc;
}

static int vec_decode(const luray_host_api_t *host, lua_State *L, luray_ser_reader_t *r)
{
    size_t hl, bl;
    const uint8_t *h = host->ser_header(r, &hl);
    if (hl != 12 || memcmp(h, "VEC1", 4) || host->ser_buffer_count(r) != 1)
        return LURAY_EPROTO;
    uint64_t n;
    memcpy(&n, h + 4, sizeof n);
    const void *buf = host->ser_buffer(r, 0, &bl);
    if (!buf || n > bl / sizeof(double) || bl != n * sizeof(double))
        return LURAY_EPROTO;
    vec_t *v = vec_push(L);
    v->data = buf;
    v->n = (size_t)n;
    host->ser_push_keeper(L, r);
    lua_setiuservalue(L, -2, 1);
    return 0;
}

static const luray_serializer_t vec_ser = {VEC_MT, vec_encode, vec_decode};

/* ---- helpers ---- */

static int l_plain_cfunc(lua_State *L) { return lua_gettop(L); }

static const char deepeq_src[] =
    "function deepeq(a, b, m, r)\n"
    "  m = m or {}; r = r or {}\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) == 'number' then\n"
    "    if math.type(a) ~= math.type(b) then return false end\n"
    "    if a ~= a then return b ~= b end\n"
    "    if a == 0 and math.type(a) == 'float' then return 1/a == 1/b end\n"
    "    return a == b\n"
    "  end\n"
    "  if type(a) ~= 'table' then return a == b end\n"
    "  if m[a] ~= nil or r[b] ~= nil then return m[a] == b and r[b] == a end\n"
    "  m[a] = b; r[b] = a\n"
    "  for k, v in pairs(a) do if not deepeq(v, rawget(b, k), m, r) then return false end end\n"
    "  for k in pairs(b) do if rawget(a, k) == nil then return false end end\n"
    "  return true\n"
    "end\n"
    "function gen(seed)\n"
    "  math.randomseed(seed)\n"
    "  local pool = {}\n"
    "  local function val(d)\n"
    "    local r = math.random(1, d > 4 and 8 or 11)\n"
    "    if r == 1 then return math.random(-1000, 1000)\n"
    "    elseif r == 2 then return math.random() * 1e6 - 5e5\n"
    "    elseif r == 3 then\n"
    "      local t = {}\n"
    "      for i = 1, math.random(0, 20) do t[i] = string.char(math.random(0, 255)) end\n"
    "      return table.concat(t)\n"
    "    elseif r == 4 then return math.random(2) == 1\n"
    "    elseif r == 5 then\n"
    "      local s = {math.mininteger, math.maxinteger, 0/0, -0.0, 1/0, -1/0, 3.0, 1 << 40}\n"
    "      return s[math.random(#s)]\n"
    "    elseif r == 6 then return string.rep('x', math.random(100, 400))\n"
    "    elseif r <= 8 then\n"
    "      if #pool > 0 then return pool[math.random(#pool)] end\n"
    "      return 0.5\n"
    "    else\n"
    "      local t = {}\n"
    "      pool[#pool + 1] = t\n"
    "      for i = 1, math.random(0, 6) do t[i] = val(d + 1) end\n"
    "      for i = 1, math.random(0, 5) do\n"
    "        local kt, k = math.random(3)\n"
    "        if kt == 1 then k = 's' .. math.random(100)\n"
    "        elseif kt == 2 then k = math.random(-50, 50)\n"
    "        else k = math.random() end\n"
    "        t[k] = val(d + 1)\n"
    "      end\n"
    "      return t\n"
    "    end\n"
    "  end\n"
    "  return val(0)\n"
    "end\n";

static lua_State *new_state(void)
{
    lua_State *L = luaL_newstate();
    assert_non_null(L);
    luaL_openlibs(L);
    lua_register(L, "vec_new", l_vec_new);
    lua_register(L, "vec_get", l_vec_get);
    lua_register(L, "vec_addr", l_vec_addr);
    assert_int_equal(luray_ser_register(L, &vec_ser), 0);
    assert_int_equal(luaL_dostring(L, deepeq_src), LUA_OK);
    return L;
}

/* Runs a chunk that must succeed, leaving its results on the stack. */
static void run(lua_State *L, const char *code, int nres)
{
    if (luaL_loadbuffer(L, code, strlen(code), "=t.lua") != LUA_OK ||
        lua_pcall(L, 0, nres, 0) != LUA_OK) {
        fail_msg("Lua error: %s\n(code: %s)", lua_tostring(L, -1), code);
    }
}

/* Runs a chunk of assertions with the decoded values in global table `v`. */
static void check(lua_State *L, const char *code)
{
    run(L, code, 0);
}

typedef struct {
    uint8_t *blob;
    size_t len;
} blob_t;

/* Encodes the top n values of L (left in place) into a 64-byte aligned blob. */
static int encode_top(lua_State *L, int n, const char *what, blob_t *out, luray_ser_t *s)
{
    int top = lua_gettop(L);
    int rc = luray_ser_encode(L, top - n + 1, n, what, s);
    assert_int_equal(lua_gettop(L), top);
    if (rc)
        return rc;
    out->len = luray_ser_blob_size(s);
    out->blob = aligned_alloc(LURAY_BLOB_ALIGN, (out->len + 63) & ~(size_t)63);
    assert_non_null(out->blob);
    luray_ser_write(s, out->blob);
    assert_int_equal(luray_ser_check(out->blob, out->len), 0);
    return 0;
}

static blob_t encode_ok(lua_State *L, int n)
{
    luray_ser_t s;
    blob_t b;
    luray_ser_init(&s);
    int rc = encode_top(L, n, "argument", &b, &s);
    if (rc)
        fail_msg("encode failed: %d %s", rc, s.err);
    luray_ser_close(&s);
    return b;
}

/* Decodes a blob into L2 and stores the values as global table v (v.n = count). */
static int decode_into(lua_State *L2, blob_t b, int keeper)
{
    char err[256];
    int top = lua_gettop(L2);
    if (keeper)
        lua_pushlightuserdata(L2, b.blob);
    int n = luray_ser_decode(L2, b.blob, b.len, keeper ? -1 : 0, err, sizeof err);
    if (n < 0)
        fail_msg("decode failed: %d %s", n, err);
    assert_int_equal(lua_gettop(L2), top + (keeper ? 1 : 0) + n);
    lua_createtable(L2, n, 1);
    lua_insert(L2, -n - 1);
    for (int i = n; i >= 1; i--)
        lua_rawseti(L2, -i - 1, i);
    lua_pushinteger(L2, n);
    lua_setfield(L2, -2, "n");
    lua_setglobal(L2, "v");
    lua_settop(L2, top);
    return n;
}

/* Round trip of the values a chunk returns, from a fresh state to another fresh one. */
static lua_State *roundtrip(const char *code, int nvals)
{
    lua_State *L1 = new_state(), *L2 = new_state();
    run(L1, code, nvals);
    blob_t b = encode_ok(L1, nvals);
    assert_int_equal(decode_into(L2, b, 0), nvals);
    memset(b.blob, 0xAB, b.len); /* no decoded value may point into the blob */
    free(b.blob);
    lua_close(L1);
    return L2;
}

/* ---- tests ---- */

static void test_scalars(void **state)
{
    (void)state;
    lua_State *L = roundtrip("return nil, true, false, 3, 3.0, 0/0, 1/0, -1/0, -0.0, "
                             "math.mininteger, math.maxinteger, -1, 300, 2.5e-300, "
                             "'a\\0b\\0', '', string.rep('\\255\\0', 50000)",
                             17);
    check(L, "assert(v.n == 17 and v[1] == nil and v[2] == true and v[3] == false)\n"
             "assert(math.type(v[4]) == 'integer' and v[4] == 3)\n"
             "assert(math.type(v[5]) == 'float' and v[5] == 3.0)\n"
             "assert(v[6] ~= v[6] and v[7] == math.huge and v[8] == -math.huge)\n"
             "assert(v[9] == 0 and 1/v[9] == -math.huge and math.type(v[9]) == 'float')\n"
             "assert(v[10] == math.mininteger and v[11] == math.maxinteger)\n"
             "assert(v[12] == -1 and v[13] == 300 and v[14] == 2.5e-300)\n"
             "assert(v[15] == 'a\\0b\\0' and #v[15] == 4 and v[16] == '')\n"
             "assert(v[17] == string.rep('\\255\\0', 50000))\n");
    lua_close(L);
}

static void test_no_values_and_trailing_nils(void **state)
{
    (void)state;
    lua_State *L1 = new_state(), *L2 = new_state();
    blob_t b = encode_ok(L1, 0);
    assert_int_equal(decode_into(L2, b, 0), 0);
    free(b.blob);
    lua_pushinteger(L1, 1);
    lua_pushnil(L1);
    lua_pushnil(L1);
    b = encode_ok(L1, 3);
    assert_int_equal(decode_into(L2, b, 0), 3);
    check(L2, "assert(v[1] == 1 and v[2] == nil and v[3] == nil and v.n == 3)");
    free(b.blob);
    lua_close(L1);
    lua_close(L2);
}

static void test_tables(void **state)
{
    (void)state;
    lua_State *L = roundtrip(
        "local t = {1, 2, nil, 4, x = 'y', [true] = 'T', [2.5] = 'f', [-1] = 'neg', [0] = 'z'}\n"
        "t[{k = 1}] = 'tablekey'\n"
        "t.self = t\n"
        "local s = {shared = true}\n"
        "t.a, t.b, t[10] = s, s, s\n"
        "setmetatable(t, {__index = function() return 'meta' end})\n"
        "local deep = {}\n"
        "local cur = deep\n"
        "for i = 1, 150 do cur.next = {}; cur = cur.next end\n"
        "return t, s, deep",
        3);
    check(L, "local t, s = v[1], v[2]\n"
             "assert(t[1] == 1 and t[2] == 2 and t[3] == nil and t[4] == 4)\n"
             "assert(t.x == 'y' and t[true] == 'T' and t[2.5] == 'f' and t[-1] == 'neg')\n"
             "assert(t[0] == 'z' and t.self == t)\n"
             "assert(t.a == s and t.b == s and t[10] == s and s.shared)\n"
             "assert(getmetatable(t) == nil and t.missing == nil)\n"
             "local found\n"
             "for k, val in pairs(t) do\n"
             "  if type(k) == 'table' then found = k.k == 1 and val end\n"
             "end\n"
             "assert(found == 'tablekey')\n"
             "local n, cur = 0, v[3]\n"
             "while cur.next do n = n + 1; cur = cur.next end\n"
             "assert(n == 150)\n");
    lua_close(L);
}

static void test_functions(void **state)
{
    (void)state;
    lua_State *L = roundtrip(
        "local k = 10\n"
        "local helper = {mul = 3}\n"
        "local function f(x) return x * helper.mul + k end\n"
        "local function fact(n) if n <= 1 then return 1 end return n * fact(n - 1) end\n"
        "local function glob(s) return string.upper(s) .. tostring(#s) end\n"
        "local function boom()\n"
        "  error('boom')\n"
        "end\n"
        "local function pair() return f, helper end\n"
        "local function getg() return answer end\n"
        "local count = 0\n"
        "local function inc() count = count + 1; return count end\n"
        "local function get() return count end\n"
        "return f, fact, glob, boom, pair, helper, getg, {inc = inc, get = get}",
        8);
    check(L, "assert(v[1](2) == 16)\n"
             "assert(v[2](10) == 3628800)\n"
             "assert(v[3]('abc') == 'ABC3')\n"
             "local ok, err = pcall(v[4])\n"
             "assert(not ok and err:find('t.lua:7: boom', 1, true), err)\n"
             "local f, helper = v[5]()\n"
             "assert(f == v[1] and helper == v[6])\n"
             "helper.mul = 5\n"
             "assert(v[1](2) == 20)\n"
             "-- the function's _ENV is this state's globals\n"
             "answer = 42\n"
             "assert(v[7]() == 42)\n"
             "-- closures over one local still share it\n"
             "assert(v[8].inc() == 1 and v[8].inc() == 2 and v[8].get() == 2)\n"
             "local g = v[3]; string.upper = function() return 'X' end\n"
             "assert(g('q') == 'X1')\n");
    lua_close(L);
}

static int count_resolves;

static int resolver(lua_State *L, const char *type_name)
{
    count_resolves++;
    if (strcmp(type_name, VEC_MT) != 0)
        return LURAY_ENOENT;
    return luray_ser_register(L, &vec_ser);
}

static void test_modules(void **state)
{
    (void)state;
    lua_State *L1 = new_state(), *L2 = new_state();
    check(L2, "package.preload.mymod = function() return {v = 42, where = 'L2'} end");
    run(L1,
        "package.loaded.mymod = {v = 1, where = 'L1'}\n"
        "local m = require('mymod')\n"
        "local function usemod() return m.v, m.where end\n"
        "return string, math.floor, string.format, m, usemod, print, _G",
        7);
    blob_t b = encode_ok(L1, 7);
    assert_int_equal(decode_into(L2, b, 0), 7);
    free(b.blob);
    check(L2, "assert(v[1] == string and v[2] == math.floor and v[3] == string.format)\n"
              "assert(v[2](3.7) == 3 and v[4] == package.loaded.mymod and v[4].where == 'L2')\n"
              "local a, where = v[5]()\n"
              "assert(a == 42 and where == 'L2')\n"
              "assert(v[6] == print and v[7] == _G)\n");
    lua_settop(L1, 0);

    /* A module loaded after the reverse map was built is still found... */
    run(L1, "package.loaded.late = {late = true}; return package.loaded.late", 1);
    check(L2, "package.loaded.late = {in_l2 = true}; late_cfunc = function() end");
    b = encode_ok(L1, 1);
    assert_int_equal(decode_into(L2, b, 0), 1);
    free(b.blob);
    check(L2, "assert(v[1] == package.loaded.late and v[1].in_l2)");
    /* ...and so is a C function added later to a known module (_G). */
    lua_pushcfunction(L1, l_plain_cfunc);
    lua_setglobal(L1, "late_cfunc");
    lua_getglobal(L1, "late_cfunc");
    b = encode_ok(L1, 1);
    assert_int_equal(decode_into(L2, b, 0), 1);
    free(b.blob);
    check(L2, "assert(v[1] == late_cfunc)");
    lua_settop(L1, 0);

    /* A module the decoding state cannot require: a clean error naming it. */
    run(L1, "package.loaded.only_l1 = {} return 1, {m = package.loaded.only_l1}", 2);
    b = encode_ok(L1, 2);
    char err[512];
    assert_int_equal(luray_ser_decode(L2, b.blob, b.len, 0, err, sizeof err), LURAY_ESERIALIZE);
    assert_non_null(strstr(err, "only_l1"));
    assert_int_equal(lua_gettop(L2), 0);
    free(b.blob);
    lua_close(L1);
    lua_close(L2);
}

static void test_extension(void **state)
{
    (void)state;
    lua_State *L1 = new_state(), *L2 = new_state();
    run(L1, "local a, b = vec_new(1000), vec_new(3)\nreturn {a, b, a, {inner = b}}", 1);
    luray_ser_t s;
    blob_t b;
    luray_ser_init(&s);
    assert_int_equal(encode_top(L1, 1, "value", &b, &s), 0);
    assert_int_equal(s.n_oob, 2); /* shared values are written once */
    assert_int_equal(s.n_refs, 2);
    assert_int_equal(s.refs[0].seq, 1000);
    assert_int_equal(s.refs[1].node, 7);
    luray_ser_close(&s);

    /* With a keeper: views into the blob, 64-byte aligned, kept alive by the keeper. */
    assert_int_equal(decode_into(L2, b, 1), 1);
    lua_pushinteger(L2, (lua_Integer)(uintptr_t)b.blob);
    lua_setglobal(L2, "blob_lo");
    lua_pushinteger(L2, (lua_Integer)(uintptr_t)(b.blob + b.len));
    lua_setglobal(L2, "blob_hi");
    check(L2, "local t = v[1]\n"
              "assert(t[1] == t[3] and t[2] == t[4].inner and t[1] ~= t[2])\n"
              "assert(vec_get(t[1], 1000) == 999 * 0.5 and vec_get(t[2], 3) == 1.0)\n"
              "for _, x in ipairs{t[1], t[2]} do\n"
              "  local a = vec_addr(x)\n"
              "  assert(a >= blob_lo and a < blob_hi, 'not zero-copy')\n"
              "  assert(a % 64 == 0, 'not aligned')\n"
              "end\n"
              "assert(type(debug.getuservalue(t[1])) == 'userdata')\n");

    /* Without a keeper: copies owned by a luray.Bytes, still aligned, alive after the blob. */
    assert_int_equal(decode_into(L2, b, 0), 1);
    memset(b.blob, 0xAB, b.len);
    check(L2, "local t = v[1]\n"
              "collectgarbage()\n"
              "assert(t[1] == t[3] and vec_get(t[1], 1000) == 999 * 0.5)\n"
              "for _, x in ipairs{t[1], t[2]} do\n"
              "  local a = vec_addr(x)\n"
              "  assert(a < blob_lo or a >= blob_hi, 'copy expected')\n"
              "  assert(a % 64 == 0, 'not aligned')\n"
              "  local keeper = debug.getuservalue(x)\n"
              "  assert(getmetatable(keeper).__name == 'luray.Bytes' and #keeper >= 24)\n"
              "end\n");
    free(b.blob);

    /* A state that knows no such type: an error naming it, then the resolver registers it. */
    lua_State *L3 = luaL_newstate();
    luaL_openlibs(L3);
    run(L1, "return vec_new(4)", 1);
    b = encode_ok(L1, 1);
    char err[256];
    assert_int_equal(luray_ser_decode(L3, b.blob, b.len, 0, err, sizeof err), LURAY_ESERIALIZE);
    assert_non_null(strstr(err, "\"test.Vec\""));
    assert_int_equal(lua_gettop(L3), 0);
    count_resolves = 0;
    luray_ser_set_resolver(L3, resolver);
    assert_int_equal(luray_ser_decode(L3, b.blob, b.len, 0, err, sizeof err), 1);
    assert_int_equal(count_resolves, 1);
    assert_string_equal(luaL_typename(L3, -1), "userdata");
    free(b.blob);
    lua_close(L3);
    lua_close(L1);
    lua_close(L2);
}

static void test_host_api_default(void **state)
{
    (void)state;
    const luray_host_api_t *api = luray_host_api();
    assert_int_equal(api->abi, LURAY_PLUGIN_ABI);
    assert_true(api->ser_write == luray_ser_writer_write);
    assert_true(api->ser_buffer == luray_ser_reader_buffer);
    assert_true(api->register_serializer == luray_ser_register);
    luray_host_api_t t;
    memset(&t, 0, sizeof t);
    luray_host_api_fill_ser(&t);
    assert_true(t.ser_push_keeper == luray_ser_reader_push_keeper);
    assert_true(t.ser_header == luray_ser_reader_header);
}

/* Encodes the values a chunk returns, expecting failure with exactly this message. */
static void expect_error(lua_State *L, const char *code, int n, int rc, const char *msg)
{
    run(L, code, n);
    int top = lua_gettop(L);
    luray_ser_t s;
    luray_ser_init(&s);
    assert_int_equal(luray_ser_encode(L, top - n + 1, n, "argument", &s), rc);
    assert_int_equal(lua_gettop(L), top);
    if (strstr(s.err, msg) == NULL)
        fail_msg("error \"%s\" lacks \"%s\"", s.err, msg);
    luray_ser_close(&s);
    lua_settop(L, 0);
}

static void test_errors(void **state)
{
    (void)state;
    lua_State *L = new_state();
    expect_error(L, "return 1, {conn = io.stdout}", 2, LURAY_ESERIALIZE,
                 "cannot serialize argument 2: field \"conn\" is a userdata (FILE*)");
    expect_error(L, "return {a = {1, coroutine.create(print)}}", 1, LURAY_ESERIALIZE,
                 "cannot serialize argument 1: field \"a\"[2] is a thread");
    expect_error(L,
                 "local co = coroutine.create(print)\n"
                 "return {f = function() return co end}",
                 1, LURAY_ESERIALIZE,
                 "cannot serialize argument 1: field \"f\": upvalue \"co\" of function is a "
                 "thread");
    expect_error(L, "return coroutine.running()", 1, LURAY_ESERIALIZE,
                 "cannot serialize argument 1: a thread");
    expect_error(L, "return {[coroutine.create(print)] = 1}", 1, LURAY_ESERIALIZE,
                 "argument 1: table key is a thread");
    expect_error(L, "local t = {} for i = 1, 300 do t = {t} end return t", 1, LURAY_ESERIALIZE,
                 "nested too deeply");
    expect_error(L, "return setmetatable({}, {__name = 'x'}), io.stderr", 2,
                 LURAY_ESERIALIZE, "argument 2: a userdata (FILE*)");

    lua_pushlightuserdata(L, L);
    luray_ser_t s;
    luray_ser_init(&s);
    assert_int_equal(luray_ser_encode(L, 1, 1, "return value", &s), LURAY_ESERIALIZE);
    assert_string_equal(s.err, "cannot serialize return value 1: a light userdata");
    luray_ser_close(&s);
    lua_settop(L, 0);

    lua_pushcfunction(L, l_plain_cfunc);
    luray_ser_init(&s);
    assert_int_equal(luray_ser_encode(L, 1, 1, "argument", &s), LURAY_ESERIALIZE);
    assert_non_null(strstr(s.err, "a C function that is not a field of a loaded module"));
    luray_ser_close(&s);
    lua_settop(L, 0);

    /* Bytecode refused when disallowed. */
    lua_State *L2 = new_state();
    run(L, "return function() return 1 end", 1);
    blob_t b = encode_ok(L, 1);
    luray_ser_set_allow_bytecode(L2, 0);
    char err[256];
    assert_int_equal(luray_ser_decode(L2, b.blob, b.len, 0, err, sizeof err), LURAY_EPROTO);
    assert_non_null(strstr(err, "bytecode"));
    luray_ser_set_allow_bytecode(L2, 1);
    assert_int_equal(luray_ser_decode(L2, b.blob, b.len, 0, err, sizeof err), 1);
    free(b.blob);
    lua_close(L2);
    lua_close(L);
}

/* Every strict prefix of the stream, and every prefix of the blob, fails cleanly. */
static void check_truncations(lua_State *L2, const blob_t *b)
{
    char err[256];
    uint8_t *copy = aligned_alloc(64, (b->len + 63) & ~(size_t)63);
    for (size_t k = 0; k < b->len; k++) {
        memcpy(copy, b->blob, k);
        assert_true(luray_ser_decode(L2, copy, k, 0, err, sizeof err) < 0);
        assert_int_equal(lua_gettop(L2), 0);
    }
    uint32_t n_oob;
    uint64_t stream_len;
    memcpy(&n_oob, b->blob + 4, 4);
    memcpy(&stream_len, b->blob + 8, 8);
    if (n_oob == 0) {
        for (uint64_t k = 0; k < stream_len; k++) {
            memcpy(copy, b->blob, 16 + k);
            memcpy(copy + 8, &k, 8);
            int rc = luray_ser_decode(L2, copy, 16 + k, 0, err, sizeof err);
            if (rc >= 0)
                fail_msg("stream prefix %llu decoded", (unsigned long long)k);
            assert_int_equal(lua_gettop(L2), 0);
        }
    }
    free(copy);
}

static void flip_bytes(lua_State *L2, const blob_t *b, unsigned seed, int rounds)
{
    char err[256];
    uint8_t *copy = aligned_alloc(64, (b->len + 63) & ~(size_t)63);
    srand(seed);
    for (int round = 0; round < rounds; round++) {
        memcpy(copy, b->blob, b->len);
        int flips = 1 + rand() % 4;
        for (int i = 0; i < flips; i++)
            copy[(size_t)rand() % b->len] ^= (uint8_t)(1 + rand() % 255);
        int keeper = round % 2;
        if (keeper)
            lua_pushboolean(L2, 1);
        int rc = luray_ser_decode(L2, copy, b->len, keeper ? -1 : 0, err, sizeof err);
        if (rc < 0) {
            assert_true(err[0] != '\0');
            assert_int_equal(lua_gettop(L2), keeper);
        }
        lua_settop(L2, 0);
    }
    free(copy);
}

static void test_corrupt(void **state)
{
    (void)state;
    lua_State *L1 = new_state(), *L2 = new_state();
    run(L1,
        "local s = {1, 2.5, 'str\\0'}\n"
        "local t = {s, s, x = {y = {z = true}}, [false] = -7, big = 1 << 50}\n"
        "t.t = t\n"
        "return t, string, math.floor, 'tail'",
        4);
    blob_t b = encode_ok(L1, 4);
    lua_settop(L1, 0);
    check_truncations(L2, &b);
    flip_bytes(L2, &b, 1, 3000);
    free(b.blob);

    /* With an extension value and out-of-band buffers. */
    run(L1, "local a = vec_new(20) return {a, a, vec_new(2)}", 1);
    b = encode_ok(L1, 1);
    lua_settop(L1, 0);
    check_truncations(L2, &b);
    flip_bytes(L2, &b, 2, 3000);
    free(b.blob);

    /* With functions: bytecode is trusted, so only refused-bytecode decoding is fuzzed. */
    run(L1, "local u = {1} return function() return u end", 1);
    b = encode_ok(L1, 1);
    lua_settop(L1, 0);
    luray_ser_set_allow_bytecode(L2, 0);
    check_truncations(L2, &b);
    flip_bytes(L2, &b, 3, 2000);
    luray_ser_set_allow_bytecode(L2, 1);
    free(b.blob);

    /* Hand-made streams: bad back-reference, unknown tag, NaN key, deep nesting. */
    static const uint8_t bad[][8] = {
        {1, 9, 0},             /* REF to offset 0 */
        {1, 0x55},             /* unknown tag */
        {1, 0x81},             /* shared flag on a boolean */
        {1, 6, 0, 1, 4, 0, 0, 0}, /* {[nil-ish float NaN]} truncated */
    };
    char err[256];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t blob[64] = {0x4c, 0x52, 0x4f, 0x31};
        uint64_t n = 8;
        memcpy(blob + 8, &n, 8);
        memcpy(blob + 16, bad[i], 8);
        assert_true(luray_ser_decode(L2, blob, 24, 0, err, sizeof err) < 0);
        assert_int_equal(lua_gettop(L2), 0);
    }
    /* NaN table key. */
    {
        uint8_t blob[64] = {0x4c, 0x52, 0x4f, 0x31};
        uint8_t st[] = {1, 6, 0, 1, 4, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f, 2};
        uint64_t n = sizeof st;
        memcpy(blob + 8, &n, 8);
        memcpy(blob + 16, st, sizeof st);
        assert_int_equal(luray_ser_decode(L2, blob, 16 + sizeof st, 0, err, sizeof err),
                         LURAY_EPROTO);
        st[4] = 3; /* the key becomes an integer: now valid */
        memcpy(blob + 16, st, sizeof st);
        /* integer 0 then the bytes after read as values: trailing garbage, still refused */
        assert_true(luray_ser_decode(L2, blob, 16 + sizeof st, 0, err, sizeof err) < 0);
        assert_int_equal(lua_gettop(L2), 0);
    }
    /* 300 nested tables: refused by depth, not the C stack. */
    {
        size_t len = 16 + 1 + 300 * 3 + 1;
        uint8_t *blob = calloc(1, len);
        memcpy(blob, "LRO1", 4);
        uint64_t n = len - 16;
        memcpy(blob + 8, &n, 8);
        uint8_t *p = blob + 16;
        *p++ = 1;
        for (int i = 0; i < 300; i++) {
            *p++ = 6;
            *p++ = 1;
            *p++ = 0;
        }
        *p++ = 0;
        assert_int_equal(luray_ser_decode(L2, blob, len, 0, err, sizeof err), LURAY_EPROTO);
        assert_non_null(strstr(err, "nested"));
        free(blob);
    }
    /* Bad header: wrong magic, unaligned or overlapping buffers. */
    {
        uint8_t blob[256] = {0x4c, 0x52, 0x4f, 0x31, 1};
        uint64_t v = 1;
        memcpy(blob + 8, &v, 8);
        blob[32] = 0;
        v = 64;
        memcpy(blob + 16, &v, 8);
        v = 10;
        memcpy(blob + 24, &v, 8);
        assert_int_equal(luray_ser_check(blob, sizeof blob), 0);
        v = 65;
        memcpy(blob + 16, &v, 8);
        assert_int_equal(luray_ser_check(blob, sizeof blob), LURAY_EPROTO);
        v = 0;
        memcpy(blob + 16, &v, 8);
        assert_int_equal(luray_ser_check(blob, sizeof blob), LURAY_EPROTO);
        v = 192;
        memcpy(blob + 16, &v, 8);
        v = 65;
        memcpy(blob + 24, &v, 8);
        assert_int_equal(luray_ser_check(blob, sizeof blob), LURAY_EPROTO);
        blob[0] = 'X';
        assert_int_equal(luray_ser_check(blob, sizeof blob), LURAY_EPROTO);
    }
    lua_close(L1);
    lua_close(L2);
}

static void test_random_roundtrip(void **state)
{
    (void)state;
    lua_State *L1 = new_state(), *L2 = new_state();
    for (int seed = 1; seed <= 300; seed++) {
        lua_getglobal(L1, "gen");
        lua_pushinteger(L1, seed);
        assert_int_equal(lua_pcall(L1, 1, 1, 0), LUA_OK);
        blob_t b = encode_ok(L1, 1);
        lua_settop(L1, 0);
        assert_int_equal(decode_into(L2, b, seed % 2), 1);
        free(b.blob);
        char code[128];
        snprintf(code, sizeof code, "assert(deepeq(gen(%d), v[1]), 'seed %d')", seed, seed);
        check(L2, code);
    }
    lua_close(L1);
    lua_close(L2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_no_values_and_trailing_nils),
        cmocka_unit_test(test_tables),
        cmocka_unit_test(test_functions),
        cmocka_unit_test(test_modules),
        cmocka_unit_test(test_extension),
        cmocka_unit_test(test_host_api_default),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_random_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
