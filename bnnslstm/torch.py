"""bnnslstm inside PyTorch: :class:`LSTM`, a drop-in for :class:`torch.nn.LSTM`.

Imported only on request (``import bnnslstm.torch``); ``import bnnslstm`` never imports
PyTorch. The module is built on the BNNS-style functions of :mod:`bnnslstm.lstm`, like the
numpy layer :class:`bnnslstm.LSTM`:

- A forward that autograd will differentiate is a :class:`torch.autograd.Function`: it calls
  :func:`~bnnslstm.direct_apply_lstm_batch_training_caching` with a training cache, which
  the graph keeps until :func:`~bnnslstm.direct_apply_lstm_batch_backward` has read it.
  Without autograd (``torch.no_grad()``, or nothing that needs a gradient) the forward runs
  without a cache.
- Tensors reach the kernels as numpy views (``tensor.numpy()`` shares a CPU tensor's
  memory): the input, the initial state, the outputs and every gradient are read and
  written in place, ``batch_first`` through the NSE layout. Only a tensor whose strides a
  descriptor cannot express (a broadcast ``expand``) is copied first.
- Weights: torch keeps each layer and direction in its own tensor, the kernels read one
  gate-stacked block per kind, ``[L][D][4H][X]``. With one layer and one direction the
  parameters are that block and are read in place; otherwise each forward stacks them once
  (one copy of the weights per call, nothing per step).
- Biases: BNNS has one bias per gate; the kernels get ``bias_ih + bias_hh`` and both
  parameters receive its gradient.
- A :class:`~torch.nn.utils.rnn.PackedSequence` runs as a padded batch with per-step
  batch sizes (``sequence_descriptor``); the padding and packing are torch operations.

The autograd side (one pass as BNNS-style calls, the autograd Function, the pool of
training caches) is in ``_torch_autograd.py``.
"""

import math
import numbers
import warnings
from collections import OrderedDict

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from ._torch_autograd import _CachePool, _Config, _LSTMFunction, _Pass
from ._weights import ACTIVATION_PREFIX, Layout, activation_entries, activation_problems
from .activations import GATES, layer_activations
from .enums import ActivationFunction
from .errors import BNNSError

__all__ = ["LSTM"]

class LSTM(nn.Module):
    r"""A drop-in for :class:`torch.nn.LSTM` running on bnnslstm's kernels (CPU, float32/float64).

    ``input_size``, ``hidden_size``, ``num_layers``, ``bias``, ``batch_first``, ``dropout``
    and ``bidirectional`` mean what they mean for :class:`torch.nn.LSTM`; ``dropout`` must
    be below 1 (the kernels' inverted dropout needs a kept fraction).

    Parameters
    ----------
    proj_size : int
        Only 0 (projections are not supported).
    device : optional
        The CPU (or None).
    dtype : optional
        ``torch.float32`` or ``torch.float64`` (default: torch's default dtype).
    peephole : None, "diagonal" or "full"
        Peephole weights, parameters ``weight_ch_l{k}[_reverse]``: ``[4H]`` (diagonal) or
        ``[4H][H]`` (full), gates stacked i, f, g, o like the other weights. The output gate
        peeks at the new cell state (BNNS's equations).
    peephole_gates : collection of gate names, optional
        The gates that have a peephole (default: all four). ``("input", "forget",
        "output")`` is ONNX's and CoreML's diagonal peephole: ``weight_ch_l{k}`` is then
        ``[3H]`` (i, f, o) and the candidate gate has no peephole parameter at all.
    gate_activations : dict, optional
        ``{"input": ..., "forget": ..., "candidate": ..., "output": ...}``, each an
        :class:`~bnnslstm.Activation` (with its alpha/beta), an
        :class:`~bnnslstm.ActivationFunction` or its name; missing gates keep the defaults
        (sigmoid, sigmoid, tanh, sigmoid).
    hidden_activation : optional
        The activation of the cell state in ``h = o * act(c)`` (default tanh).

    Notes
    -----
    The parameters and ``state_dict`` keys are :class:`torch.nn.LSTM`'s (``weight_ih_l0``,
    ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``, ``..._reverse``), registered in the same
    order and initialised the same way (uniform in :math:`\pm 1/\sqrt{H}`), so
    ``load_state_dict`` works in both directions and the same ``torch.manual_seed`` gives
    the same initial weights.

    A module built with activation arguments has five more ``state_dict`` entries,
    ``activation_input``, ``activation_forget``, ``activation_candidate``,
    ``activation_output`` and ``activation_hidden`` (float64 ``[function, alpha, beta]``),
    as :meth:`bnnslstm.LSTM.state_dict` has: the two load each other's ``state_dict`` with
    ``strict=True``. They are not parameters or buffers (``.to()`` never rounds them), and
    ``load_state_dict`` never changes the activations: an entry that computes another
    function than the module's (the defaults for a module built without activation
    arguments) raises :class:`~bnnslstm.BNNSError` before anything is loaded, as do, with
    ``strict=True``, missing entries (so a :class:`torch.nn.LSTM`'s ``state_dict`` loads
    into such a module with ``strict=False`` only) and entries given to a module with the
    defaults.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None, *,
                 peephole=None, peephole_gates=None, gate_activations=None,
                 hidden_activation=None):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
            if value <= 0:
                raise ValueError(f"{name} must be greater than zero, got {value}")
        if (isinstance(dropout, bool) or not isinstance(dropout, numbers.Number)
                or not 0 <= dropout < 1):
            raise ValueError(f"dropout should be a number in range [0, 1) (the kernels' inverted "
                             f"dropout needs a kept fraction), got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so "
                          "non-zero dropout expects num_layers greater than 1, but got "
                          f"dropout={dropout} and num_layers={num_layers}", stacklevel=2)
        if proj_size != 0:
            raise ValueError(f"proj_size: projections are not supported, got {proj_size}")
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"device: bnnslstm runs on the CPU, got {device}")
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype: expected torch.float32 or torch.float64, got {dtype}")
        self._layout = Layout(int(input_size), int(hidden_size), int(num_layers), bidirectional,
                              bias, peephole, peephole_gates,
                              layer_activations(gate_activations, hidden_activation))
        self.mode = "LSTM"
        self.input_size, self.hidden_size, self.num_layers = (int(input_size), int(hidden_size),
                                                              int(num_layers))
        self.bias, self.batch_first, self.dropout = bool(bias), bool(batch_first), float(dropout)
        self.bidirectional, self.proj_size, self.peephole = bool(bidirectional), 0, peephole
        self.peephole_gates = self._layout.peephole_gates
        self._activations = self._layout.activations
        self._per_direction = (["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if bias else [])
                               + (["weight_ch"] if peephole else []))
        self._pool = _CachePool()
        self._capacities = OrderedDict()
        self._flat_weights_names = []
        for name, shape in self._layout.parameter_shapes(two_biases=True).items():
            self.register_parameter(name, nn.Parameter(torch.empty(shape, dtype=dtype)))
            self._flat_weights_names.append(name)
        self.reset_parameters()

    def reset_parameters(self):
        """Every parameter uniform in ``±1/sqrt(hidden_size)``, as :class:`torch.nn.LSTM`."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def flatten_parameters(self):
        """Nothing to do (kept so code written for :class:`torch.nn.LSTM` runs unchanged)."""

    @property
    def _flat_weights(self):
        return [getattr(self, name) for name in self._flat_weights_names]

    @property
    def all_weights(self):
        """The parameters per layer and direction, as :attr:`torch.nn.LSTM.all_weights`."""
        n = len(self._per_direction)
        weights = self._flat_weights
        return [weights[i:i + n] for i in range(0, len(weights), n)]

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += f", bidirectional={self.bidirectional}"
        if self.peephole is not None:
            s += f", peephole={self.peephole!r}"
            if self.peephole_gates != GATES:
                s += f", peephole_gates={self.peephole_gates}"
        if self._activations is not None:
            names = {k: ActivationFunction(a.function).name.lower()
                     for k, a in self._activations.items()}
            s += ", activations=" + "/".join(names[k] for k in GATES + ("hidden",))
        return s

    # ------------------------------------------------------------------ state_dict
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        """The parameters, and the activation entries of a module built with activation
        arguments (as :meth:`bnnslstm.LSTM.state_dict`'s)."""
        super()._save_to_state_dict(destination, prefix, keep_vars)
        for key, triple in activation_entries(self._activations).items():
            destination[prefix + key] = torch.from_numpy(triple)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        """The activation entries checked before anything is loaded (BNNSError: loading never
        changes the activations), the parameters loaded as by any module."""
        key_start = prefix + ACTIVATION_PREFIX
        entries = {key: value for key, value in state_dict.items()
                   if key.startswith(key_start) and "." not in key[len(prefix):]}
        problems = activation_problems(self._activations, entries, strict, prefix)
        if problems:
            raise BNNSError("state_dict: " + "; ".join(problems))
        parameters = {key: value for key, value in state_dict.items() if key not in entries}
        super()._load_from_state_dict(parameters, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    # ------------------------------------------------------------------ forward
    def forward(self, input, hx=None):
        """``output, (h_n, c_n)`` exactly as :meth:`torch.nn.LSTM.forward`.

        ``input`` is ``[T][B][I]`` (``[B][T][I]`` with ``batch_first``), unbatched
        ``[T][I]``, or a :class:`~torch.nn.utils.rnn.PackedSequence` (then ``output`` is one
        too). ``hx = (h_0, c_0)``, each ``[L*D][B][H]`` (``[L*D][H]`` unbatched), zeros
        when omitted.
        """
        weights = self._flat_weights
        dtype = weights[0].dtype
        if dtype not in (torch.float32, torch.float64) or any(w.dtype != dtype for w in weights):
            raise TypeError(f"parameters: bnnslstm runs in float32 or float64 (all parameters "
                            f"alike), got {sorted({str(w.dtype) for w in weights})}")
        packed = isinstance(input, PackedSequence)
        if packed:
            data, batch_sizes, sorted_indices, unsorted_indices = input
            T, B = len(batch_sizes), int(batch_sizes[0])
            self._check_tensor(data, 2, "input")
            rows = (torch.arange(B) < batch_sizes[:, None]).reshape(-1).nonzero().squeeze(1)
            x = (data.new_zeros((T * B, self.input_size)).index_copy(0, rows, data)
                 .view(T, B, self.input_size))
            batch_first, is_batched = False, True
            sequence = batch_sizes.numpy()
            if hx is not None and sorted_indices is not None:
                hx = tuple(state.index_select(1, sorted_indices) for state in hx)
        else:
            self._check_tensor(input, None, "input")
            if input.dim() not in (2, 3):
                raise ValueError(f"LSTM: Expected input to be 2D or 3D, got {input.dim()}D instead")
            is_batched, batch_first = input.dim() == 3, self.batch_first
            x = input if is_batched else input.unsqueeze(1 if not batch_first else 0)
            B = x.shape[0] if batch_first else x.shape[1]
            sequence = None
        if x.dtype != dtype:
            raise ValueError(f"input must have the type {dtype}, got type {x.dtype}")
        if x.shape[-1] != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected "
                               f"{self.input_size}, got {x.shape[-1]}")
        h0 = c0 = None
        if hx is not None:
            h0, c0 = self._check_state(hx, is_batched, B, dtype)
        dropout = self.dropout if self.training and self.num_layers > 1 else 0.0
        seed = int(torch.empty((), dtype=torch.int64).random_()) if dropout > 0 else 0
        run = _Pass(_Config(self), x, h0, c0, weights, batch_first, sequence, dropout, seed)
        tensors = (x, h0, c0, *weights)
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
            y, h_n, c_n = _LSTMFunction.apply(run, *tensors)
        else:
            y, h_n, c_n = run.forward()
        if packed:
            output = PackedSequence(y.reshape(T * B, -1).index_select(0, rows), batch_sizes,
                                    sorted_indices, unsorted_indices)
            if unsorted_indices is not None:
                h_n, c_n = (h_n.index_select(1, unsorted_indices),
                            c_n.index_select(1, unsorted_indices))
            return output, (h_n, c_n)
        if not is_batched:
            y, h_n, c_n = y.squeeze(0 if batch_first else 1), h_n.squeeze(1), c_n.squeeze(1)
        return y, (h_n, c_n)

    @staticmethod
    def _check_tensor(tensor, dim, name):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(tensor).__name__}")
        if tensor.device.type != "cpu":
            raise ValueError(f"{name}: bnnslstm runs on the CPU, got a tensor on {tensor.device}")
        if dim is not None and tensor.dim() != dim:
            raise ValueError(f"{name}: expected {dim} dimensions, got {tensor.dim()}")

    def _check_state(self, hx, is_batched, B, dtype):
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError("hx: expected a tuple (h_0, c_0)")
        h0, c0 = hx
        for name, state in (("hx[0]", h0), ("hx[1]", c0)):
            self._check_tensor(state, None, name)
        if is_batched and (h0.dim() != 3 or c0.dim() != 3):
            raise RuntimeError(f"For batched 3-D input, hx and cx should also be 3-D but got "
                               f"({h0.dim()}-D, {c0.dim()}-D) tensors")
        if not is_batched:
            if h0.dim() != 2 or c0.dim() != 2:
                raise RuntimeError(f"For unbatched 2-D input, hx and cx should also be 2-D but got "
                                   f"({h0.dim()}-D, {c0.dim()}-D) tensors")
            h0, c0 = h0.unsqueeze(1), c0.unsqueeze(1)
        expected = (self.num_layers * (2 if self.bidirectional else 1), B, self.hidden_size)
        for name, state in (("hidden[0]", h0), ("hidden[1]", c0)):
            if tuple(state.shape) != expected:
                raise RuntimeError(f"Expected {name} size {expected}, got {list(state.shape)}")
            if state.dtype != dtype:
                raise ValueError(f"{name} must have the type {dtype}, got type {state.dtype}")
        return h0, c0
