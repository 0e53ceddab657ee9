// Optimizer update kernels (cu_kernels.h), in place over a parameter: nn_optim.c's SGD
// (momentum, dampening, Nesterov, weight decay) and Adam / AdamW, element by element.
#include "cu_device.cuh"

__global__ void k_sgd_plain(float *p, const float *g, int64_t n, float lr, float wd)
{
    CU_FOR_EACH(i, n) p[i] -= lr * (g[i] + wd * p[i]);
}

__global__ void k_sgd_momentum(float *p, const float *g, float *buf, int64_t n, nn_sgd_opts_t o,
                               bool first)
{
    const float damp = 1.0f - o.dampening;

    CU_FOR_EACH(i, n) {
        float d = g[i] + o.weight_decay * p[i];
        float b = first ? d : o.momentum * buf[i] + damp * d;

        buf[i] = b;
        p[i] -= o.lr * (o.nesterov ? d + o.momentum * b : b);
    }
}

extern "C" cudaError_t cu_sgd_step(cudaStream_t stream, float *p, const float *g, float *buf,
                                   int64_t n, const nn_sgd_opts_t *o, bool first)
{
    if (n <= 0)
        return cudaSuccess;
    if (!buf || o->momentum == 0.0f)
        k_sgd_plain<<<cu_blocks(n), CU_THREADS, 0, stream>>>(p, g, n, o->lr, o->weight_decay);
    else
        k_sgd_momentum<<<cu_blocks(n), CU_THREADS, 0, stream>>>(p, g, buf, n, *o, first);
    return cudaGetLastError();
}

__global__ void k_adam(float *p, const float *g, float *m, float *v, int64_t n,
                       nn_adam_consts_t k)
{
    CU_FOR_EACH(i, n) {
        float d = g[i] + k.l2 * p[i];

        m[i] = k.beta1 * m[i] + (1.0f - k.beta1) * d;
        v[i] = k.beta2 * v[i] + (1.0f - k.beta2) * d * d;
        p[i] = p[i] * k.shrink - k.step_size * m[i] / (sqrtf(v[i]) * k.inv_sqrt_bc2 + k.eps);
    }
}

extern "C" cudaError_t cu_adam_step(cudaStream_t stream, float *p, const float *g, float *m,
                                    float *v, int64_t n, const nn_adam_consts_t *k)
{
    if (n <= 0)
        return cudaSuccess;
    k_adam<<<cu_blocks(n), CU_THREADS, 0, stream>>>(p, g, m, v, n, *k);
    return cudaGetLastError();
}
