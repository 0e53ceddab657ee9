/* Column kernels that move rows (dcol_ops.h): take, filter, slice views, concat, copy, row
 * hashing and row comparison. A string view's offsets may start above 0: row i is at
 * data + offsets[i]. */
#include "dcol_ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copies the type and row shape of src into a zeroed out. */
static void init_like(const dcol_t *src, dcol_t *out)
{
    memset(out, 0, sizeof(*out));
    out->type = src->type;
    out->ndim = src->ndim;
    memcpy(out->shape, src->shape, sizeof(out->shape));
}

/* Gives out owned buffers of nbytes data bytes (at least one, so data is never NULL) and, for
 * strings, nrows + 1 offsets. */
static int alloc_owned(dcol_t *out, int64_t nrows, size_t nbytes)
{
    out->data = malloc(nbytes ? nbytes : 1);
    if (out->data == NULL)
        return -1;
    out->owned_data = out->data;
    out->nbytes = nbytes;
    out->len = nrows;
    if (out->type == DCOL_STRING) {
        out->offsets = malloc((size_t)(nrows + 1) * sizeof(int64_t));
        if (out->offsets == NULL) {
            dcol_free(out);
            return -1;
        }
        out->owned_offsets = out->offsets;
        out->offsets[0] = 0;
    }
    return 0;
}

static int take_strings(const dcol_t *src, const int64_t *idx, int64_t n, dcol_t *out)
{
    size_t total = 0;
    for (int64_t k = 0; k < n; k++)
        total += (size_t)(src->offsets[idx[k] + 1] - src->offsets[idx[k]]);
    if (alloc_owned(out, n, total) != 0)
        return -1;
    char *dst = out->data;
    int64_t pos = 0;
    for (int64_t k = 0; k < n; k++) {
        size_t len;
        const char *s = dcol_str(src, idx[k], &len);
        memcpy(dst + pos, s, len);
        pos += (int64_t)len;
        out->offsets[k + 1] = pos;
    }
    return 0;
}

int dcol_take(const dcol_t *src, const int64_t *idx, int64_t n, dcol_t *out)
{
    init_like(src, out);
    if (src->type == DCOL_STRING)
        return take_strings(src, idx, n, out);
    size_t w = dcol_value_size(src);
    if (alloc_owned(out, n, (size_t)n * w) != 0)
        return -1;
    const char *s = src->data;
    char *d = out->data;
    if (w == 8) {
        for (int64_t k = 0; k < n; k++)
            memcpy(d + k * 8, s + idx[k] * 8, 8);
    } else if (w == 1) {
        for (int64_t k = 0; k < n; k++)
            d[k] = s[idx[k]];
    } else {
        for (int64_t k = 0; k < n; k++)
            memcpy(d + (size_t)k * w, s + (size_t)idx[k] * w, w);
    }
    return 0;
}

/* Copies the kept strings. Short ones are copied as 16 fixed bytes (the slack is overwritten by
 * the next string) when the source has 16 bytes left, which beats a memcpy call per row. */
static int filter_strings(const dcol_t *src, const uint8_t *mask, int64_t n, dcol_t *out)
{
    size_t total = 0;
    for (int64_t i = 0; i < src->len; i++)
        if (mask[i])
            total += (size_t)(src->offsets[i + 1] - src->offsets[i]);
    if (alloc_owned(out, n, total + 16) != 0)
        return -1;
    out->nbytes = total;
    const char *base = src->data;
    const int64_t src_end = src->offsets[src->len];
    char *d = out->data;
    int64_t k = 0, pos = 0;
    for (int64_t i = 0; i < src->len; i++) {
        if (!mask[i])
            continue;
        int64_t a = src->offsets[i], len = src->offsets[i + 1] - a;
        if (len <= 16 && a + 16 <= src_end)
            memcpy(d + pos, base + a, 16);
        else
            memcpy(d + pos, base + a, (size_t)len);
        pos += len;
        out->offsets[++k] = pos;
    }
    return 0;
}

/* Branch-free compaction: every value is written, and the write position only moves on for kept
 * rows (so out has room for one value past the kept ones). */
#define FILTER_FIXED(T)                                                                            \
    do {                                                                                           \
        const T *restrict sv = (const T *)src->data;                                              \
        T *restrict dv = (T *)out->data;                                                          \
        int64_t k = 0;                                                                             \
        for (int64_t i = 0; i < src->len; i++) {                                                   \
            dv[k] = sv[i];                                                                         \
            k += mask[i] != 0;                                                                     \
        }                                                                                          \
    } while (0)

int dcol_filter(const dcol_t *src, const uint8_t *mask, dcol_t *out)
{
    int64_t n = 0;
    for (int64_t i = 0; i < src->len; i++)
        n += mask[i] != 0;
    init_like(src, out);
    if (src->type == DCOL_STRING)
        return filter_strings(src, mask, n, out);
    size_t w = dcol_value_size(src);
    if (alloc_owned(out, n, (size_t)(n + 1) * w) != 0)
        return -1;
    out->nbytes = (size_t)n * w;
    if (w == 8) {
        FILTER_FIXED(uint64_t);
    } else if (w == 1) {
        FILTER_FIXED(uint8_t);
    } else {
        const char *sp = src->data;
        char *d = out->data;
        for (int64_t i = 0; i < src->len; i++) {
            if (mask[i]) {
                memcpy(d, sp + (size_t)i * w, w);
                d += w;
            }
        }
    }
    return 0;
}

void dcol_slice_view(const dcol_t *src, int64_t start, int64_t n, dcol_t *out)
{
    init_like(src, out);
    out->len = n;
    if (src->type == DCOL_STRING) {
        /* The offsets stay absolute (no copy): the view reads the source's bytes. */
        out->data = src->data;
        out->nbytes = src->nbytes;
        out->offsets = src->offsets + start;
        return;
    }
    size_t w = dcol_value_size(src);
    out->data = (char *)src->data + (size_t)start * w;
    out->nbytes = (size_t)n * w;
}

/* The type n columns concatenate to, or -1 with err set. */
static int concat_type(const dcol_t *const *cols, int n, dcol_type_t *type, char *err,
                       size_t errlen)
{
    dcol_type_t t = cols[0]->type;
    for (int k = 1; k < n; k++) {
        const dcol_t *c = cols[k];
        if (c->type == t) {
            if (t == DCOL_TENSOR && (c->ndim != cols[0]->ndim ||
                                     memcmp(c->shape, cols[0]->shape,
                                            (size_t)c->ndim * sizeof(int64_t)) != 0)) {
                snprintf(err, errlen, "tensor row shapes differ");
                return -1;
            }
            continue;
        }
        bool numeric = (t == DCOL_INT64 || t == DCOL_FLOAT64) &&
                       (c->type == DCOL_INT64 || c->type == DCOL_FLOAT64);
        if (!numeric) {
            snprintf(err, errlen, "types %s and %s cannot be concatenated", dcol_type_name(t),
                     dcol_type_name(c->type));
            return -1;
        }
        t = DCOL_FLOAT64;
    }
    *type = t;
    return 0;
}

static void append_values(const dcol_t *c, dcol_type_t type, char *dst)
{
    if (type == DCOL_FLOAT64 && c->type == DCOL_INT64) {
        const int64_t *v = c->data;
        double *d = (double *)(void *)dst;
        for (int64_t i = 0; i < c->len; i++)
            d[i] = (double)v[i];
        return;
    }
    if (c->len > 0)
        memcpy(dst, c->data, (size_t)c->len * dcol_value_size(c));
}

int dcol_concat(const dcol_t *const *cols, int n, dcol_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (n < 1) {
        snprintf(err, errlen, "nothing to concatenate");
        return -1;
    }
    dcol_type_t type;
    if (concat_type(cols, n, &type, err, errlen) != 0)
        return -1;
    init_like(cols[0], out);
    out->type = type;
    int64_t rows = 0;
    size_t bytes = 0;
    for (int k = 0; k < n; k++) {
        rows += cols[k]->len;
        if (type == DCOL_STRING)
            bytes += (size_t)(cols[k]->offsets[cols[k]->len] - cols[k]->offsets[0]);
    }
    size_t w = dcol_value_size(out);
    if (type != DCOL_STRING)
        bytes = (size_t)rows * w;
    if (alloc_owned(out, rows, bytes) != 0) {
        snprintf(err, errlen, "%s", "out of memory");
        return -1;
    }
    int64_t row = 0, pos = 0;
    for (int k = 0; k < n; k++) {
        const dcol_t *c = cols[k];
        if (type != DCOL_STRING) {
            append_values(c, type, (char *)out->data + (size_t)row * w);
            row += c->len;
            continue;
        }
        int64_t base = c->offsets[0], used = c->offsets[c->len] - base;
        if (used > 0)
            memcpy((char *)out->data + pos, (const char *)c->data + base, (size_t)used);
        for (int64_t i = 1; i <= c->len; i++)
            out->offsets[row + i] = pos + c->offsets[i] - base;
        row += c->len;
        pos += used;
    }
    return 0;
}

int dcol_copy(const dcol_t *src, dcol_t *out)
{
    char err[64]; /* one concat of one column can only fail for memory */
    return dcol_concat(&src, 1, out, err, sizeof(err));
}

/* ---- hashing ---- */

#define HASH_PRIME 0x100000001b3ull

/* A strong 64-bit mixer (the murmur3/splitmix finaliser) so that nearby keys spread out. */
static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static inline uint64_t hash_word(uint64_t h, uint64_t v)
{
    return mix64((h ^ v) * HASH_PRIME + 0x9e3779b97f4a7c15ull);
}

/* One multiply per 8 bytes and one final mix: strings are the usual group and partition keys. The
 * length goes in first, so "ab" and "ab\0" differ. */
static uint64_t hash_bytes(uint64_t h, const unsigned char *p, size_t len)
{
    uint64_t x = h ^ ((uint64_t)len * 0x9e3779b97f4a7c15ull);
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        x = (x ^ v) * 0xbf58476d1ce4e5b9ull;
        x ^= x >> 31;
        p += 8;
        len -= 8;
    }
    if (len > 0) {
        /* The tail in registers (two overlapping loads, as wyhash does): copying it into a word
         * on the stack stalls on store forwarding. */
        uint64_t v;
        if (len >= 4) {
            uint32_t lo, hi;
            memcpy(&lo, p, 4);
            memcpy(&hi, p + len - 4, 4);
            v = (uint64_t)hi << 32 | lo;
        } else {
            v = (uint64_t)p[0] << 16 | (uint64_t)p[len >> 1] << 8 | p[len - 1];
        }
        x = (x ^ v) * 0xbf58476d1ce4e5b9ull;
        x ^= x >> 31;
    }
    return mix64(x);
}

uint64_t dcol_hash_row(const dcol_t *c, int64_t i, uint64_t h)
{
    switch (c->type) {
    case DCOL_INT64: {
        uint64_t v;
        memcpy(&v, (const char *)c->data + i * 8, 8);
        return hash_word(h, v);
    }
    case DCOL_FLOAT64: {
        double d;
        memcpy(&d, (const char *)c->data + i * 8, 8);
        /* Equal values must hash alike: one NaN, and -0.0 as 0.0. */
        if (isnan(d))
            d = NAN;
        else if (d == 0.0)
            d = 0.0;
        uint64_t v;
        memcpy(&v, &d, 8);
        return hash_word(h, v);
    }
    case DCOL_BOOL:
        return hash_word(h, ((const uint8_t *)c->data)[i] != 0);
    case DCOL_STRING: {
        size_t len;
        const char *s = dcol_str(c, i, &len);
        return hash_bytes(h, (const unsigned char *)s, len);
    }
    case DCOL_TENSOR: {
        size_t w = dcol_value_size(c);
        return hash_bytes(h, (const unsigned char *)c->data + (size_t)i * w, w);
    }
    default:
        return h;
    }
}

/* ---- comparison ---- */

static inline int cmp_f64(double x, double y)
{
    if (x < y)
        return -1;
    if (x > y)
        return 1;
    if (x == y)
        return 0;
    return isnan(x) - isnan(y); /* NaN after every number, equal to NaN */
}

int dcol_compare_rows(const dcol_t *a, int64_t i, const dcol_t *b, int64_t j)
{
    switch (a->type) {
    case DCOL_INT64: {
        int64_t x, y;
        memcpy(&x, (const char *)a->data + i * 8, 8);
        memcpy(&y, (const char *)b->data + j * 8, 8);
        return (x > y) - (x < y);
    }
    case DCOL_FLOAT64: {
        double x, y;
        memcpy(&x, (const char *)a->data + i * 8, 8);
        memcpy(&y, (const char *)b->data + j * 8, 8);
        return cmp_f64(x, y);
    }
    case DCOL_BOOL: {
        int x = ((const uint8_t *)a->data)[i] != 0, y = ((const uint8_t *)b->data)[j] != 0;
        return x - y;
    }
    case DCOL_STRING: {
        size_t la, lb;
        const char *x = dcol_str(a, i, &la), *y = dcol_str(b, j, &lb);
        int r = memcmp(x, y, la < lb ? la : lb);
        if (r != 0)
            return r < 0 ? -1 : 1;
        return (la > lb) - (la < lb);
    }
    case DCOL_TENSOR: {
        size_t w = dcol_value_size(a);
        const float *x = (const float *)(const void *)((const char *)a->data + (size_t)i * w);
        const float *y = (const float *)(const void *)((const char *)b->data + (size_t)j * w);
        for (size_t k = 0; k < w / 4; k++) {
            int r = cmp_f64(x[k], y[k]);
            if (r != 0)
                return r;
        }
        return 0;
    }
    default:
        return 0;
    }
}
