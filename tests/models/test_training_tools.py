"""Training tools of deep hierarchies: the moving average of the weights (EMA)."""

import keras
import numpy as np
import pytest

import keras_lvae
from keras_lvae import checkpoints

X = (np.random.default_rng(5).random((12, 10)) < 0.5).astype("float32")


def make(**kwargs):
    model = keras_lvae.LadderVAE(latent_dims=(3, 2), hidden_dims=(8, 4), seed=1, **kwargs)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.build((None, 10))
    return model


def averaged(model):
    """What the moving averages follow: the trainable weights, then the batch norms'
    moving means and variances."""
    return model.trainable_weights + [w for layer in model.batch_norm_layers()
                                      for w in (layer.moving_mean, layer.moving_variance)]


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights = []

    def on_train_batch_end(self, batch, logs=None):
        self.weights.append([w.numpy().copy() for w in averaged(self.model)])


def test_ema_after_n_steps_follows_the_recursion_with_warm_up():
    """e_0 = w_0, e_k = d_k e_{k-1} + (1 - d_k) w_k with d_k = min(decay, (1+k)/(10+k)),
    for the weights and the batch-norm statistics alike (decay 0.2: the warm-up's
    2/11 at step 1, then 0.2)."""
    decay = 0.2
    model = make(ema_decay=decay)
    start = [w.numpy().copy() for w in averaged(model)]
    assert len(model.ema_variables) == len(start) == len(model.trainable_weights) + 2 * 11
    recorder = Recorder()
    model.fit(X, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[recorder])
    n = len(recorder.weights)
    assert n == 3
    assert not np.allclose(recorder.weights[-1][-1], start[-1])  # the statistics moved
    for j, average in enumerate(model.ema_variables):
        want = start[j]
        for k in range(1, n + 1):
            d = min(decay, (1 + k) / (10 + k))
            want = d * want + (1 - d) * recorder.weights[k - 1][j]
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
            for target, average in zip(averaged(clone), model.ema_variables):
                target.assign(average)
        return clone.evaluate(X, batch_size=12, return_dict=True, verbose=0)["nelbo"]

    assert reported == pytest.approx(without_ema(True), rel=1e-6)
    assert abs(reported - without_ema(False)) > 1e-3  # the trained weights score differently


def test_after_use_ema_weights_evaluate_keeps_recomputed_statistics():
    """`use_ema_weights()` then `recompute_batch_norm_statistics` (what `lvae evaluate
    --bn-statistics recompute` does): `evaluate` scores the model as it now is, not with the
    stale averaged statistics; `fit` then trains and validates with averages again."""
    model = make(ema_decay=0.5)
    model.fit(X, batch_size=4, epochs=2, verbose=0)
    assert model.use_ema_weights()
    keras_lvae.recompute_batch_norm_statistics(model, X, batch_size=6)
    held = [w.numpy().copy() for w in model.variables]
    reported = model.evaluate(X, batch_size=12, return_dict=True, verbose=0)["nelbo"]
    clone = make()  # no averages: scores exactly the variables it is given
    for target, value in zip(clone.variables, (v for v, w in zip(held, model.variables)
                                               if not w.path.split("/")[-1].startswith("ema__"))):
        target.assign(value)
    assert reported == pytest.approx(
        clone.evaluate(X, batch_size=12, return_dict=True, verbose=0)["nelbo"], rel=1e-6)
    stale = model.ema_variables[-1].numpy()
    assert not np.allclose(stale, model.batch_norm_layers()[-1].moving_variance.numpy())
    model.fit(X, batch_size=4, epochs=1, verbose=0)
    with model.ema_weights_applied():  # swapping again after fit
        np.testing.assert_array_equal(model.batch_norm_layers()[-1].moving_variance.numpy(),
                                      model.ema_variables[-1].numpy())


def test_keras_file_and_checkpoint_keep_the_averages(tmp_path):
    model = make(ema_decay=0.9)
    model.fit(X, batch_size=4, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    for a, b in zip(loaded.ema_variables, model.ema_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    keys = checkpoints.state_variables(model)
    assert any("ema__encoder_block_1__dense_0__kernel" in key for key in keys)
    assert loaded.use_ema_weights() and not make().use_ema_weights()
    np.testing.assert_array_equal(loaded.trainable_weights[0].numpy(),
                                  model.ema_variables[0].numpy())


@pytest.mark.parametrize("bad", [1.0, -0.1, True])
def test_bad_decay_is_refused(bad):
    with pytest.raises(ValueError, match="`ema_decay`"):
        keras_lvae.LadderVAE(latent_dims=(2,), hidden_dims=(4,), ema_decay=bad)


# ------------------------------------------------------------- update skipping
def test_adaptive_threshold_follows_a_known_sequence_of_norms():
    """factor x the inverted-CDF 0.95 quantile of the last `window` norms (numpy's), +inf
    before 10 norms; the ring buffer forgets the oldest."""
    import tensorflow as tf

    from keras_lvae import update_skipping

    window, factor = 12, 3.0
    history = tf.Variable(tf.zeros(window))
    count = tf.Variable(tf.constant(0, tf.int64))
    norms = np.random.default_rng(0).lognormal(size=40).astype("float32")
    norms[25:] *= 50  # a lasting change of scale
    skipped_late = []
    for k, norm in enumerate(norms):
        got = float(update_skipping.adaptive_threshold(history, count, factor))
        recent = norms[max(0, k - window):k]
        if k < 10:
            assert got == float("inf")
        else:
            want = factor * np.quantile(recent, 0.95, method="inverted_cdf")
            assert got == pytest.approx(want, rel=1e-6)
        if k >= 25:
            skipped_late.append(norm > got)
        update_skipping.record(history, count, norm)
    assert any(skipped_late[:3]) and not any(skipped_late[-5:])  # it adapts, it never stalls


def test_a_constructed_batch_with_a_huge_gradient_is_the_one_skipped():
    """Gaussian likelihood, threshold 1e4: ordinary batches train, the batch of 1e4-valued
    pixels (gradient norm ~1e8) is skipped and counted."""
    model = make(likelihood="gaussian", skip_threshold=1e4)
    x = np.random.default_rng(1).random((12, 10)).astype("float32")
    x[4:8] = 1e4
    history = model.fit(x, batch_size=4, epochs=1, shuffle=False, verbose=0).history
    assert history["skipped_steps"] == [1.0]
    assert int(model.trained_steps.numpy()) == 2


def snapshot(model):
    return ([v.numpy().copy() for v in model.trainable_variables],
            [v.numpy().copy() for v in model.optimizer.variables])


@pytest.mark.parametrize("kwargs", [dict(skip_threshold=1e-6),
                                    dict(adaptive_skip_factor=1e-6, adaptive_skip_window=10)])
def test_an_update_over_the_threshold_is_skipped_and_counted(kwargs):
    """A threshold far below any real gradient norm: every step is skipped, the weights,
    batch-norm statistics and optimizer state do not move, skipped_steps counts them.
    (The adaptive rule starts skipping once it knows 10 norms.)"""
    model = make(**kwargs)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.optimizer.build(model.trainable_variables)
    steps = 14 if "adaptive_skip_factor" in kwargs else 3
    x = np.tile(X, (steps * 4 // len(X) + 1, 1))[:steps * 4]
    if "adaptive_skip_factor" in kwargs:  # the first 10 steps train (no threshold yet)
        model.fit(x[:40], batch_size=4, epochs=1, shuffle=False, verbose=0)
        x = x[40:]
    before = snapshot(model)
    statistics = [v.numpy().copy() for v in model.non_trainable_variables if "moving_" in v.path]
    history = model.fit(x, batch_size=4, epochs=1, shuffle=False, verbose=0).history
    assert history["skipped_steps"] == [len(x) // 4]
    after = snapshot(model)
    for a, b in zip(before[0] + before[1], after[0] + after[1]):
        np.testing.assert_array_equal(a, b)
    for a, v in zip(statistics, [v for v in model.non_trainable_variables if "moving_" in v.path]):
        np.testing.assert_array_equal(a, v.numpy())


def test_a_generous_threshold_skips_nothing_and_equals_plain_training():
    plain, guarded = make(), make(skip_threshold=1e9)
    for model in (plain, guarded):
        model.fit(X, batch_size=4, epochs=1, shuffle=False, verbose=0)
    # The two step functions order their float32 operations differently: rounding only.
    for a, b in zip(plain.trainable_variables, guarded.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ KL balancing
def test_kl_balance_weights_follow_a_constructed_kl_vector():
    from keras_lvae.schedules import KL_BALANCE_OFFSET, kl_balance_weights

    kls = np.array([4.0, 0.0, 1.5, 30.0])
    weights = np.array([float(w) for w in kl_balance_weights(list(kls), beta=0.3)])
    shifted = kls + KL_BALANCE_OFFSET
    np.testing.assert_allclose(weights, shifted / shifted.mean(), rtol=1e-6)
    assert weights.sum() == pytest.approx(len(kls))  # they average 1
    assert [float(w) for w in kl_balance_weights(list(kls), beta=1.0)] == [1.0] * 4


def test_kl_balanced_loss_and_logged_weights():
    """loss = recon + beta sum_i w_i KL_i with w from the batch means (per example); the
    logged kl_weight_<i> are those weights; validation logs none and stays the true bound."""
    from keras_lvae.schedules import kl_balance_weights

    model = make(kl_balance=True, warmup_steps=100)
    plain = make()
    plain.set_weights(model.get_weights())
    beta = 0.4
    loss, terms = model.training_objective(X, beta=beta)
    kls = [np.asarray(k) for k in terms["kl_layers"]]
    weights = [float(w) for w in kl_balance_weights([k.mean() for k in kls], beta)]
    want = np.asarray(terms["reconstruction_loss"]) + beta * sum(w * k for w, k in zip(weights, kls))
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    assert abs(weights[0] - weights[1]) > 1e-3
    logs = model.fit(X, validation_data=(X,), batch_size=12, epochs=1, verbose=0).history
    assert {"kl_weight_1", "kl_weight_2"} <= set(logs)
    assert not any(name.startswith("val_kl_weight") for name in logs)
    assert logs["kl_weight_1"][0] + logs["kl_weight_2"][0] == pytest.approx(2.0, rel=1e-5)
    with pytest.raises(ValueError, match="kl_balance=True"):
        make(kl_balance=True, iw_samples=2).training_objective(X)


@pytest.mark.slow  # over 10 s (11 s on 2026-12-03)
def test_evaluate_and_fit_work_on_a_model_not_built_yet():
    """Keras builds the model inside evaluate/fit; the EMA bookkeeping must not need it
    built before (with or without EMA)."""
    for decay in (0.0, 0.9):
        model = keras_lvae.LadderVAE(latent_dims=(3, 2), hidden_dims=(8, 4), seed=1,
                                     ema_decay=decay)
        model.compile(optimizer="adam")
        assert np.isfinite(model.evaluate(X, batch_size=12, verbose=0)[0])
        model.fit(X, batch_size=12, epochs=1, verbose=0)
        assert len(model.ema_variables) == (len(averaged(model)) if decay else 0)
