"""Randomized differential test: bnnslstm against the plain-numpy references, forward and
backward, with every degree of freedom the API allows drawn at once.

Only bnnslstm's public API and the numpy references of tests/ (reference.py,
reference_backward.py, reference_activations.py) are used, so the test stays valid whatever
the kernels become. Each example draws: sizes 1..7, 1..3 layers, one or two directions,
float32 or float64; SNE or NSE separately for x, y, dx and dy; for every other tensor a
layout of docs/layouts.rst (FIRST_MAJOR or LAST_MAJOR, leading extents of 1 left out, row- or
column-major matrices, vectors), the kind of each peephole and of iw_desc[0] (layer 0 or
every layer); strided numpy views (from_array, read-only or not) or raw buffers (bytearray,
memoryview, array.array, bytes, 1-D numpy) with explicit strides in elements, some of them
0 (the default), and sizes of 0 filled from the scalars (and scalars of 0 given by a
descriptor); every optional descriptor present or None; every elementwise activation with
its alpha/beta (or the default activations, with junk in the gates' fields); per-step batch
sizes as integer arrays of every type, lists or integer descriptors; dropout; the training
cache or none, in the forward and in the backward; each gradient None, SET or ACCUMULATE;
flags on descriptors that receive no gradient (which must not matter); the four gates'
weights side by side in one array (as bnnslstm.LSTM stores them); scalars as Python or numpy
integers; n_threads. A second test draws the same with a thread team of 2-4 forced on every
call, on sizes around the team's split grains.

Every descriptor lives in a larger buffer: the gaps around and inside a read view hold NaN
(a read outside the view would show), those of a written view a byte pattern that must
survive the call. Inputs must come back unchanged, and the backward writes nothing of the
forward's parameters.

Examples where a pre-activation lies within the dtype's rounding of a kink of its
activation (where float32 and float64 may legitimately take different sides), or where the
values blow up beyond what the tolerance can follow, are rejected rather than compared.
"""

import array
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, note, settings
from hypothesis import strategies as st

import bnnslstm as bl
from reference import GATES, batch_sizes_from_lengths, lstm_forward
from reference_activations import FUNCTIONS, kinks
from reference_backward import lstm_backward

# the examples draw every activation, all-IDENTITY ones included, on purpose
pytestmark = pytest.mark.filterwarnings("ignore::bnnslstm.IdentityActivationsWarning")

EXAMPLES = 500
F = bl.ActivationFunction
LAYOUT = bl.DataLayout
SET, ACCUMULATE = bl.NDArrayFlags.BACKPROP_SET, bl.NDArrayFlags.BACKPROP_ACCUMULATE
FLOAT_TYPES = {np.dtype(np.float32): bl.DataType.FLOAT32, np.dtype(np.float64): bl.DataType.FLOAT64}
INT_TYPES = {np.dtype(np.int32): bl.DataType.INT32, np.dtype(np.int64): bl.DataType.INT64,
             np.dtype(np.uint32): bl.DataType.UINT32, np.dtype(np.uint64): bl.DataType.UINT64}
TYPECODES = {np.dtype(np.float32): "f", np.dtype(np.float64): "d", np.dtype(np.int32): "i",
             np.dtype(np.int64): "q", np.dtype(np.uint32): "I", np.dtype(np.uint64): "Q"}
#: comparisons: |got - want| <= TOLERANCE * eps(dtype) * (|want| + max |want| of the tensor + 1)
#: + SENSITIVITY * (how far the reference's tensor moves when its inputs move by eps(dtype)):
#: the second term is negligible but where an example is ill-conditioned (unbounded
#: activations over three layers can amplify rounding some 10^4 times)
TOLERANCE = 100
SENSITIVITY = 20
GATE_FIELDS = dict(zip(GATES, ("input_gate", "forget_gate", "candidate_gate", "output_gate")))
ELEMENTWISE = sorted(FUNCTIONS)
PARAMETERS = {  # alpha, beta ranges per function that reads them (None: not read)
    F.LEAKY_RECTIFIED_LINEAR: ((0.0, 0.5), None), F.SCALED_TANH: ((0.5, 2.0), (0.3, 1.5)),
    F.LINEAR: ((-1.5, 1.5), None), F.CLAMP: ((-2.0, -0.1), (0.1, 2.0)),
    F.GELU_APPROXIMATION: ((0.5, 1.0), (0.0, 0.1)), F.HARD_SIGMOID: ((0.1, 0.5), (0.3, 0.7)),
    F.SOFTPLUS: ((0.5, 1.5), (0.5, 2.0)), F.ELU: ((0.2, 1.5), None),
    F.CLAMPED_LEAKY_RECTIFIED_LINEAR: ((0.0, 0.5), (0.5, 3.0)),
    F.LINEAR_WITH_BIAS: ((-1.5, 1.5), (-1.0, 1.0)),
    F.CELU: ((0.3, 2.0), None), F.HARD_SHRINK: ((0.0, 1.0), None),
    F.SOFT_SHRINK: ((0.0, 1.0), None), F.THRESHOLD: ((-1.0, 1.0), (-1.0, 1.0)),
}
# n_threads: mostly 1. On a busy machine (load 4 on 2 cores) an OpenMP team (the kernels' before
# their own pool) and OpenBLAS's threads made tiny calls 20-50x slower (libgomp spins), which
# would make the test's time depend on the machine's load; the other values keep their code
# paths (the two directions on two threads) covered. Calls this small run on one thread anyway
# (bnnslstm._threads.TEAM_MIN_WORK): the team's splits are drawn by the forced-team test below.
THREADS = st.sampled_from([bl.FilterParameters(n_threads=1), bl.FilterParameters(n_threads=1),
                           None, bl.FilterParameters(n_threads=0),
                           bl.FilterParameters(n_threads=2), bl.FilterParameters(n_threads=1)])
SIZES = st.sampled_from([1, 1, 2, 3, 4, 5, 6, 7])  # 1 twice: the edge cases live there
# forced teams: 2-4 threads (more than the cores, too) on sizes around the splits' grains
# (products in slices of 16 rows of D*4H, elementwise passes in shares of 8 units)
TEAM_THREADS = st.sampled_from([bl.FilterParameters(n_threads=2),
                                bl.FilterParameters(n_threads=3),
                                bl.FilterParameters(n_threads=4)])
TEAM_SIZES = st.sampled_from([1, 2, 3, 5, 8, 9, 13, 17])
TEAM_EXAMPLES = 150
ANY_TEAM = st.sampled_from([bl.FilterParameters(n_threads=n) for n in (1, 2, 2, 3, 4)])
#: the hypothesis settings of every test here but the number of examples: the same examples
#: on every run (no database), each failure printed with its blob to reproduce it
SETTINGS = {"deadline": None, "derandomize": True, "database": None, "print_blob": True,
            "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much,
                                      HealthCheck.data_too_large]}
JUNK = [math.nan, math.inf, -7.5, 1e30]  # alpha/beta of a function that must not read them
MARGIN = 10_000  # near a kink: within this many eps of it (relative to the layer's values)
LIMIT = 1e3  # larger values in the reference's trace: the example is rejected


# --------------------------------------------------------------------------- layouts
def axis_orders(layout, rank):
    """(logical axes in ``size`` order, logical axes in ``stride`` order), read off the
    index mapping of docs/layouts.rst; logical axes are the C-order indices of the layout."""
    if rank == 1 or layout == LAYOUT.COLUMN_MAJOR_MATRIX:
        return list(range(rank)), list(range(rank))
    reverse = list(reversed(range(rank)))
    if layout.name.startswith("FIRST_MAJOR"):
        return list(range(rank)), reverse
    return reverse, reverse  # ROW_MAJOR_MATRIX, SNE, NSE, LAST_MAJOR_nD


def layouts_of_rank(rank, matrix=True):
    if rank == 1:
        return [LAYOUT.VECTOR, LAYOUT.FIRST_MAJOR_1D, LAYOUT.LAST_MAJOR_1D]
    tensors = [LAYOUT[f"FIRST_MAJOR_{rank}D"], LAYOUT[f"LAST_MAJOR_{rank}D"]]
    if rank == 2 and matrix:
        return tensors + [LAYOUT.ROW_MAJOR_MATRIX, LAYOUT.COLUMN_MAJOR_MATRIX]
    return tensors


class Choices:
    """The small choices of one descriptor's representation (layout among those its shape
    allows, strides, buffer type, zero sizes...), from one drawn integer: 0, where hypothesis
    shrinks to, is the plainest (every first option: from_array on a contiguous array,
    sizes written out); any other value seeds a generator for all of them. One draw per
    descriptor instead of a dozen keeps hundreds of examples within a minute."""

    def __init__(self, draw, label):
        seed = draw(st.integers(0, 2**32 - 1), label=label)
        self.random = None if seed == 0 else np.random.default_rng(seed)

    def boolean(self, p=0.5):
        return False if self.random is None else bool(self.random.random() < p)

    def pick(self, options):
        if self.random is None:
            return options[0]
        return options[int(self.random.integers(len(options)))]

    def integer(self, low, high):
        return low if self.random is None else int(self.random.integers(low, high + 1))

    def permutation(self, n):
        if self.random is None:
            return list(range(n))
        return [int(k) for k in self.random.permutation(n)]


def choose_form(choices, shape, ranks=None):
    """A layout for a tensor of logical shape ``shape``: its full rank, or fewer dimensions
    when the leading extents are 1 (docs/layouts.rst). ``ranks`` limits the ranks
    (the kind of a peephole or of iw_desc[0] is its rank)."""
    possible = [len(shape)]
    for drop in range(1, len(shape)):
        if all(n == 1 for n in shape[:drop]):
            possible.append(len(shape) - drop)
    if ranks is not None:
        possible = [r for r in possible if r in ranks]
    rank = choices.pick(possible)
    return choices.pick(layouts_of_rank(rank)), tuple(shape[len(shape) - rank:])


class Placed:
    """A descriptor on a buffer larger than its view, and what is needed to check the buffer.

    ``view`` is the logical (C-order) numpy view of the descriptor's elements; ``raw`` the
    whole buffer as bytes; ``inside`` marks the bytes of the view.
    """

    def __init__(self, name, desc, raw, view, inside):
        self.name, self.desc, self.raw, self.view, self.inside = name, desc, raw, view, inside
        self.snapshot()

    def snapshot(self):
        self.before = self.raw.copy()
        self.view_before = np.array(self.view, dtype=np.float64)

    def assert_unchanged(self, what):
        np.testing.assert_array_equal(self.raw, self.before, err_msg=f"{self.name}: {what}")

    def assert_outside_unchanged(self):
        changed = np.flatnonzero((self.raw != self.before) & ~self.inside)
        assert changed.size == 0, \
            f"{self.name}: bytes {changed[:8].tolist()} outside the view were written"


def place(choices, name, values, layout, dtype, *, written=False, flags=None, rng=None):
    """Put ``values`` (the layout's logical C-order array) in a fresh buffer and describe it.

    Read views get NaN in every gap; written ones a byte pattern, and NaN (SET) or random
    numbers (ACCUMULATE) inside, which the caller reads back from ``view_before``. ``flags``
    None: a descriptor that receives no gradient, whose flags must not matter.
    """
    gradient = flags is not None
    if not gradient:
        flags = choices.pick([SET, ACCUMULATE])
    dtype = np.dtype(dtype)
    shape = values.shape
    rank = len(shape)
    size_axes, stride_axes = axis_orders(layout, rank)
    # memory strides (in elements) per logical axis: the layout's default, or a permutation
    # of the axes with padding (transposed, padded, every-other-row views)
    if not choices.boolean(0.6):
        order = stride_axes
        padding = [0] * rank
    else:
        order = choices.permutation(rank)
        padding = [choices.pick([0, 0, 1, 3]) for _ in range(rank)]
    strides = [0] * rank
    step = 1
    for axis, pad in zip(order, padding):
        strides[axis] = step
        step = step * shape[axis] + pad
    for axis in range(rank):  # an axis of extent 1 may carry any stride: it is never stepped
        if shape[axis] == 1 and choices.boolean(0.2):
            strides[axis] = choices.pick([0, 5, 1000])
    span = 1 + sum((n - 1) * s for n, s in zip(shape, strides))
    tail = choices.integer(0, 3)
    kind = choices.pick(["numpy", "numpy", "bytearray", "memoryview", "array", "flat"]
                        + ([] if written else ["bytes", "numpy-read-only"]))
    offset = choices.integer(0, 3) if kind.startswith("numpy") else 0
    count = offset + span + tail
    gap = np.nan if dtype.kind == "f" else 99
    data_type = FLOAT_TYPES.get(dtype) or INT_TYPES[dtype]

    extra_bytes = choices.integer(0, 3) if kind in ("bytearray", "memoryview") else 0
    storage = bytearray(count * dtype.itemsize + extra_bytes)
    typed = np.frombuffer(storage, dtype, count=count)
    typed[:] = gap
    if written:
        storage[:] = b"\xab" * len(storage)
    byte_strides = [s * dtype.itemsize for s in strides]
    view = np.lib.stride_tricks.as_strided(typed[offset:], shape, byte_strides)
    if not written:
        view[...] = values
    elif gradient and flags == ACCUMULATE:
        view[...] = rng.uniform(-1, 1, shape)
    else:
        view[...] = np.nan
    inside = np.zeros(len(storage), bool)
    marks = np.zeros(count * dtype.itemsize, bool)
    np.lib.stride_tricks.as_strided(marks[offset * dtype.itemsize:], shape + (dtype.itemsize,),
                                    [s * dtype.itemsize for s in strides] + [1])[...] = True
    inside[:marks.size] = marks

    if kind.startswith("numpy"):
        base = np.frombuffer(storage, dtype, count=count).copy()
        raw = base.view(np.uint8)
        logical = np.lib.stride_tricks.as_strided(base[offset:], shape, byte_strides)
        if kind == "numpy-read-only":
            logical = logical.view()
            logical.flags.writeable = False
        desc = bl.NDArrayDescriptor.from_array(logical, layout, flags=flags)
        assert desc.data_type == data_type
        size, stride = list(desc.size), list(desc.stride)
    else:
        size = [shape[axis] for axis in size_axes]
        stride = [strides[axis] for axis in stride_axes]
        if kind == "bytes":
            buffer = bytes(storage)
        elif kind == "memoryview":
            buffer = memoryview(storage)
        elif kind == "array":
            buffer = array.array(TYPECODES[dtype])
            assert buffer.itemsize == dtype.itemsize
            buffer.frombytes(bytes(storage))
        elif kind == "flat":
            buffer = np.frombuffer(storage, dtype, count=count).copy()
        else:
            buffer = storage
        raw = np.frombuffer(buffer, np.uint8)
        logical = np.lib.stride_tricks.as_strided(np.frombuffer(buffer, dtype, count=count), shape,
                                                  [s * dtype.itemsize for s in strides])
        desc = bl.NDArrayDescriptor(buffer, layout, tuple(size), tuple(stride), data_type, flags)
        # a stride equal to the contiguous default may be given as 0
        extents = [shape[axis] for axis in stride_axes]
        given = list(stride)
        for k in range(rank):
            default = 1 if k == 0 else stride[k - 1] * extents[k - 1]
            if stride[k] == default and choices.boolean():
                given[k] = 0
        desc.stride = tuple(given)
    # a zero size is taken from the parameters' scalars
    size = [0 if choices.boolean(0.25) else n for n in size]
    desc.size = tuple(size)
    if choices.boolean(0.25):  # trailing zeros may be left out: missing entries are 0
        desc.size = tuple(np.trim_zeros(np.array(desc.size, dtype=np.int64), "b").tolist())
        desc.stride = tuple(np.trim_zeros(np.array(desc.stride, dtype=np.int64), "b").tolist())
    placed = Placed(name, desc, raw, logical, inside)
    placed.gives = {axis: n for axis, n in zip(size_axes, size) if n}  # logical axes a size states
    return placed


# --------------------------------------------------------------------------- the example
def draw_activation(draw):
    fn = draw(st.sampled_from(ELEMENTWISE))
    ranges = PARAMETERS.get(F(fn), (None, None))
    values = []
    for bounds in ranges:
        if bounds is None:
            values.append(draw(st.sampled_from(JUNK)))
        else:
            values.append(draw(st.floats(*bounds, allow_nan=False, allow_infinity=False)))
    return fn, values[0], values[1]


def reference_activation(fn, alpha, beta):
    """What the reference needs: parameters a function does not read are irrelevant."""
    ranges = PARAMETERS.get(F(fn), (None, None))
    return (fn, alpha if ranges[0] else math.nan, beta if ranges[1] else math.nan)


def sequence_values(draw, rng, batch_sizes, T):
    """The per-step batch sizes in one of the forms the docs accept."""
    kind = draw(st.sampled_from(["list", "array", "descriptor"]))
    if kind == "list":
        return list(batch_sizes), None
    dtype = np.dtype(draw(st.sampled_from([np.int32, np.int64, np.uint32, np.uint64])))
    values = np.asarray(batch_sizes, dtype)
    if kind == "array":
        step = draw(st.sampled_from([1, 2]))
        holder = np.full(T * step, 99, dtype)
        holder[::step] = values
        return holder[::step], None
    choices = Choices(draw, "sequence_descriptor")
    placed = place(choices, "sequence_descriptor", values, choices.pick(layouts_of_rank(1)), dtype,
                   rng=rng)
    return placed.desc, placed


def check_close(name, got, want, dtype, jiggled):
    """``got`` against the reference's ``want``; ``jiggled`` is the reference's value for
    inputs moved by eps(dtype), which measures how well-conditioned the example is."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (name, got.shape, want.shape)
    jiggled = np.asarray(jiggled, dtype=np.float64)
    if not (np.all(np.isfinite(want)) and np.all(np.isfinite(jiggled))):
        # the reference (or its value for inputs moved by eps) overflowed: no bound follows
        event("rejected: a reference beyond the tolerance's reach")
        assume(False)
    eps = np.finfo(dtype).eps
    scale = np.max(np.abs(want), initial=0.0) + 1
    moved = np.max(np.abs(jiggled - want), initial=0.0)
    bound = TOLERANCE * eps * (np.abs(want) + scale) + SENSITIVITY * moved
    bad = ~(np.abs(got - want) <= bound)
    if np.any(bad):
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(f"{name}{list(index)}: got {got[index]!r}, want {want[index]!r} "
                             f"({int(bad.sum())} of {bad.size} differ; "
                             f"tolerance {bound[index]:.3g})")


def near_kinks(trace, activations, lengths, L, D, dtype):
    """Whether a pre-activation lies within rounding of a kink without sitting on it: within
    MARGIN * eps(dtype) * (1 + the largest pre-activation of its layer)."""
    T = trace[0, 0]["c"].shape[0]
    active = np.array([[t < n for n in lengths] for t in range(T)])
    for layer in range(L):
        for d in range(D):
            record = trace[layer, d]
            points = {gate: record["gates_pre"][:, :, k][active] for k, gate in enumerate(GATES)}
            points["hidden"] = record["c"][active]
            for name, values in points.items():
                margin = MARGIN * np.finfo(dtype).eps * (1 + np.max(np.abs(values), initial=0.0))
                for kink in kinks(*activations[name]):
                    distance = np.abs(values - kink)
                    if np.any((distance > 0) & (distance < margin)):
                        return True
    return False


@settings(max_examples=EXAMPLES, **SETTINGS)
@given(st.data())
def test_forward_and_backward_agree_with_the_reference(data):
    check_example(data, SIZES, THREADS)


@settings(max_examples=TEAM_EXAMPLES, **SETTINGS)
@given(st.data())
def test_every_split_of_a_forced_team_agrees_with_the_reference(data):
    """The same examples with a thread team on every call, however small (its GEMM slices
    and elementwise shares empty, partial or whole; a thread with no share still meets
    every barrier)."""
    from bnnslstm import _threads

    saved = _threads.TEAM_MIN_WORK, _threads.FRAME_MIN_WORK
    _threads.TEAM_MIN_WORK = _threads.FRAME_MIN_WORK = 1
    try:
        check_example(data, TEAM_SIZES, TEAM_THREADS)
    finally:
        _threads.TEAM_MIN_WORK, _threads.FRAME_MIN_WORK = saved


ARRANGEMENT_EXAMPLES = 150


@settings(max_examples=ARRANGEMENT_EXAMPLES, **SETTINGS)
@given(st.data())
def test_every_schedule_of_arrangements_agrees_with_the_reference(data):
    """The same examples with the step products in BLAS arrangements drawn per step (the
    planner's candidates, mixed within a call: a step whose successor reads the
    batch-fastest state copy writes it), row and column chunks down to one, the backward's
    sums whole or split, each way a team shares the steps (a thread team of 1-4, as THREADS
    draws), and the steps timed or not."""
    from bnnslstm import planner

    chunks, by_vectors = st.sampled_from([0, 1, 3, 16]), st.sampled_from([-1, 0, 1])
    # how the team shares the steps (planner.SPLITS: rows, directions, samples, units, rows
    # and samples): one way per call
    every_split = range(len(planner.SPLITS))
    splits = {False: data.draw(st.sampled_from(every_split), label="forward split"),
              True: data.draw(st.sampled_from(every_split), label="backward split")}
    # each pass's forms (planner.PASS_FORMS): the backward's one sum over U's rows, or split
    # in calls of `chunk` rows (SPLIT_SUMS)
    forms = st.tuples(st.sampled_from(planner.PASS_FORMS["forward"]), chunks, by_vectors,
                      st.just(splits[False]))
    backs = st.tuples(st.sampled_from(planner.PASS_FORMS["backward"]), chunks, by_vectors,
                      st.just(splits[True]))
    arrangements = {
        False: data.draw(st.lists(forms, min_size=1, max_size=8), label="forward arrangements"),
        True: data.draw(st.lists(backs, min_size=1, max_size=8), label="backward arrangements")}
    timed = data.draw(st.booleans(), label="steps timed")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="schedule seed"))

    def schedule(plan, team, backward=False, workspace=None):
        chosen = arrangements[backward]
        picks = rng.integers(0, len(chosen), plan.L * plan.T).astype(np.uint8).tobytes()
        plan.schedule(chosen, picks, np.zeros(plan.L * plan.T) if timed else None)

    from bnnslstm import _threads

    saved = planner.arrange, _threads.TEAM_MIN_WORK, _threads.FRAME_MIN_WORK
    planner.arrange = schedule
    _threads.TEAM_MIN_WORK = _threads.FRAME_MIN_WORK = 1   # a team on every call
    try:
        check_example(data, TEAM_SIZES, ANY_TEAM)
    finally:
        planner.arrange, _threads.TEAM_MIN_WORK, _threads.FRAME_MIN_WORK = saved


def check_example(data, sizes, threads):
    draw = data.draw
    dtype = np.dtype(draw(st.sampled_from([np.float32, np.float64]), label="dtype"))
    L = draw(st.sampled_from([1, 1, 2, 3]), label="L")
    D = draw(st.sampled_from([1, 2]), label="D")
    H, T, B = (draw(sizes, label=name) for name in ("H", "T", "B"))
    covering = draw(st.booleans(), label="iw_desc[0] covers every layer")
    I = D * H if covering else draw(sizes, label="I")
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([0.3, 0.6]), label="weight scale")

    def cast(a):  # the values the call sees
        return np.asarray(a).astype(dtype).astype(np.float64)

    def uniform(*shape):
        return cast(rng.uniform(-scale, scale, shape))

    # ---- the problem, as the references see it
    default = draw(st.booleans(), label="DEFAULT_ACTIVATIONS")
    drawn = {name: draw_activation(draw) for name in GATES + ("hidden",)}
    activations = None if default else {name: reference_activation(*drawn[name]) for name in drawn}
    peephole = {g: draw(st.sampled_from([None, "diagonal", "full"])) for g in GATES}
    bias = {g: draw(st.booleans()) for g in GATES}
    weights = {"W": {g: [uniform(D, H, I if l == 0 else D * H) for l in range(L)] for g in GATES},
               "U": {g: uniform(L, D, H, H) for g in GATES},
               "C": {g: {None: None, "diagonal": (L, D, H), "full": (L, D, H, H)}[peephole[g]]
                     for g in GATES},
               "b": {g: uniform(L, D, H) if bias[g] else None for g in GATES}}
    weights["C"] = {g: None if shape is None else uniform(*shape)
                    for g, shape in weights["C"].items()}
    x = cast(rng.standard_normal((T, B, I)))
    h0 = cast(rng.standard_normal((L, D, B, H))) if draw(st.booleans(), label="h0") else None
    c0 = cast(rng.standard_normal((L, D, B, H))) if draw(st.booleans(), label="c0") else None
    if draw(st.booleans(), label="per-step batch sizes"):
        lengths = sorted((draw(st.integers(1, T)) for _ in range(B)), reverse=True)
        lengths[0] = T
    else:
        lengths = [T] * B
    batch_sizes = batch_sizes_from_lengths(lengths, T)
    dropout = draw(st.sampled_from([0.0, 0.25, 0.6]), label="dropout")  # with L = 1: no dropout
    dropout_seed = draw(st.integers(0, 2**64 - 1), label="dropout_seed")
    masks = None
    if dropout and L > 1:
        masks = [None]
        for layer in range(1, L):
            mask = np.empty((T, B, D * H), dtype)
            bl.dropout_mask(dropout_seed, layer, dropout, mask)
            masks.append(mask.astype(np.float64))
    with np.errstate(over="ignore", invalid="ignore"):  # blown-up examples are rejected below
        y_ref, h_ref, c_ref, trace = lstm_forward(x, weights, h0, c0, batch_sizes, masks,
                                                  activations, D == 2)
    # the same problem with every input moved by eps(dtype): the example's conditioning
    jiggle_rng = np.random.default_rng([seed, 1])

    def jiggle(a):
        if a is None or isinstance(a, list):
            return a if a is None else [jiggle(v) for v in a]
        return a * (1 + np.finfo(dtype).eps * jiggle_rng.uniform(-1, 1, np.shape(a)))

    jiggled = {"x": jiggle(x), "h0": jiggle(h0), "c0": jiggle(c0),
               "weights": {part: {g: jiggle(v) for g, v in values.items()}
                           for part, values in weights.items()}}
    with np.errstate(over="ignore", invalid="ignore"):
        y_jig, h_jig, c_jig, _ = lstm_forward(jiggled["x"], jiggled["weights"], jiggled["h0"],
                                              jiggled["c0"], batch_sizes, masks, activations,
                                              D == 2)
    # np.max, not max(): a NaN (an overflowed layer) must reach the isfinite test below,
    # where Python's max() keeps whichever came first of a number and a NaN
    magnitude = np.max([np.max(np.abs(trace[l, d][part]))
                        for l in range(L) for d in range(D) for part in ("c", "h")])
    event(f"{dtype.name}")
    if not np.isfinite(magnitude) or magnitude > LIMIT:
        event("rejected: values beyond the tolerance's reach")
        assume(False)
    if activations is not None and near_kinks(trace, activations, lengths, L, D, dtype):
        event("rejected: a pre-activation within rounding of a kink")
        assume(False)

    # ---- the forward's descriptors
    placed = {}  # every descriptor of layer_params, by field

    def put(field, values, shape_names, *, ranks=None, written=False, layout=None, shape=None):
        choices = Choices(draw, field)
        if layout is None:
            layout, shape = choose_form(choices, values.shape, ranks)
        placed[field] = p = place(choices, field, np.reshape(values, shape), layout, dtype,
                                  written=written, rng=rng)
        p.names = dict(zip(range(len(shape)), shape_names[len(shape_names) - len(shape):]))
        return p.desc

    def sequence(field, values_tbx, written=False):
        layout = draw(st.sampled_from([LAYOUT.SNE, LAYOUT.NSE]), label=f"{field} layout")
        logical = values_tbx if layout == LAYOUT.SNE else values_tbx.transpose(1, 0, 2)
        names = ("T", "B", None) if layout == LAYOUT.SNE else ("B", "T", None)
        names = names[:2] + (("I",) if field.endswith("input_descriptor.data_desc") else (None,))
        desc = put(field, logical, names, written=written, layout=layout, shape=logical.shape)
        return desc, layout

    state = ("L", "D", "B", "H")
    x_desc, _x_layout = sequence("input_descriptor.data_desc", x)
    inputs = bl.LSTMDataDescriptor(
        x_desc,
        None if h0 is None else put("input_descriptor.hidden_desc", h0, state),
        None if c0 is None else put("input_descriptor.cell_state_desc", c0, state))
    outputs = bl.LSTMDataDescriptor()
    y_layout = None
    if draw(st.booleans(), label="y"):
        outputs.data_desc, y_layout = sequence("output_descriptor.data_desc",
                                               np.zeros((T, B, D * H)), written=True)
    for field, wanted in (("hidden_desc", "h_n"), ("cell_state_desc", "c_n")):
        if draw(st.booleans(), label=wanted):
            setattr(outputs, field, put(f"output_descriptor.{field}", np.zeros((L, D, B, H)), state,
                                        written=True))

    def put_stacked(key, arrays, axis):
        """The four gates side by side in one array, gate axis ``axis`` (as bnnslstm.LSTM
        stores them, which lets the library use them in place): one descriptor per gate."""
        stacked = np.stack(arrays, axis=axis)
        choices = Choices(draw, f"stacked {key}")
        offset = choices.integer(0, 3)
        base = np.full(offset + stacked.size + choices.integer(0, 3), np.nan, dtype)
        view = base[offset:offset + stacked.size].reshape(stacked.shape)
        view[...] = stacked
        inside = np.zeros(base.nbytes, bool)
        inside[offset * dtype.itemsize:(offset + stacked.size) * dtype.itemsize] = True
        placed[f"stacked {key}"] = p = Placed(f"stacked {key}", None, base.view(np.uint8), view,
                                              inside)
        p.names, p.gives = {}, {}
        descs = []
        for k in range(4):
            gate_view = view[(slice(None),) * axis + (k,)]
            layout = choices.pick([LAYOUT[f"FIRST_MAJOR_{gate_view.ndim}D"],
                                   LAYOUT[f"LAST_MAJOR_{gate_view.ndim}D"]])
            desc = bl.NDArrayDescriptor.from_array(gate_view, layout)
            desc.size = tuple(0 if choices.boolean(0.25) else n for n in desc.size)
            descs.append(desc)
        return descs

    stacked = {}
    if draw(st.booleans(), label="gates stacked in one array"):
        stacked["hw_desc"] = put_stacked("hw_desc", [weights["U"][g] for g in GATES], 2)
        stacked["iw_desc[0]"] = put_stacked("iw_desc[0]", [weights["W"][g][0] for g in GATES], 1)
        if L > 1:
            stacked["iw_desc[1]"] = put_stacked("iw_desc[1]",
                                                [np.stack(weights["W"][g][1:]) for g in GATES], 2)
        if all(bias.values()):
            stacked["b_desc"] = put_stacked("b_desc", [weights["b"][g] for g in GATES], 2)
        if len(set(peephole.values())) == 1 and peephole["input"] is not None:
            stacked["cw_desc"] = put_stacked("cw_desc", [weights["C"][g] for g in GATES], 2)

    gate_descs = {}
    for k, g in enumerate(GATES):
        field = GATE_FIELDS[g]
        W = weights["W"][g]
        if "iw_desc[0]" in stacked:
            first = stacked["iw_desc[0]"][k]
            rest = stacked["iw_desc[1]"][k] if L > 1 else None
        elif covering and draw(st.booleans()):  # rank 4: every layer
            first = put(f"{field}.iw_desc[0]", np.stack(W), ("L", "D", "H", "I"), ranks=[4])
            rest = draw(st.sampled_from([None, first]))
        else:
            first = put(f"{field}.iw_desc[0]", W[0], ("D", "H", "I"), ranks=[1, 2, 3])
            if L > 1:
                rest = put(f"{field}.iw_desc[1]", np.stack(W[1:]), ("L-1", "D", "H", None))
            else:
                rest = draw(st.sampled_from([None, first]))
        C = weights["C"][g]
        cw = None if C is None else stacked["cw_desc"][k] if "cw_desc" in stacked else \
            put(f"{field}.cw_desc", C, state[:2] + ("H", "H")[:C.ndim - 2],
                ranks=[1, 3] if peephole[g] == "diagonal" else [2, 4])
        b = None if bias[g] is False else stacked["b_desc"][k] if "b_desc" in stacked else \
            put(f"{field}.b_desc", weights["b"][g], ("L", "D", "H"))
        hw = stacked["hw_desc"][k] if "hw_desc" in stacked else \
            put(f"{field}.hw_desc", weights["U"][g], state[:2] + ("H", "H"))
        function, alpha, beta = drawn[g]
        if default:  # ignored: even a function the LSTM refuses
            function = draw(st.sampled_from([function, int(F.SOFTMAX), int(F.GUMBEL)]))
        gate_descs[field] = bl.LSTMGateDescriptor(iw_desc=(first, rest), hw_desc=hw, cw_desc=cw,
                                                  b_desc=b,
                                                  activation=bl.Activation(function, alpha, beta))
    if lengths == [T] * B and draw(st.booleans()):
        sequence_descriptor, sequence_placed = None, None
    else:
        sequence_descriptor, sequence_placed = sequence_values(draw, rng, batch_sizes, T)
    if sequence_placed is not None:
        placed["sequence_descriptor"] = sequence_placed
    flags = ((bl.LayerFlags.BIDIRECTIONAL if D == 2 else 0)
             | (bl.LayerFlags.DEFAULT_ACTIVATIONS if default else 0))
    integer = draw(st.sampled_from([int, np.int64, np.uint32]), label="type of the scalars")
    sizes = {"input_size": I, "hidden_size": H, "batch_size": B, "num_layers": L, "seq_len": T}
    scalars = {name: integer(value) for name, value in sizes.items()}
    # a scalar may be 0 when x, a state or a gate's hw_desc states it
    stated = set()
    for field, p in placed.items():
        if field == "input_descriptor.data_desc" or field.endswith(
                ("hidden_desc", "cell_state_desc", "hw_desc")):
            stated |= {p.names[axis] for axis in p.gives if p.names.get(axis)}
    symbols = {"input_size": "I", "hidden_size": "H", "batch_size": "B", "num_layers": "L",
               "seq_len": "T"}
    for name, symbol in symbols.items():
        if symbol in stated and draw(st.integers(0, 2)) == 0:
            scalars[name] = integer(0)
    params = bl.LayerParametersLSTM(
        **scalars, dropout=dropout, dropout_seed=dropout_seed, lstm_flags=flags,
        sequence_descriptor=sequence_descriptor, input_descriptor=inputs, output_descriptor=outputs,
        hidden_activation=bl.Activation(*drawn["hidden"]) if not default else
        bl.Activation(draw(st.sampled_from([drawn["hidden"][0], int(F.SOFTMAX)]))), **gate_descs)
    note(f"dtype={dtype.name} T={T} B={B} I={I} H={H} L={L} D={D} lengths={lengths} "
         f"dropout={dropout} activations={activations} peephole={peephole} bias={bias} "
         f"scalars={scalars}")
    note("descriptors: " + "; ".join(f"{f}: {p.desc!r}" for f, p in placed.items()))

    # ---- forward
    forward_cache = None
    if draw(st.booleans(), label="forward with a cache"):
        capacity = bl.compute_lstm_training_cache_capacity(params)
        extra = draw(st.integers(0, 64))
        forward_cache = draw(st.sampled_from(["bytearray", "numpy", "memoryview"]))
        storage = bytearray(b"\xcd" * (capacity + extra))
        forward_cache = {"bytearray": storage, "memoryview": memoryview(storage),
                         "numpy": np.frombuffer(storage, np.uint8)}[forward_cache]
        cache_raw = np.frombuffer(storage, np.uint8)
    forward_filter = draw(threads, label="forward filter_params")
    bl.direct_apply_lstm_batch_training_caching(params, forward_filter,
                                                training_cache=forward_cache)
    if forward_cache is not None:
        assert np.all(cache_raw[capacity:] == 0xCD), "training_cache: written beyond its capacity"

    written_forward = {"output_descriptor.data_desc": (y_ref, y_jig),
                       "output_descriptor.hidden_desc": (h_ref, h_jig),
                       "output_descriptor.cell_state_desc": (c_ref, c_jig)}
    for field, p in placed.items():
        if field in written_forward:
            want, moved = written_forward[field]
            got = p.view
            if field.endswith("data_desc") and y_layout == LAYOUT.NSE:
                got = p.view.transpose(1, 0, 2)
            check_close(field, np.reshape(got, want.shape), want, dtype, moved)
            p.assert_outside_unchanged()
        else:
            p.assert_unchanged("the forward wrote an input")
        p.snapshot()

    # ---- backward
    dy = cast(rng.standard_normal((T, B, D * H))) if draw(st.booleans(), label="dy") else None
    if dy is not None:
        for b, n in enumerate(lengths):
            dy[n:, b] = 1e3  # padded positions: must be ignored
    dh_n = cast(rng.standard_normal((L, D, B, H))) if draw(st.booleans(), label="dh_n") else None
    dc_n = cast(rng.standard_normal((L, D, B, H))) if draw(st.booleans(), label="dc_n") else None
    grads = lstm_backward(x, weights, h0, c0, batch_sizes, masks, activations, D == 2, dy, dh_n,
                          dc_n)
    grads_jig = lstm_backward(jiggled["x"], jiggled["weights"], jiggled["h0"], jiggled["c0"],
                              batch_sizes, masks, activations, D == 2, jiggle(dy), jiggle(dh_n),
                              jiggle(dc_n))

    delta_placed = {}  # written field -> (Placed, the function that picks its gradient)
    forward_placed = placed
    placed = {}

    def gradient(field, select, ranks=None, layout=None, shape=None):
        """A written gradient descriptor; ``select`` picks its value from a gradients dict."""
        want = select(grads)
        flags_k = draw(st.sampled_from([SET, ACCUMULATE]), label=f"{field} flags")
        choices = Choices(draw, field)
        if layout is None:
            layout, shape = choose_form(choices, want.shape, ranks)
        p = place(choices, field, np.zeros(shape), layout, dtype, written=True, flags=flags_k,
                  rng=rng)
        delta_placed[field] = (p, select)
        return p.desc

    def maybe(label):
        return draw(st.booleans(), label=label)

    delta = bl.LayerParametersLSTM(
        **{name: draw(st.sampled_from([0, value])) for name, value in sizes.items()},
        lstm_flags=flags)
    dx_layout = None
    if maybe("dx"):
        dx_layout = draw(st.sampled_from([LAYOUT.SNE, LAYOUT.NSE]))

        def select(g, sne=dx_layout == LAYOUT.SNE):
            return g["dx"] if sne else g["dx"].transpose(1, 0, 2)

        delta.input_descriptor.data_desc = gradient("input_descriptor.data_desc", select,
                                                    layout=dx_layout, shape=select(grads).shape)
    if maybe("dh0"):
        delta.input_descriptor.hidden_desc = gradient("input_descriptor.hidden_desc",
                                                      lambda g: g["dh0"])
    if maybe("dc0"):
        delta.input_descriptor.cell_state_desc = gradient("input_descriptor.cell_state_desc",
                                                          lambda g: g["dc0"])
    if dy is not None:
        layout = draw(st.sampled_from([LAYOUT.SNE, LAYOUT.NSE]), label="dy layout")
        logical = dy if layout == LAYOUT.SNE else dy.transpose(1, 0, 2)
        placed["dy"] = place(Choices(draw, "dy"), "output_descriptor.data_desc", logical, layout,
                             dtype, rng=rng)
        delta.output_descriptor.data_desc = placed["dy"].desc
    for field, value in (("hidden_desc", dh_n), ("cell_state_desc", dc_n)):
        if value is not None:
            choices = Choices(draw, field)
            layout, shape = choose_form(choices, value.shape)
            placed[field] = place(choices, f"output_descriptor.{field}", value.reshape(shape),
                                  layout, dtype, rng=rng)
            setattr(delta.output_descriptor, field, placed[field].desc)
    for g in GATES:
        field = "layer_delta_params." + GATE_FIELDS[g]
        gate = bl.LSTMGateDescriptor()
        form = draw(st.sampled_from(["every layer", "per part"] if covering else ["per part"]))
        if form == "every layer":
            first = gradient(f"{field}.iw_desc[0]", lambda d, g=g: np.stack(d["dW"][g]),
                             ranks=[4]) if maybe("dW") else None
            gate.iw_desc = [first, draw(st.sampled_from([None, first]))]
        else:
            first = gradient(f"{field}.iw_desc[0]", lambda d, g=g: d["dW"][g][0], ranks=[1, 2, 3]) \
                if maybe("dW0") else None
            rest = gradient(f"{field}.iw_desc[1]", lambda d, g=g: np.stack(d["dW"][g][1:])) \
                if L > 1 and maybe("dW1") else None
            gate.iw_desc = [first, rest]
        if maybe("dU"):
            gate.hw_desc = gradient(f"{field}.hw_desc", lambda d, g=g: d["dU"][g])
        if peephole[g] is not None and maybe("dC"):
            gate.cw_desc = gradient(f"{field}.cw_desc", lambda d, g=g: d["dC"][g],
                                    ranks=[1, 3] if peephole[g] == "diagonal" else [2, 4])
        if bias[g] and maybe("db"):
            gate.b_desc = gradient(f"{field}.b_desc", lambda d, g=g: d["db"][g])
        setattr(delta, GATE_FIELDS[g], gate)

    backward_cache = None
    if forward_cache is not None and maybe("backward with the cache"):
        backward_cache = forward_cache
    note("delta: " + "; ".join(f"{f}: {p.desc!r}" for f, (p, _) in delta_placed.items()))
    backward_filter = draw(threads, label="backward filter_params")
    bl.direct_apply_lstm_batch_backward(params, delta, backward_filter,
                                        training_cache=backward_cache)

    for field, (p, select) in delta_placed.items():
        want = select(grads)
        got = np.reshape(p.view, want.shape)
        if p.desc.flags == ACCUMULATE:
            got = got - np.reshape(p.view_before, want.shape)  # what was added
        check_close(field, got, want, dtype, select(grads_jig))
        p.assert_outside_unchanged()
    for p in list(placed.values()) + list(forward_placed.values()):
        p.assert_unchanged("the backward wrote a descriptor it only reads")
