"""The BLAS wrapper of _blas.pxd, callable from Python: exists for tests/test_blas.py only.

Private (nothing in the package imports it, and it is no API): the kernels reach scipy's
BLAS only through _blas.pxd's inline functions, which Python cannot call; this module
compiles the same functions once more and exposes each one with plain arguments, so that
the tests call every path of the wrapper on numpy arrays and compare with numpy's matmul
(as scikit-learn's sklearn/utils/tests/test_cython_blas.py tests its _cython_blas).

A matrix is a 2-D array of any strides: its shape and element strides become the wrapper's
Mat as they are, nothing is copied. The functions refuse (ValueError) what the wrapper
leaves to its callers to ensure: operands BLAS cannot address, shapes that do not chain,
byte strides that are not whole elements.
"""

from cython cimport floating

from ._blas cimport GEMV_UP_TO as BLAS_GEMV_UP_TO
from ._blas cimport Mat, blas_counting, blas_flops, blas_int, blas_seconds, gemm_as, mat
from ._blas cimport block as mat_block
from ._blas cimport gemv as mat_gemv
from ._blas cimport operand as mat_operand
from ._blas cimport step as mat_step

#: products with at most this many rows or columns of C run as one gemv per row or column
#: when gemm() chooses (by_vectors=-1)
GEMV_UP_TO = BLAS_GEMV_UP_TO


def operand(Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t rs, Py_ssize_t cs):
    """How BLAS reads a rows x cols matrix at element strides (rs, cs): ``('N', ld)``,
    ``('T', ld)``, or None when it cannot (the wrapper's operand(); no memory is read)."""
    cdef char trans
    cdef blas_int ld
    if not mat_operand(mat(NULL, rows, cols, rs, cs), &trans, &ld):
        return None
    return chr(trans), int(ld)


def step(Py_ssize_t extent, Py_ssize_t stride):
    """A vector's increment for BLAS (the wrapper's step())."""
    return int(mat_step(extent, stride))


cdef int as_mat(const floating[:, :] a, Mat *m, str name) except -1:
    cdef Py_ssize_t size = sizeof(floating)
    cdef const floating *first = NULL   # an empty matrix has no first element
    if a.strides[0] % size or a.strides[1] % size:
        raise ValueError(f"{name}: strides {a.strides[0]}, {a.strides[1]} bytes are not whole "
                         "elements")
    if a.shape[0] and a.shape[1]:
        first = &a[0, 0]
    m[0] = mat(first, a.shape[0], a.shape[1], a.strides[0] // size, a.strides[1] // size)
    return 0


cdef int addressed(Mat m, str name) except -1:
    cdef char trans
    cdef blas_int ld
    if m.rows and m.cols and not mat_operand(m, &trans, &ld):
        raise ValueError(f"{name}: BLAS cannot address strides ({m.rs}, {m.cs})")
    return 0


def block(const floating[:, :] a, Py_ssize_t r0, Py_ssize_t c0, Py_ssize_t rows,
          Py_ssize_t cols, bint absent=False):
    """The wrapper's block() of ``a`` (or of an absent matrix with a's strides):
    ``(offset, rows, cols, rs, cs)``, the offset of its first element from a's in elements
    (None for an absent one)."""
    cdef Mat m, b
    as_mat(a, &m, "a")
    if absent:
        m.p = NULL
    b = mat_block(m, r0, c0, rows, cols, sizeof(floating))
    offset = None if b.p == NULL else (b.p - m.p) // <Py_ssize_t>sizeof(floating)
    return offset, b.rows, b.cols, b.rs, b.cs


def gemm(double alpha, const floating[:, :] a, const floating[:, :] b, double beta,
         floating[:, :] c, int by_vectors=-1):
    """C = alpha A B + beta C in place through the wrapper's gemm_as() (by_vectors -1, its
    default: gemm() itself; 1: one gemv per row or column of C; 0: one gemm)."""
    cdef Mat A, B, C
    as_mat(a, &A, "a")
    as_mat(b, &B, "b")
    as_mat(c, &C, "c")
    if A.cols != B.rows or A.rows != C.rows or B.cols != C.cols:
        raise ValueError(f"shapes ({A.rows}, {A.cols}) @ ({B.rows}, {B.cols}) -> "
                         f"({C.rows}, {C.cols})")
    addressed(A, "a")
    addressed(B, "b")
    addressed(C, "c")
    with nogil:
        gemm_as(by_vectors, <floating>alpha, A, B, <floating>beta, C)


cdef int as_vector(const floating[:] x, Py_ssize_t *stride, str name) except -1:
    cdef Py_ssize_t size = sizeof(floating)
    if x.strides[0] % size or (x.shape[0] > 1 and x.strides[0] <= 0):
        # BLAS reads a negative increment from the vector's other end: the wrapper's
        # callers never pass one
        raise ValueError(f"{name}: stride {x.strides[0]} bytes is not a positive whole element")
    stride[0] = x.strides[0] // size
    return 0


def gemv(double alpha, const floating[:, :] a, const floating[:] x, double beta, floating[:] y):
    """y = alpha A x + beta y in place through the wrapper's gemv() (for a non-empty A:
    gemm() never calls it otherwise)."""
    cdef Mat A
    cdef Py_ssize_t incx, incy
    as_mat(a, &A, "a")
    if A.rows == 0 or A.cols == 0 or x.shape[0] != A.cols or y.shape[0] != A.rows:
        raise ValueError(f"shapes ({A.rows}, {A.cols}) @ ({x.shape[0]},) -> ({y.shape[0]},)")
    addressed(A, "a")
    as_vector(x, &incx, "x")
    as_vector(y, &incy, "y")
    with nogil:
        mat_gemv(<floating>alpha, A, &x[0], mat_step(A.cols, incx), <floating>beta, &y[0],
                 mat_step(A.rows, incy))


def counted_flops(bint enable=False, bint reset=False):
    """The floating-point operations gemm() counted on this thread while counting was enabled
    (the counters behind the kernels' blas_time(), this module's own copy); then counting is
    set to ``enable``, after zeroing them with ``reset``."""
    flops = blas_flops[0]
    if reset:
        blas_flops[0] = 0
        blas_seconds[0] = 0
    blas_counting(enable)
    return flops
