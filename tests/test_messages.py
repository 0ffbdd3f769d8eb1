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


# ------------------------------------------------------------------ the all-IDENTITY mistake
def test_gates_left_at_identity_warn_once_per_parameters_object():
    """Gate descriptors left at Activation() (IDENTITY, BNNS's zero value) without
    DEFAULT_ACTIVATIONS compute a linear recurrence: the call warns, naming the flag, once
    per parameters object; with the flag, or one real activation, nothing is said."""
    import warnings

    problem = Problem(T=2, B=1, I=2, H=3, dtype=np.float32)
    identity = {name: (int(bl.ActivationFunction.IDENTITY), 0.0, 0.0)
                for name in ("input", "forget", "candidate", "output", "hidden")}
    problem.activations = identity
    params, _ = problem.params()
    with pytest.warns(bl.IdentityActivationsWarning, match="LayerFlags.DEFAULT_ACTIVATIONS"):
        bl.direct_apply_lstm_batch_training_caching(params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bl.direct_apply_lstm_batch_training_caching(params)         # the same object: once
        bl.compute_lstm_training_cache_capacity(params)
        problem.activations = dict(identity, candidate=(int(bl.ActivationFunction.TANH), 0, 0))
        bl.direct_apply_lstm_batch_training_caching(problem.params()[0])
        problem.activations = None                                   # DEFAULT_ACTIVATIONS
        bl.direct_apply_lstm_batch_training_caching(problem.params()[0])
        # the everyday layers' activations are chosen by name: never warned
        layer = bl.LSTM(2, 3, gate_activations=dict.fromkeys(
            ("input", "forget", "candidate", "output"), "identity"), hidden_activation="identity")
        layer.forward(np.zeros((2, 1, 2), np.float32))
    problem.activations = identity
    with pytest.warns(bl.IdentityActivationsWarning) as record:    # a new object: warned again
        bl.direct_apply_lstm_batch_training_caching(problem.params()[0])
    assert record[0].filename == __file__                            # at the caller's line
    assert issubclass(bl.IdentityActivationsWarning, RuntimeWarning)
