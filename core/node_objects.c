/* The node's object table: pending and ready objects, reference counts held by processes and by
 * other objects, puts into the store, and gets and waits that block until objects are ready. */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "errors_str.h"
#include "log.h"
#include "node_internal.h"
#include "node_remote.h"
#include "serialize.h"

obj_t *node_obj_get(node_t *n, luray_oid_t id) { return luray_oidmap_get(&n->objs, id); }

obj_t *node_obj_new(node_t *n, luray_oid_t id)
{
    obj_t *o = node_obj_get(n, id);
    if (o)
        return o;
    o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    o->id = id;
    o->state = LURAY_OBJ_PENDING;
    if (luray_oidmap_put(&n->objs, id, o)) {
        free(o);
        return NULL;
    }
    node_obj_borrow(n, o);
    return o;
}

static void obj_free(node_t *n, obj_t *o)
{
    luray_oidmap_del(&n->objs, o->id);
    node_obj_release_remote(n, o);
    if (o->lineage)
        node_lineage_release(n, o->lineage);
    if (o->in_store)
        luray_store_delete(n->store, o->id);
    free(o->data);
    free(o->waiters);
    luray_oid_t *contained = o->contained;
    uint32_t nc = o->n_contained;
    free(o);
    for (uint32_t i = 0; i < nc; i++)
        node_obj_decref(n, contained[i], 1);
    free(contained);
}

void node_obj_incref(node_t *n, luray_oid_t id, int64_t count)
{
    obj_t *o = node_obj_new(n, id);
    if (o)
        o->refs += count;
}

void node_obj_decref(node_t *n, luray_oid_t id, int64_t count)
{
    obj_t *o = node_obj_get(n, id);
    if (!o)
        return;
    o->refs -= count;
    if (o->refs <= 0 && o->state != LURAY_OBJ_PENDING)
        obj_free(n, o);
}

void node_proc_ref(node_t *n, proc_t *p, luray_oid_t id, int64_t delta)
{
    intptr_t c = (intptr_t)luray_oidmap_get(&p->refs, id);
    intptr_t nc = c + delta;
    if (nc < 0) {
        node_count_bad(n, "REFS (more releases than references)");
        delta = -c;
        nc = 0;
    }
    if (nc == 0)
        luray_oidmap_del(&p->refs, id);
    else
        luray_oidmap_put(&p->refs, id, (void *)nc);
    if (delta > 0)
        node_obj_incref(n, id, delta);
    else if (delta < 0)
        node_obj_decref(n, id, -delta);
}

int node_obj_add_waiter(obj_t *o, uint8_t kind, void *p)
{
    if (o->n_waiters == o->cap_waiters) {
        uint32_t cap = o->cap_waiters ? o->cap_waiters * 2 : 2;
        waiter_t *w = realloc(o->waiters, cap * sizeof(*w));
        if (!w)
            return LURAY_ENOMEM;
        o->waiters = w;
        o->cap_waiters = cap;
    }
    o->waiters[o->n_waiters++] = (waiter_t){kind, p};
    return 0;
}

void node_obj_remove_waiter(obj_t *o, void *p)
{
    for (uint32_t i = 0; i < o->n_waiters;)
        if (o->waiters[i].p == p)
            o->waiters[i] = o->waiters[--o->n_waiters];
        else
            i++;
}

/* ---- gets ---- */

static void getreq_unref(getreq_t *g);

static void on_get_timer_closed(uv_handle_t *h)
{
    getreq_t *g = h->data;
    getreq_unref(g);
}

static void getreq_unref(getreq_t *g)
{
    if (--g->refs == 0) {
        free(g->ids);
        free(g);
    }
}

static void put_entry(node_t *n, proc_t *p, luray_buf_t *b, obj_t *o, luray_oid_t id, bool data)
{
    luray_proto_put_id(b, id);
    if (!o) {
        luray_buf_put_u8(b, LURAY_OBJ_MISSING);
        return;
    }
    /* Ready on another node counts as ready for a wait. */
    luray_buf_put_u8(b, !data && o->state == LURAY_OBJ_PENDING && o->at ? LURAY_OBJ_READY
                                                                        : o->state);
    if (!data || o->state == LURAY_OBJ_PENDING)
        return;
    if (o->in_store) {
        uint64_t off = 0, size = 0;
        int rc = luray_store_pin(n->store, id, &off, &size);
        if (rc == 0) {
            intptr_t c = (intptr_t)luray_oidmap_get(&p->pins, id);
            luray_oidmap_put(&p->pins, id, (void *)(c + 1));
        } else {
            luray_log(LURAY_LOG_ERROR, "node", "cannot read object from the store: %s",
                      luray_strerror(rc));
            size = 0;
        }
        luray_buf_put_u8(b, LURAY_LOC_SHM);
        luray_buf_put_u64(b, off);
        luray_buf_put_u64(b, size);
    } else {
        luray_buf_put_u8(b, LURAY_LOC_INLINE);
        luray_buf_put_str(b, o->data, o->len);
    }
}

static void get_reply(node_t *n, getreq_t *g, bool timed_out)
{
    proc_t *p = g->proc;
    g->done = true;
    if (g->has_timer) {
        uv_timer_stop(&g->timer);
        g->has_timer = false;
        uv_close((uv_handle_t *)&g->timer, on_get_timer_closed);
    }
    if (p->gone)
        return;
    luray_buf_t *b = node_msg_begin(n, p, LURAY_MSG_READY);
    luray_buf_put_u64(b, g->req);
    luray_buf_put_u8(b, timed_out);
    luray_buf_put_varint(b, g->n);
    for (uint32_t i = 0; i < g->n; i++)
        put_entry(n, p, b, node_obj_get(n, g->ids[i]), g->ids[i], !g->wait_mode && !timed_out);
    node_msg_end(p);
    /* A worker stays blocked while any of its gets waits: one answered late (the worker went
     * on with a result it got directly) must not count it as running again. */
    if (g->blocking) {
        g->blocking = false;
        if (p->n_blocking && --p->n_blocking == 0 && p->blocked)
            node_worker_blocked(n, p, false);
    }
}

static void on_get_timeout(uv_timer_t *t)
{
    getreq_t *g = t->data;
    node_t *n = g->proc->node;
    if (!g->done) {
        get_reply(n, g, true);
        node_flush_all(n);
    }
}

void node_on_get(node_t *n, proc_t *p, luray_rd_t *r)
{
    uint64_t req = luray_rd_u64(r);
    uint8_t mode = luray_rd_u8(r);
    uint32_t need = luray_rd_u32(r);
    int64_t timeout_ms = (int64_t)luray_rd_u64(r);
    uint64_t count = luray_rd_varint(r);
    if (r->err || count > luray_rd_left(r) / 16 || need > count)
        return node_count_bad(n, "GET");
    getreq_t *g = calloc(1, sizeof(*g));
    if (!g)
        return;
    g->ids = malloc((count ? count : 1) * sizeof(luray_oid_t));
    if (!g->ids) {
        free(g);
        return;
    }
    g->proc = p;
    g->req = req;
    g->n = (uint32_t)count;
    g->wait_mode = mode == 1;
    g->need = mode == 1 ? need : (uint32_t)count;
    g->refs = 1;
    /* Objects that live elsewhere are fetched first: a fetch that fails at once (their node is
     * gone) makes them ready with an error before they are counted. */
    for (uint32_t i = 0; i < g->n; i++) {
        g->ids[i] = luray_proto_rd_id(r);
        obj_t *o = node_obj_get(n, g->ids[i]);
        if (o && o->state == LURAY_OBJ_PENDING && !g->wait_mode)
            node_obj_want(n, o);
    }
    for (uint32_t i = 0; i < g->n; i++) {
        obj_t *o = node_obj_get(n, g->ids[i]);
        if (!o || o->state != LURAY_OBJ_PENDING || (g->wait_mode && o->at))
            g->have++;
    }
    if (g->have >= g->need || timeout_ms == 0) {
        get_reply(n, g, g->have < g->need);
        getreq_unref(g);
        return;
    }
    for (uint32_t i = 0; i < g->n; i++) {
        obj_t *o = node_obj_get(n, g->ids[i]);
        if (o && o->state == LURAY_OBJ_PENDING && !(g->wait_mode && o->at) &&
            node_obj_add_waiter(o, WAIT_GET, g) == 0) {
            g->refs++;
            if (g->wait_mode)
                node_obj_want(n, o); /* owned elsewhere: its owner says when it is ready */
            if (!g->wait_mode)
                node_task_caller_waits(n, p, g->ids[i]);
        }
    }
    if (timeout_ms > 0) {
        uv_timer_init(n->loop, &g->timer);
        g->timer.data = g;
        g->has_timer = true;
        g->refs++;
        uv_timer_start(&g->timer, on_get_timeout, (uint64_t)timeout_ms, 0);
    }
    if (p->kind == LURAY_PROC_WORKER && p->task) {
        g->blocking = true;
        p->n_blocking++;
        if (!p->blocked)
            node_worker_blocked(n, p, true);
    }
    getreq_unref(g);
}

static void wake_waiters(node_t *n, obj_t *o)
{
    waiter_t *ws = o->waiters;
    uint32_t nw = o->n_waiters;
    o->waiters = NULL;
    o->n_waiters = o->cap_waiters = 0;
    for (uint32_t i = 0; i < nw; i++) {
        if (ws[i].kind == WAIT_TASK) {
            node_task_dep_ready(n, ws[i].p);
            continue;
        }
        if (ws[i].kind == WAIT_PEER) {
            node_obj_answer_peer(n, ws[i].p, o);
            continue;
        }
        getreq_t *g = ws[i].p;
        if (!g->done && ++g->have >= g->need)
            get_reply(n, g, false);
        getreq_unref(g);
    }
    free(ws);
}

void node_obj_resolve(node_t *n, obj_t *o, uint8_t state, uint8_t *blob, uint32_t len,
                      bool in_store, const luray_oid_t *contained, uint32_t n_contained)
{
    if (o->state != LURAY_OBJ_PENDING) {
        free(blob);
        return;
    }
    o->state = state;
    o->data = blob;
    o->len = len;
    o->in_store = in_store;
    if (n_contained) {
        o->contained = malloc(n_contained * sizeof(luray_oid_t));
        if (o->contained) {
            memcpy(o->contained, contained, n_contained * sizeof(luray_oid_t));
            o->n_contained = n_contained;
            for (uint32_t i = 0; i < n_contained; i++)
                node_obj_incref(n, contained[i], 1);
        }
    }
    wake_waiters(n, o);
    if (o->refs <= 0)
        obj_free(n, o);
}

void node_obj_located(node_t *n, obj_t *o, uint32_t at, uint64_t size,
                      const luray_oid_t *contained, uint32_t n_contained)
{
    if (o->state != LURAY_OBJ_PENDING)
        return;
    o->at = at;
    o->size = size;
    if (n_contained && !o->n_contained) {
        o->contained = malloc(n_contained * sizeof(luray_oid_t));
        if (o->contained) {
            memcpy(o->contained, contained, n_contained * sizeof(luray_oid_t));
            o->n_contained = n_contained;
            for (uint32_t i = 0; i < n_contained; i++)
                node_obj_incref(n, contained[i], 1);
        }
    }
    /* Tasks and waits go on; gets stay and the bytes are pulled for them. */
    bool pull = false;
    for (uint32_t i = 0; i < o->n_waiters;) {
        waiter_t w = o->waiters[i];
        if (w.kind == WAIT_GET && !((getreq_t *)w.p)->wait_mode) {
            pull = true;
            i++;
            continue;
        }
        o->waiters[i] = o->waiters[--o->n_waiters];
        if (w.kind == WAIT_TASK) {
            node_task_dep_ready(n, w.p);
        } else if (w.kind == WAIT_PEER) {
            node_obj_answer_peer(n, w.p, o);
        } else {
            getreq_t *g = w.p;
            if (!g->done && ++g->have >= g->need)
                get_reply(n, g, false);
            getreq_unref(g);
        }
    }
    if (o->refs <= 0)
        obj_free(n, o);
    else if (pull)
        node_obj_want(n, o); /* last: it may resolve (and free) o at once */
}

uint8_t *node_encode_top(node_t *n, uint32_t *len)
{
    lua_State *L = n->L;
    luray_ser_t s;
    luray_ser_init(&s);
    uint8_t *blob = NULL;
    if (luray_ser_encode(L, lua_gettop(L), 1, "value", &s) == 0) {
        size_t sz = luray_ser_blob_size(&s);
        blob = aligned_alloc(LURAY_BLOB_ALIGN, (sz + LURAY_BLOB_ALIGN - 1) / LURAY_BLOB_ALIGN *
                                                   LURAY_BLOB_ALIGN);
        if (blob) {
            luray_ser_write(&s, blob);
            *len = (uint32_t)sz;
        }
    }
    luray_ser_close(&s);
    lua_pop(L, 1);
    return blob;
}

uint8_t *node_error_blob(node_t *n, const char *type, const char *message, const char *task,
                         uint32_t *len)
{
    lua_State *L = n->L;
    lua_createtable(L, 0, 4);
    lua_pushstring(L, type);
    lua_setfield(L, -2, "type");
    lua_pushstring(L, message);
    lua_setfield(L, -2, "message");
    lua_pushstring(L, task ? task : "");
    lua_setfield(L, -2, "task");
    lua_pushstring(L, "");
    lua_setfield(L, -2, "traceback");
    return node_encode_top(n, len);
}

luray_oid_t *node_read_ids(luray_rd_t *r, uint32_t *n)
{
    uint64_t count = luray_rd_varint(r);
    *n = 0;
    if (r->err || count > luray_rd_left(r) / 16) {
        r->err = LURAY_EPROTO;
        return NULL;
    }
    if (count == 0)
        return NULL;
    luray_oid_t *ids = malloc(count * sizeof(*ids));
    if (!ids) {
        r->err = LURAY_ENOMEM;
        return NULL;
    }
    for (uint64_t i = 0; i < count; i++)
        ids[i] = luray_proto_rd_id(r);
    *n = (uint32_t)count;
    return ids;
}

static uint8_t *copy_blob(const void *p, size_t len)
{
    uint8_t *b = aligned_alloc(LURAY_BLOB_ALIGN,
                               (len + LURAY_BLOB_ALIGN) / LURAY_BLOB_ALIGN * LURAY_BLOB_ALIGN);
    if (b && len)
        memcpy(b, p, len);
    return b;
}

void node_on_put(node_t *n, proc_t *p, luray_rd_t *r)
{
    luray_oid_t id = luray_proto_rd_id(r);
    size_t len;
    const void *blob = luray_rd_str(r, &len);
    uint32_t nc;
    luray_oid_t *contained = node_read_ids(r, &nc);
    if (r->err || luray_ser_check(blob, len) != 0 || node_obj_get(n, id)) {
        free(contained);
        return node_count_bad(n, "PUT");
    }
    obj_t *o = node_obj_new(n, id);
    uint8_t *copy = copy_blob(blob, len);
    if (!o || !copy) {
        free(copy);
        free(contained);
        return;
    }
    node_proc_ref(n, p, id, 1);
    node_obj_resolve(n, o, LURAY_OBJ_READY, copy, (uint32_t)len, false, contained, nc);
    free(contained);
}

void node_on_create(node_t *n, proc_t *p, luray_rd_t *r)
{
    uint64_t req = luray_rd_u64(r);
    luray_oid_t id = luray_proto_rd_id(r);
    uint8_t is_return = luray_rd_u8(r);
    uint64_t size = luray_rd_u64(r);
    if (r->err)
        return node_count_bad(n, "CREATE");
    uint64_t off = 0;
    int rc = luray_store_create(n->store, id, size, &off);
    if (rc == 0 && !is_return) {
        if (node_obj_get(n, id)) {
            luray_store_abort(n->store, id);
            rc = LURAY_EEXIST;
        } else if (node_obj_new(n, id)) {
            node_proc_ref(n, p, id, 1);
        }
    }
    luray_buf_t *b = node_msg_begin(n, p, LURAY_MSG_CREATED);
    luray_buf_put_u64(b, req);
    luray_buf_put_u32(b, (uint32_t)rc);
    luray_buf_put_u64(b, off);
    node_msg_end(p);
}

void node_on_seal(node_t *n, proc_t *p, luray_rd_t *r)
{
    luray_oid_t id = luray_proto_rd_id(r);
    uint8_t is_return = luray_rd_u8(r);
    uint32_t nc;
    luray_oid_t *contained = node_read_ids(r, &nc);
    if (r->err) {
        free(contained);
        return node_count_bad(n, "SEAL");
    }
    int rc = luray_store_seal(n->store, id);
    if (rc) {
        free(contained);
        return node_count_bad(n, "SEAL (no such unsealed object)");
    }
    if (!is_return) {
        obj_t *o = node_obj_get(n, id);
        if (o)
            node_obj_resolve(n, o, LURAY_OBJ_READY, NULL, 0, true, contained, nc);
        else
            luray_store_delete(n->store, id);
    }
    free(contained);
}

void node_on_refs(node_t *n, proc_t *p, luray_rd_t *r)
{
    uint64_t count = luray_rd_varint(r);
    if (r->err || count > luray_rd_left(r) / 20)
        return node_count_bad(n, "REFS");
    for (uint64_t i = 0; i < count; i++) {
        luray_oid_t id = luray_proto_rd_id(r);
        int32_t delta = (int32_t)luray_rd_u32(r);
        if (r->err)
            return node_count_bad(n, "REFS");
        node_proc_ref(n, p, id, delta);
    }
}

void node_on_unpin(node_t *n, proc_t *p, luray_rd_t *r)
{
    uint64_t count = luray_rd_varint(r);
    if (r->err || count > luray_rd_left(r) / 16)
        return node_count_bad(n, "UNPIN");
    for (uint64_t i = 0; i < count; i++) {
        luray_oid_t id = luray_proto_rd_id(r);
        intptr_t c = (intptr_t)luray_oidmap_get(&p->pins, id);
        if (c <= 0)
            continue;
        if (c == 1)
            luray_oidmap_del(&p->pins, id);
        else
            luray_oidmap_put(&p->pins, id, (void *)(c - 1));
        luray_store_unpin(n->store, id);
    }
}

void node_free_tables(node_t *n)
{
    for (size_t i = 0; i < n->objs.cap; i++) {
        obj_t *o = n->objs.slots[i].val;
        if (!o)
            continue;
        /* Gets still waiting at exit: each waiter holds a reference; the timer's was given up
         * when the loop closed every handle. */
        for (uint32_t k = 0; k < o->n_waiters; k++) {
            if (o->waiters[k].kind != WAIT_GET)
                continue;
            getreq_t *g = o->waiters[k].p;
            if (--g->refs <= (g->has_timer ? 1 : 0)) {
                free(g->ids);
                free(g);
            }
        }
        free(o->data);
        free(o->waiters);
        free(o->contained);
        free(o->pull);
        free(o);
    }
    luray_oidmap_close(&n->objs);
    for (size_t i = 0; i < n->tasks.cap; i++) {
        task_t *t = n->tasks.slots[i].val;
        if (t) {
            free(t->raw);
            free(t);
        }
    }
    luray_oidmap_close(&n->tasks);
    for (size_t i = 0; i < n->actors.cap; i++) {
        actor_t *a = n->actors.slots[i].val;
        if (!a)
            continue;
        if (a->create) {
            free(a->create->raw);
            free(a->create);
        }
        free(a->key);
        free(a->death);
        free(a->methods);
        free(a);
    }
    luray_oidmap_close(&n->actors);
    free(n->pgs);
    while (n->bundles) {
        bundle_t *b = n->bundles;
        n->bundles = b->next;
        free(b);
    }
    for (size_t i = 0; i < n->funcs.cap; i++)
        free(n->funcs.slots[i].val);
    luray_oidmap_close(&n->funcs);
    free(n->named);
    free(n->to_flush);
}
