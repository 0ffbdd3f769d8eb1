"""Keeping an everyday layer: its state_dict under torch.nn.LSTM's keys, its configuration,
pickling, and one ``.npz`` file (LSTM.save / LSTM.load) that numpy reads with
``allow_pickle=False``. The methods of :class:`bnnslstm.LSTM` with these names call these
functions; their docstrings are the contract.
"""

import json
import os

import numpy as np

from ._weights import Layout, read_state, write_parameters
from .activations import DEFAULT_ACTIVATIONS, GATES, check_activation
from .enums import ActivationFunction
from .errors import BNNSError
from .parameters import Activation

_FORMAT = "bnnslstm.LSTM"  # the marker of a file written by LSTM.save
_FORMAT_VERSION = 1
_CONFIG_KEYS = ("input_size", "hidden_size", "num_layers", "bidirectional", "dropout",
                "batch_first", "bias", "peephole", "peephole_gates", "dtype")


def state_dict(layer):
    """LSTM.state_dict: copies of the weights under torch.nn.LSTM's keys (and the extras)."""
    return layer._layout.state_from_parameters(layer.parameters())


def load_state_dict(layer, state, strict=True):
    """LSTM.load_state_dict: every key checked first, then the weights copied in."""
    arrays, problems = read_state(layer._layout, state, strict)
    if problems:
        raise BNNSError("state: " + "; ".join(problems))
    write_parameters(layer.parameters(), arrays)


def config_of(layer):
    """The constructor's arguments, JSON-friendly (activations as [name, alpha, beta])."""
    config = {key: getattr(layer, key) for key in _CONFIG_KEYS}
    config["dtype"] = layer.dtype.name
    config["peephole_gates"] = list(layer.peephole_gates) if layer.peephole else None
    if layer._activations is not None:
        config["gate_activations"] = {g: _activation_triple(layer._activations[g]) for g in GATES}
        config["hidden_activation"] = _activation_triple(layer._activations["hidden"])
    return config


def arguments_of(config, field):
    """The constructor's keyword arguments from config_of's dict (activations as
    Activations); BNNSError naming ``field`` for a bad one."""
    if not isinstance(config, dict):
        raise BNNSError(f"{field}: expected a dict, got {type(config).__name__}")
    unknown = set(config) - set(_CONFIG_KEYS) - {"gate_activations", "hidden_activation"}
    missing = [key for key in ("input_size", "hidden_size") if key not in config]
    if unknown or missing:
        raise BNNSError(f"{field}: unknown keys {sorted(unknown)}, missing keys {missing}")
    arguments = dict(config)
    gates = arguments.get("gate_activations")
    if gates is not None:
        if not isinstance(gates, dict):
            raise BNNSError(f"{field}.gate_activations: expected a dict gate -> [function name, "
                            f"alpha, beta], got {gates!r}")
        arguments["gate_activations"] = {
            g: _activation_from_triple(v, f"{field}.gate_activations[{g!r}]")
            for g, v in gates.items()}
    if arguments.get("hidden_activation") is not None:
        arguments["hidden_activation"] = _activation_from_triple(arguments["hidden_activation"],
                                                                 f"{field}.hidden_activation")
    return arguments


def from_config(cls, config, field):
    """A new ``cls`` from config_of's dict; BNNSError naming ``field`` for a bad one."""
    arguments = arguments_of(config, field)
    try:
        return cls(arguments.pop("input_size"), arguments.pop("hidden_size"), **arguments)
    except BNNSError as error:
        raise BNNSError(f"{field}.{error}") from None
    except (TypeError, ValueError) as error:
        raise BNNSError(f"{field}: {error}") from None


def check_state_fits(arguments, state, where):
    """Refuse a saved configuration whose weights the saved state does not hold, before the
    layer allocates them: a damaged file could otherwise ask for any amount of memory."""
    names = ("input_size", "hidden_size", "num_layers", "bidirectional", "bias", "peephole",
             "peephole_gates", "gate_activations", "hidden_activation")
    try:
        layout = Layout.checked(**{k: arguments[k] for k in names if k in arguments})
    except BNNSError as error:
        raise BNNSError(f"{where}: config.{error}") from None
    # the layers first: a layout of many layers takes long to list
    if f"weight_hh_l{layout.L - 1}" not in state:
        raise BNNSError(f"{where}: state: missing key 'weight_hh_l{layout.L - 1}' (the "
                        f"configuration has num_layers={layout.L})")
    _, problems = read_state(layout, state, strict=True)
    if problems:
        raise BNNSError(f"{where}: state: " + "; ".join(problems))


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
    """LSTM.load: read with allow_pickle=False, every entry checked, nothing allocated for the
    layer before the configuration and the state agree."""
    where = os.fspath(path) if isinstance(path, (str, os.PathLike)) else "file"
    if where == "file" and not hasattr(path, "read"):
        raise BNNSError(f"path: expected a file name or a readable binary file, "
                        f"got {type(path).__name__}")
    not_ours = f"{where}: not a file written by bnnslstm.LSTM.save"
    try:
        archive = np.load(path, allow_pickle=False)
    except OSError as error:
        raise BNNSError(f"{where}: cannot read it ({error.strerror or error})") from None
    except Exception:  # whatever numpy's reason (and its advice on pickles): not a save of ours
        raise BNNSError(f"{not_ours} (not an .npz archive of numeric arrays)") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise BNNSError(f"{not_ours} (an .npy array, not an .npz archive)")
    with archive:
        names = set(archive.files)
        if "format" not in names or str(_entry(archive, "format", where)[()]) != _FORMAT:
            raise BNNSError(f"{not_ours} (no 'format' entry {_FORMAT!r}; entries: "
                            f"{sorted(names)[:8]})")
        version = (_entry(archive, "format_version", where)[()] if "format_version" in names
                   else None)
        if not (_is_integer_value(version) and int(version) == _FORMAT_VERSION):
            shown = int(version) if _is_integer_value(version) else repr(version)
            raise BNNSError(f"{where}: format_version {shown} (this bnnslstm reads "
                            f"{_FORMAT_VERSION})")
        try:
            config = json.loads(str(_entry(archive, "config", where)[()])) if "config" in names \
                else None
        except (ValueError, RecursionError) as error:
            raise BNNSError(f"{where}: config: not a JSON configuration ({error})") from None
        state = {name[len("state."):]: _entry(archive, name, where)
                 for name in names if name.startswith("state.")}
        extra = names - {"format", "format_version", "config"} - {f"state.{k}" for k in state}
        if extra:
            raise BNNSError(f"{where}: unexpected entries {sorted(extra)}")
    arguments = arguments_of(config, f"{where}: config")
    check_state_fits(arguments, state, where)
    layer = from_config(cls, config, f"{where}: config")
    layer.load_state_dict(state)
    return layer


def _entry(archive, name, where):
    """One array of an .npz archive; BNNSError naming the entry when it cannot be read."""
    try:
        return archive[name]
    except ValueError as error:
        if "allow_pickle" in str(error):  # numpy's advice to unpickle: not for a weights file
            raise BNNSError(f"{where}: entry {name!r} holds Python objects, not numbers: not a "
                            f"file written by bnnslstm.LSTM.save") from None
        raise BNNSError(f"{where}: entry {name!r} cannot be read ({error})") from None
    except Exception as error:  # a damaged member: zip, zlib and npy header errors alike
        raise BNNSError(f"{where}: entry {name!r} cannot be read, the archive is damaged "
                        f"({type(error).__name__})") from None


def _is_integer_value(value):
    return np.ndim(value) == 0 and np.asarray(value).dtype.kind in "iu"


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


# ---------------------------------------------------------------------- PyTorch
def from_torch(cls, module, dtype):
    """LSTM.from_torch: the module's configuration (its extras too), then its state_dict."""
    if getattr(module, "mode", None) != "LSTM" or not hasattr(module, "state_dict"):
        raise BNNSError(f"module: expected a torch.nn.LSTM or a bnnslstm.torch.LSTM, "
                        f"got {type(module).__name__}")
    if getattr(module, "proj_size", 0):
        raise BNNSError("module.proj_size: projections are not supported")
    layout = Layout.of(module)
    activations = {}
    if layout.activations is not None:
        activations = {"gate_activations": {g: layout.activations[g] for g in GATES},
                       "hidden_activation": layout.activations["hidden"]}
    lstm = cls(module.input_size, module.hidden_size, module.num_layers,
               bidirectional=module.bidirectional, dropout=module.dropout,
               batch_first=module.batch_first, bias=module.bias, peephole=layout.peephole,
               peephole_gates=layout.peephole_gates or None, dtype=dtype, **activations)
    lstm.load_state_dict(module.state_dict(), strict=True)
    return lstm


def to_torch(layer):
    """LSTM.to_torch: refused when torch.nn.LSTM cannot compute this layer, else a module
    loaded from the state_dict."""
    import torch

    lacks = []
    if layer.peephole is not None:
        lacks.append(f"peephole={layer.peephole!r}: torch.nn.LSTM has no peephole weights")
    if not layer._layout.default_activations:
        lacks.append(f"gate_activations, hidden_activation: torch.nn.LSTM computes sigmoid gates, "
                     f"a tanh candidate and tanh(c), this layer {_activation_names(layer)}")
    if lacks:
        raise BNNSError("; ".join(lacks) + " (bnnslstm.torch.LSTM takes these arguments and "
                        "this layer's state_dict)")
    module = torch.nn.LSTM(layer.input_size, layer.hidden_size, layer.num_layers, bias=layer.bias,
                           batch_first=layer.batch_first, dropout=layer.dropout,
                           bidirectional=layer.bidirectional)
    module = module.to(torch.float64 if layer.dtype == np.float64 else torch.float32)
    module.load_state_dict({key: torch.from_numpy(array) for key, array in state_dict(layer).items()
                            if not key.startswith("activation_")})
    return module


def _activation_names(layer):
    """``input=hard_sigmoid, ...`` for the activations that are not the defaults."""
    activations = layer._activations
    return ", ".join(f"{name}={ActivationFunction(activations[name].function).name.lower()}"
                     for name, default in zip(GATES + ("hidden",), DEFAULT_ACTIVATIONS)
                     if check_activation(activations[name]) != default)
