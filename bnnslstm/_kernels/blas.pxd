# Row-major GEMM on top of scipy's Fortran BLAS pointers (no link flags needed).
#
# A row-major product C = op(A) op(B) is the column-major product C^T = op(B)^T op(A)^T,
# so the operands and sizes are swapped instead of copying anything.

from cython cimport floating
from libc.stdlib cimport free, malloc
from libc.string cimport memset
cimport scipy.linalg.cython_blas as blas


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k,
                      floating alpha, const floating *a, int lda,
                      const floating *b, int ldb,
                      floating beta, floating *c, int ldc) noexcept nogil:
    """C[m][n] = alpha * op(A)[m][k] @ op(B)[k][n] + beta * C, all row-major.

    ``beta == 0`` never reads C. Empty products (m, n or k == 0) are handled here because
    some BLAS builds reject them.
    """
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef int i, j
    if m <= 0 or n <= 0:
        return
    if k <= 0:
        for i in range(m):
            for j in range(n):
                c[i * ldc + j] = 0 if beta == 0 else beta * c[i * ldc + j]
        return
    if floating is float:
        blas.sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda, &beta, c, &ldc)
    else:
        blas.dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*>b, &ldb, <double*>a, &lda, &beta, c, &ldc)


cdef extern from "lstm_rows.h" nogil:
    int SMALL_BATCH
    void small_gemm_nt_f(int m, int n, int k, const float *A, int lda, const float *B, int ldb,
                         float *C, int ldc, int threads)
    void small_gemm_nt_d(int m, int n, int k, const double *A, int lda, const double *B, int ldb,
                         double *C, int ldc, int threads)
    void small_gemm_nn_f(int m, int n, int k, const float *A, int lda, const float *B, int ldb,
                         float *C, int ldc, int accumulate, int threads)
    void small_gemm_nn_d(int m, int n, int k, const double *A, int lda, const double *B, int ldb,
                         double *C, int ldc, int accumulate, int threads)


cdef inline void step_gemm_nt(int m, int n, int k, const floating *a, int lda,
                              const floating *b, int ldb, floating *c, int ldc,
                              int threads) noexcept nogil:
    """C[m][n] += A[m][k] B[n][k]^T for one time step: BLAS, or for a few rows (a small
    batch) a kernel that streams B once instead of packing it."""
    if m > SMALL_BATCH:
        gemm(False, True, m, n, k, <floating>1, a, lda, b, ldb, <floating>1, c, ldc)
    elif floating is float:
        small_gemm_nt_f(m, n, k, a, lda, b, ldb, c, ldc, threads)
    else:
        small_gemm_nt_d(m, n, k, a, lda, b, ldb, c, ldc, threads)


cdef inline void step_gemm_nn(int m, int n, int k, const floating *a, int lda,
                              const floating *b, int ldb, floating *c, int ldc,
                              bint accumulate, int threads) noexcept nogil:
    """C[m][n] (+)= A[m][k] B[k][n] for one time step (BLAS, or streaming B for a few rows)."""
    if m > SMALL_BATCH:
        gemm(False, False, m, n, k, <floating>1, a, lda, b, ldb,
             <floating>1 if accumulate else <floating>0, c, ldc)
    elif floating is float:
        small_gemm_nn_f(m, n, k, a, lda, b, ldb, c, ldc, accumulate, threads)
    else:
        small_gemm_nn_d(m, n, k, a, lda, b, ldb, c, ldc, accumulate, threads)


cdef extern from "packed_gemm.h" nogil:
    int KC
    size_t packed_size(int n, int k)
    size_t packed_rows_size(int m, int k)
    void pack_panels_f(int n, int k, const float *B, int ldb, float *Bp, int threads)
    void pack_panels_transposed_f(int n, int k, const float *Bt, int ldb, float *Bp, int threads)
    void packed_gemm_nt_f(int m, int n, int k, const float *A, int lda, const float *Bp, float *Ap,
                          float *C, int ldc, int threads)
    void gemm_slices_f(int m, int n, int k, const float *A, int lda, int a_t, const float *B,
                       int ldb, int b_t, int accumulate, float *C, int ldc, float *Ap, float *Bp,
                       int threads)


cdef inline int matmul(bint trans_a, bint trans_b, int m, int n, int k,
                       const floating *a, int lda, const floating *b, int ldb,
                       bint accumulate, floating *c, int ldc, int threads) noexcept nogil:
    """C[m][n] (+)= op(A) op(B), row-major, for the large once-per-layer products.

    float32 runs on the packed kernel of packed_gemm.h (OpenMP, like the time loop);
    float64 on BLAS. Returns -1 if scratch memory could not be had, else 0.
    """
    cdef float *Ap
    cdef float *Bp
    cdef int r
    if m <= 0 or n <= 0:
        return 0
    if floating is double:
        gemm(trans_a, trans_b, m, n, k, 1.0, a, lda, b, ldb, 1.0 if accumulate else 0.0, c, ldc)
        return 0
    else:
        if k <= 0:
            if not accumulate:
                for r in range(m):
                    memset(c + <size_t>r * ldc, 0, n * sizeof(float))
            return 0
        Ap = <float*>malloc(packed_rows_size(m, KC) * sizeof(float))
        Bp = <float*>malloc(packed_size(n, KC) * sizeof(float))
        if Ap == NULL or Bp == NULL:
            free(Ap)
            free(Bp)
            return -1
        gemm_slices_f(m, n, k, a, lda, trans_a, b, ldb, trans_b, accumulate, c, ldc, Ap, Bp, threads)
        free(Ap)
        free(Bp)
        return 0


cdef inline int allocate_packing(float **weights, size_t weight_floats, float **rows,
                                 size_t row_floats) noexcept nogil:
    """malloc the packed weights and the row scratch of a time loop; on failure free both,
    leave them NULL and return -1."""
    weights[0] = <float*>malloc(weight_floats * sizeof(float))
    rows[0] = <float*>malloc(row_floats * sizeof(float))
    if weights[0] == NULL or rows[0] == NULL:
        free(weights[0])
        free(rows[0])
        weights[0] = rows[0] = NULL
        return -1
    return 0
