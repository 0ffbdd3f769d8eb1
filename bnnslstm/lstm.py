"""The BNNS-style functions: validate, plan, run the kernels (SPEC §4-§6).

Every call first resolves and checks all of its parameters (:mod:`._plan`); only then do
the Cython kernels run, without the GIL, reading the caller's descriptors in place and
writing results straight into them. A call that raises has written nothing.
"""

import os
import threading
from contextlib import nullcontext

import numpy as np

from . import _cache
from ._call import Kernel
from ._kernels._lstm import team_available
from ._plan import GATES, check_disjoint, gate_views, make_plan, overlap, sequence_view, tensor_view
from .enums import LayerFlags, NDArrayFlags
from .errors import BNNSError
from .parameters import FilterParameters

__all__ = [
    "compute_lstm_training_cache_capacity",
    "training_cache_layout",
    "direct_apply_lstm_batch_training_caching",
    "direct_apply_lstm_batch_backward",
]


def compute_lstm_training_cache_capacity(layer_params):
    """Minimum size in bytes of the training cache for these parameters (SPEC §5)."""
    return _cache.capacity(make_plan(layer_params, need_outputs=False))


def training_cache_layout(layer_params):
    """The regions of the training cache: a list of :class:`~bnnslstm._cache.Region`
    (``name``, ``layer``, byte ``offset``, logical ``shape``, ``data_type``, ``nbytes``)."""
    return _cache.regions(make_plan(layer_params, need_outputs=False))


# ---------------------------------------------------------------------------- threads
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
_TEAM_MAX = min(team_available(), 256)
# a step whose recurrent product has fewer multiply-adds than this runs on one thread: the
# barriers of a team would cost more than the other cores give
_TEAM_MIN_WORK = 1 << 17


def _threads(filter_params):
    """(threads, whether the caller chose them): ``n_threads = 0`` (or no filter
    parameters) means every core this process may use."""
    if filter_params is None:
        return _CORES, False
    if not isinstance(filter_params, FilterParameters):
        raise BNNSError(f"filter_params: expected FilterParameters or None, got {type(filter_params).__name__}")
    n = filter_params.n_threads
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise BNNSError(f"filter_params.n_threads: expected an integer >= 0, got {n!r}")
    return (_CORES, False) if n == 0 else (int(n), True)


def _team(plan, threads):
    """The kernels' team: the threads asked for, as many as a step's work can use."""
    work = plan.D * 4 * plan.H * plan.H * plan.B
    return max(1, min(threads, _TEAM_MAX, work // _TEAM_MIN_WORK))


class _SerialBlas:
    """Keeps BLAS single-threaded while a call runs: each thread of the call's team calls
    BLAS on its own slice, and BLAS threads on top would compete for the same cores.

    The limit applies only inside the ``with`` and is reference-counted, so concurrent
    calls restore the caller's setting once, when the last of them ends."""

    def __init__(self):
        self._lock = threading.Lock()
        self._users = 0
        self._saved = []
        self._libraries = None

    def _blas(self):
        if self._libraries is None:
            from threadpoolctl import ThreadpoolController

            self._libraries = ThreadpoolController().select(user_api="blas").lib_controllers
        return self._libraries

    def __enter__(self):
        with self._lock:
            if self._users == 0:
                self._saved = [(lib, lib.num_threads) for lib in self._blas()]
                for lib, n in self._saved:
                    if n != 1:
                        lib.set_num_threads(1)
            self._users += 1

    def __exit__(self, *exc):
        with self._lock:
            self._users -= 1
            if self._users == 0:
                for lib, n in self._saved:
                    if n != 1:
                        lib.set_num_threads(n)
                self._saved = []


_serial_blas = _SerialBlas()


def _blas_threads(team, explicit):
    """Inside a team, and when the caller asked for one thread, BLAS runs single-threaded;
    a call too small for a team leaves BLAS as it is."""
    return _serial_blas if team > 1 or explicit else nullcontext()


# ---------------------------------------------------------------------------- scratch
_scratch = threading.local()


def _scratch_bytes(name, nbytes):
    """A per-thread scratch byte buffer, reused from call to call while it is large enough
    (fresh pages cost page faults on every call; concurrent calls on other threads get
    their own)."""
    arrays = getattr(_scratch, "arrays", None)
    if arrays is None:
        arrays = _scratch.arrays = {}
    array = arrays.get(name)
    if array is None or array.nbytes < nbytes:
        array = arrays[name] = np.empty(max(nbytes, 64), np.uint8)
    return array


def _kernel(plan, regions, team, backward=False):
    """The kernels' description of the call, with its scratch bound."""
    kernel = Kernel(plan, regions, team)
    sizes = kernel.scratch_bytes(backward)
    total = sum((count * plan.dtype.itemsize + 63) // 64 * 64 for count in sizes.values())
    kernel.bind_scratch(_scratch_bytes("work", total), sizes)
    return kernel


def _run_forward(plan, cache_bytes, team):
    """Every layer's kernels: y, h_T, c_T written in place, and the cache's regions (or,
    without a cache, the scratch standing in for what the steps read back)."""
    if cache_bytes is None:
        regions = _cache.views(_scratch_bytes("regions", _cache.capacity(plan)), plan)
        regions = {key: value for key, value in regions.items() if key[0] not in ("act_h_c", "preact")}
    else:
        regions = _cache.views(cache_bytes, plan)
    _kernel(plan, regions, team).forward()


def _inputs(plan):
    """(field, view) of every descriptor the forward reads."""
    views = [("input_descriptor.data_desc", plan.x), ("input_descriptor.hidden_desc", plan.h0),
             ("input_descriptor.cell_state_desc", plan.c0)]
    for name, gate in zip(GATES, plan.gates):
        views += [(f"{name}.iw_desc", w) for w in gate.W]
        views += [(f"{name}.hw_desc", gate.U), (f"{name}.cw_desc", gate.C), (f"{name}.b_desc", gate.b)]
    return [(name, view) for name, view in views if view is not None]


def direct_apply_lstm_batch_training_caching(layer_params, filter_params=None, training_cache=None):
    """Forward pass of a (stacked, optionally bidirectional) LSTM (SPEC §4).

    Reads ``layer_params``'s input descriptors and weights and writes its output
    descriptors (those that are not ``None``). With ``training_cache`` (a writable buffer of
    at least :func:`compute_lstm_training_cache_capacity` bytes), stores what the backward
    pass needs at the offsets of :func:`training_cache_layout`.
    """
    plan = make_plan(layer_params)
    threads, explicit = _threads(filter_params)
    cache_bytes = None if training_cache is None else _cache.check_buffer(training_cache, plan)
    writes = [(name, view) for name, view in (
        ("output_descriptor.data_desc", plan.y), ("output_descriptor.hidden_desc", plan.h_n),
        ("output_descriptor.cell_state_desc", plan.c_n)) if view is not None]
    if cache_bytes is not None:
        writes.append(("training_cache", cache_bytes))
        # the kernels write the cache while they read the inputs: they must not overlap
        for name, view in _inputs(plan):
            if overlap(view, cache_bytes):
                raise BNNSError(f"training_cache: shares memory with {name}, which the forward reads")
    check_disjoint(writes)
    team = _team(plan, threads)
    with _blas_threads(team, explicit):
        _run_forward(plan, cache_bytes, team)
    if cache_bytes is not None:
        _cache.write_header(cache_bytes, plan)


# ---------------------------------------------------------------------------- backward
_SCALARS = ("input_size", "hidden_size", "batch_size", "num_layers", "seq_len")


def _delta_plan(delta, plan):
    """The views of the gradient descriptors, checked against the forward's plan."""
    if delta is None or not hasattr(delta, "input_descriptor"):
        raise BNNSError("layer_delta_params: expected LayerParametersLSTM")
    resolved = dict(zip(_SCALARS, (plan.I, plan.H, plan.B, plan.L, plan.T)))
    for name in _SCALARS:
        value = getattr(delta, name)
        if value not in (0, resolved[name]):
            raise BNNSError(f"layer_delta_params.{name}: {value!r} but the forward's {name} is {resolved[name]}")
    flags = delta.lstm_flags
    if not isinstance(flags, (int, np.integer)) or bool(flags & LayerFlags.BIDIRECTIONAL) != (plan.D == 2):
        raise BNNSError("layer_delta_params.lstm_flags: BIDIRECTIONAL differs from the forward's")
    T, B, I, D, H, L, dtype = plan.T, plan.B, plan.I, plan.D, plan.H, plan.L, plan.data_type
    for name in ("input_descriptor", "output_descriptor"):
        if getattr(delta, name) is None:
            raise BNNSError(f"layer_delta_params.{name}: expected an LSTMDataDescriptor, got None")
    inp, out = delta.input_descriptor, delta.output_descriptor
    prefix = "layer_delta_params."
    views = {
        "dy": sequence_view(out.data_desc, T, B, D * H, prefix + "output_descriptor.data_desc", dtype),
        "dh_n": tensor_view(out.hidden_desc, (L, D, B, H), prefix + "output_descriptor.hidden_desc", dtype),
        "dc_n": tensor_view(out.cell_state_desc, (L, D, B, H), prefix + "output_descriptor.cell_state_desc", dtype),
    }
    # (field, descriptor, view, what it receives): ("dx",), ("dW", gate, layer), ("dU", gate), ...
    writes = [
        (prefix + "input_descriptor.data_desc", inp.data_desc, ("dx",),
         sequence_view(inp.data_desc, T, B, I, prefix + "input_descriptor.data_desc", dtype, writable=True)),
        (prefix + "input_descriptor.hidden_desc", inp.hidden_desc, ("dh0",),
         tensor_view(inp.hidden_desc, (L, D, B, H), prefix + "input_descriptor.hidden_desc", dtype, True)),
        (prefix + "input_descriptor.cell_state_desc", inp.cell_state_desc, ("dc0",),
         tensor_view(inp.cell_state_desc, (L, D, B, H), prefix + "input_descriptor.cell_state_desc", dtype, True)),
    ]
    for k, name in enumerate(GATES):
        gate = getattr(delta, name)
        if gate is None:
            raise BNNSError(f"{prefix}{name}: expected an LSTMGateDescriptor, got None")
        views_k = gate_views(gate, prefix + name, I, H, L, D, dtype, delta=True)
        forward = plan.gates[k]
        if views_k.C is not None and views_k.peephole != forward.peephole:
            raise BNNSError(f"{prefix}{name}.cw_desc: the forward's gate has "
                            f"{['no', 'a diagonal', 'a full'][forward.peephole]} peephole")
        if views_k.b is not None and forward.b is None:
            raise BNNSError(f"{prefix}{name}.b_desc: the forward's gate has no bias")
        iw = list(gate.iw_desc) + [None, None]
        for l, view in enumerate(views_k.W):
            index = 0 if l == 0 or iw[1] is None else 1
            writes.append((f"{prefix}{name}.iw_desc[{index}]", iw[index], ("dW", k, l), view))
        writes += [
            (f"{prefix}{name}.hw_desc", gate.hw_desc, ("dU", k), views_k.U),
            (f"{prefix}{name}.cw_desc", gate.cw_desc, ("dC", k), views_k.C),
            (f"{prefix}{name}.b_desc", gate.b_desc, ("db", k), views_k.b),
        ]
    writes = [item for item in writes if item[3] is not None]
    for name, desc, _, _ in writes:
        if desc.flags not in (NDArrayFlags.BACKPROP_SET, NDArrayFlags.BACKPROP_ACCUMULATE):
            raise BNNSError(f"{name}.flags: expected BACKPROP_SET or BACKPROP_ACCUMULATE, got {desc.flags!r}")
    check_disjoint([(name, view) for name, _, _, view in writes])
    return views, writes


def direct_apply_lstm_batch_backward(layer_params, layer_delta_params, filter_params=None, training_cache=None):
    """Backward pass (SPEC §6): every gradient, from the training cache or by recomputing.

    ``layer_params`` is what the forward received. ``layer_delta_params`` gives dL/dy,
    dL/dh_T, dL/dc_T in its output descriptors (``None`` = zeros) and receives dL/dx,
    dL/dh0, dL/dc0 in its input descriptors and the weight gradients in its gate
    descriptors, each honouring its own ``flags`` (set or accumulate).
    """
    plan = make_plan(layer_params, need_outputs=False)
    views, writes = _delta_plan(layer_delta_params, plan)
    threads, explicit = _threads(filter_params)
    if training_cache is None:
        cache_bytes = None
    else:
        cache_bytes = _cache.check_buffer(training_cache, plan)
        _cache.check_header(cache_bytes, plan)
        for name, _, _, view in writes:
            if overlap(view, cache_bytes):
                raise BNNSError(f"{name}: shares memory with training_cache")
    team = _team(plan, threads)
    with _blas_threads(team, explicit):
        if cache_bytes is None:  # recompute the forward into scratch; layer_params untouched
            cache_bytes = _scratch_bytes("training_cache", _cache.capacity(plan))
            forward = _kernel(plan, _cache.views(cache_bytes, plan), team)
            forward.forward()
        kernel = _kernel(plan, _cache.views(cache_bytes, plan), team, backward=True)
        kernel.gradients(plan, views, writes)
        kernel.backward()
