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
