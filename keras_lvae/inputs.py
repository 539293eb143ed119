"""Input checks of the model's public methods: one place, so the maths stays readable.

Each check names the argument, what was expected and what was received. In eager
code a failed check raises ValueError at once; inside a traced step it becomes a
runtime assertion (XLA compiles it to a no-op).
"""

import numpy as np
import tensorflow as tf
from keras import ops

from keras_lvae import _checks


def unpack(data):
    """The images of a dataset element: `x`, `(x, ...)` or `{"image": x, ...}`.

    Example:
    >>> unpack({"image": 1, "label": 2}), unpack((3, 4)), unpack(5)
    (1, 3, 5)
    """
    if isinstance(data, dict):
        if "image" not in data:
            raise ValueError(
                "Invalid dataset element: expected a dict with an 'image' key, "
                f"received keys {sorted(data)}."
            )
        return data["image"]
    if isinstance(data, (tuple, list)):
        return data[0]
    return data


def labels_of(data):
    """The labels of a dataset element: `(x, y, ...)` -> y, `{"label": y, ...}` -> y, else None.

    Example:
    >>> labels_of((1, 2)), labels_of({"image": 1, "label": 2}), labels_of(1)
    (2, 2, None)
    """
    if isinstance(data, dict):
        return data.get("label")
    if isinstance(data, (tuple, list)) and len(data) > 1:
        return data[1]
    return None


def labels(y, num_classes, rows):
    """Checked int32 labels [rows] of a conditional model (`num_classes`); None when
    `num_classes` is None (an unconditional model). An int gives every row that label."""
    if num_classes is None:
        if y is not None:
            raise ValueError("Invalid value for argument `labels`: this model is unconditional "
                             "(num_classes=None) and takes no labels, received labels.")
        return None
    if y is None:
        raise ValueError(f"Invalid value for argument `labels`: this model is conditional "
                         f"(num_classes={num_classes}); expected an int label per example "
                         "(datasets of (x, y)), received none.")
    if not hasattr(y, "shape"):
        y = np.asarray(y)
    dtype = str(getattr(y, "dtype", ""))
    if "int" not in dtype:
        raise ValueError(f"Invalid value for argument `labels`: expected ints from 0 to "
                         f"{num_classes - 1}, received dtype {dtype or type(y).__name__}.")
    y = ops.cast(y, "int32")
    if len(y.shape) == 0:
        y = ops.broadcast_to(y, (rows,))
    elif len(y.shape) != 1 or (isinstance(rows, int) and y.shape[0] not in (None, rows)):
        raise ValueError(f"Invalid value for argument `labels`: expected shape ({rows},), one "
                         f"label per example, received {tuple(y.shape)}.")
    y = require(y, ops.equal(ops.shape(y)[0], rows),
                "Invalid value for argument `labels`: expected one label per example.")
    return require(y, ops.all(ops.logical_and(y >= 0, y < num_classes)),
                   f"Invalid value for argument `labels`: expected ints from 0 to "
                   f"{num_classes - 1}, received values outside.")


def check_data(name, data, batch_size=None):
    """Refuse empty arrays or datasets and batch sizes below 1, naming the argument.

    Data whose size is unknown (a filtered dataset, a generator) passes; the
    model's `fit` and `evaluate` refuse it afterwards if it yielded no batch.
    """
    if batch_size is not None:
        _checks.positive_int("batch_size", batch_size)
    if data is None:
        return
    if isinstance(data, tf.data.Dataset):
        if int(data.cardinality()) == 0:
            raise ValueError(f"Invalid value for argument `{name}`: expected a dataset with at "
                             "least one batch, received an empty dataset.")
        return
    images = unpack(data)
    if hasattr(images, "shape") and len(images.shape) and images.shape[0] == 0:
        raise ValueError(f"Invalid value for argument `{name}`: expected at least one example, "
                         f"received an array of shape {tuple(images.shape)}.")


def check_values(name, data, likelihood, allow_nan=False):
    """Refuse array data (numpy) whose values the model's likelihood cannot take, before
    `fit` or `evaluate` trace a step: one message naming the argument instead of a graph
    execution error. Datasets and tensors are checked inside the step (`images`)."""
    x = unpack(data) if data is not None else None
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "fiub" or x.size == 0:
        return
    finite = np.isfinite(x) if x.dtype.kind == "f" else np.ones(x.shape, bool)
    if not allow_nan and not finite.all():
        raise ValueError(f"Invalid value for argument `{name}`: expected finite values, "
                         "received NaN or Inf.")
    seen = x[finite] if x.dtype.kind == "f" else x
    if likelihood.unit_interval and seen.size and (seen.min() < 0 or seen.max() > 1):
        raise ValueError(
            f"Invalid value for argument `{name}`: the {likelihood.name} likelihood needs "
            f"values in [0, 1] (scale 8-bit images by 1/255), received values from "
            f"{seen.min():g} to {seen.max():g}.")


def no_batch_error(name):
    """The error for data that turned out to yield no batch."""
    return ValueError(f"Invalid value for argument `{name}`: expected data with at least one "
                      "batch, received data that yielded none.")


def require(x, valid, message):
    """`x` if `valid` (a boolean tensor) holds: ValueError now when eager, else a runtime
    assertion in the traced step."""
    if tf.executing_eagerly():
        if not bool(valid):
            raise ValueError(message)
        return x
    with tf.control_dependencies([tf.debugging.Assert(valid, [message])]):
        return tf.identity(x)


def images(x, feature_shape, unit_interval, allow_nan=False, layout=None):
    """Checked float32 images, reshaped to [batch, *layout] (default: flattened).

    Args:
        x: an array or tensor of shape (batch, *feature_shape), real-valued.
        feature_shape: the shape the model was built with, without the batch.
        unit_interval: values must lie in [0, 1] (a Bernoulli likelihood);
            otherwise they must be finite.
        allow_nan: let NaN through (the guarded train step skips such steps).
        layout: the per-example shape to return, e.g. (784,) or (28, 28, 1).
    """
    if not hasattr(x, "shape"):
        x = np.asarray(x)
    shape = tuple(x.shape)
    if len(shape) != len(feature_shape) + 1 or tuple(shape[1:]) != tuple(feature_shape):
        raise ValueError(
            f"Invalid input `x`: expected shape (batch, {', '.join(map(str, feature_shape))})"
            f" (the shape this model was built with), received {shape}."
        )
    dtype = str(getattr(x, "dtype", ""))
    if not any(kind in dtype for kind in ("float", "int", "bool")) or "complex" in dtype:
        raise ValueError(
            "Invalid input `x`: expected real numbers (a float, int or bool array), "
            f"received dtype {dtype or type(x).__name__}."
        )
    x = ops.cast(x, "float32")
    if unit_interval:
        if allow_nan:
            valid = ops.logical_not(ops.any(ops.logical_or(x < 0.0, x > 1.0)))
        else:
            valid = ops.all(ops.logical_and(x >= 0.0, x <= 1.0))
        x = require(x, valid, (
            "Invalid input `x`: the Bernoulli likelihood needs values in [0, 1] "
            "(scale images by 1/255), received values outside [0, 1]"
            + ("." if allow_nan else " or NaN.")))
    elif not allow_nan:
        x = require(x, ops.all(ops.isfinite(x)),
                    "Invalid input `x`: expected finite values, received NaN or Inf.")
    layout = (int(np.prod(feature_shape)),) if layout is None else tuple(layout)
    return ops.reshape(x, (-1, *layout))


def latent(z, latent_shape):
    """`z` as float32 after checking its shape is (batch, *latent_shape)."""
    shape = tuple(z.shape)
    if len(shape) != len(latent_shape) + 1 or tuple(shape[1:]) != tuple(latent_shape):
        raise ValueError(
            f"Invalid input `z_1`: expected shape (batch, {', '.join(map(str, latent_shape))}), "
            f"received {shape}."
        )
    return ops.cast(z, "float32")
