# The kernels' body, included by _lstm.pyx (portable build) and _lstm_avx2.pyx (AVX2 and FMA).


from cython cimport floating
from libc.stdint cimport uint64_t
from libc.string cimport memset

from ._activations cimport activate, slope
from ._blas cimport Mat, addressable, block, gemm, gemm_as, mat, transposed
from ._call cimport Arrangement, Call, Direction, Gate, Layer, Seq, Vec
from ._dropout cimport layer_key, sample_key, unit_scale

cdef extern from "_team.h" nogil:
    ctypedef void (*team_job)(void *arg, int tid) noexcept nogil
    void team_run(team_job fn, void *arg, int *team)
    void team_barrier(int *state, int team)
    double team_clock()
    int team_workers()
    void team_refuse_threads(int refuse)
    int blas_timing "team_blas_timing"
    double blas_seconds "team_blas_seconds"[]
    double blas_flops "team_blas_flops"[]
    int TEAM_MAX

cdef enum:
    CHUNK = 128     # hidden units per elementwise chunk (the chunk's arrays stay in L1;
                    # the loops stepping by it write the literal: range() needs one)
    GRAIN = 16      # GEMM slices start on multiples of this many rows/columns


# ---------------------------------------------------------------------------------- helpers
cdef inline void share(Py_ssize_t n, int team, int tid, Py_ssize_t grain, Py_ssize_t *lo,
                       Py_ssize_t *hi) noexcept nogil:
    """Thread tid's part [lo, hi) of range(n): near-equal, starting on multiples of grain."""
    lo[0] = (n * tid // team) // grain * grain
    hi[0] = n if tid == team - 1 else (n * (tid + 1) // team) // grain * grain


cdef inline Py_ssize_t overlap(Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t a, Py_ssize_t b,
                               Py_ssize_t *start) noexcept nogil:
    """The part of [lo, hi) inside [a, b), as (start - a, count)."""
    cdef Py_ssize_t s = lo if lo > a else a
    cdef Py_ssize_t e = hi if hi < b else b
    start[0] = s - a
    return e - s if e > s else 0


cdef inline floating* at(char *base, Py_ssize_t offset, floating *typ) noexcept nogil:
    """base + offset elements (NULL stays NULL)."""
    return NULL if base == NULL else <floating*>base + offset


cdef inline int previous(const Call *c, int d, int t) noexcept nogil:
    """The step direction d ran just before t (-1 or T: none)."""
    return t - 1 if d == 0 else t + 1


cdef inline int n_previous(const Call *c, int d, int t) noexcept nogil:
    """How many of step t's samples carry a state from the previous step (the others start
    from the initial state: with per-step batch sizes, direction 1 picks samples up as it
    goes back in time)."""
    cdef int p = previous(c, d, t)
    if p < 0 or p >= c.T:
        return 0
    return c.bs[p] if c.bs[p] < c.bs[t] else c.bs[t]


cdef inline int step_time(const Call *c, int d, int s) noexcept nogil:
    return s if d == 0 else c.T - 1 - s


cdef void store(floating *typ, Mat src, Mat dst, bint accumulate) noexcept nogil:
    """dst (+)= src elementwise, at any strides (for outputs BLAS cannot address)."""
    cdef Py_ssize_t i, j
    cdef floating *e
    cdef floating v
    for i in range(dst.rows):
        for j in range(dst.cols):
            v = (<floating*>src.p)[i * src.rs + j * src.cs]
            e = <floating*>dst.p + i * dst.rs + j * dst.cs
            e[0] = e[0] + v if accumulate else v


cdef void gemm_into(floating *typ, Call *c, int tid, Mat a, Mat b, bint accumulate, Mat dst) noexcept nogil:
    """dst (+)= A B; through the thread's part of scratch_grad when BLAS cannot write dst
    in place."""
    cdef Mat tmp
    if addressable(dst):
        gemm(<floating>1, a, b, <floating>(1 if accumulate else 0), dst)
    else:
        tmp = mat(c.scratch_grad + tid * c.grad_stride * sizeof(floating), dst.rows, dst.cols, dst.cols, 1)
        gemm(<floating>1, a, b, <floating>0, tmp)
        store(typ, tmp, dst, accumulate)


# ---------------------------------------------------------------------------------- input
cdef Mat layer_input(floating *typ, Call *c, int l) noexcept nogil:
    """Layer l's input as [rows][X] in work-row order (see prepare_input)."""
    cdef Py_ssize_t DH = c.D * c.H
    if l == 0:
        if c.x_rows.p != NULL:
            return c.x_rows
        return mat(c.scratch_x, c.rows, c.In, c.In, 1)
    if c.dropout == 0 and c.rows == <Py_ssize_t>c.T * c.B:
        return mat(c.layer[l - 1].out, c.rows, DH, DH, 1)
    return mat(c.scratch_in, c.rows, DH, DH, 1)


cdef void prepare_input(floating *typ, Call *c, int l, int tid, bint make_mask) noexcept nogil:
    """Gather (and mask) layer l's input into work rows where it is not read in place:
    x when BLAS cannot read it as one matrix, a lower layer's output after dropout or with
    per-step batch sizes. make_mask also writes the dropout mask region (forward)."""
    cdef Py_ssize_t t0, t1, t, b, e, DH = c.D * c.H
    cdef floating *dst
    cdef floating *src
    cdef floating *m
    cdef uint64_t key, sample
    cdef double keep
    share(c.T, c.team, tid, 1, &t0, &t1)
    if l == 0:
        if c.x_rows.p != NULL:
            return
        for t in range(t0, t1):
            for b in range(c.bs[t]):
                dst = <floating*>c.scratch_x + (c.start[t] + b) * c.In
                src = <floating*>c.x.p + t * c.x.st + b * c.x.sb
                for e in range(c.In):
                    dst[e] = src[e * c.x.se]
        team_barrier(c.barrier, c.team)
        return
    if c.dropout == 0 and c.rows == <Py_ssize_t>c.T * c.B:
        return
    keep = 1.0 / (1.0 - c.dropout)
    key = layer_key(c.seed, l)
    for t in range(t0, t1):
        for b in range(c.B):
            m = at(c.layer[l].mask, (t * c.B + b) * DH, typ)
            if make_mask and m != NULL:  # every position, padded ones too (as dropout_mask)
                sample = sample_key(key, t, b)
                for e in range(DH):
                    m[e] = <floating>unit_scale(sample, e, c.dropout, keep)
            if b >= c.bs[t]:
                continue
            src = <floating*>c.layer[l - 1].out + (t * c.B + b) * DH
            dst = <floating*>c.scratch_in + (c.start[t] + b) * DH
            if m != NULL:
                for e in range(DH):
                    dst[e] = src[e] * m[e]
            else:
                for e in range(DH):
                    dst[e] = src[e]
    team_barrier(c.barrier, c.team)


# ---------------------------------------------------------------------------------- forward
cdef void project(floating *typ, Call *c, int l, int tid) noexcept nogil:
    """The input projection of every step and both directions, in work rows:
    proj[rows][D*4H] = input W^T. The team splits the larger of the two dimensions, so that
    the operand every thread packs whole (BLAS packs both) is the smaller one."""
    cdef Layer *lay = &c.layer[l]
    cdef Py_ssize_t H = c.H, G = 4 * c.H, DG = c.D * 4 * c.H, c0, c1, r0, r1, j, n
    cdef Mat inp = layer_input(typ, c, l)
    cdef Mat proj = mat(projection(c, l), c.rows, DG, DG, 1)
    cdef int d, k
    if c.rows > DG:  # the thread's rows, every column
        share(c.rows, c.team, tid, GRAIN, &r0, &r1)
        c0, c1 = 0, DG
    else:  # every row, the thread's columns
        r0, r1 = 0, c.rows
        share(DG, c.team, tid, GRAIN, &c0, &c1)
    if r1 <= r0 or c1 <= c0:
        return
    inp = block(inp, r0, 0, r1 - r0, lay.X, sizeof(floating))
    proj = block(proj, r0, 0, r1 - r0, DG, sizeof(floating))
    if lay.W4.p != NULL:
        gemm(<floating>1, inp, transposed(block(lay.W4, c0, 0, c1 - c0, lay.X, sizeof(floating))),
             <floating>0, block(proj, 0, c0, r1 - r0, c1 - c0, sizeof(floating)))
        return
    for d in range(c.D):
        for k in range(4):
            n = overlap(c0, c1, d * G + k * H, d * G + (k + 1) * H, &j)
            if n > 0:
                gemm(<floating>1, inp, transposed(block(lay.d[d].g[k].W, j, 0, n, lay.X, sizeof(floating))),
                     <floating>0, block(proj, 0, d * G + k * H + j, r1 - r0, n, sizeof(floating)))


cdef inline char* projection(const Call *c, int l) noexcept nogil:
    """Where layer l's input projection lies: the gates region itself when the work rows
    are the cache's rows (every step full), else scratch (active rows only)."""
    return c.layer[l].gates if c.rows == <Py_ssize_t>c.T * c.B else c.scratch_dG


cdef void step_products(floating *typ, Call *c, int l, int s, Py_ssize_t r0, Py_ssize_t r1,
                        bint output_peephole, const Arrangement *a) noexcept nogil:
    """Rows [r0, r1) of step s's products S[D*4H][B]: U h_prev^T, plus the full peepholes of
    gates i, f, g times c_prev^T; with output_peephole, instead add the output gate's full
    peephole times the new cell. Where S lies and how BLAS is called: the arrangement
    (Arrangement in _call.pxd: S in scratch_S batch-fastest, or added into the step's
    projection rows; h_prev in place or from scratch_hT; chunks; gemm or gemv)."""
    cdef Layer *lay = &c.layer[l]
    cdef Direction *dr
    cdef Py_ssize_t H = c.H, G = 4 * c.H, DH = c.D * c.H, DG = c.D * 4 * c.H, B = c.B, j, n, lo, hi
    cdef int d, k, t, p, bt, n_prev
    cdef bint into = a.form & 2 != 0
    cdef Mat S, h_prev, c_prev, h_init, c_init, cell
    for d in range(c.D):
        n = overlap(r0, r1, d * G, (d + 1) * G, &lo)
        if n == 0:
            continue
        hi = lo + n
        dr = &lay.d[d]
        t = step_time(c, d, s)
        p = previous(c, d, t)
        bt = c.bs[t]
        n_prev = n_previous(c, d, t)
        if into:  # the projection's rows of step t, seen as [G][bt] (unit stride down a column)
            S = mat(projection(c, l) + (c.start[t] * DG + d * G) * sizeof(floating), G, bt, 1, DG)
        else:
            S = mat(c.scratch_S + d * G * B * sizeof(floating), G, bt, B, 1)
        if a.form & 1:
            h_prev = mat(c.scratch_hT + d * H * B * sizeof(floating), n_prev, H, 1, B)
        else:
            h_prev = mat(lay.out + (p * B * DH + d * H) * sizeof(floating), n_prev, H, DH, 1)
        c_prev = mat(lay.cells + (p * B * DH + d * H) * sizeof(floating), n_prev, H, DH, 1)
        h_init = block(dr.h0, n_prev, 0, bt - n_prev, H, sizeof(floating))
        c_init = block(dr.c0, n_prev, 0, bt - n_prev, H, sizeof(floating))
        if output_peephole:
            n = overlap(lo, hi, 3 * H, G, &j)
            if n > 0 and dr.g[3].C.p != NULL:
                cell = mat(lay.cells + (t * B * DH + d * H) * sizeof(floating), bt, H, DH, 1)
                gemm_as(a.by_vectors, <floating>1, block(dr.g[3].C, j, 0, n, H, sizeof(floating)),
                        transposed(cell), <floating>1, block(S, 3 * H + j, 0, n, bt, sizeof(floating)))
            continue
        if dr.U4.p != NULL:
            product(typ, a, block(dr.U4, lo, 0, hi - lo, H, sizeof(floating)), h_prev, h_init,
                    block(S, lo, 0, hi - lo, bt, sizeof(floating)), into)
        for k in range(4):
            n = overlap(lo, hi, k * H, (k + 1) * H, &j)
            if n == 0:
                continue
            if dr.U4.p == NULL:
                product(typ, a, block(dr.g[k].U, j, 0, n, H, sizeof(floating)), h_prev, h_init,
                        block(S, k * H + j, 0, n, bt, sizeof(floating)), into)
            if k < 3 and dr.g[k].C.p != NULL:
                product(typ, a, block(dr.g[k].C, j, 0, n, H, sizeof(floating)), c_prev, c_init,
                        block(S, k * H + j, 0, n, bt, sizeof(floating)), True)


cdef void product(floating *typ, const Arrangement *a, Mat weights, Mat carried, Mat initial,
                  Mat S, bint accumulate) noexcept nogil:
    """S (+)= weights [carried; initial]^T: the first samples' states come from the previous
    step, the rest from the initial state (zeros when it is absent); a.chunk rows of the
    weights per BLAS call."""
    cdef Py_ssize_t n_prev = carried.rows, r = 0, n, i
    cdef Py_ssize_t chunk = a.chunk if a.chunk > 0 else weights.rows
    cdef Mat w, part, rest
    while r < weights.rows:
        n = weights.rows - r if weights.rows - r < chunk else chunk
        w = block(weights, r, 0, n, weights.cols, sizeof(floating))
        part = block(S, r, 0, n, S.cols, sizeof(floating))
        gemm_as(a.by_vectors, <floating>1, w, transposed(carried), <floating>(1 if accumulate else 0),
                block(part, 0, 0, n, n_prev, sizeof(floating)))
        if part.cols > n_prev:
            rest = block(part, 0, n_prev, n, part.cols - n_prev, sizeof(floating))
            if initial.p != NULL:
                gemm_as(a.by_vectors, <floating>1, w, transposed(initial),
                        <floating>(1 if accumulate else 0), rest)
            elif not accumulate:
                for i in range(rest.rows):
                    memset(rest.p + i * rest.rs * sizeof(floating), 0, rest.cols * sizeof(floating))
        r += n


cdef void step_cells(floating *typ, Call *c, int l, int s, Py_ssize_t u0, Py_ssize_t u1,
                     int part, const Arrangement *a, bint write_hT) noexcept nogil:
    """The fused elementwise pass of step s on hidden units [u0, u1) of the D*H (part 1:
    gates i, f, g and the cell; part 2: output gate and h; 3: both). The step's products
    are in scratch_S, or already in the projection (form bit 2); write_hT also stores h
    batch-fastest in scratch_hT for the next step's products (form bit 1)."""
    cdef Layer *lay = &c.layer[l]
    cdef Direction *dr
    cdef Py_ssize_t H = c.H, G = 4 * c.H, DH = c.D * c.H, DG = c.D * 4 * c.H, B = c.B
    cdef Py_ssize_t j0, j, n, m, row, wrow, cps
    cdef int d, t, p, bt, n_prev, b
    cdef bint last = l == c.L - 1 and c.y.p != NULL
    cdef floating *c_prev
    cdef floating *y
    cdef floating *hT
    cdef char *proj = projection(c, l)
    cdef bint products_apart = a.form & 2 == 0
    for d in range(c.D):
        n = overlap(u0, u1, d * H, (d + 1) * H, &j0)
        if n == 0:
            continue
        dr = &lay.d[d]
        t = step_time(c, d, s)
        p = previous(c, d, t)
        bt = c.bs[t]
        n_prev = n_previous(c, d, t)
        for b in range(bt):
            row = t * B + b
            wrow = c.start[t] + b
            if b < n_prev:
                c_prev = <floating*>lay.cells + (p * B + b) * DH + d * H
                cps = 1
            elif dr.c0.p != NULL:
                c_prev = <floating*>dr.c0.p + b * dr.c0.rs
                cps = dr.c0.cs
            else:
                c_prev = NULL
                cps = 0
            y = NULL
            if last:
                y = <floating*>c.y.p + t * c.y.st + b * c.y.sb + d * H * c.y.se
            hT = <floating*>c.scratch_hT + d * H * B + b if write_hT and part & 2 else NULL
            for j in range(j0, j0 + n, 128):  # CHUNK units at a time
                m = j0 + n - j
                cell_chunk(typ, c, m if m < CHUNK else CHUNK, H,
                           <floating*>proj + wrow * DG + d * G + j,
                           <floating*>lay.gates + row * DG + d * G + j,
                           at(lay.preact, row * DG + d * G + j, typ),
                           <floating*>c.scratch_S + (d * G + j) * B + b if products_apart else NULL, B, H * B,
                           <floating*>lay.bias + d * G + j,
                           at(lay.cdiag, d * G + j, typ),
                           NULL if c_prev == NULL else c_prev + j * cps, cps,
                           <floating*>lay.cells + row * DH + d * H + j,
                           at(lay.act_h, row * DH + d * H + j, typ),
                           <floating*>lay.out + row * DH + d * H + j,
                           NULL if y == NULL else y + j * c.y.se, c.y.se,
                           NULL if hT == NULL else hT + j * B, B, part)
        if part & 2:
            for b in range(bt, B):  # padded positions: every region and y hold 0
                row = t * B + b
                zero(<floating*>lay.gates + row * DG + d * G, G, j0, n)
                if lay.preact != NULL:
                    zero(<floating*>lay.preact + row * DG + d * G, G, j0, n)
                zero(<floating*>lay.cells + row * DH + d * H, 0, j0, n)
                zero(<floating*>lay.out + row * DH + d * H, 0, j0, n)
                if lay.act_h != NULL:
                    zero(<floating*>lay.act_h + row * DH + d * H, 0, j0, n)
                if last:
                    y = <floating*>c.y.p + t * c.y.st + b * c.y.sb + d * H * c.y.se
                    for j in range(j0, j0 + n):
                        y[j * c.y.se] = 0


cdef inline void zero(floating *row, Py_ssize_t gates, Py_ssize_t j0, Py_ssize_t n) noexcept nogil:
    """Units [j0, j0+n) of a row: of each of the 4 gates (gates = 4H: the gate stride / 4) or
    of the row itself (gates = 0)."""
    cdef int k
    if gates == 0:
        memset(row + j0, 0, n * sizeof(floating))
    else:
        for k in range(4):
            memset(row + k * (gates // 4) + j0, 0, n * sizeof(floating))


cdef void cell_chunk(floating *typ, const Call *c, Py_ssize_t n, Py_ssize_t H,
                     const floating *proj, floating *g, floating *a,
                     const floating *s, Py_ssize_t s_unit, Py_ssize_t s_gate,
                     const floating *bias, const floating *cdiag,
                     const floating *c_prev, Py_ssize_t cps,
                     floating *cell, floating *act_h, floating *h, floating *y, Py_ssize_t ys,
                     floating *hT, Py_ssize_t hts, int part) noexcept nogil:
    """SPEC §4 for n (<= CHUNK) hidden units of one sample. proj, g, a, bias, cdiag hold the
    four gates H apart; s (the step's products, NULL: already added into proj) unit stride
    s_unit, gate stride s_gate; h is also stored at hT (stride hts) unless NULL.

        a_k = proj_k + s_k + b_k (+ cdiag_k * c_prev)   k = i, f, g;  gate_k = act_k(a_k)
        c' = f*c_prev + i*g
        a_o = proj_o + s_o + b_o (+ cdiag_o * c');  o = act_o(a_o);  h = o * act_h(c')
    """
    cdef floating v[4][CHUNK]
    cdef floating cp[CHUNK]
    cdef floating cn[CHUNK]
    cdef floating th[CHUNK]
    cdef Py_ssize_t i
    cdef int k
    if part & 1:
        if c_prev == NULL:
            for i in range(n):
                cp[i] = 0
        elif cps == 1:
            for i in range(n):
                cp[i] = c_prev[i]
        else:
            for i in range(n):
                cp[i] = c_prev[i * cps]
        for k in range(3):
            if s != NULL:
                for i in range(n):
                    v[k][i] = proj[k * H + i] + s[k * s_gate + i * s_unit] + bias[k * H + i]
            else:
                for i in range(n):
                    v[k][i] = proj[k * H + i] + bias[k * H + i]
            if cdiag != NULL:
                for i in range(n):
                    v[k][i] = v[k][i] + cdiag[k * H + i] * cp[i]
            if a != NULL:
                for i in range(n):
                    a[k * H + i] = v[k][i]
            activate(c.fn[k], c.alpha[k], c.beta[k], v[k], n)
            for i in range(n):
                g[k * H + i] = v[k][i]
        for i in range(n):
            cn[i] = v[1][i] * cp[i] + v[0][i] * v[2][i]
        for i in range(n):
            cell[i] = cn[i]
    if part & 2:
        if not part & 1:
            for i in range(n):
                cn[i] = cell[i]
        if s != NULL:
            for i in range(n):
                v[3][i] = proj[3 * H + i] + s[3 * s_gate + i * s_unit] + bias[3 * H + i]
        else:
            for i in range(n):
                v[3][i] = proj[3 * H + i] + bias[3 * H + i]
        if cdiag != NULL:
            for i in range(n):
                v[3][i] = v[3][i] + cdiag[3 * H + i] * cn[i]
        if a != NULL:
            for i in range(n):
                a[3 * H + i] = v[3][i]
        activate(c.fn[3], c.alpha[3], c.beta[3], v[3], n)
        for i in range(n):
            g[3 * H + i] = v[3][i]
            th[i] = cn[i]
        activate(c.fn[4], c.alpha[4], c.beta[4], th, n)
        if act_h != NULL:
            for i in range(n):
                act_h[i] = th[i]
        for i in range(n):
            h[i] = v[3][i] * th[i]
        if y != NULL:
            for i in range(n):
                y[i * ys] = v[3][i] * th[i]
        if hT != NULL:
            for i in range(n):
                hT[i * hts] = v[3][i] * th[i]


cdef void final_states(floating *typ, Call *c, int l, int tid) noexcept nogil:
    """h_T and c_T of every sample: its state after its own last step (the thread's samples)."""
    cdef Layer *lay = &c.layer[l]
    cdef Direction *dr
    cdef Py_ssize_t b0, b1, b, j, row, DH = c.D * c.H
    cdef int d, t, length
    cdef floating *src
    cdef floating *dst
    share(c.B, c.team, tid, 1, &b0, &b1)
    for b in range(b0, b1):
        length = 0
        while length < c.T and c.bs[length] > b:
            length += 1
        for d in range(c.D):
            dr = &lay.d[d]
            t = length - 1 if d == 0 else 0
            row = (t * c.B + b) * DH + d * c.H
            if dr.hn.p != NULL:
                src = <floating*>lay.out + row
                dst = <floating*>dr.hn.p + b * dr.hn.rs
                for j in range(c.H):
                    dst[j * dr.hn.cs] = src[j]
            if dr.cn.p != NULL:
                src = <floating*>lay.cells + row
                dst = <floating*>dr.cn.p + b * dr.cn.rs
                for j in range(c.H):
                    dst[j * dr.cn.cs] = src[j]


cdef inline const Arrangement* arrangement_of(const Call *c, int l, int s) noexcept nogil:
    """The arrangement step s of layer l runs (the planner's schedule)."""
    return &c.arrangement[0 if c.pick == NULL else c.pick[l * c.T + s]]


cdef inline void time_step(Call *c, int tid, Py_ssize_t index, double *since) noexcept nogil:
    """Thread 0 records the wall time from *since to now (just past a barrier) at
    step_seconds[index] while the planner times the call."""
    cdef double now
    if tid == 0 and c.step_seconds != NULL:
        now = team_clock()
        if index >= 0:
            c.step_seconds[index] = now - since[0]
        since[0] = now


cdef void forward_thread(floating *typ, Call *c, int tid) noexcept nogil:
    cdef int l, s
    cdef Py_ssize_t r0, r1, u0, u1
    cdef const Arrangement *a
    cdef bint write_hT
    cdef double since = 0
    share(c.D * 4 * c.H, c.team, tid, GRAIN, &r0, &r1)
    share(c.D * c.H, c.team, tid, 8, &u0, &u1)
    for l in range(c.L):
        prepare_input(typ, c, l, tid, True)
        project(typ, c, l, tid)
        team_barrier(c.barrier, c.team)
        time_step(c, tid, -1, &since)
        for s in range(c.T):
            a = arrangement_of(c, l, s)
            write_hT = s + 1 < c.T and arrangement_of(c, l, s + 1).form & 1 != 0
            step_products(typ, c, l, s, r0, r1, False, a)
            team_barrier(c.barrier, c.team)
            if c.layer[l].full_o:
                step_cells(typ, c, l, s, u0, u1, 1, a, False)
                team_barrier(c.barrier, c.team)
                step_products(typ, c, l, s, r0, r1, True, a)
                team_barrier(c.barrier, c.team)
                step_cells(typ, c, l, s, u0, u1, 2, a, write_hT)
            else:
                step_cells(typ, c, l, s, u0, u1, 3, a, write_hT)
            team_barrier(c.barrier, c.team)
            time_step(c, tid, l * c.T + s, &since)
        final_states(typ, c, l, tid)


# ---------------------------------------------------------------------------------- backward
cdef void step_gradients(floating *typ, Call *c, int l, int s, Py_ssize_t u0, Py_ssize_t u1,
                         int part) noexcept nogil:
    """Elementwise backward of step s on hidden units [u0, u1): part 1 the output gate and
    dL/dc'; part 2 gates i, f, g and dL/dc of the previous step (SPEC §6)."""
    cdef Layer *lay = &c.layer[l]
    cdef Direction *dr
    cdef Direction *gr
    cdef Py_ssize_t H = c.H, G = 4 * c.H, DH = c.D * c.H, DG = c.D * 4 * c.H, B = c.B
    cdef Py_ssize_t j0, j, n, m, row, wrow, cps, dys
    cdef int d, t, p, bt, n_prev, b
    cdef floating *c_prev
    cdef floating *dy
    cdef floating *carry_h
    cdef floating *carry_c
    cdef floating *dc_step
    for d in range(c.D):
        n = overlap(u0, u1, d * H, (d + 1) * H, &j0)
        if n == 0:
            continue
        dr = &lay.d[d]
        t = step_time(c, d, c.T - 1 - s)   # backward runs each direction's time in reverse
        p = previous(c, d, t)
        bt = c.bs[t]
        n_prev = n_previous(c, d, t)
        carry_h = <floating*>c.scratch_carry + d * B * H
        carry_c = carry_h + c.D * B * H
        dc_step = carry_c + c.D * B * H
        for b in range(bt):
            row = t * B + b
            wrow = c.start[t] + b
            dy = NULL
            dys = 0
            if l == c.L - 1:
                if c.dy.p != NULL:
                    dy = <floating*>c.dy.p + t * c.dy.st + b * c.dy.sb + d * H * c.dy.se
                    dys = c.dy.se
            else:
                dy = <floating*>c.scratch_dX + wrow * DH + d * H
                dys = 1
            if b < n_prev:
                c_prev = <floating*>lay.cells + (p * B + b) * DH + d * H
                cps = 1
            elif dr.c0.p != NULL:
                c_prev = <floating*>dr.c0.p + b * dr.c0.rs
                cps = dr.c0.cs
            else:
                c_prev = NULL
                cps = 0
            for j in range(j0, j0 + n, 128):  # CHUNK units at a time
                m = j0 + n - j
                if m > CHUNK:
                    m = CHUNK
                gradient_chunk(typ, c, m, H,
                               <floating*>lay.gates + row * DG + d * G + j,
                               at(lay.preact, row * DG + d * G + j, typ),
                               <floating*>lay.cells + row * DH + d * H + j,
                               at(lay.act_h, row * DH + d * H + j, typ),
                               at(lay.cdiag, d * G + j, typ),
                               NULL if c_prev == NULL else c_prev + j * cps, cps,
                               NULL if dy == NULL else dy + j * dys, dys,
                               carry_h + b * H + j, carry_c + b * H + j, dc_step + b * H + j,
                               <floating*>c.scratch_dG + wrow * DG + d * G + j, part)


cdef void gradient_chunk(floating *typ, const Call *c, Py_ssize_t n, Py_ssize_t H,
                         const floating *g, const floating *a, const floating *cell,
                         const floating *act_h, const floating *cdiag,
                         const floating *c_prev, Py_ssize_t cps,
                         const floating *dy, Py_ssize_t dys,
                         floating *carry_h, floating *carry_c, floating *dc_step,
                         floating *dg, int part) noexcept nogil:
    """SPEC §6 for n (<= CHUNK) hidden units of one sample. carry_h, carry_c: dL/dh and
    dL/dc flowing back from the later step; dc_step: dL/dc' of this step.

    part 1   dh = dy + carry_h;  dA_o = dh * act_h(c') * act_o'(a_o)
             dc' = carry_c + dh * o * act_h'(c') (+ cdiag_o * dA_o)
    part 2   dA_i = dc' g act_i'(a_i);  dA_f = dc' c_prev act_f'(a_f);  dA_g = dc' i act_g'(a_g)
             carry_c = dc' f (+ sum_k cdiag_k dA_k)
    """
    cdef floating dh[CHUNK]
    cdef floating th[CHUNK]
    cdef floating sl[CHUNK]
    cdef floating cp[CHUNK]
    cdef floating da[3][CHUNK]
    cdef Py_ssize_t i
    cdef int k
    if part == 1:
        for i in range(n):
            dh[i] = carry_h[i]
        if dy != NULL:
            for i in range(n):
                dh[i] = dh[i] + dy[i * dys]
        if act_h != NULL:
            for i in range(n):
                th[i] = act_h[i]
        else:  # not cached: act_h(c') again
            for i in range(n):
                th[i] = cell[i]
            activate(c.fn[4], c.alpha[4], c.beta[4], th, n)
        slope(c.fn[3], c.alpha[3], c.beta[3], NULL if a == NULL else a + 3 * H, g + 3 * H, sl, n)
        for i in range(n):
            dg[3 * H + i] = dh[i] * th[i] * sl[i]
        slope(c.fn[4], c.alpha[4], c.beta[4], cell, th, sl, n)
        for i in range(n):
            dc_step[i] = carry_c[i] + dh[i] * g[3 * H + i] * sl[i]
        if cdiag != NULL:
            for i in range(n):
                dc_step[i] = dc_step[i] + cdiag[3 * H + i] * dg[3 * H + i]
        return
    if c_prev == NULL:
        for i in range(n):
            cp[i] = 0
    elif cps == 1:
        for i in range(n):
            cp[i] = c_prev[i]
    else:
        for i in range(n):
            cp[i] = c_prev[i * cps]
    slope(c.fn[0], c.alpha[0], c.beta[0], a, g, sl, n)
    for i in range(n):
        da[0][i] = dc_step[i] * g[2 * H + i] * sl[i]
    slope(c.fn[1], c.alpha[1], c.beta[1], NULL if a == NULL else a + H, g + H, sl, n)
    for i in range(n):
        da[1][i] = dc_step[i] * cp[i] * sl[i]
    slope(c.fn[2], c.alpha[2], c.beta[2], NULL if a == NULL else a + 2 * H, g + 2 * H, sl, n)
    for i in range(n):
        da[2][i] = dc_step[i] * g[i] * sl[i]
    for k in range(3):
        for i in range(n):
            dg[k * H + i] = da[k][i]
    for i in range(n):
        carry_c[i] = dc_step[i] * g[H + i]
    if cdiag != NULL:
        for i in range(n):
            carry_c[i] = carry_c[i] + cdiag[i] * da[0][i] + cdiag[H + i] * da[1][i] + cdiag[2 * H + i] * da[2][i]


cdef void step_back_products(floating *typ, Call *c, int l, int s, Py_ssize_t u0, Py_ssize_t u1,
                             bint output_peephole, const Arrangement *a) noexcept nogil:
    """Units [u0, u1) of step s's backward products: dL/dh_prev = dA U into carry_h (and the
    full peepholes of i, f, g: carry_c += dA C); with output_peephole instead
    dL/dc' += dA_o C_o (before part 2). a.chunk units per BLAS call."""
    cdef Layer *lay = &c.layer[l]
    cdef Direction *dr
    cdef Py_ssize_t H = c.H, G = 4 * c.H, DG = c.D * 4 * c.H, B = c.B, j0, n, q, m
    cdef Py_ssize_t chunk
    cdef int d, t, bt, k
    cdef Mat dA, carry_h, carry_c, dc_step
    for d in range(c.D):
        n = overlap(u0, u1, d * H, (d + 1) * H, &j0)
        if n == 0:
            continue
        dr = &lay.d[d]
        t = step_time(c, d, c.T - 1 - s)
        bt = c.bs[t]
        dA = mat(c.scratch_dG + (c.start[t] * DG + d * G) * sizeof(floating), bt, G, DG, 1)
        chunk = a.chunk if a.chunk > 0 else n
        q = j0
        while q < j0 + n:
            m = j0 + n - q if j0 + n - q < chunk else chunk
            carry_h = mat(c.scratch_carry + (d * B * H + q) * sizeof(floating), bt, m, H, 1)
            carry_c = mat(c.scratch_carry + ((c.D + d) * B * H + q) * sizeof(floating), bt, m, H, 1)
            dc_step = mat(c.scratch_carry + ((2 * c.D + d) * B * H + q) * sizeof(floating), bt, m, H, 1)
            if output_peephole:
                if dr.g[3].C.p != NULL:
                    gemm_as(a.by_vectors, <floating>1, block(dA, 0, 3 * H, bt, H, sizeof(floating)),
                            block(dr.g[3].C, 0, q, H, m, sizeof(floating)), <floating>1, dc_step)
            elif dr.U4.p != NULL:
                gemm_as(a.by_vectors, <floating>1, dA, block(dr.U4, 0, q, G, m, sizeof(floating)),
                        <floating>0, carry_h)
            else:
                for k in range(4):
                    gemm_as(a.by_vectors, <floating>1, block(dA, 0, k * H, bt, H, sizeof(floating)),
                            block(dr.g[k].U, 0, q, H, m, sizeof(floating)), <floating>(1 if k else 0), carry_h)
            if not output_peephole:
                for k in range(3):
                    if dr.g[k].C.p != NULL:
                        gemm_as(a.by_vectors, <floating>1, block(dA, 0, k * H, bt, H, sizeof(floating)),
                                block(dr.g[k].C, 0, q, H, m, sizeof(floating)), <floating>1, carry_c)
            q += m


cdef void start_carries(floating *typ, Call *c, int l, Py_ssize_t u0, Py_ssize_t u1) noexcept nogil:
    """carry_h, carry_c of every sample = dL/dh_T, dL/dc_T (zeros where not given)."""
    cdef Direction *gr
    cdef Py_ssize_t H = c.H, B = c.B, j0, n, j
    cdef int d, b
    cdef floating *carry_h
    cdef floating *carry_c
    for d in range(c.D):
        n = overlap(u0, u1, d * H, (d + 1) * H, &j0)
        if n == 0:
            continue
        gr = &c.grad[l].d[d]
        carry_h = <floating*>c.scratch_carry + d * B * H
        carry_c = carry_h + c.D * B * H
        for b in range(B):
            for j in range(j0, j0 + n):
                carry_h[b * H + j] = 0 if gr.hn.p == NULL else (<floating*>gr.hn.p)[b * gr.hn.rs + j * gr.hn.cs]
                carry_c[b * H + j] = 0 if gr.cn.p == NULL else (<floating*>gr.cn.p)[b * gr.cn.rs + j * gr.cn.cs]


cdef void initial_gradients(floating *typ, Call *c, int l, Py_ssize_t u0, Py_ssize_t u1) noexcept nogil:
    """dL/dh0, dL/dc0: the carries after every sample's first step."""
    cdef Direction *gr
    cdef Py_ssize_t H = c.H, B = c.B, j0, n
    cdef int d
    cdef Mat carry
    for d in range(c.D):
        n = overlap(u0, u1, d * H, (d + 1) * H, &j0)
        if n == 0:
            continue
        gr = &c.grad[l].d[d]
        if gr.h0.p != NULL:
            carry = mat(c.scratch_carry + (d * B * H + j0) * sizeof(floating), B, n, H, 1)
            store(typ, carry, block(gr.h0, 0, j0, B, n, sizeof(floating)), gr.acc_h0)
        if gr.c0.p != NULL:
            carry = mat(c.scratch_carry + ((c.D + d) * B * H + j0) * sizeof(floating), B, n, H, 1)
            store(typ, carry, block(gr.c0, 0, j0, B, n, sizeof(floating)), gr.acc_c0)


cdef void gather_previous(floating *typ, Call *c, int l, int tid, bint cells) noexcept nogil:
    """scratch_prev[d][row] = the state (h, or c with cells) step t of direction d started
    from, for every work row: the previous step's, or the initial state, or 0."""
    cdef Layer *lay = &c.layer[l]
    cdef Direction *dr
    cdef Mat init
    cdef Py_ssize_t t0, t1, t, j, H = c.H, DH = c.D * c.H
    cdef int d, b, p, n_prev
    cdef floating *dst
    cdef floating *src
    share(c.T, c.team, tid, 1, &t0, &t1)
    for d in range(c.D):
        dr = &lay.d[d]
        init = dr.c0 if cells else dr.h0
        for t in range(t0, t1):
            p = previous(c, d, t)
            n_prev = n_previous(c, d, t)
            for b in range(c.bs[t]):
                dst = <floating*>c.scratch_prev + (d * c.rows + c.start[t] + b) * H
                if b < n_prev:
                    src = <floating*>(lay.cells if cells else lay.out) + (p * c.B + b) * DH + d * H
                    for j in range(H):
                        dst[j] = src[j]
                elif init.p != NULL:
                    src = <floating*>init.p + b * init.rs
                    for j in range(H):
                        dst[j] = src[j * init.cs]
                else:
                    memset(dst, 0, H * sizeof(floating))
    team_barrier(c.barrier, c.team)


cdef Mat cells_rows(floating *typ, Call *c, int l, int d, int tid) noexcept nogil:
    """Direction d's cell after each step as [rows][H] in work rows (gathered into the
    second half of scratch_prev when some steps are not full)."""
    cdef Layer *lay = &c.layer[l]
    cdef Py_ssize_t H = c.H, DH = c.D * c.H, t0, t1, t, j
    cdef int b
    cdef floating *dst
    cdef floating *src
    if c.rows == <Py_ssize_t>c.T * c.B:
        return mat(lay.cells + d * H * sizeof(floating), c.rows, H, DH, 1)
    share(c.T, c.team, tid, 1, &t0, &t1)
    for t in range(t0, t1):
        for b in range(c.bs[t]):
            dst = <floating*>c.scratch_prev + (c.D * c.rows + c.start[t] + b) * H
            src = <floating*>lay.cells + (t * c.B + b) * DH + d * H
            for j in range(H):
                dst[j] = src[j]
    team_barrier(c.barrier, c.team)
    return mat(c.scratch_prev + c.D * c.rows * H * sizeof(floating), c.rows, H, H, 1)


cdef void column_sums(floating *typ, Call *c, Mat dG, Mat other, Vec dst, bint accumulate,
                      Py_ssize_t j0, Py_ssize_t n) noexcept nogil:
    """dst[j] (+)= sum over rows of dG[r][j] (times other[r][j] when other.p != NULL), for
    columns j in [j0, j0+n); rows are summed in order, so the result does not depend on the
    team."""
    cdef floating acc[CHUNK]
    cdef Py_ssize_t r, i, j, m
    cdef floating *g
    cdef floating *o
    cdef floating *e
    for j in range(j0, j0 + n, 128):  # CHUNK columns at a time
        m = j0 + n - j
        if m > CHUNK:
            m = CHUNK
        for i in range(m):
            acc[i] = 0
        for r in range(dG.rows):
            g = <floating*>dG.p + r * dG.rs + j
            if other.p != NULL:
                o = <floating*>other.p + r * other.rs + j
                for i in range(m):
                    acc[i] = acc[i] + g[i] * o[i]
            else:
                for i in range(m):
                    acc[i] = acc[i] + g[i]
        for i in range(m):
            e = <floating*>dst.p + (j + i) * dst.s
            e[0] = e[0] + acc[i] if accumulate else acc[i]


cdef void weight_gradients(floating *typ, Call *c, int l, int tid) noexcept nogil:
    """Layer l's parameter gradients and dL/d(input), as GEMMs over every work row (each
    thread a slice of the output rows) and column sums."""
    cdef Layer *lay = &c.layer[l]
    cdef Layer *grl = &c.grad[l]
    cdef Gate *gw
    cdef Py_ssize_t H = c.H, G = 4 * c.H, DG = c.D * 4 * c.H, X = lay.X, rows = c.rows
    cdef Py_ssize_t q0, q1, r0, r1, u0, u1, j, n
    cdef int d, k
    cdef Mat dG = mat(c.scratch_dG, rows, DG, DG, 1)
    cdef Mat inp, dX, prev, cells
    cdef Vec none
    none.p = NULL
    none.s = 0
    # dL/d(input) = dG W: the caller's dx for layer 0 when BLAS can write it in place
    share(rows, c.team, tid, GRAIN, &q0, &q1)
    if l > 0 or c.dx.p != NULL:
        if l == 0 and c.dx_rows.p != NULL:
            dX = c.dx_rows
        else:
            dX = mat(c.scratch_dX, rows, X, X, 1)
        if q1 > q0:
            dX = block(dX, q0, 0, q1 - q0, X, sizeof(floating))
            if lay.W4.p != NULL:
                gemm(<floating>1, block(dG, q0, 0, q1 - q0, DG, sizeof(floating)), lay.W4,
                     <floating>(1 if l == 0 and c.dx_rows.p != NULL and c.acc_dx else 0), dX)
            else:
                for d in range(c.D):
                    for k in range(4):
                        gemm(<floating>1, block(dG, q0, d * G + k * H, q1 - q0, H, sizeof(floating)),
                             lay.d[d].g[k].W,
                             <floating>(1 if (d or k) or (l == 0 and c.dx_rows.p != NULL and c.acc_dx) else 0), dX)
    prepare_input(typ, c, l, tid, False)
    inp = layer_input(typ, c, l)
    share(DG, c.team, tid, GRAIN, &r0, &r1)
    for d in range(c.D):
        for k in range(4):
            gw = &grl.d[d].g[k]
            n = overlap(r0, r1, d * G + k * H, d * G + (k + 1) * H, &j)
            if n == 0:
                continue
            if gw.W.p != NULL:   # dW = dG^T X
                gemm_into(typ, c, tid, transposed(block(dG, 0, d * G + k * H + j, rows, n, sizeof(floating))),
                          inp, gw.acc_W, block(gw.W, j, 0, n, X, sizeof(floating)))
            if gw.b.p != NULL:   # db = column sums of dG
                column_sums(typ, c, block(dG, 0, d * G + k * H, rows, H, sizeof(floating)),
                            mat(NULL, 0, 0, 0, 0), gw.b, gw.acc_b, j, n)
    # dU = dG^T H_prev; full peepholes dC = dG^T C_prev (the output gate's: dG_o^T C)
    gather_previous(typ, c, l, tid, False)
    for d in range(c.D):
        prev = mat(c.scratch_prev + d * rows * H * sizeof(floating), rows, H, H, 1)
        for k in range(4):
            gw = &grl.d[d].g[k]
            n = overlap(r0, r1, d * G + k * H, d * G + (k + 1) * H, &j)
            if n > 0 and gw.U.p != NULL:
                gemm_into(typ, c, tid, transposed(block(dG, 0, d * G + k * H + j, rows, n, sizeof(floating))),
                          prev, gw.acc_U, block(gw.U, j, 0, n, H, sizeof(floating)))
    if not peepholes(grl, c.D):
        return
    team_barrier(c.barrier, c.team)  # scratch_prev is reused for the cells
    gather_previous(typ, c, l, tid, True)
    for d in range(c.D):
        prev = mat(c.scratch_prev + d * rows * H * sizeof(floating), rows, H, H, 1)
        cells = cells_rows(typ, c, l, d, tid)
        for k in range(4):
            gw = &grl.d[d].g[k]
            n = overlap(r0, r1, d * G + k * H, d * G + (k + 1) * H, &j)
            if n == 0:
                continue
            if gw.C.p != NULL:
                gemm_into(typ, c, tid, transposed(block(dG, 0, d * G + k * H + j, rows, n, sizeof(floating))),
                          prev if k < 3 else cells, gw.acc_C, block(gw.C, j, 0, n, H, sizeof(floating)))
            if gw.cdiag.p != NULL:
                column_sums(typ, c, block(dG, 0, d * G + k * H, rows, H, sizeof(floating)),
                            prev if k < 3 else cells, gw.cdiag, gw.acc_C, j, n)
        team_barrier(c.barrier, c.team)  # the next direction's cells reuse the same scratch


cdef inline bint peepholes(const Layer *grl, int D) noexcept nogil:
    cdef int d, k
    for d in range(D):
        for k in range(4):
            if grl.d[d].g[k].C.p != NULL or grl.d[d].g[k].cdiag.p != NULL:
                return True
    return False


cdef void input_gradient(floating *typ, Call *c, int tid) noexcept nogil:
    """dx from the layer-0 dX in work rows, when BLAS could not write the caller's dx in
    place: stored at its strides, 0 at padded positions (unless accumulating)."""
    cdef Py_ssize_t t0, t1, t, e
    cdef int b
    cdef floating *src
    cdef floating *dst
    if c.dx.p == NULL or c.dx_rows.p != NULL:
        return
    share(c.T, c.team, tid, 1, &t0, &t1)
    for t in range(t0, t1):
        for b in range(c.B):
            dst = <floating*>c.dx.p + t * c.dx.st + b * c.dx.sb
            if b < c.bs[t]:
                src = <floating*>c.scratch_dX + (c.start[t] + b) * c.In
                for e in range(c.In):
                    dst[e * c.dx.se] = dst[e * c.dx.se] + src[e] if c.acc_dx else src[e]
            elif not c.acc_dx:
                for e in range(c.In):
                    dst[e * c.dx.se] = 0


cdef void mask_gradient(floating *typ, Call *c, int l, int tid) noexcept nogil:
    """dL/d(output of layer l-1) = dX * mask_l, in place in scratch_dX (work rows)."""
    cdef Py_ssize_t t0, t1, t, e, DH = c.D * c.H
    cdef int b
    cdef floating *v
    cdef floating *m
    if c.layer[l].mask == NULL:
        return
    share(c.T, c.team, tid, 1, &t0, &t1)
    for t in range(t0, t1):
        for b in range(c.bs[t]):
            v = <floating*>c.scratch_dX + (c.start[t] + b) * DH
            m = <floating*>c.layer[l].mask + (t * c.B + b) * DH
            for e in range(DH):
                v[e] = v[e] * m[e]


cdef void backward_thread(floating *typ, Call *c, int tid) noexcept nogil:
    cdef int l, s
    cdef Py_ssize_t u0, u1
    cdef const Arrangement *a
    cdef double since = 0
    share(c.D * c.H, c.team, tid, 8, &u0, &u1)
    for l in range(c.L - 1, -1, -1):
        start_carries(typ, c, l, u0, u1)
        for s in range(c.T):
            a = arrangement_of(c, l, s)
            step_gradients(typ, c, l, s, u0, u1, 1)
            if c.layer[l].full_o:
                team_barrier(c.barrier, c.team)
                step_back_products(typ, c, l, s, u0, u1, True, a)
            step_gradients(typ, c, l, s, u0, u1, 2)
            team_barrier(c.barrier, c.team)
            # timed: step s-1's products, then step s up to here (no barrier between them)
            time_step(c, tid, l * c.T + s - 1 if s > 0 else -1, &since)
            step_back_products(typ, c, l, s, u0, u1, False, a)
        initial_gradients(typ, c, l, u0, u1)
        team_barrier(c.barrier, c.team)  # dG complete; carries no longer needed; scratch_dX (dy of l) consumed
        weight_gradients(typ, c, l, tid)
        team_barrier(c.barrier, c.team)
        if l > 0:
            mask_gradient(typ, c, l, tid)
        else:
            input_gradient(typ, c, tid)
        team_barrier(c.barrier, c.team)


# ---------------------------------------------------------------------------------- entry points
cdef struct Job:
    Call *c
    bint forward


cdef void team_member(void *arg, int tid) noexcept nogil:
    cdef Job *job = <Job*>arg
    run_thread(job.c, job.forward, tid)


cdef void run_team(Call *c, bint forward) noexcept nogil:
    """The call on a team of c.team threads: the caller and c.team - 1 workers of the pool
    (_team.h). When the workers cannot be created the pool sets c.team to 1 and the caller
    runs the whole call alone, as a team of one, since the barriers wait for every member."""
    cdef Job job
    job.c = c
    job.forward = forward
    if c.team > 1:
        team_run(team_member, &job, &c.team)
    else:
        run_thread(c, forward, 0)


cdef inline void run_thread(Call *c, bint forward, int tid) noexcept nogil:
    if forward:
        if c.itemsize == 4:
            forward_thread(<float*>NULL, c, tid)
        else:
            forward_thread(<double*>NULL, c, tid)
    elif c.itemsize == 4:
        backward_thread(<float*>NULL, c, tid)
    else:
        backward_thread(<double*>NULL, c, tid)


cdef int run_forward(Call *c) noexcept nogil:
    """Every layer of the forward pass (SPEC §4). The plan has checked everything."""
    run_team(c, True)
    return 0


cdef int run_backward(Call *c) noexcept nogil:
    """Every layer of the backward pass (SPEC §6), from the regions of a forward pass."""
    run_team(c, False)
    return 0


# ---------------------------------------------------------------------------------- Python side
def entry_points():
    """The addresses of run_forward and run_backward, for the plan (which picks this build
    or another one of the same source at import)."""
    return <size_t>&run_forward, <size_t>&run_backward


def team_available():
    """How many threads a team may have (the pool's limit: the same on every build)."""
    return TEAM_MAX


def team_pool(refuse_threads=None):
    """The number of workers this build's pool has created (0 before its first team call,
    and in a process forked since). Testing: ``refuse_threads=True`` makes the pool act as
    if thread creation failed (calls needing new workers then run on one thread), False
    restores it."""
    if refuse_threads is not None:
        team_refuse_threads(bool(refuse_threads))
    return team_workers()


def blas_time(bint enable=False, bint reset=False):
    """[(seconds inside BLAS, floating-point operations handed to BLAS)] per team thread that
    called it since the last reset (counted only while enabled: benchmarks/run.py reports
    BLAS's share of the wall time, and that every GEMM FLOP of a call went through BLAS)."""
    global blas_timing
    cdef int i
    out = [(blas_seconds[8 * i], blas_flops[8 * i]) for i in range(TEAM_MAX) if blas_seconds[8 * i] != 0]
    if reset:
        for i in range(TEAM_MAX):
            blas_seconds[8 * i] = 0
            blas_flops[8 * i] = 0
    blas_timing = enable
    return out
