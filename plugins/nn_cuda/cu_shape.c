/* Shapes, broadcasting and the coalesced geometry of the CUDA element-wise kernels (cu_shape.h). */
#include "cu_shape.h"

#include <string.h>

#include "luray/errors.h"

int64_t cu_shape_numel(const cu_shape_t *s)
{
    int64_t n = 1;

    for (int i = 0; i < s->ndim; i++)
        n *= s->dim[i];
    return n;
}

bool cu_shape_eq(const cu_shape_t *a, const cu_shape_t *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->dim[i] != b->dim[i])
            return false;
    return true;
}

/* Dimension i counted from the right (0: last); 1 where the shape has fewer dimensions. */
static int64_t dim_from_right(const cu_shape_t *s, int i)
{
    return i < s->ndim ? s->dim[s->ndim - 1 - i] : 1;
}

int cu_shape_broadcast(const cu_shape_t *a, const cu_shape_t *b, cu_shape_t *out)
{
    int n = a->ndim > b->ndim ? a->ndim : b->ndim;

    for (int i = 0; i < n; i++) {
        int64_t x = dim_from_right(a, i), y = dim_from_right(b, i);

        if (x != y && x != 1 && y != 1)
            return LURAY_EINVAL;
        out->dim[n - 1 - i] = x == 1 ? y : x;
    }
    out->ndim = n;
    return 0;
}

/* Strides of operand s broadcast to out: the contiguous strides of s, 0 where s stretches. */
static void broadcast_strides(const cu_shape_t *s, const cu_shape_t *out, int64_t *stride)
{
    int64_t step = 1;

    for (int i = 0; i < out->ndim; i++) {
        int64_t d = dim_from_right(s, i);
        int k = out->ndim - 1 - i;

        stride[k] = (d == 1 && out->dim[k] != 1) ? 0 : step;
        step *= d;
    }
}

void cu_geom_init(cu_geom_t *g, const cu_shape_t *out, int nops, const cu_shape_t *const *ops)
{
    int64_t full[CU_GEOM_OPS][CU_MAX_DIMS];
    int n = 0;

    memset(g, 0, sizeof *g);
    for (int k = 0; k < nops; k++)
        broadcast_strides(ops[k], out, full[k]);
    /* Drop dimensions of size 1; merge a dimension into the one before it when every operand
     * steps through both as through one. */
    for (int d = 0; d < out->ndim; d++) {
        bool merge = n > 0;

        if (out->dim[d] == 1)
            continue;
        for (int k = 0; merge && k < nops; k++)
            merge = g->stride[k][n - 1] == full[k][d] * out->dim[d];
        if (merge) {
            g->dim[n - 1] *= out->dim[d];
            for (int k = 0; k < nops; k++)
                g->stride[k][n - 1] = full[k][d];
            continue;
        }
        g->dim[n] = out->dim[d];
        for (int k = 0; k < nops; k++)
            g->stride[k][n] = full[k][d];
        n++;
    }
    if (n == 0) { /* a single element */
        g->dim[0] = 1;
        for (int k = 0; k < nops; k++)
            g->stride[k][0] = 1;
        n = 1;
    }
    g->ndim = n;
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
