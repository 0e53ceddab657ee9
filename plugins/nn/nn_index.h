/* Indexing kernels: gathering rows by index (any element size), scattering gradients back to
 * rows, 2-D transposes, and copies between dtypes of possibly strided tensors. */
#ifndef LURAY_NN_INDEX_H
#define LURAY_NN_INDEX_H

#include <stddef.h>
#include <stdint.h>

/* out[i] = src row idx[i] (0-based) for i < nidx, rows of rowbytes bytes. LURAY_EINVAL when an
 * index is outside [0, nrows); *bad then holds its position in idx. */
int nn_gather_rows(const void *src, int64_t nrows, size_t rowbytes, const int64_t *idx,
                   int64_t nidx, void *out, int64_t *bad);
/* dst row idx[i] += g row i: the gradient of nn_gather_rows (indices already checked). */
void nn_index_add_rows(float *dst, int64_t rowlen, const int64_t *idx, int64_t nidx,
                       const float *g);

/* out (cols x rows) = the transpose of a (rows x cols). */
void nn_transpose2d(const float *a, int64_t rows, int64_t cols, float *out);

/* Copies the elements of a tensor (dtype sdtype, strides in elements) into the contiguous dst
 * of dtype ddtype (luray dtype codes), converting as C does: floats to integers truncate toward
 * zero, and anything nonzero is true for bool. LURAY_EINVAL for an unknown dtype. */
int nn_convert(const void *src, int sdtype, int ndim, const int64_t *shape,
               const int64_t *strides, void *dst, int ddtype);

#endif
