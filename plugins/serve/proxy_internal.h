/* The serve proxy's state, shared by its files: proxy.c (thread, commands, routing, replica
 * links), proxy_conn.c (HTTP connections) and proxy_metrics.c (metrics, stats, access log). All
 * of it belongs to the proxy's thread, except what `mu` guards. */
#ifndef LURAY_SERVE_PROXY_INTERNAL_H
#define LURAY_SERVE_PROXY_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <uv.h>

#include "http_parse.h"
#include "proxy.h"
#include "sbuf.h"

typedef struct preq preq_t;
typedef struct conn conn_t;
typedef struct dep dep_t;
typedef struct rep rep_t;

#define LAT_BUCKETS 15
extern const double proxy_lat_bounds[LAT_BUCKETS]; /* seconds; +Inf after */

/* One request from its arrival to its response. */
struct preq {
    uint64_t id;
    conn_t *conn;         /* NULL once its connection closed */
    preq_t *conn_next;    /* the connection's requests, in arrival order */
    dep_t *dep;
    rep_t *rep;           /* in flight at this replica */
    preq_t *prev, *next;  /* in its deployment's queue or its replica's in-flight list */
    preq_t *map_next;     /* in the id map */
    uint64_t t0;          /* uv_hrtime() at arrival */
    int attempts;         /* sends to a replica */
    bool keep_alive;
    bool head_only;       /* a HEAD request: the body is not sent */
    bool done;            /* resp holds the whole response */
    bool queued;
    int status;
    char *msg;            /* the request as replicas read it, kept for a retry */
    size_t msg_len;
    char *resp;
    size_t resp_len;
    char line[200];       /* "METHOD path" for the access log */
};

struct rep {
    char id[80];
    char addr[600];
    int sock;             /* PUSH to the replica's request socket */
    dep_t *dep;
    int inflight;
    preq_t *head, *tail;  /* in flight */
    sbuf_t frame;         /* requests not sent yet */
    uint32_t frame_count;
    bool active;          /* in the routing table; else draining */
    rep_t *next;
};

struct dep {
    char name[128];
    char prefix[256];
    size_t prefix_len;
    int max_ongoing, max_queued;
    rep_t *reps;
    int n_active;
    preq_t *qhead, *qtail;
    int qlen;
    bool live;
    /* metrics */
    uint64_t by_status[600];
    uint64_t lat_buckets[LAT_BUCKETS + 1];
    double lat_sum;
    uint64_t lat_count;
    dep_t *next;
};

struct conn {
    uv_tcp_t tcp;
    proxy_t *p;
    serve_http_parser_t parser;
    preq_t *head, *tail; /* requests awaiting their response, in order */
    int npending;
    sbuf_t out;
    bool writing, closing, closed, reading;
    uint64_t last_ms;    /* last byte read or written */
    uint64_t req_ms;     /* when the request being read began; 0 between requests */
    char peer[64];
    conn_t *prev, *next;
    conn_t *dirty_prev, *dirty_next; /* in proxy.dirty while out holds bytes to write */
    bool dirty;
};

typedef enum { CMD_ROUTES, CMD_DEAD, CMD_STOP } cmd_kind_t;

typedef struct cmd {
    cmd_kind_t kind;
    char *text; /* routes JSON, or a replica id */
    double drain_s;
    struct cmd *next;
} cmd_t;

struct proxy {
    proxy_opts_t o;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_tcp_t listener;
    uv_async_t wake;
    uv_timer_t sweep, retry;
    uv_check_t flush;
    uv_poll_t reply_poll;
    int reply_sock;
    char reply_addr[4200], reply_tcp[300];
    conn_t *conns;
    conn_t *dirty; /* connections with output to write at the end of this loop turn */
    int nconns;
    dep_t *deps;
    preq_t **map;
    size_t map_cap, map_count;
    uint64_t next_id;
    uint64_t none_by_status[600]; /* requests no deployment took (404, health, metrics) */
    FILE *access;
    bool listening, draining, stopping, retry_armed;
    uint64_t drain_deadline_ms;
    uv_mutex_t mu; /* guards cmds, stats_json, stopped */
    cmd_t *cmds, *cmds_tail;
    char *stats_json;
    bool stopped;
    char rbuf[65536]; /* what one read brings: parsed before the next read */
};

uint64_t proxy_now_ms(void);

/* proxy.c */
void proxy_route(proxy_t *p, conn_t *c, preq_t *q, serve_http_req_t *r);
void proxy_pump(proxy_t *p, dep_t *d);
void proxy_forget(proxy_t *p, preq_t *q);
void preq_free(preq_t *q);

/* proxy_conn.c */
int proxy_conn_listen(proxy_t *p, char *err, size_t errlen);
/* Fills q's response and writes out what is ready of its connection, in order. Takes q: its
 * connection frees it once written (or here, when its connection is gone). */
void proxy_conn_reply(proxy_t *p, preq_t *q, int status, const char *content_type,
                      const char *header_lines, size_t hl_len, const char *body, size_t len);
void proxy_conn_reply_error(proxy_t *p, preq_t *q, int status, const char *message);
/* Writes what the connections that got responses this loop turn have to send. */
void proxy_conn_flush_all(proxy_t *p);
void proxy_conn_sweep(proxy_t *p, uint64_t now);
void proxy_conn_close(conn_t *c);
void proxy_conn_drain(proxy_t *p);

/* proxy_metrics.c */
void proxy_metrics_count(proxy_t *p, preq_t *q, int status, size_t body_len);
void proxy_metrics_text(proxy_t *p, sbuf_t *out);
void proxy_metrics_routes(proxy_t *p, sbuf_t *out);
void proxy_metrics_snapshot(proxy_t *p);

#endif
