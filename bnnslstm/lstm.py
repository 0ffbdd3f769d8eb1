"""The BNNS-style functions: plan, check, choose, run, record.

Every call first resolves and checks all of its parameters (:mod:`._plan`; a call made
again with the same parameters reuses the last call's plan and its checks) and what it
writes; only then does the planner choose the arrangement of BLAS calls and do the Cython
kernels run, without the GIL, reading the caller's descriptors in place and writing
results straight into them; last the cache's header is written. A call that raises has
written nothing.
"""

import warnings
import weakref

import numpy as np

from . import _cache, planner
from ._checks import is_integer
from ._memory import options
from ._plan import make_plan, same_signature, signature
from ._threads import serial_blas, team_of
from .descriptors import NDArrayDescriptor
from .enums import DataType
from .errors import BNNSError, IdentityActivationsWarning
from .parameters import GATE_FIELDS

__all__ = [
    "compute_lstm_training_cache_capacity",
    "training_cache_layout",
    "direct_apply_lstm_batch_training_caching",
    "direct_apply_lstm_batch_backward",
]


def _type_name(data_type):
    try:
        return DataType(data_type).name
    except ValueError:
        return str(data_type)


def _explain(layer_params):
    """For a call the plan refused, a more helpful message where there is one (else None):
    for torch-style lengths given as ``sequence_descriptor``, and for an input whose type
    differs from the weights' (the plan takes the call's type from ``x`` and blames the first
    weight). Only refused calls come here: a call that passes pays nothing for it."""
    sizes = getattr(layer_params, "sequence_descriptor", None)
    if sizes is not None and not isinstance(sizes, NDArrayDescriptor):
        values = np.asarray(sizes)
        T, B = getattr(layer_params, "seq_len", None), getattr(layer_params, "batch_size", None)
        if (values.ndim == 1 and values.dtype.kind in "iu" and is_integer(T)
                and is_integer(B) and values.size and values.size != T
                and values.size == B and values.max() <= T and values.min() >= 1
                and np.all(np.diff(values) <= 0)):
            steps = [int(np.sum(values > t)) for t in range(T)]
            return (f"sequence_descriptor: expected {T} batch sizes (seq_len), got "
                    f"{values.size} values {values.tolist()}: these look like per-sample "
                    f"lengths, but BNNS wants per-step counts (how many samples are still "
                    f"running at each step): for these lengths that is {steps}")
    x_desc = getattr(getattr(layer_params, "input_descriptor", None), "data_desc", None)
    x_type = getattr(x_desc, "data_type", None)
    weight_types = {}
    for field in GATE_FIELDS:
        gate = getattr(layer_params, field, None)
        hw = getattr(gate, "hw_desc", None)
        if isinstance(hw, NDArrayDescriptor):
            weight_types.setdefault(hw.data_type, f"{field}.hw_desc")
    if (isinstance(x_desc, NDArrayDescriptor) and x_type in (DataType.FLOAT32, DataType.FLOAT64)
            and len(weight_types) == 1 and x_type not in weight_types):
        (weight_type, field), = weight_types.items()
        return (f"input_descriptor.data_desc.data_type: {_type_name(x_type)} but the "
                f"weights ({field} and the other gates) are {_type_name(weight_type)}; "
                f"every descriptor of a call has one type")
    return None


def _plan_of(layer_params, need_outputs=True, backward=False, delta=None, copies=None):
    """The checked plan of a call (``backward``: with ``delta``'s gradients; ``copies``:
    how it copies what BLAS cannot address, the workspace's); BNNSError naming the field
    at fault otherwise."""
    try:
        plan = make_plan(layer_params, need_outputs=need_outputs, copies=copies)
        if backward:
            plan.delta(delta)
    except BNNSError:
        better = _explain(layer_params)
        if better is None:
            raise
        raise BNNSError(better) from None  # the plan's own message would mislead
    if not plan.default_activations and not any(fn for fn, _, _ in plan.activations):
        _warn_all_identity(layer_params)
    return plan


#: parameters objects whose all-IDENTITY activations were warned about, or chosen on purpose
#: (an everyday layer built with them adds its calls' parameters here)
identity_chosen = weakref.WeakSet()


def _warn_all_identity(layer_params):
    """IdentityActivationsWarning, once per parameters object (see its docstring)."""
    try:
        if layer_params in identity_chosen:
            return
        identity_chosen.add(layer_params)
    except TypeError:  # an object without weak references: warned every call
        pass
    warnings.warn(
        "every gate's activation and hidden_activation are IDENTITY (Activation(), BNNS's zero "
        "value) and lstm_flags lacks LayerFlags.DEFAULT_ACTIVATIONS: this computes a linear "
        "recurrence, not an LSTM. Set lstm_flags |= LayerFlags.DEFAULT_ACTIVATIONS for the "
        "sigmoid/tanh defaults, or give each gate its activation",
        IdentityActivationsWarning, stacklevel=4)


def compute_lstm_training_cache_capacity(layer_params):
    """Minimum size in bytes of the training cache for these parameters.

    Parameters
    ----------
    layer_params : LayerParametersLSTM
        The parameters the forward will get (only the output descriptors may be absent).

    Returns
    -------
    int
        Bytes: the header and every region of :func:`training_cache_layout`.

    Raises
    ------
    BNNSError
        When the parameters are not valid for a forward call (the message names the field).

    Examples
    --------
    A one-layer LSTM over 2 steps of a batch of 1 (``params`` serves the examples of the
    other three functions too):

    >>> import numpy as np
    >>> import bnnslstm as bl
    >>> T, B, I, H = 2, 1, 3, 4
    >>> rng = np.random.default_rng(0)
    >>> w = lambda *shape: bl.NDArrayDescriptor.from_array(
    ...     rng.uniform(-0.5, 0.5, shape).astype(np.float32))
    >>> x, y = rng.standard_normal((T, B, I)).astype(np.float32), np.zeros((T, B, H), np.float32)
    >>> params = bl.LayerParametersLSTM(
    ...     input_size=I, hidden_size=H, batch_size=B, num_layers=1, seq_len=T,
    ...     lstm_flags=bl.LayerFlags.DEFAULT_ACTIVATIONS,
    ...     input_descriptor=bl.LSTMDataDescriptor(
    ...         bl.NDArrayDescriptor.from_array(x, bl.DataLayout.SNE)),
    ...     output_descriptor=bl.LSTMDataDescriptor(
    ...         bl.NDArrayDescriptor.from_array(y, bl.DataLayout.SNE)))
    >>> for gate in ("input_gate", "forget_gate", "candidate_gate", "output_gate"):
    ...     setattr(params, gate, bl.LSTMGateDescriptor(iw_desc=(w(1, H, I), None),
    ...                                                 hw_desc=w(1, 1, H, H)))
    >>> bl.compute_lstm_training_cache_capacity(params)
    352
    """
    return _plan_of(layer_params, need_outputs=False).capacity


def training_cache_layout(layer_params):
    """The regions of the training cache, in buffer order.

    Parameters
    ----------
    layer_params : LayerParametersLSTM
        As for :func:`compute_lstm_training_cache_capacity`.

    Returns
    -------
    list of Region
        Each with ``name``, ``layer``, byte ``offset`` (a multiple of 64), logical C-order
        ``shape``, ``data_type`` and ``nbytes``; the training cache page says what each
        region holds.

    Raises
    ------
    BNNSError
        As :func:`compute_lstm_training_cache_capacity`.

    Examples
    --------
    With ``params`` of :func:`compute_lstm_training_cache_capacity`'s example:

    >>> [(r.name, r.offset, r.shape)  # doctest: +NORMALIZE_WHITESPACE
    ...  for r in bl.training_cache_layout(params)]
    [('gates', 64, (2, 1, 1, 16)), ('cells', 192, (2, 1, 1, 4)),
     ('act_h_c', 256, (2, 1, 1, 4)), ('output', 320, (2, 1, 4))]
    """
    return _cache.regions(_plan_of(layer_params, need_outputs=False))


# ---------------------------------------------------------------------------- reuse
# a parameters object (the backward: its delta parameters) -> (signature, plan, cache key)
# of its last call, taken by the next call while it runs: a call made again with the same
# parameters, nothing in them changed since (same objects, same values, the descriptors'
# resolutions still cached), reuses the plan and its checks
_reused = weakref.WeakKeyDictionary()


def _reusable_plan(key, parameters):
    """The plan the last call of ``key`` made, if ``parameters`` (a tuple of the parameter
    objects) are as they were then: (plan, signature, cache key) or (None, None, None)."""
    try:
        entry = _reused.pop(key, None)
    except TypeError:  # not weakly referable: never reused
        return None, None, None
    if entry is None:
        return None, None, None
    old, plan, cache_key = entry
    now = tuple(signature(p) for p in parameters)
    if not all(same_signature(a, b) for a, b in zip(old, now)):
        return None, None, None
    plan.check_still_writable()
    return plan, now, cache_key


def _keep_plan(key, parameters, plan, cache_key, signatures=None):
    """Keep ``plan`` for the next call of ``key`` with the ``signatures`` it was checked
    with (None: a new plan's, made now that its resolutions are cached); not one that
    reads a matrix through a copy: the copy holds the values of its own call (and, made in
    the caller's memory, goes back to free_memory with it)."""
    if plan.has_copies:
        return
    if signatures is None:
        signatures = tuple(signature(p) for p in parameters)
    plan.unbind()
    try:
        _reused[key] = (signatures, plan, cache_key)
    except TypeError:
        pass


# ---------------------------------------------------------------------------- running
def _run(plan, team, workspace, cache=None, backward=False):
    """Run the plan's pass: bind it (``cache``: a uint8 view of the training cache; None:
    scratch holds what the steps read back, the rest is not kept), then, BLAS
    single-threaded, choose its arrangement (the planner's; a trial on a problem's first
    call) and run the kernels."""
    if cache is None:
        regions, keep_everything = workspace.take("regions", plan.capacity), False
    else:
        regions, keep_everything = cache, True
    plan.bind(regions, workspace.take("work", plan.scratch_bytes(team, backward)), team,
              backward, keep_everything)
    with serial_blas:
        planner.arrange(plan, team, backward, workspace)   # choose
        plan.run(backward)                                  # run


def run_kept(plan, threads, workspace, cache=None, backward=False):
    """Run a plan kept from an earlier call (an everyday layer's, bnnslstm/_calls.py) whose
    sequences and states were just moved onto this call's arrays."""
    with workspace:
        _run(plan, team_of(plan, threads), workspace, cache, backward)


def direct_apply_lstm_batch_training_caching(layer_params, filter_params=None, training_cache=None):
    """Forward pass of a (stacked, optionally bidirectional) LSTM.

    Reads ``layer_params``'s input descriptors and weights and writes its output
    descriptors (those that are not ``None``). With ``training_cache``, stores what the
    backward pass needs at the offsets of :func:`training_cache_layout`.

    Parameters
    ----------
    layer_params : LayerParametersLSTM
        Sizes, flags, dropout, per-step batch sizes, the input ``x`` (and optional initial
        states) in ``input_descriptor``, the outputs in ``output_descriptor`` and every
        gate's weights.
    filter_params : FilterParameters, optional
        ``n_threads``: the most threads the call may use (0 or None: every core this
        process may use); ``alloc_memory`` / ``free_memory``: where the call's scratch
        comes from (see :class:`~bnnslstm.FilterParameters`); ``flags``: 0 or
        ``FilterFlags.USE_CLIENT_PTR``.
    training_cache : writable buffer, optional
        At least :func:`compute_lstm_training_cache_capacity` bytes (a ``bytearray``,
        say), owned by the caller; pass the same buffer to the backward.

    Raises
    ------
    BNNSError
        Naming the field at fault: a descriptor that does not fit its buffer or the logical
        shape, another element type, a written descriptor that overlaps another or the
        cache, a cache that is too small or read-only. Nothing is written then.

    Examples
    --------
    With ``params`` of :func:`compute_lstm_training_cache_capacity`'s example:

    >>> cache = bytearray(bl.compute_lstm_training_cache_capacity(params))
    >>> bl.direct_apply_lstm_batch_training_caching(params, training_cache=cache)
    >>> y.shape, bool(np.abs(y).max() > 0)
    ((2, 1, 4), True)
    """
    threads, workspace = options(filter_params)
    with workspace:
        # the plan: the last call's when nothing it was made from has changed, else made
        plan, signatures, checked = _reusable_plan(layer_params, (layer_params,))
        if plan is None:
            plan = _plan_of(layer_params, copies=workspace.copy)
        # the checks before anything is written: the cache, what it and the outputs overlap
        cache = (None if training_cache is None
                 else _cache.check_buffer(training_cache, plan, plan.capacity))
        cache_key = None if cache is None else (cache.ctypes.data, cache.nbytes)
        if checked is None or cache_key != checked:
            plan.check_forward_writes(cache)
        # choose the arrangement and run the kernels
        _run(plan, team_of(plan, threads), workspace, cache)
        # record: the cache's header, and the plan for the next call
        if cache is not None:
            _cache.write_header(cache, plan)
        _keep_plan(layer_params, (layer_params,), plan, cache_key, signatures)


# ---------------------------------------------------------------------------- backward
def direct_apply_lstm_batch_backward(layer_params, layer_delta_params, filter_params=None,
                                     training_cache=None):
    """Backward pass: every gradient, from the training cache or by recomputing.

    Parameters
    ----------
    layer_params : LayerParametersLSTM
        What the forward received (its output descriptors are not read).
    layer_delta_params : LayerParametersLSTM
        Gives dL/dy, dL/dh_T, dL/dc_T in its output descriptors (``None``: zeros) and
        receives dL/dx, dL/dh0, dL/dc0 in its input descriptors and the weight gradients
        in its gate descriptors (``None``: not computed), each honouring its own ``flags``
        (``BACKPROP_SET`` overwrites, ``BACKPROP_ACCUMULATE`` adds). Sizes may be 0 (the
        forward's).
    filter_params : FilterParameters, optional
        As for the forward.
    training_cache : buffer, optional
        The buffer the forward filled with these ``layer_params``; without it the
        forward is recomputed into scratch (``layer_params``'s outputs are not written).

    Raises
    ------
    BNNSError
        Naming the field at fault, as the forward; also for a cache that no forward has
        written or whose header does not match this configuration (the message names the
        group that differs: sizes, activations, dropout, peepholes, biases, batch sizes).
        Only the configuration is fingerprinted, not the weights or the inputs: a cache
        from a forward with other weights passes the check. Nothing is written then.

    Examples
    --------
    The gradients of ``sum(y)`` with respect to ``x`` and the input gate's weights, with
    ``params`` and ``cache`` of the forward's example:

    >>> dy, dx = np.ones((T, B, H), np.float32), np.zeros((T, B, I), np.float32)
    >>> dW = np.zeros((1, H, I), np.float32)
    >>> delta = bl.LayerParametersLSTM(
    ...     input_descriptor=bl.LSTMDataDescriptor(
    ...         bl.NDArrayDescriptor.from_array(dx, bl.DataLayout.SNE)),
    ...     output_descriptor=bl.LSTMDataDescriptor(
    ...         bl.NDArrayDescriptor.from_array(dy, bl.DataLayout.SNE)),
    ...     input_gate=bl.LSTMGateDescriptor(iw_desc=(bl.NDArrayDescriptor.from_array(dW), None)))
    >>> bl.direct_apply_lstm_batch_backward(params, delta, training_cache=cache)
    >>> bool(np.abs(dx).max() > 0), bool(np.abs(dW).max() > 0)
    (True, True)
    """
    threads, workspace = options(filter_params)
    with workspace:
        # the plan: the last call's when nothing it was made from has changed, else made
        both = (layer_params, layer_delta_params)
        plan, signatures, checked = _reusable_plan(layer_delta_params, both)
        if plan is None:
            plan = _plan_of(layer_params, need_outputs=False, backward=True,
                            delta=layer_delta_params, copies=workspace.copy)
        # the checks before anything is written: the cache, its header, what the
        # gradients overlap
        cache_key = None
        if training_cache is None:
            cache = None
        else:
            cache = _cache.check_buffer(training_cache, plan, plan.capacity)
            _cache.check_header(cache, plan)
            cache_key = (cache.ctypes.data, cache.nbytes)
            if checked is None or cache_key != checked:
                plan.check_cache_against_writes(cache)
        # choose the arrangement and run the kernels (without a cache, the forward first,
        # into scratch; layer_params untouched)
        team = team_of(plan, threads)
        if cache is None:
            cache = workspace.take("training_cache", plan.capacity)
            _run(plan, team, workspace, cache)
        _run(plan, team, workspace, cache, backward=True)
        # record: the plan for the next call
        _keep_plan(layer_delta_params, both, plan, cache_key, signatures)
