"""The tests' shared builders: one LSTM problem (:class:`Problem`: random weights, input and
states, their BNNS parameters and the references' results; :data:`FEATURES` and
:func:`random_problem` draw them for hypothesis; :func:`threaded_step` runs one large
enough for a thread team), the BNNS parameter sets of plain numpy arrays in the references'
weights dict (:func:`make_params`, :func:`make_delta`), the planner's modes, and a child
Python (:func:`run_python`)."""

import subprocess
import sys
from contextlib import contextmanager

import numpy as np
from hypothesis import strategies as st

import bnnslstm as bl
from reference import (
    GATES,
    batch_sizes_from_lengths,
    lengths_from_batch_sizes,
    lstm_forward,
    random_weights,
)
from reference_backward import lstm_backward

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


def make_delta(params, weights, *, dy=None, dh_n=None, dc_n=None, layout="SNE",
               flags=bl.NDArrayFlags.BACKPROP_SET, fill=0.0):
    """Delta parameters with fresh gradient arrays (filled with ``fill``): (delta, grads)."""
    x = params.input_descriptor.data_desc.to_numpy()
    if layout == "NSE":
        x = x.transpose(1, 0, 2)
    T, B, I = x.shape
    L, D, H = weights["U"]["input"].shape[:3]
    dtype = x.dtype
    grads = {"dx": np.full((T, B, I), fill, dtype), "dh0": np.full((L, D, B, H), fill, dtype),
             "dc0": np.full((L, D, B, H), fill, dtype), "W": {}, "U": {}, "C": {}, "b": {}}
    dx_store, dx_desc = sequence(grads["dx"], layout)
    # a view of what is written
    grads["dx"] = dx_store if layout == "SNE" else dx_store.transpose(1, 0, 2)
    dx_desc.flags = flags
    delta = bl.LayerParametersLSTM(
        input_size=I, hidden_size=H, batch_size=B, num_layers=L, seq_len=T,
        lstm_flags=params.lstm_flags)
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


class Problem:
    """One LSTM problem: random weights, input and initial states in the references' form,
    the BNNS parameters of a call on them, and the references' results.

    Everything is drawn from ``self.rng = np.random.default_rng(seed)``, in this order: the
    weights (``reference.random_weights(rng, I, H, L, D, peephole, bias, dtype)``, uniform in
    +-0.5), ``x`` [T][B][I] standard normal, then with ``states`` ``h0`` and ``c0``
    [L][D][B][H]; a test's further draws (dL/dy...) continue from ``self.rng``. ``lengths``
    (per sample, non-increasing, the first T) give the per-step batch sizes; ``dropout``
    acts between layers with ``dropout_seed``; ``activations`` maps "input", "forget",
    "candidate", "output", "hidden" to (function, alpha, beta) (None: the defaults).

    The arrays are attributes a test may change or replace (a finite difference moves one
    element of ``x``): :meth:`params` and the references read them when called.
    """

    def __init__(self, *, T=5, B=3, I=4, H=3, L=1, bidirectional=False, peephole=None, bias=True,
                 dtype=np.float64, states=False, lengths=None, layout="SNE", dropout=0.0,
                 dropout_seed=7, activations=None, seed=0):
        self.rng = np.random.default_rng(seed)
        self.T, self.B, self.I, self.H, self.L = T, B, I, H, L
        self.bidirectional, self.D = bidirectional, 2 if bidirectional else 1
        self.dtype, self.layout, self.lengths = np.dtype(dtype), layout, lengths
        self.dropout, self.dropout_seed, self.activations = dropout, dropout_seed, activations
        self.weights = random_weights(self.rng, I, H, L, self.D, peephole=peephole, bias=bias,
                                      dtype=dtype)
        self.x = self.rng.standard_normal((T, B, I)).astype(dtype)
        self.h0 = self.c0 = None
        if states:
            self.h0 = self.rng.standard_normal((L, self.D, B, H)).astype(dtype)
            self.c0 = self.rng.standard_normal((L, self.D, B, H)).astype(dtype)

    @property
    def batch_sizes(self):
        """The per-step batch sizes of ``lengths`` (None: every sample T steps)."""
        return None if self.lengths is None else batch_sizes_from_lengths(self.lengths, self.T)

    def params(self, outputs=True):
        """The forward's parameters with fresh outputs (NaN): ``(params, out)`` as
        :func:`make_params` returns them."""
        return make_params(self.x, self.weights, h0=self.h0, c0=self.c0,
                           batch_sizes=self.batch_sizes, bidirectional=self.bidirectional,
                           activations=self.activations, dropout=self.dropout,
                           seed=self.dropout_seed, layout=self.layout, outputs=outputs)

    def forward(self, cache=True, filter_params=None):
        """One forward call on fresh outputs, with a training cache of the capacity asked
        (or none): ``(params, out, cache)``."""
        params, out = self.params()
        training_cache = None
        if cache:
            training_cache = bytearray(bl.compute_lstm_training_cache_capacity(params))
        bl.direct_apply_lstm_batch_training_caching(params, filter_params,
                                                    training_cache=training_cache)
        return params, out, training_cache

    def backward(self, params, cache, filter_params=None, **delta):
        """The backward of ``params`` into fresh gradients (:func:`make_delta`'s, given
        ``dy``, ``dh_n``, ``dc_n``, ``flags``, ``fill``): ``(delta, grads)``."""
        delta, grads = make_delta(params, self.weights, layout=self.layout, **delta)
        bl.direct_apply_lstm_batch_backward(params, delta, filter_params, training_cache=cache)
        return delta, grads

    def y(self, out):
        """The forward's y as [T][B][D*H] (a view of what it wrote)."""
        return y_time_major(out, self.layout)

    def dropout_masks(self):
        """The masks dropout applies to each layer's input (None: none), from the kernels'
        own bl.dropout_mask."""
        if self.dropout == 0 or self.L == 1:
            return None
        masks = [None]
        for layer in range(1, self.L):
            mask = np.empty((self.T, self.B, self.D * self.H), self.dtype)
            bl.dropout_mask(self.dropout_seed, layer, self.dropout, mask)
            masks.append(mask.astype(np.float64))
        return masks

    def reference(self):
        """reference.lstm_forward on the problem as it is now: ``(y, h_n, c_n, trace)``."""
        return lstm_forward(self.x, self.weights, self.h0, self.c0, self.batch_sizes,
                            dropout_masks=self.dropout_masks(), activations=self.activations,
                            bidirectional=self.bidirectional)

    def reference_backward(self, dy=None, dh_n=None, dc_n=None):
        """reference_backward.lstm_backward on the problem as it is now."""
        return lstm_backward(self.x, self.weights, self.h0, self.c0, self.batch_sizes,
                             dropout_masks=self.dropout_masks(), activations=self.activations,
                             bidirectional=self.bidirectional, dy=dy, dh_n=dh_n, dc_n=dc_n)


#: a problem's features for hypothesis: small sizes, stacks, directions, layouts,
#: peepholes, biases, dropout, variable lengths, the seed of every draw
FEATURES = st.fixed_dictionaries({
    "T": st.integers(1, 5), "B": st.integers(1, 4), "I": st.integers(1, 5),
    "H": st.integers(1, 4), "L": st.integers(1, 3), "bidirectional": st.booleans(),
    "layout": st.sampled_from(["SNE", "NSE"]),
    "peephole": st.sampled_from([None, "diagonal", "full"]), "bias": st.booleans(),
    "dropout": st.sampled_from([0.0, 0.25]), "variable": st.booleans(),
    "seed": st.integers(0, 2**32 - 1),
})


def random_problem(f, dtype=np.float64):
    """The float64 :class:`Problem` of drawn :data:`FEATURES` ``f`` (its dropout seed the
    features' seed); with ``f["variable"]``, per-sample lengths drawn after the arrays."""
    problem = Problem(T=f["T"], B=f["B"], I=f["I"], H=f["H"], L=f["L"],
                      bidirectional=f["bidirectional"], peephole=f["peephole"], bias=f["bias"],
                      dtype=dtype, layout=f["layout"], dropout=f["dropout"],
                      dropout_seed=f["seed"], seed=f["seed"])
    lengths = sorted(problem.rng.integers(1, f["T"] + 1, size=f["B"]).tolist(), reverse=True)
    lengths[0] = f["T"]
    if f["variable"]:
        problem.lengths = lengths
    return problem


def threaded_step(dtype, n_threads, batch_sizes=None):
    """Forward + backward of a stacked bidirectional LSTM with every kind of peephole and
    dropout, large enough that the call's thread team really has ``n_threads`` threads;
    every output and gradient as one flat float64 array."""
    peephole = {"input": "full", "forget": "diagonal", "candidate": None, "output": "full"}
    # 4H = 200: GEMM slices of 16 rows with a partial last one
    lengths = None if batch_sizes is None else lengths_from_batch_sizes(batch_sizes)
    problem = Problem(T=6, B=16, I=70, H=50, L=2, bidirectional=True, peephole=peephole,
                      dtype=dtype, dropout=0.2, dropout_seed=5, seed=7, lengths=lengths)
    filter_params = bl.FilterParameters(n_threads=n_threads)
    params, out, cache = problem.forward(filter_params=filter_params)
    dy = problem.rng.standard_normal((6, 16, 100)).astype(dtype)
    _, grads = problem.backward(params, cache, filter_params, dy=dy)
    parts = [out["y_store"], out["h_n"], out["c_n"], grads["dx"], grads["dh0"], grads["dc0"]]
    parts += [grads[k][g] for k in ("U", "C", "b") for g in GATES if grads[k][g] is not None]
    parts += [w for g in GATES for w in grads["W"][g] if w is not None]
    return np.concatenate([np.ravel(p) for p in parts]).astype(np.float64)


def run_python(script, *args, cwd, env=None, timeout=300):
    """Run ``script`` in a child Python, from ``cwd`` (a directory outside the source tree,
    so that the child imports the same installed package as the tests, wherever pytest was
    started)."""
    return subprocess.run([sys.executable, "-c", script, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


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
