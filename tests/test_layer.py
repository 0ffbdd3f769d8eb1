"""bnnslstm.LSTM, the numpy layer: forward and backward against the plain-numpy references
(no PyTorch), activations, the input-type rule, and every way of keeping a layer."""

import copy
import io
import json
import pickle
import zipfile

import numpy as np
import pytest

import bnnslstm as bl
from reference import GATES, batch_sizes_from_lengths, lstm_forward
from reference_backward import lstm_backward

TOL = {np.float32: 2e-5, np.float64: 1e-11}


def reference_weights(layer):
    """The layer's parameters as reference.lstm_forward reads them (float64)."""
    L, D, H = layer.num_layers, layer.D, layer.hidden_size
    p = {k: v.astype(np.float64) for k, v in layer.parameters().items()}
    suffixes = [[f"l{l}" + ("_reverse" if d else "") for d in range(D)] for l in range(L)]

    def stacked(prefix, l, shape):
        return np.stack([p[f"{prefix}_{s}"].reshape(shape) for s in suffixes[l]])

    weights = {"W": {}, "U": {}, "C": {}, "b": {}}
    for k, gate in enumerate(GATES):
        weights["W"][gate] = [stacked("weight_ih", l, (4, H, -1))[:, k] for l in range(L)]
        weights["U"][gate] = np.stack([stacked("weight_hh", l, (4, H, H))[:, k] for l in range(L)])
        weights["b"][gate] = (np.stack([stacked("bias", l, (4, H))[:, k] for l in range(L)])
                              if layer.bias else None)
        if gate not in layer.peephole_gates:
            weights["C"][gate] = None
        else:  # weight_ch stacks the gates that have a peephole, in i, f, g, o order
            n = len(layer.peephole_gates)
            shape = (n, H) if layer.peephole == "diagonal" else (n, H, H)
            row = layer.peephole_gates.index(gate)
            weights["C"][gate] = np.stack([stacked("weight_ch", l, shape)[:, row]
                                           for l in range(L)])
    return weights


def reference_activations(layer):
    if layer.gate_activations is None:
        return None
    acts = dict(layer.gate_activations, hidden=layer.hidden_activation)
    return {name: (int(a.function), a.alpha, a.beta) for name, a in acts.items()}


def dropout_masks(layer, T, B):
    """The masks the layer's next training forward applies to each layer's input (None:
    none): bl.dropout_mask of the seed it draws from its generator (read on a copy)."""
    if layer.dropout == 0 or layer.num_layers == 1:
        return None
    seed = int(copy.deepcopy(layer._rng).integers(2**63))
    masks = [None]
    for l in range(1, layer.num_layers):
        mask = np.empty((T, B, layer.D * layer.hidden_size), layer.dtype)
        bl.dropout_mask(seed, l, layer.dropout, mask)
        masks.append(mask.astype(np.float64))
    return masks


def check_forward_backward(layer, T, B, *, lengths=None, states=True, state_grads=True,
                           training=True, seed=2):
    """layer(x) and (in training) layer.backward against the references, on x, h0, c0 and
    then dL/dy, dL/dh_n, dL/dc_n drawn from ``seed`` (the states and their gradients absent
    unless ``states`` and ``state_grads``), with per-sample ``lengths``."""
    dtype, L, D, H = layer.dtype.type, layer.num_layers, layer.D, layer.hidden_size
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, layer.input_size)).astype(dtype)
    h0 = rng.standard_normal((L * D, B, H)).astype(dtype) if states else None
    c0 = rng.standard_normal((L * D, B, H)).astype(dtype) if states else None

    def as4(a):  # [L*D][B][H] as the references' [L][D][B][H]
        return None if a is None else a.reshape(L, D, B, H)

    batch_sizes = None if lengths is None else batch_sizes_from_lengths(lengths, T)
    masks = dropout_masks(layer, T, B) if training else None
    first = (lambda a: a.transpose(1, 0, 2)) if layer.batch_first else (lambda a: a)
    y, (h_n, c_n) = layer(first(x), h0, c0, batch_sizes=batch_sizes, training=training)
    assert y.dtype == h_n.dtype == c_n.dtype == dtype
    weights = reference_weights(layer)
    activations = reference_activations(layer)
    y_ref, h_ref, c_ref, _ = lstm_forward(x, weights, as4(h0), as4(c0), batch_sizes, masks,
                                          activations, bidirectional=layer.bidirectional)
    tol = TOL[dtype]
    np.testing.assert_allclose(first(y), y_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(h_n, h_ref.reshape(L * D, B, H), rtol=tol, atol=tol)
    np.testing.assert_allclose(c_n, c_ref.reshape(L * D, B, H), rtol=tol, atol=tol)
    if not training:
        return

    dy = rng.standard_normal(y.shape).astype(dtype)
    dh_n = rng.standard_normal(h_n.shape).astype(dtype) if state_grads else None
    dc_n = rng.standard_normal(c_n.shape).astype(dtype) if state_grads else None
    dx, (dh0, dc0) = layer.backward(dy, dh_n, dc_n)
    ref = lstm_backward(x, weights, as4(h0), as4(c0), batch_sizes, masks, activations,
                        bidirectional=layer.bidirectional, dy=first(dy), dh_n=as4(dh_n),
                        dc_n=as4(dc_n))
    tol = 10 * tol
    np.testing.assert_allclose(first(dx), ref["dx"], rtol=tol, atol=tol)
    np.testing.assert_allclose(dh0, ref["dh0"].reshape(L * D, B, H), rtol=tol, atol=tol)
    np.testing.assert_allclose(dc0, ref["dc0"].reshape(L * D, B, H), rtol=tol, atol=tol)
    grads = layer.grads
    for l in range(L):
        for d in range(D):
            s = f"l{l}" + ("_reverse" if d else "")

            parts = [("weight_ih", "dW"), ("weight_hh", "dU")] + [("bias", "db")] * layer.bias
            parts += [("weight_ch", "dC")] * bool(layer.peephole)
            for name, part in parts:
                gates = layer.peephole_gates if name == "weight_ch" else GATES
                want = np.concatenate([ref[part][g][l][d] for g in gates])
                np.testing.assert_allclose(grads[f"{name}_{s}"], want, rtol=tol, atol=tol,
                                           err_msg=f"{name}_{s}")


CASES = [
    {"L": 1, "bidirectional": False, "peephole": None, "bias": True, "batch_first": False},
    {"L": 2, "bidirectional": True, "peephole": "diagonal", "bias": True, "batch_first": True},
    {"L": 2, "bidirectional": False, "peephole": "full", "bias": False, "batch_first": False},
    {"L": 3, "bidirectional": True, "peephole": None, "bias": True, "batch_first": False},
    {"L": 2, "bidirectional": True, "peephole": "diagonal", "bias": True, "batch_first": False,
     "peephole_gates": ("input", "forget", "output")},
    {"L": 2, "bidirectional": False, "peephole": "full", "bias": True, "batch_first": True,
     "peephole_gates": ("forget", "candidate")},
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
@pytest.mark.parametrize("packed", [False, True])
def test_forward_backward_match_reference(case, dtype, packed):
    """Stacks of 1-3 layers, one or two directions, peepholes, no biases, batch-first,
    per-step batch sizes: y, h_n, c_n and every gradient equal the references'."""
    layer = bl.LSTM(4, 6, case["L"], bidirectional=case["bidirectional"],
                    peephole=case["peephole"], peephole_gates=case.get("peephole_gates"),
                    bias=case["bias"],
                    batch_first=case["batch_first"], dtype=dtype, seed=1)
    check_forward_backward(layer, 5, 3, lengths=[5, 3, 2] if packed else None)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("what", ["batch of 1", "no states", "a team's batch", "dropout",
                                  "dropout, packed, batch-first", "inference"])
def test_more_calls_match_reference(what, dtype):
    """A batch of one; no initial states and no state gradients (zeros); a batch large
    enough for a thread team (H 64, B 16, both directions); dropout between three layers in
    training (the masks of the seed the layer draws), also with per-step batch sizes and
    batch-first; an inference call of a layer with dropout (none applied)."""
    kwargs, call = {}, {}
    T, B, I, H, L = 4, 3, 5, 6, 2
    if what == "batch of 1":
        B = 1
    elif what == "no states":
        kwargs = {"bidirectional": True, "peephole": "full"}
        call = {"states": False, "state_grads": False}
    elif what == "a team's batch":
        T, B, I, H, L, kwargs = 3, 16, 8, 64, 1, {"bidirectional": True}
    elif what.startswith("dropout"):
        L, kwargs = 3, {"dropout": 0.4, "bidirectional": True, "peephole": "diagonal"}
        if what != "dropout":
            kwargs["batch_first"] = True
            call = {"lengths": [4, 4, 2]}
    elif what == "inference":
        kwargs, call = {"dropout": 0.5}, {"training": False}
    layer = bl.LSTM(I, H, L, dtype=dtype, seed=4, **kwargs)
    check_forward_backward(layer, T, B, **call)


def test_activations_match_reference_and_torch_argument_forms():
    gate_activations = {"input": "silu", "candidate": bl.ActivationFunction.SOFTSIGN,
                        "output": bl.Activation(bl.ActivationFunction.SCALED_TANH, 0.5, 1.5)}
    layer = bl.LSTM(3, 4, 2, bidirectional=True, dtype=np.float64, seed=0,
                    gate_activations=gate_activations, hidden_activation="relu6")
    # the default kept
    assert layer.gate_activations["forget"].function == bl.ActivationFunction.SIGMOID
    assert layer.gate_activations["input"].function == bl.ActivationFunction.SILU
    assert "activations=silu/sigmoid/softsign/scaled_tanh/relu6" in repr(layer)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 2, 3))
    y, _ = layer(x)
    acts = reference_activations(layer)
    weights = reference_weights(layer)
    y_ref, _, _, _ = lstm_forward(x, weights, activations=acts, bidirectional=True)
    np.testing.assert_allclose(y, y_ref, rtol=1e-11, atol=1e-11)
    # and not what the default activations give
    y_default, _, _, _ = lstm_forward(x, weights, bidirectional=True)
    assert np.max(np.abs(y - y_default)) > 1e-2
    dy = rng.standard_normal(y.shape)
    dx, _ = layer.backward(dy)
    ref = lstm_backward(x, weights, activations=acts, bidirectional=True, dy=dy)
    np.testing.assert_allclose(dx, ref["dx"], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kwargs, message", [
    ({"gate_activations": {"cell": "tanh"}}, r"gate_activations: unknown gates \['cell'\]"),
    ({"gate_activations": {"input": "softmax"}},
     r"gate_activations\['input'\].function: SOFTMAX is not elementwise"),
    ({"hidden_activation": "nope"}, r"hidden_activation: 'nope' is not an ActivationFunction name"),
    ({"hidden_activation": 3.5},
     r"hidden_activation: expected an Activation, an ActivationFunction or its name"),
    ({"gate_activations": ["tanh"]}, r"gate_activations: expected a dict"),
    ({"dropout": 1.0}, r"dropout: expected a number in \[0, 1\)"),
])
def test_constructor_refusals(kwargs, message):
    with pytest.raises(bl.BNNSError, match=message):
        bl.LSTM(2, 3, 2, **kwargs)


# ------------------------------------------------------------------ input types
def test_input_type_rule():
    layer32 = bl.LSTM(2, 3, seed=0)
    x = np.random.default_rng(0).standard_normal((4, 2, 2))
    for bad in (x, x.astype(np.int64), x.astype(np.complex64)):
        match = rf"^x: dtype {bad.dtype} but the layer is float32.*astype\(np.float32\)"
        with pytest.raises(bl.BNNSError, match=match):
            layer32(bad)
    y16, _ = layer32(x.astype(np.float16))  # float16 converts exactly
    y32, _ = layer32(x.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(y16, y32)
    assert y16.dtype == np.float32
    y_list, _ = layer32(x.astype(np.float32).tolist())  # Python values: np.asarray(value, float32)
    np.testing.assert_array_equal(y_list, layer32(x.astype(np.float32))[0])
    with pytest.raises(bl.BNNSError, match=r"^h0: dtype float64 but the layer is float32"):
        layer32(x.astype(np.float32), h0=np.zeros((1, 2, 3)))
    y, _ = layer32(x.astype(np.float32))
    with pytest.raises(bl.BNNSError, match=r"^dy: dtype float64 but the layer is float32"):
        layer32.backward(np.ones(y.shape))

    layer64 = bl.LSTM(2, 3, dtype=np.float64, seed=0)
    xi = (x * 10).astype(np.int64)
    np.testing.assert_array_equal(layer64(xi)[0], layer64(xi.astype(np.float64))[0])
    np.testing.assert_array_equal(layer64(x.astype(np.float32))[0],
                                  layer64(x.astype(np.float32).astype(np.float64))[0])


def test_dtype_advice_names_only_types_a_layer_takes():
    layer32 = bl.LSTM(2, 3, seed=0)
    x = np.zeros((4, 2, 2))
    with pytest.raises(bl.BNNSError) as info:
        layer32(x)
    assert str(info.value).endswith("(x.astype(np.float32)) or build the layer with "
                                    "dtype=np.float64")
    for dtype in (np.int64, np.complex128, np.uint64):
        with pytest.raises(bl.BNNSError) as info:
            layer32(x.astype(dtype))
        assert str(info.value).endswith("convert it yourself (x.astype(np.float32))")
        assert "build the layer" not in str(info.value)


@pytest.mark.parametrize("pair", [tuple, list])
def test_states_given_as_torchs_pair_get_a_hint(pair):
    layer = bl.LSTM(2, 3, num_layers=2, seed=0)
    x = np.zeros((4, 2, 2), np.float32)
    h0, c0 = np.zeros((2, 2, 3), np.float32), np.ones((2, 2, 3), np.float32)
    match = (r"^h0: expected shape \(2, 2, 3\), got \(2, 2, 2, 3\); h0 looks like "
             r"torch.nn.LSTM's hx = \(h0, c0\): pass the two states separately, "
             r"forward\(x, h0, c0\)$")
    with pytest.raises(bl.BNNSError, match=match):
        layer.forward(x, pair((h0, c0)))
    y, (h_n, c_n) = layer.forward(x, h0, c0)  # as the hint says
    # a list of the layers' [B][H] states is an h0 of its own, without a hint
    np.testing.assert_array_equal(layer.forward(x, [h0[0], h0[1]], c0)[0], y)
    with pytest.raises(bl.BNNSError) as info:  # a wrong h0 beside a given c0: no hint
        layer.forward(x, pair((h0, c0)), c0)
    assert "torch" not in str(info.value)


def test_grads_are_copies():
    layer = bl.LSTM(2, 3, seed=0)
    x = np.ones((3, 1, 2), np.float32)
    y, _ = layer(x)
    layer.backward(np.ones_like(y))
    first = layer.grads
    kept = {k: v.copy() for k, v in first.items()}
    y, _ = layer(2 * x)
    layer.backward(-np.ones_like(y))
    for name, array in first.items():
        np.testing.assert_array_equal(array, kept[name])
    assert not np.allclose(layer.grads["weight_hh_l0"], kept["weight_hh_l0"])
    first["weight_hh_l0"][...] = 7  # writing into the copy does not reach the layer
    assert not np.any(layer.grads["weight_hh_l0"] == 7)


# ------------------------------------------------------------------ keeping a layer
def trained_layer(**kwargs):
    layer = bl.LSTM(3, 4, 2, bidirectional=True, seed=5, **kwargs)
    for array in layer.parameters().values():  # weights that differ from a fresh layer's
        array += 0.125
    return layer


def assert_same_layer(a, b):
    assert repr(a) == repr(b)
    pa, pb = a.parameters(), b.parameters()
    assert pa.keys() == pb.keys()
    for name in pa:
        np.testing.assert_array_equal(pa[name], pb[name])
        assert not np.shares_memory(pa[name], pb[name])
    x = np.random.default_rng(9).standard_normal((4, 2, 3)).astype(a.dtype)
    if a.batch_first:
        x = x.transpose(1, 0, 2)
    ya, _ = a(x, training=False)
    yb, _ = b(x, training=False)
    np.testing.assert_array_equal(ya, yb)


KEEP_CASES = [{}, {"peephole": "full", "bias": False, "batch_first": True, "dtype": np.float64},
              {"peephole": "diagonal", "dropout": 0.25, "gate_activations": {"forget": "softsign"},
               "hidden_activation": bl.Activation(bl.ActivationFunction.SCALED_TANH, 0.75, 1.25)}]


def state_keys(L=2, D=2, bias=True, peephole=None):
    keys = []
    for l in range(L):
        for d in range(D):
            s = f"l{l}" + ("_reverse" if d else "")
            keys += [f"weight_ih_{s}", f"weight_hh_{s}"]
            keys += [f"bias_ih_{s}", f"bias_hh_{s}"] if bias else []
            keys += [f"weight_ch_{s}"] if peephole else []
    return keys


def test_state_dict_keys_and_values():
    layer = trained_layer(peephole="diagonal")
    state = layer.state_dict()
    assert list(state) == state_keys(peephole="diagonal")
    params = layer.parameters()
    np.testing.assert_array_equal(state["bias_ih_l1_reverse"], params["bias_l1_reverse"])
    np.testing.assert_array_equal(state["bias_hh_l1_reverse"], 0)
    assert state["weight_ih_l1"].shape == (16, 8) and state["weight_ch_l0"].shape == (16,)
    state["weight_hh_l0"][...] = 0  # a copy
    assert np.all(params["weight_hh_l0"] != 0)
    acts = trained_layer(gate_activations={"output": "relu6"}).state_dict()
    np.testing.assert_array_equal(acts["activation_output"],
                                  [int(bl.ActivationFunction.RELU6), np.nan, np.nan])
    np.testing.assert_array_equal(acts["activation_forget"],
                                  [int(bl.ActivationFunction.SIGMOID), np.nan, np.nan])
    assert sorted(k for k in acts if k.startswith("activation_")) == [
        "activation_candidate", "activation_forget", "activation_hidden", "activation_input",
        "activation_output"]


@pytest.mark.parametrize("kwargs", KEEP_CASES)
def test_state_dict_round_trip(kwargs):
    a = trained_layer(**kwargs)
    b = bl.LSTM(3, 4, 2, bidirectional=True, seed=6, **kwargs)
    b.load_state_dict(a.state_dict())
    assert_same_layer(a, b)


def test_load_state_dict_sums_torch_style_biases():
    layer = bl.LSTM(2, 3, seed=0)
    state = layer.state_dict()
    state["bias_ih_l0"] = np.full(12, 0.25)
    state["bias_hh_l0"] = np.full(12, 0.5)
    layer.load_state_dict(state)
    np.testing.assert_array_equal(layer.parameters()["bias_l0"], 0.75)


def test_load_state_dict_refusals_change_nothing():
    layer = trained_layer()
    before = layer.state_dict()
    state = layer.state_dict()
    del state["weight_hh_l1"]
    state["weight_ih_l0"] = np.zeros((16, 5))
    state["extra"] = np.zeros(3)
    state["bias_ih_l0"] = np.zeros(16, object)
    with pytest.raises(bl.BNNSError) as info:
        layer.load_state_dict(state)
    message = str(info.value)
    assert message.startswith("state: ")
    assert "unexpected key 'extra'" in message
    assert "weight_ih_l0: expected shape (16, 3), got (16, 5)" in message
    assert "missing key 'weight_hh_l1'" in message
    assert "bias_ih_l0: expected real numbers, got dtype object" in message
    for name, array in layer.state_dict().items():
        np.testing.assert_array_equal(array, before[name])
    with pytest.raises(bl.BNNSError, match=r"state: expected a dict of arrays, got list"):
        layer.load_state_dict([1, 2])


def test_load_state_dict_not_strict():
    layer = trained_layer()
    other = bl.LSTM(3, 4, 2, bidirectional=True, seed=1)
    partial = {"weight_hh_l0": other.state_dict()["weight_hh_l0"], "something_else": np.zeros(1)}
    layer.load_state_dict(partial, strict=False)
    mine, others = layer.parameters(), other.parameters()
    np.testing.assert_array_equal(mine["weight_hh_l0"], others["weight_hh_l0"])
    assert not np.array_equal(mine["weight_hh_l1"], others["weight_hh_l1"])
    with pytest.raises(bl.BNNSError, match="weight_hh_l0: expected shape"):
        layer.load_state_dict({"weight_hh_l0": np.zeros(3)}, strict=False)


def test_load_state_dict_refuses_other_activations():
    a = trained_layer(gate_activations={"output": "relu6"})
    b = trained_layer(gate_activations={"output": "softsign"})
    match = (r"activation_output: the state's RELU6\(alpha=nan, beta=nan\) "
             r"differs from this layer's SOFTSIGN")
    with pytest.raises(bl.BNNSError, match=match):
        b.load_state_dict(a.state_dict())
    with pytest.raises(bl.BNNSError, match=r"activation_output: the state's RELU6\(alpha=nan, "
                                           r"beta=nan\) differs from this layer's default SIGMOID"):
        trained_layer().load_state_dict(a.state_dict(), strict=False)  # strict or not
    with pytest.raises(bl.BNNSError, match=r"missing key 'activation_output' \(without it the "
                                           r"state has the default SIGMOID, this layer RELU6"):
        a.load_state_dict(trained_layer().state_dict())
    a.load_state_dict(trained_layer().state_dict(), strict=False)  # the weights, if you want them
    # the entries of the defaults (given explicitly) load into a layer with the defaults
    explicit = trained_layer(gate_activations={"input": "sigmoid"}).state_dict()
    assert "activation_input" in explicit
    trained_layer().load_state_dict(explicit)
    with pytest.raises(bl.BNNSError, match="unexpected key 'activation_other'"):
        trained_layer().load_state_dict(dict(explicit, activation_other=np.zeros(3)))


@pytest.mark.parametrize("kwargs", KEEP_CASES)
def test_pickle_and_deepcopy(kwargs):
    a = trained_layer(**kwargs)
    for b in (pickle.loads(pickle.dumps(a)), copy.deepcopy(a), copy.copy(a)):
        assert_same_layer(a, b)
        b.parameters()["weight_hh_l0"][...] = 0  # independent
        assert np.all(a.parameters()["weight_hh_l0"] != 0)
        assert (b.gate_activations is None
                or b.gate_activations["forget"] is not a.gate_activations["forget"])


def test_copy_keeps_the_random_state_and_not_the_training_forward():
    a = bl.LSTM(3, 4, 2, dropout=0.5, seed=3)
    x = np.ones((5, 2, 3), np.float32)
    a(x)  # a training forward: b must not be able to differentiate it
    b = copy.deepcopy(a)
    with pytest.raises(bl.BNNSError, match="backward: no training forward"):
        b.backward(np.ones((5, 2, 4), np.float32))
    np.testing.assert_array_equal(a(x)[0], b(x)[0])  # same dropout masks from the same random state
    y, _ = b(x)
    dx, _ = b.backward(np.ones_like(y))
    assert dx.shape == x.shape


@pytest.mark.parametrize("kwargs", KEEP_CASES)
def test_save_load_round_trip(tmp_path, kwargs):
    a = trained_layer(**kwargs)
    path = tmp_path / "layer.bin"
    a.save(path)
    assert path.exists() and not (tmp_path / "layer.bin.npz").exists()  # written as named
    with np.load(path, allow_pickle=False) as archive:  # readable without pickle
        config = json.loads(str(archive["config"][()]))
        assert config["input_size"] == 3 and config["peephole"] == kwargs.get("peephole")
    b = bl.LSTM.load(path)
    assert_same_layer(a, b)
    buffer = io.BytesIO()  # file objects too
    a.save(buffer)
    buffer.seek(0)
    assert_same_layer(a, bl.LSTM.load(buffer))
    assert_same_layer(a, bl.LSTM.load(str(path)))


def saved_bytes(layer=None):
    buffer = io.BytesIO()
    (layer or trained_layer()).save(buffer)
    return buffer.getvalue()


def rewritten(tmp_path, change):
    """A saved layer's entries, changed by ``change(entries)``, written as a new .npz."""
    with np.load(io.BytesIO(saved_bytes()), allow_pickle=False) as archive:
        entries = {name: archive[name] for name in archive.files}
    change(entries)
    path = tmp_path / "changed.npz"
    np.savez(path, **entries)
    return path


def test_load_refusals(tmp_path):
    data = saved_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(bl.BNNSError,
                       match=r"truncated.npz: not a file written by bnnslstm.LSTM.save"):
        bl.LSTM.load(truncated)

    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.arange(3))
    with pytest.raises(bl.BNNSError,
                       match=r"foreign.npz: not a file written by bnnslstm.LSTM.save .*\['a'\]"):
        bl.LSTM.load(foreign)

    single = tmp_path / "single.npy"
    np.save(single, np.arange(3))
    with pytest.raises(bl.BNNSError, match=r"single.npy: not a file written by bnnslstm.LSTM.save "
                                           r"\(an .npy array, not an .npz archive"):
        bl.LSTM.load(single)

    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(bl.BNNSError, match=r"text.npz: not a file written by"):
        bl.LSTM.load(text)

    with pytest.raises(bl.BNNSError, match=r"missing.npz: cannot read it \(No such file"):
        bl.LSTM.load(tmp_path / "missing.npz")

    def objects(entries):
        entries["state.weight_hh_l0"] = np.array([{"code": "evil"}] * 16, dtype=object)
    with pytest.raises(bl.BNNSError, match=r"changed.npz: entry 'state.weight_hh_l0' holds "
                                           r"Python objects, not numbers") as info:
        bl.LSTM.load(rewritten(tmp_path, objects))
    assert "allow_pickle" not in str(info.value)  # numpy's advice to unpickle is not for users

    def version(entries):
        entries["format_version"] = np.array(99)
    with pytest.raises(bl.BNNSError, match=r"format_version 99 \(this bnnslstm reads 1\)"):
        bl.LSTM.load(rewritten(tmp_path, version))

    def bad_json(entries):
        entries["config"] = np.array("{not json")
    with pytest.raises(bl.BNNSError, match=r"config: not a JSON configuration"):
        bl.LSTM.load(rewritten(tmp_path, bad_json))

    def bad_config(entries):
        config = json.loads(str(entries["config"][()]))
        config["hidden_size"] = -4
        entries["config"] = np.array(json.dumps(config))
    with pytest.raises(bl.BNNSError,
                       match=r"config.hidden_size: expected a positive integer, got -4"):
        bl.LSTM.load(rewritten(tmp_path, bad_config))

    def unknown_config(entries):
        config = json.loads(str(entries["config"][()]))
        config["proj_size"] = 2
        entries["config"] = np.array(json.dumps(config))
    with pytest.raises(bl.BNNSError, match=r"config: unknown keys \['proj_size'\]"):
        bl.LSTM.load(rewritten(tmp_path, unknown_config))

    def wrong_shape(entries):
        entries["state.weight_hh_l1"] = np.zeros((3, 3), np.float32)
    with pytest.raises(bl.BNNSError, match=r"weight_hh_l1: expected shape \(16, 4\), got \(3, 3\)"):
        bl.LSTM.load(rewritten(tmp_path, wrong_shape))

    def missing(entries):
        del entries["state.bias_hh_l0"]
    with pytest.raises(bl.BNNSError, match=r"missing key 'bias_hh_l0'"):
        bl.LSTM.load(rewritten(tmp_path, missing))

    def extra(entries):
        entries["payload"] = np.zeros(2)
    with pytest.raises(bl.BNNSError, match=r"unexpected entries \['payload'\]"):
        bl.LSTM.load(rewritten(tmp_path, extra))


def test_saved_file_is_a_plain_npz():
    with zipfile.ZipFile(io.BytesIO(saved_bytes())) as archive:
        names = sorted(archive.namelist())
    assert names[:3] == ["config.npy", "format.npy", "format_version.npy"]
    assert "state.weight_ih_l0.npy" in names and "state.bias_hh_l1_reverse.npy" in names
