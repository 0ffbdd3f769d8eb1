"""The BLAS wrapper (bnnslstm/_kernels/_blas.pxd), the one place the package calls BLAS.

Each of its functions and paths against numpy's matmul, in float32 and float64, through
the shim that compiles them for Python (bnnslstm/_kernels/_blas_check.pyx): how an operand
is read (operand: 'N', 'T' or not at all, and its leading dimension), blocks, gemm over
both transposes of A and B and both orders of C with padded leading dimensions, the split
into one gemv per row or column of C, gemv itself, beta = 0 (C never read), 1 and others,
and products with nothing to sum. Then every matrix product of the kernels goes through
it: the FLOPs it counts in a forward and a backward equal the FLOP model of
benchmarks/flops.py.
"""

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

import bnnslstm as bl
from bnnslstm import _plan
from bnnslstm._kernels import _blas_check as blas

DTYPES = [np.float32, np.float64]
TOLERANCE = {np.float32: 2e-6, np.float64: 1e-14}  # of the largest |value| of the sum's terms
STORAGES = ["row", "column", "row-padded", "column-padded"]
BETAS = [0.0, 1.0, -0.5]


def stored(values, how):
    """A copy of the matrix ``values`` in a storage (nothing else differs): 'row'
    C order, 'column' Fortran order, 'row-padded' / 'column-padded' the same as a block,
    away from the corner, of a larger array (a leading dimension beyond the matrix's),
    'spread' every other element of every other row (no unit stride: BLAS cannot read it).
    The elements of the larger array around the block are NaN."""
    rows, cols = values.shape
    if how in ("row", "column"):
        return np.array(values, order="C" if how == "row" else "F")  # a copy
    if how == "row-padded":
        store = np.full((rows + 2, cols + 3), np.nan, values.dtype)
    elif how == "column-padded":
        store = np.full((rows + 3, cols + 2), np.nan, values.dtype, order="F")
    elif how == "spread":
        store = np.full((2 * rows, 2 * cols), np.nan, values.dtype)
        store[::2, ::2] = values
        return store[::2, ::2]
    else:
        raise ValueError(how)
    store[1:rows + 1, 2:cols + 2] = values
    return store[1:rows + 1, 2:cols + 2]


def around(view):
    """The NaN elements around a padded view (its base array without the view)."""
    if view.base is None or view.base.shape == view.shape:
        return np.zeros(0)
    mask = np.ones(view.base.shape, bool)
    mask[1:view.shape[0] + 1, 2:view.shape[1] + 2] = False
    return view.base[mask]


def close(actual, desired, scale, dtype, what=""):
    np.testing.assert_allclose(actual, desired, rtol=0, atol=TOLERANCE[dtype] * max(1.0, scale),
                               err_msg=what)


def check_gemm(dtype, M, K, N, a_how, b_how, c_how, alpha, beta, by_vectors, seed=0):
    """C = alpha A B + beta C through the wrapper, against numpy, with every operand stored
    as told; beta == 0 starts C as NaN (the wrapper must not read it)."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1, 1, (M, K)).astype(dtype)
    b = rng.uniform(-1, 1, (K, N)).astype(dtype)
    c0 = np.full((M, N), np.nan, dtype) if beta == 0 else rng.uniform(-1, 1, (M, N)).astype(dtype)
    A, B, C = stored(a, a_how), stored(b, b_how), stored(c0, c_how)
    blas.gemm(alpha, A, B, beta, C, by_vectors)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    want = alpha * (a64 @ b64) + (0 if beta == 0 else beta * c0.astype(np.float64))
    scale = K * abs(alpha) + abs(beta)
    what = f"{M}x{K}x{N} A {a_how}, B {b_how}, C {c_how}, alpha {alpha}, beta {beta}, " \
           f"by_vectors {by_vectors}"
    close(C, want, scale, dtype, what)
    assert np.all(np.isnan(around(C))), "written outside C: " + what
    np.testing.assert_array_equal(A, a)  # operands only read
    np.testing.assert_array_equal(B, b)


# ------------------------------------------------------------------------------ operand
@pytest.mark.parametrize("rows,cols,rs,cs,expected", [
    (3, 4, 1, 3, ("N", 3)),     # column-major
    (3, 4, 1, 5, ("N", 5)),     # column-major, padded columns
    (3, 4, 4, 1, ("T", 4)),     # row-major: the transpose of a column-major matrix
    (3, 4, 6, 1, ("T", 6)),     # row-major, padded rows
    (3, 4, 1, 2, None),         # columns overlap
    (3, 4, 3, 1, None),         # rows overlap
    (3, 4, 2, 2, None),         # no unit stride
    (3, 4, 1, 0, None),         # every column the same
    (3, 4, -4, 1, None),        # rows backwards
    (3, 1, 1, 0, ("N", 3)),     # one column: its stride never used, ld = rows
    (3, 1, 2, 7, ("T", 2)),     # one column at a stride: the transpose of a row
    (1, 4, 9, 1, ("N", 1)),     # one contiguous row: a 1-row column-major matrix, ld 1
    (1, 4, 0, 3, ("N", 3)),     # one row at a stride
    (1, 4, 5, 0, None),         # one row whose elements are one element
    (1, 1, 7, 9, ("N", 1)),     # one element: any strides
    (1, 1, -3, 0, ("N", 1)),
    # the whole span must fit a C int, not only ld (BLAS kernels compute j * ld in one)
    (1, 2, 1, 2**30, ("N", 2**30)),           # two elements 2**30 apart
    (1, 2, 1, 2**31 - 1, None),               # ld fits, the span (2**31 elements) does not
    (5, 5, 2**31 - 1, 1, None),               # a 5 x 5 C with ld INT_MAX (it crashed)
    (5, 5, 2**28, 1, ("T", 2**28)),           # 4 * 2**28 + 5 elements: within
], ids=lambda v: str(v))
def test_operand_reads_columns_or_rows_contiguous(rows, cols, rs, cs, expected):
    assert blas.operand(rows, cols, rs, cs) == expected


def readings(rows, cols, rs, cs):
    """Every (trans, ld) under which column-major BLAS finds element [i][j] at
    i rs + j cs (ld at least max(1, rows) for 'N', max(1, cols) for 'T')."""
    found = []
    cells = list(itertools.product(range(rows), range(cols)))
    for trans, least in (("N", rows), ("T", cols)):
        for ld in range(max(1, least), 12):
            if all(i * rs + j * cs == (i + j * ld if trans == "N" else j + i * ld)
                   for i, j in cells):
                found.append((trans, ld))
    return found


def test_operand_accepts_exactly_what_blas_can_read():
    """Over every shape up to 4 x 4 and strides -2..6: operand() gives a reading BLAS
    really has (each element where BLAS looks for it, a valid leading dimension), and None
    only when BLAS has none (the caller then gathers the matrix)."""
    for rows, cols, rs, cs in itertools.product(range(1, 5), range(1, 5), range(-2, 7),
                                                range(-2, 7)):
        got = blas.operand(rows, cols, rs, cs)
        valid = readings(rows, cols, rs, cs)
        if got is None:
            assert valid == [], (rows, cols, rs, cs, valid)
        else:
            assert got in valid, (rows, cols, rs, cs, got, valid)


def test_step_is_the_stride_of_a_vector_longer_than_one():
    assert [blas.step(n, s) for n, s in ((5, 3), (2, 1), (9, 40))] == [3, 1, 40]
    assert [blas.step(1, s) for s in (0, 7, -4)] == [1, 1, 1]  # one element: any increment works


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("how", STORAGES + ["spread"])
def test_a_block_is_the_slice_at_the_same_strides(dtype, how):
    """block(m, r0, c0, rows, cols) starts at m[r0][c0], keeps m's strides; an absent m
    (no buffer) stays absent."""
    base = stored(np.arange(42, dtype=dtype).reshape(6, 7), how)
    strides = tuple(s // base.itemsize for s in base.strides)
    address = base.__array_interface__["data"][0]
    for r0, c0, rows, cols in ((0, 0, 6, 7), (2, 3, 3, 4), (5, 6, 1, 1)):
        sliced = base[r0:r0 + rows, c0:c0 + cols]
        first = (sliced.__array_interface__["data"][0] - address) // base.itemsize
        assert blas.block(base, r0, c0, rows, cols) == (first, rows, cols) + strides
    assert blas.block(base, 2, 3, 3, 4, absent=True) == (None, 3, 4) + strides


# ------------------------------------------------------------------------------ gemm
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("a_how", STORAGES)
@pytest.mark.parametrize("b_how", STORAGES)
def test_one_gemm_over_transposes_and_orders(dtype, a_how, b_how):
    """One gemm call (by_vectors 0) for A and B each read 'N' (column-major) or 'T'
    (row-major), padded or not, into a column-major C (computed as it is) or a row-major
    one (computed as C^T = B^T A^T, operands swapped, nothing copied), with alpha and
    beta; 7 x 5 by 5 x 6."""
    for c_how, alpha, beta in itertools.product(STORAGES, (1.0, -1.5), BETAS):
        check_gemm(dtype, 7, 5, 6, a_how, b_how, c_how, alpha, beta, by_vectors=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M,K,N", [(7, 5, 3), (3, 5, 7), (5, 4, 5), (1, 6, 9), (9, 6, 1),
                                   (1, 1, 1)], ids=lambda v: str(v))
def test_gemm_split_into_one_gemv_per_row_or_column(dtype, M, K, N):
    """by_vectors 1: C split along its smaller dimension, one gemv per column
    (C[:, j] = A B[:, j]) or per row (C[i, :]^T = B^T A[i, :]^T), the vectors at the
    strides of their matrices; every storage of A, B and C."""
    for a_how, b_how, c_how in itertools.product(STORAGES, repeat=3):
        for beta in BETAS:
            check_gemm(dtype, M, K, N, a_how, b_how, c_how, 1.0, beta, by_vectors=1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M,N", [(9, blas.GEMV_UP_TO), (blas.GEMV_UP_TO, 9),
                                 (9, blas.GEMV_UP_TO + 1), (blas.GEMV_UP_TO + 1, 9), (9, 9),
                                 (1, 9), (2, 3)], ids=lambda v: str(v))
def test_gemm_chooses_by_the_smaller_dimension(dtype, M, N):
    """by_vectors -1 (gemm()): gemv calls when C has at most GEMV_UP_TO rows or columns,
    one gemm otherwise; the same products either way."""
    assert blas.GEMV_UP_TO >= 1
    for a_how, b_how, c_how in itertools.product(STORAGES, repeat=3):
        check_gemm(dtype, M, 6, N, a_how, b_how, c_how, 1.0, 0.0, by_vectors=-1)
        check_gemm(dtype, M, 6, N, a_how, b_how, c_how, 1.0, 1.0, by_vectors=-1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("by_vectors", [-1, 0, 1])
def test_a_single_row_or_column_of_c_at_any_stride_of_the_other_axis(dtype, by_vectors):
    """C of one row whose row stride is 0 or smaller than its columns (or one column whose
    column stride is), which operand() accepts: its result is still alpha A B + beta C."""
    rng = np.random.default_rng(3)
    itemsize = np.dtype(dtype).itemsize
    for M, N, strides in ((1, 6, (2, 1)), (1, 6, (0, 1)), (6, 1, (1, 2)), (6, 1, (1, 0)),
                          (1, 1, (0, 0))):
        a = rng.uniform(-1, 1, (M, 5)).astype(dtype)
        b = rng.uniform(-1, 1, (5, N)).astype(dtype)
        assert blas.operand(M, N, *strides) is not None
        for beta in BETAS:
            store = np.full(16, np.nan if beta == 0 else 0.25, dtype)
            c = as_strided(store, (M, N), tuple(s * itemsize for s in strides))
            want = a.astype(np.float64) @ b + beta * (0 if beta == 0 else 0.25)
            blas.gemm(1.0, a, b, beta, c, by_vectors)
            close(c, want, 6, dtype, f"{M}x{N} strides {strides} beta {beta}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c_how", STORAGES)
def test_a_product_with_nothing_to_sum_scales_c(dtype, c_how):
    """K = 0 (A has no columns, B no rows): C = beta C, with beta = 0 giving zeros even
    where C held NaN, and BLAS not called (no FLOP counted)."""
    rng = np.random.default_rng(4)
    a, b = np.zeros((5, 0), dtype), np.zeros((0, 3), dtype)
    for by_vectors in (-1, 0, 1):
        for beta in BETAS:
            c0 = np.full((5, 3), np.nan, dtype) if beta == 0 else rng.uniform(-1, 1, (5, 3))
            c = stored(c0.astype(dtype), c_how)
            blas.counted_flops(enable=True, reset=True)
            blas.gemm(2.0, a, b, beta, c, by_vectors)
            assert blas.counted_flops(enable=False, reset=True) == 0
            np.testing.assert_array_equal(c, np.zeros((5, 3)) if beta == 0 else
                                          (beta * c0).astype(dtype))
            assert np.all(np.isnan(around(c)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_an_empty_result_is_left_alone(dtype):
    """C with no rows or no columns: nothing is computed or counted."""
    for M, K, N in ((0, 4, 3), (3, 4, 0), (0, 0, 0)):
        a, b = np.ones((M, K), dtype), np.ones((K, N), dtype)
        c = np.empty((M, N), dtype)
        blas.counted_flops(enable=True, reset=True)
        blas.gemm(1.0, a, b, 0.0, c)
        assert blas.counted_flops(enable=False, reset=True) == 0


# ------------------------------------------------------------------------------ gemv
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("a_how", STORAGES)
@pytest.mark.parametrize("M,N", [(5, 4), (1, 4), (4, 1), (1, 1)], ids=lambda v: str(v))
def test_gemv(dtype, a_how, M, N):
    """y = alpha A x + beta y with A read 'N' or 'T', x and y at unit or larger strides;
    beta = 0 never reads y (some BLAS builds would keep a NaN there)."""
    rng = np.random.default_rng(5)
    a = rng.uniform(-1, 1, (M, N)).astype(dtype)
    A = stored(a, a_how)
    for incx, incy, alpha, beta in itertools.product((1, 3), (1, 2), (1.0, -0.5), BETAS):
        x_store = np.full(N * incx, np.nan, dtype)
        x_store[::incx] = rng.uniform(-1, 1, N)
        y_store = np.full(M * incy, np.nan, dtype)
        y0 = np.full(M, np.nan) if beta == 0 else rng.uniform(-1, 1, M)
        y_store[::incy] = y0
        x, y = x_store[::incx], y_store[::incy]
        want = alpha * (a.astype(np.float64) @ x) + (0 if beta == 0 else beta * y0)
        blas.gemv(alpha, A, x, beta, y)
        close(y, want, N + 1, dtype, f"{a_how} incx {incx} incy {incy} beta {beta}")
        if incy > 1:
            assert np.all(np.isnan(y_store.reshape(M, incy)[:, 1:]))  # nothing between


# ------------------------------------------------------------------------------ counters
@pytest.mark.parametrize("M,K,N,by_vectors", [(7, 5, 6, 0), (7, 5, 3, 1), (3, 5, 7, 1),
                                              (2, 5, 9, -1), (9, 5, 9, -1)],
                         ids=lambda v: str(v))
def test_each_product_counts_its_flops_once(M, K, N, by_vectors):
    """2 M N K per product while counting is on, whether one gemm or M or N gemv calls did
    it; nothing while it is off."""
    a, b, c = np.ones((M, K)), np.ones((K, N)), np.zeros((M, N))
    blas.counted_flops(enable=True, reset=True)
    blas.gemm(1.0, a, b, 0.0, c, by_vectors)
    blas.gemm(1.0, a, b, 1.0, c, by_vectors)
    assert blas.counted_flops(enable=False, reset=True) == 2 * 2 * M * N * K
    blas.gemm(1.0, a, b, 0.0, c, by_vectors)
    assert blas.counted_flops(reset=True) == 0
    np.testing.assert_array_equal(c, np.full((M, N), K))


# ------------------------------------------------------------------------------ the kernels
def flop_model():
    """benchmarks/flops.py, loaded by its path (benchmarks/ is no package): the one FLOP
    model, the benchmark's figures and this test's."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "flops.py"
    spec = importlib.util.spec_from_file_location("bnnslstm_benchmark_flops", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gemm_flops = flop_model().gemm_flops


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T,B,I,H,L,bidirectional,lengths", [
    (5, 8, 12, 16, 2, True, None), (7, 3, 5, 9, 1, False, None), (6, 1, 4, 8, 1, False, None),
    (3, 16, 6, 64, 1, True, None),  # large enough for a thread team
    (6, 4, 5, 8, 2, True, [6, 4, 4, 1]),  # variable lengths: only active rows are multiplied
])
def test_every_product_of_the_kernels_goes_through_blas(dtype, T, B, I, H, L, bidirectional,
                                                        lengths):
    """The FLOPs the wrapper counts in an inference forward and in a training forward +
    backward of bnnslstm.LSTM equal the analytic count of the LSTM's products: a product
    done any other way than through the wrapper would fall short."""
    D = 2 if bidirectional else 1
    lstm = bl.LSTM(I, H, L, bidirectional=bidirectional, dtype=dtype, seed=0)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(dtype)
    batch_sizes = None if lengths is None else [sum(n > t for n in lengths) for t in range(T)]
    _plan.kernels.blas_time(enable=True, reset=True)
    try:
        lstm.forward(x, batch_sizes=batch_sizes, training=False)
        inference = sum(flops for _, flops in _plan.kernels.blas_time(enable=True, reset=True))
        y, _ = lstm.forward(x, batch_sizes=batch_sizes)
        lstm.backward(np.ones_like(y))
        training = sum(flops for _, flops in _plan.kernels.blas_time(enable=True, reset=True))
    finally:
        _plan.kernels.blas_time(enable=False, reset=True)
    assert inference == gemm_flops(T, B, I, H, L, D, lengths, training=False)
    assert training == gemm_flops(T, B, I, H, L, D, lengths, training=True)
