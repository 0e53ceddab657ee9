/* The head's control channel (see ctl.h): the REP server on the head's loop, the REQ client of
 * the command line tools, and how those tools find a head and its key. */
#include "ctl.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <nanomsg/tcp.h>

#include "buf.h"
#include "errors.h"
#include "errors_str.h"
#include "log.h"
#include "session.h"

/* Bytes a request may have past LURAY_CTL_MAX_REQUEST and still get a reply that says so; past
 * that nanomsg drops the connection. The limit is not -1 (unlimited) because nanomsg allocates
 * what a frame's length prefix claims before the bytes arrive, and aborts the process when that
 * allocation fails: a forged prefix from anyone who can reach the port would end the head. */
#define RECV_SLACK (1u << 20)
/* The most a client takes in a reply (a log chunk is 1 MiB; a job list is small). */
#define CLIENT_RCVMAX (64 << 20)
#define REPLY_HEAD (4 + 8 + 4)
#define SERVE_BATCH 64

static uint64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

cJSON *luray_ctl_error(const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    if (!cJSON_AddFalseToObject(o, "ok") || !cJSON_AddStringToObject(o, "error", text)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* ---- server ---- */

/* A plain (cooked) NN_REP socket, not AF_SP_RAW: nanomsg's REP forgets a request it received
 * when the next nn_recv comes before a reply, so a request that fails authentication is dropped
 * by simply not answering it (its sender learns nothing, not even that a head listens), and the
 * socket goes on serving. Its nn_send never blocks either: a reply whose requester left, or whose
 * connection cannot take it now, is dropped inside nanomsg. So only NN_RCVFD is polled. */
struct luray_ctl_server {
    uv_loop_t *loop;
    uv_poll_t poll;
    int sock;
    luray_auth_t auth;
    luray_ctl_handler_fn fn;
    void *ctx;
    atomic_uint_fast64_t rejected;
    bool closing;
};

static void reject(luray_ctl_server_t *s, const char *why, size_t len)
{
    atomic_fetch_add(&s->rejected, 1);
    luray_log(LURAY_LOG_DEBUG, "ctl", "refused a request of %zu bytes: %s", len, why);
}

static void send_reply(luray_ctl_server_t *s, uint32_t sender, uint64_t counter,
                       const cJSON *reply, const uint8_t *data, size_t dlen)
{
    char *json = cJSON_PrintUnformatted(reply);
    if (!json) {
        luray_log(LURAY_LOG_ERROR, "ctl", "out of memory printing a reply");
        return;
    }
    size_t jlen = strlen(json);
    size_t plen = REPLY_HEAD + jlen + dlen;
    uint8_t *buf = malloc(plen + LURAY_AUTH_OVERHEAD);
    if (!buf) {
        luray_log(LURAY_LOG_ERROR, "ctl", "out of memory for a reply of %zu bytes", plen);
        free(json);
        return;
    }
    uint8_t *p = buf + LURAY_AUTH_HEADER;
    luray_le_put32(p, sender);
    luray_le_put64(p + 4, counter);
    luray_le_put32(p + 12, (uint32_t)jlen);
    memcpy(p + REPLY_HEAD, json, jlen);
    if (dlen)
        memcpy(p + REPLY_HEAD + jlen, data, dlen);
    luray_auth_seal(&s->auth, p, plen, buf);
    if (nn_send(s->sock, buf, plen + LURAY_AUTH_OVERHEAD, NN_DONTWAIT) < 0)
        luray_log(LURAY_LOG_WARN, "ctl", "cannot send a reply: %s", nn_strerror(nn_errno()));
    free(buf);
    free(json);
}

/* Splits an opened payload into *req and bytes; LURAY_EPROTO with *reply an error reply (NULL
 * when out of memory) for one that is not a request. */
static int parse_request(luray_ctl_server_t *s, const uint8_t *p, size_t plen, cJSON **req,
                         luray_ctl_bytes_t *bytes, cJSON **reply)
{
    if (plen > LURAY_CTL_MAX_REQUEST) {
        reject(s, "too large", plen);
        *reply = luray_ctl_error("the request has %zu bytes; a head takes at most %u MiB", plen,
                                 LURAY_CTL_MAX_REQUEST >> 20);
        return LURAY_EPROTO;
    }
    if (plen < 4 || luray_le_get32(p) > plen - 4) {
        reject(s, "no JSON part", plen);
        *reply = luray_ctl_error("malformed request: its JSON length is wrong");
        return LURAY_EPROTO;
    }
    uint32_t jlen = luray_le_get32(p);
    *req = cJSON_ParseWithLength((const char *)p + 4, jlen);
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(*req, "op");
    if (!cJSON_IsObject(*req)) {
        reject(s, "not a JSON object", plen);
        *reply = luray_ctl_error("malformed request: not a JSON object");
        return LURAY_EPROTO;
    }
    if (!cJSON_IsString(op)) {
        reject(s, "no op", plen);
        *reply = luray_ctl_error("malformed request: no \"op\" string");
        return LURAY_EPROTO;
    }
    bytes->data = plen > 4 + jlen ? p + 4 + jlen : NULL;
    bytes->len = plen - 4 - jlen;
    return 0;
}

static void serve(luray_ctl_server_t *s, const uint8_t *msg, size_t len)
{
    const uint8_t *payload = NULL;
    size_t plen = 0;
    uint32_t sender = 0;
    if (luray_auth_open(&s->auth, msg, len, &payload, &plen, &sender) != 0) {
        reject(s, "it failed authentication", len);
        return;
    }
    uint64_t counter = luray_le_get64(msg + 8), now = wall_ns();
    cJSON *req = NULL, *reply = NULL;
    luray_ctl_bytes_t bytes = {0};
    bool refused = true;
    if (counter < now && now - counter > (uint64_t)LURAY_CTL_MAX_AGE_S * 1000000000u) {
        reject(s, "too old", len);
        reply = luray_ctl_error("the head refused a request sealed %llu s ago: the clocks of this "
                                "machine and the head's differ, or it was replayed",
                                (unsigned long long)((now - counter) / 1000000000u));
    } else {
        refused = parse_request(s, payload, plen, &req, &bytes, &reply) != 0;
    }
    if (!refused) {
        reply = s->fn(s->ctx, req, &bytes);
        if (!reply)
            reply = luray_ctl_error("unknown op '%s'",
                                    cJSON_GetObjectItemCaseSensitive(req, "op")->valuestring);
    }
    if (reply)
        send_reply(s, sender, counter, reply, bytes.reply_data, bytes.reply_len);
    cJSON_Delete(reply);
    cJSON_Delete(req);
    free(bytes.reply_data);
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    luray_ctl_server_t *s = h->data;
    if (status < 0) {
        luray_log(LURAY_LOG_ERROR, "ctl", "polling the control socket failed: %s",
                  uv_strerror(status));
        return;
    }
    /* A batch at a time: nanomsg keeps the fd readable while messages wait. */
    for (int i = 0; i < SERVE_BATCH && !s->closing; i++) {
        void *msg = NULL;
        int n = nn_recv(s->sock, &msg, NN_MSG, NN_DONTWAIT);
        if (n < 0) {
            if (nn_errno() != EAGAIN && nn_errno() != EINTR)
                luray_log(LURAY_LOG_WARN, "ctl", "cannot receive: %s", nn_strerror(nn_errno()));
            break;
        }
        serve(s, msg, (size_t)n);
        nn_freemsg(msg);
    }
}

static void on_server_closed(uv_handle_t *h)
{
    luray_ctl_server_t *s = h->data;
    nn_close(s->sock);
    luray_auth_close(&s->auth);
    free(s);
}

int luray_ctl_server_start(uv_loop_t *loop, const char *addr, const uint8_t key[LURAY_KEY_BYTES],
                           luray_ctl_handler_fn fn, void *ctx, luray_ctl_server_t **out,
                           char *err, size_t errlen)
{
    int fd = -1, rc;
    size_t sz = sizeof(fd);
    int maxsize = (int)(LURAY_CTL_MAX_REQUEST + LURAY_AUTH_OVERHEAD + RECV_SLACK);
    luray_ctl_server_t *s = calloc(1, sizeof(*s));
    if (!s) {
        luray_set_err(err, errlen, "out of memory");
        return LURAY_ENOMEM;
    }
    if (luray_auth_init(&s->auth, key, 0) != 0) {
        luray_set_err(err, errlen, "libsodium failed to initialise");
        rc = LURAY_EIO;
        goto err_free;
    }
    s->sock = nn_socket(AF_SP, NN_REP);
    if (s->sock < 0) {
        luray_set_err(err, errlen, "cannot create the control socket: %s", nn_strerror(nn_errno()));
        rc = LURAY_EIO;
        goto err_auth;
    }
    nn_setsockopt(s->sock, NN_SOL_SOCKET, NN_RCVMAXSIZE, &maxsize, sizeof(maxsize));
    if (nn_bind(s->sock, addr) < 0) {
        int e = nn_errno();
        luray_set_err(err, errlen, "cannot serve the control port on %s: %s", addr, nn_strerror(e));
        rc = e == EADDRINUSE ? LURAY_EEXIST : LURAY_EIO;
        goto err_sock;
    }
    if (nn_getsockopt(s->sock, NN_SOL_SOCKET, NN_RCVFD, &fd, &sz) < 0 ||
        uv_poll_init(loop, &s->poll, fd) != 0) {
        luray_set_err(err, errlen, "cannot poll the control socket");
        rc = LURAY_EIO;
        goto err_sock;
    }
    s->loop = loop;
    s->fn = fn;
    s->ctx = ctx;
    s->poll.data = s;
    if (uv_poll_start(&s->poll, UV_READABLE, on_readable) != 0) {
        luray_set_err(err, errlen, "cannot poll the control socket");
        luray_ctl_server_stop(s);
        return LURAY_EIO;
    }
    *out = s;
    return 0;

err_sock:
    nn_close(s->sock);
err_auth:
    luray_auth_close(&s->auth);
err_free:
    free(s);
    return rc;
}

void luray_ctl_server_stop(luray_ctl_server_t *s)
{
    if (!s || s->closing)
        return;
    s->closing = true;
    /* The socket closes in the callback: a handler that stops the server still gets its reply
     * out, and the fd leaves epoll (uv_close) before nanomsg closes it. */
    uv_close((uv_handle_t *)&s->poll, on_server_closed);
}

uint64_t luray_ctl_server_rejected(const luray_ctl_server_t *s)
{
    return s ? atomic_load(&((luray_ctl_server_t *)s)->rejected) : 0;
}

/* ---- client ---- */

struct luray_ctl_client {
    int sock;
    luray_auth_t auth;
    char where[300]; /* HOST:PORT, for messages */
};

/* "tcp://HOST:PORT" -> "HOST:PORT". */
static void addr_where(const char *addr, char *out, size_t len)
{
    const char *p = strstr(addr, "://");
    snprintf(out, len, "%s", p ? p + 3 : addr);
}

int luray_ctl_client_new(const char *addr, const uint8_t key[LURAY_KEY_BYTES],
                         luray_ctl_client_t **out, char *err, size_t errlen)
{
    int rcvmax = CLIENT_RCVMAX, linger = 0, ipv4only = 0, rc;
    luray_ctl_client_t *c = calloc(1, sizeof(*c));
    if (!c) {
        luray_set_err(err, errlen, "out of memory");
        return LURAY_ENOMEM;
    }
    addr_where(addr, c->where, sizeof(c->where));
    if (luray_auth_init(&c->auth, key, 0) != 0) {
        luray_set_err(err, errlen, "libsodium failed to initialise");
        rc = LURAY_EIO;
        goto err_free;
    }
    c->sock = nn_socket(AF_SP, NN_REQ);
    if (c->sock < 0) {
        luray_set_err(err, errlen, "cannot create a socket: %s", nn_strerror(nn_errno()));
        rc = LURAY_EIO;
        goto err_auth;
    }
    nn_setsockopt(c->sock, NN_SOL_SOCKET, NN_RCVMAXSIZE, &rcvmax, sizeof(rcvmax));
    nn_setsockopt(c->sock, NN_SOL_SOCKET, NN_LINGER, &linger, sizeof(linger));
    if (strchr(c->where, '['))
        nn_setsockopt(c->sock, NN_SOL_SOCKET, NN_IPV4ONLY, &ipv4only, sizeof(ipv4only));
    if (nn_connect(c->sock, addr) < 0) {
        luray_set_err(err, errlen, "cannot connect to %s: %s", addr, nn_strerror(nn_errno()));
        rc = LURAY_EINVAL;
        goto err_sock;
    }
    *out = c;
    return 0;

err_sock:
    nn_close(c->sock);
err_auth:
    luray_auth_close(&c->auth);
err_free:
    free(c);
    return rc;
}

void luray_ctl_client_free(luray_ctl_client_t *c)
{
    if (!c)
        return;
    nn_close(c->sock);
    luray_auth_close(&c->auth);
    free(c);
}

static int no_answer(const luray_ctl_client_t *c, int timeout_ms, char *err, size_t errlen)
{
    luray_set_err(err, errlen,
            "no luray head answers at %s within %d s (is the head running, and is the key "
            "its cluster's?)", c->where, (timeout_ms + 999) / 1000);
    return LURAY_ETIMEDOUT;
}

/* Seals req and data into a new buffer; *counter is the counter it carries. */
static uint8_t *seal_request(luray_ctl_client_t *c, const char *json, const uint8_t *data,
                             size_t len, size_t *total, uint64_t *counter)
{
    size_t jlen = strlen(json), plen = 4 + jlen + len;
    uint8_t *buf = malloc(plen + LURAY_AUTH_OVERHEAD);
    if (!buf)
        return NULL;
    uint8_t *p = buf + LURAY_AUTH_HEADER;
    luray_le_put32(p, (uint32_t)jlen);
    memcpy(p + 4, json, jlen);
    if (len)
        memcpy(p + 4 + jlen, data, len);
    /* The head refuses requests older than LURAY_CTL_MAX_AGE_S: a long-lived client's counter
     * keeps up with the clock. */
    uint64_t now = wall_ns();
    if (c->auth.counter < now)
        c->auth.counter = now;
    *counter = c->auth.counter;
    luray_auth_seal(&c->auth, p, plen, buf);
    *total = plen + LURAY_AUTH_OVERHEAD;
    return buf;
}

static int open_reply(luray_ctl_client_t *c, const uint8_t *msg, size_t len, uint64_t counter,
                      cJSON **reply, uint8_t **rdata, size_t *rlen, char *err, size_t errlen)
{
    const uint8_t *p = NULL;
    size_t plen = 0;
    uint32_t sender = 0;
    if (luray_auth_open(&c->auth, msg, len, &p, &plen, &sender) != 0) {
        luray_set_err(err, errlen, "the answer from %s did not authenticate under the cluster key",
                c->where);
        return LURAY_EAUTH;
    }
    if (plen < REPLY_HEAD || luray_le_get32(p) != c->auth.sender || luray_le_get64(p + 4) != counter ||
        luray_le_get32(p + 12) > plen - REPLY_HEAD) {
        luray_set_err(err, errlen, "the answer from %s does not belong to this request", c->where);
        return LURAY_EPROTO;
    }
    size_t jlen = luray_le_get32(p + 12), dlen = plen - REPLY_HEAD - jlen;
    *reply = cJSON_ParseWithLength((const char *)p + REPLY_HEAD, jlen);
    if (!cJSON_IsObject(*reply)) {
        cJSON_Delete(*reply);
        *reply = NULL;
        luray_set_err(err, errlen, "the head at %s answered with malformed JSON", c->where);
        return LURAY_EPROTO;
    }
    if (rdata && dlen) {
        *rdata = malloc(dlen);
        if (!*rdata) {
            cJSON_Delete(*reply);
            *reply = NULL;
            luray_set_err(err, errlen, "out of memory for an answer of %zu bytes", dlen);
            return LURAY_ENOMEM;
        }
        memcpy(*rdata, p + REPLY_HEAD + jlen, dlen);
        *rlen = dlen;
    }
    return 0;
}

static int exchange(luray_ctl_client_t *c, const uint8_t *buf, size_t total, uint64_t counter,
                    cJSON **reply, uint8_t **rdata, size_t *rlen, int timeout_ms, char *err,
                    size_t errlen)
{
    int64_t deadline = mono_ms() + timeout_ms;
    /* No resend inside the timeout: a resent request would be a replay the head refuses. */
    int resend = timeout_ms < INT_MAX / 2 ? timeout_ms * 2 + 1000 : INT_MAX;
    nn_setsockopt(c->sock, NN_REQ, NN_REQ_RESEND_IVL, &resend, sizeof(resend));
    int left = timeout_ms, n;
    /* A signal that does not end the process (SIGCHLD, a resize) only interrupts the wait. */
    do {
        nn_setsockopt(c->sock, NN_SOL_SOCKET, NN_SNDTIMEO, &left, sizeof(left));
        n = nn_send(c->sock, buf, total, 0);
        left = (int)(deadline - mono_ms());
    } while (n < 0 && nn_errno() == EINTR && left > 0);
    if (n < 0) {
        if (nn_errno() == ETIMEDOUT || nn_errno() == EINTR)
            return no_answer(c, timeout_ms, err, errlen);
        luray_set_err(err, errlen, "cannot send to %s: %s", c->where, nn_strerror(nn_errno()));
        return LURAY_EIO;
    }
    void *msg = NULL;
    do {
        if (left < 1)
            left = 1;
        nn_setsockopt(c->sock, NN_SOL_SOCKET, NN_RCVTIMEO, &left, sizeof(left));
        n = nn_recv(c->sock, &msg, NN_MSG, 0);
        left = (int)(deadline - mono_ms());
    } while (n < 0 && nn_errno() == EINTR && left > 0);
    if (n < 0) {
        if (nn_errno() == ETIMEDOUT || nn_errno() == EINTR)
            return no_answer(c, timeout_ms, err, errlen);
        luray_set_err(err, errlen, "no answer from %s: %s", c->where, nn_strerror(nn_errno()));
        return LURAY_EIO;
    }
    int rc = open_reply(c, msg, (size_t)n, counter, reply, rdata, rlen, err, errlen);
    nn_freemsg(msg);
    return rc;
}

int luray_ctl_client_call(luray_ctl_client_t *c, const cJSON *req, const uint8_t *data, size_t len,
                          cJSON **reply, uint8_t **rdata, size_t *rlen, int timeout_ms, char *err,
                          size_t errlen)
{
    *reply = NULL;
    if (rdata) {
        *rdata = NULL;
        *rlen = 0;
    }
    char *json = cJSON_PrintUnformatted(req);
    if (!json) {
        luray_set_err(err, errlen, "out of memory printing the request");
        return LURAY_ENOMEM;
    }
    size_t plen = 4 + strlen(json) + len;
    if (plen > LURAY_CTL_MAX_REQUEST) {
        luray_set_err(err, errlen, "the request has %zu MiB; a head takes at most %u MiB", plen >> 20,
                LURAY_CTL_MAX_REQUEST >> 20);
        free(json);
        return LURAY_ETOOBIG;
    }
    size_t total = 0;
    uint64_t counter = 0;
    uint8_t *buf = seal_request(c, json, data, len, &total, &counter);
    free(json);
    if (!buf) {
        luray_set_err(err, errlen, "out of memory for a request of %zu bytes", plen);
        return LURAY_ENOMEM;
    }
    int rc = exchange(c, buf, total, counter, reply, rdata, rlen, timeout_ms > 0 ? timeout_ms : 1,
                      err, errlen);
    free(buf);
    return rc;
}

int luray_ctl_request(const char *addr, const uint8_t key[LURAY_KEY_BYTES], const cJSON *req,
                      cJSON **reply, int timeout_ms, char *err, size_t errlen)
{
    luray_ctl_client_t *c = NULL;
    *reply = NULL;
    int rc = luray_ctl_client_new(addr, key, &c, err, errlen);
    if (rc)
        return rc;
    rc = luray_ctl_client_call(c, req, NULL, 0, reply, NULL, NULL, timeout_ms, err, errlen);
    luray_ctl_client_free(c);
    return rc;
}

/* ---- finding the head ---- */

/* The head of this machine's current session. */
static int local_head(char *host, size_t hostlen, int *port, char *err, size_t errlen)
{
    char dir[PATH_MAX * 2];
    luray_session_node_t node;
    int rc = luray_session_find(NULL, dir, sizeof(dir), err, errlen);
    if (rc)
        return rc;
    rc = luray_session_read_node(dir, &node);
    if (rc) {
        luray_set_err(err, errlen, "cannot read %s/node.json: %s", dir,
                rc == LURAY_EPROTO ? "it does not parse" : strerror(errno));
        return rc;
    }
    if (node.port <= 0 || node.port >= 65535) {
        luray_set_err(err, errlen, "the cluster running here is a driver's own (embedded), which takes "
                "no jobs; start a head with 'luray start --head'");
        return LURAY_ENOENT;
    }
    /* A head bound to every interface is reached on this machine through loopback. */
    const char *h = node.host;
    if (!*h || strcmp(h, "0.0.0.0") == 0)
        h = "127.0.0.1";
    else if (strcmp(h, "::") == 0)
        h = "::1";
    snprintf(host, hostlen, "%s", h);
    *port = node.port;
    return 0;
}

static int default_token(int port, char *out, size_t len, char *err, size_t errlen)
{
    char base[PATH_MAX];
    if (luray_session_base(base, sizeof(base)) != 0) {
        luray_set_err(err, errlen, "cannot use the session directory %s (see the message above)",
                getenv("LURAY_TMPDIR") ? getenv("LURAY_TMPDIR") : LURAY_SESSION_BASE_DEFAULT);
        return LURAY_EINVAL;
    }
    if (snprintf(out, len, "%s/cluster-%d/token", base, port) >= (int)len) {
        luray_set_err(err, errlen, "the key file's path is too long");
        return LURAY_EINVAL;
    }
    if (access(out, R_OK) != 0) {
        luray_set_err(err, errlen,
                "no cluster key at %s (%s): the head of port %d writes it when it starts; for a "
                "head on another machine, copy its key file here and pass --token-file FILE or "
                "set LURAY_TOKEN_FILE", out, strerror(errno), port);
        return LURAY_ENOENT;
    }
    return 0;
}

int luray_ctl_resolve(const char *address, const char *token_file, char *ctl_addr,
                      size_t ctl_len, char *token_path, size_t token_len, char *err,
                      size_t errlen)
{
    char host[256];
    int port = 0, rc;
    if (!address || !*address)
        address = getenv("LURAY_ADDRESS");
    if (address && *address && strcmp(address, "auto") != 0) {
        if (luray_session_parse_address(address, host, sizeof(host), &port) != 0 || port >= 65535) {
            luray_set_err(err, errlen, "bad address '%s': expected HOST:PORT, such as 127.0.0.1:%d",
                    address, LURAY_DEFAULT_PORT);
            return LURAY_EINVAL;
        }
    } else if ((rc = local_head(host, sizeof(host), &port, err, errlen)) != 0) {
        return rc;
    }
    const char *fmt = strchr(host, ':') ? "tcp://[%s]:%d" : "tcp://%s:%d";
    if (snprintf(ctl_addr, ctl_len, fmt, host, port + LURAY_CTL_PORT_OFFSET) >= (int)ctl_len) {
        luray_set_err(err, errlen, "the address %s:%d is too long", host, port);
        return LURAY_EINVAL;
    }
    if (!token_file || !*token_file)
        token_file = getenv("LURAY_TOKEN_FILE");
    if (!token_file || !*token_file)
        return default_token(port, token_path, token_len, err, errlen);
    if (snprintf(token_path, token_len, "%s", token_file) >= (int)token_len) {
        luray_set_err(err, errlen, "the key file's path is too long: %s", token_file);
        return LURAY_EINVAL;
    }
    if (access(token_path, R_OK) != 0) {
        luray_set_err(err, errlen, "cannot read the cluster key file %s: %s", token_path,
                strerror(errno));
        return LURAY_ENOENT;
    }
    return 0;
}
