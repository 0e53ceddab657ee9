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

int dcol_parse_i64(const char *s, size_t len, int64_t *v)
{
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

static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

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
    if (parse_f64_fast(s, len, v) == 0)
        return 0;
    char buf[128];
    if (len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (buf[0] == ' ' || buf[0] == '\t' || buf[0] == '\n' || buf[0] == '\r' || buf[0] == '\f' ||
        buf[0] == '\v')
        return -1; /* strtod would skip them */
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
