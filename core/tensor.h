/* luray's one dense array type, in plain C (no Lua): dtype, shape, strides and a refcounted buffer.
 * The Lua bindings (lua_tensor.c) and the data, nn and serve plugins build on it. */
#ifndef LURAY_CORE_TENSOR_H
#define LURAY_CORE_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "luray/tensor.h"


/* "float32", ...; NULL for an unknown dtype. */
const char *luray_dtype_name(int dtype);
/* Bytes per element; 0 for an unknown dtype. */
size_t luray_dtype_size(int dtype);
/* Returns 0 with *dtype set, or LURAY_EINVAL. */
int luray_dtype_parse(const char *name, int *dtype);
bool luray_dtype_is_float(int dtype);


/* A heap buffer of nbytes (zeroed if `zero`), one reference. NULL when out of memory. */
luray_tbuf_t *luray_tbuf_new(size_t nbytes, bool zero);
/* Wraps memory someone else owns; release(ctx, data) runs when the last reference goes. */
luray_tbuf_t *luray_tbuf_wrap(void *data, size_t nbytes, luray_tbuf_release_fn release,
                              void *ctx);
void luray_tbuf_retain(luray_tbuf_t *b);
/* Drops one reference; NULL is a no-op. */
void luray_tbuf_release(luray_tbuf_t *b);


/* Number of elements of a shape; LURAY_EINVAL for negative dims, LURAY_ETOOBIG on overflow. */
int luray_shape_numel(int ndim, const int64_t *shape, int64_t *numel);
/* Row-major strides (in elements) for a shape. */
void luray_shape_strides(int ndim, const int64_t *shape, int64_t *strides);

/* A new contiguous tensor with its own heap buffer, zeroed if `zero`. Returns 0, LURAY_EINVAL
 * (bad dtype, ndim or shape), LURAY_ETOOBIG or LURAY_ENOMEM; on error t is closed. */
int luray_tensor_init(luray_tensor_t *t, int dtype, int ndim, const int64_t *shape, bool zero);
/* A contiguous tensor over existing memory of exactly the shape's size. `buf` may be NULL (the
 * caller keeps data alive) or a buffer this takes a new reference to. */
int luray_tensor_init_data(luray_tensor_t *t, int dtype, int ndim, const int64_t *shape,
                           void *data, size_t nbytes, luray_tbuf_t *buf, bool readonly);
/* Releases the buffer reference; t is left closed (no data), and closing again is a no-op. */
void luray_tensor_close(luray_tensor_t *t);

int64_t luray_tensor_numel(const luray_tensor_t *t);
bool luray_tensor_is_contiguous(const luray_tensor_t *t);

/* A new shape over the same memory; one dim may be -1 (inferred). The tensor must be contiguous
 * and the element counts equal: else LURAY_EINVAL. `out` shares src's buffer and readonly flag. */
int luray_tensor_view(const luray_tensor_t *src, int ndim, const int64_t *shape,
                      luray_tensor_t *out);
/* A contiguous, writable copy with its own buffer. */
int luray_tensor_clone(const luray_tensor_t *src, luray_tensor_t *out);
/* Copies the elements in row-major order into dst (luray_tensor_numel * element size bytes). */
void luray_tensor_copy_to(const luray_tensor_t *t, void *dst);

/* Element access by 0-based index (t->ndim entries). LURAY_EINVAL when an index is out of range;
 * setters also LURAY_ESTATE (read-only) and LURAY_EINVAL (value does not fit the dtype). Getters
 * convert: bool reads as 0/1, floats read as int64 truncated toward zero. */
int luray_tensor_get_f64(const luray_tensor_t *t, const int64_t *idx, double *v);
int luray_tensor_get_i64(const luray_tensor_t *t, const int64_t *idx, int64_t *v);
int luray_tensor_set_f64(luray_tensor_t *t, const int64_t *idx, double v);
int luray_tensor_set_i64(luray_tensor_t *t, const int64_t *idx, int64_t v);

/* Pointer to an element; NULL when an index is out of range. */
void *luray_tensor_ptr(const luray_tensor_t *t, const int64_t *idx);

/* Raw element conversions at p (no bounds check): used by the accessors and by bindings that walk
 * memory themselves. */
double luray_elem_get_f64(int dtype, const void *p);
int64_t luray_elem_get_i64(int dtype, const void *p);
/* Returns 0, or LURAY_EINVAL when v does not fit the dtype (ints: not integral or out of range). */
int luray_elem_set_f64(int dtype, void *p, double v);
int luray_elem_set_i64(int dtype, void *p, int64_t v);

#endif
