# Reuse: the signature of what a plan was made from (every object it read, every scalar,
# each descriptor's flags and resolution), by which the BNNS-style functions reuse the last
# call's plan when nothing has changed (bnnslstm/lstm.py). Part of _plan.pyx (included there).

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
    r = nd.current()
    items.append(nd.flags)
    items.append(CHANGED if r is None else r)
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
