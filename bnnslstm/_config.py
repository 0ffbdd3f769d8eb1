"""bnnslstm.show_config(): how the installed package was built and what it runs on."""

import os
import platform
import sys
import sysconfig

__all__ = ["show_config"]

# environment variables that change what the BLAS runs (OpenBLAS's kernels and cache
# blocking, its threads outside the calls) or how the planner chooses
_BLAS_ENVIRONMENT = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                     "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                     "BNNSLSTM_PLANNER")


def _blas():
    """The BLAS libraries threadpoolctl finds loaded, the one(s) the kernels call first
    (the ones every call limits to one thread: bnnslstm._threads.kernels_blas), and the
    BLAS scipy says it was built with (its own show_config)."""
    import scipy
    import scipy.linalg.cython_blas  # noqa: F401  (loads the BLAS the kernels call)

    from ._threads import kernels_blas

    try:
        from ._threads import blas_libraries

        controllers = blas_libraries()
    except Exception as error:  # informative only: never fail to report the rest
        controllers, found = [], f"threadpoolctl failed: {error}"
    else:
        found = "threadpoolctl"
    built_with = {}
    try:
        blas = scipy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        built_with = {"name": blas.get("name"), "version": blas.get("version")}
    except Exception:  # older scipy, or another build system: the libraries below still say it
        pass
    called = kernels_blas(controllers) if controllers else []
    if str(built_with.get("name", "")).lower() in ("accelerate", "veclib"):
        # Accelerate, which threadpoolctl does not see: whatever it lists is another BLAS
        called = []
    libraries = []
    for lib in called + [lib for lib in controllers if lib not in called]:
        info = lib.info()
        libraries.append({
            "called_by_kernels": lib in called,
            "library": info.get("internal_api"),
            "version": info.get("version"),
            "architecture": info.get("architecture"),
            "threading_layer": info.get("threading_layer"),
            "num_threads": info.get("num_threads"),
            "filepath": info.get("filepath"),
        })
    return {
        "scipy": scipy.__version__,
        "scipy_built_with": built_with,
        "integer": "32-bit (scipy.linalg.cython_blas: every size, leading dimension and "
                   "increment fits a C int)",
        "threads_inside_calls": 1,
        "found_by": found,
        "libraries": libraries,
        "environment": {name: os.environ[name] for name in _BLAS_ENVIRONMENT
                        if name in os.environ},
    }


def _threading():
    from . import _threads

    return {
        "model": "the kernels' own thread pool (" +
                 ("Win32 threads" if os.name == "nt" else "pthreads") + ")",
        "openmp": False,
        "cores": _threads.CORES,
        "team_max": _threads.TEAM_MAX,
        "team_min_work": _threads.TEAM_MIN_WORK,
        "frame_min_work": _threads.FRAME_MIN_WORK,
        "team_rule": "a call's team: min(n_threads or cores, team_max, D*4*H*H*B // "
                     "team_min_work, or D*4*H*(H+I)*B // frame_min_work for one step), at "
                     "least 1",
    }


def _kernels():
    from . import _kernels, _plan

    features = _kernels.cpu_features()
    wanted = sorted({name for needs in _kernels.KERNEL_FEATURES.values() for name in needs})
    in_use = {module: name for name, module in _kernels.BUILD_MODULES.items()}.get(
        _plan.kernels.__name__)
    return {
        "in_use": in_use,
        "runnable_here": _kernels.available_builds(),
        "compiled": list(_build().KERNEL_BUILDS),
        "cpu_features": {name: bool(features.get(name)) for name in wanted},
    }


def _build():
    from . import _build as build

    return build


def _python():
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "gil_enabled": sys._is_gil_enabled() if hasattr(sys, "_is_gil_enabled") else True,
        "platform": f"{platform.system()} {platform.machine()}",
    }


def _config():
    from . import planner
    from ._version import __version__

    build = _build()
    return {
        "bnnslstm": {"version": __version__,
                     "location": os.path.dirname(os.path.abspath(__file__))},
        "python": _python(),
        "compiler": dict(build.COMPILER),
        "build": dict(build.BUILD),
        "blas": _blas(),
        "threading": _threading(),
        "kernels": _kernels(),
        "planner": {"mode": planner.mode()},
    }


def _lines(value, indent=0):
    """``value`` as YAML-like text: one ``key: value`` line per entry, nested entries
    indented, lists of dicts as ``-`` items."""
    pad = "  " * indent
    out = []
    for key, item in value.items():
        if isinstance(item, dict) and item:
            out.append(f"{pad}{key}:")
            out += _lines(item, indent + 1)
        elif isinstance(item, list) and item and all(isinstance(e, dict) for e in item):
            out.append(f"{pad}{key}:")
            for entry in item:
                first, *rest = _lines(entry, indent + 2)
                out.append(f"{pad}  - {first.lstrip()}")
                out += rest
        elif isinstance(item, list):
            out.append(f"{pad}{key}: [{', '.join(str(e) for e in item)}]")
        else:
            out.append(f"{pad}{key}: {'none' if item in (None, {}) else item}")
    return out


def show_config(mode="stdout"):
    """How this installation of bnnslstm was built and what it runs on: the first thing to
    give in a performance report.

    Sections: ``bnnslstm`` (version, location); ``python`` (version, free-threaded or
    not); ``compiler`` and ``build`` (the C compiler, its flags, Cython, meson, build type
    and the versions built against, as recorded when the package was compiled); ``blas``
    (the BLAS scipy's ``cython_blas`` calls, as threadpoolctl finds it: library, version,
    the CPU architecture whose kernels it runs, its threading layer and threads; the ones
    the kernels call come first, every call runs them on one thread; the environment
    variables set that change what it runs); ``threading`` (the
    kernels' own thread pool, no OpenMP; the cores, the largest team and the rule a call's
    team follows); ``kernels`` (the elementwise build in use, those this CPU runs, those
    compiled in, and the CPU features they need); ``planner`` (its mode).

    Parameters
    ----------
    mode : {"stdout", "dicts"}
        ``"stdout"`` prints the configuration as indented ``key: value`` lines and returns
        None; ``"dicts"`` returns it as a dict of dicts and prints nothing (numpy's
        ``show_config`` takes the same modes).
    """
    if mode not in ("stdout", "dicts"):
        raise ValueError(f"mode: expected 'stdout' or 'dicts', got {mode!r}")
    config = _config()
    if mode == "dicts":
        return config
    print("\n".join(_lines(config)))
    return None
