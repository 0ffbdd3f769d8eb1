"""Every conversion between the numpy layer, bnnslstm.torch.LSTM, torch.nn.LSTM, .npz, pickle
and ONNX, over every configuration: the converted model gives the source's outputs, or the
conversion raises BNNSError naming what the target cannot express. Never a silent change.

The matrix: peephole none / diagonal / full / diagonal on the input, forget and output gates
(ONNX's and CoreML's), default or custom activations, bias or not, one or two directions,
two layers; each (configuration, path) pair runs the source and the converted model on the
same random input and initial state and compares every output.
"""

import copy
import io
import itertools
import pickle
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pytest

import bnnslstm as bl
from bnnslstm import Activation, BNNSError
from bnnslstm import ActivationFunction as F

torch = pytest.importorskip("torch")
import bnnslstm.torch as bt  # noqa: E402

I, H, L, T, B = 3, 4, 2, 5, 3
TOL = 2e-5  # float32; a dropped setting changes outputs by 1e-2 or more
IFO = ("input", "forget", "output")
# activations ONNX can express (one for input, forget and output), none of them a default
CUSTOM = {"gate_activations": {"input": Activation(F.HARD_SIGMOID, alpha=0.25, beta=0.5),
                               "forget": Activation(F.HARD_SIGMOID, alpha=0.25, beta=0.5),
                               "output": Activation(F.HARD_SIGMOID, alpha=0.25, beta=0.5),
                               "candidate": "softsign"},
          "hidden_activation": Activation(F.SCALED_TANH, alpha=1.5, beta=0.5)}


@dataclass(frozen=True)
class Config:
    peephole: str | None  # None, "diagonal", "full" or "ifo" (diagonal on i, f, o)
    custom: bool  # CUSTOM activations
    bias: bool
    bidirectional: bool

    def __str__(self):
        return (f"peep={self.peephole}-{'custom' if self.custom else 'default'}"
                f"-{'bias' if self.bias else 'nobias'}-{'bi' if self.bidirectional else 'uni'}")

    @property
    def D(self):
        return 2 if self.bidirectional else 1

    def kwargs(self):
        kwargs = {"bias": self.bias, "bidirectional": self.bidirectional}
        if self.peephole == "ifo":
            kwargs.update(peephole="diagonal", peephole_gates=IFO)
        elif self.peephole:
            kwargs["peephole"] = self.peephole
        if self.custom:
            kwargs.update(CUSTOM)
        return kwargs

    @property
    def torch_can_express(self):
        return self.peephole is None and not self.custom


CONFIGS = [Config(*c) for c in itertools.product((None, "diagonal", "full", "ifo"),
                                                 (False, True), (False, True), (False, True))]


# ---------------------------------------------------------------------- models
def numpy_layer(config, seed=0):
    return bl.LSTM(I, H, L, seed=seed, **config.kwargs())


def torch_module(config, seed=0):
    torch.manual_seed(seed)
    return bt.LSTM(I, H, L, **config.kwargs()).eval()


def plain_torch(config, seed=0):
    torch.manual_seed(seed)
    return torch.nn.LSTM(I, H, L, bias=config.bias, bidirectional=config.bidirectional).eval()


def inputs(config):
    rng = np.random.default_rng(7)
    return (rng.standard_normal((T, B, I)).astype(np.float32),
            rng.standard_normal((L * config.D, B, H)).astype(np.float32),
            rng.standard_normal((L * config.D, B, H)).astype(np.float32))


def outputs(model, x, h0, c0):
    """(y, h_n, c_n) as numpy arrays, whatever the model."""
    if isinstance(model, bl.LSTM):
        y, (h_n, c_n) = model.forward(x, h0, c0, training=False)
        return y, h_n, c_n
    if isinstance(model, torch.nn.Module):
        with torch.no_grad():
            y, (h_n, c_n) = model(*(torch.from_numpy(a) for a in (x,)),
                                  (torch.from_numpy(h0), torch.from_numpy(c0)))
        return y.numpy(), h_n.numpy(), c_n.numpy()
    return tuple(model.run(None, {"input": x, "h0": h0, "c0": c0}))  # an onnxruntime session


def tensors(state):
    return {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in state.items()}


def arrays(state):
    return {key: value.detach().numpy() for key, value in state.items()}


# ---------------------------------------------------------------------- paths
def onnx_runtime(model):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def onnx_export(source):
    import bnnslstm.onnx as bo

    return bo.export(source, None, initial_states=True)


def onnx_load(source):
    import bnnslstm.onnx as bo

    return bo.load(onnx_export(source))


def load_state(target, state):
    target.load_state_dict(state, strict=True)
    return target


def npz_round_trip(layer):
    file = io.BytesIO()
    layer.save(file)
    file.seek(0)
    return bl.LSTM.load(file)


# name -> (source maker, conversion of (config, source) into the target)
PATHS = {
    "numpy.to_torch": (numpy_layer, lambda c, s: s.to_torch()),
    "torch.nn.LSTM->from_torch": (plain_torch, lambda c, s: bl.LSTM.from_torch(s)),
    "bnnslstm.torch->from_torch": (torch_module, lambda c, s: bl.LSTM.from_torch(s)),
    "numpy.state_dict->bnnslstm.torch": (
        numpy_layer, lambda c, s: load_state(torch_module(c, seed=5), tensors(s.state_dict()))),
    "bnnslstm.torch.state_dict->numpy": (
        torch_module, lambda c, s: load_state(numpy_layer(c, seed=5), s.state_dict())),
    "numpy.state_dict->torch.nn.LSTM": (
        numpy_layer, lambda c, s: load_state(plain_torch(c, seed=5), tensors(s.state_dict()))),
    "bnnslstm.torch.state_dict->torch.nn.LSTM": (
        torch_module, lambda c, s: load_state(plain_torch(c, seed=5), s.state_dict())),
    "torch.nn.LSTM.state_dict->numpy": (
        plain_torch, lambda c, s: load_state(numpy_layer(c, seed=5), s.state_dict())),
    "torch.nn.LSTM.state_dict->bnnslstm.torch": (
        plain_torch, lambda c, s: load_state(torch_module(c, seed=5), s.state_dict())),
    "numpy.save/load": (numpy_layer, lambda c, s: npz_round_trip(s)),
    "numpy.pickle": (numpy_layer, lambda c, s: pickle.loads(pickle.dumps(s))),
    "bnnslstm.torch.deepcopy": (torch_module, lambda c, s: copy.deepcopy(s)),
    "numpy->onnx->load": (numpy_layer, lambda c, s: onnx_load(s)),
    "bnnslstm.torch->onnx->load": (torch_module, lambda c, s: onnx_load(s)),
    "numpy->onnx->onnxruntime": (numpy_layer, lambda c, s: onnx_runtime(onnx_export(s))),
    "bnnslstm.torch->onnx->onnxruntime": (
        torch_module, lambda c, s: onnx_runtime(onnx_export(s))),
}


def applies(config, path):
    """torch.nn.LSTM as a source has no peephole and default activations."""
    return PATHS[path][0] is not plain_torch or config.torch_can_express or "state_dict" in path


def convert(config, path):
    """("same", None), ("refused", the error) or ("differs", the largest difference)."""
    make, conversion = PATHS[path]
    source = make(config)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            target = conversion(config, source)
    except BNNSError as error:
        return "refused", error
    except RuntimeError as error:
        if "Error(s) in loading state_dict for LSTM" in str(error):  # torch.nn.LSTM's refusal
            return "refused", error
        raise
    x, h0, c0 = inputs(config)
    expected, got = outputs(source, x, h0, c0), outputs(target, x, h0, c0)
    difference = max(float(np.max(np.abs(e - g))) for e, g in zip(expected, got))
    return ("same", None) if difference <= TOL else ("differs", difference)


# ---------------------------------------------------------------------- what may be refused
TORCH_TARGETS = ("->torch.nn.LSTM",)  # paths whose refusal is torch.nn.LSTM's own


def expected_refusal(config, path):
    """The patterns a pair's refusal must match, or [] when the conversion must reproduce
    the source's outputs: only what the target cannot express is refused."""
    custom, peephole = config.custom, config.peephole
    if path == "numpy.to_torch":
        return ([r"peephole=.*: torch\.nn\.LSTM has no peephole weights"] * bool(peephole)
                + [r"gate_activations, hidden_activation: torch\.nn\.LSTM computes sigmoid "
                   r"gates.*input=hard_sigmoid.*hidden=scaled_tanh"] * custom)
    if path.endswith("state_dict->torch.nn.LSTM"):  # torch.nn.LSTM refuses the extra keys
        return ([r'Unexpected key\(s\) in state_dict: .*"weight_ch_l0"'] * bool(peephole)
                + [r'Unexpected key\(s\) in state_dict: .*"activation_input"'] * custom)
    if path == "torch.nn.LSTM.state_dict->numpy":
        return ([r"missing key 'weight_ch_l0'"] * bool(peephole)
                + [r"missing key 'activation_input' \(without it the state has the default "
                   r"SIGMOID, this layer HARD_SIGMOID"] * custom)
    if path == "torch.nn.LSTM.state_dict->bnnslstm.torch":
        if custom:  # the activations are checked first, before anything is loaded
            return [r"state_dict: missing key 'activation_input'"]
        return [r'Missing key\(s\) in state_dict: "weight_ch_l0"'] * bool(peephole)
    if "onnx" in path and peephole == "full":
        return [r"layer\.peephole: full peephole matrices have no ONNX form"]
    if "onnx" in path and peephole == "diagonal":  # four gates, the candidate's not 0
        return [r"weight_ch_l0: the candidate gate's peephole is not 0.* built with "
                r"peephole='diagonal', peephole_gates=\('input', 'forget', 'output'\)"]
    return []


PAIRS = [(config, path) for config in CONFIGS for path in PATHS if applies(config, path)]


@pytest.mark.parametrize("config, path", PAIRS, ids=[f"{c}-{p}" for c, p in PAIRS])
def test_conversion_is_faithful_or_refused(config, path):
    if "onnx" in path:
        pytest.importorskip("onnx")
    outcome, detail = convert(config, path)
    patterns = expected_refusal(config, path)
    if not patterns:
        assert outcome == "same", f"{outcome}: {detail}"
        return
    assert outcome == "refused", f"{outcome}: {detail} (expected a refusal)"
    torch_refusal = path.endswith(TORCH_TARGETS) or (
        path == "torch.nn.LSTM.state_dict->bnnslstm.torch" and not config.custom)
    assert isinstance(detail, RuntimeError if torch_refusal else BNNSError), repr(detail)
    for pattern in patterns:
        assert re.search(pattern, str(detail)), f"{pattern!r} not in: {detail}"


def test_the_matrix_covers_every_configuration_and_path():
    """32 configurations, 16 paths; torch.nn.LSTM is a source only where it can be one."""
    assert len(CONFIGS) == 32 and len(PATHS) == 16
    assert len(PAIRS) == 32 * 16 - 28


# ---------------------------------------------------------------------- peephole_gates
@pytest.mark.parametrize("make", [bl.LSTM, bt.LSTM], ids=["numpy", "torch"])
@pytest.mark.parametrize("peephole, gates, message", [
    ("diagonal", ("input", "cell"), r"peephole_gates: expected distinct gate names among input, "
                                    r"forget, candidate, output, got \('input', 'cell'\)"),
    ("diagonal", ("input", "input"), r"peephole_gates: expected distinct gate names"),
    ("diagonal", (), r"peephole_gates: expected distinct gate names"),
    ("full", 3, r"peephole_gates: expected distinct gate names"),
    (None, IFO, r"peephole_gates: \('input', 'forget', 'output'\) given without a peephole"),
])
def test_peephole_gates_refusals(make, peephole, gates, message):
    with pytest.raises(BNNSError, match=message):
        make(I, H, peephole=peephole, peephole_gates=gates)


def test_peephole_gates_in_any_order_and_shown():
    layer = bl.LSTM(I, H, peephole="diagonal", peephole_gates=["output", "input", "forget"])
    assert layer.peephole_gates == IFO
    assert layer.parameters()["weight_ch_l0"].shape == (3 * H,)
    assert "peephole_gates=('input', 'forget', 'output')" in repr(layer)
    assert "peephole_gates" not in repr(bl.LSTM(I, H, peephole="diagonal"))
    module = bt.LSTM(I, H, peephole="full", peephole_gates="forget")
    assert module.peephole_gates == ("forget",) and module.weight_ch_l0.shape == (H, H)
    assert "peephole_gates=('forget',)" in repr(module)


def test_files_saved_before_peephole_gates_load_with_four_gates():
    import json

    file = io.BytesIO()
    bl.LSTM(I, H, peephole="diagonal", seed=0).save(file)
    file.seek(0)
    with np.load(file) as archive:
        entries = {name: archive[name] for name in archive.files}
    config = json.loads(str(entries["config"][()]))
    del config["peephole_gates"]  # a file from before the option
    entries["config"] = np.array(json.dumps(config))
    file = io.BytesIO()
    np.savez(file, **entries)
    file.seek(0)
    assert bl.LSTM.load(file).peephole_gates == ("input", "forget", "candidate", "output")


def test_from_torch_refuses_other_modules():
    with pytest.raises(BNNSError, match=r"module: expected a torch\.nn\.LSTM or a "
                                        r"bnnslstm\.torch\.LSTM, got GRU"):
        bl.LSTM.from_torch(torch.nn.GRU(I, H))


def test_torch_state_dict_activation_entries():
    """float64 [function, alpha, beta], unchanged by .float(), loaded strict by the numpy
    layer and checked (never applied) by the module's load_state_dict."""
    module = torch_module(Config(None, True, True, False)).float()
    state = module.state_dict()
    entries = {k: v for k, v in state.items() if k.startswith("activation_")}
    assert list(entries) == ["activation_input", "activation_forget", "activation_candidate",
                             "activation_output", "activation_hidden"]
    assert entries["activation_hidden"].dtype == torch.float64
    assert entries["activation_hidden"].tolist() == [float(F.SCALED_TANH), 1.5, 0.5]
    other = bt.LSTM(I, H, L, gate_activations={"candidate": "softsign"})
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(BNNSError, match=r"state_dict: activation_input: the state's "
                                        r"HARD_SIGMOID\(alpha=0.25, beta=0.5\) differs from this "
                                        r"layer's SIGMOID"):
        other.load_state_dict(state, strict=False)
    for key, value in other.state_dict().items():  # nothing loaded
        torch.testing.assert_close(value, before[key], rtol=0, atol=0, equal_nan=True)
