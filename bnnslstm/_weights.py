"""The one map of an LSTM's weights: the forms they take and how each becomes another.

Every front end goes through here, so a setting carried by one path cannot be dropped by
another: the numpy layer (:class:`bnnslstm.LSTM`: storage, ``parameters``, ``state_dict``,
``.npz`` files, pickles, ``from_torch``/``to_torch``), the torch module
(:class:`bnnslstm.torch.LSTM`: parameters, ``state_dict``, the blocks each call stacks) and
ONNX (:mod:`bnnslstm.onnx`). The forms, for one :class:`Layout`:

- **blocks**, what the kernels read (gates as an axis, i, f, g, o; ``k`` gates with a
  peephole): ``first`` ``[D][4][H][I]`` (layer 0's input weights), ``later``
  ``[L-1][D][4][H][D*H]`` (None when L == 1), ``hidden`` ``[L][D][4][H][H]``, ``bias``
  ``[L][D][4][H]`` (None without bias), ``peep`` ``[L][D][k][H]`` (diagonal) or
  ``[L][D][k][H][H]`` (full), or None. :func:`gate_descriptors` views them as BNNS gates.
- **parameters**, views of the blocks per layer and direction under torch.nn.LSTM's names
  (``weight_ih_l0``, ``weight_hh_l1_reverse``, ...) plus ``weight_ch_l*`` (peepholes, the
  gates that have one stacked in i, f, g, o order): with one bias (``bias_l0``, the numpy
  layer's) or two (``bias_ih_l0``, ``bias_hh_l0``: the torch module's and torch.nn.LSTM's).
- **the state** (``state_dict``), the hub: the parameters with two biases and, for a layer
  built with activation arguments, ``activation_input``, ``activation_forget``,
  ``activation_candidate``, ``activation_output``, ``activation_hidden``, each a float64
  ``[function, alpha, beta]`` (a state without them has the default activations). A
  state is read by :func:`read_state`, which refuses (never changes) other activations
  than the target's.
- **ONNX**: per layer ``W``, ``R``, ``B``, ``P`` in ONNX's gate orders (:func:`to_onnx`,
  :func:`state_from_onnx`).
"""

import math

import numpy as np

from ._checks import integer
from .activations import DEFAULT_ACTIVATIONS, GATES, check_activation, layer_activations
from .descriptors import NDArrayDescriptor
from .enums import ActivationFunction
from .errors import BNNSError
from .parameters import Activation, LSTMGateDescriptor

ACTIVATION_NAMES = GATES + ("hidden",)
ACTIVATION_PREFIX = "activation_"
ONNX_GATES = ("input", "output", "forget", "candidate")  # W, R, B rows (ONNX's i, o, f, c)
ONNX_PEEPHOLES = ("input", "output", "forget")  # P rows: ONNX has no candidate-gate peephole
IFO = ("input", "forget", "output")  # the gates ONNX and CoreML give a peephole
_PEEPHOLE_KINDS = (None, "diagonal", "full")


def check_peephole_gates(peephole, peephole_gates):
    """The gates with a peephole, in i, f, g, o order: all four unless ``peephole_gates``
    names some, none when ``peephole`` is None; BNNSError naming the argument."""
    if peephole not in _PEEPHOLE_KINDS:
        raise BNNSError(f"peephole: expected None, 'diagonal' or 'full', got {peephole!r}")
    if peephole_gates is None:
        return GATES if peephole else ()
    if peephole is None:
        raise BNNSError(f"peephole_gates: {peephole_gates!r} given without a peephole "
                        "(add peephole='diagonal' or 'full')")
    names = (peephole_gates,) if isinstance(peephole_gates, str) else peephole_gates
    try:
        names = list(names)
    except TypeError:
        names = None
    if (not names or len(set(map(str, names))) != len(names)
            or any(name not in GATES for name in names)):
        raise BNNSError(f"peephole_gates: expected distinct gate names among {', '.join(GATES)}, "
                        f"got {peephole_gates!r}")
    return tuple(gate for gate in GATES if gate in names)


class Layout:
    """Which weights an LSTM configuration has, and their shapes, in every form.

    ``peephole_gates`` are the gates with a peephole (in i, f, g, o order, () without
    peephole); ``activations`` is None (the defaults) or the dict of
    :func:`~bnnslstm.activations.layer_activations`.
    """

    def __init__(self, input_size, hidden_size, num_layers, bidirectional, bias, peephole=None,
                 peephole_gates=None, activations=None):
        self.I, self.H, self.L = input_size, hidden_size, num_layers
        self.D = 2 if bidirectional else 1
        self.bias, self.peephole = bool(bias), peephole
        self.peephole_gates = check_peephole_gates(peephole, peephole_gates)
        self.activations = activations
        self._members = None

    @classmethod
    def checked(cls, input_size, hidden_size, num_layers=1, bidirectional=False, bias=True,
                peephole=None, peephole_gates=None, gate_activations=None,
                hidden_activation=None):
        """A layout from a layer's constructor arguments, each checked (BNNSError naming it)."""
        sizes = [integer(value, name, 1) for name, value in (
            ("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers))]
        return cls(*sizes, bool(bidirectional), bias, peephole, peephole_gates,
                   layer_activations(gate_activations, hidden_activation))

    @classmethod
    def of(cls, layer):
        """The layout of a :class:`bnnslstm.LSTM`, a :class:`bnnslstm.torch.LSTM` or a
        :class:`torch.nn.LSTM`."""
        peephole = getattr(layer, "peephole", None)
        return cls(layer.input_size, layer.hidden_size, layer.num_layers, layer.bidirectional,
                   layer.bias, peephole, getattr(layer, "peephole_gates", None) or None,
                   getattr(layer, "_activations", None))

    @property
    def default_activations(self):
        """Whether the activations compute the defaults (given as arguments or not)."""
        return self.activations is None or all(
            check_activation(self.activations[name]) == default
            for name, default in zip(ACTIVATION_NAMES, DEFAULT_ACTIVATIONS))

    # ------------------------------------------------------------------ names and shapes
    def suffixes(self):
        """``(layer, direction, "l{layer}[_reverse]")`` in torch.nn.LSTM's order."""
        return [(l, d, f"l{l}" + ("_reverse" if d else ""))
                for l in range(self.L) for d in range(self.D)]

    def _entries(self, two_biases):
        """``(name, kind, layer, direction)`` of every parameter, in torch's registration
        order (weight_ih, weight_hh, biases, weight_ch per layer and direction)."""
        for l, d, suffix in self.suffixes():
            yield f"weight_ih_{suffix}", "first" if l == 0 else "later", l, d
            yield f"weight_hh_{suffix}", "hidden", l, d
            if self.bias:
                names = ("bias_ih", "bias_hh") if two_biases else ("bias",)
                for name in names:
                    yield f"{name}_{suffix}", "bias", l, d
            if self.peephole:
                yield f"weight_ch_{suffix}", "peep", l, d

    def block_shapes(self):
        """``(first, later, hidden, bias, peep)`` shapes (None for an absent block)."""
        I, H, L, D, k = self.I, self.H, self.L, self.D, len(self.peephole_gates)
        peep = None
        if self.peephole:
            peep = (L, D, k, H) + ((H,) if self.peephole == "full" else ())
        return ((D, 4, H, I), (L - 1, D, 4, H, D * H) if L > 1 else None, (L, D, 4, H, H),
                (L, D, 4, H) if self.bias else None, peep)

    def parameter_shapes(self, two_biases=True):
        """Parameter name -> shape, in registration order."""
        blocks = dict(zip(("first", "later", "hidden", "bias", "peep"), self.block_shapes()))
        rows = {"first": 4 * self.H, "later": 4 * self.H, "hidden": 4 * self.H,
                "bias": 4 * self.H, "peep": len(self.peephole_gates) * self.H}
        return {name: (rows[kind],) + blocks[kind][(3 if kind == "first" else 4):]
                for name, kind, _, _ in self._entries(two_biases)}

    def state_shapes(self):
        """State key -> shape: the parameters with two biases, the activation entries."""
        shapes = self.parameter_shapes(two_biases=True)
        if self.activations is not None:
            shapes.update({ACTIVATION_PREFIX + name: (3,) for name in ACTIVATION_NAMES})
        return shapes

    def members(self):
        """The parameters (two biases) that stack into each block, in the block's order:
        ``{"first": [...], "later": [...], "hidden": [...], "bias_ih": [...],
        "bias_hh": [...], "peep": [...]}``."""
        if self._members is None:  # asked by every forward of the torch module: kept
            groups = {"first": [], "later": [], "hidden": [], "bias_ih": [], "bias_hh": [],
                      "peep": []}
            for name, kind, _, _ in self._entries(two_biases=True):
                groups[name[:7] if kind == "bias" else kind].append(name)
            self._members = groups
        return self._members

    # ------------------------------------------------------------------ views
    def views(self, blocks, two_biases):
        """Parameter name -> view of ``blocks`` (numpy arrays or torch tensors); with two
        biases, ``bias_ih`` and ``bias_hh`` are the same view of the one bias."""
        first, later, hidden, bias, peep = blocks
        H = self.H
        out = {}
        for name, kind, l, d in self._entries(two_biases):
            if kind == "first":
                out[name] = first[d].reshape(4 * H, -1)
            elif kind == "later":
                out[name] = later[l - 1, d].reshape(4 * H, -1)
            elif kind == "hidden":
                out[name] = hidden[l, d].reshape(4 * H, H)
            elif kind == "bias":
                out[name] = bias[l, d].reshape(4 * H)
            else:
                out[name] = peep[l, d].reshape((-1,) + tuple(peep.shape[4:]))
        return out

    def state_from_parameters(self, parameters):
        """The state (new arrays) of one-bias parameters: ``bias_ih`` the bias, ``bias_hh``
        zeros, and the activation entries."""
        state = {}
        for name, kind, _, _ in self._entries(two_biases=True):
            if kind != "bias":
                state[name] = parameters[name].copy()
            elif name.startswith("bias_ih"):
                state[name] = parameters["bias" + name[7:]].copy()
            else:
                state[name] = np.zeros_like(parameters["bias" + name[7:]])
        state.update(activation_entries(self.activations))
        return state


def gate_descriptors(blocks, peephole_gates, flags=0):
    """The four gates' LSTMGateDescriptors, each a strided view of the blocks (``later``,
    ``bias``, ``peep`` may be None): the kernels read the four gates in place as one
    ``[D][4H][...]`` block. A gate outside ``peephole_gates`` has no ``cw_desc``."""
    first, later, hidden, bias, peep = blocks

    def view(array, k, layers=True):
        if array is None or k is None:
            return None
        return NDArrayDescriptor.from_array(array[:, :, k] if layers else array[:, k], flags=flags)

    peep_row = {gate: j for j, gate in enumerate(peephole_gates)}
    return [LSTMGateDescriptor(iw_desc=(view(first, k, layers=False), view(later, k)),
                               hw_desc=view(hidden, k), cw_desc=view(peep, peep_row.get(gate)),
                               b_desc=view(bias, k))
            for k, gate in enumerate(GATES)]


# ---------------------------------------------------------------------- the state
def activation_entries(activations):
    """``{"activation_input": [function, alpha, beta], ...}`` (float64), or {} for None."""
    if activations is None:
        return {}
    return {ACTIVATION_PREFIX + name: np.array([int(activations[name].function),
                                                float(activations[name].alpha),
                                                float(activations[name].beta)])
            for name in ACTIVATION_NAMES}


def _as_array(value):
    if hasattr(value, "detach"):  # a torch tensor (bfloat16 and the like through float64)
        value = value.detach().cpu()
        if str(value.dtype) not in ("torch.float32", "torch.float64"):
            value = value.double()
        return value.numpy()
    return np.asarray(value)


def _describe(triple):
    try:
        name = ActivationFunction(int(triple[0])).name
    except (ValueError, OverflowError):
        name = str(triple[0])
    return f"{name}(alpha={triple[1]}, beta={triple[2]})"


def _computes(triple):
    """What an activation entry computes (check_activation's triple), or None if it is none."""
    try:
        function = float(triple[0])
        if not (math.isfinite(function) and function == int(function)):
            return None
        return check_activation(Activation(int(function), triple[1], triple[2]))
    except (BNNSError, ValueError, TypeError):
        return None


def activation_problems(activations, entries, strict, prefix=""):
    """What is wrong with a state's ``activation_*`` entries (key -> value) for a layer with
    ``activations`` (None: the defaults). A state without an entry means the default
    function. Always a problem: an entry that computes another function than the layer's
    (loading never changes a layer's activations). With ``strict``: a missing entry where
    the layer's function is not the default, an entry of no activation."""
    problems = []
    mine = activation_entries(activations)
    for name, default in zip(ACTIVATION_NAMES, DEFAULT_ACTIVATIONS):
        key = prefix + ACTIVATION_PREFIX + name
        wanted = default if activations is None else _computes(mine[ACTIVATION_PREFIX + name])
        layers = (f"default {ActivationFunction(default[0]).name}" if activations is None
                  else _describe(mine[ACTIVATION_PREFIX + name]))
        if key not in entries:
            if strict and wanted != default:
                problems.append(f"missing key {key!r} (without it the state has the default "
                                f"{ActivationFunction(default[0]).name}, this layer {layers})")
            continue
        array = _as_array(entries[key])
        if array.shape != (3,) or array.dtype.kind not in "fiu":
            problems.append(f"{key}: expected 3 numbers [function, alpha, beta], got "
                            f"{array.dtype} {array.shape}")
        elif _computes(array) != wanted:
            problems.append(f"{key}: the state's {_describe(array)} differs from this layer's "
                            f"{layers} (activations are set by the constructor)")
    known = {prefix + ACTIVATION_PREFIX + name for name in ACTIVATION_NAMES}
    if strict:
        problems += [f"unexpected key {key!r}" for key in entries if key not in known]
    return problems


def read_state(layout, state, strict):
    """The arrays of ``state`` (numpy arrays or tensors) that ``layout`` takes, checked:
    ``(arrays, problems)``. Problems: with ``strict``, missing and unexpected keys; always,
    a mis-shaped or non-numeric array and activation entries that differ from the layout's."""
    if not hasattr(state, "keys"):
        raise BNNSError(f"state: expected a dict of arrays, got {type(state).__name__}")
    expected = layout.parameter_shapes(two_biases=True)
    entries = {key: state[key] for key in state.keys()
               if isinstance(key, str) and key.startswith(ACTIVATION_PREFIX)}
    problems, arrays = [], {}
    for key in state.keys():
        if key in entries:
            continue
        if key not in expected:
            problems += [f"unexpected key {key!r}"] if strict else []
            continue
        array = _as_array(state[key])
        if array.dtype.kind not in "fiu":
            problems.append(f"{key}: expected real numbers, got dtype {array.dtype}")
        elif array.shape != expected[key]:
            problems.append(f"{key}: expected shape {expected[key]}, got {array.shape}")
        else:
            arrays[key] = array
    if strict:
        problems += [f"missing key {key!r}" for key in expected if key not in state]
    problems += activation_problems(layout.activations, entries, strict)
    return arrays, problems


def write_parameters(parameters, arrays):
    """Copy a read state's ``arrays`` into one-bias ``parameters`` (``bias_ih + bias_hh``;
    a lone one counts the other as zeros; what the state lacks keeps its value)."""
    for name, target in parameters.items():
        if name.startswith("bias_"):
            parts = [arrays.get("bias_ih_" + name[5:]), arrays.get("bias_hh_" + name[5:])]
            if parts[0] is not None or parts[1] is not None:
                target[...] = sum(np.asarray(p, np.float64) for p in parts if p is not None)
        elif name in arrays:
            target[...] = arrays[name]


# ---------------------------------------------------------------------- ONNX
def _reorder(array, H, source, target):
    """Gate row blocks of ``array`` (``H`` rows each, in ``source`` order) in ``target`` order."""
    return np.concatenate([array[source.index(gate) * H:(source.index(gate) + 1) * H]
                           for gate in target])


def to_onnx(layout, state):
    """Per layer ``(W, R, B or None, P or None)`` of ONNX's LSTM from a state's arrays:
    ``W`` ``[D][4H][X]``, ``R`` ``[D][4H][H]`` (gates i, o, f, c), ``B`` ``[D][8H]``
    (``bias_ih`` then ``bias_hh``), ``P`` ``[D][3H]`` (i, o, f; 0 for a gate without a
    peephole). Refused: full peepholes, a non-zero candidate-gate peephole."""
    H = layout.H
    if layout.peephole == "full":
        raise BNNSError("layer.peephole: full peephole matrices have no ONNX form (ONNX's LSTM has "
                        "diagonal peepholes only)")
    layers = []
    for l in range(layout.L):
        W, R, B, P = [], [], [], []
        for _, _, suffix in layout.suffixes()[l * layout.D:(l + 1) * layout.D]:
            W.append(_reorder(state[f"weight_ih_{suffix}"], H, GATES, ONNX_GATES))
            R.append(_reorder(state[f"weight_hh_{suffix}"], H, GATES, ONNX_GATES))
            if layout.bias:
                B.append(np.concatenate([_reorder(state[f"bias_{kind}_{suffix}"], H, GATES,
                                                  ONNX_GATES) for kind in ("ih", "hh")]))
            if layout.peephole:
                P.append(_onnx_peepholes(layout, state[f"weight_ch_{suffix}"], suffix))
        layers.append(tuple(np.stack(arrays) if arrays else None for arrays in (W, R, B, P)))
    return layers


def _onnx_peepholes(layout, peep, suffix):
    H = layout.H
    rows = {gate: peep[j * H:(j + 1) * H] for j, gate in enumerate(layout.peephole_gates)}
    if "candidate" in rows and np.any(rows["candidate"] != 0):
        raise BNNSError(f"weight_ch_{suffix}: the candidate gate's peephole is not 0, and ONNX's "
                        f"LSTM has peepholes on the input, output and forget gates only; a layer "
                        f"built with peephole='diagonal', peephole_gates=('input', 'forget', "
                        f"'output') has none there and exports")
    return np.concatenate([rows.get(gate, np.zeros(H, peep.dtype)) for gate in ONNX_PEEPHOLES])


def state_from_onnx(layout, layers):
    """The state of ``layout`` (peepholes, if any, on :data:`IFO`) from per-layer ``(W, R,
    B or None, P or None)`` in ONNX's orders; ``bias_ih``/``bias_hh`` are ONNX's Wb/Rb."""
    H, state = layout.H, {}
    for l, (W, R, B, P) in enumerate(layers):
        for d, (_, _, suffix) in enumerate(layout.suffixes()[l * layout.D:(l + 1) * layout.D]):
            state[f"weight_ih_{suffix}"] = _reorder(W[d], H, ONNX_GATES, GATES)
            state[f"weight_hh_{suffix}"] = _reorder(R[d], H, ONNX_GATES, GATES)
            if B is not None:
                state[f"bias_ih_{suffix}"] = _reorder(B[d, :4 * H], H, ONNX_GATES, GATES)
                state[f"bias_hh_{suffix}"] = _reorder(B[d, 4 * H:], H, ONNX_GATES, GATES)
            if P is not None:
                state[f"weight_ch_{suffix}"] = _reorder(P[d], H, ONNX_PEEPHOLES, IFO)
    state.update(activation_entries(layout.activations))
    return state
