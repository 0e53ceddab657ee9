/* The xgboost plugin's layouts of Data columns for libxgboost (frame.c): one block is read in
 * place, several are gathered, tensor columns become a dense matrix or per-feature buffers; bad
 * columns are refused with their names. Also the parsing of libxgboost's evaluation text. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "luray/errors.h"
#include "xgboost/eval_text.h"
#include "xgboost/frame.h"

static dcol_t col_f64(double *v, int64_t n)
{
    return (dcol_t){.type = DCOL_FLOAT64, .len = n, .data = v, .nbytes = (size_t)n * 8};
}

static dcol_t col_i64(int64_t *v, int64_t n)
{
    return (dcol_t){.type = DCOL_INT64, .len = n, .data = v, .nbytes = (size_t)n * 8};
}

static dcol_t col_bool(uint8_t *v, int64_t n)
{
    return (dcol_t){.type = DCOL_BOOL, .len = n, .data = v, .nbytes = (size_t)n};
}

static dcol_t col_tensor(float *v, int64_t n, int64_t width)
{
    return (dcol_t){.type = DCOL_TENSOR, .len = n, .ndim = 1, .shape = {width}, .data = v,
                    .nbytes = (size_t)(n * width) * 4};
}

static void test_one_block_in_place(void **state)
{
    double a[3] = {1.5, NAN, 3};
    int64_t b[3] = {7, 8, 9};
    uint8_t c[3] = {1, 0, 1};
    dcol_t ca = col_f64(a, 3), cb = col_i64(b, 3), cc = col_bool(c, 3);
    const dcol_t *cols[] = {&ca, &cb, &cc};
    const char *names[] = {"a", "b", "c"};
    xgb_frame_t f;
    char err[256];
    assert_int_equal(xgb_frame_init(&f, cols, names, 1, 3, err, sizeof(err)), 0);
    assert_int_equal(f.kind, XGB_FRAME_COLUMNS);
    assert_int_equal(f.nrows, 3);
    assert_int_equal(f.nfeat, 3);
    /* No copy: the pointers are the columns' own buffers. */
    assert_ptr_equal(f.cols[0], a);
    assert_ptr_equal(f.cols[1], b);
    assert_ptr_equal(f.cols[2], c);
    assert_string_equal(f.stypes[0], "float64");
    assert_string_equal(f.stypes[1], "int64");
    assert_string_equal(f.stypes[2], "bool8");
    assert_string_equal(f.names[2], "c");
    assert_int_equal(f.nowned, 0);
    xgb_frame_close(&f);
}

static void test_blocks_gathered(void **state)
{
    double a1[2] = {1, 2}, a2[3] = {3, 4, 5};
    uint8_t b1[2] = {1, 0}, b2[3] = {0, 1, 1};
    dcol_t ca1 = col_f64(a1, 2), cb1 = col_bool(b1, 2), ca2 = col_f64(a2, 3), cb2 = col_bool(b2, 3);
    const dcol_t *cols[] = {&ca1, &cb1, &ca2, &cb2};
    const char *names[] = {"a", "b"};
    xgb_frame_t f;
    char err[256];
    assert_int_equal(xgb_frame_init(&f, cols, names, 2, 2, err, sizeof(err)), 0);
    assert_int_equal(f.kind, XGB_FRAME_COLUMNS);
    assert_int_equal(f.nrows, 5);
    const double *ga = f.cols[0];
    const uint8_t *gb = f.cols[1];
    const uint8_t want[5] = {1, 0, 0, 1, 1};
    for (int i = 0; i < 5; i++)
        assert_true(ga[i] == (double)(i + 1));
    assert_memory_equal(gb, want, sizeof(want));
    xgb_frame_close(&f);
}

static void test_tensor_dense(void **state)
{
    float x1[6] = {1, 2, 3, 4, 5, 6}, x2[3] = {7, 8, 9};
    dcol_t c1 = col_tensor(x1, 2, 3), c2 = col_tensor(x2, 1, 3);
    const dcol_t *one[] = {&c1};
    const char *names[] = {"x"};
    xgb_frame_t f;
    char err[256];
    assert_int_equal(xgb_frame_init(&f, one, names, 1, 1, err, sizeof(err)), 0);
    assert_int_equal(f.kind, XGB_FRAME_DENSE);
    assert_ptr_equal(f.dense, x1);
    assert_int_equal(f.nfeat, 3);
    assert_string_equal(f.names[0], "x_0");
    assert_string_equal(f.names[2], "x_2");
    xgb_frame_close(&f);

    const dcol_t *two[] = {&c1, &c2};
    assert_int_equal(xgb_frame_init(&f, two, names, 2, 1, err, sizeof(err)), 0);
    assert_int_equal(f.kind, XGB_FRAME_DENSE);
    assert_int_equal(f.nrows, 3);
    for (int i = 0; i < 9; i++)
        assert_true(f.dense[i] == (float)(i + 1));
    xgb_frame_close(&f);
}

static void test_tensor_mixed(void **state)
{
    float x[4] = {1, 2, 3, 4};
    int64_t k[2] = {10, 20};
    dcol_t cx = col_tensor(x, 2, 2), ck = col_i64(k, 2);
    const dcol_t *cols[] = {&ck, &cx};
    const char *names[] = {"k", "x"};
    xgb_frame_t f;
    char err[256];
    assert_int_equal(xgb_frame_init(&f, cols, names, 1, 2, err, sizeof(err)), 0);
    assert_int_equal(f.kind, XGB_FRAME_COLUMNS);
    assert_int_equal(f.nfeat, 3);
    assert_ptr_equal(f.cols[0], k);
    assert_string_equal(f.stypes[1], "float32");
    const float *x0 = f.cols[1], *x1 = f.cols[2];
    assert_true(x0[0] == 1 && x0[1] == 3 && x1[0] == 2 && x1[1] == 4);
    assert_string_equal(f.names[0], "k");
    assert_string_equal(f.names[1], "x_0");
    assert_string_equal(f.names[2], "x_1");
    xgb_frame_close(&f);
}

static void test_bad_columns(void **state)
{
    double a[2] = {1, 2}, a3[3] = {1, 2, 3};
    int64_t i2[2] = {1, 2};
    char bytes[] = "ab";
    int64_t offsets[3] = {0, 1, 2};
    dcol_t ca = col_f64(a, 2), ca3 = col_f64(a3, 3), ci = col_i64(i2, 2);
    dcol_t cs = {.type = DCOL_STRING, .len = 2, .data = bytes, .offsets = offsets, .nbytes = 2};
    xgb_frame_t f;
    char err[256];
    const char *names[] = {"a", "s"};

    const dcol_t *strs[] = {&ca, &cs};
    assert_int_equal(xgb_frame_init(&f, strs, names, 1, 2, err, sizeof(err)), LURAY_EINVAL);
    assert_non_null(strstr(err, "\"s\" is a string column"));

    const dcol_t *lens[] = {&ca, &ca3};
    assert_int_equal(xgb_frame_init(&f, lens, names, 1, 2, err, sizeof(err)), LURAY_EINVAL);
    assert_non_null(strstr(err, "has 3 rows"));

    const dcol_t *types[] = {&ca, &ci};
    assert_int_equal(xgb_frame_init(&f, types, names, 2, 1, err, sizeof(err)), LURAY_EINVAL);
    assert_non_null(strstr(err, "block 2"));

    dcol_t empty = col_f64(NULL, 0);
    const dcol_t *none[] = {&empty};
    assert_int_equal(xgb_frame_init(&f, none, names, 1, 1, err, sizeof(err)), LURAY_EINVAL);
    assert_non_null(strstr(err, "no rows"));
}

static void test_floats_gather(void **state)
{
    int64_t i[2] = {0, 3};
    uint8_t b[2] = {1, 0};
    double d[1] = {0.5};
    dcol_t ci = col_i64(i, 2), cb = col_bool(b, 2), cd = col_f64(d, 1);
    const dcol_t *cols[] = {&ci, &cb, &cd};
    float *v;
    int64_t n;
    char err[256];
    assert_int_equal(xgb_floats_gather(cols, 3, "label", &v, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 5);
    float want[5] = {0, 3, 1, 0, 0.5f};
    assert_memory_equal(v, want, sizeof(want));
    free(v);

    float t[4] = {1, 2, 3, 4};
    dcol_t wide = col_tensor(t, 2, 2);
    const dcol_t *bad[] = {&wide};
    assert_int_equal(xgb_floats_gather(bad, 1, "label", &v, &n, err, sizeof(err)), LURAY_EINVAL);
    assert_non_null(strstr(err, "label column"));
}

static void test_array_interface(void **state)
{
    char buf[256];
    assert_int_equal(xgb_array_interface(buf, sizeof(buf), (void *)(uintptr_t)4096, 10, 3, 12, 4,
                                         "<f4"),
                     0);
    assert_string_equal(buf, "{\"data\": [4096, true], \"shape\": [10, 3], \"strides\": [12, 4], "
                             "\"typestr\": \"<f4\", \"version\": 3}");
    assert_int_equal(xgb_array_interface(buf, 16, NULL, 1, 1, 4, 4, "<f4"), LURAY_ETOOBIG);
}

typedef struct {
    int n;
    int set[8];
    char metric[8][32];
    double value[8];
} fields_t;

static int collect(void *ctx, int set, const char *metric, size_t len, double value)
{
    fields_t *f = ctx;
    f->set[f->n] = set;
    snprintf(f->metric[f->n], sizeof(f->metric[0]), "%.*s", (int)len, metric);
    f->value[f->n++] = value;
    return 0;
}

static void test_eval_parse(void **state)
{
    const char *sets[] = {"train", "my", "my-set"};
    fields_t f = {0};
    char err[256];
    int n = xgb_eval_parse("[3]\ttrain-logloss:0.5\ttrain-error@0.7:0.25\tmy-set-ndcg@5-:0.9\t"
                           "my-auc:nan\n",
                           sets, 3, collect, &f, err, sizeof(err));
    assert_int_equal(n, 4);
    assert_int_equal(f.set[0], 0);
    assert_string_equal(f.metric[0], "logloss");
    assert_true(f.value[0] == 0.5);
    assert_string_equal(f.metric[1], "error@0.7");
    assert_true(f.value[1] == 0.25);
    assert_int_equal(f.set[2], 2); /* the longest name that fits */
    assert_string_equal(f.metric[2], "ndcg@5-");
    assert_int_equal(f.set[3], 1);
    assert_true(isnan(f.value[3]));

    fields_t g = {0};
    assert_int_equal(xgb_eval_parse("[0]\tother-rmse:1", sets, 3, collect, &g, err, sizeof(err)),
                     LURAY_EPROTO);
    assert_non_null(strstr(err, "other-rmse"));
    assert_int_equal(xgb_eval_parse("[0]\ttrain-rmse:x1", sets, 3, collect, &g, err, sizeof(err)),
                     LURAY_EPROTO);
    assert_int_equal(xgb_eval_parse("[0]", sets, 3, collect, &g, err, sizeof(err)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_block_in_place),
        cmocka_unit_test(test_blocks_gathered),
        cmocka_unit_test(test_tensor_dense),
        cmocka_unit_test(test_tensor_mixed),
        cmocka_unit_test(test_bad_columns),
        cmocka_unit_test(test_floats_gather),
        cmocka_unit_test(test_array_interface),
        cmocka_unit_test(test_eval_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
