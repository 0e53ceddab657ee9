/* Unit tests of core/session.c: sizes and defaults, session directories, finding a live node by
 * address, spawning (with stand-in node programs) and `luray stop`'s cleanup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "errors.h"
#include "session.h"

static char g_base[PATH_MAX];

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void write_node_json(const char *dir, pid_t pid, int port)
{
    char path[PATH_MAX + 32], text[512];
    snprintf(path, sizeof(path), "%s/node.json", dir);
    snprintf(text, sizeof(text),
             "{\"pid\": %d, \"node_id\": 1, \"host\": \"127.0.0.1\", \"port\": %d, \"shm\": "
             "\"luray-%d-1\", \"object_store_memory\": 67108864, \"num_cpus\": 2}\n",
             (int)pid, port, (int)pid);
    write_text(path, text);
}

/* A pid that has just ended (and been reaped), so that nothing runs under it. */
static pid_t dead_pid(void)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(0);
    waitpid(pid, NULL, 0);
    return pid;
}

static char *g_argv0;
static size_t g_argv0_len;

/* A process whose argv[1] is "_node", as a real node's is: a child of the test that rewrites its
 * command line in place (/proc reads it from the process's memory) and waits to be killed. */
static pid_t fake_node(void)
{
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        memset(g_argv0, 0, g_argv0_len);
        memcpy(g_argv0, "x\0_node", 8);
        if (write(ready[1], "R", 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    char c;
    close(ready[1]);
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);
    return pid;
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_base, sizeof(g_base), "/tmp/luray-ut.XXXXXX");
    if (!mkdtemp(g_base))
        return -1;
    setenv("LURAY_TMPDIR", g_base, 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    luray_session_remove(g_base);
    return 0;
}

static void test_parse_size(void **state)
{
    (void)state;
    uint64_t v = 0;
    assert_int_equal(luray_session_parse_size("512000000", &v), 0);
    assert_int_equal(v, 512000000ull);
    assert_int_equal(luray_session_parse_size("18446744073709551615", &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(luray_session_parse_size("512MB", &v), 0);
    assert_int_equal(v, 512000000ull);
    assert_int_equal(luray_session_parse_size("2GiB", &v), 0);
    assert_int_equal(v, 2ull << 30);
    assert_int_equal(luray_session_parse_size("2gib", &v), 0);
    assert_int_equal(v, 2ull << 30);
    assert_int_equal(luray_session_parse_size("1.5GB", &v), 0);
    assert_int_equal(v, 1500000000ull);
    assert_int_equal(luray_session_parse_size("64M", &v), 0);
    assert_int_equal(v, 64ull << 20);
    assert_int_equal(luray_session_parse_size("100 kB", &v), 0);
    assert_int_equal(v, 100000ull);
    assert_int_equal(luray_session_parse_size("7B", &v), 0);
    assert_int_equal(v, 7ull);
    assert_int_equal(luray_session_parse_size("", &v), LURAY_EINVAL);
    assert_int_equal(luray_session_parse_size("-5", &v), LURAY_EINVAL);
    assert_int_equal(luray_session_parse_size("1.5", &v), LURAY_EINVAL);
    assert_int_equal(luray_session_parse_size("12 parsecs", &v), LURAY_EINVAL);
    assert_int_equal(luray_session_parse_size("MB", &v), LURAY_EINVAL);
    assert_int_equal(luray_session_parse_size("99999999999TB", &v), LURAY_EINVAL);
    assert_int_equal(luray_session_parse_size(NULL, &v), LURAY_EINVAL);
}

static void test_defaults(void **state)
{
    (void)state;
    double cpus = luray_session_default_cpus();
    assert_true(cpus >= 1 && cpus <= sysconf(_SC_NPROCESSORS_ONLN));
    assert_true(cpus == (double)(long)cpus);
    uint64_t mem = luray_session_default_store_memory();
    assert_true(mem >= (64ull << 20));
    assert_true(mem <= (8ull << 30));
}

static void test_base_and_create(void **state)
{
    (void)state;
    char sub[PATH_MAX + 16], base[PATH_MAX], dir1[PATH_MAX], dir2[PATH_MAX], p[PATH_MAX + 16];
    /* A missing base (and its parents) is made, mode 0700; a trailing slash is dropped. */
    snprintf(sub, sizeof(sub), "%s/a/b/", g_base);
    setenv("LURAY_TMPDIR", sub, 1);
    assert_int_equal(luray_session_base(base, sizeof(base)), 0);
    sub[strlen(sub) - 1] = '\0';
    assert_string_equal(base, sub);
    struct stat st;
    assert_int_equal(stat(base, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);

    assert_int_equal(luray_session_create(dir1, sizeof(dir1)), 0);
    assert_int_equal(luray_session_create(dir2, sizeof(dir2)), 0);
    assert_string_not_equal(dir1, dir2);
    assert_true(strncmp(dir1, base, strlen(base)) == 0);
    char want[64];
    snprintf(want, sizeof(want), "_%d", (int)getpid());
    assert_non_null(strstr(dir1, "/session_"));
    assert_non_null(strstr(dir1, want));
    snprintf(p, sizeof(p), "%s/spill", dir1);
    assert_true(exists(p));
    snprintf(p, sizeof(p), "%s/logs", dir1);
    assert_true(exists(p));

    /* Too long a base for unix socket paths is refused rather than failing later. */
    char longbase[PATH_MAX + 128];
    snprintf(longbase, sizeof(longbase), "%s/%0100d", g_base, 0);
    setenv("LURAY_TMPDIR", longbase, 1);
    assert_int_equal(luray_session_create(dir1, sizeof(dir1)), LURAY_EINVAL);
    setenv("LURAY_TMPDIR", g_base, 1);
}

static void test_remove(void **state)
{
    (void)state;
    char dir[PATH_MAX], p[PATH_MAX + 64], outside[PATH_MAX + 16];
    assert_int_equal(luray_session_create(dir, sizeof(dir)), 0);
    snprintf(outside, sizeof(outside), "%s/keep.txt", g_base);
    write_text(outside, "keep");
    snprintf(p, sizeof(p), "%s/spill/a", dir);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/spill/a/b", dir);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/spill/a/b/obj", dir);
    write_text(p, "x");
    snprintf(p, sizeof(p), "%s/link", dir);
    assert_int_equal(symlink(outside, p), 0);
    assert_int_equal(luray_session_remove(dir), 0);
    assert_false(exists(dir));
    assert_true(exists(outside)); /* a symlink is removed, not followed */
    assert_int_equal(luray_session_remove(dir), 0);
    assert_int_equal(luray_session_remove("/"), LURAY_EINVAL);
    unlink(outside);
}

static void test_find_and_stop(void **state)
{
    (void)state;
    char dir[PATH_MAX], dead[PATH_MAX], found[PATH_MAX], err[256], link[PATH_MAX + 16];
    char shm[128], shmlive[128];
    int n = -1;

    /* Nothing runs yet. */
    assert_int_equal(luray_session_find(NULL, found, sizeof(found), err, sizeof(err)),
                     LURAY_ENOENT);
    assert_non_null(strstr(err, "luray start --head"));
    assert_int_equal(luray_session_find("127.0.0.1:6380", found, sizeof(found), err, sizeof(err)),
                     LURAY_ENOENT);
    assert_string_equal(err,
                        "no luray cluster at 127.0.0.1:6380 (start one with 'luray start --head')");
    assert_int_equal(luray_session_find("nonsense", found, sizeof(found), err, sizeof(err)),
                     LURAY_EINVAL);
    assert_non_null(strstr(err, "HOST:PORT"));
    assert_int_equal(luray_session_find("host:99999", found, sizeof(found), err, sizeof(err)),
                     LURAY_EINVAL);

    /* A live node, the current one. */
    pid_t node = fake_node();
    assert_int_equal(luray_session_create(dir, sizeof(dir)), 0);
    write_node_json(dir, node, 23456);
    assert_int_equal(luray_session_set_current(dir), 0);
    luray_session_node_t info;
    assert_true(luray_session_alive(dir, &info));
    assert_int_equal(info.pid, node);
    assert_int_equal(info.port, 23456);
    assert_string_equal(info.host, "127.0.0.1");
    assert_int_equal(info.object_store_memory, 67108864ull);
    assert_int_equal(luray_session_find(NULL, found, sizeof(found), err, sizeof(err)), 0);
    assert_string_equal(found, dir);
    assert_int_equal(luray_session_find("auto", found, sizeof(found), err, sizeof(err)), 0);
    /* clear_current drops the link only for the session it names. */
    snprintf(link, sizeof(link), "%s/current", g_base);
    assert_int_equal(luray_session_clear_current("/elsewhere/session_x"), 0);
    assert_true(exists(link));
    assert_int_equal(luray_session_clear_current(dir), 0);
    assert_false(exists(link));
    assert_int_equal(luray_session_set_current(dir), 0);
    assert_int_equal(luray_session_find("localhost:23456", found, sizeof(found), err, sizeof(err)),
                     0);
    assert_string_equal(found, dir);
    assert_int_equal(luray_session_find("127.0.0.1:23457", found, sizeof(found), err, sizeof(err)),
                     LURAY_ENOENT);
    assert_int_equal(luray_session_find("10.9.8.7:23456", found, sizeof(found), err, sizeof(err)),
                     LURAY_ENOENT);

    /* A stale session: node.json of a dead pid, made by a process that is gone. */
    pid_t gone = dead_pid();
    assert_int_equal(luray_session_create(dead, sizeof(dead)), 0);
    char renamed[PATH_MAX + 32];
    snprintf(renamed, sizeof(renamed), "%s/session_20000101_000000_%d", g_base, (int)gone);
    assert_int_equal(rename(dead, renamed), 0);
    write_node_json(renamed, gone, 23457);
    assert_false(luray_session_alive(renamed, NULL));
    assert_int_equal(luray_session_find("127.0.0.1:23457", found, sizeof(found), err,
                                        sizeof(err)), LURAY_ENOENT);

    /* A live process that is not luray (our parent, the shell or runner that started this test)
     * is not a node: its node.json does not count. A process running this very program would
     * count, since an embedded cluster's node is a thread of its driver. */
    char notnode[PATH_MAX];
    assert_int_equal(luray_session_create(notnode, sizeof(notnode)), 0);
    write_node_json(notnode, getppid(), 23458);
    assert_false(luray_session_alive(notnode, NULL));

    /* Shared memory of a dead process goes; that of a live one stays. */
    snprintf(shm, sizeof(shm), "/dev/shm/luray-%d-1", (int)gone);
    snprintf(shmlive, sizeof(shmlive), "/dev/shm/luray-%d-77", (int)getpid());
    write_text(shm, "x");
    write_text(shmlive, "x");

    assert_int_equal(luray_session_stop_all(&n), 0);
    assert_int_equal(n, 1);
    /* Gone and reaped (stop_all reaps the nodes that are its own children). */
    assert_int_equal(kill(node, 0), -1);
    assert_int_equal(waitpid(node, NULL, WNOHANG), -1);
    assert_false(exists(dir));
    assert_false(exists(renamed));
    assert_false(exists(shm));
    assert_true(exists(shmlive));
    /* Made by this very process with a node.json: a dead node's session, removed. */
    assert_false(exists(notnode));
    snprintf(link, sizeof(link), "%s/current", g_base);
    assert_false(exists(link));
    unlink(shmlive);

    /* A session still being set up by a live process (no node.json yet) is left alone. */
    char busy[PATH_MAX];
    pid_t maker = fake_node();
    assert_int_equal(luray_session_create(busy, sizeof(busy)), 0);
    snprintf(renamed, sizeof(renamed), "%s/session_20000101_000001_%d", g_base, (int)maker);
    assert_int_equal(rename(busy, renamed), 0);
    assert_int_equal(luray_session_stop_all(&n), 0);
    assert_int_equal(n, 0);
    assert_true(exists(renamed));
    kill(maker, SIGKILL);
    waitpid(maker, NULL, 0);
    assert_int_equal(luray_session_stop_all(&n), 0);
    assert_false(exists(renamed));
}

/* Stand-in node programs: one that says it is ready, one that fails first. */
static void write_prog(const char *path, const char *body)
{
    write_text(path, body);
    assert_int_equal(chmod(path, 0700), 0);
}

static void test_spawn(void **state)
{
    (void)state;
    char dir[PATH_MAX], err[512], ready[PATH_MAX + 16], failing[PATH_MAX + 16];
    char args[PATH_MAX + 32], log[PATH_MAX + 32];
    snprintf(ready, sizeof(ready), "%s/ready.sh", g_base);
    snprintf(failing, sizeof(failing), "%s/failing.sh", g_base);
    /* Records its arguments, signals readiness on --ready-fd, then serves until killed. */
    write_prog(ready, "#!/bin/sh\n"
                      "dir=$3\n"
                      "echo \"$@\" > \"$dir/args\"\n"
                      "while [ $# -gt 0 ]; do [ \"$1\" = --ready-fd ] && fd=$2; shift; done\n"
                      "eval \"printf R >&$fd\"\n"
                      "exec sleep 60\n");
    write_prog(failing, "#!/bin/sh\necho 'cannot create the object store' >&2\nexit 3\n");
    assert_int_equal(luray_session_create(dir, sizeof(dir)), 0);

    luray_node_opts_t opts = {
        .session_dir = dir,
        .exe = ready,
        .num_cpus = 3,
        .num_gpus = 0.5,
        .resources_json = "{\"disk\": 2}",
        .object_store_memory = 123456789,
        .node_id = 1,
        .port = 24000,
        .host = "127.0.0.1",
        .ready_fd = -1,
    };
    pid_t pid = 0;
    assert_int_equal(luray_session_spawn_node(&opts, false, &pid, err, sizeof(err)), 0);
    assert_true(pid > 0);
    assert_int_equal(kill(pid, 0), 0);
    assert_int_equal(getpgid(pid), pid); /* its own group: Ctrl-C goes to the driver only */
    snprintf(args, sizeof(args), "%s/args", dir);
    FILE *f = fopen(args, "r");
    assert_non_null(f);
    char line[1024] = "";
    assert_non_null(fgets(line, sizeof(line), f));
    fclose(f);
    char want[PATH_MAX + 256];
    snprintf(want, sizeof(want),
             "_node --session %s --num-cpus 3 --num-gpus 0.5 --object-store-memory 123456789 "
             "--resources {\"disk\": 2} --port 24000 --host 127.0.0.1 --node-id 1 --ready-fd ",
             dir);
    assert_true(strncmp(line, want, strlen(want)) == 0);
    assert_int_equal(luray_session_kill_node(pid, 2000), 0);
    assert_int_equal(waitpid(pid, NULL, WNOHANG), -1); /* reaped already */

    /* Detached: its own session, output in logs/node.log. */
    assert_int_equal(luray_session_spawn_node(&opts, true, &pid, err, sizeof(err)), 0);
    assert_int_equal(getsid(pid), pid);
    snprintf(log, sizeof(log), "%s/logs/node.log", dir);
    assert_true(exists(log));
    assert_int_equal(luray_session_kill_node(pid, 2000), 0);

    /* A node that dies first: the error gives its status and the log's last line. */
    opts.exe = failing;
    assert_int_equal(luray_session_spawn_node(&opts, true, &pid, err, sizeof(err)), LURAY_EIO);
    assert_non_null(strstr(err, "exited with status 3"));
    assert_non_null(strstr(err, "node.log: cannot create the object store"));
    assert_int_equal(luray_session_spawn_node(&opts, false, &pid, err, sizeof(err)), LURAY_EIO);
    assert_non_null(strstr(err, "exited with status 3"));
    opts.exe = "/nonexistent/luray";
    assert_int_equal(luray_session_spawn_node(&opts, false, &pid, err, sizeof(err)), LURAY_EIO);
    assert_non_null(strstr(err, "exited with status 127"));
    assert_int_equal(luray_session_remove(dir), 0);
}

int main(int argc, char **argv)
{
    (void)argc;
    g_argv0 = argv[0];
    g_argv0_len = strlen(argv[0]);
    if (g_argv0_len < 8) {
        fprintf(stderr, "run test_session by a path of at least 8 characters\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_base_and_create),
        cmocka_unit_test(test_remove),
        cmocka_unit_test(test_find_and_stop),
        cmocka_unit_test(test_spawn),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
