/* Named POSIX shared-memory segments (/dev/shm/<name>): the owner creates and unlinks one, other
 * processes map the existing one by name. */
#ifndef LURAY_CORE_SHM_H
#define LURAY_CORE_SHM_H

#include <stdbool.h>
#include <stddef.h>

#define LURAY_SHM_NAME_MAX 255

typedef struct {
    char name[LURAY_SHM_NAME_MAX + 1]; /* as given, without the leading '/' */
    void *base;                        /* NULL when not mapped */
    size_t size;
    int fd; /* -1 when closed */
} luray_shm_t;

/* Creates a new segment of `size` bytes (fails with LURAY_EEXIST if the name is taken) and maps it
 * read-write. `name` may start with '/'; it must not contain any other '/'. Returns 0 or a
 * LURAY_E* code (out is then closed and safe to pass to luray_shm_close). */
int luray_shm_create(const char *name, size_t size, luray_shm_t *out);
/* Maps an existing segment; `size` 0 maps the segment's whole current size. */
int luray_shm_open(const char *name, size_t size, luray_shm_t *out);
/* Unmaps and closes; the segment itself stays until unlinked. A closed m is a no-op. */
void luray_shm_close(luray_shm_t *m);
/* Removes the name; mappings that exist stay valid until unmapped. */
int luray_shm_unlink(const char *name);

#endif
