"""The one exception type of the library."""

__all__ = ["BNNSError", "IdentityActivationsWarning"]


class BNNSError(ValueError):
    """Bad input to a bnnslstm function.

    The message starts with the field at fault (``input_descriptor.data_desc: ...``) and
    says what was expected and what was given. When it is raised, nothing has been written
    to any output buffer.
    """


class IdentityActivationsWarning(RuntimeWarning):
    """A call whose four gate activations and hidden activation are all ``IDENTITY``
    without ``LayerFlags.DEFAULT_ACTIVATIONS``.

    ``Activation()`` is BNNS's zero value, ``IDENTITY``: gate descriptors left at it, with
    the flag unset, compute a linear recurrence instead of an LSTM. Set
    ``lstm_flags |= LayerFlags.DEFAULT_ACTIVATIONS`` for the sigmoid and tanh defaults, or
    give each gate the activation it should have. Warned once per parameters object; the
    everyday layers never warn (their activations are always chosen explicitly).
    """
