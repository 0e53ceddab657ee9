/* Parsing of libxgboost's evaluation text ("[3]\ttrain-logloss:0.21\tvalid-logloss:0.25") into
 * (data set, metric, value) triples. */
#ifndef LURAY_XGB_EVAL_TEXT_H
#define LURAY_XGB_EVAL_TEXT_H

#include <stddef.h>

/* Receives one triple: set is an index into the names given to xgb_eval_parse, the metric is
 * metric_len bytes at metric (not NUL-terminated). Returns 0 to go on, or a negative LURAY_E*
 * code that stops the parse. */
typedef int (*xgb_eval_fn)(void *ctx, int set, const char *metric, size_t metric_len,
                           double value);

/* Calls fn for each "<set>-<metric>:<value>" field of text, where <set> is one of the nsets
 * names (the longest that fits, as names may hold '-'). Returns the number of fields, or a
 * negative LURAY_E* code: with err set, or fn's own. */
int xgb_eval_parse(const char *text, const char *const *sets, int nsets, xgb_eval_fn fn,
                   void *ctx, char *err, size_t errlen);

#endif
