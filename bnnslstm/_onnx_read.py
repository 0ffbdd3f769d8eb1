"""Reading an ONNX file for :func:`bnnslstm.onnx.load`, every failure a BNNSError.

A model's bytes, its external data, its constant tensors and the attributes of its LSTM
nodes each come from a file that may be damaged, truncated or written by anything: this
module turns each into what load needs or into a :class:`~bnnslstm.BNNSError` naming the
file, tensor or node at fault, so that no protobuf, numpy or onnx exception reaches the
user. It also decides which part of the graph load reads: every node, or the region
between ``input_names`` and ``output_names`` (and which nodes that leaves out).
"""

import os
import warnings

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, helper, numpy_helper
from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data

from .errors import BNNSError

# ONNX's LSTM takes these element types (T: float16, float, double; bfloat16 from opset 22)
FLOAT_TYPES = {TensorProto.FLOAT16: "float16", TensorProto.FLOAT: "float",
               TensorProto.DOUBLE: "double", TensorProto.BFLOAT16: "bfloat16"}
# ops that may sit between the graph's inputs, the LSTM nodes and the graph's outputs
GLUE = {"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Concat", "Slice", "Identity", "Constant",
        "Shape", "Gather", "Expand", "ConstantOfShape", "Cast"}
# the attributes load reads, with the type ONNX gives them
_ATTRIBUTE_TYPES = {"hidden_size": AttributeProto.INT, "direction": AttributeProto.STRING,
                    "layout": AttributeProto.INT, "input_forget": AttributeProto.INT,
                    "clip": AttributeProto.FLOAT, "activations": AttributeProto.STRINGS,
                    "activation_alpha": AttributeProto.FLOATS,
                    "activation_beta": AttributeProto.FLOATS, "perm": AttributeProto.INTS}


def read_model(path_or_model):
    """The :class:`onnx.ModelProto` of a file name or a model, its external data read from
    the model's folder (never outside it)."""
    if isinstance(path_or_model, onnx.ModelProto):
        for tensor in _tensors(path_or_model):
            if uses_external_data(tensor):
                raise BNNSError(f"tensor {tensor.name!r}: its data is in an external file, and a "
                                f"model given as an onnx.ModelProto has no folder to find it in: "
                                f"give load the model's file name")
        return path_or_model
    if not isinstance(path_or_model, (str, os.PathLike)):
        raise BNNSError("path_or_model: expected a file name or an onnx.ModelProto, "
                        f"got {type(path_or_model).__name__}")
    path = os.fspath(path_or_model)
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        raise BNNSError(f"{path}: cannot read it ({error.strerror or error})") from None
    try:
        model = onnx.load_model_from_string(data)
    except Exception:  # protobuf's DecodeError and kin: whatever the reason, not a model
        raise BNNSError(f"{path}: not an ONNX model (the bytes do not decode as one; a damaged "
                        f"or truncated file?)") from None
    folder = os.path.dirname(os.path.abspath(path))
    for tensor in _tensors(model):
        if uses_external_data(tensor):
            try:
                load_external_data_for_tensor(tensor, folder)
            except Exception as error:  # onnx's ValidationError, OSError, bounds errors
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise BNNSError(f"tensor {tensor.name!r}: its external data cannot be read from "
                                f"the model's folder {folder!r}: {reason}") from None
    return model


def _tensors(model):
    """The graph's initializers and Constant values: the tensors load may read."""
    yield from model.graph.initializer
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.type == AttributeProto.TENSOR:
                yield attribute.t


def check_model(model):
    """onnx's own checker, after load's reading: what load does not read (a glue node's
    inputs, the graph's order) must still be a valid model."""
    try:
        onnx.checker.check_model(model)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise BNNSError(f"model: not a valid ONNX model: {reason}") from None


def label(node):
    return f"node {node.name or '(unnamed)'!r} ({node.op_type})"


def attributes(node):
    """A node's attributes by name, those load reads checked for their ONNX type."""
    values = {}
    for attribute in node.attribute:
        wanted = _ATTRIBUTE_TYPES.get(attribute.name)
        if wanted is not None and attribute.type != wanted:
            raise BNNSError(f"{label(node)}: attribute {attribute.name} is a "
                            f"{AttributeProto.AttributeType.Name(attribute.type)}, ONNX's is a "
                            f"{AttributeProto.AttributeType.Name(wanted)}")
        value = helper.get_attribute_value(attribute)
        if attribute.type == AttributeProto.STRING:
            value = _text(value, node, attribute.name)
        elif attribute.type == AttributeProto.STRINGS:
            value = [_text(v, node, attribute.name) for v in value]
        values[attribute.name] = value
    return values


def _text(value, node, name):
    try:
        return value.decode() if isinstance(value, bytes) else value
    except UnicodeDecodeError:
        raise BNNSError(f"{label(node)}: attribute {name} is not UTF-8 text") from None


def tensor_array(tensor):
    """A TensorProto's values, BNNSError naming it when they do not fit its dims."""
    if any(dim < 0 for dim in tensor.dims):
        raise BNNSError(f"tensor {tensor.name!r}: negative dims {list(tensor.dims)}")
    try:
        return numpy_helper.to_array(tensor)
    except Exception as error:  # short data, an unknown or UNDEFINED type, segments
        raise BNNSError(f"tensor {tensor.name!r}: its data do not match its dims "
                        f"{list(tensor.dims)} and type "
                        f"{TensorProto.DataType.Name(tensor.data_type)} ({error})") from None


class Graph:
    """What load needs of a graph: producers, constant tensors (initializers, Constant
    nodes, through Identity), read when asked for."""

    def __init__(self, graph):
        self.graph = graph
        self.producer = {}
        for node in graph.node:
            for out in node.output:
                self.producer[out] = node
        self.tensors = {init.name: init for init in graph.initializer}
        self.initializers = set(self.tensors)
        self.inputs = {i.name for i in graph.input} - self.initializers

    def constant_tensor(self, name, what, node):
        """The TensorProto of tensor ``name`` when it is a constant, else BNNSError naming
        ``node`` (whose ``what`` it is)."""
        seen = name
        while name not in self.tensors:
            producer = self.producer.get(name)
            if producer is None or producer.op_type not in ("Constant", "Identity"):
                raise BNNSError(f"{label(node)}: its {what} ({seen!r}) is not a constant "
                                f"(an initializer or Constant node), so its weights cannot be read")
            if producer.op_type == "Identity":
                if not producer.input:
                    raise BNNSError(f"{label(producer)}: it has no input")
                name = producer.input[0]
                continue
            given = [a.name for a in producer.attribute]
            if given != ["value"] or producer.attribute[0].type != AttributeProto.TENSOR:
                raise BNNSError(f"{label(producer)}: a Constant is read through its 'value' "
                                f"tensor, this one has {given or 'no attribute'}")
            self.tensors[name] = producer.attribute[0].t
        return self.tensors[name]

    def weights(self, name, what, node):
        """The float values of constant ``name`` (W, R, B or P of an LSTM ``node``)."""
        tensor = self.constant_tensor(name, f"{what} input", node)
        if tensor.data_type not in FLOAT_TYPES:
            kind = TensorProto.DataType.Name(tensor.data_type).lower()
            raise BNNSError(f"{label(node)}: {what} input {tensor.name or name!r} holds {kind} "
                            f"values; ONNX's LSTM takes {', '.join(FLOAT_TYPES.values())} only")
        array = tensor_array(tensor)
        return array.astype(np.float64) if array.dtype.kind != "f" else array

    def nonzero_constant(self, name, node):
        """Whether tensor ``name`` is a constant with a value other than 0 (an input of
        ``node``; False for a graph input or a computed tensor)."""
        try:
            tensor = self.constant_tensor(name, "", node)
        except BNNSError:
            return False
        return bool(np.any(tensor_array(tensor)))

    def source(self, name, node, stop, starts="the graph's input"):
        """Walk back from tensor ``name`` through glue ops (one data input each) to a tensor in
        ``stop`` (an LSTM's output or one of the tensors the chain starts from, which
        ``starts`` names); returns (tensor, glue nodes met)."""
        met = []
        while name not in stop:
            producer = self.producer.get(name)
            if producer is None:
                raise BNNSError(f"{label(node)}: its input {name!r} does not come from "
                                f"{starts} or the previous LSTM")
            if producer.op_type not in ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity",
                                        "Cast"):
                raise BNNSError(f"{label(producer)}: between the model's input and the LSTM "
                                f"nodes only Transpose, Reshape, Squeeze, Unsqueeze, Identity and "
                                f"Cast are read, not {producer.op_type}; if the LSTM layers start "
                                f"at its output, give load input_names=[{name!r}]")
            if not producer.input or producer in met:
                raise BNNSError(f"{label(producer)}: it has no input, or its inputs form a loop")
            met.append(producer)
            name = producer.input[0]
        return name, met

    def upstream(self, names, stop):
        """The nodes that tensors ``names`` are computed from, back to the tensors in
        ``stop``, to initializers and to the graph's inputs, in the graph's order."""
        met, todo = set(), list(names)
        while todo:
            name = todo.pop()
            if not name or name in stop:
                continue
            producer = self.producer.get(name)
            if producer is not None and id(producer) not in met:
                met.add(id(producer))
                todo.extend(producer.input)
        return [node for node in self.graph.node if id(node) in met]


# ------------------------------------------------------------ which part of the graph is read
class LeftOutWarning(UserWarning):
    """:func:`bnnslstm.onnx.load` read the LSTM layers out of a larger model, leaving the rest.

    The message names the nodes left out (the first few); ``nodes`` holds them all, as
    the model's :class:`onnx.NodeProto` objects, in the graph's order.
    """

    def __init__(self, message, nodes=()):
        super().__init__(message)
        self.nodes = tuple(nodes)


def tensor_names(g, names, what):
    """``names`` (a str or a sequence of them) checked against the graph's tensors."""
    names = [names] if isinstance(names, str) else names
    try:
        names = list(names)
    except TypeError:
        raise BNNSError(f"{what}: expected a tensor name or a sequence of them, got "
                        f"{type(names).__name__}") from None
    if not names or not all(isinstance(name, str) and name for name in names):
        raise BNNSError(f"{what}: expected one or more tensor names (non-empty strings), got "
                        f"{names!r}")
    for name in names:
        if what == "output_names" and name not in g.producer:
            kind = ("an input of the model, not computed by it" if name in g.inputs
                    else "an initializer, not computed by the model" if name in g.initializers
                    else "no tensor of the model")
            outputs = [out for n in g.graph.node if n.op_type == "LSTM" for out in n.output
                       if out]
            raise BNNSError(f"output_names: {name!r} is {kind} (the LSTM nodes' outputs: "
                            f"{outputs})")
        if what == "input_names" and name not in g.producer and name not in g.inputs:
            raise BNNSError(f"input_names: {name!r} is "
                            + ("an initializer (a constant), not a sequence"
                               if name in g.initializers else "no tensor of the model"))
    return names


def region(g, input_names, output_names):
    """(the tensors the first LSTM reads from, the nodes load reads): without names the
    graph's inputs and every node; else the nodes the ``output_names`` (default: the graph's
    outputs) are computed from, back to the ``input_names`` (default: the graph's inputs)."""
    if input_names is None and output_names is None:
        return g.inputs, list(g.graph.node)
    starts = g.inputs if input_names is None else set(
        tensor_names(g, input_names, "input_names"))
    ends = ([out.name for out in g.graph.output] if output_names is None
            else tensor_names(g, output_names, "output_names"))
    return starts, g.upstream(ends, starts)


def readable(node):
    """Whether load reads ``node``: an LSTM node or glue, of ONNX's own domain."""
    return node.domain in ("", "ai.onnx") and (node.op_type in GLUE or node.op_type == "LSTM")


def _reads_lstms_only(g, name):
    """Whether tensor ``name`` is computed from the graph's inputs by LSTM nodes and glue
    alone, one LSTM at least."""
    nodes = g.upstream([name], g.inputs)
    return any(node.op_type == "LSTM" for node in nodes) and all(map(readable, nodes))


def hint(g):
    """For a model with other nodes than load reads: the output_names that would read its
    LSTM layers, as advice to end a message with."""
    ends = []
    for node in g.graph.node:
        if readable(node):
            continue
        for name in node.input:
            if name and name in g.producer and name not in ends and _reads_lstms_only(g, name):
                ends.append(name)
    if ends:
        return (f"; to read the LSTM layers out of this larger model, name where they end: "
                f"load(..., output_names={ends!r})")
    return ("; to read LSTM layers out of a larger model, name the tensors where they end "
            "(output_names) and, if they do not read the model's input, where they start "
            "(input_names)")


def left_out(g, read, starts):
    """The graph's nodes that compute something the layer does not: neither in ``read`` nor
    glue of what was read (the Concat of the layers' h_n, say), in the graph's order."""
    kept = {id(node) for node in read}
    known = set(starts) | g.initializers | {out for node in read for out in node.output}
    left = []
    for node in g.graph.node:  # in the graph's order, which ONNX makes topological
        if id(node) in kept:
            continue
        if (readable(node) and node.op_type != "LSTM"
                and all(not name or name in known for name in node.input)):
            known.update(node.output)
        else:
            left.append(node)
    return left


def warn_left_out(g, read, starts, input_names, output_names):
    """LeftOutWarning naming the nodes left_out finds, if any (load's caller is warned)."""
    left = left_out(g, read, starts)
    if not left:
        return
    between = " ".join(f"{what}={names!r}" for what, names in (
        ("from input_names", input_names), ("up to output_names", output_names))
        if names is not None)
    shown = ", ".join(label(node).removeprefix("node ") for node in left[:8])
    more = (f" and {len(left) - 8} more (the warning's nodes lists them all)"
            if len(left) > 8 else "")
    warnings.warn(LeftOutWarning(f"bnnslstm.onnx.load read the LSTM layers {between} and left "
                                 f"out {len(left)} node(s) of the model: {shown}{more}", left),
                  stacklevel=3)
