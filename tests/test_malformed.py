"""Malformed files: every one given to bnnslstm.onnx.load or bnnslstm.LSTM.load raises
BNNSError naming the node, tensor or entry at fault, and nothing else escapes (no protobuf
DecodeError, IndexError, onnx ValidationError, numpy's advice about allow_pickle...)."""

import io
import json
import pickle
import re
import zipfile

import numpy as np
import pytest

import bnnslstm as bl
from bnnslstm import BNNSError

I, H = 3, 4


def assert_refused(error_info, match):
    """A BNNSError (not a subclass of something else that escaped) whose message matches,
    without numpy's advice to unpickle and without a foreign exception shown as its cause."""
    message = str(error_info.value)
    assert error_info.type is BNNSError, f"{error_info.type.__name__}: {message}"
    assert "allow_pickle" not in message
    assert error_info.value.__suppress_context__ or error_info.value.__context__ is None
    assert re.search(match, message), message


# ---------------------------------------------------------------------- ONNX
try:  # the .npz half below runs without onnx
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    import bnnslstm.onnx as bo
except ImportError:
    onnx = None


def model(L=1, **kwargs):
    """A valid exported model, to break in one way."""
    return bo.export(bl.LSTM(I, H, L, seed=0, **kwargs), None)


def lstm_node(m, k=0):
    return [n for n in m.graph.node if n.op_type == "LSTM"][k]


def initializer(m, name):
    return next(t for t in m.graph.initializer if t.name == name)


def replace(m, name, tensor):
    """Initializer ``name`` replaced by ``tensor`` (given the same name)."""
    tensor.name = name
    old = initializer(m, name)
    m.graph.initializer.remove(old)
    m.graph.initializer.append(tensor)
    return m


def set_attribute(m, name, value, k=0):
    node = lstm_node(m, k)
    for attribute in list(node.attribute):
        if attribute.name == name:
            node.attribute.remove(attribute)
    node.attribute.append(helper.make_attribute(name, value))
    return m


def file_with(tmp_path, data, name="model.onnx"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def reshaped(m, name, shape):
    array = numpy_helper.to_array(initializer(m, name))
    return replace(m, name, numpy_helper.from_array(array.reshape(shape)))


def retyped(m, name, dtype):
    array = numpy_helper.to_array(initializer(m, name))
    return replace(m, name, numpy_helper.from_array((array * 100).astype(dtype)))


def short_raw_data(m):
    tensor = initializer(m, "W_l0")
    tensor.raw_data = tensor.raw_data[:-8]
    return m


def float_data_count(m):
    tensor = helper.make_tensor("W_l0", TensorProto.FLOAT, [1, 4 * H, I], [0.5] * (4 * H * I))
    del tensor.float_data[-1]  # make_tensor checks the count; a file need not
    return replace(m, "W_l0", tensor)


def external(m, location, tmp_path, folder="sub"):
    """The W initializer's data moved to an external file at ``location`` (relative to the
    model's folder, ``tmp_path/folder``); returns the model's path."""
    tensor = initializer(m, "W_l0")
    data = tensor.raw_data
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    (tmp_path / folder).mkdir(exist_ok=True)
    (tmp_path / "outside.bin").write_bytes(data)
    path = tmp_path / folder / "model.onnx"
    path.write_bytes(m.SerializeToString())
    return path


def without_input(m, position):
    node = lstm_node(m)
    inputs = list(node.input) + [""] * (8 - len(node.input))
    inputs[position] = ""
    while inputs and inputs[-1] == "":
        inputs.pop()
    del node.input[:]
    node.input.extend(inputs)
    return m


def constant_without_value(m):
    node = lstm_node(m)
    node.input[1] = "W_const"
    m.graph.node.insert(0, helper.make_node("Constant", [], ["W_const"], name="empty_constant"))
    return m


def glue_without_input(m):
    identity = next(n for n in m.graph.node if n.name == "output")
    del identity.input[:]
    return m


def lstm_without_outputs(m):
    del lstm_node(m, 0).output[:]
    return m


def string_tensor(m):
    return replace(m, "W_l0", helper.make_tensor("W_l0", TensorProto.STRING, [1, 4 * H, I],
                                                 [b"x"] * (4 * H * I)))


def undefined_type(m):
    tensor = initializer(m, "W_l0")
    tensor.data_type = TensorProto.UNDEFINED
    return m


def negative_dims(m):
    tensor = initializer(m, "R_l0")
    tensor.dims[1] = -16
    return m


def constant_initial_state(m):
    node = lstm_node(m)
    m.graph.initializer.append(numpy_helper.from_array(np.full((1, 1, H), 0.5, np.float32), "h0"))
    inputs = list(node.input) + [""] * (6 - len(node.input))
    inputs[5] = "h0"
    del node.input[:]
    node.input.extend(inputs)
    return m


def valid_bytes(fraction):
    data = model().SerializeToString()
    return data[:int(len(data) * fraction)]


# (id, builder(tmp_path) -> load's argument, regex the message must match)
ONNX_CASES = [
    ("undecodable bytes", lambda p: file_with(p, bytes(range(256)) * 4),
     r"model\.onnx: not an ONNX model"),
    ("text file", lambda p: file_with(p, b"hello, this is not a model\n" * 3),
     r"model\.onnx: not an ONNX model"),
    ("truncated file", lambda p: file_with(p, valid_bytes(0.5)), r"model\.onnx: not an ONNX model"),
    ("empty file", lambda p: file_with(p, b""), r"model: it has no LSTM node"),
    ("missing file", lambda p: p / "nowhere.onnx", r"nowhere\.onnx: cannot read"),
    ("a directory", lambda p: p, r"cannot read"),
    ("bytes, not a file name", lambda p: valid_bytes(1.0), r"path_or_model: expected"),
    ("rank-2 W", lambda p: reshaped(model(), "W_l0", (4 * H, I)),
     r"'lstm_l0'.*W input 'W_l0': shape \(16, 3\) but ONNX's LSTM takes"),
    ("rank-2 R", lambda p: reshaped(model(), "R_l0", (4 * H, H)), r"'lstm_l0'.*R input 'R_l0'"),
    ("rank-1 B", lambda p: reshaped(model(), "B_l0", (8 * H,)), r"'lstm_l0'.*B input 'B_l0'"),
    ("W rows not 4*hidden_size", lambda p: reshaped(model(), "R_l0", (1, 8 * H, H // 2)),
     r"'lstm_l0'.*R input 'R_l0'.*\(1, 32, 2\)"),
    ("dims disagree with raw_data", lambda p: short_raw_data(model()),
     r"tensor 'W_l0': .*data"),
    ("dims disagree with float_data", lambda p: float_data_count(model()),
     r"tensor 'W_l0': .*data"),
    ("negative dims", lambda p: negative_dims(model()), r"tensor 'R_l0'"),
    ("external data outside the folder", lambda p: external(model(), "../outside.bin", p),
     r"tensor 'W_l0': .*external"),
    ("external data, absolute path", lambda p: external(model(), str(p / "outside.bin"), p),
     r"tensor 'W_l0': .*external"),
    ("external data, missing file", lambda p: external(model(), "missing.bin", p),
     r"tensor 'W_l0': .*external"),
    ("external data in a ModelProto", lambda p: onnx.load(external(model(), "w.bin", p),
                                                          load_external_data=False),
     r"tensor 'W_l0': .*external"),
    ("int8 W", lambda p: retyped(model(), "W_l0", np.int8),
     r"'lstm_l0'.*W input 'W_l0'.*int8.*float"),
    ("int32 B", lambda p: retyped(model(), "B_l0", np.int32), r"'lstm_l0'.*B input 'B_l0'.*int32"),
    ("bool R", lambda p: retyped(model(), "R_l0", np.bool_), r"'lstm_l0'.*R input 'R_l0'.*bool"),
    ("string W", lambda p: string_tensor(model()), r"'W_l0'.*(string|STRING|<U1)"),
    ("undefined element type", lambda p: undefined_type(model()), r"'W_l0' holds undefined"),
    ("no W input", lambda p: without_input(model(), 1), r"'lstm_l0'.*W input.*missing"),
    ("no R input", lambda p: without_input(model(), 2), r"'lstm_l0'.*R input.*missing"),
    ("no X input", lambda p: without_input(model(), 0), r"'lstm_l0'.*X input.*missing"),
    ("W from nowhere", lambda p: (lambda m: (lstm_node(m).input.__setitem__(1, "nowhere"), m)[1])(
        model()), r"'lstm_l0'.*'nowhere'.*not a constant"),
    ("hidden_size disagrees", lambda p: set_attribute(model(), "hidden_size", H + 1),
     r"'lstm_l0'.*hidden_size"),
    ("hidden_size 0", lambda p: set_attribute(model(), "hidden_size", 0),
     r"'lstm_l0'.*hidden_size"),
    ("hidden_size not an integer", lambda p: set_attribute(model(), "hidden_size", "four"),
     r"'lstm_l0'.*hidden_size"),
    ("direction not a string", lambda p: set_attribute(model(), "direction", 1),
     r"'lstm_l0'.*direction"),
    ("layout 2", lambda p: set_attribute(model(), "layout", 2), r"'lstm_l0'.*layout"),
    ("direction disagrees with W", lambda p: set_attribute(model(), "direction", "bidirectional"),
     r"'lstm_l0'.*W input 'W_l0': shape \(1, 16, 3\).*\(2, 16, 3\)"),
    ("a constant initial state", lambda p: constant_initial_state(model()),
     r"'lstm_l0'.*initial_h input 'h0' is a constant non-zero state"),
    ("activations not strings", lambda p: set_attribute(model(), "activations", [1, 2, 3]),
     r"'lstm_l0'.*activations"),
    ("unknown activation", lambda p: set_attribute(model(), "activations",
                                                   ["Sigmoid", "Cosh", "Tanh"]),
     r"'lstm_l0'.*'Cosh'"),
    ("B of the wrong length", lambda p: reshaped(model(), "B_l0", (2, 4 * H)),
     r"'lstm_l0'.*B input 'B_l0'"),
    ("Constant without a value", lambda p: constant_without_value(model()),
     r"'empty_constant'"),
    ("glue without an input", lambda p: glue_without_input(model()),
     r"not a valid ONNX model: Node\(output\)"),
    ("LSTM without outputs", lambda p: lstm_without_outputs(model(L=2)), r"'lstm_l[01]'"),
]


@pytest.mark.parametrize("build, match", [c[1:] for c in ONNX_CASES],
                         ids=[c[0] for c in ONNX_CASES])
def test_malformed_onnx(tmp_path, build, match):
    pytest.importorskip("onnx")
    argument = build(tmp_path)
    with pytest.raises(Exception) as info:
        bo.load(argument)
    assert_refused(info, match)


def test_float16_weights_load_as_what_they_hold():
    """ONNX's LSTM takes float16 too: read, not refused."""
    pytest.importorskip("onnx")
    m = model()
    for name in ("W_l0", "R_l0", "B_l0"):
        retyped_back = numpy_helper.to_array(initializer(m, name)).astype(np.float16)
        replace(m, name, numpy_helper.from_array(retyped_back))
    layer = bo.load(m)
    expected = numpy_helper.to_array(initializer(m, "R_l0")).astype(np.float32)[0]
    np.testing.assert_array_equal(layer.parameters()["weight_hh_l0"][:H], expected[:H])


# ---------------------------------------------------------------------- .npz
def saved(**changes):
    """The entries of a valid save, with ``changes`` (None deletes an entry)."""
    file = io.BytesIO()
    bl.LSTM(I, H, 2, seed=0).save(file)
    file.seek(0)
    with np.load(file) as archive:
        entries = {name: archive[name] for name in archive.files}
    for name, value in changes.items():
        if value is None:
            del entries[name]
        else:
            entries[name] = value
    return entries


def npz(entries):
    """An .npz of ``entries`` in memory (np.savez pickles object arrays into it)."""
    file = io.BytesIO()
    np.savez(file, **entries)
    file.seek(0)
    return file


def config(**changes):
    entries = saved()
    value = json.loads(str(entries["config"][()]))
    value.update(changes)
    return npz(saved(config=np.array(json.dumps(value))))


def zip_of(name, data):
    file = io.BytesIO()
    with zipfile.ZipFile(file, "w") as archive:
        archive.writestr(name, data)
    file.seek(0)
    return file


def truncated_save():
    data = npz(saved()).getvalue()
    return io.BytesIO(data[:len(data) // 2])


NPZ_CASES = [
    ("junk bytes", lambda p: io.BytesIO(bytes(range(256)) * 4), r"not a file written by"),
    ("a pickle", lambda p: io.BytesIO(pickle.dumps({"weights": [1, 2]})),
     r"not a file written by"),
    ("empty", lambda p: io.BytesIO(b""), r"not a file written by"),
    ("a zip of text", lambda p: zip_of("notes.txt", "hello"), r"not a file written by"),
    ("truncated", lambda p: truncated_save(), r"not a file written by"),
    ("object array in the state", lambda p: npz(saved(
        **{"state.weight_hh_l0": np.array([None, 1], dtype=object)})),
     r"'state\.weight_hh_l0'"),
    ("object array as format", lambda p: npz(saved(format=np.array([{"a": 1}], dtype=object))),
     r"'format'"),
    ("no format entry", lambda p: npz(saved(format=None)), r"not a file written by"),
    ("format_version not a number", lambda p: npz(saved(format_version=np.array("one"))),
     r"format_version"),
    ("config not JSON", lambda p: npz(saved(config=np.array("{input_size: 3"))), r"config"),
    ("config a list", lambda p: npz(saved(config=np.array("[1, 2]"))), r"config"),
    ("gate_activations a list", lambda p: config(gate_activations=["a", "b"]),
     r"config.gate_activations"),
    ("hidden_size a word", lambda p: config(hidden_size="four"), r"config.*hidden_size"),
    ("hidden_size too large for the state", lambda p: config(hidden_size=10**7),
     r"state.*weight_hh_l0.*shape"),
    ("num_layers too large for the state", lambda p: config(num_layers=10**9),
     r"state.*missing key"),
    ("unknown dtype", lambda p: config(dtype="float16"), r"config.*dtype"),
    ("state entry of strings", lambda p: npz(saved(**{"state.bias_ih_l0": np.array(["a"] * 16)})),
     r"bias_ih_l0"),
    ("missing state entry", lambda p: npz(saved(**{"state.weight_hh_l1": None})),
     r"missing key 'weight_hh_l1'"),
    ("unexpected entry", lambda p: npz(saved(extra=np.zeros(2))), r"'extra'"),
    ("missing file", lambda p: p / "nowhere.npz", r"nowhere\.npz"),
    ("a directory", lambda p: p, r"cannot read"),
    ("not a file at all", lambda p: 42, r"path: expected"),
]


@pytest.mark.parametrize("build, match", [c[1:] for c in NPZ_CASES],
                         ids=[c[0] for c in NPZ_CASES])
def test_malformed_npz(tmp_path, build, match):
    argument = build(tmp_path)
    with pytest.raises(Exception) as info:
        bl.LSTM.load(argument)
    assert_refused(info, match)
