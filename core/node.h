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
} luray_node_opts_t;

/* Runs the node until a SHUTDOWN message or SIGTERM/SIGINT; returns the exit status. */
int luray_node_main(const luray_node_opts_t *opts);

#endif
