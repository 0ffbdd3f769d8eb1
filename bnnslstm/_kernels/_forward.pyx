"""Forward kernel of one LSTM layer (SPEC §4), both directions, without the GIL.

Memory (all C-contiguous, rows are (t, b) pairs, row = t*B + b):

    X       [T*B][X]        the layer's input (after dropout)
    W       [D*4H][X]       input weights, rows (direction, gate i/f/g/o, unit)
    bias    [D*4H]          zero for gates without a bias
    U       [D][4H][H]      recurrent weights
    Cdiag   [D][4][H]       diagonal peepholes (zero rows for other gates)
    Cifg    [D][3H][H]      full peepholes of gates i, f, g (zero blocks for other gates)
    Co      [D][H][H]       full peephole of the output gate
    G       [T*B][D*4H]     out: gate activations (first the input projection is put here)
    A       [T*B][D*4H]     out: gate pre-activations (only when store_preact)
    Cs, Hc  [T*B][D*H]      out: cell after each step, act_h of it
    Y       [T*B][D*H]      out: the layer's output, 0 at padded positions
    h, c    [D][B][H]       in: initial state, out: final state of each sample

Per step: one GEMM for the recurrent product (plus one per full peephole) on the rows
that are still active, then one fused elementwise pass.
"""

from cython cimport floating
from libc.string cimport memcpy, memset

from .activations cimport act_forward

cdef extern from "lstm_rows.h" nogil:
    void forward_rows_f(int rows, float *g, int ldg, float *a, float *c, float *cs, float *hc, float *y,
                        int ldy, float *h, const float *bias, const float *cdiag, int H, int part,
                        int threads)
    void forward_rows_d(int rows, double *g, int ldg, double *a, double *c, double *cs, double *hc,
                        double *y, int ldy, double *h, const double *bias, const double *cdiag, int H,
                        int part, int threads)
from cython.parallel cimport prange
from libc.stdlib cimport free, malloc

from .blas cimport allocate_packing, matmul, pack_panels_f, packed_gemm_nt_f, packed_rows_size, packed_size, step_gemm_nt

from .common cimport Acts, at2, at3, make_acts


cdef inline void default_rows(int rows, floating *g, int ldg, floating *a, floating *c, floating *cs,
                              floating *hc, floating *y, int ldy, floating *h, const floating *bias,
                              const floating *cdiag, int H, int part, int threads) noexcept nogil:
    """One step's rows with the default activations (lstm_rows.h): part 1, 2 or both (3)."""
    if floating is float:
        forward_rows_f(rows, g, ldg, a, c, cs, hc, y, ldy, h, bias, cdiag, H, part, threads)
    else:
        forward_rows_d(rows, g, ldg, a, c, cs, hc, y, ldy, h, bias, cdiag, H, part, threads)


cdef inline floating activate(const Acts *acts, int k, floating x) noexcept nogil:
    """Gate k's custom activation (the default ones run in lstm_rows.h)."""
    return act_forward(acts.fn[k], x, <floating>acts.alpha[k], <floating>acts.beta[k])


cdef void cell_row(floating *g, floating *a, floating *c, floating *cs,
                   const floating *bias, const floating *cdiag, int H,
                   const Acts *acts) noexcept nogil:
    """Gates i, f, g of one sample and its new cell: c' = f*c + i*g (c updated in place)."""
    cdef int j, k
    cdef floating x, c_prev
    cdef floating v[3]
    for j in range(H):
        c_prev = c[j]
        for k in range(3):
            x = g[k * H + j] + bias[k * H + j]
            if cdiag != NULL:
                x = x + cdiag[k * H + j] * c_prev
            if a != NULL:
                a[k * H + j] = x
            v[k] = activate(acts, k, x)
            g[k * H + j] = v[k]
        c[j] = v[1] * c_prev + v[0] * v[2]
        cs[j] = c[j]


cdef void output_row(floating *g, floating *a, const floating *c, floating *hc, floating *y,
                     floating *h, const floating *bias, const floating *cdiag, int H,
                     const Acts *acts) noexcept nogil:
    """Output gate (peeking at the new cell) and h' = o * act_h(c')."""
    cdef int j
    cdef floating x, o, t
    for j in range(H):
        x = g[3 * H + j] + bias[3 * H + j]
        if cdiag != NULL:
            x = x + cdiag[3 * H + j] * c[j]
        if a != NULL:
            a[3 * H + j] = x
        o = activate(acts, 3, x)
        g[3 * H + j] = o
        t = activate(acts, 4, c[j])
        hc[j] = t
        h[j] = o * t
        y[j] = h[j]


cdef void run_direction(int d, int T, int B, int H, int D,
                        floating *G, floating *A, floating *Cs, floating *Hc, floating *Y,
                        floating *h, floating *c, const floating *bias, const floating *U,
                        const floating *cdiag, const floating *cifg, const floating *co,
                        const int *batch_sizes, const Acts *acts, int threads,
                        const float *U_packed, float *rows_scratch) noexcept nogil:
    cdef int G4 = 4 * H, ldg = D * 4 * H, ldy = D * H
    cdef int s, t, b, bt
    cdef Py_ssize_t state
    cdef floating *g
    cdef floating *a
    cdef floating *row_a
    for s in range(T):
        t = s if d == 0 else T - 1 - s
        bt = batch_sizes[t]
        g = G + <Py_ssize_t>t * B * ldg + d * G4
        a = A + <Py_ssize_t>t * B * ldg + d * G4 if A != NULL else NULL
        if floating is float:
            if U_packed != NULL and bt > 2:
                packed_gemm_nt_f(bt, G4, H, h, H, U_packed, rows_scratch, g, ldg, threads)
            else:
                step_gemm_nt(bt, G4, H, h, H, U, H, g, ldg, threads)
        else:
            step_gemm_nt(bt, G4, H, h, H, U, H, g, ldg, threads)
        if cifg != NULL:
            step_gemm_nt(bt, 3 * H, H, c, H, cifg, H, g, ldg, threads)
        state = <Py_ssize_t>t * B * ldy + d * H  # row t*B of the [T*B][D*H] arrays, direction d
        if acts.default:  # the vectorised C rows, samples split over threads
            default_rows(bt, g, ldg, a, c, Cs + state, Hc + state, Y + state, ldy, h, bias, cdiag, H,
                         1 if co != NULL else 3, threads)
        else:
            for b in range(bt):
                row_a = a + <Py_ssize_t>b * ldg if a != NULL else NULL
                cell_row(g + <Py_ssize_t>b * ldg, row_a, c + b * H, Cs + state + b * ldy, bias, cdiag, H, acts)
                if co == NULL:
                    output_row(g + <Py_ssize_t>b * ldg, row_a, c + b * H, Hc + state + b * ldy,
                               Y + state + b * ldy, h + b * H, bias, cdiag, H, acts)
        if co != NULL:
            step_gemm_nt(bt, H, H, Cs + state, ldy, co, H, g + 3 * H, ldg, threads)
            if acts.default:
                default_rows(bt, g, ldg, a, c, Cs + state, Hc + state, Y + state, ldy, h, bias, cdiag, H,
                             2, threads)
            else:
                for b in range(bt):
                    row_a = a + <Py_ssize_t>b * ldg if a != NULL else NULL
                    output_row(g + <Py_ssize_t>b * ldg, row_a, c + b * H, Hc + state + b * ldy,
                               Y + state + b * ldy, h + b * H, bias, cdiag, H, acts)
        for b in range(bt, B):  # padded positions: outputs and cached values are 0
            memset(g + <Py_ssize_t>b * ldg, 0, G4 * sizeof(floating))
            if a != NULL:
                memset(a + <Py_ssize_t>b * ldg, 0, G4 * sizeof(floating))
            memset(Cs + (<Py_ssize_t>t * B + b) * ldy + d * H, 0, H * sizeof(floating))
            memset(Hc + (<Py_ssize_t>t * B + b) * ldy + d * H, 0, H * sizeof(floating))
            memset(Y + (<Py_ssize_t>t * B + b) * ldy + d * H, 0, H * sizeof(floating))


cdef int project(const floating *X, int width, const floating *W, floating *G, int ldg, int T, int B,
                 const int *batch_sizes, int threads) noexcept nogil:
    """G[t*B + b] = W x[t][b] for every active row, as one GEMM.

    With per-step batch sizes the active rows of the steps are gathered first, so that no
    work is spent on padded positions (their G rows are left as they are). Returns -1 if
    scratch memory could not be had."""
    cdef int t, rows = 0, failed
    cdef floating *Xc
    cdef floating *Gc
    for t in range(T):
        rows += batch_sizes[t]
    if rows == T * B:
        return matmul(False, True, T * B, ldg, width, X, width, W, width, False, G, ldg, threads)
    Xc = <floating*>malloc(<size_t>rows * width * sizeof(floating))
    Gc = <floating*>malloc(<size_t>rows * ldg * sizeof(floating))
    if Xc == NULL or Gc == NULL:
        free(Xc)
        free(Gc)
        return -1
    rows = 0
    for t in range(T):
        memcpy(Xc + <size_t>rows * width, X + <size_t>t * B * width, <size_t>batch_sizes[t] * width * sizeof(floating))
        rows += batch_sizes[t]
    failed = matmul(False, True, rows, ldg, width, Xc, width, W, width, False, Gc, ldg, threads)
    rows = 0
    for t in range(T):
        memcpy(G + <size_t>t * B * ldg, Gc + <size_t>rows * ldg, <size_t>batch_sizes[t] * ldg * sizeof(floating))
        rows += batch_sizes[t]
    free(Xc)
    free(Gc)
    return failed


def forward_layer(const floating[:, ::1] X, const floating[:, ::1] W, const floating[::1] bias,
                  const floating[:, :, ::1] U, const floating[:, :, ::1] Cdiag,
                  const floating[:, :, ::1] Cifg, const floating[:, :, ::1] Co,
                  floating[:, ::1] G, floating[:, ::1] A, floating[:, ::1] Cs,
                  floating[:, ::1] Hc, floating[:, ::1] Y,
                  floating[:, :, ::1] h, floating[:, :, ::1] c,
                  const int[::1] batch_sizes, const int[::1] fns, const double[::1] alphas,
                  const double[::1] betas, bint default_activations, int threads=1):
    """Run one layer, every step and both directions (shapes in the module docstring).

    Empty arrays (a zero extent) stand for absent peepholes and for ``A`` when the
    pre-activations are not stored. The caller has checked every shape.
    """
    cdef int T = batch_sizes.shape[0]
    cdef int B = h.shape[1], H = h.shape[2], D = h.shape[0], width = X.shape[1]
    cdef int d
    cdef Acts acts = make_acts(fns, alphas, betas, default_activations)
    cdef float *U_packed = NULL
    cdef float *rows_scratch = NULL
    cdef size_t per_direction = packed_size(4 * H, H), rows_per_direction = packed_rows_size(B, H)
    cdef int failed = 0, team, t, widest = 0
    for t in range(T):
        widest = max(widest, batch_sizes[t])
    # float32: the recurrent weights packed once for the whole sequence, when a step is wide
    # enough for the packed GEMM (one or two rows take the dot-product path)
    if floating is float and widest > 2:
        if allocate_packing(&U_packed, D * per_direction, &rows_scratch, D * rows_per_direction) < 0:
            raise MemoryError()
    try:
        with nogil:
            # input projection of every step and both directions: G = X W^T
            failed = project(&X[0, 0], width, &W[0, 0], &G[0, 0], D * 4 * H, T, B,
                             &batch_sizes[0], threads)
            if floating is float and U_packed != NULL:
                for d in range(D):
                    pack_panels_f(4 * H, H, &U[d, 0, 0], H, U_packed + d * per_direction, threads)
            # the two directions are independent: with two cores or more each runs on its own
            # half of the team, so no step pays for waking a thread team
            team = 2 if D == 2 and threads >= 2 else 1
            if team == 2:  # a parallel region here would serialise the kernels' own teams otherwise
                for d in prange(2, num_threads=2, schedule='static'):
                    run_direction(d, T, B, H, D, &G[0, 0], at2(A), &Cs[0, 0], &Hc[0, 0], &Y[0, 0],
                                  &h[d, 0, 0], &c[d, 0, 0], &bias[d * 4 * H], &U[d, 0, 0],
                                  at3(Cdiag, d), at3(Cifg, d), at3(Co, d), &batch_sizes[0], &acts,
                                  threads // team,
                                  U_packed + d * per_direction if U_packed != NULL else NULL,
                                  rows_scratch + d * rows_per_direction if rows_scratch != NULL else NULL)
            else:
                for d in range(D):
                    run_direction(d, T, B, H, D, &G[0, 0], at2(A), &Cs[0, 0], &Hc[0, 0], &Y[0, 0],
                                  &h[d, 0, 0], &c[d, 0, 0], &bias[d * 4 * H], &U[d, 0, 0],
                                  at3(Cdiag, d), at3(Cifg, d), at3(Co, d), &batch_sizes[0], &acts,
                                  threads // team,
                                  U_packed + d * per_direction if U_packed != NULL else NULL,
                                  rows_scratch + d * rows_per_direction if rows_scratch != NULL else NULL)
    finally:
        free(U_packed)
        free(rows_scratch)
    if failed:
        raise MemoryError()
