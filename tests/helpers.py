"""Shared test helpers."""

import keras
import numpy as np


def assert_layer_round_trip(layer, inputs, **call_kwargs):
    """Config and weights survive serialization: the copy computes the same outputs."""
    outputs = layer(inputs, **call_kwargs)
    config = keras.saving.serialize_keras_object(layer)
    clone = keras.saving.deserialize_keras_object(config)
    assert clone.get_config() == layer.get_config()
    clone(inputs, **call_kwargs)  # build
    clone.set_weights(layer.get_weights())
    for got, want in zip(_flat(clone(inputs, **call_kwargs)), _flat(outputs)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def _flat(outputs):
    return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]


def softplus(x):
    return np.logaddexp(0.0, x)


def leaky_relu(x, slope=0.1):
    return np.where(x >= 0, x, slope * x)
