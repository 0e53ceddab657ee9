/* Unit tests of the wire layer: frame building and walking (core/wire.c), the byte buffer and
 * reader (core/buf.c), task spec encoding and parsing (core/protocol.c) and the id map
 * (core/oidmap.c). Malformed input is checked at every truncation length, on exact-size copies so
 * that the sanitizers catch any read past the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>

#include "buf.h"
#include "errors.h"
#include "ids.h"
#include "oidmap.h"
#include "protocol.h"
#include "wire.h"

/* A heap copy of exactly n bytes (at least one allocated byte so that n == 0 is not NULL). */
static uint8_t *dup_exact(const uint8_t *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    assert_non_null(d);
    if (n)
        memcpy(d, p, n);
    return d;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- frames ---- */

/* Builds a frame of three messages with bodies of 0, 5 and 300 bytes. */
static void build_three(luray_frame_t *f)
{
    luray_frame_init(f);
    assert_true(luray_frame_empty(f));
    luray_frame_begin(f, LURAY_MSG_BYE, 0);
    luray_frame_end(f);
    luray_buf_t *b = luray_frame_begin(f, LURAY_MSG_PUT, 0xbeef);
    luray_buf_put(b, "hello", 5);
    luray_frame_end(f);
    b = luray_frame_begin(f, LURAY_MSG_SUBMIT, 7);
    for (int i = 0; i < 300; i++)
        luray_buf_put_u8(b, (uint8_t)i);
    luray_frame_end(f);
    assert_false(luray_frame_empty(f));
    assert_int_equal(f->count, 3);
    assert_int_equal(f->buf.err, 0);
}

static void test_frame_build_walk(void **state)
{
    (void)state;
    luray_frame_t f;
    build_three(&f);
    const uint8_t *d = f.buf.data;
    size_t len = f.buf.len;
    assert_int_equal(len, LURAY_WIRE_FRAME_HDR + 3 * LURAY_WIRE_MSG_HDR + 0 + 5 + 300);
    /* The header on the wire: "LRW1" then the count, little-endian. */
    assert_memory_equal(d, "LRW1", 4);
    assert_int_equal(d[4], 3);
    assert_int_equal(d[5] | d[6] | d[7], 0);
    assert_int_equal(luray_frame_check(d, len), 0);

    size_t pos = 0;
    luray_msg_t m;
    assert_int_equal(luray_frame_next(d, len, &pos, &m), 1);
    assert_int_equal(m.type, LURAY_MSG_BYE);
    assert_int_equal(m.flags, 0);
    assert_int_equal(m.len, 0);
    assert_int_equal(luray_frame_next(d, len, &pos, &m), 1);
    assert_int_equal(m.type, LURAY_MSG_PUT);
    assert_int_equal(m.flags, 0xbeef);
    assert_int_equal(m.len, 5);
    assert_memory_equal(m.body, "hello", 5);
    assert_int_equal(luray_frame_next(d, len, &pos, &m), 1);
    assert_int_equal(m.type, LURAY_MSG_SUBMIT);
    assert_int_equal(m.flags, 7);
    assert_int_equal(m.len, 300);
    for (int i = 0; i < 300; i++)
        assert_int_equal(m.body[i], (uint8_t)i);
    assert_int_equal(pos, len);
    assert_int_equal(luray_frame_next(d, len, &pos, &m), 0);
    assert_int_equal(luray_frame_next(d, len, &pos, &m), 0);
    luray_frame_close(&f);
    assert_null(f.buf.data);
    assert_int_equal(f.count, 0);
}

static void test_frame_reset_reuse(void **state)
{
    (void)state;
    luray_frame_t f;
    build_three(&f);
    luray_frame_reset(&f);
    assert_true(luray_frame_empty(&f));
    luray_buf_t *b = luray_frame_begin(&f, LURAY_MSG_INFO, 1);
    luray_buf_put_u64(b, 42);
    luray_frame_end(&f);
    /* After a reset the frame starts over: a fresh header with count 1. */
    assert_int_equal(f.buf.len, LURAY_WIRE_FRAME_HDR + LURAY_WIRE_MSG_HDR + 8);
    assert_int_equal(f.buf.data[4], 1);
    assert_int_equal(luray_frame_check(f.buf.data, f.buf.len), 0);
    size_t pos = 0;
    luray_msg_t m;
    assert_int_equal(luray_frame_next(f.buf.data, f.buf.len, &pos, &m), 1);
    assert_int_equal(m.type, LURAY_MSG_INFO);
    luray_rd_t r;
    luray_rd_init(&r, m.body, m.len);
    assert_int_equal(luray_rd_u64(&r), 42);
    assert_int_equal(luray_frame_next(f.buf.data, f.buf.len, &pos, &m), 0);
    luray_frame_close(&f);
}

static void test_frame_empty(void **state)
{
    (void)state;
    /* A frame with no messages is just the header with count 0: valid and walks to the end. */
    uint8_t hdr[8] = {'L', 'R', 'W', '1', 0, 0, 0, 0};
    uint8_t *d = dup_exact(hdr, sizeof(hdr));
    assert_int_equal(luray_frame_check(d, 8), 0);
    size_t pos = 0;
    luray_msg_t m;
    assert_int_equal(luray_frame_next(d, 8, &pos, &m), 0);
    /* The same header claiming one message is a lie. */
    d[4] = 1;
    assert_int_equal(luray_frame_check(d, 8), LURAY_EPROTO);
    free(d);
    /* Nothing at all, or less than a header, is not a frame. */
    d = dup_exact(hdr, 0);
    assert_int_equal(luray_frame_check(d, 0), LURAY_EPROTO);
    pos = 0;
    assert_int_equal(luray_frame_next(d, 0, &pos, &m), LURAY_EPROTO);
    free(d);
    /* A frame never begun has no bytes. */
    luray_frame_t f;
    luray_frame_init(&f);
    assert_int_equal(f.buf.len, 0);
    luray_frame_close(&f);
}

static void test_frame_truncated_every_length(void **state)
{
    (void)state;
    luray_frame_t f;
    build_three(&f);
    for (size_t n = 0; n < f.buf.len; n++) {
        uint8_t *d = dup_exact(f.buf.data, n);
        assert_int_equal(luray_frame_check(d, n), LURAY_EPROTO);
        /* Walking a truncated frame yields only whole messages, then an error (or the end when the
         * cut falls on a message boundary; luray_frame_check catches the short count then). */
        size_t pos = 0;
        luray_msg_t m;
        int rc, msgs = 0;
        while ((rc = luray_frame_next(d, n, &pos, &m)) == 1) {
            assert_true(pos <= n);
            assert_true(m.body + m.len <= d + n);
            msgs++;
        }
        assert_true(msgs < 3);
        assert_true(rc == 0 || rc == LURAY_EPROTO);
        if (rc == 0)
            assert_int_equal(pos, n);
        free(d);
    }
    luray_frame_close(&f);
}

static void test_frame_bad_magic(void **state)
{
    (void)state;
    luray_frame_t f;
    build_three(&f);
    for (int i = 0; i < 4; i++) {
        for (int bit = 0; bit < 8; bit++) {
            uint8_t *d = dup_exact(f.buf.data, f.buf.len);
            d[i] ^= (uint8_t)(1u << bit);
            assert_int_equal(luray_frame_check(d, f.buf.len), LURAY_EPROTO);
            size_t pos = 0;
            luray_msg_t m;
            assert_int_equal(luray_frame_next(d, f.buf.len, &pos, &m), LURAY_EPROTO);
            free(d);
        }
    }
    /* Big-endian magic ("1WRL") is wrong too. */
    uint8_t *d = dup_exact(f.buf.data, f.buf.len);
    memcpy(d, "1WRL", 4);
    assert_int_equal(luray_frame_check(d, f.buf.len), LURAY_EPROTO);
    free(d);
    luray_frame_close(&f);
}

static void test_frame_wrong_count(void **state)
{
    (void)state;
    luray_frame_t f;
    build_three(&f);
    uint32_t counts[] = {0, 1, 2, 4, 5, 0x100 | 3, UINT32_MAX};
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        uint8_t *d = dup_exact(f.buf.data, f.buf.len);
        put_le32(d + 4, counts[i]);
        assert_int_equal(luray_frame_check(d, f.buf.len), LURAY_EPROTO);
        free(d);
    }
    luray_frame_close(&f);
}

static void test_frame_bad_body_lengths(void **state)
{
    (void)state;
    luray_frame_t f;
    build_three(&f);
    size_t len = f.buf.len;
    /* Offsets of the three message headers. */
    size_t h0 = LURAY_WIRE_FRAME_HDR, h1 = h0 + LURAY_WIRE_MSG_HDR + 0,
           h2 = h1 + LURAY_WIRE_MSG_HDR + 5;
    assert_int_equal(f.buf.data[h2], 300 & 0xff);
    assert_int_equal(f.buf.data[h2 + 1], 300 >> 8);

    /* The last body one byte past the end. */
    uint8_t *d = dup_exact(f.buf.data, len);
    put_le32(d + h2, 301);
    assert_int_equal(luray_frame_check(d, len), LURAY_EPROTO);
    size_t pos = 0;
    luray_msg_t m;
    assert_int_equal(luray_frame_next(d, len, &pos, &m), 1);
    assert_int_equal(luray_frame_next(d, len, &pos, &m), 1);
    assert_int_equal(luray_frame_next(d, len, &pos, &m), LURAY_EPROTO);
    free(d);

    /* A body shorter than it is leaves trailing bytes that are not a whole message. */
    d = dup_exact(f.buf.data, len);
    put_le32(d + h2, 299);
    assert_int_equal(luray_frame_check(d, len), LURAY_EPROTO);
    free(d);

    /* Huge lengths, which would wrap a careless pos + len. */
    uint32_t huge[] = {LURAY_WIRE_MAX_BODY, LURAY_WIRE_MAX_BODY + 1, 0x80000000u, UINT32_MAX - 7,
                       UINT32_MAX};
    size_t hdrs[] = {h0, h1, h2};
    for (size_t i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
        for (size_t j = 0; j < 3; j++) {
            d = dup_exact(f.buf.data, len);
            put_le32(d + hdrs[j], huge[i]);
            assert_int_equal(luray_frame_check(d, len), LURAY_EPROTO);
            free(d);
        }
    }

    /* A first body swallowing the rest exactly is well formed but the count then lies. */
    d = dup_exact(f.buf.data, len);
    put_le32(d + h0, (uint32_t)(len - h0 - LURAY_WIRE_MSG_HDR));
    assert_int_equal(luray_frame_check(d, len), LURAY_EPROTO);
    put_le32(d + 4, 1);
    assert_int_equal(luray_frame_check(d, len), 0);
    free(d);
    luray_frame_close(&f);
}

static void test_frame_trailing_bytes(void **state)
{
    (void)state;
    luray_frame_t f;
    build_three(&f);
    /* 1..7 extra bytes are a partial message header; 8 zero bytes are an extra empty message. */
    for (size_t extra = 1; extra <= 8; extra++) {
        size_t n = f.buf.len + extra;
        uint8_t *d = malloc(n);
        assert_non_null(d);
        memcpy(d, f.buf.data, f.buf.len);
        memset(d + f.buf.len, 0, extra);
        assert_int_equal(luray_frame_check(d, n), LURAY_EPROTO);
        if (extra == 8) {
            put_le32(d + 4, 4);
            assert_int_equal(luray_frame_check(d, n), 0);
        }
        free(d);
    }
    luray_frame_close(&f);
}

static void test_frame_end_after_error(void **state)
{
    (void)state;
    /* A message whose writing failed is not counted: the frame keeps its earlier messages. */
    luray_frame_t f;
    luray_frame_init(&f);
    luray_buf_t *b = luray_frame_begin(&f, LURAY_MSG_PUT, 0);
    luray_buf_put_u32(b, 1);
    luray_frame_end(&f);
    b = luray_frame_begin(&f, LURAY_MSG_PUT, 0);
    b->err = LURAY_ENOMEM;
    luray_frame_end(&f);
    assert_int_equal(f.count, 1);
    assert_int_equal(f.buf.data[4], 1);
    luray_frame_close(&f);
}

/* ---- buffer and reader ---- */

static void test_buf_ints_little_endian(void **state)
{
    (void)state;
    luray_buf_t b;
    luray_buf_init(&b);
    luray_buf_put_u8(&b, 0xab);
    luray_buf_put_u16(&b, 0x0102);
    luray_buf_put_u32(&b, 0x01020304u);
    luray_buf_put_u64(&b, 0x0102030405060708ull);
    luray_buf_put_f64(&b, -2.5);
    luray_buf_put_f64(&b, -0.0);
    luray_buf_put_f64(&b, INFINITY);
    assert_int_equal(b.err, 0);
    assert_int_equal(b.len, 1 + 2 + 4 + 8 + 3 * 8);
    const uint8_t want[] = {0xab, 0x02, 0x01, 0x04, 0x03, 0x02, 0x01,
                            0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01};
    assert_memory_equal(b.data, want, sizeof(want));

    luray_rd_t r;
    luray_rd_init(&r, b.data, b.len);
    assert_int_equal(luray_rd_u8(&r), 0xab);
    assert_int_equal(luray_rd_u16(&r), 0x0102);
    assert_int_equal(luray_rd_u32(&r), 0x01020304u);
    assert_true(luray_rd_u64(&r) == 0x0102030405060708ull);
    assert_true(luray_rd_f64(&r) == -2.5);
    double z = luray_rd_f64(&r);
    assert_true(z == 0.0 && signbit(z));
    assert_true(isinf(luray_rd_f64(&r)));
    assert_int_equal(luray_rd_left(&r), 0);
    assert_int_equal(r.err, 0);
    luray_buf_close(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
}

static void test_buf_grows(void **state)
{
    (void)state;
    luray_buf_t b;
    luray_buf_init(&b);
    for (uint32_t i = 0; i < 100000; i++)
        luray_buf_put_u32(&b, i * 2654435761u);
    assert_int_equal(b.err, 0);
    assert_int_equal(b.len, 400000);
    assert_true(b.cap >= b.len);
    luray_rd_t r;
    luray_rd_init(&r, b.data, b.len);
    for (uint32_t i = 0; i < 100000; i++)
        assert_int_equal(luray_rd_u32(&r), i * 2654435761u);
    assert_int_equal(r.err, 0);
    size_t n = 0;
    uint8_t *d = luray_buf_steal(&b, &n);
    assert_int_equal(n, 400000);
    assert_non_null(d);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    free(d);
    luray_buf_close(&b);
}

static void test_varint_round_trip(void **state)
{
    (void)state;
    struct {
        uint64_t v;
        size_t size;
    } cases[] = {
        {0, 1},
        {1, 1},
        {127, 1},
        {128, 2},
        {300, 2},
        {16383, 2},
        {16384, 3},
        {UINT32_MAX, 5},
        {(uint64_t)1 << 32, 5},
        {(uint64_t)1 << 56, 9},
        {(uint64_t)1 << 63, 10},
        {UINT64_MAX, 10},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        luray_buf_t b;
        luray_buf_init(&b);
        luray_buf_put_varint(&b, cases[i].v);
        assert_int_equal(b.len, cases[i].size);
        /* Every byte but the last has the continuation bit. */
        for (size_t k = 0; k + 1 < b.len; k++)
            assert_true(b.data[k] & 0x80);
        assert_false(b.data[b.len - 1] & 0x80);
        uint8_t *d = dup_exact(b.data, b.len);
        luray_rd_t r;
        luray_rd_init(&r, d, b.len);
        assert_true(luray_rd_varint(&r) == cases[i].v);
        assert_int_equal(r.err, 0);
        assert_int_equal(luray_rd_left(&r), 0);
        /* Every truncation is an error, not a shorter value. */
        for (size_t n = 0; n < b.len; n++) {
            luray_rd_init(&r, d, n);
            assert_true(luray_rd_varint(&r) == 0);
            assert_int_equal(r.err, LURAY_EPROTO);
        }
        free(d);
        luray_buf_close(&b);
    }
    /* 300 is the textbook example: 0xac 0x02. */
    luray_buf_t b;
    luray_buf_init(&b);
    luray_buf_put_varint(&b, 300);
    assert_int_equal(b.data[0], 0xac);
    assert_int_equal(b.data[1], 0x02);
    luray_buf_close(&b);
}

static void test_varint_malformed(void **state)
{
    (void)state;
    luray_rd_t r;
    /* Eleven continuation bytes: longer than any 64-bit value. */
    uint8_t overlong[11];
    memset(overlong, 0x80, sizeof(overlong));
    overlong[10] = 0x01;
    luray_rd_init(&r, overlong, sizeof(overlong));
    assert_true(luray_rd_varint(&r) == 0);
    assert_int_equal(r.err, LURAY_EPROTO);
    /* Ten bytes whose last carries more than the one bit left of a u64: it would overflow. */
    uint8_t over[10];
    memset(over, 0xff, 9);
    over[9] = 0x02;
    luray_rd_init(&r, over, sizeof(over));
    assert_true(luray_rd_varint(&r) == 0);
    assert_int_equal(r.err, LURAY_EPROTO);
    over[9] = 0x7f;
    luray_rd_init(&r, over, sizeof(over));
    assert_true(luray_rd_varint(&r) == 0);
    assert_int_equal(r.err, LURAY_EPROTO);
    over[9] = 0x01;
    luray_rd_init(&r, over, sizeof(over));
    assert_true(luray_rd_varint(&r) == UINT64_MAX);
    assert_int_equal(r.err, 0);
    /* A padded (non-minimal) encoding still reads as its value. */
    uint8_t padded[3] = {0x81, 0x80, 0x00};
    luray_rd_init(&r, padded, sizeof(padded));
    assert_true(luray_rd_varint(&r) == 1);
    assert_int_equal(r.err, 0);
}

static void test_str_round_trip(void **state)
{
    (void)state;
    luray_buf_t b;
    luray_buf_init(&b);
    luray_buf_put_str(&b, "abc", 3);
    luray_buf_put_str(&b, NULL, 0);
    char big[200];
    memset(big, 'x', sizeof(big));
    luray_buf_put_str(&b, big, sizeof(big));
    assert_int_equal(b.len, 1 + 3 + 1 + 2 + 200);
    uint8_t *d = dup_exact(b.data, b.len);
    luray_rd_t r;
    luray_rd_init(&r, d, b.len);
    size_t n;
    const char *s = luray_rd_str(&r, &n);
    assert_int_equal(n, 3);
    assert_memory_equal(s, "abc", 3);
    s = luray_rd_str(&r, &n);
    assert_non_null(s);
    assert_int_equal(n, 0);
    s = luray_rd_str(&r, &n);
    assert_int_equal(n, 200);
    assert_memory_equal(s, big, 200);
    assert_int_equal(r.err, 0);
    /* Every cut inside the long string fails with the length cleared. */
    for (size_t cut = 0; cut < 202; cut++) {
        luray_rd_init(&r, d + 5, cut);
        n = 12345;
        assert_null(luray_rd_str(&r, &n));
        assert_int_equal(n, 0);
        assert_int_equal(r.err, LURAY_EPROTO);
    }
    free(d);
    /* A length far past the end, and one that does not fit size_t arithmetic. */
    uint8_t liar[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 'a'};
    luray_rd_init(&r, liar, sizeof(liar));
    assert_null(luray_rd_str(&r, &n));
    assert_int_equal(n, 0);
    assert_int_equal(r.err, LURAY_EPROTO);
    luray_buf_close(&b);
}

static void test_reader_sticky_error(void **state)
{
    (void)state;
    const uint8_t data[] = {1, 2, 3, 4, 5, 6};
    luray_rd_t r;
    luray_rd_init(&r, data, sizeof(data));
    assert_int_equal(luray_rd_u16(&r), 0x0201);
    assert_true(luray_rd_u64(&r) == 0); /* only 4 left */
    assert_int_equal(r.err, LURAY_EPROTO);
    /* After the failure even reads that would fit give zeros, and nothing is consumed. */
    assert_int_equal(luray_rd_left(&r), 4);
    assert_int_equal(luray_rd_u8(&r), 0);
    assert_int_equal(luray_rd_u16(&r), 0);
    assert_int_equal(luray_rd_u32(&r), 0);
    assert_true(luray_rd_varint(&r) == 0);
    assert_true(luray_rd_f64(&r) == 0.0);
    assert_null(luray_rd_bytes(&r, 1));
    assert_null(luray_rd_bytes(&r, 0));
    size_t n = 99;
    assert_null(luray_rd_str(&r, &n));
    assert_int_equal(n, 0);
    assert_int_equal(r.err, LURAY_EPROTO);
    assert_int_equal(luray_rd_left(&r), 4);

    /* Each width fails alone at one byte short. */
    for (size_t w = 1; w <= 8; w *= 2) {
        luray_rd_init(&r, data, w - 1);
        uint64_t v = w == 1 ? luray_rd_u8(&r)
                   : w == 2 ? luray_rd_u16(&r)
                   : w == 4 ? luray_rd_u32(&r)
                            : luray_rd_u64(&r);
        assert_true(v == 0);
        assert_int_equal(r.err, LURAY_EPROTO);
    }
    /* Zero bytes of an empty input is fine. */
    luray_rd_init(&r, data, 0);
    assert_non_null(luray_rd_bytes(&r, 0));
    assert_int_equal(r.err, 0);
}

static void test_writer_sticky_error(void **state)
{
    (void)state;
    luray_buf_t b;
    luray_buf_init(&b);
    luray_buf_put_u32(&b, 7);
    /* An impossible reservation fails and the failure sticks: later writes are dropped. */
    assert_int_equal(luray_buf_reserve(&b, SIZE_MAX), LURAY_ENOMEM);
    assert_int_equal(b.err, LURAY_ENOMEM);
    luray_buf_put_u64(&b, 1);
    luray_buf_put_varint(&b, 300);
    luray_buf_put_str(&b, "abc", 3);
    luray_buf_put(&b, "z", 1);
    assert_int_equal(b.len, 4);
    assert_int_equal(luray_buf_reserve(&b, 1), LURAY_ENOMEM);
    /* The bytes written before the failure are intact. */
    luray_rd_t r;
    luray_rd_init(&r, b.data, b.len);
    assert_int_equal(luray_rd_u32(&r), 7);
    /* A reset clears the error and the buffer is usable again. */
    luray_buf_reset(&b);
    assert_int_equal(b.err, 0);
    assert_int_equal(b.len, 0);
    luray_buf_put_u16(&b, 0x1234);
    assert_int_equal(b.len, 2);
    assert_int_equal(b.err, 0);
    assert_int_equal(luray_buf_reserve(&b, SIZE_MAX / 2), LURAY_ENOMEM);
    luray_buf_close(&b);
}

/* ---- task specs ---- */

static const uint8_t g_blob[] = "\x1bLua-bytecode-ish\0with zeros";
static const char g_args[] = "\x01\x02\x03 args";
static uint8_t g_deps[2 * 16];
static uint8_t g_contained[3 * 16];

static luray_oid_t oid(uint32_t node, uint32_t proc, uint64_t seq)
{
    luray_oid_t o = {node, proc, seq};
    return o;
}

static void fill_spec(luray_task_spec_t *t, uint8_t kind)
{
    memset(t, 0, sizeof(*t));
    t->task_id = oid(0x11223344, 7, (uint64_t)5 << LURAY_OID_INDEX_BITS);
    t->kind = kind;
    t->actor_id = oid(0x11223344, 9, 0xfedcba9876543210ull);
    for (int i = 0; i < 16; i++)
        t->func_hash[i] = (uint8_t)(0xa0 + i);
    t->func_blob = g_blob;
    t->func_blob_len = sizeof(g_blob);
    t->method = "incr";
    t->method_len = 4;
    t->args = (const uint8_t *)g_args;
    t->args_len = sizeof(g_args) - 1;
    t->args_object = (luray_oid_t){1, 5, 0x70000};
    for (size_t i = 0; i < sizeof(g_deps); i++)
        g_deps[i] = (uint8_t)(i * 3 + 1);
    for (size_t i = 0; i < sizeof(g_contained); i++)
        g_contained[i] = (uint8_t)(i * 7 + 2);
    t->n_deps = 2;
    t->deps = g_deps;
    t->n_contained = 3;
    t->contained = g_contained;
    t->num_returns = 3;
    t->max_retries = 4;
    t->retry_exceptions = 1;
    t->n_res = 3;
    t->res[0] = (luray_res_t){"CPU", 3, 2 * LURAY_RES_UNIT};
    t->res[1] = (luray_res_t){"GPU", 3, LURAY_RES_UNIT / 2};
    t->res[2] = (luray_res_t){"custom_thing", 12, INT64_MAX};
    t->attempt = 2;
    t->strategy = 3;
    t->target_node = 0xcafe;
    t->soft = 1;
    t->pg_id = oid(1, 2, 3);
    t->bundle_index = -1;
    t->caller = 77;
    if (kind == LURAY_TASK_ACTOR_CREATE) {
        t->actor_name = "global_counter";
        t->actor_name_len = 14;
        t->ns = "ns1";
        t->ns_len = 3;
        t->detached = 1;
        t->get_if_exists = 1;
        t->max_restarts = -1;
        t->max_task_retries = 5;
        t->max_concurrency = 1000;
    }
}

static void assert_bytes_eq(const void *a, uint32_t alen, const void *b, uint32_t blen)
{
    assert_int_equal(alen, blen);
    if (alen) {
        assert_non_null(a);
        assert_non_null(b);
        assert_memory_equal(a, b, alen);
    }
}

static void assert_spec_eq(const luray_task_spec_t *a, const luray_task_spec_t *b)
{
    assert_true(luray_oid_eq(a->task_id, b->task_id));
    assert_int_equal(a->kind, b->kind);
    assert_true(luray_oid_eq(a->actor_id, b->actor_id));
    assert_memory_equal(a->func_hash, b->func_hash, 16);
    assert_int_equal(a->func_blob == NULL, b->func_blob == NULL);
    assert_bytes_eq(a->func_blob, a->func_blob_len, b->func_blob, b->func_blob_len);
    assert_bytes_eq(a->method, a->method_len, b->method, b->method_len);
    assert_bytes_eq(a->args, a->args_len, b->args, b->args_len);
    assert_true(luray_oid_eq(a->args_object, b->args_object));
    assert_bytes_eq(a->deps, a->n_deps * 16, b->deps, b->n_deps * 16);
    assert_int_equal(a->n_deps, b->n_deps);
    assert_bytes_eq(a->contained, a->n_contained * 16, b->contained, b->n_contained * 16);
    assert_int_equal(a->n_contained, b->n_contained);
    assert_int_equal(a->num_returns, b->num_returns);
    assert_int_equal(a->max_retries, b->max_retries);
    assert_int_equal(a->retry_exceptions, b->retry_exceptions);
    assert_int_equal(a->n_res, b->n_res);
    for (uint32_t i = 0; i < a->n_res; i++) {
        assert_bytes_eq(a->res[i].name, a->res[i].name_len, b->res[i].name, b->res[i].name_len);
        assert_true(a->res[i].amount == b->res[i].amount);
    }
    assert_int_equal(a->attempt, b->attempt);
    assert_int_equal(a->strategy, b->strategy);
    assert_int_equal(a->target_node, b->target_node);
    assert_int_equal(a->soft, b->soft);
    assert_true(luray_oid_eq(a->pg_id, b->pg_id));
    assert_int_equal(a->bundle_index, b->bundle_index);
    assert_int_equal(a->caller, b->caller);
    assert_bytes_eq(a->actor_name, a->actor_name_len, b->actor_name, b->actor_name_len);
    assert_bytes_eq(a->ns, a->ns_len, b->ns, b->ns_len);
    assert_int_equal(a->detached, b->detached);
    assert_int_equal(a->get_if_exists, b->get_if_exists);
    assert_int_equal(a->max_restarts, b->max_restarts);
    assert_int_equal(a->max_task_retries, b->max_task_retries);
    assert_int_equal(a->max_concurrency, b->max_concurrency);
}

/* Encodes t, parses it back (checking it is equal), then checks every strict prefix fails. */
static void round_trip_and_truncate(const luray_task_spec_t *t)
{
    luray_buf_t b;
    luray_buf_init(&b);
    luray_proto_put_task(&b, t);
    assert_int_equal(b.err, 0);
    uint8_t *d = dup_exact(b.data, b.len);
    luray_rd_t r;
    luray_rd_init(&r, d, b.len);
    luray_task_spec_t got;
    assert_int_equal(luray_proto_parse_task(&r, &got), 0);
    assert_int_equal(luray_rd_left(&r), 0);
    assert_spec_eq(t, &got);
    /* Parsed pointers point into the message, not elsewhere. */
    if (got.func_blob)
        assert_true(got.func_blob > d && got.func_blob < d + b.len);
    assert_true(got.args >= d && got.args + got.args_len <= d + b.len);
    free(d);

    for (size_t n = 0; n < b.len; n++) {
        d = dup_exact(b.data, n);
        luray_rd_init(&r, d, n);
        assert_int_equal(luray_proto_parse_task(&r, &got), LURAY_EPROTO);
        free(d);
    }
    luray_buf_close(&b);
}

static void test_task_round_trip(void **state)
{
    (void)state;
    luray_task_spec_t t;
    fill_spec(&t, LURAY_TASK_NORMAL);
    round_trip_and_truncate(&t);
    fill_spec(&t, LURAY_TASK_ACTOR_CALL);
    round_trip_and_truncate(&t);
}

static void test_task_actor_create_round_trip(void **state)
{
    (void)state;
    luray_task_spec_t t;
    fill_spec(&t, LURAY_TASK_ACTOR_CREATE);
    round_trip_and_truncate(&t);
    /* An anonymous actor: empty name and namespace. */
    t.actor_name = NULL;
    t.actor_name_len = 0;
    t.ns = NULL;
    t.ns_len = 0;
    t.max_restarts = 0;
    round_trip_and_truncate(&t);
}

static void test_task_minimal(void **state)
{
    (void)state;
    /* No function blob (the receiver has it), no args, deps or resources. */
    luray_task_spec_t t;
    memset(&t, 0, sizeof(t));
    t.task_id = oid(1, 1, 1 << LURAY_OID_INDEX_BITS);
    t.num_returns = 1;
    round_trip_and_truncate(&t);
    luray_buf_t b;
    luray_buf_init(&b);
    luray_proto_put_task(&b, &t);
    luray_rd_t r;
    luray_rd_init(&r, b.data, b.len);
    luray_task_spec_t got;
    assert_int_equal(luray_proto_parse_task(&r, &got), 0);
    assert_null(got.func_blob);
    assert_int_equal(got.n_deps, 0);
    assert_int_equal(got.n_res, 0);
    luray_buf_close(&b);
}

/* Offset of n_deps in the encoding of a spec with no blob, empty method/args and no ids:
 * task id, kind, actor id, hash, blob flag, method len, args len, args object id. */
#define NDEPS_OFFSET (16 + 1 + 16 + 16 + 1 + 1 + 1 + 16)
/* Offset of n_res: then n_deps, n_contained, num_returns, max_retries, retry_exceptions. */
#define NRES_OFFSET (NDEPS_OFFSET + 1 + 1 + 2 + 1 + 1)

static void test_task_invalid_values(void **state)
{
    (void)state;
    luray_task_spec_t t, got;
    luray_buf_t b;
    luray_rd_t r;

    /* Unknown kind. */
    memset(&t, 0, sizeof(t));
    t.kind = LURAY_TASK_ACTOR_CALL + 1;
    luray_buf_init(&b);
    luray_proto_put_task(&b, &t);
    luray_rd_init(&r, b.data, b.len);
    assert_int_equal(luray_proto_parse_task(&r, &got), LURAY_EPROTO);
    luray_buf_close(&b);

    /* Too many returns. */
    memset(&t, 0, sizeof(t));
    t.num_returns = 1001;
    luray_buf_init(&b);
    luray_proto_put_task(&b, &t);
    luray_rd_init(&r, b.data, b.len);
    assert_int_equal(luray_proto_parse_task(&r, &got), LURAY_EPROTO);
    luray_buf_close(&b);
    t.num_returns = 1000;
    luray_buf_init(&b);
    luray_proto_put_task(&b, &t);
    luray_rd_init(&r, b.data, b.len);
    assert_int_equal(luray_proto_parse_task(&r, &got), 0);
    assert_int_equal(got.num_returns, 1000);
    luray_buf_close(&b);

    /* A negative resource amount. */
    memset(&t, 0, sizeof(t));
    t.n_res = 1;
    t.res[0] = (luray_res_t){"CPU", 3, -LURAY_RES_UNIT};
    luray_buf_init(&b);
    luray_proto_put_task(&b, &t);
    luray_rd_init(&r, b.data, b.len);
    assert_int_equal(luray_proto_parse_task(&r, &got), LURAY_EPROTO);
    luray_buf_close(&b);

    /* More resources than a spec holds: the count byte is patched past LURAY_RES_MAX. */
    memset(&t, 0, sizeof(t));
    luray_buf_init(&b);
    luray_proto_put_task(&b, &t);
    assert_int_equal(b.data[NRES_OFFSET], 0);
    b.data[NRES_OFFSET] = LURAY_RES_MAX + 1;
    luray_buf_t big;
    luray_buf_init(&big);
    luray_buf_put(&big, b.data, b.len);
    for (int i = 0; i < LURAY_RES_MAX + 1; i++) { /* well-formed entries, just too many */
        luray_buf_put_str(&big, "r", 1);
        luray_buf_put_u64(&big, 1);
    }
    luray_rd_init(&r, big.data, big.len);
    assert_int_equal(luray_proto_parse_task(&r, &got), LURAY_EPROTO);
    luray_buf_close(&big);
    b.data[NRES_OFFSET] = 0xff;
    luray_rd_init(&r, b.data, b.len);
    assert_int_equal(luray_proto_parse_task(&r, &got), LURAY_EPROTO);
    luray_buf_close(&b);

    /* Id counts that promise more bytes than there are (and would overflow count * 16). */
    uint64_t counts[] = {1, 1000, (uint64_t)1 << 60, UINT64_MAX};
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        luray_buf_init(&b);
        memset(&t, 0, sizeof(t));
        luray_proto_put_task(&b, &t); /* a valid spec is the tail we append to a new prefix */
        luray_buf_t m;
        luray_buf_init(&m);
        luray_buf_put(&m, b.data, NDEPS_OFFSET); /* up to n_deps */
        luray_buf_put_varint(&m, counts[i]);     /* n_deps */
        luray_buf_put(&m, b.data + NDEPS_OFFSET + 1, b.len - (NDEPS_OFFSET + 1));
        uint8_t *d = dup_exact(m.data, m.len);
        luray_rd_init(&r, d, m.len);
        assert_int_equal(luray_proto_parse_task(&r, &got), LURAY_EPROTO);
        free(d);
        luray_buf_close(&m);
        luray_buf_close(&b);
    }
}

static void test_task_sanity_offset(void **state)
{
    (void)state;
    /* The NRES_OFFSET arithmetic above matches the encoder. */
    luray_task_spec_t t;
    memset(&t, 0, sizeof(t));
    t.n_res = 1;
    t.res[0] = (luray_res_t){"CPU", 3, 1};
    luray_buf_t b;
    luray_buf_init(&b);
    luray_proto_put_task(&b, &t);
    assert_int_equal(b.data[NRES_OFFSET], 1);
    assert_int_equal(b.data[NRES_OFFSET + 1], 3);
    assert_memory_equal(b.data + NRES_OFFSET + 2, "CPU", 3);
    luray_buf_close(&b);
}

static void test_proto_ids(void **state)
{
    (void)state;
    luray_oid_t a = oid(0x01020304, 0xa0b0c0d0, 0x1122334455667788ull);
    luray_buf_t b;
    luray_buf_init(&b);
    luray_proto_put_id(&b, a);
    assert_int_equal(b.len, 16);
    assert_int_equal(b.data[0], 0x04);
    assert_int_equal(b.data[4], 0xd0);
    assert_int_equal(b.data[8], 0x88);
    assert_true(luray_oid_eq(luray_proto_id_at(b.data), a));
    luray_rd_t r;
    luray_rd_init(&r, b.data, 15);
    luray_proto_rd_id(&r);
    assert_int_equal(r.err, LURAY_EPROTO);
    luray_rd_init(&r, b.data, 16);
    assert_true(luray_oid_eq(luray_proto_rd_id(&r), a));
    assert_int_equal(r.err, 0);
    luray_buf_close(&b);
}

/* ---- oidmap ---- */

/* Checks the invariants of linear probing: len matches the occupied slots, and every entry is
 * reachable from its home slot without crossing an empty one. */
static void check_oidmap_invariants(const luray_oidmap_t *m)
{
    size_t used = 0;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].val)
            continue;
        used++;
        size_t mask = m->cap - 1;
        for (size_t j = luray_oid_hash(m->slots[i].key) & mask; j != i; j = (j + 1) & mask)
            assert_non_null(m->slots[j].val);
        assert_ptr_equal(luray_oidmap_get(m, m->slots[i].key), m->slots[i].val);
    }
    assert_int_equal(used, m->len);
    if (m->cap)
        assert_true(m->len * 4 <= m->cap * 3);
}

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

static void test_oidmap_basic(void **state)
{
    (void)state;
    luray_oidmap_t m;
    luray_oidmap_init(&m);
    luray_oid_t k = oid(1, 2, 3);
    assert_null(luray_oidmap_get(&m, k));
    assert_null(luray_oidmap_del(&m, k));
    int a, b;
    assert_int_equal(luray_oidmap_put(&m, k, &a), 0);
    assert_int_equal(m.len, 1);
    assert_ptr_equal(luray_oidmap_get(&m, k), &a);
    assert_null(luray_oidmap_get(&m, oid(1, 2, 4)));
    assert_null(luray_oidmap_get(&m, oid(0, 0, 0)));
    /* Replacing keeps one entry. */
    assert_int_equal(luray_oidmap_put(&m, k, &b), 0);
    assert_int_equal(m.len, 1);
    assert_ptr_equal(luray_oidmap_get(&m, k), &b);
    assert_null(luray_oidmap_del(&m, oid(9, 9, 9)));
    assert_int_equal(m.len, 1);
    assert_ptr_equal(luray_oidmap_del(&m, k), &b);
    assert_int_equal(m.len, 0);
    assert_null(luray_oidmap_get(&m, k));
    assert_null(luray_oidmap_del(&m, k));
    /* The nil id is a key like any other. */
    assert_int_equal(luray_oidmap_put(&m, oid(0, 0, 0), &a), 0);
    assert_ptr_equal(luray_oidmap_get(&m, oid(0, 0, 0)), &a);
    check_oidmap_invariants(&m);
    luray_oidmap_close(&m);
    assert_null(m.slots);
    assert_int_equal(m.cap, 0);
    assert_int_equal(m.len, 0);
}

#define MODEL_KEYS 3000

static void test_oidmap_random_vs_model(void **state)
{
    (void)state;
    /* Keys shaped like real ones (few nodes and procs, sequential seqs) plus random ones. */
    static luray_oid_t keys[MODEL_KEYS];
    static void *model[MODEL_KEYS];
    static char vals[MODEL_KEYS][2]; /* two distinct addresses per key, for replacements */
    for (int i = 0; i < MODEL_KEYS; i++) {
        if (i % 2)
            keys[i] = oid((uint32_t)(i % 3), (uint32_t)(i % 7), (uint64_t)i << LURAY_OID_INDEX_BITS);
        else
            keys[i] = oid((uint32_t)rnd(), (uint32_t)rnd(), rnd());
        model[i] = NULL;
    }
    luray_oidmap_t m;
    luray_oidmap_init(&m);
    size_t live = 0;
    for (int step = 0; step < 200000; step++) {
        /* Phases that mostly grow, then mostly shrink, so the table both fills and empties. */
        int phase = (step / 20000) % 2;
        int i = (int)(rnd() % MODEL_KEYS);
        unsigned op = (unsigned)(rnd() % 10);
        if (op < (phase ? 3u : 6u)) {
            void *v = &vals[i][rnd() & 1];
            assert_int_equal(luray_oidmap_put(&m, keys[i], v), 0);
            if (!model[i])
                live++;
            model[i] = v;
        } else if (op < 9) {
            void *got = luray_oidmap_del(&m, keys[i]);
            assert_ptr_equal(got, model[i]);
            if (model[i])
                live--;
            model[i] = NULL;
        } else {
            assert_ptr_equal(luray_oidmap_get(&m, keys[i]), model[i]);
        }
        assert_int_equal(m.len, live);
        if (step % 5000 == 0) {
            for (int k = 0; k < MODEL_KEYS; k++)
                assert_ptr_equal(luray_oidmap_get(&m, keys[k]), model[k]);
            check_oidmap_invariants(&m);
        }
    }
    for (int k = 0; k < MODEL_KEYS; k++)
        assert_ptr_equal(luray_oidmap_get(&m, keys[k]), model[k]);
    check_oidmap_invariants(&m);
    /* Delete everything: the map ends empty. */
    for (int k = 0; k < MODEL_KEYS; k++)
        assert_ptr_equal(luray_oidmap_del(&m, keys[k]), model[k]);
    assert_int_equal(m.len, 0);
    for (size_t s = 0; s < m.cap; s++)
        assert_null(m.slots[s].val);
    luray_oidmap_close(&m);
}

/* Finds `n` keys whose home slot in a table of `cap` slots is `home`. */
static void keys_homing_at(luray_oid_t *out, int n, size_t cap, size_t home, uint32_t tag)
{
    int found = 0;
    for (uint64_t seq = 1; found < n; seq++) {
        luray_oid_t k = oid(tag, 1, seq);
        if ((luray_oid_hash(k) & (cap - 1)) == home)
            out[found++] = k;
    }
}

static void test_oidmap_backward_shift(void **state)
{
    (void)state;
    /* The first put makes a 64-slot table; stay under its 48-entry limit so it does not grow. */
    const size_t cap = 64;
    /* Home 63 makes the chains wrap around to slot 0. */
    const size_t homes[] = {0, 21, 42, 63};
    int v[9];
    for (size_t h = 0; h < sizeof(homes) / sizeof(homes[0]); h++) {
        size_t home = homes[h];
        for (int del = 0; del < 9; del++) {
            luray_oidmap_t m;
            luray_oidmap_init(&m);
            luray_oid_t chain[5], next[4];
            keys_homing_at(chain, 5, cap, home, 1);
            keys_homing_at(next, 4, cap, (home + 1) & (cap - 1), 2);
            /* Interleave: the chain at `home` pushes the keys of home+1 further along. */
            luray_oid_t all[9] = {chain[0], chain[1], next[0], chain[2], next[1],
                                  chain[3], next[2], chain[4], next[3]};
            for (int i = 0; i < 9; i++)
                assert_int_equal(luray_oidmap_put(&m, all[i], &v[i]), 0);
            assert_int_equal(m.cap, cap);
            check_oidmap_invariants(&m);
            /* Delete one, then every other key must still be found. */
            assert_ptr_equal(luray_oidmap_del(&m, all[del]), &v[del]);
            check_oidmap_invariants(&m);
            for (int i = 0; i < 9; i++)
                assert_ptr_equal(luray_oidmap_get(&m, all[i]), i == del ? NULL : &v[i]);
            /* And a second deletion on the shifted table. */
            int del2 = (del + 4) % 9;
            assert_ptr_equal(luray_oidmap_del(&m, all[del2]), &v[del2]);
            check_oidmap_invariants(&m);
            for (int i = 0; i < 9; i++)
                assert_ptr_equal(luray_oidmap_get(&m, all[i]),
                                 i == del || i == del2 ? NULL : &v[i]);
            assert_int_equal(m.len, 7);
            luray_oidmap_close(&m);
        }
    }
}

static void test_oidmap_wraparound(void **state)
{
    (void)state;
    luray_oidmap_t m;
    luray_oidmap_init(&m);
    const size_t cap = 64;
    luray_oid_t tail[6];
    keys_homing_at(tail, 6, cap, cap - 2, 3);
    int v[6];
    for (int i = 0; i < 6; i++)
        assert_int_equal(luray_oidmap_put(&m, tail[i], &v[i]), 0);
    /* Slots 62, 63, 0, 1, 2, 3 hold the chain. */
    assert_non_null(m.slots[0].val);
    assert_non_null(m.slots[3].val);
    for (int i = 0; i < 6; i++) {
        assert_ptr_equal(luray_oidmap_del(&m, tail[i]), &v[i]);
        check_oidmap_invariants(&m);
        for (int k = i + 1; k < 6; k++)
            assert_ptr_equal(luray_oidmap_get(&m, tail[k]), &v[k]);
    }
    assert_int_equal(m.len, 0);
    luray_oidmap_close(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_build_walk),
        cmocka_unit_test(test_frame_reset_reuse),
        cmocka_unit_test(test_frame_empty),
        cmocka_unit_test(test_frame_truncated_every_length),
        cmocka_unit_test(test_frame_bad_magic),
        cmocka_unit_test(test_frame_wrong_count),
        cmocka_unit_test(test_frame_bad_body_lengths),
        cmocka_unit_test(test_frame_trailing_bytes),
        cmocka_unit_test(test_frame_end_after_error),
        cmocka_unit_test(test_buf_ints_little_endian),
        cmocka_unit_test(test_buf_grows),
        cmocka_unit_test(test_varint_round_trip),
        cmocka_unit_test(test_varint_malformed),
        cmocka_unit_test(test_str_round_trip),
        cmocka_unit_test(test_reader_sticky_error),
        cmocka_unit_test(test_writer_sticky_error),
        cmocka_unit_test(test_proto_ids),
        cmocka_unit_test(test_task_round_trip),
        cmocka_unit_test(test_task_actor_create_round_trip),
        cmocka_unit_test(test_task_minimal),
        cmocka_unit_test(test_task_sanity_offset),
        cmocka_unit_test(test_task_invalid_values),
        cmocka_unit_test(test_oidmap_basic),
        cmocka_unit_test(test_oidmap_random_vs_model),
        cmocka_unit_test(test_oidmap_backward_shift),
        cmocka_unit_test(test_oidmap_wraparound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
