// Reduction kernels (cu_kernels.h): sums and maxima over everything or along one axis (an axis
// addressed as outer x len x inner, as in nn_reduce.h), their gradients, and softmax /
// log-softmax along rows, one warp per row.
#include "cu_reduce.cuh"

// ---- sums over everything ----

struct sum_f32 {
    const float *a;
    __device__ double operator()(int64_t i) const { return a[i]; }
};

struct sum_f64 {
    const double *a;
    __device__ double operator()(int64_t i) const { return a[i]; }
};

extern "C" cudaError_t cu_sum_all(cudaStream_t stream, const float *a, int64_t n, double mul,
                                  double div, float *out, void *scratch)
{
    return cu_reduce_sum(stream, sum_f32{a}, n, mul, div, out, scratch);
}

extern "C" cudaError_t cu_sum_f64(cudaStream_t stream, const double *v, int64_t n, double mul,
                                  double div, float *out, void *scratch)
{
    return cu_reduce_sum(stream, sum_f64{v}, n, mul, div, out, scratch);
}

// ---- max over everything ----

// No element: loses to any element.
#define NO_POS INT64_MAX

// Whether (v2, i2) beats (v, i): a NaN beats a number, a larger value beats a smaller one, and
// between equal values (or two NaNs) the first position wins, which is what nn_max_all's scan
// from the front gives.
__device__ __forceinline__ bool pair_beats(float v2, int64_t i2, float v, int64_t i)
{
    if (i2 == NO_POS)
        return false;
    if (i == NO_POS)
        return true;
    bool n2 = v2 != v2, n1 = v != v;
    if (n2 || n1)
        return n2 && (!n1 || i2 < i);
    return v2 > v || (v2 == v && i2 < i);
}

// The best pair of the block, valid in thread 0.
__device__ void block_max_pair(float *v, int64_t *i)
{
    __shared__ float pv[CU_THREADS / CU_WARP];
    __shared__ int64_t pi[CU_THREADS / CU_WARP];
    int lane = threadIdx.x % CU_WARP, warp = threadIdx.x / CU_WARP;

    for (int off = CU_WARP / 2; off > 0; off /= 2) {
        float v2 = __shfl_down_sync(0xffffffffu, *v, off);
        int64_t i2 = __shfl_down_sync(0xffffffffu, *i, off);

        if (pair_beats(v2, i2, *v, *i)) {
            *v = v2;
            *i = i2;
        }
    }
    if (lane == 0) {
        pv[warp] = *v;
        pi[warp] = *i;
    }
    __syncthreads();
    if (threadIdx.x == 0)
        for (int w = 1; w < (int)(blockDim.x / CU_WARP); w++)
            if (pair_beats(pv[w], pi[w], *v, *i)) {
                *v = pv[w];
                *i = pi[w];
            }
}

// Each thread scans its elements in increasing order with nn_max_all's test, then the block
// combines; the result goes to parts (pass one) or to out and arg (a single block).
__global__ void k_max_parts(const float *a, int64_t n, float *pv, int64_t *pi, float *out,
                            int64_t *arg)
{
    float best = 0.0f;
    int64_t at = NO_POS;

    CU_FOR_EACH(i, n) {
        if (pair_beats(a[i], i, best, at)) {
            best = a[i];
            at = i;
        }
    }
    block_max_pair(&best, &at);
    if (threadIdx.x == 0) {
        if (pv) {
            pv[blockIdx.x] = best;
            pi[blockIdx.x] = at;
        } else {
            out[0] = best;
            arg[0] = at;
        }
    }
}

__global__ void k_max_finish(const float *pv, const int64_t *pi, int nparts, float *out,
                             int64_t *arg)
{
    float best = 0.0f;
    int64_t at = NO_POS;

    for (int i = threadIdx.x; i < nparts; i += blockDim.x)
        if (pair_beats(pv[i], pi[i], best, at)) {
            best = pv[i];
            at = pi[i];
        }
    block_max_pair(&best, &at);
    if (threadIdx.x == 0) {
        out[0] = best;
        arg[0] = at;
    }
}

extern "C" cudaError_t cu_max_all(cudaStream_t stream, const float *a, int64_t n, float *out,
                                  int64_t *arg, void *scratch)
{
    unsigned parts = cu_blocks(n);
    float *pv = (float *)((char *)scratch + CU_REDUCE_PARTS * sizeof(double));
    int64_t *pi = (int64_t *)((char *)pv + CU_REDUCE_PARTS * sizeof(float));

    if (n <= 0)
        return cudaSuccess;
    if (parts > CU_REDUCE_PARTS)
        parts = CU_REDUCE_PARTS;
    if (parts == 1) {
        k_max_parts<<<1, CU_THREADS, 0, stream>>>(a, n, NULL, NULL, out, arg);
        return cudaGetLastError();
    }
    k_max_parts<<<parts, CU_THREADS, 0, stream>>>(a, n, pv, pi, out, arg);
    k_max_finish<<<1, CU_THREADS, 0, stream>>>(pv, pi, (int)parts, out, arg);
    return cudaGetLastError();
}

// ---- along an axis ----

// One thread per output element, summing along the axis (strided by inner, so neighbouring
// threads read neighbouring floats).
__global__ void k_sum_axis(const float *a, int64_t outer, int64_t len, int64_t inner,
                           float scale, float *out)
{
    CU_FOR_EACH(j, outer * inner) {
        int64_t o = j / inner, i = j % inner;
        const float *src = a + o * len * inner + i;
        double s = 0.0;

        for (int64_t l = 0; l < len; l++)
            s += src[l * inner];
        out[j] = (float)(scale * s);
    }
}

// One block per output element when the axis is the last and long: the threads share the row.
__global__ void k_sum_rows_long(const float *a, int64_t rows, int64_t len, float scale,
                                float *out)
{
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *src = a + r * len;
        double s = 0.0;

        for (int64_t l = threadIdx.x; l < len; l += blockDim.x)
            s += src[l];
        s = cu_block_sum(s);
        if (threadIdx.x == 0)
            out[r] = (float)(scale * s);
    }
}

// Rows longer than this get a block each.
#define LONG_ROW 256

extern "C" cudaError_t cu_sum_axis(cudaStream_t stream, const float *a, int64_t outer,
                                   int64_t len, int64_t inner, float scale, float *out)
{
    int64_t n = outer * inner;

    if (n <= 0)
        return cudaSuccess;
    if (inner == 1 && len > LONG_ROW)
        k_sum_rows_long<<<cu_blocks_per_item(outer), CU_THREADS, 0, stream>>>(a, outer, len,
                                                                              scale, out);
    else
        k_sum_axis<<<cu_blocks(n), CU_THREADS, 0, stream>>>(a, outer, len, inner, scale, out);
    return cudaGetLastError();
}

__global__ void k_sum_axis_backward(const float *g, int64_t outer, int64_t len, int64_t inner,
                                    float scale, float *dst)
{
    CU_FOR_EACH(j, outer * len * inner) {
        int64_t o = j / (len * inner), i = j % inner;

        dst[j] = scale * g[o * inner + i];
    }
}

extern "C" cudaError_t cu_sum_axis_backward(cudaStream_t stream, const float *g, int64_t outer,
                                            int64_t len, int64_t inner, float scale, float *dst)
{
    int64_t n = outer * len * inner;

    if (n <= 0)
        return cudaSuccess;
    k_sum_axis_backward<<<cu_blocks(n), CU_THREADS, 0, stream>>>(g, outer, len, inner, scale,
                                                                 dst);
    return cudaGetLastError();
}

// One thread per output element, scanning the axis in order with nn_max_axis's test.
__global__ void k_max_axis(const float *a, int64_t outer, int64_t len, int64_t inner,
                           float *out, int64_t *arg)
{
    CU_FOR_EACH(j, outer * inner) {
        int64_t o = j / inner, i = j % inner;
        const float *src = a + o * len * inner + i;
        float best = src[0];
        int64_t at = 0;

        for (int64_t l = 1; l < len; l++) {
            float v = src[l * inner];

            if (v > best || (v != v && best == best)) {
                best = v;
                at = l;
            }
        }
        out[j] = best;
        if (arg)
            arg[j] = at;
    }
}

extern "C" cudaError_t cu_max_axis(cudaStream_t stream, const float *a, int64_t outer,
                                   int64_t len, int64_t inner, float *out, int64_t *arg)
{
    int64_t n = outer * inner;

    if (n <= 0 || len <= 0)
        return cudaSuccess;
    k_max_axis<<<cu_blocks(n), CU_THREADS, 0, stream>>>(a, outer, len, inner, out, arg);
    return cudaGetLastError();
}

__global__ void k_max_axis_backward(const float *g, const int64_t *arg, int64_t outer,
                                    int64_t len, int64_t inner, float *dst)
{
    CU_FOR_EACH(j, outer * inner) {
        int64_t o = j / inner, i = j % inner, at = arg[j];

        if (at >= 0 && at < len) // positions come from max; a stray one must not write astray
            dst[(o * len + at) * inner + i] += g[j];
    }
}

extern "C" cudaError_t cu_max_axis_backward(cudaStream_t stream, const float *g,
                                            const int64_t *arg, int64_t outer, int64_t len,
                                            int64_t inner, float *dst)
{
    int64_t total = outer * len * inner, n = outer * inner;
    cudaError_t err;

    if (total <= 0)
        return cudaSuccess;
    if ((err = cudaMemsetAsync(dst, 0, (size_t)total * sizeof *dst, stream)) != cudaSuccess)
        return err;
    k_max_axis_backward<<<cu_blocks(n), CU_THREADS, 0, stream>>>(g, arg, outer, len, inner, dst);
    return cudaGetLastError();
}

// ---- softmax along rows: one warp per row ----

// The warp's row and the number of warps in the grid.
#define WARP_ROW ((int64_t)(blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / CU_WARP)
#define GRID_WARPS ((int64_t)gridDim.x * blockDim.x / CU_WARP)

__device__ __forceinline__ float warp_max_all(float v)
{
    for (int off = CU_WARP / 2; off > 0; off /= 2)
        v = cu_max_nan(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

static unsigned warp_blocks(int64_t rows)
{
    return cu_blocks(rows * CU_WARP);
}

__global__ void k_softmax_rows(const float *a, int64_t rows, int64_t cols, bool log, float *out)
{
    int lane = threadIdx.x % CU_WARP;

    for (int64_t r = WARP_ROW; r < rows; r += GRID_WARPS) {
        const float *x = a + r * cols;
        float *y = out + r * cols;
        float m = -INFINITY;
        double s = 0.0;

        for (int64_t c = lane; c < cols; c += CU_WARP)
            m = cu_max_nan(m, x[c]);
        m = warp_max_all(m);
        if (m == -INFINITY)
            m = 0.0f; // a row of -inf: exp gives zeros, not NaN from inf - inf
        for (int64_t c = lane; c < cols; c += CU_WARP) {
            float e = expf(x[c] - m);

            y[c] = e;
            s += e;
        }
        s = cu_warp_sum_all(s);
        if (log) {
            float ls = m + logf((float)s);

            for (int64_t c = lane; c < cols; c += CU_WARP)
                y[c] = x[c] - ls;
        } else {
            float inv = (float)(1.0 / s);

            for (int64_t c = lane; c < cols; c += CU_WARP)
                y[c] *= inv;
        }
    }
}

extern "C" cudaError_t cu_softmax_rows(cudaStream_t stream, const float *a, int64_t rows,
                                       int64_t cols, bool log, float *out)
{
    if (rows <= 0 || cols <= 0)
        return cudaSuccess;
    k_softmax_rows<<<warp_blocks(rows), CU_THREADS, 0, stream>>>(a, rows, cols, log, out);
    return cudaGetLastError();
}

__global__ void k_softmax_rows_backward(const float *g, const float *y, int64_t rows,
                                        int64_t cols, bool log, float *dst)
{
    int lane = threadIdx.x % CU_WARP;

    for (int64_t r = WARP_ROW; r < rows; r += GRID_WARPS) {
        const float *gr = g + r * cols, *yr = y + r * cols;
        float *d = dst + r * cols;
        double s = 0.0;

        for (int64_t c = lane; c < cols; c += CU_WARP)
            s += log ? (double)gr[c] : (double)gr[c] * yr[c];
        s = cu_warp_sum_all(s);
        for (int64_t c = lane; c < cols; c += CU_WARP) {
            if (log) // dx = g - softmax * sum(g)
                d[c] = gr[c] - expf(yr[c]) * (float)s;
            else // dx = y * (g - sum(g * y))
                d[c] = yr[c] * (gr[c] - (float)s);
        }
    }
}

extern "C" cudaError_t cu_softmax_rows_backward(cudaStream_t stream, const float *g,
                                                const float *y, int64_t rows, int64_t cols,
                                                bool log, float *dst)
{
    if (rows <= 0 || cols <= 0)
        return cudaSuccess;
    k_softmax_rows_backward<<<warp_blocks(rows), CU_THREADS, 0, stream>>>(g, y, rows, cols, log,
                                                                          dst);
    return cudaGetLastError();
}
