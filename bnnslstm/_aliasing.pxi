# Aliasing: which resolved views share memory, and the refusals that follow from it. Part of
# _plan.pyx (included there): a written view must reach each of its elements once, and must
# not share memory with another written view, with a view the call reads, or with the
# training cache.

cdef bint shares_memory(Tensor a, object b, Py_ssize_t lo, Py_ssize_t hi) except -1:
    """Whether a's view shares memory with ``b``, which spans the addresses [lo, hi): a
    Tensor (its view) or a numpy array (the training cache). Exact where numpy can tell
    cheaply, else whether the address ranges meet (erring on the side of refusing)."""
    if a.hi() <= lo or hi <= a.lo():
        return False
    try:
        return np.shares_memory(a.numpy(), (<Tensor>b).numpy() if isinstance(b, Tensor) else b,
                                max_work=10**6)
    except np.exceptions.TooHardError:
        return True


cdef bint reaches_twice(Tensor v):
    """Whether a view may reach one element by two indices: unless, with its axes sorted by
    stride, each stride steps past everything the smaller ones reach. Sufficient, and true
    of every documented layout with default or padded strides and of every view numpy's
    slicing makes; an exotic interleaving such as extents (2, 3) at strides (3, 2) is
    refused although its elements are distinct."""
    cdef Py_ssize_t order[4]
    cdef Py_ssize_t reach = 0, key
    cdef int k, j, m = 0
    for k in range(4):
        if v.extent(k) > 1:
            j = m
            while j > 0 and v.step(order[j - 1]) > v.step(k):
                order[j] = order[j - 1]
                j -= 1
            order[j] = k
            m += 1
    for j in range(m):
        key = order[j]
        if v.step(key) <= reach:
            return True
        reach += (v.extent(key) - 1) * v.step(key)
    return False


cdef int check_writes(list writes, list reads, object cache, str reader) except -1:
    """Refuse written views that share memory with each other (the order of the writes would
    decide the result), with a view the call reads (the kernels would read what they have
    written), or with the training cache (written or read by the kernels meanwhile).
    Views that are only read may share memory."""
    cdef Py_ssize_t i, j, start = 0, end = 0
    cdef Tensor w, t
    for i in range(len(writes)):
        w = writes[i]
        if reaches_twice(w):
            view = w.numpy()
            raise BNNSError(f"{w.field}: its strides reach some element twice "
                            f"(size {view.shape}, strides "
                            f"{tuple(step // w.itemsize for step in view.strides)} in elements); "
                            "a written descriptor must reach each element once")
        for j in range(i):
            t = writes[j]
            if shares_memory(w, t, t.lo(), t.hi()):
                raise BNNSError(f"{w.field}: shares memory with {t.field}; written descriptors "
                                "must not overlap")
        for j in range(len(reads)):
            t = reads[j]
            if shares_memory(w, t, t.lo(), t.hi()):
                raise BNNSError(f"{w.field}: shares memory with {_read_name(t.field)}, "
                                f"which the {reader} reads")
    if cache is None:
        return 0
    start = <Py_ssize_t>_address(cache)
    end = start + cache.nbytes
    for i in range(len(writes)):
        w = writes[i]
        if shares_memory(w, cache, start, end):
            raise BNNSError(f"{w.field}: shares memory with training_cache, which the {reader} "
                            f"{'writes' if reader == 'forward' else 'reads'}")
    return 0


def _read_name(field):
    """iw_desc[k] reads are reported as iw_desc (the field name of the gate)."""
    return field.split("[")[0]


cdef char* _address(object array) except? NULL:
    """The first byte of a contiguous buffer (the cache, scratch): through the buffer
    protocol, whose export is released at once (the caller keeps the object alive)."""
    cdef Py_buffer view
    cdef char *first
    if array is None:
        return NULL
    PyObject_GetBuffer(array, &view, PyBUF_SIMPLE)
    first = <char*>view.buf
    PyBuffer_Release(&view)
    return first
