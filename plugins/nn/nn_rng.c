/* xoshiro256** (Blackman and Vigna) and the fills drawn from it (nn_rng.h). */
#include "nn_rng.h"

#include <math.h>

void nn_rng_seed(nn_rng_t *r, uint64_t seed)
{
    luray_rng_seed(r, seed);
}

uint64_t nn_rng_next(nn_rng_t *r)
{
    return luray_rng_next(r);
}

float nn_rng_uniform(nn_rng_t *r)
{
    return (float)(nn_rng_next(r) >> 40) * 0x1.0p-24f;
}

void nn_rng_fill_uniform(nn_rng_t *r, float *out, int64_t n, float lo, float hi)
{
    for (int64_t i = 0; i < n; i++) {
        float v = lo + (hi - lo) * nn_rng_uniform(r);

        out[i] = v < hi ? v : lo; /* rounding can reach hi; keep the interval half-open */
    }
}

void nn_rng_fill_normal(nn_rng_t *r, float *out, int64_t n, float mean, float std)
{
    const double two_pi = 6.283185307179586476925286766559;

    for (int64_t i = 0; i < n; i += 2) {
        /* u1 in (0, 1]: log(u1) is finite */
        double u1 = ((double)(nn_rng_next(r) >> 11) + 1.0) * 0x1.0p-53;
        double u2 = (double)(nn_rng_next(r) >> 11) * 0x1.0p-53;
        double rad = sqrt(-2.0 * log(u1));

        out[i] = (float)(mean + std * rad * cos(two_pi * u2));
        if (i + 1 < n)
            out[i + 1] = (float)(mean + std * rad * sin(two_pi * u2));
    }
}

void nn_rng_dropout_mask(nn_rng_t *r, float *mask, int64_t n, float p)
{
    float keep = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;

    for (int64_t i = 0; i < n; i++)
        mask[i] = nn_rng_uniform(r) >= p ? keep : 0.0f;
}
