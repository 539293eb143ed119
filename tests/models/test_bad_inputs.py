"""Every public entry point answers bad input with an error that names the problem."""

import numpy as np
import pytest
import tensorflow as tf

import keras_lvae
from keras_lvae import data
from tests.testing import TINIEST_MODEL

X = (np.random.default_rng(2).random((32, 12)) < 0.4).astype("float32")
NAN = X.copy()
NAN[1, 2] = np.nan


@pytest.fixture(scope="module")
def models():
    built = {}
    for likelihood in ("bernoulli", "gaussian"):
        model = keras_lvae.LadderVAE(**TINIEST_MODEL, likelihood=likelihood)
        model.compile(optimizer="adam")
        model(X)
        built[likelihood] = model
    return built


def empty_dataset_of_unknown_size():
    return tf.data.Dataset.from_tensor_slices(X).filter(lambda x: False).batch(8)


CALLS = [
    # (description, likelihood, call, error type, message)
    ("wrong shape", "bernoulli", lambda m: m(X[:, :5]), ValueError, r"expected shape \(batch, 12\)"),
    ("string dtype", "bernoulli", lambda m: m(np.array([["a"] * 12])), ValueError,
     "expected real numbers"),
    ("complex dtype", "bernoulli", lambda m: m(X.astype("complex64")), ValueError,
     "received dtype"),
    ("outside [0, 1]", "bernoulli", lambda m: m(X * 255), ValueError, r"values in \[0, 1\]"),
    ("NaN, Bernoulli", "bernoulli", lambda m: m(NAN), ValueError, "NaN"),
    ("NaN, Gaussian", "gaussian", lambda m: m(NAN), ValueError, "expected finite values"),
    # Arrays are checked before Keras traces a step: one message, no graph error.
    ("NaN in fit data", "bernoulli", lambda m: m.fit(NAN, batch_size=8, verbose=0),
     ValueError, "argument `x`: expected finite values, received NaN"),
    ("NaN in Gaussian fit data", "gaussian", lambda m: m.fit(NAN, batch_size=8, verbose=0),
     ValueError, "argument `x`: expected finite values"),
    ("NaN in evaluate data", "bernoulli", lambda m: m.evaluate(NAN, verbose=0),
     ValueError, "argument `x`: expected finite values, received NaN"),
    ("255 in fit data", "bernoulli", lambda m: m.fit(255 * X, batch_size=8, verbose=0),
     ValueError, r"`x`: the bernoulli likelihood needs values in \[0, 1\].*from 0 to 255"),
    ("NaN in validation data", "bernoulli",
     lambda m: m.fit(X, batch_size=8, validation_data=(NAN,), verbose=0),
     ValueError, "argument `validation_data`: expected finite values"),
    ("NaN in a dataset, checked in the step", "bernoulli",
     lambda m: m.fit(tf.data.Dataset.from_tensor_slices(NAN).batch(8), verbose=0),
     tf.errors.InvalidArgumentError, r"values in \[0, 1\]"),
    ("empty array to fit", "bernoulli", lambda m: m.fit(X[:0], verbose=0), ValueError,
     "`x`: expected at least one example"),
    ("empty dataset to fit", "bernoulli",
     lambda m: m.fit(tf.data.Dataset.from_tensor_slices(X[:0]).batch(8), verbose=0), ValueError,
     "received an empty dataset"),
    ("empty dataset of unknown size", "bernoulli",
     lambda m: m.fit(empty_dataset_of_unknown_size(), verbose=0), ValueError, "yielded none"),
    ("empty validation data", "bernoulli",
     lambda m: m.fit(X, validation_data=(X[:0],), verbose=0), ValueError, "`validation_data`"),
    ("empty dataset to evaluate", "bernoulli",
     lambda m: m.evaluate(empty_dataset_of_unknown_size(), verbose=0), ValueError, "yielded none"),
    ("batch size 0 to fit", "bernoulli", lambda m: m.fit(X, batch_size=0, verbose=0), ValueError,
     "`batch_size`: expected a positive int, received 0"),
    ("batch size 0 to evaluate", "bernoulli", lambda m: m.evaluate(X, batch_size=0, verbose=0),
     ValueError, "`batch_size`"),
    ("k < 1", "bernoulli", lambda m: keras_lvae.log_likelihood(m, X, num_samples=0), ValueError,
     "`num_samples`: expected a positive int, received 0"),
    ("NaN to log_likelihood", "bernoulli", lambda m: keras_lvae.log_likelihood(m, NAN, num_samples=2),
     tf.errors.InvalidArgumentError, "NaN"),
    ("empty data to log_likelihood", "bernoulli",
     lambda m: keras_lvae.log_likelihood(m, X[:0], num_samples=2), ValueError, "`data`"),
    ("batch size 0 to log_likelihood", "bernoulli",
     lambda m: keras_lvae.log_likelihood(m, X, batch_size=0), ValueError, "`batch_size`"),
    ("generate 0 samples", "bernoulli", lambda m: m.generate(0), ValueError, "`num_samples`"),
    ("decode wrong latent size", "bernoulli", lambda m: m.decode(np.zeros((2, 5), "float32")),
     ValueError, r"`z_1`: expected shape \(batch, 3\)"),
    ("export version 0", "bernoulli", lambda m: keras_lvae.export_saved_model(m, "unused", 0),
     ValueError, "`version`"),
    ("batch size 0 to load_dataset", None,
     lambda m: data.load_dataset("mnist_5k", "train", batch_size=0), ValueError, "`batch_size`"),
    ("unknown dataset", None, lambda m: data.load_dataset("cifar", "train", batch_size=8),
     ValueError, "cifar"),
]


@pytest.mark.parametrize("call", CALLS, ids=[c[0] for c in CALLS])
def test_bad_input_is_refused_clearly(models, call):
    _, likelihood, function, error, message = call
    with pytest.raises(error, match=message):
        function(models.get(likelihood))


def test_bool_and_int_binary_images_are_accepted(models):
    model = models["bernoulli"]
    np.testing.assert_allclose(model(X.astype(bool)), model(X), rtol=1e-6)
    np.testing.assert_allclose(model(X.astype("uint8")), model(X), rtol=1e-6)
