"""Cross-checks with torch.nn.LSTM (skipped when PyTorch is not installed)."""

import numpy as np
import pytest

import bnnslstm as bl

torch = pytest.importorskip("torch")


def torch_run(module, x, h0, c0, batch_sizes=None, dy=None):
    """Outputs and gradients of a float64 torch LSTM for time-major x."""
    x_t = torch.tensor(x, requires_grad=True)
    h_t = torch.tensor(h0, requires_grad=True)
    c_t = torch.tensor(c0, requires_grad=True)
    if batch_sizes is None:
        inp = x_t.transpose(0, 1) if module.batch_first else x_t
        y, (h_n, c_n) = module(inp, (h_t, c_t))
        if module.batch_first:
            y = y.transpose(0, 1)
    else:
        lengths = [int(np.sum(np.asarray(batch_sizes) > b)) for b in range(x.shape[1])]
        packed = torch.nn.utils.rnn.pack_padded_sequence(x_t, lengths)
        y_packed, (h_n, c_n) = module(packed, (h_t, c_t))
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(y_packed, total_length=x.shape[0])
    loss = (y * torch.tensor(dy)).sum() + h_n.sum() * 0.5 - c_n.sum() * 0.25
    loss.backward()
    grads = {name: p.grad.numpy().copy() for name, p in module.named_parameters()}
    return (y.detach().numpy(), h_n.detach().numpy(), c_n.detach().numpy(),
            x_t.grad.numpy(), h_t.grad.numpy(), c_t.grad.numpy(), grads)


@pytest.mark.parametrize("num_layers,bidirectional,batch_first,packed", [
    (1, False, False, False), (2, False, False, False), (1, True, False, False),
    (2, True, False, False), (2, True, True, False), (2, False, False, True),
    (2, True, False, True),
])
def test_matches_torch_outputs_and_gradients(num_layers, bidirectional, batch_first, packed):
    torch.manual_seed(0)
    T, B, I, H = 6, 4, 5, 7
    module = torch.nn.LSTM(I, H, num_layers, bidirectional=bidirectional).double()
    D = 2 if bidirectional else 1
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((num_layers * D, B, H))
    c0 = rng.standard_normal((num_layers * D, B, H))
    dy = rng.standard_normal((T, B, D * H))
    batch_sizes = [4, 4, 3, 3, 1, 1] if packed else None
    if batch_sizes is not None:
        lengths = [int(np.sum(np.asarray(batch_sizes) > b)) for b in range(B)]
        for b, n in enumerate(lengths):
            dy[n:, b] = 0  # torch's padded outputs are constants; ours ignore dy there
    ref = torch_run(module, x, h0, c0, batch_sizes, dy)

    lstm = bl.LSTM.from_torch(module, dtype=np.float64)
    lstm.batch_first = batch_first
    xin = x.transpose(1, 0, 2) if batch_first else x
    y, (h_n, c_n) = lstm.forward(xin, h0, c0, batch_sizes=batch_sizes)
    if batch_first:
        y = y.transpose(1, 0, 2)
    np.testing.assert_allclose(y, ref[0], atol=1e-12)
    np.testing.assert_allclose(h_n, ref[1], atol=1e-12)
    np.testing.assert_allclose(c_n, ref[2], atol=1e-12)
    dx, (dh0, dc0) = lstm.backward(dy.transpose(1, 0, 2) if batch_first else dy,
                                   np.full_like(h_n, 0.5), np.full_like(c_n, -0.25))
    if batch_first:
        dx = dx.transpose(1, 0, 2)
    np.testing.assert_allclose(dx, ref[3], atol=1e-11)
    np.testing.assert_allclose(dh0, ref[4], atol=1e-11)
    np.testing.assert_allclose(dc0, ref[5], atol=1e-11)
    grads = lstm.grads
    for name, g in ref[6].items():
        if name.startswith(("bias_ih", "bias_hh")):
            np.testing.assert_allclose(grads["bias" + name[len("bias_ih"):]], g, atol=1e-11,
                                       err_msg=name)
        else:
            np.testing.assert_allclose(grads[name], g, atol=1e-11, err_msg=name)


def test_float32_matches_torch():
    torch.manual_seed(3)
    module = torch.nn.LSTM(16, 32, 2, bidirectional=True)
    x = np.random.default_rng(0).standard_normal((10, 8, 16)).astype(np.float32)
    y_ref, _ = module(torch.tensor(x))
    y, _ = bl.LSTM.from_torch(module).forward(x, training=False)
    np.testing.assert_allclose(y, y_ref.detach().numpy(), atol=2e-6)


def test_to_torch_round_trip():
    lstm = bl.LSTM(3, 4, 2, bidirectional=True, dtype=np.float64, seed=0)
    module = lstm.to_torch()
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    y_ref, _ = module(torch.tensor(x))
    y, _ = lstm.forward(x, training=False)
    np.testing.assert_allclose(y, y_ref.detach().numpy(), atol=1e-12)
    back = bl.LSTM.from_torch(module, dtype=np.float64)
    for name, array in lstm.parameters().items():
        np.testing.assert_array_equal(back.parameters()[name], array)


def test_numpy_layer_state_dict_loads_into_torch_and_back():
    """bnnslstm.LSTM.state_dict() is torch.nn.LSTM's (after torch.from_numpy), both ways."""
    layer = bl.LSTM(3, 4, 2, bidirectional=True, dtype=np.float64, seed=2)
    module = torch.nn.LSTM(3, 4, 2, bidirectional=True).double()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    y_torch, (h_torch, _) = module(torch.from_numpy(x))
    y, (h_n, _) = layer(x, training=False)
    np.testing.assert_allclose(y, y_torch.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h_n, h_torch.detach().numpy(), rtol=1e-12, atol=1e-12)
    other = bl.LSTM(3, 4, 2, bidirectional=True, dtype=np.float64, seed=9)
    other.load_state_dict(module.state_dict())  # tensors, two biases summed
    np.testing.assert_allclose(other(x, training=False)[0], y, rtol=1e-12, atol=1e-12)
