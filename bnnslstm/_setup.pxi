# The parameters read into the Call, step by step: the forward's (Plan.setup: the scalars
# and the Call's tables, the gates, the sequences and states) and the backward's gradient
# descriptors (Plan.delta). Part of _plan.pyx (included there).


cdef Tensor read_scalars(Plan plan, object params):
    """The call's element type, sizes, flags, dropout, per-step batch sizes and activations,
    checked, into ``plan``; returns x, resolved before anything is allocated: every size a
    table is allocated by (T here, L with the gates) is then one that a descriptor's buffer
    holds."""
    cdef Call *c = &plan.c
    for name in ("input_descriptor", "output_descriptor"):
        if getattr(params, name) is None:
            raise BNNSError(f"{name}: expected an LSTMDataDescriptor, got None")
    x_desc = params.input_descriptor.data_desc
    if x_desc is None:
        raise BNNSError("input_descriptor.data_desc: required")
    if not isinstance(x_desc, NDArrayDescriptor):
        raise BNNSError("input_descriptor.data_desc: expected an NDArrayDescriptor, "
                        f"got {type(x_desc).__name__}")
    if x_desc.data_type not in (FLOAT32, FLOAT64):
        raise BNNSError(f"input_descriptor.data_desc.data_type: expected FLOAT32 or FLOAT64, "
                        f"got {type_name(x_desc.data_type)}")
    plan.data_type = x_desc.data_type
    c.itemsize = 4 if plan.data_type == FLOAT32 else 8
    plan.dtype = np.dtype(np.float32 if c.itemsize == 4 else np.float64)
    cdef int flags = lstm_flags(params)
    plan.D = 2 if flags & 1 else 1
    values = sizes(params, x_desc, sequence_layout(x_desc, "input_descriptor.data_desc"))
    plan.In, plan.H, plan.B, plan.L, plan.T = (values[n] for n in _SCALARS)
    I, H, B, L, T, D = plan.In, plan.H, plan.B, plan.L, plan.T, plan.D
    if T * B * max(I, D * H) > 2**31 - 1 or 4 * D * H * max(I, D * H, H) > 2**31 - 1:
        raise BNNSError(f"seq_len * batch_size * width: {T}*{B}*{max(I, D * H)} is too large "
                        "for BLAS's 32-bit sizes")
    x = plan.sequence(x_desc, I, "input_descriptor.data_desc")

    dropout = fraction(params.dropout, "dropout")
    plan.dropout = dropout if L > 1 else 0.0
    plan.dropout_seed = integer(params.dropout_seed, "dropout_seed", 0, 2**64)
    steps = _batch_sizes(params.sequence_descriptor, T, B)
    plan.variable_batch = steps is not None and bool(np.any(steps != B))
    plan.batch_sizes = tuple(steps.tolist()) if steps is not None else (B,) * T

    plan.default_activations = bool(flags & 2)
    if plan.default_activations:
        plan.activations = DEFAULT_ACTIVATIONS
    else:
        plan.activations = (
            tuple(check_activation(getattr(params, g).activation, f"{g}.activation")
                  for g in GATE_FIELDS)
            + (check_activation(params.hidden_activation, "hidden_activation"),))
    return x


cdef int make_tables(Plan plan) except -1:
    """The Call's scalars and tables: sizes, per-step batch sizes and work rows, activations,
    dropout, and the zeroed layer tables (sized by T and by L, which the buffers of x and
    of every gate's hw_desc were found to hold)."""
    cdef Call *c = &plan.c
    cdef int t, k, T = plan.T, L = plan.L
    cdef Py_ssize_t rows = 0, I = plan.In, H = plan.H, D = plan.D
    c.T, c.B, c.In, c.H, c.L, c.D = T, plan.B, I, H, L, D
    c.bs = <int*>PyMem_Malloc(T * sizeof(int))
    c.start = <Py_ssize_t*>PyMem_Malloc(T * sizeof(Py_ssize_t))
    c.layer = <Layer*>PyMem_Calloc(L, sizeof(Layer))
    c.grad = <Layer*>PyMem_Calloc(L, sizeof(Layer))
    if c.bs == NULL or c.start == NULL or c.layer == NULL or c.grad == NULL:
        raise BNNSError(f"num_layers, seq_len: {L} layers of {T} steps need more memory for "
                        "the call's tables than can be allocated")
    for t in range(T):
        (<int*>c.bs)[t] = plan.batch_sizes[t]
        (<Py_ssize_t*>c.start)[t] = rows
        rows += plan.batch_sizes[t]
    c.rows = rows
    for k in range(5):
        c.fn[k], c.alpha[k], c.beta[k] = plan.activations[k]
    c.dropout = plan.dropout
    c.seed = plan.dropout_seed
    c.grad_stride = H * max(I, D * H, H)   # one block of the backward's SCRATCH_GRAD
    return 0


cdef int point_gates(Plan plan, list gates) except -1:
    """Every layer and direction pointed at its gates' weights (gates: gate_tensors of
    each), and the weights that lie one after another merged (merge)."""
    cdef Call *c = &plan.c
    cdef int k
    for k in range(4):
        fill_gate(plan, gates[k], k, False, c.layer)
    for k in range(plan.L):
        c.layer[k].X = plan.In if k == 0 else plan.D * plan.H   # the layer's input width
        merge(plan, &c.layer[k])
    return 0


cdef int point_sequences(Plan plan, object params, Tensor x, bint need_outputs) except -1:
    """The sequences and states resolved into their slots (y and the final states only
    with ``need_outputs``) and the Call pointed at them; initial states BLAS cannot address
    are read through a copy (and their slots cannot move)."""
    cdef Call *c = &plan.c
    cdef int k, l, d
    inp, out = params.input_descriptor, params.output_descriptor
    h0, c0 = states(plan, inp, "input_descriptor", False)
    hn, cn = states(plan, out, "output_descriptor", True) if need_outputs else (None, None)
    y = (plan.sequence(out.data_desc, plan.D * plan.H, "output_descriptor.data_desc", True)
         if need_outputs else None)
    for k, tensor in ((SLOT_X, x), (SLOT_Y, y), (SLOT_H0, h0), (SLOT_C0, c0), (SLOT_HN, hn),
                      (SLOT_CN, cn)):
        fill_slot(&plan.slots[k], tensor)
        plan.movable[k] = states_addressable(plan, k) if k in (SLOT_H0, SLOT_C0) else True
    point_forward(plan)
    for l in range(plan.L):
        for d in range(plan.D):
            if not plan.movable[SLOT_H0]:
                c.layer[l].d[d].h0 = plan.weight(h0, l, d)
            if not plan.movable[SLOT_C0]:
                c.layer[l].d[d].c0 = plan.weight(c0, l, d)
    return 0


# ---------------------------------------------------------------------------------- backward
cdef int check_delta_scalars(Plan plan, object delta) except -1:
    """The delta parameters' sizes (0: the forward's) and direction flag against the
    forward's."""
    if delta is None or not hasattr(delta, "input_descriptor"):
        raise BNNSError("layer_delta_params: expected LayerParametersLSTM")
    resolved = dict(zip(_SCALARS, (plan.In, plan.H, plan.B, plan.L, plan.T)))
    for name in _SCALARS:
        value = getattr(delta, name)
        if value not in (0, resolved[name]):
            raise BNNSError(f"layer_delta_params.{name}: {value!r} but the forward's {name} "
                            f"is {resolved[name]}")
    flags = delta.lstm_flags
    if (not isinstance(flags, (int, np.integer))
            or bool(flags & LayerFlags.BIDIRECTIONAL) != (plan.D == 2)):
        raise BNNSError("layer_delta_params.lstm_flags: BIDIRECTIONAL differs from the "
                        "forward's")
    for name in ("input_descriptor", "output_descriptor"):
        if getattr(delta, name) is None:
            raise BNNSError(f"layer_delta_params.{name}: expected an LSTMDataDescriptor, "
                            "got None")
    return 0


cdef int point_gradient_sequences(Plan plan, object delta, str prefix) except -1:
    """dL/dy, dL/dh_T, dL/dc_T (read) and dx, dh0, dc0 (written, each with its flags)
    resolved into their slots, and the Call's gradient fields pointed at them."""
    cdef Call *c = &plan.c
    cdef int l, d, k
    cdef Tensor dx
    cdef Direction *gr
    inp, out = delta.input_descriptor, delta.output_descriptor
    dy = plan.sequence(out.data_desc, plan.D * plan.H, prefix + "output_descriptor.data_desc")
    dhn, dcn = states(plan, out, prefix + "output_descriptor", False)  # dL/dh_T, dL/dc_T: read
    dx = plan.sequence(inp.data_desc, plan.In, prefix + "input_descriptor.data_desc", True)
    c.acc_dx = accumulates(plan, dx)
    dh0, dc0 = states(plan, inp, prefix + "input_descriptor", True)    # dL/dh0, dL/dc0: written
    for k, tensor in ((SLOT_DY, dy), (SLOT_DX, dx), (SLOT_DH0, dh0), (SLOT_DC0, dc0),
                      (SLOT_DHN, dhn), (SLOT_DCN, dcn)):
        fill_slot(&plan.slots[k], tensor)
        plan.movable[k] = True
    point_backward(plan)   # gradient fields mirror the forward's (see _call.pxd)
    for l in range(plan.L):
        for d in range(plan.D):
            gr = &c.grad[l].d[d]
            gr.acc_h0, gr.acc_c0 = accumulates(plan, dh0), accumulates(plan, dc0)
    return 0


cdef int point_gradient_gates(Plan plan, object delta, str prefix) except -1:
    """Every gate's weight gradients (each optional, with its flags), which must match the
    forward's gates: a peephole of the same kind, a bias only where the forward has one."""
    cdef int k
    for k, name in enumerate(GATE_FIELDS):
        gate = getattr(delta, name)
        if gate is None:
            raise BNNSError(f"{prefix}{name}: expected an LSTMGateDescriptor, got None")
        tensors = gate_tensors(plan, gate, prefix + name, True)
        fill_gate(plan, tensors, k, True, plan.c.grad)
        kind, has_bias = tensors[3], tensors[4] is not None
        if gate.cw_desc is not None and kind != plan.peepholes[k]:
            raise BNNSError(f"{prefix}{name}.cw_desc: the forward's gate has "
                            f"{['no', 'a diagonal', 'a full'][plan.peepholes[k]]} peephole")
        if has_bias and not plan.biases[k]:
            raise BNNSError(f"{prefix}{name}.b_desc: the forward's gate has no bias")
    return 0
