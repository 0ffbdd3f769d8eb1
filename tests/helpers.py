"""Build BNNS-style parameter sets from plain numpy arrays (the reference's weights dict)."""

from contextlib import contextmanager

import numpy as np

import bnnslstm as bl
from reference import GATES

GATE_FIELDS = dict(zip(GATES, ("input_gate", "forget_gate", "candidate_gate", "output_gate")))
DATA_TYPES = {np.dtype(np.float32): bl.DataType.FLOAT32, np.dtype(np.float64): bl.DataType.FLOAT64}


def desc(array, layout=None, flags=bl.NDArrayFlags.BACKPROP_SET):
    return None if array is None else bl.NDArrayDescriptor.from_array(array, layout, flags)


def sequence(array_tbx, layout):
    """A [T][B][X] array as an SNE descriptor, or transposed into a fresh NSE buffer."""
    if layout == "SNE":
        return array_tbx, desc(array_tbx, bl.DataLayout.SNE)
    nse = np.ascontiguousarray(array_tbx.transpose(1, 0, 2))
    return nse, desc(nse, bl.DataLayout.NSE)


def make_params(x, weights, *, h0=None, c0=None, batch_sizes=None, bidirectional=False,
                activations=None, dropout=0.0, seed=0, layout="SNE", outputs=True):
    """Parameters for a forward call, with fresh output arrays.

    Returns ``(params, out)`` where ``out`` holds the numpy arrays behind the output
    descriptors (``y`` as [T][B][D*H] time-major view, ``h_n``, ``c_n``).
    """
    T, B, I = x.shape
    L, D, H = weights["U"]["input"].shape[:3]
    dtype = x.dtype
    flags = bl.LayerFlags.BIDIRECTIONAL if bidirectional else 0
    if activations is None:
        flags |= bl.LayerFlags.DEFAULT_ACTIVATIONS
    params = bl.LayerParametersLSTM(
        input_size=I, hidden_size=H, batch_size=B, num_layers=L, seq_len=T,
        dropout=dropout, dropout_seed=seed, lstm_flags=flags,
        sequence_descriptor=None if batch_sizes is None else np.asarray(batch_sizes, np.int32),
    )
    _, x_desc = sequence(x, layout)
    params.input_descriptor = bl.LSTMDataDescriptor(x_desc, desc(h0), desc(c0))
    out = {}
    if outputs:
        y_store, y_desc = sequence(np.full((T, B, D * H), np.nan, dtype), layout)
        out["y_store"] = y_store
        out["h_n"] = np.full((L, D, B, H), np.nan, dtype)
        out["c_n"] = np.full((L, D, B, H), np.nan, dtype)
        params.output_descriptor = bl.LSTMDataDescriptor(y_desc, desc(out["h_n"]), desc(out["c_n"]))
    for gate, field in GATE_FIELDS.items():
        W = weights["W"][gate]
        g = bl.LSTMGateDescriptor(
            iw_desc=(desc(W[0]), desc(np.ascontiguousarray(np.stack(W[1:]))) if L > 1 else None),
            hw_desc=desc(weights["U"][gate]),
            cw_desc=desc(weights["C"][gate]),
            b_desc=desc(weights["b"][gate]),
        )
        if activations is not None:
            fn, alpha, beta = activations[gate]
            g.activation = bl.Activation(fn, alpha, beta)
        setattr(params, field, g)
    if activations is not None:
        fn, alpha, beta = activations["hidden"]
        params.hidden_activation = bl.Activation(fn, alpha, beta)
    return params, out


def y_time_major(out, layout):
    y = out["y_store"]
    return y if layout == "SNE" else y.transpose(1, 0, 2)


def make_delta(params, weights, *, dy=None, dh_n=None, dc_n=None, layout="SNE", flags=bl.NDArrayFlags.BACKPROP_SET,
               fill=0.0):
    """Delta parameters with fresh gradient arrays (filled with ``fill``); returns (delta, grads)."""
    x = params.input_descriptor.data_desc.to_numpy()
    if layout == "NSE":
        x = x.transpose(1, 0, 2)
    T, B, I = x.shape
    L, D, H = weights["U"]["input"].shape[:3]
    dtype = x.dtype
    grads = {"dx": np.full((T, B, I), fill, dtype), "dh0": np.full((L, D, B, H), fill, dtype),
             "dc0": np.full((L, D, B, H), fill, dtype), "W": {}, "U": {}, "C": {}, "b": {}}
    dx_store, dx_desc = sequence(grads["dx"], layout)
    grads["dx"] = dx_store if layout == "SNE" else dx_store.transpose(1, 0, 2)  # a view of what is written
    dx_desc.flags = flags
    delta = bl.LayerParametersLSTM(
        input_size=I, hidden_size=H, batch_size=B, num_layers=L, seq_len=T, lstm_flags=params.lstm_flags)
    delta.input_descriptor = bl.LSTMDataDescriptor(dx_desc, desc(grads["dh0"], flags=flags),
                                                   desc(grads["dc0"], flags=flags))
    dy_desc = None if dy is None else sequence(np.ascontiguousarray(dy), layout)[1]
    delta.output_descriptor = bl.LSTMDataDescriptor(dy_desc, desc(dh_n), desc(dc_n))
    for gate, field in GATE_FIELDS.items():
        W = weights["W"][gate]
        gW0 = np.full_like(W[0], fill)
        gW1 = np.full((L - 1,) + W[1].shape, fill, dtype) if L > 1 else None
        grads["W"][gate] = (gW0, gW1)
        grads["U"][gate] = np.full_like(weights["U"][gate], fill)
        C, b = weights["C"][gate], weights["b"][gate]
        grads["C"][gate] = None if C is None else np.full_like(C, fill)
        grads["b"][gate] = None if b is None else np.full_like(b, fill)
        setattr(delta, field, bl.LSTMGateDescriptor(
            iw_desc=(desc(gW0, flags=flags), desc(gW1, flags=flags)),
            hw_desc=desc(grads["U"][gate], flags=flags),
            cw_desc=desc(grads["C"][gate], flags=flags),
            b_desc=desc(grads["b"][gate], flags=flags)))
    return delta, grads


@contextmanager
def planner_mode(name):
    """The planner in mode ``name`` ("heuristic": one fixed BLAS arrangement, nothing timed)
    for the ``with`` block."""
    saved = bl.planner.mode()
    bl.planner.set_mode(name)
    try:
        yield
    finally:
        bl.planner.set_mode(saved)


def settle(calls, rounds=30):
    """Run every callable of ``calls`` until the planner has chosen an arrangement for each
    problem they time: from then on each call gives the same bits every time (while a
    problem is being tuned, its calls run the candidate arrangements in turn). What the
    planner measured before (other tests' problems) is forgotten first."""
    bl.planner.forget()
    for _ in range(rounds):
        for call in calls:
            call()
        if all(d["tuned"] or d["calls"] == 0 for d in bl.planner.decisions()):
            return
    raise AssertionError(f"the planner did not settle in {rounds} rounds: {bl.planner.decisions()}")
