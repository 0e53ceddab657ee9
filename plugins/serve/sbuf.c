/* The serve plugin's growable byte buffer and its bounds-checked reader (little-endian). */
#include "sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sbuf_init(sbuf_t *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->oom = false;
}

void sbuf_free(sbuf_t *b)
{
    free(b->data);
    sbuf_init(b);
}

bool sbuf_reserve(sbuf_t *b, size_t n)
{
    if (b->oom)
        return false;
    if (b->len + n <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) {
        b->oom = true;
        return false;
    }
    b->data = d;
    b->cap = cap;
    return true;
}

void sbuf_put(sbuf_t *b, const void *p, size_t n)
{
    if (!n || !sbuf_reserve(b, n))
        return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void sbuf_putc(sbuf_t *b, char c)
{
    if (!sbuf_reserve(b, 1))
        return;
    b->data[b->len++] = c;
}

void sbuf_puts(sbuf_t *b, const char *s)
{
    sbuf_put(b, s, strlen(s));
}

void sbuf_printf(sbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(small)) {
        sbuf_put(b, small, (size_t)n);
        return;
    }
    if (!sbuf_reserve(b, (size_t)n + 1))
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void sbuf_u16(sbuf_t *b, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    sbuf_put(b, x, 2);
}

void sbuf_u32(sbuf_t *b, uint32_t v)
{
    uint8_t x[4];
    for (int i = 0; i < 4; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    sbuf_put(b, x, 4);
}

void sbuf_u64(sbuf_t *b, uint64_t v)
{
    uint8_t x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    sbuf_put(b, x, 8);
}

void sbuf_str(sbuf_t *b, const char *s, size_t n)
{
    sbuf_u32(b, (uint32_t)n);
    sbuf_put(b, s, n);
}

char *sbuf_take(sbuf_t *b, size_t *len)
{
    char *d = b->data;
    *len = b->len;
    sbuf_init(b);
    return d;
}

void srd_init(srd_t *r, const void *p, size_t len)
{
    r->p = p;
    r->len = len;
    r->pos = 0;
    r->err = false;
}

static const uint8_t *take(srd_t *r, size_t n)
{
    if (r->err || r->len - r->pos < n) {
        r->err = true;
        return NULL;
    }
    const uint8_t *p = (const uint8_t *)r->p + r->pos;
    r->pos += n;
    return p;
}

uint16_t srd_u16(srd_t *r)
{
    const uint8_t *p = take(r, 2);
    return p ? (uint16_t)(p[0] | p[1] << 8) : 0;
}

uint32_t srd_u32(srd_t *r)
{
    const uint8_t *p = take(r, 4);
    if (!p)
        return 0;
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

uint64_t srd_u64(srd_t *r)
{
    const uint8_t *p = take(r, 8);
    if (!p)
        return 0;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

const char *srd_str(srd_t *r, size_t *len)
{
    uint32_t n = srd_u32(r);
    const uint8_t *p = take(r, n);
    *len = p ? n : 0;
    return p ? (const char *)p : "";
}
