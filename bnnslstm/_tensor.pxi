# Tensor: a descriptor resolved against the logical shape the call gives it (Plan.tensor
# builds it), with the matrices and vectors the kernels are pointed at. Part of _plan.pyx
# (included there).

cdef class Tensor:
    """A resolved descriptor: where it lies, for the overlap checks and the kernels."""

    cdef Strided s
    cdef readonly object desc
    cdef readonly str field
    cdef int itemsize
    cdef object export              # the buffer export s.p points into, held while the plan lives

    cdef Py_ssize_t lo(self):
        return <Py_ssize_t>self.s.p

    cdef Py_ssize_t hi(self):
        return <Py_ssize_t>self.s.p + (self.s.last + 1) * self.itemsize

    def numpy(self):
        """The logical view as a numpy array (for exact overlap checks and copies)."""
        cdef int k
        dtype = np.float32 if self.itemsize == 4 else np.float64
        return np.ndarray(tuple(self.s.n[k] for k in range(self.s.nd)), dtype,
                          self.export.cast("B"), 0,
                          tuple(self.s.s[k] * self.itemsize for k in range(self.s.nd)))

    cdef Mat matrix(self, Py_ssize_t i0, Py_ssize_t i1):
        """The trailing two axes at leading index (i0, i1) (of a rank-4 view; i0 ignored
        for rank 3)."""
        cdef Strided *s = &self.s
        cdef char *p = s.p
        if s.nd == 4:
            p += (i0 * s.s[0] + i1 * s.s[1]) * self.itemsize
        else:
            p += i1 * s.s[0] * self.itemsize
        return mat(p, s.n[s.nd - 2], s.n[s.nd - 1], s.s[s.nd - 2], s.s[s.nd - 1])

    cdef Vec vector(self, Py_ssize_t i0, Py_ssize_t i1):
        """The last axis at leading index (i0, i1) of a rank-3 view."""
        cdef Vec v
        v.p = self.s.p + (i0 * self.s.s[0] + i1 * self.s.s[1]) * self.itemsize
        v.s = self.s.s[2]
        return v
