# The backward tier: per layer and step (in reverse) the elementwise gradient of the cell
# into dG and the products carrying dL/dh, dL/dc to the step before; after the time loop
# the weight, bias, peephole and input gradients as GEMMs and column sums over every row;
# backward_thread is one team member's walk through it all. Included by _lstm.pxi.


cdef void step_gradients(floating *typ, Call *c, int l, int s, const Share *sh,
                         int part) noexcept nogil:
    """Elementwise backward of step s on the thread's hidden units and samples (sh): part 1
    the output gate and dL/dc'; part 2 gates i, f, g and dL/dc of the previous step."""
    cdef Layer *lay = &c.layer[l]
    cdef Py_ssize_t H = c.H, G = 4 * c.H, DH = c.D * c.H, DG = c.D * 4 * c.H, B = c.B
    cdef Py_ssize_t j0, j, n, m, row, wrow, cps, dys
    cdef int d, t, bt, b
    cdef floating *c_prev
    cdef floating *g
    cdef floating *pre
    cdef floating *cell
    cdef floating *act_h_c
    cdef floating *dy
    cdef floating *carry_h
    cdef floating *carry_c
    cdef floating *dc_step
    for d in range(c.D):
        n = overlap(sh.u0, sh.u1, d * H, (d + 1) * H, &j0)
        if n == 0:
            continue
        t = step_time(c, d, c.T - 1 - s)   # backward runs each direction's time in reverse
        bt = c.bs[t]
        for b in range(sh.b0, sh.b1 if sh.b1 < bt else bt):
            row = t * B + b
            wrow = c.start[t] + b
            dy = NULL
            dys = 0
            if l == c.L - 1:
                if c.dy.p != NULL:
                    dy = <floating*>c.dy.p + t * c.dy.st + b * c.dy.sb + d * H * c.dy.se
                    dys = c.dy.se
            else:
                dy = <floating*>c.scratch[SCRATCH_DX] + wrow * DH + d * H
                dys = 1
            c_prev = prev_state(typ, c, lay, d, t, b, True, &cps)
            g = gates_at(typ, c, lay, row, d)
            pre = preact_at(typ, c, lay, row, d)
            cell = cells_at(typ, c, lay, row, d)
            act_h_c = act_h_c_at(typ, c, lay, row, d)
            carry_h = carry_at(typ, c, CARRY_H, d, b)
            carry_c = carry_at(typ, c, CARRY_C, d, b)
            dc_step = carry_at(typ, c, CARRY_DC, d, b)
            for j in range(j0, j0 + n, 128):  # CHUNK units at a time
                m = j0 + n - j
                if m > CHUNK:
                    m = CHUNK
                gradient_chunk(typ, c, m, H, g + j, at(<char*>pre, j, typ), cell + j,
                               at(<char*>act_h_c, j, typ), at(lay.cdiag, d * G + j, typ),
                               at(<char*>c_prev, j * cps, typ), cps,
                               at(<char*>dy, j * dys, typ), dys,
                               carry_h + j, carry_c + j, dc_step + j,
                               <floating*>c.scratch[SCRATCH_DG] + wrow * DG + d * G + j, part)


cdef void step_back_products(floating *typ, Call *c, int l, int s, const Share *sh,
                             bint output_peephole, const Arrangement *a) noexcept nogil:
    """The thread's units and samples (sh) of step s's backward products: dL/dh_prev = dA U
    into carry_h (and the full peepholes of i, f, g: carry_c += dA C); with output_peephole
    instead dL/dc' += dA_o C_o (before part 2). a.chunk units per BLAS call; with
    FORM_SPLIT_SUMS instead the sum over U's 4H rows in calls of a.chunk rows (gate by gate,
    a whole gate per call for chunk 0), each over all the thread's units."""
    cdef Layer *lay = &c.layer[l]
    cdef Direction *dr
    cdef Py_ssize_t H = c.H, G = 4 * c.H, DG = c.D * 4 * c.H, j0, n, q, m, e, b0 = sh.b0
    cdef Py_ssize_t chunk, rows, r, kn
    cdef bint split_sums = a.form & FORM_SPLIT_SUMS != 0
    cdef int d, t, bt, k
    cdef Mat dA, carry_h, carry_c, dc_step, U
    for d in range(c.D):
        n = overlap(sh.u0, sh.u1, d * H, (d + 1) * H, &j0)
        if n == 0:
            continue
        dr = &lay.d[d]
        t = step_time(c, d, c.T - 1 - s)
        bt = c.bs[t]
        e = sh.b1 if sh.b1 < bt else bt   # the thread's samples of the step: [b0, e)
        if b0 >= e:
            continue
        dA = mat(c.scratch[SCRATCH_DG] + ((c.start[t] + b0) * DG + d * G) * sizeof(floating),
                 e - b0, G, DG, 1)
        chunk = a.chunk if a.chunk > 0 and not split_sums else n
        rows = a.chunk if a.chunk > 0 and split_sums else H   # of U per call, gate by gate
        q = j0
        while q < j0 + n:
            m = j0 + n - q if j0 + n - q < chunk else chunk
            carry_h = mat(carry_at(typ, c, CARRY_H, d, b0) + q, e - b0, m, H, 1)
            carry_c = mat(carry_at(typ, c, CARRY_C, d, b0) + q, e - b0, m, H, 1)
            dc_step = mat(carry_at(typ, c, CARRY_DC, d, b0) + q, e - b0, m, H, 1)
            if output_peephole:
                if dr.g[3].C.p != NULL:
                    gemm_as(a.by_vectors, <floating>1,
                            block(dA, 0, 3 * H, dA.rows, H, sizeof(floating)),
                            block(dr.g[3].C, 0, q, H, m, sizeof(floating)), <floating>1, dc_step)
            elif dr.U4.p != NULL and not split_sums:
                gemm_as(a.by_vectors, <floating>1, dA, block(dr.U4, 0, q, G, m, sizeof(floating)),
                        <floating>0, carry_h)
            else:   # gate by gate (the gates' matrices apart, or FORM_SPLIT_SUMS)
                for k in range(4):
                    U = block(dr.U4, k * H, 0, H, dr.U4.cols, sizeof(floating)) \
                        if dr.U4.p != NULL else dr.g[k].U
                    r = 0
                    while r < H:
                        kn = H - r if H - r < rows else rows
                        gemm_as(a.by_vectors, <floating>1,
                                block(dA, 0, k * H + r, dA.rows, kn, sizeof(floating)),
                                block(U, r, q, kn, m, sizeof(floating)),
                                <floating>(1 if k or r else 0), carry_h)
                        r += kn
            if not output_peephole:
                for k in range(3):
                    if dr.g[k].C.p != NULL:
                        gemm_as(a.by_vectors, <floating>1,
                                block(dA, 0, k * H, dA.rows, H, sizeof(floating)),
                                block(dr.g[k].C, 0, q, H, m, sizeof(floating)),
                                <floating>1, carry_c)
            q += m


cdef void start_carries(floating *typ, Call *c, int l, const Share *sh) noexcept nogil:
    """carry_h, carry_c = dL/dh_T, dL/dc_T (zeros where not given), on the thread's units
    and samples."""
    cdef Direction *gr
    cdef Py_ssize_t H = c.H, j0, n, j
    cdef int d, b
    cdef floating *carry_h
    cdef floating *carry_c
    for d in range(c.D):
        n = overlap(sh.u0, sh.u1, d * H, (d + 1) * H, &j0)
        if n == 0:
            continue
        gr = &c.grad[l].d[d]
        for b in range(sh.b0, sh.b1):
            carry_h = carry_at(typ, c, CARRY_H, d, b)
            carry_c = carry_at(typ, c, CARRY_C, d, b)
            for j in range(j0, j0 + n):
                carry_h[j] = (0 if gr.hn.p == NULL
                              else (<floating*>gr.hn.p)[b * gr.hn.rs + j * gr.hn.cs])
                carry_c[j] = (0 if gr.cn.p == NULL
                              else (<floating*>gr.cn.p)[b * gr.cn.rs + j * gr.cn.cs])


cdef void initial_gradients(floating *typ, Call *c, int l, const Share *sh) noexcept nogil:
    """dL/dh0, dL/dc0: the carries after every sample's first step (the thread's units and
    samples)."""
    cdef Direction *gr
    cdef Py_ssize_t H = c.H, j0, n, b0 = sh.b0, nb = sh.b1 - sh.b0
    cdef int d
    cdef Mat carry
    for d in range(c.D):
        n = overlap(sh.u0, sh.u1, d * H, (d + 1) * H, &j0)
        if n == 0 or nb <= 0:
            continue
        gr = &c.grad[l].d[d]
        if gr.h0.p != NULL:
            carry = mat(carry_at(typ, c, CARRY_H, d, b0) + j0, nb, n, H, 1)
            store(typ, carry, block(gr.h0, b0, j0, nb, n, sizeof(floating)), gr.acc_h0)
        if gr.c0.p != NULL:
            carry = mat(carry_at(typ, c, CARRY_C, d, b0) + j0, nb, n, H, 1)
            store(typ, carry, block(gr.c0, b0, j0, nb, n, sizeof(floating)), gr.acc_c0)


cdef void gather_previous(floating *typ, Call *c, int l, int tid, bint cells) noexcept nogil:
    """SCRATCH_PREV[d][row] = the state (h, or c with cells) step t of direction d started
    from, for every work row: the previous step's, or the initial state, or 0."""
    cdef Layer *lay = &c.layer[l]
    cdef Py_ssize_t t0, t1, t, j, stride, H = c.H
    cdef int d, b
    cdef floating *dst
    cdef floating *src
    share(c.T, c.team, tid, 1, &t0, &t1)
    for d in range(c.D):
        for t in range(t0, t1):
            for b in range(c.bs[t]):
                dst = <floating*>c.scratch[SCRATCH_PREV] + (d * c.rows + c.start[t] + b) * H
                src = prev_state(typ, c, lay, d, t, b, cells, &stride)
                if src == NULL:
                    memset(dst, 0, H * sizeof(floating))
                elif stride == 1:
                    for j in range(H):
                        dst[j] = src[j]
                else:
                    for j in range(H):
                        dst[j] = src[j * stride]
    team_barrier(c.barrier, c.team)


cdef Mat cells_rows(floating *typ, Call *c, int l, int d, int tid) noexcept nogil:
    """Direction d's cell after each step as [rows][H] in work rows (gathered into the
    second half of SCRATCH_PREV when some steps are not full)."""
    cdef Layer *lay = &c.layer[l]
    cdef Py_ssize_t H = c.H, DH = c.D * c.H, t0, t1, t, j
    cdef int b
    cdef floating *dst
    cdef floating *src
    if c.rows == <Py_ssize_t>c.T * c.B:
        return mat(cells_at(typ, c, lay, 0, d), c.rows, H, DH, 1)
    share(c.T, c.team, tid, 1, &t0, &t1)
    for t in range(t0, t1):
        for b in range(c.bs[t]):
            dst = <floating*>c.scratch[SCRATCH_PREV] + (c.D * c.rows + c.start[t] + b) * H
            src = cells_at(typ, c, lay, t * c.B + b, d)
            for j in range(H):
                dst[j] = src[j]
    team_barrier(c.barrier, c.team)
    return mat(c.scratch[SCRATCH_PREV] + c.D * c.rows * H * sizeof(floating), c.rows, H, H, 1)


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
    thread a slice of the output rows) and column sums: dL/d(input), then the input
    weights and biases, the recurrent weights, the peepholes."""
    cdef Mat dG = mat(c.scratch[SCRATCH_DG], c.rows, c.D * 4 * c.H, c.D * 4 * c.H, 1)
    cdef Py_ssize_t r0, r1
    input_gradient_product(typ, c, l, tid, dG)
    share(dG.cols, c.team, tid, GRAIN, &r0, &r1)   # the thread's rows of every dW, dU, dC
    input_weight_gradients(typ, c, l, tid, dG, r0, r1)
    recurrent_weight_gradients(typ, c, l, tid, dG, r0, r1)
    if peepholes(&c.grad[l], c.D):
        team_barrier(c.barrier, c.team)  # SCRATCH_PREV is reused for the cells
        peephole_gradients(typ, c, l, tid, dG, r0, r1)


cdef void input_gradient_product(floating *typ, Call *c, int l, int tid, Mat dG) noexcept nogil:
    """dL/d(input) = dG W on the thread's part: into the caller's dx for layer 0 when BLAS
    can write it in place, else into SCRATCH_DX (nothing for layer 0 without dx). The team
    splits the larger of dX's two dimensions, as the projection does: each thread's BLAS
    call then packs the smaller operand whole (W when rows > X, else dG)."""
    cdef Layer *lay = &c.layer[l]
    cdef Py_ssize_t H = c.H, G = 4 * c.H, DG = dG.cols, X = lay.X, q0, q1, c0, c1
    cdef int d, k
    cdef bint in_place = l == 0 and c.dx_rows.p != NULL
    cdef Mat dX, W
    if l == 0 and c.dx.p == NULL:
        return
    share_larger(c.rows, X, c.team, tid, &q0, &q1, &c0, &c1)
    if q1 <= q0 or c1 <= c0:
        return
    dX = c.dx_rows if in_place else mat(c.scratch[SCRATCH_DX], c.rows, X, X, 1)
    dX = block(dX, q0, c0, q1 - q0, c1 - c0, sizeof(floating))
    if lay.W4.p != NULL:
        gemm(<floating>1, block(dG, q0, 0, q1 - q0, DG, sizeof(floating)),
             block(lay.W4, 0, c0, DG, c1 - c0, sizeof(floating)),
             <floating>(1 if in_place and c.acc_dx else 0), dX)
        return
    for d in range(c.D):
        for k in range(4):
            W = lay.d[d].g[k].W
            gemm(<floating>1, block(dG, q0, d * G + k * H, q1 - q0, H, sizeof(floating)),
                 block(W, 0, c0, W.rows, c1 - c0, sizeof(floating)),
                 <floating>(1 if (d or k) or (in_place and c.acc_dx) else 0), dX)


cdef void input_weight_gradients(floating *typ, Call *c, int l, int tid, Mat dG, Py_ssize_t r0,
                                 Py_ssize_t r1) noexcept nogil:
    """dW = dG^T X and db = the column sums of dG, on the thread's rows [r0, r1) of D*4H."""
    cdef Layer *grl = &c.grad[l]
    cdef Gate *gw
    cdef Py_ssize_t H = c.H, G = 4 * c.H, X = c.layer[l].X, j, n
    cdef int d, k
    cdef Mat inp
    prepare_input(typ, c, l, tid, False)
    inp = layer_input(typ, c, l)
    for d in range(c.D):
        for k in range(4):
            gw = &grl.d[d].g[k]
            n = overlap(r0, r1, d * G + k * H, d * G + (k + 1) * H, &j)
            if n == 0:
                continue
            if gw.W.p != NULL:
                gemm_into(typ, c, tid,
                          transposed(block(dG, 0, d * G + k * H + j, c.rows, n, sizeof(floating))),
                          inp, gw.acc_W, block(gw.W, j, 0, n, X, sizeof(floating)))
            if gw.b.p != NULL:
                column_sums(typ, c, block(dG, 0, d * G + k * H, c.rows, H, sizeof(floating)),
                            mat(NULL, 0, 0, 0, 0), gw.b, gw.acc_b, j, n)


cdef void recurrent_weight_gradients(floating *typ, Call *c, int l, int tid, Mat dG,
                                     Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
    """dU = dG^T H_prev (every row's previous h, gathered), on the thread's rows."""
    cdef Layer *grl = &c.grad[l]
    cdef Gate *gw
    cdef Py_ssize_t H = c.H, G = 4 * c.H, rows = c.rows, j, n
    cdef int d, k
    cdef Mat prev
    gather_previous(typ, c, l, tid, False)
    for d in range(c.D):
        prev = mat(c.scratch[SCRATCH_PREV] + d * rows * H * sizeof(floating), rows, H, H, 1)
        for k in range(4):
            gw = &grl.d[d].g[k]
            n = overlap(r0, r1, d * G + k * H, d * G + (k + 1) * H, &j)
            if n > 0 and gw.U.p != NULL:
                gemm_into(typ, c, tid,
                          transposed(block(dG, 0, d * G + k * H + j, rows, n, sizeof(floating))),
                          prev, gw.acc_U, block(gw.U, j, 0, n, H, sizeof(floating)))


cdef void peephole_gradients(floating *typ, Call *c, int l, int tid, Mat dG, Py_ssize_t r0,
                             Py_ssize_t r1) noexcept nogil:
    """Full peepholes dC = dG^T C_prev (the output gate's: dG_o^T C, the new cells),
    diagonal ones the column sums of dG * C_prev (or * C), on the thread's rows."""
    cdef Layer *grl = &c.grad[l]
    cdef Gate *gw
    cdef Py_ssize_t H = c.H, G = 4 * c.H, rows = c.rows, j, n
    cdef int d, k
    cdef Mat prev, cells
    gather_previous(typ, c, l, tid, True)
    for d in range(c.D):
        prev = mat(c.scratch[SCRATCH_PREV] + d * rows * H * sizeof(floating), rows, H, H, 1)
        cells = cells_rows(typ, c, l, d, tid)
        for k in range(4):
            gw = &grl.d[d].g[k]
            n = overlap(r0, r1, d * G + k * H, d * G + (k + 1) * H, &j)
            if n == 0:
                continue
            if gw.C.p != NULL:
                gemm_into(typ, c, tid,
                          transposed(block(dG, 0, d * G + k * H + j, rows, n, sizeof(floating))),
                          prev if k < 3 else cells, gw.acc_C,
                          block(gw.C, j, 0, n, H, sizeof(floating)))
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
                src = <floating*>c.scratch[SCRATCH_DX] + (c.start[t] + b) * c.In
                for e in range(c.In):
                    dst[e * c.dx.se] = dst[e * c.dx.se] + src[e] if c.acc_dx else src[e]
            elif not c.acc_dx:
                for e in range(c.In):
                    dst[e * c.dx.se] = 0


cdef void mask_gradient(floating *typ, Call *c, int l, int tid) noexcept nogil:
    """dL/d(output of layer l-1) = dX * mask_l, in place in SCRATCH_DX (work rows)."""
    cdef Py_ssize_t t0, t1, t, e, DH = c.D * c.H
    cdef int b
    cdef floating *v
    cdef floating *m
    if c.layer[l].region[REGION_MASK] == NULL:
        return
    share(c.T, c.team, tid, 1, &t0, &t1)
    for t in range(t0, t1):
        for b in range(c.bs[t]):
            v = <floating*>c.scratch[SCRATCH_DX] + (c.start[t] + b) * DH
            m = mask_at(typ, c, &c.layer[l], t * c.B + b)
            for e in range(DH):
                v[e] = v[e] * m[e]


cdef void backward_thread(floating *typ, Call *c, int tid) noexcept nogil:
    """Thread tid's walk through the backward: per layer (top first) the time loop in
    reverse on its share of each step (thread_share, as the forward's), then dL/dh0 and
    dL/dc0, then the weight gradients and dL/d(input) as GEMMs shared by output rows."""
    cdef int l, s
    cdef const Arrangement *a
    cdef double since = 0
    cdef Share sh = thread_share(c, tid)
    for l in range(c.L - 1, -1, -1):
        start_carries(typ, c, l, &sh)
        for s in range(c.T):
            a = arrangement_of(c, l, s)
            step_gradients(typ, c, l, s, &sh, 1)
            if c.layer[l].full_o:
                meet_all(c, &sh)
                step_back_products(typ, c, l, s, &sh, True, a)
            step_gradients(typ, c, l, s, &sh, 2)
            meet_all(c, &sh)   # the products read every unit's dA
            # timed: step s-1's products, then step s up to here (no barrier between them)
            time_step(c, tid, l * c.T + s - 1 if s > 0 else -1, &since)
            step_back_products(typ, c, l, s, &sh, False, a)
        initial_gradients(typ, c, l, &sh)
        team_barrier(c.barrier, c.team)  # dG complete; carries no longer needed; SCRATCH_DX
                                         # (dy of l) consumed
        weight_gradients(typ, c, l, tid)
        team_barrier(c.barrier, c.team)
        if l > 0:
            mask_gradient(typ, c, l, tid)
        else:
            input_gradient(typ, c, tid)
        team_barrier(c.barrier, c.team)


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


cdef void gemm_into(floating *typ, Call *c, int tid, Mat a, Mat b, bint accumulate,
                    Mat dst) noexcept nogil:
    """dst (+)= A B; through the thread's part of SCRATCH_GRAD when BLAS cannot write dst
    in place."""
    cdef Mat tmp
    if addressable(dst):
        gemm(<floating>1, a, b, <floating>(1 if accumulate else 0), dst)
    else:
        tmp = mat(c.scratch[SCRATCH_GRAD] + tid * c.grad_stride * sizeof(floating), dst.rows,
                  dst.cols, dst.cols, 1)
        gemm(<floating>1, a, b, <floating>0, tmp)
        store(typ, tmp, dst, accumulate)
