/* Wire framing: building and walking batches of messages. */
#include "wire.h"

#include "errors.h"

void luray_frame_init(luray_frame_t *f)
{
    luray_buf_init(&f->buf);
    f->count = 0;
}

void luray_frame_close(luray_frame_t *f)
{
    luray_buf_close(&f->buf);
    f->count = 0;
}

void luray_frame_reset(luray_frame_t *f)
{
    luray_buf_reset(&f->buf);
    f->count = 0;
}

static void patch_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t read_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

luray_buf_t *luray_frame_begin(luray_frame_t *f, uint16_t type, uint16_t flags)
{
    if (f->count == 0 && f->buf.len == 0) {
        luray_buf_put_u32(&f->buf, LURAY_WIRE_MAGIC);
        luray_buf_put_u32(&f->buf, 0);
    }
    f->open = f->buf.len;
    luray_buf_put_u32(&f->buf, 0); /* body length, patched by luray_frame_end */
    luray_buf_put_u16(&f->buf, type);
    luray_buf_put_u16(&f->buf, flags);
    return &f->buf;
}

void luray_frame_end(luray_frame_t *f)
{
    if (f->buf.err)
        return;
    size_t pos = f->open;
    patch_u32(f->buf.data + pos, (uint32_t)(f->buf.len - pos - LURAY_WIRE_MSG_HDR));
    f->count++;
    patch_u32(f->buf.data + 4, f->count);
}

int luray_frame_next(const uint8_t *frame, size_t len, size_t *pos, luray_msg_t *m)
{
    if (*pos == 0) {
        if (len < LURAY_WIRE_FRAME_HDR || read_u32(frame) != LURAY_WIRE_MAGIC)
            return LURAY_EPROTO;
        *pos = LURAY_WIRE_FRAME_HDR;
    }
    if (*pos == len)
        return 0;
    if (len - *pos < LURAY_WIRE_MSG_HDR)
        return LURAY_EPROTO;
    const uint8_t *h = frame + *pos;
    uint32_t body = read_u32(h);
    if (body > LURAY_WIRE_MAX_BODY || body > len - *pos - LURAY_WIRE_MSG_HDR)
        return LURAY_EPROTO;
    m->type = (uint16_t)(h[4] | h[5] << 8);
    m->flags = (uint16_t)(h[6] | h[7] << 8);
    m->body = h + LURAY_WIRE_MSG_HDR;
    m->len = body;
    *pos += LURAY_WIRE_MSG_HDR + body;
    return 1;
}

int luray_frame_check(const uint8_t *frame, size_t len)
{
    size_t pos = 0;
    luray_msg_t m;
    uint32_t n = 0;
    int rc;
    while ((rc = luray_frame_next(frame, len, &pos, &m)) == 1)
        n++;
    if (rc < 0)
        return rc;
    return n == read_u32(frame + 4) ? 0 : LURAY_EPROTO;
}
