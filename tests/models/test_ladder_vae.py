import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lvae
from keras_lvae import data, pipelines
from tests.testing import TINY_MODEL

RNG = np.random.default_rng(0)
X = (RNG.random((64, 28, 28, 1)) < 0.3).astype("float32")
SMALL = TINY_MODEL


def small_model(**kwargs):
    model = keras_lvae.LadderVAE(**{**SMALL, **kwargs})
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model


# ---------------------------------------------------------------- warm-up
@pytest.mark.parametrize("jit_compile", [  # XLA's compilation: over 10 s on one core
    pytest.param(True, marks=pytest.mark.slow), False])
def test_compiled_step_uses_the_scheduled_beta(jit_compile):
    warmup = 4
    model = keras_lvae.LadderVAE(**SMALL, warmup_steps=warmup)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit_compile)
    for step in range(6):
        logs = model.train_on_batch(X[:16], return_dict=True)
        beta = min(1.0, step / warmup)
        assert logs["beta"] == pytest.approx(beta)
        # The optimised loss is the beta-weighted bound of this very step.
        assert logs["loss"] == pytest.approx(
            logs["reconstruction_loss"] + beta * logs["kl_loss"], rel=1e-5)
    assert int(model.optimizer.iterations) == 6


def test_fit_logs_epoch_mean_beta_and_validation_uses_beta_one():
    model = small_model(warmup_steps=8)
    history = model.fit(X, batch_size=16, epochs=2, validation_data=X[:16], verbose=0)
    # Steps 0-3 then 4-7 of an 8-step warm-up.
    np.testing.assert_allclose(history.history["beta"], [0.1875, 0.6875], rtol=1e-6)
    assert "val_beta" not in history.history  # always 1: no information
    np.testing.assert_allclose(history.history["val_loss"], history.history["val_nelbo"], rtol=1e-6)


def test_logged_metric_names():
    model = small_model(latent_dims=(6, 4, 2), hidden_dims=(32, 16, 8))
    logs = model.fit(X, batch_size=32, epochs=1, verbose=0).history
    assert set(logs) == {"loss", "nelbo", "reconstruction_loss", "kl_loss", "kl_layer_1",
                         "kl_layer_2", "kl_layer_3", "beta"}


# ---------------------------------------------------------- data formats
@pytest.mark.parametrize("element", ["x", "tuple", "dict"])
def test_dataset_elements(element):
    labels = np.arange(len(X)) % 10
    ds = {"x": tf.data.Dataset.from_tensor_slices(X),
          "tuple": tf.data.Dataset.from_tensor_slices((X, labels)),
          "dict": tf.data.Dataset.from_tensor_slices({"image": X, "label": labels})}[element]
    model = small_model()
    history = model.fit(ds.batch(16, drop_remainder=True), epochs=1, verbose=0)
    assert np.isfinite(history.history["nelbo"][0])
    assert model(X[:2]).shape == (2, 28, 28, 1)


def test_flat_inputs_and_gaussian_likelihood():
    x = RNG.random((32, 7)).astype("float32") * 4 - 2  # any real values
    model = small_model(likelihood="gaussian")
    model.fit(x, batch_size=16, epochs=1, verbose=0)
    assert model(x).shape == (32, 7)


@pytest.mark.slow  # over 10 s
def test_xla_fit_and_evaluate():
    model = keras_lvae.LadderVAE(**SMALL, warmup_steps=3)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True)
    history = model.fit(X, batch_size=16, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert np.isfinite(model.evaluate(X, batch_size=16, verbose=0, return_dict=True)["nelbo"])


# ------------------------------------------------- encode / decode / generate
def test_encode_decode_generate():
    model = small_model()
    model.fit(X, batch_size=32, epochs=1, verbose=0)
    posterior = model.encode(X[:5])
    assert [tuple(m.shape) for m, _ in posterior] == [(5, 6), (5, 4)]
    assert all(np.all(np.asarray(v) > 0) for _, v in posterior)
    # call() is decode() of the bottom posterior mean.
    np.testing.assert_allclose(model.decode(posterior[0][0]), model(X[:5]), rtol=1e-5, atol=1e-6)
    samples = np.asarray(model.generate(7, seed=5))
    assert samples.shape == (7, 28, 28, 1) and samples.min() >= 0 and samples.max() <= 1
    np.testing.assert_array_equal(samples, model.generate(7, seed=5))
    assert not np.allclose(samples, model.generate(7, seed=6))
    assert not np.allclose(model.generate(7), model.generate(7))  # fresh draws by default


# ----------------------------------------------------------- saving
def test_keras_file_round_trip(tmp_path):
    model = small_model(inference="ladder", share_top_down=False, warmup_steps=10)
    model.fit(X, batch_size=16, epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, keras_lvae.LadderVAE)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded(X[:8]), model(X[:8]))
    for (m1, v1), (m2, v2) in zip(loaded.encode(X[:8]), model.encode(X[:8])):
        np.testing.assert_array_equal(m1, m2)
        np.testing.assert_array_equal(v1, v2)
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 4
    # Training resumes where it stopped: the next step's beta continues the warm-up.
    logs = loaded.train_on_batch(X[:16], return_dict=True)
    assert logs["beta"] == pytest.approx(0.4)


# ------------------------------------------------------------ bad input
@pytest.mark.parametrize("kwargs, argument", [
    (dict(latent_dims=()), "latent_dims"),
    (dict(latent_dims=(4, 0), hidden_dims=(8, 8)), "latent_dims"),
    (dict(latent_dims=(4, 2), hidden_dims=(8,)), "hidden_dims"),
    (dict(latent_dims=(4,), hidden_dims=(8.5,)), "hidden_dims"),
    (dict(inference="top_down"), "inference"),
    (dict(likelihood="poisson"), "likelihood"),
    (dict(dense_per_block=0), "dense_per_block"),
    (dict(warmup_steps=-5), "warmup_steps"),
    (dict(seed="x"), "seed"),
])
def test_bad_constructor_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        keras_lvae.LadderVAE(**kwargs)


def test_wrong_shape_at_call_time():
    model = small_model()
    model(X[:2])
    with pytest.raises(ValueError, match=r"expected shape \(batch, 28, 28, 1\).*received \(2, 784\)"):
        model(X[:2].reshape(2, 784))
    with pytest.raises(ValueError, match="received \\(28, 28, 1\\)"):
        model(X[0])
    with pytest.raises(ValueError, match="z_1"):
        model.decode(np.zeros((2, 5), "float32"))


@pytest.mark.parametrize("bad", [255.0, -0.1, np.nan])
def test_values_outside_unit_interval_for_bernoulli(bad):
    model = small_model()
    x = X[:4].copy()
    x[0, 0, 0, 0] = bad
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        model(x)
    with pytest.raises(ValueError, match=r"`x`: .*(values in \[0, 1\]|finite values)"):
        model.evaluate(x, batch_size=4, verbose=0)  # arrays: before a step is traced
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"values in \[0, 1\]"):
        model.evaluate(tf.data.Dataset.from_tensor_slices(x).batch(4), verbose=0)


def test_methods_need_a_built_model():
    with pytest.raises(ValueError, match="built model"):
        small_model().generate(3)


# ----------------------------------------------------- learning real data
def _train_on_real_mnist(mnist_dir, inference):
    keras.utils.set_random_seed(1)
    train, _ = data.load_arrays("mnist", "train", mnist_dir)
    test, _ = data.load_arrays("mnist", "test", mnist_dir)
    train_ds = pipelines.make_pipeline(train[:12800], None, 128, shuffle=True, drop_remainder=True,
                                  dynamic_binarization=True, seed=1)
    test_ds = pipelines.make_pipeline(pipelines.binarize_once(test[:2000]), None, 500, shuffle=False,
                                 drop_remainder=False, dynamic_binarization=False)
    model = keras_lvae.LadderVAE(latent_dims=(16, 8), hidden_dims=(128, 64), inference=inference,
                                 warmup_steps=100, seed=1)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    before = model.evaluate(test_ds, return_dict=True, verbose=0)["nelbo"]
    history = model.fit(train_ds, validation_data=test_ds, epochs=3, verbose=0).history
    return before, history["val_nelbo"]


@pytest.mark.slow  # over 10 s
@pytest.mark.parametrize("inference", ["ladder", "bottom_up"])
def test_training_on_real_mnist_lowers_val_nelbo(mnist_dir, inference):
    before, val_nelbo = _train_on_real_mnist(mnist_dir, inference)
    # An untrained model scores about 784 * log 2 = 543 nats; 300 training steps
    # on 12,800 real digits bring the true bound (beta = 1) to about 134 nats here.
    assert before > 400
    assert val_nelbo[-1] < 150
    assert val_nelbo[-1] < val_nelbo[0]


# ---------------------------------------------- importance-weighted bound
@pytest.fixture(scope="module")
def trained_on_mnist_5k():
    keras.utils.set_random_seed(2)
    model = keras_lvae.LadderVAE(latent_dims=(16, 8), hidden_dims=(128, 64), warmup_steps=50,
                                 seed=2)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    model.fit(data.load_dataset("mnist_5k", "train", batch_size=100), epochs=5, verbose=0)
    test = pipelines.binarize_once(data.load_arrays("mnist_5k", "test")[0][:200])[..., None]
    return model, test


def test_importance_weighted_bound_grows_with_k(trained_on_mnist_5k):
    model, x = trained_on_mnist_5k
    elbo = -model.evaluate(x, batch_size=200, verbose=0, return_dict=True)["nelbo"]
    bounds = {k: keras_lvae.log_likelihood(model, x, num_samples=k).mean() for k in (1, 10, 100)}
    # L_1 is a one-sample ELBO estimate: it agrees with the analytic-KL ELBO up to
    # Monte Carlo noise (a few tenths of a nat on 200 examples).
    assert bounds[1] == pytest.approx(elbo, abs=2.0)
    assert bounds[10] >= elbo
    assert bounds[1] < bounds[10] < bounds[100]


# ----------------------------------------------------------- mixed precision
@pytest.mark.slow  # over 10 s
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_training_on_real_mnist(policy, mnist_dir):
    """A few hundred steps of a 3-layer LVAE on real MNIST under each policy: finite and
    decreasing, close to the float32 run, with float32 variables and distribution maths."""
    train = data.load_dataset("mnist", "train", batch_size=128, data_dir=mnist_dir).take(150)
    test = data.load_dataset("mnist", "test", batch_size=500, data_dir=mnist_dir).take(4)
    results = {}
    for name in (policy, "float32"):
        keras.mixed_precision.set_dtype_policy(name)
        try:
            model = keras_lvae.LadderVAE(latent_dims=(16, 8, 4), hidden_dims=(128, 64, 32),
                                         seed=0)
            model.compile(optimizer=keras.optimizers.Adam(2e-3))
        finally:
            keras.mixed_precision.set_dtype_policy("float32")
        history = model.fit(train, validation_data=test, epochs=2, verbose=0).history
        results[name] = history
        assert np.isfinite(history["loss"]).all(), (name, history["loss"])
        assert history["val_nelbo"][-1] < history["val_nelbo"][0] < 300
    assert abs(results[policy]["val_nelbo"][-1] - results["float32"]["val_nelbo"][-1]) < 5.0
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        model = small_model()
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    if policy == "mixed_float16":  # compile adds dynamic loss scaling, used via scale_loss
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    # Variables stay float32; means and variances are computed in float32.
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    assert all(m.dtype == "float32" and v.dtype == "float32" for m, v in model.encode(X[:4]))


def test_dict_elements_need_an_image_key():
    ds = tf.data.Dataset.from_tensor_slices({"pixels": X}).batch(16)
    with pytest.raises(ValueError, match="'image' key.*pixels"):
        small_model().fit(ds, epochs=1, verbose=0)


# ------------------------------------------------------- reproducibility
@pytest.mark.slow  # over 10 s
def test_the_same_seed_gives_the_same_weights_and_metrics():
    """`seed` covers the weight initialisation and the sampling noise; with the data in a
    fixed order (here shuffle=False) two runs are identical, another seed differs."""
    def run(seed):
        model = small_model(seed=seed)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        history = model.fit(X, batch_size=16, epochs=2, shuffle=False, verbose=0).history
        return model.get_weights(), history

    (weights_a, history_a), (weights_b, history_b) = run(7), run(7)
    for a, b in zip(weights_a, weights_b):
        np.testing.assert_array_equal(a, b)
    assert history_a == history_b
    weights_c, history_c = run(8)
    assert not all(np.array_equal(a, c) for a, c in zip(weights_a, weights_c))
    assert history_a["nelbo"] != history_c["nelbo"]


@pytest.mark.slow  # over 10 s on one core
def test_a_new_optimizer_continues_the_warm_up_where_it_was():
    """The README's fine-tuning recompiles with a new Adam, whose step starts at 0: beta
    follows the model's own step counter, so it stays 1 after the warm-up."""
    model = small_model(warmup_steps=4)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(X, batch_size=16, epochs=2, verbose=0)  # 8 steps: past the warm-up
    assert int(model.trained_steps) == 8
    model.compile(optimizer=keras.optimizers.Adam(1e-4))
    logs = model.fit(X[:16], batch_size=16, epochs=1, verbose=0).history
    assert logs["beta"] == [1.0] and int(model.optimizer.iterations) == 1
    assert int(model.trained_steps) == 9


def test_fit_on_a_dataset_does_not_warn_about_keras_default_shuffle():
    """Our pipelines shuffle themselves; Keras' `shuffle=True` default warned on every fit."""
    import warnings

    model = small_model()
    model.compile(optimizer="adam")
    dataset = tf.data.Dataset.from_tensor_slices(X[:8]).batch(4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(dataset, epochs=1, verbose=0)
    assert not [w for w in caught if "shuffle" in str(w.message)]
