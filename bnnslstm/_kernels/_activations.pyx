"""Apply one activation function (or its derivative) to an array, for tests and docs: the
kernels' own functions (declared in _activations.pxd)."""

from cython cimport floating


def apply(const floating[::1] x, floating[::1] out, int fn, double alpha, double beta,
          bint derivative):
    """out[i] = f(x[i]) (or f'(x[i])) for ActivationFunction ``fn``; shapes checked by the
    caller."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef floating a = <floating>alpha, b = <floating>beta, y
    with nogil:
        for i in range(n):
            y = act_forward(fn, x[i], a, b)
            out[i] = act_derivative(fn, x[i], y, a, b) if derivative else y


def fast_float32(const float[::1] x, float[::1] out, bint tanh):
    """The float32 sigmoid (or tanh) of the kernels, through their chunk function."""
    cdef Py_ssize_t i, j, n = x.shape[0], m
    cdef float chunk[64]
    with nogil:
        for i in range(0, n, 64):
            m = n - i
            if m > 64:
                m = 64
            for j in range(m):
                chunk[j] = x[i + j]
            activate(TANH if tanh else SIGMOID, 0, 0, chunk, m)
            for j in range(m):
                out[i + j] = chunk[j]
