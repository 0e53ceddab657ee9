/* Groups of the collective layer: checks what a caller asks for, picks the transport, prefixes
 * every error with the group and rank, and keeps a group that failed mid-call from being used
 * again. Also the small helpers the transports share. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "coll_internal.h"
#include "luray/errors.h"
#include "luray/tensor.h"

struct coll_group {
    char id[COLL_ID_MAX + 1];
    int rank, world;
    coll_transport_t transport;
    coll_shm_t *shm;
    coll_tcp_t *tcp;
    /* Set when a call failed in a way that leaves the ranks out of step; later calls fail. */
    char broken[COLL_ERR_MAX];
};

static const char *const op_names[COLL_OP_COUNT] = {"sum", "mean", "max"};

static const char *kind_name(uint32_t kind)
{
    switch (kind) {
    case COLL_KIND_JOIN:
        return "join";
    case COLL_KIND_BARRIER:
        return "barrier";
    case COLL_KIND_ALLREDUCE:
        return "allreduce";
    case COLL_KIND_BROADCAST:
        return "broadcast";
    default:
        return "unknown call";
    }
}

/* ---- shared helpers ---- */

void coll_errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int coll_op_parse(const char *name)
{
    for (int i = 0; name && i < COLL_OP_COUNT; i++)
        if (strcmp(name, op_names[i]) == 0)
            return i;
    return -1;
}

const char *coll_op_name(int op)
{
    return op >= 0 && op < COLL_OP_COUNT ? op_names[op] : "?";
}

size_t coll_dtype_size(int dtype)
{
    switch (dtype) {
    case LURAY_DTYPE_FLOAT32:
    case LURAY_DTYPE_INT32:
        return 4;
    case LURAY_DTYPE_FLOAT64:
    case LURAY_DTYPE_INT64:
        return 8;
    case LURAY_DTYPE_UINT8:
    case LURAY_DTYPE_BOOL:
        return 1;
    default:
        return 0;
    }
}

const char *coll_dtype_name(int dtype)
{
    static const char *const names[LURAY_DTYPE_COUNT] = {"float32", "float64", "int32",
                                                         "int64",   "uint8",   "bool"};

    return dtype >= 0 && dtype < LURAY_DTYPE_COUNT ? names[dtype] : "?";
}

double coll_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

uint64_t coll_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

void coll_cut_init(coll_cut_t *cut, size_t count, int world, size_t elem_size, size_t chunk_bytes)
{
    size_t line = 64 / elem_size;

    cut->count = count;
    cut->per = (count + (size_t)world - 1) / (size_t)world;
    cut->per = (cut->per + line - 1) / line * line;
    cut->chunk = chunk_bytes / elem_size;
    cut->nchunks = (cut->per + cut->chunk - 1) / cut->chunk;
}

size_t coll_cut_chunk(const coll_cut_t *cut, int j, size_t c, size_t *len)
{
    size_t start = (size_t)j * cut->per + c * cut->chunk;
    size_t slice_end = (size_t)(j + 1) * cut->per, end = start + cut->chunk;

    if (end > slice_end)
        end = slice_end;
    if (end > cut->count)
        end = cut->count;
    *len = end > start ? end - start : 0;
    return start;
}

static void describe(const coll_desc_t *d, char *buf, size_t len)
{
    size_t es = coll_dtype_size((int)d->dtype);

    switch (d->kind) {
    case COLL_KIND_ALLREDUCE:
        snprintf(buf, len, "allreduce %s of %llu %s elements", coll_op_name((int)d->op),
                 (unsigned long long)(es ? d->nbytes / es : 0), coll_dtype_name((int)d->dtype));
        break;
    case COLL_KIND_BROADCAST:
        snprintf(buf, len, "broadcast of %llu bytes from rank %u",
                 (unsigned long long)d->nbytes, d->root);
        break;
    default:
        snprintf(buf, len, "%s", kind_name(d->kind));
        break;
    }
}

bool coll_desc_differ(const coll_desc_t *mine, const coll_desc_t *other, int k, char *err,
                      size_t errlen)
{
    char a[96], b[96];

    if (memcmp(mine, other, sizeof *mine) == 0)
        return false;
    describe(mine, a, sizeof a);
    describe(other, b, sizeof b);
    coll_errf(err, errlen, "ranks disagree: rank %d called %s, this rank %s", k, b, a);
    return true;
}

/* ---- groups ---- */

static int check_spec(const coll_spec_t *spec, char *err, size_t errlen)
{
    if (!spec->id || !spec->id[0] || strlen(spec->id) > COLL_ID_MAX) {
        coll_errf(err, errlen, "group id must be 1 to %d bytes", COLL_ID_MAX);
        return LURAY_EINVAL;
    }
    if (spec->world_size < 1 || spec->world_size > COLL_WORLD_MAX) {
        coll_errf(err, errlen, "world_size must be 1 to %d, got %d", COLL_WORLD_MAX,
                  spec->world_size);
        return LURAY_EINVAL;
    }
    if (spec->rank < 0 || spec->rank >= spec->world_size) {
        coll_errf(err, errlen, "rank must be 0 to %d, got %d", spec->world_size - 1, spec->rank);
        return LURAY_EINVAL;
    }
    if (!(spec->timeout_s > 0) || spec->timeout_s > 1e7) {
        coll_errf(err, errlen, "timeout_s must be a positive number of seconds");
        return LURAY_EINVAL;
    }
    if (spec->transport == COLL_TCP && !spec->addresses) {
        coll_errf(err, errlen, "the tcp transport needs one address per rank");
        return LURAY_EINVAL;
    }
    return 0;
}

int coll_group_open(const coll_spec_t *spec, coll_group_t **out, char *err, size_t errlen)
{
    char why[COLL_ERR_MAX] = "";
    coll_group_t *g;
    int rc;

    *out = NULL;
    if ((rc = check_spec(spec, why, sizeof why)) < 0)
        goto err_report;
    g = calloc(1, sizeof *g);
    if (!g) {
        rc = LURAY_ENOMEM;
        snprintf(why, sizeof why, "out of memory");
        goto err_report;
    }
    snprintf(g->id, sizeof g->id, "%s", spec->id);
    g->rank = spec->rank;
    g->world = spec->world_size;
    g->transport = spec->transport;
    if (spec->transport == COLL_TCP)
        rc = coll_tcp_open(spec, &g->tcp, why, sizeof why);
    else
        rc = coll_shm_open(spec, &g->shm, why, sizeof why);
    if (rc < 0)
        goto err_free;
    *out = g;
    return 0;

err_free:
    free(g);
err_report:
    coll_errf(err, errlen, "joining group '%s' as rank %d of %d: %s", spec->id ? spec->id : "",
              spec->rank, spec->world_size, why);
    return rc;
}

void coll_group_free(coll_group_t *g)
{
    if (!g)
        return;
    coll_shm_free(g->shm);
    coll_tcp_free(g->tcp, !g->broken[0]);
    free(g);
}

/* Runs one call on the transport; the error text names the call, group and rank. */
static int run(coll_group_t *g, const coll_desc_t *d, const void *src, void *dst, char *err,
               size_t errlen)
{
    char why[COLL_ERR_MAX] = "", what[96];
    int rc;

    describe(d, what, sizeof what);
    if (g->broken[0]) {
        coll_errf(err, errlen, "%s on group '%s' (rank %d of %d): the group is unusable after "
                  "an earlier error (%s); make a new group",
                  what, g->id, g->rank, g->world, g->broken);
        return LURAY_ESTATE;
    }
    if (g->tcp)
        rc = coll_tcp_run(g->tcp, d, src, dst, why, sizeof why);
    else
        rc = coll_shm_run(g->shm, d, src, dst, why, sizeof why);
    if (rc == 0)
        return 0;
    if (rc != LURAY_EINVAL)
        snprintf(g->broken, sizeof g->broken, "%s", why);
    coll_errf(err, errlen, "%s on group '%s' (rank %d of %d): %s", what, g->id, g->rank,
              g->world, why);
    return rc;
}

int coll_allreduce(coll_group_t *g, const void *src, void *dst, size_t count, int dtype,
                   coll_op_t op, char *err, size_t errlen)
{
    coll_desc_t d = {.kind = COLL_KIND_ALLREDUCE, .dtype = (uint32_t)dtype, .op = op};

    if (dtype != LURAY_DTYPE_FLOAT32 && dtype != LURAY_DTYPE_FLOAT64) {
        coll_errf(err, errlen, "allreduce on group '%s': dtype %s is not supported (float32 or "
                  "float64)", g->id, coll_dtype_name(dtype));
        return LURAY_EINVAL;
    }
    if ((int)op < 0 || op >= COLL_OP_COUNT) {
        coll_errf(err, errlen, "allreduce on group '%s': unknown op %d", g->id, (int)op);
        return LURAY_EINVAL;
    }
    d.nbytes = (uint64_t)count * coll_dtype_size(dtype);
    return run(g, &d, src, dst, err, errlen);
}

int coll_broadcast(coll_group_t *g, void *data, size_t nbytes, int root, char *err,
                   size_t errlen)
{
    coll_desc_t d = {.kind = COLL_KIND_BROADCAST, .root = (uint32_t)root, .nbytes = nbytes};

    if (root < 0 || root >= g->world) {
        coll_errf(err, errlen, "broadcast on group '%s': root must be 0 to %d, got %d", g->id,
                  g->world - 1, root);
        return LURAY_EINVAL;
    }
    return run(g, &d, data, data, err, errlen);
}

int coll_barrier(coll_group_t *g, char *err, size_t errlen)
{
    coll_desc_t d = {.kind = COLL_KIND_BARRIER};

    return run(g, &d, NULL, NULL, err, errlen);
}

int coll_group_rank(const coll_group_t *g) { return g->rank; }

int coll_group_world_size(const coll_group_t *g) { return g->world; }

const char *coll_group_id(const coll_group_t *g) { return g->id; }

coll_transport_t coll_group_transport(const coll_group_t *g) { return g->transport; }

int coll_free_port(const char *host, char *err, size_t errlen)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof sa;
    int fd, port;

    if (inet_pton(AF_INET, host ? host : "127.0.0.1", &sa.sin_addr) != 1) {
        coll_errf(err, errlen, "free_port: '%s' is not an IPv4 address", host);
        return LURAY_EINVAL;
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto err_errno;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
        goto err_close;
    port = ntohs(sa.sin_port);
    close(fd);
    return port;

err_close:
    port = errno;
    close(fd);
    errno = port;
err_errno:
    coll_errf(err, errlen, "free_port: %s", strerror(errno));
    return LURAY_EIO;
}
