/* Feature layout for libxgboost from Data columns (frame.h). One block's scalar columns are read
 * in place; several blocks are gathered column by column with memcpy; tensor columns, whose rows
 * are contiguous, become one dense matrix or are split into per-feature buffers. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "luray/errors.h"

#include "frame.h"

/* Features one column gives: 1, or the element count of a tensor column's row (0 on overflow). */
static int64_t column_width(const dcol_t *c)
{
    if (c->type != DCOL_TENSOR)
        return 1;
    int64_t w = 1;
    for (int d = 0; d < c->ndim; d++) {
        if (c->shape[d] <= 0 || w > INT32_MAX / c->shape[d])
            return 0;
        w *= c->shape[d];
    }
    return w;
}

static const char *stype_of(dcol_type_t type)
{
    switch (type) {
    case DCOL_INT64: return "int64";
    case DCOL_FLOAT64: return "float64";
    case DCOL_BOOL: return "bool8";
    default: return NULL;
    }
}

/* The data plugin's names for its column types (its dcol_type_name is not ours to call). */
static const char *type_name(dcol_type_t type)
{
    static const char *const names[] = {"int64", "float64", "bool", "string", "tensor"};
    return (unsigned)type < DCOL_NTYPES ? names[type] : "unknown";
}

static size_t scalar_size(dcol_type_t type)
{
    return type == DCOL_BOOL ? 1 : 8;
}

static bool same_shape(const dcol_t *a, const dcol_t *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int d = 0; d < a->ndim; d++) {
        if (a->shape[d] != b->shape[d])
            return false;
    }
    return true;
}

/* Checks types, shapes and lengths; sets the row and feature counts. */
static int frame_check(xgb_frame_t *f, const dcol_t *const *cols, const char *const *names,
                       int nparts, int ncols, char *err, size_t errlen)
{
    if (nparts < 1 || ncols < 1) {
        snprintf(err, errlen, "no feature columns");
        return LURAY_EINVAL;
    }
    for (int c = 0; c < ncols; c++) {
        const dcol_t *first = cols[c];
        if (first->type != DCOL_TENSOR && stype_of(first->type) == NULL) {
            snprintf(err, errlen, "column \"%s\" is a %s column; xgboost takes int64, float64, "
                     "bool and float32 tensor columns", names[c], type_name(first->type));
            return LURAY_EINVAL;
        }
        int64_t w = column_width(first);
        if (w == 0) {
            snprintf(err, errlen, "column \"%s\": its tensor rows are empty or too large",
                     names[c]);
            return LURAY_EINVAL;
        }
        for (int p = 1; p < nparts; p++) {
            const dcol_t *other = cols[(size_t)p * ncols + c];
            if (other->type != first->type ||
                (first->type == DCOL_TENSOR && !same_shape(first, other))) {
                snprintf(err, errlen, "column \"%s\" is a %s column in block 1 and a %s column "
                         "of another shape or type in block %d", names[c],
                         type_name(first->type), type_name(other->type), p + 1);
                return LURAY_EINVAL;
            }
        }
        f->nfeat += w;
    }
    for (int p = 0; p < nparts; p++) {
        int64_t len = cols[(size_t)p * ncols]->len;
        for (int c = 1; c < ncols; c++) {
            if (cols[(size_t)p * ncols + c]->len != len) {
                snprintf(err, errlen, "block %d: column \"%s\" has %" PRId64 " rows, column "
                         "\"%s\" %" PRId64, p + 1, names[c], cols[(size_t)p * ncols + c]->len,
                         names[0], len);
                return LURAY_EINVAL;
            }
        }
        f->nrows += len;
    }
    if (f->nrows == 0) {
        snprintf(err, errlen, "the data has no rows");
        return LURAY_EINVAL;
    }
    return 0;
}

static void *frame_alloc(xgb_frame_t *f, size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (p != NULL)
        f->owned[f->nowned++] = p;
    return p;
}

static int frame_names(xgb_frame_t *f, const dcol_t *const *cols, const char *const *names,
                       int ncols)
{
    int64_t k = 0;
    for (int c = 0; c < ncols; c++) {
        if (cols[c]->type != DCOL_TENSOR) {
            if ((f->names[k++] = strdup(names[c])) == NULL)
                return LURAY_ENOMEM;
            continue;
        }
        int64_t w = column_width(cols[c]);
        for (int64_t j = 0; j < w; j++) {
            size_t len = strlen(names[c]) + 24;
            if ((f->names[k] = malloc(len)) == NULL)
                return LURAY_ENOMEM;
            snprintf(f->names[k++], len, "%s_%" PRId64, names[c], j);
        }
    }
    return 0;
}

/* The rows of nparts tensor columns (column c of each block) as one row-major float32 matrix. */
static int dense_tensor(xgb_frame_t *f, const dcol_t *const *cols, int nparts, int ncols)
{
    f->kind = XGB_FRAME_DENSE;
    if (nparts == 1) {
        f->dense = cols[0]->data;
        return 0;
    }
    size_t row = (size_t)f->nfeat * sizeof(float);
    char *base = frame_alloc(f, (size_t)f->nrows * row), *at = base;
    if (base == NULL)
        return LURAY_ENOMEM;
    for (int p = 0; p < nparts; p++) {
        const dcol_t *c = cols[(size_t)p * ncols];
        if (c->len > 0)
            memcpy(at, c->data, (size_t)c->len * row);
        at += (size_t)c->len * row;
    }
    f->dense = (const float *)base;
    return 0;
}

/* Column c of every block, one after the other, in one buffer of the column's type. */
static void *gather_scalar(xgb_frame_t *f, const dcol_t *const *cols, int nparts, int ncols,
                           int c)
{
    size_t size = scalar_size(cols[c]->type);
    char *buf = frame_alloc(f, (size_t)f->nrows * size), *at = buf;
    if (buf == NULL)
        return NULL;
    for (int p = 0; p < nparts; p++) {
        const dcol_t *col = cols[(size_t)p * ncols + c];
        if (col->len > 0)
            memcpy(at, col->data, (size_t)col->len * size);
        at += (size_t)col->len * size;
    }
    return buf;
}

/* Splits tensor column c of every block into one float32 buffer per element of its rows. */
static int split_tensor(xgb_frame_t *f, const dcol_t *const *cols, int nparts, int ncols, int c,
                        int64_t first)
{
    int64_t w = column_width(cols[c]);
    float **out = (float **)&f->cols[first];
    for (int64_t j = 0; j < w; j++) {
        if ((out[j] = frame_alloc(f, (size_t)f->nrows * sizeof(float))) == NULL)
            return LURAY_ENOMEM;
        f->stypes[first + j] = "float32";
    }
    int64_t at = 0;
    for (int p = 0; p < nparts; p++) {
        const dcol_t *col = cols[(size_t)p * ncols + c];
        const float *src = col->data;
        for (int64_t i = 0; i < col->len; i++, src += w) {
            for (int64_t j = 0; j < w; j++)
                out[j][at + i] = src[j];
        }
        at += col->len;
    }
    return 0;
}

static int column_layout(xgb_frame_t *f, const dcol_t *const *cols, int nparts, int ncols)
{
    f->kind = XGB_FRAME_COLUMNS;
    f->cols = calloc((size_t)f->nfeat, sizeof(void *));
    f->stypes = calloc((size_t)f->nfeat, sizeof(char *));
    if (f->cols == NULL || f->stypes == NULL)
        return LURAY_ENOMEM;
    int64_t k = 0;
    for (int c = 0; c < ncols; c++) {
        if (cols[c]->type == DCOL_TENSOR) {
            int rc = split_tensor(f, cols, nparts, ncols, c, k);
            if (rc != 0)
                return rc;
            k += column_width(cols[c]);
            continue;
        }
        f->stypes[k] = stype_of(cols[c]->type);
        f->cols[k] = nparts == 1 ? cols[c]->data : gather_scalar(f, cols, nparts, ncols, c);
        if (f->cols[k++] == NULL)
            return LURAY_ENOMEM;
    }
    return 0;
}

int xgb_frame_init(xgb_frame_t *f, const dcol_t *const *cols, const char *const *names,
                   int nparts, int ncols, char *err, size_t errlen)
{
    memset(f, 0, sizeof(*f));
    int rc = frame_check(f, cols, names, nparts, ncols, err, errlen);
    if (rc != 0)
        return rc;
    /* At most one buffer per feature, or one dense matrix. */
    f->owned = calloc((size_t)f->nfeat + 1, sizeof(void *));
    f->names = calloc((size_t)f->nfeat, sizeof(char *));
    if (f->owned == NULL || f->names == NULL || (rc = frame_names(f, cols, names, ncols)) != 0)
        goto err_nomem;
    if (ncols == 1 && cols[0]->type == DCOL_TENSOR)
        rc = dense_tensor(f, cols, nparts, ncols);
    else
        rc = column_layout(f, cols, nparts, ncols);
    if (rc != 0)
        goto err_nomem;
    return 0;
err_nomem:
    xgb_frame_close(f);
    snprintf(err, errlen, "out of memory laying out %d columns", ncols);
    return LURAY_ENOMEM;
}

void xgb_frame_close(xgb_frame_t *f)
{
    for (int64_t i = 0; i < f->nowned; i++)
        free(f->owned[i]);
    if (f->names != NULL) {
        for (int64_t i = 0; i < f->nfeat; i++)
            free(f->names[i]);
    }
    free(f->owned);
    free(f->names);
    free(f->cols);
    free(f->stypes);
    memset(f, 0, sizeof(*f));
}

int xgb_floats_gather(const dcol_t *const *cols, int nparts, const char *what, float **out,
                      int64_t *nrows, char *err, size_t errlen)
{
    int64_t n = 0;
    *out = NULL;
    for (int p = 0; p < nparts; p++) {
        const dcol_t *c = cols[p];
        if (c->type == DCOL_STRING || (c->type == DCOL_TENSOR && column_width(c) != 1)) {
            snprintf(err, errlen, "the %s column is a %s column; it needs one number per row",
                     what, c->type == DCOL_STRING ? "string" : "multi-value tensor");
            return LURAY_EINVAL;
        }
        n += c->len;
    }
    float *v = malloc((size_t)(n ? n : 1) * sizeof(float));
    if (v == NULL) {
        snprintf(err, errlen, "out of memory for %" PRId64 " %s values", n, what);
        return LURAY_ENOMEM;
    }
    int64_t at = 0;
    for (int p = 0; p < nparts; p++) {
        const dcol_t *c = cols[p];
        for (int64_t i = 0; i < c->len; i++) {
            switch (c->type) {
            case DCOL_INT64: v[at + i] = (float)((const int64_t *)c->data)[i]; break;
            case DCOL_FLOAT64: v[at + i] = (float)((const double *)c->data)[i]; break;
            case DCOL_BOOL: v[at + i] = ((const uint8_t *)c->data)[i] ? 1.0f : 0.0f; break;
            default: v[at + i] = ((const float *)c->data)[i]; break;
            }
        }
        at += c->len;
    }
    *out = v;
    *nrows = n;
    return 0;
}

int xgb_array_interface(char *buf, size_t len, const void *data, int64_t rows, int64_t ncols,
                        int64_t row_stride, int64_t col_stride, const char *typestr)
{
    int n = snprintf(buf, len,
                     "{\"data\": [%" PRIuPTR ", true], \"shape\": [%" PRId64 ", %" PRId64 "], "
                     "\"strides\": [%" PRId64 ", %" PRId64 "], \"typestr\": \"%s\", "
                     "\"version\": 3}",
                     (uintptr_t)data, rows, ncols, row_stride, col_stride, typestr);
    return (n < 0 || (size_t)n >= len) ? LURAY_ETOOBIG : 0;
}
