/* libFuzzer target: arbitrary bytes as a CSV text, read through the in-memory entry points
 * (csv_infer_text, csv_read_text). The first 6 bytes pick the options and two range cuts. Nothing
 * may crash, leak or read outside the input; every failure carries a message; when the text holds
 * no quote character (so no newline can hide inside a field), a text that reads whole reads
 * exactly the same rows when cut into three ranges; and (when the first byte has bit 3 set, as
 * files make it slow) what reads whole, written by data_write_csv, reads back the same. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "data/csv_read.h"
#include "data/dcol.h"
#include "data/write.h"

/* Appends one value, length-prefixed so that no two row sets dump alike; numbers in one form
 * whatever their column type (a widened float64 range and an int64 range agree). */
static void dump_value(const dcol_t *c, int64_t i, char **buf, size_t *len, size_t *cap)
{
    char num[40];
    const char *s = num;
    size_t n;
    switch (c->type) {
    case DCOL_INT64:
        n = (size_t)snprintf(num, sizeof(num), "%.17g", (double)((const int64_t *)c->data)[i]);
        break;
    case DCOL_FLOAT64: {
        double v = ((const double *)c->data)[i];
        n = (size_t)snprintf(num, sizeof(num), "%.17g", isnan(v) ? NAN : v); /* no NaN sign */
        break;
    }
    case DCOL_BOOL:
        n = (size_t)snprintf(num, sizeof(num), "%d", ((const uint8_t *)c->data)[i]);
        break;
    default:
        s = dcol_str(c, i, &n);
        break;
    }
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

static void dump_rows(const dcol_t *cols, int ncols, char **buf, size_t *len, size_t *cap)
{
    for (int64_t i = 0; i < cols[0].len; i++)
        for (int c = 0; c < ncols; c++)
            dump_value(&cols[c], i, buf, len, cap);
}

/* A scratch file for the write-back check, in a folder removed at exit. */
static char scratch_dir[64], scratch_path[96];

static void remove_scratch(void)
{
    char tmp[104];
    snprintf(tmp, sizeof(tmp), "%s.tmp", scratch_path);
    unlink(tmp);
    unlink(scratch_path);
    rmdir(scratch_dir);
}

static const char *scratch_file(void)
{
    if (scratch_dir[0] == '\0') {
        snprintf(scratch_dir, sizeof(scratch_dir), "/tmp/fuzz_csv.XXXXXX");
        if (mkdtemp(scratch_dir) == NULL)
            abort();
        snprintf(scratch_path, sizeof(scratch_path), "%s/out.csv", scratch_dir);
        atexit(remove_scratch);
    }
    return scratch_path;
}

static void free_cols(dcol_t *cols, int n)
{
    for (int c = 0; c < n; c++)
        dcol_free(&cols[c]);
}

/* Writes the columns read (schema s, widened types as read) with the default options and reads
 * the file back: the rows must dump exactly as before, floats bit for bit. */
static void write_back(const data_schema_t *s, const dcol_t *cols, const char *whole, size_t wlen)
{
    const dcol_t **in = malloc((size_t)s->ncols * sizeof(*in));
    dcol_t *back = calloc((size_t)s->ncols, sizeof(dcol_t));
    data_schema_t rs;
    if (in == NULL || back == NULL || data_schema_init(&rs, s->ncols) != 0)
        abort();
    for (int c = 0; c < s->ncols; c++) {
        in[c] = &cols[c];
        rs.types[c] = cols[c].type;
        if (data_schema_set_name(&rs, c, s->names[c], strlen(s->names[c])) != 0)
            abort();
    }
    csv_write_opts_t wo;
    csv_write_opts_init(&wo);
    csv_opts_t ro;
    csv_opts_init(&ro);
    int64_t bytes;
    char err[512];
    const char *path = scratch_file();
    if (data_write_csv(path, s->ncols, (const char *const *)s->names, in, &wo, &bytes, err,
                       sizeof(err)) != 0 ||
        csv_read_file(path, 0, bytes, &rs, &ro, back, err, sizeof(err)) != 0)
        abort();
    char *got = NULL;
    size_t glen = 0, gcap = 0;
    dump_rows(back, s->ncols, &got, &glen, &gcap);
    if (glen != wlen || (wlen > 0 && memcmp(got, whole, wlen) != 0))
        abort();
    free(got);
    free_cols(back, s->ncols);
    free(back);
    free(in);
    data_schema_close(&rs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 6)
        return 0;
    csv_opts_t o;
    csv_opts_init(&o);
    o.header = (data[0] & 1) != 0;
    o.delimiter = (data[0] & 2) ? ';' : ',';
    o.quote = (data[0] & 4) ? -1 : '"';
    o.infer_rows = 1 + data[1];
    unsigned cut1 = (unsigned)data[2] | (unsigned)data[3] << 8;
    unsigned cut2 = (unsigned)data[4] | (unsigned)data[5] << 8;
    data_text_t t = {"fuzz.csv", (const char *)data + 6, size - 6};

    data_schema_t s;
    char err[512] = "";
    if (csv_infer_text(&t, &o, NULL, 0, &s, err, sizeof(err)) != 0) {
        if (err[0] == '\0')
            abort();
        return 0;
    }
    if (s.ncols < 1)
        abort();
    dcol_t *cols = calloc((size_t)s.ncols, sizeof(dcol_t));
    if (cols == NULL)
        abort();
    char *whole = NULL, *got = NULL;
    size_t wlen = 0, wcap = 0, glen = 0, gcap = 0;
    err[0] = '\0';
    bool whole_ok = csv_read_text(&t, 0, (int64_t)t.size, &s, &o, cols, err, sizeof(err)) == 0;
    if (!whole_ok && err[0] == '\0')
        abort();
    if (whole_ok) {
        dump_rows(cols, s.ncols, &whole, &wlen, &wcap);
        if (data[0] & 8)
            write_back(&s, cols, whole, wlen);
        free_cols(cols, s.ncols);
    }

    size_t a = cut1 % (t.size + 1);
    size_t b = a + cut2 % (t.size + 1 - a);
    size_t cuts[4] = {0, a, b, t.size};
    bool exact = whole_ok && (o.quote < 0 || memchr(t.data, o.quote, t.size) == NULL);
    for (int k = 0; k < 3; k++) {
        err[0] = '\0';
        int rc = csv_read_text(&t, (int64_t)cuts[k], (int64_t)cuts[k + 1], &s, &o, cols, err,
                               sizeof(err));
        if (rc != 0) {
            if (err[0] == '\0' || exact)
                abort();
            continue;
        }
        for (int c = 1; c < s.ncols; c++)
            if (cols[c].len != cols[0].len)
                abort();
        dump_rows(cols, s.ncols, &got, &glen, &gcap);
        free_cols(cols, s.ncols);
    }
    if (exact && (glen != wlen || (wlen > 0 && memcmp(got, whole, wlen) != 0)))
        abort();
    free(whole);
    free(got);
    free(cols);
    data_schema_close(&s);
    return 0;
}
