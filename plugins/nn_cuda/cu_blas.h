/* Row-major matrix products through cuBLAS, which is column-major: a row-major matrix read as
 * column-major is its transpose, so C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T with
 * the operands swapped, and nothing is copied. Also the bias gradient (column sums) as a
 * matrix-vector product with ones. Each function returns NULL or the text of what failed. */
#ifndef LURAY_NN_CUDA_CU_BLAS_H
#define LURAY_NN_CUDA_CU_BLAS_H

#include <stdbool.h>
#include <stdint.h>

#include "cu_mem.h"

/* C (m x n) = alpha * op(A) op(B) + beta * C, row-major (nn_sgemm): op(A) is m x k (A is k x m
 * when ta), op(B) is k x n (B is n x k when tb). C is not read when beta is 0. */
const char *cu_sgemm(cu_ctx_t *ctx, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                     float alpha, const float *a, const float *b, float beta, float *c);
/* out (n) = beta * out + the sum of the m rows of g (m x n) (nn_sum_rows). */
const char *cu_sum_rows(cu_ctx_t *ctx, const float *g, int64_t m, int64_t n, float beta,
                        float *out);

#endif
