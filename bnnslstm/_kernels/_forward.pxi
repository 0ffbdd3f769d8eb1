# The forward tier: per layer the input projection of every step in one GEMM, then per
# step the recurrent products (one BLAS arrangement of the planner's) and the fused cell
# pass, then the final states; forward_thread is one team member's walk through it all.
# Included by _lstm.pxi.


cdef void project(floating *typ, Call *c, int l, int tid) noexcept nogil:
    """The input projection of every step and both directions, in work rows:
    proj[rows][D*4H] = input W^T. The team splits the larger of the two dimensions, so that
    the operand every thread packs whole (BLAS packs both) is the smaller one."""
    cdef Layer *lay = &c.layer[l]
    cdef Py_ssize_t H = c.H, G = 4 * c.H, DG = c.D * 4 * c.H, c0, c1, r0, r1, j, n
    cdef Mat inp = layer_input(typ, c, l)
    cdef Mat proj = mat(projection(c, l), c.rows, DG, DG, 1)
    cdef int d, k
    share_larger(c.rows, DG, c.team, tid, &r0, &r1, &c0, &c1)
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
                gemm(<floating>1, inp,
                     transposed(block(lay.d[d].g[k].W, j, 0, n, lay.X, sizeof(floating))),
                     <floating>0, block(proj, 0, d * G + k * H + j, r1 - r0, n, sizeof(floating)))


cdef inline char* projection(const Call *c, int l) noexcept nogil:
    """Where layer l's input projection lies: the gates region itself when the work rows
    are the cache's rows (every step full), else scratch (active rows only)."""
    if c.rows == <Py_ssize_t>c.T * c.B:
        return c.layer[l].region[REGION_GATES]
    return c.scratch[SCRATCH_DG]


cdef void step_products(floating *typ, Call *c, int l, int s, const Share *sh,
                        bint output_peephole, const Arrangement *a) noexcept nogil:
    """The thread's rows and samples (sh) of step s's products S[D*4H][B]: U h_prev^T, plus
    the full peepholes of gates i, f, g times c_prev^T; with output_peephole, instead add
    the output gate's full peephole times the new cell. Where S lies and how BLAS is
    called: the arrangement (Arrangement in _call.pxd: S in SCRATCH_S batch-fastest, or
    added into the step's projection rows; h_prev in place or from SCRATCH_HT; chunks;
    gemm or gemv)."""
    cdef Layer *lay = &c.layer[l]
    cdef Direction *dr
    cdef Py_ssize_t H = c.H, G = 4 * c.H, DH = c.D * c.H, DG = c.D * 4 * c.H, B = c.B, j, n, lo, hi
    cdef Py_ssize_t e, carried0, carried1, initial0, initial1
    cdef int d, k, t, p, bt, n_prev
    cdef bint into = a.form & FORM_INTO_PROJECTION != 0
    cdef Mat S, h_prev, c_prev, h_init, c_init, cell
    for d in range(c.D):
        if sh.units:   # the thread's units in all four gates (gate_rows)
            n = overlap(sh.u0, sh.u1, d * H, (d + 1) * H, &lo)
        else:          # rows lo..hi of the direction's 4H
            n = overlap(sh.r0, sh.r1, d * G, (d + 1) * G, &lo)
        if n == 0:
            continue
        hi = lo + n
        dr = &lay.d[d]
        t = step_time(c, d, s)
        p = previous(c, d, t)
        bt = c.bs[t]
        e = sh.b1 if sh.b1 < bt else bt   # the thread's samples of the step: [b0, e)
        if sh.b0 >= e:
            continue
        n_prev = n_previous(c, d, t)
        # its carried samples (the first n_prev) and those from the initial state
        carried0, carried1 = min(sh.b0, n_prev), min(e, n_prev)
        initial0, initial1 = max(sh.b0, n_prev) - n_prev, max(e, n_prev) - n_prev
        if into:  # the projection's rows of step t, seen as [G][bt] (unit stride down a column)
            S = mat(projection(c, l) + (c.start[t] * DG + d * G) * sizeof(floating), G, bt, 1, DG)
        elif a.form & FORM_SAMPLE_MAJOR:   # [B][D*4H] in scratch, the same [G][bt] view
            S = mat(c.scratch[SCRATCH_S] + d * G * sizeof(floating), G, bt, 1, DG)
        else:   # [D][4H][B] in scratch, batch-fastest
            S = mat(c.scratch[SCRATCH_S] + d * G * B * sizeof(floating), G, bt, B, 1)
        if a.form & FORM_STATE_COPY:
            h_prev = mat(<char*>state_copy_at(typ, c, s, d), n_prev, H, 1, B)
        else:
            h_prev = mat(out_at(typ, c, lay, <Py_ssize_t>p * B, d), n_prev, H, DH, 1)
        c_prev = mat(cells_at(typ, c, lay, <Py_ssize_t>p * B, d), n_prev, H, DH, 1)
        h_prev = block(h_prev, carried0, 0, carried1 - carried0, H, sizeof(floating))
        c_prev = block(c_prev, carried0, 0, carried1 - carried0, H, sizeof(floating))
        h_init = block(dr.h0, n_prev + initial0, 0, initial1 - initial0, H, sizeof(floating))
        c_init = block(dr.c0, n_prev + initial0, 0, initial1 - initial0, H, sizeof(floating))
        S = block(S, 0, sh.b0, G, e - sh.b0, sizeof(floating))
        if output_peephole:
            n = gate_rows(c, sh, d, 3, &j)
            if n > 0 and dr.g[3].C.p != NULL:
                cell = mat(cells_at(typ, c, lay, <Py_ssize_t>t * B + sh.b0, d), e - sh.b0, H,
                           DH, 1)
                gemm_as(a.by_vectors, <floating>1, block(dr.g[3].C, j, 0, n, H, sizeof(floating)),
                        transposed(cell), <floating>1,
                        block(S, 3 * H + j, 0, n, S.cols, sizeof(floating)))
            continue
        if dr.U4.p != NULL and not sh.units:   # the rows lo..hi in one product
            product(typ, a, block(dr.U4, lo, 0, hi - lo, H, sizeof(floating)), h_prev, h_init,
                    block(S, lo, 0, hi - lo, S.cols, sizeof(floating)), into)
        for k in range(4):
            n = gate_rows(c, sh, d, k, &j)
            if n == 0:
                continue
            if dr.U4.p != NULL and sh.units:
                product(typ, a, block(dr.U4, k * H + j, 0, n, H, sizeof(floating)), h_prev,
                        h_init, block(S, k * H + j, 0, n, S.cols, sizeof(floating)), into)
            elif dr.U4.p == NULL:
                product(typ, a, block(dr.g[k].U, j, 0, n, H, sizeof(floating)), h_prev, h_init,
                        block(S, k * H + j, 0, n, S.cols, sizeof(floating)), into)
            if k < 3 and dr.g[k].C.p != NULL:
                product(typ, a, block(dr.g[k].C, j, 0, n, H, sizeof(floating)), c_prev, c_init,
                        block(S, k * H + j, 0, n, S.cols, sizeof(floating)), True)


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
        gemm_as(a.by_vectors, <floating>1, w, transposed(carried),
                <floating>(1 if accumulate else 0), block(part, 0, 0, n, n_prev, sizeof(floating)))
        if part.cols > n_prev:
            rest = block(part, 0, n_prev, n, part.cols - n_prev, sizeof(floating))
            if initial.p != NULL:
                gemm_as(a.by_vectors, <floating>1, w, transposed(initial),
                        <floating>(1 if accumulate else 0), rest)
            else:
                zero_state_product(typ, w, rest, accumulate)
        r += n


cdef void zero_state_product(floating *typ, Mat weights, Mat S, bint accumulate) noexcept nogil:
    """S (+)= weights 0^T, the product with an absent (zero) initial state, without BLAS:
    0 in each row of the weights that is finite, NaN in a row holding a NaN or an infinity
    (0 * inf is NaN), as the product with a stored zero state gives (and torch.nn.LSTM)."""
    cdef Py_ssize_t i, j
    cdef floating value, w
    cdef floating *row
    cdef bint finite
    for i in range(weights.rows):
        row = <floating*>weights.p + i * weights.rs
        finite = True
        for j in range(weights.cols):
            w = row[j * weights.cs]
            finite = finite & (w - w == 0)    # false for NaN and for an infinity
        value = 0 if finite else <floating>NAN
        row = <floating*>S.p + i * S.rs
        for j in range(S.cols):
            row[j * S.cs] = (row[j * S.cs] + value) if accumulate else value


cdef void step_cells(floating *typ, Call *c, int l, int s, const Share *sh,
                     int part, const Arrangement *a, bint write_hT) noexcept nogil:
    """The fused elementwise pass of step s on the thread's part of it (part 1: gates i, f, g
    and the cell; part 2: output gate and h; 3: both): its hidden units u0..u1 of the D*H
    and samples b0..b1, or with sh.cells_by_samples every unit of its share of the step's
    active samples (and of its padded positions, where y and a training cache hold 0). The
    step's products are in SCRATCH_S, or already in the projection (FORM_INTO_PROJECTION);
    write_hT also stores h batch-fastest in SCRATCH_HT for the next step's products
    (FORM_STATE_COPY)."""
    cdef Layer *lay = &c.layer[l]
    cdef Py_ssize_t H = c.H, G = 4 * c.H, DG = c.D * 4 * c.H, B = c.B
    cdef Py_ssize_t j0, j, n, m, row, wrow, cps, b0, e, p0, p1
    cdef int d, t, bt, b
    cdef bint last = l == c.L - 1 and c.y.p != NULL
    cdef floating *c_prev
    cdef floating *g
    cdef floating *pre
    cdef floating *act_h_c
    cdef floating *cell
    cdef floating *h
    cdef floating *y
    cdef char *proj = projection(c, l)
    cdef char *S = c.scratch[SCRATCH_S]
    cdef bint products_apart = a.form & FORM_INTO_PROJECTION == 0
    cdef bint sample_major = a.form & FORM_SAMPLE_MAJOR != 0
    # the products as the cells read them: sample-major, [B][D*4H], where batch-fastest
    # products are first copied (to the second half of SCRATCH_S), a tile at a time
    cdef char *S_rows = S if sample_major else S + DG * B * sizeof(floating)
    cdef int k
    cdef floating *s_at
    for d in range(c.D):
        t = step_time(c, d, s)
        bt = c.bs[t]
        if sh.cells_by_samples:   # whole rows; the active samples shared, then the padded
            n, j0 = H, 0
            share(bt, c.team, sh.tid, 1, &b0, &e)
            share(B - bt, c.team, sh.tid, 1, &p0, &p1)
            p0, p1 = p0 + bt, p1 + bt
        else:   # the thread's units of its samples: [b0, e) active, [p0, p1) padded
            n = overlap(sh.u0, sh.u1, d * H, (d + 1) * H, &j0)
            b0, e = sh.b0, (sh.b1 if sh.b1 < bt else bt)
            p0, p1 = (bt if bt > sh.b0 else sh.b0), sh.b1
        if n == 0:
            continue
        if products_apart and not sample_major:   # the gates this part reads
            for k in range(4):
                if part & (2 if k == 3 else 1):
                    transpose(typ, <floating*>S + (d * G + k * H + j0) * B, B,
                              <floating*>S_rows + d * G + k * H + j0, DG, n, b0, e)
        for b in range(b0, e):
            row = t * B + b
            wrow = c.start[t] + b
            c_prev = prev_state(typ, c, lay, d, t, b, True, &cps)
            g = gates_at(typ, c, lay, row, d)
            pre = preact_at(typ, c, lay, row, d)
            act_h_c = act_h_c_at(typ, c, lay, row, d)
            cell = cells_at(typ, c, lay, row, d)
            h = out_at(typ, c, lay, row, d)
            y = NULL
            if last:
                y = <floating*>c.y.p + t * c.y.st + b * c.y.sb + d * H * c.y.se
            for j in range(j0, j0 + n, 128):  # CHUNK units at a time
                m = j0 + n - j
                s_at = NULL   # the step's products of unit j (already in proj: NULL)
                if products_apart:
                    s_at = <floating*>S_rows + b * DG + d * G + j
                cell_chunk(typ, c, m if m < CHUNK else CHUNK, H,
                           <floating*>proj + wrow * DG + d * G + j, g + j, at(<char*>pre, j, typ),
                           s_at,
                           <floating*>lay.bias + d * G + j, at(lay.cdiag, d * G + j, typ),
                           at(<char*>c_prev, j * cps, typ), cps,
                           cell + j, at(<char*>act_h_c, j, typ), h + j,
                           at(<char*>y, j * c.y.se, typ), c.y.se, part)
        if write_hT and part & 2 and e > b0:   # h batch-fastest for the next step
            transpose(typ, out_at(typ, c, lay, <Py_ssize_t>t * B + b0, d) + j0, c.D * H,
                      state_copy_at(typ, c, s + 1, d) + j0 * B + b0, B, e - b0, 0, n)
        if part & 2:   # padded positions: y and a training cache's regions hold 0
            for b in range(p0, p1):
                row = t * B + b
                if c.zero_padded:
                    zero(gates_at(typ, c, lay, row, d), G, j0, n)
                    zero(preact_at(typ, c, lay, row, d), G, j0, n)
                    zero(cells_at(typ, c, lay, row, d), 0, j0, n)
                    zero(out_at(typ, c, lay, row, d), 0, j0, n)
                    zero(act_h_c_at(typ, c, lay, row, d), 0, j0, n)
                if last:
                    y = <floating*>c.y.p + t * c.y.st + b * c.y.sb + d * H * c.y.se
                    for j in range(j0, j0 + n):
                        y[j * c.y.se] = 0


cdef void transpose(floating *typ, const floating *src, Py_ssize_t src_stride,
                    floating *dst, Py_ssize_t dst_stride, Py_ssize_t rows, Py_ssize_t c0,
                    Py_ssize_t c1) noexcept nogil:
    """dst[c * dst_stride + r] = src[r * src_stride + c] for r < rows, c0 <= c < c1, in
    16 x 16 tiles (a tile's 16 source lines stay in L1 while its columns walk them): the
    step's products from batch-fastest to sample-major for the cells, and h back to
    batch-fastest for the next step's products, instead of one cache line per value."""
    cdef Py_ssize_t r0, cc, r, col, re, ce
    for r0 in range(0, rows, 16):
        re = r0 + 16 if r0 + 16 < rows else rows
        for cc in range(c0, c1, 16):
            ce = cc + 16 if cc + 16 < c1 else c1
            for col in range(cc, ce):
                for r in range(r0, re):
                    dst[col * dst_stride + r] = src[r * src_stride + col]


cdef inline void zero(floating *row, Py_ssize_t gates, Py_ssize_t j0, Py_ssize_t n) noexcept nogil:
    """Units [j0, j0+n) of a row: of each of the 4 gates (gates = 4H: the gate stride / 4) or
    of the row itself (gates = 0); nothing for an absent row (NULL)."""
    cdef int k
    if row == NULL:
        return
    if gates == 0:
        memset(row + j0, 0, n * sizeof(floating))
    else:
        for k in range(4):
            memset(row + k * (gates // 4) + j0, 0, n * sizeof(floating))


cdef void final_states(floating *typ, Call *c, int l, int tid) noexcept nogil:
    """h_T and c_T of every sample: its state after its own last step (the thread's samples)."""
    cdef Layer *lay = &c.layer[l]
    cdef Direction *dr
    cdef Py_ssize_t b0, b1, b, j, row
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
            row = <Py_ssize_t>t * c.B + b
            if dr.hn.p != NULL:
                src = out_at(typ, c, lay, row, d)
                dst = <floating*>dr.hn.p + b * dr.hn.rs
                for j in range(c.H):
                    dst[j * dr.hn.cs] = src[j]
            if dr.cn.p != NULL:
                src = cells_at(typ, c, lay, row, d)
                dst = <floating*>dr.cn.p + b * dr.cn.rs
                for j in range(c.H):
                    dst[j * dr.cn.cs] = src[j]


cdef void forward_thread(floating *typ, Call *c, int tid) noexcept nogil:
    """Thread tid's walk through the forward: per layer the input (and its dropout), the
    projection, then the time loop on its share of each step (thread_share: with the rows
    split the team meets between the phases of every step; the other splits leave each
    thread on work no other touches until the layer ends), then the final states."""
    cdef int l, s
    cdef const Arrangement *a
    cdef bint write_hT
    cdef int layout
    cdef double since = 0
    cdef Share sh = thread_share(c, tid)
    for l in range(c.L):
        prepare_input(typ, c, l, tid, True)
        project(typ, c, l, tid)
        team_barrier(c.barrier, c.team)
        time_step(c, tid, -1, &since)
        layout = -1   # SCRATCH_S's layout at the layer's last step that used it (-1: none)
        for s in range(c.T):
            a = arrangement_of(c, l, s)
            if not a.form & FORM_INTO_PROJECTION:
                layout = a.form & FORM_SAMPLE_MAJOR
            write_hT = s + 1 < c.T and arrangement_of(c, l, s + 1).form & FORM_STATE_COPY != 0
            step_products(typ, c, l, s, &sh, False, a)
            meet(c, &sh)
            if c.layer[l].full_o:
                step_cells(typ, c, l, s, &sh, 1, a, False)
                meet_all(c, &sh)   # the output gate's full peephole reads every new cell
                step_products(typ, c, l, s, &sh, True, a)
                meet(c, &sh)
                step_cells(typ, c, l, s, &sh, 2, a, write_hT)
            else:
                step_cells(typ, c, l, s, &sh, 3, a, write_hT)
            meet_all(c, &sh)       # the next step's products read every unit's h
            if (not sh.meet_steps and s + 1 < c.T
                    and other_layout(layout, arrangement_of(c, l, s + 1))):
                # the products' scratch changes layout at the next step (a schedule mixing
                # arrangements): a thread's samples in one layout lie on others' in the other.
                # Against the last step that used the scratch, not step s: steps into the
                # projection between them leave a thread free to run ahead onto another's
                # products still in the old layout
                team_barrier(c.barrier, c.team)
                layout = -1
            time_step(c, tid, l * c.T + s, &since)
        if not sh.meet_steps:   # the layer's every row, before the next layer and final states
            team_barrier(c.barrier, c.team)
        final_states(typ, c, l, tid)


cdef inline bint other_layout(int layout, const Arrangement *b) noexcept nogil:
    """Whether a step's arrangement puts its products in SCRATCH_S in another layout
    (batch-fastest, sample-major) than ``layout`` (a FORM_SAMPLE_MAJOR bit; -1: none)."""
    return (layout >= 0 and not b.form & FORM_INTO_PROJECTION
            and (b.form & FORM_SAMPLE_MAJOR) != layout)


cdef inline void meet(Call *c, const Share *sh) noexcept nogil:
    """The team's meeting between two phases of a step, where the split needs one."""
    if sh.meet:
        team_barrier(c.barrier, c.team)


cdef inline void meet_all(Call *c, const Share *sh) noexcept nogil:
    """The team's meeting where the next phase reads every unit's result (the rows and
    units splits)."""
    if sh.meet_steps:
        team_barrier(c.barrier, c.team)
