/* Unit tests of the data plugin's column math (plugins/data/column_math.c): every element-wise op
 * against hand-computed values, result types, NaN handling, errors, reductions and casts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include "data/column_math.h"
#include "data/dcol.h"

/* ---- helpers: small owned columns ---- */

static dcol_t col_f64(int64_t n, const double *v)
{
    dcol_t c = {.type = DCOL_FLOAT64, .len = n, .nbytes = (size_t)n * 8};
    c.data = c.owned_data = malloc(n > 0 ? (size_t)n * 8 : 1);
    assert_non_null(c.data);
    memcpy(c.data, v, (size_t)n * 8);
    return c;
}

static dcol_t col_i64(int64_t n, const int64_t *v)
{
    dcol_t c = {.type = DCOL_INT64, .len = n, .nbytes = (size_t)n * 8};
    c.data = c.owned_data = malloc(n > 0 ? (size_t)n * 8 : 1);
    assert_non_null(c.data);
    memcpy(c.data, v, (size_t)n * 8);
    return c;
}

static dcol_t col_bool(int64_t n, const uint8_t *v)
{
    dcol_t c = {.type = DCOL_BOOL, .len = n, .nbytes = (size_t)n};
    c.data = c.owned_data = malloc(n > 0 ? (size_t)n : 1);
    assert_non_null(c.data);
    memcpy(c.data, v, (size_t)n);
    return c;
}

static dcol_t col_str(int n, const char *const *v)
{
    dcol_builder_t b;
    dcol_t c;
    assert_int_equal(dcol_builder_init(&b, DCOL_STRING, 0, NULL), 0);
    for (int i = 0; i < n; i++)
        assert_int_equal(dcol_append_str(&b, v[i], strlen(v[i])), 0);
    dcol_builder_finish(&b, &c);
    return c;
}

static const double *F(const dcol_t *c)
{
    assert_int_equal(c->type, DCOL_FLOAT64);
    return c->data;
}

static const int64_t *I(const dcol_t *c)
{
    assert_int_equal(c->type, DCOL_INT64);
    return c->data;
}

static const uint8_t *B(const dcol_t *c)
{
    assert_int_equal(c->type, DCOL_BOOL);
    return c->data;
}

static void assert_str_row(const dcol_t *c, int64_t i, const char *want)
{
    size_t len;
    const char *s = dcol_str(c, i, &len);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(s, want, len);
}

/* |got - want| <= eps (this cmocka has no assert_double_equal). */
#define assert_near(got, want, eps) check_near((got), (want), (eps), __FILE__, __LINE__)

static void check_near(double got, double want, double eps, const char *file, int line)
{
    if (!(fabs(got - want) <= eps))
        fail_msg("%s:%d: got %.17g, want %.17g (within %g)", file, line, got, want, eps);
}

static void assert_contains(const char *text, const char *part)
{
    if (strstr(text, part) == NULL)
        fail_msg("\"%s\" does not contain \"%s\"", text, part);
}

/* ---- arithmetic ---- */

static void test_arith_f64(void **state)
{
    (void)state;
    const double xv[] = {1.5, -2.0, 7.5, -7.5, 0.0}, yv[] = {2.0, 4.0, 2.0, 2.0, 0.5};
    dcol_t x = col_f64(5, xv), y = col_f64(5, yv), z;
    dcol_operand_t a = dcol_operand_col(&x), b = dcol_operand_col(&y);
    char err[256];

    assert_int_equal(dcol_arith(DCOL_MUL, &a, &b, &z, err, sizeof(err)), 0);
    assert_int_equal(z.len, 5);
    const double mul[] = {3.0, -8.0, 15.0, -15.0, 0.0};
    assert_memory_equal(F(&z), mul, sizeof(mul));
    dcol_free(&z);

    assert_int_equal(dcol_arith(DCOL_ADD, &a, &b, &z, err, sizeof(err)), 0);
    const double add[] = {3.5, 2.0, 9.5, -5.5, 0.5};
    assert_memory_equal(F(&z), add, sizeof(add));
    dcol_free(&z);

    assert_int_equal(dcol_arith(DCOL_SUB, &a, &b, &z, err, sizeof(err)), 0);
    const double sub[] = {-0.5, -6.0, 5.5, -9.5, -0.5};
    assert_memory_equal(F(&z), sub, sizeof(sub));
    dcol_free(&z);

    assert_int_equal(dcol_arith(DCOL_DIV, &a, &b, &z, err, sizeof(err)), 0);
    const double div[] = {0.75, -0.5, 3.75, -3.75, 0.0};
    assert_memory_equal(F(&z), div, sizeof(div));
    dcol_free(&z);

    /* Lua semantics: floor division, remainder with the divisor's sign */
    assert_int_equal(dcol_arith(DCOL_IDIV, &a, &b, &z, err, sizeof(err)), 0);
    const double idiv[] = {0.0, -1.0, 3.0, -4.0, 0.0};
    assert_memory_equal(F(&z), idiv, sizeof(idiv));
    dcol_free(&z);

    assert_int_equal(dcol_arith(DCOL_MOD, &a, &b, &z, err, sizeof(err)), 0);
    const double mod[] = {1.5, 2.0, 1.5, 0.5, 0.0};
    assert_memory_equal(F(&z), mod, sizeof(mod));
    dcol_free(&z);

    assert_int_equal(dcol_arith(DCOL_POW, &a, &b, &z, err, sizeof(err)), 0);
    assert_near(F(&z)[0], 2.25, 0);
    assert_near(F(&z)[1], 16.0, 0);
    assert_near(F(&z)[4], 0.0, 0);
    dcol_free(&z);

    /* scalar on either side */
    dcol_operand_t two = dcol_operand_float(2.0);
    assert_int_equal(dcol_arith(DCOL_SUB, &two, &a, &z, err, sizeof(err)), 0);
    const double rsub[] = {0.5, 4.0, -5.5, 9.5, 2.0};
    assert_memory_equal(F(&z), rsub, sizeof(rsub));
    dcol_free(&z);
    assert_int_equal(dcol_arith(DCOL_DIV, &a, &two, &z, err, sizeof(err)), 0);
    assert_near(F(&z)[2], 3.75, 0);
    dcol_free(&z);

    /* float division by zero is IEEE, not an error */
    dcol_operand_t zero = dcol_operand_int(0);
    assert_int_equal(dcol_arith(DCOL_DIV, &a, &zero, &z, err, sizeof(err)), 0);
    assert_true(isinf(F(&z)[0]) && F(&z)[0] > 0);
    assert_true(isinf(F(&z)[1]) && F(&z)[1] < 0);
    assert_true(isnan(F(&z)[4]));
    dcol_free(&z);

    /* NaN propagates */
    const double nv[] = {NAN, 1.0};
    dcol_t nx = col_f64(2, nv);
    dcol_operand_t na = dcol_operand_col(&nx), one = dcol_operand_int(1);
    assert_int_equal(dcol_arith(DCOL_ADD, &na, &one, &z, err, sizeof(err)), 0);
    assert_true(isnan(F(&z)[0]));
    assert_near(F(&z)[1], 2.0, 0);
    dcol_free(&z);
    dcol_free(&nx);

    dcol_free(&x);
    dcol_free(&y);
}

static void test_arith_i64(void **state)
{
    (void)state;
    const int64_t xv[] = {7, -7, 7, -7, INT64_MAX, INT64_MIN};
    const int64_t yv[] = {2, 2, -2, -2, 1, -1};
    dcol_t x = col_i64(6, xv), y = col_i64(6, yv), z;
    dcol_operand_t a = dcol_operand_col(&x), b = dcol_operand_col(&y);
    char err[256];

    assert_int_equal(dcol_arith(DCOL_ADD, &a, &b, &z, err, sizeof(err)), 0);
    const int64_t add[] = {9, -5, 5, -9, INT64_MIN, INT64_MAX}; /* wraps as Lua does */
    assert_memory_equal(I(&z), add, sizeof(add));
    dcol_free(&z);

    assert_int_equal(dcol_arith(DCOL_SUB, &a, &b, &z, err, sizeof(err)), 0);
    const int64_t sub[] = {5, -9, 9, -5, INT64_MAX - 1, INT64_MIN + 1};
    assert_memory_equal(I(&z), sub, sizeof(sub));
    dcol_free(&z);

    assert_int_equal(dcol_arith(DCOL_MUL, &a, &b, &z, err, sizeof(err)), 0);
    const int64_t mul[] = {14, -14, -14, 14, INT64_MAX, INT64_MIN};
    assert_memory_equal(I(&z), mul, sizeof(mul));
    dcol_free(&z);

    assert_int_equal(dcol_arith(DCOL_IDIV, &a, &b, &z, err, sizeof(err)), 0);
    const int64_t idiv[] = {3, -4, -4, 3, INT64_MAX, INT64_MIN};
    assert_memory_equal(I(&z), idiv, sizeof(idiv));
    dcol_free(&z);

    assert_int_equal(dcol_arith(DCOL_MOD, &a, &b, &z, err, sizeof(err)), 0);
    const int64_t mod[] = {1, 1, -1, -1, 0, 0};
    assert_memory_equal(I(&z), mod, sizeof(mod));
    dcol_free(&z);

    /* / and ^ always give float64 */
    assert_int_equal(dcol_arith(DCOL_DIV, &a, &b, &z, err, sizeof(err)), 0);
    assert_near(F(&z)[0], 3.5, 0);
    assert_near(F(&z)[1], -3.5, 0);
    dcol_free(&z);
    dcol_operand_t two = dcol_operand_int(2);
    assert_int_equal(dcol_arith(DCOL_POW, &a, &two, &z, err, sizeof(err)), 0);
    assert_near(F(&z)[0], 49.0, 0);
    dcol_free(&z);

    /* an integer scalar keeps int64; a float scalar gives float64 */
    assert_int_equal(dcol_arith(DCOL_MUL, &two, &a, &z, err, sizeof(err)), 0);
    assert_int_equal(I(&z)[1], -14);
    dcol_free(&z);
    dcol_operand_t half = dcol_operand_float(0.5);
    assert_int_equal(dcol_arith(DCOL_MUL, &a, &half, &z, err, sizeof(err)), 0);
    assert_near(F(&z)[0], 3.5, 0);
    dcol_free(&z);

    /* scalar left of // and % */
    dcol_operand_t seven = dcol_operand_int(7);
    assert_int_equal(dcol_arith(DCOL_MOD, &seven, &b, &z, err, sizeof(err)), 0);
    assert_int_equal(I(&z)[0], 1);
    assert_int_equal(I(&z)[2], -1);
    dcol_free(&z);

    dcol_free(&x);
    dcol_free(&y);
}

static void test_arith_mixed(void **state)
{
    (void)state;
    const int64_t iv[] = {1, 2, 3};
    const double fv[] = {0.5, 0.25, NAN};
    const uint8_t bv[] = {1, 0, 1};
    dcol_t i = col_i64(3, iv), f = col_f64(3, fv), bl = col_bool(3, bv), z;
    dcol_operand_t ai = dcol_operand_col(&i), af = dcol_operand_col(&f),
                   ab = dcol_operand_col(&bl);
    char err[256];

    assert_int_equal(dcol_arith(DCOL_ADD, &ai, &af, &z, err, sizeof(err)), 0);
    assert_near(F(&z)[0], 1.5, 0);
    assert_near(F(&z)[1], 2.25, 0);
    assert_true(isnan(F(&z)[2]));
    dcol_free(&z);

    /* bool acts as int64 0/1 */
    assert_int_equal(dcol_arith(DCOL_ADD, &ai, &ab, &z, err, sizeof(err)), 0);
    const int64_t sum[] = {2, 2, 4};
    assert_memory_equal(I(&z), sum, sizeof(sum));
    dcol_free(&z);
    assert_int_equal(dcol_arith(DCOL_ADD, &ab, &ab, &z, err, sizeof(err)), 0);
    const int64_t twice[] = {2, 0, 2};
    assert_memory_equal(I(&z), twice, sizeof(twice));
    dcol_free(&z);
    assert_int_equal(dcol_arith(DCOL_MUL, &ab, &af, &z, err, sizeof(err)), 0);
    assert_near(F(&z)[0], 0.5, 0);
    assert_near(F(&z)[1], 0.0, 0);
    dcol_free(&z);

    /* unary minus */
    assert_int_equal(dcol_negate(&i, &z, err, sizeof(err)), 0);
    const int64_t neg[] = {-1, -2, -3};
    assert_memory_equal(I(&z), neg, sizeof(neg));
    dcol_free(&z);
    assert_int_equal(dcol_negate(&f, &z, err, sizeof(err)), 0);
    assert_near(F(&z)[0], -0.5, 0);
    dcol_free(&z);
    assert_int_equal(dcol_negate(&bl, &z, err, sizeof(err)), 0);
    assert_int_equal(I(&z)[0], -1);
    assert_int_equal(I(&z)[1], 0);
    dcol_free(&z);

    dcol_free(&i);
    dcol_free(&f);
    dcol_free(&bl);
}

/* Many rows, so the chunked conversions cross chunk borders. */
static void test_arith_long(void **state)
{
    (void)state;
    enum { N = 5000 };
    int64_t *iv = malloc(N * sizeof(int64_t));
    double *fv = malloc(N * sizeof(double));
    char err[256];
    dcol_t z;

    assert_non_null(iv);
    assert_non_null(fv);
    for (int k = 0; k < N; k++) {
        iv[k] = k - 2500;
        fv[k] = k * 0.25;
    }
    dcol_t i = col_i64(N, iv), f = col_f64(N, fv);
    dcol_operand_t ai = dcol_operand_col(&i), af = dcol_operand_col(&f);
    assert_int_equal(dcol_arith(DCOL_SUB, &af, &ai, &z, err, sizeof(err)), 0);
    for (int k = 0; k < N; k++)
        assert_near(F(&z)[k], k * 0.25 - (k - 2500), 0);
    dcol_free(&z);
    dcol_operand_t three = dcol_operand_int(3);
    assert_int_equal(dcol_arith(DCOL_IDIV, &ai, &three, &z, err, sizeof(err)), 0);
    for (int k = 0; k < N; k++)
        assert_int_equal(I(&z)[k], (int64_t)floor((k - 2500) / 3.0));
    dcol_free(&z);
    dcol_free(&i);
    dcol_free(&f);
    free(iv);
    free(fv);
}

static void test_arith_errors(void **state)
{
    (void)state;
    const int64_t xv[] = {1, 2, 3}, yv[] = {1, 1, 0};
    const char *sv[] = {"a", "b", "c"};
    dcol_t x = col_i64(3, xv), y = col_i64(3, yv), s = col_str(3, sv), shorter = col_i64(2, xv);
    dcol_t z;
    dcol_operand_t a = dcol_operand_col(&x), b = dcol_operand_col(&y), as = dcol_operand_col(&s),
                   ash = dcol_operand_col(&shorter), zero = dcol_operand_int(0),
                   one = dcol_operand_int(1), str = dcol_operand_str("x", 1);
    char err[256];

    assert_int_equal(dcol_arith(DCOL_IDIV, &a, &b, &z, err, sizeof(err)), -1);
    assert_contains(err, "by zero at row 3");
    assert_null(z.data);
    assert_int_equal(dcol_arith(DCOL_MOD, &a, &b, &z, err, sizeof(err)), -1);
    assert_contains(err, "modulo");
    assert_contains(err, "row 3");
    assert_int_equal(dcol_arith(DCOL_IDIV, &a, &zero, &z, err, sizeof(err)), -1);
    assert_contains(err, "row 1");
    /* a zero dividend is fine; so is / by zero (float64) */
    assert_int_equal(dcol_arith(DCOL_IDIV, &zero, &a, &z, err, sizeof(err)), 0);
    dcol_free(&z);
    assert_int_equal(dcol_arith(DCOL_DIV, &a, &b, &z, err, sizeof(err)), 0);
    assert_true(isinf(F(&z)[2]));
    dcol_free(&z);

    assert_int_equal(dcol_arith(DCOL_ADD, &a, &ash, &z, err, sizeof(err)), -1);
    assert_contains(err, "3 and 2");
    assert_int_equal(dcol_arith(DCOL_MUL, &as, &one, &z, err, sizeof(err)), -1);
    assert_contains(err, "(*)");
    assert_contains(err, "string column");
    assert_int_equal(dcol_arith(DCOL_ADD, &a, &str, &z, err, sizeof(err)), -1);
    assert_contains(err, "a string");
    assert_int_equal(dcol_arith(DCOL_ADD, &one, &one, &z, err, sizeof(err)), -1);
    assert_contains(err, "column operand");
    assert_int_equal(dcol_negate(&s, &z, err, sizeof(err)), -1);
    assert_contains(err, "string column");

    dcol_free(&x);
    dcol_free(&y);
    dcol_free(&s);
    dcol_free(&shorter);
}

/* ---- comparisons, concatenation, masks ---- */

static void test_compare_numbers(void **state)
{
    (void)state;
    const double fv[] = {0.25, 0.5, 0.75, NAN};
    const int64_t iv[] = {0, 1, 2, 3};
    dcol_t f = col_f64(4, fv), i = col_i64(4, iv), z;
    dcol_operand_t af = dcol_operand_col(&f), ai = dcol_operand_col(&i),
                   half = dcol_operand_float(0.5), two = dcol_operand_int(2);
    char err[256];
    static const struct {
        dcol_cmp_op_t op;
        uint8_t want[4];
    } vs_half[] = {
        {DCOL_EQ, {0, 1, 0, 0}}, {DCOL_NE, {1, 0, 1, 1}}, {DCOL_LT, {1, 0, 0, 0}},
        {DCOL_LE, {1, 1, 0, 0}}, {DCOL_GT, {0, 0, 1, 0}}, {DCOL_GE, {0, 1, 1, 0}},
    };

    for (size_t k = 0; k < sizeof(vs_half) / sizeof(vs_half[0]); k++) {
        assert_int_equal(dcol_compare(vs_half[k].op, &af, &half, &z, err, sizeof(err)), 0);
        assert_memory_equal(B(&z), vs_half[k].want, 4);
        dcol_free(&z);
    }
    /* 0.5 < f is f > 0.5 */
    assert_int_equal(dcol_compare(DCOL_LT, &half, &af, &z, err, sizeof(err)), 0);
    const uint8_t gt[] = {0, 0, 1, 0};
    assert_memory_equal(B(&z), gt, 4);
    dcol_free(&z);

    assert_int_equal(dcol_compare(DCOL_GE, &ai, &two, &z, err, sizeof(err)), 0);
    const uint8_t ge2[] = {0, 0, 1, 1};
    assert_memory_equal(B(&z), ge2, 4);
    dcol_free(&z);
    /* int64 column against a float scalar and a float64 column */
    assert_int_equal(dcol_compare(DCOL_LT, &ai, &half, &z, err, sizeof(err)), 0);
    const uint8_t lthalf[] = {1, 0, 0, 0};
    assert_memory_equal(B(&z), lthalf, 4);
    dcol_free(&z);
    assert_int_equal(dcol_compare(DCOL_GT, &ai, &af, &z, err, sizeof(err)), 0);
    const uint8_t gtcol[] = {0, 1, 1, 0};
    assert_memory_equal(B(&z), gtcol, 4);
    dcol_free(&z);
    /* exact int64 comparison near 2^63 */
    const int64_t big[] = {INT64_MAX, INT64_MAX - 1};
    dcol_t bg = col_i64(2, big);
    dcol_operand_t abg = dcol_operand_col(&bg), maxv = dcol_operand_int(INT64_MAX);
    assert_int_equal(dcol_compare(DCOL_EQ, &abg, &maxv, &z, err, sizeof(err)), 0);
    assert_int_equal(B(&z)[0], 1);
    assert_int_equal(B(&z)[1], 0);
    dcol_free(&z);
    dcol_free(&bg);

    dcol_operand_t str = dcol_operand_str("a", 1);
    assert_int_equal(dcol_compare(DCOL_EQ, &af, &str, &z, err, sizeof(err)), -1);
    assert_contains(err, "cannot compare (eq) a float64 column with a string");

    dcol_free(&f);
    dcol_free(&i);
}

static void test_compare_strings(void **state)
{
    (void)state;
    const char *av[] = {"apple", "b", "", "banana"}, *bv[] = {"apple", "a", "a", "band"};
    dcol_t a = col_str(4, av), b = col_str(4, bv), z;
    dcol_operand_t oa = dcol_operand_col(&a), ob = dcol_operand_col(&b),
                   ban = dcol_operand_str("ban", 3), one = dcol_operand_int(1);
    char err[256];

    assert_int_equal(dcol_compare(DCOL_EQ, &oa, &ob, &z, err, sizeof(err)), 0);
    const uint8_t eq[] = {1, 0, 0, 0};
    assert_memory_equal(B(&z), eq, 4);
    dcol_free(&z);
    assert_int_equal(dcol_compare(DCOL_LT, &oa, &ob, &z, err, sizeof(err)), 0);
    const uint8_t lt[] = {0, 0, 1, 1};
    assert_memory_equal(B(&z), lt, 4);
    dcol_free(&z);
    /* a prefix sorts first */
    assert_int_equal(dcol_compare(DCOL_GT, &oa, &ban, &z, err, sizeof(err)), 0);
    const uint8_t gt[] = {0, 0, 0, 1};
    assert_memory_equal(B(&z), gt, 4);
    dcol_free(&z);
    assert_int_equal(dcol_compare(DCOL_GE, &ban, &oa, &z, err, sizeof(err)), 0);
    const uint8_t ge[] = {1, 1, 1, 0};
    assert_memory_equal(B(&z), ge, 4);
    dcol_free(&z);
    assert_int_equal(dcol_compare(DCOL_LT, &oa, &one, &z, err, sizeof(err)), -1);
    assert_contains(err, "a string column with a number");

    dcol_free(&a);
    dcol_free(&b);
}

static void test_concat(void **state)
{
    (void)state;
    const char *av[] = {"a", "", "ccc"}, *bv[] = {"x", "y", ""};
    const int64_t iv[] = {1, 2, 3};
    dcol_t a = col_str(3, av), b = col_str(3, bv), i = col_i64(3, iv), z;
    dcol_operand_t oa = dcol_operand_col(&a), ob = dcol_operand_col(&b),
                   oi = dcol_operand_col(&i), dash = dcol_operand_str("-", 1);
    char err[256];

    assert_int_equal(dcol_str_concat(&oa, &ob, &z, err, sizeof(err)), 0);
    assert_int_equal(z.type, DCOL_STRING);
    assert_str_row(&z, 0, "ax");
    assert_str_row(&z, 1, "y");
    assert_str_row(&z, 2, "ccc");
    dcol_free(&z);
    assert_int_equal(dcol_str_concat(&dash, &oa, &z, err, sizeof(err)), 0);
    assert_str_row(&z, 0, "-a");
    assert_str_row(&z, 1, "-");
    dcol_free(&z);
    assert_int_equal(dcol_str_concat(&oa, &oi, &z, err, sizeof(err)), -1);
    assert_contains(err, "int64 column");

    dcol_free(&a);
    dcol_free(&b);
    dcol_free(&i);
}

static void test_masks(void **state)
{
    (void)state;
    const uint8_t av[] = {1, 1, 0, 0, 2}, bv[] = {1, 0, 1, 0, 1};
    const double fv[] = {1.0, NAN, 2.0, NAN, 0.0};
    const int64_t iv[] = {1, 2, 3, 4, 5};
    dcol_t a = col_bool(5, av), b = col_bool(5, bv), f = col_f64(5, fv), i = col_i64(5, iv), z;
    char err[256];

    assert_int_equal(dcol_mask_and(&a, &b, &z, err, sizeof(err)), 0);
    const uint8_t and_[] = {1, 0, 0, 0, 1};
    assert_memory_equal(B(&z), and_, 5);
    dcol_free(&z);
    assert_int_equal(dcol_mask_or(&a, &b, &z, err, sizeof(err)), 0);
    const uint8_t or_[] = {1, 1, 1, 0, 1};
    assert_memory_equal(B(&z), or_, 5);
    dcol_free(&z);
    assert_int_equal(dcol_mask_not(&a, &z, err, sizeof(err)), 0);
    const uint8_t not_[] = {0, 0, 1, 1, 0};
    assert_memory_equal(B(&z), not_, 5);
    dcol_free(&z);
    assert_int_equal(dcol_mask_count(&a), 3);
    assert_int_equal(dcol_mask_count(&b), 3);

    assert_int_equal(dcol_isnan(&f, &z, err, sizeof(err)), 0);
    const uint8_t nan_[] = {0, 1, 0, 1, 0};
    assert_memory_equal(B(&z), nan_, 5);
    dcol_free(&z);
    assert_int_equal(dcol_isnan(&i, &z, err, sizeof(err)), 0);
    assert_int_equal(dcol_mask_count(&z), 0);
    dcol_free(&z);

    assert_int_equal(dcol_mask_and(&a, &i, &z, err, sizeof(err)), -1);
    assert_contains(err, "& needs bool columns, got an int64 column");
    assert_int_equal(dcol_mask_not(&f, &z, err, sizeof(err)), -1);
    assert_contains(err, "~ needs bool columns");
    dcol_t shorter = col_bool(2, av);
    assert_int_equal(dcol_mask_or(&a, &shorter, &z, err, sizeof(err)), -1);
    assert_contains(err, "5 and 2");

    dcol_free(&shorter);
    dcol_free(&a);
    dcol_free(&b);
    dcol_free(&f);
    dcol_free(&i);
}

/* ---- reductions ---- */

static dcol_stat_t reduce(dcol_reduce_op_t op, const dcol_t *c)
{
    dcol_stat_t st;
    char err[128];
    assert_int_equal(dcol_reduce(op, c, &st, err, sizeof(err)), 0);
    return st;
}

static void test_reduce_f64(void **state)
{
    (void)state;
    const double v[] = {2.0, NAN, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0, NAN};
    dcol_t c = col_f64(10, v);
    dcol_stat_t st;

    st = reduce(DCOL_SUM, &c);
    assert_true(st.valid && !st.is_int);
    assert_near(st.f, 40.0, 0);
    st = reduce(DCOL_MEAN, &c);
    assert_near(st.f, 5.0, 0);
    st = reduce(DCOL_MIN, &c);
    assert_true(st.valid && !st.is_int);
    assert_near(st.f, 2.0, 0);
    st = reduce(DCOL_MAX, &c);
    assert_near(st.f, 9.0, 0);
    /* sample std of 2,4,4,4,5,5,7,9: squared deviations sum to 32 over 7 */
    st = reduce(DCOL_STD, &c);
    assert_true(st.valid);
    assert_near(st.f, sqrt(32.0 / 7.0), 1e-15);
    dcol_free(&c);

    /* empty and NaN-only: sum 0, the others none */
    const double nans[] = {NAN, NAN};
    dcol_t e = col_f64(0, nans), n = col_f64(2, nans);
    for (int k = 0; k < 2; k++) {
        const dcol_t *x = k == 0 ? &e : &n;
        st = reduce(DCOL_SUM, x);
        assert_true(st.valid);
        assert_near(st.f, 0.0, 0);
        assert_false(reduce(DCOL_MEAN, x).valid);
        assert_false(reduce(DCOL_MIN, x).valid);
        assert_false(reduce(DCOL_MAX, x).valid);
        assert_false(reduce(DCOL_STD, x).valid);
    }
    dcol_free(&e);
    dcol_free(&n);

    /* one value: std has none; infinities are values */
    const double one[] = {NAN, -INFINITY, NAN};
    dcol_t o = col_f64(3, one);
    assert_false(reduce(DCOL_STD, &o).valid);
    st = reduce(DCOL_MIN, &o);
    assert_true(st.valid && isinf(st.f) && st.f < 0);
    st = reduce(DCOL_MAX, &o);
    assert_true(st.valid && isinf(st.f) && st.f < 0);
    dcol_free(&o);
}

/* std against the textbook two-pass formula on values with a large offset, where a one-pass
 * sum-of-squares formula loses every digit. */
static void test_reduce_std_two_pass(void **state)
{
    (void)state;
    enum { N = 10007 };
    double *v = malloc(N * sizeof(double));
    assert_non_null(v);
    uint64_t seed = 12345;
    for (int k = 0; k < N; k++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        v[k] = 1e9 + (double)(seed >> 11) / 9007199254740992.0;
    }
    double mean = 0, ss = 0;
    for (int k = 0; k < N; k++)
        mean += v[k];
    mean /= N;
    for (int k = 0; k < N; k++)
        ss += (v[k] - mean) * (v[k] - mean);
    double want = sqrt(ss / (N - 1));

    dcol_t c = col_f64(N, v);
    dcol_stat_t st = reduce(DCOL_STD, &c);
    assert_true(st.valid);
    assert_near(st.f, want, want * 1e-6);
    assert_near(reduce(DCOL_MEAN, &c).f, mean, 1e-6);
    dcol_free(&c);
    free(v);
}

static void test_reduce_int(void **state)
{
    (void)state;
    const int64_t v[] = {3, -1, 4, 1, -5, 9};
    const uint8_t bv[] = {1, 0, 1, 1};
    dcol_t c = col_i64(6, v), b = col_bool(4, bv), e = col_i64(0, v), one = col_i64(1, v);
    dcol_stat_t st;

    st = reduce(DCOL_SUM, &c);
    assert_true(st.valid && st.is_int);
    assert_int_equal(st.i, 11);
    st = reduce(DCOL_MIN, &c);
    assert_true(st.valid && st.is_int);
    assert_int_equal(st.i, -5);
    st = reduce(DCOL_MAX, &c);
    assert_int_equal(st.i, 9);
    st = reduce(DCOL_MEAN, &c);
    assert_true(st.valid && !st.is_int);
    assert_near(st.f, 11.0 / 6.0, 1e-15);
    /* deviations from 11/6 */
    double m = 11.0 / 6.0, ss = 0;
    for (int k = 0; k < 6; k++)
        ss += (v[k] - m) * (v[k] - m);
    st = reduce(DCOL_STD, &c);
    assert_near(st.f, sqrt(ss / 5), 1e-12);

    st = reduce(DCOL_SUM, &b);
    assert_true(st.is_int);
    assert_int_equal(st.i, 3);
    st = reduce(DCOL_MEAN, &b);
    assert_near(st.f, 0.75, 0);

    st = reduce(DCOL_SUM, &e);
    assert_true(st.valid && st.is_int);
    assert_int_equal(st.i, 0);
    assert_false(reduce(DCOL_MEAN, &e).valid);
    assert_false(reduce(DCOL_MIN, &e).valid);
    assert_false(reduce(DCOL_STD, &one).valid);
    assert_int_equal(reduce(DCOL_MAX, &one).i, 3);

    dcol_free(&c);
    dcol_free(&b);
    dcol_free(&e);
    dcol_free(&one);
}

static void test_reduce_strings(void **state)
{
    (void)state;
    const char *sv[] = {"pear", "apple", "zoo", "app", "zoo"};
    dcol_t s = col_str(5, sv), empty = col_str(0, sv);
    dcol_stat_t st;
    char err[128];

    assert_int_equal(dcol_str_extreme(&s, false), 3);
    assert_int_equal(dcol_str_extreme(&s, true), 2);
    assert_int_equal(dcol_str_extreme(&empty, true), -1);
    assert_int_equal(dcol_reduce(DCOL_SUM, &s, &st, err, sizeof(err)), -1);
    assert_contains(err, "sum: not defined for string columns");
    dcol_free(&s);
    dcol_free(&empty);
}

/* ---- casts ---- */

static void test_cast_numeric(void **state)
{
    (void)state;
    const double fv[] = {1.9, -1.9, 0.0, NAN};
    const int64_t iv[] = {0, -3, 1LL << 53};
    dcol_t f = col_f64(3, fv), fn = col_f64(4, fv), i = col_i64(3, iv), z;
    char err[256];

    assert_int_equal(dcol_cast(&f, DCOL_INT64, &z, err, sizeof(err)), 0);
    const int64_t trunc_[] = {1, -1, 0};
    assert_memory_equal(I(&z), trunc_, sizeof(trunc_));
    dcol_free(&z);
    assert_int_equal(dcol_cast(&fn, DCOL_INT64, &z, err, sizeof(err)), -1);
    assert_contains(err, "row 4: nan does not fit int64");
    const double huge[] = {1.0, 1e19};
    dcol_t h = col_f64(2, huge);
    assert_int_equal(dcol_cast(&h, DCOL_INT64, &z, err, sizeof(err)), -1);
    assert_contains(err, "row 2");
    dcol_free(&h);

    assert_int_equal(dcol_cast(&i, DCOL_FLOAT64, &z, err, sizeof(err)), 0);
    const double asf[] = {0.0, -3.0, 9007199254740992.0};
    assert_memory_equal(F(&z), asf, sizeof(asf));
    dcol_free(&z);
    assert_int_equal(dcol_cast(&i, DCOL_BOOL, &z, err, sizeof(err)), 0);
    const uint8_t asb[] = {0, 1, 1};
    assert_memory_equal(B(&z), asb, 3);
    dcol_free(&z);
    assert_int_equal(dcol_cast(&fn, DCOL_BOOL, &z, err, sizeof(err)), 0);
    const uint8_t fb[] = {1, 1, 0, 1};
    assert_memory_equal(B(&z), fb, 4);

    dcol_t zb;
    assert_int_equal(dcol_cast(&z, DCOL_INT64, &zb, err, sizeof(err)), 0);
    const int64_t bi[] = {1, 1, 0, 1};
    assert_memory_equal(I(&zb), bi, sizeof(bi));
    dcol_free(&zb);
    assert_int_equal(dcol_cast(&z, DCOL_FLOAT64, &zb, err, sizeof(err)), 0);
    assert_near(F(&zb)[2], 0.0, 0);
    assert_near(F(&zb)[3], 1.0, 0);
    dcol_free(&zb);
    dcol_free(&z);

    /* the same type copies */
    assert_int_equal(dcol_cast(&i, DCOL_INT64, &z, err, sizeof(err)), 0);
    assert_ptr_not_equal(z.data, i.data);
    assert_memory_equal(z.data, i.data, i.nbytes);
    dcol_free(&z);

    dcol_free(&f);
    dcol_free(&fn);
    dcol_free(&i);
}

static void test_cast_strings(void **state)
{
    (void)state;
    const double fv[] = {1.0, 0.1, -0.0, NAN, -INFINITY, 1e20, 1.0 / 3.0, 123456789012345678.0};
    const int64_t iv[] = {0, -42, INT64_MIN};
    const uint8_t bv[] = {1, 0};
    dcol_t f = col_f64(8, fv), i = col_i64(3, iv), b = col_bool(2, bv), z, back;
    char err[256];

    assert_int_equal(dcol_cast(&f, DCOL_STRING, &z, err, sizeof(err)), 0);
    assert_int_equal(z.type, DCOL_STRING);
    assert_str_row(&z, 0, "1.0");
    assert_str_row(&z, 1, "0.1");
    assert_str_row(&z, 2, "-0.0");
    assert_str_row(&z, 3, "nan");
    assert_str_row(&z, 4, "-inf");
    assert_str_row(&z, 5, "1e+20");
    assert_str_row(&z, 6, "0.33333333333333331");
    assert_str_row(&z, 7, "1.2345678901234568e+17");
    /* and back, exactly */
    assert_int_equal(dcol_cast(&z, DCOL_FLOAT64, &back, err, sizeof(err)), 0);
    for (int k = 0; k < 8; k++)
        if (k != 3)
            assert_memory_equal(&F(&back)[k], &fv[k], sizeof(double));
    assert_true(isnan(F(&back)[3]));
    dcol_free(&back);
    dcol_free(&z);

    assert_int_equal(dcol_cast(&i, DCOL_STRING, &z, err, sizeof(err)), 0);
    assert_str_row(&z, 0, "0");
    assert_str_row(&z, 1, "-42");
    assert_str_row(&z, 2, "-9223372036854775808");
    assert_int_equal(dcol_cast(&z, DCOL_INT64, &back, err, sizeof(err)), 0);
    assert_memory_equal(back.data, iv, sizeof(iv));
    dcol_free(&back);
    dcol_free(&z);

    assert_int_equal(dcol_cast(&b, DCOL_STRING, &z, err, sizeof(err)), 0);
    assert_str_row(&z, 0, "true");
    assert_str_row(&z, 1, "false");
    assert_int_equal(dcol_cast(&z, DCOL_BOOL, &back, err, sizeof(err)), 0);
    assert_memory_equal(back.data, bv, 2);
    dcol_free(&back);
    dcol_free(&z);

    const char *sv[] = {"12", "", "x7"};
    dcol_t s = col_str(3, sv);
    assert_int_equal(dcol_cast(&s, DCOL_INT64, &z, err, sizeof(err)), -1);
    assert_contains(err, "row 2: \"\" is not an int64");
    assert_null(z.data);
    assert_int_equal(dcol_cast(&s, DCOL_FLOAT64, &z, err, sizeof(err)), -1);
    assert_contains(err, "row 3: \"x7\" is not a float64");
    assert_int_equal(dcol_cast(&s, DCOL_BOOL, &z, err, sizeof(err)), -1);
    assert_contains(err, "row 1: \"12\" is not a bool");
    /* string to string copies */
    assert_int_equal(dcol_cast(&s, DCOL_STRING, &z, err, sizeof(err)), 0);
    assert_str_row(&z, 0, "12");
    assert_str_row(&z, 2, "x7");
    dcol_free(&z);

    dcol_t t = {.type = DCOL_TENSOR, .ndim = 1, .shape = {2}};
    assert_int_equal(dcol_cast(&t, DCOL_FLOAT64, &z, err, sizeof(err)), -1);
    assert_contains(err, "cannot convert a tensor column to float64");
    assert_int_equal(dcol_cast(&i, DCOL_TENSOR, &z, err, sizeof(err)), -1);
    assert_contains(err, "an int64 column to tensor");

    dcol_free(&s);
    dcol_free(&f);
    dcol_free(&i);
    dcol_free(&b);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(dcol_arith_symbol(DCOL_IDIV), "//");
    assert_string_equal(dcol_arith_symbol(DCOL_POW), "^");
    assert_string_equal(dcol_cmp_name(DCOL_GE), "ge");
    assert_string_equal(dcol_reduce_name(DCOL_STD), "std");
    char buf[32];
    assert_int_equal(dcol_format_f64(2.5, buf, sizeof(buf)), 3);
    assert_string_equal(buf, "2.5");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arith_f64),
        cmocka_unit_test(test_arith_i64),
        cmocka_unit_test(test_arith_mixed),
        cmocka_unit_test(test_arith_long),
        cmocka_unit_test(test_arith_errors),
        cmocka_unit_test(test_compare_numbers),
        cmocka_unit_test(test_compare_strings),
        cmocka_unit_test(test_concat),
        cmocka_unit_test(test_masks),
        cmocka_unit_test(test_reduce_f64),
        cmocka_unit_test(test_reduce_std_two_pass),
        cmocka_unit_test(test_reduce_int),
        cmocka_unit_test(test_reduce_strings),
        cmocka_unit_test(test_cast_numeric),
        cmocka_unit_test(test_cast_strings),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
