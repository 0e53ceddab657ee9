/* Unit tests of the REPL's result printer, its stdin script mode, and the protected-call helpers
 * of core/lua_util.c. The interactive mode is driven through tmux in tests/integration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <lauxlib.h>
#include <lualib.h>

#include "lua_util.h"
#include "repl.h"

static int setup(void **state)
{
    lua_State *L = luaL_newstate();
    if (L == NULL)
        return -1;
    luaL_openlibs(L);
    *state = L;
    return 0;
}

static int teardown(void **state)
{
    lua_close(*state);
    return 0;
}

/* Evaluates expr, formats its results the way the REPL prints them, and checks the text. */
static void check_format(lua_State *L, const char *expr, const char *want)
{
    int top = lua_gettop(L);
    char src[4096];
    snprintf(src, sizeof(src), "return %s", expr);
    assert_int_equal(luaL_loadstring(L, src), LUA_OK);
    assert_int_equal(luray_lua_pcall_traceback(L, 0, LUA_MULTRET), LUA_OK);
    int n = lua_gettop(L) - top;
    assert_int_equal(luray_repl_format(L, top + 1, n), LUA_OK);
    assert_string_equal(lua_tostring(L, -1), want);
    lua_settop(L, top);
}

static void test_format_scalars(void **state)
{
    lua_State *L = *state;
    check_format(L, "3", "3");
    check_format(L, "3.0", "3.0");
    check_format(L, "nil", "nil");
    check_format(L, "true, false", "true\tfalse");
    check_format(L, "'top level strings are raw'", "top level strings are raw");
    check_format(L, "1, 'a', 2.5", "1\ta\t2.5");
}

static void test_format_tables(void **state)
{
    lua_State *L = *state;
    check_format(L, "{}", "{}");
    check_format(L, "{1, 2, 3}", "{1, 2, 3}");
    check_format(L, "{a = 1, b = {2, 3}}", "{a = 1, b = {2, 3}}");
    check_format(L, "{'x', s = 'q\\nz'}", "{\"x\", s = \"q\\nz\"}");
    /* keys sorted: numbers, then strings, then booleans; non-identifiers bracketed */
    check_format(L, "{[true] = 1, z = 2, ['a b'] = 3, [2.5] = 4, ['end'] = 5}",
                 "{[2.5] = 4, [\"a b\"] = 3, [\"end\"] = 5, z = 2, [true] = 1}");
    /* the sequence part stops at the first hole; later integers print with their keys */
    check_format(L, "{1, 2, nil, 4}", "{1, 2, [4] = 4}");
}

static void test_format_cycles_depth_limits(void **state)
{
    lua_State *L = *state;
    check_format(L, "(function() local t = {} t.self = t return t end)()", "{self = <cycle>}");
    /* a table seen twice but not inside itself is no cycle */
    check_format(L, "(function() local s = {1} return {s, s} end)()", "{{1}, {1}}");
    check_format(L, "{{{{{{{{{{1}}}}}}}}}}", "{{{{{{{{{...}}}}}}}}}");
    int top = lua_gettop(L);
    assert_int_equal(luaL_dostring(L, "local t = {} for i = 1, 150 do t[i] = i end return t"),
                     LUA_OK);
    assert_int_equal(luray_repl_format(L, -1, 1), LUA_OK);
    const char *s = lua_tostring(L, -1);
    assert_non_null(strstr(s, "... (50 more)"));
    assert_non_null(strstr(s, "100,"));
    assert_null(strstr(s, "101"));
    assert_true(strchr(s, '\n') != NULL); /* too wide for one line */
    lua_settop(L, top);
}

static void test_format_tostring_meta(void **state)
{
    lua_State *L = *state;
    assert_int_equal(luaL_dostring(L, "Ref = setmetatable({}, {__tostring = function() "
                                      "return 'ObjectRef(00ab)' end})"),
                     LUA_OK);
    check_format(L, "Ref", "ObjectRef(00ab)");
    check_format(L, "{r = Ref, 'x'}", "{\"x\", r = ObjectRef(00ab)}");
    /* a __tostring that raises is an error, not a crash */
    assert_int_equal(luaL_dostring(L, "Bad = setmetatable({}, {__tostring = function() "
                                      "error('no print') end})"),
                     LUA_OK);
    lua_getglobal(L, "Bad");
    assert_int_not_equal(luray_repl_format(L, -1, 1), LUA_OK);
    assert_non_null(strstr(lua_tostring(L, -1), "no print"));
    lua_pop(L, 2);
}

static void test_pcall_traceback(void **state)
{
    lua_State *L = *state;
    int top = lua_gettop(L);
    assert_int_equal(luaL_loadstring(L, "local a, b = ... return a + b, 'ok'"), LUA_OK);
    lua_pushinteger(L, 2);
    lua_pushinteger(L, 5);
    assert_int_equal(luray_lua_pcall_traceback(L, 2, 2), LUA_OK);
    assert_int_equal(lua_gettop(L), top + 2);
    assert_int_equal(lua_tointeger(L, -2), 7);
    lua_settop(L, top);

    assert_int_equal(luaL_loadstring(L, "local function inner() error('boom') end inner()"),
                     LUA_OK);
    assert_int_equal(luray_lua_pcall_traceback(L, 0, 0), LUA_ERRRUN);
    assert_int_equal(lua_gettop(L), top + 1); /* only the message, handler removed */
    const char *msg = lua_tostring(L, -1);
    assert_non_null(strstr(msg, "boom"));
    assert_non_null(strstr(msg, "stack traceback:"));
    assert_non_null(strstr(msg, "inner"));
    lua_settop(L, top);

    /* error tables print through their __tostring */
    assert_int_equal(luaL_loadstring(L, "error(setmetatable({}, {__tostring = function() "
                                        "return 'TaskError: remote failure' end}))"),
                     LUA_OK);
    assert_int_equal(luray_lua_pcall_traceback(L, 0, 0), LUA_ERRRUN);
    assert_non_null(strstr(lua_tostring(L, -1), "TaskError: remote failure"));
    lua_settop(L, top);

    assert_int_equal(luaL_loadstring(L, "error({})"), LUA_OK);
    assert_int_equal(luray_lua_pcall_traceback(L, 0, 0), LUA_ERRRUN);
    assert_non_null(strstr(lua_tostring(L, -1), "(error object is a table value)"));
    lua_settop(L, top);
}

/* Runs fn with fd 2 sent to a temporary file; returns what was written (free it). */
static char *capture_stderr(void (*fn)(lua_State *), lua_State *L)
{
    char path[] = "/tmp/luray-test-repl-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    fn(L);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    off_t len = lseek(fd, 0, SEEK_END);
    char *out = calloc(1, (size_t)len + 1);
    assert_non_null(out);
    assert_int_equal(pread(fd, out, (size_t)len, 0), len);
    close(fd);
    return out;
}

static void report_string(lua_State *L)
{
    lua_pushstring(L, "plain message");
    luray_lua_report(L, LUA_ERRRUN);
}

static void report_raising_tostring(lua_State *L)
{
    (void)luaL_dostring(L, "return setmetatable({}, {__tostring = function() error('x') end})");
    luray_lua_report(L, LUA_ERRRUN);
}

static void test_report(void **state)
{
    lua_State *L = *state;
    int top = lua_gettop(L);
    char *out = capture_stderr(report_string, L);
    assert_string_equal(out, "plain message\n");
    assert_int_equal(lua_gettop(L), top);
    free(out);
    out = capture_stderr(report_raising_tostring, L);
    assert_string_equal(out, "(error object is a table value)\n");
    assert_int_equal(lua_gettop(L), top);
    free(out);
    lua_pushstring(L, "kept");
    luray_lua_report(L, LUA_OK); /* nothing to report: stack untouched */
    assert_int_equal(lua_gettop(L), top + 1);
    lua_settop(L, top);
}

/* Points stdin at a file holding src and runs the REPL in its non-interactive mode. */
static int run_script(lua_State *L, const char *src)
{
    char path[] = "/tmp/luray-test-repl-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, src, strlen(src)), (ssize_t)strlen(src));
    close(fd);
    assert_non_null(freopen(path, "r", stdin));
    unlink(path);
    luray_repl_opts_t opts = {.interactive = false};
    return luray_repl_run(L, &opts);
}

static int g_last_rc;

static void run_failing_script(lua_State *L)
{
    g_last_rc = run_script(L, "local x = 1\nlocal function f() error('script failed') end\nf()\n");
}

static void run_bad_syntax(lua_State *L)
{
    g_last_rc = run_script(L, "x = = 1\n");
}

static void test_run_stdin(void **state)
{
    lua_State *L = *state;
    assert_int_equal(run_script(L, "#!/usr/bin/env luray\nx = 1 + 2\ny = 'line ' .. "
                                   "debug.getinfo(1, 'l').currentline\n"),
                     0);
    lua_getglobal(L, "x");
    assert_int_equal(lua_tointeger(L, -1), 3);
    lua_getglobal(L, "y");
    assert_string_equal(lua_tostring(L, -1), "line 3"); /* the #! line still counts */
    lua_pop(L, 2);
    assert_int_equal(run_script(L, ""), 0);

    char *err = capture_stderr(run_failing_script, L);
    assert_int_equal(g_last_rc, 1);
    assert_non_null(strstr(err, "stdin:2: script failed"));
    assert_non_null(strstr(err, "stack traceback:"));
    free(err);

    err = capture_stderr(run_bad_syntax, L);
    assert_int_equal(g_last_rc, 1);
    assert_non_null(strstr(err, "stdin:1:"));
    free(err);
    assert_int_equal(lua_gettop(L), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_format_scalars, setup, teardown),
        cmocka_unit_test_setup_teardown(test_format_tables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_format_cycles_depth_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_format_tostring_meta, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pcall_traceback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_stdin, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
