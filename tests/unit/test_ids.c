/* Unit tests of core/ids: the hex text form of ids (round trip and parse errors) and the inline
 * helpers for return ids, task ids, equality and hashing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "errors.h"
#include "ids.h"

static luray_oid_t oid(uint32_t node, uint32_t proc, uint64_t seq)
{
    luray_oid_t o = {node, proc, seq};
    return o;
}

static void test_hex_format(void **state)
{
    (void)state;
    char hex[LURAY_OID_HEX_LEN + 1];
    luray_oid_hex(oid(1, 2, 10), hex);
    assert_string_equal(hex, "0000000100000002000000000000000a");
    luray_oid_hex(oid(0, 0, 0), hex);
    assert_string_equal(hex, "00000000000000000000000000000000");
    luray_oid_hex(oid(UINT32_MAX, UINT32_MAX, UINT64_MAX), hex);
    assert_string_equal(hex, "ffffffffffffffffffffffffffffffff");
    luray_oid_hex(oid(0xdeadbeef, 0x0badf00d, 0x0123456789abcdefull), hex);
    assert_string_equal(hex, "deadbeef0badf00d0123456789abcdef");
    assert_int_equal(strlen(hex), LURAY_OID_HEX_LEN);
}

static void test_hex_round_trip(void **state)
{
    (void)state;
    uint64_t x = 0x243f6a8885a308d3ull;
    for (int i = 0; i < 10000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        luray_oid_t a = oid((uint32_t)(x >> 32), (uint32_t)x * 2654435761u, x * 31 + (uint64_t)i);
        char hex[LURAY_OID_HEX_LEN + 1];
        luray_oid_hex(a, hex);
        for (int k = 0; k < LURAY_OID_HEX_LEN; k++)
            assert_true((hex[k] >= '0' && hex[k] <= '9') || (hex[k] >= 'a' && hex[k] <= 'f'));
        luray_oid_t b = oid(1, 1, 1);
        assert_int_equal(luray_oid_parse(hex, &b), 0);
        assert_true(luray_oid_eq(a, b));
    }
}

static void test_parse_upper_case(void **state)
{
    (void)state;
    luray_oid_t id;
    assert_int_equal(luray_oid_parse("DEADBEEF0BADF00D0123456789ABCDEF", &id), 0);
    assert_true(luray_oid_eq(id, oid(0xdeadbeef, 0x0badf00d, 0x0123456789abcdefull)));
    assert_int_equal(luray_oid_parse("DeadBeef0badF00d0123456789aBcDeF", &id), 0);
    assert_true(luray_oid_eq(id, oid(0xdeadbeef, 0x0badf00d, 0x0123456789abcdefull)));
}

static void test_parse_errors(void **state)
{
    (void)state;
    const luray_oid_t sentinel = oid(7, 8, 9);
    luray_oid_t id;
    const char *bad[] = {
        "",
        "0",
        "0000000100000002000000000000000",   /* 31 digits */
        "0000000100000002000000000000000aa", /* 33 digits */
        "0x000001000000020000000000000000",  /* a C prefix */
        " 000000100000002000000000000000a",  /* leading space */
        "0000000100000002000000000000000 ",  /* trailing space */
        "000000010000000200000000000000-1",
        "0000000100000002000000000000000g",
        "g0000001000000020000000000000000",
        "00000001000000020000000000000000\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        id = sentinel;
        assert_int_equal(luray_oid_parse(bad[i], &id), LURAY_EINVAL);
        /* A failed parse leaves the id alone. */
        assert_true(luray_oid_eq(id, sentinel));
    }
    /* One bad character at each position of each field. */
    const char bads[] = {'g', 'G', 'x', ' ', '-', '+', ':', '/', '@', '`', '\x80'};
    for (int pos = 0; pos < LURAY_OID_HEX_LEN; pos++) {
        for (size_t c = 0; c < sizeof(bads); c++) {
            char hex[LURAY_OID_HEX_LEN + 1];
            memset(hex, 'a', LURAY_OID_HEX_LEN);
            hex[LURAY_OID_HEX_LEN] = '\0';
            hex[pos] = bads[c];
            id = sentinel;
            assert_int_equal(luray_oid_parse(hex, &id), LURAY_EINVAL);
            assert_true(luray_oid_eq(id, sentinel));
        }
    }
    /* An embedded NUL makes the string short. */
    char cut[LURAY_OID_HEX_LEN + 1];
    memset(cut, '0', LURAY_OID_HEX_LEN);
    cut[LURAY_OID_HEX_LEN] = '\0';
    cut[16] = '\0';
    assert_int_equal(luray_oid_parse(cut, &id), LURAY_EINVAL);
}

static void test_helpers(void **state)
{
    (void)state;
    luray_task_id_t t = oid(3, 4, (uint64_t)77 << LURAY_OID_INDEX_BITS);
    assert_false(luray_oid_is_nil(t));
    assert_true(luray_oid_is_nil(oid(0, 0, 0)));
    assert_false(luray_oid_is_nil(oid(0, 0, 1)));
    assert_false(luray_oid_is_nil(oid(1, 0, 0)));
    assert_false(luray_oid_is_nil(oid(0, 1, 0)));

    luray_oid_t r1 = luray_oid_for_return(t, 1);
    luray_oid_t r2 = luray_oid_for_return(t, 2);
    luray_oid_t rmax = luray_oid_for_return(t, (1u << LURAY_OID_INDEX_BITS) - 1);
    assert_false(luray_oid_eq(r1, r2));
    assert_false(luray_oid_eq(r1, t));
    assert_int_equal(r1.node, 3);
    assert_int_equal(r1.proc, 4);
    assert_true(r1.seq == ((uint64_t)77 << LURAY_OID_INDEX_BITS | 1));
    assert_true(luray_oid_eq(luray_oid_task(r1), t));
    assert_true(luray_oid_eq(luray_oid_task(r2), t));
    assert_true(luray_oid_eq(luray_oid_task(rmax), t));
    assert_true(luray_oid_eq(luray_oid_task(t), t));
    /* The index is the low bits only: the next task's id is not confused with a return. */
    luray_task_id_t t2 = oid(3, 4, (uint64_t)78 << LURAY_OID_INDEX_BITS);
    assert_false(luray_oid_eq(luray_oid_task(rmax), t2));

    /* Equality compares every field. */
    assert_true(luray_oid_eq(oid(1, 2, 3), oid(1, 2, 3)));
    assert_false(luray_oid_eq(oid(1, 2, 3), oid(2, 2, 3)));
    assert_false(luray_oid_eq(oid(1, 2, 3), oid(1, 3, 3)));
    assert_false(luray_oid_eq(oid(1, 2, 3), oid(1, 2, 4)));
}

static void test_hash_spreads(void **state)
{
    (void)state;
    /* Sequential ids of one process (the common case) must spread over a power-of-two table:
     * every bucket of 256 gets some of 4096 consecutive return ids. */
    unsigned buckets[256] = {0};
    for (uint64_t i = 0; i < 4096; i++) {
        luray_oid_t o = oid(1, 1, (i + 1) << LURAY_OID_INDEX_BITS);
        buckets[luray_oid_hash(o) & 255]++;
    }
    for (int b = 0; b < 256; b++) {
        assert_true(buckets[b] > 0);
        assert_true(buckets[b] < 64);
    }
    /* Node and proc feed the hash too. */
    assert_true(luray_oid_hash(oid(1, 2, 3)) != luray_oid_hash(oid(2, 1, 3)));
    assert_true(luray_oid_hash(oid(1, 2, 3)) != luray_oid_hash(oid(1, 3, 3)));
    assert_true(luray_oid_hash(oid(1, 2, 3)) == luray_oid_hash(oid(1, 2, 3)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hex_format),
        cmocka_unit_test(test_hex_round_trip),
        cmocka_unit_test(test_parse_upper_case),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_helpers),
        cmocka_unit_test(test_hash_spreads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
