"""NDArray descriptors: a buffer plus a layout, sizes and strides in elements.

A descriptor holds its buffer through the buffer protocol (no copy): a memoryview of it,
taken on first use and kept, so the exporter cannot be resized under it (and a garbage
collection of a cycle through the descriptor releases the export like any memoryview).
:meth:`resolve` turns it, against the logical C-order shape a field expects, into a numpy
view of that index space over the buffer (its element strides the descriptor's), after
checking the element type, the writability and that every reachable offset (64-bit overflow
included) lies inside the buffer; the plan makes it the typed memoryview the kernels are
pointed at. :meth:`NDArrayDescriptor.to_numpy` returns the same view. How each layout maps
its size and stride entries to the logical axes: _layouts.pxi.
"""

from cpython.buffer cimport (PyBUF_STRIDES, PyBUF_WRITABLE, Py_buffer, PyBuffer_IsContiguous,
                             PyBuffer_Release, PyObject_CheckBuffer, PyObject_GetBuffer)

cdef extern from "Python.h":
    Py_buffer *PyMemoryView_GET_BUFFER(object view)

import numpy as np

from .enums import DataLayout, DataType, NDArrayFlags
from .errors import BNNSError

cdef Py_ssize_t MAX_OFFSET = <Py_ssize_t>1 << 62  # every offset, in bytes too, fits a signed
                                                  # 64-bit integer

_NUMPY_TYPES = {
    DataType.FLOAT32: np.dtype(np.float32),
    DataType.FLOAT64: np.dtype(np.float64),
    DataType.INT32: np.dtype(np.int32),
    DataType.INT64: np.dtype(np.int64),
    DataType.UINT32: np.dtype(np.uint32),
    DataType.UINT64: np.dtype(np.uint64),
}
_DATA_TYPES = {dtype: data_type for data_type, dtype in _NUMPY_TYPES.items()}
# data type value -> (numpy kind, itemsize), for the per-call type check without enum look-ups
cdef dict _KINDS = {int(t): (d.kind, d.itemsize) for t, d in _NUMPY_TYPES.items()}
cdef dict _DTYPES = {int(t): d for t, d in _NUMPY_TYPES.items()}
_RAW_FORMATS = frozenset({"B", "b", "c"})
# the formats numpy, array.array and memoryview export for the DataTypes, parsed once
_FORMATS = {}
for _format in ("f", "d", "i", "I", "l", "L", "q", "Q", "h", "H", "e", "g", "?"):
    for _prefix in ("", "@", "=", "<", ">"):
        try:
            _dtype = np.dtype(_prefix + _format)
        except TypeError:
            continue
        if _dtype.isnative:
            _FORMATS[_prefix + _format] = (_dtype.kind, _dtype.itemsize)


def numpy_dtype(data_type):
    """The numpy dtype of a :class:`DataType` (BNNSError for other values)."""
    try:
        return _NUMPY_TYPES[DataType(data_type)]
    except ValueError:
        raise BNNSError(f"data_type: {data_type!r} is not a DataType") from None


def type_name(data_type):
    try:
        return DataType(data_type).name
    except ValueError:
        return repr(data_type)


include "_layouts.pxi"


cdef inline bint same(const Py_ssize_t *a, const Py_ssize_t *b, int n):
    cdef int k
    for k in range(n):
        if a[k] != b[k]:
            return False
    return True


# ---------------------------------------------------------------------------------- descriptor
cdef class NDArrayDescriptor:
    """A buffer with a layout, sizes and strides in elements (``BNNSNDArrayDescriptor``).

    Parameters
    ----------
    data : buffer or None
        Any object exporting the buffer protocol (numpy array, ``bytearray``, ``memoryview``,
        ``array.array``). A raw byte buffer is read as ``data_type``; a typed buffer must have
        that element type. The first element sits at the buffer's start.
    layout : DataLayout
    size, stride : sequence of int
        Up to 8 entries each, in elements. A zero stride means the contiguous default; a
        zero size is filled from the LSTM parameters' scalars when a function is called.
    data_type : DataType
    flags : NDArrayFlags
        For gradient outputs: ``BACKPROP_SET`` overwrites, ``BACKPROP_ACCUMULATE`` adds.
    """

    def __init__(self, data=None, layout=DataLayout.VECTOR, size=(), stride=(),
                 data_type=DataType.FLOAT32, flags=NDArrayFlags.BACKPROP_SET):
        self.data = data
        self.layout = layout
        self.size = tuple(size)
        self.stride = tuple(stride)
        self.data_type = data_type
        self.flags = flags

    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, value):
        self._resolution = None  # nothing holds the old data
        self._view = self._bytes = None
        self._data = value

    def __repr__(self):
        data = "None" if self._data is None else type(self._data).__name__
        layout = (DataLayout(self.layout).name if self.layout in DataLayout._value2member_map_
                  else self.layout)
        return (f"NDArrayDescriptor(data=<{data}>, layout={layout}, size={self.size}, "
                f"stride={self.stride}, data_type={self.data_type!r}, flags={self.flags!r})")

    def __reduce__(self):
        return (NDArrayDescriptor, (self._data, self.layout, self.size, self.stride, self.data_type,
                                    self.flags))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_array(cls, array, layout=None, flags=NDArrayFlags.BACKPROP_SET):
        """A descriptor on a numpy array, without copying.

        The array's axes are the layout's logical indices in C notation (``[s][n][e]`` for
        SNE, ``[row][col]`` for both matrix layouts, ``[i_{n-1}]...[i0]`` for
        ``LAST_MAJOR_nD``). ``layout=None`` means ``VECTOR`` for 1-D arrays and
        ``FIRST_MAJOR_nD`` otherwise.
        """
        cdef int size_index[8]
        cdef int stride_index[8]
        array = np.asarray(array)
        if array.dtype not in _DATA_TYPES:
            raise BNNSError(f"array: dtype {array.dtype} has no DataType")
        if layout is None:
            layout = (DataLayout.VECTOR if array.ndim == 1
                      else DataLayout[f"FIRST_MAJOR_{array.ndim}D"])
        try:
            layout = DataLayout(layout)
        except ValueError:
            raise BNNSError(f"layout: {layout!r} is not a DataLayout") from None
        if array.ndim != layout.rank:
            raise BNNSError(f"array: {layout.name} needs {layout.rank} dimensions, "
                            f"the array has {array.ndim}")
        itemsize = array.dtype.itemsize
        strides = []
        for extent, step in zip(array.shape, array.strides):
            if extent == 1 or array.size == 0:
                step = 0  # normalised below to the default (numpy gives an empty array 0 strides)
            elif step < 0:
                raise BNNSError(f"array: negative stride {step} (reversed views are not supported)")
            elif step == 0:
                raise BNNSError("array: zero stride on an axis longer than 1 "
                                "(broadcast views are not supported)")
            elif step % itemsize:
                raise BNNSError(f"array: stride {step} bytes is not a whole number of "
                                f"{itemsize}-byte elements")
            strides.append(step // itemsize)
        axis_maps(layout, size_index, stride_index)
        size = [0] * layout.rank
        stride = [0] * layout.rank
        for axis, extent in enumerate(array.shape):
            size[size_index[axis]] = extent
            stride[stride_index[axis]] = strides[axis]
        stride = _fill_strides(layout, size, stride)
        if array.flags.c_contiguous:  # the buffer as it is: element 0 first, no gaps
            flat = array
        else:  # the contiguous span from element 0 to the last one the view reaches
            span = 1 + sum((n - 1) * s for n, s in zip(array.shape, strides)) if array.size else 0
            flat = np.lib.stride_tricks.as_strided(array, shape=(span,), strides=(itemsize,),
                                                   writeable=array.flags.writeable)
        return cls(flat, layout, tuple(size), tuple(stride), _DATA_TYPES[array.dtype], flags)

    # ------------------------------------------------------------------ resolution
    cdef int _acquire(self, str field) except -1:
        """Take (once) the buffer export of data: contiguous, any format."""
        cdef Py_buffer *buffer
        if self._view is not None:
            return 0
        if self._data is None:
            raise BNNSError(f"{field}.data: no buffer")
        if not PyObject_CheckBuffer(self._data):
            raise BNNSError(f"{field}.data: {type(self._data).__name__} does not export "
                            "the buffer protocol")
        view = memoryview(self._data)
        buffer = PyMemoryView_GET_BUFFER(view)
        if not PyBuffer_IsContiguous(buffer, b'C'):
            raise BNNSError(f"{field}.data: the buffer is not contiguous "
                            "(use NDArrayDescriptor.from_array)")
        format = (buffer.format if buffer.format != NULL else b"B").decode()
        raw = format.lstrip("@=<>!") in _RAW_FORMATS
        kind, itemsize = "", 0
        if not raw:
            known = _FORMATS.get(format)
            if known is not None:
                kind, itemsize = known
            else:
                try:
                    given = np.dtype(format)
                    if given.isnative:
                        kind, itemsize = given.kind, given.itemsize
                except TypeError:
                    pass
        # an empty buffer holds no element: resolve refuses it before reading _bytes
        self._bytes = view.cast("B") if buffer.len > 0 else b""
        self._raw, self._kind, self._itemsize = raw, kind, itemsize
        self._view = view   # last: a concurrent call that finds it finds the fields above
        return 0

    cdef int check_writable(self, str field) except -1:
        """BNNSError unless data may be written now. Asked of data itself on every call that
        writes: the export kept in _view says what was true when it was taken, and numpy
        lets an array be made read-only (or writable again) while exports are out."""
        cdef Py_buffer probe
        try:
            PyObject_GetBuffer(self._data, &probe, PyBUF_STRIDES | PyBUF_WRITABLE)
        except Exception:
            raise BNNSError(f"{field}.data: the buffer is read-only but this descriptor "
                            "is written") from None
        PyBuffer_Release(&probe)
        return 0

    cdef Py_ssize_t _elements(self, int data_type, str field) except -1:
        """How many elements of data_type the buffer holds (BNNSError if its own type differs)."""
        cdef Py_ssize_t itemsize
        cdef Py_buffer *buffer = PyMemoryView_GET_BUFFER(self._view)
        kind, itemsize = _KINDS[data_type]
        if not self._raw and (self._kind != kind or self._itemsize != itemsize):
            format = (buffer.format if buffer.format != NULL else b"B").decode()
            raise BNNSError(f"{field}.data: buffer format {format!r} does not match data_type "
                            f"{DataType(data_type).name}")
        return buffer.len // itemsize

    cdef object resolve(self, const Py_ssize_t *fill, int nfill, str field, int data_type,
                        bint writable):
        """Check the descriptor against a buffer of ``data_type`` and resolve it: a numpy view
        of the logical C-order index space (read-only where the buffer is).

        Zero sizes are taken from ``fill`` (a C-order shape aligned right on the logical
        one). Raises BNNSError naming ``field`` for a bad layout, size or stride, a buffer
        that is missing, not contiguous, of another element type, read-only where
        ``writable``, or too short for the largest reachable offset.
        """
        cdef int size_index[8]
        cdef int stride_index[8]
        cdef Py_ssize_t size[8]
        cdef Py_ssize_t stride[8]
        cdef Py_ssize_t n[8]
        cdef Py_ssize_t s[8]
        cdef int rank, j, offset
        cdef Py_ssize_t last = 0, step, length, itemsize
        cdef bint overflow = False
        cdef Resolution known = self.current()
        if known is not None and nfill == known.nfill and same(fill, known.fill, nfill):
            if writable:
                self.check_writable(field)
            return known.view
        rank = axis_maps(self.layout, size_index, stride_index)
        if rank < 0:
            raise BNNSError(f"{field}.layout: {self.layout!r} is not a DataLayout")
        entries(self.size, rank, "size", field, size)
        offset = nfill - rank
        for j in range(rank):
            n[j] = size[size_index[j]]
            if n[j] == 0 and 0 <= j + offset < nfill:
                n[j] = fill[j + offset]
                size[size_index[j]] = n[j]
        for j in range(rank):
            if n[j] == 0:
                raise BNNSError(f"{field}.size: size {tuple(self.size)} has a zero extent "
                                "that nothing fills")
        if data_type not in _KINDS:
            raise BNNSError(f"data_type: {data_type!r} is not a DataType")
        self._acquire(field)
        if writable:
            self.check_writable(field)
        length = self._elements(data_type, field)
        entries(self.stride, rank, "stride", field, stride)
        fill_defaults(size_index, stride_index, rank, size, stride, field)
        for j in range(rank):
            step = stride[stride_index[j]]
            s[j] = step if n[j] > 1 else 0
            if n[j] > 1:
                if step > (MAX_OFFSET - last) // (n[j] - 1):
                    overflow = True
                else:
                    last += (n[j] - 1) * step
        if overflow or last >= length:
            reached = sum((n[j] - 1) * stride[stride_index[j]] for j in range(rank))
            raise BNNSError(
                f"{field}: size {tuple(size[k] for k in range(rank))} with stride "
                f"{tuple(stride[k] for k in range(rank))} reaches element {reached} "
                f"but the buffer holds {length}")
        dtype = _DTYPES[data_type]
        itemsize = dtype.itemsize
        view = np.ndarray(tuple(n[j] for j in range(rank)), dtype, self._bytes, 0,
                          tuple(s[j] * itemsize for j in range(rank)))
        if type(self.size) is tuple and type(self.stride) is tuple:
            known = Resolution.__new__(Resolution)
            known.layout, known.size, known.stride = self.layout, self.size, self.stride
            known.data_type, known.nfill, known.view = self.data_type, nfill, view
            for j in range(nfill):
                known.fill[j] = fill[j]
            self._resolution = known   # published whole
        else:  # a list can change in place: nothing cached, and no older entry may be hit
            self._resolution = None
        return view

    cdef Resolution current(self):
        """The last resolution while nothing it was made from has changed (the data, whose
        setter drops it; layout, size, stride and data_type, the same objects), else None."""
        cdef Resolution known = self._resolution
        if (known is not None and self._view is not None
                and self.layout is known.layout and self.size is known.size
                and self.stride is known.stride and self.data_type is known.data_type):
            return known
        return None

    cdef object recall(self, tuple shape, int call_type):
        """The plan's tensor remembered for ``shape`` and ``call_type``, if nothing it was
        made from has changed since (else None)."""
        cdef Resolution known = self.current()
        if (known is not None and known.match_shape is not None
                and call_type == known.match_type and shape == known.match_shape):
            return known.match
        return None

    cdef void remember(self, tuple shape, int call_type, object tensor):
        cdef Resolution known = self._resolution, matched
        if known is None:  # only while the resolution it rests on is cached
            return
        matched = Resolution.__new__(Resolution)   # a copy with the match, published whole
        matched.layout, matched.size, matched.stride = known.layout, known.size, known.stride
        matched.data_type, matched.nfill, matched.view = known.data_type, known.nfill, known.view
        matched.fill = known.fill
        matched.match_shape, matched.match_type, matched.match = shape, call_type, tensor
        self._resolution = matched

    # ------------------------------------------------------------------ Python views
    def logical_shape(self, default_shape=None):
        """The logical C-order shape, zero sizes taken from ``default_shape`` (aligned right)."""
        cdef Py_ssize_t shape[8]
        cdef int rank = logical_shape(self, "descriptor", shape), j
        result = [shape[j] for j in range(rank)]
        if default_shape is not None:
            offset = len(default_shape) - rank
            for j in range(rank):
                if result[j] == 0 and 0 <= j + offset < len(default_shape):
                    result[j] = default_shape[j + offset]
        return tuple(result)

    def to_numpy(self, shape=None, field="descriptor", writable=False):
        """A numpy view of the logical index space, bounds-checked against the buffer.

        ``shape`` fills zero sizes. Raises :class:`BNNSError` naming ``field`` if any
        reachable element would lie outside the buffer, the buffer's element type is not
        ``data_type``, or ``writable`` is asked of a read-only buffer.
        """
        cdef Py_ssize_t fill[8]
        cdef int nfill = 0, j
        numpy_dtype(self.data_type)  # BNNSError for a value that is no DataType
        if shape is not None:
            nfill = min(len(shape), 8)
            for j in range(nfill):
                fill[j] = shape[len(shape) - nfill + j]
        array = self.resolve(fill, nfill, field, int(self.data_type), writable).view()
        if not writable:
            array.flags.writeable = False
        return array
