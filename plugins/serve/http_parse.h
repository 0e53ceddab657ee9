/* HTTP/1.1 request parsing for the serve ingress, over http-parser: bytes in, whole requests
 * out, one at a time so pipelined requests keep their order; and the response writer. */
#ifndef LURAY_SERVE_HTTP_PARSE_H
#define LURAY_SERVE_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>

#define SERVE_HTTP_MAX_HEADERS 64

/* A piece of serve_http_req_t.data. */
typedef struct {
    uint32_t off;
    uint32_t len;
} serve_span_t;

/* One whole request. Every span points into `data`, which the request owns. Header names are
 * lower-cased; repeated headers stay separate entries, in order. The body is de-chunked. */
typedef struct {
    char *data;
    size_t len, cap;
    serve_span_t method, path, query, body; /* query: after '?', without it; empty if none */
    serve_span_t names[SERVE_HTTP_MAX_HEADERS], values[SERVE_HTTP_MAX_HEADERS];
    uint32_t n_headers;
    bool keep_alive; /* HTTP/1.1 without "Connection: close", or 1.0 with keep-alive */
    uint8_t http_major, http_minor;
} serve_http_req_t;

typedef struct {
    size_t max_header_bytes; /* request line + headers; beyond: 431 */
    size_t max_body_bytes;   /* declared or de-chunked body; beyond: 413 */
} serve_http_limits_t;

typedef enum {
    SERVE_HTTP_MORE = 0, /* every byte taken, no whole request yet */
    SERVE_HTTP_REQUEST,  /* a whole request: take it with serve_http_take */
    SERVE_HTTP_ERROR,    /* the connection must answer serve_http_parser_t.status and close */
} serve_http_result_t;

typedef struct {
    http_parser hp;
    http_parser_settings settings;
    serve_http_limits_t limits;
    serve_http_req_t req;     /* the request being read */
    size_t header_bytes;      /* bytes of request line and headers read so far */
    int status;               /* after SERVE_HTTP_ERROR: 400, 413, 431 or 505 (500: no memory) */
    char error[128];          /* after SERVE_HTTP_ERROR: what was wrong, for the error body */
    bool complete;            /* internal: the current request is whole */
    bool in_value;            /* internal: header callbacks state */
    /* internal, all of them: */
    const char *feed_end;     /* end of the bytes http_parser_execute is reading */
    size_t req_bytes;         /* bytes of the current request taken so far (error positions) */
    bool begun;               /* the current request's first byte is read */
    bool headers_done;        /* request line and headers are whole; trailers are skipped */
    bool url_started;         /* the method and the start of the URL are in data */
    bool value_ended;         /* the last header value reached its line end */
    bool fold_ws;             /* skipping the blanks that start a folded value line */
    bool too_many;            /* over SERVE_HTTP_MAX_HEADERS headers: 431 once they end */
} serve_http_parser_t;

void serve_http_parser_init(serve_http_parser_t *p, const serve_http_limits_t *limits);
void serve_http_parser_close(serve_http_parser_t *p);

/* Feeds bytes. Reads at most up to the end of the first whole request and sets *used to the
 * bytes taken; the caller feeds the rest again after taking the request. Once it has returned
 * SERVE_HTTP_ERROR every later call returns it again. */
serve_http_result_t serve_http_feed(serve_http_parser_t *p, const char *buf, size_t len,
                                    size_t *used);

/* Moves the whole request out into *out (which the caller then owns and frees with
 * serve_http_req_free) and readies the parser for the next one. */
void serve_http_take(serve_http_parser_t *p, serve_http_req_t *out);
void serve_http_req_free(serve_http_req_t *r);

/* Whether the parser is in the middle of a request (some bytes of it read). */
bool serve_http_pending(const serve_http_parser_t *p);

/* The reason phrase of a status code ("Not Found"); "Unknown" for codes it does not know. */
const char *serve_http_reason(int status);

/* Writes a whole response head into out (at most cap bytes): status line, Content-Type (when
 * given), Content-Length, extra header lines (each "Name: value\r\n", may be NULL),
 * "Connection: close" when !keep_alive. Returns the length, or 0 when cap is too small or
 * status is not a three-digit code. Adds a NUL after the head when there is room for it. */
size_t serve_http_head(char *out, size_t cap, int status, const char *content_type,
                       const char *extra_headers, size_t body_len, bool keep_alive);

#endif
