"""bnnslstm.onnx: exported models run in ONNX Runtime and match bnnslstm; torch.onnx.export's
models of torch.nn.LSTM load and match torch.nn.LSTM; every refusal."""

import subprocess
import sys
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import helper  # noqa: E402

import bnnslstm as bl  # noqa: E402
import bnnslstm.onnx as bo  # noqa: E402
from bnnslstm import Activation, BNNSError  # noqa: E402
from bnnslstm import ActivationFunction as F  # noqa: E402

I, H, T, B = 3, 4, 5, 3
TOL = 2e-6
IFO = ("input", "forget", "output")  # ONNX's peephole gates


def run(model, **feeds):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def inputs(L, D, batch_first, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(np.float32)
    h0 = rng.standard_normal((L * D, B, H)).astype(np.float32)
    c0 = rng.standard_normal((L * D, B, H)).astype(np.float32)
    return x, h0, c0


def diagonal_without_candidate(lstm):
    """A four-gate diagonal peephole whose candidate-gate entries are 0: it exports."""
    for name, array in lstm.parameters().items():
        if name.startswith("weight_ch"):
            array[2 * H:3 * H] = 0


PEEPHOLES = {None: {}, "ifo": {"peephole": "diagonal", "peephole_gates": IFO},
             "zero-candidate": {"peephole": "diagonal"}}


def test_import_bnnslstm_does_not_import_onnx():
    code = ("import sys, bnnslstm; "
            "assert 'onnx' not in sys.modules and 'onnxruntime' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("L, bidirectional, batch_first, peephole, states, lengths", [
    (1, False, False, None, False, False),
    (1, True, False, None, True, False),
    (2, False, True, "ifo", True, True),
    (2, True, True, None, False, True),
    (3, True, False, "ifo", True, True),
    (2, True, False, "zero-candidate", True, False),
    (3, False, False, None, False, False),
])
def test_export_matches_onnxruntime(tmp_path, L, bidirectional, batch_first, peephole, states,
                                    lengths):
    lstm = bl.LSTM(I, H, L, bidirectional=bidirectional, batch_first=batch_first, seed=L,
                   **PEEPHOLES[peephole])
    if peephole == "zero-candidate":
        diagonal_without_candidate(lstm)
    D = 2 if bidirectional else 1
    path = tmp_path / "lstm.onnx"
    bo.export(lstm, path, initial_states=states, sequence_lens=lengths)
    model = onnx.load(path)
    x, h0, c0 = inputs(L, D, batch_first)
    feeds = {"input": x}
    kwargs = {}
    if states:
        feeds.update(h0=h0, c0=c0)
        kwargs.update(h0=h0, c0=c0)
    if lengths:
        lens = np.array([5, 4, 2], np.int32)
        feeds["sequence_lens"] = lens
        kwargs["batch_sizes"] = np.array([(lens > t).sum() for t in range(T)])
    y, (h_n, c_n) = lstm.forward(x, training=False, **kwargs)
    oy, oh, oc = run(model, **feeds)
    assert oy.shape == y.shape and oh.shape == h_n.shape
    np.testing.assert_allclose(oy, y, atol=TOL)
    np.testing.assert_allclose(oh, h_n, atol=TOL)
    np.testing.assert_allclose(oc, c_n, atol=TOL)
    # and back: load gives the same layer, peepholes in ONNX's convention (i, f, o)
    back = bo.load(path)
    assert (back.num_layers, back.bidirectional, back.batch_first, back.peephole) == (
        L, bidirectional, batch_first, peephole and "diagonal")
    assert back.peephole_gates == (IFO if peephole else ())
    for name, array in lstm.parameters().items():
        if name.startswith("weight_ch") and peephole == "zero-candidate":
            array = np.delete(array, np.s_[2 * H:3 * H])  # the zero candidate entries
        np.testing.assert_allclose(back.parameters()[name], array, atol=1e-7)
    np.testing.assert_allclose(back.forward(x, training=False, **kwargs)[0], y, atol=TOL)


@pytest.mark.parametrize("opset", [7, 14, 17, 21])
def test_opsets(opset):
    lstm = bl.LSTM(I, H, 2, bidirectional=True, seed=0)
    model = bo.export(lstm, None, opset=opset)
    x, _, _ = inputs(2, 2, False)
    np.testing.assert_allclose(run(model, input=x)[0], lstm.forward(x, training=False)[0], atol=TOL)


def _gates(ifo, candidate):
    """The input, forget and output gates' activation ``ifo``, the candidate's ``candidate``."""
    return {"input": ifo, "forget": ifo, "output": ifo, "candidate": candidate}


ACTIVATION_SETS = [
    (_gates(Activation(F.HARD_SIGMOID, alpha=0.25, beta=0.4),
            Activation(F.SCALED_TANH, alpha=1.2, beta=0.7)), Activation(F.SOFTSIGN)),
    (_gates(Activation(F.SIGMOID), Activation(F.LEAKY_RECTIFIED_LINEAR, alpha=0.1)),
     Activation(F.ELU, alpha=0.8)),
    (_gates(Activation(F.SIGMOID), Activation(F.THRESHOLD, alpha=0.1, beta=0.0)),
     Activation(F.SOFTPLUS, alpha=1.0, beta=1.0)),
    (_gates(Activation(F.LINEAR_WITH_BIAS, alpha=0.2, beta=0.5), Activation(F.RECTIFIED_LINEAR)),
     Activation(F.IDENTITY)),
]


@pytest.mark.parametrize("gates, hidden", ACTIVATION_SETS)
def test_activations_through_torch_module(gates, hidden):
    torch = pytest.importorskip("torch")
    import bnnslstm.torch as bt

    torch.manual_seed(0)
    module = bt.LSTM(I, H, 2, bidirectional=True, gate_activations=gates,
                     hidden_activation=hidden).eval()
    model = bo.export(module, None, initial_states=True)
    x, h0, c0 = inputs(2, 2, False)
    with torch.no_grad():
        y, (_, c_n) = module(torch.from_numpy(x), (torch.from_numpy(h0), torch.from_numpy(c0)))
    oy, _, oc = run(model, input=x, h0=h0, c0=c0)
    np.testing.assert_allclose(oy, y.numpy(), atol=1e-5)
    np.testing.assert_allclose(oc, c_n.numpy(), atol=1e-5)
    # the numpy layer takes activations
    if "gate_activations" in bl.LSTM.__init__.__code__.co_varnames:
        back = bo.load(model)
        y2, _ = back.forward(x, h0, c0, training=False)
        np.testing.assert_allclose(y2, y.numpy(), atol=1e-5)


def test_torch_module_with_peepholes():
    torch = pytest.importorskip("torch")
    import bnnslstm.torch as bt

    torch.manual_seed(1)
    module = bt.LSTM(I, H, 2, batch_first=True, peephole="diagonal").eval()
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.startswith("weight_ch"):
                p[2 * H:3 * H] = 0
    x, _, _ = inputs(2, 1, True)
    with torch.no_grad():
        y, _ = module(torch.from_numpy(x))
    np.testing.assert_allclose(run(bo.export(module, None), input=x)[0], y.numpy(), atol=TOL)


@pytest.mark.parametrize("dynamo, L, bidirectional, batch_first", [
    (False, 1, False, False), (False, 2, True, True), (False, 3, False, True),
    (True, 2, True, True),  # the default (dynamo) exporter takes seconds: one shape
], ids=["torchscript-1", "torchscript-2-bi-bf", "torchscript-3-bf", "dynamo-2-bi-bf"])
def test_load_torch_onnx_export(tmp_path, dynamo, L, bidirectional, batch_first):
    torch = pytest.importorskip("torch")
    if dynamo:
        pytest.importorskip("onnxscript")
    torch.manual_seed(L)
    module = torch.nn.LSTM(I, H, L, bidirectional=bidirectional, batch_first=batch_first).eval()
    D = 2 if bidirectional else 1
    x, h0, c0 = inputs(L, D, batch_first)
    args = (torch.from_numpy(x), (torch.from_numpy(h0), torch.from_numpy(c0)))
    path = tmp_path / "torch.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=dynamo, verbose=False)
    lstm = bo.load(path)
    assert (lstm.num_layers, lstm.bidirectional, lstm.batch_first) == (
        L, bidirectional, batch_first)
    with torch.no_grad():
        y, (h_n, c_n) = module(*args)
    y2, (h2, c2) = lstm.forward(x, h0, c0, training=False)
    np.testing.assert_allclose(y2, y.numpy(), atol=TOL)
    np.testing.assert_allclose(h2, h_n.numpy(), atol=TOL)
    np.testing.assert_allclose(c2, c_n.numpy(), atol=TOL)


# ---------------------------------------------------------------------- refusals
def test_export_refusals():
    with pytest.raises(BNNSError, match="full peephole"):
        bo.export(bl.LSTM(I, H, peephole="full"), None)
    with pytest.raises(BNNSError, match=r"weight_ch_l0: the candidate gate's peephole is not 0.*"
                                        r"peephole_gates=\('input', 'forget', 'output'\)"):
        bo.export(bl.LSTM(I, H, peephole="diagonal", seed=0), None)
    with pytest.raises(BNNSError, match="opset"):
        bo.export(bl.LSTM(I, H), None, opset=6)
    with pytest.raises(BNNSError, match="expected a bnnslstm.LSTM"):
        bo.export(object(), None)


def test_export_refusals_torch_module():
    pytest.importorskip("torch")
    import bnnslstm.torch as bt

    with pytest.raises(BNNSError, match="different activations"):
        bo.export(bt.LSTM(I, H, gate_activations={"input": "tanh"}).eval(), None)
    with pytest.raises(BNNSError, match="GELU is not among"):
        bo.export(bt.LSTM(I, H, hidden_activation="gelu").eval(), None)
    with pytest.raises(BNNSError, match="SOFTPLUS with alpha"):
        bo.export(bt.LSTM(I, H, hidden_activation=Activation(F.SOFTPLUS, alpha=2.0, beta=1.0))
                  .eval(), None)
    with pytest.raises(BNNSError, match="THRESHOLD with beta"):
        bo.export(bt.LSTM(I, H, hidden_activation=Activation(F.THRESHOLD, alpha=0.0, beta=1.0))
                  .eval(), None)
    with pytest.raises(BNNSError, match="dropout.*training mode"):
        bo.export(bt.LSTM(I, H, 2, dropout=0.5), None)
    bo.export(bt.LSTM(I, H, 2, dropout=0.5).eval(), None)  # inference has no dropout


def lstm_model(extra_attributes=None, w_from_input=False, after=None):
    """A hand-written one-layer model, to break in one way."""
    lstm = bl.LSTM(I, H, seed=0)
    model = bo.export(lstm, None)
    graph = model.graph
    node = next(n for n in graph.node if n.op_type == "LSTM")
    for name, value in (extra_attributes or {}).items():
        node.attribute.append(helper.make_attribute(name, value))
    if w_from_input:
        graph.input.append(helper.make_tensor_value_info("W_free", onnx.TensorProto.FLOAT,
                                                         [1, 4 * H, I]))
        node.input[1] = "W_free"
    if after:
        out = next(n for n in graph.node if n.output[0] == "output")
        out.output[0] = "pre"
        graph.node.append(helper.make_node(after, ["pre", "pre"], ["output"], name="extra_op"))
    return model


def test_load_refusals(tmp_path):
    with pytest.raises(BNNSError, match="clip"):
        bo.load(lstm_model({"clip": 3.0}))
    with pytest.raises(BNNSError, match="input_forget=1"):
        bo.load(lstm_model({"input_forget": 1}))
    with pytest.raises(BNNSError, match="'lstm_l0'.*not a constant"):
        bo.load(lstm_model(w_from_input=True))
    with pytest.raises(BNNSError, match="'extra_op' \\(Add\\)"):
        bo.load(lstm_model(after="Add"))
    model = lstm_model()
    node = next(n for n in model.graph.node if n.op_type == "LSTM")
    next(a for a in node.attribute if a.name == "direction").s = b"reverse"
    with pytest.raises(BNNSError, match="reverse"):
        bo.load(model)
    with pytest.raises(BNNSError, match="no LSTM node"):
        bo.load(helper.make_model(helper.make_graph(
            [helper.make_node("Identity", ["a"], ["b"])], "g",
            [helper.make_tensor_value_info("a", onnx.TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, [1])])))
    with pytest.raises(BNNSError, match="expected a file name"):
        bo.load(42)


def test_load_refuses_other_glue_and_mixed_layers():
    model = bo.export(bl.LSTM(I, H, 2, batch_first=True, seed=0), None)
    transpose = next(n for n in model.graph.node if n.name == "directions_last_l0")
    next(a for a in transpose.attribute if a.name == "perm").ints[:] = [2, 0, 1, 3]
    with pytest.raises(BNNSError, match="'directions_last_l0'.*perm"):
        bo.load(model)
    model = bo.export(bl.LSTM(I, H, 2, batch_first=True, seed=0), None)
    first = next(n for n in model.graph.node if n.name == "input_to_time_major")
    next(a for a in first.attribute if a.name == "perm").ints[:] = [0, 2, 1]
    with pytest.raises(BNNSError, match="'input_to_time_major'.*perm"):
        bo.load(model)
    model = bo.export(bl.LSTM(I, H, 2, seed=0), None)
    node = next(n for n in model.graph.node if n.name == "lstm_l1")
    node.attribute.append(helper.make_attribute("activations", ["Relu", "Tanh", "Tanh"]))
    with pytest.raises(BNNSError, match="'lstm_l1'.*activations differ"):
        bo.load(model)


def test_load_activations_need_the_layers_arguments():
    pytest.importorskip("torch")
    import bnnslstm.torch as bt

    model = bo.export(bt.LSTM(I, H, hidden_activation="softsign").eval(), None)
    if "gate_activations" in bl.LSTM.__init__.__code__.co_varnames:
        assert bo.load(model).hidden_activation.function == F.SOFTSIGN
    else:
        with pytest.raises(BNNSError, match="takes no activation arguments"):
            bo.load(model)


# ---------------------------------------------------------------------- out of a larger model
def with_head(lstm, embedding=False, seed=0):
    """``lstm`` exported, with a Linear head (MatMul, Add: ``lstm_out`` -> ``logits``) after
    it and, with ``embedding``, an embedding (Gather of int64 ``tokens``) and a scaling
    (Mul) before it, whose output is the LSTM's ``input``: the commonest exported models.
    Returns (model, what the model computes from the LSTM's input, as a function)."""
    rng = np.random.default_rng(seed)
    model = bo.export(lstm, None)
    graph = model.graph
    width = lstm.D * lstm.hidden_size
    weight = rng.standard_normal((width, 2)).astype(np.float32)
    bias = rng.standard_normal(2).astype(np.float32)
    producer = next(n for n in graph.node if "output" in n.output)
    producer.output[list(producer.output).index("output")] = "lstm_out"
    graph.initializer.extend([onnx.numpy_helper.from_array(weight, "head_W"),
                              onnx.numpy_helper.from_array(bias, "head_b")])
    graph.node.extend([helper.make_node("MatMul", ["lstm_out", "head_W"], ["head_mm"],
                                        name="head_matmul"),
                       helper.make_node("Add", ["head_mm", "head_b"], ["logits"],
                                        name="head_add")])
    sequence = ["batch", "time"] if lstm.batch_first else ["time", "batch"]
    graph.output[0].CopyFrom(helper.make_tensor_value_info(
        "logits", onnx.TensorProto.FLOAT, [*sequence, 2]))
    table = rng.standard_normal((7, lstm.input_size)).astype(np.float32)
    if embedding:
        graph.initializer.extend([onnx.numpy_helper.from_array(table, "table"),
                                  onnx.numpy_helper.from_array(np.float32([0.5]), "scale")])
        nodes = [helper.make_node("Gather", ["table", "tokens"], ["embedded"], name="embed"),
                 helper.make_node("Mul", ["embedded", "scale"], ["input"], name="scale_mul"),
                 *graph.node]
        del graph.node[:]
        graph.node.extend(nodes)
        graph.input[0].CopyFrom(helper.make_tensor_value_info(
            "tokens", onnx.TensorProto.INT64, sequence))
    onnx.checker.check_model(model)

    def computes(x):
        """The whole model's logits of the LSTM's input ``x``, by bnnslstm."""
        return lstm.forward(x, training=False)[0] @ weight + bias

    return model, computes, table


HEAD_MESSAGE = (r"^node 'head_matmul' \(MatMul\): bnnslstm.onnx.load reads LSTM nodes and the "
                r"glue around them \(Cast, .*, Unsqueeze\), not MatMul; to read the LSTM layers "
                r"out of this larger model, name where they end: "
                r"load\(\.\.\., output_names=\['lstm_out'\]\)$")


def test_load_refuses_a_head_and_says_where_the_lstm_layers_end():
    model, _, _ = with_head(bl.LSTM(I, H, 2, seed=0))
    with pytest.raises(BNNSError, match=HEAD_MESSAGE):
        bo.load(model)


@pytest.mark.parametrize("L, bidirectional, batch_first", [
    (1, False, False), (2, True, True), (3, False, True)])
def test_load_output_names_takes_the_lstm_layers_out_of_a_model_with_a_head(
        L, bidirectional, batch_first):
    lstm = bl.LSTM(I, H, L, bidirectional=bidirectional, batch_first=batch_first, seed=L)
    model, computes, _ = with_head(lstm)
    with pytest.warns(bo.LeftOutWarning) as record:
        loaded = bo.load(model, output_names="lstm_out")
    assert len(record) == 1
    assert str(record[0].message) == (
        "bnnslstm.onnx.load read the LSTM layers up to output_names='lstm_out' and left out "
        "2 node(s) of the model: 'head_matmul' (MatMul), 'head_add' (Add)")
    assert [node.name for node in record[0].message.nodes] == ["head_matmul", "head_add"]
    assert record[0].filename == __file__  # the warning points at the caller
    assert (loaded.num_layers, loaded.bidirectional, loaded.batch_first) == (
        L, bidirectional, batch_first)
    x, _, _ = inputs(L, lstm.D, batch_first)
    logits, h_n, c_n = run(model, input=x)
    np.testing.assert_allclose(logits, computes(x), atol=1e-5)  # the model is lstm + head
    y, (h, c) = loaded.forward(x, training=False)
    np.testing.assert_allclose(y, lstm.forward(x, training=False)[0], atol=TOL)
    np.testing.assert_allclose(h, h_n, atol=TOL)
    np.testing.assert_allclose(c, c_n, atol=TOL)
    # the same layers when the names are the last LSTM node's Y, or every LSTM output
    for names in ([f"Y_l{L - 1}"], ("lstm_out", "h_n", "c_n")):
        with pytest.warns(bo.LeftOutWarning):
            again = bo.load(model, output_names=names)
        np.testing.assert_array_equal(again.forward(x, training=False)[0], y)


def test_load_output_names_may_stop_after_the_first_layers():
    lstm = bl.LSTM(I, H, 3, seed=0)
    model, _, _ = with_head(lstm)
    with pytest.warns(bo.LeftOutWarning) as record:
        first = bo.load(model, output_names="y_l0")
    assert first.num_layers == 1
    left = [node.name for node in record[0].message.nodes]
    assert "lstm_l1" in left and "lstm_l2" in left and left[-2:] == ["head_matmul", "head_add"]
    assert str(record[0].message).endswith(
        "left out 11 node(s) of the model: 'lstm_l1' (LSTM), 'directions_last_l1' (Transpose), "
        "'flatten_l1' (Reshape), 'lstm_l2' (LSTM), 'directions_last_l2' (Transpose), "
        "'flatten_l2' (Reshape), 'output' (Identity), 'h_n' (Concat) and 3 more (the warning's "
        "nodes lists them all)")
    for name, array in first.state_dict().items():
        np.testing.assert_array_equal(array, lstm.state_dict()[name])


def test_load_input_names_starts_after_an_embedding():
    lstm = bl.LSTM(I, H, 2, batch_first=True, seed=0)
    model, computes, table = with_head(lstm, embedding=True)
    with pytest.raises(BNNSError, match=r"^node 'scale_mul' \(Mul\): .* not Mul; to read LSTM "
                                        r"layers out of a larger model, name the tensors where "
                                        r"they end \(output_names\) and, if they do not read "
                                        r"the model's input, where they start \(input_names\)$"):
        bo.load(model)
    with pytest.raises(BNNSError, match=r"^node 'scale_mul' \(Mul\): .* not Mul; the nodes that "
                                        r"output_names are computed from, back to input_names"):
        bo.load(model, output_names="lstm_out")
    with pytest.warns(bo.LeftOutWarning) as record:
        loaded = bo.load(model, input_names="input", output_names=["lstm_out"])
    assert str(record[0].message).startswith(
        "bnnslstm.onnx.load read the LSTM layers from input_names='input' up to "
        "output_names=['lstm_out'] and left out 4 node(s) of the model: 'embed' (Gather), "
        "'scale_mul' (Mul), 'head_matmul' (MatMul), 'head_add' (Add)")
    tokens = np.random.default_rng(0).integers(0, 7, (B, T))
    x = table[tokens] * np.float32(0.5)
    logits = run(model, tokens=tokens)[0]
    np.testing.assert_allclose(logits, computes(x), atol=1e-5)
    np.testing.assert_allclose(loaded.forward(x, training=False)[0],
                               lstm.forward(x, training=False)[0], atol=TOL)


def test_load_names_refused():
    model, _, _ = with_head(bl.LSTM(I, H, seed=0))
    lstm_outputs = r"\(the LSTM nodes' outputs: \['Y_l0', 'h_n_l0', 'c_n_l0'\]\)"
    for names, match in [
        ("nope", r"^output_names: 'nope' is no tensor of the model " + lstm_outputs),
        ("head_W", r"^output_names: 'head_W' is an initializer, not computed by the model"),
        (["lstm_out", "input"], r"^output_names: 'input' is an input of the model, not computed"),
        ([], r"^output_names: expected one or more tensor names \(non-empty strings\), got \[\]"),
        (["lstm_out", ""], r"^output_names: expected one or more tensor names"),
        (3, r"^output_names: expected a tensor name or a sequence of them, got int"),
        ("logits", r"^node 'head_matmul' \(MatMul\): .* not MatMul; the nodes that output_names "
                   r"are computed from, back to input_names \(or the model's inputs\), must be "
                   r"LSTM nodes and glue$"),
        ("head_b", r"^output_names: 'head_b' is an initializer"),
    ]:
        with pytest.raises(BNNSError, match=match):
            bo.load(model, output_names=names)
    with pytest.raises(BNNSError, match=r"^input_names: 'nope' is no tensor of the model$"):
        bo.load(model, input_names="nope", output_names="lstm_out")
    with pytest.raises(BNNSError, match=r"^input_names: 'head_W' is an initializer"):
        bo.load(model, input_names="head_W", output_names="lstm_out")
    with pytest.raises(BNNSError, match=r"^node 'lstm_l0' \(LSTM\): its input 'input' does not "
                                        r"come from input_names or the previous LSTM$"):
        bo.load(model, input_names="head_mm", output_names="lstm_out")
    with pytest.raises(BNNSError, match=r"^output_names: no LSTM node computes them$"):
        bo.load(with_identity(model), output_names="copied")


def with_identity(model):
    """``model`` with an Identity of the graph's input as one more (dead) node."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    model.graph.node.append(helper.make_node("Identity", ["input"], ["copied"], name="copy"))
    return model


def test_load_names_covering_the_whole_model_warn_nothing():
    model = bo.export(bl.LSTM(I, H, 2, seed=0), None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lstm = bo.load(model, output_names=["output", "h_n", "c_n"])
    assert lstm.num_layers == 2


def test_load_an_embedding_read_as_glue_says_where_to_start():
    """A Gather straight before the first LSTM is glue to the op check, not to the chain's:
    the message says to start after it."""
    lstm = bl.LSTM(I, H, seed=0)
    model, _, _ = with_head(lstm, embedding=True)
    mul = next(n for n in model.graph.node if n.name == "scale_mul")
    model.graph.node.remove(mul)
    next(n for n in model.graph.node if n.name == "embed").output[0] = "input"
    with pytest.raises(BNNSError, match=r"^node 'embed' \(Gather\): between the model's input "
                                        r"and the LSTM nodes only .* not Gather; if the LSTM "
                                        r"layers start at its output, give load "
                                        r"input_names=\['input'\]$"):
        bo.load(model, output_names="lstm_out")
    with pytest.warns(bo.LeftOutWarning):
        bo.load(model, input_names="input", output_names="lstm_out")


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_load_torch_export_of_an_lstm_with_a_linear_head(tmp_path, dynamo):
    """torch.onnx.export of nn.LSTM + nn.Linear: refused as a whole, with the output_names
    to give; read with them."""
    torch = pytest.importorskip("torch")
    if dynamo:
        pytest.importorskip("onnxscript")

    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(I, H, 2, batch_first=True, bidirectional=True)
            self.head = torch.nn.Linear(2 * H, 3)

        def forward(self, x):
            return self.head(self.lstm(x)[0])

    torch.manual_seed(0)
    module = Tagger().eval()
    x, _, _ = inputs(2, 2, True)
    path = tmp_path / "tagger.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.from_numpy(x),), str(path), dynamo=dynamo,
                          verbose=False)
    with pytest.raises(BNNSError, match=r"\(MatMul\): .* name where they end: load\(\.\.\., "
                                        r"output_names=\[.+\]\)$") as info:
        bo.load(path)
    names = eval(str(info.value).rsplit("output_names=", 1)[1][:-1])
    with pytest.warns(bo.LeftOutWarning) as record:
        lstm = bo.load(path, output_names=names)
    assert [node.op_type for node in record[0].message.nodes] == ["MatMul", "Add"]
    assert (lstm.num_layers, lstm.bidirectional, lstm.batch_first) == (2, True, True)
    with torch.no_grad():
        expected = module.lstm(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(lstm.forward(x, training=False)[0], expected, atol=TOL)
