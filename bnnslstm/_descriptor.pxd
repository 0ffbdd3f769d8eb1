# NDArrayDescriptor (docs/layouts.rst) as an extension type, and the resolved form the plan reads.


cdef struct Strided:
    # a descriptor resolved against a logical C-order shape: element (i0, ..., i_{nd-1})
    # lies at p + sum(i_k * s[k]) elements, every reachable one inside the buffer
    char *p
    int nd
    Py_ssize_t n[8]             # logical shape
    Py_ssize_t s[8]             # element strides of the logical axes (0 where n == 1)
    Py_ssize_t last             # largest reachable element offset
    Py_ssize_t length           # buffer length in elements


cdef class NDArrayDescriptor:
    cdef public object layout
    cdef public object size
    cdef public object stride
    cdef public object data_type
    cdef public object flags
    cdef object _data
    cdef object _view           # memoryview of _data (its export), taken on first use
    cdef bint _raw              # its format is raw bytes (read as any data_type)
    cdef str _kind              # else its numpy kind and item size
    cdef Py_ssize_t _itemsize
    # the last successful resolution, reused while layout, size, stride and data_type are
    # the same objects (tuples and ints: immutable) and the same shape is asked
    cdef bint _resolved
    cdef object _key_layout, _key_size, _key_stride, _key_type
    cdef int _key_nfill
    cdef Py_ssize_t _key_fill[8]
    cdef Strided _last
    # the plan's last match of this descriptor against a field's logical shape (same keys,
    # plus the shape and the call's element type): the resolved view, leading axes adjusted
    cdef object _match_shape
    cdef int _match_type
    cdef Strided _match

    cdef bint recall(self, tuple shape, int call_type, Strided *out)
    cdef void remember(self, tuple shape, int call_type, const Strided *view)

    cdef int _acquire(self, str field) except -1
    cdef int check_writable(self, str field) except -1
    cdef Py_ssize_t _elements(self, int data_type, str field) except -1
    cdef int resolve(self, const Py_ssize_t *fill, int nfill, str field, int data_type,
                     bint writable, Strided *out) except -1


cdef int layout_rank(object layout, str field) except -1
cdef int logical_shape(NDArrayDescriptor desc, str field, Py_ssize_t *shape) except -1
