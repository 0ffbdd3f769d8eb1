"""The buffers a call needs beyond its arguments: scratch, the regions an inference reads
back, a recomputed forward's cache, the planner's trials, copies of what BLAS cannot
address. By default this thread's scratch, kept from call to call (fresh pages cost page
faults); with :class:`~bnnslstm.FilterParameters`' ``alloc_memory`` and ``free_memory``,
the caller's buffers, each given back before the call returns, also when it fails
(BNNS's allocator callbacks, for real-time code that must not allocate).
"""

import threading

import numpy as np

from ._checks import integer
from ._threads import CORES
from .enums import FilterFlags
from .errors import BNNSError
from .parameters import FilterParameters

__all__ = ["ALIGNMENT", "Workspace", "options"]

ALIGNMENT = 64  # bytes: what every buffer asked of alloc_memory is aligned to

_scratch = threading.local()


def _scratch_bytes(name, nbytes):
    """This thread's scratch byte buffer ``name``, reused while it is large enough."""
    arrays = getattr(_scratch, "arrays", None)
    if arrays is None:
        arrays = _scratch.arrays = {}
    array = arrays.get(name)
    if array is None or array.nbytes < nbytes:
        array = arrays[name] = np.empty(max(nbytes, 64), np.uint8)
    return array


class Workspace:
    """Where one call's buffers come from: this thread's scratch (``alloc`` None), or the
    caller's ``alloc_memory`` / ``free_memory``; ``with workspace:`` gives every buffer
    taken back when the call ends."""

    def __init__(self, alloc=None, free=None):
        self.alloc, self.free, self.taken = alloc, free, []

    def take(self, name, nbytes):
        """A uint8 array of at least ``nbytes`` (``name``: which of this thread's scratch
        buffers, when it is one)."""
        if self.alloc is None:
            return _scratch_bytes(name, nbytes)
        return self._allocated(max(nbytes, 1))

    def zeros(self, nbytes):
        """A zeroed uint8 array of ``nbytes``, for this call alone."""
        if self.alloc is None:
            return np.zeros(max(nbytes, 64), np.uint8)
        array = self._allocated(max(nbytes, 1))
        array[:] = 0
        return array

    def copy(self, array):
        """A C-contiguous copy of ``array`` (of a plan: a matrix BLAS cannot address)."""
        if self.alloc is None:
            return np.ascontiguousarray(array)
        space = self._allocated(max(array.nbytes, 1))
        copy = space[:array.nbytes].view(array.dtype).reshape(array.shape)
        copy[...] = array
        return copy

    def _allocated(self, nbytes):
        """A buffer of alloc_memory's, checked: BNNSError naming the callback otherwise
        (the buffer is given back all the same)."""
        try:
            buffer = self.alloc(nbytes, ALIGNMENT)
        except Exception as error:
            raise BNNSError(f"filter_params.alloc_memory: raised {type(error).__name__}: "
                            f"{error}") from error
        if buffer is None:
            raise BNNSError(f"filter_params.alloc_memory: returned None for {nbytes} bytes")
        self.taken.append(buffer)
        try:
            view = memoryview(buffer)
        except TypeError:
            raise BNNSError(f"filter_params.alloc_memory: returned a "
                            f"{type(buffer).__name__}, which has no buffer protocol") from None
        if view.readonly or not view.c_contiguous:
            raise BNNSError("filter_params.alloc_memory: returned a read-only or "
                            "non-contiguous buffer")
        if view.nbytes < nbytes:
            raise BNNSError(f"filter_params.alloc_memory: returned {view.nbytes} bytes for a "
                            f"request of {nbytes}")
        array = np.frombuffer(view.cast("B"), np.uint8)
        if array.ctypes.data % ALIGNMENT:
            raise BNNSError(f"filter_params.alloc_memory: returned a buffer at an address that "
                            f"is not a multiple of the alignment asked ({ALIGNMENT})")
        return array[:nbytes]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.give_back(exc[0] is None)

    def give_back(self, report=True):
        """free_memory each buffer taken (every one, also when one of them raises)."""
        taken, self.taken = self.taken, []
        failed = None
        for buffer in reversed(taken):
            try:
                self.free(buffer)
            except Exception as error:  # the others are given back all the same
                failed = failed or error
        if failed is not None and report:
            raise BNNSError(f"filter_params.free_memory: raised {type(failed).__name__}: "
                            f"{failed}") from failed


OWN = Workspace()  # this thread's scratch: no state of its own, shared by every call


def options(filter_params):
    """(threads, workspace) of a call's ``filter_params`` (None: every core, this thread's
    scratch), each field checked: BNNSError naming the one at fault."""
    if filter_params is None:
        return CORES, OWN
    if not isinstance(filter_params, FilterParameters):
        raise BNNSError("filter_params: expected FilterParameters or None, "
                        f"got {type(filter_params).__name__}")
    flags = integer(filter_params.flags, "filter_params.flags")
    if flags & ~int(FilterFlags.USE_CLIENT_PTR):
        raise BNNSError(f"filter_params.flags: {flags:#x} has bits other than "
                        "FilterFlags.USE_CLIENT_PTR (1)")
    n = integer(filter_params.n_threads, "filter_params.n_threads")
    alloc, free = filter_params.alloc_memory, filter_params.free_memory
    if alloc is None and free is None:
        return (CORES if n == 0 else n), OWN
    if not (callable(alloc) and callable(free)):
        raise BNNSError("filter_params.alloc_memory, free_memory: expected two callables "
                        f"(or both None), got {type(alloc).__name__} and "
                        f"{type(free).__name__}")
    return (CORES if n == 0 else n), Workspace(alloc, free)
