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


def _affine_on_last_axis(norm, rank):
    """Whether `norm` normalises the last axis of rank-`rank` tensors with gamma and beta."""
    return norm.center and norm.scale and norm.axis in (-1, rank - 1)


def _closed_form_applies(norm, inputs, training):
    """Whether `norm(inputs, training=True)` may take `_train_batch_norm`."""
    return (bool(training) and norm.built and norm.trainable and not norm.synchronized
            and not getattr(norm, "renorm", False)
            and _affine_on_last_axis(norm, len(inputs.shape)))


def batch_norm(norm, inputs, training=None):
    """`norm(inputs, training=training)` for a Keras BatchNormalization `norm` (last axis).

    In training, the normalisation's gradient is the closed form (`_train_batch_norm`) rather
    than TensorFlow's differentiation of its ops: the same numbers to float rounding with
    fewer passes over the activations (training of the paper's MLP ladder 1.07-1.10x faster
    on two CPU cores, the small conv recipe 1.05x; benchmarks/README.md). Synchronised
    (multi-replica) batch norms, frozen ones and other axes take Keras' layer.

    Example:
    >>> import numpy as np
    >>> norm = keras.layers.BatchNormalization()
    >>> x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    >>> norm.build(x.shape)
    >>> y = batch_norm(norm, x, training=True)
    >>> bool(np.allclose(y, norm(x, training=True), atol=1e-5))
    True
    """
    if not _closed_form_applies(norm, inputs, training):
        return norm(inputs, training=training)
    x = ops.cast(inputs, "float32")  # as Keras' layer: statistics in float32
    gamma, beta = tf.convert_to_tensor(norm.gamma), tf.convert_to_tensor(norm.beta)
    y, mean, variance = _train_batch_norm(x, gamma, beta, norm.epsilon)
    m = norm.momentum
    norm.moving_mean.assign(norm.moving_mean * m + mean * (1.0 - m))
    norm.moving_variance.assign(norm.moving_variance * m + variance * (1.0 - m))
    return ops.cast(y, norm.compute_dtype)


def _train_batch_norm(x, gamma, beta, epsilon):
    """Batch norm over all axes but the last, with its closed-form gradient.

    Returns (y, mean, variance); mean and variance (biased, as `tf.nn.moments`) feed only
    the moving averages and carry no gradient. With xc = x - mean, r = 1 / sqrt(variance +
    epsilon), a = gamma r and n reduced elements per channel, the gradient of y = xc a + beta
    is dbeta = sum(dy), dgamma = r sum(dy xc) and dx = a (dy - dbeta / n - xc r dgamma / n).

    Reference: Ioffe & Szegedy 2015, section 3 (the backward pass of batch normalization).
    """
    axes = list(range(len(x.shape) - 1))

    @tf.custom_gradient
    def normalize(x, gamma, beta):
        mean, variance = tf.nn.moments(x, axes)  # Keras' statistics, same numbers
        r = tf.math.rsqrt(variance + epsilon)
        a = gamma * r
        y = x * a + (beta - mean * a)  # as tf.nn.batch_normalization

        def gradient(dy, *unused):  # mean and variance carry no gradient
            n = tf.cast(tf.size(x) // tf.shape(x)[-1], x.dtype)
            xc = x - mean
            dbeta = tf.reduce_sum(dy, axes)
            dgamma = tf.reduce_sum(dy * xc, axes) * r
            dx = a * (dy - dbeta / n - xc * (r * dgamma / n))
            return dx, dgamma, dbeta

        return (y, tf.stop_gradient(mean), tf.stop_gradient(variance)), gradient

    return normalize(x, gamma, beta)


def _foldable(linear, norm, training):
    """Whether `norm(linear(x))` in inference can be one product with folded weights."""
    if training or not norm.built or not linear.built:
        return False
    if type(linear) not in (keras.layers.Dense, keras.layers.Conv2D):
        return False  # transposed convolutions keep their output channels on another axis
    return (linear.compute_dtype == "float32" and norm.compute_dtype == "float32"
            and linear.activation is keras.activations.linear
            and getattr(linear, "quantization_mode", None) is None
            and _affine_on_last_axis(norm, len(linear.kernel.shape)))


def linear_then_batch_norm(linear, norm, inputs, training=None):
    """`norm(linear(inputs), training=training)` for a Dense or Conv2D `linear`.

    In inference (`training` false or None) with float32 weights, the batch norm's
    affine map is folded into the kernel: x W a + (b a + c), with
    a = gamma / sqrt(moving_variance + epsilon) and c = beta - moving_mean * a, which
    is the same function as the two layers up to float rounding and one pass fewer
    over the activations (L_k of the paper's model 1.07-1.17x faster on two CPU cores;
    benchmarks/README.md). In training, `batch_norm`; with mixed precision
    or other layer types, the two layers as they are.

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
        return batch_norm(norm, linear(inputs), training=training)
    scale = norm.gamma * ops.rsqrt(norm.moving_variance + norm.epsilon)
    offset = norm.beta - norm.moving_mean * scale
    if linear.use_bias:
        offset = offset + linear.bias * scale
    kernel = linear.kernel * scale  # scales the output channels (the kernel's last axis)
    inputs = ops.cast(inputs, "float32")
    if isinstance(linear, keras.layers.Dense):
        return ops.matmul(inputs, kernel) + offset
    return linear.convolution_op(inputs, kernel) + offset
