/* Writes the requests and responses that travel between the serve proxy and its replicas. */
#include "wire.h"

#define SPAN(r, s) ((r)->data + (s).off), (s).len

void serve_wire_request(sbuf_t *b, uint64_t id, const serve_http_req_t *r)
{
    sbuf_reserve(b, 64 + r->len);
    sbuf_u64(b, id);
    sbuf_str(b, SPAN(r, r->method));
    sbuf_str(b, SPAN(r, r->path));
    sbuf_str(b, SPAN(r, r->query));
    sbuf_u16(b, (uint16_t)r->n_headers);
    for (uint32_t i = 0; i < r->n_headers; i++) {
        sbuf_str(b, SPAN(r, r->names[i]));
        sbuf_str(b, SPAN(r, r->values[i]));
    }
    sbuf_str(b, SPAN(r, r->body));
}

void serve_wire_response(sbuf_t *b, uint64_t id, int status, const char *content_type,
                         size_t ct_len, const char *header_lines, size_t hl_len, const char *body,
                         size_t body_len)
{
    sbuf_reserve(b, 26 + ct_len + hl_len + body_len);
    sbuf_u64(b, id);
    sbuf_u16(b, (uint16_t)status);
    sbuf_str(b, content_type, ct_len);
    sbuf_str(b, header_lines, hl_len);
    sbuf_str(b, body, body_len);
}
