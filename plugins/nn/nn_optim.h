/* Optimizer update kernels, in place over contiguous float32 parameters, with PyTorch's
 * definitions of SGD (momentum, dampening, Nesterov, weight decay) and Adam / AdamW. nn_cuda
 * compiles nn_optim.c too, so that its kernels take the same options and Adam constants. */
#ifndef LURAY_NN_OPTIM_H
#define LURAY_NN_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    float lr, momentum, dampening, weight_decay;
    bool nesterov;
} nn_sgd_opts_t;

/* One step for n parameters p with gradient g. buf is the momentum buffer (NULL when momentum
 * is 0); on the first step (first) it is set to the gradient, as PyTorch does. */
void nn_sgd_step(float *p, const float *g, float *buf, int64_t n, const nn_sgd_opts_t *o,
                 bool first);

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    bool decoupled; /* AdamW: decay the weights directly instead of adding to the gradient */
} nn_adam_opts_t;

/* What every element of one Adam step uses, computed once per step (bias corrections in double). */
typedef struct {
    float beta1, beta2, eps, l2, shrink, step_size, inv_sqrt_bc2;
} nn_adam_consts_t;

void nn_adam_consts(const nn_adam_opts_t *o, int64_t step, nn_adam_consts_t *k);

/* One step (step counts from 1) with first and second moment buffers m and v. */
void nn_adam_step(float *p, const float *g, float *m, float *v, int64_t n, int64_t step,
                  const nn_adam_opts_t *o);

#endif
