/* The `luray` REPL: readline editing and history, multi-line chunks, readable results, and the
 * non-interactive mode that runs all of stdin as one script. */
#ifndef LURAY_CORE_REPL_H
#define LURAY_CORE_REPL_H

#include <stdbool.h>

#include <lua.h>

#define LURAY_REPL_PROMPT "luray> "
#define LURAY_REPL_PROMPT2 "   ..> "
#define LURAY_REPL_HISTORY_MAX 1000

typedef struct luray_repl_opts {
    bool interactive;         /* stdin is a terminal: prompts, line editing, history */
    const char *history_path; /* NULL: ~/.luray_history; env LURAY_HISTORY overrides both */
    const char *banner;       /* printed once when interactive; NULL for none */
} luray_repl_opts_t;

/* Runs the REPL on L until :quit or end of input (interactive), or runs all of stdin as one chunk
 * named "=stdin" (not interactive). opts NULL means interactive when stdin is a terminal.
 * Returns an exit status: 0, or 1 when the script raised or stdin could not be read. */
int luray_repl_run(lua_State *L, const luray_repl_opts_t *opts);

/* Pushes the readable text of the n values from stack index first on, separated by tabs, as the
 * REPL prints results (tables pretty-printed, strings quoted inside tables). Returns the Lua
 * status; on error the message is pushed instead. */
int luray_repl_format(lua_State *L, int first, int n);

#endif
