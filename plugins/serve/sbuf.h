/* A growable byte buffer and a bounds-checked reader: the serve plugin's frames between the proxy
 * and replicas, HTTP responses and JSON text are built in these. */
#ifndef LURAY_SERVE_SBUF_H
#define LURAY_SERVE_SBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *data;
    size_t len, cap;
    bool oom; /* an allocation failed: the contents are incomplete */
} sbuf_t;

void sbuf_init(sbuf_t *b);
void sbuf_free(sbuf_t *b);
/* Makes room for n more bytes; false (and b->oom) when memory ran out. */
bool sbuf_reserve(sbuf_t *b, size_t n);
void sbuf_put(sbuf_t *b, const void *p, size_t n);
void sbuf_putc(sbuf_t *b, char c);
void sbuf_puts(sbuf_t *b, const char *s);
void sbuf_printf(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sbuf_u16(sbuf_t *b, uint16_t v);
void sbuf_u32(sbuf_t *b, uint32_t v);
void sbuf_u64(sbuf_t *b, uint64_t v);
/* A string: u32 length, then its bytes. */
void sbuf_str(sbuf_t *b, const char *s, size_t n);
/* Hands the bytes over (the caller frees them) and leaves b empty. */
char *sbuf_take(sbuf_t *b, size_t *len);

typedef struct {
    const char *p;
    size_t len, pos;
    bool err; /* a read went past the end: every later read gives 0 */
} srd_t;

void srd_init(srd_t *r, const void *p, size_t len);
uint16_t srd_u16(srd_t *r);
uint32_t srd_u32(srd_t *r);
uint64_t srd_u64(srd_t *r);
/* A string written by sbuf_str: a pointer into the input and its length. */
const char *srd_str(srd_t *r, size_t *len);

#endif
