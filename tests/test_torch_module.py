"""bnnslstm.torch.LSTM against torch.nn.LSTM and torch.autograd.gradcheck (skipped without
PyTorch)."""

import copy
import gc
import inspect
import pathlib
import pickle
import subprocess
import sys
import weakref

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.nn.utils.rnn import pack_padded_sequence  # noqa: E402

import bnnslstm as bl  # noqa: E402
import bnnslstm.torch as bt  # noqa: E402

# the kernels and oneDNN sum in different orders: float32 agrees to a few ulps of the
# largest intermediate, float64 to rounding
TOLERANCE = {torch.float32: {"rtol": 2e-4, "atol": 2e-5},
             torch.float64: {"rtol": 1e-9, "atol": 1e-11}}


def twins(I, H, L, bidirectional, batch_first=False, bias=True, dtype=torch.float64):
    """A torch.nn.LSTM and a bnnslstm.torch.LSTM with the same weights (loaded from torch's)."""
    torch.manual_seed(0)
    kwargs = {"bias": bias, "batch_first": batch_first, "bidirectional": bidirectional,
              "dtype": dtype}
    reference = torch.nn.LSTM(I, H, L, **kwargs)
    module = bt.LSTM(I, H, L, **kwargs)
    module.load_state_dict(reference.state_dict())
    return reference, module


def run(module, input, x, hx, weights):
    """Outputs and the gradients of a fixed random linear functional of every output."""
    output, (h_n, c_n) = module(input, hx)
    y = output.data if isinstance(output, torch.nn.utils.rnn.PackedSequence) else output
    loss = sum((out * w[:out.numel()].view_as(out)).sum() for out, w in zip((y, h_n, c_n), weights))
    leaves = [x] + list(hx or ())
    grads = torch.autograd.grad(loss, leaves + list(module.parameters()))
    return [y, h_n, c_n] + list(grads)


def make_input(kind, T, B, I, dtype, batch_first, generator):
    """(module input, the leaf tensor it comes from)."""
    x = torch.randn(T, B, I, dtype=dtype, generator=generator)
    if kind == "unbatched":
        x = x[:, 0]
    elif batch_first and kind == "tensor":
        x = x.transpose(0, 1).contiguous()
    x.requires_grad_(True)
    if kind in ("packed", "packed-unsorted"):
        lengths = [T, T - 1, T - 3, 1][:B] if kind == "packed" else [T - 3, T, 1, T - 1][:B]
        return pack_padded_sequence(x, lengths, enforce_sorted=(kind == "packed")), x
    return x, x


CASES = [  # (num_layers, bidirectional, batch_first, input kind, hx given)
    (1, False, False, "tensor", False), (1, False, False, "tensor", True),
    (2, False, False, "tensor", True), (1, True, False, "tensor", True),
    (3, True, False, "tensor", False), (2, True, True, "tensor", True),
    (1, False, True, "tensor", False), (2, False, False, "packed", True),
    (2, True, False, "packed", False),
    (2, True, False, "packed-unsorted", True), (1, False, True, "packed-unsorted", True),
    (2, True, False, "unbatched", True), (1, False, True, "unbatched", False),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("L,bidirectional,batch_first,kind,with_hx", CASES)
def test_outputs_and_every_gradient_equal_torch(L, bidirectional, batch_first, kind, with_hx,
                                                dtype):
    T, B, I, H = 7, 4, 5, 6
    D = 2 if bidirectional else 1
    reference, module = twins(I, H, L, bidirectional, batch_first, dtype=dtype)
    results = []
    for m in (reference, module):
        generator = torch.Generator().manual_seed(1)
        input, x = make_input(kind, T, B, I, dtype, batch_first, generator)
        state_shape = (L * D, H) if kind == "unbatched" else (L * D, B, H)
        hx = None
        if with_hx:
            hx = tuple(torch.randn(state_shape, dtype=dtype, generator=generator)
                       .requires_grad_(True) for _ in range(2))
        weights = [torch.randn(T * B * D * H, dtype=dtype, generator=generator) for _ in range(3)]
        results.append(run(m, input, x, hx, weights))
    names = ["output", "h_n", "c_n", "dx"] + (["dh0", "dc0"] if with_hx else [])
    names += [n for n, _ in reference.named_parameters()]
    assert len(results[0]) == len(results[1]) == len(names)
    for name, expected, got in zip(names, *results):
        torch.testing.assert_close(got, expected, **TOLERANCE[dtype],
                                   msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("kind", ["tensor", "packed-unsorted"])
def test_input_gradient_equals_torch(kind):
    T, B, I, H = 6, 4, 3, 5
    reference, module = twins(I, H, 2, True)
    grads = []
    for m in (reference, module):
        generator = torch.Generator().manual_seed(2)
        input, x = make_input(kind, T, B, I, torch.float64, False, generator)
        output, (h_n, c_n) = m(input)
        y = output.data if kind != "tensor" else output
        (y.sin().sum() + h_n.sum() - c_n.square().sum()).backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[1], grads[0], **TOLERANCE[torch.float64])


def test_same_seed_same_initial_weights_as_torch():
    torch.manual_seed(3)
    reference = torch.nn.LSTM(4, 5, 2, bidirectional=True)
    torch.manual_seed(3)
    module = bt.LSTM(4, 5, 2, bidirectional=True)
    assert list(module.state_dict()) == list(reference.state_dict())
    for (name, a), (_, b) in zip(reference.state_dict().items(), module.state_dict().items()):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=name)


def test_state_dict_round_trips_both_ways():
    reference = torch.nn.LSTM(3, 4, 2, bidirectional=True, bias=True)
    module = bt.LSTM(3, 4, 2, bidirectional=True)
    module.load_state_dict(reference.state_dict())  # torch -> bnnslstm, strict
    back = torch.nn.LSTM(3, 4, 2, bidirectional=True)
    back.load_state_dict(module.state_dict())  # bnnslstm -> torch, strict
    x = torch.randn(5, 2, 3)
    with torch.no_grad():
        expected = reference(x)[0]
        torch.testing.assert_close(module(x)[0], expected, **TOLERANCE[torch.float32])
        torch.testing.assert_close(back(x)[0], expected, rtol=0, atol=0)
    peep = bt.LSTM(3, 4, 2, bidirectional=True, peephole="diagonal")
    missing = peep.load_state_dict(reference.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["weight_ch_l0", "weight_ch_l0_reverse", "weight_ch_l1",
                               "weight_ch_l1_reverse"]


def test_peephole_parameters_are_named_and_shaped_like_the_numpy_layer():
    IFO = ("input", "forget", "output")
    for peephole, gates, shape in (("diagonal", None, (8,)), ("full", None, (8, 2)),
                                   ("diagonal", IFO, (6,)), ("full", ("forget",), (2, 2))):
        module = bt.LSTM(3, 2, 2, bidirectional=True, peephole=peephole, peephole_gates=gates)
        shapes = {name: tuple(p.shape) for name, p in module.named_parameters() if "_ch_" in name}
        layer = bl.LSTM(3, 2, 2, bidirectional=True, peephole=peephole,
                        peephole_gates=gates).parameters()
        assert shapes == {name: shape for name in layer if "_ch_" in name}
        assert len(shapes) == 4


def test_three_gate_peephole_trains_without_a_candidate_peephole():
    """peephole_gates=("input", "forget", "output"): the module's gradients are the numpy
    layer's (which test_layer checks against the reference with no candidate peephole), and
    an optimiser step leaves the module computing what a four-gate module with a zero
    candidate peephole computes: there is no candidate weight to move."""
    IFO = ("input", "forget", "output")
    torch.manual_seed(2)
    module = bt.LSTM(3, 4, 2, bidirectional=True, peephole="diagonal", peephole_gates=IFO,
                     dtype=torch.float64)
    layer = bl.LSTM.from_torch(module, dtype=np.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    y, _ = module(x)
    dy = torch.randn_like(y)
    y.backward(dy)
    layer.forward(x.numpy())
    layer.backward(dy.numpy())
    for name, p in module.named_parameters():
        expected = layer.grads[name if not name.startswith("bias") else "bias" + name[7:]]
        torch.testing.assert_close(p.grad.numpy(), expected, rtol=1e-9, atol=1e-11, msg=name)
    torch.optim.SGD(module.parameters(), lr=0.5).step()
    four = bt.LSTM(3, 4, 2, bidirectional=True, peephole="diagonal", dtype=torch.float64)
    state = {k: v.clone() for k, v in module.state_dict().items()}
    for key in [k for k in state if k.startswith("weight_ch")]:
        i, f, o = state[key].split(4)
        state[key] = torch.cat([i, f, torch.zeros(4, dtype=torch.float64), o])
    four.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(four(x)[0], module(x)[0], rtol=1e-12, atol=1e-12)


def gradcheck_function(module, names, packed=False, seed=None):
    """A function of (x, h0, c0, *parameters) for gradcheck (parameters via functional_call)."""
    def f(x, h0, c0, *params):
        if seed is not None:
            torch.manual_seed(seed)  # the same dropout masks on every evaluation
        input = pack_padded_sequence(x, [2, 4, 3], enforce_sorted=False) if packed else x
        output, (h_n, c_n) = torch.func.functional_call(module, dict(zip(names, params)),
                                                        (input, (h0, c0)))
        return (output.data if packed else output), h_n, c_n
    return f


@pytest.mark.parametrize("peephole,packed,gates", [
    ("diagonal", False, None), ("full", False, None), ("full", True, None),
    ("diagonal", False, ("input", "forget", "output")), ("full", False, ("candidate",))])
def test_gradcheck_with_peepholes_and_custom_activations(peephole, packed, gates):
    F = bl.ActivationFunction
    module = bt.LSTM(3, 2, 2, bidirectional=True, peephole=peephole, dtype=torch.float64,
                     peephole_gates=gates,
                     gate_activations={"input": bl.Activation(F.SCALED_TANH, 0.5, 1.5),
                                       "forget": "softsign", "candidate": F.ERF,
                                       "output": bl.Activation(F.SOFTPLUS, 0.8, 1.2)},
                     hidden_activation=bl.Activation(F.SCALED_TANH, 1.2, 0.7))
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(4, 3, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    h0, c0 = (torch.randn(4, 3, 2, dtype=torch.float64, generator=generator, requires_grad=True)
              for _ in range(2))
    names = [n for n, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in module.parameters()]
    assert torch.autograd.gradcheck(gradcheck_function(module, names, packed), (x, h0, c0, *params))


def test_gradcheck_with_dropout_in_training():
    module = bt.LSTM(3, 2, 3, dropout=0.4, peephole="diagonal", dtype=torch.float64)
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(3, 2, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    h0, c0 = (torch.randn(3, 2, 2, dtype=torch.float64, generator=generator, requires_grad=True)
              for _ in range(2))
    names = [n for n, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in module.parameters()]
    assert torch.autograd.gradcheck(gradcheck_function(module, names, seed=11),
                                    (x, h0, c0, *params))


def test_custom_activations_equal_the_numpy_layer_built_on_the_same_functions():
    """The default activations given explicitly reproduce torch (the non-default path of the
    kernels)."""
    F = bl.ActivationFunction
    reference, _ = twins(3, 4, 2, True)
    module = bt.LSTM(3, 4, 2, bidirectional=True, dtype=torch.float64,
                     gate_activations={"input": F.SIGMOID, "candidate": "tanh"},
                     hidden_activation=F.TANH)
    module.load_state_dict(reference.state_dict())
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(module(x)[0], reference(x)[0], **TOLERANCE[torch.float64])


def test_optimiser_training_reduces_the_loss():
    torch.manual_seed(6)
    module = bt.LSTM(2, 16, 2, batch_first=True, bidirectional=True, peephole="diagonal")
    head = torch.nn.Linear(32, 1)
    optimizer = torch.optim.Adam(list(module.parameters()) + list(head.parameters()), lr=0.02)
    x = torch.randn(32, 12, 2)
    target = x[..., :1].cumsum(1).tanh()  # a running sum needs the recurrence
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(head(module(x)[0]), target)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.2 * losses[0], losses[::10]


def test_no_grad_and_frozen_modules_run_without_a_training_cache(monkeypatch):
    import bnnslstm._torch_autograd as autograd_side  # where the module's passes call the forward

    caches = []
    real = autograd_side.direct_apply_lstm_batch_training_caching

    def spy(params, filter_params=None, training_cache=None):
        caches.append(training_cache)
        return real(params, filter_params, training_cache)

    monkeypatch.setattr(autograd_side, "direct_apply_lstm_batch_training_caching", spy)
    module = bt.LSTM(3, 4, 2)
    x = torch.randn(5, 2, 3)
    y_grad = module(x)[0]
    with torch.no_grad():
        y_free = module(x)[0]
    assert y_grad.grad_fn is not None and y_free.grad_fn is None and not y_free.requires_grad
    module.requires_grad_(False)
    y_frozen = module(x)[0]
    assert y_frozen.grad_fn is None
    assert caches[0] is not None and caches[1:] == [None, None]
    torch.testing.assert_close(y_free, y_grad.detach(), rtol=0, atol=0)
    torch.testing.assert_close(y_frozen, y_grad.detach(), rtol=0, atol=0)


def test_dropout_follows_train_and_eval():
    torch.manual_seed(7)
    module = bt.LSTM(3, 8, 3, dropout=0.5)
    plain = bt.LSTM(3, 8, 3)
    plain.load_state_dict(module.state_dict())
    x = torch.randn(6, 4, 3)
    with torch.no_grad():
        expected = plain(x)[0]
        module.eval()
        torch.testing.assert_close(module(x)[0], expected, rtol=0, atol=0)  # eval: no dropout
        module.train()
        first, second = module(x)[0], module(x)[0]
        torch.manual_seed(8)
        third = module(x)[0]
        torch.manual_seed(8)
        fourth = module(x)[0]
    # a fresh mask per forward
    assert not torch.equal(first, expected) and not torch.equal(first, second)
    torch.testing.assert_close(third, fourth, rtol=0, atol=0)  # drawn from torch's generator


def test_two_forwards_then_backwards_in_any_order_use_their_own_caches():
    reference, module = twins(3, 4, 2, True)
    x1, x2 = torch.randn(5, 2, 3, dtype=torch.float64), torch.randn(7, 2, 3, dtype=torch.float64)
    grads = []
    for m in (reference, module):
        y1, y2 = m(x1)[0], m(x2)[0]
        g2 = torch.autograd.grad(y2.sum(), list(m.parameters()), retain_graph=True)
        g2_again = torch.autograd.grad(y2.sum(), list(m.parameters()))  # retained graph: same cache
        g1 = torch.autograd.grad(y1.square().sum(), list(m.parameters()))
        for a, b in zip(g2, g2_again):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        grads.append(g1 + g2)
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, **TOLERANCE[torch.float64])


def test_strided_inputs_and_broadcast_gradients_equal_torch():
    """A transposed (non-contiguous) input and ``y.sum()``'s expanded gradient (zero strides)."""
    reference, module = twins(3, 4, 1, False, batch_first=True)
    base = torch.randn(6, 5, 3, dtype=torch.float64)
    results = []
    for m in (reference, module):
        x = base.clone().requires_grad_(True)
        y = m(x.transpose(0, 1))[0]  # [B=5][T=6] from a [T][B] buffer
        y.sum().backward()
        results.append((y.detach(), x.grad))
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, **TOLERANCE[torch.float64])


def test_in_place_change_of_the_input_before_backward_is_refused():
    module = bt.LSTM(3, 4)
    x = torch.randn(5, 2, 3, requires_grad=True)
    z = x * 1.0
    y = module(z)[0]
    z.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_gradients_accumulate_across_backwards_and_biases_are_separate_tensors():
    module = bt.LSTM(3, 4, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    module(x)[0].sum().backward()
    once = {n: p.grad.clone() for n, p in module.named_parameters()}
    module(x)[0].sum().backward()
    for name, p in module.named_parameters():
        torch.testing.assert_close(p.grad, 2 * once[name], rtol=1e-12, atol=0)
    torch.testing.assert_close(module.bias_ih_l0.grad, module.bias_hh_l0.grad, rtol=0, atol=0)
    module.bias_ih_l0.grad.mul_(0)  # clip_grad_norm_ and weight decay scale .grad in place
    assert module.bias_hh_l0.grad.abs().sum() > 0


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="proj_size"):
        bt.LSTM(3, 4, proj_size=2)
    with pytest.raises(ValueError, match="CPU"):
        bt.LSTM(3, 4, device="meta")
    with pytest.raises(ValueError, match="dropout"):
        bt.LSTM(3, 4, 2, dropout=1.0)
    with pytest.raises(TypeError, match="dtype"):
        bt.LSTM(3, 4, dtype=torch.float16)
    with pytest.raises(ValueError, match="peephole"):
        bt.LSTM(3, 4, peephole="diag")
    with pytest.raises(ValueError, match="unknown gates"):
        bt.LSTM(3, 4, gate_activations={"cell": "tanh"})
    with pytest.raises(bl.BNNSError, match="SOFTMAX is not elementwise"):
        bt.LSTM(3, 4, gate_activations={"input": "softmax"})
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        bt.LSTM(3, 4, dropout=0.2)
    module = bt.LSTM(3, 4, 2)
    with pytest.raises(ValueError,
                       match="input must have the type torch.float32, got type torch.float64"):
        module(torch.randn(5, 2, 3, dtype=torch.float64))
    with pytest.raises(RuntimeError,
                       match="input.size\\(-1\\) must be equal to input_size. Expected 3, got 4"):
        module(torch.randn(5, 2, 4))
    with pytest.raises(RuntimeError,
                       match=r"Expected hidden\[0\] size \(2, 2, 4\), got \[1, 2, 4\]"):
        module(torch.randn(5, 2, 3), (torch.zeros(1, 2, 4), torch.zeros(2, 2, 4)))
    with pytest.raises(RuntimeError, match="hx and cx should also be 3-D"):
        module(torch.randn(5, 2, 3), (torch.zeros(2, 4), torch.zeros(2, 4)))
    with pytest.raises(ValueError, match="Expected input to be 2D or 3D, got 4D"):
        module(torch.randn(5, 2, 3, 1))
    with pytest.raises(TypeError, match=r"float32 or float64 .* got \['torch.float16'\]"):
        module.half()(torch.randn(5, 2, 3).half())


def test_copy_pickle_and_repr():
    module = bt.LSTM(3, 4, 2, bidirectional=True, peephole="full",
                     gate_activations={"input": "softsign"})
    x = torch.randn(5, 2, 3)
    module(x)[0].sum().backward()  # leaves a training cache in the pool
    for clone in (copy.deepcopy(module), pickle.loads(pickle.dumps(module))):
        with torch.no_grad():
            torch.testing.assert_close(clone(x)[0], module(x)[0], rtol=0, atol=0)
        assert clone._pool.free == []
    assert repr(module) == ("LSTM(3, 4, num_layers=2, bidirectional=True, peephole='full', "
                            "activations=softsign/sigmoid/tanh/sigmoid/tanh)")


def test_float64_module_after_conversion():
    """``module.double()`` (torch's own conversion) gives a float64 module equal to torch's."""
    reference, module = twins(3, 4, 2, True, dtype=torch.float32)
    reference, module = reference.double(), module.double()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(module(x)[0], reference(x)[0], **TOLERANCE[torch.float64])


def test_import_bnnslstm_does_not_import_torch(tmp_path):
    script = ("import sys, bnnslstm; assert 'torch' not in sys.modules, 'torch imported'; "
              "print('ok')")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_outputs_and_training_cache_are_freed_without_the_garbage_collector():
    """The autograd node must not reference its own outputs (a cycle gc cannot see through C++);
    the training cache goes back to the module's pool as soon as autograd frees the graph's
    saved tensors (after a backward that does not retain the graph), not when the outputs die."""
    module = bt.LSTM(3, 4, 2, bidirectional=True)
    x = torch.randn(5, 2, 3)
    gc.disable()
    try:
        for backward in (False, True):
            y, (h_n, c_n) = module(x)
            assert module._pool.free == []  # the cache is in use
            refs = [weakref.ref(t) for t in (y, h_n, c_n)]
            if backward:
                (y.sum() + h_n.sum()).backward()
                assert len(module._pool.free) == 1  # back while y is still alive
            del y, h_n, c_n
            assert [r() for r in refs] == [None, None, None]
            assert len(module._pool.free) == 1
        y = module(x)[0]
        y.sum().backward(retain_graph=True)
        assert module._pool.free == []  # a retained graph keeps its cache
        del y
        assert len(module._pool.free) == 1
    finally:
        gc.enable()


def test_the_api_page_writes_the_constructors_own_signature():
    """docs/api.rst writes bnnslstm.torch.LSTM's signature out (without PyTorch the docs mock
    torch, and autodoc would show the mocked base class's): it must be the class's own."""
    api = pathlib.Path(__file__).parents[1] / "docs" / "api.rst"
    written = next(line for line in api.read_text().splitlines()
                   if line.startswith(".. autoclass:: bnnslstm.torch.LSTM("))
    assert written.removeprefix(".. autoclass:: bnnslstm.torch.LSTM") == str(
        inspect.signature(bt.LSTM))
