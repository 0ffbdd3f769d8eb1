"""A plain-numpy LSTM backward, written from the equations (independent of bnnslstm).

The gradients of a loss linear in the outputs, sum(y dL/dy) + sum(h_T dL/dh_T) +
sum(c_T dL/dc_T), with respect to x, h0, c0 and every weight, by the chain rule through
the equations of :mod:`reference` taken backwards in time: at each step the gradient
reaching h' (from y and from the next step) gives do and, through act_h', dc'; the
output gate's peephole adds C_o^T da_o to dc'; then dc' gives df, di, dg and the
gradient to the previous cell (f * dc' plus the other peepholes' C_k^T da_k); the gate
gradients da_k = dk * act_k'(a_k) give dx_t = sum W_k^T da_k, dh = sum U_k^T da_k and the
weights' gradients (outer products with x_t, h, c, summed over steps and samples).
Padded steps pass the state's gradient through unchanged; dropout masks scale the
gradient of the layer's input like its value. Parameter gradients are sums, never
averages.

Back-propagation through time over the trace of :func:`reference.lstm_forward`: float64,
vectorised over the batch, a Python loop over layers, directions and steps. Checked against
central finite differences of the reference forward in test_reference_backward.py.
"""

import numpy as np

from reference import DEFAULTS, GATES, lengths_from_batch_sizes, lstm_forward
from reference_activations import numpy_activation, numpy_activation_derivative


def _derivative(activations, name, x):
    fn, alpha, beta = (activations or DEFAULTS)[name]
    return numpy_activation_derivative(fn, x, alpha, beta)


def _value(activations, name, x):
    fn, alpha, beta = (activations or DEFAULTS)[name]
    return numpy_activation(fn, x, alpha, beta)


def _peephole_back(C, da):
    """d(C c)/dc applied to da [B][H]: C^T da for a full C [H][H], C * da for a diagonal one."""
    if C is None:
        return 0.0
    return da @ C if C.ndim == 2 else da * C


def _peephole_grad(C, da, c):
    """dL/dC for a batch: sum_b da[b] c[b]^T (full) or sum_b da[b] * c[b] (diagonal)."""
    return da.T @ c if C.ndim == 2 else np.sum(da * c, axis=0)


def _zeros_like(a):
    """float64 zeros of ``a``'s shape (None for None)."""
    return None if a is None else np.zeros(np.shape(a))


def lstm_backward(x, weights, h0=None, c0=None, batch_sizes=None, dropout_masks=None,
                  activations=None, bidirectional=False, dy=None, dh_n=None, dc_n=None):
    """Every gradient of ``sum(y * dy) + sum(h_T * dh_n) + sum(c_T * dc_n)``.

    Arguments as :func:`reference.lstm_forward`, plus the output gradients (``None`` =
    zeros): ``dy`` [T][B][D*H] (ignored at padded positions), ``dh_n``, ``dc_n``
    [L][D][B][H]. Returns a dict: ``dx`` [T][B][I], ``dh0``, ``dc0`` [L][D][B][H], and per
    gate ``dW[gate]`` (a list over layers of [D][H][X_l]), ``dU[gate]`` [L][D][H][H],
    ``dC[gate]`` (the peephole's shape, or None), ``db[gate]`` [L][D][H] (or None).
    """
    x = np.asarray(x, dtype=np.float64)
    T, B, _ = x.shape
    L, D, H = weights["U"]["input"].shape[:3]
    _, _, _, trace = lstm_forward(x, weights, h0, c0, batch_sizes, dropout_masks, activations,
                                  bidirectional)
    lengths = [T] * B if batch_sizes is None else lengths_from_batch_sizes(batch_sizes)
    active = np.array([[t < n for n in lengths] for t in range(T)])  # [T][B]
    zeros_state = np.zeros((L, D, B, H))
    dh_n = zeros_state if dh_n is None else np.asarray(dh_n, dtype=np.float64)
    dc_n = zeros_state if dc_n is None else np.asarray(dc_n, dtype=np.float64)
    d_out = np.zeros((T, B, D * H)) if dy is None else np.array(dy, dtype=np.float64)
    d_out = np.where(active[:, :, None], d_out, 0.0)  # padded outputs are constants

    grads = {"dh0": np.zeros((L, D, B, H)), "dc0": np.zeros((L, D, B, H)),
             "dW": {g: [None] * L for g in GATES},
             "dU": {g: np.zeros(np.shape(weights["U"][g])) for g in GATES},
             "dC": {g: _zeros_like(weights["C"][g]) for g in GATES},
             "db": {g: _zeros_like(weights["b"][g]) for g in GATES}}
    for l in reversed(range(L)):
        layer_input = trace["layer_input", l]
        d_input = np.zeros_like(layer_input)
        for g in GATES:
            grads["dW"][g][l] = np.zeros((D, H, layer_input.shape[2]))
        for d in range(D):
            rec = trace[l, d]
            W = {g: np.asarray(weights["W"][g][l][d], dtype=np.float64) for g in GATES}
            U = {g: np.asarray(weights["U"][g][l, d], dtype=np.float64) for g in GATES}
            C = {g: None if weights["C"][g] is None else
                 np.asarray(weights["C"][g][l, d], dtype=np.float64) for g in GATES}
            h_init = np.zeros((B, H)) if h0 is None else np.asarray(h0[l, d], dtype=np.float64)
            c_init = np.zeros((B, H)) if c0 is None else np.asarray(c0[l, d], dtype=np.float64)
            order = list(range(T)) if d == 0 else list(range(T - 1, -1, -1))
            # the state each step started from: the previous active step's, else the initial one
            h_prev, c_prev = {}, {}
            h, c = h_init.copy(), c_init.copy()
            for t in order:
                h_prev[t], c_prev[t] = h.copy(), c.copy()
                keep = active[t][:, None]
                h = np.where(keep, rec["h"][t], h)
                c = np.where(keep, rec["c"][t], c)
            dh, dc = dh_n[l, d].copy(), dc_n[l, d].copy()
            dW = grads["dW"]
            for t in reversed(order):
                keep = active[t][:, None]
                pre = {g: rec["gates_pre"][t][:, k] for k, g in enumerate(GATES)}
                i, f, g_, o = (rec["gates"][t][:, k] for k in range(4))
                c_new = rec["c"][t]
                dh_total = dh + d_out[t][:, d * H:(d + 1) * H]
                act_c = _value(activations, "hidden", c_new)
                da = {"output": dh_total * act_c
                      * _derivative(activations, "output", pre["output"])}
                dc_total = dc + dh_total * o * _derivative(activations, "hidden", c_new)
                dc_total = dc_total + _peephole_back(C["output"], da["output"])
                da["input"] = dc_total * g_ * _derivative(activations, "input", pre["input"])
                da["forget"] = (dc_total * c_prev[t]
                                * _derivative(activations, "forget", pre["forget"]))
                da["candidate"] = (dc_total * i
                                   * _derivative(activations, "candidate", pre["candidate"]))
                # padded rows: no step taken
                da = {k: np.where(keep, v, 0.0) for k, v in da.items()}
                dc_step = dc_total * f + sum(_peephole_back(C[k], da[k])
                                             for k in ("input", "forget", "candidate"))
                dh_step = sum(da[k] @ U[k] for k in GATES)
                d_input[t][:, :] += sum(da[k] @ W[k] for k in GATES)
                for k in GATES:
                    dW[k][l][d] += da[k].T @ layer_input[t]
                    grads["dU"][k][l, d] += da[k].T @ h_prev[t]
                    if grads["db"][k] is not None:
                        grads["db"][k][l, d] += da[k].sum(axis=0)
                    if C[k] is not None:
                        peeked = c_new if k == "output" else c_prev[t]
                        grads["dC"][k][l, d] += _peephole_grad(C[k], da[k], peeked)
                dh = np.where(keep, dh_step, dh)
                dc = np.where(keep, dc_step, dc)
            grads["dh0"][l, d], grads["dc0"][l, d] = dh, dc
        if l > 0:
            if dropout_masks is not None and dropout_masks[l] is not None:
                d_input = d_input * dropout_masks[l]
            d_out = np.where(active[:, :, None], d_input, 0.0)
        else:
            grads["dx"] = d_input
    return grads
