/* Columns, their growable builders and text-to-value parsing (dcol.h). */
#include "dcol.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const type_names[DCOL_NTYPES] = {"int64", "float64", "bool", "string",
                                                    "tensor"};

const char *dcol_type_name(dcol_type_t type)
{
    return (unsigned)type < DCOL_NTYPES ? type_names[type] : NULL;
}

int dcol_type_parse(const char *name, dcol_type_t *type)
{
    static const struct {
        const char *name;
        dcol_type_t type;
    } aliases[] = {{"int", DCOL_INT64}, {"integer", DCOL_INT64}, {"float", DCOL_FLOAT64},
                   {"double", DCOL_FLOAT64}, {"number", DCOL_FLOAT64}, {"boolean", DCOL_BOOL},
                   {"str", DCOL_STRING}};
    for (int t = 0; t < DCOL_NTYPES; t++)
        if (strcmp(name, type_names[t]) == 0) {
            *type = (dcol_type_t)t;
            return 0;
        }
    for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++)
        if (strcmp(name, aliases[i].name) == 0) {
            *type = aliases[i].type;
            return 0;
        }
    return -1;
}

size_t dcol_value_size(const dcol_t *c)
{
    switch (c->type) {
    case DCOL_INT64:
    case DCOL_FLOAT64:
        return 8;
    case DCOL_BOOL:
        return 1;
    case DCOL_TENSOR: {
        size_t n = 4;
        for (int d = 0; d < c->ndim; d++)
            n *= (size_t)c->shape[d];
        return n;
    }
    default:
        return 0;
    }
}

void dcol_free(dcol_t *c)
{
    free(c->owned_data);
    free(c->owned_offsets);
    memset(c, 0, sizeof(*c));
}

/* ---- builders ---- */

int dcol_builder_init(dcol_builder_t *b, dcol_type_t type, int ndim, const int64_t *shape)
{
    memset(b, 0, sizeof(*b));
    b->col.type = type;
    if (type == DCOL_TENSOR) {
        if (ndim < 1 || ndim > DCOL_MAX_DIMS)
            return -1;
        b->col.ndim = ndim;
        for (int d = 0; d < ndim; d++) {
            if (shape[d] < 1)
                return -1;
            b->col.shape[d] = shape[d];
        }
    }
    if (type == DCOL_STRING) {
        b->ocap = 64;
        b->col.offsets = malloc(b->ocap * sizeof(int64_t));
        if (b->col.offsets == NULL)
            return -1;
        b->col.offsets[0] = 0;
    }
    return 0;
}

static int grow_bytes(dcol_builder_t *b, size_t need)
{
    if (b->col.nbytes + need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->col.nbytes + need)
        cap *= 2;
    void *p = realloc(b->col.data, cap);
    if (p == NULL)
        return -1;
    b->col.data = p;
    b->cap = cap;
    return 0;
}

int dcol_builder_reserve(dcol_builder_t *b, int64_t n)
{
    size_t w = dcol_value_size(&b->col);
    if (w == 0 || n <= 0)
        return 0;
    return grow_bytes(b, (size_t)n * w);
}

static inline int append_fixed(dcol_builder_t *b, const void *v, size_t w)
{
    if (b->col.nbytes + w > b->cap && grow_bytes(b, w) != 0)
        return -1;
    memcpy((char *)b->col.data + b->col.nbytes, v, w);
    b->col.nbytes += w;
    b->col.len++;
    return 0;
}

int dcol_append_i64(dcol_builder_t *b, int64_t v)
{
    return append_fixed(b, &v, 8);
}

int dcol_append_f64(dcol_builder_t *b, double v)
{
    return append_fixed(b, &v, 8);
}

int dcol_append_bool(dcol_builder_t *b, bool v)
{
    uint8_t x = v ? 1 : 0;
    return append_fixed(b, &x, 1);
}

int dcol_append_row_f32(dcol_builder_t *b, const float *v)
{
    return append_fixed(b, v, dcol_value_size(&b->col));
}

int dcol_append_str(dcol_builder_t *b, const char *s, size_t len)
{
    if ((size_t)b->col.len + 2 > b->ocap) {
        size_t ocap = b->ocap * 2;
        int64_t *o = realloc(b->col.offsets, ocap * sizeof(int64_t));
        if (o == NULL)
            return -1;
        b->col.offsets = o;
        b->ocap = ocap;
    }
    if (len > 0) {
        if (grow_bytes(b, len) != 0)
            return -1;
        memcpy((char *)b->col.data + b->col.nbytes, s, len);
        b->col.nbytes += len;
    }
    b->col.len++;
    b->col.offsets[b->col.len] = (int64_t)b->col.nbytes;
    return 0;
}

void dcol_builder_widen_to_f64(dcol_builder_t *b)
{
    if (b->col.type != DCOL_INT64)
        return;
    char *p = b->col.data;
    for (int64_t i = 0; i < b->col.len; i++) {
        int64_t v;
        memcpy(&v, p + i * 8, 8);
        double d = (double)v;
        memcpy(p + i * 8, &d, 8);
    }
    b->col.type = DCOL_FLOAT64;
}

void dcol_builder_finish(dcol_builder_t *b, dcol_t *out)
{
    *out = b->col;
    if (out->data == NULL) { /* an empty column still owns a (tiny) buffer: data is never NULL */
        out->data = malloc(1);
    }
    out->owned_data = out->data;
    out->owned_offsets = out->offsets;
    memset(b, 0, sizeof(*b));
}

void dcol_builder_free(dcol_builder_t *b)
{
    free(b->col.data);
    free(b->col.offsets);
    memset(b, 0, sizeof(*b));
}

/* ---- parsing ---- */

/* ---- SWAR digit runs: eight bytes at a time ---- */

/* Digits are at most 24 bytes in the fast paths: a field that long is copied to a zero-padded
 * buffer so that eight-byte loads never read past it (a zero byte is not a digit). */
#define SWAR_MAX 24

static inline uint64_t load8(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v; /* little-endian: the first byte is the lowest */
}

/* The number of leading ASCII digits in x (the eight bytes xor '0'), 0..8. A byte is a digit when
 * it became 0..9; carries only ever spoil bytes after the first non-digit. */
static inline int leading_digits(uint64_t x)
{
    uint64_t bad = ((x + 0x0606060606060606ull) | x) & 0xF0F0F0F0F0F0F0F0ull;
    return bad ? __builtin_ctzll(bad) >> 3 : 8;
}

/* The value of the first n (1..8) digits of x (bytes xor '0'): they are moved to the top so the
 * bytes before them read as leading zeros, then combined pairwise. */
static inline uint64_t digits_value(uint64_t x, int n)
{
    x <<= 8 * (8 - n);
    x = (x * 10 + (x >> 8)) & 0x00FF00FF00FF00FFull;
    x = (x * 100 + (x >> 16)) & 0x0000FFFF0000FFFFull;
    return (x * 10000 + (x >> 32)) & 0xFFFFFFFFull;
}

static const uint64_t pow10_u64[] = {1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull,
                                     1000000ull, 10000000ull, 100000000ull};

/* A run of digits at b[*i..] (at most 16), as a value; *n gets its length. */
static inline uint64_t digit_run(const unsigned char *b, size_t *i, int *n)
{
    uint64_t x = load8(b + *i) ^ 0x3030303030303030ull;
    int k = leading_digits(x);
    uint64_t v = k ? digits_value(x, k) : 0;
    *n = k;
    *i += (size_t)k;
    if (k == 8) {
        x = load8(b + *i) ^ 0x3030303030303030ull;
        int k2 = leading_digits(x);
        if (k2) {
            v = v * pow10_u64[k2] + digits_value(x, k2);
            *n += k2;
            *i += (size_t)k2;
        }
    }
    return v;
}

/* Plain decimals of up to 16 digits in total (the common case in data files) at b, which has at
 * least 16 readable bytes after len: -1 sends anything else to the general parsers. A digit run
 * that goes on past len ends at i != len and is refused too. */
static inline int i64_swar(const unsigned char *b, size_t len, int64_t *v)
{
    if (len == 0)
        return -1;
    size_t i = (b[0] == '-' || b[0] == '+') ? 1 : 0;
    int n;
    uint64_t m = digit_run(b, &i, &n);
    if (n == 0 || n >= 16 || i != len)
        return -1;
    *v = b[0] == '-' ? -(int64_t)m : (int64_t)m;
    return 0;
}

static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static inline int f64_swar(const unsigned char *b, size_t len, double *v)
{
    if (len == 0)
        return -1;
    size_t i = (b[0] == '-' || b[0] == '+') ? 1 : 0;
    int n1, n2 = 0;
    uint64_t m = digit_run(b, &i, &n1);
    if (n1 >= 16)
        return -1;
    if (i < len && b[i] == '.') {
        i++;
        uint64_t f = digit_run(b, &i, &n2);
        if (n2 >= 16 || n1 + n2 > 19)
            return -1;
        m = m * (n2 <= 8 ? pow10_u64[n2] : pow10_u64[8] * pow10_u64[n2 - 8]) + f;
    }
    if (n1 + n2 == 0 || i != len || m > (1ull << 53))
        return -1;
    /* Clinger: m is exact, 10^n2 is exact, so one division rounds correctly. */
    double d = (double)m / pow10_exact[n2];
    *v = b[0] == '-' ? -d : d;
    return 0;
}

/* Copies a short field to a zero-padded buffer for the SWAR paths (a zero byte is no digit). */
static int parse_i64_swar(const char *s, size_t len, int64_t *v)
{
    unsigned char b[SWAR_MAX + 16] = {0};
    if (len > SWAR_MAX)
        return -1;
    memcpy(b, s, len);
    return i64_swar(b, len, v);
}

static int parse_f64_swar(const char *s, size_t len, double *v)
{
    unsigned char b[SWAR_MAX + 16] = {0};
    if (len > SWAR_MAX)
        return -1;
    memcpy(b, s, len);
    return f64_swar(b, len, v);
}

int dcol_parse_i64_padded(const char *s, size_t len, int64_t *v)
{
    if (i64_swar((const unsigned char *)s, len, v) == 0)
        return 0;
    return dcol_parse_i64(s, len, v);
}

int dcol_parse_f64_padded(const char *s, size_t len, double *v)
{
    if (f64_swar((const unsigned char *)s, len, v) == 0)
        return 0;
    return dcol_parse_f64(s, len, v);
}

int dcol_parse_i64(const char *s, size_t len, int64_t *v)
{
    if (parse_i64_swar(s, len, v) == 0)
        return 0;
    size_t i = 0;
    bool neg = false;
    if (len == 0)
        return -1;
    if (s[0] == '-' || s[0] == '+') {
        neg = s[0] == '-';
        i = 1;
        if (len == 1)
            return -1;
    }
    uint64_t acc = 0;
    const uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < len; i++) {
        unsigned d = (unsigned char)s[i] - '0';
        if (d > 9)
            return -1;
        if (acc > (limit - d) / 10)
            return -1; /* overflow */
        acc = acc * 10 + d;
    }
    *v = neg ? (int64_t)(0 - acc) : (int64_t)acc;
    return 0;
}

/* Clinger's fast path: a decimal with at most 15 significant digits and a small exponent is
 * exactly mantissa * or / an exact power of ten, so one correctly rounded operation gives the
 * same double strtod would. Returns -1 when the text needs the slow path. */
static int parse_f64_fast(const char *s, size_t len, double *v)
{
    size_t i = 0;
    bool neg = false;
    if (s[0] == '-' || s[0] == '+') {
        neg = s[0] == '-';
        i = 1;
    }
    uint64_t mant = 0;
    int digits = 0, frac = 0, exp = 0;
    bool any = false, dot = false;
    for (; i < len; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9') {
            any = true;
            if (mant == 0 && c == '0') {
                if (dot)
                    frac++;
                continue; /* leading zeros do not count as significant */
            }
            if (++digits > 15)
                return -1;
            mant = mant * 10 + (uint64_t)(c - '0');
            if (dot)
                frac++;
        } else if (c == '.' && !dot) {
            dot = true;
        } else if ((c == 'e' || c == 'E') && any) {
            int64_t e;
            if (dcol_parse_i64(s + i + 1, len - i - 1, &e) != 0 || e > 300 || e < -300)
                return -1;
            exp = (int)e;
            i = len;
            break;
        } else {
            return -1;
        }
    }
    if (!any)
        return -1;
    int e10 = exp - frac;
    double d = (double)mant;
    if (mant == 0)
        d = 0.0;
    else if (e10 >= 0 && e10 <= 22)
        d *= pow10_exact[e10];
    else if (e10 < 0 && e10 >= -22)
        d /= pow10_exact[-e10];
    else
        return -1;
    *v = neg ? -d : d;
    return 0;
}

int dcol_parse_f64(const char *s, size_t len, double *v)
{
    if (len == 0) {
        *v = NAN;
        return 0;
    }
    if (parse_f64_swar(s, len, v) == 0 || parse_f64_fast(s, len, v) == 0)
        return 0;
    char buf[128];
    if (len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (buf[0] == ' ' || buf[0] == '\t' || buf[0] == '\n' || buf[0] == '\r' || buf[0] == '\f' ||
        buf[0] == '\v')
        return -1; /* strtod would skip them */
    if (memchr(buf, 'x', len) != NULL || memchr(buf, 'X', len) != NULL)
        return -1; /* strtod reads hex floats; data files mean text by them */
    char *end;
    errno = 0;
    double d = strtod(buf, &end);
    if (end != buf + len)
        return -1;
    /* nan, inf and infinity are values (as pandas reads them); overflow to inf is kept too. */
    *v = d;
    return 0;
}

int dcol_parse_bool(const char *s, size_t len, bool *v)
{
    if ((len == 4 && strncasecmp(s, "true", 4) == 0) || (len == 1 && s[0] == '1')) {
        *v = true;
        return 0;
    }
    if ((len == 5 && strncasecmp(s, "false", 5) == 0) || (len == 1 && s[0] == '0')) {
        *v = false;
        return 0;
    }
    return -1;
}
