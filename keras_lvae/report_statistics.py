"""Report statistics: means with standard errors, and the summaries of bounds and
accuracies that `bound_report`, `lvae evaluate` and the experiments print."""

import math

import numpy as np

from keras_lvae.densities import bits_per_dim


def mean_and_standard_error(values):
    """Mean and its standard error, std(ddof=1) / sqrt(n) (0 for a single value).

    Example:
    >>> mean_and_standard_error([1.0, 2.0, 3.0, 4.0])
    (2.5, 0.6454972243679028)
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("Invalid value for argument `values`: expected at least one value, received none.")
    if values.size == 1:
        return float(values[0]), 0.0
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))


def summarise_accuracy(correct):
    """{"accuracy", "standard_error", "num_examples"} of per-example booleans."""
    accuracy, error = mean_and_standard_error(np.asarray(correct, np.float64))
    return {"accuracy": accuracy, "standard_error": error, "num_examples": int(np.size(correct))}


def summarise_bounds(l_1, l_k, num_samples, bits_per_dim_of=None):
    """`bound_report`'s dict from per-example L_1 and L_k (nats); with `bits_per_dim_of`
    (the dimensions of an 8-bit image) also their bits per dimension. `lvae evaluate`
    builds the same report from a SavedModel's scores."""
    l_1, l_k = np.asarray(l_1, np.float64), np.asarray(l_k, np.float64)

    def summary(values):
        mean, error = mean_and_standard_error(values)
        return dict(mean=mean, standard_error=error)

    report = dict(
        num_examples=int(l_k.size), num_samples=num_samples,
        L_1=summary(l_1), L_k=summary(l_k), bound_gap=summary(l_k - l_1),
        per_example_L_1=l_1, per_example_L_k=l_k,
    )
    if bits_per_dim_of:
        report["bits_per_dim"] = {name: summary(bits_per_dim(values, bits_per_dim_of))
                                  for name, values in (("L_1", l_1), ("L_k", l_k))}
    return report
