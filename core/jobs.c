/* The head's job manager (see jobs.h): drivers spawned in their own process groups, their logs,
 * stopping them, and the append-only record of job states that a restarted head replays. */
#include "jobs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "errors.h"
#include "errors_str.h"
#include "log.h"
#include "pack.h"
#include "session.h"

#define ID_PREFIX "job-"
#define ID_LEN 12 /* "job-" and 8 hex digits */
#define STOP_GRACE_MS 2000
#define RECORD_FILE "jobs.jsonl"
#define HEAD_RESTARTED "the head restarted while the job ran"

typedef enum {
    JOB_PENDING,
    JOB_RUNNING,
    JOB_SUCCEEDED,
    JOB_FAILED,
    JOB_STOPPED,
    JOB_NSTATES
} job_state_t;

static const char *const state_names[JOB_NSTATES] = {"PENDING", "RUNNING", "SUCCEEDED", "FAILED",
                                                     "STOPPED"};

typedef struct {
    luray_jobs_t *owner;
    char id[ID_LEN + 1];
    job_state_t state;
    bool has_exit;
    int exit_code;
    double start_time, end_time; /* end_time 0 until it ends */
    char *entrypoint;
    char *message;
    pid_t pid; /* the driver, which leads its own process group */
    bool stop_requested;
    uv_process_t proc;
    uv_timer_t kill_timer;
    bool proc_open, timer_open; /* initialised and not yet handed to uv_close */
} job_t;

struct luray_jobs {
    uv_loop_t *loop;
    char *state_dir, *exe, *driver_address, *token_file;
    int record_fd;
    job_t **jobs; /* in submission order */
    size_t n, cap;
    int open_handles; /* handles whose close callback has not run */
    bool closing;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)(ts.tv_nsec / 1000000) / 1000.0;
}

static bool ended(const job_t *job)
{
    return job->state != JOB_PENDING && job->state != JOB_RUNNING;
}

static bool valid_id(const char *id)
{
    if (strlen(id) != ID_LEN || strncmp(id, ID_PREFIX, 4) != 0)
        return false;
    for (int i = 4; i < ID_LEN; i++)
        if (!strchr("0123456789abcdef", id[i]))
            return false;
    return true;
}

static void job_path(const luray_jobs_t *j, const char *id, const char *leaf, char *out,
                     size_t len)
{
    snprintf(out, len, "%s/jobs/%s%s%s", j->state_dir, id, leaf ? "/" : "", leaf ? leaf : "");
}

static void set_message(job_t *job, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_message(job_t *job, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    char *copy = strdup(text);
    if (!copy)
        return;
    free(job->message);
    job->message = copy;
}

/* ---- the record: one JSON line per state change ---- */

static cJSON *status_json(const job_t *job)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "job_id", job->id);
    cJSON_AddStringToObject(o, "status", state_names[job->state]);
    if (job->has_exit)
        cJSON_AddNumberToObject(o, "exit_code", job->exit_code);
    else
        cJSON_AddNullToObject(o, "exit_code");
    cJSON_AddNumberToObject(o, "start_time", job->start_time);
    if (job->end_time > 0)
        cJSON_AddNumberToObject(o, "end_time", job->end_time);
    else
        cJSON_AddNullToObject(o, "end_time");
    cJSON_AddStringToObject(o, "entrypoint", job->entrypoint ? job->entrypoint : "");
    cJSON_AddStringToObject(o, "message", job->message ? job->message : "");
    return o;
}

/* Appends the job's state to jobs.jsonl with one write, and syncs it. */
static void record(luray_jobs_t *j, const job_t *job)
{
    cJSON *o = status_json(job);
    if (o && job->pid > 0)
        cJSON_AddNumberToObject(o, "pid", job->pid);
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    size_t n = text ? strlen(text) : 0;
    char *line = text ? realloc(text, n + 2) : NULL;
    if (!line) {
        free(text);
        luray_log(LURAY_LOG_ERROR, "jobs", "out of memory recording job %s", job->id);
        return;
    }
    line[n] = '\n';
    if (j->record_fd < 0 || write(j->record_fd, line, n + 1) != (ssize_t)(n + 1) ||
        fsync(j->record_fd) != 0)
        luray_log(LURAY_LOG_ERROR, "jobs", "cannot record job %s in %s/" RECORD_FILE ": %s",
                  job->id, j->state_dir, strerror(errno));
    free(line);
}

static job_t *find_job(const luray_jobs_t *j, const char *id)
{
    for (size_t i = 0; i < j->n; i++)
        if (strcmp(j->jobs[i]->id, id) == 0)
            return j->jobs[i];
    return NULL;
}

static job_t *add_job(luray_jobs_t *j, const char *id, const char *entrypoint)
{
    if (j->n == j->cap) {
        size_t cap = j->cap ? j->cap * 2 : 16;
        job_t **nj = realloc(j->jobs, cap * sizeof(*nj));
        if (!nj)
            return NULL;
        j->jobs = nj;
        j->cap = cap;
    }
    job_t *job = calloc(1, sizeof(*job));
    if (!job)
        return NULL;
    job->entrypoint = strdup(entrypoint);
    if (!job->entrypoint) {
        free(job);
        return NULL;
    }
    job->owner = j;
    snprintf(job->id, sizeof(job->id), "%s", id);
    j->jobs[j->n++] = job;
    return job;
}

static int parse_state(const char *name)
{
    for (int i = 0; i < JOB_NSTATES; i++)
        if (strcmp(name, state_names[i]) == 0)
            return i;
    return -1;
}

static double number_or(const cJSON *o, const char *key, double dflt)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(it) ? it->valuedouble : dflt;
}

/* Applies one line of jobs.jsonl; false when it is garbled. */
static bool apply_line(luray_jobs_t *j, const char *line, size_t len)
{
    cJSON *o = cJSON_ParseWithLength(line, len);
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "job_id"));
    const char *st = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "status"));
    const char *entry = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "entrypoint"));
    const char *msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "message"));
    int state = st ? parse_state(st) : -1;
    if (!id || !valid_id(id) || state < 0 || !entry) {
        cJSON_Delete(o);
        return false;
    }
    job_t *job = find_job(j, id);
    if (!job)
        job = add_job(j, id, entry);
    if (job) {
        job->state = (job_state_t)state;
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(o, "exit_code");
        job->has_exit = cJSON_IsNumber(code);
        job->exit_code = job->has_exit ? code->valueint : 0;
        job->start_time = number_or(o, "start_time", 0);
        job->end_time = number_or(o, "end_time", 0);
        job->pid = (pid_t)number_or(o, "pid", 0);
        set_message(job, "%s", msg ? msg : "");
    }
    cJSON_Delete(o);
    return true;
}

static char *read_all(int fd, size_t *len)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return NULL;
    char *buf = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (buf && got < (size_t)st.st_size) {
        ssize_t r = pread(fd, buf + got, (size_t)st.st_size - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (buf)
        buf[got] = '\0';
    *len = got;
    return buf;
}

/* Replays jobs.jsonl; a torn last line (a head that died mid-write) is cut off the file so that
 * the next record starts on a line of its own. */
static int replay(luray_jobs_t *j, char *err, size_t errlen)
{
    size_t len = 0, start = 0;
    int lineno = 0;
    char *text = read_all(j->record_fd, &len);
    if (!text) {
        luray_set_err(err, errlen, "cannot read %s/" RECORD_FILE ": %s", j->state_dir,
                strerror(errno));
        return LURAY_EIO;
    }
    while (start < len) {
        char *nl = memchr(text + start, '\n', len - start);
        lineno++;
        if (!nl) {
            luray_log(LURAY_LOG_WARN, "jobs", "%s/" RECORD_FILE " ends in a torn line (%zu "
                      "bytes); skipped", j->state_dir, len - start);
            if (ftruncate(j->record_fd, (off_t)start) != 0)
                luray_log(LURAY_LOG_WARN, "jobs", "cannot cut the torn line: %s",
                          strerror(errno));
            break;
        }
        size_t n = (size_t)(nl - (text + start));
        if (n > 0 && !apply_line(j, text + start, n))
            luray_log(LURAY_LOG_WARN, "jobs", "%s/" RECORD_FILE " line %d is garbled; skipped",
                      j->state_dir, lineno);
        start += n + 1;
    }
    free(text);
    return 0;
}

/* ---- handles ---- */

static void jobs_free(luray_jobs_t *j)
{
    for (size_t i = 0; i < j->n; i++) {
        free(j->jobs[i]->entrypoint);
        free(j->jobs[i]->message);
        free(j->jobs[i]);
    }
    free(j->jobs);
    free(j->state_dir);
    free(j->exe);
    free(j->driver_address);
    free(j->token_file);
    free(j);
}

static void on_handle_closed(uv_handle_t *h)
{
    job_t *job = h->data;
    luray_jobs_t *j = job->owner;
    if (--j->open_handles == 0 && j->closing)
        jobs_free(j);
}

static void close_proc(job_t *job)
{
    if (!job->proc_open)
        return;
    job->proc_open = false;
    uv_close((uv_handle_t *)&job->proc, on_handle_closed);
}

static void close_timer(job_t *job)
{
    if (!job->timer_open)
        return;
    job->timer_open = false;
    uv_close((uv_handle_t *)&job->kill_timer, on_handle_closed);
}

static void on_kill_timer(uv_timer_t *t)
{
    job_t *job = t->data;
    if (job->pid > 0 && kill(-job->pid, SIGKILL) == 0)
        luray_log(LURAY_LOG_INFO, "jobs", "%s: SIGKILL to the driver's process group %d",
                  job->id, (int)job->pid);
    close_timer(job);
}

/* SIGTERM to the driver's group now, SIGKILL a while later. */
static void terminate_group(luray_jobs_t *j, job_t *job)
{
    if (job->pid <= 0)
        return;
    kill(-job->pid, SIGTERM);
    if (job->timer_open || uv_timer_init(j->loop, &job->kill_timer) != 0)
        return;
    job->kill_timer.data = job;
    job->timer_open = true;
    j->open_handles++;
    uv_timer_start(&job->kill_timer, on_kill_timer, LURAY_JOBS_KILL_AFTER_MS, 0);
}

/* ---- running drivers ---- */

static void on_driver_exit(uv_process_t *p, int64_t status, int sig)
{
    job_t *job = p->data;
    job->end_time = now_s();
    job->has_exit = true;
    job->exit_code = sig ? 128 + sig : (int)status;
    if (job->stop_requested) {
        /* What the driver started and left behind goes with it. */
        kill(-job->pid, SIGKILL);
        close_timer(job);
        job->state = JOB_STOPPED;
        set_message(job, "stopped by request");
    } else if (sig) {
        job->state = JOB_FAILED;
        set_message(job, "the driver was killed by signal %d (%s)", sig, strsignal(sig));
    } else if (status != 0) {
        job->state = JOB_FAILED;
        set_message(job, "the driver exited with status %d", (int)status);
    } else {
        job->state = JOB_SUCCEEDED;
        set_message(job, "finished");
    }
    record(job->owner, job);
    close_proc(job);
}

/* Whether the head's variable entry gives way to one the driver gets instead. */
static bool overridden(const luray_jobs_t *j, const char *entry, const cJSON *env_vars)
{
    const char *eq = strchr(entry, '=');
    size_t n = eq ? (size_t)(eq - entry) : strlen(entry);
    if ((n == 12 && strncmp(entry, "LURAY_JOB_ID", n) == 0) ||
        (j->token_file && n == 16 && strncmp(entry, "LURAY_TOKEN_FILE", n) == 0))
        return true;
    const cJSON *v;
    cJSON_ArrayForEach(v, env_vars)
        if (strlen(v->string) == n && strncmp(entry, v->string, n) == 0)
            return true;
    return false;
}

static void free_strv(char **v)
{
    if (!v)
        return;
    for (size_t i = 0; v[i]; i++)
        free(v[i]);
    free(v);
}

static char *join_var(const char *name, const char *value)
{
    size_t n = strlen(name), m = strlen(value);
    char *s = malloc(n + m + 2);
    if (s) {
        memcpy(s, name, n);
        s[n] = '=';
        memcpy(s + n + 1, value, m + 1);
    }
    return s;
}

/* The head's environment, then env_vars, LURAY_JOB_ID and LURAY_TOKEN_FILE; every string
 * malloc'd (free_strv). */
static char **build_env(const luray_jobs_t *j, const job_t *job, const cJSON *env_vars)
{
    extern char **environ;
    size_t n = 0, k = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + (size_t)cJSON_GetArraySize(env_vars) + 4, sizeof(char *));
    if (!env)
        return NULL;
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++)
        if (!overridden(j, environ[i], env_vars))
            ok = (env[k++] = strdup(environ[i])) != NULL;
    const cJSON *v;
    cJSON_ArrayForEach(v, env_vars)
        if (ok)
            ok = (env[k++] = join_var(v->string, v->valuestring)) != NULL;
    if (ok)
        ok = (env[k++] = join_var("LURAY_JOB_ID", job->id)) != NULL;
    if (ok && cJSON_GetArraySize(env_vars) > 0) {
        /* The driver's luray.init passes them on to its tasks (runtime_env.env_vars). */
        char *json = cJSON_PrintUnformatted(env_vars);
        ok = json && (env[k++] = join_var("LURAY_JOB_ENV_VARS", json)) != NULL;
        free(json);
    }
    if (ok && j->token_file)
        ok = (env[k++] = join_var("LURAY_TOKEN_FILE", j->token_file)) != NULL;
    if (!ok) {
        free_strv(env);
        return NULL;
    }
    return env;
}

/* True when the job came with files: its tasks need them on every node too. */
static bool dir_has_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    struct dirent *e;
    bool any = false;
    while (!any && (e = readdir(d)))
        any = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return any;
}

/* `exe run --address ADDR [--working-dir WD] ENTRYPOINT ARGS...`; the strings are borrowed. */
static char **build_argv(const luray_jobs_t *j, const job_t *job, const cJSON *args,
                         const char *wd)
{
    size_t n = (size_t)cJSON_GetArraySize(args), k = 0;
    char **argv = calloc(n + 8, sizeof(char *));
    if (!argv)
        return NULL;
    argv[k++] = j->exe;
    argv[k++] = "run";
    argv[k++] = "--address";
    argv[k++] = j->driver_address;
    if (dir_has_files(wd)) {
        /* shipped to every node the job's tasks run on (runtime_env.working_dir) */
        argv[k++] = "--working-dir";
        argv[k++] = (char *)wd;
    }
    argv[k++] = job->entrypoint;
    const cJSON *a;
    cJSON_ArrayForEach(a, args)
        argv[k++] = a->valuestring;
    return argv;
}

/* Starts the driver; the job is RUNNING after, or FAILED with the reason. */
static void spawn_driver(luray_jobs_t *j, job_t *job, const cJSON *args, const cJSON *env_vars)
{
    char wd[PATH_MAX], logpath[PATH_MAX];
    job_path(j, job->id, "wd", wd, sizeof(wd));
    job_path(j, job->id, "driver.log", logpath, sizeof(logpath));
    char **argv = build_argv(j, job, args, wd);
    char **env = build_env(j, job, env_vars);
    int logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    int rc = 0;
    if (!argv || !env) {
        set_message(job, "cannot start the driver: out of memory");
        goto out;
    }
    if (logfd < 0) {
        set_message(job, "cannot create %s: %s", logpath, strerror(errno));
        goto out;
    }
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_INHERIT_FD, .data.fd = logfd},
        {.flags = UV_INHERIT_FD, .data.fd = logfd},
    };
    /* Detached: its own session and process group, so that stopping it reaches everything it
     * started, and a Ctrl-C meant for the head does not. */
    uv_process_options_t po = {
        .exit_cb = on_driver_exit,
        .file = j->exe,
        .args = argv,
        .env = env,
        .cwd = wd,
        .flags = UV_PROCESS_DETACHED,
        .stdio_count = 3,
        .stdio = stdio,
    };
    job->proc.data = job;
    rc = uv_spawn(j->loop, &job->proc, &po);
    job->proc_open = true;
    j->open_handles++;
    if (rc != 0) {
        set_message(job, "cannot start the driver %s: %s", j->exe, uv_strerror(rc));
        close_proc(job);
        goto out;
    }
    job->pid = job->proc.pid;
    job->state = JOB_RUNNING;
    set_message(job, "running");
out:
    if (job->state != JOB_RUNNING) {
        job->state = JOB_FAILED;
        job->end_time = now_s();
    }
    if (logfd >= 0)
        close(logfd);
    free_strv(env);
    free(argv);
}

/* ---- ops ---- */

static cJSON *reply_ok(const char *id)
{
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddTrueToObject(o, "ok");
        if (id)
            cJSON_AddStringToObject(o, "job_id", id);
    }
    return o;
}

/* The request's args and env_vars, checked; an error reply when they are wrong. */
static cJSON *check_submit(const cJSON *req, const char **entry, const cJSON **args,
                           const cJSON **env_vars)
{
    *entry = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req, "entrypoint"));
    *args = cJSON_GetObjectItemCaseSensitive(req, "args");
    *env_vars = cJSON_GetObjectItemCaseSensitive(req, "env_vars");
    if (!*entry || !**entry)
        return luray_ctl_error("job_submit needs an entrypoint (the script to run)");
    if (*args && !cJSON_IsNull(*args)) {
        const cJSON *a;
        if (!cJSON_IsArray(*args))
            return luray_ctl_error("job_submit: args must be a list of strings");
        cJSON_ArrayForEach(a, *args)
            if (!cJSON_IsString(a))
                return luray_ctl_error("job_submit: args must be a list of strings");
    } else {
        *args = NULL;
    }
    if (*env_vars && !cJSON_IsNull(*env_vars)) {
        const cJSON *v;
        if (!cJSON_IsObject(*env_vars))
            return luray_ctl_error("job_submit: env_vars must map names to strings");
        cJSON_ArrayForEach(v, *env_vars) {
            if (!cJSON_IsString(v))
                return luray_ctl_error("job_submit: env_vars.%s is not a string", v->string);
            if (!*v->string || strchr(v->string, '='))
                return luray_ctl_error("job_submit: '%s' is not an environment variable name",
                                       v->string);
        }
    } else {
        *env_vars = NULL;
    }
    return NULL;
}

static void new_id(luray_jobs_t *j, char id[ID_LEN + 1])
{
    char dir[PATH_MAX];
    struct stat st;
    do {
        snprintf(id, ID_LEN + 1, ID_PREFIX "%08x", (unsigned)randombytes_random());
        job_path(j, id, NULL, dir, sizeof(dir));
    } while (find_job(j, id) || lstat(dir, &st) == 0);
}

/* Makes jobs/<id>/wd from the packed bytes (or empty), and checks the entrypoint against it. */
static cJSON *prepare_wd(luray_jobs_t *j, const char *id, const char *entry,
                         const luray_ctl_bytes_t *bytes)
{
    char dir[PATH_MAX], wd[PATH_MAX], why[1024];
    job_path(j, id, NULL, dir, sizeof(dir));
    job_path(j, id, "wd", wd, sizeof(wd));
    if (mkdir(dir, 0700) != 0)
        return luray_ctl_error("cannot create %s: %s", dir, strerror(errno));
    cJSON *fail = NULL;
    if (bytes->len > 0) {
        char path[PATH_MAX * 2];
        snprintf(path, sizeof(path), "%s/%s", wd, entry);
        if (luray_pack_unpack(bytes->data, bytes->len, wd, why, sizeof(why)) != 0)
            fail = luray_ctl_error("the working dir did not unpack: %s", why);
        else if (entry[0] != '/' && access(path, R_OK) != 0)
            fail = luray_ctl_error("the working dir has no %s", entry);
    } else if (entry[0] != '/') {
        fail = luray_ctl_error("the entrypoint %s is relative, but no working dir came with it: "
                               "send one, or give a path the head can read", entry);
    } else if (mkdir(wd, 0700) != 0) {
        fail = luray_ctl_error("cannot create %s: %s", wd, strerror(errno));
    }
    if (!fail && entry[0] == '/' && access(entry, R_OK) != 0)
        fail = luray_ctl_error("the head cannot read %s: %s", entry, strerror(errno));
    if (fail)
        luray_session_remove(dir);
    return fail;
}

static cJSON *op_submit(luray_jobs_t *j, const cJSON *req, const luray_ctl_bytes_t *bytes)
{
    const char *entry = NULL;
    const cJSON *args = NULL, *env_vars = NULL;
    char id[ID_LEN + 1];
    cJSON *fail = check_submit(req, &entry, &args, &env_vars);
    if (fail)
        return fail;
    new_id(j, id);
    fail = prepare_wd(j, id, entry, bytes);
    if (fail)
        return fail;
    job_t *job = add_job(j, id, entry);
    if (!job) {
        char dir[PATH_MAX];
        job_path(j, id, NULL, dir, sizeof(dir));
        luray_session_remove(dir);
        return luray_ctl_error("out of memory");
    }
    job->start_time = now_s();
    spawn_driver(j, job, args, env_vars);
    record(j, job);
    luray_log(LURAY_LOG_INFO, "jobs", "%s: %s (%s)", id, state_names[job->state], job->message);
    return reply_ok(id);
}

static cJSON *op_status(const job_t *job)
{
    cJSON *o = status_json(job);
    if (o)
        cJSON_AddTrueToObject(o, "ok");
    return o;
}

static cJSON *op_logs(luray_jobs_t *j, const job_t *job, const cJSON *req,
                      luray_ctl_bytes_t *bytes)
{
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(req, "offset");
    if (off && (!cJSON_IsNumber(off) || off->valuedouble < 0))
        return luray_ctl_error("job_logs: offset must be a number >= 0");
    uint64_t offset = off ? (uint64_t)off->valuedouble : 0;
    bool finished = ended(job); /* before reading: bytes written before the end are all seen */
    char path[PATH_MAX];
    job_path(j, job->id, "driver.log", path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st = {0};
    if (fd < 0 && errno != ENOENT)
        return luray_ctl_error("cannot read %s: %s", path, strerror(errno));
    if (fd >= 0 && fstat(fd, &st) != 0)
        st.st_size = 0;
    uint64_t size = (uint64_t)st.st_size, n = 0;
    if (offset > size)
        offset = size;
    n = size - offset < LURAY_JOBS_LOG_CHUNK ? size - offset : LURAY_JOBS_LOG_CHUNK;
    uint8_t *data = n ? malloc((size_t)n) : NULL;
    ssize_t got = data ? pread(fd, data, (size_t)n, (off_t)offset) : 0;
    if (fd >= 0)
        close(fd);
    if (got < 0 || (n && !data)) {
        free(data);
        return luray_ctl_error("cannot read %s: %s", path, data ? strerror(errno) : "no memory");
    }
    cJSON *o = reply_ok(job->id);
    cJSON_AddNumberToObject(o, "next_offset", (double)(offset + (uint64_t)got));
    cJSON_AddBoolToObject(o, "done", finished && offset + (uint64_t)got >= size);
    bytes->reply_data = data;
    bytes->reply_len = (size_t)got;
    return o;
}

static cJSON *op_stop(luray_jobs_t *j, job_t *job)
{
    cJSON *o = reply_ok(job->id);
    bool running = job->state == JOB_RUNNING && job->proc_open;
    cJSON_AddBoolToObject(o, "stopped", running);
    cJSON_AddStringToObject(o, "status", state_names[job->state]);
    if (!running)
        return o;
    job->stop_requested = true;
    set_message(job, "stopping");
    terminate_group(j, job);
    luray_log(LURAY_LOG_INFO, "jobs", "%s: stopping (SIGTERM to process group %d)", job->id,
              (int)job->pid);
    return o;
}

static cJSON *op_list(const luray_jobs_t *j)
{
    cJSON *o = reply_ok(NULL);
    cJSON *arr = cJSON_AddArrayToObject(o, "jobs");
    for (size_t i = 0; arr && i < j->n; i++)
        cJSON_AddItemToArray(arr, status_json(j->jobs[i]));
    return o;
}

cJSON *luray_jobs_handle(luray_jobs_t *j, const cJSON *req, luray_ctl_bytes_t *bytes)
{
    const char *op = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req, "op"));
    if (!op || strncmp(op, "job_", 4) != 0)
        return NULL;
    if (strcmp(op, "job_submit") == 0)
        return op_submit(j, req, bytes);
    if (strcmp(op, "job_list") == 0)
        return op_list(j);
    bool known = strcmp(op, "job_status") == 0 || strcmp(op, "job_logs") == 0 ||
                 strcmp(op, "job_stop") == 0;
    if (!known)
        return NULL;
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req, "job_id"));
    if (!id)
        return luray_ctl_error("%s needs a job_id", op);
    job_t *job = find_job(j, id);
    if (!job)
        return luray_ctl_error("no job %s", id);
    if (strcmp(op, "job_status") == 0)
        return op_status(job);
    if (strcmp(op, "job_logs") == 0)
        return op_logs(j, job, req, bytes);
    return op_stop(j, job);
}

/* ---- open and close ---- */

/* A driver of ours still running under pid: its environment names the job. */
static bool driver_alive(const job_t *job)
{
    char path[64], want[32];
    snprintf(path, sizeof(path), "/proc/%d/environ", (int)job->pid);
    int wn = snprintf(want, sizeof(want), "LURAY_JOB_ID=%s", job->id);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char var[64];
    size_t k = 0;
    bool found = false;
    int c;
    while (!found && (c = fgetc(f)) != EOF) {
        if (c != '\0') {
            if (k < sizeof(var) - 1)
                var[k++] = (char)c;
            continue;
        }
        found = k == (size_t)wn && memcmp(var, want, k) == 0;
        k = 0;
    }
    fclose(f);
    return found;
}

/* Jobs the record shows running belong to a head that is gone. */
static void fail_orphans(luray_jobs_t *j)
{
    for (size_t i = 0; i < j->n; i++) {
        job_t *job = j->jobs[i];
        if (ended(job))
            continue;
        if (job->pid > 0 && driver_alive(job)) {
            luray_log(LURAY_LOG_WARN, "jobs", "%s: its driver (pid %d) outlived the head; "
                      "ending it", job->id, (int)job->pid);
            terminate_group(j, job);
        }
        job->state = JOB_FAILED;
        job->end_time = now_s();
        set_message(job, HEAD_RESTARTED);
        record(j, job);
    }
}

static int make_dir(const char *path, char *err, size_t errlen)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf)) {
        luray_set_err(err, errlen, "path too long: %s", path);
        return LURAY_EINVAL;
    }
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            goto fail;
        *p = '/';
    }
    if (mkdir(buf, 0700) != 0 && errno != EEXIST)
        goto fail;
    return 0;
fail:
    luray_set_err(err, errlen, "cannot create %s: %s", buf, strerror(errno));
    return LURAY_EIO;
}

static int copy_opts(luray_jobs_t *j, const luray_jobs_opts_t *opts)
{
    j->state_dir = strdup(opts->state_dir);
    j->exe = strdup(opts->exe);
    j->driver_address = strdup(opts->driver_address);
    j->token_file = opts->token_file ? strdup(opts->token_file) : NULL;
    if (!j->state_dir || !j->exe || !j->driver_address || (opts->token_file && !j->token_file))
        return LURAY_ENOMEM;
    return 0;
}

int luray_jobs_open(uv_loop_t *loop, const luray_jobs_opts_t *opts, luray_jobs_t **out,
                    char *err, size_t errlen)
{
    char path[PATH_MAX];
    int rc;
    if (!opts || !opts->state_dir || !opts->exe || !opts->driver_address) {
        luray_set_err(err, errlen, "the job manager needs a state dir, the luray program and the "
                "drivers' address");
        return LURAY_EINVAL;
    }
    if (sodium_init() < 0) {
        luray_set_err(err, errlen, "libsodium failed to initialise");
        return LURAY_EIO;
    }
    luray_jobs_t *j = calloc(1, sizeof(*j));
    if (!j) {
        luray_set_err(err, errlen, "out of memory");
        return LURAY_ENOMEM;
    }
    j->loop = loop;
    j->record_fd = -1;
    if ((rc = copy_opts(j, opts)) != 0) {
        luray_set_err(err, errlen, "out of memory");
        goto err_free;
    }
    snprintf(path, sizeof(path), "%s/jobs", j->state_dir);
    if ((rc = make_dir(path, err, errlen)) != 0)
        goto err_free;
    snprintf(path, sizeof(path), "%s/" RECORD_FILE, j->state_dir);
    j->record_fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (j->record_fd < 0) {
        luray_set_err(err, errlen, "cannot open %s: %s", path, strerror(errno));
        rc = LURAY_EIO;
        goto err_free;
    }
    if ((rc = replay(j, err, errlen)) != 0)
        goto err_close;
    fail_orphans(j);
    *out = j;
    return 0;

err_close:
    close(j->record_fd);
err_free:
    jobs_free(j);
    return rc;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until deadline (mono_ms) for pid (our child, its handle closed) to end; its wait
 * status, or -1 when it still runs or cannot be waited for. */
static int reap(pid_t pid, int64_t deadline)
{
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        if ((r < 0 && errno != EINTR) || mono_ms() >= deadline)
            return -1;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* SIGTERM to every running driver's group, a grace period, then SIGKILL to what is left. */
static void stop_running(luray_jobs_t *j)
{
    bool any = false;
    for (size_t i = 0; i < j->n; i++) {
        job_t *job = j->jobs[i];
        if (job->state != JOB_RUNNING || !job->proc_open)
            continue;
        kill(-job->pid, SIGTERM);
        /* Closed, the handle leaves libuv's child list: the waitpid below is ours alone. */
        close_proc(job);
        any = true;
    }
    int64_t deadline = mono_ms() + (any ? STOP_GRACE_MS : 0);
    for (size_t i = 0; i < j->n; i++) {
        job_t *job = j->jobs[i];
        if (job->state != JOB_RUNNING)
            continue;
        int st = reap(job->pid, deadline);
        kill(-job->pid, SIGKILL);
        if (st < 0)
            st = reap(job->pid, mono_ms() + 2000);
        job->state = JOB_STOPPED;
        job->end_time = now_s();
        job->has_exit = st >= 0;
        job->exit_code = st < 0 ? 0 : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
        set_message(job, "cluster stopped");
        record(j, job);
    }
}

void luray_jobs_close(luray_jobs_t *j)
{
    if (!j || j->closing)
        return;
    j->closing = true;
    stop_running(j);
    for (size_t i = 0; i < j->n; i++)
        close_timer(j->jobs[i]);
    if (j->record_fd >= 0)
        close(j->record_fd);
    j->record_fd = -1;
    if (j->open_handles == 0)
        jobs_free(j);
}
