/* libFuzzer target: arbitrary bytes as a JSON Lines text, read through the in-memory entry points
 * (json_infer_text, json_read_text). The first 5 bytes pick the sample size and two range cuts.
 * Nothing may crash, leak or read outside the input; every failure carries a message; a text that
 * reads whole reads exactly the same rows in three ranges (a raw newline always ends a line in
 * JSON Lines); cJSON, parsing each line on its own, agrees with every value read; and (when the
 * first byte has bit 7 set, as files make it slow) what reads whole, written by data_write_json,
 * reads back the same (floats bit for bit, NaN and infinities as NaN, valid UTF-8 byte for byte). */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "data/csv_read.h"
#include "data/dcol.h"
#include "data/json_read.h"
#include "data/write.h"
#include "fuzz_data_common.h"

/* cJSON differs from JSON on purpose in two corners: it refuses lone surrogate escapes (the reader
 * makes them U+FFFD) and numbers longer than 63 bytes. Lines with either are not compared. */
static bool comparable(const char *s, size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n && s[i + 1] == 'u')
            return false;
        run = strchr("0123456789+-.eE", s[i]) != NULL && s[i] != '\0' ? run + 1 : 0;
        if (run >= 60)
            return false;
    }
    return true;
}

/* Row `row` of cols against cJSON's reading of the same line. */
static void compare_line(const char *line, size_t n, const data_schema_t *s, const dcol_t *cols,
                         int64_t row)
{
    cJSON *obj = cJSON_ParseWithLength(line, n);
    if (obj == NULL || !cJSON_IsObject(obj))
        abort(); /* the reader took a line cJSON refuses */
    for (int c = 0; c < s->ncols; c++) {
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, s->names[c]);
        const dcol_t *col = &cols[c];
        switch (col->type) {
        case DCOL_INT64:
            if (!cJSON_IsNumber(item) ||
                item->valuedouble != (double)((const int64_t *)col->data)[row])
                abort();
            break;
        case DCOL_FLOAT64: {
            double v = ((const double *)col->data)[row];
            if (cJSON_IsNumber(item) ? item->valuedouble != v : !isnan(v))
                abort();
            break;
        }
        case DCOL_BOOL:
            if (!cJSON_IsBool(item) || cJSON_IsTrue(item) != ((const uint8_t *)col->data)[row])
                abort();
            break;
        case DCOL_STRING: {
            size_t len;
            const char *v = dcol_str(col, row, &len);
            if (!cJSON_IsString(item) || strlen(item->valuestring) != len ||
                memcmp(item->valuestring, v, len) != 0)
                abort();
            break;
        }
        default:
            if (!cJSON_IsArray(item))
                abort();
            break;
        }
    }
    cJSON_Delete(obj);
}

/* Walks the lines of t as the reader does, comparing each object line with cJSON. */
static void compare_all(const data_text_t *t, const data_schema_t *s, const dcol_t *cols)
{
    int64_t row = 0;
    size_t pos = 0;
    while (pos < t->size) {
        const char *nl = memchr(t->data + pos, '\n', t->size - pos);
        size_t eol = nl != NULL ? (size_t)(nl - t->data) : t->size;
        const char *line = t->data + pos;
        size_t n = eol - pos, k = 0;
        if (pos == 0 && n >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0)
            k = 3;
        while (k < n && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r'))
            k++;
        if (k < n) {
            if (comparable(line, n))
                compare_line(line, n, s, cols, row);
            row++;
        }
        pos = eol + 1;
    }
    if (row != cols[0].len)
        abort();
}

static bool valid_utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                                   : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (len == 0 || n - i < len)
            return false;
        if (len > 1) {
            unsigned char lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
            unsigned char hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
            if (s[i + 1] < lo || s[i + 1] > hi)
                return false;
            for (size_t k = 2; k < len; k++)
                if ((s[i + k] & 0xC0) != 0x80)
                    return false;
        }
        i += len;
    }
    return true;
}

static bool same_double(double a, double b)
{
    if (!isfinite(a))
        return isnan(b);
    return memcmp(&a, &b, sizeof(a)) == 0;
}

/* Writes the columns read and reads the file back with their types: every value must agree. */
static void write_back(const data_schema_t *s, const dcol_t *cols)
{
    const dcol_t **in;
    dcol_t *back;
    data_schema_t rs;
    write_back_open(s, cols, &in, &back, &rs);
    int64_t bytes;
    char err[512];
    const char *path = scratch_file("fuzz_json", "out.jsonl");
    if (data_write_json(path, s->ncols, (const char *const *)s->names, in, &bytes, err,
                        sizeof(err)) != 0 ||
        json_read_file(path, 0, bytes, &rs, back, err, sizeof(err)) != 0)
        abort();
    for (int c = 0; c < s->ncols; c++) {
        const dcol_t *a = &cols[c], *b = &back[c];
        if (a->type != b->type || a->len != b->len)
            abort();
        for (int64_t i = 0; i < a->len; i++) {
            size_t la, lb;
            switch (a->type) {
            case DCOL_FLOAT64:
                if (!same_double(((const double *)a->data)[i], ((const double *)b->data)[i]))
                    abort();
                break;
            case DCOL_STRING: {
                const char *sa = dcol_str(a, i, &la), *sb = dcol_str(b, i, &lb);
                if (valid_utf8((const unsigned char *)sa, la) &&
                    (la != lb || memcmp(sa, sb, la) != 0))
                    abort();
                break;
            }
            case DCOL_TENSOR: {
                size_t per = dcol_value_size(a) / sizeof(float);
                for (size_t k = 0; k < per; k++) {
                    float fa = ((const float *)a->data)[(size_t)i * per + k];
                    float fb = ((const float *)b->data)[(size_t)i * per + k];
                    if (isfinite(fa) ? memcmp(&fa, &fb, sizeof(fa)) != 0 : !isnan(fb))
                        abort();
                }
                break;
            }
            default:
                break;
            }
        }
        if (a->type == DCOL_INT64 || a->type == DCOL_BOOL)
            if (a->nbytes != b->nbytes || memcmp(a->data, b->data, a->nbytes) != 0)
                abort();
    }
    write_back_close(in, back, &rs);
}

static int read_range(const void *unused, const data_text_t *t, int64_t start, int64_t end,
                      const data_schema_t *s, dcol_t *cols, char *err, size_t errlen)
{
    (void)unused; /* JSON Lines has no reading options */
    return json_read_text(t, start, end, s, cols, err, errlen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5)
        return 0;
    int64_t infer_rows = 1 + (data[0] & 127);
    unsigned cut1 = (unsigned)data[1] | (unsigned)data[2] << 8;
    unsigned cut2 = (unsigned)data[3] | (unsigned)data[4] << 8;
    data_text_t t = {"fuzz.jsonl", (const char *)data + 5, size - 5};

    data_schema_t s;
    char err[512] = "";
    if (json_infer_text(&t, infer_rows, NULL, 0, &s, err, sizeof(err)) != 0) {
        if (err[0] == '\0')
            abort();
        return 0;
    }
    dcol_t *cols = calloc((size_t)s.ncols, sizeof(dcol_t));
    if (s.ncols < 1 || cols == NULL)
        abort();
    char *whole = NULL;
    size_t wlen = 0, wcap = 0;
    err[0] = '\0';
    bool whole_ok = json_read_text(&t, 0, (int64_t)t.size, &s, cols, err, sizeof(err)) == 0;
    if (!whole_ok && err[0] == '\0')
        abort();
    if (whole_ok) {
        for (int c = 1; c < s.ncols; c++)
            if (cols[c].len != cols[0].len)
                abort();
        compare_all(&t, &s, cols);
        bool names_utf8 = true; /* the writer makes other names valid, then they differ */
        for (int c = 0; c < s.ncols; c++)
            names_utf8 &= valid_utf8((const unsigned char *)s.names[c], strlen(s.names[c]));
        if ((data[0] & 128) && names_utf8)
            write_back(&s, cols);
        dump_rows(cols, s.ncols, &whole, &wlen, &wcap);
        free_cols(cols, s.ncols);
    }

    check_ranges(read_range, NULL, &t, cut1, cut2, &s, cols, whole_ok, whole, wlen);
    free(whole);
    free(cols);
    data_schema_close(&s);
    return 0;
}
