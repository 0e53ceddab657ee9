/* SGD and Adam update kernels (nn_optim.h). */
#include "nn_optim.h"

#include <math.h>

void nn_sgd_step(float *p, const float *g, float *buf, int64_t n, const nn_sgd_opts_t *o,
                 bool first)
{
    const float lr = o->lr, mom = o->momentum, damp = 1.0f - o->dampening, wd = o->weight_decay;

    if (!buf || mom == 0.0f) { /* the plain step: its own loop, as it is the common one */
        for (int64_t i = 0; i < n; i++)
            p[i] -= lr * (g[i] + wd * p[i]);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        float d = g[i] + wd * p[i];
        float b = first ? d : mom * buf[i] + damp * d;

        buf[i] = b;
        p[i] -= lr * (o->nesterov ? d + mom * b : b);
    }
}

void nn_adam_consts(const nn_adam_opts_t *o, int64_t step, nn_adam_consts_t *k)
{
    const double bc1 = 1.0 - pow(o->beta1, (double)step), bc2 = 1.0 - pow(o->beta2, (double)step);

    k->beta1 = o->beta1;
    k->beta2 = o->beta2;
    k->eps = o->eps;
    k->step_size = (float)(o->lr / bc1);
    k->inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    k->l2 = o->decoupled ? 0.0f : o->weight_decay;
    k->shrink = o->decoupled ? 1.0f - o->lr * o->weight_decay : 1.0f;
}

void nn_adam_step(float *p, const float *g, float *m, float *v, int64_t n, int64_t step,
                  const nn_adam_opts_t *o)
{
    nn_adam_consts_t k;

    nn_adam_consts(o, step, &k);
    /* Locals, so that the loop's stores cannot alias them and they stay in registers. */
    const float b1 = k.beta1, b2 = k.beta2, eps = k.eps, l2 = k.l2, shrink = k.shrink;
    const float step_size = k.step_size, inv_sqrt_bc2 = k.inv_sqrt_bc2;

    for (int64_t i = 0; i < n; i++) {
        float d = g[i] + l2 * p[i];

        m[i] = b1 * m[i] + (1.0f - b1) * d;
        v[i] = b2 * v[i] + (1.0f - b2) * d * d;
        p[i] = p[i] * shrink - step_size * m[i] / (sqrtf(v[i]) * inv_sqrt_bc2 + eps);
    }
}
