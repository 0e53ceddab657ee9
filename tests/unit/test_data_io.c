/* Unit tests of the data plugin's sources and sinks: CSV and JSON Lines inference and range
 * reading (plugins/data/csv_read.c, json_read.c) and the writers (write.c). Texts are parsed from
 * exact-size heap copies so that the sanitizers catch any read past the end; ranges are checked
 * at every split point. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <unistd.h>

#include <cmocka.h>

#include "data/csv_read.h"
#include "data/dcol.h"
#include "data/json_read.h"
#include "data/write.h"

#define MAXC 8

/* A text over an exact-size heap copy of s (n bytes). */
static data_text_t text_of(const char *s, size_t n)
{
    char *d = malloc(n ? n : 1);
    assert_non_null(d);
    memcpy(d, s, n);
    return (data_text_t){"t.csv", d, n};
}

static void text_free(data_text_t *t)
{
    free((void *)t->data);
}

static void free_cols(dcol_t *cols, int n)
{
    for (int c = 0; c < n; c++)
        dcol_free(&cols[c]);
}

/* Appends the rows of cols as text ("v|v|v\n"), numbers in one form whatever their column type
 * (an int64 range and a widened float64 range then agree). */
static void dump_rows(const dcol_t *cols, int ncols, char **buf, size_t *len)
{
    for (int64_t i = 0; i < cols[0].len; i++) {
        for (int c = 0; c < ncols; c++) {
            char v[64];
            const char *s = v;
            size_t n;
            switch (cols[c].type) {
            case DCOL_INT64:
                n = (size_t)snprintf(v, sizeof(v), "%.17g", (double)((int64_t *)cols[c].data)[i]);
                break;
            case DCOL_FLOAT64:
                n = (size_t)snprintf(v, sizeof(v), "%.17g", ((double *)cols[c].data)[i]);
                break;
            case DCOL_BOOL:
                n = (size_t)snprintf(v, sizeof(v), "%d", ((uint8_t *)cols[c].data)[i]);
                break;
            case DCOL_STRING:
                s = dcol_str(&cols[c], i, &n);
                break;
            default: {
                size_t per = dcol_value_size(&cols[c]) / 4;
                n = 0;
                for (size_t k = 0; k < per && n + 16 < sizeof(v); k++)
                    n += (size_t)snprintf(v + n, sizeof(v) - n, "%g,",
                                          ((float *)cols[c].data)[(size_t)i * per + k]);
                break;
            }
            }
            *buf = realloc(*buf, *len + n + 2);
            assert_non_null(*buf);
            memcpy(*buf + *len, s, n);
            *len += n;
            (*buf)[(*len)++] = c + 1 < ncols ? '|' : '\n';
        }
    }
}

/* ---- CSV: inference ---- */

static void infer_csv(const char *s, const csv_opts_t *o, data_schema_t *out)
{
    data_text_t t = text_of(s, strlen(s));
    char err[256] = "";
    int rc = csv_infer_text(&t, o, NULL, 0, out, err, sizeof(err));
    if (rc != 0)
        fail_msg("infer failed: %s", err);
    text_free(&t);
}

static void test_csv_infer_types(void **state)
{
    (void)state;
    csv_opts_t o;
    data_schema_t s;
    csv_opts_init(&o);
    infer_csv("i,f,b,s,e,m,n\n1,1.5,true,x,,1,\n-2,3,False,y z,,2.5,\n", &o, &s);
    static const char *names[] = {"i", "f", "b", "s", "e", "m", "n"};
    static const dcol_type_t types[] = {DCOL_INT64,   DCOL_FLOAT64, DCOL_BOOL,   DCOL_STRING,
                                        DCOL_FLOAT64, DCOL_FLOAT64, DCOL_FLOAT64};
    assert_int_equal(s.ncols, 7);
    for (int c = 0; c < 7; c++) {
        assert_string_equal(s.names[c], names[c]);
        assert_int_equal(s.types[c], types[c]);
    }
    data_schema_close(&s);

    /* an int column with a gap is float64 (NaN); "1"/"0" alone are ints; mixed bools strings */
    infer_csv("a,b,c\n1,1,true\n,0,1\n", &o, &s);
    assert_int_equal(s.types[0], DCOL_FLOAT64);
    assert_int_equal(s.types[1], DCOL_INT64);
    assert_int_equal(s.types[2], DCOL_BOOL);
    data_schema_close(&s);

    /* header only: no sample, so strings */
    infer_csv("a,b\n", &o, &s);
    assert_int_equal(s.ncols, 2);
    assert_int_equal(s.types[0], DCOL_STRING);
    data_schema_close(&s);

    /* only the first infer_rows rows are sampled */
    o.infer_rows = 2;
    infer_csv("a\n1\n2\nx\n", &o, &s);
    assert_int_equal(s.types[0], DCOL_INT64);
    data_schema_close(&s);
}

static void test_csv_infer_names(void **state)
{
    (void)state;
    csv_opts_t o;
    data_schema_t s;
    csv_opts_init(&o);
    infer_csv("\xEF\xBB\xBF\r\n\"a,1\",,a,a,a_1\r\n1,2,3,4,5\r\n", &o, &s);
    static const char *names[] = {"a,1", "column2", "a", "a_1", "a_1_1"};
    assert_int_equal(s.ncols, 5);
    for (int c = 0; c < 5; c++)
        assert_string_equal(s.names[c], names[c]);
    data_schema_close(&s);

    o.header = false;
    o.delimiter = ';';
    infer_csv("1;x\n2;y", &o, &s);
    assert_int_equal(s.ncols, 2);
    assert_string_equal(s.names[0], "column1");
    assert_string_equal(s.names[1], "column2");
    assert_int_equal(s.types[0], DCOL_INT64);
    assert_int_equal(s.types[1], DCOL_STRING);
    data_schema_close(&s);
}

static void test_csv_infer_overrides(void **state)
{
    (void)state;
    csv_opts_t o;
    csv_opts_init(&o);
    data_text_t t = text_of("a,b\n1,2\n", 8);
    data_schema_t s;
    char err[256];
    data_override_t ov[] = {{"b", DCOL_STRING}, {"a", DCOL_FLOAT64}};
    assert_int_equal(csv_infer_text(&t, &o, ov, 2, &s, err, sizeof(err)), 0);
    assert_int_equal(s.types[0], DCOL_FLOAT64);
    assert_int_equal(s.types[1], DCOL_STRING);
    data_schema_close(&s);

    data_override_t bad[] = {{"zz", DCOL_STRING}};
    assert_int_not_equal(csv_infer_text(&t, &o, bad, 1, &s, err, sizeof(err)), 0);
    assert_string_equal(err, "csv_infer: 't.csv' has no column 'zz' (columns: a, b)");
    data_override_t tensor[] = {{"a", DCOL_TENSOR}};
    assert_int_not_equal(csv_infer_text(&t, &o, tensor, 1, &s, err, sizeof(err)), 0);
    text_free(&t);
}

/* ---- CSV: reading ---- */

/* Reads [start, stop) of s with schema sc; returns the rc, err filled on failure. */
static int read_csv_str(const char *s, size_t n, int64_t start, int64_t stop,
                        const data_schema_t *sc, const csv_opts_t *o, dcol_t *cols, char *err)
{
    data_text_t t = text_of(s, n);
    int rc = csv_read_text(&t, start, stop, sc, o, cols, err, 256);
    text_free(&t);
    return rc;
}

/* A schema from "name:type name:type ...". */
static void schema_of(const char *spec, data_schema_t *s)
{
    char buf[256];
    const char *names[MAXC], *types[MAXC];
    int n = 0;
    snprintf(buf, sizeof(buf), "%s", spec);
    for (char *tok = strtok(buf, " "); tok != NULL; tok = strtok(NULL, " ")) {
        char *colon = strchr(tok, ':');
        *colon = '\0';
        names[n] = tok;
        types[n++] = colon + 1;
    }
    assert_int_equal(data_schema_init(s, n), 0);
    for (int c = 0; c < n; c++) {
        assert_int_equal(data_schema_set_name(s, c, names[c], strlen(names[c])), 0);
        assert_int_equal(dcol_type_parse(types[c], &s->types[c]), 0);
    }
}

/* Reads all of s and compares its rows' dump with want. */
static void check_csv(const char *s, size_t n, const char *spec, const csv_opts_t *o,
                      const char *want)
{
    data_schema_t sc;
    dcol_t cols[MAXC];
    char err[256] = "";
    schema_of(spec, &sc);
    if (read_csv_str(s, n, 0, (int64_t)n, &sc, o, cols, err) != 0)
        fail_msg("read failed: %s", err);
    char *got = NULL;
    size_t len = 0;
    dump_rows(cols, sc.ncols, &got, &len);
    got = realloc(got, len + 1);
    got[len] = '\0';
    assert_string_equal(got, want);
    free(got);
    free_cols(cols, sc.ncols);
    data_schema_close(&sc);
}

static void test_csv_read_values(void **state)
{
    (void)state;
    csv_opts_t o;
    csv_opts_init(&o);
    const char *s = "id,x,ok,name\n1,2.5,true,ann\n-3,,false,bob\n9223372036854775807,1e3,0,\n";
    data_schema_t sc;
    dcol_t cols[4];
    char err[256];
    schema_of("id:int64 x:float64 ok:bool name:string", &sc);
    assert_int_equal(read_csv_str(s, strlen(s), 0, 1000, &sc, &o, cols, err), 0);
    assert_int_equal(cols[0].len, 3);
    assert_int_equal(cols[0].type, DCOL_INT64);
    assert_true(((int64_t *)cols[0].data)[2] == INT64_MAX);
    assert_true(((double *)cols[1].data)[0] == 2.5);
    assert_true(isnan(((double *)cols[1].data)[1]));
    assert_true(((double *)cols[1].data)[2] == 1000.0);
    assert_memory_equal(cols[2].data, "\1\0\0", 3);
    size_t len;
    assert_memory_equal(dcol_str(&cols[3], 1, &len), "bob", 3);
    assert_int_equal(len, 3);
    dcol_str(&cols[3], 2, &len);
    assert_int_equal(len, 0);
    free_cols(cols, 4);

    /* an int column meeting a float or a gap becomes float64 */
    const char *w = "id,x,ok,name\n1,2,1,a\n2.5,3,0,b\n";
    assert_int_equal(read_csv_str(w, strlen(w), 0, 1000, &sc, &o, cols, err), 0);
    assert_int_equal(cols[0].type, DCOL_FLOAT64);
    assert_true(((double *)cols[0].data)[0] == 1.0 && ((double *)cols[0].data)[1] == 2.5);
    free_cols(cols, 4);
    data_schema_close(&sc);
}

static void test_csv_quoting(void **state)
{
    (void)state;
    csv_opts_t o;
    csv_opts_init(&o);
    static const char s[] = "a,b\n"
                            "\"x,y\",\"he said \"\"hi\"\"\"\n"
                            "\"multi\nline\",\"\"\n"
                            "\"crlf\r\nin\",\"\"\"\"\n"
                            "pla\"in,\"\"\"a\"\"\"\n";
    check_csv(s, sizeof(s) - 1, "a:string b:string", &o,
              "x,y|he said \"hi\"\nmulti\nline|\ncrlf\r\nin|\"\npla\"in|\"a\"\n");
    /* a single quote character, and quoting off */
    o.quote = '\'';
    check_csv("a\n'x,y'\n", 8, "a:string", &o, "x,y\n");
    o.quote = -1;
    check_csv("a,b\n\"x,y\"\n", 10, "a:string b:string", &o, "\"x|y\"\n");
}

static void test_csv_line_ends(void **state)
{
    (void)state;
    csv_opts_t o;
    csv_opts_init(&o);
    /* BOM, CRLF, blank lines, a lone CR as data, a last line without newline */
    static const char s[] = "\xEF\xBB\xBF" "a,b\r\n1,x\r\n\r\n\n2,y\rz\r\n3,\"q\"";
    check_csv(s, sizeof(s) - 1, "a:int64 b:string", &o, "1|x\n2|y\rz\n3|q\n");
    check_csv("a,b\n1,2\r", 8, "a:int64 b:int64", &o, "1|2\n");
    check_csv("a,b\n1,\"2\"\r", 10, "a:int64 b:int64", &o, "1|2\n");
    /* without a header the BOM still goes, and the first line is data */
    o.header = false;
    check_csv("\xEF\xBB\xBF" "1,2\n3,4", 10, "a:int64 b:int64", &o, "1|2\n3|4\n");
    check_csv("", 0, "a:int64", &o, "");
}

/* Positions of newlines inside quoted fields (quote '"'), as a byte map. */
static char *quoted_newlines(const char *s, size_t n)
{
    char *in = calloc(n + 1, 1);
    bool q = false, can_open = true; /* can_open: at a field start, or just after a close */
    for (size_t i = 0; i < n; i++) {
        bool was = can_open;
        can_open = false;
        if (s[i] == '"') {
            if (q) {
                q = false;
                can_open = true; /* a doubled quote opens again */
            } else if (was) {
                q = true;
            }
        } else if (q) {
            in[i] = s[i] == '\n';
        } else if (s[i] == ',' || s[i] == '\n') {
            can_open = true;
        }
    }
    return in;
}

/* Split s into 2 and 3 ranges at every byte offset (skipping resyncs that would land on a quoted
 * newline): the ranges together read exactly the rows of the whole. */
static void check_csv_splits(const char *s, size_t n, const char *spec, const csv_opts_t *o)
{
    data_schema_t sc;
    dcol_t cols[MAXC];
    char err[256] = "";
    char *whole = NULL, *got = NULL;
    size_t wlen = 0, glen;
    char *quoted = quoted_newlines(s, n);
    schema_of(spec, &sc);
    if (read_csv_str(s, n, 0, (int64_t)n, &sc, o, cols, err) != 0)
        fail_msg("whole read failed: %s", err);
    dump_rows(cols, sc.ncols, &whole, &wlen);
    free_cols(cols, sc.ncols);
    data_text_t t = text_of(s, n);
    for (size_t a = 0; a <= n; a++) {
        for (size_t b = a; b <= n; b++) {
            size_t cuts[4] = {0, a, b, n};
            bool ok = true;
            for (int k = 1; k < 3; k++) {
                size_t begin = data_range_begin(&t, (int64_t)cuts[k]);
                if (begin > 0 && quoted[begin - 1])
                    ok = false;
            }
            if (!ok)
                continue;
            got = NULL;
            glen = 0;
            for (int k = 0; k < 3; k++) {
                if (csv_read_text(&t, (int64_t)cuts[k], (int64_t)cuts[k + 1], &sc, o, cols, err,
                                  sizeof(err)) != 0)
                    fail_msg("range [%zu, %zu) failed: %s", cuts[k], cuts[k + 1], err);
                dump_rows(cols, sc.ncols, &got, &glen);
                free_cols(cols, sc.ncols);
            }
            if (glen != wlen || memcmp(got, whole, wlen) != 0)
                fail_msg("split at %zu, %zu: rows differ", a, b);
            free(got);
        }
    }
    text_free(&t);
    free(whole);
    free(quoted);
    data_schema_close(&sc);
}

static void test_csv_ranges(void **state)
{
    (void)state;
    csv_opts_t o;
    csv_opts_init(&o);
    static const char plain[] = "a,b\n1,x\n22,yy\n\n333,zzz\r\n4,\"q,r\"\n5,w";
    check_csv_splits(plain, sizeof(plain) - 1, "a:int64 b:string", &o);
    static const char bom[] = "\xEF\xBB\xBF\n\na,b\n1,2\n3,4.5\n";
    check_csv_splits(bom, sizeof(bom) - 1, "a:int64 b:int64", &o);
    static const char quoted[] = "a,b\n1,\"x\ny\"\n2,\"\"\"\"\n\"3\",\"p\nq\nr\"\n4,s\n";
    check_csv_splits(quoted, sizeof(quoted) - 1, "a:int64 b:string", &o);
    o.header = false;
    check_csv_splits(bom + 3, sizeof(bom) - 4, "a:string b:string", &o);
    static const char nohead[] = "\xEF\xBB\xBF" "1,2\n3,4\n";
    check_csv_splits(nohead, sizeof(nohead) - 1, "a:int64 b:int64", &o);
}

/* Reads s (all of it) with schema spec and checks the error message. */
static void check_csv_error(const char *s, const char *spec, const char *want)
{
    csv_opts_t o;
    csv_opts_init(&o);
    data_schema_t sc;
    dcol_t cols[MAXC];
    char err[256] = "";
    schema_of(spec, &sc);
    assert_int_not_equal(read_csv_str(s, strlen(s), 0, 1 << 20, &sc, &o, cols, err), 0);
    assert_string_equal(err, want);
    data_schema_close(&sc);
}

static void test_csv_errors(void **state)
{
    (void)state;
    check_csv_error("a,b\n1,2\n3\n", "a:int64 b:int64", "t.csv:3: 1 field, expected 2");
    check_csv_error("a,b\n1,2,3,\"4\"\n", "a:int64 b:int64", "t.csv:2: 4 fields, expected 2");
    check_csv_error("a,b\n1,\"x\n\n", "a:int64 b:string", "t.csv:2: unterminated quoted field");
    check_csv_error("a,b\n1,\"x\"y\n", "a:int64 b:string",
                    "t.csv:2, column 'b': text after closing quote");
    check_csv_error("a,b\n\"x\ny\",1\r\nz,q\n", "a:string b:int64",
                    "t.csv:4, column 'b': \"q\" is not an int64");
    check_csv_error("a,b\n1,2\n1,abc\n", "a:int64 b:float64",
                    "t.csv:3, column 'b': \"abc\" is not a float64");
    check_csv_error("a\n1\n2.5\nx\n", "a:int64", "t.csv:4, column 'a': \"x\" is not a float64");
    check_csv_error("a\nyes\n", "a:bool", "t.csv:2, column 'a': \"yes\" is not a bool");
    check_csv_error("a\n\"\x01 a very long value that goes on and on and on\"\n", "a:float64",
                    "t.csv:2, column 'a': \"? a very long value that goes on and on and ...\" "
                    "is not a float64");
    /* the header is parsed too */
    check_csv_error("\"a,b\n1,2\n", "a:int64", "t.csv:1: unterminated quoted field");

    /* inference reports the same way */
    csv_opts_t o;
    csv_opts_init(&o);
    data_schema_t s;
    char err[256];
    data_text_t t = text_of("a,b\n1,2\n\n3,4,5\n", 15);
    assert_int_not_equal(csv_infer_text(&t, &o, NULL, 0, &s, err, sizeof(err)), 0);
    assert_string_equal(err, "t.csv:4: 3 fields, expected 2");
    text_free(&t);
    t = text_of("\r\n\n", 3);
    assert_int_not_equal(csv_infer_text(&t, &o, NULL, 0, &s, err, sizeof(err)), 0);
    assert_string_equal(err, "csv_infer: 't.csv' has no rows");
    text_free(&t);

    /* files */
    assert_int_equal(csv_infer_file("/nonexistent/x.csv", &o, NULL, 0, &s, err, sizeof(err)),
                     -4);
    assert_string_equal(err, "csv_infer: cannot open '/nonexistent/x.csv': No such file or "
                             "directory");
    dcol_t cols[1];
    schema_of("a:int64", &s);
    assert_int_not_equal(csv_read_file("/tmp", 0, 10, &s, &o, cols, err, sizeof(err)), 0);
    assert_string_equal(err, "read_csv: cannot open '/tmp': Is a directory");
    data_schema_close(&s);

    /* bad options */
    o.delimiter = '"';
    t = text_of("a\n", 2);
    assert_int_not_equal(csv_infer_text(&t, &o, NULL, 0, &s, err, sizeof(err)), 0);
    text_free(&t);
}

/* ---- JSON Lines ---- */

static int infer_json(const char *s, int64_t rows, data_schema_t *out, char *err)
{
    data_text_t t = text_of(s, strlen(s));
    t.name = "t.jsonl";
    int rc = json_infer_text(&t, rows, NULL, 0, out, err, 256);
    text_free(&t);
    return rc;
}

static void test_json_infer(void **state)
{
    (void)state;
    data_schema_t s;
    char err[256] = "";
    const char *text = "\xEF\xBB\xBF{\"i\":1,\"f\":2,\"b\":true,\"s\":\"x\","
                       "\"t\":[[1,2,3],[4,5,6]],"
                       "\"n\":null}\r\n"
                       "\n"
                       "{\"f\":2.5,\"i\":-7,\"b\":false,\"s\":\"\",\"t\":[[0,0,0],[0,0,0]],"
                       "\"g\":1,\"n\":3}\n";
    if (infer_json(text, 100, &s, err) != 0)
        fail_msg("%s", err);
    static const char *names[] = {"i", "f", "b", "s", "t", "n", "g"};
    static const dcol_type_t types[] = {DCOL_INT64,  DCOL_FLOAT64, DCOL_BOOL,   DCOL_STRING,
                                        DCOL_TENSOR, DCOL_FLOAT64, DCOL_FLOAT64};
    assert_int_equal(s.ncols, 7);
    for (int c = 0; c < 7; c++) {
        assert_string_equal(s.names[c], names[c]);
        assert_int_equal(s.types[c], types[c]);
    }
    assert_int_equal(s.ndims[4], 2);
    assert_int_equal(s.shapes[4 * DCOL_MAX_DIMS], 2);
    assert_int_equal(s.shapes[4 * DCOL_MAX_DIMS + 1], 3);
    data_schema_close(&s);

    /* sampling stops after infer_rows objects */
    assert_int_equal(infer_json("{\"a\":1}\n{\"a\":\"x\"}\n", 1, &s, err), 0);
    assert_int_equal(s.types[0], DCOL_INT64);
    data_schema_close(&s);
}

static void check_json_infer_error(const char *s, const char *want)
{
    data_schema_t sc;
    char err[256] = "";
    assert_int_not_equal(infer_json(s, 100, &sc, err), 0);
    assert_string_equal(err, want);
}

static void test_json_infer_errors(void **state)
{
    (void)state;
    check_json_infer_error("{\"a\":1}\n\n{\"a\":\"x\"}\n", "t.jsonl:3: key 'a' is a string, "
                                                           "expected int64");
    check_json_infer_error("{\"a\":\"x\"}\n{\"a\":null}\n", "t.jsonl:2: key 'a' is null, "
                                                             "expected string");
    check_json_infer_error("{\"a\":1}\n{\"b\":true}\n", "t.jsonl:1: key 'b' is missing, "
                                                        "expected bool");
    check_json_infer_error("{\"a\":true,\"b\":1}\n{\"b\":2}\n", "t.jsonl:2: key 'a' is missing, "
                                                              "expected bool");
    check_json_infer_error("{\"a\":[1,2]}\n{\"a\":[1,2,3]}\n",
                           "t.jsonl:2: key 'a' has shape [3], expected [2]");
    check_json_infer_error("{\"a\":[[1],[2,3]]}\n",
                           "t.jsonl:1: key 'a' is an array with rows of different lengths");
    check_json_infer_error("{\"a\":[1,[2]]}\n",
                           "t.jsonl:1: key 'a' mixes numbers and arrays at one depth");
    check_json_infer_error("{\"a\":[]}\n", "t.jsonl:1: key 'a' is an empty array");
    check_json_infer_error("{\"a\":[\"x\"]}\n", "t.jsonl:1: key 'a' is an array holding a string");
    check_json_infer_error("{\"a\":[[[[[[[[1]]]]]]]]}\n",
                           "t.jsonl:1: key 'a' nests arrays too deep for a tensor");
    check_json_infer_error("{\"a\":{\"b\":1}}\n", "t.jsonl:1: key 'a' is an object; nested "
                                                  "objects are not supported");
    check_json_infer_error("{\"a\":1,\"a\":2}\n", "t.jsonl:1: key 'a' appears twice");
    check_json_infer_error("{\"\":1}\n", "t.jsonl:1: key '' cannot name a column (empty or "
                                         "holding a NUL)");
    check_json_infer_error("{\"a\":1}\n[1]\n", "t.jsonl:2: not an object");
    check_json_infer_error("{\"a\":1\n", "t.jsonl:1: broken JSON (expected ',' or '}' at byte 7)");
    check_json_infer_error("{\"a\" 1}\n", "t.jsonl:1: broken JSON (expected ':' at byte 6)");
    check_json_infer_error("{\"a\":01}\n", "t.jsonl:1: broken JSON (expected ',' or '}' at byte "
                                           "7)");
    check_json_infer_error("{\"a\":1.}\n", "t.jsonl:1: broken JSON (bad number at byte 6)");
    check_json_infer_error("{\"a\":tru}\n", "t.jsonl:1: broken JSON (unexpected character at "
                                            "byte 6)");
    check_json_infer_error("{\"a\":\"x\\q\"}\n", "t.jsonl:1: broken JSON (bad escape in a string "
                                                 "at byte 8)");
    check_json_infer_error("{\"a\":\"x\ty\"}\n", "t.jsonl:1: broken JSON (control character in a "
                                                 "string at byte 8)");
    check_json_infer_error("{\"a\":\"x}\n", "t.jsonl:1: broken JSON (unterminated string at "
                                            "byte 6)");
    check_json_infer_error("{\"a\":1} x\n", "t.jsonl:1: broken JSON (text after the object at "
                                            "byte 9)");
    check_json_infer_error("{,}\n", "t.jsonl:1: broken JSON (expected a key at byte 2)");
    check_json_infer_error("\n \n", "json_infer: 't.jsonl' has no rows");
    check_json_infer_error("{}\n", "json_infer: 't.jsonl' has no keys");
}

static int read_json_str(const char *s, size_t n, int64_t start, int64_t stop,
                         const data_schema_t *sc, dcol_t *cols, char *err)
{
    data_text_t t = text_of(s, n);
    t.name = "t.jsonl";
    int rc = json_read_text(&t, start, stop, sc, cols, err, 256);
    text_free(&t);
    return rc;
}

static void test_json_read_values(void **state)
{
    (void)state;
    const char *s = "{\"id\":9007199254740993,\"x\":1,\"s\":\"a\\u00e9\\ud83d\\ude00\\n\\\"\","
                    "\"b\":true,\"t\":[1.5,null]}\n"
                    "{\"x\":null,\"id\":-9223372036854775808,\"s\":12.50,\"b\":false,"
                    "\"t\":[1e2,-0]}\n"
                    "{\"id\":1,\"s\":\"\\udc00x\",\"b\":true,\"t\":[3,4]}\n";
    data_schema_t sc;
    dcol_t cols[5];
    char err[256] = "";
    schema_of("id:int64 x:float64 s:string b:bool t:float64", &sc);
    sc.types[4] = DCOL_TENSOR;
    sc.ndims[4] = 1;
    sc.shapes[4 * DCOL_MAX_DIMS] = 2;
    if (read_json_str(s, strlen(s), 0, 1000, &sc, cols, err) != 0)
        fail_msg("%s", err);
    assert_int_equal(cols[0].type, DCOL_INT64);
    assert_true(((int64_t *)cols[0].data)[0] == 9007199254740993LL);
    assert_true(((int64_t *)cols[0].data)[1] == INT64_MIN);
    double *x = cols[1].data;
    assert_true(x[0] == 1.0 && isnan(x[1]) && isnan(x[2]));
    size_t len;
    const char *v = dcol_str(&cols[2], 0, &len);
    assert_int_equal(len, 9);
    assert_memory_equal(v, "a\xC3\xA9\xF0\x9F\x98\x80\n\"", 9);
    v = dcol_str(&cols[2], 1, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(v, "12.50", 5);
    v = dcol_str(&cols[2], 2, &len);
    assert_int_equal(len, 4);
    assert_memory_equal(v, "\xEF\xBF\xBDx", 4);
    assert_memory_equal(cols[3].data, "\1\0\1", 3);
    float *f = cols[4].data;
    assert_int_equal(cols[4].len, 3);
    assert_true(f[0] == 1.5f && isnan(f[1]) && f[2] == 100.0f && f[3] == 0.0f && f[5] == 4.0f);
    free_cols(cols, 5);

    /* an int column meeting a float, a null or a missing key becomes float64 */
    const char *w = "{\"id\":1,\"x\":1,\"s\":\"a\",\"b\":true,\"t\":[1,2]}\n"
                    "{\"x\":1,\"s\":\"a\",\"b\":true,\"t\":[1,2]}\n";
    assert_int_equal(read_json_str(w, strlen(w), 0, 1000, &sc, cols, err), 0);
    assert_int_equal(cols[0].type, DCOL_FLOAT64);
    assert_true(((double *)cols[0].data)[0] == 1.0 && isnan(((double *)cols[0].data)[1]));
    free_cols(cols, 5);
    data_schema_close(&sc);
}

static void check_json_read_error(const char *s, const char *spec, const char *want)
{
    data_schema_t sc;
    dcol_t cols[MAXC];
    char err[256] = "";
    schema_of(spec, &sc);
    assert_int_not_equal(read_json_str(s, strlen(s), 0, 1 << 20, &sc, cols, err), 0);
    assert_string_equal(err, want);
    data_schema_close(&sc);
}

static void test_json_read_errors(void **state)
{
    (void)state;
    check_json_read_error("{\"a\":1}\n{\"a\":\"x\"}\n", "a:int64",
                          "t.jsonl:2: key 'a' is a string, expected int64");
    check_json_read_error("{\"a\":1}\n{\"a\":1.5}\n{\"a\":true}\n", "a:int64",
                          "t.jsonl:3: key 'a' is a bool, expected float64");
    check_json_read_error("{\"a\":\"x\"}\n{}\n", "a:string",
                          "t.jsonl:2: key 'a' is missing, expected string");
    check_json_read_error("{\"a\":null}\n", "a:bool", "t.jsonl:1: key 'a' is null, expected bool");
    check_json_read_error("{\"a\":[1]}\n", "a:string",
                          "t.jsonl:1: key 'a' is an array, expected string");
    check_json_read_error("{\"a\":1,\"zz\\u0000\":2}\n", "a:int64",
                          "t.jsonl:1: key 'zz?' is not a column of the schema");
    check_json_read_error("{\"a\":1,\"a\":2}\n", "a:int64", "t.jsonl:1: key 'a' appears twice");
    check_json_read_error("\n\n{\"a\":1]\n", "a:int64",
                          "t.jsonl:3: broken JSON (expected ',' or '}' at byte 7)");

    data_schema_t sc;
    dcol_t cols[1];
    char err[256];
    schema_of("a:float64", &sc);
    sc.types[0] = DCOL_TENSOR;
    sc.ndims[0] = 1;
    sc.shapes[0] = 3;
    const char *s = "{\"a\":[1,2,3]}\n{\"a\":[[1,2,3]]}\n";
    assert_int_not_equal(read_json_str(s, strlen(s), 0, 100, &sc, cols, err), 0);
    assert_string_equal(err, "t.jsonl:2: key 'a' has shape [1,3], expected [3]");
    assert_int_not_equal(json_read_file("/nonexistent.jsonl", 0, 1, &sc, cols, err, 256), 0);
    assert_string_equal(err, "read_json: cannot open '/nonexistent.jsonl': No such file or "
                             "directory");
    data_schema_close(&sc);
}

static void test_json_ranges(void **state)
{
    (void)state;
    static const char s[] = "\xEF\xBB\xBF{\"a\":1,\"b\":\"x\\ny\"}\r\n\n  \n"
                            "{\"b\":\"\",\"a\":2.5}\n"
                            "{\"a\":3,\"b\":\"{\\\"q\\\":1}\"}";
    const size_t n = sizeof(s) - 1;
    data_schema_t sc;
    dcol_t cols[2];
    char err[256] = "";
    char *whole = NULL, *got;
    size_t wlen = 0, glen;
    schema_of("a:int64 b:string", &sc);
    data_text_t t = text_of(s, n);
    if (json_read_text(&t, 0, (int64_t)n, &sc, cols, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_int_equal(cols[0].len, 3);
    dump_rows(cols, 2, &whole, &wlen);
    free_cols(cols, 2);
    for (size_t a = 0; a <= n; a++)
        for (size_t b = a; b <= n; b++) {
            size_t cuts[4] = {0, a, b, n};
            got = NULL;
            glen = 0;
            for (int k = 0; k < 3; k++) {
                if (json_read_text(&t, (int64_t)cuts[k], (int64_t)cuts[k + 1], &sc, cols, err,
                                   sizeof(err)) != 0)
                    fail_msg("range [%zu, %zu): %s", cuts[k], cuts[k + 1], err);
                dump_rows(cols, 2, &got, &glen);
                free_cols(cols, 2);
            }
            if (glen != wlen || memcmp(got, whole, wlen) != 0)
                fail_msg("split at %zu, %zu: rows differ", a, b);
            free(got);
        }
    text_free(&t);
    free(whole);
    data_schema_close(&sc);
}

/* ---- writers ---- */

static char tmpdir[64];

static int make_tmpdir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/luray-test-data-io.XXXXXX");
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int remove_tmpdir(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Columns to round-trip: int64 extremes, awkward doubles, bools, awkward strings. */
enum { RT_ROWS = 12 };

static void make_columns(dcol_t *cols)
{
    static const int64_t ints[RT_ROWS] = {0, 1, -1, INT64_MAX, INT64_MIN, 42, 7, 8, 9, 10, 11, 12};
    const double dbls[RT_ROWS] = {0.1,     -0.0,   1.0,      1e300, 5e-324, 123456789012345678.0,
                                  NAN,     1.0 / 3, -2.5e-10, 1e15,  1e16,   0.30000000000000004};
    static const char *strs[RT_ROWS] = {"plain", "a,b", "say \"hi\"", "line\nbreak", "cr\rlf\r\n",
                                        "", "  spaced  ", "\xC3\xA9t\xC3\xA9 \xF0\x9F\x98\x80",
                                        "\"", ",", "tab\there", "x"};
    dcol_builder_t b[4];
    dcol_builder_init(&b[0], DCOL_INT64, 0, NULL);
    dcol_builder_init(&b[1], DCOL_FLOAT64, 0, NULL);
    dcol_builder_init(&b[2], DCOL_BOOL, 0, NULL);
    dcol_builder_init(&b[3], DCOL_STRING, 0, NULL);
    for (int i = 0; i < RT_ROWS; i++) {
        assert_int_equal(dcol_append_i64(&b[0], ints[i]), 0);
        assert_int_equal(dcol_append_f64(&b[1], dbls[i]), 0);
        assert_int_equal(dcol_append_bool(&b[2], i % 3 == 0), 0);
        assert_int_equal(dcol_append_str(&b[3], strs[i], strlen(strs[i])), 0);
    }
    for (int c = 0; c < 4; c++)
        dcol_builder_finish(&b[c], &cols[c]);
}

/* Random doubles: every other one of any exponent (NaN payloads made plain NaN), the others
 * short decimals like most data holds (k / 10^j), which the writer formats without printf. */
static void make_random_doubles(dcol_t *col, int n)
{
    dcol_builder_t b;
    uint64_t x = 88172645463325252ULL;
    dcol_builder_init(&b, DCOL_FLOAT64, 0, NULL);
    for (int i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double d;
        memcpy(&d, &x, 8);
        if (i % 2 == 1)
            d = (double)(int64_t)(x >> 20) / pow(10, (double)(x % 19)) * (x & 1 ? -1 : 1);
        if (isnan(d))
            d = NAN;
        assert_int_equal(dcol_append_f64(&b, d), 0);
    }
    dcol_builder_finish(&b, col);
}

static bool same_doubles(const dcol_t *a, const dcol_t *b)
{
    if (a->len != b->len || a->type != DCOL_FLOAT64 || b->type != DCOL_FLOAT64)
        return false;
    for (int64_t i = 0; i < a->len; i++) {
        double x = ((double *)a->data)[i], y = ((double *)b->data)[i];
        if (!(isnan(x) && isnan(y)) && memcmp(&x, &y, 8) != 0) {
            print_error("row %lld: wrote %.17g read %.17g\n", (long long)i, x, y);
            return false;
        }
    }
    return true;
}

static void assert_same_columns(const dcol_t *a, const dcol_t *b, int n)
{
    for (int c = 0; c < n; c++) {
        assert_int_equal(a[c].type, b[c].type);
        assert_int_equal(a[c].len, b[c].len);
        if (a[c].type == DCOL_FLOAT64)
            assert_true(same_doubles(&a[c], &b[c]));
        else if (a[c].type == DCOL_STRING)
            for (int64_t i = 0; i < a[c].len; i++) {
                size_t la, lb;
                const char *sa = dcol_str(&a[c], i, &la), *sb = dcol_str(&b[c], i, &lb);
                assert_int_equal(la, lb);
                assert_memory_equal(sa, sb, la);
            }
        else
            assert_memory_equal(a[c].data, b[c].data, a[c].nbytes);
    }
}

static void test_write_csv_round_trip(void **state)
{
    (void)state;
    dcol_t cols[5], back[5];
    make_columns(cols);
    make_random_doubles(&cols[4], RT_ROWS);
    const dcol_t *in[5] = {&cols[0], &cols[1], &cols[2], &cols[3], &cols[4]};
    const char *names[5] = {"i", "f,x", "b", "s \"q\"", "r"};
    char path[128], err[256] = "";
    int64_t bytes = 0;
    csv_write_opts_t wo;
    csv_write_opts_init(&wo);
    snprintf(path, sizeof(path), "%s/rt.csv", tmpdir);
    if (data_write_csv(path, 5, names, in, &wo, &bytes, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_true(bytes > 0);
    assert_int_equal(access(path, R_OK), 0);
    char tmp[140];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    assert_int_not_equal(access(tmp, F_OK), 0);

    csv_opts_t o;
    csv_opts_init(&o);
    data_schema_t s;
    if (csv_infer_file(path, &o, NULL, 0, &s, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_int_equal(s.ncols, 5);
    for (int c = 0; c < 5; c++)
        assert_string_equal(s.names[c], names[c]);
    static const dcol_type_t types[] = {DCOL_INT64, DCOL_FLOAT64, DCOL_BOOL, DCOL_STRING,
                                        DCOL_FLOAT64};
    for (int c = 0; c < 5; c++)
        assert_int_equal(s.types[c], types[c]);
    if (csv_read_file(path, 0, bytes, &s, &o, back, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_same_columns(cols, back, 5);
    free_cols(back, 5);
    data_schema_close(&s);

    /* many random doubles alone: one column, NaN written as "" so no line is blank */
    dcol_t r, rb;
    make_random_doubles(&r, 20000);
    const dcol_t *one[1] = {&r};
    const char *rname[1] = {"r"};
    wo.delimiter = ';';
    assert_int_equal(data_write_csv(path, 1, rname, one, &wo, &bytes, err, sizeof(err)), 0);
    o.delimiter = ';';
    schema_of("r:float64", &s);
    if (csv_read_file(path, 0, bytes, &s, &o, &rb, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_true(same_doubles(&r, &rb));
    dcol_free(&rb);
    dcol_free(&r);
    data_schema_close(&s);

    /* a tensor column cannot go to CSV, a missing folder cannot be written */
    dcol_t t = {.type = DCOL_TENSOR, .len = RT_ROWS};
    const dcol_t *bad[2] = {&cols[0], &t};
    const char *bnames[2] = {"i", "emb"};
    assert_int_not_equal(data_write_csv(path, 2, bnames, bad, &wo, &bytes, err, sizeof(err)), 0);
    assert_string_equal(err, "write_csv: column 'emb' is a tensor; use write_json");
    assert_int_not_equal(data_write_csv("/nonexistent/x.csv", 1, names, in, &wo, &bytes, err,
                                        sizeof(err)),
                         0);
    assert_string_equal(err, "write_csv: cannot open '/nonexistent/x.csv.tmp': No such file or "
                             "directory");
    free_cols(cols, 5);
}

static void test_write_json_round_trip(void **state)
{
    (void)state;
    dcol_t cols[6], back[6];
    make_columns(cols);
    make_random_doubles(&cols[4], RT_ROWS);
    dcol_builder_t tb;
    int64_t shape[2] = {2, 2};
    dcol_builder_init(&tb, DCOL_TENSOR, 2, shape);
    for (int i = 0; i < RT_ROWS; i++) {
        float row[4] = {(float)i, 0.1f, -1e-30f, 3.4028235e38f};
        assert_int_equal(dcol_append_row_f32(&tb, row), 0);
    }
    dcol_builder_finish(&tb, &cols[5]);
    const dcol_t *in[6] = {&cols[0], &cols[1], &cols[2], &cols[3], &cols[4], &cols[5]};
    const char *names[6] = {"i", "f\"\n", "b", "s", "r", "t"};
    char path[128], err[256] = "";
    int64_t bytes = 0;
    snprintf(path, sizeof(path), "%s/rt.jsonl", tmpdir);
    if (data_write_json(path, 6, names, in, &bytes, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    data_schema_t s;
    if (json_infer_file(path, 1000, NULL, 0, &s, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_int_equal(s.ncols, 6);
    static const dcol_type_t types[] = {DCOL_INT64,   DCOL_FLOAT64, DCOL_BOOL,
                                        DCOL_STRING,  DCOL_FLOAT64, DCOL_TENSOR};
    for (int c = 0; c < 6; c++) {
        assert_string_equal(s.names[c], names[c]);
        assert_int_equal(s.types[c], types[c]);
    }
    if (json_read_file(path, 0, bytes, &s, back, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    /* infinities went out as null: compare those as NaN */
    for (int64_t i = 0; i < RT_ROWS; i++)
        if (isinf(((double *)cols[4].data)[i]))
            ((double *)cols[4].data)[i] = NAN;
    assert_same_columns(cols, back, 6);
    free_cols(back, 6);
    data_schema_close(&s);
    free_cols(cols, 6);
}

static void test_write_json_escapes(void **state)
{
    (void)state;
    dcol_builder_t b;
    dcol_t col;
    dcol_builder_init(&b, DCOL_STRING, 0, NULL);
    static const char bad[] = "ok\x01\x1f\x7f\xff\xC3(\xED\xA0\x80\xF0\x9F\x98\x80";
    dcol_append_str(&b, bad, sizeof(bad) - 1);
    dcol_builder_finish(&b, &col);
    const dcol_t *in[1] = {&col};
    const char *names[1] = {"s"};
    char path[128], err[256] = "", got[256];
    int64_t bytes;
    snprintf(path, sizeof(path), "%s/esc.jsonl", tmpdir);
    assert_int_equal(data_write_json(path, 1, names, in, &bytes, err, sizeof(err)), 0);
    FILE *f = fopen(path, "rb");
    size_t n = fread(got, 1, sizeof(got) - 1, f);
    fclose(f);
    got[n] = '\0';
    assert_int_equal((int64_t)n, bytes);
    assert_string_equal(got, "{\"s\":\"ok\\u0001\\u001f\x7f\xEF\xBF\xBD\xEF\xBF\xBD(\xEF\xBF\xBD"
                             "\xEF\xBF\xBD\xEF\xBF\xBD\xF0\x9F\x98\x80\"}\n");
    dcol_free(&col);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_infer_types),
        cmocka_unit_test(test_csv_infer_names),
        cmocka_unit_test(test_csv_infer_overrides),
        cmocka_unit_test(test_csv_read_values),
        cmocka_unit_test(test_csv_quoting),
        cmocka_unit_test(test_csv_line_ends),
        cmocka_unit_test(test_csv_ranges),
        cmocka_unit_test(test_csv_errors),
        cmocka_unit_test(test_json_infer),
        cmocka_unit_test(test_json_infer_errors),
        cmocka_unit_test(test_json_read_values),
        cmocka_unit_test(test_json_read_errors),
        cmocka_unit_test(test_json_ranges),
        cmocka_unit_test(test_write_csv_round_trip),
        cmocka_unit_test(test_write_json_round_trip),
        cmocka_unit_test(test_write_json_escapes),
    };

    return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
