/* The safetensors file format in plain C (no Lua): parsing a file's header into checked tensor
 * entries, and writing a file from tensors in memory. Format: an 8-byte little-endian header
 * length, a JSON header (dtype, shape and data_offsets per tensor, an optional __metadata__ map
 * of strings) padded with spaces, then the data, every byte of it belonging to one tensor. */
#ifndef LURAY_COLLECTIVE_SAFETENSORS_H
#define LURAY_COLLECTIVE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "luray/tensor.h"

#define SAFETENSORS_HEADER_MAX (100u * 1024 * 1024) /* the Python reader's limit too */

typedef struct {
    char *name;
    int dtype; /* luray_dtype_t */
    int ndim;
    int64_t shape[LURAY_TENSOR_MAX_DIMS];
    uint64_t begin, end; /* byte range in the data section */
} safetensors_entry_t;

typedef struct {
    char *key, *value;
} safetensors_meta_t;

typedef struct {
    safetensors_entry_t *entries; /* sorted by name */
    size_t count;
    safetensors_meta_t *meta; /* sorted by key */
    size_t nmeta;
    uint64_t data_start; /* file offset of the data section */
} safetensors_header_t;

/* Parses and checks the whole file held in bytes[0..size) (named `file` in messages): every
 * entry's range lies in the data, matches its shape and dtype, and the ranges cover the data
 * exactly. 0, or a LURAY_E* code with a message; on error *h is left empty. */
int safetensors_parse(const char *file, const uint8_t *bytes, size_t size,
                      safetensors_header_t *h, char *err, size_t errlen);
void safetensors_header_close(safetensors_header_t *h);

typedef struct {
    const char *name;
    int dtype;
    int ndim;
    const int64_t *shape;
    const void *data; /* contiguous, numel x element size bytes */
} safetensors_tensor_t;

/* Writes the tensors (stored in name order) and metadata to a temporary file beside path, then
 * renames it over path. Names must be unique, non-empty, valid UTF-8 and not "__metadata__". */
int safetensors_write(const char *path, const safetensors_tensor_t *tensors, size_t count,
                      const safetensors_meta_t *meta, size_t nmeta, char *err, size_t errlen);

/* "F32" etc. <-> luray_dtype_t; -1 or NULL when safetensors or luray lacks it. */
int safetensors_dtype_parse(const char *name);
const char *safetensors_dtype_name(int dtype);

#endif
