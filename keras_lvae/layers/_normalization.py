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
    return batch_norm_of_parts(norm, [inputs])[0]


def batch_norm_of_parts(norm, parts):
    """Training batch norm of a batch given as `parts` (row blocks), with its statistics
    over the whole batch: the same numbers, to float rounding, as `batch_norm` of the
    parts' concatenation, returned as parts. `norm` must pass `_closed_form_applies`.

    Example:
    >>> import numpy as np
    >>> norm = keras.layers.BatchNormalization()
    >>> x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    >>> norm.build(x.shape)
    >>> top, bottom = batch_norm_of_parts(norm, [x[:5], x[5:]])
    >>> whole = norm(x, training=True)
    >>> bool(np.allclose(top, whole[:5], atol=1e-5) and np.allclose(bottom, whole[5:], atol=1e-5))
    True
    """
    xs = [ops.cast(x, "float32") for x in parts]  # as Keras' layer: statistics in float32
    gamma, beta = tf.convert_to_tensor(norm.gamma), tf.convert_to_tensor(norm.beta)
    *ys, mean, variance = _train_batch_norm(xs, gamma, beta, norm.epsilon)
    m = norm.momentum
    norm.moving_mean.assign(norm.moving_mean * m + mean * (1.0 - m))
    norm.moving_variance.assign(norm.moving_variance * m + variance * (1.0 - m))
    return [ops.cast(y, norm.compute_dtype) for y in ys]


def split_rows(inputs, parts=2):
    """`inputs` as `parts` row blocks of (nearly) equal size; the batch may be dynamic."""
    rows = tf.shape(inputs)[0]
    ends = [rows * (i + 1) // parts for i in range(parts)]
    sizes = [ends[0]] + [b - a for a, b in zip(ends, ends[1:])]
    return tf.split(inputs, tf.stack(sizes), num=parts, axis=0)


def _train_batch_norm(parts, gamma, beta, epsilon):
    """Batch norm over all axes but the last of the batch made of the row blocks `parts`,
    with its closed-form gradient.

    Returns (y of each part..., mean, variance); mean and variance (biased, as
    `tf.nn.moments`) feed only the moving averages and carry no gradient. With xc = x - mean,
    r = 1 / sqrt(variance + epsilon), a = gamma r and n reduced elements per channel, the
    gradient of y = xc a + beta is dbeta = sum(dy), dgamma = r sum(dy xc) and
    dx = a (dy - dbeta / n - xc r dgamma / n), the sums over all parts.

    Reference: Ioffe & Szegedy 2015, section 3 (the backward pass of batch normalization).
    """
    axes = list(range(len(parts[0].shape) - 1))
    count = len(parts)

    def total(tensors):  # per channel, over every part
        return tf.add_n([tf.reduce_sum(t, axes) for t in tensors])

    @tf.custom_gradient
    def normalize(*args):
        xs, gamma, beta = args[:count], args[count], args[count + 1]
        n = tf.cast(tf.add_n([tf.size(x) // tf.shape(x)[-1] for x in xs]), xs[0].dtype)
        if count == 1:
            mean, variance = tf.nn.moments(xs[0], axes)  # Keras' statistics, same numbers
        else:  # two passes, as tf.nn.moments, so a mean far from zero loses no digits
            mean = total(xs) / n
            variance = total([tf.math.squared_difference(x, mean) for x in xs]) / n
        r = tf.math.rsqrt(variance + epsilon)
        a = gamma * r
        offset = beta - mean * a
        ys = [x * a + offset for x in xs]  # as tf.nn.batch_normalization

        def gradient(*upstream):  # mean and variance (the last two) carry no gradient
            dys = upstream[:count]
            xcs = [x - mean for x in xs]
            dbeta = total(dys)
            dgamma = total([dy * xc for dy, xc in zip(dys, xcs)]) * r
            dxs = [a * (dy - dbeta / n - xc * (r * dgamma / n)) for dy, xc in zip(dys, xcs)]
            return (*dxs, dgamma, dbeta)

        return (*ys, tf.stop_gradient(mean), tf.stop_gradient(variance)), gradient

    return normalize(*parts, gamma, beta)


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
