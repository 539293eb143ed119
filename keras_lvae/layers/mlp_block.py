import keras

from keras_lvae import _checks
from keras_lvae.layers._normalization import (_closed_form_applies, batch_norm_of_parts,
                                              batch_normalization, linear_then_batch_norm,
                                              split_rows)

# With `row_halves`, blocks at least this wide train their batch as two halves side by side;
# narrower ones lose more to the extra ops than they gain (measured, benchmarks/README.md).
HALVES_MIN_UNITS = 256


@keras.saving.register_keras_serializable(package="keras_lvae")
class MLPBlock(keras.layers.Layer):
    """The deterministic block of the paper: `depth` x (Dense -> BatchNorm -> LeakyReLU).

    With `row_halves=True` a block of `HALVES_MIN_UNITS` or more units computes, in
    training, the batch's two row halves as independent ops, batch norm over the whole
    batch: the same numbers to float rounding, 1.07-1.11x faster training of the paper's
    model where TensorFlow runs ops one per core on 2 cores
    (`keras_lvae.threads.ops_run_side_by_side()`, which `lvae train` passes), 7-15% slower
    on one core.

    Args:
        units: width of every dense layer.
        depth: number of dense layers (the paper uses 2).
        batch_norm: normalise after each dense layer (the dense layer then has
            no bias, which batch norm's offset replaces).
        negative_slope: slope of the leaky ReLU for negative inputs.
        seed: int or None; seeds the initial weights (dense layer j uses seed + j).
        row_halves: train on the batch's two row halves side by side (see above).

    Call arguments:
        inputs: tensor of shape [batch, features].
        training: batch norm uses batch statistics when True.

    Returns:
        Tensor of shape [batch, units].

    Example:
    >>> import numpy as np
    >>> tuple(MLPBlock(8)(np.ones((3, 5), "float32")).shape)
    (3, 8)
    """

    def __init__(self, units, depth=2, batch_norm=True, negative_slope=0.1, seed=None,
                 row_halves=False, **kwargs):
        super().__init__(**kwargs)
        self.units = _checks.positive_int("units", units)
        self.depth = _checks.positive_int("depth", depth)
        self.batch_norm = bool(batch_norm)
        self.negative_slope = float(negative_slope)
        self.seed = _checks.optional_int("seed", seed)
        self.row_halves = bool(row_halves)
        self.dense_layers = [
            keras.layers.Dense(
                units, use_bias=not self.batch_norm, name=f"dense_{i}",
                dtype=self.dtype_policy,  # sublayers follow this layer's (mixed) policy
                kernel_initializer=keras.initializers.GlorotUniform(
                    None if seed is None else seed + i))
            for i in range(depth)
        ]
        self.norm_layers = (
            [batch_normalization(name=f"batch_norm_{i}", dtype=self.dtype_policy)
             for i in range(depth)]
            if self.batch_norm
            else []
        )

    def build(self, input_shape):
        shape = tuple(input_shape)
        for i, dense in enumerate(self.dense_layers):
            dense.build(shape)
            shape = shape[:-1] + (self.units,)
            if self.batch_norm:
                self.norm_layers[i].build(shape)

    def call(self, inputs, training=None):
        if self._in_halves(inputs, training):
            return self._call_in_halves(inputs)
        h = inputs
        for i, dense in enumerate(self.dense_layers):
            if self.batch_norm:
                h = linear_then_batch_norm(dense, self.norm_layers[i], h, training=training)
            else:
                h = dense(h)
            h = keras.ops.leaky_relu(h, negative_slope=self.negative_slope)
        return h

    def _in_halves(self, inputs, training):
        """Whether training takes `_call_in_halves`: `row_halves`, a wide block and
        closed-form batch norms."""
        return (self.row_halves and self.batch_norm and self.units >= HALVES_MIN_UNITS
                and all(_closed_form_applies(norm, inputs, training) for norm in self.norm_layers))

    def _call_in_halves(self, inputs):
        """The training call on the batch's two row halves, whose products and activations are
        independent ops that run side by side on two cores; batch norm takes its statistics
        over the whole batch, so the numbers equal `call`'s to float rounding. A layer-by-layer
        chain otherwise leaves one core idle through the forward pass (benchmarks/README.md)."""
        parts = split_rows(inputs, 2)
        for dense, norm in zip(self.dense_layers, self.norm_layers):
            parts = batch_norm_of_parts(norm, [dense(part) for part in parts])
            parts = [keras.ops.leaky_relu(part, negative_slope=self.negative_slope)
                     for part in parts]
        return keras.ops.concatenate(parts, axis=0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            depth=self.depth,
            batch_norm=self.batch_norm,
            negative_slope=self.negative_slope,
            seed=self.seed,
            row_halves=self.row_halves,
        )
        return config
