/* Shapes of nn tensors and the broadcasting iterator that the element-wise kernels walk: NumPy's
 * rules (shapes aligned at the right, a dimension of 1 stretches), dimensions coalesced first.
 * nn_cuda compiles nn_shape.c too, for the same shapes and the geometry of its kernels. */
#ifndef LURAY_NN_SHAPE_H
#define LURAY_NN_SHAPE_H

#include <stdbool.h>
#include <stdint.h>

#define NN_MAX_DIMS 8
#define NN_ITER_OPS 4

typedef struct {
    int ndim;
    int64_t dim[NN_MAX_DIMS];
} nn_shape_t;

int64_t nn_shape_numel(const nn_shape_t *s);
bool nn_shape_eq(const nn_shape_t *a, const nn_shape_t *b);
/* The shape a and b broadcast to; LURAY_EINVAL when they do not broadcast. */
int nn_shape_broadcast(const nn_shape_t *a, const nn_shape_t *b, nn_shape_t *out);
/* Whether `from` broadcasts to `to` (every dimension of `from` is 1 or equal, aligned right). */
bool nn_shape_broadcasts_to(const nn_shape_t *from, const nn_shape_t *to);

/* Walks the elements of an output shape row by row, keeping for each operand the offset of the
 * row's first element. An operand's inner step is 1 or 0 (0: broadcast along the row). */
typedef struct {
    int nops;
    int ndim; /* at least 1 after coalescing */
    int64_t rows, inner;
    int64_t dim[NN_MAX_DIMS];
    int64_t stride[NN_ITER_OPS][NN_MAX_DIMS];
    int64_t idx[NN_MAX_DIMS];
    int64_t off[NN_ITER_OPS];
} nn_iter_t;

/* Every operand shape must broadcast to `out` (nn_shape_broadcasts_to); nops <= NN_ITER_OPS. */
void nn_iter_init(nn_iter_t *it, const nn_shape_t *out, int nops, const nn_shape_t *const *ops);
/* The inner step of operand k: 0 or 1. */
static inline int64_t nn_iter_step(const nn_iter_t *it, int k)
{
    return it->stride[k][it->ndim - 1];
}
/* Moves the offsets to the next row. */
void nn_iter_next(nn_iter_t *it);

#endif
