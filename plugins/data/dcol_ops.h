/* Column kernels that move rows (take, filter, slice, concat, hash, compare): shared by the Column
 * and Block bindings, the sort/partition/groupby code and the readers. Plain C, no Lua. */
#ifndef LURAY_DATA_DCOL_OPS_H
#define LURAY_DATA_DCOL_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "dcol.h"

/* Rows idx[0..n) (0-based, in range: the caller checks) into a new owned column.
 * 0, or -1 when out of memory. */
int dcol_take(const dcol_t *src, const int64_t *idx, int64_t n, dcol_t *out);
/* Rows where mask[i] != 0 (mask has src->len bytes) into a new owned column. 0 or -1 (memory). */
int dcol_filter(const dcol_t *src, const uint8_t *mask, dcol_t *out);
/* A borrowed view of rows [start, start + n) (in range): owns nothing; the caller keeps the
 * source alive. */
void dcol_slice_view(const dcol_t *src, int64_t start, int64_t n, dcol_t *out);
/* A new owned column with the rows of cols[0..n) in order. Types must match, except that int64
 * and float64 mix into float64 and tensor row shapes must be equal. 0, or -1 with err set. */
int dcol_concat(const dcol_t *const *cols, int n, dcol_t *out, char *err, size_t errlen);
/* A copy that owns its memory. 0 or -1 (memory). */
int dcol_copy(const dcol_t *src, dcol_t *out);
/* Mixes row i's value into a 64-bit hash (FNV-1a/xxhash-style over the value's bytes; int64 and
 * float64 of equal value hash alike only if bitwise equal). Stable across machines and runs. */
uint64_t dcol_hash_row(const dcol_t *c, int64_t i, uint64_t h);
/* <0, 0, >0 comparing row i of a with row j of b (same type; NaN sorts after every number). */
int dcol_compare_rows(const dcol_t *a, int64_t i, const dcol_t *b, int64_t j);

#endif
