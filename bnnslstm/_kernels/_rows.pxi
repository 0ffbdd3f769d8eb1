# Where things lie, for every tier of the kernels: a thread's share of a range, the order
# in which each direction walks time, and one accessor per region of the training cache
# and per carried array (the row layouts are in _call.pxd). Included by _lstm.pxi.


cdef inline void share(Py_ssize_t n, int team, int tid, Py_ssize_t grain, Py_ssize_t *lo,
                       Py_ssize_t *hi) noexcept nogil:
    """Thread tid's part [lo, hi) of range(n): near-equal, starting on multiples of grain."""
    lo[0] = (n * tid // team) // grain * grain
    hi[0] = n if tid == team - 1 else (n * (tid + 1) // team) // grain * grain


cdef inline void share_larger(Py_ssize_t rows, Py_ssize_t cols, int team, int tid,
                              Py_ssize_t *r0, Py_ssize_t *r1, Py_ssize_t *c0,
                              Py_ssize_t *c1) noexcept nogil:
    """Thread tid's block [r0, r1) x [c0, c1) of a GEMM's rows x cols result: a share of the
    larger dimension, the other whole, so that the operand each thread's call packs whole
    (BLAS packs both) is the smaller one."""
    if rows > cols:   # the thread's rows, every column
        share(rows, team, tid, GRAIN, r0, r1)
        c0[0], c1[0] = 0, cols
    else:             # every row, the thread's columns
        r0[0], r1[0] = 0, rows
        share(cols, team, tid, GRAIN, c0, c1)


ctypedef struct Share:
    # a thread's part of every step of a layer (thread_share)
    Py_ssize_t r0, r1       # rows of the step's products, of D*4H (not with units)
    Py_ssize_t u0, u1       # hidden units of the elementwise passes, of D*H
    Py_ssize_t b0, b1       # samples, of B
    int tid                 # the thread's place in the team
    bint cells_by_samples   # the forward's elementwise pass: every unit of the thread's part
                            # of each step's samples (SPLIT_ROWS_SAMPLES), not u0..u1, b0..b1
    bint units              # the forward products' rows are those of units u0..u1, all gates
    bint meet               # whether the phases of a step wait for the whole team
    bint meet_steps         # whether the team meets between steps (the next step's
                            # products read every unit's h), and where a phase reads
                            # every unit's result (the backward's dA, full peepholes)


cdef inline Share thread_share(const Call *c, int tid) noexcept nogil:
    """Thread tid's part of each step, by the call's split (Arrangement.split): a
    directions split needs a team of two on two directions, else the rows split runs; the
    rows-and-samples split is the rows split but for the forward's cells."""
    cdef Share sh
    cdef int split = c.arrangement[0].split
    sh.r0, sh.r1, sh.u0, sh.u1, sh.b0, sh.b1 = 0, c.D * 4 * c.H, 0, c.D * c.H, 0, c.B
    sh.units = sh.meet = sh.meet_steps = False
    if split == SPLIT_DIRECTIONS and c.team == 2 and c.D == 2:
        sh.r0, sh.r1 = tid * 4 * c.H, (tid + 1) * 4 * c.H
        sh.u0, sh.u1 = tid * c.H, (tid + 1) * c.H
    elif split == SPLIT_SAMPLES:
        share(c.B, c.team, tid, 1, &sh.b0, &sh.b1)
    elif split == SPLIT_UNITS:
        share(c.D * c.H, c.team, tid, GRAIN, &sh.u0, &sh.u1)
        sh.r0 = sh.r1 = 0
        sh.units = sh.meet_steps = True
    else:
        share(c.D * 4 * c.H, c.team, tid, GRAIN, &sh.r0, &sh.r1)
        share(c.D * c.H, c.team, tid, 8, &sh.u0, &sh.u1)
        sh.meet = sh.meet_steps = True
    sh.tid = tid
    sh.cells_by_samples = split == SPLIT_ROWS_SAMPLES
    return sh


cdef inline Py_ssize_t overlap(Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t a, Py_ssize_t b,
                               Py_ssize_t *start) noexcept nogil:
    """The part of [lo, hi) inside [a, b), as (start - a, count)."""
    cdef Py_ssize_t s = lo if lo > a else a
    cdef Py_ssize_t e = hi if hi < b else b
    start[0] = s - a
    return e - s if e > s else 0


cdef inline Py_ssize_t gate_rows(const Call *c, const Share *sh, int d, int k,
                                 Py_ssize_t *j) noexcept nogil:
    """The thread's rows of gate k of direction d in a step's forward products: how many,
    from unit j of the gate."""
    if sh.units:
        return overlap(sh.u0, sh.u1, d * c.H, (d + 1) * c.H, j)
    return overlap(sh.r0, sh.r1, (4 * d + k) * c.H, (4 * d + k + 1) * c.H, j)


cdef inline floating* at(char *base, Py_ssize_t offset, floating *typ) noexcept nogil:
    """base + offset elements (NULL stays NULL)."""
    return NULL if base == NULL else <floating*>base + offset


# ---------------------------------------------------------------------------------- time
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
    """The time index of direction d's s-th step."""
    return s if d == 0 else c.T - 1 - s


# ---------------------------------------------------------------------------------- cache rows
# Row ``row`` = t*B + b of layer ``lay``'s regions, direction d: the [4][H] gate rows
# (i, f, g, o, H apart) or the [H] unit rows. Absent regions (preact, act_h_c, mask) give
# NULL.
cdef inline floating* gates_at(floating *typ, const Call *c, const Layer *lay, Py_ssize_t row,
                               int d) noexcept nogil:
    return <floating*>lay.region[REGION_GATES] + (row * c.D + d) * 4 * c.H


cdef inline floating* preact_at(floating *typ, const Call *c, const Layer *lay, Py_ssize_t row,
                                int d) noexcept nogil:
    return at(lay.region[REGION_PREACT], (row * c.D + d) * 4 * c.H, typ)


cdef inline floating* cells_at(floating *typ, const Call *c, const Layer *lay, Py_ssize_t row,
                               int d) noexcept nogil:
    return <floating*>lay.region[REGION_CELLS] + (row * c.D + d) * c.H


cdef inline floating* act_h_c_at(floating *typ, const Call *c, const Layer *lay,
                                 Py_ssize_t row, int d) noexcept nogil:
    return at(lay.region[REGION_ACT_H_C], (row * c.D + d) * c.H, typ)


cdef inline floating* out_at(floating *typ, const Call *c, const Layer *lay, Py_ssize_t row,
                             int d) noexcept nogil:
    return <floating*>lay.region[REGION_OUTPUT] + (row * c.D + d) * c.H


cdef inline floating* mask_at(floating *typ, const Call *c, const Layer *lay,
                              Py_ssize_t row) noexcept nogil:
    """The dropout scale of layer lay's input at row (both directions' D*H units)."""
    return at(lay.region[REGION_MASK], row * c.D * c.H, typ)


cdef inline floating* prev_state(floating *typ, const Call *c, const Layer *lay, int d, int t,
                                 int b, bint cells, Py_ssize_t *stride) noexcept nogil:
    """The state (the cell with ``cells``, else h) that step t of direction d starts from,
    for sample b: the previous step's row, or the initial state (h0/c0), or NULL (zeros);
    ``stride`` receives the element stride between its units."""
    cdef Mat init = lay.d[d].c0 if cells else lay.d[d].h0
    cdef Py_ssize_t row
    if b < n_previous(c, d, t):
        row = <Py_ssize_t>previous(c, d, t) * c.B + b
        stride[0] = 1
        return cells_at(typ, c, lay, row, d) if cells else out_at(typ, c, lay, row, d)
    if init.p != NULL:
        stride[0] = init.cs
        return <floating*>init.p + b * init.rs
    stride[0] = 0
    return NULL


cdef inline floating* state_copy_at(floating *typ, const Call *c, int s, int d) noexcept nogil:
    """Direction d's batch-fastest copy of h ([H][B], FORM_STATE_COPY) that step s's
    products read and step s-1's cells write: half s % 2 of SCRATCH_HT, so that with the
    units split a thread's cells never write the half another thread's products still read."""
    return <floating*>c.scratch[SCRATCH_HT] + (s % 2 * c.D + d) * c.H * c.B


# ---------------------------------------------------------------------------------- carries
cdef enum:
    CARRY_H = 0     # dL/dh flowing back into the step (from the later step, or dL/dh_T)
    CARRY_C = 1     # dL/dc likewise
    CARRY_DC = 2    # dL/dc' of the step being differentiated


cdef inline floating* carry_at(floating *typ, const Call *c, int which, int d,
                               Py_ssize_t b) noexcept nogil:
    """Sample b's [H] row of a backward carry (SCRATCH_CARRY is [3][D][B][H])."""
    return <floating*>c.scratch[SCRATCH_CARRY] + ((which * c.D + d) * c.B + b) * c.H
