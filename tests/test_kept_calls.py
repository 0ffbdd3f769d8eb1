"""The everyday layer's kept calls (bnnslstm/_calls.py): a call of a shape the layer ran
before reuses that call's checked plan, moving its sequences and states onto the new
arrays (Plan.move_forward / move_backward). Every kept call must give what a call built
anew gives, read the weights as they are now, and take nothing but arrays of the type,
extents and strides it was checked for."""

import numpy as np
import pytest

import bnnslstm as bl
from bnnslstm import _plan
from reference import lstm_forward

CONFIGS = [
    dict(),
    dict(num_layers=2, bidirectional=True),
    dict(batch_first=True, peephole="full"),
    dict(peephole="diagonal", bias=False, dtype=np.float64),
    dict(gate_activations={"candidate": "softsign"}, hidden_activation="relu6"),
]


def fresh_twin(layer, **config):
    """A new layer with ``layer``'s weights: every call of it builds its plan anew."""
    twin = bl.LSTM(5, 6, seed=9, **config)
    twin.load_state_dict(layer.state_dict())
    return twin


@pytest.mark.parametrize("config", CONFIGS, ids=range(len(CONFIGS)))
def test_kept_calls_give_what_new_calls_give(config):
    """Five calls of one shape on new arrays each time (inference, training forward and
    backward, with and without initial states): each equals, bit for bit, the same call on
    a layer that has never run that shape."""
    layer = bl.LSTM(5, 6, seed=1, **config)
    rng = np.random.default_rng(0)
    dtype = config.get("dtype", np.float32)
    L, D = config.get("num_layers", 1), 2 if config.get("bidirectional") else 1
    first = config.get("batch_first", False)
    for call in range(5):
        x = rng.standard_normal((3, 7, 5) if first else (7, 3, 5)).astype(dtype)
        h0, c0 = (rng.standard_normal((L * D, 3, 6)).astype(dtype) for _ in range(2))
        dy = rng.standard_normal(x.shape[:2] + (D * 6,)).astype(dtype)
        states = (h0, c0) if call % 2 else (None, None)
        twin = fresh_twin(layer, **config)
        np.testing.assert_array_equal(layer.forward(x, *states, training=False)[0],
                                      twin.forward(x, *states, training=False)[0])
        got = layer.forward(x, *states, training=True)
        want = twin.forward(x, *states, training=True)
        for a, b in zip((got[0],) + got[1], (want[0],) + want[1]):
            np.testing.assert_array_equal(a, b)
        back, back_twin = layer.backward(dy), twin.backward(dy)
        for a, b in zip((back[0],) + back[1], (back_twin[0],) + back_twin[1]):
            np.testing.assert_array_equal(a, b)
        for name, grad in layer.grads.items():
            np.testing.assert_array_equal(grad, twin.grads[name], err_msg=name)


def test_kept_calls_read_the_weights_as_they_are_now():
    """Weights, biases and peepholes changed in place (load_state_dict, or writing into
    parameters()) between two calls of one shape: the second call uses the new values
    (the packed biases and diagonal peepholes are packed again at every call)."""
    layer = bl.LSTM(4, 3, peephole="diagonal", seed=2)
    x = np.random.default_rng(1).standard_normal((6, 2, 4)).astype(np.float32)
    layer.forward(x, training=False)
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_l0", "weight_ch_l0"):
        layer.parameters()[name][...] *= -1.5
        y = layer.forward(x, training=False)[0]
        weights = {k: v.astype(np.float64) for k, v in layer.parameters().items()}
        want = reference_of(weights, x)
        np.testing.assert_allclose(y, want, rtol=2e-5, atol=2e-6, err_msg=name)


def reference_of(named, x):
    """The float64 reference's y for a one-layer, diagonal-peephole layer's parameters."""
    H = named["weight_hh_l0"].shape[1]
    gates = ("input", "forget", "candidate", "output")
    weights = {"W": {}, "U": {}, "C": {}, "b": {}}
    for k, gate in enumerate(gates):
        rows = slice(k * H, (k + 1) * H)
        weights["W"][gate] = [named["weight_ih_l0"][rows][None]]
        weights["U"][gate] = named["weight_hh_l0"][rows][None, None]
        weights["C"][gate] = named["weight_ch_l0"][rows][None, None]
        weights["b"][gate] = named["bias_l0"][rows][None, None]
    return lstm_forward(x.astype(np.float64), weights)[0]


def test_a_kept_plan_takes_only_the_layout_it_was_checked_for():
    """Plan.move_forward refuses (BNNSError, the slot untouched) an array of another type,
    extent or stride, a read-only array where it writes, and None for a slot it has (or
    an array for one it has not)."""
    layer = bl.LSTM(4, 3, seed=0)
    x = np.ones((5, 2, 4), np.float32)
    layer.forward(x, training=False)
    [kept] = layer._calls.free[("forward", (5, 2, 4), True, True, False)]
    plan = kept.plan
    y, hn, cn = np.empty((5, 2, 3), np.float32), np.empty((1, 1, 2, 3), np.float32), \
        np.empty((1, 1, 2, 3), np.float32)
    plan.move_forward(x, y, None, None, hn, cn)   # the layout it was made for
    readonly = y.copy()
    readonly.flags.writeable = False
    bad = [(x.astype(np.float64), y), (x[:4], y), (x[:, ::-1].copy()[:, :1], y),
           (np.ones((5, 2, 8), np.float32)[:, :, ::2], y), (x, readonly), (None, y)]
    for bad_x, bad_y in bad:
        with pytest.raises(bl.BNNSError):
            plan.move_forward(bad_x, bad_y, None, None, hn, cn)
    with pytest.raises(bl.BNNSError, match="absent when the plan was made"):
        plan.move_forward(x, y, np.zeros((1, 1, 2, 3), np.float32), None, hn, cn)
    assert isinstance(plan, _plan.Plan)


def test_calls_too_small_for_a_team_never_wake_it():
    """A layer whose steps are too small for a team runs every call on the calling thread:
    the pool of a fresh process creates no worker for it."""
    from helpers import run_python

    script = ("import numpy as np, bnnslstm as bl\n"
              "from bnnslstm import _plan\n"
              "layer = bl.LSTM(8, 8)\n"
              "for _ in range(100):\n"
              "    layer.forward(np.ones((1, 1, 8), np.float32), training=False)\n"
              "print(_plan.kernels.team_pool())\n")
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        run = run_python(script, cwd=folder)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "0"
