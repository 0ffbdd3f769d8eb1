# The kernels built for AVX-512, AVX2 and FMA (the body is _lstm.pxi): see _lstm.pxd.

from ._call cimport Call

cdef int run_forward(Call *c) noexcept nogil
cdef int run_backward(Call *c) noexcept nogil
