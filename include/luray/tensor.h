/* luray's one dense array type as plugins see it: dtype codes, the refcounted buffer and the
 * tensor struct. Plugins create and read tensors through the host API (plugin.h); the layout of
 * these structs is part of the ABI (docs/abi.md). */
#ifndef LURAY_TENSOR_H
#define LURAY_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LURAY_TENSOR_MAX_DIMS 8

typedef enum {
    LURAY_DTYPE_FLOAT32,
    LURAY_DTYPE_FLOAT64,
    LURAY_DTYPE_INT32,
    LURAY_DTYPE_INT64,
    LURAY_DTYPE_UINT8,
    LURAY_DTYPE_BOOL,
    LURAY_DTYPE_COUNT
} luray_dtype_t;

/* A refcounted block of tensor memory: heap-owned, or borrowed with a release hook. */
typedef struct luray_tbuf luray_tbuf_t;
typedef void (*luray_tbuf_release_fn)(void *ctx, void *data);

struct luray_tbuf {
    long refs; /* tensors share buffers within one thread; not atomic */
    void *data;
    size_t nbytes;
    luray_tbuf_release_fn release; /* NULL: data is ours to free() */
    void *ctx;
};

typedef struct {
    int dtype;
    int ndim;
    int64_t shape[LURAY_TENSOR_MAX_DIMS];
    int64_t strides[LURAY_TENSOR_MAX_DIMS]; /* in elements */
    void *data;
    size_t nbytes; /* numel * element size */
    luray_tbuf_t *buf; /* one reference held; NULL when something else keeps data alive */
    bool readonly;
} luray_tensor_t;

#endif
