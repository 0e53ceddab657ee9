/* HTTP/1.1 request parsing over http-parser (one request at a time, every piece copied into the
 * request's one buffer), the limits that answer 413/431/505, and the response head writer. */
#include "http_parse.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The first buffer of a request: most request heads fit, so most requests allocate once. */
#define DATA_MIN_CAP 1024
/* The most of a declared body that is allocated before its bytes come. */
#define BODY_AHEAD (256 * 1024)

/* The callbacks find the parser from its http_parser, which is its first member; the parser
 * struct may then be moved between calls without fixing up a back pointer. */
_Static_assert(offsetof(serve_http_parser_t, hp) == 0, "hp must be the first member");

static serve_http_parser_t *parser_of(http_parser *hp)
{
    return (serve_http_parser_t *)hp;
}

/* Records the error the connection answers with; the first one recorded stays. */
static void fail(serve_http_parser_t *p, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(serve_http_parser_t *p, int status, const char *fmt, ...)
{
    if (p->status != 0)
        return;
    p->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->error, sizeof(p->error), fmt, ap);
    va_end(ap);
}

/* ---- the request buffer ---- */

/* Makes room for n more bytes of data; false (with the error recorded) when it cannot. */
static bool reserve(serve_http_parser_t *p, size_t n)
{
    serve_http_req_t *r = &p->req;
    if (n <= r->cap - r->len)
        return true;
    /* Spans are 32-bit offsets; the limits keep a request far below, this guards odd ones. */
    if (n > UINT32_MAX - r->len) {
        fail(p, 413, "request over 4 GiB");
        return false;
    }
    size_t cap = r->cap ? r->cap * 2 : DATA_MIN_CAP;
    if (cap < r->len + n)
        cap = r->len + n;
    char *d = realloc(r->data, cap);
    if (d == NULL) {
        fail(p, 500, "out of memory reading a request of %zu bytes", r->len + n);
        return false;
    }
    r->data = d;
    r->cap = cap;
    return true;
}

static bool append(serve_http_parser_t *p, const char *s, size_t n)
{
    if (n == 0)
        return true; /* data may still be NULL */
    if (!reserve(p, n))
        return false;
    memcpy(p->req.data + p->req.len, s, n);
    p->req.len += n;
    return true;
}

/* Copies n bytes lower-casing ASCII letters, eight at a time: a byte b < 0x80 is a capital when
 * b + 0x3f reaches 0x80 ('A' and up) but b + 0x25 does not (up to 'Z'); neither sum carries into
 * the next byte. Header names are a tenth of a request's bytes and this loop was a tenth of the
 * time taken per request, byte by byte. */
static void copy_lower(char *d, const char *s, size_t n)
{
    const uint64_t ones = 0x0101010101010101u;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        uint64_t low7 = w & (0x7f * ones);
        uint64_t upper = ((low7 + 0x3f * ones) ^ (low7 + 0x25 * ones)) & ~w & (0x80 * ones);
        w |= upper >> 2;
        memcpy(d + i, &w, 8);
    }
    for (; i < n; i++) {
        char c = s[i];
        d[i] = (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
    }
}

static bool append_lower(serve_http_parser_t *p, const char *s, size_t n)
{
    if (n == 0)
        return true;
    if (!reserve(p, n))
        return false;
    copy_lower(p->req.data + p->req.len, s, n);
    p->req.len += n;
    return true;
}

static serve_span_t span_at_end(const serve_http_req_t *r)
{
    return (serve_span_t){(uint32_t)r->len, 0};
}

/* ---- http-parser callbacks: a nonzero return stops it with an error we recorded ---- */

static int on_message_begin(http_parser *hp)
{
    parser_of(hp)->begun = true;
    return 0;
}

/* Puts the method in data when the URL starts: by then http-parser has matched all of it. */
static bool start_url(serve_http_parser_t *p)
{
    const char *m = http_method_str((enum http_method)p->hp.method);
    p->req.method = span_at_end(&p->req);
    if (!append(p, m, strlen(m)))
        return false;
    p->req.method.len = (uint32_t)strlen(m);
    p->req.path = span_at_end(&p->req); /* the whole URL until the headers end */
    p->url_started = true;
    return true;
}

static int on_url(http_parser *hp, const char *at, size_t len)
{
    serve_http_parser_t *p = parser_of(hp);
    if (!p->url_started && !start_url(p))
        return -1;
    if (!append(p, at, len))
        return -1;
    p->req.path.len += (uint32_t)len;
    return 0;
}

/* A value ends without the blanks before its line end. It is the last thing in data, so the
 * blanks are dropped from data too. */
static void trim_value(serve_http_parser_t *p)
{
    serve_http_req_t *r = &p->req;
    serve_span_t *v = &r->values[r->n_headers - 1];
    while (v->len > 0 && (r->data[v->off + v->len - 1] == ' ' ||
                          r->data[v->off + v->len - 1] == '\t'))
        v->len--;
    r->len = v->off + v->len;
}

static int on_header_field(http_parser *hp, const char *at, size_t len)
{
    serve_http_parser_t *p = parser_of(hp);
    serve_http_req_t *r = &p->req;
    if (p->headers_done || p->too_many)
        return 0; /* trailers of a chunked body, or headers past the limit: not kept */
    if (p->in_value || r->n_headers == 0) {
        if (r->n_headers > 0)
            trim_value(p);
        if (r->n_headers == SERVE_HTTP_MAX_HEADERS) {
            /* Answered once the headers end, so that the answer does not depend on where the
             * bytes were cut: a malformed byte further on still gets its 400 first. */
            p->too_many = true;
            return 0;
        }
        r->names[r->n_headers] = span_at_end(r);
        r->values[r->n_headers] = span_at_end(r);
        r->n_headers++;
        p->in_value = false;
    }
    if (!append_lower(p, at, len))
        return -1;
    r->names[r->n_headers - 1].len += (uint32_t)len;
    return 0;
}

/* http-parser hands a folded line (obs-fold) over as more of the same value, starting at the
 * fold's blanks. RFC 7230 3.2.4 lets a server read the fold as one space. A value piece reaches
 * the line end when it stops before the end of the bytes given; one that stops right at their end
 * is cut by the caller and goes on in the next call. */
static int on_header_value(http_parser *hp, const char *at, size_t len)
{
    serve_http_parser_t *p = parser_of(hp);
    serve_http_req_t *r = &p->req;
    if (p->headers_done || p->too_many || r->n_headers == 0)
        return 0;
    serve_span_t *v = &r->values[r->n_headers - 1];
    if (!p->in_value) {
        p->in_value = true;
        p->fold_ws = false;
        *v = span_at_end(r);
    } else if (p->value_ended) {
        trim_value(p);
        p->fold_ws = true;
    }
    p->value_ended = at + len != p->feed_end;
    if (p->fold_ws) {
        while (len > 0 && (*at == ' ' || *at == '\t')) {
            at++;
            len--;
        }
        if (len == 0)
            return 0;
        p->fold_ws = false;
        if (v->len > 0 && !append(p, " ", 1))
            return -1;
        v->len = (uint32_t)(r->len - v->off);
    }
    if (!append(p, at, len))
        return -1;
    v->len += (uint32_t)len;
    return 0;
}

/* Splits the URL (now in path) into path and query. Origin-form ("/p?q") and "*" keep all but
 * the query; absolute-form ("http://host/p?q") keeps only its path, "/" when it has none;
 * authority-form (CONNECT's "host:port") has no path. A fragment is dropped. */
static bool split_url(serve_http_parser_t *p)
{
    serve_http_req_t *r = &p->req;
    const char *u = r->data + r->path.off;
    uint32_t n = r->path.len, start = 0;
    const char *hash = memchr(u, '#', n);
    if (hash != NULL)
        n = (uint32_t)(hash - u);
    bool absolute = false;
    if (n > 0 && u[0] != '/' && u[0] != '*') {
        start = n;
        for (uint32_t i = 0; i + 2 < n; i++) {
            if (u[i] == ':' && u[i + 1] == '/' && u[i + 2] == '/') {
                absolute = true;
                start = i + 3;
                while (start < n && u[start] != '/' && u[start] != '?')
                    start++;
                break;
            }
        }
    }
    const char *q = memchr(u + start, '?', n - start);
    uint32_t path_end = q != NULL ? (uint32_t)(q - u) : n;
    uint32_t off = r->path.off;
    r->query = q != NULL ? (serve_span_t){off + path_end + 1, n - path_end - 1}
                         : (serve_span_t){off + n, 0};
    r->path = (serve_span_t){off + start, path_end - start};
    if (absolute && r->path.len == 0) {
        r->path = span_at_end(r);
        if (!append(p, "/", 1))
            return false;
        r->path.len = 1;
    }
    return true;
}

static int on_headers_complete(http_parser *hp)
{
    serve_http_parser_t *p = parser_of(hp);
    serve_http_req_t *r = &p->req;
    if (!p->url_started && !start_url(p))
        return -1;
    if (r->n_headers > 0 && p->in_value)
        trim_value(p);
    p->headers_done = true;
    if (hp->http_major != 1 || hp->http_minor > 1) {
        fail(p, 505, "HTTP version %u.%u is not supported (1.0 and 1.1 are)", hp->http_major,
             hp->http_minor);
        return -1;
    }
    if (p->too_many) {
        fail(p, 431, "more than %d header fields", SERVE_HTTP_MAX_HEADERS);
        return -1;
    }
    if (!split_url(p))
        return -1;
    r->http_major = (uint8_t)hp->http_major;
    r->http_minor = (uint8_t)hp->http_minor;
    r->keep_alive = http_should_keep_alive(hp) != 0;
    /* Without chunking, content_length is the declared length (ULLONG_MAX when none). */
    if (!(hp->flags & F_CHUNKED) && hp->content_length != UINT64_MAX) {
        if (hp->content_length > p->limits.max_body_bytes) {
            fail(p, 413, "Content-Length %llu is over the limit of %zu bytes",
                 (unsigned long long)hp->content_length, p->limits.max_body_bytes);
            return -1;
        }
        /* Room for the body up front, but only up to what a few reads bring: a declared
         * length alone must not make many idle connections hold large buffers. */
        size_t ahead = hp->content_length < BODY_AHEAD ? (size_t)hp->content_length : BODY_AHEAD;
        if (!reserve(p, ahead))
            return -1;
    }
    r->body = span_at_end(r);
    return 0;
}

/* A chunk's size is known before its bytes: refuse the one that would pass the limit. */
static int on_chunk_header(http_parser *hp)
{
    serve_http_parser_t *p = parser_of(hp);
    uint64_t have = p->req.body.len;
    if (hp->content_length > p->limits.max_body_bytes - have) {
        fail(p, 413, "chunked body over the limit of %zu bytes", p->limits.max_body_bytes);
        return -1;
    }
    return 0;
}

static int on_body(http_parser *hp, const char *at, size_t len)
{
    serve_http_parser_t *p = parser_of(hp);
    serve_span_t *b = &p->req.body;
    if (len > p->limits.max_body_bytes - b->len) {
        fail(p, 413, "request body over the limit of %zu bytes", p->limits.max_body_bytes);
        return -1;
    }
    if (!append(p, at, len))
        return -1;
    b->len += (uint32_t)len;
    return 0;
}

/* Pausing stops http_parser_execute right after the request's last byte, so that pipelined
 * requests come out one at a time and the count it returns is exactly this request's. */
static int on_message_complete(http_parser *hp)
{
    parser_of(hp)->complete = true;
    http_parser_pause(hp, 1);
    return 0;
}

/* ---- the parser ---- */

static void reset_request(serve_http_parser_t *p)
{
    serve_http_req_t *r = &p->req;
    r->data = NULL;
    r->len = r->cap = 0;
    r->method = r->path = r->query = r->body = (serve_span_t){0, 0};
    r->n_headers = 0;
    r->keep_alive = false;
    r->http_major = r->http_minor = 0;
    p->header_bytes = 0;
    p->req_bytes = 0;
    p->complete = p->in_value = p->begun = p->headers_done = false;
    p->url_started = p->value_ended = p->fold_ws = p->too_many = false;
}

void serve_http_parser_init(serve_http_parser_t *p, const serve_http_limits_t *limits)
{
    memset(p, 0, sizeof(*p));
    http_parser_init(&p->hp, HTTP_REQUEST);
    http_parser_settings_init(&p->settings);
    p->settings.on_message_begin = on_message_begin;
    p->settings.on_url = on_url;
    p->settings.on_header_field = on_header_field;
    p->settings.on_header_value = on_header_value;
    p->settings.on_headers_complete = on_headers_complete;
    p->settings.on_chunk_header = on_chunk_header;
    p->settings.on_body = on_body;
    p->settings.on_message_complete = on_message_complete;
    p->limits = *limits;
    reset_request(p);
}

void serve_http_parser_close(serve_http_parser_t *p)
{
    free(p->req.data);
    reset_request(p);
}

/* Runs http-parser over n > 0 bytes (n == 0 would tell it the stream ended). */
static serve_http_result_t execute(serve_http_parser_t *p, const char *buf, size_t n,
                                   size_t *taken)
{
    p->feed_end = buf + n;
    size_t k = http_parser_execute(&p->hp, &p->settings, buf, n);
    *taken = k;
    p->req_bytes += k;
    enum http_errno e = HTTP_PARSER_ERRNO(&p->hp);
    if (e == HPE_PAUSED) {
        http_parser_pause(&p->hp, 0);
        return SERVE_HTTP_REQUEST;
    }
    if (e == HPE_HEADER_OVERFLOW) {
        /* http-parser's own bound on a head (80 KiB), for a max_header_bytes above it. */
        fail(p, 431, "request head over %zu bytes: %s", p->req_bytes, http_errno_description(e));
        return SERVE_HTTP_ERROR;
    }
    if (e != HPE_OK) {
        /* A callback's error was recorded with its own status; fail keeps the first. */
        fail(p, 400, "%s (at byte %zu of the request)", http_errno_description(e), p->req_bytes);
        return SERVE_HTTP_ERROR;
    }
    return p->complete ? SERVE_HTTP_REQUEST : SERVE_HTTP_MORE;
}

/* The request line and headers are fed at most up to the header limit, so that a head over it
 * stops at the same byte however the bytes were cut; the rest (the body) is fed whole. */
serve_http_result_t serve_http_feed(serve_http_parser_t *p, const char *buf, size_t len,
                                    size_t *used)
{
    *used = 0;
    if (p->status != 0)
        return SERVE_HTTP_ERROR;
    if (p->complete)
        return SERVE_HTTP_REQUEST; /* not taken yet */
    if (len == 0)
        return SERVE_HTTP_MORE;
    size_t off = 0;
    if (!p->headers_done) {
        size_t max = p->limits.max_header_bytes;
        if (p->header_bytes >= max) {
            fail(p, 431, "request line and headers over the limit of %zu bytes", max);
            return SERVE_HTTP_ERROR;
        }
        size_t n = len < max - p->header_bytes ? len : max - p->header_bytes;
        serve_http_result_t res = execute(p, buf, n, &off);
        *used = off;
        if (res != SERVE_HTTP_MORE)
            return res;
        if (!p->headers_done) {
            /* Every byte of the slice was taken and the head goes on. */
            p->header_bytes += off;
            if (p->header_bytes >= max) {
                fail(p, 431, "request line and headers over the limit of %zu bytes", max);
                return SERVE_HTTP_ERROR;
            }
            return SERVE_HTTP_MORE;
        }
        if (off == len)
            return SERVE_HTTP_MORE;
    }
    size_t k;
    serve_http_result_t res = execute(p, buf + off, len - off, &k);
    *used = off + k;
    return res;
}

void serve_http_take(serve_http_parser_t *p, serve_http_req_t *out)
{
    if (!p->complete) {
        memset(out, 0, sizeof(*out));
        return;
    }
    /* Only the headers read are copied: the span arrays are most of the struct's 1 KiB. */
    const serve_http_req_t *r = &p->req;
    out->data = r->data;
    out->len = r->len;
    out->cap = r->cap;
    out->method = r->method;
    out->path = r->path;
    out->query = r->query;
    out->body = r->body;
    memcpy(out->names, r->names, r->n_headers * sizeof(serve_span_t));
    memcpy(out->values, r->values, r->n_headers * sizeof(serve_span_t));
    out->n_headers = r->n_headers;
    out->keep_alive = r->keep_alive;
    out->http_major = r->http_major;
    out->http_minor = r->http_minor;
    reset_request(p);
}

void serve_http_req_free(serve_http_req_t *r)
{
    if (r == NULL)
        return;
    free(r->data);
    r->data = NULL;
    r->len = r->cap = 0;
    r->n_headers = 0;
}

bool serve_http_pending(const serve_http_parser_t *p)
{
    return p->begun && !p->complete;
}

/* ---- the response head ---- */

const char *serve_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* Writes n in decimal at the end of buf (20 bytes); returns where the digits start. */
static char *format_size(char *end, size_t n)
{
    char *s = end;
    do {
        *--s = (char)('0' + n % 10);
        n /= 10;
    } while (n > 0);
    return s;
}

static char *put(char *o, const char *s, size_t n)
{
    memcpy(o, s, n);
    return o + n;
}

#define PUT_LIT(o, lit) put((o), (lit), sizeof(lit) - 1)

size_t serve_http_head(char *out, size_t cap, int status, const char *content_type,
                       const char *extra_headers, size_t body_len, bool keep_alive)
{
    if (status < 100 || status > 999)
        return 0;
    const char *reason = serve_http_reason(status);
    size_t reason_len = strlen(reason);
    size_t type_len = content_type != NULL ? strlen(content_type) : 0;
    size_t extra_len = extra_headers != NULL ? strlen(extra_headers) : 0;
    char num[20];
    char *digits = format_size(num + sizeof(num), body_len);
    size_t num_len = (size_t)(num + sizeof(num) - digits);

    static const char close_line[] = "Connection: close\r\n";
    size_t need = (sizeof("HTTP/1.1 200 ") - 1) + reason_len + 2 +
                  (type_len > 0 ? sizeof("Content-Type: ") - 1 + type_len + 2 : 0) +
                  (sizeof("Content-Length: ") - 1) + num_len + 2 + extra_len +
                  (keep_alive ? 0 : sizeof(close_line) - 1) + 2;
    if (need > cap)
        return 0;

    char *o = PUT_LIT(out, "HTTP/1.1 ");
    *o++ = (char)('0' + status / 100);
    *o++ = (char)('0' + status / 10 % 10);
    *o++ = (char)('0' + status % 10);
    *o++ = ' ';
    o = put(o, reason, reason_len);
    o = PUT_LIT(o, "\r\n");
    if (type_len > 0) {
        o = PUT_LIT(o, "Content-Type: ");
        o = put(o, content_type, type_len);
        o = PUT_LIT(o, "\r\n");
    }
    o = PUT_LIT(o, "Content-Length: ");
    o = put(o, digits, num_len);
    o = PUT_LIT(o, "\r\n");
    if (extra_len > 0)
        o = put(o, extra_headers, extra_len);
    if (!keep_alive)
        o = put(o, close_line, sizeof(close_line) - 1);
    o = PUT_LIT(o, "\r\n");
    if (need < cap)
        *o = '\0';
    return need;
}
