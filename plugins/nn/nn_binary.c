/* Broadcasting element-wise binary kernels and their gradient reductions (nn_binary.h). */
#include "nn_binary.h"

#include <math.h>
#include <string.h>

static const char *const names[NN_BINARY_COUNT] = {
    [NN_ADD] = "add", [NN_SUB] = "sub", [NN_MUL] = "mul", [NN_DIV] = "div", [NN_POW] = "pow",
    [NN_EQ] = "eq",   [NN_NE] = "ne",   [NN_LT] = "lt",   [NN_LE] = "le",   [NN_GT] = "gt",
    [NN_GE] = "ge",
};

const char *nn_binary_name(nn_binary_op_t op)
{
    return op >= 0 && op < NN_BINARY_COUNT ? names[op] : "?";
}

bool nn_binary_has_grad(nn_binary_op_t op)
{
    return op <= NN_POW;
}

/* One row: o[i] = EXPR(x, y), with a separate loop per broadcast pattern so that each one
 * vectorizes (steps 0 or 1, see nn_iter_step). */
#define ROW(EXPR)                                                                 \
    do {                                                                          \
        if (sa && sb) {                                                           \
            for (int64_t i = 0; i < n; i++) {                                     \
                float x = a[i], y = b[i];                                         \
                o[i] = (EXPR);                                                    \
            }                                                                     \
        } else if (sa) {                                                          \
            const float y = b[0];                                                 \
            for (int64_t i = 0; i < n; i++) {                                     \
                float x = a[i];                                                   \
                o[i] = (EXPR);                                                    \
            }                                                                     \
        } else if (sb) {                                                          \
            const float x = a[0];                                                 \
            for (int64_t i = 0; i < n; i++) {                                     \
                float y = b[i];                                                   \
                o[i] = (EXPR);                                                    \
            }                                                                     \
        } else {                                                                  \
            const float x = a[0], y = b[0], v = (EXPR);                           \
            for (int64_t i = 0; i < n; i++)                                       \
                o[i] = v;                                                         \
        }                                                                         \
    } while (0)

static void binary_row(nn_binary_op_t op, const float *a, int64_t sa, const float *b, int64_t sb,
                       float *o, int64_t n)
{
    switch (op) {
    case NN_ADD: ROW(x + y); break;
    case NN_SUB: ROW(x - y); break;
    case NN_MUL: ROW(x * y); break;
    case NN_DIV: ROW(x / y); break;
    case NN_POW: ROW(y == 2.0f ? x * x : powf(x, y)); break;
    case NN_EQ: ROW(x == y ? 1.0f : 0.0f); break;
    case NN_NE: ROW(x != y ? 1.0f : 0.0f); break;
    case NN_LT: ROW(x < y ? 1.0f : 0.0f); break;
    case NN_LE: ROW(x <= y ? 1.0f : 0.0f); break;
    case NN_GT: ROW(x > y ? 1.0f : 0.0f); break;
    case NN_GE: ROW(x >= y ? 1.0f : 0.0f); break;
    default: break;
    }
}

void nn_binary(nn_binary_op_t op, const float *a, const nn_shape_t *as, const float *b,
               const nn_shape_t *bs, float *out, const nn_shape_t *os)
{
    const nn_shape_t *ops[3] = {os, as, bs};
    nn_iter_t it;

    nn_iter_init(&it, os, 3, ops);
    for (int64_t r = 0; r < it.rows; r++) {
        binary_row(op, a + it.off[1], nn_iter_step(&it, 1), b + it.off[2], nn_iter_step(&it, 2),
                   out + it.off[0], it.inner);
        nn_iter_next(&it);
    }
}

/* Gradient terms: gv the incoming gradient, x and y the operands, o the forward result. */
static inline float pow_grad_base(float gv, float x, float y)
{
    return y == 0.0f ? 0.0f : gv * y * powf(x, y - 1.0f);
}

/* d(x^y)/dy = x^y log x; taken as 0 where x == 0 and y >= 0, as PyTorch does. */
static inline float pow_grad_exp(float gv, float x, float y, float o)
{
    return (x == 0.0f && y >= 0.0f) ? 0.0f : gv * o * logf(x);
}

#define BROW(EXPR)                                                                \
    for (int64_t i = 0; i < n; i++) {                                             \
        float gv = g[i], x = a[i * sa], y = b[i * sb], o = out[i];                \
        (void)x, (void)y, (void)o;                                                \
        d[i * sd] += (EXPR);                                                      \
    }

static void backward_row(nn_binary_op_t op, int which, const float *g, const float *a, int64_t sa,
                         const float *b, int64_t sb, const float *out, float *d, int64_t sd,
                         int64_t n)
{
    switch (op * 2 + which) {
    case NN_ADD * 2: BROW(gv); break;
    case NN_ADD * 2 + 1: BROW(gv); break;
    case NN_SUB * 2: BROW(gv); break;
    case NN_SUB * 2 + 1: BROW(-gv); break;
    case NN_MUL * 2: BROW(gv * y); break;
    case NN_MUL * 2 + 1: BROW(gv * x); break;
    case NN_DIV * 2: BROW(gv / y); break;
    case NN_DIV * 2 + 1: BROW(-gv * x / (y * y)); break;
    case NN_POW * 2: BROW(pow_grad_base(gv, x, y)); break;
    case NN_POW * 2 + 1: BROW(pow_grad_exp(gv, x, y, o)); break;
    default: break;
    }
}

void nn_binary_backward(nn_binary_op_t op, int which, const float *g, const float *a,
                        const nn_shape_t *as, const float *b, const nn_shape_t *bs,
                        const float *out, const nn_shape_t *os, float *dst)
{
    const nn_shape_t *ops[4] = {os, as, bs, which ? bs : as};
    nn_iter_t it;

    memset(dst, 0, (size_t)nn_shape_numel(which ? bs : as) * sizeof *dst);
    if (!nn_binary_has_grad(op))
        return;
    nn_iter_init(&it, os, 4, ops);
    for (int64_t r = 0; r < it.rows; r++) {
        backward_row(op, which, g + it.off[0], a + it.off[1], nn_iter_step(&it, 1),
                     b + it.off[2], nn_iter_step(&it, 2), out + it.off[0], dst + it.off[3],
                     nn_iter_step(&it, 3), it.inner);
        nn_iter_next(&it);
    }
}

void nn_axpy(float *dst, float alpha, const float *src, int64_t n)
{
    if (alpha == 1.0f) {
        for (int64_t i = 0; i < n; i++)
            dst[i] += src[i];
        return;
    }
    for (int64_t i = 0; i < n; i++)
        dst[i] += alpha * src[i];
}
