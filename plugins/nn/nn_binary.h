/* Element-wise binary kernels over contiguous float32 buffers with NumPy broadcasting, and their
 * backward passes, which reduce the gradient to the operand's own shape. */
#ifndef LURAY_NN_BINARY_H
#define LURAY_NN_BINARY_H

#include <stdbool.h>

#include "nn_shape.h"

typedef enum {
    NN_ADD,
    NN_SUB,
    NN_MUL,
    NN_DIV,
    NN_POW,
    /* comparisons give 1 or 0 and have no gradient */
    NN_EQ,
    NN_NE,
    NN_LT,
    NN_LE,
    NN_GT,
    NN_GE,
    NN_BINARY_COUNT
} nn_binary_op_t;

const char *nn_binary_name(nn_binary_op_t op);
bool nn_binary_has_grad(nn_binary_op_t op);

/* out = a op b; as and bs must broadcast to os (nn_shape_broadcast). A scalar is a 0-d shape. */
void nn_binary(nn_binary_op_t op, const float *a, const nn_shape_t *as, const float *b,
               const nn_shape_t *bs, float *out, const nn_shape_t *os);

/* The gradient of operand `which` (0: a, 1: b) given g, the gradient of out = a op b (out is the
 * forward result, shape os), summed over the dimensions that operand was broadcast along:
 * dst (the operand's shape) is overwritten. */
void nn_binary_backward(nn_binary_op_t op, int which, const float *g, const float *a,
                        const nn_shape_t *as, const float *b, const nn_shape_t *bs,
                        const float *out, const nn_shape_t *os, float *dst);

/* dst += alpha * src over n elements (gradient accumulation). */
void nn_axpy(float *dst, float alpha, const float *src, int64_t n);

#endif
