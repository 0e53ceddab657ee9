/* libxgboost's evaluation text: tab-separated fields after the "[iteration]" tag, each
 * "<set>-<metric>:<value>"; metric names may hold '-', '@' and ':'-free parameters
 * ("error@0.7", "ndcg@5-"), so the value starts after the last ':'. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "luray/errors.h"

#include "eval_text.h"

/* The set whose "name-" starts the field, the longest when several do; -1 if none. */
static int match_set(const char *field, size_t len, const char *const *sets, int nsets)
{
    int best = -1;
    size_t best_len = 0;
    for (int i = 0; i < nsets; i++) {
        size_t n = strlen(sets[i]);
        if (n + 1 < len && memcmp(field, sets[i], n) == 0 && field[n] == '-' &&
            (best < 0 || n > best_len)) {
            best = i;
            best_len = n;
        }
    }
    return best;
}

static int parse_field(const char *field, size_t len, const char *const *sets, int nsets,
                       xgb_eval_fn fn, void *ctx, char *err, size_t errlen)
{
    int set = match_set(field, len, sets, nsets);
    int shown = (int)(len > 200 ? 200 : len);
    const char *colon = NULL;
    for (const char *p = field + len; p > field; p--) {
        if (p[-1] == ':') {
            colon = p - 1;
            break;
        }
    }
    size_t skip = set >= 0 ? strlen(sets[set]) + 1 : 0;
    if (set < 0 || colon == NULL || colon <= field + skip) {
        snprintf(err, errlen, "cannot read evaluation field \"%.*s\"", shown, field);
        return LURAY_EPROTO;
    }
    char num[64];
    size_t nlen = (size_t)(field + len - colon - 1);
    if (nlen == 0 || nlen >= sizeof(num)) {
        snprintf(err, errlen, "evaluation field \"%.*s\" has no value", shown, field);
        return LURAY_EPROTO;
    }
    memcpy(num, colon + 1, nlen);
    num[nlen] = '\0';
    char *end;
    errno = 0;
    double value = strtod(num, &end);
    if (*end != '\0') {
        snprintf(err, errlen, "evaluation field \"%.*s\": \"%s\" is not a number", shown, field,
                 num);
        return LURAY_EPROTO;
    }
    return fn(ctx, set, field + skip, (size_t)(colon - field - skip), value);
}

int xgb_eval_parse(const char *text, const char *const *sets, int nsets, xgb_eval_fn fn,
                   void *ctx, char *err, size_t errlen)
{
    int count = 0;
    const char *p = text;
    while (*p != '\0') {
        const char *end = strchr(p, '\t');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r' || p[len - 1] == ' '))
            len--;
        if (len > 0 && p[0] != '[') {
            int rc = parse_field(p, len, sets, nsets, fn, ctx, err, errlen);
            if (rc != 0)
                return rc;
            count++;
        }
        if (end == NULL)
            break;
        p = end + 1;
    }
    return count;
}
