// Loss kernels (cu_kernels.h): cross-entropy fused with softmax (one warp per row), mean squared
// error and binary cross-entropy on probabilities and on logits, each with its gradient. The
// terms are those of nn_loss.c, in double where it uses double.
#include "cu_reduce.cuh"

#define BCE_LOG_MIN (-100.0)
#define BCE_GRAD_EPS 1e-12

// ---- cross-entropy ----

__device__ __forceinline__ float warp_max_nan(float v)
{
    for (int off = CU_WARP / 2; off > 0; off /= 2)
        v = cu_max_nan(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

// One warp per row: probs = softmax (as nn_softmax_rows computes it) and rowloss = m + log(sum
// exp(x - m)) - x[label] from the logits in double (as nn_cross_entropy computes it).
__global__ void k_cross_entropy_rows(const float *logits, const int64_t *labels, int64_t n,
                                     int64_t c, float *probs, double *rowloss)
{
    int lane = threadIdx.x % CU_WARP;
    int64_t first = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / CU_WARP;
    int64_t step = (int64_t)gridDim.x * blockDim.x / CU_WARP;

    for (int64_t r = first; r < n; r += step) {
        const float *x = logits + r * c;
        float *p = probs + r * c;
        float m = -INFINITY, ms;
        double sf = 0.0, sd = 0.0;
        int64_t label = labels[r];

        for (int64_t k = lane; k < c; k += CU_WARP)
            m = cu_max_nan(m, x[k]);
        m = warp_max_nan(m);
        ms = m == -INFINITY ? 0.0f : m;
        for (int64_t k = lane; k < c; k += CU_WARP) {
            float e = expf(x[k] - ms);

            p[k] = e;
            sf += e;
            sd += exp((double)x[k] - m);
        }
        sf = cu_warp_sum_all(sf);
        sd = cu_warp_sum_all(sd);
        float inv = (float)(1.0 / sf);
        for (int64_t k = lane; k < c; k += CU_WARP)
            p[k] *= inv;
        if (lane == 0) // labels were checked; a stray one gives NaN, never a stray read
            rowloss[r] = label >= 0 && label < c ? m + log(sd) - x[label] : (double)NAN;
    }
}

extern "C" cudaError_t cu_cross_entropy_rows(cudaStream_t stream, const float *logits,
                                             const int64_t *labels, int64_t n, int64_t c,
                                             float *probs, double *rowloss)
{
    if (n <= 0 || c <= 0)
        return cudaSuccess;
    k_cross_entropy_rows<<<cu_blocks(n * CU_WARP), CU_THREADS, 0, stream>>>(logits, labels, n, c,
                                                                           probs, rowloss);
    return cudaGetLastError();
}

// The scale a loss's gradient is multiplied by: the seed g, divided by n for a mean (in float,
// as the CPU binding divides).
__device__ __forceinline__ float seed_scale(const float *gp, float gv, bool mean, int64_t n)
{
    float g = gp ? gp[0] : gv;

    return mean && n ? g / (float)n : g;
}

__global__ void k_cross_entropy_backward(const float *probs, const int64_t *labels, int64_t n,
                                         int64_t c, const float *gp, float gv, bool mean,
                                         float *dst)
{
    float scale = seed_scale(gp, gv, mean, n);

    CU_FOR_EACH(i, n * c) {
        float d = scale * probs[i];

        if (labels[i / c] == i % c)
            d -= scale;
        dst[i] = d;
    }
}

extern "C" cudaError_t cu_cross_entropy_backward(cudaStream_t stream, const float *probs,
                                                 const int64_t *labels, int64_t n, int64_t c,
                                                 const float *gp, float gv, bool mean,
                                                 float *dst)
{
    if (n <= 0 || c <= 0)
        return cudaSuccess;
    k_cross_entropy_backward<<<cu_blocks(n * c), CU_THREADS, 0, stream>>>(probs, labels, n, c, gp,
                                                                         gv, mean, dst);
    return cudaGetLastError();
}

// ---- element-wise losses ----

__device__ __forceinline__ double clamped_log(double v)
{
    double l = log(v);

    return l < BCE_LOG_MIN ? BCE_LOG_MIN : l;
}

struct loss_term {
    int loss;
    const float *p, *t;

    __device__ double operator()(int64_t i) const
    {
        double pv = p[i], tv = t[i];

        switch (loss) {
        case CU_LOSS_MSE: {
            double d = pv - tv;
            return d * d;
        }
        case CU_LOSS_BCE: return -(tv * clamped_log(pv) + (1.0 - tv) * clamped_log(1.0 - pv));
        default: return (pv > 0 ? pv : 0) - pv * tv + log1p(exp(-fabs(pv)));
        }
    }
};

extern "C" cudaError_t cu_pair_loss(cudaStream_t stream, int loss, const float *p, const float *t,
                                    int64_t n, bool mean, float *out, void *scratch)
{
    return cu_reduce_sum(stream, loss_term{loss, p, t}, n, 1.0, mean ? (double)n : 1.0, out,
                         scratch);
}

__global__ void k_pair_loss_backward(int loss, const float *p, const float *t, int64_t n,
                                     const float *gp, float gv, bool mean, float *dst)
{
    float scale = seed_scale(gp, gv, mean, n);

    CU_FOR_EACH(i, n) {
        switch (loss) {
        case CU_LOSS_MSE: dst[i] = 2.0f * scale * (p[i] - t[i]); break;
        case CU_LOSS_BCE: {
            double d = (double)p[i] * (1.0 - p[i]);

            dst[i] = (float)(scale * (p[i] - t[i]) / (d > BCE_GRAD_EPS ? d : BCE_GRAD_EPS));
            break;
        }
        default: {
            double v = p[i], sig = v >= 0 ? 1.0 / (1.0 + exp(-v)) : exp(v) / (1.0 + exp(v));

            dst[i] = (float)(scale * (sig - t[i]));
            break;
        }
        }
    }
}

extern "C" cudaError_t cu_pair_loss_backward(cudaStream_t stream, int loss, const float *p,
                                             const float *t, int64_t n, const float *gp,
                                             float gv, bool mean, float *dst)
{
    if (n <= 0)
        return cudaSuccess;
    k_pair_loss_backward<<<cu_blocks(n), CU_THREADS, 0, stream>>>(loss, p, t, n, gp, gv, mean,
                                                                 dst);
    return cudaGetLastError();
}
