/* The C module "luray.core": ObjectRefs, actor handles, task templates, and the calls that talk
 * to the node (submit, put, get, wait, ...). lualib/luray.lua builds the public API on top. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>
#include <sodium.h>
#include <cjson/cJSON.h>

#include "client.h"
#include "errors_str.h"
#include "lua_setup.h"
#include "log.h"
#include "lua_tensor.h"
#include "node.h"
#include "plugin_host.h"
#include "protocol.h"
#include "pack.h"
#include "serialize.h"
#include "session.h"

#define REF_MT "luray.ObjectRef"
#define HANDLE_MT "luray.ActorHandle"
#define TEMPLATE_MT "luray.TaskTemplate"
#define PIN_MT "luray.Pin"
#define CTX_MT "luray.Context"
#define INLINE_MAX (64 * 1024)
#define ARGS_INLINE_MAX (1024 * 1024)
#define DONE_BATCH 8

typedef struct {
    luray_client_t cl;
    bool connected;
    uint64_t connection; /* counts connects: a node started again may reuse a proc id */
} ctx_t;

typedef struct {
    luray_oid_t id;
    ctx_t *ctx;
} ref_t;

typedef struct {
    luray_oid_t id;
    ctx_t *ctx;
} pin_t;

typedef struct {
    luray_actor_id_t id;
} handle_t;

typedef struct {
    luray_task_spec_t spec; /* strings point into values anchored by the user value table */
    bool blob_sent;
    uint32_t sent_to_proc;
    uint64_t sent_on; /* ctx_t.connection when it was sent */
} template_t;

static ctx_t *ctx_of(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }

static ctx_t *connected(lua_State *L)
{
    ctx_t *c = ctx_of(L);
    if (!c->connected)
        luaL_error(L, "luray is not connected to a cluster (call luray.init first)");
    return c;
}

/* ---- ObjectRef ---- */

static ref_t *push_ref(lua_State *L, ctx_t *c, luray_oid_t id)
{
    ref_t *r = lua_newuserdatauv(L, sizeof(*r), 0);
    r->id = id;
    r->ctx = c;
    luaL_setmetatable(L, REF_MT);
    return r;
}

static int l_ref_gc(lua_State *L)
{
    ref_t *r = luaL_checkudata(L, 1, REF_MT);
    if (r->ctx && r->ctx->connected)
        luray_client_ref(&r->ctx->cl, r->id, -1);
    r->ctx = NULL;
    return 0;
}

static int l_ref_hex(lua_State *L)
{
    ref_t *r = luaL_checkudata(L, 1, REF_MT);
    char hex[LURAY_OID_HEX_LEN + 1];
    luray_oid_hex(r->id, hex);
    lua_pushstring(L, hex);
    return 1;
}

static int l_ref_tostring(lua_State *L)
{
    ref_t *r = luaL_checkudata(L, 1, REF_MT);
    char hex[LURAY_OID_HEX_LEN + 1];
    luray_oid_hex(r->id, hex);
    lua_pushfstring(L, "ObjectRef(%s)", hex);
    return 1;
}

static int l_ref_eq(lua_State *L)
{
    ref_t *a = luaL_testudata(L, 1, REF_MT), *b = luaL_testudata(L, 2, REF_MT);
    lua_pushboolean(L, a && b && luray_oid_eq(a->id, b->id));
    return 1;
}

static ctx_t *g_ctx; /* the process's connection, for decoders that create refs */
static luray_node_thread_t *g_node_thread; /* the embedded node, when it runs here */

static int ref_encode(const luray_host_api_t *host, lua_State *L, int idx, luray_ser_writer_t *w)
{
    ref_t *r = luaL_checkudata(L, idx, REF_MT);
    if (!r->ctx)
        return LURAY_ESTATE; /* released with ref:release(): it no longer holds its object */
    luray_buf_t b;
    luray_buf_init(&b);
    luray_proto_put_id(&b, r->id);
    int rc = host->ser_write(w, b.data, b.len);
    luray_buf_close(&b);
    if (rc == 0)
        rc = luray_ser_writer_ref(w, r->id);
    return rc;
}

static int ref_decode(const luray_host_api_t *host, lua_State *L, luray_ser_reader_t *rd)
{
    size_t len;
    const uint8_t *h = host->ser_header(rd, &len);
    if (len != 16)
        return LURAY_EPROTO;
    luray_oid_t id = luray_proto_id_at(h);
    push_ref(L, g_ctx, id);
    if (g_ctx && g_ctx->connected)
        luray_client_ref(&g_ctx->cl, id, 1);
    return 0;
}

static const luray_serializer_t ref_serializer = {REF_MT, ref_encode, ref_decode};

/* ---- ActorHandle ---- */

static int l_handle_id(lua_State *L)
{
    handle_t *h = luaL_checkudata(L, 1, HANDLE_MT);
    luray_buf_t b;
    luray_buf_init(&b);
    luray_proto_put_id(&b, h->id);
    lua_pushlstring(L, (const char *)b.data, b.len);
    luray_buf_close(&b);
    lua_getiuservalue(L, 1, 1);
    return 2;
}

static handle_t *push_handle(lua_State *L, luray_actor_id_t id, const char *methods, size_t mlen)
{
    handle_t *h = lua_newuserdatauv(L, sizeof(*h), 2);
    h->id = id;
    lua_pushlstring(L, methods, mlen);
    lua_setiuservalue(L, -2, 1);
    luaL_setmetatable(L, HANDLE_MT);
    return h;
}

static int handle_encode(const luray_host_api_t *host, lua_State *L, int idx,
                         luray_ser_writer_t *w)
{
    handle_t *h = luaL_checkudata(L, idx, HANDLE_MT);
    luray_buf_t b;
    luray_buf_init(&b);
    luray_proto_put_id(&b, h->id);
    lua_getiuservalue(L, idx, 1);
    size_t len;
    const char *m = lua_tolstring(L, -1, &len);
    luray_buf_put(&b, m, m ? len : 0);
    lua_pop(L, 1);
    int rc = host->ser_write(w, b.data, b.len);
    luray_buf_close(&b);
    return rc;
}

static int handle_decode(const luray_host_api_t *host, lua_State *L, luray_ser_reader_t *rd)
{
    size_t len;
    const uint8_t *h = host->ser_header(rd, &len);
    if (len < 16)
        return LURAY_EPROTO;
    push_handle(L, luray_proto_id_at(h), (const char *)h + 16, len - 16);
    return 0;
}

static const luray_serializer_t handle_serializer = {HANDLE_MT, handle_encode, handle_decode};

static int l_handle(lua_State *L)
{
    size_t len, mlen;
    const char *id = luaL_checklstring(L, 1, &len);
    const char *m = luaL_checklstring(L, 2, &mlen);
    if (len != 16)
        return luaL_argerror(L, 1, "actor id must be 16 bytes");
    push_handle(L, luray_proto_id_at((const uint8_t *)id), m, mlen);
    return 1;
}

/* ---- Pin: keeps a store object mapped while views of it live ---- */

static int l_pin_gc(lua_State *L)
{
    pin_t *p = luaL_checkudata(L, 1, PIN_MT);
    if (p->ctx && p->ctx->connected)
        luray_client_unpin(&p->ctx->cl, p->id);
    p->ctx = NULL;
    return 0;
}

/* ---- templates ---- */

static const char *anchor_string(lua_State *L, int tbl, const char *field, uint32_t *len)
{
    lua_getfield(L, -1 - 0, field); /* placeholder, replaced below */
    lua_pop(L, 1);
    (void)tbl;
    (void)len;
    return NULL;
}

static int opt_int(lua_State *L, int t, const char *f, lua_Integer def)
{
    lua_getfield(L, t, f);
    lua_Integer v = lua_isnil(L, -1) ? def : luaL_checkinteger(L, -1);
    lua_pop(L, 1);
    return (int)v;
}

/* Copies field f of table t (a string) into the anchor table at a, returning a stable pointer. */
static const char *opt_str(lua_State *L, int t, int a, const char *f, uint32_t *len)
{
    lua_getfield(L, t, f);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        *len = 0;
        return "";
    }
    size_t l;
    const char *s = luaL_checklstring(L, -1, &l);
    lua_rawseti(L, a, (lua_Integer)lua_rawlen(L, a) + 1); /* anchored */
    *len = (uint32_t)l;
    return s;
}

static void read_id_field(lua_State *L, int t, const char *f, luray_oid_t *out)
{
    lua_getfield(L, t, f);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (s && len == 16)
        *out = luray_proto_id_at((const uint8_t *)s);
    lua_pop(L, 1);
}

static int l_template(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    template_t *tp = lua_newuserdatauv(L, sizeof(*tp), 1);
    memset(tp, 0, sizeof(*tp));
    int ud = lua_gettop(L);
    lua_newtable(L);
    int a = lua_gettop(L);
    luray_task_spec_t *s = &tp->spec;
    lua_getfield(L, 1, "kind");
    const char *kind = luaL_optstring(L, -1, "task");
    lua_pop(L, 1);
    s->kind = strcmp(kind, "create") == 0 ? LURAY_TASK_ACTOR_CREATE
              : strcmp(kind, "call") == 0 ? LURAY_TASK_ACTOR_CALL
                                          : LURAY_TASK_NORMAL;
    uint32_t blen;
    const char *blob = opt_str(L, 1, a, "func_blob", &blen);
    if (blen) {
        s->func_blob = (const uint8_t *)blob;
        s->func_blob_len = blen;
        crypto_generichash(s->func_hash, 16, (const unsigned char *)blob, blen, NULL, 0);
    } else {
        uint32_t hl;
        const char *h = opt_str(L, 1, a, "func_hash", &hl);
        if (hl == 16)
            memcpy(s->func_hash, h, 16);
    }
    s->method = opt_str(L, 1, a, "name", &s->method_len);
    s->num_returns = (uint16_t)opt_int(L, 1, "num_returns", 1);
    if (s->num_returns > 1000)
        return luaL_error(L, "num_returns must be between 0 and 1000");
    int retries = opt_int(L, 1, "max_retries", 3);
    s->max_retries = (uint8_t)(retries < 0 ? 255 : retries > 255 ? 255 : retries);
    lua_getfield(L, 1, "retry_exceptions");
    s->retry_exceptions = (uint8_t)lua_toboolean(L, -1);
    lua_pop(L, 1);
    read_id_field(L, 1, "actor_id", &s->actor_id);
    lua_getfield(L, 1, "resources");
    if (lua_istable(L, -1)) {
        int rt = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, rt)) {
            if (s->n_res >= LURAY_RES_MAX)
                return luaL_error(L, "too many resources (at most %d)", LURAY_RES_MAX);
            if (lua_type(L, -2) != LUA_TSTRING || !lua_isnumber(L, -1))
                return luaL_error(L, "resources must map names to numbers");
            double v = lua_tonumber(L, -1);
            if (v < 0)
                return luaL_error(L, "resource \"%s\" must be >= 0", lua_tostring(L, -2));
            size_t nl;
            const char *nm = lua_tolstring(L, -2, &nl);
            lua_pushvalue(L, -2);
            lua_rawseti(L, a, (lua_Integer)lua_rawlen(L, a) + 1);
            s->res[s->n_res].name = nm;
            s->res[s->n_res].name_len = (uint32_t)nl;
            bool bytes = strcmp(nm, "memory") == 0 || strcmp(nm, "object_store_memory") == 0;
            s->res[s->n_res].amount = (int64_t)(bytes ? v : v * LURAY_RES_UNIT + 0.5);
            s->n_res++;
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    s->strategy = (uint8_t)opt_int(L, 1, "strategy", 0);
    s->target_node = (uint32_t)opt_int(L, 1, "target_node", 0);
    lua_getfield(L, 1, "soft");
    s->soft = (uint8_t)lua_toboolean(L, -1);
    lua_pop(L, 1);
    s->bundle_index = opt_int(L, 1, "bundle_index", -1);
    read_id_field(L, 1, "pg_id", &s->pg_id);
    if (s->kind == LURAY_TASK_ACTOR_CREATE) {
        s->actor_name = opt_str(L, 1, a, "actor_name", &s->actor_name_len);
        s->ns = opt_str(L, 1, a, "namespace", &s->ns_len);
        lua_getfield(L, 1, "detached");
        s->detached = (uint8_t)lua_toboolean(L, -1);
        lua_pop(L, 1);
        s->max_restarts = opt_int(L, 1, "max_restarts", 0);
        s->max_task_retries = opt_int(L, 1, "max_task_retries", 0);
        s->max_concurrency = (uint32_t)opt_int(L, 1, "max_concurrency", 1);
    }
    lua_pushvalue(L, a);
    lua_setiuservalue(L, ud, 1);
    lua_settop(L, ud);
    luaL_setmetatable(L, TEMPLATE_MT);
    (void)anchor_string;
    return 1;
}

/* ---- writing blobs ---- */

static int store_blob(lua_State *L, ctx_t *c, luray_ser_t *s, luray_oid_t id, bool is_return,
                      bool *in_store)
{
    size_t size = luray_ser_blob_size(s);
    *in_store = size > INLINE_MAX;
    if (!*in_store)
        return 0;
    uint64_t req = luray_client_new_req(&c->cl);
    luray_buf_t *b = luray_client_begin(&c->cl, LURAY_MSG_CREATE);
    luray_buf_put_u64(b, req);
    luray_proto_put_id(b, id);
    luray_buf_put_u8(b, is_return);
    luray_buf_put_u64(b, size);
    luray_client_end(&c->cl);
    int err;
    luray_cmsg_t *m = luray_client_wait(&c->cl, LURAY_MSG_CREATED, req, -1, &err);
    if (!m)
        return err;
    luray_rd_t r;
    luray_rd_init(&r, m->body, m->len);
    luray_rd_u64(&r);
    int rc = (int)luray_rd_u32(&r);
    uint64_t off = luray_rd_u64(&r);
    free(m);
    if (rc)
        return rc;
    if (off + size > c->cl.shm.size)
        return LURAY_EPROTO;
    luray_ser_write(s, (uint8_t *)c->cl.shm.base + off);
    b = luray_client_begin(&c->cl, LURAY_MSG_SEAL);
    luray_proto_put_id(b, id);
    luray_buf_put_u8(b, is_return);
    luray_buf_put_varint(b, s->n_refs);
    for (size_t i = 0; i < s->n_refs; i++)
        luray_proto_put_id(b, s->refs[i]);
    luray_client_end(&c->cl);
    return 0;
}

static void put_inline_blob(luray_buf_t *b, luray_ser_t *s)
{
    size_t size = luray_ser_blob_size(s);
    luray_buf_put_varint(b, size);
    if (luray_buf_reserve(b, size + LURAY_BLOB_ALIGN))
        return;
    luray_ser_write(s, b->data + b->len);
    b->len += size;
}

static int raise_ser(lua_State *L, luray_ser_t *s, int rc)
{
    char msg[sizeof(s->err)];
    snprintf(msg, sizeof(msg), "%s", s->err[0] ? s->err : luray_strerror(rc));
    luray_ser_close(s);
    lua_getglobal(L, "luray");
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "_error");
        if (lua_isfunction(L, -1)) {
            lua_pushstring(L, "SerializationError");
            lua_pushstring(L, msg);
            lua_call(L, 2, 1);
            return lua_error(L);
        }
    }
    return luaL_error(L, "%s", msg);
}

/* core.submit(template, ...) -> refs */
static int l_submit(lua_State *L)
{
    ctx_t *c = connected(L);
    template_t *tp = luaL_checkudata(L, 1, TEMPLATE_MT);
    int nargs = lua_gettop(L) - 1;
    luray_task_spec_t spec = tp->spec;
    spec.task_id = luray_client_new_id(&c->cl);
    luray_ser_t s;
    luray_ser_init(&s);
    int rc = luray_ser_encode(L, 2, nargs, "argument", &s);
    if (rc)
        return raise_ser(L, &s, rc);
    luray_oid_t args_object = {0, 0, 0};
    if (luray_ser_blob_size(&s) > ARGS_INLINE_MAX) {
        /* Large arguments go into the store once, as one table, and the worker reads them in
         * place: tensors among them arrive as views of shared memory. */
        luray_ser_close(&s);
        luray_ser_init(&s);
        lua_createtable(L, nargs, 1);
        for (int i = 1; i <= nargs; i++) {
            lua_pushvalue(L, 1 + i);
            lua_rawseti(L, -2, i);
        }
        lua_pushinteger(L, nargs);
        lua_setfield(L, -2, "n");
        rc = luray_ser_encode(L, lua_gettop(L), 1, "argument", &s);
        lua_pop(L, 1);
        if (rc)
            return raise_ser(L, &s, rc);
        args_object = luray_client_new_id(&c->cl);
        bool in_store;
        rc = store_blob(L, c, &s, args_object, false, &in_store);
        if (rc) {
            luray_ser_close(&s);
            return luaL_error(L, "cannot store the task's arguments: %s", luray_strerror(rc));
        }
        /* The stored object holds the refs inside it; the task holds the object and carries
         * an empty inline argument list. */
        luray_ser_close(&s);
        luray_ser_init(&s);
        luray_ser_encode(L, 1, 0, "argument", &s);
    }
    /* Top-level refs are dependencies: resolved before the task runs. */
    uint8_t depbuf[16 * 16];
    luray_buf_t deps;
    luray_buf_init(&deps);
    uint32_t n_deps = 0;
    for (int i = 2; i <= nargs + 1; i++) {
        ref_t *r = luaL_testudata(L, i, REF_MT);
        if (r) {
            luray_proto_put_id(&deps, r->id);
            n_deps++;
        }
    }
    (void)depbuf;
    luray_buf_t contained;
    luray_buf_init(&contained);
    for (size_t i = 0; i < s.n_refs; i++)
        luray_proto_put_id(&contained, s.refs[i]);
    uint32_t n_contained = (uint32_t)s.n_refs;
    if (!luray_oid_is_nil(args_object)) {
        luray_proto_put_id(&contained, args_object);
        n_contained++;
    }
    spec.args_object = args_object;
    spec.deps = deps.data;
    spec.n_deps = n_deps;
    spec.contained = contained.data;
    spec.n_contained = n_contained;
    if (tp->blob_sent && tp->sent_to_proc == c->cl.proc_id && tp->sent_on == c->connection)
        spec.func_blob = NULL;
    luray_buf_t argsb;
    luray_buf_init(&argsb);
    size_t size = luray_ser_blob_size(&s);
    if (luray_buf_reserve(&argsb, size) == 0) {
        luray_ser_write(&s, argsb.data);
        argsb.len = size;
    }
    spec.args = argsb.data;
    spec.args_len = (uint32_t)size;
    luray_buf_t *b = luray_client_begin(&c->cl, LURAY_MSG_SUBMIT);
    luray_proto_put_task(b, &spec);
    luray_client_end(&c->cl);
    tp->blob_sent = true;
    tp->sent_to_proc = c->cl.proc_id;
    tp->sent_on = c->connection;
    if (!luray_oid_is_nil(args_object))
        luray_client_ref(&c->cl, args_object, -1); /* after SUBMIT, which holds it now */
    luray_buf_close(&argsb);
    luray_buf_close(&deps);
    luray_buf_close(&contained);
    luray_ser_close(&s);
    luray_client_maybe_flush(&c->cl);
    int nret = spec.num_returns;
    luaL_checkstack(L, nret + 1, "too many return values");
    for (int i = 1; i <= nret; i++)
        push_ref(L, c, luray_oid_for_return(spec.task_id, (unsigned)i));
    return nret;
}

/* core.put(value) -> ref */
static int l_put(lua_State *L)
{
    ctx_t *c = connected(L);
    luaL_checkany(L, 1);
    luray_ser_t s;
    luray_ser_init(&s);
    int rc = luray_ser_encode(L, 1, 1, "value", &s);
    if (rc)
        return raise_ser(L, &s, rc);
    luray_oid_t id = luray_client_new_id(&c->cl);
    bool in_store;
    rc = store_blob(L, c, &s, id, false, &in_store);
    if (rc) {
        luray_ser_close(&s);
        return luaL_error(L, "luray.put: cannot store the value: %s", luray_strerror(rc));
    }
    if (!in_store) {
        luray_buf_t *b = luray_client_begin(&c->cl, LURAY_MSG_PUT);
        luray_proto_put_id(b, id);
        size_t at = b->len;
        put_inline_blob(b, &s);
        if (!b->err) {
            luray_rd_t rr;
            luray_rd_init(&rr, b->data + at, b->len - at);
            size_t blen;
            const void *blob = luray_rd_str(&rr, &blen);
            if (blob)
                luray_client_cache_put(&c->cl, id, LURAY_OBJ_READY, blob, blen);
        }
        luray_buf_put_varint(b, s.n_refs);
        for (size_t i = 0; i < s.n_refs; i++)
            luray_proto_put_id(b, s.refs[i]);
        luray_client_end(&c->cl);
        luray_client_maybe_flush(&c->cl);
    }
    luray_ser_close(&s);
    push_ref(L, c, id);
    return 1;
}

/* ---- get and wait ---- */

static luray_oid_t check_ref(lua_State *L, int idx)
{
    ref_t *r = luaL_testudata(L, idx, REF_MT);
    if (!r)
        luaL_error(L, "expected an ObjectRef, got %s", luaL_typename(L, idx));
    if (!r->ctx)
        luaL_error(L, "this ObjectRef was released (ref:release())");
    return r->id;
}

static int timeout_ms_arg(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx))
        return -1;
    double t = luaL_checknumber(L, idx);
    if (t < 0)
        return -1;
    return t * 1000 > INT_MAX ? INT_MAX : (int)(t * 1000);
}

static void send_get(ctx_t *c, uint64_t req, uint8_t mode, uint32_t need, int timeout_ms,
                     const luray_oid_t *ids, uint32_t n)
{
    luray_buf_t *b = luray_client_begin(&c->cl, LURAY_MSG_GET);
    luray_buf_put_u64(b, req);
    luray_buf_put_u8(b, mode);
    luray_buf_put_u32(b, need);
    luray_buf_put_u64(b, (uint64_t)(int64_t)timeout_ms);
    luray_buf_put_varint(b, n);
    for (uint32_t i = 0; i < n; i++)
        luray_proto_put_id(b, ids[i]);
    luray_client_end(&c->cl);
}

static int wait_error(lua_State *L, int err)
{
    if (err == LURAY_EAGAIN)
        return luaL_error(L, "interrupted");
    return luaL_error(L, "lost the connection to the luray node: %s", luray_strerror(err));
}

/* Decodes one READY entry, pushing (status, value): 0 value, 1 error value, 2 missing. */
static int push_entry(lua_State *L, ctx_t *c, luray_rd_t *r)
{
    luray_oid_t id = luray_proto_rd_id(r);
    uint8_t state = luray_rd_u8(r);
    if (r->err)
        return luaL_error(L, "malformed reply from the node");
    if (state == LURAY_OBJ_MISSING || state == LURAY_OBJ_PENDING) {
        lua_pushinteger(L, 2);
        lua_pushnil(L);
        return 2;
    }
    uint8_t loc = luray_rd_u8(r);
    const void *blob;
    size_t len;
    int keeper = 0;
    if (loc == LURAY_LOC_INLINE) {
        blob = luray_rd_str(r, &len);
    } else {
        uint64_t off = luray_rd_u64(r), size = luray_rd_u64(r);
        if (r->err || size == 0 || off + size > c->cl.shm.size)
            return luaL_error(L, "the object store could not produce the object");
        blob = (const uint8_t *)c->cl.shm.base + off;
        len = (size_t)size;
        pin_t *p = lua_newuserdatauv(L, sizeof(*p), 0);
        p->id = id;
        p->ctx = c;
        luaL_setmetatable(L, PIN_MT);
        keeper = lua_gettop(L);
    }
    if (r->err)
        return luaL_error(L, "malformed reply from the node");
    if (!keeper)
        luray_client_cache_put(&c->cl, id, state, blob, len);
    lua_pushinteger(L, state == LURAY_OBJ_ERROR ? 1 : 0);
    char err[512];
    int n = luray_ser_decode(L, blob, len, keeper, err, sizeof(err));
    if (n < 0)
        return luaL_error(L, "cannot decode object: %s", err);
    if (n != 1) {
        lua_settop(L, lua_gettop(L) - n);
        lua_pushnil(L);
    }
    if (keeper)
        lua_remove(L, keeper);
    return 2;
}

/* Pushes (status, value) for an object in this process's cache. */
static int push_cached(lua_State *L, const luray_cached_t *e)
{
    lua_pushinteger(L, e->state == LURAY_OBJ_ERROR ? 1 : 0);
    char err[512];
    int n = luray_ser_decode(L, e->blob, e->len, 0, err, sizeof(err));
    if (n < 0)
        return luaL_error(L, "cannot decode object: %s", err);
    if (n != 1) {
        lua_settop(L, lua_gettop(L) - n);
        lua_pushnil(L);
    }
    return 2;
}

/* Pops the (status, value) pair on top into vals[i]; a failed entry also goes to errs[i] as
 * {status, value} (errs, at its index, starts as nil and becomes a table when needed). */
static void store_entry(lua_State *L, int vals, int errs, uint32_t i)
{
    if (lua_tointeger(L, -2) != 0) {
        if (lua_isnil(L, errs)) {
            lua_newtable(L);
            lua_replace(L, errs);
        }
        lua_createtable(L, 2, 0);
        lua_pushvalue(L, -3);
        lua_rawseti(L, -2, 1);
        lua_pushvalue(L, -2);
        lua_rawseti(L, -2, 2);
        lua_rawseti(L, errs, (lua_Integer)i);
    }
    lua_rawseti(L, vals, (lua_Integer)i);
    lua_pop(L, 1);
}

/* All of the list is cached: (0, values, errors) without asking the node. */
static int get_cached_list(lua_State *L, ctx_t *c, uint32_t n)
{
    lua_pushinteger(L, 0);
    lua_createtable(L, (int)n, 0);
    int vals = lua_gettop(L);
    lua_pushnil(L);
    int errs = lua_gettop(L);
    for (uint32_t i = 0; i < n; i++) {
        lua_rawgeti(L, 1, (lua_Integer)i + 1);
        ref_t *r = lua_touserdata(L, -1);
        luray_oid_t id = r->id;
        lua_pop(L, 1);
        push_cached(L, luray_client_cache_get(&c->cl, id));
        store_entry(L, vals, errs, i + 1);
    }
    return 3;
}

/* core.get(ref, timeout) -> status, value (0 ok, 1 error value, 2 missing, 3 timed out)
 * core.get({refs}, timeout) -> status, values, errors (errors: index -> {status, value}) */
static int l_get(lua_State *L)
{
    ctx_t *c = connected(L);
    int timeout = timeout_ms_arg(L, 2);
    bool single = !lua_istable(L, 1);
    uint32_t n = single ? 1 : (uint32_t)lua_rawlen(L, 1);
    luray_oid_t one = {0, 0, 0};
    if (single) {
        one = check_ref(L, 1);
        const luray_cached_t *e = luray_client_cache_get(&c->cl, one);
        if (e) {
            lua_settop(L, 0);
            return push_cached(L, e);
        }
    } else {
        uint32_t hits = 0;
        for (uint32_t i = 0; i < n; i++) {
            lua_rawgeti(L, 1, (lua_Integer)i + 1);
            ref_t *r = luaL_testudata(L, -1, REF_MT);
            lua_pop(L, 1);
            if (!r || !luray_client_cache_get(&c->cl, r->id))
                break;
            hits++;
        }
        if (n > 0 && hits == n)
            return get_cached_list(L, c, n);
    }
    luray_oid_t *ids = single ? &one : calloc(n ? n : 1, sizeof(luray_oid_t));
    if (!ids)
        return luaL_error(L, "out of memory");
    if (!single) {
        for (uint32_t i = 0; i < n; i++) {
            lua_rawgeti(L, 1, (lua_Integer)i + 1);
            ref_t *r = luaL_testudata(L, -1, REF_MT);
            if (!r || !r->ctx) {
                free(ids);
                if (r)
                    return luaL_error(L, "luray.get: element %d of the list was released",
                                      (int)i + 1);
                return luaL_error(L, "luray.get: element %d of the list is a %s, not an ObjectRef",
                                  (int)i + 1, luaL_typename(L, -1));
            }
            ids[i] = r->id;
            lua_pop(L, 1);
        }
    }
    uint64_t req = luray_client_new_req(&c->cl);
    luray_client_set_returning(&c->cl, c->cl.kind == LURAY_PROC_WORKER);
    send_get(c, req, 0, n, timeout, ids, n);
    int err;
    c->cl.awaiting = single ? &one : ids;
    c->cl.n_awaiting = n;
    luray_cmsg_t *m = luray_client_wait_get(&c->cl, req, -1, &err);
    c->cl.awaiting = NULL;
    c->cl.n_awaiting = 0;
    if (!single)
        free(ids);
    luray_client_set_returning(&c->cl, false);
    if (!m && err == 0) {
        /* every result came straight from its worker */
        if (single) {
            lua_settop(L, 0);
            return push_cached(L, luray_client_cache_get(&c->cl, one));
        }
        return get_cached_list(L, c, n);
    }
    if (!m)
        return wait_error(L, err);
    luray_rd_t r;
    luray_rd_init(&r, m->body, m->len);
    luray_rd_u64(&r);
    uint8_t timed_out = luray_rd_u8(&r);
    uint64_t count = luray_rd_varint(&r);
    if (timed_out) {
        free(m);
        lua_pushinteger(L, 3);
        return 1;
    }
    if (r.err || count != n) {
        free(m);
        return luaL_error(L, "malformed reply from the node");
    }
    if (single) {
        lua_settop(L, 0);
        push_entry(L, c, &r);
        free(m);
        luray_client_maybe_flush(&c->cl);
        return 2;
    }
    lua_pushinteger(L, 0);
    lua_createtable(L, (int)n, 0);
    int vals = lua_gettop(L);
    lua_pushnil(L);
    int errs = lua_gettop(L);
    for (uint32_t i = 0; i < n; i++) {
        push_entry(L, c, &r);
        store_entry(L, vals, errs, i + 1);
    }
    free(m);
    luray_client_maybe_flush(&c->cl);
    return 3;
}

/* core.wait({refs}, num_returns, timeout) -> {ready flags by index} */
static int l_wait(lua_State *L)
{
    ctx_t *c = connected(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    uint32_t n = (uint32_t)lua_rawlen(L, 1);
    lua_Integer need = luaL_checkinteger(L, 2);
    int timeout = timeout_ms_arg(L, 3);
    if (need < 0 || (uint32_t)need > n)
        return luaL_error(L, "luray.wait: num_returns (%d) must be between 0 and the number of refs (%d)",
                          (int)need, (int)n);
    luray_oid_t *ids = malloc((n ? n : 1) * sizeof(*ids));
    if (!ids)
        return luaL_error(L, "out of memory");
    for (uint32_t i = 0; i < n; i++) {
        lua_rawgeti(L, 1, (lua_Integer)i + 1);
        ref_t *r = luaL_testudata(L, -1, REF_MT);
        if (!r || !r->ctx) {
            free(ids);
            if (r)
                return luaL_error(L, "luray.wait: element %d of the list was released", (int)i + 1);
            return luaL_error(L, "luray.wait: element %d of the list is a %s, not an ObjectRef",
                              (int)i + 1, luaL_typename(L, -1));
        }
        ids[i] = r->id;
        lua_pop(L, 1);
    }
    uint64_t req = luray_client_new_req(&c->cl);
    luray_client_set_returning(&c->cl, c->cl.kind == LURAY_PROC_WORKER && timeout != 0);
    send_get(c, req, 1, (uint32_t)need, timeout, ids, n);
    free(ids);
    int err;
    luray_cmsg_t *m = luray_client_wait(&c->cl, LURAY_MSG_READY, req, -1, &err);
    luray_client_set_returning(&c->cl, false);
    if (!m)
        return wait_error(L, err);
    luray_rd_t r;
    luray_rd_init(&r, m->body, m->len);
    luray_rd_u64(&r);
    luray_rd_u8(&r);
    uint64_t count = luray_rd_varint(&r);
    lua_createtable(L, (int)n, 0);
    for (uint64_t i = 0; i < count && !r.err; i++) {
        luray_proto_rd_id(&r);
        uint8_t st = luray_rd_u8(&r);
        lua_pushboolean(L, st != LURAY_OBJ_PENDING);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    free(m);
    return 1;
}

/* ---- worker side ---- */

static int push_func(lua_State *L, ctx_t *c, luray_task_spec_t *s)
{
    lua_getfield(L, LUA_REGISTRYINDEX, "luray.fncache");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, "luray.fncache");
    }
    lua_pushlstring(L, (const char *)s->func_hash, 16);
    lua_rawget(L, -2);
    if (!lua_isnil(L, -1)) {
        lua_remove(L, -2);
        return 0;
    }
    lua_pop(L, 1);
    luray_cached_t *kept = luray_oidmap_del(&c->cl.kept_funcs, luray_proto_id_at(s->func_hash));
    if (!s->func_blob && kept) {
        s->func_blob = kept->blob;
        s->func_blob_len = (uint32_t)kept->len;
    }
    if (!s->func_blob) {
        lua_pop(L, 1);
        lua_pushliteral(L, "the node sent a task for a function this worker does not have");
        return -1;
    }
    char err[512];
    int n = luray_ser_decode(L, s->func_blob, s->func_blob_len, 0, err, sizeof(err));
    if (kept) {
        luray_cached_free(kept);
        s->func_blob = NULL;
    }
    if (n != 1) {
        lua_pop(L, 1 + (n > 0 ? n : 0));
        lua_pushfstring(L, "cannot load the task's function: %s", err);
        return -1;
    }
    lua_pushlstring(L, (const char *)s->func_hash, 16);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
    lua_remove(L, -2);
    return 0;
}

static void push_id_raw(lua_State *L, luray_oid_t id)
{
    luray_buf_t b;
    luray_buf_init(&b);
    luray_proto_put_id(&b, id);
    lua_pushlstring(L, (const char *)b.data, b.len);
    luray_buf_close(&b);
}

/* Decoding failures (a module missing on this worker, say) become the task's error, so the
 * caller gets a TaskError naming the cause instead of a crashed worker. */
/* core.recv(timeout[, fd]) -> "exec", task table | "exit" | nil (timeout) | "reply", req, ...
 * | "fd" (fd, a descriptor a plugin gave, became readable first) */
static int l_recv(lua_State *L)
{
    ctx_t *c = connected(L);
    int timeout = timeout_ms_arg(L, 1);
    int fd = (int)luaL_optinteger(L, 2, -1);
    int err;
    bool fd_ready = false;
    luray_cmsg_t *m = fd >= 0 ? luray_client_next_watch(&c->cl, timeout, fd, &fd_ready, &err)
                              : luray_client_next(&c->cl, timeout, &err);
    if (!m && fd_ready) {
        lua_pushliteral(L, "fd");
        return 1;
    }
    if (!m) {
        if (err == LURAY_ETIMEDOUT)
            return 0;
        if (err == LURAY_ECLOSED) {
            lua_pushliteral(L, "exit");
            return 1;
        }
        return wait_error(L, err);
    }
    if (m->type == LURAY_MSG_EXIT) {
        free(m);
        lua_pushliteral(L, "exit");
        return 1;
    }
    if (m->type == LURAY_MSG_READY) {
        /* a reply to an async get of a concurrent actor method */
        luray_rd_t r;
        luray_rd_init(&r, m->body, m->len);
        uint64_t req = luray_rd_u64(&r);
        lua_pushliteral(L, "ready");
        lua_pushinteger(L, (lua_Integer)req);
        lua_pushlightuserdata(L, NULL);
        free(m);
        return 3;
    }
    if (m->type != LURAY_MSG_EXEC) {
        free(m);
        lua_pushliteral(L, "other");
        return 1;
    }
    luray_rd_t r;
    luray_rd_init(&r, m->body, m->len);
    luray_task_spec_t s;
    if (luray_proto_parse_task(&r, &s)) {
        free(m);
        return luaL_error(L, "malformed task from the node");
    }
    if (s.caller && s.kind != LURAY_TASK_ACTOR_CREATE)
        luray_oidmap_put(&c->cl.callers, s.task_id, (void *)(uintptr_t)s.caller);
    lua_pushliteral(L, "exec");
    lua_createtable(L, 0, 12);
    push_id_raw(L, s.task_id);
    lua_setfield(L, -2, "id");
    lua_pushinteger(L, s.kind);
    lua_setfield(L, -2, "kind");
    lua_pushlstring(L, s.method, s.method_len);
    lua_setfield(L, -2, "name");
    lua_pushinteger(L, s.num_returns);
    lua_setfield(L, -2, "num_returns");
    lua_pushinteger(L, s.attempt);
    lua_setfield(L, -2, "attempt");
    lua_pushboolean(L, s.retry_exceptions);
    lua_setfield(L, -2, "retry_exceptions");
    lua_pushinteger(L, s.max_retries);
    lua_setfield(L, -2, "retries_left");
    push_id_raw(L, s.actor_id);
    lua_setfield(L, -2, "actor_id");
    if (!luray_oid_is_nil(s.args_object)) {
        push_ref(L, c, s.args_object);
        luray_client_ref(&c->cl, s.args_object, 1);
        lua_setfield(L, -2, "args_object");
    }
    if (s.kind == LURAY_TASK_ACTOR_CREATE) {
        lua_pushinteger(L, s.max_concurrency);
        lua_setfield(L, -2, "max_concurrency");
    }
    if (s.kind != LURAY_TASK_ACTOR_CALL) {
        if (push_func(L, c, &s) == 0) {
            lua_setfield(L, -2, "fn");
        } else {
            lua_setfield(L, -2, "error");
            lua_createtable(L, 0, 1);
            lua_pushinteger(L, 0);
            lua_setfield(L, -2, "n");
            lua_setfield(L, -2, "args");
            free(m);
            return 2;
        }
    }
    char errb[512];
    int top = lua_gettop(L);
    int n = luray_ser_decode(L, s.args, s.args_len, 0, errb, sizeof(errb));
    if (n < 0) {
        lua_pushfstring(L, "cannot decode the task's arguments: %s", errb);
        lua_setfield(L, top, "error");
        n = 0;
    }
    lua_createtable(L, n, 1);
    for (int i = n; i >= 1; i--) {
        lua_pushvalue(L, top + i);
        lua_rawseti(L, -2, i);
    }
    lua_pushinteger(L, n);
    lua_setfield(L, -2, "n");
    lua_setfield(L, top, "args");
    lua_settop(L, top);
    free(m);
    return 2;
}

/* core.done(task_id, ok, n, ...values) */
static int l_done(lua_State *L)
{
    ctx_t *c = connected(L);
    size_t idlen;
    const char *tid = luaL_checklstring(L, 1, &idlen);
    int status = (int)luaL_checkinteger(L, 2);
    int nres = (int)luaL_checkinteger(L, 3);
    if (idlen != 16)
        return luaL_argerror(L, 1, "task id");
    luray_oid_t id = luray_proto_id_at((const uint8_t *)tid);
    uint32_t caller = (uint32_t)(uintptr_t)luray_oidmap_del(&c->cl.callers, id);
    int have = lua_gettop(L) - 3;
    size_t body_at = 0;
    bool direct = caller != 0 && status != LURAY_DONE_RETRYABLE;
    luray_ser_t *sers = calloc((size_t)(nres > 0 ? nres : 1), sizeof(luray_ser_t));
    bool *stored = calloc((size_t)(nres > 0 ? nres : 1), sizeof(bool));
    if (!sers || !stored) {
        free(sers);
        free(stored);
        return luaL_error(L, "out of memory");
    }
    int rc = 0;
    if (status == LURAY_DONE_OK) {
        for (int i = 0; i < nres; i++) {
            luray_ser_init(&sers[i]);
            if (i < have)
                rc = luray_ser_encode(L, 4 + i, 1, "return value", &sers[i]);
            else {
                lua_pushnil(L);
                rc = luray_ser_encode(L, lua_gettop(L), 1, "return value", &sers[i]);
                lua_pop(L, 1);
            }
            if (rc)
                break;
            rc = store_blob(L, c, &sers[i], luray_oid_for_return(id, (unsigned)i + 1), true,
                            &stored[i]);
            if (rc)
                break;
        }
        if (rc) {
            char msg[600];
            int k = 0;
            for (; k < nres; k++)
                if (sers[k].err[0]) {
                    snprintf(msg, sizeof(msg), "%s", sers[k].err);
                    break;
                }
            if (k == nres)
                snprintf(msg, sizeof(msg), "cannot store the result: %s", luray_strerror(rc));
            for (int i = 0; i < nres; i++)
                luray_ser_close(&sers[i]);
            free(sers);
            free(stored);
            lua_pushstring(L, msg);
            return 1; /* the caller turns it into an error result */
        }
        luray_buf_t *b = luray_client_begin(&c->cl, LURAY_MSG_DONE);
        body_at = b->len;
        luray_proto_put_id(b, id);
        luray_buf_put_u8(b, LURAY_DONE_OK);
        luray_buf_put_u16(b, (uint16_t)nres);
        for (int i = 0; i < nres; i++) {
            if (stored[i])
                direct = false; /* the caller reads it from the store through the node */
            luray_buf_put_u8(b, stored[i] ? LURAY_LOC_SHM : LURAY_LOC_INLINE);
            if (!stored[i])
                put_inline_blob(b, &sers[i]);
            luray_buf_put_varint(b, sers[i].n_refs);
            for (size_t k = 0; k < sers[i].n_refs; k++)
                luray_proto_put_id(b, sers[i].refs[k]);
            luray_ser_close(&sers[i]);
        }
        luray_client_end(&c->cl);
    } else {
        luray_ser_t s;
        luray_ser_init(&s);
        rc = luray_ser_encode(L, 4, 1, "error", &s);
        if (rc) {
            luray_ser_close(&s);
            free(sers);
            free(stored);
            lua_pushstring(L, s.err);
            return 1;
        }
        luray_buf_t *b = luray_client_begin(&c->cl, LURAY_MSG_DONE);
        body_at = b->len;
        luray_proto_put_id(b, id);
        luray_buf_put_u8(b, (uint8_t)status);
        luray_buf_put_u16(b, (uint16_t)nres);
        put_inline_blob(b, &s);
        luray_client_end(&c->cl);
        luray_ser_close(&s);
    }
    free(sers);
    free(stored);
    /* Results go out at once unless more messages are queued behind them. A caller that may be
     * waiting also gets them straight from here (not when tasks are queued: then throughput, not
     * latency, matters, and the node's batched answer serves). */
    if (c->cl.q_head == NULL) {
        if (direct && !c->cl.out.buf.err)
            luray_client_send_direct(&c->cl, caller, LURAY_MSG_RESULT,
                                     c->cl.out.buf.data + body_at, c->cl.out.buf.len - body_at);
        luray_client_flush(&c->cl);
    } else if (c->cl.out.count >= DONE_BATCH) {
        /* with tasks queued here, results go back in small batches: the node refills this
         * worker's queue while it works on the rest */
        luray_client_flush(&c->cl);
    }
    return 0;
}

/* ---- control ---- */

static int l_connect(lua_State *L)
{
    ctx_t *c = ctx_of(L);
    const char *session = luaL_checkstring(L, 1);
    const char *kind = luaL_optstring(L, 2, "driver");
    lua_Integer wid = luaL_optinteger(L, 3, 0);
    if (c->connected)
        return luaL_error(L, "already connected");
    char err[512];
    int k = strcmp(kind, "worker") == 0 ? LURAY_PROC_WORKER : LURAY_PROC_DRIVER;
    if (luray_client_connect(&c->cl, session, k, (uint32_t)wid, 10000, err, sizeof(err))) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    c->connected = true;
    c->connection++;
    g_ctx = c;
    lua_createtable(L, 0, 4);
    char hex[16];
    snprintf(hex, sizeof(hex), "%08x", c->cl.node_id);
    lua_pushstring(L, hex);
    lua_setfield(L, -2, "node_id");
    lua_pushinteger(L, c->cl.proc_id);
    lua_setfield(L, -2, "proc_id");
    lua_pushstring(L, session);
    lua_setfield(L, -2, "session");
    lua_pushinteger(L, c->cl.node_pid);
    lua_setfield(L, -2, "node_pid");
    return 1;
}

static void ctx_disconnect(ctx_t *c, bool bye)
{
    if (!c->connected)
        return;
    luray_client_flush(&c->cl);
    c->connected = false;
    luray_client_close(&c->cl, bye);
    if (g_ctx == c)
        g_ctx = NULL;
}

static int l_disconnect(lua_State *L)
{
    ctx_disconnect(ctx_of(L), true);
    return 0;
}

static int l_ctx_gc(lua_State *L)
{
    ctx_t *c = luaL_checkudata(L, 1, CTX_MT);
    ctx_disconnect(c, true);
    return 0;
}

static int l_flush(lua_State *L)
{
    ctx_t *c = ctx_of(L);
    if (c->connected)
        luray_client_flush(&c->cl);
    return 0;
}

static int simple_msg(lua_State *L, uint16_t type)
{
    ctx_t *c = connected(L);
    luray_client_begin(&c->cl, type);
    luray_client_end(&c->cl);
    luray_client_flush(&c->cl);
    return 0;
}

static int l_shutdown_node(lua_State *L) { return simple_msg(L, LURAY_MSG_SHUTDOWN); }

static int l_info(lua_State *L)
{
    ctx_t *c = connected(L);
    uint64_t req = luray_client_new_req(&c->cl);
    luray_buf_t *b = luray_client_begin(&c->cl, LURAY_MSG_INFO);
    luray_buf_put_u64(b, req);
    luray_client_end(&c->cl);
    int err;
    luray_cmsg_t *m = luray_client_wait(&c->cl, LURAY_MSG_REPLY, req, 10000, &err);
    if (!m)
        return wait_error(L, err);
    luray_rd_t r;
    luray_rd_init(&r, m->body, m->len);
    luray_rd_u64(&r);
    luray_rd_u32(&r);
    size_t len;
    const char *s = luray_rd_str(&r, &len);
    lua_pushlstring(L, s ? s : "{}", s ? len : 2);
    free(m);
    return 1;
}

static int l_lookup(lua_State *L)
{
    ctx_t *c = connected(L);
    size_t klen;
    const char *key = luaL_checklstring(L, 1, &klen);
    uint64_t req = luray_client_new_req(&c->cl);
    luray_buf_t *b = luray_client_begin(&c->cl, LURAY_MSG_LOOKUP);
    luray_buf_put_u64(b, req);
    luray_buf_put_str(b, key, klen);
    luray_client_end(&c->cl);
    int err;
    luray_cmsg_t *m = luray_client_wait(&c->cl, LURAY_MSG_REPLY, req, 10000, &err);
    if (!m)
        return wait_error(L, err);
    luray_rd_t r;
    luray_rd_init(&r, m->body, m->len);
    luray_rd_u64(&r);
    int rc = (int)luray_rd_u32(&r);
    size_t len;
    const uint8_t *p = luray_rd_str(&r, &len);
    if (rc || r.err || len < 16) {
        free(m);
        return 0;
    }
    /* The creation name is "Class:m1,m2": the handle keeps the method list. */
    const char *names = (const char *)p + 16;
    size_t nlen = len - 16;
    const char *colon = memchr(names, ':', nlen);
    if (colon) {
        nlen -= (size_t)(colon + 1 - names);
        names = colon + 1;
    }
    push_handle(L, luray_proto_id_at(p), names, nlen);
    free(m);
    return 1;
}

static int l_kill(lua_State *L)
{
    ctx_t *c = connected(L);
    handle_t *h = luaL_checkudata(L, 1, HANDLE_MT);
    luray_buf_t *b = luray_client_begin(&c->cl, LURAY_MSG_KILL);
    luray_proto_put_id(b, h->id);
    luray_buf_put_u8(b, (uint8_t)lua_toboolean(L, 2));
    luray_client_end(&c->cl);
    luray_client_flush(&c->cl);
    return 0;
}

static int l_cancel(lua_State *L)
{
    ctx_t *c = connected(L);
    luray_oid_t id = check_ref(L, 1);
    luray_buf_t *b = luray_client_begin(&c->cl, LURAY_MSG_CANCEL);
    luray_proto_put_id(b, luray_oid_task(id));
    luray_buf_put_u8(b, (uint8_t)lua_toboolean(L, 2));
    luray_client_end(&c->cl);
    luray_client_flush(&c->cl);
    return 0;
}

/* core.pack_dir(dir): the folder as one blob (pack.h) and its hash; raises on failure. */
static int l_pack_dir(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    uint8_t *blob = NULL;
    size_t len = 0;
    char err[1024], hash[LURAY_PACK_HASH_HEX];
    if (luray_pack_dir(dir, 0, &blob, &len, err, sizeof(err)) != 0)
        return luaL_error(L, "%s", err);
    luray_pack_hash(blob, len, hash);
    lua_pushlstring(L, (const char *)blob, len);
    free(blob);
    lua_pushstring(L, hash);
    return 2;
}

/* core.pack_unpack(blob, dir): unpacks into dir (absent or empty); nil, message on failure. */
static int l_pack_unpack(lua_State *L)
{
    size_t len;
    const char *blob = luaL_checklstring(L, 1, &len);
    const char *dir = luaL_checkstring(L, 2);
    char err[1024];
    if (luray_pack_unpack((const uint8_t *)blob, len, dir, err, sizeof(err)) != 0) {
        luaL_pushfail(L);
        lua_pushstring(L, err);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* core.chdir(dir): true, or nil and a message. */
static int l_chdir(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    if (chdir(dir) != 0) {
        luaL_pushfail(L);
        lua_pushfstring(L, "cannot change to %s: %s", dir, strerror(errno));
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* core.rename(from, to): true, or nil and a message. */
static int l_rename(lua_State *L)
{
    const char *from = luaL_checkstring(L, 1), *to = luaL_checkstring(L, 2);
    if (rename(from, to) != 0) {
        luaL_pushfail(L);
        lua_pushfstring(L, "%s", strerror(errno));
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* core.pg_create(strategy, bundles): asks for a placement group (strategy 0 PACK, 1 SPREAD,
 * 2 STRICT_PACK, 3 STRICT_SPREAD; bundles a list of {resource = amount}). Returns the ref that
 * becomes ready when every bundle is reserved, and the group's id as 16 raw bytes. */
static int l_pg_create(lua_State *L)
{
    ctx_t *c = connected(L);
    lua_Integer strategy = luaL_checkinteger(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer nb = (lua_Integer)lua_rawlen(L, 2);
    luaL_argcheck(L, strategy >= 0 && strategy <= 3, 1, "unknown strategy");
    luaL_argcheck(L, nb >= 1 && nb <= 256, 2, "1 to 256 bundles");
    luray_oid_t id = luray_client_new_id(&c->cl);
    luray_buf_t *b = luray_client_begin(&c->cl, LURAY_MSG_PG);
    luray_buf_put_u8(b, 1);
    luray_proto_put_id(b, id);
    luray_buf_put_u8(b, (uint8_t)strategy);
    luray_buf_put_u32(b, (uint32_t)nb);
    for (lua_Integer i = 1; i <= nb; i++) {
        lua_rawgeti(L, 2, i);
        luaL_argcheck(L, lua_istable(L, -1), 2, "each bundle is a table of resources");
        size_t count_at = b->len;
        uint32_t count = 0;
        luray_buf_put_u32(b, 0);
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            size_t nl;
            const char *nm = lua_tolstring(L, -2, &nl);
            double v = lua_tonumber(L, -1);
            bool bytes = nm && (strcmp(nm, "memory") == 0 || strcmp(nm, "object_store_memory") == 0);
            if (nm && v > 0 && count < LURAY_RES_MAX) {
                luray_buf_put_str(b, nm, nl);
                luray_buf_put_u64(b, (uint64_t)(bytes ? v : v * LURAY_RES_UNIT + 0.5));
                count++;
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        for (int k = 0; k < 4 && !b->err; k++)
            b->data[count_at + (size_t)k] = (uint8_t)(count >> (8 * k));
    }
    luray_client_end(&c->cl);
    luray_client_flush(&c->cl);
    push_ref(L, c, id);
    uint8_t raw[16];
    luray_buf_t tmp = {.data = raw, .cap = sizeof(raw)};
    luray_proto_put_id(&tmp, id);
    lua_pushlstring(L, (const char *)raw, sizeof(raw));
    return 2;
}

static int l_pg_remove(lua_State *L)
{
    ctx_t *c = connected(L);
    size_t len;
    const char *raw = luaL_checklstring(L, 1, &len);
    luaL_argcheck(L, len == 16, 1, "a placement group id");
    luray_buf_t *b = luray_client_begin(&c->cl, LURAY_MSG_PG);
    luray_buf_put_u8(b, 2);
    luray_buf_put(b, raw, 16);
    luray_client_end(&c->cl);
    luray_client_flush(&c->cl);
    return 0;
}

static int l_is_ref(lua_State *L)
{
    lua_pushboolean(L, luaL_testudata(L, 1, REF_MT) != NULL);
    return 1;
}

static int l_is_handle(lua_State *L)
{
    lua_pushboolean(L, luaL_testudata(L, 1, HANDLE_MT) != NULL);
    return 1;
}

static int l_ref_task(lua_State *L)
{
    luray_oid_t id = check_ref(L, 1);
    push_id_raw(L, luray_oid_task(id));
    return 1;
}

static int l_hex(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    if (len != 16)
        return luaL_argerror(L, 1, "16-byte id");
    char hex[LURAY_OID_HEX_LEN + 1];
    luray_oid_hex(luray_proto_id_at((const uint8_t *)s), hex);
    lua_pushstring(L, hex);
    return 1;
}

static int l_sleep(lua_State *L)
{
    double s = luaL_checknumber(L, 1);
    ctx_t *c = ctx_of(L);
    if (c->connected)
        luray_client_flush(&c->cl);
    if (s <= 0)
        return 0;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    return 0;
}

static int l_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + ts.tv_nsec / 1e9);
    return 1;
}

/* core.start_node(cfg) -> session_dir, pid | nil, err */
/* `luray serve run` makes its embedded cluster the machine's current one (when none is), so that
 * `luray serve status` and `luray serve shutdown` in another terminal reach it. */
static bool g_published;

static void publish_session(const char *dir)
{
    char cur[4096], err[256];
    const char *want = getenv("LURAY_PUBLISH_SESSION");
    if (!want || strcmp(want, "1") != 0 || luray_session_find(NULL, cur, sizeof(cur), err,
                                                               sizeof(err)) == 0)
        return;
    g_published = luray_session_set_current(dir) == 0;
}

static int l_start_node(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luray_node_opts_t o;
    memset(&o, 0, sizeof(o));
    char dir[4096], exe[4096];
    if (luray_session_create(dir, sizeof(dir))) {
        lua_pushnil(L);
        lua_pushstring(L, "cannot create a session directory");
        return 2;
    }
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    exe[n > 0 ? n : 0] = 0;
    o.session_dir = dir;
    o.exe = exe;
    lua_getfield(L, 1, "num_cpus");
    o.num_cpus = lua_isnil(L, -1) ? (double)sysconf(_SC_NPROCESSORS_ONLN) : lua_tonumber(L, -1);
    lua_getfield(L, 1, "num_gpus");
    o.num_gpus = lua_tonumber(L, -1);
    lua_getfield(L, 1, "object_store_memory");
    o.object_store_memory = lua_isnil(L, -1) ? luray_session_default_store_memory()
                                             : (uint64_t)lua_tointeger(L, -1);
    lua_getfield(L, 1, "resources_json");
    o.resources_json = lua_tostring(L, -1);
    o.node_id = 1;
    o.host = "127.0.0.1";
    o.ready_fd = -1;
    pid_t pid = 0;
    char err[512];
    luray_session_sweep_shm();
    const char *mode = getenv("LURAY_EMBEDDED");
    if (mode && strcmp(mode, "process") == 0) {
        if (luray_session_spawn_node(&o, false, &pid, err, sizeof(err))) {
            luray_session_remove(dir);
            lua_pushnil(L);
            lua_pushstring(L, err);
            return 2;
        }
    } else {
        /* The default: the node on a thread of this driver, reached over inproc. */
        static unsigned counter;
        char inproc[128];
        snprintf(inproc, sizeof(inproc), "inproc://luray-node-%d-%u", (int)getpid(), ++counter);
        o.inproc_addr = inproc;
        if (g_node_thread) {
            lua_pushnil(L);
            lua_pushstring(L, "an embedded cluster is already running in this process");
            return 2;
        }
        if (luray_node_start_thread(&o, &g_node_thread, err, sizeof(err))) {
            luray_session_remove(dir);
            lua_pushnil(L);
            lua_pushstring(L, err);
            return 2;
        }
        luray_client_set_inproc(dir, inproc);
        publish_session(dir);
    }
    lua_pushstring(L, dir);
    lua_pushinteger(L, pid);
    return 2;
}

static int l_find_session(lua_State *L)
{
    const char *addr = luaL_optstring(L, 1, NULL);
    char dir[4096], err[512];
    if (luray_session_find(addr, dir, sizeof(dir), err, sizeof(err))) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    lua_pushstring(L, dir);
    return 1;
}

/* core.reap(pid, timeout_s, session_dir): waits for an embedded node to exit, then cleans up. */
static int l_reap(lua_State *L)
{
    pid_t pid = (pid_t)luaL_checkinteger(L, 1);
    double timeout = luaL_optnumber(L, 2, 5);
    const char *dir = luaL_optstring(L, 3, NULL);
    int status;
    if (pid == 0) {
        /* the node thread: SHUTDOWN was sent; after it ends nobody is left to say goodbye to */
        luray_node_join(g_node_thread, (int)(timeout * 1000));
        g_node_thread = NULL;
        luray_client_set_inproc(NULL, NULL);
        ctx_disconnect(ctx_of(L), false);
        if (dir && g_published)
            luray_session_clear_current(dir);
        g_published = false;
        if (dir)
            luray_session_remove(dir);
        return 0;
    }
    struct timespec step = {0, 2000000};
    double waited = 0;
    bool termed = false;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (!termed && waited > timeout / 2) {
            kill(pid, SIGTERM); /* the shutdown message did not get through */
            termed = true;
        }
        if (waited > timeout) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        nanosleep(&step, NULL);
        waited += 0.002;
    }
    ctx_disconnect(ctx_of(L), false);
    if (dir)
        luray_session_remove(dir);
    return 0;
}

/* ---- cancellation of a running task (worker side) ---- */

static lua_State *cancel_L;
static volatile sig_atomic_t cancel_requested;

static void cancel_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    cancel_requested = 0;
    luaL_error(L, "TaskCancelledError: the task was cancelled");
}

static void on_sigusr1(int sig)
{
    (void)sig;
    cancel_requested = 1;
    if (cancel_L)
        lua_sethook(cancel_L, cancel_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static int l_enable_cancel(lua_State *L)
{
    /* A worker shares its driver's terminal when the node runs in the driver: Ctrl-C there is
     * for the driver, which stops the cluster in order. */
    signal(SIGINT, SIG_IGN);
    /* A worker ends with its node, even in the middle of a long task. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        _exit(1);
    cancel_L = L;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigusr1;
    sigaction(SIGUSR1, &sa, NULL);
    return 0;
}

static int l_context(lua_State *L)
{
    ctx_t *c = ctx_of(L);
    if (!c->connected)
        return 0;
    char hex[16];
    snprintf(hex, sizeof(hex), "%08x", c->cl.node_id);
    lua_pushstring(L, hex);
    lua_pushinteger(L, c->cl.proc_id);
    return 2;
}

/* core.encode(value) -> blob string (for shipping functions and classes once) */
static int l_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    luray_ser_t s;
    luray_ser_init(&s);
    int rc = luray_ser_encode(L, 1, 1, "value", &s);
    if (rc)
        return raise_ser(L, &s, rc);
    size_t size = luray_ser_blob_size(&s);
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, size);
    luray_ser_write(&s, p);
    luaL_pushresultsize(&b, size);
    luray_ser_close(&s);
    return 1;
}

/* core.decode(blob) -> the values core.encode wrote: a model factory kept in a checkpoint, say.
 * A blob that is not one raises, naming why. */
static int l_decode(lua_State *L)
{
    size_t len;
    const char *blob = luaL_checklstring(L, 1, &len);
    char err[512];
    if (luray_ser_check(blob, len) != 0)
        return luaL_error(L, "cannot decode: not a luray value blob");
    int n = luray_ser_decode(L, blob, len, 0, err, sizeof(err));
    if (n < 0)
        return luaL_error(L, "cannot decode: %s", err);
    return n;
}

static void push_json(lua_State *L, const cJSON *j)
{
    luaL_checkstack(L, 4, "JSON too deep");
    if (cJSON_IsObject(j)) {
        lua_newtable(L);
        const cJSON *it;
        cJSON_ArrayForEach(it, j)
        {
            push_json(L, it);
            lua_setfield(L, -2, it->string);
        }
    } else if (cJSON_IsArray(j)) {
        lua_newtable(L);
        int i = 1;
        const cJSON *it;
        cJSON_ArrayForEach(it, j)
        {
            push_json(L, it);
            lua_rawseti(L, -2, i++);
        }
    } else if (cJSON_IsString(j)) {
        lua_pushstring(L, j->valuestring);
    } else if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d == (double)(lua_Integer)d && d > -9e15 && d < 9e15)
            lua_pushinteger(L, (lua_Integer)d);
        else
            lua_pushnumber(L, d);
    } else if (cJSON_IsBool(j)) {
        lua_pushboolean(L, cJSON_IsTrue(j));
    } else {
        lua_pushnil(L);
    }
}

static int l_json_decode(lua_State *L)
{
    const char *s = luaL_checkstring(L, 1);
    cJSON *j = cJSON_Parse(s);
    if (!j)
        return luaL_error(L, "invalid JSON near '%.20s'", cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : "");
    push_json(L, j);
    cJSON_Delete(j);
    return 1;
}

static int l_register_metatable(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "__name");
    if (!lua_isstring(L, -1))
        return luaL_argerror(L, 1, "metatable needs a __name");
    luray_ser_register_metatable(L, 1);
    return 0;
}

/* core.setenv(name, value): for settings the embedded node and its workers inherit. */
static int l_setenv(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *value = luaL_checkstring(L, 2);
    if (!*name || strchr(name, '='))
        return luaL_argerror(L, 1, "not a valid environment variable name");
    if (setenv(name, value, 1) != 0)
        return luaL_error(L, "setenv %s: %s", name, strerror(errno));
    return 0;
}

static int l_set_log_level(lua_State *L)
{
    int level = luray_log_parse_level(luaL_checkstring(L, 1));
    if (level < 0)
        return luaL_argerror(L, 1, "log_level must be error, warn, info, debug or 0-3");
    luray_log_set_level(level);
    lua_pushinteger(L, level);
    return 1;
}

static const luaL_Reg core_funcs[] = {
    {"setenv", l_setenv},
    {"set_log_level", l_set_log_level},
    {"register_metatable", l_register_metatable},
    {"encode", l_encode},
    {"decode", l_decode},
    {"json_decode", l_json_decode},
    {"connect", l_connect},
    {"disconnect", l_disconnect},
    {"flush", l_flush},
    {"template", l_template},
    {"submit", l_submit},
    {"put", l_put},
    {"get", l_get},
    {"wait", l_wait},
    {"recv", l_recv},
    {"done", l_done},
    {"info", l_info},
    {"lookup", l_lookup},
    {"kill", l_kill},
    {"cancel", l_cancel},
    {"pg_create", l_pg_create},
    {"pack_dir", l_pack_dir},
    {"pack_unpack", l_pack_unpack},
    {"chdir", l_chdir},
    {"rename", l_rename},
    {"pg_remove", l_pg_remove},
    {"handle", l_handle},
    {"handle_id", l_handle_id},
    {"is_ref", l_is_ref},
    {"is_handle", l_is_handle},
    {"ref_task", l_ref_task},
    {"hex", l_hex},
    {"sleep", l_sleep},
    {"now", l_now},
    {"start_node", l_start_node},
    {"find_session", l_find_session},
    {"reap", l_reap},
    {"shutdown_node", l_shutdown_node},
    {"enable_cancel", l_enable_cancel},
    {"context", l_context},
    {NULL, NULL},
};

static int luaopen_luray_core(lua_State *L)
{
    luaL_newmetatable(L, REF_MT);
    lua_pushcfunction(L, l_ref_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_ref_gc);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, l_ref_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, l_ref_eq);
    lua_setfield(L, -2, "__eq");
    lua_newtable(L);
    lua_pushcfunction(L, l_ref_hex);
    lua_setfield(L, -2, "hex");
    /* Drops this handle's reference now instead of at collection: streaming code releases
     * blocks it is done with so the store frees them at once. */
    lua_pushcfunction(L, l_ref_gc);
    lua_setfield(L, -2, "release");
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newmetatable(L, HANDLE_MT);
    lua_pop(L, 1);
    luaL_newmetatable(L, TEMPLATE_MT);
    lua_pop(L, 1);
    luaL_newmetatable(L, PIN_MT);
    lua_pushcfunction(L, l_pin_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luray_ser_register(L, &ref_serializer);
    luray_ser_register(L, &handle_serializer);

    lua_newtable(L);
    int mod = lua_gettop(L);
    ctx_t *c = lua_newuserdatauv(L, sizeof(*c), 0);
    memset(c, 0, sizeof(*c));
    if (luaL_newmetatable(L, CTX_MT)) {
        lua_pushcfunction(L, l_ctx_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "luray.ctx");
    luaL_setfuncs(L, core_funcs, 1);
    lua_settop(L, mod);
    luray_lua_tensor_open(L, mod);
    luaL_getmetatable(L, HANDLE_MT);
    lua_setfield(L, mod, "handle_mt");
    luaL_getmetatable(L, REF_MT);
    lua_setfield(L, mod, "ref_mt");
    return 1;
}

/* ---- state setup ---- */

static void exe_dir(char *out, size_t len)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    exe[n > 0 ? n : 0] = 0;
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = 0;
    snprintf(out, len, "%s", exe);
}

/* os.execute and io.popen with SIGCHLD unblocked while they start their child: the driver's
 * thread blocks SIGCHLD (the embedded node's, see node_thread.c), and a child would inherit
 * that mask, so a shell it runs would wait forever for its own background jobs. */
static int spawn_unblocked(lua_State *L)
{
    sigset_t chld, old;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    pthread_sigmask(SIG_UNBLOCK, &chld, &old);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    int status = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (status != LUA_OK)
        return lua_error(L);
    return lua_gettop(L);
}

static void wrap_spawner(lua_State *L, const char *lib, const char *name)
{
    lua_getglobal(L, lib);
    lua_getfield(L, -1, name);
    lua_pushcclosure(L, spawn_unblocked, 1);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

int luray_lua_setup(lua_State *L, const char *extra_path_dir, int config_idx, char *err,
                    size_t errlen)
{
    if (config_idx)
        config_idx = lua_absindex(L, config_idx);
    luaL_openlibs(L);
    wrap_spawner(L, "os", "execute");
    wrap_spawner(L, "io", "popen");
    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return LURAY_EIO;
    }
    char dir[4096];
    exe_dir(dir, sizeof(dir));
    lua_getglobal(L, "package");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    if (extra_path_dir && *extra_path_dir) {
        luaL_addstring(&b, extra_path_dir);
        luaL_addstring(&b, "/?.lua;");
        luaL_addstring(&b, extra_path_dir);
        luaL_addstring(&b, "/?/init.lua;");
    }
    const char *lualib = getenv("LURAY_LUALIB");
    char lib[4200];
    if (lualib)
        snprintf(lib, sizeof(lib), "%s", lualib);
    else
        snprintf(lib, sizeof(lib), "%s/../share/luray/lua", dir);
    luaL_addstring(&b, lib);
    luaL_addstring(&b, "/?.lua;");
    luaL_addstring(&b, lib);
    luaL_addstring(&b, "/?/init.lua;");
    lua_getfield(L, -2, "path");
    luaL_addvalue(&b);
    luaL_pushresult(&b);
    lua_setfield(L, -2, "path");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_luray_core);
    lua_setfield(L, -2, "luray.core");
    lua_pop(L, 1);
    lua_getfield(L, -1, "loaded");
    if (config_idx)
        lua_pushvalue(L, config_idx);
    else
        lua_newtable(L);
    lua_setfield(L, -2, "luray.config");
    lua_pop(L, 2);
    luray_plugins_install_searcher(L);
    luray_ser_set_resolver(L, luray_plugins_resolve_type);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "luray");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        snprintf(err, errlen, "cannot load the luray Lua library: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return LURAY_EIO;
    }
    lua_setglobal(L, "luray");
    return 0;
}
