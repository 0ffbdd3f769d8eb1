"""Compiled kernels (Cython + C). Private: the plan (``bnnslstm/_plan.pyx``) checks every
call before it runs them.

The kernels of one LSTM call are written once, in ``_lstm.pxi`` (which includes one file
per tier: ``_rows`` the cache and carry accessors, ``_cell`` the cell maths, ``_input`` the
input projection and dropout, ``_forward``, ``_backward``, ``_driver`` the thread team's
loop), and built three times: ``_lstm`` (portable), ``_lstm_avx2`` and ``_lstm_avx512``,
which differ only in the instruction sets the compiler may use for the elementwise passes.
Every matrix product is a call of scipy's BLAS through the one wrapper of ``_blas.pxd``,
serial inside a call; a call's thread team is the pool of ``_team.h`` (pthreads or Win32
threads). ``_activations`` and ``_dropout`` hold the activation functions and the dropout
masks, also exposed to Python for the references and tests; ``_blas_check`` exposes
the BLAS wrapper itself to tests/test_blas.py (nothing else imports it).

This module chooses the build: :func:`available_builds` lists those this installation has
and this CPU runs, :func:`load_build` imports one.
"""

import importlib
import importlib.util

BUILD_MODULES = {"portable": "bnnslstm._kernels._lstm", "avx2": "bnnslstm._kernels._lstm_avx2",
                 "avx512": "bnnslstm._kernels._lstm_avx512"}
# numpy's CPU-feature names (the OS's support of the registers included) each build needs
KERNEL_FEATURES = {"portable": (), "avx2": ("AVX2", "FMA3"),
                   "avx512": ("AVX512F", "AVX512DQ", "AVX512BW", "AVX512VL", "AVX2", "FMA3")}


def cpu_features():
    """numpy's CPU-feature table ({name: bool}); empty when numpy has none."""
    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):
        try:
            return dict(importlib.import_module(module).__cpu_features__)
        except (ImportError, AttributeError):
            continue
    return {}


def available_builds():
    """The kernel builds this installation has and this CPU runs, best last."""
    features = cpu_features()
    return [name for name, needs in KERNEL_FEATURES.items()
            if all(features.get(feature) for feature in needs)
            and (name == "portable" or importlib.util.find_spec(BUILD_MODULES[name]) is not None)]


def load_build(name=None):
    """(name, module) of one build: ``"portable"``, ``"avx2"`` or ``"avx512"`` (None: the
    best this CPU runs). A build is imported only on a CPU that has its instruction sets
    (KERNEL_FEATURES): its code may use them anywhere, its module init included."""
    names = available_builds()
    name = names[-1] if name is None else name
    if name not in names:
        raise ValueError(f"kernels: {name!r} is not available here (available: {names})")
    return name, importlib.import_module(BUILD_MODULES[name])
