/* A rabit tracker in C: the coordinator that xgboost's workers (libxgboost's rabit collective)
 * connect to at start-up to get their ranks and the addresses of their tree and ring neighbours,
 * and again to print and to say they have finished. It serves one job on a background thread. */
#ifndef LURAY_XGB_TRACKER_H
#define LURAY_XGB_TRACKER_H

#include <stddef.h>

/* The number rabit workers and trackers exchange first (rabit's kMagic). */
#define XGB_TRACKER_MAGIC 0xff99

typedef struct xgb_tracker xgb_tracker_t;

/* Receives a worker's "print" message, on the tracker's thread. */
typedef void (*xgb_tracker_print_fn)(void *ctx, const char *msg);

typedef enum {
    XGB_TRACKER_RUNNING,
    XGB_TRACKER_DONE,    /* every worker said shutdown */
    XGB_TRACKER_FAILED,  /* a protocol or network error ended the job */
    XGB_TRACKER_STOPPED, /* xgb_tracker_free ended it first */
} xgb_tracker_state_t;

/* Listens on host:port (port 0: a free port) and starts the thread serving n_workers workers.
 * print may be NULL. Returns 0 with *out set, or a LURAY_E* code with err set. */
int xgb_tracker_start(xgb_tracker_t **out, int n_workers, const char *host, int port,
                      xgb_tracker_print_fn print, void *ctx, char *err, size_t errlen);
/* The port it listens on. */
int xgb_tracker_port(const xgb_tracker_t *t);
/* Waits up to timeout_ms (< 0: no limit) for the job to end. Returns the state then; for
 * XGB_TRACKER_FAILED err holds why. */
xgb_tracker_state_t xgb_tracker_wait(xgb_tracker_t *t, int timeout_ms, char *err, size_t errlen);
/* Stops the thread if it still runs, closes every socket and frees t. NULL is a no-op. */
void xgb_tracker_free(xgb_tracker_t *t);

#endif
