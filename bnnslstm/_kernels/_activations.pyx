"""Apply one activation function (or its derivative) to an array, for tests and docs."""

from cython cimport floating

from .activations cimport act_derivative, act_forward

cdef extern from "lstm_rows.h" nogil:
    float fast_sigmoidf(float x)
    float fast_tanhf(float x)


def apply(const floating[::1] x, floating[::1] out, int fn, double alpha, double beta, bint derivative):
    """out[i] = f(x[i]) (or f'(x[i])) for ActivationFunction ``fn``; shapes checked by the caller."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef floating a = <floating>alpha, b = <floating>beta, y
    with nogil:
        for i in range(n):
            y = act_forward(fn, x[i], a, b)
            out[i] = act_derivative(fn, x[i], y, a, b) if derivative else y


def fast_float32(const float[::1] x, float[::1] out, bint tanh):
    """The vectorised float32 sigmoid (or tanh) of the default-activation rows."""
    cdef Py_ssize_t i, n = x.shape[0]
    with nogil:
        for i in range(n):
            out[i] = fast_tanhf(x[i]) if tanh else fast_sigmoidf(x[i])
