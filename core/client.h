/* A process's connection to its node (drivers and workers): an inbox socket, a batched outbox,
 * the mapped object store, and waiting for particular replies while queueing everything else. */
#ifndef LURAY_CORE_CLIENT_H
#define LURAY_CORE_CLIENT_H

#include <stdbool.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "ids.h"
#include "oidmap.h"
#include "shm.h"
#include "wire.h"

typedef struct luray_cmsg {
    struct luray_cmsg *next;
    uint16_t type;
    uint32_t len;
    uint8_t body[];
} luray_cmsg_t;

typedef struct {
    int in_sock, out_sock;
    char inbox_path[4200];
    char session[4096];
    uint32_t node_id, proc_id;
    pid_t node_pid;
    int kind;
    luray_frame_t out;
    luray_shm_t shm;
    uint64_t next_seq;
    uint64_t next_req;
    luray_cmsg_t *q_head, *q_tail;
    luray_buf_t refs; /* pending (id, delta) pairs */
    uint32_t n_refs;
    luray_buf_t unpins;
    uint32_t n_unpins;
    bool closed;
    /* While a worker blocks in get or wait, normal tasks the node pipelined to it are handed
     * back (RETURN) instead of queued, so a task never waits on one queued behind it. */
    bool returning;
    luray_buf_t returns;
    uint32_t n_returns;
    /* Small objects this process put or already read: immutable, so later gets of them are
     * answered here while a ref lives (dropped when one of this process's refs to it goes). */
    luray_oidmap_t cache;
    size_t cache_bytes;
    /* Direct results: a worker sends a task's small results straight to the caller that waits
     * for them (one hop fewer than through the node). The caller binds a second address named
     * by its process id, caches results it is waiting for, and drops the node's answer to a get
     * that the cache already satisfied. */
    const luray_oid_t *awaiting;
    uint32_t n_awaiting;
    uint64_t abandoned[32];
    uint32_t n_abandoned;
    luray_oidmap_t callers; /* task id -> caller proc id (workers) */
    /* Function blobs that came with tasks handed back unstarted: the node counts this worker
     * as having them, so later tasks of those functions arrive without the blob. */
    luray_oidmap_t kept_funcs; /* hash (as an id) -> luray_cached_t */
    struct {
        uint32_t proc;
        int sock;
    } direct[16];
    uint32_t n_direct;
    /* luray_client_next_watch: a descriptor polled beside the inbox, and whether it woke us. */
    int watch_fd;
    bool watch_ready;
} luray_client_t;

typedef struct {
    uint8_t state; /* LURAY_OBJ_READY or LURAY_OBJ_ERROR */
    size_t len;
    uint8_t *blob; /* 64-byte aligned */
} luray_cached_t;

#define LURAY_CLIENT_CACHE_MAX (256u * 1024 * 1024)

/* Frees an entry of `cache` or `kept_funcs`; NULL is a no-op. */
void luray_cached_free(luray_cached_t *e);

/* Connects to the node serving session_dir; kind is LURAY_PROC_DRIVER or LURAY_PROC_WORKER
 * (worker_id then is the id the node gave it). Waits up to timeout_ms for the welcome. */
int luray_client_connect(luray_client_t *c, const char *session_dir, int kind, uint32_t worker_id,
                         int timeout_ms, char *err, size_t errlen);
/* The node of session_dir runs in this process and listens on inproc_addr: connections to it
 * from here go over nanomsg's inproc transport. NULL forgets it. */
void luray_client_set_inproc(const char *session_dir, const char *inproc_addr);

/* Says goodbye when `bye`, then closes everything. */
void luray_client_close(luray_client_t *c, bool bye);

luray_buf_t *luray_client_begin(luray_client_t *c, uint16_t type);
void luray_client_end(luray_client_t *c);
/* Sends what is batched (pending reference changes included). Returns 0 or LURAY_ECLOSED. */
int luray_client_flush(luray_client_t *c);
/* Flushes when the batch has grown past a threshold; cheap to call after every message. */
void luray_client_maybe_flush(luray_client_t *c);

/* Waits for a message of `type` whose body starts with the u64 `req` (taking it out of the queue);
 * other messages are queued. timeout_ms < 0 waits for ever. NULL on timeout (err LURAY_ETIMEDOUT),
 * node death (LURAY_ECLOSED) or interruption by a signal (LURAY_EAGAIN). Free the result. */
luray_cmsg_t *luray_client_wait(luray_client_t *c, uint16_t type, uint64_t req, int timeout_ms,
                                int *err);
/* The next queued or received message, waiting up to timeout_ms. */
luray_cmsg_t *luray_client_next(luray_client_t *c, int timeout_ms, int *err);
/* luray_client_next that also returns NULL with *err 0 and *fd_ready true when fd (a plugin's
 * socket, say) becomes readable before a message arrives. Messages come first. */
luray_cmsg_t *luray_client_next_watch(luray_client_t *c, int timeout_ms, int fd, bool *fd_ready,
                                      int *err);

/* Starts or ends handing back pipelined tasks (see `returning`); starting moves the queued ones. */
void luray_client_set_returning(luray_client_t *c, bool on);
void luray_client_ref(luray_client_t *c, luray_oid_t id, int32_t delta);
void luray_client_cache_put(luray_client_t *c, luray_oid_t id, uint8_t state, const void *blob,
                            size_t len);
const luray_cached_t *luray_client_cache_get(luray_client_t *c, luray_oid_t id);
/* Waits for READY(req) like luray_client_wait, or until every id in c->awaiting is cached:
 * then returns NULL with *err 0 and the node's answer is dropped when it comes. */
luray_cmsg_t *luray_client_wait_get(luray_client_t *c, uint64_t req, int timeout_ms, int *err);
/* Sends one message straight to another client of this node; best effort, never blocks. */
int luray_client_send_direct(luray_client_t *c, uint32_t proc, uint16_t type, const void *body,
                             size_t len);
void luray_client_unpin(luray_client_t *c, luray_oid_t id);
luray_oid_t luray_client_new_id(luray_client_t *c);
uint64_t luray_client_new_req(luray_client_t *c);

/* Set by a Ctrl-C or SIGTERM handler: a wait in progress returns LURAY_EAGAIN within a slice
 * of its poll even when the signal landed on another thread than the one waiting. */
extern volatile sig_atomic_t luray_client_interrupt;

#endif
