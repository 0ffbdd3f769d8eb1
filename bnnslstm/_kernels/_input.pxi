# A layer's input: x (gathered into work rows when BLAS cannot read it as one matrix) or
# the layer below's output (masked by dropout, gathered with per-step batch sizes); read by
# the forward projection and again by the backward's weight gradients. Included by _lstm.pxi.


cdef Mat layer_input(floating *typ, Call *c, int l) noexcept nogil:
    """Layer l's input as [rows][X] in work-row order (see prepare_input)."""
    cdef Py_ssize_t DH = c.D * c.H
    if l == 0:
        if c.x_rows.p != NULL:
            return c.x_rows
        return mat(c.scratch[SCRATCH_X], c.rows, c.In, c.In, 1)
    if c.dropout == 0 and c.rows == <Py_ssize_t>c.T * c.B:
        return mat(c.layer[l - 1].region[REGION_OUTPUT], c.rows, DH, DH, 1)
    return mat(c.scratch[SCRATCH_IN], c.rows, DH, DH, 1)


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
                dst = <floating*>c.scratch[SCRATCH_X] + (c.start[t] + b) * c.In
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
            m = mask_at(typ, c, &c.layer[l], t * c.B + b)
            if make_mask and m != NULL:  # every position, padded ones too (as dropout_mask)
                sample = sample_key(key, t, b)
                for e in range(DH):
                    m[e] = <floating>unit_scale(sample, e, c.dropout, keep)
            if b >= c.bs[t]:
                continue
            src = out_at(typ, c, &c.layer[l - 1], t * c.B + b, 0)
            dst = <floating*>c.scratch[SCRATCH_IN] + (c.start[t] + b) * DH
            if m != NULL:
                for e in range(DH):
                    dst[e] = src[e] * m[e]
            else:
                for e in range(DH):
                    dst[e] = src[e]
    team_barrier(c.barrier, c.team)
