"""Threads and processes: the kernels' thread team (bnnslstm/_kernels/_team.h) under fork,
with one or more threads, without its workers and without the GIL; calls whose results do
not depend on what other threads are doing or on the run; the limit on BLAS's own threads
(docs/threads.rst)."""

import multiprocessing
import os
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import bnnslstm as bl
from bnnslstm import _plan
from helpers import (
    Problem,
    make_delta,
    make_params,
    planner_mode,
    run_python,
    settle,
    threaded_step,
)
from reference import GATES, random_weights

# ----------------------------------------------------------------------------- fork
# Large enough for a team (see bnnslstm._threads.team_of): the parent's pool has workers when it
# forks. The raw functions get n_threads=2, so the team is forced even on one core.
T, B, I, H = 4, 32, 48, 256
TWO = bl.FilterParameters(n_threads=2)
_state = {}  # set by the parent before it forks; the children inherit it


def _setup():
    problem = _state["problem"] = Problem(T=T, B=B, I=I, H=H, dtype=np.float32, seed=11)
    _state["dy"] = problem.rng.standard_normal((T, B, H)).astype(np.float32)
    _state["layer"] = bl.LSTM(I, H, seed=3)


def _work(task):
    """One of the children's tasks (or the parent's, for the expected results); returns its
    outputs and the number of workers of the kernels' pool before and after."""
    before = _plan.kernels.team_pool()
    problem = _state["problem"]
    if task == "inference":
        outputs = [_state["layer"].forward(problem.x, training=False)[0].copy()]
    else:
        params, out, cache = problem.forward(filter_params=TWO)
        outputs = [out["y_store"], out["h_n"], out["c_n"]]
        if task == "backward":
            _, grads = problem.backward(params, cache, TWO, dy=_state["dy"])
            outputs = [grads["dx"], grads["dh0"], grads["dc0"]]
            outputs += [grads[k][g] for k in ("U", "b") for g in GATES]
            outputs += [grads["W"][g][0] for g in GATES]
    return [np.array(o) for o in outputs], before, _plan.kernels.team_pool()


TASKS = ["inference", "training forward", "backward"]


@pytest.mark.skipif(not hasattr(multiprocessing, "get_all_start_methods")
                    or "fork" not in multiprocessing.get_all_start_methods(), reason="no fork here")
def test_forked_children_of_a_parent_that_used_the_team_return_its_results():
    """A parent runs forward and backward on a team, then forks 2 workers that run
    inference, a training forward and a backward: each returns the parent's results bit for
    bit, on a pool of its own created at its first team call (the parent's workers do not
    exist in a child). A hang fails the test after 60 s instead of blocking the run. The
    parent's planner has settled first: the children inherit its choices."""
    _setup()
    settle([lambda task=task: _work(task) for task in TASKS])
    expected = {task: _work(task)[0] for task in TASKS}
    workers = _plan.kernels.team_pool()
    assert workers >= 1  # the parent's pool really had workers when it forked
    pool = multiprocessing.get_context("fork").Pool(2)
    try:
        results = pool.map_async(_work, TASKS * 2, chunksize=1).get(timeout=60)
    finally:
        pool.terminate()
        pool.join()
    for task, (outputs, _before, after) in zip(TASKS * 2, results):
        assert len(outputs) == len(expected[task])
        for got, want in zip(outputs, expected[task]):
            np.testing.assert_array_equal(got, want, err_msg=task)
        if task != "inference" or bl._threads.CORES > 1:  # the layer's team: every core
            assert after >= 1  # the child's calls ran on a team of its own
    firsts = [before for _, before, _ in results]
    assert 0 in firsts  # each child's first call found an empty pool
    assert _plan.kernels.team_pool() == workers  # the parent's pool is untouched


# ----------------------------------------------------------------------------- the team
def test_n_threads_is_honoured_and_changes_nothing():
    """n_threads 1, 2 and 0 (every core) give the same outputs to float32 rounding; a
    negative count is refused by name."""
    problem = Problem(T=20, B=16, I=32, H=48, dtype=np.float32)
    results = []
    for n in (1, 2, 0):
        params, out, _ = problem.forward(cache=False,
                                         filter_params=bl.FilterParameters(n_threads=n))
        results.append(out["y_store"].copy())
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(bl.BNNSError, match="filter_params.n_threads"):
        bl.direct_apply_lstm_batch_training_caching(params, bl.FilterParameters(n_threads=-1))


@pytest.mark.parametrize("batch_sizes", [None, [16, 16, 13, 8, 5, 1]], ids=["full", "shrinking"])
def test_one_and_two_threads_agree_and_repeat_bit_for_bit(batch_sizes):
    """The thread team splits GEMMs and elementwise passes differently with 1 and 2 threads:
    the results agree to float32 rounding, repeat exactly at a fixed thread count and BLAS
    arrangement (the heuristic's: while the planner measures, the arrangements differ from
    call to call), and match float64 (an independent check of the float32 path)."""
    with planner_mode("heuristic"):
        _plan.kernels.blas_time(enable=True, reset=True)
        two = threaded_step(np.float32, 2, batch_sizes)
        threads_used = len(_plan.kernels.blas_time(enable=False, reset=True))
        if _plan.kernels.team_available() > 1:
            assert threads_used == 2  # the team really had two threads calling BLAS
        one = threaded_step(np.float32, 1, batch_sizes)
        # sums over rows: BLAS blocks them differently
        np.testing.assert_allclose(two, one, rtol=1e-4, atol=2e-5)
        for _ in range(2):
            np.testing.assert_array_equal(threaded_step(np.float32, 2, batch_sizes), two)
        exact = threaded_step(np.float64, 2, batch_sizes)
        np.testing.assert_allclose(threaded_step(np.float64, 1, batch_sizes), exact, rtol=1e-12,
                                   atol=1e-13)
        np.testing.assert_allclose(two, exact, rtol=2e-3, atol=2e-4)


def test_a_team_whose_threads_cannot_be_created_runs_on_one_thread(tmp_path):
    """When the pool cannot create its workers (simulated: the kernels' testing switch), a
    call sized for a team of 2 runs alone as a team of 1: it neither waits forever at a
    barrier for the missing thread nor skips its share of the work, and its results are the
    one-thread call's bit for bit."""
    script = textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[1])
        import numpy as np
        from bnnslstm import _plan
        from helpers import threaded_step
        run = lambda n: threaded_step(np.float32, n)
        _plan.kernels.team_pool(refuse_threads=True)
        _plan.kernels.blas_time(enable=True, reset=True)
        refused = run(2)
        assert len(_plan.kernels.blas_time(enable=False, reset=True)) == 1, "one thread called BLAS"
        assert _plan.kernels.team_pool() == 0
        assert np.array_equal(refused, run(1))
        _plan.kernels.team_pool(refuse_threads=False)
        _plan.kernels.blas_time(enable=True, reset=True)
        two = run(2)
        assert len(_plan.kernels.blas_time(enable=False, reset=True)) == 2, "two called BLAS"
        assert _plan.kernels.team_pool() == 1
        np.testing.assert_allclose(two, refused, rtol=1e-4, atol=2e-5)
        print("ok")
    """)
    # a hang fails after the timeout
    done = run_python(script, os.path.dirname(__file__), cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok"]


def test_kernels_release_the_gil():
    """While a long forward runs in one thread, another Python thread keeps running."""
    params, _ = Problem(T=200, B=32, I=256, H=256, dtype=np.float32).params()
    bl.direct_apply_lstm_batch_training_caching(params)  # warm-up
    start = time.perf_counter()
    bl.direct_apply_lstm_batch_training_caching(params)
    alone = time.perf_counter() - start
    ticks = []
    done = threading.Event()

    def count():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    counter = threading.Thread(target=count)
    counter.start()
    bl.direct_apply_lstm_batch_training_caching(params)
    done.set()
    counter.join()
    # with the GIL held for the whole kernel the counter would tick a handful of times at most
    assert len(ticks) > 0.3 * alone / 0.002


# ----------------------------------------------------------------------------- concurrency
def _shapes(rng, n):
    return [(int(rng.integers(1, 30)), int(rng.integers(1, 9))) for _ in range(n)]


@pytest.fixture
def busy_switching():
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often: interleavings show at once
    yield
    sys.setswitchinterval(interval)


def test_a_layer_returns_the_lone_calls_results_while_7_other_threads_call_it(busy_switching):
    """8 threads run inference on one fresh 2-layer bidirectional layer at once (shapes T
    1-29, B 1-8: some calls large enough for a team, most too small), from its very first
    calls: the descriptors' first resolutions and the planner's trials happen while the
    other threads call. Every output equals the same call made alone by a twin layer in
    heuristic mode, bit for bit (BLAS is single-threaded inside every call, so a call's
    rounding cannot depend on whether another call has BLAS limited; the planner chooses
    only arrangements with the canonical bits)."""
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((t, b, 16)).astype(np.float32) for t, b in _shapes(rng, 40)]
    twin = bl.LSTM(16, 64, num_layers=2, bidirectional=True, seed=0)
    with planner_mode("heuristic"):
        alone = [twin.forward(x, training=False)[0].copy() for x in xs]
    bl.planner.forget()
    lstm = bl.LSTM(16, 64, num_layers=2, bidirectional=True, seed=0)

    def work(i):
        return [(j, lstm.forward(xs[j], training=False)[0].copy())
                for j in ((7 * i + k) % 40 for k in range(30))]

    start = threading.Barrier(8)
    with ThreadPoolExecutor(8) as pool:
        results = [r for rs in pool.map(lambda i: (start.wait(), work(i))[1], range(8)) for r in rs]
    assert len(results) == 240
    differ = [j for j, y in results if not np.array_equal(y, alone[j])]
    assert differ == []


def test_raw_calls_sharing_weight_descriptors_return_the_lone_calls_results(busy_switching):
    """The same with the functions of bnnslstm.lstm: 8 threads, one set of weight
    descriptors shared by every call (each call its own input, outputs and training cache),
    forward with the training cache and backward; every output bit-identical to the lone
    call's."""
    rng = np.random.default_rng(2)
    weights = random_weights(rng, 16, 64, 2, 2, dtype=np.float32)
    shared = make_params(np.zeros((1, 1, 16), np.float32), weights, bidirectional=True)[0]
    cases = []
    for t, b in _shapes(rng, 16):
        x = rng.standard_normal((t, b, 16)).astype(np.float32)
        cases.append((x, rng.standard_normal((t, b, 128)).astype(np.float32)))

    def call(case):
        x, dy = case
        params, out = make_params(x, weights, bidirectional=True)
        for field in ("input_gate", "forget_gate", "candidate_gate", "output_gate"):
            setattr(params, field, getattr(shared, field))
        cache = bytearray(bl.compute_lstm_training_cache_capacity(params))
        bl.direct_apply_lstm_batch_training_caching(params, training_cache=cache)
        delta, grads = make_delta(params, weights, dy=dy)
        bl.direct_apply_lstm_batch_backward(params, delta, training_cache=cache)
        parts = [out["y_store"], out["h_n"], out["c_n"], grads["dx"], grads["dh0"], grads["dc0"]]
        parts += [grads[k][g] for k in ("U", "b") for g in GATES]
        parts += [w for g in GATES for w in grads["W"][g]]
        return np.concatenate([np.ravel(p) for p in parts])

    settle([lambda case=case: call(case) for case in cases])
    alone = [call(case) for case in cases]
    start = threading.Barrier(8)

    def work(i):
        start.wait()
        return [(j, call(cases[j])) for j in ((5 * i + k) % 16 for k in range(12))]

    with ThreadPoolExecutor(8) as pool:
        results = [r for rs in pool.map(work, range(8)) for r in rs]
    assert len(results) == 96
    differ = [j for j, got in results if not np.array_equal(got, alone[j])]
    assert differ == []


def test_a_call_from_another_thread_returns_the_main_threads_results():
    """BLAS is limited to one thread from whichever thread calls, so a call from another
    thread gives the main thread's bits (threadpoolctl alone lets only the first thread that
    limits OpenBLAS change it: calls from other threads would run on multi-threaded BLAS and
    round differently, even one at a time)."""
    lstm = bl.LSTM(16, 64, num_layers=2, bidirectional=True, seed=0)
    rng = np.random.default_rng(4)
    xs = [rng.standard_normal((t, b, 16)).astype(np.float32) for t, b in _shapes(rng, 12)]
    settle([lambda x=x: lstm.forward(x, training=False) for x in xs])
    main = [lstm.forward(x, training=False)[0].copy() for x in xs]
    with ThreadPoolExecutor(1) as pool:
        other = list(pool.map(lambda x: lstm.forward(x, training=False)[0].copy(), xs))
    assert [j for j in range(12) if not np.array_equal(other[j], main[j])] == []


def train_step(seed, dtype=np.float32):
    """A full forward + backward on fresh buffers (variable lengths, dropout, peepholes, two
    layers, two directions); returns every output as one flat array."""
    problem = Problem(T=7, B=4, I=6, H=5, L=2, bidirectional=True, peephole="diagonal",
                      dtype=dtype, lengths=[7, 5, 5, 2], dropout=0.3, dropout_seed=seed,
                      seed=seed)
    params, out, cache = problem.forward()
    dy = problem.rng.standard_normal((7, 4, 10)).astype(dtype)
    _, grads = problem.backward(params, cache, dy=dy)
    parts = [out["y_store"], out["h_n"], out["c_n"], grads["dx"], grads["dh0"], grads["dc0"]]
    parts += [grads[k][g] for k in ("U", "C", "b") for g in GATES]
    parts += [grads["W"][g][0] for g in GATES]
    return np.concatenate([np.ravel(p) for p in parts])


def test_concurrent_calls_match_sequential_calls():
    seeds = list(range(12))
    sequential = [train_step(s) for s in seeds]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(train_step, seeds))
    for a, b in zip(sequential, concurrent):
        np.testing.assert_array_equal(a, b)


def test_results_are_bit_identical_run_to_run():
    first = train_step(3)
    for _ in range(3):
        np.testing.assert_array_equal(train_step(3), first)


def test_one_layer_serves_concurrent_inference_calls():
    """bnnslstm.LSTM from several threads at once: each call gets its own descriptors (with
    one shared set, another thread could repoint it mid-call and give a call another
    call's outputs)."""
    lstm = bl.LSTM(8, 16, seed=0)
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((4, 3, 8)).astype(np.float32) for _ in range(6)]
    expected = [lstm.forward(x, training=False)[0].copy() for x in xs]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show at once
    try:
        def work(i):
            return sum(not np.array_equal(lstm.forward(xs[3 * i + k % 3], training=False)[0],
                                          expected[3 * i + k % 3])
                       for k in range(600))

        with ThreadPoolExecutor(2) as pool:
            wrong = list(pool.map(work, range(2)))
    finally:
        sys.setswitchinterval(interval)
    assert wrong == [0, 0]


# ----------------------------------------------------------------------------- BLAS's threads
def test_the_limit_applies_to_the_blas_the_kernels_call():
    """Only scipy's own BLAS is limited when scipy ships one (the kernels never call numpy's
    copy); a scipy on a system BLAS gets every BLAS limited."""
    import os
    from types import SimpleNamespace

    import scipy

    from bnnslstm._threads import kernels_blas

    root = os.path.dirname(os.path.abspath(scipy.__file__))
    scipys = SimpleNamespace(filepath=os.path.join(root + ".libs", "libscipy_openblas.so"))
    bundled = SimpleNamespace(filepath=os.path.join(root, ".dylibs", "libopenblas.dylib"))
    numpys = SimpleNamespace(filepath=os.path.join(os.path.dirname(root), "numpy.libs",
                                                   "libscipy_openblas64_.so"))
    system = SimpleNamespace(filepath="/usr/lib/libopenblas.so.0")
    # scipy_extra/: not scipy's
    neighbour = SimpleNamespace(filepath=root + "_extra" + os.sep + "libopenblas.so")
    assert kernels_blas([numpys, scipys]) == [scipys]
    assert kernels_blas([bundled, numpys]) == [bundled]
    assert kernels_blas([system, numpys, neighbour]) == [system, numpys, neighbour]


def test_a_refused_call_leaves_the_blas_thread_count_alone():
    from threadpoolctl import threadpool_info

    before = [info["num_threads"] for info in threadpool_info()]
    params = Problem(T=3, B=2, I=4, H=3).params()[0]
    with pytest.raises(bl.BNNSError, match="training_cache"):
        bl.direct_apply_lstm_batch_training_caching(params, bl.FilterParameters(n_threads=1),
                                                    training_cache=bytearray(8))
    assert [info["num_threads"] for info in threadpool_info()] == before
