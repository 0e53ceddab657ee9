/* Simulated nodes against one real head: N nodes register, heartbeat once a second and ask the
 * head where tasks should run, over the real wire protocol, while the head's CPU and memory are
 * read from /proc. Phases: register (until the head's status counts them all), heartbeats only,
 * heartbeats and PLACE requests at a steady rate, PLACE requests as fast as the head answers.
 * Prints the figures as bench JSON lines (see scripts/bench/sim_nodes.sh).
 *
 * nanomsg allows a process 512 sockets, fewer than the nodes simulated, so each simulated node
 * speaks the SP-over-TCP framing that nanomsg uses itself: an 8-byte header naming the protocol
 * (NN_PUSH to the head, NN_PULL for what the head sends back), then every message as a 64-bit
 * big-endian length and the bytes. Like a real node, each one has two connections to the head
 * (its heartbeat thread's and its loop's) and an address of its own that the head connects to,
 * which tells whose replies arrive where. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <sodium.h>

#include "auth.h"
#include "buf.h"
#include "errors_str.h"
#include "luray/errors.h"
#include "node_cluster.h"
#include "node_head.h"
#include "protocol.h"
#include "wire.h"

#define SP_PUSH 0x50 /* NN_PUSH: NN_PROTO_PIPELINE * 16 */
#define SP_PULL 0x51
#define SP_HDR 8
#define CONNECTING_MAX 8   /* the head's listen backlog is small: connect a few at a time */
#define RING (1u << 20)    /* requests remembered for latency (far more than ever in flight) */
#define SUBS 4             /* sub-windows of a measured phase: the figure's runs */
#define NO_REPLY_NS 3000000000ull

enum { C_LISTEN, C_IN, C_OUT };
enum { OUT_BEAT, OUT_MSG, OUT_CONNS };
enum { PH_NONE, PH_RATE, PH_MAX };

typedef struct sim sim_t;

typedef struct conn {
    int fd;
    uint8_t kind;
    bool hdr_in;       /* the other side's SP header arrived */
    bool want_out;     /* EPOLLOUT armed */
    bool dead;
    uint32_t node;     /* index of the simulated node */
    uint8_t *rx;
    size_t rx_len, rx_cap;
    luray_buf_t tx;    /* bytes the kernel did not take yet */
    size_t tx_off;
    struct conn *prev, *next; /* the connections the head opened (sim_t.ins) */
} conn_t;

typedef struct {
    uint32_t id;
    bool busy; /* reports no free CPU: asks the head for DEFAULT tasks, like a full node */
    bool registered;
    luray_auth_t auth;
    conn_t *out[OUT_CONNS];
    conn_t listen;
    char addr[64];
    uint32_t in_conns, replies;
} snode_t;

typedef struct {
    uint64_t ns, cpu_ticks, rss_kb, sim_ns;
} sample_t;

typedef struct {
    double *v;
    size_t len, cap;
} vec_t;

struct sim {
    /* options */
    uint32_t n;
    double seconds, beats_seconds, max_seconds, rate;
    uint32_t batch, window;
    int port;
    pid_t head_pid;
    const char *token, *luray;
    uint64_t period_ns;
    /* state */
    int ep;
    snode_t *nodes;
    uint8_t key[LURAY_KEY_BYTES];
    luray_frame_t beat_busy, beat_idle, scratch_frame;
    uint8_t *scratch;
    size_t scratch_cap;
    uint32_t connecting, conn_next, conns_ready, conns_failed;
    /* heartbeats */
    bool beating;
    uint64_t beat_t0, beats_sent;
    /* placement */
    int phase;
    uint64_t place_t0, phase_sent, req_seq;
    uint32_t rr_any, rr_busy, rr_reach;
    uint32_t *reach; /* nodes that had a PLACED reply: the max-rate phase asks from these */
    uint32_t n_reach;
    uint64_t *t_sent;
    uint8_t *req_sub; /* 0: answered (or never sent); 1 + sub-window at the steady rate; 0x80 | that
                       * at the maximum rate */
    int cur_sub;
    uint64_t inflight, last_reply_ns;
    vec_t lat[SUBS], lat_max;
    /* counts */
    uint64_t nreg_ok, nreg_refused, rereg, nodedead_self, nodedead_other, placed_msgs;
    uint64_t placed_entries, placed_never, placed_later, placed_local, bad_replies, other_msgs;
    uint64_t rate_answered, max_answered, in_closed, out_failed, accept_failed;
    conn_t *ins; /* connections the head opened to the simulated nodes */
    conn_t *graves[4096];
    uint32_t n_graves;
    bool status_broken;
    char first_death[200];
};

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) { g_stop = sig; }

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t self_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t g_t0; /* when the simulator started: logs say seconds since */

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void logf_(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[sim_nodes %6.2f] ", (double)(now_ns() - g_t0) / 1e9);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void vec_push(vec_t *v, double x)
{
    if (v->len == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 1024;
        double *d = realloc(v->v, cap * sizeof(*d));
        if (!d)
            return;
        v->v = d;
        v->cap = cap;
    }
    v->v[v->len++] = x;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) of v, sorting it; NaN when empty. */
static double quantile(vec_t *v, double q)
{
    if (!v->len)
        return 0.0 / 0.0;
    qsort(v->v, v->len, sizeof(double), cmp_double);
    size_t i = (size_t)(q * (double)(v->len - 1) + 0.5);
    return v->v[i];
}

static double median(const double *xs, int n)
{
    double s[SUBS + 4];
    memcpy(s, xs, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* ---- the head process ---- */

/* utime + stime of the whole process (all threads), in clock ticks, and its resident memory. */
static int head_sample(sim_t *s, sample_t *out)
{
    char path[64], buf[2048];
    out->ns = now_ns();
    out->sim_ns = self_cpu_ns();
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)s->head_pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return LURAY_ENOENT;
    size_t len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[len] = 0;
    const char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    /* after the name: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt */
    if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
                     &st) != 2)
        return LURAY_EPROTO;
    out->cpu_ticks = ut + st;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)s->head_pid);
    f = fopen(path, "r");
    if (!f)
        return LURAY_ENOENT;
    out->rss_kb = 0;
    while (fgets(buf, sizeof(buf), f))
        if (strncmp(buf, "VmRSS:", 6) == 0)
            out->rss_kb = strtoull(buf + 6, NULL, 10);
    fclose(f);
    return 0;
}

static double cpu_percent(const sample_t *a, const sample_t *b)
{
    double secs = (double)(b->ns - a->ns) / 1e9;
    return 100.0 * (double)(b->cpu_ticks - a->cpu_ticks) / (double)sysconf(_SC_CLK_TCK) / secs;
}

static double sim_percent(const sample_t *a, const sample_t *b)
{
    return 100.0 * (double)(b->sim_ns - a->sim_ns) / (double)(b->ns - a->ns);
}

typedef struct {
    int alive, dead;
    double decisions;
    char death[200];
} status_t;

static int pump(sim_t *s, uint64_t until);

/* `luray status --json` (LURAY_TMPDIR comes from the environment): what the head's directory
 * says. The simulated nodes keep beating while it runs. */
static int head_status(sim_t *s, status_t *st)
{
    memset(st, 0, sizeof(*st));
    int pfd[2];
    /* only our end is non-blocking: the command's stdout must not be, or it drops output */
    if (pipe2(pfd, O_CLOEXEC) != 0)
        return LURAY_EIO;
    fcntl(pfd[0], F_SETFL, O_NONBLOCK);
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return LURAY_EIO;
    }
    if (pid == 0) {
        dup2(pfd[1], 1);
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, 2);
        execl(s->luray, s->luray, "status", "--json", (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    luray_buf_t out;
    luray_buf_init(&out);
    uint64_t deadline = now_ns() + 20000000000ull;
    int rc = 0;
    for (;;) {
        if (luray_buf_reserve(&out, 65536) != 0) {
            rc = LURAY_ENOMEM;
            break;
        }
        ssize_t got = read(pfd[0], out.data + out.len, 65536);
        if (got == 0)
            break;
        if (got > 0) {
            out.len += (size_t)got;
            continue;
        }
        if (errno != EAGAIN && errno != EINTR) {
            rc = LURAY_EIO;
            break;
        }
        uint64_t now = now_ns();
        if (now >= deadline || g_stop) {
            rc = LURAY_ETIMEDOUT;
            break;
        }
        pump(s, now + 2000000);
    }
    close(pfd[0]);
    if (rc)
        kill(pid, SIGKILL);
    int wst = 0;
    while (waitpid(pid, &wst, 0) < 0 && errno == EINTR)
        ;
    if (rc == 0 && (!WIFEXITED(wst) || WEXITSTATUS(wst) != 0))
        rc = LURAY_EIO;
    cJSON *j = rc == 0 ? cJSON_ParseWithLength((const char *)out.data, out.len) : NULL;
    luray_buf_close(&out);
    if (rc == 0 && !j)
        rc = LURAY_EPROTO;
    if (rc)
        return rc;
    cJSON *alive = cJSON_GetObjectItemCaseSensitive(j, "alive_nodes");
    cJSON *dec = cJSON_GetObjectItemCaseSensitive(j, "scheduling_decisions");
    cJSON *nodes = cJSON_GetObjectItemCaseSensitive(j, "nodes"), *it;
    if (!cJSON_IsNumber(alive) || !cJSON_IsNumber(dec) || !cJSON_IsArray(nodes))
        rc = LURAY_EPROTO;
    else {
        st->alive = alive->valueint;
        st->decisions = dec->valuedouble;
        cJSON_ArrayForEach(it, nodes)
        {
            if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "alive")))
                continue;
            cJSON *why = cJSON_GetObjectItemCaseSensitive(it, "death");
            if (!st->dead++ && cJSON_IsString(why))
                snprintf(st->death, sizeof(st->death), "%s", why->valuestring);
        }
    }
    cJSON_Delete(j);
    return rc;
}

/* ---- connections ---- */

static void conn_watch(sim_t *s, conn_t *c, bool out)
{
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = out;
}

static void conn_free_in(sim_t *s, conn_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        s->ins = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c->rx);
    luray_buf_close(&c->tx);
    free(c);
}

static void conn_fail(sim_t *s, conn_t *c, const char *what, int err)
{
    if (c->dead)
        return;
    c->dead = true;
    epoll_ctl(s->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->rx);
    c->rx = NULL;
    c->rx_len = c->rx_cap = 0;
    luray_buf_close(&c->tx);
    c->tx_off = 0;
    if (c->kind == C_IN) {
        s->in_closed++;
        /* freed after the events in hand, which may still point at it */
        if (s->n_graves < sizeof(s->graves) / sizeof(s->graves[0]))
            s->graves[s->n_graves++] = c;
        return;
    }
    if (!c->hdr_in) {
        s->conns_failed++;
        s->connecting--;
    }
    if (s->out_failed++ < 3)
        logf_("node %08x: connection to the head %s%s%s", s->nodes[c->node].id, what,
              err ? ": " : "", err ? strerror(err) : "");
}

/* Queues bytes behind what waits already, else writes them now. */
static void conn_send(sim_t *s, conn_t *c, const uint8_t *p, size_t len)
{
    if (c->dead)
        return;
    if (c->tx_off == c->tx.len) {
        ssize_t w = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN)
                return conn_fail(s, c, "failed", errno);
            w = 0;
        }
        if ((size_t)w == len)
            return;
        p += w;
        len -= (size_t)w;
        luray_buf_reset(&c->tx);
        c->tx_off = 0;
    }
    luray_buf_put(&c->tx, p, len);
    if (!c->want_out)
        conn_watch(s, c, true);
}

static void conn_flush(sim_t *s, conn_t *c)
{
    while (c->tx_off < c->tx.len) {
        ssize_t w = send(c->fd, c->tx.data + c->tx_off, c->tx.len - c->tx_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOTCONN)
                return;
            return conn_fail(s, c, "failed", errno);
        }
        c->tx_off += (size_t)w;
    }
    luray_buf_reset(&c->tx);
    c->tx_off = 0;
    conn_watch(s, c, false);
}

static void sp_header(uint8_t h[SP_HDR], uint16_t proto)
{
    memcpy(h, "\0SP\0\0\0\0\0", SP_HDR);
    h[4] = (uint8_t)(proto >> 8);
    h[5] = (uint8_t)proto;
}

static int conn_add(sim_t *s, conn_t *c, int fd, uint8_t kind, uint32_t node)
{
    memset(c, 0, sizeof(*c));
    c->fd = fd;
    c->kind = kind;
    c->node = node;
    luray_buf_init(&c->tx);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) != 0)
        return LURAY_EIO;
    if (kind != C_LISTEN) {
        uint8_t h[SP_HDR];
        sp_header(h, kind == C_OUT ? SP_PUSH : SP_PULL);
        conn_send(s, c, h, SP_HDR);
    }
    return 0;
}

static void conn_start_next(sim_t *s)
{
    uint32_t total = s->n * OUT_CONNS;
    while (s->connecting < CONNECTING_MAX && s->conn_next < total) {
        uint32_t i = s->conn_next / OUT_CONNS, k = s->conn_next % OUT_CONNS;
        s->conn_next++;
        conn_t *c = calloc(1, sizeof(*c));
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (!c || fd < 0) {
            logf_("cannot make a socket: %s", strerror(errno));
            free(c);
            if (fd >= 0)
                close(fd);
            s->conns_failed++;
            continue;
        }
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EINPROGRESS) {
            logf_("cannot connect to the head at 127.0.0.1:%d: %s", s->port, strerror(errno));
            close(fd);
            free(c);
            s->conns_failed++;
            continue;
        }
        s->nodes[i].out[k] = c;
        s->connecting++;
        if (conn_add(s, c, fd, C_OUT, i) != 0)
            conn_fail(s, c, "cannot be watched", errno);
    }
}

/* ---- sending ---- */

/* Seals a frame as node i and sends it on connection k, with its SP length in front. */
static void send_frame(sim_t *s, uint32_t i, int k, const luray_frame_t *f)
{
    snode_t *x = &s->nodes[i];
    size_t flen = f->buf.len, total = SP_HDR + flen + LURAY_AUTH_OVERHEAD;
    if (total > s->scratch_cap) {
        uint8_t *p = realloc(s->scratch, total);
        if (!p)
            return;
        s->scratch = p;
        s->scratch_cap = total;
    }
    uint64_t body = flen + LURAY_AUTH_OVERHEAD;
    for (int b = 0; b < 8; b++)
        s->scratch[b] = (uint8_t)(body >> (56 - 8 * b));
    luray_auth_seal(&x->auth, f->buf.data, flen, s->scratch + SP_HDR);
    conn_send(s, x->out[k], s->scratch, total);
}

static const char *res_names[] = {"CPU", "GPU", "memory", "object_store_memory"};
#define N_RES 4
#define NODE_CPUS 8

static void node_totals(int64_t total[N_RES])
{
    total[0] = (int64_t)NODE_CPUS * LURAY_RES_UNIT;
    total[1] = 0;
    total[2] = 16ll << 30;
    total[3] = 4ll << 30;
}

/* As send_nreg in node_cluster.c. */
static void send_nreg(sim_t *s, uint32_t i)
{
    snode_t *x = &s->nodes[i];
    int64_t total[N_RES];
    node_totals(total);
    luray_frame_t *f = &s->scratch_frame;
    luray_frame_reset(f);
    luray_buf_t *b = luray_frame_begin(f, LURAY_MSG_NREG, 0);
    luray_buf_put_u32(b, x->id);
    luray_buf_put_str(b, x->addr, strlen(x->addr));
    luray_buf_put_u32(b, (uint32_t)getpid());
    luray_buf_put_u32(b, N_RES);
    for (int r = 0; r < N_RES; r++) {
        luray_buf_put_str(b, res_names[r], strlen(res_names[r]));
        luray_buf_put_u64(b, (uint64_t)total[r]);
    }
    luray_frame_end(f);
    send_frame(s, i, OUT_MSG, f);
}

/* As send_beat in node_cluster.c: free resources, then the counters `luray status` adds up. A
 * busy node has no CPU free and tasks queued. */
static void build_beat(luray_frame_t *f, bool busy)
{
    int64_t avail[N_RES];
    node_totals(avail);
    uint64_t stats[NODE_BEAT_STATS] = {0};
    stats[STAT_WORKERS] = NODE_CPUS;
    stats[STAT_STORE_CAP] = 4ull << 30;
    if (busy) {
        avail[0] = 0;
        stats[STAT_RUNNING] = NODE_CPUS;
        stats[STAT_QUEUED] = 4;
    }
    luray_frame_init(f);
    luray_buf_t *b = luray_frame_begin(f, LURAY_MSG_BEAT, 0);
    luray_buf_put_u32(b, N_RES);
    for (int r = 0; r < N_RES; r++)
        luray_buf_put_u64(b, (uint64_t)avail[r]);
    luray_buf_put_u32(b, NODE_BEAT_STATS);
    for (int k = 0; k < NODE_BEAT_STATS; k++)
        luray_buf_put_u64(b, stats[k]);
    luray_frame_end(f);
}

static void send_beat(sim_t *s, uint32_t i)
{
    send_frame(s, i, OUT_BEAT, s->nodes[i].busy ? &s->beat_busy : &s->beat_idle);
}

/* One PLACE message of one task needing {CPU: 1}, as ask_head in node_forward.c sends it:
 * SPREAD, or DEFAULT (sent only by busy nodes, which is when a real node asks for one). */
static void put_place(sim_t *s, luray_frame_t *f, uint32_t i, uint8_t strategy, uint8_t sub)
{
    uint64_t req = ++s->req_seq;
    place_req_t q;
    memset(&q, 0, sizeof(q));
    q.task = (luray_task_id_t){s->nodes[i].id, 1, req << LURAY_OID_INDEX_BITS};
    q.strategy = strategy;
    q.bundle = -1;
    q.n_res = 1;
    q.names[0] = "CPU";
    q.name_lens[0] = 3;
    q.amounts[0] = LURAY_RES_UNIT;
    luray_buf_t *b = luray_frame_begin(f, LURAY_MSG_PLACE, 0);
    luray_buf_put_u64(b, req);
    luray_buf_put_u32(b, 1);
    place_req_put(b, &q);
    luray_frame_end(f);
    s->t_sent[req & (RING - 1)] = now_ns();
    s->req_sub[req & (RING - 1)] = sub;
    s->phase_sent++;
    s->inflight++;
}

static uint32_t next_node(sim_t *s, bool busy)
{
    uint32_t *rr = busy ? &s->rr_busy : &s->rr_any;
    for (uint32_t k = 0; k < s->n; k++) {
        uint32_t i = (*rr)++ % s->n;
        if (!busy || s->nodes[i].busy)
            return i;
    }
    return 0;
}

/* At the steady rate: one task per frame, as a node asks for each task when it comes. */
static void send_place_one(sim_t *s)
{
    bool dflt = s->req_seq & 1;
    uint32_t i = next_node(s, dflt);
    luray_frame_t *f = &s->scratch_frame;
    luray_frame_reset(f);
    put_place(s, f, i, dflt ? 0 : 1, (uint8_t)(1 + s->cur_sub));
    send_frame(s, i, OUT_MSG, f);
}

/* At the maximum rate: batches from busy nodes whose replies arrive, as a node with many tasks
 * to place puts them all in one frame. */
static void send_place_batch(sim_t *s)
{
    uint32_t i = s->reach[s->rr_reach++ % s->n_reach];
    luray_frame_t *f = &s->scratch_frame;
    luray_frame_reset(f);
    for (uint32_t k = 0; k < s->batch; k++)
        put_place(s, f, i, (uint8_t)(k & 1 ? 0 : 1), (uint8_t)(0x80 | (1 + s->cur_sub)));
    send_frame(s, i, OUT_MSG, f);
}

/* ---- receiving ---- */

static void on_placed(sim_t *s, snode_t *x, luray_rd_t *r, uint64_t now)
{
    uint64_t req = luray_rd_u64(r);
    uint32_t count = luray_rd_u32(r);
    if (r->err) {
        s->bad_replies++;
        return;
    }
    s->placed_msgs++;
    for (uint32_t k = 0; k < count; k++) {
        luray_proto_rd_id(r);
        uint32_t to = luray_rd_u32(r);
        size_t alen = 0, wlen = 0;
        luray_rd_str(r, &alen);
        luray_rd_str(r, &wlen);
        if (r->err) {
            s->bad_replies++;
            return;
        }
        s->placed_entries++;
        s->placed_never += to == 0;
        s->placed_later += to == PLACE_LATER;
        s->placed_local += to == x->id;
    }
    if (!x->replies++ && x->busy)
        s->reach[s->n_reach++] = (uint32_t)(x - s->nodes);
    if (req == 0 || req > s->req_seq || s->req_seq - req >= RING)
        return;
    uint8_t tag = s->req_sub[req & (RING - 1)];
    if (!tag)
        return; /* answered twice? counted once */
    s->req_sub[req & (RING - 1)] = 0;
    if (s->inflight)
        s->inflight--;
    s->last_reply_ns = now;
    double ms = (double)(now - s->t_sent[req & (RING - 1)]) / 1e6;
    if (tag & 0x80) {
        s->max_answered++;
        vec_push(&s->lat_max, ms);
    } else {
        s->rate_answered++;
        vec_push(&s->lat[tag - 1], ms);
    }
}

static void on_reply(sim_t *s, conn_t *c, const uint8_t *msg, size_t len, uint64_t now)
{
    snode_t *x = &s->nodes[c->node];
    const uint8_t *frame;
    size_t flen;
    uint32_t sender;
    if (luray_auth_open(&x->auth, msg, len, &frame, &flen, &sender) != 0 ||
        sender != NODE_HEAD_ID || luray_frame_check(frame, flen) != 0) {
        s->bad_replies++;
        return;
    }
    size_t pos = 0;
    luray_msg_t m;
    while (luray_frame_next(frame, flen, &pos, &m) == 1) {
        luray_rd_t r;
        luray_rd_init(&r, m.body, m.len);
        switch (m.type) {
        case LURAY_MSG_NREG_OK: {
            uint32_t st = luray_rd_u32(&r);
            size_t wl = 0;
            const char *why = luray_rd_str(&r, &wl);
            if (r.err)
                s->bad_replies++;
            else if (st == 0) {
                s->nreg_ok += !x->registered;
                x->registered = true;
            } else if (s->nreg_refused++ == 0)
                logf_("the head refused node %08x: %.*s", x->id, (int)wl, why);
            break;
        }
        case LURAY_MSG_REREG:
            /* The head does not know this node (any more): register again, as a node does. */
            s->rereg++;
            x->registered = false;
            send_nreg(s, c->node);
            break;
        case LURAY_MSG_NODEDEAD: {
            uint32_t id = luray_rd_u32(&r);
            size_t wl = 0;
            const char *why = luray_rd_str(&r, &wl);
            if (r.err)
                s->bad_replies++;
            else if (id == x->id) {
                if (!s->nodedead_self++)
                    snprintf(s->first_death, sizeof(s->first_death), "node %08x: %.*s", id,
                             (int)(wl < 150 ? wl : 150), why);
            } else
                s->nodedead_other++;
            break;
        }
        case LURAY_MSG_PLACED:
            on_placed(s, x, &r, now);
            break;
        default:
            s->other_msgs++;
        }
    }
}

static void on_accept(sim_t *s, conn_t *l)
{
    for (;;) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            /* out of descriptors, say: this node takes no more connections, rather than the
             * loop spinning on a listener that stays readable */
            if (!s->accept_failed++)
                logf_("node %08x: accept failed: %s", s->nodes[l->node].id, strerror(errno));
            epoll_ctl(s->ep, EPOLL_CTL_DEL, l->fd, NULL);
            return;
        }
        conn_t *c = malloc(sizeof(*c));
        if (!c || conn_add(s, c, fd, C_IN, l->node) != 0) {
            free(c);
            close(fd);
            continue;
        }
        c->next = s->ins;
        if (s->ins)
            s->ins->prev = c;
        s->ins = c;
        s->nodes[l->node].in_conns++;
    }
}

static void on_readable(sim_t *s, conn_t *c, uint64_t now)
{
    for (;;) {
        if (c->rx_len == c->rx_cap) {
            size_t cap = c->rx_cap ? c->rx_cap * 2 : 4096;
            uint8_t *p = realloc(c->rx, cap);
            if (!p)
                return conn_fail(s, c, "out of memory", 0);
            c->rx = p;
            c->rx_cap = cap;
        }
        size_t room = c->rx_cap - c->rx_len;
        ssize_t got = recv(c->fd, c->rx + c->rx_len, room, 0);
        if (got == 0)
            return conn_fail(s, c, "was closed by the head", 0);
        if (got < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            return conn_fail(s, c, "failed", errno);
        }
        c->rx_len += (size_t)got;
        if ((size_t)got < room)
            break;
    }
    size_t pos = 0;
    if (!c->hdr_in) {
        if (c->rx_len < SP_HDR)
            return;
        uint8_t want[SP_HDR];
        sp_header(want, c->kind == C_OUT ? SP_PULL : SP_PUSH);
        if (memcmp(c->rx, want, SP_HDR) != 0)
            return conn_fail(s, c, "sent an unexpected SP header", 0);
        c->hdr_in = true;
        pos = SP_HDR;
        if (c->kind == C_OUT) {
            s->connecting--;
            s->conns_ready++;
            conn_start_next(s);
        }
    }
    if (c->kind == C_OUT) {
        if (c->rx_len > pos)
            return conn_fail(s, c, "carried data on a PUSH connection", 0);
        c->rx_len = 0;
        return;
    }
    while (c->rx_len - pos >= 8) {
        uint64_t len = 0;
        for (int b = 0; b < 8; b++)
            len = len << 8 | c->rx[pos + b];
        if (len > (1ull << 31))
            return conn_fail(s, c, "sent a message too large", 0);
        if (c->rx_len - pos - 8 < len)
            break;
        on_reply(s, c, c->rx + pos + 8, (size_t)len, now);
        pos += 8 + (size_t)len;
    }
    memmove(c->rx, c->rx + pos, c->rx_len - pos);
    c->rx_len -= pos;
}

/* ---- the loop ---- */

static void schedule(sim_t *s, uint64_t now)
{
    if (s->beating && now > s->beat_t0) {
        uint64_t due = (now - s->beat_t0) / (s->period_ns / s->n);
        if (due > s->beats_sent + s->n)
            s->beats_sent = due - s->n; /* never more than one beat per node in a burst */
        while (s->beats_sent < due)
            send_beat(s, (uint32_t)(s->beats_sent++ % s->n));
    }
    if (s->phase == PH_RATE && now > s->place_t0) {
        uint64_t due = (uint64_t)((double)(now - s->place_t0) / 1e9 * s->rate);
        while (s->phase_sent < due)
            send_place_one(s);
    } else if (s->phase == PH_MAX && s->n_reach) {
        while (s->inflight + s->batch <= s->window)
            send_place_batch(s);
    }
}

/* Runs the simulated nodes until `until` (monotonic ns). */
static int pump(sim_t *s, uint64_t until)
{
    struct epoll_event evs[256];
    for (;;) {
        uint64_t now = now_ns();
        if (g_stop)
            return LURAY_EINVAL;
        schedule(s, now);
        if (now >= until)
            return 0;
        uint64_t left = until - now;
        int ms = left > 2000000 ? 2 : (int)(left / 1000000);
        int k = epoll_wait(s->ep, evs, 256, ms);
        if (k < 0 && errno != EINTR)
            return LURAY_EIO;
        now = now_ns();
        for (int e = 0; e < k; e++) {
            conn_t *c = evs[e].data.ptr;
            if (c->dead)
                continue;
            if (c->kind == C_LISTEN) {
                on_accept(s, c);
                continue;
            }
            if (evs[e].events & EPOLLOUT)
                conn_flush(s, c);
            if (!c->dead && evs[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                on_readable(s, c, now);
        }
        while (s->n_graves)
            conn_free_in(s, s->graves[--s->n_graves]);
    }
}

static int head_alive(sim_t *s)
{
    if (kill(s->head_pid, 0) != 0) {
        logf_("the head (pid %d) is gone", (int)s->head_pid);
        return LURAY_ENOENT;
    }
    return 0;
}

/* A measured phase: SUBS sub-windows, a sample of the head at each boundary. */
static int measure(sim_t *s, double secs, sample_t smp[SUBS + 1])
{
    int rc = head_sample(s, &smp[0]);
    for (int k = 0; k < SUBS && rc == 0; k++) {
        s->cur_sub = k;
        rc = pump(s, smp[k].ns + (uint64_t)(secs / SUBS * 1e9));
        if (rc == 0)
            rc = head_sample(s, &smp[k + 1]);
    }
    return rc ? rc : head_alive(s);
}

/* ---- output ---- */

/* A JSON number: JSON has no NaN or infinities (a figure with nothing measured is null). */
static void put_num(double x)
{
    if (x != x || x == 1.0 / 0.0 || x == -1.0 / 0.0)
        fputs("null", stdout);
    else
        printf("%.6g", x);
}

/* One figure as a JSON line, with the fields of B.emit in scripts/bench/lib/bench.lua; extra
 * holds further `"key": value` pairs. */
static void emit(const char *name, double value, const char *unit, const double *runs, int n,
                 const char *extra)
{
    printf("{\"name\": \"%s\", \"value\": ", name);
    put_num(value);
    printf(", \"unit\": \"%s\"", unit);
    if (n) {
        printf(", \"runs\": [");
        for (int k = 0; k < n; k++) {
            printf("%s", k ? ", " : "");
            put_num(runs[k]);
        }
        printf("]");
    }
    printf(", \"system\": \"luray\"%s%s}\n", extra && *extra ? ", " : "", extra ? extra : "");
    fflush(stdout);
}

/* ---- set-up ---- */

static int raise_nofile(rlim_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return LURAY_EIO;
    if (rl.rlim_cur >= need)
        return 0;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        logf_("%llu file descriptors are needed; the hard limit is %llu (ulimit -Hn)",
              (unsigned long long)need, (unsigned long long)rl.rlim_max);
        return LURAY_EINVAL;
    }
    rl.rlim_cur = need;
    return setrlimit(RLIMIT_NOFILE, &rl) == 0 ? 0 : LURAY_EIO;
}

static int listen_node(sim_t *s, uint32_t i)
{
    snode_t *x = &s->nodes[i];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
        logf_("cannot listen for node %u: %s", i, strerror(errno));
        if (fd >= 0)
            close(fd);
        return LURAY_EIO;
    }
    snprintf(x->addr, sizeof(x->addr), "tcp://127.0.0.1:%d", ntohs(a.sin_port));
    return conn_add(s, &x->listen, fd, C_LISTEN, i);
}

static int make_nodes(sim_t *s)
{
    s->nodes = calloc(s->n, sizeof(snode_t));
    s->reach = calloc(s->n, sizeof(uint32_t));
    s->t_sent = calloc(RING, sizeof(uint64_t));
    s->req_sub = calloc(RING, 1);
    if (!s->nodes || !s->reach || !s->t_sent || !s->req_sub)
        return LURAY_ENOMEM;
    for (uint32_t i = 0; i < s->n; i++) {
        snode_t *x = &s->nodes[i];
        bool dup;
        do {
            x->id = randombytes_random();
            dup = x->id <= 0xff;
            for (uint32_t j = 0; j < i && !dup; j++)
                dup = s->nodes[j].id == x->id;
        } while (dup);
        x->busy = i % 2 == 0;
        int rc = luray_auth_init(&x->auth, s->key, x->id);
        if (rc == 0)
            rc = listen_node(s, i);
        if (rc)
            return rc;
    }
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sim_nodes --port P --token FILE --pid PID --luray BIN [options]\n"
            "Plays simulated nodes against the head listening at 127.0.0.1:P (pid PID) and\n"
            "prints the head's CPU, memory and placement rate as JSON lines. BIN is the luray\n"
            "binary (for `luray status --json`; LURAY_TMPDIR must name the head's folder).\n"
            "  --nodes N            simulated nodes (default 1000)\n"
            "  --beats-seconds S    heartbeats only, measured (default 12)\n"
            "  --seconds S          heartbeats and placements at --rate, measured (default 20)\n"
            "  --rate R             placement requests per second (default 1000)\n"
            "  --max-seconds S      placements as fast as the head answers (default 6)\n"
            "  --batch B            tasks per frame at the maximum rate (default 64)\n"
            "  --window W           requests in flight at the maximum rate (default 4096)\n");
}

static int parse_args(sim_t *s, int argc, char **argv)
{
    static const struct option opts[] = {
        {"port", 1, 0, 'p'},    {"token", 1, 0, 't'},         {"pid", 1, 0, 'P'},
        {"luray", 1, 0, 'l'},   {"nodes", 1, 0, 'n'},         {"seconds", 1, 0, 's'},
        {"rate", 1, 0, 'r'},    {"beats-seconds", 1, 0, 'b'}, {"max-seconds", 1, 0, 'm'},
        {"batch", 1, 0, 'B'},   {"window", 1, 0, 'w'},        {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    s->n = 1000;
    s->seconds = 20;
    s->beats_seconds = 12;
    s->max_seconds = 6;
    s->rate = 1000;
    s->batch = 64;
    s->window = 4096;
    s->period_ns = 1000000000ull;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'p': s->port = atoi(optarg); break;
        case 't': s->token = optarg; break;
        case 'P': s->head_pid = (pid_t)atoi(optarg); break;
        case 'l': s->luray = optarg; break;
        case 'n': s->n = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 's': s->seconds = atof(optarg); break;
        case 'r': s->rate = atof(optarg); break;
        case 'b': s->beats_seconds = atof(optarg); break;
        case 'm': s->max_seconds = atof(optarg); break;
        case 'B': s->batch = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'w': s->window = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return LURAY_EINVAL;
        }
    }
    if (s->port <= 0 || s->port > 65535 || !s->token || s->head_pid <= 0 || !s->luray) {
        usage(stderr);
        return LURAY_EINVAL;
    }
    if (s->n < 2 || s->n > 100000 || s->seconds <= 0 || s->beats_seconds <= 0 ||
        s->max_seconds <= 0 || s->rate <= 0 || s->batch < 1 || s->batch > 4096 ||
        s->window < s->batch || s->window > RING / 4) {
        logf_("an option is out of range (--nodes 2..100000, seconds and rate > 0, "
              "1 <= --batch <= --window <= %u)", RING / 4);
        return LURAY_EINVAL;
    }
    return 0;
}

/* ---- the run ---- */

/* Registration is over when the head's status counts every node alive. When the status cannot
 * be read (a head that ran out of sockets answers no new client), when every node had its
 * NREG_OK or the replies stopped coming. */
static int wait_registered(sim_t *s, status_t *st)
{
    uint64_t t0 = now_ns(), deadline = t0 + 60000000000ull, changed = t0, last = s->nreg_ok;
    for (;;) {
        int rc = pump(s, now_ns() + 500000000ull);
        if (rc == 0)
            rc = head_alive(s);
        if (rc)
            return rc;
        rc = s->status_broken ? LURAY_EIO : head_status(s, st);
        uint64_t now = now_ns();
        if (rc == 0 && (uint32_t)st->alive >= s->n + 1)
            return 0;
        if (rc && !s->status_broken) {
            logf_("`luray status --json` failed (%s) with %llu nodes registered; the head's "
                  "own count of alive nodes is not available from now on",
                  luray_strerror(rc), (unsigned long long)s->nreg_ok);
            s->status_broken = true;
        }
        if (s->nreg_ok != last) {
            last = s->nreg_ok;
            changed = now;
        }
        if (rc && (s->nreg_ok == s->n || now - changed > 3000000000ull)) {
            st->alive = -1;
            return 0;
        }
        if (now > deadline) {
            logf_("only %d of %u nodes alive at the head after 60 s (%llu NREG_OK received)",
                  st->alive - 1, s->n, (unsigned long long)s->nreg_ok);
            return LURAY_ETIMEDOUT;
        }
    }
}

static void check_alive(sim_t *s, const char *when, status_t *st)
{
    if (s->status_broken || head_status(s, st) != 0) {
        memset(st, 0, sizeof(*st));
        st->alive = -1;
        s->status_broken = true;
        return;
    }
    if ((uint32_t)st->alive != s->n + 1)
        logf_("%s: the head says %d of %u simulated nodes are alive (%d dead; first: %s)", when,
              st->alive - 1, s->n, st->dead, st->death[0] ? st->death : "?");
}

/* Appends `"key": value` for what the head's status said, or that it could not be read. */
static void put_status(char *buf, size_t len, const char *key, const status_t *st, double v)
{
    size_t at = strlen(buf);
    if (st->alive < 0)
        snprintf(buf + at, len - at, ", \"head_status\": \"unavailable\"");
    else
        snprintf(buf + at, len - at, ", \"%s\": %.6g", key, v);
}

/* Everything the simulated nodes hold, for a clean exit (descriptors go with the process). */
static void sim_close(sim_t *s)
{
    for (uint32_t i = 0; s->nodes && i < s->n; i++) {
        snode_t *x = &s->nodes[i];
        for (int k = 0; k < OUT_CONNS; k++) {
            if (!x->out[k])
                continue;
            free(x->out[k]->rx);
            luray_buf_close(&x->out[k]->tx);
            free(x->out[k]);
        }
        luray_auth_close(&x->auth);
    }
    while (s->n_graves)
        conn_free_in(s, s->graves[--s->n_graves]);
    while (s->ins)
        conn_free_in(s, s->ins);
    free(s->nodes);
    free(s->reach);
    free(s->t_sent);
    free(s->req_sub);
    free(s->scratch);
    for (int k = 0; k < SUBS; k++)
        free(s->lat[k].v);
    free(s->lat_max.v);
    luray_frame_close(&s->beat_busy);
    luray_frame_close(&s->beat_idle);
    luray_frame_close(&s->scratch_frame);
    sodium_memzero(s->key, sizeof(s->key));
    if (s->ep >= 0)
        close(s->ep);
}

static int sim_run(sim_t *s);

int main(int argc, char **argv)
{
    static sim_t sim;
    sim_t *s = &sim;
    g_t0 = now_ns();
    s->ep = -1;
    if (parse_args(s, argc, argv) != 0)
        return 2;
    char err[300];
    if (luray_key_load(s->token, s->key, err, sizeof(err)) != 0) {
        logf_("%s", err);
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    if (raise_nofile((rlim_t)s->n * (OUT_CONNS + 3) + 1024) != 0) {
        logf_("cannot raise the file descriptor limit for %u nodes", s->n);
        return 1;
    }
    s->ep = epoll_create1(EPOLL_CLOEXEC);
    luray_frame_init(&s->scratch_frame);
    build_beat(&s->beat_busy, true);
    build_beat(&s->beat_idle, false);
    int rc;
    if (s->ep < 0 || make_nodes(s) != 0) {
        logf_("cannot set up %u simulated nodes", s->n);
        rc = 1;
    } else
        rc = sim_run(s);
    sim_close(s);
    return rc;
}

/* The phases, then the figures: 0, 1 when a figure could not be measured, 3 when the head did
 * not serve every simulated node. */
static int sim_run(sim_t *s)
{
    int rc = 0;
    status_t st0, st_reg, st_beats = {0}, st_rate = {0}, st_max0 = {0}, st_max = {0};
    sample_t before, reg, beats[SUBS + 1], rate[SUBS + 1], maxs[SUBS + 1];
    uint64_t t_start = now_ns();
    if (head_sample(s, &before) != 0 || head_status(s, &st0) != 0) {
        logf_("cannot read the head (pid %d) or its status", (int)s->head_pid);
        return 1;
    }

    /* 1. connect, register, settle */
    uint64_t deadline = now_ns() + 30000000000ull;
    while (rc == 0 && s->conns_ready + s->conns_failed < s->n * OUT_CONNS) {
        if (now_ns() > deadline) {
            logf_("%u of %u connections to the head made in 30 s", s->conns_ready,
                  s->n * OUT_CONNS);
            return 1;
        }
        conn_start_next(s);
        rc = pump(s, now_ns() + 10000000);
    }
    if (rc || s->conns_failed) {
        logf_("%u connections to the head failed", s->conns_failed);
        return 1;
    }
    uint64_t t_conn = now_ns();
    logf_("%u connections to the head made in %.2f s; registering %u nodes",
          s->n * OUT_CONNS, (double)(t_conn - t_start) / 1e9, s->n);
    for (uint32_t i = 0; i < s->n; i++)
        send_nreg(s, i);
    s->beating = true;
    s->beat_t0 = now_ns();
    if (wait_registered(s, &st_reg) != 0)
        return 1;
    if (st_reg.alive < 0)
        logf_("registered in %.2f s: %llu of %u nodes had NREG_OK",
              (double)(now_ns() - t_conn) / 1e9, (unsigned long long)s->nreg_ok, s->n);
    else
        logf_("registered in %.2f s: %llu of %u nodes had NREG_OK; the head counts %d alive",
              (double)(now_ns() - t_conn) / 1e9, (unsigned long long)s->nreg_ok, s->n,
              st_reg.alive - 1);
    rc = pump(s, now_ns() + 2000000000ull); /* every node beats twice */
    if (rc == 0)
        rc = head_sample(s, &reg);

    /* 2. heartbeats only */
    if (rc == 0) {
        logf_("heartbeats only for %.0f s", s->beats_seconds);
        rc = measure(s, s->beats_seconds, beats);
    }
    if (rc == 0)
        check_alive(s, "after the heartbeats-only phase", &st_beats);

    /* 3. heartbeats and placements at the steady rate */
    uint64_t rate_sent = 0;
    if (rc == 0) {
        logf_("heartbeats and %.0f placements/s for %.0f s", s->rate, s->seconds);
        s->phase = PH_RATE;
        s->place_t0 = now_ns();
        s->phase_sent = 0;
        rc = measure(s, s->seconds, rate);
        s->phase = PH_NONE;
        rate_sent = s->phase_sent;
        if (rc == 0)
            rc = pump(s, now_ns() + 1000000000ull); /* late replies */
        if (rc == 0)
            check_alive(s, "after the steady placement phase", &st_rate);
    }

    /* 4. placements as fast as the head answers */
    double max_runs[SUBS] = {0}, dec_per_s = 0;
    bool max_ok = false;
    if (rc == 0 && s->n_reach == 0)
        logf_("no busy node had a PLACED reply: the maximum-rate phase is skipped");
    else if (rc == 0) {
        logf_("placements as fast as the head answers for %.0f s (batches of %u, %u in flight, "
              "from %u nodes)", s->max_seconds, s->batch, s->window, s->n_reach);
        s->phase = PH_MAX;
        s->inflight = 0;
        s->phase_sent = 0;
        s->last_reply_ns = now_ns();
        rc = pump(s, now_ns() + 1000000000ull); /* warm-up */
        if (rc == 0)
            check_alive(s, "at the maximum rate", &st_max0);
        uint64_t t_dec0 = now_ns();
        if (rc == 0)
            rc = head_sample(s, &maxs[0]);
        for (int k = 0; k < SUBS && rc == 0; k++) {
            uint64_t a0 = s->max_answered;
            rc = pump(s, maxs[k].ns + (uint64_t)(s->max_seconds / SUBS * 1e9));
            if (rc == 0)
                rc = head_sample(s, &maxs[k + 1]);
            if (rc == 0)
                max_runs[k] = (double)(s->max_answered - a0) /
                              ((double)(maxs[k + 1].ns - maxs[k].ns) / 1e9);
            if (rc == 0 && now_ns() - s->last_reply_ns > NO_REPLY_NS) {
                logf_("no PLACED reply for %.0f s at the maximum rate", NO_REPLY_NS / 1e9);
                rc = LURAY_ETIMEDOUT;
            }
        }
        if (rc == 0)
            rc = head_alive(s);
        if (rc == 0)
            check_alive(s, "after the maximum rate", &st_max);
        dec_per_s = (st_max.decisions - st_max0.decisions) / ((double)(now_ns() - t_dec0) / 1e9);
        s->phase = PH_NONE;
        max_ok = rc == 0;
        if (rc == 0)
            rc = pump(s, now_ns() + 1000000000ull);
    }
    uint64_t t_end = now_ns();
    if (rc) {
        logf_("stopped early: %s", luray_strerror(rc));
        return 1;
    }

    /* 5. figures */
    char extra[1500];
    double runs[SUBS], v;
    uint32_t answering = 0, registered = 0, no_conn = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        answering += s->nodes[i].replies > 0;
        registered += s->nodes[i].registered;
        no_conn += s->nodes[i].in_conns == 0;
    }
    uint64_t rate_lost = rate_sent - s->rate_answered;
    for (int k = 0; k < SUBS; k++)
        runs[k] = cpu_percent(&beats[k], &beats[k + 1]);
    v = median(runs, SUBS);
    snprintf(extra, sizeof(extra),
             "\"nodes\": %u, \"beats_per_node_per_s\": 1, \"seconds\": %.3g, \"goal_percent\": 10, "
             "\"sim_cpu_percent\": %.3g, \"nodes_registered\": %u",
             s->n, s->beats_seconds, sim_percent(&beats[0], &beats[SUBS]), registered);
    put_status(extra, sizeof(extra), "alive_nodes", &st_beats, st_beats.alive - 1);
    emit("sim_head_cpu_percent_beats_only", v, "% of one core", runs, SUBS, extra);
    logf_("head CPU, heartbeats only: %.2f%% of one core (goal: under 10%%)", v);

    for (int k = 0; k < SUBS; k++)
        runs[k] = cpu_percent(&rate[k], &rate[k + 1]);
    v = median(runs, SUBS);
    snprintf(extra, sizeof(extra),
             "\"nodes\": %u, \"beats_per_node_per_s\": 1, \"place_per_s\": %.6g, "
             "\"seconds\": %.3g, \"goal_percent\": 10, \"sim_cpu_percent\": %.3g, "
             "\"nodes_registered\": %u, \"nodes_answered\": %u, \"place_sent\": %llu, "
             "\"place_answered\": %llu, \"place_unanswered\": %llu",
             s->n, s->rate, s->seconds, sim_percent(&rate[0], &rate[SUBS]), registered, answering,
             (unsigned long long)rate_sent, (unsigned long long)s->rate_answered,
             (unsigned long long)rate_lost);
    put_status(extra, sizeof(extra), "alive_nodes", &st_rate, st_rate.alive - 1);
    if (st_rate.alive >= 0 && st_beats.alive >= 0)
        put_status(extra, sizeof(extra), "head_decisions", &st_rate,
                   st_rate.decisions - st_beats.decisions);
    emit("sim_head_cpu_percent", v, "% of one core", runs, SUBS, extra);
    logf_("head CPU, heartbeats + %.0f placements/s: %.2f%% of one core", s->rate, v);

    for (int k = 0; k < SUBS; k++)
        runs[k] = ((double)rate[k + 1].rss_kb - (double)before.rss_kb) / s->n;
    v = ((double)rate[SUBS].rss_kb - (double)before.rss_kb) / s->n;
    snprintf(extra, sizeof(extra),
             "\"nodes\": %u, \"rss_before_kb\": %llu, \"rss_registered_kb\": %llu, "
             "\"rss_after_beats_kb\": %llu, \"rss_steady_kb\": %llu, \"rss_after_max_kb\": %llu",
             s->n, (unsigned long long)before.rss_kb, (unsigned long long)reg.rss_kb,
             (unsigned long long)beats[SUBS].rss_kb, (unsigned long long)rate[SUBS].rss_kb,
             (unsigned long long)(max_ok ? maxs[SUBS].rss_kb : 0));
    emit("sim_head_rss_per_node_kb", v, "kB", runs, SUBS, extra);
    logf_("head RSS: %llu kB before, %llu kB registered, %llu kB after the steady phase: "
          "%.1f kB per node", (unsigned long long)before.rss_kb, (unsigned long long)reg.rss_kb,
          (unsigned long long)rate[SUBS].rss_kb, v);

    double p50[SUBS], p99[SUBS];
    vec_t all = {0};
    for (int k = 0; k < SUBS; k++) {
        for (size_t j = 0; j < s->lat[k].len; j++)
            vec_push(&all, s->lat[k].v[j]);
        p50[k] = quantile(&s->lat[k], 0.5);
        p99[k] = quantile(&s->lat[k], 0.99);
    }
    snprintf(extra, sizeof(extra),
             "\"nodes\": %u, \"place_per_s\": %.6g, \"answered\": %llu, \"unanswered\": %llu",
             s->n, s->rate, (unsigned long long)s->rate_answered, (unsigned long long)rate_lost);
    double a50 = quantile(&all, 0.5), a99 = quantile(&all, 0.99);
    emit("sim_place_latency_ms_p50", a50, "ms", p50, SUBS, extra);
    emit("sim_place_latency_ms_p99", a99, "ms", p99, SUBS, extra);
    free(all.v);
    logf_("PLACE round trip at %.0f/s: p50 %.3f ms, p99 %.3f ms (%llu answered, %llu not)",
          s->rate, a50, a99, (unsigned long long)s->rate_answered, (unsigned long long)rate_lost);

    if (max_ok) {
        v = median(max_runs, SUBS);
        double secs = (double)(maxs[SUBS].ns - maxs[0].ns) / 1e9;
        double hcpu = cpu_percent(&maxs[0], &maxs[SUBS]), scpu = sim_percent(&maxs[0], &maxs[SUBS]);
        snprintf(extra, sizeof(extra),
                 "\"nodes\": %u, \"batch\": %u, \"window\": %u, \"seconds\": %.3g, "
                 "\"head_cpu_percent\": %.3g, \"sim_cpu_percent\": %.3g, \"latency_ms_p50\": %.4g, "
                 "\"asking_nodes\": %u",
                 s->n, s->batch, s->window, secs, hcpu, scpu, quantile(&s->lat_max, 0.5),
                 s->n_reach);
        if (st_max.alive >= 0 && st_max0.alive >= 0)
            put_status(extra, sizeof(extra), "head_decisions_per_s", &st_max, dec_per_s);
        emit("sim_head_decisions_per_second", v, "decisions/s", max_runs, SUBS, extra);
        logf_("maximum: %.0f decisions/s answered (head CPU %.0f%%, simulator %.0f%%)", v, hcpu,
              scpu);
    }

    logf_("replies: %llu NREG_OK (%u nodes registered), %u of %u nodes had a PLACED reply, "
          "%u nodes never had a connection from the head, %llu connections closed by the head; "
          "%llu REREG, %llu NODEDEAD about a simulated node itself%s%s%s, %llu about others; "
          "%llu bad, %llu other",
          (unsigned long long)s->nreg_ok, registered, answering, s->n, no_conn,
          (unsigned long long)s->in_closed, (unsigned long long)s->rereg,
          (unsigned long long)s->nodedead_self, s->first_death[0] ? " (first: " : "",
          s->first_death, s->first_death[0] ? ")" : "", (unsigned long long)s->nodedead_other,
          (unsigned long long)s->bad_replies, (unsigned long long)s->other_msgs);
    logf_("decisions answered: %llu (%llu to the asking node, %llu never, %llu later); "
          "whole run %.1f s",
          (unsigned long long)s->placed_entries, (unsigned long long)s->placed_local,
          (unsigned long long)s->placed_never, (unsigned long long)s->placed_later,
          (double)(t_end - t_start) / 1e9);
    bool bad = registered < s->n || answering < s->n || s->nodedead_self || s->bad_replies ||
               s->status_broken || (st_beats.alive >= 0 && st_beats.alive != (int)s->n + 1) ||
               (st_rate.alive >= 0 && st_rate.alive != (int)s->n + 1);
    if (bad)
        logf_("the head did not serve every simulated node (see above)");
    return bad ? 3 : 0;
}
