/* Encoding and parsing of structured protocol messages. */
#include "protocol.h"

#include <string.h>

#include "errors.h"

void luray_proto_put_id(luray_buf_t *b, luray_oid_t id)
{
    luray_buf_put_u32(b, id.node);
    luray_buf_put_u32(b, id.proc);
    luray_buf_put_u64(b, id.seq);
}

luray_oid_t luray_proto_rd_id(luray_rd_t *r)
{
    luray_oid_t id;
    id.node = luray_rd_u32(r);
    id.proc = luray_rd_u32(r);
    id.seq = luray_rd_u64(r);
    return id;
}

luray_oid_t luray_proto_id_at(const uint8_t *p)
{
    luray_rd_t r;
    luray_rd_init(&r, p, 16);
    return luray_proto_rd_id(&r);
}

void luray_proto_put_task(luray_buf_t *b, const luray_task_spec_t *t)
{
    luray_proto_put_id(b, t->task_id);
    luray_buf_put_u8(b, t->kind);
    luray_proto_put_id(b, t->actor_id);
    luray_buf_put(b, t->func_hash, 16);
    luray_buf_put_u8(b, t->func_blob != NULL);
    if (t->func_blob)
        luray_buf_put_str(b, t->func_blob, t->func_blob_len);
    luray_buf_put_str(b, t->method, t->method_len);
    luray_buf_put_str(b, t->args, t->args_len);
    luray_proto_put_id(b, t->args_object);
    luray_buf_put_varint(b, t->n_deps);
    luray_buf_put(b, t->deps, (size_t)t->n_deps * 16);
    luray_buf_put_varint(b, t->n_contained);
    luray_buf_put(b, t->contained, (size_t)t->n_contained * 16);
    luray_buf_put_u16(b, t->num_returns);
    luray_buf_put_u8(b, t->max_retries);
    luray_buf_put_u8(b, t->retry_exceptions);
    luray_buf_put_u8(b, (uint8_t)t->n_res);
    for (uint32_t i = 0; i < t->n_res; i++) {
        luray_buf_put_str(b, t->res[i].name, t->res[i].name_len);
        luray_buf_put_u64(b, (uint64_t)t->res[i].amount);
    }
    luray_buf_put_u32(b, t->attempt);
    luray_buf_put_u8(b, t->strategy);
    luray_buf_put_u32(b, t->target_node);
    luray_buf_put_u8(b, t->soft);
    luray_proto_put_id(b, t->pg_id);
    luray_buf_put_u32(b, (uint32_t)t->bundle_index);
    luray_buf_put_u32(b, t->caller);
    if (t->kind == LURAY_TASK_ACTOR_CREATE) {
        luray_buf_put_str(b, t->actor_name, t->actor_name_len);
        luray_buf_put_str(b, t->ns, t->ns_len);
        luray_buf_put_u8(b, t->detached);
        luray_buf_put_u8(b, t->get_if_exists);
        luray_buf_put_u32(b, (uint32_t)t->max_restarts);
        luray_buf_put_u32(b, (uint32_t)t->max_task_retries);
        luray_buf_put_u32(b, t->max_concurrency);
    }
}

static const uint8_t *rd_ids(luray_rd_t *r, uint32_t *n)
{
    uint64_t count = luray_rd_varint(r);
    if (r->err || count > luray_rd_left(r) / 16) {
        r->err = LURAY_EPROTO;
        *n = 0;
        return NULL;
    }
    *n = (uint32_t)count;
    return luray_rd_bytes(r, (size_t)count * 16);
}

static const void *rd_str32(luray_rd_t *r, uint32_t *len)
{
    size_t n;
    const void *p = luray_rd_str(r, &n);
    if (n > UINT32_MAX)
        r->err = LURAY_EPROTO;
    *len = (uint32_t)n;
    return p;
}

int luray_proto_parse_task(luray_rd_t *r, luray_task_spec_t *t)
{
    memset(t, 0, sizeof(*t));
    t->task_id = luray_proto_rd_id(r);
    t->kind = luray_rd_u8(r);
    t->actor_id = luray_proto_rd_id(r);
    const void *h = luray_rd_bytes(r, 16);
    if (h)
        memcpy(t->func_hash, h, 16);
    if (luray_rd_u8(r))
        t->func_blob = rd_str32(r, &t->func_blob_len);
    t->method = rd_str32(r, &t->method_len);
    t->args = rd_str32(r, &t->args_len);
    t->args_object = luray_proto_rd_id(r);
    t->deps = rd_ids(r, &t->n_deps);
    t->contained = rd_ids(r, &t->n_contained);
    t->num_returns = luray_rd_u16(r);
    t->max_retries = luray_rd_u8(r);
    t->retry_exceptions = luray_rd_u8(r);
    t->n_res = luray_rd_u8(r);
    if (t->n_res > LURAY_RES_MAX)
        return LURAY_EPROTO;
    for (uint32_t i = 0; i < t->n_res; i++) {
        t->res[i].name = rd_str32(r, &t->res[i].name_len);
        t->res[i].amount = (int64_t)luray_rd_u64(r);
        if (t->res[i].amount < 0)
            return LURAY_EPROTO;
    }
    t->attempt = luray_rd_u32(r);
    t->strategy = luray_rd_u8(r);
    t->target_node = luray_rd_u32(r);
    t->soft = luray_rd_u8(r);
    t->pg_id = luray_proto_rd_id(r);
    t->bundle_index = (int32_t)luray_rd_u32(r);
    t->caller = luray_rd_u32(r);
    if (t->kind == LURAY_TASK_ACTOR_CREATE) {
        t->actor_name = rd_str32(r, &t->actor_name_len);
        t->ns = rd_str32(r, &t->ns_len);
        t->detached = luray_rd_u8(r);
        t->get_if_exists = luray_rd_u8(r);
        t->max_restarts = (int32_t)luray_rd_u32(r);
        t->max_task_retries = (int32_t)luray_rd_u32(r);
        t->max_concurrency = luray_rd_u32(r);
    }
    if (r->err || t->kind > LURAY_TASK_ACTOR_CALL || t->num_returns > 1000)
        return LURAY_EPROTO;
    return 0;
}
