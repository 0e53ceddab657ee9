/* What the collective layer's files share: the description of one call that ranks compare before
 * touching data, how a buffer is cut into per-rank slices and chunks, and each transport's entry
 * points (coll_shm.c, coll_tcp.c) behind coll_group.c. */
#ifndef LURAY_COLLECTIVE_COLL_INTERNAL_H
#define LURAY_COLLECTIVE_COLL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coll.h"

typedef enum {
    COLL_KIND_JOIN = 1,
    COLL_KIND_BARRIER,
    COLL_KIND_ALLREDUCE,
    COLL_KIND_BROADCAST,
} coll_kind_t;

/* One call as a rank sees it; every rank must make the same one. */
typedef struct {
    uint32_t kind;   /* coll_kind_t */
    uint32_t dtype;  /* luray_dtype_t (allreduce) */
    uint32_t op;     /* coll_op_t (allreduce) */
    uint32_t root;   /* broadcast */
    uint64_t nbytes; /* allreduce, broadcast */
} coll_desc_t;

/* Writes why `other` (rank k's call) differs from `mine` into err; false when they agree. */
bool coll_desc_differ(const coll_desc_t *mine, const coll_desc_t *other, int k, char *err,
                      size_t errlen);

/* How `count` elements are cut: W slices of `per` elements (whole cache lines), each in chunks of
 * at most `chunk` elements; `nchunks` chunks per slice. A slice or chunk past the end is empty. */
typedef struct {
    size_t count, per, chunk, nchunks;
} coll_cut_t;

void coll_cut_init(coll_cut_t *cut, size_t count, int world, size_t elem_size, size_t chunk_bytes);
/* First element and length (elements) of chunk c of slice j. */
size_t coll_cut_chunk(const coll_cut_t *cut, int j, size_t c, size_t *len);

double coll_now(void);
/* FNV-1a 64 of s. */
uint64_t coll_hash(const char *s);

/* printf into err (always NUL-terminated; a no-op when errlen is 0). */
void coll_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- transports: each returns 0, LURAY_EINVAL when the ranks' calls disagree (the group stays
 * usable: every rank sees the same disagreement), or another LURAY_E* code after which the group
 * is unusable. ---- */

typedef struct coll_shm coll_shm_t;

int coll_shm_open(const coll_spec_t *spec, coll_shm_t **out, char *err, size_t errlen);
void coll_shm_free(coll_shm_t *s);
int coll_shm_run(coll_shm_t *s, const coll_desc_t *d, const void *src, void *dst, char *err,
                 size_t errlen);

typedef struct coll_tcp coll_tcp_t;

int coll_tcp_open(const coll_spec_t *spec, coll_tcp_t **out, char *err, size_t errlen);
/* flush: the ranks are in step, so wait (briefly) for the last call's data to be delivered. */
void coll_tcp_free(coll_tcp_t *t, bool flush);
int coll_tcp_run(coll_tcp_t *t, const coll_desc_t *d, const void *src, void *dst, char *err,
                 size_t errlen);

#endif
