/* The node daemon: one libuv loop that owns the scheduler, the worker pool, the object table and
 * the shared-memory store of one machine, and serves drivers and workers over nanomsg. */
#ifndef LURAY_CORE_NODE_H
#define LURAY_CORE_NODE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *session_dir; /* holds the sockets, node.json, spill files, logs */
    const char *exe;         /* the luray program, to spawn workers */
    double num_cpus;
    double num_gpus;
    const char *resources_json; /* {"name": amount, ...} or NULL */
    uint64_t object_store_memory;
    uint32_t node_id;
    int port; /* recorded in node.json for `luray status`/--address */
    const char *host;
    int ready_fd; /* written one byte when serving (or -1) */
    /* Set when the node runs on a thread of its driver (the embedded cluster): the node also
     * listens on this inproc:// address, and leaves signals to the driver. */
    const char *inproc_addr;
    /* The cluster (both unset: a node on its own, reached only on this machine). A head serves
     * the cluster directory on tcp://host:port; a node that joins (join = "HOST:PORT" of the
     * head) listens on tcp://host:port itself (port 0: the first free one from 6382 up). */
    int head;
    const char *join;
    const char *token_file; /* the cluster key; a head creates it when it does not exist */
    const char *state_dir;  /* the head's directory log and jobs ($LURAY_TMPDIR/cluster-PORT) */
} luray_node_opts_t;

/* Runs the node until a SHUTDOWN message or SIGTERM/SIGINT; returns the exit status. */
int luray_node_main(const luray_node_opts_t *opts);

/* The embedded cluster's node on a thread of this process (opts->inproc_addr set): returns once
 * it serves (0) or failed to start (LURAY_E*, message in err). luray_node_join waits for it to
 * end after a SHUTDOWN message. */
typedef struct luray_node_thread luray_node_thread_t;
int luray_node_start_thread(const luray_node_opts_t *opts, luray_node_thread_t **out, char *err,
                            size_t errlen);
int luray_node_join(luray_node_thread_t *t, int timeout_ms);

#endif
