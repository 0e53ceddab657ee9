/* Lua bindings of collective groups: C.group(spec) makes a Group ("collective.Group") with
 * allreduce, broadcast, barrier and close; C.free_port picks a tcp port. Only this layer raises
 * Lua errors; coll_group.c reports codes and messages. */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "coll.h"
#include "lua_coll.h"

#define GROUP_MT "collective.Group"
#define DEFAULT_TIMEOUT_S 60.0

/* Lua owns the box; the group itself lives until close or collection. */
typedef struct {
    coll_group_t *g;
} lgroup_t;

bool coll_tensor_contiguous(const luray_tensor_t *t)
{
    int64_t expect = 1;

    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] == 0)
            return true;
        if (t->shape[d] != 1 && t->strides[d] != expect)
            return false;
        expect *= t->shape[d];
    }
    return true;
}

static lgroup_t *check_group(lua_State *L, int idx)
{
    lgroup_t *u = luaL_checkudata(L, idx, GROUP_MT);

    if (!u->g)
        luaL_error(L, "the group is closed");
    return u;
}

/* ---- C.group(spec) ---- */

static const char *opt_string_field(lua_State *L, int t, const char *key)
{
    const char *s = NULL;

    if (lua_getfield(L, t, key) != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "group: '%s' must be a string, got a %s", key, luaL_typename(L, -1));
        s = lua_tostring(L, -1);
    }
    lua_pop(L, 1); /* the string stays alive in the spec table */
    return s;
}

static int int_field(lua_State *L, int t, const char *key)
{
    lua_Integer v;
    int isint;

    lua_getfield(L, t, key);
    v = lua_tointegerx(L, -1, &isint);
    if (!isint || v < 0 || v > COLL_WORLD_MAX)
        luaL_error(L, "group: '%s' must be an integer from 0 to %d", key, COLL_WORLD_MAX);
    lua_pop(L, 1);
    return (int)v;
}

/* Fills addrs from spec.addresses: a list of exactly world strings. */
static void addresses_field(lua_State *L, int t, int world, const char **addrs)
{
    if (lua_getfield(L, t, "addresses") != LUA_TTABLE)
        luaL_error(L, "group: the tcp transport needs 'addresses', a list of %d \"host:port\" "
                   "strings", world);
    if ((int)lua_rawlen(L, -1) != world)
        luaL_error(L, "group: 'addresses' has %d entries, world_size is %d",
                   (int)lua_rawlen(L, -1), world);
    for (int k = 0; k < world; k++) {
        if (lua_rawgeti(L, -1, k + 1) != LUA_TSTRING)
            luaL_error(L, "group: addresses[%d] is not a string", k + 1);
        addrs[k] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* "auto": shared memory when every rank's node (spec.nodes) is the same, else tcp. */
static bool same_node(lua_State *L, int t, int world)
{
    bool same = true;

    if (lua_getfield(L, t, "nodes") != LUA_TTABLE || (int)lua_rawlen(L, -1) != world)
        luaL_error(L, "group: transport \"auto\" needs 'nodes', a list of %d node ids", world);
    lua_rawgeti(L, -1, 1);
    for (int k = 2; k <= world && same; k++) {
        lua_rawgeti(L, -2, k);
        same = lua_rawequal(L, -1, -2);
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
    return same;
}

static int l_group(lua_State *L)
{
    const char **addrs = NULL;
    char err[COLL_ERR_MAX];
    coll_spec_t spec = {0};
    const char *transport;
    lgroup_t *u;
    int rc;

    luaL_checktype(L, 1, LUA_TTABLE);
    spec.id = opt_string_field(L, 1, "id");
    if (!spec.id)
        return luaL_error(L, "group: 'id' (a string naming the group) is required");
    spec.rank = int_field(L, 1, "rank");
    spec.world_size = int_field(L, 1, "world_size");
    if (spec.world_size < 1)
        return luaL_error(L, "group: 'world_size' must be at least 1");
    spec.timeout_s = DEFAULT_TIMEOUT_S;
    if (lua_getfield(L, 1, "timeout_s") != LUA_TNIL) {
        if (!lua_isnumber(L, -1))
            return luaL_error(L, "group: 'timeout_s' must be a number");
        spec.timeout_s = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    transport = opt_string_field(L, 1, "transport");
    if (!transport) {
        lua_getfield(L, 1, "nodes");
        transport = lua_isnil(L, -1) ? "shm" : "auto";
        lua_pop(L, 1);
    }
    if (strcmp(transport, "auto") == 0)
        transport = same_node(L, 1, spec.world_size) ? "shm" : "tcp";
    if (strcmp(transport, "shm") == 0) {
        spec.transport = COLL_SHM;
    } else if (strcmp(transport, "tcp") == 0) {
        spec.transport = COLL_TCP;
        addrs = lua_newuserdatauv(L, (size_t)spec.world_size * sizeof *addrs, 0);
        addresses_field(L, 1, spec.world_size, addrs);
        spec.addresses = addrs;
    } else {
        return luaL_error(L, "group: unknown transport '%s' (shm, tcp or auto)", transport);
    }

    u = lua_newuserdatauv(L, sizeof *u, 0);
    u->g = NULL;
    luaL_setmetatable(L, GROUP_MT);
    if ((rc = coll_group_open(&spec, &u->g, err, sizeof err)) < 0)
        return luaL_error(L, "%s", err);
    return 1;
}

static int l_free_port(lua_State *L)
{
    const char *host = luaL_optstring(L, 1, "127.0.0.1");
    char err[COLL_ERR_MAX];
    int port = coll_free_port(host, err, sizeof err);

    if (port < 0)
        return luaL_error(L, "%s", err);
    lua_pushinteger(L, port);
    return 1;
}

/* ---- Group methods ---- */

static luray_tensor_t *check_tensor(lua_State *L, int idx, const char *what)
{
    luray_tensor_t *t = coll_host->tensor_test(L, idx);

    if (!t)
        luaL_error(L, "%s: expected a tensor, got a %s", what, luaL_typename(L, idx));
    if (!t->data && t->nbytes)
        luaL_error(L, "%s: the tensor is closed", what);
    if (!coll_tensor_contiguous(t))
        luaL_error(L, "%s: the tensor is not contiguous; pass t:clone()", what);
    return t;
}

/* Reduces the tensor at idx: in place, or (copy) into a new tensor pushed on the stack. */
static void allreduce_one(lua_State *L, lgroup_t *u, int idx, int op, bool copy)
{
    luray_tensor_t *t = check_tensor(L, idx, "allreduce"), *dst = t;
    size_t es = coll_host->dtype_size(t->dtype);
    char err[COLL_ERR_MAX];

    if (t->dtype != LURAY_DTYPE_FLOAT32 && t->dtype != LURAY_DTYPE_FLOAT64)
        luaL_error(L, "allreduce: dtype %s is not supported (float32 or float64)",
                   coll_dtype_name(t->dtype));
    if (copy) {
        dst = coll_host->tensor_push(L);
        if (coll_host->tensor_init(dst, t->dtype, t->ndim, t->shape, false) < 0)
            luaL_error(L, "allreduce: not enough memory for the result");
    } else if (t->readonly) {
        luaL_error(L, "allreduce: the tensor is read-only; pass {copy = true} or t:clone()");
    }
    if (coll_allreduce(u->g, t->data, dst->data, t->nbytes / es, t->dtype, (coll_op_t)op, err,
                       sizeof err) < 0)
        luaL_error(L, "%s", err);
}

/* g:allreduce(tensor_or_list, op = "sum", {copy = false}) */
static int l_group_allreduce(lua_State *L)
{
    lgroup_t *u = check_group(L, 1);
    const char *opname = luaL_optstring(L, 3, "sum");
    int op = coll_op_parse(opname);
    bool copy = false;

    if (op < 0)
        return luaL_error(L, "allreduce: unknown op '%s' (sum, mean or max)", opname);
    if (!lua_isnoneornil(L, 4)) {
        luaL_checktype(L, 4, LUA_TTABLE);
        lua_getfield(L, 4, "copy");
        copy = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    if (coll_host->tensor_test(L, 2)) {
        allreduce_one(L, u, 2, op, copy);
        if (!copy)
            lua_pushvalue(L, 2);
        return 1;
    }
    if (!lua_istable(L, 2))
        return luaL_error(L, "allreduce: expected a tensor or a list of tensors, got a %s",
                          luaL_typename(L, 2));
    lua_settop(L, 2);
    if (copy)
        lua_createtable(L, (int)lua_rawlen(L, 2), 0);
    for (lua_Integer i = 1, n = (lua_Integer)lua_rawlen(L, 2); i <= n; i++) {
        lua_rawgeti(L, 2, i);
        allreduce_one(L, u, lua_gettop(L), op, copy);
        if (copy)
            lua_rawseti(L, 3, i);
        lua_settop(L, copy ? 3 : 2);
    }
    return 1;
}

/* g:broadcast(tensor, root = 0): root's data into every other rank's tensor. */
static int l_group_broadcast(lua_State *L)
{
    lgroup_t *u = check_group(L, 1);
    luray_tensor_t *t = check_tensor(L, 2, "broadcast");
    lua_Integer root = luaL_optinteger(L, 3, 0);
    char err[COLL_ERR_MAX];

    if (root < 0 || root >= coll_group_world_size(u->g))
        return luaL_error(L, "broadcast: root must be a rank from 0 to %d",
                          coll_group_world_size(u->g) - 1);
    if (t->readonly && root != coll_group_rank(u->g))
        return luaL_error(L, "broadcast: the tensor is read-only; pass t:clone()");
    if (coll_broadcast(u->g, t->data, t->nbytes, (int)root, err, sizeof err) < 0)
        return luaL_error(L, "%s", err);
    lua_settop(L, 2);
    return 1;
}

static int l_group_barrier(lua_State *L)
{
    lgroup_t *u = check_group(L, 1);
    char err[COLL_ERR_MAX];

    if (coll_barrier(u->g, err, sizeof err) < 0)
        return luaL_error(L, "%s", err);
    return 0;
}

/* One release path for close, __close and __gc. */
static int l_group_close(lua_State *L)
{
    lgroup_t *u = luaL_checkudata(L, 1, GROUP_MT);

    coll_group_free(u->g);
    u->g = NULL;
    return 0;
}

static int l_group_rank(lua_State *L)
{
    lua_pushinteger(L, coll_group_rank(check_group(L, 1)->g));
    return 1;
}

static int l_group_world_size(lua_State *L)
{
    lua_pushinteger(L, coll_group_world_size(check_group(L, 1)->g));
    return 1;
}

static int l_group_id(lua_State *L)
{
    lua_pushstring(L, coll_group_id(check_group(L, 1)->g));
    return 1;
}

static int l_group_transport(lua_State *L)
{
    lua_pushstring(L, coll_group_transport(check_group(L, 1)->g) == COLL_TCP ? "tcp" : "shm");
    return 1;
}

static int l_group_tostring(lua_State *L)
{
    lgroup_t *u = luaL_checkudata(L, 1, GROUP_MT);

    if (!u->g)
        lua_pushliteral(L, "Group(closed)");
    else
        lua_pushfstring(L, "Group(%s, rank %d of %d, %s)", coll_group_id(u->g),
                        coll_group_rank(u->g), coll_group_world_size(u->g),
                        coll_group_transport(u->g) == COLL_TCP ? "tcp" : "shm");
    return 1;
}

void coll_group_open_lua(lua_State *L, int module)
{
    static const luaL_Reg methods[] = {
        {"allreduce", l_group_allreduce},
        {"broadcast", l_group_broadcast},
        {"barrier", l_group_barrier},
        {"close", l_group_close},
        {"rank", l_group_rank},
        {"world_size", l_group_world_size},
        {"id", l_group_id},
        {"transport", l_group_transport},
        {"__gc", l_group_close},
        {"__close", l_group_close},
        {"__tostring", l_group_tostring},
        {NULL, NULL},
    };
    static const luaL_Reg funcs[] = {
        {"group", l_group},
        {"free_port", l_free_port},
        {NULL, NULL},
    };

    module = lua_absindex(L, module);
    if (luaL_newmetatable(L, GROUP_MT)) {
        luaL_setfuncs(L, methods, 0);
        lua_pushvalue(L, -1);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    lua_pushvalue(L, module);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
}
