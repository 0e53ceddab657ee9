/* JSON Lines sources: schema inference from the head of a text and the reader of one byte range,
 * one object per line, over a whole file's bytes in memory (mapped file or any buffer). */
#ifndef LURAY_DATA_JSON_READ_H
#define LURAY_DATA_JSON_READ_H

#include <stddef.h>
#include <stdint.h>

#include "csv_read.h"
#include "dcol.h"

/* Infers the columns of t from its first infer_rows objects (blank lines skipped): keys in the
 * order first seen; integers make int64 (float64 once a float, null or missing value shows up),
 * numbers float64, true/false bool, strings string, arrays of numbers of one shape (nested up to
 * DCOL_MAX_DIMS deep) tensor. A null or a missing key in a column that is not numeric, values of
 * two types, or a nested object is an error naming the line. Overrides then apply. Returns 0 with
 * *out filled (the caller closes it), or a LURAY_E* code with err set ("path:LINE: ..."). */
int json_infer_text(const data_text_t *t, int64_t infer_rows, const data_override_t *ov, int nov,
                    data_schema_t *out, char *err, size_t errlen);

/* Reads the objects of t whose line starts in [start, stop) (ranges as data_range_begin, a range
 * from 0 skipping a BOM) into cols[0 .. s->ncols): a missing key or null reads as NaN in numeric
 * columns (an int64 column becomes float64), string columns take numbers and bools as their text.
 * A key outside the schema, a duplicate key or a value of another type is an error. Returns 0, or
 * a LURAY_E* code with err set and nothing in cols. */
int json_read_text(const data_text_t *t, int64_t start, int64_t stop, const data_schema_t *s,
                   dcol_t *cols, char *err, size_t errlen);

/* The same over a file, mapped for the call ("json_infer: " / "read_json: cannot open ..."). */
int json_infer_file(const char *path, int64_t infer_rows, const data_override_t *ov, int nov,
                    data_schema_t *out, char *err, size_t errlen);
int json_read_file(const char *path, int64_t start, int64_t stop, const data_schema_t *s,
                   dcol_t *cols, char *err, size_t errlen);

#endif
