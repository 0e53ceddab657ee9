/* Functions shared between the node daemon's source files. */
#ifndef LURAY_CORE_NODE_INTERNAL_H
#define LURAY_CORE_NODE_INTERNAL_H

#include "node_types.h"

/* node.c */
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
int node_obj_add_waiter(obj_t *o, bool is_task, void *p);
void node_obj_remove_waiter(obj_t *o, void *p);
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
void node_worker_blocked(node_t *n, proc_t *p, bool blocked);
void node_schedule(node_t *n);
void node_retire_idle(node_t *n);
void node_task_caller_waits(node_t *n, proc_t *p, luray_oid_t id);

#endif
