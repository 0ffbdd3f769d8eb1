"""Threads and BLAS: how many cores a call may use, its thread team's size, which BLAS the
kernels call, and that BLAS kept single-threaded while calls run (in C when it is
OpenBLAS with its own thread-count functions: _plan's _serial.pxi).

The kernels' team is their own pool (``_kernels/_team.h``); BLAS runs single-threaded
inside every call, whatever its team: inside a team each thread calls BLAS on its own
slice, and a call too small for a team that left BLAS's threads as they are would round
differently depending on whether another call had BLAS limited at that moment (results
must depend on the call alone).
"""

import os
import threading

from . import _plan
from ._kernels._lstm import team_available  # the same in every kernel build

__all__ = ["CORES", "TEAM_MAX", "TEAM_MIN_WORK", "FRAME_MIN_WORK", "team_of", "kernels_blas",
           "blas_libraries", "blas_controllers", "serial_blas"]

CORES = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
         else (os.cpu_count() or 1))
TEAM_MAX = min(team_available(), 256)
# a step whose recurrent product has fewer multiply-adds than this runs on one thread: the
# barriers of a team would cost more than the other cores give
TEAM_MIN_WORK = 1 << 17
# the same for a one-step call, products and projection (measured per frame of a stream on a
# 2-core Zen 5, one thread against two: I64 H64 batch 1, 32768 multiply-adds, 3.0 us and
# 3.2; I96 H96, 73728, 5.1 and 4.4; 2 layers I128 H128, 131072 a layer, 20.6 and 13.6)
FRAME_MIN_WORK = 1 << 15


def team_of(plan, threads):
    """The kernels' team: the threads asked for, as many as a step's work can use: each
    thread at least TEAM_MIN_WORK multiply-adds of a step's recurrent products, or, in a
    one-step call (a stream's frame, whose input projection is as much work per step),
    FRAME_MIN_WORK of the products and the projection."""
    if plan.T == 1:
        work = plan.D * 4 * plan.H * plan.B * (plan.H + plan.I) // FRAME_MIN_WORK
    else:
        work = plan.D * 4 * plan.H * plan.H * plan.B // TEAM_MIN_WORK
    return max(1, min(threads, TEAM_MAX, work))


def blas_libraries():
    """threadpoolctl's controllers of every BLAS library loaded (imported on first use:
    threadpoolctl scans the process's libraries), scipy's own loaded first."""
    import scipy.linalg.cython_blas  # noqa: F401  (loads the BLAS the kernels call)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas").lib_controllers


def blas_controllers():
    """threadpoolctl's controllers of the BLAS libraries the kernels call."""
    return kernels_blas(blas_libraries())


def kernels_blas(libraries):
    """The BLAS libraries among ``libraries`` (threadpoolctl controllers) that the kernels
    call: scipy's own when scipy ships one (its wheels bundle an OpenBLAS next to the
    package; numpy's copy is not called by the kernels, and limiting it too doubled the
    cost of a small call's limit), otherwise every one of them (a scipy built on a system
    BLAS shares it)."""
    import scipy

    root = os.path.dirname(os.path.realpath(scipy.__file__))
    # scipy/.dylibs (macOS), scipy.libs (Linux, Windows)
    places = (root + os.sep, root + ".libs" + os.sep)
    own = [lib for lib in libraries if os.path.realpath(lib.filepath or "").startswith(places)]
    return own or list(libraries)


def _thread_count_functions(lib):
    """(get, set, addresses) of a threadpoolctl controller's thread count, callable from
    any thread; ``addresses`` the two functions' C addresses when they are OpenBLAS's own
    (else None).

    threadpoolctl (3.6 and later) lets only the first thread that limits a process-wide
    OpenBLAS pool change it and silently ignores every other thread, which left calls from
    any thread but the main one on multi-threaded BLAS (their rounding then depended on the
    thread that called, and a team's threads each ran BLAS threads on top). SerialBlas
    coordinates its own users, so it calls the setting function directly: OpenBLAS's own
    functions when threadpoolctl resolves them (a plain ctypes call: a small call's limit
    costs 1-2 us instead of 3-4), else the controller's unrestricted setter."""
    get, set_ = lib.get_num_threads, getattr(lib, "_real_set_num_threads", lib.set_num_threads)
    symbol = getattr(lib, "_get_symbol", None)
    if (lib.internal_api == "openblas" and getattr(lib, "threading_layer", None) != "openmp"
            and symbol is not None):
        raw_get, raw_set = symbol("openblas_get_num_threads"), symbol("openblas_set_num_threads")
        if raw_get is not None and raw_set is not None:
            import ctypes

            addresses = tuple(ctypes.cast(f, ctypes.c_void_p).value for f in (raw_get, raw_set))
            return raw_get, raw_set, addresses
    return get, set_, None


class SerialBlas:
    """Keeps BLAS single-threaded while a call runs: each thread of the call's team calls
    BLAS on its own slice, and BLAS threads on top would compete for the same cores.

    The limit applies only inside the ``with`` and is reference-counted, so concurrent
    calls restore the caller's setting once, when the last of them ends.

    The limit is set from whichever thread makes the call (see _thread_count_functions).
    When every library's functions are OpenBLAS's own, the counting and the calls are in C
    (_plan's serial_blas, _serial.pxi): a small call then pays nanoseconds for its limit."""

    def __init__(self):
        self._lock = threading.Lock()
        self._users = 0
        self._saved = []
        self._libraries = None
        self.in_c = False   # the limit is _plan.serial_blas's (known once _blas() has run)

    def _blas(self):
        if self._libraries is None:
            functions = [_thread_count_functions(lib) for lib in blas_controllers()]
            if functions and all(addresses for _, _, addresses in functions):
                _plan.serial_blas_functions([addresses for _, _, addresses in functions])
                self.in_c = True
            self._libraries = [(get, set_) for get, set_, _ in functions]
        return self._libraries

    def __enter__(self):
        if self._libraries is None:
            self._blas()
        if self.in_c:
            _plan.serial_blas(True)
            return
        with self._lock:
            if self._users == 0:
                self._saved = [(set_threads, get_threads())
                               for get_threads, set_threads in self._blas()]
                for set_threads, n in self._saved:
                    if n != 1:
                        set_threads(1)
            self._users += 1

    def __exit__(self, *exc):
        if self.in_c:
            _plan.serial_blas(False)
            return
        with self._lock:
            self._users -= 1
            if self._users == 0:
                for set_threads, n in self._saved:
                    if n != 1:
                        set_threads(n)
                self._saved = []

    def _before_fork(self):
        self._lock.acquire()  # no fork halfway through setting the limit or restoring it
        _plan.serial_blas_fork(0)

    def _after_fork_in_parent(self):
        _plan.serial_blas_fork(1)
        self._lock.release()

    def _after_fork_in_child(self):
        """The child has only the forking thread: calls the parent's other threads were
        making do not exist here, so their limit is lifted and the count starts at 0."""
        _plan.serial_blas_fork(2)
        self._lock = threading.Lock()
        users, saved = self._users, self._saved
        self._users, self._saved = 0, []
        if users:
            for set_threads, n in saved:
                if n != 1:
                    set_threads(n)


#: the one limiter: ``with serial_blas:`` around every call's kernels (see the module's text)
serial_blas = SerialBlas()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=serial_blas._before_fork,
                        after_in_parent=serial_blas._after_fork_in_parent,
                        after_in_child=serial_blas._after_fork_in_child)
