/* Loss kernels over contiguous float32 buffers: cross-entropy fused with log-softmax (logits and
 * integer class ids), mean squared error, binary cross-entropy on probabilities and on logits.
 * Each forward returns the summed loss (the caller divides for a mean); each backward writes the
 * gradient of scale * that sum. */
#ifndef LURAY_NN_LOSS_H
#define LURAY_NN_LOSS_H

#include <stdint.h>

/* logits n x c, labels n class ids in [0, c). probs (n x c) receives the softmax, which the
 * backward pass needs. LURAY_EINVAL when a label is out of range; *bad then holds its row. */
int nn_cross_entropy(const float *logits, const int64_t *labels, int64_t n, int64_t c,
                     float *probs, double *sum, int64_t *bad);
/* dst (n x c) = scale * (probs - onehot(labels)). */
void nn_cross_entropy_backward(const float *probs, const int64_t *labels, int64_t n, int64_t c,
                               float scale, float *dst);

double nn_mse(const float *p, const float *t, int64_t n);
/* dst = scale * 2 (p - t) */
void nn_mse_backward(const float *p, const float *t, int64_t n, float scale, float *dst);

/* Binary cross-entropy of probabilities p against targets t; each log is clamped at -100 as
 * PyTorch does, so p = 0 or 1 gives a large but finite loss. */
double nn_bce(const float *p, const float *t, int64_t n);
void nn_bce_backward(const float *p, const float *t, int64_t n, float scale, float *dst);

/* Binary cross-entropy of logits x (sigmoid applied inside, in the stable form
 * max(x, 0) - x t + log(1 + exp(-|x|))). */
double nn_bce_logits(const float *x, const float *t, int64_t n);
void nn_bce_logits_backward(const float *x, const float *t, int64_t n, float scale, float *dst);

#endif
