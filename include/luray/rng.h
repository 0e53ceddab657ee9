/* A seeded random stream for plugins that must reproduce their results: xoshiro256** (Blackman
 * and Vigna) seeded through splitmix64. Header-only, so every plugin draws the same numbers from
 * the same seed without linking anything. */
#ifndef LURAY_RNG_H
#define LURAY_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} luray_rng_t;

static inline uint64_t luray_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline void luray_rng_seed(luray_rng_t *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = luray_splitmix64(&seed);
}

static inline uint64_t luray_rng_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t luray_rng_next(luray_rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t result = luray_rng_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = luray_rng_rotl(s[3], 45);
    return result;
}

#endif
