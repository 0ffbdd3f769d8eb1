"""The training cache: header, regions and capacity (SPEC §5). The single source of offsets.

Layout, in bytes from the buffer's start::

    0    header (64 bytes): magic b"BNNSLSTM", format version (u32), data type (u32),
         capacity (u64), SHA-256 fingerprint of the parameters (32 bytes)
    64   then for each layer l = 0 ... L-1, each region starting at a multiple of 64:
         gates[l]      [T][B][D][4H]  gate activations i, f, g, o
         preact[l]     [T][B][D][4H]  gate pre-activations (only without DEFAULT_ACTIVATIONS)
         cells[l]      [T][B][D][H]   cell state after each step
         act_h_c[l]    [T][B][D][H]   hidden activation of the cell, act_h(c)
         output[l]     [T][B][D*H]    the layer's output sequence (0 at padded positions)
         mask[l]       [T][B][D*H]    dropout scale on layer l's input (l >= 1, dropout > 0)

The direction is an axis of each region so that one GEMM serves both directions.
"""

import hashlib
import struct
from dataclasses import dataclass

import numpy as np

from .enums import DataType
from .errors import BNNSError

MAGIC = b"BNNSLSTM"
VERSION = 1
HEADER_BYTES = 64
ALIGNMENT = 64
_HEADER = struct.Struct("<8sIIQ32s")


@dataclass(frozen=True)
class Region:
    """One region of the training cache."""

    name: str
    layer: int
    offset: int  # bytes from the buffer's start, a multiple of 64
    shape: tuple  # logical C-order shape
    data_type: DataType

    @property
    def nbytes(self):
        return int(np.prod(self.shape)) * self.data_type.itemsize


def _align(n):
    return -(-n // ALIGNMENT) * ALIGNMENT


def layout(plan):
    """(name, layer, offset, shape) of every region of the cache, in buffer order: the one
    place the offsets are computed."""
    T, B, D, H = plan.T, plan.B, plan.D, plan.H
    itemsize = plan.dtype.itemsize
    out = []
    offset = HEADER_BYTES
    for layer in range(plan.L):
        shapes = [("gates", (T, B, D, 4 * H))]
        if not plan.default_activations:
            shapes.append(("preact", (T, B, D, 4 * H)))
        shapes += [("cells", (T, B, D, H)), ("act_h_c", (T, B, D, H)), ("output", (T, B, D * H))]
        if layer > 0 and plan.dropout > 0:
            shapes.append(("mask", (T, B, D * H)))
        for name, shape in shapes:
            out.append((name, layer, offset, shape))
            offset = _align(offset + _count(shape) * itemsize)
    return out


def _count(shape):
    count = 1
    for n in shape:
        count *= n
    return count


def regions(plan):
    """Every region of the cache for a resolved plan, in buffer order."""
    data_type = DataType(plan.data_type)
    return [Region(name, layer, offset, shape, data_type) for name, layer, offset, shape in layout(plan)]


def capacity(plan, regions_layout=None):
    """Minimum cache size in bytes."""
    name, layer, offset, shape = (regions_layout or layout(plan))[-1]
    return offset + _count(shape) * plan.dtype.itemsize


def fingerprint(plan):
    """SHA-256 of every scalar, flag, shape and activation that changes the cache's layout or values."""
    parts = (
        plan.data_type, plan.I, plan.H, plan.B, plan.L, plan.T, plan.D,
        plan.default_activations, plan.activations, plan.peepholes, plan.biases,
        repr(plan.dropout), plan.dropout_seed, list(plan.batch_sizes),
    )
    return hashlib.sha256(repr(parts).encode()).digest()


def check_buffer(cache, plan, need, field="training_cache"):
    """The cache as a writable byte view, BNNSError if it is not one or is too small."""
    try:
        view = memoryview(cache)
    except TypeError:
        raise BNNSError(f"{field}: {type(cache).__name__} does not export the buffer protocol") from None
    if view.readonly:
        raise BNNSError(f"{field}: the buffer is read-only")
    if not view.c_contiguous:
        raise BNNSError(f"{field}: the buffer is not contiguous")
    if view.nbytes < need:
        raise BNNSError(f"{field}: {view.nbytes} bytes but these parameters need {need} "
                        "(compute_lstm_training_cache_capacity)")
    return np.frombuffer(view.cast("B"), dtype=np.uint8)


def write_header(buffer, plan):
    buffer[:HEADER_BYTES] = 0
    buffer[:_HEADER.size] = np.frombuffer(
        _HEADER.pack(MAGIC, VERSION, plan.data_type, capacity(plan), fingerprint(plan)), dtype=np.uint8)


def check_header(buffer, plan, field="training_cache"):
    """BNNSError unless the cache was written by a forward call with these parameters."""
    magic, version, data_type, size, digest = _HEADER.unpack(buffer[:_HEADER.size].tobytes())
    if magic != MAGIC:
        raise BNNSError(f"{field}: no forward pass has written this cache (bad magic)")
    if version != VERSION:
        raise BNNSError(f"{field}: cache format version {version}, this library reads {VERSION}")
    if data_type != plan.data_type or size != capacity(plan) or digest != fingerprint(plan):
        raise BNNSError(f"{field}: the cache was written for other parameters")
