"""The only module that imports TensorFlow Probability.

Layers and models pass plain tensors around; distributions are built here,
inside functions, and never leave them.
"""

import tensorflow_probability as tfp

from keras import ops

tfd = tfp.distributions


def normal(mean, variance):
    """A diagonal Gaussian given its mean and (not log) variance."""
    return tfd.Normal(loc=mean, scale=ops.sqrt(variance))


def sample_normal(mean, variance, seed):
    """Reparameterised sample of N(mean, variance).

    `seed` is a stateless int32 seed of shape [2]; the same seed gives the same
    sample, which keeps training reproducible and XLA-compilable.
    """
    return normal(mean, variance).sample(seed=seed)


def normal_log_prob(x, mean, variance):
    """Elementwise log N(x; mean, variance)."""
    return normal(mean, variance).log_prob(x)


def normal_kl(mean_q, variance_q, mean_p, variance_p):
    """Elementwise KL(N(mean_q, variance_q) || N(mean_p, variance_p))."""
    return tfd.kl_divergence(normal(mean_q, variance_q), normal(mean_p, variance_p))

