/* Row partitioning, shuffling and sampling (block_part.h). */
#include "block_part.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dcol_ops.h"

/* The hash partitioner's starting value: fixed, so parts agree across machines and runs. */
#define PART_HASH_SEED 0x6c7572617964617aull

void drng_seed(drng_t *r, uint64_t seed)
{
    luray_rng_seed(r, seed);
}

uint64_t drng_next(drng_t *r)
{
    return luray_rng_next(r);
}

/* The high 64 bits of a 64x64-bit product, without a 128-bit type. */
static inline uint64_t mul_hi(uint64_t a, uint64_t b, uint64_t *lo)
{
    uint64_t a0 = (uint32_t)a, a1 = a >> 32, b0 = (uint32_t)b, b1 = b >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (uint32_t)p01 + (uint32_t)p10;
    *lo = (mid << 32) | (uint32_t)p00;
    return p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
}

uint64_t drng_below(drng_t *r, uint64_t n)
{
    uint64_t lo, hi = mul_hi(drng_next(r), n, &lo);
    if (lo < n) {
        uint64_t threshold = (0 - n) % n;
        while (lo < threshold)
            hi = mul_hi(drng_next(r), n, &lo);
    }
    return hi;
}

void dpart_hash(const dcol_t *const *keys, int nkeys, int64_t nrows, uint32_t nparts,
                uint32_t *part)
{
    for (int64_t i = 0; i < nrows; i++) {
        uint64_t h = PART_HASH_SEED;
        for (int k = 0; k < nkeys; k++)
            h = dcol_hash_row(keys[k], i, h);
        /* The top 32 bits scaled to [0, nparts): no division per row. */
        part[i] = (uint32_t)(((h >> 32) * nparts) >> 32);
    }
}

void dpart_random(int64_t nrows, uint32_t nparts, uint64_t seed, uint32_t *part)
{
    drng_t r;
    drng_seed(&r, seed);
    for (int64_t i = 0; i < nrows; i++)
        part[i] = (uint32_t)drng_below(&r, nparts);
}

/* Sign of x - d for a finite or infinite d (never NaN), exact for every int64. */
static int cmp_i64_f64(int64_t x, double d)
{
    if (d >= 9223372036854775808.0)
        return -1;
    if (d < -9223372036854775808.0)
        return 1;
    double fl = floor(d);
    int64_t f = (int64_t)fl;
    if (x != f)
        return x < f ? -1 : 1;
    return d > fl ? -1 : 0;
}

static inline int64_t int_key(const dcol_t *key, int64_t i)
{
    if (key->type == DCOL_BOOL)
        return ((const uint8_t *)key->data)[i] != 0;
    return ((const int64_t *)key->data)[i];
}

/* Whether bound j is strictly less than row i's key (the key is not NaN). */
static bool bound_below(const dcol_t *b, int64_t j, const dcol_t *key, int64_t i)
{
    if (key->type == DCOL_STRING)
        return dcol_compare_rows(b, j, key, i) < 0;
    if (key->type == DCOL_FLOAT64) {
        double k = ((const double *)key->data)[i];
        if (b->type == DCOL_FLOAT64)
            return ((const double *)b->data)[j] < k;
        return cmp_i64_f64(((const int64_t *)b->data)[j], k) < 0;
    }
    int64_t k = int_key(key, i);
    if (b->type == DCOL_INT64)
        return ((const int64_t *)b->data)[j] < k;
    return cmp_i64_f64(k, ((const double *)b->data)[j]) > 0;
}

static bool bounds_supported(const dcol_t *key, const dcol_t *bounds)
{
    bool num_bounds = bounds->type == DCOL_INT64 || bounds->type == DCOL_FLOAT64;
    switch (key->type) {
    case DCOL_INT64:
    case DCOL_FLOAT64:
    case DCOL_BOOL:
        return num_bounds;
    case DCOL_STRING:
        return bounds->type == DCOL_STRING;
    default:
        return false;
    }
}

int dpart_bounds(const dcol_t *key, const dcol_t *bounds, bool descending, uint32_t *part)
{
    if (!bounds_supported(key, bounds))
        return -1;
    int64_t nb = bounds->len;
    for (int64_t i = 0; i < key->len; i++) {
        if (key->type == DCOL_FLOAT64 && isnan(((const double *)key->data)[i])) {
            part[i] = (uint32_t)nb;
            continue;
        }
        int64_t lo = 0, hi = nb; /* the number of bounds below the key */
        while (lo < hi) {
            int64_t mid = lo + (hi - lo) / 2;
            if (bound_below(bounds, mid, key, i))
                lo = mid + 1;
            else
                hi = mid;
        }
        part[i] = (uint32_t)(descending ? nb - lo : lo);
    }
    return 0;
}

void dpart_count(const uint32_t *part, int64_t nrows, uint32_t nparts, int64_t *start)
{
    memset(start, 0, ((size_t)nparts + 1) * sizeof(*start));
    for (int64_t i = 0; i < nrows; i++)
        start[part[i] + 1]++;
    for (uint32_t p = 0; p < nparts; p++)
        start[p + 1] += start[p];
}

/* Gives out an owned column shaped like src with n rows of nbytes value bytes. */
static int alloc_part(const dcol_t *src, int64_t n, size_t nbytes, dcol_t *out)
{
    memset(out, 0, sizeof(*out));
    out->type = src->type;
    out->ndim = src->ndim;
    memcpy(out->shape, src->shape, sizeof(out->shape));
    out->len = n;
    out->nbytes = nbytes;
    out->data = out->owned_data = malloc(nbytes ? nbytes : 1);
    if (out->data == NULL)
        return -1;
    if (src->type == DCOL_STRING) {
        out->offsets = out->owned_offsets = malloc((size_t)(n + 1) * sizeof(int64_t));
        if (out->offsets == NULL)
            return -1;
        out->offsets[0] = 0;
    }
    return 0;
}

static int scatter_strings(const dcol_t *src, const uint32_t *part, const int64_t *start,
                           uint32_t nparts, dcol_t *const *outs, int64_t *cur)
{
    memset(cur, 0, (size_t)nparts * sizeof(*cur));
    for (int64_t i = 0; i < src->len; i++)
        cur[part[i]] += src->offsets[i + 1] - src->offsets[i];
    for (uint32_t p = 0; p < nparts; p++)
        if (alloc_part(src, start[p + 1] - start[p], (size_t)cur[p], outs[p]) != 0)
            return -1;
    memset(cur, 0, (size_t)nparts * sizeof(*cur)); /* rows written per part */
    for (int64_t i = 0; i < src->len; i++) {
        dcol_t *o = outs[part[i]];
        int64_t r = cur[part[i]]++;
        size_t len;
        const char *s = dcol_str(src, i, &len);
        memcpy((char *)o->data + o->offsets[r], s, len);
        o->offsets[r + 1] = o->offsets[r] + (int64_t)len;
    }
    return 0;
}

int dpart_scatter(const dcol_t *src, const uint32_t *part, const int64_t *start, uint32_t nparts,
                  dcol_t *const *outs)
{
    for (uint32_t p = 0; p < nparts; p++)
        memset(outs[p], 0, sizeof(*outs[p]));
    int64_t *cur = malloc(((size_t)nparts + 1) * sizeof(*cur));
    char **dst = malloc(((size_t)nparts + 1) * sizeof(*dst));
    int rc = -1;
    if (cur == NULL || dst == NULL)
        goto out;
    if (src->type == DCOL_STRING) {
        rc = scatter_strings(src, part, start, nparts, outs, cur);
        goto out;
    }
    size_t w = dcol_value_size(src);
    for (uint32_t p = 0; p < nparts; p++) {
        int64_t n = start[p + 1] - start[p];
        if (alloc_part(src, n, (size_t)n * w, outs[p]) != 0)
            goto out;
        dst[p] = outs[p]->data;
    }
    const char *s = src->data;
    if (w == 8) {
        for (int64_t i = 0; i < src->len; i++) {
            memcpy(dst[part[i]], s + i * 8, 8);
            dst[part[i]] += 8;
        }
    } else {
        for (int64_t i = 0; i < src->len; i++) {
            memcpy(dst[part[i]], s + (size_t)i * w, w);
            dst[part[i]] += w;
        }
    }
    rc = 0;
out:
    free(cur);
    free(dst);
    return rc;
}

void dpart_shuffle(int64_t *idx, int64_t n, uint64_t seed)
{
    drng_t r;
    drng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++)
        idx[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)drng_below(&r, (uint64_t)i + 1);
        int64_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Inserts v into an open-addressing set of non-negative values (-1 marks a free slot); returns
 * false when v was already there. */
static bool set_insert(int64_t *set, uint64_t mask, int64_t v)
{
    uint64_t h = ((uint64_t)v * 0x9e3779b97f4a7c15ull) >> 17;
    for (;; h++) {
        int64_t *slot = &set[h & mask];
        if (*slot == v)
            return false;
        if (*slot < 0) {
            *slot = v;
            return true;
        }
    }
}

int dpart_sample(int64_t nrows, int64_t k, uint64_t seed, int64_t *out, int64_t *nout)
{
    if (k >= nrows) {
        for (int64_t i = 0; i < nrows; i++)
            out[i] = i;
        *nout = nrows;
        return 0;
    }
    *nout = k < 0 ? 0 : k;
    if (k <= 0)
        return 0;
    uint64_t cap = 16;
    while (cap < (uint64_t)k * 2)
        cap *= 2;
    int64_t *set = malloc(cap * sizeof(*set));
    if (set == NULL)
        return -1;
    memset(set, 0xff, cap * sizeof(*set));
    drng_t r;
    drng_seed(&r, seed);
    int64_t n = 0;
    for (int64_t j = nrows - k; j < nrows; j++) {
        int64_t t = (int64_t)drng_below(&r, (uint64_t)j + 1);
        int64_t pick = set_insert(set, cap - 1, t) ? t : j;
        if (pick == j)
            set_insert(set, cap - 1, j);
        out[n++] = pick;
    }
    free(set);
    qsort(out, (size_t)n, sizeof(*out), cmp_i64);
    return 0;
}
