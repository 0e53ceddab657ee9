/* Unit tests of core/ctl.c: a control server on a libuv loop in a thread and clients in the
 * test: round trips with raw bytes, unknown ops, a wrong key, garbage, bad JSON under a good
 * tag, replayed and stale requests, a server stopped by its own handler, and finding a head. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <nanomsg/nn.h>
#include <nanomsg/pipeline.h>
#include <nanomsg/reqrep.h>
#include <sodium.h>

#include "auth.h"
#include "ctl.h"
#include "errors.h"
#include "session.h"

typedef struct {
    uv_loop_t loop;
    uv_async_t stop;
    luray_ctl_server_t *srv;
    char addr[64];
    int port;
    uint8_t key[LURAY_KEY_BYTES];
    atomic_int calls;
    pthread_t thread;
    sem_t ready;
    int start_rc;
    char err[256];
} server_t;

static server_t g_srv;
static uint8_t g_key[LURAY_KEY_BYTES];
static char g_tmp[256];

static cJSON *handler(void *ctx, const cJSON *req, luray_ctl_bytes_t *bytes)
{
    server_t *s = ctx;
    const char *op = cJSON_GetObjectItemCaseSensitive(req, "op")->valuestring;
    atomic_fetch_add(&s->calls, 1);
    if (strcmp(op, "stop_server") == 0) {
        luray_ctl_server_stop(s->srv);
        s->srv = NULL; /* stopped is gone: the pointer must not be used again */
        cJSON *o = cJSON_CreateObject();
        cJSON_AddTrueToObject(o, "ok");
        return o;
    }
    if (strcmp(op, "echo") != 0)
        return NULL;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddTrueToObject(o, "ok");
    cJSON *x = cJSON_GetObjectItemCaseSensitive(req, "x");
    if (x)
        cJSON_AddItemToObject(o, "x", cJSON_Duplicate(x, 1));
    cJSON_AddNumberToObject(o, "n", (double)bytes->len);
    if (bytes->len) {
        bytes->reply_data = malloc(bytes->len);
        for (size_t i = 0; i < bytes->len; i++)
            bytes->reply_data[i] = bytes->data[bytes->len - 1 - i];
        bytes->reply_len = bytes->len;
    }
    return o;
}

static void on_stop(uv_async_t *a)
{
    server_t *s = a->data;
    luray_ctl_server_stop(s->srv);
    uv_close((uv_handle_t *)a, NULL);
}

static void *server_main(void *arg)
{
    server_t *s = arg;
    uv_loop_init(&s->loop);
    uv_async_init(&s->loop, &s->stop, on_stop);
    s->stop.data = s;
    s->start_rc = luray_ctl_server_start(&s->loop, s->addr, s->key, handler, s, &s->srv, s->err,
                                         sizeof(s->err));
    sem_post(&s->ready);
    if (s->start_rc != 0)
        uv_close((uv_handle_t *)&s->stop, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    return NULL;
}

/* Port blocks of 4 (a server at +0, none at +2, another at +3), from one that depends on the
 * pid, so that tests running at once seldom meet; the next block when one is taken. */
static int block_port(int attempt)
{
    return 20000 + (int)((getpid() + attempt * 1009) % 5000) * 4;
}

static int start_at(server_t *s, int port)
{
    memset(s, 0, sizeof(*s));
    s->port = port;
    snprintf(s->addr, sizeof(s->addr), "tcp://127.0.0.1:%d", port);
    memcpy(s->key, g_key, sizeof(g_key));
    sem_init(&s->ready, 0, 0);
    assert_int_equal(pthread_create(&s->thread, NULL, server_main, s), 0);
    sem_wait(&s->ready);
    if (s->start_rc != 0) {
        pthread_join(s->thread, NULL);
        sem_destroy(&s->ready);
    }
    return s->start_rc;
}

/* A server at offset in the first port block where that port is free. */
static void server_start(server_t *s, int offset)
{
    for (int attempt = 0; attempt < 20; attempt++) {
        int rc = start_at(s, block_port(attempt) + offset);
        if (rc == 0)
            return;
        if (rc != LURAY_EEXIST)
            break;
    }
    fail_msg("server: %s", s->err);
}

static void server_join(server_t *s)
{
    uv_async_send(&s->stop);
    pthread_join(s->thread, NULL);
    sem_destroy(&s->ready);
}

static int setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    randombytes_buf(g_key, sizeof(g_key));
    server_start(&g_srv, 0);
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/luray-test-ctl.XXXXXX");
    return mkdtemp(g_tmp) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    server_join(&g_srv);
    return luray_session_remove(g_tmp);
}

static cJSON *echo_req(const char *x)
{
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "op", "echo");
    cJSON_AddStringToObject(req, "x", x);
    return req;
}

/* One good request through luray_ctl_request; the server must answer it. */
static void expect_serving(const char *x)
{
    cJSON *req = echo_req(x), *reply = NULL;
    char err[512] = "";
    int rc = luray_ctl_request(g_srv.addr, g_key, req, &reply, 5000, err, sizeof(err));
    if (rc != 0)
        fail_msg("request: %s", err);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(reply, "ok")));
    assert_string_equal(cJSON_GetObjectItem(reply, "x")->valuestring, x);
    cJSON_Delete(req);
    cJSON_Delete(reply);
}

static void test_round_trip(void **state)
{
    (void)state;
    int calls = atomic_load(&g_srv.calls);
    expect_serving("hello");
    assert_int_equal(atomic_load(&g_srv.calls), calls + 1);

    /* Raw bytes both ways, on one client for several calls. */
    luray_ctl_client_t *c = NULL;
    char err[512] = "";
    assert_int_equal(luray_ctl_client_new(g_srv.addr, g_key, &c, err, sizeof(err)), 0);
    size_t n = 300000;
    uint8_t *data = malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (uint8_t)(i * 31 + 7);
    for (int round = 0; round < 3; round++) {
        cJSON *req = echo_req("bytes"), *reply = NULL;
        uint8_t *rdata = NULL;
        size_t rlen = 0;
        assert_int_equal(luray_ctl_client_call(c, req, data, n, &reply, &rdata, &rlen, 5000, err,
                                               sizeof(err)), 0);
        assert_int_equal((size_t)cJSON_GetObjectItem(reply, "n")->valuedouble, n);
        assert_int_equal(rlen, n);
        for (size_t i = 0; i < n; i++)
            if (rdata[i] != data[n - 1 - i])
                fail_msg("byte %zu differs", i);
        free(rdata);
        cJSON_Delete(req);
        cJSON_Delete(reply);
    }
    /* An op the handler does not know. */
    cJSON *req = cJSON_CreateObject(), *reply = NULL;
    cJSON_AddStringToObject(req, "op", "nope");
    assert_int_equal(luray_ctl_client_call(c, req, NULL, 0, &reply, NULL, NULL, 5000, err,
                                           sizeof(err)), 0);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(reply, "ok")));
    assert_string_equal(cJSON_GetObjectItem(reply, "error")->valuestring, "unknown op 'nope'");
    cJSON_Delete(reply);
    /* Too large to send: refused before anything is read or sent. */
    assert_int_equal(luray_ctl_client_call(c, req, data, LURAY_CTL_MAX_REQUEST, &reply, NULL, NULL,
                                           5000, err, sizeof(err)), LURAY_ETOOBIG);
    assert_non_null(strstr(err, "at most 600 MiB"));
    cJSON_Delete(req);
    free(data);
    luray_ctl_client_free(c);
}

static void test_wrong_key(void **state)
{
    (void)state;
    uint8_t other[LURAY_KEY_BYTES];
    randombytes_buf(other, sizeof(other));
    int calls = atomic_load(&g_srv.calls);
    uint64_t rejected = luray_ctl_server_rejected(g_srv.srv);
    cJSON *req = echo_req("intruder"), *reply = NULL;
    char err[512] = "", want[128];
    assert_int_equal(luray_ctl_request(g_srv.addr, other, req, &reply, 600, err, sizeof(err)),
                     LURAY_ETIMEDOUT);
    assert_null(reply);
    snprintf(want, sizeof(want), "no luray head answers at 127.0.0.1:%d within 1 s", g_srv.port);
    assert_non_null(strstr(err, want));
    assert_int_equal(atomic_load(&g_srv.calls), calls);
    assert_true(luray_ctl_server_rejected(g_srv.srv) > rejected);
    cJSON_Delete(req);
    expect_serving("after the wrong key");
}

/* Sends raw bytes on a REQ socket of its own; returns the reply's length (or -1) in *msg. */
static int raw_exchange(const void *buf, size_t len, int timeout_ms, void **msg)
{
    int s = nn_socket(AF_SP, NN_REQ);
    assert_true(s >= 0);
    nn_setsockopt(s, NN_SOL_SOCKET, NN_RCVTIMEO, &timeout_ms, sizeof(timeout_ms));
    assert_true(nn_connect(s, g_srv.addr) >= 0);
    assert_int_equal(nn_send(s, buf, len, 0), (int)len);
    *msg = NULL;
    int n = nn_recv(s, msg, NN_MSG, 0);
    nn_close(s);
    return n;
}

static void test_garbage(void **state)
{
    (void)state;
    int calls = atomic_load(&g_srv.calls);
    void *msg = NULL;
    /* Unauthenticated bytes on a REQ socket: no answer at all. */
    assert_int_equal(raw_exchange("garbage bytes", 13, 300, &msg), -1);
    uint8_t junk[100];
    memset(junk, 0, sizeof(junk));
    memcpy(junk, "LRA1", 4); /* the envelope's magic, then a wrong tag */
    assert_int_equal(raw_exchange(junk, sizeof(junk), 300, &msg), -1);
    expect_serving("after garbage on REQ");

    /* Another protocol: PUSH cannot talk to REP. */
    int push = nn_socket(AF_SP, NN_PUSH);
    assert_true(push >= 0);
    assert_true(nn_connect(push, g_srv.addr) >= 0);
    int to = 200;
    nn_setsockopt(push, NN_SOL_SOCKET, NN_SNDTIMEO, &to, sizeof(to));
    nn_send(push, "garbage", 7, 0);
    nn_close(push);
    expect_serving("after PUSH");

    /* Bytes that are no nanomsg at all, and a frame that claims to be huge. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_srv.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    uint8_t sp_hdr[8] = {0, 'S', 'P', 0, 0, 0x30, 0, 0}; /* a REQ's greeting */
    uint8_t huge[8] = {0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(write(fd, sp_hdr, 8), 8);
    assert_int_equal(write(fd, huge, 8), 8);
    assert_int_equal(write(fd, "noise", 5), 5);
    close(fd);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(write(fd, "GET / HTTP/1.0\r\n\r\n", 18), 18);
    close(fd);
    expect_serving("after raw TCP noise");
    assert_int_equal(atomic_load(&g_srv.calls), calls + 3);
}

/* A request sealed by hand: u32 json_len (may lie) | json. */
static size_t seal_payload(luray_auth_t *a, const char *json, uint32_t jlen, uint8_t *out)
{
    size_t n = strlen(json), plen = 4 + n;
    uint8_t *p = out + LURAY_AUTH_HEADER;
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(jlen >> (8 * i));
    memcpy(p + 4, json, n);
    luray_auth_seal(a, p, plen, out);
    return plen + LURAY_AUTH_OVERHEAD;
}

/* The reply's JSON "error" text, from an envelope the test opens itself. */
static void expect_error_reply(luray_auth_t *a, const char *json, uint32_t jlen,
                               const char *needle)
{
    uint8_t buf[512];
    size_t len = seal_payload(a, json, jlen, buf);
    void *msg = NULL;
    int n = raw_exchange(buf, len, 3000, &msg);
    if (n < 0)
        fail_msg("no reply to %s", json);
    luray_auth_t mine;
    luray_auth_init(&mine, g_key, 0);
    const uint8_t *p = NULL;
    size_t plen = 0;
    uint32_t sender = 0;
    assert_int_equal(luray_auth_open(&mine, msg, (size_t)n, &p, &plen, &sender), 0);
    assert_true(plen >= 16);
    uint32_t rl = (uint32_t)p[12] | (uint32_t)p[13] << 8 | (uint32_t)p[14] << 16 |
                  (uint32_t)p[15] << 24;
    cJSON *reply = cJSON_ParseWithLength((const char *)p + 16, rl);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(reply, "ok")));
    const char *err = cJSON_GetObjectItem(reply, "error")->valuestring;
    if (!strstr(err, needle))
        fail_msg("error '%s' does not say '%s'", err, needle);
    cJSON_Delete(reply);
    nn_freemsg(msg);
    luray_auth_close(&mine);
}

static void test_bad_json_with_good_tag(void **state)
{
    (void)state;
    luray_auth_t a;
    luray_auth_init(&a, g_key, 0);
    int calls = atomic_load(&g_srv.calls);
    uint64_t rejected = luray_ctl_server_rejected(g_srv.srv);
    expect_error_reply(&a, "{not json", 9, "not a JSON object");
    expect_error_reply(&a, "[1,2]", 5, "not a JSON object");
    expect_error_reply(&a, "{\"x\":1}", 7, "no \"op\" string");
    expect_error_reply(&a, "{\"op\":5}", 8, "no \"op\" string");
    expect_error_reply(&a, "{\"op\":\"echo\"}", 1000, "JSON length is wrong");
    assert_int_equal(atomic_load(&g_srv.calls), calls);
    assert_int_equal(luray_ctl_server_rejected(g_srv.srv), rejected + 5);

    /* A request replayed as it was is dropped; so is one sealed long ago. */
    uint8_t buf[256];
    size_t len = seal_payload(&a, "{\"op\":\"echo\",\"x\":\"once\"}", 24, buf);
    void *msg = NULL;
    int n = raw_exchange(buf, len, 3000, &msg);
    assert_true(n > 0);
    nn_freemsg(msg);
    assert_int_equal(atomic_load(&g_srv.calls), calls + 1);
    assert_int_equal(raw_exchange(buf, len, 300, &msg), -1);
    assert_int_equal(atomic_load(&g_srv.calls), calls + 1);
    luray_auth_t old;
    luray_auth_init(&old, g_key, 0);
    old.counter -= (uint64_t)(LURAY_CTL_MAX_AGE_S + 100) * 1000000000u;
    expect_error_reply(&old, "{\"op\":\"echo\"}", 13, "sealed 700 s ago");
    assert_int_equal(atomic_load(&g_srv.calls), calls + 1);
    luray_auth_close(&old);
    luray_auth_close(&a);
    expect_serving("after bad JSON");
}

static void test_no_head(void **state)
{
    (void)state;
    char addr[64], err[512] = "", want[128];
    int port = g_srv.port + 2;
    snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%d", port);
    cJSON *req = echo_req("anyone?"), *reply = NULL;
    assert_int_equal(luray_ctl_request(addr, g_key, req, &reply, 300, err, sizeof(err)),
                     LURAY_ETIMEDOUT);
    snprintf(want, sizeof(want), "no luray head answers at 127.0.0.1:%d within 1 s", port);
    assert_non_null(strstr(err, want));
    assert_int_equal(luray_ctl_request("bogus://x", g_key, req, &reply, 300, err, sizeof(err)),
                     LURAY_EINVAL);
    assert_non_null(strstr(err, "cannot connect to bogus://x"));
    cJSON_Delete(req);

    /* Two servers cannot serve one port. */
    uv_loop_t loop;
    luray_ctl_server_t *s = NULL;
    uv_loop_init(&loop);
    assert_int_equal(luray_ctl_server_start(&loop, g_srv.addr, g_key, handler, NULL, &s, err,
                                            sizeof(err)), LURAY_EEXIST);
    assert_non_null(strstr(err, "cannot serve the control port"));
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* A handler that stops its server still gets its reply out, and the loop then ends. */
static void test_stop_from_handler(void **state)
{
    (void)state;
    server_t s2;
    server_start(&s2, 3);
    cJSON *req = cJSON_CreateObject(), *reply = NULL;
    cJSON_AddStringToObject(req, "op", "stop_server");
    char err[512] = "";
    assert_int_equal(luray_ctl_request(s2.addr, g_key, req, &reply, 5000, err, sizeof(err)), 0);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(reply, "ok")));
    cJSON_Delete(reply);
    cJSON_Delete(req);
    req = echo_req("gone?");
    assert_int_equal(luray_ctl_request(s2.addr, g_key, req, &reply, 300, err, sizeof(err)),
                     LURAY_ETIMEDOUT);
    cJSON_Delete(req);
    server_join(&s2);
}

static void write_node_json(const char *dir, int port, const char *host)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/node.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"pid\": %d, \"node_id\": 1, \"host\": \"%s\", \"port\": %d}\n", (int)getpid(),
            host, port);
    fclose(f);
}

static void test_resolve(void **state)
{
    (void)state;
    char ctl[256], token[PATH_MAX], err[1024] = "", want[PATH_MAX], base[256];
    setenv("LURAY_TMPDIR", g_tmp, 1);
    unsetenv("LURAY_ADDRESS");
    unsetenv("LURAY_TOKEN_FILE");
    assert_int_equal(luray_session_base(base, sizeof(base)), 0);

    /* No cluster here. */
    assert_int_equal(luray_ctl_resolve(NULL, NULL, ctl, sizeof(ctl), token, sizeof(token), err,
                                       sizeof(err)), LURAY_ENOENT);
    assert_non_null(strstr(err, "no luray cluster is running on this machine"));
    /* A bad address. */
    assert_int_equal(luray_ctl_resolve("nonsense", NULL, ctl, sizeof(ctl), token, sizeof(token),
                                       err, sizeof(err)), LURAY_EINVAL);
    assert_non_null(strstr(err, "bad address 'nonsense'"));
    /* An address, but no key file yet: the error says where it was looked for. */
    assert_int_equal(luray_ctl_resolve("10.1.2.3:7000", NULL, ctl, sizeof(ctl), token,
                                       sizeof(token), err, sizeof(err)), LURAY_ENOENT);
    snprintf(want, sizeof(want), "no cluster key at %s/cluster-7000/token", base);
    assert_non_null(strstr(err, want));
    assert_non_null(strstr(err, "--token-file"));
    snprintf(want, sizeof(want), "%s/cluster-7000", base);
    mkdir(want, 0700);
    snprintf(want, sizeof(want), "%s/cluster-7000/token", base);
    assert_int_equal(luray_key_generate(want, err, sizeof(err)), 0);
    assert_int_equal(luray_ctl_resolve("10.1.2.3:7000", NULL, ctl, sizeof(ctl), token,
                                       sizeof(token), err, sizeof(err)), 0);
    assert_string_equal(ctl, "tcp://10.1.2.3:7001");
    assert_string_equal(token, want);
    /* The environment, and an explicit key file that is missing. */
    setenv("LURAY_ADDRESS", "[::1]:7000", 1);
    assert_int_equal(luray_ctl_resolve(NULL, NULL, ctl, sizeof(ctl), token, sizeof(token), err,
                                       sizeof(err)), 0);
    assert_string_equal(ctl, "tcp://[::1]:7001");
    setenv("LURAY_TOKEN_FILE", "/nonexistent/token", 1);
    assert_int_equal(luray_ctl_resolve(NULL, NULL, ctl, sizeof(ctl), token, sizeof(token), err,
                                       sizeof(err)), LURAY_ENOENT);
    assert_non_null(strstr(err, "cannot read the cluster key file /nonexistent/token"));
    assert_int_equal(luray_ctl_resolve(NULL, want, ctl, sizeof(ctl), token, sizeof(token), err,
                                       sizeof(err)), 0);
    unsetenv("LURAY_TOKEN_FILE");

    /* The local head, through $LURAY_TMPDIR/current (this process stands in for its node). */
    setenv("LURAY_ADDRESS", "auto", 1);
    char dir[PATH_MAX];
    assert_int_equal(luray_session_create(dir, sizeof(dir)), 0);
    write_node_json(dir, 7000, "0.0.0.0");
    assert_int_equal(luray_session_set_current(dir), 0);
    assert_int_equal(luray_ctl_resolve(NULL, NULL, ctl, sizeof(ctl), token, sizeof(token), err,
                                       sizeof(err)), 0);
    assert_string_equal(ctl, "tcp://127.0.0.1:7001");
    assert_string_equal(token, want);
    /* An embedded cluster (port 0) takes no jobs. */
    write_node_json(dir, 0, "127.0.0.1");
    assert_int_equal(luray_ctl_resolve(NULL, NULL, ctl, sizeof(ctl), token, sizeof(token), err,
                                       sizeof(err)), LURAY_ENOENT);
    assert_non_null(strstr(err, "embedded"));
    unsetenv("LURAY_ADDRESS");
    luray_session_clear_current(dir);
    luray_session_remove(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_bad_json_with_good_tag),
        cmocka_unit_test(test_no_head),
        cmocka_unit_test(test_stop_from_handler),
        cmocka_unit_test(test_resolve),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
