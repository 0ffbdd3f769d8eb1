"""The plan of one call (SPEC §2, §3, §6): every check, in one compiled place, and the
kernels' description of the call (``Call``, _kernels/_lstm.pxd) built from it.

:func:`make_plan` reads a :class:`~bnnslstm.parameters.LayerParametersLSTM`, fills the
scalars (I, H, B, L, T, D) from its fields and descriptors, resolves every descriptor
against the logical shape SPEC §3 gives it (bounds, element type, writability) and records
where the kernels read it: in place wherever BLAS can address it (a leading dimension, a
transpose flag, per-gate pointers), a contiguous copy only where it cannot (no unit stride
in either direction; docs/layouts.rst). :meth:`Plan.delta` does the same for the backward's
gradient descriptors. Nothing is written until every check has passed; then
:meth:`Plan.bind` points the call at its cache regions and scratch, and
:meth:`Plan.forward` / :meth:`Plan.backward` run the kernels without the GIL.
"""

from cpython.buffer cimport Py_buffer
from cpython.mem cimport PyMem_Calloc, PyMem_Free, PyMem_Malloc
from libc.string cimport memset

from ._descriptor cimport NDArrayDescriptor, Strided, layout_rank, logical_shape
from ._kernels._blas cimport Mat, addressable, mat
from ._kernels._call cimport Call, Direction, Gate, Layer, Seq, Vec

cdef extern from "Python.h":
    Py_buffer *PyMemoryView_GET_BUFFER(object view)

import importlib
import importlib.util

import numpy as np

from .activations import check_activation
from .enums import ActivationFunction, DataLayout, DataType, LayerFlags, NDArrayFlags
from .errors import BNNSError
from ._descriptor import type_name

GATES = ("input_gate", "forget_gate", "candidate_gate", "output_gate")  # kernel order i, f, g, o
REGION_NAMES = ("gates", "preact", "cells", "act_h_c", "output", "mask")
HEADER_BYTES = 64   # the training cache: header, then regions at multiples of ALIGNMENT
ALIGNMENT = 64
NO_PEEPHOLE, DIAGONAL, FULL = 0, 1, 2
_DEFAULT_ACTIVATIONS = (
    (int(ActivationFunction.SIGMOID), 0.0, 0.0),
    (int(ActivationFunction.SIGMOID), 0.0, 0.0),
    (int(ActivationFunction.TANH), 0.0, 0.0),
    (int(ActivationFunction.SIGMOID), 0.0, 0.0),
    (int(ActivationFunction.TANH), 0.0, 0.0),
)
cdef int KNOWN_FLAGS = int(LayerFlags.BIDIRECTIONAL | LayerFlags.DEFAULT_ACTIVATIONS)
cdef int SNE = DataLayout.SNE, NSE = DataLayout.NSE
cdef int FLOAT32 = DataType.FLOAT32, FLOAT64 = DataType.FLOAT64
cdef int ACCUMULATE = NDArrayFlags.BACKPROP_ACCUMULATE, SET = NDArrayFlags.BACKPROP_SET
_INTEGER_TYPES = (DataType.INT32, DataType.INT64, DataType.UINT32, DataType.UINT64)
_SCALARS = ("input_size", "hidden_size", "batch_size", "num_layers", "seq_len")
# every gate's field names (for messages), forward and delta, built once
_GATE_FIELDS = {prefix + name: {part: f"{prefix}{name}.{part}" for part in ("iw_desc[0]", "iw_desc[1]", "hw_desc", "cw_desc", "b_desc")}
                for prefix in ("", "layer_delta_params.") for name in GATES}
_STATE_NAMES = ("num_layers", None, "batch_size", "hidden_size")


# ---------------------------------------------------------------------------------- tensors
cdef class Tensor:
    """A resolved descriptor: where it lies, for the overlap checks and the kernels."""

    cdef Strided s
    cdef readonly object desc
    cdef readonly str field
    cdef int itemsize
    cdef object export              # the buffer export s.p points into, held while the plan lives

    cdef Py_ssize_t lo(self):
        return <Py_ssize_t>self.s.p

    cdef Py_ssize_t hi(self):
        return <Py_ssize_t>self.s.p + (self.s.last + 1) * self.itemsize

    def numpy(self):
        """The logical view as a numpy array (for exact overlap checks and copies)."""
        cdef int k
        dtype = np.float32 if self.itemsize == 4 else np.float64
        return np.ndarray(tuple(self.s.n[k] for k in range(self.s.nd)), dtype,
                          self.export.cast("B"), 0,
                          tuple(self.s.s[k] * self.itemsize for k in range(self.s.nd)))

    cdef Mat matrix(self, Py_ssize_t i0, Py_ssize_t i1):
        """The trailing two axes at leading index (i0, i1) (of a rank-4 view; i0 ignored
        for rank 3)."""
        cdef Strided *s = &self.s
        cdef char *p = s.p
        if s.nd == 4:
            p += (i0 * s.s[0] + i1 * s.s[1]) * self.itemsize
        else:
            p += i1 * s.s[0] * self.itemsize
        return mat(p, s.n[s.nd - 2], s.n[s.nd - 1], s.s[s.nd - 2], s.s[s.nd - 1])

    cdef Vec vector(self, Py_ssize_t i0, Py_ssize_t i1):
        """The last axis at leading index (i0, i1) of a rank-3 view."""
        cdef Vec v
        v.p = self.s.p + (i0 * self.s.s[0] + i1 * self.s.s[1]) * self.itemsize
        v.s = self.s.s[2]
        return v


cdef bint overlap(Tensor a, object b, Py_ssize_t lo, Py_ssize_t hi) except -1:
    """Whether a's view shares memory with ``b``, which spans the addresses [lo, hi): a
    Tensor (its view) or a numpy array (the training cache). Exact where numpy can tell
    cheaply, else whether the address ranges meet (erring on the side of refusing)."""
    if a.hi() <= lo or hi <= a.lo():
        return False
    try:
        return np.shares_memory(a.numpy(), (<Tensor>b).numpy() if isinstance(b, Tensor) else b, max_work=10**6)
    except np.exceptions.TooHardError:
        return True


cdef bint reaches_twice(const Strided *v) noexcept:
    """Whether a view may reach one element by two indices: unless, with its axes sorted by
    stride, each stride steps past everything the smaller ones reach. Sufficient, and true
    of every SPEC §2 layout with default or padded strides and of every view numpy's
    slicing makes; an exotic interleaving such as extents (2, 3) at strides (3, 2) is
    refused although its elements are distinct."""
    cdef Py_ssize_t order[8]
    cdef Py_ssize_t reach = 0, key
    cdef int k, j, m = 0
    for k in range(v.nd):
        if v.n[k] > 1:
            j = m
            while j > 0 and v.s[order[j - 1]] > v.s[k]:
                order[j] = order[j - 1]
                j -= 1
            order[j] = k
            m += 1
    for j in range(m):
        key = order[j]
        if v.s[key] <= reach:
            return True
        reach += (v.n[key] - 1) * v.s[key]
    return False


cdef int check_writes(list writes, list reads, object cache, str reader) except -1:
    """Refuse written views that share memory with each other (the order of the writes would
    decide the result), with a view the call reads (the kernels would read what they have
    written), or with the training cache (written or read by the kernels meanwhile).
    Views that are only read may share memory."""
    cdef Py_ssize_t i, j, start = 0, end = 0
    cdef Tensor w, t
    for i in range(len(writes)):
        w = writes[i]
        if reaches_twice(&w.s):
            raise BNNSError(f"{w.field}: its strides reach some element twice (size {w.numpy().shape}, "
                            f"strides {tuple(w.s.s[k] for k in range(w.s.nd))} in elements); a written "
                            "descriptor must reach each element once")
        for j in range(i):
            t = writes[j]
            if overlap(w, t, t.lo(), t.hi()):
                raise BNNSError(f"{w.field}: shares memory with {t.field}; written descriptors must not overlap")
        for j in range(len(reads)):
            t = reads[j]
            if overlap(w, t, t.lo(), t.hi()):
                raise BNNSError(f"{w.field}: shares memory with {_read_name(t.field)}, which the {reader} reads")
    if cache is None:
        return 0
    start = <Py_ssize_t>_address(cache)
    end = start + cache.nbytes
    for i in range(len(writes)):
        w = writes[i]
        if overlap(w, cache, start, end):
            raise BNNSError(f"{w.field}: shares memory with training_cache, which the {reader} "
                            f"{'writes' if reader == 'forward' else 'reads'}")
    return 0


# ---------------------------------------------------------------------------------- scalars
cdef Py_ssize_t scalar(object params, str name) except -1:
    value = getattr(params, name)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise BNNSError(f"{name}: expected a non-negative integer, got {value!r}")
    if value < 0 or value > 2**31 - 1:
        raise BNNSError(f"{name}: expected 0 <= {name} < 2**31, got {value}")
    return value


cdef int learn(dict values, object desc, tuple names, str field) except -1:
    """Take scalars (``names`` aligned right with the logical shape) from a descriptor."""
    cdef Py_ssize_t shape[8]
    cdef int rank, k
    if desc is None:
        return 0
    if not isinstance(desc, NDArrayDescriptor):
        raise BNNSError(f"{field}: expected an NDArrayDescriptor or None, got {type(desc).__name__}")
    rank = logical_shape(<NDArrayDescriptor>desc, field, shape)
    for k in range(min(rank, len(names))):
        name = names[len(names) - 1 - k]
        extent = shape[rank - 1 - k]
        if name is None or extent == 0:
            continue
        known = values[name]
        if known == 0:
            values[name] = extent
        elif known != extent:
            raise BNNSError(f"{field}: size gives {name} = {extent} but {name} is {known}")
    return 0


def _batch_sizes(sequence_descriptor, T, B):
    """The per-step batch sizes as int32 (checked: non-increasing, first == B, in [1, B])."""
    if sequence_descriptor is None:
        return None
    if isinstance(sequence_descriptor, NDArrayDescriptor):
        if sequence_descriptor.data_type not in _INTEGER_TYPES:
            raise BNNSError(
                f"sequence_descriptor.data_type: expected an integer type, got {type_name(sequence_descriptor.data_type)}")
        values = sequence_descriptor.to_numpy((T,), "sequence_descriptor")
        if values.ndim != 1:
            raise BNNSError(f"sequence_descriptor: expected a vector of {T} integers")
    else:
        values = np.asarray(sequence_descriptor)
        if values.dtype.kind not in "iu":
            raise BNNSError(f"sequence_descriptor: expected integers, got dtype {values.dtype}")
    if values.shape != (T,):
        raise BNNSError(f"sequence_descriptor: expected {T} batch sizes (seq_len), got shape {values.shape}")
    values = values.astype(np.int64)
    if values[0] != B:
        raise BNNSError(f"sequence_descriptor: the first batch size must be batch_size = {B}, got {values[0]}")
    if np.any(values < 1) or np.any(values > B):
        raise BNNSError(f"sequence_descriptor: batch sizes must lie in [1, {B}], got {values.tolist()}")
    if np.any(np.diff(values) > 0):
        raise BNNSError(f"sequence_descriptor: batch sizes must not increase, got {values.tolist()}")
    return values.astype(np.int32)


cdef int sequence_layout(object desc, str field) except -1:
    layout = desc.layout
    if type(layout) is not bool and isinstance(layout, int) and (layout == SNE or layout == NSE):
        return layout
    try:
        layout = DataLayout(desc.layout)
    except ValueError:
        raise BNNSError(f"{field}.layout: {desc.layout!r} is not a DataLayout") from None
    if layout not in (DataLayout.SNE, DataLayout.NSE):
        raise BNNSError(f"{field}.layout: expected SNE or NSE, got {layout.name}")
    return layout


# ---------------------------------------------------------------------------------- plan
cdef class Plan:
    """Everything one call needs, checked, and the kernels' description of it."""

    cdef Call c
    cdef readonly int H, B, L, T, D, data_type
    cdef int In                     # input_size (C name I: a macro of <complex.h>)
    cdef readonly object dtype, dropout, dropout_seed, default_activations, activations
    cdef readonly tuple peepholes, biases, batch_sizes
    cdef readonly bint variable_batch
    cdef list reads                 # Tensors the call reads (the backward adds dL/dy, dL/dh_T, dL/dc_T)
    cdef list writes                # Tensors the call writes
    cdef list keep                  # what the call's pointers point into
    cdef object picks, timing       # the planner's schedule the call's pointers point into

    def __cinit__(self):
        memset(&self.c, 0, sizeof(Call))
        self.c.arrangement[0].by_vectors = -1   # the heuristic until the planner schedules
        self.reads, self.writes, self.keep = [], [], []

    def __dealloc__(self):
        PyMem_Free(<void*>self.c.bs)
        PyMem_Free(<void*>self.c.start)
        PyMem_Free(self.c.layer)
        PyMem_Free(self.c.grad)

    @property
    def I(self):
        return self.In

    # ------------------------------------------------------------------ resolution
    cdef Tensor tensor(self, object desc, tuple shape, str field, bint writable=False, bint optional=True,
                       str kind=None):
        """Check ``desc`` against the logical ``shape`` and resolve it; None when absent.

        Zero sizes are filled from ``shape`` (aligned right). Leading extents of 1 may be
        dropped by the descriptor (a ``[1][H][I]`` tensor may be given as an ``[H][I]``
        matrix). ``kind`` names the reading chosen for a field that accepts two shapes."""
        cdef Py_ssize_t given[8]
        cdef Py_ssize_t fill[8]
        cdef int rank, r = len(shape), k, g0 = 0, c0 = 0
        cdef Tensor t
        cdef NDArrayDescriptor d
        if desc is None:
            if optional:
                return None
            raise BNNSError(f"{field}: required")
        if not isinstance(desc, NDArrayDescriptor):
            raise BNNSError(f"{field}: expected an NDArrayDescriptor or None, got {type(desc).__name__}")
        d = <NDArrayDescriptor>desc
        t = Tensor.__new__(Tensor)
        t.desc, t.field, t.itemsize = desc, field, self.c.itemsize
        if d.recall(shape, self.data_type, &t.s):  # matched before, and nothing changed since
            if writable:
                d.check_writable(field)
            self.hold(t, d)
            (self.writes if writable else self.reads).append(t)
            return t
        if d.data_type != self.data_type:
            raise BNNSError(f"{field}.data_type: {type_name(d.data_type)} but the call's type is "
                            f"{type_name(self.data_type)}")
        rank = logical_shape(d, field, given)
        for k in range(rank):  # zero sizes from the expected shape, aligned right
            if given[k] == 0 and 0 <= k + r - rank < r:
                given[k] = shape[k + r - rank]
        while r - c0 > rank - g0 and shape[c0] == 1:
            c0 += 1
        while rank - g0 > r - c0 and given[g0] == 1:
            g0 += 1
        same = rank - g0 == r - c0
        for k in range(rank - g0):
            same = same and given[g0 + k] == shape[c0 + k]
        if not same:
            read_as = f" ({kind})" if kind else ""
            raise BNNSError(f"{field}: logical shape {tuple(given[k] for k in range(rank))} does not "
                            f"match {shape}{read_as}")
        for k in range(rank):
            fill[k] = given[k]
        d.resolve(fill, rank, field, self.data_type, writable, &t.s)
        # the expected rank: leading axes of extent 1 dropped or added (stride 0)
        for k in range(r):
            if k < c0:
                given[k], fill[k] = 1, 0
            else:
                given[k], fill[k] = t.s.n[g0 + k - c0], t.s.s[g0 + k - c0]
        t.s.nd = r
        for k in range(r):
            t.s.n[k], t.s.s[k] = given[k], fill[k]
        d.remember(shape, self.data_type, &t.s)
        self.hold(t, d)
        (self.writes if writable else self.reads).append(t)
        return t

    cdef int hold(self, Tensor t, NDArrayDescriptor d) except -1:
        """Keep the buffer export t points into for as long as the plan lives: the kernels
        run without the GIL, and another thread may set ``d.data`` meanwhile, which drops
        the descriptor's own export (the array could be freed under them)."""
        cdef object export = d._view
        cdef Py_buffer *buffer
        if export is not None:
            buffer = PyMemoryView_GET_BUFFER(export)
            if <char*>buffer.buf == t.s.p and (t.s.last + 1) * t.itemsize <= buffer.len:
                t.export = export
                self.keep.append(export)
                return 0
        # the data was replaced between the resolution and here (another thread)
        raise BNNSError(f"{t.field}.data: replaced while the call was being checked")

    cdef Tensor sequence(self, object desc, Py_ssize_t width, str field, bint writable=False):
        """A ``[T][B][width]`` view of an SNE or NSE descriptor (None when absent)."""
        cdef Tensor t
        if desc is None:
            return None
        if sequence_layout(desc, field) == SNE:
            return self.tensor(desc, (self.T, self.B, width), field, writable)
        t = self.tensor(desc, (self.B, self.T, width), field, writable)
        t.s.n[0], t.s.n[1] = t.s.n[1], t.s.n[0]
        t.s.s[0], t.s.s[1] = t.s.s[1], t.s.s[0]
        return t

    cdef Mat weight(self, Tensor t, Py_ssize_t i0, Py_ssize_t i1):
        """A matrix BLAS reads (weights, initial states): where it lies, or a contiguous copy
        (once per call) of what BLAS cannot address."""
        cdef Mat m = t.matrix(i0, i1)
        if addressable(m):
            return m
        view = t.numpy()
        copy = np.ascontiguousarray(view[i0, i1] if t.s.nd == 4 else view[i1])
        self.keep.append(copy)
        return mat(<char*><size_t>copy.__array_interface__["data"][0], m.rows, m.cols, m.cols, 1)

    cdef Seq seq(self, Tensor t):
        cdef Seq s
        if t is None:
            s.p = NULL
            s.st = s.sb = s.se = 0
        else:
            s.p, s.st, s.sb, s.se = t.s.p, t.s.s[0], t.s.s[1], t.s.s[2]
        return s

    cdef Mat rows(self, Seq s, Py_ssize_t width):
        """A [T][B][width] sequence as one [T*B][width] matrix (row t*B + b) when every step
        is full and the steps follow each other B rows apart; else absent (gathered)."""
        cdef Mat m
        if s.p == NULL or self.variable_batch:
            return mat(NULL, 0, 0, 0, 0)
        if self.T > 1 and self.B > 1 and s.st != self.B * s.sb:
            return mat(NULL, 0, 0, 0, 0)
        m = mat(s.p, <Py_ssize_t>self.T * self.B, width, s.sb if self.B > 1 else s.st, s.se)
        return m if addressable(m) else mat(NULL, 0, 0, 0, 0)

    cdef Mat state(self, Tensor t, int l, int d, bint blas=False):
        """Layer l, direction d of a ``[L][D][B][H]`` state (absent: p NULL); with ``blas``,
        one BLAS can read (the first step's products read initial states)."""
        if t is None:
            return mat(NULL, 0, 0, 0, 0)
        return self.weight(t, l, d) if blas else t.matrix(l, d)

    # ------------------------------------------------------------------ forward parameters
    cdef int setup(self, object params, bint need_outputs) except -1:
        cdef Call *c = &self.c
        cdef int t, k
        cdef Py_ssize_t rows = 0
        for name in ("input_descriptor", "output_descriptor"):
            if getattr(params, name) is None:
                raise BNNSError(f"{name}: expected an LSTMDataDescriptor, got None")
        x_desc = params.input_descriptor.data_desc
        if x_desc is None:
            raise BNNSError("input_descriptor.data_desc: required")
        if not isinstance(x_desc, NDArrayDescriptor):
            raise BNNSError(f"input_descriptor.data_desc: expected an NDArrayDescriptor, got {type(x_desc).__name__}")
        if x_desc.data_type not in (FLOAT32, FLOAT64):
            raise BNNSError(f"input_descriptor.data_desc.data_type: expected FLOAT32 or FLOAT64, got "
                            f"{type_name(x_desc.data_type)}")
        self.data_type = x_desc.data_type
        c.itemsize = 4 if self.data_type == FLOAT32 else 8
        self.dtype = np.dtype(np.float32 if c.itemsize == 4 else np.float64)
        flag_value = params.lstm_flags
        if (isinstance(flag_value, bool) or not isinstance(flag_value, (int, np.integer))
                or not 0 <= flag_value <= KNOWN_FLAGS or int(flag_value) & ~KNOWN_FLAGS):
            raise BNNSError(f"lstm_flags: unknown bits in {flag_value!r} (known: BIDIRECTIONAL, DEFAULT_ACTIVATIONS)")
        cdef int flags = flag_value
        self.D = 2 if flags & 1 else 1

        values = {name: scalar(params, name) for name in _SCALARS}
        inp, out = params.input_descriptor, params.output_descriptor
        x_layout = sequence_layout(x_desc, "input_descriptor.data_desc")
        learn(values, x_desc, ("seq_len", "batch_size", "input_size") if x_layout == SNE
              else ("batch_size", "seq_len", "input_size"), "input_descriptor.data_desc")
        for owner, prefix in ((inp, "input_descriptor"), (out, "output_descriptor")):
            learn(values, owner.hidden_desc, _STATE_NAMES, f"{prefix}.hidden_desc")
            learn(values, owner.cell_state_desc, _STATE_NAMES, f"{prefix}.cell_state_desc")
        for name in GATES:
            gate = getattr(params, name)
            if gate is None:
                raise BNNSError(f"{name}: expected an LSTMGateDescriptor, got None")
            learn(values, gate.hw_desc, ("num_layers", None, "hidden_size", "hidden_size"), f"{name}.hw_desc")
        for name in _SCALARS:
            if values[name] < 1:
                raise BNNSError(f"{name}: is 0 and no descriptor gives it")
        self.In, self.H, self.B, self.L, self.T = (values[n] for n in _SCALARS)
        I, H, B, L, T, D = self.In, self.H, self.B, self.L, self.T, self.D
        if T * B * max(I, D * H) > 2**31 - 1 or 4 * D * H * max(I, D * H, H) > 2**31 - 1:
            raise BNNSError(f"seq_len * batch_size * width: {T}*{B}*{max(I, D * H)} is too large for BLAS's 32-bit sizes")

        # x first: every size a table below is allocated by (T here, L with the gates) is
        # then one that a descriptor's buffer holds
        x = self.sequence(x_desc, I, "input_descriptor.data_desc")

        dropout = params.dropout
        if not isinstance(dropout, (int, float, np.floating)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
            raise BNNSError(f"dropout: expected 0 <= dropout < 1, got {dropout!r}")
        seed = params.dropout_seed
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**64:
            raise BNNSError(f"dropout_seed: expected an integer in [0, 2**64), got {seed!r}")
        self.dropout = float(dropout) if L > 1 else 0.0
        self.dropout_seed = int(seed)
        sizes = _batch_sizes(params.sequence_descriptor, T, B)
        self.variable_batch = sizes is not None and bool(np.any(sizes != B))
        self.batch_sizes = tuple(sizes.tolist()) if sizes is not None else (B,) * T

        self.default_activations = bool(flags & 2)
        if self.default_activations:
            self.activations = _DEFAULT_ACTIVATIONS
        else:
            self.activations = tuple(check_activation(getattr(params, g).activation, f"{g}.activation")
                                     for g in GATES) + (check_activation(params.hidden_activation, "hidden_activation"),)

        gates = [self.gate_tensors(getattr(params, name), name, False) for name in GATES]
        self.peepholes = tuple(gate[3] for gate in gates)
        self.biases = tuple(gate[4] is not None for gate in gates)

        # the kernels' description: scalars, rows, activations (zeroed tables, sized by T and
        # by L, which the buffers of x and of every gate's hw_desc were found to hold)
        c.T, c.B, c.In, c.H, c.L, c.D = T, B, I, H, L, D
        c.bs = <int*>PyMem_Malloc(T * sizeof(int))
        c.start = <Py_ssize_t*>PyMem_Malloc(T * sizeof(Py_ssize_t))
        c.layer = <Layer*>PyMem_Calloc(L, sizeof(Layer))
        c.grad = <Layer*>PyMem_Calloc(L, sizeof(Layer))
        if c.bs == NULL or c.start == NULL or c.layer == NULL or c.grad == NULL:
            raise BNNSError(f"num_layers, seq_len: {L} layers of {T} steps need more memory for the call's "
                            "tables than can be allocated")
        for t in range(T):
            (<int*>c.bs)[t] = self.batch_sizes[t]
            (<Py_ssize_t*>c.start)[t] = rows
            rows += self.batch_sizes[t]
        c.rows = rows
        for k in range(5):
            c.fn[k], c.alpha[k], c.beta[k] = self.activations[k]
        c.dropout = self.dropout
        c.seed = self.dropout_seed

        for k in range(4):
            self.fill_gate(gates[k], k, False, c.layer)
        for k in range(L):
            self.merge(&c.layer[k])

        c.x = self.seq(x)
        c.x_rows = self.rows(c.x, I)
        h0, c0 = self.states(inp, "input_descriptor", False)
        hn, cn = self.states(out, "output_descriptor", True) if need_outputs else (None, None)
        if need_outputs:
            c.y = self.seq(self.sequence(out.data_desc, D * H, "output_descriptor.data_desc", True))
        for k in range(L):
            for t in range(D):
                c.layer[k].d[t].h0, c.layer[k].d[t].c0 = self.state(h0, k, t, True), self.state(c0, k, t, True)
                c.layer[k].d[t].hn, c.layer[k].d[t].cn = self.state(hn, k, t), self.state(cn, k, t)
        return 0

    cdef tuple states(self, object owner, str prefix, bint written):
        """The hidden and cell state descriptors of ``owner`` (an LSTMDataDescriptor), each
        ``[L][D][B][H]``, resolved (None where absent)."""
        cdef tuple shape = (self.L, self.D, self.B, self.H)
        return (self.tensor(owner.hidden_desc, shape, f"{prefix}.hidden_desc", written),
                self.tensor(owner.cell_state_desc, shape, f"{prefix}.cell_state_desc", written))

    cdef tuple gate(self, object gate, int k, str name, bint delta, Layer *layers):
        """Gate k's descriptors into every layer and direction of ``layers``: the weights
        (forward) or the gradients that receive them (delta: every field optional, written,
        with its own flags). Returns (peephole kind, has bias)."""
        tensors = self.gate_tensors(gate, name, delta)
        self.fill_gate(tensors, k, delta, layers)
        return tensors[3], tensors[4] is not None

    cdef tuple gate_tensors(self, object gate, str name, bint delta):
        """A gate's descriptors, resolved: (W per layer, U, C, peephole kind, b)."""
        cdef int L = self.L, D = self.D
        cdef Py_ssize_t H = self.H
        cdef Tensor U, C, b
        cdef dict fields = _GATE_FIELDS[name]
        W = self.layer_weights(gate, name, delta)
        U = self.tensor(gate.hw_desc, (L, D, H, H), fields["hw_desc"], delta, delta)
        C, kind = None, NO_PEEPHOLE
        if gate.cw_desc is not None:
            desc = gate.cw_desc
            if not isinstance(desc, NDArrayDescriptor):
                raise BNNSError(f"{name}.cw_desc: expected an NDArrayDescriptor or None, got {type(desc).__name__}")
            # kind before fill (SPEC §2): the layout's rank decides, then zero sizes are filled
            if layout_rank(desc.layout, fields["cw_desc"]) in (1, 3):
                C, kind = self.tensor(desc, (L, D, H), fields["cw_desc"], delta, True,
                                      "a diagonal peephole [L][D][H] (rank 3, or one [H] vector)"), DIAGONAL
            else:
                C, kind = self.tensor(desc, (L, D, H, H), fields["cw_desc"], delta, True,
                                      "a full peephole [L][D][H][H] (rank 4, or one [H][H] matrix)"), FULL
        b = self.tensor(gate.b_desc, (L, D, H), fields["b_desc"], delta)
        return W, U, C, kind, b

    cdef int fill_gate(self, tuple tensors, int k, bint delta, Layer *layers) except -1:
        """Point gate k of every layer and direction of ``layers`` at its resolved tensors."""
        cdef int L = self.L, D = self.D, l, d
        cdef Tensor U, C, b
        cdef Gate *g
        W, U, C, kind, b = tensors
        for l in range(L):
            for d in range(D):
                g = &layers[l].d[d].g[k]
                tensor, index = W[l]
                if tensor is not None:
                    g.W = (<Tensor>tensor).matrix(index, d) if delta else self.weight(tensor, index, d)
                    g.acc_W = self.accumulates(tensor)
                if U is not None:
                    g.U = U.matrix(l, d) if delta else self.weight(U, l, d)
                    g.acc_U = self.accumulates(U)
                if kind == FULL:
                    g.C = C.matrix(l, d) if delta else self.weight(C, l, d)
                elif kind == DIAGONAL:
                    g.cdiag = C.vector(l, d)
                if C is not None:
                    g.acc_C = self.accumulates(C)
                if b is not None:
                    g.b = b.vector(l, d)
                    g.acc_b = self.accumulates(b)
        return 0

    cdef bint accumulates(self, Tensor t) except -1:
        if t is None or t not in self.writes:
            return False
        flags = t.desc.flags
        if flags != SET and flags != ACCUMULATE:
            raise BNNSError(f"{t.field}.flags: expected BACKPROP_SET or BACKPROP_ACCUMULATE, got {flags!r}")
        return flags == ACCUMULATE

    cdef list layer_weights(self, object gate, str name, bint delta):
        """The input weights of every layer: [(Tensor, leading index)] (Tensor None where
        not given: gradients only)."""
        cdef int L = self.L, D = self.D, l
        cdef Py_ssize_t I = self.In, H = self.H
        cdef Tensor every, later
        cdef dict fields = _GATE_FIELDS[name]
        first, rest = (list(gate.iw_desc) + [None, None])[:2] if gate.iw_desc is not None else (None, None)
        if first is None:
            if delta:
                later = self.tensor(rest, (L - 1, D, H, D * H), fields["iw_desc[1]"], True) if L > 1 else None
                return [(None, 0)] + [(later, l) for l in range(L - 1)]
            raise BNNSError(f"{name}.iw_desc[0]: required")
        if not isinstance(first, NDArrayDescriptor):
            raise BNNSError(f"{name}.iw_desc[0]: expected an NDArrayDescriptor, got {type(first).__name__}")
        # kind before fill (SPEC §2): rank 4 or more, with iw_desc[1] absent or the same
        # descriptor, covers every layer; anything else is layer 0's [D][H][I]
        if layout_rank(first.layout, fields["iw_desc[0]"]) >= 4 and (rest is None or rest is first):
            if L > 1 and I != D * H:
                raise BNNSError(f"{name}.iw_desc[0]: a rank-4 layout covers every layer, which needs "
                                f"input_size == D*hidden_size ({I} != {D * H}); give layer 0's [D][H][I] "
                                f"(rank 3) and iw_desc[1]")
            every = self.tensor(first, (L, D, H, I), fields["iw_desc[0]"], delta, False,
                                "a rank-4 layout covers every layer, [L][D][H][I]")
            return [(every, l) for l in range(L)]
        weights = [(self.tensor(first, (D, H, I), fields["iw_desc[0]"], delta, False), 0)]
        if L > 1:
            if rest is None and not delta:
                raise BNNSError(f"{name}.iw_desc[1]: required when num_layers > 1 (or give every layer in iw_desc[0])")
            if rest is first and delta:
                raise BNNSError(f"{name}.iw_desc[1]: the same descriptor as iw_desc[0] but they receive different layers")
            later = self.tensor(rest, (L - 1, D, H, D * H), fields["iw_desc[1]"], delta)
            weights += [(later, l) for l in range(L - 1)]
        return weights

    cdef void merge(self, Layer *lay) noexcept:
        """The gates' (and directions') weights as one matrix where they lie one after another."""
        cdef Mat blocks[8]
        cdef int d, k
        for d in range(self.D):
            for k in range(4):
                blocks[k] = lay.d[d].g[k].U
            lay.d[d].U4 = merged(blocks, 4, self.H, self.c.itemsize)
        for d in range(self.D):
            for k in range(4):
                blocks[4 * d + k] = lay.d[d].g[k].W
        lay.W4 = merged(blocks, 4 * self.D, self.H, self.c.itemsize)
        lay.full_o = lay.d[0].g[3].C.p != NULL

    # ------------------------------------------------------------------ backward parameters
    def delta(self, delta):
        """Check the backward's gradient descriptors against this (forward) plan and add
        them to the call: dL/dy, dL/dh_T, dL/dc_T read; dx, dh0, dc0 and every weight
        gradient written, each with its own flags (SPEC §6)."""
        cdef Call *c = &self.c
        cdef int L = self.L, D = self.D, l, d, k
        cdef Py_ssize_t T = self.T, B = self.B, I = self.In, H = self.H
        cdef Tensor dx
        cdef Direction *gr
        if delta is None or not hasattr(delta, "input_descriptor"):
            raise BNNSError("layer_delta_params: expected LayerParametersLSTM")
        resolved = dict(zip(_SCALARS, (self.In, self.H, self.B, self.L, self.T)))
        for name in _SCALARS:
            value = getattr(delta, name)
            if value not in (0, resolved[name]):
                raise BNNSError(f"layer_delta_params.{name}: {value!r} but the forward's {name} is {resolved[name]}")
        flags = delta.lstm_flags
        if not isinstance(flags, (int, np.integer)) or bool(flags & LayerFlags.BIDIRECTIONAL) != (D == 2):
            raise BNNSError("layer_delta_params.lstm_flags: BIDIRECTIONAL differs from the forward's")
        for name in ("input_descriptor", "output_descriptor"):
            if getattr(delta, name) is None:
                raise BNNSError(f"layer_delta_params.{name}: expected an LSTMDataDescriptor, got None")
        inp, out = delta.input_descriptor, delta.output_descriptor
        prefix = "layer_delta_params."
        self.writes = []
        c.dy = self.seq(self.sequence(out.data_desc, D * H, prefix + "output_descriptor.data_desc"))
        dhn, dcn = self.states(out, prefix + "output_descriptor", False)    # dL/dh_T, dL/dc_T: read
        dx = self.sequence(inp.data_desc, I, prefix + "input_descriptor.data_desc", True)
        c.dx = self.seq(dx)
        c.dx_rows = self.rows(c.dx, I)
        c.acc_dx = self.accumulates(dx)
        dh0, dc0 = self.states(inp, prefix + "input_descriptor", True)      # dL/dh0, dL/dc0: written
        for l in range(L):
            for d in range(D):  # gradient fields mirror the forward's (see _call.pxd)
                gr = &c.grad[l].d[d]
                gr.hn, gr.cn = self.state(dhn, l, d), self.state(dcn, l, d)
                gr.h0, gr.c0 = self.state(dh0, l, d), self.state(dc0, l, d)
                gr.acc_h0, gr.acc_c0 = self.accumulates(dh0), self.accumulates(dc0)
        for k, name in enumerate(GATES):
            gate = getattr(delta, name)
            if gate is None:
                raise BNNSError(f"{prefix}{name}: expected an LSTMGateDescriptor, got None")
            kind, has_bias = self.gate(gate, k, prefix + name, True, c.grad)
            if gate.cw_desc is not None and kind != self.peepholes[k]:
                raise BNNSError(f"{prefix}{name}.cw_desc: the forward's gate has "
                                f"{['no', 'a diagonal', 'a full'][self.peepholes[k]]} peephole")
            if has_bias and not self.biases[k]:
                raise BNNSError(f"{prefix}{name}.b_desc: the forward's gate has no bias")
        check_writes(self.writes, self.reads, None, "backward")

    # ------------------------------------------------------------------ checks before writing
    def check_forward_writes(self, cache):
        """Written descriptors must not overlap each other, what the forward reads or the
        cache; the cache must not overlap what the forward reads either (the kernels write
        it while they read the inputs)."""
        cdef Py_ssize_t start, end, j
        cdef Tensor t
        check_writes(self.writes, self.reads, cache, "forward")
        if cache is None:
            return
        start = <Py_ssize_t>_address(cache)
        end = start + cache.nbytes
        for j in range(len(self.reads)):
            t = self.reads[j]
            if overlap(t, cache, start, end):
                raise BNNSError(f"training_cache: shares memory with {_read_name(t.field)}, which the forward reads")

    def check_cache_against_writes(self, cache):
        """The backward's written descriptors must not overlap the cache it reads."""
        check_writes(self.writes, [], cache, "backward")

    # ------------------------------------------------------------------ cache and scratch
    cdef Py_ssize_t region_offsets(self, Py_ssize_t *offsets) noexcept:
        """Byte offset of every region of the training cache, offsets[6*layer + r] for the
        regions of REGION_NAMES (-1: absent), in buffer order; returns the capacity. The one
        place the offsets are computed (SPEC §5, docs/training_cache.rst)."""
        cdef Py_ssize_t rows = <Py_ssize_t>self.T * self.B, DH = self.D * self.H, isz = self.c.itemsize
        cdef Py_ssize_t width[6]
        cdef Py_ssize_t offset = HEADER_BYTES, end = HEADER_BYTES
        cdef int l, r
        width[0] = width[1] = 4 * DH
        width[2] = width[3] = width[4] = width[5] = DH
        for l in range(self.L):
            for r in range(6):
                if (r == 1 and self.default_activations) or (r == 5 and (l == 0 or self.dropout == 0)):
                    offsets[6 * l + r] = -1
                    continue
                offsets[6 * l + r] = offset
                end = offset + rows * width[r] * isz
                offset = (end + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT
        return end

    @property
    def capacity(self):
        """Minimum training cache size in bytes."""
        cdef Py_ssize_t offsets[6 * 256]
        return self.region_offsets(offsets) if self.L <= 256 else self._layout()[1]

    def cache_layout(self):
        """(name, layer, offset, logical shape) of every region, in buffer order."""
        return self._layout()[0]

    def _layout(self):
        cdef Py_ssize_t *offsets = <Py_ssize_t*>PyMem_Malloc(6 * self.L * sizeof(Py_ssize_t))
        cdef Py_ssize_t capacity
        cdef int l, r
        if offsets == NULL:
            raise MemoryError()
        try:
            capacity = self.region_offsets(offsets)
            T, B, D, H = self.T, self.B, self.D, self.H
            shapes = ((T, B, D, 4 * H), (T, B, D, 4 * H), (T, B, D, H), (T, B, D, H), (T, B, D * H), (T, B, D * H))
            table = [(REGION_NAMES[r], l, offsets[6 * l + r], shapes[r])
                     for l in range(self.L) for r in range(6) if offsets[6 * l + r] >= 0]
            return table, capacity
        finally:
            PyMem_Free(offsets)

    def scratch_bytes(self, int team, bint backward):
        """Bytes of scratch a forward (or backward) call with ``team`` threads needs."""
        cdef Py_ssize_t sizes[10]
        return self.scratch_sizes(team, backward, sizes)

    cdef Py_ssize_t scratch_sizes(self, int team, bint backward, Py_ssize_t *sizes) noexcept:
        """Bytes of each scratch part (64-byte multiples), in Call's order: x, in, S, dG, dX,
        prev, carry, grad, hT, and the packed bias and peephole vectors; returns the total."""
        cdef Py_ssize_t rows = self.c.rows, DH = self.D * self.H, DG = 4 * DH, isz = self.c.itemsize
        cdef Py_ssize_t width = self.In if self.In > DH else DH, total = 0
        cdef bint full = not self.variable_batch
        cdef int k
        sizes[0] = rows * self.In if self.c.x_rows.p == NULL else 0
        sizes[1] = rows * DH if self.L > 1 and (self.dropout > 0 or not full) else 0
        sizes[2] = DG * self.B
        sizes[3] = rows * DG if backward or not full else 0
        sizes[4] = rows * width if backward else 0
        sizes[5] = (self.D + 1) * rows * self.H if backward else 0
        sizes[6] = 3 * DH * self.B if backward else 0
        sizes[7] = team * self.H * (width if width > self.H else self.H) if backward else 0
        sizes[8] = DH * self.B
        sizes[9] = 2 * self.L * DG
        for k in range(10):
            sizes[k] = (sizes[k] * isz + 63) // 64 * 64
            total += sizes[k]
        return total

    def bind(self, cache, scratch, int team, bint backward, bint keep_everything=True):
        """Point the call at its training cache's regions (``cache``: a uint8 array of at
        least ``capacity`` bytes; without keep_everything, what only the backward reads is
        not written) and at ``scratch`` (a uint8 array of at least scratch_bytes())."""
        cdef Call *c = &self.c
        cdef Layer *lay
        cdef Py_ssize_t on_stack[6 * 256]
        cdef Py_ssize_t *offsets = on_stack  # on the heap for more than 256 layers
        cdef Py_ssize_t sizes[10]
        cdef char *base = _address(cache)
        cdef char *region[6]
        cdef int l, r
        cdef Py_ssize_t offset = 0
        if self.L > 256:
            offsets = <Py_ssize_t*>PyMem_Malloc(6 * self.L * sizeof(Py_ssize_t))
            if offsets == NULL:
                raise MemoryError()
        try:
            c.team = team
            self.region_offsets(offsets)
            for l in range(self.L):
                for r in range(6):
                    region[r] = NULL if offsets[6 * l + r] < 0 else base + offsets[6 * l + r]
                if not keep_everything:
                    region[1] = region[3] = NULL
                lay = &c.layer[l]
                lay.X = self.In if l == 0 else self.D * self.H
                lay.gates, lay.preact, lay.cells = region[0], region[1], region[2]
                lay.act_h, lay.out, lay.mask = region[3], region[4], region[5]
        finally:
            if offsets != on_stack:
                PyMem_Free(offsets)
        if scratch.nbytes < self.scratch_sizes(team, backward, sizes):
            raise MemoryError("scratch too small")
        base = _address(scratch)
        c.scratch_x, offset = base, sizes[0]
        c.scratch_in, offset = base + offset, offset + sizes[1]
        c.scratch_S, offset = base + offset, offset + sizes[2]
        c.scratch_dG, offset = base + offset, offset + sizes[3]
        c.scratch_dX, offset = base + offset, offset + sizes[4]
        c.scratch_prev, offset = base + offset, offset + sizes[5]
        c.scratch_carry, offset = base + offset, offset + sizes[6]
        c.scratch_grad, offset = base + offset, offset + sizes[7]
        c.scratch_hT, offset = base + offset, offset + sizes[8]
        self.pack_vectors(base + offset)
        c.grad_stride = self.H * max(self.In, self.D * self.H, self.H)
        self.keep += [cache, scratch]

    cdef void pack_vectors(self, char *base) noexcept:
        """Each layer's biases and diagonal peepholes as contiguous [D][4][H] vectors (zeros
        for gates without), so the elementwise pass reads them at unit stride."""
        cdef Py_ssize_t H = self.H, DG = 4 * self.D * self.H, isz = self.c.itemsize, j
        cdef int l, d, k
        cdef bint any_diag
        cdef Gate *g
        cdef Layer *lay
        for l in range(self.L):
            lay = &self.c.layer[l]
            lay.bias = base + 2 * l * DG * isz
            lay.cdiag = lay.bias + DG * isz
            memset(lay.bias, 0, 2 * DG * isz)
            any_diag = False
            for d in range(self.D):
                for k in range(4):
                    g = &lay.d[d].g[k]
                    for j in range(H):
                        if isz == 4:
                            if g.b.p != NULL:
                                (<float*>lay.bias)[(d * 4 + k) * H + j] = (<float*>g.b.p)[j * g.b.s]
                            if g.cdiag.p != NULL:
                                (<float*>lay.cdiag)[(d * 4 + k) * H + j] = (<float*>g.cdiag.p)[j * g.cdiag.s]
                        else:
                            if g.b.p != NULL:
                                (<double*>lay.bias)[(d * 4 + k) * H + j] = (<double*>g.b.p)[j * g.b.s]
                            if g.cdiag.p != NULL:
                                (<double*>lay.cdiag)[(d * 4 + k) * H + j] = (<double*>g.cdiag.p)[j * g.cdiag.s]
                    any_diag = any_diag or g.cdiag.p != NULL
            if not any_diag:
                lay.cdiag = NULL

    # ------------------------------------------------------------------ the planner's schedule
    def problem(self, int team):
        """The key under which the planner keeps what it measured: everything the speed of a
        step's recurrent products depends on (its shape, data type, team, and whether the four
        recurrent matrices lie as one, there are full peepholes, or the batch varies)."""
        cdef int d
        merged = all(self.c.layer[0].d[d].U4.p != NULL for d in range(self.D))
        return (f"{'float32' if self.c.itemsize == 4 else 'float64'} H{self.H} B{self.B} D{self.D} "
                f"team{team}{'' if merged else ' gates-apart'}{' full-peephole' if FULL in self.peepholes else ''}"
                f"{' variable-batch' if self.variable_batch else ''}")

    def schedule(self, arrangements, picks=None, step_seconds=None):
        """Run the steps with ``arrangements`` (at most 8 (form, chunk, by_vectors) triples):
        step s of layer l uses arrangements[picks[l * T + s]] (``picks``: bytes of L*T
        indices; None: the first everywhere); ``step_seconds`` (a float64 array of L*T, or
        None) receives each step's wall time."""
        cdef Call *c = &self.c
        cdef int k
        cdef const unsigned char[:] view
        cdef double[::1] seconds
        if not 1 <= len(arrangements) <= 8:
            raise ValueError("schedule: 1 to 8 arrangements")
        for k, (form, chunk, by_vectors) in enumerate(arrangements):
            if form not in (0, 1, 2, 3) or chunk < 0 or by_vectors not in (-1, 0, 1):
                raise ValueError(f"schedule: arrangement {k} is not one: {(form, chunk, by_vectors)}")
            c.arrangement[k].form, c.arrangement[k].chunk, c.arrangement[k].by_vectors = form, chunk, by_vectors
        c.pick = NULL
        c.step_seconds = NULL
        self.timing = None
        if picks is not None:
            if len(picks) != <Py_ssize_t>self.L * self.T or max(picks) >= len(arrangements):
                raise ValueError("schedule: picks must hold L*T indices of arrangements")
            view = picks
            c.pick = &view[0]
            self.picks = picks
        if step_seconds is not None:
            seconds = step_seconds
            if seconds.shape[0] != <Py_ssize_t>self.L * self.T:
                raise ValueError("schedule: step_seconds must hold L*T values")
            c.step_seconds = &seconds[0]
            self.timing = step_seconds

    # ------------------------------------------------------------------ running
    def forward(self):
        with nogil:
            forward_kernel(&self.c)

    def backward(self):
        with nogil:
            backward_kernel(&self.c)


def _read_name(field):
    """iw_desc[k] reads are reported as iw_desc (the field name of the gate)."""
    return field.split("[")[0]


cdef char* _address(object array):
    if array is None:
        return NULL
    return <char*><size_t>array.__array_interface__["data"][0]


cdef Mat merged(Mat *blocks, int count, Py_ssize_t rows, Py_ssize_t itemsize):
    """blocks[0..count) (each rows x cols) as one (count*rows) x cols matrix when they lie
    one after the other at a uniform row stride; else an absent Mat."""
    cdef Mat first = blocks[0], out
    cdef Py_ssize_t rs
    cdef int k
    if first.p == NULL:
        return mat(NULL, 0, 0, 0, 0)
    rs = first.rs if rows > 1 or count == 1 else (blocks[1].p - first.p) // itemsize
    for k in range(count):
        if blocks[k].p == NULL or blocks[k].p != first.p + k * rows * rs * itemsize:
            return mat(NULL, 0, 0, 0, 0)
        if (rows > 1 and blocks[k].rs != rs) or (first.cols > 1 and blocks[k].cs != first.cs):
            return mat(NULL, 0, 0, 0, 0)
    out = mat(first.p, count * rows, first.cols, rs, first.cs)
    return out if rs > 0 and addressable(out) else mat(NULL, 0, 0, 0, 0)


def make_plan(params, *, need_outputs=True):
    """Resolve and check ``params`` (a LayerParametersLSTM); return a :class:`Plan`."""
    cdef Plan plan = Plan()
    plan.setup(params, need_outputs)
    return plan


# ---------------------------------------------------------------------------------- kernel builds
ctypedef int (*kernel_fn)(Call *c) noexcept nogil
cdef kernel_fn forward_kernel = NULL
cdef kernel_fn backward_kernel = NULL
kernels = None  # the kernel module in use (its blas_time() counts this process's BLAS calls)
KERNEL_BUILDS = {"portable": "bnnslstm._kernels._lstm", "avx2": "bnnslstm._kernels._lstm_avx2",
                 "avx512": "bnnslstm._kernels._lstm_avx512"}
# numpy's CPU-feature names (the OS's support of the registers included) each build needs
KERNEL_FEATURES = {"portable": (), "avx2": ("AVX2", "FMA3"),
                   "avx512": ("AVX512F", "AVX512DQ", "AVX512BW", "AVX512VL", "AVX2", "FMA3")}


def _cpu_features():
    """numpy's CPU-feature table ({name: bool}); empty when numpy has none."""
    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):
        try:
            return dict(importlib.import_module(module).__cpu_features__)
        except (ImportError, AttributeError):
            continue
    return {}


def available_kernels():
    """The kernel builds this installation has and this CPU runs, best last."""
    features = _cpu_features()
    return [name for name, needs in KERNEL_FEATURES.items()
            if all(features.get(feature) for feature in needs)
            and (name == "portable" or importlib.util.find_spec(KERNEL_BUILDS[name]) is not None)]


def use_kernels(name=None):
    """Run the kernels of one build of _lstm.pxi: ``"portable"``, ``"avx2"`` or ``"avx512"``
    (None: the best this CPU runs, the default at import). A build is imported only on a
    CPU that has its instruction sets (KERNEL_FEATURES): its code may use them anywhere,
    its module init included."""
    global forward_kernel, backward_kernel, kernels
    names = available_kernels()
    name = names[-1] if name is None else name
    if name not in names:
        raise ValueError(f"kernels: {name!r} is not available here (available: {names})")
    module = importlib.import_module(KERNEL_BUILDS[name])
    forward, backward = module.entry_points()
    forward_kernel = <kernel_fn><size_t>forward
    backward_kernel = <kernel_fn><size_t>backward
    kernels = module
    return name


use_kernels()
