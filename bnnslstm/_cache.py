"""The training cache: its header and fingerprint, and the table of its regions.

The regions, their order, shapes and contents are one table, ``REGIONS`` in the plan
(_workspace.pxi), from which the plan computes the offsets once per call (the kernels bind
to them directly), :func:`regions` reports them, and the docs' training-cache page draws
its table. The buffer holds a 64-byte header (``HEADER_BYTES``: magic b"BNNSLSTM", format
version (u32), data type (u32), capacity (u64), SHA-256 fingerprint of the parameters (32
bytes), one byte of the hash of each parameter group), then the regions of each layer,
each at a multiple of 64 bytes. The direction is an axis of each region so that one GEMM
serves both directions.
"""

import functools
import hashlib
import struct
from dataclasses import dataclass

import numpy as np

from ._plan import HEADER_BYTES, REGIONS  # noqa: F401  (REGIONS: re-exported for the docs)
from .enums import DataType
from .errors import BNNSError

MAGIC = b"BNNSLSTM"
# 3: one byte per parameter group after the fingerprint; 2: packed parameters (1 hashed their repr)
VERSION = 3
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


def regions(plan):
    """Every region of the cache for a resolved plan, in buffer order (the offsets are the
    plan's, laid out once per plan)."""
    data_type = DataType(plan.data_type)
    return [Region(name, layer, offset, shape, data_type)
            for name, layer, offset, shape in plan.cache_layout()]


def _key(plan):
    """Every parameter the cache's layout or values depend on, as one hashable tuple:
    ``plan.dropout`` is the dropout that acts (0 when L == 1), and the seed counts only where
    it does (without dropout the masks, and so the cache, do not depend on it)."""
    seed = plan.dropout_seed if plan.dropout > 0 else 0
    return (plan.data_type, plan.I, plan.H, plan.B, plan.L, plan.T, plan.D,
            plan.default_activations, seed, plan.dropout, plan.activations, plan.peepholes,
            plan.biases, plan.batch_sizes)


def _groups(key):
    """The key's fields packed in groups a user sets apart, each named as the message names
    it."""
    data_type, I, H, B, L, T, D, default, seed, dropout, activations, peepholes, biases, sizes = key
    return [
        ("data_type", struct.pack("<q", data_type)),
        ("the sizes (input_size, hidden_size, batch_size, num_layers, seq_len or BIDIRECTIONAL)",
         struct.pack("<6q", I, H, B, L, T, D)),
        ("the activations (DEFAULT_ACTIVATIONS, a gate's activation or hidden_activation)",
         struct.pack("<q", default)
         + b"".join(struct.pack("<idd", *activation) for activation in activations)),
        ("dropout or dropout_seed", struct.pack("<Qd", seed, dropout)),
        ("which gates have a peephole (cw_desc)", bytes(peepholes)),
        ("which gates have a bias (b_desc)", bytes(biases)),
        ("sequence_descriptor (the batch sizes)", struct.pack(f"<{T}i", *sizes)),
    ]


@functools.lru_cache(maxsize=64)
def _digests(key):
    """(SHA-256 of every field, one byte of each group's hash): the header's fingerprint and
    its spare bytes. A byte that differs proves that its group differs, so the message can
    name it. Kept for the last 64 keys: a training loop asks for the same ones every step."""
    scalars, (activations, peepholes, biases, sizes) = key[:10], key[10:]
    fields = struct.pack("<8qQd", *scalars)
    fields += b"".join(struct.pack("<idd", *activation) for activation in activations)
    fields += bytes(peepholes) + bytes(biases)
    fields += struct.pack(f"<{len(sizes)}i", *sizes)
    groups = bytes(hashlib.sha256(packed).digest()[0] for _, packed in _groups(key))
    return hashlib.sha256(fields).digest(), groups


def fingerprint(plan):
    """SHA-256 of every scalar, flag, shape and activation that changes the cache's layout or
    values (see _key)."""
    return _digests(_key(plan))[0]


def check_buffer(cache, plan, need, field="training_cache"):
    """The cache as a writable byte view, BNNSError if it is not one or is too small."""
    try:
        view = memoryview(cache)
    except TypeError:
        raise BNNSError(f"{field}: {type(cache).__name__} does not export the buffer "
                        "protocol") from None
    if view.readonly:
        raise BNNSError(f"{field}: the buffer is read-only")
    if not view.c_contiguous:
        raise BNNSError(f"{field}: the buffer is not contiguous")
    if view.nbytes < need:
        raise BNNSError(f"{field}: {view.nbytes} bytes but these parameters need {need} "
                        "(compute_lstm_training_cache_capacity)")
    return np.frombuffer(view.cast("B"), dtype=np.uint8)


def header(plan):
    """The HEADER_BYTES a forward with this plan writes at the start of its cache."""
    digest, groups = _digests(_key(plan))
    packed = _HEADER.pack(MAGIC, VERSION, plan.data_type, plan.capacity, digest) + groups
    return packed + bytes(HEADER_BYTES - len(packed))


def write_header(buffer, plan):
    buffer[:HEADER_BYTES] = np.frombuffer(header(plan), dtype=np.uint8)


def check_header(buffer, plan, field="training_cache"):
    """BNNSError unless the cache was written by a forward call with these parameters."""
    magic, version, data_type, size, digest = _HEADER.unpack(buffer[:_HEADER.size].tobytes())
    if magic != MAGIC:
        raise BNNSError(f"{field}: no forward pass has written this cache (bad magic)")
    if version != VERSION:
        raise BNNSError(f"{field}: cache format version {version}, this library reads {VERSION}")
    if data_type != plan.data_type or size != plan.capacity or digest != fingerprint(plan):
        key = _key(plan)
        mine = _digests(key)[1]
        theirs = buffer[_HEADER.size:_HEADER.size + len(mine)].tobytes()
        names = [name for (name, _), a, b in zip(_groups(key), mine, theirs) if a != b]
        if data_type != plan.data_type and "data_type" not in names:
            names.insert(0, "data_type")
        detail = f": {'; '.join(names)} differ from the forward's" if names else ""
        raise BNNSError(f"{field}: the cache was written for other parameters{detail} (the "
                        f"backward must get the forward's layer_params)")
