"""The one exception type of the library."""

__all__ = ["BNNSError"]


class BNNSError(ValueError):
    """Bad input to a bnnslstm function.

    The message starts with the field at fault (``input_descriptor.data_desc: ...``) and
    says what was expected and what was given. When it is raised, nothing has been written
    to any output buffer.
    """
