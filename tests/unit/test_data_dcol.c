/* The data plugin's value parsers (dcol.c): the eight-bytes-at-a-time paths must give exactly
 * what strtod and strtoll give, and refuse what they refuse. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "data/dcol.h"

/* Parses text both ways (copied, and in place inside a padded buffer) and checks they agree. */
static int parse_f64_both(const char *text, double *v)
{
    char buf[128];
    size_t len = strlen(text);
    memset(buf, '9', sizeof(buf)); /* digits after the field must not be taken in */
    memcpy(buf, text, len);
    double a = 0, b = 0;
    int ra = dcol_parse_f64(text, len, &a);
    int rb = dcol_parse_f64_padded(buf, len, &b);
    assert_int_equal(ra, rb);
    if (ra == 0 && !(isnan(a) && isnan(b)))
        assert_memory_equal(&a, &b, sizeof(a));
    *v = a;
    return ra;
}

static int parse_i64_both(const char *text, int64_t *v)
{
    char buf[128];
    size_t len = strlen(text);
    memset(buf, '7', sizeof(buf));
    memcpy(buf, text, len);
    int64_t a = 0, b = 0;
    int ra = dcol_parse_i64(text, len, &a);
    int rb = dcol_parse_i64_padded(buf, len, &b);
    assert_int_equal(ra, rb);
    if (ra == 0)
        assert_true(a == b);
    *v = a;
    return ra;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void test_f64_matches_strtod(void **state)
{
    (void)state;
    char text[64];
    for (int k = 0; k < 200000; k++) {
        int ip = (int)(next_rand() % 10), fp = (int)(next_rand() % 19);
        int n = 0;
        if (next_rand() % 4 == 0)
            text[n++] = '-';
        for (int i = 0; i < ip; i++)
            text[n++] = (char)('0' + next_rand() % 10);
        if (fp > 0 || ip == 0) {
            text[n++] = '.';
            for (int i = 0; i < fp; i++)
                text[n++] = (char)('0' + next_rand() % 10);
        }
        text[n] = '\0';
        double got, want;
        char *end;
        want = strtod(text, &end);
        bool valid = *end == '\0' && end != text && strcmp(text, "-.") != 0 && strcmp(text, ".") != 0;
        int rc = parse_f64_both(text, &got);
        if (!valid) {
            assert_int_equal(rc, -1);
            continue;
        }
        assert_int_equal(rc, 0);
        if (memcmp(&got, &want, sizeof(got)) != 0)
            fail_msg("%s: got %.17g, strtod %.17g", text, got, want);
    }
}

static void test_f64_edges(void **state)
{
    (void)state;
    double v;
    const char *good[] = {"0", "-0", "+1.5", "1.", ".5", "-.25", "1e5", "2.5E-3", "123456789012345678",
                          "0.1", "9007199254740993", "nan", "inf", "-inf", "1e308"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(parse_f64_both(good[i], &v), 0);
        double want = strtod(good[i], NULL);
        if (!isnan(want))
            assert_memory_equal(&v, &want, sizeof(v));
    }
    const char *bad[] = {"-", "+", ".", "1.2.3", "1,5", " 1", "1 ", "0x10", "1e", "e5", "--1", "abc"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (parse_f64_both(bad[i], &v) != -1)
            fail_msg("\"%s\" parsed as %g", bad[i], v);
    assert_int_equal(dcol_parse_f64("", 0, &v), 0);
    assert_true(isnan(v));
}

static void test_i64(void **state)
{
    (void)state;
    int64_t v;
    char text[32];
    for (int k = 0; k < 100000; k++) {
        int64_t want = (int64_t)(next_rand() >> (next_rand() % 64));
        if (next_rand() % 2)
            want = -want;
        snprintf(text, sizeof(text), "%lld", (long long)want);
        assert_int_equal(parse_i64_both(text, &v), 0);
        assert_true(v == want);
    }
    assert_int_equal(parse_i64_both("9223372036854775807", &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(parse_i64_both("-9223372036854775808", &v), 0);
    assert_true(v == INT64_MIN);
    const char *bad[] = {"9223372036854775808", "-9223372036854775809", "-", "+", "1.0", " 1",
                         "1 ", "1e3", "", "0x1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(parse_i64_both(bad[i], &v), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f64_matches_strtod),
        cmocka_unit_test(test_f64_edges),
        cmocka_unit_test(test_i64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
