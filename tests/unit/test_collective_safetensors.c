/* Unit tests of the safetensors reader and writer (plugins/collective/safetensors.c): a round
 * trip of every dtype, the exact layout written (padding, name order, offsets), and every kind
 * of malformed file refused with a message naming the file. Files are parsed from exact-size
 * heap copies so that the sanitizers catch a read past the end. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "collective/safetensors.h"
#include "luray/errors.h"

static char tmpdir[64];

static int make_tmpdir(void **state)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_safetensors.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmpdir(void **state)
{
    char cmd[128];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;

    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, *len, f), *len);
    fclose(f);
    return buf;
}

/* A file image: the header's length, the header, then data_len bytes of data. */
static uint8_t *image(const char *json, size_t data_len, size_t *len)
{
    size_t h = strlen(json);
    uint8_t *buf;

    *len = 8 + h + data_len;
    buf = calloc(1, *len);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(buf + 8, json, h);
    return buf;
}

static void test_round_trip(void **state)
{
    float w[6] = {1.5f, -2, 3, 4, 5, 6.25f};
    double d = 3.141592653589793;
    int64_t empty_shape[2] = {0, 4}, w_shape[2] = {2, 3}, u_shape[1] = {5}, b_shape[1] = {3};
    int64_t i_shape[3] = {2, 2, 2};
    uint8_t u[5] = {0, 1, 2, 254, 255}, b[3] = {1, 0, 1};
    int32_t iv[8] = {-1, 2, -3, 4, INT32_MIN, INT32_MAX, 0, 7};
    safetensors_tensor_t ts[] = {
        {"weight", LURAY_DTYPE_FLOAT32, 2, w_shape, w},
        {"scalar", LURAY_DTYPE_FLOAT64, 0, NULL, &d},
        {"empty", LURAY_DTYPE_INT64, 2, empty_shape, NULL},
        {"bytes", LURAY_DTYPE_UINT8, 1, u_shape, u},
        {"mask", LURAY_DTYPE_BOOL, 1, b_shape, b},
        {"ints", LURAY_DTYPE_INT32, 3, i_shape, iv},
    };
    safetensors_meta_t meta[] = {{"format", "pt"}, {"note", "a \"quoted\"\nline \xC3\xA9"}};
    char path[128], err[512];
    safetensors_header_t h;
    size_t len;
    uint8_t *file;
    uint64_t hlen = 0, at = 0, end;
    const char *head = "{\"__metadata__\":{\"format\":\"pt\",\"note\":"
                       "\"a \\\"quoted\\\"\\u000aline \xC3\xA9\"},"
                       "\"bytes\":{\"dtype\":\"U8\",\"shape\":[5],\"data_offsets\":[0,5]}";

    snprintf(path, sizeof path, "%s/model.safetensors", tmpdir);
    assert_int_equal(safetensors_write(path, ts, 6, meta, 2, err, sizeof err), 0);
    file = read_file(path, &len);
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)file[i] << (8 * i);
    /* __metadata__ first, escapes as JSON wants them, then spaces up to a multiple of 8. */
    assert_int_equal((8 + hlen) % 8, 0);
    assert_memory_equal(file + 8, head, strlen(head));
    end = hlen;
    while (end && file[8 + end - 1] == ' ')
        end--;
    assert_int_equal(file[8 + end - 1], '}');
    assert_true(hlen - end < 8);

    assert_int_equal(safetensors_parse("model", file, len, &h, err, sizeof err), 0);
    assert_int_equal(h.count, 6);
    assert_int_equal(h.nmeta, 2);
    assert_string_equal(h.meta[1].key, "note");
    assert_string_equal(h.meta[1].value, meta[1].value);
    assert_int_equal(h.data_start, 8 + hlen);
    /* Entries come sorted by name, and the data was written in that order. */
    for (size_t i = 0; i < h.count; i++) {
        const safetensors_entry_t *e = &h.entries[i];
        const safetensors_tensor_t *t = NULL;

        if (i)
            assert_true(strcmp(h.entries[i - 1].name, e->name) < 0);
        assert_int_equal(e->begin, at);
        at = e->end;
        for (size_t k = 0; k < 6; k++)
            if (strcmp(ts[k].name, e->name) == 0)
                t = &ts[k];
        assert_non_null(t);
        assert_int_equal(e->dtype, t->dtype);
        assert_int_equal(e->ndim, t->ndim);
        for (int k = 0; k < e->ndim; k++)
            assert_int_equal(e->shape[k], t->shape[k]);
        if (e->end > e->begin)
            assert_memory_equal(file + h.data_start + e->begin, t->data, e->end - e->begin);
    }
    assert_int_equal(h.data_start + at, len);
    safetensors_header_close(&h);
    free(file);
}

static void test_no_metadata(void **state)
{
    float x = 2;
    int64_t shape[1] = {1};
    safetensors_tensor_t t = {"x", LURAY_DTYPE_FLOAT32, 1, shape, &x};
    char path[128], err[512];
    safetensors_header_t h;
    uint8_t *file;
    size_t len;

    snprintf(path, sizeof path, "%s/plain.safetensors", tmpdir);
    assert_int_equal(safetensors_write(path, &t, 1, NULL, 0, err, sizeof err), 0);
    file = read_file(path, &len);
    assert_memory_equal(file + 8,
                        "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 52);
    assert_int_equal(safetensors_parse("plain", file, len, &h, err, sizeof err), 0);
    assert_int_equal(h.nmeta, 0);
    safetensors_header_close(&h);
    free(file);
}

/* Each malformed header (with data_len bytes of data) fails, naming the file and the fault. */
static void expect_bad(const char *json, size_t data_len, const char *why)
{
    safetensors_header_t h;
    char err[512] = "";
    size_t len;
    uint8_t *file = image(json, data_len, &len);

    assert_true(safetensors_parse("bad.st", file, len, &h, err, sizeof err) < 0);
    if (!strstr(err, why) || !strstr(err, "safetensors file 'bad.st'"))
        fail_msg("header %s: message \"%s\" lacks \"%s\"", json, err, why);
    assert_null(h.entries);
    free(file);
}

static void test_malformed(void **state)
{
    static const uint8_t short_file[5] = {1, 0, 0, 0, 0};
    uint8_t over[8] = {0, 0, 0, 0x40, 0, 0, 0, 0}, past[12] = {200, 0, 0, 0, 0, 0, 0, 0, '{'};
    safetensors_header_t h;
    char err[512];

    assert_true(safetensors_parse("bad.st", short_file, 5, &h, err, sizeof err) < 0);
    assert_non_null(strstr(err, "too short"));
    assert_true(safetensors_parse("bad.st", over, 8, &h, err, sizeof err) < 0);
    assert_non_null(strstr(err, "over the limit"));
    assert_true(safetensors_parse("bad.st", past, 12, &h, err, sizeof err) < 0);
    assert_non_null(strstr(err, "runs past the end"));

    expect_bad("", 0, "does not start with '{'");
    expect_bad("[1, 2]", 0, "does not start with '{'");
    expect_bad("{\"a\":", 0, "not valid JSON");
    expect_bad("{} x", 0, "bytes after its JSON object");
    expect_bad("{\"\xC3\x28\":1}", 0, "not valid UTF-8");
    expect_bad("{\"a\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2,
               "dtype 'F16' is not supported");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 'a': shape");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
               "non-negative integer");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0.5,4]}}", 4,
               "data_offsets is not a list");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
               "data_offsets is not a list");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 2,
               "out of range");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4,
               "out of range");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
               "hold 8 bytes, its shape and dtype need 4");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
               12, "tensors 'a' and 'b' overlap");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
               12, "bytes 4 to 8 of the data belong to no tensor");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
               "bytes 4 to 8 of the data belong to no tensor");
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
               "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
               2, "tensor 'a' appears twice");
    expect_bad("{\"__metadata__\":{\"k\":1}}", 0, "__metadata__ value of 'k' is not a string");
    expect_bad("{\"__metadata__\":[]}", 0, "__metadata__ is not an object");
    expect_bad("{\"a\":[1]}", 0, "tensor 'a': its entry is not an object");
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}",
               1, "at most 8 integers");
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],"
               "\"data_offsets\":[0,1]}}", 1, "shape too large");
}

/* A header padded with spaces, an empty file of tensors, and no tensor at all are fine. */
static void test_accepted_variants(void **state)
{
    safetensors_header_t h;
    char err[512];
    size_t len;
    uint8_t *file = image("{\"e\":{\"dtype\":\"I64\",\"shape\":[0],\"data_offsets\":[0,0]}}   ",
                          0, &len);

    assert_int_equal(safetensors_parse("ok.st", file, len, &h, err, sizeof err), 0);
    assert_int_equal(h.count, 1);
    assert_int_equal(h.entries[0].shape[0], 0);
    safetensors_header_close(&h);
    free(file);
    file = image("{}", 0, &len);
    assert_int_equal(safetensors_parse("ok.st", file, len, &h, err, sizeof err), 0);
    assert_int_equal(h.count, 0);
    safetensors_header_close(&h);
    free(file);
}

static int count_files(void)
{
    struct dirent *e;
    int n = 0;
    DIR *d = opendir(tmpdir);

    assert_non_null(d);
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void test_write_errors(void **state)
{
    float x = 1;
    int64_t shape[1] = {1};
    safetensors_tensor_t ts[2] = {{"__metadata__", LURAY_DTYPE_FLOAT32, 1, shape, &x},
                                  {"x", LURAY_DTYPE_FLOAT32, 1, shape, &x}};
    safetensors_meta_t bad_meta = {"k", "\xFF"};
    char path[128], err[512];
    int before = count_files();

    snprintf(path, sizeof path, "%s/w.safetensors", tmpdir);
    assert_true(safetensors_write(path, ts, 1, NULL, 0, err, sizeof err) < 0);
    assert_non_null(strstr(err, "not allowed"));
    ts[0].name = "x";
    assert_true(safetensors_write(path, ts, 2, NULL, 0, err, sizeof err) < 0);
    assert_non_null(strstr(err, "tensor 'x' given twice"));
    assert_true(safetensors_write(path, ts + 1, 1, &bad_meta, 1, err, sizeof err) < 0);
    assert_non_null(strstr(err, "UTF-8"));
    snprintf(path, sizeof path, "%s/missing/dir/w.safetensors", tmpdir);
    assert_true(safetensors_write(path, ts + 1, 1, NULL, 0, err, sizeof err) < 0);
    assert_non_null(strstr(err, "cannot create"));
    assert_int_equal(count_files(), before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),        cmocka_unit_test(test_no_metadata),
        cmocka_unit_test(test_malformed),         cmocka_unit_test(test_accepted_variants),
        cmocka_unit_test(test_write_errors),
    };

    return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
