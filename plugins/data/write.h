/* Sinks: CSV and JSON Lines files written from named columns. Each file is written to
 * "<path>.tmp" and renamed over path once complete, so a reader never sees half a file. */
#ifndef LURAY_DATA_WRITE_H
#define LURAY_DATA_WRITE_H

#include <stdbool.h>
#include <stdint.h>

#include "dcol.h"

typedef struct {
    int delimiter; /* ',' */
    bool header;   /* true: a first line of column names */
} csv_write_opts_t;

void csv_write_opts_init(csv_write_opts_t *o);

/* Writes ncols columns of equal length as CSV: RFC 4180 quoting where a value needs it, floats
 * in the shortest form that reads back to the same double (integral ones with ".0", so they read
 * back as floats), NaN as an empty field, bools as true/false. A tensor column is an error.
 * Returns 0 with *bytes set, or a LURAY_E* code with err set ("write_csv: ..."). */
int data_write_csv(const char *path, int ncols, const char *const *names,
                   const dcol_t *const *cols, const csv_write_opts_t *o, int64_t *bytes,
                   char *err, size_t errlen);

/* Writes one JSON object per row, keys in column order: NaN and infinities as null, strings
 * escaped (valid UTF-8 passed through, each invalid byte as U+FFFD), tensor rows as nested
 * arrays. Returns 0 with *bytes set, or a LURAY_E* code with err set ("write_json: ..."). */
int data_write_json(const char *path, int ncols, const char *const *names,
                    const dcol_t *const *cols, int64_t *bytes, char *err, size_t errlen);

#endif
