/* libFuzzer target: arbitrary bytes as a safetensors file, parsed by safetensors_parse. Nothing
 * may crash, leak or read outside the input; every failure carries a message naming the file;
 * a file that parses has entries inside its data that cover it exactly, and written back by
 * safetensors_write it parses to the same tensors, bytes and metadata. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "collective/safetensors.h"

/* A scratch file for the write-back check, in a folder removed at exit. */
static char scratch_dir[64], scratch_path[96];

static void remove_scratch(void)
{
    unlink(scratch_path);
    rmdir(scratch_dir);
}

static const char *scratch_file(void)
{
    if (scratch_dir[0] == '\0') {
        snprintf(scratch_dir, sizeof(scratch_dir), "/tmp/fuzz_safetensors.XXXXXX");
        if (mkdtemp(scratch_dir) == NULL)
            abort();
        snprintf(scratch_path, sizeof(scratch_path), "%s/out.safetensors", scratch_dir);
        atexit(remove_scratch);
    }
    return scratch_path;
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;

    if (f == NULL || fseek(f, 0, SEEK_END) != 0)
        abort();
    *len = (size_t)ftell(f);
    rewind(f);
    buf = malloc(*len ? *len : 1);
    if (buf == NULL || fread(buf, 1, *len, f) != *len)
        abort();
    fclose(f);
    return buf;
}

/* The ranges lie in the data and, in order, cover it without gap or overlap. */
static void check_layout(const safetensors_header_t *h, size_t size)
{
    uint64_t total = 0;

    if (h->data_start > size)
        abort();
    for (size_t i = 0; i < h->count; i++) {
        const safetensors_entry_t *e = &h->entries[i];

        if (e->begin > e->end || e->end > size - h->data_start)
            abort();
        total += e->end - e->begin;
    }
    if (total != size - h->data_start)
        abort();
}

static void write_back(const safetensors_header_t *h, const uint8_t *data)
{
    safetensors_tensor_t *ts = calloc(h->count + 1, sizeof(*ts));
    safetensors_header_t back;
    char err[512];
    uint8_t *file;
    size_t len;

    if (ts == NULL)
        abort();
    for (size_t i = 0; i < h->count; i++) {
        const safetensors_entry_t *e = &h->entries[i];

        ts[i] = (safetensors_tensor_t){e->name, e->dtype, e->ndim, e->shape,
                                       data + h->data_start + e->begin};
    }
    if (safetensors_write(scratch_file(), ts, h->count, h->meta, h->nmeta, err, sizeof(err)) != 0) {
        /* Only names the writer refuses by design may fail: there are none in a parsed file. */
        fprintf(stderr, "write-back failed: %s\n", err);
        abort();
    }
    file = read_all(scratch_file(), &len);
    if (safetensors_parse("back", file, len, &back, err, sizeof(err)) != 0) {
        fprintf(stderr, "written file does not parse: %s\n", err);
        abort();
    }
    if (back.count != h->count || back.nmeta != h->nmeta)
        abort();
    for (size_t i = 0; i < h->count; i++) {
        const safetensors_entry_t *a = &h->entries[i], *b = &back.entries[i];

        if (strcmp(a->name, b->name) != 0 || a->dtype != b->dtype || a->ndim != b->ndim ||
            memcmp(a->shape, b->shape, sizeof(a->shape[0]) * (size_t)a->ndim) != 0 ||
            a->end - a->begin != b->end - b->begin ||
            memcmp(data + h->data_start + a->begin, file + back.data_start + b->begin,
                   a->end - a->begin) != 0)
            abort();
    }
    for (size_t i = 0; i < h->nmeta; i++)
        if (strcmp(h->meta[i].key, back.meta[i].key) != 0 ||
            strcmp(h->meta[i].value, back.meta[i].value) != 0)
            abort();
    safetensors_header_close(&back);
    free(file);
    free(ts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    safetensors_header_t h;
    char err[512] = "";

    if (safetensors_parse("fuzz.st", data, size, &h, err, sizeof(err)) != 0) {
        if (strstr(err, "safetensors file 'fuzz.st'") == NULL || h.entries != NULL)
            abort();
        return 0;
    }
    check_layout(&h, size);
    write_back(&h, data);
    safetensors_header_close(&h);
    return 0;
}
