/* The embedded cluster's node on a thread of the driver: the driver reaches it over nanomsg's
 * inproc transport, which saves a kernel round trip on every message between them. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "errors.h"
#include "node.h"

struct luray_node_thread {
    pthread_t tid;
    luray_node_opts_t opts; /* strings owned below */
    char *session_dir, *exe, *resources_json, *host, *inproc_addr;
    int ready[2];
    int status;
    volatile int done;
};

static void *run(void *arg)
{
    luray_node_thread_t *t = arg;
    int ready_fd = t->opts.ready_fd;
    t->status = luray_node_main(&t->opts);
    if (t->status != 0 && t->opts.ready_fd >= 0) {
        /* failed before it was ready: wake the starter (once ready, the node closed the fd) */
        ssize_t w = write(ready_fd, "F", 1);
        (void)w;
        close(ready_fd);
    }
    t->done = 1;
    return NULL;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static void thread_free(luray_node_thread_t *t)
{
    free(t->session_dir);
    free(t->exe);
    free(t->resources_json);
    free(t->host);
    free(t->inproc_addr);
    if (t->ready[0] >= 0)
        close(t->ready[0]);
    free(t);
}

int luray_node_start_thread(const luray_node_opts_t *opts, luray_node_thread_t **out, char *err,
                            size_t errlen)
{
    luray_node_thread_t *t = calloc(1, sizeof(*t));
    if (!t)
        return LURAY_ENOMEM;
    t->ready[0] = t->ready[1] = -1;
    t->opts = *opts;
    t->session_dir = dup_or_null(opts->session_dir);
    t->exe = dup_or_null(opts->exe);
    t->resources_json = dup_or_null(opts->resources_json);
    t->host = dup_or_null(opts->host);
    t->inproc_addr = dup_or_null(opts->inproc_addr);
    t->opts.session_dir = t->session_dir;
    t->opts.exe = t->exe;
    t->opts.resources_json = t->resources_json;
    t->opts.host = t->host;
    t->opts.inproc_addr = t->inproc_addr;
    /* An embedded cluster is one node of its own. */
    t->opts.head = 0;
    t->opts.join = t->opts.token_file = t->opts.state_dir = NULL;
    if (pipe(t->ready) != 0) {
        snprintf(err, errlen, "cannot start the node: %s", strerror(errno));
        thread_free(t);
        return LURAY_EIO;
    }
    /* The node writes "R" when it serves and closes its end; "F" when it failed. */
    t->opts.ready_fd = t->ready[1];
    /* Signals belong to the driver's thread (Ctrl-C interrupts its script or REPL line): the
     * node thread, and the nanomsg threads it starts, inherit a mask that blocks them. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGQUIT);
    sigaddset(&block, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int rc = pthread_create(&t->tid, NULL, run, t);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    /* SIGCHLD (the node's workers exiting) is the node's: blocked here, it goes to the node
     * thread and never interrupts the driver's waits, which take EINTR for a Ctrl-C. */
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    if (rc == 0)
        pthread_sigmask(SIG_BLOCK, &chld, NULL);
    if (rc != 0) {
        close(t->ready[1]);
        snprintf(err, errlen, "cannot start the node thread");
        thread_free(t);
        return LURAY_EIO;
    }
    char c = 0;
    struct pollfd pfd = {.fd = t->ready[0], .events = POLLIN};
    int pr;
    while ((pr = poll(&pfd, 1, 15000)) < 0 && errno == EINTR)
        ;
    if (pr <= 0 || read(t->ready[0], &c, 1) != 1 || c != 'R') {
        snprintf(err, errlen, "the node did not start (see the messages above)");
        pthread_join(t->tid, NULL);
        thread_free(t);
        return LURAY_EIO;
    }
    t->opts.ready_fd = -1; /* closed by the node once ready */
    *out = t;
    return 0;
}

int luray_node_join(luray_node_thread_t *t, int timeout_ms)
{
    if (!t)
        return 0;
    struct timespec step = {0, 1000000};
    for (int waited = 0; !t->done && waited < timeout_ms; waited++)
        nanosleep(&step, NULL);
    if (!t->done)
        return LURAY_ETIMEDOUT; /* leave it: the process is about to end anyway */
    pthread_join(t->tid, NULL);
    int status = t->status;
    thread_free(t);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    pthread_sigmask(SIG_UNBLOCK, &chld, NULL);
    return status;
}
