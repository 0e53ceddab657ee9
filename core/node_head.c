/* The cluster directory on the head node (see node_head.h). */
#include "node_head.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "ctl.h"
#include "jobs.h"
#include "log.h"
#include "luray/errors.h"
#include "node_cluster.h"
#include "node_internal.h"
#include "node_remote.h"

#define CHECK_MS 250
#define NODE_TIMEOUT_MS_DEFAULT 3000
#define PG_MAX_BUNDLES 256

typedef struct {
    uint32_t id;
    char addr[300];
    bool alive;
    uint64_t last_seen;
    uint32_t pid;
    int n_res;
    char *names[NODE_MAX_RES];
    uint32_t name_lens[NODE_MAX_RES];
    int64_t total[NODE_MAX_RES];
    int64_t avail[NODE_MAX_RES];
    uint64_t stats[NODE_BEAT_STATS];
    char *death;
    uint64_t told_ms; /* when a dead node that still sends was last told so */
} hnode_t;

typedef struct {
    char *key;
    luray_actor_id_t id;
    uint32_t at;
    bool detached;
    char *methods;
    size_t mlen;
} hname_t;

typedef struct {
    uint32_t n_res;
    char *names[LURAY_RES_MAX];
    int64_t amounts[LURAY_RES_MAX];
    uint32_t node;  /* 0 while not placed */
    bool acked;
} hbundle_t;

enum { PG_PENDING, PG_RESERVING, PG_CREATED };
enum { PG_PACK, PG_SPREAD, PG_STRICT_PACK, PG_STRICT_SPREAD };

typedef struct {
    luray_oid_t id;
    uint8_t strategy;
    int state;
    uint32_t asker; /* node to tell when it is created or fails */
    uint32_t n_bundles;
    hbundle_t *bundles;
    uint32_t rr;
    bool warned;
} hpg_t;

struct head {
    node_t *n;
    hnode_t **nodes;
    uint32_t n_nodes, cap_nodes;
    luray_oidmap_t by_id; /* {id,0,0} -> hnode_t */
    uint32_t rr;
    uv_timer_t check;
    uint64_t timeout_ms;
    hname_t *names;
    uint32_t n_names, cap_names;
    hpg_t **pgs;
    uint32_t n_pgs, cap_pgs;
    FILE *log;
    uint64_t decisions;
    luray_ctl_server_t *ctl; /* the control port: status and jobs */
    luray_jobs_t *jobs;
};

static luray_oid_t key_of(uint32_t id) { return (luray_oid_t){id, 0, 0}; }

static hnode_t *hnode(head_t *h, uint32_t id) { return luray_oidmap_get(&h->by_id, key_of(id)); }

/* ---- the directory log ---- */

static void log_line(head_t *h, cJSON *j)
{
    if (!h->log) {
        cJSON_Delete(j);
        return;
    }
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s)
        return;
    fprintf(h->log, "%s\n", s);
    fflush(h->log);
    fdatasync(fileno(h->log));
    free(s);
}

static void log_name(head_t *h, const hname_t *a, bool gone)
{
    char hex[LURAY_OID_HEX_LEN + 1];
    luray_oid_hex(a->id, hex);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "t", gone ? "actor_gone" : "actor");
    cJSON_AddStringToObject(j, "key", a->key);
    cJSON_AddStringToObject(j, "id", hex);
    if (!gone) {
        cJSON_AddNumberToObject(j, "at", a->at);
        cJSON_AddStringToObject(j, "methods", a->methods ? a->methods : "");
    }
    log_line(h, j);
}

/* ---- nodes ---- */

static hnode_t *hnode_add(head_t *h, uint32_t id)
{
    hnode_t *x = hnode(h, id);
    if (x)
        return x;
    if (h->n_nodes == h->cap_nodes) {
        uint32_t cap = h->cap_nodes ? h->cap_nodes * 2 : 16;
        hnode_t **v = realloc(h->nodes, cap * sizeof(*v));
        if (!v)
            return NULL;
        h->nodes = v;
        h->cap_nodes = cap;
    }
    x = calloc(1, sizeof(*x));
    if (!x || luray_oidmap_put(&h->by_id, key_of(id), x) != 0) {
        free(x);
        return NULL;
    }
    x->id = id;
    h->nodes[h->n_nodes++] = x;
    return x;
}

static void hnode_set_res(hnode_t *x, int n_res, char **names, const int64_t *total)
{
    for (int i = 0; i < x->n_res; i++)
        free(x->names[i]);
    x->n_res = 0;
    for (int i = 0; i < n_res && i < NODE_MAX_RES; i++) {
        x->names[i] = names[i];
        x->name_lens[i] = (uint32_t)strlen(names[i]);
        x->total[i] = x->avail[i] = total[i];
        x->n_res++;
    }
}

/* The head's own node, as fresh as its loop knows it: its resources (cheap, before each batch
 * of decisions) and, with stats, its counters (a walk over its processes, for status). */
static void sync_self_res(head_t *h);

static void sync_self(head_t *h)
{
    sync_self_res(h);
    hnode_t *x = hnode(h, h->n->node_id);
    if (x)
        node_beat_stats(h->n, x->stats);
}

static void sync_self_res(head_t *h)
{
    node_t *n = h->n;
    hnode_t *x = hnode(h, n->node_id);
    if (!x)
        return;
    if (x->n_res != n->n_res) {
        char *names[NODE_MAX_RES];
        for (int i = 0; i < n->n_res; i++)
            names[i] = strdup(n->res_names[i]);
        hnode_set_res(x, n->n_res, names, n->total);
    }
    memcpy(x->total, n->total, sizeof(int64_t) * (size_t)n->n_res);
    memcpy(x->avail, n->avail, sizeof(int64_t) * (size_t)n->n_res);
    x->alive = true;
    x->last_seen = uv_now(n->loop);
}

const char *head_node_addr(head_t *h, uint32_t id)
{
    hnode_t *x = hnode(h, id);
    return x && x->alive && x->addr[0] ? x->addr : NULL;
}

void head_tell_dead(head_t *h, uint32_t id)
{
    hnode_t *x = hnode(h, id);
    uint64_t now = uv_now(h->n->loop);
    if (!x || !x->addr[0] || (x->told_ms && now - x->told_ms < 2000))
        return;
    x->told_ms = now;
    /* The peer proc is gone with the node: a one-off socket carries the news. */
    proc_t *tmp = node_proc_new(h->n, LURAY_PROC_PEER);
    if (!tmp)
        return;
    tmp->peer_node = id;
    node_peer_set_addr(h->n, tmp, x->addr);
    luray_buf_t *b = node_msg_begin(h->n, tmp, LURAY_MSG_NODEDEAD);
    luray_buf_put_u32(b, id);
    const char *why = x->death ? x->death : "declared dead";
    luray_buf_put_str(b, why, strlen(why));
    node_msg_end(tmp);
    node_flush_all(h->n);
    node_proc_gone(h->n, tmp, "one-off");
}

static void pg_node_lost(head_t *h, uint32_t id);
static void names_node_lost(head_t *h, uint32_t id);

static void declare_dead(head_t *h, hnode_t *x, const char *why)
{
    node_t *n = h->n;
    x->alive = false;
    free(x->death);
    x->death = strdup(why);
    luray_log(LURAY_LOG_WARN, "head", "node %08x (%s) is dead: %s", x->id, x->addr, why);
    for (uint32_t i = 0; i < h->n_nodes; i++) {
        hnode_t *y = h->nodes[i];
        if (!y->alive || y->id == n->node_id)
            continue;
        proc_t *p = node_peer(n, y->id, true);
        if (!p)
            continue;
        luray_buf_t *b = node_msg_begin(n, p, LURAY_MSG_NODEDEAD);
        luray_buf_put_u32(b, x->id);
        luray_buf_put_str(b, why, strlen(why));
        node_msg_end(p);
    }
    node_peer_dead(n, x->id, why);
    pg_node_lost(h, x->id);
    names_node_lost(h, x->id);
}

static void pg_try_all(head_t *h);

static void on_check(uv_timer_t *t)
{
    head_t *h = t->data;
    /* Heartbeats that arrived while this loop was busy count before anyone is judged. */
    node_cluster_drain(h->n);
    uv_update_time(h->n->loop);
    uint64_t now = uv_now(h->n->loop);
    for (uint32_t i = 0; i < h->n_nodes; i++) {
        hnode_t *x = h->nodes[i];
        if (x->alive && x->id != h->n->node_id && now - x->last_seen > h->timeout_ms) {
            char why[128];
            snprintf(why, sizeof(why), "no heartbeat for %.1f s",
                     (double)(now - x->last_seen) / 1000.0);
            declare_dead(h, x, why);
        }
    }
    pg_try_all(h);
    node_remote_tick(h->n);
    node_peer_close_idle_data(h->n);
    node_schedule(h->n);
    node_flush_all(h->n);
}

static void reply_nreg(node_t *n, proc_t *p, uint32_t status, const char *why)
{
    luray_buf_t *b = node_msg_begin(n, p, LURAY_MSG_NREG_OK);
    luray_buf_put_u32(b, status);
    luray_buf_put_str(b, why, strlen(why));
    node_msg_end(p);
}

static void on_nreg(head_t *h, proc_t *p, luray_rd_t *r)
{
    node_t *n = h->n;
    uint32_t id = luray_rd_u32(r);
    size_t alen = 0;
    const char *addr = luray_rd_str(r, &alen);
    uint32_t pid = luray_rd_u32(r);
    uint32_t n_res = luray_rd_u32(r);
    if (r->err || id != p->peer_node || alen == 0 || alen >= 300 || n_res > NODE_MAX_RES)
        return node_count_bad(n, "NREG");
    char *names[NODE_MAX_RES];
    int64_t total[NODE_MAX_RES];
    uint32_t got = 0;
    for (; got < n_res && !r->err; got++) {
        size_t len = 0;
        const char *s = luray_rd_str(r, &len);
        total[got] = (int64_t)luray_rd_u64(r);
        names[got] = (r->err || len == 0 || len > 200 || total[got] < 0) ? NULL : strndup(s, len);
        if (!names[got])
            r->err = LURAY_EPROTO;
    }
    if (r->err) {
        for (uint32_t i = 0; i + 1 < got; i++)
            free(names[i]);
        return node_count_bad(n, "NREG resources");
    }
    char a[300];
    memcpy(a, addr, alen);
    a[alen] = 0;
    hnode_t *x = hnode(h, id);
    if (x && x->alive && strcmp(x->addr, a) != 0) {
        for (uint32_t i = 0; i < n_res; i++)
            free(names[i]);
        node_peer_set_addr(n, p, a);
        return reply_nreg(n, p, 1, "another node registered with this node id; start again");
    }
    x = hnode_add(h, id);
    if (!x) {
        for (uint32_t i = 0; i < n_res; i++)
            free(names[i]);
        return;
    }
    bool known = x->alive;
    snprintf(x->addr, sizeof(x->addr), "%s", a);
    x->pid = pid;
    hnode_set_res(x, (int)n_res, names, total);
    /* The answer waits, if every socket to peers is busy now, until one frees up. */
    node_peer_set_addr(n, p, a);
    x->alive = true;
    x->last_seen = uv_now(n->loop);
    if (!known)
        luray_log(LURAY_LOG_INFO, "head", "node %08x joined from %s", id, a);
    reply_nreg(n, p, 0, "");
    node_remote_node_joined(n, id);
    pg_try_all(h);
}

/* The address at the end of a BEAT, after the amounts and counters. */
static bool beat_addr(luray_rd_t r, char *out, size_t len)
{
    uint32_t n_res = luray_rd_u32(&r);
    for (uint32_t i = 0; i < n_res && !r.err; i++)
        luray_rd_u64(&r);
    uint32_t n_stats = luray_rd_u32(&r);
    for (uint32_t i = 0; i < n_stats && !r.err; i++)
        luray_rd_u64(&r);
    size_t alen = 0;
    const char *a = luray_rd_str(&r, &alen);
    if (r.err || alen == 0 || alen >= len)
        return false;
    memcpy(out, a, alen);
    out[alen] = 0;
    return true;
}

static void on_beat(head_t *h, proc_t *p, luray_rd_t *r)
{
    node_t *n = h->n;
    hnode_t *x = hnode(h, p->peer_node);
    if (!x || !x->alive) {
        /* A node of a head that restarted (or one it has not heard register): tell it to
         * register, at the address its heartbeat gives. */
        char a[300];
        if (!x && p->sock < 0 && beat_addr(*r, a, sizeof(a)))
            node_peer_set_addr(n, p, a);
        if (!x || !x->death) {
            node_msg_begin(n, p, LURAY_MSG_REREG);
            node_msg_end(p);
        }
        return;
    }
    uint32_t n_res = luray_rd_u32(r);
    if (r->err || (int)n_res != x->n_res)
        return node_count_bad(n, "BEAT");
    int64_t avail[NODE_MAX_RES];
    for (uint32_t i = 0; i < n_res; i++)
        avail[i] = (int64_t)luray_rd_u64(r);
    uint32_t n_stats = luray_rd_u32(r);
    uint64_t stats[NODE_BEAT_STATS] = {0};
    for (uint32_t i = 0; i < n_stats && !r->err; i++) {
        uint64_t v = luray_rd_u64(r);
        if (i < NODE_BEAT_STATS)
            stats[i] = v;
    }
    if (r->err)
        return node_count_bad(n, "BEAT");
    memcpy(x->avail, avail, sizeof(int64_t) * n_res);
    memcpy(x->stats, stats, sizeof(stats));
    x->last_seen = uv_now(n->loop);
}

static void on_whois(head_t *h, proc_t *p, luray_rd_t *r)
{
    uint32_t id = luray_rd_u32(r);
    if (r->err)
        return node_count_bad(h->n, "WHOIS");
    hnode_t *x = hnode(h, id);
    luray_buf_t *b = node_msg_begin(h->n, p, LURAY_MSG_NODEINFO);
    luray_buf_put_u32(b, id);
    bool alive = x && x->alive;
    luray_buf_put_u8(b, alive);
    luray_buf_put_str(b, alive ? x->addr : "", alive ? strlen(x->addr) : 0);
    node_msg_end(p);
}

/* ---- placement ---- */

void place_req_put(luray_buf_t *b, const place_req_t *q)
{
    luray_proto_put_id(b, q->task);
    luray_buf_put_u8(b, q->strategy);
    luray_buf_put_u32(b, q->target);
    luray_buf_put_u8(b, q->soft);
    luray_proto_put_id(b, q->pg);
    luray_buf_put_u32(b, (uint32_t)q->bundle);
    luray_buf_put_u32(b, q->pref);
    luray_buf_put_u8(b, q->is_actor);
    luray_buf_put_u32(b, q->n_res);
    for (uint32_t i = 0; i < q->n_res; i++) {
        luray_buf_put_str(b, q->names[i], q->name_lens[i]);
        luray_buf_put_u64(b, (uint64_t)q->amounts[i]);
    }
}

int place_req_read(luray_rd_t *r, place_req_t *q)
{
    memset(q, 0, sizeof(*q));
    q->task = luray_proto_rd_id(r);
    q->strategy = luray_rd_u8(r);
    q->target = luray_rd_u32(r);
    q->soft = luray_rd_u8(r);
    q->pg = luray_proto_rd_id(r);
    q->bundle = (int32_t)luray_rd_u32(r);
    q->pref = luray_rd_u32(r);
    q->is_actor = luray_rd_u8(r);
    q->n_res = luray_rd_u32(r);
    if (r->err || q->n_res > LURAY_RES_MAX)
        return LURAY_EPROTO;
    for (uint32_t i = 0; i < q->n_res && !r->err; i++) {
        size_t len = 0;
        q->names[i] = luray_rd_str(r, &len);
        q->name_lens[i] = (uint32_t)len;
        q->amounts[i] = (int64_t)luray_rd_u64(r);
        if (q->amounts[i] < 0)
            r->err = LURAY_EPROTO;
    }
    return r->err ? LURAY_EPROTO : 0;
}

static int res_at(const hnode_t *x, const char *name, uint32_t len)
{
    for (int i = 0; i < x->n_res; i++)
        if (x->name_lens[i] == len && memcmp(x->names[i], name, len) == 0)
            return i;
    return -1;
}

static bool fits_in(const hnode_t *x, uint32_t n_res, const char *const *names,
                    const uint32_t *lens, const int64_t *amounts, const int64_t *pool)
{
    for (uint32_t i = 0; i < n_res; i++) {
        if (amounts[i] == 0)
            continue;
        int k = res_at(x, names[i], lens[i]);
        if (k < 0 || pool[k] < amounts[i])
            return false;
    }
    return true;
}

static bool q_fits(const hnode_t *x, const place_req_t *q, bool now)
{
    return x->alive && fits_in(x, q->n_res, q->names, q->name_lens, q->amounts,
                               now ? x->avail : x->total);
}

static void take(head_t *h, hnode_t *x, uint32_t n_res, const char *const *names,
                 const uint32_t *lens, const int64_t *amounts)
{
    if (x->id == h->n->node_id)
        return; /* the head's own numbers are live */
    for (uint32_t i = 0; i < n_res; i++) {
        int k = res_at(x, names[i], lens[i]);
        if (k >= 0)
            x->avail[k] -= amounts[i];
    }
}

static void why_never(head_t *h, const place_req_t *q, char *why, size_t whylen)
{
    for (uint32_t i = 0; i < q->n_res; i++) {
        int64_t best = -1;
        for (uint32_t j = 0; j < h->n_nodes; j++) {
            hnode_t *x = h->nodes[j];
            int k = x->alive ? res_at(x, q->names[i], q->name_lens[i]) : -1;
            if (k >= 0 && x->total[k] > best)
                best = x->total[k];
        }
        if (best < q->amounts[i]) {
            if (best < 0)
                snprintf(why, whylen, "it requires resource \"%.*s\", which no node has",
                         (int)q->name_lens[i], q->names[i]);
            else
                snprintf(why, whylen,
                         "it requires %g %.*s but the largest node has %g",
                         (double)q->amounts[i] / LURAY_RES_UNIT, (int)q->name_lens[i],
                         q->names[i], (double)best / LURAY_RES_UNIT);
            return;
        }
    }
    snprintf(why, whylen, "no node has all the resources it requires at once");
}

static hpg_t *pg_find(head_t *h, luray_oid_t id)
{
    for (uint32_t i = 0; i < h->n_pgs; i++)
        if (luray_oid_eq(h->pgs[i]->id, id))
            return h->pgs[i];
    return NULL;
}

static uint32_t place_in_group(head_t *h, const place_req_t *q, char *why, size_t whylen)
{
    hpg_t *g = pg_find(h, q->pg);
    if (!g) {
        snprintf(why, whylen, "its placement group does not exist (removed?)");
        return 0;
    }
    if (q->bundle >= (int32_t)g->n_bundles) {
        snprintf(why, whylen, "bundle %d is out of range: the placement group has %u bundles",
                 q->bundle + 1, g->n_bundles);
        return 0;
    }
    /* Bundles that could hold it at all. */
    uint32_t fit = 0, pick = UINT32_MAX;
    for (uint32_t k = 0; k < g->n_bundles; k++) {
        uint32_t b = (g->rr + k) % g->n_bundles;
        if (q->bundle >= 0 && b != (uint32_t)q->bundle)
            continue;
        const hbundle_t *bd = &g->bundles[b];
        bool holds = true;
        for (uint32_t i = 0; i < q->n_res && holds; i++) {
            int64_t have = 0;
            for (uint32_t j = 0; j < bd->n_res; j++)
                if (strlen(bd->names[j]) == q->name_lens[i] &&
                    memcmp(bd->names[j], q->names[i], q->name_lens[i]) == 0)
                    have = bd->amounts[j];
            holds = q->amounts[i] <= have;
        }
        if (holds && fit++ == 0)
            pick = b;
    }
    if (!fit) {
        snprintf(why, whylen, "%s of its placement group can hold what it requires",
                 q->bundle >= 0 ? "the bundle it names" : "no bundle");
        return 0;
    }
    if (g->state != PG_CREATED)
        return PLACE_LATER;
    g->rr = pick + 1;
    return g->bundles[pick].node ? g->bundles[pick].node : PLACE_LATER;
}

void head_sync(head_t *h) { sync_self_res(h); }

uint32_t head_place(head_t *h, uint32_t asker, const place_req_t *q, char *why, size_t whylen)
{
    h->decisions++;
    if (q->strategy == 3)
        return place_in_group(h, q, why, whylen);
    hnode_t *chosen = NULL;
    if (q->strategy == 2) {
        hnode_t *x = hnode(h, q->target);
        if (x && q_fits(x, q, false))
            chosen = x;
        else if (!q->soft) {
            if (!x || !x->alive)
                snprintf(why, whylen, "its node affinity names node %08x, which is %s",
                         q->target, x ? "dead" : "not in the cluster");
            else
                snprintf(why, whylen, "its node affinity names node %08x, which cannot fit it",
                         q->target);
            return 0;
        }
    }
    if (!chosen && q->strategy == 1 && h->n_nodes) {
        /* Round robin over the nodes it fits on, busy or not: each queues its share. */
        for (uint32_t k = 0; k < h->n_nodes && !chosen; k++) {
            hnode_t *x = h->nodes[(h->rr + k) % h->n_nodes];
            if (q_fits(x, q, false)) {
                chosen = x;
                h->rr = (h->rr + k + 1) % h->n_nodes;
            }
        }
    }
    if (!chosen) {
        hnode_t *me = hnode(h, asker), *pref = q->pref ? hnode(h, q->pref) : NULL;
        if (pref && q_fits(pref, q, true))
            chosen = pref;
        else if (me && q_fits(me, q, true))
            chosen = me;
        else {
            /* The node with the most free CPU that has room; else wait where it is asked
             * when it fits there at all; else the least busy node it fits on. */
            int64_t best = -1;
            for (uint32_t k = 0; k < h->n_nodes; k++) {
                hnode_t *x = h->nodes[k];
                int64_t free_cpu = x->n_res ? x->avail[0] : 0;
                if (q_fits(x, q, true) && free_cpu > best) {
                    best = free_cpu;
                    chosen = x;
                }
            }
            if (!chosen && me && q_fits(me, q, false))
                chosen = me;
            uint64_t least = UINT64_MAX;
            for (uint32_t k = 0; k < h->n_nodes && !chosen; k++) {
                hnode_t *x = h->nodes[k];
                if (q_fits(x, q, false) && x->stats[STAT_QUEUED] < least)
                    least = x->stats[STAT_QUEUED];
            }
            for (uint32_t k = 0; k < h->n_nodes && !chosen; k++)
                if (q_fits(h->nodes[k], q, false) && h->nodes[k]->stats[STAT_QUEUED] == least)
                    chosen = h->nodes[k];
        }
    }
    if (!chosen) {
        why_never(h, q, why, whylen);
        return 0;
    }
    take(h, chosen, q->n_res, q->names, q->name_lens, q->amounts);
    if (chosen->id != asker)
        chosen->stats[STAT_QUEUED]++;
    return chosen->id;
}

static void on_place(head_t *h, proc_t *p, luray_rd_t *r)
{
    node_t *n = h->n;
    uint64_t req = luray_rd_u64(r);
    uint32_t count = luray_rd_u32(r);
    if (r->err || count > luray_rd_left(r) / 40)
        return node_count_bad(n, "PLACE");
    hnode_t *asker = hnode(h, p->peer_node);
    if (!asker || !asker->alive)
        return; /* not registered (or dead): it cannot be answered, nor should it be */
    sync_self_res(h);
    luray_buf_t *b = node_msg_begin(n, p, LURAY_MSG_PLACED);
    luray_buf_put_u64(b, req);
    size_t count_at = b->len;
    luray_buf_put_u32(b, 0);
    uint32_t done = 0;
    for (; done < count; done++) {
        place_req_t q;
        if (place_req_read(r, &q) != 0) {
            node_count_bad(n, "PLACE request");
            break;
        }
        char why[300] = "";
        uint32_t to = head_place(h, p->peer_node, &q, why, sizeof(why));
        luray_proto_put_id(b, q.task);
        luray_buf_put_u32(b, to);
        const char *addr = to && to != PLACE_LATER ? head_node_addr(h, to) : NULL;
        luray_buf_put_str(b, addr ? addr : "", addr ? strlen(addr) : 0);
        luray_buf_put_str(b, why, to ? 0 : strlen(why));
    }
    if (!b->err) {
        uint8_t *c = b->data + count_at;
        c[0] = (uint8_t)done;
        c[1] = (uint8_t)(done >> 8);
        c[2] = (uint8_t)(done >> 16);
        c[3] = (uint8_t)(done >> 24);
    }
    node_msg_end(p);
}

/* ---- named actors ---- */

static hname_t *name_find(head_t *h, const char *key)
{
    for (uint32_t i = 0; i < h->n_names; i++)
        if (strcmp(h->names[i].key, key) == 0)
            return &h->names[i];
    return NULL;
}

static void name_drop(head_t *h, hname_t *a)
{
    if (a->detached)
        log_name(h, a, true);
    free(a->key);
    free(a->methods);
    *a = h->names[--h->n_names];
}

int head_name_register(head_t *h, const char *key, luray_actor_id_t id, uint32_t at,
                       bool detached, const char *methods, size_t mlen)
{
    hname_t *a = name_find(h, key);
    if (a && !luray_oid_eq(a->id, id))
        return LURAY_EEXIST;
    if (!a) {
        if (h->n_names == h->cap_names) {
            uint32_t cap = h->cap_names ? h->cap_names * 2 : 16;
            hname_t *v = realloc(h->names, cap * sizeof(*v));
            if (!v)
                return LURAY_ENOMEM;
            h->names = v;
            h->cap_names = cap;
        }
        a = &h->names[h->n_names++];
        memset(a, 0, sizeof(*a));
        a->key = strdup(key);
        a->id = id;
    }
    a->at = at;
    a->detached = detached;
    free(a->methods);
    a->methods = strndup(methods, mlen);
    a->mlen = mlen;
    if (detached)
        log_name(h, a, false);
    return 0;
}

void head_name_unregister(head_t *h, const char *key, luray_actor_id_t id)
{
    hname_t *a = name_find(h, key);
    if (a && luray_oid_eq(a->id, id))
        name_drop(h, a);
}

int head_name_lookup(head_t *h, const char *key, luray_actor_id_t *id, const char **methods,
                     size_t *mlen)
{
    hname_t *a = name_find(h, key);
    if (!a)
        return LURAY_ENOENT;
    *id = a->id;
    *methods = a->methods ? a->methods : "";
    *mlen = a->methods ? a->mlen : 0;
    return 0;
}

void head_name_moved(head_t *h, luray_actor_id_t id, uint32_t at)
{
    for (uint32_t i = 0; i < h->n_names; i++)
        if (luray_oid_eq(h->names[i].id, id)) {
            h->names[i].at = at;
            if (h->names[i].detached)
                log_name(h, &h->names[i], false);
        }
}

/* Actors whose owner node died die with it (their owner keeps their calls and restarts). */
static void names_node_lost(head_t *h, uint32_t id)
{
    for (uint32_t i = 0; i < h->n_names;) {
        if (h->names[i].id.node == id)
            name_drop(h, &h->names[i]);
        else
            i++;
    }
}

enum { NAME_REG = 1, NAME_UNREG = 2, NAME_LOOKUP = 3 };

static void on_name(head_t *h, proc_t *p, luray_rd_t *r)
{
    node_t *n = h->n;
    uint8_t op = luray_rd_u8(r);
    uint64_t tag = luray_rd_u64(r);
    size_t klen = 0, mlen = 0;
    const char *key = luray_rd_str(r, &klen);
    luray_actor_id_t id = luray_proto_rd_id(r);
    uint8_t detached = luray_rd_u8(r);
    const char *methods = luray_rd_str(r, &mlen);
    if (r->err || klen == 0 || klen > 1000 || mlen > 65536)
        return node_count_bad(n, "NAME");
    char k[1024];
    memcpy(k, key, klen);
    k[klen] = 0;
    if (op == NAME_REG) {
        int rc = head_name_register(h, k, id, p->peer_node, detached, methods, mlen);
        if (rc == LURAY_EEXIST) {
            luray_buf_t *b = node_msg_begin(n, p, LURAY_MSG_NAME);
            luray_buf_put_u8(b, NAME_REG);
            luray_buf_put_u64(b, tag);
            luray_buf_put_u32(b, (uint32_t)rc);
            luray_proto_put_id(b, id);
            luray_buf_put_str(b, k, klen);
            node_msg_end(p);
        }
    } else if (op == NAME_UNREG) {
        head_name_unregister(h, k, id);
    } else if (op == NAME_LOOKUP) {
        const char *m = "";
        size_t ml = 0;
        luray_actor_id_t aid = {0};
        int rc = head_name_lookup(h, k, &aid, &m, &ml);
        luray_buf_t *b = node_msg_begin(n, p, LURAY_MSG_NAME);
        luray_buf_put_u8(b, NAME_LOOKUP);
        luray_buf_put_u64(b, tag);
        luray_buf_put_u32(b, (uint32_t)rc);
        luray_proto_put_id(b, aid);
        luray_buf_put_str(b, m, ml);
        node_msg_end(p);
    } else {
        node_count_bad(n, "NAME op");
    }
}

static void load_log(head_t *h, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    unsigned lineno = 0, restored = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        lineno++;
        cJSON *j = cJSON_Parse(line);
        const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "t"));
        const char *key = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "key"));
        const char *hex = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "id"));
        luray_actor_id_t id;
        if (!t || !key || !hex || luray_oid_parse(hex, &id) != 0) {
            luray_log(LURAY_LOG_WARN, "head", "%s:%u: skipping a line that does not parse", path,
                      lineno);
            cJSON_Delete(j);
            continue;
        }
        if (strcmp(t, "actor") == 0) {
            const char *m = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "methods"));
            double at = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(j, "at"));
            FILE *keep = h->log;
            h->log = NULL; /* replaying: not written again */
            head_name_register(h, key, id, at > 0 ? (uint32_t)at : 0, true, m ? m : "",
                               m ? strlen(m) : 0);
            h->log = keep;
        } else if (strcmp(t, "actor_gone") == 0) {
            hname_t *a = name_find(h, key);
            if (a && luray_oid_eq(a->id, id)) {
                a->detached = false;
                name_drop(h, a);
            }
        }
        cJSON_Delete(j);
    }
    free(line);
    fclose(f);
    /* What is left: actors that were alive when the head stopped. Their owner was this node
     * (or another one): adopt the ones this node owned so calls reach them again. */
    for (uint32_t i = 0; i < h->n_names; i++) {
        hname_t *a = &h->names[i];
        if (node_actor_adopt(h->n, a->id, a->key, a->at, a->methods, a->mlen) == 0)
            restored++;
    }
    if (restored)
        luray_log(LURAY_LOG_INFO, "head", "restored %u named detached actor(s) from %s", restored,
                  path);
}

/* ---- placement groups ---- */

static void pg_tell(head_t *h, hpg_t *g, uint32_t status, const char *msg)
{
    node_t *n = h->n;
    if (g->asker == n->node_id) {
        node_pg_result(n, g->id, status, msg);
        return;
    }
    proc_t *p = node_peer(n, g->asker, true);
    if (!p)
        return;
    luray_buf_t *b = node_msg_begin(n, p, LURAY_MSG_PGREQ);
    luray_proto_put_id(b, g->id);
    luray_buf_put_u32(b, status);
    luray_buf_put_str(b, msg, strlen(msg));
    node_msg_end(p);
}

static void bundle_send(head_t *h, hpg_t *g, uint32_t i, uint8_t op)
{
    node_t *n = h->n;
    hbundle_t *bd = &g->bundles[i];
    if (bd->node == n->node_id) {
        if (op == 1) {
            node_bundle_apply(n, g->id, (int32_t)i, op, bd->n_res, (const char *const *)bd->names,
                              bd->amounts);
            bd->acked = true;
        } else {
            node_bundle_apply(n, g->id, (int32_t)i, op, 0, NULL, NULL);
        }
        return;
    }
    proc_t *p = node_peer(n, bd->node, true);
    if (!p)
        return;
    luray_buf_t *b = node_msg_begin(n, p, LURAY_MSG_BUNDLE);
    luray_buf_put_u8(b, op);
    luray_proto_put_id(b, g->id);
    luray_buf_put_u32(b, i);
    luray_buf_put_u32(b, op == 1 ? bd->n_res : 0);
    for (uint32_t k = 0; op == 1 && k < bd->n_res; k++) {
        luray_buf_put_str(b, bd->names[k], strlen(bd->names[k]));
        luray_buf_put_u64(b, (uint64_t)bd->amounts[k]);
    }
    node_msg_end(p);
}

static bool bundle_fits(const hnode_t *x, const hbundle_t *bd, const int64_t *pool)
{
    uint32_t lens[LURAY_RES_MAX];
    for (uint32_t k = 0; k < bd->n_res; k++)
        lens[k] = (uint32_t)strlen(bd->names[k]);
    return x->alive && fits_in(x, bd->n_res, (const char *const *)bd->names, lens, bd->amounts,
                               pool);
}

static void bundle_take(head_t *h, hnode_t *x, hbundle_t *bd, int64_t *pool)
{
    for (uint32_t k = 0; k < bd->n_res; k++) {
        int i = res_at(x, bd->names[k], (uint32_t)strlen(bd->names[k]));
        if (i >= 0)
            pool[i] -= bd->amounts[k];
    }
}

/* Chooses nodes for every unplaced bundle on a scratch copy of the free resources; commits
 * only when all of them fit. */
static bool pg_choose(head_t *h, hpg_t *g, uint32_t *choice)
{
    uint32_t nn = h->n_nodes;
    int64_t(*pool)[NODE_MAX_RES] = calloc(nn ? nn : 1, sizeof(*pool));
    bool *used = calloc(nn ? nn : 1, sizeof(bool));
    bool ok = pool && used;
    for (uint32_t j = 0; ok && j < nn; j++)
        memcpy(pool[j], h->nodes[j]->avail, sizeof(pool[j]));
    for (uint32_t i = 0; ok && i < g->n_bundles; i++) {
        choice[i] = g->bundles[i].node;
        if (choice[i])
            for (uint32_t j = 0; j < nn; j++)
                if (h->nodes[j]->id == choice[i])
                    used[j] = true;
    }
    for (uint32_t i = 0; ok && i < g->n_bundles; i++) {
        if (choice[i])
            continue;
        hbundle_t *bd = &g->bundles[i];
        int pick = -1;
        bool pack = g->strategy == PG_PACK || g->strategy == PG_STRICT_PACK;
        /* PACK prefers a node already used; SPREAD one not used yet. */
        for (uint32_t j = 0; j < nn && pick < 0; j++)
            if (used[j] == pack && bundle_fits(h->nodes[j], bd, pool[j]))
                pick = (int)j;
        bool strict_pack_first = g->strategy == PG_STRICT_PACK && i == 0;
        bool any_used = false;
        for (uint32_t j = 0; j < nn; j++)
            any_used |= used[j];
        if (pick < 0 && (g->strategy == PG_PACK || g->strategy == PG_SPREAD ||
                         (strict_pack_first && !any_used)))
            for (uint32_t j = 0; j < nn && pick < 0; j++)
                if (bundle_fits(h->nodes[j], bd, pool[j]))
                    pick = (int)j;
        if (pick < 0) {
            ok = false;
            break;
        }
        used[pick] = true;
        bundle_take(h, h->nodes[pick], bd, pool[pick]);
        choice[i] = h->nodes[pick]->id;
    }
    free(pool);
    free(used);
    return ok;
}

static bool pg_never(head_t *h, hpg_t *g, char *why, size_t whylen)
{
    for (uint32_t i = 0; i < g->n_bundles; i++) {
        bool some = false;
        for (uint32_t j = 0; j < h->n_nodes && !some; j++)
            some = bundle_fits(h->nodes[j], &g->bundles[i], h->nodes[j]->total);
        if (!some) {
            snprintf(why, whylen, "bundle %u can never be placed: no node has all its resources",
                     i + 1);
            return true;
        }
    }
    return false;
}

static void pg_free(hpg_t *g)
{
    for (uint32_t i = 0; i < g->n_bundles; i++)
        for (uint32_t k = 0; k < g->bundles[i].n_res; k++)
            free(g->bundles[i].names[k]);
    free(g->bundles);
    free(g);
}

static void pg_remove_at(head_t *h, uint32_t idx)
{
    hpg_t *g = h->pgs[idx];
    for (uint32_t i = 0; i < g->n_bundles; i++)
        if (g->bundles[i].node)
            bundle_send(h, g, i, 2);
    h->pgs[idx] = h->pgs[--h->n_pgs];
    pg_free(g);
}

static void pg_try(head_t *h, hpg_t *g)
{
    if (g->state == PG_CREATED) {
        bool all = true;
        for (uint32_t i = 0; i < g->n_bundles; i++)
            all &= g->bundles[i].node != 0;
        if (all)
            return;
        g->state = PG_PENDING;
    }
    if (g->state == PG_RESERVING) {
        bool all = true;
        for (uint32_t i = 0; i < g->n_bundles; i++)
            all &= g->bundles[i].acked;
        if (all) {
            g->state = PG_CREATED;
            pg_tell(h, g, 0, "");
        }
        return;
    }
    sync_self(h);
    uint32_t *choice = calloc(g->n_bundles, sizeof(uint32_t));
    if (!choice)
        return;
    if (pg_choose(h, g, choice)) {
        for (uint32_t i = 0; i < g->n_bundles; i++) {
            if (g->bundles[i].node)
                continue;
            g->bundles[i].node = choice[i];
            g->bundles[i].acked = false;
            hnode_t *x = hnode(h, choice[i]);
            if (x && x->id != h->n->node_id)
                bundle_take(h, x, &g->bundles[i], x->avail);
            bundle_send(h, g, i, 1);
        }
        g->state = PG_RESERVING;
        free(choice);
        pg_try(h, g);
        return;
    }
    free(choice);
    char why[300];
    if (pg_never(h, g, why, sizeof(why))) {
        pg_tell(h, g, (uint32_t)LURAY_EINVAL, why);
        for (uint32_t i = 0; i < h->n_pgs; i++)
            if (h->pgs[i] == g) {
                pg_remove_at(h, i);
                break;
            }
        return;
    }
    if (!g->warned) {
        g->warned = true;
        luray_log(LURAY_LOG_WARN, "head",
                  "a placement group of %u bundle(s) waits: the cluster has no room for it now",
                  g->n_bundles);
    }
}

static void pg_try_all(head_t *h)
{
    for (uint32_t i = 0; i < h->n_pgs; i++) {
        uint32_t before = h->n_pgs;
        pg_try(h, h->pgs[i]);
        if (h->n_pgs < before)
            i--; /* removed: another one moved into slot i */
    }
}

static void pg_node_lost(head_t *h, uint32_t id)
{
    for (uint32_t i = 0; i < h->n_pgs; i++) {
        hpg_t *g = h->pgs[i];
        for (uint32_t k = 0; k < g->n_bundles; k++)
            if (g->bundles[k].node == id) {
                g->bundles[k].node = 0;
                g->bundles[k].acked = false;
            }
    }
}

enum { PGOP_CREATE = 1, PGOP_REMOVE = 2 };

int pg_bundle_read(luray_rd_t *r, uint32_t *n_res, char **names, int64_t *amounts)
{
    uint32_t nr = luray_rd_u32(r);
    *n_res = 0;
    if (nr > LURAY_RES_MAX)
        r->err = LURAY_EPROTO;
    for (uint32_t k = 0; k < nr && !r->err; k++) {
        size_t len = 0;
        const char *s = luray_rd_str(r, &len);
        int64_t amount = (int64_t)luray_rd_u64(r);
        if (r->err || len == 0 || len > 200 || amount < 0) {
            r->err = LURAY_EPROTO;
            break;
        }
        names[k] = strndup(s, len);
        amounts[k] = amount;
        *n_res = k + 1;
    }
    return r->err;
}

void head_pg_request(head_t *h, uint32_t asker, uint64_t tag, luray_rd_t *r)
{
    node_t *n = h->n;
    uint8_t op = luray_rd_u8(r);
    luray_oid_t id = luray_proto_rd_id(r);
    if (r->err)
        return node_count_bad(n, "placement group request");
    if (op == PGOP_REMOVE) {
        for (uint32_t i = 0; i < h->n_pgs; i++)
            if (luray_oid_eq(h->pgs[i]->id, id)) {
                pg_remove_at(h, i);
                break;
            }
        return;
    }
    uint8_t strategy = luray_rd_u8(r);
    uint32_t nb = luray_rd_u32(r);
    if (r->err || op != PGOP_CREATE || strategy > PG_STRICT_SPREAD || nb == 0 ||
        nb > PG_MAX_BUNDLES || pg_find(h, id))
        return node_count_bad(n, "placement group request");
    hpg_t *g = calloc(1, sizeof(*g));
    if (!g || !(g->bundles = calloc(nb, sizeof(hbundle_t)))) {
        free(g);
        return;
    }
    g->id = id;
    g->strategy = strategy;
    g->asker = asker;
    g->n_bundles = nb;
    for (uint32_t i = 0; i < nb && !r->err; i++)
        pg_bundle_read(r, &g->bundles[i].n_res, g->bundles[i].names, g->bundles[i].amounts);
    if (r->err) {
        pg_free(g);
        return node_count_bad(n, "placement group bundles");
    }
    if (h->n_pgs == h->cap_pgs) {
        uint32_t cap = h->cap_pgs ? h->cap_pgs * 2 : 8;
        hpg_t **v = realloc(h->pgs, cap * sizeof(*v));
        if (!v) {
            pg_free(g);
            return;
        }
        h->pgs = v;
        h->cap_pgs = cap;
    }
    h->pgs[h->n_pgs++] = g;
    (void)tag;
    pg_try(h, g);
}

void head_bundle_ack(head_t *h, uint32_t from, luray_rd_t *r)
{
    luray_oid_t id = luray_proto_rd_id(r);
    uint32_t index = luray_rd_u32(r);
    if (r->err)
        return node_count_bad(h->n, "BUNDLE ack");
    hpg_t *g = pg_find(h, id);
    if (!g || index >= g->n_bundles || g->bundles[index].node != from)
        return;
    g->bundles[index].acked = true;
    pg_try(h, g);
}

/* ---- info ---- */

static void add_res(cJSON *obj, const hnode_t *x, const int64_t *v)
{
    for (int i = 0; i < x->n_res; i++) {
        bool bytes = strcmp(x->names[i], "memory") == 0 ||
                     strcmp(x->names[i], "object_store_memory") == 0;
        cJSON_AddNumberToObject(obj, x->names[i],
                                bytes ? (double)v[i] : (double)v[i] / LURAY_RES_UNIT);
    }
}

static void sum_res(cJSON *obj, const hnode_t *x, const int64_t *v)
{
    for (int i = 0; i < x->n_res; i++) {
        bool bytes = strcmp(x->names[i], "memory") == 0 ||
                     strcmp(x->names[i], "object_store_memory") == 0;
        double add = bytes ? (double)v[i] : (double)v[i] / LURAY_RES_UNIT;
        cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, x->names[i]);
        if (it)
            cJSON_SetNumberValue(it, it->valuedouble + add);
        else
            cJSON_AddNumberToObject(obj, x->names[i], add);
    }
}

char *head_info_json(head_t *h)
{
    sync_self(h);
    cJSON *root = cJSON_CreateObject();
    cJSON *nodes = cJSON_AddArrayToObject(root, "nodes");
    cJSON *res = cJSON_AddObjectToObject(root, "resources");
    cJSON *avail = cJSON_AddObjectToObject(root, "available");
    uint64_t sum[NODE_BEAT_STATS] = {0};
    uint32_t alive = 0;
    for (uint32_t i = 0; i < h->n_nodes; i++) {
        hnode_t *x = h->nodes[i];
        cJSON *e = cJSON_CreateObject();
        char id[16];
        snprintf(id, sizeof(id), "%08x", x->id);
        cJSON_AddStringToObject(e, "node_id", id);
        cJSON_AddStringToObject(e, "address",
                                strncmp(x->addr, "tcp://", 6) == 0 ? x->addr + 6 : x->addr);
        cJSON_AddBoolToObject(e, "alive", x->alive);
        cJSON_AddBoolToObject(e, "is_head", x->id == h->n->node_id);
        add_res(cJSON_AddObjectToObject(e, "resources"), x, x->total);
        add_res(cJSON_AddObjectToObject(e, "available"), x, x->avail);
        cJSON_AddNumberToObject(e, "running_tasks", (double)x->stats[STAT_RUNNING]);
        cJSON_AddNumberToObject(e, "object_store_used", (double)x->stats[STAT_STORE_USED]);
        if (!x->alive && x->death)
            cJSON_AddStringToObject(e, "death", x->death);
        cJSON_AddItemToArray(nodes, e);
        if (!x->alive)
            continue;
        alive++;
        sum_res(res, x, x->total);
        sum_res(avail, x, x->avail);
        for (int k = 0; k < NODE_BEAT_STATS; k++)
            sum[k] += x->stats[k];
    }
    cJSON *store = cJSON_AddObjectToObject(root, "object_store");
    cJSON_AddNumberToObject(store, "capacity", (double)sum[STAT_STORE_CAP]);
    cJSON_AddNumberToObject(store, "used", (double)sum[STAT_STORE_USED]);
    cJSON_AddNumberToObject(store, "spilled_objects", (double)sum[STAT_SPILLED]);
    cJSON_AddNumberToObject(root, "objects", (double)sum[STAT_OBJECTS]);
    cJSON_AddNumberToObject(root, "running_tasks", (double)sum[STAT_RUNNING]);
    cJSON_AddNumberToObject(root, "queued_tasks", (double)sum[STAT_QUEUED]);
    cJSON_AddNumberToObject(root, "pending_tasks", (double)sum[STAT_PENDING]);
    cJSON_AddNumberToObject(root, "finished_tasks", (double)sum[STAT_FINISHED]);
    cJSON_AddNumberToObject(root, "actors", (double)sum[STAT_ACTORS]);
    cJSON_AddNumberToObject(root, "workers", (double)sum[STAT_WORKERS]);
    cJSON_AddNumberToObject(root, "drivers", (double)sum[STAT_DRIVERS]);
    cJSON_AddNumberToObject(root, "dropped_messages", (double)sum[STAT_DROPPED]);
    cJSON_AddNumberToObject(root, "alive_nodes", alive);
    cJSON_AddNumberToObject(root, "placement_groups", h->n_pgs);
    cJSON_AddNumberToObject(root, "scheduling_decisions", (double)h->decisions);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

static void on_inforeq(head_t *h, proc_t *p, luray_rd_t *r)
{
    uint64_t tag = luray_rd_u64(r);
    if (r->err)
        return node_count_bad(h->n, "INFOREQ");
    char *s = head_info_json(h);
    node_reply(h->n, p, tag, 0, s ? s : "{}", s ? strlen(s) : 2);
    free(s);
}

/* ---- the control port ---- */

static cJSON *on_ctl(void *ctx, const cJSON *req, luray_ctl_bytes_t *bytes)
{
    head_t *h = ctx;
    cJSON *reply = h->jobs ? luray_jobs_handle(h->jobs, req, bytes) : NULL;
    if (reply)
        return reply;
    const char *op = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req, "op"));
    if (op && strcmp(op, "status") == 0) {
        char *s = head_info_json(h);
        reply = s ? cJSON_Parse(s) : NULL;
        free(s);
        if (reply)
            cJSON_AddBoolToObject(reply, "ok", 1);
        return reply ? reply : luray_ctl_error("cannot build the cluster status");
    }
    return luray_ctl_error("unknown operation \"%s\"", op ? op : "");
}

/* Jobs and the control port (tcp port + 1) of a head started with a state folder. */
static int open_ctl(head_t *h, char *err, size_t errlen)
{
    node_t *n = h->n;
    const luray_node_opts_t *o = n->opts;
    if (!o->state_dir || !o->token_file)
        return 0;
    const char *host = o->host ? o->host : "127.0.0.1";
    char driver_addr[300], ctl_addr[300];
    snprintf(driver_addr, sizeof(driver_addr), "%s:%d", host, n->port);
    snprintf(ctl_addr, sizeof(ctl_addr), "tcp://%s:%d", host, n->port + LURAY_CTL_PORT_OFFSET);
    luray_jobs_opts_t jo = {.state_dir = o->state_dir, .exe = o->exe,
                            .driver_address = driver_addr, .token_file = o->token_file};
    uint8_t key[LURAY_KEY_BYTES];
    int rc = luray_key_load(o->token_file, key, err, errlen);
    if (rc == 0)
        rc = luray_jobs_open(n->loop, &jo, &h->jobs, err, errlen);
    if (rc == 0)
        rc = luray_ctl_server_start(n->loop, ctl_addr, key, on_ctl, h, &h->ctl, err, errlen);
    sodium_memzero(key, sizeof(key));
    return rc;
}

/* ---- dispatch, open, close ---- */

bool head_handle(head_t *h, proc_t *p, uint16_t type, luray_rd_t *r)
{
    hnode_t *x = hnode(h, p->peer_node);
    bool member = x && x->alive;
    if (!member && type != LURAY_MSG_NREG && type != LURAY_MSG_BEAT && type >= LURAY_MSG_NREG &&
        type != LURAY_MSG_NREG_OK) {
        node_count_bad(h->n, "directory message from a node that is not registered");
        return true;
    }
    switch (type) {
    case LURAY_MSG_NREG:
        on_nreg(h, p, r);
        return true;
    case LURAY_MSG_BEAT:
        on_beat(h, p, r);
        return true;
    case LURAY_MSG_WHOIS:
        on_whois(h, p, r);
        return true;
    case LURAY_MSG_PLACE:
        on_place(h, p, r);
        return true;
    case LURAY_MSG_INFOREQ:
        on_inforeq(h, p, r);
        return true;
    case LURAY_MSG_NAME:
        on_name(h, p, r);
        return true;
    case LURAY_MSG_PGREQ: {
        uint64_t tag = luray_rd_u64(r);
        head_pg_request(h, p->peer_node, tag, r);
        return true;
    }
    case LURAY_MSG_BUNDLE:
        head_bundle_ack(h, p->peer_node, r);
        return true;
    default:
        return false;
    }
}

int head_open(node_t *n, char *err, size_t errlen)
{
    head_t *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return LURAY_ENOMEM;
    }
    h->n = n;
    luray_oidmap_init(&h->by_id);
    const char *t = getenv("LURAY_NODE_TIMEOUT_MS");
    h->timeout_ms = t && atoll(t) > 0 ? (uint64_t)atoll(t) : NODE_TIMEOUT_MS_DEFAULT;
    hnode_t *me = hnode_add(h, n->node_id);
    if (!me) {
        free(h);
        snprintf(err, errlen, "out of memory");
        return LURAY_ENOMEM;
    }
    snprintf(me->addr, sizeof(me->addr), "%s", n->address);
    me->pid = (uint32_t)getpid();
    n->dir = h;
    sync_self(h);
    if (n->opts->state_dir) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/directory.jsonl", n->opts->state_dir);
        load_log(h, path);
        h->log = fopen(path, "a");
        if (!h->log)
            luray_log(LURAY_LOG_WARN, "head", "cannot write %s: %s; named detached actors will "
                      "not survive a restart of the head", path, strerror(errno));
    }
    uv_timer_init(n->loop, &h->check);
    h->check.data = h;
    uv_timer_start(&h->check, on_check, CHECK_MS, CHECK_MS);
    return open_ctl(h, err, errlen);
}

/* Before the loop closes: the control port and the jobs stop (they free themselves in close
 * callbacks, so the loop runs once more after this). */
void head_stop(head_t *h)
{
    if (!h)
        return;
    luray_ctl_server_stop(h->ctl);
    h->ctl = NULL;
    luray_jobs_close(h->jobs);
    h->jobs = NULL;
}

void head_close(head_t *h)
{
    if (!h)
        return;
    for (uint32_t i = 0; i < h->n_nodes; i++) {
        hnode_t *x = h->nodes[i];
        for (int k = 0; k < x->n_res; k++)
            free(x->names[k]);
        free(x->death);
        free(x);
    }
    free(h->nodes);
    luray_oidmap_close(&h->by_id);
    for (uint32_t i = 0; i < h->n_names; i++) {
        free(h->names[i].key);
        free(h->names[i].methods);
    }
    free(h->names);
    for (uint32_t i = 0; i < h->n_pgs; i++)
        pg_free(h->pgs[i]);
    free(h->pgs);
    if (h->log)
        fclose(h->log);
    /* A cluster stopped in order is over: only a head that crashed comes back with its log. */
    if (h->n->stopping && h->n->opts->state_dir) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/directory.jsonl", h->n->opts->state_dir);
        unlink(path);
    }
    free(h);
}
