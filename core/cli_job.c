/* `luray job submit|status|logs|stop|list` (see cli_job.h). */
#include "cli_job.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "auth.h"
#include "ctl.h"
#include "jobs.h"
#include "pack.h"

#define EXIT_USAGE 2
#define SHOW_HELP 3 /* parse_args' answer to --help */
#define CALL_TIMEOUT_MS 10000
/* A submit carries the packed working dir, which the head unpacks before it answers. */
#define SUBMIT_TIMEOUT_MS 120000
#define POLL_MS 250
/* How long `job stop` waits to see the job end (the SIGKILL comes LURAY_JOBS_KILL_AFTER_MS after
 * the SIGTERM). */
#define STOP_WAIT_MS (LURAY_JOBS_KILL_AFTER_MS + 5000)

static const char usage_job[] =
    "usage: luray job COMMAND [OPTIONS]\n"
    "\n"
    "Runs drivers on a cluster's head: the head starts `luray run SCRIPT` for you, keeps its\n"
    "output and its exit status, and can stop it.\n"
    "\n"
    "commands:\n"
    "  submit [OPTIONS] [--] SCRIPT.lua [ARGS...]\n"
    "                              starts SCRIPT on the head, then prints its output until it\n"
    "                              ends; exits 0 when the job SUCCEEDED, 1 otherwise\n"
    "  status ID [--json]          a job's state, times, exit code and message\n"
    "  logs ID [--follow]          a job's output (--follow: until the job ends)\n"
    "  stop ID                     stops a job: SIGTERM to its processes, SIGKILL 5 s later\n"
    "  list [--json]               the head's jobs\n"
    "\n"
    "options of submit:\n"
    "  --working-dir DIR           packs DIR (at most 512 MiB, without .git) and runs the job in\n"
    "                              it: SCRIPT is a path inside DIR and require finds modules\n"
    "                              there; without it, SCRIPT must be readable on the head\n"
    "  --env NAME=VALUE            an environment variable for the job (repeatable)\n"
    "  --no-wait                   prints the job's id and returns\n"
    "\n"
    "options of every command:\n"
    "  --address HOST:PORT         the head (default: env LURAY_ADDRESS, else this machine's)\n"
    "  --token-file FILE           the cluster key (default: env LURAY_TOKEN_FILE, else\n"
    "                              $LURAY_TMPDIR/cluster-PORT/token, which the head writes)\n";

typedef struct {
    const char *cmd; /* "submit", "status"... */
    const char *address, *token_file, *working_dir;
    bool no_wait, json, follow;
    cJSON *env; /* --env NAME=VALUE, as env_vars */
    const char *id;
    int script; /* submit: argv index of SCRIPT; its ARGS follow */
} job_opts_t;

typedef struct {
    const char *cmd;
    luray_ctl_client_t *client;
} conn_t;

static int fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "luray job %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

static int usage_error(const char *cmd, const char *what)
{
    fprintf(stderr, "luray job%s%s: %s (see 'luray job --help')\n", cmd ? " " : "",
            cmd ? cmd : "", what);
    return EXIT_USAGE;
}

static bool is_help(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

/* "--name VALUE" or "--name=VALUE"; false when argv[*i] is not --name. */
static bool opt_value(int argc, char **argv, int *i, const char *name, const char **value)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return false;
    if (argv[*i][n] == '=') {
        *value = argv[*i] + n + 1;
        return true;
    }
    if (argv[*i][n] != '\0')
        return false;
    *value = *i + 1 < argc ? argv[++*i] : NULL;
    return true;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- options ---- */

static int add_env(job_opts_t *o, const char *kv)
{
    const char *eq = kv ? strchr(kv, '=') : NULL;
    if (!eq || eq == kv)
        return usage_error(o->cmd, "--env needs NAME=VALUE");
    char name[256];
    if ((size_t)(eq - kv) >= sizeof(name))
        return usage_error(o->cmd, "--env: the name is too long");
    memcpy(name, kv, (size_t)(eq - kv));
    name[eq - kv] = '\0';
    if (!o->env && !(o->env = cJSON_CreateObject()))
        return fail(o->cmd, "out of memory");
    cJSON_DeleteItemFromObjectCaseSensitive(o->env, name);
    if (!cJSON_AddStringToObject(o->env, name, eq + 1))
        return fail(o->cmd, "out of memory");
    return 0;
}

/* One option at argv[*i]: 0, -1 when it is not an option of this command, SHOW_HELP, or the
 * exit status after an error. */
static int parse_opt(job_opts_t *o, int argc, char **argv, int *i)
{
    const char *v = NULL;
    bool submit = strcmp(o->cmd, "submit") == 0;
    if (is_help(argv[*i])) {
        return SHOW_HELP;
    } else if (opt_value(argc, argv, i, "--address", &v)) {
        if (!v || !*v)
            return usage_error(o->cmd, "--address needs HOST:PORT");
        o->address = v;
    } else if (opt_value(argc, argv, i, "--token-file", &v)) {
        if (!v || !*v)
            return usage_error(o->cmd, "--token-file needs a file");
        o->token_file = v;
    } else if (submit && opt_value(argc, argv, i, "--working-dir", &v)) {
        if (!v || !*v)
            return usage_error(o->cmd, "--working-dir needs a folder");
        o->working_dir = v;
    } else if (submit && opt_value(argc, argv, i, "--env", &v)) {
        return add_env(o, v);
    } else if (submit && strcmp(argv[*i], "--no-wait") == 0) {
        o->no_wait = true;
    } else if (!submit && strcmp(argv[*i], "--json") == 0 &&
               (strcmp(o->cmd, "status") == 0 || strcmp(o->cmd, "list") == 0)) {
        o->json = true;
    } else if (strcmp(o->cmd, "logs") == 0 && strcmp(argv[*i], "--follow") == 0) {
        o->follow = true;
    } else {
        return -1;
    }
    return 0;
}

static int parse_args(job_opts_t *o, int argc, char **argv)
{
    bool submit = strcmp(o->cmd, "submit") == 0, wants_id = !submit && strcmp(o->cmd, "list");
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i];
        if (submit && (strcmp(a, "--") == 0 || a[0] != '-' || a[1] == '\0')) {
            o->script = strcmp(a, "--") == 0 ? i + 1 : i;
            break;
        }
        if (a[0] == '-' && a[1] != '\0') {
            int rc = parse_opt(o, argc, argv, &i);
            if (rc > 0)
                return rc; /* SHOW_HELP too: the rest does not matter */
            if (rc < 0) {
                char what[300];
                snprintf(what, sizeof(what), "unknown option %s", a);
                return usage_error(o->cmd, what);
            }
        } else if (wants_id && !o->id) {
            o->id = a;
        } else {
            char what[300];
            snprintf(what, sizeof(what), "unexpected argument '%s'", a);
            return usage_error(o->cmd, what);
        }
    }
    if (submit && (o->script == 0 || o->script >= argc))
        return usage_error(o->cmd, "needs the script to run: luray job submit [OPTIONS] -- "
                                   "SCRIPT.lua [ARGS]");
    if (wants_id && !o->id)
        return usage_error(o->cmd, "needs a job id (see 'luray job list')");
    return 0;
}

/* ---- talking to the head ---- */

static int conn_open(conn_t *c, const job_opts_t *o)
{
    char ctl[600], token[PATH_MAX], err[1024];
    uint8_t key[LURAY_KEY_BYTES];
    c->cmd = o->cmd;
    c->client = NULL;
    if (luray_ctl_resolve(o->address, o->token_file, ctl, sizeof(ctl), token, sizeof(token), err,
                          sizeof(err)) != 0)
        return fail(o->cmd, "%s", err);
    if (luray_key_load(token, key, err, sizeof(err)) != 0)
        return fail(o->cmd, "%s", err);
    int rc = luray_ctl_client_new(ctl, key, &c->client, err, sizeof(err));
    sodium_memzero(key, sizeof(key));
    if (rc)
        return fail(o->cmd, "%s", err);
    return 0;
}

/* Sends req (deleted here); returns the reply of an ok request, or NULL after saying why. */
static cJSON *conn_call(conn_t *c, cJSON *req, const uint8_t *data, size_t len, uint8_t **rdata,
                        size_t *rlen, int timeout_ms)
{
    char err[1024];
    cJSON *reply = NULL;
    if (!req) {
        fail(c->cmd, "out of memory");
        return NULL;
    }
    int rc = luray_ctl_client_call(c->client, req, data, len, &reply, rdata, rlen, timeout_ms,
                                   err, sizeof(err));
    cJSON_Delete(req);
    if (rc) {
        fail(c->cmd, "%s", err);
        return NULL;
    }
    if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok"))) {
        const char *why = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(reply, "error"));
        fail(c->cmd, "%s", why ? why : "the head refused the request");
        cJSON_Delete(reply);
        if (rdata) {
            free(*rdata);
            *rdata = NULL;
        }
        return NULL;
    }
    return reply;
}

static cJSON *new_req(const char *op, const char *id)
{
    cJSON *req = cJSON_CreateObject();
    if (req && (!cJSON_AddStringToObject(req, "op", op) ||
                (id && !cJSON_AddStringToObject(req, "job_id", id)))) {
        cJSON_Delete(req);
        return NULL;
    }
    return req;
}

static const char *str_field(const cJSON *o, const char *key)
{
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
    return s ? s : "";
}

static cJSON *get_status(conn_t *c, const char *id)
{
    return conn_call(c, new_req("job_status", id), NULL, 0, NULL, NULL, CALL_TIMEOUT_MS);
}

static bool status_ended(const cJSON *st)
{
    const char *s = str_field(st, "status");
    return strcmp(s, "PENDING") != 0 && strcmp(s, "RUNNING") != 0;
}

/* Prints the job's output from its start; with until_done, waits for more until it ends.
 * Returns 0, or 1 after saying why. */
static int print_logs(conn_t *c, const char *id, bool until_done)
{
    double offset = 0;
    for (;;) {
        cJSON *req = new_req("job_logs", id);
        if (req && !cJSON_AddNumberToObject(req, "offset", offset)) {
            cJSON_Delete(req);
            req = NULL;
        }
        uint8_t *data = NULL;
        size_t len = 0;
        cJSON *reply = conn_call(c, req, NULL, 0, &data, &len, CALL_TIMEOUT_MS);
        if (!reply)
            return 1;
        if (len && fwrite(data, 1, len, stdout) != len) {
            free(data);
            cJSON_Delete(reply);
            return fail(c->cmd, "cannot write the output: %s", strerror(errno));
        }
        fflush(stdout);
        free(data);
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(reply, "next_offset");
        bool done = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "done"));
        if (cJSON_IsNumber(next))
            offset = next->valuedouble;
        cJSON_Delete(reply);
        if (done || (!until_done && len == 0))
            return 0;
        if (len == 0)
            sleep_ms(POLL_MS);
    }
}

/* ---- commands ---- */

static void format_time(const cJSON *o, const char *key, char *out, size_t len)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(t) || t->valuedouble <= 0) {
        snprintf(out, len, "-");
        return;
    }
    time_t secs = (time_t)t->valuedouble;
    struct tm tm;
    localtime_r(&secs, &tm);
    strftime(out, len, "%Y-%m-%d %H:%M:%S", &tm);
}

static void print_status(const cJSON *st)
{
    char start[64], end[64], code[32] = "-";
    format_time(st, "start_time", start, sizeof(start));
    format_time(st, "end_time", end, sizeof(end));
    const cJSON *ec = cJSON_GetObjectItemCaseSensitive(st, "exit_code");
    if (cJSON_IsNumber(ec))
        snprintf(code, sizeof(code), "%d", ec->valueint);
    printf("%s: %s\n", str_field(st, "job_id"), str_field(st, "status"));
    printf("  entrypoint: %s\n", str_field(st, "entrypoint"));
    printf("  started:    %s\n", start);
    printf("  ended:      %s\n", end);
    printf("  exit code:  %s\n", code);
    printf("  message:    %s\n", str_field(st, "message"));
}

static int print_json(const char *cmd, const cJSON *item)
{
    char *text = cJSON_Print(item);
    if (!text)
        return fail(cmd, "out of memory");
    printf("%s\n", text);
    free(text);
    return 0;
}

static int cmd_status(conn_t *c, const job_opts_t *o)
{
    cJSON *st = get_status(c, o->id);
    if (!st)
        return 1;
    cJSON_DeleteItemFromObjectCaseSensitive(st, "ok");
    int rc = 0;
    if (o->json)
        rc = print_json(o->cmd, st);
    else
        print_status(st);
    cJSON_Delete(st);
    return rc;
}

static int cmd_list(conn_t *c, const job_opts_t *o)
{
    cJSON *reply = conn_call(c, new_req("job_list", NULL), NULL, 0, NULL, NULL, CALL_TIMEOUT_MS);
    if (!reply)
        return 1;
    const cJSON *jobs = cJSON_GetObjectItemCaseSensitive(reply, "jobs"), *st;
    int rc = 0;
    if (o->json) {
        rc = print_json(o->cmd, jobs);
    } else {
        printf("%-13s %-10s %-20s %s\n", "JOB ID", "STATUS", "STARTED", "ENTRYPOINT");
        cJSON_ArrayForEach(st, jobs) {
            char start[64];
            format_time(st, "start_time", start, sizeof(start));
            printf("%-13s %-10s %-20s %s\n", str_field(st, "job_id"), str_field(st, "status"),
                   start, str_field(st, "entrypoint"));
        }
    }
    cJSON_Delete(reply);
    return rc;
}

static int cmd_stop(conn_t *c, const job_opts_t *o)
{
    cJSON *reply = conn_call(c, new_req("job_stop", o->id), NULL, 0, NULL, NULL,
                             CALL_TIMEOUT_MS);
    if (!reply)
        return 1;
    bool stopping = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "stopped"));
    cJSON_Delete(reply);
    for (int waited = 0;; waited += POLL_MS) {
        cJSON *st = get_status(c, o->id);
        if (!st)
            return 1;
        if (status_ended(st)) {
            printf("%s %s%s\n", o->id, stopping ? "" : "had already ended: ",
                   str_field(st, "status"));
            cJSON_Delete(st);
            return 0;
        }
        cJSON_Delete(st);
        if (waited >= STOP_WAIT_MS)
            return fail(o->cmd, "%s did not end within %d s of the stop", o->id,
                        STOP_WAIT_MS / 1000);
        sleep_ms(POLL_MS);
    }
}

static int cmd_logs(conn_t *c, const job_opts_t *o)
{
    return print_logs(c, o->id, o->follow);
}

/* The entrypoint: SCRIPT's path inside the working dir, or, without one, SCRIPT made absolute. */
static int entrypoint(const job_opts_t *o, const char *script, char *out, size_t len)
{
    char dir[PATH_MAX], path[PATH_MAX * 2], real[PATH_MAX];
    if (!o->working_dir) {
        if (script[0] == '/')
            return snprintf(out, len, "%s", script) >= (int)len ? fail(o->cmd, "path too long")
                                                                : 0;
        if (!realpath(script, real))
            return fail(o->cmd, "cannot find %s: %s", script, strerror(errno));
        snprintf(out, len, "%s", real);
        return 0;
    }
    if (!realpath(o->working_dir, dir))
        return fail(o->cmd, "cannot use the working dir %s: %s", o->working_dir, strerror(errno));
    if (script[0] == '/')
        snprintf(path, sizeof(path), "%s", script);
    else
        snprintf(path, sizeof(path), "%s/%s", dir, script);
    if (!realpath(path, real))
        return fail(o->cmd, "the working dir %s has no %s", o->working_dir, script);
    size_t dl = strlen(dir);
    if (strncmp(real, dir, dl) != 0 || real[dl] != '/')
        return fail(o->cmd, "%s is not inside the working dir %s", script, o->working_dir);
    snprintf(out, len, "%s", real + dl + 1);
    return 0;
}

static cJSON *submit_req(const job_opts_t *o, const char *entry, int argc, char **argv)
{
    cJSON *req = new_req("job_submit", NULL);
    cJSON *args = req ? cJSON_AddArrayToObject(req, "args") : NULL;
    bool ok = args && cJSON_AddStringToObject(req, "entrypoint", entry);
    for (int i = o->script + 1; ok && i < argc; i++) {
        cJSON *s = cJSON_CreateString(argv[i]);
        ok = s && cJSON_AddItemToArray(args, s);
    }
    if (ok && o->env)
        ok = cJSON_AddItemReferenceToObject(req, "env_vars", o->env);
    if (!ok) {
        cJSON_Delete(req);
        return NULL;
    }
    return req;
}

/* Follows the job to its end; the exit status says whether it SUCCEEDED. */
static int wait_job(conn_t *c, const char *id)
{
    if (isatty(STDERR_FILENO))
        fprintf(stderr, "(printing its output until it ends; Ctrl-C stops the printing, not the "
                "job)\n");
    if (print_logs(c, id, true) != 0)
        return 1;
    cJSON *st = get_status(c, id);
    if (!st)
        return 1;
    int rc = 0;
    if (strcmp(str_field(st, "status"), "SUCCEEDED") == 0)
        printf("%s SUCCEEDED\n", id);
    else
        rc = fail(c->cmd, "%s %s: %s", id, str_field(st, "status"), str_field(st, "message"));
    cJSON_Delete(st);
    return rc;
}

static int cmd_submit(conn_t *c, const job_opts_t *o, int argc, char **argv)
{
    char entry[PATH_MAX], err[1024], id[64];
    uint8_t *blob = NULL;
    size_t blob_len = 0;
    if (entrypoint(o, argv[o->script], entry, sizeof(entry)) != 0)
        return 1;
    if (o->working_dir &&
        luray_pack_dir(o->working_dir, 0, &blob, &blob_len, err, sizeof(err)) != 0)
        return fail(o->cmd, "cannot pack the working dir: %s", err);
    cJSON *reply = conn_call(c, submit_req(o, entry, argc, argv), blob, blob_len, NULL, NULL,
                             SUBMIT_TIMEOUT_MS);
    free(blob);
    if (!reply)
        return 1;
    snprintf(id, sizeof(id), "%s", str_field(reply, "job_id"));
    cJSON_Delete(reply);
    printf("%s submitted\n", id);
    fflush(stdout);
    return o->no_wait ? 0 : wait_job(c, id);
}

static int run_cmd(job_opts_t *o, int argc, char **argv)
{
    conn_t c;
    if (conn_open(&c, o) != 0)
        return 1;
    int rc;
    if (strcmp(o->cmd, "submit") == 0)
        rc = cmd_submit(&c, o, argc, argv);
    else if (strcmp(o->cmd, "status") == 0)
        rc = cmd_status(&c, o);
    else if (strcmp(o->cmd, "logs") == 0)
        rc = cmd_logs(&c, o);
    else if (strcmp(o->cmd, "stop") == 0)
        rc = cmd_stop(&c, o);
    else
        rc = cmd_list(&c, o);
    luray_ctl_client_free(c.client);
    return rc;
}

int luray_cli_job(int argc, char **argv)
{
    static const char *const cmds[] = {"submit", "status", "logs", "stop", "list"};
    if (argc < 3)
        return usage_error(NULL, "needs a command: submit, status, logs, stop or list");
    if (is_help(argv[2]) || strcmp(argv[2], "help") == 0) {
        fputs(usage_job, stdout);
        return 0;
    }
    job_opts_t o = {0};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (strcmp(argv[2], cmds[i]) == 0)
            o.cmd = cmds[i];
    if (!o.cmd) {
        char what[300];
        snprintf(what, sizeof(what), "unknown command '%s'", argv[2]);
        return usage_error(NULL, what);
    }
    int rc = parse_args(&o, argc, argv);
    if (rc == SHOW_HELP) {
        fputs(usage_job, stdout);
        rc = 0;
    } else if (rc == 0) {
        rc = run_cmd(&o, argc, argv);
    }
    cJSON_Delete(o.env);
    return rc;
}
