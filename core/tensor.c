/* The dense tensor type: dtypes, refcounted buffers, views and element access. */
#include "tensor.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"

static const struct {
    const char *name;
    size_t size;
} dtypes[LURAY_DTYPE_COUNT] = {
    [LURAY_DTYPE_FLOAT32] = {"float32", 4}, [LURAY_DTYPE_FLOAT64] = {"float64", 8},
    [LURAY_DTYPE_INT32] = {"int32", 4},     [LURAY_DTYPE_INT64] = {"int64", 8},
    [LURAY_DTYPE_UINT8] = {"uint8", 1},     [LURAY_DTYPE_BOOL] = {"bool", 1},
};

static bool dtype_ok(int dtype) { return dtype >= 0 && dtype < LURAY_DTYPE_COUNT; }

const char *luray_dtype_name(int dtype) { return dtype_ok(dtype) ? dtypes[dtype].name : NULL; }

size_t luray_dtype_size(int dtype) { return dtype_ok(dtype) ? dtypes[dtype].size : 0; }

int luray_dtype_parse(const char *name, int *dtype)
{
    int i;

    for (i = 0; name && i < LURAY_DTYPE_COUNT; i++) {
        if (strcmp(name, dtypes[i].name) == 0) {
            *dtype = i;
            return 0;
        }
    }
    return LURAY_EINVAL;
}

bool luray_dtype_is_float(int dtype)
{
    return dtype == LURAY_DTYPE_FLOAT32 || dtype == LURAY_DTYPE_FLOAT64;
}

/* ---- buffers ---- */

luray_tbuf_t *luray_tbuf_new(size_t nbytes, bool zero)
{
    luray_tbuf_t *b = malloc(sizeof *b);

    if (!b)
        return NULL;
    /* malloc(0) may return NULL; one byte keeps "NULL means out of memory" true */
    b->data = zero ? calloc(nbytes ? nbytes : 1, 1) : malloc(nbytes ? nbytes : 1);
    if (!b->data) {
        free(b);
        return NULL;
    }
    b->refs = 1;
    b->nbytes = nbytes;
    b->release = NULL;
    b->ctx = NULL;
    return b;
}

luray_tbuf_t *luray_tbuf_wrap(void *data, size_t nbytes, luray_tbuf_release_fn release,
                              void *ctx)
{
    luray_tbuf_t *b = malloc(sizeof *b);

    if (!b)
        return NULL;
    b->refs = 1;
    b->data = data;
    b->nbytes = nbytes;
    b->release = release;
    b->ctx = ctx;
    return b;
}

void luray_tbuf_retain(luray_tbuf_t *b) { b->refs++; }

void luray_tbuf_release(luray_tbuf_t *b)
{
    if (!b || --b->refs > 0)
        return;
    if (b->release)
        b->release(b->ctx, b->data);
    else
        free(b->data);
    free(b);
}

/* ---- shapes ---- */

int luray_shape_numel(int ndim, const int64_t *shape, int64_t *numel)
{
    int64_t n = 1;
    int i;

    for (i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return LURAY_EINVAL;
        if (shape[i] && n > INT64_MAX / 8 / shape[i]) /* keeps bytes within int64 too */
            return LURAY_ETOOBIG;
        n *= shape[i];
    }
    *numel = n;
    return 0;
}

void luray_shape_strides(int ndim, const int64_t *shape, int64_t *strides)
{
    int64_t s = 1;
    int i;

    for (i = ndim - 1; i >= 0; i--) {
        strides[i] = s;
        s *= shape[i] ? shape[i] : 1;
    }
}

/* ---- tensors ---- */

static int tensor_setup(luray_tensor_t *t, int dtype, int ndim, const int64_t *shape,
                        int64_t *numel)
{
    int rc;

    memset(t, 0, sizeof *t);
    if (!dtype_ok(dtype) || ndim < 0 || ndim > LURAY_TENSOR_MAX_DIMS)
        return LURAY_EINVAL;
    if ((rc = luray_shape_numel(ndim, shape, numel)) < 0)
        return rc;
    if ((uint64_t)*numel > SIZE_MAX / dtypes[dtype].size)
        return LURAY_ETOOBIG;
    t->dtype = dtype;
    t->ndim = ndim;
    if (ndim > 0)
        memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    luray_shape_strides(ndim, shape, t->strides);
    t->nbytes = (size_t)*numel * dtypes[dtype].size;
    return 0;
}

int luray_tensor_init(luray_tensor_t *t, int dtype, int ndim, const int64_t *shape, bool zero)
{
    int64_t numel;
    int rc;

    if ((rc = tensor_setup(t, dtype, ndim, shape, &numel)) < 0)
        goto err;
    t->buf = luray_tbuf_new(t->nbytes, zero);
    if (!t->buf) {
        rc = LURAY_ENOMEM;
        goto err;
    }
    t->data = t->buf->data;
    return 0;

err:
    memset(t, 0, sizeof *t);
    return rc;
}

int luray_tensor_init_data(luray_tensor_t *t, int dtype, int ndim, const int64_t *shape,
                           void *data, size_t nbytes, luray_tbuf_t *buf, bool readonly)
{
    int64_t numel;
    int rc;

    if ((rc = tensor_setup(t, dtype, ndim, shape, &numel)) < 0)
        goto err;
    if (nbytes != t->nbytes || (!data && nbytes)) {
        rc = LURAY_EINVAL;
        goto err;
    }
    t->data = data;
    t->buf = buf;
    if (buf)
        luray_tbuf_retain(buf);
    t->readonly = readonly;
    return 0;

err:
    memset(t, 0, sizeof *t);
    return rc;
}

void luray_tensor_close(luray_tensor_t *t)
{
    if (!t)
        return;
    luray_tbuf_release(t->buf);
    memset(t, 0, sizeof *t);
}

int64_t luray_tensor_numel(const luray_tensor_t *t)
{
    int64_t n = 1;
    int i;

    for (i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

bool luray_tensor_is_contiguous(const luray_tensor_t *t)
{
    int64_t s = 1;
    int i;

    for (i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] == 0)
            return true; /* no elements: any strides will do */
        if (t->shape[i] != 1 && t->strides[i] != s)
            return false;
        s *= t->shape[i];
    }
    return true;
}

int luray_tensor_view(const luray_tensor_t *src, int ndim, const int64_t *shape,
                      luray_tensor_t *out)
{
    int64_t dims[LURAY_TENSOR_MAX_DIMS], known = 1, numel = luray_tensor_numel(src), new_numel;
    luray_tensor_t tmp;
    int i, infer = -1, rc;

    if (ndim < 0 || ndim > LURAY_TENSOR_MAX_DIMS || !luray_tensor_is_contiguous(src))
        return LURAY_EINVAL;
    for (i = 0; i < ndim; i++) {
        dims[i] = shape[i];
        if (shape[i] == -1) {
            if (infer >= 0)
                return LURAY_EINVAL;
            infer = i;
        } else if (shape[i] < 0) {
            return LURAY_EINVAL;
        } else {
            if (shape[i] && known > INT64_MAX / shape[i])
                return LURAY_EINVAL;
            known *= shape[i];
        }
    }
    if (infer >= 0) {
        if (known == 0 || numel % known)
            return LURAY_EINVAL;
        dims[infer] = numel / known;
    }
    if ((rc = tensor_setup(&tmp, src->dtype, ndim, dims, &new_numel)) < 0)
        return rc;
    if (new_numel != numel)
        return LURAY_EINVAL;
    tmp.data = src->data;
    tmp.buf = src->buf;
    if (tmp.buf)
        luray_tbuf_retain(tmp.buf);
    tmp.readonly = src->readonly;
    *out = tmp;
    return 0;
}

/* Calls fn on each element pointer in row-major order. */
static void for_each(const luray_tensor_t *t, void (*fn)(const void *p, void *ctx), void *ctx)
{
    int64_t idx[LURAY_TENSOR_MAX_DIMS] = {0};
    int64_t n = luray_tensor_numel(t), k, off;
    size_t es = dtypes[t->dtype].size;
    int d;

    for (k = 0; k < n; k++) {
        for (off = 0, d = 0; d < t->ndim; d++)
            off += idx[d] * t->strides[d];
        fn((const uint8_t *)t->data + (size_t)off * es, ctx);
        for (d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d])
                break;
            idx[d] = 0;
        }
    }
}

typedef struct {
    uint8_t *dst;
    size_t es;
} copy_ctx_t;

static void copy_one(const void *p, void *ctx)
{
    copy_ctx_t *c = ctx;

    memcpy(c->dst, p, c->es);
    c->dst += c->es;
}

void luray_tensor_copy_to(const luray_tensor_t *t, void *dst)
{
    copy_ctx_t c = {dst, dtypes[t->dtype].size};

    if (luray_tensor_is_contiguous(t)) {
        if (t->nbytes)
            memcpy(dst, t->data, t->nbytes);
        return;
    }
    for_each(t, copy_one, &c);
}

int luray_tensor_clone(const luray_tensor_t *src, luray_tensor_t *out)
{
    int rc = luray_tensor_init(out, src->dtype, src->ndim, src->shape, false);

    if (rc < 0)
        return rc;
    luray_tensor_copy_to(src, out->data);
    return 0;
}

/* ---- elements ---- */

void *luray_tensor_ptr(const luray_tensor_t *t, const int64_t *idx)
{
    int64_t off = 0;
    int d;

    for (d = 0; d < t->ndim; d++) {
        if (idx[d] < 0 || idx[d] >= t->shape[d])
            return NULL;
        off += idx[d] * t->strides[d];
    }
    return (uint8_t *)t->data + (size_t)off * dtypes[t->dtype].size;
}

double luray_elem_get_f64(int dtype, const void *p)
{
    switch (dtype) {
    case LURAY_DTYPE_FLOAT32: {
        float v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    case LURAY_DTYPE_FLOAT64: {
        double v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    default:
        return (double)luray_elem_get_i64(dtype, p);
    }
}

/* double -> int64 without undefined behaviour: NaN reads 0, out of range saturates. */
static int64_t f64_to_i64(double v)
{
    if (isnan(v))
        return 0;
    if (v >= 9223372036854775808.0)
        return INT64_MAX;
    if (v < -9223372036854775808.0)
        return INT64_MIN;
    return (int64_t)v;
}

int64_t luray_elem_get_i64(int dtype, const void *p)
{
    switch (dtype) {
    case LURAY_DTYPE_FLOAT32:
    case LURAY_DTYPE_FLOAT64:
        return f64_to_i64(luray_elem_get_f64(dtype, p));
    case LURAY_DTYPE_INT32: {
        int32_t v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    case LURAY_DTYPE_INT64: {
        int64_t v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    case LURAY_DTYPE_UINT8:
        return *(const uint8_t *)p;
    case LURAY_DTYPE_BOOL:
        return *(const uint8_t *)p != 0;
    default:
        return 0;
    }
}

int luray_elem_set_i64(int dtype, void *p, int64_t v)
{
    switch (dtype) {
    case LURAY_DTYPE_FLOAT32: {
        float f = (float)v;
        memcpy(p, &f, sizeof f);
        return 0;
    }
    case LURAY_DTYPE_FLOAT64: {
        double d = (double)v;
        memcpy(p, &d, sizeof d);
        return 0;
    }
    case LURAY_DTYPE_INT32: {
        int32_t i = (int32_t)v;
        if (v < INT32_MIN || v > INT32_MAX)
            return LURAY_EINVAL;
        memcpy(p, &i, sizeof i);
        return 0;
    }
    case LURAY_DTYPE_INT64:
        memcpy(p, &v, sizeof v);
        return 0;
    case LURAY_DTYPE_UINT8:
        if (v < 0 || v > 255)
            return LURAY_EINVAL;
        *(uint8_t *)p = (uint8_t)v;
        return 0;
    case LURAY_DTYPE_BOOL:
        *(uint8_t *)p = v != 0;
        return 0;
    default:
        return LURAY_EINVAL;
    }
}

int luray_elem_set_f64(int dtype, void *p, double v)
{
    switch (dtype) {
    case LURAY_DTYPE_FLOAT32: {
        float f = (float)v;
        memcpy(p, &f, sizeof f);
        return 0;
    }
    case LURAY_DTYPE_FLOAT64:
        memcpy(p, &v, sizeof v);
        return 0;
    case LURAY_DTYPE_BOOL:
        *(uint8_t *)p = v != 0;
        return 0;
    default:
        /* integer dtypes take only integral values that fit */
        if (isnan(v) || v != floor(v) || v >= 9223372036854775808.0 ||
            v < -9223372036854775808.0)
            return LURAY_EINVAL;
        return luray_elem_set_i64(dtype, p, (int64_t)v);
    }
}

int luray_tensor_get_f64(const luray_tensor_t *t, const int64_t *idx, double *v)
{
    const void *p = luray_tensor_ptr(t, idx);

    if (!p)
        return LURAY_EINVAL;
    *v = luray_elem_get_f64(t->dtype, p);
    return 0;
}

int luray_tensor_get_i64(const luray_tensor_t *t, const int64_t *idx, int64_t *v)
{
    const void *p = luray_tensor_ptr(t, idx);

    if (!p)
        return LURAY_EINVAL;
    *v = luray_elem_get_i64(t->dtype, p);
    return 0;
}

int luray_tensor_set_f64(luray_tensor_t *t, const int64_t *idx, double v)
{
    void *p;

    if (t->readonly)
        return LURAY_ESTATE;
    if (!(p = luray_tensor_ptr(t, idx)))
        return LURAY_EINVAL;
    return luray_elem_set_f64(t->dtype, p, v);
}

int luray_tensor_set_i64(luray_tensor_t *t, const int64_t *idx, int64_t v)
{
    void *p;

    if (t->readonly)
        return LURAY_ESTATE;
    if (!(p = luray_tensor_ptr(t, idx)))
        return LURAY_EINVAL;
    return luray_elem_set_i64(t->dtype, p, v);
}
