/* Tests for plugins/serve/http_parse.c: requests parsed whole, cut anywhere and pipelined; the
 * limits (431, 413), malformed input (400), versions (505); the response head writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "serve/http_parse.h"

static const serve_http_limits_t big_limits = {8192, 1 << 20};

static bool span_eq(const serve_http_req_t *r, serve_span_t s, const char *want)
{
    return s.len == strlen(want) && memcmp(r->data + s.off, want, s.len) == 0;
}

#define assert_span(r, s, want)                                                                    \
    do {                                                                                           \
        if (!span_eq((r), (s), (want)))                                                            \
            fail_msg("%s is \"%.*s\", not \"%s\"", #s, (int)(s).len, (r)->data + (s).off, want);  \
    } while (0)

/* The i-th header's name and value must be these. */
static void assert_header(const serve_http_req_t *r, uint32_t i, const char *name,
                          const char *value)
{
    assert_true(i < r->n_headers);
    assert_span(r, r->names[i], name);
    assert_span(r, r->values[i], value);
}

/* Every span of a request lies inside its data. */
static void assert_spans_inside(const serve_http_req_t *r)
{
    assert_true(r->len <= r->cap);
    serve_span_t s[4 + 2 * SERVE_HTTP_MAX_HEADERS];
    size_t n = 0;
    s[n++] = r->method;
    s[n++] = r->path;
    s[n++] = r->query;
    s[n++] = r->body;
    for (uint32_t i = 0; i < r->n_headers; i++) {
        s[n++] = r->names[i];
        s[n++] = r->values[i];
    }
    for (size_t i = 0; i < n; i++)
        assert_true((size_t)s[i].off + s[i].len <= r->len);
}

/* Parses text that holds exactly one whole request. */
static void parse_one(const char *text, const serve_http_limits_t *limits, serve_http_req_t *r)
{
    serve_http_parser_t p;
    serve_http_parser_init(&p, limits);
    size_t used = 0, len = strlen(text);
    assert_int_equal(serve_http_feed(&p, text, len, &used), SERVE_HTTP_REQUEST);
    assert_int_equal(used, len);
    serve_http_take(&p, r);
    assert_false(serve_http_pending(&p));
    assert_spans_inside(r);
    serve_http_parser_close(&p);
}

/* Feeds text whole and returns the result; the status and error stay in *p. */
static serve_http_result_t feed_text(serve_http_parser_t *p, const char *text, size_t *used)
{
    return serve_http_feed(p, text, strlen(text), used);
}

/* Parses text that must fail with this status, whole and one byte at a time; the error message
 * must hold `needle`. */
static void expect_error(const char *text, size_t len, const serve_http_limits_t *limits,
                         int status, const char *needle)
{
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        serve_http_parser_t p;
        serve_http_parser_init(&p, limits);
        size_t used = 0;
        serve_http_result_t res = SERVE_HTTP_MORE;
        if (bytewise) {
            for (size_t i = 0; i < len && res == SERVE_HTTP_MORE; i++)
                res = serve_http_feed(&p, text + i, 1, &used);
        } else {
            res = serve_http_feed(&p, text, len, &used);
        }
        assert_int_equal(res, SERVE_HTTP_ERROR);
        assert_int_equal(p.status, status);
        if (strstr(p.error, needle) == NULL)
            fail_msg("error \"%s\" does not say \"%s\"", p.error, needle);
        serve_http_parser_close(&p);
    }
}

/* ---- one request ---- */

static void test_simple_get(void **state)
{
    (void)state;
    serve_http_req_t r;
    parse_one("GET /hello HTTP/1.1\r\nHost: example.com\r\n\r\n", &big_limits, &r);
    assert_span(&r, r.method, "GET");
    assert_span(&r, r.path, "/hello");
    assert_span(&r, r.query, "");
    assert_span(&r, r.body, "");
    assert_int_equal(r.n_headers, 1);
    assert_header(&r, 0, "host", "example.com");
    assert_true(r.keep_alive);
    assert_int_equal(r.http_major, 1);
    assert_int_equal(r.http_minor, 1);
    serve_http_req_free(&r);
    serve_http_req_free(&r); /* a freed request frees again as a no-op */
}

static void test_query_split(void **state)
{
    (void)state;
    static const struct {
        const char *url, *path, *query;
    } cases[] = {
        {"/a/b?x=1&y=2", "/a/b", "x=1&y=2"},
        {"/p?", "/p", ""},
        {"/p?a?b", "/p", "a?b"},
        {"/p#frag", "/p", ""},
        {"/p?q=1#frag", "/p", "q=1"},
        {"/", "/", ""},
        {"*", "*", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "OPTIONS %s HTTP/1.1\r\n\r\n", cases[i].url);
        serve_http_req_t r;
        parse_one(text, &big_limits, &r);
        assert_span(&r, r.method, "OPTIONS");
        assert_span(&r, r.path, cases[i].path);
        assert_span(&r, r.query, cases[i].query);
        serve_http_req_free(&r);
    }
}

static void test_absolute_url(void **state)
{
    (void)state;
    static const struct {
        const char *url, *path, *query;
    } cases[] = {
        {"http://example.com:8080/api/v1?k=v", "/api/v1", "k=v"},
        {"https://user@example.com/x", "/x", ""},
        {"http://example.com", "/", ""},
        {"http://example.com?x=1", "/", "x=1"},
        {"http://example.com/a#f", "/a", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "GET %s HTTP/1.1\r\nA: b\r\n\r\n", cases[i].url);
        serve_http_req_t r;
        parse_one(text, &big_limits, &r);
        assert_span(&r, r.path, cases[i].path);
        assert_span(&r, r.query, cases[i].query);
        assert_header(&r, 0, "a", "b");
        serve_http_req_free(&r);
    }
    /* CONNECT's authority-form names no path. */
    serve_http_req_t r;
    parse_one("CONNECT example.com:443 HTTP/1.1\r\n\r\n", &big_limits, &r);
    assert_span(&r, r.method, "CONNECT");
    assert_span(&r, r.path, "");
    assert_span(&r, r.query, "");
    serve_http_req_free(&r);
}

static void test_headers(void **state)
{
    (void)state;
    serve_http_req_t r;
    parse_one("GET / HTTP/1.1\r\n"
              "X-Foo: Bar\r\n"
              "x-FOO:   baz  \r\n"
              "ACCEPT:\t text/html \t\r\n"
              "Empty:\r\n"
              "Blank:    \r\n"
              "X-Fold: a  \r\n"
              "   b\t\r\n"
              "\tc\r\n"
              "Last: one two\r\n"
              "X-Long-Name_With^Ca`pS|~09AZaz: Mixed Case Value\r\n"
              "\r\n",
              &big_limits, &r);
    assert_int_equal(r.n_headers, 8);
    assert_header(&r, 0, "x-foo", "Bar");
    assert_header(&r, 1, "x-foo", "baz");
    assert_header(&r, 2, "accept", "text/html");
    assert_header(&r, 3, "empty", "");
    assert_header(&r, 4, "blank", "");
    assert_header(&r, 5, "x-fold", "a b c");
    assert_header(&r, 6, "last", "one two");
    assert_header(&r, 7, "x-long-name_with^ca`ps|~09azaz", "Mixed Case Value");
    serve_http_req_free(&r);
}

static void test_post_content_length(void **state)
{
    (void)state;
    serve_http_req_t r;
    parse_one("POST /submit?id=7 HTTP/1.1\r\nContent-Type: text/plain\r\n"
              "Content-Length: 11\r\n\r\nhello world",
              &big_limits, &r);
    assert_span(&r, r.method, "POST");
    assert_span(&r, r.path, "/submit");
    assert_span(&r, r.query, "id=7");
    assert_span(&r, r.body, "hello world");
    assert_int_equal(r.n_headers, 2);
    assert_header(&r, 1, "content-length", "11");
    serve_http_req_free(&r);

    parse_one("PUT /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &big_limits, &r);
    assert_span(&r, r.method, "PUT");
    assert_span(&r, r.body, "");
    serve_http_req_free(&r);
}

static void test_chunked(void **state)
{
    (void)state;
    serve_http_req_t r;
    parse_one("POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
              "4;name=val\r\nWiki\r\n"
              "5\r\npedia\r\n"
              "E; a=b; c\r\n in\r\n\r\nchunks.\r\n"
              "0\r\nTrailer: ignored\r\n\r\n",
              &big_limits, &r);
    assert_span(&r, r.body, "Wikipedia in\r\n\r\nchunks.");
    assert_int_equal(r.n_headers, 1); /* the trailer is not a header */
    assert_header(&r, 0, "transfer-encoding", "chunked");
    assert_true(r.keep_alive);
    serve_http_req_free(&r);
}

/* A body larger than the first buffer grows it, read in uneven pieces. */
static void test_large_body(void **state)
{
    (void)state;
    size_t body = 300000; /* past what is reserved ahead of the body */
    char head[128];
    int hl = snprintf(head, sizeof(head), "POST /big HTTP/1.1\r\nContent-Length: %zu\r\n\r\n",
                      body);
    size_t len = (size_t)hl + body;
    char *text = malloc(len);
    assert_non_null(text);
    memcpy(text, head, (size_t)hl);
    for (size_t i = 0; i < body; i++)
        text[hl + i] = (char)('a' + i % 26);
    serve_http_parser_t p;
    serve_http_parser_init(&p, &big_limits);
    size_t off = 0, step = 1, used;
    serve_http_result_t res = SERVE_HTTP_MORE;
    while (res == SERVE_HTTP_MORE) {
        size_t n = len - off < step ? len - off : step;
        res = serve_http_feed(&p, text + off, n, &used);
        off += used;
        step = step * 3 + 1;
    }
    assert_int_equal(res, SERVE_HTTP_REQUEST);
    assert_int_equal(off, len);
    serve_http_req_t r;
    serve_http_take(&p, &r);
    assert_int_equal(r.body.len, body);
    assert_memory_equal(r.data + r.body.off, text + hl, body);
    serve_http_req_free(&r);
    serve_http_parser_close(&p);
    free(text);
}

/* ---- pipelining and cuts ---- */

/* Appends a request to a text dump (NUL-terminated): every field, so that two dumps compare
 * whole. */
static void dump_req(char **out, size_t *len, const serve_http_req_t *r, size_t used)
{
    char line[64];
    size_t need = r->len * 2 + 64 * (r->n_headers + 8) + 1;
    char *d = realloc(*out, *len + need);
    assert_non_null(d);
    *out = d;
#define DUMP_SPAN(s)                                                                               \
    do {                                                                                           \
        int n_ = snprintf(line, sizeof(line), "%u:", (unsigned)(s).len);                           \
        memcpy(d + *len, line, (size_t)n_);                                                        \
        *len += (size_t)n_;                                                                        \
        memcpy(d + *len, r->data + (s).off, (s).len);                                              \
        *len += (s).len;                                                                           \
    } while (0)
    DUMP_SPAN(r->method);
    DUMP_SPAN(r->path);
    DUMP_SPAN(r->query);
    for (uint32_t i = 0; i < r->n_headers; i++) {
        DUMP_SPAN(r->names[i]);
        DUMP_SPAN(r->values[i]);
    }
    DUMP_SPAN(r->body);
#undef DUMP_SPAN
    int n = snprintf(line, sizeof(line), "|%d%d%d|%zu\n", r->keep_alive, r->http_major,
                     r->http_minor, used);
    memcpy(d + *len, line, (size_t)n);
    *len += (size_t)n;
    d[*len] = '\0'; /* so that a dump reads as a string */
}

/* Parses every request of text fed in pieces of `step` bytes (0: all at once) into a dump;
 * returns how many requests there were. Each request's dump ends with its byte count. */
static int parse_stream(const char *text, size_t len, size_t step, char **dump, size_t *dlen)
{
    serve_http_parser_t p;
    serve_http_parser_init(&p, &big_limits);
    int count = 0;
    size_t off = 0, req_bytes = 0;
    *dump = NULL;
    *dlen = 0;
    while (off < len) {
        size_t n = step == 0 || len - off < step ? len - off : step;
        size_t used = 0;
        serve_http_result_t res = serve_http_feed(&p, text + off, n, &used);
        assert_int_not_equal(res, SERVE_HTTP_ERROR);
        assert_true(used <= n);
        off += used;
        req_bytes += used;
        if (res == SERVE_HTTP_MORE) {
            assert_int_equal(used, n);
            continue;
        }
        serve_http_req_t r;
        serve_http_take(&p, &r);
        assert_spans_inside(&r);
        dump_req(dump, dlen, &r, req_bytes);
        serve_http_req_free(&r);
        req_bytes = 0;
        count++;
    }
    assert_false(serve_http_pending(&p));
    serve_http_parser_close(&p);
    return count;
}

static const char pipelined[] =
    "GET /one?a=1 HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n"
    "POST /two HTTP/1.1\r\nContent-Length: 5\r\nX-Fold: p\r\n q\r\n\r\nhello"
    "\r\n" /* a stray line end between requests, as some clients send */
    "PUT /three HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    "GET http://h/four HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    "DELETE /five HTTP/1.1\r\nConnection: close\r\n\r\n";

static void test_pipelined_two_three(void **state)
{
    (void)state;
    const char *one = "GET /a HTTP/1.1\r\n\r\n";
    const char *two = "POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz";
    const char *three = "GET /c?q HTTP/1.1\r\nX: y\r\n\r\n";
    char text[256];
    snprintf(text, sizeof(text), "%s%s%s", one, two, three);
    size_t lens[3] = {strlen(one), strlen(two), strlen(three)};
    const char *paths[3] = {"/a", "/b", "/c"};
    for (int n = 2; n <= 3; n++) {
        size_t len = lens[0] + lens[1] + (n == 3 ? lens[2] : 0), off = 0;
        serve_http_parser_t p;
        serve_http_parser_init(&p, &big_limits);
        for (int i = 0; i < n; i++) {
            size_t used;
            assert_int_equal(serve_http_feed(&p, text + off, len - off, &used),
                             SERVE_HTTP_REQUEST);
            assert_int_equal(used, lens[i]);
            /* Until taken, the request stays and nothing more is read. */
            assert_int_equal(serve_http_feed(&p, text + off + used, len - off - used, &used),
                             SERVE_HTTP_REQUEST);
            assert_int_equal(used, 0);
            off += lens[i];
            serve_http_req_t r;
            serve_http_take(&p, &r);
            assert_span(&r, r.path, paths[i]);
            if (i == 1)
                assert_span(&r, r.body, "xyz");
            serve_http_req_free(&r);
        }
        assert_int_equal(off, len);
        serve_http_parser_close(&p);
    }
}

/* Fed whole, a byte at a time, or in any other piece size, the requests come out the same. */
static void test_pipelined_any_cut(void **state)
{
    (void)state;
    size_t len = strlen(pipelined);
    char *whole, *cut;
    size_t wlen, clen;
    assert_int_equal(parse_stream(pipelined, len, 0, &whole, &wlen), 5);
    assert_non_null(strstr(whole, "6:x-fold3:p q"));
    assert_non_null(strstr(whole, "5:hello"));
    assert_non_null(strstr(whole, "5:abcde"));
    assert_non_null(strstr(whole, "5:/four0:"));
    for (size_t step = 1; step <= 64; step++) {
        assert_int_equal(parse_stream(pipelined, len, step, &cut, &clen), 5);
        assert_int_equal(clen, wlen);
        assert_memory_equal(cut, whole, wlen);
        free(cut);
    }
    free(whole);
}

/* ---- keep-alive ---- */

static void test_keep_alive(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        bool keep_alive;
        int minor;
    } cases[] = {
        {"GET / HTTP/1.1\r\n\r\n", true, 1},
        {"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false, 1},
        {"GET / HTTP/1.1\r\nConnection: Keep-Alive\r\n\r\n", true, 1},
        {"GET / HTTP/1.0\r\n\r\n", false, 0},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true, 0},
        {"GET / HTTP/1.0\r\nConnection: close\r\n\r\n", false, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        serve_http_req_t r;
        parse_one(cases[i].text, &big_limits, &r);
        assert_int_equal(r.keep_alive, cases[i].keep_alive);
        assert_int_equal(r.http_major, 1);
        assert_int_equal(r.http_minor, cases[i].minor);
        serve_http_req_free(&r);
    }
}

/* ---- limits and errors ---- */

/* A request whose line and headers take exactly `bytes` bytes. */
static char *head_of(size_t bytes)
{
    const char *start = "GET / HTTP/1.1\r\nX: ";
    size_t fixed = strlen(start) + 4;
    assert_true(bytes > fixed);
    char *t = malloc(bytes + 1);
    assert_non_null(t);
    memcpy(t, start, strlen(start));
    memset(t + strlen(start), 'v', bytes - fixed);
    memcpy(t + bytes - 4, "\r\n\r\n", 5);
    return t;
}

static void test_header_limit(void **state)
{
    (void)state;
    serve_http_limits_t lim = {256, 1024};
    char *t = head_of(256); /* at the limit: fine */
    serve_http_req_t r;
    parse_one(t, &lim, &r);
    assert_int_equal(r.values[0].len, 256 - strlen("GET / HTTP/1.1\r\nX: ") - 4);
    serve_http_req_free(&r);
    free(t);

    t = head_of(257);
    expect_error(t, strlen(t), &lim, 431, "over the limit of 256 bytes");
    free(t);

    /* A head that never ends is refused once it passes the limit, without its end. */
    char big[4096];
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    memset(big + 19, 'v', sizeof(big) - 19);
    expect_error(big, sizeof(big), &lim, 431, "over the limit");
}

static void test_too_many_headers(void **state)
{
    (void)state;
    for (int n = SERVE_HTTP_MAX_HEADERS; n <= SERVE_HTTP_MAX_HEADERS + 1; n++) {
        char text[4096];
        size_t len = (size_t)snprintf(text, sizeof(text), "GET / HTTP/1.1\r\n");
        for (int i = 0; i < n; i++)
            len += (size_t)snprintf(text + len, sizeof(text) - len, "H%d: %d\r\n", i, i);
        len += (size_t)snprintf(text + len, sizeof(text) - len, "\r\n");
        if (n == SERVE_HTTP_MAX_HEADERS) {
            serve_http_req_t r;
            parse_one(text, &big_limits, &r);
            assert_int_equal(r.n_headers, n);
            assert_header(&r, (uint32_t)n - 1, "h63", "63");
            serve_http_req_free(&r);
        } else {
            expect_error(text, len, &big_limits, 431, "more than 64 header fields");
        }
    }
}

static void test_body_limit_declared(void **state)
{
    (void)state;
    serve_http_limits_t lim = {1024, 1000};
    /* Refused once the head ends: the body is never read. */
    const char *head = "POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n";
    expect_error(head, strlen(head), &lim, 413, "Content-Length 1001 is over the limit");
    const char *huge = "POST / HTTP/1.1\r\nContent-Length: 99999999999999\r\n\r\n";
    expect_error(huge, strlen(huge), &lim, 413, "over the limit of 1000 bytes");

    char text[2048];
    int n = snprintf(text, sizeof(text), "POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n");
    memset(text + n, 'b', 1000);
    text[n + 1000] = '\0';
    serve_http_req_t r;
    parse_one(text, &lim, &r);
    assert_int_equal(r.body.len, 1000);
    serve_http_req_free(&r);
}

static void test_body_limit_chunked(void **state)
{
    (void)state;
    serve_http_limits_t lim = {1024, 1000};
    char text[4096];
    const char *head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    /* 600 + 400 bytes: exactly the limit. */
    int n = snprintf(text, sizeof(text), "%s258\r\n", head);
    memset(text + n, 'a', 600);
    n += 600;
    n += snprintf(text + n, sizeof(text) - (size_t)n, "\r\n190\r\n");
    memset(text + n, 'b', 400);
    n += 400;
    n += snprintf(text + n, sizeof(text) - (size_t)n, "\r\n0\r\n\r\n");
    serve_http_req_t r;
    parse_one(text, &lim, &r);
    assert_int_equal(r.body.len, 1000);
    serve_http_req_free(&r);

    /* 600 + 401: refused at the second chunk's size line, before its bytes. */
    n = snprintf(text, sizeof(text), "%s258\r\n", head);
    memset(text + n, 'a', 600);
    n += 600;
    n += snprintf(text + n, sizeof(text) - (size_t)n, "\r\n191\r\n");
    expect_error(text, (size_t)n, &lim, 413, "chunked body over the limit of 1000 bytes");
}

static void test_bad_input(void **state)
{
    (void)state;
    const char garbage[] = "\x01\x02\x03 hello\r\n\r\n";
    expect_error(garbage, sizeof(garbage) - 1, &big_limits, 400, "invalid HTTP method");
    const char *bad_chunk = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
    expect_error(bad_chunk, strlen(bad_chunk), &big_limits, 400,
                 "invalid character in chunk size header (at byte 47 of the request)");
    const char *bad_len = "POST / HTTP/1.1\r\nContent-Length: 12x\r\n\r\n";
    expect_error(bad_len, strlen(bad_len), &big_limits, 400, "content-length");
    const char *bad_header = "GET / HTTP/1.1\r\nNo colon here\r\n\r\n";
    expect_error(bad_header, strlen(bad_header), &big_limits, 400, "invalid character");
}

static void test_version(void **state)
{
    (void)state;
    const char *v2 = "GET / HTTP/2.0\r\nHost: h\r\n\r\n";
    expect_error(v2, strlen(v2), &big_limits, 505, "HTTP version 2.0 is not supported");
    const char *v12 = "GET / HTTP/1.2\r\n\r\n";
    expect_error(v12, strlen(v12), &big_limits, 505, "HTTP version 1.2");
    const char *v09 = "GET /\r\n\r\n"; /* no version: HTTP/0.9 */
    expect_error(v09, strlen(v09), &big_limits, 505, "HTTP version 0.9");
}

static void test_sticky_error(void **state)
{
    (void)state;
    serve_http_parser_t p;
    serve_http_parser_init(&p, &big_limits);
    size_t used;
    assert_int_equal(feed_text(&p, "BLAH / HTTP/1.1\r\n", &used), SERVE_HTTP_ERROR);
    assert_int_equal(p.status, 400);
    char first[sizeof(p.error)];
    memcpy(first, p.error, sizeof(first));
    assert_int_equal(feed_text(&p, "GET / HTTP/1.1\r\n\r\n", &used), SERVE_HTTP_ERROR);
    assert_int_equal(used, 0);
    assert_int_equal(p.status, 400);
    assert_string_equal(p.error, first);
    serve_http_parser_close(&p);
}

static void test_pending(void **state)
{
    (void)state;
    serve_http_parser_t p;
    serve_http_parser_init(&p, &big_limits);
    size_t used;
    assert_false(serve_http_pending(&p));
    assert_int_equal(feed_text(&p, "\r\n", &used), SERVE_HTTP_MORE);
    assert_false(serve_http_pending(&p)); /* blank lines between requests are no request */
    assert_int_equal(feed_text(&p, "GE", &used), SERVE_HTTP_MORE);
    assert_int_equal(used, 2);
    assert_true(serve_http_pending(&p));
    assert_int_equal(feed_text(&p, "T / HTTP/1.1\r\n", &used), SERVE_HTTP_MORE);
    assert_true(serve_http_pending(&p));
    assert_int_equal(feed_text(&p, "\r\nGET", &used), SERVE_HTTP_REQUEST);
    assert_int_equal(used, 2);
    assert_false(serve_http_pending(&p)); /* whole, waiting to be taken */
    serve_http_req_t r;
    serve_http_take(&p, &r);
    assert_span(&r, r.method, "GET");
    serve_http_req_free(&r);
    assert_false(serve_http_pending(&p));
    assert_int_equal(feed_text(&p, "GET", &used), SERVE_HTTP_MORE);
    assert_true(serve_http_pending(&p));
    /* Taking before a request is whole gives an empty one and changes nothing. */
    serve_http_take(&p, &r);
    assert_null(r.data);
    assert_int_equal(r.n_headers, 0);
    assert_true(serve_http_pending(&p));
    assert_int_equal(feed_text(&p, " /x HTTP/1.1\r\n\r\n", &used), SERVE_HTTP_REQUEST);
    serve_http_take(&p, &r);
    assert_span(&r, r.path, "/x");
    serve_http_req_free(&r);
    /* Nothing fed: nothing happens. */
    assert_int_equal(serve_http_feed(&p, "", 0, &used), SERVE_HTTP_MORE);
    assert_int_equal(used, 0);
    assert_false(serve_http_pending(&p));
    /* A request left unread is freed with the parser. */
    assert_int_equal(feed_text(&p, "GET /left HTTP/1.1\r\nA: b\r\n", &used), SERVE_HTTP_MORE);
    serve_http_parser_close(&p);
}

/* ---- the response head ---- */

static void test_head(void **state)
{
    (void)state;
    char out[256];
    size_t n = serve_http_head(out, sizeof(out), 200, "text/plain", NULL, 5, true);
    const char *want = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
    assert_int_equal(out[n], '\0');

    n = serve_http_head(out, sizeof(out), 404, NULL, "X-A: 1\r\nX-B: 2\r\n", 0, false);
    want = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nX-A: 1\r\nX-B: 2\r\n"
           "Connection: close\r\n\r\n";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);

    n = serve_http_head(out, sizeof(out), 599, "application/json", "", 18446744073709551615u,
                        true);
    want = "HTTP/1.1 599 Unknown\r\nContent-Type: application/json\r\n"
           "Content-Length: 18446744073709551615\r\n\r\n";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);

    /* Exactly the room it needs (no NUL), and one byte less. */
    want = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 42\r\nConnection: close\r\n\r\n";
    size_t wl = strlen(want);
    memset(out, 'x', sizeof(out));
    assert_int_equal(serve_http_head(out, wl, 503, NULL, NULL, 42, false), wl);
    assert_memory_equal(out, want, wl);
    assert_int_equal(out[wl], 'x');
    assert_int_equal(serve_http_head(out, wl - 1, 503, NULL, NULL, 42, false), 0);
    assert_int_equal(serve_http_head(out, 0, 200, NULL, NULL, 0, true), 0);
    assert_int_equal(serve_http_head(out, sizeof(out), 99, NULL, NULL, 0, true), 0);
    assert_int_equal(serve_http_head(out, sizeof(out), 1000, NULL, NULL, 0, true), 0);
}

static void test_reason(void **state)
{
    (void)state;
    static const int known[] = {200, 201, 204, 400, 404, 405, 408, 413,
                                429, 431, 500, 502, 503, 504, 505};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        assert_string_not_equal(serve_http_reason(known[i]), "Unknown");
    assert_string_equal(serve_http_reason(200), "OK");
    assert_string_equal(serve_http_reason(413), "Payload Too Large");
    assert_string_equal(serve_http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(serve_http_reason(505), "HTTP Version Not Supported");
    assert_string_equal(serve_http_reason(299), "Unknown");
    assert_string_equal(serve_http_reason(-1), "Unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_query_split),
        cmocka_unit_test(test_absolute_url),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_post_content_length),
        cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_large_body),
        cmocka_unit_test(test_pipelined_two_three),
        cmocka_unit_test(test_pipelined_any_cut),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_header_limit),
        cmocka_unit_test(test_too_many_headers),
        cmocka_unit_test(test_body_limit_declared),
        cmocka_unit_test(test_body_limit_chunked),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_sticky_error),
        cmocka_unit_test(test_pending),
        cmocka_unit_test(test_head),
        cmocka_unit_test(test_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
