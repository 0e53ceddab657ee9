/* CSV sources over a whole text in memory (mapped file or buffer): schema inference and the reader
 * of one byte range, plus what the JSON Lines reader shares (schema, file mapping, ranges). */
#ifndef LURAY_DATA_CSV_READ_H
#define LURAY_DATA_CSV_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dcol.h"

/* A whole text to parse: its bytes and the name messages give it (the file's path). */
typedef struct {
    const char *name;
    const char *data;
    size_t size;
} data_text_t;

/* A file mapped read-only; an empty file maps to a zero-length text. */
typedef struct {
    data_text_t text;
    void *addr; /* the mapping, or NULL when there is none to undo */
    size_t maplen;
} data_map_t;

/* 0, or a LURAY_E* code with err set to "<what>: cannot open 'path': <reason>". */
int data_map_open(data_map_t *m, const char *path, const char *what, char *err, size_t errlen);
void data_map_close(data_map_t *m);

/* Column names and types. Names are owned (malloc'd) by the schema. */
typedef struct {
    int ncols;
    char **names;
    dcol_type_t *types;
    int *ndims;      /* DCOL_TENSOR: dims of one row; 0 for other types */
    int64_t *shapes; /* DCOL_TENSOR: row shape at shapes[col * DCOL_MAX_DIMS ...] */
} data_schema_t;

/* An empty schema of ncols columns (names NULL, types int64). 0 or LURAY_ENOMEM. */
int data_schema_init(data_schema_t *s, int ncols);
/* Copies name into column col. 0 or LURAY_ENOMEM. */
int data_schema_set_name(data_schema_t *s, int col, const char *name, size_t len);
/* Frees what the schema holds and leaves it empty; a zeroed schema is fine. */
void data_schema_close(data_schema_t *s);

/* A type forced on a named column by the caller instead of the inferred one. */
typedef struct {
    const char *name;
    dcol_type_t type;
} data_override_t;

/* Applies overrides to an inferred schema. A name the schema lacks, or a tensor type, is an
 * error naming the text's columns ("<what>: 'path' has no column 'x' (columns: a, b)"). */
int data_schema_override(data_schema_t *s, const data_override_t *ov, int nov, const char *what,
                         const char *name, char *err, size_t errlen);

/* Where a range [start, stop) begins reading: 0 for start <= 0, else just after the first newline
 * at or after start - 1 (or the text's end). Consecutive ranges thus read each row once. */
size_t data_range_begin(const data_text_t *t, int64_t start);
/* About how many rows [pos, limit) holds (its length over the mean line length of its first
 * 64 KiB, and at most its length over min_row, the fewest bytes a row can take), for sizing
 * columns before reading. */
int64_t data_estimate_rows(const data_text_t *t, size_t pos, size_t limit, size_t min_row);
/* 1-based line number of byte pos: counted only when an error needs it. */
int64_t data_line_of(const data_text_t *t, size_t pos);
/* A value as messages show it: cut to outlen - 4 bytes (then "..."), control bytes as '?'.
 * outlen must be at least 8. */
void data_show_value(char *out, size_t outlen, const char *s, size_t len);

typedef struct {
    int delimiter;      /* ',' */
    int quote;          /* '"'; -1: no quoting */
    bool header;        /* true: the first row names the columns */
    int64_t infer_rows; /* rows sampled by inference (after the header) */
} csv_opts_t;

void csv_opts_init(csv_opts_t *o);
/* 0 when the delimiter and quote can work together (distinct, neither CR nor LF), else
 * LURAY_EINVAL with err set. */
int csv_opts_check(const csv_opts_t *o, const char *what, char *err, size_t errlen);

/* Infers names and types from the head of t (header row, then up to infer_rows rows): int64 when
 * every sampled value parses as int64, else float64 when every value does as a float (empty is
 * NaN), else bool, else string; no sampled row makes strings. Header names that are empty become
 * column<i>, repeated ones get _1, _2, ...; without a header names are column1, column2, ...
 * Returns 0 with *out filled (the caller closes it), or a LURAY_E* code with err set. */
int csv_infer_text(const data_text_t *t, const csv_opts_t *o, const data_override_t *ov, int nov,
                   data_schema_t *out, char *err, size_t errlen);

/* Reads the rows of t whose first byte lies in [start, stop) (a range from 0 skips the BOM and
 * the header) into cols[0 .. s->ncols), owned columns of s's types, except that an int64 column
 * meeting a float (or an empty value) becomes float64. Blank lines are skipped. Returns 0, or a
 * LURAY_E* code with err set ("path:LINE: ...") and nothing in cols. */
int csv_read_text(const data_text_t *t, int64_t start, int64_t stop, const data_schema_t *s,
                  const csv_opts_t *o, dcol_t *cols, char *err, size_t errlen);

/* The same over a file, mapped for the call; errors open with "csv_infer: " / "read_csv: " when
 * the file cannot be opened. */
int csv_infer_file(const char *path, const csv_opts_t *o, const data_override_t *ov, int nov,
                   data_schema_t *out, char *err, size_t errlen);
int csv_read_file(const char *path, int64_t start, int64_t stop, const data_schema_t *s,
                  const csv_opts_t *o, dcol_t *cols, char *err, size_t errlen);

#endif
