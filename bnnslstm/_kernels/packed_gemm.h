/* The recurrent product of one time step, C[m][n] += A[m][k] B[n][k]^T in float32, with B
 * (the recurrent weights U, [4H][H]) packed once per call.
 *
 * A BLAS GEMM packs B again on every call, that is on every time step; for the LSTM's
 * shapes (m = batch, n = 4H, k = H) that repacking and the small m keep OpenBLAS well
 * under its large-matrix speed. Here B is packed once into panels of 16 columns
 * ([panel][k][16], zero-padded), and a register-blocked kernel reads A's rows in place:
 * 8 rows by two panels (8x32) with AVX-512 when the CPU has it, 6x16 with AVX2 + FMA, plain
 * C otherwise. Panels are split over OpenMP threads; every output element is computed by one
 * thread in one fixed order (one fused multiply-add per k, k ascending, then added to C),
 * so results depend neither on the thread count nor on which of the two SIMD kernels ran.
 */
#ifndef BNNSLSTM_PACKED_GEMM_H
#define BNNSLSTM_PACKED_GEMM_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#else
static inline int omp_get_thread_num(void) { return 0; }
static inline int omp_get_num_threads(void) { return 1; }
#endif

#define PANEL 16   /* columns of B per packed panel */
#define MR 6       /* rows of A per register block (AVX2 and plain C kernels) */
#define MR_WIDE 8  /* rows of A per register block of the AVX-512 kernel */
#define KC 256     /* depth of one pass, so a panel slice (16 KB; 32 KB for a pair) stays in L1 */
#define ROW_CHUNK 8 /* blocks of A's rows per pass of gemm_slices_f over its panels */

/* how many of the `width` items from `start` on lie below `total` (a last panel, block or
 * slice may be partial) */
static inline int extent(int total, int start, int width)
{
    return total - start < width ? total - start : width;
}

/* floats of B packed in panels of 16 columns (see pack_panels_f) */
static inline size_t packed_size(int n, int k)
{
    return (size_t)((n + PANEL - 1) / PANEL) * PANEL * (size_t)k;
}

/* dst[q][j] = src[j * ld + q] for q < kc and j < width (width <= 16), 0 for j >= count:
 * rows of the source side by side, written in order (reading the rows together is faster
 * than writing with a stride). Packs B's panels and A's row blocks. */
static inline __attribute__((always_inline)) void interleave_rows_f(float *dst, const float *src, size_t ld,
                                                                    int count, int width, int kc)
{
    const float *row[PANEL];
    for (int j = 0; j < width; j++) row[j] = src + (size_t)(j < count ? j : 0) * ld;
    for (int q = 0; q < kc; q++)
        for (int j = 0; j < width; j++) dst[(size_t)q * width + j] = j < count ? row[j][q] : 0.0f;
}

/* one panel: dst[q][j] = B[(col0 + j) * ldb + q], 0 for j >= cols */
static inline void pack_panel_f(float *dst, const float *B, int ldb, int col0, int cols, int kc)
{
    interleave_rows_f(dst, B + (size_t)col0 * ldb, ldb, cols, PANEL, kc);
}

/* Bp[p][q][j] = B[p*16 + j][q] (0 past n); Bp holds packed_size(n, k) floats. */
static void pack_panels_f(int n, int k, const float *B, int ldb, float *Bp, int threads)
{
    int panels = (n + PANEL - 1) / PANEL, team = threads > 1 ? threads : 1;
    #pragma omp parallel for num_threads(team) schedule(static) if(team > 1)
    for (int p = 0; p < panels; p++)
        pack_panel_f(Bp + (size_t)p * PANEL * k, B, ldb, p * PANEL, extent(n, p * PANEL, PANEL), k);
}

/* The same panels from B stored the other way, as Bt[k][n] (Bp[p][q][j] = Bt[q][p*16 + j]):
 * for products with B rather than its transpose, C += A Bt. */
static void pack_panels_transposed_f(int n, int k, const float *Bt, int ldb, float *Bp, int threads)
{
    int panels = (n + PANEL - 1) / PANEL, team = threads > 1 ? threads : 1;
    #pragma omp parallel for num_threads(team) schedule(static) if(team > 1)
    for (int p = 0; p < panels; p++) {
        float *dst = Bp + (size_t)p * PANEL * k;
        int cols = extent(n, p * PANEL, PANEL);
        for (int q = 0; q < k; q++) {
            const float *src = Bt + (size_t)q * ldb + p * PANEL;
            for (int j = 0; j < PANEL; j++) dst[(size_t)q * PANEL + j] = j < cols ? src[j] : 0.0f;
        }
    }
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define HAVE_AVX2_KERNEL 1
#include <immintrin.h>

/* out[r][0..cols) (+)= sum over q < kc of Ap[q][r] * Bp[q][0..16), for the 6 rows r: added
 * to out when add, stored over it otherwise (as in every kernel here) */
__attribute__((target("avx2,fma")))
static void kernel_6x16_avx2(int kc, const float *Ap, const float *Bp, float *out, int ldo, int rows,
                             int cols, int add)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(),
           c11 = _mm256_setzero_ps(), c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(),
           c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps(), c40 = _mm256_setzero_ps(),
           c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (int q = 0; q < kc; q++) {
        const float *a = Ap + (size_t)q * MR;
        __m256 b0 = _mm256_loadu_ps(Bp + (size_t)q * PANEL);
        __m256 b1 = _mm256_loadu_ps(Bp + (size_t)q * PANEL + 8);
        __m256 x;
        x = _mm256_broadcast_ss(a + 0); c00 = _mm256_fmadd_ps(x, b0, c00); c01 = _mm256_fmadd_ps(x, b1, c01);
        x = _mm256_broadcast_ss(a + 1); c10 = _mm256_fmadd_ps(x, b0, c10); c11 = _mm256_fmadd_ps(x, b1, c11);
        x = _mm256_broadcast_ss(a + 2); c20 = _mm256_fmadd_ps(x, b0, c20); c21 = _mm256_fmadd_ps(x, b1, c21);
        x = _mm256_broadcast_ss(a + 3); c30 = _mm256_fmadd_ps(x, b0, c30); c31 = _mm256_fmadd_ps(x, b1, c31);
        x = _mm256_broadcast_ss(a + 4); c40 = _mm256_fmadd_ps(x, b0, c40); c41 = _mm256_fmadd_ps(x, b1, c41);
        x = _mm256_broadcast_ss(a + 5); c50 = _mm256_fmadd_ps(x, b0, c50); c51 = _mm256_fmadd_ps(x, b1, c51);
    }
    __m256 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    for (int r = 0; r < rows; r++) {
        float *o = out + (size_t)r * ldo;
        if (cols == PANEL) {
            _mm256_storeu_ps(o, add ? _mm256_add_ps(_mm256_loadu_ps(o), acc[r][0]) : acc[r][0]);
            _mm256_storeu_ps(o + 8, add ? _mm256_add_ps(_mm256_loadu_ps(o + 8), acc[r][1]) : acc[r][1]);
        } else {
            float tile[PANEL];
            _mm256_storeu_ps(tile, acc[r][0]);
            _mm256_storeu_ps(tile + 8, acc[r][1]);
            for (int j = 0; j < cols; j++) o[j] = add ? o[j] + tile[j] : tile[j];
        }
    }
}
/* out[r][0..cols) (+)= sum over q < kc of Ap[q][r] * (B0 ‖ B1)[q][0..32), for the R rows r
 * (A packed in blocks of R rows): two panels at once, 2R 16-wide accumulators. With
 * cols <= 16 pass B0 again as B1 (its sums are not stored). */
__attribute__((target("avx512f"), always_inline))
static inline void kernel_rx32_avx512(const int R, int kc, const float *Ap, const float *B0, const float *B1,
                                      float *out, int ldo, int rows, int cols, int add)
{
    __m512 acc[MR_WIDE][2];
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    if (add)  /* C's tile is read at the end: ask for it now (a prefetch never faults) */
        for (int r = 0; r < rows; r++) {
            _mm_prefetch((const char *)(out + (size_t)r * ldo), _MM_HINT_T0);
            _mm_prefetch((const char *)(out + (size_t)r * ldo + PANEL), _MM_HINT_T0);
        }
    for (int q = 0; q < kc; q++) {
        const float *a = Ap + (size_t)q * R;
        __m512 b0 = _mm512_loadu_ps(B0 + (size_t)q * PANEL);
        __m512 b1 = _mm512_loadu_ps(B1 + (size_t)q * PANEL);
        #pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            __m512 x = _mm512_set1_ps(a[r]);
            acc[r][0] = _mm512_fmadd_ps(x, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(x, b1, acc[r][1]);
        }
    }
    __mmask16 m0 = cols >= PANEL ? (__mmask16)0xFFFF : (__mmask16)((1u << cols) - 1);
    __mmask16 m1 = cols >= 2 * PANEL ? (__mmask16)0xFFFF
                 : cols > PANEL ? (__mmask16)((1u << (cols - PANEL)) - 1) : (__mmask16)0;
    for (int r = 0; r < rows; r++) {
        float *o = out + (size_t)r * ldo;
        _mm512_mask_storeu_ps(o, m0, add ? _mm512_add_ps(_mm512_maskz_loadu_ps(m0, o), acc[r][0]) : acc[r][0]);
        if (m1)
            _mm512_mask_storeu_ps(o + PANEL, m1,
                                  add ? _mm512_add_ps(_mm512_maskz_loadu_ps(m1, o + PANEL), acc[r][1]) : acc[r][1]);
    }
}

/* blocks of 8 rows, and of 4 for products of at most 4 rows (batches of 1 to 4) */
__attribute__((target("avx512f")))
static void kernel_8x32_avx512(int kc, const float *Ap, const float *B0, const float *B1, float *out,
                               int ldo, int rows, int cols, int add)
{
    kernel_rx32_avx512(8, kc, Ap, B0, B1, out, ldo, rows, cols, add);
}

__attribute__((target("avx512f")))
static void kernel_4x32_avx512(int kc, const float *Ap, const float *B0, const float *B1, float *out,
                               int ldo, int rows, int cols, int add)
{
    kernel_rx32_avx512(4, kc, Ap, B0, B1, out, ldo, rows, cols, add);
}
#else
#define HAVE_AVX2_KERNEL 0
#endif

/* The same block in plain C, for CPUs without AVX2 and FMA. */
static void kernel_6x16_generic(int kc, const float *Ap, const float *Bp, float *out, int ldo, int rows,
                                int cols, int add)
{
    float tile[MR][PANEL] = {{0}};
    for (int q = 0; q < kc; q++) {
        const float *a = Ap + (size_t)q * MR, *b = Bp + (size_t)q * PANEL;
        for (int r = 0; r < MR; r++)
            for (int j = 0; j < PANEL; j++) tile[r][j] += a[r] * b[j];
    }
    for (int r = 0; r < rows; r++) {
        float *o = out + (size_t)r * ldo;
        for (int j = 0; j < cols; j++) o[j] = add ? o[j] + tile[r][j] : tile[r][j];
    }
}

/* Ap[block][q][r] = A[block*mr + r][q] (0 past m), in slices of KC: the layout the kernels
 * read, mr = rows_per_block(isa, m). Room for every block height: */
static inline size_t packed_rows_size(int m, int k)
{
    return (size_t)(m + MR_WIDE - 1) * (size_t)k;
}

static void pack_row_block_f(int m, int k, const float *A, int lda, float *Ap, int blk, int mr)
{
    int rows = extent(m, blk * mr, mr);
    for (int q0 = 0; q0 < k; q0 += KC)
        interleave_rows_f(Ap + (size_t)blk * mr * k + (size_t)q0 * mr, A + (size_t)blk * mr * lda + q0, lda,
                          rows, mr, extent(k, q0, KC));
}

enum { ISA_GENERIC = 0, ISA_AVX2 = 1, ISA_AVX512 = 2 };

/* the best kernel this CPU runs (BNNSLSTM_ISA=avx2 or generic in the environment asks for
 * a lesser one, for tests and comparisons) */
static int kernel_isa(void)
{
#if HAVE_AVX2_KERNEL
    static int known = -1;  /* threads may race here: they all store the same value */
    int isa = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (isa < 0) {
        __builtin_cpu_init();
        isa = ISA_GENERIC;
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) isa = ISA_AVX2;
        if (__builtin_cpu_supports("avx512f")) isa = ISA_AVX512;
        const char *asked = getenv("BNNSLSTM_ISA");
        if (asked && strcmp(asked, "generic") == 0) isa = ISA_GENERIC;
        if (asked && strcmp(asked, "avx2") == 0 && isa > ISA_AVX2) isa = ISA_AVX2;
        __atomic_store_n(&known, isa, __ATOMIC_RELAXED);
    }
    return isa;
#else
    return ISA_GENERIC;
#endif
}

/* panels of B and rows of A one kernel call covers */
static inline int panels_per_block(int isa)
{
    return isa == ISA_AVX512 ? 2 : 1;
}

static inline int rows_per_block(int isa, int m)
{
    if (isa == ISA_AVX512) return m <= 4 ? 4 : MR_WIDE;
    return MR;
}

/* out[0..rows)[0..cols) (+)= the block of packed rows a times the panels from `panel` on
 * (the next one `panel_stride` floats further), cols <= 16 * panels_per_block(isa) */
static inline void multiply_block(int isa, int mr, int kc, const float *a, const float *panel,
                                  size_t panel_stride, float *out, int ldc, int rows, int cols, int add)
{
#if HAVE_AVX2_KERNEL
    if (isa == ISA_AVX512) {
        (mr == 4 ? kernel_4x32_avx512 : kernel_8x32_avx512)(kc, a, panel, cols > PANEL ? panel + panel_stride : panel,
                                                            out, ldc, rows, cols, add);
        return;
    }
    if (isa == ISA_AVX2) {
        kernel_6x16_avx2(kc, a, panel, out, ldc, rows, cols, add);
        return;
    }
#endif
    (void)panel_stride;
    (void)mr;
    kernel_6x16_generic(kc, a, panel, out, ldc, rows, cols, add);
}

/* C[m][n] += A[m][k] B[n][k]^T with B packed by pack_panels_f; Ap is scratch of
 * packed_rows_size(m, k) floats for A's rows. */
static void packed_gemm_nt_f(int m, int n, int k, const float *A, int lda, const float *Bp,
                             float *Ap, float *C, int ldc, int threads)
{
    int isa = kernel_isa(), width = panels_per_block(isa) * PANEL, mr = rows_per_block(isa, m);
    int units = (n + width - 1) / width, blocks = (m + mr - 1) / mr;
    int team = threads > 1 ? threads : 1;
    if ((long)m * n * k < 200000) team = 1;  /* not worth waking threads */
    #pragma omp parallel num_threads(team) if(team > 1)
    {
        #pragma omp for schedule(static)
        for (int blk = 0; blk < blocks; blk++) pack_row_block_f(m, k, A, lda, Ap, blk, mr);
        #pragma omp for schedule(static)
        for (int u = 0; u < units; u++) {
            int cols = extent(n, u * width, width);
            const float *panel = Bp + (size_t)u * width * k;
            for (int q0 = 0; q0 < k; q0 += KC) {
                int kc = extent(k, q0, KC);
                for (int blk = 0; blk < blocks; blk++) {
                    int rows = extent(m, blk * mr, mr);
                    multiply_block(isa, mr, kc, Ap + (size_t)blk * mr * k + (size_t)q0 * mr,
                                   panel + (size_t)q0 * PANEL, (size_t)PANEL * k,
                                   C + (size_t)blk * mr * ldc + u * width, ldc, rows, cols, 1);
                }
            }
        }
    }
}

/* A general float32 product on the same kernel, for the large once-per-layer products
 * (input projection, dL/dx, weight gradients), so that one threading runtime serves a
 * whole call (OpenBLAS's idle threads otherwise spin on the cores the time loop needs):
 *
 *   C[m][n] (+)= opA[m][k] opB[k][n], opA[r][q] = a_t ? A[q*lda + r] : A[r*lda + q],
 *                                    opB[q][j] = b_t ? B[j*ldb + q] : B[q*ldb + j],
 *
 * added to C when accumulate, written over it otherwise (k > 0). K is taken in slices of
 * KC; each slice of A and B is packed (in parallel) into scratch of packed_rows_size(m, KC)
 * and packed_size(n, KC) floats. */
static void gemm_slices_f(int m, int n, int k, const float *A, int lda, int a_t, const float *B,
                          int ldb, int b_t, int accumulate, float *C, int ldc, float *Ap, float *Bp,
                          int threads)
{
    int isa = kernel_isa(), width = panels_per_block(isa) * PANEL, mr = rows_per_block(isa, m);
    int panels = (n + PANEL - 1) / PANEL, units = (n + width - 1) / width, blocks = (m + mr - 1) / mr;
    int team = threads > 1 ? threads : 1;
    if ((long)m * n * k < 200000) team = 1;
    for (int q0 = 0; q0 < k; q0 += KC) {
        int kc = extent(k, q0, KC);
        #pragma omp parallel num_threads(team) if(team > 1)
        {
            /* the packing loops walk the source along its contiguous axis */
            #pragma omp for schedule(static)
            for (int blk = 0; blk < blocks; blk++) {
                float *dst = Ap + (size_t)blk * mr * kc;
                int rows = extent(m, blk * mr, mr);
                if (a_t) {
                    if (rows < mr) memset(dst, 0, (size_t)mr * kc * sizeof(float));
                    for (int q = 0; q < kc; q++) {
                        const float *src = A + (size_t)(q0 + q) * lda + blk * mr;
                        for (int r = 0; r < rows; r++) dst[(size_t)q * mr + r] = src[r];
                    }
                } else {
                    interleave_rows_f(dst, A + (size_t)blk * mr * lda + q0, lda, rows, mr, kc);
                }
            }
            /* each thread packs its own share of B's panels, then runs them over A's rows
             * in chunks of ROW_CHUNK blocks: its panels stay in L2 and a chunk of A in L1 */
            int t = omp_get_thread_num(), nt = omp_get_num_threads();
            int u0 = (int)((long)units * t / nt), u1 = (int)((long)units * (t + 1) / nt);
            int p1 = u1 * width / PANEL < panels ? u1 * width / PANEL : panels;
            for (int p = u0 * width / PANEL; p < p1; p++) {
                float *panel = Bp + (size_t)p * PANEL * kc;
                int cols = extent(n, p * PANEL, PANEL);
                if (b_t) {
                    pack_panel_f(panel, B + q0, ldb, p * PANEL, cols, kc);
                } else {
                    if (cols < PANEL) memset(panel, 0, (size_t)PANEL * kc * sizeof(float));
                    for (int q = 0; q < kc; q++) {
                        const float *src = B + (size_t)(q0 + q) * ldb + p * PANEL;
                        for (int j = 0; j < cols; j++) panel[(size_t)q * PANEL + j] = src[j];
                    }
                }
            }
            for (int b0 = 0; b0 < blocks; b0 += ROW_CHUNK) {
                int b1 = b0 + ROW_CHUNK < blocks ? b0 + ROW_CHUNK : blocks;
                for (int u = u0; u < u1; u++) {
                    int cols = extent(n, u * width, width);
                    for (int blk = b0; blk < b1; blk++) {
                        int rows = extent(m, blk * mr, mr);
                        multiply_block(isa, mr, kc, Ap + (size_t)blk * mr * kc, Bp + (size_t)u * width * kc,
                                       (size_t)PANEL * kc, C + (size_t)blk * mr * ldc + u * width, ldc, rows,
                                       cols, accumulate || q0 > 0);
                    }
                }
            }
        }
    }
}

#endif
