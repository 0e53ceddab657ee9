/* Work and objects that cross nodes: tasks placed by the head and forwarded to a peer node,
 * their results coming back, objects pulled from the node that holds them, references borrowed
 * from owners, and what a node does when a peer dies. */
#ifndef LURAY_CORE_NODE_REMOTE_H
#define LURAY_CORE_NODE_REMOTE_H

#include "node_types.h"

#define NODE_CHUNK (1u << 20) /* bytes per CHUNK message: small enough to stay in cache */
#define NODE_PULL_WINDOW 16   /* chunks in flight per pull */

/* node_remote.c: objects */
/* o is wanted here (a get, or a task's argument): fetch it if it lives elsewhere. */
void node_obj_want(node_t *n, obj_t *o);
/* True when o is owned by another node and no task here makes it. */
bool node_obj_foreign(node_t *n, const obj_t *o);
/* o is ready in node `at`'s store (size bytes): waits that only need readiness are answered. */
void node_obj_located(node_t *n, obj_t *o, uint32_t at, uint64_t size,
                      const luray_oid_t *contained, uint32_t n_contained);
/* A new entry for an object owned elsewhere: tell its owner we hold a reference. */
void node_obj_borrow(node_t *n, obj_t *o);
/* Makes an object lost with a node again by running its task again; false when it cannot. */
bool node_rebuild(node_t *n, obj_t *o);
/* Called as an object leaves the table: references held elsewhere are given back. */
void node_obj_release_remote(node_t *n, obj_t *o);
/* A peer pulling o asked to be told when it is ready (a WAIT_PEER waiter fired). */
void node_obj_answer_peer(node_t *n, proc_t *p, obj_t *o);
void node_on_pull(node_t *n, proc_t *p, luray_rd_t *r);
void node_on_obj(node_t *n, proc_t *p, luray_rd_t *r);
void node_on_chunk(node_t *n, proc_t *p, luray_rd_t *r);
/* Objects located on or being pulled from a dead node. */
void node_objects_node_lost(node_t *n, uint32_t id, const char *why);

/* node_sched.c: tasks and actors */
void node_on_placed(node_t *n, proc_t *p, luray_rd_t *r);
void node_remote_done(node_t *n, proc_t *p, luray_rd_t *r);
void node_remote_tick(node_t *n);
void node_remote_node_lost(node_t *n, uint32_t id, const char *why);
void node_remote_node_joined(node_t *n, uint32_t id);
void node_on_name_reply(node_t *n, proc_t *p, luray_rd_t *r);
void node_on_pg_reply(node_t *n, proc_t *p, luray_rd_t *r);
void node_on_bundle(node_t *n, proc_t *p, luray_rd_t *r);
void node_on_pg(node_t *n, proc_t *p, luray_rd_t *r);
void node_pg_result(node_t *n, luray_oid_t pg, uint32_t status, const char *msg);
void node_bundle_apply(node_t *n, luray_oid_t pg, int32_t index, uint8_t op, uint32_t n_res,
                       const char *const *names, const int64_t *amounts);
/* A named detached actor the restarted head finds in its log: calls reach it again. */
int node_actor_adopt(node_t *n, luray_actor_id_t id, const char *key, uint32_t at,
                     const char *methods, size_t mlen);

#endif
