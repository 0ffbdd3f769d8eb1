"""The planner (bnnslstm/planner.py): every BLAS arrangement of the step products against
the references, tuning, wisdom, and the deterministic mode."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import bnnslstm as bl
from bnnslstm import _plan, planner
from bnnslstm._memory import options
from bnnslstm._threads import team_of
from helpers import Problem, planner_mode, y_time_major
from reference import GATES

# every arrangement of the products with each way the team shares a step (planner.SPLITS:
# forward rows, directions, samples, units, rows and samples; backward the first three)
FORWARD = [(form, chunk, by_vectors, split) for split in (0, 1, 2, 3, 4)
           for form in (0, 1, 2, 3, 4, 5) for chunk in (0, 16) for by_vectors in (-1, 0, 1)]
BACKWARD = [(form, chunk, by_vectors, split) for split in (0, 1, 2) for form in (0, 8)
            for chunk in (0, 16) for by_vectors in (-1, 0, 1)]
TOLERANCE = {np.float32: 5e-5, np.float64: 1e-11}   # of the largest value compared


def close(actual, desired, dtype, what):
    """Equal to rounding: within TOLERANCE of the largest magnitude in ``desired``."""
    scale = max(1.0, float(np.max(np.abs(desired))))
    np.testing.assert_allclose(actual, desired, rtol=0, atol=TOLERANCE[dtype] * scale, err_msg=what)


# (H, B, bidirectional, peephole, lengths, states, n_threads): each large enough for the
# planner (a step's products of at least planner.MIN_WORK multiply-adds)
PROBLEMS = {
    "stacked, states": (32, 16, False, None, None, True, 1),
    "bidirectional, variable batch, diagonal peepholes": (
        32, 16, True, "diagonal", [6, 6, 5, 5, 4, 3, 3, 3, 2, 2, 2, 1, 1, 1, 1, 1], False, 1),
    "batch of 3, full peepholes": (128, 3, False, "full", None, True, 1),
    "team of two, variable batch": (64, 16, True, None, [6] * 9 + [4] * 4 + [2] * 3, True, 2),
    "team of two, full peepholes": (64, 16, True, "full", None, True, 2),
    "team of three, odd batch": (160, 7, False, "diagonal", None, True, 3),
}


def named_arrangement(arrangement):
    """An arrangement as wisdom names it."""
    form, chunk, by_vectors, split = arrangement
    return {"form": planner.FORMS[form], "chunk": chunk, "by_vectors": by_vectors,
            "split": planner.SPLITS[split]}


def pin(params, n_threads, forward, backward):
    """Wisdom that gives this call's problem the two arrangements."""
    plan = _plan.make_plan(params)
    key = plan.problem(team_of(plan, options(bl.FilterParameters(n_threads=n_threads))[0]))
    item = {"forward": named_arrangement(forward), "backward": named_arrangement(backward)}
    return key, json.dumps({"bnnslstm_wisdom": 1, "problems": {key: item}})


@pytest.fixture
def fresh_planner():
    planner.forget()
    with planner_mode("measure"):
        yield
    planner.forget()


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(PROBLEMS))
def test_every_arrangement_matches_the_reference(name, dtype, fresh_planner):
    H, B, bidirectional, peephole, lengths, states, n_threads = PROBLEMS[name]
    T = 6
    problem = Problem(T=T, B=B, I=24, H=H, L=2, bidirectional=bidirectional, peephole=peephole,
                      dtype=dtype, states=states, lengths=lengths, seed=5)
    dy = problem.rng.standard_normal((T, B, problem.D * H)).astype(dtype)
    y_ref, h_ref, c_ref, _ = problem.reference()
    g_ref = problem.reference_backward(dy=dy)
    active = np.ones((T, B, 1)) if lengths is None else np.array(
        [[[t < n] for n in lengths] for t in range(T)], float)
    filter_params = bl.FilterParameters(n_threads=n_threads)
    planner.set_mode("fastest")  # wisdom is used as it is, whatever its rounding
    for k, forward in enumerate(FORWARD):
        backward = BACKWARD[k % len(BACKWARD)]
        key, wisdom = pin(problem.params()[0], n_threads, forward, backward)
        planner.forget()
        planner.import_wisdom(wisdom)
        params, out, cache = problem.forward(filter_params=filter_params)
        _, grads = problem.backward(params, cache, filter_params, dy=dy)
        chosen = {d["problem"]: d for d in planner.decisions()}[key]
        assert chosen["source"] == "wisdom"
        assert chosen["forward"] == planner.arrangement_name(forward)
        assert chosen["backward"] == planner.arrangement_name(backward)
        what = (f"forward {planner.arrangement_name(forward)}, "
                f"backward {planner.arrangement_name(backward)}")
        close(y_time_major(out, "SNE") * active, y_ref, dtype, what)
        close(out["h_n"], h_ref, dtype, what)
        close(out["c_n"], c_ref, dtype, what)
        close(grads["dx"], g_ref["dx"], dtype, what)
        if states:
            close(grads["dh0"], g_ref["dh0"], dtype, what)
            close(grads["dc0"], g_ref["dc0"], dtype, what)
        for gate in GATES:
            close(grads["U"][gate], g_ref["dU"][gate], dtype, what)
            close(grads["W"][gate][0], g_ref["dW"][gate][0], dtype, what)
            close(grads["W"][gate][1][0], g_ref["dW"][gate][1], dtype, what)
            close(grads["b"][gate], g_ref["db"][gate], dtype, what)
            if peephole:
                close(grads["C"][gate], g_ref["dC"][gate], dtype, what)


def layer_problem(T=40, B=8, H=64, bidirectional=False):
    rng = np.random.default_rng(1)
    layer = bl.LSTM(32, H, 2, bidirectional=bidirectional, seed=3)
    x = rng.standard_normal((T, B, 32)).astype(np.float32)
    dy = rng.standard_normal((T, B, (2 if bidirectional else 1) * H)).astype(np.float32)
    return layer, x, dy


def train(layer, x, dy):
    """Forward and backward; every output and gradient as one flat array."""
    y, (h, c) = layer.forward(x, training=True)
    dx, (dh0, dc0) = layer.backward(dy)
    parts = [y, h, c, dx, dh0, dc0] + [layer.grads[name] for name in sorted(layer.grads)]
    return np.concatenate([np.ravel(part) for part in parts])


def heuristic_result(layer, x, dy):
    with planner_mode("heuristic"):
        return train(layer, x, dy)


def test_measure_mode_gives_the_canonical_bits_from_the_first_call(fresh_planner):
    """The first call of a problem runs its trial on the planner's own buffers, then the
    call itself with the arrangement chosen: every call, the first included, gives the
    canonical (heuristic) arrangement's bits."""
    layer, x, dy = layer_problem()
    canonical = heuristic_result(layer, x, dy)
    np.testing.assert_array_equal(train(layer, x, dy), canonical)
    [decision] = planner.decisions()
    assert decision["tuned"] and decision["source"] == "measured" and decision["calls"] == 1
    names = {planner.arrangement_name(a) for a in planner.candidates(64, 8, 1, 1, False)}
    assert decision["forward"] in names and decision["backward"] != "-"
    assert decision["tuning_seconds"] > 0
    for _ in range(2):
        np.testing.assert_array_equal(train(layer, x, dy), canonical)
    assert planner.decisions()[0]["calls"] == 1   # chosen once


@pytest.mark.parametrize("small_kernels", [False, True], ids=["portable", "small-matrix"])
def test_canonical_arrangement_follows_the_blas(small_kernels, monkeypatch):
    """The canonical arrangement is a fixed rule of the problem and the BLAS: with
    small-matrix kernels, one gemm per product in chunks those kernels take (batches of 2
    or more; the forward pass reading h_prev from a batch-fastest copy), else HEURISTIC."""
    monkeypatch.setattr(planner, "_small_matrix_kernels", small_kernels)
    for H, B, D, team in [(1024, 16, 1, 2), (256, 32, 2, 2), (256, 4, 1, 1), (512, 1, 1, 2),
                          (1024, 64, 1, 2), (64, 8, 1, 3)]:
        for backward in (False, True):
            arrangement = planner.canonical(H, B, D, team, backward)
            assert planner.candidates(H, B, D, team, backward)[0] == arrangement
            if not small_kernels or B == 1:
                assert arrangement == planner.HEURISTIC
                continue
            assert arrangement.by_vectors == 0 and arrangement.split == planner.ROWS
            if arrangement.form == planner.SPLIT_SUMS:   # rows of U per call, all units
                assert backward and 0 < arrangement.chunk < H
                assert arrangement.chunk * B * -(-D * H // team) <= planner.SMALL_MATRIX
                continue
            assert arrangement.form == (0 if backward else planner.STATE_COPY)
            rows = D * H if backward else D * 4 * H       # the dimension chunked
            per_row = B * 4 * H if backward else B * H    # multiply-adds per chunked row
            if arrangement.chunk:
                assert arrangement.chunk % planner.GRAIN == 0
                assert arrangement.chunk * per_row <= planner.SMALL_MATRIX
                assert arrangement.chunk < -(-rows // team)
            else:   # no chunk fits, or the thread's slice is one already
                assert (planner.SMALL_MATRIX // per_row < planner.GRAIN
                        or -(-rows // team) * per_row <= planner.SMALL_MATRIX)


@pytest.mark.parametrize("small_kernels", [False, True], ids=["portable", "small-matrix"])
def test_measure_mode_keeps_either_canonical_rule(small_kernels, monkeypatch, fresh_planner):
    """Under either rule, measure mode's calls give heuristic mode's bits (the canonical
    arrangement's), and the two rules agree to rounding."""
    monkeypatch.setattr(planner, "_small_matrix_kernels", small_kernels)
    layer, x, dy = layer_problem(T=16, B=16, H=96)
    canonical = heuristic_result(layer, x, dy)
    np.testing.assert_array_equal(train(layer, x, dy), canonical)
    [decision] = planner.decisions()
    assert decision["tuned"] and decision["calls"] == 1
    monkeypatch.setattr(planner, "_small_matrix_kernels", not small_kernels)
    planner.forget()
    np.testing.assert_allclose(heuristic_result(layer, x, dy), canonical, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("T, B, H, bidirectional", [(12, 4, 64, False), (12, 8, 96, True),
                                                     (20, 1, 128, False), (6, 32, 64, False)])
def test_what_the_trial_keeps_and_drops_is_what_the_arrangements_give(T, B, H, bidirectional,
                                                                      fresh_planner):
    """The trial's verdict checked independently: every candidate it kept gives the
    canonical bits on a whole call (forced through wisdom in fastest mode), and every one it
    dropped really gives other bits."""
    layer, x, dy = layer_problem(T=T, B=B, H=H, bidirectional=bidirectional)
    canonical = heuristic_result(layer, x, dy)
    train(layer, x, dy)
    [decision] = planner.decisions()
    key = decision["problem"]
    for which in ("forward", "backward"):
        team = int(key.split("team")[1].split()[0])
        for arrangement in planner.candidates(H, B, 2 if bidirectional else 1, team,
                                              which == "backward"):
            other = "backward" if which == "forward" else "forward"
            item = {which: named_arrangement(arrangement), other: named_arrangement(
                planner.canonical(H, B, 2 if bidirectional else 1, team, other == "backward"))}
            with planner_mode("fastest"):
                planner.forget()
                planner.import_wisdom(json.dumps({"bnnslstm_wisdom": 1,
                                                  "problems": {key: item}}))
                forced = train(layer, x, dy)
            same = np.array_equal(forced, canonical)
            dropped = planner.arrangement_name(arrangement) in decision["dropped"][which]
            assert same != dropped, (which, planner.arrangement_name(arrangement), same)
            planner.forget()


@pytest.mark.parametrize("n_threads, B, bidirectional, peephole, lengths", [
    (2, 16, False, None, None),
    (3, 7, True, "full", [6, 5, 4, 3, 3, 1, 1]),   # the output gate's full peephole: two parts
    (2, 5, False, "diagonal", [6, 6, 6, 2, 1]),
    (4, 4, True, None, None)])
def test_every_share_of_the_elementwise_pass_gives_the_same_bits(n_threads, B, bidirectional,
                                                                  peephole, lengths,
                                                                  monkeypatch, fresh_planner):
    """Which thread runs which cells (units of every sample, or every unit of its samples)
    changes no bit: the canonical products with the team by rows, by units and by rows and
    samples give the same outputs and gradients (which read every region of the cache)."""
    from bnnslstm import _threads

    monkeypatch.setattr(_threads, "TEAM_MIN_WORK", 1)   # the team asked for, however small
    T, H = 6, 64   # each step at least planner.MIN_WORK multiply-adds: a planned problem
    rng = np.random.default_rng(4)
    layer = bl.LSTM(20, H, 2, bidirectional=bidirectional, peephole=peephole, seed=2)
    x = rng.standard_normal((T, B, 20)).astype(np.float32)
    dy = rng.standard_normal((T, B, (2 if bidirectional else 1) * H)).astype(np.float32)
    sizes = None if lengths is None else np.array([sum(n > t for n in lengths)
                                                   for t in range(T)], np.int32)
    params = bl.FilterParameters(n_threads=n_threads)
    D = 2 if bidirectional else 1
    results = []
    for split in (planner.ROWS, planner.UNITS, planner.ROWS_SAMPLES):
        with planner_mode("fastest"):
            planner.forget()
            layer.forward(x, batch_sizes=sizes, filter_params=params)   # the problem's key
            [decision] = planner.decisions()
            team = int(decision["problem"].split("team")[1].split()[0])
            assert team == n_threads
            forward = planner.canonical(H, B, D, team, False)._replace(split=split)
            backward = planner.canonical(H, B, D, team, True)
            planner.forget()
            planner.import_wisdom(json.dumps({"bnnslstm_wisdom": 1, "problems": {
                decision["problem"]: {"forward": named_arrangement(forward),
                                      "backward": named_arrangement(backward)}}}))
            y, (h, c) = layer.forward(x, batch_sizes=sizes, filter_params=params)
            dx, (dh0, dc0) = layer.backward(dy, filter_params=params)
            assert planner.decisions()[0]["forward"] == planner.arrangement_name(forward)
            parts = [y, h, c, dx, dh0, dc0] + [layer.grads[name] for name in sorted(layer.grads)]
            results.append(np.concatenate([np.ravel(part) for part in parts]))
    for result in results[1:]:
        np.testing.assert_array_equal(result, results[0])


def test_concurrent_first_calls_give_the_lone_calls_bits(fresh_planner):
    """Eight threads making a fresh problem's first calls at once (one runs the trial, the
    others the canonical arrangement meanwhile): every output is the lone call's."""
    import threading

    layer, x, _ = layer_problem(T=30, B=8, H=96)
    with planner_mode("heuristic"):
        lone = layer.forward(x, training=False)[0]
    planner.forget()
    results, barrier = [None] * 8, threading.Barrier(8)

    def call(k):
        barrier.wait()
        results[k] = [layer.forward(x, training=False)[0] for _ in range(4)]

    threads = [threading.Thread(target=call, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for outputs in results:
        for y in outputs:
            np.testing.assert_array_equal(y, lone)


def test_fastest_mode_keeps_its_choice_from_the_first_call(fresh_planner):
    """The opt-in mode may choose an arrangement that rounds differently, but a process
    gets the same bits from its first call on (the trial runs before the call), close to
    the canonical ones."""
    layer, x, dy = layer_problem(B=4)
    canonical = heuristic_result(layer, x, dy)
    with planner_mode("fastest"):
        first = train(layer, x, dy)
        np.testing.assert_allclose(first, canonical, rtol=1e-4, atol=2e-5)
        for _ in range(2):
            np.testing.assert_array_equal(train(layer, x, dy), first)
        [decision] = planner.decisions()
        assert decision["tuned"] and decision["dropped"] == {"forward": [], "backward": []}


def test_wisdom_round_trip(fresh_planner):
    layer, x, dy = layer_problem(B=4)
    tuned = train(layer, x, dy)
    before = planner.decisions()
    text = planner.export_wisdom()
    wisdom = json.loads(text)
    assert wisdom["bnnslstm_wisdom"] == 1
    assert set(wisdom["problems"]) == {d["problem"] for d in before}
    planner.forget()
    assert planner.decisions() == []
    assert planner.import_wisdom(text) == 1
    # the same arrangements, checked bit for bit by one untimed trial, the same bits
    np.testing.assert_array_equal(train(layer, x, dy), tuned)
    [after] = planner.decisions()
    assert after["source"] == "wisdom" and after["calls"] == 1
    assert (after["forward"], after["backward"]) == (before[0]["forward"], before[0]["backward"])
    assert json.loads(planner.export_wisdom())["problems"] == wisdom["problems"]


def test_wisdom_that_rounds_differently_is_refused_in_measure_mode(fresh_planner):
    """An imported arrangement whose bits differ from the canonical one's (found by a
    trial here) is replaced by the canonical arrangement: results stay canonical."""
    layer, x, dy = layer_problem(T=12, B=4, H=64)
    canonical = heuristic_result(layer, x, dy)
    train(layer, x, dy)
    [decision] = planner.decisions()
    names = {planner.arrangement_name(a): a for a in planner.candidates(64, 4, 1, 1, False)}
    if not decision["dropped"]["forward"]:
        pytest.skip("every forward candidate rounds as the canonical one with this BLAS")
    item = {"forward": named_arrangement(names[decision["dropped"]["forward"][0]])}
    planner.forget()
    planner.import_wisdom(json.dumps({"bnnslstm_wisdom": 1,
                                      "problems": {decision["problem"]: item}}))
    np.testing.assert_array_equal(train(layer, x, dy), canonical)
    [after] = planner.decisions()
    assert after["source"] == "wisdom refused: other bits"
    team = int(decision["problem"].split("team")[1].split()[0])
    assert after["forward"] == planner.arrangement_name(planner.canonical(64, 4, 1, team, False))


ONE_PROBLEM = '{"bnnslstm_wisdom": 1, "problems": {"k": %s}}'  # wisdom for one problem, "k"


@pytest.mark.parametrize("text, message", [
    ("not json", "not JSON"),
    ('{"problems": {}}', "not a bnnslstm wisdom text"),
    ('{"bnnslstm_wisdom": 1, "problems": {"k": {"sideways": {}}}}', "unknown pass 'sideways'"),
    (ONE_PROBLEM % '{"forward": {"form": "diagonal", "chunk": 0, "by_vectors": 0}}',
     "expected form, chunk, by_vectors"),
    (ONE_PROBLEM % '{"backward": {"form": "state-copy", "chunk": 0, "by_vectors": 0}}',
     "not an arrangement"),
    (ONE_PROBLEM % '{"forward": {"form": "scratch", "chunk": -4, "by_vectors": 0}}',
     "not an arrangement"),
])
def test_bad_wisdom_is_refused_and_changes_nothing(text, message, fresh_planner):
    with pytest.raises(ValueError, match=message):
        planner.import_wisdom(text)
    assert planner.decisions() == [] and json.loads(planner.export_wisdom())["problems"] == {}


def test_modes():
    with pytest.raises(ValueError, match="mode: expected one of"):
        planner.set_mode("fastest-ever")
    with planner_mode("heuristic"):
        assert planner.mode() == "heuristic"
        planner.forget()
        layer, x, dy = layer_problem()
        train(layer, x, dy)
        assert planner.decisions() == []  # nothing measured, nothing kept


_HASH = textwrap.dedent("""
    import hashlib, numpy as np, bnnslstm as bl
    rng = np.random.default_rng(1)
    layer = bl.LSTM(32, 96, 2, bidirectional=True, seed=3)
    x = rng.standard_normal((30, 6, 32)).astype(np.float32)
    y, (h, c) = layer.forward(x, training=True)
    dx, _ = layer.backward(np.ones_like(y))
    digest = hashlib.sha256(y.tobytes() + h.tobytes() + c.tobytes() + dx.tobytes())
    for name in sorted(layer.grads):
        digest.update(np.ascontiguousarray(layer.grads[name]).tobytes())
    print(digest.hexdigest(), bl.planner.decisions())
""")


def hashes(tmp_path, mode):
    env = dict(os.environ, BNNSLSTM_PLANNER=mode)
    runs = [subprocess.run([sys.executable, "-c", _HASH], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120, check=False)
            for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    return [run.stdout.split(" ", 1) for run in runs]


def test_every_process_gives_the_canonical_bits(tmp_path):
    """Two processes in heuristic mode and two in measure mode (each tuning on its own
    first call): the same digest of every output and gradient, four times."""
    heuristic = hashes(tmp_path, "heuristic")
    measured = hashes(tmp_path, "measure")
    assert heuristic[0][1].strip() == "[]" and "'tuned': True" in measured[0][1]
    assert {run[0] for run in heuristic + measured} == {heuristic[0][0]}
    refused = subprocess.run([sys.executable, "-c", "import bnnslstm"], cwd=tmp_path,
                             env=dict(os.environ, BNNSLSTM_PLANNER="quick"),
                             capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode != 0 and "BNNSLSTM_PLANNER: expected one of" in refused.stderr


def test_small_calls_are_not_timed(fresh_planner):
    layer = bl.LSTM(8, 8, seed=0)
    layer.forward(np.ones((20, 2, 8), np.float32), training=False)
    assert planner.decisions() == []
