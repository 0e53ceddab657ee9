/* libFuzzer target: arbitrary bytes as a CSV text, read through the in-memory entry points
 * (csv_infer_text, csv_read_text). The first 6 bytes pick the options and two range cuts. Nothing
 * may crash, leak or read outside the input; every failure carries a message; when the text holds
 * no quote character (so no newline can hide inside a field), a text that reads whole reads
 * exactly the same rows when cut into three ranges; and (when the first byte has bit 3 set, as
 * files make it slow) what reads whole, written by data_write_csv, reads back the same. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/csv_read.h"
#include "data/dcol.h"
#include "data/write.h"
#include "fuzz_data_common.h"

/* Writes the columns read (schema s, widened types as read) with the default options and reads
 * the file back: the rows must dump exactly as before, floats bit for bit. */
static void write_back(const data_schema_t *s, const dcol_t *cols, const char *whole, size_t wlen)
{
    const dcol_t **in;
    dcol_t *back;
    data_schema_t rs;
    write_back_open(s, cols, &in, &back, &rs);
    csv_write_opts_t wo;
    csv_write_opts_init(&wo);
    csv_opts_t ro;
    csv_opts_init(&ro);
    int64_t bytes;
    char err[512];
    const char *path = scratch_file("fuzz_csv", "out.csv");
    if (data_write_csv(path, s->ncols, (const char *const *)s->names, in, &wo, &bytes, err,
                       sizeof(err)) != 0 ||
        csv_read_file(path, 0, bytes, &rs, &ro, back, err, sizeof(err)) != 0)
        abort();
    char *got = NULL;
    size_t glen = 0, gcap = 0;
    dump_rows(back, s->ncols, &got, &glen, &gcap);
    if (!same_dump(got, glen, whole, wlen))
        abort();
    free(got);
    write_back_close(in, back, &rs);
}

static int read_range(const void *opts, const data_text_t *t, int64_t start, int64_t end,
                      const data_schema_t *s, dcol_t *cols, char *err, size_t errlen)
{
    return csv_read_text(t, start, end, s, opts, cols, err, errlen);
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
    char *whole = NULL;
    size_t wlen = 0, wcap = 0;
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

    bool exact = whole_ok && (o.quote < 0 || memchr(t.data, o.quote, t.size) == NULL);
    check_ranges(read_range, &o, &t, cut1, cut2, &s, cols, exact, whole, wlen);
    free(whole);
    free(cols);
    data_schema_close(&s);
    return 0;
}
