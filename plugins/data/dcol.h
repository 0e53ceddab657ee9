/* The data plugin's columnar model in plain C: a column is one contiguous buffer of one type (two
 * for strings: offsets and bytes), a block is named columns of equal length. Readers fill columns
 * through growable builders; lua_block.c turns finished columns into Lua userdata. */
#ifndef LURAY_DATA_DCOL_H
#define LURAY_DATA_DCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    DCOL_INT64,
    DCOL_FLOAT64,
    DCOL_BOOL,   /* one byte per value, 0 or 1 */
    DCOL_STRING, /* offsets (len + 1 int64) into bytes */
    DCOL_TENSOR, /* float32, each row of shape `shape[0..ndim)` */
    DCOL_NTYPES
} dcol_type_t;

#define DCOL_MAX_DIMS 7

typedef struct {
    dcol_type_t type;
    int64_t len;                   /* rows */
    int ndim;                      /* DCOL_TENSOR: dims of one row */
    int64_t shape[DCOL_MAX_DIMS];  /* DCOL_TENSOR: shape of one row */
    void *data;                    /* values; DCOL_STRING: the bytes */
    int64_t *offsets;              /* DCOL_STRING: len + 1 entries; a slice view may start past 0 */
    size_t nbytes;                 /* bytes at data */
    void *owned_data;              /* malloc'd memory the column frees, or NULL (borrowed) */
    void *owned_offsets;
} dcol_t;

/* "int64", "float64", "bool", "string", "tensor"; NULL for a bad type. */
const char *dcol_type_name(dcol_type_t type);
/* 0 with *type set, or -1 for an unknown name. */
int dcol_type_parse(const char *name, dcol_type_t *type);
/* Bytes per value of fixed-width types (tensor: one whole row); 0 for strings. */
size_t dcol_value_size(const dcol_t *c);
/* Frees owned memory; the column is left empty. */
void dcol_free(dcol_t *c);

/* String value i (0-based) of a DCOL_STRING column. */
static inline const char *dcol_str(const dcol_t *c, int64_t i, size_t *len)
{
    *len = (size_t)(c->offsets[i + 1] - c->offsets[i]);
    return (const char *)c->data + c->offsets[i];
}

/* A growable column. Appends return 0, or -1 when out of memory (the builder stays valid). */
typedef struct {
    dcol_t col;   /* col.data/offsets/len grow as values are appended */
    size_t cap;   /* bytes allocated at col.data */
    size_t ocap;  /* entries allocated at col.offsets */
} dcol_builder_t;

/* Starts an empty builder; tensor columns pass the row shape (else ndim 0, shape NULL). */
int dcol_builder_init(dcol_builder_t *b, dcol_type_t type, int ndim, const int64_t *shape);
int dcol_append_i64(dcol_builder_t *b, int64_t v);
int dcol_append_f64(dcol_builder_t *b, double v);
int dcol_append_bool(dcol_builder_t *b, bool v);
int dcol_append_str(dcol_builder_t *b, const char *s, size_t len);
/* One row of a tensor column: exactly the row's element count of floats. */
int dcol_append_row_f32(dcol_builder_t *b, const float *v);
/* Ensures room for n more fixed-width values without reallocating. */
int dcol_builder_reserve(dcol_builder_t *b, int64_t n);
/* Converts an int64 builder to float64 in place (same width): used when a later value of an
 * inferred int column turns out to be a float. */
void dcol_builder_widen_to_f64(dcol_builder_t *b);
/* Hands the finished column over (its memory owned by *out) and resets the builder. */
void dcol_builder_finish(dcol_builder_t *b, dcol_t *out);
void dcol_builder_free(dcol_builder_t *b);

/* Parsing of one text value as a column type, shared by the CSV and JSON readers. Return 0, or -1
 * when the text is not a value of the type. Leading/trailing spaces are not allowed except where
 * noted by the caller. Empty text parses as NaN for float64 and fails for int64 and bool. */
int dcol_parse_i64(const char *s, size_t len, int64_t *v);
int dcol_parse_f64(const char *s, size_t len, double *v);
/* The same, for text with at least 16 readable bytes after s + len (a field inside a larger
 * buffer): they read eight bytes at a time without copying. */
int dcol_parse_i64_padded(const char *s, size_t len, int64_t *v);
int dcol_parse_f64_padded(const char *s, size_t len, double *v);
/* "true"/"false" (any case), "1"/"0". */
int dcol_parse_bool(const char *s, size_t len, bool *v);

#endif
