/* Column arithmetic, comparisons, masks, reductions and casts (column_math.h). The kernels are
 * plain loops over restrict-qualified arrays with the op chosen outside the loop, so the compiler
 * can vectorize them; operands that need converting are converted a chunk at a time. */
#include "column_math.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Elements converted per pass when an operand is not already in the kernel's type: small enough
 * that the converted chunk and the output stay in L1. */
#define CHUNK 1024

/* The shape of a binary kernel's operands: array-array, array-scalar, scalar-array. */
enum { SHAPE_AA, SHAPE_AS, SHAPE_SA };

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

const char *dcol_arith_symbol(dcol_arith_op_t op)
{
    static const char *const symbols[] = {"+", "-", "*", "/", "//", "%", "^"};
    return (unsigned)op < sizeof(symbols) / sizeof(symbols[0]) ? symbols[op] : "?";
}

const char *dcol_cmp_name(dcol_cmp_op_t op)
{
    static const char *const names[] = {"eq", "ne", "lt", "le", "gt", "ge"};
    return (unsigned)op < sizeof(names) / sizeof(names[0]) ? names[op] : "?";
}

const char *dcol_reduce_name(dcol_reduce_op_t op)
{
    static const char *const names[] = {"sum", "mean", "min", "max", "std"};
    return (unsigned)op < sizeof(names) / sizeof(names[0]) ? names[op] : "?";
}

/* A new owned column of len values of w bytes each (data never NULL, even when empty). */
static int alloc_fixed(dcol_t *out, dcol_type_t type, int64_t len, size_t w, char *err,
                       size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (len < 0 || (w > 0 && (uint64_t)len > SIZE_MAX / w))
        return fail(err, errlen, "a column of %" PRId64 " rows is too large", len);
    size_t nbytes = (size_t)len * w;
    void *p = malloc(nbytes > 0 ? nbytes : 1);
    if (p == NULL)
        return fail(err, errlen, "out of memory for a column of %" PRId64 " rows", len);
    out->type = type;
    out->len = len;
    out->data = p;
    out->nbytes = nbytes;
    out->owned_data = p;
    return 0;
}

static int alloc_col(dcol_t *out, dcol_type_t type, int64_t len, char *err, size_t errlen)
{
    return alloc_fixed(out, type, len, type == DCOL_BOOL ? 1 : 8, err, errlen);
}

/* A new owned string column of len rows and nbytes bytes; the caller fills offsets and data. */
static int alloc_strings(dcol_t *out, int64_t len, size_t nbytes, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (len < 0 || (uint64_t)len >= SIZE_MAX / sizeof(int64_t) || nbytes > INT64_MAX)
        return fail(err, errlen, "a string column of %" PRId64 " rows is too large", len);
    out->offsets = malloc(((size_t)len + 1) * sizeof(int64_t));
    out->data = malloc(nbytes > 0 ? nbytes : 1);
    if (out->offsets == NULL || out->data == NULL) {
        free(out->offsets);
        free(out->data);
        memset(out, 0, sizeof(*out));
        return fail(err, errlen, "out of memory for a string column of %" PRId64 " rows", len);
    }
    out->type = DCOL_STRING;
    out->len = len;
    out->nbytes = nbytes;
    out->owned_data = out->data;
    out->owned_offsets = out->offsets;
    out->offsets[0] = 0;
    return 0;
}

/* "a float64 column", "a number", "a string": an operand as messages name it. */
static const char *describe(const dcol_operand_t *o, char *buf, size_t len)
{
    if (o->col != NULL) {
        const char *t = dcol_type_name(o->col->type);
        snprintf(buf, len, "a%s %s column", t != NULL && t[0] == 'i' ? "n" : "",
                 t != NULL ? t : "unknown");
        return buf;
    }
    return o->kind == DCOL_SCALAR_STR ? "a string" : "a number";
}

static bool is_numeric_col(const dcol_t *c)
{
    return c->type == DCOL_INT64 || c->type == DCOL_FLOAT64 || c->type == DCOL_BOOL;
}

static bool is_numeric(const dcol_operand_t *o)
{
    return o->col != NULL ? is_numeric_col(o->col) : o->kind != DCOL_SCALAR_STR;
}

/* Integers in, integers out: an int64 or bool column, or an integer scalar. */
static bool is_intlike(const dcol_operand_t *o)
{
    return o->col != NULL ? o->col->type != DCOL_FLOAT64 : o->kind == DCOL_SCALAR_INT;
}

static double scalar_f64(const dcol_operand_t *o)
{
    return o->kind == DCOL_SCALAR_INT ? (double)o->i : o->f;
}

/* The row count of a binary op: checks that a column is present and that two columns agree. */
static int binary_len(const dcol_operand_t *a, const dcol_operand_t *b, int64_t *n, char *err,
                      size_t errlen)
{
    if (a->col == NULL && b->col == NULL)
        return fail(err, errlen, "an element-wise op needs a column operand");
    if (a->col != NULL && b->col != NULL && a->col->len != b->col->len)
        return fail(err, errlen, "column lengths differ: %" PRId64 " and %" PRId64, a->col->len,
                    b->col->len);
    *n = a->col != NULL ? a->col->len : b->col->len;
    return 0;
}

/* Values [start, start + n) of a numeric column as doubles: in place for float64, else converted
 * into buf. */
static const double *f64_span(const dcol_t *c, int64_t start, int64_t n, double *restrict buf)
{
    if (c->type == DCOL_FLOAT64)
        return (const double *)c->data + start;
    if (c->type == DCOL_INT64) {
        const int64_t *restrict s = (const int64_t *)c->data + start;
        for (int64_t i = 0; i < n; i++)
            buf[i] = (double)s[i];
    } else {
        const uint8_t *restrict s = (const uint8_t *)c->data + start;
        for (int64_t i = 0; i < n; i++)
            buf[i] = s[i] != 0;
    }
    return buf;
}

/* Values [start, start + n) of an int64 or bool column as int64. */
static const int64_t *i64_span(const dcol_t *c, int64_t start, int64_t n, int64_t *restrict buf)
{
    if (c->type == DCOL_INT64)
        return (const int64_t *)c->data + start;
    const uint8_t *restrict s = (const uint8_t *)c->data + start;
    for (int64_t i = 0; i < n; i++)
        buf[i] = s[i] != 0;
    return buf;
}

/* ---- arithmetic ---- */

/* Lua's float modulo: the result takes the divisor's sign. */
static inline double f64_mod(double a, double b)
{
    double m = fmod(a, b);
    if (m > 0 ? b < 0 : (m < 0 && b != m))
        m += b;
    return m;
}

/* Lua's integer floor division and modulo; b is never 0 (checked before). b == -1 is apart
 * because INT64_MIN / -1 overflows. */
static inline int64_t i64_idiv(int64_t a, int64_t b)
{
    if (b == -1)
        return (int64_t)(0u - (uint64_t)a);
    int64_t q = a / b;
    if ((a % b != 0) && ((a ^ b) < 0))
        q -= 1;
    return q;
}

static inline int64_t i64_mod(int64_t a, int64_t b)
{
    if (b == -1)
        return 0;
    int64_t m = a % b;
    if (m != 0 && (m ^ b) < 0)
        m += b;
    return m;
}

/* One loop per operand shape; EXPR reads a and b. Plain counted loops over restrict pointers, so
 * GCC vectorizes them (at -O3, or -O2 with -fvect-cost-model=cheap). */
#define BINARY_LOOPS(T, EXPR)                                                                      \
    do {                                                                                           \
        if (shape == SHAPE_AA) {                                                                   \
            for (int64_t k = 0; k < n; k++) {                                                      \
                T a = x[k], b = y[k];                                                              \
                z[k] = (EXPR);                                                                     \
            }                                                                                      \
        } else if (shape == SHAPE_AS) {                                                            \
            T b = y[0];                                                                            \
            for (int64_t k = 0; k < n; k++) {                                                      \
                T a = x[k];                                                                        \
                z[k] = (EXPR);                                                                     \
            }                                                                                      \
        } else {                                                                                   \
            T a = x[0];                                                                            \
            for (int64_t k = 0; k < n; k++) {                                                      \
                T b = y[k];                                                                        \
                z[k] = (EXPR);                                                                     \
            }                                                                                      \
        }                                                                                          \
    } while (0)

static void f64_kernel(dcol_arith_op_t op, int shape, const double *restrict x,
                       const double *restrict y, double *restrict z, int64_t n)
{
    switch (op) {
    case DCOL_ADD:
        BINARY_LOOPS(double, a + b);
        break;
    case DCOL_SUB:
        BINARY_LOOPS(double, a - b);
        break;
    case DCOL_MUL:
        BINARY_LOOPS(double, a * b);
        break;
    case DCOL_DIV:
        BINARY_LOOPS(double, a / b);
        break;
    case DCOL_IDIV:
        BINARY_LOOPS(double, floor(a / b));
        break;
    case DCOL_MOD:
        BINARY_LOOPS(double, f64_mod(a, b));
        break;
    case DCOL_POW:
        BINARY_LOOPS(double, pow(a, b));
        break;
    }
}

/* + - * wrap around through unsigned arithmetic, as Lua integers do. */
static void i64_kernel(dcol_arith_op_t op, int shape, const int64_t *restrict x,
                       const int64_t *restrict y, int64_t *restrict z, int64_t n)
{
    switch (op) {
    case DCOL_ADD:
        BINARY_LOOPS(int64_t, (int64_t)((uint64_t)a + (uint64_t)b));
        break;
    case DCOL_SUB:
        BINARY_LOOPS(int64_t, (int64_t)((uint64_t)a - (uint64_t)b));
        break;
    case DCOL_MUL:
        BINARY_LOOPS(int64_t, (int64_t)((uint64_t)a * (uint64_t)b));
        break;
    case DCOL_IDIV:
        BINARY_LOOPS(int64_t, i64_idiv(a, b));
        break;
    case DCOL_MOD:
        BINARY_LOOPS(int64_t, i64_mod(a, b));
        break;
    default: /* DIV and POW always go the float64 way */
        break;
    }
}

static int shape_of(const dcol_operand_t *a, const dcol_operand_t *b)
{
    return a->col == NULL ? SHAPE_SA : b->col == NULL ? SHAPE_AS : SHAPE_AA;
}

static int arith_f64(dcol_arith_op_t op, const dcol_operand_t *a, const dcol_operand_t *b,
                     int64_t n, dcol_t *out, char *err, size_t errlen)
{
    double xbuf[CHUNK], ybuf[CHUNK];
    double xs = a->col == NULL ? scalar_f64(a) : 0, ys = b->col == NULL ? scalar_f64(b) : 0;
    int shape = shape_of(a, b);

    if (alloc_col(out, DCOL_FLOAT64, n, err, errlen) != 0)
        return -1;
    double *z = out->data;
    for (int64_t s = 0; s < n; s += CHUNK) {
        int64_t m = n - s < CHUNK ? n - s : CHUNK;
        const double *x = a->col != NULL ? f64_span(a->col, s, m, xbuf) : &xs;
        const double *y = b->col != NULL ? f64_span(b->col, s, m, ybuf) : &ys;
        f64_kernel(op, shape, x, y, z + s, m);
    }
    return 0;
}

/* The first zero of an int64 or bool column, or -1. */
static int64_t first_zero(const dcol_t *c)
{
    for (int64_t i = 0; i < c->len; i++) {
        bool zero = c->type == DCOL_INT64 ? ((const int64_t *)c->data)[i] == 0
                                          : ((const uint8_t *)c->data)[i] == 0;
        if (zero)
            return i;
    }
    return -1;
}

static int arith_i64(dcol_arith_op_t op, const dcol_operand_t *a, const dcol_operand_t *b,
                     int64_t n, dcol_t *out, char *err, size_t errlen)
{
    int64_t xbuf[CHUNK], ybuf[CHUNK];
    int64_t xs = a->col == NULL ? a->i : 0, ys = b->col == NULL ? b->i : 0;
    int shape = shape_of(a, b);

    if ((op == DCOL_IDIV || op == DCOL_MOD) && n > 0) {
        int64_t row = b->col != NULL ? first_zero(b->col) : (ys == 0 ? 0 : -1);
        if (row >= 0)
            return fail(err, errlen,
                        "integer %s by zero at row %" PRId64
                        " (int64 values; astype('float64') gives inf or nan instead)",
                        op == DCOL_IDIV ? "division (//)" : "modulo (%)", row + 1);
    }
    if (alloc_col(out, DCOL_INT64, n, err, errlen) != 0)
        return -1;
    int64_t *z = out->data;
    for (int64_t s = 0; s < n; s += CHUNK) {
        int64_t m = n - s < CHUNK ? n - s : CHUNK;
        const int64_t *x = a->col != NULL ? i64_span(a->col, s, m, xbuf) : &xs;
        const int64_t *y = b->col != NULL ? i64_span(b->col, s, m, ybuf) : &ys;
        i64_kernel(op, shape, x, y, z + s, m);
    }
    return 0;
}

int dcol_arith(dcol_arith_op_t op, const dcol_operand_t *a, const dcol_operand_t *b, dcol_t *out,
               char *err, size_t errlen)
{
    char d[40];
    int64_t n = 0;

    memset(out, 0, sizeof(*out));
    if (binary_len(a, b, &n, err, errlen) != 0)
        return -1;
    if (!is_numeric(a) || !is_numeric(b)) {
        const dcol_operand_t *bad = !is_numeric(a) ? a : b;
        bool tensor = bad->col != NULL && bad->col->type == DCOL_TENSOR;
        return fail(err, errlen, "attempt to perform arithmetic (%s) on %s%s",
                    dcol_arith_symbol(op), describe(bad, d, sizeof(d)),
                    tensor ? " (col:tensor() gives its values as a tensor)" : "");
    }
    if (op == DCOL_DIV || op == DCOL_POW || !is_intlike(a) || !is_intlike(b))
        return arith_f64(op, a, b, n, out, err, errlen);
    return arith_i64(op, a, b, n, out, err, errlen);
}

int dcol_negate(const dcol_t *a, dcol_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (!is_numeric_col(a)) {
        dcol_operand_t o = dcol_operand_col(a);
        char d[40];
        return fail(err, errlen, "attempt to perform arithmetic (unary -) on %s",
                    describe(&o, d, sizeof(d)));
    }
    int64_t n = a->len;
    if (a->type == DCOL_FLOAT64) {
        if (alloc_col(out, DCOL_FLOAT64, n, err, errlen) != 0)
            return -1;
        const double *restrict x = a->data;
        double *restrict z = out->data;
        for (int64_t i = 0; i < n; i++)
            z[i] = -x[i];
        return 0;
    }
    if (alloc_col(out, DCOL_INT64, n, err, errlen) != 0)
        return -1;
    int64_t *restrict z = out->data;
    if (a->type == DCOL_INT64) {
        const int64_t *restrict x = a->data;
        for (int64_t i = 0; i < n; i++)
            z[i] = (int64_t)(0u - (uint64_t)x[i]);
    } else {
        const uint8_t *restrict x = a->data;
        for (int64_t i = 0; i < n; i++)
            z[i] = -(int64_t)(x[i] != 0);
    }
    return 0;
}

/* ---- comparisons ---- */

/* a OP b == b FLIP(OP) a */
static dcol_cmp_op_t cmp_flip(dcol_cmp_op_t op)
{
    switch (op) {
    case DCOL_LT:
        return DCOL_GT;
    case DCOL_LE:
        return DCOL_GE;
    case DCOL_GT:
        return DCOL_LT;
    case DCOL_GE:
        return DCOL_LE;
    default:
        return op;
    }
}

#define CMP_LOOP(T, OP)                                                                            \
    do {                                                                                           \
        if (scalar_y) {                                                                            \
            T v = y[0];                                                                            \
            for (int64_t k = 0; k < n; k++)                                                        \
                z[k] = x[k] OP v;                                                                  \
        } else {                                                                                   \
            for (int64_t k = 0; k < n; k++)                                                        \
                z[k] = x[k] OP y[k];                                                               \
        }                                                                                          \
    } while (0)

#define CMP_KERNEL(NAME, T)                                                                        \
    static void NAME(dcol_cmp_op_t op, bool scalar_y, const T *restrict x, const T *restrict y,    \
                     uint8_t *restrict z, int64_t n)                                               \
    {                                                                                              \
        switch (op) {                                                                              \
        case DCOL_EQ:                                                                              \
            CMP_LOOP(T, ==);                                                                       \
            break;                                                                                 \
        case DCOL_NE:                                                                              \
            CMP_LOOP(T, !=);                                                                       \
            break;                                                                                 \
        case DCOL_LT:                                                                              \
            CMP_LOOP(T, <);                                                                        \
            break;                                                                                 \
        case DCOL_LE:                                                                              \
            CMP_LOOP(T, <=);                                                                       \
            break;                                                                                 \
        case DCOL_GT:                                                                              \
            CMP_LOOP(T, >);                                                                        \
            break;                                                                                 \
        case DCOL_GE:                                                                              \
            CMP_LOOP(T, >=);                                                                       \
            break;                                                                                 \
        }                                                                                          \
    }

CMP_KERNEL(cmp_f64, double)
CMP_KERNEL(cmp_i64, int64_t)

static bool cmp_holds(dcol_cmp_op_t op, int c)
{
    switch (op) {
    case DCOL_EQ:
        return c == 0;
    case DCOL_NE:
        return c != 0;
    case DCOL_LT:
        return c < 0;
    case DCOL_LE:
        return c <= 0;
    case DCOL_GT:
        return c > 0;
    default:
        return c >= 0;
    }
}

static int bytes_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    size_t m = al < bl ? al : bl;
    int c = m > 0 ? memcmp(a, b, m) : 0;
    if (c != 0)
        return c;
    return (al > bl) - (al < bl);
}

/* a is a string column; b a string column or scalar. */
static void cmp_strings(dcol_cmp_op_t op, const dcol_t *a, const dcol_operand_t *b, uint8_t *z)
{
    for (int64_t i = 0; i < a->len; i++) {
        size_t al, bl;
        const char *as = dcol_str(a, i, &al), *bs;
        if (b->col != NULL) {
            bs = dcol_str(b->col, i, &bl);
        } else {
            bs = b->s;
            bl = b->len;
        }
        z[i] = cmp_holds(op, bytes_cmp(as, al, bs, bl));
    }
}

static void cmp_numbers(dcol_cmp_op_t op, const dcol_t *a, const dcol_operand_t *b, uint8_t *z)
{
    int64_t n = a->len;
    bool scalar_y = b->col == NULL;

    /* Integers compare exactly; anything with a float compares as doubles. */
    if (a->type != DCOL_FLOAT64 && is_intlike(b)) {
        int64_t xbuf[CHUNK], ybuf[CHUNK], ys = scalar_y ? b->i : 0;
        for (int64_t s = 0; s < n; s += CHUNK) {
            int64_t m = n - s < CHUNK ? n - s : CHUNK;
            const int64_t *y = scalar_y ? &ys : i64_span(b->col, s, m, ybuf);
            cmp_i64(op, scalar_y, i64_span(a, s, m, xbuf), y, z + s, m);
        }
        return;
    }
    double xbuf[CHUNK], ybuf[CHUNK], ys = scalar_y ? scalar_f64(b) : 0;
    for (int64_t s = 0; s < n; s += CHUNK) {
        int64_t m = n - s < CHUNK ? n - s : CHUNK;
        const double *y = scalar_y ? &ys : f64_span(b->col, s, m, ybuf);
        cmp_f64(op, scalar_y, f64_span(a, s, m, xbuf), y, z + s, m);
    }
}

int dcol_compare(dcol_cmp_op_t op, const dcol_operand_t *a, const dcol_operand_t *b, dcol_t *out,
                 char *err, size_t errlen)
{
    char da[40], db[40];
    int64_t n = 0;

    memset(out, 0, sizeof(*out));
    if (binary_len(a, b, &n, err, errlen) != 0)
        return -1;
    bool a_str = a->col != NULL ? a->col->type == DCOL_STRING : a->kind == DCOL_SCALAR_STR;
    bool b_str = b->col != NULL ? b->col->type == DCOL_STRING : b->kind == DCOL_SCALAR_STR;
    bool ok = a_str ? b_str : (is_numeric(a) && is_numeric(b));
    if (!ok)
        return fail(err, errlen, "cannot compare (%s) %s with %s", dcol_cmp_name(op),
                    describe(a, da, sizeof(da)), describe(b, db, sizeof(db)));
    if (a->col == NULL) { /* put the column first */
        const dcol_operand_t *t = a;
        a = b;
        b = t;
        op = cmp_flip(op);
    }
    if (alloc_col(out, DCOL_BOOL, n, err, errlen) != 0)
        return -1;
    if (a_str)
        cmp_strings(op, a->col, b, out->data);
    else
        cmp_numbers(op, a->col, b, out->data);
    return 0;
}

/* ---- string concatenation ---- */

static size_t operand_bytes(const dcol_operand_t *o, int64_t i, const char **s)
{
    size_t len;
    if (o->col == NULL) {
        *s = o->s;
        return o->len;
    }
    *s = dcol_str(o->col, i, &len);
    return len;
}

/* Total bytes of a string operand over n rows; false on overflow. */
static bool operand_total(const dcol_operand_t *o, int64_t n, size_t *total)
{
    if (o->col != NULL) {
        *total = (size_t)(o->col->offsets[n] - o->col->offsets[0]);
        return true;
    }
    if (n > 0 && o->len > SIZE_MAX / (size_t)n)
        return false;
    *total = o->len * (size_t)n;
    return true;
}

int dcol_str_concat(const dcol_operand_t *a, const dcol_operand_t *b, dcol_t *out, char *err,
                    size_t errlen)
{
    char d[40];
    size_t ta, tb;
    int64_t n = 0;

    memset(out, 0, sizeof(*out));
    if (binary_len(a, b, &n, err, errlen) != 0)
        return -1;
    const dcol_operand_t *ops[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        const dcol_operand_t *o = ops[k];
        bool str = o->col != NULL ? o->col->type == DCOL_STRING : o->kind == DCOL_SCALAR_STR;
        if (!str)
            return fail(err, errlen, "attempt to concatenate (..) %s%s", describe(o, d, sizeof(d)),
                        o->col != NULL ? " (astype('string') converts it)" : "");
    }
    if (!operand_total(a, n, &ta) || !operand_total(b, n, &tb) || ta > SIZE_MAX - tb)
        return fail(err, errlen, "concatenated strings too large");
    if (alloc_strings(out, n, ta + tb, err, errlen) != 0)
        return -1;
    char *dst = out->data;
    int64_t pos = 0;
    for (int64_t i = 0; i < n; i++) {
        const char *s;
        size_t len = operand_bytes(a, i, &s);
        if (len > 0)
            memcpy(dst + pos, s, len);
        pos += (int64_t)len;
        len = operand_bytes(b, i, &s);
        if (len > 0)
            memcpy(dst + pos, s, len);
        pos += (int64_t)len;
        out->offsets[i + 1] = pos;
    }
    return 0;
}

/* ---- masks ---- */

static int check_mask(const char *what, const dcol_t *m, char *err, size_t errlen)
{
    if (m->type != DCOL_BOOL) {
        dcol_operand_t o = dcol_operand_col(m);
        char d[40];
        return fail(err, errlen, "%s needs bool columns, got %s", what,
                    describe(&o, d, sizeof(d)));
    }
    return 0;
}

static int mask_binary(bool is_and, const dcol_t *a, const dcol_t *b, dcol_t *out, char *err,
                       size_t errlen)
{
    const char *what = is_and ? "&" : "|";

    memset(out, 0, sizeof(*out));
    if (check_mask(what, a, err, errlen) != 0 || check_mask(what, b, err, errlen) != 0)
        return -1;
    if (a->len != b->len)
        return fail(err, errlen, "column lengths differ: %" PRId64 " and %" PRId64, a->len,
                    b->len);
    if (alloc_col(out, DCOL_BOOL, a->len, err, errlen) != 0)
        return -1;
    const uint8_t *restrict x = a->data, *restrict y = b->data;
    uint8_t *restrict z = out->data;
    int64_t n = a->len;
    if (is_and) {
        for (int64_t i = 0; i < n; i++)
            z[i] = (x[i] != 0) & (y[i] != 0);
    } else {
        for (int64_t i = 0; i < n; i++)
            z[i] = (x[i] != 0) | (y[i] != 0);
    }
    return 0;
}

int dcol_mask_and(const dcol_t *a, const dcol_t *b, dcol_t *out, char *err, size_t errlen)
{
    return mask_binary(true, a, b, out, err, errlen);
}

int dcol_mask_or(const dcol_t *a, const dcol_t *b, dcol_t *out, char *err, size_t errlen)
{
    return mask_binary(false, a, b, out, err, errlen);
}

int dcol_mask_not(const dcol_t *a, dcol_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (check_mask("~", a, err, errlen) != 0 || alloc_col(out, DCOL_BOOL, a->len, err, errlen))
        return -1;
    const uint8_t *restrict x = a->data;
    uint8_t *restrict z = out->data;
    for (int64_t i = 0; i < a->len; i++)
        z[i] = x[i] == 0;
    return 0;
}

int64_t dcol_mask_count(const dcol_t *m)
{
    const uint8_t *restrict x = m->data;
    int64_t count = 0;
    for (int64_t i = 0; i < m->len; i++)
        count += x[i] != 0;
    return count;
}

int dcol_isnan(const dcol_t *a, dcol_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (!is_numeric_col(a))
        return fail(err, errlen, "isnan: not defined for %s columns", dcol_type_name(a->type));
    if (alloc_col(out, DCOL_BOOL, a->len, err, errlen) != 0)
        return -1;
    uint8_t *restrict z = out->data;
    if (a->type != DCOL_FLOAT64) {
        memset(z, 0, (size_t)a->len);
        return 0;
    }
    const double *restrict x = a->data;
    for (int64_t i = 0; i < a->len; i++)
        z[i] = x[i] != x[i];
    return 0;
}

/* ---- reductions ---- */

/* Sum and count of the non-NaN values; four accumulators break the dependency chain of one. */
static double f64_sum(const double *restrict x, int64_t n, int64_t *count)
{
    double s[4] = {0, 0, 0, 0};
    int64_t k[4] = {0, 0, 0, 0}, i = 0;

    for (; i + 4 <= n; i += 4)
        for (int j = 0; j < 4; j++) {
            double v = x[i + j];
            bool ok = v == v;
            s[j] += ok ? v : 0.0;
            k[j] += ok;
        }
    for (; i < n; i++)
        if (x[i] == x[i]) {
            s[0] += x[i];
            k[0]++;
        }
    *count = k[0] + k[1] + k[2] + k[3];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

/* Sum of squared deviations from mean of the non-NaN values. */
static double f64_sqdev(const double *restrict x, int64_t n, double mean)
{
    double s[4] = {0, 0, 0, 0};
    int64_t i = 0;

    for (; i + 4 <= n; i += 4)
        for (int j = 0; j < 4; j++) {
            double d = x[i + j] - mean;
            s[j] += d == d ? d * d : 0.0;
        }
    for (; i < n; i++) {
        double d = x[i] - mean;
        if (d == d)
            s[0] += d * d;
    }
    return (s[0] + s[1]) + (s[2] + s[3]);
}

static void reduce_f64(dcol_reduce_op_t op, const dcol_t *c, dcol_stat_t *out)
{
    const double *restrict x = c->data;
    int64_t n = c->len, count;

    if (op == DCOL_MIN || op == DCOL_MAX) {
        /* NaN fails every comparison, so it never replaces best. */
        double best = op == DCOL_MIN ? INFINITY : -INFINITY;
        bool any = false;
        for (int64_t i = 0; i < n; i++)
            any |= x[i] == x[i];
        if (op == DCOL_MIN) {
            for (int64_t i = 0; i < n; i++)
                best = x[i] < best ? x[i] : best;
        } else {
            for (int64_t i = 0; i < n; i++)
                best = x[i] > best ? x[i] : best;
        }
        out->valid = any;
        out->f = best;
        return;
    }
    double sum = f64_sum(x, n, &count);
    switch (op) {
    case DCOL_SUM:
        out->valid = true;
        out->f = sum;
        break;
    case DCOL_MEAN:
        out->valid = count > 0;
        out->f = count > 0 ? sum / (double)count : NAN;
        break;
    default: /* DCOL_STD */
        out->valid = count > 1;
        if (count > 1)
            out->f = sqrt(f64_sqdev(x, n, sum / (double)count) / (double)(count - 1));
        break;
    }
}

/* int64 and bool values as doubles, for mean and std. */
static void i64_moments(const dcol_t *c, bool want_std, double *mean, double *std)
{
    double xbuf[CHUNK], sum = 0, sq = 0;
    int64_t n = c->len, count;

    for (int64_t s = 0; s < n; s += CHUNK) {
        int64_t m = n - s < CHUNK ? n - s : CHUNK;
        sum += f64_sum(f64_span(c, s, m, xbuf), m, &count);
    }
    *mean = sum / (double)n;
    if (!want_std)
        return;
    for (int64_t s = 0; s < n; s += CHUNK) {
        int64_t m = n - s < CHUNK ? n - s : CHUNK;
        sq += f64_sqdev(f64_span(c, s, m, xbuf), m, *mean);
    }
    *std = sqrt(sq / (double)(n - 1));
}

static void reduce_i64(dcol_reduce_op_t op, const dcol_t *c, dcol_stat_t *out)
{
    int64_t n = c->len, xbuf[CHUNK];
    double mean, std = 0;

    switch (op) {
    case DCOL_SUM: {
        uint64_t acc = 0; /* wraps as Lua integers do */
        for (int64_t s = 0; s < n; s += CHUNK) {
            int64_t m = n - s < CHUNK ? n - s : CHUNK;
            const int64_t *restrict x = i64_span(c, s, m, xbuf);
            for (int64_t i = 0; i < m; i++)
                acc += (uint64_t)x[i];
        }
        out->valid = out->is_int = true;
        out->i = (int64_t)acc;
        return;
    }
    case DCOL_MIN:
    case DCOL_MAX: {
        if (n == 0)
            return;
        int64_t best = op == DCOL_MIN ? INT64_MAX : INT64_MIN;
        for (int64_t s = 0; s < n; s += CHUNK) {
            int64_t m = n - s < CHUNK ? n - s : CHUNK;
            const int64_t *restrict x = i64_span(c, s, m, xbuf);
            if (op == DCOL_MIN) {
                for (int64_t i = 0; i < m; i++)
                    best = x[i] < best ? x[i] : best;
            } else {
                for (int64_t i = 0; i < m; i++)
                    best = x[i] > best ? x[i] : best;
            }
        }
        out->valid = out->is_int = true;
        out->i = best;
        return;
    }
    case DCOL_MEAN:
        if (n == 0)
            return;
        i64_moments(c, false, &mean, &std);
        out->valid = true;
        out->f = mean;
        return;
    default: /* DCOL_STD */
        if (n < 2)
            return;
        i64_moments(c, true, &mean, &std);
        out->valid = true;
        out->f = std;
        return;
    }
}

int dcol_reduce(dcol_reduce_op_t op, const dcol_t *c, dcol_stat_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if ((unsigned)op > DCOL_STD)
        return fail(err, errlen, "unknown reduction %d", (int)op);
    if (c->type == DCOL_FLOAT64)
        reduce_f64(op, c, out);
    else if (c->type == DCOL_INT64 || c->type == DCOL_BOOL)
        reduce_i64(op, c, out);
    else
        return fail(err, errlen, "%s: not defined for %s columns", dcol_reduce_name(op),
                    dcol_type_name(c->type));
    return 0;
}

int64_t dcol_str_extreme(const dcol_t *c, bool largest)
{
    int64_t best = -1;
    size_t bl = 0;
    const char *bs = NULL;

    for (int64_t i = 0; i < c->len; i++) {
        size_t len;
        const char *s = dcol_str(c, i, &len);
        int d = best < 0 ? 0 : bytes_cmp(s, len, bs, bl);
        if (best < 0 || (largest ? d > 0 : d < 0)) {
            best = i;
            bs = s;
            bl = len;
        }
    }
    return best;
}

/* ---- casts ---- */

size_t dcol_format_f64(double v, char *buf, size_t buflen)
{
    int n;

    if (v != v)
        n = snprintf(buf, buflen, "nan");
    else if (isinf(v))
        n = snprintf(buf, buflen, v > 0 ? "inf" : "-inf");
    else {
        /* The shortest of %.15g and %.17g that reads back to the same double. */
        n = snprintf(buf, buflen, "%.15g", v);
        if (strtod(buf, NULL) != v)
            n = snprintf(buf, buflen, "%.17g", v);
        /* Lua prints a float with an integral value as "1.0", telling it from an integer. */
        if (strpbrk(buf, ".en") == NULL && (size_t)n + 2 < buflen) {
            memcpy(buf + n, ".0", 3);
            n += 2;
        }
    }
    return n < 0 ? 0 : (size_t)n;
}

/* Decimal text of v into buf (at least 21 bytes); returns the length. */
static size_t format_i64(int64_t v, char *buf)
{
    char tmp[24];
    size_t n = 0, len = 0;
    uint64_t u = v < 0 ? 0u - (uint64_t)v : (uint64_t)v;

    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        buf[len++] = '-';
    while (n > 0)
        buf[len++] = tmp[--n];
    return len;
}

static int copy_column(const dcol_t *src, dcol_t *out, char *err, size_t errlen)
{
    if (src->type == DCOL_STRING) {
        size_t nbytes = (size_t)(src->offsets[src->len] - src->offsets[0]);
        if (alloc_strings(out, src->len, nbytes, err, errlen) != 0)
            return -1;
        if (nbytes > 0)
            memcpy(out->data, (const char *)src->data + src->offsets[0], nbytes);
        for (int64_t i = 0; i <= src->len; i++)
            out->offsets[i] = src->offsets[i] - src->offsets[0];
        return 0;
    }
    size_t w = dcol_value_size(src);
    if (alloc_fixed(out, src->type, src->len, w, err, errlen) != 0)
        return -1;
    out->ndim = src->ndim;
    memcpy(out->shape, src->shape, sizeof(out->shape));
    if (out->nbytes > 0)
        memcpy(out->data, src->data, out->nbytes);
    return 0;
}

static int format_column(const dcol_t *src, dcol_t *out, char *err, size_t errlen)
{
    dcol_builder_t b;
    char text[40];

    if (dcol_builder_init(&b, DCOL_STRING, 0, NULL) != 0)
        return fail(err, errlen, "out of memory");
    for (int64_t i = 0; i < src->len; i++) {
        size_t len;
        if (src->type == DCOL_INT64)
            len = format_i64(((const int64_t *)src->data)[i], text);
        else if (src->type == DCOL_FLOAT64)
            len = dcol_format_f64(((const double *)src->data)[i], text, sizeof(text));
        else
            len = ((const uint8_t *)src->data)[i] ? 4 : 5;
        const char *s = src->type == DCOL_BOOL ? (len == 4 ? "true" : "false") : text;
        if (dcol_append_str(&b, s, len) != 0) {
            dcol_builder_free(&b);
            return fail(err, errlen, "out of memory formatting row %" PRId64, i + 1);
        }
    }
    dcol_builder_finish(&b, out);
    if (out->data == NULL) {
        dcol_free(out);
        return fail(err, errlen, "out of memory");
    }
    return 0;
}

static int parse_column(const dcol_t *src, dcol_type_t to, dcol_t *out, char *err, size_t errlen)
{
    if (alloc_col(out, to, src->len, err, errlen) != 0)
        return -1;
    for (int64_t i = 0; i < src->len; i++) {
        size_t len;
        const char *s = dcol_str(src, i, &len);
        int rc;
        if (to == DCOL_INT64) {
            rc = dcol_parse_i64(s, len, (int64_t *)out->data + i);
        } else if (to == DCOL_FLOAT64) {
            rc = dcol_parse_f64(s, len, (double *)out->data + i);
        } else {
            bool v = false;
            rc = dcol_parse_bool(s, len, &v);
            ((uint8_t *)out->data)[i] = v;
        }
        if (rc != 0) {
            dcol_free(out);
            return fail(err, errlen, "row %" PRId64 ": \"%.*s%s\" is not %s %s", i + 1,
                        (int)(len > 40 ? 40 : len), s, len > 40 ? "..." : "",
                        to == DCOL_INT64 ? "an" : "a", dcol_type_name(to));
        }
    }
    return 0;
}

/* float64 → int64: truncation toward zero of values inside int64's range. */
static int f64_to_i64(const dcol_t *src, dcol_t *out, char *err, size_t errlen)
{
    const double *restrict x = src->data;
    int64_t *restrict z = out->data;
    for (int64_t i = 0; i < src->len; i++) {
        double v = x[i];
        if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0)) {
            dcol_free(out);
            return fail(err, errlen, "row %" PRId64 ": %.17g does not fit int64", i + 1, v);
        }
        z[i] = (int64_t)v;
    }
    return 0;
}

static int convert_numeric(const dcol_t *src, dcol_type_t to, dcol_t *out, char *err,
                           size_t errlen)
{
    int64_t n = src->len;

    if (alloc_col(out, to, n, err, errlen) != 0)
        return -1;
    if (to == DCOL_FLOAT64) {
        f64_span(src, 0, n, out->data); /* src is int64 or bool: converts into out */
    } else if (to == DCOL_BOOL) {
        uint8_t *restrict z = out->data;
        if (src->type == DCOL_INT64) {
            const int64_t *restrict x = src->data;
            for (int64_t i = 0; i < n; i++)
                z[i] = x[i] != 0;
        } else {
            const double *restrict x = src->data; /* NaN is nonzero: true, as in numpy */
            for (int64_t i = 0; i < n; i++)
                z[i] = x[i] != 0;
        }
    } else if (src->type == DCOL_FLOAT64) {
        return f64_to_i64(src, out, err, errlen);
    } else {
        int64_t *restrict z = out->data;
        const uint8_t *restrict x = src->data;
        for (int64_t i = 0; i < n; i++)
            z[i] = x[i] != 0;
    }
    return 0;
}

int dcol_cast(const dcol_t *src, dcol_type_t to, dcol_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (dcol_type_name(to) == NULL || dcol_type_name(src->type) == NULL)
        return fail(err, errlen, "unknown column type");
    if (src->type == to)
        return copy_column(src, out, err, errlen);
    if (src->type == DCOL_TENSOR || to == DCOL_TENSOR)
        return fail(err, errlen, "cannot convert a%s %s column to %s",
                    src->type == DCOL_INT64 ? "n" : "", dcol_type_name(src->type),
                    dcol_type_name(to));
    if (to == DCOL_STRING)
        return format_column(src, out, err, errlen);
    if (src->type == DCOL_STRING)
        return parse_column(src, to, out, err, errlen);
    return convert_numeric(src, to, out, err, errlen);
}
