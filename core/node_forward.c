/* The cluster side of scheduling: asking the head where a task should run, forwarding it to a
 * peer node, its results coming back (and going on to the node that asked us), tasks and actors
 * lost with a node, named actors across the cluster, placement groups, and rebuilding objects
 * from the tasks that made them (lineage).
 *
 * A forwarded task is a SUBMIT from our peer proc on the node that runs it, with a hard node
 * affinity to that node, so it never travels further. That node keeps the results that live in
 * its store, referenced by our peer proc, and sends a DONE when the task ends: values inline,
 * or the node and size of a store object, which is pulled when someone here gets it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "luray/errors.h"
#include "node_cluster.h"
#include "node_head.h"
#include "node_internal.h"
#include "node_remote.h"
#include "serialize.h"

#define PLACE_RETRY_MS 200
#define PLACE_TIMEOUT_MS 5000
#define PLACE_REASK_MS 1000 /* a heartbeat: the head's view of other nodes is no fresher */
#define DONE_ERROR_FLAG 0x80

enum { NAME_REG = 1, NAME_UNREG = 2, NAME_LOOKUP = 3 };
enum { PGOP_CREATE = 1, PGOP_REMOVE = 2 };

static char *task_label(const task_t *t, char *buf, size_t len)
{
    snprintf(buf, len, "%.*s", (int)(t->spec.method_len < 200 ? t->spec.method_len : 200),
             t->spec.method ? t->spec.method : "");
    return buf;
}

/* ---- placement ---- */

static bundle_t *local_bundle(node_t *n, const task_t *t)
{
    bundle_t *any = NULL;
    for (bundle_t *b = n->bundles; b; b = b->next) {
        if (b->removed || !luray_oid_eq(b->pg, t->spec.pg_id))
            continue;
        if (t->spec.bundle_index >= 0) {
            if (b->index == t->spec.bundle_index)
                return b;
            continue;
        }
        if (node_fits(n, b, t->req))
            return b;
        any = b;
    }
    return any;
}

static void place_req_of(node_t *n, const task_t *t, place_req_t *q)
{
    memset(q, 0, sizeof(*q));
    q->task = t->spec.task_id;
    q->strategy = t->spec.strategy;
    q->target = t->spec.target_node;
    q->soft = t->spec.soft;
    q->pg = t->spec.pg_id;
    q->bundle = t->spec.bundle_index;
    q->is_actor = t->spec.kind == LURAY_TASK_ACTOR_CREATE;
    q->n_res = t->spec.n_res;
    for (uint32_t i = 0; i < t->spec.n_res && i < LURAY_RES_MAX; i++) {
        q->names[i] = t->spec.res[i].name;
        q->name_lens[i] = t->spec.res[i].name_len;
        q->amounts[i] = t->spec.res[i].amount;
    }
    /* Prefer the node that holds its largest argument. */
    uint64_t best = 64 * 1024;
    for (uint32_t i = 0; i < t->spec.n_deps; i++) {
        obj_t *o = node_obj_get(n, luray_proto_id_at(t->spec.deps + 16 * i));
        if (!o)
            continue;
        if (o->at && o->size > best) {
            best = o->size;
            q->pref = o->at;
        } else if (o->in_store && o->size > best) {
            best = o->size;
            q->pref = n->node_id;
        }
    }
}

static task_t *task_by_id(node_t *n, luray_task_id_t id)
{
    task_t *t = luray_oidmap_get(&n->tasks, id);
    if (t)
        return t;
    actor_t *a = luray_oidmap_get(&n->actors, id);
    return a ? a->create : NULL;
}

static void start_remote(node_t *n, task_t *t, proc_t *peer)
{
    node_list_remove(t);
    t->state = T_RUNNING;
    t->worker = peer;
    node_list_push(&peer->remote, t, false);
    if (t->spec.kind == LURAY_TASK_ACTOR_CREATE && t->actor) {
        t->actor->worker = peer;
        t->actor->at = peer->peer_node;
        if (n->dir && t->actor->key)
            head_name_moved(n->dir, t->actor->id, peer->peer_node);
    }
    node_forward(n, peer, t);
}

static void unschedulable(node_t *n, task_t *t, const char *why)
{
    char msg[800], name[256];
    snprintf(msg, sizeof(msg), "task %s can never be scheduled: %s", task_label(t, name,
             sizeof(name)), why);
    node_list_remove(t);
    node_task_fail(n, t, "TaskUnschedulableError", msg);
    if (t->spec.kind == LURAY_TASK_ACTOR_CREATE && t->actor) {
        t->actor->restarts_left = 0;
        t->state = T_DONE;
        node_actor_dead(n, t->actor, msg);
        node_relay_create(n, t);
        return;
    }
    node_task_free(n, t);
}

/* Queues t to run here. One that may move (the head saw no room for it anywhere) asks again
 * later, so it is not held up here behind a long-lived actor once another node has room. */
static void stay_here(node_t *n, task_t *t, bool may_move)
{
    t->stay = !may_move;
    t->waits = may_move;
    if (may_move)
        n->reask_at = uv_now(n->loop) + PLACE_REASK_MS;
    if (t->spec.strategy == 3 && !t->bundle)
        t->bundle = local_bundle(n, t);
    node_list_remove(t);
    node_task_make_ready(n, t, true);
}

static void decided(node_t *n, task_t *t, uint32_t to, const char *addr, const char *why)
{
    t->placing = false;
    if (to == 0)
        return unschedulable(n, t, why && *why ? why : "the head found no node for it");
    if (to == PLACE_LATER) {
        t->place_at = uv_now(n->loop) + PLACE_RETRY_MS;
        return; /* stays in n->placing; the tick asks again */
    }
    if (to == n->node_id)
        return stay_here(n, t, t->spec.strategy == 0 && !node_fits(n, NULL, t->req));
    proc_t *peer = node_peer(n, to, true);
    if (!peer) {
        t->place_at = uv_now(n->loop) + PLACE_RETRY_MS;
        return;
    }
    if (t->waits)
        n->reask_at = 0; /* room turned up elsewhere: the next task waiting here asks at once */
    if (addr && *addr)
        node_peer_set_addr(n, peer, addr);
    start_remote(n, t, peer);
}

static void ask_head(node_t *n, task_t *t)
{
    node_list_remove(t);
    node_list_push(&n->placing, t, false);
    t->placing = true;
    t->place_at = uv_now(n->loop) + PLACE_TIMEOUT_MS;
    place_req_t q;
    place_req_of(n, t, &q);
    if (n->dir) {
        char why[300] = "";
        head_sync(n->dir);
        uint32_t to = head_place(n->dir, n->node_id, &q, why, sizeof(why));
        const char *addr = to && to != PLACE_LATER ? head_node_addr(n->dir, to) : NULL;
        decided(n, t, to, addr, why);
        return;
    }
    luray_buf_t *b = node_msg_begin(n, n->head, LURAY_MSG_PLACE);
    luray_buf_put_u64(b, ++n->place_req);
    luray_buf_put_u32(b, 1);
    place_req_put(b, &q);
    node_msg_end(n->head);
}

/* A task whose bundle could never hold it fails now rather than wait forever. */
static bool bundle_too_small(node_t *n, task_t *t)
{
    if (!t->bundle)
        return false;
    for (int i = 0; i < n->n_res; i++) {
        if (t->req[i] <= t->bundle->total[i])
            continue;
        char why[300];
        snprintf(why, sizeof(why), "it requires %g %s but its placement group bundle %d holds %g",
                 (double)t->req[i] / LURAY_RES_UNIT, n->res_names[i], t->bundle->index + 1,
                 (double)t->bundle->total[i] / LURAY_RES_UNIT);
        unschedulable(n, t, why);
        return true;
    }
    return false;
}

bool node_place_if_needed(node_t *n, task_t *t)
{
    if (t->spec.kind == LURAY_TASK_ACTOR_CALL)
        return false;
    if (!n->cluster) {
        if (t->spec.strategy != 3 || t->bundle)
            return false;
        t->bundle = local_bundle(n, t);
        if (!t->bundle) {
            unschedulable(n, t, "its placement group has no such bundle on this node (removed?)");
            return true;
        }
        return bundle_too_small(n, t);
    }
    if (t->stay || t->placing)
        return false;
    switch (t->spec.strategy) {
    case 1: /* SPREAD */
        break;
    case 2: /* node affinity */
        if (t->spec.target_node == n->node_id) {
            t->stay = true;
            return false;
        }
        break;
    case 3: /* placement group */
        if (!t->bundle)
            t->bundle = local_bundle(n, t);
        if (t->bundle)
            return bundle_too_small(n, t);
        break;
    default:
        if (!t->elsewhere && node_fits(n, NULL, t->req))
            return false;
        if (!t->elsewhere && !n->registered && !n->dir)
            return false;
        if (t->waits) {
            /* One task waiting here asks again at a time, a heartbeat apart. */
            uint64_t now = uv_now(n->loop);
            if (now < n->reask_at)
                return false;
            n->reask_at = now + PLACE_REASK_MS;
        }
        break;
    }
    ask_head(n, t);
    return true;
}

void node_on_placed(node_t *n, proc_t *p, luray_rd_t *r)
{
    luray_rd_u64(r);
    uint32_t count = luray_rd_u32(r);
    if (r->err || p != n->head || count > luray_rd_left(r) / 20)
        return node_count_bad(n, "PLACED");
    for (uint32_t i = 0; i < count; i++) {
        luray_task_id_t id = luray_proto_rd_id(r);
        uint32_t to = luray_rd_u32(r);
        size_t alen = 0, wlen = 0;
        const char *addr = luray_rd_str(r, &alen);
        const char *why = luray_rd_str(r, &wlen);
        if (r->err || alen >= 300 || wlen >= 300)
            return node_count_bad(n, "PLACED entry");
        task_t *t = task_by_id(n, id);
        if (!t || !t->placing || t->list != &n->placing)
            continue;
        char a[300], w[300];
        memcpy(a, addr, alen);
        a[alen] = 0;
        memcpy(w, why, wlen);
        w[wlen] = 0;
        decided(n, t, to, a, w);
    }
}

void node_remote_tick(node_t *n)
{
    uint64_t now = uv_now(n->loop);
    for (task_t *t = n->placing.head, *next; t; t = next) {
        next = t->next;
        if (now < t->place_at)
            continue;
        if (t->placing) {
            /* The head did not answer: run here when it can, else give up. */
            t->placing = false;
            if (!t->elsewhere && t->spec.strategy != 3) {
                luray_log(LURAY_LOG_WARN, "node", "the head did not place a task within %d s; "
                          "running it here", PLACE_TIMEOUT_MS / 1000);
                stay_here(n, t, false);
            } else {
                unschedulable(n, t, "the head did not answer where it should run");
            }
            continue;
        }
        ask_head(n, t);
    }
}

/* ---- forwarding ---- */

void node_forward(node_t *n, proc_t *peer, task_t *t)
{
    luray_task_spec_t spec = t->spec;
    spec.caller = 0;
    if (spec.strategy != 3) {
        spec.strategy = 2;
        spec.target_node = peer->peer_node;
        spec.soft = 0;
    }
    luray_oid_t key = luray_proto_id_at(spec.func_hash);
    spec.func_blob = NULL;
    spec.func_blob_len = 0;
    if (!luray_oidmap_get(&peer->funcs, key)) {
        uint32_t len = 0;
        const uint8_t *blob = node_func_blob(n, spec.func_hash, &len);
        if (blob) {
            spec.func_blob = blob;
            spec.func_blob_len = len;
            luray_oidmap_put(&peer->funcs, key, (void *)1);
        }
    }
    luray_buf_t *b = node_msg_begin(n, peer, LURAY_MSG_SUBMIT);
    luray_proto_put_task(b, &spec);
    node_msg_end(peer);
}

static void put_contained(luray_buf_t *b, const obj_t *o)
{
    luray_buf_put_varint(b, o->n_contained);
    for (uint32_t i = 0; i < o->n_contained; i++)
        luray_proto_put_id(b, o->contained[i]);
}

/* Tells the peer that sent t what became of its results. Store results stay here, referenced
 * by the peer until it lets go; inline ones travel and are released now. */
static void relay(node_t *n, task_t *t, proc_t *p)
{
    t->relayed = true;
    luray_buf_t *b = node_msg_begin(n, p, LURAY_MSG_DONE);
    luray_proto_put_id(b, t->spec.task_id);
    luray_buf_put_u8(b, LURAY_DONE_OK);
    luray_buf_put_u16(b, t->spec.num_returns);
    luray_oid_t drop[64];
    unsigned n_drop = 0;
    for (unsigned i = 1; i <= t->spec.num_returns; i++) {
        luray_oid_t id = luray_oid_for_return(t->spec.task_id, i);
        obj_t *o = node_obj_get(n, id);
        uint64_t off = 0, size = 0;
        if (o && o->state == LURAY_OBJ_READY && o->in_store &&
            luray_store_pin(n->store, id, &off, &size) == 0) {
            luray_store_unpin(n->store, id);
            luray_buf_put_u8(b, LURAY_LOC_NODE);
            luray_buf_put_u32(b, n->node_id);
            luray_buf_put_u64(b, size);
        } else if (o && o->state == LURAY_OBJ_PENDING && o->at) {
            luray_buf_put_u8(b, LURAY_LOC_NODE);
            luray_buf_put_u32(b, o->at);
            luray_buf_put_u64(b, o->size);
        } else if (o && (o->state == LURAY_OBJ_READY || o->state == LURAY_OBJ_ERROR)) {
            luray_buf_put_u8(b, LURAY_LOC_INLINE |
                                    (o->state == LURAY_OBJ_ERROR ? DONE_ERROR_FLAG : 0));
            luray_buf_put_str(b, o->data, o->len);
            if (n_drop < 64)
                drop[n_drop++] = id;
        } else {
            uint32_t len = 0;
            uint8_t *blob = node_error_blob(n, "ObjectLostError",
                                            "the result was lost on the node that ran the task",
                                            NULL, &len);
            luray_buf_put_u8(b, LURAY_LOC_INLINE | DONE_ERROR_FLAG);
            luray_buf_put_str(b, blob, blob ? len : 0);
            free(blob);
            luray_buf_put_varint(b, 0);
            continue;
        }
        put_contained(b, o);
    }
    node_msg_end(p);
    for (unsigned i = 0; i < n_drop; i++)
        node_proc_ref(n, p, drop[i], -1);
}

void node_relay_done(node_t *n, task_t *t)
{
    if (t->relayed || !n->cluster)
        return;
    proc_t *p = node_proc(n, t->spec.caller);
    if (p && p->kind == LURAY_PROC_PEER && !p->gone)
        relay(n, t, p);
}

void node_relay_create(node_t *n, task_t *t)
{
    if (!n->cluster)
        return;
    proc_t *p = node_proc(n, t->spec.caller);
    if (p && p->kind == LURAY_PROC_PEER && !p->gone)
        relay(n, t, p);
}

/* The task that DONE names, if we sent it to that peer. */
static task_t *forwarded(node_t *n, proc_t *p, luray_task_id_t id)
{
    task_t *t = task_by_id(n, id);
    if (t && t->worker == p && t->state == T_RUNNING)
        return t;
    return NULL;
}

/* Keeps a finished task while results it can make again live only on another node. */
static bool keep_lineage(node_t *n, task_t *t)
{
    if (t->spec.kind != LURAY_TASK_NORMAL || t->cancelled)
        return false;
    for (unsigned i = 1; i <= t->spec.num_returns; i++) {
        obj_t *o = node_obj_get(n, luray_oid_for_return(t->spec.task_id, i));
        if (o && o->state == LURAY_OBJ_PENDING && o->at && !o->lineage) {
            o->lineage = t;
            t->lineage_refs++;
        }
    }
    return t->lineage_refs > 0;
}

void node_remote_done(node_t *n, proc_t *p, luray_rd_t *r)
{
    luray_task_id_t id = luray_proto_rd_id(r);
    uint8_t status = luray_rd_u8(r);
    uint16_t nres = luray_rd_u16(r);
    if (r->err || status != LURAY_DONE_OK)
        return node_count_bad(n, "DONE from a peer node");
    task_t *t = forwarded(n, p, id);
    if (!t)
        return; /* cancelled, retried elsewhere, or already answered */
    for (unsigned i = 1; i <= nres; i++) {
        uint8_t loc = luray_rd_u8(r);
        bool error = loc & DONE_ERROR_FLAG;
        loc &= (uint8_t)~DONE_ERROR_FLAG;
        const void *blob = NULL;
        size_t len = 0;
        uint32_t at = 0;
        uint64_t size = 0;
        if (loc == LURAY_LOC_INLINE) {
            blob = luray_rd_str(r, &len);
        } else {
            at = luray_rd_u32(r);
            size = luray_rd_u64(r);
        }
        uint32_t nc = 0;
        luray_oid_t *contained = node_read_ids(r, &nc);
        if (r->err || (loc == LURAY_LOC_INLINE && luray_ser_check(blob, len) != 0) ||
            (loc != LURAY_LOC_INLINE && (loc != LURAY_LOC_NODE || at == 0))) {
            free(contained);
            node_count_bad(n, "DONE result from a peer node");
            break;
        }
        obj_t *o = i <= t->spec.num_returns
                       ? node_obj_get(n, luray_oid_for_return(id, i))
                       : NULL;
        if (o && o->state == LURAY_OBJ_PENDING) {
            if (!error && loc == LURAY_LOC_NODE)
                o->holder = p->peer_node;
            if (t->cancelled) {
                node_task_fail(n, t, "TaskCancelledError", "the task was cancelled");
            } else if (loc == LURAY_LOC_INLINE) {
                uint8_t *copy = aligned_alloc(LURAY_BLOB_ALIGN, (len + LURAY_BLOB_ALIGN) /
                                                                    LURAY_BLOB_ALIGN *
                                                                    LURAY_BLOB_ALIGN);
                if (copy && len)
                    memcpy(copy, blob, len);
                node_obj_resolve(n, o, error ? LURAY_OBJ_ERROR : LURAY_OBJ_READY, copy,
                                 (uint32_t)len, false, contained, nc);
            } else {
                node_obj_located(n, o, at, size, contained, nc);
            }
        } else if (loc == LURAY_LOC_NODE && !node_is_dead(n, p->peer_node)) {
            /* Nobody here wants it any more: let the peer free its copy. */
            proc_t *hp = node_peer(n, p->peer_node, false);
            if (hp) {
                luray_buf_t *b = node_msg_begin(n, hp, LURAY_MSG_REFS);
                luray_buf_put_varint(b, 1);
                luray_proto_put_id(b, luray_oid_for_return(id, i));
                luray_buf_put_u32(b, (uint32_t)-1);
                node_msg_end(hp);
            }
        }
        free(contained);
    }
    n->tasks_finished++;
    node_list_remove(t);
    t->worker = NULL;
    if (t->spec.kind == LURAY_TASK_ACTOR_CREATE) {
        t->state = T_DONE;
        actor_t *a = t->actor;
        obj_t *o = node_obj_get(n, luray_oid_for_return(id, 1));
        bool ok = !o || o->state != LURAY_OBJ_ERROR;
        if (a && ok) {
            a->state = A_ALIVE;
            node_actor_flush_queue(n, a);
        } else if (a) {
            a->restarts_left = 0;
            a->worker = NULL;
            node_actor_dead(n, a, "its constructor raised an error");
        }
        node_relay_create(n, t);
        return;
    }
    if (t->spec.kind == LURAY_TASK_ACTOR_CALL) {
        node_task_free(n, t);
        return;
    }
    t->state = T_DONE;
    node_relay_done(n, t);
    if (!keep_lineage(n, t))
        node_task_free(n, t);
}

/* ---- lineage ---- */

void node_lineage_release(node_t *n, task_t *t)
{
    if (t->lineage_refs && --t->lineage_refs == 0 && t->state == T_DONE)
        node_task_free(n, t);
}

bool node_rebuild(node_t *n, obj_t *o)
{
    task_t *t = o->lineage;
    if (!t || t->state != T_DONE || t->retries_left == 0 || n->stopping)
        return false;
    t->retries_left--;
    t->spec.attempt++;
    for (unsigned i = 1; i <= t->spec.num_returns; i++) {
        obj_t *r = node_obj_get(n, luray_oid_for_return(t->spec.task_id, i));
        if (r && r->lineage == t) {
            r->lineage = NULL;
            r->at = 0;
            r->holder = 0;
        }
    }
    t->lineage_refs = 0;
    t->stay = false;
    t->relayed = true; /* its caller already heard of it */
    char name[256];
    luray_log(LURAY_LOG_WARN, "node", "running task %s again to rebuild a lost result",
              task_label(t, name, sizeof(name)));
    node_task_make_ready(n, t, true);
    return true;
}

/* ---- a peer node is gone ---- */

void node_peer_left(node_t *n, proc_t *p, const char *why)
{
    char msg[600];
    while (p->remote.head) {
        task_t *t = p->remote.head;
        node_list_remove(t);
        t->worker = NULL;
        t->state = T_READY;
        t->stay = false;
        if (t->spec.kind == LURAY_TASK_ACTOR_CREATE) {
            /* The actor's restart below puts its creation back in the queue. */
            t->state = T_DONE;
            continue;
        }
        if (t->cancelled) {
            node_task_fail(n, t, "TaskCancelledError", "the task was cancelled");
            node_task_free(n, t);
        } else if (t->retries_left > 0 && !n->stopping) {
            t->retries_left--;
            t->spec.attempt++;
            char name[256];
            luray_log(LURAY_LOG_WARN, "node", "retrying task %s: %s",
                      task_label(t, name, sizeof(name)), why);
            node_task_make_ready(n, t, true);
        } else {
            char name[256];
            snprintf(msg, sizeof(msg), "%s while running task %s", why,
                     task_label(t, name, sizeof(name)));
            node_task_fail(n, t, "NodeDiedError", msg);
            node_task_free(n, t);
        }
    }
    for (size_t i = 0; i < n->actors.cap; i++) {
        actor_t *a = n->actors.slots[i].val;
        if (!a || a->worker != p || a->state == A_DEAD)
            continue;
        a->at = 0;
        if (!a->create && !a->key) {
            /* Known here only as a route to its owner: calls in flight fail, and the route is
             * forgotten (a restarted owner is found again by the next call). */
            snprintf(msg, sizeof(msg), "the actor died: %s", why);
            while (a->inflight.head) {
                task_t *t = a->inflight.head;
                node_task_fail(n, t, "ActorDiedError", msg);
                node_task_free(n, t);
            }
            a->worker = NULL;
            a->state = A_DEAD; /* forgotten below, once the walk over the table is done */
            continue;
        }
        if (!a->create) {
            /* Adopted from the directory log: it lives (or lived) on that node only. */
            a->worker = NULL;
            a->restarts_left = 0;
            while (a->inflight.head) {
                task_t *t = a->inflight.head;
                snprintf(msg, sizeof(msg), "the actor died: %s", why);
                node_task_fail(n, t, "ActorDiedError", msg);
                node_task_free(n, t);
            }
            node_actor_dead(n, a, why);
            continue;
        }
        if (a->create->state == T_RUNNING || a->create->list == &p->remote)
            a->create->state = T_DONE;
        if (a->restarts_left == 0 && a->state == A_PENDING)
            node_task_fail(n, a->create, "ActorDiedError", why);
        node_actor_worker_died(n, a, why);
    }
    for (size_t i = 0; i < n->actors.cap;) {
        actor_t *a = n->actors.slots[i].val;
        if (a && !a->create && !a->key && !a->worker && a->state == A_DEAD && a->at) {
            luray_oidmap_del(&n->actors, a->id); /* slot i now holds another entry, or none */
            free(a->death);
            free(a->methods);
            free(a);
            continue;
        }
        i++;
    }
}

void node_remote_node_lost(node_t *n, uint32_t id, const char *why)
{
    node_objects_node_lost(n, id, why);
    node_schedule(n);
}

void node_remote_node_joined(node_t *n, uint32_t id)
{
    (void)id;
    /* Tasks waiting for room elsewhere get another chance at once. */
    for (task_t *t = n->placing.head; t; t = t->next)
        if (!t->placing)
            t->place_at = 0;
    node_remote_tick(n);
}

/* ---- actors across nodes ---- */

actor_t *node_actor_proxy(node_t *n, luray_actor_id_t id)
{
    if (!n->cluster || id.node == n->node_id || node_is_dead(n, id.node))
        return NULL;
    proc_t *owner = node_peer(n, id.node, true);
    if (!owner)
        return NULL;
    actor_t *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->id = id;
    a->state = A_ALIVE;
    a->worker = owner;
    a->at = id.node;
    if (luray_oidmap_put(&n->actors, id, a) != 0) {
        free(a);
        return NULL;
    }
    return a;
}

int node_actor_adopt(node_t *n, luray_actor_id_t id, const char *key, uint32_t at,
                     const char *methods, size_t mlen)
{
    if (id.node != n->node_id || at == 0 || at == n->node_id ||
        luray_oidmap_get(&n->actors, id))
        return LURAY_EINVAL;
    proc_t *peer = node_peer(n, at, true);
    if (!peer)
        return LURAY_ENOMEM;
    actor_t *a = calloc(1, sizeof(*a));
    if (!a)
        return LURAY_ENOMEM;
    a->id = id;
    a->state = A_ALIVE;
    a->worker = peer;
    a->at = at;
    a->detached = true;
    a->key = strdup(key);
    a->methods = strndup(methods, mlen);
    if (luray_oidmap_put(&n->actors, id, a) != 0) {
        free(a->key);
        free(a->methods);
        free(a);
        return LURAY_ENOMEM;
    }
    /* In the local name table only: the directory has it already. */
    uint32_t keep = n->n_named;
    bool was = n->cluster;
    n->cluster = false;
    node_actor_set_name(n, a, true);
    n->cluster = was;
    (void)keep;
    return 0;
}

void node_name_changed(node_t *n, actor_t *a, bool on)
{
    if (!n->cluster || !a->key)
        return;
    const char *m = a->create ? a->create->spec.method : (a->methods ? a->methods : "");
    size_t mlen = a->create ? a->create->spec.method_len : strlen(m);
    if (n->dir) {
        if (!on) {
            head_name_unregister(n->dir, a->key, a->id);
        } else if (head_name_register(n->dir, a->key, a->id, a->at ? a->at : n->node_id,
                                      a->detached, m, mlen) == LURAY_EEXIST) {
            luray_log(LURAY_LOG_WARN, "node", "an actor named \"%s\" already exists in the "
                      "cluster", a->key);
        }
        return;
    }
    if (!n->head)
        return;
    luray_buf_t *b = node_msg_begin(n, n->head, LURAY_MSG_NAME);
    luray_buf_put_u8(b, on ? NAME_REG : NAME_UNREG);
    luray_buf_put_u64(b, 0);
    luray_buf_put_str(b, a->key, strlen(a->key));
    luray_proto_put_id(b, a->id);
    luray_buf_put_u8(b, a->detached);
    luray_buf_put_str(b, m, mlen);
    node_msg_end(n->head);
}

static void lookup_answer(node_t *n, proc_t *p, uint64_t req, int rc, luray_actor_id_t id,
                          const char *m, size_t mlen)
{
    luray_buf_t tmp;
    luray_buf_init(&tmp);
    if (rc == 0) {
        luray_proto_put_id(&tmp, id);
        luray_buf_put(&tmp, m, mlen);
    }
    node_reply(n, p, req, (uint32_t)rc, tmp.data ? tmp.data : (const uint8_t *)"", tmp.len);
    luray_buf_close(&tmp);
}

bool node_lookup_remote(node_t *n, proc_t *p, uint64_t req, const char *key)
{
    if (!n->cluster)
        return false;
    if (n->dir) {
        luray_actor_id_t id;
        const char *m;
        size_t mlen;
        if (head_name_lookup(n->dir, key, &id, &m, &mlen) != 0)
            return false;
        lookup_answer(n, p, req, 0, id, m, mlen);
        return true;
    }
    if (!n->head || !n->registered)
        return false;
    luray_buf_t *b = node_msg_begin(n, n->head, LURAY_MSG_NAME);
    luray_buf_put_u8(b, NAME_LOOKUP);
    luray_buf_put_u64(b, node_head_tag(p, req));
    luray_buf_put_str(b, key, strlen(key));
    luray_proto_put_id(b, (luray_oid_t){0, 0, 0});
    luray_buf_put_u8(b, 0);
    luray_buf_put_str(b, "", 0);
    node_msg_end(n->head);
    return true;
}

void node_on_name_reply(node_t *n, proc_t *p, luray_rd_t *r)
{
    uint8_t op = luray_rd_u8(r);
    uint64_t tag = luray_rd_u64(r);
    uint32_t rc = luray_rd_u32(r);
    luray_actor_id_t id = luray_proto_rd_id(r);
    size_t len = 0;
    const char *s = luray_rd_str(r, &len);
    if (r->err || p != n->head)
        return node_count_bad(n, "NAME reply");
    if (op == NAME_REG) {
        actor_t *a = luray_oidmap_get(&n->actors, id);
        if (a && a->state != A_DEAD) {
            char why[1200];
            snprintf(why, sizeof(why), "an actor named \"%.*s\" already exists in the cluster",
                     (int)(len < 1000 ? len : 1000), s);
            node_kill_actor(n, a, true, why);
        }
        return;
    }
    proc_t *c = node_proc(n, (uint32_t)(tag >> 40));
    if (!c || c->gone || c->kind == LURAY_PROC_PEER)
        return;
    lookup_answer(n, c, tag & ((1ull << 40) - 1), (int)rc, id, s, len);
}

/* ---- placement groups ---- */

static uint8_t *value_true(node_t *n, uint32_t *len)
{
    lua_pushboolean(n->L, 1);
    return node_encode_top(n, len);
}

void node_pg_result(node_t *n, luray_oid_t pg, uint32_t status, const char *msg)
{
    obj_t *o = node_obj_get(n, pg);
    if (!o || o->state != LURAY_OBJ_PENDING)
        return;
    uint32_t len = 0;
    uint8_t *blob;
    if (status == 0) {
        blob = value_true(n, &len);
        node_obj_resolve(n, o, LURAY_OBJ_READY, blob, len, false, NULL, 0);
    } else {
        char m[600];
        snprintf(m, sizeof(m), "the placement group cannot be created: %s", msg);
        blob = node_error_blob(n, "PlacementGroupError", m, NULL, &len);
        node_obj_resolve(n, o, LURAY_OBJ_ERROR, blob, len, false, NULL, 0);
    }
}

static void pg_forget(node_t *n, luray_oid_t id)
{
    for (uint32_t i = 0; i < n->n_pgs; i++)
        if (luray_oid_eq(n->pgs[i].id, id)) {
            n->pgs[i] = n->pgs[--n->n_pgs];
            return;
        }
}

static void pg_remember(node_t *n, luray_oid_t id, uint32_t proc)
{
    if (n->n_pgs == n->cap_pgs) {
        uint32_t cap = n->cap_pgs ? n->cap_pgs * 2 : 8;
        void *v = realloc(n->pgs, cap * sizeof(*n->pgs));
        if (!v)
            return;
        n->pgs = v;
        n->cap_pgs = cap;
    }
    n->pgs[n->n_pgs].id = id;
    n->pgs[n->n_pgs].proc = proc;
    n->n_pgs++;
}

static void pg_remove(node_t *n, luray_oid_t id)
{
    pg_forget(n, id);
    if (!n->cluster) {
        node_bundle_apply(n, id, -1, 2, 0, NULL, NULL);
        return;
    }
    luray_buf_t b;
    luray_buf_init(&b);
    luray_buf_put_u8(&b, PGOP_REMOVE);
    luray_proto_put_id(&b, id);
    if (n->dir) {
        luray_rd_t r;
        luray_rd_init(&r, b.data, b.len);
        head_pg_request(n->dir, n->node_id, 0, &r);
    } else if (n->head) {
        luray_buf_t *m = node_msg_begin(n, n->head, LURAY_MSG_PGREQ);
        luray_buf_put_u64(m, 0);
        luray_buf_put(m, b.data, b.len);
        node_msg_end(n->head);
    }
    luray_buf_close(&b);
}

/* A driver's placement groups end with it. */
void node_pgs_of_left(node_t *n, proc_t *p)
{
    for (uint32_t i = 0; i < n->n_pgs;) {
        if (n->pgs[i].proc == p->id)
            pg_remove(n, n->pgs[i].id);
        else
            i++;
    }
}

/* A client's PG message: create (the ready object is the group's id) or remove. */
void node_on_pg(node_t *n, proc_t *p, luray_rd_t *r)
{
    if (r->end - r->p < 17)
        return node_count_bad(n, "PG");
    uint8_t op = r->p[0];
    luray_rd_t id_rd;
    luray_rd_init(&id_rd, r->p + 1, 16);
    luray_oid_t id = luray_proto_rd_id(&id_rd);
    if (op == PGOP_REMOVE)
        return pg_remove(n, id);
    if (op != PGOP_CREATE)
        return node_count_bad(n, "PG op");
    if (id.node != n->node_id || node_obj_get(n, id))
        return node_count_bad(n, "PG id");
    if (!node_obj_new(n, id))
        return;
    node_proc_ref(n, p, id, 1);
    pg_remember(n, id, p->id);
    if (!n->cluster) {
        /* One node: the group is this node's own. */
        node_pg_local(n, p, r);
        return;
    }
    if (n->dir) {
        head_pg_request(n->dir, n->node_id, 0, r);
        return;
    }
    luray_buf_t *b = node_msg_begin(n, n->head, LURAY_MSG_PGREQ);
    luray_buf_put_u64(b, 0);
    luray_buf_put(b, r->p, luray_rd_left(r));
    node_msg_end(n->head);
}

void node_on_pg_reply(node_t *n, proc_t *p, luray_rd_t *r)
{
    luray_oid_t id = luray_proto_rd_id(r);
    uint32_t status = luray_rd_u32(r);
    size_t len = 0;
    const char *msg = luray_rd_str(r, &len);
    if (r->err || p != n->head || len > 500)
        return node_count_bad(n, "PGREQ reply");
    char m[512];
    memcpy(m, msg, len);
    m[len] = 0;
    node_pg_result(n, id, status, m);
}

void node_bundle_apply(node_t *n, luray_oid_t pg, int32_t index, uint8_t op, uint32_t n_res,
                       const char *const *names, const int64_t *amounts)
{
    if (op == 2) {
        for (bundle_t *b = n->bundles; b; b = b->next) {
            if (b->removed || !luray_oid_eq(b->pg, pg) || (index >= 0 && b->index != index))
                continue;
            b->removed = true;
            for (int i = 0; i < n->n_res; i++)
                n->avail[i] += b->avail[i];
        }
        return;
    }
    for (bundle_t *b = n->bundles; b; b = b->next)
        if (!b->removed && luray_oid_eq(b->pg, pg) && b->index == index)
            return;
    bundle_t *b = calloc(1, sizeof(*b));
    if (!b)
        return;
    b->pg = pg;
    b->index = index;
    for (uint32_t k = 0; k < n_res; k++) {
        int i = node_res_index(n, names[k], (uint32_t)strlen(names[k]));
        if (i < 0)
            continue;
        b->total[i] += amounts[k];
        b->avail[i] += amounts[k];
        n->avail[i] -= amounts[k];
    }
    b->next = n->bundles;
    n->bundles = b;
}

void node_on_bundle(node_t *n, proc_t *p, luray_rd_t *r)
{
    uint8_t op = luray_rd_u8(r);
    luray_oid_t pg = luray_proto_rd_id(r);
    uint32_t index = luray_rd_u32(r);
    if (r->err || p != n->head || (op != 1 && op != 2) || index > 0x7fffffff)
        return node_count_bad(n, "BUNDLE");
    char *names[LURAY_RES_MAX];
    int64_t amounts[LURAY_RES_MAX];
    uint32_t nr = 0;
    bool ok = pg_bundle_read(r, &nr, names, amounts) == 0;
    if (ok)
        node_bundle_apply(n, pg, (int32_t)index, op, nr, (const char *const *)names, amounts);
    else
        node_count_bad(n, "BUNDLE resources");
    for (uint32_t i = 0; i < nr; i++)
        free(names[i]);
    if (ok && op == 1) {
        luray_buf_t *b = node_msg_begin(n, p, LURAY_MSG_BUNDLE);
        luray_proto_put_id(b, pg);
        luray_buf_put_u32(b, index);
        node_msg_end(p);
    }
    node_schedule(n);
}

/* A placement group on a node of its own (no cluster): every bundle is reserved here. */
void node_pg_local(node_t *n, proc_t *p, luray_rd_t *r)
{
    (void)p;
    luray_rd_u8(r);
    luray_oid_t id = luray_proto_rd_id(r);
    uint8_t strategy = luray_rd_u8(r);
    uint32_t nb = luray_rd_u32(r);
    if (r->err || nb == 0 || nb > 256)
        return node_pg_result(n, id, (uint32_t)LURAY_EINVAL, "it has no bundles");
    int64_t sum[NODE_MAX_RES] = {0};
    typedef struct {
        uint32_t nr;
        char *names[LURAY_RES_MAX];
        int64_t amounts[LURAY_RES_MAX];
    } pb_t;
    pb_t *bs = calloc(nb, sizeof(pb_t));
    if (!bs)
        return;
    char why[300] = "";
    for (uint32_t i = 0; i < nb && !r->err && !why[0]; i++) {
        if (pg_bundle_read(r, &bs[i].nr, bs[i].names, bs[i].amounts) != 0)
            break;
        for (uint32_t k = 0; k < bs[i].nr && !why[0]; k++) {
            const char *s = bs[i].names[k];
            int x = node_res_index(n, s, (uint32_t)strlen(s));
            if (x < 0)
                snprintf(why, sizeof(why), "bundle %u needs resource \"%s\", which no node has",
                         i + 1, s);
            else if ((sum[x] += bs[i].amounts[k]) > n->total[x])
                snprintf(why, sizeof(why), "its bundles need %g %s in all but the node has %g",
                         (double)sum[x] / LURAY_RES_UNIT, n->res_names[x],
                         (double)n->total[x] / LURAY_RES_UNIT);
        }
    }
    if (r->err)
        snprintf(why, sizeof(why), "the request is malformed");
    else if (!why[0] && strategy == 3 && nb > 1)
        snprintf(why, sizeof(why), "STRICT_SPREAD needs %u nodes but the cluster has one", nb);
    if (why[0]) {
        node_pg_result(n, id, (uint32_t)LURAY_EINVAL, why);
    } else {
        for (uint32_t i = 0; i < nb; i++)
            node_bundle_apply(n, id, (int32_t)i, 1, bs[i].nr, (const char *const *)bs[i].names,
                              bs[i].amounts);
        node_pg_result(n, id, 0, "");
    }
    for (uint32_t i = 0; i < nb; i++)
        for (uint32_t k = 0; k < bs[i].nr; k++)
            free(bs[i].names[k]);
    free(bs);
}
