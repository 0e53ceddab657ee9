/* A device context (the GPU, one stream, a cuBLAS handle, scratch for reductions) and the device
 * memory its tensors live in: refcounted buffers over blocks from a cache, so that a training
 * loop, which frees and asks for the same sizes every step, stops calling cudaMalloc (slow) and
 * cudaFree (which waits for the whole device) after its first steps. Every kernel and copy of a
 * context goes to its one stream, so a block handed back while work on it is queued is only
 * reused by work queued after it. */
#ifndef LURAY_NN_CUDA_CU_MEM_H
#define LURAY_NN_CUDA_CU_MEM_H

#include <stdbool.h>
#include <stddef.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

typedef struct {
    void *ptr;
    size_t size;
} cu_block_t;

/* Pinned host memory that host-to-device copies go through (cu_ctx_upload), in slots. */
#define CU_STAGE_SLOTS 8
#define CU_STAGE_SLOT_BYTES ((size_t)1 << 20)

typedef struct {
    char *host; /* CU_STAGE_SLOTS * CU_STAGE_SLOT_BYTES, NULL until the first copy */
    cudaEvent_t done[CU_STAGE_SLOTS]; /* recorded after each slot's last copy */
    bool used[CU_STAGE_SLOTS];
    int next;
    bool unavailable; /* no pinned memory: copies wait instead */
} cu_stage_t;

/* Refcounted: each buffer holds a reference, so the context outlives its last tensor. */
typedef struct {
    long refs;
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    void *scratch;   /* CU_SCRATCH_BYTES for the two-pass reductions */
    float *ones;     /* `nones` 1.0f: sum_rows multiplies by it */
    size_t nones;
    cu_block_t *free; /* cached blocks, any order */
    size_t nfree, capfree;
    size_t cached_bytes, live_bytes;
    cu_stage_t stage;
} cu_ctx_t;

/* A block of device memory shared by a tensor and its views. */
typedef struct {
    long refs;
    void *ptr;
    size_t size;
    cu_ctx_t *ctx;
} cu_buf_t;

/* How many devices this process sees; an error (no driver, no device) as cudaGetDeviceCount
 * reports it. */
cudaError_t cu_device_count(int *n);
/* A context on the current device. On failure *why names the step that failed and the returned
 * code says how: a cudaError_t, or cublas_status when cuBLAS failed (then the result is
 * cudaErrorUnknown). */
cudaError_t cu_ctx_new(cu_ctx_t **out, const char **why, cublasStatus_t *cublas_status);
void cu_ctx_release(cu_ctx_t *ctx);
/* Frees every cached block (after cudaMalloc ran out, before trying again). */
void cu_ctx_trim(cu_ctx_t *ctx);
/* Waits for the context's queued work. */
cudaError_t cu_ctx_sync(cu_ctx_t *ctx);
/* At least n ones at ctx->ones. */
cudaError_t cu_ctx_ones(cu_ctx_t *ctx, size_t n);
/* Queues a copy of n host bytes to dst. The bytes are copied into pinned slots first, so the
 * device reads them without holding up the host, and src may be freed when this returns. */
cudaError_t cu_ctx_upload(cu_ctx_t *ctx, void *dst, const void *src, size_t n);

/* A buffer of at least nbytes (nbytes may be 0: then ptr is NULL). */
cudaError_t cu_buf_new(cu_ctx_t *ctx, size_t nbytes, cu_buf_t **out);
void cu_buf_retain(cu_buf_t *b);
/* Drops a reference; the last returns the block to the cache. */
void cu_buf_release(cu_buf_t *b);

#endif
