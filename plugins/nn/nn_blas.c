/* sgemm wrappers, the fused linear layer and the bias gradient (nn_blas.h). */
#include "nn_blas.h"

#include <limits.h>
#include <string.h>

#include <cblas.h>

#include "luray/errors.h"

/* OpenBLAS's own entry points (cblas.h declares them only in OpenBLAS's copy of the header). */
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);

/* Products below this many multiply-adds run on one thread: waking OpenBLAS's other threads
 * costs more than they save (a 128x256x10 layer takes twice as long on two threads as on one). */
#define NN_SMALL_GEMM (1 << 21)

/* The thread count asked for (OpenBLAS keeps its own copy, process-wide, as this is). */
static int blas_threads = 1;

static bool fits_int(int64_t v)
{
    return v >= 0 && v <= INT_MAX;
}

int nn_sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
             const float *b, float beta, float *c)
{
    if (!fits_int(m) || !fits_int(n) || !fits_int(k))
        return LURAY_ETOOBIG;
    if (m == 0 || n == 0)
        return 0;
    if (k == 0) { /* nothing to multiply: C = beta * C, and BLAS may reject the leading dims */
        for (int64_t i = 0; i < m * n; i++)
            c[i] = beta == 0.0f ? 0.0f : beta * c[i];
        return 0;
    }
    bool small = blas_threads > 1 && m * n * k < NN_SMALL_GEMM;

    if (small)
        openblas_set_num_threads(1);
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)m, (int)n, (int)k, alpha, a, ta ? (int)m : (int)k, b, tb ? (int)k : (int)n,
                beta, c, (int)n);
    if (small)
        openblas_set_num_threads(blas_threads);
    return 0;
}

int nn_linear_forward(const float *x, const float *w, const float *bias, int64_t m, int64_t n,
                      int64_t k, int act, float *out)
{
    int rc;

    /* The bias rows go in first so that sgemm adds the product to them (beta 1): one pass. */
    if (bias)
        for (int64_t i = 0; i < m; i++)
            memcpy(out + i * n, bias, (size_t)n * sizeof *out);
    if ((rc = nn_sgemm(false, true, m, n, k, 1.0f, x, w, bias ? 1.0f : 0.0f, out)) < 0)
        return rc;
    if (act != NN_ACT_NONE)
        nn_unary((nn_unary_op_t)act, out, out, m * n);
    return 0;
}

void nn_sum_rows(const float *g, int64_t m, int64_t n, float beta, float *out)
{
    if (beta == 0.0f)
        memset(out, 0, (size_t)n * sizeof *out);
    else if (beta != 1.0f)
        for (int64_t j = 0; j < n; j++)
            out[j] *= beta;
    for (int64_t i = 0; i < m; i++) {
        const float *row = g + i * n;

        for (int64_t j = 0; j < n; j++)
            out[j] += row[j];
    }
}

void nn_blas_set_threads(int n)
{
    blas_threads = n < 1 ? 1 : n;
    openblas_set_num_threads(blas_threads);
}

int nn_blas_threads(void)
{
    return openblas_get_num_threads();
}
