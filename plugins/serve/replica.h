/* A replica's side of the proxy link: the socket requests arrive on, the sockets responses go
 * back on (one per proxy address), and the requests read but not yet answered. */
#ifndef LURAY_SERVE_REPLICA_H
#define LURAY_SERVE_REPLICA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sbuf.h"

#define REPLICA_MAX_PROXIES 8

/* One request read from a frame; its strings point into the frame the replica holds. */
typedef struct {
    uint64_t id;
    int proxy; /* index into replica_t.proxies */
    const char *method, *path, *query, *body;
    size_t method_len, path_len, query_len, body_len;
    uint16_t n_headers;
    const char *headers; /* n x (str name, str value), read with srd_* */
    size_t headers_len;
} replica_req_t;

typedef struct {
    char addr[512];
    int sock;      /* PUSH to the proxy's reply socket */
    sbuf_t frame;  /* responses waiting to be sent */
    uint32_t count;
} replica_proxy_t;

typedef struct {
    int sock; /* PULL: requests */
    char ipc[600], tcp[300];
    replica_proxy_t proxies[REPLICA_MAX_PROXIES];
    int n_proxies;
    /* the frame being read: a nanomsg message and where the next request starts */
    void *msg;
    srd_t rd;
    uint32_t left;
    int msg_proxy;
    /* frames whose requests were handed out but not all answered yet stay alive here */
    void **held;
    size_t n_held, cap_held;
} replica_t;

/* Binds ipc://DIR/serve-r<pid>-<n>.sock, and tcp on host (a free port) when host is given. */
int replica_open(replica_t *r, const char *dir, const char *host, char *err, size_t errlen);
void replica_close(replica_t *r);
/* The descriptor that is readable when requests wait. */
int replica_fd(const replica_t *r);

/* The next request; waits up to wait_ms (0: only what has arrived, -1: forever). Returns 1 with
 * *out filled, 0 when none came in time, -1 on a socket error (err set). A malformed frame is
 * dropped with a warning on stderr. The strings stay valid until replica_release. */
int replica_next(replica_t *r, int wait_ms, replica_req_t *out, char *err, size_t errlen);

/* Frees the frames that replica_next handed out requests from (after they are answered). */
void replica_release(replica_t *r);

/* Adds a response to its proxy's pending frame. */
void replica_respond(replica_t *r, const replica_req_t *q, int status, const char *content_type,
                     const char *header_lines, size_t hl_len, const char *body, size_t body_len);

/* Sends the pending frames. A proxy that cannot take one within a second loses it (it is gone). */
void replica_flush(replica_t *r);

#endif
