"""The LSTM's FLOP model, once: what benchmarks/run.py reports and tests/test_blas.py checks.

Plain functions of the shapes (numpy only, nothing of bnnslstm), so that the benchmark
imports them as its neighbour and the tests load this file by its path.
"""

import numpy as np


def lstm_flops(T, B, I, H, L, D, lengths=None):
    """Multiply-adds x 2 of the forward's products, every step's recurrent one included
    (the nominal count a GFLOP/s figure divides; elementwise work not counted)."""
    steps = T * B if lengths is None else int(np.sum(lengths))
    total = 0
    for layer in range(L):
        X = I if layer == 0 else D * H
        total += D * steps * 2 * 4 * H * (X + H)
    return total


def gemm_flops(T, B, I, H, L, D, lengths=None, training=False):
    """GEMM FLOPs the kernels hand to BLAS (2 x multiply-adds): per layer the input
    projection of every row, the recurrent product of every row but each sample's first
    step (its initial state is absent, i.e. zero: nothing to multiply); in training also
    the backward's dX and dW (each the projection's size), dU and the per-step
    dL/dh = dA U (each rows x 4H x H). ``lengths``: per-sample lengths (None: all T)."""
    rows = T * B if lengths is None else int(np.sum(lengths))
    total = 0
    for layer in range(L):
        X = I if layer == 0 else D * H
        projection = 2 * rows * D * 4 * H * X
        total += projection + 2 * (rows - B) * D * 4 * H * H
        if training:
            total += 2 * projection + 2 * 2 * rows * D * 4 * H * H
    return total
