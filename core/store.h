/* The node's object store: immutable objects in one shared-memory segment, found by object id.
 * Writers create (reserve) an object, fill it in place and seal it; readers pin it while they read.
 * When the segment is full, sealed objects that nobody has pinned are spilled to files (least
 * recently used first) and restored when next pinned. Single-threaded: the node's loop owns it. */
#ifndef LURAY_CORE_STORE_H
#define LURAY_CORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ids.h"

typedef struct luray_store luray_store_t;

typedef struct {
    uint64_t capacity;      /* bytes of the segment the allocator may hand out */
    uint64_t used;          /* bytes allocated (objects' sizes rounded up to 64) */
    uint64_t n_objects;     /* objects not deleted: unsealed, in memory or spilled */
    uint64_t n_spilled;     /* objects now on disk */
    uint64_t spilled_bytes; /* their sizes */
    uint64_t n_spills;      /* spills since the store was made */
    uint64_t n_restores;    /* restores since the store was made */
} luray_store_stats_t;

/* Creates the segment `shm_name` (must not exist) of `capacity` bytes. spill_dir (created if
 * missing) holds spilled objects; NULL disables spilling. Returns 0 or a LURAY_E* code. */
int luray_store_new(const char *shm_name, size_t capacity, const char *spill_dir,
                    luray_store_t **out);
/* Unmaps and unlinks the segment and removes the spill files. NULL is a no-op. */
void luray_store_free(luray_store_t *s);

/* Reserves `size` bytes for a new, unsealed object; *offset is from luray_store_base(s).
 * Spills others to make room. LURAY_EEXIST, LURAY_EFULL (cannot fit even after spilling),
 * LURAY_EIO (a spill failed), LURAY_ENOMEM. */
int luray_store_create(luray_store_t *s, luray_oid_t id, uint64_t size, uint64_t *offset);
/* Makes an unsealed object readable. LURAY_ENOENT, LURAY_ESTATE (already sealed). */
int luray_store_seal(luray_store_t *s, luray_oid_t id);
/* Drops an unsealed object. LURAY_ENOENT, LURAY_ESTATE (sealed). */
int luray_store_abort(luray_store_t *s, luray_oid_t id);
/* Takes a read pin on a sealed object, restoring it from disk first if it was spilled; while
 * pinned it stays at *offset and is never spilled. LURAY_ENOENT, LURAY_ESTATE (not sealed),
 * LURAY_EFULL (no room to restore), LURAY_EIO. */
int luray_store_pin(luray_store_t *s, luray_oid_t id, uint64_t *offset, uint64_t *size);
/* Releases one pin. LURAY_ENOENT, LURAY_ESTATE (not pinned). */
int luray_store_unpin(luray_store_t *s, luray_oid_t id);
/* The object is no longer referenced: it is freed now, or when its last pin goes. Later lookups
 * do not find it. LURAY_ENOENT. */
int luray_store_delete(luray_store_t *s, luray_oid_t id);

/* True for an object that exists and is not deleted (sealed or not, in memory or spilled). */
bool luray_store_contains(const luray_store_t *s, luray_oid_t id);
/* True for a sealed object (in memory or spilled). */
bool luray_store_is_sealed(const luray_store_t *s, luray_oid_t id);
void luray_store_stats(const luray_store_t *s, luray_store_stats_t *stats);
void *luray_store_base(const luray_store_t *s);
const char *luray_store_shm_name(const luray_store_t *s);

#endif
