/* The node's side of the cluster: the tcp socket other nodes send to, frames sealed with the
 * cluster key, peer nodes as processes of this node, registration with the head, heartbeats,
 * and the death of a peer node. */
#include "node_cluster.h"

#include <errno.h>
#include <malloc.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nanomsg/nn.h>
#include <nanomsg/pipeline.h>
#include <sodium.h>

#include "errors_str.h"
#include "log.h"
#include "luray/errors.h"
#include "node_beat.h"
#include "node_head.h"
#include "node_internal.h"
#include "node_remote.h"
#include "session.h"

#define BEAT_MS_DEFAULT 1000
#define FIRST_NODE_PORT_OFFSET 2 /* joining nodes try head port + 2, + 3, ... */

static uint64_t env_ms(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    long long x = v ? atoll(v) : 0;
    return x > 0 ? (uint64_t)x : dflt;
}

/* ---- peers ---- */

static luray_oid_t peer_key(uint32_t id) { return (luray_oid_t){id, 0, 0}; }

bool node_is_dead(node_t *n, uint32_t id)
{
    for (uint32_t i = 0; i < n->n_dead; i++)
        if (n->dead[i] == id)
            return true;
    return false;
}

static void ask_whois(node_t *n, proc_t *p)
{
    if (p->peer_asked || !n->head || p == n->head)
        return;
    p->peer_asked = true;
    luray_buf_t *b = node_msg_begin(n, n->head, LURAY_MSG_WHOIS);
    luray_buf_put_u32(b, p->peer_node);
    node_msg_end(n->head);
}

proc_t *node_peer(node_t *n, uint32_t node_id, bool create)
{
    if (!n->cluster || node_id == 0 || node_id == n->node_id)
        return NULL;
    proc_t *p = luray_oidmap_get(&n->peers, peer_key(node_id));
    if (p || !create || node_is_dead(n, node_id))
        return p;
    p = node_proc_new(n, LURAY_PROC_PEER);
    if (!p)
        return NULL;
    p->peer_node = node_id;
    if (luray_oidmap_put(&n->peers, peer_key(node_id), p) != 0)
        return NULL;
    if (n->dir) {
        const char *addr = head_node_addr(n->dir, node_id);
        if (addr)
            node_peer_set_addr(n, p, addr);
    } else {
        ask_whois(n, p);
    }
    return p;
}

static void dchan_close(node_t *n, proc_t *p);

/* Sockets to peers are opened on demand and the idlest closed past the cap: nanomsg gives a
 * process 512 sockets, and a head talks to every node. */
static uint32_t max_peer_socks(void)
{
    const char *v = getenv("LURAY_MAX_PEER_SOCKETS");
    long x = v ? atol(v) : 0;
    return x >= 2 && x <= 480 ? (uint32_t)x : 400;
}

/* Idle: nothing queued and nothing sent for a second (nanomsg may still hold the last message
 * in its pipe for a moment after it took it). */
static bool peer_idle(node_t *n, proc_t *p)
{
    return p->sock >= 0 && p != n->head && !p->dirty && luray_frame_empty(&p->out) &&
           p->sealed_head == p->n_sealed && !p->send_poll_on && !p->data &&
           uv_now(n->loop) - p->last_sent > 1000;
}

static bool evict_one(node_t *n)
{
    proc_t *victim = NULL;
    for (size_t i = 0; i < n->peers.cap; i++) {
        proc_t *p = n->peers.slots[i].val;
        if (p && peer_idle(n, p) && (!victim || p->last_sent < victim->last_sent))
            victim = p;
    }
    if (!victim)
        return false;
    node_proc_close_sock(victim);
    n->peer_socks--;
    return true;
}

static void peer_connect(node_t *n, proc_t *p)
{
    if (p->sock >= 0 || p->gone || !p->peer_addr)
        return;
    if (n->peer_socks >= max_peer_socks() && !evict_one(n))
        return; /* every socket is busy: node_peer_retry tries again */
    int s = nn_socket(AF_SP, NN_PUSH);
    if (s < 0) {
        luray_log(LURAY_LOG_WARN, "node", "cannot open a socket to node %08x: %s", p->peer_node,
                  nn_strerror(nn_errno()));
        return;
    }
    int big = 64 * 1024 * 1024, linger = 0;
    nn_setsockopt(s, NN_SOL_SOCKET, NN_SNDBUF, &big, sizeof(big));
    nn_setsockopt(s, NN_SOL_SOCKET, NN_LINGER, &linger, sizeof(linger));
    if (nn_connect(s, p->peer_addr) < 0) {
        luray_log(LURAY_LOG_WARN, "node", "cannot connect to node %08x at %s: %s", p->peer_node,
                  p->peer_addr, nn_strerror(nn_errno()));
        nn_close(s);
        return;
    }
    p->sock = s;
    n->peer_socks++;
    node_mark_dirty(n, p);
}

void node_peer_set_addr(node_t *n, proc_t *p, const char *addr)
{
    /* A node keeps its address for as long as it lives: a node id seen again from another
     * address is refused by the head. */
    if (p->gone)
        return;
    if (!p->peer_addr) {
        p->peer_addr = strdup(addr);
        if (!p->peer_addr)
            return;
    }
    peer_connect(n, p);
}

static int queue_sealed(proc_t *p, void *msg)
{
    if (p->n_sealed == p->cap_sealed) {
        if (p->sealed_head) {
            memmove(p->sealed, p->sealed + p->sealed_head,
                    (p->n_sealed - p->sealed_head) * sizeof(void *));
            p->n_sealed -= p->sealed_head;
            p->sealed_head = 0;
        } else {
            uint32_t cap = p->cap_sealed ? p->cap_sealed * 2 : 16;
            void **v = realloc(p->sealed, cap * sizeof(void *));
            if (!v)
                return LURAY_ENOMEM;
            p->sealed = v;
            p->cap_sealed = cap;
        }
    }
    p->sealed[p->n_sealed++] = msg;
    return 0;
}

/* Sends sealed messages in order until the socket is full; true when all went. */
static bool drain_sealed(node_t *n, proc_t *p)
{
    while (p->sealed_head < p->n_sealed) {
        if (p->sock < 0)
            return false;
        void *m = p->sealed[p->sealed_head];
        if (nn_send(p->sock, &m, NN_MSG, NN_DONTWAIT) < 0) {
            int e = nn_errno();
            if (e == EAGAIN) {
                node_wait_writable(n, p);
                return false;
            }
            luray_log(LURAY_LOG_WARN, "node", "send to node %08x failed: %s", p->peer_node,
                      nn_strerror(e));
            nn_freemsg(m);
        }
        p->sealed_head++;
    }
    p->n_sealed = p->sealed_head = 0;
    node_stop_waiting_writable(p);
    return true;
}

void node_peer_send_sealed(node_t *n, proc_t *p, void *msg, size_t flen)
{
    luray_auth_seal(&n->auth, (uint8_t *)msg + LURAY_AUTH_HEADER, flen, msg);
    if (queue_sealed(p, msg) != 0) {
        nn_freemsg(msg);
        return;
    }
    drain_sealed(n, p);
}

/* Seals the pending frame into a nanomsg message and hands it over without another copy. */
void node_peer_flush(node_t *n, proc_t *p)
{
    if (p->sock < 0)
        peer_connect(n, p);
    if (p->sock < 0)
        return; /* no address yet, or no socket free: the frame waits */
    p->last_sent = uv_now(n->loop);
    if (!luray_frame_empty(&p->out)) {
        size_t len = p->out.buf.len;
        void *msg = nn_allocmsg(len + LURAY_AUTH_OVERHEAD, 0);
        if (!msg) {
            luray_log(LURAY_LOG_ERROR, "node", "out of memory sending %zu bytes to node %08x",
                      len, p->peer_node);
            luray_frame_reset(&p->out);
            return;
        }
        memcpy((uint8_t *)msg + LURAY_AUTH_HEADER, p->out.buf.data, len);
        luray_frame_reset(&p->out);
        luray_auth_seal(&n->auth, (uint8_t *)msg + LURAY_AUTH_HEADER, len, msg);
        if (queue_sealed(p, msg) != 0) {
            nn_freemsg(msg);
            return;
        }
    }
    drain_sealed(n, p);
}

struct dchan {
    proc_t *p;
    int sock;
    void **msgs;
    uint32_t n_msgs, cap, head;
    uv_poll_t poll;
    bool poll_init, poll_on;
};

static void dchan_drain(dchan_t *d);

static void on_dchan_writable(uv_poll_t *h, int status, int events)
{
    dchan_drain(h->data);
}

static void dchan_drain(dchan_t *d)
{
    while (d->head < d->n_msgs) {
        void *m = d->msgs[d->head];
        if (nn_send(d->sock, &m, NN_MSG, NN_DONTWAIT) < 0) {
            int e = nn_errno();
            if (e == EAGAIN) {
                if (!d->poll_on) {
                    uv_poll_start(&d->poll, UV_READABLE, on_dchan_writable);
                    d->poll_on = true;
                }
                return;
            }
            nn_freemsg(m);
        }
        d->head++;
    }
    d->n_msgs = d->head = 0;
    if (d->poll_on) {
        uv_poll_stop(&d->poll);
        d->poll_on = false;
    }
}

/* Data sockets of peers whose transfers are over go back to the pool; frames that waited for a
 * socket try again. */
void node_peer_close_idle_data(node_t *n)
{
    for (size_t i = 0; i < n->peers.cap; i++) {
        proc_t *p = n->peers.slots[i].val;
        if (p && p->sock < 0 && !p->gone && p->peer_addr &&
            (!luray_frame_empty(&p->out) || p->sealed_head < p->n_sealed))
            node_mark_dirty(n, p);
    }
    uint64_t now = uv_now(n->loop);
    for (size_t i = 0; i < n->peers.cap; i++) {
        proc_t *p = n->peers.slots[i].val;
        if (p && p->data && p->data->head == p->data->n_msgs && now - p->last_sent > 5000)
            dchan_close(n, p);
    }
}

static dchan_t *dchan_open(node_t *n, proc_t *p)
{
    if (n->peer_socks >= max_peer_socks() && !evict_one(n))
        return NULL; /* chunks go on the ordered connection */
    dchan_t *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->p = p;
    d->sock = nn_socket(AF_SP, NN_PUSH);
    int big = 64 * 1024 * 1024, linger = 0, fd = -1;
    size_t sz = sizeof(fd);
    bool ok = d->sock >= 0;
    if (ok) {
        nn_setsockopt(d->sock, NN_SOL_SOCKET, NN_SNDBUF, &big, sizeof(big));
        nn_setsockopt(d->sock, NN_SOL_SOCKET, NN_LINGER, &linger, sizeof(linger));
        for (int i = 0; i < NODE_DATA_CONNS && ok; i++)
            ok = nn_connect(d->sock, p->peer_addr) >= 0;
        ok = ok && nn_getsockopt(d->sock, NN_SOL_SOCKET, NN_SNDFD, &fd, &sz) == 0;
    }
    if (!ok) {
        if (d->sock >= 0)
            nn_close(d->sock);
        free(d);
        return NULL;
    }
    uv_poll_init(n->loop, &d->poll, fd);
    d->poll.data = d;
    d->poll_init = true;
    n->peer_socks++;
    return d;
}

static void on_dchan_closed(uv_handle_t *h) { free(h->data); }

static void dchan_close(node_t *n, proc_t *p)
{
    dchan_t *d = p->data;
    if (!d)
        return;
    p->data = NULL;
    if (n && n->peer_socks)
        n->peer_socks--;
    for (uint32_t i = d->head; i < d->n_msgs; i++)
        nn_freemsg(d->msgs[i]);
    free(d->msgs);
    d->msgs = NULL;
    d->n_msgs = d->head = 0;
    nn_close(d->sock);
    if (uv_is_closing((uv_handle_t *)&d->poll)) {
        free(d); /* the node is ending: its loop closed every handle already */
        return;
    }
    uv_close((uv_handle_t *)&d->poll, on_dchan_closed);
}

void node_peer_send_data(node_t *n, proc_t *p, void *msg, size_t flen)
{
    if (!p->data && p->peer_addr && !p->gone)
        p->data = dchan_open(n, p);
    dchan_t *d = p->data;
    if (!d)
        return node_peer_send_sealed(n, p, msg, flen);
    luray_auth_seal(&n->auth, (uint8_t *)msg + LURAY_AUTH_HEADER, flen, msg);
    p->last_sent = uv_now(n->loop);
    if (d->n_msgs == d->cap) {
        uint32_t cap = d->cap ? d->cap * 2 : 8;
        void **v = realloc(d->msgs, cap * sizeof(void *));
        if (!v) {
            nn_freemsg(msg);
            return;
        }
        d->msgs = v;
        d->cap = cap;
    }
    d->msgs[d->n_msgs++] = msg;
    dchan_drain(d);
}

void node_peer_free_sealed(proc_t *p)
{
    dchan_close(p->node, p);
    for (uint32_t i = p->sealed_head; i < p->n_sealed; i++)
        nn_freemsg(p->sealed[i]);
    free(p->sealed);
    p->sealed = NULL;
    p->n_sealed = p->cap_sealed = p->sealed_head = 0;
}

/* ---- receiving ---- */

static bool peer_may_send(const proc_t *p, uint16_t type)
{
    switch (type) {
    case LURAY_MSG_SUBMIT:
    case LURAY_MSG_DONE:
    case LURAY_MSG_REFS:
    case LURAY_MSG_CANCEL:
    case LURAY_MSG_KILL:
    case LURAY_MSG_REPLY:
        return true;
    default:
        return type >= LURAY_MSG_NREG && type < LURAY_MSG_TYPE_MAX;
    }
}

static void handle_sealed(node_t *n, const uint8_t *data, size_t len)
{
    const uint8_t *frame;
    size_t flen;
    uint32_t sender;
    if (luray_auth_open(&n->auth, data, len, &frame, &flen, &sender) != 0) {
        if ((n->auth.rejected & (n->auth.rejected - 1)) == 0) /* 1, 2, 4, 8, ... */
            luray_log(LURAY_LOG_WARN, "node",
                      "dropped a message that failed authentication (%llu so far): a node with "
                      "another cluster key, or bytes that are not luray's",
                      (unsigned long long)n->auth.rejected);
        n->dropped_frames++;
        return;
    }
    if (luray_frame_check(frame, flen) != 0 || sender == n->node_id) {
        node_count_bad(n, "frame from a peer node");
        return;
    }
    if (node_is_dead(n, sender)) {
        /* A node declared dead stays dead: it must register again under a new id. */
        if (n->dir)
            head_tell_dead(n->dir, sender);
        return;
    }
    proc_t *p = node_peer(n, sender, true);
    if (!p)
        return;
    size_t pos = 0;
    luray_msg_t m;
    while (luray_frame_next(frame, flen, &pos, &m) == 1) {
        if (p->gone)
            break;
        if (!peer_may_send(p, m.type)) {
            node_count_bad(n, "message type from a peer node");
            continue;
        }
        if (m.type >= LURAY_MSG_NREG || m.type == LURAY_MSG_REPLY)
            node_cluster_msg(n, p, &m);
        else
            node_handle_msg(n, p, &m);
    }
}

void node_cluster_drain(node_t *n)
{
    for (int i = 0; i < 4096; i++) {
        void *msg = NULL;
        int len = nn_recv(n->tcp_inbox, &msg, NN_MSG, NN_DONTWAIT);
        if (len < 0)
            break;
        handle_sealed(n, msg, (size_t)len);
        nn_freemsg(msg);
    }
}

static void on_tcp_inbox(uv_poll_t *h, int status, int events)
{
    node_t *n = h->data;
    for (int i = 0; i < 64; i++) {
        void *msg = NULL;
        int len = nn_recv(n->tcp_inbox, &msg, NN_MSG, NN_DONTWAIT);
        if (len < 0)
            break;
        handle_sealed(n, msg, (size_t)len);
        nn_freemsg(msg);
    }
    node_schedule(n);
    node_flush_all(n);
}

/* ---- registration and heartbeats (a node that joined) ---- */

static void send_nreg(node_t *n)
{
    luray_buf_t *b = node_msg_begin(n, n->head, LURAY_MSG_NREG);
    luray_buf_put_u32(b, n->node_id);
    luray_buf_put_str(b, n->address, strlen(n->address));
    luray_buf_put_u32(b, (uint32_t)getpid());
    luray_buf_put_u32(b, (uint32_t)n->n_res);
    for (int i = 0; i < n->n_res; i++) {
        luray_buf_put_str(b, n->res_names[i], strlen(n->res_names[i]));
        luray_buf_put_u64(b, (uint64_t)n->total[i]);
    }
    node_msg_end(n->head);
}

/* What a heartbeat says besides the free resources: the numbers `luray status` adds up. */
void node_beat_stats(node_t *n, uint64_t stats[NODE_BEAT_STATS])
{
    memset(stats, 0, sizeof(uint64_t) * NODE_BEAT_STATS);
    for (uint32_t i = 0; i < n->n_procs; i++) {
        proc_t *p = n->procs[i];
        if (p->gone)
            continue;
        if (p->kind == LURAY_PROC_DRIVER)
            stats[STAT_DRIVERS]++;
        else if (p->kind == LURAY_PROC_WORKER) {
            stats[STAT_WORKERS]++;
            if (p->task)
                stats[STAT_RUNNING]++;
        }
    }
    for (size_t i = 0; i < n->actors.cap; i++) {
        actor_t *a = n->actors.slots[i].val;
        if (a && a->state != A_DEAD && !a->at)
            stats[STAT_ACTORS]++;
    }
    luray_store_stats_t st;
    luray_store_stats(n->store, &st);
    stats[STAT_QUEUED] = n->ready.len;
    stats[STAT_PENDING] = n->tasks.len;
    stats[STAT_FINISHED] = n->tasks_finished;
    stats[STAT_OBJECTS] = n->objs.len;
    stats[STAT_STORE_CAP] = st.capacity;
    stats[STAT_STORE_USED] = st.used;
    stats[STAT_DROPPED] = n->dropped_frames;
    stats[STAT_SPILLED] = st.n_spilled;
}

/* Hands the heartbeat thread a fresh BEAT frame; it sends the latest one every period. */
static void send_beat(node_t *n)
{
    luray_frame_t f;
    luray_frame_init(&f);
    luray_buf_t *b = luray_frame_begin(&f, LURAY_MSG_BEAT, 0);
    luray_buf_put_u32(b, (uint32_t)n->n_res);
    for (int i = 0; i < n->n_res; i++)
        luray_buf_put_u64(b, (uint64_t)n->avail[i]);
    uint64_t stats[NODE_BEAT_STATS];
    node_beat_stats(n, stats);
    luray_buf_put_u32(b, NODE_BEAT_STATS);
    for (int i = 0; i < NODE_BEAT_STATS; i++)
        luray_buf_put_u64(b, stats[i]);
    /* Our address: a head that restarted and does not know us can ask us to register. */
    luray_buf_put_str(b, n->address, strlen(n->address));
    luray_frame_end(&f);
    if (!f.buf.err)
        node_beat_update(n->beat_thread, f.buf.data, f.buf.len);
    luray_frame_close(&f);
}

static void on_beat(uv_timer_t *t)
{
    node_t *n = t->data;
    if (n->stopping)
        return;
    if (!n->registered) {
        uint64_t waited = uv_now(n->loop) - n->started_ms;
        if (!n->announced && waited > env_ms("LURAY_JOIN_TIMEOUT_MS", 10000)) {
            luray_log(LURAY_LOG_ERROR, "node",
                      "the head at %s did not take this node within %.0f s: is a head running "
                      "there, and is the token file the head's?",
                      n->opts->join, (double)waited / 1000.0);
            n->exit_status = 1;
            node_stop(n);
            return;
        }
        send_nreg(n);
    } else
        send_beat(n);
    node_remote_tick(n);
    node_peer_close_idle_data(n);
    node_flush_all(n);
}

static void on_nreg_ok(node_t *n, proc_t *p, luray_rd_t *r)
{
    uint32_t status = luray_rd_u32(r);
    size_t len = 0;
    const char *why = luray_rd_str(r, &len);
    if (r->err || p != n->head)
        return node_count_bad(n, "NREG_OK");
    if (status != 0) {
        luray_log(LURAY_LOG_ERROR, "node", "the head refused this node: %.*s", (int)len, why);
        node_stop(n);
        return;
    }
    bool first = !n->registered;
    n->registered = true;
    if (first)
        luray_log(LURAY_LOG_INFO, "node", "joined the cluster as node %08x", n->node_id);
    else
        luray_log(LURAY_LOG_INFO, "node", "registered again with the head");
    send_beat(n);
    node_announce_ready(n);
}

static void on_nodeinfo(node_t *n, proc_t *p, luray_rd_t *r)
{
    uint32_t id = luray_rd_u32(r);
    uint8_t alive = luray_rd_u8(r);
    size_t len = 0;
    const char *addr = luray_rd_str(r, &len);
    if (r->err || p != n->head || len > 280)
        return node_count_bad(n, "NODEINFO");
    if (!alive) {
        node_peer_dead(n, id, "the head says the node is not in the cluster");
        return;
    }
    proc_t *peer = node_peer(n, id, false);
    if (!peer)
        return;
    char a[300];
    memcpy(a, addr, len);
    a[len] = 0;
    peer->peer_asked = false;
    node_peer_set_addr(n, peer, a);
}

static void on_nodedead(node_t *n, proc_t *p, luray_rd_t *r)
{
    uint32_t id = luray_rd_u32(r);
    size_t len = 0;
    const char *why = luray_rd_str(r, &len);
    if (r->err || p != n->head)
        return node_count_bad(n, "NODEDEAD");
    char w[300];
    snprintf(w, sizeof(w), "%.*s", (int)(len < 280 ? len : 280), why);
    if (id == n->node_id) {
        luray_log(LURAY_LOG_ERROR, "node", "the head declared this node dead (%s); stopping", w);
        node_stop(n);
        return;
    }
    node_peer_dead(n, id, w);
}

/* The head's answer to a request we made for one of our clients: passed on to it. The tag is
 * the client's proc id (high 24 bits) and its request id (low 40 bits). */
static void on_head_reply(node_t *n, proc_t *p, luray_rd_t *r)
{
    uint64_t tag = luray_rd_u64(r);
    uint32_t status = luray_rd_u32(r);
    size_t len = 0;
    const void *bytes = luray_rd_str(r, &len);
    if (r->err || p != n->head)
        return node_count_bad(n, "REPLY from the head");
    proc_t *c = node_proc(n, (uint32_t)(tag >> 40));
    if (!c || c->gone || c->kind == LURAY_PROC_PEER)
        return;
    node_reply(n, c, tag & ((1ull << 40) - 1), status, bytes, len);
}

uint64_t node_head_tag(proc_t *p, uint64_t req) { return (uint64_t)p->id << 40 | (req & ((1ull << 40) - 1)); }

void node_cluster_msg(node_t *n, proc_t *p, const luray_msg_t *m)
{
    luray_rd_t r;
    luray_rd_init(&r, m->body, m->len);
    if (n->dir && head_handle(n->dir, p, m->type, &r))
        return;
    switch (m->type) {
    case LURAY_MSG_NREG_OK:
        return on_nreg_ok(n, p, &r);
    case LURAY_MSG_REREG:
        if (p == n->head) {
            /* The head restarted: what it ran for us, and what it held, went with it. */
            if (n->registered) {
                node_peer_left(n, p, "the head restarted");
                node_driver_left(n, p);
                node_objects_node_lost(n, NODE_HEAD_ID, "the head restarted");
            }
            n->registered = false;
            node_beat_update(n->beat_thread, NULL, 0);
            send_nreg(n);
        }
        return;
    case LURAY_MSG_NODEINFO:
        return on_nodeinfo(n, p, &r);
    case LURAY_MSG_NODEDEAD:
        return on_nodedead(n, p, &r);
    case LURAY_MSG_REPLY:
        return on_head_reply(n, p, &r);
    case LURAY_MSG_PLACED:
        return node_on_placed(n, p, &r);
    case LURAY_MSG_PULL:
        return node_on_pull(n, p, &r);
    case LURAY_MSG_OBJ:
        return node_on_obj(n, p, &r);
    case LURAY_MSG_CHUNK:
        return node_on_chunk(n, p, &r);
    case LURAY_MSG_NAME:
        return node_on_name_reply(n, p, &r);
    case LURAY_MSG_PGREQ:
        return node_on_pg_reply(n, p, &r);
    case LURAY_MSG_BUNDLE:
        return node_on_bundle(n, p, &r);
    default:
        return node_count_bad(n, "cluster message");
    }
}

/* ---- a peer node died ---- */

void node_peer_dead(node_t *n, uint32_t id, const char *why)
{
    if (!n->cluster || id == n->node_id || node_is_dead(n, id))
        return;
    uint32_t *d = realloc(n->dead, (n->n_dead + 1) * sizeof(*d));
    if (d) {
        n->dead = d;
        n->dead[n->n_dead++] = id;
    }
    luray_auth_forget(&n->auth, id);
    proc_t *p = luray_oidmap_del(&n->peers, peer_key(id));
    char w[400];
    snprintf(w, sizeof(w), "node %08x died: %s", id, why);
    luray_log(LURAY_LOG_WARN, "node", "%s", w);
    if (p)
        node_proc_gone(n, p, w);
    node_remote_node_lost(n, id, w);
}

/* ---- info ---- */

void node_cluster_info(node_t *n, proc_t *p, uint64_t req)
{
    if (n->dir) {
        char *s = head_info_json(n->dir);
        node_reply(n, p, req, 0, s ? s : "{}", s ? strlen(s) : 2);
        free(s);
        return;
    }
    luray_buf_t *b = node_msg_begin(n, n->head, LURAY_MSG_INFOREQ);
    luray_buf_put_u64(b, node_head_tag(p, req));
    node_msg_end(n->head);
}

/* ---- start and stop ---- */

static int bind_tcp(node_t *n, const char *host, int port, char *err, size_t errlen)
{
    char addr[300], adv[256];
    snprintf(addr, sizeof(addr), "tcp://%s:%d", host, port);
    if (nn_bind(n->tcp_inbox, addr) < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr, nn_strerror(nn_errno()));
        return nn_errno() == EADDRINUSE ? LURAY_EEXIST : LURAY_EIO;
    }
    luray_session_advertised_host(host, adv, sizeof(adv));
    snprintf(n->address, sizeof(n->address), "tcp://%s:%d", adv, port);
    n->port = port;
    return 0;
}

static int open_tcp(node_t *n, char *err, size_t errlen)
{
    const luray_node_opts_t *o = n->opts;
    const char *host = o->host ? o->host : "127.0.0.1";
    n->tcp_inbox = nn_socket(AF_SP, NN_PULL);
    if (n->tcp_inbox < 0) {
        snprintf(err, errlen, "cannot make a socket: %s", nn_strerror(nn_errno()));
        return LURAY_EIO;
    }
    /* nanomsg allocates what a frame's length says before anyone checks it: cap it well above
     * any real frame between nodes, so a forged length cannot take the node's memory. */
    int max = 512 * 1024 * 1024, big = 64 * 1024 * 1024;
    nn_setsockopt(n->tcp_inbox, NN_SOL_SOCKET, NN_RCVMAXSIZE, &max, sizeof(max));
    nn_setsockopt(n->tcp_inbox, NN_SOL_SOCKET, NN_RCVBUF, &big, sizeof(big));
    int rc;
    if (o->head || o->port > 0) {
        rc = bind_tcp(n, host, o->port, err, errlen);
    } else {
        const char *colon = strrchr(o->join, ':');
        int base = (colon ? atoi(colon + 1) : 6380) + FIRST_NODE_PORT_OFFSET;
        rc = LURAY_EEXIST;
        for (int port = base; port < base + 200 && port < 65536 && rc == LURAY_EEXIST; port++)
            rc = bind_tcp(n, host, port, err, errlen);
    }
    if (rc)
        return rc;
    int fd;
    size_t sz = sizeof(fd);
    nn_getsockopt(n->tcp_inbox, NN_SOL_SOCKET, NN_RCVFD, &fd, &sz);
    uv_poll_init(n->loop, &n->tcp_poll, fd);
    n->tcp_poll.data = n;
    uv_poll_start(&n->tcp_poll, UV_READABLE, on_tcp_inbox);
    return 0;
}

static int load_key(node_t *n, uint8_t key[LURAY_KEY_BYTES], char *err, size_t errlen)
{
    const char *path = n->opts->token_file;
    if (!path) {
        snprintf(err, errlen, "no cluster token file given (--token-file)");
        return LURAY_EINVAL;
    }
    int rc = luray_key_load(path, key, err, errlen);
    if (rc == LURAY_ENOENT && n->opts->head) {
        rc = luray_key_generate(path, err, errlen);
        if (rc == 0)
            rc = luray_key_load(path, key, err, errlen);
    }
    return rc;
}

uint32_t node_cluster_pick_id(const luray_node_opts_t *o)
{
    if (o->head)
        return NODE_HEAD_ID;
    if (!o->join)
        return o->node_id ? o->node_id : 1;
    uint32_t id;
    if (sodium_init() < 0)
        return (uint32_t)getpid() << 8;
    do
        id = randombytes_random();
    while (id <= 0xff);
    return id;
}

int node_cluster_start(node_t *n, char *err, size_t errlen)
{
    const luray_node_opts_t *o = n->opts;
    luray_oidmap_init(&n->peers);
    n->tcp_inbox = -1;
    if (!o->head && !o->join)
        return 0;
    n->cluster = true;
    /* A head holds a connection (and nanomsg's sockets use descriptors) per node. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* Chunks of objects between nodes are megabytes each: keep such buffers in the heap for
     * reuse instead of mapping (and faulting in, zeroed) fresh pages for every message. */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    uint8_t key[LURAY_KEY_BYTES];
    int rc = load_key(n, key, err, errlen);
    if (rc)
        return rc;
    n->started_ms = uv_now(n->loop);
    rc = luray_auth_init(&n->auth, key, n->node_id);
    sodium_memzero(key, sizeof(key));
    if (rc) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return rc;
    }
    rc = open_tcp(n, err, errlen);
    if (rc)
        return rc;
    if (o->head)
        return head_open(n, err, errlen);
    char addr[300];
    snprintf(addr, sizeof(addr), "tcp://%s", o->join);
    n->head = node_proc_new(n, LURAY_PROC_PEER);
    if (!n->head) {
        snprintf(err, errlen, "out of memory");
        return LURAY_ENOMEM;
    }
    n->head->peer_node = NODE_HEAD_ID;
    luray_oidmap_put(&n->peers, peer_key(NODE_HEAD_ID), n->head);
    node_peer_set_addr(n, n->head, addr);
    if (n->head->sock < 0) {
        snprintf(err, errlen, "cannot reach the head at %s", o->join);
        return LURAY_EIO;
    }
    send_nreg(n);
    uint64_t ms = env_ms("LURAY_HEARTBEAT_MS", BEAT_MS_DEFAULT);
    if (node_beat_start(&n->auth, addr, ms, &n->beat_thread) != 0) {
        snprintf(err, errlen, "cannot start the heartbeat thread");
        return LURAY_EIO;
    }
    uv_timer_init(n->loop, &n->beat);
    n->beat.data = n;
    uv_timer_start(&n->beat, on_beat, ms, ms);
    return 0;
}

void node_cluster_close(node_t *n)
{
    node_beat_stop(n->beat_thread);
    n->beat_thread = NULL;
    if (n->dir)
        head_close(n->dir);
    n->dir = NULL;
    if (n->tcp_inbox >= 0)
        nn_close(n->tcp_inbox);
    n->tcp_inbox = -1;
    luray_oidmap_close(&n->peers);
    if (n->cluster)
        luray_auth_close(&n->auth);
    free(n->dead);
    n->dead = NULL;
}
