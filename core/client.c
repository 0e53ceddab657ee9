/* Client side of the node protocol: sockets, batching, reply matching, liveness of the node. */
#include "client.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nanomsg/nn.h>
#include <nanomsg/pipeline.h>

#include "errors.h"
#include "protocol.h"

#define FLUSH_BYTES (64 * 1024)
#define FLUSH_COUNT 256

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

luray_buf_t *luray_client_begin(luray_client_t *c, uint16_t type)
{
    return luray_frame_begin(&c->out, type, 0);
}

void luray_client_end(luray_client_t *c) { luray_frame_end(&c->out); }

static void add_pending(luray_client_t *c)
{
    if (c->n_returns) {
        luray_buf_t *b = luray_client_begin(c, LURAY_MSG_RETURN);
        luray_buf_put_varint(b, c->n_returns);
        luray_buf_put(b, c->returns.data, c->returns.len);
        luray_client_end(c);
        luray_buf_reset(&c->returns);
        c->n_returns = 0;
    }
    if (c->n_refs) {
        luray_buf_t *b = luray_client_begin(c, LURAY_MSG_REFS);
        luray_buf_put_varint(b, c->n_refs);
        luray_buf_put(b, c->refs.data, c->refs.len);
        luray_client_end(c);
        luray_buf_reset(&c->refs);
        c->n_refs = 0;
    }
    if (c->n_unpins) {
        luray_buf_t *b = luray_client_begin(c, LURAY_MSG_UNPIN);
        luray_buf_put_varint(b, c->n_unpins);
        luray_buf_put(b, c->unpins.data, c->unpins.len);
        luray_client_end(c);
        luray_buf_reset(&c->unpins);
        c->n_unpins = 0;
    }
}

static int flush_flags(luray_client_t *c, int flags);

int luray_client_flush(luray_client_t *c) { return flush_flags(c, 0); }

static int flush_flags(luray_client_t *c, int flags)
{
    if (c->closed)
        return LURAY_ECLOSED;
    add_pending(c);
    if (luray_frame_empty(&c->out))
        return 0;
    if (c->out.buf.err) {
        luray_frame_reset(&c->out);
        return LURAY_ENOMEM;
    }
    uint8_t hdr[4] = {(uint8_t)c->proc_id, (uint8_t)(c->proc_id >> 8),
                      (uint8_t)(c->proc_id >> 16), (uint8_t)(c->proc_id >> 24)};
    struct nn_iovec iov[2] = {{hdr, 4}, {c->out.buf.data, c->out.buf.len}};
    struct nn_msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    int rc;
    while ((rc = nn_sendmsg(c->out_sock, &mh, flags)) < 0 && nn_errno() == EINTR)
        ;
    luray_frame_reset(&c->out);
    if (c->out.buf.cap > 4 * 1024 * 1024) {
        luray_frame_close(&c->out);
        luray_frame_init(&c->out);
    }
    return rc < 0 ? LURAY_ECLOSED : 0;
}

void luray_client_maybe_flush(luray_client_t *c)
{
    if (c->out.count >= FLUSH_COUNT || c->out.buf.len >= FLUSH_BYTES)
        luray_client_flush(c);
}

void luray_cached_free(luray_cached_t *e)
{
    if (e) {
        free(e->blob);
        free(e);
    }
}

static void close_cached_map(luray_oidmap_t *m)
{
    for (size_t i = 0; i < m->cap; i++)
        luray_cached_free(m->slots[i].val);
    luray_oidmap_close(m);
}

static void cache_drop(luray_client_t *c, luray_oid_t id)
{
    luray_cached_t *e = luray_oidmap_del(&c->cache, id);
    if (e) {
        c->cache_bytes -= e->len;
        luray_cached_free(e);
    }
}

void luray_client_cache_put(luray_client_t *c, luray_oid_t id, uint8_t state, const void *blob,
                            size_t len)
{
    if (c->cache_bytes + len > LURAY_CLIENT_CACHE_MAX || luray_oidmap_get(&c->cache, id))
        return;
    luray_cached_t *e = malloc(sizeof(*e));
    uint8_t *copy = aligned_alloc(64, (len + 64) / 64 * 64);
    if (!e || !copy || luray_oidmap_put(&c->cache, id, e)) {
        free(e);
        free(copy);
        return;
    }
    memcpy(copy, blob, len);
    e->state = state;
    e->len = len;
    e->blob = copy;
    c->cache_bytes += len;
}

const luray_cached_t *luray_client_cache_get(luray_client_t *c, luray_oid_t id)
{
    return luray_oidmap_get(&c->cache, id);
}

void luray_client_ref(luray_client_t *c, luray_oid_t id, int32_t delta)
{
    if (delta < 0)
        cache_drop(c, id);
    if (c->closed)
        return;
    luray_proto_put_id(&c->refs, id);
    luray_buf_put_u32(&c->refs, (uint32_t)delta);
    c->n_refs++;
}

void luray_client_unpin(luray_client_t *c, luray_oid_t id)
{
    if (c->closed)
        return;
    luray_proto_put_id(&c->unpins, id);
    c->n_unpins++;
}

luray_oid_t luray_client_new_id(luray_client_t *c)
{
    luray_oid_t id = {c->node_id, c->proc_id, ++c->next_seq << LURAY_OID_INDEX_BITS};
    return id;
}

uint64_t luray_client_new_req(luray_client_t *c) { return ++c->next_req; }

/* An EXEC handed back to the node unrun may carry the only copy of its function this worker
 * will get (the node sends a function once per worker): the blob is kept for the task that
 * comes back later. */
static void keep_func_blob(luray_client_t *c, const uint8_t *body, uint32_t len)
{
    luray_rd_t r;
    luray_rd_init(&r, body, len);
    luray_task_spec_t spec;
    if (luray_proto_parse_task(&r, &spec) == 0 && spec.func_blob) {
        luray_oid_t key = luray_proto_id_at(spec.func_hash);
        luray_cached_t *e = malloc(sizeof(*e));
        uint8_t *copy = malloc(spec.func_blob_len ? spec.func_blob_len : 1);
        if (e && copy && !luray_oidmap_get(&c->kept_funcs, key) &&
            luray_oidmap_put(&c->kept_funcs, key, e) == 0) {
            memcpy(copy, spec.func_blob, spec.func_blob_len);
            e->state = 0;
            e->len = spec.func_blob_len;
            e->blob = copy;
        } else {
            free(e);
            free(copy);
        }
    }
}

/* A normal task's EXEC body starts with its 16-byte id, then its kind. */
static bool hand_back(luray_client_t *c, uint16_t type, const uint8_t *body, uint32_t len)
{
    if (!c->returning || type != LURAY_MSG_EXEC || len < 17 || body[16] != LURAY_TASK_NORMAL)
        return false;
    keep_func_blob(c, body, len);
    luray_buf_put(&c->returns, body, 16);
    c->n_returns++;
    return true;
}

void luray_client_set_returning(luray_client_t *c, bool on)
{
    c->returning = on;
    if (!on)
        return;
    luray_cmsg_t *prev = NULL, *q = c->q_head;
    while (q) {
        luray_cmsg_t *next = q->next;
        if (hand_back(c, q->type, q->body, q->len)) {
            if (prev)
                prev->next = next;
            else
                c->q_head = next;
            if (c->q_tail == q)
                c->q_tail = prev;
            free(q);
        } else {
            prev = q;
        }
        q = next;
    }
}

static bool awaited(const luray_client_t *c, luray_oid_t id)
{
    for (uint32_t i = 0; i < c->n_awaiting; i++)
        if (luray_oid_eq(c->awaiting[i], id))
            return true;
    return false;
}

/* Caches the results of a RESULT message (a DONE body) that this process waits for. */
static void take_result(luray_client_t *c, const uint8_t *body, uint32_t len)
{
    luray_rd_t r;
    luray_rd_init(&r, body, len);
    luray_oid_t task = luray_proto_rd_id(&r);
    uint8_t status = luray_rd_u8(&r);
    uint16_t nres = luray_rd_u16(&r);
    if (r.err || !c->n_awaiting)
        return;
    if (status == LURAY_DONE_ERROR) {
        size_t blen;
        const void *blob = luray_rd_str(&r, &blen);
        for (unsigned i = 1; blob && i <= nres; i++)
            if (awaited(c, luray_oid_for_return(task, i)))
                luray_client_cache_put(c, luray_oid_for_return(task, i), LURAY_OBJ_ERROR, blob,
                                       blen);
        return;
    }
    if (status != LURAY_DONE_OK)
        return;
    for (unsigned i = 1; i <= nres; i++) {
        if (luray_rd_u8(&r) != LURAY_LOC_INLINE)
            return;
        size_t blen;
        const void *blob = luray_rd_str(&r, &blen);
        uint64_t nc = luray_rd_varint(&r);
        if (r.err || nc > luray_rd_left(&r) / 16)
            return;
        luray_rd_bytes(&r, (size_t)nc * 16);
        luray_oid_t id = luray_oid_for_return(task, i);
        if (awaited(c, id))
            luray_client_cache_put(c, id, LURAY_OBJ_READY, blob, blen);
    }
}

static bool abandoned_reply(luray_client_t *c, uint16_t type, const uint8_t *body, uint32_t len)
{
    if (type != LURAY_MSG_READY || len < 8 || !c->n_abandoned)
        return false;
    luray_rd_t r;
    luray_rd_init(&r, body, len);
    uint64_t req = luray_rd_u64(&r);
    for (uint32_t i = 0; i < c->n_abandoned; i++)
        if (c->abandoned[i] == req) {
            c->abandoned[i] = c->abandoned[--c->n_abandoned];
            return true;
        }
    return false;
}

/* The node cancelled a task it pipelined here: hand it back if it is still queued. Otherwise
 * the CANCEL stays queued, which also keeps the running task's result from going straight to
 * its caller. */
static bool cancel_queued(luray_client_t *c, const uint8_t *id)
{
    luray_cmsg_t *prev = NULL;
    for (luray_cmsg_t *q = c->q_head; q; prev = q, q = q->next) {
        if (q->type != LURAY_MSG_EXEC || q->len < 16 || memcmp(q->body, id, 16) != 0)
            continue;
        if (prev)
            prev->next = q->next;
        else
            c->q_head = q->next;
        if (c->q_tail == q)
            c->q_tail = prev;
        keep_func_blob(c, q->body, q->len);
        free(q);
        luray_buf_put(&c->returns, id, 16);
        c->n_returns++;
        return true;
    }
    return false;
}

static void enqueue_frame(luray_client_t *c, const uint8_t *data, size_t len)
{
    size_t pos = 0;
    luray_msg_t m;
    while (luray_frame_next(data, len, &pos, &m) == 1) {
        if (hand_back(c, m.type, m.body, m.len))
            continue;
        if (m.type == LURAY_MSG_RESULT) {
            take_result(c, m.body, m.len);
            continue;
        }
        if (m.type == LURAY_MSG_CANCEL && m.len >= 16 && cancel_queued(c, m.body))
            continue;
        if (abandoned_reply(c, m.type, m.body, m.len))
            continue;
        luray_cmsg_t *q = malloc(sizeof(*q) + m.len);
        if (!q)
            return;
        q->next = NULL;
        q->type = m.type;
        q->len = m.len;
        memcpy(q->body, m.body, m.len);
        if (c->q_tail)
            c->q_tail->next = q;
        else
            c->q_head = q;
        c->q_tail = q;
    }
}

volatile sig_atomic_t luray_client_interrupt;

/* Receives one frame into the queue. Returns 0, or LURAY_ETIMEDOUT / LURAY_EAGAIN (signal). */
static int recv_some(luray_client_t *c, int timeout_ms)
{
    void *msg = NULL;
    int len = nn_recv(c->in_sock, &msg, NN_MSG, NN_DONTWAIT);
    if (len < 0) {
        int fd;
        size_t sz = sizeof(fd);
        nn_getsockopt(c->in_sock, NN_SOL_SOCKET, NN_RCVFD, &fd, &sz);
        struct pollfd pfd[2] = {{.fd = fd, .events = POLLIN}, {.fd = c->watch_fd, .events = POLLIN}};
        int pr = poll(pfd, c->watch_fd >= 0 ? 2 : 1, timeout_ms);
        if (pr > 0 && c->watch_fd >= 0 && (pfd[1].revents & (POLLIN | POLLERR | POLLHUP)) &&
            !(pfd[0].revents & POLLIN)) {
            c->watch_ready = true;
            return LURAY_ETIMEDOUT;
        }
        if ((pr < 0 && errno == EINTR) || (pr == 0 && timeout_ms > 0 && luray_client_interrupt)) {
            luray_client_interrupt = 0;
            return LURAY_EAGAIN;
        }
        if (pr < 0)
            return LURAY_EIO;
        if (pr == 0)
            return LURAY_ETIMEDOUT;
        len = nn_recv(c->in_sock, &msg, NN_MSG, NN_DONTWAIT);
        if (len < 0)
            return 0;
    }
    enqueue_frame(c, msg, (size_t)len);
    nn_freemsg(msg);
    return 0;
}

static bool node_alive(luray_client_t *c)
{
    return c->node_pid <= 0 || kill(c->node_pid, 0) == 0 || errno != ESRCH;
}

static luray_cmsg_t *take(luray_client_t *c, uint16_t type, bool match_req, uint64_t req)
{
    luray_cmsg_t *prev = NULL;
    for (luray_cmsg_t *q = c->q_head; q; prev = q, q = q->next) {
        if (q->type != type && type != 0)
            continue;
        if (match_req) {
            luray_rd_t r;
            luray_rd_init(&r, q->body, q->len);
            if (luray_rd_u64(&r) != req || r.err)
                continue;
        }
        if (prev)
            prev->next = q->next;
        else
            c->q_head = q->next;
        if (c->q_tail == q)
            c->q_tail = prev;
        q->next = NULL;
        return q;
    }
    return NULL;
}

static bool all_cached(luray_client_t *c)
{
    if (!c->n_awaiting)
        return false;
    for (uint32_t i = 0; i < c->n_awaiting; i++)
        if (!luray_oidmap_get(&c->cache, c->awaiting[i]))
            return false;
    return true;
}

/* Waits for a message (of `type`, with `req` when match_req), or until `satisfied(c)` holds:
 * then NULL with *err 0. */
static luray_cmsg_t *wait_for(luray_client_t *c, uint16_t type, bool match_req, uint64_t req,
                              int timeout_ms, int *err, bool (*satisfied)(luray_client_t *))
{
    int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    *err = 0;
    if (luray_client_flush(c)) {
        *err = LURAY_ECLOSED;
        return NULL;
    }
    for (;;) {
        luray_cmsg_t *q = take(c, type, match_req, req);
        if (q)
            return q;
        if (satisfied && satisfied(c))
            return NULL;
        if (c->watch_ready)
            return NULL;
        int slice = 1000;
        if (deadline >= 0) {
            int64_t left = deadline - now_ms();
            if (left <= 0) {
                *err = LURAY_ETIMEDOUT;
                return NULL;
            }
            if (left < slice)
                slice = (int)left;
        }
        int rc = recv_some(c, slice);
        if (c->n_returns)
            luray_client_flush(c);
        if (rc == LURAY_EAGAIN) {
            *err = LURAY_EAGAIN;
            return NULL;
        }
        if (rc == LURAY_ETIMEDOUT && !node_alive(c)) {
            c->closed = true;
            *err = LURAY_ECLOSED;
            return NULL;
        }
    }
}

luray_cmsg_t *luray_client_wait_get(luray_client_t *c, uint64_t req, int timeout_ms, int *err)
{
    luray_cmsg_t *q = wait_for(c, LURAY_MSG_READY, true, req, timeout_ms, err, all_cached);
    if (!q && *err == 0) {
        if (c->n_abandoned == sizeof(c->abandoned) / sizeof(c->abandoned[0]))
            c->n_abandoned--; /* forget the oldest: its answer will just sit in the queue */
        c->abandoned[c->n_abandoned++] = req;
    }
    return q;
}

int luray_client_send_direct(luray_client_t *c, uint32_t proc, uint16_t type, const void *body,
                             size_t len)
{
    int sock = -1;
    for (uint32_t i = 0; i < c->n_direct; i++)
        if (c->direct[i].proc == proc)
            sock = c->direct[i].sock;
    if (sock < 0) {
        char addr[4300];
        snprintf(addr, sizeof(addr), "ipc://%s/p%u.sock", c->session, proc);
        sock = nn_socket(AF_SP, NN_PUSH);
        if (sock < 0)
            return LURAY_EIO;
        if (nn_connect(sock, addr) < 0) {
            nn_close(sock);
            return LURAY_EIO;
        }
        uint32_t slot = c->n_direct;
        if (slot == sizeof(c->direct) / sizeof(c->direct[0])) {
            slot = (uint32_t)(now_ms() % slot); /* replace one: callers are few */
            nn_close(c->direct[slot].sock);
        } else {
            c->n_direct++;
        }
        c->direct[slot].proc = proc;
        c->direct[slot].sock = sock;
    }
    luray_frame_t f;
    luray_frame_init(&f);
    luray_buf_t *b = luray_frame_begin(&f, type, 0);
    luray_buf_put(b, body, len);
    luray_frame_end(&f);
    int rc = f.buf.err ? -1 : nn_send(sock, f.buf.data, f.buf.len, NN_DONTWAIT);
    luray_frame_close(&f);
    return rc < 0 ? LURAY_EAGAIN : 0;
}

luray_cmsg_t *luray_client_wait(luray_client_t *c, uint16_t type, uint64_t req, int timeout_ms,
                                int *err)
{
    return wait_for(c, type, true, req, timeout_ms, err, NULL);
}

luray_cmsg_t *luray_client_next(luray_client_t *c, int timeout_ms, int *err)
{
    /* Read what has arrived before taking from the queue: a CANCEL for a queued task must be
     * seen before that task is taken. */
    if (c->q_head)
        while (recv_some(c, 0) == 0)
            ;
    return wait_for(c, 0, false, 0, timeout_ms, err, NULL);
}

luray_cmsg_t *luray_client_next_watch(luray_client_t *c, int timeout_ms, int fd, bool *fd_ready,
                                      int *err)
{
    c->watch_fd = fd;
    c->watch_ready = false;
    luray_cmsg_t *q = luray_client_next(c, timeout_ms, err);
    *fd_ready = c->watch_ready;
    c->watch_fd = -1;
    c->watch_ready = false;
    return q;
}

static char inproc_session[4096], inproc_node[256];

void luray_client_set_inproc(const char *session_dir, const char *inproc_addr)
{
    if (!session_dir || !inproc_addr) {
        inproc_session[0] = inproc_node[0] = 0;
        return;
    }
    snprintf(inproc_session, sizeof(inproc_session), "%s", session_dir);
    snprintf(inproc_node, sizeof(inproc_node), "%s", inproc_addr);
}

int luray_client_connect(luray_client_t *c, const char *session_dir, int kind, uint32_t worker_id,
                         int timeout_ms, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    c->in_sock = c->out_sock = -1;
    c->shm.fd = -1;
    c->watch_fd = -1;
    c->kind = kind;
    luray_frame_init(&c->out);
    luray_buf_init(&c->refs);
    luray_buf_init(&c->unpins);
    luray_buf_init(&c->returns);
    luray_oidmap_init(&c->cache);
    luray_oidmap_init(&c->callers);
    luray_oidmap_init(&c->kept_funcs);
    snprintf(c->session, sizeof(c->session), "%s", session_dir);
    char addr[4300];
    snprintf(c->inbox_path, sizeof(c->inbox_path), "%s/c%d-%ld.sock", session_dir, (int)getpid(),
             (long)(now_ms() % 100000));
    c->in_sock = nn_socket(AF_SP, NN_PULL);
    c->out_sock = nn_socket(AF_SP, NN_PUSH);
    if (c->in_sock < 0 || c->out_sock < 0) {
        snprintf(err, errlen, "cannot create sockets: %s", nn_strerror(nn_errno()));
        goto fail;
    }
    int unlimited = -1, big = 16 * 1024 * 1024, linger = 1000;
    nn_setsockopt(c->in_sock, NN_SOL_SOCKET, NN_RCVMAXSIZE, &unlimited, sizeof(unlimited));
    nn_setsockopt(c->in_sock, NN_SOL_SOCKET, NN_RCVBUF, &big, sizeof(big));
    nn_setsockopt(c->out_sock, NN_SOL_SOCKET, NN_SNDBUF, &big, sizeof(big));
    nn_setsockopt(c->out_sock, NN_SOL_SOCKET, NN_LINGER, &linger, sizeof(linger));
    int sndto = 10000;
    nn_setsockopt(c->out_sock, NN_SOL_SOCKET, NN_SNDTIMEO, &sndto, sizeof(sndto));
    snprintf(addr, sizeof(addr), "ipc://%s", c->inbox_path);
    if (nn_bind(c->in_sock, addr) < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr, nn_strerror(nn_errno()));
        goto fail;
    }
    bool inproc = inproc_node[0] && strcmp(inproc_session, session_dir) == 0;
    char inbox[4300];
    snprintf(inbox, sizeof(inbox), "ipc://%s", c->inbox_path);
    if (inproc) {
        /* the node shares this process: both directions go over inproc */
        snprintf(inbox, sizeof(inbox), "inproc://luray-client-%d-%ld", (int)getpid(),
                 (long)(now_ms() % 100000));
        if (nn_bind(c->in_sock, inbox) < 0) {
            snprintf(err, errlen, "cannot listen on %s: %s", inbox, nn_strerror(nn_errno()));
            goto fail;
        }
        snprintf(addr, sizeof(addr), "%s", inproc_node);
    } else {
        snprintf(addr, sizeof(addr), "ipc://%s/node.sock", session_dir);
    }
    if (nn_connect(c->out_sock, addr) < 0) {
        snprintf(err, errlen, "cannot connect to %s: %s", addr, nn_strerror(nn_errno()));
        goto fail;
    }
    luray_buf_t *b = luray_client_begin(c, LURAY_MSG_HELLO);
    luray_buf_put_u8(b, (uint8_t)kind);
    luray_buf_put_u32(b, (uint32_t)getpid());
    luray_buf_put_u32(b, worker_id);
    luray_buf_put_str(b, inbox, strlen(inbox));
    luray_client_end(c);
    int e;
    luray_cmsg_t *w = NULL;
    int64_t deadline = now_ms() + timeout_ms;
    if (luray_client_flush(c)) {
        snprintf(err, errlen, "cannot reach the node at %s (is it running?)", addr);
        goto fail;
    }
    while (!w && now_ms() < deadline) {
        w = take(c, LURAY_MSG_WELCOME, false, 0);
        if (!w && recv_some(c, 100) == LURAY_EAGAIN)
            break;
    }
    if (!w) {
        snprintf(err, errlen, "the node at %s did not answer within %d ms", addr, timeout_ms);
        goto fail;
    }
    luray_rd_t r;
    luray_rd_init(&r, w->body, w->len);
    c->node_id = luray_rd_u32(&r);
    c->proc_id = luray_rd_u32(&r);
    size_t nlen;
    const char *shm = luray_rd_str(&r, &nlen);
    uint64_t size = luray_rd_u64(&r);
    size_t slen;
    luray_rd_str(&r, &slen);
    c->node_pid = (pid_t)luray_rd_u32(&r);
    if (r.err || nlen >= 200) {
        free(w);
        snprintf(err, errlen, "malformed welcome from the node");
        goto fail;
    }
    char direct[4300];
    snprintf(direct, sizeof(direct), "ipc://%s/p%u.sock", session_dir, c->proc_id);
    if (nn_bind(c->in_sock, direct) < 0) {
        free(w);
        snprintf(err, errlen, "cannot listen on %s: %s", direct, nn_strerror(nn_errno()));
        goto fail;
    }
    char shmname[256];
    memcpy(shmname, shm, nlen);
    shmname[nlen] = 0;
    free(w);
    e = luray_shm_open(shmname, (size_t)size, &c->shm);
    if (e) {
        snprintf(err, errlen, "cannot map the object store /dev/shm/%s", shmname);
        goto fail;
    }
    return 0;
fail:
    luray_client_close(c, false);
    return LURAY_ECLOSED;
}

void luray_client_close(luray_client_t *c, bool bye)
{
    if (bye && !c->closed && c->out_sock >= 0) {
        luray_client_begin(c, LURAY_MSG_BYE);
        luray_client_end(c);
        flush_flags(c, node_alive(c) ? 0 : NN_DONTWAIT);
    }
    c->closed = true;
    if (c->in_sock >= 0)
        nn_close(c->in_sock);
    if (c->out_sock >= 0)
        nn_close(c->out_sock);
    c->in_sock = c->out_sock = -1;
    if (c->inbox_path[0])
        unlink(c->inbox_path);
    if (c->proc_id) {
        char direct[4300];
        snprintf(direct, sizeof(direct), "%s/p%u.sock", c->session, c->proc_id);
        unlink(direct);
    }
    for (uint32_t i = 0; i < c->n_direct; i++)
        nn_close(c->direct[i].sock);
    c->n_direct = 0;
    luray_oidmap_close(&c->callers);
    close_cached_map(&c->kept_funcs);
    luray_shm_close(&c->shm);
    luray_frame_close(&c->out);
    luray_buf_close(&c->refs);
    luray_buf_close(&c->unpins);
    luray_buf_close(&c->returns);
    close_cached_map(&c->cache);
    c->cache_bytes = 0;
    while (c->q_head) {
        luray_cmsg_t *q = c->q_head;
        c->q_head = q->next;
        free(q);
    }
    c->q_tail = NULL;
}
