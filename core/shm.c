/* Named POSIX shared-memory segments: shm_open + ftruncate + mmap(MAP_SHARED | MAP_NORESERVE). */
#include "shm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errors.h"

static int errno_to_luray(int e)
{
    switch (e) {
    case EEXIST:
        return LURAY_EEXIST;
    case ENOENT:
        return LURAY_ENOENT;
    case ENOMEM:
    case ENOSPC:
        return LURAY_ENOMEM;
    case EINVAL:
    case ENAMETOOLONG:
        return LURAY_EINVAL;
    default:
        return LURAY_EIO;
    }
}

/* shm_open wants exactly one leading '/' and no other. */
static int shm_path(const char *name, char *path, size_t pathlen)
{
    if (!name)
        return LURAY_EINVAL;
    if (name[0] == '/')
        name++;
    if (!name[0] || strchr(name, '/') || strlen(name) > LURAY_SHM_NAME_MAX - 1)
        return LURAY_EINVAL;
    snprintf(path, pathlen, "/%s", name);
    return 0;
}

static void shm_reset(luray_shm_t *m)
{
    m->name[0] = '\0';
    m->base = NULL;
    m->size = 0;
    m->fd = -1;
}

static int shm_map(luray_shm_t *m, const char *path, size_t size)
{
    void *p;

    if (size == 0) /* mmap refuses empty mappings; an empty segment maps nothing */
        goto done;
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, m->fd, 0);
    if (p == MAP_FAILED)
        return errno_to_luray(errno);
    m->base = p;
done:
    m->size = size;
    snprintf(m->name, sizeof m->name, "%s", path + 1);
    return 0;
}

int luray_shm_create(const char *name, size_t size, luray_shm_t *out)
{
    char path[LURAY_SHM_NAME_MAX + 2];
    int rc;

    shm_reset(out);
    if ((rc = shm_path(name, path, sizeof path)) < 0)
        return rc;
    out->fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out->fd < 0)
        return errno_to_luray(errno);
    /* ftruncate keeps the segment sparse: pages cost memory only once touched. */
    if (ftruncate(out->fd, (off_t)size) < 0) {
        rc = errno_to_luray(errno);
        goto err_unlink;
    }
    if ((rc = shm_map(out, path, size)) < 0)
        goto err_unlink;
    return 0;

err_unlink:
    shm_unlink(path);
    close(out->fd);
    shm_reset(out);
    return rc;
}

int luray_shm_open(const char *name, size_t size, luray_shm_t *out)
{
    char path[LURAY_SHM_NAME_MAX + 2];
    struct stat st;
    int rc;

    shm_reset(out);
    if ((rc = shm_path(name, path, sizeof path)) < 0)
        return rc;
    out->fd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
    if (out->fd < 0)
        return errno_to_luray(errno);
    if (fstat(out->fd, &st) < 0) {
        rc = errno_to_luray(errno);
        goto err_close;
    }
    if (size == 0)
        size = (size_t)st.st_size;
    else if ((size_t)st.st_size < size) { /* touching past the end would SIGBUS */
        rc = LURAY_EINVAL;
        goto err_close;
    }
    if ((rc = shm_map(out, path, size)) < 0)
        goto err_close;
    return 0;

err_close:
    close(out->fd);
    shm_reset(out);
    return rc;
}

void luray_shm_close(luray_shm_t *m)
{
    if (!m)
        return;
    if (m->base)
        munmap(m->base, m->size);
    if (m->fd >= 0)
        close(m->fd);
    shm_reset(m);
}

int luray_shm_unlink(const char *name)
{
    char path[LURAY_SHM_NAME_MAX + 2];
    int rc;

    if ((rc = shm_path(name, path, sizeof path)) < 0)
        return rc;
    if (shm_unlink(path) < 0)
        return errno_to_luray(errno);
    return 0;
}
