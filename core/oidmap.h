/* An open-addressing hash map from object ids to pointers (the node's object, task and actor
 * tables). Deletion uses backward shifting, so there are no tombstones to clean up. */
#ifndef LURAY_CORE_OIDMAP_H
#define LURAY_CORE_OIDMAP_H

#include <stddef.h>

#include "ids.h"

typedef struct {
    luray_oid_t key;
    void *val; /* NULL marks an empty slot: values are never NULL */
} luray_oidmap_slot_t;

typedef struct {
    luray_oidmap_slot_t *slots;
    size_t cap; /* power of two */
    size_t len;
} luray_oidmap_t;

void luray_oidmap_init(luray_oidmap_t *m);
void luray_oidmap_close(luray_oidmap_t *m);
void *luray_oidmap_get(const luray_oidmap_t *m, luray_oid_t key);
/* Inserts or replaces; val must not be NULL. Returns 0 or LURAY_ENOMEM. */
int luray_oidmap_put(luray_oidmap_t *m, luray_oid_t key, void *val);
/* Removes and returns the value, or NULL when absent. */
void *luray_oidmap_del(luray_oidmap_t *m, luray_oid_t key);

/* Iteration: for (size_t i = 0; i < m->cap; i++) if (m->slots[i].val) ... */

#endif
