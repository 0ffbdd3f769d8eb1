# Every matrix product of the package: scipy.linalg.cython_blas's sgemm/dgemm/sgemv/dgemv
# behind one logical, stride-aware gemm(), and its counters (_blas.h). Nothing else lives
# here.
#
# A Mat is a logical rows x cols matrix at any element strides. BLAS is column-major: a
# Mat whose rows are contiguous (cs == 1) is the transpose of a column-major matrix, so it
# is passed with 'T' and ld = rs; one whose columns are contiguous (rs == 1) with 'N' and
# ld = cs. C = A B with a row-major C is computed as C^T = B^T A^T, by swapping operands
# and strides, never by copying. Products with one row or one column go to gemv.

from cython cimport floating
cimport scipy.linalg.cython_blas as blas

from ._team cimport team_clock, team_thread

# scipy.linalg.cython_blas takes C int (LP64 BLAS); ILP64 builds would export blas_int
ctypedef int blas_int

cdef extern from "<limits.h>":
    const int INT_MAX       # the largest blas_int: every size, ld and increment handed over fits it


cdef extern from "_blas.h" nogil:
    # seconds inside BLAS and FLOPs handed to it, per team thread (at BLAS_COUNTER_SPACING *
    # tid), counted while blas_timing is set; one set per extension
    int blas_timing
    double blas_seconds[]
    double blas_flops[]
    const int BLAS_COUNTER_SPACING
    const int GEMV_UP_TO "BLAS_GEMV_UP_TO"     # gemm() splits C into gemv calls up to this


cdef inline void blas_counting(bint enable) noexcept nogil:
    """Whether gemm() counts its time and FLOPs (blas_seconds, blas_flops) from now on."""
    global blas_timing
    blas_timing = enable


ctypedef struct Mat:
    char *p                 # element [0][0]
    Py_ssize_t rows, cols   # logical shape
    Py_ssize_t rs, cs       # element strides between rows and between columns


cdef inline Mat mat(const void *p, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t rs,
                    Py_ssize_t cs) noexcept nogil:
    cdef Mat m
    m.p = <char*>p
    m.rows, m.cols, m.rs, m.cs = rows, cols, rs, cs
    return m


cdef inline Mat block(Mat m, Py_ssize_t r0, Py_ssize_t c0, Py_ssize_t rows, Py_ssize_t cols,
                      Py_ssize_t itemsize) noexcept nogil:
    """Rows r0.. and columns c0.. of m (rows x cols of them); an absent m stays absent."""
    if m.p == NULL:
        return mat(NULL, rows, cols, m.rs, m.cs)
    return mat(m.p + (r0 * m.rs + c0 * m.cs) * itemsize, rows, cols, m.rs, m.cs)


cdef inline Mat transposed(Mat m) noexcept nogil:
    return mat(m.p, m.cols, m.rows, m.cs, m.rs)


cdef inline bint operand(Mat m, char *trans, blas_int *ld) noexcept nogil:
    """How column-major BLAS reads m: 'N' (columns contiguous) or 'T' (rows contiguous),
    and the leading dimension; False if m has neither layout, or if its shape or span
    does not fit blas_int (a legal padded layout over a buffer past 8 GiB): the caller
    gathers it. A stride of an axis longer than 1 is either 1 or the leading
    dimension, so gemv's increments taken from an addressable Mat fit too."""
    cdef Py_ssize_t lead
    if m.rows > INT_MAX or m.cols > INT_MAX:
        return False
    if (m.rs == 1 or m.rows == 1) and (m.cols == 1 or m.cs >= m.rows):
        lead = m.cs if m.cols > 1 and m.cs > 0 else (m.rows if m.rows > 1 else 1)
        if fits(lead, m.cols, m.rows):
            trans[0] = b'N'
            ld[0] = <blas_int>lead
            return True
    if (m.cs == 1 or m.cols == 1) and (m.rows == 1 or m.rs >= m.cols):
        lead = m.rs if m.rows > 1 and m.rs > 0 else (m.cols if m.cols > 1 else 1)
        if fits(lead, m.rows, m.cols):
            trans[0] = b'T'
            ld[0] = <blas_int>lead
            return True
    return False


cdef inline bint fits(Py_ssize_t lead, Py_ssize_t vectors, Py_ssize_t length) noexcept nogil:
    """Whether a matrix of ``vectors`` contiguous vectors of ``length`` elements, ``lead``
    apart, spans at most INT_MAX elements: not only its leading dimension but every offset
    BLAS computes in it must fit blas_int (OpenBLAS's small-matrix kernels for SkylakeX
    index C as j * ldc in a C int: a 5 x 5 result with ldc = 2**31 - 1 crashed there)."""
    return lead <= INT_MAX and (vectors - 1) * lead + length <= INT_MAX


cdef inline bint addressable(Mat m) noexcept nogil:
    cdef char trans
    cdef blas_int ld
    return operand(m, &trans, &ld)


cdef inline blas_int step(Py_ssize_t extent, Py_ssize_t stride) noexcept nogil:
    """A vector's increment for BLAS (any value will do for a single element)."""
    return <blas_int>(stride if extent > 1 else 1)


cdef inline void gemv(floating alpha, Mat a, const floating *x, blas_int incx, floating beta,
                      floating *y, blas_int incy) noexcept nogil:
    """y = alpha A x + beta y for an addressable A (rows x cols). beta == 0 never reads y:
    it is zeroed here first (some BLAS builds scale y by beta, which keeps a NaN)."""
    cdef char trans
    cdef blas_int ld, m, n
    cdef Py_ssize_t i
    if beta == 0:
        for i in range(a.rows):
            y[i * incy] = 0
    operand(a, &trans, &ld)
    if trans == b'N':
        m, n = <blas_int>a.rows, <blas_int>a.cols
    else:
        m, n = <blas_int>a.cols, <blas_int>a.rows
    if floating is float:
        blas.sgemv(&trans, &m, &n, &alpha, <float*>a.p, &ld, <float*>x, &incx, &beta, y, &incy)
    else:
        blas.dgemv(&trans, &m, &n, &alpha, <double*>a.p, &ld, <double*>x, &incx, &beta, y, &incy)


cdef inline void scale(floating beta, Mat c) noexcept nogil:
    """C = beta C (beta == 0 never reads C), for products with nothing to sum."""
    cdef Py_ssize_t i, j
    cdef floating *e
    for i in range(c.rows):
        for j in range(c.cols):
            e = <floating*>c.p + i * c.rs + j * c.cs
            e[0] = 0 if beta == 0 else beta * e[0]


cdef inline void gemm(floating alpha, Mat a, Mat b, floating beta, Mat c) noexcept nogil:
    """C = alpha A B + beta C for logical A (M x K), B (K x N), C (M x N); beta == 0 never
    reads C. Every operand must be addressable (see operand()); products with a few rows or
    columns (a small batch) run as one gemv each."""
    gemm_as(-1, alpha, a, b, beta, c)


cdef inline void gemm_as(int by_vectors, floating alpha, Mat a, Mat b, floating beta,
                         Mat c) noexcept nogil:
    """gemm() with the choice between one gemm and one gemv per column (or row) of C made
    by the caller: by_vectors 1 always splits C along its smaller dimension into gemv calls,
    0 never does, -1 does when that dimension is at most GEMV_UP_TO (the heuristic)."""
    cdef char ta, tb, tc
    cdef blas_int lda, ldb, ldc, m, n, k
    cdef Py_ssize_t j
    cdef Mat swap
    cdef double began = 0
    if c.rows == 0 or c.cols == 0:
        return
    if a.cols == 0:
        scale(beta, c)
        return
    if by_vectors < 0:
        by_vectors = c.cols <= GEMV_UP_TO or c.rows <= GEMV_UP_TO
    if blas_timing:
        began = team_clock()
    if by_vectors and c.cols <= c.rows:     # C[:, j] = A B[:, j]
        for j in range(c.cols):
            gemv(alpha, a, <floating*>b.p + j * b.cs, step(b.rows, b.rs), beta,
                 <floating*>c.p + j * c.cs, step(c.rows, c.rs))
    elif by_vectors:                        # C[i, :]^T = B^T A[i, :]^T
        for j in range(c.rows):
            gemv(alpha, transposed(b), <floating*>a.p + j * a.rs, step(a.cols, a.cs), beta,
                 <floating*>c.p + j * c.rs, step(c.cols, c.cs))
    else:
        if not (c.rs == 1 and c.cs >= c.rows):  # row-major C: compute C^T = B^T A^T
            swap = transposed(a)
            a = transposed(b)
            b = swap
            c = transposed(c)
        # C is column-major now: operand() reads it 'N', with ldc >= max(1, rows) even where
        # a one-column C's column stride is arbitrary (0 for an extent of 1)
        operand(c, &tc, &ldc)
        operand(a, &ta, &lda)
        operand(b, &tb, &ldb)
        m, n, k = <blas_int>c.rows, <blas_int>c.cols, <blas_int>a.cols
        if floating is float:
            blas.sgemm(&ta, &tb, &m, &n, &k, &alpha, <float*>a.p, &lda, <float*>b.p, &ldb, &beta,
                       <float*>c.p, &ldc)
        else:
            blas.dgemm(&ta, &tb, &m, &n, &k, &alpha, <double*>a.p, &lda, <double*>b.p, &ldb, &beta,
                       <double*>c.p, &ldc)
    if blas_timing:
        blas_seconds[BLAS_COUNTER_SPACING * team_thread()] += team_clock() - began
        blas_flops[BLAS_COUNTER_SPACING * team_thread()] += 2.0 * c.rows * c.cols * a.cols
