"""Class-conditional ladders: p(x, z | y) and q(z | x, y) against numpy, labels in every
public path, and clear errors for missing or bad labels."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lvae

RNG = np.random.default_rng(7)
X = (RNG.random((4, 6)) < 0.5).astype("float32")
Y = np.array([0, 2, 1, 2], np.int32)


def log_normal(z, mean, variance):
    return (-0.5 * (np.log(2 * np.pi * variance) + (z - mean) ** 2 / variance)).sum(-1)


def conditional_model(**kwargs):
    options = dict(latent_dims=(3, 2), hidden_dims=(8, 4), batch_norm=False, num_classes=3,
                   seed=1)
    model = keras_lvae.LadderVAE(**{**options, **kwargs})
    model.build((None, 6))
    # Away from the zero initialisation, so that a class's top prior differs from N(0, I).
    for weight in (model.top_prior_class_mean, model.top_prior_class_log_variance):
        weight.assign(RNG.normal(size=weight.shape).astype("float32"))
    return model


def numpy_log_weight(model, x, y):
    """log p(x | z_1) + log p(z | y) - log q(z | x, y) of a 2-layer ladder with every draw at
    its mean, in numpy around the model's own dense rungs: the label's embedding row joins
    x before the first bottom-up rung and z_2 before the top-down rung; p(z_2 | y) is the
    class's row of the top prior."""
    embedding = model.label_embedding.numpy()[y]

    def rung(block, head, h):
        out = head(block(tf.constant(h[None], tf.float32)), sample=False)
        return out[1].numpy()[0].astype(np.float64), out[2].numpy()[0].astype(np.float64)

    d = model.encoder_blocks[0](tf.constant(np.r_[x, embedding][None], tf.float32))
    mean_1, variance_1 = (t.numpy()[0] for t in model.encoder_heads[0](d, sample=False)[1:])
    mean_2, variance_2 = (t.numpy()[0] for t in
                          model.encoder_heads[1](model.encoder_blocks[1](d), sample=False)[1:])
    z_2 = mean_2  # q(z_2 | x, y) is the top's bottom-up estimate
    top_mean = model.top_prior_class_mean.numpy()[y]
    top_variance = np.exp(model.top_prior_class_log_variance.numpy()[y])
    log_ratio = log_normal(z_2, top_mean, top_variance) - log_normal(z_2, z_2, variance_2)
    p_mean, p_variance = rung(model.decoder_blocks[0], model.decoder_heads[0],
                              np.r_[z_2, embedding])
    q_variance = 1.0 / (1.0 / variance_1 + 1.0 / p_variance)
    z_1 = (mean_1 / variance_1 + p_mean / p_variance) * q_variance
    log_ratio += log_normal(z_1, p_mean, p_variance) - log_normal(z_1, z_1, q_variance)
    logits = model.output_params(tf.constant(z_1[None], tf.float32)).numpy()[0]
    return (x * logits - np.logaddexp(0.0, logits)).sum() + log_ratio


def test_conditional_bound_matches_numpy(monkeypatch):
    """Each example's log-weight with mean draws against numpy (1e-4 nats); another label
    changes it by more than that, so the check can fail."""
    model = conditional_model()
    monkeypatch.setattr(model, "_draw", lambda i, mean, variance, *args, **kwargs: mean)
    got = model.importance_log_weights(X, 1, labels=Y).numpy()[0]
    want = [numpy_log_weight(model, x, y) for x, y in zip(X, Y)]
    np.testing.assert_allclose(got, want, atol=1e-4)
    other = model.importance_log_weights(X, 1, labels=(Y + 1) % 3).numpy()[0]
    assert np.abs(other - got).min() > 1e-2


def test_labels_change_samples_and_bounds():
    model = conditional_model()
    first = model.generate(4, seed=3, labels=0).numpy()
    np.testing.assert_array_equal(first, model.generate(4, seed=3, labels=[0, 0, 0, 0]))
    assert np.abs(first - model.generate(4, seed=3, labels=1).numpy()).max() > 1e-3
    terms = model.elbo_terms(X, seed=tf.constant([1, 2]), labels=Y)
    again = model.elbo_terms(X, seed=tf.constant([1, 2]), labels=(Y + 1) % 3)
    assert np.abs(terms["nelbo"] - again["nelbo"]).min() > 1e-3


def test_unconditional_models_keep_their_variables():
    """num_classes=None adds no variable, so saved models load; a conditional model adds
    three, after the others (the weight order of checkpoints stays)."""
    def paths(model):
        return [v.path.split("/", 1)[1] for v in model.weights]

    plain = keras_lvae.LadderVAE(latent_dims=(3, 2), hidden_dims=(8, 4), seed=1)
    plain.build((None, 6))
    conditional = conditional_model(batch_norm=True)
    assert not any("label" in p or "class" in p for p in paths(plain))
    extra = [p for p in paths(conditional) if p not in paths(plain)]
    assert extra == ["label_embedding", "top_prior_class_mean", "top_prior_class_log_variance"]
    assert [p for p in paths(conditional) if p not in extra] == paths(plain)


@pytest.mark.parametrize("labels, message", [
    (None, r"`labels`: this model is conditional \(num_classes=3\); expected an int label"),
    (np.array([0, 1, 3, 0]), r"`labels`: expected ints from 0 to 2"),
    (np.array([-1, 1, 2, 0]), r"`labels`: expected ints from 0 to 2"),
    (np.array([0.0, 1.0, 2.0, 0.0]), r"`labels`: expected ints.*received dtype float"),
    (np.array([[0, 1, 2, 0]]), r"`labels`: expected shape \(4,\).*received \(1, 4\)"),
    (np.array([0, 1]), r"`labels`: expected shape \(4,\).*received \(2,\)"),
])
def test_bad_labels_are_named(labels, message):
    model = conditional_model()
    with pytest.raises(ValueError, match=message):
        model.importance_log_weights(X, 2, labels=labels)


def test_labels_for_an_unconditional_model_are_refused():
    plain = keras_lvae.LadderVAE(latent_dims=(3, 2), hidden_dims=(8, 4), seed=1)
    plain.build((None, 6))
    with pytest.raises(ValueError, match=r"`labels`: this model is unconditional"):
        plain.generate(2, labels=1)
    with pytest.raises(ValueError, match=r"`num_classes`: expected a positive int"):
        keras_lvae.LadderVAE(num_classes=0)


def test_fit_on_labelled_data_and_missing_labels():
    model = conditional_model(batch_norm=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    data = tf.data.Dataset.from_tensor_slices((np.tile(X, (8, 1)), np.tile(Y, 8))).batch(8)
    history = model.fit(data, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    with pytest.raises(ValueError, match=r"`labels`: this model is conditional"):
        model.fit(np.tile(X, (8, 1)), batch_size=8, epochs=1, verbose=0)


def test_conv_ladders_take_labels():
    model = keras_lvae.ConvLadderVAE(latent_dims=(2, 2), hidden_dims=(4, 4), residual_blocks=1,
                                     num_classes=4, seed=0)
    x = (RNG.random((3, 8, 8, 1)) < 0.5).astype("float32")
    weights = model.importance_log_weights(x, 2, labels=np.array([0, 3, 1]))
    assert weights.shape == (2, 3) and np.isfinite(weights).all()
    assert model.generate(3, seed=1, labels=[0, 1, 3]).shape == (3, 8, 8, 1)


def test_classify_is_bayes_rule_over_the_class_bounds(monkeypatch):
    """p(y | x) = softmax_y(L_k(x | y) + log p(y)), here with stand-in bounds L(x | y) =
    -(y + 1) x pixel sum - 100 (far below exp's range: the softmax must be stable)."""
    model = conditional_model()
    asked = []

    def bounds(model, data, num_samples, **options):
        x, labels = data
        asked.append((num_samples, options.get("batch_size")))
        return -(np.asarray(labels) + 1.0) * np.asarray(x).sum(1) - 1000.0

    monkeypatch.setattr(keras_lvae.evaluation, "log_likelihood", bounds)
    prior = np.array([0.5, 0.3, 0.2])
    got = keras_lvae.classify(model, X, num_samples=7, class_prior=prior, batch_size=3)
    logits = -np.outer(X.sum(1), [1.0, 2.0, 3.0]) + np.log(prior)
    want = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(got, want / want.sum(1, keepdims=True), rtol=1e-10)
    assert asked == [(7, 3)] * 3
    for prior, message in (([0.5, 0.5], "expected 3 probabilities"),
                           ([0.5, 0.6, -0.1], "expected 3 probabilities")):
        with pytest.raises(ValueError, match=rf"`class_prior`: {message}"):
            keras_lvae.classify(model, X, class_prior=prior)
