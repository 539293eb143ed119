"""Argument checks shared by layers and models, with Keras-style messages."""

import math


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(name, value):
    """Return `value` if it is a positive int, else raise ValueError naming `name`."""
    if not is_int(value) or value < 1:
        raise ValueError(
            f"Invalid value for argument `{name}`: expected a positive int, received {value!r}."
        )
    return value


def non_negative_int(name, value):
    """Return `value` if it is an int >= 0, else raise ValueError naming `name`."""
    if not is_int(value) or value < 0:
        raise ValueError(
            f"Invalid value for argument `{name}`: expected a non-negative int, received {value!r}."
        )
    return value


def non_negative_number(name, value, note=""):
    """Return `value` as a float if it is a finite int or float >= 0, else raise ValueError."""
    if not (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0):
        raise ValueError(f"Invalid value for argument `{name}`: expected a finite number >= 0"
                         f"{note}, received {value!r}.")
    return float(value)


def odd_positive_int(name, value):
    """Return `value` if it is an odd positive int (a kernel size), else raise ValueError."""
    if not is_int(value) or value < 1 or value % 2 == 0:
        raise ValueError(
            f"Invalid value for argument `{name}`: expected an odd int, received {value!r}.")
    return value


def fraction(name, value, note=""):
    """Return `value` as a float if it is a number in [0, 1), else raise ValueError."""
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1):
        raise ValueError(f"Invalid value for argument `{name}`: expected a number in [0, 1)"
                         f"{note}, received {value!r}.")
    return float(value)


def optional_int(name, value):
    """Return `value` if it is an int or None (a seed), else raise ValueError naming `name`."""
    if value is not None and not is_int(value):
        raise ValueError(
            f"Invalid value for argument `{name}`: expected an int or None, received {value!r}."
        )
    return value


def positive_int_tuple(name, value):
    """Return `value` as a tuple if it is a non-empty sequence of positive ints."""
    if (
        isinstance(value, (str, bytes))
        or not hasattr(value, "__len__")
        or len(value) == 0
        or not all(is_int(v) and v > 0 for v in value)
    ):
        raise ValueError(
            f"Invalid value for argument `{name}`: expected a non-empty list of positive ints, "
            f"received {value!r}."
        )
    return tuple(value)


def layer_indices(name, value, low, high):
    """`value` (None: all) as a sorted tuple of distinct ints in [low, high]."""
    if value is None:
        return tuple(range(low, high + 1))
    if (isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) == 0
            or not all(is_int(v) and low <= v <= high for v in value)
            or len(set(value)) != len(value)):
        raise ValueError(f"Invalid value for argument `{name}`: expected distinct layer indices "
                         f"from {low} to {high}, received {value!r}.")
    return tuple(sorted(value))


def one_of(name, value, choices):
    """Return `value` if it is one of `choices`, else raise ValueError naming `name`."""
    if value not in choices:
        raise ValueError(
            f"Invalid value for argument `{name}`: expected one of {list(choices)}, "
            f"received {value!r}."
        )
    return value


def one_per_layer(name, value, layers_name, layers):
    """Refuse `value` unless it has one entry per entry of `layers` (one per stochastic layer)."""
    if len(value) != len(layers):
        raise ValueError(
            f"Invalid value for argument `{name}`: expected one entry per stochastic layer "
            f"({len(layers)}, as in `{layers_name}`={list(layers)}), received {len(value)}: "
            f"{list(value)}."
        )


def positive_int_property(name):
    """A property that stores `_<name>` and refuses anything but a positive int."""
    def get(self):
        return getattr(self, "_" + name)

    def set(self, value):
        setattr(self, "_" + name, positive_int(name, value))

    return property(get, set)
