/* Lua binding of the element-wise nn kernels (binary with broadcasting, unary, their gradients)
 * and of the tensor plumbing nn.lua needs: fills, copies, dtype conversion, transposes, row
 * views, row gathers. */
#include <string.h>

#include <lauxlib.h>

#include "lua_nn.h"
#include "nn_binary.h"
#include "nn_index.h"
#include "nn_unary.h"

/* Operands a and b (tensors or numbers) and their broadcast shape; raises when they do not
 * broadcast. */
typedef struct {
    const float *a, *b;
    float sa, sb;
    nn_shape_t as, bs, os;
} operands_t;

static void check_operands(lua_State *L, int arg, nn_binary_op_t op, operands_t *o)
{
    o->a = nn_check_operand(L, arg, &o->sa, &o->as);
    o->b = nn_check_operand(L, arg + 1, &o->sb, &o->bs);
    nn_check_broadcast(L, nn_binary_name(op), &o->as, &o->bs, &o->os);
}

/* C.<op>(a, b [, out]) for each binary op; the op is the upvalue. */
static int l_binary(lua_State *L)
{
    nn_binary_op_t op = (nn_binary_op_t)lua_tointeger(L, lua_upvalueindex(1));
    luray_tensor_t *out;
    operands_t o;

    check_operands(L, 1, op, &o);
    out = nn_push_out(L, 3, &o.os, false);
    nn_binary(op, o.a, &o.as, o.b, &o.bs, out->data, &o.os);
    return 1;
}

/* C.binary_backward(op, which, g, a, b [, out]): the gradient of operand `which` (1 or 2),
 * summed to its shape; out is the forward result (needed by pow). */
static int l_binary_backward(lua_State *L)
{
    nn_binary_op_t op = (nn_binary_op_t)luaL_checkoption(L, 1, NULL, nn_binary_names);
    lua_Integer which = luaL_checkinteger(L, 2);
    luray_tensor_t *g = nn_check_f32(L, 3), *dst;
    const float *fwd;
    nn_shape_t gs;
    operands_t o;

    luaL_argcheck(L, which == 1 || which == 2, 2, "expected 1 or 2");
    check_operands(L, 4, op, &o);
    nn_shape_of(g, &gs);
    if (!nn_shape_eq(&gs, &o.os))
        luaL_argerror(L, 3, "gradient shape differs from the broadcast shape");
    fwd = g->data;
    if (!lua_isnoneornil(L, 6)) {
        luray_tensor_t *out = nn_check_f32(L, 6);

        if ((int64_t)out->nbytes != nn_shape_numel(&o.os) * 4)
            luaL_argerror(L, 6, "forward result has the wrong size");
        fwd = out->data;
    }
    dst = nn_push_new(L, LURAY_DTYPE_FLOAT32, which == 1 ? &o.as : &o.bs, false);
    nn_binary_backward(op, (int)which - 1, g->data, o.a, &o.as, o.b, &o.bs, fwd, &o.os,
                       dst->data);
    return 1;
}

/* C.<op>(a [, out]) for each unary op; out may be a (in place). */
static int l_unary(lua_State *L)
{
    nn_unary_op_t op = (nn_unary_op_t)lua_tointeger(L, lua_upvalueindex(1));
    luray_tensor_t *a = nn_check_f32(L, 1), *out;
    nn_shape_t s;

    nn_shape_of(a, &s);
    out = nn_push_out(L, 2, &s, false);
    nn_unary(op, a->data, out->data, nn_shape_numel(&s));
    return 1;
}

/* C.unary_backward(op, g, a, out [, dst]): g * op'(a), from the forward input a and result
 * out; a may be nil for ops whose gradient needs only out; dst may be g (in place). */
static int l_unary_backward(lua_State *L)
{
    nn_unary_op_t op = (nn_unary_op_t)luaL_checkoption(L, 1, NULL, nn_unary_names);
    luray_tensor_t *g = nn_check_f32(L, 2), *a = NULL, *out = nn_check_f32(L, 4), *dst;
    nn_shape_t s;

    if (!nn_unary_grad_from_out(op) || !lua_isnoneornil(L, 3))
        a = nn_check_f32(L, 3);
    nn_shape_of(g, &s);
    if (out->nbytes != g->nbytes || (a && a->nbytes != g->nbytes))
        luaL_argerror(L, 2, "gradient and forward tensors differ in size");
    dst = nn_push_out(L, 5, &s, false);
    nn_unary_backward(op, g->data, a ? a->data : NULL, out->data, dst->data,
                      nn_shape_numel(&s));
    return 1;
}

/* C.full(shape, value): a new float32 tensor filled with value. */
static int l_full(lua_State *L)
{
    nn_shape_t s;
    float v;

    nn_check_shape(L, 1, &s);
    v = (float)luaL_checknumber(L, 2);
    luray_tensor_t *t = nn_push_new(L, LURAY_DTYPE_FLOAT32, &s, v == 0.0f);
    if (v != 0.0f)
        for (int64_t i = 0, n = nn_shape_numel(&s); i < n; i++)
            ((float *)t->data)[i] = v;
    return 1;
}

/* C.fill_(t, value): in place; returns t. */
static int l_fill(lua_State *L)
{
    luray_tensor_t *t = nn_check_f32(L, 1);
    float v = (float)luaL_checknumber(L, 2);
    int64_t n = (int64_t)(t->nbytes / 4);

    nn_check_writable(L, t, 1);
    if (v == 0.0f)
        memset(t->data, 0, t->nbytes);
    else
        for (int64_t i = 0; i < n; i++)
            ((float *)t->data)[i] = v;
    lua_settop(L, 1);
    return 1;
}

/* C.copy_(dst, src): copies the elements of src (any dtype, same count) into dst, converting. */
static int l_copy(lua_State *L)
{
    luray_tensor_t *dst = nn_check_tensor(L, 1), *src = nn_check_tensor(L, 2);
    nn_shape_t ds, ss;

    nn_check_writable(L, dst, 1);
    if (!nn_is_contiguous(dst))
        luaL_argerror(L, 1, "expected a contiguous tensor");
    nn_shape_of(dst, &ds);
    nn_shape_of(src, &ss);
    nn_check_copy_sizes(L, &ds, &ss);
    nn_convert(src->data, src->dtype, src->ndim, src->shape, src->strides, dst->data,
               dst->dtype);
    lua_settop(L, 1);
    return 1;
}

/* C.axpy_(dst, src [, alpha]): dst += alpha * src in place (same element count). */
static int l_axpy(lua_State *L)
{
    luray_tensor_t *dst = nn_check_f32(L, 1), *src = nn_check_f32(L, 2);
    float alpha = (float)luaL_optnumber(L, 3, 1.0);

    nn_check_writable(L, dst, 1);
    if (dst->nbytes != src->nbytes)
        luaL_argerror(L, 2, "tensors differ in size");
    nn_axpy(dst->data, alpha, src->data, (int64_t)(dst->nbytes / 4));
    lua_settop(L, 1);
    return 1;
}

/* C.convert(t, dtype): a new contiguous copy of t in dtype. */
static int l_convert(lua_State *L)
{
    luray_tensor_t *t = nn_check_tensor(L, 1), *out;
    int dtype = luaL_checkoption(L, 2, NULL, nn_dtype_names);
    nn_shape_t s;

    nn_shape_of(t, &s);
    out = nn_push_new(L, dtype, &s, false);
    nn_convert(t->data, t->dtype, t->ndim, t->shape, t->strides, out->data, dtype);
    return 1;
}

/* C.as_f32(t): t itself when it is contiguous float32, else a float32 copy. */
static int l_as_f32(lua_State *L)
{
    luray_tensor_t *t = nn_check_tensor(L, 1);

    if (t->dtype == LURAY_DTYPE_FLOAT32 && nn_is_contiguous(t)) {
        lua_settop(L, 1);
        return 1;
    }
    lua_settop(L, 1);
    lua_pushliteral(L, "float32");
    return l_convert(L);
}

/* C.transpose(a): a new 2-D tensor, the transpose of a. */
static int l_transpose(lua_State *L)
{
    luray_tensor_t *a = nn_check_f32(L, 1), *out;
    nn_shape_t s;

    if (a->ndim != 2)
        luaL_argerror(L, 1, lua_pushfstring(L, "transpose needs a 2-D tensor, got %d-D",
                                            a->ndim));
    s.ndim = 2;
    s.dim[0] = a->shape[1];
    s.dim[1] = a->shape[0];
    out = nn_push_new(L, LURAY_DTYPE_FLOAT32, &s, false);
    nn_transpose2d(a->data, a->shape[0], a->shape[1], out->data);
    return 1;
}

/* C.narrow(t, first, count): a view of rows first..first+count-1 (1-based) of a contiguous
 * tensor, sharing its memory (and its keeper, so the view keeps the memory alive). */
static int l_narrow(lua_State *L)
{
    luray_tensor_t *t = nn_check_tensor(L, 1), *v;
    lua_Integer first = luaL_checkinteger(L, 2), count = luaL_checkinteger(L, 3);
    int64_t shape[LURAY_TENSOR_MAX_DIMS];
    size_t row;
    int rc;

    if (t->ndim < 1 || !nn_is_contiguous(t))
        luaL_argerror(L, 1, "expected a contiguous tensor of at least one dimension");
    nn_check_row_range(L, first, count, t->shape[0]);
    memcpy(shape, t->shape, sizeof shape);
    shape[0] = count;
    row = t->shape[0] ? t->nbytes / (size_t)t->shape[0] : 0;
    v = nn_host->tensor_push(L);
    rc = nn_host->tensor_init_data(v, t->dtype, t->ndim, shape,
                                   (char *)t->data + (size_t)(first - 1) * row,
                                   (size_t)count * row, t->buf, t->readonly);
    if (rc < 0)
        luaL_error(L, "narrow: %s", nn_host->strerror(rc));
    lua_getiuservalue(L, 1, 1);
    lua_setiuservalue(L, -2, 1);
    return 1;
}

/* The positions at arg (a tensor or a list of integers, 1-based) as 0-based int64, pushed. */
static const int64_t *push_positions(lua_State *L, int arg, int64_t *n)
{
    const int64_t *src;
    int64_t *idx;

    if (lua_istable(L, arg)) {
        nn_shape_t s = {1, {(int64_t)lua_rawlen(L, arg)}};
        luray_tensor_t *t = nn_push_new(L, LURAY_DTYPE_INT64, &s, false);

        idx = t->data;
        nn_read_position_list(L, arg, idx, s.dim[0]);
        *n = s.dim[0];
        return idx;
    }
    src = nn_push_int64(L, arg, "index", n);
    idx = (int64_t *)src;
    for (int64_t i = 0; i < *n; i++)
        idx[i] -= 1;
    return idx;
}

/* C.gather_rows(t, positions): a new tensor of the rows of t (any dtype) at the 1-based
 * positions. */
static int l_gather_rows(lua_State *L)
{
    luray_tensor_t *t = nn_check_tensor(L, 1), *out;
    int64_t n, bad;
    const int64_t *idx;
    nn_shape_t s;
    size_t row;

    if (t->ndim < 1 || !nn_is_contiguous(t))
        luaL_argerror(L, 1, "expected a contiguous tensor of at least one dimension");
    idx = push_positions(L, 2, &n);
    nn_shape_of(t, &s);
    s.dim[0] = n;
    row = t->shape[0] ? t->nbytes / (size_t)t->shape[0] : 0;
    out = nn_push_new(L, t->dtype, &s, false);
    if (nn_gather_rows(t->data, t->shape[0], row, idx, n, out->data, &bad) < 0)
        luaL_error(L, "index %I (element %I of the index) out of range for a tensor of %I rows",
                   (lua_Integer)idx[bad] + 1, (lua_Integer)bad + 1, (lua_Integer)t->shape[0]);
    return 1;
}

/* C.index_add_rows(dst, positions, g): dst rows at the 1-based positions += rows of g. */
static int l_index_add_rows(lua_State *L)
{
    luray_tensor_t *dst = nn_check_f32(L, 1), *g = nn_check_f32(L, 3);
    const int64_t *idx;
    int64_t n, rowlen;

    nn_check_writable(L, dst, 1);
    if (dst->ndim < 1)
        luaL_argerror(L, 1, "expected a tensor of at least one dimension");
    idx = push_positions(L, 2, &n);
    rowlen = dst->shape[0] ? (int64_t)(dst->nbytes / 4) / dst->shape[0] : 0;
    if ((int64_t)(g->nbytes / 4) != n * rowlen)
        luaL_argerror(L, 3, "gradient size does not match the index");
    nn_check_positions(L, idx, n, dst->shape[0]);
    nn_index_add_rows(dst->data, rowlen, idx, n, g->data);
    lua_settop(L, 1);
    return 1;
}

/* C.item(t): the one element of a tensor of one element, as a Lua number. */
static int l_item(lua_State *L)
{
    luray_tensor_t *t = nn_check_tensor(L, 1);
    double v;

    if (t->nbytes != nn_host->dtype_size(t->dtype))
        luaL_argerror(L, 1, "item() needs a tensor of exactly one element");
    nn_convert(t->data, t->dtype, 0, NULL, NULL, &v, LURAY_DTYPE_FLOAT64);
    if (t->dtype == LURAY_DTYPE_BOOL)
        lua_pushboolean(L, v != 0);
    else if (t->dtype == LURAY_DTYPE_FLOAT32 || t->dtype == LURAY_DTYPE_FLOAT64)
        lua_pushnumber(L, v);
    else
        lua_pushinteger(L, (lua_Integer)v);
    return 1;
}

/* C.same_shape(a, b): whether two tensors have the same shape. */
static int l_same_shape(lua_State *L)
{
    luray_tensor_t *a = nn_check_tensor(L, 1), *b = nn_check_tensor(L, 2);
    nn_shape_t as, bs;

    nn_shape_of(a, &as);
    nn_shape_of(b, &bs);
    lua_pushboolean(L, nn_shape_eq(&as, &bs));
    return 1;
}

void nn_open_elem(lua_State *L, int idx)
{
    static const luaL_Reg funcs[] = {
        {"binary_backward", l_binary_backward},
        {"unary_backward", l_unary_backward},
        {"full", l_full},
        {"fill_", l_fill},
        {"copy_", l_copy},
        {"axpy_", l_axpy},
        {"convert", l_convert},
        {"as_f32", l_as_f32},
        {"transpose", l_transpose},
        {"narrow", l_narrow},
        {"gather_rows", l_gather_rows},
        {"index_add_rows", l_index_add_rows},
        {"item", l_item},
        {"same_shape", l_same_shape},
        {NULL, NULL},
    };

    nn_set_closures(L, idx, nn_binary_names, "", l_binary);
    nn_set_closures(L, idx, nn_unary_names, "", l_unary);
    lua_pushvalue(L, idx);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
}
