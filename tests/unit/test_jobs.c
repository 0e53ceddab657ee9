/* Unit tests of core/jobs.c: the job manager on a libuv loop, its drivers run by a stand-in for
 * `luray run --address A SCRIPT ARGS` (a shell script that runs SCRIPT with sh): working dirs,
 * arguments and environment, logs by offset, exit codes, stop (SIGTERM, then SIGKILL), refused
 * requests, and the record that a restarted head replays. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "errors.h"
#include "jobs.h"
#include "pack.h"
#include "session.h"

#define WAIT_MS 20000

static char g_tmp[256];
static char g_exe[300];
static uv_loop_t g_loop;
static uv_timer_t g_ticker;
static luray_jobs_t *g_jobs;
static char g_state[300];

static const char fake_luray[] =
    "#!/bin/sh\n"
    "# Stands in for `luray run --address ADDR [--working-dir WD] SCRIPT ARGS...`: runs SCRIPT\n"
    "# with sh.\n"
    "if [ \"$1\" != run ] || [ \"$2\" != --address ]; then\n"
    "    echo \"fake luray: bad arguments: $*\" >&2\n"
    "    exit 99\n"
    "fi\n"
    "echo \"address=$3\"\n"
    "shift 3\n"
    "if [ \"$1\" = --working-dir ]; then echo \"working_dir=$2\"; shift 2; fi\n"
    "exec sh \"$@\"\n";

static void write_text(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/luray-test-jobs.XXXXXX");
    if (!mkdtemp(g_tmp))
        return -1;
    snprintf(g_exe, sizeof(g_exe), "%s/fake-luray", g_tmp);
    write_text(g_exe, fake_luray, 0755);
    return uv_loop_init(&g_loop);
}

static int teardown(void **state)
{
    (void)state;
    int rc = uv_loop_close(&g_loop);
    return luray_session_remove(g_tmp) != 0 || rc != 0 ? -1 : 0;
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

static luray_jobs_t *open_at(const char *name, const char *exe)
{
    luray_jobs_opts_t opts = {
        .state_dir = g_state,
        .exe = exe ? exe : g_exe,
        .driver_address = "127.0.0.1:6380",
        .token_file = "/some/token",
    };
    char err[512] = "";
    luray_jobs_t *j = NULL;
    snprintf(g_state, sizeof(g_state), "%s/%s", g_tmp, name);
    if (luray_jobs_open(&g_loop, &opts, &j, err, sizeof(err)) != 0)
        fail_msg("luray_jobs_open: %s", err);
    return j;
}

/* Opens the manager on state dir NAME, with a ticker so that the wait loops below wake up. */
static void open_jobs(const char *name, const char *exe)
{
    g_jobs = open_at(name, exe);
    uv_timer_init(&g_loop, &g_ticker);
    uv_timer_start(&g_ticker, on_tick, 20, 20);
}

/* Closes the manager and runs the loop until every handle of it has closed. */
static void close_jobs(void)
{
    if (!g_jobs)
        return;
    luray_jobs_close(g_jobs);
    g_jobs = NULL;
    uv_close((uv_handle_t *)&g_ticker, NULL);
    uv_run(&g_loop, UV_RUN_DEFAULT);
}

/* After each test, also one that failed half-way: its drivers stopped, its handles closed. */
static int close_after(void **state)
{
    (void)state;
    close_jobs();
    return 0;
}

static cJSON *call_bytes(const char *json, const uint8_t *data, size_t len, uint8_t **out,
                         size_t *outlen)
{
    cJSON *req = cJSON_Parse(json);
    assert_non_null(req);
    luray_ctl_bytes_t bytes = {.data = data, .len = len};
    cJSON *reply = luray_jobs_handle(g_jobs, req, &bytes);
    cJSON_Delete(req);
    if (out) {
        *out = bytes.reply_data;
        *outlen = bytes.reply_len;
    } else {
        free(bytes.reply_data);
    }
    return reply;
}

static cJSON *call(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static cJSON *call(const char *fmt, ...)
{
    char json[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(json, sizeof(json), fmt, ap);
    va_end(ap);
    return call_bytes(json, NULL, 0, NULL, NULL);
}

static const char *str(const cJSON *o, const char *key)
{
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
    return s ? s : "";
}

static void expect_error(cJSON *reply, const char *needle)
{
    assert_non_null(reply);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(reply, "ok")));
    if (!strstr(str(reply, "error"), needle))
        fail_msg("error '%s' does not say '%s'", str(reply, "error"), needle);
    cJSON_Delete(reply);
}

/* Submits a request; returns the new job's id in id. */
static void submit(const char *json, const uint8_t *blob, size_t len, char id[32])
{
    cJSON *reply = call_bytes(json, blob, len, NULL, NULL);
    assert_non_null(reply);
    if (!cJSON_IsTrue(cJSON_GetObjectItem(reply, "ok")))
        fail_msg("submit refused: %s", str(reply, "error"));
    snprintf(id, 32, "%s", str(reply, "job_id"));
    cJSON_Delete(reply);
    assert_int_equal(strlen(id), 12);
    assert_memory_equal(id, "job-", 4);
}

/* A script file under the test's folder, its absolute path in out. */
static void script(const char *name, const char *text, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", g_tmp, name);
    write_text(out, text, 0644);
}

static cJSON *status_of(const char *id)
{
    cJSON *st = call("{\"op\":\"job_status\",\"job_id\":\"%s\"}", id);
    assert_non_null(st);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(st, "ok")));
    return st;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs the loop until the job has ended; returns its status object. */
static cJSON *wait_ended(const char *id)
{
    int64_t end = now_ms() + WAIT_MS;
    for (;;) {
        cJSON *st = status_of(id);
        const char *s = str(st, "status");
        if (strcmp(s, "RUNNING") != 0 && strcmp(s, "PENDING") != 0)
            return st;
        cJSON_Delete(st);
        if (now_ms() > end)
            fail_msg("job %s did not end within %d ms", id, WAIT_MS);
        uv_run(&g_loop, UV_RUN_ONCE);
    }
}

/* The job's whole log from offset, read in job_logs chunks; *done from the last one. */
static char *logs_from(const char *id, double offset, bool *done)
{
    size_t cap = 1 << 16, len = 0;
    char *all = malloc(cap);
    for (;;) {
        char json[128];
        uint8_t *data = NULL;
        size_t n = 0;
        snprintf(json, sizeof(json), "{\"op\":\"job_logs\",\"job_id\":\"%s\",\"offset\":%.0f}", id,
                 offset);
        cJSON *r = call_bytes(json, NULL, 0, &data, &n);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(r, "ok")));
        assert_true(len + n < cap);
        if (n)
            memcpy(all + len, data, n);
        len += n;
        free(data);
        /* An offset past the end reads as the end. */
        double next = cJSON_GetObjectItem(r, "next_offset")->valuedouble;
        assert_true(next - (double)n <= offset);
        offset = next;
        *done = cJSON_IsTrue(cJSON_GetObjectItem(r, "done"));
        cJSON_Delete(r);
        if (n == 0 || *done)
            break;
    }
    all[len] = '\0';
    return all;
}

/* Runs the loop until the job's log holds needle. */
static void wait_log(const char *id, const char *needle)
{
    int64_t end = now_ms() + WAIT_MS;
    for (;;) {
        bool done;
        char *log = logs_from(id, 0, &done);
        bool found = strstr(log, needle) != NULL;
        free(log);
        if (found)
            return;
        if (now_ms() > end)
            fail_msg("the log of %s never said '%s'", id, needle);
        uv_run(&g_loop, UV_RUN_ONCE);
    }
}

static void test_submit_with_working_dir(void **state)
{
    (void)state;
    char src[300], p[400], id[32], want[600];
    snprintf(src, sizeof(src), "%s/src", g_tmp);
    mkdir(src, 0755);
    snprintf(p, sizeof(p), "%s/lib", src);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/lib/data.txt", src);
    write_text(p, "data from the working dir\n", 0644);
    snprintf(p, sizeof(p), "%s/main.sh", src);
    write_text(p,
               "echo \"args: $1|$2\"\n"
               "echo \"job: $LURAY_JOB_ID\"\n"
               "echo \"token: $LURAY_TOKEN_FILE\"\n"
               "echo \"greeting: $GREETING\"\n"
               "echo \"pwd: $(pwd)\"\n"
               "cat lib/data.txt\n"
               "echo 'to stderr' >&2\n",
               0644);
    uint8_t *blob = NULL;
    size_t len = 0;
    char err[256];
    assert_int_equal(luray_pack_dir(src, 0, &blob, &len, err, sizeof(err)), 0);

    open_jobs("state1", NULL);
    submit("{\"op\":\"job_submit\",\"entrypoint\":\"main.sh\",\"args\":[\"a\",\"b c\"],"
           "\"env_vars\":{\"GREETING\":\"hi there\"}}", blob, len, id);
    free(blob);
    cJSON *st = wait_ended(id);
    assert_string_equal(str(st, "status"), "SUCCEEDED");
    assert_string_equal(str(st, "job_id"), id);
    assert_string_equal(str(st, "entrypoint"), "main.sh");
    assert_int_equal(cJSON_GetObjectItem(st, "exit_code")->valueint, 0);
    double t0 = cJSON_GetObjectItem(st, "start_time")->valuedouble;
    double t1 = cJSON_GetObjectItem(st, "end_time")->valuedouble;
    assert_true(t0 > 1e9 && t1 >= t0);
    cJSON_Delete(st);

    bool done = false;
    char *log = logs_from(id, 0, &done);
    assert_true(done);
    assert_non_null(strstr(log, "address=127.0.0.1:6380\n"));
    /* the shipped folder goes on to the job's tasks */
    assert_non_null(strstr(log, "working_dir=/"));
    assert_non_null(strstr(log, "args: a|b c\n"));
    snprintf(want, sizeof(want), "job: %s\n", id);
    assert_non_null(strstr(log, want));
    assert_non_null(strstr(log, "token: /some/token\n"));
    assert_non_null(strstr(log, "greeting: hi there\n"));
    snprintf(want, sizeof(want), "pwd: %s/jobs/%s/wd\n", g_state, id);
    assert_non_null(strstr(log, want));
    assert_non_null(strstr(log, "data from the working dir\n"));
    assert_non_null(strstr(log, "to stderr\n"));
    /* From an offset, and past the end. */
    char *tail = logs_from(id, 7, &done);
    assert_string_equal(tail, log + 7);
    free(tail);
    tail = logs_from(id, 1e9, &done);
    assert_string_equal(tail, "");
    assert_true(done);
    free(tail);
    free(log);
    expect_error(call("{\"op\":\"job_logs\",\"job_id\":\"%s\",\"offset\":-1}", id), "offset");
    close_jobs();
}

static void test_exit_codes(void **state)
{
    (void)state;
    char s1[300], s2[300], json[700], id[32];
    script("exit3.sh", "echo failing; exit 3\n", s1, sizeof(s1));
    script("killed.sh", "kill -9 $$\n", s2, sizeof(s2));
    open_jobs("state2", NULL);

    snprintf(json, sizeof(json), "{\"op\":\"job_submit\",\"entrypoint\":\"%s\"}", s1);
    submit(json, NULL, 0, id);
    cJSON *st = wait_ended(id);
    assert_string_equal(str(st, "status"), "FAILED");
    assert_int_equal(cJSON_GetObjectItem(st, "exit_code")->valueint, 3);
    assert_string_equal(str(st, "message"), "the driver exited with status 3");
    cJSON_Delete(st);
    /* Without a working dir, the job runs in an empty one of its own. */
    snprintf(json, sizeof(json), "%s/jobs/%s/wd", g_state, id);
    struct stat sb;
    assert_int_equal(stat(json, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));

    snprintf(json, sizeof(json), "{\"op\":\"job_submit\",\"entrypoint\":\"%s\"}", s2);
    submit(json, NULL, 0, id);
    st = wait_ended(id);
    assert_string_equal(str(st, "status"), "FAILED");
    assert_int_equal(cJSON_GetObjectItem(st, "exit_code")->valueint, 128 + 9);
    assert_non_null(strstr(str(st, "message"), "killed by signal 9"));
    cJSON_Delete(st);
    close_jobs();

    /* A luray program that is not there: the request succeeds, the job FAILED at once. */
    open_jobs("state2b", "/nonexistent/luray");
    snprintf(json, sizeof(json), "{\"op\":\"job_submit\",\"entrypoint\":\"%s\"}", s1);
    submit(json, NULL, 0, id);
    st = status_of(id);
    assert_string_equal(str(st, "status"), "FAILED");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(st, "exit_code")));
    assert_non_null(strstr(str(st, "message"), "cannot start the driver /nonexistent/luray"));
    cJSON_Delete(st);
    close_jobs();
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void test_refused_requests(void **state)
{
    (void)state;
    char s1[300], jobs_dir[400];
    script("ok.sh", "true\n", s1, sizeof(s1));
    open_jobs("state3", NULL);
    snprintf(jobs_dir, sizeof(jobs_dir), "%s/jobs", g_state);

    expect_error(call("{\"op\":\"job_submit\"}"), "needs an entrypoint");
    expect_error(call("{\"op\":\"job_submit\",\"entrypoint\":\"%s\",\"args\":[1]}", s1),
                 "args must be a list of strings");
    expect_error(call("{\"op\":\"job_submit\",\"entrypoint\":\"%s\",\"env_vars\":[]}", s1),
                 "env_vars must map names");
    expect_error(call("{\"op\":\"job_submit\",\"entrypoint\":\"%s\",\"env_vars\":{\"A=B\":\"x\"}}",
                      s1), "'A=B' is not an environment variable name");
    expect_error(call("{\"op\":\"job_submit\",\"entrypoint\":\"%s\",\"env_vars\":{\"A\":1}}", s1),
                 "env_vars.A is not a string");
    expect_error(call("{\"op\":\"job_submit\",\"entrypoint\":\"main.lua\"}"),
                 "the entrypoint main.lua is relative, but no working dir came with it");
    expect_error(call("{\"op\":\"job_submit\",\"entrypoint\":\"/nonexistent/x.lua\"}"),
                 "the head cannot read /nonexistent/x.lua");

    /* A working dir that does not hold the entrypoint, and one that does not unpack. */
    char src[300], err[256];
    snprintf(src, sizeof(src), "%s/src3", g_tmp);
    mkdir(src, 0755);
    uint8_t *blob = NULL;
    size_t len = 0;
    assert_int_equal(luray_pack_dir(src, 0, &blob, &len, err, sizeof(err)), 0);
    expect_error(call_bytes("{\"op\":\"job_submit\",\"entrypoint\":\"main.lua\"}", blob, len,
                            NULL, NULL), "the working dir has no main.lua");
    free(blob);
    expect_error(call_bytes("{\"op\":\"job_submit\",\"entrypoint\":\"main.lua\"}",
                            (const uint8_t *)"LRP1garbage", 11, NULL, NULL),
                 "the working dir did not unpack");
    assert_int_equal(count_entries(jobs_dir), 0);

    /* Ops of others are not ours; ours need a job that exists. */
    assert_null(call("{\"op\":\"cluster_status\"}"));
    assert_null(call("{\"op\":\"job_frobnicate\"}"));
    expect_error(call("{\"op\":\"job_status\",\"job_id\":\"job-00000000\"}"),
                 "no job job-00000000");
    expect_error(call("{\"op\":\"job_stop\"}"), "job_stop needs a job_id");
    cJSON *list = call("{\"op\":\"job_list\"}");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(list, "jobs")), 0);
    cJSON_Delete(list);
    close_jobs();
}

static bool pid_alive(pid_t pid)
{
    return kill(pid, 0) == 0;
}

static pid_t read_pid(const char *path)
{
    FILE *f = fopen(path, "r");
    int pid = 0;
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%d", &pid), 1);
    fclose(f);
    return (pid_t)pid;
}

static void test_stop(void **state)
{
    (void)state;
    char s1[300], s2[300], json[700], id[32], id2[32], child[400];
    script("sleepy.sh", "sleep 30 & echo $! > child.pid; echo started; wait\n", s1, sizeof(s1));
    script("stubborn.sh", "trap '' TERM; echo ready; while :; do sleep 0.1; done\n", s2,
           sizeof(s2));
    open_jobs("state4", NULL);

    snprintf(json, sizeof(json), "{\"op\":\"job_submit\",\"entrypoint\":\"%s\"}", s1);
    submit(json, NULL, 0, id);
    wait_log(id, "started");
    snprintf(child, sizeof(child), "%s/jobs/%s/wd/child.pid", g_state, id);
    pid_t grandchild = read_pid(child);
    assert_true(pid_alive(grandchild));
    cJSON *r = call("{\"op\":\"job_stop\",\"job_id\":\"%s\"}", id);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(r, "stopped")));
    cJSON_Delete(r);
    cJSON *st = wait_ended(id);
    assert_string_equal(str(st, "status"), "STOPPED");
    assert_int_equal(cJSON_GetObjectItem(st, "exit_code")->valueint, 128 + SIGTERM);
    assert_string_equal(str(st, "message"), "stopped by request");
    cJSON_Delete(st);
    /* The whole process group went, not only the driver. */
    int64_t end = now_ms() + 3000;
    while (pid_alive(grandchild) && now_ms() < end)
        uv_run(&g_loop, UV_RUN_ONCE);
    assert_false(pid_alive(grandchild));
    r = call("{\"op\":\"job_stop\",\"job_id\":\"%s\"}", id);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(r, "stopped")));
    assert_string_equal(str(r, "status"), "STOPPED");
    cJSON_Delete(r);

    /* A driver that ignores SIGTERM gets SIGKILL LURAY_JOBS_KILL_AFTER_MS later. */
    snprintf(json, sizeof(json), "{\"op\":\"job_submit\",\"entrypoint\":\"%s\"}", s2);
    submit(json, NULL, 0, id2);
    wait_log(id2, "ready");
    int64_t t0 = now_ms();
    cJSON_Delete(call("{\"op\":\"job_stop\",\"job_id\":\"%s\"}", id2));
    st = wait_ended(id2);
    assert_true(now_ms() - t0 >= LURAY_JOBS_KILL_AFTER_MS - 200);
    assert_string_equal(str(st, "status"), "STOPPED");
    assert_int_equal(cJSON_GetObjectItem(st, "exit_code")->valueint, 128 + SIGKILL);
    cJSON_Delete(st);

    /* The list, in submission order. */
    cJSON *list = call("{\"op\":\"job_list\"}");
    cJSON *jobs = cJSON_GetObjectItem(list, "jobs");
    assert_int_equal(cJSON_GetArraySize(jobs), 2);
    assert_string_equal(str(cJSON_GetArrayItem(jobs, 0), "job_id"), id);
    assert_string_equal(str(cJSON_GetArrayItem(jobs, 1), "job_id"), id2);
    assert_string_equal(str(cJSON_GetArrayItem(jobs, 1), "status"), "STOPPED");
    cJSON_Delete(list);
    close_jobs();
}

static void append_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A process that looks like job ID's driver, outliving its head: its own session, the job id in
 * its environment. */
static pid_t orphan_driver(const char *id)
{
    int execd[2];
    assert_int_equal(pipe2(execd, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char env[64];
        snprintf(env, sizeof(env), "LURAY_JOB_ID=%s", id);
        char *envp[] = {env, NULL};
        setsid();
        execle("/bin/sleep", "sleep", "30", (char *)NULL, envp);
        _exit(127);
    }
    /* The pipe closes when the child has exec'd: from then on its environment is the driver's. */
    char c;
    close(execd[1]);
    assert_int_equal(read(execd[0], &c, 1), 0);
    close(execd[0]);
    return pid;
}

static void test_restart(void **state)
{
    (void)state;
    char s1[300], s2[300], json[700], done_id[32], run_id[32], path[400];
    script("quick.sh", "echo quick\n", s1, sizeof(s1));
    script("long.sh", "echo long; sleep 30\n", s2, sizeof(s2));
    open_jobs("state5", NULL);
    snprintf(json, sizeof(json), "{\"op\":\"job_submit\",\"entrypoint\":\"%s\"}", s1);
    submit(json, NULL, 0, done_id);
    cJSON_Delete(wait_ended(done_id));
    snprintf(json, sizeof(json), "{\"op\":\"job_submit\",\"entrypoint\":\"%s\"}", s2);
    submit(json, NULL, 0, run_id);
    wait_log(run_id, "long");
    /* The head's shutdown stops what runs. */
    close_jobs();

    open_jobs("state5", NULL);
    cJSON *st = status_of(done_id);
    assert_string_equal(str(st, "status"), "SUCCEEDED");
    cJSON_Delete(st);
    st = status_of(run_id);
    assert_string_equal(str(st, "status"), "STOPPED");
    assert_string_equal(str(st, "message"), "cluster stopped");
    assert_int_equal(cJSON_GetObjectItem(st, "exit_code")->valueint, 128 + SIGTERM);
    cJSON_Delete(st);
    bool done = false;
    char *log = logs_from(done_id, 0, &done);
    assert_true(done);
    assert_non_null(strstr(log, "quick\n"));
    free(log);
    close_jobs();

    /* A head that died: a job it ran (its driver gone, or still there), then a torn line. */
    pid_t orphan = orphan_driver("job-0000beef");
    snprintf(path, sizeof(path), "%s/jobs.jsonl", g_state);
    append_text(path, "{\"job_id\":\"job-0000dead\",\"status\":\"RUNNING\",\"exit_code\":null,"
                      "\"start_time\":1,\"end_time\":null,\"entrypoint\":\"x.lua\","
                      "\"message\":\"running\",\"pid\":999999999}\n");
    snprintf(json, sizeof(json),
             "{\"job_id\":\"job-0000beef\",\"status\":\"RUNNING\",\"exit_code\":null,"
             "\"start_time\":1,\"end_time\":null,\"entrypoint\":\"y.lua\",\"message\":\"\","
             "\"pid\":%d}\n", (int)orphan);
    append_text(path, json);
    append_text(path, "this line is garbled\n");
    append_text(path, "{\"job_id\":\"job-0000cafe\",\"status\":\"SUCC");
    open_jobs("state5", NULL);
    st = status_of("job-0000dead");
    assert_string_equal(str(st, "status"), "FAILED");
    assert_string_equal(str(st, "message"), "the head restarted while the job ran");
    cJSON_Delete(st);
    st = status_of("job-0000beef");
    assert_string_equal(str(st, "status"), "FAILED");
    cJSON_Delete(st);
    int wst = 0;
    assert_int_equal(waitpid(orphan, &wst, 0), orphan);
    assert_true(WIFSIGNALED(wst) && WTERMSIG(wst) == SIGTERM);
    expect_error(call("{\"op\":\"job_status\",\"job_id\":\"job-0000cafe\"}"), "no job");
    cJSON *list = call("{\"op\":\"job_list\"}");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(list, "jobs")), 4);
    cJSON_Delete(list);
    /* New records start on a line of their own: every line but the garbled one parses. */
    snprintf(json, sizeof(json), "{\"op\":\"job_submit\",\"entrypoint\":\"%s\"}", s1);
    submit(json, NULL, 0, done_id);
    cJSON_Delete(wait_ended(done_id));
    close_jobs();
    FILE *f = fopen(path, "r");
    char line[2048];
    int bad = 0, lines = 0;
    assert_non_null(f);
    while (fgets(line, sizeof(line), f)) {
        cJSON *o = cJSON_Parse(line);
        bad += o == NULL;
        lines++;
        cJSON_Delete(o);
    }
    fclose(f);
    assert_int_equal(bad, 1);
    assert_true(lines >= 8);

    /* Replayed once more, the failed jobs stay failed (their records were written). */
    open_jobs("state5", NULL);
    st = status_of("job-0000dead");
    assert_string_equal(str(st, "status"), "FAILED");
    cJSON_Delete(st);
    st = status_of(done_id);
    assert_string_equal(str(st, "status"), "SUCCEEDED");
    cJSON_Delete(st);
    close_jobs();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_submit_with_working_dir, close_after),
        cmocka_unit_test_teardown(test_exit_codes, close_after),
        cmocka_unit_test_teardown(test_refused_requests, close_after),
        cmocka_unit_test_teardown(test_stop, close_after),
        cmocka_unit_test_teardown(test_restart, close_after),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
