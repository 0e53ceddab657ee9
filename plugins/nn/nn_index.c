/* Row gathers, transposes and dtype conversion (nn_index.h). */
#include "nn_index.h"

#include <stdbool.h>
#include <string.h>

#include "luray/errors.h"
#include "luray/tensor.h"

int nn_gather_rows(const void *src, int64_t nrows, size_t rowbytes, const int64_t *idx,
                   int64_t nidx, void *out, int64_t *bad)
{
    for (int64_t i = 0; i < nidx; i++)
        if (idx[i] < 0 || idx[i] >= nrows) {
            *bad = i;
            return LURAY_EINVAL;
        }
    for (int64_t i = 0; i < nidx; i++)
        memcpy((char *)out + (size_t)i * rowbytes, (const char *)src + (size_t)idx[i] * rowbytes,
               rowbytes);
    return 0;
}

void nn_index_add_rows(float *dst, int64_t rowlen, const int64_t *idx, int64_t nidx,
                       const float *g)
{
    for (int64_t i = 0; i < nidx; i++) {
        float *d = dst + idx[i] * rowlen;
        const float *s = g + i * rowlen;

        for (int64_t j = 0; j < rowlen; j++)
            d[j] += s[j];
    }
}

/* Tiles keep both the reads and the writes within a few cache lines. */
#define TILE 32

void nn_transpose2d(const float *a, int64_t rows, int64_t cols, float *out)
{
    for (int64_t r0 = 0; r0 < rows; r0 += TILE)
        for (int64_t c0 = 0; c0 < cols; c0 += TILE) {
            int64_t r1 = r0 + TILE < rows ? r0 + TILE : rows;
            int64_t c1 = c0 + TILE < cols ? c0 + TILE : cols;

            for (int64_t r = r0; r < r1; r++)
                for (int64_t c = c0; c < c1; c++)
                    out[c * rows + r] = a[r * cols + c];
        }
}

/* ---- conversion ---- */

static bool is_float(int dtype)
{
    return dtype == LURAY_DTYPE_FLOAT32 || dtype == LURAY_DTYPE_FLOAT64;
}

static double get_f64(int dtype, const void *p)
{
    switch (dtype) {
    case LURAY_DTYPE_FLOAT32: return *(const float *)p;
    case LURAY_DTYPE_FLOAT64: return *(const double *)p;
    case LURAY_DTYPE_INT32: return *(const int32_t *)p;
    case LURAY_DTYPE_INT64: return (double)*(const int64_t *)p;
    default: return *(const uint8_t *)p;
    }
}

static int64_t get_i64(int dtype, const void *p)
{
    switch (dtype) {
    case LURAY_DTYPE_INT32: return *(const int32_t *)p;
    case LURAY_DTYPE_INT64: return *(const int64_t *)p;
    case LURAY_DTYPE_UINT8:
    case LURAY_DTYPE_BOOL: return *(const uint8_t *)p;
    default: return 0;
    }
}

/* A float to an integer type: truncated, NaN to 0 and saturated at the type's range, as C
 * leaves out-of-range conversion undefined. */
static int64_t f64_to_i64(double v, double lo, double hi)
{
    if (v != v)
        return 0;
    if (v <= lo)
        return (int64_t)lo;
    if (v >= hi)
        return (int64_t)hi;
    return (int64_t)v;
}

static void put(int ddtype, void *d, int sdtype, const void *s)
{
    bool f = is_float(sdtype);
    double v = f ? get_f64(sdtype, s) : 0;
    int64_t k = f ? 0 : get_i64(sdtype, s);

    switch (ddtype) {
    case LURAY_DTYPE_FLOAT32: *(float *)d = f ? (float)v : (float)k; break;
    case LURAY_DTYPE_FLOAT64: *(double *)d = f ? v : (double)k; break;
    case LURAY_DTYPE_INT32:
        *(int32_t *)d = (int32_t)(f ? f64_to_i64(v, INT32_MIN, INT32_MAX) : k);
        break;
    case LURAY_DTYPE_INT64:
        *(int64_t *)d = f ? f64_to_i64(v, -9223372036854775808.0, 9223372036854774784.0) : k;
        break;
    case LURAY_DTYPE_UINT8: *(uint8_t *)d = (uint8_t)(f ? f64_to_i64(v, 0, 255) : k); break;
    case LURAY_DTYPE_BOOL: *(uint8_t *)d = f ? v != 0 : k != 0; break;
    default: break;
    }
}

static size_t elem_size(int dtype)
{
    switch (dtype) {
    case LURAY_DTYPE_FLOAT64:
    case LURAY_DTYPE_INT64: return 8;
    case LURAY_DTYPE_FLOAT32:
    case LURAY_DTYPE_INT32: return 4;
    case LURAY_DTYPE_UINT8:
    case LURAY_DTYPE_BOOL: return 1;
    default: return 0;
    }
}

static bool contiguous(int ndim, const int64_t *shape, const int64_t *strides)
{
    int64_t step = 1;

    for (int i = ndim - 1; i >= 0; i--) {
        if (shape[i] != 1 && strides[i] != step)
            return false;
        step *= shape[i];
    }
    return true;
}

/* The common conversions to float32 of a whole contiguous tensor, in loops that vectorize. */
static bool to_f32_fast(const void *src, int sdtype, int64_t n, float *dst)
{
    switch (sdtype) {
    case LURAY_DTYPE_FLOAT32:
        memcpy(dst, src, (size_t)n * sizeof *dst);
        return true;
    case LURAY_DTYPE_FLOAT64:
        for (int64_t i = 0; i < n; i++)
            dst[i] = (float)((const double *)src)[i];
        return true;
    case LURAY_DTYPE_INT32:
        for (int64_t i = 0; i < n; i++)
            dst[i] = (float)((const int32_t *)src)[i];
        return true;
    case LURAY_DTYPE_INT64:
        for (int64_t i = 0; i < n; i++)
            dst[i] = (float)((const int64_t *)src)[i];
        return true;
    default:
        return false;
    }
}

int nn_convert(const void *src, int sdtype, int ndim, const int64_t *shape,
               const int64_t *strides, void *dst, int ddtype)
{
    size_t ss = elem_size(sdtype), ds = elem_size(ddtype);
    int64_t idx[LURAY_TENSOR_MAX_DIMS] = {0}, n = 1, off = 0;
    char *d = dst;

    if (!ss || !ds || ndim < 0 || ndim > LURAY_TENSOR_MAX_DIMS)
        return LURAY_EINVAL;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    if (ddtype == LURAY_DTYPE_FLOAT32 && contiguous(ndim, shape, strides)
        && to_f32_fast(src, sdtype, n, dst))
        return 0;
    for (int64_t e = 0; e < n; e++) {
        put(ddtype, d, sdtype, (const char *)src + off * (int64_t)ss);
        d += ds;
        /* next element: the last index moves fastest */
        for (int i = ndim - 1; i >= 0; i--) {
            off += strides[i];
            if (++idx[i] < shape[i])
                break;
            off -= strides[i] * shape[i];
            idx[i] = 0;
        }
    }
    return 0;
}
