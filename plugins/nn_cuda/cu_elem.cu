// Element-wise CUDA kernels (cu_kernels.h): unary ops and their gradients, broadcasting binary
// ops and their gradients summed to an operand's shape, fills, axpy, dtype conversion,
// transposes, the linear layer's bias and activation, and row gathers and scatters.
#include "cu_device.cuh"

#include "luray/tensor.h"

// ---- unary ----

__global__ void k_unary(int op, const float *a, float *out, int64_t n)
{
    CU_FOR_EACH(i, n) out[i] = cu_unary_apply(op, a[i]);
}

__device__ __forceinline__ float unary_grad(int op, float g, const float *a, float o, int64_t i)
{
    switch (op) {
    case CU_NEG: return -g;
    case CU_EXP: return g * o;
    case CU_LOG: return g / a[i];
    case CU_RELU: return o > 0.0f ? g : 0.0f;
    case CU_SIGMOID: return g * o * (1.0f - o);
    case CU_TANH: return g * (1.0f - o * o);
    default: return 0.0f;
    }
}

__global__ void k_unary_backward(int op, const float *g, const float *a, const float *out,
                                 float *dst, int64_t n)
{
    CU_FOR_EACH(i, n) dst[i] = unary_grad(op, g[i], a, out[i], i);
}

extern "C" cudaError_t cu_unary(cudaStream_t stream, int op, const float *a, float *out,
                                int64_t n)
{
    if (n <= 0)
        return cudaSuccess;
    k_unary<<<cu_blocks(n), CU_THREADS, 0, stream>>>(op, a, out, n);
    return cudaGetLastError();
}

extern "C" cudaError_t cu_unary_backward(cudaStream_t stream, int op, const float *g,
                                         const float *a, const float *out, float *dst, int64_t n)
{
    if (n <= 0)
        return cudaSuccess;
    k_unary_backward<<<cu_blocks(n), CU_THREADS, 0, stream>>>(op, g, a, out, dst, n);
    return cudaGetLastError();
}

// ---- binary ----

__device__ __forceinline__ float binary_apply(int op, float x, float y)
{
    switch (op) {
    case CU_ADD: return x + y;
    case CU_SUB: return x - y;
    case CU_MUL: return x * y;
    case CU_DIV: return x / y;
    case CU_POW: return y == 2.0f ? x * x : powf(x, y);
    case CU_EQ: return x == y ? 1.0f : 0.0f;
    case CU_NE: return x != y ? 1.0f : 0.0f;
    case CU_LT: return x < y ? 1.0f : 0.0f;
    case CU_LE: return x <= y ? 1.0f : 0.0f;
    case CU_GT: return x > y ? 1.0f : 0.0f;
    case CU_GE: return x >= y ? 1.0f : 0.0f;
    default: return 0.0f;
    }
}

// The offsets of operands 1 and 2 for output element i (operand 0, the output, is contiguous).
__device__ __forceinline__ void geom_offsets(const cu_geom_t &g, int64_t i, int64_t *oa,
                                             int64_t *ob)
{
    if (g.ndim == 1) {
        *oa = i * g.stride[1][0];
        *ob = i * g.stride[2][0];
        return;
    }
    int64_t a = 0, b = 0;
    for (int d = g.ndim - 1; d >= 0; d--) {
        int64_t at = i % g.dim[d];

        i /= g.dim[d];
        a += at * g.stride[1][d];
        b += at * g.stride[2][d];
    }
    *oa = a;
    *ob = b;
}

__global__ void k_binary(int op, const float *a, float av, const float *b, float bv, float *out,
                         cu_geom_t g, int64_t n)
{
    CU_FOR_EACH(i, n) {
        int64_t oa, ob;

        geom_offsets(g, i, &oa, &ob);
        out[i] = binary_apply(op, a ? a[oa] : av, b ? b[ob] : bv);
    }
}

extern "C" cudaError_t cu_binary(cudaStream_t stream, int op, const float *a, float av,
                                 const float *b, float bv, float *out, const cu_geom_t *geo,
                                 int64_t n)
{
    if (n <= 0)
        return cudaSuccess;
    k_binary<<<cu_blocks(n), CU_THREADS, 0, stream>>>(op, a, av, b, bv, out, *geo, n);
    return cudaGetLastError();
}

// Gradient terms: gv the incoming gradient, x and y the operands, o the forward result
// (nn_binary.c's pow_grad_base and pow_grad_exp for pow).
__device__ __forceinline__ float binary_grad(int op, int which, float gv, float x, float y,
                                             float o)
{
    switch (op * 2 + which) {
    case CU_ADD * 2: return gv;
    case CU_ADD * 2 + 1: return gv;
    case CU_SUB * 2: return gv;
    case CU_SUB * 2 + 1: return -gv;
    case CU_MUL * 2: return gv * y;
    case CU_MUL * 2 + 1: return gv * x;
    case CU_DIV * 2: return gv / y;
    case CU_DIV * 2 + 1: return -gv * x / (y * y);
    case CU_POW * 2: return y == 0.0f ? 0.0f : gv * y * powf(x, y - 1.0f);
    case CU_POW * 2 + 1: return (x == 0.0f && y >= 0.0f) ? 0.0f : gv * o * logf(x);
    default: return 0.0f; // comparisons have no gradient
    }
}

// Offsets of the four operands (out, a, b, dst) at position i of dims/strides (n of them).
__device__ __forceinline__ void split_offsets(int n, const int64_t *dim,
                                              const int64_t (*stride)[NN_MAX_DIMS], int64_t i,
                                              int64_t *off)
{
    for (int d = n - 1; d >= 0; d--) {
        int64_t at = i % dim[d];

        i /= dim[d];
        for (int k = 0; k < CU_GEOM_OPS; k++)
            off[k] += at * stride[k][d];
    }
}

struct grad_args {
    int op, which;
    const float *g, *a, *b, *fwd;
    float av, bv;
    float *dst;
};

// The term of summed position r for the kept element whose offsets are base.
__device__ __forceinline__ float grad_term(const grad_args &p, const cu_split_t &s,
                                           const int64_t *base, int64_t r)
{
    int64_t off[CU_GEOM_OPS] = {base[0], base[1], base[2], base[3]};

    split_offsets(s.nr, s.rdim, s.rstride, r, off);
    return binary_grad(p.op, p.which, p.g[off[0]], p.a ? p.a[off[1]] : p.av,
                       p.b ? p.b[off[2]] : p.bv, p.fwd[off[0]]);
}

// One thread per element of dst, summing its few terms in order.
__global__ void k_binary_grad_serial(grad_args p, cu_split_t s, int64_t kept, int64_t summed)
{
    CU_FOR_EACH(j, kept) {
        int64_t base[CU_GEOM_OPS] = {0, 0, 0, 0};
        float acc = 0.0f;

        split_offsets(s.nk, s.kdim, s.kstride, j, base);
        for (int64_t r = 0; r < summed; r++)
            acc += grad_term(p, s, base, r);
        p.dst[base[3]] = acc;
    }
}

// One block per element of dst, its threads sharing the many terms.
__global__ void k_binary_grad_block(grad_args p, cu_split_t s, int64_t kept, int64_t summed)
{
    for (int64_t j = blockIdx.x; j < kept; j += gridDim.x) {
        int64_t base[CU_GEOM_OPS] = {0, 0, 0, 0};
        float acc = 0.0f;

        split_offsets(s.nk, s.kdim, s.kstride, j, base);
        for (int64_t r = threadIdx.x; r < summed; r += blockDim.x)
            acc += grad_term(p, s, base, r);
        acc = cu_block_sum(acc);
        if (threadIdx.x == 0)
            p.dst[base[3]] = acc;
    }
}

// Below this many terms per element a thread sums them alone.
#define GRAD_SERIAL_MAX 64

extern "C" cudaError_t cu_binary_backward(cudaStream_t stream, int op, int which, const float *g,
                                          const float *a, float av, const float *b, float bv,
                                          const float *fwd, float *dst, const cu_split_t *split,
                                          int64_t kept, int64_t summed)
{
    grad_args p = {op, which, g, a, b, fwd, av, bv, dst};

    if (kept <= 0)
        return cudaSuccess;
    if (summed <= GRAD_SERIAL_MAX)
        k_binary_grad_serial<<<cu_blocks(kept), CU_THREADS, 0, stream>>>(p, *split, kept,
                                                                         summed);
    else
        k_binary_grad_block<<<cu_blocks_per_item(kept), CU_THREADS, 0, stream>>>(p, *split, kept,
                                                                                 summed);
    return cudaGetLastError();
}

// ---- fills, axpy ----

__global__ void k_fill(float *p, float v, int64_t n)
{
    CU_FOR_EACH(i, n) p[i] = v;
}

extern "C" cudaError_t cu_fill(cudaStream_t stream, float *p, float v, int64_t n)
{
    if (n <= 0)
        return cudaSuccess;
    if (v == 0.0f && !signbit(v))
        return cudaMemsetAsync(p, 0, (size_t)n * sizeof *p, stream);
    k_fill<<<cu_blocks(n), CU_THREADS, 0, stream>>>(p, v, n);
    return cudaGetLastError();
}

__global__ void k_axpy(float *dst, float alpha, const float *src, int64_t n)
{
    if (alpha == 1.0f) {
        CU_FOR_EACH(i, n) dst[i] += src[i];
    } else {
        CU_FOR_EACH(i, n) dst[i] += alpha * src[i];
    }
}

extern "C" cudaError_t cu_axpy(cudaStream_t stream, float *dst, float alpha, const float *src,
                               int64_t n)
{
    if (n <= 0)
        return cudaSuccess;
    k_axpy<<<cu_blocks(n), CU_THREADS, 0, stream>>>(dst, alpha, src, n);
    return cudaGetLastError();
}

// ---- dtype conversion (nn_index.c's put, element by element) ----

__device__ __forceinline__ bool is_float_dtype(int dtype)
{
    return dtype == LURAY_DTYPE_FLOAT32 || dtype == LURAY_DTYPE_FLOAT64;
}

__device__ __forceinline__ double load_f64(int dtype, const void *p, int64_t i)
{
    return dtype == LURAY_DTYPE_FLOAT32 ? (double)((const float *)p)[i] : ((const double *)p)[i];
}

__device__ __forceinline__ int64_t load_i64(int dtype, const void *p, int64_t i)
{
    switch (dtype) {
    case LURAY_DTYPE_INT32: return ((const int32_t *)p)[i];
    case LURAY_DTYPE_INT64: return ((const int64_t *)p)[i];
    default: return ((const uint8_t *)p)[i]; // uint8, bool
    }
}

// A float to an integer type: truncated, NaN to 0, saturated at the type's range.
__device__ __forceinline__ int64_t f64_to_i64(double v, double lo, double hi)
{
    if (v != v)
        return 0;
    if (v <= lo)
        return (int64_t)lo;
    if (v >= hi)
        return (int64_t)hi;
    return (int64_t)v;
}

__global__ void k_convert(const void *src, int sd, void *dst, int dd, int64_t n)
{
    bool f = is_float_dtype(sd);

    CU_FOR_EACH(i, n) {
        double v = f ? load_f64(sd, src, i) : 0.0;
        int64_t k = f ? 0 : load_i64(sd, src, i);

        switch (dd) {
        case LURAY_DTYPE_FLOAT32: ((float *)dst)[i] = f ? (float)v : (float)k; break;
        case LURAY_DTYPE_FLOAT64: ((double *)dst)[i] = f ? v : (double)k; break;
        case LURAY_DTYPE_INT32:
            ((int32_t *)dst)[i] = (int32_t)(f ? f64_to_i64(v, INT32_MIN, INT32_MAX) : k);
            break;
        case LURAY_DTYPE_INT64:
            ((int64_t *)dst)[i] =
                f ? f64_to_i64(v, -9223372036854775808.0, 9223372036854774784.0) : k;
            break;
        case LURAY_DTYPE_UINT8:
            ((uint8_t *)dst)[i] = (uint8_t)(f ? f64_to_i64(v, 0, 255) : k);
            break;
        case LURAY_DTYPE_BOOL: ((uint8_t *)dst)[i] = f ? v != 0 : k != 0; break;
        default: break;
        }
    }
}

extern "C" cudaError_t cu_convert(cudaStream_t stream, const void *src, int sdtype, void *dst,
                                  int ddtype, int64_t n)
{
    if (n <= 0)
        return cudaSuccess;
    k_convert<<<cu_blocks(n), CU_THREADS, 0, stream>>>(src, sdtype, dst, ddtype, n);
    return cudaGetLastError();
}

// ---- transpose, bias and activation ----

__global__ void k_transpose(const float *a, int64_t rows, int64_t cols, float *out)
{
    CU_FOR_EACH(i, rows * cols) {
        int64_t r = i / cols, c = i % cols;

        out[c * rows + r] = a[i];
    }
}

extern "C" cudaError_t cu_transpose(cudaStream_t stream, const float *a, int64_t rows,
                                    int64_t cols, float *out)
{
    if (rows <= 0 || cols <= 0)
        return cudaSuccess;
    k_transpose<<<cu_blocks(rows * cols), CU_THREADS, 0, stream>>>(a, rows, cols, out);
    return cudaGetLastError();
}

__global__ void k_bias_act(float *out, const float *bias, int64_t m, int64_t n, int act)
{
    CU_FOR_EACH(i, m * n) {
        float v = out[i];

        if (bias)
            v += bias[i % n];
        out[i] = act == CU_ACT_NONE ? v : cu_unary_apply(act, v);
    }
}

extern "C" cudaError_t cu_bias_act(cudaStream_t stream, float *out, const float *bias, int64_t m,
                                   int64_t n, int act)
{
    if (m <= 0 || n <= 0 || (!bias && act == CU_ACT_NONE))
        return cudaSuccess;
    k_bias_act<<<cu_blocks(m * n), CU_THREADS, 0, stream>>>(out, bias, m, n, act);
    return cudaGetLastError();
}

// ---- rows ----

// Rows copied as words of W bytes (words per row: wpr).
template <typename W>
__global__ void k_gather_rows(const W *src, int64_t wpr, const int64_t *idx, int64_t nidx,
                              W *out)
{
    CU_FOR_EACH(i, nidx * wpr) {
        int64_t row = i / wpr, w = i % wpr;

        out[i] = src[idx[row] * wpr + w];
    }
}

extern "C" cudaError_t cu_gather_rows(cudaStream_t stream, const void *src, size_t rowbytes,
                                      const int64_t *idx, int64_t nidx, void *out)
{
    uintptr_t align = (uintptr_t)src | (uintptr_t)out | (uintptr_t)rowbytes;

    if (nidx <= 0 || rowbytes == 0)
        return cudaSuccess;
    if (align % 8 == 0) {
        int64_t wpr = (int64_t)(rowbytes / 8);
        k_gather_rows<<<cu_blocks(nidx * wpr), CU_THREADS, 0, stream>>>(
            (const uint64_t *)src, wpr, idx, nidx, (uint64_t *)out);
    } else if (align % 4 == 0) {
        int64_t wpr = (int64_t)(rowbytes / 4);
        k_gather_rows<<<cu_blocks(nidx * wpr), CU_THREADS, 0, stream>>>(
            (const uint32_t *)src, wpr, idx, nidx, (uint32_t *)out);
    } else {
        int64_t wpr = (int64_t)rowbytes;
        k_gather_rows<<<cu_blocks(nidx * wpr), CU_THREADS, 0, stream>>>(
            (const uint8_t *)src, wpr, idx, nidx, (uint8_t *)out);
    }
    return cudaGetLastError();
}

__global__ void k_index_add_rows(float *dst, int64_t rowlen, const int64_t *idx, int64_t nidx,
                                 const float *g)
{
    CU_FOR_EACH(i, nidx * rowlen) {
        int64_t row = i / rowlen, j = i % rowlen;

        atomicAdd(&dst[idx[row] * rowlen + j], g[i]);
    }
}

extern "C" cudaError_t cu_index_add_rows(cudaStream_t stream, float *dst, int64_t rowlen,
                                         const int64_t *idx, int64_t nidx, const float *g)
{
    if (nidx <= 0 || rowlen <= 0)
        return cudaSuccess;
    k_index_add_rows<<<cu_blocks(nidx * rowlen), CU_THREADS, 0, stream>>>(dst, rowlen, idx, nidx,
                                                                          g);
    return cudaGetLastError();
}

__global__ void k_check_index(const int64_t *idx, int64_t n, int64_t limit,
                              unsigned long long *first_bad)
{
    CU_FOR_EACH(i, n) {
        if (idx[i] < 0 || idx[i] >= limit)
            atomicMin(first_bad, (unsigned long long)i);
    }
}

// Sets *first_bad to n before the check kernel lowers it.
__global__ void k_set_u64(unsigned long long *p, unsigned long long v)
{
    *p = v;
}

extern "C" cudaError_t cu_check_index(cudaStream_t stream, const int64_t *idx, int64_t n,
                                      int64_t limit, unsigned long long *first_bad)
{
    k_set_u64<<<1, 1, 0, stream>>>(first_bad, (unsigned long long)(n < 0 ? 0 : n));
    if (n > 0)
        k_check_index<<<cu_blocks(n), CU_THREADS, 0, stream>>>(idx, n, limit, first_bad);
    return cudaGetLastError();
}
