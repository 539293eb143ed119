import itertools

import keras
from keras import ops

from keras_lvae import _checks
from keras_lvae.layers._normalization import batch_norm, batch_normalization

RESAMPLING = ("none", "down", "up")
ACTIVATIONS = {
    "elu": ops.elu,
    "swish": ops.silu,
    "leaky_relu": lambda x: ops.leaky_relu(x, negative_slope=0.1),  # as in MLPBlock
}


@keras.saving.register_keras_serializable(package="keras_lvae")
class ConvRung(keras.layers.Layer):
    """One rung of a convolutional ladder: an input convolution, then residual blocks.

    The input convolution (`kernel_size`, stride 1) maps any number of channels
    (an image, a latent feature map, or a latent concatenated with the features
    of the rung above) to `filters`. Each of the `num_blocks` residual blocks
    computes x + g(f(x)) with f = 2 x (BatchNorm, activation, Conv) and, when
    `gated`, g(h) = activation(a) * sigmoid(b) where [a, b] = Conv1x1(h) with
    2 * filters channels (otherwise g is the identity). The first
    `resample_steps` blocks start with a stride-2 convolution
    (`resample="down"`: height and width halved, rounding up) or a stride-2
    transposed convolution (`"up"`: doubled).

    Reference: the residual blocks ("bacdbacd"), gate and resampling blocks of
    addtt/ladder-vae-pytorch (`lib/nn.py`, `models/lvae_layers.py`), without
    dropout.

    Args:
        filters: channels of every convolution and of the output.
        num_blocks: residual blocks.
        resample: "none", "down" or "up".
        resample_steps: how many blocks resample (each by a factor of 2);
            at most `num_blocks`, and 0 exactly when `resample` is "none".
        gated: end each residual branch with the gate.
        activation: "elu", "swish" or "leaky_relu" (slope 0.1).
        batch_norm: batch-normalise before each activation in the residual
            branches (the convolutions keep their biases either way).
        kernel_size: odd size of the input and residual convolutions.
        project_input: False skips the input convolution (the input must then
            have `filters` channels already).
        seed: int or None; convolution j (in creation order) is seeded with seed + j.

    Call arguments:
        inputs: tensor of shape [batch, height, width, channels].
        training: batch norm uses batch statistics when True.

    Returns:
        Tensor of shape [batch, height', width', filters].

    Example:
    >>> import numpy as np
    >>> rung = ConvRung(8, num_blocks=2, resample="down", resample_steps=1, gated=True)
    >>> tuple(rung(np.ones((2, 7, 7, 1), "float32")).shape)
    (2, 4, 4, 8)
    """

    def __init__(self, filters, num_blocks=2, resample="none", resample_steps=0, gated=False,
                 activation="elu", batch_norm=True, kernel_size=3, project_input=True,
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = _checks.positive_int("filters", filters)
        self.num_blocks = _checks.positive_int("num_blocks", num_blocks)
        self.resample = _checks.one_of("resample", resample, RESAMPLING)
        self.resample_steps = _checks.non_negative_int("resample_steps", resample_steps)
        if self.resample_steps > self.num_blocks or (self.resample_steps > 0) != (resample != "none"):
            raise ValueError(
                "Invalid value for argument `resample_steps`: expected 1 to num_blocks "
                f"({self.num_blocks}) with resample 'down' or 'up', and 0 with 'none'; "
                f"received {resample_steps!r} with resample {resample!r}.")
        self.gated = bool(gated)
        self.activation = _checks.one_of("activation", activation, tuple(ACTIVATIONS))
        self.batch_norm = bool(batch_norm)
        self.kernel_size = _checks.odd_positive_int("kernel_size", kernel_size)
        self.project_input = bool(project_input)
        self.seed = _checks.optional_int("seed", seed)

        count = itertools.count()

        def conv(channels, size, transpose=False, strides=1):
            layer = keras.layers.Conv2DTranspose if transpose else keras.layers.Conv2D
            j = next(count)
            return layer(channels, size, strides=strides, padding="same", name=f"conv_{j}",
                         dtype=self.dtype_policy,  # sublayers follow this layer's policy
                         kernel_initializer=keras.initializers.GlorotUniform(
                             None if seed is None else seed + j))

        self.input_conv = conv(filters, kernel_size) if self.project_input else None
        # Flat lists (Keras tracks lists of layers): block b uses resample_convs[b] if
        # b < resample_steps, residual_convs[2b : 2b + 2], norms[2b : 2b + 2], gates[b].
        self.resample_convs = [conv(filters, 3, transpose=resample == "up", strides=2)
                               for _ in range(self.resample_steps)]
        self.residual_convs, self.norms, self.gates = [], [], []
        for b in range(num_blocks):
            self.residual_convs += [conv(filters, kernel_size) for _ in range(2)]
            if self.batch_norm:
                self.norms += [batch_normalization(f"batch_norm_{b}_{k}", self.dtype_policy)
                               for k in range(2)]
            if self.gated:
                self.gates.append(conv(2 * filters, 1))

    def build(self, input_shape):
        shape = tuple(input_shape)
        if self.input_conv is not None:
            self.input_conv.build(shape)
        elif shape[-1] != self.filters:
            raise ValueError(
                f"ConvRung `{self.name}` has project_input=False, so its input needs "
                f"{self.filters} channels; received shape {shape}.")
        shape = shape[:-1] + (self.filters,)
        for b in range(self.num_blocks):
            if b < self.resample_steps:
                self.resample_convs[b].build(shape)
                shape = self.resample_convs[b].compute_output_shape(shape)
            for k in (2 * b, 2 * b + 1):
                if self.batch_norm:
                    self.norms[k].build(shape)
                self.residual_convs[k].build(shape)
            if self.gated:
                self.gates[b].build(shape)

    def call(self, inputs, training=None):
        act = ACTIVATIONS[self.activation]
        h = self.input_conv(inputs) if self.input_conv is not None else inputs
        for b in range(self.num_blocks):
            if b < self.resample_steps:
                h = self.resample_convs[b](h)
            r = h
            for k in (2 * b, 2 * b + 1):
                if self.batch_norm:
                    r = batch_norm(self.norms[k], r, training=training)
                r = self.residual_convs[k](act(r))
            if self.gated:
                value, gate = ops.split(self.gates[b](r), 2, axis=-1)
                r = act(value) * ops.sigmoid(gate)
            h = h + r
        return h

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        height, width = shape[1], shape[2]
        for _ in range(self.resample_steps):
            if self.resample == "down":
                height, width = (None if d is None else (d + 1) // 2 for d in (height, width))
            else:
                height, width = (None if d is None else 2 * d for d in (height, width))
        return (shape[0], height, width, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            num_blocks=self.num_blocks,
            resample=self.resample,
            resample_steps=self.resample_steps,
            gated=self.gated,
            activation=self.activation,
            batch_norm=self.batch_norm,
            kernel_size=self.kernel_size,
            project_input=self.project_input,
            seed=self.seed,
        )
        return config
