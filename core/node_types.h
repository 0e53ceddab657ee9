/* The node daemon's internal state: processes, tasks, objects, actors and pending gets. Shared
 * by the node's source files only. */
#ifndef LURAY_CORE_NODE_TYPES_H
#define LURAY_CORE_NODE_TYPES_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <lua.h>
#include <uv.h>

#include "auth.h"
#include "ids.h"
#include "node.h"
#include "oidmap.h"
#include "protocol.h"
#include "store.h"
#include "wire.h"

#define NODE_MAX_RES 32
#define NODE_INLINE_MAX (64 * 1024)

typedef struct node node_t;
typedef struct proc proc_t;
typedef struct task task_t;
typedef struct obj obj_t;
typedef struct getreq getreq_t;
typedef struct actor actor_t;
typedef struct pull pull_t;
typedef struct head head_t;
typedef struct bundle bundle_t;
typedef struct dchan dchan_t;

enum { W_STARTING, W_IDLE, W_BUSY, W_ACTOR, W_DEAD };
enum { T_WAITING, T_READY, T_RUNNING, T_DONE };
enum { A_PENDING, A_ALIVE, A_RESTARTING, A_DEAD };

enum { WAIT_GET, WAIT_TASK, WAIT_PEER };

typedef struct {
    uint8_t kind; /* WAIT_*: a getreq_t, a task_t, or a proc_t (a peer that pulls) */
    void *p;
} waiter_t;

struct obj {
    luray_oid_t id;
    uint8_t state; /* LURAY_OBJ_* */
    uint8_t loc;   /* LURAY_LOC_* */
    bool in_store;
    int64_t refs;
    uint8_t *data; /* inline blob (value or error) */
    uint32_t len;
    uint64_t size; /* store size */
    luray_oid_t *contained;
    uint32_t n_contained;
    waiter_t *waiters;
    uint32_t n_waiters, cap_waiters;
    /* Between nodes. */
    uint32_t at;       /* ready in that node's store, not here (yet): pull on a get */
    uint32_t holder;   /* a node where we hold a reference to the object for its owner */
    bool borrowed;     /* owned elsewhere: we told the owner we hold a reference */
    pull_t *pull;      /* a transfer into our store in progress */
    task_t *lineage;   /* the finished task that can make this object again */
};

typedef struct task_list {
    task_t *head, *tail;
    size_t len;
} task_list_t;

struct task {
    luray_task_spec_t spec; /* points into raw */
    uint8_t *raw;
    size_t raw_len;
    int state;
    uint32_t deps_left;
    proc_t *worker;
    actor_t *actor;
    int64_t req[NODE_MAX_RES];
    bool unschedulable;
    uint32_t retries_left;
    bool cancelled;
    bool caller_waits; /* a get of its results from its caller was pending when it was sent */
    bool placing;      /* the head is asked where it should run */
    bool stay;         /* the head said to run it here: do not ask again */
    bool waits;        /* the head found no room for it anywhere: it waits here, asking again */
    bool elsewhere;    /* needs resources this node lacks */
    bool relayed;      /* its results went back to the peer node that sent it */
    uint64_t place_at; /* loop time to ask the head (again) */
    uint32_t lineage_refs; /* finished, kept while objects it can rebuild live elsewhere */
    bundle_t *bundle;  /* its placement group bundle on this node */
    task_t *next, *prev;
    task_list_t *list;
};

struct proc {
    node_t *node;
    uint32_t id;
    int kind;
    pid_t pid;
    int sock; /* push socket to the process's inbox, -1 until HELLO */
    luray_frame_t out;
    bool dirty;
    proc_t *dirty_next;
    uv_poll_t *send_poll; /* made when the socket first fills up; closed with the socket */
    bool send_poll_on;
    int wstate;
    uv_process_t uvp;
    bool spawned;
    task_t *task; /* running normal task */
    task_list_t pipe; /* normal tasks sent behind it, same resource shape, not started yet */
    bool blocked;
    uint32_t n_blocking; /* gets of this worker that wait now: blocked while there are any */
    int64_t held[NODE_MAX_RES];
    actor_t *actor;
    luray_oidmap_t refs;  /* id -> (intptr_t) count held by this process */
    luray_oidmap_t pins;  /* id -> (intptr_t) pins held */
    luray_oidmap_t funcs; /* function hashes this worker has */
    proc_t *idle_next;
    bool gone;
    bool retired; /* an extra worker told to exit after idling */
    uint64_t idle_since; /* loop time (ms) it last became idle */
    uint32_t tasks_done;
    /* A peer node (LURAY_PROC_PEER). */
    uint32_t peer_node;
    char *peer_addr;     /* tcp://host:port, NULL until known (frames wait in `out`) */
    bool peer_asked;     /* a WHOIS for it is out */
    task_list_t remote;  /* tasks we forwarded to it */
    bundle_t *pool;      /* its running task's bundle, if any */
    dchan_t *data;       /* extra connections to a peer for object chunks (node_cluster.c) */
    uint64_t last_sent;  /* loop time of the last frame to it: the idlest socket closes first */
    void **sealed;       /* sealed messages to a peer, sent in the order they were sealed */
    uint32_t n_sealed, cap_sealed, sealed_head;
};

struct actor {
    luray_actor_id_t id;
    task_t *create; /* kept for restarts */
    proc_t *worker;
    int state;
    char *key; /* namespace/name, or NULL */
    bool detached;
    uint32_t owner;
    int restarts_left;
    task_list_t queue;    /* calls waiting for the actor to be alive */
    task_list_t inflight; /* calls sent to the worker */
    bool flush_pending;
    char *death;
    int64_t held[NODE_MAX_RES];
    bundle_t *pool;
    uint32_t at; /* the node it lives on, when that is another one */
    char *methods; /* "Class:m1,m2" of an actor known here without its creation task */
};

/* A placement group bundle reserved on this node: its own pool of resources. */
struct bundle {
    luray_oid_t pg;
    int32_t index;
    int64_t total[NODE_MAX_RES];
    int64_t avail[NODE_MAX_RES];
    bool removed;
    bundle_t *next;
};

struct getreq {
    proc_t *proc;
    uint64_t req;
    uint32_t n;
    luray_oid_t *ids;
    uint32_t need;
    uint32_t have;
    bool wait_mode;
    bool done;
    bool blocking; /* counted in its worker's n_blocking */
    bool has_timer;
    int refs; /* waiter registrations + the timer */
    uv_timer_t timer;
};

struct node {
    const luray_node_opts_t *opts;
    uv_loop_t *loop;
    int inbox;
    uv_poll_t inbox_poll;
    uv_signal_t sigterm, sigint;
    uv_timer_t liveness;
    luray_store_t *store;
    char shm_name[128];
    lua_State *L; /* only for building error values */

    proc_t **procs;
    uint32_t n_procs, cap_procs;
    proc_t *idle;
    proc_t *dirty;
    uint32_t n_starting;
    uint32_t n_pool; /* live non-actor workers */

    int n_res;
    char *res_names[NODE_MAX_RES];
    int64_t total[NODE_MAX_RES];
    int64_t avail[NODE_MAX_RES];

    luray_oidmap_t objs;
    luray_oidmap_t tasks;
    luray_oidmap_t actors;
    luray_oidmap_t funcs; /* hash -> blob record */
    task_list_t ready;
    actor_t **to_flush; /* actors with calls queued in this batch, sent at its end */
    uint32_t n_to_flush, cap_to_flush;
    actor_t **named;
    uint32_t n_named, cap_named;

    bool stopping;
    uint64_t idle_timeout_ms; /* extra workers idle this long exit (LURAY_IDLE_WORKER_TIMEOUT) */
    uv_timer_t stop_timer;
    uv_timer_t stop_check;
    uv_loop_t own_loop;
    uint64_t dropped_frames;

    /* The cluster: set when the node was started as a head or joined one. */
    uint32_t node_id;
    int port;             /* the tcp port we listen on (cluster), else opts->port */
    bool cluster;
    bool making_returns;  /* creating a peer's task's return objects: not borrowed */
    bool announced;       /* node.json written and the starter told */
    int exit_status;
    uint64_t started_ms;
    luray_auth_t auth;
    int tcp_inbox;
    uv_poll_t tcp_poll;
    char address[300]; /* tcp://host:port others reach us at */
    luray_oidmap_t peers; /* {node id, 0, 0} -> proc_t of kind PEER */
    uint32_t peer_socks;  /* peers with an open socket (nanomsg allows 512 sockets a process) */
    proc_t *head;         /* our peer proc for the head (NULL on the head itself) */
    head_t *dir;          /* the cluster directory, on the head */
    bool registered;
    uv_timer_t beat;
    struct node_beat *beat_thread; /* sends our heartbeats to the head */
    task_list_t placing; /* tasks whose PLACE is out */
    uint64_t place_req;
    uint64_t reask_at;   /* loop time a task waiting here for room may ask the head again */
    bundle_t *bundles;
    struct {
        luray_oid_t id;
        uint32_t proc; /* the driver that made it: the group goes when it does */
    } *pgs;
    uint32_t n_pgs, cap_pgs;
    uint64_t pulls_started, bytes_pulled, auth_rejected_seen;
    uint32_t n_dead;
    uint32_t *dead; /* node ids declared dead */
    uint64_t tasks_finished;
    uint64_t tasks_submitted;
};

#endif
