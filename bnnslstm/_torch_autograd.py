"""The autograd side of :mod:`bnnslstm.torch`: one forward or backward of the module as
BNNS-style calls (``_Pass``: the module's tensors as descriptors, viewed in place), the
:class:`torch.autograd.Function` that autograd differentiates (``_LSTMFunction``), and the
pool of training caches a module reuses. The module itself, :class:`bnnslstm.torch.LSTM`,
is in ``torch.py``; its first page says how tensors, weights and biases reach the kernels.
"""

import threading
import weakref

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from ._threads import CORES
from ._weights import gate_descriptors
from .activations import GATES
from .descriptors import NDArrayDescriptor
from .enums import DataLayout, LayerFlags
from .lstm import (
    compute_lstm_training_cache_capacity,
    direct_apply_lstm_batch_backward,
    direct_apply_lstm_batch_training_caching,
    identity_chosen,
)
from .parameters import GATE_FIELDS, FilterParameters, LayerParametersLSTM, LSTMDataDescriptor

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
        self.layout = module._layout
        self.names = module._flat_weights_names  # the parameters' names, in registration order
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
        self.filter_params = None if threads >= CORES else FilterParameters(n_threads=threads)


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
        gates = gate_descriptors(blocks, config.layout.peephole_gates)
        for field, gate, activation in zip(GATE_FIELDS, gates, config.gate_activations):
            if activation is not None:
                gate.activation = activation
            setattr(self.params, field, gate)
        if config.hidden_activation is not None:
            self.params.hidden_activation = config.hidden_activation
            if not any(a.function for a in config.gate_activations + [config.hidden_activation]):
                identity_chosen.add(self.params)  # asked for by name: no warning

    def _state(self, state):
        """An ``[L*D][B][H]`` tensor (or array) as the ``[L][D][B][H]`` descriptor, or None."""
        if state is None:
            return None
        config = self.config
        array = state if isinstance(state, np.ndarray) else _array(state)
        return NDArrayDescriptor.from_array(array.reshape(config.L, config.D, self.B, config.H))

    def _blocks(self, weights):
        """The gate-stacked blocks of :mod:`bnnslstm._weights` (first, later, hidden, bias,
        peep) from the parameters; the bias is ``bias_ih + bias_hh``."""
        layout = self.config.layout
        named = dict(zip(self.config.names, weights))
        members = layout.members()
        first, later, hidden, bias, peep = layout.block_shapes()
        blocks = [_stacked([named[n] for n in members[kind]], shape) if shape else None
                  for kind, shape in (("first", first), ("later", later), ("hidden", hidden),
                                      ("peep", peep))]
        if bias is not None:
            bias = sum(torch.stack([named[n].detach() for n in members[kind]])
                       for kind in ("bias_ih", "bias_hh")).reshape(bias).numpy()
        return blocks[0], blocks[1], blocks[2], bias, blocks[3]

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
            blocks = [None if shape is None else torch.empty(shape, dtype=dtype)
                      for shape in config.layout.block_shapes()]
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
        for field, gate in zip(GATE_FIELDS, gate_descriptors(arrays, config.layout.peephole_gates)):
            setattr(delta, field, gate)
        direct_apply_lstm_batch_backward(self.params, delta, self.config.filter_params, cache)
        return dx, dh0, dc0, self._parameter_gradients(blocks) if need_weights else None

    def _parameter_gradients(self, blocks):
        """One gradient per parameter, in registration order, as views of the blocks (the two
        biases get the same values in separate tensors: optimizers may scale ``.grad`` in place)."""
        views = self.config.layout.views(blocks, two_biases=True)
        return [views[name].clone() if name.startswith("bias_hh") else views[name]
                for name in self.config.names]


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
