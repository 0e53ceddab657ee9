/* Feature matrices for libxgboost laid out from Data columns without going through rows: the
 * column pointers and types XGDMatrixCreateFromDT reads (pointing at the columns' own buffers when
 * they come from one block), or one dense row-major float32 matrix for tensor columns. */
#ifndef LURAY_XGB_FRAME_H
#define LURAY_XGB_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "../data/dcol.h"

typedef enum {
    XGB_FRAME_COLUMNS, /* cols[] and stypes[], one per feature */
    XGB_FRAME_DENSE,   /* dense: nrows x nfeat float32, row-major */
} xgb_frame_kind_t;

typedef struct {
    xgb_frame_kind_t kind;
    int64_t nrows;
    int64_t nfeat;
    void **cols;
    const char **stypes;
    const float *dense;
    char **names; /* nfeat feature names: the column's, or "name_i" for a tensor column's i-th */
    void **owned; /* buffers gathered here (several blocks, transposed tensors) */
    int64_t nowned;
} xgb_frame_t;

/* Lays out the features of nparts blocks that each give the same ncols columns: cols[p * ncols
 * + c] is column c (named names[c]) of block p. Columns are int64, float64, bool or float32
 * tensor columns; NaN is a missing value. Returns 0, or a LURAY_E* code with err naming the
 * column. */
int xgb_frame_init(xgb_frame_t *f, const dcol_t *const *cols, const char *const *names,
                   int nparts, int ncols, char *err, size_t errlen);
void xgb_frame_close(xgb_frame_t *f);

/* One float32 value per row of nparts columns (a label or weight), in a new malloc'd buffer of
 * *nrows values. Takes int64, float64, bool and one-value-per-row tensor columns. */
int xgb_floats_gather(const dcol_t *const *cols, int nparts, const char *what, float **out,
                      int64_t *nrows, char *err, size_t errlen);

/* Writes the __array_interface__ JSON (version 3) of a 2-D array at data: rows x ncols values of
 * typestr ("<f4" and the like), strides in bytes. Returns 0, or LURAY_ETOOBIG when len is short. */
int xgb_array_interface(char *buf, size_t len, const void *data, int64_t rows, int64_t ncols,
                        int64_t row_stride, int64_t col_stride, const char *typestr);

#endif
