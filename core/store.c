/* The node's object store: a TLSF allocator over one shm segment, an open-addressing table of
 * objects, an LRU list of spillable objects, and spill files named by object id. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errors.h"
#include "shm.h"
#include "store_alloc.h"

enum { OBJ_UNSEALED, OBJ_SEALED, OBJ_SPILLED };

typedef struct obj {
    luray_oid_t id;
    uint64_t size;
    luray_alloc_block_t *block; /* NULL while spilled */
    uint32_t pins;
    uint8_t state;
    bool deleted; /* freed when the last pin goes */
    bool in_lru;  /* sealed, in memory, unpinned, not deleted: a spill candidate */
    struct obj *lru_prev, *lru_next;
} obj_t;

struct luray_store {
    luray_shm_t shm;
    luray_alloc_t alloc;
    char *spill_dir; /* NULL: no spilling */
    bool made_spill_dir;
    obj_t **slots; /* open addressing, linear probing; NULL is empty */
    size_t cap;    /* a power of two */
    size_t count;
    obj_t *lru_head, *lru_tail; /* head: least recently used */
    uint64_t lru_bytes;         /* arena bytes the LRU objects hold */
    uint64_t n_live, n_spilled, spilled_bytes, n_spills, n_restores;
};

/* ---- object table ---- */

static size_t slot_of(const luray_store_t *s, luray_oid_t id)
{
    size_t i = (size_t)luray_oid_hash(id) & (s->cap - 1);

    while (s->slots[i] && !luray_oid_eq(s->slots[i]->id, id))
        i = (i + 1) & (s->cap - 1);
    return i;
}

static obj_t *table_find(const luray_store_t *s, luray_oid_t id)
{
    return s->slots[slot_of(s, id)];
}

static int table_grow(luray_store_t *s)
{
    obj_t **old = s->slots;
    size_t old_cap = s->cap, i;

    s->slots = calloc(old_cap * 2, sizeof *s->slots);
    if (!s->slots) {
        s->slots = old;
        return LURAY_ENOMEM;
    }
    s->cap = old_cap * 2;
    for (i = 0; i < old_cap; i++)
        if (old[i])
            s->slots[slot_of(s, old[i]->id)] = old[i];
    free(old);
    return 0;
}

/* Backward-shift deletion keeps probe chains whole without tombstones. */
static void table_remove(luray_store_t *s, luray_oid_t id)
{
    size_t mask = s->cap - 1, i = slot_of(s, id), j, home;

    if (!s->slots[i])
        return;
    s->slots[i] = NULL;
    for (j = (i + 1) & mask; s->slots[j]; j = (j + 1) & mask) {
        home = (size_t)luray_oid_hash(s->slots[j]->id) & mask;
        /* Move j into the hole at i unless its home lies cyclically in (i, j]. */
        if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
            s->slots[i] = s->slots[j];
            s->slots[j] = NULL;
            i = j;
        }
    }
    s->count--;
}

/* ---- LRU of spill candidates ---- */

static void lru_push(luray_store_t *s, obj_t *o)
{
    o->lru_prev = s->lru_tail;
    o->lru_next = NULL;
    if (s->lru_tail)
        s->lru_tail->lru_next = o;
    else
        s->lru_head = o;
    s->lru_tail = o;
    o->in_lru = true;
    s->lru_bytes += o->block->size;
}

static void lru_remove(luray_store_t *s, obj_t *o)
{
    if (!o->in_lru)
        return;
    if (o->lru_prev)
        o->lru_prev->lru_next = o->lru_next;
    else
        s->lru_head = o->lru_next;
    if (o->lru_next)
        o->lru_next->lru_prev = o->lru_prev;
    else
        s->lru_tail = o->lru_prev;
    o->lru_prev = o->lru_next = NULL;
    o->in_lru = false;
    s->lru_bytes -= o->block->size;
}

/* ---- spill files ---- */

static int spill_path(const luray_store_t *s, luray_oid_t id, char *path, size_t len)
{
    char hex[LURAY_OID_HEX_LEN + 1];
    int n;

    luray_oid_hex(id, hex);
    n = snprintf(path, len, "%s/%s", s->spill_dir, hex);
    return n < 0 || (size_t)n >= len ? LURAY_EINVAL : 0;
}

static int write_all(int fd, const uint8_t *p, uint64_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n > (1u << 30) ? (1u << 30) : (size_t)n);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return LURAY_EIO;
        }
        p += w;
        n -= (uint64_t)w;
    }
    return 0;
}

static int read_all(int fd, uint8_t *p, uint64_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, p, n > (1u << 30) ? (1u << 30) : (size_t)n);

        if (r < 0) {
            if (errno == EINTR)
                continue;
            return LURAY_EIO;
        }
        if (r == 0) /* the file is shorter than the object */
            return LURAY_EIO;
        p += r;
        n -= (uint64_t)r;
    }
    return 0;
}

static int spill_one(luray_store_t *s, obj_t *o)
{
    char path[PATH_MAX];
    uint8_t *src = (uint8_t *)s->shm.base + o->block->offset;
    int fd, rc;

    if ((rc = spill_path(s, o->id, path, sizeof path)) < 0)
        return rc;
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return LURAY_EIO;
    rc = write_all(fd, src, o->size);
    if (close(fd) < 0 && rc == 0)
        rc = LURAY_EIO;
    if (rc < 0)
        goto err_unlink;
    lru_remove(s, o);
    luray_alloc_put(&s->alloc, o->block);
    o->block = NULL;
    o->state = OBJ_SPILLED;
    s->n_spilled++;
    s->spilled_bytes += o->size;
    s->n_spills++;
    return 0;

err_unlink:
    unlink(path);
    return rc;
}

/* Allocates `size` bytes, spilling least recently used objects while that could help. */
static int alloc_spilling(luray_store_t *s, uint64_t size, luray_alloc_block_t **out)
{
    uint64_t need = (size ? size + LURAY_ALLOC_ALIGN - 1 : LURAY_ALLOC_ALIGN) /
                    LURAY_ALLOC_ALIGN * LURAY_ALLOC_ALIGN;
    int rc;

    for (;;) {
        rc = luray_alloc_get(&s->alloc, size, out);
        if (rc != LURAY_EFULL)
            return rc;
        /* Give up without spilling when even spilling every candidate leaves too few bytes. */
        if (!s->spill_dir || !s->lru_head ||
            s->alloc.capacity - s->alloc.used + s->lru_bytes < need)
            return LURAY_EFULL;
        if ((rc = spill_one(s, s->lru_head)) < 0)
            return rc;
    }
}

static int restore(luray_store_t *s, obj_t *o)
{
    char path[PATH_MAX];
    luray_alloc_block_t *b;
    struct stat st;
    int fd, rc;

    if ((rc = spill_path(s, o->id, path, sizeof path)) < 0)
        return rc;
    /* Check the file before making room, so a lost file does not spill others for nothing. */
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return LURAY_EIO;
    if (fstat(fd, &st) < 0 || (uint64_t)st.st_size != o->size) {
        rc = LURAY_EIO;
        goto err_close;
    }
    if ((rc = alloc_spilling(s, o->size, &b)) < 0)
        goto err_close;
    if ((rc = read_all(fd, (uint8_t *)s->shm.base + b->offset, o->size)) < 0)
        goto err_put;
    close(fd);
    unlink(path);
    o->block = b;
    o->state = OBJ_SEALED;
    s->n_spilled--;
    s->spilled_bytes -= o->size;
    s->n_restores++;
    return 0;

err_put:
    luray_alloc_put(&s->alloc, b);
err_close:
    close(fd);
    return rc;
}

/* Frees the object's memory or file and forgets it. */
static void destroy(luray_store_t *s, obj_t *o)
{
    char path[PATH_MAX];

    lru_remove(s, o);
    if (o->block)
        luray_alloc_put(&s->alloc, o->block);
    if (o->state == OBJ_SPILLED) {
        if (spill_path(s, o->id, path, sizeof path) == 0)
            unlink(path);
        s->n_spilled--;
        s->spilled_bytes -= o->size;
    }
    if (!o->deleted)
        s->n_live--;
    table_remove(s, o->id);
    free(o);
}

/* ---- public API ---- */

int luray_store_new(const char *shm_name, size_t capacity, const char *spill_dir,
                    luray_store_t **out)
{
    luray_store_t *s;
    int rc;

    *out = NULL;
    s = calloc(1, sizeof *s);
    if (!s)
        return LURAY_ENOMEM;
    s->cap = 64;
    s->slots = calloc(s->cap, sizeof *s->slots);
    if (!s->slots) {
        rc = LURAY_ENOMEM;
        goto err_free;
    }
    if (spill_dir) {
        s->spill_dir = strdup(spill_dir);
        if (!s->spill_dir) {
            rc = LURAY_ENOMEM;
            goto err_free_slots;
        }
        if (mkdir(spill_dir, 0700) == 0)
            s->made_spill_dir = true;
        else if (errno != EEXIST) {
            rc = LURAY_EIO;
            goto err_free_dir;
        }
    }
    if ((rc = luray_alloc_init(&s->alloc, capacity)) < 0)
        goto err_rmdir;
    if ((rc = luray_shm_create(shm_name, capacity, &s->shm)) < 0)
        goto err_alloc;
    *out = s;
    return 0;

err_alloc:
    luray_alloc_close(&s->alloc);
err_rmdir:
    if (s->made_spill_dir)
        rmdir(spill_dir);
err_free_dir:
    free(s->spill_dir);
err_free_slots:
    free(s->slots);
err_free:
    free(s);
    return rc;
}

void luray_store_free(luray_store_t *s)
{
    char path[PATH_MAX];
    size_t i;

    if (!s)
        return;
    for (i = 0; i < s->cap; i++) {
        obj_t *o = s->slots[i];

        if (!o)
            continue;
        if (o->state == OBJ_SPILLED && spill_path(s, o->id, path, sizeof path) == 0)
            unlink(path);
        free(o);
    }
    free(s->slots);
    luray_alloc_close(&s->alloc);
    luray_shm_unlink(s->shm.name);
    luray_shm_close(&s->shm);
    if (s->made_spill_dir)
        rmdir(s->spill_dir); /* only if empty: other files there are not ours */
    free(s->spill_dir);
    free(s);
}

int luray_store_create(luray_store_t *s, luray_oid_t id, uint64_t size, uint64_t *offset)
{
    luray_alloc_block_t *b;
    obj_t *o;
    int rc;

    if (table_find(s, id))
        return LURAY_EEXIST;
    if (size > s->alloc.capacity)
        return LURAY_EFULL;
    if ((s->count + 1) * 2 > s->cap && (rc = table_grow(s)) < 0)
        return rc;
    o = calloc(1, sizeof *o);
    if (!o)
        return LURAY_ENOMEM;
    if ((rc = alloc_spilling(s, size, &b)) < 0) {
        free(o);
        return rc;
    }
    o->id = id;
    o->size = size;
    o->block = b;
    o->state = OBJ_UNSEALED;
    s->slots[slot_of(s, id)] = o;
    s->count++;
    s->n_live++;
    *offset = b->offset;
    return 0;
}

static obj_t *find_live(const luray_store_t *s, luray_oid_t id)
{
    obj_t *o = table_find(s, id);

    return o && !o->deleted ? o : NULL;
}

int luray_store_seal(luray_store_t *s, luray_oid_t id)
{
    obj_t *o = find_live(s, id);

    if (!o)
        return LURAY_ENOENT;
    if (o->state != OBJ_UNSEALED)
        return LURAY_ESTATE;
    o->state = OBJ_SEALED;
    lru_push(s, o);
    return 0;
}

int luray_store_abort(luray_store_t *s, luray_oid_t id)
{
    obj_t *o = find_live(s, id);

    if (!o)
        return LURAY_ENOENT;
    if (o->state != OBJ_UNSEALED)
        return LURAY_ESTATE;
    destroy(s, o);
    return 0;
}

int luray_store_pin(luray_store_t *s, luray_oid_t id, uint64_t *offset, uint64_t *size)
{
    obj_t *o = find_live(s, id);
    int rc;

    if (!o)
        return LURAY_ENOENT;
    if (o->state == OBJ_UNSEALED)
        return LURAY_ESTATE;
    if (o->state == OBJ_SPILLED && (rc = restore(s, o)) < 0)
        return rc;
    lru_remove(s, o);
    o->pins++;
    *offset = o->block->offset;
    *size = o->size;
    return 0;
}

int luray_store_unpin(luray_store_t *s, luray_oid_t id)
{
    obj_t *o = table_find(s, id); /* a deleted object may still hold pins */

    if (!o)
        return LURAY_ENOENT;
    if (o->pins == 0)
        return LURAY_ESTATE;
    if (--o->pins == 0) {
        if (o->deleted)
            destroy(s, o);
        else
            lru_push(s, o); /* most recently used */
    }
    return 0;
}

int luray_store_delete(luray_store_t *s, luray_oid_t id)
{
    obj_t *o = find_live(s, id);

    if (!o)
        return LURAY_ENOENT;
    if (o->pins > 0) {
        o->deleted = true;
        s->n_live--;
        return 0;
    }
    destroy(s, o);
    return 0;
}

bool luray_store_contains(const luray_store_t *s, luray_oid_t id)
{
    return find_live(s, id) != NULL;
}

bool luray_store_is_sealed(const luray_store_t *s, luray_oid_t id)
{
    obj_t *o = find_live(s, id);

    return o && o->state != OBJ_UNSEALED;
}

void luray_store_stats(const luray_store_t *s, luray_store_stats_t *st)
{
    st->capacity = s->alloc.capacity;
    st->used = s->alloc.used;
    st->n_objects = s->n_live;
    st->n_spilled = s->n_spilled;
    st->spilled_bytes = s->spilled_bytes;
    st->n_spills = s->n_spills;
    st->n_restores = s->n_restores;
}

void *luray_store_base(const luray_store_t *s) { return s->shm.base; }

const char *luray_store_shm_name(const luray_store_t *s) { return s->shm.name; }
