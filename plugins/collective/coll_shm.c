/* Shared-memory transport: one POSIX segment per group with a header, a line of counters per rank
 * and a ring of chunk slots per rank. Allreduce is reduce-scatter + allgather chunk by chunk;
 * each step is published by bumping a counter that peers wait on (spin briefly, then futex). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "coll_internal.h"
#include "coll_reduce.h"
#include "luray/errors.h"

#define SHM_MAGIC 0x314c4c4f4359524cull /* "LRYCOLL1" in memory */
#define SHM_VERSION 1
#define SHM_HDR_BYTES 4096
#define SHM_RING 8                  /* chunk positions per rank slot */
#define SHM_CHUNK_MAX (64 * 1024)   /* bytes of one slice's chunk: a few fit in L2 */
#define SHM_CHUNK_MIN 4096
#define SHM_SLOT_TARGET (512 * 1024) /* a position (world x chunk) shrinks chunks past this */
#define SHM_SPIN_MAX_S 50e-6        /* the longest spin before sleeping on the futex */
#define SHM_SPIN_MIN_S 1e-6
#define SHM_SLICE_NS 20000000L      /* a sleeper wakes this often to check for dead peers */
#define SHM_STALE_S 2.0             /* a segment whose creator never finished it is stale */
#define SHM_TRIES 5
#define PID_LEFT (-1)

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#else
#define cpu_relax() ((void)0)
#endif

typedef struct {
    _Atomic uint64_t magic; /* stored last by the creator */
    uint32_t version, world;
    uint32_t chunk_bytes, ring;
    uint64_t slot_bytes, total_bytes;
    char id[COLL_ID_MAX + 1];
    _Atomic uint32_t attached;
    _Atomic uint32_t broken; /* 0; BROKEN_WRITING; or 1 + the rank that gave up */
    char broken_msg[COLL_ERR_MAX];
} shm_hdr_t;

#define BROKEN_WRITING UINT32_MAX

/* Counters only grow (modulo 2^32), and at the start of every call they are equal on all ranks:
 * each call moves each of them by the same amount everywhere. */
enum { EV_IN, EV_RED, EV_OUT, EV_BAR, EV_COUNT };

typedef struct {
    _Alignas(128) _Atomic uint32_t ev[EV_COUNT];
    _Atomic uint32_t any;      /* bumped after every counter: the futex word waiters sleep on */
    _Atomic uint32_t sleepers; /* waiters asleep on `any`: wake only then */
    _Atomic int32_t pid;       /* 0 not joined yet, PID_LEFT closed */
    coll_desc_t desc[2];       /* the current call, by barrier parity */
} shm_rank_t;

_Static_assert(sizeof(shm_hdr_t) <= SHM_HDR_BYTES, "header fits its page");
_Static_assert(sizeof(shm_rank_t) == 128, "one rank line is 128 bytes");

struct coll_shm {
    int rank, world;
    double timeout_s;
    char name[COLL_ID_MAX + 64];
    dev_t dev;
    ino_t ino;
    uint8_t *base;
    size_t size, chunk_bytes, ring, slot_bytes;
    shm_hdr_t *hdr;
    shm_rank_t *ranks;
    uint8_t *data;
    bool attached, unlinked;
    /* How long a wait spins before it sleeps: doubled when a spin succeeds, halved when it did
     * not, so a rank whose peers share its CPU (the machine is oversubscribed) stops burning
     * the time they need, and one whose peers run beside it waits without a syscall. */
    double spin_s;
};

/* ---- naming and layout ---- */

/* "/luray-coll-<readable part of the id>-<hash of all of it>": under the "luray-" prefix that
 * tests/run.sh watches for leftovers. */
static void make_name(coll_shm_t *s, const char *id)
{
    char part[49];
    size_t i;

    for (i = 0; id[i] && i < sizeof part - 1; i++) {
        unsigned char ch = (unsigned char)id[i];

        part[i] = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
                          (ch >= 'A' && ch <= 'Z') || ch == '-' || ch == '_' || ch == '.'
                      ? (char)ch
                      : '_';
    }
    part[i] = '\0';
    snprintf(s->name, sizeof s->name, "/luray-coll-%s-%016llx", part,
             (unsigned long long)coll_hash(id));
}

static void layout(coll_shm_t *s)
{
    size_t chunk = SHM_SLOT_TARGET / (size_t)s->world;

    chunk = chunk / SHM_CHUNK_MIN * SHM_CHUNK_MIN;
    if (chunk > SHM_CHUNK_MAX)
        chunk = SHM_CHUNK_MAX;
    if (chunk < SHM_CHUNK_MIN)
        chunk = SHM_CHUNK_MIN;
    s->chunk_bytes = chunk;
    s->ring = SHM_RING;
    s->slot_bytes = s->ring * (size_t)s->world * chunk;
    s->size = SHM_HDR_BYTES + ((size_t)s->world * sizeof(shm_rank_t) + 4095) / 4096 * 4096 +
              (size_t)s->world * s->slot_bytes;
}

static void map_parts(coll_shm_t *s, uint8_t *base)
{
    s->base = base;
    s->hdr = (shm_hdr_t *)base;
    s->ranks = (shm_rank_t *)(base + SHM_HDR_BYTES);
    s->data = base + s->size - (size_t)s->world * s->slot_bytes;
}

/* Rank k's ring position p; slot part j of it is where rank k puts slice j's chunk for rank j
 * (and, for j == k, the reduced chunk of its own slice). */
static uint8_t *slot(const coll_shm_t *s, int k, size_t p, int j)
{
    size_t pos = p * (size_t)s->world + (size_t)j;

    return s->data + (size_t)k * s->slot_bytes + pos * s->chunk_bytes;
}

/* ---- futex waits ---- */

static void futex_wait(_Atomic uint32_t *w, uint32_t v, long ns)
{
    struct timespec ts = {ns / 1000000000L, ns % 1000000000L};

    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, v, &ts, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *w)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static bool reached(uint32_t v, uint32_t target) { return (int32_t)(v - target) >= 0; }

/* Publishes this rank's counter. The seq_cst stores before the sleepers load pair with a
 * waiter's increment-then-reload, so a waiter about to sleep is always woken. */
static void bump(coll_shm_t *s, int which, uint32_t value)
{
    shm_rank_t *me = &s->ranks[s->rank];

    atomic_store(&me->ev[which], value);
    atomic_fetch_add(&me->any, 1);
    if (atomic_load(&me->sleepers))
        futex_wake(&me->any);
}

static void wake_all(coll_shm_t *s)
{
    for (int k = 0; k < s->world; k++) {
        atomic_fetch_add(&s->ranks[k].any, 1);
        futex_wake(&s->ranks[k].any);
    }
}

/* A zombie still answers kill(pid, 0): its state in /proc tells. */
static bool pid_dead(pid_t pid)
{
    char path[64], buf[256], *p;
    ssize_t n;
    int fd;

    if (kill(pid, 0) < 0 && errno == ESRCH)
        return true;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    p = strrchr(buf, ')');
    return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

/* Marks the group given up (the first rank to do so writes why) and wakes every sleeper. */
static void set_broken(coll_shm_t *s, const char *why)
{
    uint32_t zero = 0;

    if (atomic_compare_exchange_strong(&s->hdr->broken, &zero, BROKEN_WRITING)) {
        snprintf(s->hdr->broken_msg, sizeof s->hdr->broken_msg, "%s", why);
        atomic_store(&s->hdr->broken, (uint32_t)s->rank + 1);
    }
    wake_all(s);
}

/* 0, or LURAY_ECLOSED with the reason when another rank gave up on the group. */
static int check_broken(coll_shm_t *s, char *err, size_t errlen)
{
    uint32_t b = atomic_load_explicit(&s->hdr->broken, memory_order_acquire);

    if (b == 0)
        return 0;
    if (b == BROKEN_WRITING)
        coll_errf(err, errlen, "another rank gave up on the group");
    else
        coll_errf(err, errlen, "rank %u gave up on the group: %s", b - 1, s->hdr->broken_msg);
    return LURAY_ECLOSED;
}

/* 0 while rank k may still come; else LURAY_ECLOSED saying why it cannot. */
static int check_peer(coll_shm_t *s, int k, char *err, size_t errlen)
{
    int32_t pid = atomic_load(&s->ranks[k].pid);

    if (pid == PID_LEFT) {
        coll_errf(err, errlen, "rank %d closed the group", k);
        return LURAY_ECLOSED;
    }
    if (pid > 0 && pid_dead(pid)) {
        coll_errf(err, errlen, "rank %d (pid %d) died", k, (int)pid);
        return LURAY_ECLOSED;
    }
    return 0;
}

/* ", 2 (pid 77), 3 (never joined)": the ranks other than this one still short of target. */
static void list_missing(coll_shm_t *s, int which, uint32_t target, char *buf, size_t len)
{
    size_t used = 0;

    buf[0] = '\0';
    for (int k = 0; k < s->world && used + 32 < len; k++) {
        int32_t pid = atomic_load(&s->ranks[k].pid);

        if (k == s->rank || reached(atomic_load(&s->ranks[k].ev[which]), target))
            continue;
        if (pid > 0)
            used += (size_t)snprintf(buf + used, len - used, ", %d (pid %d)", k, (int)pid);
        else
            used += (size_t)snprintf(buf + used, len - used, ", %d (never joined)", k);
    }
}

static int fail(coll_shm_t *s, int rc, const char *why, char *err, size_t errlen)
{
    coll_errf(err, errlen, "%s", why);
    set_broken(s, why);
    return rc;
}

/* Waits until rank k's counter `which` reaches target or, when seen is not NULL, until rank k
 * publishes anything after its `any` count was *seen. Fails when k died or left, another rank
 * gave up, or timeout_s passed without it. */
static int wait_for(coll_shm_t *s, int k, int which, uint32_t target, const uint32_t *seen,
                    char *err, size_t errlen)
{
    shm_rank_t *p = &s->ranks[k];
    char why[COLL_ERR_MAX], missing[COLL_ERR_MAX / 2];
    double start;
    uint32_t v;
    int rc;

#define DONE(any_now)                                                                   \
    (reached(atomic_load_explicit(&p->ev[which], memory_order_acquire), target) ||      \
     (seen && (any_now) != *seen))
    if (DONE(atomic_load_explicit(&p->any, memory_order_acquire)))
        return 0;
    start = coll_now();
    for (unsigned i = 1;; i++) {
        cpu_relax();
        if (DONE(atomic_load_explicit(&p->any, memory_order_acquire))) {
            if (s->spin_s < SHM_SPIN_MAX_S)
                s->spin_s *= 2;
            return 0;
        }
        if ((i & 15) == 0 && coll_now() - start > s->spin_s)
            break;
    }
    if (s->spin_s > SHM_SPIN_MIN_S)
        s->spin_s /= 2;
    for (;;) {
        atomic_fetch_add(&p->sleepers, 1);
        v = atomic_load(&p->any);
        if (!DONE(v))
            futex_wait(&p->any, v, SHM_SLICE_NS);
        atomic_fetch_sub(&p->sleepers, 1);
        if (DONE(atomic_load_explicit(&p->any, memory_order_acquire)))
            return 0;
        if ((rc = check_broken(s, err, errlen)) < 0)
            return rc;
        if ((rc = check_peer(s, k, why, sizeof why)) < 0)
            return fail(s, rc, why, err, errlen);
        if (coll_now() - start > s->timeout_s) {
            list_missing(s, which, target, missing, sizeof missing);
            if (!missing[0])
                snprintf(missing, sizeof missing, ", %d", k);
            snprintf(why, sizeof why, "timed out after %g s waiting for rank%s %s",
                     s->timeout_s, strchr(missing + 2, ',') ? "s" : "", missing + 2);
            return fail(s, LURAY_ETIMEDOUT, why, err, errlen);
        }
    }
#undef DONE
}

static int wait_rank(coll_shm_t *s, int k, int which, uint32_t target, char *err, size_t errlen)
{
    return wait_for(s, k, which, target, NULL, err, errlen);
}

static int wait_others(coll_shm_t *s, int which, uint32_t target, char *err, size_t errlen)
{
    int rc;

    for (int k = 0; k < s->world; k++)
        if (k != s->rank && (rc = wait_rank(s, k, which, target, err, errlen)) < 0)
            return rc;
    return 0;
}

/* Whether every other rank's counter `which` reached target; else the first one short. */
static bool others_reached(coll_shm_t *s, int which, uint32_t target, int *blocker)
{
    for (int k = 0; k < s->world; k++) {
        if (k != s->rank &&
            !reached(atomic_load_explicit(&s->ranks[k].ev[which], memory_order_acquire),
                     target)) {
            *blocker = k;
            return false;
        }
    }
    return true;
}

/* ---- calls ---- */

/* The barrier every call starts with; then each rank checks that all made the same call. */
static int shm_sync(coll_shm_t *s, const coll_desc_t *d, char *err, size_t errlen)
{
    shm_rank_t *me = &s->ranks[s->rank];
    uint32_t b = atomic_load_explicit(&me->ev[EV_BAR], memory_order_relaxed) + 1;
    int rc;

    me->desc[b & 1] = *d;
    bump(s, EV_BAR, b);
    if ((rc = wait_others(s, EV_BAR, b, err, errlen)) < 0)
        return rc;
    for (int k = 0; k < s->world; k++)
        if (k != s->rank && coll_desc_differ(d, &s->ranks[k].desc[b & 1], k, err, errlen))
            return LURAY_EINVAL;
    return 0;
}

static uint32_t counter(coll_shm_t *s, int which)
{
    return atomic_load_explicit(&s->ranks[s->rank].ev[which], memory_order_relaxed);
}

/* Reduces chunk c of this rank's slice: the inputs in rank order (this rank's from src, the
 * others' from their slots), the result into this rank's slot (for the others) and dst. */
static void reduce_chunk(coll_shm_t *s, const coll_desc_t *d, const coll_cut_t *cut, size_t c,
                         const uint8_t *src, uint8_t *dst, size_t es)
{
    int r = s->rank, W = s->world, div = d->op == COLL_MEAN ? W : 1;
    size_t p = c % s->ring, len, first = coll_cut_chunk(cut, r, c, &len);
    uint8_t *res = slot(s, r, p, r), *out = dst + first * es;
    const uint8_t *own = src + first * es;

    if (len == 0)
        return;
#define INPUT(k) ((k) == r ? own : slot(s, (k), p, r))
    coll_reduce((int)d->dtype, (int)d->op, res, W == 2 ? out : NULL, INPUT(0), INPUT(1), len,
                W == 2 ? div : 1);
    for (int k = 2; k < W; k++)
        coll_reduce((int)d->dtype, (int)d->op, res, k == W - 1 ? out : NULL, res, INPUT(k), len,
                    k == W - 1 ? div : 1);
#undef INPUT
}

static void copy_in(coll_shm_t *s, const coll_cut_t *cut, size_t c, const uint8_t *src, size_t es)
{
    size_t first, len;

    for (int j = 0; j < s->world; j++) {
        first = coll_cut_chunk(cut, j, c, &len);
        if (j != s->rank && len)
            memcpy(slot(s, s->rank, c % s->ring, j), src + first * es, len * es);
    }
}

static void copy_out(coll_shm_t *s, const coll_cut_t *cut, size_t c, uint8_t *dst, size_t es)
{
    size_t first, len;

    for (int j = 0; j < s->world; j++) {
        first = coll_cut_chunk(cut, j, c, &len);
        if (j != s->rank && len)
            memcpy(dst + first * es, slot(s, j, c % s->ring, j), len * es);
    }
}

/* Chunk by chunk, three steps each: copy in (this rank's data for the others' slices into its
 * slot), reduce (its own slice, once all copied in), copy out (the others' reduced slices, once
 * they reduced). A rank takes whichever step is ready, oldest first, and sleeps only when none
 * is, so a peer that was descheduled finds everything up to the ring's depth done. */
static int shm_allreduce(coll_shm_t *s, const coll_desc_t *d, const uint8_t *src, uint8_t *dst,
                         char *err, size_t errlen)
{
    size_t es = coll_dtype_size((int)d->dtype), n = d->nbytes / es;
    uint32_t b_in = counter(s, EV_IN), b_red = counter(s, EV_RED), b_out = counter(s, EV_OUT);
    size_t in = 0, red = 0, out = 0, ring = s->ring;
    int k = 0, which, rc;
    uint32_t target, seen;
    coll_cut_t cut;

    if (s->world == 1) {
        if (src != dst && n)
            memmove(dst, src, n * es);
        return 0;
    }
    coll_cut_init(&cut, n, s->world, es, s->chunk_bytes);
    while (out < cut.nchunks || red < cut.nchunks) {
        /* Copy out only what this rank reduced itself: then a peer's OUT count also says how
         * far it reduced, which the ring's reuse below relies on. */
        if (out < red && others_reached(s, EV_RED, b_red + (uint32_t)out + 1, &k)) {
            copy_out(s, &cut, out, dst, es);
            bump(s, EV_OUT, b_out + (uint32_t)++out);
            continue;
        }
        if (red < in && others_reached(s, EV_IN, b_in + (uint32_t)red + 1, &k)) {
            reduce_chunk(s, d, &cut, red, src, dst, es);
            bump(s, EV_RED, b_red + (uint32_t)++red);
            continue;
        }
        /* Ring position in % ring last held chunk in - ring: free once all copied it out. */
        if (in < cut.nchunks &&
            (in < ring || others_reached(s, EV_OUT, b_out + (uint32_t)(in - ring) + 1, &k))) {
            copy_in(s, &cut, in, src, es);
            bump(s, EV_IN, b_in + (uint32_t)++in);
            continue;
        }
        /* Nothing ready: sleep until rank k, which holds up the oldest step, moves. */
        if (out < red) {
            which = EV_RED;
            target = b_red + (uint32_t)out + 1;
        } else if (red < in) {
            which = EV_IN;
            target = b_in + (uint32_t)red + 1;
        } else {
            which = EV_OUT;
            target = b_out + (uint32_t)(in - ring) + 1;
        }
        if (others_reached(s, which, target, &k))
            continue;
        seen = atomic_load(&s->ranks[k].any);
        if ((rc = wait_for(s, k, which, target, &seen, err, errlen)) < 0)
            return rc;
    }
    return 0;
}

/* The root streams its data through its slot a whole ring position at a time. */
static int shm_broadcast(coll_shm_t *s, const coll_desc_t *d, uint8_t *data, char *err,
                         size_t errlen)
{
    size_t pos = (size_t)s->world * s->chunk_bytes, n = d->nbytes;
    size_t nchunks = (n + pos - 1) / pos;
    uint32_t b_in = counter(s, EV_IN), b_out = counter(s, EV_OUT);
    int root = (int)d->root, rc;

    if (s->world == 1)
        return 0;
    for (size_t c = 0; c < nchunks; c++) {
        uint32_t step = (uint32_t)c + 1;
        size_t p = c % s->ring, off = c * pos, len = n - off < pos ? n - off : pos;

        if (s->rank == root) {
            if (c >= s->ring &&
                (rc = wait_others(s, EV_OUT, b_out + step - (uint32_t)s->ring, err, errlen)) < 0)
                return rc;
            memcpy(slot(s, root, p, 0), data + off, len);
            bump(s, EV_IN, b_in + step);
        } else {
            if ((rc = wait_rank(s, root, EV_IN, b_in + step, err, errlen)) < 0)
                return rc;
            memcpy(data + off, slot(s, root, p, 0), len);
            bump(s, EV_OUT, b_out + step);
        }
    }
    /* Keep every counter moving by the same amount on every rank. */
    if (s->rank == root)
        bump(s, EV_OUT, b_out + (uint32_t)nchunks);
    else
        bump(s, EV_IN, b_in + (uint32_t)nchunks);
    return 0;
}

int coll_shm_run(coll_shm_t *s, const coll_desc_t *d, const void *src, void *dst, char *err,
                 size_t errlen)
{
    int rc;

    if ((rc = check_broken(s, err, errlen)) < 0)
        return rc;
    if (s->world > 1 && (rc = shm_sync(s, d, err, errlen)) < 0)
        return rc;
    switch (d->kind) {
    case COLL_KIND_ALLREDUCE:
        return shm_allreduce(s, d, src, dst, err, errlen);
    case COLL_KIND_BROADCAST:
        return shm_broadcast(s, d, dst, err, errlen);
    default:
        return 0;
    }
}

/* ---- joining and leaving ---- */

/* Unlinks the name only while it still names our segment: another group may have made a new
 * one under the same name since. */
static void unlink_if_ours(coll_shm_t *s)
{
    struct stat st;
    int fd;

    if (s->unlinked)
        return;
    s->unlinked = true;
    fd = shm_open(s->name, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (fstat(fd, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino)
        shm_unlink(s->name);
    close(fd);
}

static void detach(coll_shm_t *s)
{
    if (s->base)
        munmap(s->base, s->size);
    s->base = NULL;
    s->hdr = NULL;
    s->ranks = NULL;
    s->data = NULL;
}

static int create_segment(coll_shm_t *s, int fd, const char *id, char *err, size_t errlen)
{
    uint8_t *base;
    int e;

    if ((e = posix_fallocate(fd, 0, (off_t)s->size)) != 0) {
        coll_errf(err, errlen, "cannot make the %zu-byte shared memory segment %s: %s%s", s->size,
                  s->name, strerror(e), e == ENOSPC ? " (is /dev/shm full?)" : "");
        return LURAY_ENOMEM;
    }
    base = mmap(NULL, s->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (base == MAP_FAILED) {
        coll_errf(err, errlen, "cannot map %s: %s", s->name, strerror(errno));
        return LURAY_ENOMEM;
    }
    map_parts(s, base);
    s->hdr->version = SHM_VERSION;
    s->hdr->world = (uint32_t)s->world;
    s->hdr->chunk_bytes = (uint32_t)s->chunk_bytes;
    s->hdr->ring = (uint32_t)s->ring;
    s->hdr->slot_bytes = s->slot_bytes;
    s->hdr->total_bytes = s->size;
    snprintf(s->hdr->id, sizeof s->hdr->id, "%s", id);
    atomic_store_explicit(&s->hdr->magic, SHM_MAGIC, memory_order_release);
    return 0;
}

/* Checks a segment made by another rank against what this rank expects. */
static int check_header(coll_shm_t *s, const shm_hdr_t *h, const char *id, char *err,
                        size_t errlen)
{
    if (strcmp(h->id, id) != 0) {
        coll_errf(err, errlen, "shared memory %s belongs to group '%s'", s->name, h->id);
        return LURAY_EEXIST;
    }
    if (h->world != (uint32_t)s->world) {
        coll_errf(err, errlen, "the group already exists with world_size %u (is the id used "
                  "by two groups?)", h->world);
        return LURAY_EEXIST;
    }
    if (h->version != SHM_VERSION || h->chunk_bytes != s->chunk_bytes || h->ring != s->ring ||
        h->total_bytes != s->size) {
        coll_errf(err, errlen, "shared memory %s was made by another version of the "
                  "collective plugin", s->name);
        return LURAY_EEXIST;
    }
    return 0;
}

/* Maps a segment another rank created, once its creator finished it. LURAY_EAGAIN: it was
 * stale (its creator died first, or its group gave up) and is gone now; try again. */
static int open_segment(coll_shm_t *s, int fd, const char *id, double deadline, char *err,
                        size_t errlen)
{
    double stale_at = coll_now() + SHM_STALE_S;
    shm_hdr_t *h = MAP_FAILED;
    struct stat st;
    uint8_t *base;
    int rc;

    for (;;) {
        if (h == MAP_FAILED && fstat(fd, &st) == 0 && st.st_size >= SHM_HDR_BYTES)
            h = mmap(NULL, SHM_HDR_BYTES, PROT_READ, MAP_SHARED, fd, 0);
        if (h != MAP_FAILED &&
            atomic_load_explicit(&h->magic, memory_order_acquire) == SHM_MAGIC)
            break;
        if (coll_now() > deadline || coll_now() > stale_at) {
            if (h != MAP_FAILED)
                munmap(h, SHM_HDR_BYTES);
            if (coll_now() > deadline) {
                coll_errf(err, errlen, "timed out waiting for another rank to finish making "
                          "shared memory %s", s->name);
                return LURAY_ETIMEDOUT;
            }
            unlink_if_ours(s);
            return LURAY_EAGAIN;
        }
        usleep(1000);
    }
    rc = check_header(s, h, id, err, errlen);
    if (rc == 0 && atomic_load(&h->broken) != 0) {
        unlink_if_ours(s);
        rc = LURAY_EAGAIN;
    }
    munmap(h, SHM_HDR_BYTES);
    if (rc < 0)
        return rc;
    base = mmap(NULL, s->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (base == MAP_FAILED) {
        coll_errf(err, errlen, "cannot map %s: %s", s->name, strerror(errno));
        return LURAY_ENOMEM;
    }
    map_parts(s, base);
    return 0;
}

/* Creates the segment or maps the one a faster rank created. */
static int attach(coll_shm_t *s, const char *id, double deadline, char *err, size_t errlen)
{
    bool created = false;
    struct stat st;
    int fd, rc;

    s->unlinked = false;
    fd = shm_open(s->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        created = true;
    } else if (errno == EEXIST) {
        fd = shm_open(s->name, O_RDWR | O_CLOEXEC, 0);
        if (fd < 0 && errno == ENOENT)
            return LURAY_EAGAIN;
    }
    if (fd < 0) {
        coll_errf(err, errlen, "cannot open shared memory %s: %s", s->name, strerror(errno));
        return LURAY_EIO;
    }
    if (fstat(fd, &st) < 0) {
        coll_errf(err, errlen, "cannot stat shared memory %s: %s", s->name, strerror(errno));
        rc = LURAY_EIO;
        goto out;
    }
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    if (created) {
        rc = create_segment(s, fd, id, err, errlen);
        if (rc < 0)
            unlink_if_ours(s);
    } else {
        rc = open_segment(s, fd, id, deadline, err, errlen);
    }
out:
    close(fd);
    return rc;
}

/* Takes this rank's line. LURAY_EAGAIN: the segment is stale (the line's owner died). */
static int claim(coll_shm_t *s, char *err, size_t errlen)
{
    int32_t owner = 0;

    if (atomic_compare_exchange_strong(&s->ranks[s->rank].pid, &owner, (int32_t)getpid()))
        return 0;
    if (owner > 0 && !pid_dead(owner)) {
        coll_errf(err, errlen, "rank %d is already taken by pid %d (is the id used by two "
                  "groups?)", s->rank, (int)owner);
        return LURAY_EEXIST;
    }
    unlink_if_ours(s);
    return LURAY_EAGAIN;
}

/* Leaves the segment: peers waiting on this rank learn it closed; the last one out removes the
 * name if it is still there (a join that failed). */
static void leave(coll_shm_t *s)
{
    if (!s->base)
        return;
    if (s->attached) {
        atomic_store(&s->ranks[s->rank].pid, PID_LEFT);
        wake_all(s);
        if (atomic_fetch_sub(&s->hdr->attached, 1) == 1)
            unlink_if_ours(s);
    }
    detach(s);
}

int coll_shm_open(const coll_spec_t *spec, coll_shm_t **out, char *err, size_t errlen)
{
    coll_desc_t join = {.kind = COLL_KIND_JOIN};
    double deadline = coll_now() + spec->timeout_s;
    coll_shm_t *s;
    int rc, tries = 0;

    *out = NULL;
    s = calloc(1, sizeof *s);
    if (!s) {
        coll_errf(err, errlen, "out of memory");
        return LURAY_ENOMEM;
    }
    s->rank = spec->rank;
    s->world = spec->world_size;
    s->timeout_s = spec->timeout_s;
    s->spin_s = SHM_SPIN_MAX_S;
    make_name(s, spec->id);
    layout(s);
    for (;;) {
        rc = attach(s, spec->id, deadline, err, errlen);
        if (rc == 0 && (rc = claim(s, err, errlen)) < 0)
            detach(s);
        if (rc != LURAY_EAGAIN)
            break;
        if (++tries == SHM_TRIES || coll_now() > deadline) {
            coll_errf(err, errlen, "shared memory %s keeps vanishing or going stale", s->name);
            rc = LURAY_ETIMEDOUT;
            break;
        }
    }
    if (rc < 0)
        goto err_free;
    s->attached = true;
    atomic_fetch_add(&s->hdr->attached, 1);
    if (s->world > 1 && (rc = shm_sync(s, &join, err, errlen)) < 0)
        goto err_leave;
    /* Every rank has the segment mapped: the name is no longer needed, and without it nothing
     * is left in /dev/shm whatever happens to the processes later. */
    unlink_if_ours(s);
    *out = s;
    return 0;

err_leave:
    set_broken(s, err);
    leave(s);
err_free:
    free(s);
    return rc;
}

void coll_shm_free(coll_shm_t *s)
{
    if (!s)
        return;
    leave(s);
    free(s);
}
