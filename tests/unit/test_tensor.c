/* Unit tests of the tensor type: the C API (dtypes, buffers, views, element access), the Lua
 * bindings (constructors, methods, errors) and the serializer hooks driven by a fake host. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <lauxlib.h>
#include <lualib.h>

#include "errors.h"
#include "lua_tensor.h"
#include "serialize.h"
#include "tensor.h"

/* ---- C API ---- */

static void test_dtypes(void **state)
{
    (void)state;
    static const char *names[] = {"float32", "float64", "int32", "int64", "uint8", "bool"};
    static const size_t sizes[] = {4, 8, 4, 8, 1, 1};
    int i, d;

    for (i = 0; i < LURAY_DTYPE_COUNT; i++) {
        assert_string_equal(luray_dtype_name(i), names[i]);
        assert_int_equal(luray_dtype_size(i), sizes[i]);
        assert_int_equal(luray_dtype_parse(names[i], &d), 0);
        assert_int_equal(d, i);
    }
    assert_null(luray_dtype_name(LURAY_DTYPE_COUNT));
    assert_int_equal(luray_dtype_size(-1), 0);
    assert_int_equal(luray_dtype_parse("float16", &d), LURAY_EINVAL);
    assert_int_equal(luray_dtype_parse(NULL, &d), LURAY_EINVAL);
    assert_true(luray_dtype_is_float(LURAY_DTYPE_FLOAT64));
    assert_false(luray_dtype_is_float(LURAY_DTYPE_INT64));
}

static int released;

static void note_release(void *ctx, void *data)
{
    (void)data;
    released += *(int *)ctx;
}

static void test_tbuf(void **state)
{
    (void)state;
    static char mem[16];
    int weight = 5;
    luray_tbuf_t *b = luray_tbuf_wrap(mem, sizeof mem, note_release, &weight);
    luray_tensor_t t, v;
    int64_t shape[2] = {4, 4};

    assert_non_null(b);
    released = 0;
    /* a tensor over borrowed memory holds its own reference */
    assert_int_equal(luray_tensor_init_data(&t, LURAY_DTYPE_UINT8, 2, shape, mem, 16, b, false),
                     0);
    luray_tbuf_release(b);
    assert_int_equal(released, 0);
    assert_int_equal(luray_tensor_view(&t, 1, (int64_t[]){16}, &v), 0);
    luray_tensor_close(&t);
    assert_int_equal(released, 0); /* the view still holds it */
    assert_ptr_equal(v.data, mem);
    luray_tensor_close(&v);
    assert_int_equal(released, 5);
    luray_tensor_close(&v); /* closing twice is a no-op */
    luray_tbuf_release(NULL);
    /* a size mismatch is refused */
    assert_int_equal(luray_tensor_init_data(&t, LURAY_DTYPE_FLOAT32, 2, shape, mem, 16, NULL,
                                            false),
                     LURAY_EINVAL);
}

static void test_tensor_basics(void **state)
{
    (void)state;
    luray_tensor_t t, v, c;
    int64_t shape[3] = {2, 3, 4}, idx[3];
    double f;
    int64_t i;

    assert_int_equal(luray_tensor_init(&t, LURAY_DTYPE_FLOAT64, 3, shape, true), 0);
    assert_int_equal(luray_tensor_numel(&t), 24);
    assert_int_equal(t.nbytes, 24 * 8);
    assert_int_equal(t.strides[0], 12);
    assert_int_equal(t.strides[1], 4);
    assert_int_equal(t.strides[2], 1);
    assert_true(luray_tensor_is_contiguous(&t));
    for (i = 0; i < 24; i++)
        assert_true(((double *)t.data)[i] == 0.0);

    idx[0] = 1, idx[1] = 2, idx[2] = 3;
    assert_int_equal(luray_tensor_set_f64(&t, idx, 2.5), 0);
    assert_true(((double *)t.data)[23] == 2.5);
    assert_int_equal(luray_tensor_get_f64(&t, idx, &f), 0);
    assert_true(f == 2.5);
    assert_int_equal(luray_tensor_get_i64(&t, idx, &i), 0);
    assert_int_equal(i, 2);
    idx[2] = 4;
    assert_int_equal(luray_tensor_get_f64(&t, idx, &f), LURAY_EINVAL);
    assert_int_equal(luray_tensor_set_f64(&t, idx, 1), LURAY_EINVAL);
    idx[2] = -1;
    assert_null(luray_tensor_ptr(&t, idx));

    /* views share memory; -1 is inferred */
    assert_int_equal(luray_tensor_view(&t, 2, (int64_t[]){-1, 6}, &v), 0);
    assert_int_equal(v.shape[0], 4);
    assert_ptr_equal(v.data, t.data);
    assert_int_equal(luray_tensor_set_f64(&v, (int64_t[]){0, 1}, 7), 0);
    assert_true(((double *)t.data)[1] == 7);
    assert_int_equal(luray_tensor_view(&t, 2, (int64_t[]){5, 5}, &c), LURAY_EINVAL);
    assert_int_equal(luray_tensor_view(&t, 2, (int64_t[]){-1, -1}, &c), LURAY_EINVAL);
    assert_int_equal(luray_tensor_view(&t, 2, (int64_t[]){-1, 5}, &c), LURAY_EINVAL);

    /* clone copies; readonly blocks writes */
    v.readonly = true;
    assert_int_equal(luray_tensor_set_f64(&v, (int64_t[]){0, 0}, 1), LURAY_ESTATE);
    assert_int_equal(luray_tensor_clone(&v, &c), 0);
    assert_false(c.readonly);
    assert_ptr_not_equal(c.data, v.data);
    assert_memory_equal(c.data, t.data, t.nbytes);
    luray_tensor_close(&c);
    luray_tensor_close(&v);
    luray_tensor_close(&t);

    /* a strided (transposed) tensor is not contiguous; copy_to walks it in row-major order */
    assert_int_equal(luray_tensor_init(&t, LURAY_DTYPE_INT32, 2, (int64_t[]){2, 3}, false), 0);
    for (i = 0; i < 6; i++)
        ((int32_t *)t.data)[i] = (int32_t)i;
    t.shape[0] = 3, t.shape[1] = 2, t.strides[0] = 1, t.strides[1] = 3;
    assert_false(luray_tensor_is_contiguous(&t));
    assert_int_equal(luray_tensor_view(&t, 1, (int64_t[]){6}, &v), LURAY_EINVAL);
    assert_int_equal(luray_tensor_clone(&t, &c), 0);
    {
        int32_t want[6] = {0, 3, 1, 4, 2, 5};

        assert_memory_equal(c.data, want, sizeof want);
    }
    luray_tensor_close(&c);
    luray_tensor_close(&t);

    /* bad arguments */
    assert_int_equal(luray_tensor_init(&t, 99, 1, shape, true), LURAY_EINVAL);
    assert_int_equal(luray_tensor_init(&t, 0, 9, shape, true), LURAY_EINVAL);
    assert_int_equal(luray_tensor_init(&t, 0, 1, (int64_t[]){-2}, true), LURAY_EINVAL);
    assert_int_equal(luray_tensor_init(&t, 0, 2, (int64_t[]){INT64_MAX / 2, 4}, true),
                     LURAY_ETOOBIG);
    /* 0-d and empty tensors */
    assert_int_equal(luray_tensor_init(&t, LURAY_DTYPE_INT64, 0, NULL, true), 0);
    assert_int_equal(luray_tensor_numel(&t), 1);
    assert_int_equal(luray_tensor_set_i64(&t, NULL, -5), 0);
    assert_int_equal(luray_tensor_get_i64(&t, NULL, &i), 0);
    assert_int_equal(i, -5);
    luray_tensor_close(&t);
    assert_int_equal(luray_tensor_init(&t, LURAY_DTYPE_INT64, 2, (int64_t[]){3, 0}, true), 0);
    assert_int_equal(luray_tensor_numel(&t), 0);
    assert_int_equal(t.nbytes, 0);
    luray_tensor_close(&t);
}

static void test_elem_conversions(void **state)
{
    (void)state;
    uint8_t p[8];

    assert_int_equal(luray_elem_set_i64(LURAY_DTYPE_UINT8, p, 255), 0);
    assert_int_equal(luray_elem_get_i64(LURAY_DTYPE_UINT8, p), 255);
    assert_int_equal(luray_elem_set_i64(LURAY_DTYPE_UINT8, p, 256), LURAY_EINVAL);
    assert_int_equal(luray_elem_set_i64(LURAY_DTYPE_UINT8, p, -1), LURAY_EINVAL);
    assert_int_equal(luray_elem_set_i64(LURAY_DTYPE_INT32, p, INT32_MIN), 0);
    assert_int_equal(luray_elem_get_i64(LURAY_DTYPE_INT32, p), INT32_MIN);
    assert_int_equal(luray_elem_set_i64(LURAY_DTYPE_INT32, p, (int64_t)INT32_MAX + 1),
                     LURAY_EINVAL);
    assert_int_equal(luray_elem_set_f64(LURAY_DTYPE_INT64, p, 3.0), 0);
    assert_int_equal(luray_elem_get_i64(LURAY_DTYPE_INT64, p), 3);
    assert_int_equal(luray_elem_set_f64(LURAY_DTYPE_INT64, p, 3.5), LURAY_EINVAL);
    assert_int_equal(luray_elem_set_f64(LURAY_DTYPE_INT64, p, 0.0 / 0.0), LURAY_EINVAL);
    assert_int_equal(luray_elem_set_f64(LURAY_DTYPE_INT64, p, 1e19), LURAY_EINVAL);
    assert_int_equal(luray_elem_set_f64(LURAY_DTYPE_BOOL, p, 2), 0);
    assert_int_equal(p[0], 1);
    assert_int_equal(luray_elem_set_f64(LURAY_DTYPE_FLOAT32, p, 0.5), 0);
    assert_true(luray_elem_get_f64(LURAY_DTYPE_FLOAT32, p) == 0.5);
    assert_int_equal(luray_elem_set_f64(LURAY_DTYPE_FLOAT64, p, 1e300), 0);
    assert_int_equal(luray_elem_get_i64(LURAY_DTYPE_FLOAT64, p), INT64_MAX); /* saturates */
}

/* ---- Lua bindings ---- */

static lua_State *new_state(void)
{
    lua_State *L = luaL_newstate();

    luaL_openlibs(L);
    lua_newtable(L);
    assert_int_equal(luray_lua_tensor_open(L, -1), 0);
    lua_setglobal(L, "luray");
    return L;
}

static void run(lua_State *L, const char *code)
{
    if (luaL_dostring(L, code) != LUA_OK)
        fail_msg("lua: %s", lua_tostring(L, -1));
}

/* Runs code that must fail with a message containing `want`. */
static void run_err(lua_State *L, const char *code, const char *want)
{
    const char *msg;

    if (luaL_dostring(L, code) == LUA_OK)
        fail_msg("expected an error for: %s", code);
    msg = lua_tostring(L, -1);
    if (!msg || !strstr(msg, want))
        fail_msg("error '%s' does not contain '%s'", msg ? msg : "(not a string)", want);
    lua_pop(L, 1);
}

static void test_lua_construct(void **state)
{
    (void)state;
    lua_State *L = new_state();

    run(L, "local t = luray.tensor({{1, 2, 3}, {4, 5, 6}})\n"
           "assert(tostring(t) == 'Tensor(float32, {2, 3})', tostring(t))\n"
           "local s = t:shape(); assert(#s == 2 and s[1] == 2 and s[2] == 3)\n"
           "assert(#t == 2 and t:numel() == 6 and t:ndim() == 2)\n"
           "assert(t:dtype() == 'float32')\n"
           "assert(t:get(2, 3) == 6.0 and math.type(t:get(2, 3)) == 'float')\n"
           "assert(t:get(1, 2) == 2)\n"
           "assert(not t:is_readonly())\n");
    run(L, "local t = luray.tensor({{{1}, {2}}, {{3}, {4}}, {{5}, {6}}}, {dtype = 'int64'})\n"
           "assert(tostring(t) == 'Tensor(int64, {3, 2, 1})')\n"
           "assert(math.type(t:get(3, 2, 1)) == 'integer' and t:get(3, 2, 1) == 6)\n"
           "local e = luray.tensor({})\n"
           "assert(tostring(e) == 'Tensor(float32, {0})' and #e == 0 and e:numel() == 0)\n"
           "assert(#e:totable() == 0 and e:tostring() == '')\n"
           "local b = luray.tensor({true, false, true}, {dtype = 'bool'})\n"
           "assert(b:get(1) == true and b:get(2) == false)\n"
           "local nb = luray.tensor({2, 0}, 'bool')\n" /* numbers: non-zero is true */
           "assert(nb:get(1) == true and nb:get(2) == false and nb:tostring() == '\\1\\0')\n"
           "local u = luray.tensor({0, 255}, 'uint8')\n"
           "assert(u:tostring() == '\\0\\255')\n"
           "local i = luray.tensor({-1, 7}, {dtype = 'int32'})\n"
           "assert(i:tostring() == string.pack('<i4i4', -1, 7))\n"
           "local d = luray.tensor({0.1}, {dtype = 'float64'})\n"
           "assert(d:get(1) == 0.1)\n"
           "local f = luray.tensor({0.1})\n"
           "assert(f:get(1) ~= 0.1 and math.abs(f:get(1) - 0.1) < 1e-7)\n"
           "local z = luray.zeros({2, 2}, 'int64')\n"
           "assert(z:get(2, 2) == 0 and z:dtype() == 'int64')\n"
           "assert(tostring(luray.empty(3)) == 'Tensor(float32, {3})')\n"
           "local s = luray.tensor(7)\n"
           "assert(tostring(s) == 'Tensor(float32, {})' and s:get() == 7 and s:totable() == 7)\n");
    /* from raw bytes */
    run(L, "local raw = string.pack('<ffff', 1, 2, 3, 4)\n"
           "local t = luray.tensor(raw)\n"
           "assert(tostring(t) == 'Tensor(float32, {4})' and t:get(4) == 4)\n"
           "local m = luray.tensor(raw, {dtype = 'float32', shape = {2, 2}})\n"
           "assert(m:get(2, 1) == 3 and m:tostring() == raw)\n"
           "local n = luray.tensor(string.pack('<i8i8', 5, -6),\n"
           "                       {dtype = 'int64', shape = {-1, 1}})\n"
           "assert(tostring(n) == 'Tensor(int64, {2, 1})' and n:get(2, 1) == -6)\n");
    run_err(L, "luray.tensor('abc')", "not a whole number of float32");
    run_err(L, "luray.tensor(string.rep('x', 8), {shape = {3}})", "does not match that shape");
    lua_close(L);
}

static void test_lua_errors(void **state)
{
    (void)state;
    lua_State *L = new_state();

    run_err(L, "luray.tensor({{1, 2}, {3}})",
            "ragged nested table: [2] has 1 elements, expected 2");
    run_err(L, "luray.tensor({{1, 2}, 3})", "ragged nested table: [2] is a number");
    run_err(L, "luray.tensor({{{1}, {2}}, {{3}, {4, 5}}})", "[2][2] has 2 elements, expected 1");
    run_err(L, "luray.tensor({1, {2}})", "[2]: expected a number for dtype float32, got table");
    run_err(L, "luray.tensor({1, 'x'})", "[2]: expected a number");
    run_err(L, "luray.tensor({1, 2.5}, {dtype = 'int32'})",
            "[2]: value 2.5 does not fit dtype int32");
    run_err(L, "luray.tensor({300}, 'uint8')", "value 300 does not fit dtype uint8");
    run_err(L, "luray.tensor({'x'}, 'bool')", "[1]: expected a boolean for dtype bool, got string");
    run_err(L, "luray.tensor({true}, 'int64')",
            "[1]: expected a number for dtype int64, got boolean");
    run_err(L, "luray.tensor({1}, {dtype = 'half'})", "unknown dtype 'half'");
    run_err(L, "luray.tensor(print)", "nested table of numbers or string of bytes");
    run_err(L, "luray.zeros({2, -1})", "shape[2] is negative");
    run_err(L, "luray.zeros({1, 'a'})", "shape[2] is not an integer");
    run_err(L, "luray.zeros({1,1,1,1,1,1,1,1,1})", "at most 8 dimensions");

    run(L, "t = luray.tensor({{1, 2, 3}, {4, 5, 6}}, {dtype = 'int64'})");
    run_err(L, "t:get(3, 1)", "index 3 out of range for dim 1 (size 2)");
    run_err(L, "t:get(1, 0)", "index 0 out of range for dim 2 (size 3)");
    run_err(L, "t:get(1)", "expected 2 indices for a 2-dimensional tensor, got 1");
    run_err(L, "t:set(1, 4, 9)", "index 4 out of range for dim 2 (size 3)");
    run_err(L, "t:set(1, 1, 1.5)", "t:set: value 1.5 does not fit dtype int64");
    run_err(L, "t:set(1, 1, 'x')", "t:set: expected a number");
    run_err(L, "t:get(1, 'x')", "number expected");
    run_err(L, "t:view({4, 2})", "cannot view a tensor of 6 elements");
    run_err(L, "t.get(42, 1)", "luray.Tensor expected");
    run(L, "do local c <close> = luray.zeros(2); x = c end");
    run_err(L, "x:get(1)", "tensor is closed");
    lua_close(L);
}

static void test_lua_methods(void **state)
{
    (void)state;
    lua_State *L = new_state();

    run(L, "local t = luray.zeros({2, 3}, 'float64')\n"
           "t:set(1, 2, 5.5); t:set(2, 3, 7)\n"
           "assert(t:get(1, 2) == 5.5 and t:get(2, 3) == 7.0)\n"
           "local tt = t:totable()\n"
           "assert(#tt == 2 and #tt[1] == 3 and tt[1][2] == 5.5)\n"
           "assert(tt[2][3] == 7 and tt[2][1] == 0)\n"
           "assert(t:tostring() == string.pack('<dddddd', 0, 5.5, 0, 0, 0, 7))\n"
           /* views share memory, both ways */
           "local v = t:view({3, 2})\n"
           "assert(tostring(v) == 'Tensor(float64, {3, 2})' and v:get(1, 2) == 5.5)\n"
           "v:set(3, 1, 9); assert(t:get(2, 2) == 9)\n"
           "local flat = t:view({-1})\n"
           "assert(#flat == 6 and flat:get(6) == 7)\n"
           "local one = t:view(6); assert(one:get(2) == 5.5)\n"
           /* the view keeps the memory alive after its source is gone */
           "t = nil; collectgarbage(); collectgarbage()\n"
           "assert(v:get(1, 2) == 5.5 and flat:get(5) == 9)\n"
           /* clone copies */
           "local c = v:clone(); c:set(1, 1, 42); assert(v:get(1, 1) == 0 and c:get(1, 1) == 42)\n"
           "local b = luray.tensor({{true}, {false}}, 'bool')\n"
           "local bt = b:totable(); assert(bt[1][1] == true and bt[2][1] == false)\n"
           "b:set(2, 1, true); assert(b:get(2, 1) == true)\n"
           "assert(b:tostring() == '\\1\\1')\n"
           "local i = luray.tensor({1, 2}, 'int32'); i:set(2, 3.0); assert(i:get(2) == 3)\n"
           "assert(math.type(i:totable()[1]) == 'integer')\n");
    lua_close(L);
}

/* ---- serializer hooks with a fake host ---- */

typedef struct {
    uint8_t hdr[4096];
    size_t hlen;
    const void *buf;
    size_t blen;
    int nbuf;
    int keeper; /* 1: push_keeper pushes a table (zero copy), 0: nil (decoder copies) */
} fake_io_t;

static int fake_write(luray_ser_writer_t *w, const void *bytes, size_t len)
{
    fake_io_t *f = (fake_io_t *)w;

    if (f->hlen + len > sizeof f->hdr)
        return LURAY_ETOOBIG;
    memcpy(f->hdr + f->hlen, bytes, len);
    f->hlen += len;
    return 0;
}

static int fake_write_buffer(luray_ser_writer_t *w, const void *data, size_t len)
{
    fake_io_t *f = (fake_io_t *)w;

    f->buf = data;
    f->blen = len;
    f->nbuf++;
    return 0;
}

static const void *fake_header(luray_ser_reader_t *r, size_t *len)
{
    fake_io_t *f = (fake_io_t *)r;

    *len = f->hlen;
    return f->hdr;
}

static size_t fake_buffer_count(luray_ser_reader_t *r) { return (size_t)((fake_io_t *)r)->nbuf; }

static const void *fake_buffer(luray_ser_reader_t *r, size_t i, size_t *len)
{
    fake_io_t *f = (fake_io_t *)r;

    if (i >= (size_t)f->nbuf)
        return NULL;
    *len = f->blen;
    return f->buf;
}

static void fake_push_keeper(lua_State *L, luray_ser_reader_t *r)
{
    if (((fake_io_t *)r)->keeper)
        lua_getglobal(L, "keeper");
    else
        lua_pushnil(L);
}

static const luray_host_api_t fake_host = {
    .abi = LURAY_PLUGIN_ABI,
    .size = sizeof(luray_host_api_t),
    .ser_write = fake_write,
    .ser_write_buffer = fake_write_buffer,
    .ser_header = fake_header,
    .ser_buffer_count = fake_buffer_count,
    .ser_buffer = fake_buffer,
    .ser_push_keeper = fake_push_keeper,
};

static void test_serializer(void **state)
{
    (void)state;
    lua_State *L = new_state();
    const luray_serializer_t *ser = &luray_tensor_serializer;
    fake_io_t io = {0};
    luray_tensor_t *src, *dst;
    void *blob;
    int top;

    assert_string_equal(ser->type_name, "luray.Tensor");
    run(L, "src = luray.tensor({{1, 2, 3}, {4, 5, 6}}, 'int32'); keeper = {}");
    lua_getglobal(L, "src");
    src = luray_lua_tensor_check(L, -1);
    assert_int_equal(ser->encode(&fake_host, L, -1, (luray_ser_writer_t *)&io), 0);
    assert_int_equal(io.nbuf, 1);
    assert_ptr_equal(io.buf, src->data); /* one out-of-band buffer, not copied */
    assert_int_equal(io.blen, 24);
    assert_int_equal(io.hlen, 4 + 2 * 8);
    lua_pop(L, 1);

    /* "store" the value: the blob copy is what the decoded view points into */
    blob = aligned_alloc(64, 64);
    memcpy(blob, io.buf, io.blen);
    io.buf = blob;
    io.keeper = 1;
    top = lua_gettop(L);
    assert_int_equal(ser->decode(&fake_host, L, (luray_ser_reader_t *)&io), 0);
    assert_int_equal(lua_gettop(L), top + 1);
    dst = luray_lua_tensor_check(L, -1);
    assert_ptr_equal(dst->data, blob); /* zero copy */
    assert_true(dst->readonly);
    assert_null(dst->buf);
    lua_getiuservalue(L, -1, 1);
    lua_getglobal(L, "keeper");
    assert_true(lua_rawequal(L, -1, -2)); /* the keeper is the tensor's user value */
    lua_pop(L, 2);
    lua_setglobal(L, "got");
    run(L, "assert(tostring(got) == 'Tensor(int32, {2, 3})' and got:get(2, 1) == 4)\n"
           "assert(got:is_readonly())\n"
           "local ok, err = pcall(got.set, got, 1, 1, 0)\n"
           "assert(not ok and err:find('tensor is read-only (a view of the object store); "
           "copy it with t:clone()', 1, true), err)\n"
           "local c = got:clone(); c:set(1, 1, 10)\n"
           "assert(c:get(1, 1) == 10 and not c:is_readonly())\n"
           "v = got:view({6}); assert(v:is_readonly() and v:get(6) == 6)\n");
    /* a view of the decoded tensor carries the keeper too */
    lua_getglobal(L, "v");
    lua_getiuservalue(L, -1, 1);
    lua_getglobal(L, "keeper");
    assert_true(lua_rawequal(L, -1, -2));
    lua_pop(L, 3);
    run(L, "got = nil; v = nil; collectgarbage()");

    /* without a keeper the decoder copies */
    io.keeper = 0;
    assert_int_equal(ser->decode(&fake_host, L, (luray_ser_reader_t *)&io), 0);
    dst = luray_lua_tensor_check(L, -1);
    assert_ptr_not_equal(dst->data, blob);
    assert_false(dst->readonly);
    assert_memory_equal(dst->data, blob, 24);
    lua_pop(L, 1);
    free(blob);

    /* malformed headers push nothing */
    top = lua_gettop(L);
    io.hdr[1] = 77; /* bad dtype */
    assert_int_equal(ser->decode(&fake_host, L, (luray_ser_reader_t *)&io), LURAY_EPROTO);
    io.hdr[1] = LURAY_DTYPE_INT32;
    io.blen = 20; /* buffer shorter than the shape says */
    assert_int_equal(ser->decode(&fake_host, L, (luray_ser_reader_t *)&io), LURAY_EPROTO);
    io.hlen = 3;
    assert_int_equal(ser->decode(&fake_host, L, (luray_ser_reader_t *)&io), LURAY_EPROTO);
    assert_int_equal(lua_gettop(L), top);

    /* a strided tensor travels inline, in row-major order */
    memset(&io, 0, sizeof io);
    run(L, "tr = luray.tensor({{1, 2, 3}, {4, 5, 6}}, 'int32')");
    lua_getglobal(L, "tr");
    src = luray_lua_tensor_check(L, -1);
    src->shape[0] = 3, src->shape[1] = 2, src->strides[0] = 1, src->strides[1] = 3;
    assert_int_equal(ser->encode(&fake_host, L, -1, (luray_ser_writer_t *)&io), 0);
    assert_int_equal(io.nbuf, 0);
    assert_int_equal(io.hlen, 4 + 16 + 24);
    lua_pop(L, 1);
    assert_int_equal(ser->decode(&fake_host, L, (luray_ser_reader_t *)&io), 0);
    lua_setglobal(L, "tt");
    run(L, "assert(tostring(tt) == 'Tensor(int32, {3, 2})')\n"
           "assert(tt:tostring() == string.pack('<i4i4i4i4i4i4', 1, 4, 2, 5, 3, 6))\n");

    /* not a tensor */
    lua_pushinteger(L, 1);
    assert_int_equal(ser->encode(&fake_host, L, -1, (luray_ser_writer_t *)&io), LURAY_EINVAL);
    lua_pop(L, 1);
    lua_close(L);
}

/* Through the real serializer: one blob, decoded as a zero-copy view kept alive by the keeper. */
static void test_serializer_blob(void **state)
{
    (void)state;
    lua_State *L = new_state();
    luray_ser_t ser;
    luray_tensor_t *t;
    char err[256];
    size_t size;
    void *blob;
    uint8_t *lo, *hi;

    run(L, "src = luray.tensor({{1.5, 2}, {3, 4}, {5, 6}}, 'float64')");
    lua_getglobal(L, "src");
    luray_ser_init(&ser);
    if (luray_ser_encode(L, lua_gettop(L), 1, "value", &ser) != 0)
        fail_msg("encode: %s", ser.err);
    lua_pop(L, 1);
    size = luray_ser_blob_size(&ser);
    blob = aligned_alloc(64, (size + 63) / 64 * 64);
    luray_ser_write(&ser, blob);
    luray_ser_close(&ser);
    assert_int_equal(luray_ser_check(blob, size), 0);

    /* a light userdata stands in for the store pin that keeps the blob alive */
    lua_pushlightuserdata(L, blob);
    assert_int_equal(luray_ser_decode(L, blob, size, lua_gettop(L), err, sizeof err), 1);
    t = luray_lua_tensor_check(L, -1);
    lo = blob;
    hi = lo + size;
    assert_true((uint8_t *)t->data >= lo && (uint8_t *)t->data + t->nbytes <= hi);
    assert_int_equal((uintptr_t)t->data % 64, 0);
    assert_true(t->readonly);
    lua_setglobal(L, "got");
    lua_pop(L, 1);
    run(L, "assert(tostring(got) == 'Tensor(float64, {3, 2})')\n"
           "assert(got:tostring() == src:tostring() and got:get(1, 1) == 1.5)\n"
           "assert(not pcall(got.set, got, 1, 1, 0))\n"
           "got = nil; collectgarbage()\n");

    /* without a keeper the values are copied and outlive the blob */
    assert_int_equal(luray_ser_decode(L, blob, size, 0, err, sizeof err), 1);
    memset(blob, 0, size);
    free(blob);
    lua_setglobal(L, "copied");
    run(L, "assert(copied:tostring() == src:tostring())");
    lua_close(L);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtypes),          cmocka_unit_test(test_tbuf),
        cmocka_unit_test(test_tensor_basics),   cmocka_unit_test(test_elem_conversions),
        cmocka_unit_test(test_lua_construct),   cmocka_unit_test(test_lua_errors),
        cmocka_unit_test(test_lua_methods),     cmocka_unit_test(test_serializer),
        cmocka_unit_test(test_serializer_blob),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
