import keras
import tensorflow as tf
from keras import ops


def batch_normalization(name, dtype=None):
    """Batch norm as in the paper's code (Lasagne's defaults): running averages
    with weight 0.1 on the new batch (Keras momentum 0.9) and epsilon 1e-4.

    Keras' default momentum of 0.99 lags by hundreds of steps, which makes the
    moving statistics used at evaluation stale for short runs. Built inside a
    multi-replica `tf.distribute` strategy, the batch statistics are computed
    over the global batch (`synchronized=True`), so training matches one device.
    """
    strategy = tf.distribute.get_strategy() if tf.distribute.has_strategy() else None
    synchronized = strategy is not None and strategy.num_replicas_in_sync > 1
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-4, synchronized=synchronized,
                                           name=name, dtype=dtype)


def _foldable(linear, norm, training):
    """Whether `norm(linear(x))` in inference can be one product with folded weights."""
    if training or not norm.built or not linear.built:
        return False
    if type(linear) not in (keras.layers.Dense, keras.layers.Conv2D):
        return False  # transposed convolutions keep their output channels on another axis
    return (linear.compute_dtype == "float32" and norm.compute_dtype == "float32"
            and linear.activation is keras.activations.linear
            and getattr(linear, "quantization_mode", None) is None
            and norm.axis in (-1, len(linear.kernel.shape) - 1)
            and norm.center and norm.scale)


def linear_then_batch_norm(linear, norm, inputs, training=None):
    """`norm(linear(inputs), training=training)` for a Dense or Conv2D `linear`.

    In inference (`training` false or None) with float32 weights, the batch norm's
    affine map is folded into the kernel: x W a + (b a + c), with
    a = gamma / sqrt(moving_variance + epsilon) and c = beta - moving_mean * a, which
    is the same function as the two layers up to float rounding and one pass fewer
    over the activations (about 10% of an importance-sampling pass of the paper's
    model on CPU; benchmarks/README.md). Training, mixed precision and other layer
    types take the two layers as they are.

    Example:
    >>> import numpy as np
    >>> dense = keras.layers.Dense(3, use_bias=False)
    >>> norm = keras.layers.BatchNormalization()
    >>> x = np.random.default_rng(0).normal(size=(4, 2)).astype("float32")
    >>> two_layers = norm(dense(x), training=False)
    >>> folded = linear_then_batch_norm(dense, norm, x)
    >>> bool(np.allclose(folded, two_layers, atol=1e-6))
    True
    """
    if not _foldable(linear, norm, training):
        return norm(linear(inputs), training=training)
    scale = norm.gamma * ops.rsqrt(norm.moving_variance + norm.epsilon)
    offset = norm.beta - norm.moving_mean * scale
    if linear.use_bias:
        offset = offset + linear.bias * scale
    kernel = linear.kernel * scale  # scales the output channels (the kernel's last axis)
    inputs = ops.cast(inputs, "float32")
    if isinstance(linear, keras.layers.Dense):
        return ops.matmul(inputs, kernel) + offset
    return linear.convolution_op(inputs, kernel) + offset
