/* TLSF allocator for the object store arena; sizes are counted in 64-byte units internally. */
#include "store_alloc.h"

#include <stdlib.h>
#include <string.h>

#include "errors.h"

#define SL_LOG2 4 /* log2(LURAY_ALLOC_SL) */
#define UNIT LURAY_ALLOC_ALIGN

static int log2_floor(uint64_t v) { return 63 - __builtin_clzll(v); }

/* Sizes below LURAY_ALLOC_SL units get exact lists in row 0; above, row fl splits the range
 * [2^t, 2^(t+1)) into LURAY_ALLOC_SL equal classes. */
static void mapping(uint64_t units, int *fl, int *sl)
{
    if (units < LURAY_ALLOC_SL) {
        *fl = 0;
        *sl = (int)units;
    } else {
        int t = log2_floor(units);
        *fl = t - SL_LOG2 + 1;
        *sl = (int)((units >> (t - SL_LOG2)) - LURAY_ALLOC_SL);
    }
}

static void list_insert(luray_alloc_t *a, luray_alloc_block_t *b)
{
    int fl, sl;

    mapping(b->size / UNIT, &fl, &sl);
    b->free = true;
    b->free_prev = NULL;
    b->free_next = a->lists[fl][sl];
    if (b->free_next)
        b->free_next->free_prev = b;
    a->lists[fl][sl] = b;
    a->sl_map[fl] |= 1u << sl;
    a->fl_map |= 1ull << fl;
    a->n_free++;
}

static void list_remove(luray_alloc_t *a, luray_alloc_block_t *b)
{
    int fl, sl;

    mapping(b->size / UNIT, &fl, &sl);
    if (b->free_prev)
        b->free_prev->free_next = b->free_next;
    else
        a->lists[fl][sl] = b->free_next;
    if (b->free_next)
        b->free_next->free_prev = b->free_prev;
    if (!a->lists[fl][sl]) {
        a->sl_map[fl] &= ~(1u << sl);
        if (!a->sl_map[fl])
            a->fl_map &= ~(1ull << fl);
    }
    b->free = false;
    b->free_prev = b->free_next = NULL;
    a->n_free--;
}

int luray_alloc_init(luray_alloc_t *a, uint64_t capacity)
{
    luray_alloc_block_t *b;

    memset(a, 0, sizeof *a);
    a->capacity = capacity / UNIT * UNIT;
    if (a->capacity == 0)
        return 0;
    b = calloc(1, sizeof *b);
    if (!b)
        return LURAY_ENOMEM;
    b->size = a->capacity;
    a->first = b;
    list_insert(a, b);
    return 0;
}

void luray_alloc_close(luray_alloc_t *a)
{
    luray_alloc_block_t *b = a->first, *next;

    while (b) {
        next = b->phys_next;
        free(b);
        b = next;
    }
    memset(a, 0, sizeof *a);
}

/* A free block of at least `units`, or NULL. Searching from the class above the request's own
 * guarantees any block found fits (good fit in O(1)); only when that fails is the request's own
 * class scanned, so a request is refused only when no free block at all is large enough. */
static luray_alloc_block_t *find_free(luray_alloc_t *a, uint64_t units)
{
    luray_alloc_block_t *b;
    uint64_t rounded = units;
    uint64_t fl_bits;
    uint32_t sl_bits;
    int fl, sl;

    if (units >= LURAY_ALLOC_SL)
        rounded += (1ull << (log2_floor(units) - SL_LOG2)) - 1;
    mapping(rounded, &fl, &sl);
    if (fl < LURAY_ALLOC_FL) {
        sl_bits = sl < LURAY_ALLOC_SL ? a->sl_map[fl] & (~0u << sl) : 0;
        if (sl_bits)
            return a->lists[fl][__builtin_ctz(sl_bits)];
        fl_bits = fl + 1 < LURAY_ALLOC_FL ? a->fl_map & (~0ull << (fl + 1)) : 0;
        if (fl_bits) {
            fl = __builtin_ctzll(fl_bits);
            return a->lists[fl][__builtin_ctz(a->sl_map[fl])];
        }
    }
    mapping(units, &fl, &sl);
    for (b = a->lists[fl][sl]; b; b = b->free_next)
        if (b->size / UNIT >= units)
            return b;
    return NULL;
}

int luray_alloc_get(luray_alloc_t *a, uint64_t size, luray_alloc_block_t **out)
{
    luray_alloc_block_t *b, *rest;
    uint64_t units;

    *out = NULL;
    if (size > a->capacity)
        return LURAY_EFULL;
    units = size == 0 ? 1 : (size + UNIT - 1) / UNIT;
    b = find_free(a, units);
    if (!b)
        return LURAY_EFULL;
    if (b->size / UNIT > units) {
        rest = calloc(1, sizeof *rest);
        if (!rest)
            return LURAY_ENOMEM;
        list_remove(a, b);
        rest->offset = b->offset + units * UNIT;
        rest->size = b->size - units * UNIT;
        rest->phys_prev = b;
        rest->phys_next = b->phys_next;
        if (b->phys_next)
            b->phys_next->phys_prev = rest;
        b->phys_next = rest;
        b->size = units * UNIT;
        list_insert(a, rest);
    } else {
        list_remove(a, b);
    }
    a->used += b->size;
    a->n_blocks++;
    *out = b;
    return 0;
}

/* Folds `next` (free, right after b) into b. */
static void absorb(luray_alloc_t *a, luray_alloc_block_t *b, luray_alloc_block_t *next)
{
    list_remove(a, next);
    b->size += next->size;
    b->phys_next = next->phys_next;
    if (next->phys_next)
        next->phys_next->phys_prev = b;
    free(next);
}

void luray_alloc_put(luray_alloc_t *a, luray_alloc_block_t *b)
{
    if (!b)
        return;
    a->used -= b->size;
    a->n_blocks--;
    if (b->phys_next && b->phys_next->free)
        absorb(a, b, b->phys_next);
    if (b->phys_prev && b->phys_prev->free) {
        luray_alloc_block_t *prev = b->phys_prev;

        list_remove(a, prev);
        prev->size += b->size;
        prev->phys_next = b->phys_next;
        if (b->phys_next)
            b->phys_next->phys_prev = prev;
        free(b);
        b = prev;
    }
    list_insert(a, b);
}

uint64_t luray_alloc_largest_free(const luray_alloc_t *a)
{
    const luray_alloc_block_t *b;
    uint64_t best = 0;
    int fl, sl;

    if (!a->fl_map)
        return 0;
    fl = log2_floor(a->fl_map);
    sl = log2_floor(a->sl_map[fl]);
    for (b = a->lists[fl][sl]; b; b = b->free_next)
        if (b->size > best)
            best = b->size;
    return best;
}
