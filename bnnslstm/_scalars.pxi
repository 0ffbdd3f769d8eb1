# Scalars: the call's sizes, flags, dropout and per-step batch sizes, read from the
# parameters and their descriptors. Part of _plan.pyx (included there).

cdef int KNOWN_FLAGS = int(LayerFlags.BIDIRECTIONAL | LayerFlags.DEFAULT_ACTIVATIONS)
_INTEGER_TYPES = (DataType.INT32, DataType.INT64, DataType.UINT32, DataType.UINT64)
_SCALARS = ("input_size", "hidden_size", "batch_size", "num_layers", "seq_len")
_STATE_NAMES = ("num_layers", None, "batch_size", "hidden_size")  # a state's [L][D][B][H]


cdef int lstm_flags(object params) except -1:
    """``params.lstm_flags``, refused if it holds a bit BNNS's LSTM does not know."""
    value = params.lstm_flags
    if not is_integer(value) or not 0 <= value <= KNOWN_FLAGS or int(value) & ~KNOWN_FLAGS:
        raise BNNSError(f"lstm_flags: unknown bits in {value!r} "
                        "(known: BIDIRECTIONAL, DEFAULT_ACTIVATIONS)")
    return value


cdef int learn(dict values, object desc, tuple names, str field) except -1:
    """Take scalars (``names`` aligned right with the logical shape) from a descriptor."""
    cdef Py_ssize_t shape[8]
    cdef int rank, k
    if desc is None:
        return 0
    if not isinstance(desc, NDArrayDescriptor):
        raise BNNSError(f"{field}: expected an NDArrayDescriptor or None, "
                        f"got {type(desc).__name__}")
    rank = logical_shape(<NDArrayDescriptor>desc, field, shape)
    for k in range(min(rank, len(names))):
        name = names[len(names) - 1 - k]
        extent = shape[rank - 1 - k]
        if name is None or extent == 0:
            continue
        known = values[name]
        if known == 0:
            values[name] = extent
        elif known != extent:
            raise BNNSError(f"{field}: size gives {name} = {extent} but {name} is {known}")
    return 0


cdef dict sizes(object params, object x_desc, int x_layout):
    """I, H, B, L, T by name: the fields', or where a field is 0 what the descriptors give."""
    values = {name: integer(getattr(params, name), name, 0, 2**31) for name in _SCALARS}
    inp, out = params.input_descriptor, params.output_descriptor
    learn(values, x_desc, ("seq_len", "batch_size", "input_size") if x_layout == SNE
          else ("batch_size", "seq_len", "input_size"), "input_descriptor.data_desc")
    for owner, prefix in ((inp, "input_descriptor"), (out, "output_descriptor")):
        learn(values, owner.hidden_desc, _STATE_NAMES, f"{prefix}.hidden_desc")
        learn(values, owner.cell_state_desc, _STATE_NAMES, f"{prefix}.cell_state_desc")
    for name in GATE_FIELDS:
        gate = getattr(params, name)
        if gate is None:
            raise BNNSError(f"{name}: expected an LSTMGateDescriptor, got None")
        learn(values, gate.hw_desc, ("num_layers", None, "hidden_size", "hidden_size"),
              f"{name}.hw_desc")
    for name in _SCALARS:
        if values[name] < 1:
            raise BNNSError(f"{name}: is 0 and no descriptor gives it")
    return values


def _batch_sizes(sequence_descriptor, T, B):
    """The per-step batch sizes as int32 (checked: non-increasing, first == B, in [1, B])."""
    if sequence_descriptor is None:
        return None
    if isinstance(sequence_descriptor, NDArrayDescriptor):
        if sequence_descriptor.data_type not in _INTEGER_TYPES:
            raise BNNSError("sequence_descriptor.data_type: expected an integer type, got "
                            f"{type_name(sequence_descriptor.data_type)}")
        values = sequence_descriptor.to_numpy((T,), "sequence_descriptor")
        if values.ndim != 1:
            raise BNNSError(f"sequence_descriptor: expected a vector of {T} integers")
    else:
        values = np.asarray(sequence_descriptor)
        if values.dtype.kind not in "iu":
            raise BNNSError(f"sequence_descriptor: expected integers, got dtype {values.dtype}")
    if values.shape != (T,):
        raise BNNSError(f"sequence_descriptor: expected {T} batch sizes (seq_len), "
                        f"got shape {values.shape}")
    values = values.astype(np.int64)
    if values[0] != B:
        raise BNNSError(f"sequence_descriptor: the first batch size must be batch_size = {B}, "
                        f"got {values[0]}")
    if np.any(values < 1) or np.any(values > B):
        raise BNNSError(f"sequence_descriptor: batch sizes must lie in [1, {B}], "
                        f"got {values.tolist()}")
    if np.any(np.diff(values) > 0):
        raise BNNSError("sequence_descriptor: batch sizes must not increase, "
                        f"got {values.tolist()}")
    return values.astype(np.int32)


cdef int sequence_layout(object desc, str field) except -1:
    """An input or output sequence's layout: SNE ([T][B][F]) or NSE ([B][T][F])."""
    layout = desc.layout
    if type(layout) is not bool and isinstance(layout, int) and (layout == SNE or layout == NSE):
        return layout
    try:
        layout = DataLayout(desc.layout)
    except ValueError:
        raise BNNSError(f"{field}.layout: {desc.layout!r} is not a DataLayout") from None
    if layout not in (DataLayout.SNE, DataLayout.NSE):
        raise BNNSError(f"{field}.layout: expected SNE or NSE, got {layout.name}")
    return layout
