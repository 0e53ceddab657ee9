// What the .cu files share: launch shapes, the grid-stride loop, warp and block sums, and the
// device versions of the CPU kernels' scalar helpers (the same expressions, so results agree).
#ifndef LURAY_NN_CUDA_CU_DEVICE_CUH
#define LURAY_NN_CUDA_CU_DEVICE_CUH

#include <math.h>
#include <stdint.h>

#include <cuda_runtime.h>

#include "cu_kernels.h"

// Threads per block (a multiple of the warp size, which the block sums rely on) and the most
// blocks a grid-stride kernel is given: each thread then loops over its share.
#define CU_THREADS 256
#define CU_MAX_BLOCKS 65535
#define CU_WARP 32

static inline unsigned cu_blocks(int64_t n)
{
    int64_t b = (n + CU_THREADS - 1) / CU_THREADS;

    return b > CU_MAX_BLOCKS ? CU_MAX_BLOCKS : (unsigned)(b < 1 ? 1 : b);
}

// Blocks for one block per item, capped the same way.
static inline unsigned cu_blocks_per_item(int64_t n)
{
    return n > CU_MAX_BLOCKS ? CU_MAX_BLOCKS : (unsigned)(n < 1 ? 1 : n);
}

// Element i of n, spread over the whole grid; 64-bit so that no count overflows.
#define CU_FOR_EACH(i, n)                                                                    \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                \
         i += (int64_t)blockDim.x * gridDim.x)

template <typename T> __device__ __forceinline__ T cu_warp_sum(T v)
{
    for (int off = CU_WARP / 2; off > 0; off /= 2)
        v += __shfl_down_sync(0xffffffffu, v, off);
    return v;
}

// The same value in every lane of the warp.
template <typename T> __device__ __forceinline__ T cu_warp_sum_all(T v)
{
    for (int off = CU_WARP / 2; off > 0; off /= 2)
        v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

// The sum over the block, valid in thread 0. Every thread of the block must call it.
template <typename T> __device__ T cu_block_sum(T v)
{
    __shared__ T part[CU_THREADS / CU_WARP];
    int lane = threadIdx.x % CU_WARP, warp = threadIdx.x / CU_WARP;

    v = cu_warp_sum(v);
    __syncthreads(); // a previous call may still be reading part
    if (lane == 0)
        part[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < (int)(blockDim.x / CU_WARP) ? part[lane] : (T)0;
        v = cu_warp_sum(v);
    }
    return v;
}

// Never overflows: exp of a non-positive number only (nn_unary.c's sigmoid).
__device__ __forceinline__ float cu_sigmoid(float x)
{
    if (x >= 0.0f)
        return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

__device__ __forceinline__ float cu_unary_apply(int op, float x)
{
    switch (op) {
    case CU_NEG: return -x;
    case CU_EXP: return expf(x);
    case CU_LOG: return logf(x);
    case CU_RELU: return x > 0.0f ? x : 0.0f;
    case CU_SIGMOID: return cu_sigmoid(x);
    case CU_TANH: return tanhf(x);
    default: return x;
    }
}

// The larger of two floats where a NaN wins, as nn_max_all's comparison makes it.
__device__ __forceinline__ float cu_max_nan(float a, float b)
{
    if (a != a)
        return a;
    if (b != b)
        return b;
    return a > b ? a : b;
}

#endif
