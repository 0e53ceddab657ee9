/* The object store's allocator: hands out 64-byte aligned ranges (offsets) of one arena.
 * Two-level segregated free lists (TLSF) with immediate coalescing: O(1) per operation. The
 * bookkeeping lives in process memory, never inside the arena, so clients that map the arena
 * cannot corrupt it. */
#ifndef LURAY_CORE_STORE_ALLOC_H
#define LURAY_CORE_STORE_ALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LURAY_ALLOC_ALIGN 64

/* One range of the arena, free or in use. Callers read offset and size; the rest is private. */
typedef struct luray_alloc_block {
    uint64_t offset; /* bytes from the arena start, a multiple of LURAY_ALLOC_ALIGN */
    uint64_t size;   /* bytes, a multiple of LURAY_ALLOC_ALIGN (the request rounded up) */
    struct luray_alloc_block *phys_prev, *phys_next; /* neighbours in the arena */
    struct luray_alloc_block *free_prev, *free_next; /* list of the same size class */
    bool free;
} luray_alloc_block_t;

#define LURAY_ALLOC_FL 64
#define LURAY_ALLOC_SL 16

typedef struct {
    uint64_t capacity; /* usable bytes: the arena size rounded down to LURAY_ALLOC_ALIGN */
    uint64_t used;     /* bytes in allocated blocks */
    size_t n_blocks;   /* allocated blocks */
    size_t n_free;     /* free blocks */
    uint64_t fl_map;
    uint32_t sl_map[LURAY_ALLOC_FL];
    luray_alloc_block_t *lists[LURAY_ALLOC_FL][LURAY_ALLOC_SL];
    luray_alloc_block_t *first; /* lowest block in the arena */
} luray_alloc_t;

/* Sets up an allocator over `capacity` bytes, all free. Returns 0 or LURAY_ENOMEM. */
int luray_alloc_init(luray_alloc_t *a, uint64_t capacity);
void luray_alloc_close(luray_alloc_t *a);
/* Allocates `size` bytes (0 counts as 1). Returns 0 with *out set, LURAY_EFULL when no free range
 * is large enough, or LURAY_ENOMEM. */
int luray_alloc_get(luray_alloc_t *a, uint64_t size, luray_alloc_block_t **out);
/* Frees a block from luray_alloc_get, merging it with free neighbours. */
void luray_alloc_put(luray_alloc_t *a, luray_alloc_block_t *b);
/* The largest block that luray_alloc_get could return now (0 if none). O(classes). */
uint64_t luray_alloc_largest_free(const luray_alloc_t *a);

#endif
