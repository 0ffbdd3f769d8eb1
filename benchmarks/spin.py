"""How long the kernels' team should spin before it gives its cores away: measured.

    python benchmarks/spin.py [--load] [--rounds N]

A thread of a call's team that waits (at the barrier between the phases of a step, or a
pool worker waiting for the next call, or the caller waiting for its workers) spins some
rounds, then yields its core for a while, then sleeps (bnnslstm/_kernels/_team.h). Spinning
longer answers sooner; it also keeps a core from whatever else wants it, including the
thread everybody waits for when the machine has other work. This script times a few
workloads under a grid of (spins, idle seconds), in one process, the settings interleaved
round after round, best of the rounds; ``--load`` adds a process that keeps one core busy
(what a shared machine, or a second program, does). Run it with OpenBLAS's own kernels:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/spin.py
"""

import argparse
import multiprocessing
import time

import numpy as np

import bnnslstm as bl
from bnnslstm import _plan

SPINS = (250, 1000, 4000, 16000, 64000)
IDLE = (0.0, 2e-4, 2e-3)


def busy():
    while True:
        pass


def workloads():
    """name -> a callable timing one unit of work (seconds)."""
    rng = np.random.default_rng(0)
    frames = bl.LSTM(256, 256, seed=0).stream()
    frame, out = rng.standard_normal((1, 256)).astype(np.float32), np.empty((1, 256), np.float32)
    long = bl.LSTM(256, 256, seed=0)
    x_long = rng.standard_normal((150, 32, 256)).astype(np.float32)
    small = bl.LSTM(256, 256, seed=0)
    x_small = rng.standard_normal((10, 8, 256)).astype(np.float32)

    def per(calls, fn, pause=0.0):
        def run():
            total = 0.0
            for _ in range(calls):
                if pause:
                    time.sleep(pause)
                start = time.perf_counter()
                fn()
                total += time.perf_counter() - start
            return total / calls
        return run

    return {
        "stream frame I256 H256 (us)": per(200, lambda: frames.step(frame, out)),
        "forward T150 B32 H256 (ms)": per(2, lambda: long.forward(x_long, training=False)),
        "forward T10 B8 H256, back to back (us)": per(
            50, lambda: small.forward(x_small, training=False)),
        "the same, 1 ms apart (us)": per(20, lambda: small.forward(x_small, training=False),
                                          pause=1e-3),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", action="store_true", help="keep one core busy meanwhile")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    bl.planner.set_mode("heuristic")   # the same arrangement for every setting
    default = _plan.kernels.team_waits()
    loads = []
    if args.load:
        loads = [multiprocessing.Process(target=busy, daemon=True)]
        for process in loads:
            process.start()
    try:
        work = workloads()
        for fn in work.values():
            fn()   # warm up: plans, pools
        settings = [(s, i) for s in SPINS for i in IDLE]
        best = {(name, setting): float("inf") for name in work for setting in settings}
        for _ in range(args.rounds):
            for setting in settings:
                _plan.kernels.team_waits(*setting)
                for name, fn in work.items():
                    best[name, setting] = min(best[name, setting], fn())
    finally:
        _plan.kernels.team_waits(*default)
        for process in loads:
            process.terminate()
    print(f"team waits: spins then idle seconds before sleeping (default {default}); "
          f"{'one core kept busy by another process' if args.load else 'no other load'}; "
          f"best of {args.rounds} rounds")
    print(f"{'spins':>7} {'idle s':>7} " + " ".join(f"{name:>40}" for name in work))
    for setting in settings:
        cells = []
        for name in work:
            scale = 1e6 if name.endswith("(us)") else 1e3
            value = best[name, setting] * scale
            floor = min(best[name, s] for s in settings) * scale
            cells.append(f"{value:>31.1f} ({value / floor:4.2f}x)")
        marker = "  <- default" if setting == default else ""
        print(f"{setting[0]:>7} {setting[1]:>7.4f} " + " ".join(cells) + marker)


if __name__ == "__main__":
    main()
