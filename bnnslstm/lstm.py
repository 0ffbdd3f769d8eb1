"""The BNNS-style functions: validate, plan, run the kernels.

Every call first resolves and checks all of its parameters (:mod:`._plan`); only then do
the Cython kernels run, without the GIL, reading the caller's descriptors in place and
writing results straight into them. A call that raises has written nothing.
"""

import os
import threading
import warnings
import weakref

import numpy as np

from . import _cache, _plan, planner
from ._checks import integer, is_integer
from ._kernels._lstm import team_available  # the same in every kernel build
from ._plan import make_plan
from .descriptors import NDArrayDescriptor
from .enums import DataType
from .errors import BNNSError, IdentityActivationsWarning
from .parameters import GATE_FIELDS, FilterParameters

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


def _plan_of(layer_params, need_outputs=True, backward=False, delta=None):
    """The checked plan of a call (``backward``: with ``delta``'s gradients); BNNSError naming
    the field at fault otherwise."""
    try:
        plan = make_plan(layer_params, need_outputs=need_outputs)
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


# ---------------------------------------------------------------------------- threads
_CORES = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
          else (os.cpu_count() or 1))
_TEAM_MAX = min(team_available(), 256)
# a step whose recurrent product has fewer multiply-adds than this runs on one thread: the
# barriers of a team would cost more than the other cores give
_TEAM_MIN_WORK = 1 << 17


def _threads(filter_params):
    """The most threads a call may use: ``n_threads``, where ``0`` (or no filter
    parameters) means every core this process may use."""
    if filter_params is None:
        return _CORES
    if not isinstance(filter_params, FilterParameters):
        raise BNNSError("filter_params: expected FilterParameters or None, "
                        f"got {type(filter_params).__name__}")
    n = integer(filter_params.n_threads, "filter_params.n_threads")
    return _CORES if n == 0 else n


def _team(plan, threads):
    """The kernels' team: the threads asked for, as many as a step's work can use."""
    work = plan.D * 4 * plan.H * plan.H * plan.B
    return max(1, min(threads, _TEAM_MAX, work // _TEAM_MIN_WORK))


def _kernels_blas(libraries):
    """The BLAS libraries among ``libraries`` (threadpoolctl controllers) that the kernels
    call: scipy's own when scipy ships one (its wheels bundle an OpenBLAS next to the
    package; numpy's copy is not called by the kernels, and limiting it too doubled the
    cost of a small call's limit), otherwise every one of them (a scipy built on a system
    BLAS shares it)."""
    import scipy

    root = os.path.dirname(os.path.realpath(scipy.__file__))
    # scipy/.dylibs (macOS), scipy.libs (Linux, Windows)
    places = (root + os.sep, root + ".libs" + os.sep)
    own = [lib for lib in libraries if os.path.realpath(lib.filepath or "").startswith(places)]
    return own or list(libraries)


def _thread_count_functions(lib):
    """(get, set, addresses) of a threadpoolctl controller's thread count, callable from
    any thread; ``addresses`` the two functions' C addresses when they are OpenBLAS's own
    (else None).

    threadpoolctl (3.6 and later) lets only the first thread that limits a process-wide
    OpenBLAS pool change it and silently ignores every other thread, which left calls from
    any thread but the main one on multi-threaded BLAS (their rounding then depended on the
    thread that called, and a team's threads each ran BLAS threads on top). _SerialBlas
    coordinates its own users, so it calls the setting function directly: OpenBLAS's own
    functions when threadpoolctl resolves them (a plain ctypes call: a small call's limit
    costs 1-2 us instead of 3-4), else the controller's unrestricted setter."""
    get, set_ = lib.get_num_threads, getattr(lib, "_real_set_num_threads", lib.set_num_threads)
    symbol = getattr(lib, "_get_symbol", None)
    if (lib.internal_api == "openblas" and getattr(lib, "threading_layer", None) != "openmp"
            and symbol is not None):
        raw_get, raw_set = symbol("openblas_get_num_threads"), symbol("openblas_set_num_threads")
        if raw_get is not None and raw_set is not None:
            import ctypes

            addresses = tuple(ctypes.cast(f, ctypes.c_void_p).value for f in (raw_get, raw_set))
            return raw_get, raw_set, addresses
    return get, set_, None


class _SerialBlas:
    """Keeps BLAS single-threaded while a call runs: each thread of the call's team calls
    BLAS on its own slice, and BLAS threads on top would compete for the same cores.

    The limit applies only inside the ``with`` and is reference-counted, so concurrent
    calls restore the caller's setting once, when the last of them ends.

    The limit is set from whichever thread makes the call (see _thread_count_functions).
    When every library's functions are OpenBLAS's own, the counting and the calls are in C
    (_plan's serial_blas, _serial.pxi): a small call then pays nanoseconds for its limit."""

    def __init__(self):
        self._lock = threading.Lock()
        self._users = 0
        self._saved = []
        self._libraries = None
        self.in_c = False   # the limit is _plan.serial_blas's (known once _blas() has run)

    def _blas(self):
        if self._libraries is None:
            from threadpoolctl import ThreadpoolController

            libraries = _kernels_blas(
                ThreadpoolController().select(user_api="blas").lib_controllers)
            functions = [_thread_count_functions(lib) for lib in libraries]
            if functions and all(addresses for _, _, addresses in functions):
                _plan.serial_blas_functions([addresses for _, _, addresses in functions])
                self.in_c = True
            self._libraries = [(get, set_) for get, set_, _ in functions]
        return self._libraries

    def __enter__(self):
        if self._libraries is None:
            self._blas()
        if self.in_c:
            _plan.serial_blas(True)
            return
        with self._lock:
            if self._users == 0:
                self._saved = [(set_threads, get_threads())
                               for get_threads, set_threads in self._blas()]
                for set_threads, n in self._saved:
                    if n != 1:
                        set_threads(1)
            self._users += 1

    def __exit__(self, *exc):
        if self.in_c:
            _plan.serial_blas(False)
            return
        with self._lock:
            self._users -= 1
            if self._users == 0:
                for set_threads, n in self._saved:
                    if n != 1:
                        set_threads(n)
                self._saved = []

    def _before_fork(self):
        self._lock.acquire()  # no fork halfway through setting the limit or restoring it
        _plan.serial_blas_fork(0)

    def _after_fork_in_parent(self):
        _plan.serial_blas_fork(1)
        self._lock.release()

    def _after_fork_in_child(self):
        """The child has only the forking thread: calls the parent's other threads were
        making do not exist here, so their limit is lifted and the count starts at 0."""
        _plan.serial_blas_fork(2)
        self._lock = threading.Lock()
        users, saved = self._users, self._saved
        self._users, self._saved = 0, []
        if users:
            for set_threads, n in saved:
                if n != 1:
                    set_threads(n)


# BLAS runs single-threaded inside every call, whatever its team: inside a team each thread
# calls BLAS on its own slice, and a call too small for a team that left BLAS's threads as
# they are would round differently depending on whether another call had BLAS limited at
# that moment (results must depend on the call alone)
_serial_blas = _SerialBlas()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_serial_blas._before_fork,
                        after_in_parent=_serial_blas._after_fork_in_parent,
                        after_in_child=_serial_blas._after_fork_in_child)


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


def _bind(plan, cache, team, backward=False, keep_everything=True):
    """Point the plan's kernel call at the cache's regions and at this thread's scratch."""
    scratch = _scratch_bytes("work", plan.scratch_bytes(team, backward))
    plan.bind(cache, scratch, team, backward, keep_everything)


def run_kept(plan, team, cache=None, backward=False):
    """Run a plan kept from an earlier call (an everyday layer's, bnnslstm/_calls.py) whose
    sequences and states were just moved onto this call's arrays: into ``cache`` (a uint8
    view of a training cache the caller owns; None: scratch holds what the steps read back),
    on this thread's scratch, BLAS single-threaded, with the planner's arrangement."""
    if cache is None:
        _bind(plan, _scratch_bytes("regions", plan.capacity), team, keep_everything=False)
    else:
        _bind(plan, cache, team, backward)
    with _serial_blas:
        planner.run(plan, team, backward)


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
        process may use).
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
    plan = _plan_of(layer_params)
    threads = _threads(filter_params)
    capacity = plan.capacity
    cache = None if training_cache is None else _cache.check_buffer(training_cache, plan, capacity)
    plan.check_forward_writes(cache)
    team = _team(plan, threads)
    if cache is None:  # scratch stands in for what the steps read back; the rest is not kept
        _bind(plan, _scratch_bytes("regions", capacity), team, keep_everything=False)
    else:
        _bind(plan, cache, team)
    with _serial_blas:
        planner.run(plan, team)
    if cache is not None:
        _cache.write_header(cache, plan)


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
        written or that was written for other parameters (the message says which
        differ). Nothing is written then.

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
    plan = _plan_of(layer_params, need_outputs=False, backward=True, delta=layer_delta_params)
    threads = _threads(filter_params)
    capacity = plan.capacity
    if training_cache is None:
        cache = None
    else:
        cache = _cache.check_buffer(training_cache, plan, capacity)
        _cache.check_header(cache, plan)
        plan.check_cache_against_writes(cache)
    team = _team(plan, threads)
    with _serial_blas:
        if cache is None:  # recompute the forward into scratch; layer_params untouched
            cache = _scratch_bytes("training_cache", capacity)
            _bind(plan, cache, team)
            planner.run(plan, team)
        _bind(plan, cache, team, backward=True)
        planner.run(plan, team, backward=True)
