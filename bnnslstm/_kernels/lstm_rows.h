/* Fused elementwise rows of the LSTM with the default activations (SPEC §4).
 *
 * Written in C so that the compiler vectorises the loops over units: every function here
 * is branch-free inside its loop. float rows use a fast exp (range reduction to
 * [-ln2/2, ln2/2], degree-6 polynomial, exponent bits set directly): relative error below
 * 2e-7 on the whole float range, and sigmoid/tanh built on it stay within 3e-7 absolute
 * of the exact functions (tests/test_activations.py checks the bound). double rows call
 * libm, so float64 results are as exact as the maths.
 *
 * Row layout: g holds the four gates' summed inputs i, f, g, o (each H wide); on return
 * it holds the gate activations. a (may be NULL) receives the pre-activations.
 */
#ifndef BNNSLSTM_LSTM_ROWS_H
#define BNNSLSTM_LSTM_ROWS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline __attribute__((always_inline)) float fast_expf(float x)
{
    /* exp(x) = 2^n * exp(r), n = round(x / ln2), |r| <= ln2/2 */
    x = x < 88.0f ? x : 88.0f;
    x = x > -87.0f ? x : -87.0f;
    /* round to nearest by adding and removing 1.5 * 2^23 (vectorises without SSE4.1) */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;          /* ln2 split in two for an exact product */
    r = r + n * 2.12194440e-4f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666667f + r * (0.0416666667f +
              r * (0.00833333333f + r * 0.00138888889f)))));
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline __attribute__((always_inline)) float fast_sigmoidf(float x)
{
    return 1.0f / (1.0f + fast_expf(-x));
}

static inline __attribute__((always_inline)) float fast_tanhf(float x)
{
    /* tanh(x) = 1 - 2 / (1 + exp(2x)); near 0 a short series keeps the relative error small */
    float big = 1.0f - 2.0f / (1.0f + fast_expf(2.0f * x));
    float x2 = x * x;
    float small = x * (1.0f + x2 * (-0.333333333f + x2 * (0.133333333f + x2 * -0.0539682540f)));
    return fabsf(x) < 0.125f ? small : big;
}

static inline double exact_sigmoid(double x)
{
    return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
}

/* AVX-512 and AVX2/FMA clones where the CPU has them (chosen once at load time), plain
 * x86-64 otherwise */
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define ROW_TARGETS __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ROW_TARGETS
#endif

#define DEFINE_ROWS(real, SIG, TANH, SUFFIX)                                                    \
/* gates i, f, g of one sample and its new cell c' = f*c + i*g (c updated in place) */           \
ROW_TARGETS static void cell_row_##SUFFIX(real *restrict g, real *restrict a, real *restrict c,              \
                              real *restrict cs, const real *restrict bias,                      \
                              const real *restrict cdiag, int H)                                \
{                                                                                              \
    for (int k = 0; k < 3; k++) {                                                              \
        real *gk = g + k * H;                                                                  \
        const real *bk = bias + k * H;                                                         \
        if (cdiag) {                                                                           \
            const real *pk = cdiag + k * H;                                                    \
            for (int j = 0; j < H; j++) gk[j] = gk[j] + bk[j] + pk[j] * c[j];                  \
        } else {                                                                               \
            for (int j = 0; j < H; j++) gk[j] = gk[j] + bk[j];                                 \
        }                                                                                      \
        if (a) memcpy(a + k * H, gk, (size_t)H * sizeof(real));                                \
        if (k == 2) { for (int j = 0; j < H; j++) gk[j] = TANH(gk[j]); }                       \
        else        { for (int j = 0; j < H; j++) gk[j] = SIG(gk[j]); }                        \
    }                                                                                          \
    for (int j = 0; j < H; j++) {                                                              \
        real cn = g[H + j] * c[j] + g[j] * g[2 * H + j];                                       \
        c[j] = cn;                                                                             \
        cs[j] = cn;                                                                            \
    }                                                                                          \
}                                                                                              \
/* output gate (peeking at the new cell) and h' = o * tanh(c') */                               \
ROW_TARGETS static void output_row_##SUFFIX(real *restrict g, real *restrict a, const real *restrict c,      \
                                real *restrict hc, real *restrict y, real *restrict h,           \
                                const real *restrict bias, const real *restrict cdiag, int H)    \
{                                                                                              \
    real *go = g + 3 * H;                                                                      \
    const real *bo = bias + 3 * H;                                                             \
    if (cdiag) {                                                                               \
        const real *po = cdiag + 3 * H;                                                        \
        for (int j = 0; j < H; j++) go[j] = go[j] + bo[j] + po[j] * c[j];                      \
    } else {                                                                                   \
        for (int j = 0; j < H; j++) go[j] = go[j] + bo[j];                                     \
    }                                                                                          \
    if (a) memcpy(a + 3 * H, go, (size_t)H * sizeof(real));                                    \
    for (int j = 0; j < H; j++) {                                                              \
        real o = SIG(go[j]);                                                                   \
        real t = TANH(c[j]);                                                                   \
        go[j] = o;                                                                             \
        hc[j] = t;                                                                             \
        h[j] = o * t;                                                                          \
        y[j] = o * t;                                                                          \
    }                                                                                          \
}

/* Backward rows with the default activations: sigmoid' = s(1-s), tanh' = 1-t^2 from the
 * cached activations. g: the sample's gate activations i, f, g, o; dg: its dL/d(pre-act). */
#define DEFINE_BACKWARD_ROWS(real, SUFFIX)                                                      \
/* dA_o and dL/dc' = dc + dh * o * tanh'(c') (+ diagonal output peephole) */                      \
ROW_TARGETS static void output_grad_row_##SUFFIX(const real *restrict g, const real *restrict hc,   \
        const real *restrict dy, const real *restrict dh, const real *restrict dc,               \
        real *restrict dg, real *restrict dc_step, const real *restrict cdiag, int H)            \
{                                                                                              \
    const real *go = g + 3 * H;                                                                \
    for (int j = 0; j < H; j++) {                                                              \
        real grad_h = dy[j] + dh[j];                                                           \
        real o = go[j], t = hc[j];                                                             \
        real da_o = grad_h * t * o * (1 - o);                                                  \
        dg[3 * H + j] = da_o;                                                                  \
        dc_step[j] = dc[j] + grad_h * o * (1 - t * t);                                         \
    }                                                                                          \
    if (cdiag) {                                                                               \
        const real *po = cdiag + 3 * H;                                                        \
        for (int j = 0; j < H; j++) dc_step[j] += po[j] * dg[3 * H + j];                       \
    }                                                                                          \
}                                                                                              \
/* dA_i, dA_f, dA_g and dL/dc of the previous step (+ diagonal peepholes) */                    \
ROW_TARGETS static void cell_grad_row_##SUFFIX(const real *restrict g,                            \
        const real *restrict c_prev, const real *restrict dc_step, real *restrict dg,            \
        real *restrict dc, const real *restrict cdiag, int H)                                    \
{                                                                                              \
    for (int j = 0; j < H; j++) {                                                              \
        real i = g[j], f = g[H + j], gg = g[2 * H + j], grad_c = dc_step[j];                   \
        dg[j] = grad_c * gg * i * (1 - i);                                                     \
        dg[H + j] = grad_c * c_prev[j] * f * (1 - f);                                          \
        dg[2 * H + j] = grad_c * i * (1 - gg * gg);                                            \
        dc[j] = grad_c * f;                                                                    \
    }                                                                                          \
    if (cdiag) {                                                                               \
        for (int j = 0; j < H; j++)                                                            \
            dc[j] += cdiag[j] * dg[j] + cdiag[H + j] * dg[H + j] + cdiag[2 * H + j] * dg[2 * H + j]; \
    }                                                                                          \
}

DEFINE_ROWS(float, fast_sigmoidf, fast_tanhf, f)
DEFINE_ROWS(double, exact_sigmoid, tanh, d)
DEFINE_BACKWARD_ROWS(float, f)
DEFINE_BACKWARD_ROWS(double, d)

/* One time step's rows (samples) of the default-activation passes, split over OpenMP
 * threads when the step is large enough to pay for it. part: 1 = gates and cell,
 * 2 = output gate and hidden state, 3 = both (no full output peephole in between). */
#define ROWS_TEAM(rows, H, threads) ((threads) > 1 && (long)(rows) * (H) >= 8192 ? (threads) : 1)

#define DEFINE_STEP_ROWS(real, SUFFIX)                                                           \
static void forward_rows_##SUFFIX(int rows, real *g, int ldg, real *a, real *c, real *cs,          \
        real *hc, real *y, int ldy, real *h, const real *bias, const real *cdiag, int H, int part,  \
        int threads)                                                                            \
{                                                                                               \
    int team = ROWS_TEAM(rows, H, threads);                                                     \
    _Pragma("omp parallel for num_threads(team) schedule(static) if(team > 1)")                  \
    for (int b = 0; b < rows; b++) {                                                            \
        real *gb = g + (size_t)b * ldg, *ab = a ? a + (size_t)b * ldg : NULL;                    \
        if (part & 1) cell_row_##SUFFIX(gb, ab, c + (size_t)b * H, cs + (size_t)b * ldy, bias, cdiag, H); \
        if (part & 2) output_row_##SUFFIX(gb, ab, c + (size_t)b * H, hc + (size_t)b * ldy,        \
                                          y + (size_t)b * ldy, h + (size_t)b * H, bias, cdiag, H); \
    }                                                                                           \
}                                                                                               \
/* part 1: output gate and dL/dc'; part 2: gates i, f, g and dL/dc of the previous step.        \
 * The previous cell of row b is c_prev[b] (stride ldy) for b < n_prev, else c0[b]. */           \
static void backward_rows_##SUFFIX(int rows, const real *g, int ldg, const real *hc,             \
        const real *dy, int ldy, const real *dh, real *dc, real *dg, real *dc_step,              \
        const real *c_prev, int n_prev, const real *c0, const real *cdiag, int H, int part,      \
        int threads)                                                                            \
{                                                                                               \
    int team = ROWS_TEAM(rows, H, threads);                                                     \
    _Pragma("omp parallel for num_threads(team) schedule(static) if(team > 1)")                  \
    for (int b = 0; b < rows; b++) {                                                            \
        if (part == 1)                                                                          \
            output_grad_row_##SUFFIX(g + (size_t)b * ldg, hc + (size_t)b * ldy, dy + (size_t)b * ldy, \
                                     dh + (size_t)b * H, dc + (size_t)b * H, dg + (size_t)b * ldg, \
                                     dc_step + (size_t)b * H, cdiag, H);                        \
        else                                                                                    \
            cell_grad_row_##SUFFIX(g + (size_t)b * ldg,                                          \
                                   b < n_prev ? c_prev + (size_t)b * ldy : c0 + (size_t)b * H,   \
                                   dc_step + (size_t)b * H, dg + (size_t)b * ldg, dc + (size_t)b * H, \
                                   cdiag, H);                                                   \
    }                                                                                           \
}

DEFINE_STEP_ROWS(float, f)
DEFINE_STEP_ROWS(double, d)


/* Small-batch recurrent products. For a few rows (batch <= SMALL_BATCH) a BLAS GEMM spends
 * most of its time packing the weights; these stream the weights once per call instead,
 * split over threads by output columns (so the arithmetic of every output, hence the
 * result, does not depend on the thread count). */
#define SMALL_BATCH 4

#define DEFINE_SMALL_GEMM(real, SUFFIX)                                                         \
/* C[m][n] += A[m][k] B[n][k]^T: dot products, four rows of B and two of A at a time */         \
ROW_TARGETS static void small_gemm_nt_block_##SUFFIX(int m, int j0, int j1, int k,                \
        const real *restrict A, int lda, const real *restrict B, int ldb,                         \
        real *restrict C, int ldc)                                                               \
{                                                                                              \
    int j = j0;                                                                                \
    for (; j + 4 <= j1; j += 4) {                                                              \
        const real *b0 = B + (size_t)j * ldb, *b1 = b0 + ldb, *b2 = b1 + ldb, *b3 = b2 + ldb;  \
        int r = 0;                                                                             \
        for (; r + 2 <= m; r += 2) {                                                           \
            const real *a = A + (size_t)r * lda, *e = a + lda;                                 \
            real s0 = 0, s1 = 0, s2 = 0, s3 = 0, t0 = 0, t1 = 0, t2 = 0, t3 = 0;               \
            _Pragma("omp simd reduction(+:s0,s1,s2,s3,t0,t1,t2,t3)")                           \
            for (int q = 0; q < k; q++) {                                                      \
                real x = a[q], y = e[q], v0 = b0[q], v1 = b1[q], v2 = b2[q], v3 = b3[q];       \
                s0 += x * v0; s1 += x * v1; s2 += x * v2; s3 += x * v3;                        \
                t0 += y * v0; t1 += y * v1; t2 += y * v2; t3 += y * v3;                        \
            }                                                                                  \
            real *c = C + (size_t)r * ldc + j, *d = c + ldc;                                   \
            c[0] += s0; c[1] += s1; c[2] += s2; c[3] += s3;                                    \
            d[0] += t0; d[1] += t1; d[2] += t2; d[3] += t3;                                    \
        }                                                                                      \
        for (; r < m; r++) {                                                                   \
            const real *a = A + (size_t)r * lda;                                               \
            real s0 = 0, s1 = 0, s2 = 0, s3 = 0;                                               \
            _Pragma("omp simd reduction(+:s0,s1,s2,s3)")                                       \
            for (int q = 0; q < k; q++) {                                                      \
                real x = a[q];                                                                 \
                s0 += x * b0[q]; s1 += x * b1[q]; s2 += x * b2[q]; s3 += x * b3[q];            \
            }                                                                                  \
            real *c = C + (size_t)r * ldc + j;                                                 \
            c[0] += s0; c[1] += s1; c[2] += s2; c[3] += s3;                                    \
        }                                                                                      \
    }                                                                                          \
    for (; j < j1; j++) {                                                                      \
        const real *b0 = B + (size_t)j * ldb;                                                  \
        for (int r = 0; r < m; r++) {                                                          \
            const real *a = A + (size_t)r * lda;                                               \
            real s0 = 0;                                                                       \
            _Pragma("omp simd reduction(+:s0)")                                                \
            for (int q = 0; q < k; q++) s0 += a[q] * b0[q];                                    \
            C[(size_t)r * ldc + j] += s0;                                                      \
        }                                                                                      \
    }                                                                                          \
}                                                                                              \
/* C[m][n] (+)= A[m][k] B[k][n]: rows of B scaled and added, B read once per row of A */          \
ROW_TARGETS static void small_gemm_nn_block_##SUFFIX(int m, int j0, int j1, int k,                \
        const real *restrict A, int lda, const real *restrict B, int ldb,                         \
        real *restrict C, int ldc, int accumulate)                                               \
{                                                                                              \
    for (int r = 0; r < m; r++) {                                                              \
        real *c = C + (size_t)r * ldc;                                                         \
        const real *a = A + (size_t)r * lda;                                                   \
        if (!accumulate) for (int j = j0; j < j1; j++) c[j] = 0;                               \
        for (int q = 0; q < k; q++) {                                                          \
            const real *b = B + (size_t)q * ldb;                                               \
            real x = a[q];                                                                     \
            for (int j = j0; j < j1; j++) c[j] += x * b[j];                                    \
        }                                                                                      \
    }                                                                                          \
}                                                                                              \
static void small_gemm_nt_##SUFFIX(int m, int n, int k, const real *A, int lda, const real *B,   \
                                   int ldb, real *C, int ldc, int threads)                      \
{                                                                                              \
    int chunks = threads > 1 ? threads : 1;                                                    \
    _Pragma("omp parallel for num_threads(chunks) schedule(static) if(chunks > 1)")            \
    for (int part = 0; part < chunks; part++) {                                                \
        int j0 = (int)((long)n * part / chunks) & ~3, j1 = part == chunks - 1 ? n : (int)((long)n * (part + 1) / chunks) & ~3; \
        small_gemm_nt_block_##SUFFIX(m, j0, j1, k, A, lda, B, ldb, C, ldc);                      \
    }                                                                                          \
}                                                                                              \
static void small_gemm_nn_##SUFFIX(int m, int n, int k, const real *A, int lda, const real *B,   \
                                   int ldb, real *C, int ldc, int accumulate, int threads)      \
{                                                                                              \
    int chunks = threads > 1 ? threads : 1;                                                    \
    _Pragma("omp parallel for num_threads(chunks) schedule(static) if(chunks > 1)")            \
    for (int part = 0; part < chunks; part++) {                                                \
        int j0 = (int)((long)n * part / chunks) & ~7, j1 = part == chunks - 1 ? n : (int)((long)n * (part + 1) / chunks) & ~7; \
        small_gemm_nn_block_##SUFFIX(m, j0, j1, k, A, lda, B, ldb, C, ldc, accumulate);          \
    }                                                                                          \
}

DEFINE_SMALL_GEMM(float, f)
DEFINE_SMALL_GEMM(double, d)

#endif
