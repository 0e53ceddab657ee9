/* The serve proxy's HTTP connections on its libuv loop: accepting, reading and parsing requests,
 * writing responses in request order (pipelining), keep-alive, idle and slow-client timeouts,
 * and closing them in order on shutdown. */
#include "proxy_internal.h"

#include <stdlib.h>
#include <string.h>

#define MAX_PIPELINED 64

static void conn_write(conn_t *c);
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    conn_t *c = h->data;
    *buf = uv_buf_init(c->p->rbuf, sizeof(c->p->rbuf));
}

static void stop_reading(conn_t *c)
{
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

static void start_reading(conn_t *c)
{
    if (!c->reading && !c->closing && !c->closed) {
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
        c->reading = true;
    }
}

static void mark_dirty(conn_t *c)
{
    if (c->dirty || c->closed)
        return;
    proxy_t *p = c->p;
    c->dirty = true;
    c->dirty_prev = NULL;
    c->dirty_next = p->dirty;
    if (p->dirty)
        p->dirty->dirty_prev = c;
    p->dirty = c;
}

static void unmark_dirty(conn_t *c)
{
    if (!c->dirty)
        return;
    if (c->dirty_prev)
        c->dirty_prev->dirty_next = c->dirty_next;
    else
        c->p->dirty = c->dirty_next;
    if (c->dirty_next)
        c->dirty_next->dirty_prev = c->dirty_prev;
    c->dirty = false;
    c->dirty_prev = c->dirty_next = NULL;
}

static void on_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    proxy_t *p = c->p;
    unmark_dirty(c);
    for (preq_t *q = c->head, *nx; q; q = nx) {
        nx = q->conn_next;
        q->conn = NULL;
        q->conn_next = NULL;
        if (q->rep)
            continue; /* in flight: freed when its reply comes or its replica is gone */
        proxy_forget(p, q);
        preq_free(q);
    }
    serve_http_parser_close(&c->parser);
    sbuf_free(&c->out);
    if (c->prev)
        c->prev->next = c->next;
    else
        p->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    p->nconns--;
    free(c);
}

void proxy_conn_close(conn_t *c)
{
    if (c->closed)
        return;
    c->closed = true;
    c->reading = false;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

typedef struct {
    uv_write_t req;
    conn_t *c;
    char data[];
} wreq_t;

static void on_written(uv_write_t *req, int status)
{
    wreq_t *w = (wreq_t *)req;
    conn_t *c = w->c;
    free(w);
    if (c->closed)
        return;
    c->writing = false;
    c->last_ms = proxy_now_ms();
    if (status < 0) {
        proxy_conn_close(c);
        return;
    }
    conn_write(c);
}

static void conn_write(conn_t *c)
{
    if (c->writing || c->closed)
        return;
    if (c->out.len == 0) {
        if (c->closing && c->npending == 0)
            proxy_conn_close(c);
        return;
    }
    uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n < 0 && n != UV_EAGAIN) {
        proxy_conn_close(c);
        return;
    }
    if (n < 0)
        n = 0;
    c->last_ms = proxy_now_ms();
    size_t rest = c->out.len - (size_t)n;
    if (rest == 0) {
        c->out.len = 0;
        if (c->closing && c->npending == 0)
            proxy_conn_close(c);
        return;
    }
    wreq_t *w = malloc(sizeof(*w) + rest);
    if (!w) {
        proxy_conn_close(c);
        return;
    }
    w->c = c;
    memcpy(w->data, c->out.data + n, rest);
    c->out.len = 0;
    b = uv_buf_init(w->data, (unsigned)rest);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
        free(w);
        proxy_conn_close(c);
        return;
    }
    c->writing = true;
}

void proxy_conn_flush_all(proxy_t *p)
{
    while (p->dirty) {
        conn_t *c = p->dirty;
        unmark_dirty(c);
        if (!c->writing && !c->closed)
            conn_write(c); /* a write still in flight flushes the rest from its callback */
    }
}

/* Moves the responses that are ready at the head of the connection's order into its output. */
static void advance(conn_t *c)
{
    while (c->head && c->head->done) {
        preq_t *q = c->head;
        c->head = q->conn_next;
        if (!c->head)
            c->tail = NULL;
        c->npending--;
        sbuf_put(&c->out, q->resp, q->resp_len);
        preq_free(q);
        mark_dirty(c);
    }
    if (c->npending < MAX_PIPELINED / 2)
        start_reading(c);
}

void proxy_conn_reply(proxy_t *p, preq_t *q, int status, const char *content_type,
                      const char *header_lines, size_t hl_len, const char *body, size_t len)
{
    proxy_metrics_count(p, q, status, len);
    conn_t *c = q->conn;
    if (!c) { /* its client left: nobody to answer */
        preq_free(q);
        return;
    }
    char extra_small[1024];
    char *extra = hl_len < sizeof(extra_small) ? extra_small : malloc(hl_len + 1);
    char head[1024];
    size_t hn = 0;
    if (extra) {
        if (hl_len)
            memcpy(extra, header_lines, hl_len);
        extra[hl_len] = 0;
        hn = serve_http_head(head, sizeof(head), status, content_type, extra, len, q->keep_alive);
    }
    char *big = NULL;
    if (extra && !hn) { /* long header lines */
        size_t cap = hl_len + 512;
        if ((big = malloc(cap)))
            hn = serve_http_head(big, cap, status, content_type, extra, len, q->keep_alive);
    }
    if (extra != extra_small)
        free(extra);
    size_t body_len = q->head_only ? 0 : len;
    q->resp = hn ? malloc(hn + body_len) : NULL;
    if (!q->resp) {
        free(big);
        q->keep_alive = false;
        c->closing = true;
        q->done = true;
        q->resp_len = 0;
        advance(c);
        return;
    }
    memcpy(q->resp, big ? big : head, hn);
    if (body_len)
        memcpy(q->resp + hn, body, body_len);
    free(big);
    q->resp_len = hn + body_len;
    q->done = true;
    if (!q->keep_alive) {
        c->closing = true;
        stop_reading(c);
    }
    advance(c);
}

static void json_string(sbuf_t *b, const char *s)
{
    sbuf_putc(b, '"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            sbuf_printf(b, "\\%c", ch);
        else if (ch < 0x20)
            sbuf_printf(b, "\\u%04x", ch);
        else
            sbuf_putc(b, (char)ch);
    }
    sbuf_putc(b, '"');
}

void proxy_conn_reply_error(proxy_t *p, preq_t *q, int status, const char *message)
{
    sbuf_t b;
    sbuf_init(&b);
    sbuf_puts(&b, "{\"error\":");
    json_string(&b, message);
    sbuf_printf(&b, ",\"status\":%d}", status);
    proxy_conn_reply(p, q, status, "application/json", NULL, 0, b.data ? b.data : "", b.len);
    sbuf_free(&b);
}

static preq_t *new_preq(conn_t *c, bool keep_alive)
{
    preq_t *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    q->conn = c;
    q->t0 = uv_hrtime();
    q->keep_alive = keep_alive && !c->p->draining;
    if (c->tail)
        c->tail->conn_next = q;
    else
        c->head = q;
    c->tail = q;
    c->npending++;
    return q;
}

/* A request that cannot be read: its error answer, then the connection closes. */
static void bad_input(conn_t *c, int status, const char *why)
{
    stop_reading(c);
    c->closing = true;
    preq_t *q = new_preq(c, false);
    if (!q) {
        proxy_conn_close(c);
        return;
    }
    snprintf(q->line, sizeof(q->line), "- -");
    proxy_conn_reply_error(c->p, q, status, why);
}

static bool path_is(const serve_http_req_t *r, const char *s)
{
    size_t n = strlen(s);
    return r->path.len == n && memcmp(r->data + r->path.off, s, n) == 0;
}

/* /-/healthz, /-/metrics and /-/routes: answered here. */
static bool builtin(proxy_t *p, preq_t *q, serve_http_req_t *r)
{
    if (r->path.len < 3 || memcmp(r->data + r->path.off, "/-/", 3) != 0)
        return false;
    sbuf_t b;
    sbuf_init(&b);
    if (path_is(r, "/-/healthz")) {
        if (p->draining)
            proxy_conn_reply_error(p, q, 503, "shutting down");
        else
            proxy_conn_reply(p, q, 200, "application/json", NULL, 0, "{\"status\":\"ok\"}", 15);
    } else if (path_is(r, "/-/metrics")) {
        proxy_metrics_text(p, &b);
        proxy_conn_reply(p, q, 200, "text/plain; version=0.0.4", NULL, 0, b.data ? b.data : "",
                         b.len);
    } else if (path_is(r, "/-/routes")) {
        proxy_metrics_routes(p, &b);
        proxy_conn_reply(p, q, 200, "application/json", NULL, 0, b.data ? b.data : "", b.len);
    } else {
        proxy_conn_reply_error(p, q, 404, "unknown path; /-/healthz, /-/metrics and /-/routes "
                                          "are the built-in ones");
    }
    sbuf_free(&b);
    return true;
}

static void take_request(conn_t *c)
{
    proxy_t *p = c->p;
    serve_http_req_t r;
    serve_http_take(&c->parser, &r);
    preq_t *q = new_preq(c, r.keep_alive);
    if (!q) {
        serve_http_req_free(&r);
        proxy_conn_close(c);
        return;
    }
    snprintf(q->line, sizeof(q->line), "%.*s %.*s", (int)(r.method.len > 16 ? 16 : r.method.len),
             r.data + r.method.off, (int)(r.path.len > 160 ? 160 : r.path.len),
             r.data + r.path.off);
    q->head_only = r.method.len == 4 && memcmp(r.data + r.method.off, "HEAD", 4) == 0;
    if (!q->keep_alive) {
        c->closing = true; /* nothing after this request is read */
        stop_reading(c);
    }
    if (!builtin(p, q, &r)) {
        if (p->draining)
            proxy_conn_reply_error(p, q, 503, "the server is shutting down");
        else
            proxy_route(p, c, q, &r);
    }
    serve_http_req_free(&r);
    if (c->npending >= MAX_PIPELINED)
        stop_reading(c);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    conn_t *c = s->data;
    if (n < 0) {
        proxy_conn_close(c);
        return;
    }
    uint64_t now = proxy_now_ms();
    c->last_ms = now;
    size_t off = 0;
    while (off < (size_t)n && !c->closing && !c->closed) {
        bool was = serve_http_pending(&c->parser);
        size_t used = 0;
        serve_http_result_t res = serve_http_feed(&c->parser, buf->base + off, (size_t)n - off,
                                                  &used);
        off += used;
        if (!was && serve_http_pending(&c->parser))
            c->req_ms = now;
        if (res == SERVE_HTTP_ERROR) {
            bad_input(c, c->parser.status, c->parser.error);
            return;
        }
        if (res == SERVE_HTTP_MORE)
            break;
        c->req_ms = 0;
        take_request(c);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    proxy_t *p = server->data;
    if (status < 0)
        return;
    conn_t *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->p = p;
    if (uv_tcp_init(&p->loop, &c->tcp) != 0) {
        free(c);
        return;
    }
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
        return;
    }
    serve_http_limits_t lim = {.max_header_bytes = p->o.max_header_bytes,
                               .max_body_bytes = p->o.max_body_bytes};
    serve_http_parser_init(&c->parser, &lim);
    sbuf_init(&c->out);
    c->next = p->conns;
    if (p->conns)
        p->conns->prev = c;
    p->conns = c;
    p->nconns++;
    c->last_ms = proxy_now_ms();
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    c->peer[0] = '-';
    c->peer[1] = 0;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        char ip[48] = "";
        if (ss.ss_family == AF_INET)
            uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
        else
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
        snprintf(c->peer, sizeof(c->peer), "%s", ip);
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (p->draining) {
        proxy_conn_close(c);
        return;
    }
    start_reading(c);
}

int proxy_conn_listen(proxy_t *p, char *err, size_t errlen)
{
    struct sockaddr_storage addr;
    int rc = strchr(p->o.host, ':')
                 ? uv_ip6_addr(p->o.host, p->o.port, (struct sockaddr_in6 *)&addr)
                 : uv_ip4_addr(p->o.host, p->o.port, (struct sockaddr_in *)&addr);
    if (rc != 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: not an IP address", p->o.host, p->o.port);
        return -1;
    }
    uv_tcp_init(&p->loop, &p->listener);
    p->listener.data = p;
    p->listening = true;
    rc = uv_tcp_bind(&p->listener, (struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&p->listener, 1024, on_connection);
    if (rc != 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", p->o.host, p->o.port, uv_strerror(rc));
        return -1;
    }
    int len = sizeof(addr);
    if (uv_tcp_getsockname(&p->listener, (struct sockaddr *)&addr, &len) == 0)
        p->o.port = ntohs(((struct sockaddr_in *)&addr)->sin_port);
    return 0;
}

void proxy_conn_sweep(proxy_t *p, uint64_t now)
{
    uint64_t idle = (uint64_t)(p->o.keep_alive_timeout_s * 1000);
    uint64_t slow = (uint64_t)(p->o.request_read_timeout_s * 1000);
    for (conn_t *c = p->conns, *nx; c; c = nx) {
        nx = c->next;
        if (c->closed)
            continue;
        if (c->req_ms && now - c->req_ms > slow && !c->closing) {
            bad_input(c, 408, "the request did not arrive in time");
        } else if (c->writing && now - c->last_ms > slow) {
            proxy_conn_close(c); /* a client that does not read its responses */
        } else if (c->npending == 0 && !c->writing && !c->out.len &&
                   !serve_http_pending(&c->parser) && now - c->last_ms > idle) {
            proxy_conn_close(c);
        }
    }
}

void proxy_conn_drain(proxy_t *p)
{
    if (p->listening) {
        uv_close((uv_handle_t *)&p->listener, NULL);
        p->listening = false;
    }
    for (conn_t *c = p->conns, *nx; c; c = nx) {
        nx = c->next;
        c->closing = true;
        stop_reading(c);
        for (preq_t *q = c->head; q; q = q->conn_next)
            q->keep_alive = false;
        if (c->npending == 0 && !c->writing && !c->out.len)
            proxy_conn_close(c);
    }
}
