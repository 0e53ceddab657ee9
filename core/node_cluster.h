/* The node's side of the cluster: its tcp socket, sealed frames to and from peer nodes,
 * registration with the head, heartbeats, and what happens when a peer node dies. */
#ifndef LURAY_CORE_NODE_CLUSTER_H
#define LURAY_CORE_NODE_CLUSTER_H

#include "node_types.h"

#define NODE_HEAD_ID 1u

/* The counters a heartbeat carries, in this order. */
enum {
    STAT_RUNNING, STAT_QUEUED, STAT_PENDING, STAT_FINISHED, STAT_ACTORS, STAT_WORKERS,
    STAT_DRIVERS, STAT_OBJECTS, STAT_STORE_CAP, STAT_STORE_USED, STAT_SPILLED, STAT_DROPPED,
    NODE_BEAT_STATS
};
void node_beat_stats(node_t *n, uint64_t stats[NODE_BEAT_STATS]);

/* Sets the cluster up when the node is a head or joins one (else does nothing): the key, the
 * tcp socket, the directory (head) or the registration (joining node). */
int node_cluster_start(node_t *n, char *err, size_t errlen);
/* The node's id: the head's is NODE_HEAD_ID, a joining node's is random, else opts->node_id. */
uint32_t node_cluster_pick_id(const luray_node_opts_t *o);
void node_cluster_close(node_t *n);
/* Handles what waits on the tcp socket now. */
void node_cluster_drain(node_t *n);
/* The peer proc for a node id, created (and its address asked of the head) when `create`. */
proc_t *node_peer(node_t *n, uint32_t node_id, bool create);
void node_peer_set_addr(node_t *n, proc_t *p, const char *addr);
/* Sends a peer's pending frame, sealed. */
void node_peer_flush(node_t *n, proc_t *p);
/* Seals a frame already laid out at msg + LURAY_AUTH_HEADER (an nn_allocmsg buffer of
 * flen + LURAY_AUTH_OVERHEAD bytes, taken) and sends it after what was sealed before. */
void node_peer_send_sealed(node_t *n, proc_t *p, void *msg, size_t flen);
void node_peer_free_sealed(proc_t *p);
/* Like node_peer_send_sealed for object chunks: over NODE_DATA_CONNS connections of their own,
 * so a large transfer is received on several at once and never holds up ordered messages. */
#define NODE_DATA_CONNS 4
void node_peer_send_data(node_t *n, proc_t *p, void *msg, size_t flen);
void node_peer_close_idle_data(node_t *n);
/* A message from a peer node, after its frame was authenticated. */
void node_cluster_msg(node_t *n, proc_t *p, const luray_msg_t *m);
/* The node `id` is dead (the head said so, or we are the head and noticed). */
void node_peer_dead(node_t *n, uint32_t id, const char *why);
bool node_is_dead(node_t *n, uint32_t id);
/* Cluster state for `luray status` and luray.nodes(): the head answers from its directory. */
void node_cluster_info(node_t *n, proc_t *p, uint64_t req);
/* The tag a request to the head carries so that its REPLY finds the client (proc, request id). */
uint64_t node_head_tag(proc_t *p, uint64_t req);

#endif
