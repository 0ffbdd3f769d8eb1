# The call's sequences and states as slots: where each lies (its first element, the extents
# and element strides of its view) and the Call fields derived from it. setup() and
# delta() fill the slots from the resolved descriptors, then point the Call at them;
# Plan.move() puts a slot on another array with the same extents and strides: between two
# calls of an everyday layer or of a stream that is all that changes (their weights never
# move and are read at every call), so the rest of the plan's checks hold as they were.
# Part of _plan.pyx (included there).

cdef class Plan   # defined after this file, in _plan.pyx

cdef enum:
    SLOT_X          # the forward's: read
    SLOT_Y          # written
    SLOT_H0
    SLOT_C0
    SLOT_HN         # written
    SLOT_CN         # written
    SLOT_DY         # the backward's: read
    SLOT_DX         # written
    SLOT_DH0        # written
    SLOT_DC0        # written
    SLOT_DHN
    SLOT_DCN
    N_SLOTS

_SLOT_NAMES = ("x", "y", "h0", "c0", "h_n", "c_n", "dy", "dx", "dh0", "dc0", "dh_n", "dc_n")


ctypedef struct Slot:
    char *p                     # element [0][0][0][0] of the view; NULL: absent
    Py_ssize_t n[4]             # extents of the 4-axis view (leading 1s for fewer axes)
    Py_ssize_t s[4]             # element strides
    bint swapped                # an NSE sequence: the view's axes are [B][T][F]


cdef int fill_slot(Slot *slot, Tensor t) except -1:
    """The slot of a resolved descriptor (None: absent)."""
    cdef int k
    if t is None:
        slot.p = NULL
        return 0
    slot.p, slot.swapped = t.at(0, 0, 0), t.swapped
    for k in range(4):
        slot.n[k], slot.s[k] = t.extent(k), t.step(k)
    return 0


cdef Seq slot_seq(const Slot *slot) noexcept:
    """A [T][B][F] sequence slot as the kernels read it."""
    cdef Seq s
    s.p = slot.p
    if slot.p == NULL:
        s.st = s.sb = s.se = 0
    else:
        s.se = slot.s[3]
        s.st, s.sb = (slot.s[2], slot.s[1]) if slot.swapped else (slot.s[1], slot.s[2])
    return s


cdef Mat slot_state(const Slot *slot, int l, int d, Py_ssize_t itemsize) noexcept:
    """Layer l, direction d of an [L][D][B][H] state slot (absent: p NULL)."""
    if slot.p == NULL:
        return mat(NULL, 0, 0, 0, 0)
    return mat(slot.p + (l * slot.s[0] + d * slot.s[1]) * itemsize, slot.n[2], slot.n[3],
               slot.s[2], slot.s[3])


cdef bint states_addressable(Plan plan, int k) noexcept:
    """Whether BLAS reads every matrix of state slot k in place (else setup() gathered
    copies, and the slot cannot move)."""
    cdef int l, d
    for l in range(plan.L):
        for d in range(plan.D):
            if plan.slots[k].p != NULL and not addressable(
                    slot_state(&plan.slots[k], l, d, plan.c.itemsize)):
                return False
    return True


cdef int point_forward(Plan plan) except -1:
    """The Call's x, y and state fields from the forward slots (an initial state BLAS cannot
    address is left to setup(), which reads it through a copy)."""
    cdef Call *c = &plan.c
    cdef Direction *dr
    cdef int l, d
    c.x = slot_seq(&plan.slots[SLOT_X])
    c.x_rows = plan.rows(c.x, plan.In)
    c.y = slot_seq(&plan.slots[SLOT_Y])
    for l in range(plan.L):
        for d in range(plan.D):
            dr = &c.layer[l].d[d]
            if plan.movable[SLOT_H0]:
                dr.h0 = slot_state(&plan.slots[SLOT_H0], l, d, c.itemsize)
            if plan.movable[SLOT_C0]:
                dr.c0 = slot_state(&plan.slots[SLOT_C0], l, d, c.itemsize)
            dr.hn = slot_state(&plan.slots[SLOT_HN], l, d, c.itemsize)
            dr.cn = slot_state(&plan.slots[SLOT_CN], l, d, c.itemsize)
    return 0


cdef int point_backward(Plan plan) except -1:
    """The Call's gradient sequence and state fields from the backward slots."""
    cdef Call *c = &plan.c
    cdef Direction *gr
    cdef int l, d
    cdef Py_ssize_t isz = c.itemsize
    c.dy = slot_seq(&plan.slots[SLOT_DY])
    c.dx = slot_seq(&plan.slots[SLOT_DX])
    c.dx_rows = plan.rows(c.dx, plan.In)
    for l in range(plan.L):
        for d in range(plan.D):
            gr = &c.grad[l].d[d]
            gr.hn, gr.cn = (slot_state(&plan.slots[SLOT_DHN], l, d, isz),
                            slot_state(&plan.slots[SLOT_DCN], l, d, isz))
            gr.h0, gr.c0 = (slot_state(&plan.slots[SLOT_DH0], l, d, isz),
                            slot_state(&plan.slots[SLOT_DC0], l, d, isz))
    return 0


cdef int move_slot(Plan plan, int k, object array, bint written, str name) except -1:
    """Put slot k on ``array``: a buffer of the call's element type whose extents are the
    slot's and whose strides are the slot's wherever an extent exceeds 1 (so every bound the
    plan checked holds), writable when the call writes it. Refused with BNNSError (nothing
    changed) otherwise, or when the slot is absent, gathered, or given None."""
    cdef Slot *slot = &plan.slots[k]
    cdef Py_buffer view
    cdef int j, pad
    cdef Py_ssize_t isz = plan.c.itemsize
    if slot.p == NULL or array is None:
        raise BNNSError(f"{name}: {'absent' if slot.p == NULL else 'given'} when the plan was "
                        f"made: it cannot be {'given' if slot.p == NULL else 'absent'} now")
    if not plan.movable[k]:
        raise BNNSError(f"{name}: read through a copy BLAS can address: it cannot move")
    try:
        PyObject_GetBuffer(array, &view, PyBUF_STRIDES | PyBUF_FORMAT
                           | (PyBUF_WRITABLE if written else 0))
    except (BufferError, TypeError, ValueError) as error:
        raise BNNSError(f"{name}: {error}") from None
    try:
        pad = 4 - view.ndim
        same = view.itemsize == isz and pad >= 0 and float_format(view.format, isz)
        for j in range(4 if same else 0):
            if j < pad:
                same = same and slot.n[j] == 1
            else:
                same = same and view.shape[j - pad] == slot.n[j] and (
                    slot.n[j] == 1 or view.strides[j - pad] == slot.s[j] * isz)
        if not same:
            raise BNNSError(f"{name}: not the element type, extents and strides the plan "
                            "was made for")
        slot.p = <char*>view.buf
    finally:
        PyBuffer_Release(&view)
    plan.held[k] = array
    return 0


cdef bint float_format(const char *format, Py_ssize_t itemsize) noexcept:
    """Whether a buffer format is the native float (4) or double (8): 'f'/'d', optionally
    after '@' or '='."""
    if format == NULL:
        return False
    if format[0] == c'@' or format[0] == c'=':
        format += 1
    return format[1] == 0 and format[0] == (c'f' if itemsize == 4 else c'd')


cdef int run_frame(Plan plan, object x, object out, bint serial) except -1:
    """One frame of a stream: a one-step plan whose x and y slots lie in buffers of its own,
    bound to its own scratch. Copies ``x`` (a C-contiguous buffer of the plan's type holding
    the x slot's elements) into the x slot, runs the forward without the GIL (with BLAS
    single-threaded around it when ``serial``: _serial.pxi's C path), and copies the y slot
    into ``out`` (a writable one of the y slot's size). Refused with BNNSError naming the
    argument, before anything runs, for a buffer of another type or size."""
    cdef Py_buffer xv, ov
    cdef Py_ssize_t isz = plan.c.itemsize
    cdef Py_ssize_t nx = plan.slots[SLOT_X].n[2] * plan.slots[SLOT_X].n[3] * isz
    cdef Py_ssize_t ny = plan.slots[SLOT_Y].n[2] * plan.slots[SLOT_Y].n[3] * isz
    contiguous_buffer(x, &xv, nx, isz, False, "x")
    try:
        contiguous_buffer(out, &ov, ny, isz, True, "out")
        try:
            # the weights as they are now
            pack_vectors(plan)
            memcpy(plan.slots[SLOT_X].p, xv.buf, nx)
            with nogil:
                if serial:
                    serial_enter()
                run_kernels(&plan.c, True)
                if serial:
                    serial_exit()
            memcpy(ov.buf, plan.slots[SLOT_Y].p, ny)
        finally:
            PyBuffer_Release(&ov)
    finally:
        PyBuffer_Release(&xv)
    return 0


cdef int contiguous_buffer(object array, Py_buffer *view, Py_ssize_t nbytes, Py_ssize_t isz,
                           bint written, str name) except -1:
    """Export ``array`` as a C-contiguous buffer of ``nbytes`` native floats of ``isz``
    bytes (writable when ``written``) into ``view``; BNNSError naming ``name`` otherwise."""
    cdef int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (PyBUF_WRITABLE if written else 0)
    try:
        PyObject_GetBuffer(array, view, flags)
    except (BufferError, TypeError, ValueError) as error:
        raise BNNSError(f"{name}: {error} (a C-contiguous {'float32' if isz == 4 else 'float64'}"
                        f" array is expected)") from None
    if view.len != nbytes or view.itemsize != isz or not float_format(view.format, isz):
        PyBuffer_Release(view)
        raise BNNSError(f"{name}: expected {nbytes // isz} "
                        f"{'float32' if isz == 4 else 'float64'} values, C-contiguous")
    return 0
