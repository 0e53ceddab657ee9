/* Wire framing: one nanomsg message (a frame) carries a batch of protocol messages.
 *
 * Frame:   u32 magic "LRW1" | u32 count | count x message
 * Message: u32 body_len | u16 type | u16 flags | body
 * Batching many small messages into one frame is what makes many small tasks cheap. */
#ifndef LURAY_CORE_WIRE_H
#define LURAY_CORE_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define LURAY_WIRE_MAGIC 0x3157524cu /* "LRW1" */
#define LURAY_WIRE_FRAME_HDR 8
#define LURAY_WIRE_MSG_HDR 8
#define LURAY_WIRE_MAX_BODY (1u << 30)

typedef struct {
    luray_buf_t buf;
    uint32_t count;
    size_t open; /* offset of the header of the message being written */
} luray_frame_t;

void luray_frame_init(luray_frame_t *f);
void luray_frame_close(luray_frame_t *f);
void luray_frame_reset(luray_frame_t *f);
/* Starts a message and returns the buffer to write its body into; luray_frame_end closes it. */
luray_buf_t *luray_frame_begin(luray_frame_t *f, uint16_t type, uint16_t flags);
void luray_frame_end(luray_frame_t *f);
static inline int luray_frame_empty(const luray_frame_t *f) { return f->count == 0; }

typedef struct {
    uint16_t type;
    uint16_t flags;
    const uint8_t *body;
    uint32_t len;
} luray_msg_t;

/* Iterates the messages of a received frame. Returns 1 with *m filled, 0 at the end, or
 * LURAY_EPROTO for a malformed frame (bad magic, count or lengths); `pos` starts at 0. */
int luray_frame_next(const uint8_t *frame, size_t len, size_t *pos, luray_msg_t *m);
/* Checks a whole frame before any of it is acted on: 0 or LURAY_EPROTO. */
int luray_frame_check(const uint8_t *frame, size_t len);

#endif
