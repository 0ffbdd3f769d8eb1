"""The planner: which arrangement of BLAS calls runs each time step's recurrent products.

Every arrangement computes the same products (every FLOP still goes through BLAS); they
differ in how the work is handed to BLAS, and which one is fastest depends on the CPU and
the BLAS build (OpenBLAS's small-matrix kernels exist on some of its CPU targets and not
on others; Accelerate and OpenBLAS on ARM pack operands differently). So the library
measures where it runs, as FFTW's planner does. A call's result never depends on when it
is made: the same call gives the same bits from its first call on, while the planner
tunes, under concurrent calls and across processes.

* ``"measure"`` (the default): the first call of each distinct problem (data type, hidden
  size, batch, directions, thread team, how the weights and states lie) first runs a
  *trial*: one layer of the call, a few steps, once with the canonical arrangement
  (:func:`canonical`: a fixed rule of the problem and the BLAS) and once with each
  candidate, on the planner's own buffers (never the caller's), timing every step. A
  candidate whose results differ from the canonical arrangement's in any bit is dropped; the
  fastest of the others runs the call and every later call of the problem. Results are the
  canonical arrangement's, bit for bit, in every call and every process.
* ``"heuristic"``: no trial; the canonical arrangement always (what measure mode gives,
  without its first call's trial). Chosen with :func:`set_mode` or the environment variable
  ``BNNSLSTM_PLANNER=heuristic``.
* ``"fastest"`` (opt-in, as cuDNN's benchmark flag): as measure, but a candidate is kept
  even when its rounding differs, so the fastest of all runs. A process then gives the same
  bits from its first call on, but two processes (or a :func:`forget`) may choose
  differently and round differently (to float rounding).

:func:`export_wisdom` gives what was chosen as a small JSON text, :func:`import_wisdom`
brings it back (in another process, on the same machine), so that production runs skip the
trials' timing: in measure mode an imported arrangement is still checked bit for bit
against the canonical one on its first call (one short trial, untimed), and replaced by
the canonical arrangement if it differs.
"""

import json
import os
import threading
import time
from typing import NamedTuple

import numpy as np

from ._plan import same_bytes

__all__ = ["mode", "set_mode", "decisions", "forget", "export_wisdom", "import_wisdom",
           "arrangement_name", "Arrangement", "canonical", "small_matrix_kernels"]

MODES = ("measure", "heuristic", "fastest")
# the form's bits (the kernels' FORM_*, bnnslstm/_kernels/_call.pxd): h_prev read from a
# batch-fastest copy; the products added straight into the input projection; the products'
# scratch sample-major (without INTO_PROJECTION); backward only, the sum over U's rows split
# in calls of ``chunk`` rows, gate by gate
STATE_COPY, INTO_PROJECTION, SAMPLE_MAJOR, SPLIT_SUMS = 1, 2, 4, 8
FORMS = {0: "scratch", 1: "state-copy", 2: "into-projection", 3: "state-copy into-projection",
         4: "sample-major scratch", 5: "state-copy, sample-major scratch", 8: "split sums"}
PASS_FORMS = {"forward": (0, 1, 2, 3, 4, 5), "backward": (0, SPLIT_SUMS)}   # each pass's forms
# how the team shares each step (the kernels' SPLIT_*): its rows and units, meeting twice a
# step; a team of two on the two directions; each thread its samples; each thread its units
# and, forward, their rows in all four gates, meeting once a step; forward, the products by
# rows and the cells by samples (every unit of them), meeting twice a step
SPLITS = ("rows", "directions", "samples", "units", "rows and samples")
ROWS, DIRECTIONS, SAMPLES, UNITS, ROWS_SAMPLES = range(5)
PASSES = ("forward", "backward")   # a problem's two passes, each chosen apart


class Arrangement(NamedTuple):
    """How a pass hands each step's recurrent products to BLAS (the kernels' ``Arrangement``,
    ``bnnslstm/_kernels/_call.pxd``); the defaults make ``HEURISTIC``, the canonical one on a
    BLAS without small-matrix kernels (:func:`canonical`).

    ``form``: the bits ``STATE_COPY`` (h_prev read from a batch-fastest copy),
    ``INTO_PROJECTION`` (the products added straight into the input projection) and
    ``SAMPLE_MAJOR`` (without INTO_PROJECTION: the products' scratch sample-major),
    and, backward only, ``SPLIT_SUMS`` (the sum over U's rows in calls of ``chunk`` rows),
    ``FORMS`` naming each value; ``chunk``: rows (forward) or columns (backward) per BLAS
    call, 0 for the thread's whole slice; ``by_vectors``: 1 one gemv per sample, 0 one
    gemm, -1 gemv for batches of at most 4; ``split``: how the team shares a step (``ROWS``,
    ``DIRECTIONS``, ``SAMPLES``, ``UNITS``, ``ROWS_SAMPLES``, ``SPLITS`` naming each)."""

    form: int = 0
    chunk: int = 0
    by_vectors: int = -1
    split: int = ROWS


HEURISTIC = Arrangement()   # the portable canonical arrangement: S from h read in place, the
                            # thread's slice in one call, gemv for batches <= 4, the team by rows
TRIAL_STEPS = 12            # steps of a trial (every step of a call with per-step batch sizes)
ROUNDS = 3                  # timed runs of each candidate in a trial (the fastest counts)
MIN_WORK = 1 << 16          # multiply-adds of a step's products below which nothing is tried
MIN_STEPS = 4               # calls with fewer steps run the canonical arrangement, untried
SMALL_MATRIX = 10**6        # M*N*K up to which OpenBLAS's small-matrix kernels take a product
# OpenBLAS's CPU targets (threadpoolctl's "architecture", lower case) whose sgemm and dgemm
# have small-matrix kernels (kernel/x86_64/?gemm_small_kernel_permit_skylakex.c): products
# up to SMALL_MATRIX multiply-adds run there without packing either operand
SMALL_MATRIX_TARGETS = frozenset({"skylakex", "cooperlake", "sapphirerapids"})
GRAIN = 16                  # as the kernels: slices start on multiples of 16 rows

_lock = threading.Lock()
_mode = os.environ.get("BNNSLSTM_PLANNER", "measure")
if _mode not in MODES:
    raise ImportError(f"BNNSLSTM_PLANNER: expected one of {MODES}, got {_mode!r}")
_problems = {}              # problem key -> _Problem
_wisdom = {}                # problem key -> {"forward"/"backward": arrangement}, imported


def mode():
    """The planner's mode: ``"measure"``, ``"heuristic"`` or ``"fastest"``."""
    return _mode


def set_mode(name):
    """Choose the planner's mode for this process (see the module's description). Choices
    made in another mode are forgotten when the rule changes between bit-exact and not."""
    global _mode
    if name not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {name!r}")
    with _lock:
        if (name == "fastest") != (_mode == "fastest"):
            _problems.clear()
        _mode = name


def arrangement_name(arrangement):
    """A readable name of an :class:`Arrangement` (or a plain (form, chunk, by_vectors,
    split) tuple), e.g. ``"state-copy, chunks of 96"`` or ``"scratch, team by samples"``."""
    form, chunk, by_vectors, split = arrangement
    parts = [FORMS[form]]
    if chunk:
        parts.append(f"chunks of {chunk}")
    if by_vectors >= 0:
        parts.append("gemv per sample" if by_vectors else "one gemm")
    if split:
        parts.append(f"team by {SPLITS[split]}")
    return ", ".join(parts)


def _per_thread(n, team):
    """The most of n (rows or units) one thread of the team takes."""
    return -(-n // team)


def _chunk(rows, per_row, slice_rows):
    """The largest multiple of GRAIN rows whose product stays within SMALL_MATRIX
    multiply-adds, if that splits the thread's slice; else 0 (no candidate)."""
    chunk = SMALL_MATRIX // max(1, per_row) // GRAIN * GRAIN
    return chunk if GRAIN <= chunk < slice_rows else 0


_small_matrix_kernels = None   # small_matrix_kernels(), found once per process


def small_matrix_kernels():
    """Whether the BLAS the kernels call has small-matrix kernels (OpenBLAS on its AVX-512
    targets), which take a product of up to SMALL_MATRIX multiply-adds without packing its
    operands; found once per process (threadpoolctl names the BLAS and its CPU target)."""
    global _small_matrix_kernels
    if _small_matrix_kernels is None:
        identity = _blas_identity()
        _small_matrix_kernels = (identity.get("internal_api") == "openblas"
                                 and str(identity.get("architecture")).lower()
                                 in SMALL_MATRIX_TARGETS)
    return _small_matrix_kernels


def canonical(H, B, D, team, backward):
    """The canonical arrangement of a problem's pass: what heuristic mode runs, and the one
    whose bits measure mode keeps. Which arrangement is fast depends on the BLAS, so the
    canonical one does too (the same BLAS on the same CPU target always gives the same):

    * a BLAS with small-matrix kernels (:func:`small_matrix_kernels`), a batch of 2 or more:
      one gemm per product, in calls small enough for those kernels (no packing of the
      recurrent weights at every step): forward, chunks of U's rows with h_prev from a
      batch-fastest copy; backward, the sum over U's rows split in chunks of rows (each
      call over all the thread's units), else chunks of units. Measured on OpenBLAS's
      SkylakeX target: forward steps 1.2-1.5x faster than HEURISTIC's at batches 4 to 32,
      backward steps 1.1-2.2x, within 10 % elsewhere;
    * otherwise HEURISTIC (on OpenBLAS's Haswell target the forward chunks are up to 1.6x
      slower, the split sums no faster, and gemv beats gemm at batches up to 4)."""
    if B < 2 or not small_matrix_kernels():
        return HEURISTIC
    if backward:  # dL/dh_prev [B][units] = dA [B][4H] U[4H][units]: the sum split in
        units = _per_thread(D * H, team)   # calls of a few rows of U, else column chunks
        rows = _chunk(H, B * units, H)
        if rows:
            return Arrangement(SPLIT_SUMS, rows, by_vectors=0)
        return Arrangement(chunk=_chunk(D * H, B * 4 * H, units), by_vectors=0)
    return Arrangement(STATE_COPY, _chunk(D * 4 * H, B * H, _per_thread(D * 4 * H, team)),
                       by_vectors=0)


def candidates(H, B, D, team, backward):
    """The arrangements tried for a problem, the canonical one first: how BLAS is called
    with the team by rows, then the other ways to share a step (a team of two on the two
    directions of a bidirectional layer; forward, each thread its units in all four gates,
    or the canonical products with each thread's cells on its samples; each thread its
    samples), each arrangement once."""
    found = [canonical(H, B, D, team, backward), HEURISTIC]
    if B <= 4:
        found.append(Arrangement(by_vectors=0))
    elif B <= 8:
        found.append(Arrangement(by_vectors=1))
    if backward:  # dL/dh_prev [B][units] = dA [B][4H] U[4H][units]: column chunks
        units = _per_thread(D * H, team)
        chunk = _chunk(D * H, B * 4 * H, units)
        if chunk:
            found.append(Arrangement(chunk=chunk, by_vectors=0))
        # the sums split, every unit of the thread's per call: a gate's rows per call, or
        # as many as the small-matrix size holds
        found.append(Arrangement(SPLIT_SUMS, _chunk(H, B * units, H), by_vectors=0))
        found.append(Arrangement(SPLIT_SUMS, 0, by_vectors=0))
    else:
        found.append(Arrangement(STATE_COPY, by_vectors=0))
        chunk = _chunk(D * 4 * H, B * H, _per_thread(D * 4 * H, team))
        if chunk:
            found.append(Arrangement(STATE_COPY, chunk, by_vectors=0))
        found.append(Arrangement(INTO_PROJECTION))
        found.append(Arrangement(STATE_COPY | INTO_PROJECTION))
        # the products where the cell pass reads them contiguously, with beta = 0
        found.append(Arrangement(SAMPLE_MAJOR))
        found.append(Arrangement(STATE_COPY | SAMPLE_MAJOR, by_vectors=0))
        if chunk:
            found.append(Arrangement(STATE_COPY | SAMPLE_MAJOR, chunk, by_vectors=0))
    if team == 2 and D == 2:   # the same products per thread, no meeting per step
        found.append(found[0]._replace(split=DIRECTIONS))
        found.append(Arrangement(split=DIRECTIONS))
        if not backward:
            found.append(Arrangement(STATE_COPY, by_vectors=0, split=DIRECTIONS))
    if team > 1 and not backward:   # a thread's cells read only its own products
        found.append(found[0]._replace(split=UNITS))
    if team > 1 and not backward and B >= team:   # a thread's cells read whole rows
        found.append(found[0]._replace(split=ROWS_SAMPLES))
    if team > 1 and B >= team:   # every row per thread, its samples only
        found.append(Arrangement(split=SAMPLES))
        found.append(Arrangement(by_vectors=0 if B > 4 else 1, split=SAMPLES))
    return list(dict.fromkeys(found))   # each once, in order


class _Choice:
    """What the planner knows of one pass (forward or backward) of one problem."""

    def __init__(self, arrangements):
        self.arrangements = arrangements
        self.canonical = arrangements[0]
        self.chosen = None if len(arrangements) > 1 else arrangements[0]
        self.source = "measured" if self.chosen is None else "only candidate"
        self.pinned = None          # imported wisdom, checked by its first call's trial
        self.shapes = None          # with per-step batch sizes: the step shapes verified
        self.busy = False           # a trial is running (other calls run the canonical one)
        self.trials = 0             # calls that ran a trial
        self.trial_seconds = 0.0    # their trials' wall time
        self.dropped = []           # candidates whose bits differ from the canonical's

    def covers(self, shapes):
        """Whether the choice holds for a call with these step shapes (None: every step
        has the problem's batch)."""
        return shapes is None or self.shapes is None or shapes <= self.shapes

    def to_try(self):
        """The arrangements a trial runs, the canonical one first."""
        if self.pinned is None:
            return self.arrangements
        return [self.canonical] + ([self.pinned] if self.pinned != self.canonical else [])

    def settle(self, chosen, shapes, dropped, seconds):
        self.chosen, self.shapes, self.dropped = chosen, shapes, dropped
        self.trials += 1
        self.trial_seconds += seconds
        if self.pinned is not None:
            self.source = "wisdom" if chosen == self.pinned else "wisdom refused: other bits"

    def describe(self):
        if self.chosen is None:
            return "tuning"
        return arrangement_name(self.chosen)


class _Problem:
    """What the planner knows of one problem: a _Choice per pass, ``"forward"`` and
    ``"backward"`` (the wisdom's keys too)."""

    def __init__(self, key, H, B, D, team):
        self.key = key
        self.choices = {which: _Choice(candidates(H, B, D, team, which == "backward"))
                        for which in PASSES}
        self.backward_ran = False
        for which, arrangement in _wisdom.get(key, {}).items():
            self.pin(which, arrangement)

    def pin(self, which, arrangement):
        """Use ``arrangement`` for the pass ``which`` (imported wisdom): at once in fastest
        mode, after a bit-for-bit check against the canonical arrangement in measure mode."""
        target = self.choices[which]
        target.pinned, target.source, target.shapes = arrangement, "wisdom", None
        target.chosen = arrangement if _mode == "fastest" else None


def _tunable(plan):
    """Whether a step's products are large enough for their arrangement to matter."""
    return plan.D * 4 * plan.H * plan.H * plan.B >= MIN_WORK


def _step_shapes(plan):
    """With per-step batch sizes, the (batch, samples carried from the step before) of
    every step of both directions: the shapes of its products, whose rounding a trial
    verifies."""
    sizes = plan.batch_sizes
    shapes = {(sizes[t], sizes[t - 1] if t else 0) for t in range(plan.T)}
    if plan.D == 2:
        shapes |= {(sizes[t], sizes[t + 1] if t + 1 < plan.T else 0) for t in range(plan.T)}
    return frozenset(shapes)


def arrange(plan, team, backward=False, workspace=None):
    """Set the arrangement of ``plan``'s forward (or backward) pass (Plan.use): the one the
    planner holds for its problem; the problem's first call runs the trial that chooses it
    first (its buffers from ``workspace``, bnnslstm._memory's; None: fresh numpy arrays).
    The caller then runs the pass (Plan.run), BLAS single-threaded around both."""
    plan.use(_arrangement(plan, team, backward, workspace))


def _arrangement(plan, team, backward, workspace):
    """The arrangement for this call: the problem's choice, the canonical one while another
    call is trying or when nothing is to be tried, or the outcome of this call's trial."""
    if _mode == "heuristic" or not (_wisdom or _tunable(plan)):
        return canonical(plan.H, plan.B, plan.D, team, backward)
    key = plan.problem(team)
    shapes = _step_shapes(plan) if plan.variable_batch else None
    with _lock:
        problem = _problems.get(key)
        if problem is None:
            if key not in _wisdom and not _tunable(plan):
                return canonical(plan.H, plan.B, plan.D, team, backward)
            problem = _problems[key] = _Problem(key, plan.H, plan.B, plan.D, team)
        choice = problem.choices[PASSES[backward]]
        problem.backward_ran |= backward
        if choice.chosen is not None:
            return choice.chosen if choice.covers(shapes) else choice.canonical
        if choice.busy or plan.T < MIN_STEPS:
            return choice.canonical
        choice.busy = True
        arrangements = choice.to_try()
    try:
        chosen, dropped, seconds = _trial(plan, team, backward, arrangements, workspace)
    finally:
        with _lock:
            choice.busy = False
    with _lock:
        if choice.chosen is None:   # (a forget() or set_mode() meanwhile: nothing to keep)
            choice.settle(chosen, shapes, dropped, seconds)
    return chosen


def _trial(plan, team, backward, arrangements, workspace):
    """Run one layer of the call with each arrangement on the planner's own buffers, timing
    each run: (the fastest arrangement that gives the canonical one's bits -- any in
    fastest mode --, the names of those dropped for other bits, the trial's wall time)."""
    began = time.perf_counter()
    verify = _mode != "fastest"
    steps = plan.T if plan.variable_batch else min(plan.T, TRIAL_STEPS)
    zeros = (lambda n: np.zeros(n, np.uint8)) if workspace is None else workspace.zeros
    regions = None if backward else zeros(plan.trial_bytes)
    scratch = zeros(plan.scratch_bytes(team, backward))
    seconds = np.zeros(steps)
    runs = [float("inf")] * len(arrangements)
    alive = [True] * len(arrangements)
    canonical = None   # copies of the canonical arrangement's bytes, in the trial's buffers
    # the whole run of each candidate is timed, the candidates in turn, ROUNDS times, the
    # fastest run kept (on a machine other work loads, interruptions only ever add time): a
    # step's own time would not do, as a split without meetings leaves the first thread's
    # steps ahead of the others'
    for _ in range(ROUNDS):
        for k, arrangement in enumerate(arrangements):
            if not alive[k]:
                continue
            start = time.perf_counter()
            result = plan.trial(backward, arrangement, regions, scratch, steps, seconds)
            runs[k] = min(runs[k], time.perf_counter() - start)
            if canonical is None:
                canonical = [zeros(part.nbytes)[:part.nbytes] for part in result]
                for copy, part in zip(canonical, result):
                    copy[:] = part
            elif verify and not all(same_bytes(part, copy)
                                    for part, copy in zip(result, canonical)):
                alive[k] = False
    best = min((k for k in range(len(arrangements)) if alive[k]), key=lambda k: (runs[k], k))
    dropped = [arrangement_name(a) for a, ok in zip(arrangements, alive) if not ok]
    return arrangements[best], dropped, time.perf_counter() - began


def decisions():
    """One dict per problem this process has planned (measure or fastest mode): ``problem``
    (its key), ``forward`` and ``backward`` (the arrangement chosen, ``"tuning"`` before the
    trial, ``"-"`` when that pass has not run), ``tuned``, ``tuning_seconds`` (wall time of
    the trials), ``calls`` (calls that ran a trial), ``dropped`` (candidates left out because
    their bits differ from the canonical arrangement's), ``source``."""
    with _lock:
        out = []
        for problem in _problems.values():
            fwd, bwd = problem.choices["forward"], problem.choices["backward"]
            ran = [fwd] + ([bwd] if problem.backward_ran else [])
            out.append({
                "problem": problem.key,
                "forward": fwd.describe(),
                "backward": bwd.describe() if problem.backward_ran else "-",
                "tuned": all(p.chosen is not None for p in ran),
                "tuning_seconds": sum(p.trial_seconds for p in ran),
                "calls": max(p.trials for p in ran),
                "dropped": {"forward": list(fwd.dropped), "backward": list(bwd.dropped)},
                "source": fwd.source,
            })
        return out


def forget():
    """Forget every measurement and choice (imported wisdom included)."""
    with _lock:
        _problems.clear()
        _wisdom.clear()


def _blas_identity():
    """internal_api, version and architecture of the BLAS the kernels call (as the BLAS
    thread limit finds it: bnnslstm._threads.blas_controllers), for the wisdom's readers."""
    try:
        from ._threads import blas_controllers

        libraries = blas_controllers()
        if libraries:
            info = libraries[0].info()
            return {k: info.get(k) for k in ("internal_api", "version", "architecture")}
    except Exception:  # the identity is informative only
        pass
    return {}


def export_wisdom():
    """What the planner has chosen, as a JSON text (for :func:`import_wisdom`)."""
    def entry(which):
        chosen = Arrangement(*which.chosen)
        return {"form": FORMS[chosen.form], "chunk": chosen.chunk,
                "by_vectors": chosen.by_vectors, "split": SPLITS[chosen.split]}

    with _lock:
        problems = {}
        for key, problem in _problems.items():
            item = {which: entry(choice) for which, choice in problem.choices.items()
                    if choice.chosen is not None
                    and (which == "forward" or problem.backward_ran)}
            if item:
                problems[key] = item
    return json.dumps({"bnnslstm_wisdom": 1, "blas": _blas_identity(), "problems": problems},
                      indent=1, sort_keys=True)


def _form_value(name):
    """The form bits that FORMS names ``name`` (ValueError for no form)."""
    for value, known in FORMS.items():
        if known == name:
            return value
    raise ValueError(name)


def import_wisdom(text):
    """Use the arrangements of ``text`` (from :func:`export_wisdom`) for their problems,
    without timing them; returns how many problems it holds. In measure mode each one is
    checked bit for bit against the canonical arrangement by its problem's first call (and
    replaced by it if it differs: ``decisions()`` then says ``"wisdom refused: other
    bits"``); in fastest mode it is used as it is. Problems it does not name are tried as
    usual."""
    try:
        wisdom = json.loads(text)
    except (TypeError, ValueError) as error:
        raise ValueError(f"wisdom: not JSON ({error})") from None
    if (not isinstance(wisdom, dict) or wisdom.get("bnnslstm_wisdom") != 1
            or not isinstance(wisdom.get("problems"), dict)):
        raise ValueError("wisdom: not a bnnslstm wisdom text (version 1)")
    parsed = {}
    for key, item in wisdom["problems"].items():
        if not isinstance(item, dict):
            raise ValueError(f"wisdom: problem {key!r} is not an object")
        for which, value in item.items():
            if which not in PASSES:
                raise ValueError(f"wisdom: problem {key!r}: unknown pass {which!r}")
            try:
                arrangement = Arrangement(
                    _form_value(value["form"]), int(value["chunk"]), int(value["by_vectors"]),
                    SPLITS.index(value.get("split", "rows")))
            except (AttributeError, KeyError, TypeError, ValueError):
                raise ValueError(f"wisdom: problem {key!r}, {which}: expected form, chunk, "
                                 f"by_vectors (and split), got {value!r}") from None
            if (arrangement.chunk < 0 or arrangement.by_vectors not in (-1, 0, 1)
                    or arrangement.form not in PASS_FORMS[which]):
                raise ValueError(f"wisdom: problem {key!r}, {which}: not an arrangement: {value!r}")
            parsed.setdefault(key, {})[which] = arrangement
    with _lock:
        for key, item in parsed.items():
            _wisdom.setdefault(key, {}).update(item)
            if key in _problems:
                for which, arrangement in item.items():
                    _problems[key].pin(which, arrangement)
    return len(parsed)
