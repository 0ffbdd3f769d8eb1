"""ONNX export and load of LSTM layers (needs the ``onnx`` package).

Imported only on request (``import bnnslstm.onnx``); ``import bnnslstm`` never imports
``onnx``.

- :func:`export` writes a :class:`bnnslstm.LSTM` or :class:`bnnslstm.torch.LSTM` as an ONNX
  model: one ``LSTM`` node per layer, inputs ``input`` (and optionally ``h0``, ``c0``,
  ``sequence_lens``), outputs ``output``, ``h_n``, ``c_n`` shaped as PyTorch's.
- :func:`load` reads the ``LSTM`` nodes of a model (as :func:`export` and
  ``torch.onnx.export`` write them) into a :class:`bnnslstm.LSTM`.

ONNX's LSTM stacks its gates i, o, f, c (PyTorch and bnnslstm: i, f, g, o), keeps two biases
per gate (``B = [Wb, Rb]``), three diagonal peepholes ``P = [i, o, f]`` and one activation
for the three sigmoid-like gates. What one side cannot express is refused with
:class:`~bnnslstm.BNNSError`.
"""

import inspect
import math
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .activations import GATES
from .enums import ActivationFunction as F
from .errors import BNNSError
from .layer import LSTM
from .parameters import Activation

__all__ = ["export", "load"]

_TO_ONNX_ORDER = (0, 3, 1, 2)  # ONNX's i, o, f, c from the i, f, g, o blocks
_FROM_ONNX_ORDER = (0, 2, 3, 1)  # i, f, g, o from ONNX's i, o, f, c blocks
_ALPHA = {"Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh", "HardSigmoid", "Elu"}
_BETA = {"Affine", "ScaledTanh", "HardSigmoid"}
_ONNX_DEFAULTS = {"LeakyRelu": (0.01, None), "ThresholdedRelu": (1.0, None),
                  "HardSigmoid": (0.2, 0.5), "Elu": (1.0, None)}
# ops that may sit between the graph's inputs, the LSTM nodes and the graph's outputs
_GLUE = {"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Concat", "Slice", "Identity", "Constant",
         "Shape", "Gather", "Expand", "ConstantOfShape", "Cast"}


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
def _layer_config(layer):
    """Sizes, flags, activations and per-layer-and-direction numpy weights of either layer."""
    if isinstance(layer, LSTM):
        named = layer.parameters()
        activations = getattr(layer, "gate_activations", None)
        hidden = getattr(layer, "hidden_activation", None)
        if activations is not None:
            activations = dict(activations,
                               hidden=hidden if hidden is not None else Activation(F.TANH))
        weights = {}
        for name, array in named.items():
            if name.startswith("bias_"):
                weights["bias_ih_" + name[5:]] = np.asarray(array)
                weights["bias_hh_" + name[5:]] = np.zeros_like(array)
            else:
                weights[name] = np.asarray(array)
        dropout_active = False
    elif type(layer).__module__ == "bnnslstm.torch" and type(layer).__name__ == "LSTM":
        weights = {k: v.detach().cpu().numpy() for k, v in layer.state_dict().items()}
        activations = layer._activations
        dropout_active = layer.training and layer.dropout > 0 and layer.num_layers > 1
    else:
        raise BNNSError("layer: expected a bnnslstm.LSTM or a bnnslstm.torch.LSTM, "
                        f"got {type(layer).__name__}")
    if dropout_active:
        raise BNNSError(f"layer: dropout={layer.dropout} between layers in training mode has no "
                        f"ONNX form (ONNX models run inference): call layer.eval() first")
    if layer.peephole == "full":
        raise BNNSError("layer.peephole: full peephole matrices have no ONNX form (ONNX's LSTM has "
                        "diagonal peepholes only)")
    return weights, activations


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

    Refused with :class:`~bnnslstm.BNNSError`: full peepholes, a peephole on the candidate
    gate (ONNX has none; a diagonal peephole whose candidate entries are all 0 is fine),
    different activations on the input, forget and output gates, an activation ONNX's
    LSTM lacks, a torch module in training mode with dropout between layers, and opsets
    below 7.
    """
    if not isinstance(opset, int) or opset < 7:
        raise BNNSError(f"opset: expected an integer of at least 7 (ONNX's LSTM with its current "
                        f"inputs), got {opset!r}")
    weights, activations = _layer_config(layer)
    I, H, L = layer.input_size, layer.hidden_size, layer.num_layers
    D = 2 if layer.bidirectional else 1
    dtype = np.float64 if weights["weight_hh_l0"].dtype == np.float64 else np.float32
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    acts = _onnx_activations(activations)
    attributes = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward"}
    if acts is not None:
        attributes["activations"] = [name for name, _, _ in acts] * D
        alphas = [a for name, a, _ in acts * D if name in _ALPHA]
        betas = [b for name, _, b in acts * D if name in _BETA]
        if alphas:
            attributes["activation_alpha"] = alphas
        if betas:
            attributes["activation_beta"] = betas

    def gates(array):  # [4H...] i, f, g, o -> i, o, f, c
        return np.concatenate([array[k * H:(k + 1) * H] for k in _TO_ONNX_ORDER])

    nodes, initializers = [], []

    def constant(name, array):
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    inputs = [helper.make_tensor_value_info("input", elem, ["batch", "time", I] if layer.batch_first
                                            else ["time", "batch", I])]
    state_shape = [L * D, "batch", H]
    if initial_states:
        inputs += [helper.make_tensor_value_info(n, elem, state_shape) for n in ("h0", "c0")]
    if sequence_lens:
        inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, ["batch"]))
    x = "input"
    if layer.batch_first:
        nodes.append(helper.make_node("Transpose", [x], ["input_tbi"], perm=[1, 0, 2],
                                      name="input_to_time_major"))
        x = "input_tbi"
    flatten = constant("flatten_directions", np.array([0, 0, -1], np.int64))
    hs, cs = [], []
    for l in range(L):
        W, R, Bs, P = [], [], [], []
        for d in range(D):
            suffix = f"l{l}" + ("_reverse" if d else "")
            W.append(gates(weights[f"weight_ih_{suffix}"]))
            R.append(gates(weights[f"weight_hh_{suffix}"]))
            if layer.bias:
                Bs.append(np.concatenate([gates(weights[f"bias_ih_{suffix}"]),
                                          gates(weights[f"bias_hh_{suffix}"])]))
            if layer.peephole == "diagonal":
                peep = weights[f"weight_ch_{suffix}"]
                if np.any(peep[2 * H:3 * H] != 0):
                    raise BNNSError(f"weight_ch_{suffix}: the candidate gate's peepholes are not "
                                    f"0, and ONNX's LSTM has peepholes on the input, output and "
                                    f"forget gates only")
                P.append(np.concatenate([peep[0:H], peep[3 * H:4 * H], peep[H:2 * H]]))
        lstm_inputs = [x, constant(f"W_l{l}", np.stack(W).astype(dtype)),
                       constant(f"R_l{l}", np.stack(R).astype(dtype)),
                       constant(f"B_l{l}", np.stack(Bs).astype(dtype)) if Bs else "",
                       "sequence_lens" if sequence_lens else ""]
        if initial_states:
            for name in ("h0", "c0"):
                starts = constant(f"{name}_start_l{l}", np.array([l * D], np.int64))
                ends = constant(f"{name}_end_l{l}", np.array([(l + 1) * D], np.int64))
                axes = constant(f"{name}_axes_l{l}", np.array([0], np.int64))
                nodes.append(helper.make_node("Slice", [name, starts, ends, axes], [f"{name}_l{l}"],
                                              name=f"{name}_slice_l{l}"))
            lstm_inputs += ["h0_l" + str(l), "c0_l" + str(l)]
        else:
            lstm_inputs += ["", ""]
        lstm_inputs.append(constant(f"P_l{l}", np.stack(P).astype(dtype)) if P else "")
        while lstm_inputs[-1] == "":
            lstm_inputs.pop()
        nodes.append(helper.make_node("LSTM", lstm_inputs, [f"Y_l{l}", f"h_n_l{l}", f"c_n_l{l}"],
                                      name=f"lstm_l{l}", **attributes))
        # [T][D][B][H] -> [T][B][D][H] -> [T][B][D*H]
        nodes.append(helper.make_node("Transpose", [f"Y_l{l}"], [f"Y_tbdh_l{l}"], perm=[0, 2, 1, 3],
                                      name=f"directions_last_l{l}"))
        nodes.append(helper.make_node("Reshape", [f"Y_tbdh_l{l}", flatten], [f"y_l{l}"],
                                      name=f"flatten_l{l}"))
        x = f"y_l{l}"
        hs.append(f"h_n_l{l}")
        cs.append(f"c_n_l{l}")
    if layer.batch_first:
        nodes.append(helper.make_node("Transpose", [x], ["output"], perm=[1, 0, 2],
                                      name="output_to_batch_major"))
    else:
        nodes.append(helper.make_node("Identity", [x], ["output"], name="output"))
    for name, parts in (("h_n", hs), ("c_n", cs)):
        nodes.append(helper.make_node("Concat", parts, [name], axis=0, name=name) if L > 1
                     else helper.make_node("Identity", parts, [name], name=name))
    outputs = [helper.make_tensor_value_info("output", elem, ["batch", "time", D * H]
                                             if layer.batch_first else ["time", "batch", D * H]),
               helper.make_tensor_value_info("h_n", elem, state_shape),
               helper.make_tensor_value_info("c_n", elem, state_shape)]
    graph = helper.make_graph(nodes, "bnnslstm_LSTM", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="bnnslstm")
    model.ir_version = min(model.ir_version, _ir_version(opset))
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, os.fspath(path))
    return model


def _ir_version(opset):
    """The oldest IR version that carries ``opset`` (so older runtimes read the file), at
    least 4 (before it, initializers had to be listed as graph inputs too)."""
    for ir, op in ((4, 9), (5, 10), (6, 11), (7, 12), (7, 13), (8, 14), (8, 15), (8, 16),
                   (8, 17), (9, 18), (9, 19), (9, 20), (10, 21)):
        if opset <= op:
            return ir
    return onnx.IR_VERSION


# ---------------------------------------------------------------------- load
class _Graph:
    """What load needs of a graph: producers, constant values (initializers, Constant nodes,
    through Identity), node names for messages."""

    def __init__(self, graph):
        self.graph = graph
        self.producer = {}
        for node in graph.node:
            for out in node.output:
                self.producer[out] = node
        self.values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
        self.inputs = {i.name for i in graph.input} - set(self.values)

    @staticmethod
    def label(node):
        return f"node {node.name or '(unnamed)'!r} ({node.op_type})"

    def constant(self, name, what, node):
        """The value of tensor ``name`` when it is a constant, else BNNSError naming ``node``."""
        seen = name
        while name not in self.values:
            producer = self.producer.get(name)
            if producer is None or producer.op_type not in ("Constant", "Identity"):
                raise BNNSError(f"{self.label(node)}: its {what} ({seen!r}) is not a constant "
                                f"(an initializer or Constant node), so its weights cannot be read")
            if producer.op_type == "Identity":
                name = producer.input[0]
                continue
            attribute = producer.attribute[0]
            if attribute.name != "value":
                raise BNNSError(f"{self.label(producer)}: a Constant with {attribute.name!r} "
                                f"is not read")
            self.values[name] = numpy_helper.to_array(attribute.t)
        return self.values[name]

    def source(self, name, node, stop):
        """Walk back from tensor ``name`` through glue ops (one data input each) to a tensor in
        ``stop`` (an LSTM's output or a graph input); returns (tensor, glue nodes met)."""
        met = []
        while name not in stop:
            producer = self.producer.get(name)
            if producer is None:
                raise BNNSError(f"{self.label(node)}: its input {name!r} does not come from the "
                                f"graph's input or the previous LSTM")
            if producer.op_type not in ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity",
                                        "Cast"):
                raise BNNSError(f"{self.label(producer)}: between the model's input and the LSTM "
                                f"nodes only Transpose, Reshape, Squeeze, Unsqueeze, Identity and "
                                f"Cast are read, not {producer.op_type}")
            met.append(producer)
            name = producer.input[0]
        return name, met


def _attributes(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def load(path_or_model, *, dtype=np.float32):
    """A :class:`bnnslstm.LSTM` with the weights of the ``LSTM`` nodes of an ONNX model.

    ``path_or_model`` is a file name or an :class:`onnx.ModelProto`. The model must be a
    chain of LSTM nodes (one per layer, all of one direction, hidden size and activations)
    with the glue exporters write around them (Transpose, Reshape, Squeeze, Unsqueeze,
    Concat, Slice, Identity, Constant, Shape, Gather, Expand, ConstantOfShape, Cast):
    :func:`export`'s models and ``torch.onnx.export``'s of :class:`torch.nn.LSTM`. A
    Transpose ``[1, 0, 2]`` before the first LSTM (or ``layout=1``) means ``batch_first``.
    The two ONNX biases become bnnslstm's one (``Wb + Rb``); peepholes become a diagonal
    peephole with 0 on the candidate gate.

    Refused with :class:`~bnnslstm.BNNSError` naming the node: any other op, weights that are
    not constants, ``clip``, ``input_forget=1``, ``direction="reverse"`` (bnnslstm's
    directions are forward, or both), layers that disagree, and non-default activations
    when this bnnslstm.LSTM has no activation arguments.
    """
    model = path_or_model
    if isinstance(model, (str, os.PathLike)):
        model = onnx.load(os.fspath(model))
    if not isinstance(model, onnx.ModelProto):
        raise BNNSError("path_or_model: expected a file name or an onnx.ModelProto, "
                        f"got {type(model).__name__}")
    g = _Graph(model.graph)
    for node in model.graph.node:
        if (node.domain not in ("", "ai.onnx")
                or (node.op_type not in _GLUE and node.op_type != "LSTM")):
            raise BNNSError(f"{g.label(node)}: bnnslstm.onnx.load reads LSTM nodes and the glue "
                            f"around them ({', '.join(sorted(_GLUE))}), not {node.op_type}")
    lstms = [node for node in model.graph.node if node.op_type == "LSTM"]
    if not lstms:
        raise BNNSError("model: it has no LSTM node")
    layers, batch_first, stop = [], False, set(g.inputs)
    for k, node in enumerate(lstms):
        attrs = _attributes(node)
        if attrs.get("clip") is not None:
            raise BNNSError(f"{g.label(node)}: clip={attrs['clip']} (clipping the gates' inputs) "
                            f"has no counterpart in BNNS's LSTM")
        if attrs.get("input_forget", 0):
            raise BNNSError(f"{g.label(node)}: input_forget=1 (coupled input and forget gates) has "
                            f"no counterpart in BNNS's LSTM")
        direction = attrs.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else direction
        if direction not in ("forward", "bidirectional"):
            raise BNNSError(f"{g.label(node)}: direction={direction!r}: bnnslstm's layers run "
                            f"forward or in both directions")
        layout = attrs.get("layout", 0)
        source, glue = g.source(node.input[0], node, stop)
        if k == 0:
            if source not in g.inputs:
                raise BNNSError(f"{g.label(node)}: its input does not come from a graph input")
            transposes = [n for n in glue if n.op_type == "Transpose"]
            perms = [list(_attributes(n).get("perm", [])) for n in transposes]
            if perms not in ([], [[1, 0, 2]]):
                raise BNNSError(f"{g.label(transposes[0])}: a Transpose with perm={perms[0]} "
                                f"before the first LSTM is not read (only [1, 0, 2], batch_first)")
            batch_first = bool(perms) != bool(layout)
        elif source != lstms[k - 1].output[0]:
            raise BNNSError(f"{g.label(node)}: its input is not the previous LSTM node's output Y")
        else:
            for n in glue:
                if (n.op_type == "Transpose" and list(_attributes(n).get("perm", []))
                        not in ([0, 2, 1, 3], [1, 0, 2, 3])):
                    raise BNNSError(f"{g.label(n)}: a Transpose with "
                                    f"perm={list(_attributes(n)['perm'])} between LSTM layers is "
                                    f"not the directions-last one [0, 2, 1, 3]")
        if node.input[0:1] and k > 0 and layout != _attributes(lstms[0]).get("layout", 0):
            raise BNNSError(f"{g.label(node)}: its layout differs from the first LSTM's")
        stop = {node.output[0]} if node.output else set()
        inputs = list(node.input) + [""] * (8 - len(node.input))
        W = g.constant(inputs[1], "W input", node)
        R = g.constant(inputs[2], "R input", node)
        B = g.constant(inputs[3], "B input", node) if inputs[3] else None
        P = g.constant(inputs[7], "P input", node) if inputs[7] else None
        names = attrs.get("activations")
        names = [n.decode() if isinstance(n, bytes) else n for n in names] if names else None
        layers.append((node, attrs, W, R, B, P, names))
    # one configuration for every layer
    node0, attrs0, W0, R0, _, _, _ = layers[0]
    D = W0.shape[0]
    H = int(attrs0.get("hidden_size", R0.shape[-1]))
    I = W0.shape[2]
    for node, _, W, R, B, P, _ in layers:
        X = I if node is node0 else D * H
        if (W.shape != (D, 4 * H, X) or R.shape != (D, 4 * H, H)
                or (B is not None and B.shape != (D, 8 * H))
                or (P is not None and P.shape != (D, 3 * H))):
            raise BNNSError(f"{g.label(node)}: weight shapes W {W.shape}, R {R.shape}"
                            f"{'' if B is None else f', B {B.shape}'}"
                            f"{'' if P is None else f', P {P.shape}'} "
                            f"do not fit {D} direction(s), hidden size {H} and input size {X}")
    for key, what in ((lambda l: l[4] is None, "bias"), (lambda l: l[5] is None, "peepholes"),
                      (lambda l: l[6], "activations"),
                      (lambda l: (l[1].get("activation_alpha"), l[1].get("activation_beta")),
                       "activation alpha/beta")):
        if any(key(l) != key(layers[0]) for l in layers):
            node = next(l[0] for l in layers if key(l) != key(layers[0]))
            raise BNNSError(f"{g.label(node)}: its {what} differ from the first LSTM's (a "
                            f"bnnslstm.LSTM has one configuration for all layers)")
    activations = _load_activations(layers[0], D, g.label(node0))
    kwargs = {}
    if activations is not None:
        if "gate_activations" not in inspect.signature(LSTM).parameters:
            raise BNNSError(f"{g.label(node0)}: activations {layers[0][6]} are not the defaults, "
                            f"and this bnnslstm.LSTM takes no activation arguments")
        kwargs = {"gate_activations": {k: activations[k] for k in GATES},
                  "hidden_activation": activations["hidden"]}
    lstm = LSTM(I, H, len(layers), bidirectional=D == 2, batch_first=batch_first,
                bias=layers[0][4] is not None,
                peephole=None if layers[0][5] is None else "diagonal", dtype=dtype, **kwargs)
    params = lstm.parameters()

    def gates(array):  # [4H...] i, o, f, c -> i, f, g, o
        return np.concatenate([array[k * H:(k + 1) * H] for k in _FROM_ONNX_ORDER])

    for l, (_, _, W, R, B, P, _) in enumerate(layers):
        for d in range(D):
            suffix = f"l{l}" + ("_reverse" if d else "")
            params[f"weight_ih_{suffix}"][...] = gates(W[d])
            params[f"weight_hh_{suffix}"][...] = gates(R[d])
            if B is not None:
                params[f"bias_{suffix}"][...] = gates(B[d, :4 * H]) + gates(B[d, 4 * H:])
            if P is not None:
                p_i, p_o, p_f = P[d, :H], P[d, H:2 * H], P[d, 2 * H:]
                params[f"weight_ch_{suffix}"][...] = np.concatenate(
                    [p_i, p_f, np.zeros_like(p_i), p_o])
    return lstm


def _load_activations(layer, D, label):
    """The gates' and hidden activations of an LSTM node, or None for the defaults."""
    node, attrs, _, _, _, _, names = layer
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
        a = alphas.pop(0) if name in _ALPHA and alphas else default_a
        b = betas.pop(0) if name in _BETA and betas else default_b
        if (name in _ALPHA and a is None) or (name in _BETA and b is None):
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
