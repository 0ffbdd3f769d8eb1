"""bnnslstm: Apple Accelerate's BNNS LSTM layer for every CPU.

The BNNS-style API (descriptors, parameters, training cache, forward and backward) and an
everyday :class:`LSTM` layer built on it. The documentation states the whole contract.
"""

try:
    from ._kernels import _lstm  # noqa: F401  (the compiled part must be importable)
except ImportError as error:  # pragma: no cover - only when run from an unbuilt source tree
    raise ImportError(
        "bnnslstm's compiled kernels are missing: install the package (pip install .) and "
        "run from outside the source tree, or use an editable install "
        "(pip install --no-build-isolation -e .)"
    ) from error

# ``planner`` (the module) and ``__version__`` are public too, outside __all__ (which keeps
# ``from bnnslstm import *`` to the API's classes and functions): the ``x as x`` form says so
from . import planner as planner
from ._config import show_config
from ._kernels._dropout import dropout_mask
from ._version import __version__ as __version__
from .activations import apply_activation
from .descriptors import NDArrayDescriptor, size_and_stride
from .enums import (
    ActivationFunction,
    DataLayout,
    DataType,
    FilterFlags,
    LayerFlags,
    NDArrayFlags,
)
from .errors import BNNSError, IdentityActivationsWarning
from .layer import LSTM
from .lstm import (
    compute_lstm_training_cache_capacity,
    direct_apply_lstm_batch_backward,
    direct_apply_lstm_batch_training_caching,
    training_cache_layout,
)
from .parameters import (
    Activation,
    FilterParameters,
    LayerParametersLSTM,
    LSTMDataDescriptor,
    LSTMGateDescriptor,
)
from .stream import Stream

__all__ = [
    "Activation",
    "ActivationFunction",
    "BNNSError",
    "DataLayout",
    "DataType",
    "FilterFlags",
    "FilterParameters",
    "IdentityActivationsWarning",
    "LayerFlags",
    "LayerParametersLSTM",
    "LSTM",
    "LSTMDataDescriptor",
    "LSTMGateDescriptor",
    "NDArrayDescriptor",
    "NDArrayFlags",
    "Stream",
    "apply_activation",
    "compute_lstm_training_cache_capacity",
    "direct_apply_lstm_batch_backward",
    "direct_apply_lstm_batch_training_caching",
    "dropout_mask",
    "show_config",
    "size_and_stride",
    "training_cache_layout",
]
