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
from bnnslstm.lstm import _team, _threads
from helpers import Problem, planner_mode, y_time_major
from reference import GATES

FORWARD = [(form, chunk, by_vectors)
           for form in (0, 1, 2, 3) for chunk in (0, 16) for by_vectors in (-1, 0, 1)]
BACKWARD = [(0, chunk, by_vectors) for chunk in (0, 16) for by_vectors in (-1, 0, 1)]
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
}


def pin(params, n_threads, forward, backward):
    """Wisdom that gives this call's problem the two arrangements."""
    plan = _plan.make_plan(params)
    key = plan.problem(_team(plan, _threads(bl.FilterParameters(n_threads=n_threads))))

    def named(arrangement):
        form, chunk, by_vectors = arrangement
        return {"form": planner.FORMS[form], "chunk": chunk, "by_vectors": by_vectors}

    item = {"forward": named(forward), "backward": named(backward)}
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


def test_measure_mode_tunes_then_keeps_its_choice(fresh_planner):
    layer, x, dy = layer_problem()
    with planner_mode("heuristic"):
        heuristic = train(layer, x, dy)
    first = train(layer, x, dy)  # tuning: steps in turn with every candidate
    np.testing.assert_allclose(first, heuristic, rtol=1e-4, atol=2e-5)
    for _ in range(10):
        if all(d["tuned"] for d in planner.decisions()):
            break
        train(layer, x, dy)
    [decision] = planner.decisions()
    assert decision["tuned"] and decision["source"] == "measured"
    names = {planner.arrangement_name(a) for a in planner.candidates(64, 8, 1, 1, False)}
    assert decision["forward"] in names and decision["backward"] != "-"
    assert decision["tuning_seconds"] >= 0 and 1 <= decision["calls"] <= 10
    tuned = train(layer, x, dy)
    np.testing.assert_allclose(tuned, heuristic, rtol=1e-4, atol=2e-5)
    for _ in range(2):  # a fixed choice: bit for bit from call to call
        np.testing.assert_array_equal(train(layer, x, dy), tuned)


def test_wisdom_round_trip(fresh_planner):
    layer, x, dy = layer_problem(B=4)
    for _ in range(12):
        train(layer, x, dy)
        if all(d["tuned"] for d in planner.decisions()):
            break
    before = planner.decisions()
    tuned = train(layer, x, dy)
    text = planner.export_wisdom()
    wisdom = json.loads(text)
    assert wisdom["bnnslstm_wisdom"] == 1
    assert set(wisdom["problems"]) == {d["problem"] for d in before}
    planner.forget()
    assert planner.decisions() == []
    assert planner.import_wisdom(text) == 1
    # the same arrangements, nothing timed
    np.testing.assert_array_equal(train(layer, x, dy), tuned)
    [after] = planner.decisions()
    assert after["source"] == "wisdom" and after["calls"] == 0 and after["tuning_seconds"] == 0
    assert (after["forward"], after["backward"]) == (before[0]["forward"], before[0]["backward"])
    assert json.loads(planner.export_wisdom())["problems"] == wisdom["problems"]


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
        planner.set_mode("fastest")
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


def test_heuristic_mode_is_bit_identical_across_processes(tmp_path):
    env = dict(os.environ, BNNSLSTM_PLANNER="heuristic")
    runs = [subprocess.run([sys.executable, "-c", _HASH], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120, check=False)
            for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    first, second = (run.stdout.split(" ", 1) for run in runs)
    assert first == second and first[1].strip() == "[]"
    env["BNNSLSTM_PLANNER"] = "fastest"
    refused = subprocess.run([sys.executable, "-c", "import bnnslstm"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode != 0 and "BNNSLSTM_PLANNER: expected one of" in refused.stderr


def test_small_calls_are_not_timed(fresh_planner):
    layer = bl.LSTM(8, 8, seed=0)
    layer.forward(np.ones((20, 2, 8), np.float32), training=False)
    assert planner.decisions() == []
