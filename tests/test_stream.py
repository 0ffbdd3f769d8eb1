"""Streaming (bnnslstm.LSTM.stream, bnnslstm/stream.py): a layer fed one frame at a time
gives what one call on the whole sequence gives, carries its state, resets, refuses what it
cannot do before writing anything, and allocates nothing per frame when given ``out``."""

import threading
import tracemalloc

import numpy as np
import pytest

import bnnslstm as bl

CONFIGS = {
    "plain": dict(),
    "stacked": dict(num_layers=3),
    "diagonal peepholes": dict(peephole="diagonal"),
    "full peepholes, no bias": dict(peephole="full", bias=False),
    "three-gate peepholes": dict(peephole="diagonal",
                                 peephole_gates=("input", "forget", "output")),
    "activations": dict(num_layers=2, gate_activations={"candidate": "softsign",
                                                        "forget": "silu"},
                        hidden_activation="relu6"),
    "float64": dict(num_layers=2, dtype=np.float64),
    "batch_first": dict(batch_first=True, num_layers=2),
}


def frames(layer, T=11, B=3, seed=0):
    """T frames [B][I] of the layer's type, and the same as the layer's x (batch_first or
    not)."""
    x = np.random.default_rng(seed).standard_normal((T, B, layer.input_size)).astype(layer.dtype)
    return x, (np.ascontiguousarray(x.transpose(1, 0, 2)) if layer.batch_first else x)


def tolerance(layer):
    return 1e-6 if layer.dtype == np.float32 else 1e-12


@pytest.mark.parametrize("name", CONFIGS)
def test_streamed_frames_equal_the_whole_sequence(name):
    """step() frame by frame, and run() on chunks of 1, 4 and 6 frames, against one
    forward call on the whole sequence: outputs and final states within 1e-6 (float32)."""
    layer = bl.LSTM(5, 6, seed=1, **CONFIGS[name])
    x, whole = frames(layer)
    rng = np.random.default_rng(3)
    L, B, H = layer.num_layers, 3, 6
    h0, c0 = (rng.standard_normal((L, B, H)).astype(layer.dtype) for _ in range(2))
    y, (h_n, c_n) = layer.forward(whole, h0, c0, training=False)
    y_steps = y.transpose(1, 0, 2) if layer.batch_first else y
    tol = tolerance(layer)
    stream = layer.stream(batch_size=B, h0=h0, c0=c0)
    out = np.empty((B, H), layer.dtype)
    for t in range(len(x)):
        got = stream.step(x[t], out)
        assert got is out
        np.testing.assert_allclose(out, y_steps[t], rtol=tol, atol=tol)
    np.testing.assert_allclose(stream.h, h_n, rtol=tol, atol=tol)
    np.testing.assert_allclose(stream.c, c_n, rtol=tol, atol=tol)
    stream.reset(h0, c0)
    axis = 1 if layer.batch_first else 0
    pieces, start = [], 0
    for size in (1, 4, 6):
        chunk = np.take(whole, range(start, start + size), axis=axis)
        pieces.append(stream.run(chunk))
        start += size
    np.testing.assert_allclose(np.concatenate(pieces, axis=axis), y, rtol=tol, atol=tol)
    np.testing.assert_allclose(stream.h, h_n, rtol=tol, atol=tol)


def test_state_and_reset():
    """A new stream starts from zeros (as forward without h0, c0); h and c are copies of
    the state; reset() starts again from zeros or from the states given."""
    layer = bl.LSTM(4, 3, num_layers=2, seed=0)
    x, _ = frames(layer, T=4, B=2)
    stream = layer.stream(batch_size=2)
    first = [stream.step(x[t]).copy() for t in range(4)]
    y, (h_n, c_n) = layer.forward(x, training=False)
    np.testing.assert_allclose(np.stack(first), y, atol=1e-6)
    h = stream.h
    h[...] = 7
    assert not np.array_equal(stream.h, h)   # a copy
    stream.reset()
    np.testing.assert_array_equal(stream.h, 0)
    np.testing.assert_array_equal(np.stack([stream.step(x[t]) for t in range(4)]),
                                  np.stack(first))
    stream.reset(h_n, c_n)
    np.testing.assert_array_equal(stream.h, h_n)
    np.testing.assert_array_equal(stream.c, c_n)


def test_refusals_write_nothing():
    """A bidirectional layer, a bad batch size, frames or outputs of another shape, type
    or layout, a bad state: BNNSError naming the argument, and the state unchanged."""
    with pytest.raises(bl.BNNSError, match="bidirectional layer cannot stream"):
        bl.LSTM(4, 3, bidirectional=True).stream()
    layer = bl.LSTM(4, 3, seed=0)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(bl.BNNSError, match="batch_size"):
            layer.stream(batch_size=bad)
    with pytest.raises(bl.BNNSError, match="h0: expected shape"):
        layer.stream(batch_size=2, h0=np.zeros((1, 3, 3), np.float32))
    stream = layer.stream(batch_size=2)
    stream.step(np.ones((2, 4), np.float32))
    h, c = stream.h, stream.c
    good_out = np.zeros((2, 3), np.float32)
    for x, out, name in [
            (np.ones((2, 5), np.float32), good_out, "x"),
            (np.ones((2, 4), np.float64), good_out, "x"),
            (np.ones((4, 4), np.float32)[::2], good_out, "x"),
            ([[1.0] * 4] * 2, good_out, "x"),
            (np.ones((2, 4), np.float32), np.zeros((2, 3), np.float64), "out"),
            (np.ones((2, 4), np.float32), np.zeros((3, 3), np.float32), "out"),
            (np.ones((2, 4), np.float32), np.zeros((2, 6), np.float32)[:, ::2], "out")]:
        before = out.copy() if isinstance(out, np.ndarray) else None
        with pytest.raises(bl.BNNSError, match=f"^{name}:"):
            stream.step(x, out)
        np.testing.assert_array_equal(stream.h, h)
        np.testing.assert_array_equal(stream.c, c)
        np.testing.assert_array_equal(out, before)
    readonly = np.zeros((2, 3), np.float32)
    readonly.flags.writeable = False
    with pytest.raises(bl.BNNSError, match="^out:"):
        stream.step(np.ones((2, 4), np.float32), readonly)
    with pytest.raises(bl.BNNSError, match="^x:"):
        stream.run(np.ones((3, 5, 4), np.float32))
    with pytest.raises(bl.BNNSError, match="^out:"):
        stream.run(np.ones((3, 2, 4), np.float32), np.zeros((3, 2, 3), np.float64))
    np.testing.assert_array_equal(stream.h, h)


def test_a_step_with_out_allocates_nothing():
    """100 frames with ``out`` given: no memory is kept and none is allocated beyond a few
    small Python objects (an output frame here is 2 KiB; the peak grows by far less)."""
    layer = bl.LSTM(64, 512, seed=0)
    stream = layer.stream()
    x = np.ones((1, 64), np.float32)
    out = np.empty((1, 512), np.float32)
    for _ in range(10):
        stream.step(x, out)
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(100):
            stream.step(x, out)
        now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert now - base <= 0, now - base
    assert peak - base < 512, peak - base


def test_weights_changed_between_frames_are_read():
    layer = bl.LSTM(3, 4, peephole="diagonal", seed=0)
    x = np.ones((1, 3), np.float32)
    stream = layer.stream()
    stream.step(x)
    for name in ("weight_ih_l0", "bias_l0", "weight_ch_l0"):
        layer.parameters()[name][...] *= -2
        stream.reset()
        got = stream.step(x)
        want, _ = layer.forward(x[None], training=False)
        np.testing.assert_allclose(got, want[0], atol=1e-6, err_msg=name)


def test_streams_of_one_layer_in_several_threads():
    """Four threads, each its own stream of one layer: each gives the frames a lone stream
    gives, bit for bit."""
    layer = bl.LSTM(16, 128, num_layers=2, seed=0)
    xs = [frames(layer, T=30, B=2, seed=k)[0] for k in range(4)]

    def streamed(x):
        stream = layer.stream(batch_size=2)
        return np.stack([stream.step(x[t]).copy() for t in range(len(x))])

    alone = [streamed(x) for x in xs]
    results = [None] * 4
    threads = [threading.Thread(target=lambda k=k: results.__setitem__(k, streamed(xs[k])))
               for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for got, want in zip(results, alone):
        np.testing.assert_array_equal(got, want)
