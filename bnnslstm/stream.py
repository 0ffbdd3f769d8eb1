"""Streaming: a layer run one frame at a time, its state carried from frame to frame.

:meth:`bnnslstm.LSTM.stream` returns a :class:`Stream`. Its plan is made once, for one
step, and bound to the stream's own buffers (the input frame, the output frame, the state,
the scratch): a :meth:`Stream.step` copies the frame in, runs the kernels and copies the
output out, checking only the two arrays it is given, and allocates nothing when ``out``
is given. :meth:`Stream.run` takes several frames at once (a plan per chunk length, kept).
"""

import numpy as np

from . import planner
from ._calls import forward_params
from ._memory import OWN as _OWN
from ._memory import Workspace, options
from ._threads import serial_blas, team_of
from .descriptors import NDArrayDescriptor
from .enums import DataLayout
from .errors import BNNSError
from .lstm import _plan_of, run_kept

__all__ = ["Stream"]


class Stream:
    """A unidirectional :class:`~bnnslstm.LSTM` fed one frame at a time (from
    :meth:`bnnslstm.LSTM.stream`).

    Each :meth:`step` continues where the last one stopped: ``step`` on frames
    ``x[0], x[1], ...`` gives what one :meth:`~bnnslstm.LSTM.forward` call on the whole
    sequence gives (the same arithmetic, frame by frame), with the state carried in the
    stream. The weights are read at every step: changing the layer's parameters changes the
    next frame's result.

    Threads: a stream belongs to one thread at a time (its buffers are its own; two threads
    stepping one stream interleave its state). Several streams of one layer may run in
    several threads at once.

    ``filter_params`` (a :class:`~bnnslstm.FilterParameters`) is taken when the stream is
    made. With its ``alloc_memory`` / ``free_memory``, the stream's own buffers (frames,
    state, scratch) come from ``alloc_memory`` when it is made and go back to
    ``free_memory`` at :meth:`close` (or when the stream is collected); a :meth:`run`
    takes its scratch from them for the call and gives it back before it returns; a
    :meth:`step` takes nothing.
    """

    def __init__(self, layer, batch_size=1, h0=None, c0=None, filter_params=None):
        if layer.bidirectional:
            raise BNNSError("stream: a bidirectional layer cannot stream (its reverse direction "
                            "reads the frames that have not come yet): run forward on the "
                            "whole sequence")
        B = batch_size
        if isinstance(B, bool) or not isinstance(B, (int, np.integer)) or B < 1:
            raise BNNSError(f"batch_size: expected a positive integer, got {batch_size!r}")
        self.layer, self.batch_size = layer, int(B)
        L, I, H = layer.num_layers, layer.input_size, layer.hidden_size
        self._threads, workspace = options(filter_params)
        # the stream's own buffers, for its life: the caller's, when it gives callbacks
        self._own = Workspace(workspace.alloc, workspace.free) if workspace.alloc else None
        self._plan = None
        self._x = self._zeros((1, B, I))
        self._y = self._zeros((1, B, H))
        self._h = self._zeros((L, 1, B, H))    # [L][D][B][H]: read and written in place
        self._c = self._zeros((L, 1, B, H))
        self.reset(h0, c0)
        plan, team = self._made(1, self._x, self._y)
        plan.bind(self._zeros((plan.capacity,), np.uint8),
                  self._zeros((plan.scratch_bytes(team, False),), np.uint8), team, False, False)
        # one step: nothing to try (the canonical arrangement)
        plan.use(planner.canonical(H, B, 1, team, False))
        self._plan = plan
        self._chunks = {}            # T -> (plan, team) of run(), kept

    def _zeros(self, shape, dtype=None):
        """A zeroed array of the stream's own (alloc_memory's, with callbacks)."""
        dtype = np.dtype(self.layer.dtype if dtype is None else dtype)
        if self._own is None:
            return np.zeros(shape, dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        return self._own.zeros(nbytes)[:nbytes].view(dtype).reshape(shape)

    def close(self):
        """Give the stream's buffers back to ``free_memory`` (with allocator callbacks; else
        nothing to do). The stream cannot step after that."""
        self._plan, self._chunks = None, {}
        own, self._own = getattr(self, "_own", None), None
        if own is not None:
            self._x = self._y = self._h = self._c = None
            own.give_back()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_own", None) is not None:
            self.close()

    def _made(self, T, x, y):
        """The checked plan of a T-step call on ``x`` and ``y`` whose initial and final
        states are both the stream's state (the kernels read a layer's initial state at its
        first step and write its final state after its last: in place is safe)."""
        layout = DataLayout.NSE if self.layer.batch_first and T > 1 else DataLayout.SNE
        h, c = NDArrayDescriptor.from_array(self._h), NDArrayDescriptor.from_array(self._c)
        descriptors = (NDArrayDescriptor.from_array(x, layout), NDArrayDescriptor.from_array(
            y, layout), h, c, h, c)
        plan = _plan_of(forward_params(self.layer, T, self.batch_size, descriptors))
        plan.release_checks()
        return plan, team_of(plan, self._threads)

    # ------------------------------------------------------------------ frames
    def step(self, x_t, out=None):
        """One frame: ``x_t`` ``[B][I]`` (a C-contiguous array of the layer's type) gives
        ``y_t`` ``[B][H]``, written into ``out`` when given (C-contiguous, the layer's
        type; nothing is allocated then) and returned."""
        if self._plan is None:
            raise BNNSError("stream: closed")
        if out is None:
            out = np.empty((self.batch_size, self.layer.hidden_size), self.layer.dtype)
        if serial_blas.in_c:
            self._plan.frame(x_t, out, True)
        else:
            with serial_blas:
                self._plan.frame(x_t, out, False)
        return out

    def run(self, x, out=None):
        """Several frames at once: ``x`` ``[T][B][I]`` (``[B][T][I]`` with the layer's
        ``batch_first``) gives ``y`` of the same layout with ``H`` features (into ``out``
        when given), as T calls of :meth:`step` would."""
        layer = self.layer
        if self._plan is None:
            raise BNNSError("stream: closed")
        x = layer._convert(x, "x")
        first = layer.batch_first
        if x.ndim != 3 or x.shape[2] != layer.input_size or x.shape[
                0 if first else 1] != self.batch_size or x.size == 0:
            raise BNNSError(f"x: expected [T][{self.batch_size}][{layer.input_size}]"
                            f"{' (batch_first: [B][T][I])' if first else ''}, got {x.shape}")
        T = x.shape[1 if first else 0]
        shape = x.shape[:2] + (layer.hidden_size,)
        if out is None:
            out = np.empty(shape, layer.dtype)
        elif not (isinstance(out, np.ndarray) and out.shape == shape and out.dtype == layer.dtype
                  and out.flags.c_contiguous and out.flags.writeable):
            raise BNNSError(f"out: expected a writable C-contiguous {layer.dtype.name} array "
                            f"of shape {shape}")
        if T == 1:   # the stream's own one-step plan
            self.step(x.reshape(self.batch_size, -1), out.reshape(self.batch_size, -1))
            return out
        kept = self._chunks.get(T)
        if kept is None:
            kept = self._chunks[T] = self._made(T, x, out)
        plan = kept[0]
        plan.move_forward(x, out, self._h, self._c, self._h, self._c)
        workspace = Workspace(self._own.alloc, self._own.free) if self._own else _OWN
        try:
            run_kept(plan, self._threads, workspace)
        finally:
            plan.park()
        return out

    # ------------------------------------------------------------------ state
    @property
    def h(self):
        """The hidden state after the last frame, ``[L][B][H]`` (a copy)."""
        return self._h[:, 0].copy()

    @property
    def c(self):
        """The cell state after the last frame, ``[L][B][H]`` (a copy)."""
        return self._c[:, 0].copy()

    def reset(self, h0=None, c0=None):
        """Start again: the state becomes ``h0``, ``c0`` (``[L][B][H]``; zeros when None)."""
        shape = (self.layer.num_layers, self.batch_size, self.layer.hidden_size)
        for name, given, state in (("h0", h0, self._h), ("c0", c0, self._c)):
            if given is None:
                state[...] = 0
            else:
                state[:, 0] = self.layer._array(given, shape, name)

    def __repr__(self):
        return f"Stream({self.layer!r}, batch_size={self.batch_size})"
