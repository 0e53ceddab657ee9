/* The serve proxy's thread: its loop and the commands other threads send it, the routing table,
 * picking a replica (fewer requests in flight of two chosen at random), the bounded queues, and
 * the nanomsg links that carry requests to replicas and their responses back. */
#include "proxy_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <nanomsg/nn.h>
#include <nanomsg/pipeline.h>

#include "wire.h"

#define SWEEP_MS 50

uint64_t proxy_now_ms(void)
{
    return uv_hrtime() / 1000000;
}

void proxy_opts_default(proxy_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    snprintf(o->host, sizeof(o->host), "127.0.0.1");
    o->port = 8000;
    o->keep_alive_timeout_s = 5;
    o->request_read_timeout_s = 10;
    o->request_timeout_s = 0;
    o->max_header_bytes = 16 * 1024;
    o->max_body_bytes = 16 * 1024 * 1024;
}

/* ------------------------------------------------------------------ the id map */

static bool map_grow(proxy_t *p)
{
    size_t cap = p->map_cap ? p->map_cap * 2 : 1024;
    preq_t **m = calloc(cap, sizeof(*m));
    if (!m)
        return false;
    for (size_t i = 0; i < p->map_cap; i++) {
        for (preq_t *q = p->map[i], *nx; q; q = nx) {
            nx = q->map_next;
            q->map_next = m[q->id & (cap - 1)];
            m[q->id & (cap - 1)] = q;
        }
    }
    free(p->map);
    p->map = m;
    p->map_cap = cap;
    return true;
}

static bool map_put(proxy_t *p, preq_t *q)
{
    if (p->map_count >= p->map_cap && !map_grow(p))
        return false;
    preq_t **slot = &p->map[q->id & (p->map_cap - 1)];
    q->map_next = *slot;
    *slot = q;
    p->map_count++;
    return true;
}

static preq_t *map_take(proxy_t *p, uint64_t id)
{
    if (!p->map_cap)
        return NULL;
    for (preq_t **at = &p->map[id & (p->map_cap - 1)]; *at; at = &(*at)->map_next) {
        if ((*at)->id == id) {
            preq_t *q = *at;
            *at = q->map_next;
            q->map_next = NULL;
            p->map_count--;
            return q;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ lists */

static void list_push(preq_t **head, preq_t **tail, preq_t *q, bool front)
{
    q->prev = q->next = NULL;
    if (!*head) {
        *head = *tail = q;
    } else if (front) {
        q->next = *head;
        (*head)->prev = q;
        *head = q;
    } else {
        q->prev = *tail;
        (*tail)->next = q;
        *tail = q;
    }
}

static void list_remove(preq_t **head, preq_t **tail, preq_t *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        *head = q->next;
    if (q->next)
        q->next->prev = q->prev;
    else
        *tail = q->prev;
    q->prev = q->next = NULL;
}

void preq_free(preq_t *q)
{
    free(q->msg);
    free(q->resp);
    free(q);
}

/* Takes q out of whatever queue or replica holds it (its connection went away). */
void proxy_forget(proxy_t *p, preq_t *q)
{
    if (q->queued) {
        list_remove(&q->dep->qhead, &q->dep->qtail, q);
        q->dep->qlen--;
        q->queued = false;
        map_take(p, q->id);
    }
}

/* ------------------------------------------------------------------ replicas */

static rep_t *rep_new(dep_t *d, const char *id, const char *addr)
{
    rep_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    snprintf(r->id, sizeof(r->id), "%s", id);
    snprintf(r->addr, sizeof(r->addr), "%s", addr);
    r->sock = nn_socket(AF_SP, NN_PUSH);
    if (r->sock < 0 || nn_connect(r->sock, r->addr) < 0) {
        fprintf(stderr, "luray serve: proxy cannot connect to replica %s at %s: %s\n", id, addr,
                nn_strerror(nn_errno()));
        if (r->sock >= 0)
            nn_close(r->sock);
        free(r);
        return NULL;
    }
    sbuf_init(&r->frame);
    r->dep = d;
    r->active = true;
    r->next = d->reps;
    d->reps = r;
    return r;
}

static void rep_free(dep_t *d, rep_t *r)
{
    for (rep_t **at = &d->reps; *at; at = &(*at)->next) {
        if (*at == r) {
            *at = r->next;
            break;
        }
    }
    nn_close(r->sock);
    sbuf_free(&r->frame);
    free(r);
}

static rep_t *rep_find(proxy_t *p, const char *id, dep_t **dep)
{
    for (dep_t *d = p->deps; d; d = d->next)
        for (rep_t *r = d->reps; r; r = r->next)
            if (strcmp(r->id, id) == 0) {
                *dep = d;
                return r;
            }
    return NULL;
}

/* Appends q to r's frame; the frames go out after this loop turn (flush_replicas). */
static void rep_send(proxy_t *p, rep_t *r, preq_t *q)
{
    if (r->frame_count == 0) {
        r->frame.len = 0;
        r->frame.oom = false;
        sbuf_u32(&r->frame, SERVE_REQ_MAGIC);
        const char *addr = strncmp(r->addr, "tcp://", 6) == 0 && p->reply_tcp[0] ? p->reply_tcp
                                                                                  : p->reply_addr;
        sbuf_str(&r->frame, addr, strlen(addr));
        sbuf_u32(&r->frame, 0);
    }
    sbuf_put(&r->frame, q->msg, q->msg_len);
    r->frame_count++;
    q->rep = r;
    q->attempts++;
    r->inflight++;
    list_push(&r->head, &r->tail, q, false);
}

static void arm_retry(proxy_t *p);

static void flush_replicas(proxy_t *p)
{
    bool pending = false;
    for (dep_t *d = p->deps; d; d = d->next) {
        for (rep_t *r = d->reps; r; r = r->next) {
            if (!r->frame_count)
                continue;
            /* the count sits after the magic and the reply address */
            srd_t rd;
            srd_init(&rd, r->frame.data, r->frame.len);
            srd_u32(&rd);
            size_t alen;
            srd_str(&rd, &alen);
            for (int k = 0; k < 4; k++)
                r->frame.data[rd.pos + k] = (char)(r->frame_count >> (8 * k));
            if (r->frame.oom) {
                fprintf(stderr, "luray serve: proxy out of memory sending to %s\n", r->id);
                r->frame_count = 0;
                continue;
            }
            if (nn_send(r->sock, r->frame.data, r->frame.len, NN_DONTWAIT) >= 0) {
                r->frame_count = 0;
                r->frame.len = 0;
            } else {
                pending = true; /* not connected yet, or its buffer is full: again soon */
            }
        }
    }
    if (pending)
        arm_retry(p);
}

static void on_retry(uv_timer_t *t)
{
    proxy_t *p = t->data;
    p->retry_armed = false;
    flush_replicas(p);
}

static void arm_retry(proxy_t *p)
{
    if (p->retry_armed)
        return;
    p->retry_armed = true;
    uv_timer_start(&p->retry, on_retry, 2, 0);
}

/* ------------------------------------------------------------------ routing */

static dep_t *dep_for_path(proxy_t *p, const char *path, size_t len)
{
    dep_t *best = NULL;
    for (dep_t *d = p->deps; d; d = d->next) {
        if (!d->live || d->prefix_len > len || (best && best->prefix_len >= d->prefix_len))
            continue;
        if (memcmp(path, d->prefix, d->prefix_len) != 0)
            continue;
        /* "/a" takes "/a", "/a/..." and "/a?...", not "/ab" */
        bool edge = d->prefix_len == len || d->prefix[d->prefix_len - 1] == '/' ||
                    path[d->prefix_len] == '/';
        if (edge)
            best = d;
    }
    return best;
}

/* Of two replicas chosen at random, the one with fewer requests in flight; NULL if all are full. */
static rep_t *pick(dep_t *d)
{
    if (d->n_active == 0)
        return NULL;
    rep_t *cand[2] = {NULL, NULL};
    for (int k = 0; k < 2; k++) {
        int want = rand() % d->n_active, i = 0;
        for (rep_t *r = d->reps; r; r = r->next)
            if (r->active && i++ == want)
                cand[k] = r;
    }
    rep_t *best = cand[0];
    if (cand[1] && (!best || cand[1]->inflight < best->inflight))
        best = cand[1];
    if (best && best->inflight < d->max_ongoing)
        return best;
    best = NULL;
    for (rep_t *r = d->reps; r; r = r->next)
        if (r->active && r->inflight < d->max_ongoing && (!best || r->inflight < best->inflight))
            best = r;
    return best;
}

static void dispatch(proxy_t *p, dep_t *d, preq_t *q, bool front)
{
    rep_t *r = pick(d);
    if (r && !(d->qlen > 0 && !front)) {
        rep_send(p, r, q);
        return;
    }
    if (d->qlen >= d->max_queued && !front) {
        map_take(p, q->id);
        proxy_conn_reply_error(p, q, 503, "every replica is busy and the queue is full; "
                                          "try again later");
        return;
    }
    q->queued = true;
    list_push(&d->qhead, &d->qtail, q, front);
    d->qlen++;
}

/* Sends queued requests while replicas have room. */
void proxy_pump(proxy_t *p, dep_t *d)
{
    while (d->qhead) {
        rep_t *r = pick(d);
        if (!r)
            return;
        preq_t *q = d->qhead;
        list_remove(&d->qhead, &d->qtail, q);
        d->qlen--;
        q->queued = false;
        rep_send(p, r, q);
    }
}

void proxy_route(proxy_t *p, conn_t *c, preq_t *q, serve_http_req_t *r)
{
    (void)c;
    const char *path = r->data + r->path.off;
    dep_t *d = dep_for_path(p, path, r->path.len);
    if (!d) {
        char msg[300];
        snprintf(msg, sizeof(msg), "no deployment serves the path %.*s",
                 (int)(r->path.len > 200 ? 200 : r->path.len), path);
        proxy_conn_reply_error(p, q, 404, msg);
        return;
    }
    q->id = ++p->next_id;
    q->dep = d;
    sbuf_t b;
    sbuf_init(&b);
    serve_wire_request(&b, q->id, r);
    if (b.oom || !map_put(p, q)) {
        sbuf_free(&b);
        q->dep = NULL;
        proxy_conn_reply_error(p, q, 503, "the proxy is out of memory");
        return;
    }
    q->msg = sbuf_take(&b, &q->msg_len);
    dispatch(p, d, q, false);
}

/* ------------------------------------------------------------------ replies */

/* A replica is gone: each of its requests goes to another once, or fails. */
static void requeue_from(proxy_t *p, rep_t *r)
{
    dep_t *d = r->dep;
    while (r->tail) {
        preq_t *q = r->tail;
        list_remove(&r->head, &r->tail, q);
        r->inflight--;
        q->rep = NULL;
        if (!q->conn) {
            map_take(p, q->id);
            preq_free(q);
        } else if (q->attempts < 2 && d->live) {
            dispatch(p, d, q, true);
        } else {
            map_take(p, q->id);
            proxy_conn_reply_error(p, q, 503, "the replica serving this request died");
        }
    }
    r->frame_count = 0;
}

static void take_response(proxy_t *p, srd_t *rd)
{
    uint64_t id = srd_u64(rd);
    uint16_t status = srd_u16(rd);
    size_t ctl, hll, bl;
    const char *ct = srd_str(rd, &ctl);
    const char *hl = srd_str(rd, &hll);
    const char *body = srd_str(rd, &bl);
    if (rd->err)
        return;
    preq_t *q = map_take(p, id);
    if (!q)
        return; /* answered already (a retry raced it), or its connection is gone */
    rep_t *r = q->rep;
    if (r) {
        list_remove(&r->head, &r->tail, q);
        r->inflight--;
        q->rep = NULL;
    }
    char ctype[128];
    snprintf(ctype, sizeof(ctype), "%.*s", (int)(ctl > 127 ? 127 : ctl), ct);
    proxy_conn_reply(p, q, status, ctl ? ctype : NULL, hl, hll, body, bl);
}

/* Frees draining replicas with nothing left in flight. */
static void reap_drained(proxy_t *p)
{
    for (dep_t *d = p->deps; d; d = d->next) {
        for (rep_t *r = d->reps, *nx; r; r = nx) {
            nx = r->next;
            if (!r->active && r->inflight == 0 && r->frame_count == 0)
                rep_free(d, r);
        }
    }
}

static void on_replies(uv_poll_t *h, int status, int events)
{
    proxy_t *p = h->data;
    (void)status;
    (void)events;
    for (int rounds = 0; rounds < 256; rounds++) {
        void *msg = NULL;
        int n = nn_recv(p->reply_sock, &msg, NN_MSG, NN_DONTWAIT);
        if (n < 0)
            break;
        srd_t rd;
        srd_init(&rd, msg, (size_t)n);
        uint32_t magic = srd_u32(&rd);
        uint32_t count = srd_u32(&rd);
        if (magic != SERVE_RESP_MAGIC || rd.err)
            fprintf(stderr, "luray serve: proxy dropped a malformed reply frame (%d bytes)\n", n);
        for (uint32_t i = 0; i < count && magic == SERVE_RESP_MAGIC && !rd.err; i++)
            take_response(p, &rd);
        nn_freemsg(msg);
    }
    for (dep_t *d = p->deps; d; d = d->next)
        proxy_pump(p, d);
    reap_drained(p);
}

/* ------------------------------------------------------------------ commands */

static int json_int(const cJSON *o, const char *k, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) && v->valuedouble >= 1 ? (int)v->valuedouble : dflt;
}

static dep_t *dep_find(proxy_t *p, const char *name)
{
    for (dep_t *d = p->deps; d; d = d->next)
        if (strcmp(d->name, name) == 0)
            return d;
    return NULL;
}

static void apply_dep(proxy_t *p, const cJSON *j)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "name");
    const cJSON *prefix = cJSON_GetObjectItemCaseSensitive(j, "prefix");
    if (!cJSON_IsString(name) || !cJSON_IsString(prefix))
        return;
    dep_t *d = dep_find(p, name->valuestring);
    if (!d) {
        if (!(d = calloc(1, sizeof(*d))))
            return;
        snprintf(d->name, sizeof(d->name), "%s", name->valuestring);
        d->next = p->deps;
        p->deps = d;
    }
    snprintf(d->prefix, sizeof(d->prefix), "%s", prefix->valuestring);
    d->prefix_len = strlen(d->prefix);
    d->max_ongoing = json_int(j, "max_ongoing", 5);
    d->max_queued = json_int(j, "max_queued", 1000);
    d->live = true;
    for (rep_t *r = d->reps; r; r = r->next)
        r->active = false;
    const cJSON *reps = cJSON_GetObjectItemCaseSensitive(j, "replicas"), *it;
    cJSON_ArrayForEach(it, reps)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const cJSON *addr = cJSON_GetObjectItemCaseSensitive(it, "addr");
        if (!cJSON_IsString(id) || !cJSON_IsString(addr))
            continue;
        dep_t *owner;
        rep_t *r = rep_find(p, id->valuestring, &owner);
        if (r && owner == d)
            r->active = true;
        else if (!r)
            rep_new(d, id->valuestring, addr->valuestring);
    }
    d->n_active = 0;
    for (rep_t *r = d->reps; r; r = r->next)
        d->n_active += r->active;
}

static void apply_routes(proxy_t *p, const char *text)
{
    cJSON *j = cJSON_Parse(text);
    if (!j) {
        fprintf(stderr, "luray serve: proxy got a routing table that is not JSON\n");
        return;
    }
    for (dep_t *d = p->deps; d; d = d->next)
        d->live = false;
    const cJSON *deps = cJSON_GetObjectItemCaseSensitive(j, "deployments"), *it;
    cJSON_ArrayForEach(it, deps)
        apply_dep(p, it);
    cJSON_Delete(j);
    for (dep_t *d = p->deps; d; d = d->next) {
        if (d->live) {
            proxy_pump(p, d);
            continue;
        }
        for (rep_t *r = d->reps; r; r = r->next)
            r->active = false;
        d->n_active = 0;
        while (d->qhead) { /* deleted with requests waiting */
            preq_t *q = d->qhead;
            list_remove(&d->qhead, &d->qtail, q);
            d->qlen--;
            q->queued = false;
            map_take(p, q->id);
            proxy_conn_reply_error(p, q, 503, "the deployment was deleted");
        }
    }
    reap_drained(p);
}

static void apply_dead(proxy_t *p, const char *id)
{
    dep_t *d;
    rep_t *r = rep_find(p, id, &d);
    if (!r)
        return;
    bool was_active = r->active;
    r->active = false;
    if (was_active)
        d->n_active--;
    requeue_from(p, r);
    rep_free(d, r);
    proxy_pump(p, d);
}

static void finish_stop(proxy_t *p);

static void on_wake(uv_async_t *h)
{
    proxy_t *p = h->data;
    uv_mutex_lock(&p->mu);
    cmd_t *c = p->cmds;
    p->cmds = p->cmds_tail = NULL;
    uv_mutex_unlock(&p->mu);
    while (c) {
        cmd_t *nx = c->next;
        if (c->kind == CMD_ROUTES)
            apply_routes(p, c->text);
        else if (c->kind == CMD_DEAD)
            apply_dead(p, c->text);
        else if (!p->draining) {
            p->draining = true;
            p->drain_deadline_ms = proxy_now_ms() + (uint64_t)(c->drain_s * 1000);
            proxy_conn_drain(p);
        }
        free(c->text);
        free(c);
        c = nx;
    }
}

static void on_flush(uv_check_t *h)
{
    proxy_t *p = h->data;
    flush_replicas(p);
    proxy_conn_flush_all(p);
}

static void timeout_requests(proxy_t *p, uint64_t now_ns)
{
    if (p->o.request_timeout_s <= 0)
        return;
    uint64_t limit = (uint64_t)(p->o.request_timeout_s * 1e9);
    for (dep_t *d = p->deps; d; d = d->next) {
        for (rep_t *r = d->reps; r; r = r->next) {
            for (preq_t *q = r->head, *nx; q; q = nx) {
                nx = q->next;
                if (now_ns - q->t0 < limit)
                    continue;
                list_remove(&r->head, &r->tail, q);
                r->inflight--;
                q->rep = NULL;
                map_take(p, q->id);
                proxy_conn_reply_error(p, q, 504, "the replica did not answer in time");
            }
        }
    }
}

static void on_sweep(uv_timer_t *t)
{
    proxy_t *p = t->data;
    uint64_t now = proxy_now_ms();
    timeout_requests(p, uv_hrtime());
    proxy_conn_sweep(p, now);
    proxy_metrics_snapshot(p);
    if (p->access)
        fflush(p->access);
    if (p->draining && (p->nconns == 0 || now >= p->drain_deadline_ms))
        finish_stop(p);
}

static void close_cb_noop(uv_handle_t *h)
{
    (void)h;
}

/* Everything closes; the loop then ends and the thread returns. */
static void finish_stop(proxy_t *p)
{
    if (p->stopping)
        return;
    p->stopping = true;
    conn_t *c = p->conns;
    while (c) {
        conn_t *nx = c->next;
        proxy_conn_close(c);
        c = nx;
    }
    uv_timer_stop(&p->sweep);
    uv_close((uv_handle_t *)&p->sweep, close_cb_noop);
    uv_close((uv_handle_t *)&p->retry, close_cb_noop);
    uv_close((uv_handle_t *)&p->flush, close_cb_noop);
    uv_close((uv_handle_t *)&p->reply_poll, close_cb_noop);
    uv_close((uv_handle_t *)&p->wake, close_cb_noop);
    if (p->listening) {
        uv_close((uv_handle_t *)&p->listener, close_cb_noop);
        p->listening = false;
    }
}

static void run(void *arg)
{
    proxy_t *p = arg;
    uv_run(&p->loop, UV_RUN_DEFAULT);
    uv_mutex_lock(&p->mu);
    p->stopped = true;
    uv_mutex_unlock(&p->mu);
}

/* ------------------------------------------------------------------ lifecycle */

static int open_replies(proxy_t *p, char *err, size_t errlen)
{
    static int seq;
    p->reply_sock = nn_socket(AF_SP, NN_PULL);
    if (p->reply_sock < 0) {
        snprintf(err, errlen, "cannot make the proxy's reply socket: %s", nn_strerror(nn_errno()));
        return -1;
    }
    int maxsz = -1;
    nn_setsockopt(p->reply_sock, NN_SOL_SOCKET, NN_RCVMAXSIZE, &maxsz, sizeof(maxsz));
    snprintf(p->reply_addr, sizeof(p->reply_addr), "ipc://%s/serve-p%d-%d.sock", p->o.session,
             (int)getpid(), ++seq);
    if (nn_bind(p->reply_sock, p->reply_addr) < 0) {
        snprintf(err, errlen, "cannot bind %s: %s", p->reply_addr, nn_strerror(nn_errno()));
        return -1;
    }
    if (p->o.tcp_host[0]) {
        for (int tries = 0; tries < 20 && !p->reply_tcp[0]; tries++) {
            int port = 20000 + rand() % 40000;
            snprintf(p->reply_tcp, sizeof(p->reply_tcp), "tcp://%s:%d", p->o.tcp_host, port);
            if (nn_bind(p->reply_sock, p->reply_tcp) < 0)
                p->reply_tcp[0] = 0;
        }
        if (!p->reply_tcp[0]) {
            snprintf(err, errlen, "cannot bind a tcp port on %s for replies", p->o.tcp_host);
            return -1;
        }
    }
    return 0;
}

static void free_proxy(proxy_t *p)
{
    for (dep_t *d = p->deps, *nd; d; d = nd) {
        nd = d->next;
        while (d->reps)
            rep_free(d, d->reps);
        free(d);
    }
    for (size_t i = 0; i < p->map_cap; i++)
        for (preq_t *q = p->map[i], *nx; q; q = nx) {
            nx = q->map_next;
            preq_free(q);
        }
    free(p->map);
    if (p->reply_sock >= 0) {
        nn_close(p->reply_sock);
        if (strncmp(p->reply_addr, "ipc://", 6) == 0)
            unlink(p->reply_addr + 6);
    }
    for (cmd_t *c = p->cmds, *nx; c; c = nx) {
        nx = c->next;
        free(c->text);
        free(c);
    }
    if (p->access)
        fclose(p->access);
    free(p->stats_json);
    uv_mutex_destroy(&p->mu);
    free(p);
}

proxy_t *proxy_start(const proxy_opts_t *o, char *err, size_t errlen)
{
    proxy_t *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->o = *o;
    p->reply_sock = -1;
    uv_mutex_init(&p->mu);
    if (uv_loop_init(&p->loop) != 0) {
        snprintf(err, errlen, "cannot make the proxy's event loop");
        uv_mutex_destroy(&p->mu);
        free(p);
        return NULL;
    }
    if (open_replies(p, err, errlen) != 0 || proxy_conn_listen(p, err, errlen) != 0)
        goto fail;
    if (o->access_log[0] && !(p->access = fopen(o->access_log, "a"))) {
        snprintf(err, errlen, "cannot open the access log %s: %s", o->access_log, strerror(errno));
        goto fail;
    }
    int fd = -1;
    size_t sz = sizeof(fd);
    nn_getsockopt(p->reply_sock, NN_SOL_SOCKET, NN_RCVFD, &fd, &sz);
    uv_poll_init(&p->loop, &p->reply_poll, fd);
    p->reply_poll.data = p;
    uv_poll_start(&p->reply_poll, UV_READABLE, on_replies);
    uv_async_init(&p->loop, &p->wake, on_wake);
    p->wake.data = p;
    uv_timer_init(&p->loop, &p->sweep);
    p->sweep.data = p;
    uv_timer_start(&p->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    uv_timer_init(&p->loop, &p->retry);
    p->retry.data = p;
    uv_check_init(&p->loop, &p->flush);
    p->flush.data = p;
    uv_check_start(&p->flush, on_flush);
    proxy_metrics_snapshot(p);
    if (uv_thread_create(&p->thread, run, p) != 0) {
        snprintf(err, errlen, "cannot start the proxy's thread");
        goto fail_loop;
    }
    return p;
fail_loop:
    finish_stop(p);
    uv_run(&p->loop, UV_RUN_DEFAULT);
fail:
    if (p->listening) {
        uv_close((uv_handle_t *)&p->listener, NULL);
        uv_run(&p->loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(&p->loop);
    free_proxy(p);
    return NULL;
}

int proxy_port(const proxy_t *p)
{
    return p->o.port;
}

const char *proxy_reply_addr(const proxy_t *p, int tcp)
{
    return tcp ? p->reply_tcp : p->reply_addr;
}

static void post(proxy_t *p, cmd_kind_t kind, const char *text, double drain_s)
{
    cmd_t *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->kind = kind;
    c->text = text ? strdup(text) : NULL;
    c->drain_s = drain_s;
    uv_mutex_lock(&p->mu);
    if (p->cmds_tail)
        p->cmds_tail->next = c;
    else
        p->cmds = c;
    p->cmds_tail = c;
    uv_mutex_unlock(&p->mu);
    uv_async_send(&p->wake);
}

void proxy_set_routes(proxy_t *p, const char *json)
{
    post(p, CMD_ROUTES, json, 0);
}

void proxy_replica_dead(proxy_t *p, const char *id)
{
    post(p, CMD_DEAD, id, 0);
}

char *proxy_stats(proxy_t *p)
{
    uv_mutex_lock(&p->mu);
    char *s = p->stats_json ? strdup(p->stats_json) : NULL;
    uv_mutex_unlock(&p->mu);
    return s;
}

void proxy_stop(proxy_t *p, double drain_s)
{
    post(p, CMD_STOP, NULL, drain_s < 0 ? 0 : drain_s);
    uv_thread_join(&p->thread);
    uv_loop_close(&p->loop);
    free_proxy(p);
}
