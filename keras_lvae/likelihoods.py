"""Pixel likelihoods p(x | z_1): one class each, found by name in `LIKELIHOODS`.

A likelihood owns everything that depends on the kind of pixel: the output layer
that gives its parameters, `log_prob`, the mean image, samples, and how its inputs
are checked and reported (bits per dimension for 8-bit pixels). The model holds one
as `model.pixel_likelihood` and never tests a likelihood's name; a new likelihood is
one new class here and one entry in `LIKELIHOODS`.

Parameters travel as one float32 tensor [batch, ..., P] (P = `num_parameters`), so
that the convolutional ladder can crop them to the image whatever they hold.

Reference: the likelihood modules of addtt/ladder-vae-pytorch (`lib/likelihoods.py`)
and openai/vdvae (`DmolNet`).

Example:
>>> import numpy as np
>>> bernoulli = create("bernoulli", channels=2)
>>> logits = np.zeros((1, 2), "float32")
>>> round(float(bernoulli.log_prob(np.array([[1.0, 0.0]], "float32"), logits)[0]), 6)
-1.386294
>>> bernoulli.mean(logits).numpy().tolist()
[[0.5, 0.5]]
"""

import keras
import tensorflow as tf
from keras import ops

from keras_lvae import _checks, densities, distributions, logistic_mixture
from keras_lvae.layers import StochasticGaussian


class Likelihood:
    """What every pixel likelihood offers; subclasses fill in the maths.

    Class attributes: `name` (the model's `likelihood` argument), `binary`
    (the data are binarized: datasets apply their binarization protocol),
    `unit_interval` (inputs must lie in [0, 1]) and `eight_bit` (8-bit pixels
    given as v / 255: bounds are also reported in bits per dimension, and the
    SavedModel takes and returns uint8 images).
    """

    name = None
    binary = False
    unit_interval = True
    eight_bit = False
    # Model arguments this likelihood reads (besides the number of channels).
    OPTIONS = ()

    def __init__(self, channels):
        self.channels = _checks.positive_int("channels", channels)

    def num_parameters(self):
        """P, the parameters per pixel (or per position of a feature map)."""
        return self.channels

    def head(self, seed, kernel_size=None):
        """The output layer: a Dense map of [batch, features], or with `kernel_size` a
        'same' convolution of [batch, height, width, channels]."""
        initializer = keras.initializers.GlorotUniform(seed)
        if kernel_size is None:
            return keras.layers.Dense(self.num_parameters(), kernel_initializer=initializer,
                                      name="output_logits")
        return keras.layers.Conv2D(self.num_parameters(), kernel_size, padding="same",
                                   kernel_initializer=initializer, name="output_logits")

    def parameters(self, head, features, training=None):
        """The head's output as one float32 tensor [batch, ..., P]."""
        return ops.cast(head(features), "float32")

    def log_prob(self, x, params):
        """log p(x) per example (nats), summed over pixels and channels: shape [batch]."""
        raise NotImplementedError

    def mean(self, params):
        """The mean image, shaped like x."""
        raise NotImplementedError

    def sample(self, params, seed):
        """One image drawn from p(x | params); `seed` is a stateless int32[2] seed."""
        raise NotImplementedError


class Bernoulli(Likelihood):
    """Binary pixels: p(x = 1) = sigmoid(logits). `log_prob` equals
    `tfd.Bernoulli(logits=...).log_prob` (tested), written out for speed."""

    name = "bernoulli"
    binary = True

    def log_prob(self, x, params):
        return densities.bernoulli_log_prob(x, params)

    def mean(self, params):
        return ops.sigmoid(params)

    def sample(self, params, seed):
        uniform = tf.random.stateless_uniform(tf.shape(params), seed)
        return ops.cast(uniform < ops.sigmoid(params), "float32")


class Gaussian(Likelihood):
    """Continuous pixels: N(mean, variance) per pixel (TFP's Normal), from a
    `StochasticGaussian` head without batch norm; parameters are [mean | variance]."""

    name = "gaussian"
    unit_interval = False

    def num_parameters(self):
        return 2 * self.channels

    def head(self, seed, kernel_size=None):
        return StochasticGaussian(self.channels, batch_norm=False, seed=seed,
                                  kernel_size=kernel_size, name="output_gaussian")

    def parameters(self, head, features, training=None):
        _, mean, variance = head(features, training=training, sample=False)
        return ops.concatenate([mean, variance], axis=-1)

    def _split(self, params):
        return params[..., :self.channels], params[..., self.channels:]

    def log_prob(self, x, params):
        return densities.gaussian_log_prob(x, *self._split(params))

    def mean(self, params):
        return self._split(params)[0]

    def sample(self, params, seed):
        return distributions.sample_normal(*self._split(params), seed)


class LogisticMixture(Likelihood):
    """8-bit pixels under PixelCNN++'s discretized mixture of logistics
    (`keras_lvae.logistic_mixture`), K components, channel-coupled means or not."""

    name = "logistic_mixture"
    eight_bit = True
    OPTIONS = ("mixture_components", "coupled_means")

    def __init__(self, channels, mixture_components=10, coupled_means=True):
        super().__init__(channels)
        self.components = _checks.positive_int("mixture_components", mixture_components)
        self.coupled = bool(coupled_means)

    def num_parameters(self):
        return logistic_mixture.num_parameters(self.components, self.channels, self.coupled)

    def log_prob(self, x, params):
        return logistic_mixture.log_prob(x, params, self.components, self.coupled)

    def mean(self, params):
        return logistic_mixture.mean(params, self.components, self.channels, self.coupled)

    def sample(self, params, seed):
        return logistic_mixture.sample(params, self.components, self.channels, seed,
                                       self.coupled)


LIKELIHOODS = {cls.name: cls for cls in (Bernoulli, Gaussian, LogisticMixture)}


def get(name):
    """The likelihood class called `name`, or ValueError listing the known ones."""
    if name not in LIKELIHOODS:
        raise ValueError(f"Invalid value for argument `likelihood`: expected one of "
                         f"{sorted(LIKELIHOODS)}, received {name!r}.")
    return LIKELIHOODS[name]


def create(name, channels, **options):
    """A likelihood over `channels` channels; `options` may hold any model arguments,
    of which it takes the ones its class reads (`OPTIONS`)."""
    cls = get(name)
    return cls(channels, **{key: options[key] for key in cls.OPTIONS if key in options})
