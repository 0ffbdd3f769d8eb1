# The kernels (the body is _lstm.pxi, shared with _lstm_avx2 and _lstm_avx512): see _call.pxd for the call.

from ._call cimport Call

cdef int run_forward(Call *c) noexcept nogil
cdef int run_backward(Call *c) noexcept nogil
