/* Loss functions and their gradients (nn_loss.h). */
#include "nn_loss.h"

#include <math.h>
#include <stddef.h>

#include "luray/errors.h"
#include "nn_reduce.h"

#define BCE_LOG_MIN (-100.0)
#define BCE_GRAD_EPS 1e-12

int nn_cross_entropy(const float *logits, const int64_t *labels, int64_t n, int64_t c,
                     float *probs, double *sum, int64_t *bad)
{
    double total = 0;

    for (int64_t r = 0; r < n; r++) {
        if (labels[r] < 0 || labels[r] >= c) {
            *bad = r;
            return LURAY_EINVAL;
        }
    }
    nn_softmax_rows(logits, n, c, false, probs);
    for (int64_t r = 0; r < n; r++) {
        /* -log softmax, from the logits so that a tiny probability keeps its precision */
        const float *x = logits + r * c;
        float m = nn_max_all(x, c, NULL);
        double s = 0;

        for (int64_t k = 0; k < c; k++)
            s += exp((double)x[k] - m);
        total += m + log(s) - x[labels[r]];
    }
    *sum = total;
    return 0;
}

void nn_cross_entropy_backward(const float *probs, const int64_t *labels, int64_t n, int64_t c,
                               float scale, float *dst)
{
    for (int64_t r = 0; r < n; r++) {
        const float *p = probs + r * c;
        float *d = dst + r * c;

        for (int64_t k = 0; k < c; k++)
            d[k] = scale * p[k];
        d[labels[r]] -= scale;
    }
}

double nn_mse(const float *p, const float *t, int64_t n)
{
    double s = 0;

    for (int64_t i = 0; i < n; i++) {
        double d = (double)p[i] - t[i];
        s += d * d;
    }
    return s;
}

void nn_mse_backward(const float *p, const float *t, int64_t n, float scale, float *dst)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] = 2.0f * scale * (p[i] - t[i]);
}

static double clamped_log(double v)
{
    double l = log(v);
    return l < BCE_LOG_MIN ? BCE_LOG_MIN : l;
}

double nn_bce(const float *p, const float *t, int64_t n)
{
    double s = 0;

    for (int64_t i = 0; i < n; i++)
        s -= t[i] * clamped_log(p[i]) + (1.0 - t[i]) * clamped_log(1.0 - p[i]);
    return s;
}

void nn_bce_backward(const float *p, const float *t, int64_t n, float scale, float *dst)
{
    for (int64_t i = 0; i < n; i++) {
        double d = (double)p[i] * (1.0 - p[i]);

        dst[i] = (float)(scale * (p[i] - t[i]) / (d > BCE_GRAD_EPS ? d : BCE_GRAD_EPS));
    }
}

double nn_bce_logits(const float *x, const float *t, int64_t n)
{
    double s = 0;

    for (int64_t i = 0; i < n; i++) {
        double v = x[i];

        s += (v > 0 ? v : 0) - v * t[i] + log1p(exp(-fabs(v)));
    }
    return s;
}

void nn_bce_logits_backward(const float *x, const float *t, int64_t n, float scale, float *dst)
{
    for (int64_t i = 0; i < n; i++) {
        double v = x[i], sig = v >= 0 ? 1.0 / (1.0 + exp(-v)) : exp(v) / (1.0 + exp(v));

        dst[i] = (float)(scale * (sig - t[i]));
    }
}
