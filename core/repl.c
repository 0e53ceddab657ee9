/* The `luray` REPL: readline editing and history, lua.c's multi-line and "return <expr>" tricks,
 * readable results, Ctrl-C handling; and the non-interactive mode that runs stdin as one chunk. */
#include "repl.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

#include <lauxlib.h>
#include <readline/history.h>
#include <readline/readline.h>

#include "buf.h"
#include "client.h"
#include "lua_util.h"

#define REPL_FORMAT_KEY "luray.repl.format"
#define REPL_CHUNKNAME "=stdin"

/* The result printer is easier to read and to keep right in Lua than in C: it walks tables with
 * raw access (no __index/__pairs surprises), sorts keys where it can, marks cycles, and bounds
 * depth, entries and line width. */
static const char repl_format_src[] =
    "local maxdepth, maxitems, width = 8, 100, 72\n"
    "local keywords = {}\n"
    "for w in ('and break do else elseif end false for function goto if in local nil not or '\n"
    "    .. 'repeat return then true until while'):gmatch('%a+') do keywords[w] = true end\n"
    "local function quote(s) return (string.format('%q', s):gsub('\\\\\\n', '\\\\n')) end\n"
    "local function custom(v)\n"
    "  local mt = getmetatable(v)\n"
    "  return type(v) ~= 'table' or (type(mt) == 'table' and mt.__tostring ~= nil)\n"
    "end\n"
    "local rank = {number = 1, string = 2, boolean = 3}\n"
    "local function keyless(a, b)\n"
    "  local ra, rb = rank[type(a)] or 4, rank[type(b)] or 4\n"
    "  if ra ~= rb then return ra < rb end\n"
    "  if ra <= 2 then return a < b end\n"
    "  if ra == 3 then return not a and b end\n"
    "  return tostring(a) < tostring(b)\n"
    "end\n"
    "local render\n"
    "local function keytext(k, depth, path)\n"
    "  if type(k) == 'string' and k:match('^[%a_][%w_]*$') and not keywords[k] then return k end\n"
    "  if type(k) == 'table' and not custom(k) then return '[' .. tostring(k) .. ']' end\n"
    "  return '[' .. render(k, depth, path, true) .. ']'\n"
    "end\n"
    "render = function(v, depth, path, quoted)\n"
    "  if type(v) == 'string' then return quoted and quote(v) or v end\n"
    "  if custom(v) then return tostring(v) end\n"
    "  if path[v] then return '<cycle>' end\n"
    "  if depth >= maxdepth then return '{...}' end\n"
    "  path[v] = true\n"
    "  local parts, seq, more = {}, 0, 0\n"
    "  while rawget(v, seq + 1) ~= nil do seq = seq + 1 end\n"
    "  for i = 1, seq do\n"
    "    if #parts >= maxitems then more = more + 1\n"
    "    else parts[#parts + 1] = render(rawget(v, i), depth + 1, path, true) end\n"
    "  end\n"
    "  local nseq, keys = #parts, {}\n"
    "  for k in next, v do\n"
    "    if not (math.type(k) == 'integer' and k >= 1 and k <= seq) then keys[#keys + 1] = k end\n"
    "  end\n"
    "  table.sort(keys, keyless)\n"
    "  for _, k in ipairs(keys) do\n"
    "    if #parts >= maxitems then more = more + 1\n"
    "    else parts[#parts + 1] = keytext(k, depth + 1, path) .. ' = '\n"
    "        .. render(rawget(v, k), depth + 1, path, true) end\n"
    "  end\n"
    "  path[v] = nil\n"
    "  if more > 0 then parts[#parts + 1] = '... (' .. more .. ' more)' end\n"
    "  if #parts == 0 then return '{}' end\n"
    "  local line = '{' .. table.concat(parts, ', ') .. '}'\n"
    "  if #line <= width and not line:find('\\n') then return line end\n"
    "  local pad, lines, cur = string.rep('  ', depth + 1), {}, nil\n"
    "  for i, p in ipairs(parts) do\n"
    "    if i <= nseq and not p:find('\\n') then\n"
    "      if cur and #pad + #cur + #p + 3 <= width then cur = cur .. ', ' .. p\n"
    "      else lines[#lines + 1] = cur; cur = p end\n"
    "    else\n"
    "      lines[#lines + 1] = cur; lines[#lines + 1] = p; cur = nil\n"
    "    end\n"
    "  end\n"
    "  lines[#lines + 1] = cur\n"
    "  return '{\\n' .. pad .. table.concat(lines, ',\\n' .. pad) .. ',\\n'\n"
    "      .. string.rep('  ', depth) .. '}'\n"
    "end\n"
    "return function(...)\n"
    "  local out = {}\n"
    "  for i = 1, select('#', ...) do out[i] = render((select(i, ...)), 0, {}, false) end\n"
    "  return table.concat(out, '\\t')\n"
    "end\n";

static const char repl_help[] =
    "Commands:\n"
    "  :help    show this help\n"
    "  :quit    leave the REPL (Ctrl-D too)\n"
    "Type Lua statements or expressions; values are printed. An unfinished statement\n"
    "continues on the next line (prompt \"   ..> \"). Ctrl-C stops a running line, or\n"
    "clears the one being typed.\n"
    "Examples:\n"
    "  ref = luray.put({1, 2, 3})                  -- an ObjectRef\n"
    "  luray.get(ref)                              -- {1, 2, 3}\n"
    "  sq = luray.remote(function(x) return x * x end)\n"
    "  luray.get({sq:remote(2), sq:remote(3)})     -- {4, 9}\n"
    "  Counter = luray.actor{incr = function(self) self.n = (self.n or 0) + 1; return self.n end}\n"
    "  c = Counter:remote(); luray.get(c.incr:remote())\n"
    "  luray.cluster_resources()\n";

/* A signal handler can only reach the state through a global; it is set while the REPL runs. */
static lua_State *volatile g_repl_L;
static volatile sig_atomic_t g_running; /* a chunk is running: Ctrl-C interrupts it */
static volatile sig_atomic_t g_sigint;  /* Ctrl-C arrived at the prompt */

/* Interactive state: readline's callback interface hands a finished line to on_line. */
typedef struct {
    char *history;   /* resolved history file, or NULL for none */
    char *line;      /* line handed over by on_line */
    int line_ready;
    struct sigaction old_sigint;
} repl_t;

static repl_t *g_repl;

/* lua.c's trick: a hook is the only safe way to stop running Lua code from a signal handler. */
static void interrupt_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luray_client_interrupt = 0; /* taken here, not by a wait */
    luaL_error(L, "interrupted!");
}

static void on_sigint(int sig)
{
    if (g_running && g_repl_L != NULL) {
        /* A second Ctrl-C while C code holds on (never returning to Lua) ends the process. */
        signal(sig, SIG_DFL);
        luray_client_interrupt = 1;
        lua_sethook(g_repl_L, interrupt_hook,
                    LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT, 1);
    } else {
        g_sigint = 1;
    }
}

/* No SA_RESTART: select() at the prompt must return EINTR so that the line can be cleared. */
static void sigint_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

static int format_push(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, REPL_FORMAT_KEY) == LUA_TFUNCTION)
        return LUA_OK;
    lua_pop(L, 1);
    int status = luaL_loadbuffer(L, repl_format_src, sizeof(repl_format_src) - 1, "=repl.format");
    if (status == LUA_OK)
        status = luray_lua_pcall_traceback(L, 0, 1);
    if (status != LUA_OK)
        return status;
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, REPL_FORMAT_KEY);
    return LUA_OK;
}

int luray_repl_format(lua_State *L, int first, int n)
{
    first = lua_absindex(L, first);
    luaL_checkstack(L, n + 2, "too many results to print");
    int status = format_push(L);
    if (status != LUA_OK)
        return status;
    for (int i = 0; i < n; i++)
        lua_pushvalue(L, first + i);
    return luray_lua_pcall_traceback(L, n, 1);
}

/* Prints the n values on top of the stack and pops them. */
static void print_results(lua_State *L, int n)
{
    if (n > 0) {
        int status = luray_repl_format(L, -n, n);
        if (status == LUA_OK) {
            size_t len;
            const char *s = lua_tolstring(L, -1, &len);
            fwrite(s, 1, len, stdout);
            fputc('\n', stdout);
            fflush(stdout);
            lua_pop(L, 1);
        } else {
            luray_lua_report(L, status);
        }
    }
    lua_pop(L, n);
}

/* Runs the function on top of the stack, then prints its results or its error. */
static int run_chunk(lua_State *L)
{
    int base = lua_gettop(L); /* the function's index */
    g_repl_L = L;
    g_running = 1;
    int status = luray_lua_pcall_traceback(L, 0, LUA_MULTRET);
    g_running = 0;
    lua_sethook(L, NULL, 0, 0); /* a Ctrl-C that came as the chunk ended must not hit the next */
    sigint_install();           /* on_sigint fell back to SIG_DFL after the first Ctrl-C */
    if (status == LUA_OK)
        print_results(L, lua_gettop(L) - base + 1);
    else
        luray_lua_report(L, status);
    return status;
}

/* ---- non-interactive: stdin is one script ---- */

static int run_stdin(lua_State *L)
{
    luray_buf_t buf;
    luray_buf_init(&buf);
    int rc = 1;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0)
        luray_buf_put(&buf, chunk, n);
    if (ferror(stdin) || buf.err) {
        fprintf(stderr, "luray: cannot read the script from stdin: %s\n",
                buf.err ? "out of memory" : strerror(errno));
        goto out;
    }
    const char *src = buf.len ? (const char *)buf.data : "";
    size_t len = buf.len;
    /* Skip a "#!" line as lua does, keeping its newline so that line numbers stay right. */
    if (len > 0 && src[0] == '#') {
        while (len > 0 && *src != '\n') {
            src++;
            len--;
        }
    }
    int status = luaL_loadbuffer(L, src, len, REPL_CHUNKNAME);
    if (status == LUA_OK)
        status = luray_lua_pcall_traceback(L, 0, 0);
    luray_lua_report(L, status);
    rc = status == LUA_OK ? 0 : 1;
out:
    luray_buf_close(&buf);
    return rc;
}

/* ---- interactive ---- */

enum { READ_LINE, READ_EOF, READ_INTERRUPTED };

static void on_line(char *line)
{
    /* Removing the handler here keeps readline from drawing the next prompt before the output. */
    rl_callback_handler_remove();
    g_repl->line = line;
    g_repl->line_ready = 1;
}

/* Reads one line with readline's callback interface, so that Ctrl-C can abandon it cleanly. */
static int read_line(repl_t *r, const char *prompt, char **out)
{
    *out = NULL;
    r->line = NULL;
    r->line_ready = 0;
    g_sigint = 0;
    rl_callback_handler_install(prompt, on_line);
    while (!r->line_ready) {
        fd_set fds;
        int fd = fileno(rl_instream);
        FD_ZERO(&fds);
        FD_SET(fd, &fds);
        int n = select(fd + 1, &fds, NULL, NULL, NULL);
        if (n < 0 && errno == EINTR) {
            if (!g_sigint)
                continue;
            g_sigint = 0;
            rl_free_line_state();
            rl_callback_sigcleanup();
            rl_cleanup_after_signal();
            rl_callback_handler_remove();
            fputc('\n', rl_outstream);
            fflush(rl_outstream);
            return READ_INTERRUPTED;
        }
        if (n < 0) {
            rl_callback_handler_remove();
            return READ_EOF;
        }
        rl_callback_read_char();
    }
    *out = r->line;
    return r->line ? READ_LINE : READ_EOF;
}

static void history_open(repl_t *r, const luray_repl_opts_t *opts)
{
    const char *env = getenv("LURAY_HISTORY");
    const char *home = getenv("HOME");
    using_history();
    stifle_history(LURAY_REPL_HISTORY_MAX);
    if (env != NULL) {
        r->history = env[0] ? strdup(env) : NULL; /* LURAY_HISTORY="" keeps no history */
    } else if (opts->history_path != NULL) {
        r->history = strdup(opts->history_path);
    } else if (home != NULL && home[0]) {
        size_t len = strlen(home) + sizeof("/.luray_history");
        r->history = malloc(len);
        if (r->history != NULL)
            snprintf(r->history, len, "%s/.luray_history", home);
    }
    if (r->history == NULL)
        return;
    read_history(r->history);
    /* append_history() needs the file to exist; lines are appended as they come so that a
     * killed session keeps them. */
    int fd = open(r->history, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
}

static void history_add(repl_t *r, const char *line)
{
    const char *p = line;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\0')
        return;
    HIST_ENTRY *last = history_length > 0 ? history_get(history_base + history_length - 1) : NULL;
    if (last != NULL && strcmp(last->line, line) == 0)
        return;
    add_history(line);
    if (r->history != NULL)
        append_history(1, r->history);
}

static void history_close(repl_t *r)
{
    if (r->history != NULL)
        history_truncate_file(r->history, LURAY_REPL_HISTORY_MAX);
    clear_history();
    free(r->history);
    r->history = NULL;
}

/* A chunk is incomplete when it fails to compile only because the input ended early. */
static int incomplete(lua_State *L, int status)
{
    static const char eof_mark[] = "<eof>";
    const size_t marklen = sizeof(eof_mark) - 1;
    if (status != LUA_ERRSYNTAX)
        return 0;
    size_t len;
    const char *msg = lua_tolstring(L, -1, &len);
    return msg != NULL && len >= marklen && strcmp(msg + len - marklen, eof_mark) == 0;
}

enum { CHUNK_READY, CHUNK_NONE, CHUNK_QUIT };

/* Handles ":command" lines; returns -1 when the line is not one. */
static int command_run(const char *line)
{
    while (*line == ' ' || *line == '\t')
        line++;
    if (line[0] != ':' || line[1] < 'a' || line[1] > 'z')
        return -1; /* "::label::" is Lua */
    char name[32];
    size_t n = 0;
    const char *p = line + 1;
    while (*p >= 'a' && *p <= 'z' && n < sizeof(name) - 1)
        name[n++] = *p++;
    name[n] = '\0';
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != '\0')
        return -1;
    if (strcmp(name, "quit") == 0 || strcmp(name, "q") == 0 || strcmp(name, "exit") == 0)
        return CHUNK_QUIT;
    if (strcmp(name, "help") == 0 || strcmp(name, "h") == 0)
        fputs(repl_help, stdout);
    else
        printf("unknown command :%s (try :help)\n", name);
    fflush(stdout);
    return CHUNK_NONE;
}

/* Reads lines until they make a chunk that compiles (left on the stack: CHUNK_READY), or until
 * there is nothing to run (CHUNK_NONE: empty line, command, Ctrl-C, syntax error) or to read. */
static int chunk_read(repl_t *r, lua_State *L)
{
    char *line;
    int rc = read_line(r, LURAY_REPL_PROMPT, &line);
    if (rc == READ_EOF) {
        fputc('\n', stdout);
        return CHUNK_QUIT;
    }
    if (rc == READ_INTERRUPTED)
        return CHUNK_NONE;
    history_add(r, line);
    int cmd = command_run(line);
    if (cmd >= 0 || line[strspn(line, " \t")] == '\0') {
        free(line);
        return cmd >= 0 ? cmd : CHUNK_NONE;
    }
    /* An expression first, so that "1 + 1" prints 2. */
    const char *ret = lua_pushfstring(L, "return %s;", line);
    if (luaL_loadbuffer(L, ret, strlen(ret), REPL_CHUNKNAME) == LUA_OK) {
        lua_remove(L, -2);
        free(line);
        return CHUNK_READY;
    }
    lua_pop(L, 2);
    lua_pushstring(L, line); /* the chunk so far */
    free(line);
    for (;;) {
        size_t len;
        const char *src = lua_tolstring(L, -1, &len);
        int status = luaL_loadbuffer(L, src, len, REPL_CHUNKNAME);
        if (status == LUA_OK) {
            lua_remove(L, -2);
            return CHUNK_READY;
        }
        if (!incomplete(L, status)) {
            lua_remove(L, -2);
            luray_lua_report(L, status);
            return CHUNK_NONE;
        }
        lua_pop(L, 1);
        rc = read_line(r, LURAY_REPL_PROMPT2, &line);
        if (rc != READ_LINE) {
            lua_pop(L, 1); /* Ctrl-C or Ctrl-D drops the unfinished chunk */
            if (rc == READ_EOF)
                fputc('\n', stdout);
            return CHUNK_NONE;
        }
        history_add(r, line);
        lua_pushliteral(L, "\n");
        lua_pushstring(L, line);
        lua_concat(L, 3);
        free(line);
    }
}

static int run_interactive(lua_State *L, const luray_repl_opts_t *opts)
{
    repl_t r;
    memset(&r, 0, sizeof(r));
    g_repl = &r;
    g_repl_L = L;
    rl_readline_name = "luray";
    rl_catch_signals = 0; /* SIGINT is ours: see on_sigint */
    rl_instream = stdin;
    rl_outstream = stdout;
    history_open(&r, opts);
    sigaction(SIGINT, NULL, &r.old_sigint);
    sigint_install();
    if (opts->banner != NULL && opts->banner[0])
        printf("%s\n", opts->banner);
    fflush(stdout);

    for (;;) {
        int top = lua_gettop(L);
        int rc = chunk_read(&r, L);
        if (rc == CHUNK_QUIT)
            break;
        if (rc == CHUNK_READY)
            run_chunk(L);
        lua_settop(L, top);
    }

    history_close(&r);
    sigaction(SIGINT, &r.old_sigint, NULL);
    g_repl_L = NULL;
    g_repl = NULL;
    return 0;
}

int luray_repl_run(lua_State *L, const luray_repl_opts_t *opts)
{
    luray_repl_opts_t defaults = {.interactive = isatty(STDIN_FILENO) != 0};
    if (opts == NULL)
        opts = &defaults;
    if (!opts->interactive)
        return run_stdin(L);
    return run_interactive(L, opts);
}
