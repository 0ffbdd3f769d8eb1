"""Reliability: threads, determinism, IEEE specials, hostile inputs that must never crash."""

import os
import subprocess
import sys
import textwrap
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import bnnslstm as bl
from helpers import make_delta, make_params, planner_mode, y_time_major
from reference import GATES, batch_sizes_from_lengths, lstm_forward, random_weights


def train_step(seed, dtype=np.float32):
    """A full forward + backward on fresh buffers; returns every output as one flat array."""
    rng = np.random.default_rng(seed)
    weights = random_weights(rng, 6, 5, 2, 2, peephole="diagonal", dtype=dtype)
    x = rng.standard_normal((7, 4, 6)).astype(dtype)
    params, out = make_params(x, weights, bidirectional=True, dropout=0.3, seed=seed,
                              batch_sizes=batch_sizes_from_lengths([7, 5, 5, 2], 7))
    cache = bytearray(bl.compute_lstm_training_cache_capacity(params))
    bl.direct_apply_lstm_batch_training_caching(params, training_cache=cache)
    dy = rng.standard_normal((7, 4, 10)).astype(dtype)
    delta, grads = make_delta(params, weights, dy=dy)
    bl.direct_apply_lstm_batch_backward(params, delta, training_cache=cache)
    parts = [out["y_store"], out["h_n"], out["c_n"], grads["dx"], grads["dh0"], grads["dc0"]]
    parts += [grads[k][g] for k in ("U", "C", "b") for g in GATES] + [grads["W"][g][0] for g in GATES]
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


def test_n_threads_is_honoured_and_changes_nothing():
    rng = np.random.default_rng(0)
    weights = random_weights(rng, 32, 48, 1, 1, dtype=np.float32)
    x = rng.standard_normal((20, 16, 32)).astype(np.float32)
    results = []
    for n in (1, 2, 0):
        params, out = make_params(x, weights)
        bl.direct_apply_lstm_batch_training_caching(params, bl.FilterParameters(n_threads=n))
        results.append(out["y_store"].copy())
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(bl.BNNSError, match="filter_params.n_threads"):
        bl.direct_apply_lstm_batch_training_caching(params, bl.FilterParameters(n_threads=-1))


def test_kernels_release_the_gil():
    """While a long forward runs in one thread, another Python thread keeps running."""
    import threading
    import time

    rng = np.random.default_rng(0)
    weights = random_weights(rng, 256, 256, 1, 1, dtype=np.float32)
    x = rng.standard_normal((200, 32, 256)).astype(np.float32)
    params, _ = make_params(x, weights)
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


@pytest.mark.parametrize("special", [np.nan, np.inf, -np.inf])
def test_ieee_specials_propagate_without_crashing(special):
    rng = np.random.default_rng(1)
    weights = random_weights(rng, 3, 4, 1, 1)
    x = rng.standard_normal((5, 3, 3))
    x[2, 1, 0] = special
    params, out = make_params(x, weights)
    cache = bytearray(bl.compute_lstm_training_cache_capacity(params))
    bl.direct_apply_lstm_batch_training_caching(params, training_cache=cache)
    y = y_time_major(out, "SNE")
    ref_y, _, _, _ = lstm_forward(x, weights)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref_y))
    np.testing.assert_allclose(y[~np.isnan(y)], ref_y[~np.isnan(ref_y)], rtol=1e-12, atol=1e-14)
    assert np.all(np.isfinite(y[:2])) and np.all(np.isfinite(y[:, [0, 2]]))
    delta, grads = make_delta(params, weights, dy=np.ones((5, 3, 4)))
    bl.direct_apply_lstm_batch_backward(params, delta, training_cache=cache)
    assert np.all(np.isfinite(grads["dx"][:, [0, 2]]))


def test_cache_overlapping_an_input_is_refused():
    rng = np.random.default_rng(2)
    weights = random_weights(rng, 3, 4, 1, 1)
    x = rng.standard_normal((5, 3, 3))
    params, _ = make_params(x, weights)
    need = bl.compute_lstm_training_cache_capacity(params)
    big = np.zeros(need + x.nbytes, np.uint8)
    params.input_descriptor.data_desc = bl.NDArrayDescriptor(big, bl.DataLayout.SNE, (3, 3, 5),
                                                             data_type=bl.DataType.FLOAT64)
    before = big.copy()
    with pytest.raises(bl.BNNSError, match="training_cache: shares memory with input_descriptor.data_desc"):
        bl.direct_apply_lstm_batch_training_caching(params, training_cache=memoryview(big))
    np.testing.assert_array_equal(big, before)


# --------------------------------------------------------------------------- hypothesis
features = st.fixed_dictionaries({
    "T": st.integers(1, 5), "B": st.integers(1, 4), "I": st.integers(1, 5), "H": st.integers(1, 4),
    "L": st.integers(1, 3), "bidirectional": st.booleans(), "layout": st.sampled_from(["SNE", "NSE"]),
    "peephole": st.sampled_from([None, "diagonal", "full"]), "bias": st.booleans(),
    "dropout": st.sampled_from([0.0, 0.25]), "variable": st.booleans(), "seed": st.integers(0, 2**32 - 1),
})


def build(f, dtype=np.float64):
    rng = np.random.default_rng(f["seed"])
    D = 2 if f["bidirectional"] else 1
    weights = random_weights(rng, f["I"], f["H"], f["L"], D, peephole=f["peephole"], bias=f["bias"], dtype=dtype)
    x = rng.standard_normal((f["T"], f["B"], f["I"])).astype(dtype)
    lengths = sorted(rng.integers(1, f["T"] + 1, size=f["B"]).tolist(), reverse=True)
    lengths[0] = f["T"]
    batch_sizes = batch_sizes_from_lengths(lengths, f["T"]) if f["variable"] else None
    params, out = make_params(x, weights, batch_sizes=batch_sizes, bidirectional=f["bidirectional"],
                              dropout=f["dropout"], seed=f["seed"], layout=f["layout"])
    return params, out, weights, x, batch_sizes


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(features)
def test_random_valid_parameters_match_the_reference(f):
    params, out, weights, x, batch_sizes = build(f)
    bl.direct_apply_lstm_batch_training_caching(params)
    D = 2 if f["bidirectional"] else 1
    masks = None
    if f["dropout"] and f["L"] > 1:
        masks = [None]
        for layer in range(1, f["L"]):
            m = np.empty((f["T"], f["B"], D * f["H"]))
            bl.dropout_mask(f["seed"], layer, f["dropout"], m)
            masks.append(m)
    y, h_n, c_n, _ = lstm_forward(x, weights, batch_sizes=batch_sizes, dropout_masks=masks,
                                  bidirectional=f["bidirectional"])
    np.testing.assert_allclose(y_time_major(out, f["layout"]), y, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(out["h_n"], h_n, rtol=1e-11, atol=1e-12)


CORRUPTIONS = {
    "hidden_size": lambda p: setattr(p, "hidden_size", p.hidden_size + 1),
    "seq_len": lambda p: setattr(p, "seq_len", p.seq_len + 2),
    "dropout": lambda p: setattr(p, "dropout", 1.0),
    "lstm_flags": lambda p: setattr(p, "lstm_flags", p.lstm_flags | 0x100),
    "sequence_descriptor": lambda p: setattr(p, "sequence_descriptor", np.arange(p.seq_len, dtype=np.int32) + p.batch_size + 1),
    "input_descriptor.data_desc": lambda p: setattr(p.input_descriptor.data_desc, "stride", (2**40, 2**40, 2**40)),
    "input_descriptor.data_desc.data": lambda p: setattr(p.input_descriptor.data_desc, "data",
                                                         p.input_descriptor.data_desc.data[:-1]),
    "input_gate.hw_desc": lambda p: setattr(p.input_gate.hw_desc, "size", (99,) + tuple(p.input_gate.hw_desc.size[1:])),
    "forget_gate.iw_desc[0]": lambda p: setattr(p.forget_gate.iw_desc[0], "data", p.forget_gate.iw_desc[0].data[:-1]),
    "output_gate.activation": lambda p: (setattr(p, "lstm_flags", p.lstm_flags & ~bl.LayerFlags.DEFAULT_ACTIVATIONS),
                                         setattr(p.output_gate, "activation", bl.Activation(bl.ActivationFunction.SOFTMAX))),
    "candidate_gate.b_desc": lambda p: setattr(p.candidate_gate.b_desc, "data_type", bl.DataType.FLOAT32),
    "output_descriptor.hidden_desc": lambda p: setattr(p.output_descriptor.hidden_desc, "data",
                                                       np.zeros(4).tobytes()),
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(features.map(lambda f: {**f, "bias": True}), st.sampled_from(sorted(CORRUPTIONS)))
def test_corrupted_parameters_raise_and_write_nothing(f, corruption):
    if corruption == "input_descriptor.data_desc":
        assume(f["T"] * f["B"] * f["I"] > 1)  # with every extent 1, no stride reaches anything
    params, out, _, _, _ = build(f)
    CORRUPTIONS[corruption](params)
    before = {k: v.copy() for k, v in out.items()}
    cache = bytearray(b"\xab" * 4096)
    with pytest.raises(bl.BNNSError) as error:
        bl.direct_apply_lstm_batch_training_caching(params, training_cache=cache)
    assert corruption.removesuffix(".data") in str(error.value)
    for k, v in out.items():
        np.testing.assert_array_equal(v, before[k])
    assert cache == bytearray(b"\xab" * 4096)


def run_python(script, *args, cwd, env=None, timeout=300):
    """Run ``script`` in a child Python, from ``cwd`` (a directory outside the source tree,
    so that the child imports the same installed package as the tests, wherever pytest was
    started)."""
    return subprocess.run([sys.executable, "-c", script, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_hostile_descriptors_in_a_subprocess_never_crash(tmp_path):
    """Descriptors that lie about their sizes, strides and buffers, run where a crash shows."""
    script = textwrap.dedent("""
        import numpy as np, bnnslstm as bl
        rng = np.random.default_rng(0)
        refused = 0
        for trial in range(300):
            buf = np.zeros(int(rng.integers(0, 64)), np.float32)
            size = tuple(int(v) for v in rng.choice([0, 1, 2, 3, 7, 2**31, 2**40, 2**63 - 1], size=4))
            stride = tuple(int(v) for v in rng.choice([0, 1, 2, 5, 2**31, 2**62, 2**64 - 1], size=4))
            layout = [bl.DataLayout.SNE, bl.DataLayout.NSE, bl.DataLayout.FIRST_MAJOR_4D,
                      bl.DataLayout.ROW_MAJOR_MATRIX, bl.DataLayout.VECTOR][trial % 5]
            d = bl.NDArrayDescriptor(buf, layout, size, stride)
            p = bl.LayerParametersLSTM(input_size=2, hidden_size=2, batch_size=2, num_layers=1, seq_len=2,
                                       lstm_flags=bl.LayerFlags.DEFAULT_ACTIVATIONS)
            p.input_descriptor.data_desc = d
            w = bl.NDArrayDescriptor.from_array(np.zeros((1, 2, 2), np.float32))
            u = bl.NDArrayDescriptor.from_array(np.zeros((1, 1, 2, 2), np.float32))
            for g in ("input_gate", "forget_gate", "candidate_gate", "output_gate"):
                setattr(p, g, bl.LSTMGateDescriptor((w, None), d if trial % 7 == 0 else u))
            p.output_descriptor.data_desc = d if trial % 3 == 0 else None
            try:
                bl.direct_apply_lstm_batch_training_caching(p)
            except bl.BNNSError:
                refused += 1
        print("refused", refused)
    """)
    done = run_python(script, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) > 200


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
        from test_reliability import threaded_step
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
        assert len(_plan.kernels.blas_time(enable=False, reset=True)) == 2, "two threads called BLAS"
        assert _plan.kernels.team_pool() == 1
        np.testing.assert_allclose(two, refused, rtol=1e-4, atol=2e-5)
        print("ok")
    """)
    done = run_python(script, os.path.dirname(__file__), cwd=tmp_path, timeout=120)  # a hang: fails
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok"]


def test_a_refused_call_leaves_the_blas_thread_count_alone():
    from threadpoolctl import threadpool_info

    before = [info["num_threads"] for info in threadpool_info()]
    params = make_params(np.zeros((3, 2, 4)), random_weights(np.random.default_rng(0), 4, 3, 1, 1))[0]
    with pytest.raises(bl.BNNSError, match="training_cache"):
        bl.direct_apply_lstm_batch_training_caching(params, bl.FilterParameters(n_threads=1),
                                                    training_cache=bytearray(8))
    assert [info["num_threads"] for info in threadpool_info()] == before


def threaded_step(dtype, n_threads, batch_sizes=None):
    """Forward + backward of a stacked bidirectional LSTM with every kind of peephole, large
    enough that the call's thread team really has n_threads threads; every output flat."""
    rng = np.random.default_rng(7)
    T, B, I, H = 6, 16, 70, 50  # 4H = 200: GEMM slices of 16 rows with a partial last one
    peephole = {"input": "full", "forget": "diagonal", "candidate": None, "output": "full"}
    weights = random_weights(rng, I, H, 2, 2, peephole=peephole, dtype=dtype)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    params, out = make_params(x, weights, bidirectional=True, batch_sizes=batch_sizes, dropout=0.2, seed=5)
    cache = bytearray(bl.compute_lstm_training_cache_capacity(params))
    filter_params = bl.FilterParameters(n_threads=n_threads)
    bl.direct_apply_lstm_batch_training_caching(params, filter_params, training_cache=cache)
    delta, grads = make_delta(params, weights, dy=rng.standard_normal((T, B, 2 * H)).astype(dtype))
    bl.direct_apply_lstm_batch_backward(params, delta, filter_params, training_cache=cache)
    parts = [out["y_store"], out["h_n"], out["c_n"], grads["dx"], grads["dh0"], grads["dc0"]]
    parts += [grads[k][g] for k in ("U", "C", "b") for g in GATES if grads[k][g] is not None]
    parts += [w for g in GATES for w in grads["W"][g] if w is not None]
    return np.concatenate([np.ravel(p) for p in parts]).astype(np.float64)


@pytest.mark.parametrize("batch_sizes", [None, [16, 16, 13, 8, 5, 1]], ids=["full", "shrinking"])
def test_one_and_two_threads_agree_and_repeat_bit_for_bit(batch_sizes):
    """The thread team splits GEMMs and elementwise passes differently with 1 and 2 threads:
    the results agree to float32 rounding, repeat exactly at a fixed thread count and BLAS
    arrangement (the heuristic's: while the planner measures, the arrangements differ from
    call to call), and match float64 (an independent check of the float32 path)."""
    from bnnslstm import _plan

    with planner_mode("heuristic"):
        one_and_two_threads(batch_sizes)


def one_and_two_threads(batch_sizes):
    from bnnslstm import _plan

    _plan.kernels.blas_time(enable=True, reset=True)
    two = threaded_step(np.float32, 2, batch_sizes)
    threads_used = len(_plan.kernels.blas_time(enable=False, reset=True))
    if _plan.kernels.team_available() > 1:
        assert threads_used == 2  # the team really had two threads calling BLAS
    one = threaded_step(np.float32, 1, batch_sizes)
    np.testing.assert_allclose(two, one, rtol=1e-4, atol=2e-5)  # sums over rows: BLAS blocks them differently
    for _ in range(2):
        np.testing.assert_array_equal(threaded_step(np.float32, 2, batch_sizes), two)
    exact = threaded_step(np.float64, 2, batch_sizes)
    np.testing.assert_allclose(threaded_step(np.float64, 1, batch_sizes), exact, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(two, exact, rtol=2e-3, atol=2e-4)


def test_every_kernel_build_gives_the_same_results():
    """The portable kernels and the AVX2/FMA and AVX-512 builds of the same source (the
    best one this CPU runs picked at import) agree to rounding: only instruction selection
    differs (FMA contraction and vector width in the elementwise passes)."""
    from bnnslstm import _plan

    builds = _plan.available_kernels()
    results = {}
    try:
        for name in builds:
            _plan.use_kernels(name)
            results[name] = [threaded_step(dtype, 2, [16, 16, 13, 8, 5, 1]) for dtype in (np.float32, np.float64)]
    finally:
        _plan.use_kernels()
    for name in builds[1:]:
        np.testing.assert_allclose(results[name][0], results["portable"][0], rtol=1e-4, atol=2e-5)
        np.testing.assert_allclose(results[name][1], results["portable"][1], rtol=1e-12, atol=1e-13)
    assert _plan.kernels.__name__ == _plan.KERNEL_BUILDS[builds[-1]]
    assert builds[0] == "portable" and set(builds) <= {"portable", "avx2", "avx512"}
    with pytest.raises(ValueError, match="'avx1024' is not available here"):
        _plan.use_kernels("avx1024")


def test_one_layer_serves_concurrent_inference_calls():
    """bnnslstm.LSTM from several threads at once: each call gets its own descriptors (a
    shared set, repointed by another thread mid-call, gave calls each other's outputs)."""
    lstm = bl.LSTM(8, 16, seed=0)
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((4, 3, 8)).astype(np.float32) for _ in range(6)]
    expected = [lstm.forward(x, training=False)[0].copy() for x in xs]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show at once
    try:
        def work(i):
            return sum(not np.array_equal(lstm.forward(xs[3 * i + k % 3], training=False)[0], expected[3 * i + k % 3])
                       for k in range(600))

        with ThreadPoolExecutor(2) as pool:
            wrong = list(pool.map(work, range(2)))
    finally:
        sys.setswitchinterval(interval)
    assert wrong == [0, 0]


def test_a_refused_forward_leaves_the_last_training_forward_to_backward():
    lstm = bl.LSTM(3, 4, seed=0)
    rng = np.random.default_rng(2)
    x1, x2 = (rng.standard_normal((5, 2, 3)).astype(np.float32) for _ in range(2))
    dy = rng.standard_normal((5, 2, 4)).astype(np.float32)
    lstm.forward(x1)
    expected = lstm.backward(dy)[0].copy(), lstm.grads["weight_ih_l0"].copy()
    lstm.forward(x1)
    with pytest.raises(bl.BNNSError, match="sequence_descriptor"):
        lstm.forward(x2, batch_sizes=[2, 2, 3, 1, 1])  # refused after its descriptors were pointed at x2
    dx = lstm.backward(dy)[0]
    np.testing.assert_array_equal(dx, expected[0])
    np.testing.assert_array_equal(lstm.grads["weight_ih_l0"], expected[1])


def test_the_layer_keeps_no_call_array_alive_and_a_bounded_number_of_shapes():
    lstm = bl.LSTM(4, 8, seed=0)
    for T in range(1, 41):
        x = np.ones((T, 2, 4), np.float32)
        y, _ = lstm.forward(x, training=False)
    gone = weakref.ref(x), weakref.ref(y)
    del x, y
    assert [ref() for ref in gone] == [None, None]
    assert len(lstm._free_descriptors) <= 16
