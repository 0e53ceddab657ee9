/* Identifiers for nodes, processes, tasks, objects and actors.
 *
 * An object id names its owner: the node and the process (driver or worker) that created it, plus
 * a sequence number local to that process. A task's return objects are the task's id with the
 * return index (1..n) in the low 16 bits of `seq`; a put has index 0. So any process anywhere in
 * the cluster can tell from an id alone which node and process own it. */
#ifndef LURAY_CORE_IDS_H
#define LURAY_CORE_IDS_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    uint32_t node;
    uint32_t proc;
    uint64_t seq;
} luray_oid_t;

typedef luray_oid_t luray_task_id_t;  /* index bits zero */
typedef luray_oid_t luray_actor_id_t; /* the id of the actor's creation task */

#define LURAY_OID_HEX_LEN 32
#define LURAY_OID_INDEX_BITS 16

static inline bool luray_oid_eq(luray_oid_t a, luray_oid_t b)
{
    return a.node == b.node && a.proc == b.proc && a.seq == b.seq;
}

static inline bool luray_oid_is_nil(luray_oid_t a) { return !a.node && !a.proc && !a.seq; }

static inline luray_oid_t luray_oid_for_return(luray_task_id_t t, unsigned index)
{
    luray_oid_t o = t;
    o.seq |= (uint64_t)index;
    return o;
}

static inline luray_task_id_t luray_oid_task(luray_oid_t o)
{
    o.seq &= ~(uint64_t)((1u << LURAY_OID_INDEX_BITS) - 1);
    return o;
}

static inline uint64_t luray_oid_hash(luray_oid_t a)
{
    uint64_t h = a.seq * 0x9E3779B97F4A7C15ull;
    h ^= ((uint64_t)a.node << 32 | a.proc) * 0xC2B2AE3D27D4EB4Full;
    return h ^ (h >> 29);
}

/* Writes 32 lower-case hex digits and a NUL into out[33]. */
void luray_oid_hex(luray_oid_t id, char out[LURAY_OID_HEX_LEN + 1]);
/* Parses 32 hex digits; returns 0 or LURAY_EINVAL. */
int luray_oid_parse(const char *hex, luray_oid_t *id);

#endif
