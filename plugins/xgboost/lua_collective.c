/* Distributed training with xgboost's own collective: the rabit tracker (tracker.c) as a Lua
 * handle ("xgboost.Tracker"), and a worker's side, XGCommunicatorInit and friends. libxgboost
 * keeps its communicator per thread: init, training and finalize must run on one thread, which
 * the Lua state's thread is. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "lua_xgb.h"
#include "tracker.h"

#define ERR_LEN 512
/* rabit copies each "key=value" into 256-byte buffers: longer ones would overflow them. */
#define RABIT_ARG_MAX 200

typedef struct {
    xgb_tracker_t *t; /* NULL once closed */
} tracker_box_t;

/* Whether this process joined a collective through rabit_init (libxgboost keeps the same
 * state, per thread; the Lua state runs on one). */
static bool communicator_up;

static void tracker_print(void *ctx, const char *msg)
{
    (void)ctx;
    if (xgb_host != NULL)
        xgb_host->log(2, "xgboost", "tracker: %s", msg);
}

static tracker_box_t *tracker_check(lua_State *L, int idx)
{
    tracker_box_t *box = luaL_checkudata(L, idx, XGB_TRACKER_MT);
    if (box->t == NULL)
        luaL_error(L, "the tracker was closed");
    return box;
}

/* tracker_start(n_workers [, host [, port]]): {host=, port=, handle=} with the tracker serving
 * n_workers on a background thread; host defaults to 127.0.0.1, port to a free one. */
static int l_tracker_start(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    const char *host = luaL_optstring(L, 2, "127.0.0.1");
    lua_Integer port = luaL_optinteger(L, 3, 0);
    if (n < 1 || n > 65536)
        return luaL_error(L, "tracker_start: n_workers %I is out of range (1..65536)", n);
    if (port < 0 || port > 65535)
        return luaL_error(L, "tracker_start: port %I is out of range", port);
    lua_createtable(L, 0, 3);
    tracker_box_t *box = lua_newuserdatauv(L, sizeof(*box), 0);
    box->t = NULL;
    luaL_setmetatable(L, XGB_TRACKER_MT);
    char err[ERR_LEN];
    if (xgb_tracker_start(&box->t, (int)n, host, (int)port, tracker_print, NULL, err,
                          sizeof(err)) != 0)
        return luaL_error(L, "tracker_start: %s", err);
    lua_setfield(L, -2, "handle");
    lua_pushstring(L, host);
    lua_setfield(L, -2, "host");
    lua_pushinteger(L, xgb_tracker_port(box->t));
    lua_setfield(L, -2, "port");
    return 1;
}

static const char *state_name(xgb_tracker_state_t s)
{
    switch (s) {
    case XGB_TRACKER_RUNNING: return "running";
    case XGB_TRACKER_DONE: return "done";
    case XGB_TRACKER_FAILED: return "failed";
    default: return "stopped";
    }
}

/* handle:wait([seconds]): true once every worker has shut down, false when the time ran out;
 * raises when the job failed. Without seconds it waits as long as it takes. */
static int l_tracker_wait(lua_State *L)
{
    tracker_box_t *box = tracker_check(L, 1);
    int ms = -1;
    if (!lua_isnoneornil(L, 2)) {
        lua_Number s = luaL_checknumber(L, 2);
        ms = s <= 0 ? 0 : s > 2e6 ? 2000000000 : (int)(s * 1000);
    }
    char err[ERR_LEN];
    xgb_tracker_state_t st = xgb_tracker_wait(box->t, ms, err, sizeof(err));
    if (st == XGB_TRACKER_FAILED)
        return luaL_error(L, "xgboost tracker: %s", err);
    if (st == XGB_TRACKER_STOPPED)
        return luaL_error(L, "xgboost tracker: stopped before the workers finished");
    lua_pushboolean(L, st == XGB_TRACKER_DONE);
    return 1;
}

/* handle:state(): "running", "done", "failed" (and why) or "stopped". */
static int l_tracker_state(lua_State *L)
{
    tracker_box_t *box = tracker_check(L, 1);
    char err[ERR_LEN];
    xgb_tracker_state_t st = xgb_tracker_wait(box->t, 0, err, sizeof(err));
    lua_pushstring(L, state_name(st));
    if (st == XGB_TRACKER_FAILED) {
        lua_pushstring(L, err);
        return 2;
    }
    return 1;
}

static int l_tracker_close(lua_State *L)
{
    tracker_box_t *box = luaL_checkudata(L, 1, XGB_TRACKER_MT);
    xgb_tracker_free(box->t);
    box->t = NULL;
    return 0;
}

static int l_tracker_tostring(lua_State *L)
{
    tracker_box_t *box = luaL_checkudata(L, 1, XGB_TRACKER_MT);
    if (box->t == NULL) {
        lua_pushliteral(L, "Tracker(closed)");
        return 1;
    }
    xgb_tracker_state_t st = xgb_tracker_wait(box->t, 0, NULL, 0);
    lua_pushfstring(L, "Tracker(port %d, %s)", xgb_tracker_port(box->t), state_name(st));
    return 1;
}

/* Pushes the JSON text `, "key": "value"`, refusing what rabit cannot take. */
static void push_json_arg(lua_State *L, const char *key, const char *value)
{
    if (strlen(key) + strlen(value) + 1 > RABIT_ARG_MAX)
        luaL_error(L, "rabit_init: %s=%s is longer than rabit takes (%d)", key, value,
                   RABIT_ARG_MAX);
    for (const char *p = value; *p; p++) {
        if (*p == '"' || *p == '\\' || (unsigned char)*p <= ' ')
            luaL_error(L, "rabit_init: the value of %s holds a space, quote or control "
                       "character", key);
    }
    lua_pushfstring(L, ", \"%s\": \"%s\"", key, value);
}

/* The rabit name of a rabit_init key: the four short names, or rabit_* / DMLC_* as given. */
static const char *rabit_key(const char *key)
{
    static const char *const map[][2] = {{"tracker_uri", "rabit_tracker_uri"},
                                         {"tracker_port", "rabit_tracker_port"},
                                         {"task_id", "rabit_task_id"},
                                         {"world_size", "rabit_world_size"}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (strcmp(key, map[i][0]) == 0)
            return map[i][1];
    }
    if (strncmp(key, "rabit_", 6) == 0 || strncmp(key, "DMLC_", 5) == 0)
        return key;
    return NULL;
}

/* rabit_init{tracker_uri=, tracker_port=, task_id=, world_size=, rabit_*=...}: joins the job of
 * the tracker there and returns this worker's rank. Blocks until every worker has joined (the
 * tracker hands out ranks then). */
static int l_rabit_init(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    if (communicator_up)
        return luaL_error(L, "rabit_init: this process already joined a collective; call "
                          "rabit_finalize first");
    lua_getfield(L, 1, "tracker_uri");
    lua_getfield(L, 1, "tracker_port");
    if (lua_type(L, -2) != LUA_TSTRING || !lua_isinteger(L, -1))
        return luaL_error(L, "rabit_init: needs tracker_uri (a string) and tracker_port (an "
                          "integer)");
    lua_pop(L, 2);
    lua_newtable(L); /* the JSON pieces, joined below */
    int pieces = lua_gettop(L);
    lua_pushliteral(L, "{\"xgboost_communicator\": \"rabit\"");
    lua_rawseti(L, pieces, 1);
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        const char *rkey = key ? rabit_key(key) : NULL;
        if (rkey == NULL)
            return luaL_error(L, "rabit_init: unknown key %s (expected tracker_uri, "
                              "tracker_port, task_id, world_size, rabit_* or DMLC_*)",
                              key ? key : luaL_typename(L, -2));
        int t = lua_type(L, -1);
        if (t != LUA_TSTRING && !(t == LUA_TNUMBER && lua_isinteger(L, -1)))
            return luaL_error(L, "rabit_init: %s is a %s, expected a string or an integer", key,
                              luaL_typename(L, -1));
        lua_pushvalue(L, -1);
        push_json_arg(L, rkey, lua_tostring(L, -1));
        lua_rawseti(L, pieces, (lua_Integer)lua_rawlen(L, pieces) + 1);
        lua_pop(L, 2); /* the value and its copy; the key stays for lua_next */
    }
    lua_pushliteral(L, "}");
    lua_rawseti(L, pieces, (lua_Integer)lua_rawlen(L, pieces) + 1);
    luaL_Buffer buf;
    luaL_buffinit(L, &buf);
    for (lua_Integer i = 1, n = (lua_Integer)lua_rawlen(L, pieces); i <= n; i++) {
        lua_rawgeti(L, pieces, i);
        luaL_addvalue(&buf);
    }
    luaL_pushresult(&buf);
    if (XGCommunicatorInit(lua_tostring(L, -1)) != 0)
        return xgb_raise(L, "rabit_init: XGCommunicatorInit");
    communicator_up = true;
    lua_pushinteger(L, XGCommunicatorGetRank());
    return 1;
}

/* rabit_finalize(): tells the tracker this worker is done and leaves the collective. */
static int l_rabit_finalize(lua_State *L)
{
    if (!communicator_up)
        return 0;
    communicator_up = false;
    if (XGCommunicatorFinalize() != 0)
        return xgb_raise(L, "rabit_finalize: XGCommunicatorFinalize");
    return 0;
}

static int l_rabit_rank(lua_State *L)
{
    lua_pushinteger(L, XGCommunicatorGetRank());
    return 1;
}

static int l_rabit_world_size(lua_State *L)
{
    lua_pushinteger(L, XGCommunicatorGetWorldSize());
    return 1;
}

static int l_rabit_is_distributed(lua_State *L)
{
    lua_pushboolean(L, XGCommunicatorIsDistributed());
    return 1;
}

/* rabit_print(msg): the message shows up in the tracker's process (luray's log, info level). */
static int l_rabit_print(lua_State *L)
{
    if (XGCommunicatorPrint(luaL_checkstring(L, 1)) != 0)
        return xgb_raise(L, "rabit_print: XGCommunicatorPrint");
    return 0;
}

static const luaL_Reg tracker_methods[] = {
    {"wait", l_tracker_wait},
    {"state", l_tracker_state},
    {"close", l_tracker_close},
    {NULL, NULL},
};

static const luaL_Reg tracker_meta[] = {
    {"__gc", l_tracker_close},
    {"__close", l_tracker_close},
    {"__tostring", l_tracker_tostring},
    {NULL, NULL},
};

static const luaL_Reg collective_functions[] = {
    {"tracker_start", l_tracker_start},
    {"rabit_init", l_rabit_init},
    {"rabit_finalize", l_rabit_finalize},
    {"rabit_rank", l_rabit_rank},
    {"rabit_world_size", l_rabit_world_size},
    {"rabit_is_distributed", l_rabit_is_distributed},
    {"rabit_print", l_rabit_print},
    {NULL, NULL},
};

void xgb_collective_open(lua_State *L, int module_idx)
{
    luaL_newmetatable(L, XGB_TRACKER_MT);
    luaL_setfuncs(L, tracker_meta, 0);
    luaL_newlib(L, tracker_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_pushvalue(L, module_idx);
    luaL_setfuncs(L, collective_functions, 0);
    lua_pop(L, 1);
}
