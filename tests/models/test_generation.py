"""Generation tools: sampling temperature and latent interpolation, for MLP and conv ladders."""

import numpy as np
import pytest
import tensorflow as tf

import keras_lvae

RNG = np.random.default_rng(3)
X = (RNG.random((6, 8, 8, 1)) < 0.4).astype("float32")


def make(kind, **kwargs):
    if kind == "mlp":
        model = keras_lvae.LadderVAE(latent_dims=(4, 3, 2), hidden_dims=(16, 12, 8), seed=1,
                                     **kwargs)
    else:
        model = keras_lvae.ConvLadderVAE(latent_dims=(3, 2, 2), hidden_dims=(6, 6, 6),
                                         residual_blocks=1, downsample=(1, 1, 1), seed=1,
                                         **kwargs)
    model(X)
    return model


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_temperature_one_is_generate_and_zero_is_the_prior_means(kind):
    model = make(kind, skip=True, learn_top_prior=True)
    model.top_prior_mean.assign(RNG.normal(size=model.top_prior_mean.shape))
    np.testing.assert_array_equal(model.generate(5, seed=2, temperature=1.0),
                                  model.generate(5, seed=2))
    cold = np.asarray(model.generate(5, seed=2, temperature=0.0))
    np.testing.assert_allclose(cold, np.asarray(model.generate(5, seed=9, temperature=0)),
                               atol=1e-6)  # no randomness left
    # The prior means, computed by hand: top prior mean, then each p(z_i | z_>i)'s mean.
    z = np.broadcast_to(model.top_prior_mean.numpy(), (5, *model.latent_shapes[-1]))
    above = None
    for i in reversed(range(model.num_layers - 1)):
        z, _, above = model.prior_params(i, tf.constant(z, tf.float32), above, training=False)
    np.testing.assert_allclose(cold, model.decode(z), atol=1e-6)
    # Per layer: temperature only on the top layer differs from the all-zero one.
    top_only = np.asarray(model.generate(5, seed=2, temperature=[0.0, 0.0, 1.0]))
    assert np.abs(top_only - cold).max() > 1e-3
    np.testing.assert_array_equal(model.generate(5, seed=2, temperature=[0.0, 0.0, 1.0]),
                                  top_only)


@pytest.mark.parametrize("bad", [-1.0, [1.0, 1.0], float("nan"), "hot"])
def test_bad_temperatures_are_refused(bad):
    with pytest.raises(ValueError, match="`temperature`"):
        make("mlp").generate(2, temperature=bad)


@pytest.mark.parametrize("kind", ["mlp", "conv"])
@pytest.mark.parametrize("method", ["slerp", "linear"])
def test_interpolation_endpoints_reproduce_the_encodings(kind, method):
    """In layer 1, the ends are the reconstructions (every z at its posterior mean, which
    for z_1 is what `encode` gives); shapes for one pair and for a batch of pairs."""
    model = make(kind, skip=True)
    path = np.asarray(model.interpolate(X[0], X[1], steps=5, layer=1, method=method))
    assert path.shape == (5, 8, 8, 1)
    np.testing.assert_allclose(path[0], np.asarray(model(X[:1]))[0], atol=1e-5)
    np.testing.assert_allclose(path[-1], np.asarray(model(X[1:2]))[0], atol=1e-5)
    batch = np.asarray(model.interpolate(X[:3], X[3:], steps=4, layer=2, method=method))
    assert batch.shape == (3, 4, 8, 8, 1)
    assert np.abs(batch[:, 0] - batch[:, -1]).max() > 1e-4


def test_linear_interpolation_is_linear_in_the_latent():
    """Through decode: the middle of a 3-step linear path in z_1 decodes like the mean of
    the ends' posterior means."""
    model = make("mlp")
    (mean_a, _), (mean_b, _) = model.encode(X[:1])[0], model.encode(X[1:2])[0]
    middle = np.asarray(model.interpolate(X[0], X[1], steps=3, layer=1, method="linear"))[1]
    want = np.asarray(model.decode((np.asarray(mean_a) + np.asarray(mean_b)) / 2))[0]
    np.testing.assert_allclose(middle, want, atol=1e-5)


def test_interpolation_refuses_bad_arguments():
    model = make("mlp")
    with pytest.raises(ValueError, match="`layer`"):
        model.interpolate(X[0], X[1], layer=4)
    with pytest.raises(ValueError, match="`method`"):
        model.interpolate(X[0], X[1], method="cubic")
