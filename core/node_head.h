/* The cluster directory, kept by the head node on its own loop: the nodes with their resources
 * and heartbeats, where tasks should run, named actors, placement groups, and the append-only
 * log that lets a restarted head come back with its named detached actors. */
#ifndef LURAY_CORE_NODE_HEAD_H
#define LURAY_CORE_NODE_HEAD_H

#include "node_types.h"

/* Where should a task run: what the node asking knows about it. */
typedef struct {
    luray_task_id_t task;
    uint8_t strategy; /* as in the task spec: 0 default, 1 spread, 2 node affinity, 3 group */
    uint32_t target;
    uint8_t soft;
    luray_oid_t pg;
    int32_t bundle;
    uint32_t pref;     /* the node holding its largest argument, or 0 */
    uint8_t is_actor;  /* an actor creation: its resources are held for its lifetime */
    uint32_t n_res;
    const char *names[LURAY_RES_MAX];
    uint32_t name_lens[LURAY_RES_MAX];
    int64_t amounts[LURAY_RES_MAX];
} place_req_t;

/* A decision: a node id (maybe the asker's own), 0 with `why` when no node can ever run it, or
 * PLACE_LATER when it must wait (its placement group is not placed yet). */
#define PLACE_LATER 0xffffffffu

int head_open(node_t *n, char *err, size_t errlen);
/* Stops the control port and the jobs; the loop must run once more before head_close. */
void head_stop(head_t *h);
void head_close(head_t *h);
/* tcp:// address of a live node, or NULL. */
const char *head_node_addr(head_t *h, uint32_t id);
/* Tells a node that was declared dead, and still sends, that it is not in the cluster. */
void head_tell_dead(head_t *h, uint32_t id);
/* Handles a directory message from a peer node; false when the type is not the directory's. */
bool head_handle(head_t *h, proc_t *p, uint16_t type, luray_rd_t *r);
/* Refreshes the head's own free resources in its view: call before a batch of head_place. */
void head_sync(head_t *h);
uint32_t head_place(head_t *h, uint32_t asker, const place_req_t *q, char *why, size_t whylen);
/* The whole cluster as `luray status --json` shows it (malloc'd). */
char *head_info_json(head_t *h);

/* Named actors: the head's own node calls these directly; other nodes send NAME messages. */
int head_name_register(head_t *h, const char *key, luray_actor_id_t id, uint32_t at,
                       bool detached, const char *methods, size_t mlen);
void head_name_unregister(head_t *h, const char *key, luray_actor_id_t id);
/* Returns 0 with the actor id and its methods (pointer valid until the next change). */
int head_name_lookup(head_t *h, const char *key, luray_actor_id_t *id, const char **methods,
                     size_t *mlen);
/* An actor of the directory moved (restarted on another node). */
void head_name_moved(head_t *h, luray_actor_id_t id, uint32_t at);

/* Placement groups: body of a PGREQ as a client sent it; the head's own node calls this too. */
void head_pg_request(head_t *h, uint32_t asker, uint64_t tag, luray_rd_t *r);
void head_bundle_ack(head_t *h, uint32_t from, luray_rd_t *r);

/* One bundle of a placement group request: (name, amount) pairs; the names are malloc'd (free
 * the first *n_res even on failure). Returns r->err. */
int pg_bundle_read(luray_rd_t *r, uint32_t *n_res, char **names, int64_t *amounts);

void place_req_put(luray_buf_t *b, const place_req_t *q);
int place_req_read(luray_rd_t *r, place_req_t *q);

#endif
