/* The frames between the serve proxy and its replicas (nanomsg messages):
 *   requests  := u32 "LSQ1" | str reply_address | u32 count | count x request
 *   request   := u64 id | str method | str path | str query | u16 n | n x (str name, str value)
 *                | str body
 *   responses := u32 "LSR1" | u32 count | count x response
 *   response  := u64 id | u16 status | str content_type | str header_lines | str body
 * str is a u32 length and the bytes; integers are little-endian. */
#ifndef LURAY_SERVE_WIRE_H
#define LURAY_SERVE_WIRE_H

#include <stdint.h>

#include "http_parse.h"
#include "sbuf.h"

#define SERVE_REQ_MAGIC 0x3151534cu  /* "LSQ1" */
#define SERVE_RESP_MAGIC 0x3152534cu /* "LSR1" */

/* One request, without the frame head. */
void serve_wire_request(sbuf_t *b, uint64_t id, const serve_http_req_t *r);

/* One response, without the frame head. */
void serve_wire_response(sbuf_t *b, uint64_t id, int status, const char *content_type,
                         size_t ct_len, const char *header_lines, size_t hl_len, const char *body,
                         size_t body_len);

#endif
