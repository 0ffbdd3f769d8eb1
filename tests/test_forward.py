"""The forward (direct_apply_lstm_batch_training_caching) against the plain-numpy reference
of tests/reference.py: stacks, directions, layouts, peepholes, biases, activations,
per-step batch sizes, dropout, the training cache's contents, IEEE specials and random
problems."""

import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import bnnslstm as bl
from helpers import FEATURES, Problem, random_problem, y_time_major
from reference import GATES

TOLERANCE = {np.float32: 3e-5, np.float64: 1e-11}
CUSTOM = {  # gate -> (fn, alpha, beta): every gate with a different elementwise function
    "input": (int(bl.ActivationFunction.HARD_SIGMOID), 0.2, 0.5),
    "forget": (int(bl.ActivationFunction.SIGMOID), 0.0, 0.0),
    "candidate": (int(bl.ActivationFunction.SCALED_TANH), 1.5, 0.7),
    "output": (int(bl.ActivationFunction.SOFTSIGN), 0.0, 0.0),
    "hidden": (int(bl.ActivationFunction.ELU), 0.8, 0.0),
}


def run_case(*, cache=True, **problem):
    """A forward call on ``Problem(**problem)`` (states drawn unless ``states=False``)
    against the reference: ``(problem, params, out, training cache, reference trace)``."""
    problem = Problem(**{"states": True, **problem})
    params, out, training_cache = problem.forward(cache=cache)
    y, h_n, c_n, trace = problem.reference()
    tol = TOLERANCE[problem.dtype.type]
    np.testing.assert_allclose(problem.y(out), y, rtol=tol, atol=tol)
    np.testing.assert_allclose(out["h_n"], h_n, rtol=tol, atol=tol)
    np.testing.assert_allclose(out["c_n"], c_n, rtol=tol, atol=tol)
    return problem, params, out, training_cache, trace


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["SNE", "NSE"])
@pytest.mark.parametrize("L,bidirectional", [(1, False), (1, True), (2, False), (3, True)])
def test_stacks_and_directions(dtype, layout, L, bidirectional):
    run_case(L=L, bidirectional=bidirectional, dtype=dtype, layout=layout)


@pytest.mark.parametrize("peephole", [
    "diagonal", "full",
    {"input": "full", "forget": "diagonal", "candidate": None, "output": "full"},
    {"input": None, "forget": None, "candidate": "diagonal", "output": "diagonal"}])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_peepholes(peephole, bidirectional):
    run_case(L=2, bidirectional=bidirectional, peephole=peephole)


@pytest.mark.parametrize("bias", [
    False, {"input": True, "forget": False, "candidate": True, "output": False}])
def test_optional_biases(bias):
    run_case(L=2, bias=bias)


def test_without_initial_states():
    run_case(L=2, bidirectional=True, states=False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_custom_activations(dtype):
    run_case(L=2, bidirectional=True, activations=CUSTOM, peephole="diagonal", dtype=dtype)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("layout", ["SNE", "NSE"])
def test_variable_batch(bidirectional, layout):
    _, _, out, _, _ = run_case(T=6, B=4, L=2, bidirectional=bidirectional, layout=layout,
                                 lengths=[6, 4, 4, 1], peephole="full")
    y = y_time_major(out, layout)
    assert np.all(y[1:, 3] == 0) and np.all(y[4:, 1:] == 0)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_dropout_between_layers(bidirectional):
    run_case(L=3, bidirectional=bidirectional, dropout=0.4, dropout_seed=123)


def test_dropout_same_mask_with_and_without_cache():
    a = run_case(L=2, dropout=0.5, dropout_seed=5, cache=True)[2]
    b = run_case(L=2, dropout=0.5, dropout_seed=5, cache=False)[2]
    np.testing.assert_array_equal(a["y_store"], b["y_store"])
    c = run_case(L=2, dropout=0.5, dropout_seed=6, cache=False)[2]
    assert not np.array_equal(a["y_store"], c["y_store"])


def test_dropout_mask_statistics():
    out = np.empty((50, 40, 30), np.float32)
    bl.dropout_mask(1, 1, 0.3, out)
    kept = out != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(out[kept], 1 / 0.7, rtol=1e-6)
    again = np.empty_like(out)
    bl.dropout_mask(1, 1, 0.3, again)
    np.testing.assert_array_equal(out, again)
    other_layer = np.empty_like(out)
    bl.dropout_mask(1, 2, 0.3, other_layer)
    assert 0.4 < ((other_layer != 0) == kept).mean() < 0.7


@pytest.mark.parametrize("case", range(8))
def test_random_shapes_and_features(case):
    rng = np.random.default_rng(100 + case)
    T, B = int(rng.integers(1, 7)), int(rng.integers(1, 5))
    lengths = sorted(rng.integers(1, T + 1, size=B).tolist(), reverse=True)
    lengths[0] = T
    kinds = [None, "diagonal", "full"]
    run_case(
        T=T, B=B, I=int(rng.integers(1, 6)), H=int(rng.integers(1, 6)), L=int(rng.integers(1, 4)),
        bidirectional=bool(rng.integers(2)), dtype=[np.float32, np.float64][case % 2],
        layout=["SNE", "NSE"][case // 2 % 2],
        peephole={g: kinds[int(rng.integers(3))] for g in GATES},
        bias={g: bool(rng.integers(2)) for g in GATES},
        lengths=lengths if rng.integers(2) else None,
        dropout=float(rng.uniform(0, 0.6)) if rng.integers(2) else 0.0,
        activations=CUSTOM if rng.integers(2) else None,
        seed=case,
    )


def test_optional_outputs_are_not_written():
    problem = Problem(T=4, B=2, I=3, H=2, seed=3)
    params, out = problem.params()
    params.output_descriptor.data_desc = None
    params.output_descriptor.cell_state_desc = None
    bl.direct_apply_lstm_batch_training_caching(params)
    assert np.all(np.isnan(out["y_store"])) and np.all(np.isnan(out["c_n"]))
    _, h_n, _, _ = problem.reference()
    np.testing.assert_allclose(out["h_n"], h_n, rtol=1e-12)


def test_cache_regions_hold_what_the_reference_traced():
    _, params, _, cache, trace = run_case(T=4, B=3, L=2, bidirectional=True, activations=CUSTOM,
                                         lengths=[4, 2, 1], peephole="diagonal")
    views = {(r.name, r.layer): np.frombuffer(cache, np.float64, int(np.prod(r.shape)),
                                              r.offset).reshape(r.shape)
             for r in bl.training_cache_layout(params)}
    close = functools.partial(np.testing.assert_allclose, atol=1e-12)
    for layer in range(2):
        for d in range(2):
            tr = trace[layer, d]
            close(views["gates", layer][:, :, d].reshape(4, 3, 4, -1), tr["gates"])
            close(views["preact", layer][:, :, d].reshape(4, 3, 4, -1), tr["gates_pre"])
            close(views["cells", layer][:, :, d], tr["c"])
            close(views["output", layer][..., d * 3:(d + 1) * 3], tr["h"])


def test_single_call_is_deterministic():
    first = run_case(T=8, B=5, I=6, H=7, L=2, bidirectional=True, dtype=np.float32)[2]
    second = run_case(T=8, B=5, I=6, H=7, L=2, bidirectional=True, dtype=np.float32)[2]
    np.testing.assert_array_equal(first["y_store"], second["y_store"])


def test_more_than_256_layers():
    """The cache's region offsets of a deep stack (beyond the plan's on-stack table) go on
    the heap: 300 layers with a cache, against the reference."""
    run_case(T=2, B=1, I=2, H=2, L=300, states=False)


@pytest.mark.parametrize("special", [np.nan, np.inf, -np.inf])
def test_ieee_specials_propagate_like_the_reference(special):
    """A NaN or infinity in one element of x reaches exactly the outputs the reference's
    reaches (that sample from that step on), the other values unchanged; nothing crashes."""
    problem = Problem(T=5, B=3, I=3, H=4, seed=1)
    problem.x[2, 1, 0] = special
    _, out, _ = problem.forward()
    y = problem.y(out)
    ref_y, _, _, _ = problem.reference()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref_y))
    np.testing.assert_allclose(y[~np.isnan(y)], ref_y[~np.isnan(ref_y)], rtol=1e-12, atol=1e-14)
    assert np.all(np.isfinite(y[:2])) and np.all(np.isfinite(y[:, [0, 2]]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FEATURES)
def test_random_valid_parameters_match_the_reference(f):
    """Drawn sizes, stacks, directions, layouts, peepholes, biases, dropout and lengths:
    y and h_T equal the reference's."""
    problem = random_problem(f)
    _, out, _ = problem.forward(cache=False)
    y, h_n, _, _ = problem.reference()
    np.testing.assert_allclose(problem.y(out), y, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(out["h_n"], h_n, rtol=1e-11, atol=1e-12)
