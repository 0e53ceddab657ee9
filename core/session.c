/* Local clusters on this machine: session directories, spawning and finding node daemons, the
 * cleanup of `luray stop`, and the default resources of a node. */
#include "session.h"

#include <ctype.h>
#include <dirent.h>
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "errors_str.h"
#include "errors.h"
#include "log.h"

#define SESSION_PREFIX "session_"
/* A unix socket path holds 107 bytes; clients add "/c<pid>-<seq>.sock" (at most 38) to the dir. */
#define SESSION_DIR_MAX 68
#define NO_CLUSTER_HINT "(start one with 'luray start --head')"

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* mkdir -p, the last component with mode. */
static int make_dirs(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
        return LURAY_EINVAL;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return LURAY_EIO;
        *p = '/';
    }
    if (mkdir(buf, mode) != 0 && errno != EEXIST)
        return LURAY_EIO;
    return 0;
}

int luray_session_base(char *out, size_t len)
{
    const char *env = getenv("LURAY_TMPDIR");
    const char *base = env && *env ? env : LURAY_SESSION_BASE_DEFAULT;
    if (snprintf(out, len, "%s", base) >= (int)len)
        return LURAY_EINVAL;
    /* A trailing slash would double up in every path made from the base. */
    size_t n = strlen(out);
    while (n > 1 && out[n - 1] == '/')
        out[--n] = '\0';
    if (make_dirs(out, 0700) != 0) {
        luray_log(LURAY_LOG_ERROR, "session", "cannot create %s: %s", out, strerror(errno));
        return LURAY_EIO;
    }
    struct stat st;
    if (stat(out, &st) != 0 || !S_ISDIR(st.st_mode)) {
        luray_log(LURAY_LOG_ERROR, "session", "%s is not a directory; set LURAY_TMPDIR to another",
                  out);
        return LURAY_EINVAL;
    }
    if (st.st_uid != geteuid()) {
        luray_log(LURAY_LOG_ERROR, "session",
                  "%s belongs to another user; set LURAY_TMPDIR to a directory of yours", out);
        return LURAY_EINVAL;
    }
    return 0;
}

int luray_session_create(char *dir_out, size_t len)
{
    char base[PATH_MAX], stamp[32], dir[PATH_MAX + 64];
    int rc = luray_session_base(base, sizeof(base));
    if (rc)
        return rc;
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%d_%H%M%S", &tm);
    for (int attempt = 0; attempt < 100; attempt++) {
        if (attempt == 0)
            snprintf(dir, sizeof(dir), "%s/" SESSION_PREFIX "%s_%d", base, stamp, (int)getpid());
        else
            snprintf(dir, sizeof(dir), "%s/" SESSION_PREFIX "%s_%d_%d", base, stamp,
                     (int)getpid(), attempt);
        if (strlen(dir) > SESSION_DIR_MAX) {
            luray_log(LURAY_LOG_ERROR, "session",
                      "session directory %s is too long for unix sockets; set LURAY_TMPDIR to a "
                      "shorter directory", dir);
            return LURAY_EINVAL;
        }
        if (mkdir(dir, 0700) == 0)
            break;
        if (errno != EEXIST) {
            luray_log(LURAY_LOG_ERROR, "session", "cannot create %s: %s", dir, strerror(errno));
            return LURAY_EIO;
        }
        if (attempt == 99)
            return LURAY_EEXIST;
    }
    static const char *const subdirs[] = {"spill", "logs"};
    for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
        char sub[PATH_MAX + 80];
        snprintf(sub, sizeof(sub), "%s/%s", dir, subdirs[i]);
        if (mkdir(sub, 0700) != 0) {
            luray_log(LURAY_LOG_ERROR, "session", "cannot create %s: %s", sub, strerror(errno));
            luray_session_remove(dir);
            return LURAY_EIO;
        }
    }
    if (snprintf(dir_out, len, "%s", dir) >= (int)len) {
        luray_session_remove(dir);
        return LURAY_EINVAL;
    }
    return 0;
}

/* Alive and not a zombie: a node started by a process that has not reaped it yet is dead. */
static bool pid_alive(pid_t pid)
{
    if (pid <= 0)
        return false;
    if (kill(pid, 0) != 0 && errno != EPERM)
        return false;
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return true; /* no /proc: trust kill() */
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')');
    if (paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X'))
        return false;
    return true;
}

/* Reads argv[1] of pid into out ("" when unknown); returns false when /proc cannot tell. */
static bool proc_arg1(pid_t pid, char *out, size_t len)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    FILE *f = fopen(path, "r");
    out[0] = '\0';
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    size_t first = strnlen(buf, n);
    if (first + 1 < n)
        snprintf(out, len, "%s", buf + first + 1);
    return true;
}

static bool pid_runs_this_program(pid_t pid);

/* A node.json outlives a node killed with SIGKILL; its pid may since name another process. A node
 * runs as `luray _node`, in `luray start --block` itself, or on a thread of the driver that
 * started an embedded cluster (`luray run`, the REPL): then the pid is that driver's. */
static bool pid_is_node(pid_t pid)
{
    char arg1[32];
    if (!pid_alive(pid))
        return false;
    if (!proc_arg1(pid, arg1, sizeof(arg1)))
        return true;
    return strcmp(arg1, "_node") == 0 || strcmp(arg1, "start") == 0 ||
           pid_runs_this_program(pid);
}

static int self_exe(char *out, size_t len)
{
    char buf[PATH_MAX];
    if (!realpath("/proc/self/exe", buf))
        return LURAY_EIO;
    if (snprintf(out, len, "%s", buf) >= (int)len)
        return LURAY_EINVAL;
    return 0;
}

/* True when pid runs the same luray executable as this process. */
static bool pid_runs_this_program(pid_t pid)
{
    char mine[PATH_MAX], path[64], theirs[PATH_MAX];
    snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
    if (self_exe(mine, sizeof(mine)) != 0 || !realpath(path, theirs))
        return false;
    return strcmp(mine, theirs) == 0;
}

/* The last non-empty line of a file, for errors that point at a log. */
static void last_line(const char *path, char *out, size_t len)
{
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[1024];
    while (fgets(line, sizeof(line), f)) {
        size_t n = strlen(line);
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n > 0) {
            size_t k = n < len - 1 ? n : len - 1;
            memcpy(out, line, k);
            out[k] = '\0';
        }
    }
    fclose(f);
}

/* Waits up to ms for our child pid to end; returns its wait status, or -1 when it still runs. */
static int reap_child(pid_t pid, int ms)
{
    int64_t end = now_ms() + ms;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        if (r < 0 && errno != EINTR)
            return 0;
        if (now_ms() >= end)
            return -1;
        sleep_ms(10);
    }
}

static void describe_status(int st, char *out, size_t len)
{
    if (WIFEXITED(st))
        snprintf(out, len, "exited with status %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(out, len, "was killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
    else
        snprintf(out, len, "ended");
}

/* In the child between fork and exec: only async-signal-safe calls. */
static void exec_node(char *const argv[], bool detach, int null_fd, int log_fd, int ready_fd,
                      pid_t parent)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    if (detach) {
        setsid();
        dup2(log_fd, STDOUT_FILENO);
        dup2(log_fd, STDERR_FILENO);
    } else {
        /* Its own process group: Ctrl-C in the terminal reaches the driver, which then shuts the
         * node down; the node dies with the driver in any case. */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1);
    }
    dup2(null_fd, STDIN_FILENO);
    int fl = fcntl(ready_fd, F_GETFD);
    fcntl(ready_fd, F_SETFD, fl & ~FD_CLOEXEC);
    execv(argv[0], argv);
    static const char msg[] = "luray: cannot run the node program\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof(msg) - 1);
    (void)w;
    _exit(127);
}

int luray_session_spawn_node(const luray_node_opts_t *opts, bool detach, pid_t *pid_out, char *err,
                             size_t errlen)
{
    char exe[PATH_MAX], logpath[PATH_MAX + 32];
    char cpus[64], gpus[64], mem[32], port[16], node_id[16], ready[16];
    int fds[2] = {-1, -1}, null_fd = -1, log_fd = -1;
    int rc = 0;

    if (!opts || !opts->session_dir) {
        luray_set_err(err, errlen, "no session directory for the node");
        return LURAY_EINVAL;
    }
    if (opts->exe) {
        snprintf(exe, sizeof(exe), "%s", opts->exe);
    } else if (self_exe(exe, sizeof(exe)) != 0) {
        luray_set_err(err, errlen, "cannot find the luray program (/proc/self/exe): %s", strerror(errno));
        return LURAY_EIO;
    }
    snprintf(logpath, sizeof(logpath), "%s/logs/node.log", opts->session_dir);
    if (pipe2(fds, O_CLOEXEC) != 0) {
        luray_set_err(err, errlen, "cannot make a pipe: %s", strerror(errno));
        return LURAY_EIO;
    }
    null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd < 0) {
        luray_set_err(err, errlen, "cannot open /dev/null: %s", strerror(errno));
        rc = LURAY_EIO;
        goto err_pipe;
    }
    if (detach) {
        log_fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (log_fd < 0) {
            luray_set_err(err, errlen, "cannot open %s: %s", logpath, strerror(errno));
            rc = LURAY_EIO;
            goto err_null;
        }
    }
    snprintf(cpus, sizeof(cpus), "%.17g", opts->num_cpus);
    snprintf(gpus, sizeof(gpus), "%.17g", opts->num_gpus);
    snprintf(mem, sizeof(mem), "%llu", (unsigned long long)opts->object_store_memory);
    snprintf(port, sizeof(port), "%d", opts->port);
    snprintf(node_id, sizeof(node_id), "%u", opts->node_id ? opts->node_id : 1);
    snprintf(ready, sizeof(ready), "%d", fds[1]);
    const char *argv[32];
    int a = 0;
    argv[a++] = exe;
    argv[a++] = "_node";
    argv[a++] = "--session";
    argv[a++] = opts->session_dir;
    argv[a++] = "--num-cpus";
    argv[a++] = cpus;
    argv[a++] = "--num-gpus";
    argv[a++] = gpus;
    argv[a++] = "--object-store-memory";
    argv[a++] = mem;
    if (opts->resources_json) {
        argv[a++] = "--resources";
        argv[a++] = opts->resources_json;
    }
    argv[a++] = "--port";
    argv[a++] = port;
    argv[a++] = "--host";
    argv[a++] = opts->host ? opts->host : LURAY_DEFAULT_HOST;
    argv[a++] = "--node-id";
    argv[a++] = node_id;
    argv[a++] = "--ready-fd";
    argv[a++] = ready;
    if (opts->head)
        argv[a++] = "--head";
    if (opts->join) {
        argv[a++] = "--join";
        argv[a++] = opts->join;
    }
    if (opts->token_file) {
        argv[a++] = "--token-file";
        argv[a++] = opts->token_file;
    }
    if (opts->state_dir) {
        argv[a++] = "--state-dir";
        argv[a++] = opts->state_dir;
    }
    argv[a] = NULL;

    fflush(NULL); /* or the child's exit could print the parent's buffered output twice */
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        luray_set_err(err, errlen, "cannot fork the node: %s", strerror(errno));
        rc = LURAY_EIO;
        goto err_log;
    }
    if (pid == 0)
        exec_node((char *const *)argv, detach, null_fd, log_fd, fds[1], parent);
    close(fds[1]);
    fds[1] = -1;

    char byte = 0;
    ssize_t got = -1;
    int64_t end = now_ms() + LURAY_SESSION_SPAWN_TIMEOUT_MS;
    for (;;) {
        int64_t left = end - now_ms();
        if (left <= 0)
            break;
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        int pr = poll(&pfd, 1, (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            break;
        got = read(fds[0], &byte, 1);
        if (got < 0 && errno == EINTR)
            continue;
        break;
    }
    if (got == 1 && byte != 'R')
        got = 0; /* it said it failed: wait for its exit status */
    if (got == 1) {
        if (pid_out)
            *pid_out = pid;
        rc = 0;
        goto err_log;
    }
    /* Not ready: the node died (the pipe hit EOF) or it hangs. */
    char why[128];
    int st = got == 0 ? reap_child(pid, 2000) : -1;
    if (st == -1) {
        kill(pid, SIGKILL);
        reap_child(pid, 2000);
        snprintf(why, sizeof(why), "did not start within %d s",
                 LURAY_SESSION_SPAWN_TIMEOUT_MS / 1000);
        rc = LURAY_ETIMEDOUT;
    } else {
        describe_status(st, why, sizeof(why));
        rc = LURAY_EIO;
    }
    if (detach) {
        char line[512];
        last_line(logpath, line, sizeof(line));
        luray_set_err(err, errlen, "the node %s before it was ready (see %s%s%s)", why, logpath,
                line[0] ? ": " : "", line);
    } else {
        luray_set_err(err, errlen, "the node %s before it was ready", why);
    }

err_log:
    if (log_fd >= 0)
        close(log_fd);
err_null:
    close(null_fd);
err_pipe:
    close(fds[0]);
    if (fds[1] >= 0)
        close(fds[1]);
    return rc;
}


/* Waits until none of pids is alive, reaping our own children, for up to ms. */
static bool wait_dead(const pid_t *pids, size_t n, int ms)
{
    int64_t end = now_ms() + ms;
    for (;;) {
        bool any = false;
        for (size_t i = 0; i < n; i++) {
            if (pids[i] <= 0)
                continue;
            waitpid(pids[i], NULL, WNOHANG);
            if (pid_alive(pids[i]))
                any = true;
        }
        if (!any)
            return true;
        if (now_ms() >= end)
            return false;
        sleep_ms(20);
    }
}

int luray_session_kill_node(pid_t pid, int timeout_ms)
{
    if (pid <= 0)
        return LURAY_EINVAL;
    if (kill(pid, SIGTERM) != 0 && errno == ESRCH) {
        waitpid(pid, NULL, WNOHANG);
        return 0;
    }
    if (wait_dead(&pid, 1, timeout_ms))
        return 0;
    kill(pid, SIGKILL);
    if (!wait_dead(&pid, 1, 2000))
        return LURAY_ETIMEDOUT;
    /* A killed node could not unlink its store. */
    luray_session_sweep_shm();
    return 0;
}

static char *read_small_file(const char *path, size_t max)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = malloc(max + 1);
    if (!buf) {
        fclose(f);
        return NULL;
    }
    size_t n = fread(buf, 1, max, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

int luray_session_read_node(const char *dir, luray_session_node_t *out)
{
    char path[PATH_MAX + 16];
    memset(out, 0, sizeof(*out));
    snprintf(path, sizeof(path), "%s/node.json", dir);
    char *text = read_small_file(path, 64 * 1024);
    if (!text)
        return errno == ENOENT ? LURAY_ENOENT : LURAY_EIO;
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return LURAY_EPROTO;
    }
    const cJSON *it;
    int rc = 0;
    it = cJSON_GetObjectItemCaseSensitive(j, "pid");
    if (cJSON_IsNumber(it) && it->valuedouble > 0)
        out->pid = (pid_t)it->valuedouble;
    else
        rc = LURAY_EPROTO;
    it = cJSON_GetObjectItemCaseSensitive(j, "port");
    if (cJSON_IsNumber(it))
        out->port = (int)it->valuedouble;
    else
        rc = LURAY_EPROTO;
    it = cJSON_GetObjectItemCaseSensitive(j, "node_id");
    if (cJSON_IsNumber(it))
        out->node_id = (uint32_t)it->valuedouble;
    it = cJSON_GetObjectItemCaseSensitive(j, "host");
    snprintf(out->host, sizeof(out->host), "%s",
             cJSON_IsString(it) ? it->valuestring : LURAY_DEFAULT_HOST);
    it = cJSON_GetObjectItemCaseSensitive(j, "shm");
    if (cJSON_IsString(it))
        snprintf(out->shm, sizeof(out->shm), "%s", it->valuestring);
    it = cJSON_GetObjectItemCaseSensitive(j, "object_store_memory");
    if (cJSON_IsNumber(it))
        out->object_store_memory = (uint64_t)it->valuedouble;
    it = cJSON_GetObjectItemCaseSensitive(j, "num_cpus");
    if (cJSON_IsNumber(it))
        out->num_cpus = it->valuedouble;
    cJSON_Delete(j);
    return rc;
}

bool luray_session_alive(const char *dir, luray_session_node_t *node_out)
{
    luray_session_node_t node;
    if (luray_session_read_node(dir, &node) != 0)
        return false;
    if (node_out)
        *node_out = node;
    return pid_is_node(node.pid);
}

int luray_session_set_current(const char *dir)
{
    char base[PATH_MAX], link[PATH_MAX + 32], tmp[PATH_MAX + 48];
    int rc = luray_session_base(base, sizeof(base));
    if (rc)
        return rc;
    size_t bl = strlen(base);
    /* Relative inside the base, so that the base can be moved or bind-mounted elsewhere. */
    const char *target = dir;
    if (strncmp(dir, base, bl) == 0 && dir[bl] == '/' && !strchr(dir + bl + 1, '/'))
        target = dir + bl + 1;
    snprintf(link, sizeof(link), "%s/current", base);
    snprintf(tmp, sizeof(tmp), "%s/.current.%d", base, (int)getpid());
    unlink(tmp);
    if (symlink(target, tmp) != 0)
        return LURAY_EIO;
    if (rename(tmp, link) != 0) {
        unlink(tmp);
        return LURAY_EIO;
    }
    return 0;
}

/* The session base/current names (a symlink, or a file holding the path); LURAY_ENOENT if none. */
static int read_current(const char *base, char *out, size_t len)
{
    char link[PATH_MAX + 32], target[PATH_MAX];
    snprintf(link, sizeof(link), "%s/current", base);
    ssize_t n = readlink(link, target, sizeof(target) - 1);
    if (n < 0 && errno == EINVAL) {
        char *text = read_small_file(link, sizeof(target) - 1);
        if (!text)
            return LURAY_ENOENT;
        snprintf(target, sizeof(target), "%s", text);
        free(text);
        n = (ssize_t)strcspn(target, "\r\n");
    }
    if (n <= 0)
        return LURAY_ENOENT;
    target[n] = '\0';
    int w = target[0] == '/' ? snprintf(out, len, "%s", target)
                             : snprintf(out, len, "%s/%s", base, target);
    return w >= (int)len ? LURAY_EINVAL : 0;
}

int luray_session_clear_current(const char *dir)
{
    char base[PATH_MAX], cur[PATH_MAX * 2], link[PATH_MAX + 32];
    int rc = luray_session_base(base, sizeof(base));
    if (rc)
        return rc;
    if (read_current(base, cur, sizeof(cur)) != 0 || strcmp(cur, dir) != 0)
        return 0;
    snprintf(link, sizeof(link), "%s/current", base);
    return unlink(link) == 0 || errno == ENOENT ? 0 : LURAY_EIO;
}

static bool host_is_local(const char *host, const char *node_host)
{
    if (strcmp(host, node_host) == 0 || strcmp(host, "localhost") == 0 ||
        strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 || strcmp(host, "0.0.0.0") == 0)
        return true;
    char name[256];
    if (gethostname(name, sizeof(name)) == 0) {
        name[sizeof(name) - 1] = '\0';
        if (strcmp(host, name) == 0)
            return true;
    }
    return false;
}

/* Splits "host:port" (the last ':' divides, so "[::1]:6380" and "::1:6380" work). */
int luray_session_parse_address(const char *address, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(address, ':');
    if (!colon || colon == address || !colon[1])
        return LURAY_EINVAL;
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno || *end || p <= 0 || p > 65535)
        return LURAY_EINVAL;
    size_t hl = (size_t)(colon - address);
    if (address[0] == '[' && hl >= 2 && address[hl - 1] == ']') {
        address++;
        hl -= 2;
    }
    if (hl == 0 || hl >= hostlen)
        return LURAY_EINVAL;
    memcpy(host, address, hl);
    host[hl] = '\0';
    *port = (int)p;
    return 0;
}

static bool is_session_name(const char *name)
{
    return strncmp(name, SESSION_PREFIX, strlen(SESSION_PREFIX)) == 0;
}

int luray_session_find(const char *address, char *dir_out, size_t len, char *err, size_t errlen)
{
    char base[PATH_MAX], dir[PATH_MAX * 2];
    int rc = luray_session_base(base, sizeof(base));
    if (rc) {
        luray_set_err(err, errlen, "cannot use the session directory %s (see the message above)",
                getenv("LURAY_TMPDIR") ? getenv("LURAY_TMPDIR") : LURAY_SESSION_BASE_DEFAULT);
        return rc;
    }
    if (!address || !*address || strcmp(address, "auto") == 0) {
        if (read_current(base, dir, sizeof(dir)) != 0 || !luray_session_alive(dir, NULL)) {
            luray_set_err(err, errlen, "no luray cluster is running on this machine " NO_CLUSTER_HINT);
            return LURAY_ENOENT;
        }
        if (snprintf(dir_out, len, "%s", dir) >= (int)len)
            return LURAY_EINVAL;
        return 0;
    }
    char host[256];
    int port;
    if (luray_session_parse_address(address, host, sizeof(host), &port) != 0) {
        luray_set_err(err, errlen, "bad address '%s': expected HOST:PORT, such as 127.0.0.1:%d", address,
                LURAY_DEFAULT_PORT);
        return LURAY_EINVAL;
    }
    DIR *d = opendir(base);
    if (!d) {
        luray_set_err(err, errlen, "cannot read %s: %s", base, strerror(errno));
        return LURAY_EIO;
    }
    /* Names sort by start time: of several live matches the newest wins. */
    char best[NAME_MAX + 1] = "";
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!is_session_name(e->d_name))
            continue;
        luray_session_node_t node;
        snprintf(dir, sizeof(dir), "%s/%s", base, e->d_name);
        if (!luray_session_alive(dir, &node) || node.port != port ||
            !host_is_local(host, node.host))
            continue;
        if (strcmp(e->d_name, best) > 0)
            snprintf(best, sizeof(best), "%s", e->d_name);
    }
    closedir(d);
    if (!best[0]) {
        luray_set_err(err, errlen, "no luray cluster at %s " NO_CLUSTER_HINT, address);
        return LURAY_ENOENT;
    }
    if (snprintf(dir_out, len, "%s/%s", base, best) >= (int)len)
        return LURAY_EINVAL;
    return 0;
}

/* The pid of the process that made a session: session_<date>_<time>_<pid>[_<n>]. */
static pid_t session_creator(const char *name)
{
    const char *p = name + strlen(SESSION_PREFIX);
    for (int skip = 0; skip < 2; skip++) {
        p = strchr(p, '_');
        if (!p)
            return 0;
        p++;
    }
    return (pid_t)strtol(p, NULL, 10);
}

/* Kills the workers whose node is gone: processes `<exe> _worker` with LURAY_SESSION in base. */
static int kill_orphan_workers(const char *base)
{
    char prefix[PATH_MAX + 32];
    int n = snprintf(prefix, sizeof(prefix), "LURAY_SESSION=%s/" SESSION_PREFIX, base);
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    pid_t killed[256];
    size_t nk = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        pid_t pid = (pid_t)strtol(e->d_name, NULL, 10);
        char arg1[32], path[64];
        if (pid == getpid() || !proc_arg1(pid, arg1, sizeof(arg1)) || strcmp(arg1, "_worker"))
            continue;
        snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        char var[PATH_MAX + 64];
        bool ours = false;
        size_t k = 0;
        int c;
        /* environ is NUL-separated; compare each variable's start with the prefix. */
        while ((c = fgetc(f)) != EOF) {
            if (c == '\0') {
                var[k] = '\0';
                if (k >= (size_t)n && strncmp(var, prefix, (size_t)n) == 0)
                    ours = true;
                k = 0;
            } else if (k < sizeof(var) - 1) {
                var[k++] = (char)c;
            }
        }
        fclose(f);
        if (ours && kill(pid, SIGKILL) == 0 && nk < sizeof(killed) / sizeof(killed[0]))
            killed[nk++] = pid;
    }
    closedir(d);
    wait_dead(killed, nk, 2000);
    return (int)nk;
}

void luray_session_sweep_shm(void)
{
    DIR *d = opendir("/dev/shm");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "luray-", 6) != 0 || !isdigit((unsigned char)e->d_name[6]))
            continue;
        pid_t pid = (pid_t)strtol(e->d_name + 6, NULL, 10);
        if (pid_alive(pid))
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || st.st_uid != geteuid())
            continue;
        unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

int luray_session_stop_all(int *n_stopped)
{
    char base[PATH_MAX], dir[PATH_MAX * 2];
    if (n_stopped)
        *n_stopped = 0;
    int rc = luray_session_base(base, sizeof(base));
    if (rc)
        return rc;

    /* Every node gets SIGTERM at once, so that stopping many costs one wait, not one each. */
    pid_t *pids = NULL;
    size_t npids = 0, cap = 0;
    DIR *d = opendir(base);
    if (!d)
        return LURAY_EIO;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        luray_session_node_t node;
        if (!is_session_name(e->d_name))
            continue;
        snprintf(dir, sizeof(dir), "%s/%s", base, e->d_name);
        if (!luray_session_alive(dir, &node))
            continue;
        if (npids == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            pid_t *np = realloc(pids, ncap * sizeof(*np));
            if (!np) {
                rc = LURAY_ENOMEM;
                break;
            }
            pids = np;
            cap = ncap;
        }
        pids[npids++] = node.pid;
        kill(node.pid, SIGTERM);
    }
    closedir(d);
    if (!wait_dead(pids, npids, LURAY_SESSION_STOP_TIMEOUT_MS)) {
        for (size_t i = 0; i < npids; i++)
            if (pid_alive(pids[i]))
                kill(pids[i], SIGKILL);
        if (!wait_dead(pids, npids, 2000))
            rc = LURAY_ETIMEDOUT;
    }
    free(pids);
    if (n_stopped)
        *n_stopped = (int)npids;

    kill_orphan_workers(base);

    /* A session without node.json whose maker still runs is being set up, or is an embedded
     * cluster its driver will clean: leave it. */
    d = opendir(base);
    if (!d)
        return LURAY_EIO;
    while ((e = readdir(d)) != NULL) {
        if (!is_session_name(e->d_name))
            continue;
        snprintf(dir, sizeof(dir), "%s/%s", base, e->d_name);
        if (luray_session_alive(dir, NULL))
            continue;
        luray_session_node_t node;
        bool has_json = luray_session_read_node(dir, &node) != LURAY_ENOENT;
        pid_t creator = session_creator(e->d_name);
        if (!has_json && creator != getpid() && pid_alive(creator))
            continue;
        luray_session_remove(dir);
    }
    closedir(d);

    char cur[PATH_MAX * 2], link[PATH_MAX + 32];
    struct stat st;
    snprintf(link, sizeof(link), "%s/current", base);
    if (lstat(link, &st) == 0 &&
        (read_current(base, cur, sizeof(cur)) != 0 || stat(cur, &st) != 0))
        unlink(link);

    luray_session_sweep_shm();
    return rc;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    int r = flag == FTW_DP ? rmdir(path) : unlink(path);
    return r != 0 && errno != ENOENT ? -1 : 0;
}

int luray_session_remove(const char *dir)
{
    if (!dir || !*dir || strcmp(dir, "/") == 0)
        return LURAY_EINVAL;
    struct stat st;
    if (lstat(dir, &st) != 0)
        return errno == ENOENT ? 0 : LURAY_EIO;
    if (!S_ISDIR(st.st_mode))
        return unlink(dir) == 0 ? 0 : LURAY_EIO;
    return nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : LURAY_EIO;
}

double luray_session_default_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t set;
    /* A container or taskset may allow fewer CPUs than the machine has. */
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int allowed = CPU_COUNT(&set);
        if (allowed > 0 && (n <= 0 || allowed < n))
            n = allowed;
    }
    return n > 0 ? (double)n : 1.0;
}

uint64_t luray_session_default_store_memory(void)
{
    const uint64_t min = 64ull << 20, max = 8ull << 30;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    uint64_t mem = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page / 10 * 3 : min;
    /* The store lives in /dev/shm: a container's small /dev/shm would fault (SIGBUS) long before
     * a size taken from physical memory filled up. */
    struct statvfs vfs;
    if (statvfs("/dev/shm", &vfs) == 0 && vfs.f_blocks > 0) {
        uint64_t shm = (uint64_t)vfs.f_bavail * vfs.f_frsize / 10 * 9;
        if (shm < mem)
            mem = shm;
    }
    if (mem > max)
        mem = max;
    if (mem < min)
        mem = min;
    return mem;
}

int luray_session_parse_size(const char *text, uint64_t *out)
{
    static const struct {
        const char *name;
        double mult;
    } units[] = {
        {"", 1},           {"b", 1},          {"k", 1024.0},     {"kb", 1e3},
        {"kib", 1024.0},   {"m", 1048576.0},  {"mb", 1e6},       {"mib", 1048576.0},
        {"g", 1073741824.0}, {"gb", 1e9},     {"gib", 1073741824.0},
        {"t", 1099511627776.0}, {"tb", 1e12}, {"tib", 1099511627776.0},
    };
    if (!text)
        return LURAY_EINVAL;
    while (isspace((unsigned char)*text))
        text++;
    if (!isdigit((unsigned char)*text) && *text != '.')
        return LURAY_EINVAL;
    char *end;
    /* Plain integers stay exact beyond 2^53. */
    errno = 0;
    unsigned long long whole = strtoull(text, &end, 10);
    if (!errno && *end == '\0') {
        *out = whole;
        return 0;
    }
    errno = 0;
    double v = strtod(text, &end);
    if (errno || !isfinite(v) || v < 0)
        return LURAY_EINVAL;
    while (isspace((unsigned char)*end))
        end++;
    char unit[8];
    size_t ul = strlen(end);
    if (ul >= sizeof(unit))
        return LURAY_EINVAL;
    for (size_t i = 0; i <= ul; i++)
        unit[i] = (char)tolower((unsigned char)end[i]);
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(unit, units[i].name) != 0)
            continue;
        double bytes = v * units[i].mult;
        if (bytes >= 18446744073709551615.0)
            return LURAY_EINVAL;
        /* A fraction of a byte cannot be meant: "1.5" alone is an error, "1.5KB" is 1500. */
        if (units[i].mult == 1 && bytes != floor(bytes))
            return LURAY_EINVAL;
        *out = (uint64_t)(bytes + 0.5);
        return 0;
    }
    return LURAY_EINVAL;
}

/* The address other nodes reach us at: env LURAY_NODE_IP, else the bound host, else (bound to
 * every interface) the first address of this machine that is not loopback. */
void luray_session_advertised_host(const char *host, char *out, size_t len)
{
    const char *env = getenv("LURAY_NODE_IP");
    if (env && *env) {
        snprintf(out, len, "%s", env);
        return;
    }
    snprintf(out, len, "%s", host);
    if (strcmp(host, "0.0.0.0") != 0 && strcmp(host, "*") != 0)
        return;
    struct ifaddrs *ifs = NULL;
    if (getifaddrs(&ifs) != 0)
        return;
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || (i->ifa_flags & IFF_LOOPBACK))
            continue;
        char ip[INET_ADDRSTRLEN];
        if (inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, ip, sizeof(ip))) {
            snprintf(out, len, "%s", ip);
            break;
        }
    }
    freeifaddrs(ifs);
}
