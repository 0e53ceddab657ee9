/* The coalesced geometry of the CUDA element-wise kernels and its split for gradients
 * (cu_shape.h). */
#include "cu_shape.h"

#include <string.h>

_Static_assert(sizeof(((cu_geom_t *)0)->stride) == sizeof(((nn_iter_t *)0)->stride),
               "cu_geom_t copies nn_iter_t's strides");

void cu_geom_init(cu_geom_t *g, const nn_shape_t *out, int nops, const nn_shape_t *const *ops)
{
    nn_iter_t it;

    nn_iter_init(&it, out, nops, ops);
    g->ndim = it.ndim;
    memcpy(g->dim, it.dim, sizeof g->dim);
    memcpy(g->stride, it.stride, sizeof g->stride);
}

void cu_split_init(cu_split_t *s, const cu_geom_t *g, int nops, int which, int64_t *kept,
                   int64_t *summed)
{
    memset(s, 0, sizeof *s);
    *kept = 1;
    *summed = 1;
    for (int d = 0; d < g->ndim; d++) {
        bool sum = g->stride[which][d] == 0;
        int at = sum ? s->nr++ : s->nk++;

        for (int k = 0; k < nops; k++) {
            if (sum)
                s->rstride[k][at] = g->stride[k][d];
            else
                s->kstride[k][at] = g->stride[k][d];
        }
        if (sum) {
            s->rdim[at] = g->dim[d];
            *summed *= g->dim[d];
        } else {
            s->kdim[at] = g->dim[d];
            *kept *= g->dim[d];
        }
    }
}
