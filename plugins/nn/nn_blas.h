/* Matrix products through OpenBLAS's cblas_sgemm (row-major, transposed variants for backward)
 * and the fused linear layer: out = act(x W^T + bias) in one pass over the output. */
#ifndef LURAY_NN_BLAS_H
#define LURAY_NN_BLAS_H

#include <stdbool.h>
#include <stdint.h>

#include "nn_unary.h"

/* No activation for nn_linear_forward. */
#define NN_ACT_NONE (-1)

/* C (m x n) = alpha * op(A) op(B) + beta * C, row-major: op(A) is m x k (A is k x m when ta),
 * op(B) is k x n (B is n x k when tb). C is not read when beta is 0. LURAY_ETOOBIG when a
 * dimension exceeds BLAS's int. */
int nn_sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
             const float *b, float beta, float *c);

/* out (m x n) = act(x (m x k) W^T + bias) with W n x k (as torch stores a Linear's weight) and
 * bias of n floats or NULL; act NN_ACT_NONE or an nn_unary_op_t whose gradient needs only the
 * output (nn_unary_grad_from_out). */
int nn_linear_forward(const float *x, const float *w, const float *bias, int64_t m, int64_t n,
                      int64_t k, int act, float *out);

/* out (n) = beta * out + the sum of the m rows of g (m x n): a bias's gradient. */
void nn_sum_rows(const float *g, int64_t m, int64_t n, float beta, float *out);

/* OpenBLAS's thread count (the whole process shares it). */
void nn_blas_set_threads(int n);
int nn_blas_threads(void);

#endif
