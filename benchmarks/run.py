"""Benchmarks: bnnslstm against PyTorch's CPU LSTM and ONNX Runtime (and thinc's, when installed).

    python benchmarks/run.py [--quick] [--repeats N] [--only TEXT] [--plot PNG]

Three sections, each a function below:

* shapes (``shape_table``): one row per shape and pass, GFLOP/s of forward (inference: no
  cache, no dropout) and of forward + backward (training: with the training cache); the
  ratio to PyTorch; the BLAS floor (the call's time inside BLAS, summed over the team's
  threads and divided by the team size, counted by the kernels' BLAS wrapper in the same
  process) and "% of floor" (floor / wall time of the same run); for inference, ONNX Runtime's
  speed on the same model (exported by bnnslstm.onnx.export) and the ratio to it; the
  scipy sgemm GFLOP/s of a large square product measured in the same run (the BLAS this
  library calls); the GEMM FLOPs that went through BLAS against the analytic count; the
  training cache's bytes against the analytic minimum of what the backward pass needs;
  under each shape, what the planner chose for its time steps and how long tuning took.
  Times are medians of repeats, the libraries in turn repeat after repeat.
* streaming (``streaming``): microseconds per frame, one frame per call with the state
  carried, for the four models of issue 29, bnnslstm against torch.nn.LSTM and ONNX
  Runtime; best of N rounds, the libraries in turn within each round.
* trivial calls (``trivial_calls``): the cost of a call that does almost no arithmetic
  (T1 B1 I8 H8), in batches of calls long enough to be stable; best of N rounds.

``--only stream`` and ``--only trivial`` run one of the last two sections; any other TEXT
keeps the shapes whose name contains it (``--only batch-``). ONNX Runtime (and onnx, to
export the model) are optional: without them their columns are left out.

The header names the CPU and prints bnnslstm.show_config() (how the package was built,
the BLAS library scipy's cython_blas calls with its version, the CPU architecture whose
kernels it runs, threading layer and threads, the thread pool, the elementwise kernel
build and the planner's mode), and warns when OPENBLAS_CORETYPE or OPENBLAS_L2_SIZE is set:
those change which kernels OpenBLAS runs and how it blocks them, so run natively with

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run.py
"""

import argparse
import gc
import importlib
import importlib.util
import math
import os
import platform
import statistics
import sys
import time

import numpy as np
import scipy
import scipy.linalg.blas as scipy_blas
import scipy.linalg.cython_blas  # noqa: F401  (loads the BLAS the kernels call, before threadpool_info)

# the FLOP model, in benchmarks/flops.py (this script's neighbour): tests/test_blas.py checks it
from flops import gemm_flops, lstm_flops

import bnnslstm as bl
from bnnslstm import _plan

# the planner (bnnslstm.planner) chooses each step's arrangement of BLAS calls; builds
# without it run a fixed arrangement, and the planner line under each shape shows "-"
planner = (importlib.import_module("bnnslstm.planner")
           if importlib.util.find_spec("bnnslstm.planner") else None)
WARM_UP_CALLS = 10  # warm-up rounds at most per shape: enough for the planner to finish tuning
FLOOR_RUNS, FLOOR_SECONDS = 3, 0.2  # counted runs per row for the BLAS floor: at least
# 3 and 0.2 s in all (short calls run more often), the fastest kept
PINNING = {  # environment variables that override OpenBLAS's own choice of kernels for this CPU
    "OPENBLAS_CORETYPE": "pins the kernels to one CPU architecture",
    "OPENBLAS_L2_SIZE": "overrides the cache size its blocking is tuned for",
}

SHAPES = [  # name, T, B, I, H, layers, bidirectional, variable lengths, inference only
    ("T25 B64 H512", 25, 64, 512, 512, 1, False, False, False),
    ("T25 B16 H1024", 25, 16, 1024, 1024, 1, False, False, False),
    ("T150 B32 H256", 150, 32, 256, 256, 1, False, False, False),
    ("2L bidir T100 B32 H256", 100, 32, 256, 256, 2, True, False, False),
    ("batch-1 T25 H512", 25, 1, 512, 512, 1, False, False, True),
    ("batch-4 T150 H256", 150, 4, 256, 256, 1, False, False, True),
    ("batch-8 T50 H512", 50, 8, 512, 512, 1, False, False, True),
    ("var-len T100 B32 H256", 100, 32, 256, 256, 1, False, True, False),
]

STREAM_MODELS = [  # name, input size, hidden size, layers, batch (issue 29's table)
    ("I64 H64 B1", 64, 64, 1, 1),
    ("I256 H256 B1", 256, 256, 1, 1),
    ("2L I128 H128 B1", 128, 128, 2, 1),
    ("I256 H256 B4", 256, 256, 1, 4),
]


# ------------------------------------------------------------------------------- timing
def timeit(fn, repeats):
    # let the previous library's idle threads (OpenMP, OpenBLAS) stop spinning first
    time.sleep(0.3)
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(functions, repeats, pause=0.05, best=False, before=None, gc_off=False):
    """Seconds of each of ``functions`` ({name: fn}), run in turn repeat after repeat so that
    all of them see the same machine (on shared machines the speed drifts over minutes); a
    pause before each run lets the previous library's idle threads (OpenMP, OpenBLAS,
    ONNX Runtime) stop spinning. The median of the repeats, or with ``best`` the fastest.
    ``before`` ({name: fn}, optional) runs untimed before each timed run (a state reset).
    ``gc_off``: each timed run with the garbage collector off, after a collection (as
    timeit does: in a run of many small calls a collection lands at random).
    Returns ({name: seconds}, {name: what fn returned in the last repeat})."""
    before = before or {}
    for name, fn in functions.items():
        before.get(name, lambda: None)()
        fn()  # warm-up
    times = {name: [] for name in functions}
    results = {}
    for _ in range(repeats):
        for name, fn in functions.items():
            before.get(name, lambda: None)()
            if gc_off:
                gc.collect()
                gc.disable()
            time.sleep(pause)
            try:
                start = time.perf_counter()
                results[name] = fn()
                times[name].append(time.perf_counter() - start)
            finally:
                gc.enable()
    pick = min if best else statistics.median
    return {name: pick(values) for name, values in times.items()}, results


def blas_floor(fn, runs=FLOOR_RUNS, seconds=FLOOR_SECONDS):
    """(floor in seconds, floor / wall time, FLOPs handed to BLAS, team size) of ``fn`` (one
    bnnslstm call or a forward + backward), from untimed runs with the kernels' BLAS
    counters on: at least ``runs`` of them and at least ``seconds`` in all (at most 100).

    The counters give, per team thread that called BLAS, the seconds spent inside BLAS
    calls and the FLOPs handed to them. The floor of one run is their seconds summed over
    the threads and divided by the team size (the number of those threads): what the
    call would take if everything outside BLAS (elementwise passes, barriers, waiting,
    Python) were free and the BLAS work perfectly shared. Its share is the floor over the
    same run's wall time (at most 1: no thread spends longer in BLAS than the call
    lasts), so that a machine whose speed drifts between these runs and the timed ones
    cannot skew it. Both are the fastest run's, the one the machine disturbed least (on a
    shared machine one preemption can double a short call)."""
    fn()
    best, flops, team, total, count = None, 0.0, 0, 0.0, 0
    while count < runs or (total < seconds and count < 100):
        _plan.kernels.blas_time(enable=True, reset=True)
        start = time.perf_counter()
        fn()
        wall = time.perf_counter() - start
        counted = _plan.kernels.blas_time(enable=False, reset=True)
        if not counted:
            return 0.0, 0.0, 0.0, 0
        total, count = total + wall, count + 1
        team = len(counted)
        floor = sum(seconds for seconds, _ in counted) / team
        flops = sum(f for _, f in counted)
        if best is None or wall < best[0]:
            best = wall, floor
    wall, floor = best
    return floor, floor / wall, flops, team


def sgemm_gflops(n=2048, repeats=5):
    a = np.asfortranarray(np.random.default_rng(0).standard_normal((n, n)).astype(np.float32))
    seconds = timeit(lambda: scipy_blas.sgemm(1.0, a, a), repeats)
    return 2 * n**3 / seconds / 1e9


# ------------------------------------------------------------------------- the problems
def make_lengths(rng, T, B):
    lengths = np.sort(rng.integers(T // 4, T + 1, size=B))[::-1].copy()
    lengths[0] = T
    return lengths


def batch_sizes_of(lengths, T):
    return np.array([int(np.sum(lengths > t)) for t in range(T)], dtype=np.int32)


def cache_minimum(T, B, H, L, D, lengths=None):
    """Bytes the backward pass cannot do without: gate activations (4H), cell (H) and the
    layer output (H) per step, sample and direction (act_h(c) and dropout masks can be
    recomputed), in float32."""
    steps = T * B if lengths is None else int(np.sum(lengths))
    return L * D * steps * 6 * H * 4


def bench_bnnslstm(T, B, I, H, L, bidir, lengths, inference_only):
    rng = np.random.default_rng(0)
    lstm = bl.LSTM(I, H, L, bidirectional=bidir, seed=0)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    batch_sizes = None if lengths is None else batch_sizes_of(lengths, T)
    D = 2 if bidir else 1
    dy = rng.standard_normal((T, B, D * H)).astype(np.float32)

    def forward():
        lstm.forward(x, batch_sizes=batch_sizes, training=False)

    def train():
        lstm.forward(x, batch_sizes=batch_sizes, training=True)
        lstm.backward(dy)

    calls = {"fwd": forward} if inference_only else {"fwd": forward, "train": train}
    if not inference_only:
        calls["cache"] = cache_bytes(T, B, I, H, L, D, batch_sizes)
    return calls


def cache_bytes(T, B, I, H, L, D, batch_sizes=None):
    """The training cache's bytes for the shape (what LSTM.forward allocates), asked of
    compute_lstm_training_cache_capacity on parameters of that shape (weights zero)."""
    def zeros(*shape):
        return bl.NDArrayDescriptor.from_array(np.zeros(shape, np.float32))

    def data(*shape):
        return bl.LSTMDataDescriptor(bl.NDArrayDescriptor.from_array(
            np.zeros(shape, np.float32), bl.DataLayout.SNE))

    params = bl.LayerParametersLSTM(
        input_size=I, hidden_size=H, batch_size=B, num_layers=L, seq_len=T,
        lstm_flags=bl.LayerFlags.DEFAULT_ACTIVATIONS | (bl.LayerFlags.BIDIRECTIONAL if D == 2
                                                        else 0),
        sequence_descriptor=(None if batch_sizes is None else bl.NDArrayDescriptor.from_array(
            np.asarray(batch_sizes, np.int32))),
        input_descriptor=data(T, B, I), output_descriptor=data(T, B, D * H))
    for gate in ("input_gate", "forget_gate", "candidate_gate", "output_gate"):
        setattr(params, gate, bl.LSTMGateDescriptor(
            iw_desc=(zeros(D, H, I), zeros(L - 1, D, H, D * H) if L > 1 else None),
            hw_desc=zeros(L, D, H, H), b_desc=zeros(L, D, H)))
    return bl.compute_lstm_training_cache_capacity(params)


def bench_torch(T, B, I, H, L, bidir, lengths, inference_only):
    import torch

    torch.manual_seed(0)
    module = torch.nn.LSTM(I, H, L, bidirectional=bidir)
    x = torch.randn(T, B, I)
    D = 2 if bidir else 1

    def run(inp):
        out, _ = module(inp)
        return (out if lengths is None
                else torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)[0])

    def make_input():
        if lengths is None:
            return x
        return torch.nn.utils.rnn.pack_padded_sequence(x, torch.as_tensor(lengths))

    def forward():
        with torch.no_grad():
            run(make_input())

    dy = torch.randn(T, B, D * H)

    def train():
        module.zero_grad()
        xi = x.clone().requires_grad_(True)
        inp = (xi if lengths is None
               else torch.nn.utils.rnn.pack_padded_sequence(xi, torch.as_tensor(lengths)))
        (run(inp) * dy).sum().backward()

    return {"fwd": forward} if inference_only else {"fwd": forward, "train": train}


def ort_session(layer, **export_options):
    """An ONNX Runtime session (CPU, default options: its own intra-op threads) on ``layer``
    exported by bnnslstm.onnx.export. float32 only: ONNX Runtime's CPU LSTM has no float64
    kernel. A stacked or bidirectional layer exports as one LSTM node per layer with
    Transpose/Reshape glue between them, all run by the same session."""
    import onnxruntime

    from bnnslstm.onnx import export

    model = export(layer, None, **export_options)
    return onnxruntime.InferenceSession(model.SerializeToString(),
                                        providers=["CPUExecutionProvider"])


def bench_ort(T, B, I, H, L, bidir, lengths, inference_only):
    """ONNX Runtime's inference on the shape: a layer built as bench_bnnslstm's (same
    seed, so the same weights and inputs), exported; no training pass."""
    rng = np.random.default_rng(0)
    session = ort_session(bl.LSTM(I, H, L, bidirectional=bidir, seed=0),
                          sequence_lens=lengths is not None)
    feed = {"input": rng.standard_normal((T, B, I)).astype(np.float32)}
    if lengths is not None:
        feed["sequence_lens"] = np.asarray(lengths, np.int32)

    def forward():
        session.run(None, feed)

    return {"fwd": forward}


def bench_thinc(T, B, I, H, L, bidir, lengths, inference_only):
    from thinc.api import LSTM as ThincLSTM
    from thinc.api import with_padded

    # thinc's bidirectional LSTM concatenates directions of H/2 each: ask for D*H outputs
    model = with_padded(ThincLSTM(H * (2 if bidir else 1), I, depth=L, bi=bidir))
    rng = np.random.default_rng(0)
    seqs = [rng.standard_normal((T if lengths is None else int(n), I)).astype(np.float32)
            for n in (lengths if lengths is not None else [T] * B)]
    model.initialize(X=seqs[:2])

    def forward():
        model.predict(seqs)

    def train():
        out, backprop = model.begin_update(seqs)
        backprop(out)

    return {"fwd": forward} if inference_only else {"fwd": forward, "train": train}


# ---------------------------------------------------------------------------- the header
def cpu_model():
    """The CPU's model name: /proc/cpuinfo's "model name" where it exists (Linux on x86),
    else what platform.processor() says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def kernels_blas():
    """(threadpoolctl's entry of the BLAS that scipy's cython_blas calls, or None; every BLAS
    loaded): the library's own rule (bnnslstm._threads.blas_controllers)."""
    try:
        from bnnslstm._threads import blas_libraries, kernels_blas
    except ImportError:  # an older bnnslstm (for a before/after comparison)
        from threadpoolctl import ThreadpoolController

        from bnnslstm.lstm import _kernels_blas as kernels_blas

        controllers = ThreadpoolController().select(user_api="blas").lib_controllers
    else:
        controllers = blas_libraries()
    called = kernels_blas(controllers)
    return (called[0].info() if len(called) == 1 else None), [lib.info() for lib in controllers]


def print_header(peers):
    """What ran: CPU, libraries, the BLAS the kernels call, the planner's mode; and a
    warning when the environment pins OpenBLAS's kernels."""
    if "torch" in peers:
        import torch

        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if "ORT" in peers:
        import onnxruntime

        print(f"onnxruntime {onnxruntime.__version__} (CPU, default session options)")
    print(f"CPU: {cpu_model()}, {_cores()} cores for this process" + load_average())
    # the build, the BLAS the kernels call, the thread pool, the kernel build, the planner
    bl.show_config()
    lib, _ = kernels_blas()
    pinned = {name: os.environ[name] for name in PINNING if name in os.environ}
    if pinned:
        arch = lib.get("architecture", "?") if lib is not None else "?"
        lines = ["WARNING: " + " and ".join(f"{name}={value}" for name, value in pinned.items()) +
                 " set in the environment:"]
        lines += [f"  {name} {PINNING[name]}" for name in pinned]
        lines += [f"  so OpenBLAS ran its {arch} kernels" +
                  (", maybe not the ones it picks for this CPU:" if "OPENBLAS_CORETYPE" in pinned
                   else " blocked for the cache size set in the environment:"),
                  "  these are not this machine's native numbers. Run natively with",
                  "  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run.py"]
        bar = "!" * max(len(line) for line in lines)
        print("\n".join([bar, *lines, bar]))
        print(lines[0], "(see the warning above)", file=sys.stderr)


def load_average():
    """"; load average ..." (1, 5, 15 minutes) where the system says it: before the run it
    counts the other processes competing for the cores (a shared machine's noise)."""
    if not hasattr(os, "getloadavg"):
        return ""
    return "; load average " + " ".join(f"{load:.2f}" for load in os.getloadavg())


def _cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


# -------------------------------------------------------------------------- the planner
def warm_up(functions):
    """Run ``functions`` (bnnslstm calls) in turn until the planner has tuned every problem
    it has seen, at most WARM_UP_CALLS rounds (one without a planner): the first calls of a
    problem time its candidate arrangements, and the timed repeats must not. Together,
    because a problem's backward is tuned only by the calls that run one."""
    for _ in range(WARM_UP_CALLS if planner is not None else 1):
        for fn in functions:
            fn()
        if planner is None or all(d["tuned"] for d in planner.decisions()):
            return True
    return False


def planner_lines(tuned=True):
    """What the planner chose for the problems of one shape (``planner.forget()`` before
    it): the arrangements and the time the tuning cost, in ms."""
    if planner is None:
        return ["  planner: -"]
    found = planner.decisions()
    if not found:
        why = "heuristic mode" if planner.mode() == "heuristic" else "steps too small to tune"
        return [f"  planner: no tuning ({why})"]

    def choice(d):
        return (f"forward {d['forward']}" +
                ("" if d["backward"] == "-" else f"; backward {d['backward']}") +
                f"; {d['calls']} calls [{d['problem']}]")

    total = 1e3 * sum(d["tuning_seconds"] for d in found)
    lines = [f"  planner: tuning {total:.1f} ms" +
             (f"; {choice(found[0])}" if len(found) == 1 else "")]
    if len(found) > 1:
        lines += [f"    {1e3 * d['tuning_seconds']:.1f} ms; {choice(d)}" for d in found]
    if not tuned:
        lines.append(f"  WARNING: still tuning after {WARM_UP_CALLS} warm-up rounds: "
                     "the timed repeats include tuning")
    return lines


def available(*modules):
    try:
        for module in modules:
            __import__(module)
        return True
    except Exception:
        return False


# ---------------------------------------------------------------------- section: shapes
def shape_table(args, peers):
    """The table of shapes (see the module's docstring); returns the rows for --plot:
    (label, bnnslstm GF/s, {peer: GF/s})."""
    gemm = sgemm_gflops(1024 if args.quick else 2048)
    print(f"scipy sgemm reference: {gemm:.1f} GFLOP/s\n")
    # torch's ratio, the floor beside it, then ONNX Runtime's (inference rows), then others
    before = [peer for peer in peers if peer == "torch"]
    after = [peer for peer in peers if peer not in ("torch", "ORT")]
    header = (f"{'shape':<24} {'pass':<5} {'ms':>8} {'GF/s':>6}" +
              "".join(f" {peer + ' GF/s':>10} {'ratio':>5}" for peer in before) +
              f" {'floor ms':>8} {'% floor':>7}" +
              (f" {'ORT GF/s':>8} {'ratio':>5}" if "ORT" in peers else "") +
              "".join(f" {peer + ' GF/s':>10} {'ratio':>5}" for peer in after) +
              f" {'% sgemm':>7} {'BLAS/GEMM':>9} {'cache MB':>8} {'cache/min':>9}")
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(1)
    rows = []
    for name, T, B, I, H, L, bidir, variable, inference_only in SHAPES:
        if args.quick:
            T, B, I, H = max(2, T // 5), max(1, B // 4), max(8, I // 8), max(8, H // 8)
        lengths = make_lengths(rng, T, B) if variable else None
        if args.only and args.only not in name:
            continue
        D = 2 if bidir else 1
        flops = lstm_flops(T, B, I, H, L, D, lengths)
        if planner is not None:
            planner.forget()  # this shape's own tuning, in the warm-up below
        our_calls = bench_bnnslstm(T, B, I, H, L, bidir, lengths, inference_only)
        cache = our_calls.pop("cache", None)
        tuned = warm_up(list(our_calls.values()))
        peer_calls = {peer: make(T, B, I, H, L, bidir, lengths, inference_only)
                      for peer, make in peers.items()}
        for kind, ours in our_calls.items():
            times, _ = interleaved({"bnnslstm": ours, **{peer: calls[kind] for peer, calls
                                                         in peer_calls.items() if kind in calls}},
                                   args.repeats)
            floor, share, counted, _ = blas_floor(ours)
            factor = 1 if kind == "fwd" else 3  # training: forward + backward, 3x the FLOPs
            speed = {lib: factor * flops / seconds / 1e9 for lib, seconds in times.items()}
            ours_gf = speed["bnnslstm"]

            def cells(peer, width, speed=speed, ours_gf=ours_gf):
                if peer not in speed:
                    return f" {'':>{width}} {'':>5}"
                return f" {speed[peer]:>{width}.1f} {ours_gf / speed[peer]:>5.2f}"

            coverage = counted / gemm_flops(T, B, I, H, L, D, lengths, training=kind == "train")
            cache_cells = f" {'':>8} {'':>9}"
            if kind == "train" and cache:
                minimum = cache_minimum(T, B, H, L, D, lengths)
                cache_cells = f" {cache / 1e6:>8.1f} {cache / minimum:>9.2f}"
            print(f"{name:<24} {kind:<5} {1e3 * times['bnnslstm']:>8.2f} {ours_gf:>6.1f}" +
                  "".join(cells(peer, 10) for peer in before) +
                  f" {1e3 * floor:>8.2f} {100 * share:>6.0f}%" +
                  (cells("ORT", 8) if "ORT" in peers else "") +
                  "".join(cells(peer, 10) for peer in after) +
                  f" {100 * ours_gf / gemm:>6.0f}% {100 * coverage:>8.1f}%" + cache_cells)
            rows.append((f"{name} {kind}", ours_gf,
                         {peer: value for peer, value in speed.items() if peer != "bnnslstm"}))
        print("\n".join(planner_lines(tuned)))
        if variable:  # the same total work without variable lengths, for the padded-speed ratio
            padded = bench_bnnslstm(T, B, I, H, L, bidir, None, True)["fwd"]
            warm_up([padded])
            times, _ = interleaved({"padded": padded, "variable": our_calls["fwd"]},
                                   args.repeats)
            work_ratio = np.sum(lengths) / (T * B)
            print(f"{'  (padded equivalent)':<24} {'fwd':<5} speed ratio var/padded = "
                  f"{times['padded'] * work_ratio / times['variable']:.2f}")
    return rows, gemm


# ------------------------------------------------------------------- section: streaming
def bnnslstm_frames(layer, xs):
    """(reset, run, path): bnnslstm fed ``xs`` ([frames][B][I]) one frame per call with the
    state carried; ``run`` returns the last frame's output. With the layer's stepper
    (``layer.stream``) each step writes into one preallocated output; a build without it
    calls ``forward`` on T=1 with the previous call's (h, c), the only way it offers."""
    B, H = xs.shape[1], layer.hidden_size
    if hasattr(layer, "stream"):
        stream = layer.stream(batch_size=B)
        out = np.empty((B, H), xs.dtype)
        frames = list(xs)  # [B][I] views

        def run():
            step = stream.step
            for x_t in frames:
                step(x_t, out=out)
            return out

        return stream.reset, run, "stream"
    forward = layer.forward

    def step(x_t, h, c):
        y, (h, c) = forward(x_t, h, c, training=False)
        return y, h, c

    return (*carried(step, [xs[t:t + 1] for t in range(len(xs))], (None, None)),
            "forward T=1")


def carried(step, frames, initial):
    """(reset, run): ``run`` feeds ``frames`` to ``step(x_t, h, c) -> (y, h, c)`` in turn,
    each frame's (h, c) the next one's, from where the last run stopped (``reset``: from
    ``initial``), and returns the last y. The state is carried by the caller, as a peer
    without a stepper needs (one Python call more per frame than an inline loop: tens of
    nanoseconds against frames of microseconds)."""
    state = list(initial)

    def reset():
        state[:] = initial

    def run():
        h, c = state
        for x_t in frames:
            y, h, c = step(x_t, h, c)
        state[:] = h, c
        return y

    return reset, run


def torch_frames(layer, xs):
    """(reset, run): torch.nn.LSTM with the layer's weights, under torch.no_grad, one frame
    per call with the state carried (torch's default threads)."""
    import torch

    module = layer.to_torch().eval()
    frames = [torch.from_numpy(xs[t:t + 1]) for t in range(len(xs))]
    state = [None]

    def reset():
        state[0] = None

    def run():
        s = state[0]
        with torch.no_grad():
            for x_t in frames:
                y, s = module(x_t, s)
        state[0] = s
        return y.numpy()

    return reset, run


def ort_frames(layer, xs):
    """(reset, run): ONNX Runtime on the layer exported with inputs h0, c0, one
    ``session.run`` per frame with h_n, c_n fed back as the next h0, c0."""
    session = ort_session(layer, initial_states=True)
    zeros = np.zeros((layer.num_layers, xs.shape[1], layer.hidden_size), xs.dtype)
    run_session = session.run

    def step(x_t, h, c):
        return run_session(None, {"input": x_t, "h0": h, "c0": c})

    return carried(step, [xs[t:t + 1] for t in range(len(xs))], (zeros, zeros))


def streaming(args, peers):
    """Per-frame microseconds of the models of issue 29 (frames of one call each, the state
    carried), best of ``--repeats`` rounds (at least 5), the libraries in turn in each
    round, each round from the zero state; ``floor`` and ``% floor``: bnnslstm's BLAS floor
    per frame (blas_floor over a round) and its share of the counted rounds' time; ``x``
    columns: bnnslstm's speed over the peer's. ``max diff``: the largest difference between
    the peers' last output and bnnslstm's (same weights, same frames): they compute the same
    thing."""
    frames, rounds = (100, 3) if args.quick else (500, max(args.repeats, 5))
    streamed = {"torch": torch_frames, "ORT": ort_frames}
    streamed = {peer: make for peer, make in streamed.items() if peer in peers}
    print(f"\nstreaming: us per frame, {frames} frames per round, best of {rounds} rounds")
    header = (f"{'model':<18} {'bnnslstm path':<14} {'bnnslstm':>9} {'floor':>6} {'% floor':>7}" +
              "".join(f" {peer:>8} {'x ' + peer:>8}" for peer in streamed) +
              (f" {'max diff':>9}" if streamed else ""))
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(2)
    for name, I, H, L, B in STREAM_MODELS:
        layer = bl.LSTM(I, H, L, seed=0)
        xs = rng.standard_normal((frames, B, I)).astype(np.float32)
        reset, run, path = bnnslstm_frames(layer, xs)
        resets, runs = {"bnnslstm": reset}, {"bnnslstm": run}
        for peer, make in streamed.items():
            resets[peer], runs[peer] = make(layer, xs)
        times, last = interleaved(runs, rounds, best=True, before=resets, gc_off=True)
        us = {lib: 1e6 * seconds / frames for lib, seconds in times.items()}
        ours = np.asarray(last["bnnslstm"]).reshape(B, H)
        diff = max((float(np.max(np.abs(np.asarray(last[peer]).reshape(B, H) - ours)))
                    for peer in streamed), default=0.0)
        # after the check: the stepper's run returns its output buffer, which this reuses
        floor, share, _, _ = blas_floor(lambda reset=reset, run=run: (reset(), run()))
        print(f"{name:<18} {path:<14} {us['bnnslstm']:>9.1f} {1e6 * floor / frames:>6.1f} "
              f"{100 * share:>6.0f}%" +
              "".join(f" {us[peer]:>8.1f} {us[peer] / us['bnnslstm']:>8.2f}"
                      for peer in streamed) +
              (f" {diff:>9.1e}" if streamed else ""))


# --------------------------------------------------------------- section: trivial calls
def calibrated(fn, seconds):
    """``fn`` repeated enough times to last about ``seconds`` (at least 20 calls), and the
    number of calls."""
    for _ in range(20):
        fn()
    start = time.perf_counter()
    for _ in range(20):
        fn()
    one = (time.perf_counter() - start) / 20
    calls = max(20, math.ceil(seconds / one))

    def batch():
        for _ in range(calls):
            fn()

    return batch, calls


def raw_call(I=8, H=8):
    """bnnslstm's raw forward (``direct_apply_lstm_batch_training_caching``, no cache) on
    one parameters object built once, as the README's first call: the same descriptors
    from call to call."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1, I)).astype(np.float32)
    y = np.zeros((1, 1, H), np.float32)

    def weights(*shape):
        return bl.NDArrayDescriptor.from_array(rng.uniform(-0.5, 0.5, shape).astype(np.float32))

    params = bl.LayerParametersLSTM(
        input_size=I, hidden_size=H, batch_size=1, num_layers=1, seq_len=1,
        lstm_flags=bl.LayerFlags.DEFAULT_ACTIVATIONS,
        input_descriptor=bl.LSTMDataDescriptor(
            bl.NDArrayDescriptor.from_array(x, bl.DataLayout.SNE)),
        output_descriptor=bl.LSTMDataDescriptor(
            bl.NDArrayDescriptor.from_array(y, bl.DataLayout.SNE)),
    )
    for gate in ("input_gate", "forget_gate", "candidate_gate", "output_gate"):
        setattr(params, gate, bl.LSTMGateDescriptor(
            iw_desc=(weights(1, H, I), None), hw_desc=weights(1, 1, H, H),
            b_desc=weights(1, 1, H)))
    return lambda: bl.direct_apply_lstm_batch_training_caching(params)


def trivial_calls(args, peers):
    """The cost of a call with almost no arithmetic (T1 B1 I8 H8, about 1 kFLOP): the
    layer's inference and training forward against torch.nn.LSTM's (no_grad, and with
    autograd recording), and the raw function on descriptors built once. Each library runs
    batches of calls lasting about 20 ms (calibrated per library), best of at least 25
    rounds, the libraries in turn (many short batches: on a shared machine some of them
    run undisturbed); ``ratio``: bnnslstm's speed over torch's."""
    seconds, rounds = (0.01, 5) if args.quick else (0.02, max(args.repeats, 25))
    with_torch = "torch" in peers
    rng = np.random.default_rng(0)
    tiny = bl.LSTM(8, 8, seed=0)
    x = rng.standard_normal((1, 1, 8)).astype(np.float32)
    rows = {"trivial T1 B1 I8 H8 inference": {"bnnslstm": lambda: tiny.forward(x, training=False)},
            "trivial T1 B1 I8 H8 training forward":
                {"bnnslstm": lambda: tiny.forward(x, training=True)},
            "trivial T1 B1 I8 H8 raw call, same params": {"bnnslstm": raw_call()}}
    if with_torch:
        import torch

        module = tiny.to_torch()
        xt = torch.from_numpy(x)

        def torch_inference():
            with torch.no_grad():
                module(xt)

        rows["trivial T1 B1 I8 H8 inference"]["torch"] = torch_inference
        rows["trivial T1 B1 I8 H8 training forward"]["torch"] = lambda: module(xt)
    print(f"\ntrivial calls: us per call, batches of ~{1e3 * seconds:.0f} ms, "
          f"best of {rounds} rounds")
    header = f"{'call':<44} {'calls':>6} {'bnnslstm us':>11}" + (
        f" {'torch us':>9} {'ratio':>6}" if with_torch else "")
    print(header)
    print("-" * len(header))
    for name, functions in rows.items():
        batches, calls = {}, {}
        for lib, fn in functions.items():
            batches[lib], calls[lib] = calibrated(fn, seconds)
        times, _ = interleaved(batches, rounds, best=True, gc_off=True)
        us = {lib: 1e6 * times[lib] / calls[lib] for lib in times}
        row = f"{name:<44} {calls['bnnslstm']:>6} {us['bnnslstm']:>11.1f}"
        if "torch" in us:
            row += f" {us['torch']:>9.1f} {us['torch'] / us['bnnslstm']:>6.2f}"
        print(row)


# --------------------------------------------------------------------------------- main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smaller shapes (a smoke run)")
    parser.add_argument("--plot", metavar="PNG",
                        help="also draw the GFLOP/s side by side (needs matplotlib)")
    parser.add_argument("--only", metavar="TEXT",
                        help="'stream' or 'trivial': that section only; other TEXT: only the "
                             "shapes whose name contains TEXT (e.g. batch-)")
    args = parser.parse_args(argv)
    peers = {}  # name -> the benchmark of the shapes' table
    if available("torch"):
        peers["torch"] = bench_torch
    if available("onnxruntime", "onnx"):  # the benchmark extra: ONNX Runtime, onnx to export
        peers["ORT"] = bench_ort
    if available("thinc"):
        peers["thinc"] = bench_thinc
    print_header(peers)
    sections = ("stream", "trivial")
    rows = []
    if args.only not in sections:
        rows, gemm = shape_table(args, peers)
    if not args.only or args.only == "stream":
        streaming(args, peers)
    if not args.only or args.only == "trivial":
        trivial_calls(args, peers)
    if args.plot and rows:
        plot(rows, [peer for peer in peers if any(peer in theirs for _, _, theirs in rows)],
             gemm, args.plot)
    return 0


def plot(rows, peers, gemm, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [label for label, _, _ in rows]
    y = np.arange(len(rows))
    height = 0.8 / (1 + len(peers))
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.2))
    ax.barh(y, [ours for _, ours, _ in rows], height, label="bnnslstm")
    for k, peer in enumerate(peers):  # ONNX Runtime has no training bar (0)
        ax.barh(y + (k + 1) * height, [theirs.get(peer, 0) for _, _, theirs in rows], height,
                label=peer)
    ax.axvline(gemm, color="grey", linestyle="--", label="scipy sgemm")
    ax.set_yticks(y + height * len(peers) / 2, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("GFLOP/s (forward GEMM FLOPs; training counts 3x)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print("plot written to", path)


if __name__ == "__main__":
    sys.exit(main())
