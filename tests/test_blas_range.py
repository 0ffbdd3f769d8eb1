"""BLAS's integer range. scipy's cython_blas takes 32-bit integers (``blas_int``) for every
dimension, leading dimension and increment. A descriptor whose stride passes 2**31 - 1
elements is a legal padded layout over a buffer larger than 8 GiB (here a memory-mapped
sparse file, which costs nothing on disk), but BLAS cannot be handed that stride: OpenBLAS
printed ``parameter number 6 had an illegal value`` and skipped the product, or the stride
wrapped to a small leading dimension that BLAS accepted (a wrong result, or a write out of
place). Such an operand is now gathered, as a layout without a unit stride always was: a
weight or initial state copied, the input gathered into work rows, a gradient or dx written
through scratch. So every case below gives the results of the same values stored
compactly, for weights, inputs, outputs, states and gradients, forward and backward, and
BLAS prints nothing. What no gathering brings into range (the call's own sizes) is
refused before anything is written, naming the fields."""

import os
import sys

import numpy as np
import pytest

import bnnslstm as bl
from helpers import planner_mode
from reference import GATES, random_weights

FIELDS = dict(zip(GATES, ("input_gate", "forget_gate", "candidate_gate", "output_gate")))
STRIDE = 2**31 + 16   # elements: past the largest leading dimension a 32-bit BLAS takes
# two problems: batch and sizes up to 4 run the products as one gemv per sample or row
# (the strides reach BLAS as increments), larger ones as gemm (as leading dimensions)
SIZES = {"gemv": dict(T=3, B=2, I=3, H=2, L=2, D=2), "gemm": dict(T=2, B=5, I=5, H=5, L=2, D=2)}

pytestmark = pytest.mark.skipif(sys.maxsize < 2**40, reason="needs a 64-bit address space")


class SparseFiles:
    """Arrays over fresh memory-mapped sparse files in ``folder``: only the pages values
    are written to take disk space."""

    def __init__(self, folder):
        self.folder, self.made = folder, []

    def array(self, shape, steps, dtype):
        """A zero array of ``shape`` whose axes step ``steps`` elements, over its own file."""
        itemsize = np.dtype(dtype).itemsize
        span = 1 + sum((n - 1) * s for n, s in zip(shape, steps))
        path = self.folder / f"sparse{len(self.made)}.bin"
        with open(path, "wb") as f:
            f.truncate(span * itemsize)
        if self.allocated(path) is None or self.allocated(path) > 1 << 20:
            os.unlink(path)
            pytest.skip("needs a file system with sparse files")
        store = np.memmap(path, dtype, "r+", shape=(span,))
        self.made.append((path, store))
        return np.lib.stride_tricks.as_strided(store, shape, [s * itemsize for s in steps])

    def place(self, values, axis, stride, outer=()):
        """``values`` copied into a sparse array whose axis ``axis`` steps ``stride``
        elements: the axes of ``outer`` outside it, the others compact inside it (so one
        [H][X] matrix of a [L][D][H][X] tensor has the long row stride, not every axis)."""
        inner = [k for k in range(values.ndim) if k != axis and k not in outer]
        steps, step = [0] * values.ndim, 1
        for k in reversed(list(outer) + [axis] + inner):
            if k == axis:
                assert stride >= step
                step = stride
            steps[k] = step
            step *= values.shape[k]
        view = self.array(values.shape, steps, values.dtype)
        view[...] = values
        return view

    @staticmethod
    def allocated(path):
        """Bytes of disk the file takes (None where the platform does not say)."""
        blocks = getattr(os.stat(path), "st_blocks", None)
        return None if blocks is None else blocks * 512

    def remove(self):
        for path, _ in self.made:   # unlinked while still mapped: the views stay valid
            allocated = self.allocated(path)
            os.unlink(path)
            assert allocated < 1 << 24, f"{path}: {allocated} bytes allocated: written across"


@pytest.fixture
def sparse(tmp_path):
    files = SparseFiles(tmp_path)
    yield files
    files.remove()


def compact_arrays(sizes, dtype=np.float32):
    """Every array of one forward + backward (written ones NaN-filled), by field name."""
    T, B, I, H, L, D = (sizes[k] for k in "TBIHLD")
    rng = np.random.default_rng(19)
    w = random_weights(rng, I, H, L, D, peephole="full", dtype=dtype)

    def values(*shape):
        return rng.standard_normal(shape).astype(dtype)

    def written(*shape):
        return np.full(shape, np.nan, dtype)

    arrays = {"input_descriptor.data_desc": values(T, B, I),
              "input_descriptor.hidden_desc": values(L, D, B, H),
              "input_descriptor.cell_state_desc": values(L, D, B, H),
              "output_descriptor.data_desc": written(T, B, D * H),
              "output_descriptor.hidden_desc": written(L, D, B, H),
              "output_descriptor.cell_state_desc": written(L, D, B, H),
              "layer_delta_params.output_descriptor.data_desc": values(T, B, D * H),
              "layer_delta_params.output_descriptor.hidden_desc": values(L, D, B, H),
              "layer_delta_params.output_descriptor.cell_state_desc": values(L, D, B, H),
              "layer_delta_params.input_descriptor.data_desc": written(T, B, I),
              "layer_delta_params.input_descriptor.hidden_desc": written(L, D, B, H),
              "layer_delta_params.input_descriptor.cell_state_desc": written(L, D, B, H)}
    for gate, field in FIELDS.items():
        parts = {"iw_desc[0]": w["W"][gate][0], "iw_desc[1]": np.stack(w["W"][gate][1:]),
                 "hw_desc": w["U"][gate], "cw_desc": w["C"][gate], "b_desc": w["b"][gate]}
        for part, value in parts.items():
            arrays[f"{field}.{part}"] = value
            arrays[f"layer_delta_params.{field}.{part}"] = written(*value.shape)
    return arrays


WRITTEN = [name for name, value in compact_arrays(SIZES["gemv"]).items() if np.isnan(value).all()]


def run(arrays):
    """A forward with a training cache and a backward on ``arrays``; copies of what they wrote."""
    T, B, I = arrays["input_descriptor.data_desc"].shape
    L, D, _, H = arrays["input_descriptor.hidden_desc"].shape

    def desc(name, layout=None):
        return bl.NDArrayDescriptor.from_array(arrays[name], layout)

    def data(prefix):
        return bl.LSTMDataDescriptor(desc(prefix + ".data_desc", bl.DataLayout.SNE),
                                     desc(prefix + ".hidden_desc"),
                                     desc(prefix + ".cell_state_desc"))

    def gates(owner, prefix):
        for field in FIELDS.values():
            name = prefix + field
            setattr(owner, field, bl.LSTMGateDescriptor(
                iw_desc=(desc(name + ".iw_desc[0]"), desc(name + ".iw_desc[1]")),
                hw_desc=desc(name + ".hw_desc"),
                cw_desc=desc(name + ".cw_desc"), b_desc=desc(name + ".b_desc")))

    sizes = dict(input_size=I, hidden_size=H, batch_size=B, num_layers=L, seq_len=T,
                 lstm_flags=bl.LayerFlags.BIDIRECTIONAL | bl.LayerFlags.DEFAULT_ACTIVATIONS)
    params = bl.LayerParametersLSTM(**sizes, input_descriptor=data("input_descriptor"),
                                    output_descriptor=data("output_descriptor"))
    gates(params, "")
    delta = bl.LayerParametersLSTM(**sizes,
                                   input_descriptor=data("layer_delta_params.input_descriptor"),
                                   output_descriptor=data("layer_delta_params.output_descriptor"))
    gates(delta, "layer_delta_params.")
    cache = bytearray(bl.compute_lstm_training_cache_capacity(params))
    with planner_mode("heuristic"):  # one BLAS arrangement for both runs, nothing timed
        bl.direct_apply_lstm_batch_training_caching(params, training_cache=cache)
        bl.direct_apply_lstm_batch_backward(params, delta, training_cache=cache)
    return {name: np.array(arrays[name]) for name in WRITTEN}


def place(sparse, arrays, name, stride):
    """Put field ``name`` into a sparse file with its long stride: the batch of a [T][B][X]
    sequence (time outside it: the [T*B][X] rows BLAS reads or writes in place), the rows
    of a [D][H][I] or [L][D][H][X] weight matrix and of the [L][D][B][H] states' [B][H]
    matrices, the units of an [L][D][H] bias."""
    if name.endswith("data_desc"):
        arrays[name] = sparse.place(arrays[name], 1, stride, outer=(0,))
    else:
        arrays[name] = sparse.place(arrays[name], 1 if name.endswith("iw_desc[0]") else 2, stride)


def check_same(got, want, dtype):
    tolerance = 8 * np.finfo(dtype).eps
    for name in WRITTEN:
        assert not np.isnan(got[name]).any(), f"{name}: not every element written"
        np.testing.assert_allclose(got[name], want[name], rtol=tolerance, atol=tolerance,
                                   err_msg=name)


# data and states
CASES = [name for name in compact_arrays(SIZES["gemv"]) if "descriptor." in name]
# each kind of weight on one gate and its gradient on another: every gate's matrices are
# read (and written) by the same code, one gate at a time
CASES += ["input_gate.iw_desc[0]", "forget_gate.iw_desc[1]", "candidate_gate.hw_desc",
          "output_gate.cw_desc", "input_gate.b_desc",
          "layer_delta_params.output_gate.iw_desc[0]",
          "layer_delta_params.candidate_gate.iw_desc[1]", "layer_delta_params.forget_gate.hw_desc",
          "layer_delta_params.input_gate.cw_desc", "layer_delta_params.output_gate.b_desc"]


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("size", SIZES)
def test_a_stride_past_blas_int_gives_the_compact_result(size, name, sparse, capfd):
    want = run(compact_arrays(SIZES[size]))
    arrays = compact_arrays(SIZES[size])   # the same values, written ones NaN again
    capfd.readouterr()
    place(sparse, arrays, name, STRIDE)
    got = run(arrays)
    assert "illegal value" not in capfd.readouterr().err
    check_same(got, want, np.float32)   # a written field: read back from its sparse file


@pytest.mark.parametrize("stride", [2**31 - 1, 2**31])
@pytest.mark.parametrize("name", ["candidate_gate.hw_desc", "input_descriptor.data_desc",
                                  "input_descriptor.hidden_desc",
                                  "layer_delta_params.forget_gate.hw_desc",
                                  "layer_delta_params.input_descriptor.data_desc"])
def test_the_boundary(name, stride, sparse, capfd):
    """A leading dimension of INT_MAX and the first past it. Both are gathered now (a matrix
    of several vectors INT_MAX apart spans more than a C int, and OpenBLAS's SkylakeX
    small-matrix kernels index C as j * ldc in one: the in-place write of dL/dU with
    ldc = INT_MAX crashed there); the results are the compact ones either way."""
    want = run(compact_arrays(SIZES["gemm"]))
    arrays = compact_arrays(SIZES["gemm"])   # the same values, written ones NaN again
    capfd.readouterr()
    place(sparse, arrays, name, stride)
    got = run(arrays)
    assert "illegal value" not in capfd.readouterr().err
    check_same(got, want, np.float32)


def test_float64(sparse, capfd):
    """The same limit in elements for float64 (a 16 GiB step)."""
    want = run(compact_arrays(SIZES["gemm"], np.float64))
    arrays = compact_arrays(SIZES["gemm"], np.float64)   # the same values, written ones NaN again
    capfd.readouterr()
    for name in ("input_gate.hw_desc", "input_descriptor.data_desc",
                 "layer_delta_params.output_gate.hw_desc",
                 "layer_delta_params.input_descriptor.data_desc"):
        place(sparse, arrays, name, STRIDE)
    got = run(arrays)
    assert "illegal value" not in capfd.readouterr().err
    check_same(got, want, np.float64)


def test_every_field_at_once(sparse, capfd):
    """Every descriptor of both calls with its long stride, in the same calls."""
    want = run(compact_arrays(SIZES["gemm"]))
    arrays = compact_arrays(SIZES["gemm"])   # the same values, written ones NaN again
    capfd.readouterr()
    for name in list(arrays):
        place(sparse, arrays, name, STRIDE)
    got = run(arrays)
    assert "illegal value" not in capfd.readouterr().err
    check_same(got, want, np.float32)


def test_sizes_past_blas_int_are_refused_before_anything_is_written(sparse):
    """seq_len * batch_size rows of input_size: a size no gathering brings into BLAS's
    range (the products take the rows as one dimension). Refused, naming the fields, with
    the output untouched (its file holds no written block)."""
    I, H = 3, 2
    batch = 2**31 // I + 1
    x = sparse.array((1, batch, I), (batch * I, I, 1), np.float32)
    y = sparse.array((1, batch, H), (batch * H, H, 1), np.float32)
    params = bl.LayerParametersLSTM(
        input_size=I, hidden_size=H, batch_size=batch, num_layers=1, seq_len=1,
        lstm_flags=bl.LayerFlags.DEFAULT_ACTIVATIONS,
        input_descriptor=bl.LSTMDataDescriptor(
            bl.NDArrayDescriptor.from_array(x, bl.DataLayout.SNE)),
        output_descriptor=bl.LSTMDataDescriptor(
            bl.NDArrayDescriptor.from_array(y, bl.DataLayout.SNE)))
    w = random_weights(np.random.default_rng(0), I, H, 1, 1, dtype=np.float32)
    for gate, field in FIELDS.items():
        setattr(params, field, bl.LSTMGateDescriptor(
            iw_desc=(bl.NDArrayDescriptor.from_array(w["W"][gate][0]), None),
            hw_desc=bl.NDArrayDescriptor.from_array(w["U"][gate])))
    message = (rf"^seq_len \* batch_size \* width: 1\*{batch}\*{I} is too large for BLAS's "
               "32-bit sizes")
    with pytest.raises(bl.BNNSError, match=message):
        bl.direct_apply_lstm_batch_training_caching(params)
    with pytest.raises(bl.BNNSError, match=message):
        bl.compute_lstm_training_cache_capacity(params)
    assert SparseFiles.allocated(sparse.made[1][0]) == 0
