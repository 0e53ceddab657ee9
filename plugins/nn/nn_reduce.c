/* Reductions, their gradients and softmax along rows (nn_reduce.h). */
#include "nn_reduce.h"

#include <math.h>
#include <string.h>

double nn_sum_all(const float *a, int64_t n)
{
    /* Four partial sums: fewer dependent adds, and still double precision. */
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;

    for (; i + 4 <= n; i += 4) {
        s0 += a[i];
        s1 += a[i + 1];
        s2 += a[i + 2];
        s3 += a[i + 3];
    }
    for (; i < n; i++)
        s0 += a[i];
    return (s0 + s1) + (s2 + s3);
}

/* Whether v beats the best so far: greater, or a NaN meeting a number. */
static inline bool beats(float v, float best)
{
    return v > best || (v != v && best == best);
}

float nn_max_all(const float *a, int64_t n, int64_t *arg)
{
    float best = a[0];
    int64_t at = 0;

    for (int64_t i = 1; i < n; i++)
        if (beats(a[i], best)) {
            best = a[i];
            at = i;
        }
    if (arg)
        *arg = at;
    return best;
}

void nn_sum_axis(const float *a, int64_t outer, int64_t len, int64_t inner, float scale,
                 float *out)
{
    for (int64_t o = 0; o < outer; o++) {
        const float *src = a + o * len * inner;
        float *dst = out + o * inner;

        if (inner == 1) {
            dst[0] = (float)(scale * nn_sum_all(src, len));
            continue;
        }
        memset(dst, 0, (size_t)inner * sizeof *dst);
        for (int64_t l = 0; l < len; l++)
            for (int64_t i = 0; i < inner; i++)
                dst[i] += src[l * inner + i];
        if (scale != 1.0f)
            for (int64_t i = 0; i < inner; i++)
                dst[i] *= scale;
    }
}

void nn_max_axis(const float *a, int64_t outer, int64_t len, int64_t inner, float *out,
                 int64_t *arg)
{
    for (int64_t o = 0; o < outer; o++) {
        const float *src = a + o * len * inner;

        for (int64_t i = 0; i < inner; i++) {
            float best = src[i];
            int64_t at = 0;

            for (int64_t l = 1; l < len; l++) {
                float v = src[l * inner + i];

                if (beats(v, best)) {
                    best = v;
                    at = l;
                }
            }
            out[o * inner + i] = best;
            if (arg)
                arg[o * inner + i] = at;
        }
    }
}

void nn_sum_axis_backward(const float *g, int64_t outer, int64_t len, int64_t inner, float scale,
                          float *dst)
{
    for (int64_t o = 0; o < outer; o++)
        for (int64_t l = 0; l < len; l++) {
            float *row = dst + (o * len + l) * inner;
            const float *src = g + o * inner;

            for (int64_t i = 0; i < inner; i++)
                row[i] = scale * src[i];
        }
}

void nn_max_axis_backward(const float *g, const int64_t *arg, int64_t outer, int64_t len,
                          int64_t inner, float *dst)
{
    memset(dst, 0, (size_t)(outer * len * inner) * sizeof *dst);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++)
            dst[(o * len + arg[o * inner + i]) * inner + i] += g[o * inner + i];
}

void nn_softmax_rows(const float *a, int64_t rows, int64_t cols, bool log, float *out)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *x = a + r * cols;
        float *y = out + r * cols;
        float m = cols ? nn_max_all(x, cols, NULL) : 0.0f;
        double s = 0;

        if (m == -INFINITY)
            m = 0.0f; /* a row of -inf: exp gives zeros, not NaN from inf - inf */
        for (int64_t c = 0; c < cols; c++) {
            y[c] = expf(x[c] - m);
            s += y[c];
        }
        if (log) {
            float ls = (float)(m + logf((float)s));

            for (int64_t c = 0; c < cols; c++)
                y[c] = x[c] - ls;
        } else {
            float inv = (float)(1.0 / s);

            for (int64_t c = 0; c < cols; c++)
                y[c] *= inv;
        }
    }
}

void nn_softmax_rows_backward(const float *g, const float *y, int64_t rows, int64_t cols,
                              bool log, float *dst)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *gr = g + r * cols, *yr = y + r * cols;
        float *d = dst + r * cols;
        double s = 0;

        if (log) { /* dx = g - softmax * sum(g) */
            for (int64_t c = 0; c < cols; c++)
                s += gr[c];
            for (int64_t c = 0; c < cols; c++)
                d[c] = gr[c] - expf(yr[c]) * (float)s;
        } else { /* dx = y * (g - sum(g * y)) */
            for (int64_t c = 0; c < cols; c++)
                s += (double)gr[c] * yr[c];
            for (int64_t c = 0; c < cols; c++)
                d[c] = yr[c] * (gr[c] - (float)s);
        }
    }
}
