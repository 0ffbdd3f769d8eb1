# Tensor: a descriptor resolved against the logical shape the call gives it (Plan.tensor
# builds it): a typed memoryview of the call's element type over the caller's buffer, its
# strides the descriptor's, and the matrices and vectors its slices become where the
# kernels hand them to BLAS. Part of _plan.pyx (included there).

cdef class Tensor:
    """A resolved descriptor: where it lies, for the overlap checks and the kernels."""

    # the view, of the call's type: the field's logical axes last, leading axes of extent 1
    # where the field has fewer than four ([T][B][F] sequences, [L][D][H] vectors, [D][H][I])
    cdef const float[:, :, :, :] f32
    cdef const double[:, :, :, :] f64
    cdef int rank                   # the field's logical rank
    cdef bint swapped               # an NSE sequence: the view's axes are [B][T][F], not [T][B][F]
    cdef object array               # the same view as numpy's (the field's axes, in the
                                    # descriptor's order), for the overlap checks and copies
    cdef readonly object desc
    cdef readonly str field
    cdef int itemsize

    cdef int take(self, object view) except -1:
        """Hold ``view`` (a numpy view of the field's logical axes) as the typed memoryview."""
        self.array = view
        if view.ndim < 4:
            view = view[(None,) * (4 - view.ndim)]
        if self.itemsize == 4:
            self.f32 = view
        else:
            self.f64 = view
        return 0

    cdef Tensor bare(self):
        """The same view without the descriptor and field: what a descriptor remembers (a
        reference back to the descriptor would make a cycle that only the collector frees)."""
        cdef Tensor t = Tensor.__new__(Tensor)
        t.itemsize = self.itemsize
        t.same_view(self)
        return t

    cdef int same_view(self, Tensor other) except -1:
        self.rank, self.array = other.rank, other.array
        if self.itemsize == 4:
            self.f32 = other.f32
        else:
            self.f64 = other.f64
        return 0

    cdef char *at(self, Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t i2) noexcept:
        """The address of element [i0, i1, i2, 0] of the view."""
        if self.itemsize == 4:
            return <char*>&self.f32[i0, i1, i2, 0]
        return <char*>&self.f64[i0, i1, i2, 0]

    cdef Py_ssize_t extent(self, int k) noexcept:
        return self.f32.shape[k] if self.itemsize == 4 else self.f64.shape[k]

    cdef Py_ssize_t step(self, int k) noexcept:
        """The view's stride on axis k, in elements."""
        return (self.f32.strides[k] if self.itemsize == 4 else self.f64.strides[k]) // self.itemsize

    cdef Py_ssize_t lo(self):
        return <Py_ssize_t>self.at(0, 0, 0)

    cdef Py_ssize_t hi(self):
        cdef Py_ssize_t last = 0
        cdef int k
        for k in range(4):
            last += (self.extent(k) - 1) * self.step(k)
        return <Py_ssize_t>self.at(0, 0, 0) + (last + 1) * self.itemsize

    def numpy(self):
        """The logical view as a numpy array (for exact overlap checks and copies)."""
        view = self.array[(None,) * (self.rank - self.array.ndim)] if self.array.ndim < self.rank \
            else self.array
        return view.swapaxes(0, 1) if self.swapped else view

    cdef Mat matrix(self, Py_ssize_t i0, Py_ssize_t i1):
        """The trailing two axes at leading index (i0, i1) (of a rank-4 view; i0 ignored
        for rank 3)."""
        if self.rank < 4:
            i0 = 0
        return mat(self.at(i0, i1, 0), self.extent(2), self.extent(3), self.step(2), self.step(3))

    cdef Vec vector(self, Py_ssize_t i0, Py_ssize_t i1):
        """The last axis at leading index (i0, i1) of a rank-3 view."""
        cdef Vec v
        v.p = self.at(0, i0, i1)
        v.s = self.step(3)
        return v
