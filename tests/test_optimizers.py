"""FusedAdam: Keras' Adam update in one TensorFlow op per variable (keras_lvae.optimizers)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lvae
from keras_lvae.optimizers import FusedAdam


def numpy_adam(value, gradients, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """Adam as Kingma & Ba's Algorithm 1 with the bias correction in the step size."""
    m = np.zeros_like(value)
    v = np.zeros_like(value)
    for t, g in enumerate(gradients, start=1):
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g * g
        alpha = lr(t - 1) * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
        value = value - alpha * m / (np.sqrt(v) + epsilon)
    return value


def run_steps(optimizer, start, gradients):
    variable = keras.Variable(start)
    for g in gradients:
        optimizer.apply([tf.constant(g)], [variable])
    return keras.ops.convert_to_numpy(variable)


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    start = rng.normal(size=(7, 5)).astype("float32")
    gradients = [rng.normal(scale=s, size=(7, 5)).astype("float32") for s in (1, 0.1, 3, 1e-3)]
    return start, gradients


def test_matches_numpy_and_keras_adam_under_a_schedule(problem):
    start, gradients = problem
    schedule = keras.optimizers.schedules.ExponentialDecay(0.01, decay_steps=1, decay_rate=0.5)
    optimizer = FusedAdam(schedule)
    fused = run_steps(optimizer, start, gradients)
    assert optimizer.fused_step_applies()  # the fused kernel ran, not the fallback
    np.testing.assert_allclose(
        fused, numpy_adam(start.astype("float64"), gradients, lambda step: 0.01 * 0.5 ** step),
        rtol=1e-5, atol=1e-6)
    keras_adam = run_steps(keras.optimizers.Adam(schedule), start, gradients)
    np.testing.assert_allclose(fused, keras_adam, rtol=1e-6, atol=1e-6)  # a few float32 ulps


@pytest.mark.parametrize("options", [dict(amsgrad=True), dict(global_clipnorm=0.5),
                                     dict(weight_decay=0.01)])
def test_the_options_adam_has_give_adams_result(problem, options):
    start, gradients = problem
    np.testing.assert_allclose(run_steps(FusedAdam(0.01, **options), start, gradients),
                               run_steps(keras.optimizers.Adam(0.01, **options), start,
                                         gradients), rtol=1e-6, atol=1e-6)  # a few float32 ulps


def test_an_option_the_fused_step_does_not_know_leaves_the_step_to_keras(problem, monkeypatch):
    """As if a later Keras added `epsilon`: FusedAdam must not use its fused kernel."""
    from keras_lvae import _compat

    monkeypatch.setattr(_compat, "KNOWN_ADAM_OPTIONS", _compat.KNOWN_ADAM_OPTIONS - {"epsilon"})
    calls = []
    monkeypatch.setattr(FusedAdam, "fused_step", lambda *args: calls.append(1) or True)
    start, gradients = problem
    optimizer = FusedAdam(0.01, epsilon=1e-6)
    assert optimizer.unknown_options == ("epsilon",) and not optimizer.fused_step_applies()
    np.testing.assert_allclose(run_steps(optimizer, start, gradients),
                               run_steps(keras.optimizers.Adam(0.01, epsilon=1e-6), start,
                                         gradients), rtol=1e-6, atol=1e-6)
    assert not calls
    assert FusedAdam(0.01, epsilon=1e-6).unknown_options == ("epsilon",)


def test_sparse_gradients_get_keras_adams_update(problem):
    start, gradients = problem
    results = []
    for optimizer in (FusedAdam(0.01), keras.optimizers.Adam(0.01)):
        variable = keras.Variable(start)
        for g in gradients:  # rows 1 and 4 only
            rows = tf.IndexedSlices(tf.constant(g[[1, 4]]), tf.constant([1, 4]), start.shape)
            optimizer.apply([rows], [variable])
        results.append(keras.ops.convert_to_numpy(variable))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6, atol=1e-6)
    assert not np.allclose(results[0][[1, 4]], start[[1, 4]])  # the update happened


@pytest.mark.slow  # over 10 s on one core
@pytest.mark.parametrize("jit_compile", [False, True])
def test_trains_a_ladder_vae_as_adam_does(jit_compile):
    x = (np.random.default_rng(0).random((128, 28, 28, 1)) < 0.13).astype("float32")
    results = []
    for optimizer in (keras.optimizers.Adam(1e-3), FusedAdam(1e-3)):
        model = keras_lvae.LadderVAE(latent_dims=(8, 4), hidden_dims=(32, 16), seed=1)
        model.compile(optimizer=optimizer, jit_compile=jit_compile)
        history = model.fit(x, batch_size=32, epochs=2, shuffle=False, verbose=0)
        results.append((history.history["loss"], [v.numpy() for v in model.variables]))
    (losses, weights), (fused_losses, fused_weights) = results
    np.testing.assert_allclose(fused_losses, losses, rtol=1e-5)
    for a, b in zip(fused_weights, weights):
        # Adam divides by sqrt(v): a weight whose gradient is round-off (a bias before batch
        # norm) moves by up to lr per step either way; 1e-5 is 1% of one step.
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_saves_and_loads_with_the_model(tmp_path):
    model = keras_lvae.LadderVAE(latent_dims=(4,), hidden_dims=(16,), seed=1)
    model.compile(optimizer=FusedAdam(3e-4, beta_2=0.99))
    x = np.zeros((8, 28, 28, 1), "float32")
    model.fit(x, batch_size=4, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert type(loaded.optimizer) is FusedAdam
    assert loaded.optimizer.get_config() == model.optimizer.get_config()


def test_the_cli_trains_with_it():
    from keras_lvae import training
    assert training.OPTIMIZERS["adam"] is FusedAdam
