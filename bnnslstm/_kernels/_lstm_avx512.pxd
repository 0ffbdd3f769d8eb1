# The kernels built for AVX-512, AVX2 and FMA (the body is _lstm.pxi): see _lstm.pxd.

from ._call cimport Call

cdef void run(Call *c, bint forward) noexcept nogil
