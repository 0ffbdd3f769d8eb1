# NDArrayDescriptor (docs/layouts.rst) as an extension type: its buffer, its layout, and the
# last resolutions, reused while nothing they were made from has changed.


cdef class NDArrayDescriptor:
    cdef public object layout
    cdef public object size
    cdef public object stride
    cdef public object data_type
    cdef public object flags
    cdef object _data
    cdef object _view           # memoryview of _data (its export), taken on first use
    cdef object _bytes          # the same export as bytes, for numpy views of any layout
    cdef bint _raw              # its format is raw bytes (read as any data_type)
    cdef str _kind              # else its numpy kind and item size
    cdef Py_ssize_t _itemsize
    # the last successful resolution, reused while layout, size, stride and data_type are
    # the same objects (tuples and ints: immutable) and the same shape is asked
    cdef bint _resolved
    cdef object _key_layout, _key_size, _key_stride, _key_type
    cdef int _key_nfill
    cdef Py_ssize_t _key_fill[8]
    cdef object _last           # that resolution: a numpy view of the logical index space
    # the plan's last match of this descriptor against a field's logical shape (same keys,
    # plus the shape and the call's element type): the plan's resolved tensor (its typed
    # memoryview), leading axes adjusted
    cdef object _match_shape
    cdef int _match_type
    cdef object _match

    cdef object recall(self, tuple shape, int call_type)
    cdef void remember(self, tuple shape, int call_type, object tensor)

    cdef int _acquire(self, str field) except -1
    cdef int check_writable(self, str field) except -1
    cdef Py_ssize_t _elements(self, int data_type, str field) except -1
    cdef object resolve(self, const Py_ssize_t *fill, int nfill, str field, int data_type,
                        bint writable)


cdef int layout_rank(object layout, str field) except -1
cdef int logical_shape(NDArrayDescriptor desc, str field, Py_ssize_t *shape) except -1
