# NDArrayDescriptor (docs/layouts.rst) as an extension type: its buffer, its layout, and the
# last resolutions, reused while nothing they were made from has changed.


cdef class Resolution:
    # One resolution of a descriptor, never changed once published: the descriptor holds
    # one reference to it, replaced whole (atomic under the GIL), so a thread that reads it
    # sees keys and results that belong together, whatever other threads resolve meanwhile.
    # Reused while layout, size, stride and data_type are the same objects (tuples and
    # ints: immutable) and the same shape is asked.
    cdef object layout, size, stride, data_type
    cdef int nfill
    cdef Py_ssize_t fill[8]
    cdef object view            # a numpy view of the logical index space
    # the plan's match of this resolution against a field's logical shape (plus the shape
    # and the call's element type): its resolved tensor (typed memoryview), leading axes
    # adjusted; None until remembered
    cdef object match_shape
    cdef int match_type
    cdef object match


cdef class NDArrayDescriptor:
    cdef public object layout
    cdef public object size
    cdef public object stride
    cdef public object data_type
    cdef public object flags
    cdef object _data
    cdef object _view           # memoryview of _data (its export), taken on first use and
                                # set last: whoever finds it finds the four fields below
    cdef object _bytes          # the same export as bytes, for numpy views of any layout
    cdef bint _raw              # its format is raw bytes (read as any data_type)
    cdef str _kind              # else its numpy kind and item size
    cdef Py_ssize_t _itemsize
    cdef Resolution _resolution  # the last successful resolution, or None

    cdef Resolution current(self)
    cdef object recall(self, tuple shape, int call_type)
    cdef void remember(self, tuple shape, int call_type, object tensor)

    cdef int _acquire(self, str field) except -1
    cdef int check_writable(self, str field) except -1
    cdef Py_ssize_t _elements(self, int data_type, str field) except -1
    cdef object resolve(self, const Py_ssize_t *fill, int nfill, str field, int data_type,
                        bint writable)


cdef int layout_rank(object layout, str field) except -1
cdef int logical_shape(NDArrayDescriptor desc, str field, Py_ssize_t *shape) except -1
