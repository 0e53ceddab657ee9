/* Unary element-wise kernels and their gradients (nn_unary.h). */
#include "nn_unary.h"

#include <math.h>

static const char *const names[NN_UNARY_COUNT] = {
    [NN_NEG] = "neg",   [NN_EXP] = "exp",         [NN_LOG] = "log",
    [NN_RELU] = "relu", [NN_SIGMOID] = "sigmoid", [NN_TANH] = "tanh",
};

const char *nn_unary_name(nn_unary_op_t op)
{
    return op >= 0 && op < NN_UNARY_COUNT ? names[op] : "?";
}

bool nn_unary_grad_from_out(nn_unary_op_t op)
{
    return op != NN_LOG;
}

/* Never overflows: exp of a non-positive number only. */
static inline float sigmoid(float x)
{
    if (x >= 0.0f)
        return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

void nn_unary(nn_unary_op_t op, const float *a, float *out, int64_t n)
{
    int64_t i;

    switch (op) {
    case NN_NEG:
        for (i = 0; i < n; i++)
            out[i] = -a[i];
        break;
    case NN_EXP:
        for (i = 0; i < n; i++)
            out[i] = expf(a[i]);
        break;
    case NN_LOG:
        for (i = 0; i < n; i++)
            out[i] = logf(a[i]);
        break;
    case NN_RELU:
        for (i = 0; i < n; i++)
            out[i] = a[i] > 0.0f ? a[i] : 0.0f;
        break;
    case NN_SIGMOID:
        for (i = 0; i < n; i++)
            out[i] = sigmoid(a[i]);
        break;
    case NN_TANH:
        for (i = 0; i < n; i++)
            out[i] = tanhf(a[i]);
        break;
    default:
        break;
    }
}

void nn_unary_backward(nn_unary_op_t op, const float *g, const float *a, const float *out,
                       float *dst, int64_t n)
{
    int64_t i;

    switch (op) {
    case NN_NEG:
        for (i = 0; i < n; i++)
            dst[i] = -g[i];
        break;
    case NN_EXP:
        for (i = 0; i < n; i++)
            dst[i] = g[i] * out[i];
        break;
    case NN_LOG:
        for (i = 0; i < n; i++)
            dst[i] = g[i] / a[i];
        break;
    case NN_RELU:
        /* g is read whatever the sign: a select, not a branch that random signs mispredict */
        for (i = 0; i < n; i++) {
            float gv = g[i];

            dst[i] = out[i] > 0.0f ? gv : 0.0f;
        }
        break;
    case NN_SIGMOID:
        for (i = 0; i < n; i++)
            dst[i] = g[i] * out[i] * (1.0f - out[i]);
        break;
    case NN_TANH:
        for (i = 0; i < n; i++)
            dst[i] = g[i] * (1.0f - out[i] * out[i]);
        break;
    default:
        break;
    }
}
