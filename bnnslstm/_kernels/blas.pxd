# Row-major GEMM on top of scipy's Fortran BLAS pointers (no link flags needed).
#
# A row-major product C = op(A) op(B) is the column-major product C^T = op(B)^T op(A)^T,
# so the operands and sizes are swapped instead of copying anything.

from cython cimport floating
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
