import keras
import numpy as np
import pytest

import tensorflow as tf

from keras_lvae.layers._normalization import (_closed_form_applies, _foldable, batch_norm,
                                              batch_norm_of_parts, linear_then_batch_norm,
                                              split_rows)

RNG = np.random.default_rng(11)


def random_statistics(norm, channels):
    norm.gamma.assign(RNG.uniform(0.5, 2.0, channels))
    norm.beta.assign(RNG.normal(size=channels))
    norm.moving_mean.assign(RNG.normal(size=channels))
    norm.moving_variance.assign(RNG.uniform(0.01, 3.0, channels))


def numpy_norm(norm, h):
    """Batch norm in inference, from its definition."""
    g, b, m, v = (w.numpy() for w in (norm.gamma, norm.beta, norm.moving_mean,
                                       norm.moving_variance))
    return g * (h - m) / np.sqrt(v + norm.epsilon) + b


def numpy_conv_same(x, kernel):
    """Stride-1 'same' cross-correlation of [batch, height, width, in] with [k, k, in, out]."""
    k = kernel.shape[0]
    p = k // 2
    padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
    for i in range(k):
        for j in range(k):
            out += padded[:, i:i + x.shape[1], j:j + x.shape[2], :] @ kernel[i, j]
    return out


@pytest.mark.parametrize("use_bias", [False, True])
def test_folded_dense_equals_numpy(use_bias):
    x = RNG.normal(size=(9, 5)).astype("float32")
    dense, norm = keras.layers.Dense(4, use_bias=use_bias), keras.layers.BatchNormalization()
    norm(dense(x))  # build
    random_statistics(norm, 4)
    if use_bias:
        dense.bias.assign(RNG.normal(size=4))
    assert _foldable(dense, norm, training=False)
    h = x.astype("float64") @ dense.kernel.numpy()
    if use_bias:
        h = h + dense.bias.numpy()
    np.testing.assert_allclose(linear_then_batch_norm(dense, norm, x), numpy_norm(norm, h),
                               rtol=1e-5, atol=1e-5)


def test_folded_conv_equals_numpy():
    x = RNG.normal(size=(2, 5, 6, 3)).astype("float32")
    conv = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)
    norm = keras.layers.BatchNormalization()
    norm(conv(x))
    random_statistics(norm, 4)
    assert _foldable(conv, norm, training=False)
    want = numpy_norm(norm, numpy_conv_same(x.astype("float64"), conv.kernel.numpy()))
    np.testing.assert_allclose(linear_then_batch_norm(conv, norm, x), want, rtol=1e-5, atol=1e-5)


def test_training_uses_the_batch_statistics_unfolded():
    x = RNG.normal(size=(16, 5)).astype("float32")
    dense, norm = keras.layers.Dense(3, use_bias=False), keras.layers.BatchNormalization()
    norm(dense(x))
    random_statistics(norm, 3)
    assert not _foldable(dense, norm, training=True)
    h = x.astype("float64") @ dense.kernel.numpy()
    want = (norm.gamma.numpy() * (h - h.mean(0)) / np.sqrt(h.var(0) + norm.epsilon)
            + norm.beta.numpy())
    np.testing.assert_allclose(linear_then_batch_norm(dense, norm, x, training=True), want,
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", ["mixed_precision", "transposed", "activation", "unbuilt"])
def test_other_layers_take_the_two_layer_path(case):
    x = RNG.normal(size=(2, 4, 4, 3)).astype("float32")
    dtype = "mixed_bfloat16" if case == "mixed_precision" else None
    if case == "transposed":
        linear = keras.layers.Conv2DTranspose(2, 3, padding="same", use_bias=False)
    else:
        linear = keras.layers.Dense(2, activation="relu" if case == "activation" else None,
                                    dtype=dtype)
    norm = keras.layers.BatchNormalization(dtype=dtype)
    if case == "unbuilt":
        assert not _foldable(linear, norm, training=False)
        linear_then_batch_norm(linear, norm, x)  # builds both
        assert linear.built and norm.built
        return
    norm(linear(x))
    random_statistics(norm, 2)
    assert not _foldable(linear, norm, training=False)
    np.testing.assert_array_equal(linear_then_batch_norm(linear, norm, x),
                                  norm(linear(x), training=False))


def keras_and_ours(shape, offset=0.0, dtype=None, parts=None):
    """Outputs, gradients and moving statistics of Keras' batch norm and of `batch_norm`
    (of `batch_norm_of_parts` on row blocks of these sizes, with `parts`), from equal layers
    on the same inputs and upstream gradient."""
    x = tf.constant(RNG.normal(size=shape) * 3.0 + offset, "float32")
    upstream = tf.constant(RNG.normal(size=shape), "float32")
    channels = shape[-1]
    results = []
    for ours in (False, True):
        norm = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-4, dtype=dtype)
        norm.build(shape)
        rng = np.random.default_rng(5)  # the same parameters for both layers
        norm.gamma.assign(rng.uniform(0.5, 2.0, channels))
        norm.beta.assign(rng.normal(size=channels))
        norm.moving_variance.assign(rng.uniform(0.5, 2.0, channels))
        if ours:
            assert _closed_form_applies(norm, x, training=True)
        with tf.GradientTape() as tape:
            tape.watch(x)
            if not ours:
                y = norm(x, training=True)
            elif parts:
                y = tf.concat(batch_norm_of_parts(norm, tf.split(x, parts)), 0)
            else:
                y = batch_norm(norm, x, training=True)
            loss = tf.reduce_sum(tf.cast(y, "float32") * upstream)
        grads = tape.gradient(loss, [x, norm.gamma, norm.beta])
        results.append([y, *grads, norm.moving_mean, norm.moving_variance])
    return results


def assert_matches_keras(theirs, ours):
    """`keras_and_ours`' results equal, each to 2e-5 of its largest value."""
    names = ["y", "dx", "dgamma", "dbeta", "moving_mean", "moving_variance"]
    for name, a, b in zip(names, theirs, ours):
        scale = float(np.max(np.abs(a))) + 1e-6
        np.testing.assert_allclose(b, a, rtol=0, atol=2e-5 * scale, err_msg=name)


@pytest.mark.parametrize("shape, offset", [((32, 7), 0.0), ((32, 7), 50.0), ((4, 5, 6, 3), 1.0)])
def test_closed_form_gradient_equals_tensorflows_differentiation(shape, offset):
    """Outputs, the three gradients and the moving averages of Keras' layer, differentiated
    by TensorFlow, to float32 rounding; also with a mean far from zero, where the closed form
    could lose digits."""
    assert_matches_keras(*keras_and_ours(shape, offset))


@pytest.mark.parametrize("shape, offset, parts", [
    ((32, 7), 0.0, [16, 16]), ((33, 7), 50.0, [16, 17]), ((12, 5), 1.0, [3, 4, 5]),
    ((9, 5), 1.0, [0, 9]), ((4, 5, 6, 3), 1.0, [2, 2])])
def test_parts_take_the_whole_batchs_statistics(shape, offset, parts):
    """Row blocks normalised together equal Keras' layer on the whole batch, differentiated by
    TensorFlow: outputs, gradients and moving averages (an empty block included)."""
    assert_matches_keras(*keras_and_ours(shape, offset, parts=parts))


@pytest.mark.parametrize("rows, parts, sizes", [(256, 2, [128, 128]), (5, 2, [2, 3]),
                                                (1, 2, [0, 1]), (10, 3, [3, 3, 4])])
def test_split_rows_keeps_every_row_in_order(rows, parts, sizes):
    x = np.arange(rows * 2, dtype="float32").reshape(rows, 2)
    split = tf.function(lambda t: split_rows(t, parts),  # a batch unknown when traced
                        input_signature=[tf.TensorSpec([None, 2], "float32")])
    blocks = split(x)
    assert [int(b.shape[0]) for b in blocks] == sizes
    np.testing.assert_array_equal(np.concatenate(blocks), x)


def test_closed_form_keeps_the_mixed_precision_output_dtype():
    theirs, ours = keras_and_ours((16, 4), dtype="mixed_float16")
    assert ours[0].dtype == theirs[0].dtype == "float16"
    np.testing.assert_allclose(np.float32(ours[0]), np.float32(theirs[0]), atol=2e-3)


@pytest.mark.parametrize("case", ["inference", "frozen", "synchronized", "other_axis"])
def test_other_batch_norms_take_keras_layer(case):
    x = tf.constant(RNG.normal(size=(8, 3, 5)), "float32")
    norm = keras.layers.BatchNormalization(axis=1 if case == "other_axis" else -1,
                                           synchronized=case == "synchronized")
    norm.build(x.shape)
    norm.trainable = case != "frozen"
    assert not _closed_form_applies(norm, x, training=case != "inference")
