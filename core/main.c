/* The `luray` program: the command line (REPL, run, start, status, stop, plugins) and the hidden
 * `_node` and `_worker` entries that the node daemon and its workers run as. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "auth.h"
#include "cli_job.h"
#include "client.h"
#include "ctl.h"
#include "errors.h"
#include "errors_str.h"
#include "lua_setup.h"
#include "lua_util.h"
#include "node.h"
#include "plugin_host.h"
#include "repl.h"
#include "session.h"

#define EXIT_USAGE 2
#define JSON_MAX_DEPTH 64

static const char usage_main[] =
    "usage: luray [COMMAND] [OPTIONS]\n"
    "\n"
    "Lua scripts on a cluster: remote tasks, actors and a shared-memory object store.\n"
    "\n"
    "commands:\n"
    "  (none)             the interactive REPL; runs stdin as a script when it is not a terminal\n"
    "  run SCRIPT [ARGS]  runs a Lua script as a driver ('luray run --help')\n"
    "  start --head       starts a head node on this machine ('luray start --help')\n"
    "  start --address A  starts a node that joins the cluster at A\n"
    "  status             shows nodes, resources, tasks, actors and object store use\n"
    "  stop               stops the luray clusters of this machine and removes their files\n"
    "  job                runs drivers on a cluster: submit, status, logs, stop, list\n"
    "                     ('luray job --help')\n"
    "  plugins            lists the plugins found, their versions and ABI, and which are loaded\n"
    "  serve              HTTP serving: run APP.lua, status, shutdown ('luray serve --help')\n"
    "\n"
    "options of the REPL (as for run): --address HOST:PORT, --num-cpus N, --num-gpus N,\n"
    "  --object-store-memory BYTES, --working-dir DIR, --config FILE.json\n"
    "  --help             this text; 'luray COMMAND --help' shows a command's options\n"
    "  --version          prints the version\n"
    "\n"
    "environment:\n"
    "  LURAY_ADDRESS      the cluster to use when no --address is given (HOST:PORT or auto)\n"
    "  LURAY_TOKEN_FILE   the cluster token for 'start --address' and 'job'\n"
    "  LURAY_TMPDIR       where local clusters keep their files (default "
    LURAY_SESSION_BASE_DEFAULT ")\n"
    "  LURAY_HISTORY      the REPL's history file (default ~/.luray_history)\n"
    "  LURAY_PLUGIN_PATH  folders searched for plugins before the install's own (colon-separated)\n"
    "  LURAY_EMBEDDED     'process' runs an embedded cluster's node as a child process\n"
    "                     (default: a thread of the driver)\n"
    "  LURAY_DATA_PROGRESS  1 or 0: luray.data's progress line on stderr (default: when a terminal)\n"
    "  LURAY_NN_THREADS   BLAS threads of luray.nn (default 2)\n"
    "\n"
    "libraries for scripts: luray.data (datasets), luray.nn (neural networks, CPU or CUDA),\n"
    "  luray.train (data-parallel Trainer), luray.xgboost, luray.serve (HTTP serving); see\n"
    "  docs/data.md, docs/nn.md, docs/train.md, docs/serve.md, docs/tutorial.md\n";

static const char usage_run[] =
    "usage: luray run [OPTIONS] SCRIPT.lua [ARGS...]\n"
    "\n"
    "Runs SCRIPT as a driver; `arg` holds ARGS as in `lua`, and they are the chunk's `...`.\n"
    "Without an address and with no local cluster running, luray.init starts an embedded\n"
    "single-node cluster that ends with the script. Options come before SCRIPT.\n"
    "\n"
    "options:\n"
    "  --address HOST:PORT         the cluster to join, or auto (default: env LURAY_ADDRESS)\n"
    "  --num-cpus N                CPUs of the embedded cluster (default: all online CPUs)\n"
    "  --num-gpus N                GPUs of the embedded cluster (default 0)\n"
    "  --object-store-memory B     store size: bytes, or with a unit: 512MB, 2GiB\n"
    "  --working-dir DIR           a directory shipped to every worker (require finds its\n"
    "                              modules there)\n"
    "  --config FILE.json          a JSON object with the same fields (address, num_cpus,\n"
    "                              num_gpus, object_store_memory, working_dir); flags override it\n"
    "\n"
    "Exit status: 0 on success, 1 when the script raised (the traceback goes to stderr).\n";

static const char usage_serve[] =
    "usage: luray serve run [RUN OPTIONS] APP.lua [ARGS...]\n"
    "       luray serve status [--address HOST:PORT] [--json]\n"
    "       luray serve shutdown [--address HOST:PORT]\n"
    "\n"
    "run: runs APP.lua (a script that calls serve.run) as 'luray run' does, then keeps the\n"
    "application up until Ctrl-C, SIGTERM or 'luray serve shutdown', and shuts serve down. With\n"
    "no cluster running it starts an embedded one and makes it this machine's current cluster,\n"
    "so 'luray serve status' and 'luray serve shutdown' in another terminal reach it.\n"
    "status: the proxy's address and each deployment's state, replicas and route.\n"
    "shutdown: stops the proxy (requests in flight are answered first), the replicas and the\n"
    "controller; a 'luray serve run' waiting on them then ends.\n"
    "\n"
    "options:\n"
    "  --address HOST:PORT         the cluster (default: env LURAY_ADDRESS, else the local one)\n"
    "  --json                      status as one JSON object\n"
    "See docs/serve.md.\n";

static const char usage_start[] =
    "usage: luray start --head [OPTIONS]\n"
    "       luray start --address HOST:PORT [--token-file F] [OPTIONS]\n"
    "\n"
    "--head starts a head node on this machine: the cluster directory beside a node. It prints\n"
    "the address that nodes and drivers join and where the cluster token file is (made with mode\n"
    "0600 on first start; a head started again with the same port keeps its token, its named\n"
    "detached actors and its jobs). --address starts a node that joins the cluster at HOST:PORT.\n"
    "Messages between nodes are authenticated with the token; a node without it never joins.\n"
    "\n"
    "options:\n"
    "  --port P                    the head: the cluster's port (default 6380; the control port\n"
    "                              for status and jobs is P+1). A node: its own port (default:\n"
    "                              the first free one from the head's port + 2)\n"
    "  --host H                    the address to bind (default 127.0.0.1)\n"
    "  --token-file F              the cluster token: a joining node's (default: env\n"
    "                              LURAY_TOKEN_FILE, else $LURAY_TMPDIR/cluster-PORT/token);\n"
    "                              a head uses it instead of making its own\n"
    "  --num-cpus N                CPUs to offer (default: all online CPUs)\n"
    "  --num-gpus N                GPUs to offer (default 0)\n"
    "  --resources JSON            custom resources, such as '{\"disk\": 2}'\n"
    "  --object-store-memory B     store size: bytes, or with a unit: 512MB, 2GiB\n"
    "                              (default: 30% of memory, at most 8 GiB)\n"
    "  --block                     runs the node in the foreground until Ctrl-C\n";

static const char usage_status[] =
    "usage: luray status [--address HOST:PORT] [--token-file F] [--json]\n"
    "\n"
    "Shows the cluster's nodes (alive or dead), total and available resources, running and queued\n"
    "tasks, actors, objects and object store use.\n"
    "\n"
    "options:\n"
    "  --address HOST:PORT         the cluster (default: env LURAY_ADDRESS, else the local one);\n"
    "                              with no node of it on this machine, its head is asked on\n"
    "                              PORT+1 with the token\n"
    "  --token-file F              the cluster token for that (default: env LURAY_TOKEN_FILE)\n"
    "  --json                      prints the state as one JSON object\n";

static const char usage_stop[] =
    "usage: luray stop\n"
    "\n"
    "Stops every luray node started on this machine and their workers, and removes their session\n"
    "files, sockets and shared memory.\n";

static const char usage_plugins[] =
    "usage: luray plugins\n"
    "\n"
    "Lists the plugins on the search path (env LURAY_PLUGIN_PATH, then the install's plugin\n"
    "folder): name, version, ABI, file, and whether it loads.\n";

/* The settings a driver (run or the REPL) hands to luray.init through luray.config. */
typedef struct {
    const char *address;
    double num_cpus, num_gpus;
    bool has_cpus, has_gpus;
    uint64_t store;
    bool has_store;
    const char *working_dir;
    const char *config_file;
} driver_opts_t;

/* Matches "--name" (value in the next argument) and "--name=value". Returns false if arg is
 * another option; on a match *value is the value or NULL when it is missing. */
static bool opt_value(int argc, char **argv, int *i, const char *name, const char **value)
{
    size_t n = strlen(name);
    const char *arg = argv[*i];
    if (strncmp(arg, name, n) != 0)
        return false;
    if (arg[n] == '=') {
        *value = arg + n + 1;
        return true;
    }
    if (arg[n] != '\0')
        return false;
    *value = *i + 1 < argc ? argv[++*i] : NULL;
    return true;
}

static bool is_help(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

static int usage_error(const char *cmd, const char *fmt, const char *what)
{
    fprintf(stderr, "luray%s%s: ", cmd[0] ? " " : "", cmd);
    fprintf(stderr, fmt, what);
    fprintf(stderr, " (see 'luray%s%s --help')\n", cmd[0] ? " " : "", cmd);
    return EXIT_USAGE;
}

static bool parse_count(const char *text, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v) || v < 0)
        return false;
    *out = v;
    return true;
}

static bool parse_int(const char *text, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* Parses one driver option at argv[*i]. Returns 1 when it was one, 0 when it is not a driver
 * option, or EXIT_USAGE + 100 after printing a usage error. */
static int parse_driver_opt(const char *cmd, int argc, char **argv, int *i, driver_opts_t *o)
{
    const char *v = NULL;
    const char *arg = argv[*i];
    if (opt_value(argc, argv, i, "--address", &v)) {
        if (!v || !*v)
            return usage_error(cmd, "%s needs HOST:PORT", "--address") + 100;
        o->address = v;
    } else if (opt_value(argc, argv, i, "--num-cpus", &v)) {
        if (!v || !parse_count(v, &o->num_cpus))
            return usage_error(cmd, "--num-cpus needs a number >= 0, not '%s'", v ? v : "") + 100;
        o->has_cpus = true;
    } else if (opt_value(argc, argv, i, "--num-gpus", &v)) {
        if (!v || !parse_count(v, &o->num_gpus))
            return usage_error(cmd, "--num-gpus needs a number >= 0, not '%s'", v ? v : "") + 100;
        o->has_gpus = true;
    } else if (opt_value(argc, argv, i, "--object-store-memory", &v)) {
        if (!v || luray_session_parse_size(v, &o->store) != 0 || o->store == 0)
            return usage_error(cmd, "--object-store-memory needs a size such as 512MB, not '%s'",
                               v ? v : "") + 100;
        o->has_store = true;
    } else if (opt_value(argc, argv, i, "--working-dir", &v)) {
        if (!v || !*v)
            return usage_error(cmd, "%s needs a directory", "--working-dir") + 100;
        o->working_dir = v;
    } else if (opt_value(argc, argv, i, "--config", &v)) {
        if (!v || !*v)
            return usage_error(cmd, "%s needs a JSON file", "--config") + 100;
        o->config_file = v;
    } else {
        (void)arg;
        return 0;
    }
    return 1;
}

/* Pushes a JSON value as a Lua value (objects and arrays as tables, integers kept integers). */
static void push_json(lua_State *L, const cJSON *j, int depth)
{
    if (cJSON_IsBool(j)) {
        lua_pushboolean(L, cJSON_IsTrue(j));
    } else if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d == floor(d) && fabs(d) < 9007199254740992.0)
            lua_pushinteger(L, (lua_Integer)d);
        else
            lua_pushnumber(L, d);
    } else if (cJSON_IsString(j)) {
        lua_pushstring(L, j->valuestring);
    } else if ((cJSON_IsObject(j) || cJSON_IsArray(j)) && depth < JSON_MAX_DEPTH) {
        lua_newtable(L);
        lua_Integer k = 1;
        for (const cJSON *it = j->child; it; it = it->next) {
            if (cJSON_IsNull(it))
                continue;
            push_json(L, it, depth + 1);
            if (cJSON_IsArray(j))
                lua_rawseti(L, -2, k++);
            else
                lua_setfield(L, -2, it->string);
        }
    } else {
        lua_pushnil(L);
    }
}

static char *read_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot read config %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - 1 - n, f);
        if (n < cap - 1)
            break;
        char *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    bool bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        snprintf(err, errlen, "cannot read config %s: %s", path, buf ? "read error" : "no memory");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* Pushes the table of --config FILE (fields as given; the known ones checked), or an empty one. */
static int push_config_file(lua_State *L, const char *path, char *err, size_t errlen)
{
    if (!path) {
        lua_newtable(L);
        return 0;
    }
    char *text = read_file(path, err, errlen);
    if (!text)
        return LURAY_EIO;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(text, &end, true);
    if (!j) {
        /* cJSON reports where it stopped; users want a line and a column. */
        const char *at = end ? end : cJSON_GetErrorPtr();
        int line = 1, col = 1;
        for (const char *p = text; at && p < at && *p; p++) {
            if (*p == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        snprintf(err, errlen, "bad JSON in config %s at line %d, column %d", path, line, col);
        free(text);
        return LURAY_EINVAL;
    }
    free(text);
    int rc = 0;
    if (!cJSON_IsObject(j)) {
        snprintf(err, errlen, "config %s must hold a JSON object", path);
        rc = LURAY_EINVAL;
        goto out;
    }
    static const char *const strings[] = {"address", "working_dir", "script"};
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(j, strings[i]);
        if (it && !cJSON_IsString(it) && !cJSON_IsNull(it)) {
            snprintf(err, errlen, "config %s: %s must be a string", path, strings[i]);
            rc = LURAY_EINVAL;
            goto out;
        }
    }
    static const char *const counts[] = {"num_cpus", "num_gpus"};
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(j, counts[i]);
        if (it && !cJSON_IsNull(it) && (!cJSON_IsNumber(it) || it->valuedouble < 0)) {
            snprintf(err, errlen, "config %s: %s must be a number >= 0", path, counts[i]);
            rc = LURAY_EINVAL;
            goto out;
        }
    }
    push_json(L, j, 0);
    cJSON *mem = cJSON_GetObjectItemCaseSensitive(j, "object_store_memory");
    if (mem && !cJSON_IsNull(mem)) {
        uint64_t bytes = 0;
        bool ok = cJSON_IsString(mem) ? luray_session_parse_size(mem->valuestring, &bytes) == 0
                                      : cJSON_IsNumber(mem) && mem->valuedouble >= 1 &&
                                            mem->valuedouble < 1.8e19;
        if (cJSON_IsNumber(mem) && ok)
            bytes = (uint64_t)mem->valuedouble;
        if (!ok || bytes == 0) {
            lua_pop(L, 1);
            snprintf(err, errlen, "config %s: object_store_memory must be a size such as 512MB",
                     path);
            rc = LURAY_EINVAL;
            goto out;
        }
        lua_pushinteger(L, (lua_Integer)bytes);
        lua_setfield(L, -2, "object_store_memory");
    }
out:
    cJSON_Delete(j);
    return rc;
}

static void push_count(lua_State *L, double v)
{
    if (v == floor(v) && v < 9007199254740992.0)
        lua_pushinteger(L, (lua_Integer)v);
    else
        lua_pushnumber(L, v);
}

/* Pushes luray.config for a driver: the config file's fields, then the flags over them; the
 * address falls back to env LURAY_ADDRESS. */
static int push_driver_config(lua_State *L, const driver_opts_t *o, const char *script, char *err,
                              size_t errlen)
{
    int rc = push_config_file(L, o->config_file, err, errlen);
    if (rc)
        return rc;
    const char *env = getenv("LURAY_ADDRESS");
    if (o->address) {
        lua_pushstring(L, o->address);
        lua_setfield(L, -2, "address");
    } else if (env && *env) {
        int t = lua_getfield(L, -1, "address");
        lua_pop(L, 1);
        if (t == LUA_TNIL) {
            lua_pushstring(L, env);
            lua_setfield(L, -2, "address");
        }
    }
    if (o->has_cpus) {
        push_count(L, o->num_cpus);
        lua_setfield(L, -2, "num_cpus");
    }
    if (o->has_gpus) {
        push_count(L, o->num_gpus);
        lua_setfield(L, -2, "num_gpus");
    }
    if (o->has_store) {
        lua_pushinteger(L, (lua_Integer)o->store);
        lua_setfield(L, -2, "object_store_memory");
    }
    /* Workers run elsewhere: an absolute working_dir means the same on every node of this host. */
    lua_getfield(L, -1, "working_dir");
    const char *wd = o->working_dir ? o->working_dir : lua_tostring(L, -1);
    if (wd) {
        char abs[PATH_MAX];
        struct stat st;
        const char *why = NULL;
        if (!realpath(wd, abs) || stat(abs, &st) != 0)
            why = strerror(errno);
        else if (!S_ISDIR(st.st_mode))
            why = "not a directory";
        if (why) {
            snprintf(err, errlen, "working dir %s: %s", wd, why);
            lua_pop(L, 2);
            return LURAY_EINVAL;
        }
        lua_pushstring(L, abs);
        lua_setfield(L, -3, "working_dir");
    }
    lua_pop(L, 1);
    if (script) {
        lua_pushstring(L, script);
        lua_setfield(L, -2, "script");
    }
    return 0;
}

/* Calls luray.shutdown() when luray.is_initialized(); returns 0, or 1 when either raised. */
static int driver_finish(lua_State *L)
{
    int bad = 0;
    if (lua_getglobal(L, "luray") != LUA_TTABLE) {
        lua_pop(L, 1);
        return 0;
    }
    if (lua_getfield(L, -1, "is_initialized") != LUA_TFUNCTION) {
        lua_pop(L, 2);
        return 0;
    }
    int status = luray_lua_pcall_traceback(L, 0, 1);
    if (status != LUA_OK) {
        luray_lua_report(L, status);
        lua_pop(L, 1);
        return 1;
    }
    bool up = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (up && lua_getfield(L, -1, "shutdown") == LUA_TFUNCTION) {
        status = luray_lua_pcall_traceback(L, 0, 0);
        if (status != LUA_OK) {
            luray_lua_report(L, status);
            bad = 1;
        }
    } else if (up) {
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return bad;
}

static void close_state(lua_State *L)
{
    lua_close(L);
    luray_plugins_unload_all();
}

/* A new state with luray loaded; the config table (or none) is at the top of the stack and is
 * removed. Prints the error and returns NULL on failure. */
static lua_State *driver_state(lua_State *L, const char *cmd, const char *extra_dir, bool config)
{
    char err[1024] = "";
    int idx = config ? lua_gettop(L) : 0;
    int rc = luray_lua_setup(L, extra_dir, idx, err, sizeof(err));
    if (config)
        lua_remove(L, idx);
    if (rc) {
        fprintf(stderr, "luray%s%s: cannot set up Lua: %s\n", cmd[0] ? " " : "", cmd,
                err[0] ? err : luray_strerror(rc));
        close_state(L);
        return NULL;
    }
    return L;
}

static lua_State *new_state(void)
{
    lua_State *L = luaL_newstate();
    if (!L)
        fprintf(stderr, "luray: cannot create a Lua state: out of memory\n");
    return L;
}

static int cmd_repl(int argc, char **argv)
{
    driver_opts_t o = {0};
    for (int i = 1; i < argc; i++) {
        int r = parse_driver_opt("", argc, argv, &i, &o);
        if (r > 100)
            return r - 100;
        if (r == 0)
            return usage_error("", "unknown option %s", argv[i]);
    }
    lua_State *L = new_state();
    if (!L)
        return 1;
    char err[1024] = "";
    if (push_driver_config(L, &o, NULL, err, sizeof(err)) != 0) {
        fprintf(stderr, "luray: %s\n", err);
        lua_close(L);
        return 1;
    }
    if (!driver_state(L, "", NULL, true))
        return 1;
    bool interactive = isatty(STDIN_FILENO);
    luray_repl_opts_t ro = {
        .interactive = interactive,
        .history_path = NULL, /* the REPL reads LURAY_HISTORY, else ~/.luray_history */
        .banner = "luray " LURAY_VERSION " (" LUA_RELEASE ") -- :help for help, :quit to leave",
    };
    int status = luray_repl_run(L, &ro);
    if (driver_finish(L) != 0)
        status = 1;
    close_state(L);
    return status;
}

/* Sets the global `arg` as lua.c does: arg[0] the script, ARGS from 1, the program's own words at
 * negative indexes. */
static void set_arg_table(lua_State *L, int argc, char **argv, int script)
{
    lua_createtable(L, argc - script - 1, script + 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script);
    }
    lua_setglobal(L, "arg");
}

/* Ctrl-C or SIGTERM during `luray run` stop the script with an error, as lua.c does, so the
 * cluster it started goes down in order; a second one ends the process at once. */
static lua_State *run_L;

static void run_stop_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luray_client_interrupt = 0; /* taken here, not by a wait */
    luaL_error(L, "interrupted!");
}

static void run_on_signal(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    signal(sig, SIG_DFL);
    luray_client_interrupt = 1;
    if (run_L)
        lua_sethook(run_L, run_stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static void run_catch_signals(lua_State *L)
{
    run_L = L;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = run_on_signal; /* no SA_RESTART: a blocking get returns EINTR */
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static void run_release_signals(void)
{
    run_L = NULL;
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
}

/* `luray serve run`: after the script, block while serve runs (serve._block). */
static bool serve_block;

static int cmd_run(int argc, char **argv)
{
    driver_opts_t o = {0};
    int script = -1;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            if (i + 1 < argc)
                script = i + 1;
            break;
        }
        if (argv[i][0] != '-' || argv[i][1] == '\0') {
            script = i;
            break;
        }
        if (is_help(argv[i])) {
            fputs(usage_run, stdout);
            return 0;
        }
        int r = parse_driver_opt("run", argc, argv, &i, &o);
        if (r > 100)
            return r - 100;
        if (r == 0)
            return usage_error("run", "unknown option %s", argv[i]);
    }
    if (script < 0)
        return usage_error("run", "%s", "no SCRIPT given");
    const char *path = argv[script];

    /* Checked before anything starts: a typo in the name should cost nothing. */
    FILE *probe = strcmp(path, "-") == 0 ? NULL : fopen(path, "r");
    if (strcmp(path, "-") != 0 && !probe) {
        fprintf(stderr, "luray run: cannot open %s: %s\n", path, strerror(errno));
        return 1;
    }
    if (probe)
        fclose(probe);

    /* The script's directory is on package.path here, and in the workers of an embedded cluster
     * (they inherit the environment), so that require finds the user's modules everywhere. */
    char absdir[PATH_MAX] = "";
    char real[PATH_MAX];
    if (strcmp(path, "-") != 0 && realpath(path, real)) {
        snprintf(absdir, sizeof(absdir), "%s", dirname(real));
        setenv("LURAY_SCRIPT_DIR", absdir, 1);
    }

    lua_State *L = new_state();
    if (!L)
        return 1;
    char err[1024] = "";
    if (push_driver_config(L, &o, path, err, sizeof(err)) != 0) {
        fprintf(stderr, "luray run: %s\n", err);
        lua_close(L);
        return 1;
    }
    if (!driver_state(L, "run", absdir[0] ? absdir : NULL, true))
        return 1;
    set_arg_table(L, argc, argv, script);

    int status = luaL_loadfile(L, strcmp(path, "-") == 0 ? NULL : path);
    if (status != LUA_OK) {
        fprintf(stderr, "luray run: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        close_state(L);
        return 1;
    }
    int nargs = argc - script - 1;
    luaL_checkstack(L, nargs + 4, "too many arguments to the script");
    for (int i = script + 1; i < argc; i++)
        lua_pushstring(L, argv[i]);
    run_catch_signals(L);
    status = luray_lua_pcall_traceback(L, nargs, 0);
    if (status == LUA_OK && serve_block) {
        static const char block[] = "require('luray.serve')._block()";
        status = luaL_loadbuffer(L, block, sizeof(block) - 1, "=serve");
        if (status == LUA_OK)
            status = luray_lua_pcall_traceback(L, 0, 0);
    }
    int rc = 0;
    if (status != LUA_OK) {
        luray_lua_report(L, status);
        rc = 1;
    }
    run_release_signals();
    if (driver_finish(L) != 0)
        rc = 1;
    close_state(L);
    return rc;
}

/* Checks a --resources value: a JSON object of names to amounts >= 0. */
static bool valid_resources(const char *text, char *why, size_t len)
{
    cJSON *j = cJSON_Parse(text);
    bool ok = cJSON_IsObject(j);
    if (!ok)
        snprintf(why, len, "--resources needs a JSON object such as '{\"disk\": 2}'");
    for (const cJSON *it = ok ? j->child : NULL; it; it = it->next) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0) {
            snprintf(why, len, "--resources: \"%s\" must be a number >= 0", it->string);
            ok = false;
            break;
        }
    }
    cJSON_Delete(j);
    return ok;
}

/* The head's folder that outlives its sessions ($LURAY_TMPDIR/cluster-PORT: the token, the
 * directory log, jobs) and the token file a node uses. */
static int cluster_paths(const char *address, const char *token_file, char *state, size_t slen,
                         char *token, size_t tlen, bool head, char *err, size_t errlen)
{
    char base[PATH_MAX];
    if (luray_session_base(base, sizeof(base)) != 0) {
        snprintf(err, errlen, "cannot use the session folder (LURAY_TMPDIR)");
        return LURAY_EIO;
    }
    const char *colon = strrchr(address, ':');
    int w = snprintf(state, slen, "%s/cluster-%s", base, colon ? colon + 1 : "6380");
    if (w < 0 || (size_t)w >= slen) {
        snprintf(err, errlen, "LURAY_TMPDIR is too long");
        return LURAY_EINVAL;
    }
    if (head && mkdir(state, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %.900s: %s", state, strerror(errno));
        return LURAY_EIO;
    }
    if (head && (!token_file || !*token_file)) {
        /* The head's own token, made on its first start. */
        w = snprintf(token, tlen, "%s/token", state);
        return w < 0 || (size_t)w >= tlen ? LURAY_EINVAL : 0;
    }
    if (!token_file || !*token_file)
        token_file = getenv("LURAY_TOKEN_FILE");
    if (token_file && *token_file)
        w = snprintf(token, tlen, "%s", token_file);
    else
        w = snprintf(token, tlen, "%s/token", state);
    if (w < 0 || (size_t)w >= tlen) {
        snprintf(err, errlen, "the token file's path is too long");
        return LURAY_EINVAL;
    }
    if (access(token, R_OK) != 0) {
        snprintf(err, errlen, "no cluster token at %.900s: copy the head's token file here and "
                 "pass --token-file FILE (or set LURAY_TOKEN_FILE)", token);
        return LURAY_ENOENT;
    }
    return 0;
}

static void print_started(const char *address, const char *dir, const char *token, pid_t pid,
                          bool block)
{
    printf("luray: started a head node at %s (pid %d)\n", address, (int)pid);
    printf("\n");
    printf("  to join a node:        luray start --address %s\n", address);
    printf("                         (on another machine add --token-file with a copy of the token)\n");
    printf("  cluster token:         %s (mode 0600; nodes and job clients need it)\n",
           token);
    printf("  to connect a script:   luray run --address %s script.lua\n", address);
    printf("               or with:  LURAY_ADDRESS=%s luray run script.lua\n", address);
    printf("  to look at it:         luray status\n");
    printf("  to stop it:            %s\n", block ? "Ctrl-C, or 'luray stop'" : "luray stop");
    printf("\n");
    printf("  session:  %s\n", dir);
    if (!block)
        printf("  log:      %s/logs/node.log\n", dir);
    fflush(stdout);
}

static int cmd_start(int argc, char **argv)
{
    bool head = false, block = false, port_given = false;
    const char *host = LURAY_DEFAULT_HOST, *resources = NULL, *join = NULL, *v = NULL;
    const char *token_file = NULL;
    long port = LURAY_DEFAULT_PORT;
    double cpus = luray_session_default_cpus(), gpus = 0;
    uint64_t store = 0;
    for (int i = 2; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(usage_start, stdout);
            return 0;
        } else if (strcmp(argv[i], "--head") == 0) {
            head = true;
        } else if (strcmp(argv[i], "--block") == 0) {
            block = true;
        } else if (opt_value(argc, argv, &i, "--address", &v)) {
            join = v ? v : "";
        } else if (opt_value(argc, argv, &i, "--token-file", &v)) {
            if (!v || !*v)
                return usage_error("start", "%s needs a file", "--token-file");
            token_file = v;
        } else if (opt_value(argc, argv, &i, "--port", &v)) {
            if (!v || !parse_int(v, 1, 65534, &port))
                return usage_error("start", "--port needs a number from 1 to 65534, not '%s'",
                                   v ? v : "");
            port_given = true;
        } else if (opt_value(argc, argv, &i, "--host", &v)) {
            if (!v || !*v)
                return usage_error("start", "%s needs an address", "--host");
            host = v;
        } else if (opt_value(argc, argv, &i, "--num-cpus", &v)) {
            if (!v || !parse_count(v, &cpus))
                return usage_error("start", "--num-cpus needs a number >= 0, not '%s'", v ? v : "");
        } else if (opt_value(argc, argv, &i, "--num-gpus", &v)) {
            if (!v || !parse_count(v, &gpus))
                return usage_error("start", "--num-gpus needs a number >= 0, not '%s'", v ? v : "");
        } else if (opt_value(argc, argv, &i, "--resources", &v)) {
            char why[256];
            if (!v || !valid_resources(v, why, sizeof(why))) {
                fprintf(stderr, "luray start: %s\n",
                        v ? why : "--resources needs a JSON object such as '{\"disk\": 2}'");
                return EXIT_USAGE;
            }
            resources = v;
        } else if (opt_value(argc, argv, &i, "--object-store-memory", &v)) {
            if (!v || luray_session_parse_size(v, &store) != 0 || store == 0)
                return usage_error("start",
                                   "--object-store-memory needs a size such as 512MB, not '%s'",
                                   v ? v : "");
        } else {
            return usage_error("start", "unknown option %s", argv[i]);
        }
    }
    if (head && join)
        return usage_error("start", "%s", "say --head or --address, not both");
    if (!head && !join)
        return usage_error("start", "%s",
                           "say --head to start a head node, or --address HOST:PORT to join one");
    if (join && (!*join || !strchr(join, ':')))
        return usage_error("start", "--address needs HOST:PORT, not '%s'", join);
    if (store == 0)
        store = luray_session_default_store_memory();

    char dir[PATH_MAX], err[1024], address[300], state[PATH_MAX], token[PATH_MAX];
    luray_session_node_t node;
    bool have_current = luray_session_find(NULL, dir, sizeof(dir), NULL, 0) == 0 &&
                        luray_session_alive(dir, &node);
    if (head && have_current) {
        fprintf(stderr,
                "luray start: a luray cluster is already running at %s:%d; stop it with 'luray "
                "stop'\n", node.host, node.port);
        return 1;
    }
    snprintf(address, sizeof(address), "%s:%ld", host, port);
    if (head && luray_session_find(address, dir, sizeof(dir), NULL, 0) == 0) {
        fprintf(stderr,
                "luray start: a luray cluster already uses port %ld (session %s); stop it with "
                "'luray stop' or pick another --port\n", port, dir);
        return 1;
    }
    if (cluster_paths(head ? address : join, token_file, state, sizeof(state), token,
                      sizeof(token), head, err, sizeof(err)) != 0) {
        fprintf(stderr, "luray start: %s\n", err);
        return 1;
    }
    int rc = luray_session_create(dir, sizeof(dir));
    if (rc) {
        fprintf(stderr, "luray start: cannot create a session directory: %s\n",
                luray_strerror(rc));
        return 1;
    }
    char exe[PATH_MAX];
    if (!realpath("/proc/self/exe", exe)) {
        fprintf(stderr, "luray start: cannot find the luray program: %s\n", strerror(errno));
        luray_session_remove(dir);
        return 1;
    }
    luray_node_opts_t opts = {
        .session_dir = dir,
        .exe = exe,
        .num_cpus = cpus,
        .num_gpus = gpus,
        .resources_json = resources,
        .object_store_memory = store,
        .node_id = 1,
        .port = join && !port_given ? 0 : (int)port,
        .host = host,
        .ready_fd = -1,
        .head = head,
        .join = join,
        .token_file = token,
        .state_dir = head ? state : NULL,
    };
    /* Drivers on this machine use the head when it is here, else the first node started. */
    bool make_current = head || !have_current;
    char adv[256], shown[300];
    luray_session_advertised_host(host, adv, sizeof(adv));
    snprintf(shown, sizeof(shown), "%s:%ld", adv, port);
    if (block) {
        if (make_current && luray_session_set_current(dir) != 0)
            fprintf(stderr, "luray start: warning: cannot point the current session at %s\n", dir);
        if (head)
            print_started(shown, dir, token, getpid(), true);
        else
            printf("luray: node joining the cluster at %s (pid %d); Ctrl-C stops it\n", join,
                   (int)getpid());
        fflush(stdout);
        int status = luray_node_main(&opts);
        if (make_current)
            luray_session_clear_current(dir);
        luray_session_remove(dir);
        return status;
    }
    pid_t pid;
    rc = luray_session_spawn_node(&opts, true, &pid, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "luray start: %s\n", err);
        luray_session_remove(dir);
        return 1;
    }
    if (make_current && luray_session_set_current(dir) != 0) {
        fprintf(stderr, "luray start: cannot point %s/current at the new session; stop it with "
                        "'luray stop'\n", getenv("LURAY_TMPDIR") ? getenv("LURAY_TMPDIR")
                                                                 : LURAY_SESSION_BASE_DEFAULT);
        return 1;
    }
    if (head) {
        print_started(shown, dir, token, pid, false);
    } else {
        luray_session_node_t me;
        int mp = luray_session_read_node(dir, &me) == 0 ? me.port : 0;
        printf("luray: node %08x joined the cluster at %s (pid %d, listening on %s:%d)\n",
               me.node_id, join, (int)pid, adv, mp);
        printf("  log:      %s/logs/node.log\n", dir);
        fflush(stdout);
    }
    return 0;
}

static double json_num(const cJSON *obj, const char *name)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsNumber(it) ? it->valuedouble : 0;
}

/* A count that may be a number or an array (of tasks, actors, ...). */
static int json_count(const cJSON *obj, const char *name, double *out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (cJSON_IsNumber(it))
        *out = it->valuedouble;
    else if (cJSON_IsArray(it))
        *out = cJSON_GetArraySize(it);
    else if (cJSON_IsObject(it))
        *out = cJSON_GetArraySize(it);
    else
        return 0;
    return 1;
}

/* Whole amounts without a fraction, others with two digits: "4", "0.5", "1769324.46". */
static const char *amount(double v, char *buf, size_t len)
{
    if (v == floor(v) && fabs(v) < 1e15)
        snprintf(buf, len, "%.0f", v);
    else
        snprintf(buf, len, "%.2f", v);
    return buf;
}

static void print_resources(const char *indent, const cJSON *total, const cJSON *avail)
{
    char a1[64], a2[64];
    for (const cJSON *it = total ? total->child : NULL; it; it = it->next) {
        if (!cJSON_IsNumber(it))
            continue;
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(avail, it->string);
        if (cJSON_IsNumber(a))
            printf("%s%-20s %s of %s available\n", indent, it->string,
                   amount(a->valuedouble, a1, sizeof(a1)), amount(it->valuedouble, a2, sizeof(a2)));
        else
            printf("%s%-20s %s\n", indent, it->string, amount(it->valuedouble, a2, sizeof(a2)));
    }
}

static int print_status_summary(const char *json, const char *dir)
{
    cJSON *j = cJSON_Parse(json);
    if (!cJSON_IsObject(j)) {
        fprintf(stderr, "luray status: the node answered with malformed JSON\n");
        cJSON_Delete(j);
        return 1;
    }
    const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(j, "nodes");
    int alive = 0, dead = 0;
    const cJSON *n;
    cJSON_ArrayForEach(n, nodes)
    {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(n, "alive")))
            alive++;
        else
            dead++;
    }
    if (strncmp(dir, "tcp://", 6) == 0)
        printf("luray cluster (head control port %s)\n", dir + 6);
    else
        printf("luray cluster (session %s)\n", dir);
    printf("nodes: %d alive, %d dead\n", alive, dead);
    cJSON_ArrayForEach(n, nodes)
    {
        const cJSON *addr = cJSON_GetObjectItemCaseSensitive(n, "address");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(n, "node_id");
        char idbuf[64];
        if (cJSON_IsString(id))
            snprintf(idbuf, sizeof(idbuf), "%s", id->valuestring);
        else
            amount(json_num(n, "node_id"), idbuf, sizeof(idbuf));
        printf("  node %s  %s  %s\n", idbuf, cJSON_IsString(addr) ? addr->valuestring : "?",
               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(n, "alive")) ? "alive" : "dead");
    }
    printf("resources:\n");
    print_resources("  ", cJSON_GetObjectItemCaseSensitive(j, "resources"),
                    cJSON_GetObjectItemCaseSensitive(j, "available"));
    double running = 0, queued = 0, count = 0;
    json_count(j, "running_tasks", &running);
    json_count(j, "queued_tasks", &queued);
    printf("tasks: %g running, %g queued\n", running, queued);
    static const char *const counts[] = {"actors", "workers", "drivers", "objects"};
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++)
        if (json_count(j, counts[i], &count))
            printf("%s: %g\n", counts[i], count);
    const cJSON *store = cJSON_GetObjectItemCaseSensitive(j, "object_store");
    if (cJSON_IsObject(store)) {
        double cap = json_num(store, "capacity"), used = json_num(store, "used");
        if (!cJSON_GetObjectItemCaseSensitive(j, "objects") &&
            json_count(store, "objects_in_store", &count))
            printf("objects: %g\n", count);
        printf("object store: %.1f MB used of %.1f MB (%.1f%%)\n", used / 1e6, cap / 1e6,
               cap > 0 ? 100.0 * used / cap : 0.0);
        double spilled = 0;
        if ((json_count(store, "spilled_objects", &spilled) ||
             json_count(store, "spilled", &spilled)) && spilled > 0)
            printf("spilled to disk: %g objects, %.1f MB\n", spilled,
                   json_num(store, "spilled_bytes") / 1e6);
    }
    cJSON_Delete(j);
    return 0;
}

/* Status of a cluster with no node on this machine: asked of its head's control port. */
static int remote_status(const char *address, const char *token_file, bool json)
{
    char ctl[300], token[PATH_MAX], err[1024];
    uint8_t key[LURAY_KEY_BYTES];
    if (luray_ctl_resolve(address, token_file, ctl, sizeof(ctl), token, sizeof(token), err,
                          sizeof(err)) != 0 ||
        luray_key_load(token, key, err, sizeof(err)) != 0) {
        fprintf(stderr, "luray status: %s\n", err);
        return 1;
    }
    cJSON *req = cJSON_CreateObject(), *reply = NULL;
    cJSON_AddStringToObject(req, "op", "status");
    int rc = luray_ctl_request(ctl, key, req, &reply, 10000, err, sizeof(err));
    cJSON_Delete(req);
    if (rc != 0) {
        fprintf(stderr, "luray status: %s\n", err);
        return 1;
    }
    char *text = cJSON_PrintUnformatted(reply);
    cJSON_Delete(reply);
    if (!text)
        return 1;
    if (json)
        printf("%s\n", text);
    else
        rc = print_status_summary(text, ctl);
    free(text);
    return rc;
}

static int cmd_status(int argc, char **argv)
{
    const char *address = getenv("LURAY_ADDRESS"), *v = NULL, *token_file = NULL;
    bool json = false;
    if (address && !*address)
        address = NULL;
    for (int i = 2; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(usage_status, stdout);
            return 0;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (opt_value(argc, argv, &i, "--address", &v)) {
            if (!v || !*v)
                return usage_error("status", "%s needs HOST:PORT", "--address");
            address = v;
        } else if (opt_value(argc, argv, &i, "--token-file", &v)) {
            if (!v || !*v)
                return usage_error("status", "%s needs a file", "--token-file");
            token_file = v;
        } else {
            return usage_error("status", "unknown option %s", argv[i]);
        }
    }
    char dir[PATH_MAX], err[1024];
    if (luray_session_find(address, dir, sizeof(dir), err, sizeof(err)) != 0) {
        if (address && strcmp(address, "auto") != 0)
            return remote_status(address, token_file, json);
        fprintf(stderr, "luray status: %s\n", err);
        return 1;
    }
    lua_State *L = new_state();
    if (!L)
        return 1;
    lua_newtable(L);
    lua_pushstring(L, address ? address : "auto");
    lua_setfield(L, -2, "address");
    if (!driver_state(L, "status", NULL, true))
        return 1;
    static const char chunk[] = "local address = ...\n"
                                "if type(luray._status_json) ~= 'function' then\n"
                                "  error('this build of luray has no luray._status_json', 0)\n"
                                "end\n"
                                "return luray._status_json(address)\n";
    int status = luaL_loadbuffer(L, chunk, sizeof(chunk) - 1, "=status");
    if (status == LUA_OK) {
        if (address)
            lua_pushstring(L, address);
        else
            lua_pushnil(L);
        /* No traceback: the failure is one line about the cluster, not about this chunk. */
        status = lua_pcall(L, 1, 1, 0);
    }
    int rc = 0;
    if (status != LUA_OK) {
        fprintf(stderr, "luray status: cannot read the cluster's state: ");
        luray_lua_report(L, status);
        rc = 1;
    } else if (lua_type(L, -1) != LUA_TSTRING) {
        fprintf(stderr, "luray status: the cluster's state is not a JSON string\n");
        lua_pop(L, 1);
        rc = 1;
    } else {
        const char *text = lua_tostring(L, -1);
        if (json) {
            fputs(text, stdout);
            if (!*text || text[strlen(text) - 1] != '\n')
                fputc('\n', stdout);
        } else {
            rc = print_status_summary(text, dir);
        }
        lua_pop(L, 1);
    }
    if (driver_finish(L) != 0)
        rc = 1;
    close_state(L);
    return rc;
}

static int cmd_stop(int argc, char **argv)
{
    for (int i = 2; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(usage_stop, stdout);
            return 0;
        }
        return usage_error("stop", "unknown option %s", argv[i]);
    }
    int n = 0;
    int rc = luray_session_stop_all(&n);
    if (rc == LURAY_ETIMEDOUT) {
        fprintf(stderr, "luray stop: a node did not end even after SIGKILL\n");
        return 1;
    }
    if (rc) {
        fprintf(stderr, "luray stop: %s (the message above says where)\n", luray_strerror(rc));
        return 1;
    }
    if (n == 0)
        printf("no luray cluster was running\n");
    else
        printf("stopped %d node%s\n", n, n == 1 ? "" : "s");
    return 0;
}

static int cmd_plugins(int argc, char **argv)
{
    for (int i = 2; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(usage_plugins, stdout);
            return 0;
        }
        return usage_error("plugins", "unknown option %s", argv[i]);
    }
    int rc = luray_plugins_print(stdout);
    fflush(stdout);
    if (rc) {
        fprintf(stderr, "luray plugins: cannot list plugins: %s\n", luray_strerror(rc));
        return 1;
    }
    return 0;
}

/* `luray _node`: the node daemon, as luray_session_spawn_node starts it. */
static int cmd_node(int argc, char **argv)
{
    luray_node_opts_t opts = {
        .num_cpus = luray_session_default_cpus(),
        .object_store_memory = luray_session_default_store_memory(),
        .node_id = 1,
        .port = LURAY_DEFAULT_PORT,
        .host = LURAY_DEFAULT_HOST,
        .ready_fd = -1,
    };
    const char *v = NULL;
    long n;
    for (int i = 2; i < argc; i++) {
        const char *opt = argv[i];
        bool ok = true;
        if (opt_value(argc, argv, &i, "--session", &v))
            ok = v && (opts.session_dir = v);
        else if (opt_value(argc, argv, &i, "--num-cpus", &v))
            ok = v && parse_count(v, &opts.num_cpus);
        else if (opt_value(argc, argv, &i, "--num-gpus", &v))
            ok = v && parse_count(v, &opts.num_gpus);
        else if (opt_value(argc, argv, &i, "--object-store-memory", &v))
            ok = v && luray_session_parse_size(v, &opts.object_store_memory) == 0;
        else if (opt_value(argc, argv, &i, "--resources", &v))
            ok = v && (opts.resources_json = v);
        else if (opt_value(argc, argv, &i, "--port", &v))
            /* 0: an embedded cluster, which nothing joins by address */
            ok = v && parse_int(v, 0, 65535, &n) && ((opts.port = (int)n), true);
        else if (opt_value(argc, argv, &i, "--host", &v))
            ok = v && (opts.host = v);
        else if (opt_value(argc, argv, &i, "--node-id", &v))
            ok = v && parse_int(v, 1, 0x7fffffffL, &n) && (opts.node_id = (uint32_t)n);
        else if (opt_value(argc, argv, &i, "--ready-fd", &v))
            ok = v && parse_int(v, 0, 65535, &n) && ((opts.ready_fd = (int)n), true);
        else if (strcmp(opt, "--head") == 0)
            opts.head = 1;
        else if (opt_value(argc, argv, &i, "--join", &v))
            ok = v && (opts.join = v);
        else if (opt_value(argc, argv, &i, "--token-file", &v))
            ok = v && (opts.token_file = v);
        else if (opt_value(argc, argv, &i, "--state-dir", &v))
            ok = v && (opts.state_dir = v);
        else
            ok = false;
        if (!ok) {
            fprintf(stderr, "luray _node: bad option %s%s%s\n", opt, v ? " " : "", v ? v : "");
            return EXIT_USAGE;
        }
        v = NULL;
    }
    if (!opts.session_dir) {
        fprintf(stderr, "luray _node: --session DIR is required\n");
        return EXIT_USAGE;
    }
    if (opts.ready_fd >= 0) {
        int fl = fcntl(opts.ready_fd, F_GETFD);
        if (fl < 0) {
            fprintf(stderr, "luray _node: --ready-fd %d is not open\n", opts.ready_fd);
            return EXIT_USAGE;
        }
        /* Workers spawned before the node is ready must not hold the pipe open: the starter
         * would miss the end of file that says the node died. */
        fcntl(opts.ready_fd, F_SETFD, fl | FD_CLOEXEC);
    }
    char exe[PATH_MAX];
    if (!realpath("/proc/self/exe", exe)) {
        fprintf(stderr, "luray _node: cannot find the luray program: %s\n", strerror(errno));
        return 1;
    }
    opts.exe = exe;
    return luray_node_main(&opts);
}

/* `luray _worker`: a worker process; its node set LURAY_SESSION, LURAY_WORKER_ID, LURAY_NODE_ID. */
static int cmd_worker(void)
{
    lua_State *L = new_state();
    if (!L)
        return 1;
    if (!driver_state(L, "_worker", getenv("LURAY_SCRIPT_DIR"), false))
        return 1;
    static const char chunk[] = "return require('luray._worker').main()";
    int status = luaL_loadbuffer(L, chunk, sizeof(chunk) - 1, "=worker");
    if (status == LUA_OK)
        status = luray_lua_pcall_traceback(L, 0, 0);
    if (status != LUA_OK)
        luray_lua_report(L, status);
    close_state(L);
    return status == LUA_OK ? 0 : 1;
}

/* The Lua side of `luray serve status|shutdown`: ... is the command, the address (or nil) and
 * whether to print JSON. */
static const char serve_cli_chunk[] =
    "local cmd, address, json = ...\n"
    "local ok, e = pcall(luray.init, {address = address or 'auto'})\n"
    "if not ok then\n"
    "  if address or not tostring(e):find('no luray cluster is running', 1, true) then\n"
    "    error(e, 0)\n"
    "  end\n"
    "  print(json and '{\"deployments\":{}}' or 'serve: nothing is running (no luray cluster on '\n"
    "    .. 'this machine)')\n"
    "  return\n"
    "end\n"
    "local serve = require('luray.serve')\n"
    "if cmd == 'shutdown' then\n"
    "  local running = next(serve.status().deployments) ~= nil\n"
    "  serve.shutdown()\n"
    "  print(running and 'serve: shut down' or 'serve: nothing was running')\n"
    "  return\n"
    "end\n"
    "local st = serve.status()\n"
    "if json then print(serve.json_encode(st)) return end\n"
    "if not st.proxy then print('serve: nothing is running') return end\n"
    "print(string.format('proxy: http://%s:%d (node %s)', st.proxy.host, st.proxy.port,\n"
    "  st.proxy.node_id))\n"
    "local names = {}\n"
    "for n in pairs(st.deployments) do names[#names + 1] = n end\n"
    "table.sort(names)\n"
    "print(string.format('%-24s %-10s %-9s %s', 'DEPLOYMENT', 'STATUS', 'REPLICAS', 'ROUTE'))\n"
    "for _, n in ipairs(names) do\n"
    "  local d = st.deployments[n]\n"
    "  print(string.format('%-24s %-10s %-9s %s', n, d.status, d.replicas .. '/' ..\n"
    "    d.target_replicas, d.route_prefix or '-'))\n"
    "  if d.message then print('  ' .. d.message) end\n"
    "end\n";

static int serve_cli(int argc, char **argv, const char *cmd)
{
    const char *address = NULL;
    bool json = false;
    for (int i = 3; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(usage_serve, stdout);
            return 0;
        } else if (strcmp(argv[i], "--address") == 0 && i + 1 < argc) {
            address = argv[++i];
        } else if (strcmp(argv[i], "--json") == 0 && strcmp(cmd, "status") == 0) {
            json = true;
        } else {
            fprintf(stderr, "luray serve %s: unknown option %s (see 'luray serve --help')\n", cmd,
                    argv[i]);
            return EXIT_USAGE;
        }
    }
    lua_State *L = new_state();
    if (!L)
        return 1;
    if (!driver_state(L, "serve", NULL, false))
        return 1;
    int rc = 0;
    int status = luaL_loadbuffer(L, serve_cli_chunk, sizeof(serve_cli_chunk) - 1, "=serve");
    if (status == LUA_OK) {
        lua_pushstring(L, cmd);
        if (address)
            lua_pushstring(L, address);
        else
            lua_pushnil(L);
        lua_pushboolean(L, json);
        status = luray_lua_pcall_traceback(L, 3, 0);
    }
    if (status != LUA_OK) {
        fprintf(stderr, "luray serve %s: %s\n", cmd, lua_tostring(L, -1));
        lua_pop(L, 1);
        rc = 1;
    }
    if (driver_finish(L) != 0)
        rc = 1;
    close_state(L);
    return rc;
}

static int cmd_serve(int argc, char **argv)
{
    if (argc < 3 || is_help(argv[2])) {
        fputs(usage_serve, argc < 3 ? stderr : stdout);
        return argc < 3 ? EXIT_USAGE : 0;
    }
    const char *sub = argv[2];
    if (strcmp(sub, "run") == 0) {
        setenv("LURAY_PUBLISH_SESSION", "1", 1);
        serve_block = true;
        return cmd_run(argc - 1, argv + 1);
    }
    if (strcmp(sub, "status") == 0 || strcmp(sub, "shutdown") == 0)
        return serve_cli(argc, argv, sub);
    fprintf(stderr, "luray serve: unknown command '%s' (run, status or shutdown)\n", sub);
    return EXIT_USAGE;
}

int main(int argc, char **argv)
{
    if (argc < 2 || (argv[1][0] == '-' && argv[1][1] != '\0' && !is_help(argv[1]) &&
                     strcmp(argv[1], "--version") != 0))
        return cmd_repl(argc, argv);
    const char *cmd = argv[1];
    if (is_help(cmd)) {
        fputs(usage_main, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("luray " LURAY_VERSION "\n");
        return 0;
    }
    if (strcmp(cmd, "run") == 0)
        return cmd_run(argc, argv);
    if (strcmp(cmd, "start") == 0)
        return cmd_start(argc, argv);
    if (strcmp(cmd, "status") == 0)
        return cmd_status(argc, argv);
    if (strcmp(cmd, "stop") == 0)
        return cmd_stop(argc, argv);
    if (strcmp(cmd, "plugins") == 0)
        return cmd_plugins(argc, argv);
    if (strcmp(cmd, "_node") == 0)
        return cmd_node(argc, argv);
    if (strcmp(cmd, "_worker") == 0)
        return cmd_worker();
    if (strcmp(cmd, "job") == 0)
        return luray_cli_job(argc, argv);
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc, argv);
    if (strcmp(cmd, "help") == 0) {
        if (argc > 2) {
            char *sub[] = {argv[0], argv[2], "--help", NULL};
            return main(3, sub);
        }
        fputs(usage_main, stdout);
        return 0;
    }
    fprintf(stderr, "luray: unknown command '%s' (see 'luray --help')\n", cmd);
    return EXIT_USAGE;
}
