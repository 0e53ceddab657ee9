/* Unit tests of the nn plugin's C kernels (plugins/nn/nn_*.c) against naive loops: broadcasting
 * binary ops and their gradient reductions, unary ops, sgemm in every transpose layout, the fused
 * linear layer, reductions, softmax, losses, the generator, optimizers and indexing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include "luray/errors.h"
#include "luray/tensor.h"
#include "nn/nn_binary.h"
#include "nn/nn_blas.h"
#include "nn/nn_index.h"
#include "nn/nn_loss.h"
#include "nn/nn_optim.h"
#include "nn/nn_reduce.h"
#include "nn/nn_rng.h"
#include "nn/nn_shape.h"
#include "nn/nn_unary.h"

/* ---- helpers ---- */

static uint64_t lcg = 1;

static float rndf(float lo, float hi)
{
    lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + (hi - lo) * (float)(lcg >> 40) / (float)(1 << 24);
}

static float *randbuf(int64_t n, float lo, float hi)
{
    float *p = malloc((size_t)(n ? n : 1) * sizeof *p);

    assert_non_null(p);
    for (int64_t i = 0; i < n; i++)
        p[i] = rndf(lo, hi);
    return p;
}

static nn_shape_t shape_of(int ndim, const int64_t *dims)
{
    nn_shape_t s = {ndim, {0}};

    for (int i = 0; i < ndim; i++)
        s.dim[i] = dims[i];
    return s;
}

static void assert_close(double got, double want, double tol)
{
    if (fabs(got - want) > tol * (1.0 + fabs(want)))
        fail_msg("got %.9g, want %.9g", got, want);
}

/* The flat offset in operand s of the output element at flat index e of shape os. */
static int64_t bcast_offset(const nn_shape_t *os, const nn_shape_t *s, int64_t e)
{
    int64_t off = 0, step = 1;

    for (int i = 0; i < os->ndim; i++) {
        int d = os->ndim - 1 - i, sd = s->ndim - 1 - i;
        int64_t idx = e % os->dim[d];

        e /= os->dim[d];
        if (sd >= 0) {
            if (s->dim[sd] != 1)
                off += idx * step;
            step *= s->dim[sd];
        }
    }
    return off;
}

static double naive_op(nn_binary_op_t op, double x, double y)
{
    switch (op) {
    case NN_ADD: return x + y;
    case NN_SUB: return x - y;
    case NN_MUL: return x * y;
    case NN_DIV: return x / y;
    case NN_POW: return pow(x, y);
    case NN_EQ: return x == y;
    case NN_NE: return x != y;
    case NN_LT: return x < y;
    case NN_LE: return x <= y;
    case NN_GT: return x > y;
    default: return x >= y;
    }
}

/* d op / d operand `which` at (x, y), times g */
static double naive_grad(nn_binary_op_t op, int which, double g, double x, double y)
{
    switch (op) {
    case NN_ADD: return g;
    case NN_SUB: return which ? -g : g;
    case NN_MUL: return which ? g * x : g * y;
    case NN_DIV: return which ? -g * x / (y * y) : g / y;
    case NN_POW: return which ? g * pow(x, y) * log(x) : g * y * pow(x, y - 1);
    default: return 0;
    }
}

/* Shape pairs that broadcast, including scalars, size-1 stretches on either side and rank
 * differences. */
static const struct {
    int an, bn;
    int64_t a[4], b[4];
} pairs[] = {
    {2, 2, {3, 4}, {3, 4}},    {2, 1, {3, 4}, {4}},       {2, 2, {3, 1}, {1, 4}},
    {3, 2, {2, 3, 4}, {3, 1}}, {2, 0, {2, 3}, {0}},       {0, 2, {0}, {2, 3}},
    {1, 2, {5}, {4, 1}},       {3, 3, {2, 1, 3}, {1, 4, 1}}, {4, 2, {2, 1, 3, 5}, {3, 1}},
};

/* ---- binary ---- */

static void test_binary_broadcast_matches_naive(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        nn_shape_t as = shape_of(pairs[k].an, pairs[k].a), bs = shape_of(pairs[k].bn, pairs[k].b);
        nn_shape_t os;

        assert_int_equal(nn_shape_broadcast(&as, &bs, &os), 0);
        int64_t n = nn_shape_numel(&os);
        float *a = randbuf(nn_shape_numel(&as), 0.5f, 2.0f);
        float *b = randbuf(nn_shape_numel(&bs), 0.5f, 2.0f);
        float *out = malloc((size_t)n * sizeof *out);

        for (int op = 0; op < NN_BINARY_COUNT; op++) {
            nn_binary(op, a, &as, b, &bs, out, &os);
            for (int64_t e = 0; e < n; e++) {
                double want = naive_op(op, a[bcast_offset(&os, &as, e)],
                                       b[bcast_offset(&os, &bs, e)]);
                assert_close(out[e], want, 1e-6);
            }
        }
        free(a);
        free(b);
        free(out);
    }
}

static void test_binary_backward_reduces_to_operand(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        nn_shape_t as = shape_of(pairs[k].an, pairs[k].a), bs = shape_of(pairs[k].bn, pairs[k].b);
        nn_shape_t os;

        nn_shape_broadcast(&as, &bs, &os);
        int64_t n = nn_shape_numel(&os), na = nn_shape_numel(&as), nb = nn_shape_numel(&bs);
        float *a = randbuf(na, 0.5f, 2.0f), *b = randbuf(nb, 0.5f, 2.0f);
        float *g = randbuf(n, -1.0f, 1.0f), *out = malloc((size_t)n * sizeof *out);
        float *da = malloc((size_t)na * sizeof *da), *db = malloc((size_t)nb * sizeof *db);
        double *wa = malloc((size_t)na * sizeof *wa), *wb = malloc((size_t)nb * sizeof *wb);

        for (int op = NN_ADD; op <= NN_POW; op++) {
            nn_binary(op, a, &as, b, &bs, out, &os);
            nn_binary_backward(op, 0, g, a, &as, b, &bs, out, &os, da);
            nn_binary_backward(op, 1, g, a, &as, b, &bs, out, &os, db);
            memset(wa, 0, (size_t)na * sizeof *wa);
            memset(wb, 0, (size_t)nb * sizeof *wb);
            for (int64_t e = 0; e < n; e++) {
                int64_t ia = bcast_offset(&os, &as, e), ib = bcast_offset(&os, &bs, e);

                wa[ia] += naive_grad(op, 0, g[e], a[ia], b[ib]);
                wb[ib] += naive_grad(op, 1, g[e], a[ia], b[ib]);
            }
            for (int64_t i = 0; i < na; i++)
                assert_close(da[i], wa[i], 1e-5);
            for (int64_t i = 0; i < nb; i++)
                assert_close(db[i], wb[i], 1e-5);
        }
        free(a);
        free(b);
        free(g);
        free(out);
        free(da);
        free(db);
        free(wa);
        free(wb);
    }
}

static void test_shape_broadcast_rules(void **state)
{
    nn_shape_t a = {2, {3, 4}}, b = {1, {3}}, c = {2, {3, 1}}, out;

    (void)state;
    assert_int_equal(nn_shape_broadcast(&a, &b, &out), LURAY_EINVAL);
    assert_int_equal(nn_shape_broadcast(&a, &c, &out), 0);
    assert_int_equal(out.ndim, 2);
    assert_int_equal(out.dim[1], 4);
    assert_true(nn_shape_broadcasts_to(&c, &a));
    assert_false(nn_shape_broadcasts_to(&a, &c));
}

static void test_axpy(void **state)
{
    float d[3] = {1, 2, 3}, s[3] = {1, 1, 2};

    (void)state;
    nn_axpy(d, 1.0f, s, 3);
    nn_axpy(d, -0.5f, s, 3);
    assert_close(d[0], 1.5, 1e-7);
    assert_close(d[2], 4.0, 1e-7);
}

/* ---- unary ---- */

static double naive_unary(nn_unary_op_t op, double x)
{
    switch (op) {
    case NN_NEG: return -x;
    case NN_EXP: return exp(x);
    case NN_LOG: return log(x);
    case NN_RELU: return x > 0 ? x : 0;
    case NN_SIGMOID: return 1 / (1 + exp(-x));
    default: return tanh(x);
    }
}

static double naive_unary_grad(nn_unary_op_t op, double x)
{
    switch (op) {
    case NN_NEG: return -1;
    case NN_EXP: return exp(x);
    case NN_LOG: return 1 / x;
    case NN_RELU: return x > 0;
    case NN_SIGMOID: return exp(-x) / ((1 + exp(-x)) * (1 + exp(-x)));
    default: return 1 - tanh(x) * tanh(x);
    }
}

static void test_unary_and_grads(void **state)
{
    enum { N = 257 };
    float *x = randbuf(N, 0.05f, 3.0f), *y = malloc(N * sizeof *y), *g = randbuf(N, -1, 1);
    float *d = malloc(N * sizeof *d);

    (void)state;
    for (int i = 0; i < N; i += 2)
        if (x[i] > 0)
            x[i] = -x[i]; /* both signs, except for log */
    for (int op = 0; op < NN_UNARY_COUNT; op++) {
        float *in = x;
        float pos[N];

        if (op == NN_LOG) {
            for (int i = 0; i < N; i++)
                pos[i] = fabsf(x[i]);
            in = pos;
        }
        nn_unary(op, in, y, N);
        nn_unary_backward(op, g, in, y, d, N);
        for (int i = 0; i < N; i++) {
            assert_close(y[i], naive_unary(op, in[i]), 1e-6);
            assert_close(d[i], g[i] * naive_unary_grad(op, in[i]), 1e-5);
        }
        if (nn_unary_grad_from_out(op)) { /* in place, from the output alone */
            float gg[N];

            memcpy(gg, g, sizeof gg);
            nn_unary_backward(op, gg, NULL, y, gg, N);
            assert_memory_equal(gg, d, sizeof gg);
        }
    }
    /* sigmoid of large magnitudes stays finite */
    float big[2] = {-200, 200}, sb[2];
    nn_unary(NN_SIGMOID, big, sb, 2);
    assert_close(sb[0], 0, 1e-30);
    assert_close(sb[1], 1, 1e-7);
    free(x);
    free(y);
    free(g);
    free(d);
}

/* ---- matrices ---- */

/* C = op(A) op(B) + beta C, naively, in double. */
static void naive_gemm(bool ta, bool tb, int m, int n, int k, const float *a, const float *b,
                       float beta, const float *c0, double *c)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = beta != 0 ? beta * c0[i * n + j] : 0;

            for (int p = 0; p < k; p++)
                s += (double)(ta ? a[p * m + i] : a[i * k + p]) *
                     (tb ? b[j * k + p] : b[p * n + j]);
            c[i * n + j] = s;
        }
}

static void test_sgemm_every_layout(void **state)
{
    const int m = 7, n = 5, k = 9;
    float *a = randbuf(m * k, -1, 1), *b = randbuf(k * n, -1, 1), *c0 = randbuf(m * n, -1, 1);
    float *c = malloc((size_t)(m * n) * sizeof *c);
    double *want = malloc((size_t)(m * n) * sizeof *want);

    (void)state;
    for (int layout = 0; layout < 8; layout++) {
        bool ta = layout & 1, tb = layout & 2;
        float beta = (layout & 4) ? 1.0f : 0.0f;

        memcpy(c, c0, (size_t)(m * n) * sizeof *c);
        assert_int_equal(nn_sgemm(ta, tb, m, n, k, 1.0f, a, b, beta, c), 0);
        naive_gemm(ta, tb, m, n, k, a, b, beta, c0, want);
        for (int i = 0; i < m * n; i++)
            assert_close(c[i], want[i], 1e-5);
    }
    /* k = 0: C = beta C; m = 0: nothing */
    memcpy(c, c0, (size_t)(m * n) * sizeof *c);
    assert_int_equal(nn_sgemm(false, false, m, n, 0, 1.0f, a, b, 0.0f, c), 0);
    assert_close(c[3], 0, 0);
    assert_int_equal(nn_sgemm(false, false, 0, n, k, 1.0f, a, b, 0.0f, c), 0);
    assert_int_equal(nn_sgemm(false, false, (int64_t)1 << 40, 1, 1, 1.0f, a, b, 0.0f, c),
                     LURAY_ETOOBIG);
    free(a);
    free(b);
    free(c0);
    free(c);
    free(want);
}

static void test_linear_forward_and_bias_grad(void **state)
{
    const int m = 6, n = 4, k = 5;
    float *x = randbuf(m * k, -1, 1), *w = randbuf(n * k, -1, 1), *bias = randbuf(n, -1, 1);
    float out[6 * 4], db[4] = {1, 1, 1, 1};
    double want[6 * 4];

    (void)state;
    const int acts[] = {NN_ACT_NONE, NN_RELU, NN_SIGMOID, NN_TANH};
    for (size_t a = 0; a < 4; a++) {
        assert_int_equal(nn_linear_forward(x, w, bias, m, n, k, acts[a], out), 0);
        naive_gemm(false, true, m, n, k, x, w, 0, NULL, want);
        for (int i = 0; i < m * n; i++) {
            double v = want[i] + bias[i % n];

            if (acts[a] != NN_ACT_NONE)
                v = naive_unary((nn_unary_op_t)acts[a], v);
            assert_close(out[i], v, 1e-5);
        }
    }
    assert_int_equal(nn_linear_forward(x, w, NULL, m, n, k, NN_ACT_NONE, out), 0);
    assert_close(out[5], want[5], 1e-5);
    /* the bias gradient: column sums, accumulated with beta 1 */
    nn_sum_rows(x, m, n, 1.0f, db);
    for (int j = 0; j < n; j++) {
        double s = 1;

        for (int i = 0; i < m; i++)
            s += x[i * n + j];
        assert_close(db[j], s, 1e-5);
    }
    free(x);
    free(w);
    free(bias);
}

/* ---- reductions and softmax ---- */

static void test_reductions(void **state)
{
    enum { O = 3, L = 4, I = 5 };
    float *a = randbuf(O * L * I, -2, 2), s[O * I], mx[O * I], g[O * I], d[O * L * I];
    int64_t arg[O * I], at;
    double total = 0;

    (void)state;
    for (int i = 0; i < O * L * I; i++)
        total += a[i];
    assert_close(nn_sum_all(a, O * L * I), total, 1e-9);
    nn_sum_axis(a, O, L, I, 0.5f, s);
    nn_max_axis(a, O, L, I, mx, arg);
    for (int o = 0; o < O; o++)
        for (int i = 0; i < I; i++) {
            double sum = 0;
            float best = -INFINITY;
            int64_t where = 0;

            for (int l = 0; l < L; l++) {
                float v = a[(o * L + l) * I + i];

                sum += v;
                if (v > best) {
                    best = v;
                    where = l;
                }
            }
            assert_close(s[o * I + i], 0.5 * sum, 1e-6);
            assert_close(mx[o * I + i], best, 0);
            assert_int_equal(arg[o * I + i], where);
        }
    nn_sum_axis(a, O * L, I, 1, 1.0f, s); /* the last axis */
    assert_close(s[2], a[10] + a[11] + a[12] + a[13] + a[14], 1e-6);
    for (int i = 0; i < O * I; i++)
        g[i] = (float)i;
    nn_sum_axis_backward(g, O, L, I, 2.0f, d);
    assert_close(d[(1 * L + 2) * I + 3], 2.0 * g[1 * I + 3], 0);
    nn_max_axis_backward(g, arg, O, L, I, d);
    assert_close(d[(2 * L + arg[2 * I + 1]) * I + 1], g[2 * I + 1], 0);
    float m = nn_max_all(a, O * L * I, &at);
    for (int i = 0; i < O * L * I; i++)
        assert_true(a[i] <= m);
    assert_close(a[at], m, 0);
    float nan_row[3] = {1, NAN, 2};
    assert_true(isnan(nn_max_all(nan_row, 3, NULL)));
    free(a);
}

static void test_softmax_rows(void **state)
{
    enum { R = 3, C = 6 };
    float *x = randbuf(R * C, -5, 5), y[R * C], ly[R * C], g[R * C], d[R * C], dl[R * C];

    (void)state;
    x[0] = 80; /* exp(80) overflows float: the max shift keeps it finite */
    nn_softmax_rows(x, R, C, false, y);
    nn_softmax_rows(x, R, C, true, ly);
    for (int r = 0; r < R; r++) {
        double s = 0;

        for (int c = 0; c < C; c++) {
            s += y[r * C + c];
            assert_close(log(y[r * C + c] > 0 ? y[r * C + c] : 1e-45), ly[r * C + c], 1e-4);
        }
        assert_close(s, 1, 1e-6);
    }
    for (int i = 0; i < R * C; i++)
        g[i] = rndf(-1, 1);
    nn_softmax_rows_backward(g, y, R, C, false, d);
    nn_softmax_rows_backward(g, ly, R, C, true, dl);
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            double want = 0, wantl = 0;

            for (int k = 0; k < C; k++) { /* Jacobians: y_k (delta_kc - y_c), delta_kc - y_c */
                double yk = y[r * C + k], yc = y[r * C + c];

                want += g[r * C + k] * yk * ((k == c) - yc);
                wantl += g[r * C + k] * ((k == c) - yc);
            }
            assert_close(d[r * C + c], want, 1e-5);
            assert_close(dl[r * C + c], wantl, 1e-5);
        }
    free(x);
}

/* ---- losses ---- */

static void test_cross_entropy(void **state)
{
    enum { N = 4, C = 3 };
    float *x = randbuf(N * C, -3, 3), probs[N * C], d[N * C];
    int64_t labels[N] = {0, 2, 1, 2}, bad = -1;
    double sum, want = 0;

    (void)state;
    assert_int_equal(nn_cross_entropy(x, labels, N, C, probs, &sum, &bad), 0);
    for (int r = 0; r < N; r++) {
        double s = 0;

        for (int c = 0; c < C; c++)
            s += exp(x[r * C + c]);
        want += log(s) - x[r * C + labels[r]];
    }
    assert_close(sum, want, 1e-6);
    nn_cross_entropy_backward(probs, labels, N, C, 0.25f, d);
    for (int r = 0; r < N; r++)
        for (int c = 0; c < C; c++)
            assert_close(d[r * C + c], 0.25 * (probs[r * C + c] - (c == labels[r])), 1e-7);
    labels[2] = 3;
    assert_int_equal(nn_cross_entropy(x, labels, N, C, probs, &sum, &bad), LURAY_EINVAL);
    assert_int_equal(bad, 2);
    free(x);
}

static void test_pointwise_losses(void **state)
{
    enum { N = 9 };
    float *p = randbuf(N, 0.05f, 0.95f), *t = randbuf(N, 0, 1), *z = randbuf(N, -4, 4), d[N];
    double mse = 0, bce = 0, bcel = 0;

    (void)state;
    for (int i = 0; i < N; i++) {
        double s = 1 / (1 + exp(-z[i]));

        mse += ((double)p[i] - t[i]) * ((double)p[i] - t[i]);
        bce -= t[i] * log(p[i]) + (1 - t[i]) * log(1 - p[i]);
        bcel -= t[i] * log(s) + (1 - t[i]) * log(1 - s);
    }
    assert_close(nn_mse(p, t, N), mse, 1e-9);
    assert_close(nn_bce(p, t, N), bce, 1e-9);
    assert_close(nn_bce_logits(z, t, N), bcel, 1e-6);
    nn_mse_backward(p, t, N, 0.5f, d);
    assert_close(d[4], 0.5 * 2 * (p[4] - t[4]), 1e-6);
    nn_bce_backward(p, t, N, 1.0f, d);
    assert_close(d[3], (p[3] - t[3]) / (p[3] * (1 - p[3])), 1e-5);
    nn_bce_logits_backward(z, t, N, 1.0f, d);
    assert_close(d[6], 1 / (1 + exp(-z[6])) - t[6], 1e-6);
    float zero = 0, one = 1;
    assert_close(nn_bce(&zero, &one, 1), 100, 1e-12); /* log clamped at -100 */
    free(p);
    free(t);
    free(z);
}

/* ---- random ---- */

static void test_rng_deterministic_and_distributed(void **state)
{
    enum { N = 20001 };
    nn_rng_t a, b;
    float *u = malloc(N * sizeof *u), *v = malloc(N * sizeof *v);
    double mean = 0, var = 0;

    (void)state;
    nn_rng_seed(&a, 42);
    nn_rng_seed(&b, 42);
    for (int i = 0; i < 100; i++)
        assert_true(nn_rng_next(&a) == nn_rng_next(&b));
    nn_rng_seed(&b, 43);
    assert_true(nn_rng_next(&a) != nn_rng_next(&b));

    nn_rng_seed(&a, 1);
    nn_rng_fill_normal(&a, u, N, 0, 1);
    nn_rng_seed(&a, 1);
    nn_rng_fill_normal(&a, v, N, 0, 1);
    assert_memory_equal(u, v, N * sizeof *u);
    for (int i = 0; i < N; i++)
        mean += u[i];
    mean /= N;
    for (int i = 0; i < N; i++)
        var += (u[i] - mean) * (u[i] - mean);
    var /= N;
    assert_true(fabs(mean) < 0.03 && fabs(var - 1) < 0.05);

    nn_rng_fill_uniform(&a, u, N, -2, 3);
    for (int i = 0; i < N; i++)
        assert_true(u[i] >= -2 && u[i] < 3);

    int zeros = 0;
    nn_rng_dropout_mask(&a, u, N, 0.3f);
    for (int i = 0; i < N; i++) {
        if (u[i] == 0)
            zeros++;
        else
            assert_close(u[i], 1 / 0.7, 1e-6);
    }
    assert_true(fabs(zeros / (double)N - 0.3) < 0.02);
    nn_rng_dropout_mask(&a, u, 10, 1.0f);
    for (int i = 0; i < 10; i++)
        assert_true(u[i] == 0);
    free(u);
    free(v);
}

/* ---- optimizers ---- */

static void test_sgd_and_adam(void **state)
{
    float p[2] = {1, -2}, g[2] = {0.5f, 3}, buf[2], m[2] = {0}, v[2] = {0};
    nn_sgd_opts_t so = {.lr = 0.1f, .momentum = 0.9f, .dampening = 0, .weight_decay = 0.01f};
    nn_adam_opts_t ao = {.lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    double rp[2] = {1, -2}, rb[2], rm[2] = {0}, rv[2] = {0};

    (void)state;
    for (int step = 0; step < 3; step++) {
        nn_sgd_step(p, g, buf, 2, &so, step == 0);
        for (int i = 0; i < 2; i++) {
            double d = g[i] + 0.01 * rp[i];

            rb[i] = step == 0 ? d : 0.9 * rb[i] + d;
            rp[i] -= 0.1 * rb[i];
        }
    }
    assert_close(p[0], rp[0], 1e-6);
    assert_close(p[1], rp[1], 1e-6);

    p[0] = 1, p[1] = -2, rp[0] = 1, rp[1] = -2;
    for (int step = 1; step <= 3; step++) {
        nn_adam_step(p, g, m, v, 2, step, &ao);
        for (int i = 0; i < 2; i++) {
            rm[i] = 0.9 * rm[i] + 0.1 * g[i];
            rv[i] = 0.999 * rv[i] + 0.001 * g[i] * g[i];
            rp[i] -= 0.01 * (rm[i] / (1 - pow(0.9, step))) /
                     (sqrt(rv[i] / (1 - pow(0.999, step))) + 1e-8);
        }
    }
    assert_close(p[0], rp[0], 1e-6);
    assert_close(p[1], rp[1], 1e-6);
}

/* ---- indexing and conversion ---- */

static void test_gather_transpose_convert(void **state)
{
    float src[4 * 3], out[3 * 3], t[3 * 4], acc[4 * 3] = {0};
    int64_t idx[3] = {3, 0, 3}, bad = -1;

    (void)state;
    for (int i = 0; i < 12; i++)
        src[i] = (float)i;
    assert_int_equal(nn_gather_rows(src, 4, 3 * sizeof(float), idx, 3, out, &bad), 0);
    assert_close(out[0], 9, 0);
    assert_close(out[4], 1, 0);
    assert_close(out[8], 11, 0);
    nn_index_add_rows(acc, 3, idx, 3, out);
    assert_close(acc[9], 18, 0);
    assert_close(acc[0], 0, 0);
    idx[1] = 4;
    assert_int_equal(nn_gather_rows(src, 4, 12, idx, 3, out, &bad), LURAY_EINVAL);
    assert_int_equal(bad, 1);

    nn_transpose2d(src, 4, 3, t);
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 3; c++)
            assert_close(t[c * 4 + r], src[r * 3 + c], 0);

    /* a strided (transposed) float64 view converted to contiguous float32 and to int64 */
    double d[6] = {1.5, -2.5, 3, 4, 5.9, -6};
    int64_t shape[2] = {3, 2}, strides[2] = {1, 3}, ints[6];
    float f[6];
    assert_int_equal(nn_convert(d, LURAY_DTYPE_FLOAT64, 2, shape, strides, f, LURAY_DTYPE_FLOAT32),
                     0);
    assert_close(f[0], 1.5, 0);
    assert_close(f[1], 4, 0);
    assert_close(f[2], -2.5, 0);
    assert_int_equal(nn_convert(d, LURAY_DTYPE_FLOAT64, 2, shape, strides, ints,
                                LURAY_DTYPE_INT64), 0);
    assert_int_equal(ints[3], 5); /* truncated toward zero */
    assert_int_equal(ints[5], -6);
    assert_int_equal(nn_convert(d, 99, 1, shape, strides, f, LURAY_DTYPE_FLOAT32), LURAY_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binary_broadcast_matches_naive),
        cmocka_unit_test(test_binary_backward_reduces_to_operand),
        cmocka_unit_test(test_shape_broadcast_rules),
        cmocka_unit_test(test_axpy),
        cmocka_unit_test(test_unary_and_grads),
        cmocka_unit_test(test_sgemm_every_layout),
        cmocka_unit_test(test_linear_forward_and_bias_grad),
        cmocka_unit_test(test_reductions),
        cmocka_unit_test(test_softmax_rows),
        cmocka_unit_test(test_cross_entropy),
        cmocka_unit_test(test_pointwise_losses),
        cmocka_unit_test(test_rng_deterministic_and_distributed),
        cmocka_unit_test(test_sgd_and_adam),
        cmocka_unit_test(test_gather_transpose_convert),
    };

    nn_blas_set_threads(1);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
