/* sgemm and column sums through cuBLAS on a context's stream (cu_blas.h). */
#include "cu_blas.h"

#include <limits.h>

static const char *const TOO_BIG = "a dimension exceeds cuBLAS's 32-bit int";

static bool fits_int(int64_t v)
{
    return v >= 0 && v <= INT_MAX;
}

static const char *cuda_text(cudaError_t err)
{
    if (err == cudaSuccess)
        return NULL;
    (void)cudaGetLastError();
    return cudaGetErrorString(err);
}

static const char *blas_text(cublasStatus_t st)
{
    return st == CUBLAS_STATUS_SUCCESS ? NULL : cublasGetStatusString(st);
}

/* c (count floats) = beta * c: what a product with nothing to add up leaves. */
static const char *scale(cu_ctx_t *ctx, float *c, int64_t count, float beta)
{
    if (beta == 0.0f)
        return cuda_text(cudaMemsetAsync(c, 0, (size_t)count * sizeof *c, ctx->stream));
    if (beta == 1.0f)
        return NULL;
    if (!fits_int(count))
        return TOO_BIG;
    return blas_text(cublasSscal(ctx->blas, (int)count, &beta, c, 1));
}

const char *cu_sgemm(cu_ctx_t *ctx, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                     float alpha, const float *a, const float *b, float beta, float *c)
{
    cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;

    if (!fits_int(m) || !fits_int(n) || !fits_int(k))
        return TOO_BIG;
    if (m == 0 || n == 0)
        return NULL;
    if (k == 0)
        return scale(ctx, c, m * n, beta);
    /* Column-major, C^T (n x m) = op(B)^T (n x k) op(A)^T (k x m); each leading dimension is
     * the row length of the row-major matrix as stored. */
    return blas_text(cublasSgemm(ctx->blas, opb, opa, (int)n, (int)m, (int)k, &alpha, b,
                                 tb ? (int)k : (int)n, a, ta ? (int)m : (int)k, &beta, c,
                                 (int)n));
}

const char *cu_sum_rows(cu_ctx_t *ctx, const float *g, int64_t m, int64_t n, float beta,
                        float *out)
{
    const float one = 1.0f;
    cudaError_t err;

    if (!fits_int(m) || !fits_int(n))
        return TOO_BIG;
    if (n == 0)
        return NULL;
    if (m == 0)
        return scale(ctx, out, n, beta);
    if ((err = cu_ctx_ones(ctx, (size_t)m)) != cudaSuccess)
        return cuda_text(err);
    /* g read column-major is n x m; times m ones it gives the n column sums. */
    return blas_text(cublasSgemv(ctx->blas, CUBLAS_OP_N, (int)n, (int)m, &one, g, (int)n,
                                 ctx->ones, 1, &beta, out, 1));
}
