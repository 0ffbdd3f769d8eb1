"""Plain-numpy activation functions, written from BNNS's definitions (independent of bnnslstm).

``numpy_activation(fn, x, alpha, beta)`` with ``fn`` the integer BNNS value, and
``numpy_activation_derivative(fn, x, alpha, beta)``: f'(x), taking at each kink the side
that docs/activations.rst ("Derivatives at kinks") documents.
"""

import math

import numpy as np
from scipy.special import erf


def _sigmoid(x):
    return 0.5 * (1 + np.tanh(0.5 * x))


FUNCTIONS = {
    0: lambda x, a, b: x,                                              # IDENTITY
    1: lambda x, a, b: np.maximum(x, 0),                               # RECTIFIED_LINEAR
    2: lambda x, a, b: np.where(x < 0, a * x, x),                      # LEAKY_RECTIFIED_LINEAR
    3: lambda x, a, b: _sigmoid(x),                                    # SIGMOID
    4: lambda x, a, b: np.tanh(x),                                     # TANH
    5: lambda x, a, b: a * np.tanh(b * x),                             # SCALED_TANH
    6: lambda x, a, b: np.abs(x),                                      # ABS
    7: lambda x, a, b: a * x,                                          # LINEAR
    8: lambda x, a, b: np.minimum(np.maximum(x, a), b),                # CLAMP
    12: lambda x, a, b: 0.5 * x * (1 + np.tanh(a * (x + b * x**3))),   # GELU_APPROXIMATION
    15: lambda x, a, b: np.clip(a * x + b, 0, 1),                      # HARD_SIGMOID
    16: lambda x, a, b: a * np.logaddexp(0, b * x),                    # SOFTPLUS
    17: lambda x, a, b: x / (1 + np.abs(x)),                           # SOFTSIGN
    18: lambda x, a, b: np.where(x < 0, a * np.expm1(np.minimum(x, 0)), x),  # ELU
    # CLAMPED_LEAKY_RECTIFIED_LINEAR
    19: lambda x, a, b: np.minimum(np.where(x < 0, a * x, x), b),
    20: lambda x, a, b: a * x + b,                                     # LINEAR_WITH_BIAS
    22: lambda x, a, b: -np.logaddexp(0, -x),                          # LOG_SIGMOID
    23: lambda x, a, b: 1.0507009873554804934 * np.where(               # SELU
        x < 0, 1.6732632423543772848 * np.expm1(np.minimum(x, 0)), x),
    24: lambda x, a, b: np.maximum(x, 0) + np.minimum(                 # CELU
        0, a * np.expm1(np.minimum(x, 0) / a)),
    25: lambda x, a, b: np.where(np.abs(x) <= a, 0, x),                # HARD_SHRINK
    26: lambda x, a, b: np.where(x > a, x - a, np.where(x < -a, x + a, 0 * x)),  # SOFT_SHRINK
    27: lambda x, a, b: x - np.tanh(x),                                # TANH_SHRINK
    28: lambda x, a, b: np.where(x <= a, b, x),                        # THRESHOLD
    30: lambda x, a, b: x * np.clip(x + 3, 0, 6) / 6,                  # HARD_SWISH (Apple's)
    31: lambda x, a, b: x * _sigmoid(x),                               # SILU
    32: lambda x, a, b: np.clip(x, 0, 6),                               # RELU6
    33: lambda x, a, b: erf(x),                                        # ERF
    34: lambda x, a, b: 0.5 * x * (1 + erf(x / math.sqrt(2))),          # GELU
    35: lambda x, a, b: x * _sigmoid(1.702 * x),                       # GELU_APPROXIMATION_SIGMOID
}


def numpy_activation(fn, x, alpha=math.nan, beta=math.nan):
    """f(x); NaN for NaN, like plain arithmetic (every definition above keeps it)."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        return FUNCTIONS[int(fn)](x, alpha, beta)


_SELU_SCALE, _SELU_ALPHA = 1.0507009873554804934, 1.6732632423543772848


def _gelu_approximation_derivative(x, a, b):
    t = np.tanh(a * (x + b * x**3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * a * (1 + 3 * b * x * x)


def _clamped_leaky_derivative(x, a, b):
    value = np.where(x < 0, a * x, x)
    return np.where(value >= b, 0.0, np.where(x < 0, a, 1.0))


def _one(x):
    return np.ones_like(x)


DERIVATIVES = {  # f'(x); at a kink, the documented side (comparisons written to give it)
    0: lambda x, a, b: _one(x),
    1: lambda x, a, b: np.where(x > 0, 1.0, 0.0),
    2: lambda x, a, b: np.where(x < 0, a, 1.0),
    3: lambda x, a, b: _sigmoid(x) * (1 - _sigmoid(x)),
    4: lambda x, a, b: 1 - np.tanh(x) ** 2,
    5: lambda x, a, b: a * b * (1 - np.tanh(b * x) ** 2),
    6: lambda x, a, b: np.sign(x),
    7: lambda x, a, b: a * _one(x),
    8: lambda x, a, b: np.where((x >= a) & (x <= b), 1.0, 0.0),
    12: _gelu_approximation_derivative,
    15: lambda x, a, b: np.where((a * x + b >= 0) & (a * x + b <= 1), a, 0.0),
    16: lambda x, a, b: a * b * _sigmoid(b * x),
    17: lambda x, a, b: 1 / (1 + np.abs(x)) ** 2,
    18: lambda x, a, b: np.where(x < 0, a * np.exp(np.minimum(x, 0)), 1.0),
    19: _clamped_leaky_derivative,
    20: lambda x, a, b: a * _one(x),
    22: lambda x, a, b: _sigmoid(-x),
    23: lambda x, a, b: _SELU_SCALE * np.where(x < 0, _SELU_ALPHA * np.exp(np.minimum(x, 0)), 1.0),
    24: lambda x, a, b: np.where(x < 0, np.exp(np.minimum(x, 0) / a), 1.0),
    25: lambda x, a, b: np.where(np.abs(x) <= a, 0.0, 1.0),
    26: lambda x, a, b: np.where(np.abs(x) <= a, 0.0, 1.0),
    27: lambda x, a, b: np.tanh(x) ** 2,
    28: lambda x, a, b: np.where(x > a, 1.0, 0.0),
    30: lambda x, a, b: np.where(x <= -3, 0.0, np.where(x >= 3, 1.0, (2 * x + 3) / 6)),
    31: lambda x, a, b: _sigmoid(x) * (1 + x * (1 - _sigmoid(x))),
    32: lambda x, a, b: np.where((x > 0) & (x < 6), 1.0, 0.0),
    33: lambda x, a, b: 2 / math.sqrt(math.pi) * np.exp(-x * x),
    34: lambda x, a, b: (0.5 * (1 + erf(x / math.sqrt(2)))
                         + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)),
    35: lambda x, a, b: _sigmoid(1.702 * x) * (1 + 1.702 * x * (1 - _sigmoid(1.702 * x))),
}

#: Where each function's derivative jumps (or the function itself), as functions of (alpha, beta).
KINKS = {
    1: lambda a, b: [0.0], 2: lambda a, b: [0.0], 6: lambda a, b: [0.0], 8: lambda a, b: [a, b],
    15: lambda a, b: [-b / a, (1 - b) / a] if a else [], 18: lambda a, b: [0.0],
    19: lambda a, b: [0.0, b] if b >= 0 else [0.0, b / a] if a else [0.0],
    23: lambda a, b: [0.0], 25: lambda a, b: [-a, a], 26: lambda a, b: [-a, a],
    28: lambda a, b: [a],
    30: lambda a, b: [-3.0, 3.0], 32: lambda a, b: [0.0, 6.0],
}


def numpy_activation_derivative(fn, x, alpha=math.nan, beta=math.nan):
    """f'(x); NaN at NaN (a derivative at no number is no number)."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.broadcast_to(DERIVATIVES[int(fn)](x, alpha, beta), x.shape).astype(np.float64)
    return np.where(np.isnan(x), np.nan, d)


def kinks(fn, alpha=math.nan, beta=math.nan):
    """The points where f or f' is not continuous (empty for smooth functions)."""
    return [float(k) for k in KINKS.get(int(fn), lambda a, b: [])(alpha, beta)]
