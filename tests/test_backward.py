"""The backward (direct_apply_lstm_batch_backward) against float64 central finite
differences of the forward, with and without the training cache, SET and ACCUMULATE
flags, absent gradients and IEEE specials."""

import numpy as np
import pytest

import bnnslstm as bl
from helpers import Problem, make_delta
from reference import GATES
from test_forward import CUSTOM

EPS = 1e-6


class LossProblem(Problem):
    """A float64 problem (states drawn by default) with a random linear loss on y, h_T and
    c_T: sum(y ry) + sum(h_T rh) + sum(c_T rc), its dL/dy, dL/dh_T, dL/dc_T drawn after
    the problem's arrays."""

    def __init__(self, *, T=4, B=3, I=3, H=3, L=2, states=True, **features):
        super().__init__(T=T, B=B, I=I, H=H, L=L, states=states, dropout_seed=11, **features)
        self.ry = self.rng.standard_normal((T, B, self.D * H))
        if self.lengths is not None:  # dy at padded positions must be ignored: make it large
            for b, n in enumerate(self.lengths):
                self.ry[n:, b] = 1e3
        self.rh = self.rng.standard_normal((L, self.D, B, H))
        self.rc = self.rng.standard_normal((L, self.D, B, H))

    def loss(self):
        _, out, _ = self.forward(cache=False)
        return float(np.sum(self.y(out) * self.ry) + np.sum(out["h_n"] * self.rh)
                     + np.sum(out["c_n"] * self.rc))

    def gradients(self, cache=True, flags=bl.NDArrayFlags.BACKPROP_SET, fill=0.0):
        params, _, training_cache = self.forward(cache=cache)
        return self.backward(params, training_cache, dy=self.ry, dh_n=self.rh, dc_n=self.rc,
                             flags=flags, fill=fill)[1]

    def numeric(self, array, index):
        old = array[index]
        array[index] = old + EPS
        up = self.loss()
        array[index] = old - EPS
        down = self.loss()
        array[index] = old
        return (up - down) / (2 * EPS)


def tensors(problem, grads):
    """(name, parameter array, its analytic gradient) for every differentiable input."""
    w = problem.weights
    out = [("x", problem.x, grads["dx"])]
    if problem.h0 is not None:
        out += [("h0", problem.h0, grads["dh0"]), ("c0", problem.c0, grads["dc0"])]
    for gate in GATES:
        out.append((f"W0 {gate}", w["W"][gate][0], grads["W"][gate][0]))
        for layer in range(1, len(w["W"][gate])):
            out.append((f"W{layer} {gate}", w["W"][gate][layer], grads["W"][gate][1][layer - 1]))
        out.append((f"U {gate}", w["U"][gate], grads["U"][gate]))
        if w["C"][gate] is not None:
            out.append((f"C {gate}", w["C"][gate], grads["C"][gate]))
        if w["b"][gate] is not None:
            out.append((f"b {gate}", w["b"][gate], grads["b"][gate]))
    return out


def check_against_finite_differences(problem, samples=6, seed=1):
    grads = problem.gradients()
    rng = np.random.default_rng(seed)
    for name, array, analytic in tensors(problem, grads):
        flat = rng.choice(array.size, size=min(samples, array.size), replace=False)
        for f in flat:
            index = np.unravel_index(f, array.shape)
            numeric = problem.numeric(array, index)
            assert analytic[index] == pytest.approx(numeric, rel=1e-5, abs=1e-6), (name, index)
    return grads


@pytest.mark.parametrize("L,bidirectional", [(1, False), (1, True), (2, False), (2, True)])
@pytest.mark.parametrize("layout", ["SNE", "NSE"])
def test_gradients_stacked_bidirectional(L, bidirectional, layout):
    check_against_finite_differences(LossProblem(L=L, bidirectional=bidirectional, layout=layout))


@pytest.mark.parametrize("peephole", [
    "diagonal", "full",
    {"input": "full", "forget": "diagonal", "candidate": None, "output": "full"},
    {"input": "diagonal", "forget": None, "candidate": "full", "output": "diagonal"}])
def test_gradients_peepholes(peephole):
    check_against_finite_differences(LossProblem(L=2, bidirectional=True, peephole=peephole))


def test_gradients_custom_activations():
    check_against_finite_differences(LossProblem(L=2, bidirectional=True, activations=CUSTOM,
                                                 peephole="diagonal"))


@pytest.mark.parametrize("fn,alpha,beta", [
    (bl.ActivationFunction.TANH, 0, 0), (bl.ActivationFunction.SOFTPLUS, 1.0, 1.5),
    (bl.ActivationFunction.SILU, 0, 0), (bl.ActivationFunction.GELU, 0, 0),
    (bl.ActivationFunction.ERF, 0, 0), (bl.ActivationFunction.LOG_SIGMOID, 0, 0),
    (bl.ActivationFunction.SELU, 0, 0), (bl.ActivationFunction.CELU, 1.3, 0),
    (bl.ActivationFunction.TANH_SHRINK, 0, 0),
    (bl.ActivationFunction.GELU_APPROXIMATION_SIGMOID, 0, 0),
    (bl.ActivationFunction.GELU_APPROXIMATION, 0.7978845608, 0.044715),
    (bl.ActivationFunction.LINEAR_WITH_BIAS, 0.5, 0.1),
])
def test_gradients_each_smooth_activation_in_every_gate(fn, alpha, beta):
    activations = {g: (int(fn), alpha, beta) for g in GATES + ("hidden",)}
    check_against_finite_differences(LossProblem(L=1, H=2, activations=activations,
                                                 peephole="diagonal"), samples=3)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_gradients_variable_batch(bidirectional):
    check_against_finite_differences(
        LossProblem(T=5, B=4, L=2, bidirectional=bidirectional, lengths=[5, 3, 3, 1],
                    peephole="full"))


def test_gradients_dropout():
    check_against_finite_differences(LossProblem(L=3, bidirectional=True, dropout=0.4))


def test_gradients_without_initial_states():
    check_against_finite_differences(LossProblem(L=2, bidirectional=True, states=False))


@pytest.mark.parametrize("features", [
    {"L": 2, "bidirectional": True},
    {"L": 3, "bidirectional": True, "dropout": 0.3, "peephole": "full", "lengths": [4, 4, 2],
     "activations": CUSTOM},
])
def test_same_gradients_with_and_without_cache(features):
    problem = LossProblem(**features)
    with_cache = problem.gradients(cache=True)
    without = problem.gradients(cache=False)
    for (name, _, a), (_, _, b) in zip(tensors(problem, with_cache), tensors(problem, without)):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_accumulate_adds_and_set_overwrites():
    problem = LossProblem(L=2, bidirectional=True, peephole="diagonal")
    fresh = problem.gradients()
    accumulated = problem.gradients(flags=bl.NDArrayFlags.BACKPROP_ACCUMULATE, fill=2.0)
    overwritten = problem.gradients(flags=bl.NDArrayFlags.BACKPROP_SET, fill=2.0)
    runs = (tensors(problem, x) for x in (fresh, accumulated, overwritten))
    for (name, _, g), (_, _, a), (_, _, s) in zip(*runs):
        np.testing.assert_allclose(a, g + 2.0, rtol=1e-13, atol=1e-13, err_msg=name)
        np.testing.assert_array_equal(s, g, err_msg=name)


def test_backward_does_not_write_layer_params():
    problem = LossProblem(L=2, bidirectional=True, dropout=0.2)
    params, out = problem.params()
    before = out["y_store"].copy(), out["h_n"].copy()
    delta, _ = make_delta(params, problem.weights, dy=problem.ry)
    bl.direct_apply_lstm_batch_backward(params, delta)
    np.testing.assert_array_equal(out["y_store"], before[0])
    np.testing.assert_array_equal(out["h_n"], before[1])


def test_none_written_descriptors_are_skipped():
    problem = LossProblem(L=1)
    full = problem.gradients()
    params, _ = problem.params()
    delta, grads = make_delta(params, problem.weights, dy=problem.ry, dh_n=problem.rh,
                              dc_n=problem.rc)
    delta.input_descriptor.data_desc = None
    delta.input_gate.hw_desc = None
    delta.output_gate.iw_desc = [None, None]
    bl.direct_apply_lstm_batch_backward(params, delta)
    assert np.all(grads["dx"] == 0) and np.all(grads["U"]["input"] == 0)
    assert np.all(grads["W"]["output"][0] == 0)
    np.testing.assert_array_equal(grads["U"]["forget"], full["U"]["forget"])
    np.testing.assert_array_equal(grads["dh0"], full["dh0"])


def test_float32_gradients_match_float64():
    problem = LossProblem(L=2, bidirectional=True, peephole="full")
    g64 = problem.gradients()
    problem.x = problem.x.astype(np.float32)
    problem.h0 = problem.h0.astype(np.float32)
    problem.c0 = problem.c0.astype(np.float32)
    problem.ry, problem.rh, problem.rc = (a.astype(np.float32)
                                          for a in (problem.ry, problem.rh, problem.rc))
    w = problem.weights
    for part in ("W", "U", "C", "b"):
        for gate in GATES:
            v = w[part][gate]
            if isinstance(v, list):
                w[part][gate] = [a.astype(np.float32) for a in v]
            elif v is not None:
                w[part][gate] = v.astype(np.float32)
    g32 = problem.gradients()
    for (name, _, a), (_, _, b) in zip(tensors(problem, g64), tensors(problem, g32)):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("special", [np.nan, np.inf, -np.inf])
def test_ieee_specials_stay_in_their_sample(special):
    """A NaN or infinity in one sample's x: the other samples' dL/dx, dL/dh0 and dL/dc0 are
    those of the same problem without it (samples are independent), and nothing crashes."""
    clean = Problem(T=5, B=3, I=3, H=4, seed=1, states=True)
    problem = Problem(T=5, B=3, I=3, H=4, seed=1, states=True)
    problem.x[2, 1, 0] = special
    dy = np.ones((5, 3, 4))
    grads = []
    for p in (clean, problem):
        params, _, cache = p.forward()
        grads.append(p.backward(params, cache, dy=dy)[1])
    for name in ("dx", "dh0", "dc0"):
        others = grads[1][name][..., [0, 2], :]
        assert np.all(np.isfinite(others)), name
        np.testing.assert_allclose(others, grads[0][name][..., [0, 2], :], rtol=1e-12,
                                   atol=1e-14, err_msg=name)
