"""bnnslstm.show_config(): what it reports agrees with the running package, and the printed
form says the same as the dicts."""

import importlib.util
import os
import re

import pytest
import scipy

import bnnslstm as bl
from bnnslstm import _kernels, _plan, _threads

SECTIONS = ["bnnslstm", "python", "compiler", "build", "blas", "threading", "kernels", "planner"]


@pytest.fixture
def config():
    return bl.show_config(mode="dicts")


def test_sections_and_package(config):
    assert list(config) == SECTIONS
    assert config["bnnslstm"]["version"] == bl.__version__
    assert config["bnnslstm"]["location"] == os.path.dirname(os.path.abspath(bl.__file__))


def test_build_recorded_at_compile_time(config):
    compiler, build = config["compiler"], config["build"]
    assert compiler["name"] in ("gcc", "clang", "msvc", "clang-cl", "intel", "intel-llvm",
                                "intel-cl", "intel-llvm-cl")
    assert re.fullmatch(r"\d+(\.\d+)+.*", compiler["version"]), compiler
    assert "-Wno-maybe-uninitialized" not in compiler["c_args"] or compiler["name"] == "gcc"
    assert build["buildtype"] in ("release", "debugoptimized", "debug", "plain", "minsize",
                                  "custom")
    assert (re.fullmatch(r"3\.\d+.*", build["cython"]) and
            re.fullmatch(r"\d+\.\d+.*", build["meson"]))
    assert isinstance(build["bounds_checks"], bool)
    assert build["python"] == "{}.{}".format(*__import__("sys").version_info[:2])


def test_blas_is_the_one_the_calls_limit(config):
    blas = config["blas"]
    assert blas["scipy"] == scipy.__version__
    assert blas["threads_inside_calls"] == 1
    called = [lib for lib in blas["libraries"] if lib["called_by_kernels"]]
    # the libraries the kernels call come first, and they are the ones every call limits
    assert blas["libraries"][:len(called)] == called
    limited = _threads.blas_controllers()
    if str(blas["scipy_built_with"].get("name")).lower() == "accelerate":
        # threadpoolctl does not see Accelerate: what it lists is not what scipy calls
        assert called == []
    else:
        assert (sorted(lib["filepath"] for lib in called) ==
                sorted(lib.info()["filepath"] for lib in limited))
    for lib in called:
        assert lib["library"] and lib["version"]
    assert called or blas["scipy_built_with"], "neither threadpoolctl nor scipy names a BLAS"
    assert blas["environment"] == {name: os.environ[name] for name in (
        "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
        "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "BNNSLSTM_PLANNER") if name in os.environ}


def test_threading_is_the_own_pool(config):
    """The team is the kernels' own pool: show_config's openmp False is true of every kernel
    build, none of which refers to an OpenMP runtime (GOMP_/omp_/__kmpc_ symbols)."""
    threading = config["threading"]
    assert threading["openmp"] is False
    for module in _kernels.BUILD_MODULES.values():
        spec = importlib.util.find_spec(module)
        if spec is not None:
            with open(spec.origin, "rb") as library:
                binary = library.read()
            assert not re.search(rb"GOMP_|\bomp_get|__kmpc_", binary), module
    assert threading["model"] in ("the kernels' own thread pool (pthreads)",
                                  "the kernels' own thread pool (Win32 threads)")
    assert threading["cores"] == _threads.CORES
    assert threading["team_max"] == _threads.TEAM_MAX == min(_plan.kernels.team_available(), 256)
    assert threading["team_min_work"] == _threads.TEAM_MIN_WORK


def test_kernels_in_use_follow_use_kernels():
    kernels = bl.show_config(mode="dicts")["kernels"]
    # the best this CPU runs, chosen at import
    assert kernels["in_use"] == kernels["runnable_here"][-1]
    assert set(kernels["runnable_here"]) <= set(kernels["compiled"])
    assert kernels["compiled"][0] == "portable"
    needed = {name for build in kernels["runnable_here"]
              for name in _kernels.KERNEL_FEATURES[build]}
    assert all(kernels["cpu_features"][name] for name in needed)
    try:
        _plan.use_kernels("portable")
        assert bl.show_config(mode="dicts")["kernels"]["in_use"] == "portable"
    finally:
        _plan.use_kernels()


def test_planner_mode():
    saved = bl.planner.mode()
    try:
        for mode in ("heuristic", "measure"):
            bl.planner.set_mode(mode)
            assert bl.show_config(mode="dicts")["planner"] == {"mode": mode}
    finally:
        bl.planner.set_mode(saved)


def test_printed_form_holds_every_value(capsys, config):
    assert bl.show_config() is None
    text = capsys.readouterr().out
    for section in SECTIONS:
        assert re.search(rf"^{section}:$", text, re.M), section
    assert f"  version: {bl.__version__}\n" in text
    assert f"  in_use: {config['kernels']['in_use']}\n" in text
    assert f"  runnable_here: [{', '.join(config['kernels']['runnable_here'])}]\n" in text
    assert f"  c_args: {config['compiler']['c_args']}\n" in text
    for lib in config["blas"]["libraries"]:
        assert f"      filepath: {lib['filepath']}\n" in text


def test_dicts_print_nothing(capsys):
    bl.show_config(mode="dicts")
    assert capsys.readouterr().out == ""


def test_unknown_mode():
    with pytest.raises(ValueError, match=r"^mode: expected 'stdout' or 'dicts', got 'yaml'$"):
        bl.show_config(mode="yaml")
