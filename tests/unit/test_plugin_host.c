/* Tests for core/plugin_host.c, core/host_api.c and core/log.c: loading the example plugin and
 * the fixture plugins of tests/plugins, require through the searcher, scanning, and Point/Blob
 * values through the serializer. Run from the repo root; LURAY_BUILD names the build folder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <lauxlib.h>
#include <lualib.h>

#include "errors_str.h"
#include "log.h"
#include "plugin_host.h"
#include "serialize.h"

static char build_dir[1024];
static char plugin_dir[1100];
static char fixture_dir[1100];

static void set_path(const char *path)
{
    assert_int_equal(setenv("LURAY_PLUGIN_PATH", path, 1), 0);
}

static void set_default_path(void)
{
    char path[2300];
    snprintf(path, sizeof(path), "%s:%s", plugin_dir, fixture_dir);
    set_path(path);
}

static int group_setup(void **state)
{
    (void)state;
    const char *b = getenv("LURAY_BUILD");
    snprintf(build_dir, sizeof(build_dir), "%s", b && *b ? b : "build");
    snprintf(plugin_dir, sizeof(plugin_dir), "%s/lib/luray/plugins", build_dir);
    snprintf(fixture_dir, sizeof(fixture_dir), "%s/tests/plugins", build_dir);
    char file[1200];
    snprintf(file, sizeof(file), "%s/example.so", plugin_dir);
    if (access(file, R_OK) != 0) {
        fprintf(stderr, "test_plugin_host: %s missing; run `make` (and `make unit`) first\n",
                file);
        return -1;
    }
    set_default_path();
    return 0;
}

static lua_State *new_state(void)
{
    lua_State *L = luaL_newstate();
    assert_non_null(L);
    luaL_openlibs(L);
    return L;
}

static void run_lua(lua_State *L, const char *code)
{
    if (luaL_dostring(L, code) != LUA_OK) {
        fprintf(stderr, "lua error: %s\n", lua_tostring(L, -1));
        fail();
    }
    lua_settop(L, 0);
}

/* Runs code that must raise; returns the message (valid until the next call). */
static const char *lua_error_of(lua_State *L, const char *code)
{
    static char msg[2048];
    int rc = luaL_dostring(L, code);
    assert_int_not_equal(rc, LUA_OK);
    snprintf(msg, sizeof(msg), "%s", lua_tostring(L, -1));
    lua_settop(L, 0);
    return msg;
}

static void assert_contains(const char *text, const char *part)
{
    if (strstr(text, part) == NULL) {
        fprintf(stderr, "expected \"%s\" in: %s\n", part, text);
        fail();
    }
}

static size_t loaded_count(const char *name)
{
    luray_plugin_info_t *list;
    size_t n, hits = 0;
    assert_int_equal(luray_plugins_loaded(&list, &n), 0);
    for (size_t i = 0; i < n; i++)
        hits += strcmp(list[i].name, name) == 0;
    luray_plugins_free(list, n);
    return hits;
}

static void test_host_api_table(void **state)
{
    (void)state;
    const luray_host_api_t *h = luray_host_api();
    assert_ptr_equal(h, luray_host_api());
    assert_int_equal(h->abi, LURAY_PLUGIN_ABI);
    assert_int_equal(h->size, sizeof(luray_host_api_t));
    assert_string_equal(h->strerror(LURAY_EABI), "plugin ABI mismatch");
    assert_ptr_equal(h->register_serializer, luray_ser_register);
    assert_ptr_equal(h->ser_write, luray_ser_writer_write);
    assert_ptr_equal(h->ser_write_buffer, luray_ser_writer_buffer);
    assert_ptr_equal(h->ser_header, luray_ser_reader_header);
    assert_ptr_equal(h->ser_buffer_count, luray_ser_reader_buffer_count);
    assert_ptr_equal(h->ser_buffer, luray_ser_reader_buffer);
    assert_ptr_equal(h->ser_push_keeper, luray_ser_reader_push_keeper);
    assert_non_null(h->log);
}

static void test_log_levels(void **state)
{
    (void)state;
    assert_int_equal(luray_log_parse_level("debug"), LURAY_LOG_DEBUG);
    assert_int_equal(luray_log_parse_level("WARN"), LURAY_LOG_WARN);
    assert_int_equal(luray_log_parse_level("2"), LURAY_LOG_INFO);
    assert_int_equal(luray_log_parse_level("9"), LURAY_LOG_DEBUG);
    assert_int_equal(luray_log_parse_level("loud"), -1);
    assert_int_equal(luray_log_parse_level(""), -1);
    int before = luray_log_level();
    luray_log_set_level(7);
    assert_int_equal(luray_log_level(), LURAY_LOG_DEBUG);
    luray_log_set_level(-4);
    assert_int_equal(luray_log_level(), LURAY_LOG_ERROR);
    luray_log(LURAY_LOG_WARN, "test", "dropped at level error"); /* must not print */
    luray_log_set_level(before);
}

static void test_load_example(void **state)
{
    (void)state;
    char err[512] = "";
    lua_State *L = new_state();
    assert_int_equal(luray_plugin_load(L, "example", err, sizeof(err)), 0);
    const luray_plugin_t *p = luray_plugin_find("example");
    assert_non_null(p);
    assert_string_equal(p->name, "example");
    assert_string_equal(p->version, "1.0.0");
    assert_non_null(p->serializers);
    /* Loading again, in the same state or without one, is a no-op. */
    assert_int_equal(luray_plugin_load(L, "example", err, sizeof(err)), 0);
    assert_int_equal(luray_plugin_load(NULL, "example", err, sizeof(err)), 0);
    assert_int_equal(loaded_count("example"), 1);
    lua_close(L);
}

static void test_abi_mismatch(void **state)
{
    (void)state;
    char err[512] = "";
    assert_int_equal(luray_plugin_load(NULL, "abi_mismatch", err, sizeof(err)), LURAY_EABI);
    assert_contains(err, "abi_mismatch.so");
    assert_contains(err, "built for ABI 999");
    assert_contains(err, "this luray has ABI 1");
    assert_contains(err, "include/luray/plugin.h");
    assert_int_equal(loaded_count("abi_mismatch"), 0);
}

static void test_no_entry(void **state)
{
    (void)state;
    char err[512] = "";
    assert_int_equal(luray_plugin_load(NULL, "no_entry", err, sizeof(err)), LURAY_EABI);
    assert_contains(err, "no_entry.so");
    assert_contains(err, "no symbol luray_plugin_entry");
}

static void test_init_fails(void **state)
{
    (void)state;
    char err[512] = "";
    assert_int_equal(luray_plugin_load(NULL, "init_fails", err, sizeof(err)),
                     LURAY_EUNSUPPORTED);
    assert_contains(err, "init_fails.so");
    assert_contains(err, "init failed");
    assert_int_equal(loaded_count("init_fails"), 0);
    /* A failure is not remembered as a success. */
    assert_int_equal(luray_plugin_load(NULL, "init_fails", err, sizeof(err)),
                     LURAY_EUNSUPPORTED);
}

static void test_name_mismatch(void **state)
{
    (void)state;
    char err[512] = "";
    assert_int_equal(luray_plugin_load(NULL, "name_mismatch", err, sizeof(err)), LURAY_EABI);
    assert_contains(err, "name_mismatch.so");
    assert_contains(err, "'other'");
}

static void test_not_found_and_bad_names(void **state)
{
    (void)state;
    char err[1024] = "";
    assert_int_equal(luray_plugin_load(NULL, "no_such_plugin", err, sizeof(err)), LURAY_ENOENT);
    assert_contains(err, "no_such_plugin.so");
    assert_contains(err, fixture_dir); /* says where it looked */
    assert_int_equal(luray_plugin_load(NULL, "../tests/plugins/example", err, sizeof(err)),
                     LURAY_EINVAL);
    assert_int_equal(luray_plugin_load(NULL, "", err, sizeof(err)), LURAY_EINVAL);
    assert_int_equal(luray_plugin_load(NULL, "a.b", err, sizeof(err)), LURAY_EINVAL);
    /* No buffer is fine too. */
    assert_int_equal(luray_plugin_load(NULL, "no_such_plugin", NULL, 0), LURAY_ENOENT);
}

static void test_require_through_searcher(void **state)
{
    (void)state;
    lua_State *L = new_state();
    run_lua(L, "n_before = #package.searchers");
    luray_plugins_install_searcher(L);
    luray_plugins_install_searcher(L); /* twice: still one entry */
    run_lua(L,
            "assert(#package.searchers == n_before + 1)\n"
            "local ex = require('luray.example')\n"
            "assert(ex.add(2, 3) == 5 and math.type(ex.add(2, 3)) == 'integer')\n"
            "assert(ex.add(0.5, 1) == 1.5)\n"
            "assert(ex.version() == '1.0.0')\n"
            "local p = ex.point(1, 2)\n"
            "assert(tostring(p) == 'Point(1, 2)', tostring(p))\n"
            "assert(p:x() == 1 and p:y() == 2)\n"
            "assert(math.abs(ex.point(3, 4):norm() - 5) < 1e-12)\n"
            "assert(ex.point(1, 2) == p)\n"
            "local b = ex.blob('hi\\0there')\n"
            "assert(#b == 8 and b:len() == 8 and b:byte(3) == 0 and not b:is_view())\n"
            "assert(b:tostring() == 'hi\\0there' and tostring(b) == 'Blob(8 bytes)')\n"
            "assert(not pcall(b.byte, b, 9))\n"
            "assert(require('luray._plugin.example') == ex)\n"
            "assert(require('string') == string)\n");
    /* A module not named luray.* still reports the usual 'not found'. */
    const char *msg = lua_error_of(L, "require('nothing_here')");
    assert_contains(msg, "module 'nothing_here' not found");
    lua_close(L);
}

static void test_require_errors(void **state)
{
    (void)state;
    lua_State *L = new_state();
    luray_plugins_install_searcher(L);
    const char *msg = lua_error_of(L, "require('luray.abi_mismatch')");
    assert_contains(msg, "abi_mismatch.so");
    assert_contains(msg, "built for ABI 999");
    msg = lua_error_of(L, "require('luray.no_entry')");
    assert_contains(msg, "no symbol luray_plugin_entry");
    msg = lua_error_of(L, "require('luray.init_fails')");
    assert_contains(msg, "init_fails.so");
    msg = lua_error_of(L, "require('luray.nope')");
    assert_contains(msg, "module 'luray.nope' not found");
    assert_contains(msg, "nope.so");
    /* The state is still usable after the errors. */
    run_lua(L, "assert(require('luray.example').add(1, 1) == 2)");
    lua_close(L);
}

static void test_lua_wrapper_wins(void **state)
{
    (void)state;
    char dir[] = "/tmp/luray_plugin_testXXXXXX";
    assert_non_null(mkdtemp(dir));
    char sub[64], file[96];
    snprintf(sub, sizeof(sub), "%s/luray", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(file, sizeof(file), "%s/example.lua", sub);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fputs("local c = require('luray._plugin.example')\n"
          "return {wrapped = true, c = c, double = function(x) return c.add(x, x) end}\n", f);
    fclose(f);

    lua_State *L = new_state();
    luray_plugins_install_searcher(L);
    lua_pushfstring(L, "%s/?.lua;", dir);
    lua_setglobal(L, "extra_path");
    run_lua(L,
            "package.path = extra_path .. package.path\n"
            "local ex = require('luray.example')\n"
            "assert(ex.wrapped == true)\n"
            "assert(ex.double(21) == 42)\n"
            "assert(ex.c == require('luray._plugin.example'))\n"
            "assert(ex.c.version() == '1.0.0')\n");
    lua_close(L);
    unlink(file);
    rmdir(sub);
    rmdir(dir);
}

static const luray_plugin_info_t *info_named(const luray_plugin_info_t *list, size_t n,
                                             const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i].name, name) == 0)
            return &list[i];
    }
    return NULL;
}

static void test_scan(void **state)
{
    (void)state;
    luray_plugin_info_t *list;
    size_t n;
    assert_int_equal(luray_plugins_scan(&list, &n), 0);
    for (size_t i = 1; i < n; i++)
        assert_true(strcmp(list[i - 1].name, list[i].name) < 0);

    const luray_plugin_info_t *ex = info_named(list, n, "example");
    assert_non_null(ex);
    assert_string_equal(ex->version, "1.0.0");
    assert_int_equal(ex->abi, LURAY_PLUGIN_ABI);
    assert_true(ex->loadable);
    assert_true(ex->loaded); /* earlier tests loaded it */
    assert_contains(ex->path, "example.so");
    assert_non_null(ex->description);

    const luray_plugin_info_t *bad = info_named(list, n, "abi_mismatch");
    assert_non_null(bad);
    assert_int_equal(bad->abi, 999);
    assert_false(bad->loadable);
    assert_false(bad->loaded);
    assert_contains(bad->error, "built for ABI 999");

    const luray_plugin_info_t *ne = info_named(list, n, "no_entry");
    assert_non_null(ne);
    assert_false(ne->loadable);
    assert_contains(ne->error, "no symbol luray_plugin_entry");

    const luray_plugin_info_t *fi = info_named(list, n, "init_fails");
    assert_non_null(fi);
    assert_true(fi->loadable); /* the scan does not run init */
    assert_string_equal(fi->version, "0.0.1");
    luray_plugins_free(list, n);
}

/* The first <name>.so on the path wins, even when a later one would load. */
static void test_scan_first_found_wins(void **state)
{
    (void)state;
    char dir[] = "/tmp/luray_plugin_scanXXXXXX";
    assert_non_null(mkdtemp(dir));
    char link_path[128], rel[1200], target[PATH_MAX], path[1300];
    snprintf(rel, sizeof(rel), "%s/abi_mismatch.so", fixture_dir);
    assert_non_null(realpath(rel, target));
    snprintf(link_path, sizeof(link_path), "%s/init_fails.so", dir);
    assert_int_equal(symlink(target, link_path), 0);
    snprintf(path, sizeof(path), "%s:%s", dir, fixture_dir);
    set_path(path);

    luray_plugin_info_t *list;
    size_t n;
    int rc = luray_plugins_scan(&list, &n);
    set_default_path();
    unlink(link_path);
    rmdir(dir);
    assert_int_equal(rc, 0);
    const luray_plugin_info_t *fi = info_named(list, n, "init_fails");
    assert_non_null(fi);
    assert_contains(fi->path, dir);
    assert_int_equal(fi->abi, 999);
    assert_false(fi->loadable);
    luray_plugins_free(list, n);
}

static void test_print_table(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    assert_int_equal(luray_plugins_print(out), 0);
    fclose(out);
    assert_contains(text, "NAME");
    assert_contains(text, "example");
    assert_contains(text, "1.0.0");
    assert_contains(text, "loaded");
    assert_contains(text, "abi_mismatch");
    assert_contains(text, "error: plugin ");
    free(text);

    set_path("/nonexistent/luray/plugins");
    out = open_memstream(&text, &len);
    assert_int_equal(luray_plugins_print(out), 0);
    fclose(out);
    set_default_path();
    /* Only the already loaded example is left: nothing else is found on that path. */
    assert_null(strstr(text, "abi_mismatch"));
    assert_contains(text, "example");
    free(text);
}

/* Encodes the value on top of L into a fresh 64-byte aligned blob. */
static void *encode_top(lua_State *L, size_t *len)
{
    luray_ser_t s;
    luray_ser_init(&s);
    int rc = luray_ser_encode(L, lua_gettop(L), 1, "value", &s);
    if (rc != 0)
        fprintf(stderr, "encode: %s\n", s.err);
    assert_int_equal(rc, 0);
    *len = luray_ser_blob_size(&s);
    void *blob = aligned_alloc(LURAY_BLOB_ALIGN, (*len + 63) & ~(size_t)63);
    assert_non_null(blob);
    luray_ser_write(&s, blob);
    luray_ser_close(&s);
    return blob;
}

static void test_values_travel(void **state)
{
    (void)state;
    lua_State *src = new_state();
    luray_plugins_install_searcher(src);
    run_lua(src, "ex = require('luray.example')");
    size_t plen, blen;
    run_lua(src, "v = ex.point(1.5, -2)");
    lua_getglobal(src, "v");
    void *pblob = encode_top(src, &plen);
    char bytes[300];
    for (size_t i = 0; i < sizeof(bytes); i++)
        bytes[i] = (char)(i * 7);
    lua_settop(src, 0);
    lua_getglobal(src, "ex");
    lua_getfield(src, -1, "blob");
    lua_pushlstring(src, bytes, sizeof(bytes));
    lua_call(src, 1, 1);
    void *bblob = encode_top(src, &blen);
    lua_close(src);

    /* A fresh state that never required the plugin: the resolver loads the types' plugin. */
    char err[256] = "";
    lua_State *dst = new_state();
    luray_ser_set_resolver(dst, luray_plugins_resolve_type);
    assert_int_equal(luray_ser_decode(dst, pblob, plen, 0, err, sizeof(err)), 1);
    lua_setglobal(dst, "p");
    lua_pushlightuserdata(dst, bblob); /* stands for the object that owns the blob's memory */
    assert_int_equal(luray_ser_decode(dst, bblob, blen, 1, err, sizeof(err)), 1);
    lua_setglobal(dst, "view");
    lua_settop(dst, 0);
    assert_int_equal(luray_ser_decode(dst, bblob, blen, 0, err, sizeof(err)), 1);
    lua_setglobal(dst, "copy");
    lua_pushlstring(dst, bytes, sizeof(bytes));
    lua_setglobal(dst, "bytes");
    run_lua(dst,
            "assert(tostring(p) == 'Point(1.5, -2)', tostring(p))\n"
            "assert(p:x() == 1.5 and p:y() == -2)\n"
            "assert(view:is_view() and #view == 300 and view:tostring() == bytes)\n"
            "assert(tostring(view) == 'Blob(300 bytes, view)')\n"
            "assert(copy:tostring() == bytes)\n");
    /* The view points into the blob, not at a copy. */
    lua_getglobal(dst, "view");
    const uint8_t *const *view_data = lua_touserdata(dst, -1);
    assert_true(*view_data >= (const uint8_t *)bblob &&
                *view_data < (const uint8_t *)bblob + blen);
    assert_int_equal((uintptr_t)*view_data % LURAY_BLOB_ALIGN, 0);
    lua_close(dst);
    free(pblob);
    free(bblob);

    /* Types of no plugin, or of a plugin that lacks them, do not resolve. */
    lua_State *L = new_state();
    assert_int_equal(luray_plugins_resolve_type(L, "example.Point"), 0);
    assert_int_equal(luray_plugins_resolve_type(L, "example.Nothing"), LURAY_ENOENT);
    assert_int_equal(luray_plugins_resolve_type(L, "no_such_plugin.T"), LURAY_ENOENT);
    assert_int_equal(luray_plugins_resolve_type(L, "NoDot"), LURAY_ENOENT);
    lua_close(L);
}

/* Last: forgets every plugin, after which loading works again. */
static void test_unload_all(void **state)
{
    (void)state;
    assert_int_equal(loaded_count("example"), 1);
    luray_plugins_unload_all();
    assert_int_equal(loaded_count("example"), 0);
    assert_null(luray_plugin_find("example"));
    luray_plugins_unload_all(); /* twice is fine */
    char err[256];
    assert_int_equal(luray_plugin_load(NULL, "example", err, sizeof(err)), 0);
    assert_int_equal(loaded_count("example"), 1);
    luray_plugins_unload_all();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_api_table),
        cmocka_unit_test(test_log_levels),
        cmocka_unit_test(test_load_example),
        cmocka_unit_test(test_abi_mismatch),
        cmocka_unit_test(test_no_entry),
        cmocka_unit_test(test_init_fails),
        cmocka_unit_test(test_name_mismatch),
        cmocka_unit_test(test_not_found_and_bad_names),
        cmocka_unit_test(test_require_through_searcher),
        cmocka_unit_test(test_require_errors),
        cmocka_unit_test(test_lua_wrapper_wins),
        cmocka_unit_test(test_scan),
        cmocka_unit_test(test_scan_first_found_wins),
        cmocka_unit_test(test_print_table),
        cmocka_unit_test(test_values_travel),
        cmocka_unit_test(test_unload_all),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
