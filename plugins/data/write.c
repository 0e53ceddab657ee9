/* CSV and JSON Lines sinks (write.h): a buffered writer renaming "<path>.tmp" into place, value
 * formatting (round-trip floats, RFC 4180 quoting, JSON escapes) and the two row loops. */
#include "write.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "luray/errors.h"

/* ---- the buffered file ---- */

#define OUT_CAP (1u << 18)

typedef struct {
    int fd;
    char *buf;
    size_t len;
    int64_t total; /* bytes handed to the file so far */
    int err;       /* errno of the first failed write; later output is dropped */
    char *tmp;     /* "<path>.tmp" */
    const char *path, *what;
} out_t;

static void out_flush(out_t *o)
{
    size_t done = 0;
    while (done < o->len && o->err == 0) {
        ssize_t w = write(o->fd, o->buf + done, o->len - done);
        if (w < 0) {
            if (errno != EINTR)
                o->err = errno;
            continue;
        }
        done += (size_t)w;
    }
    o->total += (int64_t)done;
    o->len = 0;
}

/* Room for n (at most 64) more bytes at the end of the buffer. */
static inline char *out_room(out_t *o, size_t n)
{
    if (o->len + n > OUT_CAP)
        out_flush(o);
    return o->buf + o->len;
}

static void out_put(out_t *o, const char *s, size_t n)
{
    while (n > 0) {
        if (o->len == OUT_CAP)
            out_flush(o);
        size_t k = OUT_CAP - o->len < n ? OUT_CAP - o->len : n;
        memcpy(o->buf + o->len, s, k);
        o->len += k;
        s += k;
        n -= k;
    }
}

static inline void out_byte(out_t *o, char c)
{
    *out_room(o, 1) = c;
    o->len++;
}

static int out_open(out_t *o, const char *path, const char *what, char *err, size_t errlen)
{
    memset(o, 0, sizeof(*o));
    o->path = path;
    o->what = what;
    size_t n = strlen(path);
    o->tmp = malloc(n + 5);
    o->buf = malloc(OUT_CAP);
    if (o->tmp == NULL || o->buf == NULL) {
        snprintf(err, errlen, "%s: out of memory", what);
        goto err_free;
    }
    memcpy(o->tmp, path, n);
    memcpy(o->tmp + n, ".tmp", 5);
    o->fd = open(o->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (o->fd < 0) {
        snprintf(err, errlen, "%s: cannot open '%s': %s", what, o->tmp, strerror(errno));
        free(o->buf);
        free(o->tmp);
        return LURAY_EIO;
    }
    return 0;

err_free:
    free(o->buf);
    free(o->tmp);
    return LURAY_ENOMEM;
}

/* Drops the partial file. */
static void out_abort(out_t *o)
{
    close(o->fd);
    unlink(o->tmp);
    free(o->buf);
    free(o->tmp);
}

/* Flushes, closes and renames the file into place. */
static int out_commit(out_t *o, int64_t *bytes, char *err, size_t errlen)
{
    out_flush(o);
    if (o->err != 0) {
        snprintf(err, errlen, "%s: cannot write '%s': %s", o->what, o->tmp, strerror(o->err));
        goto err;
    }
    int fd = o->fd;
    o->fd = -1;
    if (close(fd) != 0) {
        snprintf(err, errlen, "%s: cannot write '%s': %s", o->what, o->tmp, strerror(errno));
        goto err;
    }
    if (rename(o->tmp, o->path) != 0) {
        snprintf(err, errlen, "%s: cannot rename '%s' to '%s': %s", o->what, o->tmp, o->path,
                 strerror(errno));
        goto err;
    }
    *bytes = o->total;
    free(o->buf);
    free(o->tmp);
    return 0;

err:
    out_abort(o);
    return LURAY_EIO;
}

/* ---- values ---- */

static size_t format_i64(char *out, int64_t v)
{
    char tmp[24];
    size_t k = 0, n = 0;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[k++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        out[n++] = '-';
    while (k > 0)
        out[n++] = tmp[--k];
    return n;
}

static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* %.15g without printf, for 1e-4 <= |v| < 1e15 when those 15 digits read back as v: m, the
 * value scaled to 15 digits and rounded, is below 2^53, so m / 10^k is correctly rounded and the
 * comparison is exact (Clinger's test). Returns the length, or 0 to leave it to printf. */
static size_t format_f64_fast(char *out, double v)
{
    double a = fabs(v);
    if (!(a >= 1e-4 && a < 1e15))
        return 0;
    int e10 = 0; /* a is in [10^e10, 10^(e10+1)), give or take rounding, fixed below */
    while (e10 < 14 && a >= pow10_exact[e10 + 1])
        e10++;
    while (e10 <= 0 && e10 > -4 && a < 1.0 / pow10_exact[-e10])
        e10--;
    double m = nearbyint(a * pow10_exact[14 - e10]);
    if (m < 1e14 && e10 > -4)
        m = nearbyint(a * pow10_exact[14 - --e10]);
    else if (m >= 1e15 && e10 < 14)
        m = nearbyint(a * pow10_exact[14 - ++e10]);
    if (m >= 1e15 || m < 1e14 || m / pow10_exact[14 - e10] != a)
        return 0;
    char digits[16];
    int64_t mi = (int64_t)m;
    for (int d = 14; d >= 0; d--, mi /= 10)
        digits[d] = (char)('0' + mi % 10);
    int nd = 15;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    size_t n = 0;
    if (v < 0)
        out[n++] = '-';
    if (e10 >= 0) {
        for (int d = 0; d <= e10; d++)
            out[n++] = d < nd ? digits[d] : '0';
        out[n++] = '.';
        for (int d = e10 + 1; d < nd; d++)
            out[n++] = digits[d];
        if (nd <= e10 + 1)
            out[n++] = '0'; /* integral: ".0" keeps it a float */
    } else {
        out[n++] = '0';
        out[n++] = '.';
        for (int d = 0; d < -e10 - 1; d++)
            out[n++] = '0';
        for (int d = 0; d < nd; d++)
            out[n++] = digits[d];
    }
    return n;
}

/* The shortest of %.15g, %.16g and %.17g that reads back as v (17 digits always do). Integral
 * output gets ".0" so the text reads back as a float, not an int. out holds 32 bytes. */
static size_t format_f64(char *out, double v)
{
    /* Integral values print fast; the range test comes first, as the cast is only defined in
     * range (and false for NaN). */
    if (fabs(v) < 1e15 && v == (double)(int64_t)v && (v != 0 || !signbit(v))) {
        size_t n = format_i64(out, (int64_t)v);
        memcpy(out + n, ".0", 2);
        return n + 2;
    }
    size_t fast = format_f64_fast(out, v);
    if (fast > 0)
        return fast;
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(out, 32, "%.*g", prec, v);
        if (prec == 17 || strtod(out, NULL) == v)
            break;
    }
    if (isfinite(v) && strpbrk(out, ".e") == NULL) {
        memcpy(out + n, ".0", 3);
        n += 2;
    }
    return (size_t)n;
}

/* Shortest %g (6 to 9 digits) that reads back as the float f, checked the way the reader reads
 * it (as a double, then rounded to float); 9 digits always do. */
static size_t format_f32(char *out, float f)
{
    int n = 0;
    for (int prec = 6; prec <= 9; prec++) {
        n = snprintf(out, 32, "%.*g", prec, (double)f);
        if (prec == 9 || (float)strtod(out, NULL) == f)
            break;
    }
    return (size_t)n;
}

static inline void put_i64(out_t *o, int64_t v)
{
    o->len += format_i64(out_room(o, 24), v);
}

static inline void put_f64(out_t *o, double v)
{
    o->len += format_f64(out_room(o, 32), v);
}

static void put_bool(out_t *o, bool v)
{
    out_put(o, v ? "true" : "false", v ? 4 : 5);
}

/* ---- CSV ---- */

/* A CSV field, quoted when it holds the delimiter, a quote or a line end; quoted also when empty
 * if `empty_quoted` (a one-column file, where an empty line would be skipped as blank), and when
 * it starts with a UTF-8 byte-order mark, which a reader strips from the start of a file. */
static void put_csv_field(out_t *o, const char *s, size_t len, int delim, bool empty_quoted)
{
    size_t i = 0;
    while (i < len && s[i] != delim && s[i] != '"' && s[i] != '\n' && s[i] != '\r')
        i++;
    bool bom = len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0;
    if (i == len && !bom && (len > 0 || !empty_quoted)) {
        out_put(o, s, len);
        return;
    }
    out_byte(o, '"');
    size_t run = 0;
    for (i = 0; i < len; i++)
        if (s[i] == '"') {
            out_put(o, s + run, i + 1 - run);
            run = i; /* the quote goes out again: doubled */
        }
    out_put(o, s + run, len - run);
    out_byte(o, '"');
}

static void put_csv_value(out_t *o, const dcol_t *c, int64_t i, int delim, bool one)
{
    switch (c->type) {
    case DCOL_INT64:
        put_i64(o, ((const int64_t *)c->data)[i]);
        break;
    case DCOL_FLOAT64: {
        double v = ((const double *)c->data)[i];
        if (isnan(v)) {
            if (one)
                out_put(o, "\"\"", 2);
        } else {
            put_f64(o, v); /* infinities as inf/-inf, which the reader takes back */
        }
        break;
    }
    case DCOL_BOOL:
        put_bool(o, ((const uint8_t *)c->data)[i] != 0);
        break;
    default: {
        size_t len;
        const char *s = dcol_str(c, i, &len);
        put_csv_field(o, s, len, delim, one);
        break;
    }
    }
}

void csv_write_opts_init(csv_write_opts_t *o)
{
    o->delimiter = ',';
    o->header = true;
}

/* Column lengths agree, and (for CSV) no tensors; 0 or LURAY_EINVAL with err set. */
static int check_columns(int ncols, const char *const *names, const dcol_t *const *cols,
                         const char *what, bool csv, char *err, size_t errlen)
{
    if (ncols < 1) {
        snprintf(err, errlen, "%s: no columns to write", what);
        return LURAY_EINVAL;
    }
    for (int c = 0; c < ncols; c++) {
        if (csv && cols[c]->type == DCOL_TENSOR) {
            snprintf(err, errlen, "%s: column '%s' is a tensor; use write_json", what, names[c]);
            return LURAY_EINVAL;
        }
        if (cols[c]->len != cols[0]->len) {
            snprintf(err, errlen, "%s: column '%s' has %lld rows, column '%s' %lld", what,
                     names[c], (long long)cols[c]->len, names[0], (long long)cols[0]->len);
            return LURAY_EINVAL;
        }
    }
    return 0;
}

/* Checks the columns, then opens the sink for path: 0, or a LURAY_E* code with err set. */
static int out_begin(out_t *o, const char *path, int ncols, const char *const *names,
                     const dcol_t *const *cols, const char *what, bool csv, char *err,
                     size_t errlen)
{
    int rc = check_columns(ncols, names, cols, what, csv, err, errlen);
    return rc != 0 ? rc : out_open(o, path, what, err, errlen);
}

int data_write_csv(const char *path, int ncols, const char *const *names,
                   const dcol_t *const *cols, const csv_write_opts_t *opts, int64_t *bytes,
                   char *err, size_t errlen)
{
    const int delim = opts->delimiter;
    if (delim < 0 || delim > 255 || delim == '"' || delim == '\n' || delim == '\r') {
        snprintf(err, errlen, "write_csv: the delimiter must be one byte, not CR, LF or '\"'");
        return LURAY_EINVAL;
    }
    out_t o;
    int rc = out_begin(&o, path, ncols, names, cols, "write_csv", true, err, errlen);
    if (rc != 0)
        return rc;
    const bool one = ncols == 1;
    if (opts->header) {
        for (int c = 0; c < ncols; c++) {
            if (c > 0)
                out_byte(&o, (char)delim);
            put_csv_field(&o, names[c], strlen(names[c]), delim, one);
        }
        out_byte(&o, '\n');
    }
    for (int64_t i = 0; i < cols[0]->len && o.err == 0; i++) {
        for (int c = 0; c < ncols; c++) {
            if (c > 0)
                out_byte(&o, (char)delim);
            put_csv_value(&o, cols[c], i, delim, one);
        }
        out_byte(&o, '\n');
    }
    return out_commit(&o, bytes, err, errlen);
}

/* ---- JSON ---- */

/* Length of the valid UTF-8 sequence at s (a byte >= 0x80), or 0 when it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t k = 2; k < len; k++)
        if ((s[k] & 0xC0) != 0x80)
            return 0;
    return len;
}

static void put_json_string(out_t *o, const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, run = 0;
    out_byte(o, '"');
    while (i < len) {
        unsigned char c = s[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            i++;
            continue;
        }
        out_put(o, str + run, i - run);
        if (c >= 0x80) {
            size_t k = utf8_len(s + i, len - i);
            if (k > 0)
                out_put(o, str + i, k);
            else
                out_put(o, "\xEF\xBF\xBD", 3); /* JSON text must be UTF-8 */
            i += k > 0 ? k : 1;
        } else {
            char esc[8];
            const char *short_esc = c == '"'    ? "\\\""
                                    : c == '\\' ? "\\\\"
                                    : c == '\n' ? "\\n"
                                    : c == '\r' ? "\\r"
                                    : c == '\t' ? "\\t"
                                    : c == '\b' ? "\\b"
                                    : c == '\f' ? "\\f"
                                                : NULL;
            if (short_esc != NULL) {
                out_put(o, short_esc, 2);
            } else {
                snprintf(esc, sizeof(esc), "\\u%04x", c);
                out_put(o, esc, 6);
            }
            i++;
        }
        run = i;
    }
    out_put(o, str + run, len - run);
    out_byte(o, '"');
}

/* One tensor row (or part of one) as nested arrays. */
static void put_json_nested(out_t *o, const float **v, int d, int ndim, const int64_t *shape)
{
    out_byte(o, '[');
    for (int64_t k = 0; k < shape[d]; k++) {
        if (k > 0)
            out_byte(o, ',');
        if (d + 1 < ndim) {
            put_json_nested(o, v, d + 1, ndim, shape);
            continue;
        }
        float f = *(*v)++;
        if (isfinite(f))
            o->len += format_f32(out_room(o, 32), f);
        else
            out_put(o, "null", 4);
    }
    out_byte(o, ']');
}

static void put_json_value(out_t *o, const dcol_t *c, int64_t i)
{
    switch (c->type) {
    case DCOL_INT64:
        put_i64(o, ((const int64_t *)c->data)[i]);
        break;
    case DCOL_FLOAT64: {
        double v = ((const double *)c->data)[i];
        if (isfinite(v))
            put_f64(o, v);
        else
            out_put(o, "null", 4);
        break;
    }
    case DCOL_BOOL:
        put_bool(o, ((const uint8_t *)c->data)[i] != 0);
        break;
    case DCOL_STRING: {
        size_t len;
        const char *s = dcol_str(c, i, &len);
        put_json_string(o, s, len);
        break;
    }
    default: {
        size_t per_row = dcol_value_size(c) / sizeof(float);
        const float *v = (const float *)c->data + (size_t)i * per_row;
        put_json_nested(o, &v, 0, c->ndim, c->shape);
        break;
    }
    }
}

int data_write_json(const char *path, int ncols, const char *const *names,
                    const dcol_t *const *cols, int64_t *bytes, char *err, size_t errlen)
{
    out_t o;
    int rc = out_begin(&o, path, ncols, names, cols, "write_json", false, err, errlen);
    if (rc != 0)
        return rc;
    for (int64_t i = 0; i < cols[0]->len && o.err == 0; i++) {
        out_byte(&o, '{');
        for (int c = 0; c < ncols; c++) {
            if (c > 0)
                out_byte(&o, ',');
            put_json_string(&o, names[c], strlen(names[c]));
            out_byte(&o, ':');
            put_json_value(&o, cols[c], i);
        }
        out_put(&o, "}\n", 2);
    }
    return out_commit(&o, bytes, err, errlen);
}
