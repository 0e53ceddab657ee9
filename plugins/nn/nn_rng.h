/* The nn random generator: xoshiro256** seeded through splitmix64, so one seed gives the same
 * stream on every machine; uniform and normal (Box-Muller) fills and dropout masks. */
#ifndef LURAY_NN_RNG_H
#define LURAY_NN_RNG_H

#include <stdint.h>

#include "luray/rng.h"

typedef luray_rng_t nn_rng_t;

void nn_rng_seed(nn_rng_t *r, uint64_t seed);
uint64_t nn_rng_next(nn_rng_t *r);
/* A float in [0, 1) with 24 random bits. */
float nn_rng_uniform(nn_rng_t *r);

/* out[i] uniform in [lo, hi). */
void nn_rng_fill_uniform(nn_rng_t *r, float *out, int64_t n, float lo, float hi);
/* out[i] normal with the given mean and standard deviation; values come in pairs, so an odd n
 * draws one value more than it keeps. */
void nn_rng_fill_normal(nn_rng_t *r, float *out, int64_t n, float mean, float std);
/* Inverted dropout: mask[i] is 0 with probability p, else 1 / (1 - p); p = 1 zeroes all. */
void nn_rng_dropout_mask(nn_rng_t *r, float *mask, int64_t n, float p);

#endif
