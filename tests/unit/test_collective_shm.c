/* Unit tests of the collective layer's shared-memory transport (plugins/collective/coll_shm.c):
 * forked processes join a group and allreduce, broadcast and barrier; results are checked bit for
 * bit against the sums done here in rank order; disagreeing calls, a rank that never comes, one
 * that dies and an id used twice fail with messages naming the rank; nothing stays in /dev/shm. */
#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "collective/coll.h"
#include "luray/tensor.h"

#define MAXW 8

static char id_prefix[64];
static int id_seq;

/* A group id unique to this run; its shm names start with luray-coll-<id_prefix>. */
static void new_id(char *id, size_t len)
{
    snprintf(id, len, "%s-%d", id_prefix, ++id_seq);
}

static int shm_left(void)
{
    char prefix[96];
    struct dirent *e;
    int n = 0;
    DIR *d = opendir("/dev/shm");

    if (!d)
        return 0;
    snprintf(prefix, sizeof prefix, "luray-coll-%s", id_prefix);
    while ((e = readdir(d)))
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef int (*rank_fn)(int rank, int world, const char *id, void *arg);

/* Runs fn in `world` forked processes (rank 0..world-1); each exit status lands in status[].
 * Processes still running after limit_s are killed (status -1). */
static void run_ranks(int world, rank_fn fn, void *arg, const char *id, double limit_s,
                      int *status)
{
    pid_t pids[MAXW];
    double end = now() + limit_s;

    fflush(stdout);
    for (int r = 0; r < world; r++) {
        pids[r] = fork();
        assert_true(pids[r] >= 0);
        if (pids[r] == 0)
            _exit(fn(r, world, id, arg));
    }
    for (int r = 0; r < world; r++) {
        int st;

        status[r] = -1;
        for (;;) {
            pid_t p = waitpid(pids[r], &st, WNOHANG);

            if (p == pids[r]) {
                status[r] = WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
                break;
            }
            if (now() > end) {
                kill(pids[r], SIGKILL);
                waitpid(pids[r], &st, 0);
                break;
            }
            usleep(2000);
        }
    }
}

static void expect_all_ok(int world, rank_fn fn, void *arg)
{
    int status[MAXW];
    char id[96];

    new_id(id, sizeof id);
    run_ranks(world, fn, arg, id, 60, status);
    for (int r = 0; r < world; r++) {
        if (status[r] != 0)
            print_error("rank %d ended with status %d\n", r, status[r]);
        assert_int_equal(status[r], 0);
    }
    assert_int_equal(shm_left(), 0);
}

static coll_group_t *join(int rank, int world, const char *id, double timeout_s)
{
    coll_spec_t spec = {.id = id, .rank = rank, .world_size = world, .transport = COLL_SHM,
                        .timeout_s = timeout_s};
    char err[COLL_ERR_MAX];
    coll_group_t *g;

    if (coll_group_open(&spec, &g, err, sizeof err) < 0) {
        fprintf(stderr, "rank %d: %s\n", rank, err);
        return NULL;
    }
    return g;
}

/* Rank r's value i: fractions and signs that make float sums order-sensitive. */
static double value(int r, size_t i, unsigned salt)
{
    uint64_t x = (uint64_t)(r + 1) * 0x9E3779B97F4A7C15ull ^ (i + salt) * 0xBF58476D1CE4E5B9ull;

    x ^= x >> 31;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 29;
    return ((double)(x % 2000001) - 1000000.0) / 997.0;
}

/* What every rank must end with: the reduction in rank order, done in the dtype. */
static void expected(int world, int dtype, int op, size_t n, unsigned salt, void *out)
{
    for (size_t i = 0; i < n; i++) {
        if (dtype == LURAY_DTYPE_FLOAT32) {
            float acc = (float)value(0, i, salt);

            for (int k = 1; k < world; k++) {
                float v = (float)value(k, i, salt);

                acc = op == COLL_MAX ? (acc > v ? acc : v) : acc + v;
            }
            ((float *)out)[i] = op == COLL_MEAN ? acc / (float)world : acc;
        } else {
            double acc = value(0, i, salt);

            for (int k = 1; k < world; k++) {
                double v = value(k, i, salt);

                acc = op == COLL_MAX ? (acc > v ? acc : v) : acc + v;
            }
            ((double *)out)[i] = op == COLL_MEAN ? acc / world : acc;
        }
    }
}

static void fill(int r, int dtype, size_t n, unsigned salt, void *buf)
{
    for (size_t i = 0; i < n; i++) {
        if (dtype == LURAY_DTYPE_FLOAT32)
            ((float *)buf)[i] = (float)value(r, i, salt);
        else
            ((double *)buf)[i] = value(r, i, salt);
    }
}

/* One allreduce checked bit for bit; in place or into a second buffer. */
static int check_allreduce(coll_group_t *g, int rank, int world, int dtype, int op, size_t n,
                           unsigned salt, bool in_place)
{
    size_t es = dtype == LURAY_DTYPE_FLOAT32 ? 4 : 8, bytes = n * es + 8;
    uint8_t *src = malloc(bytes), *dst = malloc(bytes), *want = malloc(bytes);
    char err[COLL_ERR_MAX];
    int bad = 0;

    fill(rank, dtype, n, salt, src);
    expected(world, dtype, op, n, salt, want);
    memset(dst, 0xEE, bytes);
    if (coll_allreduce(g, src, in_place ? src : dst, n, dtype, (coll_op_t)op, err,
                       sizeof err) < 0) {
        fprintf(stderr, "rank %d: %s\n", rank, err);
        bad = 1;
    } else if (memcmp(in_place ? src : dst, want, n * es) != 0) {
        fprintf(stderr, "rank %d: wrong %s result for n=%zu\n", rank, coll_op_name(op), n);
        bad = 1;
    } else if (!in_place && dst[n * es] != 0xEE) {
        fprintf(stderr, "rank %d: wrote past the end for n=%zu\n", rank, n);
        bad = 1;
    }
    free(src);
    free(dst);
    free(want);
    return bad;
}

/* ---- results ---- */

typedef struct {
    int dtype, op;
} op_case_t;

static int rank_ops(int rank, int world, const char *id, void *arg)
{
    static const op_case_t cases[] = {
        {LURAY_DTYPE_FLOAT32, COLL_SUM}, {LURAY_DTYPE_FLOAT32, COLL_MEAN},
        {LURAY_DTYPE_FLOAT32, COLL_MAX}, {LURAY_DTYPE_FLOAT64, COLL_SUM},
        {LURAY_DTYPE_FLOAT64, COLL_MEAN}, {LURAY_DTYPE_FLOAT64, COLL_MAX},
    };
    coll_group_t *g = join(rank, world, id, 20);
    int bad = !g;

    for (size_t c = 0; !bad && c < sizeof cases / sizeof cases[0]; c++)
        bad = check_allreduce(g, rank, world, cases[c].dtype, cases[c].op, 100003, (unsigned)c,
                              c % 2 == 0);
    coll_group_free(g);
    return bad;
}

static void test_ops_two_ranks(void **state)
{
    expect_all_ok(2, rank_ops, NULL);
}

static void test_ops_three_ranks(void **state)
{
    expect_all_ok(3, rank_ops, NULL);
}

/* Sizes around slice, chunk and ring boundaries, and larger than the ring (positions reused). */
static int rank_sizes(int rank, int world, const char *id, void *arg)
{
    static const size_t sizes[] = {0,     1,     2,     15,    16,     17,      33,
                                   4095,  4096,  16383, 16385, 131071, 1000003, 3 * 1048576 + 7};
    coll_group_t *g = join(rank, world, id, 20);
    int bad = !g;

    for (size_t c = 0; !bad && c < sizeof sizes / sizeof sizes[0]; c++)
        bad = check_allreduce(g, rank, world, LURAY_DTYPE_FLOAT32, COLL_SUM, sizes[c],
                              (unsigned)c, c % 3 != 0);
    coll_group_free(g);
    return bad;
}

static void test_sizes(void **state)
{
    expect_all_ok(2, rank_sizes, NULL);
    expect_all_ok(3, rank_sizes, NULL);
    expect_all_ok(5, rank_sizes, NULL);
}

static void test_one_rank(void **state)
{
    expect_all_ok(1, rank_sizes, NULL);
}

/* Many calls back to back, of changing sizes: no call may see another's data. */
static int rank_repeat(int rank, int world, const char *id, void *arg)
{
    coll_group_t *g = join(rank, world, id, 20);
    char err[COLL_ERR_MAX];
    int bad = !g;

    for (int i = 0; !bad && i < 300; i++) {
        size_t n = i % 3 == 0 ? 70001 : (size_t)(i * 37 % 500);

        bad = check_allreduce(g, rank, world, LURAY_DTYPE_FLOAT32,
                              i % 2 ? COLL_SUM : COLL_MEAN, n, (unsigned)i, i % 4 != 1);
        if (!bad && i % 10 == 0 && coll_barrier(g, err, sizeof err) < 0) {
            fprintf(stderr, "rank %d: %s\n", rank, err);
            bad = 1;
        }
    }
    coll_group_free(g);
    return bad;
}

static void test_repeated_calls(void **state)
{
    expect_all_ok(2, rank_repeat, NULL);
    expect_all_ok(3, rank_repeat, NULL);
}

static int rank_broadcast(int rank, int world, const char *id, void *arg)
{
    static const size_t sizes[] = {0, 1, 7, 4096, 1000001, 5 * 1048576 + 3};
    coll_group_t *g = join(rank, world, id, 20);
    char err[COLL_ERR_MAX];
    int bad = !g;

    for (size_t c = 0; !bad && c < sizeof sizes / sizeof sizes[0]; c++) {
        int root = (int)(c % (size_t)world);
        uint8_t *buf = malloc(sizes[c] + 1);

        for (size_t i = 0; i < sizes[c]; i++)
            buf[i] = (uint8_t)(rank == root ? i * 7 + c : 0xAB);
        if (coll_broadcast(g, buf, sizes[c], root, err, sizeof err) < 0) {
            fprintf(stderr, "rank %d: %s\n", rank, err);
            bad = 1;
        }
        for (size_t i = 0; !bad && i < sizes[c]; i++)
            bad = buf[i] != (uint8_t)(i * 7 + c);
        free(buf);
    }
    coll_group_free(g);
    return bad;
}

static void test_broadcast(void **state)
{
    expect_all_ok(2, rank_broadcast, NULL);
    expect_all_ok(3, rank_broadcast, NULL);
}

/* Rank k arrives at the barrier k x 150 ms after a common start (CLOCK_MONOTONIC is one clock
 * for all processes): nobody leaves before the last one came. */
static int rank_barrier(int rank, int world, const char *id, void *arg)
{
    coll_group_t *g = join(rank, world, id, 20);
    double start = *(double *)arg, last = start + 0.15 * (world - 1);
    char err[COLL_ERR_MAX] = "";
    int bad = !g;

    if (g) {
        while (now() < start + 0.15 * rank)
            usleep(1000);
        if (coll_barrier(g, err, sizeof err) < 0 || now() < last) {
            fprintf(stderr, "rank %d: barrier left %.3f s early: %s\n", rank, last - now(), err);
            bad = 1;
        }
    }
    coll_group_free(g);
    return bad;
}

static void test_barrier(void **state)
{
    double start = now() + 1.0;

    expect_all_ok(3, rank_barrier, &start);
}

/* ---- failures ---- */

/* Ranks call different sizes: all fail with the same kind of message, and the group goes on. */
static int rank_mismatch(int rank, int world, const char *id, void *arg)
{
    coll_group_t *g = join(rank, world, id, 20);
    float buf[40] = {0};
    char err[COLL_ERR_MAX];
    int bad = !g;

    if (g && coll_allreduce(g, buf, buf, rank == 1 ? 20 : 10, LURAY_DTYPE_FLOAT32, COLL_SUM, err,
                            sizeof err) == 0) {
        fprintf(stderr, "rank %d: a mismatched allreduce succeeded\n", rank);
        bad = 1;
    } else if (g && (!strstr(err, "ranks disagree") || !strstr(err, "allreduce sum of 20") ||
                     !strstr(err, "allreduce sum of 10"))) {
        fprintf(stderr, "rank %d: unexpected message: %s\n", rank, err);
        bad = 1;
    }
    /* All agree on a barrier; then rank 0 broadcasts while the others call a barrier. */
    if (!bad && coll_barrier(g, err, sizeof err) < 0)
        bad = 1;
    if (!bad && (rank == 0 ? coll_broadcast(g, buf, 8, 0, err, sizeof err)
                           : coll_barrier(g, err, sizeof err)) == 0) {
        fprintf(stderr, "rank %d: a broadcast against barriers succeeded\n", rank);
        bad = 1;
    }
    if (!bad)
        bad = check_allreduce(g, rank, world, LURAY_DTYPE_FLOAT32, COLL_SUM, 1000, 5, true);
    coll_group_free(g);
    return bad;
}

static void test_mismatch(void **state)
{
    expect_all_ok(3, rank_mismatch, NULL);
}

/* Rank 0 joins alone: it fails after its timeout, naming rank 1. */
static void test_never_joins(void **state)
{
    coll_spec_t spec = {.rank = 0, .world_size = 2, .transport = COLL_SHM, .timeout_s = 0.4};
    char id[96], err[COLL_ERR_MAX];
    coll_group_t *g = NULL;
    double t0 = now();

    new_id(id, sizeof id);
    spec.id = id;
    assert_true(coll_group_open(&spec, &g, err, sizeof err) < 0);
    assert_null(g);
    assert_true(now() - t0 >= 0.35);
    assert_true(now() - t0 < 5);
    assert_non_null(strstr(err, "timed out"));
    assert_non_null(strstr(err, "rank 1 (never joined)"));
    assert_int_equal(shm_left(), 0);
}

/* Rank 2 dies after joining (no close): the others learn it within a fraction of a second,
 * not after their 30 s timeout, and the message names it. */
static int rank_dies(int rank, int world, const char *id, void *arg)
{
    coll_group_t *g = join(rank, world, id, 30);
    float buf[1000] = {0};
    char err[COLL_ERR_MAX];
    double t0;

    if (!g)
        return 1;
    if (rank == 2)
        _exit(0);
    t0 = now();
    if (coll_allreduce(g, buf, buf, 1000, LURAY_DTYPE_FLOAT32, COLL_SUM, err, sizeof err) == 0)
        return 1;
    if (now() - t0 > 5 || !strstr(err, "rank 2 (pid")) {
        fprintf(stderr, "rank %d: after %.2f s: %s\n", rank, now() - t0, err);
        return 1;
    }
    /* The group is unusable from now on, and says so. */
    if (coll_barrier(g, err, sizeof err) == 0 || !strstr(err, "unusable"))
        return 1;
    coll_group_free(g);
    return 0;
}

static void test_peer_dies(void **state)
{
    expect_all_ok(3, rank_dies, NULL);
}

/* A rank that closes the group while another waits on it. */
static int rank_closes(int rank, int world, const char *id, void *arg)
{
    coll_group_t *g = join(rank, world, id, 30);
    char err[COLL_ERR_MAX];

    if (!g)
        return 1;
    if (rank == 1) {
        coll_group_free(g);
        return 0;
    }
    if (coll_barrier(g, err, sizeof err) == 0 || !strstr(err, "rank 1 closed the group")) {
        fprintf(stderr, "rank %d: %s\n", rank, err);
        return 1;
    }
    coll_group_free(g);
    return 0;
}

static void test_peer_closes(void **state)
{
    expect_all_ok(2, rank_closes, NULL);
}

/* Two processes claim rank 0 of one id; or the world sizes differ. */
static int rank_claims(int rank, int world, const char *id, void *arg)
{
    int other_world = *(int *)arg;
    coll_spec_t spec = {.id = id, .rank = 0, .world_size = 2, .transport = COLL_SHM,
                        .timeout_s = 1.5};
    char err[COLL_ERR_MAX];
    coll_group_t *g = NULL;

    if (rank == 1) {
        usleep(200000);
        spec.world_size = other_world;
        spec.timeout_s = 0.5;
    }
    if (coll_group_open(&spec, &g, err, sizeof err) == 0)
        return 1;
    if (rank == 0)
        return strstr(err, "timed out") ? 0 : 1;
    if (other_world == 2 && strstr(err, "rank 0 is already taken by pid"))
        return 0;
    if (other_world == 3 && strstr(err, "already exists with world_size 2"))
        return 0;
    fprintf(stderr, "unexpected: %s\n", err);
    return 1;
}

static void test_id_collision(void **state)
{
    int same = 2, other = 3;

    expect_all_ok(2, rank_claims, &same);
    expect_all_ok(2, rank_claims, &other);
}

static void test_bad_spec(void **state)
{
    coll_spec_t spec = {.id = "x", .rank = 2, .world_size = 2, .transport = COLL_SHM,
                        .timeout_s = 1};
    char err[COLL_ERR_MAX];
    coll_group_t *g;

    assert_true(coll_group_open(&spec, &g, err, sizeof err) < 0);
    assert_non_null(strstr(err, "rank must be 0 to 1"));
    spec.rank = 0;
    spec.id = "";
    assert_true(coll_group_open(&spec, &g, err, sizeof err) < 0);
    assert_non_null(strstr(err, "group id"));
    spec.id = "x";
    spec.timeout_s = 0;
    assert_true(coll_group_open(&spec, &g, err, sizeof err) < 0);
    assert_non_null(strstr(err, "timeout_s"));
    assert_int_equal(coll_op_parse("mean"), COLL_MEAN);
    assert_int_equal(coll_op_parse("avg"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ops_two_ranks),  cmocka_unit_test(test_ops_three_ranks),
        cmocka_unit_test(test_sizes),          cmocka_unit_test(test_one_rank),
        cmocka_unit_test(test_repeated_calls), cmocka_unit_test(test_broadcast),
        cmocka_unit_test(test_barrier),        cmocka_unit_test(test_mismatch),
        cmocka_unit_test(test_never_joins),    cmocka_unit_test(test_peer_dies),
        cmocka_unit_test(test_peer_closes),    cmocka_unit_test(test_id_collision),
        cmocka_unit_test(test_bad_spec),
    };

    snprintf(id_prefix, sizeof id_prefix, "ut-shm-%d", (int)getpid());
    return cmocka_run_group_tests(tests, NULL, NULL);
}
