/* Group-by kernels (block_group.h): the key hash table, partial states and their combine. */
#include "block_group.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dcol_ops.h"

#define GROUP_HASH_SEED 0x67726f7570627921ull

typedef struct {
    uint64_t hash;
    int64_t group; /* -1: free */
} slot_t;

typedef struct {
    slot_t *slots;
    uint64_t mask;
} table_t;

static int table_init(table_t *t, uint64_t cap)
{
    t->slots = malloc(cap * sizeof(*t->slots));
    if (t->slots == NULL)
        return -1;
    for (uint64_t s = 0; s < cap; s++)
        t->slots[s].group = -1;
    t->mask = cap - 1;
    return 0;
}

static int table_grow(table_t *t)
{
    table_t bigger;
    if (table_init(&bigger, (t->mask + 1) * 2) != 0)
        return -1;
    for (uint64_t s = 0; s <= t->mask; s++) {
        if (t->slots[s].group < 0)
            continue;
        uint64_t h = t->slots[s].hash;
        while (bigger.slots[h & bigger.mask].group >= 0)
            h++;
        bigger.slots[h & bigger.mask] = t->slots[s];
    }
    free(t->slots);
    *t = bigger;
    return 0;
}

/* Short keys compare in a few overlapping word loads: no call, no byte loop to mispredict. */
static inline bool bytes_equal(const char *x, const char *y, size_t len)
{
    if (len > 16)
        return memcmp(x, y, len) == 0;
    if (len >= 8) {
        uint64_t a0, a1, b0, b1;
        memcpy(&a0, x, 8);
        memcpy(&b0, y, 8);
        memcpy(&a1, x + len - 8, 8);
        memcpy(&b1, y + len - 8, 8);
        return ((a0 ^ b0) | (a1 ^ b1)) == 0;
    }
    if (len >= 4) {
        uint32_t a0, a1, b0, b1;
        memcpy(&a0, x, 4);
        memcpy(&b0, y, 4);
        memcpy(&a1, x + len - 4, 4);
        memcpy(&b1, y + len - 4, 4);
        return ((a0 ^ b0) | (a1 ^ b1)) == 0;
    }
    for (size_t b = 0; b < len; b++)
        if (x[b] != y[b])
            return false;
    return true;
}

/* Whether rows i and j of c hold equal values (NaN equals NaN, -0.0 equals 0.0, as they hash). */
static inline bool row_equal(const dcol_t *c, int64_t i, int64_t j)
{
    switch (c->type) {
    case DCOL_INT64:
        return ((const int64_t *)c->data)[i] == ((const int64_t *)c->data)[j];
    case DCOL_FLOAT64: {
        double x = ((const double *)c->data)[i], y = ((const double *)c->data)[j];
        return x == y || (x != x && y != y);
    }
    case DCOL_BOOL:
        return (((const uint8_t *)c->data)[i] != 0) == (((const uint8_t *)c->data)[j] != 0);
    case DCOL_STRING: {
        size_t li, lj;
        const char *x = dcol_str(c, i, &li), *y = dcol_str(c, j, &lj);
        if (li != lj)
            return false;
        return bytes_equal(x, y, li);
    }
    default:
        return dcol_compare_rows(c, i, c, j) == 0;
    }
}

static inline bool keys_equal(const dcol_t *const *keys, int nkeys, int64_t i, int64_t j)
{
    for (int k = 0; k < nkeys; k++)
        if (!row_equal(keys[k], i, j))
            return false;
    return true;
}

static int grow_groups(dgroup_t *g, int64_t *cap)
{
    int64_t ncap = *cap * 2;
    int64_t *p = realloc(g->first, (size_t)ncap * sizeof(*p));
    if (p == NULL)
        return -1;
    g->first = p;
    *cap = ncap;
    return 0;
}

int dgroup_build(const dcol_t *const *keys, int nkeys, int64_t nrows, dgroup_t *g)
{
    memset(g, 0, sizeof(*g));
    g->nrows = nrows;
    int64_t cap = 16;
    table_t t = {NULL, 0};
    g->gid = malloc((size_t)(nrows ? nrows : 1) * sizeof(*g->gid));
    g->first = malloc((size_t)cap * sizeof(*g->first));
    if (g->gid == NULL || g->first == NULL)
        goto err;
    if (nkeys == 0) {
        for (int64_t i = 0; i < nrows; i++)
            g->gid[i] = 0;
        g->first[0] = 0;
        g->ngroups = nrows > 0;
        return 0;
    }
    if (table_init(&t, 64) != 0)
        goto err;
    for (int64_t i = 0; i < nrows; i++) {
        uint64_t h = GROUP_HASH_SEED;
        for (int k = 0; k < nkeys; k++)
            h = dcol_hash_row(keys[k], i, h);
        uint64_t s = h;
        for (;; s++) {
            slot_t *slot = &t.slots[s & t.mask];
            if (slot->group < 0) {
                if (g->ngroups == cap && grow_groups(g, &cap) != 0)
                    goto err;
                slot->hash = h;
                slot->group = g->ngroups;
                g->first[g->ngroups++] = i;
                g->gid[i] = slot->group;
                if ((uint64_t)g->ngroups * 2 > t.mask && table_grow(&t) != 0)
                    goto err;
                break;
            }
            if (slot->hash == h && keys_equal(keys, nkeys, i, g->first[slot->group])) {
                g->gid[i] = slot->group;
                break;
            }
        }
    }
    free(t.slots);
    return 0;
err:
    free(t.slots);
    dgroup_free(g);
    return -1;
}

void dgroup_free(dgroup_t *g)
{
    free(g->gid);
    free(g->first);
    memset(g, 0, sizeof(*g));
}

/* ---- aggregation ops ---- */

static const char *const op_names[DAGG_NOPS] = {"count", "sum", "mean", "min", "max", "std"};

int dagg_op_parse(const char *name, dagg_op_t *op)
{
    for (int o = 0; o < DAGG_NOPS; o++)
        if (strcmp(name, op_names[o]) == 0) {
            *op = (dagg_op_t)o;
            return 0;
        }
    return -1;
}

const char *dagg_op_name(dagg_op_t op)
{
    return (unsigned)op < DAGG_NOPS ? op_names[op] : NULL;
}

static void set_layout(dagg_layout_t *lay, int n, const char *f0, dcol_type_t t0, const char *f1,
                       dcol_type_t t1, const char *f2, dcol_type_t t2)
{
    lay->n = n;
    lay->field[0] = f0;
    lay->type[0] = t0;
    lay->field[1] = f1;
    lay->type[1] = t1;
    lay->field[2] = f2;
    lay->type[2] = t2;
}

int dagg_layout(dagg_op_t op, dcol_type_t input, dagg_layout_t *lay, char *err, size_t errlen)
{
    bool numeric = input == DCOL_INT64 || input == DCOL_FLOAT64 || input == DCOL_BOOL;
    memset(lay, 0, sizeof(*lay));
    switch (op) {
    case DAGG_COUNT:
        set_layout(lay, 1, "n", DCOL_INT64, NULL, 0, NULL, 0);
        return 0;
    case DAGG_SUM:
        if (!numeric)
            break;
        set_layout(lay, 1, "sum", input == DCOL_FLOAT64 ? DCOL_FLOAT64 : DCOL_INT64, NULL, 0,
                   NULL, 0);
        return 0;
    case DAGG_MEAN:
        if (!numeric)
            break;
        set_layout(lay, 2, "n", DCOL_INT64, "sum", DCOL_FLOAT64, NULL, 0);
        return 0;
    case DAGG_STD:
        if (!numeric)
            break;
        set_layout(lay, 3, "n", DCOL_INT64, "mean", DCOL_FLOAT64, "m2", DCOL_FLOAT64);
        return 0;
    case DAGG_MIN:
    case DAGG_MAX:
        if (!numeric && input != DCOL_STRING)
            break;
        set_layout(lay, 1, "value", input, NULL, 0, NULL, 0);
        return 0;
    default:
        snprintf(err, errlen, "unknown aggregation");
        return -1;
    }
    snprintf(err, errlen, "%s of a %s column is not defined", op_names[op],
             dcol_type_name(input));
    return -1;
}

/* An owned, zeroed int64 or float64 column of n rows. */
static int new_fixed(dcol_t *out, dcol_type_t type, int64_t n)
{
    memset(out, 0, sizeof(*out));
    out->type = type;
    out->data = calloc((size_t)(n ? n : 1), 8);
    if (out->data == NULL)
        return -1;
    out->owned_data = out->data;
    out->len = n;
    out->nbytes = (size_t)n * 8;
    return 0;
}

static inline double num_at(const dcol_t *c, int64_t i)
{
    switch (c->type) {
    case DCOL_FLOAT64:
        return ((const double *)c->data)[i];
    case DCOL_BOOL:
        return ((const uint8_t *)c->data)[i] != 0;
    default:
        return (double)((const int64_t *)c->data)[i];
    }
}

static inline int64_t int_at(const dcol_t *c, int64_t i)
{
    if (c->type == DCOL_BOOL)
        return ((const uint8_t *)c->data)[i] != 0;
    return ((const int64_t *)c->data)[i];
}

/* Per group: the values that are not NaN, counted and summed. */
static void count_and_sum(const dcol_t *col, const dgroup_t *g, int64_t *n, double *sum)
{
    for (int64_t i = 0; i < g->nrows; i++) {
        double x = num_at(col, i);
        if (x != x)
            continue;
        n[g->gid[i]]++;
        sum[g->gid[i]] += x;
    }
}

/* The row holding each group's min (sign -1) or max (sign 1) value; NaN only when a group has
 * nothing else. */
static void best_rows(const dcol_t *col, const dgroup_t *g, int sign, int64_t *best)
{
    for (int64_t k = 0; k < g->ngroups; k++)
        best[k] = g->first[k];
    bool is_float = col->type == DCOL_FLOAT64;
    const double *f = col->data;
    for (int64_t i = 0; i < g->nrows; i++) {
        int64_t *b = &best[g->gid[i]];
        if (is_float) {
            double x = f[i], cur = f[*b];
            if (x == x && (cur != cur || (sign < 0 ? x < cur : x > cur)))
                *b = i;
            continue;
        }
        if (dcol_compare_rows(col, i, col, *b) * sign > 0)
            *b = i;
    }
}

static int minmax_rows(dagg_op_t op, const dcol_t *col, const dgroup_t *g, dcol_t *out)
{
    int64_t *best = malloc((size_t)(g->ngroups ? g->ngroups : 1) * sizeof(*best));
    if (best == NULL)
        return -1;
    best_rows(col, g, op == DAGG_MIN ? -1 : 1, best);
    int rc = dcol_take(col, best, g->ngroups, out);
    free(best);
    return rc;
}

static int partial_sum(const dcol_t *col, const dgroup_t *g, dcol_t *out)
{
    if (col->type == DCOL_FLOAT64) {
        if (new_fixed(out, DCOL_FLOAT64, g->ngroups) != 0)
            return -1;
        double *s = out->data;
        const double *v = col->data;
        for (int64_t i = 0; i < g->nrows; i++)
            if (v[i] == v[i])
                s[g->gid[i]] += v[i];
        return 0;
    }
    if (new_fixed(out, DCOL_INT64, g->ngroups) != 0)
        return -1;
    uint64_t *s = out->data; /* wraps on overflow, as int64 sums do in numpy */
    for (int64_t i = 0; i < g->nrows; i++)
        s[g->gid[i]] += (uint64_t)int_at(col, i);
    return 0;
}

/* Two passes per group (mean first, then squared deviations): steadier than Welford's update and
 * no division per row. */
static int partial_std(const dcol_t *col, const dgroup_t *g, dcol_t *out)
{
    int64_t ng = g->ngroups;
    if (new_fixed(&out[0], DCOL_INT64, ng) != 0 || new_fixed(&out[1], DCOL_FLOAT64, ng) != 0 ||
        new_fixed(&out[2], DCOL_FLOAT64, ng) != 0)
        return -1;
    int64_t *n = out[0].data;
    double *mean = out[1].data, *m2 = out[2].data;
    count_and_sum(col, g, n, mean);
    for (int64_t k = 0; k < ng; k++)
        mean[k] = n[k] > 0 ? mean[k] / (double)n[k] : NAN;
    for (int64_t i = 0; i < g->nrows; i++) {
        double x = num_at(col, i);
        if (x == x) {
            double d = x - mean[g->gid[i]];
            m2[g->gid[i]] += d * d;
        }
    }
    return 0;
}

static void free_cols(dcol_t *out, int n)
{
    for (int k = 0; k < n; k++)
        dcol_free(&out[k]);
}

int dagg_partial(dagg_op_t op, const dcol_t *col, const dgroup_t *g, dcol_t *out)
{
    int64_t ng = g->ngroups;
    int rc = -1, nout = 1;
    memset(out, 0, DAGG_MAX_STATE * sizeof(*out));
    switch (op) {
    case DAGG_COUNT: {
        if (new_fixed(&out[0], DCOL_INT64, ng) != 0)
            break;
        int64_t *n = out[0].data;
        for (int64_t i = 0; i < g->nrows; i++)
            n[g->gid[i]]++;
        rc = 0;
        break;
    }
    case DAGG_SUM:
        rc = partial_sum(col, g, &out[0]);
        break;
    case DAGG_MEAN:
        nout = 2;
        if (new_fixed(&out[0], DCOL_INT64, ng) != 0 || new_fixed(&out[1], DCOL_FLOAT64, ng) != 0)
            break;
        count_and_sum(col, g, out[0].data, out[1].data);
        rc = 0;
        break;
    case DAGG_STD:
        nout = 3;
        rc = partial_std(col, g, out);
        break;
    case DAGG_MIN:
    case DAGG_MAX:
        rc = minmax_rows(op, col, g, &out[0]);
        break;
    default:
        break;
    }
    if (rc != 0)
        free_cols(out, nout);
    return rc;
}

/* ---- combine ---- */

/* Chan et al.'s pairwise update: merges (nb, mb, m2b) into the running (n, m, m2) of a group. */
static inline void chan_merge(int64_t *n, double *m, double *m2, int64_t nb, double mb, double m2b)
{
    if (nb == 0)
        return;
    if (*n == 0) {
        *n = nb;
        *m = mb;
        *m2 = m2b;
        return;
    }
    double na = (double)*n, nbd = (double)nb, tot = na + nbd, delta = mb - *m;
    *m += delta * nbd / tot;
    *m2 += m2b + delta * delta * na * nbd / tot;
    *n += nb;
}

static int combine_std(const dcol_t *const *states, const dgroup_t *g, dcol_t *out)
{
    int64_t ng = g->ngroups;
    size_t cnt = (size_t)(ng ? ng : 1);
    int64_t *n = calloc(cnt, sizeof(*n));
    double *m = calloc(cnt, sizeof(*m)), *m2 = calloc(cnt, sizeof(*m2));
    int rc = -1;
    if (n == NULL || m == NULL || m2 == NULL || new_fixed(out, DCOL_FLOAT64, ng) != 0)
        goto out;
    for (int64_t i = 0; i < g->nrows; i++) {
        int64_t k = g->gid[i];
        chan_merge(&n[k], &m[k], &m2[k], int_at(states[0], i), num_at(states[1], i),
                   num_at(states[2], i));
    }
    double *o = out->data;
    for (int64_t k = 0; k < ng; k++)
        o[k] = n[k] >= 2 ? sqrt(m2[k] / (double)(n[k] - 1)) : NAN;
    rc = 0;
out:
    free(n);
    free(m);
    free(m2);
    return rc;
}

static int combine_mean(const dcol_t *const *states, const dgroup_t *g, dcol_t *out)
{
    int64_t ng = g->ngroups;
    int64_t *n = calloc((size_t)(ng ? ng : 1), sizeof(*n));
    if (n == NULL || new_fixed(out, DCOL_FLOAT64, ng) != 0) {
        free(n);
        return -1;
    }
    double *s = out->data;
    for (int64_t i = 0; i < g->nrows; i++) {
        n[g->gid[i]] += int_at(states[0], i);
        s[g->gid[i]] += num_at(states[1], i);
    }
    for (int64_t k = 0; k < ng; k++)
        s[k] = n[k] > 0 ? s[k] / (double)n[k] : NAN;
    free(n);
    return 0;
}

static int combine_sum(const dcol_t *state, const dgroup_t *g, dcol_t *out)
{
    if (state->type == DCOL_FLOAT64) {
        if (new_fixed(out, DCOL_FLOAT64, g->ngroups) != 0)
            return -1;
        double *s = out->data;
        for (int64_t i = 0; i < g->nrows; i++)
            s[g->gid[i]] += num_at(state, i);
        return 0;
    }
    if (new_fixed(out, DCOL_INT64, g->ngroups) != 0)
        return -1;
    uint64_t *s = out->data;
    for (int64_t i = 0; i < g->nrows; i++)
        s[g->gid[i]] += (uint64_t)int_at(state, i);
    return 0;
}

int dagg_combine(dagg_op_t op, const dcol_t *const *states, const dgroup_t *g, dcol_t *out)
{
    memset(out, 0, sizeof(*out));
    switch (op) {
    case DAGG_COUNT:
    case DAGG_SUM:
        return combine_sum(states[0], g, out);
    case DAGG_MEAN:
        return combine_mean(states, g, out);
    case DAGG_STD:
        return combine_std(states, g, out);
    case DAGG_MIN:
    case DAGG_MAX:
        return minmax_rows(op, states[0], g, out);
    default:
        return -1;
    }
}

int dagg_empty(dagg_op_t op, const dcol_t *const *states, dcol_t *out)
{
    bool zero = op == DAGG_COUNT || op == DAGG_SUM;
    dcol_type_t type = op == DAGG_SUM ? states[0]->type : zero ? DCOL_INT64 : DCOL_FLOAT64;
    if (new_fixed(out, type, 1) != 0)
        return -1;
    if (!zero)
        ((double *)out->data)[0] = NAN;
    return 0;
}
