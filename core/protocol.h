/* The messages between drivers, workers and their node: types, and encoders/parsers for the ones
 * with structure. Parsers read untrusted bytes: they check every length and return LURAY_EPROTO,
 * leaving pointers into the message body (valid while the frame is). */
#ifndef LURAY_CORE_PROTOCOL_H
#define LURAY_CORE_PROTOCOL_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "ids.h"

enum {
    LURAY_MSG_HELLO = 1,  /* client -> node: kind, pid, inbox address, worker token */
    LURAY_MSG_WELCOME,    /* node -> client: node id, proc id, store, session */
    LURAY_MSG_SUBMIT,     /* client -> node: a task spec */
    LURAY_MSG_EXEC,       /* node -> worker: a task spec and its resolved dependencies */
    LURAY_MSG_DONE,       /* worker -> node: a task's results */
    LURAY_MSG_PUT,        /* client -> node: an object, inline */
    LURAY_MSG_CREATE,     /* client -> node: reserve store space for a large object */
    LURAY_MSG_CREATED,    /* node -> client: where to write it */
    LURAY_MSG_SEAL,       /* client -> node: the large object is written */
    LURAY_MSG_GET,        /* client -> node: ask for objects (get) or readiness (wait) */
    LURAY_MSG_READY,      /* node -> client: answer to GET */
    LURAY_MSG_REFS,       /* client -> node: reference count deltas */
    LURAY_MSG_UNPIN,      /* client -> node: views of store objects released */
    LURAY_MSG_LOOKUP,     /* client -> node: named actor lookup */
    LURAY_MSG_KILL,       /* client -> node: kill an actor */
    LURAY_MSG_CANCEL,     /* client -> node: cancel a task */
    LURAY_MSG_INFO,       /* client -> node: cluster state query; node -> client: JSON answer */
    LURAY_MSG_BYE,        /* client -> node: the client is leaving */
    LURAY_MSG_SHUTDOWN,   /* client -> node: stop the node */
    LURAY_MSG_EXIT,       /* node -> worker: exit now */
    LURAY_MSG_RETURN,     /* worker -> node: tasks handed back unstarted */
    LURAY_MSG_REPLY,      /* node -> client: generic answer (req id, status, JSON or bytes) */
    LURAY_MSG_PG,         /* client -> node: placement group create/remove */
    LURAY_MSG_RESULT,     /* worker -> caller: a copy of DONE sent straight to a waiting caller */
    /* Between nodes (every frame sealed with the cluster key, see auth.h). A peer node is a
     * process of the receiving node like a driver: it SUBMITs (a forwarded task, which it then
     * hears about as a DONE), sends REFS for the objects it borrows, CANCELs and KILLs. */
    LURAY_MSG_NREG,      /* node -> head: node id, address, resource names and totals */
    LURAY_MSG_NREG_OK,   /* head -> node: status (0 ok), head node id */
    LURAY_MSG_BEAT,      /* node -> head: available amounts (registered order), queue length */
    LURAY_MSG_REREG,     /* head -> node: unknown node, register again */
    LURAY_MSG_WHOIS,     /* node -> head: node id */
    LURAY_MSG_NODEINFO,  /* head -> node: node id, alive, address */
    LURAY_MSG_NODEDEAD,  /* head -> nodes: node id, reason */
    LURAY_MSG_PLACE,     /* node -> head: where should these tasks run */
    LURAY_MSG_PLACED,    /* head -> node: per task, a node id (or none yet, or never) */
    LURAY_MSG_PULL,      /* node -> node: object id, offset, length (UINT64_MAX offset: describe) */
    LURAY_MSG_OBJ,       /* node -> node: object id, what the holder has (see node_remote.c) */
    LURAY_MSG_CHUNK,     /* node -> node: object id, offset, bytes */
    LURAY_MSG_NAME,      /* node -> head: register/unregister/look up a named actor */
    LURAY_MSG_PGREQ,     /* node -> head: placement group create/remove/wait */
    LURAY_MSG_BUNDLE,    /* head -> node: reserve or release a placement group bundle */
    LURAY_MSG_INFOREQ,   /* node -> head: cluster state for a driver's INFO */
    LURAY_MSG_TYPE_MAX
};

enum { LURAY_PROC_DRIVER = 1, LURAY_PROC_WORKER = 2, LURAY_PROC_PEER = 3 };
enum { LURAY_TASK_NORMAL = 0, LURAY_TASK_ACTOR_CREATE = 1, LURAY_TASK_ACTOR_CALL = 2 };
enum { LURAY_OBJ_PENDING = 0, LURAY_OBJ_READY = 1, LURAY_OBJ_ERROR = 2, LURAY_OBJ_MISSING = 3 };
/* LOC_NODE (between nodes): u32 node id, u64 size: the object sits in that node's store. */
enum { LURAY_LOC_INLINE = 0, LURAY_LOC_SHM = 1, LURAY_LOC_NODE = 2 };
enum { LURAY_DONE_OK = 0, LURAY_DONE_ERROR = 1, LURAY_DONE_RETRYABLE = 2 };

/* Resource amounts are fixed point: 1 CPU = 10000 units, so fractions down to 0.0001 work. */
#define LURAY_RES_UNIT 10000
#define LURAY_RES_MAX 16

typedef struct {
    const char *name; /* not NUL-terminated on the wire: name_len */
    uint32_t name_len;
    int64_t amount;
} luray_res_t;

typedef struct {
    luray_task_id_t task_id;
    uint8_t kind;
    luray_actor_id_t actor_id;
    uint8_t func_hash[16];
    const uint8_t *func_blob; /* NULL when the receiver already has it */
    uint32_t func_blob_len;
    const char *method; /* actor call: method name; else the function's name */
    uint32_t method_len;
    const uint8_t *args; /* argument blob */
    uint32_t args_len;
    /* Large arguments travel through the store: a single table {n=, ...} in this object (nil
     * id when the arguments are inline). */
    luray_oid_t args_object;
    uint32_t n_deps;
    const uint8_t *deps; /* n_deps x 16-byte ids: top-level ObjectRef arguments */
    uint32_t n_contained;
    const uint8_t *contained; /* n x 16-byte ids: refs anywhere in args */
    uint16_t num_returns;
    uint8_t max_retries;
    uint8_t retry_exceptions;
    uint32_t n_res;
    luray_res_t res[LURAY_RES_MAX];
    uint32_t attempt;
    /* scheduling */
    uint8_t strategy; /* 0 default, 1 spread, 2 node affinity, 3 placement group */
    uint32_t target_node;
    uint8_t soft;
    luray_oid_t pg_id;
    int32_t bundle_index;
    /* actor creation */
    const char *actor_name;
    uint32_t actor_name_len;
    const char *ns;
    uint32_t ns_len;
    uint8_t detached;
    uint8_t get_if_exists;
    int32_t max_restarts;
    int32_t max_task_retries;
    uint32_t max_concurrency;
    uint32_t caller; /* proc id of the submitter (set by the node) */
} luray_task_spec_t;

void luray_proto_put_id(luray_buf_t *b, luray_oid_t id);
luray_oid_t luray_proto_rd_id(luray_rd_t *r);
luray_oid_t luray_proto_id_at(const uint8_t *p); /* 16 raw bytes */

void luray_proto_put_task(luray_buf_t *b, const luray_task_spec_t *t);
int luray_proto_parse_task(luray_rd_t *r, luray_task_spec_t *t);

#endif
