// The two-pass sum the reductions and losses share: each block sums its share of the terms in
// double, a second one-block pass adds the blocks' sums (one pass when one block suffices), and
// the result is written as (float)(sum * mul / div). The term is a functor: term(i) -> double.
#ifndef LURAY_NN_CUDA_CU_REDUCE_CUH
#define LURAY_NN_CUDA_CU_REDUCE_CUH

#include "cu_device.cuh"

template <class F>
__global__ void k_reduce_parts(F term, int64_t n, double *part, double mul, double div,
                               float *out)
{
    double s = 0.0;

    CU_FOR_EACH(i, n) s += term(i);
    s = cu_block_sum(s);
    if (threadIdx.x == 0) {
        if (part)
            part[blockIdx.x] = s;
        else
            out[0] = (float)(s * mul / div);
    }
}

// Each file that includes this header has its own copy, so no kernel crosses files.
static __global__ void k_reduce_finish(const double *part, int nparts, double mul, double div,
                                       float *out)
{
    double s = 0.0;

    for (int i = threadIdx.x; i < nparts; i += blockDim.x)
        s += part[i];
    s = cu_block_sum(s);
    if (threadIdx.x == 0)
        out[0] = (float)(s * mul / div);
}

// Queues the sum of term(0 .. n-1); scratch holds CU_REDUCE_PARTS doubles.
template <class F>
cudaError_t cu_reduce_sum(cudaStream_t stream, F term, int64_t n, double mul, double div,
                          float *out, void *scratch)
{
    unsigned parts = cu_blocks(n);

    if (parts > CU_REDUCE_PARTS)
        parts = CU_REDUCE_PARTS;
    if (parts == 1) {
        k_reduce_parts<<<1, CU_THREADS, 0, stream>>>(term, n, (double *)NULL, mul, div, out);
        return cudaGetLastError();
    }
    k_reduce_parts<<<parts, CU_THREADS, 0, stream>>>(term, n, (double *)scratch, mul, div, out);
    k_reduce_finish<<<1, CU_THREADS, 0, stream>>>((const double *)scratch, (int)parts, mul, div,
                                                  out);
    return cudaGetLastError();
}

#endif
