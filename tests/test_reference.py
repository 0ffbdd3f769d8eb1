"""The numpy reference itself, against hand computation, symmetry and PyTorch."""

import math

import numpy as np
import pytest

from reference import GATES, batch_sizes_from_lengths, lstm_forward, random_weights


def sigmoid(v):
    return 1 / (1 + math.exp(-v))


def test_single_step_by_hand():
    w = {"W": {}, "U": {}, "C": {}, "b": {}}
    values = {"input": (0.5, -0.3, 0.1), "forget": (0.2, 0.4, -0.2),
              "candidate": (-0.7, 0.6, 0.3), "output": (0.9, -0.1, 0.05)}
    for gate, (wx, uh, b) in values.items():
        w["W"][gate] = [np.array([[[wx]]])]
        w["U"][gate] = np.array([[[[uh]]]])
        w["b"][gate] = np.array([[[b]]])
        w["C"][gate] = np.array([[[0.25]]]) if gate == "output" else None
    x, h0, c0 = 1.5, -0.4, 0.8
    y, h_T, c_T, _ = lstm_forward(np.array([[[x]]]), w, np.array([[[[h0]]]]), np.array([[[[c0]]]]))
    a = {g: values[g][0] * x + values[g][1] * h0 + values[g][2] for g in GATES}
    i, f, g = sigmoid(a["input"]), sigmoid(a["forget"]), math.tanh(a["candidate"])
    c = f * c0 + i * g
    o = sigmoid(a["output"] + 0.25 * c)
    assert c_T[0, 0, 0, 0] == pytest.approx(c, rel=1e-14)
    assert h_T[0, 0, 0, 0] == pytest.approx(o * math.tanh(c), rel=1e-14)
    assert y[0, 0, 0] == pytest.approx(o * math.tanh(c), rel=1e-14)


def test_reverse_direction_is_forward_on_reversed_time():
    rng = np.random.default_rng(0)
    w2 = random_weights(rng, 3, 4, 1, 2)
    x = rng.standard_normal((5, 2, 3))
    y, h_T, _, _ = lstm_forward(x, w2, bidirectional=True)

    def direction_1(v):
        return None if v is None else [a[1:2] for a in v] if isinstance(v, list) else v[:, 1:2]

    backward_only = {k: {g: direction_1(v) for g, v in part.items()} for k, part in w2.items()}
    y_rev, h_rev, _, _ = lstm_forward(x[::-1], backward_only)
    np.testing.assert_allclose(y[:, :, 4:], y_rev[::-1], rtol=1e-14)
    np.testing.assert_allclose(h_T[0, 1], h_rev[0, 0], rtol=1e-14)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_batch_equals_each_sample_alone(bidirectional):
    rng = np.random.default_rng(1)
    D = 2 if bidirectional else 1
    w = random_weights(rng, 3, 2, 2, D, peephole="full")
    lengths = [5, 3, 1]
    x = rng.standard_normal((5, 3, 3))
    h0 = rng.standard_normal((2, D, 3, 2))
    c0 = rng.standard_normal((2, D, 3, 2))
    y, h_T, c_T, _ = lstm_forward(x, w, h0, c0, batch_sizes_from_lengths(lengths, 5),
                                  bidirectional=bidirectional)
    for b, n in enumerate(lengths):
        yb, hb, cb, _ = lstm_forward(x[:n, b:b + 1], w, h0[:, :, b:b + 1], c0[:, :, b:b + 1],
                                     bidirectional=bidirectional)
        np.testing.assert_allclose(y[:n, b], yb[:, 0], rtol=1e-13)
        assert np.all(y[n:, b] == 0)
        np.testing.assert_allclose(h_T[:, :, b], hb[:, :, 0], rtol=1e-13)
        np.testing.assert_allclose(c_T[:, :, b], cb[:, :, 0], rtol=1e-13)


def test_forget_everything_keeps_no_memory():
    rng = np.random.default_rng(2)
    w = random_weights(rng, 2, 3, 1, 1)
    w["b"]["forget"][:] = -1e4  # f = 0: c' = i * g does not depend on c
    x = rng.standard_normal((1, 2, 2))
    h0 = np.zeros((1, 1, 2, 3))
    _, _, c_a, _ = lstm_forward(x, w, h0, np.zeros((1, 1, 2, 3)))
    _, _, c_b, _ = lstm_forward(x, w, h0, np.full((1, 1, 2, 3), 5.0))
    np.testing.assert_allclose(c_a, c_b, atol=1e-300)
    assert np.all(np.abs(c_a) > 0)


def test_reference_matches_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    m = torch.nn.LSTM(3, 4, 2, bidirectional=True).double()
    sd = {k: v.detach().numpy() for k, v in m.state_dict().items()}
    w = {"W": {}, "U": {}, "C": {g: None for g in GATES}, "b": {}}

    def both(name, l, k):  # gate k's rows of layer l's tensor, both directions
        return np.stack([sd[f"{name}_l{l}{s}"][k * 4:(k + 1) * 4] for s in ("", "_reverse")])

    for k, gate in enumerate(GATES):
        w["W"][gate] = [both("weight_ih", l, k) for l in range(2)]
        w["U"][gate] = np.stack([both("weight_hh", l, k) for l in range(2)])
        w["b"][gate] = np.stack([both("bias_ih", l, k) + both("bias_hh", l, k) for l in range(2)])
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 2, 3))
    h0 = rng.standard_normal((2, 2, 2, 4))
    c0 = rng.standard_normal((2, 2, 2, 4))
    y_ref, (h_ref, c_ref) = m(torch.tensor(x), (torch.tensor(h0.reshape(4, 2, 4)),
                                                torch.tensor(c0.reshape(4, 2, 4))))
    y, h_T, c_T, _ = lstm_forward(x, w, h0, c0, bidirectional=True)
    np.testing.assert_allclose(y, y_ref.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h_T.reshape(4, 2, 4), h_ref.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c_T.reshape(4, 2, 4), c_ref.detach().numpy(), rtol=1e-12, atol=1e-14)
