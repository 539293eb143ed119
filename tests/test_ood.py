"""Out-of-distribution scores: L^{>k} against a numpy estimate, the report against
scikit-learn's metrics."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn import metrics

import keras_lvae
from keras_lvae import ood

RNG = np.random.default_rng(3)
X = (RNG.random((3, 6)) < 0.5).astype("float32")


def log_normal(z, mean, variance):
    return (-0.5 * (np.log(2 * np.pi * variance) + (z - mean) ** 2 / variance)).sum(-1)


def log_mean_exp(w, axis=0):
    top = w.max(axis, keepdims=True)
    return np.squeeze(np.log(np.exp(w - top).mean(axis, keepdims=True)) + top, axis)


def numpy_skip_weight(model, x, k):
    """The log-weight of L^{>k} for one example x when every draw is its mean, in numpy
    through the model's own rungs: z_{>k} at q's mean (the bottom-up estimate merged with
    p by precision weighting, paper eq. 1), z_k ... z_1 at p(z_i | z_{>i})'s mean; weight
    log p(x | z_1) + sum_{i>k} log p(z_i | z_{>i}) - log q(z_i | x)."""
    bottom_up = [(m.numpy()[0].astype(np.float64), v.numpy()[0].astype(np.float64))
                 for m, v in model._bottom_up(model.prepare(x[None]), False)]
    z, variance = bottom_up[-1]
    log_ratio = log_normal(z, 0.0, 1.0) - log_normal(z, z, variance)
    for i in reversed(range(model.num_layers - 1)):
        p_mean, p_variance, _ = model.prior_params(i, tf.constant(z[None], tf.float32), None)
        p_mean, p_variance = p_mean.numpy()[0], p_variance.numpy()[0]
        if i < k:  # drawn from the prior
            z = p_mean
            continue
        mean_hat, variance_hat = bottom_up[i]
        q_variance = 1.0 / (1.0 / variance_hat + 1.0 / p_variance)
        z = (mean_hat / variance_hat + p_mean / p_variance) * q_variance
        log_ratio += log_normal(z, p_mean, p_variance) - log_normal(z, z, q_variance)
    logits = model.output_params(tf.constant(z[None], tf.float32)).numpy()[0].astype(np.float64)
    return (x * logits - np.logaddexp(0.0, logits)).sum() + log_ratio


def test_skip_weights_follow_the_posterior_above_k_and_the_prior_below(monkeypatch):
    """Every row of `skip_log_weights` for a 3-layer ladder with each draw at its mean
    against numpy (1e-4 nats); the rows differ by more than that, so the check can fail."""
    model = keras_lvae.LadderVAE(latent_dims=(3, 2, 2), hidden_dims=(16, 8, 8),
                                 batch_norm=False, seed=1)
    monkeypatch.setattr(model, "_draw", lambda i, mean, variance, *args, **kwargs: mean)
    monkeypatch.setattr(model, "_prior_draw", lambda i, mean, variance, *args, **kwargs: mean)
    got = model.skip_log_weights(X, 2).numpy()
    assert got.shape == (3, 2, len(X))
    want = np.array([[numpy_skip_weight(model, x, k) for x in X] for k in range(3)])
    np.testing.assert_allclose(got[:, 0], want, atol=1e-4)
    np.testing.assert_allclose(got[:, 0], got[:, 1], rtol=1e-6)
    assert np.abs(np.diff(want, axis=0)).max(axis=1).min() > 0.01, want


def test_skip_bounds_are_the_log_mean_exp_of_shared_passes():
    """`skip_bounds` with a seed draws pass j as `skip_log_weights` with fold_in(seed, j)
    (whose row 0 is exactly `importance_log_weights` with that seed) and cuts the last
    pass at S: 20 samples in passes of 7 against numpy's log-mean-exp (rtol 1e-5)."""
    model = keras_lvae.LadderVAE(latent_dims=(3, 2, 2), hidden_dims=(16, 8, 8), seed=1)
    seed = tf.constant([4, 2], tf.int32)
    fold = tf.random.experimental.stateless_fold_in
    passes = [model.skip_log_weights(X, 7, seed=fold(seed, j)).numpy() for j in range(3)]
    np.testing.assert_array_equal(passes[1][0],
                                  model.importance_log_weights(X, 7, seed=fold(seed, 1)))
    want = log_mean_exp(np.concatenate(passes, axis=1)[:, :20].astype(np.float64), axis=1)
    got = ood.skip_bounds(model, X, 20, 7, seed=seed).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # A bound's draws do not depend on which others are computed.
    only_two = model.skip_log_weights(X, 7, seed=fold(seed, 0), ratios=(2,)).numpy()
    np.testing.assert_array_equal(only_two, passes[0][[0, 2]])


def test_scores_are_minus_the_bound_and_the_ratios(monkeypatch):
    """`ood_scores` over batches of 2 maps bounds [L, L^{>1}, L^{>2}] (here 1, 2 and 3 x the
    pixel sum) to nll = -L and llr>k = L - L^{>k}, in the examples' order."""
    model = keras_lvae.LadderVAE(latent_dims=(3, 2, 2), hidden_dims=(16, 8, 8), seed=1)
    fake = lambda x, num_samples, chunk: tf.stack([tf.reduce_sum(x, 1) * k for k in (1, 2, 3)])
    monkeypatch.setattr(ood, "_bounds_function", lambda model, ratios: fake)
    scores = keras_lvae.ood_scores(model, X, batch_size=2)
    total = X.sum(1)
    np.testing.assert_allclose(scores["nll"], -total)
    np.testing.assert_allclose(scores["llr>1"], -total)
    np.testing.assert_allclose(scores["llr>2"], -2 * total)


@pytest.mark.parametrize("likelihood", ["gaussian", "logistic_mixture"])
def test_conv_ladders_give_every_score_for_every_example(likelihood):
    model = keras_lvae.ConvLadderVAE(latent_dims=(2, 2, 2), hidden_dims=(4, 4, 4),
                                     residual_blocks=1, likelihood=likelihood,
                                     mixture_components=2, seed=0)
    x = np.round(RNG.random((5, 8, 8, 3)) * 255) / 255
    scores = keras_lvae.ood_scores(model, x.astype("float32"), num_samples=3, batch_size=2)
    assert sorted(scores) == ["llr>1", "llr>2", "nll"]
    assert all(v.shape == (5,) and np.isfinite(v).all() for v in scores.values())


def test_models_without_two_ladder_layers_are_refused():
    bottom_up = keras_lvae.LadderVAE(latent_dims=(2, 1), hidden_dims=(8, 4),
                                     inference="bottom_up")
    with pytest.raises(ValueError, match=r"`model`: ood_scores needs a ladder"):
        keras_lvae.ood_scores(bottom_up, X)
    with pytest.raises(ValueError, match=r"at least two latent layers"):
        keras_lvae.ood_scores(keras_lvae.LadderVAE(latent_dims=(2,), hidden_dims=(8,)), X)
    with pytest.raises(ValueError, match=r"`num_samples`"):
        keras_lvae.ood_scores(bottom_up, X, num_samples=0)
    with pytest.raises(ValueError, match=r"L\^\{>k\} need inference='ladder'.*bottom_up"):
        bottom_up.skip_log_weights(X, 2)
    ladder = keras_lvae.LadderVAE(latent_dims=(3, 2, 2), hidden_dims=(16, 8, 8))
    for ratios in ((0,), (1, 3), (1, 1), [], "1"):
        with pytest.raises(ValueError, match=r"`ratios`: expected distinct layer indices "
                                             r"from 1 to 2, received"):
            keras_lvae.ood_scores(ladder, X, ratios=ratios)
    assert sorted(keras_lvae.ood_scores(ladder, X, num_samples=2, ratios=[2])) == ["llr>2",
                                                                                     "nll"]


@pytest.mark.parametrize("seed", range(4))
def test_separation_equals_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    # Rounded scores: ties inside and across the two sets.
    inside, outside = np.round(rng.normal(0, 1, 300), 1), np.round(rng.normal(0.7, 1, 200), 1)
    got = ood.separation(inside, outside)
    y = np.r_[np.zeros(300), np.ones(200)]
    s = np.r_[inside, outside]
    assert got["auroc"] == pytest.approx(metrics.roc_auc_score(y, s), abs=1e-12)
    assert got["auprc"] == pytest.approx(metrics.average_precision_score(y, s), abs=1e-12)
    fpr, tpr, _ = metrics.roc_curve(y, s, drop_intermediate=False)
    assert got["fpr95"] == pytest.approx(fpr[np.argmax(tpr >= 0.95)], abs=1e-12)


def test_report_names_mismatched_scores():
    report = keras_lvae.ood_report({"nll": [0.0, 1.0], "llr>1": [0.0, 0.0]},
                                   {"nll": [2.0, 3.0], "llr>1": [0.0, 0.0]})
    assert report["nll"] == {"auroc": 1.0, "auprc": 1.0, "fpr95": 0.0}
    assert report["llr>1"]["auroc"] == 0.5  # all tied
    with pytest.raises(ValueError, match=r"`scores_out`: expected the scores of scores_in"):
        keras_lvae.ood_report({"nll": [1.0]}, {"llr>1": [1.0]})
    with pytest.raises(ValueError, match=r"`scores_in`: expected the dict of ood_scores"):
        keras_lvae.ood_report([1.0], {"nll": [1.0]})


@pytest.mark.slow  # about 30 s
def test_a_model_of_digits_flags_noise_and_refuses_bad_images():
    """A ladder trained 5 epochs on mnist_5k's digits scores their test digits against
    Bernoulli(0.5) noise images: AUROC above 0.9 for the likelihood (measured 1.0; llr>1 of
    this small 2-layer model: 0.69, so it is not asserted); NaN or out-of-range images and
    an empty set are refused by name."""
    from keras_lvae import data

    keras.utils.set_random_seed(0)
    model = keras_lvae.LadderVAE(latent_dims=(16, 8), hidden_dims=(128, 64), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(data.load_dataset("mnist_5k", "train", batch_size=100), epochs=5, verbose=0)
    digits, _ = data.load_evaluation_arrays("mnist_5k", "test")
    noise = (np.random.default_rng(0).random((200, 28, 28, 1)) < 0.5).astype("float32")
    scores_in = keras_lvae.ood_scores(model, digits[:200], num_samples=10)
    scores_out = keras_lvae.ood_scores(model, noise, num_samples=10)
    report = keras_lvae.ood_report(scores_in, scores_out)
    assert report["nll"]["auroc"] > 0.9, report
    assert sorted(report) == ["llr>1", "nll"]
    bad = digits[:4].copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"`data`: expected finite values, received NaN"):
        keras_lvae.ood_scores(model, bad)
    with pytest.raises(ValueError, match=r"`data`: the bernoulli likelihood needs values in"):
        keras_lvae.ood_scores(model, digits[:4] * 2.0)
    with pytest.raises(ValueError, match=r"`data`: expected at least one example"):
        keras_lvae.ood_scores(model, digits[:0])


def test_a_pass_holds_at_most_the_parameters_of_its_budget(monkeypatch):
    """Colour models: a pass takes fewer rows, so every bound's p(x | z_1) parameters stay
    within PARAMETERS_PER_PASS; the examples of a large batch are split across passes, each
    scored once."""
    model = keras_lvae.ConvLadderVAE(latent_dims=(2, 2), hidden_dims=(4, 4),
                                     likelihood="logistic_mixture", mixture_components=2,
                                     residual_blocks=1, seed=0)
    images = np.random.default_rng(0).integers(0, 256, (7, 8, 8, 3)) / np.float32(255)
    model(images[:1])
    per_row = 8 * 8 * model.pixel_likelihood.num_parameters()
    monkeypatch.setattr(ood, "PARAMETERS_PER_PASS", 2 * 3 * per_row)  # 3 rows, 2 bounds
    assert ood.rows_per_pass(model, 2) == 3
    passes = []
    traced = ood._bounds_function(model, (1,))

    def recorded(x, num_samples, chunk):
        passes.append((int(x.shape[0]), int(chunk)))
        return traced(x, num_samples, chunk)

    monkeypatch.setattr(ood, "_bounds_function", lambda model, ratios: recorded)
    scores = ood.ood_scores(model, images, num_samples=4, batch_size=7)
    assert passes == [(3, 1), (3, 1), (1, 3)]  # rows x chunk <= 3 in every pass
    assert scores["nll"].shape == scores["llr>1"].shape == (7,)
