"""Messages that name the field at fault and say how to fix it (the raw API's rough edges)."""

import numpy as np
import pytest

import bnnslstm as bl
from helpers import Problem, make_delta


def params_for(T=5, B=2, I=3, H=4, L=1, dtype=np.float32, x_dtype=None):
    problem = Problem(T=T, B=B, I=I, H=H, L=L, dtype=dtype)
    if x_dtype is not None:
        problem.x = problem.x.astype(x_dtype)
    return problem.params()


def test_iw_desc_not_a_pair():
    params, out = params_for()
    single = params.forget_gate.iw_desc[0]
    params.forget_gate.iw_desc = single
    match = (r"^forget_gate.iw_desc: expected a pair \(layer 0's input weights, "
             r"layers 1...L-1's or None\), got NDArrayDescriptor; e.g. iw_desc=\(desc, None\)")
    with pytest.raises(bl.BNNSError, match=match):
        bl.direct_apply_lstm_batch_training_caching(params)
    assert np.all(np.isnan(out["y_store"]))  # nothing written
    params.forget_gate.iw_desc = (single, None, None)
    with pytest.raises(bl.BNNSError, match=r"^forget_gate.iw_desc: expected a pair .* got 3 items"):
        bl.compute_lstm_training_cache_capacity(params)


def test_lengths_given_as_batch_sizes_get_the_conversion():
    params, out = params_for(T=5, B=2)
    params.sequence_descriptor = np.array([5, 2])
    match = (r"^sequence_descriptor: expected 5 batch sizes \(seq_len\), got 2 values "
             r"\[5, 2\]: these look like per-sample lengths, .* per-step counts .*"
             r"that is \[2, 2, 1, 1, 1\]")
    with pytest.raises(bl.BNNSError, match=match):
        bl.direct_apply_lstm_batch_training_caching(params)
    assert np.all(np.isnan(out["y_store"]))
    params.sequence_descriptor = np.array([2, 2, 1, 1, 1], np.int32)  # the suggested value works
    bl.direct_apply_lstm_batch_training_caching(params)
    assert np.all(out["y_store"][2:, 1] == 0) and np.all(np.isfinite(out["y_store"]))


def test_other_wrong_batch_sizes_keep_the_plain_message():
    params, _ = params_for(T=5, B=2)
    params.sequence_descriptor = np.array([2, 2, 1])  # 3 values: neither T nor B of them
    match = r"^sequence_descriptor: expected 5 batch sizes \(seq_len\), got shape"
    with pytest.raises(bl.BNNSError, match=match):
        bl.direct_apply_lstm_batch_training_caching(params)


def test_x_of_another_type_than_the_weights_blames_x():
    params, out = params_for(dtype=np.float32, x_dtype=np.float64)
    match = (r"^input_descriptor.data_desc.data_type: FLOAT64 but the weights "
             r"\(input_gate.hw_desc and the other gates\) are FLOAT32")
    with pytest.raises(bl.BNNSError, match=match):
        bl.direct_apply_lstm_batch_training_caching(params)
    assert np.all(np.isnan(out["y_store"]))


@pytest.mark.parametrize("change, named", [
    (lambda p: setattr(p, "sequence_descriptor", np.array([2, 2, 2, 1, 1], np.int32)),
     r"sequence_descriptor \(the batch sizes\) differ"),
    (lambda p: setattr(p, "dropout_seed", 7), r"dropout or dropout_seed differ"),
])
def test_cache_of_other_parameters_names_what_differs(change, named):
    T, B, I, H = 5, 2, 3, 4
    problem = Problem(T=T, B=B, I=I, H=H, L=2, dropout=0.5, dropout_seed=5)
    params, _, cache = problem.forward()
    dy = problem.rng.standard_normal((T, B, H))
    delta, grads = make_delta(params, problem.weights, dy=dy)
    before = grads["dx"].copy()
    change(params)
    match = (r"^training_cache: the cache was written for other parameters: " + named
             + r" from the forward's \(the backward must get")
    with pytest.raises(bl.BNNSError, match=match):
        bl.direct_apply_lstm_batch_backward(params, delta, training_cache=cache)
    np.testing.assert_array_equal(grads["dx"], before)  # nothing written
