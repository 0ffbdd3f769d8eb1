"""Writing an ONNX model for :func:`bnnslstm.onnx.export`: the graph built step by step
(its inputs, one LSTM node per layer with what rearranges its output, its outputs) and the
oldest IR version that carries an opset."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# the activations of ONNX's LSTM that take an alpha, and a beta
ALPHA = {"Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh", "HardSigmoid", "Elu"}
BETA = {"Affine", "ScaledTanh", "HardSigmoid"}


def lstm_attributes(layout, acts):
    """The attributes of every LSTM node: hidden_size, direction, and the activations
    ``acts`` (ONNX's [(name, alpha, beta)] of the gates, cell and hidden, or None for the
    defaults) with their alpha and beta."""
    attributes = {"hidden_size": layout.H,
                  "direction": "bidirectional" if layout.D == 2 else "forward"}
    if acts is not None:
        attributes["activations"] = [name for name, _, _ in acts] * layout.D
        alphas = [a for name, a, _ in acts * layout.D if name in ALPHA]
        betas = [b for name, _, b in acts * layout.D if name in BETA]
        if alphas:
            attributes["activation_alpha"] = alphas
        if betas:
            attributes["activation_beta"] = betas
    return attributes


class GraphWriter:
    """The exported graph as it is built: its nodes, initializers and inputs, step by step
    (the inputs, one LSTM node per layer with what rearranges its output, the outputs)."""

    def __init__(self, elem):
        self.elem, self.nodes, self.initializers, self.given = elem, [], [], []

    def constant(self, name, array):
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op, inputs, outputs, name, **attributes):
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, **attributes))

    def inputs(self, layout, batch_first, initial_states, sequence_lens):
        """The graph's inputs; returns the name of the time-major input."""
        self.given = [helper.make_tensor_value_info(
            "input", self.elem, ["batch", "time", layout.I] if batch_first
            else ["time", "batch", layout.I])]
        if initial_states:
            self.given += [helper.make_tensor_value_info(n, self.elem, self.state_shape(layout))
                           for n in ("h0", "c0")]
        if sequence_lens:
            self.given.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32,
                                                            ["batch"]))
        if not batch_first:
            return "input"
        self.node("Transpose", ["input"], ["input_tbi"], "input_to_time_major", perm=[1, 0, 2])
        return "input_tbi"

    @staticmethod
    def state_shape(layout):
        return [layout.L * layout.D, "batch", layout.H]

    def layer(self, l, D, weights, dtype, x, attributes, initial_states, sequence_lens):
        """Layer l's LSTM node on ``x``, its initial states sliced from h0, c0; returns the
        name of its output as the next layer's input ([T][B][D*H])."""
        W, R, Bs, P = weights
        inputs = [x, self.constant(f"W_l{l}", W.astype(dtype)),
                  self.constant(f"R_l{l}", R.astype(dtype)),
                  "" if Bs is None else self.constant(f"B_l{l}", Bs.astype(dtype)),
                  "sequence_lens" if sequence_lens else ""]
        for name in ("h0", "c0"):
            if initial_states:
                bounds = [self.constant(f"{name}_{what}_l{l}", np.array([value], np.int64))
                          for what, value in (("start", l * D), ("end", (l + 1) * D),
                                              ("axes", 0))]
                self.node("Slice", [name] + bounds, [f"{name}_l{l}"], f"{name}_slice_l{l}")
            inputs.append(f"{name}_l{l}" if initial_states else "")
        inputs.append("" if P is None else self.constant(f"P_l{l}", P.astype(dtype)))
        while inputs[-1] == "":
            inputs.pop()
        self.node("LSTM", inputs, [f"Y_l{l}", f"h_n_l{l}", f"c_n_l{l}"], f"lstm_l{l}",
                  **attributes)
        # [T][D][B][H] -> [T][B][D][H] -> [T][B][D*H]
        self.node("Transpose", [f"Y_l{l}"], [f"Y_tbdh_l{l}"], f"directions_last_l{l}",
                  perm=[0, 2, 1, 3])
        flatten = ("flatten_directions" if l else
                   self.constant("flatten_directions", np.array([0, 0, -1], np.int64)))
        self.node("Reshape", [f"Y_tbdh_l{l}", flatten], [f"y_l{l}"], f"flatten_l{l}")
        return f"y_l{l}"

    def outputs(self, layout, batch_first, x):
        """The output (from the last layer's ``x``), h_n and c_n (every layer's, stacked):
        the finished graph."""
        if batch_first:
            self.node("Transpose", [x], ["output"], "output_to_batch_major", perm=[1, 0, 2])
        else:
            self.node("Identity", [x], ["output"], "output")
        for name in ("h_n", "c_n"):
            parts = [f"{name}_l{l}" for l in range(layout.L)]
            if layout.L > 1:
                self.node("Concat", parts, [name], name, axis=0)
            else:
                self.node("Identity", parts, [name], name)
        width = layout.D * layout.H
        given = [helper.make_tensor_value_info("output", self.elem, ["batch", "time", width]
                                               if batch_first else ["time", "batch", width])]
        given += [helper.make_tensor_value_info(name, self.elem, self.state_shape(layout))
                  for name in ("h_n", "c_n")]
        return helper.make_graph(self.nodes, "bnnslstm_LSTM", self.given, given,
                                 self.initializers)


def ir_version(opset):
    """The oldest IR version that carries ``opset`` (so older runtimes read the file), at
    least 4 (before it, initializers had to be listed as graph inputs too)."""
    for ir, op in ((4, 9), (5, 10), (6, 11), (7, 12), (7, 13), (8, 14), (8, 15), (8, 16),
                   (8, 17), (9, 18), (9, 19), (9, 20), (10, 21)):
        if opset <= op:
            return ir
    return onnx.IR_VERSION
