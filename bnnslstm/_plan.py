"""Validation: resolve the scalars of an LSTM call and check every shape (SPEC §3).

:func:`make_plan` reads a :class:`~bnnslstm.parameters.LayerParametersLSTM`, fills the
scalars (I, H, B, L, T, D) from fields and descriptors, checks every descriptor against its
logical shape and its buffer, and returns a :class:`Plan` of numpy views. Nothing is
written here; the kernels receive only what a plan holds.
"""

from dataclasses import dataclass

import numpy as np

from .activations import check_activation
from .descriptors import NDArrayDescriptor, numpy_dtype
from .enums import ActivationFunction, DataLayout, DataType, LayerFlags, NDArrayFlags
from .errors import BNNSError

GATES = ("input_gate", "forget_gate", "candidate_gate", "output_gate")  # packed order i, f, g, o
NO_PEEPHOLE, DIAGONAL, FULL = 0, 1, 2
_DEFAULT_ACTIVATIONS = (
    (int(ActivationFunction.SIGMOID), 0.0, 0.0),
    (int(ActivationFunction.SIGMOID), 0.0, 0.0),
    (int(ActivationFunction.TANH), 0.0, 0.0),
    (int(ActivationFunction.SIGMOID), 0.0, 0.0),
    (int(ActivationFunction.TANH), 0.0, 0.0),
)
_KNOWN_FLAGS = int(LayerFlags.BIDIRECTIONAL | LayerFlags.DEFAULT_ACTIVATIONS)
_INTEGER_TYPES = (DataType.INT32, DataType.INT64, DataType.UINT32, DataType.UINT64)


@dataclass
class Gate:
    """One gate's resolved weights: numpy views in logical C order."""

    W: list  # per layer l: [D][H][X_l]
    U: np.ndarray  # [L][D][H][H]
    C: np.ndarray | None  # [L][D][H][H] or [L][D][H]
    b: np.ndarray | None  # [L][D][H]
    peephole: int


@dataclass
class Plan:
    """Everything a kernel call needs, resolved and checked."""

    dtype: np.dtype
    data_type: int
    I: int
    H: int
    B: int
    L: int
    T: int
    D: int
    batch_sizes: np.ndarray  # int32 [T]
    variable_batch: bool
    dropout: float
    dropout_seed: int
    default_activations: bool
    activations: tuple  # ((fn, alpha, beta) for i, f, g, o, hidden)
    gates: list  # [Gate] in order i, f, g, o
    x: np.ndarray  # [T][B][I] view
    h0: np.ndarray | None  # [L][D][B][H]
    c0: np.ndarray | None
    y: np.ndarray | None  # [T][B][D][H] view (writable)
    h_n: np.ndarray | None
    c_n: np.ndarray | None

    @property
    def peepholes(self):
        return tuple(gate.peephole for gate in self.gates)

    @property
    def biases(self):
        return tuple(gate.b is not None for gate in self.gates)

    def layer_width(self, layer):
        return self.I if layer == 0 else self.D * self.H


def _scalar(params, name):
    value = getattr(params, name)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise BNNSError(f"{name}: expected a non-negative integer, got {value!r}")
    if value < 0 or value > 2**31 - 1:
        raise BNNSError(f"{name}: expected 0 <= {name} < 2**31, got {value}")
    return int(value)


class _Resolver:
    """Fills zero scalars from descriptor sizes, then checks descriptors against them."""

    def __init__(self, params):
        self.values = {name: _scalar(params, name) for name in ("input_size", "hidden_size", "batch_size", "num_layers", "seq_len")}

    def learn(self, desc, names, field_name):
        """Take scalars (``names`` aligned right with the logical shape) from a descriptor."""
        if desc is None:
            return
        if not isinstance(desc, NDArrayDescriptor):
            raise BNNSError(f"{field_name}: expected an NDArrayDescriptor or None, got {type(desc).__name__}")
        shape = desc.logical_shape()
        for extent, name in zip(reversed(shape), reversed(names)):
            if name is None or extent == 0:
                continue
            known = self.values[name]
            if known == 0:
                self.values[name] = extent
            elif known != extent:
                raise BNNSError(f"{field_name}: size gives {name} = {extent} but {name} is {known}")


def tensor_view(desc, shape, field_name, data_type, writable=False, optional=True, kind=None):
    """Check ``desc`` against the logical ``shape`` and return its numpy view.

    Zero sizes are filled from ``shape`` (aligned right). Leading extents of 1 may be
    dropped by the descriptor (a ``[1][H][I]`` tensor may be given as an ``[H][I]`` matrix).
    ``kind`` names the reading chosen for a field that accepts two shapes (for the message).
    """
    if desc is None:
        if optional:
            return None
        raise BNNSError(f"{field_name}: required")
    if not isinstance(desc, NDArrayDescriptor):
        raise BNNSError(f"{field_name}: expected an NDArrayDescriptor or None, got {type(desc).__name__}")
    if desc.data_type != data_type:
        raise BNNSError(
            f"{field_name}.data_type: {_type_name(desc.data_type)} but the call's type is {_type_name(data_type)}")
    filled = desc.logical_shape(shape)
    given, core = filled, tuple(shape)
    while len(core) > len(given) and core[0] == 1:
        core = core[1:]
    while len(given) > len(core) and given[0] == 1:
        given = given[1:]
    if given != core:
        read_as = f" ({kind})" if kind else ""
        raise BNNSError(f"{field_name}: logical shape {filled} does not match {tuple(shape)}{read_as}")
    return desc.to_numpy(filled, field_name, writable=writable).reshape(shape)


def _type_name(data_type):
    try:
        return DataType(data_type).name
    except ValueError:
        return repr(data_type)


def _batch_sizes(sequence_descriptor, T, B):
    if sequence_descriptor is None:
        return np.full(T, B, dtype=np.int32), False
    if isinstance(sequence_descriptor, NDArrayDescriptor):
        if sequence_descriptor.data_type not in _INTEGER_TYPES:
            raise BNNSError(
                f"sequence_descriptor.data_type: expected an integer type, got {_type_name(sequence_descriptor.data_type)}")
        values = sequence_descriptor.to_numpy((T,), "sequence_descriptor")
        if values.ndim != 1:
            raise BNNSError(f"sequence_descriptor: expected a vector of {T} integers")
    else:
        values = np.asarray(sequence_descriptor)
        if values.dtype.kind not in "iu":
            raise BNNSError(f"sequence_descriptor: expected integers, got dtype {values.dtype}")
    if values.shape != (T,):
        raise BNNSError(f"sequence_descriptor: expected {T} batch sizes (seq_len), got shape {values.shape}")
    values = values.astype(np.int64)
    if values[0] != B:
        raise BNNSError(f"sequence_descriptor: the first batch size must be batch_size = {B}, got {values[0]}")
    if np.any(values < 1) or np.any(values > B):
        raise BNNSError(f"sequence_descriptor: batch sizes must lie in [1, {B}], got {values.tolist()}")
    if np.any(np.diff(values) > 0):
        raise BNNSError(f"sequence_descriptor: batch sizes must not increase, got {values.tolist()}")
    return values.astype(np.int32), bool(np.any(values != B))


def _call_type(params):
    x_desc = params.input_descriptor.data_desc if params.input_descriptor is not None else None
    if x_desc is None:
        raise BNNSError("input_descriptor.data_desc: required")
    if not isinstance(x_desc, NDArrayDescriptor):
        raise BNNSError(f"input_descriptor.data_desc: expected an NDArrayDescriptor, got {type(x_desc).__name__}")
    if x_desc.data_type not in (DataType.FLOAT32, DataType.FLOAT64):
        raise BNNSError(
            f"input_descriptor.data_desc.data_type: expected FLOAT32 or FLOAT64, got {_type_name(x_desc.data_type)}")
    return DataType(x_desc.data_type)


def _sequence_layout(desc, field_name):
    try:
        layout = DataLayout(desc.layout)
    except ValueError:
        raise BNNSError(f"{field_name}.layout: {desc.layout!r} is not a DataLayout") from None
    if layout not in (DataLayout.SNE, DataLayout.NSE):
        raise BNNSError(f"{field_name}.layout: expected SNE or NSE, got {layout.name}")
    return layout


def sequence_view(desc, T, B, width, field_name, data_type, writable=False):
    """A ``[T][B][width]`` view of an SNE or NSE descriptor."""
    if desc is None:
        return None
    layout = _sequence_layout(desc, field_name)
    if layout == DataLayout.SNE:
        return tensor_view(desc, (T, B, width), field_name, data_type, writable)
    return tensor_view(desc, (B, T, width), field_name, data_type, writable).transpose(1, 0, 2)


def make_plan(params, *, need_outputs=True):
    """Resolve and check ``params`` (a LayerParametersLSTM); return a :class:`Plan`."""
    for name in ("input_descriptor", "output_descriptor"):
        if getattr(params, name) is None:
            raise BNNSError(f"{name}: expected an LSTMDataDescriptor, got None")
    data_type = _call_type(params)
    flags = params.lstm_flags
    if isinstance(flags, bool) or not isinstance(flags, (int, np.integer)) or flags < 0 or flags & ~_KNOWN_FLAGS:
        raise BNNSError(f"lstm_flags: unknown bits in {flags!r} (known: BIDIRECTIONAL, DEFAULT_ACTIVATIONS)")
    D = 2 if flags & LayerFlags.BIDIRECTIONAL else 1

    resolver = _Resolver(params)
    inp, out = params.input_descriptor, params.output_descriptor
    x_desc = inp.data_desc
    x_layout = _sequence_layout(x_desc, "input_descriptor.data_desc")
    resolver.learn(x_desc, ("seq_len", "batch_size", "input_size") if x_layout == DataLayout.SNE
                   else ("batch_size", "seq_len", "input_size"), "input_descriptor.data_desc")
    state_names = ("num_layers", None, "batch_size", "hidden_size")
    for owner, prefix in ((inp, "input_descriptor"), (out, "output_descriptor")):
        resolver.learn(owner.hidden_desc, state_names, f"{prefix}.hidden_desc")
        resolver.learn(owner.cell_state_desc, state_names, f"{prefix}.cell_state_desc")
    for gate_name in GATES:
        gate = getattr(params, gate_name)
        if gate is None:
            raise BNNSError(f"{gate_name}: expected an LSTMGateDescriptor, got None")
        resolver.learn(gate.hw_desc, ("num_layers", None, "hidden_size", "hidden_size"), f"{gate_name}.hw_desc")
    values = resolver.values
    for name in ("input_size", "hidden_size", "batch_size", "num_layers", "seq_len"):
        if values[name] < 1:
            raise BNNSError(f"{name}: is 0 and no descriptor gives it")
    I, H, B, L, T = (values[n] for n in ("input_size", "hidden_size", "batch_size", "num_layers", "seq_len"))
    if T * B * max(I, D * H) > 2**31 - 1 or 4 * D * H * max(I, D * H, H) > 2**31 - 1:
        raise BNNSError(f"seq_len * batch_size * width: {T}*{B}*{max(I, D * H)} is too large for BLAS's 32-bit sizes")

    dropout = params.dropout
    if not isinstance(dropout, (int, float, np.floating)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise BNNSError(f"dropout: expected 0 <= dropout < 1, got {dropout!r}")
    seed = params.dropout_seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**64:
        raise BNNSError(f"dropout_seed: expected an integer in [0, 2**64), got {seed!r}")
    batch_sizes, variable = _batch_sizes(params.sequence_descriptor, T, B)

    default = bool(flags & LayerFlags.DEFAULT_ACTIVATIONS)
    if default:
        activations = _DEFAULT_ACTIVATIONS
    else:
        activations = tuple(
            check_activation(getattr(params, g).activation, f"{g}.activation") for g in GATES
        ) + (check_activation(params.hidden_activation, "hidden_activation"),)

    gates = [gate_views(getattr(params, name), name, I, H, L, D, data_type) for name in GATES]

    x = sequence_view(x_desc, T, B, I, "input_descriptor.data_desc", data_type)
    h0 = tensor_view(inp.hidden_desc, (L, D, B, H), "input_descriptor.hidden_desc", data_type)
    c0 = tensor_view(inp.cell_state_desc, (L, D, B, H), "input_descriptor.cell_state_desc", data_type)
    plan = Plan(
        dtype=numpy_dtype(data_type), data_type=int(data_type), I=I, H=H, B=B, L=L, T=T, D=D,
        batch_sizes=batch_sizes, variable_batch=variable, dropout=float(dropout) if L > 1 else 0.0,
        dropout_seed=int(seed), default_activations=default, activations=activations, gates=gates,
        x=x, h0=h0, c0=c0, y=None, h_n=None, c_n=None,
    )
    if need_outputs:
        y = out.data_desc
        plan.y = None if y is None else sequence_view(
            y, T, B, D * H, "output_descriptor.data_desc", data_type, writable=True).reshape(T, B, D, H)
        plan.h_n = tensor_view(out.hidden_desc, (L, D, B, H), "output_descriptor.hidden_desc", data_type, writable=True)
        plan.c_n = tensor_view(out.cell_state_desc, (L, D, B, H), "output_descriptor.cell_state_desc", data_type, writable=True)
    return plan


def _rank(desc, field_name):
    """The rank of a descriptor's layout (BNNSError if it is not a DataLayout)."""
    try:
        return DataLayout(desc.layout).rank
    except (ValueError, TypeError):
        raise BNNSError(f"{field_name}.layout: {desc.layout!r} is not a DataLayout") from None


def covers_every_layer(first, rest, field_name):
    """Whether ``iw_desc[0]`` is ``[L][D][H][I]`` (every layer) rather than ``[D][H][I]``.

    Kind before fill (SPEC §2): decided by the layout's rank alone, before any zero size is
    filled: rank 4 or more, with ``iw_desc[1]`` absent or the same descriptor, covers every
    layer; anything else is layer 0's.
    """
    return _rank(first, field_name) >= 4 and (rest is None or rest is first)


def _layer_weights(gate, name, I, H, L, D, data_type, delta=False):
    """The input weights of every layer: views ``[D][H][X_l]`` (``None`` where not given)."""
    first, rest = (list(gate.iw_desc) + [None, None])[:2] if gate.iw_desc is not None else (None, None)
    if first is None:
        if delta:
            later = tensor_view(rest, (L - 1, D, H, D * H), f"{name}.iw_desc[1]", data_type, True) if L > 1 else None
            return [None] + ([None] * (L - 1) if later is None else [later[l] for l in range(L - 1)])
        raise BNNSError(f"{name}.iw_desc[0]: required")
    if not isinstance(first, NDArrayDescriptor):
        raise BNNSError(f"{name}.iw_desc[0]: expected an NDArrayDescriptor, got {type(first).__name__}")
    if covers_every_layer(first, rest, f"{name}.iw_desc[0]"):
        if L > 1 and I != D * H:
            raise BNNSError(f"{name}.iw_desc[0]: a rank-4 layout covers every layer, which needs "
                            f"input_size == D*hidden_size ({I} != {D * H}); give layer 0's [D][H][I] "
                            f"(rank 3) and iw_desc[1]")
        every = tensor_view(first, (L, D, H, I), f"{name}.iw_desc[0]", data_type, delta,
                            kind="a rank-4 layout covers every layer, [L][D][H][I]")
        return [every[l] for l in range(L)]
    weights = [tensor_view(first, (D, H, I), f"{name}.iw_desc[0]", data_type, delta)]
    if L > 1:
        if rest is None and not delta:
            raise BNNSError(f"{name}.iw_desc[1]: required when num_layers > 1 (or give every layer in iw_desc[0])")
        if rest is first and delta:
            raise BNNSError(f"{name}.iw_desc[1]: the same descriptor as iw_desc[0] but they receive different layers")
        later = tensor_view(rest, (L - 1, D, H, D * H), f"{name}.iw_desc[1]", data_type, delta)
        weights += [None] * (L - 1) if later is None else [later[l] for l in range(L - 1)]
    return weights


def gate_views(gate, name, I, H, L, D, data_type, delta=False):
    """A gate's views; ``delta`` reads a gradient gate (every field optional and written)."""
    W = _layer_weights(gate, name, I, H, L, D, data_type, delta)
    U = tensor_view(gate.hw_desc, (L, D, H, H), f"{name}.hw_desc", data_type, writable=delta, optional=delta)
    C, peephole = None, NO_PEEPHOLE
    if gate.cw_desc is not None:
        desc = gate.cw_desc
        if not isinstance(desc, NDArrayDescriptor):
            raise BNNSError(f"{name}.cw_desc: expected an NDArrayDescriptor or None, got {type(desc).__name__}")
        peephole = peephole_kind(desc, f"{name}.cw_desc")
        if peephole == FULL:
            C = tensor_view(desc, (L, D, H, H), f"{name}.cw_desc", data_type, delta,
                            kind="a full peephole [L][D][H][H] (rank 4, or one [H][H] matrix)")
        else:
            C = tensor_view(desc, (L, D, H), f"{name}.cw_desc", data_type, delta,
                            kind="a diagonal peephole [L][D][H] (rank 3, or one [H] vector)")
    b = tensor_view(gate.b_desc, (L, D, H), f"{name}.b_desc", data_type, delta)
    return Gate(W=W, U=U, C=C, b=b, peephole=peephole)


def peephole_kind(desc, field_name):
    """DIAGONAL or FULL, from the layout's rank alone (kind before fill, SPEC §2).

    Rank 3 is ``[L][D][H]`` (diagonal), rank 4 ``[L][D][H][H]`` (full), for every H including
    1; a rank-2 layout is one ``[H][H]`` matrix (full, L = D = 1) and a rank-1 layout one
    ``[H]`` vector (diagonal, L = D = 1). Higher ranks are full with leading extents of 1.
    Zero sizes are filled only afterwards, from the shape of the kind chosen here.
    """
    rank = _rank(desc, field_name)
    return DIAGONAL if rank in (1, 3) else FULL


def check_disjoint(writes):
    """Refuse written views that share memory (the order of the writes would decide the result)."""
    for i, (name_a, view_a) in enumerate(writes):
        for name_b, view_b in writes[i + 1:]:
            if overlap(view_a, view_b):
                raise BNNSError(f"{name_b}: shares memory with {name_a}; written descriptors must not overlap")


def overlap(a, b):
    """Whether two views share memory; when numpy cannot tell cheaply, whether their
    address ranges meet (so the answer errs on the side of refusing)."""
    try:
        return bool(np.shares_memory(a, b, max_work=10**6))
    except np.exceptions.TooHardError:
        return bool(np.may_share_memory(a, b))
