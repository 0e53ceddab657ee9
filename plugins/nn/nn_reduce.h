/* Reductions over contiguous float32 buffers (sum, mean, max: over everything or along one
 * axis), their gradients, argmax, and softmax / log-softmax along the last axis. An axis is
 * addressed as outer x len x inner: the product of the dimensions before it, its own size and
 * the product of those after it. */
#ifndef LURAY_NN_REDUCE_H
#define LURAY_NN_REDUCE_H

#include <stdbool.h>
#include <stdint.h>

/* The sum of n floats, accumulated in double. */
double nn_sum_all(const float *a, int64_t n);
/* The largest of n > 0 floats (NaN wins, as in PyTorch) and the index of its first occurrence. */
float nn_max_all(const float *a, int64_t n, int64_t *arg);

/* out (outer x inner) = scale * sum along the axis. */
void nn_sum_axis(const float *a, int64_t outer, int64_t len, int64_t inner, float scale,
                 float *out);
/* out (outer x inner) = max along the axis (len > 0); arg (may be NULL) its index, 0-based. */
void nn_max_axis(const float *a, int64_t outer, int64_t len, int64_t inner, float *out,
                 int64_t *arg);
/* The gradient of a sum along the axis: dst (outer x len x inner) = scale * g (outer x inner)
 * repeated along the axis. */
void nn_sum_axis_backward(const float *g, int64_t outer, int64_t len, int64_t inner, float scale,
                          float *dst);
/* The gradient of a max along the axis: dst is zeroed, then g goes to each row's argmax. */
void nn_max_axis_backward(const float *g, const int64_t *arg, int64_t outer, int64_t len,
                          int64_t inner, float *dst);

/* Softmax (or log-softmax) of each row of a (rows x cols), max-shifted for stability. */
void nn_softmax_rows(const float *a, int64_t rows, int64_t cols, bool log, float *out);
/* dst = the gradient of the input given g and the forward result y; dst may be g. */
void nn_softmax_rows_backward(const float *g, const float *y, int64_t rows, int64_t cols,
                              bool log, float *dst);

#endif
