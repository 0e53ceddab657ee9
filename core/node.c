/* The node daemon: the event loop, its sockets and processes, and the message handlers. The
 * object table and scheduling live in node_objects.c and node_sched.c. */
#include "node.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <lauxlib.h>
#include <lualib.h>
#include <nanomsg/nn.h>
#include <nanomsg/pipeline.h>

#include "errors_str.h"
#include "log.h"
#include "node_cluster.h"
#include "node_head.h"
#include "node_internal.h"
#include "node_remote.h"
#include "serialize.h"

/* ---- sending ---- */

static void on_send_ready(uv_poll_t *h, int status, int events);
static void proc_flush(node_t *n, proc_t *p);

void node_mark_dirty(node_t *n, proc_t *p)
{
    if (!p->dirty) {
        p->dirty = true;
        p->dirty_next = n->dirty;
        n->dirty = p;
    }
}

luray_buf_t *node_msg_begin(node_t *n, proc_t *p, uint16_t type)
{
    node_mark_dirty(n, p);
    return luray_frame_begin(&p->out, type, 0);
}

void node_msg_end(proc_t *p) { luray_frame_end(&p->out); }

static void on_poll_closed(uv_handle_t *h) { free(h); }

void node_wait_writable(node_t *n, proc_t *p)
{
    if (p->send_poll_on)
        return;
    if (!p->send_poll) {
        int fd;
        size_t sz = sizeof(fd);
        if (nn_getsockopt(p->sock, NN_SOL_SOCKET, NN_SNDFD, &fd, &sz) != 0)
            return;
        p->send_poll = malloc(sizeof(*p->send_poll));
        if (!p->send_poll)
            return;
        uv_poll_init(n->loop, p->send_poll, fd);
        p->send_poll->data = p;
    }
    uv_poll_start(p->send_poll, UV_READABLE, on_send_ready);
    p->send_poll_on = true;
}

void node_stop_waiting_writable(proc_t *p)
{
    if (p->send_poll_on) {
        /* at the loop's end every handle is closed already (node.c's walk): nothing to stop */
        if (!uv_is_closing((uv_handle_t *)p->send_poll))
            uv_poll_stop(p->send_poll);
        p->send_poll_on = false;
    }
}

/* The socket closes: so does its poll handle. */
void node_proc_close_sock(proc_t *p)
{
    node_stop_waiting_writable(p);
    if (p->send_poll) {
        if (!uv_is_closing((uv_handle_t *)p->send_poll))
            uv_close((uv_handle_t *)p->send_poll, on_poll_closed);
        else
            free(p->send_poll); /* the loop is ending: it closed every handle already */
        p->send_poll = NULL;
    }
    if (p->sock >= 0)
        nn_close(p->sock);
    p->sock = -1;
}

static void proc_flush(node_t *n, proc_t *p)
{
    if (p->gone)
        return;
    if (p->kind == LURAY_PROC_PEER)
        return node_peer_flush(n, p);
    if (p->sock < 0)
        return;
    if (luray_frame_empty(&p->out))
        return;
    if (p->out.buf.err) {
        luray_log(LURAY_LOG_ERROR, "node", "dropping a frame to process %u: %s", p->id,
                  luray_strerror(p->out.buf.err));
        luray_frame_reset(&p->out);
        return;
    }
    int rc = nn_send(p->sock, p->out.buf.data, p->out.buf.len, NN_DONTWAIT);
    if (rc >= 0) {
        luray_frame_reset(&p->out);
        node_stop_waiting_writable(p);
        return;
    }
    if (nn_errno() != EAGAIN) {
        luray_log(LURAY_LOG_WARN, "node", "send to process %u failed: %s", p->id,
                  nn_strerror(nn_errno()));
        luray_frame_reset(&p->out);
        return;
    }
    node_wait_writable(n, p);
}

static void on_send_ready(uv_poll_t *h, int status, int events)
{
    proc_t *p = h->data;
    proc_flush(p->node, p);
}

void node_flush_all(node_t *n)
{
    while (n->dirty) {
        proc_t *p = n->dirty;
        n->dirty = p->dirty_next;
        p->dirty = false;
        proc_flush(n, p);
    }
}

/* ---- processes ---- */

proc_t *node_proc_new(node_t *n, int kind)
{
    if (n->n_procs == n->cap_procs) {
        uint32_t cap = n->cap_procs ? n->cap_procs * 2 : 64;
        proc_t **procs = realloc(n->procs, cap * sizeof(*procs));
        if (!procs)
            return NULL;
        n->procs = procs;
        n->cap_procs = cap;
    }
    proc_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->node = n;
    p->id = n->n_procs + 1;
    p->kind = kind;
    p->sock = -1;
    luray_frame_init(&p->out);
    luray_oidmap_init(&p->refs);
    luray_oidmap_init(&p->pins);
    luray_oidmap_init(&p->funcs);
    n->procs[n->n_procs++] = p;
    return p;
}

proc_t *node_proc(node_t *n, uint32_t id)
{
    if (id == 0 || id > n->n_procs)
        return NULL;
    return n->procs[id - 1];
}

static void on_worker_exit(uv_process_t *h, int64_t status, int sig);

static void on_proc_handle_closed(uv_handle_t *h) { (void)h; }

int node_spawn_worker(node_t *n)
{
    proc_t *p = node_proc_new(n, LURAY_PROC_WORKER);
    if (!p)
        return LURAY_ENOMEM;
    char idbuf[32], nodebuf[32];
    snprintf(idbuf, sizeof(idbuf), "LURAY_WORKER_ID=%u", p->id);
    snprintf(nodebuf, sizeof(nodebuf), "LURAY_NODE_ID=%u", n->node_id);
    extern char **environ;
    size_t nenv = 0;
    while (environ[nenv])
        nenv++;
    char **env = calloc(nenv + 4, sizeof(char *));
    if (!env)
        return LURAY_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++)
        if (strncmp(environ[i], "LURAY_WORKER_ID=", 16) && strncmp(environ[i], "LURAY_SESSION=", 14))
            env[k++] = environ[i];
    char sessbuf[4200];
    snprintf(sessbuf, sizeof(sessbuf), "LURAY_SESSION=%s", n->opts->session_dir);
    env[k++] = idbuf;
    env[k++] = sessbuf;
    env[k++] = nodebuf;
    env[k] = NULL;

    char *args[] = {(char *)n->opts->exe, "_worker", NULL};
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_INHERIT_FD, .data.fd = 1},
        {.flags = UV_INHERIT_FD, .data.fd = 2},
    };
    uv_process_options_t po = {
        .exit_cb = on_worker_exit,
        .file = n->opts->exe,
        .args = args,
        .env = env,
        .stdio_count = 3,
        .stdio = stdio,
    };
    p->uvp.data = p;
    int rc = uv_spawn(n->loop, &p->uvp, &po);
    free(env);
    if (rc) {
        luray_log(LURAY_LOG_ERROR, "node", "cannot start a worker (%s): %s", n->opts->exe,
                  uv_strerror(rc));
        p->gone = true;
        p->wstate = W_DEAD;
        return LURAY_EIO;
    }
    p->spawned = true;
    p->pid = p->uvp.pid;
    p->wstate = W_STARTING;
    n->n_starting++;
    n->n_pool++;
    return 0;
}

static void proc_release_everything(node_t *n, proc_t *p)
{
    /* References and pins die with the process that held them. */
    for (size_t i = 0; i < p->pins.cap; i++) {
        if (!p->pins.slots[i].val)
            continue;
        intptr_t c = (intptr_t)p->pins.slots[i].val;
        for (intptr_t j = 0; j < c; j++)
            luray_store_unpin(n->store, p->pins.slots[i].key);
    }
    luray_oidmap_close(&p->pins);
    luray_oidmap_t refs = p->refs;
    luray_oidmap_init(&p->refs);
    for (size_t i = 0; i < refs.cap; i++) {
        if (!refs.slots[i].val)
            continue;
        intptr_t c = (intptr_t)refs.slots[i].val;
        node_obj_decref(n, refs.slots[i].key, (int64_t)c);
    }
    luray_oidmap_close(&refs);
    luray_oidmap_close(&p->funcs);
}

void node_proc_gone(node_t *n, proc_t *p, const char *why)
{
    if (p->gone)
        return;
    p->gone = true;
    if (p->kind == LURAY_PROC_PEER && p->sock >= 0 && n->peer_socks)
        n->peer_socks--;
    node_proc_close_sock(p);
    luray_frame_close(&p->out);
    node_peer_free_sealed(p);
    if (p->kind == LURAY_PROC_WORKER) {
        node_worker_died(n, p, why);
    } else {
        if (p->kind == LURAY_PROC_PEER)
            node_peer_left(n, p, why);
        node_driver_left(n, p);
    }
    proc_release_everything(n, p);
}

static void on_worker_exit(uv_process_t *h, int64_t status, int sig)
{
    proc_t *p = h->data;
    node_t *n = p->node;
    char why[128];
    if (sig)
        snprintf(why, sizeof(why), "the worker process (pid %d) was killed by signal %d",
                 (int)p->pid, sig);
    else
        snprintf(why, sizeof(why), "the worker process (pid %d) exited with status %lld",
                 (int)p->pid, (long long)status);
    if (p->wstate == W_STARTING && n->n_starting)
        n->n_starting--;
    uv_close((uv_handle_t *)h, on_proc_handle_closed);
    p->spawned = false;
    node_proc_gone(n, p, why);
    node_schedule(n);
    node_flush_all(n);
}

/* ---- message handlers ---- */

static int connect_push(const char *addr)
{
    int s = nn_socket(AF_SP, NN_PUSH);
    if (s < 0)
        return -1;
    int big = 16 * 1024 * 1024;
    nn_setsockopt(s, NN_SOL_SOCKET, NN_SNDBUF, &big, sizeof(big));
    if (nn_connect(s, addr) < 0) {
        nn_close(s);
        return -1;
    }
    return s;
}

static void on_hello(node_t *n, luray_rd_t *r)
{
    uint8_t kind = luray_rd_u8(r);
    uint32_t pid = luray_rd_u32(r);
    uint32_t token = luray_rd_u32(r);
    size_t alen;
    const char *addr = luray_rd_str(r, &alen);
    if (r->err || alen == 0 || alen > 1000 || (kind != LURAY_PROC_DRIVER && kind != LURAY_PROC_WORKER))
        return node_count_bad(n, "HELLO");
    char a[1024];
    memcpy(a, addr, alen);
    a[alen] = 0;
    proc_t *p;
    if (kind == LURAY_PROC_WORKER) {
        p = node_proc(n, token);
        if (!p || p->kind != LURAY_PROC_WORKER || p->wstate != W_STARTING || p->sock >= 0)
            return node_count_bad(n, "HELLO (unknown worker)");
    } else {
        p = node_proc_new(n, LURAY_PROC_DRIVER);
        if (!p)
            return;
        p->pid = (pid_t)pid;
    }
    p->sock = connect_push(a);
    if (p->sock < 0) {
        luray_log(LURAY_LOG_WARN, "node", "cannot connect to %s: %s", a, nn_strerror(nn_errno()));
        return;
    }
    luray_buf_t *b = node_msg_begin(n, p, LURAY_MSG_WELCOME);
    luray_buf_put_u32(b, n->node_id);
    luray_buf_put_u32(b, p->id);
    luray_buf_put_str(b, n->shm_name, strlen(n->shm_name));
    luray_buf_put_u64(b, n->opts->object_store_memory);
    luray_buf_put_str(b, n->opts->session_dir, strlen(n->opts->session_dir));
    luray_buf_put_u32(b, (uint32_t)getpid());
    node_msg_end(p);
    if (kind == LURAY_PROC_WORKER) {
        if (n->n_starting)
            n->n_starting--;
        node_worker_ready(n, p);
    }
}

static void on_bye(node_t *n, proc_t *p)
{
    node_proc_gone(n, p, "the driver disconnected");
}

static void on_shutdown(node_t *n, proc_t *p)
{
    luray_log(LURAY_LOG_INFO, "node", "shutdown requested by process %u", p->id);
    node_stop(n);
}

static void json_resources(node_t *n, cJSON *obj, const int64_t *v)
{
    /* memory and object_store_memory (indexes 2 and 3) are counted in bytes, the rest in units */
    for (int i = 0; i < n->n_res; i++)
        cJSON_AddNumberToObject(obj, n->res_names[i],
                                i == 2 || i == 3 ? (double)v[i] : (double)v[i] / LURAY_RES_UNIT);
}

static char *info_json(node_t *n)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *nodes = cJSON_AddArrayToObject(root, "nodes");
    cJSON *me = cJSON_CreateObject();
    char nid[16];
    snprintf(nid, sizeof(nid), "%08x", n->node_id);
    cJSON_AddStringToObject(me, "node_id", nid);
    char addr[300];
    snprintf(addr, sizeof(addr), "%s:%d", n->opts->host ? n->opts->host : "127.0.0.1",
             n->opts->port);
    cJSON_AddStringToObject(me, "address", addr);
    cJSON_AddBoolToObject(me, "alive", 1);
    json_resources(n, cJSON_AddObjectToObject(me, "resources"), n->total);
    json_resources(n, cJSON_AddObjectToObject(me, "available"), n->avail);
    cJSON_AddItemToArray(nodes, me);
    json_resources(n, cJSON_AddObjectToObject(root, "resources"), n->total);
    json_resources(n, cJSON_AddObjectToObject(root, "available"), n->avail);
    luray_store_stats_t st;
    luray_store_stats(n->store, &st);
    cJSON *store = cJSON_AddObjectToObject(root, "object_store");
    cJSON_AddNumberToObject(store, "capacity", (double)st.capacity);
    cJSON_AddNumberToObject(store, "used", (double)st.used);
    cJSON_AddNumberToObject(store, "objects_in_store", (double)st.n_objects);
    cJSON_AddNumberToObject(store, "spilled_objects", (double)st.n_spilled);
    cJSON_AddNumberToObject(store, "spilled_bytes", (double)st.spilled_bytes);
    cJSON_AddNumberToObject(root, "objects", (double)n->objs.len);
    uint32_t running = 0, workers = 0, actors = 0, drivers = 0;
    for (uint32_t i = 0; i < n->n_procs; i++) {
        proc_t *p = n->procs[i];
        if (p->gone)
            continue;
        if (p->kind == LURAY_PROC_DRIVER) {
            drivers++;
            continue;
        }
        workers++;
        if (p->task)
            running++;
    }
    for (size_t i = 0; i < n->actors.cap; i++) {
        actor_t *a = n->actors.slots[i].val;
        if (a && a->state != A_DEAD)
            actors++;
    }
    cJSON_AddNumberToObject(root, "running_tasks", running);
    cJSON_AddNumberToObject(root, "queued_tasks", (double)n->ready.len);
    cJSON_AddNumberToObject(root, "pending_tasks", (double)n->tasks.len);
    cJSON_AddNumberToObject(root, "finished_tasks", (double)n->tasks_finished);
    cJSON_AddNumberToObject(root, "actors", actors);
    cJSON_AddNumberToObject(root, "workers", workers);
    cJSON_AddNumberToObject(root, "drivers", drivers);
    cJSON_AddNumberToObject(root, "dropped_messages", (double)n->dropped_frames);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

void node_reply(node_t *n, proc_t *p, uint64_t req, uint32_t status, const void *bytes,
                size_t len)
{
    luray_buf_t *b = node_msg_begin(n, p, LURAY_MSG_REPLY);
    luray_buf_put_u64(b, req);
    luray_buf_put_u32(b, status);
    luray_buf_put_str(b, bytes, len);
    node_msg_end(p);
}

static void on_info(node_t *n, proc_t *p, luray_rd_t *r)
{
    uint64_t req = luray_rd_u64(r);
    if (r->err)
        return node_count_bad(n, "INFO");
    if (n->cluster && (n->dir || n->registered))
        return node_cluster_info(n, p, req);
    char *s = info_json(n);
    node_reply(n, p, req, 0, s ? s : "{}", s ? strlen(s) : 2);
    free(s);
}

void node_count_bad(node_t *n, const char *what)
{
    n->dropped_frames++;
    luray_log(LURAY_LOG_WARN, "node", "dropped a malformed %s message (%llu dropped so far)", what,
              (unsigned long long)n->dropped_frames);
}

void node_handle_msg(node_t *n, proc_t *p, const luray_msg_t *m)
{
    luray_rd_t r;
    luray_rd_init(&r, m->body, m->len);
    if (m->type == LURAY_MSG_HELLO)
        return on_hello(n, &r);
    if (p && p->gone)
        return; /* a process that said goodbye (or died) may still have had messages in flight */
    if (!p)
        return node_count_bad(n, "message from an unknown process");
    switch (m->type) {
    case LURAY_MSG_SUBMIT:
        return node_on_submit(n, p, &r);
    case LURAY_MSG_DONE:
        return node_on_done(n, p, &r);
    case LURAY_MSG_PUT:
        return node_on_put(n, p, &r);
    case LURAY_MSG_CREATE:
        return node_on_create(n, p, &r);
    case LURAY_MSG_SEAL:
        return node_on_seal(n, p, &r);
    case LURAY_MSG_GET:
        return node_on_get(n, p, &r);
    case LURAY_MSG_REFS:
        return node_on_refs(n, p, &r);
    case LURAY_MSG_UNPIN:
        return node_on_unpin(n, p, &r);
    case LURAY_MSG_LOOKUP:
        return node_on_lookup(n, p, &r);
    case LURAY_MSG_KILL:
        return node_on_kill(n, p, &r);
    case LURAY_MSG_CANCEL:
        return node_on_cancel(n, p, &r);
    case LURAY_MSG_RETURN:
        return node_on_return(n, p, &r);
    case LURAY_MSG_INFO:
        return on_info(n, p, &r);
    case LURAY_MSG_BYE:
        return on_bye(n, p);
    case LURAY_MSG_SHUTDOWN:
        return on_shutdown(n, p);
    case LURAY_MSG_PG:
        return node_on_pg(n, p, &r);
    default:
        return node_count_bad(n, "unknown-type");
    }
}

/* A frame starts with the sender's proc id (u32) in the first message's flags-free prefix: every
 * client frame is preceded by a u32 proc id so the node knows who sent it. */
static void handle_frame(node_t *n, const uint8_t *data, size_t len)
{
    if (len < 4) {
        node_count_bad(n, "frame");
        return;
    }
    uint32_t sender = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
                      (uint32_t)data[3] << 24;
    data += 4;
    len -= 4;
    if (luray_frame_check(data, len) != 0) {
        node_count_bad(n, "frame");
        return;
    }
    proc_t *p = node_proc(n, sender);
    size_t pos = 0;
    luray_msg_t m;
    while (luray_frame_next(data, len, &pos, &m) == 1) {
        if (p && p->kind == LURAY_PROC_PEER)
            node_count_bad(n, "frame from a peer on the local socket");
        else
            node_handle_msg(n, p, &m);
    }
}

static void on_inbox(uv_poll_t *h, int status, int events)
{
    node_t *n = h->data;
    for (int i = 0; i < 256; i++) {
        void *msg = NULL;
        int len = nn_recv(n->inbox, &msg, NN_MSG, NN_DONTWAIT);
        if (len < 0)
            break;
        handle_frame(n, msg, (size_t)len);
        nn_freemsg(msg);
    }
    node_schedule(n);
    node_flush_all(n);
}

static void on_liveness(uv_timer_t *t)
{
    node_t *n = t->data;
    for (uint32_t i = 0; i < n->n_procs; i++) {
        proc_t *p = n->procs[i];
        if (!p->gone && p->kind == LURAY_PROC_DRIVER && p->pid > 0 && kill(p->pid, 0) != 0 &&
            errno == ESRCH)
            node_proc_gone(n, p, "the driver process exited");
    }
    node_retire_idle(n);
    node_schedule(n);
    node_flush_all(n);
}

/* ---- start and stop ---- */

static void on_stop_timer(uv_timer_t *t)
{
    node_t *n = t->data;
    for (uint32_t i = 0; i < n->n_procs; i++) {
        proc_t *p = n->procs[i];
        if (p->spawned)
            uv_process_kill(&p->uvp, SIGKILL);
    }
    uv_stop(n->loop);
}

static bool workers_alive(node_t *n)
{
    for (uint32_t i = 0; i < n->n_procs; i++)
        if (n->procs[i]->spawned)
            return true;
    return false;
}

static void on_stop_check(uv_timer_t *t)
{
    node_t *n = t->data;
    if (!workers_alive(n))
        uv_stop(n->loop);
}

void node_stop(node_t *n)
{
    if (n->stopping)
        return;
    n->stopping = true;
    /* Jobs' drivers end first, while their node still answers them. */
    head_stop(n->dir);
    for (uint32_t i = 0; i < n->n_procs; i++) {
        proc_t *p = n->procs[i];
        if (p->kind == LURAY_PROC_WORKER && !p->gone && p->sock >= 0) {
            node_msg_begin(n, p, LURAY_MSG_EXIT);
            node_msg_end(p);
        } else if (p->spawned) {
            uv_process_kill(&p->uvp, SIGTERM);
        }
    }
    node_flush_all(n);
    uv_timer_start(&n->stop_timer, on_stop_timer, 2000, 0);
    uv_timer_init(n->loop, &n->stop_check);
    n->stop_check.data = n;
    uv_timer_start(&n->stop_check, on_stop_check, 5, 5);
}

static void on_signal(uv_signal_t *s, int signum)
{
    node_stop(s->data);
}

static int setup_resources(node_t *n)
{
    const char *builtin[] = {"CPU", "GPU", "memory", "object_store_memory"};
    double amounts[] = {n->opts->num_cpus, n->opts->num_gpus, 0,
                        (double)n->opts->object_store_memory};
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    amounts[2] = pages > 0 && psize > 0 ? (double)pages * (double)psize * 0.7 : 0;
    for (int i = 0; i < 4; i++) {
        n->res_names[i] = strdup(builtin[i]);
        n->total[i] = (int64_t)(amounts[i] * LURAY_RES_UNIT + 0.5);
        if (i >= 2) /* bytes: keep whole units so fixed point cannot overflow */
            n->total[i] = (int64_t)amounts[i] * 1;
    }
    n->n_res = 4;
    if (n->opts->resources_json) {
        cJSON *j = cJSON_Parse(n->opts->resources_json);
        if (!cJSON_IsObject(j)) {
            luray_log(LURAY_LOG_ERROR, "node", "--resources must be a JSON object like {\"TPU\": 2}");
            cJSON_Delete(j);
            return LURAY_EINVAL;
        }
        cJSON *it;
        cJSON_ArrayForEach(it, j)
        {
            if (!cJSON_IsNumber(it) || it->valuedouble < 0 || n->n_res >= NODE_MAX_RES) {
                luray_log(LURAY_LOG_ERROR, "node", "--resources: \"%s\" must be a number >= 0",
                          it->string);
                cJSON_Delete(j);
                return LURAY_EINVAL;
            }
            n->res_names[n->n_res] = strdup(it->string);
            n->total[n->n_res] = (int64_t)(it->valuedouble * LURAY_RES_UNIT + 0.5);
            n->n_res++;
        }
        cJSON_Delete(j);
    }
    memcpy(n->avail, n->total, sizeof(n->total));
    return 0;
}

static int write_node_json(node_t *n)
{
    char path[4200], tmp[4300];
    snprintf(path, sizeof(path), "%s/node.json", n->opts->session_dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return LURAY_EIO;
    fprintf(f,
            "{\"pid\": %d, \"node_id\": %u, \"host\": \"%s\", \"port\": %d, \"shm\": \"%s\", "
            "\"object_store_memory\": %llu, \"num_cpus\": %g, \"head\": %s, \"join\": \"%s\"}\n",
            (int)getpid(), n->node_id, n->opts->host ? n->opts->host : "127.0.0.1",
            n->port, n->shm_name, (unsigned long long)n->opts->object_store_memory,
            n->opts->num_cpus, n->opts->head ? "true" : "false",
            n->opts->join ? n->opts->join : "");
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        return LURAY_EIO;
    return 0;
}

/* Writes node.json and tells the starter (ready_fd) that the node serves. */
int node_announce_ready(node_t *n)
{
    if (n->announced)
        return 0;
    if (write_node_json(n)) {
        luray_log(LURAY_LOG_ERROR, "node", "cannot write %s/node.json", n->opts->session_dir);
        n->exit_status = 1;
        node_stop(n);
        return LURAY_EIO;
    }
    n->announced = true;
    if (n->opts->ready_fd >= 0) {
        ssize_t w = write(n->opts->ready_fd, "R", 1);
        (void)w;
        close(n->opts->ready_fd);
    }
    return 0;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int luray_node_main(const luray_node_opts_t *opts)
{
    node_t node = {0}, *n = &node;
    n->opts = opts;
    if (uv_loop_init(&n->own_loop) != 0)
        return 1;
    n->loop = &n->own_loop;
    int status = 1;
    char addr[4300], spill[4200];

    signal(SIGPIPE, SIG_IGN);
    if (setup_resources(n))
        return 1;
    const char *idle = getenv("LURAY_IDLE_WORKER_TIMEOUT");
    double idle_s = idle ? atof(idle) : 10.0;
    n->idle_timeout_ms = (uint64_t)((idle_s > 0 ? idle_s : 10.0) * 1000);
    luray_oidmap_init(&n->objs);
    luray_oidmap_init(&n->tasks);
    luray_oidmap_init(&n->actors);
    luray_oidmap_init(&n->funcs);
    n->node_id = node_cluster_pick_id(opts);
    n->port = opts->port;
    snprintf(n->shm_name, sizeof(n->shm_name), "luray-%d-%u", (int)getpid(), n->node_id);
    snprintf(spill, sizeof(spill), "%s/spill", opts->session_dir);
    int rc = luray_store_new(n->shm_name, opts->object_store_memory, spill, &n->store);
    if (rc) {
        luray_log(LURAY_LOG_ERROR, "node", "cannot create the object store /dev/shm/%s (%llu bytes): %s",
                  n->shm_name, (unsigned long long)opts->object_store_memory, luray_strerror(rc));
        return 1;
    }
    n->L = luaL_newstate();
    luaL_openlibs(n->L);

    n->inbox = nn_socket(AF_SP, NN_PULL);
    int unlimited = -1;
    nn_setsockopt(n->inbox, NN_SOL_SOCKET, NN_RCVMAXSIZE, &unlimited, sizeof(unlimited));
    int big = 16 * 1024 * 1024;
    nn_setsockopt(n->inbox, NN_SOL_SOCKET, NN_RCVBUF, &big, sizeof(big));
    snprintf(addr, sizeof(addr), "ipc://%s/node.sock", opts->session_dir);
    if (n->inbox < 0 || nn_bind(n->inbox, addr) < 0 ||
        (opts->inproc_addr && nn_bind(n->inbox, opts->inproc_addr) < 0)) {
        luray_log(LURAY_LOG_ERROR, "node", "cannot listen on %s: %s", addr, nn_strerror(nn_errno()));
        goto err_store;
    }
    int fd;
    size_t sz = sizeof(fd);
    nn_getsockopt(n->inbox, NN_SOL_SOCKET, NN_RCVFD, &fd, &sz);
    uv_poll_init(n->loop, &n->inbox_poll, fd);
    n->inbox_poll.data = n;
    uv_poll_start(&n->inbox_poll, UV_READABLE, on_inbox);
    if (!opts->inproc_addr) { /* on a driver's thread, signals are the driver's */
        uv_signal_init(n->loop, &n->sigterm);
        n->sigterm.data = n;
        uv_signal_start(&n->sigterm, on_signal, SIGTERM);
        uv_signal_init(n->loop, &n->sigint);
        n->sigint.data = n;
        uv_signal_start(&n->sigint, on_signal, SIGINT);
    }
    uv_timer_init(n->loop, &n->liveness);
    n->liveness.data = n;
    uv_timer_start(&n->liveness, on_liveness, 500, 500);
    uv_timer_init(n->loop, &n->stop_timer);
    n->stop_timer.data = n;

    char err[1024];
    if (node_cluster_start(n, err, sizeof(err)) != 0) {
        luray_log(LURAY_LOG_ERROR, "node", "%s", err);
        goto err_sock;
    }
    int warm = (int)(opts->num_cpus + 0.999);
    if (warm < 1)
        warm = 1;
    for (int i = 0; i < warm; i++)
        node_spawn_worker(n);
    /* A node that joins a cluster is ready once the head took it. */
    if (!opts->join && node_announce_ready(n) != 0)
        goto err_sock;
    uv_run(n->loop, UV_RUN_DEFAULT);
    status = n->exit_status;

err_sock:
    head_stop(n->dir);
    if (!n->announced && opts->ready_fd >= 0) {
        ssize_t w = write(opts->ready_fd, "F", 1);
        (void)w;
    }
    for (uint32_t i = 0; i < n->n_procs; i++) {
        proc_t *p = n->procs[i];
        if (p->spawned)
            uv_process_kill(&p->uvp, SIGKILL);
    }
    uv_walk(n->loop, close_walk, NULL);
    uv_run(n->loop, UV_RUN_DEFAULT);
    nn_close(n->inbox);
    node_cluster_close(n);
err_store:
    for (uint32_t i = 0; i < n->n_procs; i++) {
        proc_t *p = n->procs[i];
        node_proc_close_sock(p);
        luray_frame_close(&p->out);
        luray_oidmap_close(&p->refs);
        luray_oidmap_close(&p->pins);
        luray_oidmap_close(&p->funcs);
        node_peer_free_sealed(p);
        free(p->peer_addr);
        free(p);
    }
    free(n->procs);
    node_free_tables(n);
    luray_store_free(n->store);
    if (n->L)
        lua_close(n->L);
    for (int i = 0; i < n->n_res; i++)
        free(n->res_names[i]);
    snprintf(addr, sizeof(addr), "%s/node.json", opts->session_dir);
    unlink(addr);
    snprintf(addr, sizeof(addr), "%s/node.sock", opts->session_dir);
    unlink(addr);
    uv_loop_close(n->loop);
    return status;
}
