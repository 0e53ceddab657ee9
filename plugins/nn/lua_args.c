/* Argument checks, error messages and Lua names shared by the bindings of both nn backends
 * (lua_args.h). */
#include "lua_args.h"

#include <stdio.h>

#include <lauxlib.h>

#include "luray/tensor.h"

const char *const nn_binary_names[] = {"add", "sub", "mul", "div", "pow", "eq",
                                       "ne",  "lt",  "le",  "gt",  "ge",  NULL};
const char *const nn_unary_names[] = {"neg", "exp", "log", "relu", "sigmoid", "tanh", NULL};
const char *const nn_dtype_names[] = {"float32", "float64", "int32", "int64",
                                      "uint8",   "bool",    NULL};
const char *const nn_pair_loss_names[] = {"mse", "bce", "bce_with_logits", NULL};

static const char *const reductions[] = {"mean", "sum", NULL};

const char *nn_dtype_name(int dtype)
{
    return dtype >= 0 && dtype < LURAY_DTYPE_COUNT ? nn_dtype_names[dtype] : "unknown";
}

const char *nn_push_shape_string(lua_State *L, const nn_shape_t *s)
{
    luaL_Buffer b;
    char num[32];

    luaL_buffinit(L, &b);
    luaL_addchar(&b, '{');
    for (int i = 0; i < s->ndim; i++) {
        snprintf(num, sizeof num, i ? ", %lld" : "%lld", (long long)s->dim[i]);
        luaL_addstring(&b, num);
    }
    luaL_addchar(&b, '}');
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

void nn_set_closures(lua_State *L, int idx, const char *const *names, const char *suffix,
                     lua_CFunction fn)
{
    idx = lua_absindex(L, idx);
    for (int i = 0; names[i]; i++) {
        lua_pushfstring(L, "%s%s", names[i], suffix);
        lua_pushinteger(L, i);
        lua_pushcclosure(L, fn, 1);
        lua_settable(L, idx);
    }
}

void nn_check_dims(lua_State *L, int arg, nn_shape_t *s)
{
    if (lua_isinteger(L, arg)) {
        s->ndim = 1;
        s->dim[0] = lua_tointeger(L, arg);
        if (s->dim[0] < 0)
            luaL_argerror(L, arg, "dimensions must be non-negative");
        return;
    }
    luaL_checktype(L, arg, LUA_TTABLE);
    lua_Integer n = (lua_Integer)lua_rawlen(L, arg);
    if (n > NN_MAX_DIMS)
        luaL_argerror(L, arg, lua_pushfstring(L, "a shape has at most %d dimensions, got %I",
                                              NN_MAX_DIMS, n));
    s->ndim = (int)n;
    for (lua_Integer i = 1; i <= n; i++) {
        int isnum;
        lua_Integer v;

        lua_rawgeti(L, arg, i);
        v = lua_tointegerx(L, -1, &isnum);
        lua_pop(L, 1);
        if (!isnum || v < 0)
            luaL_argerror(L, arg, lua_pushfstring(L, "shape[%I] is not a non-negative integer",
                                                  i));
        s->dim[i - 1] = v;
    }
}

int nn_check_axis(lua_State *L, int arg, int ndim)
{
    lua_Integer d = luaL_checkinteger(L, arg);

    if (d < 0)
        d += ndim + 1;
    if (d < 1 || d > ndim)
        luaL_argerror(L, arg, lua_pushfstring(L, "dimension %I out of range for a %d-dimensional "
                                                 "tensor", luaL_checkinteger(L, arg), ndim));
    return (int)d - 1;
}

bool nn_check_mean(lua_State *L, int arg)
{
    return luaL_checkoption(L, arg, "mean", reductions) == 0;
}

void nn_check_broadcast(lua_State *L, const char *op, const nn_shape_t *a, const nn_shape_t *b,
                        nn_shape_t *out)
{
    if (nn_shape_broadcast(a, b, out) < 0) {
        const char *bs = nn_push_shape_string(L, b);
        luaL_error(L, "%s: shapes %s and %s do not broadcast", op, nn_push_shape_string(L, a),
                   bs);
    }
}

void nn_check_copy_sizes(lua_State *L, const nn_shape_t *dst, const nn_shape_t *src)
{
    if (nn_shape_numel(dst) != nn_shape_numel(src)) {
        const char *b = nn_push_shape_string(L, src);
        luaL_error(L, "copy: cannot copy a tensor of shape %s into one of shape %s", b,
                   nn_push_shape_string(L, dst));
    }
}

void nn_check_row_range(lua_State *L, lua_Integer first, lua_Integer count, int64_t rows)
{
    if (first < 1 || count < 0 || first - 1 > rows - count)
        luaL_error(L, "rows %I..%I out of range for a tensor of %I rows", first,
                   first + count - 1, (lua_Integer)rows);
}

void nn_read_position_list(lua_State *L, int arg, int64_t *idx, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        int isnum;

        lua_rawgeti(L, arg, (lua_Integer)i + 1);
        idx[i] = (int64_t)lua_tointegerx(L, -1, &isnum) - 1;
        lua_pop(L, 1);
        if (!isnum)
            luaL_error(L, "index list: element %I is not an integer", (lua_Integer)i + 1);
    }
}

void nn_check_positions(lua_State *L, const int64_t *idx, int64_t n, int64_t rows)
{
    for (int64_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= rows)
            luaL_error(L, "index %I out of range for a tensor of %I rows",
                       (lua_Integer)idx[i] + 1, (lua_Integer)rows);
}

void nn_check_reduction(lua_State *L, const nn_shape_t *s, int arg, nn_reduction_t *r)
{
    bool keep = lua_toboolean(L, arg + 1);

    r->axis = lua_isnoneornil(L, arg) ? -1 : nn_check_axis(L, arg, s->ndim);
    r->outer = 1;
    r->inner = 1;
    r->out.ndim = 0;
    if (r->axis < 0) {
        r->len = nn_shape_numel(s);
        if (keep) {
            r->out.ndim = s->ndim;
            for (int d = 0; d < s->ndim; d++)
                r->out.dim[d] = 1;
        }
        return;
    }
    r->len = s->dim[r->axis];
    for (int d = 0; d < s->ndim; d++) {
        if (d < r->axis)
            r->outer *= s->dim[d];
        else if (d > r->axis)
            r->inner *= s->dim[d];
        if (d != r->axis)
            r->out.dim[r->out.ndim++] = s->dim[d];
        else if (keep)
            r->out.dim[r->out.ndim++] = 1;
    }
}

void nn_check_softmax_rows(lua_State *L, int arg, const nn_shape_t *s, int64_t *rows,
                           int64_t *cols)
{
    if (s->ndim < 1)
        luaL_argerror(L, arg, "softmax needs a tensor of at least one dimension");
    *cols = s->dim[s->ndim - 1];
    *rows = *cols ? nn_shape_numel(s) / *cols : 0;
}

void nn_check_loss_shapes(lua_State *L, const char *name, const nn_shape_t *ps,
                          const nn_shape_t *ts)
{
    nn_shape_t pk = {0, {0}}, tk = {0, {0}};

    for (int d = 0; d < ps->ndim; d++)
        if (ps->dim[d] != 1)
            pk.dim[pk.ndim++] = ps->dim[d];
    for (int d = 0; d < ts->ndim; d++)
        if (ts->dim[d] != 1)
            tk.dim[tk.ndim++] = ts->dim[d];
    if (!nn_shape_eq(&pk, &tk)) {
        const char *b = nn_push_shape_string(L, ts);
        luaL_error(L, "%s: prediction of shape %s and target of shape %s differ", name,
                   nn_push_shape_string(L, ps), b);
    }
}

void nn_check_sgd_opts(lua_State *L, int arg, nn_sgd_opts_t *o)
{
    o->lr = (float)luaL_checknumber(L, arg);
    o->momentum = (float)luaL_checknumber(L, arg + 1);
    o->dampening = (float)luaL_checknumber(L, arg + 2);
    o->weight_decay = (float)luaL_checknumber(L, arg + 3);
    o->nesterov = lua_toboolean(L, arg + 4);
}

void nn_check_adam_opts(lua_State *L, int arg, nn_adam_opts_t *o)
{
    o->lr = (float)luaL_checknumber(L, arg);
    o->beta1 = (float)luaL_checknumber(L, arg + 1);
    o->beta2 = (float)luaL_checknumber(L, arg + 2);
    o->eps = (float)luaL_checknumber(L, arg + 3);
    o->weight_decay = (float)luaL_checknumber(L, arg + 4);
    o->decoupled = lua_toboolean(L, arg + 5);
}
