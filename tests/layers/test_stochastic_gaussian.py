import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_lvae.layers import StochasticGaussian
from tests.helpers import softplus
from tests.testing import run_layer_test

RNG = np.random.default_rng(2)
H = RNG.normal(size=(16, 5)).astype("float32")


def numpy_heads(layer, h, training=False):
    params = h @ layer.dense.kernel.numpy()
    if layer.batch_norm:
        norm = layer.norm
        if training:
            mean, var = params.mean(0), params.var(0)
        else:
            mean, var = norm.moving_mean.numpy(), norm.moving_variance.numpy()
        params = norm.gamma.numpy() * (params - mean) / np.sqrt(var + norm.epsilon) + norm.beta.numpy()
    else:
        params = params + layer.dense.bias.numpy()
    mean, pre = np.split(params, 2, axis=-1)
    return mean, softplus(pre) + layer.variance_floor


@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("training", [False, True])
def test_heads_match_numpy(batch_norm, training):
    layer = StochasticGaussian(3, batch_norm=batch_norm, seed=0)
    layer.build(H.shape)
    if batch_norm:  # non-trivial statistics and affine parameters
        for var in (layer.norm.gamma, layer.norm.moving_variance):
            var.assign(RNG.uniform(0.5, 2.0, size=6))
        for var in (layer.norm.beta, layer.norm.moving_mean):
            var.assign(RNG.normal(size=6))
    want_mean, want_var = numpy_heads(layer, H, training)
    z, mean, var = layer(H, training=training, sample=False)
    np.testing.assert_allclose(mean, want_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(var, want_var, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(z, mean)


def test_sample_is_mean_plus_scaled_stateless_noise():
    layer = StochasticGaussian(4, seed=3)
    layer.build(H.shape)
    seed = tf.cast(layer.seed_generator.state, tf.int32).numpy()
    z, mean, var = layer(H)
    noise = tf.random.stateless_normal(mean.shape, seed=seed).numpy()
    np.testing.assert_allclose(z, mean + np.sqrt(var) * noise, rtol=1e-5, atol=1e-6)


def test_samples_have_the_heads_moments():
    layer = StochasticGaussian(2, seed=4)
    h = np.repeat(H[:1], 20000, axis=0)
    z, mean, var = (np.asarray(t) for t in layer(h))
    # Means within 5 standard errors; variances within 5% (about 5 standard errors).
    standard_error = np.sqrt(var[0]) / np.sqrt(len(h))
    assert (np.abs(z.mean(0) - mean[0]) < 5 * standard_error).all()
    np.testing.assert_allclose(z.var(0), var[0], rtol=0.05)


def test_same_seed_same_samples_and_draws_advance():
    a, b = StochasticGaussian(3, seed=7), StochasticGaussian(3, seed=7)
    a.build(H.shape)
    b.build(H.shape)
    b.set_weights(a.get_weights())  # `seed` governs sampling, not initialisation
    first_a, first_b = a(H)[0], b(H)[0]
    np.testing.assert_array_equal(first_a, first_b)
    assert not np.allclose(a(H)[0], first_a)


@pytest.mark.parametrize("units", [0, -2, 1.5, "3"])
def test_bad_units_are_refused(units):
    with pytest.raises(ValueError, match="`units`"):
        StochasticGaussian(units)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_shared_layer_checks(batch_norm):
    run_layer_test(StochasticGaussian, dict(units=3, batch_norm=batch_norm, variance_floor=1e-4,
                                            seed=5, name="sg"), H, [(16, 3)] * 3,
                   call_kwargs=dict(training=True), float32_outputs=True)


def test_config_keeps_the_variance_floor():
    layer = StochasticGaussian(3, batch_norm=True, variance_floor=1e-4, seed=5, name="sg")
    assert keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    ).variance_floor == 1e-4


def test_convolutional_heads_harness_and_numpy():
    """kernel_size: a Gaussian per position and channel from one 'same' convolution."""
    from tests.models.test_conv_ladder_vae import np_head

    maps = RNG.normal(size=(2, 5, 4, 3)).astype("float32")
    run_layer_test(StochasticGaussian, dict(units=2, kernel_size=3, seed=1), maps,
                   [(2, 5, 4, 2)] * 3, float32_outputs=True)
    layer = StochasticGaussian(2, kernel_size=3, seed=1)
    _, mean, variance = layer(maps, sample=False)
    want_mean, want_variance = np_head(layer, maps.astype(np.float64))
    np.testing.assert_allclose(mean, want_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(variance, want_variance, rtol=1e-5)
    with pytest.raises(ValueError, match="kernel_size"):
        StochasticGaussian(2, kernel_size=2)
