/* Unit tests of the data plugin's row kernels: take/filter/slice/concat/copy, row hashing and
 * comparison, the stable multi-key sort, partitioning, shuffling, sampling and group-by (partial
 * states, their combine, and agreement with a direct computation). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include "data/block_group.h"
#include "data/block_part.h"
#include "data/block_sort.h"
#include "data/dcol.h"
#include "data/dcol_ops.h"

/* ---- helpers ---- */

static void make_i64(dcol_t *c, const int64_t *v, int64_t n)
{
    dcol_builder_t b;
    assert_int_equal(dcol_builder_init(&b, DCOL_INT64, 0, NULL), 0);
    for (int64_t i = 0; i < n; i++)
        assert_int_equal(dcol_append_i64(&b, v[i]), 0);
    dcol_builder_finish(&b, c);
}

static void make_f64(dcol_t *c, const double *v, int64_t n)
{
    dcol_builder_t b;
    assert_int_equal(dcol_builder_init(&b, DCOL_FLOAT64, 0, NULL), 0);
    for (int64_t i = 0; i < n; i++)
        assert_int_equal(dcol_append_f64(&b, v[i]), 0);
    dcol_builder_finish(&b, c);
}

static void make_str(dcol_t *c, const char *const *v, int64_t n)
{
    dcol_builder_t b;
    assert_int_equal(dcol_builder_init(&b, DCOL_STRING, 0, NULL), 0);
    for (int64_t i = 0; i < n; i++)
        assert_int_equal(dcol_append_str(&b, v[i], strlen(v[i])), 0);
    dcol_builder_finish(&b, c);
}

static void assert_str_at(const dcol_t *c, int64_t i, const char *want)
{
    size_t len;
    const char *s = dcol_str(c, i, &len);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(s, want, len);
}

/* The pointer array the combine kernels take, over an array of state columns. */
static const dcol_t *const *ptrs(dcol_t *cols, const dcol_t **out)
{
    for (int f = 0; f < DAGG_MAX_STATE; f++)
        out[f] = &cols[f];
    return out;
}

static uint64_t rng_state = 12345;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static const char *const words[] = {"apple", "apple pie", "apple pie!", "b", "", "ab", "abc",
                                    "zebra crossing", "zebra", "m"};
#define NWORDS 10

/* ---- kernels ---- */

static void test_take_filter_slice(void **state)
{
    (void)state;
    int64_t iv[] = {10, 20, 30, 40};
    const char *sv[] = {"a", "bb", "", "dddd"};
    dcol_t ci, cs, out;
    make_i64(&ci, iv, 4);
    make_str(&cs, sv, 4);

    int64_t idx[] = {3, 0, 3};
    assert_int_equal(dcol_take(&ci, idx, 3, &out), 0);
    assert_int_equal(out.len, 3);
    assert_int_equal(((int64_t *)out.data)[0], 40);
    assert_int_equal(((int64_t *)out.data)[2], 40);
    dcol_free(&out);
    assert_int_equal(dcol_take(&cs, idx, 3, &out), 0);
    assert_str_at(&out, 0, "dddd");
    assert_str_at(&out, 1, "a");
    assert_int_equal(out.offsets[0], 0);
    dcol_free(&out);
    assert_int_equal(dcol_take(&cs, idx, 0, &out), 0);
    assert_int_equal(out.len, 0);
    assert_non_null(out.data);
    dcol_free(&out);

    uint8_t mask[] = {0, 1, 1, 0};
    assert_int_equal(dcol_filter(&cs, mask, &out), 0);
    assert_int_equal(out.len, 2);
    assert_str_at(&out, 0, "bb");
    assert_str_at(&out, 1, "");
    dcol_free(&out);
    assert_int_equal(dcol_filter(&ci, mask, &out), 0);
    assert_int_equal(((int64_t *)out.data)[1], 30);
    dcol_free(&out);

    dcol_t view, view2;
    dcol_slice_view(&cs, 1, 3, &view);
    assert_int_equal(view.len, 3);
    assert_null(view.owned_data);
    assert_str_at(&view, 0, "bb");
    assert_str_at(&view, 2, "dddd");
    dcol_slice_view(&view, 2, 1, &view2);
    assert_str_at(&view2, 0, "dddd");
    /* A copy of a view starts its offsets at 0 again. */
    assert_int_equal(dcol_copy(&view, &out), 0);
    assert_int_equal(out.offsets[0], 0);
    assert_int_equal(out.offsets[3], 6);
    assert_str_at(&out, 2, "dddd");
    dcol_free(&out);
    dcol_slice_view(&ci, 2, 2, &view);
    assert_int_equal(((int64_t *)view.data)[0], 30);

    dcol_free(&ci);
    dcol_free(&cs);
}

static void test_concat(void **state)
{
    (void)state;
    int64_t iv[] = {1, 2};
    double fv[] = {2.5};
    const char *sv[] = {"x", "yy", "zzz"};
    dcol_t ci, cf, cs, out;
    char err[128];
    make_i64(&ci, iv, 2);
    make_f64(&cf, fv, 1);
    make_str(&cs, sv, 3);

    const dcol_t *num[] = {&ci, &cf, &ci};
    assert_int_equal(dcol_concat(num, 3, &out, err, sizeof(err)), 0);
    assert_int_equal(out.type, DCOL_FLOAT64);
    assert_int_equal(out.len, 5);
    assert_true(((double *)out.data)[2] == 2.5);
    assert_true(((double *)out.data)[4] == 2.0);
    dcol_free(&out);

    dcol_t v1, v2;
    dcol_slice_view(&cs, 1, 2, &v1);
    dcol_slice_view(&cs, 0, 1, &v2);
    const dcol_t *strs[] = {&v1, &v2};
    assert_int_equal(dcol_concat(strs, 2, &out, err, sizeof(err)), 0);
    assert_int_equal(out.len, 3);
    assert_str_at(&out, 0, "yy");
    assert_str_at(&out, 1, "zzz");
    assert_str_at(&out, 2, "x");
    dcol_free(&out);

    const dcol_t *bad[] = {&ci, &cs};
    assert_int_equal(dcol_concat(bad, 2, &out, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "int64 and string"));

    /* tensor rows of different shapes do not mix */
    dcol_builder_t tb;
    int64_t s2[] = {2}, s3[] = {3};
    float row[3] = {1, 2, 3};
    dcol_t t2, t3;
    assert_int_equal(dcol_builder_init(&tb, DCOL_TENSOR, 1, s2), 0);
    assert_int_equal(dcol_append_row_f32(&tb, row), 0);
    dcol_builder_finish(&tb, &t2);
    assert_int_equal(dcol_builder_init(&tb, DCOL_TENSOR, 1, s3), 0);
    assert_int_equal(dcol_append_row_f32(&tb, row), 0);
    dcol_builder_finish(&tb, &t3);
    const dcol_t *tens[] = {&t2, &t3};
    assert_int_equal(dcol_concat(tens, 2, &out, err, sizeof(err)), -1);
    const dcol_t *same[] = {&t2, &t2};
    assert_int_equal(dcol_concat(same, 2, &out, err, sizeof(err)), 0);
    assert_int_equal(out.len, 2);
    assert_true(((float *)out.data)[3] == 2.0f);
    dcol_free(&out);

    dcol_free(&t2);
    dcol_free(&t3);
    dcol_free(&ci);
    dcol_free(&cf);
    dcol_free(&cs);
}

static void test_hash_compare(void **state)
{
    (void)state;
    double fv[] = {0.0, -0.0, NAN, -NAN, 1.0, INFINITY};
    dcol_t cf;
    make_f64(&cf, fv, 6);
    assert_true(dcol_hash_row(&cf, 0, 7) == dcol_hash_row(&cf, 1, 7));
    assert_true(dcol_hash_row(&cf, 2, 7) == dcol_hash_row(&cf, 3, 7));
    assert_true(dcol_hash_row(&cf, 0, 7) != dcol_hash_row(&cf, 4, 7));
    assert_int_equal(dcol_compare_rows(&cf, 0, &cf, 1), 0);
    assert_int_equal(dcol_compare_rows(&cf, 2, &cf, 3), 0);
    assert_int_equal(dcol_compare_rows(&cf, 5, &cf, 2), -1); /* inf before NaN */
    assert_int_equal(dcol_compare_rows(&cf, 2, &cf, 4), 1);

    const char *sv[] = {"ab", "abc", "ab", "b"};
    dcol_t cs;
    make_str(&cs, sv, 4);
    assert_true(dcol_hash_row(&cs, 0, 1) == dcol_hash_row(&cs, 2, 1));
    assert_true(dcol_hash_row(&cs, 0, 1) != dcol_hash_row(&cs, 1, 1));
    assert_int_equal(dcol_compare_rows(&cs, 0, &cs, 1), -1);
    assert_int_equal(dcol_compare_rows(&cs, 3, &cs, 1), 1);
    /* The same value through a view hashes alike. */
    dcol_t view;
    dcol_slice_view(&cs, 2, 2, &view);
    assert_true(dcol_hash_row(&view, 0, 1) == dcol_hash_row(&cs, 0, 1));

    /* Stable across runs and machines: partitions depend on these exact values. */
    int64_t iv[] = {42};
    const char *abc[] = {"abc"};
    dcol_t ci, cabc;
    make_i64(&ci, iv, 1);
    make_str(&cabc, abc, 1);
    assert_true(dcol_hash_row(&ci, 0, 0) == 0xca56b8d3809d285cull);
    assert_true(dcol_hash_row(&cabc, 0, 0) == 0xcf9a24ba7f71354dull);
    dcol_free(&cabc);
    dcol_free(&ci);
    dcol_free(&cs);
    dcol_free(&cf);
}

/* ---- sort ---- */

/* A reference: stable insertion sort with the comparison the kernel must agree with. */
static int ref_cmp(const dsort_key_t *keys, int nk, int64_t x, int64_t y)
{
    for (int k = 0; k < nk; k++) {
        const dcol_t *c = keys[k].col;
        int r = dcol_compare_rows(c, x, c, y);
        if (r == 0)
            continue;
        bool xnan = c->type == DCOL_FLOAT64 && isnan(((double *)c->data)[x]);
        bool ynan = c->type == DCOL_FLOAT64 && isnan(((double *)c->data)[y]);
        if (keys[k].descending && !xnan && !ynan)
            r = -r; /* NaN stays last when descending */
        return r;
    }
    return 0;
}

static void ref_argsort(const dsort_key_t *keys, int nk, int64_t n, int64_t *idx)
{
    for (int64_t i = 0; i < n; i++) {
        int64_t j = i;
        while (j > 0 && ref_cmp(keys, nk, idx[j - 1], i) > 0) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = i;
    }
}

static void check_sort(const dsort_key_t *keys, int nk, int64_t n)
{
    int64_t *got = malloc((size_t)n * sizeof(*got)), *want = malloc((size_t)n * sizeof(*want));
    assert_int_equal(dsort_argsort(keys, nk, n, got), 0);
    ref_argsort(keys, nk, n, want);
    assert_memory_equal(got, want, (size_t)n * sizeof(*got));
    free(got);
    free(want);
}

static void test_sort(void **state)
{
    (void)state;
    enum { N = 3000 };
    int64_t *iv = malloc(N * sizeof(*iv));
    double *fv = malloc(N * sizeof(*fv));
    const char **sv = malloc(N * sizeof(*sv));
    for (int i = 0; i < N; i++) {
        iv[i] = (int64_t)(rnd() % 50) - 25;
        if (i % 7 == 0)
            iv[i] = (int64_t)rnd(); /* wide values too */
        fv[i] = (double)(int64_t)(rnd() % 100) / 8.0 - 6.0;
        if (i % 11 == 0)
            fv[i] = NAN;
        if (i % 13 == 0)
            fv[i] = -0.0;
        sv[i] = words[rnd() % NWORDS];
    }
    dcol_t ci, cf, cs;
    make_i64(&ci, iv, N);
    make_f64(&cf, fv, N);
    make_str(&cs, sv, N);

    for (int desc = 0; desc < 2; desc++) {
        dsort_key_t k1[] = {{&ci, desc}};
        check_sort(k1, 1, N);
        dsort_key_t k2[] = {{&cf, desc}};
        check_sort(k2, 1, N);
        dsort_key_t k3[] = {{&cs, desc}};
        check_sort(k3, 1, N);
        dsort_key_t k4[] = {{&cs, desc}, {&cf, !desc}, {&ci, false}};
        check_sort(k4, 3, N);
        check_sort(k1, 1, 20); /* the small-input path */
        check_sort(k3, 1, 20);
    }
    /* Ascending float order, NaN at the end. */
    int64_t *idx = malloc(N * sizeof(*idx));
    dsort_key_t kf[] = {{&cf, false}};
    assert_int_equal(dsort_argsort(kf, 1, N, idx), 0);
    assert_true(isnan(fv[idx[N - 1]]));
    assert_false(isnan(fv[idx[0]]));
    dsort_key_t kd[] = {{&cf, true}};
    assert_int_equal(dsort_argsort(kd, 1, N, idx), 0);
    assert_true(isnan(fv[idx[N - 1]]));
    assert_true(fv[idx[0]] >= fv[idx[1]]);

    /* Strings tying on long prefixes, and strings that differ only in trailing NUL bytes. */
    dcol_builder_t b;
    dcol_t cl, cz;
    char text[64];
    assert_int_equal(dcol_builder_init(&b, DCOL_STRING, 0, NULL), 0);
    for (int i = 0; i < 700; i++) {
        int len = snprintf(text, sizeof(text), "a rather long shared prefix/%d", (int)(rnd() % 90));
        assert_int_equal(dcol_append_str(&b, text, (size_t)len), 0);
    }
    dcol_builder_finish(&b, &cl);
    assert_int_equal(dcol_builder_init(&b, DCOL_STRING, 0, NULL), 0);
    static const char nul_text[] = "ab\0\0";
    static const size_t nul_len[] = {4, 2, 3, 1, 0};
    for (int i = 0; i < 200; i++)
        assert_int_equal(dcol_append_str(&b, nul_text, nul_len[rnd() % 5]), 0);
    dcol_builder_finish(&b, &cz);
    for (int desc = 0; desc < 2; desc++) {
        dsort_key_t kl[] = {{&cl, desc}};
        check_sort(kl, 1, cl.len);
        dsort_key_t kz[] = {{&cz, desc}};
        check_sort(kz, 1, cz.len);
    }
    dcol_free(&cl);
    dcol_free(&cz);

    /* A tensor key is refused. */
    dcol_t t = {.type = DCOL_TENSOR};
    dsort_key_t kt[] = {{&t, false}};
    assert_int_equal(dsort_argsort(kt, 1, 0, idx), -1);

    free(idx);
    free(iv);
    free(fv);
    free(sv);
    dcol_free(&ci);
    dcol_free(&cf);
    dcol_free(&cs);
}

/* ---- partitions ---- */

/* Scattering row numbers by part: every row appears in exactly one part, the right one, in
 * input order within the part. */
static void check_parts(const uint32_t *part, int64_t n, uint32_t np)
{
    int64_t *ids = malloc((size_t)n * sizeof(*ids)), *start = malloc((np + 1) * 8);
    uint8_t *seen = calloc((size_t)n, 1);
    for (int64_t i = 0; i < n; i++)
        ids[i] = i;
    dcol_t col, *outs = calloc(np, sizeof(*outs));
    dcol_t **op = malloc(np * sizeof(*op));
    make_i64(&col, ids, n);
    dpart_count(part, n, np, start);
    assert_int_equal(start[0], 0);
    assert_int_equal(start[np], n);
    for (uint32_t p = 0; p < np; p++)
        op[p] = &outs[p];
    assert_int_equal(dpart_scatter(&col, part, start, np, op), 0);
    for (uint32_t p = 0; p < np; p++) {
        const int64_t *v = outs[p].data;
        assert_int_equal(outs[p].len, start[p + 1] - start[p]);
        for (int64_t j = 0; j < outs[p].len; j++) {
            assert_int_equal(part[v[j]], p);
            assert_false(seen[v[j]]);
            seen[v[j]] = 1;
            if (j > 0)
                assert_true(v[j] > v[j - 1]);
        }
        dcol_free(&outs[p]);
    }
    dcol_free(&col);
    free(op);
    free(outs);
    free(ids);
    free(start);
    free(seen);
}

static void test_scatter_types(void **state)
{
    (void)state;
    const char *sv[] = {"zero", "", "two", "three!"};
    uint32_t part[] = {1, 0, 1, 2};
    int64_t start[4];
    dcol_t cs, outs[3], *op[] = {&outs[0], &outs[1], &outs[2]};
    make_str(&cs, sv, 4);
    dpart_count(part, 4, 3, start);
    assert_int_equal(dpart_scatter(&cs, part, start, 3, op), 0);
    assert_int_equal(outs[0].len, 1);
    assert_str_at(&outs[0], 0, "");
    assert_str_at(&outs[1], 0, "zero");
    assert_str_at(&outs[1], 1, "two");
    assert_str_at(&outs[2], 0, "three!");
    for (int p = 0; p < 3; p++)
        dcol_free(&outs[p]);

    dcol_builder_t tb;
    int64_t shape[] = {2};
    dcol_t ct;
    assert_int_equal(dcol_builder_init(&tb, DCOL_TENSOR, 1, shape), 0);
    for (int i = 0; i < 4; i++) {
        float row[2] = {(float)i, (float)-i};
        assert_int_equal(dcol_append_row_f32(&tb, row), 0);
    }
    dcol_builder_finish(&tb, &ct);
    assert_int_equal(dpart_scatter(&ct, part, start, 3, op), 0);
    assert_int_equal(outs[1].ndim, 1);
    assert_int_equal(outs[1].shape[0], 2);
    assert_true(((float *)outs[1].data)[2] == 2.0f);
    assert_true(((float *)outs[1].data)[3] == -2.0f);
    for (int p = 0; p < 3; p++)
        dcol_free(&outs[p]);
    dcol_free(&ct);
    dcol_free(&cs);
}

static void test_partitions(void **state)
{
    (void)state;
    enum { N = 5000 };
    int64_t *iv = malloc(N * sizeof(*iv));
    const char **sv = malloc(N * sizeof(*sv));
    for (int i = 0; i < N; i++) {
        iv[i] = (int64_t)(rnd() % 300);
        sv[i] = words[i % NWORDS];
    }
    dcol_t ci, cs;
    make_i64(&ci, iv, N);
    make_str(&cs, sv, N);
    uint32_t *part = malloc(N * sizeof(*part));

    const dcol_t *keys[] = {&ci, &cs};
    dpart_hash(keys, 2, N, 8, part);
    check_parts(part, N, 8);
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N && j < i + 40; j++)
            if (iv[i] == iv[j] && strcmp(sv[i], sv[j]) == 0)
                assert_int_equal(part[i], part[j]);
    int64_t counts[8] = {0};
    for (int i = 0; i < N; i++)
        counts[part[i]]++;
    for (int p = 0; p < 8; p++)
        assert_true(counts[p] > N / 16); /* spread, not piled up */

    dpart_random(N, 5, 99, part);
    check_parts(part, N, 5);
    uint32_t *again = malloc(N * sizeof(*again));
    dpart_random(N, 5, 99, again);
    assert_memory_equal(part, again, N * sizeof(*part));
    free(again);

    /* bounds: ascending parts hold b[j-1] < key <= b[j] */
    double bv[] = {49.5, 100, 200};
    dcol_t bf;
    make_f64(&bf, bv, 3);
    assert_int_equal(dpart_bounds(&ci, &bf, false, part), 0);
    check_parts(part, N, 4);
    for (int i = 0; i < N; i++) {
        uint32_t want = iv[i] <= 49 ? 0 : iv[i] <= 100 ? 1 : iv[i] <= 200 ? 2 : 3;
        assert_int_equal(part[i], want);
    }
    assert_int_equal(dpart_bounds(&ci, &bf, true, part), 0);
    for (int i = 0; i < N; i++) {
        uint32_t want = iv[i] <= 49 ? 3 : iv[i] <= 100 ? 2 : iv[i] <= 200 ? 1 : 0;
        assert_int_equal(part[i], want);
    }
    const char *sb[] = {"apple pie", "m"};
    dcol_t bs;
    make_str(&bs, sb, 2);
    assert_int_equal(dpart_bounds(&cs, &bs, false, part), 0);
    for (int i = 0; i < N; i++) {
        int c1 = strcmp(sv[i], "apple pie"), c2 = strcmp(sv[i], "m");
        assert_int_equal(part[i], c1 <= 0 ? 0 : c2 <= 0 ? 1 : 2);
    }
    assert_int_equal(dpart_bounds(&cs, &bf, false, part), -1); /* strings need string bounds */
    /* NaN keys go to the last part */
    double fk[] = {NAN, 1, 1000};
    dcol_t cfk;
    make_f64(&cfk, fk, 3);
    assert_int_equal(dpart_bounds(&cfk, &bf, false, part), 0);
    assert_int_equal(part[0], 3);
    assert_int_equal(part[1], 0);
    assert_int_equal(dpart_bounds(&cfk, &bf, true, part), 0);
    assert_int_equal(part[0], 3);
    assert_int_equal(part[2], 0);

    free(part);
    free(iv);
    free(sv);
    dcol_free(&cfk);
    dcol_free(&bs);
    dcol_free(&bf);
    dcol_free(&ci);
    dcol_free(&cs);
}

static void test_shuffle_sample(void **state)
{
    (void)state;
    enum { N = 1000 };
    int64_t idx[N], other[N];
    uint8_t seen[N];
    dpart_shuffle(idx, N, 5);
    memset(seen, 0, sizeof(seen));
    int moved = 0;
    for (int i = 0; i < N; i++) {
        assert_false(seen[idx[i]]);
        seen[idx[i]] = 1;
        moved += idx[i] != i;
    }
    assert_true(moved > N / 2);
    dpart_shuffle(other, N, 5);
    assert_memory_equal(idx, other, sizeof(idx));
    dpart_shuffle(other, N, 6);
    assert_memory_not_equal(idx, other, sizeof(idx));

    int64_t got;
    assert_int_equal(dpart_sample(N, 50, 1, idx, &got), 0);
    assert_int_equal(got, 50);
    for (int i = 1; i < got; i++)
        assert_true(idx[i] > idx[i - 1]); /* distinct, in row order */
    assert_true(idx[got - 1] < N);
    assert_int_equal(dpart_sample(10, 50, 1, idx, &got), 0);
    assert_int_equal(got, 10);
    assert_int_equal(idx[9], 9);
    assert_int_equal(dpart_sample(N, 0, 1, idx, &got), 0);
    assert_int_equal(got, 0);

    drng_t r;
    drng_seed(&r, 3);
    int hist[3] = {0};
    for (int i = 0; i < 30000; i++)
        hist[drng_below(&r, 3)]++;
    for (int b = 0; b < 3; b++)
        assert_true(hist[b] > 9000 && hist[b] < 11000);
}

/* ---- group-by ---- */

static void partial_block(const dcol_t *key, const dcol_t *x, const dagg_op_t *ops, int nops,
                          dcol_t *keys_out, dcol_t states[][DAGG_MAX_STATE])
{
    dgroup_t g;
    const dcol_t *keys[] = {key};
    assert_int_equal(dgroup_build(keys, 1, key->len, &g), 0);
    assert_int_equal(dcol_take(key, g.first, g.ngroups, keys_out), 0);
    for (int o = 0; o < nops; o++)
        assert_int_equal(dagg_partial(ops[o], ops[o] == DAGG_COUNT ? NULL : x, &g, states[o]),
                         0);
    dgroup_free(&g);
}

static void test_group_direct(void **state)
{
    (void)state;
    enum { N = 4000 };
    const char **sv = malloc(N * sizeof(*sv));
    double *xv = malloc(N * sizeof(*xv));
    for (int i = 0; i < N; i++) {
        sv[i] = words[rnd() % NWORDS];
        xv[i] = (double)(rnd() % 10000) / 100.0;
        if (i % 17 == 0)
            xv[i] = NAN;
    }
    dcol_t cs, cx;
    make_str(&cs, sv, N);
    make_f64(&cx, xv, N);
    dagg_op_t ops[] = {DAGG_COUNT, DAGG_SUM, DAGG_MEAN, DAGG_MIN, DAGG_MAX, DAGG_STD};
    enum { NOPS = 6 };
    dcol_t kout, st[NOPS][DAGG_MAX_STATE];
    partial_block(&cs, &cx, ops, NOPS, &kout, st);

    /* Finals straight from one partial: */
    dgroup_t g;
    const dcol_t *keys[] = {&kout};
    assert_int_equal(dgroup_build(keys, 1, kout.len, &g), 0);
    assert_int_equal(g.ngroups, NWORDS);
    dcol_t fin[NOPS];
    for (int o = 0; o < NOPS; o++) {
        const dcol_t *p[DAGG_MAX_STATE];
        assert_int_equal(dagg_combine(ops[o], ptrs(st[o], p), &g, &fin[o]), 0);
    }

    for (int64_t k = 0; k < kout.len; k++) {
        size_t klen;
        const char *key = dcol_str(&kout, k, &klen);
        int64_t cnt = 0, n = 0;
        double sum = 0, mn = INFINITY, mx = -INFINITY;
        for (int i = 0; i < N; i++) {
            if (strlen(sv[i]) != klen || memcmp(sv[i], key, klen) != 0)
                continue;
            cnt++;
            if (isnan(xv[i]))
                continue;
            n++;
            sum += xv[i];
            mn = fmin(mn, xv[i]);
            mx = fmax(mx, xv[i]);
        }
        double mean = sum / (double)n, m2 = 0;
        for (int i = 0; i < N; i++)
            if (strlen(sv[i]) == klen && memcmp(sv[i], key, klen) == 0 && !isnan(xv[i]))
                m2 += (xv[i] - mean) * (xv[i] - mean);
        assert_int_equal(((int64_t *)fin[0].data)[k], cnt);
        assert_true(fabs(((double *)fin[1].data)[k] - sum) < 1e-6);
        assert_true(fabs(((double *)fin[2].data)[k] - mean) < 1e-9);
        assert_true(((double *)fin[3].data)[k] == mn);
        assert_true(((double *)fin[4].data)[k] == mx);
        assert_true(fabs(((double *)fin[5].data)[k] - sqrt(m2 / (double)(n - 1))) < 1e-9);
    }
    for (int o = 0; o < NOPS; o++) {
        dcol_free(&fin[o]);
        for (int f = 0; f < DAGG_MAX_STATE; f++)
            dcol_free(&st[o][f]);
    }
    dgroup_free(&g);
    dcol_free(&kout);
    dcol_free(&cs);
    dcol_free(&cx);
    free(sv);
    free(xv);
}

/* Aggregating three slices and combining their partials equals aggregating the whole. */
static void test_group_combine(void **state)
{
    (void)state;
    enum { N = 3000, NOPS = 6 };
    int64_t *kv = malloc(N * sizeof(*kv)), *xv = malloc(N * sizeof(*xv));
    for (int i = 0; i < N; i++) {
        kv[i] = (int64_t)(rnd() % 37);
        xv[i] = (int64_t)(rnd() % 1000) - 500;
    }
    dcol_t ck, cx;
    make_i64(&ck, kv, N);
    make_i64(&cx, xv, N);
    dagg_op_t ops[NOPS] = {DAGG_COUNT, DAGG_SUM, DAGG_MEAN, DAGG_MIN, DAGG_MAX, DAGG_STD};

    /* whole */
    dcol_t kw, sw[NOPS][DAGG_MAX_STATE];
    partial_block(&ck, &cx, ops, NOPS, &kw, sw);
    /* three slices */
    int64_t cuts[] = {0, 700, 701, N};
    dcol_t kp[3], sp[3][NOPS][DAGG_MAX_STATE];
    for (int p = 0; p < 3; p++) {
        dcol_t vk, vx;
        dcol_slice_view(&ck, cuts[p], cuts[p + 1] - cuts[p], &vk);
        dcol_slice_view(&cx, cuts[p], cuts[p + 1] - cuts[p], &vx);
        partial_block(&vk, &vx, ops, NOPS, &kp[p], sp[p]);
    }
    char err[64];
    const dcol_t *kparts[] = {&kp[0], &kp[1], &kp[2]};
    dcol_t kall;
    assert_int_equal(dcol_concat(kparts, 3, &kall, err, sizeof(err)), 0);
    dgroup_t gw, gp;
    const dcol_t *kwk[] = {&kw}, *kak[] = {&kall};
    assert_int_equal(dgroup_build(kwk, 1, kw.len, &gw), 0);
    assert_int_equal(dgroup_build(kak, 1, kall.len, &gp), 0);
    assert_int_equal(gw.ngroups, gp.ngroups);

    for (int o = 0; o < NOPS; o++) {
        dagg_layout_t lay;
        assert_int_equal(dagg_layout(ops[o], DCOL_INT64, &lay, err, sizeof(err)), 0);
        dcol_t cat[DAGG_MAX_STATE];
        for (int f = 0; f < lay.n; f++) {
            const dcol_t *parts[] = {&sp[0][o][f], &sp[1][o][f], &sp[2][o][f]};
            assert_int_equal(dcol_concat(parts, 3, &cat[f], err, sizeof(err)), 0);
        }
        dcol_t fw, fp;
        const dcol_t *pw[DAGG_MAX_STATE], *pp[DAGG_MAX_STATE];
        assert_int_equal(dagg_combine(ops[o], ptrs(sw[o], pw), &gw, &fw), 0);
        assert_int_equal(dagg_combine(ops[o], ptrs(cat, pp), &gp, &fp), 0);
        assert_int_equal(fw.type, fp.type);
        for (int64_t k = 0; k < gw.ngroups; k++) {
            /* the same key's group in the combined grouping */
            int64_t j = 0;
            while (dcol_compare_rows(&kw, gw.first[k], &kall, gp.first[j]) != 0)
                j++;
            if (fw.type == DCOL_INT64)
                assert_int_equal(((int64_t *)fw.data)[k], ((int64_t *)fp.data)[j]);
            else
                assert_true(fabs(((double *)fw.data)[k] - ((double *)fp.data)[j]) < 1e-9);
        }
        dcol_free(&fw);
        dcol_free(&fp);
        for (int f = 0; f < lay.n; f++)
            dcol_free(&cat[f]);
    }
    /* int64 keeps its type: sum int64, min/max int64, mean/std float64 */
    assert_int_equal(sw[1][0].type, DCOL_INT64);
    assert_int_equal(sw[3][0].type, DCOL_INT64);

    for (int o = 0; o < NOPS; o++)
        for (int f = 0; f < DAGG_MAX_STATE; f++) {
            dcol_free(&sw[o][f]);
            for (int p = 0; p < 3; p++)
                dcol_free(&sp[p][o][f]);
        }
    for (int p = 0; p < 3; p++)
        dcol_free(&kp[p]);
    dgroup_free(&gw);
    dgroup_free(&gp);
    dcol_free(&kall);
    dcol_free(&kw);
    dcol_free(&ck);
    dcol_free(&cx);
    free(kv);
    free(xv);
}

static void test_group_edges(void **state)
{
    (void)state;
    char err[96];
    dagg_layout_t lay;
    assert_int_equal(dagg_layout(DAGG_SUM, DCOL_STRING, &lay, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "sum of a string column"));
    assert_int_equal(dagg_layout(DAGG_MIN, DCOL_STRING, &lay, err, sizeof(err)), 0);
    assert_int_equal(dagg_layout(DAGG_MAX, DCOL_TENSOR, &lay, err, sizeof(err)), -1);
    dagg_op_t op;
    assert_int_equal(dagg_op_parse("std", &op), 0);
    assert_int_equal(op, DAGG_STD);
    assert_int_equal(dagg_op_parse("median", &op), -1);

    /* No keys: one group; no rows and no keys: none. NaN keys group together. */
    double fv[] = {NAN, 1, NAN, -0.0, 0.0};
    dcol_t cf;
    make_f64(&cf, fv, 5);
    dgroup_t g;
    assert_int_equal(dgroup_build(NULL, 0, 5, &g), 0);
    assert_int_equal(g.ngroups, 1);
    dgroup_free(&g);
    assert_int_equal(dgroup_build(NULL, 0, 0, &g), 0);
    assert_int_equal(g.ngroups, 0);
    dcol_t st[DAGG_MAX_STATE], fin, none;
    const dcol_t *p[DAGG_MAX_STATE];
    dcol_slice_view(&cf, 0, 0, &none);
    assert_int_equal(dagg_partial(DAGG_STD, &none, &g, st), 0);
    assert_int_equal(dagg_empty(DAGG_STD, ptrs(st, p), &fin), 0);
    assert_int_equal(fin.len, 1);
    assert_true(isnan(((double *)fin.data)[0]));
    dcol_free(&fin);
    for (int f = 0; f < 3; f++)
        dcol_free(&st[f]);
    dgroup_free(&g);
    const dcol_t *keys[] = {&cf};
    assert_int_equal(dgroup_build(keys, 1, 5, &g), 0);
    assert_int_equal(g.ngroups, 3);
    assert_int_equal(g.gid[2], g.gid[0]);
    assert_int_equal(g.gid[4], g.gid[3]);
    dgroup_free(&g);

    /* Min of an all-NaN group is NaN; a group of strings keeps its min string. */
    double nv[] = {NAN, NAN};
    dcol_t cn;
    make_f64(&cn, nv, 2);
    assert_int_equal(dgroup_build(NULL, 0, 2, &g), 0);
    assert_int_equal(dagg_partial(DAGG_MIN, &cn, &g, st), 0);
    assert_true(isnan(((double *)st[0].data)[0]));
    dcol_free(&st[0]);
    const char *sv[] = {"pear", "fig"};
    dcol_t cs;
    make_str(&cs, sv, 2);
    assert_int_equal(dagg_partial(DAGG_MIN, &cs, &g, st), 0);
    assert_str_at(&st[0], 0, "fig");
    dcol_free(&st[0]);
    assert_int_equal(dagg_partial(DAGG_MAX, &cs, &g, st), 0);
    assert_str_at(&st[0], 0, "pear");
    dcol_free(&st[0]);
    dgroup_free(&g);
    dcol_free(&cs);
    dcol_free(&cn);
    dcol_free(&cf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_take_filter_slice), cmocka_unit_test(test_concat),
        cmocka_unit_test(test_hash_compare),      cmocka_unit_test(test_sort),
        cmocka_unit_test(test_partitions),        cmocka_unit_test(test_scatter_types),
        cmocka_unit_test(test_shuffle_sample),
        cmocka_unit_test(test_group_direct),      cmocka_unit_test(test_group_combine),
        cmocka_unit_test(test_group_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
