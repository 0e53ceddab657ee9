/* The geometry the CUDA element-wise kernels index by, built on the CPU plugin's shapes and
 * broadcasting iterator (plugins/nn/nn_shape.h, whose nn_shape.c this plugin compiles too):
 * dimensions coalesced on the host so that a kernel divides as little as it can, and the split
 * of a broadcast into the dimensions a gradient keeps and those it sums. */
#ifndef LURAY_NN_CUDA_CU_SHAPE_H
#define LURAY_NN_CUDA_CU_SHAPE_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "../nn/nn_shape.h"

/* Operands of one geometry: the output first, then up to three inputs. */
#define CU_GEOM_OPS NN_ITER_OPS

/* An output shape walked element by element (the last dimension fastest) with, for each operand,
 * the element stride of every dimension: 0 where the operand is broadcast. Dimensions of size 1
 * are dropped and neighbours every operand steps through as one are merged (nn_iter_init's
 * coalescing); ndim >= 1. Passed to kernels by value. */
typedef struct {
    int ndim;
    int64_t dim[NN_MAX_DIMS];
    int64_t stride[CU_GEOM_OPS][NN_MAX_DIMS];
} cu_geom_t;

/* A geometry split for a gradient reduced to one operand's shape: the kept dimensions (the
 * operand's own, k*) and the summed ones (broadcast in the operand, r*), with each operand's
 * strides in both. The number of kept elements is the operand's size. */
typedef struct {
    int nk, nr;
    int64_t kdim[NN_MAX_DIMS], rdim[NN_MAX_DIMS];
    int64_t kstride[CU_GEOM_OPS][NN_MAX_DIMS], rstride[CU_GEOM_OPS][NN_MAX_DIMS];
} cu_split_t;

/* Every operand shape must broadcast to out; 1 <= nops <= CU_GEOM_OPS. */
void cu_geom_init(cu_geom_t *g, const nn_shape_t *out, int nops, const nn_shape_t *const *ops);
/* Splits g by operand `which`: its dimensions of stride 0 are summed over. *kept and *summed get
 * the element counts of both parts. */
void cu_split_init(cu_split_t *s, const cu_geom_t *g, int nops, int which, int64_t *kept,
                   int64_t *summed);

#ifdef __cplusplus
}
#endif

#endif
