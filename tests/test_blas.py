"""SPEC §0: every matrix product is a call to scipy's BLAS. The kernels' BLAS wrapper counts
the FLOPs it hands over; they must equal the analytic count of the LSTM's products, in
float32 and float64, forward and backward (a product done any other way would fall short)."""

import numpy as np
import pytest

import bnnslstm as bl
from bnnslstm import _plan


def product_flops(T, B, I, H, L, D, training):
    """2 x multiply-adds of the products: per layer the input projection of every row, the
    recurrent product of every step but each direction's first (its initial state is
    absent: zero); training adds dX and dW (each the projection's size), dU and the per-step
    dL/dh = dA U (each rows x 4H x H)."""
    rows, total = T * B, 0
    for layer in range(L):
        X = I if layer == 0 else D * H
        projection = 2 * rows * D * 4 * H * X
        total += projection + 2 * (rows - B) * D * 4 * H * H
        if training:
            total += 2 * projection + 2 * 2 * rows * D * 4 * H * H
    return total


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("T,B,I,H,L,bidirectional", [
    (5, 8, 12, 16, 2, True), (7, 3, 5, 9, 1, False), (6, 1, 4, 8, 1, False), (3, 16, 6, 64, 1, True)])  # the last on a team
def test_every_product_goes_through_blas(dtype, T, B, I, H, L, bidirectional):
    D = 2 if bidirectional else 1
    lstm = bl.LSTM(I, H, L, bidirectional=bidirectional, dtype=dtype, seed=0)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(dtype)
    _plan.kernels.blas_time(enable=True, reset=True)
    try:
        lstm.forward(x, training=False)
        inference = sum(flops for _, flops in _plan.kernels.blas_time(enable=True, reset=True))
        y, _ = lstm.forward(x)
        lstm.backward(np.ones_like(y))
        training = sum(flops for _, flops in _plan.kernels.blas_time(enable=True, reset=True))
    finally:
        _plan.kernels.blas_time(enable=False, reset=True)
    assert inference == product_flops(T, B, I, H, L, D, training=False)
    assert training == product_flops(T, B, I, H, L, D, training=True)
