/* The heartbeat thread (see node_beat.h). */
#include "node_beat.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nanomsg/nn.h>
#include <nanomsg/pipeline.h>

#include "luray/errors.h"

struct node_beat {
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool stop;
    uint8_t *frame;
    size_t len;
    luray_auth_t *auth;
    int sock;
    uint64_t period_ms;
};

static void deadline(struct timespec *ts, uint64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void send_one(node_beat_t *b)
{
    void *msg = NULL;
    pthread_mutex_lock(&b->mu);
    size_t len = b->len;
    if (len)
        msg = nn_allocmsg(len + LURAY_AUTH_OVERHEAD, 0);
    if (msg)
        memcpy((uint8_t *)msg + LURAY_AUTH_HEADER, b->frame, len);
    pthread_mutex_unlock(&b->mu);
    if (!msg)
        return;
    luray_auth_seal(b->auth, (uint8_t *)msg + LURAY_AUTH_HEADER, len, msg);
    if (nn_send(b->sock, &msg, NN_MSG, NN_DONTWAIT) < 0)
        nn_freemsg(msg); /* the head is not reachable now: the next beat tries again */
}

static void *run(void *arg)
{
    node_beat_t *b = arg;
    pthread_mutex_lock(&b->mu);
    while (!b->stop) {
        struct timespec ts;
        deadline(&ts, b->period_ms);
        while (!b->stop && pthread_cond_timedwait(&b->cond, &b->mu, &ts) != ETIMEDOUT)
            ;
        if (b->stop)
            break;
        pthread_mutex_unlock(&b->mu);
        send_one(b);
        pthread_mutex_lock(&b->mu);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

int node_beat_start(luray_auth_t *auth, const char *head_addr, uint64_t period_ms,
                    node_beat_t **out)
{
    node_beat_t *b = calloc(1, sizeof(*b));
    if (!b)
        return LURAY_ENOMEM;
    b->auth = auth;
    b->period_ms = period_ms;
    b->sock = nn_socket(AF_SP, NN_PUSH);
    int linger = 0;
    if (b->sock < 0 ||
        nn_setsockopt(b->sock, NN_SOL_SOCKET, NN_LINGER, &linger, sizeof(linger)) < 0 ||
        nn_connect(b->sock, head_addr) < 0)
        goto err_sock;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&b->mu, NULL);
    /* Signals are the loop's: the thread inherits a mask that blocks them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&b->tid, NULL, run, b);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        goto err_sync;
    *out = b;
    return 0;

err_sync:
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->mu);
err_sock:
    if (b->sock >= 0)
        nn_close(b->sock);
    free(b);
    return LURAY_EIO;
}

void node_beat_update(node_beat_t *b, const void *frame, size_t len)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->mu);
    if (len > b->len || !b->frame) {
        uint8_t *f = realloc(b->frame, len ? len : 1);
        if (!f) {
            pthread_mutex_unlock(&b->mu);
            return;
        }
        b->frame = f;
    }
    if (len)
        memcpy(b->frame, frame, len);
    b->len = len;
    pthread_mutex_unlock(&b->mu);
}

void node_beat_stop(node_beat_t *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->mu);
    b->stop = true;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->tid, NULL);
    nn_close(b->sock);
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->mu);
    free(b->frame);
    free(b);
}
