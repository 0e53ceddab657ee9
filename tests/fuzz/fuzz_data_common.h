/* Pieces shared by the data readers' fuzz targets (fuzz_csv.c, fuzz_json.c): row dumps to compare
 * two readings, the check of three range reads against one whole read, and the pieces of the
 * write-back checks. */
#ifndef LURAY_FUZZ_DATA_COMMON_H
#define LURAY_FUZZ_DATA_COMMON_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "data/csv_read.h"
#include "data/dcol.h"

/* Appends s, length-prefixed so that no two row sets dump alike. */
static inline void dump_bytes(const char *s, size_t n, char **buf, size_t *len, size_t *cap)
{
    while (*len + n + 24 > *cap) {
        *cap = *cap ? *cap * 2 : 256;
        *buf = realloc(*buf, *cap);
        if (*buf == NULL)
            abort();
    }
    *len += (size_t)snprintf(*buf + *len, 24, "%zu:", n);
    memcpy(*buf + *len, s, n);
    *len += n;
}

/* Appends every value of the rows; numbers in one form whatever their column type (a widened
 * float64 range and an int64 range agree), NaN without its sign. */
static inline void dump_rows(const dcol_t *cols, int ncols, char **buf, size_t *len, size_t *cap)
{
    char num[48];
    for (int64_t i = 0; i < cols[0].len; i++)
        for (int c = 0; c < ncols; c++) {
            const dcol_t *col = &cols[c];
            size_t n;
            if (col->type == DCOL_STRING) {
                const char *s = dcol_str(col, i, &n);
                dump_bytes(s, n, buf, len, cap);
                continue;
            }
            if (col->type == DCOL_TENSOR) {
                size_t per = dcol_value_size(col) / sizeof(float);
                for (size_t k = 0; k < per; k++) {
                    n = (size_t)snprintf(num, sizeof(num), "%.9g",
                                         (double)((const float *)col->data)[(size_t)i * per + k]);
                    dump_bytes(num, n, buf, len, cap);
                }
                continue;
            }
            double v = col->type == DCOL_INT64   ? (double)((const int64_t *)col->data)[i]
                       : col->type == DCOL_BOOL ? ((const uint8_t *)col->data)[i]
                                                : ((const double *)col->data)[i];
            n = (size_t)snprintf(num, sizeof(num), "%.17g", isnan(v) ? NAN : v);
            dump_bytes(num, n, buf, len, cap);
        }
}

static inline bool same_dump(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static inline void free_cols(dcol_t *cols, int n)
{
    for (int c = 0; c < n; c++)
        dcol_free(&cols[c]);
}

/* Reads the rows of t in the byte range [start, end) into cols under schema s, with the target's
 * options ctx: 0, or an error code with err set. */
typedef int (*range_read_fn)(const void *ctx, const data_text_t *t, int64_t start, int64_t end,
                             const data_schema_t *s, dcol_t *cols, char *err, size_t errlen);

/* Reads t as three ranges, cut at two points picked by the input's cut1 and cut2 (any range may
 * be empty). Every failure must say why; when exact, none may fail and the rows of the three
 * must dump as whole[0..wlen), the dump of t read at once. */
static inline void check_ranges(range_read_fn read, const void *ctx, const data_text_t *t,
                                unsigned cut1, unsigned cut2, const data_schema_t *s,
                                dcol_t *cols, bool exact, const char *whole, size_t wlen)
{
    size_t a = cut1 % (t->size + 1);
    size_t cuts[4] = {0, a, a + cut2 % (t->size + 1 - a), t->size};
    char *got = NULL, err[512];
    size_t glen = 0, gcap = 0;
    for (int k = 0; k < 3; k++) {
        err[0] = '\0';
        if (read(ctx, t, (int64_t)cuts[k], (int64_t)cuts[k + 1], s, cols, err, sizeof(err)) !=
            0) {
            if (err[0] == '\0' || exact)
                abort();
            continue;
        }
        for (int c = 1; c < s->ncols; c++)
            if (cols[c].len != cols[0].len)
                abort();
        dump_rows(cols, s->ncols, &got, &glen, &gcap);
        free_cols(cols, s->ncols);
    }
    if (exact && !same_dump(got, glen, whole, wlen))
        abort();
    free(got);
}

/* The pieces of a write-back check of the columns read under schema s: *in, the columns as the
 * writer takes them; *back, empty columns to read the file into; *rs, the schema to read it with
 * (the names, and the types and shapes the columns have). write_back_close releases them. */
static inline void write_back_open(const data_schema_t *s, const dcol_t *cols, const dcol_t ***in,
                                   dcol_t **back, data_schema_t *rs)
{
    *in = malloc((size_t)s->ncols * sizeof(**in));
    *back = calloc((size_t)s->ncols, sizeof(dcol_t));
    if (*in == NULL || *back == NULL || data_schema_init(rs, s->ncols) != 0)
        abort();
    for (int c = 0; c < s->ncols; c++) {
        (*in)[c] = &cols[c];
        rs->types[c] = cols[c].type;
        rs->ndims[c] = cols[c].ndim;
        memcpy(&rs->shapes[(size_t)c * DCOL_MAX_DIMS], cols[c].shape, sizeof(cols[c].shape));
        if (data_schema_set_name(rs, c, s->names[c], strlen(s->names[c])) != 0)
            abort();
    }
}

static inline void write_back_close(const dcol_t **in, dcol_t *back, data_schema_t *rs)
{
    free_cols(back, rs->ncols);
    free(back);
    free(in);
    data_schema_close(rs);
}

/* A scratch file for the write-back check, in a folder removed at exit. */
static char scratch_dir[64], scratch_path[96];

static void remove_scratch(void)
{
    char tmp[104];
    snprintf(tmp, sizeof(tmp), "%s.tmp", scratch_path); /* the writer's name before its rename */
    unlink(tmp);
    unlink(scratch_path);
    rmdir(scratch_dir);
}

/* The scratch file /tmp/<target>.XXXXXX/<file>, its folder made on the first call. */
static inline const char *scratch_file(const char *target, const char *file)
{
    if (scratch_dir[0] == '\0') {
        snprintf(scratch_dir, sizeof(scratch_dir), "/tmp/%s.XXXXXX", target);
        if (mkdtemp(scratch_dir) == NULL)
            abort();
        snprintf(scratch_path, sizeof(scratch_path), "%s/%s", scratch_dir, file);
        atexit(remove_scratch);
    }
    return scratch_path;
}

#endif
