/* Element-wise reduction kernels of the collective layer (sum, mean, max over float32 and
 * float64), written with vector types so they are SIMD at any optimisation level. */
#ifndef LURAY_COLLECTIVE_COLL_REDUCE_H
#define LURAY_COLLECTIVE_COLL_REDUCE_H

#include <stddef.h>

/* res[i] = a[i] op b[i] for i < n, then divided by div when div > 1 (the last pass of a mean;
 * COLL_MEAN adds like COLL_SUM). When out is not NULL the result is also stored there. res and
 * out may each be a or b (the same element is read before it is written), but may not overlap
 * them otherwise. dtype is LURAY_DTYPE_FLOAT32 or LURAY_DTYPE_FLOAT64. */
void coll_reduce(int dtype, int op, void *res, void *out, const void *a, const void *b, size_t n,
                 int div);

#endif
