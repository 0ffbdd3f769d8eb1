"""Validation of the parameters (bnnslstm/_plan.pyx, bnnslstm/lstm.py): every error names
the field at fault and says what was expected, and a refused call writes nothing (no
output, gradient or training cache), whether the parameters were built wrong, corrupted at
random or lie about their buffers."""

import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import bnnslstm as bl
from helpers import FEATURES, Problem, make_delta, random_problem, run_python


def forward_setup():
    """A 2-layer bidirectional problem with diagonal peepholes: (params, out, weights)."""
    problem = Problem(T=5, B=2, I=4, H=3, L=2, bidirectional=True, peephole="diagonal")
    return (*problem.params(), problem.weights)


def assert_refused(params, out, match, cache=True):
    before = {k: v.copy() for k, v in out.items()}
    training_cache = bytearray(b"\x5a" * 100_000) if cache else None
    with pytest.raises(bl.BNNSError, match=match):
        bl.direct_apply_lstm_batch_training_caching(params, training_cache=training_cache)
    for k, v in out.items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    if cache:
        assert training_cache == bytearray(b"\x5a" * 100_000)


@pytest.mark.parametrize("field,value,match", [
    ("hidden_size", 4, "size gives hidden_size = 3 but hidden_size is 4"),
    ("input_size", 5, "input_descriptor.data_desc: size gives input_size = 4 but input_size is 5"),
    ("seq_len", 6, "seq_len"),
    ("batch_size", -1, r"batch_size: expected 0 <= batch_size"),
    ("num_layers", 1.5, "num_layers: expected a non-negative integer"),
    ("dropout", 1.0, r"dropout: expected a number in \[0, 1\), got 1.0"),
    ("dropout", -0.1, "dropout: expected"),
    ("dropout", float("nan"), "dropout: expected"),
    ("lstm_flags", 0x10, "lstm_flags: unknown bits"),
    ("dropout_seed", -1, "dropout_seed"),
])
def test_bad_scalars_name_their_field(field, value, match):
    params, out, _ = forward_setup()
    setattr(params, field, value)
    assert_refused(params, out, match)


def test_scalars_may_be_zero_when_descriptors_give_them():
    params, out, _ = forward_setup()
    bl.direct_apply_lstm_batch_training_caching(params)
    expected = {k: v.copy() for k, v in out.items()}
    for k in out:
        out[k][...] = np.nan
    for field in ("input_size", "hidden_size", "batch_size", "num_layers", "seq_len"):
        setattr(params, field, 0)
    bl.direct_apply_lstm_batch_training_caching(params)
    for k, v in out.items():
        np.testing.assert_array_equal(v, expected[k])


def test_a_scalar_no_descriptor_gives_must_be_set():
    params, _, _ = forward_setup()
    params.input_gate.hw_desc.size = (0, 0, 0, 0)
    params.forget_gate.hw_desc.size = (0, 0, 0, 0)
    params.candidate_gate.hw_desc.size = (0, 0, 0, 0)
    params.output_gate.hw_desc.size = (0, 0, 0, 0)
    params.input_descriptor.hidden_desc = None
    params.output_descriptor.hidden_desc = params.output_descriptor.cell_state_desc = None
    params.hidden_size = 0
    with pytest.raises(bl.BNNSError, match="hidden_size: is 0 and no descriptor gives it"):
        bl.direct_apply_lstm_batch_training_caching(params)


@pytest.mark.parametrize("corrupt,match", [
    (lambda p: setattr(p.input_descriptor, "data_desc", None),
     "input_descriptor.data_desc: required"),
    (lambda p: setattr(p.input_descriptor.data_desc, "layout", bl.DataLayout.ROW_MAJOR_MATRIX),
     "input_descriptor.data_desc.layout: expected SNE or NSE"),
    (lambda p: setattr(p.output_descriptor.data_desc, "data", np.zeros((5, 2, 5))),
     "output_descriptor.data_desc: size"),
    (lambda p: setattr(p.input_gate, "hw_desc", None), "input_gate.hw_desc: required"),
    (lambda p: setattr(p.forget_gate, "iw_desc", [p.forget_gate.iw_desc[0], None]),
     r"forget_gate.iw_desc\[1\]: required when num_layers > 1"),
    (lambda p: setattr(p.candidate_gate.iw_desc[0], "data_type", bl.DataType.FLOAT32),
     "candidate_gate.iw_desc\\[0\\].data_type: FLOAT32 but the call's type is FLOAT64"),
    (lambda p: setattr(p.output_gate.b_desc, "size", (3, 2, 2)),
     "output_gate.b_desc: logical shape"),
    (lambda p: setattr(p.output_gate.cw_desc, "size", (7, 2, 2)), "output_gate.cw_desc"),
    (lambda p: setattr(p.input_descriptor.data_desc, "data_type", bl.DataType.INT32),
     "input_descriptor.data_desc.data_type: expected FLOAT32 or FLOAT64"),
    (lambda p: setattr(p.output_descriptor.hidden_desc, "data", np.zeros(12).tobytes()),
     "output_descriptor.hidden_desc.data: the buffer is read-only"),
    (lambda p: setattr(p.output_descriptor, "cell_state_desc", p.output_descriptor.hidden_desc),
     "output_descriptor.cell_state_desc: shares memory with output_descriptor.hidden_desc"),
    (lambda p: setattr(p, "input_gate", None), "input_gate: expected an LSTMGateDescriptor"),
    (lambda p: setattr(p.input_gate, "hw_desc", np.zeros(3)),
     "input_gate.hw_desc: expected an NDArrayDescriptor"),
])
def test_bad_descriptors_name_their_field(corrupt, match):
    params, out, _ = forward_setup()
    corrupt(params)
    assert_refused(params, out, match)


@pytest.mark.parametrize("sequence,match", [
    ([2, 2, 1, 1], "expected 5 batch sizes"),
    ([2, 1, 2, 1, 1], "must not increase"),
    ([1, 1, 1, 1, 1], "first batch size must be batch_size = 2"),
    ([2, 2, 2, 1, 0], r"must lie in \[1, 2\]"),
    (np.array([2.0, 2, 2, 1, 1]), "expected integers, got dtype float64"),
    (bl.NDArrayDescriptor(np.array([2, 2, 2, 1, 1], np.float32), bl.DataLayout.VECTOR, (5,)),
     "data_type: expected an integer type"),
])
def test_bad_sequence_descriptors(sequence, match):
    params, out, _ = forward_setup()
    params.sequence_descriptor = sequence
    assert_refused(params, out, f"sequence_descriptor.*{match}")


def test_sequence_descriptor_as_integer_descriptor_works():
    params, out, _ = forward_setup()
    sizes = np.array([2, 2, 1, 1, 1], np.int64)
    params.sequence_descriptor = bl.NDArrayDescriptor(sizes, bl.DataLayout.VECTOR, (5,),
                                                      data_type=bl.DataType.INT64)
    bl.direct_apply_lstm_batch_training_caching(params)
    assert np.all(out["y_store"][2:, 1] == 0)


@pytest.mark.parametrize("function", [bl.ActivationFunction.SOFTMAX, bl.ActivationFunction.GUMBEL,
                                      99])
def test_non_elementwise_activations_are_refused(function):
    params, out, _ = forward_setup()
    params.lstm_flags &= ~bl.LayerFlags.DEFAULT_ACTIVATIONS
    params.output_gate.activation = bl.Activation(function)
    assert_refused(params, out, "output_gate.activation.function")


def test_default_activations_flag_ignores_gate_activations():
    params, out, _ = forward_setup()
    params.output_gate.activation = bl.Activation(bl.ActivationFunction.SOFTMAX)
    bl.direct_apply_lstm_batch_training_caching(params)
    assert np.all(np.isfinite(out["y_store"]))


def test_cache_too_small_or_read_only():
    params, out, _ = forward_setup()
    need = bl.compute_lstm_training_cache_capacity(params)
    before = {k: v.copy() for k, v in out.items()}
    match = f"training_cache: {need - 1} bytes but these parameters need {need}"
    with pytest.raises(bl.BNNSError, match=match):
        bl.direct_apply_lstm_batch_training_caching(params, training_cache=bytearray(need - 1))
    with pytest.raises(bl.BNNSError, match="training_cache: the buffer is read-only"):
        bl.direct_apply_lstm_batch_training_caching(params, training_cache=bytes(need))
    for k, v in out.items():
        np.testing.assert_array_equal(v, before[k])


def backward_setup():
    params, _, weights = forward_setup()
    cache = bytearray(bl.compute_lstm_training_cache_capacity(params))
    bl.direct_apply_lstm_batch_training_caching(params, training_cache=cache)
    delta, grads = make_delta(params, weights, dy=np.ones((5, 2, 6)), fill=7.0)
    return params, delta, grads, cache


def assert_backward_refused(params, delta, grads, cache, match):
    snapshot = [np.copy(a) for a in _arrays(grads)]
    with pytest.raises(bl.BNNSError, match=match):
        bl.direct_apply_lstm_batch_backward(params, delta, training_cache=cache)
    for a, b in zip(_arrays(grads), snapshot):
        np.testing.assert_array_equal(a, b)


def _arrays(grads):
    for value in grads.values():
        if isinstance(value, np.ndarray):
            yield value
        elif isinstance(value, dict):
            for v in value.values():
                for a in (v if isinstance(v, tuple) else (v,)):
                    if a is not None:
                        yield a


@pytest.mark.parametrize("corrupt,match", [
    (lambda p, d: setattr(d, "hidden_size", 4),
     "layer_delta_params.hidden_size: 4 but the forward's hidden_size is 3"),
    (lambda p, d: setattr(d, "lstm_flags", bl.LayerFlags.DEFAULT_ACTIVATIONS),
     "layer_delta_params.lstm_flags"),
    (lambda p, d: setattr(d.input_gate.hw_desc, "flags", 7),
     r"input_gate.hw_desc.flags: expected BACKPROP_SET"),
    (lambda p, d: setattr(d.input_descriptor, "hidden_desc", d.input_descriptor.cell_state_desc),
     "shares memory"),
    (lambda p, d: setattr(d.forget_gate, "b_desc", d.forget_gate.hw_desc), "forget_gate.b_desc"),
    (lambda p, d: setattr(p, "dropout", 0.5), "training_cache: .* bytes but these parameters need"),
    (lambda p, d: setattr(p, "sequence_descriptor", [2, 2, 2, 2, 1]),
     "written for other parameters"),
])
def test_backward_refusals_write_nothing(corrupt, match):
    params, delta, grads, cache = backward_setup()
    corrupt(params, delta)
    assert_backward_refused(params, delta, grads, cache, match)


def test_backward_refuses_a_cache_no_forward_wrote():
    params, delta, grads, cache = backward_setup()
    assert_backward_refused(params, delta, grads, bytearray(len(cache)),
                            "no forward pass has written this cache")


def test_backward_refuses_a_peephole_gradient_the_forward_lacks():
    params, delta, grads, cache = backward_setup()
    # a forward without the output peephole, the cache rewritten to match
    params.output_gate.cw_desc = None
    bl.direct_apply_lstm_batch_training_caching(params, training_cache=cache)
    assert_backward_refused(params, delta, grads, cache,
                            "output_gate.cw_desc: the forward's gate has no peephole")


@pytest.mark.parametrize("shape", [(0, 2, 3), (2, 0, 3)], ids=["no steps", "no samples"])
def test_the_layer_refuses_an_empty_sequence_by_name(shape):
    with pytest.raises(bl.BNNSError, match=r"x: shape \(\d, \d, 3\) is empty"):
        bl.LSTM(3, 4).forward(np.zeros(shape, np.float32))


def test_an_array_made_read_only_after_a_call_is_refused_like_a_fresh_one():
    """The descriptor's export is taken once, but writability is the array's now: made
    read-only after a first call, y (forward) and a gradient (backward) are refused with the
    message a fresh descriptor gets, nothing written; writable again, they are accepted."""
    params, out, _ = forward_setup()
    bl.direct_apply_lstm_batch_training_caching(params)
    out["y_store"].flags.writeable = False
    assert_refused(params, out, "output_descriptor.data_desc.data: the buffer is read-only but "
                                "this descriptor is written")
    out["y_store"].flags.writeable = True
    bl.direct_apply_lstm_batch_training_caching(params)

    params, delta, grads, cache = backward_setup()
    bl.direct_apply_lstm_batch_backward(params, delta, training_cache=cache)
    grads["U"]["forget"].flags.writeable = False
    assert_backward_refused(params, delta, grads, cache,
                            "layer_delta_params.forget_gate.hw_desc.data: the buffer "
                            "is read-only but this descriptor is written")
    grads["U"]["forget"].flags.writeable = True
    bl.direct_apply_lstm_batch_backward(params, delta, training_cache=cache)


def _shared(array, shape=None):
    """A descriptor on (part of) ``array``'s memory, with ``shape``."""
    view = array if shape is None else array.reshape(-1)[:int(np.prod(shape))].reshape(shape)
    return bl.NDArrayDescriptor.from_array(view)


@pytest.mark.parametrize("corrupt,match", [
    (lambda p, d: setattr(d.input_descriptor, "data_desc", p.input_descriptor.data_desc),
     ("layer_delta_params.input_descriptor.data_desc: shares memory with "
      "input_descriptor.data_desc, which the backward reads")),
    (lambda p, d: setattr(d.forget_gate, "hw_desc", p.forget_gate.hw_desc),
     ("layer_delta_params.forget_gate.hw_desc: shares memory with forget_gate.hw_desc, "
      "which the backward reads")),
    (lambda p, d: setattr(d.input_descriptor, "hidden_desc",
                          _shared(p.output_gate.iw_desc[1].data, (2, 2, 2, 3))),
     ("layer_delta_params.input_descriptor.hidden_desc: shares memory with output_gate.iw_desc, "
      "which the backward reads")),
    (lambda p, d: setattr(d.candidate_gate, "b_desc",
                          _shared(d.output_descriptor.data_desc.data, (2, 2, 3))),
     ("layer_delta_params.candidate_gate.b_desc: shares memory with "
      "layer_delta_params.output_descriptor.data_desc, which the backward reads")),
])
@pytest.mark.parametrize("cached", [True, False])
def test_backward_gradients_sharing_memory_with_what_it_reads_are_refused(corrupt, match, cached):
    """A gradient written over what the backward reads (x, a weight, dL/dy...), which
    would give wrong gradients: refused naming both fields, nothing written, with the
    training cache or without."""
    params, delta, grads, cache = backward_setup()
    corrupt(params, delta)
    assert_backward_refused(params, delta, grads, cache if cached else None, match)


def test_descriptors_the_backward_only_reads_may_share_memory():
    """dL/dh_T and dL/dc_T on one array (both read): accepted, same gradients as two copies."""
    params, delta, grads, cache = backward_setup()
    state = np.random.default_rng(3).standard_normal((2, 2, 2, 3))
    delta.output_descriptor.hidden_desc = bl.NDArrayDescriptor.from_array(state.copy())
    delta.output_descriptor.cell_state_desc = bl.NDArrayDescriptor.from_array(state.copy())
    bl.direct_apply_lstm_batch_backward(params, delta, training_cache=cache)
    expected = {"dx": grads["dx"].copy(), "dh0": grads["dh0"].copy(),
                "dU": grads["U"]["forget"].copy()}
    delta.output_descriptor.hidden_desc = delta.output_descriptor.cell_state_desc = \
        bl.NDArrayDescriptor.from_array(state)
    bl.direct_apply_lstm_batch_backward(params, delta, training_cache=cache)
    np.testing.assert_array_equal(grads["dx"], expected["dx"])
    np.testing.assert_array_equal(grads["dh0"], expected["dh0"])
    np.testing.assert_array_equal(grads["U"]["forget"], expected["dU"])


@pytest.mark.parametrize("output,read,match", [
    ("hidden_desc", "h0", ("output_descriptor.hidden_desc: shares memory with "
                           "input_descriptor.hidden_desc, which the forward reads")),
    ("cell_state_desc", "U", ("output_descriptor.cell_state_desc: shares memory with "
                              "forget_gate.hw_desc, which the forward reads")),
])
def test_forward_outputs_sharing_memory_with_what_it_reads_are_refused(output, read, match):
    """The forward refuses a written descriptor over one it reads, like the backward (an
    output over a weight read at every step would give wrong results)."""
    params, out, _ = forward_setup()
    h0 = np.zeros((2, 2, 2, 3))
    params.input_descriptor.hidden_desc = bl.NDArrayDescriptor.from_array(h0)
    shared = h0 if read == "h0" else params.forget_gate.hw_desc.data
    setattr(params.output_descriptor, output, _shared(shared, (2, 2, 2, 3)))
    out[output] = shared
    assert_refused(params, out, match)


@pytest.mark.parametrize("num_layers", [300, 2**31 - 1])
def test_a_huge_num_layers_is_refused_by_the_descriptor_that_cannot_hold_it(num_layers):
    """Zero-size gate descriptors on a 64-element buffer: whatever num_layers says, the
    descriptor that cannot hold that many layers is named, before the call's per-layer
    tables are allocated (no MemoryError, whatever the count)."""
    params = bl.LayerParametersLSTM(input_size=2, hidden_size=2, batch_size=1,
                                    num_layers=num_layers, seq_len=2,
                                    lstm_flags=bl.LayerFlags.DEFAULT_ACTIVATIONS)
    params.input_descriptor.data_desc = bl.NDArrayDescriptor.from_array(
        np.ones((2, 1, 2), np.float32), bl.DataLayout.SNE)

    def zero_sizes():
        return bl.NDArrayDescriptor(np.zeros(64, np.float32), bl.DataLayout.FIRST_MAJOR_4D,
                                    (0, 0, 0, 0))

    for name in ("input_gate", "forget_gate", "candidate_gate", "output_gate"):
        setattr(params, name, bl.LSTMGateDescriptor(iw_desc=(zero_sizes(), None),
                                                    hw_desc=zero_sizes()))
    match = rf"input_gate.iw_desc\[0\]: size \({num_layers}, 1, 2, 2\) .* but the buffer holds 64"
    for function in (bl.compute_lstm_training_cache_capacity,
                     bl.direct_apply_lstm_batch_training_caching):
        with pytest.raises(bl.BNNSError, match=match):
            function(params)


@pytest.mark.parametrize("stride", [(1, 1, 12), (2, 6, 12)],
                         ids=["units on samples", "units interleaved with samples"])
def test_a_written_descriptor_reaching_an_element_twice_is_refused(stride):
    """Two outputs written to one element: the result would depend on the order of the
    writes (and on the team's threads), so the call is refused before writing anything."""
    params, out, _ = forward_setup()
    y = np.full(200, 7.0)
    params.output_descriptor.data_desc = bl.NDArrayDescriptor(
        y, bl.DataLayout.SNE, (6, 2, 5), stride, data_type=bl.DataType.FLOAT64)
    out["y_buffer"] = y
    assert_refused(params, out,
                   r"output_descriptor.data_desc: its strides reach some element twice")


def test_cache_overlapping_an_input_is_refused():
    """A training cache sharing memory with x is refused by name, nothing written."""
    params, _ = Problem(T=5, B=3, I=3, H=4, seed=2).params()
    need = bl.compute_lstm_training_cache_capacity(params)
    big = np.zeros(need + 5 * 3 * 3 * 8, np.uint8)
    params.input_descriptor.data_desc = bl.NDArrayDescriptor(big, bl.DataLayout.SNE, (3, 3, 5),
                                                             data_type=bl.DataType.FLOAT64)
    before = big.copy()
    with pytest.raises(bl.BNNSError,
                       match="training_cache: shares memory with input_descriptor.data_desc"):
        bl.direct_apply_lstm_batch_training_caching(params, training_cache=memoryview(big))
    np.testing.assert_array_equal(big, before)


# --------------------------------------------------------------------------- random refusals
CORRUPTIONS = {  # field named in the message -> a change that makes the parameters invalid
    "hidden_size": lambda p: setattr(p, "hidden_size", p.hidden_size + 1),
    "seq_len": lambda p: setattr(p, "seq_len", p.seq_len + 2),
    "dropout": lambda p: setattr(p, "dropout", 1.0),
    "lstm_flags": lambda p: setattr(p, "lstm_flags", p.lstm_flags | 0x100),
    "sequence_descriptor": lambda p: setattr(
        p, "sequence_descriptor", np.arange(p.seq_len, dtype=np.int32) + p.batch_size + 1),
    "input_descriptor.data_desc": lambda p: setattr(
        p.input_descriptor.data_desc, "stride", (2**40, 2**40, 2**40)),
    "input_descriptor.data_desc.data": lambda p: setattr(
        p.input_descriptor.data_desc, "data", p.input_descriptor.data_desc.data[:-1]),
    "input_gate.hw_desc": lambda p: setattr(
        p.input_gate.hw_desc, "size", (99,) + tuple(p.input_gate.hw_desc.size[1:])),
    "forget_gate.iw_desc[0]": lambda p: setattr(
        p.forget_gate.iw_desc[0], "data", p.forget_gate.iw_desc[0].data[:-1]),
    "output_gate.activation": lambda p: (
        setattr(p, "lstm_flags", p.lstm_flags & ~bl.LayerFlags.DEFAULT_ACTIVATIONS),
        setattr(p.output_gate, "activation", bl.Activation(bl.ActivationFunction.SOFTMAX))),
    "candidate_gate.b_desc": lambda p: setattr(p.candidate_gate.b_desc, "data_type",
                                               bl.DataType.FLOAT32),
    "output_descriptor.hidden_desc": lambda p: setattr(p.output_descriptor.hidden_desc, "data",
                                                       np.zeros(4).tobytes()),
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FEATURES.map(lambda f: {**f, "bias": True}), st.sampled_from(sorted(CORRUPTIONS)))
def test_corrupted_parameters_raise_and_write_nothing(f, corruption):
    """Valid drawn parameters with one field made invalid: refused naming that field,
    neither the outputs nor the training cache written."""
    if corruption == "input_descriptor.data_desc":
        assume(f["T"] * f["B"] * f["I"] > 1)  # with every extent 1, no stride reaches anything
    params, out = random_problem(f).params()
    CORRUPTIONS[corruption](params)
    before = {k: v.copy() for k, v in out.items()}
    cache = bytearray(b"\xab" * 4096)
    with pytest.raises(bl.BNNSError) as error:
        bl.direct_apply_lstm_batch_training_caching(params, training_cache=cache)
    assert corruption.removesuffix(".data") in str(error.value)
    for k, v in out.items():
        np.testing.assert_array_equal(v, before[k])
    assert cache == bytearray(b"\xab" * 4096)


def test_hostile_descriptors_in_a_subprocess_never_crash(tmp_path):
    """Descriptors that lie about their sizes, strides and buffers, run where a crash shows:
    most are refused, none crashes."""
    script = textwrap.dedent("""
        import numpy as np, bnnslstm as bl
        rng = np.random.default_rng(0)
        refused = 0
        for trial in range(300):
            buf = np.zeros(int(rng.integers(0, 64)), np.float32)
            size = tuple(int(v) for v in rng.choice([0, 1, 2, 3, 7, 2**31, 2**40, 2**63 - 1],
                                                    size=4))
            stride = tuple(int(v) for v in rng.choice([0, 1, 2, 5, 2**31, 2**62, 2**64 - 1],
                                                      size=4))
            layout = [bl.DataLayout.SNE, bl.DataLayout.NSE, bl.DataLayout.FIRST_MAJOR_4D,
                      bl.DataLayout.ROW_MAJOR_MATRIX, bl.DataLayout.VECTOR][trial % 5]
            d = bl.NDArrayDescriptor(buf, layout, size, stride)
            p = bl.LayerParametersLSTM(input_size=2, hidden_size=2, batch_size=2, num_layers=1,
                                       seq_len=2, lstm_flags=bl.LayerFlags.DEFAULT_ACTIVATIONS)
            p.input_descriptor.data_desc = d
            w = bl.NDArrayDescriptor.from_array(np.zeros((1, 2, 2), np.float32))
            u = bl.NDArrayDescriptor.from_array(np.zeros((1, 1, 2, 2), np.float32))
            for g in ("input_gate", "forget_gate", "candidate_gate", "output_gate"):
                setattr(p, g, bl.LSTMGateDescriptor((w, None), d if trial % 7 == 0 else u))
            p.output_descriptor.data_desc = d if trial % 3 == 0 else None
            try:
                bl.direct_apply_lstm_batch_training_caching(p)
            except bl.BNNSError:
                refused += 1
        print("refused", refused)
    """)
    done = run_python(script, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) > 200
