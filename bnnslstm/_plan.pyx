"""The plan of one call: every check, in one compiled place, and the kernels' description
of the call (``Call``, _kernels/_call.pxd) built from it.

:func:`make_plan` reads a :class:`~bnnslstm.parameters.LayerParametersLSTM`, reads the sizes
(I, H, B, L, T, D) from its fields and descriptors (_scalars.pxi), resolves every descriptor
against the logical shape the layer gives it (bounds, element type, writability) as a typed
memoryview over the caller's buffer (a Tensor, _tensor.pxi), and records where the kernels
read it: the slices of that view, in place wherever BLAS can address them (a leading
dimension, a transpose flag, per-gate pointers), a contiguous copy only where it cannot (no
unit stride in either direction; docs/layouts.rst). Each gate's descriptors are resolved in
_gates.pxi, the sequences and states in slots (_slots.pxi), the steps of setup() in
_setup.pxi. :meth:`Plan.delta` does the same for the backward's gradient descriptors.
Nothing is written until every check has passed, the aliasing checks of _aliasing.pxi last;
then :meth:`Plan.bind` points the call at its cache regions and scratch (_workspace.pxi) and
:meth:`Plan.run` runs the kernels of the build chosen at import (:func:`use_kernels`)
without the GIL. Also here: the planner's trials (_trial.pxi), the signature by which a
call reuses the last call's plan (_reuse.pxi), BLAS kept single-threaded (_serial.pxi).
"""

from cpython.buffer cimport (PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_SIMPLE, PyBUF_STRIDES,
                             PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer)
from cpython.mem cimport PyMem_Calloc, PyMem_Free, PyMem_Malloc
from libc.string cimport memcmp, memcpy, memset

from ._descriptor cimport NDArrayDescriptor, Resolution, layout_rank, logical_shape
from ._kernels._blas cimport Mat, addressable, blas_int, mat, operand
from ._kernels._call cimport (FORM_SPLIT_SUMS, N_REGIONS, N_SCRATCH, REGION_ACT_H_C, REGION_CELLS,
                              REGION_GATES, REGION_MASK, REGION_OUTPUT, REGION_PREACT,
                              SCRATCH_CARRY, SCRATCH_DG, SCRATCH_DX, SCRATCH_GRAD, SCRATCH_HT,
                              SCRATCH_IN, SCRATCH_PREV, SCRATCH_S, SCRATCH_VECTORS, SCRATCH_X,
                              SPLIT_DIRECTIONS, SPLIT_ROWS, SPLIT_ROWS_SAMPLES, SPLIT_SAMPLES,
                              SPLIT_UNITS, Call, Direction, Gate, Layer, Seq, Vec)

import numbers

import numpy as np

from ._checks import fraction, integer, is_integer
from ._descriptor import type_name
from ._kernels import load_build
from .activations import DEFAULT_ACTIVATIONS, check_activation
from .enums import DataLayout, DataType, LayerFlags, NDArrayFlags
from .errors import BNNSError
from .parameters import GATE_FIELDS  # the kernels' gate order too: i, f, g, o

cdef int SNE = DataLayout.SNE, NSE = DataLayout.NSE
cdef int FLOAT32 = DataType.FLOAT32, FLOAT64 = DataType.FLOAT64
cdef int ACCUMULATE = NDArrayFlags.BACKPROP_ACCUMULATE, SET = NDArrayFlags.BACKPROP_SET


include "_tensor.pxi"
include "_aliasing.pxi"
include "_scalars.pxi"
include "_slots.pxi"
include "_serial.pxi"


# ---------------------------------------------------------------------------------- plan
cdef class Plan:
    """Everything one call needs, checked, and the kernels' description of it."""

    cdef Call c
    cdef readonly int H, B, L, T, D, data_type
    cdef int In                     # input_size (C name I: a macro of <complex.h>)
    cdef readonly object dtype, dropout, dropout_seed, default_activations, activations
    cdef readonly tuple peepholes, biases, batch_sizes
    cdef readonly bint variable_batch
    cdef list reads                 # Tensors the call reads (the backward adds dL/dy, dL/dh_T,
                                    # dL/dc_T)
    cdef list writes                # Tensors the call writes
    cdef list keep                  # what the call's pointers point into
    cdef object picks, timing       # the planner's schedule the call's pointers point into
    cdef Py_ssize_t *offsets        # the cache's region offsets, [L][N_REGIONS] (_workspace.pxi)
    cdef Py_ssize_t cache_bytes     # the cache's capacity; -1 until laid out
    cdef Py_ssize_t scratch[N_SCRATCH]   # bytes of each scratch part (SCRATCH_*) for:
    cdef int scratch_team, scratch_backward  # this team and direction (-1: not yet sized)
    cdef Slot slots[N_SLOTS]        # where the sequences and states lie (_slots.pxi)
    cdef bint movable[N_SLOTS]      # which of them move() may put elsewhere
    cdef list held                  # the arrays move() put them on (kept alive)
    cdef object bound               # (key, cache, scratch) of the last bind()
    cdef object problem_keys        # team -> problem(team), made once
    cdef object copies              # array -> its C-contiguous copy (None: numpy's)

    def __cinit__(self):
        memset(&self.c, 0, sizeof(Call))
        self.c.arrangement[0].by_vectors = -1   # the heuristic until the planner schedules
        self.reads, self.writes, self.keep = [], [], []
        self.held = [None] * N_SLOTS
        self.problem_keys = {}
        self.cache_bytes = self.scratch_team = self.scratch_backward = -1

    def __dealloc__(self):
        PyMem_Free(self.offsets)
        PyMem_Free(<void*>self.c.bs)
        PyMem_Free(<void*>self.c.start)
        PyMem_Free(self.c.layer)
        PyMem_Free(self.c.grad)

    @property
    def I(self):
        return self.In

    # ------------------------------------------------------------------ resolution
    cdef Tensor tensor(self, object desc, tuple shape, str field, bint writable=False,
                       bint optional=True, str kind=None):
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
            raise BNNSError(f"{field}: expected an NDArrayDescriptor or None, "
                            f"got {type(desc).__name__}")
        d = <NDArrayDescriptor>desc
        t = Tensor.__new__(Tensor)
        t.desc, t.field, t.itemsize = desc, field, self.c.itemsize
        known = d.recall(shape, self.data_type)
        if known is not None:  # matched before, and nothing changed since
            if writable:
                d.check_writable(field)
            t.same_view(<Tensor>known)
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
            raise BNNSError(f"{field}: logical shape {tuple(given[k] for k in range(rank))} "
                            f"does not match {shape}{read_as}")
        for k in range(rank):
            fill[k] = given[k]
        view = d.resolve(fill, rank, field, self.data_type, writable)
        # the expected rank: leading axes of extent 1 dropped or added (stride 0)
        t.rank = r
        t.take(view[(0,) * g0] if g0 else view)
        d.remember(shape, self.data_type, t.bare())
        (self.writes if writable else self.reads).append(t)
        return t

    cdef Tensor sequence(self, object desc, Py_ssize_t width, str field, bint writable=False):
        """A ``[T][B][width]`` view of an SNE or NSE descriptor (None when absent)."""
        cdef Tensor t
        if desc is None:
            return None
        if sequence_layout(desc, field) == SNE:
            return self.tensor(desc, (self.T, self.B, width), field, writable)
        t = self.tensor(desc, (self.B, self.T, width), field, writable)
        t.swapped = True
        return t

    cdef Mat weight(self, Tensor t, Py_ssize_t i0, Py_ssize_t i1):
        """A matrix BLAS reads (weights, initial states): where it lies, or a contiguous copy
        (once per call) of what BLAS cannot address."""
        cdef Mat m = t.matrix(i0, i1)
        if addressable(m):
            return m
        view = t.numpy()
        view = view[i0, i1] if t.rank == 4 else view[i1]
        copy = np.ascontiguousarray(view) if self.copies is None else self.copies(view)
        self.keep.append(copy)
        return mat(<char*><size_t>copy.__array_interface__["data"][0], m.rows, m.cols, m.cols, 1)

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

    # ------------------------------------------------------------------ the parameters
    cdef int setup(self, object params, bint need_outputs) except -1:
        """Check the forward's parameters and describe the call (_setup.pxi): the scalars
        (x resolved first) and the Call's tables, the gates, the sequences and states."""
        x = read_scalars(self, params)
        gates = [gate_tensors(self, getattr(params, name), name, False) for name in GATE_FIELDS]
        self.peepholes = tuple(gate[3] for gate in gates)
        self.biases = tuple(gate[4] is not None for gate in gates)
        make_tables(self)
        point_gates(self, gates)
        point_sequences(self, params, x, need_outputs)
        return 0

    def delta(self, delta):
        """Check the backward's gradient descriptors against this (forward) plan and add
        them to the call (_setup.pxi): dL/dy, dL/dh_T, dL/dc_T read; dx, dh0, dc0 and every
        weight gradient written, each with its own flags."""
        check_delta_scalars(self, delta)
        self.writes = []
        point_gradient_sequences(self, delta, "layer_delta_params.")
        point_gradient_gates(self, delta, "layer_delta_params.")
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
            if shares_memory(t, cache, start, end):
                raise BNNSError(f"training_cache: shares memory with {_read_name(t.field)}, "
                                "which the forward reads")

    def check_cache_against_writes(self, cache):
        """The backward's written descriptors must not overlap the cache it reads."""
        check_writes(self.writes, [], cache, "backward")

    # ------------------------------------------------------------------ cache and scratch
    @property
    def capacity(self):
        """Minimum training cache size in bytes."""
        lay_out_cache(self)
        return self.cache_bytes

    def cache_layout(self):
        """(name, layer, offset, logical shape) of every region, in buffer order."""
        return cache_regions(self)

    def scratch_bytes(self, int team, bint backward):
        """Bytes of scratch a forward (or backward) call with ``team`` threads needs."""
        return scratch_sizes(self, team, backward)

    def bind(self, cache, scratch, int team, bint backward, bint keep_everything=True):
        """Point the call at its training cache's regions (``cache``: a uint8 array of at
        least ``capacity`` bytes; without keep_everything, what only the backward reads is
        not written) and at ``scratch`` (a uint8 array of at least scratch_bytes())."""
        cdef char *regions = _address(cache)
        cdef char *work = _address(scratch)
        if scratch.nbytes < scratch_sizes(self, team, backward):
            raise MemoryError("scratch too small")
        key = (<size_t>regions, <size_t>work, team, backward, keep_everything)
        if self.bound is not None and self.bound[0] == key:
            # the same buffers as the last call: only the packed biases and diagonal
            # peepholes again (the weights are read at every call)
            pack_vectors(self)
            return
        self.c.team = team
        bind_regions(self, regions, keep_everything)
        bind_scratch(self, work)
        self.bound = (key, cache, scratch)

    # ------------------------------------------------------------------ moving the data
    def move_forward(self, x, y, h0, c0, h_n, c_n):
        """Put the forward's sequences and states on other arrays (None where the plan has
        none), each of the element type, extents and strides the plan was made for:
        everything else checked holds as it was. For callers that own the written arrays
        (the everyday layers, the stepper): nothing here checks overlaps between them."""
        cdef int k
        for k, array in enumerate((x, y, h0, c0, h_n, c_n)):
            if array is not None or self.slots[k].p != NULL:
                move_slot(self, k, array, k in (SLOT_Y, SLOT_HN, SLOT_CN), _SLOT_NAMES[k])
        point_forward(self)

    def move_backward(self, dy, dx, dh0, dc0, dh_n, dc_n):
        """The same for the backward's gradients (see move_forward)."""
        cdef int k
        for k, array in enumerate((dy, dx, dh0, dc0, dh_n, dc_n), SLOT_DY):
            if array is not None or self.slots[k].p != NULL:
                move_slot(self, k, array, k in (SLOT_DX, SLOT_DH0, SLOT_DC0), _SLOT_NAMES[k])
        point_backward(self)

    def frame(self, x, out, bint serial):
        """One frame of a stream (see run_frame, _slots.pxi)."""
        if self.bound is None:
            raise ValueError("frame: the plan is not bound")
        run_frame(self, x, out, serial)

    def unbind(self):
        """Forget the buffers of the last bind() (a plan kept between calls of the
        BNNS-style functions must not keep the caller's cache alive)."""
        self.bound = None

    def park(self):
        """Let go of the arrays move_forward/move_backward put the slots on (between two
        calls of a kept plan: the next call moves every slot again before it runs)."""
        self.held = [None] * N_SLOTS

    @property
    def has_copies(self):
        """Whether the call reads some matrix through a copy (made by ``copies``)."""
        return len(self.keep) > 0

    def check_still_writable(self):
        """BNNSError unless every descriptor the call writes may still be written (a reused
        plan's: numpy lets an array be made read-only after it was checked)."""
        cdef Tensor t
        for t in self.writes:
            (<NDArrayDescriptor>t.desc).check_writable(t.field)

    def release_checks(self):
        """Forget the resolved descriptors the checks read (they hold the first call's
        arrays): for a plan kept for move_forward/move_backward, after its checks passed."""
        self.reads, self.writes = [], []

    # ------------------------------------------------------------------ the planner's schedule
    def problem(self, int team):
        """The planner's key (see problem_key), made once per plan and team."""
        key = self.problem_keys.get(team)
        if key is None:
            key = self.problem_keys[team] = self.problem_key(team)
        return key

    def problem_key(self, int team):
        """The key under which the planner keeps what it measured and verified: everything
        the speed and the rounding of a step's recurrent products depend on (its shape, data
        type, team, whether the four recurrent matrices lie as one, full peepholes, a varying
        batch, and how BLAS reads the caller's operands: the recurrent and peephole weights
        and the initial states, each 'N' or 'T', '-' when absent)."""
        cdef int d, k
        cdef Direction *dr = &self.c.layer[0].d[0]
        merged = all(self.c.layer[0].d[d].U4.p != NULL for d in range(self.D))
        weights = (reading(dr.U4) if merged
                   else "".join(reading(dr.g[k].U) for k in range(4)))
        if FULL in self.peepholes:
            weights += " C" + "".join(reading(dr.g[k].C) for k in range(4))
        return (f"{'float32' if self.c.itemsize == 4 else 'float64'} H{self.H} B{self.B} D{self.D} "
                f"team{team}{'' if merged else ' gates-apart'}"
                f"{' full-peephole' if FULL in self.peepholes else ''}"
                f"{' variable-batch' if self.variable_batch else ''}"
                f" U{weights} h0{reading(dr.h0)} c0{reading(dr.c0)}")

    def schedule(self, arrangements, picks=None, step_seconds=None):
        """Run the steps with ``arrangements`` (at most 8 planner.Arrangement or plain (form,
        chunk, by_vectors[, split]) tuples, one split for all: the team shares a whole call
        one way): step s of layer l
        uses arrangements[picks[l * T + s]] (``picks``: bytes of L*T indices; None: the
        first everywhere); ``step_seconds`` (a float64 array of L*T, or None) receives each
        step's wall time."""
        cdef Call *c = &self.c
        cdef int k
        cdef const unsigned char[:] view
        cdef double[::1] seconds
        if not 1 <= len(arrangements) <= 8:
            raise ValueError("schedule: 1 to 8 arrangements")
        for k, arrangement in enumerate(arrangements):
            form, chunk, by_vectors, split = tuple(arrangement) + (0,) * (4 - len(arrangement))
            if (form not in (0, 1, 2, 3, 4, 5, FORM_SPLIT_SUMS) or chunk < 0
                    or by_vectors not in (-1, 0, 1)
                    or split not in (SPLIT_ROWS, SPLIT_DIRECTIONS, SPLIT_SAMPLES,
                                     SPLIT_UNITS, SPLIT_ROWS_SAMPLES)
                    or (k and split != c.arrangement[0].split)):
                raise ValueError(f"schedule: arrangement {k} is not one: {arrangement}")
            c.arrangement[k].form, c.arrangement[k].chunk, c.arrangement[k].by_vectors = (
                form, chunk, by_vectors)
            c.arrangement[k].split = split
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

    def use(self, arrangement):
        """Run every step with one arrangement (a planner.Arrangement or a plain (form, chunk,
        by_vectors, split) tuple), untimed: the planner's choice for an ordinary call
        (schedule() with one arrangement, minus its checks: the planner's are valid)."""
        cdef Call *c = &self.c
        (c.arrangement[0].form, c.arrangement[0].chunk, c.arrangement[0].by_vectors,
         c.arrangement[0].split) = arrangement
        c.pick = NULL
        c.step_seconds = NULL

    # ------------------------------------------------------------------ running
    def run(self, bint backward=False):
        """Run the forward (or the backward) pass: the kernels of the build in use
        (use_kernels), without the GIL, on the bound buffers with the arrangement set."""
        with nogil:
            run_kernels(&self.c, not backward)

    # ------------------------------------------------------------------ the planner's trials
    @property
    def trial_bytes(self):
        """Bytes of the regions buffer a forward trial writes: the cache's layer 0."""
        return trial_bytes(self)

    def trial(self, bint backward, arrangement, regions, scratch, int steps, step_seconds):
        """One trial of the planner's (see run_trial in _trial.pxi)."""
        return run_trial(self, backward, arrangement, regions, scratch, steps, step_seconds)


cdef str reading(Mat m):
    """How BLAS reads ``m``: 'N', 'T', or '-' when absent."""
    cdef char trans
    cdef blas_int ld
    if m.p == NULL or not operand(m, &trans, &ld):
        return "-"
    return "N" if trans == b'N' else "T"


def make_plan(params, *, need_outputs=True, copies=None):
    """Resolve and check ``params`` (a LayerParametersLSTM); return a :class:`Plan`.
    ``copies`` makes the C-contiguous copies of what BLAS cannot address (a workspace's;
    None: numpy's)."""
    cdef Plan plan = Plan()
    plan.copies = copies
    plan.setup(params, need_outputs)
    return plan


include "_gates.pxi"
include "_setup.pxi"
include "_workspace.pxi"
include "_trial.pxi"
include "_reuse.pxi"


# ---------------------------------------------------------------------------------- kernel builds
ctypedef void (*kernels_entry)(Call *c, bint forward) noexcept nogil
cdef kernels_entry run_kernels = NULL   # the entry point (run, _driver.pxi) of the build in use
kernels = None  # the kernel module in use (its blas_time() counts this process's BLAS calls)


def use_kernels(name=None):
    """Run the kernels of one build: ``"portable"``, ``"avx2"`` or ``"avx512"`` (None: the
    best this CPU runs, the default at import); see bnnslstm._kernels.load_build."""
    global run_kernels, kernels
    name, module = load_build(name)
    run_kernels = <kernels_entry><size_t>module.entry_point()
    kernels = module
    return name


use_kernels()
