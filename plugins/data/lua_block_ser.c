/* data_block_serializer: a Block travels as a small header (version, rows, and per column its
 * name, type, row shape and buffer sizes) plus its column buffers out of band (one per column, two
 * for strings: offsets then bytes), and decodes as read-only Columns viewing the stored object. */
#include "lua_block.h"

#include <stdlib.h>
#include <limits.h>
#include <string.h>

#define BLOCK_SER_VERSION 1
/* Smallest header of one column: name length, a 1-byte name, type, ndim, one buffer size. */
#define MIN_COL_HEADER (4 + 1 + 1 + 1 + 8)

/* ---- encode ---- */

typedef struct {
    uint8_t *p;
    size_t len;
} hdr_t;

static void put(hdr_t *h, const void *v, size_t n)
{
    memcpy(h->p + h->len, v, n);
    h->len += n;
}

/* Every luray node is little-endian: integers go in native order, as in the example plugin. */
static void put_u64(hdr_t *h, uint64_t v)
{
    put(h, &v, 8);
}

static void put_u32(hdr_t *h, uint32_t v)
{
    put(h, &v, 4);
}

static size_t header_size(const data_block_t *b)
{
    size_t n = 4 + 8 + 4;
    for (int k = 0; k < b->ncols; k++)
        n += 4 + strlen(b->names[k]) + 2 + 8 * (size_t)b->cols[k]->ndim +
             (b->cols[k]->type == DCOL_STRING ? 16 : 8);
    return n;
}

/* The byte range of column c's values, and for strings its offsets (which may not start at 0 in
 * a slice: the decoder rebases them). */
static void column_spans(const dcol_t *c, const void **data, size_t *dlen)
{
    if (c->type == DCOL_STRING) {
        *data = (const char *)c->data + c->offsets[0];
        *dlen = (size_t)(c->offsets[c->len] - c->offsets[0]);
    } else {
        *data = c->data;
        *dlen = (size_t)c->len * dcol_value_size(c);
    }
}

static int block_encode(const luray_host_api_t *h, lua_State *L, int idx, luray_ser_writer_t *w)
{
    data_block_t *b = luaL_testudata(L, idx, DATA_BLOCK_MT);
    if (b == NULL)
        return LURAY_EINVAL;
    hdr_t hd = {malloc(header_size(b)), 0};
    if (hd.p == NULL)
        return LURAY_ENOMEM;
    put_u32(&hd, BLOCK_SER_VERSION);
    put_u64(&hd, (uint64_t)b->nrows);
    put_u32(&hd, (uint32_t)b->ncols);
    for (int k = 0; k < b->ncols; k++) {
        const dcol_t *c = b->cols[k];
        uint32_t nlen = (uint32_t)strlen(b->names[k]);
        put_u32(&hd, nlen);
        put(&hd, b->names[k], nlen);
        uint8_t tn[2] = {(uint8_t)c->type, (uint8_t)c->ndim};
        put(&hd, tn, 2);
        for (int d = 0; d < c->ndim; d++)
            put_u64(&hd, (uint64_t)c->shape[d]);
        const void *data;
        size_t dlen;
        column_spans(c, &data, &dlen);
        if (c->type == DCOL_STRING)
            put_u64(&hd, (uint64_t)(c->len + 1) * 8);
        put_u64(&hd, dlen);
    }
    int rc = h->ser_write(w, hd.p, hd.len);
    free(hd.p);
    for (int k = 0; k < b->ncols && rc == 0; k++) {
        const dcol_t *c = b->cols[k];
        const void *data;
        size_t dlen;
        column_spans(c, &data, &dlen);
        if (c->type == DCOL_STRING)
            rc = h->ser_write_buffer(w, c->offsets, (size_t)(c->len + 1) * 8);
        if (rc == 0)
            rc = h->ser_write_buffer(w, data, dlen);
    }
    return rc;
}

/* ---- decode ---- */

typedef struct {
    const uint8_t *p;
    size_t left;
    bool bad;
} rd_t;

static const void *take_bytes(rd_t *r, size_t n)
{
    if (r->bad || n > r->left) {
        r->bad = true;
        return NULL;
    }
    const void *at = r->p;
    r->p += n;
    r->left -= n;
    return at;
}

static uint64_t get_u64(rd_t *r)
{
    uint64_t v = 0;
    const void *at = take_bytes(r, 8);
    if (at != NULL)
        memcpy(&v, at, 8);
    return v;
}

static uint32_t get_u32(rd_t *r)
{
    uint32_t v = 0;
    const void *at = take_bytes(r, 4);
    if (at != NULL)
        memcpy(&v, at, 4);
    return v;
}

static uint8_t get_u8(rd_t *r)
{
    const uint8_t *at = take_bytes(r, 1);
    return at ? *at : 0;
}

/* One column's header: name copied NUL-terminated to *names_at, the view's type and shape, and
 * the sizes its buffers must have. 0 or LURAY_EPROTO. */
static int read_column(rd_t *r, int64_t nrows, char **names_at, dcol_t *v, uint64_t size[2])
{
    uint32_t nlen = get_u32(r);
    const char *name = take_bytes(r, nlen);
    if (name == NULL || nlen == 0 || memchr(name, '\0', nlen) != NULL)
        return LURAY_EPROTO;
    memcpy(*names_at, name, nlen);
    (*names_at)[nlen] = '\0';
    memset(v, 0, sizeof(*v));
    uint8_t type = get_u8(r), ndim = get_u8(r);
    if (r->bad || type >= DCOL_NTYPES || (type == DCOL_TENSOR) != (ndim > 0) ||
        ndim > DCOL_MAX_DIMS)
        return LURAY_EPROTO;
    v->type = (dcol_type_t)type;
    v->ndim = ndim;
    v->len = nrows;
    uint64_t row = 4;
    for (int d = 0; d < ndim; d++) {
        uint64_t s = get_u64(r);
        if (s < 1 || s > ((uint64_t)1 << 40) / row)
            return LURAY_EPROTO;
        v->shape[d] = (int64_t)s;
        row *= s;
    }
    size_t w = dcol_value_size(v);
    if (v->type == DCOL_STRING) {
        size[0] = get_u64(r);
        size[1] = get_u64(r);
        if (size[0] != ((uint64_t)nrows + 1) * 8)
            return LURAY_EPROTO;
    } else {
        size[0] = get_u64(r);
        if ((uint64_t)nrows > UINT64_MAX / w || size[0] != (uint64_t)nrows * w)
            return LURAY_EPROTO;
    }
    return r->bad ? LURAY_EPROTO : 0;
}

/* A 0-length buffer may come back as NULL; columns always point somewhere. */
static const void *nonnull(const void *p)
{
    static const uint64_t empty;
    return p ? p : &empty;
}

/* Checks string offsets: from offsets[0], never decreasing, ending at the bytes' length. */
static bool offsets_ok(const int64_t *o, int64_t n, uint64_t nbytes)
{
    int64_t base = o[0];
    if (base < 0)
        return false;
    for (int64_t i = 0; i < n; i++)
        if (o[i + 1] < o[i])
            return false;
    return (uint64_t)(o[n] - base) == nbytes;
}

/* Attaches the out-of-band buffers to the views, checking their sizes. */
static int attach_buffers(const luray_host_api_t *h, luray_ser_reader_t *r, dcol_t *views,
                          int ncols, const uint64_t (*sizes)[2])
{
    size_t bi = 0, len;
    for (int k = 0; k < ncols; k++) {
        dcol_t *v = &views[k];
        if (v->type == DCOL_STRING) {
            const void *o = h->ser_buffer(r, bi++, &len);
            if (len != sizes[k][0] || o == NULL)
                return LURAY_EPROTO;
            v->offsets = (int64_t *)o;
        }
        const void *d = h->ser_buffer(r, bi++, &len);
        if (len != sizes[k][v->type == DCOL_STRING ? 1 : 0] || (d == NULL && len != 0))
            return LURAY_EPROTO;
        v->data = (void *)nonnull(d);
        v->nbytes = len;
        if (v->type == DCOL_STRING && !offsets_ok(v->offsets, v->len, len))
            return LURAY_EPROTO;
    }
    return 0;
}

/* A string view whose offsets do not start at 0 (the sender's slice) gets its own rebased copy
 * of the offsets; the bytes stay in the stored object. */
static int rebase_offsets(dcol_t *c)
{
    int64_t base = c->offsets[0];
    if (base == 0)
        return 0;
    int64_t *o = malloc((size_t)(c->len + 1) * sizeof(*o));
    if (o == NULL)
        return LURAY_ENOMEM;
    for (int64_t i = 0; i <= c->len; i++)
        o[i] = c->offsets[i] - base;
    c->offsets = o;
    c->owned_offsets = o;
    return 0;
}

/* A view pins its object's shared memory until the collector frees the view. Lua sees only the
 * small userdata, so it is told of the viewed bytes too: blocks a consumer is done with are then
 * collected at the pace of the store they hold, not of the Lua heap. */
static void account_views(lua_State *L, const dcol_t *views, uint32_t n)
{
    size_t bytes = 0;
    for (uint32_t k = 0; k < n; k++) {
        bytes += views[k].nbytes;
        if (views[k].type == DCOL_STRING)
            bytes += ((size_t)views[k].len + 1) * sizeof(int64_t);
    }
    size_t kb = bytes >> 10;
    if (kb > 0 && lua_gc(L, LUA_GCISRUNNING))
        lua_gc(L, LUA_GCSTEP, kb < INT_MAX ? (int)kb : INT_MAX);
}

static int block_decode(const luray_host_api_t *h, lua_State *L, luray_ser_reader_t *r)
{
    size_t hlen;
    const void *hdr = h->ser_header(r, &hlen);
    if (hdr == NULL)
        return LURAY_EPROTO;
    rd_t rd = {hdr, hlen, false};
    uint32_t version = get_u32(&rd);
    int64_t nrows = (int64_t)get_u64(&rd);
    uint32_t ncols = get_u32(&rd);
    if (rd.bad || version != BLOCK_SER_VERSION || nrows < 0 || nrows > ((int64_t)1 << 48) ||
        ncols > rd.left / MIN_COL_HEADER || (ncols == 0 && nrows != 0))
        return LURAY_EPROTO;
    if (!lua_checkstack(L, (int)ncols + 8))
        return LURAY_ENOMEM;
    int top = lua_gettop(L);
    char *name_buf = data_scratch(L, hlen + ncols);
    const char **names = data_scratch(L, (size_t)ncols * sizeof(*names));
    dcol_t *views = data_scratch(L, (size_t)ncols * sizeof(*views));
    uint64_t(*sizes)[2] = data_scratch(L, (size_t)ncols * sizeof(*sizes));
    int rc = 0;
    size_t nbuf = 0;
    lua_createtable(L, 0, (int)ncols); /* names seen, for duplicates */
    for (uint32_t k = 0; k < ncols && rc == 0; k++) {
        names[k] = name_buf;
        if ((rc = read_column(&rd, nrows, &name_buf, &views[k], sizes[k])) != 0)
            break;
        name_buf += strlen(names[k]) + 1;
        nbuf += views[k].type == DCOL_STRING ? 2 : 1;
        if (lua_getfield(L, -1, names[k]) != LUA_TNIL)
            rc = LURAY_EPROTO;
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, names[k]);
    }
    if (rc == 0 && (rd.left != 0 || h->ser_buffer_count(r) != nbuf))
        rc = LURAY_EPROTO;
    if (rc == 0)
        rc = attach_buffers(h, r, views, (int)ncols, (const uint64_t(*)[2])sizes);
    if (rc != 0)
        goto err;
    h->ser_push_keeper(L, r);
    if (lua_isnil(L, -1)) {
        rc = LURAY_ENOMEM;
        goto err;
    }
    int keeper = lua_gettop(L);
    for (uint32_t k = 0; k < ncols; k++) {
        data_column_push_view(L, &views[k], keeper);
        if (views[k].type == DCOL_STRING &&
            (rc = rebase_offsets(&data_column_check(L, -1)->c)) != 0)
            goto err;
    }
    data_block_push_columns(L, (int)ncols, names);
    lua_replace(L, top + 1);
    lua_settop(L, top + 1);
    account_views(L, views, ncols);
    return 0;
err:
    lua_settop(L, top);
    return rc;
}

const luray_serializer_t data_block_serializer = {DATA_BLOCK_MT, block_encode, block_decode};
