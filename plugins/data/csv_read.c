/* CSV sources (csv_read.h): an RFC 4180 field scanner, inference and the byte-range reader, plus
 * the schema, file mapping and range helpers shared with the JSON Lines reader. */
#include "csv_read.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "luray/errors.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* ---- shared helpers ---- */

int data_map_open(data_map_t *m, const char *path, const char *what, char *err, size_t errlen)
{
    const char *why = NULL;
    memset(m, 0, sizeof(*m));
    m->text.name = path;
    m->text.data = "";
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        goto err;
    struct stat st;
    if (fstat(fd, &st) != 0)
        goto err_close;
    if (!S_ISREG(st.st_mode)) {
        why = S_ISDIR(st.st_mode) ? strerror(EISDIR) : "not a regular file";
        goto err_close;
    }
    if (st.st_size > 0) {
        void *addr = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (addr == MAP_FAILED)
            goto err_close;
        /* Ranges are read front to back: ask for aggressive read-ahead. */
        madvise(addr, (size_t)st.st_size, MADV_SEQUENTIAL);
        m->addr = addr;
        m->maplen = (size_t)st.st_size;
        m->text.data = addr;
        m->text.size = (size_t)st.st_size;
    }
    close(fd);
    return 0;

err_close:
    if (why == NULL)
        why = strerror(errno);
    close(fd);
err:
    snprintf(err, errlen, "%s: cannot open '%s': %s", what, path,
             why != NULL ? why : strerror(errno));
    return LURAY_EIO;
}

void data_map_close(data_map_t *m)
{
    if (m->addr != NULL)
        munmap(m->addr, m->maplen);
    memset(m, 0, sizeof(*m));
}

int data_schema_init(data_schema_t *s, int ncols)
{
    memset(s, 0, sizeof(*s));
    size_t n = ncols > 0 ? (size_t)ncols : 1;
    s->names = calloc(n, sizeof(*s->names));
    s->types = calloc(n, sizeof(*s->types));
    s->ndims = calloc(n, sizeof(*s->ndims));
    s->shapes = calloc(n * DCOL_MAX_DIMS, sizeof(*s->shapes));
    s->ncols = ncols;
    if (s->names == NULL || s->types == NULL || s->ndims == NULL || s->shapes == NULL) {
        data_schema_close(s);
        return LURAY_ENOMEM;
    }
    return 0;
}

int data_schema_set_name(data_schema_t *s, int col, const char *name, size_t len)
{
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return LURAY_ENOMEM;
    memcpy(copy, name, len);
    copy[len] = '\0';
    free(s->names[col]);
    s->names[col] = copy;
    return 0;
}

void data_schema_close(data_schema_t *s)
{
    if (s->names != NULL)
        for (int i = 0; i < s->ncols; i++)
            free(s->names[i]);
    free(s->names);
    free(s->types);
    free(s->ndims);
    free(s->shapes);
    memset(s, 0, sizeof(*s));
}

/* "a, b, c" (cut short past a few hundred bytes) into out. */
static void list_names(const data_schema_t *s, char *out, size_t outlen)
{
    size_t k = 0;
    out[0] = '\0';
    for (int i = 0; i < s->ncols && k + 1 < outlen; i++) {
        int w = snprintf(out + k, outlen - k, "%s%s", i ? ", " : "", s->names[i]);
        if (w < 0 || (size_t)w >= outlen - k) {
            snprintf(out + (outlen > 4 ? outlen - 4 : 0), outlen > 4 ? 4 : outlen, "...");
            return;
        }
        k += (size_t)w;
    }
}

int data_schema_override(data_schema_t *s, const data_override_t *ov, int nov, const char *what,
                         const char *name, char *err, size_t errlen)
{
    for (int k = 0; k < nov; k++) {
        int i = 0;
        while (i < s->ncols && strcmp(s->names[i], ov[k].name) != 0)
            i++;
        if (i == s->ncols) {
            char cols[256];
            list_names(s, cols, sizeof(cols));
            snprintf(err, errlen, "%s: '%s' has no column '%s' (columns: %s)", what, name,
                     ov[k].name, cols);
            return LURAY_EINVAL;
        }
        if (ov[k].type == DCOL_TENSOR && s->types[i] != DCOL_TENSOR) {
            snprintf(err, errlen, "%s: column '%s' cannot be read as a tensor", what, ov[k].name);
            return LURAY_EINVAL;
        }
        s->types[i] = ov[k].type;
    }
    return 0;
}

size_t data_range_begin(const data_text_t *t, int64_t start)
{
    if (start <= 0)
        return 0;
    if ((uint64_t)start > t->size)
        return t->size;
    const char *nl = memchr(t->data + start - 1, '\n', t->size - (size_t)(start - 1));
    return nl != NULL ? (size_t)(nl - t->data) + 1 : t->size;
}

int64_t data_estimate_rows(const data_text_t *t, size_t pos, size_t limit, size_t min_row)
{
    if (pos >= limit)
        return 0;
    size_t span = limit - pos, sample = span < 65536 ? span : 65536, lines = 0;
    const char *q = t->data + pos, *end = q + sample;
    while ((q = memchr(q, '\n', (size_t)(end - q))) != NULL) {
        lines++;
        q++;
    }
    double rows = (double)span * (double)(lines + 1) / (double)sample + 16;
    double most = (double)span / (double)(min_row > 0 ? min_row : 1) + 16;
    return (int64_t)(rows < most ? rows : most);
}

int64_t data_line_of(const data_text_t *t, size_t pos)
{
    int64_t line = 1;
    const char *p = t->data, *end = t->data + (pos < t->size ? pos : t->size);
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        line++;
        p++;
    }
    return line;
}

void data_show_value(char *out, size_t outlen, const char *s, size_t len)
{
    size_t max = outlen - 4, k = 0;
    for (size_t i = 0; i < len && k < max; i++)
        out[k++] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    if (len > max) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
}

void csv_opts_init(csv_opts_t *o)
{
    o->delimiter = ',';
    o->quote = '"';
    o->header = true;
    o->infer_rows = 10000;
}

int csv_opts_check(const csv_opts_t *o, const char *what, char *err, size_t errlen)
{
    if (o->delimiter < 0 || o->delimiter > 255 || o->delimiter == '\n' || o->delimiter == '\r' ||
        o->delimiter == o->quote) {
        snprintf(err, errlen, "%s: the delimiter must be one byte, not CR, LF or the quote",
                 what);
        return LURAY_EINVAL;
    }
    if (o->quote > 255 || o->quote == '\n' || o->quote == '\r') {
        snprintf(err, errlen, "%s: the quote must be one byte, not CR or LF", what);
        return LURAY_EINVAL;
    }
    return 0;
}

/* ---- the field scanner ---- */

typedef struct {
    const data_text_t *t;
    const unsigned char *b;
    size_t n;
    int delim, quote;
    uint8_t stop[256]; /* bytes that end a run of plain field bytes: delimiter, CR, LF */
    size_t mbase;      /* bit k of mbits: byte mbase + k is a stop byte (64 bytes at a time) */
    uint64_t mbits;
    char *scratch;     /* a quoted field with doubled quotes, undoubled */
    size_t scap;
    size_t errpos; /* where the scanner's last error happened */
    char *err;
    size_t errlen;
} csv_parser_t;

typedef struct {
    const char *s;
    size_t len;
} field_t;

enum {
    FIELD_NEXT = 0,          /* a delimiter followed: more fields in this row */
    FIELD_LAST = 1,          /* the row ended (line end or end of text) */
    FIELD_UNTERMINATED = -1, /* errpos: the opening quote */
    FIELD_AFTER_QUOTE = -2,  /* errpos: the byte after the closing quote */
    FIELD_NOMEM = -3,
};

/* Marks the stop bytes of the 64 bytes from i in mbits. Fields are short, so finding the next
 * stop byte one block at a time (16 bytes per compare) beats both a byte loop and memchr. */
static void load_block(csv_parser_t *p, size_t i)
{
    uint64_t bits = 0;
    size_t k = 0;
#if defined(__SSE2__)
    if (p->n - i >= 64) {
        const __m128i d = _mm_set1_epi8((char)p->delim), lf = _mm_set1_epi8('\n'),
                      cr = _mm_set1_epi8('\r');
        for (; k < 64; k += 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(p->b + i + k));
            __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, d), _mm_cmpeq_epi8(v, lf)),
                                     _mm_cmpeq_epi8(v, cr));
            bits |= (uint64_t)(unsigned)_mm_movemask_epi8(m) << k;
        }
    }
#endif
    for (; k < 64 && i + k < p->n; k++)
        bits |= (uint64_t)p->stop[p->b[i + k]] << k;
    p->mbase = i;
    p->mbits = bits;
}

static void parser_init(csv_parser_t *p, const data_text_t *t, const csv_opts_t *o, char *err,
                        size_t errlen)
{
    memset(p, 0, sizeof(*p));
    p->t = t;
    p->b = (const unsigned char *)t->data;
    p->n = t->size;
    p->delim = o->delimiter;
    p->quote = o->quote;
    p->stop[(unsigned char)o->delimiter] = 1;
    p->stop['\n'] = 1;
    p->stop['\r'] = 1;
    p->err = err;
    p->errlen = errlen;
    load_block(p, 0);
}

static void parser_close(csv_parser_t *p)
{
    free(p->scratch);
    p->scratch = NULL;
}

/* Rewrites a quoted field's content with each doubled quote made single, into the scratch
 * buffer (reused across fields, so no allocation per field once it is large enough). */
static int undouble(csv_parser_t *p, field_t *f)
{
    if (f->len > p->scap) {
        size_t cap = p->scap ? p->scap : 256;
        while (cap < f->len)
            cap *= 2;
        char *s = realloc(p->scratch, cap);
        if (s == NULL)
            return -1;
        p->scratch = s;
        p->scap = cap;
    }
    size_t k = 0;
    for (size_t i = 0; i < f->len; i++) {
        p->scratch[k++] = f->s[i];
        if ((unsigned char)f->s[i] == p->quote)
            i++; /* its double: every quote inside was checked to come in pairs */
    }
    f->s = p->scratch;
    f->len = k;
    return 0;
}

/* What follows a field ending at i: a delimiter, a line end (LF, CRLF, a CR at the very end) or
 * the end of the text. Sets *pos past it; -1 when something else follows. */
static inline int field_end(const csv_parser_t *p, size_t i, size_t *pos)
{
    if (i == p->n) {
        *pos = i;
        return FIELD_LAST;
    }
    unsigned char c = p->b[i];
    if (c == p->delim) {
        *pos = i + 1;
        return FIELD_NEXT;
    }
    if (c == '\n') {
        *pos = i + 1;
        return FIELD_LAST;
    }
    if (c == '\r' && (i + 1 == p->n || p->b[i + 1] == '\n')) {
        *pos = i + 1 == p->n ? i + 1 : i + 2;
        return FIELD_LAST;
    }
    return -1;
}

static int scan_quoted(csv_parser_t *p, size_t *pos, field_t *f)
{
    const unsigned char *b = p->b;
    size_t open = *pos, i = open + 1, close;
    bool doubled = false;
    for (;;) {
        const unsigned char *q = memchr(b + i, p->quote, p->n - i);
        if (q == NULL) {
            p->errpos = open;
            return FIELD_UNTERMINATED;
        }
        close = (size_t)(q - b);
        if (close + 1 < p->n && b[close + 1] == p->quote) {
            doubled = true;
            i = close + 2;
            continue;
        }
        break;
    }
    f->s = (const char *)b + open + 1;
    f->len = close - open - 1;
    if (doubled && undouble(p, f) != 0)
        return FIELD_NOMEM;
    int rc = field_end(p, close + 1, pos);
    if (rc < 0) {
        p->errpos = close + 1;
        return FIELD_AFTER_QUOTE;
    }
    return rc;
}

/* The first stop byte at or after i, or n. */
static inline size_t find_stop(csv_parser_t *p, size_t i)
{
    for (;;) {
        if (i - p->mbase < 64) { /* wraps to a large value when i < mbase */
            uint64_t m = p->mbits >> (i - p->mbase);
            if (m != 0)
                return i + (size_t)__builtin_ctzll(m);
            i = p->mbase + 64;
        }
        if (i >= p->n)
            return p->n;
        load_block(p, i);
    }
}

/* The field at *pos; leaves *pos past its delimiter or line end. A quote inside an unquoted field
 * is taken as a plain byte, as most writers and readers do. */
static inline int scan_field(csv_parser_t *p, size_t *pos, field_t *f)
{
    size_t i = *pos;
    if (i < p->n && p->b[i] == p->quote)
        return scan_quoted(p, pos, f);
    f->s = (const char *)p->b + i;
    for (;;) {
        i = find_stop(p, i);
        int rc = field_end(p, i, pos);
        if (rc >= 0) {
            f->len = i - (size_t)((const unsigned char *)f->s - p->b);
            return rc;
        }
        i++; /* a CR not ending the line is data */
    }
}

/* Scans the remaining fields of a row, counting them into *nfields. */
static int skip_row(csv_parser_t *p, size_t *pos, int *nfields)
{
    field_t f;
    int rc;
    do {
        rc = scan_field(p, pos, &f);
        if (rc < 0)
            return rc;
        (*nfields)++;
    } while (rc == FIELD_NEXT);
    return 0;
}

/* A blank line at pos (LF or CRLF alone): its length, else 0. */
static inline size_t blank_line(const csv_parser_t *p, size_t pos)
{
    if (p->b[pos] == '\n')
        return 1;
    if (p->b[pos] == '\r' && (pos + 1 == p->n || p->b[pos + 1] == '\n'))
        return pos + 1 == p->n ? 1 : 2;
    return 0;
}

static bool has_bom(const csv_parser_t *p)
{
    return p->n >= 3 && p->b[0] == 0xEF && p->b[1] == 0xBB && p->b[2] == 0xBF;
}

/* Past the BOM and any blank lines at the start: where the first row (the header) begins. */
static size_t first_row(const csv_parser_t *p)
{
    size_t pos = has_bom(p) ? 3 : 0, k;
    while (pos < p->n && (k = blank_line(p, pos)) > 0)
        pos += k;
    return pos;
}

/* ---- errors ---- */

/* "name:LINE: " or "name:LINE, column 'x': " then the message; returns LURAY_EINVAL. */
static int fail_at(csv_parser_t *p, size_t pos, const char *col, const char *fmt, ...)
{
    long long line = (long long)data_line_of(p->t, pos);
    int k = col != NULL ? snprintf(p->err, p->errlen, "%s:%lld, column '%s': ", p->t->name, line,
                                   col)
                        : snprintf(p->err, p->errlen, "%s:%lld: ", p->t->name, line);
    if (k >= 0 && (size_t)k < p->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err + k, p->errlen - (size_t)k, fmt, ap);
        va_end(ap);
    }
    return LURAY_EINVAL;
}

static int fail_nomem(csv_parser_t *p)
{
    snprintf(p->err, p->errlen, "%s: out of memory", p->t->name);
    return LURAY_ENOMEM;
}

static int field_error(csv_parser_t *p, int rc, const char *col)
{
    if (rc == FIELD_NOMEM)
        return fail_nomem(p);
    if (rc == FIELD_UNTERMINATED)
        return fail_at(p, p->errpos, NULL, "unterminated quoted field");
    return fail_at(p, p->errpos, col, "text after closing quote");
}

/* A row of the wrong width: counts its remaining fields (from pos) for the message. */
static int ragged(csv_parser_t *p, size_t row, size_t pos, int seen, bool more, int expected)
{
    if (more) {
        int rc = skip_row(p, &pos, &seen);
        if (rc < 0)
            return field_error(p, rc, NULL);
    }
    return fail_at(p, row, NULL, "%d field%s, expected %d", seen, seen == 1 ? "" : "s",
                   expected);
}

static const char *article(dcol_type_t type)
{
    return type == DCOL_INT64 ? "an" : "a";
}

/* ---- inference ---- */

/* What the sample has shown about one column. */
typedef struct {
    bool can_int, can_float, can_bool;
} guess_t;

static void guess_update(guess_t *g, const field_t *f)
{
    int64_t i;
    double d;
    bool b;
    if (g->can_int && dcol_parse_i64(f->s, f->len, &i) != 0)
        g->can_int = false;
    if (!g->can_int && g->can_float && dcol_parse_f64(f->s, f->len, &d) != 0)
        g->can_float = false;
    if (g->can_bool && dcol_parse_bool(f->s, f->len, &b) != 0)
        g->can_bool = false;
}

static dcol_type_t guess_type(const guess_t *g, int64_t rows)
{
    if (rows == 0)
        return DCOL_STRING;
    if (g->can_int)
        return DCOL_INT64;
    if (g->can_float)
        return DCOL_FLOAT64;
    return g->can_bool ? DCOL_BOOL : DCOL_STRING;
}

static bool name_taken(const data_schema_t *s, int upto, const char *name)
{
    for (int i = 0; i < upto; i++)
        if (strcmp(s->names[i], name) == 0)
            return true;
    return false;
}

/* Empty names become column<i>; a repeated name gets the first free suffix _1, _2, ... */
static int fix_names(data_schema_t *s)
{
    char buf[64];
    for (int i = 0; i < s->ncols; i++) {
        if (s->names[i][0] == '\0') {
            snprintf(buf, sizeof(buf), "column%d", i + 1);
            if (data_schema_set_name(s, i, buf, strlen(buf)) != 0)
                return LURAY_ENOMEM;
        }
        if (!name_taken(s, i, s->names[i]))
            continue;
        size_t len = strlen(s->names[i]);
        char *alt = malloc(len + 24);
        if (alt == NULL)
            return LURAY_ENOMEM;
        for (int k = 1;; k++) {
            snprintf(alt, len + 24, "%s_%d", s->names[i], k);
            if (!name_taken(s, i, alt))
                break;
        }
        free(s->names[i]);
        s->names[i] = alt;
    }
    return 0;
}

/* A growable list of names while the first row is scanned. */
typedef struct {
    char **v;
    int n, cap;
} names_t;

static int names_push(names_t *l, const char *s, size_t len)
{
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 16;
        char **v = realloc(l->v, (size_t)cap * sizeof(*v));
        if (v == NULL)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return -1;
    memcpy(copy, s, len);
    copy[len] = '\0';
    l->v[l->n++] = copy;
    return 0;
}

static void names_free(names_t *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

/* Scans the first row at *pos into a schema: its fields as names, or column1.. when there is no
 * header (then *pos stays, as the row is data). */
static int read_first_row(csv_parser_t *p, size_t *pos, bool header, data_schema_t *s)
{
    names_t l = {0};
    size_t at = *pos;
    field_t f;
    int rc, err = 0;
    do {
        rc = scan_field(p, &at, &f);
        if (rc < 0) {
            err = field_error(p, rc, NULL);
            goto out;
        }
        if (names_push(&l, header ? f.s : "", header ? f.len : 0) != 0) {
            err = fail_nomem(p);
            goto out;
        }
    } while (rc == FIELD_NEXT);
    if (data_schema_init(s, l.n) != 0) {
        err = fail_nomem(p);
        goto out;
    }
    memcpy(s->names, l.v, (size_t)l.n * sizeof(*l.v));
    l.n = 0; /* the schema owns them now */
    if (fix_names(s) != 0) {
        err = fail_nomem(p);
        goto out;
    }
    if (header)
        *pos = at;
out:
    names_free(&l);
    return err;
}

int csv_infer_text(const data_text_t *t, const csv_opts_t *o, const data_override_t *ov, int nov,
                   data_schema_t *out, char *err, size_t errlen)
{
    csv_parser_t p;
    data_schema_t s = {0};
    guess_t *g = NULL;
    int rc = csv_opts_check(o, "csv_infer", err, errlen);
    if (rc != 0)
        return rc;
    parser_init(&p, t, o, err, errlen);
    size_t pos = first_row(&p), k;
    if (pos == p.n) {
        snprintf(err, errlen, "csv_infer: '%s' has no rows", t->name);
        rc = LURAY_EINVAL;
        goto out;
    }
    if ((rc = read_first_row(&p, &pos, o->header, &s)) != 0)
        goto out;
    g = malloc((size_t)s.ncols * sizeof(*g));
    if (g == NULL) {
        rc = fail_nomem(&p);
        goto out;
    }
    for (int c = 0; c < s.ncols; c++)
        g[c] = (guess_t){true, true, true};
    int64_t rows = 0;
    while (pos < p.n && rows < o->infer_rows) {
        if ((k = blank_line(&p, pos)) > 0) {
            pos += k;
            continue;
        }
        size_t row = pos;
        field_t f;
        int c = 0, frc = FIELD_NEXT;
        while (frc == FIELD_NEXT && c < s.ncols) {
            if ((frc = scan_field(&p, &pos, &f)) < 0) {
                rc = field_error(&p, frc, s.names[c]);
                goto out;
            }
            guess_update(&g[c++], &f);
        }
        if (c < s.ncols || frc == FIELD_NEXT) {
            rc = ragged(&p, row, pos, c, frc == FIELD_NEXT, s.ncols);
            goto out;
        }
        rows++;
    }
    for (int c = 0; c < s.ncols; c++)
        s.types[c] = guess_type(&g[c], rows);
    if ((rc = data_schema_override(&s, ov, nov, "csv_infer", t->name, err, errlen)) != 0)
        goto out;
    *out = s;
    memset(&s, 0, sizeof(s));
out:
    free(g);
    data_schema_close(&s);
    parser_close(&p);
    return rc;
}

/* ---- the range reader ---- */

enum { APPEND_OK = 0, APPEND_BAD = 1, APPEND_NOMEM = 2 };

/* padded: the field lies inside the text with 16 more bytes after it, so the number parsers may
 * read eight bytes at a time in place. */
static inline int append_field(dcol_builder_t *b, const field_t *f, bool padded)
{
    switch (b->col.type) {
    case DCOL_INT64: {
        int64_t v;
        double d;
        if ((padded ? dcol_parse_i64_padded(f->s, f->len, &v) : dcol_parse_i64(f->s, f->len, &v)) ==
            0)
            return dcol_append_i64(b, v) == 0 ? APPEND_OK : APPEND_NOMEM;
        if (dcol_parse_f64(f->s, f->len, &d) != 0)
            return APPEND_BAD;
        /* A float (or a missing value) in an int column: the column becomes float64 here and
         * concatenation unifies the ranges. */
        dcol_builder_widen_to_f64(b);
        return dcol_append_f64(b, d) == 0 ? APPEND_OK : APPEND_NOMEM;
    }
    case DCOL_FLOAT64: {
        double d;
        if ((padded ? dcol_parse_f64_padded(f->s, f->len, &d) : dcol_parse_f64(f->s, f->len, &d)) !=
            0)
            return APPEND_BAD;
        return dcol_append_f64(b, d) == 0 ? APPEND_OK : APPEND_NOMEM;
    }
    case DCOL_BOOL: {
        bool v;
        if (dcol_parse_bool(f->s, f->len, &v) != 0)
            return APPEND_BAD;
        return dcol_append_bool(b, v) == 0 ? APPEND_OK : APPEND_NOMEM;
    }
    default:
        return dcol_append_str(b, f->s, f->len) == 0 ? APPEND_OK : APPEND_NOMEM;
    }
}

static int value_error(csv_parser_t *p, int rc, size_t pos, const char *col, const field_t *f,
                       dcol_type_t type)
{
    if (rc == APPEND_NOMEM)
        return fail_nomem(p);
    char shown[48];
    data_show_value(shown, sizeof(shown), f->s, f->len);
    return fail_at(p, pos, col, "\"%s\" is not %s %s", shown, article(type), dcol_type_name(type));
}

/* Sizes the builders for the rows the range probably holds, so that large columns are not copied
 * over and over as they grow. Only a hint: a row takes at least a byte per column (delimiters
 * and its line end), and a reservation that fails leaves the builders growing as they go. */
static void reserve_rows(csv_parser_t *p, size_t pos, size_t limit, const data_schema_t *s,
                         dcol_builder_t *bs)
{
    int64_t rows = data_estimate_rows(p->t, pos, limit, (size_t)s->ncols);
    for (int c = 0; c < s->ncols; c++)
        dcol_builder_reserve(&bs[c], rows);
}

/* Reads rows starting before limit from pos on into the builders. */
static int read_rows(csv_parser_t *p, size_t pos, size_t limit, const data_schema_t *s,
                     dcol_builder_t *bs)
{
    const int ncols = s->ncols;
    size_t k;
    while (pos < limit && pos < p->n) {
        if ((k = blank_line(p, pos)) > 0) {
            pos += k;
            continue;
        }
        size_t row = pos;
        for (int c = 0; c < ncols; c++) {
            field_t f;
            size_t at = pos;
            int rc = scan_field(p, &pos, &f);
            if (rc < 0)
                return field_error(p, rc, s->names[c]);
            if ((rc == FIELD_LAST) != (c + 1 == ncols))
                return ragged(p, row, pos, c + 1, rc == FIELD_NEXT, ncols);
            bool padded = (const unsigned char *)f.s >= p->b &&
                          (const unsigned char *)f.s + f.len + 16 <= p->b + p->n;
            if ((rc = append_field(&bs[c], &f, padded)) != APPEND_OK)
                return value_error(p, rc, at, s->names[c], &f, bs[c].col.type);
        }
    }
    return 0;
}

/* Checks a schema a caller handed in: CSV has no tensors, and every column needs a name. */
static int check_schema(const data_schema_t *s, const char *name, char *err, size_t errlen)
{
    if (s->ncols < 1) {
        snprintf(err, errlen, "read_csv: '%s': the schema has no columns", name);
        return LURAY_EINVAL;
    }
    for (int c = 0; c < s->ncols; c++)
        if (s->types[c] == DCOL_TENSOR || (unsigned)s->types[c] >= DCOL_NTYPES) {
            snprintf(err, errlen, "read_csv: column '%s' cannot be read from CSV as %s",
                     s->names[c], dcol_type_name(s->types[c]) ? dcol_type_name(s->types[c])
                                                              : "this type");
            return LURAY_EINVAL;
        }
    return 0;
}

int csv_read_text(const data_text_t *t, int64_t start, int64_t stop, const data_schema_t *s,
                  const csv_opts_t *o, dcol_t *cols, char *err, size_t errlen)
{
    csv_parser_t p;
    int rc = csv_opts_check(o, "read_csv", err, errlen);
    if (rc != 0 || (rc = check_schema(s, t->name, err, errlen)) != 0)
        return rc;
    dcol_builder_t *bs = calloc((size_t)s->ncols, sizeof(*bs));
    if (bs == NULL) {
        snprintf(err, errlen, "%s: out of memory", t->name);
        return LURAY_ENOMEM;
    }
    parser_init(&p, t, o, err, errlen);
    int c;
    for (c = 0; c < s->ncols; c++)
        if (dcol_builder_init(&bs[c], s->types[c], 0, NULL) != 0) {
            rc = fail_nomem(&p);
            goto out;
        }
    size_t limit = stop < 0 ? 0 : (uint64_t)stop > p.n ? p.n : (size_t)stop;
    size_t pos = data_range_begin(t, start);
    if (o->header) {
        /* The header row never counts as data, whichever range it falls in. */
        size_t data_start = first_row(&p);
        if (data_start < p.n) {
            int nf = 0;
            if ((rc = skip_row(&p, &data_start, &nf)) < 0) {
                rc = field_error(&p, rc, NULL);
                goto out;
            }
        }
        if (pos < data_start)
            pos = data_start;
    } else if (pos == 0 && has_bom(&p)) {
        /* The BOM belongs to the row starting at byte 0: it is this range's when 0 < stop. */
        pos = 3;
        if (limit > 0 && limit < 4)
            limit = 4;
    }
    reserve_rows(&p, pos, limit, s, bs);
    if ((rc = read_rows(&p, pos, limit, s, bs)) != 0)
        goto out;
    for (c = 0; c < s->ncols; c++)
        dcol_builder_finish(&bs[c], &cols[c]);
out:
    for (c = 0; c < s->ncols; c++)
        dcol_builder_free(&bs[c]);
    free(bs);
    parser_close(&p);
    return rc;
}

int csv_infer_file(const char *path, const csv_opts_t *o, const data_override_t *ov, int nov,
                   data_schema_t *out, char *err, size_t errlen)
{
    data_map_t m;
    int rc = data_map_open(&m, path, "csv_infer", err, errlen);
    if (rc != 0)
        return rc;
    rc = csv_infer_text(&m.text, o, ov, nov, out, err, errlen);
    data_map_close(&m);
    return rc;
}

int csv_read_file(const char *path, int64_t start, int64_t stop, const data_schema_t *s,
                  const csv_opts_t *o, dcol_t *cols, char *err, size_t errlen)
{
    data_map_t m;
    int rc = data_map_open(&m, path, "read_csv", err, errlen);
    if (rc != 0)
        return rc;
    rc = csv_read_text(&m.text, start, stop, s, o, cols, err, errlen);
    data_map_close(&m);
    return rc;
}
