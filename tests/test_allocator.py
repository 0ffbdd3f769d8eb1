"""BNNS's FilterParameters (flags, n_threads, alloc_memory, free_memory): with allocator
callbacks every buffer a call needs beyond its arguments comes from alloc_memory and goes
back to free_memory before the call returns, also when it fails; a callback that raises or
returns an unusable buffer gives BNNSError with nothing written."""

import tracemalloc

import numpy as np
import pytest

import bnnslstm as bl
from helpers import Problem, planner_mode


class Pool:
    """A real-time style allocator: one block made up front, handed out in aligned pieces
    (nothing is allocated once made); counts what it gives and gets back."""

    def __init__(self, nbytes=1 << 25, misalign=0, short=0, fail_at=None, readonly=False):
        self.block = np.zeros(nbytes + 128, np.uint8)
        self.used, self.given, self.back = 0, [], []
        self.misalign, self.short, self.fail_at, self.readonly = misalign, short, fail_at, readonly

    def alloc(self, size, alignment):
        assert alignment == 64
        if self.fail_at is not None and len(self.given) == self.fail_at:
            raise MemoryError("pool exhausted")
        address = self.block.ctypes.data
        start = -(-(address + self.used) // alignment) * alignment - address + self.misalign
        piece = self.block[start:start + size - self.short]
        self.used = start + size
        if self.readonly:
            piece = piece.view()
            piece.flags.writeable = False
        self.given.append(piece)
        return piece

    def free(self, buffer):
        assert any(buffer is piece for piece in self.given), "not one of ours"
        assert not any(buffer is piece for piece in self.back), "given back twice"
        self.back.append(buffer)

    def params(self, **options):
        return bl.FilterParameters(alloc_memory=self.alloc, free_memory=self.free, **options)

    def balanced(self):
        return len(self.given) == len(self.back) and len(self.given) > 0


def problem(T=12, B=4, H=32, **options):
    return Problem(T=T, B=B, I=8, H=H, L=2, bidirectional=True, dtype=np.float32, seed=2,
                   **options)


@pytest.mark.parametrize("mode", ["measure", "heuristic"])
def test_forward_and_backward_take_every_buffer_from_the_callbacks(mode):
    """A forward without and with a training cache, a backward from the cache and one that
    recomputes: the results of the same calls without callbacks, bit for bit, and every
    buffer given back."""
    with planner_mode(mode):
        bl.planner.forget()
        p = problem(H=64)
        params, out, cache = p.forward()
        dy = np.random.default_rng(0).standard_normal((12, 4, 128)).astype(np.float32)
        _, grads = p.backward(params, cache, dy=dy)
        _, recomputed = p.backward(params, None, dy=dy)
        for with_cache in (False, True):
            pool = Pool()
            params2, out2 = p.params()
            cache2 = bytearray(len(cache)) if with_cache else None
            bl.direct_apply_lstm_batch_training_caching(params2, pool.params(),
                                                        training_cache=cache2)
            assert pool.balanced()
            np.testing.assert_array_equal(out2["y_store"], out["y_store"])
            pool = Pool()
            _, grads2 = p.backward(params2, cache2, pool.params(), dy=dy)
            assert pool.balanced()
            for name in ("dx", "dh0", "dc0"):
                np.testing.assert_array_equal(grads2[name], grads[name] if with_cache
                                              else recomputed[name])


def test_nothing_else_is_allocated_inside_a_call():
    """With the pool made up front, a forward's memory traced by Python (numpy's buffers
    included) grows by a few Python objects, not by the megabytes of scratch it uses."""
    with planner_mode("heuristic"):
        p = Problem(T=50, B=16, I=32, H=128, seed=1)
        params, _ = p.params()
        pool = Pool()
        bl.direct_apply_lstm_batch_training_caching(params, pool.params())   # warm up
        used = sum(piece.nbytes for piece in pool.given)
        assert used > 1 << 21
        pool = Pool()
        tracemalloc.start()
        try:
            base, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            bl.direct_apply_lstm_batch_training_caching(params, pool.params())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert pool.balanced()
        assert peak - base < used // 20, (peak - base, used)


@pytest.mark.parametrize("pool, message", [
    (Pool(fail_at=1), "alloc_memory: raised MemoryError: pool exhausted"),
    (Pool(short=8), "alloc_memory: returned .* bytes for a request of"),
    (Pool(misalign=8), "not a multiple of the alignment"),
    (Pool(readonly=True), "read-only"),
], ids=["raises", "short", "misaligned", "read-only"])
def test_a_bad_allocation_is_refused_with_nothing_written(pool, message):
    """An inference (its scratch: the regions it reads back, then the work; the pool fails
    at the second) refused, y untouched, every buffer given back (the bad one too)."""
    params, out = problem().params()
    with pytest.raises(bl.BNNSError, match=message):
        bl.direct_apply_lstm_batch_training_caching(params, pool.params())
    assert np.isnan(out["y_store"]).all()
    assert len(pool.back) == len(pool.given)


def test_free_memory_gets_every_buffer_even_when_it_raises():
    pool = Pool()
    raised = []

    def free(buffer):
        pool.free(buffer)
        if not raised:
            raised.append(buffer)
            raise RuntimeError("pool corrupt")

    params, _ = problem().params()
    with pytest.raises(bl.BNNSError, match="free_memory: raised RuntimeError: pool corrupt"):
        bl.direct_apply_lstm_batch_training_caching(
            params, bl.FilterParameters(alloc_memory=pool.alloc, free_memory=free))
    assert pool.balanced()


def test_filter_parameters_are_checked():
    params, out = problem().params()
    bad = [(bl.FilterParameters(flags=2), "filter_params.flags: 0x2 has bits other than"),
           (bl.FilterParameters(flags=-1), "filter_params.flags"),
           (bl.FilterParameters(n_threads=-1), "filter_params.n_threads"),
           (bl.FilterParameters(alloc_memory=bytearray), "alloc_memory, free_memory"),
           (bl.FilterParameters(alloc_memory=1, free_memory=2), "alloc_memory, free_memory"),
           ("fast", "filter_params: expected FilterParameters")]
    for filter_params, message in bad:
        with pytest.raises(bl.BNNSError, match=message):
            bl.direct_apply_lstm_batch_training_caching(params, filter_params)
        assert np.isnan(out["y_store"]).all()
    flagged = bl.FilterParameters(flags=bl.FilterFlags.USE_CLIENT_PTR, n_threads=1)
    bl.direct_apply_lstm_batch_training_caching(params, flagged)
    assert not np.isnan(out["y_store"]).any()
    assert bl.FilterParameters(1).flags == 1   # BNNS's order: flags first


def test_the_layer_and_the_stream_take_the_callbacks():
    """LSTM.forward/backward give every buffer back per call; a stream takes its buffers
    when made and gives them back at close(), and a step takes nothing."""
    layer = bl.LSTM(8, 32, num_layers=2, seed=0)
    x = np.random.default_rng(0).standard_normal((10, 3, 8)).astype(np.float32)
    want = layer.forward(x, training=True)[0].copy()
    want_dx = layer.backward(np.ones_like(want))[0]
    pool = Pool()
    for _ in range(2):   # the first call of a shape and a kept one
        y, _ = layer.forward(x, training=True, filter_params=pool.params())
        dx, _ = layer.backward(np.ones_like(y), filter_params=pool.params())
        assert pool.balanced()
        np.testing.assert_array_equal(y, want)
        np.testing.assert_array_equal(dx, want_dx)
    pool = Pool()
    stream = layer.stream(batch_size=3, filter_params=pool.params())
    made = len(pool.given)
    assert made > 0 and not pool.back
    out = np.empty((3, 32), np.float32)
    for t in range(10):
        stream.step(x[t], out)
    assert len(pool.given) == made
    np.testing.assert_allclose(out, layer.forward(x, training=False)[0][-1], atol=1e-6)
    stream.run(x[:5])
    assert len(pool.given) == len(pool.back) + made   # run's scratch: given back
    stream.close()
    assert pool.balanced()
    with pytest.raises(bl.BNNSError, match="closed"):
        stream.step(x[0], out)
