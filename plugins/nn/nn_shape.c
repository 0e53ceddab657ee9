/* Shapes and the broadcasting row iterator of the nn kernels (nn_shape.h). */
#include "nn_shape.h"

#include <string.h>

#include "luray/errors.h"

int64_t nn_shape_numel(const nn_shape_t *s)
{
    int64_t n = 1;

    for (int i = 0; i < s->ndim; i++)
        n *= s->dim[i];
    return n;
}

bool nn_shape_eq(const nn_shape_t *a, const nn_shape_t *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->dim[i] != b->dim[i])
            return false;
    return true;
}

/* Dimension i counted from the right (0: last); 1 where the shape has fewer dimensions. */
static int64_t dim_from_right(const nn_shape_t *s, int i)
{
    return i < s->ndim ? s->dim[s->ndim - 1 - i] : 1;
}

int nn_shape_broadcast(const nn_shape_t *a, const nn_shape_t *b, nn_shape_t *out)
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

bool nn_shape_broadcasts_to(const nn_shape_t *from, const nn_shape_t *to)
{
    if (from->ndim > to->ndim)
        return false;
    for (int i = 0; i < from->ndim; i++) {
        int64_t x = dim_from_right(from, i);

        if (x != 1 && x != dim_from_right(to, i))
            return false;
    }
    return true;
}

/* Strides of operand s broadcast to out: the contiguous strides of s, 0 where s stretches. */
static void broadcast_strides(const nn_shape_t *s, const nn_shape_t *out, int64_t *stride)
{
    int64_t step = 1;

    for (int i = 0; i < out->ndim; i++) {
        int64_t d = dim_from_right(s, i);
        int k = out->ndim - 1 - i;

        stride[k] = (d == 1 && out->dim[k] != 1) ? 0 : step;
        step *= d;
    }
}

void nn_iter_init(nn_iter_t *it, const nn_shape_t *out, int nops, const nn_shape_t *const *ops)
{
    int64_t full[NN_ITER_OPS][NN_MAX_DIMS];
    int n = 0;

    memset(it, 0, sizeof *it);
    it->nops = nops;
    for (int k = 0; k < nops; k++)
        broadcast_strides(ops[k], out, full[k]);
    /* Drop dimensions of size 1 and merge a dimension into the next inner one when every
     * operand steps through both as through one: fewer, longer rows. */
    for (int d = 0; d < out->ndim; d++) {
        bool merge = n > 0;

        if (out->dim[d] == 1)
            continue;
        for (int k = 0; merge && k < nops; k++)
            merge = it->stride[k][n - 1] == full[k][d] * out->dim[d];
        if (merge) {
            it->dim[n - 1] *= out->dim[d];
            for (int k = 0; k < nops; k++)
                it->stride[k][n - 1] = full[k][d];
            continue;
        }
        it->dim[n] = out->dim[d];
        for (int k = 0; k < nops; k++)
            it->stride[k][n] = full[k][d];
        n++;
    }
    if (n == 0) { /* a single element */
        it->dim[0] = 1;
        for (int k = 0; k < nops; k++)
            it->stride[k][0] = 1;
        n = 1;
    }
    it->ndim = n;
    it->inner = it->dim[n - 1];
    it->rows = 1;
    for (int d = 0; d < n - 1; d++)
        it->rows *= it->dim[d];
    if (it->inner == 0)
        it->rows = 0;
}

void nn_iter_next(nn_iter_t *it)
{
    for (int d = it->ndim - 2; d >= 0; d--) {
        for (int k = 0; k < it->nops; k++)
            it->off[k] += it->stride[k][d];
        if (++it->idx[d] < it->dim[d])
            return;
        for (int k = 0; k < it->nops; k++)
            it->off[k] -= it->stride[k][d] * it->dim[d];
        it->idx[d] = 0;
    }
}
