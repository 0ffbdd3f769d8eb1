# The workspace: the training cache's regions and the call's scratch, laid out once per
# plan, and the kernels pointed at them. Part of _plan.pyx (included there).
#
# REGIONS is the one table of the cache's regions: the offsets below, the shapes that
# bnnslstm.training_cache_layout reports (_cache.regions) and the table of the docs'
# training-cache page are all derived from it.

HEADER_BYTES = 64   # the cache's header; the regions follow at multiples of ALIGNMENT
ALIGNMENT = 64
# name, width per direction in units of H, the direction its own axis ([T][B][D][w*H]) or
# not ([T][B][D*H]), what the region holds; in buffer order (REGION_* of _call.pxd, where
# each region's condition is), layer after layer
REGIONS = (
    ("gates", 4, True, "gate activations i, f, g, o"),
    ("preact", 4, True, "gate pre-activations (only without ``DEFAULT_ACTIVATIONS``)"),
    ("cells", 1, True, "cell state after each step"),
    ("act_h_c", 1, True, "``act_h(c)``"),
    ("output", 1, False, "the layer's output sequence (0 at padded positions)"),
    ("mask", 1, False, "dropout scale of layer l's input "
                       "(layers l >= 1, only when ``dropout > 0``)"),
)
assert [name for name, *_ in REGIONS] == [
    "gates", "preact", "cells", "act_h_c", "output", "mask"] and len(REGIONS) == N_REGIONS, (
    "REGIONS and REGION_* (_call.pxd) disagree")
cdef Py_ssize_t REGION_WIDTH[N_REGIONS]
for _k, _region in enumerate(REGIONS):
    REGION_WIDTH[_k] = _region[1]
del _k, _region


cdef bint present(Plan plan, int layer, int r) noexcept:
    """Whether region r (REGION_*) exists for ``layer``: pre-activations only for custom
    activations (sigmoid's and tanh's derivatives come from their outputs), masks only where
    dropout acts on a layer's input."""
    if r == REGION_PREACT:
        return not plan.default_activations
    if r == REGION_MASK:
        return layer > 0 and plan.dropout > 0
    return True


cdef int lay_out_cache(Plan plan) except -1:
    """The byte offset of every region (plan.offsets[N_REGIONS*layer + r], -1 where absent)
    and the capacity (plan.cache_bytes): computed once per plan, the one place they are."""
    cdef Py_ssize_t rows = <Py_ssize_t>plan.T * plan.B, isz = plan.c.itemsize
    cdef Py_ssize_t offset = HEADER_BYTES, end = HEADER_BYTES
    cdef int l, r
    if plan.cache_bytes >= 0:
        return 0
    plan.offsets = <Py_ssize_t*>PyMem_Malloc(N_REGIONS * plan.L * sizeof(Py_ssize_t))
    if plan.offsets == NULL:
        raise MemoryError()
    for l in range(plan.L):
        for r in range(N_REGIONS):
            if not present(plan, l, r):
                plan.offsets[N_REGIONS * l + r] = -1
                continue
            plan.offsets[N_REGIONS * l + r] = offset
            end = offset + rows * REGION_WIDTH[r] * plan.D * plan.H * isz
            offset = (end + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT
    plan.cache_bytes = end
    return 0


cdef list cache_regions(Plan plan):
    """(name, layer, offset, logical shape) of every region, in buffer order."""
    cdef int l, r
    lay_out_cache(plan)
    T, B, D, H = plan.T, plan.B, plan.D, plan.H
    return [(name, l, plan.offsets[N_REGIONS * l + r],
             (T, B, D, width * H) if apart else (T, B, D * H))
            for l in range(plan.L) for r, (name, width, apart, _) in enumerate(REGIONS)
            if plan.offsets[N_REGIONS * l + r] >= 0]


cdef int bind_regions(Plan plan, char *base, bint keep_everything) except -1:
    """Point every layer at its regions of the cache at ``base`` (without keep_everything,
    the regions only the backward reads are not written)."""
    cdef char **region
    cdef int l, r
    lay_out_cache(plan)
    for l in range(plan.L):
        region = plan.c.layer[l].region
        for r in range(N_REGIONS):
            region[r] = (NULL if plan.offsets[N_REGIONS * l + r] < 0
                         else base + plan.offsets[N_REGIONS * l + r])
        if not keep_everything:   # read by the backward only
            region[REGION_PREACT] = region[REGION_ACT_H_C] = NULL
    # a training cache holds 0 at padded positions; scratch regions are not cleared there
    # (no step reads a padded position: each reads the samples its step carries)
    plan.c.zero_padded = keep_everything
    return 0


cdef Py_ssize_t scratch_sizes(Plan plan, int team, bint backward) noexcept:
    """Bytes of each scratch part (SCRATCH_* of _call.pxd, 64-byte multiples) in
    plan.scratch; returns the total. Computed once per (team, backward)."""
    cdef Call *c = &plan.c
    cdef Py_ssize_t rows = c.rows, DH = plan.D * plan.H, DG = 4 * DH, isz = c.itemsize
    cdef Py_ssize_t width = plan.In if plan.In > DH else DH, total = 0
    cdef Py_ssize_t *size = plan.scratch
    cdef bint full = not plan.variable_batch
    cdef int k
    if plan.scratch_team != team or plan.scratch_backward != backward:
        # elements of each part: its size where present, else 0 (conditions: _call.pxd)
        size[SCRATCH_X] = rows * plan.In if c.x_rows.p == NULL else 0
        size[SCRATCH_IN] = rows * DH if plan.L > 1 and (plan.dropout > 0 or not full) else 0
        size[SCRATCH_S] = 2 * DG * plan.B
        size[SCRATCH_DG] = rows * DG if backward or not full else 0
        size[SCRATCH_DX] = rows * width if backward else 0
        size[SCRATCH_PREV] = (plan.D + 1) * rows * plan.H if backward else 0
        size[SCRATCH_CARRY] = 3 * DH * plan.B if backward else 0
        size[SCRATCH_GRAD] = team * c.grad_stride if backward else 0
        size[SCRATCH_HT] = 2 * DH * plan.B
        size[SCRATCH_VECTORS] = 2 * plan.L * DG
        for k in range(N_SCRATCH):
            size[k] = (size[k] * isz + 63) // 64 * 64
        plan.scratch_team, plan.scratch_backward = team, backward
    for k in range(N_SCRATCH):
        total += size[k]
    return total


cdef Py_ssize_t scratch_offset(Plan plan, int part) noexcept:
    """Where part (SCRATCH_*) starts in the scratch laid out by scratch_sizes: after every
    part before it."""
    cdef Py_ssize_t offset = 0
    cdef int k
    for k in range(part):
        offset += plan.scratch[k]
    return offset


cdef int bind_scratch(Plan plan, char *base) noexcept:
    """Point the call at its parts of the scratch at ``base`` (laid out by scratch_sizes)
    and pack the vectors into theirs."""
    cdef int k
    for k in range(N_SCRATCH):
        plan.c.scratch[k] = base
        base += plan.scratch[k]
    pack_vectors(plan)
    return 0


cdef void pack_vectors(Plan plan) noexcept:
    """Each layer's biases and diagonal peepholes as contiguous [D][4][H] vectors in the
    bound scratch's SCRATCH_VECTORS (zeros for gates without), so the elementwise pass
    reads them at unit stride; Call.diag_gates says which gates have a diagonal peephole
    (a zero would turn c = inf into NaN)."""
    cdef Py_ssize_t H = plan.H, DG = 4 * plan.D * plan.H, isz = plan.c.itemsize, j, at
    cdef int l, d, k
    cdef bint any_diag
    cdef Gate *g
    cdef Layer *lay
    cdef char *base = plan.c.scratch[SCRATCH_VECTORS]
    plan.c.diag_gates = 0   # the same gates in every layer (one descriptor per gate)
    for l in range(plan.L):
        lay = &plan.c.layer[l]
        lay.bias = base + 2 * l * DG * isz
        lay.cdiag = lay.bias + DG * isz
        memset(lay.bias, 0, 2 * DG * isz)
        any_diag = False
        for d in range(plan.D):
            for k in range(4):
                g = &lay.d[d].g[k]
                for j in range(H):
                    at = (d * 4 + k) * H + j
                    if isz == 4:
                        if g.b.p != NULL:
                            (<float*>lay.bias)[at] = (<float*>g.b.p)[j * g.b.s]
                        if g.cdiag.p != NULL:
                            (<float*>lay.cdiag)[at] = (<float*>g.cdiag.p)[j * g.cdiag.s]
                    else:
                        if g.b.p != NULL:
                            (<double*>lay.bias)[at] = (<double*>g.b.p)[j * g.b.s]
                        if g.cdiag.p != NULL:
                            (<double*>lay.cdiag)[at] = (<double*>g.cdiag.p)[j * g.cdiag.s]
                any_diag = any_diag or g.cdiag.p != NULL
                if g.cdiag.p != NULL:
                    plan.c.diag_gates |= 1 << k
        if not any_diag:
            lay.cdiag = NULL
