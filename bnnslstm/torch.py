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
"""

import math
import numbers
import threading
import warnings
import weakref
from collections import OrderedDict

import numpy as np
import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.utils.rnn import PackedSequence

from .activations import GATES, layer_activations
from .descriptors import NDArrayDescriptor
from .enums import ActivationFunction, DataLayout, LayerFlags
from .layer import gate_descriptors
from .lstm import (
    _CORES,
    compute_lstm_training_cache_capacity,
    direct_apply_lstm_batch_backward,
    direct_apply_lstm_batch_training_caching,
)
from .parameters import GATE_FIELDS, FilterParameters, LayerParametersLSTM, LSTMDataDescriptor

__all__ = ["LSTM"]

_KEEP_CACHES = 2  # training caches a module keeps for reuse (fresh pages cost page faults)
_KEEP_CAPACITIES = 16


def _array(tensor):
    """A numpy view of a CPU tensor, or of a contiguous copy when a descriptor cannot take its
    strides (``expand`` gives zero strides)."""
    tensor = tensor.detach()
    if any(step <= 0 for size, step in zip(tensor.shape, tensor.stride()) if size > 1):
        tensor = tensor.contiguous()
    return tensor.numpy()


def _stacked(tensors, shape):
    """One ``shape`` block from per-layer-and-direction tensors: the tensor itself when there
    is one (a view when it is contiguous), else a stacked copy."""
    if len(tensors) == 1:
        block = tensors[0].detach().reshape(shape)
    else:
        block = torch.stack([t.detach() for t in tensors]).reshape(shape)
    return block.numpy()


class _CachePool:
    """Training caches for reuse (a fresh buffer costs a page fault per 4 KiB).

    :meth:`take` returns a numpy view of a pooled buffer; the buffer goes back to the pool
    when that view is freed. The forward hands the view to autograd as a saved tensor, so
    it is freed when autograd frees the graph's saved tensors: right after a backward
    (unless ``retain_graph=True``), or with the graph. A later forward then reuses it, even
    while the previous output tensors are still referenced.
    """

    def __init__(self):
        self.free = []
        # reentrant: a view that the garbage collector frees while this thread holds the
        # lock (collection can start at any allocation) gives its buffer back meanwhile
        self.lock = threading.RLock()

    def take(self, nbytes):
        buffer = None
        with self.lock:
            for i, candidate in enumerate(self.free):
                if nbytes <= len(candidate) <= 2 * nbytes:
                    buffer = self.free.pop(i)
                    break
        if buffer is None:
            buffer = np.empty(nbytes, np.uint8)
        view = buffer[:nbytes]
        weakref.finalize(view, self.give_back, buffer).atexit = False
        return view

    def __reduce__(self):  # copies and pickles of a module start with an empty pool
        return _CachePool, ()

    def give_back(self, buffer):
        with self.lock:
            if len(self.free) < _KEEP_CACHES:
                self.free.append(buffer)


class _Config:
    """What a call needs from the module besides tensors (sizes, flags, activations)."""

    def __init__(self, module):
        self.I, self.H, self.L = module.input_size, module.hidden_size, module.num_layers
        self.D = 2 if module.bidirectional else 1
        self.bias, self.peephole = module.bias, module.peephole
        self.per_direction = module._per_direction  # parameter names of one layer and direction
        self.flags = LayerFlags.BIDIRECTIONAL if module.bidirectional else 0
        activations = module._activations
        if activations is None:
            self.flags |= LayerFlags.DEFAULT_ACTIVATIONS
            self.gate_activations, self.hidden_activation = [None] * 4, None
        else:
            self.gate_activations = [activations[g] for g in GATES]
            self.hidden_activation = activations["hidden"]
        self.pool = module._pool
        self.capacities = module._capacities
        threads = torch.get_num_threads()
        self.filter_params = None if threads >= _CORES else FilterParameters(n_threads=threads)


class _Pass:
    """One forward (and its backward): a LayerParametersLSTM on numpy views of the tensors.

    ``x`` is ``[T][B][I]`` (``[B][T][I]`` when ``batch_first``), ``h0``/``c0``
    ``[L*D][B][H]`` or None, ``weights`` the module's parameters in registration order.
    """

    def __init__(self, config, x, h0, c0, weights, batch_first, batch_sizes, dropout, dropout_seed):
        self.config, self.batch_first = config, batch_first
        I, H, L, D = config.I, config.H, config.L, config.D
        T, B = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
        self.T, self.B, self.dtype = T, B, x.dtype
        self.layout = DataLayout.NSE if batch_first else DataLayout.SNE
        self.x_shape = tuple(x.shape)
        # the outputs are numpy arrays that tensors wrap, never views of tensors: the autograd
        # node keeps this object, and a reference from it to its own outputs would be a cycle
        # that Python's garbage collector cannot see (see torch.autograd.Function's docs)
        dtype = np.float64 if x.dtype == torch.float64 else np.float32
        self.outputs = (np.empty((B, T, D * H) if batch_first else (T, B, D * H), dtype),
                        np.empty((L * D, B, H), dtype), np.empty((L * D, B, H), dtype))
        self.params = LayerParametersLSTM(
            input_size=I, hidden_size=H, batch_size=B, num_layers=L, seq_len=T,
            dropout=dropout, dropout_seed=dropout_seed, lstm_flags=config.flags,
            sequence_descriptor=batch_sizes,
            input_descriptor=LSTMDataDescriptor(
                NDArrayDescriptor.from_array(_array(x), self.layout), self._state(h0),
                self._state(c0)),
            output_descriptor=LSTMDataDescriptor(
                NDArrayDescriptor.from_array(self.outputs[0], self.layout),
                self._state(self.outputs[1]), self._state(self.outputs[2])),
        )
        blocks = self._blocks(weights)
        for field, gate, activation in zip(GATE_FIELDS, gate_descriptors(*blocks),
                                           config.gate_activations):
            if activation is not None:
                gate.activation = activation
            setattr(self.params, field, gate)
        if config.hidden_activation is not None:
            self.params.hidden_activation = config.hidden_activation

    def _state(self, state):
        """An ``[L*D][B][H]`` tensor (or array) as the ``[L][D][B][H]`` descriptor, or None."""
        if state is None:
            return None
        config = self.config
        array = state if isinstance(state, np.ndarray) else _array(state)
        return NDArrayDescriptor.from_array(array.reshape(config.L, config.D, self.B, config.H))

    def _blocks(self, weights):
        """The gate-stacked arrays of :func:`bnnslstm.layer.gate_descriptors` from the
        parameters: first [D][4][H][I], later [L-1][D][4][H][DH], hidden [L][D][4][H][H],
        bias [L][D][4][H], peep [L][D][4][H] or [L][D][4][H][H]."""
        config = self.config
        I, H, L, D = config.I, config.H, config.L, config.D
        named = self._by_name(weights)
        first = _stacked(named["weight_ih"][:D], (D, 4, H, I))
        later = _stacked(named["weight_ih"][D:], (L - 1, D, 4, H, D * H)) if L > 1 else None
        hidden = _stacked(named["weight_hh"], (L, D, 4, H, H))
        bias = None
        if config.bias:
            bias = (torch.stack([b.detach() for b in named["bias_ih"]])
                    + torch.stack([b.detach() for b in named["bias_hh"]])
                    ).reshape(L, D, 4, H).numpy()
        peep = None
        if config.peephole is not None:
            peep = _stacked(named["weight_ch"],
                            (L, D, 4, H) + ((H,) if config.peephole == "full" else ()))
        return first, later, hidden, bias, peep

    def _by_name(self, tensors):
        """{"weight_ih": [one per layer and direction], ...} from the flat parameter list."""
        names = self.config.per_direction
        return {name: list(tensors[k::len(names)]) for k, name in enumerate(names)}

    # ------------------------------------------------------------------ calls
    def capacity(self):
        """The library's cache size for this call (asked once per shape: validation is not
        free)."""
        key = (self.T, self.B, self.dtype, self.params.dropout,
               None if self.params.sequence_descriptor is None
               else self.params.sequence_descriptor.tobytes())
        capacities = self.config.capacities
        nbytes = capacities.get(key)
        if nbytes is None:
            nbytes = compute_lstm_training_cache_capacity(self.params)
            capacities[key] = nbytes
            while len(capacities) > _KEEP_CAPACITIES:
                capacities.popitem(last=False)
        return nbytes

    def forward(self, cache=None):
        direct_apply_lstm_batch_training_caching(self.params, self.config.filter_params, cache)
        return tuple(torch.from_numpy(array) for array in self.outputs)

    def backward(self, cache, dy, dh_n, dc_n, need_x, need_state, need_weights):
        """Fresh gradient tensors: ``dx, dh0, dc0, [one per parameter]`` (None where not
        needed)."""
        config = self.config
        I, H, L, D, B, dtype = config.I, config.H, config.L, config.D, self.B, self.dtype
        dx = torch.empty(self.x_shape, dtype=dtype) if need_x else None
        dh0 = torch.empty((L * D, B, H), dtype=dtype) if need_state[0] else None
        dc0 = torch.empty((L * D, B, H), dtype=dtype) if need_state[1] else None
        blocks = [None] * 5
        if need_weights:
            blocks = [torch.empty((D, 4, H, I), dtype=dtype),
                      torch.empty((L - 1, D, 4, H, D * H), dtype=dtype) if L > 1 else None,
                      torch.empty((L, D, 4, H, H), dtype=dtype),
                      torch.empty((L, D, 4, H), dtype=dtype) if config.bias else None,
                      None]
            if config.peephole is not None:
                blocks[4] = torch.empty((L, D, 4, H) + ((H,) if config.peephole == "full" else ()),
                                        dtype=dtype)
        delta = LayerParametersLSTM(
            input_size=I, hidden_size=H, batch_size=B, num_layers=L, seq_len=self.T,
            lstm_flags=config.flags,
            input_descriptor=LSTMDataDescriptor(
                None if dx is None else NDArrayDescriptor.from_array(dx.numpy(), self.layout),
                self._state(dh0), self._state(dc0)),
            output_descriptor=LSTMDataDescriptor(
                None if dy is None else NDArrayDescriptor.from_array(_array(dy), self.layout),
                self._state(dh_n), self._state(dc_n)),
        )
        arrays = [None if block is None else block.numpy() for block in blocks]
        for field, gate in zip(GATE_FIELDS, gate_descriptors(*arrays)):
            setattr(delta, field, gate)
        direct_apply_lstm_batch_backward(self.params, delta, self.config.filter_params, cache)
        return dx, dh0, dc0, self._parameter_gradients(blocks) if need_weights else None

    def _parameter_gradients(self, blocks):
        """One gradient per parameter, in registration order, as views of the blocks (the two
        biases get the same values in separate tensors: optimizers may scale ``.grad`` in place)."""
        config = self.config
        H, L, D = config.H, config.L, config.D
        first, later, hidden, bias, peep = blocks
        grads = []
        for layer in range(L):
            for d in range(D):
                ih = first[d] if layer == 0 else later[layer - 1, d]
                for name in config.per_direction:
                    if name == "weight_ih":
                        grads.append(ih.reshape(4 * H, -1))
                    elif name == "weight_hh":
                        grads.append(hidden[layer, d].reshape(4 * H, H))
                    elif name == "bias_ih":
                        grads.append(bias[layer, d].reshape(4 * H))
                    elif name == "bias_hh":
                        grads.append(bias[layer, d].reshape(4 * H).clone())
                    else:
                        grads.append(peep[layer, d].reshape((4 * H,) + peep.shape[4:]))
        return grads


class _LSTMFunction(torch.autograd.Function):
    """The forward with a training cache and its backward, for autograd."""

    @staticmethod
    def forward(ctx, run, x, h0, c0, *weights):
        ctx.set_materialize_grads(False)  # an unused output's gradient reaches the library as None
        cache = run.config.pool.take(run.capacity())
        y, h_n, c_n = run.forward(cache)
        ctx.run = run
        # the library reads x, h0, c0 (and unstacked weights) again in the backward: autograd's
        # version counters then refuse a backward after they were modified in place. The cache
        # is a saved tensor too, so autograd decides when it is free (see _CachePool).
        ctx.save_for_backward(x, h0, c0, torch.from_numpy(cache), *weights)
        return y, h_n, c_n

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dh_n, dc_n):
        # raises if an input changed in place since the forward
        cache = ctx.saved_tensors[3].numpy()
        need = ctx.needs_input_grad
        dx, dh0, dc0, weights = ctx.run.backward(cache, dy, dh_n, dc_n, need[1], need[2:4],
                                                 any(need[4:]))
        if weights is None:
            weights = [None] * (len(need) - 4)
        else:
            weights = [g if n else None for g, n in zip(weights, need[4:])]
        return (None, dx, dh0, dc0, *weights)


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
        Peephole weights on all four gates, parameters ``weight_ch_l{k}[_reverse]``:
        ``[4H]`` (diagonal) or ``[4H][H]`` (full), gates stacked i, f, g, o like the other
        weights. The output gate peeks at the new cell state (BNNS's equations).
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
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None, *,
                 peephole=None, gate_activations=None, hidden_activation=None):
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
                          f"dropout={dropout} and num_layers={num_layers}")
        if proj_size != 0:
            raise ValueError(f"proj_size: projections are not supported, got {proj_size}")
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"device: bnnslstm runs on the CPU, got {device}")
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype: expected torch.float32 or torch.float64, got {dtype}")
        if peephole not in (None, "diagonal", "full"):
            raise ValueError(f"peephole: expected None, 'diagonal' or 'full', got {peephole!r}")
        self.mode = "LSTM"
        self.input_size, self.hidden_size, self.num_layers = (int(input_size), int(hidden_size),
                                                              int(num_layers))
        self.bias, self.batch_first, self.dropout = bool(bias), bool(batch_first), float(dropout)
        self.bidirectional, self.proj_size, self.peephole = bool(bidirectional), 0, peephole
        self._activations = self._check_activations(gate_activations, hidden_activation)
        self._per_direction = (["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if bias else [])
                               + (["weight_ch"] if peephole else []))
        self._pool = _CachePool()
        self._capacities = OrderedDict()
        H, D = self.hidden_size, 2 if bidirectional else 1
        self._flat_weights_names = []
        for layer in range(self.num_layers):
            for d in range(D):
                suffix = f"_l{layer}" + ("_reverse" if d else "")
                shapes = {"weight_ih": (4 * H, self.input_size if layer == 0 else D * H),
                          "weight_hh": (4 * H, H), "bias_ih": (4 * H,), "bias_hh": (4 * H,),
                          "weight_ch": (4 * H, H) if peephole == "full" else (4 * H,)}
                for name in self._per_direction:
                    self.register_parameter(name + suffix,
                                            nn.Parameter(torch.empty(shapes[name], dtype=dtype)))
                    self._flat_weights_names.append(name + suffix)
        self.reset_parameters()

    @staticmethod
    def _check_activations(gate_activations, hidden_activation):
        return layer_activations(gate_activations, hidden_activation)

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
        if self._activations is not None:
            names = {k: ActivationFunction(a.function).name.lower()
                     for k, a in self._activations.items()}
            s += ", activations=" + "/".join(names[k] for k in GATES + ("hidden",))
        return s

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
