"""Lifetimes: what a call keeps alive while it runs and what it keeps afterwards.

A call holds the buffers it resolved until it returns, even when another thread replaces
them on the descriptor; afterwards neither the functions nor bnnslstm.LSTM keep a call's
arrays; a descriptor changed between calls is read anew; the layer's last training forward
survives a refused forward.
"""

import gc
import subprocess
import sys
import weakref

import numpy as np
import pytest

import bnnslstm as bl
from helpers import Problem

L_ = bl.DataLayout


_REPLACED_WHILE_RUNNING = """
import threading, time
import numpy as np
import bnnslstm as bl

bl.planner.set_mode("heuristic")  # every call the same BLAS arrangement: y compared bit for bit
T, B, I, H = 100, 16, 64, 256
rng = np.random.default_rng(0)
x = rng.standard_normal((T, B, I)).astype(np.float32)
params = bl.LayerParametersLSTM(input_size=I, hidden_size=H, batch_size=B, num_layers=1,
                                seq_len=T, lstm_flags=bl.LayerFlags.DEFAULT_ACTIVATIONS)
# owned by the descriptor
x_desc = bl.NDArrayDescriptor(x.copy().ravel(), bl.DataLayout.SNE, (I, B, T))
y = np.zeros((T, B, H), np.float32)
params.input_descriptor.data_desc = x_desc
params.output_descriptor.data_desc = bl.NDArrayDescriptor.from_array(y, bl.DataLayout.SNE)
for name in ("input_gate", "forget_gate", "candidate_gate", "output_gate"):
    w = rng.standard_normal((1, H, I)).astype(np.float32) * .1
    u = rng.standard_normal((1, 1, H, H)).astype(np.float32) * .1
    setattr(params, name, bl.LSTMGateDescriptor(iw_desc=(bl.NDArrayDescriptor.from_array(w), None),
                                                hw_desc=bl.NDArrayDescriptor.from_array(u)))
bl.direct_apply_lstm_batch_training_caching(params)
reference = y.copy()

def replace(desc, make, stop):
    while not stop.is_set():
        # the old buffer's last reference: freed (unmapped) unless the call keeps it
        desc.data = make()
        time.sleep(0.002)

# x replaced by equal copies while calls read it: every y is the reference
stop = threading.Event()
other = threading.Thread(target=replace, args=(x_desc, lambda: x.copy().ravel(), stop),
                         daemon=True)
other.start()
try:
    for _ in range(6):
        y[...] = np.nan
        bl.direct_apply_lstm_batch_training_caching(params)
        assert np.array_equal(y, reference), "x replaced by equal values changed y"
finally:
    stop.set(); other.join()

# y (owned by the descriptor) dropped and replaced while calls write it: no crash
y_desc = bl.NDArrayDescriptor(np.zeros(T * B * H, np.float32), bl.DataLayout.SNE, (H, B, T))
params.output_descriptor.data_desc = y_desc
stop = threading.Event()
other = threading.Thread(target=replace, args=(y_desc, lambda: None if rng.random() < 0.5 else
                                               np.zeros(T * B * H, np.float32), stop), daemon=True)
other.start()
try:
    for _ in range(6):
        try:
            bl.direct_apply_lstm_batch_training_caching(params)
        except bl.BNNSError as error:
            assert str(error).startswith("output_descriptor.data_desc.data: "), error  # no buffer
finally:
    stop.set(); other.join()
print("survived")
"""


def test_buffers_replaced_while_the_kernels_run_stay_alive(tmp_path):
    """Another thread replacing a descriptor's data while a call runs without the GIL: the
    call keeps the buffer export it resolved, so the kernels never touch freed memory (the
    replaced buffer would be unmapped under them), and equal replacements give equal
    results. In a child process, since the failure is a crash."""
    run = subprocess.run([sys.executable, "-c", _REPLACED_WHILE_RUNNING], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0 and "survived" in run.stdout, (run.returncode, run.stderr[-2000:])


def descriptors(value):
    """Every NDArrayDescriptor in a parameter set (or gate, data descriptor, pair)."""
    if isinstance(value, bl.NDArrayDescriptor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from descriptors(item)
    elif isinstance(value, (bl.LayerParametersLSTM, bl.LSTMDataDescriptor, bl.LSTMGateDescriptor)):
        for name in dir(value):
            if not name.startswith("_"):
                yield from descriptors(getattr(value, name))


def test_a_call_keeps_no_array_alive():
    """Once the parameters of a forward and a backward are gone, so is every array their
    descriptors held (inputs, weights, outputs, gradients), at once: the calls kept no
    reference and left no cycle."""
    problem = Problem(T=4, B=3, I=5, H=4, L=2, bidirectional=True, peephole="full", states=True)
    params, out, cache = problem.forward()
    delta, grads = problem.backward(params, cache, dy=np.ones((4, 3, 8)))
    arrays = {id(d.data): d.data for p in (params, delta) for d in descriptors(p)}
    assert len(arrays) >= 40  # every gate's four weights, the sequences and states, both calls
    gone = [weakref.ref(a) for a in arrays.values()]
    gc.disable()  # freed by their reference counts, not a later collection
    try:
        del problem, params, out, cache, delta, grads, arrays
        assert sum(ref() is not None for ref in gone) == 0
    finally:
        gc.enable()


def test_a_descriptor_given_other_strides_is_read_anew():
    """A descriptor read with tuple strides, then given a list (every other element: other
    weights, another y), then the very same tuple again: each call reads the strides the
    descriptor has then (the third gives the first's y bit for bit, no stale reading of
    the list's)."""
    problem = Problem(T=3, B=2, I=2, H=2, dtype=np.float32, states=True)
    params, out = problem.params()
    store = np.random.default_rng(1).standard_normal(16).astype(np.float32)
    store[:4] = problem.weights["U"]["input"][0, 0].ravel()  # [r][c] at c + 2r: stride (1, 2)
    hw = bl.NDArrayDescriptor(store, L_.ROW_MAJOR_MATRIX, (2, 2), (1, 2))
    params.input_gate.hw_desc = hw
    contiguous = hw.stride
    bl.direct_apply_lstm_batch_training_caching(params)
    first = out["y_store"].copy()
    np.testing.assert_allclose(first, problem.reference()[0], rtol=3e-6)
    hw.stride = [2, 4]
    bl.direct_apply_lstm_batch_training_caching(params)
    assert not np.array_equal(out["y_store"], first)
    hw.stride = contiguous  # the very same tuple object as the first call
    bl.direct_apply_lstm_batch_training_caching(params)
    np.testing.assert_array_equal(out["y_store"], first)


def test_a_refused_forward_leaves_the_last_training_forward_to_backward():
    """bnnslstm.LSTM: a training forward refused after its descriptors were pointed at its
    input leaves the previous training forward's cache and descriptors to backward()."""
    lstm = bl.LSTM(3, 4, seed=0)
    rng = np.random.default_rng(2)
    x1, x2 = (rng.standard_normal((5, 2, 3)).astype(np.float32) for _ in range(2))
    dy = rng.standard_normal((5, 2, 4)).astype(np.float32)
    lstm.forward(x1)
    expected = lstm.backward(dy)[0].copy(), lstm.grads["weight_ih_l0"].copy()
    lstm.forward(x1)
    with pytest.raises(bl.BNNSError, match="sequence_descriptor"):
        lstm.forward(x2, batch_sizes=[2, 2, 3, 1, 1])
    dx = lstm.backward(dy)[0]
    np.testing.assert_array_equal(dx, expected[0])
    np.testing.assert_array_equal(lstm.grads["weight_ih_l0"], expected[1])


def test_the_layer_keeps_no_call_array_alive_and_a_bounded_number_of_shapes():
    """bnnslstm.LSTM after 40 inference calls of 40 shapes: the last call's x and y are
    freed with their last reference, and the layer keeps descriptor sets for at most 16
    shapes."""
    lstm = bl.LSTM(4, 8, seed=0)
    for T in range(1, 41):
        x = np.ones((T, 2, 4), np.float32)
        y, _ = lstm.forward(x, training=False)
    gone = weakref.ref(x), weakref.ref(y)
    del x, y
    assert [ref() for ref in gone] == [None, None]
    assert len(lstm._calls.free) <= 16
