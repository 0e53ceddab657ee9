/* The collective layer in plain C (no Lua): groups of W processes that allreduce, broadcast and
 * barrier over shared memory on one node or over a nanomsg tcp ring between nodes. */
#ifndef LURAY_COLLECTIVE_COLL_H
#define LURAY_COLLECTIVE_COLL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define COLL_ID_MAX 200       /* bytes of a group id */
#define COLL_WORLD_MAX 1024   /* ranks in one group */
#define COLL_ERR_MAX 512      /* a message buffer big enough for every error text */

typedef enum { COLL_SUM, COLL_MEAN, COLL_MAX, COLL_OP_COUNT } coll_op_t;

typedef enum { COLL_SHM, COLL_TCP } coll_transport_t;

/* What a rank asks for when it joins. Every rank of a group passes the same id, world size,
 * transport and addresses; only rank differs. */
typedef struct {
    const char *id;                /* names the group: unique per group of processes */
    int rank;                      /* 0..world_size-1 */
    int world_size;
    coll_transport_t transport;
    const char *const *addresses;  /* tcp: world_size "host:port" (or "tcp://host:port") */
    double timeout_s;              /* how long any wait for a peer may last */
} coll_spec_t;

typedef struct coll_group coll_group_t;

/* Joins the group: returns once every rank has joined, or fails after timeout_s naming the ranks
 * that did not come. 0 or a LURAY_E* code with a message in err. */
int coll_group_open(const coll_spec_t *spec, coll_group_t **out, char *err, size_t errlen);
/* Leaves the group; coll_group_free(NULL) is a no-op. */
void coll_group_free(coll_group_t *g);

/* Element-wise reduction of `count` float32 or float64 elements over all ranks. src and dst may
 * be the same buffer (in place); every rank ends with identical bits in dst. */
int coll_allreduce(coll_group_t *g, const void *src, void *dst, size_t count, int dtype,
                   coll_op_t op, char *err, size_t errlen);
/* Copies root's nbytes into every other rank's data. */
int coll_broadcast(coll_group_t *g, void *data, size_t nbytes, int root, char *err,
                   size_t errlen);
int coll_barrier(coll_group_t *g, char *err, size_t errlen);

int coll_group_rank(const coll_group_t *g);
int coll_group_world_size(const coll_group_t *g);
const char *coll_group_id(const coll_group_t *g);
coll_transport_t coll_group_transport(const coll_group_t *g);

/* Bytes per element of a luray_dtype_t (0 for an unknown one) and its name ("float32"). */
size_t coll_dtype_size(int dtype);
const char *coll_dtype_name(int dtype);

/* "sum", "mean", "max" <-> coll_op_t; -1 for an unknown name. */
int coll_op_parse(const char *name);
const char *coll_op_name(int op);

/* A free tcp port on host (an IPv4 address), or a LURAY_E* code. */
int coll_free_port(const char *host, char *err, size_t errlen);

#endif
