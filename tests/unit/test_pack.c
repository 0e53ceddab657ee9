/* Unit tests of core/pack.c: round trips of a tree (nested folders, modes, empty and binary
 * files), what packing leaves out or refuses, limits, and unpacking's refusals: paths that leave
 * the target, truncated blobs at every length, garbled entries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "buf.h"
#include "errors.h"
#include "pack.h"
#include "session.h"

static char g_tmp[256];

static void path_of(char *out, const char *rel)
{
    snprintf(out, PATH_MAX, "%s/%s", g_tmp, rel);
}

static void write_file(const char *rel, const void *data, size_t len, mode_t mode)
{
    char p[PATH_MAX];
    path_of(p, rel);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static void make_dir(const char *rel)
{
    char p[PATH_MAX];
    path_of(p, rel);
    assert_int_equal(mkdir(p, 0755), 0);
}

static bool exists(const char *rel)
{
    char p[PATH_MAX];
    struct stat st;
    path_of(p, rel);
    return lstat(p, &st) == 0;
}

static void remove_rel(const char *rel)
{
    char p[PATH_MAX];
    path_of(p, rel);
    luray_session_remove(p);
}

static uint8_t g_binary[4096];

/* src/: nested folders, an executable, an empty file, binary bytes, an empty folder, and .git
 * entries that packing leaves out. */
static void make_tree(void)
{
    make_dir("src");
    make_dir("src/a");
    make_dir("src/a/b");
    make_dir("src/empty");
    make_dir("src/.git");
    write_file("src/.git/config", "x", 1, 0644);
    write_file("src/a/.git", "gitdir: x\n", 10, 0644);
    write_file("src/a/b/deep.lua", "return 42\n", 10, 0644);
    write_file("src/run.sh", "#!/bin/sh\necho hi\n", 18, 0750);
    write_file("src/empty.txt", "", 0, 0600);
    for (size_t i = 0; i < sizeof(g_binary); i++)
        g_binary[i] = (uint8_t)(i * 7 + (i >> 8));
    write_file("src/a/bin.dat", g_binary, sizeof(g_binary), 0664);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/luray-test-pack.XXXXXX");
    if (!mkdtemp(g_tmp))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return luray_session_remove(g_tmp);
}

static void pack_rel(const char *rel, uint64_t limit, uint8_t **blob, size_t *len)
{
    char p[PATH_MAX], err[512] = "";
    path_of(p, rel);
    int rc = luray_pack_dir(p, limit, blob, len, err, sizeof(err));
    if (rc != 0)
        fail_msg("pack %s: %s", p, err);
}

static int unpack_rel(const uint8_t *blob, size_t len, const char *rel, char *err, size_t errlen)
{
    char p[PATH_MAX];
    path_of(p, rel);
    return luray_pack_unpack(blob, len, p, err, errlen);
}

static void check_file(const char *rel, const void *data, size_t len, mode_t mode)
{
    char p[PATH_MAX];
    struct stat st;
    path_of(p, rel);
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 0777, mode);
    assert_int_equal((size_t)st.st_size, len);
    uint8_t *got = malloc(len + 1);
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    assert_int_equal(fread(got, 1, len + 1, f), len);
    fclose(f);
    assert_memory_equal(got, data, len);
    free(got);
}

static void test_round_trip(void **state)
{
    (void)state;
    make_tree();
    uint8_t *blob = NULL;
    size_t len = 0;
    char err[512] = "";
    pack_rel("src", 0, &blob, &len);
    assert_memory_equal(blob, "LRP1", 4);
    assert_int_equal(unpack_rel(blob, len, "out", err, sizeof(err)), 0);
    check_file("out/a/b/deep.lua", "return 42\n", 10, 0644);
    check_file("out/run.sh", "#!/bin/sh\necho hi\n", 18, 0755);
    check_file("out/empty.txt", "", 0, 0644);
    check_file("out/a/bin.dat", g_binary, sizeof(g_binary), 0644);
    assert_true(exists("out/empty"));
    assert_false(exists("out/.git"));
    assert_false(exists("out/a/.git"));

    /* The same tree packs to the same bytes, whatever the group bits; other content does not. */
    char h1[LURAY_PACK_HASH_HEX], h2[LURAY_PACK_HASH_HEX];
    assert_int_equal(luray_pack_hash(blob, len, h1), 0);
    assert_int_equal(strlen(h1), 32);
    uint8_t *again = NULL;
    size_t len2 = 0;
    write_file("src/a/b/deep.lua", "return 42\n", 10, 0664);
    pack_rel("src", 0, &again, &len2);
    assert_int_equal(len2, len);
    assert_memory_equal(again, blob, len);
    free(again);
    write_file("src/a/b/deep.lua", "return 43\n", 10, 0644);
    pack_rel("src", 0, &again, &len2);
    assert_int_equal(luray_pack_hash(again, len2, h2), 0);
    assert_string_not_equal(h1, h2);
    free(again);

    /* An existing empty folder takes a blob; a folder that holds something does not. */
    make_dir("empty_target");
    assert_int_equal(unpack_rel(blob, len, "empty_target", err, sizeof(err)), 0);
    check_file("empty_target/run.sh", "#!/bin/sh\necho hi\n", 18, 0755);
    assert_int_equal(unpack_rel(blob, len, "out", err, sizeof(err)), LURAY_EEXIST);
    assert_non_null(strstr(err, "not an empty folder"));
    free(blob);
    remove_rel("src");
    remove_rel("out");
    remove_rel("empty_target");
}

static void test_pack_refusals(void **state)
{
    (void)state;
    char p[PATH_MAX], link[PATH_MAX], err[512] = "";
    uint8_t *blob = NULL;
    size_t len = 0;
    make_dir("tree");
    write_file("tree/a.txt", "aaaaaaaaaa", 10, 0644);
    write_file("tree/b.txt", "bbbbbbbbbb", 10, 0644);
    path_of(p, "tree");

    /* The total limit: the error names the file that passed it. */
    assert_int_equal(luray_pack_dir(p, 15, &blob, &len, err, sizeof(err)), LURAY_ETOOBIG);
    assert_non_null(strstr(err, "tree/b.txt"));
    assert_non_null(strstr(err, "15 bytes"));
    assert_int_equal(luray_pack_dir(p, 20, &blob, &len, err, sizeof(err)), 0);
    free(blob);

    /* A file over the per-file limit is left out (a sparse file: no disk used). */
    path_of(link, "tree/huge.bin");
    int fd = open(link, O_WRONLY | O_CREAT, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)LURAY_PACK_FILE_MAX + 1), 0);
    close(fd);
    assert_int_equal(luray_pack_dir(p, 0, &blob, &len, err, sizeof(err)), 0);
    assert_true(len < 1024);
    assert_int_equal(unpack_rel(blob, len, "huge_out", err, sizeof(err)), 0);
    assert_true(exists("huge_out/a.txt"));
    assert_false(exists("huge_out/huge.bin"));
    free(blob);
    unlink(link);

    /* Links and special files are refused, by name. */
    path_of(link, "tree/link");
    assert_int_equal(symlink("a.txt", link), 0);
    assert_int_equal(luray_pack_dir(p, 0, &blob, &len, err, sizeof(err)), LURAY_EINVAL);
    assert_non_null(strstr(err, "tree/link is a symbolic link"));
    unlink(link);
    path_of(link, "tree/fifo");
    assert_int_equal(mkfifo(link, 0600), 0);
    assert_int_equal(luray_pack_dir(p, 0, &blob, &len, err, sizeof(err)), LURAY_EINVAL);
    assert_non_null(strstr(err, "a special file"));
    unlink(link);

    /* Not a folder. */
    path_of(link, "tree/a.txt");
    assert_int_equal(luray_pack_dir(link, 0, &blob, &len, err, sizeof(err)), LURAY_EINVAL);
    assert_non_null(strstr(err, "not a folder"));
    path_of(link, "missing");
    assert_int_equal(luray_pack_dir(link, 0, &blob, &len, err, sizeof(err)), LURAY_EINVAL);
    assert_non_null(strstr(err, "No such file"));
    remove_rel("tree");
    remove_rel("huge_out");
}

/* ---- hand-made blobs ---- */

static void blob_entry(luray_buf_t *b, uint8_t type, const char *path, uint32_t mode,
                       const char *data)
{
    size_t n = data ? strlen(data) : 0;
    luray_buf_put_u8(b, type);
    luray_buf_put_u32(b, (uint32_t)strlen(path));
    luray_buf_put(b, path, strlen(path));
    luray_buf_put_u32(b, mode);
    luray_buf_put_u64(b, n);
    luray_buf_put(b, data, n);
}

static void blob_start(luray_buf_t *b, uint32_t count)
{
    luray_buf_init(b);
    luray_buf_put(b, "LRP1", 4);
    luray_buf_put_u32(b, count);
}

/* Unpacks a blob that must be refused: nothing may be left in the target or next to it. */
static void expect_refused(luray_buf_t *b, const char *needle)
{
    char err[512] = "";
    int rc = unpack_rel(b->data, b->len, "bad/target", err, sizeof(err));
    assert_int_equal(rc, LURAY_EPROTO);
    if (!strstr(err, needle))
        fail_msg("error '%s' does not say '%s'", err, needle);
    assert_false(exists("bad/target"));
    assert_false(exists("bad/evil"));
    assert_false(exists("evil"));
    luray_buf_close(b);
}

static void test_unpack_refusals(void **state)
{
    (void)state;
    luray_buf_t b;
    make_dir("bad");

    blob_start(&b, 1);
    blob_entry(&b, LURAY_PACK_FILE, "../evil", 0644, "x");
    expect_refused(&b, "'.' or '..'");
    blob_start(&b, 2);
    blob_entry(&b, LURAY_PACK_DIR, "a", 0755, NULL);
    blob_entry(&b, LURAY_PACK_FILE, "a/../../evil", 0644, "x");
    expect_refused(&b, "entry 2 (a/../../evil)");
    blob_start(&b, 1);
    blob_entry(&b, LURAY_PACK_FILE, "/tmp/evil", 0644, "x");
    expect_refused(&b, "an absolute path");
    blob_start(&b, 1);
    blob_entry(&b, LURAY_PACK_FILE, "a//b", 0644, "x");
    expect_refused(&b, "an empty component");
    blob_start(&b, 1);
    blob_entry(&b, LURAY_PACK_FILE, "./x", 0644, "x");
    expect_refused(&b, "'.' or '..'");
    blob_start(&b, 1);
    blob_entry(&b, LURAY_PACK_FILE, "", 0644, "x");
    expect_refused(&b, "an empty path");
    blob_start(&b, 1);
    blob_entry(&b, LURAY_PACK_SYMLINK, "l", 0777, "/etc/passwd");
    expect_refused(&b, "entry 1 (l): a symbolic link");
    blob_start(&b, 1);
    blob_entry(&b, 9, "x", 0644, "x");
    expect_refused(&b, "type 9");
    blob_start(&b, 1);
    blob_entry(&b, LURAY_PACK_FILE, "x", 04755, "x");
    expect_refused(&b, "mode 4755");
    /* A file whose folder is not in the blob, and a path through a file. */
    blob_start(&b, 1);
    blob_entry(&b, LURAY_PACK_FILE, "nodir/x", 0644, "x");
    expect_refused(&b, "its folder nodir is not in the blob");
    blob_start(&b, 2);
    blob_entry(&b, LURAY_PACK_FILE, "f", 0644, "x");
    blob_entry(&b, LURAY_PACK_FILE, "f/x", 0644, "x");
    expect_refused(&b, "its folder f is a link or not a folder");
    /* Twice the same name. */
    blob_start(&b, 2);
    blob_entry(&b, LURAY_PACK_FILE, "x", 0644, "1");
    blob_entry(&b, LURAY_PACK_FILE, "x", 0644, "2");
    expect_refused(&b, "appears twice");
    blob_start(&b, 2);
    blob_entry(&b, LURAY_PACK_DIR, "d", 0755, NULL);
    blob_entry(&b, LURAY_PACK_DIR, "d", 0755, NULL);
    expect_refused(&b, "appears twice");
    /* Garbled counts, trailing bytes, the magic. */
    blob_start(&b, 1000000);
    blob_entry(&b, LURAY_PACK_FILE, "x", 0644, "1");
    expect_refused(&b, "claims 1000000 entries");
    blob_start(&b, 1);
    blob_entry(&b, LURAY_PACK_FILE, "x", 0644, "1");
    luray_buf_put(&b, "junk", 4);
    expect_refused(&b, "4 bytes follow its last entry");
    blob_start(&b, 0);
    b.data[0] = 'X';
    expect_refused(&b, "no LRP1 header");
    /* A path length past the end. */
    blob_start(&b, 1);
    luray_buf_put_u8(&b, LURAY_PACK_FILE);
    luray_buf_put_u32(&b, 0xffffff);
    luray_buf_put(&b, "abcdefghijklmnopqrstuvwxyz", 26);
    expect_refused(&b, "path of 16777215 bytes");
    remove_rel("bad");
}

/* Every proper prefix of a valid blob is refused, and leaves nothing behind. */
static void test_truncated(void **state)
{
    (void)state;
    make_dir("t");
    make_dir("t/d");
    write_file("t/d/f.lua", "print(1)\n", 9, 0644);
    write_file("t/e", "", 0, 0644);
    write_file("t/z", "zz", 2, 0755);
    uint8_t *blob = NULL;
    size_t len = 0;
    char err[512];
    pack_rel("t", 0, &blob, &len);
    for (size_t n = 0; n < len; n++) {
        err[0] = '\0';
        int rc = unpack_rel(blob, n, "tout", err, sizeof(err));
        if (rc != LURAY_EPROTO)
            fail_msg("a blob cut to %zu of %zu bytes gave %d", n, len, rc);
        assert_true(err[0] != '\0');
        assert_false(exists("tout"));
    }
    assert_int_equal(unpack_rel(blob, len, "tout", err, sizeof(err)), 0);
    check_file("tout/d/f.lua", "print(1)\n", 9, 0644);
    /* The error of a blob cut inside a file's bytes names that file. */
    assert_int_equal(unpack_rel(blob, len - 1, "tout2", err, sizeof(err)), LURAY_EPROTO);
    assert_non_null(strstr(err, "(z)"));
    free(blob);
    remove_rel("t");
    remove_rel("tout");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_pack_refusals),
        cmocka_unit_test(test_unpack_refusals),
        cmocka_unit_test(test_truncated),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
