"""Backward kernel of one LSTM layer (SPEC §6), both directions, without the GIL.

Memory as in :mod:`._forward`; in addition:

    dY        [T*B][D*H]   dL/d(layer output); rows of padded positions are never read
    h0, c0    [D][B][H]    the layer's initial state
    dh, dc    [D][B][H]    in: dL/dh_T, dL/dc_T; out: dL/dh0, dL/dc0
    dG        [T*B][D*4H]  out: dL/d(gate pre-activations); must arrive zeroed
    dc_step   [D][B][H]    scratch (one per direction: they may run concurrently)

Per step (in reverse order of the forward): one fused elementwise pass for the output gate
and the cell gradient, one for gates i, f, g, then one GEMM for dL/dh of the previous step
(plus one per full peephole). The weight gradients are large GEMMs over all T*B rows, in
:func:`weight_gradients`, after the time loop.
"""

from cython cimport floating
from libc.string cimport memcpy

from .activations cimport act_derivative

cdef extern from "lstm_rows.h" nogil:
    void backward_rows_f(int rows, const float *g, int ldg, const float *hc, const float *dy, int ldy,
                         const float *dh, float *dc, float *dg, float *dc_step, const float *c_prev,
                         int n_prev, const float *c0, const float *cdiag, int H, int part, int threads)
    void backward_rows_d(int rows, const double *g, int ldg, const double *hc, const double *dy, int ldy,
                         const double *dh, double *dc, double *dg, double *dc_step, const double *c_prev,
                         int n_prev, const double *c0, const double *cdiag, int H, int part, int threads)
from cython.parallel cimport prange
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from .blas cimport allocate_packing, matmul, pack_panels_transposed_f, packed_gemm_nt_f, packed_rows_size, packed_size, step_gemm_nn

from .common cimport Acts, at2, at3, make_acts


cdef inline void default_rows(int rows, const floating *g, int ldg, const floating *hc,
                              const floating *dy, int ldy, const floating *dh, floating *dc,
                              floating *dg, floating *dc_step, const floating *c_prev, int n_prev,
                              const floating *c0, const floating *cdiag, int H, int part,
                              int threads) noexcept nogil:
    """One step's rows with the default activations (lstm_rows.h), part 1 or 2."""
    if floating is float:
        backward_rows_f(rows, g, ldg, hc, dy, ldy, dh, dc, dg, dc_step, c_prev, n_prev, c0, cdiag, H,
                        part, threads)
    else:
        backward_rows_d(rows, g, ldg, hc, dy, ldy, dh, dc, dg, dc_step, c_prev, n_prev, c0, cdiag, H,
                        part, threads)


cdef inline floating slope(const Acts *acts, int k, floating x, floating y) noexcept nogil:
    """Custom activation k's derivative at x, given y = act_k(x) (defaults run in lstm_rows.h)."""
    return act_derivative(acts.fn[k], x, y, <floating>acts.alpha[k], <floating>acts.beta[k])


cdef void output_pass(int t, int b, int H, int D, int B, const floating *G, const floating *A,
                      const floating *Cs, const floating *Hc, const floating *dY,
                      const floating *dh, const floating *dc, floating *dG, floating *dc_step,
                      const floating *cdiag, const Acts *acts) noexcept nogil:
    """dA_o and dL/dc' of one sample (the output gate peeks at the new cell)."""
    cdef Py_ssize_t gate_row = (<Py_ssize_t>t * B + b) * D * 4 * H
    cdef Py_ssize_t state_row = (<Py_ssize_t>t * B + b) * D * H
    cdef int j
    cdef floating grad_h, o, hc, c, da_o, x_o
    for j in range(H):
        grad_h = dY[state_row + j] + dh[b * H + j]
        o = G[gate_row + 3 * H + j]
        hc = Hc[state_row + j]
        c = Cs[state_row + j]
        x_o = A[gate_row + 3 * H + j]
        da_o = grad_h * hc * slope(acts, 3, x_o, o)
        dG[gate_row + 3 * H + j] = da_o
        dc_step[b * H + j] = dc[b * H + j] + grad_h * o * slope(acts, 4, c, hc)
        if cdiag != NULL:
            dc_step[b * H + j] += cdiag[3 * H + j] * da_o


cdef void cell_pass(int t, int b, int H, int D, int B, const floating *G, const floating *A,
                    const floating *c_prev, const floating *dc_step, floating *dG, floating *dc,
                    const floating *cdiag, const Acts *acts) noexcept nogil:
    """dA_i, dA_f, dA_g of one sample and dL/dc of the previous step."""
    cdef Py_ssize_t gate_row = (<Py_ssize_t>t * B + b) * D * 4 * H
    cdef int j
    cdef floating i, f, g, grad_c, da_i, da_f, da_g, carry
    for j in range(H):
        i = G[gate_row + j]
        f = G[gate_row + H + j]
        g = G[gate_row + 2 * H + j]
        grad_c = dc_step[b * H + j]
        da_i = grad_c * g * slope(acts, 0, A[gate_row + j], i)
        da_f = grad_c * c_prev[j] * slope(acts, 1, A[gate_row + H + j], f)
        da_g = grad_c * i * slope(acts, 2, A[gate_row + 2 * H + j], g)
        dG[gate_row + j] = da_i
        dG[gate_row + H + j] = da_f
        dG[gate_row + 2 * H + j] = da_g
        carry = grad_c * f
        if cdiag != NULL:
            carry = carry + cdiag[j] * da_i + cdiag[H + j] * da_f + cdiag[2 * H + j] * da_g
        dc[b * H + j] = carry


cdef void run_direction(int d, int T, int B, int H, int D,
                        const floating *G, const floating *A, const floating *Cs,
                        const floating *Hc, const floating *dY, const floating *c0,
                        floating *dh, floating *dc, floating *dG, floating *dc_step,
                        const floating *U, const floating *cdiag, const floating *cifg,
                        const floating *co, const int *batch_sizes, const Acts *acts,
                        int threads, const float *U_packed, float *rows_scratch) noexcept nogil:
    cdef int G4 = 4 * H, ldg = D * 4 * H, ldy = D * H
    cdef int s, t, b, bt, p, n_prev
    cdef Py_ssize_t dir_g = d * G4, dir_h = d * H, gate_rows, state_rows
    cdef const floating *prev_rows
    cdef const floating *c_prev
    cdef floating *dg
    for s in range(T):
        t = T - 1 - s if d == 0 else s
        bt = batch_sizes[t]
        dg = dG + <Py_ssize_t>t * B * ldg + dir_g
        gate_rows = <Py_ssize_t>t * B * ldg + dir_g
        state_rows = <Py_ssize_t>t * B * ldy + dir_h
        p = t - 1 if d == 0 else t + 1
        n_prev = batch_sizes[p] if 0 <= p < T else 0
        prev_rows = Cs + (<Py_ssize_t>p * B * ldy + dir_h if n_prev > 0 else 0)
        if acts.default:  # the vectorised C rows, samples split over threads
            default_rows(bt, G + gate_rows, ldg, Hc + state_rows, dY + state_rows, ldy, dh, dc,
                         dG + gate_rows, dc_step, prev_rows, n_prev, c0, cdiag, H, 1, threads)
        else:
            for b in range(bt):
                output_pass(t, b, H, D, B, G + dir_g, A + dir_g if A != NULL else NULL,
                            Cs + dir_h, Hc + dir_h, dY + dir_h, dh, dc, dG + dir_g, dc_step, cdiag, acts)
        if co != NULL:  # dL/dc' += dA_o Co
            step_gemm_nn(bt, H, H, dg + 3 * H, ldg, co, H, dc_step, H, True, threads)
        if acts.default:
            default_rows(bt, G + gate_rows, ldg, Hc + state_rows, dY + state_rows, ldy, dh, dc,
                         dG + gate_rows, dc_step, prev_rows, n_prev, c0, cdiag, H, 2, threads)
        else:
            for b in range(bt):
                c_prev = prev_rows + <Py_ssize_t>b * ldy if b < n_prev else c0 + <Py_ssize_t>b * H
                cell_pass(t, b, H, D, B, G + dir_g, A + dir_g if A != NULL else NULL,
                          c_prev, dc_step, dG + dir_g, dc, cdiag, acts)
        if cifg != NULL:  # dL/dc += [dA_i dA_f dA_g] Cifg
            step_gemm_nn(bt, H, 3 * H, dg, ldg, cifg, H, dc, H, True, threads)
        # dL/dh of the previous step: dA U (overwrites only the active rows)
        if floating is float:
            if U_packed != NULL:
                memset(dh, 0, <size_t>bt * H * sizeof(float))
                packed_gemm_nt_f(bt, H, G4, dg, ldg, U_packed, rows_scratch, dh, H, threads)
            else:
                step_gemm_nn(bt, H, G4, dg, ldg, U, H, dh, H, False, threads)
        else:
            step_gemm_nn(bt, H, G4, dg, ldg, U, H, dh, H, False, threads)


def backward_layer(const floating[:, :, ::1] U, const floating[:, :, ::1] Cdiag,
                   const floating[:, :, ::1] Cifg, const floating[:, :, ::1] Co,
                   floating[:, ::1] G, floating[:, ::1] A, floating[:, ::1] Cs,
                   floating[:, ::1] Hc, floating[:, ::1] dY, floating[:, :, ::1] c0,
                   floating[:, :, ::1] dh, floating[:, :, ::1] dc, floating[:, ::1] dG,
                   floating[:, :, ::1] dc_step,
                   const int[::1] batch_sizes, const int[::1] fns, const double[::1] alphas,
                   const double[::1] betas, bint default_activations, int threads=1):
    """Back-propagate through one layer's time loop, both directions; fills dG, dh, dc."""
    cdef int T = batch_sizes.shape[0]
    cdef int B = dh.shape[1], H = dh.shape[2], D = dh.shape[0]
    cdef int d
    cdef Acts acts = make_acts(fns, alphas, betas, default_activations)
    cdef float *U_packed = NULL
    cdef float *rows_scratch = NULL
    cdef size_t per_direction = packed_size(H, 4 * H), rows_per_direction = packed_rows_size(B, 4 * H)
    cdef int team
    if floating is float:  # float32: U packed once, read as [4H][H] for dL/dh = dA U
        if allocate_packing(&U_packed, D * per_direction, &rows_scratch, D * rows_per_direction) < 0:
            raise MemoryError()
    try:
        with nogil:
            if floating is float:
                for d in range(D):
                    pack_panels_transposed_f(H, 4 * H, &U[d, 0, 0], H, U_packed + d * per_direction, threads)
            team = 2 if D == 2 and threads >= 2 else 1  # the directions concurrently (see _forward)
            if team == 2:  # a parallel region here would serialise the kernels' own teams otherwise
                for d in prange(2, num_threads=2, schedule='static'):
                    run_direction(d, T, B, H, D, &G[0, 0], at2(A), &Cs[0, 0], &Hc[0, 0], &dY[0, 0],
                                  &c0[d, 0, 0], &dh[d, 0, 0], &dc[d, 0, 0], &dG[0, 0], &dc_step[d, 0, 0],
                                  &U[d, 0, 0], at3(Cdiag, d), at3(Cifg, d), at3(Co, d),
                                  &batch_sizes[0], &acts, threads // team,
                                  U_packed + d * per_direction if U_packed != NULL else NULL,
                                  rows_scratch + d * rows_per_direction if rows_scratch != NULL else NULL)
            else:
                for d in range(D):
                    run_direction(d, T, B, H, D, &G[0, 0], at2(A), &Cs[0, 0], &Hc[0, 0], &dY[0, 0],
                                  &c0[d, 0, 0], &dh[d, 0, 0], &dc[d, 0, 0], &dG[0, 0], &dc_step[d, 0, 0],
                                  &U[d, 0, 0], at3(Cdiag, d), at3(Cifg, d), at3(Co, d),
                                  &batch_sizes[0], &acts, threads // team,
                                  U_packed + d * per_direction if U_packed != NULL else NULL,
                                  rows_scratch + d * rows_per_direction if rows_scratch != NULL else NULL)
    finally:
        free(U_packed)
        free(rows_scratch)


cdef void previous_states(const floating *rows, int ld, const floating *initial, int d,
                          int T, int B, int H, const int *batch_sizes, floating *out) noexcept nogil:
    """out[t*B + b] = the state step t of direction d started from (rows of the layer's
    per-step states, or the initial state at each sample's first step)."""
    cdef int t, b, p
    for t in range(T):
        p = t - 1 if d == 0 else t + 1
        for b in range(B):
            if 0 <= p < T and b < batch_sizes[p]:
                memcpy(out + (<Py_ssize_t>t * B + b) * H, rows + (<Py_ssize_t>p * B + b) * ld, H * sizeof(floating))
            else:
                memcpy(out + (<Py_ssize_t>t * B + b) * H, initial + <Py_ssize_t>b * H, H * sizeof(floating))


def weight_gradients(const floating[:, ::1] X, const floating[:, ::1] W, floating[:, ::1] Y,
                     floating[:, ::1] Cs, const floating[:, :, ::1] h0, const floating[:, :, ::1] c0,
                     floating[:, ::1] dG, floating[:, ::1] scratch,
                     floating[:, ::1] dX, floating[:, ::1] dW, floating[::1] db,
                     floating[:, :, ::1] dU, floating[:, :, ::1] dCdiag,
                     floating[:, :, ::1] dCifg, floating[:, :, ::1] dCo,
                     const int[::1] batch_sizes, int threads=1):
    """Parameter and input gradients of one layer from dG, as GEMMs over all T*B rows.

    dX = dG W; dW = dG^T X; db = column sums of dG; dU[d] = dG_d^T H_prev;
    full peepholes dC = dG^T C_prev (the output gate: dG_o^T C); diagonal peepholes the
    column sums of dG * C_prev. Empty outputs are skipped. ``scratch`` is [T*B][H].
    Every output is overwritten.
    """
    cdef int T = batch_sizes.shape[0]
    cdef int D = h0.shape[0], B = h0.shape[1], H = h0.shape[2], width = X.shape[1]
    cdef int TB = T * B, G4 = 4 * H, ldg = D * 4 * H, ldy = D * H
    cdef int d, k, j, r
    cdef floating total
    cdef floating *prev
    cdef int failed = 0
    with nogil:
        if dX.shape[0] > 0:
            failed |= matmul(False, False, TB, width, D * G4, &dG[0, 0], ldg, &W[0, 0], width,
                             False, &dX[0, 0], width, threads)
        if dW.shape[0] > 0:
            failed |= matmul(True, False, D * G4, width, TB, &dG[0, 0], ldg, &X[0, 0], width,
                             False, &dW[0, 0], width, threads)
        if db.shape[0] > 0:
            for j in range(D * G4):
                db[j] = 0
            for r in range(TB):
                for j in range(D * G4):
                    db[j] += dG[r, j]
        prev = &scratch[0, 0]
        for d in range(D):
            if dU.shape[0] > 0:
                previous_states(&Y[0, d * H], ldy, &h0[d, 0, 0], d, T, B, H, &batch_sizes[0], prev)
                failed |= matmul(True, False, G4, H, TB, &dG[0, d * G4], ldg, prev, H,
                                 False, &dU[d, 0, 0], H, threads)
            if dCdiag.shape[0] > 0 or dCifg.shape[0] > 0:
                previous_states(&Cs[0, d * H], ldy, &c0[d, 0, 0], d, T, B, H, &batch_sizes[0], prev)
                if dCifg.shape[0] > 0:
                    failed |= matmul(True, False, 3 * H, H, TB, &dG[0, d * G4], ldg, prev, H,
                                     False, &dCifg[d, 0, 0], H, threads)
                if dCdiag.shape[0] > 0:
                    for k in range(3):
                        for j in range(H):
                            total = 0
                            for r in range(TB):
                                total = total + dG[r, d * G4 + k * H + j] * prev[<Py_ssize_t>r * H + j]
                            dCdiag[d, k, j] = total
            if dCo.shape[0] > 0:
                failed |= matmul(True, False, H, H, TB, &dG[0, d * G4 + 3 * H], ldg, &Cs[0, d * H], ldy,
                                 False, &dCo[d, 0, 0], H, threads)
            if dCdiag.shape[0] > 0:
                for j in range(H):
                    total = 0
                    for r in range(TB):
                        total = total + dG[r, d * G4 + 3 * H + j] * Cs[r, d * H + j]
                    dCdiag[d, 3, j] = total
    if failed:
        raise MemoryError()
