/* Shapes of CUDA nn tensors and the geometry the element-wise kernels index by: NumPy's
 * broadcasting rules, dimensions coalesced on the host so that a kernel divides as little as it
 * can, and the split of a broadcast into the dimensions a gradient keeps and those it sums. */
#ifndef LURAY_NN_CUDA_CU_SHAPE_H
#define LURAY_NN_CUDA_CU_SHAPE_H

#include <stdbool.h>
#include <stdint.h>

#define CU_MAX_DIMS 8
/* Operands of one geometry: the output first, then up to three inputs. */
#define CU_GEOM_OPS 4

typedef struct {
    int ndim;
    int64_t dim[CU_MAX_DIMS];
} cu_shape_t;

/* An output shape walked element by element (the last dimension fastest) with, for each operand,
 * the element stride of every dimension: 0 where the operand is broadcast. Dimensions of size 1
 * are dropped and neighbours every operand steps through as one are merged; ndim >= 1. Passed to
 * kernels by value. */
typedef struct {
    int ndim;
    int64_t dim[CU_MAX_DIMS];
    int64_t stride[CU_GEOM_OPS][CU_MAX_DIMS];
} cu_geom_t;

/* A geometry split for a gradient reduced to one operand's shape: the kept dimensions (the
 * operand's own, k*) and the summed ones (broadcast in the operand, r*), with each operand's
 * strides in both. The number of kept elements is the operand's size. */
typedef struct {
    int nk, nr;
    int64_t kdim[CU_MAX_DIMS], rdim[CU_MAX_DIMS];
    int64_t kstride[CU_GEOM_OPS][CU_MAX_DIMS], rstride[CU_GEOM_OPS][CU_MAX_DIMS];
} cu_split_t;

#ifdef __cplusplus
extern "C" {
#endif

int64_t cu_shape_numel(const cu_shape_t *s);
bool cu_shape_eq(const cu_shape_t *a, const cu_shape_t *b);
/* The shape a and b broadcast to; LURAY_EINVAL when they do not broadcast. */
int cu_shape_broadcast(const cu_shape_t *a, const cu_shape_t *b, cu_shape_t *out);
/* Every operand shape must broadcast to out; 1 <= nops <= CU_GEOM_OPS. */
void cu_geom_init(cu_geom_t *g, const cu_shape_t *out, int nops, const cu_shape_t *const *ops);
/* Splits g by operand `which`: its dimensions of stride 0 are summed over. *kept and *summed get
 * the element counts of both parts. */
void cu_split_init(cu_split_t *s, const cu_geom_t *g, int nops, int which, int64_t *kept,
                   int64_t *summed);

#ifdef __cplusplus
}
#endif

#endif
