"""Plain mutable parameter objects, like BNNS's C structs.

Values are not checked when a field is set; every check happens when a function is called
(the plan, ``bnnslstm/_plan.pyx``). Names are: each class holds its fields in
``__slots__``, so a misspelt field (``params.hiden_size = 4``) is an AttributeError naming
the valid ones, not a new attribute that no call would read.
"""

import difflib
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


# the constructors set their fields with object.__setattr__, as a frozen dataclass's __init__
# does: their names are known good, and _Fields.__setattr__ would cost a Python call per field
_set = object.__setattr__


class _Fields:
    """Base of the parameter classes: a fixed set of fields, ``_FIELDS``, kept in
    ``__slots__``.

    Setting a field that is not one raises AttributeError naming it and the valid ones. The
    state of a copy or a pickle is the dict of the fields (so pickles of these objects from
    before they had slots, whose state was their ``__dict__``, load too).
    """

    __slots__ = ()
    _FIELDS = ()

    def __setattr__(self, name, value):
        try:
            object.__setattr__(self, name, value)
        except AttributeError:
            close = difflib.get_close_matches(name, self._FIELDS, n=1)
            guess = f" (did you mean {close[0]!r}?)" if close else ""
            raise AttributeError(
                f"{type(self).__name__} has no field {name!r}{guess}; its fields are "
                f"{', '.join(self._FIELDS)}", name=name, obj=self) from None

    def __getstate__(self):
        return {name: getattr(self, name) for name in self._FIELDS}

    def __setstate__(self, state):
        for name, value in state.items():
            setattr(self, name, value)

    def __repr__(self):
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._FIELDS)
        return f"{type(self).__name__}({fields})"


class Activation(_Fields):
    """An activation function with its two parameters (``BNNSActivation``).

    Functions that take no parameter never read ``alpha`` and ``beta``.
    """

    _FIELDS = ("function", "alpha", "beta")
    __slots__ = _FIELDS

    def __init__(self, function=ActivationFunction.IDENTITY, alpha=math.nan, beta=math.nan):
        _set(self, "function", function)
        _set(self, "alpha", alpha)
        _set(self, "beta", beta)


class LSTMDataDescriptor(_Fields):
    """Data, hidden state and cell state of an LSTM's input or output
    (``BNNSLSTMDataDescriptor``)."""

    _FIELDS = ("data_desc", "hidden_desc", "cell_state_desc")
    __slots__ = _FIELDS

    def __init__(self, data_desc=None, hidden_desc=None, cell_state_desc=None):
        _set(self, "data_desc", data_desc)
        _set(self, "hidden_desc", hidden_desc)
        _set(self, "cell_state_desc", cell_state_desc)


class LSTMGateDescriptor(_Fields):
    """One gate's weights, bias and activation (``BNNSLSTMGateDescriptor``).

    ``iw_desc`` is a pair: ``iw_desc[0]`` holds layer 0's input weights ``[D][H][I]`` (or
    every layer's, ``[L][D][H][I]``, when ``I == D*H``), ``iw_desc[1]`` layers 1...L-1's,
    ``[L-1][D][H][D*H]``.
    """

    _FIELDS = ("iw_desc", "hw_desc", "cw_desc", "b_desc", "activation")
    __slots__ = _FIELDS

    def __init__(self, iw_desc=(None, None), hw_desc=None, cw_desc=None, b_desc=None,
                 activation=None):
        _set(self, "iw_desc", list(iw_desc) if iw_desc is not None else [None, None])
        _set(self, "hw_desc", hw_desc)
        _set(self, "cw_desc", cw_desc)
        _set(self, "b_desc", b_desc)
        _set(self, "activation", Activation() if activation is None else activation)


class LayerParametersLSTM(_Fields):
    """Everything an LSTM call needs (``BNNSLayerParametersLSTM``), plus ``dropout_seed``."""

    _FIELDS = (
        "input_size", "hidden_size", "batch_size", "num_layers", "seq_len", "dropout",
        "lstm_flags", "sequence_descriptor", "input_descriptor", "output_descriptor",
        *GATE_FIELDS, "hidden_activation",
        "dropout_seed",
    )
    # weakly referable: the library remembers which parameters objects it warned about and
    # the last plan of each (weakref.WeakSet and WeakKeyDictionary in lstm.py)
    __slots__ = (*_FIELDS, "__weakref__")

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
        _set(self, "input_size", input_size)
        _set(self, "hidden_size", hidden_size)
        _set(self, "batch_size", batch_size)
        _set(self, "num_layers", num_layers)
        _set(self, "seq_len", seq_len)
        _set(self, "dropout", dropout)
        _set(self, "lstm_flags", lstm_flags)
        _set(self, "sequence_descriptor", sequence_descriptor)
        _set(self, "input_descriptor",
             LSTMDataDescriptor() if input_descriptor is None else input_descriptor)
        _set(self, "output_descriptor",
             LSTMDataDescriptor() if output_descriptor is None else output_descriptor)
        for name, gate in zip(GATE_FIELDS, (input_gate, forget_gate, candidate_gate, output_gate)):
            _set(self, name, LSTMGateDescriptor() if gate is None else gate)
        _set(self, "hidden_activation",
             Activation() if hidden_activation is None else hidden_activation)
        _set(self, "dropout_seed", dropout_seed)


class FilterParameters(_Fields):
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

    _FIELDS = ("flags", "n_threads", "alloc_memory", "free_memory")
    __slots__ = _FIELDS

    def __init__(self, flags=0, n_threads=0, alloc_memory=None, free_memory=None):
        _set(self, "flags", flags)
        _set(self, "n_threads", n_threads)
        _set(self, "alloc_memory", alloc_memory)
        _set(self, "free_memory", free_memory)
