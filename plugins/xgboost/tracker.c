/* The rabit tracker's side of the protocol of xgboost 1.x (the Python RabitTracker of
 * python-package/xgboost/tracker.py, which libxgboost's rabit engine talks to): handshake with a
 * magic number, rank assignment once every worker has asked, tree and ring neighbour links
 * brokered between workers, "print" and "shutdown" commands. Integers are native 32-bit ints,
 * strings an int length then the bytes, as rabit sends them. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "luray/errors.h"

#include "link_map.h"
#include "tracker.h"

/* A worker that stops answering mid-handshake fails the job instead of hanging the tracker. */
#define IO_TIMEOUT_S 60
#define MAX_NAME 4096
#define MAX_PRINT (1 << 20)
/* Rounds of "these links failed, try again" one worker may ask for. */
#define MAX_LINK_ROUNDS 100
#define ERR_LEN 512

typedef struct {
    int fd;
    char host[NI_MAXHOST];
    int rank;
    int world_size;
    char *task_id;
    char *cmd;
    long seq; /* arrival order: keeps the rank sort stable */
} worker_t;

/* A worker that has ranks left to accept links from, and where they reach it. */
typedef struct {
    bool waiting;
    char host[NI_MAXHOST];
    int port;
    int wait_accept;
} waiter_t;

struct xgb_tracker {
    int listen_fd;
    int wake[2]; /* written by xgb_tracker_free to stop the thread */
    int port;
    int n;
    xgb_tracker_print_fn print;
    void *ctx;
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    xgb_tracker_state_t state; /* under lock */
    char err[ERR_LEN];         /* under lock */
};

/* One job's state, owned by the tracker's thread. */
typedef struct {
    xgb_tracker_t *t;
    int n;
    bool have_links;
    xgb_link_map_t links;
    waiter_t *wait_conn; /* by rank */
    char **job_map;      /* by rank: the task id that got it, or NULL */
    bool *shut;          /* by rank */
    int nshut;
    int *todo; /* ranks not given out yet, ascending */
    int ntodo;
    worker_t *pending; /* workers waiting for a rank */
    int npending;
    long seq;
    char err[ERR_LEN];
} job_t;

static int job_fail(job_t *job, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(job->err, sizeof(job->err), fmt, ap);
    va_end(ap);
    return code;
}

/* --- socket helpers ------------------------------------------------------------------------ */

static int io_error(ssize_t n)
{
    if (n == 0)
        return LURAY_ECLOSED;
    return (errno == EAGAIN || errno == EWOULDBLOCK) ? LURAY_ETIMEDOUT : LURAY_EIO;
}

static int recv_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return io_error(n);
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return io_error(n);
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int recv_int(int fd, int *v)
{
    return recv_all(fd, v, sizeof(*v));
}

static int send_int(int fd, int v)
{
    return send_all(fd, &v, sizeof(v));
}

/* A length-prefixed string of at most max bytes, NUL-terminated in *out (malloc'd). */
static int recv_str(int fd, char **out, int max)
{
    int len, rc;
    *out = NULL;
    if ((rc = recv_int(fd, &len)) != 0)
        return rc;
    if (len < 0 || len > max)
        return LURAY_EPROTO;
    char *s = malloc((size_t)len + 1);
    if (s == NULL)
        return LURAY_ENOMEM;
    if ((rc = recv_all(fd, s, (size_t)len)) != 0) {
        free(s);
        return rc;
    }
    s[len] = '\0';
    *out = s;
    return 0;
}

static int send_str(int fd, const char *s)
{
    size_t len = strlen(s);
    int rc = send_int(fd, (int)len);
    return rc != 0 ? rc : send_all(fd, s, len);
}

static const char *io_name(int rc)
{
    switch (rc) {
    case LURAY_ECLOSED: return "the worker closed the connection";
    case LURAY_ETIMEDOUT: return "the worker stopped answering";
    case LURAY_EPROTO: return "the worker sent a malformed message";
    case LURAY_ENOMEM: return "out of memory";
    default: return strerror(errno);
    }
}

static void worker_close(worker_t *w)
{
    if (w->fd >= 0)
        close(w->fd);
    free(w->task_id);
    free(w->cmd);
    w->fd = -1;
    w->task_id = NULL;
    w->cmd = NULL;
}

/* --- the job ------------------------------------------------------------------------------- */

static void job_close(job_t *job)
{
    for (int i = 0; i < job->npending; i++)
        worker_close(&job->pending[i]);
    if (job->job_map != NULL) {
        for (int r = 0; r < job->n; r++)
            free(job->job_map[r]);
    }
    if (job->have_links)
        xgb_link_map_close(&job->links);
    free(job->wait_conn);
    free(job->job_map);
    free(job->shut);
    free(job->todo);
    free(job->pending);
}

static int job_init(job_t *job, xgb_tracker_t *t)
{
    memset(job, 0, sizeof(*job));
    job->t = t;
    job->n = t->n;
    size_t n = (size_t)t->n;
    job->wait_conn = calloc(n, sizeof(waiter_t));
    job->job_map = calloc(n, sizeof(char *));
    job->shut = calloc(n, sizeof(bool));
    job->todo = malloc(n * sizeof(int));
    job->pending = calloc(n, sizeof(worker_t));
    if (!job->wait_conn || !job->job_map || !job->shut || !job->todo || !job->pending) {
        job_close(job);
        return LURAY_ENOMEM;
    }
    return 0;
}

/* Reads a new connection's greeting: magic, rank, world size, task id, command. */
static int worker_hello(job_t *job, worker_t *w)
{
    int magic, rc;
    if ((rc = recv_int(w->fd, &magic)) != 0)
        return job_fail(job, rc, "reading the magic number from %s: %s", w->host, io_name(rc));
    if (magic != XGB_TRACKER_MAGIC)
        return job_fail(job, LURAY_EPROTO, "%s sent magic number %d, not %d (not a rabit "
                        "worker?)", w->host, magic, XGB_TRACKER_MAGIC);
    if ((rc = send_int(w->fd, XGB_TRACKER_MAGIC)) != 0 || (rc = recv_int(w->fd, &w->rank)) != 0 ||
        (rc = recv_int(w->fd, &w->world_size)) != 0 ||
        (rc = recv_str(w->fd, &w->task_id, MAX_NAME)) != 0 ||
        (rc = recv_str(w->fd, &w->cmd, MAX_NAME)) != 0)
        return job_fail(job, rc, "greeting of %s: %s", w->host, io_name(rc));
    return 0;
}

static bool in_list(const int *list, int n, int v)
{
    for (int i = 0; i < n; i++) {
        if (list[i] == v)
            return true;
    }
    return false;
}

/* Tells worker w its rank and neighbours, then brokers its links until it reports none failed:
 * it connects to the neighbours already listening and is told how many will connect to it. */
static int assign_rank(job_t *job, worker_t *w, int rank)
{
    const xgb_link_map_t *m = &job->links;
    int nn = m->ntree[rank], rc = 0;
    int nnset[XGB_TREE_MAX_LINKS + 2];
    memcpy(nnset, &m->tree[rank * XGB_TREE_MAX_LINKS], (size_t)nn * sizeof(int));
    w->rank = rank;
    if ((rc = send_int(w->fd, rank)) != 0 || (rc = send_int(w->fd, m->parent[rank])) != 0 ||
        (rc = send_int(w->fd, job->n)) != 0 || (rc = send_int(w->fd, nn)) != 0)
        goto err_io;
    for (int i = 0; i < nn; i++) {
        if ((rc = send_int(w->fd, nnset[i])) != 0)
            goto err_io;
    }
    int ring[2] = {m->prev[rank], m->next[rank]};
    for (int i = 0; i < 2; i++) {
        int r = ring[i];
        if (r == -1 || r == rank) {
            r = -1;
        } else if (!in_list(nnset, nn, r)) {
            nnset[nn++] = r;
        }
        if ((rc = send_int(w->fd, r)) != 0)
            goto err_io;
    }
    for (int round = 0; round < MAX_LINK_ROUNDS; round++) {
        int ngood, good[XGB_TREE_MAX_LINKS + 2], ngoodset = 0;
        if ((rc = recv_int(w->fd, &ngood)) != 0)
            goto err_io;
        if (ngood < 0 || ngood > nn)
            return job_fail(job, LURAY_EPROTO, "rank %d reports %d good links of %d", rank, ngood,
                            nn);
        for (int i = 0; i < ngood; i++) {
            int r;
            if ((rc = recv_int(w->fd, &r)) != 0)
                goto err_io;
            if (!in_list(nnset, nn, r))
                return job_fail(job, LURAY_EPROTO, "rank %d reports a link to %d, not a "
                                "neighbour", rank, r);
            if (!in_list(good, ngoodset, r))
                good[ngoodset++] = r;
        }
        int nbad = 0, conn[XGB_TREE_MAX_LINKS + 2], nconn = 0;
        for (int i = 0; i < nn; i++) {
            if (in_list(good, ngoodset, nnset[i]))
                continue;
            nbad++;
            if (job->wait_conn[nnset[i]].waiting)
                conn[nconn++] = nnset[i];
        }
        if ((rc = send_int(w->fd, nconn)) != 0 || (rc = send_int(w->fd, nbad - nconn)) != 0)
            goto err_io;
        for (int i = 0; i < nconn; i++) {
            const waiter_t *peer = &job->wait_conn[conn[i]];
            if ((rc = send_str(w->fd, peer->host)) != 0 ||
                (rc = send_int(w->fd, peer->port)) != 0 || (rc = send_int(w->fd, conn[i])) != 0)
                goto err_io;
        }
        int nerr, port;
        if ((rc = recv_int(w->fd, &nerr)) != 0)
            goto err_io;
        if (nerr != 0)
            continue;
        if ((rc = recv_int(w->fd, &port)) != 0)
            goto err_io;
        for (int i = 0; i < nconn; i++) {
            waiter_t *peer = &job->wait_conn[conn[i]];
            if (--peer->wait_accept == 0)
                peer->waiting = false;
        }
        if (nbad - nconn > 0) {
            waiter_t *self = &job->wait_conn[rank];
            self->waiting = true;
            snprintf(self->host, sizeof(self->host), "%s", w->host);
            self->port = port;
            self->wait_accept = nbad - nconn;
        }
        return 0;
    }
    return job_fail(job, LURAY_EPROTO, "rank %d failed to link to its neighbours %d times",
                    rank, MAX_LINK_ROUNDS);
err_io:
    return job_fail(job, rc, "linking rank %d (%s): %s", rank, w->host, io_name(rc));
}

/* Whether s is a plain non-negative decimal number (task ids "0", "1", ... sort by value). */
static bool is_decimal(const char *s, unsigned long long *v)
{
    if (*s == '\0')
        return false;
    unsigned long long x = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || x > (~0ULL - 9) / 10)
            return false;
        x = x * 10 + (unsigned long long)(*s - '0');
    }
    *v = x;
    return true;
}

/* Ranks go to waiting workers by host, then task id (numerically when both are numbers), then
 * arrival: workers that give task ids get ranks in their order. */
static int pending_cmp(const void *pa, const void *pb)
{
    const worker_t *a = pa, *b = pb;
    int c = strcmp(a->host, b->host);
    if (c != 0)
        return c;
    unsigned long long x, y;
    if (is_decimal(a->task_id, &x) && is_decimal(b->task_id, &y)) {
        if (x != y)
            return x < y ? -1 : 1;
    } else if ((c = strcmp(a->task_id, b->task_id)) != 0) {
        return c;
    }
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static void todo_remove(job_t *job, int rank)
{
    for (int i = 0; i < job->ntodo; i++) {
        if (job->todo[i] == rank) {
            memmove(&job->todo[i], &job->todo[i + 1], (size_t)(job->ntodo - i - 1) * sizeof(int));
            job->ntodo--;
            return;
        }
    }
}

/* The rank a worker already has: its own, or the one its task id got before (a restart). */
static int decide_rank(const job_t *job, const worker_t *w)
{
    if (w->rank >= 0)
        return w->rank;
    if (strcmp(w->task_id, "NULL") != 0) {
        for (int r = 0; r < job->n; r++) {
            if (job->job_map[r] != NULL && strcmp(job->job_map[r], w->task_id) == 0)
                return r;
        }
    }
    return -1;
}

/* Hands out the remaining ranks once every worker without one has asked. */
static int assign_pending(job_t *job)
{
    qsort(job->pending, (size_t)job->npending, sizeof(worker_t), pending_cmp);
    int rc = 0;
    for (int i = 0; i < job->npending && rc == 0; i++) {
        worker_t *w = &job->pending[i];
        int rank = job->todo[0];
        todo_remove(job, rank);
        if (strcmp(w->task_id, "NULL") != 0 && (job->job_map[rank] = strdup(w->task_id)) == NULL)
            rc = job_fail(job, LURAY_ENOMEM, "out of memory");
        else
            rc = assign_rank(job, w, rank);
    }
    for (int i = 0; i < job->npending; i++)
        worker_close(&job->pending[i]);
    job->npending = 0;
    return rc;
}

/* A "start" or "recover" command; takes over w (its socket stays open while it waits). */
static int handle_start(job_t *job, worker_t *w)
{
    int rc;
    bool start = strcmp(w->cmd, "start") == 0;
    if (!job->have_links) {
        if (!start)
            return job_fail(job, LURAY_EPROTO, "rank %d asked to %s before any worker started",
                            w->rank, w->cmd);
        if (w->world_size > 0 && w->world_size != job->n)
            return job_fail(job, LURAY_EINVAL, "a worker says the world size is %d, the tracker "
                            "serves %d workers", w->world_size, job->n);
        if ((rc = xgb_link_map_init(&job->links, job->n)) != 0)
            return job_fail(job, rc, "out of memory");
        job->have_links = true;
        for (int r = 0; r < job->n; r++)
            job->todo[r] = r;
        job->ntodo = job->n;
    } else if (w->world_size > 0 && w->world_size != job->n) {
        return job_fail(job, LURAY_EINVAL, "a worker says the world size is %d, the tracker "
                        "serves %d workers", w->world_size, job->n);
    }
    if (!start && w->rank < 0)
        return job_fail(job, LURAY_EPROTO, "a worker asked to recover without a rank");
    int rank = decide_rank(job, w);
    if (rank >= job->n)
        return job_fail(job, LURAY_EPROTO, "a worker asked for rank %d of %d", rank, job->n);
    if (rank >= 0) {
        todo_remove(job, rank);
        rc = assign_rank(job, w, rank);
        worker_close(w);
        return rc;
    }
    if (job->npending >= job->ntodo)
        return job_fail(job, LURAY_EPROTO, "more workers than the %d the tracker serves", job->n);
    job->pending[job->npending++] = *w;
    w->fd = -1;
    w->task_id = w->cmd = NULL;
    if (job->npending == job->ntodo)
        return assign_pending(job);
    return 0;
}

static int handle_shutdown(job_t *job, const worker_t *w)
{
    if (w->rank < 0 || w->rank >= job->n || job->shut[w->rank])
        return job_fail(job, LURAY_EPROTO, "shutdown from rank %d, which is not a running rank",
                        w->rank);
    if (job->wait_conn[w->rank].waiting)
        return job_fail(job, LURAY_EPROTO, "rank %d shut down before its neighbours linked to it",
                        w->rank);
    job->shut[w->rank] = true;
    job->nshut++;
    return 0;
}

static int handle_print(job_t *job, worker_t *w)
{
    char *msg;
    int rc = recv_str(w->fd, &msg, MAX_PRINT);
    if (rc != 0)
        return job_fail(job, rc, "print from %s: %s", w->host, io_name(rc));
    size_t len = strlen(msg);
    while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r' || msg[len - 1] == ' '))
        msg[--len] = '\0';
    if (job->t->print != NULL)
        job->t->print(job->t->ctx, msg);
    free(msg);
    return 0;
}

/* Serves one accepted connection. A connection that is not a rabit worker is dropped with a
 * note; a worker breaking the protocol fails the job (as an assertion ends the Python tracker). */
static int serve_connection(job_t *job, int fd, const struct sockaddr_storage *addr, socklen_t alen)
{
    worker_t w = {.fd = fd, .rank = -1, .world_size = -1, .seq = job->seq++};
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    /* The protocol is many small messages each way: no waiting to coalesce them. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (getnameinfo((const struct sockaddr *)addr, alen, w.host, sizeof(w.host), NULL, 0,
                    NI_NUMERICHOST) != 0)
        snprintf(w.host, sizeof(w.host), "?");
    int rc = worker_hello(job, &w);
    if (rc != 0) {
        if (job->t->print != NULL)
            job->t->print(job->t->ctx, job->err);
        worker_close(&w);
        return 0;
    }
    if (strcmp(w.cmd, "print") == 0)
        rc = handle_print(job, &w);
    else if (strcmp(w.cmd, "shutdown") == 0)
        rc = handle_shutdown(job, &w);
    else if (strcmp(w.cmd, "start") == 0 || strcmp(w.cmd, "recover") == 0)
        rc = handle_start(job, &w);
    else
        rc = job_fail(job, LURAY_EPROTO, "unknown command \"%.64s\" from %s", w.cmd, w.host);
    worker_close(&w);
    return rc;
}

static void set_state(xgb_tracker_t *t, xgb_tracker_state_t state, const char *err)
{
    pthread_mutex_lock(&t->lock);
    t->state = state;
    snprintf(t->err, sizeof(t->err), "%s", err ? err : "");
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

static void *tracker_main(void *arg)
{
    xgb_tracker_t *t = arg;
    job_t job;
    if (job_init(&job, t) != 0) {
        set_state(t, XGB_TRACKER_FAILED, "out of memory");
        return NULL;
    }
    xgb_tracker_state_t end = XGB_TRACKER_DONE;
    while (job.nshut < job.n) {
        struct pollfd fds[2] = {{.fd = t->listen_fd, .events = POLLIN},
                                {.fd = t->wake[0], .events = POLLIN}};
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            job_fail(&job, LURAY_EIO, "poll: %s", strerror(errno));
            end = XGB_TRACKER_FAILED;
            break;
        }
        if (fds[1].revents != 0) {
            end = XGB_TRACKER_STOPPED;
            break;
        }
        struct sockaddr_storage addr;
        socklen_t alen = sizeof(addr);
        int fd = accept4(t->listen_fd, (struct sockaddr *)&addr, &alen, SOCK_CLOEXEC);
        if (fd < 0)
            continue; /* EAGAIN, ECONNABORTED and the like: wait for the next one */
        if (serve_connection(&job, fd, &addr, alen) != 0) {
            end = XGB_TRACKER_FAILED;
            break;
        }
    }
    set_state(t, end, end == XGB_TRACKER_FAILED ? job.err : NULL);
    job_close(&job);
    return NULL;
}

/* --- public -------------------------------------------------------------------------------- */

static int open_listener(xgb_tracker_t *t, const char *host, int port, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char service[16];
    snprintf(service, sizeof(service), "%d", port);
    int gai = getaddrinfo(host, service, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "tracker host \"%s\": %s", host, gai_strerror(gai));
        return LURAY_EINVAL;
    }
    int fd = -1, saved = 0;
    for (struct addrinfo *a = res; a != NULL; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 256) == 0)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "tracker: cannot listen on %s:%d: %s", host, port, strerror(saved));
        return LURAY_EIO;
    }
    struct sockaddr_storage addr;
    socklen_t alen = sizeof(addr);
    char portbuf[16];
    if (getsockname(fd, (struct sockaddr *)&addr, &alen) != 0 ||
        getnameinfo((struct sockaddr *)&addr, alen, NULL, 0, portbuf, sizeof(portbuf),
                    NI_NUMERICSERV) != 0) {
        snprintf(err, errlen, "tracker: cannot read the port it listens on: %s", strerror(errno));
        close(fd);
        return LURAY_EIO;
    }
    t->listen_fd = fd;
    t->port = atoi(portbuf);
    return 0;
}

int xgb_tracker_start(xgb_tracker_t **out, int n_workers, const char *host, int port,
                      xgb_tracker_print_fn print, void *ctx, char *err, size_t errlen)
{
    *out = NULL;
    if (n_workers < 1 || port < 0 || port > 65535 || host == NULL || *host == '\0') {
        snprintf(err, errlen, "tracker: needs n_workers >= 1, a host and a port in 0..65535");
        return LURAY_EINVAL;
    }
    xgb_tracker_t *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        snprintf(err, errlen, "tracker: out of memory");
        return LURAY_ENOMEM;
    }
    t->listen_fd = t->wake[0] = t->wake[1] = -1;
    t->n = n_workers;
    t->print = print;
    t->ctx = ctx;
    t->state = XGB_TRACKER_RUNNING;
    int rc;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (pipe2(t->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        snprintf(err, errlen, "tracker: pipe: %s", strerror(errno));
        rc = LURAY_EIO;
        goto err_free;
    }
    if ((rc = open_listener(t, host, port, err, errlen)) != 0)
        goto err_free;
    if ((rc = pthread_create(&t->thread, NULL, tracker_main, t)) != 0) {
        snprintf(err, errlen, "tracker: cannot start its thread: %s", strerror(rc));
        rc = LURAY_EIO;
        goto err_free;
    }
    t->started = true;
    *out = t;
    return 0;
err_free:
    xgb_tracker_free(t);
    return rc;
}

int xgb_tracker_port(const xgb_tracker_t *t)
{
    return t->port;
}

xgb_tracker_state_t xgb_tracker_wait(xgb_tracker_t *t, int timeout_ms, char *err, size_t errlen)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    if (timeout_ms > 0) {
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&t->lock);
    while (t->state == XGB_TRACKER_RUNNING && timeout_ms != 0) {
        if (timeout_ms < 0)
            pthread_cond_wait(&t->cond, &t->lock);
        else if (pthread_cond_timedwait(&t->cond, &t->lock, &deadline) == ETIMEDOUT)
            break;
    }
    xgb_tracker_state_t state = t->state;
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", t->err);
    pthread_mutex_unlock(&t->lock);
    return state;
}

void xgb_tracker_free(xgb_tracker_t *t)
{
    if (t == NULL)
        return;
    if (t->started) {
        char one = 1;
        ssize_t n;
        do {
            n = write(t->wake[1], &one, 1);
        } while (n < 0 && errno == EINTR);
        pthread_join(t->thread, NULL);
    }
    if (t->listen_fd >= 0)
        close(t->listen_fd);
    if (t->wake[0] >= 0)
        close(t->wake[0]);
    if (t->wake[1] >= 0)
        close(t->wake[1]);
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
    free(t);
}
