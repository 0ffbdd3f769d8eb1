# The kernels' entry point (the body is _lstm.pxi, built three times); the call: _call.pxd.

from ._call cimport Call

cdef void run(Call *c, bint forward) noexcept nogil
