/* The node's scheduler: tasks from submission to completion, the worker pool, actors and their
 * restarts, and resources (fixed point, so fractions add up exactly). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "errors_str.h"
#include "log.h"
#include "node_cluster.h"
#include "node_internal.h"
#include "node_remote.h"
#include "serialize.h"

#define POOL_MAX 256
/* Tasks sent to a busy worker ahead of time when the queue is long: the worker runs them back to
 * back and batches their results, which saves a round trip per task. */
#define PIPE_MAX 16
#define FAILED_SHAPES 8

typedef struct {
    uint32_t len;
    uint8_t bytes[];
} func_rec_t;

static luray_oid_t hash_key(const uint8_t h[16]) { return luray_proto_id_at(h); }

const uint8_t *node_func_blob(node_t *n, const uint8_t hash[16], uint32_t *len)
{
    func_rec_t *f = luray_oidmap_get(&n->funcs, hash_key(hash));
    if (!f)
        return NULL;
    *len = f->len;
    return f->bytes;
}

/* ---- lists ---- */

void node_list_push(task_list_t *l, task_t *t, bool front)
{
    t->list = l;
    if (front) {
        t->prev = NULL;
        t->next = l->head;
        if (l->head)
            l->head->prev = t;
        else
            l->tail = t;
        l->head = t;
    } else {
        t->next = NULL;
        t->prev = l->tail;
        if (l->tail)
            l->tail->next = t;
        else
            l->head = t;
        l->tail = t;
    }
    l->len++;
}

void node_list_remove(task_t *t)
{
    task_list_t *l = t->list;
    if (!l)
        return;
    if (t->prev)
        t->prev->next = t->next;
    else
        l->head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    else
        l->tail = t->prev;
    t->next = t->prev = NULL;
    t->list = NULL;
    l->len--;
}

/* ---- names and resources ---- */

static char *node_task_name(const task_t *t)
{
    static char name[256];
    uint32_t len = t->spec.method_len < sizeof(name) - 1 ? t->spec.method_len : sizeof(name) - 1;
    memcpy(name, t->spec.method, len);
    name[len] = 0;
    if (t->spec.kind == LURAY_TASK_ACTOR_CREATE) {
        char *colon = strchr(name, ':');
        if (colon)
            *colon = 0;
    }
    return name;
}

int node_res_index(node_t *n, const char *name, uint32_t len)
{
    for (int i = 0; i < n->n_res; i++)
        if (strlen(n->res_names[i]) == len && memcmp(n->res_names[i], name, len) == 0)
            return i;
    return -1;
}

/* The free resources a task draws on: its placement group bundle's, else the node's. A removed
 * bundle's resources went back to the node. */
int64_t *node_pool_avail(node_t *n, bundle_t *b) { return b && !b->removed ? b->avail : n->avail; }

bool node_fits(node_t *n, bundle_t *b, const int64_t *req)
{
    const int64_t *avail = node_pool_avail(n, b);
    for (int i = 0; i < n->n_res; i++)
        if (req[i] > avail[i])
            return false;
    return true;
}

void node_res_take(node_t *n, bundle_t *b, int64_t *held, const int64_t *req)
{
    int64_t *avail = node_pool_avail(n, b);
    for (int i = 0; i < n->n_res; i++) {
        avail[i] -= req[i];
        held[i] += req[i];
    }
}

void node_res_give(node_t *n, bundle_t *b, int64_t *held)
{
    int64_t *avail = node_pool_avail(n, b);
    for (int i = 0; i < n->n_res; i++) {
        avail[i] += held[i];
        held[i] = 0;
    }
}

/* ---- task completion ---- */

void node_task_free(node_t *n, task_t *t)
{
    node_relay_done(n, t);
    node_list_remove(t);
    if (luray_oidmap_get(&n->tasks, t->spec.task_id) == t)
        luray_oidmap_del(&n->tasks, t->spec.task_id);
    for (uint32_t i = 0; i < t->spec.n_deps; i++) {
        luray_oid_t dep = luray_proto_id_at(t->spec.deps + 16 * i);
        obj_t *o = node_obj_get(n, dep);
        if (o)
            node_obj_remove_waiter(o, t);
        node_obj_decref(n, dep, 1);
    }
    for (uint32_t i = 0; i < t->spec.n_contained; i++)
        node_obj_decref(n, luray_proto_id_at(t->spec.contained + 16 * i), 1);
    free(t->raw);
    free(t);
}

/* Resolves every return object of t with one blob (copied for each). */
void node_task_resolve_all(node_t *n, task_t *t, uint8_t state, const uint8_t *blob,
                             uint32_t len)
{
    for (unsigned i = 1; i <= t->spec.num_returns; i++) {
        obj_t *o = node_obj_get(n, luray_oid_for_return(t->spec.task_id, i));
        if (!o)
            continue;
        uint8_t *copy = aligned_alloc(LURAY_BLOB_ALIGN,
                                      (len + LURAY_BLOB_ALIGN) / LURAY_BLOB_ALIGN * LURAY_BLOB_ALIGN);
        if (copy && len)
            memcpy(copy, blob, len);
        node_obj_resolve(n, o, state, copy, len, false, NULL, 0);
    }
}

void node_task_fail(node_t *n, task_t *t, const char *type, const char *message)
{
    uint32_t len = 0;
    uint8_t *blob = node_error_blob(n, type, message, node_task_name(t), &len);
    if (blob)
        node_task_resolve_all(n, t, LURAY_OBJ_ERROR, blob, len);
    free(blob);
}

/* ---- actors ---- */

void node_actor_set_name(node_t *n, actor_t *a, bool on)
{
    if (!a->key)
        return;
    node_name_changed(n, a, on);
    if (on) {
        if (n->n_named == n->cap_named) {
            uint32_t cap = n->cap_named ? n->cap_named * 2 : 16;
            actor_t **v = realloc(n->named, cap * sizeof(*v));
            if (!v)
                return;
            n->named = v;
            n->cap_named = cap;
        }
        n->named[n->n_named++] = a;
        return;
    }
    for (uint32_t i = 0; i < n->n_named; i++)
        if (n->named[i] == a) {
            n->named[i] = n->named[--n->n_named];
            return;
        }
}

actor_t *node_actor_by_name(node_t *n, const char *key)
{
    for (uint32_t i = 0; i < n->n_named; i++)
        if (strcmp(n->named[i]->key, key) == 0)
            return n->named[i];
    return NULL;
}

static void send_exec(node_t *n, proc_t *w, task_t *t);

void node_actor_dead(node_t *n, actor_t *a, const char *why)
{
    a->state = A_DEAD;
    free(a->death);
    a->death = strdup(why);
    node_actor_set_name(n, a, false);
    node_res_give(n, a->pool, a->held);
    char msg[1200];
    snprintf(msg, sizeof(msg), "the actor died: %s", why);
    while (a->queue.head) {
        task_t *t = a->queue.head;
        node_task_fail(n, t, "ActorDiedError", msg);
        node_task_free(n, t);
    }
}

void node_actor_flush_queue(node_t *n, actor_t *a)
{
    while (a->state == A_ALIVE && a->queue.head) {
        task_t *t = a->queue.head;
        node_list_remove(t);
        node_list_push(&a->inflight, t, false);
        t->state = T_RUNNING;
        t->worker = a->worker;
        send_exec(n, a->worker, t);
    }
}

/* ---- dispatch ---- */

static void send_exec(node_t *n, proc_t *w, task_t *t)
{
    if (w->kind == LURAY_PROC_PEER)
        return node_forward(n, w, t);
    luray_task_spec_t spec = t->spec;
    /* The worker sends results straight to the caller only when the caller waits for them. */
    if (!t->caller_waits)
        spec.caller = 0;
    luray_oid_t key = hash_key(spec.func_hash);
    spec.func_blob = NULL;
    spec.func_blob_len = 0;
    if (!luray_oidmap_get(&w->funcs, key)) {
        func_rec_t *f = luray_oidmap_get(&n->funcs, key);
        if (f) {
            spec.func_blob = f->bytes;
            spec.func_blob_len = f->len;
            luray_oidmap_put(&w->funcs, key, (void *)1);
        }
    }
    luray_buf_t *b = node_msg_begin(n, w, LURAY_MSG_EXEC);
    luray_proto_put_task(b, &spec);
    node_msg_end(w);
}

static proc_t *pop_idle(node_t *n)
{
    while (n->idle) {
        proc_t *w = n->idle;
        n->idle = w->idle_next;
        w->idle_next = NULL;
        if (!w->gone && w->wstate == W_IDLE)
            return w;
    }
    return NULL;
}

static void push_idle(node_t *n, proc_t *w)
{
    w->wstate = W_IDLE;
    w->idle_since = uv_now(n->loop);
    w->idle_next = n->idle;
    n->idle = w;
}

static void maybe_spawn(node_t *n)
{
    if (n->stopping || n->n_starting >= 2 || n->n_pool >= POOL_MAX)
        return;
    node_spawn_worker(n);
}

static void start_task(node_t *n, task_t *t, proc_t *w)
{
    node_list_remove(t);
    t->state = T_RUNNING;
    t->worker = w;
    if (t->spec.kind == LURAY_TASK_ACTOR_CREATE) {
        actor_t *a = t->actor;
        w->wstate = W_ACTOR;
        w->actor = a;
        n->n_pool--;
        a->worker = w;
        a->pool = t->bundle;
        node_res_take(n, a->pool, a->held, t->req);
    } else {
        w->wstate = W_BUSY;
        w->task = t;
        w->pool = t->bundle;
        node_res_take(n, w->pool, w->held, t->req);
    }
    send_exec(n, w, t);
}

static bool same_shape(node_t *n, const int64_t *a, const int64_t *b)
{
    return memcmp(a, b, sizeof(int64_t) * (size_t)n->n_res) == 0;
}

/* A busy worker whose task has this resource shape and room in its pipe, least loaded first. */
static proc_t *pipe_target(node_t *n, const task_t *t)
{
    proc_t *best = NULL;
    for (uint32_t i = 0; i < n->n_procs; i++) {
        proc_t *w = n->procs[i];
        if (w->gone || w->wstate != W_BUSY || w->blocked || !w->task ||
            w->pipe.len >= PIPE_MAX || !same_shape(n, w->task->req, t->req) ||
            w->task->bundle != t->bundle)
            continue;
        if (!best || w->pipe.len < best->pipe.len)
            best = w;
    }
    return best;
}

static void pipe_task(node_t *n, task_t *t, proc_t *w)
{
    node_list_remove(t);
    node_list_push(&w->pipe, t, false);
    t->state = T_RUNNING;
    t->worker = w;
    send_exec(n, w, t);
}

void node_schedule(node_t *n)
{
    for (uint32_t i = 0; i < n->n_to_flush; i++) {
        actor_t *a = n->to_flush[i];
        a->flush_pending = false;
        node_actor_flush_queue(n, a);
    }
    n->n_to_flush = 0;
    if (n->stopping)
        return;
    /* Shapes that did not fit in this pass: later tasks of the same shape are skipped cheaply. */
    const int64_t *failed[FAILED_SHAPES];
    int n_failed = 0;
    bool pipe_full = false;
    task_t *t = n->ready.head;
    int scanned = 0;
    while (t && scanned++ < 1024) {
        task_t *next = t->next;
        if (node_place_if_needed(n, t)) {
            t = next;
            continue;
        }
        bool skip = false;
        for (int i = 0; i < n_failed && !skip && !t->bundle; i++)
            skip = same_shape(n, failed[i], t->req);
        if (skip && (pipe_full || t->spec.kind != LURAY_TASK_NORMAL)) {
            t = next;
            continue;
        }
        if (!skip && node_fits(n, t->bundle, t->req)) {
            proc_t *w = pop_idle(n);
            if (!w) {
                maybe_spawn(n);
                return;
            }
            start_task(n, t, w);
        } else {
            if (!skip && n_failed < FAILED_SHAPES && !t->bundle)
                failed[n_failed++] = t->req;
            if (t->spec.kind == LURAY_TASK_NORMAL && !pipe_full &&
                n->ready.len > 2 * (size_t)PIPE_MAX) {
                proc_t *w = pipe_target(n, t);
                if (w)
                    pipe_task(n, t, w);
                else
                    pipe_full = true;
            }
        }
        t = next;
    }
    /* Keep the warm pool full: actors take workers out of it. */
    uint32_t warm = (uint32_t)(n->opts->num_cpus + 0.999);
    if (warm < 1)
        warm = 1;
    if (n->n_pool < warm)
        maybe_spawn(n);
}

void node_task_make_ready(node_t *n, task_t *t, bool front)
{
    t->state = T_READY;
    node_list_push(&n->ready, t, front);
}

void node_task_dep_ready(node_t *n, task_t *t)
{
    if (t->state == T_WAITING && --t->deps_left == 0)
        node_task_make_ready(n, t, false);
}

/* A get from `p` is waiting for object `id`: if it is a result of p's own task not sent yet,
 * that task's results will go straight to p. */
void node_task_caller_waits(node_t *n, proc_t *p, luray_oid_t id)
{
    task_t *t = luray_oidmap_get(&n->tasks, luray_oid_task(id));
    if (t && t->spec.caller == p->id && t->state != T_RUNNING)
        t->caller_waits = true;
}

/* ---- submit ---- */

static bool check_resources(node_t *n, task_t *t, char *why, size_t whylen)
{
    for (uint32_t i = 0; i < t->spec.n_res; i++) {
        int k = node_res_index(n, t->spec.res[i].name, t->spec.res[i].name_len);
        if (k < 0 && n->cluster) {
            t->elsewhere = true; /* another node may have it: the head decides */
            continue;
        }
        if (k < 0) {
            snprintf(why, whylen, "it requires resource \"%.*s\", which no node has",
                     (int)t->spec.res[i].name_len, t->spec.res[i].name);
            return false;
        }
        t->req[k] += t->spec.res[i].amount;
    }
    for (int i = 0; i < n->n_res; i++)
        if (t->req[i] > n->total[i] && n->cluster) {
            t->elsewhere = true;
        } else if (t->req[i] > n->total[i]) {
            snprintf(why, whylen, "it requires %g %s but the cluster has %g in total",
                     (double)t->req[i] / LURAY_RES_UNIT, n->res_names[i],
                     (double)n->total[i] / LURAY_RES_UNIT);
            return false;
        }
    if (t->spec.strategy == 2 && !t->spec.soft && t->spec.target_node != n->node_id &&
        !n->cluster) {
        snprintf(why, whylen, "its node affinity names node %08x, which is not in the cluster",
                 t->spec.target_node);
        return false;
    }
    return true;
}

static void store_func(node_t *n, const luray_task_spec_t *s)
{
    luray_oid_t key = hash_key(s->func_hash);
    if (!s->func_blob || luray_oidmap_get(&n->funcs, key))
        return;
    func_rec_t *f = malloc(sizeof(*f) + s->func_blob_len);
    if (!f)
        return;
    f->len = s->func_blob_len;
    memcpy(f->bytes, s->func_blob, s->func_blob_len);
    luray_oidmap_put(&n->funcs, key, f);
}

static actor_t *actor_new(node_t *n, task_t *t, proc_t *owner)
{
    actor_t *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->id = t->spec.task_id;
    a->owner = owner->id;
    a->state = A_PENDING;
    a->detached = t->spec.detached;
    a->restarts_left = t->spec.max_restarts;
    /* An actor forwarded by its owner node is named there, not here. */
    if (t->spec.actor_name_len && owner->kind != LURAY_PROC_PEER) {
        a->key = malloc(t->spec.ns_len + t->spec.actor_name_len + 2);
        if (a->key)
            sprintf(a->key, "%.*s/%.*s", (int)t->spec.ns_len, t->spec.ns,
                    (int)t->spec.actor_name_len, t->spec.actor_name);
    }
    if (luray_oidmap_put(&n->actors, a->id, a)) {
        free(a->key);
        free(a);
        return NULL;
    }
    a->create = t;
    t->actor = a;
    return a;
}

void node_on_submit(node_t *n, proc_t *p, luray_rd_t *r)
{
    size_t len = luray_rd_left(r);
    task_t *t = calloc(1, sizeof(*t));
    uint8_t *raw = malloc(len ? len : 1);
    if (!t || !raw) {
        free(t);
        free(raw);
        return;
    }
    memcpy(raw, r->p, len);
    luray_rd_t rr;
    luray_rd_init(&rr, raw, len);
    bool peer = p->kind == LURAY_PROC_PEER;
    if (luray_proto_parse_task(&rr, &t->spec) || luray_ser_check(t->spec.args, t->spec.args_len) ||
        (!peer && t->spec.task_id.proc != p->id) || luray_oidmap_get(&n->tasks, t->spec.task_id) ||
        (peer && luray_oidmap_get(&n->actors, t->spec.task_id))) {
        free(raw);
        free(t);
        return node_count_bad(n, "SUBMIT");
    }
    t->raw = raw;
    t->raw_len = len;
    t->spec.caller = p->id;
    t->retries_left = t->spec.max_retries;
    n->tasks_submitted++;
    store_func(n, &t->spec);
    n->making_returns = true;
    for (unsigned i = 1; i <= t->spec.num_returns; i++)
        node_proc_ref(n, p, luray_oid_for_return(t->spec.task_id, i), 1);
    n->making_returns = false;
    for (uint32_t i = 0; i < t->spec.n_deps; i++)
        node_obj_incref(n, luray_proto_id_at(t->spec.deps + 16 * i), 1);
    for (uint32_t i = 0; i < t->spec.n_contained; i++)
        node_obj_incref(n, luray_proto_id_at(t->spec.contained + 16 * i), 1);
    luray_oidmap_put(&n->tasks, t->spec.task_id, t);

    if (t->spec.kind == LURAY_TASK_ACTOR_CALL) {
        actor_t *a = luray_oidmap_get(&n->actors, t->spec.actor_id);
        if (!a)
            a = node_actor_proxy(n, t->spec.actor_id);
        if (!a || a->state == A_DEAD) {
            char msg[1200];
            snprintf(msg, sizeof(msg), "the actor died: %s",
                     a && a->death ? a->death : "no such actor");
            node_task_fail(n, t, "ActorDiedError", msg);
            node_task_free(n, t);
            return;
        }
        t->actor = a;
        node_list_push(&a->queue, t, false);
        /* Sent at the end of this batch, so a GET in the same frame is seen first. */
        if (!a->flush_pending && a->state == A_ALIVE) {
            if (n->n_to_flush == n->cap_to_flush) {
                uint32_t cap = n->cap_to_flush ? n->cap_to_flush * 2 : 16;
                actor_t **v = realloc(n->to_flush, cap * sizeof(*v));
                if (!v) {
                    node_actor_flush_queue(n, a);
                    return;
                }
                n->to_flush = v;
                n->cap_to_flush = cap;
            }
            a->flush_pending = true;
            n->to_flush[n->n_to_flush++] = a;
        }
        return;
    }
    char why[512];
    if (!check_resources(n, t, why, sizeof(why))) {
        char msg[700];
        snprintf(msg, sizeof(msg), "task %s can never be scheduled: %s", node_task_name(t), why);
        node_task_fail(n, t, "TaskUnschedulableError", msg);
        node_task_free(n, t);
        return;
    }
    if (t->spec.kind == LURAY_TASK_ACTOR_CREATE) {
        if (t->spec.actor_name_len) {
            char key[600];
            snprintf(key, sizeof(key), "%.*s/%.*s", (int)t->spec.ns_len, t->spec.ns,
                     (int)t->spec.actor_name_len, t->spec.actor_name);
            if (node_actor_by_name(n, key)) {
                char msg[700];
                snprintf(msg, sizeof(msg), "an actor named \"%s\" already exists", key);
                node_task_fail(n, t, "ValueError", msg);
                node_task_free(n, t);
                return;
            }
        }
        actor_t *a = actor_new(n, t, p);
        if (!a) {
            node_task_fail(n, t, "OutOfMemoryError", "cannot create the actor");
            node_task_free(n, t);
            return;
        }
        node_actor_set_name(n, a, true);
        luray_oidmap_del(&n->tasks, t->spec.task_id); /* owned by the actor from now on */
    }
    for (uint32_t i = 0; i < t->spec.n_deps; i++) {
        obj_t *o = node_obj_get(n, luray_proto_id_at(t->spec.deps + 16 * i));
        /* Ready on another node is ready enough: it is pulled where the task runs. */
        if (o && o->state == LURAY_OBJ_PENDING && !o->at &&
            node_obj_add_waiter(o, WAIT_TASK, t) == 0)
            t->deps_left++;
    }
    if (t->deps_left == 0) {
        node_task_make_ready(n, t, false);
        return;
    }
    t->state = T_WAITING;
    /* Arguments owned elsewhere are fetched now that the task waits for them (a fetch that
     * fails at once counts its argument as ready, with an error). */
    for (uint32_t i = 0; i < t->spec.n_deps && t->state == T_WAITING; i++) {
        obj_t *o = node_obj_get(n, luray_proto_id_at(t->spec.deps + 16 * i));
        if (o && o->state == LURAY_OBJ_PENDING && !o->at)
            node_obj_want(n, o);
    }
}

/* ---- done ---- */

static void release_worker(node_t *n, proc_t *w)
{
    if (w->wstate == W_BUSY) {
        if (!w->blocked)
            node_res_give(n, w->pool, w->held);
        else
            memset(w->held, 0, sizeof(w->held));
        w->blocked = false;
        w->task = NULL;
        push_idle(n, w);
    }
}

/* The worker finished its task: the next pipelined one starts with the same resources, or the
 * worker goes idle. */
static void worker_next(node_t *n, proc_t *w)
{
    if (w->pipe.head && w->wstate == W_BUSY) {
        task_t *next = w->pipe.head;
        node_list_remove(next);
        w->task = next;
        if (w->blocked) {
            /* The finished task's resources were lent out while it waited (it went on with a
             * result it got directly): the next one takes them back now. */
            int64_t *avail = node_pool_avail(n, w->pool);
            for (int i = 0; i < n->n_res; i++)
                avail[i] -= w->held[i];
            w->blocked = false;
        }
        return;
    }
    release_worker(n, w);
}

static char *error_message(node_t *n, const uint8_t *blob, uint32_t len)
{
    lua_State *L = n->L;
    char err[128];
    int top = lua_gettop(L);
    char *msg = NULL;
    if (luray_ser_decode(L, blob, len, 0, err, sizeof(err)) == 1 && lua_istable(L, -1)) {
        lua_getfield(L, -1, "message");
        const char *s = lua_tostring(L, -1);
        msg = strdup(s ? s : "the constructor raised an error");
    }
    lua_settop(L, top);
    return msg ? msg : strdup("the constructor raised an error");
}

void node_on_done(node_t *n, proc_t *p, luray_rd_t *r)
{
    if (p->kind == LURAY_PROC_PEER)
        return node_remote_done(n, p, r);
    luray_task_id_t id = luray_proto_rd_id(r);
    uint8_t status = luray_rd_u8(r);
    uint16_t nres = luray_rd_u16(r);
    if (r->err)
        return node_count_bad(n, "DONE");
    task_t *t = NULL;
    actor_t *a = p->actor;
    if (p->task && luray_oid_eq(p->task->spec.task_id, id))
        t = p->task;
    else if (a && a->create && luray_oid_eq(a->create->spec.task_id, id) &&
             a->create->state == T_RUNNING)
        t = a->create;
    else if (a) {
        for (task_t *c = a->inflight.head; c; c = c->next)
            if (luray_oid_eq(c->spec.task_id, id)) {
                t = c;
                break;
            }
    }
    if (!t && !a && !p->task && p->kind == LURAY_PROC_WORKER)
        return; /* a call that finished as its actor was killed: its caller was already told */
    if (!t)
        return node_count_bad(n, "DONE (not this worker's task)");

    if (status == LURAY_DONE_RETRYABLE && t->retries_left > 0 && !t->cancelled &&
        t->spec.kind == LURAY_TASK_NORMAL) {
        t->retries_left--;
        t->spec.attempt++;
        worker_next(n, p);
        t->worker = NULL;
        node_task_make_ready(n, t, true);
        return;
    }
    bool ok = true;
    if (t->cancelled) {
        node_task_fail(n, t, "TaskCancelledError", "the task was cancelled");
        status = LURAY_DONE_ERROR;
        nres = 0;
        ok = false;
    } else if (status == LURAY_DONE_OK) {
        for (unsigned i = 1; i <= nres && !r->err; i++) {
            uint8_t loc = luray_rd_u8(r);
            const void *blob = NULL;
            size_t len = 0;
            if (loc == LURAY_LOC_INLINE)
                blob = luray_rd_str(r, &len);
            uint32_t nc;
            uint64_t cnt = luray_rd_varint(r);
            if (r->err || cnt > luray_rd_left(r) / 16)
                break;
            nc = (uint32_t)cnt;
            luray_oid_t stackc[8], *contained = nc <= 8 ? stackc : malloc(nc * sizeof(luray_oid_t));
            if (!contained)
                break;
            for (uint32_t k = 0; k < nc; k++)
                contained[k] = luray_proto_rd_id(r);
            luray_oid_t oid = luray_oid_for_return(id, i);
            obj_t *o = i <= t->spec.num_returns ? node_obj_get(n, oid) : NULL;
            if (loc == LURAY_LOC_INLINE) {
                uint8_t *copy = aligned_alloc(LURAY_BLOB_ALIGN, (len + LURAY_BLOB_ALIGN) /
                                                                    LURAY_BLOB_ALIGN *
                                                                    LURAY_BLOB_ALIGN);
                if (copy && len)
                    memcpy(copy, blob, len);
                if (o)
                    node_obj_resolve(n, o, LURAY_OBJ_READY, copy, (uint32_t)len, false, contained,
                                     nc);
                else
                    free(copy);
            } else if (o && luray_store_is_sealed(n->store, oid)) {
                node_obj_resolve(n, o, LURAY_OBJ_READY, NULL, 0, true, contained, nc);
            } else if (luray_store_contains(n->store, oid)) {
                luray_store_delete(n->store, oid);
            }
            if (contained != stackc)
                free(contained);
        }
        if (r->err)
            node_count_bad(n, "DONE results");
    } else if (!t->cancelled) {
        size_t len;
        const void *blob = luray_rd_str(r, &len);
        if (r->err || luray_ser_check(blob, len)) {
            node_count_bad(n, "DONE error");
            node_task_fail(n, t, "TaskError", "the task failed and its error could not be read");
        } else {
            node_task_resolve_all(n, t, LURAY_OBJ_ERROR, blob, (uint32_t)len);
        }
        ok = false;
        if (t->spec.kind == LURAY_TASK_ACTOR_CREATE && a) {
            char *msg = error_message(n, blob, (uint32_t)len);
            a->restarts_left = 0;
            node_actor_dead(n, a, msg);
            free(msg);
            p->actor = NULL;
            node_msg_begin(n, p, LURAY_MSG_EXIT);
            node_msg_end(p);
        }
    }
    /* Results that travelled through the store but were never claimed by a live object. */
    for (unsigned i = 1; i <= t->spec.num_returns; i++) {
        obj_t *o = node_obj_get(n, luray_oid_for_return(id, i));
        if (o && o->state == LURAY_OBJ_PENDING)
            node_task_fail(n, t, "TaskError", "the task returned fewer values than num_returns");
    }
    n->tasks_finished++;
    if (t->spec.kind == LURAY_TASK_ACTOR_CREATE) {
        t->state = T_DONE;
        if (ok && a) {
            a->state = A_ALIVE;
            node_actor_flush_queue(n, a);
        }
        node_relay_create(n, t);
        return;
    }
    if (t->spec.kind == LURAY_TASK_ACTOR_CALL) {
        node_task_free(n, t);
        return;
    }
    worker_next(n, p);
    node_task_free(n, t);
}

/* Tasks a worker hands back unstarted (it blocked in get with them queued): queue them again. */
void node_on_return(node_t *n, proc_t *p, luray_rd_t *r)
{
    uint64_t count = luray_rd_varint(r);
    if (r->err || count > luray_rd_left(r) / 16)
        return node_count_bad(n, "RETURN");
    for (uint64_t i = 0; i < count; i++) {
        task_t *t = luray_oidmap_get(&n->tasks, luray_proto_rd_id(r));
        if (!t || t->worker != p)
            continue;
        if (t == p->task) {
            /* The previous task's DONE came first and made this one current, but the worker
             * never started it: its slot passes on. */
            worker_next(n, p);
        } else if (t->list == &p->pipe) {
            node_list_remove(t);
        } else {
            continue;
        }
        t->worker = NULL;
        if (t->cancelled) {
            node_task_fail(n, t, "TaskCancelledError", "the task was cancelled before it ran");
            node_task_free(n, t);
            continue;
        }
        node_task_make_ready(n, t, true);
    }
}

/* ---- workers coming and going ---- */

void node_worker_ready(node_t *n, proc_t *p)
{
    push_idle(n, p);
    node_schedule(n);
}

void node_worker_blocked(node_t *n, proc_t *p, bool blocked)
{
    if (p->wstate != W_BUSY || p->blocked == blocked)
        return;
    p->blocked = blocked;
    int64_t *avail = node_pool_avail(n, p->pool);
    if (blocked) {
        for (int i = 0; i < n->n_res; i++)
            avail[i] += p->held[i];
        node_schedule(n);
    } else {
        for (int i = 0; i < n->n_res; i++)
            avail[i] -= p->held[i];
    }
}

void node_actor_worker_died(node_t *n, actor_t *a, const char *why)
{
    a->worker = NULL;
    node_res_give(n, a->pool, a->held);
    char msg[1200];
    snprintf(msg, sizeof(msg), "the actor died: %s", why);
    int32_t task_retries = a->create ? a->create->spec.max_task_retries : 0;
    bool restart = a->state != A_DEAD && a->restarts_left != 0 && !n->stopping;
    while (a->inflight.head) {
        task_t *t = a->inflight.head;
        node_list_remove(t);
        if (restart && (task_retries < 0 || t->spec.attempt < (uint32_t)task_retries)) {
            t->spec.attempt++;
            t->state = T_WAITING;
            node_list_push(&a->queue, t, false);
            continue;
        }
        node_task_fail(n, t, "ActorDiedError", msg);
        node_task_free(n, t);
    }
    if (a->state == A_DEAD)
        return;
    if (restart && a->create) {
        if (a->restarts_left > 0)
            a->restarts_left--;
        a->state = A_RESTARTING;
        task_t *c = a->create;
        c->worker = NULL;
        node_task_make_ready(n, c, true);
        return;
    }
    node_actor_dead(n, a, why);
}

void node_worker_died(node_t *n, proc_t *p, const char *why)
{
    int was = p->wstate;
    p->wstate = W_DEAD;
    if (was != W_ACTOR && n->n_pool && !p->retired)
        n->n_pool--;
    while (p->pipe.head) {
        task_t *t = p->pipe.head;
        node_list_remove(t);
        t->worker = NULL;
        if (t->cancelled) {
            node_task_fail(n, t, "TaskCancelledError", "the task was cancelled");
            node_task_free(n, t);
        } else {
            node_task_make_ready(n, t, true);
        }
    }
    if (was == W_BUSY && p->task) {
        task_t *t = p->task;
        p->task = NULL;
        if (!p->blocked)
            node_res_give(n, p->pool, p->held);
        if (t->cancelled) {
            node_task_fail(n, t, "TaskCancelledError", "the task was cancelled");
            node_task_free(n, t);
        } else if (t->retries_left > 0 && !n->stopping) {
            t->retries_left--;
            t->spec.attempt++;
            t->worker = NULL;
            luray_log(LURAY_LOG_WARN, "node", "retrying task %s: %s", node_task_name(t), why);
            node_task_make_ready(n, t, true);
        } else {
            char msg[600];
            snprintf(msg, sizeof(msg), "%s while running task %s", why, node_task_name(t));
            node_task_fail(n, t, "WorkerCrashedError", msg);
            node_task_free(n, t);
        }
    }
    if (p->actor) {
        actor_t *a = p->actor;
        p->actor = NULL;
        if (a->create && a->create->state == T_RUNNING) {
            a->create->state = T_DONE;
            if (a->restarts_left == 0) {
                node_task_fail(n, a->create, "ActorDiedError", why);
                node_relay_create(n, a->create);
            }
        }
        node_actor_worker_died(n, a, why);
    }
}

void node_kill_actor(node_t *n, actor_t *a, bool no_restart, const char *why)
{
    if (no_restart)
        a->restarts_left = 0;
    if (a->worker && a->worker->kind == LURAY_PROC_PEER) {
        /* Hosted by another node: it kills the worker; without a restart, we are done. */
        luray_buf_t *b = node_msg_begin(n, a->worker, LURAY_MSG_KILL);
        luray_proto_put_id(b, a->id);
        luray_buf_put_u8(b, no_restart);
        node_msg_end(a->worker);
        if (no_restart) {
            a->worker = NULL;
            while (a->inflight.head) {
                task_t *t = a->inflight.head;
                char msg[600];
                snprintf(msg, sizeof(msg), "the actor died: %s", why);
                node_task_fail(n, t, "ActorDiedError", msg);
                node_task_free(n, t);
            }
            node_actor_dead(n, a, why);
        }
        return;
    }
    if (a->worker && a->worker->spawned) {
        if (no_restart) {
            proc_t *w = a->worker;
            w->actor = NULL;
            a->worker = NULL;
            uv_process_kill(&w->uvp, SIGKILL);
            while (a->inflight.head) {
                task_t *t = a->inflight.head;
                char msg[600];
                snprintf(msg, sizeof(msg), "the actor died: %s", why);
                node_task_fail(n, t, "ActorDiedError", msg);
                node_task_free(n, t);
            }
            node_actor_dead(n, a, why);
        } else {
            uv_process_kill(&a->worker->uvp, SIGKILL);
        }
    } else if (no_restart && a->state != A_DEAD) {
        if (a->create && a->create->list)
            node_list_remove(a->create);
        node_actor_dead(n, a, why);
    }
}

void node_driver_left(node_t *n, proc_t *p)
{
    node_pgs_of_left(n, p);
    for (size_t i = 0; i < n->actors.cap; i++) {
        actor_t *a = n->actors.slots[i].val;
        if (a && a->owner == p->id && !a->detached && a->state != A_DEAD)
            node_kill_actor(n, a, true, "its owner (the driver) exited");
    }
}

/* Workers beyond the warm pool (started while tasks blocked in get) exit after idling a while,
 * so a burst of nested tasks does not leave its workers behind for good. */
void node_retire_idle(node_t *n)
{
    uint32_t warm = (uint32_t)(n->opts->num_cpus + 0.999);
    if (warm < 1)
        warm = 1;
    uint64_t now = uv_now(n->loop);
    for (uint32_t i = 0; i < n->n_procs && n->n_pool > warm; i++) {
        proc_t *w = n->procs[i];
        if (w->gone || w->wstate != W_IDLE || w->sock < 0 ||
            now - w->idle_since < n->idle_timeout_ms)
            continue;
        w->retired = true;
        w->wstate = W_DEAD; /* no longer offered work; its exit is reaped as usual */
        n->n_pool--;
        node_msg_begin(n, w, LURAY_MSG_EXIT);
        node_msg_end(w);
    }
}

/* ---- lookup, kill, cancel ---- */

void node_on_lookup(node_t *n, proc_t *p, luray_rd_t *r)
{
    uint64_t req = luray_rd_u64(r);
    size_t len;
    const char *key = luray_rd_str(r, &len);
    if (r->err || len > 1000)
        return node_count_bad(n, "LOOKUP");
    char k[1024];
    memcpy(k, key, len);
    k[len] = 0;
    actor_t *a = node_actor_by_name(n, k);
    if ((!a || a->state == A_DEAD) && node_lookup_remote(n, p, req, k))
        return;
    luray_buf_t *b = node_msg_begin(n, p, LURAY_MSG_REPLY);
    luray_buf_put_u64(b, req);
    if (!a || a->state == A_DEAD || (!a->create && !a->methods)) {
        luray_buf_put_u32(b, (uint32_t)LURAY_ENOENT);
        luray_buf_put_str(b, "", 0);
    } else {
        luray_buf_put_u32(b, 0);
        luray_buf_t tmp;
        luray_buf_init(&tmp);
        luray_proto_put_id(&tmp, a->id);
        if (a->create)
            luray_buf_put(&tmp, a->create->spec.method, a->create->spec.method_len);
        else
            luray_buf_put(&tmp, a->methods, strlen(a->methods));
        luray_buf_put_str(b, tmp.data, tmp.len);
        luray_buf_close(&tmp);
    }
    node_msg_end(p);
}

void node_on_kill(node_t *n, proc_t *p, luray_rd_t *r)
{
    luray_actor_id_t id = luray_proto_rd_id(r);
    uint8_t no_restart = luray_rd_u8(r);
    if (r->err)
        return node_count_bad(n, "KILL");
    actor_t *a = luray_oidmap_get(&n->actors, id);
    if (a && a->state != A_DEAD)
        node_kill_actor(n, a, no_restart, "it was killed with luray.kill");
}

void node_on_cancel(node_t *n, proc_t *p, luray_rd_t *r)
{
    luray_task_id_t id = luray_proto_rd_id(r);
    uint8_t force = luray_rd_u8(r);
    if (r->err)
        return node_count_bad(n, "CANCEL");
    task_t *t = luray_oidmap_get(&n->tasks, id);
    if (!t || t->spec.kind != LURAY_TASK_NORMAL)
        return;
    if (t->state == T_WAITING || t->state == T_READY) {
        node_task_fail(n, t, "TaskCancelledError", "the task was cancelled before it ran");
        node_task_free(n, t);
        return;
    }
    if (t->state == T_RUNNING && t->worker && t->worker->kind == LURAY_PROC_PEER) {
        /* Running on another node: that node cancels it and its DONE says so. */
        t->cancelled = true;
        luray_buf_t *b = node_msg_begin(n, t->worker, LURAY_MSG_CANCEL);
        luray_proto_put_id(b, t->spec.task_id);
        luray_buf_put_u8(b, force);
        node_msg_end(t->worker);
        return;
    }
    if (t->state == T_RUNNING && t->worker && t->worker->task != t) {
        /* Pipelined: the worker hands it back if it has not started it; if it has, the result
         * is dropped when it comes back. */
        t->cancelled = true;
        luray_buf_t *b = node_msg_begin(n, t->worker, LURAY_MSG_CANCEL);
        luray_proto_put_id(b, t->spec.task_id);
        node_msg_end(t->worker);
        return;
    }
    if (t->state == T_RUNNING && t->worker && t->worker->spawned) {
        t->cancelled = true;
        uv_process_kill(&t->worker->uvp, force ? SIGKILL : SIGUSR1);
    }
}
