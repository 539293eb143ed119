import keras
import tensorflow as tf
from keras import ops

from keras_lvae import _checks, distributions
from keras_lvae.layers._normalization import batch_normalization, linear_then_batch_norm


@keras.saving.register_keras_serializable(package="keras_lvae")
class StochasticGaussian(keras.layers.Layer):
    """A diagonal Gaussian layer: mean and variance heads, and a reparameterised sample.

    mean = Linear(h), variance = Softplus(Linear(h)) + variance_floor, as in the
    paper's code (the floor keeps log densities finite); with `batch_norm` each
    linear head is batch-normalised before use. Means and variances are
    float32 even under a mixed-precision policy. With `kernel_size` the linear
    map is a convolution ('same' padding) and the layer holds a Gaussian per
    position and channel of a feature map (`units` channels).

    Args:
        units: number of latent units.
        batch_norm: batch-normalise the two heads (the paper's code does).
        variance_floor: added to the softplus output.
        seed: int or None; seeds the initial weights and the layer's
            `keras.random.SeedGenerator` (its samples).
        kernel_size: None for a dense map of [batch, features]; an odd int for a
            convolution of [batch, height, width, channels].

    Call arguments:
        inputs: deterministic features of shape [batch, features] (or
            [batch, height, width, channels] with `kernel_size`).
        training: batch norm uses batch statistics when True.
        sample: when False, `z` is the mean instead of a sample.

    Returns:
        Tuple `(z, mean, variance)`, each of shape [batch, units] (or
        [batch, height, width, units]).

    Example:
    >>> import numpy as np
    >>> z, mean, variance = StochasticGaussian(4, seed=1)(np.ones((2, 3), "float32"))
    >>> tuple(z.shape), bool((variance > 0).numpy().all())
    ((2, 4), True)
    """

    def __init__(self, units, batch_norm=False, variance_floor=1e-5, seed=None, kernel_size=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.units = _checks.positive_int("units", units)
        self.batch_norm = bool(batch_norm)
        if not variance_floor >= 0:
            raise ValueError(
                "Invalid value for argument `variance_floor`: expected a non-negative float, "
                f"received {variance_floor!r}."
            )
        self.variance_floor = float(variance_floor)
        self.seed = _checks.optional_int("seed", seed)
        self.kernel_size = (None if kernel_size is None
                            else _checks.odd_positive_int("kernel_size", kernel_size))
        # Mean and variance heads as one Dense (and one batch norm) of 2 * units:
        # the same maths as two heads with half the ops, which matters on CPU.
        options = dict(use_bias=not self.batch_norm,
                       dtype=self.dtype_policy,  # sublayers follow this layer's (mixed) policy
                       kernel_initializer=keras.initializers.GlorotUniform(seed))
        if kernel_size is None:
            self.dense = keras.layers.Dense(2 * units, name="dense", **options)
        else:
            self.dense = keras.layers.Conv2D(2 * units, kernel_size, padding="same", name="conv",
                                             **options)
        if self.batch_norm:
            self.norm = batch_normalization(name="batch_norm", dtype=self.dtype_policy)
        # Named after the layer: checkpoints key variables by path.
        self.seed_generator = keras.random.SeedGenerator(seed, name=f"{self.name}_seed_generator")

    def build(self, input_shape):
        self.dense.build(input_shape)
        if self.batch_norm:
            self.norm.build(tuple(input_shape)[:-1] + (2 * self.units,))

    def call(self, inputs, training=None, sample=True):
        if self.batch_norm:
            params = linear_then_batch_norm(self.dense, self.norm, inputs, training=training)
        else:
            params = self.dense(inputs)
        params = ops.cast(params, "float32")
        mean, pre_variance = ops.split(params, 2, axis=-1)
        variance = ops.softplus(pre_variance) + self.variance_floor
        z = self.draw(mean, variance) if sample else mean
        return z, mean, variance

    def draw(self, mean, variance, seed=None):
        """Reparameterised sample of N(mean, variance) through a TFP Normal.

        `seed`: an int32 tensor of shape [2] for stateless sampling; by default
        the layer's SeedGenerator supplies one (and advances). Under a
        multi-replica tf.distribute strategy every replica draws the noise of
        the whole global batch from the shared seed and keeps its own rows: the
        replicas get different noise, and exactly the noise one device would
        draw for the same global batch (a mirrored SeedGenerator alone would
        give every replica the same noise).
        """
        if seed is None:
            seed = ops.cast(self.seed_generator.next(), "int32")
            replica = tf.distribute.get_replica_context()
            if replica is not None and replica.num_replicas_in_sync > 1:
                rows = tf.shape(mean)[0]
                global_shape = tf.concat([[rows * replica.num_replicas_in_sync],
                                          tf.shape(mean)[1:]], 0)
                noise = distributions.sample_normal(
                    tf.zeros(global_shape, mean.dtype), tf.ones(global_shape, mean.dtype), seed)
                start = rows * replica.replica_id_in_sync_group
                return mean + ops.sqrt(variance) * noise[start:start + rows]
        return distributions.sample_normal(mean, variance, ops.cast(seed, "int32"))

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)[:-1] + (self.units,)
        return shape, shape, shape

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            batch_norm=self.batch_norm,
            variance_floor=self.variance_floor,
            seed=self.seed,
            kernel_size=self.kernel_size,
        )
        return config
