/* Reduction kernels: 16-byte vectors (GCC/Clang vector types: SSE2 or NEON, the baselines, so the
 * plugin's -O2 build is SIMD without per-file flags), two per iteration, then a scalar tail. Each
 * combination of op, division and second store gets its own loop: the flags are constants of an
 * always-inlined body. */
#include "coll_reduce.h"

#include <stdbool.h>
#include <stdint.h>

#include "coll.h"
#include "luray/tensor.h"

typedef float vf32 __attribute__((vector_size(16)));
typedef int32_t vi32 __attribute__((vector_size(16)));
typedef double vf64 __attribute__((vector_size(16)));
typedef int64_t vi64 __attribute__((vector_size(16)));
/* Memory views that allow any alignment of the element and any aliasing: loads and stores
 * through them are plain unaligned moves. */
typedef vf32 mf32 __attribute__((aligned(4), may_alias));
typedef vf64 mf64 __attribute__((aligned(8), may_alias));

#define INLINE static inline __attribute__((always_inline))

/* The larger of x and y per lane, y where either is NaN (as maxps does), via a compare mask. */
#define VMAX(VI, x, y)                                                                     \
    ((__typeof__(x))((((VI)(x)) & (VI)((x) > (y))) | (((VI)(y)) & ~(VI)((x) > (y)))))

#define DEFINE_LOOP(NAME, T, V, VI, M)                                                       \
    INLINE void NAME(bool max, bool scale, bool both, T *res, T *out, const T *a, const T *b, \
                     size_t n, T div)                                                       \
    {                                                                                       \
        const size_t lanes = sizeof(V) / sizeof(T);                                         \
        size_t i = 0;                                                                       \
                                                                                            \
        for (; i + 2 * lanes <= n; i += 2 * lanes) {                                        \
            V x0 = *(const M *)(a + i), x1 = *(const M *)(a + i + lanes);                   \
            V y0 = *(const M *)(b + i), y1 = *(const M *)(b + i + lanes), v0, v1;           \
                                                                                            \
            v0 = max ? VMAX(VI, x0, y0) : x0 + y0;                                          \
            v1 = max ? VMAX(VI, x1, y1) : x1 + y1;                                          \
            if (scale) {                                                                    \
                v0 = v0 / div;                                                              \
                v1 = v1 / div;                                                              \
            }                                                                               \
            *(M *)(res + i) = v0;                                                           \
            *(M *)(res + i + lanes) = v1;                                                   \
            if (both) {                                                                     \
                *(M *)(out + i) = v0;                                                       \
                *(M *)(out + i + lanes) = v1;                                               \
            }                                                                               \
        }                                                                                   \
        for (; i < n; i++) {                                                                \
            T s = max ? (a[i] > b[i] ? a[i] : b[i]) : a[i] + b[i];                          \
                                                                                            \
            if (scale)                                                                      \
                s = s / div;                                                                \
            res[i] = s;                                                                     \
            if (both)                                                                       \
                out[i] = s;                                                                 \
        }                                                                                   \
    }                                                                                       \
                                                                                            \
    static void NAME##_any(int op, T *res, T *out, const T *a, const T *b, size_t n, T div) \
    {                                                                                       \
        bool max = op == COLL_MAX, scale = !max && div != 1;                                \
                                                                                            \
        if (max && out)                                                                     \
            NAME(true, false, true, res, out, a, b, n, div);                                \
        else if (max)                                                                       \
            NAME(true, false, false, res, out, a, b, n, div);                               \
        else if (scale && out)                                                              \
            NAME(false, true, true, res, out, a, b, n, div);                                \
        else if (scale)                                                                     \
            NAME(false, true, false, res, out, a, b, n, div);                               \
        else if (out)                                                                       \
            NAME(false, false, true, res, out, a, b, n, div);                               \
        else                                                                                \
            NAME(false, false, false, res, out, a, b, n, div);                              \
    }

DEFINE_LOOP(loop_f32, float, vf32, vi32, mf32)
DEFINE_LOOP(loop_f64, double, vf64, vi64, mf64)

void coll_reduce(int dtype, int op, void *res, void *out, const void *a, const void *b, size_t n,
                 int div)
{
    if (div < 1)
        div = 1;
    if (dtype == LURAY_DTYPE_FLOAT64)
        loop_f64_any(op, res, out, a, b, n, (double)div);
    else
        loop_f32_any(op, res, out, a, b, n, (float)div);
}
