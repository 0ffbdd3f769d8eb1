"""The everyday layer: numpy arrays in, numpy arrays out, PyTorch-compatible weights.

It is a thin owner of buffers around the BNNS-style functions of :mod:`bnnslstm.lstm`:
the parameters live in a few contiguous arrays, each PyTorch-named parameter is a view of
them, and every gate's descriptor is a strided view too, so nothing is copied per call.
Keeping a layer (state_dict, pickling, save/load) is in ``_keeping.py``.
"""

import numpy as np

from . import _calls, _keeping
from ._checks import fraction
from ._weights import Layout, gate_descriptors
from .activations import GATES
from .enums import ActivationFunction, LayerFlags
from .errors import BNNSError
from .stream import Stream

__all__ = ["LSTM"]


class _Weights:
    """Storage for one set of parameters (or their gradients): the gate-stacked blocks of
    :class:`~bnnslstm._weights.Layout` (``first``, ``later``, ``hidden``, ``bias``,
    ``peep``), which the kernels read in place."""

    def __init__(self, layout, dtype):
        self.layout = layout
        self.blocks = tuple(None if shape is None else np.zeros(shape, dtype)
                            for shape in layout.block_shapes())

    def named(self):
        """PyTorch-named views: ``weight_ih_l0``, ``weight_hh_l1_reverse``, ``bias_l0``, ..."""
        return self.layout.views(self.blocks, two_biases=False)

    def gates(self, flags):
        """One LSTMGateDescriptor per gate, each a strided view of this storage."""
        return gate_descriptors(self.blocks, self.layout.peephole_gates, flags)


class LSTM:
    """A stacked, optionally bidirectional LSTM with PyTorch's conventions.

    Parameters
    ----------
    input_size, hidden_size, num_layers : int
    bidirectional : bool
    dropout : float
        Inverted dropout on the input of every layer but the first, in training.
    batch_first : bool
        Inputs and outputs are ``[B][T][F]`` instead of ``[T][B][F]``.
    bias : bool
        One bias per layer and direction (BNNS has a single bias; PyTorch's two add up).
    peephole : None, "diagonal" or "full"
        Peephole weights (``weight_ch_l{k}``), on all four gates unless ``peephole_gates``
        names some.
    peephole_gates : collection of gate names, optional
        The gates that have a peephole, among ``"input"``, ``"forget"``, ``"candidate"``,
        ``"output"``. ``("input", "forget", "output")`` is ONNX's and CoreML's diagonal
        peephole (none on the candidate gate), the form :mod:`bnnslstm.onnx` exports and
        loads. ``weight_ch_l{k}`` then stacks only those gates (``[3H]``, in i, f, g, o
        order); the others have no peephole weight at all, so training cannot give them one.
    dtype : numpy.float32 or numpy.float64
    seed : int or None
        Seeds the initial weights (uniform in ``±1/sqrt(hidden_size)``, as PyTorch) and the
        dropout masks.
    gate_activations : dict, optional
        ``{"input": ..., "forget": ..., "candidate": ..., "output": ...}``, each an
        :class:`~bnnslstm.Activation` (with its alpha/beta), an
        :class:`~bnnslstm.ActivationFunction` or its name; missing gates keep the defaults
        (sigmoid, sigmoid, tanh, sigmoid). The same argument as
        :class:`bnnslstm.torch.LSTM`'s.
    hidden_activation : optional
        The activation of the cell state in ``h = o * act(c)`` (default tanh).

    Notes
    -----
    Input types: ``x``, ``h0``, ``c0`` and the gradients given to :meth:`backward` are
    converted to the layer's ``dtype`` when numpy casts their type to it safely (no
    rounding: float32 or integers up to 16 bits for a float32 layer; float32 and any
    integer for a float64 layer); Python lists and scalars are converted as
    ``np.asarray(value, dtype)``. Any other array type -- float64 or int64 for a float32
    layer, complex, object -- is refused with :class:`~bnnslstm.BNNSError` naming the
    argument: convert it yourself (``x.astype(np.float32)``) to accept the rounding.
    Outputs always have the layer's ``dtype``.

    Keeping a layer: :meth:`state_dict` / :meth:`load_state_dict` (the weights under
    :class:`torch.nn.LSTM`'s names), :meth:`save` / :meth:`load` (one ``.npz`` file with
    the configuration too), ``pickle`` and ``copy.deepcopy`` (an independent layer with the
    same configuration, weights and random state). None of them keeps the last training
    forward or :attr:`grads`: a copy's first :meth:`backward` needs a forward of its own.

    Threads: inference calls (``training=False``) may run on one layer from several threads
    at once. Training keeps state on the layer (the last training forward's cache, which
    :meth:`backward` differentiates, and :attr:`grads`), so a layer trains in one thread
    at a time; concurrent training needs a layer per thread (or the functions of
    :mod:`bnnslstm.lstm`, which keep no state).
    """

    def __init__(self, input_size, hidden_size, num_layers=1, *, bidirectional=False, dropout=0.0,
                 batch_first=False, bias=True, peephole=None, peephole_gates=None,
                 dtype=np.float32, seed=None, gate_activations=None, hidden_activation=None):
        self._layout = Layout.checked(input_size, hidden_size, num_layers, bidirectional, bias,
                                      peephole, peephole_gates, gate_activations, hidden_activation)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise BNNSError(f"dtype: expected float32 or float64, got {self.dtype}")
        layout = self._layout
        self.input_size, self.hidden_size, self.num_layers = layout.I, layout.H, layout.L
        self.bidirectional, self.batch_first = bool(bidirectional), bool(batch_first)
        self.dropout = fraction(dropout, "dropout")
        self.bias, self.peephole = layout.bias, peephole
        self.peephole_gates = layout.peephole_gates
        self._activations = layout.activations
        self._flags = int((LayerFlags.BIDIRECTIONAL if self.bidirectional else 0)
                          | (LayerFlags.DEFAULT_ACTIVATIONS if self._activations is None else 0))
        self.D = layout.D
        self._weights = _Weights(layout, self.dtype)
        self._grads = _Weights(layout, self.dtype)
        self._rng = np.random.default_rng(seed)
        bound = 1 / np.sqrt(self.hidden_size)
        for array in self._weights.named().values():
            array[...] = self._rng.uniform(-bound, bound, array.shape)
        # the kept calls and the last training forward (bnnslstm/_calls.py)
        self._calls = _calls.Calls()
        # descriptors on the storage, built once: the arrays never move
        self._weight_gates = self._weights.gates(0)
        self._grad_gates = self._grads.gates(0)
        if self._activations is not None:
            for gate, name in zip(self._weight_gates, GATES):
                gate.activation = self._activations[name]

    # ----------------------------------------------------------------- parameters
    def parameters(self):
        """PyTorch-named views of the weights (writing into them changes the layer)."""
        return self._weights.named()

    @property
    def grads(self):
        """PyTorch-named gradients of the last :meth:`backward` (same names as :meth:`parameters`).

        Each access returns fresh copies: arrays taken from it keep their values when a
        later :meth:`backward` overwrites the layer's gradients.
        """
        return {name: array.copy() for name, array in self._grads.named().items()}

    @property
    def gate_activations(self):
        """The four gates' :class:`~bnnslstm.Activation` (a new dict), or None for the defaults."""
        return None if self._activations is None else {g: self._activations[g] for g in GATES}

    @property
    def hidden_activation(self):
        """The cell state's activation in ``h = o * act(c)``, or None for the default (tanh)."""
        return None if self._activations is None else self._activations["hidden"]

    # ----------------------------------------------------------------- keeping a layer
    def state_dict(self):
        """The weights as new numpy arrays under :class:`torch.nn.LSTM`'s keys.

        ``weight_ih_l{k}`` ``[4H][I or D*H]``, ``weight_hh_l{k}`` ``[4H][H]``, and with
        ``bias`` ``bias_ih_l{k}`` (the layer's one bias) and ``bias_hh_l{k}`` (zeros), each
        with a ``_reverse`` twin for the second direction: ``torch.nn.LSTM.load_state_dict``
        takes it (after ``torch.from_numpy``) when the layer has neither peepholes nor
        activation arguments. Extras: ``weight_ch_l{k}[_reverse]`` the peepholes (``[4H]``
        diagonal or ``[4H][H]`` full, gates i, f, g, o; ``[3H]`` or ``[3H][H]`` with three
        ``peephole_gates``), and for a layer built with activation arguments
        ``activation_input``, ``activation_forget``, ``activation_candidate``,
        ``activation_output`` and ``activation_hidden``, each a float64 array
        ``[function, alpha, beta]`` (the :class:`~bnnslstm.ActivationFunction` value).
        :class:`bnnslstm.torch.LSTM`'s ``state_dict`` has the same keys, so each loads the
        other's with ``strict=True``.
        """
        return _keeping.state_dict(self)

    def load_state_dict(self, state, strict=True):
        """Copy the weights of ``state`` (from :meth:`state_dict`, or a
        :class:`torch.nn.LSTM`'s ``state_dict()``: tensors are accepted) into the layer.

        The biases become ``bias_ih + bias_hh``. Refused with :class:`~bnnslstm.BNNSError`,
        before anything changes, when a key is missing (``strict``; without it the layer
        keeps its value, and a lone ``bias_ih``/``bias_hh`` counts the other as zeros),
        unexpected (``strict``), mis-shaped or not a real number, and, with or without
        ``strict``, when an ``activation_*`` entry computes another function than the
        layer's (the defaults for a layer built without activation arguments): activations
        are part of the configuration, given to the constructor, and weights trained with
        other ones are not this model. The message names every key at fault.
        """
        _keeping.load_state_dict(self, state, strict)

    def __getstate__(self):
        return _keeping.getstate(self)

    def __setstate__(self, saved):
        _keeping.setstate(self, saved)

    def save(self, path):
        """Write the layer to one ``.npz`` file: its configuration and its :meth:`state_dict`.

        ``path`` is a file name (written as given: no ``.npz`` is appended) or a writable
        binary file. The file holds only numeric arrays and one string (the configuration,
        as JSON), so :meth:`load` reads it with ``allow_pickle=False``. The random state
        (dropout masks) is not saved.
        """
        _keeping.save(self, path)

    @classmethod
    def load(cls, path):
        """The layer a :meth:`save` wrote to ``path`` (a file name or a readable binary file).

        The file is read with ``allow_pickle=False``: a file from elsewhere cannot run
        code. A file that is not an ``.npz`` written by :meth:`save` (truncated, another
        format, an array of Python objects, an unknown version, a configuration or an array
        that does not fit) raises :class:`~bnnslstm.BNNSError` saying what is wrong.
        """
        return _keeping.load(cls, path)

    # ----------------------------------------------------------------- calls
    def _convert(self, value, name):
        """``value`` as a C-contiguous array of this layer's type, by the rule of the class
        docstring: arrays whose type casts safely, Python values as np.asarray."""
        dtype = getattr(value, "dtype", None)
        if dtype is None:
            try:
                return np.ascontiguousarray(value, dtype=self.dtype)
            except (TypeError, ValueError) as error:
                raise BNNSError(f"{name}: cannot be read as {self.dtype.name} numbers "
                                f"({error})") from None
        dtype = np.dtype(dtype)
        if dtype.kind not in "fiub" or not np.can_cast(dtype, self.dtype, "safe"):
            # a layer computes in float32 or float64: only those are worth suggesting
            other = (f" or build the layer with dtype=np.{dtype.name}"
                     if dtype in (np.float32, np.float64) else "")
            raise BNNSError(f"{name}: dtype {dtype} but the layer is {self.dtype.name}, and "
                            f"{dtype} does not convert to it without rounding; convert it yourself "
                            f"({name}.astype(np.{self.dtype.name})){other}")
        return np.ascontiguousarray(value, dtype=self.dtype)

    def _array(self, value, shape, name):
        """``value`` as a C-contiguous array of this layer's type, checked against ``shape``."""
        array = self._convert(value, name)
        if array.shape != shape:
            raise BNNSError(f"{name}: expected shape {shape}, got {array.shape}")
        return array

    def _sequence_shape(self, T, B, width):
        return (B, T, width) if self.batch_first else (T, B, width)

    def forward(self, x, h0=None, c0=None, batch_sizes=None, training=True, *,
                filter_params=None):
        """Run the layer: ``y, (h_n, c_n)``.

        ``x`` is ``[T][B][I]`` (``[B][T][I]`` with ``batch_first``); ``h0``, ``c0``,
        ``h_n``, ``c_n`` are ``[L*D][B][H]``, and ``h0`` and ``c0`` two arguments (where
        :class:`torch.nn.LSTM` takes one pair ``hx = (h0, c0)``). ``batch_sizes``
        (PyTorch's packed-sequence batch sizes, non-increasing, one per step) gives variable
        lengths: samples sorted by decreasing length, outputs 0 past each sample's end.
        ``training=True`` keeps a training cache for :meth:`backward` and applies dropout.
        ``filter_params`` (a :class:`~bnnslstm.FilterParameters`) as for the BNNS-style
        functions.

        A call of a shape the layer has run before reuses that call's checks (only the
        new arrays' types and shapes are checked), so repeated small calls cost little.
        """
        return _calls.forward(self, x, h0, c0, batch_sizes, training, filter_params)

    __call__ = forward

    def backward(self, dy, dh_n=None, dc_n=None, *, filter_params=None):
        """Gradients of the last training :meth:`forward`: ``dx, (dh0, dc0)``; fills
        :attr:`grads`.

        ``dy`` has ``y``'s shape; ``dh_n``, ``dc_n`` (optional) ``[L*D][B][H]``. The
        parameter gradients overwrite :attr:`grads` (they are not accumulated).
        """
        return _calls.backward(self, dy, dh_n, dc_n, filter_params)

    def stream(self, batch_size=1, h0=None, c0=None, *, filter_params=None):
        """A :class:`~bnnslstm.Stream`: this layer run one frame at a time, its state
        carried from frame to frame (``h0``, ``c0``: ``[L][B][H]``, zeros when None).

        Refused with :class:`~bnnslstm.BNNSError` for a bidirectional layer, whose reverse
        direction needs the frames to come.
        """
        return Stream(self, batch_size, h0, c0, filter_params)

    # ----------------------------------------------------------------- PyTorch
    @classmethod
    def from_torch(cls, module, dtype=np.float32):
        """An LSTM computing what ``module`` computes: a :class:`torch.nn.LSTM` or a
        :class:`bnnslstm.torch.LSTM`, whose peepholes and activations it takes too.

        The configuration (sizes, directions, ``batch_first``, ``bias``, ``dropout``,
        peepholes, activations) is the module's, the weights its ``state_dict``'s
        (``bias_ih + bias_hh`` summed into the one bias). ``proj_size`` is refused.
        """
        return _keeping.from_torch(cls, module, dtype)

    def to_torch(self):
        """A :class:`torch.nn.LSTM` with these weights (bias in ``bias_ih``, ``bias_hh`` zero).

        Refused with :class:`~bnnslstm.BNNSError` naming what torch.nn.LSTM lacks when the
        layer has peepholes or activations other than sigmoid gates and tanh (a
        :class:`bnnslstm.torch.LSTM` built with the same arguments loads
        :meth:`state_dict` instead).
        """
        return _keeping.to_torch(self)

    def __repr__(self):
        text = (f"LSTM({self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"bidirectional={self.bidirectional}, dropout={self.dropout}, "
                f"batch_first={self.batch_first}, bias={self.bias}, peephole={self.peephole!r}, "
                f"dtype={self.dtype.name}")
        if self.peephole and self.peephole_gates != GATES:
            text += f", peephole_gates={self.peephole_gates}"
        if self._activations is not None:
            names = {k: ActivationFunction(a.function).name.lower()
                     for k, a in self._activations.items()}
            text += ", activations=" + "/".join(names[k] for k in GATES + ("hidden",))
        return text + ")"
