# Declarations shared by the forward and backward kernels.

from cython cimport floating


cdef struct Acts:
    int fn[5]          # input, forget, candidate, output, hidden
    double alpha[5]
    double beta[5]
    bint default       # DEFAULT_ACTIVATIONS: sigmoid, sigmoid, tanh, sigmoid, tanh


cdef inline Acts make_acts(const int[::1] fns, const double[::1] alphas, const double[::1] betas, bint default):
    cdef Acts acts
    cdef int k
    for k in range(5):
        acts.fn[k] = fns[k]
        acts.alpha[k] = alphas[k]
        acts.beta[k] = betas[k]
    acts.default = default
    return acts


cdef inline floating* at2(floating[:, ::1] a) noexcept nogil:
    """Pointer to the first element, NULL for an empty array (an absent operand)."""
    return &a[0, 0] if a.shape[0] > 0 and a.shape[1] > 0 else NULL


cdef inline const floating* at3(const floating[:, :, ::1] a, Py_ssize_t d) noexcept nogil:
    """Pointer to a[d], NULL for an empty array (an absent operand)."""
    return &a[d, 0, 0] if a.shape[0] > d and a.shape[1] > 0 and a.shape[2] > 0 else NULL
