/* Functions shared between the node daemon's source files. */
#ifndef LURAY_CORE_NODE_INTERNAL_H
#define LURAY_CORE_NODE_INTERNAL_H

#include "node_types.h"

/* node.c */
proc_t *node_proc_new(node_t *n, int kind);
void node_handle_msg(node_t *n, proc_t *p, const luray_msg_t *m);
void node_wait_writable(node_t *n, proc_t *p);
void node_stop_waiting_writable(proc_t *p);
void node_proc_close_sock(proc_t *p);
void node_reply(node_t *n, proc_t *p, uint64_t req, uint32_t status, const void *bytes,
                size_t len);
int node_announce_ready(node_t *n);
luray_buf_t *node_msg_begin(node_t *n, proc_t *p, uint16_t type);
void node_msg_end(proc_t *p);
void node_mark_dirty(node_t *n, proc_t *p);
void node_flush_all(node_t *n);
proc_t *node_proc(node_t *n, uint32_t id);
int node_spawn_worker(node_t *n);
void node_proc_gone(node_t *n, proc_t *p, const char *why);
void node_count_bad(node_t *n, const char *what);
void node_stop(node_t *n);

/* node_objects.c: the object table, references and gets */
obj_t *node_obj_get(node_t *n, luray_oid_t id);
obj_t *node_obj_new(node_t *n, luray_oid_t id);
void node_obj_decref(node_t *n, luray_oid_t id, int64_t count);
void node_obj_incref(node_t *n, luray_oid_t id, int64_t count);
void node_proc_ref(node_t *n, proc_t *p, luray_oid_t id, int64_t delta);
/* Makes a pending object ready with an inline blob (taken) or as the store object of its id. */
void node_obj_resolve(node_t *n, obj_t *o, uint8_t state, uint8_t *blob, uint32_t len,
                      bool in_store, const luray_oid_t *contained, uint32_t n_contained);
int node_obj_add_waiter(obj_t *o, uint8_t kind, void *p);
void node_lineage_release(node_t *n, task_t *t);
void node_obj_remove_waiter(obj_t *o, void *p);
/* Encodes (and pops) the value on top of the node's Lua stack as an inline blob. */
uint8_t *node_encode_top(node_t *n, uint32_t *len);
/* Reads a varint count and that many ids (NULL for none); sets r->err when they do not fit. */
luray_oid_t *node_read_ids(luray_rd_t *r, uint32_t *n);
/* Builds the blob of an error value {type=, message=, task=} with the node's Lua state. */
uint8_t *node_error_blob(node_t *n, const char *type, const char *message, const char *task,
                         uint32_t *len);
void node_on_put(node_t *n, proc_t *p, luray_rd_t *r);
void node_on_create(node_t *n, proc_t *p, luray_rd_t *r);
void node_on_seal(node_t *n, proc_t *p, luray_rd_t *r);
void node_on_get(node_t *n, proc_t *p, luray_rd_t *r);
void node_on_refs(node_t *n, proc_t *p, luray_rd_t *r);
void node_on_unpin(node_t *n, proc_t *p, luray_rd_t *r);
void node_free_tables(node_t *n);

/* node_sched.c: tasks, workers and actors */
void node_list_push(task_list_t *l, task_t *t, bool front);
void node_list_remove(task_t *t);
void node_task_free(node_t *n, task_t *t);
void node_task_fail(node_t *n, task_t *t, const char *type, const char *message);
void node_task_make_ready(node_t *n, task_t *t, bool front);
void node_task_resolve_all(node_t *n, task_t *t, uint8_t state, const uint8_t *blob,
                           uint32_t len);
void node_actor_flush_queue(node_t *n, actor_t *a);
void node_actor_dead(node_t *n, actor_t *a, const char *why);
void node_actor_worker_died(node_t *n, actor_t *a, const char *why);
void node_kill_actor(node_t *n, actor_t *a, bool no_restart, const char *why);
actor_t *node_actor_by_name(node_t *n, const char *key);
void node_actor_set_name(node_t *n, actor_t *a, bool on);
int node_res_index(node_t *n, const char *name, uint32_t len);
int64_t *node_pool_avail(node_t *n, bundle_t *b);
bool node_fits(node_t *n, bundle_t *b, const int64_t *req);
void node_res_take(node_t *n, bundle_t *b, int64_t *held, const int64_t *req);
void node_res_give(node_t *n, bundle_t *b, int64_t *held);
/* node_forward.c: the cluster side of scheduling */
bool node_place_if_needed(node_t *n, task_t *t);
void node_forward(node_t *n, proc_t *peer, task_t *t);
void node_relay_done(node_t *n, task_t *t);
void node_relay_create(node_t *n, task_t *t);
actor_t *node_actor_proxy(node_t *n, luray_actor_id_t id);
bool node_lookup_remote(node_t *n, proc_t *p, uint64_t req, const char *key);
void node_name_changed(node_t *n, actor_t *a, bool on);
void node_pg_local(node_t *n, proc_t *p, luray_rd_t *r);
void node_pgs_of_left(node_t *n, proc_t *p);
/* The function blob of a hash, when this node has it. */
const uint8_t *node_func_blob(node_t *n, const uint8_t hash[16], uint32_t *len);
void node_on_submit(node_t *n, proc_t *p, luray_rd_t *r);
void node_on_done(node_t *n, proc_t *p, luray_rd_t *r);
void node_on_lookup(node_t *n, proc_t *p, luray_rd_t *r);
void node_on_kill(node_t *n, proc_t *p, luray_rd_t *r);
void node_on_cancel(node_t *n, proc_t *p, luray_rd_t *r);
void node_on_return(node_t *n, proc_t *p, luray_rd_t *r);
void node_task_dep_ready(node_t *n, task_t *t);
void node_worker_ready(node_t *n, proc_t *p);
void node_worker_died(node_t *n, proc_t *p, const char *why);
void node_driver_left(node_t *n, proc_t *p);
void node_peer_left(node_t *n, proc_t *p, const char *why);
void node_worker_blocked(node_t *n, proc_t *p, bool blocked);
void node_schedule(node_t *n);
void node_retire_idle(node_t *n);
void node_task_caller_waits(node_t *n, proc_t *p, luray_oid_t id);

#endif
