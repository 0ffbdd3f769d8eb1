"""IEEE semantics: NaN and infinities travel through every kernel build and both element
types as through plain arithmetic. The NaN pattern of every output and gradient is the
float64 reference's (tests/reference.py, whose numpy arithmetic is IEEE's) and, for the
default activations, torch.nn.LSTM's; the finite values beside them are the reference's
values. Every activation function maps NaN to NaN and has a NaN derivative there."""

import math

import numpy as np
import pytest

import bnnslstm as bl
from bnnslstm import _plan
from bnnslstm._kernels import available_builds
from helpers import Problem
from reference import GATES
from reference_activations import numpy_activation, numpy_activation_derivative
from test_activations import ELEMENTWISE, activation

BUILDS = available_builds()
SPECIALS = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30, 0.0, -0.0, 0.5])


@pytest.fixture(params=BUILDS)
def build(request):
    """Each kernel build this machine runs (portable, AVX2, AVX-512), in turn."""
    _plan.use_kernels(request.param)
    yield request.param
    _plan.use_kernels()


def assert_same_pattern(got, want, what, rtol):
    """NaN exactly where ``want`` has NaN, the same infinities, and the finite values close."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    nan_got, nan_want = np.isnan(got), np.isnan(want)
    assert np.array_equal(nan_got, nan_want), (
        f"{what}: NaN at {np.argwhere(nan_got & ~nan_want).tolist()} where the reference has "
        f"none, none at {np.argwhere(nan_want & ~nan_got).tolist()} where it has NaN")
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol, equal_nan=True, err_msg=what)


# ------------------------------------------------------------------------- one value at a time
@pytest.mark.parametrize("fn", ELEMENTWISE, ids=lambda f: f.name)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_activation_keeps_nan_and_gives_the_limits(fn, dtype):
    """f(NaN) is NaN and f'(NaN) is NaN; at +-inf and +-1e30 f and f' are the reference's
    (NaN where its formula gives 0 * inf, as any arithmetic does)."""
    act = activation(fn)
    x = SPECIALS.astype(dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        got = bl.apply_activation(x, act)
        slope = bl.apply_activation(x, act, derivative=True)
    assert np.isnan(got[0]) and np.isnan(slope[0])
    assert_same_pattern(got, numpy_activation(fn, x, act.alpha, act.beta), "f", 1e-6)
    assert_same_pattern(slope, numpy_activation_derivative(fn, x, act.alpha, act.beta), "f'", 1e-6)


@pytest.mark.parametrize("tanh", [False, True], ids=["sigmoid", "tanh"])
def test_fast_float32_sigmoid_and_tanh_at_the_specials(tanh):
    """The float32 chunk functions (the default gates' own code path): NaN stays NaN, the
    infinities give 0/1 (sigmoid) and -1/1 (tanh) exactly, as torch's."""
    from bnnslstm._kernels import _activations

    x = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30, 89.0, -89.0, 88.5, -88.5], np.float32)
    out = np.empty_like(x)
    _activations.fast_float32(x, out, tanh)
    with np.errstate(over="ignore"):
        wide = x.astype(np.float64)
        want = np.tanh(wide) if tanh else 1 / (1 + np.exp(-wide))
    assert np.isnan(out[0])
    np.testing.assert_array_equal(out[1:5], want[1:5].astype(np.float32))
    np.testing.assert_allclose(out[5:], want[5:], atol=1e-37, rtol=0)


# ------------------------------------------------------------------------- whole calls
PLACES = ["x", "h0", "c0", "W", "U", "C", "cdiag", "b", "dy", "dh_n", "dc_n"]


def everything(problem, dtype, *, dy, dh_n, dc_n):
    """The library's outputs and gradients of ``problem`` computed in ``dtype``, and the
    float64 reference's, as (name, got, want) triples."""
    cast = Problem.__new__(Problem)
    cast.__dict__.update(problem.__dict__)
    cast.dtype = np.dtype(dtype)
    cast.x = problem.x.astype(dtype)
    cast.h0 = None if problem.h0 is None else problem.h0.astype(dtype)
    cast.c0 = None if problem.c0 is None else problem.c0.astype(dtype)
    cast.weights = {k: {g: (None if v is None else [a.astype(dtype) for a in v] if k == "W"
                            else v.astype(dtype)) for g, v in part.items()}
                    for k, part in problem.weights.items()}
    params, out, cache = cast.forward()
    _, grads = cast.backward(params, cache, dy=dy.astype(dtype),
                             dh_n=None if dh_n is None else dh_n.astype(dtype),
                             dc_n=None if dc_n is None else dc_n.astype(dtype))
    y, h_n, c_n, _ = problem.reference()
    ref = problem.reference_backward(dy=dy, dh_n=dh_n, dc_n=dc_n)
    found = [("y", cast.y(out), y), ("h_n", out["h_n"], h_n), ("c_n", out["c_n"], c_n),
             ("dx", grads["dx"], ref["dx"]), ("dh0", grads["dh0"], ref["dh0"]),
             ("dc0", grads["dc0"], ref["dc0"])]
    for gate in GATES:
        found.append((f"dU[{gate}]", grads["U"][gate], ref["dU"][gate]))
        found.append((f"dW[{gate}]", grads["W"][gate][0], ref["dW"][gate][0]))
        if grads["C"][gate] is not None:
            found.append((f"dC[{gate}]", grads["C"][gate], ref["dC"][gate]))
        if grads["b"][gate] is not None:
            found.append((f"db[{gate}]", grads["b"][gate], ref["db"][gate]))
    return found


def special_problem(place, value, *, states=True, activations=None, seed=3):
    """A float64 problem with ``value`` at one element of ``place`` (the first gate's
    weights for a weight), and its output gradients: (problem, dy, dh_n, dc_n)."""
    peephole = {"input": "full", "forget": "diagonal", "candidate": "diagonal", "output": "full"}
    problem = Problem(T=4, B=3, I=3, H=4, L=1, peephole=peephole, states=states, seed=seed,
                      activations=activations)
    rng = np.random.default_rng(seed + 1)
    dy = rng.standard_normal((4, 3, 4))
    dh_n, dc_n = rng.standard_normal((2, 1, 1, 3, 4))
    target = {"x": problem.x, "h0": problem.h0, "c0": problem.c0, "dy": dy, "dh_n": dh_n,
              "dc_n": dc_n, "W": problem.weights["W"]["forget"][0],
              "U": problem.weights["U"]["candidate"], "C": problem.weights["C"]["input"],
              "cdiag": problem.weights["C"]["forget"], "b": problem.weights["b"]["output"]}[place]
    target[tuple(min(1, n - 1) for n in target.shape)] = value
    return problem, dy, dh_n, dc_n


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1e30], ids=["nan", "inf", "-inf",
                                                                       "huge"])
@pytest.mark.parametrize("place", PLACES)
def test_a_special_value_anywhere_travels_as_in_the_reference(place, value, dtype, build):
    """One NaN, infinity or huge value in x, an initial state, a weight of each kind, a
    bias, or an output gradient: forward and backward give the reference's NaN pattern
    (and its infinities and finite values), in every kernel build and both types."""
    problem, dy, dh_n, dc_n = special_problem(place, value)
    rtol = 2e-4 if dtype == np.float32 else 1e-9
    with np.errstate(invalid="ignore", over="ignore"):
        found = everything(problem, dtype, dy=dy, dh_n=dh_n, dc_n=dc_n)
    for name, got, want in found:
        assert_same_pattern(got, want, f"{name} ({build})", rtol)
    if math.isnan(value):  # the placement reaches the results: the check has teeth
        assert any(np.isnan(want).any() for _, _, want in found)


@pytest.mark.parametrize("place", ["U", "C"])
def test_a_nan_weight_reaches_the_first_step_without_initial_states(place, build):
    """With no h0 and c0 (zeros), the first step's products are still taken: U 0 and C 0
    are NaN in every row holding a NaN, as with a stored zero state (and torch)."""
    problem, dy, dh_n, dc_n = special_problem(place, np.nan, states=False)
    for dtype in (np.float32, np.float64):
        found = everything(problem, dtype, dy=dy, dh_n=dh_n, dc_n=dc_n)
        name, y, want = found[0]
        assert np.isnan(want[0]).any()
        assert_same_pattern(y, want, f"y ({build})", 2e-4)


@pytest.mark.filterwarnings("ignore::bnnslstm.IdentityActivationsWarning")  # chosen here
@pytest.mark.parametrize("fn", ELEMENTWISE, ids=lambda f: f.name)
def test_every_activation_in_every_gate_keeps_nan(fn, build):
    """A whole call with ``fn`` as every gate's and the hidden activation, a NaN in one
    sample's x and an infinity in another's: the reference's pattern in both types."""
    act = activation(fn)
    triple = (int(fn), act.alpha, act.beta)
    activations = {name: triple for name in GATES + ("hidden",)}
    problem, dy, dh_n, dc_n = special_problem("x", np.nan, activations=activations)
    problem.x[2, 2, 0] = np.inf
    with np.errstate(invalid="ignore", over="ignore"):
        for dtype, rtol in ((np.float32, 2e-3), (np.float64, 1e-9)):
            for name, got, want in everything(problem, dtype, dy=dy, dh_n=dh_n, dc_n=dc_n):
                assert_same_pattern(got, want, f"{name} {fn.name} ({build}, {dtype.__name__})",
                                    rtol)


# ------------------------------------------------------------------------- against PyTorch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("place", ["x", "h0", "c0", "weight_ih_l0", "weight_hh_l0", "bias_ih_l0",
                                   "weight_ih_l1", "dy"])
def test_torch_gives_the_same_pattern(place, value, dtype):
    """bnnslstm.LSTM against torch.nn.LSTM with one special value: y, h_n, c_n and every
    gradient have NaN at the same places (and the same values elsewhere)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    layer = bl.LSTM(3, 4, num_layers=2, dtype=dtype, seed=2)
    x = rng.standard_normal((5, 2, 3)).astype(dtype)
    h0, c0 = (rng.standard_normal((2, 2, 4)).astype(dtype) for _ in range(2))
    dy = rng.standard_normal((5, 2, 4)).astype(dtype)
    arrays = {"x": x, "h0": h0, "c0": c0, "dy": dy}
    if place in arrays:
        arrays[place][(1,) * arrays[place].ndim] = value
    else:  # the layer's one bias is torch's bias_ih (its bias_hh is zero)
        target = layer.parameters()[place.replace("bias_ih", "bias")]
        target[(1,) * target.ndim] = value
    module = layer.to_torch()
    tx, th0, tc0 = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    ty, (thn, tcn) = module(tx, (th0, tc0))
    ty.backward(torch.from_numpy(dy))
    with np.errstate(invalid="ignore", over="ignore"):
        y, (hn, cn) = layer.forward(x, h0, c0)
        dx, (dh0, dc0) = layer.backward(dy)
    rtol = 1e-4 if dtype == np.float32 else 1e-9
    pairs = [("y", y, ty), ("h_n", hn, thn), ("c_n", cn, tcn), ("dx", dx, tx.grad),
             ("dh0", dh0, th0.grad), ("dc0", dc0, tc0.grad)]
    grads = layer.grads
    for name, parameter in module.named_parameters():
        if name.startswith("bias_hh"):
            continue
        pairs.append((name, grads[name.replace("bias_ih", "bias")], parameter.grad))
    for name, got, want in pairs:
        assert_same_pattern(got, want.detach().numpy(), name, rtol)
