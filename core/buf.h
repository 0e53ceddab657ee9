/* A growable byte buffer (writer) and a bounds-checked reader over bytes. */
#ifndef LURAY_CORE_BUF_H
#define LURAY_CORE_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
    int err; /* sticky: LURAY_ENOMEM after a failed grow; later writes are dropped */
} luray_buf_t;

void luray_buf_init(luray_buf_t *b);
void luray_buf_close(luray_buf_t *b);
void luray_buf_reset(luray_buf_t *b);
int luray_buf_reserve(luray_buf_t *b, size_t extra);
/* Hands the bytes to the caller (free() them); the buffer is empty afterwards. */
uint8_t *luray_buf_steal(luray_buf_t *b, size_t *len);

void luray_buf_put(luray_buf_t *b, const void *p, size_t n);
void luray_buf_put_u8(luray_buf_t *b, uint8_t v);
void luray_buf_put_u16(luray_buf_t *b, uint16_t v);
void luray_buf_put_u32(luray_buf_t *b, uint32_t v);
void luray_buf_put_u64(luray_buf_t *b, uint64_t v);
void luray_buf_put_f64(luray_buf_t *b, double v);
void luray_buf_put_varint(luray_buf_t *b, uint64_t v);
/* A varint length followed by the bytes. */
void luray_buf_put_str(luray_buf_t *b, const void *p, size_t n);

/* Little-endian integers at a raw pointer (fixed headers written in place). */
static inline void luray_le_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void luray_le_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t luray_le_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t luray_le_get64(const uint8_t *p)
{
    return (uint64_t)luray_le_get32(p) | (uint64_t)luray_le_get32(p + 4) << 32;
}

/* Reader: every get checks bounds; after the first failure `err` is set (LURAY_EPROTO) and
 * every later get returns zeros, so a decoder checks once at the end. */
typedef struct {
    const uint8_t *p;
    const uint8_t *end;
    int err;
} luray_rd_t;

static inline void luray_rd_init(luray_rd_t *r, const void *p, size_t n)
{
    r->p = (const uint8_t *)p;
    r->end = r->p + n;
    r->err = 0;
}

static inline size_t luray_rd_left(const luray_rd_t *r) { return (size_t)(r->end - r->p); }

uint8_t luray_rd_u8(luray_rd_t *r);
uint16_t luray_rd_u16(luray_rd_t *r);
uint32_t luray_rd_u32(luray_rd_t *r);
uint64_t luray_rd_u64(luray_rd_t *r);
double luray_rd_f64(luray_rd_t *r);
uint64_t luray_rd_varint(luray_rd_t *r);
/* Returns a pointer into the input (no copy), or NULL with err set. */
const void *luray_rd_bytes(luray_rd_t *r, size_t n);
const void *luray_rd_str(luray_rd_t *r, size_t *n);

#endif
