/* Lua bindings of the tensor type: constructors, methods and the object-store serializer.
 * Only this layer raises Lua errors; tensor.c reports codes. */
#include "lua_tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "errors.h"
#include "serialize.h"

#define READONLY_MSG \
    "tensor is read-only (a view of the object store); copy it with t:clone()"

static int l_tensor_gc(lua_State *L);
static const luaL_Reg tensor_methods[];

/* Creates the metatable on first use, so decoding works even before luray_lua_tensor_open. */
static void push_metatable(lua_State *L)
{
    if (luaL_newmetatable(L, LURAY_TENSOR_MT)) {
        luaL_setfuncs(L, tensor_methods, 0);
        lua_pushvalue(L, -1);
        lua_setfield(L, -2, "__index");
    }
}

luray_tensor_t *luray_lua_tensor_push(lua_State *L)
{
    luray_tensor_t *t = lua_newuserdatauv(L, sizeof *t, 1);

    memset(t, 0, sizeof *t);
    push_metatable(L);
    lua_setmetatable(L, -2);
    return t;
}

luray_tensor_t *luray_lua_tensor_check(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, LURAY_TENSOR_MT);
}

luray_tensor_t *luray_lua_tensor_test(lua_State *L, int idx)
{
    return luaL_testudata(L, idx, LURAY_TENSOR_MT);
}

/* A tensor whose data may be read: not closed by __close. (A 0-d tensor always has data.) */
static luray_tensor_t *check_live(lua_State *L, int idx)
{
    luray_tensor_t *t = luray_lua_tensor_check(L, idx);

    if (!t->data && t->ndim == 0)
        luaL_error(L, "tensor is closed");
    return t;
}

/* ---- argument helpers ---- */

static int check_dtype(lua_State *L, int arg, const char *name)
{
    int dtype;

    if (luray_dtype_parse(name, &dtype) < 0)
        luaL_argerror(L, arg,
                      lua_pushfstring(L, "unknown dtype '%s' (expected float32, float64, int32, "
                                         "int64, uint8 or bool)",
                                      name));
    return dtype;
}

/* dtype from a string, an options table's `dtype` field, or the default float32. */
static int opt_dtype(lua_State *L, int arg)
{
    int dtype = LURAY_DTYPE_FLOAT32;

    if (lua_type(L, arg) == LUA_TSTRING) {
        dtype = check_dtype(L, arg, lua_tostring(L, arg));
    } else if (lua_type(L, arg) == LUA_TTABLE) {
        if (lua_getfield(L, arg, "dtype") != LUA_TNIL)
            dtype = check_dtype(L, arg, luaL_checkstring(L, -1));
        lua_pop(L, 1);
    } else if (!lua_isnoneornil(L, arg)) {
        luaL_typeerror(L, arg, "dtype string or options table");
    }
    return dtype;
}

/* A shape from a table of integers or one integer; -1 allowed where allow_infer. */
static int check_shape(lua_State *L, int arg, int64_t *shape, bool allow_infer)
{
    lua_Integer n, i, v;
    int isnum;

    if (lua_isinteger(L, arg)) {
        shape[0] = lua_tointeger(L, arg);
        if (shape[0] < 0 && !(allow_infer && shape[0] == -1))
            luaL_argerror(L, arg, "dimensions must be non-negative");
        return 1;
    }
    luaL_checktype(L, arg, LUA_TTABLE);
    n = (lua_Integer)lua_rawlen(L, arg);
    if (n > LURAY_TENSOR_MAX_DIMS)
        luaL_argerror(L, arg, lua_pushfstring(L, "a shape has at most %d dimensions, got %d",
                                              LURAY_TENSOR_MAX_DIMS, (int)n));
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, arg, i);
        v = lua_tointegerx(L, -1, &isnum);
        if (!isnum)
            luaL_argerror(L, arg, lua_pushfstring(L, "shape[%d] is not an integer", (int)i));
        if (v < 0 && !(allow_infer && v == -1))
            luaL_argerror(L, arg, lua_pushfstring(L, "shape[%d] is negative", (int)i));
        shape[i - 1] = v;
        lua_pop(L, 1);
    }
    return (int)n;
}

static void push_shape_string(lua_State *L, const luray_tensor_t *t)
{
    luaL_Buffer b;
    char num[32];
    int i;

    luaL_buffinit(L, &b);
    luaL_addchar(&b, '{');
    for (i = 0; i < t->ndim; i++) {
        snprintf(num, sizeof num, i ? ", %lld" : "%lld", (long long)t->shape[i]);
        luaL_addstring(&b, num);
    }
    luaL_addchar(&b, '}');
    luaL_pushresult(&b);
}

static void raise_init_error(lua_State *L, int rc)
{
    if (rc == LURAY_ENOMEM)
        luaL_error(L, "not enough memory for the tensor");
    luaL_error(L, "cannot make the tensor: %s", rc == LURAY_ETOOBIG ? "shape too large"
                                                                     : "invalid shape");
}

/* ---- element <-> Lua value ---- */

static void push_elem(lua_State *L, int dtype, const void *p)
{
    if (dtype == LURAY_DTYPE_BOOL)
        lua_pushboolean(L, luray_elem_get_i64(dtype, p) != 0);
    else if (luray_dtype_is_float(dtype))
        lua_pushnumber(L, luray_elem_get_f64(dtype, p));
    else
        lua_pushinteger(L, luray_elem_get_i64(dtype, p));
}

enum { STORE_OK, STORE_BAD_TYPE, STORE_NO_FIT };

/* Stores the Lua value at vidx into element p, without raising (callers name the element). */
static int try_store(lua_State *L, int vidx, int dtype, void *p)
{
    switch (lua_type(L, vidx)) {
    case LUA_TBOOLEAN:
        if (dtype != LURAY_DTYPE_BOOL)
            return STORE_BAD_TYPE;
        luray_elem_set_i64(dtype, p, lua_toboolean(L, vidx));
        return STORE_OK;
    case LUA_TNUMBER:
        if (lua_isinteger(L, vidx)) {
            if (luray_elem_set_i64(dtype, p, lua_tointeger(L, vidx)) < 0)
                return STORE_NO_FIT;
        } else if (luray_elem_set_f64(dtype, p, lua_tonumber(L, vidx)) < 0) {
            return STORE_NO_FIT;
        }
        return STORE_OK;
    default:
        return STORE_BAD_TYPE;
    }
}

static void raise_store(lua_State *L, int vidx, int dtype, int why, const char *where)
{
    if (why == STORE_NO_FIT)
        luaL_error(L, "%s: value %s does not fit dtype %s", where, luaL_tolstring(L, vidx, NULL),
                   luray_dtype_name(dtype));
    luaL_error(L, "%s: expected a %s for dtype %s, got %s", where,
               dtype == LURAY_DTYPE_BOOL ? "boolean" : "number", luray_dtype_name(dtype),
               luaL_typename(L, vidx));
}

/* "[2][1]" for 0-based indexes idx[0..depth) */
static const char *position(lua_State *L, const int64_t *idx, int depth)
{
    luaL_Buffer b;
    char part[32];
    int i;

    luaL_buffinit(L, &b);
    if (depth == 0)
        luaL_addstring(&b, "the value");
    for (i = 0; i < depth; i++) {
        snprintf(part, sizeof part, "[%lld]", (long long)idx[i] + 1);
        luaL_addstring(&b, part);
    }
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

/* ---- constructors ---- */

typedef struct {
    luray_tensor_t *t;
    uint8_t *dst; /* next element to write */
    size_t es;
    int64_t idx[LURAY_TENSOR_MAX_DIMS];
} fill_t;

/* Fills from the nested table at stack top, at depth d; checks each level against the shape. */
static void fill_from_table(lua_State *L, fill_t *f, int d)
{
    int64_t i, n;

    if (d == f->t->ndim) {
        int vidx = lua_gettop(L), why = try_store(L, vidx, f->t->dtype, f->dst);

        if (why != STORE_OK) /* position() pushes: name the value by absolute index */
            raise_store(L, vidx, f->t->dtype, why, position(L, f->idx, d));
        f->dst += f->es;
        return;
    }
    if (!lua_istable(L, -1)) {
        const char *type = luaL_typename(L, -1);

        luaL_error(L, "ragged nested table: %s is a %s, expected a table of %I elements",
                   position(L, f->idx, d), type, (lua_Integer)f->t->shape[d]);
    }
    n = (int64_t)lua_rawlen(L, -1);
    if (n != f->t->shape[d])
        luaL_error(L, "ragged nested table: %s has %I elements, expected %I",
                   position(L, f->idx, d), (lua_Integer)n, (lua_Integer)f->t->shape[d]);
    luaL_checkstack(L, 4, "nested table too deep");
    for (i = 0; i < n; i++) {
        f->idx[d] = i;
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        fill_from_table(L, f, d + 1);
        lua_pop(L, 1);
    }
}

static int tensor_from_table(lua_State *L, int dtype)
{
    int64_t shape[LURAY_TENSOR_MAX_DIMS];
    luray_tensor_t *t;
    fill_t f;
    int ndim = 0, rc;

    /* Shape from the first element at each depth; fill_from_table checks the rest. */
    lua_pushvalue(L, 1);
    while (lua_istable(L, -1)) {
        if (ndim == LURAY_TENSOR_MAX_DIMS)
            luaL_error(L, "nested table deeper than %d dimensions", LURAY_TENSOR_MAX_DIMS);
        shape[ndim] = (int64_t)lua_rawlen(L, -1);
        if (shape[ndim++] == 0)
            break;
        lua_rawgeti(L, -1, 1);
        lua_remove(L, -2);
    }
    lua_pop(L, 1);

    t = luray_lua_tensor_push(L);
    if ((rc = luray_tensor_init(t, dtype, ndim, shape, false)) < 0)
        raise_init_error(L, rc);
    f.t = t;
    f.dst = t->data;
    f.es = luray_dtype_size(dtype);
    lua_pushvalue(L, 1);
    fill_from_table(L, &f, 0);
    lua_pop(L, 1);
    return 1;
}

/* Raw bytes, 1-D unless opts.shape says otherwise (one dim may be -1). The bytes are copied into
 * a flat tensor first and then viewed with the shape, which checks it and infers -1. */
static int tensor_from_string(lua_State *L, int dtype)
{
    int64_t shape[LURAY_TENSOR_MAX_DIMS] = {-1}, n;
    size_t len, es = luray_dtype_size(dtype);
    const char *s = lua_tolstring(L, 1, &len);
    luray_tensor_t flat, *t;
    int ndim = 1, rc;

    if (lua_istable(L, 2)) {
        if (lua_getfield(L, 2, "shape") != LUA_TNIL)
            ndim = check_shape(L, lua_gettop(L), shape, true);
        lua_pop(L, 1);
    }
    if (len % es)
        luaL_error(L, "a string of %I bytes is not a whole number of %s elements",
                   (lua_Integer)len, luray_dtype_name(dtype));
    t = luray_lua_tensor_push(L);
    n = (int64_t)(len / es);
    if ((rc = luray_tensor_init(&flat, dtype, 1, &n, false)) < 0)
        raise_init_error(L, rc);
    if (len)
        memcpy(flat.data, s, len);
    rc = luray_tensor_view(&flat, ndim, shape, t);
    luray_tensor_close(&flat);
    if (rc < 0)
        luaL_error(L, "a string of %I bytes does not match that shape for dtype %s",
                   (lua_Integer)len, luray_dtype_name(dtype));
    return 1;
}

static int l_luray_tensor(lua_State *L)
{
    int dtype = opt_dtype(L, 2);

    switch (lua_type(L, 1)) {
    case LUA_TTABLE:
        return tensor_from_table(L, dtype);
    case LUA_TSTRING:
        return tensor_from_string(L, dtype);
    case LUA_TNUMBER:
    case LUA_TBOOLEAN: { /* a scalar: a 0-dimensional tensor */
        luray_tensor_t *t = luray_lua_tensor_push(L);
        int rc = luray_tensor_init(t, dtype, 0, NULL, false);

        if (rc < 0)
            raise_init_error(L, rc);
        if ((rc = try_store(L, 1, dtype, t->data)) != STORE_OK)
            raise_store(L, 1, dtype, rc, "the value");
        return 1;
    }
    default:
        return luaL_typeerror(L, 1, "nested table of numbers or string of bytes");
    }
}

static int make_filled(lua_State *L, bool zero)
{
    int64_t shape[LURAY_TENSOR_MAX_DIMS];
    int ndim = check_shape(L, 1, shape, false);
    int dtype = opt_dtype(L, 2);
    luray_tensor_t *t = luray_lua_tensor_push(L);
    int rc = luray_tensor_init(t, dtype, ndim, shape, zero);

    if (rc < 0)
        raise_init_error(L, rc);
    return 1;
}

static int l_luray_zeros(lua_State *L) { return make_filled(L, true); }

static int l_luray_empty(lua_State *L) { return make_filled(L, false); }

/* ---- methods ---- */

static int l_tensor_gc(lua_State *L)
{
    luray_tensor_close(luray_lua_tensor_check(L, 1));
    return 0;
}

static int l_tensor_shape(lua_State *L)
{
    luray_tensor_t *t = luray_lua_tensor_check(L, 1);
    int i;

    lua_createtable(L, t->ndim, 0);
    for (i = 0; i < t->ndim; i++) {
        lua_pushinteger(L, t->shape[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int l_tensor_dtype(lua_State *L)
{
    lua_pushstring(L, luray_dtype_name(luray_lua_tensor_check(L, 1)->dtype));
    return 1;
}

static int l_tensor_len(lua_State *L)
{
    luray_tensor_t *t = luray_lua_tensor_check(L, 1);

    lua_pushinteger(L, t->ndim ? t->shape[0] : 0);
    return 1;
}

static int l_tensor_numel(lua_State *L)
{
    lua_pushinteger(L, luray_tensor_numel(luray_lua_tensor_check(L, 1)));
    return 1;
}

static int l_tensor_ndim(lua_State *L)
{
    lua_pushinteger(L, luray_lua_tensor_check(L, 1)->ndim);
    return 1;
}

static int l_tensor_is_readonly(lua_State *L)
{
    lua_pushboolean(L, luray_lua_tensor_check(L, 1)->readonly);
    return 1;
}

/* The element named by the 1-based integer arguments first..first+ndim-1. */
static void *check_elem(lua_State *L, luray_tensor_t *t, int first, int nidx)
{
    int64_t idx[LURAY_TENSOR_MAX_DIMS];
    int d;

    if (nidx != t->ndim)
        luaL_error(L, "expected %d indices for a %d-dimensional tensor, got %d", t->ndim,
                   t->ndim, nidx);
    for (d = 0; d < t->ndim; d++) {
        lua_Integer i = luaL_checkinteger(L, first + d);

        if (i < 1 || i > t->shape[d])
            luaL_error(L, "index %I out of range for dim %d (size %I)", i, d + 1,
                       (lua_Integer)t->shape[d]);
        idx[d] = i - 1;
    }
    return luray_tensor_ptr(t, idx);
}

static int l_tensor_get(lua_State *L)
{
    luray_tensor_t *t = check_live(L, 1);
    void *p = check_elem(L, t, 2, lua_gettop(L) - 1);

    push_elem(L, t->dtype, p);
    return 1;
}

static int l_tensor_set(lua_State *L)
{
    luray_tensor_t *t = check_live(L, 1);
    int top = lua_gettop(L), why;
    void *p;

    if (t->readonly)
        return luaL_error(L, READONLY_MSG);
    if (top < 2)
        return luaL_error(L, "t:set(i, ..., value) needs a value");
    p = check_elem(L, t, 2, top - 2);
    if ((why = try_store(L, top, t->dtype, p)) != STORE_OK)
        raise_store(L, top, t->dtype, why, "t:set");
    return 0;
}

static void push_table_rec(lua_State *L, const luray_tensor_t *t, int d, const uint8_t *p)
{
    size_t es = luray_dtype_size(t->dtype);
    int64_t i;

    if (d == t->ndim) {
        push_elem(L, t->dtype, p);
        return;
    }
    luaL_checkstack(L, 3, "tensor too deep");
    lua_createtable(L, t->shape[d] < 1 << 24 ? (int)t->shape[d] : 0, 0);
    for (i = 0; i < t->shape[d]; i++) {
        push_table_rec(L, t, d + 1, p + (size_t)(i * t->strides[d]) * es);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

static int l_tensor_totable(lua_State *L)
{
    luray_tensor_t *t = check_live(L, 1);

    push_table_rec(L, t, 0, t->data);
    return 1;
}

static int l_tensor_tostring_bytes(lua_State *L)
{
    luray_tensor_t *t = check_live(L, 1);
    luaL_Buffer b;

    if (luray_tensor_is_contiguous(t)) {
        lua_pushlstring(L, t->data ? t->data : "", t->nbytes);
        return 1;
    }
    luray_tensor_copy_to(t, luaL_buffinitsize(L, &b, t->nbytes));
    luaL_pushresultsize(&b, t->nbytes);
    return 1;
}

/* Pushes src's keeper (user value) into the userdata at stack top, so views keep it alive. */
static void share_keeper(lua_State *L, int src_idx)
{
    lua_getiuservalue(L, src_idx, 1);
    lua_setiuservalue(L, -2, 1);
}

static int l_tensor_view(lua_State *L)
{
    luray_tensor_t *t = check_live(L, 1), *v;
    int64_t shape[LURAY_TENSOR_MAX_DIMS];
    int ndim = check_shape(L, 2, shape, true), rc;

    if (!luray_tensor_is_contiguous(t))
        return luaL_error(L, "t:view needs a contiguous tensor; use t:clone():view(...)");
    v = luray_lua_tensor_push(L);
    if ((rc = luray_tensor_view(t, ndim, shape, v)) < 0)
        return luaL_error(L, "cannot view a tensor of %I elements with that shape",
                          (lua_Integer)luray_tensor_numel(t));
    share_keeper(L, 1);
    return 1;
}

static int l_tensor_clone(lua_State *L)
{
    luray_tensor_t *t = check_live(L, 1);
    luray_tensor_t *c = luray_lua_tensor_push(L);
    int rc = luray_tensor_clone(t, c);

    if (rc < 0)
        raise_init_error(L, rc);
    return 1;
}

static int l_tensor_tostring(lua_State *L)
{
    luray_tensor_t *t = luray_lua_tensor_check(L, 1);

    lua_pushfstring(L, "Tensor(%s, ", luray_dtype_name(t->dtype));
    push_shape_string(L, t);
    lua_pushliteral(L, ")");
    lua_concat(L, 3);
    return 1;
}

static const luaL_Reg tensor_methods[] = {
    {"__gc", l_tensor_gc},
    {"__close", l_tensor_gc},
    {"__len", l_tensor_len},
    {"__tostring", l_tensor_tostring},
    {"shape", l_tensor_shape},
    {"dtype", l_tensor_dtype},
    {"numel", l_tensor_numel},
    {"ndim", l_tensor_ndim},
    {"is_readonly", l_tensor_is_readonly},
    {"get", l_tensor_get},
    {"set", l_tensor_set},
    {"totable", l_tensor_totable},
    {"tostring", l_tensor_tostring_bytes},
    {"view", l_tensor_view},
    {"clone", l_tensor_clone},
    {NULL, NULL},
};

/* ---- serializer ---- */

/* Header: u8 version | u8 dtype | u8 ndim | u8 flags | ndim x i64 LE shape [| inline bytes]. */
#define TENSOR_SER_VERSION 1
#define TENSOR_SER_INLINE 1 /* the data follows the header instead of an out-of-band buffer */
#define TENSOR_HDR_MAX (4 + 8 * LURAY_TENSOR_MAX_DIMS)

static size_t put_header(const luray_tensor_t *t, uint8_t flags, uint8_t *h)
{
    size_t n = 4;
    int d, k;

    h[0] = TENSOR_SER_VERSION;
    h[1] = (uint8_t)t->dtype;
    h[2] = (uint8_t)t->ndim;
    h[3] = flags;
    for (d = 0; d < t->ndim; d++)
        for (k = 0; k < 8; k++)
            h[n++] = (uint8_t)((uint64_t)t->shape[d] >> (8 * k));
    return n;
}

static int tensor_encode(const luray_host_api_t *host, lua_State *L, int idx,
                         luray_ser_writer_t *w)
{
    luray_tensor_t *t = luaL_testudata(L, idx, LURAY_TENSOR_MT);
    uint8_t h[TENSOR_HDR_MAX];
    void *copy;
    int rc;

    if (!t)
        return LURAY_EINVAL;
    if (luray_tensor_is_contiguous(t)) {
        if ((rc = host->ser_write(w, h, put_header(t, 0, h))) < 0)
            return rc;
        return host->ser_write_buffer(w, t->data ? t->data : h, t->nbytes);
    }
    /* An out-of-band buffer must outlive this call, a temporary copy would not: a strided
     * tensor travels inline, copied into the stream. */
    copy = malloc(t->nbytes ? t->nbytes : 1);
    if (!copy)
        return LURAY_ENOMEM;
    luray_tensor_copy_to(t, copy);
    rc = host->ser_write(w, h, put_header(t, TENSOR_SER_INLINE, h));
    if (rc == 0)
        rc = host->ser_write(w, copy, t->nbytes);
    free(copy);
    return rc;
}

static int tensor_decode(const luray_host_api_t *host, lua_State *L, luray_ser_reader_t *r)
{
    int64_t shape[LURAY_TENSOR_MAX_DIMS];
    const uint8_t *h;
    const void *data;
    size_t hlen, dlen, need;
    luray_tensor_t tmp, *t;
    int d, k, ndim, rc;

    h = host->ser_header(r, &hlen);
    if (!h || hlen < 4 || h[0] != TENSOR_SER_VERSION || h[2] > LURAY_TENSOR_MAX_DIMS)
        return LURAY_EPROTO;
    ndim = h[2];
    if (hlen < 4 + 8 * (size_t)ndim)
        return LURAY_EPROTO;
    for (d = 0; d < ndim; d++) {
        uint64_t v = 0;

        for (k = 0; k < 8; k++)
            v |= (uint64_t)h[4 + 8 * d + k] << (8 * k);
        shape[d] = (int64_t)v;
    }
    if (h[3] & TENSOR_SER_INLINE) {
        data = h + 4 + 8 * ndim;
        dlen = hlen - 4 - 8 * (size_t)ndim;
    } else {
        if (hlen != 4 + 8 * (size_t)ndim || host->ser_buffer_count(r) < 1)
            return LURAY_EPROTO;
        data = host->ser_buffer(r, 0, &dlen);
    }
    /* Validates dtype, shape and size before anything is pushed. */
    if (luray_tensor_init_data(&tmp, h[1], ndim, shape, (void *)data, dlen, NULL, true) < 0)
        return LURAY_EPROTO;
    need = tmp.nbytes;

    t = luray_lua_tensor_push(L);
    if (!(h[3] & TENSOR_SER_INLINE)) {
        host->ser_push_keeper(L, r);
        if (!lua_isnil(L, -1)) {
            /* zero copy: the data stays in the blob, which the keeper keeps alive */
            lua_setiuservalue(L, -2, 1);
            *t = tmp;
            return 0;
        }
        lua_pop(L, 1); /* the blob lives only during this call: copy */
    }
    if ((rc = luray_tensor_init(t, tmp.dtype, ndim, shape, false)) < 0) {
        lua_pop(L, 1);
        return rc;
    }
    if (need)
        memcpy(t->data, data, need);
    return 0;
}

const luray_serializer_t luray_tensor_serializer = {
    .type_name = LURAY_TENSOR_MT,
    .encode = tensor_encode,
    .decode = tensor_decode,
};

/* ---- module ---- */

int luray_lua_tensor_open(lua_State *L, int module_idx)
{
    static const luaL_Reg funcs[] = {
        {"tensor", l_luray_tensor},
        {"zeros", l_luray_zeros},
        {"empty", l_luray_empty},
        {NULL, NULL},
    };

    module_idx = lua_absindex(L, module_idx);
    push_metatable(L);
    lua_pop(L, 1);
    lua_pushvalue(L, module_idx);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
    return luray_ser_register(L, &luray_tensor_serializer);
}
