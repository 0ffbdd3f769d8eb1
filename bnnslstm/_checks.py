"""The checks of one scalar argument, each written once: an integer in a range, a number in
[0, 1). Every message names the field at fault and the value it got."""

import numbers

from .errors import BNNSError


def is_integer(value):
    """Whether ``value`` is an integer (Python's or numpy's), a bool excluded."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def integer(value, field, low=0, below=None):
    """``value`` as an int if it is an integer with ``low <= value`` (and ``value < below``);
    else BNNSError naming ``field``."""
    kind = {0: "a non-negative integer", 1: "a positive integer"}.get(low, f"an integer >= {low}")
    if not is_integer(value) or (below is None and value < low):
        raise BNNSError(f"{field}: expected {kind}, got {value!r}")
    if below is not None and not low <= value < below:
        bound = f"2**{below.bit_length() - 1}" if below & (below - 1) == 0 else str(below)
        raise BNNSError(f"{field}: expected {low} <= {field.rsplit('.', 1)[-1]} < {bound}, "
                        f"got {value}")
    return int(value)


def fraction(value, field):
    """``value`` as a float if it is a number in [0, 1) (dropout); else BNNSError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise BNNSError(f"{field}: expected a number in [0, 1), got {value!r}")
    return float(value)
