/* safetensors files: the header parser with every check the Python reader makes (so that what
 * loads here loads there), and the writer (JSON built by hand: exact integers, name order, and
 * the padding), going through a temporary file and a rename. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "luray/errors.h"

#define MAX_EXACT 9007199254740992.0 /* 2^53: JSON numbers above it are not exact in cJSON */

static const struct {
    const char *name;
    int dtype;
    size_t size;
} dtypes[] = {
    {"F32", LURAY_DTYPE_FLOAT32, 4}, {"F64", LURAY_DTYPE_FLOAT64, 8},
    {"I32", LURAY_DTYPE_INT32, 4},   {"I64", LURAY_DTYPE_INT64, 8},
    {"U8", LURAY_DTYPE_UINT8, 1},    {"BOOL", LURAY_DTYPE_BOOL, 1},
};
#define NDTYPES (sizeof dtypes / sizeof dtypes[0])

static void errf(char *err, size_t errlen, const char *file, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void errf(char *err, size_t errlen, const char *file, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (!err || errlen == 0)
        return;
    n = snprintf(err, errlen, "safetensors file '%s': ", file);
    if (n < 0 || (size_t)n >= errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

int safetensors_dtype_parse(const char *name)
{
    for (size_t i = 0; i < NDTYPES; i++)
        if (strcmp(name, dtypes[i].name) == 0)
            return dtypes[i].dtype;
    return -1;
}

const char *safetensors_dtype_name(int dtype)
{
    for (size_t i = 0; i < NDTYPES; i++)
        if (dtypes[i].dtype == dtype)
            return dtypes[i].name;
    return NULL;
}

static size_t dtype_size(int dtype)
{
    for (size_t i = 0; i < NDTYPES; i++)
        if (dtypes[i].dtype == dtype)
            return dtypes[i].size;
    return 0;
}

/* Whether s[0..len) is well-formed UTF-8 without NUL bytes (what a Rust str holds, minus NUL,
 * which cJSON cannot carry). */
static bool utf8_ok(const uint8_t *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        uint8_t c = s[i];
        size_t n;
        uint32_t cp;

        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (len - i <= n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return false;
        i += n + 1;
    }
    return true;
}

/* ---- parsing ---- */

void safetensors_header_close(safetensors_header_t *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->count; i++)
        free(h->entries[i].name);
    for (size_t i = 0; i < h->nmeta; i++) {
        free(h->meta[i].key);
        free(h->meta[i].value);
    }
    free(h->entries);
    free(h->meta);
    memset(h, 0, sizeof *h);
}

/* A JSON number that is a whole number in [0, 2^53]. */
static bool json_uint(const cJSON *j, uint64_t *v)
{
    double d;

    if (!cJSON_IsNumber(j))
        return false;
    d = j->valuedouble;
    if (!(d >= 0 && d <= MAX_EXACT) || d != (double)(uint64_t)d)
        return false;
    *v = (uint64_t)d;
    return true;
}

static int parse_meta(const char *file, const cJSON *j, safetensors_header_t *h, char *err,
                      size_t errlen)
{
    const cJSON *kv;
    size_t n = 0;

    if (!cJSON_IsObject(j)) {
        errf(err, errlen, file, "__metadata__ is not an object of strings");
        return LURAY_EPROTO;
    }
    for (kv = j->child; kv; kv = kv->next)
        n++;
    h->meta = calloc(n ? n : 1, sizeof *h->meta);
    if (!h->meta)
        return LURAY_ENOMEM;
    for (kv = j->child; kv; kv = kv->next) {
        safetensors_meta_t *m = &h->meta[h->nmeta];

        if (!cJSON_IsString(kv)) {
            errf(err, errlen, file, "__metadata__ value of '%s' is not a string", kv->string);
            return LURAY_EPROTO;
        }
        m->key = strdup(kv->string);
        m->value = strdup(kv->valuestring);
        h->nmeta++;
        if (!m->key || !m->value)
            return LURAY_ENOMEM;
    }
    return 0;
}

static int parse_entry(const char *file, const cJSON *j, uint64_t data_size,
                       safetensors_entry_t *e, char *err, size_t errlen)
{
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(j, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
    uint64_t numel = 1, dim, need;
    const cJSON *d;

    if (!cJSON_IsObject(j)) {
        errf(err, errlen, file, "tensor '%s': its entry is not an object", e->name);
        return LURAY_EPROTO;
    }
    if (!cJSON_IsString(dt)) {
        errf(err, errlen, file, "tensor '%s': no dtype string", e->name);
        return LURAY_EPROTO;
    }
    e->dtype = safetensors_dtype_parse(dt->valuestring);
    if (e->dtype < 0) {
        errf(err, errlen, file, "tensor '%s': dtype '%s' is not supported (F32, F64, I32, I64, "
             "U8 and BOOL are)", e->name, dt->valuestring);
        return LURAY_EPROTO;
    }
    if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) > LURAY_TENSOR_MAX_DIMS) {
        errf(err, errlen, file, "tensor '%s': shape is not a list of at most %d integers",
             e->name, LURAY_TENSOR_MAX_DIMS);
        return LURAY_EPROTO;
    }
    for (d = shape->child; d; d = d->next) {
        if (!json_uint(d, &dim)) {
            errf(err, errlen, file, "tensor '%s': shape holds something other than a "
                 "non-negative integer", e->name);
            return LURAY_EPROTO;
        }
        if (dim && numel > UINT64_MAX / 8 / dim) {
            errf(err, errlen, file, "tensor '%s': shape too large", e->name);
            return LURAY_EPROTO;
        }
        numel *= dim;
        e->shape[e->ndim++] = (int64_t)dim;
    }
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
        !json_uint(offs->child, &e->begin) || !json_uint(offs->child->next, &e->end)) {
        errf(err, errlen, file, "tensor '%s': data_offsets is not a list of two non-negative "
             "integers", e->name);
        return LURAY_EPROTO;
    }
    if (e->begin > e->end || e->end > data_size) {
        errf(err, errlen, file, "tensor '%s': data_offsets [%llu, %llu] are out of range (the "
             "data is %llu bytes)", e->name, (unsigned long long)e->begin,
             (unsigned long long)e->end, (unsigned long long)data_size);
        return LURAY_EPROTO;
    }
    need = numel * dtype_size(e->dtype);
    if (e->end - e->begin != need) {
        errf(err, errlen, file, "tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, its "
             "shape and dtype need %llu", e->name, (unsigned long long)e->begin,
             (unsigned long long)e->end, (unsigned long long)(e->end - e->begin),
             (unsigned long long)need);
        return LURAY_EPROTO;
    }
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const safetensors_entry_t *)a)->name, ((const safetensors_entry_t *)b)->name);
}

static int by_key(const void *a, const void *b)
{
    return strcmp(((const safetensors_meta_t *)a)->key, ((const safetensors_meta_t *)b)->key);
}

static int by_range(const void *a, const void *b)
{
    const safetensors_entry_t *x = *(const safetensors_entry_t *const *)a;
    const safetensors_entry_t *y = *(const safetensors_entry_t *const *)b;

    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* Names unique; ranges neither overlap nor leave a byte of the data to no tensor. */
static int check_layout(const char *file, safetensors_header_t *h, uint64_t data_size,
                        char *err, size_t errlen)
{
    safetensors_entry_t **order;
    uint64_t at = 0;
    int rc = 0;

    if (h->count)
        qsort(h->entries, h->count, sizeof *h->entries, by_name);
    if (h->nmeta)
        qsort(h->meta, h->nmeta, sizeof *h->meta, by_key);
    for (size_t i = 1; i < h->count; i++) {
        if (strcmp(h->entries[i - 1].name, h->entries[i].name) == 0) {
            errf(err, errlen, file, "tensor '%s' appears twice", h->entries[i].name);
            return LURAY_EPROTO;
        }
    }
    for (size_t i = 1; i < h->nmeta; i++) {
        if (strcmp(h->meta[i - 1].key, h->meta[i].key) == 0) {
            errf(err, errlen, file, "__metadata__ key '%s' appears twice", h->meta[i].key);
            return LURAY_EPROTO;
        }
    }
    order = malloc((h->count ? h->count : 1) * sizeof *order);
    if (!order)
        return LURAY_ENOMEM;
    for (size_t i = 0; i < h->count; i++)
        order[i] = &h->entries[i];
    qsort(order, h->count, sizeof *order, by_range);
    for (size_t i = 0; i < h->count && rc == 0; i++) {
        if (order[i]->begin < at) {
            errf(err, errlen, file, "tensors '%s' and '%s' overlap", order[i - 1]->name,
                 order[i]->name);
            rc = LURAY_EPROTO;
        } else if (order[i]->begin > at) {
            errf(err, errlen, file, "bytes %llu to %llu of the data belong to no tensor",
                 (unsigned long long)at, (unsigned long long)order[i]->begin);
            rc = LURAY_EPROTO;
        }
        at = order[i]->end;
    }
    if (rc == 0 && at != data_size) {
        errf(err, errlen, file, "bytes %llu to %llu of the data belong to no tensor",
             (unsigned long long)at, (unsigned long long)data_size);
        rc = LURAY_EPROTO;
    }
    free(order);
    return rc;
}

static int parse_object(const char *file, const cJSON *root, uint64_t data_size,
                        safetensors_header_t *h, char *err, size_t errlen)
{
    const cJSON *j;
    size_t n = 0;
    int rc;

    for (j = root->child; j; j = j->next)
        n++;
    h->entries = calloc(n ? n : 1, sizeof *h->entries);
    if (!h->entries)
        return LURAY_ENOMEM;
    for (j = root->child; j; j = j->next) {
        safetensors_entry_t *e;

        if (strcmp(j->string, "__metadata__") == 0) {
            if (h->meta) {
                errf(err, errlen, file, "__metadata__ appears twice");
                return LURAY_EPROTO;
            }
            if ((rc = parse_meta(file, j, h, err, errlen)) < 0)
                return rc;
            continue;
        }
        e = &h->entries[h->count++];
        if (!(e->name = strdup(j->string)))
            return LURAY_ENOMEM;
        if ((rc = parse_entry(file, j, data_size, e, err, errlen)) < 0)
            return rc;
    }
    return check_layout(file, h, data_size, err, errlen);
}

int safetensors_parse(const char *file, const uint8_t *bytes, size_t size,
                      safetensors_header_t *h, char *err, size_t errlen)
{
    const char *json, *end = NULL;
    uint64_t hlen = 0;
    cJSON *root;
    int rc;

    memset(h, 0, sizeof *h);
    if (size < 8) {
        errf(err, errlen, file, "too short for a safetensors file (%zu bytes)", size);
        return LURAY_EPROTO;
    }
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)bytes[i] << (8 * i);
    if (hlen > SAFETENSORS_HEADER_MAX) {
        errf(err, errlen, file, "header length %llu is over the limit of %u bytes",
             (unsigned long long)hlen, SAFETENSORS_HEADER_MAX);
        return LURAY_EPROTO;
    }
    if (hlen > size - 8) {
        errf(err, errlen, file, "header length %llu runs past the end of the file (%zu bytes)",
             (unsigned long long)hlen, size);
        return LURAY_EPROTO;
    }
    json = (const char *)bytes + 8;
    if (hlen == 0 || json[0] != '{') {
        errf(err, errlen, file, "the header does not start with '{'");
        return LURAY_EPROTO;
    }
    if (!utf8_ok((const uint8_t *)json, hlen)) {
        errf(err, errlen, file, "the header is not valid UTF-8 text");
        return LURAY_EPROTO;
    }
    root = cJSON_ParseWithLengthOpts(json, hlen, &end, false);
    if (!root) {
        errf(err, errlen, file, "the header is not valid JSON (at byte %zu of it)",
             end && end >= json ? (size_t)(end - json) : (size_t)0);
        return LURAY_EPROTO;
    }
    if (!cJSON_IsObject(root)) {
        errf(err, errlen, file, "the header is not a JSON object");
        rc = LURAY_EPROTO;
        goto out;
    }
    for (const char *p = end; p < json + hlen; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            errf(err, errlen, file, "the header has bytes after its JSON object");
            rc = LURAY_EPROTO;
            goto out;
        }
    }
    h->data_start = 8 + hlen;
    rc = parse_object(file, root, size - h->data_start, h, err, errlen);
out:
    cJSON_Delete(root);
    if (rc < 0) {
        if (rc == LURAY_ENOMEM)
            errf(err, errlen, file, "out of memory");
        safetensors_header_close(h);
    }
    return rc;
}

/* ---- writing ---- */

typedef struct {
    char *p;
    size_t len, cap;
    bool failed;
} jbuf_t;

static void jb_add(jbuf_t *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *p;

        while (b->len + n + 1 > cap)
            cap *= 2;
        if (!(p = realloc(b->p, cap))) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void jb_str(jbuf_t *b, const char *s)
{
    jb_add(b, s, strlen(s));
}

static void jb_fmt(jbuf_t *b, const char *fmt, unsigned long long v)
{
    char num[32];
    int n = snprintf(num, sizeof num, fmt, v);

    jb_add(b, num, (size_t)n);
}

/* A JSON string: quotes, backslashes and control characters escaped, UTF-8 passed through. */
static void jb_quoted(jbuf_t *b, const char *s)
{
    char esc[8];

    jb_add(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            jb_add(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            jb_add(b, esc, 6);
        } else {
            jb_add(b, (const char *)&c, 1);
        }
    }
    jb_add(b, "\"", 1);
}

static int by_tensor_name(const void *a, const void *b)
{
    return strcmp((*(const safetensors_tensor_t *const *)a)->name,
                  (*(const safetensors_tensor_t *const *)b)->name);
}

static uint64_t tensor_bytes(const safetensors_tensor_t *t)
{
    uint64_t n = dtype_size(t->dtype);

    for (int d = 0; d < t->ndim; d++)
        n *= (uint64_t)t->shape[d];
    return n;
}

static int check_tensor(const char *path, const safetensors_tensor_t *t, char *err,
                        size_t errlen)
{
    uint64_t numel = 1;

    if (!t->name || !t->name[0] || strcmp(t->name, "__metadata__") == 0 ||
        !utf8_ok((const uint8_t *)t->name, strlen(t->name))) {
        errf(err, errlen, path, "tensor name \"%s\" is not allowed (non-empty UTF-8, not "
             "__metadata__)", t->name ? t->name : "");
        return LURAY_EINVAL;
    }
    if (!safetensors_dtype_name(t->dtype) || t->ndim < 0 || t->ndim > LURAY_TENSOR_MAX_DIMS) {
        errf(err, errlen, path, "tensor '%s': bad dtype or number of dimensions", t->name);
        return LURAY_EINVAL;
    }
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0 || (t->shape[d] && numel > UINT64_MAX / 8 / (uint64_t)t->shape[d])) {
            errf(err, errlen, path, "tensor '%s': bad shape", t->name);
            return LURAY_EINVAL;
        }
        numel *= (uint64_t)t->shape[d];
    }
    return 0;
}

/* The header: JSON with __metadata__ first, then the tensors in name order, spaces after it so
 * that the data starts at a multiple of 8. */
static int build_header(const char *path, const safetensors_tensor_t *const *order, size_t count,
                        const safetensors_meta_t *meta, size_t nmeta, jbuf_t *b, char *err,
                        size_t errlen)
{
    uint64_t at = 0;

    jb_add(b, "{", 1);
    if (nmeta) {
        jb_str(b, "\"__metadata__\":{");
        for (size_t i = 0; i < nmeta; i++) {
            if (!meta[i].key || !meta[i].value ||
                !utf8_ok((const uint8_t *)meta[i].key, strlen(meta[i].key)) ||
                !utf8_ok((const uint8_t *)meta[i].value, strlen(meta[i].value))) {
                errf(err, errlen, path, "metadata must be UTF-8 strings");
                return LURAY_EINVAL;
            }
            if (i)
                jb_add(b, ",", 1);
            jb_quoted(b, meta[i].key);
            jb_add(b, ":", 1);
            jb_quoted(b, meta[i].value);
        }
        jb_add(b, "}", 1);
    }
    for (size_t i = 0; i < count; i++) {
        const safetensors_tensor_t *t = order[i];
        uint64_t n = tensor_bytes(t);

        if (i || nmeta)
            jb_add(b, ",", 1);
        jb_quoted(b, t->name);
        jb_str(b, ":{\"dtype\":\"");
        jb_str(b, safetensors_dtype_name(t->dtype));
        jb_str(b, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++)
            jb_fmt(b, d ? ",%llu" : "%llu", (unsigned long long)t->shape[d]);
        jb_fmt(b, "],\"data_offsets\":[%llu,", (unsigned long long)at);
        at += n;
        jb_fmt(b, "%llu]}", (unsigned long long)at);
    }
    jb_add(b, "}", 1);
    while (!b->failed && b->len % 8)
        jb_add(b, " ", 1);
    if (b->failed) {
        errf(err, errlen, path, "out of memory");
        return LURAY_ENOMEM;
    }
    if (b->len > SAFETENSORS_HEADER_MAX) {
        errf(err, errlen, path, "the header would be over %u bytes", SAFETENSORS_HEADER_MAX);
        return LURAY_ETOOBIG;
    }
    return 0;
}

static int write_all(int fd, const void *p, uint64_t n)
{
    const uint8_t *s = p;

    while (n) {
        ssize_t w = write(fd, s, n > (1u << 30) ? (1u << 30) : (size_t)n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (uint64_t)w;
    }
    return 0;
}

int safetensors_write(const char *path, const safetensors_tensor_t *tensors, size_t count,
                      const safetensors_meta_t *meta, size_t nmeta, char *err, size_t errlen)
{
    static unsigned long seq;
    const safetensors_tensor_t **order;
    jbuf_t b = {0};
    uint8_t len8[8];
    char *tmp;
    int fd, rc;

    order = malloc((count ? count : 1) * sizeof *order);
    tmp = malloc(strlen(path) + 64);
    if (!order || !tmp) {
        errf(err, errlen, path, "out of memory");
        rc = LURAY_ENOMEM;
        goto err_free;
    }
    for (size_t i = 0; i < count; i++) {
        if ((rc = check_tensor(path, &tensors[i], err, errlen)) < 0)
            goto err_free;
        order[i] = &tensors[i];
    }
    qsort(order, count, sizeof *order, by_tensor_name);
    for (size_t i = 1; i < count; i++) {
        if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
            errf(err, errlen, path, "tensor '%s' given twice", order[i]->name);
            rc = LURAY_EINVAL;
            goto err_free;
        }
    }
    if ((rc = build_header(path, order, count, meta, nmeta, &b, err, errlen)) < 0)
        goto err_free;
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)b.len >> (8 * i));

    sprintf(tmp, "%s.tmp.%ld.%lu", path, (long)getpid(), ++seq);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        errf(err, errlen, path, "cannot create %s: %s", tmp, strerror(errno));
        rc = LURAY_EIO;
        goto err_free;
    }
    rc = write_all(fd, len8, 8) == 0 && write_all(fd, b.p, b.len) == 0 ? 0 : LURAY_EIO;
    for (size_t i = 0; rc == 0 && i < count; i++)
        if (write_all(fd, order[i]->data, tensor_bytes(order[i])) < 0)
            rc = LURAY_EIO;
    if (rc == 0 && fsync(fd) < 0)
        rc = LURAY_EIO;
    if (rc < 0)
        errf(err, errlen, path, "cannot write %s: %s", tmp, strerror(errno));
    if (close(fd) < 0 && rc == 0) {
        errf(err, errlen, path, "cannot write %s: %s", tmp, strerror(errno));
        rc = LURAY_EIO;
    }
    if (rc == 0 && rename(tmp, path) < 0) {
        errf(err, errlen, path, "cannot rename %s to it: %s", tmp, strerror(errno));
        rc = LURAY_EIO;
    }
    if (rc < 0)
        unlink(tmp);
err_free:
    free(b.p);
    free(tmp);
    free(order);
    return rc;
}
