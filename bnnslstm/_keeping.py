"""Keeping an everyday layer: its state_dict under torch.nn.LSTM's keys, its configuration,
pickling, and one ``.npz`` file (LSTM.save / LSTM.load) that numpy reads with
``allow_pickle=False``. The methods of :class:`bnnslstm.LSTM` with these names call these
functions; their docstrings are the contract.
"""

import json
import os
import zipfile

import numpy as np

from .activations import GATES
from .enums import ActivationFunction
from .errors import BNNSError
from .parameters import Activation

_FORMAT = "bnnslstm.LSTM"  # the marker of a file written by LSTM.save
_FORMAT_VERSION = 1
_CONFIG_KEYS = ("input_size", "hidden_size", "num_layers", "bidirectional", "dropout",
                "batch_first", "bias", "peephole", "dtype")


def state_dict(layer):
    """LSTM.state_dict: copies of the weights under torch.nn.LSTM's keys (and the extras)."""
    state = {}
    for name, array in layer.parameters().items():
        if name.startswith("bias_"):
            suffix = name[len("bias_"):]
            state[f"bias_ih_{suffix}"] = array.copy()
            state[f"bias_hh_{suffix}"] = np.zeros_like(array)
        else:
            state[name] = array.copy()
    if layer._activations is not None:
        for name, activation in layer._activations.items():
            state[f"activation_{name}"] = np.array(
                [int(activation.function), float(activation.alpha), float(activation.beta)])
    return state


def expected_state(layer):
    """key -> shape of :meth:`state_dict`'s arrays."""
    shapes = {}
    for name, array in layer.parameters().items():
        if name.startswith("bias_"):
            suffix = name[len("bias_"):]
            shapes[f"bias_ih_{suffix}"] = shapes[f"bias_hh_{suffix}"] = array.shape
        else:
            shapes[name] = array.shape
    if layer._activations is not None:
        shapes.update({f"activation_{name}": (3,) for name in layer._activations})
    return shapes


def load_state_dict(layer, state, strict=True):
    """LSTM.load_state_dict: every key checked first, then the weights copied in."""
    if not hasattr(state, "keys"):
        raise BNNSError(f"state: expected a dict of arrays, got {type(state).__name__}")
    expected = expected_state(layer)
    arrays, problems = {}, []
    for key in state.keys():
        if key not in expected:
            if strict:
                problems.append(f"unexpected key {key!r}")
            continue
        value = state[key]
        if hasattr(value, "detach"):  # a torch tensor
            value = value.detach().cpu().numpy()
        array = np.asarray(value)
        if array.dtype.kind not in "fiu":
            problems.append(f"{key}: expected real numbers, got dtype {array.dtype}")
        elif array.shape != expected[key]:
            problems.append(f"{key}: expected shape {expected[key]}, got {array.shape}")
        else:
            arrays[key] = array
    if strict:
        problems += [f"missing key {key!r}" for key in expected if key not in state]
    for name in () if layer._activations is None else layer._activations:
        key = f"activation_{name}"
        if key in arrays:
            activation = layer._activations[name]
            mine = np.array([int(activation.function), float(activation.alpha),
                             float(activation.beta)])
            if not np.array_equal(arrays[key], mine, equal_nan=True):
                problems.append(f"{key}: the state's {_describe(arrays[key])} differs from this "
                                f"layer's {_describe(mine)} (activations are set by the "
                                f"constructor)")
    if problems:
        raise BNNSError("state: " + "; ".join(problems))
    for name, array in layer.parameters().items():
        if name.startswith("bias_"):
            suffix = name[len("bias_"):]
            parts = [arrays.get(f"bias_ih_{suffix}"), arrays.get(f"bias_hh_{suffix}")]
            if parts[0] is not None or parts[1] is not None:
                array[...] = sum(np.asarray(p, np.float64) for p in parts if p is not None)
        elif name in arrays:
            array[...] = arrays[name]


def config_of(layer):
    """The constructor's arguments, JSON-friendly (activations as [name, alpha, beta])."""
    config = {key: getattr(layer, key) for key in _CONFIG_KEYS}
    config["dtype"] = layer.dtype.name
    if layer._activations is not None:
        config["gate_activations"] = {g: _activation_triple(layer._activations[g]) for g in GATES}
        config["hidden_activation"] = _activation_triple(layer._activations["hidden"])
    return config


def from_config(cls, config, field):
    """A new ``cls`` from config_of's dict; BNNSError naming ``field`` for a bad one."""
    if not isinstance(config, dict):
        raise BNNSError(f"{field}: expected a dict, got {type(config).__name__}")
    unknown = set(config) - set(_CONFIG_KEYS) - {"gate_activations", "hidden_activation"}
    missing = [key for key in ("input_size", "hidden_size") if key not in config]
    if unknown or missing:
        raise BNNSError(f"{field}: unknown keys {sorted(unknown)}, missing keys {missing}")
    config = dict(config)
    if config.get("gate_activations") is not None:
        config["gate_activations"] = {
            g: _activation_from_triple(v, f"{field}.gate_activations[{g!r}]")
            for g, v in dict(config["gate_activations"]).items()}
    if config.get("hidden_activation") is not None:
        config["hidden_activation"] = _activation_from_triple(config["hidden_activation"],
                                                              f"{field}.hidden_activation")
    input_size, hidden_size = config.pop("input_size"), config.pop("hidden_size")
    num_layers = config.pop("num_layers", 1)
    try:
        return cls(input_size, hidden_size, num_layers, **config)
    except BNNSError as error:
        raise BNNSError(f"{field}.{error}") from None
    except (TypeError, ValueError) as error:
        raise BNNSError(f"{field}: {error}") from None


def getstate(layer):
    """Pickling: the configuration, the state and the random state (dropout masks)."""
    return {"config": config_of(layer), "state": state_dict(layer),
            "rng": layer._rng.bit_generator.state}


def setstate(layer, saved):
    """Unpickling: a layer rebuilt from getstate's dict, into ``layer``."""
    restored = from_config(type(layer), saved["config"], "config")
    restored.load_state_dict(saved["state"])
    restored._rng.bit_generator.state = saved["rng"]
    layer.__dict__.update(restored.__dict__)


def save(layer, path):
    """LSTM.save: one .npz of numeric arrays and the configuration as JSON."""
    arrays = {f"state.{key}": array for key, array in state_dict(layer).items()}
    arrays["format"] = np.array(_FORMAT)
    arrays["format_version"] = np.array(_FORMAT_VERSION)
    arrays["config"] = np.array(json.dumps(config_of(layer)))
    if isinstance(path, (str, os.PathLike)):
        with open(path, "wb") as file:
            np.savez(file, **arrays)
    else:
        np.savez(path, **arrays)


def load(cls, path):
    """LSTM.load: read with allow_pickle=False, every entry checked."""
    where = os.fspath(path) if isinstance(path, (str, os.PathLike)) else "file"
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise BNNSError(f"{where}: not an .npz archive (a single .npy array)")
        with archive:
            names = set(archive.files)
            if "format" not in names or str(archive["format"][()]) != _FORMAT:
                raise BNNSError(f"{where}: not a file written by bnnslstm.LSTM.save "
                                f"(no 'format' entry {_FORMAT!r}; entries: {sorted(names)[:8]})")
            version = int(archive["format_version"][()]) if "format_version" in names else None
            if version != _FORMAT_VERSION:
                raise BNNSError(f"{where}: format_version {version} (this bnnslstm reads "
                                f"{_FORMAT_VERSION})")
            try:
                config = json.loads(str(archive["config"][()]))
            except (KeyError, ValueError) as error:
                raise BNNSError(f"{where}: config: not a JSON configuration ({error})") from None
            state = {name[len("state."):]: archive[name]
                     for name in names if name.startswith("state.")}
            extra = names - {"format", "format_version", "config"} - {f"state.{k}" for k in state}
            if extra:
                raise BNNSError(f"{where}: unexpected entries {sorted(extra)}")
    except BNNSError:
        raise
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile,
            UnicodeDecodeError) as error:
        raise BNNSError(f"{where}: cannot read it as a saved bnnslstm.LSTM: "
                        f"{type(error).__name__}: {error}") from None
    layer = from_config(cls, config, f"{where}: config")
    try:
        layer.load_state_dict(state)
    except BNNSError as error:
        raise BNNSError(f"{where}: {error}") from None
    return layer


def _activation_triple(activation):
    """An Activation as JSON-friendly ``[function name, alpha, beta]`` (NaN for unused)."""
    return [ActivationFunction(activation.function).name, float(activation.alpha),
            float(activation.beta)]


def _activation_from_triple(value, field):
    if isinstance(value, (list, tuple)) and len(value) == 3 and isinstance(value[0], str):
        try:
            return Activation(ActivationFunction[value[0]], float(value[1]), float(value[2]))
        except (KeyError, TypeError, ValueError):
            pass
    raise BNNSError(f"{field}: expected [function name, alpha, beta], got {value!r}")


def _describe(triple):
    function = int(triple[0])
    try:
        name = ActivationFunction(function).name
    except ValueError:
        name = str(function)
    return f"{name}(alpha={triple[1]}, beta={triple[2]})"
