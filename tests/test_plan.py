"""Reading the parameters (bnnslstm/_plan.pyx): which logical shape each descriptor is read
as. The layout's rank decides the kind of a peephole (diagonal or full) and of iw_desc[0]
(layer 0 or every layer) before its zero sizes are filled from the scalars
(docs/layouts.rst, "Kind before fill"); the cases where the two orders would differ."""

import numpy as np
import pytest

import bnnslstm as bl
from helpers import DATA_TYPES, GATE_FIELDS, Problem, make_delta, y_time_major
from reference import lstm_forward
from reference_backward import lstm_backward

L_ = bl.DataLayout
TOLERANCE = {np.float32: 3e-6, np.float64: 1e-13}


def problem(I=2, H=2, L=1, D=1, T=3, B=2, peephole=None, dtype=np.float32, seed=0):
    """A problem with initial states (c0 non-zero: the peepholes matter):
    (params, out, weights, x, h0, c0)."""
    p = Problem(T=T, B=B, I=I, H=H, L=L, bidirectional=D == 2, peephole=peephole, dtype=dtype,
                states=True, seed=seed)
    return (*p.params(), p.weights, p.x, p.h0, p.c0)


def f64(buffer, layout, size):
    """A float64 descriptor on ``buffer``."""
    return bl.NDArrayDescriptor(buffer, layout, size, data_type=bl.DataType.FLOAT64)


def assert_y(out, weights, x, h0, c0, tol=1e-13):
    """The forward's y equals the reference's on these weights."""
    np.testing.assert_allclose(y_time_major(out, "SNE"), reference_y(weights, x, h0, c0),
                               rtol=tol, atol=tol)


def reference_y(weights, x, h0, c0, D=1):
    return lstm_forward(x, weights, h0, c0, bidirectional=D == 2)[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("buffer_length", [2, 4])
def test_rank3_peephole_with_zero_sizes_is_diagonal(dtype, buffer_length):
    """H=2, L=D=1: the forget gate's FIRST_MAJOR_3D peephole of sizes (0, 0, 0) is the
    diagonal [1][1][2] of its first two elements, not the full [[.3, -.2], [5, 5]]: a
    2-element buffer is enough, and a 4-element one's last two are not read."""
    params, out, weights, x, h0, c0 = problem(dtype=dtype)
    buffer = np.array([0.3, -0.2, 5, 5][:buffer_length], dtype)
    params.forget_gate.cw_desc = bl.NDArrayDescriptor(buffer, L_.FIRST_MAJOR_3D, (0, 0, 0),
                                                      data_type=DATA_TYPES[np.dtype(dtype)])
    bl.direct_apply_lstm_batch_training_caching(params)
    weights["C"]["forget"] = buffer[:2].reshape(1, 1, 2)
    assert_y(out, weights, x, h0, c0, TOLERANCE[dtype])


@pytest.mark.parametrize("size", [(0, 1, 2, 2), (0, 0, 0, 0), (2, 1, 2, 2)])
def test_rank4_input_weights_cover_every_layer_with_zero_sizes(size):
    """L=2, I = D*H = 2: a FIRST_MAJOR_4D iw_desc[0] (sizes partly 0, all 0 or written out)
    holds both layers' input weights, in the forward and as the backward's gradient
    (written in place, nothing after it)."""
    params, out, weights, x, h0, c0 = problem(L=2, dtype=np.float64)
    every = np.ascontiguousarray(np.stack([weights["W"]["input"][0], weights["W"]["input"][1]]))
    params.input_gate.iw_desc = (f64(every.ravel(), L_.FIRST_MAJOR_4D, size), None)
    cache = bytearray(bl.compute_lstm_training_cache_capacity(params))
    bl.direct_apply_lstm_batch_training_caching(params, training_cache=cache)
    assert_y(out, weights, x, h0, c0)

    dy = np.random.default_rng(5).standard_normal(out["y_store"].shape)
    delta, _ = make_delta(params, weights, dy=dy)
    d_every = np.full(every.size + 3, 7.0)  # 3 trailing elements that must stay untouched
    delta.input_gate.iw_desc = (f64(d_every, L_.FIRST_MAJOR_4D, size), None)
    bl.direct_apply_lstm_batch_backward(params, delta, training_cache=cache)
    want = lstm_backward(x, weights, h0, c0, dy=dy)["dW"]["input"]
    np.testing.assert_allclose(d_every[:every.size].reshape(every.shape), np.stack(want),
                               rtol=1e-12, atol=1e-13)
    assert np.all(d_every[every.size:] == 7.0)


def test_rank4_input_weights_that_cannot_cover_every_layer_are_refused():
    params, out, *_ = problem(I=3, L=2, dtype=np.float64)
    params.input_gate.iw_desc = (f64(np.zeros(24), L_.FIRST_MAJOR_4D, (0, 1, 2, 3)), None)
    before = out["y_store"].copy()
    match = (r"input_gate.iw_desc\[0\]: a rank-4 layout covers every layer, which needs "
             r"input_size == D\*hidden_size \(3 != 2\)")
    with pytest.raises(bl.BNNSError, match=match):
        bl.direct_apply_lstm_batch_training_caching(params)
    np.testing.assert_array_equal(out["y_store"], before)


@pytest.mark.parametrize("layout", [L_.ROW_MAJOR_MATRIX, L_.COLUMN_MAJOR_MATRIX,
                                    L_.FIRST_MAJOR_2D, L_.FIRST_MAJOR_4D],
                         ids=lambda layout: layout.name)
@pytest.mark.parametrize("delta_layout", [L_.ROW_MAJOR_MATRIX, L_.FIRST_MAJOR_4D,
                                          L_.LAST_MAJOR_4D], ids=lambda layout: layout.name)
def test_one_by_one_full_peephole_stays_full(layout, delta_layout):
    """H=L=D=1: a 1x1 peephole of any matrix or rank-4 layout is full, and its gradient in
    any layout of the full kind (ROW_MAJOR_MATRIX, FIRST_MAJOR_4D or LAST_MAJOR_4D of
    extents 1) is accepted and written. A full 1x1 peephole computes what a diagonal one
    does."""
    params, out, weights, x, h0, c0 = problem(I=1, H=1, dtype=np.float64,
                                              peephole={"output": "full"})
    value = weights["C"]["output"]  # [1][1][1][1]
    params.output_gate.cw_desc = f64(value.ravel(), layout, (1,) * layout.rank)
    cache = bytearray(bl.compute_lstm_training_cache_capacity(params))
    bl.direct_apply_lstm_batch_training_caching(params, training_cache=cache)
    assert_y(out, weights, x, h0, c0)
    dy = np.random.default_rng(6).standard_normal(out["y_store"].shape)
    delta, _ = make_delta(params, weights, dy=dy)
    dC = np.zeros(1)
    delta.output_gate.cw_desc = f64(dC, delta_layout, (1,) * delta_layout.rank)
    bl.direct_apply_lstm_batch_backward(params, delta, training_cache=cache)
    want = lstm_backward(x, weights, h0, c0, dy=dy)["dC"]["output"]
    assert dC[0] == pytest.approx(want.item(), rel=1e-12) and dC[0] != 0


def test_peephole_gradient_of_the_other_kind_is_refused():
    params, out, weights, *_ = problem(I=1, H=1, dtype=np.float64,
                                       peephole={"output": "diagonal"})
    params.output_gate.cw_desc = f64(weights["C"]["output"].ravel(), L_.FIRST_MAJOR_3D, (1, 1, 1))
    cache = bytearray(bl.compute_lstm_training_cache_capacity(params))
    bl.direct_apply_lstm_batch_training_caching(params, training_cache=cache)
    delta, grads = make_delta(params, weights, dy=np.ones(out["y_store"].shape), fill=7.0)
    dC = np.full(1, 7.0)
    delta.output_gate.cw_desc = f64(dC, L_.ROW_MAJOR_MATRIX, (1, 1))
    match = "layer_delta_params.output_gate.cw_desc: the forward's gate has a diagonal"
    with pytest.raises(bl.BNNSError, match=match):
        bl.direct_apply_lstm_batch_backward(params, delta, training_cache=cache)
    assert dC[0] == 7.0 and np.all(grads["dx"] == 7.0)


@pytest.mark.parametrize("layout,size,match", [
    (L_.FIRST_MAJOR_3D, (2, 2, 2),
     r"logical shape \(2, 2, 2\) does not match \(1, 2, 2\) \(a diagonal peephole"),
    (L_.ROW_MAJOR_MATRIX, (2, 2),
     r"logical shape \(2, 2\) does not match \(1, 2, 2, 2\) \(a full peephole"),
], ids=["rank-3", "matrix"])
def test_peephole_rank_decides_the_kind_and_the_message_says_so(layout, size, match):
    """L=1, D=2, H=2: a rank-3 peephole is [L][D][H] even when its sizes would fit
    [D][H][H]; a matrix is one [H][H] (L = D = 1)."""
    params, out, *_ = problem(D=2, dtype=np.float64)
    params.input_gate.cw_desc = f64(np.zeros(8), layout, size)
    before = out["y_store"].copy()
    with pytest.raises(bl.BNNSError, match="input_gate.cw_desc: " + match):
        bl.direct_apply_lstm_batch_training_caching(params)
    np.testing.assert_array_equal(out["y_store"], before)


@pytest.mark.parametrize("kind,layouts", [
    ("diagonal", [L_.VECTOR, L_.FIRST_MAJOR_1D, L_.FIRST_MAJOR_3D, L_.LAST_MAJOR_3D]),
    ("full", [L_.ROW_MAJOR_MATRIX, L_.COLUMN_MAJOR_MATRIX, L_.LAST_MAJOR_2D, L_.FIRST_MAJOR_4D,
              L_.LAST_MAJOR_4D, L_.FIRST_MAJOR_5D]),
])
def test_every_rank_reads_as_its_kind_with_zero_sizes(kind, layouts):
    """H=3, L=D=1: each layout of a kind, all sizes 0, gives the reference's result."""
    params, out, weights, x, h0, c0 = problem(I=2, H=3, dtype=np.float64,
                                              peephole=dict.fromkeys(GATE_FIELDS, kind))
    want = reference_y(weights, x, h0, c0)
    for layout in layouts:
        for gate, field in GATE_FIELDS.items():
            C = weights["C"][gate].reshape((3, 3) if kind == "full" else (3,))
            # column-major: transposed
            stored = C.ravel(order="F" if layout == L_.COLUMN_MAJOR_MATRIX else "C")
            getattr(params, field).cw_desc = f64(stored, layout, (0,) * layout.rank)
        out["y_store"][...] = np.nan
        if layout.rank == 5:  # a rank above 4 has leading extents of 1, which no scalar fills
            for field in GATE_FIELDS.values():
                getattr(params, field).cw_desc.size = (1, 0, 0, 0, 0)
        bl.direct_apply_lstm_batch_training_caching(params)
        np.testing.assert_allclose(y_time_major(out, "SNE"), want, rtol=1e-13, atol=1e-13,
                                   err_msg=layout.name)
