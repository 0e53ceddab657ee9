/* The CUDA kernels of the nn backend as C launchers. Each queues its work on `stream` and returns
 * cudaSuccess or the launch's error (a fault of the work itself surfaces at the next
 * synchronisation); each does nothing for an empty input. Every kernel has a CPU twin in
 * plugins/nn, named in its comment, whose results it reproduces (within float rounding: sums are
 * taken in another order). All buffers are contiguous device memory. */
#ifndef LURAY_NN_CUDA_CU_KERNELS_H
#define LURAY_NN_CUDA_CU_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#include "cu_shape.h"

/* The same codes, in the same order, as the CPU plugin's nn_unary_op_t and nn_binary_op_t. */
typedef enum {
    CU_NEG,
    CU_EXP,
    CU_LOG,
    CU_RELU,
    CU_SIGMOID,
    CU_TANH,
    CU_UNARY_COUNT
} cu_unary_op_t;

/* No activation for cu_bias_act. */
#define CU_ACT_NONE (-1)

typedef enum {
    CU_ADD,
    CU_SUB,
    CU_MUL,
    CU_DIV,
    CU_POW,
    CU_EQ,
    CU_NE,
    CU_LT,
    CU_LE,
    CU_GT,
    CU_GE,
    CU_BINARY_COUNT
} cu_binary_op_t;

typedef enum { CU_LOSS_MSE, CU_LOSS_BCE, CU_LOSS_BCE_LOGITS, CU_LOSS_COUNT } cu_loss_t;

/* Device scratch the two-pass reductions need (partial sums, maxima and their positions): one
 * block per device context, reused by every reduction in stream order. */
#define CU_REDUCE_PARTS 512
#define CU_SCRATCH_BYTES (CU_REDUCE_PARTS * (sizeof(double) + sizeof(float) + sizeof(int64_t)))

#ifdef __cplusplus
extern "C" {
#endif

/* The CPU plugin's SGD options and Adam constants (nn_adam_consts computes them on the host). */
#include "../nn/nn_optim.h"

/* ---- element-wise (cu_elem.cu) ---- */

/* out = op(a) (nn_unary); out may be a. */
cudaError_t cu_unary(cudaStream_t stream, int op, const float *a, float *out, int64_t n);
/* dst = g * op'(a) from the forward result out (nn_unary_backward); a may be NULL for ops whose
 * gradient needs only out; dst may be g. */
cudaError_t cu_unary_backward(cudaStream_t stream, int op, const float *g, const float *a,
                              const float *out, float *dst, int64_t n);
/* out = a op b over geometry geo (operands: out, a, b) of n elements (nn_binary). A NULL operand
 * is the number given beside it. */
cudaError_t cu_binary(cudaStream_t stream, int op, const float *a, float av, const float *b,
                      float bv, float *out, const cu_geom_t *geo, int64_t n);
/* The gradient of operand `which` (0: a, 1: b) of out = a op b, summed over the dimensions it was
 * broadcast along (nn_binary_backward). split has operands out (g and fwd), a, b, dst; kept is
 * dst's size and summed the count each of its elements adds up. */
cudaError_t cu_binary_backward(cudaStream_t stream, int op, int which, const float *g,
                               const float *a, float av, const float *b, float bv,
                               const float *fwd, float *dst, const cu_split_t *split,
                               int64_t kept, int64_t summed);
cudaError_t cu_fill(cudaStream_t stream, float *p, float v, int64_t n);
/* dst += alpha * src (nn_axpy). */
cudaError_t cu_axpy(cudaStream_t stream, float *dst, float alpha, const float *src, int64_t n);
/* n elements of dtype sdtype to ddtype (luray dtype codes), as nn_convert converts. */
cudaError_t cu_convert(cudaStream_t stream, const void *src, int sdtype, void *dst, int ddtype,
                       int64_t n);
/* out (cols x rows) = the transpose of a (rows x cols) (nn_transpose2d). */
cudaError_t cu_transpose(cudaStream_t stream, const float *a, int64_t rows, int64_t cols,
                         float *out);
/* out (m x n) = act(out + bias) with bias n floats or NULL and act CU_ACT_NONE or a unary op:
 * what nn_linear_forward does around its sgemm. */
cudaError_t cu_bias_act(cudaStream_t stream, float *out, const float *bias, int64_t m,
                        int64_t n, int act);
/* out row i = src row idx[i], rows of rowbytes bytes, indices already checked (nn_gather_rows). */
cudaError_t cu_gather_rows(cudaStream_t stream, const void *src, size_t rowbytes,
                           const int64_t *idx, int64_t nidx, void *out);
/* dst row idx[i] += g row i, indices already checked (nn_index_add_rows). */
cudaError_t cu_index_add_rows(cudaStream_t stream, float *dst, int64_t rowlen,
                              const int64_t *idx, int64_t nidx, const float *g);
/* *first_bad = the first position whose idx is outside [0, limit), or n when none is. */
cudaError_t cu_check_index(cudaStream_t stream, const int64_t *idx, int64_t n, int64_t limit,
                           unsigned long long *first_bad);

/* ---- reductions (cu_reduce.cu) ---- */

/* out[0] = (float)(sum(a) * mul / div), the sum taken in double (nn_sum_all). */
cudaError_t cu_sum_all(cudaStream_t stream, const float *a, int64_t n, double mul, double div,
                       float *out, void *scratch);
/* out[0] = the largest of n > 0 floats (NaN wins), arg[0] its first position (nn_max_all). */
cudaError_t cu_max_all(cudaStream_t stream, const float *a, int64_t n, float *out, int64_t *arg,
                       void *scratch);
/* out (outer x inner) = scale * the sum along the axis (nn_sum_axis). */
cudaError_t cu_sum_axis(cudaStream_t stream, const float *a, int64_t outer, int64_t len,
                        int64_t inner, float scale, float *out);
/* dst (outer x len x inner) = scale * g repeated along the axis (nn_sum_axis_backward). */
cudaError_t cu_sum_axis_backward(cudaStream_t stream, const float *g, int64_t outer, int64_t len,
                                 int64_t inner, float scale, float *dst);
/* out and arg (outer x inner) = the max along the axis and its position (nn_max_axis). */
cudaError_t cu_max_axis(cudaStream_t stream, const float *a, int64_t outer, int64_t len,
                        int64_t inner, float *out, int64_t *arg);
/* dst = 0, then g at each max's position (nn_max_axis_backward). */
cudaError_t cu_max_axis_backward(cudaStream_t stream, const float *g, const int64_t *arg,
                                 int64_t outer, int64_t len, int64_t inner, float *dst);
/* Softmax or log-softmax of each row (nn_softmax_rows). */
cudaError_t cu_softmax_rows(cudaStream_t stream, const float *a, int64_t rows, int64_t cols,
                            bool log, float *out);
/* The input's gradient from g and the forward result y (nn_softmax_rows_backward). */
cudaError_t cu_softmax_rows_backward(cudaStream_t stream, const float *g, const float *y,
                                     int64_t rows, int64_t cols, bool log, float *dst);
/* out[0] = (float)(sum(v) * mul / div) of n doubles. */
cudaError_t cu_sum_f64(cudaStream_t stream, const double *v, int64_t n, double mul, double div,
                       float *out, void *scratch);

/* ---- losses (cu_loss.cu) ---- */

/* probs = softmax of the logits rows (n x c) and rowloss[r] = -log softmax at labels[r], in
 * double (nn_cross_entropy; labels already checked). */
cudaError_t cu_cross_entropy_rows(cudaStream_t stream, const float *logits,
                                  const int64_t *labels, int64_t n, int64_t c, float *probs,
                                  double *rowloss);
/* dst = scale * (probs - onehot(labels)) with scale = g, divided by n for a mean, g read from
 * gp when it is not NULL, else gv (nn_cross_entropy_backward). */
cudaError_t cu_cross_entropy_backward(cudaStream_t stream, const float *probs,
                                      const int64_t *labels, int64_t n, int64_t c,
                                      const float *gp, float gv, bool mean, float *dst);
/* out[0] = the loss over n elements: the sum, or the mean (NaN for none) (nn_mse, nn_bce,
 * nn_bce_logits). */
cudaError_t cu_pair_loss(cudaStream_t stream, int loss, const float *p, const float *t,
                         int64_t n, bool mean, float *out, void *scratch);
/* The prediction's gradient, the seed as for cu_cross_entropy_backward (nn_*_backward). */
cudaError_t cu_pair_loss_backward(cudaStream_t stream, int loss, const float *p, const float *t,
                                  int64_t n, const float *gp, float gv, bool mean, float *dst);

/* ---- optimizers (cu_optim.cu) ---- */

/* nn_sgd_step; buf NULL when momentum is 0. */
cudaError_t cu_sgd_step(cudaStream_t stream, float *p, const float *g, float *buf, int64_t n,
                        const nn_sgd_opts_t *o, bool first);
/* nn_adam_step with its constants computed on the host. */
cudaError_t cu_adam_step(cudaStream_t stream, float *p, const float *g, float *m, float *v,
                         int64_t n, const nn_adam_consts_t *k);

#ifdef __cplusplus
}
#endif

#endif
