/* Unit tests of core/cli_job.c: `luray job ...` run in the test against a control server and job
 * manager on a loop in a thread (the head's part), whose drivers are a stand-in for `luray run`
 * that runs the script with sh: submit (following the output, or --no-wait), status, logs, list,
 * stop, and the errors and usage errors of each. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "auth.h"
#include "cli_job.h"
#include "ctl.h"
#include "errors.h"
#include "jobs.h"
#include "session.h"

static char g_tmp[256];
static char g_token[300];
static char g_address[64];
static char g_out[1 << 16], g_err[1 << 14];

typedef struct {
    uv_loop_t loop;
    uv_async_t stop;
    luray_ctl_server_t *srv;
    luray_jobs_t *jobs;
    pthread_t thread;
    sem_t ready;
    int rc;
    char err[512];
    char addr[64], state[300], exe[300];
    uint8_t key[LURAY_KEY_BYTES];
} head_t;

static head_t g_head;

static const char fake_luray[] =
    "#!/bin/sh\n"
    "# Stands in for `luray run --address ADDR SCRIPT ARGS...`: runs SCRIPT with sh.\n"
    "[ \"$1\" = run ] && [ \"$2\" = --address ] || exit 99\n"
    "shift 3\n"
    "if [ \"$1\" = --working-dir ]; then shift 2; fi\n"
    "exec sh \"$@\"\n";

static cJSON *head_handler(void *ctx, const cJSON *req, luray_ctl_bytes_t *bytes)
{
    head_t *h = ctx;
    return luray_jobs_handle(h->jobs, req, bytes);
}

static void on_stop(uv_async_t *a)
{
    head_t *h = a->data;
    luray_ctl_server_stop(h->srv);
    luray_jobs_close(h->jobs);
    uv_close((uv_handle_t *)a, NULL);
}

static void *head_main(void *arg)
{
    head_t *h = arg;
    luray_jobs_opts_t opts = {.state_dir = h->state, .exe = h->exe,
                              .driver_address = "127.0.0.1:1"};
    uv_loop_init(&h->loop);
    uv_async_init(&h->loop, &h->stop, on_stop);
    h->stop.data = h;
    h->rc = luray_jobs_open(&h->loop, &opts, &h->jobs, h->err, sizeof(h->err));
    if (h->rc == 0)
        h->rc = luray_ctl_server_start(&h->loop, h->addr, h->key, head_handler, h, &h->srv,
                                       h->err, sizeof(h->err));
    sem_post(&h->ready);
    if (h->rc != 0) {
        luray_jobs_close(h->jobs);
        uv_close((uv_handle_t *)&h->stop, NULL);
    }
    uv_run(&h->loop, UV_RUN_DEFAULT);
    uv_loop_close(&h->loop);
    return NULL;
}

/* The head on the control port of port, in its own thread; its status. */
static int head_start(int port)
{
    g_head.jobs = NULL;
    g_head.srv = NULL;
    snprintf(g_address, sizeof(g_address), "127.0.0.1:%d", port);
    snprintf(g_head.addr, sizeof(g_head.addr), "tcp://127.0.0.1:%d", port + 1);
    sem_init(&g_head.ready, 0, 0);
    if (pthread_create(&g_head.thread, NULL, head_main, &g_head) != 0)
        return LURAY_EIO;
    sem_wait(&g_head.ready);
    if (g_head.rc != 0) {
        pthread_join(g_head.thread, NULL);
        sem_destroy(&g_head.ready);
    }
    return g_head.rc;
}

static void write_text(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

static int setup(void **state)
{
    (void)state;
    char err[256];
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/luray-test-cli-job.XXXXXX");
    if (!mkdtemp(g_tmp) || sodium_init() < 0)
        return -1;
    snprintf(g_token, sizeof(g_token), "%s/token", g_tmp);
    if (luray_key_generate(g_token, err, sizeof(err)) != 0 ||
        luray_key_load(g_token, g_head.key, err, sizeof(err)) != 0)
        return -1;
    snprintf(g_head.state, sizeof(g_head.state), "%s/cluster", g_tmp);
    snprintf(g_head.exe, sizeof(g_head.exe), "%s/fake-luray", g_tmp);
    write_text(g_head.exe, fake_luray, 0755);
    /* A port that depends on the pid, so that tests running at once seldom meet; the next one
     * when its control port is taken. */
    int rc = LURAY_EEXIST;
    for (int attempt = 0; attempt < 20 && rc == LURAY_EEXIST; attempt++)
        rc = head_start(20000 + (int)((getpid() + attempt * 1009) % 5000) * 4);
    if (rc != 0) {
        fprintf(stderr, "head: %s\n", g_head.err);
        luray_session_remove(g_tmp);
        return -1;
    }
    /* SIGCHLD of the drivers belongs to the head's thread: here it would cut the client's waits
     * short. */
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &chld, NULL);
    unsetenv("LURAY_ADDRESS");
    unsetenv("LURAY_TOKEN_FILE");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    uv_async_send(&g_head.stop);
    pthread_join(g_head.thread, NULL);
    sem_destroy(&g_head.ready);
    return luray_session_remove(g_tmp);
}

static void slurp(const char *path, char *out, size_t len)
{
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(out, 1, len - 1, f) : 0;
    out[n] = '\0';
    if (f)
        fclose(f);
}

/* Runs `luray job ARGS...` (NULL-terminated), its stdout in g_out and stderr in g_err. */
static int job(const char *first, ...)
{
    char *argv[64] = {"luray", "job"};
    int argc = 2;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && argc < 63; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    char out_path[300], err_path[300];
    snprintf(out_path, sizeof(out_path), "%s/stdout", g_tmp);
    snprintf(err_path, sizeof(err_path), "%s/stderr", g_tmp);
    fflush(stdout);
    fflush(stderr);
    int save_out = dup(1), save_err = dup(2);
    int fo = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int fe = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fo, 1);
    dup2(fe, 2);
    int rc = luray_cli_job(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(save_out, 1);
    dup2(save_err, 2);
    close(save_out);
    close(save_err);
    close(fo);
    close(fe);
    slurp(out_path, g_out, sizeof(g_out));
    slurp(err_path, g_err, sizeof(g_err));
    return rc;
}

static void expect(int rc, int want, const char *out_needle, const char *err_needle)
{
    if (rc != want || (out_needle && !strstr(g_out, out_needle)) ||
        (err_needle && !strstr(g_err, err_needle)))
        fail_msg("exit %d (want %d)\nstdout: %s\nstderr: %s\n(want '%s' / '%s')", rc, want, g_out,
                 g_err, out_needle ? out_needle : "", err_needle ? err_needle : "");
}

/* The id from "job-xxxxxxxx submitted". */
static void submitted_id(char id[16])
{
    const char *p = strstr(g_out, "job-");
    assert_non_null(p);
    snprintf(id, 16, "%.12s", p);
    char want[40];
    snprintf(want, sizeof(want), "%s submitted\n", id);
    assert_non_null(strstr(g_out, want));
}

static void test_usage(void **state)
{
    (void)state;
    expect(job("--help", NULL), 0, "usage: luray job COMMAND", NULL);
    expect(job("stop", "--help", NULL), 0, "--working-dir DIR", NULL);
    expect(job(NULL), 2, NULL, "luray job: needs a command");
    expect(job("frob", NULL), 2, NULL, "luray job: unknown command 'frob'");
    expect(job("status", NULL), 2, NULL, "luray job status: needs a job id");
    expect(job("status", "a", "b", NULL), 2, NULL, "unexpected argument 'b'");
    expect(job("list", "--follow", NULL), 2, NULL, "luray job list: unknown option --follow");
    expect(job("submit", "--no-wait", NULL), 2, NULL, "luray job submit: needs the script");
    expect(job("submit", "--env", "novalue", "x.sh", NULL), 2, NULL, "--env needs NAME=VALUE");
    expect(job("submit", "--address", NULL), 2, NULL, "--address needs HOST:PORT");
    /* The key file, and the address, are checked before anything is sent. */
    expect(job("list", "--address", g_address, "--token-file", "/nonexistent/token", NULL), 1,
           NULL, "luray job list: cannot read the cluster key file /nonexistent/token");
    expect(job("list", "--address", "nonsense", "--token-file", g_token, NULL), 1, NULL,
           "bad address 'nonsense'");
}

static void test_submit_and_follow(void **state)
{
    (void)state;
    char dir[300], path[400], id[16], want[512];
    snprintf(dir, sizeof(dir), "%s/wd", g_tmp);
    mkdir(dir, 0755);
    snprintf(path, sizeof(path), "%s/lib", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/lib/mod.txt", dir);
    write_text(path, "module text\n", 0644);
    snprintf(path, sizeof(path), "%s/main.sh", dir);
    write_text(path, "echo \"hello $1 $COLOR\"; cat lib/mod.txt; echo oops >&2\n", 0644);
    snprintf(path, sizeof(path), "%s/fail.sh", dir);
    write_text(path, "echo about to fail; exit 3\n", 0644);

    expect(job("submit", "--address", g_address, "--token-file", g_token, "--working-dir", dir,
               "--env", "COLOR=blue", "--", "main.sh", "world", NULL),
           0, "hello world blue\nmodule text\noops\n", NULL);
    submitted_id(id);
    snprintf(want, sizeof(want), "%s SUCCEEDED\n", id);
    expect(0, 0, want, NULL);

    /* The environment names the head and its key. */
    setenv("LURAY_ADDRESS", g_address, 1);
    setenv("LURAY_TOKEN_FILE", g_token, 1);
    expect(job("submit", "--working-dir", dir, "fail.sh", NULL), 1, "about to fail\n",
           "luray job submit: job-");
    assert_non_null(strstr(g_err, "FAILED: the driver exited with status 3"));

    /* Scripts the working dir does not hold. */
    expect(job("submit", "--working-dir", dir, "nope.sh", NULL), 1, NULL,
           "the working dir");
    assert_non_null(strstr(g_err, "has no nope.sh"));
    snprintf(path, sizeof(path), "%s/fake-luray", g_tmp);
    expect(job("submit", "--working-dir", dir, path, NULL), 1, NULL,
           "is not inside the working dir");

    /* Without a working dir the script goes by its absolute path. */
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(dir), 0);
    expect(job("submit", "main.sh", "there", NULL), 0, "hello there \n", NULL);
    submitted_id(id);
    assert_int_equal(chdir(cwd), 0);
    expect(job("status", id, "--json", NULL), 0, "\"status\":\t\"SUCCEEDED\"", NULL);
    snprintf(want, sizeof(want), "\"entrypoint\":\t\"%s/main.sh\"", dir);
    expect(0, 0, want, NULL);
    unsetenv("LURAY_ADDRESS");
    unsetenv("LURAY_TOKEN_FILE");
}

static void test_no_wait_status_logs_stop(void **state)
{
    (void)state;
    char path[400], id[16], want[128];
    snprintf(path, sizeof(path), "%s/sleeper.sh", g_tmp);
    write_text(path, "echo sleeping; sleep 30\n", 0644);
    setenv("LURAY_ADDRESS", g_address, 1);
    setenv("LURAY_TOKEN_FILE", g_token, 1);

    expect(job("submit", "--no-wait", path, NULL), 0, " submitted\n", NULL);
    submitted_id(id);
    assert_null(strstr(g_out, "sleeping"));
    snprintf(want, sizeof(want), "%s: RUNNING\n", id);
    expect(job("status", id, NULL), 0, want, NULL);
    expect(0, 0, "  exit code:  -\n", NULL);
    expect(job("list", NULL), 0, "JOB ID", NULL);
    char *line = strstr(g_out, id);
    assert_non_null(line);
    assert_non_null(strstr(line, "RUNNING"));
    expect(job("list", "--json", NULL), 0, id, NULL);
    assert_int_equal(g_out[0], '[');
    for (int i = 0; i < 100 && !strstr(g_out, "sleeping"); i++) {
        usleep(50000);
        job("logs", id, NULL);
    }
    expect(0, 0, "sleeping\n", NULL);

    snprintf(want, sizeof(want), "%s STOPPED\n", id);
    expect(job("stop", id, NULL), 0, want, NULL);
    snprintf(want, sizeof(want), "%s had already ended: STOPPED\n", id);
    expect(job("stop", id, NULL), 0, want, NULL);
    expect(job("status", id, NULL), 0, "  message:    stopped by request\n", NULL);
    expect(job("logs", id, "--follow", NULL), 0, "sleeping\n", NULL);
    expect(job("status", "job-00000000", NULL), 1, NULL,
           "luray job status: no job job-00000000");
    expect(job("logs", "job-00000000", NULL), 1, NULL, "luray job logs: no job job-00000000");
    unsetenv("LURAY_ADDRESS");
    unsetenv("LURAY_TOKEN_FILE");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_submit_and_follow),
        cmocka_unit_test(test_no_wait_status_logs_stop),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
