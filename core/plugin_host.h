/* Finding, loading and requiring luray plugins (shared libraries exporting luray_plugin_entry).
 *
 * Search path: every directory of env LURAY_PLUGIN_PATH (colon-separated), then the install's
 * plugin folder <dir of the executable>/../lib/luray/plugins. The first <name>.so found wins. A
 * plugin is loaded once per process (dlopen RTLD_NOW|RTLD_LOCAL, then init); its serializers are
 * registered in each Lua state that loads it or meets one of its types. */
#ifndef LURAY_CORE_PLUGIN_HOST_H
#define LURAY_CORE_PLUGIN_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <lua.h>

#include "luray/plugin.h"

typedef struct {
    char *name;        /* file stem: "example" for example.so */
    char *path;        /* the file */
    char *version;     /* NULL when the file has no readable description */
    char *description; /* NULL likewise */
    uint32_t abi;      /* ABI the plugin was built against; 0 when unknown */
    bool loadable;     /* false: `error` says why */
    bool loaded;       /* loaded (and initialised) in this process */
    char error[512];
} luray_plugin_info_t;

/* Lists every plugin on the search path, sorted by name. Each file is dlopen'ed to read its
 * description (not initialised). Free the list with luray_plugins_free. */
int luray_plugins_scan(luray_plugin_info_t **list, size_t *n);
/* Lists the plugins loaded in this process, in load order. */
int luray_plugins_loaded(luray_plugin_info_t **list, size_t *n);
void luray_plugins_free(luray_plugin_info_t *list, size_t n);
/* Prints the scan as the table of `luray plugins` (name, version, abi, path, status). */
int luray_plugins_print(FILE *out);

/* Loads plugin `name` (once per process) and registers its serializers in L (once per state; L
 * may be NULL to only load). On failure returns a LURAY_E* code and writes a message naming the
 * file into err: LURAY_ENOENT (no such plugin), LURAY_EINVAL (bad name), LURAY_EIO (dlopen
 * failed), LURAY_EABI (no entry symbol, wrong ABI or description), or init's own error. */
int luray_plugin_load(lua_State *L, const char *name, char *err, size_t errlen);
/* The description of a loaded plugin, or NULL. */
const luray_plugin_t *luray_plugin_find(const char *name);

/* Adds a package.searchers entry, after the Lua file searcher: require("luray.<name>") loads the
 * plugin and returns its module unless a Lua file of that name came first; the C module is
 * always reachable as require("luray._plugin.<name>"). Installing twice is a no-op. */
void luray_plugins_install_searcher(lua_State *L);

/* A luray_ser_resolver_fn: loads the plugin named by type_name's part before the first '.' and
 * returns 0 when it registered a serializer for type_name in L. */
int luray_plugins_resolve_type(lua_State *L, const char *type_name);

/* Calls every loaded plugin's shutdown hook, last loaded first, and forgets them. The libraries
 * stay mapped: Lua states may still hold their functions. Call at process exit. */
void luray_plugins_unload_all(void);

#endif
