"""An exponential moving average of a model's weights and batch-norm statistics.

ema = d * ema + (1 - d) * weight after every applied update, starting from the initial
weights, with d = min(decay, (1 + n) / (10 + n)) at the n-th update: the early averages
follow the weights closely (without that warm-up, 0.999 ** n of the random initial
weights stays in the average: 26% after 1,344 steps, which left a colour model's
averages 2.7 bits/dim behind its weights after 42 epochs of 32 steps). The batch
norms' moving statistics are averaged too (as timm's ModelEmaV2 does with a model's
buffers) so that the averaged weights meet statistics of the same age: with the raw
weights' statistics an EMA model validates several nats worse
(experiments/training_toolkit).

Reference: the EMA weights of openai/vdvae; the warm-up is `num_updates` of
TensorFlow's `tf.train.ExponentialMovingAverage`.
"""

import contextlib

import tensorflow as tf

from keras_lvae import _compat


def batch_norm_statistics(model):
    """Every batch norm's moving mean and variance, in a fixed order."""
    return [weight for layer in _compat.batch_norm_layers(model)
            for weight in (layer.moving_mean, layer.moving_variance)]


class WeightAverage:
    """The averages of one model, held in variables the model owns (saved with it).

    Args:
        decay: in (0, 1).
    """

    def __init__(self, decay):
        self.decay = float(decay)
        self.variables = []
        self.holds_averages = False  # use() was called, and no training since

    @staticmethod
    def followed(model):
        """The weights the averages follow, in `variables`' order: the trainable ones,
        then every batch norm's moving mean and variance."""
        return model.trainable_weights + batch_norm_statistics(model)

    def build(self, model):
        """Make the averages as the model's own weights, named after what they follow
        (checkpoints key variables by path), equal to the weights now."""
        if self.variables:
            return
        for weight in self.followed(model):
            name = "ema__" + weight.path.split("/", 1)[-1].replace("/", "__")
            self.variables.append(model.add_weight(
                shape=weight.shape, initializer="zeros", trainable=False,
                aggregation="only_first_replica", name=name))
        self.restart(model)

    def decay_at(self, step):
        """The decay of the `step`-th update (counting from 1): the warm-up's
        (1 + step) / (10 + step) until it reaches `decay`."""
        step = tf.cast(step, tf.float32)
        return tf.minimum(self.decay, (1.0 + step) / (10.0 + step))

    def update(self, model, step):
        """One step of the average (inside the training step); `step`: the number
        of updates so far, this one included."""
        decay = self.decay_at(step)
        for average, weight in zip(self.variables, self.followed(model)):
            d = tf.cast(decay, average.dtype)
            average.assign(d * average + (1.0 - d) * weight)

    def restart(self, model):
        """Set the averages to the current weights and statistics."""
        for average, weight in zip(self.variables, self.followed(model)):
            average.assign(weight)

    def use(self, model):
        """Put the averages in place of the weights for good; False if there are none
        yet (the model is not built)."""
        for weight, average in zip(self.followed(model), self.variables):
            weight.assign(average)
        self.holds_averages = bool(self.variables)
        return self.holds_averages

    @contextlib.contextmanager
    def applied(self, model):
        """The averages in place within the block, the weights restored afterwards; a
        no-op before the model is built and while it holds the averages (`use`)."""
        if not self.variables or self.holds_averages:
            yield
            return
        weights = self.followed(model)
        saved = [tf.identity(w.value) for w in weights]
        for weight, average in zip(weights, self.variables):
            weight.assign(average)
        try:
            yield
        finally:
            for weight, value in zip(weights, saved):
                weight.assign(value)
