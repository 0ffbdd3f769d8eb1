"""The parameter classes (bnnslstm/parameters.py): fixed fields, so that a misspelt one is an
error naming the valid ones; mutable, weakly referable where the library needs it, and
kept by pickle and copy as before they had slots."""

import copy
import math
import pickle
import weakref

import numpy as np
import pytest

import bnnslstm as bl

CLASSES = {
    bl.Activation: ("function", "alpha", "beta"),
    bl.LSTMDataDescriptor: ("data_desc", "hidden_desc", "cell_state_desc"),
    bl.LSTMGateDescriptor: ("iw_desc", "hw_desc", "cw_desc", "b_desc", "activation"),
    bl.LayerParametersLSTM: (
        "input_size", "hidden_size", "batch_size", "num_layers", "seq_len", "dropout",
        "lstm_flags", "sequence_descriptor", "input_descriptor", "output_descriptor",
        "input_gate", "forget_gate", "candidate_gate", "output_gate", "hidden_activation",
        "dropout_seed"),
    bl.FilterParameters: ("flags", "n_threads", "alloc_memory", "free_memory"),
}


def a_descriptor():
    return bl.NDArrayDescriptor.from_array(np.arange(6, dtype=np.float32).reshape(2, 3))


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_fields_are_the_documented_ones(cls):
    obj = cls()
    assert cls._FIELDS == CLASSES[cls]
    assert not hasattr(obj, "__dict__")
    for name in CLASSES[cls]:  # every field can be set to anything (checked at call time)
        setattr(obj, name, "anything")
        assert getattr(obj, name) == "anything"


@pytest.mark.parametrize("cls,typo,guess", [
    (bl.LayerParametersLSTM, "hiden_size", "hidden_size"),
    (bl.LayerParametersLSTM, "dropout_sed", "dropout_seed"),
    (bl.LSTMGateDescriptor, "activaton", "activation"),
    (bl.LSTMDataDescriptor, "cell_desc", "cell_state_desc"),
    (bl.Activation, "fuction", "function"),
    (bl.FilterParameters, "num_threads", "n_threads"),
], ids=lambda value: value if isinstance(value, str) else value.__name__)
def test_a_misspelt_field_is_an_error_naming_the_valid_ones(cls, typo, guess):
    obj = cls()
    with pytest.raises(AttributeError) as info:
        setattr(obj, typo, 4)
    message = str(info.value)
    assert message.startswith(f"{cls.__name__} has no field {typo!r} (did you mean {guess!r}?); "
                              f"its fields are {', '.join(CLASSES[cls])}")
    assert info.value.name == typo and info.value.obj is obj
    assert not hasattr(obj, typo)


def test_a_name_like_no_field_gets_no_guess():
    with pytest.raises(AttributeError, match=r"^Activation has no field 'zzz'; its fields are "
                                             r"function, alpha, beta$"):
        bl.Activation().zzz = 1


def test_parameters_are_weakly_referable():
    """The library remembers the parameters objects it warned about and their last plans
    in weak sets and dicts (bnnslstm/lstm.py)."""
    params = bl.LayerParametersLSTM()
    ref = weakref.ref(params)
    assert ref() is params
    del params
    assert ref() is None


def filled():
    """One object of each class with every kind of field value."""
    d = a_descriptor()
    gate = bl.LSTMGateDescriptor(iw_desc=(d, None), hw_desc=d, b_desc=d,
                                 activation=bl.Activation(bl.ActivationFunction.LINEAR, 0.5))
    params = bl.LayerParametersLSTM(input_size=3, hidden_size=2, dropout=0.25, input_gate=gate,
                                    input_descriptor=bl.LSTMDataDescriptor(d, None, d))
    return [params, gate, gate.activation, params.input_descriptor,
            bl.FilterParameters(n_threads=2)]


@pytest.mark.parametrize("how", ["pickle 0", "pickle 2", "pickle 5", "copy", "deepcopy"])
def test_pickle_and_copy_keep_every_field(how):
    for obj in filled():
        if how.startswith("pickle"):
            again = pickle.loads(pickle.dumps(obj, protocol=int(how.split()[1])))
        else:
            again = getattr(copy, how)(obj)
        assert type(again) is type(obj) and again is not obj
        assert repr(again) == repr(obj)
        if how == "copy":  # shallow: the same field values
            assert all(getattr(again, n) is getattr(obj, n) for n in obj._FIELDS)


# an Activation(ELU, alpha=0.5) pickled before the classes had slots (its state: __dict__)
OLD_PICKLES = [
    b"ccopy_reg\n_reconstructor\np0\n(cbnnslstm.parameters\nActivation\np1\nc__builtin__\nobject"
    b"\np2\nNtp3\nRp4\n(dp5\nVfunction\np6\ncbnnslstm.enums\nActivationFunction\np7\n(I18\ntp8\n"
    b"Rp9\nsValpha\np10\nF0.5\nsVbeta\np11\nFnan\nsb.",
    b"\x80\x02cbnnslstm.parameters\nActivation\nq\x00)\x81q\x01}q\x02(X\x08\x00\x00\x00functionq"
    b"\x03cbnnslstm.enums\nActivationFunction\nq\x04K\x12\x85q\x05Rq\x06X\x05\x00\x00\x00alphaq"
    b"\x07G?\xe0\x00\x00\x00\x00\x00\x00X\x04\x00\x00\x00betaq\x08G\x7f\xf8\x00\x00\x00\x00\x00"
    b"\x00ub.",
]


@pytest.mark.parametrize("data", OLD_PICKLES, ids=["protocol 0", "protocol 2"])
def test_pickles_from_before_the_slots_load(data):
    again = pickle.loads(data)
    assert type(again) is bl.Activation
    assert (again.function, again.alpha) == (bl.ActivationFunction.ELU, 0.5)
    assert math.isnan(again.beta)


def test_repr_names_every_field():
    assert repr(bl.FilterParameters(n_threads=3)) == (
        "FilterParameters(flags=0, n_threads=3, alloc_memory=None, free_memory=None)")
    assert repr(bl.Activation()) == (
        "Activation(function=<ActivationFunction.IDENTITY: 0>, alpha=nan, beta=nan)")
    text = repr(bl.LayerParametersLSTM(hidden_size=4))
    assert text.startswith("LayerParametersLSTM(input_size=0, hidden_size=4, batch_size=0, ")
    assert text.endswith(", dropout_seed=0)")
