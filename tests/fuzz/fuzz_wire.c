/* libFuzzer target: arbitrary bytes walked as a wire frame, each message body parsed as a task
 * spec. Nothing may crash or read outside the input; a frame that luray_frame_check accepts must
 * walk to exactly its count; a spec that parses must survive an encode/parse round trip. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "errors.h"
#include "protocol.h"
#include "wire.h"

static int same_bytes(const void *a, uint32_t alen, const void *b, uint32_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* The fields of two specs agree (pointers compared by the bytes they point at). */
static int same_spec(const luray_task_spec_t *a, const luray_task_spec_t *b)
{
    if (!luray_oid_eq(a->task_id, b->task_id) || a->kind != b->kind ||
        !luray_oid_eq(a->actor_id, b->actor_id) || memcmp(a->func_hash, b->func_hash, 16) ||
        (a->func_blob == NULL) != (b->func_blob == NULL) ||
        !same_bytes(a->func_blob, a->func_blob_len, b->func_blob, b->func_blob_len) ||
        !same_bytes(a->method, a->method_len, b->method, b->method_len) ||
        !same_bytes(a->args, a->args_len, b->args, b->args_len) || a->n_deps != b->n_deps ||
        !same_bytes(a->deps, a->n_deps * 16, b->deps, b->n_deps * 16) ||
        a->n_contained != b->n_contained ||
        !same_bytes(a->contained, a->n_contained * 16, b->contained, b->n_contained * 16) ||
        a->num_returns != b->num_returns || a->max_retries != b->max_retries ||
        a->retry_exceptions != b->retry_exceptions || a->n_res != b->n_res ||
        a->attempt != b->attempt || a->strategy != b->strategy ||
        a->target_node != b->target_node || a->soft != b->soft ||
        !luray_oid_eq(a->pg_id, b->pg_id) || a->bundle_index != b->bundle_index ||
        a->caller != b->caller ||
        !same_bytes(a->actor_name, a->actor_name_len, b->actor_name, b->actor_name_len) ||
        !same_bytes(a->ns, a->ns_len, b->ns, b->ns_len) || a->detached != b->detached ||
        a->get_if_exists != b->get_if_exists || a->max_restarts != b->max_restarts ||
        a->max_task_retries != b->max_task_retries || a->max_concurrency != b->max_concurrency)
        return 0;
    for (uint32_t i = 0; i < a->n_res; i++)
        if (!same_bytes(a->res[i].name, a->res[i].name_len, b->res[i].name, b->res[i].name_len) ||
            a->res[i].amount != b->res[i].amount)
            return 0;
    return 1;
}

static void parse_body(const luray_msg_t *m)
{
    luray_rd_t r;
    luray_rd_init(&r, m->body, m->len);
    luray_task_spec_t t;
    int rc = luray_proto_parse_task(&r, &t);
    if (rc != 0) {
        if (rc != LURAY_EPROTO)
            abort();
        return;
    }
    if (r.p < m->body || r.p > m->body + m->len || t.n_res > LURAY_RES_MAX)
        abort();
    /* What parses re-encodes to at most the bytes it came from, and parses back the same. */
    luray_buf_t b;
    luray_buf_init(&b);
    luray_proto_put_task(&b, &t);
    if (b.err || b.len > (size_t)(r.p - m->body))
        abort();
    luray_rd_t r2;
    luray_rd_init(&r2, b.data, b.len);
    luray_task_spec_t t2;
    if (luray_proto_parse_task(&r2, &t2) != 0 || luray_rd_left(&r2) != 0 || !same_spec(&t, &t2))
        abort();
    luray_buf_close(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int checked = luray_frame_check(data, size);
    if (checked != 0 && checked != LURAY_EPROTO)
        abort();
    /* Walk even a frame the check refused: the iterator alone must stay in bounds. */
    size_t pos = 0;
    luray_msg_t m;
    uint32_t n = 0;
    int rc;
    while ((rc = luray_frame_next(data, size, &pos, &m)) == 1) {
        if (pos > size || m.body < data || m.body + m.len > data + size)
            abort();
        n++;
        parse_body(&m);
    }
    if (rc != 0 && rc != LURAY_EPROTO)
        abort();
    if (checked == 0) {
        uint32_t count = (uint32_t)data[4] | (uint32_t)data[5] << 8 | (uint32_t)data[6] << 16 |
                         (uint32_t)data[7] << 24;
        if (rc != 0 || pos != size || n != count)
            abort();
    }
    return 0;
}
