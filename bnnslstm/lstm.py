"""The BNNS-style functions: validate, plan, run the kernels (SPEC §4-§6).

Every call first resolves and checks all of its parameters (:mod:`._plan`); only then are
inputs gathered into contiguous working arrays, the Cython kernels run without the GIL, and
the results are stored into the caller's descriptors. A call that raises has written
nothing.
"""

import os
import threading
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from . import _cache
from ._kernels._backward import backward_layer, weight_gradients
from ._kernels._dropout import dropout_mask
from ._kernels._forward import forward_layer
from ._plan import DIAGONAL, FULL, GATES, check_disjoint, gate_views, make_plan, overlap, sequence_view, tensor_view
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
_controller_lock = threading.Lock()
_controller = None


def _thread_limit(filter_params):
    """(a function giving a context that limits BLAS to ``filter_params.n_threads``, the
    kernels' thread count). The limit applies only inside the ``with`` (threadpoolctl sets
    it as soon as it is asked for, so asking happens there, after validation).

    ``n_threads = 0`` (or no filter parameters) means every core this process may use.
    """
    if filter_params is None:
        return nullcontext, _CORES
    if not isinstance(filter_params, FilterParameters):
        raise BNNSError(f"filter_params: expected FilterParameters or None, got {type(filter_params).__name__}")
    n = filter_params.n_threads
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise BNNSError(f"filter_params.n_threads: expected an integer >= 0, got {n!r}")
    if n == 0:
        return nullcontext, _CORES
    return lambda: _blas_controller().limit(limits=int(n), user_api="blas"), int(min(n, 256))


def _blas_controller():
    global _controller
    with _controller_lock:
        if _controller is None:
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()
    return _controller


# ---------------------------------------------------------------------------- packing
@dataclass
class _Packed:
    """One layer's weights in the kernels' layout (see ``_kernels/_forward.pyx``)."""

    W: np.ndarray  # [D*4H][X]
    bias: np.ndarray  # [D*4H]
    U: np.ndarray  # [D][4H][H]
    Cdiag: np.ndarray  # [D][4][H] or empty
    Cifg: np.ndarray  # [D][3H][H] or empty
    Co: np.ndarray  # [D][H][H] or empty


def _empty3(dtype):
    return np.empty((0, 0, 0), dtype=dtype)


def _address(array):
    return array.__array_interface__["data"][0]


def _gate_stack(views):
    """The four gates' ``[D][...]`` views as one ``[D][4][...]`` array, without copying,
    when they already lie in memory that way (as :class:`bnnslstm.LSTM` stores them).
    ``None`` when they do not."""
    first = views[0]
    if any(v is None or v.shape != first.shape or v.dtype != first.dtype for v in views):
        return None
    inner = first.shape[1:]
    itemsize = first.itemsize
    inner_strides = tuple(int(np.prod(inner[i + 1:])) * itemsize for i in range(len(inner)))
    block = int(np.prod(inner)) * itemsize
    if tuple(s for n, s in zip(inner, first.strides[1:]) if n > 1) != tuple(
            s for n, s in zip(inner, inner_strides) if n > 1):
        return None
    if first.shape[0] > 1 and first.strides[0] != 4 * block:
        return None
    if any(_address(v) != _address(first) + k * block or v.strides != first.strides for k, v in enumerate(views)):
        return None
    return np.lib.stride_tricks.as_strided(first, (first.shape[0], 4) + inner, (4 * block, block) + inner_strides,
                                           writeable=False)


def _stack(views, shape, dtype):
    """``[D][k][...]`` from per-gate views (``None`` = a zero block): a view of the caller's
    memory when the four gates already lie that way, else a packed copy."""
    stacked = _gate_stack(views) if len(views) == 4 else None
    if stacked is not None:
        return stacked.reshape(shape)
    present = next(view for view in views if view is not None)
    packed = np.zeros((present.shape[0], len(views)) + present.shape[1:], dtype)
    for k, view in enumerate(views):
        if view is not None:
            packed[:, k] = view
    return packed.reshape(shape)


def _pack(plan, layer):
    """One layer's weights in the kernels' layout; views of the caller's memory when it
    already has that layout, packed copies otherwise (once per call, never per step)."""
    D, H, X, dtype = plan.D, plan.H, plan.layer_width(layer), plan.dtype
    gates = plan.gates

    def per_gate(field, kind=None, count=4):
        views = [getattr(gate, field) for gate in gates[:count]]
        return [None if view is None or (kind is not None and gate.peephole != kind) else view[layer]
                for gate, view in zip(gates, views)]

    W = _stack([gate.W[layer] for gate in gates], (D * 4 * H, X), dtype)
    U = _stack(per_gate("U"), (D, 4 * H, H), dtype)
    biases = per_gate("b")
    bias = _stack(biases, (D * 4 * H,), dtype) if any(b is not None for b in biases) else np.zeros(D * 4 * H, dtype)
    kinds = plan.peepholes
    Cdiag = _stack(per_gate("C", DIAGONAL), (D, 4, H), dtype) if DIAGONAL in kinds else _empty3(dtype)
    Cifg = _stack(per_gate("C", FULL, 3), (D, 3 * H, H), dtype) if FULL in kinds[:3] else _empty3(dtype)
    Co = np.ascontiguousarray(gates[3].C[layer]) if kinds[3] == FULL else _empty3(dtype)
    return _Packed(np.ascontiguousarray(W), np.ascontiguousarray(bias), np.ascontiguousarray(U),
                   np.ascontiguousarray(Cdiag), Cifg, Co)


def _activation_arrays(plan):
    fns = np.array([a[0] for a in plan.activations], dtype=np.int32)
    alphas = np.array([a[1] for a in plan.activations], dtype=np.float64)
    betas = np.array([a[2] for a in plan.activations], dtype=np.float64)
    return fns, alphas, betas


def _state(view, layer, plan):
    """Layer ``layer`` of an optional ``[L][D][B][H]`` state as a fresh contiguous array."""
    if view is None:
        return np.zeros((plan.D, plan.B, plan.H), plan.dtype)
    return np.array(view[layer], dtype=plan.dtype, order="C")


def _dropout_scale(plan, layer, out):
    """Fill ``out`` ([T*B][D*H]) with layer ``layer``'s dropout scale (0 or 1/(1-p))."""
    dropout_mask(plan.dropout_seed, layer, plan.dropout, out.reshape(plan.T, plan.B, -1))
    return out


# ---------------------------------------------------------------------------- scratch
_scratch = threading.local()


def _scratch_array(name, shape, dtype):
    """A per-thread scratch array, reused from call to call while its shape and type fit
    (fresh pages cost page faults on every call; concurrent calls on other threads get
    their own)."""
    arrays = getattr(_scratch, "arrays", None)
    if arrays is None:
        arrays = _scratch.arrays = {}
    array = arrays.get(name)
    if array is None or array.shape != shape or array.dtype != dtype:
        array = arrays[name] = np.empty(shape, dtype)
    return array


# ---------------------------------------------------------------------------- forward
class _Workspace:
    """Where one forward pass puts its per-layer arrays: the cache's regions or scratch."""

    def __init__(self, plan, cache_bytes):
        self.plan = plan
        self.regions = None if cache_bytes is None else _cache.views(cache_bytes, plan)
        TB, D, H, dtype = plan.T * plan.B, plan.D, plan.H, plan.dtype
        if self.regions is None:
            self.gates = _scratch_array("gates", (TB, D * 4 * H), dtype)
            self.pre_activations = _scratch_array(
                "preact", (TB, D * 4 * H) if not plan.default_activations else (0, 0), dtype)
            self.cells = _scratch_array("cells", (TB, D * H), dtype)
            self.act_h_c = _scratch_array("act_h_c", (TB, D * H), dtype)
            self.outputs = [_scratch_array("output0", (TB, D * H), dtype), _scratch_array("output1", (TB, D * H), dtype)]

    def get(self, name, layer):
        if self.regions is not None:
            return self.regions[name, layer]
        if name == "output":
            return self.outputs[layer % 2]
        if name == "mask":
            return _scratch_array("mask", (self.plan.T * self.plan.B, self.plan.D * self.plan.H), self.plan.dtype)
        return getattr(self, name)

    def preact(self, layer):
        if self.plan.default_activations:
            return np.empty((0, 0), self.plan.dtype)
        return self.pre_activations if self.regions is None else self.regions["preact", layer]


def _layer_input(plan, workspace, layer, x):
    """The input of layer ``layer`` as [T*B][X]: x, or the previous output after dropout."""
    if layer == 0:
        return x
    previous = workspace.get("output", layer - 1)
    if plan.dropout == 0:
        return previous
    return previous * _dropout_scale(plan, layer, workspace.get("mask", layer))


def _run_forward(plan, cache_bytes, threads=1):
    """Every layer's kernels; returns the last output [T*B][D*H] and h_T, c_T [L][D][B][H]."""
    TB = plan.T * plan.B
    workspace = _Workspace(plan, cache_bytes)
    fns, alphas, betas = _activation_arrays(plan)
    x = np.ascontiguousarray(plan.x).reshape(TB, plan.I)
    h_n = np.empty((plan.L, plan.D, plan.B, plan.H), plan.dtype)
    c_n = np.empty_like(h_n)
    for layer in range(plan.L):
        packed = _pack(plan, layer)
        h, c = _state(plan.h0, layer, plan), _state(plan.c0, layer, plan)
        forward_layer(
            _layer_input(plan, workspace, layer, x), packed.W, packed.bias, packed.U,
            packed.Cdiag, packed.Cifg, packed.Co,
            workspace.get("gates", layer), workspace.preact(layer), workspace.get("cells", layer),
            workspace.get("act_h_c", layer), workspace.get("output", layer), h, c,
            plan.batch_sizes, fns, alphas, betas, plan.default_activations, threads,
        )
        h_n[layer], c_n[layer] = h, c
    return workspace.get("output", plan.L - 1), h_n, c_n


def _inputs(plan):
    """(field, view) of every descriptor the forward reads."""
    views = [("input_descriptor.data_desc", plan.x), ("input_descriptor.hidden_desc", plan.h0),
             ("input_descriptor.cell_state_desc", plan.c0)]
    for name, gate in zip(GATES, plan.gates):
        views += [(f"{name}.iw_desc", w) for w in gate.W]
        views += [(f"{name}.hw_desc", gate.U), (f"{name}.cw_desc", gate.C), (f"{name}.b_desc", gate.b)]
    return [(name, view) for name, view in views if view is not None]


def _store(view, value, flags=NDArrayFlags.BACKPROP_SET):
    if view is None:
        return
    if flags == NDArrayFlags.BACKPROP_ACCUMULATE:
        view += value
    else:
        view[...] = value


def direct_apply_lstm_batch_training_caching(layer_params, filter_params=None, training_cache=None):
    """Forward pass of a (stacked, optionally bidirectional) LSTM (SPEC §4).

    Reads ``layer_params``'s input descriptors and weights and writes its output
    descriptors (those that are not ``None``). With ``training_cache`` (a writable buffer of
    at least :func:`compute_lstm_training_cache_capacity` bytes), stores what the backward
    pass needs at the offsets of :func:`training_cache_layout`.
    """
    plan = make_plan(layer_params)
    limit, threads = _thread_limit(filter_params)
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
    with limit():
        y, h_n, c_n = _run_forward(plan, cache_bytes, threads)
    if cache_bytes is not None:
        _cache.write_header(cache_bytes, plan)
    if plan.y is not None:
        plan.y[...] = y.reshape(plan.T, plan.B, plan.D, plan.H)
    _store(plan.h_n, h_n)
    _store(plan.c_n, c_n)


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


def _gradient_arrays(plan, layer):
    """Fresh outputs for :func:`weight_gradients`; empty arrays for absent peepholes."""
    D, H, X, dtype = plan.D, plan.H, plan.layer_width(layer), plan.dtype
    kinds = plan.peepholes
    return dict(
        dW=np.empty((D * 4 * H, X), dtype),
        db=np.empty(D * 4 * H, dtype),
        dU=np.empty((D, 4 * H, H), dtype),
        dCdiag=np.empty((D, 4, H), dtype) if DIAGONAL in kinds else _empty3(dtype),
        dCifg=np.empty((D, 3 * H, H), dtype) if FULL in kinds[:3] else _empty3(dtype),
        dCo=np.empty((D, H, H), dtype) if kinds[3] == FULL else _empty3(dtype),
    )


def _gate_gradient(grads, k, kind, D, H):
    """Gate k's gradients of one layer from the packed arrays: dW, dU, dC, db."""
    dC = None
    if kind == DIAGONAL:
        dC = grads["dCdiag"][:, k]
    elif kind == FULL:
        dC = grads["dCo"] if k == 3 else grads["dCifg"].reshape(D, 3, H, H)[:, k]
    return dict(dW=grads["dW"].reshape(D, 4, H, -1)[:, k], dU=grads["dU"].reshape(D, 4, H, H)[:, k],
                dC=dC, db=grads["db"].reshape(D, 4, H)[:, k])


def direct_apply_lstm_batch_backward(layer_params, layer_delta_params, filter_params=None, training_cache=None):
    """Backward pass (SPEC §6): every gradient, from the training cache or by recomputing.

    ``layer_params`` is what the forward received. ``layer_delta_params`` gives dL/dy,
    dL/dh_T, dL/dc_T in its output descriptors (``None`` = zeros) and receives dL/dx,
    dL/dh0, dL/dc0 in its input descriptors and the weight gradients in its gate
    descriptors, each honouring its own ``flags`` (set or accumulate).
    """
    plan = make_plan(layer_params, need_outputs=False)
    views, writes = _delta_plan(layer_delta_params, plan)
    limit, threads = _thread_limit(filter_params)
    if training_cache is None:
        cache_bytes = None
    else:
        cache_bytes = _cache.check_buffer(training_cache, plan)
        _cache.check_header(cache_bytes, plan)
        for name, _, _, view in writes:
            if overlap(view, cache_bytes):
                raise BNNSError(f"{name}: shares memory with training_cache")
    with limit():
        if cache_bytes is None:  # recompute the forward into scratch; layer_params untouched
            cache_bytes = _scratch_array("training_cache", (_cache.capacity(plan),), np.uint8)
            _run_forward(plan, cache_bytes, threads)
        results = _run_backward(plan, views, cache_bytes, threads)
    for _, desc, key, view in writes:
        _store(view, _gradient(plan, results, key), desc.flags)


def _run_backward(plan, views, cache_bytes, threads):
    T, B, D, H, L, dtype = plan.T, plan.B, plan.D, plan.H, plan.L, plan.dtype
    TB = T * B
    regions = _cache.views(cache_bytes, plan)
    fns, alphas, betas = _activation_arrays(plan)
    dY = (np.zeros((TB, D * H), dtype) if views["dy"] is None
          else np.array(views["dy"], dtype=dtype, order="C").reshape(TB, D * H))
    dc_step = np.empty((D, B, H), dtype)
    scratch = _scratch_array("backward_rows", (TB, H), dtype)
    padded = any(int(n) != B for n in plan.batch_sizes)
    dh0 = np.empty((L, D, B, H), dtype)
    dc0 = np.empty_like(dh0)
    layers = [None] * L
    for layer in reversed(range(L)):
        packed = _pack(plan, layer)
        dh = _state(views["dh_n"], layer, plan)
        dc = _state(views["dc_n"], layer, plan)
        h0, c0 = _state(plan.h0, layer, plan), _state(plan.c0, layer, plan)
        dG = _scratch_array("dG", (TB, D * 4 * H), dtype)  # the kernels write every active row
        if padded:
            dG.fill(0)
        preact = regions.get(("preact", layer), np.empty((0, 0), dtype))
        backward_layer(packed.U, packed.Cdiag, packed.Cifg, packed.Co, regions["gates", layer], preact,
                       regions["cells", layer], regions["act_h_c", layer], dY, c0, dh, dc, dG, dc_step,
                       plan.batch_sizes, fns, alphas, betas, plan.default_activations, threads)
        dh0[layer], dc0[layer] = dh, dc
        if layer == 0:
            X = np.ascontiguousarray(plan.x).reshape(TB, plan.I)
        elif plan.dropout > 0:
            mask = regions["mask", layer]
            X = regions["output", layer - 1] * mask
        else:
            X = regions["output", layer - 1]
        grads = _gradient_arrays(plan, layer)
        dX = _scratch_array(f"dX{layer % 2}", (TB, plan.layer_width(layer)), dtype)  # dY of the layer below
        weight_gradients(X, packed.W, regions["output", layer], regions["cells", layer], h0, c0, dG, scratch,
                         dX, grads["dW"], grads["db"], grads["dU"], grads["dCdiag"], grads["dCifg"],
                         grads["dCo"], plan.batch_sizes, threads)
        layers[layer] = grads
        dY = dX * regions["mask", layer] if layer > 0 and plan.dropout > 0 else dX
    return dict(dx=dY.reshape(T, B, plan.I), dh0=dh0, dc0=dc0, layers=layers)


def _gradient(plan, results, key):
    """The computed value a written descriptor receives (see ``_delta_plan``)."""
    if len(key) == 1:
        return results[key[0]]
    kind, k = key[0], key[1]
    per_layer = [_gate_gradient(grads, k, plan.peepholes[k], plan.D, plan.H) for grads in results["layers"]]
    if kind == "dW":
        return per_layer[key[2]]["dW"]
    return np.stack([grads[kind] for grads in per_layer])
