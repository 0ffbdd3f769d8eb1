"""The training cache's layout (bnnslstm/_cache.py, docs/training_cache.rst): regions
disjoint, aligned and inside the capacity, its header, and the fingerprint that ties it
to the parameters that wrote it."""

import numpy as np
import pytest

import bnnslstm as bl
from helpers import Problem
from test_forward import CUSTOM


def params_for(T=4, B=3, I=5, H=6, L=2, bidirectional=True, dropout=0.0, activations=None,
               dtype=np.float32):
    return Problem(T=T, B=B, I=I, H=H, L=L, bidirectional=bidirectional, dropout=dropout,
                   activations=activations, dtype=dtype).params()[0]


@pytest.mark.parametrize("L,bidirectional,dropout,custom,dtype", [
    (1, False, 0.0, False, np.float32), (2, True, 0.0, False, np.float32),
    (3, True, 0.3, True, np.float64),
    (2, False, 0.5, False, np.float64), (1, True, 0.0, True, np.float32),
])
def test_regions_are_disjoint_aligned_and_inside(L, bidirectional, dropout, custom, dtype):
    params = params_for(L=L, bidirectional=bidirectional, dropout=dropout,
                        activations=CUSTOM if custom else None, dtype=dtype)
    regions = bl.training_cache_layout(params)
    capacity = bl.compute_lstm_training_cache_capacity(params)
    T, B, H, D = 4, 3, 6, 2 if bidirectional else 1
    itemsize = np.dtype(dtype).itemsize
    previous_end = 64
    for region in regions:
        assert region.offset % 64 == 0
        assert region.offset >= previous_end
        assert region.nbytes == int(np.prod(region.shape)) * itemsize
        previous_end = region.offset + region.nbytes
    assert previous_end == capacity
    names = [(r.name, r.layer) for r in regions]
    for layer in range(L):
        assert {("gates", layer), ("cells", layer), ("output", layer)} <= set(names)
        assert (("preact", layer) in names) == custom
        assert (("mask", layer) in names) == (layer > 0 and dropout > 0)
    shapes = {(r.name, r.layer): r.shape for r in regions}
    assert shapes["gates", 0] == (T, B, D, 4 * H)
    assert shapes["cells", L - 1] == (T, B, D, H)
    assert shapes["output", 0] == (T, B, D * H)


def test_capacity_formula():
    params = params_for(T=7, B=5, H=8, L=1, bidirectional=False)
    # header + gates (4H) + cells + act_h_c + output (H each), float32, each aligned to 64

    def align(n):
        return -(-n // 64) * 64

    sizes = [7 * 5 * 4 * 8 * 4] + [7 * 5 * 8 * 4] * 3
    offset = 64
    for size in sizes[:-1]:
        offset = align(offset + size)
    assert bl.compute_lstm_training_cache_capacity(params) == offset + sizes[-1]


def test_header_after_forward_and_values_in_regions():
    params = params_for()
    cache = bytearray(bl.compute_lstm_training_cache_capacity(params))
    bl.direct_apply_lstm_batch_training_caching(params, training_cache=cache)
    assert bytes(cache[:8]) == b"BNNSLSTM"
    regions = {(r.name, r.layer): r for r in bl.training_cache_layout(params)}
    gates = regions["gates", 0]
    values = np.frombuffer(cache, np.float32, int(np.prod(gates.shape)), gates.offset)
    values = values.reshape(gates.shape)
    assert np.all((values > 0) & (values < 1) | (np.abs(values) < 1))  # sigmoid / tanh outputs
    out = regions["output", 1]
    y = np.frombuffer(cache, np.float32, int(np.prod(out.shape)), out.offset).reshape(out.shape)
    np.testing.assert_array_equal(y, params.output_descriptor.data_desc.to_numpy())


def test_a_larger_cache_is_fine_and_writes_stay_inside_the_capacity():
    params = params_for()
    need = bl.compute_lstm_training_cache_capacity(params)
    cache = bytearray(b"\xee" * (need + 100))
    bl.direct_apply_lstm_batch_training_caching(params, training_cache=cache)
    assert cache[need:] == bytearray(b"\xee" * 100)


@pytest.mark.parametrize("L,dropout,refused", [(2, 0.0, False), (1, 0.5, False), (2, 0.5, True)])
def test_the_dropout_seed_counts_only_where_dropout_does(L, dropout, refused):
    """The cache's fingerprint holds dropout_seed only when dropout acts (p > 0 and L > 1):
    elsewhere a backward with another seed reads the cache and gives the same gradients;
    where dropout acts, another seed is another mask, and the cache is refused."""
    T, B, I, H = 3, 2, 4, 3
    problem = Problem(T=T, B=B, I=I, H=H, L=L, dropout=dropout, dropout_seed=5, seed=2)
    params, _, cache = problem.forward()
    dy = problem.rng.standard_normal((T, B, H))
    delta, grads = problem.backward(params, cache, dy=dy)
    expected = grads["dx"].copy()
    params.dropout_seed = 9
    if refused:
        with pytest.raises(bl.BNNSError,
                           match="training_cache: the cache was written for other parameters"):
            bl.direct_apply_lstm_batch_backward(params, delta, training_cache=cache)
        np.testing.assert_array_equal(grads["dx"], expected)  # nothing written
    else:
        grads["dx"][...] = np.nan
        bl.direct_apply_lstm_batch_backward(params, delta, training_cache=cache)
        np.testing.assert_array_equal(grads["dx"], expected)
