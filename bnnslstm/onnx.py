"""ONNX export and load of LSTM layers (needs the ``onnx`` package).

Imported only on request (``import bnnslstm.onnx``); ``import bnnslstm`` never imports
``onnx``.

- :func:`export` writes a :class:`bnnslstm.LSTM` or :class:`bnnslstm.torch.LSTM` as an ONNX
  model: one ``LSTM`` node per layer, inputs ``input`` (and optionally ``h0``, ``c0``,
  ``sequence_lens``), outputs ``output``, ``h_n``, ``c_n`` shaped as PyTorch's.
- :func:`load` reads the ``LSTM`` nodes of a model (as :func:`export` and
  ``torch.onnx.export`` write them) into a :class:`bnnslstm.LSTM`; out of a larger model
  (an LSTM with a Linear head, say) when told where the LSTM layers end
  (``output_names``) and, if they do not read the model's input, where they start
  (``input_names``). It warns (:class:`LeftOutWarning`) with the nodes it left out.

ONNX's LSTM stacks its gates i, o, f, c (PyTorch and bnnslstm: i, f, g, o), keeps two biases
per gate (``B = [Wb, Rb]``), three diagonal peepholes ``P = [i, o, f]`` and one activation
for the three sigmoid-like gates: ``bnnslstm._weights`` maps the weights, this module the
graph and the activations. What one side cannot express is refused with
:class:`~bnnslstm.BNNSError`; so is every malformed file (``_onnx_read.py`` reads them).
"""

import math
import os

import numpy as np
import onnx
from onnx import TensorProto, helper

from ._onnx_read import (
    GLUE,
    Graph,
    LeftOutWarning,  # public here: bnnslstm.onnx.LeftOutWarning
    attributes,
    check_model,
    hint,
    label,
    read_model,
    readable,
    region,
    warn_left_out,
)
from ._onnx_write import ALPHA, BETA, GraphWriter, ir_version, lstm_attributes
from ._weights import IFO, Layout, state_from_onnx, to_onnx
from .activations import GATES
from .enums import ActivationFunction as F
from .errors import BNNSError
from .layer import LSTM
from .parameters import Activation

__all__ = ["LeftOutWarning", "export", "load"]

_ONNX_DEFAULTS = {"LeakyRelu": (0.01, None), "ThresholdedRelu": (1.0, None),
                  "HardSigmoid": (0.2, 0.5), "Elu": (1.0, None)}
# ---------------------------------------------------------------------- activations
def _to_onnx_activation(activation, what):
    """(ONNX name, alpha, beta) of a bnnslstm Activation (alpha/beta None where unused)."""
    function, a, b = F(activation.function), float(activation.alpha), float(activation.beta)
    forms = {F.SIGMOID: ("Sigmoid", None, None), F.TANH: ("Tanh", None, None),
             F.RECTIFIED_LINEAR: ("Relu", None, None), F.SOFTSIGN: ("Softsign", None, None),
             F.IDENTITY: ("Affine", 1.0, 0.0), F.LINEAR: ("Affine", a, 0.0),
             F.LINEAR_WITH_BIAS: ("Affine", a, b), F.LEAKY_RECTIFIED_LINEAR: ("LeakyRelu", a, None),
             F.SCALED_TANH: ("ScaledTanh", a, b), F.HARD_SIGMOID: ("HardSigmoid", a, b),
             F.ELU: ("Elu", a, None)}
    if function in forms:
        return forms[function]
    if function == F.SOFTPLUS:
        if a == 1 and b == 1:
            return "Softplus", None, None
        raise BNNSError(f"{what}: SOFTPLUS with alpha={a}, beta={b} has no ONNX form (ONNX's "
                        f"Softplus is log(1 + e^x), alpha = beta = 1)")
    if function == F.THRESHOLD:
        if b == 0:
            return "ThresholdedRelu", a, None
        raise BNNSError(f"{what}: THRESHOLD with beta={b} has no ONNX form (ONNX's ThresholdedRelu "
                        f"gives 0 below alpha, beta = 0)")
    raise BNNSError(f"{what}: {function.name} is not among the activations of ONNX's LSTM "
                    f"(Sigmoid, Tanh, Relu, Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, "
                    f"HardSigmoid, Elu, Softsign, Softplus)")


def _from_onnx_activation(name, alpha, beta, where):
    """A bnnslstm Activation of an ONNX activation name with its alpha/beta."""
    key = name.lower()
    simple = {"sigmoid": F.SIGMOID, "tanh": F.TANH, "relu": F.RECTIFIED_LINEAR,
              "softsign": F.SOFTSIGN}
    if key in simple:
        return Activation(simple[key])
    if key == "affine":
        return Activation(F.LINEAR_WITH_BIAS, alpha=alpha, beta=beta)
    if key == "leakyrelu":
        return Activation(F.LEAKY_RECTIFIED_LINEAR, alpha=alpha)
    if key == "thresholdedrelu":
        return Activation(F.THRESHOLD, alpha=alpha, beta=0.0)
    if key == "scaledtanh":
        return Activation(F.SCALED_TANH, alpha=alpha, beta=beta)
    if key == "hardsigmoid":
        return Activation(F.HARD_SIGMOID, alpha=alpha, beta=beta)
    if key == "elu":
        return Activation(F.ELU, alpha=alpha)
    if key == "softplus":
        return Activation(F.SOFTPLUS, alpha=1.0, beta=1.0)
    raise BNNSError(f"{where}: activation {name!r} is not one of ONNX's LSTM activations")


def _same(a, b):
    return (F(a.function) == F(b.function) and
            all(x == y or (math.isnan(x) and math.isnan(y))
                for x, y in ((float(a.alpha), float(b.alpha)), (float(a.beta), float(b.beta)))))


# ---------------------------------------------------------------------- export
def _source(layer):
    """The layout and the state (numpy arrays) of either layer."""
    if isinstance(layer, LSTM):
        return Layout.of(layer), layer.state_dict()
    if type(layer).__module__ != "bnnslstm.torch" or type(layer).__name__ != "LSTM":
        raise BNNSError("layer: expected a bnnslstm.LSTM or a bnnslstm.torch.LSTM, "
                        f"got {type(layer).__name__}")
    if layer.training and layer.dropout > 0 and layer.num_layers > 1:
        raise BNNSError(f"layer: dropout={layer.dropout} between layers in training mode has no "
                        f"ONNX form (ONNX models run inference): call layer.eval() first")
    return Layout.of(layer), {k: v.detach().cpu().numpy() for k, v in layer.state_dict().items()}


def _onnx_activations(activations):
    """ONNX's (f, g, h) names and the alpha/beta lists for one direction, or None for the
    defaults."""
    if activations is None:
        return None
    i, f, o = activations["input"], activations["forget"], activations["output"]
    if not (_same(i, f) and _same(i, o)):
        raise BNNSError("gate_activations: the input, forget and output gates have different "
                        "activations; ONNX's LSTM applies one activation to all three")
    return [_to_onnx_activation(i, "gate_activations['input']"),
            _to_onnx_activation(activations["candidate"], "gate_activations['candidate']"),
            _to_onnx_activation(activations["hidden"], "hidden_activation")]


def export(layer, path, *, opset=17, initial_states=False, sequence_lens=False):
    """Write ``layer`` (a :class:`bnnslstm.LSTM` or :class:`bnnslstm.torch.LSTM`) as an ONNX model.

    The model computes the layer's inference forward (no dropout): input ``input``
    (``[T][B][I]``, ``[B][T][I]`` with ``batch_first``; ``T`` and ``B`` are free), with
    ``initial_states`` the inputs ``h0`` and ``c0`` (``[L*D][B][H]``), with
    ``sequence_lens`` the input ``sequence_lens`` (``[B]`` int32, each sample's length:
    outputs past it are 0 and ``h_n``, ``c_n`` are the states after its last step).
    Outputs ``output`` (``[T][B][D*H]`` or ``[B][T][D*H]``), ``h_n``, ``c_n``
    (``[L*D][B][H]``). ``path`` is a file name, or None to only return the model.
    Returns the :class:`onnx.ModelProto`.

    The model's element type is the layer's. A float64 layer gives a double model, which
    ONNX's LSTM allows but ONNX Runtime does not run ("LSTM operator does not support
    double"): for ONNX Runtime, export a float32 layer with the same weights
    (``bnnslstm.LSTM(..., dtype=numpy.float32)`` and its ``load_state_dict``).

    Refused with :class:`~bnnslstm.BNNSError`: full peepholes, a peephole on the candidate
    gate (ONNX has none; a diagonal peephole whose candidate entries are all 0 is fine),
    different activations on the input, forget and output gates, an activation ONNX's
    LSTM lacks, a torch module in training mode with dropout between layers, and opsets
    below 7.
    """
    if not isinstance(opset, int) or opset < 7:
        raise BNNSError(f"opset: expected an integer of at least 7 (ONNX's LSTM with its current "
                        f"inputs), got {opset!r}")
    layout, state = _source(layer)
    onnx_weights = to_onnx(layout, state)
    dtype = np.float64 if state["weight_hh_l0"].dtype == np.float64 else np.float32
    graph = GraphWriter(TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT)
    x = graph.inputs(layout, layer.batch_first, initial_states, sequence_lens)
    attributes = lstm_attributes(layout, _onnx_activations(layout.activations))
    for l, weights in enumerate(onnx_weights):
        x = graph.layer(l, layout.D, weights, dtype, x, attributes, initial_states,
                        sequence_lens)
    model = helper.make_model(graph.outputs(layout, layer.batch_first, x), opset_imports=[
        helper.make_opsetid("", opset)], producer_name="bnnslstm")
    model.ir_version = min(model.ir_version, ir_version(opset))
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, os.fspath(path))
    return model


# ---------------------------------------------------------------------- load
_SHAPES = {"W": "[num_directions][4*hidden_size][input_size]",
           "R": "[num_directions][4*hidden_size][hidden_size]",
           "B": "[num_directions][8*hidden_size]", "P": "[num_directions][3*hidden_size]"}


def load(path_or_model, *, dtype=np.float32, output_names=None, input_names=None):
    """A :class:`bnnslstm.LSTM` with the weights of the ``LSTM`` nodes of an ONNX model.

    ``path_or_model`` is a file name (external data are read from the model's folder, never
    outside it) or an :class:`onnx.ModelProto`. The LSTM nodes must form a chain (one per
    layer, all of one direction, hidden size and activations) with the glue exporters
    write around them (Transpose, Reshape, Squeeze, Unsqueeze, Concat, Slice, Identity,
    Constant, Shape, Gather, Expand, ConstantOfShape, Cast): :func:`export`'s models and
    ``torch.onnx.export``'s of :class:`torch.nn.LSTM`. A Transpose ``[1, 0, 2]`` before the
    first LSTM (or ``layout=1``) means ``batch_first``. The two ONNX biases become
    bnnslstm's one (``Wb + Rb``); peepholes ``P`` become ``peephole="diagonal",
    peephole_gates=("input", "forget", "output")``.

    Without ``output_names`` and ``input_names`` the whole model must be such a chain: a
    node of any other op is refused, and the message names the tensors to give as
    ``output_names`` when the LSTM layers can be read up to them.

    Parameters
    ----------
    dtype : numpy.float32 or numpy.float64
        The layer's element type, whatever the model's (the weights are converted to it).
    output_names : str or sequence of str, optional
        Tensors where the LSTM layers end, as ``onnx.utils.extract_model`` names them: the
        last LSTM node's output, or a tensor computed from it through glue (the input of a
        Linear head's MatMul, say). Only the nodes these are computed from are read.
    input_names : str or sequence of str, optional
        Tensors where the LSTM layers start, when the first LSTM does not read (through
        glue) one of the model's inputs: the output of an embedding, say. The default is
        the model's inputs.

    Warns
    -----
    LeftOutWarning
        When ``output_names`` or ``input_names`` left out nodes that compute something the
        layer does not (a head, an embedding), naming them; its ``nodes`` holds them all.
        Glue that only rearranges what was read (the Concat of the layers' final states,
        say) is not counted.

    Raises
    ------
    BNNSError
        Naming the node or tensor: any other op (between ``input_names`` and
        ``output_names`` when given), a tensor name the model lacks, weights that are not
        constants or not of a float type, shapes that do not fit the node's attributes,
        ``clip``, ``input_forget=1``, ``direction="reverse"`` (bnnslstm's directions are
        forward, or both), a constant non-zero initial state, layers that disagree, and
        every file that is not a valid ONNX model (undecodable, truncated, data that do
        not fit their dims, external data outside the model's folder...).
    """
    model = read_model(path_or_model)
    g = Graph(model.graph)
    starts, nodes = region(g, input_names, output_names)
    named = output_names is not None or input_names is not None
    for node in nodes:
        if not readable(node):
            advice = (hint(g) if not named else
                      "; the nodes that output_names are computed from, back to input_names (or "
                      "the model's inputs), must be LSTM nodes and glue")
            raise BNNSError(f"{label(node)}: bnnslstm.onnx.load reads LSTM nodes and the glue "
                            f"around them ({', '.join(sorted(GLUE))}), not "
                            f"{node.op_type}{advice}")
    lstms = [node for node in nodes if node.op_type == "LSTM"]
    if not lstms:
        raise BNNSError("model: it has no LSTM node" if not named
                        else "output_names: no LSTM node computes them" if output_names is not None
                        else "input_names: no LSTM node reads them")
    batch_first = _chain(g, lstms, starts, "the graph's input" if input_names is None
                         else "input_names")
    layers = [_read_lstm(g, node) for node in lstms]
    _check_layers_agree(layers)
    check_model(model)  # what load does not read must be valid too
    lstm = _layer_of(layers, batch_first, dtype)
    warn_left_out(g, nodes, starts, input_names, output_names)
    return lstm


def _layer_of(layers, batch_first, dtype):
    """The bnnslstm.LSTM of the LSTM nodes read (_read_lstm's dicts, checked to agree)."""
    first = layers[0]
    activations = _load_activations(first, first["D"], label(first["node"]))
    kwargs = {}
    if activations is not None:
        kwargs = {"gate_activations": {k: activations[k] for k in GATES},
                  "hidden_activation": activations["hidden"]}
    peepholes = first["P"] is not None
    lstm = LSTM(first["W"].shape[2], first["H"], len(layers), bidirectional=first["D"] == 2,
                batch_first=batch_first, bias=first["B"] is not None,
                peephole="diagonal" if peepholes else None,
                peephole_gates=IFO if peepholes else None, dtype=dtype, **kwargs)
    lstm.load_state_dict(state_from_onnx(lstm._layout, [
        (layer["W"], layer["R"], layer["B"], layer["P"]) for layer in layers]))
    return lstm


def _chain(g, lstms, starts, what):
    """Check that the LSTM nodes form one chain from one of the ``starts`` (``what`` names
    them); whether it is batch-first."""
    stop, batch_first = set(starts), False
    first_layout = attributes(lstms[0]).get("layout", 0)
    for k, node in enumerate(lstms):
        if not node.input or not node.input[0]:
            raise BNNSError(f"{label(node)}: its X input is missing (ONNX's LSTM requires it)")
        if not node.output or not node.output[0]:
            raise BNNSError(f"{label(node)}: its output Y is missing")
        layout = attributes(node).get("layout", 0)
        if layout not in (0, 1):
            raise BNNSError(f"{label(node)}: layout={layout} (ONNX's LSTM has 0, time-major, and "
                            f"1, batch-major)")
        if layout != first_layout:
            raise BNNSError(f"{label(node)}: its layout differs from the first LSTM's")
        source, glue = g.source(node.input[0], node, stop, what)
        perms = [list(attributes(n).get("perm", [])) for n in glue if n.op_type == "Transpose"]
        if k == 0:
            if source not in starts:
                raise BNNSError(f"{label(node)}: its input does not come from {what}")
            if perms not in ([], [[1, 0, 2]]):
                first = next(n for n in glue if n.op_type == "Transpose")
                raise BNNSError(f"{label(first)}: a Transpose with perm={perms[0]} before the "
                                f"first LSTM is not read (only [1, 0, 2], batch_first)")
            batch_first = bool(perms) != bool(layout)
        elif source != lstms[k - 1].output[0]:
            raise BNNSError(f"{label(node)}: its input is not the previous LSTM node's output Y")
        else:
            for n, perm in zip([n for n in glue if n.op_type == "Transpose"], perms):
                if perm not in ([0, 2, 1, 3], [1, 0, 2, 3]):
                    raise BNNSError(f"{label(n)}: a Transpose with perm={perm} between LSTM "
                                    f"layers is not the directions-last one [0, 2, 1, 3]")
        stop = {node.output[0]}
    return batch_first


def _read_lstm(g, node):
    """One LSTM node's attributes and weights, checked against each other."""
    attrs = attributes(node)
    where = label(node)
    if attrs.get("clip") is not None:
        raise BNNSError(f"{where}: clip={attrs['clip']} (clipping the gates' inputs) has no "
                        f"counterpart in BNNS's LSTM")
    if attrs.get("input_forget", 0):
        raise BNNSError(f"{where}: input_forget=1 (coupled input and forget gates) has no "
                        f"counterpart in BNNS's LSTM")
    direction = attrs.get("direction", "forward")
    if direction not in ("forward", "bidirectional"):
        raise BNNSError(f"{where}: direction={direction!r}: bnnslstm's layers run forward or in "
                        f"both directions")
    inputs = list(node.input) + [""] * (8 - len(node.input))
    for position, what in ((1, "W"), (2, "R")):
        if not inputs[position]:
            raise BNNSError(f"{where}: its {what} input is missing (ONNX's LSTM requires it)")
    for position, what in ((5, "initial_h"), (6, "initial_c")):
        if inputs[position] and g.nonzero_constant(inputs[position], node):
            raise BNNSError(f"{where}: its {what} input {inputs[position]!r} is a constant "
                            f"non-zero state, which a bnnslstm.LSTM does not keep (give h0, c0 to "
                            f"its forward)")
    names = {"W": inputs[1], "R": inputs[2], "B": inputs[3], "P": inputs[7]}
    layer = {what: g.weights(name, what, node) if name else None for what, name in names.items()}
    R = layer["R"]
    H = attrs.get("hidden_size", R.shape[-1] if R.ndim else 0)
    if H < 1:
        raise BNNSError(f"{where}: hidden_size={H}: expected a positive integer")
    D = 2 if direction == "bidirectional" else 1
    X = layer["W"].shape[-1] if layer["W"].ndim else 0
    expected = {"W": (D, 4 * H, X), "R": (D, 4 * H, H), "B": (D, 8 * H), "P": (D, 3 * H)}
    for what, array in layer.items():
        if array is not None and array.shape != expected[what]:
            raise BNNSError(f"{where}: {what} input {names[what]!r}: shape {array.shape} but "
                            f"ONNX's LSTM takes {_SHAPES[what]} = {expected[what]} here "
                            f"(direction={direction!r}, hidden_size={H})")
    activation_names = attrs.get("activations")
    layer.update(node=node, attrs=attrs, D=D, H=H, names=activation_names or None)
    return layer


def _check_layers_agree(layers):
    """One configuration for every layer, each layer's input the previous one's output."""
    first = layers[0]
    for layer in layers[1:]:
        node = layer["node"]
        if (layer["D"], layer["H"]) != (first["D"], first["H"]):
            raise BNNSError(f"{label(node)}: its direction or hidden_size differ from the first "
                            f"LSTM's (a bnnslstm.LSTM has one for all layers)")
        if layer["W"].shape[2] != first["D"] * first["H"]:
            raise BNNSError(f"{label(node)}: its W input takes {layer['W'].shape[2]} features, "
                            f"the previous layer gives {first['D'] * first['H']}")
    for key, what in ((lambda l: l["B"] is None, "bias"), (lambda l: l["P"] is None, "peepholes"),
                      (lambda l: l["names"], "activations"),
                      (lambda l: (l["attrs"].get("activation_alpha"),
                                  l["attrs"].get("activation_beta")), "activation alpha/beta")):
        differs = [layer for layer in layers if key(layer) != key(first)]
        if differs:
            raise BNNSError(f"{label(differs[0]['node'])}: its {what} differ from the first "
                            f"LSTM's (a bnnslstm.LSTM has one configuration for all layers)")


def _load_activations(layer, D, label):
    """The gates' and hidden activations of an LSTM node, or None for the defaults."""
    attrs, names = layer["attrs"], layer["names"]
    if not names:
        return None
    if len(names) != 3 * D:
        raise BNNSError(f"{label}: {len(names)} activations for {D} direction(s) (ONNX wants 3 "
                        f"per direction)")
    alphas = list(attrs.get("activation_alpha", []))
    betas = list(attrs.get("activation_beta", []))
    resolved = []
    for name in names:
        default_a, default_b = _ONNX_DEFAULTS.get(name, (None, None))
        a = alphas.pop(0) if name in ALPHA and alphas else default_a
        b = betas.pop(0) if name in BETA and betas else default_b
        if (name in ALPHA and a is None) or (name in BETA and b is None):
            raise BNNSError(f"{label}: activation {name} needs "
                            f"activation_alpha/activation_beta values")
        resolved.append((name, a, b))
    if D == 2 and resolved[:3] != resolved[3:]:
        raise BNNSError(f"{label}: the two directions have different activations {names} (a "
                        f"bnnslstm.LSTM has one set for both)")
    f, g, h = (_from_onnx_activation(n, a, b, label) for n, a, b in resolved[:3])
    if [n.lower() for n in names[:3]] == ["sigmoid", "tanh", "tanh"]:
        return None
    return {"input": f, "forget": f, "output": f, "candidate": g, "hidden": h}
