import numpy as np
import pytest

from keras_lvae.layers import MLPBlock
from tests.helpers import assert_layer_round_trip, leaky_relu

RNG = np.random.default_rng(3)
X = RNG.normal(size=(10, 6)).astype("float32")


def numpy_block(block, x, training):
    h = x
    for i, dense in enumerate(block.dense_layers):
        h = h @ dense.kernel.numpy()
        if block.batch_norm:
            norm = block.norm_layers[i]
            mean, var = (h.mean(0), h.var(0)) if training else (
                norm.moving_mean.numpy(), norm.moving_variance.numpy())
            h = norm.gamma.numpy() * (h - mean) / np.sqrt(var + norm.epsilon) + norm.beta.numpy()
        else:
            h = h + dense.bias.numpy()
        h = leaky_relu(h, block.negative_slope)
    return h


@pytest.mark.parametrize("batch_norm", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_matches_numpy(batch_norm, training):
    block = MLPBlock(7, depth=2, batch_norm=batch_norm)
    block.build(X.shape)
    for norm in block.norm_layers:
        norm.moving_mean.assign(RNG.normal(size=7))
        norm.moving_variance.assign(RNG.uniform(0.5, 2.0, size=7))
    want = numpy_block(block, X, training)
    np.testing.assert_allclose(block(X, training=training), want, rtol=1e-4, atol=1e-5)


def test_structure_follows_arguments():
    block = MLPBlock(5, depth=3)
    block.build(X.shape)
    assert len(block.dense_layers) == 3 and len(block.norm_layers) == 3
    assert block(X).shape == (10, 5)


@pytest.mark.parametrize("kwargs, name", [({"units": 0}, "units"), ({"units": 4, "depth": 0}, "depth")])
def test_bad_arguments_are_refused(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        MLPBlock(**kwargs)


def test_config_round_trip():
    assert_layer_round_trip(MLPBlock(4, depth=3, batch_norm=True, negative_slope=0.2, name="b"), X)
