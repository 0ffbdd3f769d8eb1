# Gates: each gate's descriptors (input weights per layer, recurrent weights, peephole, bias)
# resolved and pointed at by every layer and direction of the call, forward weights or the
# backward's gradients; then the weights that lie one after another merged into one matrix
# per layer, so that one BLAS call serves every gate. Part of _plan.pyx (included there).

NO_PEEPHOLE, DIAGONAL, FULL = 0, 1, 2
# every gate's field names (for messages), forward and delta, built once
_GATE_FIELDS = {prefix + name: {part: f"{prefix}{name}.{part}"
                                for part in ("iw_desc[0]", "iw_desc[1]", "hw_desc", "cw_desc",
                                             "b_desc")}
                for prefix in ("", "layer_delta_params.") for name in GATE_FIELDS}


cdef tuple states(Plan plan, object owner, str prefix, bint written):
    """The hidden and cell state descriptors of ``owner`` (an LSTMDataDescriptor), each
    ``[L][D][B][H]``, resolved (None where absent)."""
    cdef tuple shape = (plan.L, plan.D, plan.B, plan.H)
    return (plan.tensor(owner.hidden_desc, shape, f"{prefix}.hidden_desc", written),
            plan.tensor(owner.cell_state_desc, shape, f"{prefix}.cell_state_desc", written))


cdef tuple gate_tensors(Plan plan, object gate, str name, bint delta):
    """A gate's descriptors, resolved: (W per layer, U, C, peephole kind, b). With ``delta``
    they are the gradients that receive them: every one optional and written."""
    cdef int L = plan.L, D = plan.D
    cdef Py_ssize_t H = plan.H
    cdef Tensor U, C, b
    cdef dict fields = _GATE_FIELDS[name]
    W = layer_weights(plan, gate, name, delta)
    U = plan.tensor(gate.hw_desc, (L, D, H, H), fields["hw_desc"], delta, delta)
    C, kind = None, NO_PEEPHOLE
    if gate.cw_desc is not None:
        desc = gate.cw_desc
        if not isinstance(desc, NDArrayDescriptor):
            raise BNNSError(f"{name}.cw_desc: expected an NDArrayDescriptor or None, "
                            f"got {type(desc).__name__}")
        # the kind before the zero sizes are filled: the layout's rank decides
        if layout_rank(desc.layout, fields["cw_desc"]) in (1, 3):
            C, kind = plan.tensor(desc, (L, D, H), fields["cw_desc"], delta, True,
                                  "a diagonal peephole [L][D][H] "
                                  "(rank 3, or one [H] vector)"), DIAGONAL
        else:
            C, kind = plan.tensor(desc, (L, D, H, H), fields["cw_desc"], delta, True,
                                  "a full peephole [L][D][H][H] "
                                  "(rank 4, or one [H][H] matrix)"), FULL
    b = plan.tensor(gate.b_desc, (L, D, H), fields["b_desc"], delta)
    return W, U, C, kind, b


cdef list layer_weights(Plan plan, object gate, str name, bint delta):
    """The input weights of every layer: [(Tensor, leading index)] (Tensor None where
    not given: gradients only)."""
    cdef int L = plan.L, D = plan.D, l
    cdef Py_ssize_t I = plan.In, H = plan.H
    cdef Tensor every, later
    cdef dict fields = _GATE_FIELDS[name]
    pair = gate.iw_desc
    if pair is None:
        first = rest = None
    elif isinstance(pair, (tuple, list)) and len(pair) == 2:
        first, rest = pair
    else:
        given = type(pair).__name__ if not isinstance(pair, (tuple, list)) else f"{len(pair)} items"
        raise BNNSError(f"{name}.iw_desc: expected a pair (layer 0's input weights, layers "
                        f"1...L-1's or None), got {given}; e.g. iw_desc=(desc, None) for one layer")
    if first is None:
        if delta:
            later = (plan.tensor(rest, (L - 1, D, H, D * H), fields["iw_desc[1]"], True)
                     if L > 1 else None)
            return [(None, 0)] + [(later, l) for l in range(L - 1)]
        raise BNNSError(f"{name}.iw_desc[0]: required")
    if not isinstance(first, NDArrayDescriptor):
        raise BNNSError(f"{name}.iw_desc[0]: expected an NDArrayDescriptor, "
                        f"got {type(first).__name__}")
    # the kind before the zero sizes are filled: rank 4 or more, with iw_desc[1] absent or
    # the same descriptor, covers every layer; anything else is layer 0's [D][H][I]
    if layout_rank(first.layout, fields["iw_desc[0]"]) >= 4 and (rest is None or rest is first):
        if L > 1 and I != D * H:
            raise BNNSError(f"{name}.iw_desc[0]: a rank-4 layout covers every layer, which needs "
                            f"input_size == D*hidden_size ({I} != {D * H}); give layer 0's "
                            f"[D][H][I] (rank 3) and iw_desc[1]")
        every = plan.tensor(first, (L, D, H, I), fields["iw_desc[0]"], delta, False,
                            "a rank-4 layout covers every layer, [L][D][H][I]")
        return [(every, l) for l in range(L)]
    weights = [(plan.tensor(first, (D, H, I), fields["iw_desc[0]"], delta, False), 0)]
    if L > 1:
        if rest is None and not delta:
            raise BNNSError(f"{name}.iw_desc[1]: required when num_layers > 1 "
                            "(or give every layer in iw_desc[0])")
        if rest is first and delta:
            raise BNNSError(f"{name}.iw_desc[1]: the same descriptor as iw_desc[0] but they "
                            "receive different layers")
        later = plan.tensor(rest, (L - 1, D, H, D * H), fields["iw_desc[1]"], delta)
        weights += [(later, l) for l in range(L - 1)]
    return weights


cdef int fill_gate(Plan plan, tuple tensors, int k, bint delta, Layer *layers) except -1:
    """Point gate k of every layer and direction of ``layers`` at its resolved tensors: in
    place, or (forward weights only) a copy where BLAS cannot address them."""
    cdef int l, d
    cdef Tensor U, C, b
    cdef Gate *g
    W, U, C, kind, b = tensors
    for l in range(plan.L):
        for d in range(plan.D):
            g = &layers[l].d[d].g[k]
            tensor, index = W[l]
            if tensor is not None:
                g.W = (<Tensor>tensor).matrix(index, d) if delta else plan.weight(tensor, index, d)
                g.acc_W = accumulates(plan, tensor)
            if U is not None:
                g.U = U.matrix(l, d) if delta else plan.weight(U, l, d)
                g.acc_U = accumulates(plan, U)
            if kind == FULL:
                g.C = C.matrix(l, d) if delta else plan.weight(C, l, d)
            elif kind == DIAGONAL:
                g.cdiag = C.vector(l, d)
            if C is not None:
                g.acc_C = accumulates(plan, C)
            if b is not None:
                g.b = b.vector(l, d)
                g.acc_b = accumulates(plan, b)
    return 0


cdef bint accumulates(Plan plan, Tensor t) except -1:
    """Whether a written gradient adds to its destination (BACKPROP_ACCUMULATE) or sets it."""
    if t is None or t not in plan.writes:
        return False
    flags = t.desc.flags
    if flags != SET and flags != ACCUMULATE:
        raise BNNSError(f"{t.field}.flags: expected BACKPROP_SET or BACKPROP_ACCUMULATE, "
                        f"got {flags!r}")
    return flags == ACCUMULATE


cdef void merge(Plan plan, Layer *lay) noexcept:
    """The gates' (and directions') weights as one matrix where they lie one after another."""
    cdef Mat blocks[8]
    cdef int d, k
    for d in range(plan.D):
        for k in range(4):
            blocks[k] = lay.d[d].g[k].U
        lay.d[d].U4 = merged(blocks, 4, plan.H, plan.c.itemsize)
    for d in range(plan.D):
        for k in range(4):
            blocks[4 * d + k] = lay.d[d].g[k].W
    lay.W4 = merged(blocks, 4 * plan.D, plan.H, plan.c.itemsize)
    lay.full_o = lay.d[0].g[3].C.p != NULL


cdef Mat merged(Mat *blocks, int count, Py_ssize_t rows, Py_ssize_t itemsize) noexcept:
    """blocks[0..count) (each rows x cols) as one (count*rows) x cols matrix when they lie
    one after the other at a uniform row stride; else an absent Mat."""
    cdef Mat first = blocks[0], out
    cdef Py_ssize_t rs
    cdef int k
    if first.p == NULL:
        return mat(NULL, 0, 0, 0, 0)
    rs = first.rs if rows > 1 or count == 1 else (blocks[1].p - first.p) // itemsize
    for k in range(count):
        if blocks[k].p == NULL or blocks[k].p != first.p + k * rows * rs * itemsize:
            return mat(NULL, 0, 0, 0, 0)
        if (rows > 1 and blocks[k].rs != rs) or (first.cols > 1 and blocks[k].cs != first.cs):
            return mat(NULL, 0, 0, 0, 0)
    out = mat(first.p, count * rows, first.cols, rs, first.cs)
    return out if rs > 0 and addressable(out) else mat(NULL, 0, 0, 0, 0)
