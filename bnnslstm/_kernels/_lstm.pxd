# The kernels' entry points (the body is _lstm.pxi, built three times); the call: _call.pxd.

from ._call cimport Call

cdef int run_forward(Call *c) noexcept nogil
cdef int run_backward(Call *c) noexcept nogil
