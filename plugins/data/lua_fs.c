/* File-system helpers the Data planner needs and Lua lacks: list a folder, stat a path, make a
 * folder tree. Runtime failures return nil, message (luv's convention). */
#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lua_data.h"

static int push_fail(lua_State *L, const char *what, const char *path)
{
    lua_pushnil(L);
    lua_pushfstring(L, "%s '%s': %s", what, path, strerror(errno));
    return 2;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* C.list_dir(path) -> sorted list of entry names (no "." or ".."), or nil, message. */
static int l_list_dir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    DIR *d = opendir(path);
    if (d == NULL)
        return push_fail(L, "cannot list", path);
    lua_newtable(L);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        lua_pushstring(L, e->d_name);
        lua_rawseti(L, -2, ++n);
    }
    closedir(d);
    /* Sort in C so the order is bytewise and stable whatever the locale. */
    char **names = malloc(sizeof(char *) * (size_t)(n ? n : 1));
    if (names == NULL)
        return luaL_error(L, "out of memory");
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, -1, i + 1);
        names[i] = (char *)lua_tostring(L, -1); /* anchored by the table until it is rewritten */
        lua_pop(L, 1);
    }
    qsort(names, (size_t)n, sizeof(char *), cmp_str);
    lua_newtable(L);
    for (int i = 0; i < n; i++) {
        lua_pushstring(L, names[i]);
        lua_rawseti(L, -2, i + 1);
    }
    free(names);
    return 1;
}

/* C.stat(path) -> {type="file"|"dir"|"other", size=}, or nil, message. */
static int l_stat(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    if (stat(path, &st) != 0)
        return push_fail(L, "cannot open", path);
    lua_createtable(L, 0, 2);
    lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "dir" : "other");
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, (lua_Integer)st.st_size);
    lua_setfield(L, -2, "size");
    return 1;
}

/* C.mkdirs(path) -> true, or nil, message: makes the folder and any missing parents. */
static int l_mkdirs(lua_State *L)
{
    size_t len;
    const char *path = luaL_checklstring(L, 1, &len);
    char *buf = malloc(len + 1);
    if (buf == NULL)
        return luaL_error(L, "out of memory");
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
            int err = errno;
            free(buf);
            errno = err;
            return push_fail(L, "cannot make folder", path);
        }
        buf[i] = saved;
    }
    free(buf);
    struct stat st;
    if (stat(path, &st) != 0)
        return push_fail(L, "cannot make folder", path);
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return push_fail(L, "cannot make folder", path);
    }
    lua_pushboolean(L, 1);
    return 1;
}

void data_fs_open(lua_State *L, int module_idx)
{
    static const luaL_Reg fns[] = {
        {"list_dir", l_list_dir}, {"stat", l_stat}, {"mkdirs", l_mkdirs}, {NULL, NULL}};
    lua_pushvalue(L, module_idx);
    luaL_setfuncs(L, fns, 0);
    lua_pop(L, 1);
}
