/* Unit tests of the collective layer's tcp transport (plugins/collective/coll_tcp.c): forked
 * processes on 127.0.0.1 form a nanomsg ring and allreduce, broadcast and barrier. The data are
 * whole numbers, so sums are exact whatever order the ring adds in; a rank that never comes or
 * dies, disagreeing calls and bad addresses fail with messages naming the rank. */
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

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One group's addresses: free ports on 127.0.0.1, picked before the processes start. */
typedef struct {
    char text[MAXW][32];
    const char *addrs[MAXW];
    double timeout_s;
    void *arg;
} ring_t;

static void ring_init(ring_t *ring, int world, double timeout_s)
{
    char err[COLL_ERR_MAX];

    for (int k = 0; k < world; k++) {
        int port = coll_free_port("127.0.0.1", err, sizeof err);

        assert_true(port > 0);
        snprintf(ring->text[k], sizeof ring->text[k], "127.0.0.1:%d", port);
        ring->addrs[k] = ring->text[k];
    }
    ring->timeout_s = timeout_s;
}

typedef int (*rank_fn)(int rank, int world, ring_t *ring);

static void run_ranks(int world, rank_fn fn, ring_t *ring, double limit_s, int *status)
{
    pid_t pids[MAXW];
    double end = now() + limit_s;

    fflush(stdout);
    for (int r = 0; r < world; r++) {
        pids[r] = fork();
        assert_true(pids[r] >= 0);
        if (pids[r] == 0)
            _exit(fn(r, world, ring));
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

static void expect_all_ok(int world, rank_fn fn, void *arg, double timeout_s)
{
    int status[MAXW];
    ring_t ring = {.arg = arg};

    ring_init(&ring, world, timeout_s);
    run_ranks(world, fn, &ring, 90, status);
    for (int r = 0; r < world; r++) {
        if (status[r] != 0)
            print_error("rank %d ended with status %d\n", r, status[r]);
        assert_int_equal(status[r], 0);
    }
}

static coll_group_t *join(int rank, int world, ring_t *ring)
{
    char id[32], err[COLL_ERR_MAX];
    coll_spec_t spec = {.id = id, .rank = rank, .world_size = world, .transport = COLL_TCP,
                        .addresses = ring->addrs, .timeout_s = ring->timeout_s};
    coll_group_t *g;

    snprintf(id, sizeof id, "ut-tcp-%d", (int)getppid());
    if (coll_group_open(&spec, &g, err, sizeof err) < 0) {
        fprintf(stderr, "rank %d: %s\n", rank, err);
        return NULL;
    }
    return g;
}

/* Rank r's value i: a whole number in [-1000, 1000]. */
static double value(int r, size_t i, unsigned salt)
{
    uint64_t x = (uint64_t)(r + 1) * 0x9E3779B97F4A7C15ull ^ (i + salt) * 0xBF58476D1CE4E5B9ull;

    x ^= x >> 31;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 29;
    return (double)(x % 2001) - 1000.0;
}

static int check_allreduce(coll_group_t *g, int rank, int world, int dtype, int op, size_t n,
                           unsigned salt, bool in_place)
{
    size_t es = dtype == LURAY_DTYPE_FLOAT32 ? 4 : 8;
    uint8_t *src = malloc(n * es + 8), *dst = malloc(n * es + 8);
    char err[COLL_ERR_MAX];
    int bad = 0;

    for (size_t i = 0; i < n; i++) {
        if (dtype == LURAY_DTYPE_FLOAT32)
            ((float *)src)[i] = (float)value(rank, i, salt);
        else
            ((double *)src)[i] = value(rank, i, salt);
    }
    if (coll_allreduce(g, src, in_place ? src : dst, n, dtype, (coll_op_t)op, err,
                       sizeof err) < 0) {
        fprintf(stderr, "rank %d: %s\n", rank, err);
        bad = 1;
    }
    for (size_t i = 0; !bad && i < n; i++) {
        double acc = value(0, i, salt), got;

        for (int k = 1; k < world; k++) {
            double v = value(k, i, salt);

            acc = op == COLL_MAX ? (acc > v ? acc : v) : acc + v;
        }
        if (dtype == LURAY_DTYPE_FLOAT32) {
            got = ((float *)(in_place ? src : dst))[i];
            bad = op == COLL_MEAN ? got != (double)((float)acc / (float)world) : got != acc;
        } else {
            got = ((double *)(in_place ? src : dst))[i];
            bad = op == COLL_MEAN ? got != acc / world : got != acc;
        }
        if (bad)
            fprintf(stderr, "rank %d: %s n=%zu: element %zu is %g, expected %g\n", rank,
                    coll_op_name(op), n, i, got, acc);
    }
    free(src);
    free(dst);
    return bad;
}

/* ---- results ---- */

static int rank_ops(int rank, int world, ring_t *ring)
{
    static const int dtypes[] = {LURAY_DTYPE_FLOAT32, LURAY_DTYPE_FLOAT64};
    coll_group_t *g = join(rank, world, ring);
    int bad = !g;

    for (int d = 0; d < 2; d++)
        for (int op = 0; !bad && op < COLL_OP_COUNT; op++)
            bad = check_allreduce(g, rank, world, dtypes[d], op, 100003, (unsigned)(d * 3 + op),
                                  op != 1);
    coll_group_free(g);
    return bad;
}

static void test_ops(void **state)
{
    expect_all_ok(2, rank_ops, NULL, 20);
    expect_all_ok(3, rank_ops, NULL, 20);
}

/* Sizes around slice and chunk (256 KiB) boundaries, and many chunks per slice. */
static int rank_sizes(int rank, int world, ring_t *ring)
{
    static const size_t sizes[] = {0, 1, 2, 17, 65535, 65536, 65537, 200003, 1000003};
    coll_group_t *g = join(rank, world, ring);
    int bad = !g;

    for (size_t c = 0; !bad && c < sizeof sizes / sizeof sizes[0]; c++)
        bad = check_allreduce(g, rank, world, LURAY_DTYPE_FLOAT32, COLL_SUM, sizes[c],
                              (unsigned)c, c % 2 == 0);
    coll_group_free(g);
    return bad;
}

static void test_sizes(void **state)
{
    expect_all_ok(1, rank_sizes, NULL, 20);
    expect_all_ok(2, rank_sizes, NULL, 20);
    expect_all_ok(4, rank_sizes, NULL, 20);
}

static int rank_repeat(int rank, int world, ring_t *ring)
{
    coll_group_t *g = join(rank, world, ring);
    char err[COLL_ERR_MAX];
    int bad = !g;

    for (int i = 0; !bad && i < 100; i++) {
        bad = check_allreduce(g, rank, world, LURAY_DTYPE_FLOAT64, i % 2 ? COLL_MAX : COLL_MEAN,
                              (size_t)(i * 977 % 3000), (unsigned)i, true);
        if (!bad && i % 7 == 0 && coll_barrier(g, err, sizeof err) < 0) {
            fprintf(stderr, "rank %d: %s\n", rank, err);
            bad = 1;
        }
    }
    coll_group_free(g);
    return bad;
}

static void test_repeated_calls(void **state)
{
    expect_all_ok(3, rank_repeat, NULL, 20);
}

static int rank_broadcast(int rank, int world, ring_t *ring)
{
    static const size_t sizes[] = {0, 1, 262144, 262145, 1048576 * 2 + 5};
    coll_group_t *g = join(rank, world, ring);
    char err[COLL_ERR_MAX];
    int bad = !g;

    for (size_t c = 0; !bad && c < sizeof sizes / sizeof sizes[0]; c++) {
        int root = (int)((c + 1) % (size_t)world);
        uint8_t *buf = malloc(sizes[c] + 1);

        for (size_t i = 0; i < sizes[c]; i++)
            buf[i] = (uint8_t)(rank == root ? i * 13 + c : 0x5A);
        if (coll_broadcast(g, buf, sizes[c], root, err, sizeof err) < 0) {
            fprintf(stderr, "rank %d: %s\n", rank, err);
            bad = 1;
        }
        for (size_t i = 0; !bad && i < sizes[c]; i++)
            bad = buf[i] != (uint8_t)(i * 13 + c);
        free(buf);
    }
    coll_group_free(g);
    return bad;
}

static void test_broadcast(void **state)
{
    expect_all_ok(3, rank_broadcast, NULL, 20);
}

/* Rank k arrives at the barrier k x 150 ms after a common start (CLOCK_MONOTONIC is one clock
 * for all processes): nobody leaves before the last one came. */
static int rank_barrier(int rank, int world, ring_t *ring)
{
    coll_group_t *g = join(rank, world, ring);
    double start = *(double *)ring->arg, last = start + 0.15 * (world - 1);
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

    expect_all_ok(3, rank_barrier, &start, 20);
}

/* ---- failures ---- */

static int rank_mismatch(int rank, int world, ring_t *ring)
{
    coll_group_t *g = join(rank, world, ring);
    double buf[64] = {0};
    char err[COLL_ERR_MAX];
    int bad = !g;

    if (g && coll_allreduce(g, buf, buf, rank == 2 ? 64 : 32, LURAY_DTYPE_FLOAT64,
                            rank == 2 ? COLL_SUM : COLL_MAX, err, sizeof err) == 0)
        bad = 1;
    if (g && !bad && !strstr(err, "ranks disagree")) {
        fprintf(stderr, "rank %d: %s\n", rank, err);
        bad = 1;
    }
    if (!bad)
        bad = check_allreduce(g, rank, world, LURAY_DTYPE_FLOAT32, COLL_SUM, 5000, 9, true);
    coll_group_free(g);
    return bad;
}

static void test_mismatch(void **state)
{
    expect_all_ok(3, rank_mismatch, NULL, 20);
}

static void test_never_joins(void **state)
{
    ring_t ring;
    char err[COLL_ERR_MAX], want[96];
    coll_spec_t spec = {.id = "lonely", .rank = 0, .world_size = 2, .transport = COLL_TCP,
                        .timeout_s = 0.5};
    coll_group_t *g = NULL;
    double t0 = now();

    ring_init(&ring, 2, 0.5);
    spec.addresses = ring.addrs;
    assert_true(coll_group_open(&spec, &g, err, sizeof err) < 0);
    assert_null(g);
    assert_true(now() - t0 >= 0.45 && now() - t0 < 5);
    snprintf(want, sizeof want, "rank 1 (tcp://%s)", ring.text[1]);
    assert_non_null(strstr(err, want));
    assert_non_null(strstr(err, "timed out"));
}

/* Rank 1 dies after joining: its neighbours fail after their timeout, naming it. */
static int rank_dies(int rank, int world, ring_t *ring)
{
    coll_group_t *g = join(rank, world, ring);
    float buf[100000] = {0};
    char err[COLL_ERR_MAX], want[64];

    if (!g)
        return 1;
    if (rank == 1)
        _exit(0);
    if (coll_allreduce(g, buf, buf, 100000, LURAY_DTYPE_FLOAT32, COLL_SUM, err,
                       sizeof err) == 0)
        return 1;
    snprintf(want, sizeof want, "rank 1 (tcp://%s)", ring->text[1]);
    if (!strstr(err, "timed out") || (rank == 2 && !strstr(err, want))) {
        fprintf(stderr, "rank %d: %s\n", rank, err);
        return 1;
    }
    if (coll_barrier(g, err, sizeof err) == 0 || !strstr(err, "unusable"))
        return 1;
    coll_group_free(g);
    return 0;
}

static void test_peer_dies(void **state)
{
    expect_all_ok(3, rank_dies, NULL, 1);
}

static void test_bad_addresses(void **state)
{
    const char *bad[] = {"127.0.0.1:1", "nohostport"};
    coll_spec_t spec = {.id = "bad", .rank = 0, .world_size = 2, .transport = COLL_TCP,
                        .addresses = bad, .timeout_s = 1};
    char err[COLL_ERR_MAX];
    coll_group_t *g;

    assert_true(coll_group_open(&spec, &g, err, sizeof err) < 0);
    assert_non_null(strstr(err, "address of rank 1 must be \"host:port\""));
    assert_true(coll_free_port("not-an-ip", err, sizeof err) < 0);
    assert_non_null(strstr(err, "not an IPv4 address"));
}

/* A second process that binds an address already in use fails at once, saying so. */
static int rank_bind(int rank, int world, ring_t *ring)
{
    coll_group_t *g;
    char err[COLL_ERR_MAX];
    coll_spec_t spec = {.id = "bind", .rank = 0, .world_size = 2, .transport = COLL_TCP,
                        .addresses = ring->addrs, .timeout_s = 1};

    if (rank == 1) {
        usleep(200000);
        if (coll_group_open(&spec, &g, err, sizeof err) == 0)
            return 1;
        return strstr(err, "cannot listen on tcp://") ? 0 : 1;
    }
    return coll_group_open(&spec, &g, err, sizeof err) == 0;
}

static void test_address_in_use(void **state)
{
    expect_all_ok(2, rank_bind, NULL, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ops),           cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_repeated_calls), cmocka_unit_test(test_broadcast),
        cmocka_unit_test(test_barrier),       cmocka_unit_test(test_mismatch),
        cmocka_unit_test(test_never_joins),   cmocka_unit_test(test_peer_dies),
        cmocka_unit_test(test_bad_addresses), cmocka_unit_test(test_address_in_use),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
