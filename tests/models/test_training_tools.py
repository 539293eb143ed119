"""Training tools of deep hierarchies: the moving average of the weights (EMA)."""

import keras
import numpy as np
import pytest

import keras_lvae
from keras_lvae import training

X = (np.random.default_rng(5).random((12, 10)) < 0.5).astype("float32")


def make(**kwargs):
    model = keras_lvae.LadderVAE(latent_dims=(3, 2), hidden_dims=(8, 4), seed=1, **kwargs)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.build((None, 10))
    return model


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights = []

    def on_train_batch_end(self, batch, logs=None):
        self.weights.append([w.numpy().copy() for w in self.model.trainable_weights])


def test_ema_after_n_steps_is_the_closed_form():
    """e_0 = w_0, e_k = d e_{k-1} + (1 - d) w_k: e_n = d^n w_0 + (1 - d) sum_k d^(n-k) w_k."""
    decay = 0.7
    model = make(ema_decay=decay)
    start = [w.numpy().copy() for w in model.trainable_weights]
    recorder = Recorder()
    model.fit(X, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[recorder])
    n = len(recorder.weights)
    assert n == 3
    for j, average in enumerate(model.ema_variables):
        want = decay**n * start[j] + (1 - decay) * sum(
            decay ** (n - k) * recorder.weights[k - 1][j] for k in range(1, n + 1))
        np.testing.assert_allclose(average.numpy(), want, rtol=1e-5, atol=1e-7)


def test_evaluate_uses_the_averages_and_restores_the_weights():
    model = make(ema_decay=0.5)
    model.fit(X, batch_size=4, epochs=2, verbose=0)
    weights = [w.numpy().copy() for w in model.trainable_weights]
    state = [w.numpy().copy() for w in model.variables  # noise states as evaluate finds them
             if not w.path.split("/")[-1].startswith("ema__")]
    reported = model.evaluate(X, batch_size=12, return_dict=True, verbose=0)["nelbo"]
    for w, kept in zip(model.trainable_weights, weights):
        np.testing.assert_array_equal(w.numpy(), kept)
    def without_ema(use_averages):
        """The same model without EMA (same statistics and noise states), holding the
        averages or the trained weights."""
        clone = make()
        for target, value in zip(clone.variables, state):
            target.assign(value)
        if use_averages:
            for target, average in zip(clone.trainable_weights, model.ema_variables):
                target.assign(average)
        return clone.evaluate(X, batch_size=12, return_dict=True, verbose=0)["nelbo"]

    assert reported == pytest.approx(without_ema(True), rel=1e-6)
    assert abs(reported - without_ema(False)) > 1e-3  # the trained weights score differently


def test_keras_file_and_checkpoint_keep_the_averages(tmp_path):
    model = make(ema_decay=0.9)
    model.fit(X, batch_size=4, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    for a, b in zip(loaded.ema_variables, model.ema_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    keys = training.state_variables(model)
    assert any("ema__encoder_block_1__dense_0__kernel" in key for key in keys)
    assert loaded.use_ema_weights() and not make().use_ema_weights()
    np.testing.assert_array_equal(loaded.trainable_weights[0].numpy(),
                                  model.ema_variables[0].numpy())


@pytest.mark.parametrize("bad", [1.0, -0.1, True])
def test_bad_decay_is_refused(bad):
    with pytest.raises(ValueError, match="`ema_decay`"):
        keras_lvae.LadderVAE(latent_dims=(2,), hidden_dims=(4,), ema_decay=bad)
