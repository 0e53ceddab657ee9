/* Objects between nodes: pulling an object from the node that holds it, in chunks written
 * straight into our store; answering other nodes' pulls; references borrowed from an object's
 * owner; objects lost with a node.
 *
 * A pull first asks the owner (the node in the object's id) what it has: the value itself when
 * it is small, or where it lies (a node and a size). The puller then reserves the object in its
 * own store and asks that node for NODE_PULL_WINDOW chunks at a time, each written in place as it
 * arrives, so nothing but the store holds the object on the way. Several gets and tasks on this
 * node that want the same object wait on the one pull. */
#include "node_remote.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nanomsg/nn.h>

#include "errors_str.h"
#include "log.h"
#include "luray/errors.h"
#include "node_cluster.h"
#include "node_internal.h"
#include "serialize.h"

struct pull {
    uint32_t from;      /* the node asked */
    bool describing;    /* waiting for its OBJ answer */
    uint64_t size;
    uint64_t requested; /* next offset to ask for */
    uint64_t received;
    uint32_t outstanding;
    uint64_t off;       /* the object's offset in our store */
    bool created;       /* reserved in our store */
    uint64_t started;   /* loop time (ms) the bytes were first asked for */
};

#define DESCRIBE UINT64_MAX

static bool made_here(node_t *n, luray_oid_t id)
{
    luray_task_id_t t = luray_oid_task(id);
    return luray_oidmap_get(&n->tasks, t) || luray_oidmap_get(&n->actors, t);
}

bool node_obj_foreign(node_t *n, const obj_t *o)
{
    return n->cluster && o->id.node != n->node_id && !made_here(n, o->id);
}

static void send_refs(node_t *n, uint32_t node, luray_oid_t id, int32_t delta)
{
    proc_t *p = node_peer(n, node, true);
    if (!p || p->gone)
        return;
    luray_buf_t *b = node_msg_begin(n, p, LURAY_MSG_REFS);
    luray_buf_put_varint(b, 1);
    luray_proto_put_id(b, id);
    luray_buf_put_u32(b, (uint32_t)delta);
    node_msg_end(p);
}

void node_obj_borrow(node_t *n, obj_t *o)
{
    if (!n->cluster || o->id.node == n->node_id || n->making_returns || o->borrowed)
        return;
    o->borrowed = true;
    send_refs(n, o->id.node, o->id, 1);
}

static void pull_free(node_t *n, obj_t *o)
{
    pull_t *pl = o->pull;
    if (!pl)
        return;
    if (pl->created)
        luray_store_abort(n->store, o->id);
    free(pl);
    o->pull = NULL;
}

void node_obj_release_remote(node_t *n, obj_t *o)
{
    pull_free(n, o);
    if (o->borrowed && !node_is_dead(n, o->id.node))
        send_refs(n, o->id.node, o->id, -1);
    if (o->holder && o->holder != n->node_id && !node_is_dead(n, o->holder))
        send_refs(n, o->holder, o->id, -1);
    o->borrowed = false;
    o->holder = 0;
}

static void lost(node_t *n, obj_t *o, const char *fmt, uint32_t node)
{
    char msg[300], hex[LURAY_OID_HEX_LEN + 1];
    luray_oid_hex(o->id, hex);
    char what[200];
    snprintf(what, sizeof(what), fmt, node);
    snprintf(msg, sizeof(msg), "object %s was lost: %s", hex, what);
    pull_free(n, o);
    o->at = 0;
    uint32_t len = 0;
    uint8_t *blob = node_error_blob(n, "ObjectLostError", msg, NULL, &len);
    node_obj_resolve(n, o, LURAY_OBJ_ERROR, blob, len, false, NULL, 0);
}

static void send_pull(node_t *n, proc_t *p, luray_oid_t id, uint64_t off, uint64_t len)
{
    luray_buf_t *b = node_msg_begin(n, p, LURAY_MSG_PULL);
    luray_proto_put_id(b, id);
    luray_buf_put_u64(b, off);
    luray_buf_put_u64(b, len);
    node_msg_end(p);
}

static void request_chunks(node_t *n, obj_t *o)
{
    pull_t *pl = o->pull;
    proc_t *p = node_peer(n, pl->from, true);
    if (!p)
        return lost(n, o, "node %08x that held it is gone", pl->from);
    while (pl->outstanding < NODE_PULL_WINDOW && pl->requested < pl->size) {
        uint64_t len = pl->size - pl->requested;
        if (len > NODE_CHUNK)
            len = NODE_CHUNK;
        send_pull(n, p, o->id, pl->requested, len);
        pl->requested += len;
        pl->outstanding++;
    }
}

static void pull_finish(node_t *n, obj_t *o)
{
    uint64_t started = o->pull->started;
    uint32_t from = o->pull->from;
    int rc = luray_store_seal(n->store, o->id);
    o->pull->created = false;
    free(o->pull);
    o->pull = NULL;
    if (rc) {
        luray_store_abort(n->store, o->id);
        return lost(n, o, "sealing the copy pulled from node %08x failed", 0);
    }
    n->bytes_pulled += o->size;
    if (o->size >= (64u << 20)) {
        uv_update_time(n->loop);
        double s = (double)(uv_now(n->loop) - started) / 1000.0;
        luray_log(LURAY_LOG_INFO, "node", "pulled %.1f MB from node %08x in %.3f s (%.2f GB/s)",
                  (double)o->size / 1e6, from, s, s > 0 ? (double)o->size / 1e9 / s : 0);
    }
    o->at = 0;
    node_obj_resolve(n, o, LURAY_OBJ_READY, NULL, 0, true, NULL, 0);
}

/* Reserves o in our store and starts asking `from` for its bytes. */
static void pull_bytes(node_t *n, obj_t *o, uint32_t from, uint64_t size)
{
    pull_t *pl = o->pull;
    if (!pl) {
        pl = o->pull = calloc(1, sizeof(*pl));
        if (!pl)
            return;
    }
    pl->from = from;
    pl->describing = false;
    pl->size = size;
    o->size = size;
    int rc = luray_store_create(n->store, o->id, size, &pl->off);
    if (rc) {
        char msg[300];
        snprintf(msg, sizeof(msg), "cannot make room for %llu bytes in the object store to pull "
                 "it from node %%08x: %s", (unsigned long long)size, luray_strerror(rc));
        return lost(n, o, msg, from);
    }
    pl->created = true;
    pl->started = uv_now(n->loop);
    n->pulls_started++;
    if (size == 0)
        return pull_finish(n, o);
    request_chunks(n, o);
}

void node_obj_want(node_t *n, obj_t *o)
{
    if (!n->cluster || o->state != LURAY_OBJ_PENDING || o->pull)
        return;
    if (o->at && o->at != n->node_id) {
        if (node_is_dead(n, o->at))
            return lost(n, o, "node %08x that held it died", o->at);
        pull_bytes(n, o, o->at, o->size);
        return;
    }
    if (!node_obj_foreign(n, o))
        return;
    uint32_t owner = o->id.node;
    proc_t *p = node_peer(n, owner, true);
    if (!p)
        return lost(n, o, "its owner, node %08x, died", owner);
    o->pull = calloc(1, sizeof(pull_t));
    if (!o->pull)
        return;
    o->pull->from = owner;
    o->pull->describing = true;
    send_pull(n, p, o->id, DESCRIBE, 0);
}

/* ---- answering another node ---- */

static void put_contained(luray_buf_t *b, const obj_t *o)
{
    luray_buf_put_varint(b, o->n_contained);
    for (uint32_t i = 0; i < o->n_contained; i++)
        luray_proto_put_id(b, o->contained[i]);
}

void node_obj_answer_peer(node_t *n, proc_t *p, obj_t *o)
{
    if (p->gone)
        return;
    luray_buf_t *b = node_msg_begin(n, p, LURAY_MSG_OBJ);
    luray_proto_put_id(b, o->id);
    uint64_t off = 0, size = 0;
    if (o->state == LURAY_OBJ_READY && o->in_store &&
        luray_store_pin(n->store, o->id, &off, &size) == 0) {
        luray_store_unpin(n->store, o->id);
        luray_buf_put_u8(b, LURAY_OBJ_READY);
        luray_buf_put_u8(b, LURAY_LOC_NODE);
        luray_buf_put_u32(b, n->node_id);
        luray_buf_put_u64(b, size);
        put_contained(b, o);
    } else if (o->state == LURAY_OBJ_PENDING && o->at && !node_is_dead(n, o->at)) {
        luray_buf_put_u8(b, LURAY_OBJ_READY);
        luray_buf_put_u8(b, LURAY_LOC_NODE);
        luray_buf_put_u32(b, o->at);
        luray_buf_put_u64(b, o->size);
        put_contained(b, o);
    } else if ((o->state == LURAY_OBJ_READY || o->state == LURAY_OBJ_ERROR) && !o->in_store) {
        luray_buf_put_u8(b, o->state);
        luray_buf_put_u8(b, LURAY_LOC_INLINE);
        luray_buf_put_str(b, o->data, o->len);
        put_contained(b, o);
    } else {
        luray_buf_put_u8(b, LURAY_OBJ_MISSING);
    }
    node_msg_end(p);
}

static void answer_missing(node_t *n, proc_t *p, luray_oid_t id)
{
    luray_buf_t *b = node_msg_begin(n, p, LURAY_MSG_OBJ);
    luray_proto_put_id(b, id);
    luray_buf_put_u8(b, LURAY_OBJ_MISSING);
    node_msg_end(p);
}

/* One chunk, sealed straight into the message nanomsg sends: the store's bytes are copied once. */
static void send_chunk(node_t *n, proc_t *p, luray_oid_t id, uint64_t off, uint64_t len)
{
    uint64_t at = 0, size = 0;
    if (luray_store_pin(n->store, id, &at, &size) != 0 || off > size)
        return answer_missing(n, p, id);
    if (len > size - off)
        len = size - off;
    if (len > NODE_CHUNK)
        len = NODE_CHUNK;
    luray_buf_t hdr;
    luray_buf_init(&hdr);
    luray_buf_put_u32(&hdr, LURAY_WIRE_MAGIC);
    luray_buf_put_u32(&hdr, 1);
    luray_buf_put_u32(&hdr, (uint32_t)(16 + 8 + len));
    luray_buf_put_u16(&hdr, LURAY_MSG_CHUNK);
    luray_buf_put_u16(&hdr, 0);
    luray_proto_put_id(&hdr, id);
    luray_buf_put_u64(&hdr, off);
    size_t flen = hdr.len + len;
    uint8_t *msg = hdr.err ? NULL : nn_allocmsg(flen + LURAY_AUTH_OVERHEAD, 0);
    if (msg) {
        memcpy(msg + LURAY_AUTH_HEADER, hdr.data, hdr.len);
        memcpy(msg + LURAY_AUTH_HEADER + hdr.len, (uint8_t *)luray_store_base(n->store) + at + off,
               len);
    }
    luray_buf_close(&hdr);
    luray_store_unpin(n->store, id);
    if (!msg) {
        luray_log(LURAY_LOG_ERROR, "node", "out of memory sending a chunk to node %08x",
                  p->peer_node);
        return;
    }
    node_peer_send_data(n, p, msg, flen);
}

void node_on_pull(node_t *n, proc_t *p, luray_rd_t *r)
{
    luray_oid_t id = luray_proto_rd_id(r);
    uint64_t off = luray_rd_u64(r);
    uint64_t len = luray_rd_u64(r);
    if (r->err)
        return node_count_bad(n, "PULL");
    obj_t *o = node_obj_get(n, id);
    if (off != DESCRIBE)
        return send_chunk(n, p, id, off, len);
    if (!o)
        return answer_missing(n, p, id);
    if (o->state != LURAY_OBJ_PENDING || o->at)
        return node_obj_answer_peer(n, p, o);
    /* Not made yet (or being fetched here): answered when it is. */
    if (node_obj_add_waiter(o, WAIT_PEER, p) == 0)
        node_obj_want(n, o);
    else
        answer_missing(n, p, id);
}

void node_on_obj(node_t *n, proc_t *p, luray_rd_t *r)
{
    luray_oid_t id = luray_proto_rd_id(r);
    uint8_t state = luray_rd_u8(r);
    if (r->err)
        return node_count_bad(n, "OBJ");
    obj_t *o = node_obj_get(n, id);
    if (!o || !o->pull || !o->pull->describing || o->pull->from != p->peer_node)
        return; /* nobody here waits for it any more */
    if (state == LURAY_OBJ_MISSING)
        return lost(n, o, "node %08x has no copy (its last reference was dropped?)",
                    p->peer_node);
    uint8_t loc = luray_rd_u8(r);
    if (loc == LURAY_LOC_INLINE) {
        size_t len = 0;
        const void *blob = luray_rd_str(r, &len);
        uint32_t nc = 0;
        luray_oid_t *contained = node_read_ids(r, &nc);
        if (r->err || luray_ser_check(blob, len) != 0 ||
            (state != LURAY_OBJ_READY && state != LURAY_OBJ_ERROR)) {
            free(contained);
            node_count_bad(n, "OBJ value");
            return lost(n, o, "node %08x sent it damaged", p->peer_node);
        }
        uint8_t *copy = aligned_alloc(LURAY_BLOB_ALIGN, (len + LURAY_BLOB_ALIGN) /
                                                            LURAY_BLOB_ALIGN * LURAY_BLOB_ALIGN);
        if (copy && len)
            memcpy(copy, blob, len);
        pull_free(n, o);
        node_obj_resolve(n, o, state, copy, (uint32_t)len, false, contained, nc);
        free(contained);
        return;
    }
    uint32_t at = luray_rd_u32(r);
    uint64_t size = luray_rd_u64(r);
    uint32_t nc = 0;
    luray_oid_t *contained = node_read_ids(r, &nc);
    if (r->err || loc != LURAY_LOC_NODE || at == 0 || at == n->node_id) {
        free(contained);
        node_count_bad(n, "OBJ location");
        return lost(n, o, "node %08x sent a bad location for it", p->peer_node);
    }
    if (nc && !o->n_contained) {
        o->contained = contained;
        o->n_contained = nc;
        for (uint32_t i = 0; i < nc; i++)
            node_obj_incref(n, contained[i], 1);
        contained = NULL;
    }
    free(contained);
    if (node_is_dead(n, at))
        return lost(n, o, "node %08x that held it died", at);
    pull_bytes(n, o, at, size);
}

void node_on_chunk(node_t *n, proc_t *p, luray_rd_t *r)
{
    luray_oid_t id = luray_proto_rd_id(r);
    uint64_t off = luray_rd_u64(r);
    size_t len = luray_rd_left(r);
    const uint8_t *bytes = luray_rd_bytes(r, len);
    if (r->err)
        return node_count_bad(n, "CHUNK");
    obj_t *o = node_obj_get(n, id);
    pull_t *pl = o ? o->pull : NULL;
    if (!pl || pl->describing || pl->from != p->peer_node || !pl->created)
        return;
    if (off > pl->size || len > pl->size - off || len == 0) {
        node_count_bad(n, "CHUNK range");
        return lost(n, o, "node %08x sent a chunk out of range", p->peer_node);
    }
    memcpy((uint8_t *)luray_store_base(n->store) + pl->off + off, bytes, len);
    pl->received += len;
    if (pl->outstanding)
        pl->outstanding--;
    if (pl->received >= pl->size)
        return pull_finish(n, o);
    request_chunks(n, o);
}

/* ---- a node died ---- */

void node_objects_node_lost(node_t *n, uint32_t id, const char *why)
{
    /* Collected first: resolving wakes waiters, which may change the table. */
    luray_oid_t *hit = NULL;
    size_t n_hit = 0, cap = 0;
    for (size_t i = 0; i < n->objs.cap; i++) {
        obj_t *o = n->objs.slots[i].val;
        if (!o || o->state != LURAY_OBJ_PENDING)
            continue;
        bool pulling = o->pull && o->pull->from == id;
        bool located = o->at == id;
        bool owner_gone = node_obj_foreign(n, o) && o->id.node == id;
        if (!pulling && !located && !owner_gone)
            continue;
        if (n_hit == cap) {
            cap = cap ? cap * 2 : 64;
            luray_oid_t *v = realloc(hit, cap * sizeof(*v));
            if (!v)
                break;
            hit = v;
        }
        hit[n_hit++] = o->id;
    }
    for (size_t i = 0; i < n_hit; i++) {
        obj_t *o = node_obj_get(n, hit[i]);
        if (!o || o->state != LURAY_OBJ_PENDING)
            continue;
        if (o->holder == id)
            o->holder = 0;
        if (node_rebuild(n, o))
            continue;
        char fmt[400];
        snprintf(fmt, sizeof(fmt), "node %%08x died (%s) and its task cannot run again", why);
        lost(n, o, fmt, id);
    }
    free(hit);
}
