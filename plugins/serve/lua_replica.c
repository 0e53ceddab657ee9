/* The replica as Lua sees it: requests come out as tables (method, path, query, headers, body,
 * json), and a handler's return value goes back as an HTTP response. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "lua_json.h"
#include "lua_serve.h"
#include "replica.h"

#define REPLICA_MT "luray.serve.Replica"
#define REPLICA_MAX_BATCH 4096

typedef struct {
    replica_t r;
    bool open;
    replica_req_t *batch; /* the requests the last recv handed to Lua, by index */
    int n_batch;
    sbuf_t scratch;
} lreplica_t;

static lreplica_t *check_rep(lua_State *L)
{
    lreplica_t *lr = luaL_checkudata(L, 1, REPLICA_MT);
    if (!lr->open)
        luaL_error(L, "this replica's socket is closed");
    return lr;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Pushes s percent-decoded, '+' as a space. */
static void push_decoded(lua_State *L, const char *s, size_t n, sbuf_t *tmp)
{
    tmp->len = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            c = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        }
        sbuf_putc(tmp, c);
    }
    lua_pushlstring(L, tmp->data ? tmp->data : "", tmp->len);
}

static void push_query(lua_State *L, const char *q, size_t n, sbuf_t *tmp)
{
    lua_newtable(L);
    size_t i = 0;
    while (i < n) {
        size_t end = i;
        while (end < n && q[end] != '&')
            end++;
        size_t eq = i;
        while (eq < end && q[eq] != '=')
            eq++;
        if (end > i) {
            push_decoded(L, q + i, eq - i, tmp);
            if (eq < end)
                push_decoded(L, q + eq + 1, end - eq - 1, tmp);
            else
                lua_pushliteral(L, "");
            lua_rawset(L, -3);
        }
        i = end + 1;
    }
}

/* Pushes the headers table; returns the content-type value (into ct, NUL-terminated). */
static void push_headers(lua_State *L, const replica_req_t *q, char *ct, size_t ctlen)
{
    ct[0] = 0;
    lua_createtable(L, 0, q->n_headers);
    srd_t rd;
    srd_init(&rd, q->headers, q->headers_len);
    for (uint16_t i = 0; i < q->n_headers; i++) {
        size_t nl, vl;
        const char *name = srd_str(&rd, &nl);
        const char *value = srd_str(&rd, &vl);
        if (rd.err)
            break;
        if (nl == 12 && memcmp(name, "content-type", 12) == 0)
            snprintf(ct, ctlen, "%.*s", (int)vl, value);
        lua_pushlstring(L, name, nl);
        if (lua_rawget(L, -2) == LUA_TSTRING) { /* repeated: joined with ", " as HTTP allows */
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, value, vl);
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            lua_pushlstring(L, value, vl);
        }
        lua_pushlstring(L, name, nl);
        lua_insert(L, -2);
        lua_rawset(L, -3);
    }
}

static void respond_json_error(lreplica_t *lr, const replica_req_t *q, int status,
                               const char *msg)
{
    sbuf_t *b = &lr->scratch;
    b->len = 0;
    sbuf_puts(b, "{\"error\":");
    /* the message as a JSON string */
    sbuf_putc(b, '"');
    for (const char *s = msg; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            sbuf_printf(b, "\\%c", c);
        else if (c < 0x20)
            sbuf_printf(b, "\\u%04x", c);
        else
            sbuf_putc(b, (char)c);
    }
    sbuf_puts(b, "\"}");
    replica_respond(&lr->r, q, status, "application/json", NULL, 0, b->data, b->len);
}

/* Pushes a request table; false (and the request answered 400) when its JSON body is invalid. */
static bool push_request(lua_State *L, lreplica_t *lr, const replica_req_t *q)
{
    char ct[128];
    lua_createtable(L, 0, 6);
    lua_pushlstring(L, q->method, q->method_len);
    lua_setfield(L, -2, "method");
    lua_pushlstring(L, q->path, q->path_len);
    lua_setfield(L, -2, "path");
    push_query(L, q->query, q->query_len, &lr->scratch);
    lua_setfield(L, -2, "query");
    push_headers(L, q, ct, sizeof(ct));
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, q->body, q->body_len);
    lua_setfield(L, -2, "body");
    bool says_json = strstr(ct, "json") != NULL;
    bool looks_json = !ct[0] && q->body_len > 0 && (q->body[0] == '{' || q->body[0] == '[');
    if (q->body_len > 0 && (says_json || looks_json)) {
        char err[128];
        if (serve_json_push(L, q->body, q->body_len, err, sizeof(err)) == 0) {
            lua_setfield(L, -2, "json");
        } else if (says_json) {
            char msg[192];
            snprintf(msg, sizeof(msg), "the request body is not valid JSON: %s", err);
            respond_json_error(lr, q, 400, msg);
            lua_pop(L, 1);
            return false;
        }
    }
    return true;
}

/* rep:recv(max, wait_s) -> list of requests (maybe empty): what has arrived, and when fewer
 * than max, more that come within wait_s of the first. */
static int l_recv(lua_State *L)
{
    lreplica_t *lr = check_rep(L);
    lua_Integer max = luaL_optinteger(L, 2, 1);
    double wait_s = luaL_optnumber(L, 3, 0);
    if (max < 1 || max > REPLICA_MAX_BATCH)
        return luaL_error(L, "recv: max must be 1 to %d", REPLICA_MAX_BATCH);
    if (lr->n_batch)
        return luaL_error(L, "recv: the previous requests are not flushed yet");
    if (!lr->batch && !(lr->batch = malloc(sizeof(replica_req_t) * REPLICA_MAX_BATCH)))
        return luaL_error(L, "recv: out of memory");
    lua_createtable(L, (int)max, 0);
    double deadline = 0;
    int n = 0;
    char err[160];
    while (n < max) {
        int wait_ms = 0;
        if (n > 0 && wait_s > 0) {
            double left = deadline - serve_now();
            if (left > 0)
                wait_ms = (int)(left * 1000) + 1;
        }
        replica_req_t *q = &lr->batch[lr->n_batch];
        int rc = replica_next(&lr->r, wait_ms, q, err, sizeof(err));
        if (rc < 0)
            return luaL_error(L, "%s", err);
        if (rc == 0)
            break;
        if (n == 0)
            deadline = serve_now() + wait_s;
        if (!push_request(L, lr, q))
            continue;
        lr->n_batch++;
        lua_rawseti(L, -2, ++n);
    }
    return 1;
}

static const replica_req_t *batch_req(lua_State *L, lreplica_t *lr, int arg)
{
    lua_Integer i = luaL_checkinteger(L, arg);
    if (i < 1 || i > lr->n_batch)
        luaL_error(L, "respond: no request %d in the last recv (it gave %d)", (int)i, lr->n_batch);
    return &lr->batch[i - 1];
}

/* {status=, headers=, body=} with nothing else and an integer status. */
static bool is_response_object(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TTABLE || lua_getmetatable(L, idx))
        return lua_type(L, idx) == LUA_TTABLE ? (lua_pop(L, 1), false) : false;
    lua_getfield(L, idx, "status");
    bool has = lua_isinteger(L, -1);
    lua_pop(L, 1);
    if (!has)
        return false;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
        if (strcmp(k, "status") && strcmp(k, "headers") && strcmp(k, "body")) {
            lua_pop(L, 1);
            return false;
        }
    }
    return true;
}

static bool header_text_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\r' || s[i] == '\n' || s[i] == 0)
            return false;
    return true;
}

/* Writes the header lines of a response object's headers table into lines; false with err. */
static bool header_lines(lua_State *L, int idx, sbuf_t *lines, bool *has_ct, char *err,
                         size_t errlen)
{
    *has_ct = false;
    if (lua_isnil(L, idx))
        return true;
    if (!lua_istable(L, idx)) {
        snprintf(err, errlen, "the response's headers must be a table of names to strings");
        return false;
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        size_t nl, vl;
        if (lua_type(L, -2) != LUA_TSTRING ||
            (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)) {
            lua_pop(L, 2);
            snprintf(err, errlen, "the response's headers must map names to strings");
            return false;
        }
        const char *name = lua_tolstring(L, -2, &nl);
        const char *value = lua_tolstring(L, -1, &vl);
        if (nl == 0 || !header_text_ok(name, nl) || !header_text_ok(value, vl) ||
            memchr(name, ':', nl) || memchr(name, ' ', nl)) {
            snprintf(err, errlen, "invalid response header '%.*s'", (int)(nl > 40 ? 40 : nl),
                     name);
            lua_pop(L, 2);
            return false;
        }
        if (strcasecmp(name, "content-length") == 0 || strcasecmp(name, "connection") == 0 ||
            strcasecmp(name, "transfer-encoding") == 0) {
            lua_pop(L, 1);
            continue; /* the proxy writes these itself */
        }
        if (strcasecmp(name, "content-type") == 0)
            *has_ct = true;
        sbuf_put(lines, name, nl);
        sbuf_put(lines, ": ", 2);
        sbuf_put(lines, value, vl);
        sbuf_put(lines, "\r\n", 2);
        lua_pop(L, 1);
    }
    return true;
}

static void respond_value(lua_State *L, lreplica_t *lr, const replica_req_t *q, int idx)
{
    char err[320];
    sbuf_t *b = &lr->scratch;
    b->len = 0;
    if (lua_type(L, idx) == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        replica_respond(&lr->r, q, 200, "text/plain; charset=utf-8", NULL, 0, s, n);
        return;
    }
    if (!is_response_object(L, idx)) {
        if (serve_json_encode(L, idx, b, err, sizeof(err)) != 0) {
            char msg[400];
            snprintf(msg, sizeof(msg), "cannot send the handler's result as JSON: %s", err);
            respond_json_error(lr, q, 500, msg);
            return;
        }
        replica_respond(&lr->r, q, 200, "application/json", NULL, 0, b->data, b->len);
        return;
    }
    lua_getfield(L, idx, "status");
    lua_Integer status = lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (status < 100 || status > 599) {
        respond_json_error(lr, q, 500, "the handler's response has a status outside 100-599");
        return;
    }
    sbuf_t lines;
    sbuf_init(&lines);
    bool has_ct;
    lua_getfield(L, idx, "headers");
    bool ok = header_lines(L, lua_gettop(L), &lines, &has_ct, err, sizeof(err));
    lua_pop(L, 1);
    if (!ok) {
        sbuf_free(&lines);
        respond_json_error(lr, q, 500, err);
        return;
    }
    lua_getfield(L, idx, "body");
    const char *ct = has_ct ? NULL : "application/json";
    if (lua_type(L, -1) == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        replica_respond(&lr->r, q, (int)status, has_ct ? NULL : "text/plain; charset=utf-8",
                        lines.data, lines.len, s, n);
    } else if (lua_isnil(L, -1)) {
        replica_respond(&lr->r, q, (int)status, NULL, lines.data, lines.len, "", 0);
    } else if (serve_json_encode(L, -1, b, err, sizeof(err)) == 0) {
        replica_respond(&lr->r, q, (int)status, ct, lines.data, lines.len, b->data, b->len);
    } else {
        char msg[400];
        snprintf(msg, sizeof(msg), "cannot send the response body as JSON: %s", err);
        respond_json_error(lr, q, 500, msg);
    }
    lua_pop(L, 1);
    sbuf_free(&lines);
}

/* rep:respond(i, value): the answer to request i of the last recv. */
static int l_respond(lua_State *L)
{
    lreplica_t *lr = check_rep(L);
    const replica_req_t *q = batch_req(L, lr, 2);
    lua_settop(L, 3);
    respond_value(L, lr, q, 3);
    return 0;
}

/* rep:respond_error(i, status, message): a JSON error body {"error": message}. */
static int l_respond_error(lua_State *L)
{
    lreplica_t *lr = check_rep(L);
    const replica_req_t *q = batch_req(L, lr, 2);
    lua_Integer status = luaL_checkinteger(L, 3);
    const char *msg = luaL_checkstring(L, 4);
    respond_json_error(lr, q, status < 100 || status > 599 ? 500 : (int)status, msg);
    return 0;
}

/* rep:flush(): sends the answers and forgets the last recv's requests. */
static int l_flush(lua_State *L)
{
    lreplica_t *lr = check_rep(L);
    replica_flush(&lr->r);
    replica_release(&lr->r);
    lr->n_batch = 0;
    return 0;
}

static int l_fd(lua_State *L)
{
    lua_pushinteger(L, replica_fd(&check_rep(L)->r));
    return 1;
}

static int l_addresses(lua_State *L)
{
    lreplica_t *lr = check_rep(L);
    lua_pushstring(L, lr->r.ipc);
    if (lr->r.tcp[0])
        lua_pushstring(L, lr->r.tcp);
    else
        lua_pushnil(L);
    return 2;
}

static int l_close(lua_State *L)
{
    lreplica_t *lr = luaL_checkudata(L, 1, REPLICA_MT);
    if (lr->open) {
        replica_flush(&lr->r);
        replica_close(&lr->r);
        lr->open = false;
    }
    free(lr->batch);
    lr->batch = NULL;
    lr->n_batch = 0;
    sbuf_free(&lr->scratch);
    return 0;
}

/* S.replica_open(session_dir, tcp_host or nil) -> replica */
static int l_replica_open(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    const char *host = luaL_optstring(L, 2, NULL);
    lreplica_t *lr = lua_newuserdatauv(L, sizeof(*lr), 0);
    memset(lr, 0, sizeof(*lr));
    sbuf_init(&lr->scratch);
    luaL_setmetatable(L, REPLICA_MT);
    char err[600];
    if (replica_open(&lr->r, dir, host, err, sizeof(err)) != 0)
        return luaL_error(L, "serve: %s", err);
    lr->open = true;
    return 1;
}

void serve_replica_open_lua(lua_State *L, int module)
{
    static const luaL_Reg methods[] = {
        {"recv", l_recv},       {"respond", l_respond},     {"respond_error", l_respond_error},
        {"flush", l_flush},     {"fd", l_fd},               {"addresses", l_addresses},
        {"close", l_close},     {NULL, NULL},
    };
    luaL_newmetatable(L, REPLICA_MT);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_close);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_replica_open);
    lua_setfield(L, module, "replica_open");
}
