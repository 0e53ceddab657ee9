/* Stable multi-key argsort of a block's rows: radix sort for int64, float64 and bool keys (one
 * split on the top bits, then each cache-sized bucket on its own), and for strings radix on
 * successive 8-byte chunks of the rows that still tie. NaN sorts last in both directions. */
#ifndef LURAY_DATA_BLOCK_SORT_H
#define LURAY_DATA_BLOCK_SORT_H

#include <stdbool.h>
#include <stdint.h>

#include "dcol.h"

typedef struct {
    const dcol_t *col; /* int64, float64, bool or string; nrows values */
    bool descending;
} dsort_key_t;

/* Whether rows of this column type can be sorted. */
bool dsort_supported(dcol_type_t type);

/* Writes into idx[0..nrows) the row order that sorts by keys[0], then keys[1], ...; rows with
 * equal keys keep their order. 0, or -1 when out of memory or a key's type cannot be sorted. */
int dsort_argsort(const dsort_key_t *keys, int nkeys, int64_t nrows, int64_t *idx);

#endif
