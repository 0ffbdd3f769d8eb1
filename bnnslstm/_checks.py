"""The checks of one scalar argument, each written once: an integer in a range, a number in
[0, 1). Every message names the field at fault and the value it got. Every call of the
library passes through them, so a plain int or float takes a short path."""

import numbers

from .errors import BNNSError


def is_integer(value):
    """Whether ``value`` is an integer (Python's or numpy's), a bool excluded."""
    kind = type(value)
    return kind is int or (kind is not bool and isinstance(value, numbers.Integral))


def integer(value, field, low=0, below=None):
    """``value`` as an int if it is an integer with ``low <= value`` (and ``value < below``);
    else BNNSError naming ``field``."""
    if (type(value) is int or is_integer(value)) and low <= value \
            and (below is None or value < below):
        return int(value)
    kind = {0: "a non-negative integer", 1: "a positive integer"}.get(low, f"an integer >= {low}")
    if not is_integer(value) or below is None:
        raise BNNSError(f"{field}: expected {kind}, got {value!r}")
    bound = f"2**{below.bit_length() - 1}" if below & (below - 1) == 0 else str(below)
    raise BNNSError(f"{field}: expected {low} <= {field.rsplit('.', 1)[-1]} < {bound}, got {value}")


def fraction(value, field):
    """``value`` as a float if it is a number in [0, 1) (dropout); else BNNSError."""
    kind = type(value)
    if (kind is float or kind is int or (kind is not bool and isinstance(value, numbers.Real))) \
            and 0 <= value < 1:
        return float(value)
    raise BNNSError(f"{field}: expected a number in [0, 1), got {value!r}")
