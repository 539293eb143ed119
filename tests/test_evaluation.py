import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lvae
from keras_lvae import evaluation

RNG = np.random.default_rng(5)
X = (RNG.random((30, 12)) < 0.4).astype("float32")


@pytest.fixture(scope="module")
def model():
    model = keras_lvae.LadderVAE(latent_dims=(3, 2), hidden_dims=(16, 8), seed=4)
    model(X)
    return model


def test_shape_and_inputs(model):
    from_array = keras_lvae.log_likelihood(model, X, num_samples=7, batch_size=8)
    dataset = tf.data.Dataset.from_tensor_slices((X, np.zeros(30))).batch(11)
    from_dataset = keras_lvae.log_likelihood(model, dataset, num_samples=7)
    assert from_array.shape == from_dataset.shape == (30,)
    assert np.isfinite(from_array).all() and (from_array < 0).all()


def replay_bound(model, x, chunks, seeds):
    """log-mean-exp of importance weights drawn in the given chunk sizes, in numpy."""
    for head, seed in zip(model.encoder_heads, seeds):
        head.seed_generator.state.assign(seed)
    weights = np.concatenate([
        np.asarray(model.importance_log_weights(np.tile(x, (c, 1)))).reshape(c, -1)
        for c in chunks]).astype(np.float64)
    top = weights.max(0)
    return np.log(np.exp(weights - top).mean(0)) + top


@pytest.mark.parametrize("num_samples, chunk_size, chunks", [
    (5, 5, [5]), (5, 2, [2, 2, 1]), (7, 3, [3, 3, 1]), (4, 1, [1, 1, 1, 1])])
def test_chunks_combine_exactly(model, num_samples, chunk_size, chunks):
    """L_k equals log-mean-exp of the model's importance log-weights, same noise,
    whatever the chunking."""
    seeds = [tf.identity(h.seed_generator.state) for h in model.encoder_heads]
    bound = keras_lvae.log_likelihood(model, X, num_samples=num_samples, chunk_size=chunk_size,
                                      batch_size=len(X))
    np.testing.assert_allclose(bound, replay_bound(model, X, chunks, seeds), rtol=1e-5)


@pytest.mark.parametrize("kwargs, argument", [
    (dict(num_samples=0), "num_samples"),
    (dict(num_samples=2.5), "num_samples"),
    (dict(batch_size=0), "batch_size"),
    (dict(chunk_size=-1), "chunk_size"),
])
def test_bad_arguments(model, kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        keras_lvae.log_likelihood(model, X, **kwargs)


def test_empty_data(model):
    with pytest.raises(ValueError, match="`data`"):
        keras_lvae.log_likelihood(model, X[:0], num_samples=3)


@pytest.mark.parametrize("inference", ["ladder", "bottom_up"])
def test_shared_bottom_up_pass_equals_tiled_inputs(inference):
    """Sharing the ladder's deterministic pass across samples changes nothing:
    k samples of x give the weights of one sample of x tiled k times (same noise)."""
    model = keras_lvae.LadderVAE(latent_dims=(3, 2), hidden_dims=(16, 8), seed=4,
                                 inference=inference)
    model(X)
    seeds = [tf.identity(h.seed_generator.state) for h in model.encoder_heads]
    shared = np.asarray(model.importance_log_weights(X, num_samples=4))
    for head, seed in zip(model.encoder_heads, seeds):
        head.seed_generator.state.assign(seed)
    tiled = np.asarray(model.importance_log_weights(np.tile(X, (4, 1)))).reshape(4, -1)
    assert shared.shape == (4, 30)
    np.testing.assert_allclose(shared, tiled, rtol=1e-5, atol=1e-5)


def test_latent_diagnostics_on_a_constructed_model():
    """One latent layer of 4 units: units 0-1 depend on x, units 2-3 have q = N(0, 1)
    exactly (zero weights, softplus(b) + floor = 1), so they carry no KL and their
    posterior means do not vary over the data."""
    x = (RNG.random((200, 12)) < 0.5).astype("float32")
    model = keras_lvae.LadderVAE(latent_dims=(4,), hidden_dims=(16,), batch_norm=False, seed=0)
    model(x)
    head = model.encoder_heads[0]
    kernel = np.zeros((16, 8), "float32")  # columns 0-3: means, 4-7: variances
    kernel[:, :2] = RNG.normal(scale=2.0, size=(16, 2))
    bias = np.zeros(8, "float32")
    bias[4:] = np.log(np.expm1(1.0 - head.variance_floor))  # softplus(b) + floor = 1
    head.dense.kernel.assign(kernel)
    head.dense.bias.assign(bias)

    [layer] = keras_lvae.latent_diagnostics(model, x, batch_size=64)
    assert layer["active_units_kl"] == 2 and layer["active_units_cov"] == 2
    np.testing.assert_allclose(layer["kl_per_unit"][2:], 0.0, atol=1e-6)
    np.testing.assert_allclose(layer["posterior_mean_variance"][2:], 0.0, atol=1e-10)
    # The only layer is the top one: its KL to N(0, I) in closed form, from encode().
    mean, variance = (np.asarray(t, np.float64) for t in model.encode(x)[0])
    closed_form = 0.5 * (-np.log(variance) + variance + mean**2 - 1).mean(0)
    np.testing.assert_allclose(layer["kl_per_unit"], closed_form, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(layer["posterior_mean_variance"], mean.var(0), rtol=1e-6)
    assert layer["kl"] == pytest.approx(closed_form.sum(), rel=1e-4)


@pytest.mark.parametrize("inference", ["ladder", "bottom_up"])
def test_kl_per_unit_sums_to_the_elbo_kl(inference):
    model = keras_lvae.LadderVAE(latent_dims=(3, 2), hidden_dims=(16, 8), seed=4,
                                 inference=inference)
    model(X)
    seeds = [tf.identity(h.seed_generator.state) for h in model.encoder_heads]
    per_unit = model.kl_per_unit(X)
    for head, seed in zip(model.encoder_heads, seeds):  # the same noise again
        head.seed_generator.state.assign(seed)
    terms = model.elbo_terms(X)
    assert [tuple(k.shape) for k in per_unit] == [(30, 3), (30, 2)]
    for unit_kl, layer_kl in zip(per_unit, terms["kl_layers"]):
        np.testing.assert_allclose(np.sum(unit_kl, axis=-1), layer_kl, rtol=1e-6)


def test_recompute_batch_norm_statistics_averages_batch_moments():
    """The first batch norm sees x @ W: its new moving statistics are the average
    over batches of that product's batch mean and (biased) variance, in numpy."""
    model = keras_lvae.LadderVAE(latent_dims=(3, 2), hidden_dims=(16, 8), seed=4)
    model(X)
    norm = model.encoder_blocks[0].norm_layers[0]
    kernel = model.encoder_blocks[0].dense_layers[0].kernel.numpy().astype(np.float64)
    momentum = norm.momentum
    assert keras_lvae.recompute_batch_norm_statistics(model, X, batch_size=10) == 11
    products = [X[i:i + 10] @ kernel for i in (0, 10, 20)]
    np.testing.assert_allclose(norm.moving_mean.numpy(), np.mean([p.mean(0) for p in products], 0),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(norm.moving_variance.numpy(),
                               np.mean([p.var(0) for p in products], 0), rtol=1e-4, atol=1e-6)
    assert norm.momentum == momentum


def test_readjust_batch_norm_gives_the_statistics_of_samples_at_the_temperature():
    """NVAE's readjustment on a 2-layer model: the first batch norm below z_2 sees z_2 @ W
    with z_2 ~ N(0, t^2 I), so its statistics become mean 0 and variance t^2 sum_j W_jk^2
    (5,120 samples: within 5 standard errors); at t = 0 exactly 0 and 0. Batch norms off the
    generative path keep theirs; the momentum comes back."""
    model = keras_lvae.LadderVAE(latent_dims=(3, 2), hidden_dims=(16, 8), seed=4)
    model(X)
    below_top = model.decoder_blocks[0]
    norm, kernel = below_top.norm_layers[0], below_top.dense_layers[0].kernel.numpy()
    encoder_norm = model.encoder_blocks[0].norm_layers[0]
    encoder_before = encoder_norm.moving_variance.numpy().copy()
    momentum = norm.momentum
    keras_lvae.readjust_batch_norm(model, 0.5, batches=20, batch_size=256, seed=3)
    variance = 0.25 * np.sum(kernel.astype(np.float64) ** 2, axis=0)
    np.testing.assert_allclose(norm.moving_variance.numpy(), variance, rtol=0.1)
    assert np.all(np.abs(norm.moving_mean.numpy()) < 5 * np.sqrt(variance / 5120))
    np.testing.assert_array_equal(encoder_norm.moving_variance.numpy(), encoder_before)
    assert norm.momentum == momentum
    keras_lvae.readjust_batch_norm(model, [1.0, 0.0], batches=2, batch_size=16)
    np.testing.assert_array_equal(norm.moving_mean.numpy(), 0.0)
    np.testing.assert_array_equal(norm.moving_variance.numpy(), 0.0)
    with pytest.raises(ValueError, match=r"`temperature`: expected a number >= 0 .*received"):
        keras_lvae.readjust_batch_norm(model, [1.0, 1.0, 1.0])


def test_recompute_batch_norm_statistics_restores_on_failure():
    model = keras_lvae.LadderVAE(latent_dims=(3, 2), hidden_dims=(16, 8), seed=4)
    model(X)
    before = [w.numpy() for w in model.non_trainable_weights if "moving" in w.path]
    bad = tf.data.Dataset.from_tensor_slices(np.concatenate([X, 2 * X])).batch(30)
    with pytest.raises(Exception, match="0, 1"):
        keras_lvae.recompute_batch_norm_statistics(model, bad)
    after = [w.numpy() for w in model.non_trainable_weights if "moving" in w.path]
    assert len(before) == 22  # 11 batch norms
    for old, new in zip(before, after):
        np.testing.assert_array_equal(old, new)
    assert {layer.momentum for layer in model._flatten_layers()
            if isinstance(layer, keras.layers.BatchNormalization)} == {0.9}


def test_bound_report_and_standard_error(model):
    report = keras_lvae.bound_report(model, X, num_samples=50, batch_size=10)
    l_1, l_k = report["per_example_L_1"], report["per_example_L_k"]
    assert report["num_examples"] == 30 and report["num_samples"] == 50
    assert report["L_k"]["mean"] == pytest.approx(l_k.mean())
    assert report["L_k"]["standard_error"] == pytest.approx(l_k.std(ddof=1) / np.sqrt(30))
    assert report["bound_gap"]["mean"] == pytest.approx((l_k - l_1).mean())
    assert report["L_k"]["mean"] > report["L_1"]["mean"]


def test_standard_error_known_cases():
    from keras_lvae.report_statistics import mean_and_standard_error
    # Values 1..n: sample std sqrt(n (n + 1) / 12).
    mean, error = mean_and_standard_error(np.arange(1, 101))
    assert mean == 50.5 and error == pytest.approx(np.sqrt(100 * 101 / 12) / 10)
    assert mean_and_standard_error([3.0]) == (3.0, 0.0)
    with pytest.raises(ValueError, match="`values`"):
        mean_and_standard_error([])


def test_log_likelihood_compiles_with_xla(model):
    """The pass compiles with XLA. XLA draws other normals from the same stateless seed
    (its Philox stream differs from TensorFlow's kernels), so the two are compared as
    Monte Carlo estimates: on this untrained model two plain runs with k = 400 differ by up
    to 1.7 nats per example but only about 0.05 in the mean over the 30 examples."""
    plain = keras_lvae.log_likelihood(model, X, num_samples=400, batch_size=15)
    compiled = keras_lvae.log_likelihood(model, X, num_samples=400, batch_size=15,
                                         jit_compile=True)
    assert np.isfinite(compiled).all() and compiled.shape == (30,)
    assert abs(compiled.mean() - plain.mean()) < 0.25


def test_the_bound_cache_keeps_no_model_alive():
    """`log_likelihood` caches its traced function per model; a model deleted afterwards
    must be garbage-collected (the cache's values used to close over their key)."""
    import gc
    import weakref

    model = keras_lvae.LadderVAE(latent_dims=(2,), hidden_dims=(8,), seed=1)
    keras_lvae.log_likelihood(model, X[:4], num_samples=3)
    assert evaluation._bound_function(model, False) is evaluation._bound_function(model, False)
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None
