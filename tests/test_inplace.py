"""Descriptors read and written in place: every layout BLAS can address (row- or
column-major, padded) gives the reference's results without a per-call copy of the
weights, and only the one it cannot (no unit stride) is gathered per call."""

import tracemalloc

import numpy as np
import pytest

import bnnslstm as bl
from helpers import Problem, make_delta
from reference import GATES

L_ = bl.DataLayout
FIELDS = ("input_gate", "forget_gate", "candidate_gate", "output_gate")


def matrix(array, how):
    """A descriptor on an [H][X] matrix stored ``how``: row-major, column-major (the
    transpose's bytes, a transpose flag for BLAS), padded rows (a leading dimension), or
    with no unit stride at all (the only case the plan copies)."""
    rows, cols = array.shape
    if how == "row":
        return bl.NDArrayDescriptor.from_array(np.ascontiguousarray(array), L_.ROW_MAJOR_MATRIX)
    if how == "column":
        return bl.NDArrayDescriptor.from_array(np.asfortranarray(array), L_.COLUMN_MAJOR_MATRIX)
    if how == "padded":
        store = np.full((rows, cols + 3), np.nan, array.dtype)
        store[:, :cols] = array
        return bl.NDArrayDescriptor(store, L_.ROW_MAJOR_MATRIX, (cols, rows), (1, cols + 3),
                                    _type(array))
    if how == "spread":  # every other element of every other row: BLAS cannot read it
        store = np.full((2 * rows, 2 * cols), np.nan, array.dtype)
        store[::2, ::2] = array
        return bl.NDArrayDescriptor(store, L_.ROW_MAJOR_MATRIX, (cols, rows), (2, 4 * cols),
                                    _type(array))
    raise ValueError(how)


def _type(array):
    return bl.DataType.FLOAT64 if array.dtype == np.float64 else bl.DataType.FLOAT32


def with_weight_layouts(params, weights, how):
    """Replace every gate's W and U (L = D = 1) by matrix descriptors stored ``how``."""
    for gate, field in zip(GATES, FIELDS):
        g = getattr(params, field)
        g.iw_desc = (matrix(weights["W"][gate][0][0], how), None)
        g.hw_desc = matrix(weights["U"][gate][0, 0], how)


@pytest.mark.parametrize("how", ["row", "column", "padded", "spread"])
@pytest.mark.parametrize("x_layout", ["SNE", "NSE"])
def test_weights_in_every_matrix_layout_match_the_reference(how, x_layout):
    problem = Problem(T=5, B=3, I=6, H=4, peephole="diagonal", layout=x_layout, states=True,
                      seed=4)
    problem.c0 = None
    params, out = problem.params()
    with_weight_layouts(params, problem.weights, how)
    bl.direct_apply_lstm_batch_training_caching(params)
    y, h_n, _c_n, _ = problem.reference()
    np.testing.assert_allclose(problem.y(out), y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out["h_n"], h_n, rtol=1e-12, atol=1e-12)


def strided_sequence(array_tbx, pad):
    """A [T][B][X] sequence in a buffer with padding after every row and every step."""
    T, B, X = array_tbx.shape
    store = np.full((T, B + 1, X + pad), np.nan, array_tbx.dtype)
    store[:, :B, :X] = array_tbx
    strides = (1, X + pad, (B + 1) * (X + pad))
    return store, bl.NDArrayDescriptor(store, L_.SNE, (X, B, T), strides, _type(array_tbx))


@pytest.mark.parametrize("pad", [0, 2])
def test_strided_inputs_and_outputs_in_place(pad):
    """x, y and the states with padded rows and steps: x is read and y, h_T, c_T are
    written at their strides (and nothing between their elements is touched)."""
    T, B, H = 4, 3, 3
    problem = Problem(T=T, B=B, I=5, H=H, L=2, bidirectional=True, seed=5)
    params, _ = problem.params(outputs=False)
    _, params.input_descriptor.data_desc = strided_sequence(problem.x, pad)
    y_store, y_desc = strided_sequence(np.zeros((T, B, 2 * H)), pad)
    states = np.full((2, 2, B, H + pad), np.nan)  # [L][D][B][H] with padded rows
    strides = (1, H + pad, B * (H + pad), 2 * B * (H + pad))
    h_n = bl.NDArrayDescriptor(states, L_.FIRST_MAJOR_4D, (2, 2, B, H), strides,
                               bl.DataType.FLOAT64)
    params.output_descriptor = bl.LSTMDataDescriptor(y_desc, h_n, None)
    bl.direct_apply_lstm_batch_training_caching(params)
    y, h_ref, _, _ = problem.reference()
    np.testing.assert_allclose(y_store[:, :B, :2 * H], y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(states[..., :H], h_ref, rtol=1e-12, atol=1e-12)
    assert np.all(np.isnan(y_store[:, B])) and np.all(np.isnan(y_store[:, :, 2 * H:]))
    assert np.all(np.isnan(states[..., H:]))


@pytest.mark.parametrize("how", ["column", "padded", "spread"])
@pytest.mark.parametrize("flags", [bl.NDArrayFlags.BACKPROP_SET,
                                   bl.NDArrayFlags.BACKPROP_ACCUMULATE])
def test_gradients_written_in_place_in_every_matrix_layout(how, flags):
    """dW and dU written straight into column-major, padded or BLAS-unaddressable
    descriptors equal the gradients written into contiguous ones (set or accumulated)."""
    T, B, I, H = 5, 3, 4, 3
    problem = Problem(T=T, B=B, I=I, H=H, seed=6)
    params, _, cache = problem.forward()
    dy = problem.rng.standard_normal((T, B, H))
    delta, grads = problem.backward(params, cache, dy=dy, flags=flags, fill=0.5)
    for _gate, field in zip(GATES, FIELDS):
        start_w = np.full((H, I), 0.5)
        start_u = np.full((H, H), 0.5)
        dw, du = matrix(start_w, how), matrix(start_u, how)
        dw.flags = du.flags = flags
        g = getattr(delta, field)
        g.iw_desc = (dw, None)
        g.hw_desc = du
        g.b_desc = None
    bl.direct_apply_lstm_batch_backward(params, delta, training_cache=cache)
    for gate, field in zip(GATES, FIELDS):
        g = getattr(delta, field)
        np.testing.assert_allclose(g.iw_desc[0].to_numpy(), grads["W"][gate][0][0], rtol=1e-12,
                                   atol=1e-13)
        np.testing.assert_allclose(g.hw_desc.to_numpy(), grads["U"][gate][0, 0], rtol=1e-12,
                                   atol=1e-13)
        if how != "row":  # nothing written between the elements
            store = g.hw_desc.data
            assert np.isnan(store).sum() == store.size - H * H


def test_a_call_copies_no_weights():
    """Large column-major, padded and gate-separated weights: a warm forward + backward
    allocates (tracemalloc) less than 10 % of the weights' bytes."""
    T, B, I, H = 4, 2, 256, 256
    problem = Problem(T=T, B=B, I=I, H=H, dtype=np.float32, seed=7)
    weights = problem.weights
    params, _ = problem.params()
    # every gate its own array, layouts mixed
    for k, (gate, field) in enumerate(zip(GATES, FIELDS)):
        g = getattr(params, field)
        g.iw_desc = (matrix(weights["W"][gate][0][0], ("column", "padded")[k % 2]), None)
        g.hw_desc = matrix(weights["U"][gate][0, 0], ("padded", "column")[k % 2])
    weight_bytes = sum(2 * H * I * 4 for _ in GATES)
    cache = bytearray(bl.compute_lstm_training_cache_capacity(params))
    dy = problem.rng.standard_normal((T, B, H)).astype(np.float32)
    delta, _ = make_delta(params, weights, dy=dy)

    def call():
        bl.direct_apply_lstm_batch_training_caching(params, training_cache=cache)
        bl.direct_apply_lstm_batch_backward(params, delta, training_cache=cache)

    call()  # per-thread scratch is allocated once, then reused
    tracemalloc.start()
    try:
        call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.1 * weight_bytes, (peak, weight_bytes)


def test_spread_weights_are_the_only_ones_copied():
    """The one layout BLAS cannot address (no unit stride either way) is gathered per call:
    the same tracemalloc measure sees the copy, so the test above would notice copies."""
    I = H = 128
    problem = Problem(T=2, B=1, I=I, H=H, dtype=np.float32, seed=8)
    params, _ = problem.params()
    with_weight_layouts(params, problem.weights, "spread")
    bl.direct_apply_lstm_batch_training_caching(params)
    tracemalloc.start()
    try:
        bl.direct_apply_lstm_batch_training_caching(params)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak >= 8 * H * I * 4  # W and U of four gates, copied
