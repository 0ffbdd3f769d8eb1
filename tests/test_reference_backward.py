"""The numpy reference backward (and the activations' derivatives) against float64 finite
differences of the numpy reference forward: the reference is checked on its own, without
bnnslstm, before test_differential.py trusts it."""

import math

import numpy as np
import pytest

from reference import GATES, batch_sizes_from_lengths, lstm_forward, random_weights
from reference_activations import FUNCTIONS, kinks, numpy_activation, numpy_activation_derivative
from reference_backward import lstm_backward
from test_activations import KINK_SIDES, PARAMS

EPS = 1e-6
SMOOTH = {  # every gate and the hidden activation different, all differentiable everywhere
    "input": (16, 1.0, 1.5),    # SOFTPLUS
    "forget": (3, 0, 0),        # SIGMOID
    "candidate": (5, 1.5, 0.7),  # SCALED_TANH
    "output": (35, 0, 0),       # GELU_APPROXIMATION_SIGMOID
    "hidden": (34, 0, 0),       # GELU
}


@pytest.mark.parametrize("fn", sorted(FUNCTIONS))
def test_derivatives_match_finite_differences(fn):
    alpha, beta = PARAMS.get(fn, (math.nan, math.nan))
    x = np.linspace(-7, 7, 401)
    for kink in kinks(fn, alpha, beta):
        x = x[np.abs(x - kink) > 1e-3]
    numeric = (numpy_activation(fn, x + EPS, alpha, beta)
               - numpy_activation(fn, x - EPS, alpha, beta)) / (2 * EPS)
    np.testing.assert_allclose(numpy_activation_derivative(fn, x, alpha, beta), numeric,
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("fn,alpha,beta,x,want", KINK_SIDES)
def test_derivatives_at_kinks_take_the_documented_side(fn, alpha, beta, x, want):
    alpha, beta = (math.nan if v is None else v for v in (alpha, beta))
    assert numpy_activation_derivative(fn, [x], alpha, beta)[0] == pytest.approx(want, rel=1e-15)
    assert any(x == pytest.approx(k) for k in kinks(fn, alpha, beta)) or fn == 24  # CELU: no kink


class Case:
    """Random float64 inputs and a random linear loss on y, h_T and c_T."""

    def __init__(self, *, T=4, B=3, I=3, H=2, L=2, bidirectional=False, peephole=None, bias=True,
                 activations=None, lengths=None, dropout=False, states=True, seed=0):
        rng = np.random.default_rng(seed)
        D = 2 if bidirectional else 1
        self.weights = random_weights(rng, I, H, L, D, peephole=peephole, bias=bias)
        self.x = rng.standard_normal((T, B, I))
        self.h0 = rng.standard_normal((L, D, B, H)) if states else None
        self.c0 = rng.standard_normal((L, D, B, H)) if states else None
        self.kw = {"batch_sizes": None if lengths is None else batch_sizes_from_lengths(lengths, T),
                       "activations": activations, "bidirectional": bidirectional,
                       "dropout_masks": None if not dropout else
                       [None] + [rng.choice([0.0, 1.6], size=(T, B, D * H)) for _ in range(1, L)]}
        self.dy = rng.standard_normal((T, B, D * H))
        if lengths is not None:  # dy at padded positions must be ignored
            for b, n in enumerate(lengths):
                self.dy[n:, b] = 1e3
        self.dh_n = rng.standard_normal((L, D, B, H))
        self.dc_n = rng.standard_normal((L, D, B, H))

    def loss(self):
        y, h_T, c_T, _ = lstm_forward(self.x, self.weights, self.h0, self.c0, **self.kw)
        return float(np.sum(y * self.dy) + np.sum(h_T * self.dh_n) + np.sum(c_T * self.dc_n))

    def tensors(self, grads):
        """(name, array, its analytic gradient) for every input of the forward."""
        out = [("x", self.x, grads["dx"])]
        if self.h0 is not None:
            out += [("h0", self.h0, grads["dh0"]), ("c0", self.c0, grads["dc0"])]
        w = self.weights
        for g in GATES:
            out += [(f"W{l} {g}", w["W"][g][l], grads["dW"][g][l]) for l in range(len(w["W"][g]))]
            out.append((f"U {g}", w["U"][g], grads["dU"][g]))
            for part in ("C", "b"):
                if w[part][g] is not None:
                    out.append((f"{part} {g}", w[part][g], grads[f"d{part}"][g]))
        return out


def check(case, samples=5):
    grads = lstm_backward(case.x, case.weights, case.h0, case.c0, dy=case.dy, dh_n=case.dh_n,
                          dc_n=case.dc_n, **case.kw)
    rng = np.random.default_rng(1)
    for name, array, analytic in case.tensors(grads):
        assert analytic.shape == array.shape, name
        for flat in rng.choice(array.size, size=min(samples, array.size), replace=False):
            index = np.unravel_index(flat, array.shape)
            old = array[index]
            array[index] = old + EPS
            up = case.loss()
            array[index] = old - EPS
            down = case.loss()
            array[index] = old
            numeric = (up - down) / (2 * EPS)
            assert analytic[index] == pytest.approx(numeric, rel=1e-6, abs=1e-7), (name, index)


@pytest.mark.parametrize("L,bidirectional", [(1, False), (2, True), (3, False)])
def test_stacked_and_bidirectional(L, bidirectional):
    check(Case(L=L, bidirectional=bidirectional))


@pytest.mark.parametrize("peephole", [
    "diagonal", "full",
    {"input": "full", "forget": "diagonal", "candidate": None, "output": "full"}])
def test_peepholes_and_custom_activations(peephole):
    check(Case(L=2, bidirectional=True, peephole=peephole, activations=SMOOTH,
               bias={"input": True, "forget": False, "candidate": True, "output": False}))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_per_step_batch_sizes_dropout_and_no_initial_states(bidirectional):
    check(Case(T=5, B=4, L=3, bidirectional=bidirectional, peephole="full", lengths=[5, 3, 3, 1],
               dropout=True, states=False))


def test_no_output_gradient_gives_zeros():
    case = Case(L=2, bidirectional=True)
    grads = lstm_backward(case.x, case.weights, case.h0, case.c0, **case.kw)
    assert not np.any(grads["dx"]) and not np.any(grads["dU"]["input"]) and not np.any(grads["dh0"])
