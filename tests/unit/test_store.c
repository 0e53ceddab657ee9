/* Unit tests of the object store: the arena allocator against a model, and the store's object
 * lifecycle, spilling and restoring, deferred deletes and cleanup of its shm segment and files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "errors.h"
#include "ids.h"
#include "shm.h"
#include "store.h"
#include "store_alloc.h"

/* ---- allocator ---- */

typedef struct {
    luray_alloc_block_t *b;
    uint64_t size;
} live_t;

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Checks live blocks against each other (no overlap, alignment, within the arena, big enough)
 * and the allocator's own accounting, walking the physical block list. */
static void check_alloc(const luray_alloc_t *a, const live_t *live, size_t n)
{
    const luray_alloc_block_t *b;
    uint64_t used = 0, expect = 0, covered = 0;
    size_t n_used = 0, n_free = 0;
    uint8_t *mark = calloc(a->capacity / LURAY_ALLOC_ALIGN + 1, 1);
    size_t i, u;

    assert_non_null(mark);
    for (i = 0; i < n; i++) {
        const luray_alloc_block_t *lb = live[i].b;

        assert_int_equal(lb->offset % LURAY_ALLOC_ALIGN, 0);
        assert_true(lb->size >= live[i].size);
        assert_true(lb->size < live[i].size + LURAY_ALLOC_ALIGN || live[i].size == 0);
        assert_true(lb->offset + lb->size <= a->capacity);
        for (u = lb->offset / LURAY_ALLOC_ALIGN; u < (lb->offset + lb->size) / LURAY_ALLOC_ALIGN;
             u++) {
            assert_int_equal(mark[u], 0); /* overlap */
            mark[u] = 1;
        }
        expect += lb->size;
    }
    free(mark);
    for (b = a->first; b; b = b->phys_next) {
        assert_int_equal(b->offset, covered); /* blocks tile the arena */
        covered += b->size;
        if (b->free) {
            n_free++;
            /* coalescing: no two free neighbours */
            assert_false(b->phys_next && b->phys_next->free);
        } else {
            n_used++;
            used += b->size;
        }
    }
    assert_int_equal(covered, a->capacity);
    assert_int_equal(used, expect);
    assert_int_equal(a->used, expect);
    assert_int_equal(n_used, n);
    assert_int_equal(a->n_blocks, n);
    assert_int_equal(a->n_free, n_free);
}

static void test_alloc_random(void **state)
{
    (void)state;
    enum { CAP = 1 << 20, MAXN = 512 };
    static live_t live[MAXN];
    luray_alloc_t a;
    size_t n = 0, round, step;

    for (round = 0; round < 20; round++) {
        assert_int_equal(luray_alloc_init(&a, CAP + (round % 3) * 17), 0);
        n = 0;
        for (step = 0; step < 3000; step++) {
            bool do_alloc = n == 0 || (n < MAXN && rng() % 100 < 55);

            if (do_alloc) {
                /* mostly small, sometimes large sizes */
                uint64_t size = rng() % 8 == 0 ? rng() % (CAP / 8) : rng() % 4096;
                luray_alloc_block_t *b;
                int rc = luray_alloc_get(&a, size, &b);

                if (rc == LURAY_EFULL) {
                    uint64_t need = size ? (size + 63) / 64 * 64 : 64;

                    assert_true(luray_alloc_largest_free(&a) < need);
                    continue;
                }
                assert_int_equal(rc, 0);
                live[n].b = b;
                live[n].size = size;
                n++;
            } else {
                size_t k = rng() % n;

                luray_alloc_put(&a, live[k].b);
                live[k] = live[--n];
            }
            if (step % 100 == 0)
                check_alloc(&a, live, n);
        }
        check_alloc(&a, live, n);
        while (n > 0) {
            size_t k = rng() % n;

            luray_alloc_put(&a, live[k].b);
            live[k] = live[--n];
        }
        /* everything coalesces back into one free block */
        check_alloc(&a, live, 0);
        assert_int_equal(a.n_free, 1);
        assert_int_equal(a.first->size, a.capacity);
        assert_int_equal(luray_alloc_largest_free(&a), a.capacity);
        luray_alloc_close(&a);
    }
}

static void test_alloc_full_and_fragmented(void **state)
{
    (void)state;
    enum { N = 64 };
    luray_alloc_t a;
    luray_alloc_block_t *b[N], *big, *x;
    int i;

    assert_int_equal(luray_alloc_init(&a, N * 1024), 0);
    /* the whole arena in one allocation, then nothing more fits */
    assert_int_equal(luray_alloc_get(&a, N * 1024, &big), 0);
    assert_int_equal(big->offset, 0);
    assert_int_equal(luray_alloc_get(&a, 1, &x), LURAY_EFULL);
    luray_alloc_put(&a, big);
    assert_int_equal(luray_alloc_get(&a, N * 1024 + 1, &x), LURAY_EFULL);
    /* an unaligned size just under the capacity still fits (exact-class fallback) */
    assert_int_equal(luray_alloc_get(&a, N * 1024 - 100, &big), 0);
    luray_alloc_put(&a, big);

    for (i = 0; i < N; i++)
        assert_int_equal(luray_alloc_get(&a, 1024, &b[i]), 0);
    assert_int_equal(luray_alloc_get(&a, 0, &x), LURAY_EFULL);
    /* free every other block: half the arena is free, but no 2 KiB hole */
    for (i = 0; i < N; i += 2)
        luray_alloc_put(&a, b[i]);
    assert_int_equal(a.used, N / 2 * 1024);
    assert_int_equal(luray_alloc_largest_free(&a), 1024);
    assert_int_equal(luray_alloc_get(&a, 2048, &x), LURAY_EFULL);
    assert_int_equal(luray_alloc_get(&a, 1024, &x), 0);
    luray_alloc_put(&a, x);
    /* freeing one neighbour makes a 3 KiB hole */
    luray_alloc_put(&a, b[1]);
    assert_int_equal(luray_alloc_largest_free(&a), 3072);
    assert_int_equal(luray_alloc_get(&a, 3000, &x), 0);
    assert_int_equal(x->offset, 0);
    assert_int_equal(x->size, 3008);
    luray_alloc_put(&a, x);
    for (i = 3; i < N; i += 2)
        luray_alloc_put(&a, b[i]);
    assert_int_equal(a.n_free, 1);
    assert_int_equal(a.n_blocks, 0);
    assert_int_equal(a.used, 0);
    luray_alloc_close(&a);

    /* an arena smaller than one unit has nothing to give */
    assert_int_equal(luray_alloc_init(&a, 63), 0);
    assert_int_equal(luray_alloc_get(&a, 1, &x), LURAY_EFULL);
    luray_alloc_close(&a);
}

/* ---- store ---- */

typedef struct {
    char shm[64];
    char dir[128];
    luray_store_t *s;
} fixture_t;

static int store_setup(void **state, size_t capacity)
{
    static int counter;
    fixture_t *f = calloc(1, sizeof *f);

    if (!f)
        return -1;
    snprintf(f->shm, sizeof f->shm, "luray-test-store-%d-%d", (int)getpid(), counter);
    snprintf(f->dir, sizeof f->dir, "/tmp/luray-test-spill-%d-%d", (int)getpid(), counter);
    counter++;
    if (luray_store_new(f->shm, capacity, f->dir, &f->s) != 0) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int setup_small(void **state) { return store_setup(state, 64 * 1024); }

static int teardown(void **state)
{
    fixture_t *f = *state;

    luray_store_free(f->s);
    free(f);
    return 0;
}

static luray_oid_t oid(uint64_t seq)
{
    luray_oid_t id = {7, 3, seq};

    return id;
}

static void fill(luray_store_t *s, uint64_t off, uint64_t size, uint64_t seed)
{
    uint8_t *p = (uint8_t *)luray_store_base(s) + off;
    uint64_t i;

    for (i = 0; i < size; i++)
        p[i] = (uint8_t)((seed * 131 + i * 7 + (i >> 8)) & 0xff);
}

static void check_bytes(luray_store_t *s, uint64_t off, uint64_t size, uint64_t seed)
{
    const uint8_t *p = (const uint8_t *)luray_store_base(s) + off;
    uint64_t i;

    for (i = 0; i < size; i++)
        if (p[i] != (uint8_t)((seed * 131 + i * 7 + (i >> 8)) & 0xff))
            fail_msg("byte %llu of object %llu differs", (unsigned long long)i,
                     (unsigned long long)seed);
}

static void put(luray_store_t *s, uint64_t seq, uint64_t size)
{
    uint64_t off;

    assert_int_equal(luray_store_create(s, oid(seq), size, &off), 0);
    fill(s, off, size, seq);
    assert_int_equal(luray_store_seal(s, oid(seq)), 0);
}

static void test_store_lifecycle(void **state)
{
    fixture_t *f = *state;
    luray_store_t *s = f->s;
    luray_store_stats_t st;
    uint64_t off, off2, size;

    assert_string_equal(luray_store_shm_name(s), f->shm);
    assert_non_null(luray_store_base(s));
    assert_false(luray_store_contains(s, oid(1)));
    assert_int_equal(luray_store_create(s, oid(1), 1000, &off), 0);
    assert_int_equal(off % 64, 0);
    assert_true(luray_store_contains(s, oid(1)));
    assert_false(luray_store_is_sealed(s, oid(1)));
    assert_int_equal(luray_store_create(s, oid(1), 10, &off2), LURAY_EEXIST);
    /* not readable before seal */
    assert_int_equal(luray_store_pin(s, oid(1), &off2, &size), LURAY_ESTATE);
    fill(s, off, 1000, 1);
    assert_int_equal(luray_store_seal(s, oid(1)), 0);
    assert_int_equal(luray_store_seal(s, oid(1)), LURAY_ESTATE);
    assert_int_equal(luray_store_abort(s, oid(1)), LURAY_ESTATE);
    assert_true(luray_store_is_sealed(s, oid(1)));

    assert_int_equal(luray_store_pin(s, oid(1), &off2, &size), 0);
    assert_int_equal(off2, off);
    assert_int_equal(size, 1000);
    check_bytes(s, off2, size, 1);
    assert_int_equal(luray_store_unpin(s, oid(1)), 0);
    assert_int_equal(luray_store_unpin(s, oid(1)), LURAY_ESTATE);

    luray_store_stats(s, &st);
    assert_int_equal(st.capacity, 64 * 1024);
    assert_int_equal(st.used, 1024);
    assert_int_equal(st.n_objects, 1);

    /* abort drops an unsealed object */
    assert_int_equal(luray_store_create(s, oid(2), 5000, &off), 0);
    assert_int_equal(luray_store_abort(s, oid(2)), 0);
    assert_false(luray_store_contains(s, oid(2)));

    assert_int_equal(luray_store_delete(s, oid(1)), 0);
    assert_false(luray_store_contains(s, oid(1)));
    assert_int_equal(luray_store_delete(s, oid(1)), LURAY_ENOENT);
    assert_int_equal(luray_store_pin(s, oid(1), &off, &size), LURAY_ENOENT);
    assert_int_equal(luray_store_seal(s, oid(9)), LURAY_ENOENT);
    assert_int_equal(luray_store_unpin(s, oid(9)), LURAY_ENOENT);
    luray_store_stats(s, &st);
    assert_int_equal(st.used, 0);
    assert_int_equal(st.n_objects, 0);

    /* zero-sized objects are fine */
    put(s, 3, 0);
    assert_int_equal(luray_store_pin(s, oid(3), &off, &size), 0);
    assert_int_equal(size, 0);
    assert_int_equal(luray_store_unpin(s, oid(3)), 0);
    /* larger than the whole store: refused without spilling anything */
    assert_int_equal(luray_store_create(s, oid(4), 64 * 1024 + 1, &off), LURAY_EFULL);
    assert_int_equal(luray_store_create(s, oid(4), 64 * 1024, &off), 0); /* spills oid 3 */
    luray_store_stats(s, &st);
    assert_int_equal(st.n_spilled, 1);
}

static void test_store_delete_while_pinned(void **state)
{
    fixture_t *f = *state;
    luray_store_t *s = f->s;
    luray_store_stats_t st;
    uint64_t off, size, off2, size2;

    put(s, 1, 4000);
    assert_int_equal(luray_store_pin(s, oid(1), &off, &size), 0);
    assert_int_equal(luray_store_pin(s, oid(1), &off2, &size2), 0);
    assert_int_equal(luray_store_delete(s, oid(1)), 0);
    assert_false(luray_store_contains(s, oid(1)));
    assert_int_equal(luray_store_pin(s, oid(1), &off2, &size2), LURAY_ENOENT);
    luray_store_stats(s, &st);
    assert_int_equal(st.n_objects, 0);
    assert_int_equal(st.used, 4032); /* still held by the readers */
    check_bytes(s, off, size, 1);
    assert_int_equal(luray_store_unpin(s, oid(1)), 0);
    luray_store_stats(s, &st);
    assert_int_equal(st.used, 4032);
    assert_int_equal(luray_store_unpin(s, oid(1)), 0);
    luray_store_stats(s, &st);
    assert_int_equal(st.used, 0);
    assert_int_equal(luray_store_unpin(s, oid(1)), LURAY_ENOENT);
    /* the id is free again */
    put(s, 1, 10);
}

static int spill_files(const char *dir)
{
    char cmd[256];
    FILE *p;
    int n = -1;

    snprintf(cmd, sizeof cmd, "ls -1 %s 2>/dev/null | wc -l", dir);
    p = popen(cmd, "r");
    if (!p)
        return -1;
    if (fscanf(p, "%d", &n) != 1)
        n = -1;
    pclose(p);
    return n;
}

static void test_store_spill_restore(void **state)
{
    fixture_t *f = *state;
    luray_store_t *s = f->s;
    luray_store_stats_t st;
    uint64_t off, size, pinned_off, seq;

    /* 8 objects of 8 KiB fill the 64 KiB store; object 1 stays pinned */
    for (seq = 1; seq <= 8; seq++)
        put(s, seq, 8192);
    assert_int_equal(luray_store_pin(s, oid(1), &pinned_off, &size), 0);
    /* touch 2 so that 3 is the least recently used unpinned object */
    assert_int_equal(luray_store_pin(s, oid(2), &off, &size), 0);
    assert_int_equal(luray_store_unpin(s, oid(2)), 0);
    luray_store_stats(s, &st);
    assert_int_equal(st.used, 64 * 1024);
    assert_int_equal(st.n_spills, 0);

    put(s, 9, 8000);
    luray_store_stats(s, &st);
    assert_int_equal(st.n_spills, 1);
    assert_int_equal(st.n_spilled, 1);
    assert_int_equal(st.spilled_bytes, 8192);
    assert_int_equal(st.n_objects, 9);
    assert_int_equal(spill_files(f->dir), 1);
    assert_true(luray_store_contains(s, oid(3)));
    assert_true(luray_store_is_sealed(s, oid(3)));

    /* more than half the store: spills LRU objects, never the pinned one */
    put(s, 10, 40000);
    luray_store_stats(s, &st);
    assert_true(st.n_spilled >= 5);
    check_bytes(s, pinned_off, 8192, 1);

    /* restore every spilled object on pin, with identical bytes */
    for (seq = 2; seq <= 10; seq++) {
        assert_int_equal(luray_store_pin(s, oid(seq), &off, &size), 0);
        check_bytes(s, off, size, seq);
        assert_int_equal(luray_store_unpin(s, oid(seq)), 0);
    }
    luray_store_stats(s, &st);
    assert_true(st.n_restores >= 5);
    assert_int_equal(st.n_objects, 10);
    assert_int_equal(st.n_spilled + 0, (uint64_t)spill_files(f->dir));
    /* the pinned object never moved */
    assert_int_equal(luray_store_pin(s, oid(1), &off, &size), 0);
    assert_int_equal(off, pinned_off);
    check_bytes(s, off, size, 1);
    assert_int_equal(luray_store_unpin(s, oid(1)), 0);
    assert_int_equal(luray_store_unpin(s, oid(1)), 0);

    /* deleting a spilled object removes its file */
    luray_store_stats(s, &st);
    assert_true(st.n_spilled > 0);
    for (seq = 1; seq <= 10; seq++)
        assert_int_equal(luray_store_delete(s, oid(seq)), 0);
    luray_store_stats(s, &st);
    assert_int_equal(st.n_spilled, 0);
    assert_int_equal(st.spilled_bytes, 0);
    assert_int_equal(st.used, 0);
    assert_int_equal(spill_files(f->dir), 0);
}

static void test_store_all_pinned_is_full(void **state)
{
    fixture_t *f = *state;
    luray_store_t *s = f->s;
    luray_store_stats_t st;
    uint64_t off, size, seq;

    for (seq = 1; seq <= 4; seq++) {
        put(s, seq, 16384);
        assert_int_equal(luray_store_pin(s, oid(seq), &off, &size), 0);
    }
    assert_int_equal(luray_store_create(s, oid(5), 1, &off), LURAY_EFULL);
    assert_int_equal(luray_store_unpin(s, oid(4)), 0);
    assert_int_equal(luray_store_delete(s, oid(4)), 0);
    assert_int_equal(luray_store_create(s, oid(5), 16384, &off), 0);
    fill(s, off, 16384, 5);
    /* an unsealed object is not spillable either */
    assert_int_equal(luray_store_create(s, oid(6), 64, &off), LURAY_EFULL);
    luray_store_stats(s, &st);
    assert_int_equal(st.n_spills, 0);
    assert_int_equal(luray_store_seal(s, oid(5)), 0);
    assert_int_equal(luray_store_pin(s, oid(5), &off, &size), 0);
    assert_int_equal(luray_store_unpin(s, oid(3)), 0);
    assert_int_equal(luray_store_create(s, oid(6), 16384, &off), 0); /* spills 3 */
    fill(s, off, 16384, 6);
    /* a spilled object cannot come back while everything else is pinned or unsealed */
    assert_int_equal(luray_store_pin(s, oid(3), &off, &size), LURAY_EFULL);
    assert_int_equal(luray_store_seal(s, oid(6)), 0);
    assert_int_equal(luray_store_pin(s, oid(3), &off, &size), 0); /* spills 6 */
    check_bytes(s, off, size, 3);
    luray_store_stats(s, &st);
    assert_int_equal(st.n_spills, 2);
    assert_int_equal(st.n_restores, 1);
    assert_int_equal(st.n_spilled, 1);
    assert_int_equal(luray_store_pin(s, oid(6), &off, &size), LURAY_EFULL);
}

static void test_store_lost_spill_file(void **state)
{
    fixture_t *f = *state;
    luray_store_t *s = f->s;
    luray_store_stats_t st;
    char path[256], hex[LURAY_OID_HEX_LEN + 1];
    uint64_t off, size;

    put(s, 1, 40000);
    put(s, 2, 40000); /* spills 1 */
    luray_oid_hex(oid(1), hex);
    snprintf(path, sizeof path, "%s/%s", f->dir, hex);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(luray_store_pin(s, oid(1), &off, &size), LURAY_EIO);
    /* the failed restore gave its space back and left the object spilled */
    luray_store_stats(s, &st);
    assert_int_equal(st.n_spilled, 1);
    assert_int_equal(st.n_restores, 0);
    assert_int_equal(luray_store_pin(s, oid(2), &off, &size), 0);
    check_bytes(s, off, size, 2);
    assert_int_equal(luray_store_unpin(s, oid(2)), 0);
    assert_int_equal(luray_store_delete(s, oid(1)), 0);
    luray_store_stats(s, &st);
    assert_int_equal(st.n_spilled, 0);
}

static void test_store_churn(void **state)
{
    fixture_t *f = *state;
    luray_store_t *s = f->s;
    luray_store_stats_t st;
    uint64_t total = 0, seq = 1, off, size;
    uint64_t window[8] = {0};

    /* puts and drops 4x the capacity; keeps up to 8 objects alive; never fails */
    while (total < 4ull * 64 * 1024) {
        uint64_t sz = 1 + rng() % 12000;

        if (window[seq % 8])
            assert_int_equal(luray_store_delete(s, oid(window[seq % 8])), 0);
        put(s, seq, sz);
        window[seq % 8] = seq;
        if (seq % 3 == 0) {
            uint64_t back = window[rng() % 8];

            if (back) {
                assert_int_equal(luray_store_pin(s, oid(back), &off, &size), 0);
                check_bytes(s, off, size, back);
                assert_int_equal(luray_store_unpin(s, oid(back)), 0);
            }
        }
        total += sz;
        seq++;
    }
    luray_store_stats(s, &st);
    assert_true(st.n_objects <= 8);
    assert_int_equal(st.n_spilled, (uint64_t)spill_files(f->dir));
}

static void test_store_many_objects(void **state)
{
    fixture_t *f = *state;
    luray_store_t *s = f->s;
    luray_store_stats_t st;
    uint64_t seq, off, size;

    /* grows the table well past its first size, with deletes in between */
    for (seq = 1; seq <= 600; seq++)
        put(s, seq, 8);
    for (seq = 1; seq <= 600; seq += 2)
        assert_int_equal(luray_store_delete(s, oid(seq)), 0);
    for (seq = 1; seq <= 600; seq++) {
        assert_int_equal(luray_store_contains(s, oid(seq)), seq % 2 == 0);
        if (seq % 2 == 0) {
            assert_int_equal(luray_store_pin(s, oid(seq), &off, &size), 0);
            check_bytes(s, off, size, seq);
            assert_int_equal(luray_store_unpin(s, oid(seq)), 0);
        }
    }
    luray_store_stats(s, &st);
    assert_int_equal(st.n_objects, 300);
}

static void test_store_cleanup(void **state)
{
    (void)state;
    char name[64], path[128], dir[128];
    luray_store_t *s, *s2;
    struct stat st;
    uint64_t seq;

    snprintf(name, sizeof name, "luray-test-clean-%d", (int)getpid());
    snprintf(dir, sizeof dir, "/tmp/luray-test-clean-%d", (int)getpid());
    assert_int_equal(luray_store_new(name, 16384, dir, &s), 0);
    snprintf(path, sizeof path, "/dev/shm/%s", name);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* the name is taken */
    assert_int_equal(luray_store_new(name, 16384, NULL, &s2), LURAY_EEXIST);
    for (seq = 1; seq <= 6; seq++)
        put(s, seq, 4000);
    assert_true(spill_files(dir) > 0);
    luray_store_free(s);
    assert_int_not_equal(stat(path, &st), 0);
    assert_int_not_equal(stat(dir, &st), 0); /* we made it, it is empty: gone */
    luray_store_free(NULL);
}

static void test_store_no_spill_dir(void **state)
{
    (void)state;
    char name[64];
    luray_store_t *s;
    uint64_t off;

    snprintf(name, sizeof name, "/luray-test-nospill-%d", (int)getpid());
    assert_int_equal(luray_store_new(name, 8192, NULL, &s), 0);
    put(s, 1, 8192);
    assert_int_equal(luray_store_create(s, oid(2), 1, &off), LURAY_EFULL);
    luray_store_free(s);
}

static void test_shm_roundtrip(void **state)
{
    (void)state;
    char name[64], slashed[80];
    luray_shm_t a, b, c;
    const size_t big = (size_t)4 << 30; /* sparse: costs nothing until touched */

    snprintf(name, sizeof name, "luray-test-shm-%d", (int)getpid());
    snprintf(slashed, sizeof slashed, "/%s", name);
    assert_int_equal(luray_shm_create(name, big, &a), 0);
    assert_string_equal(a.name, name);
    assert_int_equal(luray_shm_create(slashed, 10, &c), LURAY_EEXIST);
    assert_int_equal(luray_shm_open(slashed, 0, &b), 0);
    assert_int_equal(b.size, big);
    ((char *)a.base)[big - 1] = 42;
    assert_int_equal(((char *)b.base)[big - 1], 42);
    assert_int_equal(luray_shm_open(name, big + 1, &c), LURAY_EINVAL);
    luray_shm_close(&b);
    luray_shm_close(&b); /* closed twice: no-op */
    assert_int_equal(luray_shm_unlink(name), 0);
    assert_int_equal(luray_shm_open(name, 0, &c), LURAY_ENOENT);
    assert_int_equal(luray_shm_unlink(name), LURAY_ENOENT);
    luray_shm_close(&a);
    assert_int_equal(luray_shm_create("a/b", 10, &c), LURAY_EINVAL);
    assert_int_equal(luray_shm_create("", 10, &c), LURAY_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_random),
        cmocka_unit_test(test_alloc_full_and_fragmented),
        cmocka_unit_test_setup_teardown(test_store_lifecycle, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_store_delete_while_pinned, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_store_spill_restore, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_store_all_pinned_is_full, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_store_lost_spill_file, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_store_churn, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_store_many_objects, setup_small, teardown),
        cmocka_unit_test(test_store_cleanup),
        cmocka_unit_test(test_store_no_spill_dir),
        cmocka_unit_test(test_shm_roundtrip),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
