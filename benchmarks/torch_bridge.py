"""bnnslstm.torch.LSTM: its overhead over the library called directly, and its speed
against torch.nn.LSTM.

    python benchmarks/torch_bridge.py [--repeats N] [--pause SECONDS] [--quick]

Two tables, each from one process with interleaved repeats (A, B, A, B, ...) and medians:

1. The bridge's overhead: ``bnnslstm.torch.LSTM`` (autograd Function, tensors as numpy
   views) against the numpy layer ``bnnslstm.LSTM`` on the same weights and data.
   ``fwd`` is inference (``torch.no_grad()`` / ``training=False``: no cache); ``train`` is
   a forward with the training cache plus the backward to every weight (the input needs no
   gradient, as for a first layer). Ratio = bridge time / library time (1.00 = no overhead).
2. Speed against ``torch.nn.LSTM`` (same weights): inference and training as above, on the
   benchmark shapes; a variable-length batch (lengths T/4..T) runs padded (a plain tensor:
   every step of every sample computed) and packed (a ``PackedSequence``). Ratio =
   torch time / bnnslstm.torch time (above 1: bnnslstm faster).
"""

import argparse
import statistics
import sys
import time

import numpy as np
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import bnnslstm as bl
import bnnslstm.torch as bt

OVERHEAD_SHAPES = [  # name, T, B, I, H, layers, bidirectional
    ("T25 B64 H512", 25, 64, 512, 512, 1, False),
    ("T10 B4 H32", 10, 4, 32, 32, 1, False),
    ("2L bidir T25 B64 H512", 25, 64, 512, 512, 2, True),
]
SPEED_SHAPES = [  # name, T, B, I, H, variable lengths: None, "padded" or "packed"
    ("T25 B64 H512", 25, 64, 512, 512, None),
    ("T150 B32 H256", 150, 32, 256, 256, None),
    ("var-len T100 B32 H256 padded", 100, 32, 256, 256, "padded"),
    ("var-len T100 B32 H256 packed", 100, 32, 256, 256, "packed"),
]


def interleaved(functions, repeats, pause):
    """Median seconds of each function, timed in turn (one warm-up call each first)."""
    for fn in functions:
        fn()
    times = [[] for _ in functions]
    for _ in range(repeats):
        for fn, samples in zip(functions, times):
            time.sleep(pause)  # let the previous run's idle threads stop spinning
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
    return [statistics.median(samples) for samples in times]


def torch_pair(I, H, L, bidirectional):
    """A torch.nn.LSTM and a bnnslstm.torch.LSTM with the same weights."""
    torch.manual_seed(0)
    reference = torch.nn.LSTM(I, H, L, bidirectional=bidirectional)
    module = bt.LSTM(I, H, L, bidirectional=bidirectional)
    module.load_state_dict(reference.state_dict())
    return reference, module


def module_runs(module, x, dy, packed=None):
    """(inference, training) closures for a torch module (ours or torch's)."""
    inp = x if packed is None else packed

    def forward():
        with torch.no_grad():
            module(inp)

    def train():
        module.zero_grad(set_to_none=True)
        out, _ = module(inp)
        torch.autograd.backward(out if packed is None else out.data, dy)

    return forward, train


def layer_runs(layer, x, dy):
    """(inference, training) closures for the numpy layer bnnslstm.LSTM."""

    def forward():
        layer.forward(x, training=False)

    def train():
        layer.forward(x, training=True)
        layer.backward(dy)

    return forward, train


def overhead_table(args):
    print("bnnslstm.torch.LSTM against bnnslstm.LSTM (the library called directly)")
    header = f"{'shape':<24} {'pass':<6} {'library ms':>11} {'bridge ms':>10} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for name, T, B, I, H, L, bidirectional in OVERHEAD_SHAPES:
        if args.quick:
            T, B, I, H = max(2, T // 5), max(1, B // 4), max(8, I // 8), max(8, H // 8)
        D = 2 if bidirectional else 1
        _, module = torch_pair(I, H, L, bidirectional)
        layer = bl.LSTM(I, H, L, bidirectional=bidirectional)
        for key, array in layer.parameters().items():  # the same weights
            if key.startswith("bias_"):
                suffix = key[len("bias_"):]
                array[...] = (getattr(module, f"bias_ih_{suffix}") +
                              getattr(module, f"bias_hh_{suffix}")).detach()
            else:
                array[...] = getattr(module, key).detach()
        x = torch.randn(T, B, I)
        dy = torch.randn(T, B, D * H)
        layer_forward, layer_train = layer_runs(layer, x.numpy(), dy.numpy())
        bridge_forward, bridge_train = module_runs(module, x, dy)
        for kind, ours, theirs in (("fwd", layer_forward, bridge_forward),
                                   ("train", layer_train, bridge_train)):
            library, bridge = interleaved([ours, theirs], args.repeats, args.pause)
            print(f"{name:<24} {kind:<6} {1e3 * library:>11.2f} {1e3 * bridge:>10.2f} "
                  f"{bridge / library:>6.2f}")
    print()


def speed_table(args):
    print("bnnslstm.torch.LSTM against torch.nn.LSTM (ratio = torch time / bnnslstm time)")
    header = f"{'shape':<30} {'pass':<6} {'torch ms':>9} {'bnnslstm ms':>12} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(1)
    for name, T, B, I, H, variable in SPEED_SHAPES:
        if args.quick:
            T, B, I, H = max(4, T // 5), max(2, B // 4), max(8, I // 8), max(8, H // 8)
        reference, module = torch_pair(I, H, 1, False)
        x = torch.randn(T, B, I)
        packed = None
        dy = torch.randn(T, B, H)
        if variable is not None:
            lengths = np.sort(rng.integers(T // 4, T + 1, size=B))[::-1].copy()
            lengths[0] = T
            if variable == "packed":
                packed = pack_padded_sequence(x, torch.as_tensor(lengths))
                dy = torch.randn(packed.data.shape[0], H)
        runs = [module_runs(m, x, dy, packed) for m in (reference, module)]
        for k, kind in enumerate(("fwd", "train")):
            theirs, ours = interleaved([runs[0][k], runs[1][k]], args.repeats, args.pause)
            print(f"{name:<30} {kind:<6} {1e3 * theirs:>9.2f} {1e3 * ours:>12.2f} "
                  f"{theirs / ours:>6.2f}")
    print()


def main(argv=None):
    summary = " ".join(__doc__.split("\n\n")[0].split())  # the docstring's first paragraph
    parser = argparse.ArgumentParser(description=summary)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--pause", type=float, default=0.1,
                        help="seconds of rest before each timed call")
    parser.add_argument("--quick", action="store_true", help="smaller shapes (a smoke run)")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"medians of {args.repeats} interleaved repeats\n")
    overhead_table(args)
    speed_table(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
