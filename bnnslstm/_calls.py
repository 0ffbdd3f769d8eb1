"""The everyday layer's calls: :meth:`bnnslstm.LSTM.forward` and :meth:`~bnnslstm.LSTM.backward`.

A call of a shape the layer has run before reuses that call's checked plan (its kept
calls, ``_Kept``): the weights never move (they are views of the layer's own arrays,
read by the kernels at every call), so all that changes is where the sequences and states
lie, and :meth:`Plan.move_forward` / :meth:`Plan.move_backward` move those after checking
each new array's type, extents and strides against the checked layout. A call pays for
that, not for a new plan (descriptors, every check, the tables). Calls the kept plans do
not cover (per-step batch sizes, and training with dropout, whose masks are drawn anew
every call) build their plan as any BNNS-style call does.

The first call of a shape builds its plan from descriptors on its own arrays, like the
functions of :mod:`bnnslstm.lstm`; concurrent calls of one shape each take their own kept
call (a free list per shape), so a plan is never shared by two running calls.
"""

import threading

import numpy as np

from . import _cache
from ._memory import options
from .descriptors import NDArrayDescriptor
from .enums import DataLayout
from .errors import BNNSError
from .lstm import (
    _plan_of,
    compute_lstm_training_cache_capacity,
    direct_apply_lstm_batch_backward,
    direct_apply_lstm_batch_training_caching,
    identity_chosen,
    run_kept,
)
from .parameters import LayerParametersLSTM, LSTMDataDescriptor

SHAPES_KEPT = 16  # call shapes whose kept calls a layer keeps


class _Kept:
    """One kept call: its checked plan and, for a training forward, its cache's size and
    header."""

    __slots__ = ("plan", "capacity", "header")

    def __init__(self, plan, training):
        self.plan = plan
        self.capacity = plan.capacity if training else 0
        self.header = _cache.header(plan) if training else None


class Calls:
    """A layer's kept calls (key -> free _Kept list) and its last training forward."""

    def __init__(self):
        self.lock = threading.Lock()
        self.free = {}
        self.last = None        # (key, cache, x, h0, c0) of the last training forward
        self.cache = None       # (bytearray, its uint8 view) the next training forward reuses
        self.capacities = {}    # x.shape -> training cache bytes, for the calls not kept

    def take(self, key):
        with self.lock:
            free = self.free.get(key)
            return free.pop() if free else None

    def give_back(self, key, kept):
        kept.plan.park()
        with self.lock:
            if key not in self.free and len(self.free) >= SHAPES_KEPT:
                self.free.clear()
            self.free.setdefault(key, []).append(kept)

    def take_cache(self, capacity):
        """The cache of the last training forward when it has this size, else a new one (a
        concurrent forward gets a cache of its own)."""
        with self.lock:
            cache, self.cache = self.cache, None
        if cache is None or len(cache[0]) != capacity:
            buffer = bytearray(capacity)
            cache = (buffer, np.frombuffer(buffer, np.uint8))
        return cache


# ------------------------------------------------------------------------- arguments
def inputs(layer, x, h0, c0):
    """``x``, ``h0``, ``c0`` converted and checked: (x, h0, c0, T, B)."""
    L, D, H = layer.num_layers, layer.D, layer.hidden_size
    x = layer._convert(x, "x")
    if x.ndim != 3 or x.shape[2] != layer.input_size:
        raise BNNSError(f"x: expected a 3-D array with {layer.input_size} features, "
                        f"got shape {x.shape}")
    if x.size == 0:
        raise BNNSError(f"x: shape {x.shape} is empty (a sequence needs at least one step and "
                        f"one sample)")
    T, B = (x.shape[1], x.shape[0]) if layer.batch_first else x.shape[:2]
    try:
        h0 = None if h0 is None else layer._array(h0, (L * D, B, H), "h0")
    except BNNSError as error:
        # torch.nn.LSTM's habit, forward(x, (h0, c0)): a pair of states given as h0
        if (c0 is None and isinstance(h0, (tuple, list)) and len(h0) == 2
                and all(np.ndim(state) == 3 for state in h0)):
            raise BNNSError(f"{error}; h0 looks like torch.nn.LSTM's hx = (h0, c0): pass the two "
                            f"states separately, forward(x, h0, c0)") from None
        raise
    c0 = None if c0 is None else layer._array(c0, (L * D, B, H), "c0")
    return x, h0, c0, T, B


def _states(layer, *arrays):
    """``[L*D][B][H]`` arrays as the ``[L][D][B][H]`` views the plans read (None stays)."""
    shape = (layer.num_layers, layer.D, -1, layer.hidden_size)
    return [None if array is None else array.reshape(shape) for array in arrays]


def _descriptors(layer, sequences, states):
    """Descriptors on a call's sequences (SNE, or NSE with batch_first) and states (None
    where an array is None)."""
    layout = DataLayout.NSE if layer.batch_first else DataLayout.SNE
    return ([None if array is None else NDArrayDescriptor.from_array(array, layout)
             for array in sequences]
            + [None if array is None else NDArrayDescriptor.from_array(array)
               for array in _states(layer, *states)])


def forward_params(layer, T, B, descriptors, batch_sizes=None, training=False, seed=0):
    """The BNNS parameters of a forward on ``descriptors`` (x, y, h0, c0, h_n, c_n)."""
    x_desc, y_desc, h0_desc, c0_desc, hn_desc, cn_desc = descriptors
    gates = layer._weight_gates
    params = LayerParametersLSTM(
        input_size=layer.input_size, hidden_size=layer.hidden_size, batch_size=B,
        num_layers=layer.num_layers, seq_len=T, dropout=layer.dropout if training else 0.0,
        lstm_flags=layer._flags, dropout_seed=seed,
        sequence_descriptor=None if batch_sizes is None else np.asarray(batch_sizes),
        input_descriptor=LSTMDataDescriptor(x_desc, h0_desc, c0_desc),
        output_descriptor=LSTMDataDescriptor(y_desc, hn_desc, cn_desc),
        input_gate=gates[0], forget_gate=gates[1], candidate_gate=gates[2], output_gate=gates[3])
    if layer._activations is not None:
        params.hidden_activation = layer._activations["hidden"]
        if not any(a.function for a in layer._activations.values()):
            identity_chosen.add(params)  # asked for by name: no IdentityActivationsWarning
    return params


# ------------------------------------------------------------------------- forward
def forward(layer, x, h0, c0, batch_sizes, training, filter_params):
    """LSTM.forward (its docstring is the contract)."""
    L, D, H = layer.num_layers, layer.D, layer.hidden_size
    x, h0, c0, T, B = inputs(layer, x, h0, c0)
    y = np.empty(layer._sequence_shape(T, B, D * H), layer.dtype)
    h_n = np.empty((L * D, B, H), layer.dtype)
    c_n = np.empty((L * D, B, H), layer.dtype)
    threads, workspace = options(filter_params)
    calls = layer._calls
    if batch_sizes is not None or (training and layer.dropout > 0 and L > 1):
        _forward_anew(layer, (x, y, h0, c0, h_n, c_n), T, B, batch_sizes, training,
                      filter_params)
        return y, (h_n, c_n)
    key = ("forward", x.shape, h0 is None, c0 is None, training)
    kept = calls.take(key)
    if kept is None:
        kept = _keep_forward(layer, (x, y, h0, c0, h_n, c_n), T, B, training)
    cache = None
    try:
        kept.plan.move_forward(x, y, *_states(layer, h0, c0, h_n, c_n))
        if training:
            cache = calls.take_cache(kept.capacity)
        run_kept(kept.plan, threads, workspace, None if cache is None else cache[1])
        if training:
            cache[1][:_cache.HEADER_BYTES] = np.frombuffer(kept.header, np.uint8)
    finally:
        calls.give_back(key, kept)
    _remember(calls, (key, cache, x, h0, c0) if training else None, cache)
    return y, (h_n, c_n)


def _keep_forward(layer, arrays, T, B, training):
    """A new kept forward of this shape: its plan checked on this call's arrays."""
    descriptors = _descriptors(layer, arrays[:2], arrays[2:])
    plan = _plan_of(forward_params(layer, T, B, descriptors, training=training))
    plan.check_forward_writes(None)  # the cache is the layer's own: it overlaps nothing
    plan.release_checks()
    return _Kept(plan, training)


def _forward_anew(layer, arrays, T, B, batch_sizes, training, filter_params):
    """A forward whose plan is not kept: checked and built for this call alone."""
    calls = layer._calls
    x, y, h0, c0, h_n, c_n = arrays
    seed = int(layer._rng.integers(2**63)) if training and layer.dropout > 0 else 0
    params = forward_params(layer, T, B, _descriptors(layer, (x, y), (h0, c0, h_n, c_n)),
                            batch_sizes, training, seed)
    cache = None
    if training:  # the size depends only on the shapes: asked once per shape
        capacity = calls.capacities.get(x.shape)
        if capacity is None:
            capacity = calls.capacities[x.shape] = compute_lstm_training_cache_capacity(params)
        cache = calls.take_cache(capacity)
    direct_apply_lstm_batch_training_caching(
        params, filter_params, training_cache=None if cache is None else cache[0])
    _remember(calls, (("anew", params), cache, x, h0, c0) if training else None, cache)


def _remember(calls, last, cache):
    """The last training forward (None after an inference), and its cache for the next."""
    with calls.lock:
        calls.last = last
        if cache is not None:
            calls.cache = cache


# ------------------------------------------------------------------------- backward
def backward(layer, dy, dh_n, dc_n, filter_params):
    """LSTM.backward (its docstring is the contract)."""
    calls = layer._calls
    last = calls.last
    if last is None:
        raise BNNSError("backward: no training forward to differentiate "
                        "(call forward(..., training=True))")
    key, cache, x, h0, c0 = last
    L, D, H = layer.num_layers, layer.D, layer.hidden_size
    T, B = (x.shape[1], x.shape[0]) if layer.batch_first else x.shape[:2]
    dy = layer._array(dy, layer._sequence_shape(T, B, D * H), "dy")
    dh_n = None if dh_n is None else layer._array(dh_n, (L * D, B, H), "dh_n")
    dc_n = None if dc_n is None else layer._array(dc_n, (L * D, B, H), "dc_n")
    dx = np.empty(x.shape, layer.dtype)
    dh0 = np.empty((L * D, B, H), layer.dtype)
    dc0 = np.empty((L * D, B, H), layer.dtype)
    gradients = (dx, dy, dh0, dc0, dh_n, dc_n)
    if key[0] == "anew":
        params = key[1]
        direct_apply_lstm_batch_backward(params, _delta(layer, params, gradients),
                                         filter_params, training_cache=cache[0])
        return dx, (dh0, dc0)
    threads, workspace = options(filter_params)
    back_key = ("backward", x.shape, h0 is None, c0 is None, dh_n is None, dc_n is None)
    kept = calls.take(back_key)
    if kept is None:
        kept = _keep_backward(layer, x, h0, c0, T, B, gradients)
    try:
        kept.plan.move_forward(x, None, *_states(layer, h0, c0), None, None)
        kept.plan.move_backward(dy, dx, *_states(layer, dh0, dc0, dh_n, dc_n))
        run_kept(kept.plan, threads, workspace, cache[1], backward=True)
    finally:
        calls.give_back(back_key, kept)
    return dx, (dh0, dc0)


def _delta(layer, params, gradients):
    """The BNNS delta parameters of a backward into ``gradients`` (dx, dy, dh0, dc0, dh_n,
    dc_n) and the layer's gradient storage."""
    dx_desc, dy_desc, dh0_desc, dc0_desc, dhn_desc, dcn_desc = _descriptors(
        layer, gradients[:2], gradients[2:])
    grads = layer._grad_gates
    return LayerParametersLSTM(
        input_size=layer.input_size, hidden_size=layer.hidden_size, batch_size=params.batch_size,
        num_layers=layer.num_layers, seq_len=params.seq_len, lstm_flags=params.lstm_flags,
        input_descriptor=LSTMDataDescriptor(dx_desc, dh0_desc, dc0_desc),
        output_descriptor=LSTMDataDescriptor(dy_desc, dhn_desc, dcn_desc),
        input_gate=grads[0], forget_gate=grads[1], candidate_gate=grads[2], output_gate=grads[3])


def _keep_backward(layer, x, h0, c0, T, B, gradients):
    """A new kept backward of this shape, checked on this call's arrays."""
    params = forward_params(layer, T, B, _descriptors(layer, (x, None), (h0, c0, None, None)),
                            training=True)
    plan = _plan_of(params, need_outputs=False, backward=True,
                    delta=_delta(layer, params, gradients))
    plan.release_checks()
    return _Kept(plan, False)
