/* libFuzzer target: arbitrary bytes as a stream of HTTP requests to the serve parser. Byte 0 picks
 * where the stream is cut in two, byte 1 the header and body limits. Fed whole, cut there, and
 * (when short) one byte at a time, it must give the same requests in the same order, each taking
 * the same bytes, then the same error (status and message) or the same unfinished state. Every
 * span stays inside its request's data, used never passes len, errors stay and carry a message. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/http_parse.h"

/* Inputs up to this long are also fed one byte at a time. */
#define BYTEWISE_MAX 512

typedef struct {
    char *buf;
    size_t len, cap;
} transcript_t;

static void put(transcript_t *t, const void *p, size_t n)
{
    if (n > t->cap - t->len) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        while (cap - t->len < n)
            cap *= 2;
        char *b = realloc(t->buf, cap);
        if (b == NULL)
            abort();
        t->buf = b;
        t->cap = cap;
    }
    if (n > 0)
        memcpy(t->buf + t->len, p, n);
    t->len += n;
}

static void put_u64(transcript_t *t, uint64_t v)
{
    put(t, &v, sizeof(v));
}

static void put_span(transcript_t *t, const serve_http_req_t *r, serve_span_t s)
{
    put_u64(t, s.len);
    put(t, r->data + s.off, s.len);
}

static bool blank(char c)
{
    return c == ' ' || c == '\t';
}

/* What every request must be, however it was read. */
static void check_request(const serve_http_req_t *r, const serve_http_limits_t *lim)
{
    if (r->len > r->cap || (r->len > 0 && r->data == NULL))
        abort();
    if (r->n_headers > SERVE_HTTP_MAX_HEADERS)
        abort();
    serve_span_t fixed[4] = {r->method, r->path, r->query, r->body};
    for (int i = 0; i < 4; i++)
        if ((uint64_t)fixed[i].off + fixed[i].len > r->len)
            abort();
    if (r->method.len == 0 || r->body.len > lim->max_body_bytes)
        abort();
    if (r->http_major != 1 || r->http_minor > 1)
        abort();
    for (uint32_t i = 0; i < r->n_headers; i++) {
        serve_span_t n = r->names[i], v = r->values[i];
        if ((uint64_t)n.off + n.len > r->len || (uint64_t)v.off + v.len > r->len)
            abort();
        if (n.len == 0)
            abort();
        for (uint32_t k = 0; k < n.len; k++)
            if (r->data[n.off + k] >= 'A' && r->data[n.off + k] <= 'Z')
                abort();
        if (v.len > 0 && (blank(r->data[v.off]) || blank(r->data[v.off + v.len - 1])))
            abort();
    }
}

static void record_request(transcript_t *t, const serve_http_req_t *r, size_t bytes)
{
    put(t, "R", 1);
    put_u64(t, bytes);
    put_span(t, r, r->method);
    put_span(t, r, r->path);
    put_span(t, r, r->query);
    put_u64(t, r->n_headers);
    for (uint32_t i = 0; i < r->n_headers; i++) {
        put_span(t, r, r->names[i]);
        put_span(t, r, r->values[i]);
    }
    put_span(t, r, r->body);
    uint8_t flags[3] = {r->keep_alive, r->http_major, r->http_minor};
    put(t, flags, sizeof(flags));
}

/* An error: a known status, a message, and it stays. */
static void record_error(transcript_t *t, serve_http_parser_t *p)
{
    int s = p->status;
    if (s != 400 && s != 413 && s != 431 && s != 505)
        abort();
    size_t elen = strnlen(p->error, sizeof(p->error));
    if (elen == 0 || elen == sizeof(p->error))
        abort();
    size_t used = 1;
    if (serve_http_feed(p, "GET / HTTP/1.1\r\n\r\n", 18, &used) != SERVE_HTTP_ERROR || used != 0 ||
        p->status != s)
        abort();
    put(t, "E", 1);
    put_u64(t, (uint64_t)s);
    put(t, p->error, elen);
}

/* Feeds `in` in pieces (cut at the ascending positions cuts[0..ncuts)), taking each request as
 * it comes, and writes what came out to t. */
static void run(const char *in, size_t n, const size_t *cuts, size_t ncuts,
                const serve_http_limits_t *lim, transcript_t *t)
{
    serve_http_parser_t p;
    serve_http_parser_init(&p, lim);
    size_t req_bytes = 0, start = 0;
    for (size_t piece = 0; piece <= ncuts; piece++) {
        size_t end = piece < ncuts ? cuts[piece] : n;
        size_t off = start;
        start = end;
        while (off < end) {
            size_t used = (size_t)-1;
            serve_http_result_t res = serve_http_feed(&p, in + off, end - off, &used);
            if (used > end - off)
                abort();
            off += used;
            req_bytes += used;
            if (res == SERVE_HTTP_ERROR) {
                record_error(t, &p);
                goto done;
            }
            if (res == SERVE_HTTP_MORE) {
                if (off != end)
                    abort();
                break;
            }
            if (used == 0 || serve_http_pending(&p))
                abort();
            serve_http_req_t r;
            serve_http_take(&p, &r);
            check_request(&r, lim);
            record_request(t, &r, req_bytes);
            serve_http_req_free(&r);
            req_bytes = 0;
        }
    }
    put(t, serve_http_pending(&p) ? "P" : "I", 1);
done:
    serve_http_parser_close(&p);
}

static void same(const transcript_t *a, const transcript_t *b)
{
    if (a->len != b->len || (a->len > 0 && memcmp(a->buf, b->buf, a->len) != 0))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const char *in = (const char *)data + 2;
    size_t n = size - 2;
    size_t cut = (size_t)data[0] * (n + 1) / 256;
    serve_http_limits_t lim = {32 + (size_t)(data[1] & 0x0f) * 48, (size_t)(data[1] >> 4) * 40};

    transcript_t whole = {0}, split = {0};
    run(in, n, NULL, 0, &lim, &whole);
    run(in, n, &cut, 1, &lim, &split);
    same(&whole, &split);
    if (n <= BYTEWISE_MAX) {
        size_t *cuts = malloc((n ? n : 1) * sizeof(size_t));
        if (cuts == NULL)
            abort();
        for (size_t i = 0; i < n; i++)
            cuts[i] = i + 1;
        transcript_t bytewise = {0};
        run(in, n, cuts, n, &lim, &bytewise);
        same(&whole, &bytewise);
        free(bytewise.buf);
        free(cuts);
    }
    free(whole.buf);
    free(split.buf);
    return 0;
}
