/* JSON Lines sources (json_read.h): a streaming parser of one object per line, key and type
 * inference, and the byte-range reader. */
#include "json_read.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "luray/errors.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* ---- the parser ---- */

/* Hand-written rather than cJSON: it keeps each number's text, so int64 values past 2^53 stay
 * exact (cJSON only gives doubles), and it allocates nothing per value. */

typedef enum { JV_NULL, JV_BOOL, JV_INT, JV_FLOAT, JV_STRING, JV_ARRAY, JV_OBJECT } jkind_t;

typedef struct {
    jkind_t kind;
    bool b;
    int64_t i;
    double d;
    const char *s; /* JV_STRING: the decoded bytes; JV_INT, JV_FLOAT: the number's text */
    size_t len;
    int ndim; /* JV_ARRAY: its shape; the values are in the parser's fbuf */
    int64_t shape[DCOL_MAX_DIMS];
} jvalue_t;

/* Outcomes of parsing part of a line: J_SYNTAX is broken JSON, J_ARRAY an array that cannot be
 * a tensor row (both described by `why`). */
enum { J_OK = 0, J_SYNTAX = -1, J_NOMEM = -2, J_ARRAY = -3 };

typedef struct {
    const data_text_t *t;
    const unsigned char *line, *p, *end; /* the line being parsed and the cursor in it */
    size_t line_pos;                     /* the line's offset in the text */
    const char *why;
    const unsigned char *where; /* J_SYNTAX: the offending byte */
    char *kbuf, *vbuf;          /* a key / a string value with escapes, decoded */
    size_t kcap, vcap;
    float *fbuf; /* the values of the array being parsed */
    size_t fn, fcap;
    char *err;
    size_t errlen;
} jparser_t;

static void parser_close(jparser_t *jp)
{
    free(jp->kbuf);
    free(jp->vbuf);
    free(jp->fbuf);
}

static int syntax(jparser_t *jp, const char *why, const unsigned char *where)
{
    jp->why = why;
    jp->where = where;
    return J_SYNTAX;
}

static inline void skip_ws(jparser_t *jp)
{
    while (jp->p < jp->end && (*jp->p == ' ' || *jp->p == '\t' || *jp->p == '\r'))
        jp->p++;
}

static int reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    char *b = realloc(*buf, c);
    if (b == NULL)
        return -1;
    *buf = b;
    *cap = c;
    return 0;
}

static int hex4(const unsigned char *q, unsigned *cp)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = q[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            d = (c | 0x20) - 'a' + 10;
        else
            return -1;
        v = v << 4 | d;
    }
    *cp = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A \uXXXX escape at q (pointing at the 'u'), joined with a following low surrogate; a lone
 * surrogate becomes U+FFFD as in most decoders. Advances *q past what it used. */
static int unicode_escape(jparser_t *jp, const unsigned char **q, unsigned *cp)
{
    const unsigned char *u = *q;
    if (jp->end - u < 5 || hex4(u + 1, cp) != 0)
        return syntax(jp, "bad \\u escape", u - 1);
    *q = u + 5;
    if (*cp >= 0xD800 && *cp <= 0xDBFF) {
        unsigned lo;
        if (jp->end - *q >= 6 && (*q)[0] == '\\' && (*q)[1] == 'u' && hex4(*q + 2, &lo) == 0 &&
            lo >= 0xDC00 && lo <= 0xDFFF) {
            *cp = 0x10000 + ((*cp - 0xD800) << 10) + (lo - 0xDC00);
            *q += 6;
        } else {
            *cp = 0xFFFD;
        }
    } else if (*cp >= 0xDC00 && *cp <= 0xDFFF) {
        *cp = 0xFFFD;
    }
    return J_OK;
}

/* The string at p (its opening quote). Without escapes it is a view of the line; else it is
 * decoded into *buf, which never needs more bytes than the rest of the line. */
static int parse_string(jparser_t *jp, char **buf, size_t *cap, const char **s, size_t *len)
{
    /* Bytes that end a run of plain string bytes: the quote, backslash, control characters. */
    static const uint8_t special[256] = {
        [0 ... 0x1F] = 1, ['"'] = 1, ['\\'] = 1,
    };
    const unsigned char *start = jp->p + 1, *q = start, *end = jp->end;
#if defined(__SSE2__)
    /* 16 bytes at a time: a byte is special when it is '"', '\\' or below 0x20. */
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'),
                  ctl = _mm_set1_epi8(0x1F);
    while (end - q >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)q);
        __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
                                 _mm_cmpeq_epi8(_mm_max_epu8(v, ctl), ctl));
        unsigned bits = (unsigned)_mm_movemask_epi8(m);
        if (bits != 0) {
            q += __builtin_ctz(bits);
            goto scanned;
        }
        q += 16;
    }
#endif
    while (q < end && !special[*q])
        q++;
#if defined(__SSE2__)
scanned:
#endif
    if (q < end && *q == '"') {
        *s = (const char *)start;
        *len = (size_t)(q - start);
        jp->p = q + 1;
        return J_OK;
    }
    if (reserve(buf, cap, (size_t)(end - start) + 1) != 0)
        return J_NOMEM;
    char *o = *buf;
    size_t k = (size_t)(q - start);
    memcpy(o, start, k);
    while (q < end) {
        unsigned char c = *q;
        if (c == '"') {
            *s = o;
            *len = k;
            jp->p = q + 1;
            return J_OK;
        }
        if (c < 0x20)
            return syntax(jp, "control character in a string", q);
        if (c != '\\') {
            o[k++] = (char)c;
            q++;
            continue;
        }
        if (++q == end)
            break;
        unsigned cp;
        switch (*q) {
        case '"': case '\\': case '/':
            o[k++] = (char)*q++;
            break;
        case 'b': o[k++] = '\b'; q++; break;
        case 'f': o[k++] = '\f'; q++; break;
        case 'n': o[k++] = '\n'; q++; break;
        case 'r': o[k++] = '\r'; q++; break;
        case 't': o[k++] = '\t'; q++; break;
        case 'u':
            if (unicode_escape(jp, &q, &cp) != J_OK)
                return J_SYNTAX;
            k += put_utf8(o + k, cp);
            break;
        default:
            return syntax(jp, "bad escape in a string", q - 1);
        }
    }
    return syntax(jp, "unterminated string", jp->p);
}

static inline bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* A number in JSON's grammar; integers that fit int64 are JV_INT, the rest JV_FLOAT. */
static int parse_number(jparser_t *jp, jvalue_t *v)
{
    const unsigned char *s = jp->p, *q = s, *end = jp->end;
    bool integral = true;
    if (q < end && *q == '-')
        q++;
    if (q == end || !is_digit(*q))
        return syntax(jp, "bad number", s);
    if (*q == '0')
        q++;
    else
        while (q < end && is_digit(*q))
            q++;
    if (q < end && *q == '.') {
        integral = false;
        if (++q == end || !is_digit(*q))
            return syntax(jp, "bad number", s);
        while (q < end && is_digit(*q))
            q++;
    }
    if (q < end && (*q == 'e' || *q == 'E')) {
        integral = false;
        if (++q < end && (*q == '+' || *q == '-'))
            q++;
        if (q == end || !is_digit(*q))
            return syntax(jp, "bad number", s);
        while (q < end && is_digit(*q))
            q++;
    }
    v->s = (const char *)s;
    v->len = (size_t)(q - s);
    jp->p = q;
    if (integral && dcol_parse_i64(v->s, v->len, &v->i) == 0) {
        v->kind = JV_INT;
        return J_OK;
    }
    v->kind = JV_FLOAT;
    if (dcol_parse_f64(v->s, v->len, &v->d) == 0)
        return J_OK;
    /* Only a very long number gets here (the shared parser takes up to 127 bytes): the JSON
     * grammar above is a subset of strtod's, so strtod on a copy reads it. */
    if (reserve(&jp->vbuf, &jp->vcap, v->len + 1) != 0)
        return J_NOMEM;
    memcpy(jp->vbuf, v->s, v->len);
    jp->vbuf[v->len] = '\0';
    v->d = strtod(jp->vbuf, NULL);
    return J_OK;
}

static int parse_literal(jparser_t *jp, const char *word, size_t len)
{
    if ((size_t)(jp->end - jp->p) < len || memcmp(jp->p, word, len) != 0)
        return syntax(jp, "unexpected character", jp->p);
    jp->p += len;
    return J_OK;
}

static int push_float(jparser_t *jp, float f)
{
    if (jp->fn == jp->fcap) {
        size_t cap = jp->fcap ? jp->fcap * 2 : 64;
        float *b = realloc(jp->fbuf, cap * sizeof(float));
        if (b == NULL)
            return J_NOMEM;
        jp->fbuf = b;
        jp->fcap = cap;
    }
    jp->fbuf[jp->fn++] = f;
    return J_OK;
}

static int array_error(jparser_t *jp, const char *why)
{
    jp->why = why;
    return J_ARRAY;
}

/* An array (at its '[') nested `depth` deep as a tensor row: numbers (null is NaN) at one depth,
 * every array at a depth of the same length. v->ndim is -1 until the first number fixes it. */
static int parse_array(jparser_t *jp, int depth, jvalue_t *v)
{
    if (depth == DCOL_MAX_DIMS)
        return array_error(jp, "nests arrays too deep for a tensor");
    jp->p++;
    skip_ws(jp);
    if (jp->p < jp->end && *jp->p == ']')
        return array_error(jp, "is an empty array");
    int64_t count = 0;
    for (;;) {
        skip_ws(jp);
        if (jp->p == jp->end)
            return syntax(jp, "unterminated array", jp->p);
        unsigned char c = *jp->p;
        int rc;
        if (c == '[') {
            if (v->ndim >= 0 && v->ndim <= depth + 1)
                return array_error(jp, "mixes numbers and arrays at one depth");
            if ((rc = parse_array(jp, depth + 1, v)) != J_OK)
                return rc;
        } else {
            if (v->ndim < 0)
                v->ndim = depth + 1;
            else if (v->ndim != depth + 1)
                return array_error(jp, "mixes numbers and arrays at one depth");
            jvalue_t x;
            if (c == '-' || is_digit(c)) {
                if ((rc = parse_number(jp, &x)) != J_OK)
                    return rc;
                rc = push_float(jp, x.kind == JV_INT ? (float)x.i : (float)x.d);
            } else if (c == 'n') {
                if ((rc = parse_literal(jp, "null", 4)) != J_OK)
                    return rc;
                rc = push_float(jp, NAN);
            } else if (c == '"' || c == 't' || c == 'f' || c == '{') {
                return array_error(jp, c == '"'   ? "is an array holding a string"
                                       : c == '{' ? "is an array holding an object"
                                                  : "is an array holding a bool");
            } else {
                return syntax(jp, "unexpected character", jp->p);
            }
            if (rc != J_OK)
                return rc;
        }
        count++;
        skip_ws(jp);
        if (jp->p < jp->end && *jp->p == ',') {
            jp->p++;
            continue;
        }
        if (jp->p < jp->end && *jp->p == ']') {
            jp->p++;
            break;
        }
        return syntax(jp, "expected ',' or ']'", jp->p);
    }
    if (v->shape[depth] == 0)
        v->shape[depth] = count;
    else if (v->shape[depth] != count)
        return array_error(jp, "is an array with rows of different lengths");
    return J_OK;
}

/* The value at p. Objects are only recognised (kind JV_OBJECT), never walked: no column can
 * hold one, so the caller stops there. */
static int parse_value(jparser_t *jp, jvalue_t *v)
{
    if (jp->p == jp->end)
        return syntax(jp, "expected a value", jp->p);
    switch (*jp->p) {
    case '"':
        v->kind = JV_STRING;
        return parse_string(jp, &jp->vbuf, &jp->vcap, &v->s, &v->len);
    case 't':
        v->kind = JV_BOOL;
        v->b = true;
        return parse_literal(jp, "true", 4);
    case 'f':
        v->kind = JV_BOOL;
        v->b = false;
        return parse_literal(jp, "false", 5);
    case 'n':
        v->kind = JV_NULL;
        return parse_literal(jp, "null", 4);
    case '[':
        v->kind = JV_ARRAY;
        v->ndim = -1;
        memset(v->shape, 0, sizeof(v->shape));
        jp->fn = 0;
        return parse_array(jp, 0, v);
    case '{':
        v->kind = JV_OBJECT;
        return J_OK;
    default:
        if (*jp->p != '-' && !is_digit(*jp->p))
            return syntax(jp, "unexpected character", jp->p);
        return parse_number(jp, v);
    }
}

/* ---- messages ---- */

/* "name:LINE: " and the message, for the line being parsed; returns LURAY_EINVAL. */
static int fail_line(jparser_t *jp, const char *fmt, ...)
{
    long long line = (long long)data_line_of(jp->t, jp->line_pos);
    int k = snprintf(jp->err, jp->errlen, "%s:%lld: ", jp->t->name, line);
    if (k >= 0 && (size_t)k < jp->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(jp->err + k, jp->errlen - (size_t)k, fmt, ap);
        va_end(ap);
    }
    return LURAY_EINVAL;
}

static int fail_nomem(jparser_t *jp)
{
    snprintf(jp->err, jp->errlen, "%s: out of memory", jp->t->name);
    return LURAY_ENOMEM;
}

/* The error for a J_* outcome; key names the value's key (NULL outside a value). */
static int parse_error(jparser_t *jp, int rc, const char *key)
{
    if (rc == J_NOMEM)
        return fail_nomem(jp);
    if (rc == J_ARRAY)
        return fail_line(jp, "key '%s' %s", key, jp->why);
    return fail_line(jp, "broken JSON (%s at byte %lld)", jp->why,
                     (long long)(jp->where - jp->line) + 1);
}

static const char *describe(const jvalue_t *v)
{
    static const char *const what[] = {"null",     "a bool",  "an integer", "a float",
                                       "a string", "an array", "an object"};
    return what[v->kind];
}

static dcol_type_t type_of(const jvalue_t *v)
{
    switch (v->kind) {
    case JV_BOOL:
        return DCOL_BOOL;
    case JV_INT:
        return DCOL_INT64;
    case JV_FLOAT:
        return DCOL_FLOAT64;
    case JV_STRING:
        return DCOL_STRING;
    default:
        return DCOL_TENSOR;
    }
}

/* "[2,3]" into out. */
static void show_shape(char *out, size_t outlen, int ndim, const int64_t *shape)
{
    size_t k = 0;
    k += (size_t)snprintf(out, outlen, "[");
    for (int d = 0; d < ndim && k < outlen; d++)
        k += (size_t)snprintf(out + k, outlen - k, "%s%lld", d ? "," : "", (long long)shape[d]);
    if (k < outlen)
        snprintf(out + k, outlen - k, "]");
}

/* ---- keys ---- */

/* Column names with an open-addressing index (slots hold index + 1, 0 is empty). */
typedef struct {
    char **names;
    size_t *lens;
    int n, cap;
    int *slots;
    size_t mask;
} jkeys_t;

static uint64_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static void keys_close(jkeys_t *k)
{
    for (int i = 0; i < k->n; i++)
        free(k->names[i]);
    free(k->names);
    free(k->lens);
    free(k->slots);
    memset(k, 0, sizeof(*k));
}

/* memcmp(a, b, n) == 0 without a call: keys are mostly a few bytes long. */
static inline bool same_bytes(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return false;
    return true;
}

/* The key's index, or -1. Keys mostly come in the same order on every line: try `guess` first. */
static inline int keys_find(const jkeys_t *k, const char *s, size_t len, int guess)
{
    if (guess >= 0 && guess < k->n && k->lens[guess] == len && same_bytes(k->names[guess], s, len))
        return guess;
    if (k->slots == NULL)
        return -1;
    for (size_t h = hash_bytes(s, len) & k->mask;; h = (h + 1) & k->mask) {
        int i = k->slots[h] - 1;
        if (i < 0)
            return -1;
        if (k->lens[i] == len && same_bytes(k->names[i], s, len))
            return i;
    }
}

static int keys_rehash(jkeys_t *k, size_t nslots)
{
    int *slots = calloc(nslots, sizeof(int));
    if (slots == NULL)
        return -1;
    free(k->slots);
    k->slots = slots;
    k->mask = nslots - 1;
    for (int i = 0; i < k->n; i++) {
        size_t h = hash_bytes(k->names[i], k->lens[i]) & k->mask;
        while (slots[h] != 0)
            h = (h + 1) & k->mask;
        slots[h] = i + 1;
    }
    return 0;
}

/* Appends a new key (not present); its index, or -1 when out of memory. */
static int keys_add(jkeys_t *k, const char *s, size_t len)
{
    if (k->n == k->cap) {
        int cap = k->cap ? k->cap * 2 : 16;
        char **names = realloc(k->names, (size_t)cap * sizeof(*names));
        if (names == NULL)
            return -1;
        k->names = names;
        size_t *lens = realloc(k->lens, (size_t)cap * sizeof(*lens));
        if (lens == NULL)
            return -1;
        k->lens = lens;
        k->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return -1;
    memcpy(copy, s, len);
    copy[len] = '\0';
    k->names[k->n] = copy;
    k->lens[k->n] = len;
    k->n++;
    if ((size_t)k->n * 2 > k->mask + 1 || k->slots == NULL) {
        if (keys_rehash(k, k->slots == NULL ? 32 : (k->mask + 1) * 2) != 0) {
            free(k->names[--k->n]);
            return -1;
        }
    } else {
        size_t h = hash_bytes(s, len) & k->mask;
        while (k->slots[h] != 0)
            h = (h + 1) & k->mask;
        k->slots[h] = k->n;
    }
    return k->n - 1;
}

/* ---- lines ---- */

/* Called for each key/value of an object; returns 0 or a LURAY_E* code with the error set. */
typedef int (*member_fn)(jparser_t *jp, void *ctx, const char *key, size_t klen, jvalue_t *v);

/* Parses the line [line_pos, eol) as one object, calling fn per member. *blank is set (and
 * nothing called) for a line of only whitespace. */
static int parse_line(jparser_t *jp, size_t line_pos, size_t eol, member_fn fn, void *ctx,
                      bool *blank)
{
    const unsigned char *b = (const unsigned char *)jp->t->data;
    jp->line_pos = line_pos;
    jp->line = jp->p = b + line_pos;
    jp->end = b + eol;
    if (line_pos == 0 && eol >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF)
        jp->p += 3; /* the UTF-8 BOM */
    skip_ws(jp);
    *blank = jp->p == jp->end;
    if (*blank)
        return 0;
    if (*jp->p != '{')
        return fail_line(jp, "not an object");
    jp->p++;
    skip_ws(jp);
    if (jp->p < jp->end && *jp->p == '}') {
        jp->p++;
    } else {
        for (;;) {
            const char *key;
            size_t klen;
            jvalue_t v;
            int rc;
            skip_ws(jp);
            if (jp->p == jp->end || *jp->p != '"')
                return parse_error(jp, syntax(jp, "expected a key", jp->p), NULL);
            if ((rc = parse_string(jp, &jp->kbuf, &jp->kcap, &key, &klen)) != J_OK)
                return parse_error(jp, rc, NULL);
            skip_ws(jp);
            if (jp->p == jp->end || *jp->p != ':')
                return parse_error(jp, syntax(jp, "expected ':'", jp->p), NULL);
            jp->p++;
            skip_ws(jp);
            if ((rc = parse_value(jp, &v)) != J_OK) {
                char shown[48];
                data_show_value(shown, sizeof(shown), key, klen);
                return parse_error(jp, rc, shown);
            }
            if ((rc = fn(jp, ctx, key, klen, &v)) != 0)
                return rc;
            skip_ws(jp);
            if (jp->p < jp->end && *jp->p == ',') {
                jp->p++;
                continue;
            }
            if (jp->p < jp->end && *jp->p == '}') {
                jp->p++;
                break;
            }
            return parse_error(jp, syntax(jp, "expected ',' or '}'", jp->p), NULL);
        }
    }
    skip_ws(jp);
    if (jp->p != jp->end)
        return parse_error(jp, syntax(jp, "text after the object", jp->p), NULL);
    return 0;
}

/* Calls fn for each object whose line starts in [pos, limit); `after` runs after each one. */
static int for_lines(jparser_t *jp, size_t pos, size_t limit, int64_t max_rows, member_fn fn,
                     int (*after)(jparser_t *jp, void *ctx), void *ctx)
{
    const char *b = jp->t->data;
    size_t n = jp->t->size;
    int64_t rows = 0;
    while (pos < limit && pos < n && rows < max_rows) {
        const char *nl = memchr(b + pos, '\n', n - pos);
        size_t eol = nl != NULL ? (size_t)(nl - b) : n;
        bool blank;
        int rc = parse_line(jp, pos, eol, fn, ctx, &blank);
        if (rc != 0)
            return rc;
        if (!blank) {
            if ((rc = after(jp, ctx)) != 0)
                return rc;
            rows++;
        }
        pos = eol + 1;
    }
    return 0;
}

/* ---- inference ---- */

/* What the sample shows of one key. */
typedef struct {
    int type; /* a dcol_type_t, or -1 while only nulls were seen */
    int ndim;
    int64_t shape[DCOL_MAX_DIMS];
    uint64_t seen;   /* the last row that had the key */
    size_t gap_pos;  /* the line of the first row where it was null or missing */
    bool gap, gap_null;
} jguess_t;

typedef struct {
    jkeys_t keys;
    jguess_t *g;
    int gcap;
    uint64_t row;      /* the current row, from 1 */
    size_t first_line; /* where the first row of the sample starts */
    int last;          /* index of the last key seen, for the next lookup's guess */
    int nseen;         /* keys the current row has given */
} infer_t;

static void note_gap(jguess_t *g, size_t line_pos, bool null)
{
    if (!g->gap) {
        g->gap = true;
        g->gap_pos = line_pos;
        g->gap_null = null;
    }
}

static int infer_member(jparser_t *jp, void *ctx, const char *key, size_t klen, jvalue_t *v)
{
    infer_t *in = ctx;
    char shown[48];
    int i = keys_find(&in->keys, key, klen, in->last + 1);
    if (i < 0) {
        if (klen == 0 || memchr(key, '\0', klen) != NULL) {
            data_show_value(shown, sizeof(shown), key, klen);
            return fail_line(jp, "key '%s' cannot name a column (empty or holding a NUL)",
                             shown);
        }
        if (in->keys.n == in->gcap) {
            int cap = in->gcap ? in->gcap * 2 : 16;
            jguess_t *g = realloc(in->g, (size_t)cap * sizeof(*g));
            if (g == NULL)
                return fail_nomem(jp);
            in->g = g;
            in->gcap = cap;
        }
        if ((i = keys_add(&in->keys, key, klen)) < 0)
            return fail_nomem(jp);
        in->g[i] = (jguess_t){.type = -1};
        if (in->row > 1) /* earlier rows lacked it */
            note_gap(&in->g[i], in->first_line, false);
    }
    in->last = i;
    jguess_t *g = &in->g[i];
    const char *name = in->keys.names[i];
    if (g->seen == in->row)
        return fail_line(jp, "key '%s' appears twice", name);
    g->seen = in->row;
    in->nseen++;
    if (v->kind == JV_NULL) {
        note_gap(g, jp->line_pos, true);
        return 0;
    }
    if (v->kind == JV_OBJECT)
        return fail_line(jp, "key '%s' is an object; nested objects are not supported", name);
    dcol_type_t t = type_of(v);
    if (g->type < 0) {
        g->type = (int)t;
        g->ndim = v->ndim;
        memcpy(g->shape, v->shape, sizeof(g->shape));
        return 0;
    }
    if (g->type == (int)t && t == DCOL_TENSOR &&
        (g->ndim != v->ndim || memcmp(g->shape, v->shape, sizeof(g->shape)) != 0)) {
        char got[96], want[96];
        show_shape(got, sizeof(got), v->ndim, v->shape);
        show_shape(want, sizeof(want), g->ndim, g->shape);
        return fail_line(jp, "key '%s' has shape %s, expected %s", name, got, want);
    }
    if (g->type == (int)t || (g->type == DCOL_FLOAT64 && t == DCOL_INT64))
        return 0;
    if (g->type == DCOL_INT64 && t == DCOL_FLOAT64) {
        g->type = DCOL_FLOAT64;
        return 0;
    }
    return fail_line(jp, "key '%s' is %s, expected %s", name, describe(v),
                     dcol_type_name((dcol_type_t)g->type));
}

static int infer_after(jparser_t *jp, void *ctx)
{
    infer_t *in = ctx;
    if (in->row == 1)
        in->first_line = jp->line_pos;
    if (in->nseen < in->keys.n)
        for (int i = 0; i < in->keys.n; i++)
            if (in->g[i].seen != in->row)
                note_gap(&in->g[i], jp->line_pos, false);
    in->row++;
    in->last = -1;
    in->nseen = 0;
    return 0;
}

/* The sample's verdict on each key into a schema. */
static int infer_finish(jparser_t *jp, infer_t *in, data_schema_t *s)
{
    if (data_schema_init(s, in->keys.n) != 0)
        return fail_nomem(jp);
    for (int i = 0; i < in->keys.n; i++) {
        jguess_t *g = &in->g[i];
        s->names[i] = in->keys.names[i];
        in->keys.names[i] = NULL; /* the schema owns it now */
        if (g->type < 0)
            g->type = DCOL_FLOAT64; /* only nulls: NaN */
        if (g->gap && g->type == DCOL_INT64)
            g->type = DCOL_FLOAT64;
        if (g->gap && g->type != DCOL_FLOAT64) {
            jp->line_pos = g->gap_pos;
            return fail_line(jp, "key '%s' is %s, expected %s", s->names[i],
                             g->gap_null ? "null" : "missing",
                             dcol_type_name((dcol_type_t)g->type));
        }
        s->types[i] = (dcol_type_t)g->type;
        if (g->type == DCOL_TENSOR) {
            s->ndims[i] = g->ndim;
            memcpy(&s->shapes[(size_t)i * DCOL_MAX_DIMS], g->shape, sizeof(g->shape));
        }
    }
    return 0;
}

static void parser_init(jparser_t *jp, const data_text_t *t, char *err, size_t errlen)
{
    memset(jp, 0, sizeof(*jp));
    jp->t = t;
    jp->err = err;
    jp->errlen = errlen;
}

int json_infer_text(const data_text_t *t, int64_t infer_rows, const data_override_t *ov, int nov,
                    data_schema_t *out, char *err, size_t errlen)
{
    jparser_t jp;
    infer_t in = {.row = 1, .last = -1};
    data_schema_t s = {0};
    parser_init(&jp, t, err, errlen);
    int rc = for_lines(&jp, 0, t->size, infer_rows, infer_member, infer_after, &in);
    if (rc != 0)
        goto out;
    if (in.row == 1 || in.keys.n == 0) {
        snprintf(err, errlen, "json_infer: '%s' has no %s", t->name,
                 in.row == 1 ? "rows" : "keys");
        rc = LURAY_EINVAL;
        goto out;
    }
    if ((rc = infer_finish(&jp, &in, &s)) != 0 ||
        (rc = data_schema_override(&s, ov, nov, "json_infer", t->name, err, errlen)) != 0)
        goto out;
    *out = s;
    memset(&s, 0, sizeof(s));
out:
    data_schema_close(&s);
    keys_close(&in.keys);
    free(in.g);
    parser_close(&jp);
    return rc;
}

/* ---- the range reader ---- */

typedef struct {
    const data_schema_t *s;
    jkeys_t keys;
    dcol_builder_t *bs;
    uint64_t *seen; /* per column: the last row that had it */
    uint64_t row;
    int nseen; /* columns the current row has given */
    int last;
} reader_t;

static int mismatch(jparser_t *jp, const reader_t *r, int c, const char *what)
{
    return fail_line(jp, "key '%s' is %s, expected %s", r->s->names[c], what,
                     dcol_type_name(r->bs[c].col.type));
}

static int appended(jparser_t *jp, int rc)
{
    return rc == 0 ? 0 : fail_nomem(jp);
}

/* Appends value v (NULL: the key is missing) to column c. */
static int append_value(jparser_t *jp, reader_t *r, int c, const jvalue_t *v)
{
    dcol_builder_t *b = &r->bs[c];
    jkind_t kind = v != NULL ? v->kind : JV_NULL;
    switch (b->col.type) {
    case DCOL_INT64:
        if (kind == JV_INT)
            return appended(jp, dcol_append_i64(b, v->i));
        if (kind != JV_FLOAT && kind != JV_NULL)
            break;
        /* A float or a missing value: this range's column becomes float64 (concat unifies). */
        dcol_builder_widen_to_f64(b);
        return appended(jp, dcol_append_f64(b, kind == JV_FLOAT ? v->d : NAN));
    case DCOL_FLOAT64:
        if (kind == JV_INT || kind == JV_FLOAT || kind == JV_NULL)
            return appended(jp, dcol_append_f64(b, kind == JV_INT     ? (double)v->i
                                                   : kind == JV_FLOAT ? v->d
                                                                      : NAN));
        break;
    case DCOL_BOOL:
        if (kind == JV_BOOL)
            return appended(jp, dcol_append_bool(b, v->b));
        break;
    case DCOL_STRING:
        if (kind == JV_STRING || kind == JV_INT || kind == JV_FLOAT)
            return appended(jp, dcol_append_str(b, v->s, v->len));
        if (kind == JV_BOOL)
            return appended(jp, dcol_append_str(b, v->b ? "true" : "false", v->b ? 4 : 5));
        break;
    default:
        if (kind != JV_ARRAY)
            break;
        if (v->ndim != b->col.ndim ||
            memcmp(v->shape, b->col.shape, (size_t)v->ndim * sizeof(int64_t)) != 0) {
            char got[96], want[96];
            show_shape(got, sizeof(got), v->ndim, v->shape);
            show_shape(want, sizeof(want), b->col.ndim, b->col.shape);
            return fail_line(jp, "key '%s' has shape %s, expected %s", r->s->names[c], got,
                             want);
        }
        return appended(jp, dcol_append_row_f32(b, jp->fbuf));
    }
    return mismatch(jp, r, c, v == NULL ? "missing" : describe(v));
}

static int read_member(jparser_t *jp, void *ctx, const char *key, size_t klen, jvalue_t *v)
{
    reader_t *r = ctx;
    int c = keys_find(&r->keys, key, klen, r->last + 1);
    if (c < 0) {
        char shown[48];
        data_show_value(shown, sizeof(shown), key, klen);
        return fail_line(jp, "key '%s' is not a column of the schema", shown);
    }
    if (r->seen[c] == r->row)
        return fail_line(jp, "key '%s' appears twice", r->s->names[c]);
    r->seen[c] = r->row;
    r->nseen++;
    r->last = c;
    return append_value(jp, r, c, v);
}

static int read_after(jparser_t *jp, void *ctx)
{
    reader_t *r = ctx;
    if (r->nseen < r->s->ncols)
        for (int c = 0; c < r->s->ncols; c++)
            if (r->seen[c] != r->row) {
                int rc = append_value(jp, r, c, NULL);
                if (rc != 0)
                    return rc;
            }
    r->row++;
    r->nseen = 0;
    r->last = -1;
    return 0;
}

/* Builders and the key index for schema s; 0, or an error code with err set. */
static int reader_init(jparser_t *jp, reader_t *r, const data_schema_t *s)
{
    r->s = s;
    r->row = 1;
    r->last = -1;
    if (s->ncols < 1) {
        snprintf(jp->err, jp->errlen, "read_json: '%s': the schema has no columns", jp->t->name);
        return LURAY_EINVAL;
    }
    r->bs = calloc((size_t)s->ncols, sizeof(*r->bs));
    r->seen = calloc((size_t)s->ncols, sizeof(*r->seen));
    if (r->bs == NULL || r->seen == NULL)
        return fail_nomem(jp);
    for (int c = 0; c < s->ncols; c++) {
        size_t len = strlen(s->names[c]);
        if (keys_find(&r->keys, s->names[c], len, -1) >= 0) {
            snprintf(jp->err, jp->errlen, "read_json: column '%s' appears twice in the schema",
                     s->names[c]);
            return LURAY_EINVAL;
        }
        if (keys_add(&r->keys, s->names[c], len) < 0)
            return fail_nomem(jp);
        const int64_t *shape = &s->shapes[(size_t)c * DCOL_MAX_DIMS];
        if ((unsigned)s->types[c] >= DCOL_NTYPES ||
            dcol_builder_init(&r->bs[c], s->types[c], s->ndims[c], shape) != 0) {
            snprintf(jp->err, jp->errlen, "read_json: column '%s' has a bad type or shape",
                     s->names[c]);
            return LURAY_EINVAL;
        }
    }
    return 0;
}

static void reader_close(reader_t *r)
{
    if (r->bs != NULL)
        for (int c = 0; c < r->s->ncols; c++)
            dcol_builder_free(&r->bs[c]);
    free(r->bs);
    free(r->seen);
    keys_close(&r->keys);
}

int json_read_text(const data_text_t *t, int64_t start, int64_t stop, const data_schema_t *s,
                   dcol_t *cols, char *err, size_t errlen)
{
    jparser_t jp;
    reader_t r = {0};
    parser_init(&jp, t, err, errlen);
    int rc = reader_init(&jp, &r, s);
    if (rc != 0)
        goto out;
    size_t limit = stop < 0 ? 0 : (uint64_t)stop > t->size ? t->size : (size_t)stop;
    size_t pos = data_range_begin(t, start);
    /* Sizing the columns is only a hint (a failure leaves them growing as they go); an object
     * with a key takes at least 7 bytes with its line end: {"k":0} */
    int64_t rows = data_estimate_rows(t, pos, limit, 7);
    for (int c = 0; c < s->ncols; c++)
        dcol_builder_reserve(&r.bs[c], rows);
    rc = for_lines(&jp, pos, limit, INT64_MAX, read_member, read_after, &r);
    if (rc != 0)
        goto out;
    for (int c = 0; c < s->ncols; c++)
        dcol_builder_finish(&r.bs[c], &cols[c]);
out:
    reader_close(&r);
    parser_close(&jp);
    return rc;
}

int json_infer_file(const char *path, int64_t infer_rows, const data_override_t *ov, int nov,
                    data_schema_t *out, char *err, size_t errlen)
{
    data_map_t m;
    int rc = data_map_open(&m, path, "json_infer", err, errlen);
    if (rc != 0)
        return rc;
    rc = json_infer_text(&m.text, infer_rows, ov, nov, out, err, errlen);
    data_map_close(&m);
    return rc;
}

int json_read_file(const char *path, int64_t start, int64_t stop, const data_schema_t *s,
                   dcol_t *cols, char *err, size_t errlen)
{
    data_map_t m;
    int rc = data_map_open(&m, path, "read_json", err, errlen);
    if (rc != 0)
        return rc;
    rc = json_read_text(&m.text, start, stop, s, cols, err, errlen);
    data_map_close(&m);
    return rc;
}
