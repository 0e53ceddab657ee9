/* The xgboost plugin's rabit tracker (tracker.c, link_map.c): a valid tree and ring for any
 * worker count, and the protocol as rabit's workers speak it, played here by threads that link
 * to each other as the tracker tells them; print and shutdown commands, a stranger dropped. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "luray/errors.h"
#include "xgboost/link_map.h"
#include "xgboost/tracker.h"

#define MAX_WORKERS 8

/* --- link map ------------------------------------------------------------------------------ */

static bool has_link(const xgb_link_map_t *m, int a, int b)
{
    for (int i = 0; i < m->ntree[a]; i++) {
        if (m->tree[a * XGB_TREE_MAX_LINKS + i] == b)
            return true;
    }
    return false;
}

static void test_link_map(void **state)
{
    for (int n = 1; n <= 40; n++) {
        xgb_link_map_t m;
        assert_int_equal(xgb_link_map_init(&m, n), 0);
        int edges = 0;
        for (int r = 0; r < n; r++) {
            assert_int_equal(m.prev[r], (r + n - 1) % n);
            assert_int_equal(m.next[r], (r + 1) % n);
            for (int i = 0; i < m.ntree[r]; i++) {
                int o = m.tree[r * XGB_TREE_MAX_LINKS + i];
                assert_true(o >= 0 && o < n && o != r);
                assert_true(has_link(&m, o, r)); /* links go both ways */
                edges++;
            }
            if (m.parent[r] >= 0)
                assert_true(has_link(&m, r, m.parent[r]));
        }
        /* A tree: n - 1 edges, one root, every rank reaches the root. */
        assert_int_equal(edges, 2 * (n - 1));
        int roots = 0;
        for (int r = 0; r < n; r++) {
            roots += m.parent[r] == -1;
            int at = r, steps = 0;
            while (m.parent[at] != -1 && steps++ <= n)
                at = m.parent[at];
            assert_true(steps <= n);
        }
        assert_int_equal(roots, 1);
        assert_int_equal(m.parent[0], -1);
        xgb_link_map_close(&m);
    }
    xgb_link_map_t m;
    assert_int_equal(xgb_link_map_init(&m, 0), LURAY_EINVAL);
}

/* --- fake rabit workers -------------------------------------------------------------------- */

typedef struct {
    int port;        /* the tracker's */
    char task_id[16];
    int rank;        /* assigned */
    int world;
    int parent;
    int nlinks;
    int links[8];    /* ranks linked to */
    int expect[8];   /* tree neighbours and ring neighbours the tracker named */
    int nexpect;
    bool ok;
    char why[128];
} fake_t;

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static bool put_int(int fd, int v)
{
    return send(fd, &v, sizeof(v), MSG_NOSIGNAL) == (ssize_t)sizeof(v);
}

static bool get_int(int fd, int *v)
{
    return recv(fd, v, sizeof(*v), MSG_WAITALL) == (ssize_t)sizeof(*v);
}

static bool put_str(int fd, const char *s)
{
    int len = (int)strlen(s);
    return put_int(fd, len) && send(fd, s, (size_t)len, MSG_NOSIGNAL) == len;
}

static bool get_str(int fd, char *buf, size_t cap)
{
    int len;
    if (!get_int(fd, &len) || len < 0 || (size_t)len >= cap)
        return false;
    buf[len] = '\0';
    return len == 0 || recv(fd, buf, (size_t)len, MSG_WAITALL) == len;
}

/* Connects to the tracker and says hello as rabit's ConnectTracker does. */
static int hello(int port, int rank, int world, const char *task, const char *cmd)
{
    int fd = dial(port), magic = 0;
    if (fd < 0)
        return -1;
    if (!put_int(fd, XGB_TRACKER_MAGIC) || !get_int(fd, &magic) || magic != XGB_TRACKER_MAGIC ||
        !put_int(fd, rank) || !put_int(fd, world) || !put_str(fd, task) || !put_str(fd, cmd)) {
        close(fd);
        return -1;
    }
    return fd;
}

static int listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t alen = sizeof(a);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

#define FAIL(w, msg)                                        \
    do {                                                    \
        snprintf((w)->why, sizeof((w)->why), "%s", (msg));  \
        goto out;                                           \
    } while (0)

/* One worker's start: rank and neighbours from the tracker, links made and accepted, then
 * shutdown; rabit's ReConnectLinks and Shutdown, reduced to what the protocol needs. */
static void *fake_worker(void *arg)
{
    fake_t *w = arg;
    int lport = 0, peers[8], npeers = 0;
    int fd = hello(w->port, -1, -1, w->task_id, "start");
    int lfd = listener(&lport);
    if (fd < 0 || lfd < 0)
        FAIL(w, "connect");
    int nn;
    if (!get_int(fd, &w->rank) || !get_int(fd, &w->parent) || !get_int(fd, &w->world) ||
        !get_int(fd, &nn) || nn < 0 || nn > 3)
        FAIL(w, "rank");
    for (int i = 0; i < nn; i++) {
        if (!get_int(fd, &w->expect[w->nexpect++]))
            FAIL(w, "tree");
    }
    for (int i = 0; i < 2; i++) {
        int r;
        if (!get_int(fd, &r))
            FAIL(w, "ring");
        bool dup = r < 0;
        for (int j = 0; j < w->nexpect && !dup; j++)
            dup = w->expect[j] == r;
        if (!dup)
            w->expect[w->nexpect++] = r;
    }
    int nconn, naccept;
    if (!put_int(fd, 0) || !get_int(fd, &nconn) || !get_int(fd, &naccept))
        FAIL(w, "link counts");
    for (int i = 0; i < nconn; i++) {
        char host[64];
        int port, rank, theirs;
        if (!get_str(fd, host, sizeof(host)) || !get_int(fd, &port) || !get_int(fd, &rank))
            FAIL(w, "peer");
        int p = dial(port);
        if (p < 0 || !put_int(p, w->rank) || !get_int(p, &theirs) || theirs != rank)
            FAIL(w, "link");
        peers[npeers++] = p;
        w->links[w->nlinks++] = rank;
    }
    if (!put_int(fd, 0) || !put_int(fd, lport))
        FAIL(w, "port");
    close(fd);
    fd = -1;
    for (int i = 0; i < naccept; i++) {
        int p = accept(lfd, NULL, NULL), theirs;
        if (p < 0 || !put_int(p, w->rank) || !get_int(p, &theirs))
            FAIL(w, "accept");
        peers[npeers++] = p;
        w->links[w->nlinks++] = theirs;
    }
    int sfd = hello(w->port, w->rank, w->world, w->task_id, "shutdown");
    if (sfd < 0)
        FAIL(w, "shutdown");
    close(sfd);
    w->ok = true;
out:
    for (int i = 0; i < npeers; i++)
        close(peers[i]);
    if (fd >= 0)
        close(fd);
    if (lfd >= 0)
        close(lfd);
    return NULL;
}

static char printed[256];

static void on_print(void *ctx, const char *msg)
{
    (void)ctx;
    snprintf(printed, sizeof(printed), "%s", msg);
}

static void run_job(int n)
{
    xgb_tracker_t *t;
    char err[256];
    assert_int_equal(xgb_tracker_start(&t, n, "127.0.0.1", 0, on_print, NULL, err, sizeof(err)),
                     0);
    fake_t w[MAX_WORKERS];
    pthread_t th[MAX_WORKERS];
    memset(w, 0, sizeof(w));
    /* Task ids in reverse start order: ranks must follow the ids, not the arrival. */
    for (int i = n - 1; i >= 0; i--) {
        w[i].port = xgb_tracker_port(t);
        snprintf(w[i].task_id, sizeof(w[i].task_id), "%d", i);
        assert_int_equal(pthread_create(&th[i], NULL, fake_worker, &w[i]), 0);
    }
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < n; i++) {
        if (!w[i].ok)
            fail_msg("worker %d of %d failed at: %s", i, n, w[i].why);
        assert_int_equal(w[i].rank, i);
        assert_int_equal(w[i].world, n);
        /* Linked to exactly the neighbours it was named, each once. */
        assert_int_equal(w[i].nlinks, w[i].nexpect);
        for (int j = 0; j < w[i].nexpect; j++) {
            int found = 0;
            for (int k = 0; k < w[i].nlinks; k++)
                found += w[i].links[k] == w[i].expect[j];
            assert_int_equal(found, 1);
        }
    }
    assert_int_equal(xgb_tracker_wait(t, 5000, err, sizeof(err)), XGB_TRACKER_DONE);
    xgb_tracker_free(t);
}

static void test_jobs(void **state)
{
    for (int n = 1; n <= MAX_WORKERS; n++)
        run_job(n);
}

static void test_print_stranger_and_stop(void **state)
{
    xgb_tracker_t *t;
    char err[256];
    assert_int_equal(xgb_tracker_start(&t, 2, "127.0.0.1", 0, on_print, NULL, err, sizeof(err)),
                     0);
    int port = xgb_tracker_port(t);

    /* Something that is not a rabit worker: dropped, the tracker goes on. */
    int fd = dial(port), magic = 0;
    assert_true(fd >= 0);
    assert_true(put_int(fd, 1234));
    assert_false(get_int(fd, &magic));
    close(fd);
    assert_non_null(strstr(printed, "magic number 1234"));

    fd = hello(port, 0, 2, "0", "print");
    assert_true(fd >= 0);
    assert_true(put_str(fd, "hello tracker\n"));
    close(fd);
    for (int i = 0; i < 200 && strcmp(printed, "hello tracker") != 0; i++)
        usleep(10000);
    assert_string_equal(printed, "hello tracker");

    /* Nobody started: still running after a short wait, then stopped by free. */
    assert_int_equal(xgb_tracker_wait(t, 50, err, sizeof(err)), XGB_TRACKER_RUNNING);
    xgb_tracker_free(t);
}

static void test_protocol_errors(void **state)
{
    xgb_tracker_t *t;
    char err[256];
    /* A worker claiming another world size fails the job with a reason. */
    assert_int_equal(xgb_tracker_start(&t, 2, "127.0.0.1", 0, NULL, NULL, err, sizeof(err)), 0);
    int fd = hello(xgb_tracker_port(t), -1, 3, "0", "start");
    assert_true(fd >= 0);
    assert_int_equal(xgb_tracker_wait(t, 5000, err, sizeof(err)), XGB_TRACKER_FAILED);
    assert_non_null(strstr(err, "world size is 3"));
    close(fd);
    xgb_tracker_free(t);

    /* Shutdown from a rank that never started. */
    assert_int_equal(xgb_tracker_start(&t, 2, "127.0.0.1", 0, NULL, NULL, err, sizeof(err)), 0);
    fd = hello(xgb_tracker_port(t), 5, 2, "0", "shutdown");
    assert_true(fd >= 0);
    assert_int_equal(xgb_tracker_wait(t, 5000, err, sizeof(err)), XGB_TRACKER_FAILED);
    assert_non_null(strstr(err, "rank 5"));
    close(fd);
    xgb_tracker_free(t);

    assert_int_equal(xgb_tracker_start(&t, 0, "127.0.0.1", 0, NULL, NULL, err, sizeof(err)),
                     LURAY_EINVAL);
    assert_int_equal(xgb_tracker_start(&t, 1, "", 0, NULL, NULL, err, sizeof(err)),
                     LURAY_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_link_map),
        cmocka_unit_test(test_jobs),
        cmocka_unit_test(test_print_stranger_and_stop),
        cmocka_unit_test(test_protocol_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
