/* Tcp transport: the ranks form a ring of nanomsg NN_PAIR sockets (each binds its own address and
 * connects to its successor's). Allreduce is the ring algorithm, reduce-scatter then allgather,
 * cut in chunks and pipelined; every call starts with an allgather of what each rank is calling,
 * and every message names the call and item it belongs to. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nanomsg/nn.h>
#include <nanomsg/pair.h>

#include "coll_internal.h"
#include "coll_reduce.h"
#include "luray/errors.h"

#define TCP_MAGIC 0x3143524cu /* "LRC1" little-endian */
#define TCP_HDR 24
#define TCP_CHUNK (256 * 1024)
#define TCP_BUF (2 * 1024 * 1024) /* kernel socket buffers */
#define TCP_SLICE_MS 100
#define TCP_BYE_S 1.0 /* how long close waits for the successor to confirm it got everything */
#define TCP_ADDR_MAX 256
#define DESC_BYTES 40

enum { MSG_DESC = 1, MSG_DATA, MSG_BYE };

struct coll_tcp {
    int rank, world;
    double timeout_s;
    uint64_t id_hash, seq;
    int sock_in, sock_out; /* bound (from the predecessor), connected (to the successor) */
    char addr_self[TCP_ADDR_MAX], addr_prev[TCP_ADDR_MAX], addr_next[TCP_ADDR_MAX];
};

/* ---- little-endian fields ---- */

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;

    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static int ring_index(int i, int world) { return ((i % world) + world) % world; }

/* ---- the pipelined exchange ---- */

/* One exchange with both neighbours: nsend items to the successor, nrecv from the predecessor.
 * With lag >= 0, send item i waits until recv items up to i - lag are in (the ring passes on
 * what it received); lag < 0 sends freely. */
typedef struct {
    uint32_t kind;
    size_t nsend, nrecv;
    long lag;
    bool joining;
    void *ctx;
    void (*send_item)(void *ctx, size_t i, const void **data, size_t *len);
    size_t (*recv_len)(void *ctx, size_t i);
    int (*recv_item)(void *ctx, size_t i, const void *data, size_t len, char *err,
                     size_t errlen);
} tcp_plan_t;

static size_t recv_needed(const tcp_plan_t *pl, size_t i)
{
    if (pl->lag < 0)
        return 0;
    return i + 1 > (size_t)pl->lag ? i + 1 - (size_t)pl->lag : 0;
}

static void put_header(uint8_t *h, uint32_t kind, uint64_t seq, size_t item, size_t len)
{
    put_u32(h, TCP_MAGIC);
    put_u32(h + 4, kind);
    put_u64(h + 8, seq);
    put_u32(h + 16, (uint32_t)item);
    put_u32(h + 20, (uint32_t)len);
}

/* 1 sent, 0 not now (the successor's pipe is full or not connected yet), or an error. */
static int try_send(coll_tcp_t *t, const tcp_plan_t *pl, size_t i, char *err, size_t errlen)
{
    uint8_t h[TCP_HDR];
    const void *data;
    size_t len;

    pl->send_item(pl->ctx, i, &data, &len);
    put_header(h, pl->kind, t->seq, i, len);
    struct nn_iovec iov[2] = {{h, TCP_HDR}, {(void *)data, len}};
    struct nn_msghdr mh = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
    if (nn_sendmsg(t->sock_out, &mh, NN_DONTWAIT) >= 0)
        return 1;
    if (nn_errno() == EAGAIN)
        return 0;
    coll_errf(err, errlen, "sending to rank %d (%s): %s", ring_index(t->rank + 1, t->world),
              t->addr_next, nn_strerror(nn_errno()));
    return LURAY_EIO;
}

/* 1 took item i, 0 nothing there yet, or an error. */
static int try_recv(coll_tcp_t *t, const tcp_plan_t *pl, size_t i, char *err, size_t errlen)
{
    int prev = ring_index(t->rank - 1, t->world), rc = 1, n;
    size_t want = pl->recv_len(pl->ctx, i);
    void *msg = NULL;
    const uint8_t *m;

    n = nn_recv(t->sock_in, &msg, NN_MSG, NN_DONTWAIT);
    if (n < 0) {
        if (nn_errno() == EAGAIN)
            return 0;
        coll_errf(err, errlen, "receiving from rank %d (%s): %s", prev, t->addr_prev,
                  nn_strerror(nn_errno()));
        return LURAY_EIO;
    }
    m = msg;
    if ((size_t)n < TCP_HDR || get_u32(m) != TCP_MAGIC || get_u32(m + 4) != pl->kind ||
        get_u64(m + 8) != t->seq || get_u32(m + 16) != (uint32_t)i ||
        get_u32(m + 20) != (size_t)n - TCP_HDR || (size_t)n - TCP_HDR != want) {
        coll_errf(err, errlen, "rank %d (%s) sent an unexpected message (%d bytes; expected "
                  "item %zu of call %llu with %zu bytes)", prev, t->addr_prev, n, i,
                  (unsigned long long)t->seq, want);
        rc = LURAY_EPROTO;
    } else if (pl->recv_item) {
        if (pl->recv_item(pl->ctx, i, m + TCP_HDR, want, err, errlen) < 0)
            rc = LURAY_EPROTO;
    }
    nn_freemsg(msg);
    return rc;
}

static int timed_out(coll_tcp_t *t, const tcp_plan_t *pl, bool want_send, bool want_recv,
                     char *err, size_t errlen)
{
    int prev = ring_index(t->rank - 1, t->world), next = ring_index(t->rank + 1, t->world);
    char also[TCP_ADDR_MAX + 64] = "";

    if (pl->joining && want_recv)
        coll_errf(err, errlen, "timed out after %g s waiting for rank %d (%s) to join",
                  t->timeout_s, prev, t->addr_prev);
    else if (pl->joining)
        coll_errf(err, errlen, "timed out after %g s: cannot reach rank %d at %s", t->timeout_s,
                  next, t->addr_next);
    else {
        if (want_send && want_recv)
            snprintf(also, sizeof also, "; rank %d (%s) is not taking data either", next,
                     t->addr_next);
        if (want_recv)
            coll_errf(err, errlen, "timed out after %g s waiting for data from rank %d (%s)%s",
                      t->timeout_s, prev, t->addr_prev, also);
        else
            coll_errf(err, errlen, "timed out after %g s: rank %d (%s) is not taking data",
                      t->timeout_s, next, t->addr_next);
    }
    return LURAY_ETIMEDOUT;
}

/* Runs the plan to its end, sending and receiving as each side allows; fails after timeout_s
 * without progress, naming the neighbour it waited for. */
static int tcp_exchange(coll_tcp_t *t, const tcp_plan_t *pl, char *err, size_t errlen)
{
    size_t sent = 0, recvd = 0;
    double last = coll_now();
    int rc;

    while (sent < pl->nsend || recvd < pl->nrecv) {
        bool want_send = sent < pl->nsend && recvd >= recv_needed(pl, sent);
        bool want_recv = recvd < pl->nrecv, moved = false;
        struct nn_pollfd pfd[2];
        int np = 0;

        if (want_send) {
            if ((rc = try_send(t, pl, sent, err, errlen)) < 0)
                return rc;
            sent += (size_t)rc;
            moved |= rc > 0;
        }
        if (want_recv) {
            if ((rc = try_recv(t, pl, recvd, err, errlen)) < 0)
                return rc;
            recvd += (size_t)rc;
            moved |= rc > 0;
        }
        if (moved) {
            last = coll_now();
            continue;
        }
        if (coll_now() - last > t->timeout_s)
            return timed_out(t, pl, want_send, want_recv, err, errlen);
        if (want_send)
            pfd[np++] = (struct nn_pollfd){.fd = t->sock_out, .events = NN_POLLOUT};
        if (want_recv)
            pfd[np++] = (struct nn_pollfd){.fd = t->sock_in, .events = NN_POLLIN};
        nn_poll(pfd, np, TCP_SLICE_MS);
    }
    return 0;
}

/* ---- the call allgather ---- */

typedef struct {
    coll_tcp_t *t;
    uint8_t *descs; /* world x DESC_BYTES, by rank */
} sync_ctx_t;

static void encode_desc(const coll_tcp_t *t, const coll_desc_t *d, uint8_t *p)
{
    memset(p, 0, DESC_BYTES);
    put_u32(p, (uint32_t)t->rank);
    put_u32(p + 4, (uint32_t)t->world);
    put_u64(p + 8, t->id_hash);
    put_u32(p + 16, d->kind);
    put_u32(p + 20, d->dtype);
    put_u32(p + 24, d->op);
    put_u32(p + 28, d->root);
    put_u64(p + 32, d->nbytes);
}

static void decode_desc(const uint8_t *p, coll_desc_t *d)
{
    d->kind = get_u32(p + 16);
    d->dtype = get_u32(p + 20);
    d->op = get_u32(p + 24);
    d->root = get_u32(p + 28);
    d->nbytes = get_u64(p + 32);
}

/* Item i passes on what arrived at step i - 1: rank (rank - i)'s description. */
static void sync_send(void *ctx, size_t i, const void **data, size_t *len)
{
    sync_ctx_t *c = ctx;

    *data = c->descs + (size_t)ring_index(c->t->rank - (int)i, c->t->world) * DESC_BYTES;
    *len = DESC_BYTES;
}

static size_t sync_len(void *ctx, size_t i) { return DESC_BYTES; }

static int sync_recv(void *ctx, size_t i, const void *data, size_t len, char *err, size_t errlen)
{
    sync_ctx_t *c = ctx;
    int from = ring_index(c->t->rank - 1 - (int)i, c->t->world);
    const uint8_t *p = data;

    if (get_u64(p + 8) != c->t->id_hash) {
        coll_errf(err, errlen, "the process at %s belongs to another group (different id)",
                  c->t->addr_prev);
        return LURAY_EINVAL;
    }
    if (get_u32(p + 4) != (uint32_t)c->t->world || get_u32(p) != (uint32_t)from) {
        coll_errf(err, errlen, "the ring is inconsistent: expected rank %d of %d, got rank %u "
                  "of %u (do all ranks pass the same addresses?)", from, c->t->world, get_u32(p),
                  get_u32(p + 4));
        return LURAY_EINVAL;
    }
    memcpy(c->descs + (size_t)from * DESC_BYTES, p, DESC_BYTES);
    return 0;
}

/* Every rank learns every rank's call, so all of them agree on whether to go on. */
static int tcp_sync(coll_tcp_t *t, const coll_desc_t *d, char *err, size_t errlen)
{
    sync_ctx_t c = {.t = t};
    tcp_plan_t pl = {
        .kind = MSG_DESC,
        .nsend = (size_t)t->world - 1,
        .nrecv = (size_t)t->world - 1,
        .lag = 1,
        .joining = d->kind == COLL_KIND_JOIN,
        .ctx = &c,
        .send_item = sync_send,
        .recv_len = sync_len,
        .recv_item = sync_recv,
    };
    coll_desc_t other;
    int rc;

    c.descs = malloc((size_t)t->world * DESC_BYTES);
    if (!c.descs) {
        coll_errf(err, errlen, "out of memory");
        return LURAY_ENOMEM;
    }
    encode_desc(t, d, c.descs + (size_t)t->rank * DESC_BYTES);
    rc = tcp_exchange(t, &pl, err, errlen);
    for (int k = 0; rc == 0 && k < t->world; k++) {
        decode_desc(c.descs + (size_t)k * DESC_BYTES, &other);
        if (k != t->rank && coll_desc_differ(d, &other, k, err, errlen))
            rc = LURAY_EINVAL;
    }
    free(c.descs);
    return rc;
}

/* ---- allreduce: ring reduce-scatter, then allgather ---- */

typedef struct {
    coll_tcp_t *t;
    const coll_desc_t *d;
    uint8_t *buf;
    size_t es;
    coll_cut_t cut;
} ring_ctx_t;

/* Step s sends slice (rank - s) and receives slice (rank - s - 1): the first world - 1 steps
 * add into it, the rest copy the finished slices around. */
static uint8_t *ring_chunk(ring_ctx_t *c, size_t i, int back, size_t *len)
{
    size_t step = i / c->cut.nchunks, chunk = i % c->cut.nchunks;
    int seg = ring_index(c->t->rank - (int)step - back, c->t->world);
    size_t first = coll_cut_chunk(&c->cut, seg, chunk, len);

    *len *= c->es;
    return c->buf + first * c->es;
}

static void ring_send(void *ctx, size_t i, const void **data, size_t *len)
{
    *data = ring_chunk(ctx, i, 0, len);
}

static size_t ring_len(void *ctx, size_t i)
{
    size_t len;

    ring_chunk(ctx, i, 1, &len);
    return len;
}

static int ring_recv(void *ctx, size_t i, const void *data, size_t len, char *err, size_t errlen)
{
    ring_ctx_t *c = ctx;
    size_t step = i / c->cut.nchunks, n;
    int W = c->t->world;
    uint8_t *acc = ring_chunk(c, i, 1, &n);

    if (step < (size_t)W - 1) {
        int div = step == (size_t)W - 2 && c->d->op == COLL_MEAN ? W : 1;

        coll_reduce((int)c->d->dtype, (int)c->d->op, acc, NULL, acc, data, n / c->es, div);
    } else if (n) {
        memcpy(acc, data, n);
    }
    return 0;
}

static int tcp_allreduce(coll_tcp_t *t, const coll_desc_t *d, const uint8_t *src, uint8_t *dst,
                         char *err, size_t errlen)
{
    ring_ctx_t c = {.t = t, .d = d, .buf = dst, .es = coll_dtype_size((int)d->dtype)};
    size_t n = d->nbytes / c.es;
    tcp_plan_t pl = {
        .kind = MSG_DATA,
        .ctx = &c,
        .send_item = ring_send,
        .recv_len = ring_len,
        .recv_item = ring_recv,
    };

    if (src != dst && n)
        memmove(dst, src, n * c.es);
    if (t->world == 1)
        return 0;
    coll_cut_init(&c.cut, n, t->world, c.es, TCP_CHUNK);
    pl.nsend = pl.nrecv = 2 * ((size_t)t->world - 1) * c.cut.nchunks;
    pl.lag = (long)c.cut.nchunks;
    return tcp_exchange(t, &pl, err, errlen);
}

/* ---- broadcast: a pipeline from the root around the ring ---- */

typedef struct {
    uint8_t *data;
    size_t nbytes;
} bcast_ctx_t;

static size_t bcast_len(void *ctx, size_t i)
{
    bcast_ctx_t *c = ctx;
    size_t off = i * TCP_CHUNK;

    return c->nbytes - off < TCP_CHUNK ? c->nbytes - off : TCP_CHUNK;
}

static void bcast_send(void *ctx, size_t i, const void **data, size_t *len)
{
    bcast_ctx_t *c = ctx;

    *data = c->data + i * TCP_CHUNK;
    *len = bcast_len(ctx, i);
}

static int bcast_recv(void *ctx, size_t i, const void *data, size_t len, char *err,
                      size_t errlen)
{
    bcast_ctx_t *c = ctx;

    if (len)
        memcpy(c->data + i * TCP_CHUNK, data, len);
    return 0;
}

static int tcp_broadcast(coll_tcp_t *t, const coll_desc_t *d, uint8_t *data, char *err,
                         size_t errlen)
{
    bcast_ctx_t c = {.data = data, .nbytes = d->nbytes};
    size_t nchunks = (d->nbytes + TCP_CHUNK - 1) / TCP_CHUNK;
    int q = ring_index(t->rank - (int)d->root, t->world);
    tcp_plan_t pl = {
        .kind = MSG_DATA,
        .nsend = q < t->world - 1 ? nchunks : 0,
        .nrecv = q > 0 ? nchunks : 0,
        .lag = q > 0 ? 0 : -1,
        .ctx = &c,
        .send_item = bcast_send,
        .recv_len = bcast_len,
        .recv_item = bcast_recv,
    };

    if (t->world == 1)
        return 0;
    return tcp_exchange(t, &pl, err, errlen);
}

int coll_tcp_run(coll_tcp_t *t, const coll_desc_t *d, const void *src, void *dst, char *err,
                 size_t errlen)
{
    int rc = 0;

    t->seq++;
    if (t->world > 1 && (rc = tcp_sync(t, d, err, errlen)) < 0)
        return rc;
    switch (d->kind) {
    case COLL_KIND_ALLREDUCE:
        return tcp_allreduce(t, d, src, dst, err, errlen);
    case COLL_KIND_BROADCAST:
        return tcp_broadcast(t, d, dst, err, errlen);
    default:
        return 0;
    }
}

/* ---- joining and leaving ---- */

/* "host:port" or "tcp://host:port" as nanomsg wants it. */
static int tcp_address(const char *given, int k, char *out, char *err, size_t errlen)
{
    const char *p = strncmp(given, "tcp://", 6) == 0 ? given + 6 : given;
    const char *colon = strrchr(p, ':');

    if (!colon || colon == p || !colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
        strlen(p) + 7 > TCP_ADDR_MAX) {
        coll_errf(err, errlen, "address of rank %d must be \"host:port\", got \"%s\"", k, given);
        return LURAY_EINVAL;
    }
    snprintf(out, TCP_ADDR_MAX, "tcp://%s", p);
    return 0;
}

static int set_opt(int sock, int opt, int value)
{
    return nn_setsockopt(sock, NN_SOL_SOCKET, opt, &value, sizeof value);
}

static int open_socket(int *sock, char *err, size_t errlen)
{
    *sock = nn_socket(AF_SP, NN_PAIR);
    if (*sock < 0) {
        coll_errf(err, errlen, "cannot make a socket: %s", nn_strerror(nn_errno()));
        return LURAY_EIO;
    }
    if (set_opt(*sock, NN_RCVMAXSIZE, TCP_CHUNK + TCP_HDR + 64) < 0 ||
        set_opt(*sock, NN_SNDBUF, TCP_BUF) < 0 || set_opt(*sock, NN_RCVBUF, TCP_BUF) < 0 ||
        set_opt(*sock, NN_RECONNECT_IVL, 50) < 0) {
        coll_errf(err, errlen, "cannot set socket options: %s", nn_strerror(nn_errno()));
        return LURAY_EIO;
    }
    return 0;
}

int coll_tcp_open(const coll_spec_t *spec, coll_tcp_t **out, char *err, size_t errlen)
{
    coll_desc_t join = {.kind = COLL_KIND_JOIN};
    int W = spec->world_size, r = spec->rank, rc;
    coll_tcp_t *t;

    *out = NULL;
    t = calloc(1, sizeof *t);
    if (!t) {
        coll_errf(err, errlen, "out of memory");
        return LURAY_ENOMEM;
    }
    t->rank = r;
    t->world = W;
    t->timeout_s = spec->timeout_s;
    t->id_hash = coll_hash(spec->id);
    t->sock_in = t->sock_out = -1;
    for (int k = 0; k < W; k++) {
        char tmp[TCP_ADDR_MAX];

        if (!spec->addresses[k]) {
            coll_errf(err, errlen, "no address for rank %d", k);
            rc = LURAY_EINVAL;
            goto err_free;
        }
        if ((rc = tcp_address(spec->addresses[k], k, tmp, err, errlen)) < 0)
            goto err_free;
    }
    if (W == 1) {
        *out = t;
        return 0;
    }
    tcp_address(spec->addresses[r], r, t->addr_self, NULL, 0);
    tcp_address(spec->addresses[ring_index(r - 1, W)], r - 1, t->addr_prev, NULL, 0);
    tcp_address(spec->addresses[ring_index(r + 1, W)], r + 1, t->addr_next, NULL, 0);
    if ((rc = open_socket(&t->sock_in, err, errlen)) < 0 ||
        (rc = open_socket(&t->sock_out, err, errlen)) < 0)
        goto err_close;
    if (nn_bind(t->sock_in, t->addr_self) < 0) {
        coll_errf(err, errlen, "cannot listen on %s: %s", t->addr_self, nn_strerror(nn_errno()));
        rc = LURAY_EIO;
        goto err_close;
    }
    if (nn_connect(t->sock_out, t->addr_next) < 0) {
        coll_errf(err, errlen, "cannot connect to rank %d at %s: %s", ring_index(r + 1, W),
                  t->addr_next, nn_strerror(nn_errno()));
        rc = LURAY_EIO;
        goto err_close;
    }
    if ((rc = tcp_sync(t, &join, err, errlen)) < 0)
        goto err_close;
    *out = t;
    return 0;

err_close:
    if (t->sock_out >= 0)
        nn_close(t->sock_out);
    if (t->sock_in >= 0)
        nn_close(t->sock_in);
err_free:
    free(t);
    return rc;
}

/* A message handed to nanomsg may still be on its way when the process moves on: before the
 * sockets close, tell the predecessor everything arrived and wait (briefly) for the successor
 * to say the same, so that the last call's data is not cut off. */
static void say_goodbye(coll_tcp_t *t)
{
    double end = coll_now() + (t->timeout_s < TCP_BYE_S ? t->timeout_s : TCP_BYE_S);
    bool sent = false, got = false;
    uint8_t h[TCP_HDR];

    put_header(h, MSG_BYE, t->seq, 0, 0);
    while (!(sent && got) && coll_now() < end) {
        struct nn_pollfd pfd[2];
        void *msg = NULL;
        int np = 0, n;

        if (!sent)
            sent = nn_send(t->sock_in, h, TCP_HDR, NN_DONTWAIT) >= 0;
        n = got ? -1 : nn_recv(t->sock_out, &msg, NN_MSG, NN_DONTWAIT);
        if (n >= 0) {
            got = n == TCP_HDR && get_u32(msg) == TCP_MAGIC &&
                  get_u32((uint8_t *)msg + 4) == MSG_BYE;
            nn_freemsg(msg);
            continue;
        }
        if (sent && got)
            break;
        if (!got)
            pfd[np++] = (struct nn_pollfd){.fd = t->sock_out, .events = NN_POLLIN};
        if (!sent)
            pfd[np++] = (struct nn_pollfd){.fd = t->sock_in, .events = NN_POLLOUT};
        nn_poll(pfd, np, 20);
    }
}

void coll_tcp_free(coll_tcp_t *t, bool flush)
{
    if (!t)
        return;
    if (t->sock_in >= 0) {
        if (flush)
            say_goodbye(t);
        nn_close(t->sock_out);
        nn_close(t->sock_in);
    }
    free(t);
}
