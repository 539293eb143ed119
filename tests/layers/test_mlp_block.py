import numpy as np
import pytest
import tensorflow as tf

from keras_lvae import threads
from keras_lvae.layers import MLPBlock, mlp_block
from tests.helpers import leaky_relu
from tests.testing import run_layer_test

RNG = np.random.default_rng(3)
X = RNG.normal(size=(10, 6)).astype("float32")


def numpy_block(block, x, training):
    h = x
    for i, dense in enumerate(block.dense_layers):
        h = h @ dense.kernel.numpy()
        if block.batch_norm:
            norm = block.norm_layers[i]
            mean, var = (h.mean(0), h.var(0)) if training else (
                norm.moving_mean.numpy(), norm.moving_variance.numpy())
            h = norm.gamma.numpy() * (h - mean) / np.sqrt(var + norm.epsilon) + norm.beta.numpy()
        else:
            h = h + dense.bias.numpy()
        h = leaky_relu(h, block.negative_slope)
    return h


@pytest.mark.parametrize("batch_norm", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_matches_numpy(batch_norm, training):
    block = MLPBlock(7, depth=2, batch_norm=batch_norm)
    block.build(X.shape)
    for norm in block.norm_layers:
        norm.moving_mean.assign(RNG.normal(size=7))
        norm.moving_variance.assign(RNG.uniform(0.5, 2.0, size=7))
    want = numpy_block(block, X, training)
    np.testing.assert_allclose(block(X, training=training), want, rtol=1e-4, atol=1e-5)


def test_structure_follows_arguments():
    block = MLPBlock(5, depth=3)
    block.build(X.shape)
    assert len(block.dense_layers) == 3 and len(block.norm_layers) == 3
    assert block(X).shape == (10, 5)


@pytest.mark.parametrize("kwargs, name", [({"units": 0}, "units"), ({"units": 4, "depth": 0}, "depth")])
def test_bad_arguments_are_refused(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        MLPBlock(**kwargs)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_shared_layer_checks(batch_norm):
    run_layer_test(MLPBlock, dict(units=4, depth=3, batch_norm=batch_norm, negative_slope=0.2,
                                  seed=1, name="b"), X, (10, 4), call_kwargs=dict(training=True))


def test_seed_fixes_the_initial_weights():
    a, b, c = (MLPBlock(4, seed=s) for s in (1, 1, 2))
    for block in (a, b, c):
        block.build(X.shape)
    np.testing.assert_array_equal(a.dense_layers[0].kernel, b.dense_layers[0].kernel)
    assert not np.array_equal(a.dense_layers[0].kernel, a.dense_layers[1].kernel[:6])
    assert not np.array_equal(a.dense_layers[0].kernel, c.dense_layers[0].kernel)


def block_step(block, x, upstream):
    """Output, gradients of the input and of every weight, and the moving statistics after
    one training call of `block`."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(block(x, training=True) * upstream)
    grads = tape.gradient(loss, [x] + block.trainable_weights)
    return [t.numpy() for t in [loss] + grads + block.non_trainable_weights]


@pytest.mark.parametrize("rows", [64, 37])
def test_halves_side_by_side_equal_the_whole_batch(monkeypatch, rows):
    """With `row_halves`, a wide block trains on two row halves with the whole batch's
    statistics: the same output, gradients and moving averages, to float rounding."""
    x = RNG.normal(size=(rows, 20)).astype("float32")
    upstream = RNG.normal(size=(rows, 256)).astype("float32")
    plain, halved = MLPBlock(256, seed=4), MLPBlock(256, seed=4, row_halves=True)
    for block in (plain, halved):
        block.build(x.shape)
    monkeypatch.setattr(threads, "ops_run_side_by_side", lambda: True)  # no global state read
    assert not plain._in_halves(x, training=True)
    want = block_step(plain, x, upstream)
    assert halved._in_halves(x, training=True)
    got = block_step(halved, x, upstream)
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, rtol=0, atol=2e-5 * (float(np.max(np.abs(a))) + 1e-6))


def test_halves_keep_the_mixed_precision_output():
    x = RNG.normal(size=(16, 20)).astype("float32")
    plain, halved = (MLPBlock(256, seed=4, dtype="mixed_float16", row_halves=halves)
                     for halves in (False, True))
    want = plain(x, training=True)
    got = halved(x, training=True)
    assert halved._in_halves(x, training=True)
    assert got.dtype == want.dtype == "float16"
    np.testing.assert_allclose(np.float32(got), np.float32(want), atol=2e-2)


def test_only_wide_batch_normalised_blocks_train_in_halves():
    x = np.ones((8, 3), "float32")
    wide, narrow, no_norm = (MLPBlock(mlp_block.HALVES_MIN_UNITS, row_halves=True),
                             MLPBlock(mlp_block.HALVES_MIN_UNITS - 1, row_halves=True),
                             MLPBlock(mlp_block.HALVES_MIN_UNITS, batch_norm=False,
                                      row_halves=True))
    for block in (wide, narrow, no_norm):
        block.build(x.shape)
    assert wide._in_halves(x, training=True)
    assert not wide._in_halves(x, training=False)  # inference folds the batch norm instead
    assert not narrow._in_halves(x, training=True)
    assert not no_norm._in_halves(x, training=True)
    wide.norm_layers[1].trainable = False  # a frozen batch norm keeps Keras' layer
    assert not wide._in_halves(x, training=True)
