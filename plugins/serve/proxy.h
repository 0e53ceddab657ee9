/* The serve proxy: an HTTP/1.1 server on its own libuv loop and thread that routes requests by
 * path prefix to replicas over nanomsg, with bounded queues, and answers health and metrics. */
#ifndef LURAY_SERVE_PROXY_H
#define LURAY_SERVE_PROXY_H

#include <stddef.h>

typedef struct proxy proxy_t;

typedef struct {
    char host[256];
    int port;                       /* 0: any free port */
    char session[4096];             /* where the reply socket and the access log go */
    char tcp_host[256];             /* also take replies over tcp on this host ("" = ipc only) */
    char access_log[4096];          /* "" = none */
    double keep_alive_timeout_s;    /* an idle connection closes after this */
    double request_read_timeout_s;  /* a request must arrive whole within this, else 408 */
    double request_timeout_s;       /* a replica must answer within this, else 504 (0: none) */
    size_t max_header_bytes, max_body_bytes;
} proxy_opts_t;

void proxy_opts_default(proxy_opts_t *o);

/* Listens and starts the thread. Returns NULL with err set (port in use, say). */
proxy_t *proxy_start(const proxy_opts_t *o, char *err, size_t errlen);

/* The port it listens on, and the addresses replicas send replies to (tcp may be ""). */
int proxy_port(const proxy_t *p);
const char *proxy_reply_addr(const proxy_t *p, int tcp);

/* From any thread: replace the routing table (JSON: {"deployments": [{"name", "prefix",
 * "max_ongoing", "max_queued", "replicas": [{"id", "addr"}]}]}); a replica gone from it drains. */
void proxy_set_routes(proxy_t *p, const char *json);
/* From any thread: a replica died; its requests in flight go once more to another replica. */
void proxy_replica_dead(proxy_t *p, const char *id);
/* A JSON snapshot of queues and requests in flight (caller frees). */
char *proxy_stats(proxy_t *p);
/* Stops listening, lets requests in flight finish for up to drain_s, closes everything and joins
 * the thread; frees p. */
void proxy_stop(proxy_t *p, double drain_s);

#endif
