import numpy as np
import pytest

from keras_lvae.layers import LadderMerge
from tests.testing import run_layer_test

RNG = np.random.default_rng(1)


def numpy_merge(mean_hat, var_hat, mean_p, var_p):
    """paper.md section 1, written with precisions, in float64."""
    var = 1.0 / (1.0 / var_hat + 1.0 / var_p)
    return (mean_hat / var_hat + mean_p / var_p) * var, var


def test_matches_precision_weighting():
    mean_hat, mean_p = RNG.normal(size=(2, 8, 5))
    var_hat, var_p = RNG.uniform(0.01, 5.0, size=(2, 8, 5))
    inputs = tuple(a.astype("float32") for a in (mean_hat, var_hat, mean_p, var_p))
    mean, var = LadderMerge()(inputs)
    want_mean, want_var = numpy_merge(mean_hat, var_hat, mean_p, var_p)
    np.testing.assert_allclose(mean, want_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, want_var, rtol=1e-5)


def test_finite_and_accurate_for_extreme_variances():
    grid = np.array([1e-8, 1e-4, 1.0, 1e4, 1e8])
    var_hat, var_p = (a.ravel() for a in np.meshgrid(grid, grid))
    mean_hat = np.full_like(var_hat, 3.0)
    mean_p = np.full_like(var_hat, -2.0)
    inputs = tuple(a[None].astype("float32") for a in (mean_hat, var_hat, mean_p, var_p))
    mean, var = (np.asarray(t)[0] for t in LadderMerge()(inputs))
    assert np.isfinite(mean).all() and np.isfinite(var).all() and (var > 0).all()
    want_mean, want_var = numpy_merge(mean_hat, var_hat, mean_p, var_p)
    np.testing.assert_allclose(var, want_var, rtol=1e-5)
    np.testing.assert_allclose(mean, want_mean, rtol=1e-5, atol=1e-6)


def test_wrong_number_of_inputs_is_refused():
    x = np.ones((1, 2), "float32")
    with pytest.raises(ValueError, match="mean_hat, variance_hat, mean_p, variance_p"):
        LadderMerge()((x, x, x))


def test_shared_layer_checks():
    x = RNG.uniform(0.1, 1.0, size=(4, 3, 2)).astype("float32")
    run_layer_test(LadderMerge, dict(name="merge"), tuple(x), [(3, 2), (3, 2)],
                   float32_outputs=True)
