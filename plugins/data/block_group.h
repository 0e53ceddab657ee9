/* Group-by in plain C: rows grouped by equal key values through a hash table over the keys' bytes,
 * per-group partial aggregation states, and the combine of partial states from many blocks (count,
 * sum, mean, min, max, std with Chan's parallel variance; NaN values are skipped). */
#ifndef LURAY_DATA_BLOCK_GROUP_H
#define LURAY_DATA_BLOCK_GROUP_H

#include <stddef.h>
#include <stdint.h>

#include "dcol.h"

/* Rows grouped by equal keys; groups are numbered in order of first appearance. NaN keys form one
 * group, and -0.0 groups with 0.0. */
typedef struct {
    int64_t nrows;
    int64_t ngroups;
    int64_t *gid;   /* nrows entries: the group of each row */
    int64_t *first; /* ngroups entries: the first row of each group */
} dgroup_t;

/* Groups nrows rows by keys[0..nkeys) (no keys: one group, or none when there are no rows).
 * 0, or -1 when out of memory. */
int dgroup_build(const dcol_t *const *keys, int nkeys, int64_t nrows, dgroup_t *g);
void dgroup_free(dgroup_t *g);

typedef enum { DAGG_COUNT, DAGG_SUM, DAGG_MEAN, DAGG_MIN, DAGG_MAX, DAGG_STD, DAGG_NOPS } dagg_op_t;

/* "count", "sum", ...; -1 for an unknown name. */
int dagg_op_parse(const char *name, dagg_op_t *op);
const char *dagg_op_name(dagg_op_t op);

#define DAGG_MAX_STATE 3

/* The state columns one aggregation keeps per group. */
typedef struct {
    int n;
    const char *field[DAGG_MAX_STATE]; /* "n", "sum", "mean", "m2", "value" */
    dcol_type_t type[DAGG_MAX_STATE];
} dagg_layout_t;

/* The state layout of op over a column of type `input` (ignored for count). 0, or -1 with err set
 * when op does not apply to that type. */
int dagg_layout(dagg_op_t op, dcol_type_t input, dagg_layout_t *lay, char *err, size_t errlen);
/* Per-group states of op over col (g->nrows rows; NULL for count) into out[0..layout n), owned
 * columns with g->ngroups rows. 0, or -1 when out of memory. */
int dagg_partial(dagg_op_t op, const dcol_t *col, const dgroup_t *g, dcol_t *out);
/* Combines state rows (states[0..layout n), grouped by g) into the final value of each group:
 * count int64; sum int64 or float64; mean and std float64 (NaN without values, std also with one);
 * min and max the value's type. 0, or -1 when out of memory. */
int dagg_combine(dagg_op_t op, const dcol_t *const *states, const dgroup_t *g, dcol_t *out);
/* The one-row final value of op over no rows at all (a global aggregate of nothing): count 0,
 * sum 0 of the state's type, NaN for the rest (min and max then float64). 0 or -1 (memory). */
int dagg_empty(dagg_op_t op, const dcol_t *const *states, dcol_t *out);

#endif
