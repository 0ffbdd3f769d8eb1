"""NDArray descriptors (bnnslstm/_descriptor.pyx): the index mapping of every layout
(docs/layouts.rst), from_array, bounds safety."""

import array
import itertools

import numpy as np
import pytest
from bnnslstm._descriptor import _fill_strides
from hypothesis import given, settings
from hypothesis import strategies as st

import bnnslstm as bl

L = bl.DataLayout


def documented_offset(layout, size, stride, index):
    """The index mapping of docs/layouts.rst, written out per layout: the offset of a
    logical (C-order) index."""
    s = stride
    if layout in (L.VECTOR, L.LAST_MAJOR_1D, L.FIRST_MAJOR_1D):
        return index[0] * s[0]
    if layout == L.ROW_MAJOR_MATRIX:
        r, c = index
        return c * s[0] + r * s[1]
    if layout == L.COLUMN_MAJOR_MATRIX:
        r, c = index
        return r * s[0] + c * s[1]
    if layout == L.SNE:
        t, n, e = index
        return e * s[0] + n * s[1] + t * s[2]
    if layout == L.NSE:
        n, t, e = index
        return e * s[0] + t * s[1] + n * s[2]
    if layout.name.startswith("FIRST_MAJOR"):
        return sum(i * s[len(index) - 1 - k] for k, i in enumerate(index))
    # LAST_MAJOR: [i_{n-1}]...[i0]
    return sum(i * s[len(index) - 1 - k] for k, i in enumerate(index))


def documented_shape(layout, size):
    if layout == L.COLUMN_MAJOR_MATRIX or layout.name.startswith("FIRST_MAJOR"):
        return tuple(size)
    return tuple(reversed(size))


LAYOUTS = [L.VECTOR, L.ROW_MAJOR_MATRIX, L.COLUMN_MAJOR_MATRIX, L.SNE, L.NSE] + \
    [L[f"FIRST_MAJOR_{n}D"] for n in range(1, 9)] + [L[f"LAST_MAJOR_{n}D"] for n in range(1, 9)]


def small_size(layout, rng):
    n = layout.rank
    return tuple(int(v) for v in rng.integers(1, 4 if n <= 4 else 3, size=n))


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda l: l.name)
@pytest.mark.parametrize("strided", [False, True])
def test_every_element_sits_where_its_layout_says(layout, strided):
    rng = np.random.default_rng(layout.value)
    size = small_size(layout, rng)
    if strided:
        stride = tuple(int(v) for v in rng.integers(1, 7, size=layout.rank))
    else:  # zero strides: the contiguous default
        stride = (0,) * layout.rank
    filled = _fill_strides(layout, list(size), list(stride))
    shape = documented_shape(layout, size)
    span = 1 + documented_offset(layout, size, filled, tuple(n - 1 for n in shape))
    buffer = np.arange(span, dtype=np.float32)
    view = bl.NDArrayDescriptor(buffer, layout, size, stride).to_numpy()
    assert view.shape == shape
    for index in itertools.product(*map(range, shape)):
        assert view[index] == documented_offset(layout, size, filled, index)
    if not strided:  # default strides are contiguous: every element of the buffer is used once
        assert sorted(view.ravel().tolist()) == list(range(span))


def test_default_strides_per_layout():
    assert _fill_strides(L.ROW_MAJOR_MATRIX, [3, 2], [0, 0]) == [1, 3]
    assert _fill_strides(L.COLUMN_MAJOR_MATRIX, [2, 3], [0, 0]) == [1, 2]
    assert _fill_strides(L.SNE, [4, 3, 2], [0, 0, 0]) == [1, 4, 12]
    assert _fill_strides(L.FIRST_MAJOR_3D, [2, 3, 4], [0, 0, 0]) == [1, 4, 12]
    assert _fill_strides(L.LAST_MAJOR_3D, [2, 3, 4], [0, 0, 0]) == [1, 2, 6]
    assert _fill_strides(L.SNE, [4, 3, 2], [1, 8, 0]) == [1, 8, 24]  # padded rows, default outer


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(LAYOUTS[:8] + LAYOUTS[13:16]), st.data())
def test_random_strides_map_as_documented(layout, data):
    size = tuple(data.draw(st.integers(1, 4)) for _ in range(layout.rank))
    stride = tuple(data.draw(st.integers(0, 9)) for _ in range(layout.rank))
    filled = _fill_strides(layout, list(size), list(stride))
    shape = documented_shape(layout, size)
    last = documented_offset(layout, size, filled, tuple(n - 1 for n in shape))
    flat = np.arange(last + 1 + data.draw(st.integers(0, 3)), dtype=np.float64)
    view = bl.NDArrayDescriptor(flat, layout, size, stride, bl.DataType.FLOAT64).to_numpy()
    index = tuple(data.draw(st.integers(0, n - 1)) for n in shape)
    assert view[index] == documented_offset(layout, size, filled, index)
    short = bl.NDArrayDescriptor(flat[:last], layout, size, stride, bl.DataType.FLOAT64)
    with pytest.raises(bl.BNNSError, match=f"reaches element {last} but the buffer holds {last}"):
        short.to_numpy()


@pytest.mark.parametrize("make", [
    lambda a: a, lambda a: a.T, lambda a: a[:, ::2], lambda a: a[::2, 1:], lambda a: a[None],
    lambda a: a[:, :, None], lambda a: np.asfortranarray(a),
], ids=["plain", "transposed", "every-other-column", "every-other-row", "leading-1", "trailing-1",
        "fortran"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_from_array_views_without_copy(make, dtype):
    base = np.arange(48, dtype=dtype).reshape(6, 8)
    a = make(base)
    d = bl.NDArrayDescriptor.from_array(a)
    view = d.to_numpy()
    np.testing.assert_array_equal(view, a)
    assert np.shares_memory(view, a)


def test_from_array_layouts_read_axes_as_logical_indices():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    for layout in (L.SNE, L.NSE, L.FIRST_MAJOR_3D, L.LAST_MAJOR_3D):
        d = bl.NDArrayDescriptor.from_array(a, layout)
        np.testing.assert_array_equal(d.to_numpy(), a)
    assert bl.NDArrayDescriptor.from_array(a, L.SNE).size == (4, 3, 2)
    assert bl.NDArrayDescriptor.from_array(a, L.FIRST_MAJOR_3D).size == (2, 3, 4)
    assert bl.NDArrayDescriptor.from_array(a, L.FIRST_MAJOR_3D).stride == (1, 4, 12)
    m = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    d = bl.NDArrayDescriptor.from_array(m, L.COLUMN_MAJOR_MATRIX)
    assert d.size == (2, 3) and d.stride == (1, 2)
    np.testing.assert_array_equal(d.to_numpy(), m)


@pytest.mark.parametrize("buffer_kind", ["bytearray", "array", "memoryview", "numpy"])
def test_hand_built_descriptors_on_any_buffer(buffer_kind):
    values = np.arange(12, dtype=np.float32)
    buffer = {"bytearray": bytearray(values.tobytes()), "array": array.array("f", values.tolist()),
              "memoryview": memoryview(bytearray(values.tobytes())), "numpy": values}[buffer_kind]
    # 3 rows of 2, every other column
    d = bl.NDArrayDescriptor(buffer, L.ROW_MAJOR_MATRIX, (2, 3), (2, 4))
    np.testing.assert_array_equal(d.to_numpy(), [[0, 2], [4, 6], [8, 10]])


def test_zero_sizes_are_filled_from_the_parameters():
    d = bl.NDArrayDescriptor(np.zeros(24, np.float32), L.SNE, (4, 0, 0))
    assert d.logical_shape((2, 3, 4)) == (2, 3, 4)
    assert d.to_numpy((2, 3, 4)).shape == (2, 3, 4)
    with pytest.raises(bl.BNNSError, match="zero extent that nothing fills"):
        d.to_numpy()


def test_from_array_of_an_empty_array_keeps_its_sizes_with_default_strides():
    """numpy gives an empty array zero strides: they are not a broadcast view's (a size of 0
    then means "from the scalars")."""
    d = bl.NDArrayDescriptor.from_array(np.zeros((0, 2, 3), np.float32), L.SNE)
    assert (tuple(d.size), tuple(d.stride)) == ((3, 2, 0), (1, 3, 6))
    d = bl.NDArrayDescriptor.from_array(np.zeros((4, 0), np.float32), L.ROW_MAJOR_MATRIX)
    assert tuple(d.size) == (0, 4)


@pytest.mark.parametrize("make,match", [
    (lambda: bl.NDArrayDescriptor.from_array(np.arange(4.0)[::-1]), "negative stride"),
    (lambda: bl.NDArrayDescriptor.from_array(np.broadcast_to(np.arange(3.0), (4, 3))),
     "zero stride"),
    (lambda: bl.NDArrayDescriptor.from_array(np.zeros(4, np.float16)), "has no DataType"),
    (lambda: bl.NDArrayDescriptor.from_array(np.zeros((2, 2)), L.SNE), "needs 3 dimensions"),
    (lambda: bl.NDArrayDescriptor.from_array(
        np.ndarray((2,), np.float32, np.zeros(12, np.uint8).data, 0, (6,))),
     "not a whole number"),
])
def test_from_array_refusals(make, match):
    with pytest.raises(bl.BNNSError, match=match):
        make()


@pytest.mark.parametrize("size,stride", [((2**62,), ()), ((2**70,), ()), ((5,), (2**62,)),
                                         ((3, 2**40), (1, 2**40))])
def test_huge_sizes_and_strides_are_refused_without_overflow(size, stride):
    layout = L.VECTOR if len(size) == 1 else L.ROW_MAJOR_MATRIX
    d = bl.NDArrayDescriptor(np.zeros(8, np.float32), layout, size, stride)
    with pytest.raises(bl.BNNSError):
        d.to_numpy(field="input_gate.hw_desc")


def test_a_default_stride_too_large_names_the_field_and_the_exact_stride():
    """(2**31, 2**31, 2**31, 4): the fourth axis's default stride is 2**93, said as such with
    the field's name (exactly: not a product wrapped around 64 bits)."""
    d = bl.NDArrayDescriptor(np.zeros(8, np.int32), L.LAST_MAJOR_4D, (2**31, 2**31, 2**31, 4),
                             data_type=bl.DataType.INT32)
    match = rf"^input_gate.hw_desc.stride: default stride {2**93} is too large$"
    with pytest.raises(bl.BNNSError, match=match):
        d.to_numpy(field="input_gate.hw_desc")
    params = bl.LayerParametersLSTM(input_size=2, hidden_size=2, batch_size=1, num_layers=1,
                                    seq_len=2, lstm_flags=bl.LayerFlags.DEFAULT_ACTIVATIONS,
                                    sequence_descriptor=d)
    params.input_descriptor.data_desc = bl.NDArrayDescriptor.from_array(
        np.ones((2, 1, 2), np.float32), L.SNE)
    for name in ("input_gate", "forget_gate", "candidate_gate", "output_gate"):
        setattr(params, name, bl.LSTMGateDescriptor(
            iw_desc=(bl.NDArrayDescriptor.from_array(np.ones((1, 2, 2), np.float32)), None),
            hw_desc=bl.NDArrayDescriptor.from_array(np.ones((1, 1, 2, 2), np.float32))))
    match = rf"^sequence_descriptor.stride: default stride {2**93} is too large$"
    with pytest.raises(bl.BNNSError, match=match):
        bl.direct_apply_lstm_batch_training_caching(params)


def test_type_and_writability_checks():
    d = bl.NDArrayDescriptor(np.zeros(4), L.VECTOR, (4,), data_type=bl.DataType.FLOAT32)
    with pytest.raises(bl.BNNSError,
                       match=r"x.data: buffer format 'd' does not match data_type FLOAT32"):
        d.to_numpy(field="x")
    frozen = np.zeros(4, np.float32)
    frozen.flags.writeable = False
    ro = bl.NDArrayDescriptor(frozen, L.VECTOR, (4,))
    assert ro.to_numpy().shape == (4,)
    with pytest.raises(bl.BNNSError,
                       match="y.data: the buffer is read-only but this descriptor is written"):
        ro.to_numpy(field="y", writable=True)
    with pytest.raises(bl.BNNSError, match="read-only"):
        bl.NDArrayDescriptor(bytes(16), L.VECTOR, (4,)).to_numpy(writable=True)
    with pytest.raises(bl.BNNSError, match="is not a DataLayout"):
        bl.NDArrayDescriptor(bytearray(16), 0x12345, (4,)).to_numpy()
    with pytest.raises(bl.BNNSError, match="at most 8 entries"):
        bl.NDArrayDescriptor(bytearray(16), L.VECTOR, (1,) * 9).to_numpy()
    with pytest.raises(bl.BNNSError, match="no buffer"):
        bl.NDArrayDescriptor(None, L.VECTOR, (4,)).to_numpy()
    with pytest.raises(bl.BNNSError, match="does not export the buffer protocol"):
        bl.NDArrayDescriptor([1.0, 2.0], L.VECTOR, (2,)).to_numpy()


def test_to_numpy_views_share_memory_with_the_buffer():
    buffer = bytearray(np.arange(6, dtype=np.float32).tobytes())
    view = bl.NDArrayDescriptor(buffer, L.ROW_MAJOR_MATRIX, (3, 2)).to_numpy(writable=True)
    view[1, 2] = 42
    assert np.frombuffer(buffer, np.float32)[5] == 42
