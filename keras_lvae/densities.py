"""Per-example log densities and KL divergences of the ELBO, in nats, as pure functions.

Every function returns one value per example (shape [batch]), summed over the
other axes; reductions over the batch happen in the model's step functions.
Elementwise TFP densities live in `keras_lvae.distributions`.
"""

import math

from keras import ops

from keras_lvae import distributions


def per_example_sum(values):
    """Sum every axis but the first (batch) one."""
    return ops.sum(ops.reshape(values, (ops.shape(values)[0], -1)), axis=-1)


def gaussian_kl(mean_q, variance_q, mean_p=None, variance_p=None):
    """KL(q || p) per example between diagonal Gaussians, summed over units.

    Args:
        mean_q, variance_q: parameters of q, shape [batch, units].
        mean_p, variance_p: parameters of p; `None` means the standard normal.

    Returns:
        Tensor of shape [batch].

    Example:
    >>> import numpy as np
    >>> kl = gaussian_kl(np.zeros((2, 3), "float32"), np.ones((2, 3), "float32"))
    >>> [round(float(v), 6) for v in kl]
    [0.0, 0.0]
    """
    return per_example_sum(gaussian_kl_per_unit(mean_q, variance_q, mean_p, variance_p))


def gaussian_kl_per_unit(mean_q, variance_q, mean_p=None, variance_p=None):
    """Elementwise KL(q || p); `None` for p means the standard normal."""
    mean_q = ops.cast(mean_q, "float32")
    variance_q = ops.cast(variance_q, "float32")
    if mean_p is None:
        mean_p = ops.zeros_like(mean_q)
        variance_p = ops.ones_like(variance_q)
    return distributions.normal_kl(
        mean_q, variance_q, ops.cast(mean_p, "float32"), ops.cast(variance_p, "float32")
    )


def gaussian_log_prob(x, mean=None, variance=None):
    """log N(x; mean, variance) per example, summed over all features; `None`
    for mean and variance means the standard normal."""
    x = ops.cast(x, "float32")
    if mean is None:
        mean, variance = ops.zeros_like(x), ops.ones_like(x)
    return per_example_sum(
        distributions.normal_log_prob(x, ops.cast(mean, "float32"), ops.cast(variance, "float32"))
    )


def bernoulli_log_prob(x, logits):
    """log Bernoulli(x; sigmoid(logits)) per example, summed over all features.

    Example:
    >>> import numpy as np
    >>> x = np.array([[1.0, 0.0]], "float32")
    >>> round(float(bernoulli_log_prob(x, np.zeros((1, 2), "float32"))[0]), 6)
    -1.386294
    """
    # x * logits - softplus(logits), written out rather than as `tfd.Bernoulli(...).log_prob`,
    # which evaluates two softplus ops and costs about 8% of an importance-sampling pass.
    x, logits = ops.cast(x, "float32"), ops.cast(logits, "float32")
    return per_example_sum(x * logits - ops.softplus(logits))


def bits_per_dim(log_likelihood_nats, num_dims):
    """-log p(x) in bits per dimension: -nats / (num_dims * ln 2); arrays or tensors.

    Example:
    >>> round(float(bits_per_dim(-3072 * math.log(2) * 3.5, 3072)), 6)  # CIFAR-10 sized
    3.5
    """
    return -log_likelihood_nats / (num_dims * math.log(2.0))
