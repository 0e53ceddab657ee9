/* Tests for core/copy.c: large copies split over threads land byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "copy.h"

static void check_copy(size_t n)
{
    uint8_t *src = malloc(n + 1), *dst = malloc(n + 2);
    assert_non_null(src);
    assert_non_null(dst);
    for (size_t i = 0; i < n; i++)
        src[i] = (uint8_t)(i * 2654435761u >> 13);
    dst[n] = 0xA5;
    dst[n + 1] = 0x5A;
    luray_copy(dst, src, n);
    assert_memory_equal(dst, src, n);
    assert_int_equal(dst[n], 0xA5); /* nothing written past the end */
    assert_int_equal(dst[n + 1], 0x5A);
    free(src);
    free(dst);
}

static void test_small(void **state)
{
    (void)state;
    check_copy(0);
    check_copy(1);
    check_copy(4095);
    check_copy(1 << 20);
}

static void test_large_split(void **state)
{
    (void)state;
    /* over the parallel threshold, sizes that do not divide evenly into pages or threads */
    check_copy((size_t)32 * 1024 * 1024);
    check_copy((size_t)32 * 1024 * 1024 + 1);
    check_copy((size_t)48 * 1024 * 1024 + 12345);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small),
        cmocka_unit_test(test_large_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
