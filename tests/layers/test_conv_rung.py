import numpy as np
import pytest

from keras_lvae.layers import ConvRung
from tests.models.test_conv_ladder_vae import np_rung
from tests.testing import run_layer_test

RNG = np.random.default_rng(4)
X = RNG.normal(size=(3, 6, 5, 2)).astype("float32")


@pytest.mark.parametrize("kwargs, shape", [
    (dict(filters=4, num_blocks=1), (3, 6, 5, 4)),
    (dict(filters=4, num_blocks=2, resample="down", resample_steps=2, gated=True), (3, 2, 2, 4)),
    (dict(filters=3, num_blocks=1, resample="up", resample_steps=1, activation="swish",
          batch_norm=False), (3, 12, 10, 3)),
])
def test_layer_harness(kwargs, shape):
    run_layer_test(ConvRung, {**kwargs, "seed": 1}, X, shape)


@pytest.mark.parametrize("kwargs", [
    dict(resample="down", resample_steps=1, gated=True),
    dict(resample="up", resample_steps=2, activation="leaky_relu"),
    dict(batch_norm=False, kernel_size=5),
])
def test_rung_equals_numpy(kwargs):
    """Convolutions, transposed convolutions, batch norm (moving statistics), activations
    and gates against the numpy rung of the model test."""
    rung = ConvRung(4, num_blocks=2, seed=2, **kwargs)
    rung.build(X.shape)
    for var in rung.weights:
        if "gamma" in var.path or "moving_variance" in var.path:
            var.assign(RNG.uniform(0.5, 1.5, size=tuple(var.shape)))
        elif "beta" in var.path or "moving_mean" in var.path or "bias" in var.path:
            var.assign(RNG.normal(scale=0.3, size=tuple(var.shape)))
    np.testing.assert_allclose(rung(X, training=False), np_rung(rung, X.astype(np.float64)),
                               rtol=1e-4, atol=1e-5)


def test_project_input_false_keeps_the_channels_and_refuses_others():
    rung = ConvRung(2, num_blocks=1, project_input=False)
    assert tuple(rung(X).shape) == X.shape
    with pytest.raises(ValueError, match="needs 3 channels"):
        ConvRung(3, num_blocks=1, project_input=False)(X)


@pytest.mark.parametrize("kwargs, match", [
    (dict(resample="down", resample_steps=0), "resample_steps"),
    (dict(resample="none", resample_steps=1), "resample_steps"),
    (dict(resample="up", resample_steps=3), "resample_steps"),
    (dict(resample="sideways"), "resample"),
    (dict(activation="relu6"), "activation"),
    (dict(kernel_size=4), "kernel_size"),
    (dict(filters=0), "filters"),
])
def test_bad_arguments_are_refused_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConvRung(**{"filters": 4, "num_blocks": 2, **kwargs})
