/* Stable multi-key argsort (block_sort.h). Keys are applied last to first, each pass a stable sort
 * of the current order, so earlier keys win and equal rows keep their input order. */
#include "block_sort.h"

#include <stdlib.h>
#include <string.h>

#include "dcol_ops.h"

#define MSD_BITS 11
#define MSD_SIZE (1 << MSD_BITS)
#define MSD_MIN 65536 /* below this a bucket fits in cache: finish it with LSD passes */
#define LSD_MIN 1024  /* below this, histograms cost more than comparisons: merge sort */
#define LSD_BITS 8
#define LSD_SIZE (1 << LSD_BITS)
#define SMALL_SORT 32

typedef struct {
    uint64_t key; /* ordered like the value: unsigned comparison of keys sorts the rows */
    int64_t row;
} kv_t;

bool dsort_supported(dcol_type_t type)
{
    return type == DCOL_INT64 || type == DCOL_FLOAT64 || type == DCOL_BOOL ||
           type == DCOL_STRING;
}

/* Maps a double to an unsigned key with the same order; every NaN maps past +inf. */
static inline uint64_t f64_key(double d, bool desc)
{
    if (d != d)
        return UINT64_MAX; /* last in both directions */
    if (d == 0.0)
        d = 0.0; /* -0.0 and 0.0 are equal values */
    uint64_t u;
    memcpy(&u, &d, 8);
    u = (u & 0x8000000000000000ull) ? ~u : u | 0x8000000000000000ull;
    return desc ? ~u : u;
}

/* Bytes [off, off + 8) of a string, big-endian and zero-padded, so that unsigned order is byte
 * order. */
static inline uint64_t str_chunk(const dcol_t *c, int64_t row, size_t off)
{
    size_t len;
    const unsigned char *s = (const unsigned char *)dcol_str(c, row, &len);
    uint64_t k = 0;
    for (size_t b = 0; b < 8 && off + b < len; b++)
        k |= (uint64_t)s[off + b] << (56 - 8 * b);
    return k;
}

static void extract_keys(const dcol_t *c, bool desc, const int64_t *idx, int64_t n, kv_t *a)
{
    switch (c->type) {
    case DCOL_INT64: {
        const int64_t *v = c->data;
        for (int64_t j = 0; j < n; j++) {
            uint64_t u = (uint64_t)v[idx[j]] ^ 0x8000000000000000ull;
            a[j].key = desc ? ~u : u;
            a[j].row = idx[j];
        }
        break;
    }
    case DCOL_FLOAT64: {
        const double *v = c->data;
        for (int64_t j = 0; j < n; j++) {
            a[j].key = f64_key(v[idx[j]], desc);
            a[j].row = idx[j];
        }
        break;
    }
    case DCOL_BOOL: {
        const uint8_t *v = c->data;
        for (int64_t j = 0; j < n; j++) {
            uint64_t u = v[idx[j]] != 0;
            a[j].key = desc ? 1 - u : u;
            a[j].row = idx[j];
        }
        break;
    }
    default: /* DCOL_STRING: sorted by sort_strings */
        for (int64_t j = 0; j < n; j++)
            a[j].row = idx[j];
        break;
    }
}

static void insertion_sort_kv(kv_t *a, int64_t n)
{
    for (int64_t i = 1; i < n; i++) {
        kv_t x = a[i];
        int64_t j = i;
        while (j > 0 && a[j - 1].key > x.key) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = x;
    }
}

/* Stable merge sort of a[0..n) by key (insertion-sorted runs of SMALL_SORT, then merges). */
static void merge_sort_kv(kv_t *a, kv_t *tmp, int64_t n)
{
    for (int64_t s = 0; s < n; s += SMALL_SORT)
        insertion_sort_kv(a + s, n - s < SMALL_SORT ? n - s : SMALL_SORT);
    kv_t *src = a, *dst = tmp;
    for (int64_t w = SMALL_SORT; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int64_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                dst[k++] = src[j].key < src[i].key ? src[j++] : src[i++];
            while (i < mid)
                dst[k++] = src[i++];
            while (j < hi)
                dst[k++] = src[j++];
        }
        kv_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != a)
        memcpy(a, src, (size_t)n * sizeof(*a));
}

/* Stable LSD radix sort of a[0..n) on the low `bits` bits of the key (the higher ones are equal),
 * 8 bits a pass; tmp has n entries. Passes whose digit is the same for every row are skipped. */
static void lsd_sort(kv_t *a, kv_t *tmp, int64_t n, int bits)
{
    if (n < LSD_MIN) {
        merge_sort_kv(a, tmp, n);
        return;
    }
    int passes = (bits + LSD_BITS - 1) / LSD_BITS;
    int64_t hist[64 / LSD_BITS][LSD_SIZE];
    memset(hist, 0, (size_t)passes * sizeof(hist[0]));
    for (int64_t j = 0; j < n; j++) {
        uint64_t k = a[j].key;
        for (int p = 0; p < passes; p++)
            hist[p][(k >> (p * LSD_BITS)) & (LSD_SIZE - 1)]++;
    }
    kv_t *src = a, *dst = tmp;
    for (int p = 0; p < passes; p++) {
        int shift = p * LSD_BITS;
        if (hist[p][(src[0].key >> shift) & (LSD_SIZE - 1)] == n)
            continue;
        int64_t pos = 0;
        for (int b = 0; b < LSD_SIZE; b++) {
            int64_t c = hist[p][b];
            hist[p][b] = pos;
            pos += c;
        }
        for (int64_t j = 0; j < n; j++)
            dst[hist[p][(src[j].key >> shift) & (LSD_SIZE - 1)]++] = src[j];
        kv_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != a)
        memcpy(a, src, (size_t)n * sizeof(*a));
}

/* Stable sort of a[0..n) on the low `bits` bits of the key; tmp has n entries. Large inputs are
 * split on their top 11 bits first (one pass over memory), so that each bucket is then sorted
 * while it sits in cache. 0, or -1 when out of memory. */
static int sort_bits(kv_t *a, kv_t *tmp, int64_t n, int bits)
{
    if (bits <= 0 || n < 2)
        return 0;
    if (n < MSD_MIN) {
        lsd_sort(a, tmp, n, bits);
        return 0;
    }
    int shift = bits > MSD_BITS ? bits - MSD_BITS : 0;
    int64_t *start = calloc(MSD_SIZE + 1, sizeof(*start));
    int64_t *fill = malloc(MSD_SIZE * sizeof(*fill));
    if (start == NULL || fill == NULL) {
        free(start);
        free(fill);
        return -1;
    }
    for (int64_t j = 0; j < n; j++)
        start[((a[j].key >> shift) & (MSD_SIZE - 1)) + 1]++;
    for (int b = 0; b < MSD_SIZE; b++)
        start[b + 1] += start[b];
    memcpy(fill, start, MSD_SIZE * sizeof(*fill));
    for (int64_t j = 0; j < n; j++)
        tmp[fill[(a[j].key >> shift) & (MSD_SIZE - 1)]++] = a[j];
    free(fill);
    int rc = 0;
    for (int b = 0; b < MSD_SIZE && rc == 0; b++) {
        int64_t s = start[b], len = start[b + 1] - s;
        if (len == 0)
            continue;
        rc = sort_bits(tmp + s, a + s, len, shift);
        memcpy(a + s, tmp + s, (size_t)len * sizeof(*a));
    }
    free(start);
    return rc;
}

/* Sorts on only the bits in which the keys differ: small integer ranges cost one pass. */
static int radix_sort(kv_t *a, kv_t *tmp, int64_t n)
{
    uint64_t diff = 0, k0 = a[0].key;
    for (int64_t j = 1; j < n; j++)
        diff |= a[j].key ^ k0;
    int bits = 0;
    while (bits < 64 && (diff >> bits) != 0)
        bits++;
    return sort_bits(a, tmp, n, bits);
}

static inline int row_cmp(const dcol_t *c, bool desc, int64_t x, int64_t y)
{
    int r = dcol_compare_rows(c, x, c, y);
    return desc ? -r : r;
}

/* Stable bottom-up merge sort of rows a[0..n) by the full value of c; tmp has n entries. */
static void merge_sort_rows(int64_t *a, int64_t *tmp, int64_t n, const dcol_t *c, bool desc)
{
    const int64_t run = 16;
    for (int64_t s = 0; s < n; s += run) {
        int64_t e = s + run < n ? s + run : n;
        for (int64_t i = s + 1; i < e; i++) {
            int64_t x = a[i], j = i;
            while (j > s && row_cmp(c, desc, a[j - 1], x) > 0) {
                a[j] = a[j - 1];
                j--;
            }
            a[j] = x;
        }
    }
    int64_t *src = a, *dst = tmp;
    for (int64_t w = run; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int64_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                dst[k++] = row_cmp(c, desc, src[j], src[i]) < 0 ? src[j++] : src[i++];
            while (i < mid)
                dst[k++] = src[i++];
            while (j < hi)
                dst[k++] = src[j++];
        }
        int64_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != a)
        memcpy(a, src, (size_t)n * sizeof(*a));
}

/* Stable sort of the rows in a[0..n) (whose strings agree on their first off bytes) by string:
 * radix on the next 8 bytes, then the same for each run that still ties. A run of identical
 * strings (the usual case for categories) is done; one whose strings differ only past their end
 * (in length) is merge sorted. 0, or -1 when out of memory. */
static int sort_strings(kv_t *a, kv_t *tmp, int64_t n, const dcol_t *c, bool desc, size_t off)
{
    for (int64_t j = 0; j < n; j++) {
        uint64_t k = str_chunk(c, a[j].row, off);
        a[j].key = desc ? ~k : k;
    }
    if (radix_sort(a, tmp, n) != 0)
        return -1;
    int64_t s = 0;
    while (s < n) {
        int64_t e = s + 1;
        while (e < n && a[e].key == a[s].key)
            e++;
        bool same = true;
        size_t maxlen = 0, len;
        for (int64_t j = s; j < e; j++) {
            dcol_str(c, a[j].row, &len);
            maxlen = len > maxlen ? len : maxlen;
            same = same && (j == s || dcol_compare_rows(c, a[s].row, c, a[j].row) == 0);
        }
        if (!same && (e - s <= SMALL_SORT || off + 8 >= maxlen)) {
            int64_t *rows = (int64_t *)(void *)(tmp + s), *scratch = rows + (e - s);
            for (int64_t j = s; j < e; j++)
                rows[j - s] = a[j].row;
            merge_sort_rows(rows, scratch, e - s, c, desc);
            for (int64_t j = s; j < e; j++)
                a[j].row = rows[j - s];
        } else if (!same && sort_strings(a + s, tmp + s, e - s, c, desc, off + 8) != 0) {
            return -1;
        }
        s = e;
    }
    return 0;
}

int dsort_argsort(const dsort_key_t *keys, int nkeys, int64_t nrows, int64_t *idx)
{
    for (int64_t i = 0; i < nrows; i++)
        idx[i] = i;
    for (int k = 0; k < nkeys; k++)
        if (!dsort_supported(keys[k].col->type))
            return -1;
    if (nrows < 2 || nkeys == 0)
        return 0;
    int rc = -1;
    kv_t *a = malloc((size_t)nrows * sizeof(*a));
    kv_t *tmp = malloc((size_t)nrows * sizeof(*tmp));
    if (a == NULL || tmp == NULL)
        goto out;
    for (int k = nkeys - 1; k >= 0; k--) {
        const dcol_t *c = keys[k].col;
        extract_keys(c, keys[k].descending, idx, nrows, a);
        int rc = c->type == DCOL_STRING ? sort_strings(a, tmp, nrows, c, keys[k].descending, 0)
                                        : radix_sort(a, tmp, nrows);
        if (rc != 0)
            goto out;
        for (int64_t j = 0; j < nrows; j++)
            idx[j] = a[j].row;
    }
    rc = 0;
out:
    free(a);
    free(tmp);
    return rc;
}
