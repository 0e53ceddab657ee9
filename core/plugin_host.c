/* Plugin discovery and loading: the search path, dlopen and the ABI handshake, the process-wide
 * list of loaded plugins, and the package.searchers entry behind require("luray.<name>"). */
#include "plugin_host.h"

#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "errors_str.h"
#include "log.h"
#include "serialize.h"

#define NAME_MAX_LEN 63
#define REG_REGISTERED "luray.plugins.registered" /* per state: name -> true */
#define REG_MODULES "luray.plugins.modules"       /* per state: name -> the C module's value */
#define PLUGIN_PREFIX "luray."
#define PLUGIN_C_PREFIX "luray._plugin."

/* The fields of ABI 1; a plugin's description must be at least this large. Later fields are
 * read only when the plugin's `size` covers them. */
#define PLUGIN_V1_SIZE (offsetof(luray_plugin_t, serializers) + sizeof(const luray_serializer_t *))

typedef struct plugin_rec {
    struct plugin_rec *next; /* the list runs from the last loaded to the first */
    char *name;
    char *path;
    void *handle;
    const luray_plugin_t *desc;
} plugin_rec_t;

/* dlopen handles are process-wide by nature, so the loaded list is too; the lock makes loading
 * from several threads (each with its own Lua state) safe. */
static pthread_mutex_t plugins_lock = PTHREAD_MUTEX_INITIALIZER;
static plugin_rec_t *plugins_head;

typedef struct {
    char **dirs;
    size_t n;
} path_list_t;

/* A name becomes a file name and a module name: no '/', no '.', nothing surprising. */
static bool valid_name(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > NAME_MAX_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

static void path_list_free(path_list_t *pl)
{
    for (size_t i = 0; i < pl->n; i++)
        free(pl->dirs[i]);
    free(pl->dirs);
    pl->dirs = NULL;
    pl->n = 0;
}

static int path_list_add(path_list_t *pl, const char *dir, size_t len)
{
    char **dirs = realloc(pl->dirs, (pl->n + 1) * sizeof(*dirs));
    if (dirs == NULL)
        return LURAY_ENOMEM;
    pl->dirs = dirs;
    pl->dirs[pl->n] = strndup(dir, len);
    if (pl->dirs[pl->n] == NULL)
        return LURAY_ENOMEM;
    pl->n++;
    return 0;
}

/* <dir of /proc/self/exe>/../lib/luray/plugins, resolved when it exists. */
static int install_dir(char *out, size_t outlen)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return LURAY_ENOENT;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash == NULL)
        return LURAY_ENOENT;
    *slash = '\0';
    char joined[PATH_MAX + 32];
    snprintf(joined, sizeof(joined), "%s/../lib/luray/plugins", exe);
    char resolved[PATH_MAX];
    const char *dir = realpath(joined, resolved) ? resolved : joined;
    if (strlen(dir) >= outlen)
        return LURAY_ETOOBIG;
    strcpy(out, dir);
    return 0;
}

static int search_path(path_list_t *pl)
{
    int rc;
    pl->dirs = NULL;
    pl->n = 0;
    const char *env = getenv("LURAY_PLUGIN_PATH");
    while (env != NULL && *env != '\0') {
        const char *colon = strchr(env, ':');
        size_t len = colon ? (size_t)(colon - env) : strlen(env);
        if (len > 0 && (rc = path_list_add(pl, env, len)) != 0)
            goto err_free;
        env = colon ? colon + 1 : NULL;
    }
    char dir[PATH_MAX];
    if (install_dir(dir, sizeof(dir)) == 0 && (rc = path_list_add(pl, dir, strlen(dir))) != 0)
        goto err_free;
    return 0;
err_free:
    path_list_free(pl);
    return rc;
}

/* "a:b:c" for error messages. */
static void path_list_join(const path_list_t *pl, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < pl->n && used < outlen; i++) {
        int w = snprintf(out + used, outlen - used, "%s%s", i ? ":" : "", pl->dirs[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
    if (pl->n == 0)
        snprintf(out, outlen, "(empty)");
}

/* Finds <name>.so on the search path; *path is malloc'ed. */
static int find_plugin_file(const char *name, char **path, char *err, size_t errlen)
{
    path_list_t pl;
    int rc = search_path(&pl);
    if (rc != 0) {
        luray_set_err(err, errlen, "plugin '%s': %s", name, luray_strerror(rc));
        return rc;
    }
    rc = LURAY_ENOENT;
    for (size_t i = 0; i < pl.n; i++) {
        char file[PATH_MAX];
        int w = snprintf(file, sizeof(file), "%s/%s.so", pl.dirs[i], name);
        if (w < 0 || (size_t)w >= sizeof(file) || access(file, F_OK) != 0)
            continue;
        *path = strdup(file);
        rc = *path ? 0 : LURAY_ENOMEM;
        goto out;
    }
    char dirs[1024];
    path_list_join(&pl, dirs, sizeof(dirs));
    luray_set_err(err, errlen, "plugin '%s' not found: no %s.so in LURAY_PLUGIN_PATH or the install "
            "folder (searched %s)", name, name, dirs);
out:
    path_list_free(&pl);
    return rc;
}

/* The handshake: entry symbol, description, ABI, size, name. Reads nothing past `abi` and `size`
 * until the ABI is known to match. */
static int plugin_check(void *handle, const char *path, const char *name,
                        const luray_plugin_t **out, char *err, size_t errlen)
{
    void *sym = dlsym(handle, LURAY_PLUGIN_ENTRY_SYMBOL);
    if (sym == NULL) {
        luray_set_err(err, errlen, "plugin %s: no symbol %s", path, LURAY_PLUGIN_ENTRY_SYMBOL);
        return LURAY_EABI;
    }
    luray_plugin_entry_fn entry;
    /* ISO C has no function/object pointer conversion; POSIX guarantees this one. */
    memcpy(&entry, &sym, sizeof(entry));
    const luray_plugin_t *desc = entry();
    *out = desc;
    if (desc == NULL) {
        luray_set_err(err, errlen, "plugin %s: %s returned no description", path,
                LURAY_PLUGIN_ENTRY_SYMBOL);
        return LURAY_EABI;
    }
    if (desc->abi != LURAY_PLUGIN_ABI) {
        luray_set_err(err, errlen,
                "plugin %s: built for ABI %u, this luray has ABI %d; rebuild it against this "
                "luray's include/luray/plugin.h", path, (unsigned)desc->abi, LURAY_PLUGIN_ABI);
        return LURAY_EABI;
    }
    if (desc->size < PLUGIN_V1_SIZE) {
        luray_set_err(err, errlen,
                "plugin %s: its description is %u bytes, ABI %d needs at least %zu; rebuild it "
                "against this luray's include/luray/plugin.h", path, (unsigned)desc->size,
                LURAY_PLUGIN_ABI, (size_t)PLUGIN_V1_SIZE);
        return LURAY_EABI;
    }
    if (desc->name == NULL || strcmp(desc->name, name) != 0) {
        luray_set_err(err, errlen, "plugin %s: declares the name '%s' but its file is %s.so; the "
                "names must match", path, desc->name ? desc->name : "(null)", name);
        return LURAY_EABI;
    }
    return 0;
}

static plugin_rec_t *find_rec_locked(const char *name)
{
    for (plugin_rec_t *r = plugins_head; r != NULL; r = r->next) {
        if (strcmp(r->name, name) == 0)
            return r;
    }
    return NULL;
}

/* Loads and initialises the plugin unless it already is; returns its record. */
static int load_locked(const char *name, plugin_rec_t **out, char *err, size_t errlen)
{
    int rc;
    plugin_rec_t *rec = find_rec_locked(name);
    if (rec != NULL) {
        *out = rec;
        return 0;
    }
    char *path = NULL;
    if ((rc = find_plugin_file(name, &path, err, errlen)) != 0)
        return rc;
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        const char *why = dlerror();
        luray_set_err(err, errlen, "plugin %s: cannot load: %s", path, why ? why : "unknown error");
        rc = LURAY_EIO;
        goto err_free_path;
    }
    const luray_plugin_t *desc = NULL;
    if ((rc = plugin_check(handle, path, name, &desc, err, errlen)) != 0)
        goto err_close;
    rec = calloc(1, sizeof(*rec));
    if (rec == NULL || (rec->name = strdup(name)) == NULL) {
        luray_set_err(err, errlen, "plugin %s: out of memory", path);
        rc = LURAY_ENOMEM;
        goto err_free_rec;
    }
    if (desc->init != NULL && (rc = desc->init(luray_host_api())) != 0) {
        if (rc > 0)
            rc = LURAY_ESTATE; /* a plugin bug, but still a failure */
        luray_set_err(err, errlen, "plugin %s: init failed: %s", path, luray_strerror(rc));
        goto err_free_rec;
    }
    rec->path = path;
    rec->handle = handle;
    rec->desc = desc;
    rec->next = plugins_head;
    plugins_head = rec;
    luray_log(LURAY_LOG_DEBUG, "plugins", "loaded %s %s from %s", name,
              desc->version ? desc->version : "?", path);
    *out = rec;
    return 0;

err_free_rec:
    if (rec != NULL)
        free(rec->name);
    free(rec);
err_close:
    dlclose(handle);
err_free_path:
    free(path);
    return rc;
}

/* Registers the plugin's serializers in L, once per state. */
static int register_in_state(lua_State *L, const plugin_rec_t *rec, char *err, size_t errlen)
{
    int rc = 0;
    luaL_getsubtable(L, LUA_REGISTRYINDEX, REG_REGISTERED);
    if (lua_getfield(L, -1, rec->name) != LUA_TNIL)
        goto out;
    for (const luray_serializer_t *s = rec->desc->serializers; s && s->type_name; s++) {
        if ((rc = luray_ser_register(L, s)) != 0) {
            luray_set_err(err, errlen, "plugin %s: cannot register the serializer of %s: %s",
                    rec->path, s->type_name, luray_strerror(rc));
            goto out;
        }
    }
    lua_pushboolean(L, 1);
    lua_setfield(L, -3, rec->name);
out:
    lua_pop(L, 2);
    return rc;
}

int luray_plugin_load(lua_State *L, const char *name, char *err, size_t errlen)
{
    if (name == NULL || !valid_name(name)) {
        luray_set_err(err, errlen, "plugin '%s': invalid name (letters, digits, '_' and '-' only)",
                name ? name : "(null)");
        return LURAY_EINVAL;
    }
    plugin_rec_t *rec = NULL;
    pthread_mutex_lock(&plugins_lock);
    int rc = load_locked(name, &rec, err, errlen);
    pthread_mutex_unlock(&plugins_lock);
    if (rc != 0 || L == NULL)
        return rc;
    /* The record lives until luray_plugins_unload_all, which runs at exit. */
    return register_in_state(L, rec, err, errlen);
}

const luray_plugin_t *luray_plugin_find(const char *name)
{
    pthread_mutex_lock(&plugins_lock);
    plugin_rec_t *rec = find_rec_locked(name);
    const luray_plugin_t *desc = rec ? rec->desc : NULL;
    pthread_mutex_unlock(&plugins_lock);
    return desc;
}

static char *strdup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int info_from_desc(luray_plugin_info_t *info, const luray_plugin_t *desc)
{
    info->abi = desc->abi;
    if (desc->abi != LURAY_PLUGIN_ABI)
        return 0; /* the other fields' layout is unknown */
    info->version = strdup_or_null(desc->version);
    info->description = strdup_or_null(desc->description);
    if ((desc->version && !info->version) || (desc->description && !info->description))
        return LURAY_ENOMEM;
    return 0;
}

void luray_plugins_free(luray_plugin_info_t *list, size_t n)
{
    if (list == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        free(list[i].name);
        free(list[i].path);
        free(list[i].version);
        free(list[i].description);
    }
    free(list);
}

int luray_plugins_loaded(luray_plugin_info_t **list, size_t *n)
{
    int rc = 0;
    *list = NULL;
    *n = 0;
    pthread_mutex_lock(&plugins_lock);
    size_t count = 0;
    for (plugin_rec_t *r = plugins_head; r != NULL; r = r->next)
        count++;
    luray_plugin_info_t *out = calloc(count ? count : 1, sizeof(*out));
    if (out == NULL) {
        rc = LURAY_ENOMEM;
        goto out_unlock;
    }
    size_t i = count;
    for (plugin_rec_t *r = plugins_head; r != NULL; r = r->next) {
        luray_plugin_info_t *info = &out[--i]; /* the list is newest first; report load order */
        info->loadable = info->loaded = true;
        info->name = strdup(r->name);
        info->path = strdup(r->path);
        if (!info->name || !info->path || info_from_desc(info, r->desc) != 0) {
            luray_plugins_free(out, count);
            rc = LURAY_ENOMEM;
            goto out_unlock;
        }
    }
    *list = out;
    *n = count;
out_unlock:
    pthread_mutex_unlock(&plugins_lock);
    return rc;
}

/* Fills info for one file found by the scan: from the loaded record, or by dlopen'ing it. */
static int scan_one(luray_plugin_info_t *info, const char *name, const char *path)
{
    pthread_mutex_lock(&plugins_lock);
    plugin_rec_t *rec = find_rec_locked(name);
    if (rec != NULL) {
        info->loadable = info->loaded = true;
        info->path = strdup(rec->path);
        int rc = info->path ? info_from_desc(info, rec->desc) : LURAY_ENOMEM;
        pthread_mutex_unlock(&plugins_lock);
        return rc;
    }
    pthread_mutex_unlock(&plugins_lock);

    info->path = strdup(path);
    if (info->path == NULL)
        return LURAY_ENOMEM;
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        const char *why = dlerror();
        luray_set_err(info->error, sizeof(info->error), "plugin %s: cannot load: %s", path,
                why ? why : "unknown error");
        return 0;
    }
    const luray_plugin_t *desc = NULL;
    int rc = 0;
    if (plugin_check(handle, path, name, &desc, info->error, sizeof(info->error)) == 0)
        info->loadable = true;
    if (desc != NULL)
        rc = info_from_desc(info, desc); /* copies: the strings go away with dlclose */
    dlclose(handle);
    return rc;
}

static int info_cmp(const void *a, const void *b)
{
    return strcmp(((const luray_plugin_info_t *)a)->name, ((const luray_plugin_info_t *)b)->name);
}

static bool has_name(const luray_plugin_info_t *list, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i].name, name) == 0)
            return true;
    }
    return false;
}

int luray_plugins_scan(luray_plugin_info_t **list, size_t *n)
{
    int rc;
    path_list_t pl;
    luray_plugin_info_t *out = NULL;
    size_t count = 0, cap = 0;
    *list = NULL;
    *n = 0;
    if ((rc = search_path(&pl)) != 0)
        return rc;
    for (size_t d = 0; d < pl.n; d++) {
        DIR *dir = opendir(pl.dirs[d]);
        if (dir == NULL)
            continue; /* a missing folder on the path is not an error */
        struct dirent *ent;
        while ((ent = readdir(dir)) != NULL) {
            size_t len = strlen(ent->d_name);
            if (len <= 3 || strcmp(ent->d_name + len - 3, ".so") != 0)
                continue;
            char name[NAME_MAX_LEN + 1];
            if (len - 3 > NAME_MAX_LEN)
                continue;
            memcpy(name, ent->d_name, len - 3);
            name[len - 3] = '\0';
            if (!valid_name(name) || has_name(out, count, name))
                continue; /* first found wins */
            if (count == cap) {
                size_t ncap = cap ? cap * 2 : 8;
                luray_plugin_info_t *grown = realloc(out, ncap * sizeof(*grown));
                if (grown == NULL) {
                    closedir(dir);
                    rc = LURAY_ENOMEM;
                    goto err_free;
                }
                out = grown;
                cap = ncap;
            }
            luray_plugin_info_t *info = &out[count++];
            memset(info, 0, sizeof(*info));
            char path[PATH_MAX];
            snprintf(path, sizeof(path), "%s/%s", pl.dirs[d], ent->d_name);
            if ((info->name = strdup(name)) == NULL || (rc = scan_one(info, name, path)) != 0) {
                closedir(dir);
                rc = rc ? rc : LURAY_ENOMEM;
                goto err_free;
            }
        }
        closedir(dir);
    }
    path_list_free(&pl);
    if (count > 1)
        qsort(out, count, sizeof(*out), info_cmp);
    *list = out;
    *n = count;
    return 0;
err_free:
    luray_plugins_free(out, count);
    path_list_free(&pl);
    return rc;
}

int luray_plugins_print(FILE *out)
{
    luray_plugin_info_t *list;
    size_t n;
    int rc = luray_plugins_scan(&list, &n);
    if (rc != 0)
        return rc;
    if (n == 0) {
        path_list_t pl;
        char dirs[1024] = "(unknown)";
        if (search_path(&pl) == 0) {
            path_list_join(&pl, dirs, sizeof(dirs));
            path_list_free(&pl);
        }
        fprintf(out, "no plugins found (searched %s)\n", dirs);
        return 0;
    }
    fprintf(out, "%-16s %-10s %-4s %-48s %s\n", "NAME", "VERSION", "ABI", "PATH", "STATUS");
    for (size_t i = 0; i < n; i++) {
        const luray_plugin_info_t *p = &list[i];
        char abi[16] = "?";
        if (p->abi != 0)
            snprintf(abi, sizeof(abi), "%u", (unsigned)p->abi);
        const char *status = p->loaded ? "loaded" : p->loadable ? "available" : "error";
        fprintf(out, "%-16s %-10s %-4s %-48s %s%s%s\n", p->name, p->version ? p->version : "?",
                abi, p->path, status, p->loadable ? "" : ": ", p->loadable ? "" : p->error);
    }
    luray_plugins_free(list, n);
    return 0;
}

int luray_plugins_resolve_type(lua_State *L, const char *type_name)
{
    const char *dot = strchr(type_name, '.');
    size_t len = dot ? (size_t)(dot - type_name) : 0;
    if (len == 0 || len > NAME_MAX_LEN)
        return LURAY_ENOENT;
    char name[NAME_MAX_LEN + 1];
    memcpy(name, type_name, len);
    name[len] = '\0';
    if (!valid_name(name))
        return LURAY_ENOENT;
    char err[512];
    int rc = luray_plugin_load(L, name, err, sizeof(err));
    if (rc != 0) {
        luray_log(LURAY_LOG_DEBUG, "plugins", "no serializer for %s: %s", type_name, err);
        return rc;
    }
    const luray_plugin_t *desc = luray_plugin_find(name);
    for (const luray_serializer_t *s = desc ? desc->serializers : NULL; s && s->type_name; s++) {
        if (strcmp(s->type_name, type_name) == 0)
            return 0;
    }
    luray_log(LURAY_LOG_DEBUG, "plugins", "plugin %s has no serializer for %s", name, type_name);
    return LURAY_ENOENT;
}

void luray_plugins_unload_all(void)
{
    pthread_mutex_lock(&plugins_lock);
    plugin_rec_t *list = plugins_head;
    plugins_head = NULL;
    pthread_mutex_unlock(&plugins_lock);
    while (list != NULL) { /* newest first: a later plugin may use an earlier one */
        plugin_rec_t *next = list->next;
        if (list->desc->shutdown != NULL)
            list->desc->shutdown();
        free(list->name);
        free(list->path);
        free(list);
        list = next;
    }
}

/* --- the Lua binding: package.searchers entry ------------------------------------------------ */

/* Loader returned by the searcher: opens the C module once per state, for both of its names. */
static int l_plugin_loader(lua_State *L)
{
    const char *name = lua_tostring(L, lua_upvalueindex(1));
    luaL_getsubtable(L, LUA_REGISTRYINDEX, REG_MODULES);
    if (lua_getfield(L, -1, name) != LUA_TNIL)
        return 1;
    lua_pop(L, 1);
    const luray_plugin_t *desc = luray_plugin_find(name);
    if (desc == NULL) /* unloaded between search and load: only at exit */
        return luaL_error(L, "plugin '%s' is no longer loaded", name);
    if (desc->luaopen == NULL) {
        lua_pushboolean(L, 1); /* what require gives for a module that returns nothing */
    } else {
        lua_pushcfunction(L, desc->luaopen);
        lua_pushvalue(L, 1);
        lua_pushvalue(L, 2);
        lua_call(L, 2, 1);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_pushboolean(L, 1);
        }
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, name);
    return 1;
}

static int l_plugin_searcher(lua_State *L)
{
    const char *mod = luaL_checkstring(L, 1);
    const char *name;
    if (strncmp(mod, PLUGIN_C_PREFIX, strlen(PLUGIN_C_PREFIX)) == 0)
        name = mod + strlen(PLUGIN_C_PREFIX);
    else if (strncmp(mod, PLUGIN_PREFIX, strlen(PLUGIN_PREFIX)) == 0)
        name = mod + strlen(PLUGIN_PREFIX);
    else
        return 0; /* not ours: add nothing to require's message */
    if (!valid_name(name))
        return 0; /* "luray.data.csv" and the like are Lua modules, not plugins */
    char err[1024];
    int rc = luray_plugin_load(L, name, err, sizeof(err));
    if (rc == LURAY_ENOENT) {
        lua_pushstring(L, err); /* require lists it among the places it looked */
        return 1;
    }
    if (rc != 0) /* the file exists but is broken: stop here, as Lua's C searcher does */
        return luaL_error(L, "error loading module '%s':\n\t%s", mod, err);
    lua_pushstring(L, name);
    lua_pushcclosure(L, l_plugin_loader, 1);
    pthread_mutex_lock(&plugins_lock);
    plugin_rec_t *rec = find_rec_locked(name);
    lua_pushstring(L, rec ? rec->path : name);
    pthread_mutex_unlock(&plugins_lock);
    return 2;
}

void luray_plugins_install_searcher(lua_State *L)
{
    int top = lua_gettop(L);
    if (lua_getglobal(L, "package") != LUA_TTABLE ||
        lua_getfield(L, -1, "searchers") != LUA_TTABLE)
        goto out; /* no package library: nothing to extend */
    lua_Integer len = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; i <= len; i++) {
        lua_rawgeti(L, -1, i);
        bool ours = lua_tocfunction(L, -1) == l_plugin_searcher;
        lua_pop(L, 1);
        if (ours)
            goto out;
    }
    /* After preload (1) and the Lua file searcher (2), so a Lua wrapper of the same name wins. */
    lua_Integer at = len < 2 ? len + 1 : 3;
    for (lua_Integer i = len; i >= at; i--) {
        lua_rawgeti(L, -1, i);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushcfunction(L, l_plugin_searcher);
    lua_rawseti(L, -2, at);
out:
    lua_settop(L, top);
}
