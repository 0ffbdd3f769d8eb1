"""Plain-numpy activation functions, written from BNNS's definitions (independent of bnnslstm).

``numpy_activation(fn, x, alpha, beta)`` with ``fn`` the integer BNNS value.
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
    19: lambda x, a, b: np.minimum(np.where(x < 0, a * x, x), b),      # CLAMPED_LEAKY_RECTIFIED_LINEAR
    20: lambda x, a, b: a * x + b,                                     # LINEAR_WITH_BIAS
    22: lambda x, a, b: -np.logaddexp(0, -x),                          # LOG_SIGMOID
    23: lambda x, a, b: 1.0507009873554804934 * np.where(               # SELU
        x < 0, 1.6732632423543772848 * np.expm1(np.minimum(x, 0)), x),
    24: lambda x, a, b: np.maximum(x, 0) + np.minimum(0, a * np.expm1(np.minimum(x, 0) / a)),  # CELU
    25: lambda x, a, b: np.where(np.abs(x) <= a, 0, x),                # HARD_SHRINK
    26: lambda x, a, b: np.where(x > a, x - a, np.where(x < -a, x + a, 0)),  # SOFT_SHRINK
    27: lambda x, a, b: x - np.tanh(x),                                # TANH_SHRINK
    28: lambda x, a, b: np.where(x > a, x, b),                         # THRESHOLD
    30: lambda x, a, b: x * np.clip(a * x + b, 0, 1),                  # HARD_SWISH
    31: lambda x, a, b: x * _sigmoid(x),                               # SILU
    32: lambda x, a, b: np.clip(x, 0, 6),                               # RELU6
    33: lambda x, a, b: erf(x),                                        # ERF
    34: lambda x, a, b: 0.5 * x * (1 + erf(x / math.sqrt(2))),          # GELU
    35: lambda x, a, b: x * _sigmoid(1.702 * x),                       # GELU_APPROXIMATION_SIGMOID
}


def numpy_activation(fn, x, alpha=math.nan, beta=math.nan):
    x = np.asarray(x, dtype=np.float64)
    return FUNCTIONS[int(fn)](x, alpha, beta)
