# Layouts: how each DataLayout maps a descriptor's size and stride entries to the logical
# (C-order) axes of its index space, the defaults for zero or missing strides, and the
# logical shape. Part of _descriptor.pyx (included there).

cdef int axis_maps(object layout, int *size_index, int *stride_index) except? -2:
    """For each logical (C-order) axis j: the index into ``size`` and into ``stride``; the
    rank, or -1 for a value that is no DataLayout."""
    cdef long value
    cdef int rank, j
    if isinstance(layout, bool) or not isinstance(layout, int):
        try:
            if isinstance(layout, bool) or not hasattr(layout, "__index__"):
                return -1
            value = layout.__index__()
        except Exception:
            return -1
    else:
        if layout < 0 or layout > 0x88001:
            return -1
        value = layout
    rank = value >> 16
    if value == 0x10000 or value == 0x18000 or value == 0x18001:  # VECTOR, *_1D
        size_index[0] = stride_index[0] = 0
        return 1
    if value == 0x20000:  # ROW_MAJOR_MATRIX: size = (columns, rows)
        size_index[0] = stride_index[0] = 1
        size_index[1] = stride_index[1] = 0
        return 2
    if value == 0x20001:  # COLUMN_MAJOR_MATRIX: size = (rows, columns), r*s0 + c*s1
        size_index[0] = stride_index[0] = 0
        size_index[1] = stride_index[1] = 1
        return 2
    if value == 0x30001 or value == 0x30002 or (2 <= rank <= 8 and value & 0xFFFF == 0x8000):
        for j in range(rank):  # SNE, NSE, LAST_MAJOR_nD: the first size index is fastest
            size_index[j] = stride_index[j] = rank - 1 - j
        return rank
    if 2 <= rank <= 8 and value & 0xFFFF == 0x8001:  # FIRST_MAJOR_nD: size is the C shape
        for j in range(rank):
            size_index[j] = j
            stride_index[j] = rank - 1 - j
        return rank
    return -1


cdef int layout_rank(object layout, str field) except -1:
    cdef int size_index[8]
    cdef int stride_index[8]
    cdef int rank = axis_maps(layout, size_index, stride_index)
    if rank < 0:
        raise BNNSError(f"{field}.layout: {layout!r} is not a DataLayout")
    return rank


cdef int entries(object values, int rank, str name, str field, Py_ssize_t *out) except -1:
    """``values`` (a size or a stride) as ``rank`` non-negative integers, padded with zeros."""
    cdef int k, count
    cdef object v
    try:
        count = len(values)
    except TypeError:
        raise BNNSError(f"{field}.{name}: expected a sequence of integers, "
                        f"got {values!r}") from None
    if count > 8:
        raise BNNSError(f"{field}.{name}: at most 8 entries, got {count}")
    cdef Py_ssize_t x
    for k in range(rank):
        if k >= count:
            out[k] = 0
            continue
        v = values[k]
        if type(v) is not int:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise BNNSError(f"{field}.{name}: entries must be integers, got {tuple(values)}")
            v = int(v)
        try:
            x = v
        except OverflowError:
            x = -1 if v < 0 else MAX_OFFSET + 1
        if x < 0:
            raise BNNSError(f"{field}.{name}: entries must be non-negative, got {tuple(values)}")
        if x > MAX_OFFSET:
            raise BNNSError(f"{field}.{name}: entry {v} is too large")
        out[k] = x
    return 0


cdef int fill_defaults(const int *size_index, const int *stride_index, int rank,
                       const Py_ssize_t *size, Py_ssize_t *stride, str field) except -1:
    """Zero strides become the contiguous default: stride[k] = stride[k-1] * extent of the
    axis stride[k-1] steps (BNNSError naming ``field`` past MAX_OFFSET)."""
    cdef Py_ssize_t extent[8]
    cdef int axis, k
    for axis in range(rank):
        extent[stride_index[axis]] = size[size_index[axis]]
    for k in range(rank):
        if stride[k] == 0:
            if k == 0:
                stride[k] = 1
            else:
                # the product in Python ints for the message: in C it could wrap
                if extent[k - 1] > 1 and stride[k - 1] > MAX_OFFSET // extent[k - 1]:
                    raise BNNSError(f"{field}.stride: default stride "
                                    f"{<object>stride[k - 1] * <object>extent[k - 1]} is too large")
                stride[k] = stride[k - 1] * (extent[k - 1] if extent[k - 1] > 1 else 1)
    return 0


def _fill_strides(layout, size, stride):
    """The strides with zeros replaced by the contiguous default (lists, as docs/layouts.rst
    gives them)."""
    cdef int size_index[8]
    cdef int stride_index[8]
    cdef Py_ssize_t s[8]
    cdef Py_ssize_t st[8]
    cdef int rank = layout_rank(layout, "layout"), k
    entries(size, rank, "size", "descriptor", s)
    entries(stride, rank, "stride", "descriptor", st)
    axis_maps(layout, size_index, stride_index)
    fill_defaults(size_index, stride_index, rank, s, st, "array")
    return [st[k] for k in range(rank)]


cdef int logical_shape(NDArrayDescriptor desc, str field, Py_ssize_t *shape) except -1:
    """The descriptor's logical C-order shape (zeros where a size is to be filled); its rank."""
    cdef int size_index[8]
    cdef int stride_index[8]
    cdef Py_ssize_t size[8]
    cdef int rank = axis_maps(desc.layout, size_index, stride_index), j
    if rank < 0:
        raise BNNSError(f"{field}.layout: {desc.layout!r} is not a DataLayout")
    entries(desc.size, rank, "size", field, size)
    for j in range(rank):
        shape[j] = size[size_index[j]]
    return rank
