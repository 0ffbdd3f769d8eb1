"""A plain-numpy LSTM forward, written from the equations (independent of bnnslstm).

For layer l, direction d and step t, with the layer's input x_t and the previous step's
state h, c (h0, c0 at the first, zeros when absent), each gate k of i, f, g, o has the
pre-activation a_k = W_k x_t + U_k h + C_k c + b_k, where the peephole C_k is a matrix
(C c) or a diagonal (C * c) or absent, and the bias b_k may be absent; then
i, f, g = act_i(a_i), act_f(a_f), act_g(a_g), the new cell c' = f * c + i * g, the
output gate peeks at the new cell (a_o uses C_o c'), o = act_o(a_o) and h' = o * act_h(c')
(sigmoid for i, f, o and tanh for g and act_h unless other elementwise functions are
given). Direction 0 runs t = 0..T-1, direction 1 t = T-1..0; y[t] holds both directions'
h after reading x[t]; layer l > 0 reads layer l-1's y, times its dropout mask. With
per-step batch sizes, sample b advances only for its first len_b steps (its reverse
direction starts at len_b - 1), its y is 0 after them and its final state is the one
after its own last step.

Vectorised over the batch, a Python loop over time: slow and obvious on purpose. The
library's forward is tested against it, and its own sanity against hand computations and
PyTorch in test_reference.py.
"""

import numpy as np

from reference_activations import numpy_activation

GATES = ("input", "forget", "candidate", "output")  # i, f, g, o
SIGMOID, TANH = 3, 4
DEFAULTS = {"input": (SIGMOID, 0, 0), "forget": (SIGMOID, 0, 0), "candidate": (TANH, 0, 0),
            "output": (SIGMOID, 0, 0), "hidden": (TANH, 0, 0)}


def lengths_from_batch_sizes(batch_sizes):
    """Each sample's length: #{t : batch_sizes[t] > b}."""
    batch_sizes = np.asarray(batch_sizes)
    return [int(np.sum(batch_sizes > b)) for b in range(int(batch_sizes[0]))]


def batch_sizes_from_lengths(lengths, T):
    """Packed-sequence batch sizes for lengths sorted non-increasing (lengths[0] == T)."""
    lengths = list(lengths)
    if lengths != sorted(lengths, reverse=True):
        raise ValueError("lengths must be sorted non-increasing")
    return [sum(1 for n in lengths if n > t) for t in range(T)]


def random_weights(rng, I, H, L, D, peephole=None, bias=True, dtype=np.float64, scale=0.5):
    """Random weights as ``lstm_forward`` reads them.

    ``peephole`` is None, "diagonal", "full" or a dict gate -> one of those; ``bias`` a
    bool or a dict gate -> bool.
    """
    def uniform(*shape):
        return rng.uniform(-scale, scale, shape).astype(dtype)

    weights = {"W": {}, "U": {}, "C": {}, "b": {}}
    for gate in GATES:
        weights["W"][gate] = [uniform(D, H, I if layer == 0 else D * H) for layer in range(L)]
        weights["U"][gate] = uniform(L, D, H, H)
        kind = peephole.get(gate) if isinstance(peephole, dict) else peephole
        weights["C"][gate] = {None: lambda: None, "diagonal": lambda: uniform(L, D, H),
                              "full": lambda: uniform(L, D, H, H)}[kind]()
        has_bias = bias.get(gate, False) if isinstance(bias, dict) else bias
        weights["b"][gate] = uniform(L, D, H) if has_bias else None
    return weights


def _act(activations, name, x):
    fn, alpha, beta = (activations or DEFAULTS)[name]
    return numpy_activation(fn, x, alpha, beta)


def _peephole(C, c):
    """C c for a batch of cells c [B][H]: full [H][H] matrix or diagonal [H]."""
    if C is None:
        return 0.0
    return c @ C.T if C.ndim == 2 else c * C


def lstm_forward(x, weights, h0=None, c0=None, batch_sizes=None, dropout_masks=None,
                 activations=None, bidirectional=False):
    """Run the LSTM of the equations above on time-major ``x`` [T][B][I].

    Returns ``y`` [T][B][D*H], ``h_T`` and ``c_T`` [L][D][B][H], and ``trace``:
    ``trace[l, d]`` holds ``gates_pre`` and ``gates`` [T][B][4][H] (i, f, g, o), ``c`` and
    ``h`` [T][B][H] (0 at padded positions); ``trace["layer_input", l]`` is layer l's input.
    """
    x = np.asarray(x, dtype=np.float64)
    T, B, _ = x.shape
    L, D, H = weights["U"]["input"].shape[:3]
    assert D == (2 if bidirectional else 1)
    lengths = [T] * B if batch_sizes is None else lengths_from_batch_sizes(batch_sizes)
    h_T = np.zeros((L, D, B, H))
    c_T = np.zeros((L, D, B, H))
    trace = {}
    layer_input = x
    for l in range(L):
        if l > 0 and dropout_masks is not None and dropout_masks[l] is not None:
            layer_input = layer_input * dropout_masks[l]
        trace["layer_input", l] = layer_input
        output = np.zeros((T, B, D * H))
        for d in range(D):
            W = {g: weights["W"][g][l][d] for g in GATES}
            U = {g: weights["U"][g][l, d] for g in GATES}
            C = {g: None if weights["C"][g] is None else weights["C"][g][l, d] for g in GATES}
            b = {g: 0.0 if weights["b"][g] is None else weights["b"][g][l, d] for g in GATES}
            h = np.zeros((B, H)) if h0 is None else np.array(h0[l, d], dtype=np.float64)
            c = np.zeros((B, H)) if c0 is None else np.array(c0[l, d], dtype=np.float64)
            rec = {"gates_pre": np.zeros((T, B, 4, H)), "gates": np.zeros((T, B, 4, H)),
                   "c": np.zeros((T, B, H)), "h": np.zeros((T, B, H))}
            for t in (range(T) if d == 0 else range(T - 1, -1, -1)):
                active = np.array([t < n for n in lengths])
                xt = layer_input[t]
                pre = {g: xt @ W[g].T + h @ U[g].T + b[g] for g in GATES}
                for g in ("input", "forget", "candidate"):
                    pre[g] = pre[g] + _peephole(C[g], c)
                i = _act(activations, "input", pre["input"])
                f = _act(activations, "forget", pre["forget"])
                g_ = _act(activations, "candidate", pre["candidate"])
                c_new = f * c + i * g_
                # the output gate peeks at the new cell
                pre["output"] = pre["output"] + _peephole(C["output"], c_new)
                o = _act(activations, "output", pre["output"])
                h_new = o * _act(activations, "hidden", c_new)
                keep = active[:, None]
                h = np.where(keep, h_new, h)
                c = np.where(keep, c_new, c)
                rec["gates_pre"][t] = np.where(keep[:, None],
                                               np.stack([pre[g] for g in GATES], axis=1), 0)
                rec["gates"][t] = np.where(keep[:, None], np.stack([i, f, g_, o], axis=1), 0)
                rec["c"][t] = np.where(keep, c_new, 0)
                rec["h"][t] = np.where(keep, h_new, 0)
                output[t, :, d * H:(d + 1) * H] = rec["h"][t]
            h_T[l, d], c_T[l, d] = h, c
            trace[l, d] = rec
        layer_input = output
    return layer_input, h_T, c_T, trace
