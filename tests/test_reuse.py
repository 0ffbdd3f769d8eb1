"""The BNNS-style functions called again with the same parameters objects reuse the last
call's plan while nothing it was made from has changed (bnnslstm/lstm.py, _reusable_plan:
every object, value, flag and descriptor resolution the plan read). Anything changed in
between is seen: new data in the same arrays, new arrays, new sizes, strides or
activations, outputs made read-only, another cache."""

import numpy as np
import pytest

import bnnslstm as bl
from helpers import Problem


def fresh_result(problem):
    """y of the problem's parameters built anew (another parameters object)."""
    params, out = problem.params()
    bl.direct_apply_lstm_batch_training_caching(params)
    return out["y_store"].copy()


def test_repeated_calls_see_every_change():
    problem = Problem(T=6, B=3, I=4, H=5, L=2, peephole="diagonal", dtype=np.float32, seed=4)
    params, out = problem.params()
    for _ in range(3):   # the same call again: the same result
        bl.direct_apply_lstm_batch_training_caching(params)
        np.testing.assert_array_equal(out["y_store"], fresh_result(problem))
    # new data written into the same arrays, x and a weight
    problem.x[...] = np.random.default_rng(1).standard_normal(problem.x.shape)
    problem.weights["U"]["forget"][...] *= -1
    problem.weights["C"]["input"][...] *= 3
    bl.direct_apply_lstm_batch_training_caching(params)
    np.testing.assert_array_equal(out["y_store"], fresh_result(problem))
    # a new array behind the input descriptor
    new_x = problem.x * 2
    params.input_descriptor.data_desc.data = new_x
    bl.direct_apply_lstm_batch_training_caching(params)
    problem.x = new_x
    np.testing.assert_array_equal(out["y_store"], fresh_result(problem))
    # an activation changed in place, then the flags
    params.lstm_flags = int(params.lstm_flags) & ~int(bl.LayerFlags.DEFAULT_ACTIVATIONS)
    for name in ("input_gate", "forget_gate", "output_gate"):
        getattr(params, name).activation = bl.Activation(bl.ActivationFunction.SIGMOID)
    params.candidate_gate.activation = bl.Activation(bl.ActivationFunction.TANH)
    params.hidden_activation = bl.Activation(bl.ActivationFunction.TANH)
    bl.direct_apply_lstm_batch_training_caching(params)
    before = out["y_store"].copy()
    np.testing.assert_allclose(before, fresh_result(problem), atol=1e-6)
    params.candidate_gate.activation.function = bl.ActivationFunction.SOFTSIGN
    bl.direct_apply_lstm_batch_training_caching(params)
    problem.activations = {"input": (3, 0, 0), "forget": (3, 0, 0), "candidate": (17, 0, 0),
                           "output": (3, 0, 0), "hidden": (4, 0, 0)}
    np.testing.assert_array_equal(out["y_store"], fresh_result(problem))
    assert not np.allclose(out["y_store"], before)


def test_a_changed_layout_or_size_is_checked_again():
    problem = Problem(T=4, B=2, I=3, H=4, dtype=np.float32, seed=2)
    params, out = problem.params()
    bl.direct_apply_lstm_batch_training_caching(params)
    params.seq_len = 5     # the descriptors hold 4 steps
    with pytest.raises(bl.BNNSError, match="seq_len|size"):
        bl.direct_apply_lstm_batch_training_caching(params)
    params.seq_len = 4
    desc = params.input_descriptor.data_desc
    desc.stride = (desc.stride[0], desc.stride[1], 7)   # past the buffer
    with pytest.raises(bl.BNNSError, match="input_descriptor.data_desc"):
        bl.direct_apply_lstm_batch_training_caching(params)


def test_outputs_made_read_only_and_another_cache_are_refused():
    problem = Problem(T=4, B=2, I=3, H=4, dtype=np.float32, seed=2)
    params, out = problem.params()
    cache = bytearray(bl.compute_lstm_training_cache_capacity(params))
    bl.direct_apply_lstm_batch_training_caching(params, training_cache=cache)
    out["y_store"].flags.writeable = False
    with pytest.raises(bl.BNNSError, match="read-only"):
        bl.direct_apply_lstm_batch_training_caching(params, training_cache=cache)
    out["y_store"].flags.writeable = True
    # a cache that is the input's own memory: the overlap check runs again for a new cache
    x_bytes = problem.x.view(np.uint8).reshape(-1)
    big = np.zeros(len(cache) + x_bytes.nbytes, np.uint8)
    params.input_descriptor.data_desc.data = big[:x_bytes.nbytes].view(np.float32).reshape(
        problem.x.shape)
    with pytest.raises(bl.BNNSError, match="training_cache: shares memory"):
        bl.direct_apply_lstm_batch_training_caching(params, training_cache=big)


def test_backward_reuses_its_plan_with_the_same_gradients():
    problem = Problem(T=5, B=2, I=3, H=4, L=2, dtype=np.float64, seed=3)
    params, out, cache = problem.forward()
    dy = np.ones((5, 2, 4))
    delta, grads = problem.backward(params, cache, dy=dy)
    first = grads["dx"].copy()
    for _ in range(2):
        bl.direct_apply_lstm_batch_backward(params, delta, training_cache=cache)
        np.testing.assert_array_equal(grads["dx"], first)
    delta.output_descriptor.data_desc.data = np.full((5, 2, 4), 2.0)
    bl.direct_apply_lstm_batch_backward(params, delta, training_cache=cache)
    np.testing.assert_allclose(grads["dx"], 2 * first, rtol=1e-12)


def test_a_plan_reading_copies_is_never_reused():
    """Weights BLAS cannot address are read through a copy made per call: a change to them
    between two calls is seen (a kept plan would hold the first call's copy)."""
    from test_inplace import with_weight_layouts

    problem = Problem(T=3, B=2, I=4, H=4, dtype=np.float32, seed=8)
    params, out = problem.params()
    with_weight_layouts(params, problem.weights, "spread")
    bl.direct_apply_lstm_batch_training_caching(params)
    first = out["y_store"].copy()
    spread = params.forget_gate.hw_desc.to_numpy(writable=True)
    spread *= -1
    bl.direct_apply_lstm_batch_training_caching(params)
    assert not np.allclose(out["y_store"], first)
