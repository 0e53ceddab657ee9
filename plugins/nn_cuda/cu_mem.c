/* Device contexts and the block cache behind CUDA tensors (cu_mem.h). */
#include "cu_mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cu_kernels.h"

/* Requests are rounded up, so that a block serves later requests of about its size: to 512 bytes
 * below 1 MiB, to 2 MiB above. A cached block serves a request up to half its size. */
#define SMALL_ROUND ((size_t)512)
#define LARGE_MIN ((size_t)1 << 20)
#define LARGE_ROUND ((size_t)2 << 20)
#define ONES_MIN 1024

static size_t round_size(size_t n)
{
    size_t r = n < LARGE_MIN ? SMALL_ROUND : LARGE_ROUND;

    if (n > SIZE_MAX - r)
        return 0;
    return (n + r - 1) / r * r;
}

/* The smallest cached block of at least `size` bytes and at most twice that, removed from the
 * cache; false when there is none. */
static bool cache_take(cu_ctx_t *ctx, size_t size, cu_block_t *out)
{
    size_t best = ctx->nfree;

    for (size_t i = 0; i < ctx->nfree; i++) {
        size_t s = ctx->free[i].size;

        if (s >= size && s / 2 <= size && (best == ctx->nfree || s < ctx->free[best].size))
            best = i;
    }
    if (best == ctx->nfree)
        return false;
    *out = ctx->free[best];
    ctx->free[best] = ctx->free[--ctx->nfree];
    ctx->cached_bytes -= out->size;
    return true;
}

static void cache_put(cu_ctx_t *ctx, void *ptr, size_t size)
{
    if (ctx->nfree == ctx->capfree) {
        size_t cap = ctx->capfree ? ctx->capfree * 2 : 64;
        cu_block_t *v = realloc(ctx->free, cap * sizeof *v);

        if (!v) { /* no room to remember it: give it back to the driver instead */
            cudaFree(ptr);
            return;
        }
        ctx->free = v;
        ctx->capfree = cap;
    }
    ctx->free[ctx->nfree].ptr = ptr;
    ctx->free[ctx->nfree].size = size;
    ctx->nfree++;
    ctx->cached_bytes += size;
}

cudaError_t cu_device_count(int *n)
{
    cudaError_t err = cudaGetDeviceCount(n);

    if (err != cudaSuccess) {
        (void)cudaGetLastError(); /* not sticky: later calls must not see it again */
        *n = 0;
    }
    return err;
}

cudaError_t cu_ctx_new(cu_ctx_t **out, const char **why, cublasStatus_t *cublas_status)
{
    cu_ctx_t *c = calloc(1, sizeof *c);
    cudaError_t err;

    *cublas_status = CUBLAS_STATUS_SUCCESS;
    if (!c) {
        *why = "allocating the context";
        return cudaErrorMemoryAllocation;
    }
    c->refs = 1;
    if ((err = cudaGetDevice(&c->device)) != cudaSuccess) {
        *why = "cudaGetDevice";
        goto err_free;
    }
    /* Non-blocking: the context's work never waits for, nor holds up, the legacy stream. */
    if ((err = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        *why = "cudaStreamCreateWithFlags";
        goto err_free;
    }
    if ((err = cudaMalloc(&c->scratch, CU_SCRATCH_BYTES)) != cudaSuccess) {
        *why = "cudaMalloc (reduction scratch)";
        goto err_stream;
    }
    if ((*cublas_status = cublasCreate(&c->blas)) != CUBLAS_STATUS_SUCCESS) {
        *why = "cublasCreate";
        err = cudaErrorUnknown;
        goto err_scratch;
    }
    if ((*cublas_status = cublasSetStream(c->blas, c->stream)) != CUBLAS_STATUS_SUCCESS) {
        *why = "cublasSetStream";
        err = cudaErrorUnknown;
        goto err_blas;
    }
    *out = c;
    return cudaSuccess;

err_blas:
    cublasDestroy(c->blas);
err_scratch:
    cudaFree(c->scratch);
err_stream:
    cudaStreamDestroy(c->stream);
err_free:
    (void)cudaGetLastError();
    free(c);
    return err;
}

void cu_ctx_trim(cu_ctx_t *ctx)
{
    for (size_t i = 0; i < ctx->nfree; i++)
        cudaFree(ctx->free[i].ptr);
    ctx->nfree = 0;
    ctx->cached_bytes = 0;
}

static void stage_close(cu_stage_t *st)
{
    if (!st->host)
        return;
    for (int i = 0; i < CU_STAGE_SLOTS; i++)
        cudaEventDestroy(st->done[i]);
    cudaFreeHost(st->host);
    st->host = NULL;
}

static cudaError_t stage_open(cu_stage_t *st)
{
    cudaError_t err = cudaHostAlloc((void **)&st->host, CU_STAGE_SLOTS * CU_STAGE_SLOT_BYTES,
                                    cudaHostAllocDefault);
    int i;

    if (err != cudaSuccess) {
        st->host = NULL;
        return err;
    }
    for (i = 0; i < CU_STAGE_SLOTS; i++) {
        if ((err = cudaEventCreateWithFlags(&st->done[i], cudaEventDisableTiming)) != cudaSuccess)
            goto err_events;
        st->used[i] = false;
    }
    st->next = 0;
    return cudaSuccess;

err_events:
    while (i-- > 0)
        cudaEventDestroy(st->done[i]);
    cudaFreeHost(st->host);
    st->host = NULL;
    return err;
}

cudaError_t cu_ctx_upload(cu_ctx_t *ctx, void *dst, const void *src, size_t n)
{
    cu_stage_t *st = &ctx->stage;
    cudaError_t err;

    if (!st->host && !st->unavailable && stage_open(st) != cudaSuccess) {
        (void)cudaGetLastError();
        st->unavailable = true;
    }
    if (st->unavailable) { /* from pageable memory, waiting until it has been read */
        err = cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, ctx->stream);
        return err != cudaSuccess ? err : cudaStreamSynchronize(ctx->stream);
    }
    while (n > 0) {
        size_t part = n < CU_STAGE_SLOT_BYTES ? n : CU_STAGE_SLOT_BYTES;
        int s = st->next;
        char *slot = st->host + (size_t)s * CU_STAGE_SLOT_BYTES;

        /* The slot's previous copy must be done before it is written again: this waits only
         * when the host runs CU_STAGE_SLOTS copies ahead of the device. */
        if (st->used[s] && (err = cudaEventSynchronize(st->done[s])) != cudaSuccess)
            return err;
        memcpy(slot, src, part);
        err = cudaMemcpyAsync(dst, slot, part, cudaMemcpyHostToDevice, ctx->stream);
        if (err != cudaSuccess || (err = cudaEventRecord(st->done[s], ctx->stream)) != cudaSuccess)
            return err;
        st->used[s] = true;
        st->next = (s + 1) % CU_STAGE_SLOTS;
        dst = (char *)dst + part;
        src = (const char *)src + part;
        n -= part;
    }
    return cudaSuccess;
}

/* Errors are ignored on the way out: at exit the CUDA runtime may already be unloading. */
void cu_ctx_release(cu_ctx_t *ctx)
{
    if (!ctx || --ctx->refs > 0)
        return;
    stage_close(&ctx->stage);
    cu_ctx_trim(ctx);
    free(ctx->free);
    cudaFree(ctx->ones);
    cudaFree(ctx->scratch);
    cublasDestroy(ctx->blas);
    cudaStreamDestroy(ctx->stream);
    (void)cudaGetLastError();
    free(ctx);
}

cudaError_t cu_ctx_sync(cu_ctx_t *ctx)
{
    return cudaStreamSynchronize(ctx->stream);
}

cudaError_t cu_ctx_ones(cu_ctx_t *ctx, size_t n)
{
    size_t want = n < ONES_MIN ? ONES_MIN : n;
    float *p;
    cudaError_t err;

    if (n <= ctx->nones)
        return cudaSuccess;
    if (want < ctx->nones * 2)
        want = ctx->nones * 2;
    if ((err = cudaMalloc((void **)&p, want * sizeof *p)) != cudaSuccess)
        return err;
    if ((err = cu_fill(ctx->stream, p, 1.0f, (int64_t)want)) != cudaSuccess) {
        cudaFree(p);
        return err;
    }
    cudaFree(ctx->ones); /* waits for the work that reads the old ones */
    ctx->ones = p;
    ctx->nones = want;
    return cudaSuccess;
}

cudaError_t cu_buf_new(cu_ctx_t *ctx, size_t nbytes, cu_buf_t **out)
{
    cu_buf_t *b = malloc(sizeof *b);
    cu_block_t blk = {NULL, 0};
    cudaError_t err;

    if (!b)
        return cudaErrorMemoryAllocation;
    if (nbytes > 0) {
        blk.size = round_size(nbytes);
        if (blk.size == 0) {
            free(b);
            return cudaErrorMemoryAllocation;
        }
        if (!cache_take(ctx, blk.size, &blk)) {
            err = cudaMalloc(&blk.ptr, blk.size);
            if (err == cudaErrorMemoryAllocation && ctx->nfree > 0) {
                (void)cudaGetLastError();
                cu_ctx_trim(ctx); /* cached blocks of other sizes may make room */
                err = cudaMalloc(&blk.ptr, blk.size);
            }
            if (err != cudaSuccess) {
                (void)cudaGetLastError();
                free(b);
                return err;
            }
        }
    }
    b->refs = 1;
    b->ptr = blk.ptr;
    b->size = blk.size;
    b->ctx = ctx;
    ctx->refs++;
    ctx->live_bytes += blk.size;
    *out = b;
    return cudaSuccess;
}

void cu_buf_retain(cu_buf_t *b)
{
    b->refs++;
}

void cu_buf_release(cu_buf_t *b)
{
    cu_ctx_t *ctx;

    if (!b || --b->refs > 0)
        return;
    ctx = b->ctx;
    if (b->ptr)
        cache_put(ctx, b->ptr, b->size);
    ctx->live_bytes -= b->size;
    free(b);
    cu_ctx_release(ctx);
}
