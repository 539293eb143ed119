"""The pixel likelihood objects against independent computations (numpy, TFP)."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import keras_lvae
from keras_lvae import likelihoods
from tests.test_logistic_mixture import np_log_prob, random_params

RNG = np.random.default_rng(11)
SEED = tf.constant([3, 4], tf.int32)


def test_bernoulli_matches_tfp():
    bernoulli = likelihoods.create("bernoulli", channels=5)
    x = (RNG.random((4, 5)) < 0.5).astype("float32")
    logits = RNG.normal(size=(4, 5)).astype("float32") * 3
    want = tfp.distributions.Bernoulli(logits=logits).log_prob(x).numpy().sum(-1)
    np.testing.assert_allclose(bernoulli.log_prob(x, logits), want, rtol=1e-5)
    np.testing.assert_allclose(bernoulli.mean(logits), 1 / (1 + np.exp(-logits)), rtol=1e-5)
    draws = np.mean([bernoulli.sample(logits, tf.constant([s, 0])).numpy()
                     for s in range(400)], axis=0)
    np.testing.assert_allclose(draws, 1 / (1 + np.exp(-logits)), atol=0.1)  # 5 sigma at 400


def test_gaussian_matches_numpy():
    gaussian = likelihoods.create("gaussian", channels=3)
    mean, variance = RNG.normal(size=(2, 4, 3)), RNG.uniform(0.1, 2.0, size=(2, 4, 3))
    params = np.concatenate([mean, variance], -1).astype("float32")
    x = RNG.normal(size=(2, 4, 3)).astype("float32")
    want = (-0.5 * (np.log(2 * math.pi * variance) + (x - mean) ** 2 / variance)).sum((1, 2))
    assert gaussian.num_parameters() == 6
    np.testing.assert_allclose(gaussian.log_prob(x, params), want, rtol=1e-5)
    np.testing.assert_allclose(gaussian.mean(params), mean, rtol=1e-6)
    draws = np.stack([gaussian.sample(params, tf.constant([s, 1])).numpy() for s in range(400)])
    np.testing.assert_allclose(draws.mean(0), mean, atol=5 * np.sqrt(variance.max() / 400))


@pytest.mark.parametrize("coupled", [True, False])
def test_logistic_mixture_matches_numpy(coupled):
    mixture = likelihoods.create("logistic_mixture", channels=3, mixture_components=4,
                                 coupled_means=coupled, latent_dims=(2,))  # others ignored
    params = random_params(2 * 3 * 3, 4, 3, coupled).reshape(2, 3, 3, -1).astype("float32")
    values = RNG.integers(0, 256, size=(2, 3, 3, 3))
    want = np_log_prob(values.reshape(-1, 3), params.reshape(18, -1), 4, coupled)
    got = mixture.log_prob(values / 255.0, params)
    np.testing.assert_allclose(got, want.reshape(2, -1).sum(-1), rtol=1e-4)
    assert mixture.num_parameters() == params.shape[-1]
    assert mixture.eight_bit and not mixture.binary
    assert tuple(mixture.sample(params, SEED).shape) == (2, 3, 3, 3)


def test_the_registry_and_its_errors():
    assert sorted(likelihoods.LIKELIHOODS) == ["bernoulli", "gaussian", "logistic_mixture"]
    with pytest.raises(ValueError, match=r"`likelihood`.*received 'poisson'"):
        likelihoods.get("poisson")
    with pytest.raises(ValueError, match="`likelihood`"):
        keras_lvae.LadderVAE(latent_dims=(2,), hidden_dims=(4,), likelihood="logistic_mixture")


@pytest.mark.parametrize("name", ["bernoulli", "gaussian"])
def test_a_model_computes_log_p_x_through_its_likelihood(name):
    """The model's reconstruction term is the likelihood object's log_prob of the output
    layer's parameters (one place for the maths)."""
    model = keras_lvae.LadderVAE(latent_dims=(3,), hidden_dims=(8,), likelihood=name, seed=2)
    x = (RNG.random((4, 6)) < 0.5).astype("float32")
    trace = model.posterior_trace(model.prepare(x), sample=False)
    params = model.output_params(trace[0]["z"])
    assert isinstance(model.pixel_likelihood, likelihoods.get(name))
    np.testing.assert_allclose(model(x), model.pixel_likelihood.mean(params), rtol=1e-6)
    terms = model.elbo_terms(x)
    assert np.all(np.isfinite(terms["reconstruction_loss"]))
