"""Activation functions and derivatives against numpy and finite differences."""

import math

import numpy as np
import pytest

import bnnslstm as bl
from bnnslstm._kernels import _activations
from bnnslstm.activations import PARAMETERS_USED, check_activation
from reference_activations import FUNCTIONS, numpy_activation

F = bl.ActivationFunction
PARAMS = {  # typical alpha, beta per function (NaN where unused)
    F.LEAKY_RECTIFIED_LINEAR: (0.1, math.nan), F.SCALED_TANH: (1.7159, 0.6667),
    F.LINEAR: (0.5, math.nan), F.CLAMP: (-1.0, 1.0),
    F.GELU_APPROXIMATION: (math.sqrt(2 / math.pi), 0.044715),
    F.HARD_SIGMOID: (0.2, 0.5), F.SOFTPLUS: (1.0, 1.5), F.ELU: (1.0, math.nan),
    F.CLAMPED_LEAKY_RECTIFIED_LINEAR: (0.1, 2.0), F.LINEAR_WITH_BIAS: (0.5, 0.25),
    F.CELU: (1.3, math.nan), F.HARD_SHRINK: (0.5, math.nan), F.SOFT_SHRINK: (0.5, math.nan),
    F.THRESHOLD: (0.3, -1.0),
}
ELEMENTWISE = sorted(PARAMETERS_USED)
KINKS = {  # points where a derivative is not defined: keep finite differences away from them
    F.RECTIFIED_LINEAR: [0], F.LEAKY_RECTIFIED_LINEAR: [0], F.ABS: [0], F.CLAMP: [-1, 1],
    F.HARD_SIGMOID: [-2.5, 2.5], F.CLAMPED_LEAKY_RECTIFIED_LINEAR: [0, 2],
    F.HARD_SHRINK: [-0.5, 0.5], F.SOFT_SHRINK: [-0.5, 0.5], F.THRESHOLD: [0.3],
    F.HARD_SWISH: [-3, 3], F.RELU6: [0, 6],
    F.ELU: [0], F.CELU: [0], F.SELU: [0],
}


def activation(fn):
    alpha, beta = PARAMS.get(fn, (math.nan, math.nan))
    return bl.Activation(fn, alpha, beta)


def sample_points(fn, n=400):
    x = np.linspace(-7, 7, n)
    for kink in KINKS.get(fn, []):
        x = x[np.abs(x - kink) > 1e-3]
    return x


def test_reference_covers_every_elementwise_function():
    assert sorted(FUNCTIONS) == [int(f) for f in ELEMENTWISE]
    assert len(ELEMENTWISE) + len(bl.enums.NON_ELEMENTWISE) == len(F)


@pytest.mark.parametrize("fn", ELEMENTWISE, ids=lambda f: f.name)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values_match_numpy(fn, dtype):
    act = activation(fn)
    x = sample_points(fn).astype(dtype)
    got = bl.apply_activation(x, act)
    assert got.dtype == dtype and got.shape == x.shape
    want = numpy_activation(fn, x.astype(np.float64), act.alpha, act.beta)
    tol = 2e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("fn", ELEMENTWISE, ids=lambda f: f.name)
def test_derivatives_match_finite_differences(fn):
    act = activation(fn)
    x = sample_points(fn)
    h = 1e-6
    numeric = (numpy_activation(fn, x + h, act.alpha, act.beta)
               - numpy_activation(fn, x - h, act.alpha, act.beta)) / (2 * h)
    got = bl.apply_activation(x, act, derivative=True)
    np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-7)


# (fn, alpha, beta, x, f'(x)): the table "Derivatives at kinks" in docs/activations.rst
KINK_SIDES = [
    (F.RECTIFIED_LINEAR, None, None, 0.0, 0.0), (F.LEAKY_RECTIFIED_LINEAR, 0.1, None, 0.0, 1.0),
    (F.ABS, None, None, 0.0, 0.0), (F.CLAMP, -1.0, 1.0, -1.0, 1.0), (F.CLAMP, -1.0, 1.0, 1.0, 1.0),
    (F.HARD_SIGMOID, 0.2, 0.5, -2.5, 0.2), (F.HARD_SIGMOID, 0.2, 0.5, 2.5, 0.2),
    (F.ELU, 0.5, None, 0.0, 1.0), (F.CLAMPED_LEAKY_RECTIFIED_LINEAR, 0.1, 2.0, 0.0, 1.0),
    (F.CLAMPED_LEAKY_RECTIFIED_LINEAR, 0.1, 2.0, 2.0, 0.0),
    (F.CLAMPED_LEAKY_RECTIFIED_LINEAR, 0.5, -1.0, -2.0, 0.0),
    (F.SELU, None, None, 0.0, 1.0507009873554805), (F.CELU, 0.5, None, 0.0, 1.0),
    (F.HARD_SHRINK, 0.5, None, 0.5, 0.0), (F.HARD_SHRINK, 0.5, None, -0.5, 0.0),
    (F.SOFT_SHRINK, 0.5, None, 0.5, 0.0), (F.SOFT_SHRINK, 0.5, None, -0.5, 0.0),
    (F.THRESHOLD, 0.3, -1.0, 0.3, 0.0), (F.HARD_SWISH, None, None, -3.0, 0.0),
    (F.HARD_SWISH, None, None, 3.0, 1.0), (F.RELU6, None, None, 0.0, 0.0),
    (F.RELU6, None, None, 6.0, 0.0),
]


@pytest.mark.parametrize("fn,alpha,beta,x,want", KINK_SIDES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_derivative_at_kinks_takes_the_documented_side(fn, alpha, beta, x, want, dtype):
    act = bl.Activation(fn, math.nan if alpha is None else alpha,
                        math.nan if beta is None else beta)
    got = bl.apply_activation(np.array([x], dtype), act, derivative=True)[0]
    assert got == pytest.approx(want, rel=1e-7 if dtype == np.float32 else 1e-15)


def test_hard_swish_is_apples_and_reads_no_parameter():
    """BNNS: HardSwish(x) = x ReLU6(x + 3) / 6; alpha and beta are never read."""
    exact = [-1 / 3, 7 / 24, 5 / 3]  # to 7 decimals: [-0.3333333, 0.2916667, 1.6666667]
    for act in (bl.Activation(F.HARD_SWISH, 0.6, -0.74), bl.Activation(F.HARD_SWISH)):
        np.testing.assert_allclose(bl.apply_activation([-2, 0.5, 2], act), exact, rtol=1e-15)
        np.testing.assert_allclose(bl.apply_activation([-2, 0.5, 2], act),
                                   [-1 / 3, 0.2916667, 1.6666667], rtol=2e-7)
        np.testing.assert_allclose(bl.apply_activation(np.array([-2, 0.5, 2], np.float32), act),
                                   exact, rtol=1e-7)
    assert check_activation(bl.Activation(F.HARD_SWISH, 0.6, -0.74)) == (
        int(F.HARD_SWISH), 0.0, 0.0)
    x = np.array([-5.0, -3.0, -1.5, 0.0, 1.5, 3.0, 5.0])
    np.testing.assert_allclose(bl.apply_activation(x, bl.Activation(F.HARD_SWISH)),
                               [0, 0, -0.375, 0, 1.125, 3, 5], rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(bl.apply_activation(x, bl.Activation(F.HARD_SWISH), derivative=True),
                               [0, 0, 0, 0.5, 1, 1, 1], rtol=1e-15, atol=1e-15)


def test_sigmoid_and_softplus_do_not_overflow():
    x = np.array([-1000.0, -80.0, 0.0, 80.0, 1000.0])
    sig = bl.apply_activation(x, bl.Activation(F.SIGMOID))
    assert np.all(np.isfinite(sig)) and sig[0] == 0 and sig[-1] == 1
    soft = bl.apply_activation(x, bl.Activation(F.SOFTPLUS, 1.0, 1.0))
    np.testing.assert_allclose(soft, [0, np.log1p(np.exp(-80)), np.log(2), 80, 1000], rtol=1e-15)
    logsig = bl.apply_activation(x, bl.Activation(F.LOG_SIGMOID))
    np.testing.assert_allclose(logsig, [-1000, -80, -np.log(2), -np.log1p(np.exp(-80)), 0],
                               rtol=1e-15)


@pytest.mark.parametrize("fn", sorted(bl.enums.NON_ELEMENTWISE), ids=lambda f: f.name)
def test_non_elementwise_functions_are_refused(fn):
    with pytest.raises(bl.BNNSError, match=f"activation.function: {fn.name} is not elementwise"):
        bl.apply_activation([1.0], bl.Activation(fn, 1.0, 1.0))


@pytest.mark.parametrize("function,match", [(99, "99 is not an ActivationFunction"),
                                            ("tanh", "is not an ActivationFunction"),
                                            (True, "is not an ActivationFunction")])
def test_unknown_functions_are_refused(function, match):
    with pytest.raises(bl.BNNSError, match=match):
        check_activation(bl.Activation(function), "output_gate.activation")


def test_parameters_must_be_finite_only_where_used():
    assert check_activation(bl.Activation(F.TANH), "g") == (int(F.TANH), 0.0, 0.0)
    assert check_activation(bl.Activation(F.SCALED_TANH, 2.0, 0.5), "g") == (
        int(F.SCALED_TANH), 2.0, 0.5)
    match = r"input_gate.activation.beta: SCALED_TANH needs a finite beta, got nan"
    with pytest.raises(bl.BNNSError, match=match):
        check_activation(bl.Activation(F.SCALED_TANH, 2.0), "input_gate.activation")
    with pytest.raises(bl.BNNSError, match=r"hidden_activation.alpha: CELU divides by alpha"):
        check_activation(bl.Activation(F.CELU, 0.0), "hidden_activation")


def test_integer_input_is_converted_to_float64():
    out = bl.apply_activation(np.array([[1, -2]]), bl.Activation(F.RECTIFIED_LINEAR))
    assert out.dtype == np.float64 and out.tolist() == [[1.0, 0.0]]


@pytest.mark.parametrize("tanh", [False, True])
def test_fast_float32_rows_stay_within_their_documented_bound(tanh):
    x = np.linspace(-100, 100, 400_001).astype(np.float32)
    out = np.empty_like(x)
    _activations.fast_float32(x, out, tanh)
    exact = np.tanh(x.astype(np.float64)) if tanh else 1 / (1 + np.exp(-x.astype(np.float64)))
    assert np.max(np.abs(out - exact)) < 3e-7
    small = np.abs(x) < 1e-3  # tanh keeps its relative accuracy near 0
    if tanh:
        np.testing.assert_allclose(out[small & (x != 0)], exact[small & (x != 0)], rtol=3e-7)
