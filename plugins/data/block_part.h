/* Splitting a block's rows into parts: by key hash, at random, by sorted key bounds; shuffling and
 * sampling with a seeded generator (xoshiro256** seeded by splitmix64). Plain C, no Lua. */
#ifndef LURAY_DATA_BLOCK_PART_H
#define LURAY_DATA_BLOCK_PART_H

#include <stdbool.h>
#include <stdint.h>

#include "luray/rng.h"

#include "dcol.h"

typedef luray_rng_t drng_t;

void drng_seed(drng_t *r, uint64_t seed);
uint64_t drng_next(drng_t *r);
/* Uniform in [0, n), n >= 1 (Lemire's multiply-and-reject: no modulo bias). */
uint64_t drng_below(drng_t *r, uint64_t n);

/* part[i] = hash of row i's key values mod nparts. The hash depends only on the values' bytes,
 * so the same key lands in the same part on every machine and run. */
void dpart_hash(const dcol_t *const *keys, int nkeys, int64_t nrows, uint32_t nparts,
                uint32_t *part);
/* part[i] uniform in [0, nparts), from the seed. */
void dpart_random(int64_t nrows, uint32_t nparts, uint64_t seed, uint32_t *part);
/* Range parts by sorted bounds b[0..nb): ascending, part j holds b[j-1] < key <= b[j] (part 0 the
 * keys <= b[0], part nb the keys > b[nb-1]); descending, part nb - j. NaN keys go to part nb.
 * key: int64, float64 or bool with int64 or float64 bounds, or string with string bounds.
 * 0, or -1 for any other combination. */
int dpart_bounds(const dcol_t *key, const dcol_t *bounds, bool descending, uint32_t *part);
/* Counts rows per part: part p gets rows start[p] .. start[p + 1] of the split (start has
 * nparts + 1 entries). */
void dpart_count(const uint32_t *part, int64_t nrows, uint32_t nparts, int64_t *start);
/* Splits src's rows by part[] into new owned columns *outs[p] (start from dpart_count), keeping
 * their order. One pass over src per column, so a split into many parts reads each row once.
 * 0, or -1 when out of memory (each *outs[p] then owns what it got, or nothing). */
int dpart_scatter(const dcol_t *src, const uint32_t *part, const int64_t *start, uint32_t nparts,
                  dcol_t *const *outs);
/* idx[0..n) = a uniformly random permutation of 0..n-1 (Fisher–Yates). */
void dpart_shuffle(int64_t *idx, int64_t n, uint64_t seed);
/* Chooses min(k, nrows) distinct rows uniformly at random (Floyd's algorithm), written to out in
 * ascending order; *nout is how many. 0, or -1 when out of memory. */
int dpart_sample(int64_t nrows, int64_t k, uint64_t seed, int64_t *out, int64_t *nout);

#endif
