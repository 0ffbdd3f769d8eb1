"""The planner: which arrangement of BLAS calls runs each time step's recurrent products.

Every arrangement computes the same products (every FLOP still goes through BLAS); they
differ in how the work is handed to BLAS, and which one is fastest depends on the CPU and
the BLAS build (OpenBLAS's small-matrix kernels exist on some of its CPU targets and not
on others; Accelerate and OpenBLAS on ARM pack operands differently). So the library
measures where it runs, as FFTW's planner does:

* ``"measure"`` (the default): the first calls of each distinct problem (data type,
  hidden size, batch, directions, thread team, how the weights lie) run their time steps
  with the candidate arrangements in turn, a few steps each, and time every step; once
  every candidate has enough timed steps the fastest is kept for the rest of the process.
  Results agree between arrangements to rounding, not bit for bit.
* ``"heuristic"``: no timing; one fixed rule (the arrangement tuned by hand on x86-64).
  Results are bit-identical from run to run and across processes. Chosen with
  :func:`set_mode` or the environment variable ``BNNSLSTM_PLANNER=heuristic``.

:func:`export_wisdom` gives what was measured as a small JSON text, :func:`import_wisdom`
brings it back (in another process, on the same machine), so that production runs use the
arrangements chosen once and never time anything.
"""

import json
import os
import threading

import numpy as np

__all__ = ["mode", "set_mode", "decisions", "forget", "export_wisdom", "import_wisdom",
           "arrangement_name"]

MODES = ("measure", "heuristic")
HEURISTIC = (0, 0, -1)      # S from h read in place, the thread's slice in one call, gemv for
                            # batches <= 4
FORMS = ("scratch", "state-copy", "into-projection", "state-copy into-projection")
SAMPLES = 8                 # timed steps per candidate before choosing
BLOCK = 3                   # consecutive steps per candidate (the last one of a block is not
                            # counted)
MIN_WORK = 1 << 16          # multiply-adds of a step's products below which nothing is timed
MIN_STEPS = 4               # calls with fewer steps are not timed
SMALL_MATRIX = 10**6        # M*N*K up to which OpenBLAS's small-matrix kernels take a product
GRAIN = 16                  # as the kernels: slices start on multiples of 16 rows

_lock = threading.Lock()
_mode = os.environ.get("BNNSLSTM_PLANNER", "measure")
if _mode not in MODES:
    raise ImportError(f"BNNSLSTM_PLANNER: expected one of {MODES}, got {_mode!r}")
_problems = {}              # problem key -> _Problem
_wisdom = {}                # problem key -> {"forward"/"backward": arrangement}, imported


def mode():
    """The planner's mode: ``"measure"`` or ``"heuristic"``."""
    return _mode


def set_mode(name):
    """Choose the planner's mode for this process (see the module's description)."""
    global _mode
    if name not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {name!r}")
    _mode = name


def arrangement_name(arrangement):
    """A readable name of a (form, chunk, by_vectors) arrangement, e.g.
    ``"state-copy, chunks of 96"``."""
    form, chunk, by_vectors = arrangement
    parts = [FORMS[form]]
    if chunk:
        parts.append(f"chunks of {chunk}")
    if by_vectors >= 0:
        parts.append("gemv per sample" if by_vectors else "one gemm")
    return ", ".join(parts)


def _chunk(rows, per_row, slice_rows):
    """The largest multiple of GRAIN rows whose product stays within SMALL_MATRIX
    multiply-adds, if that splits the thread's slice; else 0 (no candidate)."""
    chunk = SMALL_MATRIX // max(1, per_row) // GRAIN * GRAIN
    return chunk if GRAIN <= chunk < slice_rows else 0


def candidates(H, B, D, team, backward):
    """The arrangements tried for a problem, the heuristic's first."""
    found = [HEURISTIC]
    if B <= 4:
        found.append((0, 0, 0))
    elif B <= 8:
        found.append((0, 0, 1))
    if backward:  # dL/dh_prev [B][units] = dA [B][4H] U[4H][units]: column chunks
        chunk = _chunk(D * H, B * 4 * H, -(-D * H // team))
        if chunk:
            found.append((0, chunk, 0))
        return found
    found.append((1, 0, 0))
    chunk = _chunk(D * 4 * H, B * H, -(-D * 4 * H // team))
    if chunk:
        found.append((1, chunk, 0))
    found.append((2, 0, -1))
    found.append((3, 0, -1))
    return found


class _Pass:
    """What the planner knows of one pass (forward or backward) of one problem."""

    def __init__(self, arrangements):
        self.arrangements = arrangements
        self.samples = [[] for _ in arrangements]
        self.chosen = None if len(arrangements) > 1 else arrangements[0]
        self.calls = 0
        self.tuning_seconds = 0.0
        self.source = "measured" if self.chosen is None else "only candidate"

    def schedule(self, L, T):
        """(arrangements, picks, step_seconds) for the next call while tuning: blocks of
        BLOCK steps, each block one candidate, the least-sampled candidates first."""
        order = sorted(range(len(self.arrangements)), key=lambda k: len(self.samples[k]))
        picks = np.zeros((L, T), np.uint8)
        block = 0
        for l in range(L):
            for s0 in range(1, T, BLOCK):
                picks[l, s0:s0 + BLOCK] = order[block % len(order)]
                block += 1
        return self.arrangements, picks.tobytes(), np.zeros(L * T)

    def record(self, picks, seconds, L, T, backward):
        picks = np.frombuffer(picks, np.uint8).reshape(L, T)
        seconds = seconds.reshape(L, T)
        for l in range(L):
            # a forward step's time belongs to its own products; a backward one (index s)
            # to the products of step s (timed with the next step's elementwise part)
            for s in range(0 if backward else 1, T - 1):
                last_of_block = s + 1 < T and picks[l, s + 1] != picks[l, s]
                if not last_of_block and seconds[l, s] > 0:
                    self.samples[picks[l, s]].append(float(seconds[l, s]))
        self.calls += 1
        if min(len(values) for values in self.samples) >= SAMPLES:
            # the lower quartile of each candidate's step times: on a machine other work
            # loads, interruptions only ever add time, and a quarter of the steps escape them
            typical = [sorted(values)[len(values) // 4] for values in self.samples]
            best = min(range(len(typical)), key=typical.__getitem__)
            self.chosen = self.arrangements[best]
            self.tuning_seconds = sum(max(0.0, v - typical[best])
                                      for k, values in enumerate(self.samples)
                                      if k != best for v in values)

    def describe(self):
        if self.chosen is None:
            return "tuning"
        return arrangement_name(self.chosen)


class _Problem:
    def __init__(self, key, H, B, D, team):
        self.key = key
        self.forward = _Pass(candidates(H, B, D, team, False))
        self.backward = _Pass(candidates(H, B, D, team, True))
        self.backward_ran = False
        for which, arrangement in _wisdom.get(key, {}).items():
            self.pin(which, arrangement)

    def pin(self, which, arrangement):
        """Use ``arrangement`` for the pass ``which`` without timing (imported wisdom)."""
        target = getattr(self, which)
        target.chosen, target.source = arrangement, "wisdom"


def _tunable(plan):
    """Whether a step's products are large enough for their arrangement to matter."""
    return plan.D * 4 * plan.H * plan.H * plan.B >= MIN_WORK


def run(plan, team, backward=False):
    """Run ``plan``'s forward (or backward) pass with the arrangement the planner holds for
    its problem, timing the steps while the problem is being tuned."""
    chosen = HEURISTIC
    if _mode == "measure" and (_wisdom or _tunable(plan)):
        key = plan.problem(team)
        with _lock:
            problem = _problems.get(key)
            if problem is None and (key in _wisdom or _tunable(plan)):
                problem = _problems[key] = _Problem(key, plan.H, plan.B, plan.D, team)
            if problem is not None:
                which = problem.backward if backward else problem.forward
                problem.backward_ran |= backward
                chosen = which.chosen
                if chosen is None and plan.T >= MIN_STEPS:
                    arrangements, picks, seconds = which.schedule(plan.L, plan.T)
                elif chosen is None:  # too few steps to time: the heuristic, untimed
                    chosen = HEURISTIC
    if chosen is not None:
        plan.schedule((chosen,))
        (plan.backward if backward else plan.forward)()
        return
    plan.schedule(arrangements, picks, seconds)
    (plan.backward if backward else plan.forward)()
    with _lock:
        if which.chosen is None:
            which.record(picks, seconds, plan.L, plan.T, backward)


def decisions():
    """One dict per problem this process has run in measure mode: ``problem`` (its key),
    ``forward`` and ``backward`` (the arrangement chosen, ``"tuning"`` while measuring,
    ``"-"`` when that pass has not run), ``tuned``, ``tuning_seconds`` (wall time the slower
    candidates cost beyond the chosen one), ``calls`` (calls timed), ``source``."""
    with _lock:
        out = []
        for problem in _problems.values():
            passes = [problem.forward] + ([problem.backward] if problem.backward_ran else [])
            out.append({
                "problem": problem.key,
                "forward": problem.forward.describe(),
                "backward": problem.backward.describe() if problem.backward_ran else "-",
                "tuned": all(p.chosen is not None for p in passes),
                "tuning_seconds": sum(p.tuning_seconds for p in passes),
                "calls": max(p.calls for p in passes),
                "source": problem.forward.source,
            })
        return out


def forget():
    """Forget every measurement and choice (imported wisdom included)."""
    with _lock:
        _problems.clear()
        _wisdom.clear()


def _blas_identity():
    """internal_api, version and architecture of the BLAS the kernels call (as the BLAS
    thread limit finds it: bnnslstm.lstm._kernels_blas), for the wisdom's readers."""
    try:
        import scipy.linalg.cython_blas  # noqa: F401  (loads the BLAS the kernels call)
        from threadpoolctl import ThreadpoolController

        from .lstm import _kernels_blas

        libraries = _kernels_blas(ThreadpoolController().select(user_api="blas").lib_controllers)
        if libraries:
            info = libraries[0].info()
            return {k: info.get(k) for k in ("internal_api", "version", "architecture")}
    except Exception:  # the identity is informative only
        pass
    return {}


def export_wisdom():
    """What the planner has chosen, as a JSON text (for :func:`import_wisdom`)."""
    def entry(which):
        form, chunk, by_vectors = which.chosen
        return {"form": FORMS[form], "chunk": chunk, "by_vectors": by_vectors}

    with _lock:
        problems = {}
        for key, problem in _problems.items():
            item = {}
            if problem.forward.chosen is not None:
                item["forward"] = entry(problem.forward)
            if problem.backward_ran and problem.backward.chosen is not None:
                item["backward"] = entry(problem.backward)
            if item:
                problems[key] = item
    return json.dumps({"bnnslstm_wisdom": 1, "blas": _blas_identity(), "problems": problems},
                      indent=1, sort_keys=True)


def import_wisdom(text):
    """Use the arrangements of ``text`` (from :func:`export_wisdom`) for their problems,
    without timing; returns how many problems it holds. Problems it does not name are
    still tuned in measure mode."""
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
            if which not in ("forward", "backward"):
                raise ValueError(f"wisdom: problem {key!r}: unknown pass {which!r}")
            try:
                arrangement = (FORMS.index(value["form"]), int(value["chunk"]),
                               int(value["by_vectors"]))
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"wisdom: problem {key!r}, {which}: expected form, chunk, "
                                 f"by_vectors, got {value!r}") from None
            if (arrangement[1] < 0 or arrangement[2] not in (-1, 0, 1)
                    or (which == "backward" and arrangement[0])):
                raise ValueError(f"wisdom: problem {key!r}, {which}: not an arrangement: {value!r}")
            parsed.setdefault(key, {})[which] = arrangement
    with _lock:
        for key, item in parsed.items():
            _wisdom.setdefault(key, {}).update(item)
            if key in _problems:
                for which, arrangement in item.items():
                    _problems[key].pin(which, arrangement)
    return len(parsed)
