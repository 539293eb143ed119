"""Numerical safety: the non-finite-update guard, gradient clipping, extreme values."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lvae

RNG = np.random.default_rng(8)
X = (RNG.random((64, 12)) < 0.4).astype("float32")


def small(**kwargs):
    model = keras_lvae.LadderVAE(latent_dims=(3, 2), hidden_dims=(16, 8), seed=3, **kwargs)
    model(X)
    return model


def all_weights(model):
    return [w.numpy().copy() for w in model.weights if "seed" not in w.path]


@pytest.mark.parametrize("jit_compile", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_guard_skips_a_nan_batch_counts_it_and_keeps_the_weights(jit_compile):
    model = small(skip_nonfinite_steps=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=jit_compile)
    model.fit(X, batch_size=32, epochs=1, verbose=0)  # a normal epoch first
    before = all_weights(model)
    steps = int(model.optimizer.iterations)
    bad = X[:32].copy()
    bad[3, 5] = np.nan
    history = model.fit(bad, batch_size=32, epochs=1, verbose=0).history
    assert history["skipped_steps"] == [1.0]
    assert int(model.optimizer.iterations) == steps  # no update
    assert int(model.trained_steps) == steps  # the warm-up's position kept
    for old, new in zip(before, all_weights(model)):  # batch-norm statistics included
        np.testing.assert_array_equal(old, new)
    # A mixed epoch: the good batches train, the bad one is skipped and counted.
    mixed = np.concatenate([X[:32], bad, X[32:]])
    history = model.fit(mixed, batch_size=32, epochs=1, shuffle=False, verbose=0).history
    assert history["skipped_steps"] == [1.0] and np.isfinite(history["loss"][0])
    assert int(model.optimizer.iterations) == steps + 2


@pytest.mark.parametrize("option", [dict(skip_nonfinite_steps=True),
                                    dict(adaptive_skip_factor=5.0), dict(skip_threshold=1e6)])
def test_a_guarded_model_trains_before_it_is_built(option):
    """`fit` builds the model inside the first step; the guard's saved batch-norm
    statistics must be those of the built model (they were None before 0.3)."""
    model = keras_lvae.LadderVAE(latent_dims=(3, 2), hidden_dims=(16, 8), seed=3, **option)
    model.compile(optimizer="adam")
    history = model.fit(X, batch_size=32, epochs=1, verbose=0).history
    assert history["skipped_steps"] == [0.0] and np.isfinite(history["loss"][0])


def test_without_the_guard_a_nan_batch_is_refused():
    model = small()
    model.compile(optimizer="adam")
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="`x`: expected finite values, received NaN"):
        model.fit(bad, batch_size=32, epochs=1, verbose=0)
    assert "skipped_steps" not in model.metrics_names


def test_guard_still_refuses_values_outside_the_unit_interval():
    model = small(skip_nonfinite_steps=True)
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match=r"`x`: .* needs values in \[0, 1\]"):
        model.fit(2 * X, batch_size=32, epochs=1, verbose=0)


def test_global_gradient_norm_clipping():
    """SGD(lr=1, global_clipnorm=c): the update of all weights has norm c exactly."""
    model = small(batch_norm=False)
    model.compile(optimizer=keras.optimizers.SGD(1.0, global_clipnorm=0.05))
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.fit(X, batch_size=64, epochs=1, verbose=0)
    step = np.sqrt(sum(((w.numpy() - b) ** 2).sum()
                       for w, b in zip(model.trainable_weights, before)))
    assert step == pytest.approx(0.05, rel=1e-4)


@pytest.mark.parametrize("scale", [3.0, 10.0])
@pytest.mark.parametrize("images", ["data", "zeros", "ones"])
def test_extreme_weights_and_inputs_give_finite_bounds(scale, images):
    """Weights scaled far outside training's range (x10 puts posterior means near 1e15)
    and constant images: softplus variances with a floor, the one-softplus Bernoulli
    log-likelihood and log-sum-exp keep every number finite. (At x30 the true KL of
    the bottom layer, about 1e44 nats, exceeds float32: that is the guard's job.)"""
    x = {"data": X, "zeros": np.zeros_like(X), "ones": np.ones_like(X)}[images]
    model = small()
    for w in model.trainable_weights:
        w.assign(w * scale)
    terms = model.elbo_terms(x)
    assert all(np.isfinite(terms[k]).all() for k in ("nelbo", "kl_loss", "reconstruction_loss"))
    assert np.isfinite(keras_lvae.log_likelihood(model, x, num_samples=20)).all()
