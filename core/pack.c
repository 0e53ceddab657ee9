/* Packing a directory tree into one blob, unpacking it into a fresh directory, and the blob's
 * hash (see pack.h for the format). */
#include "pack.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "buf.h"
#include "errors.h"
#include "errors_str.h"
#include "log.h"

#define HEADER_BYTES 8 /* magic, count */
/* Smallest entry: type, path_len, a 1-byte path, mode, size. */
#define ENTRY_MIN (1 + 4 + 1 + 4 + 8)

/* ---- packing ---- */

typedef struct {
    const char *root;
    uint64_t limit;
    uint64_t total;
    uint32_t count;
    luray_buf_t buf;
    char *err;
    size_t errlen;
} packer_t;

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int not_dots(const struct dirent *e)
{
    return strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
}

static void put_entry_head(packer_t *pk, uint8_t type, const char *rel, uint32_t mode,
                           uint64_t size)
{
    size_t n = strlen(rel);
    luray_buf_put_u8(&pk->buf, type);
    luray_buf_put_u32(&pk->buf, (uint32_t)n);
    luray_buf_put(&pk->buf, rel, n);
    luray_buf_put_u32(&pk->buf, mode);
    luray_buf_put_u64(&pk->buf, size);
    pk->count++;
}

/* Appends exactly size bytes of the file at path. */
static int read_into(packer_t *pk, const char *path, uint64_t size)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        luray_set_err(pk->err, pk->errlen, "cannot read %s: %s", path, strerror(errno));
        return LURAY_EIO;
    }
    int rc = luray_buf_reserve(&pk->buf, (size_t)size);
    if (rc) {
        luray_set_err(pk->err, pk->errlen, "out of memory packing %s", path);
        goto out_close;
    }
    uint8_t *dst = pk->buf.data + pk->buf.len;
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, dst + got, (size_t)size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            luray_set_err(pk->err, pk->errlen, "cannot read %s: %s", path, strerror(errno));
            rc = LURAY_EIO;
            goto out_close;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    if (got != size) {
        luray_set_err(pk->err, pk->errlen, "%s shrank while it was packed", path);
        rc = LURAY_EIO;
        goto out_close;
    }
    pk->buf.len += (size_t)size;
out_close:
    close(fd);
    return rc;
}

static int pack_tree(packer_t *pk, const char *rel);

static int pack_file(packer_t *pk, const char *path, const char *rel, const struct stat *st)
{
    uint64_t size = (uint64_t)st->st_size;
    if (size > LURAY_PACK_FILE_MAX) {
        luray_log(LURAY_LOG_WARN, "pack", "left out %s: %llu bytes is more than the %llu MiB a "
                  "packed file may have", path, (unsigned long long)size,
                  (unsigned long long)(LURAY_PACK_FILE_MAX >> 20));
        return 0;
    }
    if (size > pk->limit - pk->total) {
        luray_set_err(pk->err, pk->errlen,
                "%s (%llu bytes) brings %s past its limit of %llu bytes; make the folder smaller",
                path, (unsigned long long)size, pk->root, (unsigned long long)pk->limit);
        return LURAY_ETOOBIG;
    }
    pk->total += size;
    put_entry_head(pk, LURAY_PACK_FILE, rel, (st->st_mode & 0111) ? 0755 : 0644, size);
    return read_into(pk, path, size);
}

static int pack_entry(packer_t *pk, const char *rel)
{
    char path[PATH_MAX];
    struct stat st;
    if (snprintf(path, sizeof(path), "%s/%s", pk->root, rel) >= (int)sizeof(path)) {
        luray_set_err(pk->err, pk->errlen, "path too long: %s/%s", pk->root, rel);
        return LURAY_EINVAL;
    }
    if (lstat(path, &st) != 0) {
        luray_set_err(pk->err, pk->errlen, "cannot read %s: %s", path, strerror(errno));
        return LURAY_EIO;
    }
    if (S_ISDIR(st.st_mode)) {
        put_entry_head(pk, LURAY_PACK_DIR, rel, 0755, 0);
        return pack_tree(pk, rel);
    }
    if (S_ISREG(st.st_mode))
        return pack_file(pk, path, rel, &st);
    luray_set_err(pk->err, pk->errlen, "%s is %s; a packed folder holds only files and folders",
            path, S_ISLNK(st.st_mode) ? "a symbolic link" : "a special file");
    return LURAY_EINVAL;
}

/* Packs what the folder rel ("" for the root) holds, names sorted bytewise. */
static int pack_tree(packer_t *pk, const char *rel)
{
    char path[PATH_MAX], child[PATH_MAX];
    struct dirent **names = NULL;
    snprintf(path, sizeof(path), "%s%s%s", pk->root, *rel ? "/" : "", rel);
    int n = scandir(path, &names, not_dots, by_name);
    if (n < 0) {
        luray_set_err(pk->err, pk->errlen, "cannot read the folder %s: %s", path, strerror(errno));
        return LURAY_EIO;
    }
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        if (strcmp(names[i]->d_name, ".git") == 0)
            continue;
        if (snprintf(child, sizeof(child), "%s%s%s", rel, *rel ? "/" : "", names[i]->d_name) >=
            (int)sizeof(child)) {
            luray_set_err(pk->err, pk->errlen, "path too long in %s: %s", path, names[i]->d_name);
            rc = LURAY_EINVAL;
            break;
        }
        rc = pack_entry(pk, child);
        if (rc == 0 && pk->buf.err) {
            luray_set_err(pk->err, pk->errlen, "out of memory packing %s", path);
            rc = LURAY_ENOMEM;
        }
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

int luray_pack_dir(const char *dir, uint64_t limit, uint8_t **out, size_t *len, char *err,
                   size_t errlen)
{
    struct stat st;
    if (!dir || !*dir) {
        luray_set_err(err, errlen, "no folder to pack");
        return LURAY_EINVAL;
    }
    if (stat(dir, &st) != 0) {
        luray_set_err(err, errlen, "cannot pack %s: %s", dir, strerror(errno));
        return LURAY_EINVAL;
    }
    if (!S_ISDIR(st.st_mode)) {
        luray_set_err(err, errlen, "cannot pack %s: not a folder", dir);
        return LURAY_EINVAL;
    }
    packer_t pk = {.root = dir, .limit = limit ? limit : LURAY_PACK_DEFAULT_LIMIT, .err = err,
                   .errlen = errlen};
    luray_buf_init(&pk.buf);
    luray_buf_put(&pk.buf, LURAY_PACK_MAGIC, 4);
    luray_buf_put_u32(&pk.buf, 0);
    int rc = pack_tree(&pk, "");
    if (rc == 0 && pk.buf.err) {
        luray_set_err(err, errlen, "out of memory packing %s", dir);
        rc = LURAY_ENOMEM;
    }
    if (rc) {
        luray_buf_close(&pk.buf);
        return rc;
    }
    for (int i = 0; i < 4; i++)
        pk.buf.data[4 + i] = (uint8_t)(pk.count >> (8 * i));
    *out = luray_buf_steal(&pk.buf, len);
    return 0;
}

/* ---- unpacking ---- */

typedef struct {
    uint8_t type;
    char path[PATH_MAX];
    uint32_t mode;
    uint64_t size;
    const uint8_t *data;
} entry_t;

/* The path for an error message: unprintable bytes shown as '?'. */
static void printable(char *out, size_t outlen, const uint8_t *p, size_t n)
{
    size_t k = 0;
    for (; k < n && k + 4 < outlen; k++)
        out[k] = (p[k] >= 0x20 && p[k] < 0x7f) ? (char)p[k] : '?';
    if (k < n) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
}

/* Relative, '/'-separated, no empty, "." or ".." component, no NUL. */
static const char *path_problem(const uint8_t *p, size_t n)
{
    if (n == 0)
        return "an empty path";
    if (memchr(p, '\0', n))
        return "a NUL byte in its path";
    if (p[0] == '/')
        return "an absolute path";
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && p[i] != '/')
            continue;
        size_t clen = i - start;
        if (clen == 0)
            return "an empty component in its path";
        if ((clen == 1 && p[start] == '.') || (clen == 2 && p[start] == '.' && p[start + 1] == '.'))
            return "'.' or '..' in its path";
        start = i + 1;
    }
    return NULL;
}

/* Reads entry number idx; on failure err names it. */
static int read_entry(luray_rd_t *r, uint32_t idx, entry_t *e, char *err, size_t errlen)
{
    char shown[128];
    if (luray_rd_left(r) < 1 + 4) {
        luray_set_err(err, errlen, "truncated blob: entry %u of the pack is missing", idx + 1);
        return LURAY_EPROTO;
    }
    e->type = luray_rd_u8(r);
    uint32_t plen = luray_rd_u32(r);
    if (plen >= sizeof(e->path) || plen > luray_rd_left(r)) {
        luray_set_err(err, errlen, "%s blob: entry %u has a path of %u bytes",
                plen > luray_rd_left(r) ? "truncated" : "garbled", idx + 1, plen);
        return LURAY_EPROTO;
    }
    const uint8_t *path = luray_rd_bytes(r, plen);
    printable(shown, sizeof(shown), path, plen);
    const char *why = path_problem(path, plen);
    if (why) {
        luray_set_err(err, errlen, "refused entry %u (%s): %s", idx + 1, shown, why);
        return LURAY_EPROTO;
    }
    memcpy(e->path, path, plen);
    e->path[plen] = '\0';
    if (luray_rd_left(r) < 4 + 8) {
        luray_set_err(err, errlen, "truncated blob: entry %u (%s) ends in its header", idx + 1, shown);
        return LURAY_EPROTO;
    }
    e->mode = luray_rd_u32(r);
    e->size = luray_rd_u64(r);
    if (e->type == LURAY_PACK_SYMLINK) {
        luray_set_err(err, errlen, "refused entry %u (%s): a symbolic link", idx + 1, shown);
        return LURAY_EPROTO;
    }
    if (e->type != LURAY_PACK_FILE && e->type != LURAY_PACK_DIR) {
        luray_set_err(err, errlen, "refused entry %u (%s): type %u is neither a file nor a folder",
                idx + 1, shown, e->type);
        return LURAY_EPROTO;
    }
    if ((e->mode & ~0777u) != 0 || (e->type == LURAY_PACK_DIR && e->size != 0)) {
        luray_set_err(err, errlen, "garbled blob: entry %u (%s) has mode %o and size %llu", idx + 1,
                shown, e->mode, (unsigned long long)e->size);
        return LURAY_EPROTO;
    }
    if (e->size > luray_rd_left(r)) {
        luray_set_err(err, errlen, "truncated blob: entry %u (%s) needs %llu bytes, %zu are left",
                idx + 1, shown, (unsigned long long)e->size, luray_rd_left(r));
        return LURAY_EPROTO;
    }
    e->data = luray_rd_bytes(r, (size_t)e->size);
    return 0;
}

/* Opens the folder holding e->path below root, one component at a time and never through a
 * link; *last points at the final component. */
static int open_parent(int root, entry_t *e, const char **last, char *err, size_t errlen)
{
    int fd = dup(root);
    char *p = e->path;
    char *slash;
    while (fd >= 0 && (slash = strchr(p, '/')) != NULL) {
        *slash = '\0';
        int next = openat(fd, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int saved = errno;
        *slash = '/';
        close(fd);
        if (next < 0) {
            luray_set_err(err, errlen, "refused entry %s: its folder %.*s %s", e->path,
                    (int)(slash - e->path), e->path,
                    saved == ENOENT ? "is not in the blob before it"
                                    : "is a link or not a folder");
            return LURAY_EPROTO;
        }
        fd = next;
        p = slash + 1;
    }
    if (fd < 0) {
        luray_set_err(err, errlen, "cannot open the target folder: %s", strerror(errno));
        return LURAY_EIO;
    }
    *last = p;
    return fd;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return LURAY_EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int create_file(int dirfd, const char *name, entry_t *e, char *err, size_t errlen)
{
    int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        bool twice = errno == EEXIST;
        luray_set_err(err, errlen, "%s entry %s: %s", twice ? "refused" : "cannot create", e->path,
                twice ? "it appears twice in the blob" : strerror(errno));
        return twice ? LURAY_EPROTO : LURAY_EIO;
    }
    int rc = write_all(fd, e->data, (size_t)e->size);
    if (rc == 0 && fchmod(fd, e->mode & 0755) != 0)
        rc = LURAY_EIO;
    if (rc)
        luray_set_err(err, errlen, "cannot write %s: %s", e->path, strerror(errno));
    if (close(fd) != 0 && rc == 0) {
        luray_set_err(err, errlen, "cannot write %s: %s", e->path, strerror(errno));
        rc = LURAY_EIO;
    }
    return rc;
}

static int create_entry(int root, entry_t *e, char *err, size_t errlen)
{
    const char *name = NULL;
    int dirfd = open_parent(root, e, &name, err, errlen);
    if (dirfd < 0)
        return dirfd;
    int rc = 0;
    if (e->type == LURAY_PACK_FILE) {
        rc = create_file(dirfd, name, e, err, errlen);
    } else if (mkdirat(dirfd, name, (e->mode & 0755) | 0700) != 0) {
        bool twice = errno == EEXIST;
        luray_set_err(err, errlen, "%s entry %s: %s", twice ? "refused" : "cannot create", e->path,
                twice ? "it appears twice in the blob" : strerror(errno));
        rc = twice ? LURAY_EPROTO : LURAY_EIO;
    }
    close(dirfd);
    return rc;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    if (ftw->level == 0)
        return 0;
    int r = flag == FTW_DP ? rmdir(path) : unlink(path);
    return r != 0 && errno != ENOENT ? -1 : 0;
}

/* Removes what dir holds (not following links), and dir itself when remove_self. */
static void remove_tree(const char *dir, bool remove_self)
{
    nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    if (remove_self)
        rmdir(dir);
}

static bool dir_is_empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    struct dirent *e;
    bool empty = true;
    while (empty && (e = readdir(d)) != NULL)
        empty = !not_dots(e);
    closedir(d);
    return empty;
}

/* Creates target (or takes an empty one) and opens it; *made says whether it was created. */
static int open_target(const char *target, bool *made, char *err, size_t errlen)
{
    *made = mkdir(target, 0700) == 0;
    if (!*made && (errno != EEXIST || !dir_is_empty(target))) {
        luray_set_err(err, errlen, "cannot unpack into %s: %s", target,
                errno == EEXIST ? "it exists and is not an empty folder" : strerror(errno));
        return errno == EEXIST ? LURAY_EEXIST : LURAY_EIO;
    }
    int fd = open(target, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        luray_set_err(err, errlen, "cannot open %s: %s", target, strerror(errno));
        if (*made)
            rmdir(target);
        return LURAY_EIO;
    }
    return fd;
}

static int unpack_entries(luray_rd_t *r, uint32_t count, int root, char *err, size_t errlen)
{
    entry_t *e = malloc(sizeof(*e));
    if (!e) {
        luray_set_err(err, errlen, "out of memory");
        return LURAY_ENOMEM;
    }
    int rc = 0;
    for (uint32_t i = 0; i < count && rc == 0; i++) {
        rc = read_entry(r, i, e, err, errlen);
        if (rc == 0)
            rc = create_entry(root, e, err, errlen);
    }
    if (rc == 0 && luray_rd_left(r) != 0) {
        luray_set_err(err, errlen, "garbled blob: %zu bytes follow its last entry", luray_rd_left(r));
        rc = LURAY_EPROTO;
    }
    free(e);
    return rc;
}

int luray_pack_unpack(const uint8_t *p, size_t len, const char *target_dir, char *err,
                      size_t errlen)
{
    if (len < 4 || memcmp(p, LURAY_PACK_MAGIC, 4) != 0) {
        luray_set_err(err, errlen, "not a packed folder (no " LURAY_PACK_MAGIC " header)");
        return LURAY_EPROTO;
    }
    if (len < HEADER_BYTES) {
        luray_set_err(err, errlen, "truncated blob: it ends in its header");
        return LURAY_EPROTO;
    }
    luray_rd_t r;
    luray_rd_init(&r, p + 4, len - 4);
    uint32_t count = luray_rd_u32(&r);
    if (count > luray_rd_left(&r) / ENTRY_MIN) {
        luray_set_err(err, errlen, "truncated or garbled blob: it claims %u entries in %zu bytes",
                count, len);
        return LURAY_EPROTO;
    }
    bool made = false;
    int root = open_target(target_dir, &made, err, errlen);
    if (root < 0)
        return root;
    int rc = unpack_entries(&r, count, root, err, errlen);
    close(root);
    if (rc)
        remove_tree(target_dir, made);
    return rc;
}

int luray_pack_hash(const uint8_t *p, size_t len, char out[LURAY_PACK_HASH_HEX])
{
    uint8_t h[16];
    if (sodium_init() < 0)
        return LURAY_EIO;
    crypto_generichash(h, sizeof(h), p, len, NULL, 0);
    sodium_bin2hex(out, LURAY_PACK_HASH_HEX, h, sizeof(h));
    return 0;
}
