/* Growable byte buffer and bounds-checked reader; integers are little-endian on the wire. */
#include "buf.h"

#include <stdlib.h>

#include "errors.h"

void luray_buf_init(luray_buf_t *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->err = 0;
}

void luray_buf_close(luray_buf_t *b)
{
    free(b->data);
    luray_buf_init(b);
}

void luray_buf_reset(luray_buf_t *b)
{
    b->len = 0;
    b->err = 0;
}

int luray_buf_reserve(luray_buf_t *b, size_t extra)
{
    if (b->err)
        return b->err;
    if (extra > SIZE_MAX / 2 - b->len) {
        b->err = LURAY_ENOMEM;
        return b->err;
    }
    size_t need = b->len + extra;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    uint8_t *d = realloc(b->data, cap);
    if (!d) {
        b->err = LURAY_ENOMEM;
        return b->err;
    }
    b->data = d;
    b->cap = cap;
    return 0;
}

uint8_t *luray_buf_steal(luray_buf_t *b, size_t *len)
{
    uint8_t *d = b->data;
    if (len)
        *len = b->len;
    luray_buf_init(b);
    return d;
}

void luray_buf_put(luray_buf_t *b, const void *p, size_t n)
{
    if (n == 0 || luray_buf_reserve(b, n))
        return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void luray_buf_put_u8(luray_buf_t *b, uint8_t v) { luray_buf_put(b, &v, 1); }

void luray_buf_put_u16(luray_buf_t *b, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    luray_buf_put(b, x, 2);
}

void luray_buf_put_u32(luray_buf_t *b, uint32_t v)
{
    uint8_t x[4];
    for (int i = 0; i < 4; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    luray_buf_put(b, x, 4);
}

void luray_buf_put_u64(luray_buf_t *b, uint64_t v)
{
    uint8_t x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    luray_buf_put(b, x, 8);
}

void luray_buf_put_f64(luray_buf_t *b, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    luray_buf_put_u64(b, u);
}

void luray_buf_put_varint(luray_buf_t *b, uint64_t v)
{
    uint8_t x[10];
    int n = 0;
    while (v >= 0x80) {
        x[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    x[n++] = (uint8_t)v;
    luray_buf_put(b, x, (size_t)n);
}

void luray_buf_put_str(luray_buf_t *b, const void *p, size_t n)
{
    luray_buf_put_varint(b, n);
    luray_buf_put(b, p, n);
}

const void *luray_rd_bytes(luray_rd_t *r, size_t n)
{
    if (r->err || luray_rd_left(r) < n) {
        r->err = LURAY_EPROTO;
        return NULL;
    }
    const void *p = r->p;
    r->p += n;
    return p;
}

uint8_t luray_rd_u8(luray_rd_t *r)
{
    const uint8_t *p = luray_rd_bytes(r, 1);
    return p ? p[0] : 0;
}

uint16_t luray_rd_u16(luray_rd_t *r)
{
    const uint8_t *p = luray_rd_bytes(r, 2);
    return p ? (uint16_t)(p[0] | (p[1] << 8)) : 0;
}

uint32_t luray_rd_u32(luray_rd_t *r)
{
    const uint8_t *p = luray_rd_bytes(r, 4);
    if (!p)
        return 0;
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

uint64_t luray_rd_u64(luray_rd_t *r)
{
    const uint8_t *p = luray_rd_bytes(r, 8);
    if (!p)
        return 0;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

double luray_rd_f64(luray_rd_t *r)
{
    uint64_t u = luray_rd_u64(r);
    double v;
    memcpy(&v, &u, 8);
    return v;
}

uint64_t luray_rd_varint(luray_rd_t *r)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        uint8_t c = luray_rd_u8(r);
        if (r->err)
            return 0;
        if (shift == 63 && c > 1) /* the tenth byte holds only bit 63; more would be lost */
            break;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80))
            return v;
    }
    r->err = LURAY_EPROTO;
    return 0;
}

const void *luray_rd_str(luray_rd_t *r, size_t *n)
{
    uint64_t len = luray_rd_varint(r);
    if (r->err || len > luray_rd_left(r)) {
        r->err = LURAY_EPROTO;
        *n = 0;
        return NULL;
    }
    *n = (size_t)len;
    return luray_rd_bytes(r, (size_t)len);
}
