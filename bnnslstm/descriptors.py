"""NDArray descriptors: a buffer plus a layout, sizes and strides in elements (SPEC §2).

A descriptor keeps a typed, one-dimensional view of its buffer (no copy). Its *logical*
view is a C-order index space (``[T][B][I]`` for SNE data, ``[rows][cols]`` for either
matrix layout, ...); :meth:`NDArrayDescriptor.to_numpy` returns it as a strided numpy view
after checking that every reachable element lies inside the buffer.
"""

import numpy as np

from .enums import DataLayout, DataType, NDArrayFlags
from .errors import BNNSError

__all__ = ["NDArrayDescriptor"]

_NUMPY_TYPES = {
    DataType.FLOAT32: np.dtype(np.float32),
    DataType.FLOAT64: np.dtype(np.float64),
    DataType.INT32: np.dtype(np.int32),
    DataType.INT64: np.dtype(np.int64),
    DataType.UINT32: np.dtype(np.uint32),
    DataType.UINT64: np.dtype(np.uint64),
}
_DATA_TYPES = {dtype: data_type for data_type, dtype in _NUMPY_TYPES.items()}
_RAW_FORMATS = frozenset({"B", "b", "c"})
_MAX_OFFSET = 2**62  # keeps every offset, in bytes too, inside a signed 64-bit integer


def numpy_dtype(data_type):
    """The numpy dtype of a :class:`DataType` (BNNSError for other values)."""
    try:
        return _NUMPY_TYPES[DataType(data_type)]
    except ValueError:
        raise BNNSError(f"data_type: {data_type!r} is not a DataType") from None


def _layout_maps(layout):
    """For each logical (C-order) axis j: the index into ``size`` and into ``stride``."""
    rank = layout.rank
    if layout in (DataLayout.VECTOR, DataLayout.LAST_MAJOR_1D, DataLayout.FIRST_MAJOR_1D):
        return (0,), (0,)
    if layout == DataLayout.ROW_MAJOR_MATRIX:  # size = (columns, rows)
        return (1, 0), (1, 0)
    if layout == DataLayout.COLUMN_MAJOR_MATRIX:  # size = (rows, columns), r*s0 + c*s1
        return (0, 1), (0, 1)
    reverse = tuple(range(rank - 1, -1, -1))
    if layout.name.startswith("FIRST_MAJOR"):  # size is the C shape; stride[0] steps the last index
        return tuple(range(rank)), reverse
    return reverse, reverse  # SNE, NSE, LAST_MAJOR_nD: first size index fastest


# computed once: validation runs on every call, and enum look-ups are slow
_AXIS_MAPS = {int(layout): _layout_maps(layout) for layout in DataLayout}


def _axis_maps(layout):
    return _AXIS_MAPS[layout]


class NDArrayDescriptor:
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

    def __repr__(self):
        data = "None" if self.data is None else type(self.data).__name__
        layout = DataLayout(self.layout).name if self.layout in DataLayout._value2member_map_ else self.layout
        return (f"NDArrayDescriptor(data=<{data}>, layout={layout}, size={self.size}, "
                f"stride={self.stride}, data_type={self.data_type!r}, flags={self.flags!r})")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_array(cls, array, layout=None, flags=NDArrayFlags.BACKPROP_SET):
        """A descriptor on a numpy array, without copying.

        The array's axes are the layout's logical indices in C notation (``[s][n][e]`` for
        SNE, ``[row][col]`` for both matrix layouts, ``[i_{n-1}]...[i0]`` for
        ``LAST_MAJOR_nD``). ``layout=None`` means ``VECTOR`` for 1-D arrays and
        ``FIRST_MAJOR_nD`` otherwise.
        """
        array = np.asarray(array)
        if array.dtype not in _DATA_TYPES:
            raise BNNSError(f"array: dtype {array.dtype} has no DataType")
        if layout is None:
            layout = DataLayout.VECTOR if array.ndim == 1 else DataLayout[f"FIRST_MAJOR_{array.ndim}D"]
        try:
            layout = DataLayout(layout)
        except ValueError:
            raise BNNSError(f"layout: {layout!r} is not a DataLayout") from None
        if array.ndim != layout.rank:
            raise BNNSError(f"array: {layout.name} needs {layout.rank} dimensions, the array has {array.ndim}")
        itemsize = array.dtype.itemsize
        strides = []
        for extent, step in zip(array.shape, array.strides):
            if extent == 1:
                step = 0  # normalised below to the default
            elif step < 0:
                raise BNNSError(f"array: negative stride {step} (reversed views are not supported)")
            elif step == 0:
                raise BNNSError("array: zero stride on an axis longer than 1 (broadcast views are not supported)")
            elif step % itemsize:
                raise BNNSError(f"array: stride {step} bytes is not a whole number of {itemsize}-byte elements")
            strides.append(step // itemsize)
        size_index, stride_index = _axis_maps(layout)
        size = [0] * layout.rank
        stride = [0] * layout.rank
        for axis, extent in enumerate(array.shape):
            size[size_index[axis]] = extent
            stride[stride_index[axis]] = strides[axis]
        stride = _fill_strides(layout, size, stride)
        span = 1 + sum((n - 1) * s for n, s in zip(array.shape, strides)) if array.size else 0
        flat = np.lib.stride_tricks.as_strided(array, shape=(span,), strides=(itemsize,),
                                               writeable=array.flags.writeable)
        return cls(flat, layout, tuple(size), tuple(stride), _DATA_TYPES[array.dtype], flags)

    # ------------------------------------------------------------------ views
    def logical_shape(self, default_shape=None):
        """The logical C-order shape, zero sizes taken from ``default_shape`` (aligned right)."""
        layout = _check_layout(self.layout, "layout")
        size = _padded(self.size, len(_AXIS_MAPS[layout][0]), "size")
        size_index, _ = _axis_maps(layout)
        shape = [size[k] for k in size_index]
        if default_shape is not None:
            offset = len(default_shape) - len(shape)
            for j, extent in enumerate(shape):
                if extent == 0 and 0 <= j + offset < len(default_shape):
                    shape[j] = default_shape[j + offset]
        return tuple(shape)

    def to_numpy(self, shape=None, field="descriptor", writable=False):
        """A numpy view of the logical index space, bounds-checked against the buffer.

        ``shape`` fills zero sizes. Raises :class:`BNNSError` naming ``field`` if any
        reachable element would lie outside the buffer, the buffer's element type is not
        ``data_type``, or ``writable`` is asked of a read-only buffer.
        """
        layout = _check_layout(self.layout, f"{field}.layout")
        shape = self.logical_shape(shape)
        if any(n < 0 for n in shape):
            raise BNNSError(f"{field}.size: negative size in {shape}")
        if any(n == 0 for n in shape):
            raise BNNSError(f"{field}.size: size {self.size} has a zero extent that nothing fills")
        dtype = numpy_dtype(self.data_type)
        flat = _flat_view(self.data, dtype, field, writable)
        size_index, stride_index = _axis_maps(layout)
        size = [0] * len(size_index)
        for axis, extent in enumerate(shape):
            size[size_index[axis]] = extent
        stride = _fill_strides(layout, size, _padded(self.stride, len(size_index), "stride", field))
        strides = [stride[k] for k in stride_index]
        last = sum((n - 1) * s for n, s in zip(shape, strides))
        if last >= flat.size:
            raise BNNSError(
                f"{field}: size {tuple(size)} with stride {tuple(stride)} reaches element {last} "
                f"but the buffer holds {flat.size}"
            )
        # flat is contiguous and the extent is checked: the plain constructor is the fast way
        view = np.ndarray(shape, dtype, flat, 0, [s * dtype.itemsize for s in strides])
        if not writable:
            view.flags.writeable = False
        return view


def _check_layout(layout, field):
    if isinstance(layout, bool) or layout not in _AXIS_MAPS:
        raise BNNSError(f"{field}: {layout!r} is not a DataLayout")
    return layout


def _padded(values, rank, name, field="descriptor"):
    values = tuple(values)
    if len(values) > 8:
        raise BNNSError(f"{field}.{name}: at most 8 entries, got {len(values)}")
    values = (values + (0,) * rank)[:rank]
    out = []
    for v in values:
        if type(v) is not int and (not isinstance(v, (int, np.integer)) or isinstance(v, bool)):
            raise BNNSError(f"{field}.{name}: entries must be integers, got {values}")
        if v < 0:
            raise BNNSError(f"{field}.{name}: entries must be non-negative, got {values}")
        if v > _MAX_OFFSET:
            raise BNNSError(f"{field}.{name}: entry {v} is too large")
        out.append(int(v))
    return out


def _fill_strides(layout, size, stride):
    """Replace zero strides by the contiguous default: each stride index steps the axis
    whose extent is ``size`` seen in stride order, and stride[k] = stride[k-1]*extent[k-1]."""
    size_index, stride_index = _axis_maps(layout)
    extent = [0] * len(size)
    for axis in range(len(size)):
        extent[stride_index[axis]] = size[size_index[axis]]
    filled = list(stride)
    for k in range(len(filled)):
        if filled[k] == 0:
            filled[k] = 1 if k == 0 else filled[k - 1] * max(extent[k - 1], 1)
        if filled[k] > _MAX_OFFSET:
            raise BNNSError(f"stride: default stride {filled[k]} is too large")
    return filled


def _flat_view(data, dtype, field, writable):
    """The buffer as a 1-D numpy array of ``dtype`` (no copy)."""
    if data is None:
        raise BNNSError(f"{field}.data: no buffer")
    try:
        view = memoryview(data)
    except TypeError:
        raise BNNSError(f"{field}.data: {type(data).__name__} does not export the buffer protocol") from None
    if writable and view.readonly:
        raise BNNSError(f"{field}.data: the buffer is read-only but this descriptor is written")
    if not view.c_contiguous:
        raise BNNSError(f"{field}.data: the buffer is not contiguous (use NDArrayDescriptor.from_array)")
    fmt = view.format.lstrip("@=<>!")
    if fmt in _RAW_FORMATS:
        count = view.nbytes // dtype.itemsize
        return np.frombuffer(view.cast("B"), dtype=dtype, count=count)
    try:
        given = np.dtype(view.format)
    except TypeError:
        given = None
    if given is None or given.kind != dtype.kind or given.itemsize != dtype.itemsize or not given.isnative:
        raise BNNSError(f"{field}.data: buffer format {view.format!r} does not match data_type {DataType(_DATA_TYPES[dtype]).name}")
    return np.frombuffer(view.cast("B"), dtype=dtype)
