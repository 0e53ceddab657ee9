/* The replica's end of the proxy link over nanomsg: requests in on a PULL socket, responses out
 * on PUSH sockets to each proxy that sent some. */
#include "replica.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nanomsg/nn.h>
#include <nanomsg/pipeline.h>

#include "wire.h"

static int free_tcp_port(const char *host)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
        a.sin_addr.s_addr = htonl(INADDR_ANY);
    socklen_t len = sizeof(a);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

int replica_open(replica_t *r, const char *dir, const char *host, char *err, size_t errlen)
{
    static int seq;
    memset(r, 0, sizeof(*r));
    r->sock = nn_socket(AF_SP, NN_PULL);
    if (r->sock < 0) {
        snprintf(err, errlen, "cannot make the replica's socket: %s", nn_strerror(nn_errno()));
        return -1;
    }
    int maxsz = -1;
    nn_setsockopt(r->sock, NN_SOL_SOCKET, NN_RCVMAXSIZE, &maxsz, sizeof(maxsz));
    snprintf(r->ipc, sizeof(r->ipc), "ipc://%s/serve-r%d-%d.sock", dir, (int)getpid(), ++seq);
    if (nn_bind(r->sock, r->ipc) < 0) {
        snprintf(err, errlen, "cannot bind %s: %s", r->ipc, nn_strerror(nn_errno()));
        goto fail;
    }
    if (host && *host) {
        for (int tries = 0; tries < 20; tries++) {
            int port = free_tcp_port(host);
            if (port <= 0)
                continue;
            snprintf(r->tcp, sizeof(r->tcp), "tcp://%s:%d", host, port);
            if (nn_bind(r->sock, r->tcp) >= 0)
                break;
            r->tcp[0] = 0;
        }
        if (!r->tcp[0]) {
            snprintf(err, errlen, "cannot bind a tcp port on %s for the replica", host);
            goto fail;
        }
    }
    return 0;
fail:
    nn_close(r->sock);
    r->sock = -1;
    return -1;
}

void replica_close(replica_t *r)
{
    if (r->sock >= 0) {
        nn_close(r->sock);
        if (strncmp(r->ipc, "ipc://", 6) == 0)
            unlink(r->ipc + 6);
    }
    r->sock = -1;
    for (int i = 0; i < r->n_proxies; i++) {
        nn_close(r->proxies[i].sock);
        sbuf_free(&r->proxies[i].frame);
    }
    r->n_proxies = 0;
    if (r->msg)
        nn_freemsg(r->msg);
    r->msg = NULL;
    replica_release(r);
    free(r->held);
    r->held = NULL;
    r->cap_held = 0;
}

int replica_fd(const replica_t *r)
{
    int fd = -1;
    size_t sz = sizeof(fd);
    nn_getsockopt(r->sock, NN_SOL_SOCKET, NN_RCVFD, &fd, &sz);
    return fd;
}

static int proxy_index(replica_t *r, const char *addr, size_t len)
{
    if (len == 0 || len >= sizeof(r->proxies[0].addr))
        return -1;
    for (int i = 0; i < r->n_proxies; i++)
        if (strlen(r->proxies[i].addr) == len && memcmp(r->proxies[i].addr, addr, len) == 0)
            return i;
    if (r->n_proxies == REPLICA_MAX_PROXIES) {
        /* a proxy that went away: reuse its slot */
        replica_proxy_t *old = &r->proxies[0];
        replica_flush(r);
        nn_close(old->sock);
        sbuf_free(&old->frame);
        memmove(&r->proxies[0], &r->proxies[1], sizeof(r->proxies[0]) * (REPLICA_MAX_PROXIES - 1));
        r->n_proxies--;
    }
    replica_proxy_t *p = &r->proxies[r->n_proxies];
    memcpy(p->addr, addr, len);
    p->addr[len] = 0;
    p->sock = nn_socket(AF_SP, NN_PUSH);
    if (p->sock < 0)
        return -1;
    int ms = 1000;
    nn_setsockopt(p->sock, NN_SOL_SOCKET, NN_SNDTIMEO, &ms, sizeof(ms));
    if (nn_connect(p->sock, p->addr) < 0) {
        nn_close(p->sock);
        return -1;
    }
    sbuf_init(&p->frame);
    p->count = 0;
    return r->n_proxies++;
}

static void hold(replica_t *r, void *msg)
{
    if (r->n_held == r->cap_held) {
        size_t cap = r->cap_held ? r->cap_held * 2 : 8;
        void **h = realloc(r->held, cap * sizeof(*h));
        if (!h) {
            nn_freemsg(msg); /* cannot keep it: its strings are gone, so drop what is left */
            return;
        }
        r->held = h;
        r->cap_held = cap;
    }
    r->held[r->n_held++] = msg;
}

/* Takes the next message as the current frame. Returns 1, 0 (none in time) or -1. */
static int next_frame(replica_t *r, int wait_ms, char *err, size_t errlen)
{
    for (;;) {
        void *msg = NULL;
        int n = nn_recv(r->sock, &msg, NN_MSG, NN_DONTWAIT);
        if (n < 0) {
            if (nn_errno() != EAGAIN) {
                snprintf(err, errlen, "replica socket: %s", nn_strerror(nn_errno()));
                return -1;
            }
            if (wait_ms == 0)
                return 0;
            struct pollfd pfd = {.fd = replica_fd(r), .events = POLLIN};
            int pr = poll(&pfd, 1, wait_ms);
            if (pr == 0)
                return 0;
            if (pr < 0 && errno != EINTR) {
                snprintf(err, errlen, "replica poll: %s", strerror(errno));
                return -1;
            }
            continue;
        }
        srd_t rd;
        srd_init(&rd, msg, (size_t)n);
        size_t alen;
        uint32_t magic = srd_u32(&rd);
        const char *addr = srd_str(&rd, &alen);
        uint32_t count = srd_u32(&rd);
        int proxy = rd.err || magic != SERVE_REQ_MAGIC ? -1 : proxy_index(r, addr, alen);
        if (proxy < 0) {
            fprintf(stderr, "luray serve: replica dropped a malformed request frame (%d bytes)\n",
                    n);
            nn_freemsg(msg);
            continue;
        }
        r->msg = msg;
        r->rd = rd;
        r->left = count;
        r->msg_proxy = proxy;
        return 1;
    }
}

static bool read_req(replica_t *r, replica_req_t *q)
{
    srd_t *rd = &r->rd;
    q->proxy = r->msg_proxy;
    q->id = srd_u64(rd);
    q->method = srd_str(rd, &q->method_len);
    q->path = srd_str(rd, &q->path_len);
    q->query = srd_str(rd, &q->query_len);
    q->n_headers = srd_u16(rd);
    size_t start = rd->pos;
    for (uint16_t i = 0; i < q->n_headers && !rd->err; i++) {
        size_t l;
        srd_str(rd, &l);
        srd_str(rd, &l);
    }
    q->headers = rd->p + start;
    q->headers_len = rd->pos - start;
    q->body = srd_str(rd, &q->body_len);
    return !rd->err;
}

int replica_next(replica_t *r, int wait_ms, replica_req_t *out, char *err, size_t errlen)
{
    for (;;) {
        if (!r->msg) {
            int rc = next_frame(r, wait_ms, err, errlen);
            if (rc <= 0)
                return rc;
        }
        if (r->left > 0) {
            r->left--;
            if (read_req(r, out))
                return 1;
            fprintf(stderr, "luray serve: replica dropped a malformed request\n");
            r->left = 0;
        }
        hold(r, r->msg);
        r->msg = NULL;
    }
}

void replica_release(replica_t *r)
{
    for (size_t i = 0; i < r->n_held; i++)
        nn_freemsg(r->held[i]);
    r->n_held = 0;
}

void replica_respond(replica_t *r, const replica_req_t *q, int status, const char *content_type,
                     const char *header_lines, size_t hl_len, const char *body, size_t body_len)
{
    if (q->proxy < 0 || q->proxy >= r->n_proxies)
        return;
    replica_proxy_t *p = &r->proxies[q->proxy];
    if (p->count == 0) {
        p->frame.len = 0;
        sbuf_u32(&p->frame, SERVE_RESP_MAGIC);
        sbuf_u32(&p->frame, 0);
    }
    const char *ct = content_type ? content_type : "";
    serve_wire_response(&p->frame, q->id, status, ct, strlen(ct), header_lines, hl_len, body,
                        body_len);
    p->count++;
}

void replica_flush(replica_t *r)
{
    for (int i = 0; i < r->n_proxies; i++) {
        replica_proxy_t *p = &r->proxies[i];
        if (!p->count)
            continue;
        if (!p->frame.oom) {
            uint32_t c = p->count;
            for (int k = 0; k < 4; k++)
                p->frame.data[4 + k] = (char)(c >> (8 * k));
            if (nn_send(p->sock, p->frame.data, p->frame.len, NN_DONTWAIT) < 0 &&
                nn_send(p->sock, p->frame.data, p->frame.len, 0) < 0)
                fprintf(stderr, "luray serve: replica could not answer %u request(s) to %s: %s\n",
                        c, p->addr, nn_strerror(nn_errno()));
        } else {
            fprintf(stderr, "luray serve: replica out of memory answering %u request(s)\n",
                    p->count);
        }
        p->count = 0;
        p->frame.len = 0;
        p->frame.oom = false;
    }
}
