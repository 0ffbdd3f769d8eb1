"""Activation functions: checking an :class:`~bnnslstm.parameters.Activation` and applying it.

The kernels' functions live in ``_kernels/_activations.pxd``; :func:`apply_activation`
exposes the same code to Python, for tests and for the documentation's table. Also the
names of a layer's activation arguments (:data:`GATES`) and their defaults.
"""

import math

import numpy as np

from ._checks import is_integer
from ._kernels import _activations
from .enums import NON_ELEMENTWISE, ActivationFunction
from .errors import BNNSError
from .parameters import GATE_FIELDS, Activation

__all__ = ["apply_activation", "check_activation", "as_activation", "layer_activations", "GATES",
           "PARAMETERS_USED"]

F = ActivationFunction
#: Which of alpha and beta each elementwise function reads (the others ignore them).
PARAMETERS_USED = {
    F.IDENTITY: (), F.RECTIFIED_LINEAR: (), F.LEAKY_RECTIFIED_LINEAR: ("alpha",), F.SIGMOID: (),
    F.TANH: (), F.SCALED_TANH: ("alpha", "beta"), F.ABS: (), F.LINEAR: ("alpha",),
    F.CLAMP: ("alpha", "beta"), F.GELU_APPROXIMATION: ("alpha", "beta"),
    F.HARD_SIGMOID: ("alpha", "beta"), F.SOFTPLUS: ("alpha", "beta"), F.SOFTSIGN: (),
    F.ELU: ("alpha",), F.CLAMPED_LEAKY_RECTIFIED_LINEAR: ("alpha", "beta"),
    F.LINEAR_WITH_BIAS: ("alpha", "beta"), F.LOG_SIGMOID: (), F.SELU: (), F.CELU: ("alpha",),
    F.HARD_SHRINK: ("alpha",), F.SOFT_SHRINK: ("alpha",), F.TANH_SHRINK: (),
    F.THRESHOLD: ("alpha", "beta"), F.HARD_SWISH: (), F.SILU: (), F.RELU6: (),
    F.ERF: (), F.GELU: (), F.GELU_APPROXIMATION_SIGMOID: (),
}


def check_activation(activation, field="activation"):
    """Validate an Activation; return ``(function, alpha, beta)`` as (int, float, float).

    Parameters a function does not use come back as 0.0. Raises :class:`BNNSError` naming
    ``field`` for non-elementwise or unknown functions and for missing or non-finite
    parameters.
    """
    for name in ("function", "alpha", "beta"):
        if not hasattr(activation, name):
            raise BNNSError(f"{field}: expected an Activation, got {type(activation).__name__}")
    function = activation.function
    try:
        if not is_integer(function):
            raise ValueError
        function = ActivationFunction(function)
    except ValueError:
        raise BNNSError(f"{field}.function: {function!r} is not an ActivationFunction") from None
    if function in NON_ELEMENTWISE:
        raise BNNSError(f"{field}.function: {function.name} is not elementwise; the LSTM "
                        "refuses it")
    values = {}
    for name in ("alpha", "beta"):
        if name not in PARAMETERS_USED[function]:
            values[name] = 0.0
            continue
        value = getattr(activation, name)
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise BNNSError(f"{field}.{name}: expected a number for {function.name}, "
                            f"got {value!r}") from None
        if not math.isfinite(value):
            raise BNNSError(f"{field}.{name}: {function.name} needs a finite {name}, got {value}")
        values[name] = value
    if function == F.CELU and values["alpha"] == 0:
        raise BNNSError(f"{field}.alpha: CELU divides by alpha, which must not be 0")
    return int(function), values["alpha"], values["beta"]


#: The keys of ``gate_activations`` (BNNS's gates; PyTorch's i, f, g, o rows).
GATES = tuple(field.removesuffix("_gate") for field in GATE_FIELDS)
#: The functions of an LSTM without ``gate_activations`` / ``hidden_activation``.
DEFAULT_FUNCTIONS = {"input": F.SIGMOID, "forget": F.SIGMOID, "candidate": F.TANH,
                     "output": F.SIGMOID, "hidden": F.TANH}
#: The same as check_activation's triples, gates then hidden: what DEFAULT_ACTIVATIONS means.
DEFAULT_ACTIVATIONS = tuple((int(DEFAULT_FUNCTIONS[g]), 0.0, 0.0) for g in GATES + ("hidden",))


def as_activation(value, field):
    """An :class:`~bnnslstm.Activation` from an Activation, an ActivationFunction or its
    name (any case), checked (:func:`check_activation`); BNNSError naming ``field``."""
    if isinstance(value, str):
        try:
            value = ActivationFunction[value.upper()]
        except KeyError:
            raise BNNSError(f"{field}: {value!r} is not an ActivationFunction name") from None
    if isinstance(value, ActivationFunction):
        value = Activation(value)
    if not isinstance(value, Activation):
        raise BNNSError(f"{field}: expected an Activation, an ActivationFunction or its name, "
                        f"got {type(value).__name__}")
    check_activation(value, field)  # refuses non-elementwise functions and missing alpha/beta now
    return value


def layer_activations(gate_activations=None, hidden_activation=None):
    """The five activations of a layer's ``gate_activations`` / ``hidden_activation``
    arguments: None when both are None (BNNS's default activations), else a dict
    ``{"input", "forget", "candidate", "output", "hidden"} -> Activation`` with the defaults
    (sigmoid, sigmoid, tanh, sigmoid; tanh) for what is not given."""
    if gate_activations is None and hidden_activation is None:
        return None
    if gate_activations is not None and not hasattr(gate_activations, "keys"):
        raise BNNSError("gate_activations: expected a dict gate -> activation, "
                        f"got {type(gate_activations).__name__}")
    gate_activations = dict(gate_activations or {})
    unknown = set(gate_activations) - set(GATES)
    if unknown:
        raise BNNSError(f"gate_activations: unknown gates {sorted(map(str, unknown))} "
                        f"(expected {', '.join(GATES)})")
    activations = {g: as_activation(gate_activations.get(g, DEFAULT_FUNCTIONS[g]),
                                    f"gate_activations[{g!r}]")
                   for g in GATES}
    activations["hidden"] = as_activation(
        DEFAULT_FUNCTIONS["hidden"] if hidden_activation is None else hidden_activation,
        "hidden_activation")
    return activations


def apply_activation(x, activation, derivative=False):
    """``f(x)`` (or ``f'(x)`` with ``derivative=True``) elementwise, as the kernels compute it.

    Parameters
    ----------
    x : array_like
        float32 and float64 keep their type; anything else is converted to float64.
    activation : Activation

    Returns
    -------
    numpy.ndarray of x's shape.

    Examples
    --------
    >>> import bnnslstm as bl
    >>> act = bl.Activation(bl.ActivationFunction.LEAKY_RECTIFIED_LINEAR, alpha=0.1)
    >>> bl.apply_activation([-2.0, 0.5], act).tolist()
    [-0.2, 0.5]
    """
    function, alpha, beta = check_activation(activation)
    array = np.asarray(x)
    if array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float64)
    flat = np.ascontiguousarray(array).reshape(-1)
    out = np.empty_like(flat)
    _activations.apply(flat, out, function, alpha, beta, bool(derivative))
    return out.reshape(array.shape)
