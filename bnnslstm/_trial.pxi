# The planner's trials: one layer of a call, its first steps, with one arrangement of the
# step products, on the planner's own buffers (bnnslstm/planner.py compares the bytes they
# give and times their steps). Part of _plan.pyx (included there).


cdef Py_ssize_t trial_bytes(Plan plan) except -1:
    """Bytes of the regions buffer a forward trial writes: the cache's layer 0."""
    cdef int r
    lay_out_cache(plan)
    if plan.L == 1:
        return plan.cache_bytes
    return min(plan.offsets[N_REGIONS + r] for r in range(N_REGIONS)
               if plan.offsets[N_REGIONS + r] >= 0)


cdef object run_trial(Plan plan, bint backward, arrangement, regions, scratch, int steps,
                      step_seconds):
    """Run the call's first ``steps`` time steps of one layer with ``arrangement``, on the
    planner's own buffers only: the forward's layer 0 into ``regions`` (a zeroed uint8
    array of trial_bytes) without y or the final states; the backward's top layer from
    the bound cache with every gradient left uncomputed but dL/d(pre-activation), which
    ends in ``scratch`` (a uint8 array of scratch_bytes for the bound team).
    ``step_seconds`` (float64, at least ``steps``) receives each step's time at its
    index, as for schedule(). Returns views of the bytes the arrangement decides (valid
    until the buffers are used again): the regions' rows of those steps (gates, cells,
    output), or the backward's dL/d(pre-activation) rows, to compare two arrangements bit
    for bit (same_bytes). The call (its
    bound buffers, outputs and schedule) is as before when this returns."""
    cdef Call saved = plan.c
    cdef Py_ssize_t nbytes = <Py_ssize_t>plan.L * sizeof(Layer), rows, width, r
    cdef Layer *layers
    cdef Layer *grads
    cdef Direction *dr
    cdef double[::1] seconds = step_seconds
    cdef int l, d, k
    if not 1 <= steps <= plan.T or seconds.shape[0] < steps:
        raise ValueError("trial: steps must be 1 to T, step_seconds hold as many")
    if scratch.nbytes < scratch_sizes(plan, plan.c.team, backward) or (
            not backward and regions.nbytes < trial_bytes(plan)):
        raise ValueError("trial: buffers too small")
    layers = <Layer*>PyMem_Malloc(nbytes)
    grads = <Layer*>PyMem_Malloc(nbytes)
    if layers == NULL or grads == NULL:
        PyMem_Free(layers)
        PyMem_Free(grads)
        raise MemoryError()
    memcpy(layers, plan.c.layer, nbytes)
    memcpy(grads, plan.c.grad, nbytes)
    kept = plan.picks, plan.timing
    rows = 0
    for r in range(steps):
        rows += plan.batch_sizes[r]
    try:
        plan.schedule((arrangement,))
        if not backward:   # written: layer 0's regions (y and h_n, c_n not at all)
            plan.c.y.p = NULL
            for l in range(plan.L):
                for d in range(plan.D):
                    plan.c.layer[l].d[d].hn.p = plan.c.layer[l].d[d].cn.p = NULL
            bind_regions(plan, _address(regions), False)
        else:   # written: nothing of the caller's (dL/d(pre-activation) is scratch)
            plan.c.dx.p = plan.c.dx_rows.p = NULL
            for l in range(plan.L):
                for d in range(plan.D):
                    dr = &plan.c.grad[l].d[d]
                    dr.h0.p = dr.c0.p = NULL
                    for k in range(4):
                        dr.g[k].W.p = dr.g[k].U.p = dr.g[k].C.p = NULL
                        dr.g[k].cdiag.p = dr.g[k].b.p = NULL
        bind_scratch(plan, _address(scratch))
        # one layer (the backward's top one, seen as the only one) and the first steps
        if backward:
            plan.c.layer += plan.L - 1
            plan.c.grad += plan.L - 1
        plan.c.L, plan.c.T, plan.c.rows = 1, steps, rows
        plan.c.step_seconds = &seconds[0]
        with nogil:
            run_kernels(&plan.c, not backward)
        if backward:
            start = scratch_offset(plan, SCRATCH_DG)
            return (scratch[start:start + rows * 4 * plan.D * plan.H * plan.c.itemsize],)
        parts = []
        for r in (REGION_GATES, REGION_CELLS, REGION_OUTPUT):   # every row of the steps run
            width = REGION_WIDTH[r] * plan.D * plan.H * plan.c.itemsize
            parts.append(regions[plan.offsets[r]:plan.offsets[r]
                                 + <Py_ssize_t>steps * plan.B * width])
        return tuple(parts)
    finally:
        plan.c = saved
        memcpy(plan.c.layer, layers, nbytes)
        memcpy(plan.c.grad, grads, nbytes)
        PyMem_Free(layers)
        PyMem_Free(grads)
        plan.picks, plan.timing = kept


def same_bytes(a, b):
    """Whether two contiguous buffers hold the same bytes (memcmp: nothing allocated)."""
    cdef Py_buffer x, y
    PyObject_GetBuffer(a, &x, PyBUF_SIMPLE)
    try:
        PyObject_GetBuffer(b, &y, PyBUF_SIMPLE)
        try:
            return x.len == y.len and memcmp(x.buf, y.buf, x.len) == 0
        finally:
            PyBuffer_Release(&y)
    finally:
        PyBuffer_Release(&x)


# ---------------------------------------------------------------------------------- reuse
cdef object CHANGED = object()   # what descriptor_state gives a descriptor that changed


cdef inline object descriptor_state(object d, list items):
    """Append what a plan's use of descriptor ``d`` rests on: the object, its flags, and its
    resolution while nothing it was made from has changed (else CHANGED, equal to nothing;
    the data setter drops the resolution, and new keys no longer match it)."""
    cdef NDArrayDescriptor nd
    cdef Resolution r
    items.append(d)
    if not isinstance(d, NDArrayDescriptor):
        return None
    nd = <NDArrayDescriptor>d
    r = nd._resolution
    items.append(nd.flags)
    if (r is None or nd._view is None or nd.layout is not r.layout or nd.size is not r.size
            or nd.stride is not r.stride or nd.data_type is not r.data_type):
        items.append(CHANGED)
    else:
        items.append(r)
    return None


cdef inline object activation_state(object a, list items):
    items.append(a)
    items.append(getattr(a, "function", None))
    items.append(getattr(a, "alpha", None))
    items.append(getattr(a, "beta", None))
    return None


def signature(params):
    """Everything a plan of ``params`` (a LayerParametersLSTM) was made from, as one flat
    tuple: every object it read (compared by identity), every scalar and activation value,
    each descriptor's flags and cached resolution. Equal signatures (same_signature) mean
    the plan's checks still hold: the BNNS-style functions then reuse it. None when
    ``params`` is not one the plan could have been made from."""
    cdef list items = []
    try:
        items += [params.input_size, params.hidden_size, params.batch_size, params.num_layers,
                  params.seq_len, params.dropout, params.lstm_flags, params.dropout_seed]
        sizes = params.sequence_descriptor
        if sizes is None or isinstance(sizes, NDArrayDescriptor):
            descriptor_state(sizes, items)
        else:
            items.append(np.asarray(sizes).tobytes())
        for owner in (params.input_descriptor, params.output_descriptor):
            items.append(owner)
            descriptor_state(owner.data_desc, items)
            descriptor_state(owner.hidden_desc, items)
            descriptor_state(owner.cell_state_desc, items)
        for name in GATE_FIELDS:
            gate = getattr(params, name)
            pair = gate.iw_desc
            items.append(gate)
            items.append(pair)
            if len(pair) == 2:
                descriptor_state(pair[0], items)
                descriptor_state(pair[1], items)
            descriptor_state(gate.hw_desc, items)
            descriptor_state(gate.cw_desc, items)
            descriptor_state(gate.b_desc, items)
            activation_state(gate.activation, items)
        activation_state(params.hidden_activation, items)
    except Exception:  # not a plan's parameters: the plan's own checks will say why
        return None
    return tuple(items)


def same_signature(tuple a, tuple b):
    """Whether two signatures are equal: each object the same object, each number an equal
    number (a NaN equal to a NaN: an unused alpha or beta is NaN)."""
    cdef Py_ssize_t k
    if a is None or b is None or len(a) != len(b):
        return False
    for k in range(len(a)):
        x, y = a[k], b[k]
        if x is y:
            continue
        if type(x) is not type(y) or not isinstance(x, (numbers.Number, bytes)):
            return False
        if not (x == y or (x != x and y != y)):
            return False
    return True
