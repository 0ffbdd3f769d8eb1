"""Enumerations with BNNS's numeric values, so code written against BNNS maps one to one."""

from enum import IntEnum, IntFlag

__all__ = ["DataType", "DataLayout", "NDArrayFlags", "ActivationFunction", "LayerFlags",
           "FilterFlags"]


class DataType(IntEnum):
    """Element type of a descriptor's buffer (``BNNSDataType``)."""

    FLOAT32 = 0x10020
    FLOAT64 = 0x10040  # extension: BNNS has no double LSTM; used for gradient checks
    INT32 = 0x20020
    INT64 = 0x20040
    UINT32 = 0x40020
    UINT64 = 0x40040

    @property
    def itemsize(self):
        """Bytes per element (the low byte of the value is the width in bits)."""
        return (self.value & 0xFF) // 8


class DataLayout(IntEnum):
    """How ``size`` and ``stride`` map logical indices to memory (``BNNSDataLayout``)."""

    VECTOR = 0x10000
    ROW_MAJOR_MATRIX = 0x20000
    COLUMN_MAJOR_MATRIX = 0x20001
    SNE = 0x30001
    NSE = 0x30002
    LAST_MAJOR_1D = 0x18000
    LAST_MAJOR_2D = 0x28000
    LAST_MAJOR_3D = 0x38000
    LAST_MAJOR_4D = 0x48000
    LAST_MAJOR_5D = 0x58000
    LAST_MAJOR_6D = 0x68000
    LAST_MAJOR_7D = 0x78000
    LAST_MAJOR_8D = 0x88000
    FIRST_MAJOR_1D = 0x18001
    FIRST_MAJOR_2D = 0x28001
    FIRST_MAJOR_3D = 0x38001
    FIRST_MAJOR_4D = 0x48001
    FIRST_MAJOR_5D = 0x58001
    FIRST_MAJOR_6D = 0x68001
    FIRST_MAJOR_7D = 0x78001
    FIRST_MAJOR_8D = 0x88001

    @property
    def rank(self):
        """Number of dimensions (the top nibble of the value, as in BNNS)."""
        return self.value >> 16


class NDArrayFlags(IntEnum):
    """What a gradient descriptor does with what is already in its buffer."""

    BACKPROP_SET = 0
    BACKPROP_ACCUMULATE = 1


class ActivationFunction(IntEnum):
    """BNNS activation functions (``BNNSActivationFunction``), values 0-35."""

    IDENTITY = 0
    RECTIFIED_LINEAR = 1
    LEAKY_RECTIFIED_LINEAR = 2
    SIGMOID = 3
    TANH = 4
    SCALED_TANH = 5
    ABS = 6
    LINEAR = 7
    CLAMP = 8
    INTEGER_LINEAR_SATURATE = 9
    INTEGER_LINEAR_SATURATE_PER_CHANNEL = 10
    SOFTMAX = 11
    GELU_APPROXIMATION = 12
    GUMBEL = 13
    GUMBEL_MAX = 14
    HARD_SIGMOID = 15
    SOFTPLUS = 16
    SOFTSIGN = 17
    ELU = 18
    CLAMPED_LEAKY_RECTIFIED_LINEAR = 19
    LINEAR_WITH_BIAS = 20
    LOG_SOFTMAX = 21
    LOG_SIGMOID = 22
    SELU = 23
    CELU = 24
    HARD_SHRINK = 25
    SOFT_SHRINK = 26
    TANH_SHRINK = 27
    THRESHOLD = 28
    PRELU_PER_CHANNEL = 29
    HARD_SWISH = 30
    SILU = 31
    RELU6 = 32
    ERF = 33
    GELU = 34
    GELU_APPROXIMATION_SIGMOID = 35


#: Functions that are not elementwise (or need per-channel data / randomness): refused by the LSTM.
NON_ELEMENTWISE = frozenset(
    {
        ActivationFunction.INTEGER_LINEAR_SATURATE,
        ActivationFunction.INTEGER_LINEAR_SATURATE_PER_CHANNEL,
        ActivationFunction.SOFTMAX,
        ActivationFunction.GUMBEL,
        ActivationFunction.GUMBEL_MAX,
        ActivationFunction.LOG_SOFTMAX,
        ActivationFunction.PRELU_PER_CHANNEL,
    }
)


class LayerFlags(IntFlag):
    """``BNNSLayerFlags`` bits that the LSTM reads."""

    BIDIRECTIONAL = 0x1
    DEFAULT_ACTIVATIONS = 0x2


class FilterFlags(IntFlag):
    """``BNNSFlags`` bits of :class:`~bnnslstm.FilterParameters`."""

    #: ``BNNSFlagsUseClientPtr``: work from the caller's buffers. bnnslstm always does (it
    #: reads weights and data in place; a layout BLAS cannot address is still copied for
    #: the call), so the bit is accepted and changes nothing.
    USE_CLIENT_PTR = 0x1
