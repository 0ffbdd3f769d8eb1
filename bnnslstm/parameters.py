"""Plain mutable parameter objects, like BNNS's C structs.

Nothing is checked when a field is set; every check happens when a function is called
(the plan, ``bnnslstm/_plan.pyx``).
"""

import math

from .enums import ActivationFunction

__all__ = [
    "GATE_FIELDS",
    "Activation",
    "LSTMDataDescriptor",
    "LSTMGateDescriptor",
    "LayerParametersLSTM",
    "FilterParameters",
]


#: The gates' fields of LayerParametersLSTM, in the order of the weights' rows (PyTorch's
#: i, f, g, o) and of the kernels.
GATE_FIELDS = ("input_gate", "forget_gate", "candidate_gate", "output_gate")


def _repr(obj, names):
    fields = ", ".join(f"{name}={getattr(obj, name)!r}" for name in names)
    return f"{type(obj).__name__}({fields})"


class Activation:
    """An activation function with its two parameters (``BNNSActivation``).

    Functions that take no parameter never read ``alpha`` and ``beta``.
    """

    def __init__(self, function=ActivationFunction.IDENTITY, alpha=math.nan, beta=math.nan):
        self.function = function
        self.alpha = alpha
        self.beta = beta

    def __repr__(self):
        return _repr(self, ("function", "alpha", "beta"))


class LSTMDataDescriptor:
    """Data, hidden state and cell state of an LSTM's input or output
    (``BNNSLSTMDataDescriptor``)."""

    def __init__(self, data_desc=None, hidden_desc=None, cell_state_desc=None):
        self.data_desc = data_desc
        self.hidden_desc = hidden_desc
        self.cell_state_desc = cell_state_desc

    def __repr__(self):
        return _repr(self, ("data_desc", "hidden_desc", "cell_state_desc"))


class LSTMGateDescriptor:
    """One gate's weights, bias and activation (``BNNSLSTMGateDescriptor``).

    ``iw_desc`` is a pair: ``iw_desc[0]`` holds layer 0's input weights ``[D][H][I]`` (or
    every layer's, ``[L][D][H][I]``, when ``I == D*H``), ``iw_desc[1]`` layers 1...L-1's,
    ``[L-1][D][H][D*H]``.
    """

    def __init__(self, iw_desc=(None, None), hw_desc=None, cw_desc=None, b_desc=None,
                 activation=None):
        self.iw_desc = list(iw_desc) if iw_desc is not None else [None, None]
        self.hw_desc = hw_desc
        self.cw_desc = cw_desc
        self.b_desc = b_desc
        self.activation = Activation() if activation is None else activation

    def __repr__(self):
        return _repr(self, ("iw_desc", "hw_desc", "cw_desc", "b_desc", "activation"))


class LayerParametersLSTM:
    """Everything an LSTM call needs (``BNNSLayerParametersLSTM``), plus ``dropout_seed``."""

    def __init__(
        self,
        input_size=0,
        hidden_size=0,
        batch_size=0,
        num_layers=0,
        seq_len=0,
        dropout=0.0,
        lstm_flags=0,
        sequence_descriptor=None,
        input_descriptor=None,
        output_descriptor=None,
        input_gate=None,
        forget_gate=None,
        candidate_gate=None,
        output_gate=None,
        hidden_activation=None,
        dropout_seed=0,
    ):
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.batch_size = batch_size
        self.num_layers = num_layers
        self.seq_len = seq_len
        self.dropout = dropout
        self.lstm_flags = lstm_flags
        self.sequence_descriptor = sequence_descriptor
        self.input_descriptor = (LSTMDataDescriptor() if input_descriptor is None
                                 else input_descriptor)
        self.output_descriptor = (LSTMDataDescriptor() if output_descriptor is None
                                  else output_descriptor)
        self.input_gate = LSTMGateDescriptor() if input_gate is None else input_gate
        self.forget_gate = LSTMGateDescriptor() if forget_gate is None else forget_gate
        self.candidate_gate = LSTMGateDescriptor() if candidate_gate is None else candidate_gate
        self.output_gate = LSTMGateDescriptor() if output_gate is None else output_gate
        self.hidden_activation = Activation() if hidden_activation is None else hidden_activation
        self.dropout_seed = dropout_seed

    _FIELDS = (
        "input_size", "hidden_size", "batch_size", "num_layers", "seq_len", "dropout",
        "lstm_flags", "sequence_descriptor", "input_descriptor", "output_descriptor",
        *GATE_FIELDS, "hidden_activation",
        "dropout_seed",
    )

    def __repr__(self):
        return _repr(self, self._FIELDS)


class FilterParameters:
    """Call options (``BNNSFilterParameters``), in BNNS's order.

    ``flags``
        :class:`~bnnslstm.FilterFlags` bits: ``USE_CLIENT_PTR`` (1) or none; others are
        refused.
    ``n_threads``
        The most threads a call may use; 0 means every core this process may use.
    ``alloc_memory``, ``free_memory``
        Both None (the library keeps reusable scratch of its own per thread), or two
        callables for real-time code that must not allocate: ``alloc_memory(size,
        alignment)`` returns a writable buffer (anything with the buffer protocol: a
        ``bytearray``, a numpy array...) of at least ``size`` bytes whose first byte's
        address is a multiple of ``alignment``; ``free_memory(buffer)`` receives each one
        back, before the call returns, also when it fails. Every buffer a call needs beyond
        its arguments (scratch, workspace, the planner's trials, copies of what BLAS cannot
        address) then comes from ``alloc_memory``.
    """

    def __init__(self, flags=0, n_threads=0, alloc_memory=None, free_memory=None):
        self.flags = flags
        self.n_threads = n_threads
        self.alloc_memory = alloc_memory
        self.free_memory = free_memory

    def __repr__(self):
        return _repr(self, ("flags", "n_threads", "alloc_memory", "free_memory"))
