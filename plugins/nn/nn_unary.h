/* Element-wise unary kernels over contiguous float32 buffers and their gradients. */
#ifndef LURAY_NN_UNARY_H
#define LURAY_NN_UNARY_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    NN_NEG,
    NN_EXP,
    NN_LOG,
    NN_RELU,
    NN_SIGMOID,
    NN_TANH,
    NN_UNARY_COUNT
} nn_unary_op_t;

const char *nn_unary_name(nn_unary_op_t op);
/* Whether the gradient needs only the forward result (so an activation can run in place). */
bool nn_unary_grad_from_out(nn_unary_op_t op);

/* out = op(a); out may be a (in place). */
void nn_unary(nn_unary_op_t op, const float *a, float *out, int64_t n);

/* dst = g * op'(a), with out = op(a) the forward result; a may be NULL when
 * nn_unary_grad_from_out(op). dst may be g (in place). */
void nn_unary_backward(nn_unary_op_t op, const float *g, const float *a, const float *out,
                       float *dst, int64_t n);

#endif
