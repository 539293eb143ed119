"""Fine-tuning as in paper.md: several Monte Carlo and importance samples, and a
learning rate x0.75 every 200 epochs, all through `fit`."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lvae
from keras_lvae.schedules import step_decay

RNG = np.random.default_rng(3)
X = (RNG.random((64, 12)) < 0.4).astype("float32")


def seed_states(model):
    return [tf.identity(h.seed_generator.state) for h in model.encoder_heads]


def restore(model, states):
    for head, state in zip(model.encoder_heads, states):
        head.seed_generator.state.assign(state)


@pytest.mark.parametrize("inference", ["ladder", "bottom_up"])
def test_iw_objective_is_log_likelihood_with_the_same_noise(inference):
    model = keras_lvae.LadderVAE(latent_dims=(3, 2), hidden_dims=(16, 8), inference=inference,
                                 iw_samples=5, seed=2)
    model(X)
    states = seed_states(model)
    loss, _ = model.training_objective(X)
    restore(model, states)
    bound = keras_lvae.log_likelihood(model, X, num_samples=5, chunk_size=5, batch_size=len(X))
    np.testing.assert_allclose(-np.asarray(loss), bound, rtol=1e-5)


def test_fit_with_importance_samples_raises_the_bound_it_optimises():
    model = keras_lvae.LadderVAE(latent_dims=(3, 2), hidden_dims=(16, 8), mc_samples=2,
                                 iw_samples=5, seed=2)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    before = keras_lvae.log_likelihood(model, X, num_samples=200).mean()
    history = model.fit(X, batch_size=32, epochs=30, verbose=0)
    after = keras_lvae.log_likelihood(model, X, num_samples=200).mean()
    losses = history.history["loss"]
    # 12 pixels with p = 0.4 have entropy 8.08 nats: -8.4 to about -7.9 is most of the room.
    assert after > before + 0.3, (before, after)
    assert losses[-1] < losses[0]
    # The logged loss is -L_5, so it is at most the logged negative ELBO (Jensen).
    assert history.history["loss"][-1] <= history.history["nelbo"][-1] + 1e-3


def test_samples_are_settable_for_fine_tuning_and_saved(tmp_path):
    model = keras_lvae.LadderVAE(latent_dims=(3,), hidden_dims=(8,), seed=2)
    model.compile(optimizer="adam")
    model.fit(X, batch_size=32, epochs=1, verbose=0)
    model.mc_samples, model.iw_samples = 3, 4
    model.compile(optimizer="adam")  # retrace the step with the new sample counts
    model.fit(X, batch_size=32, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert (loaded.mc_samples, loaded.iw_samples) == (3, 4)


@pytest.mark.parametrize("name", ["mc_samples", "iw_samples"])
@pytest.mark.parametrize("bad", [0, -2, 1.5, "10"])
def test_bad_sample_counts(name, bad):
    with pytest.raises(ValueError, match=f"`{name}`"):
        keras_lvae.LadderVAE(**{name: bad})
    model = keras_lvae.LadderVAE()
    with pytest.raises(ValueError, match=f"`{name}`"):
        setattr(model, name, bad)


def test_step_decay_under_fit():
    """2 steps per epoch, x0.5 every 3 epochs: the learning rate the optimizer
    uses at the end of each epoch."""
    model = keras_lvae.LadderVAE(latent_dims=(3,), hidden_dims=(8,), seed=2)
    model.compile(optimizer=keras.optimizers.Adam(step_decay(0.01, 2, every_epochs=3, factor=0.5)))
    seen = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(
        float(model.optimizer.learning_rate)))
    model.fit(X, batch_size=32, epochs=7, verbose=0, callbacks=[record])
    # After epoch e (1-based) the step is 2e; the rate is 0.01 * 0.5 ** (2e // 6).
    assert seen == pytest.approx([0.01, 0.01, 0.005, 0.005, 0.005, 0.0025, 0.0025])


def test_step_decay_after_a_start_epoch_survives_saving(tmp_path):
    """Constant for `start_epoch` epochs, then halved every 2 epochs; the schedule is
    saved with the model and continues from the optimizer's step after loading."""
    model = keras_lvae.LadderVAE(latent_dims=(3,), hidden_dims=(8,), seed=2)
    schedule = step_decay(0.01, 2, every_epochs=2, factor=0.5, start_epoch=3)
    model.compile(optimizer=keras.optimizers.Adam(schedule))
    seen = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(
        float(model.optimizer.learning_rate)))
    model.fit(X, batch_size=32, epochs=4, verbose=0, callbacks=[record])
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    assert restored.optimizer.learning_rate.numpy() == pytest.approx(seen[-1])
    restored.fit(X, batch_size=32, epochs=3, verbose=0, callbacks=[
        keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(
            float(restored.optimizer.learning_rate)))])
    # After epoch e the step is 2e; the rate is 0.01 * 0.5 ** ((2e - 6) // 4) once 2e >= 6.
    expected = [0.01 * 0.5 ** max(0, (2 * e - 6) // 4) for e in range(1, 8)]
    assert seen == pytest.approx(expected) and expected[-1] == 0.0025


@pytest.mark.parametrize("kwargs, argument", [
    (dict(start_epoch=-1), "start_epoch"), (dict(learning_rate=0), "learning_rate"), (dict(steps_per_epoch=0), "steps_per_epoch"),
    (dict(every_epochs=1.5), "every_epochs"), (dict(factor=1.5), "factor")])
def test_step_decay_bad_arguments(kwargs, argument):
    arguments = dict(learning_rate=1e-3, steps_per_epoch=10) | kwargs
    with pytest.raises(ValueError, match=f"`{argument}`"):
        step_decay(**arguments)
