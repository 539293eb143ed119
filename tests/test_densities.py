import numpy as np
import pytest

from keras_lvae import densities

RNG = np.random.default_rng(0)


def numpy_gaussian_kl(mq, vq, mp, vp):
    return 0.5 * (np.log(vp / vq) + (vq + (mq - mp) ** 2) / vp - 1.0)


def test_gaussian_kl_matches_closed_form():
    mq, mp = RNG.normal(size=(2, 5, 7))
    vq, vp = RNG.uniform(0.05, 3.0, size=(2, 5, 7))
    got = densities.gaussian_kl(*(a.astype("float32") for a in (mq, vq, mp, vp)))
    np.testing.assert_allclose(got, numpy_gaussian_kl(mq, vq, mp, vp).sum(-1), rtol=1e-5, atol=1e-5)


def test_gaussian_kl_to_standard_normal():
    mq = RNG.normal(size=(4, 3)).astype("float32")
    vq = RNG.uniform(0.1, 2.0, size=(4, 3)).astype("float32")
    got = densities.gaussian_kl(mq, vq)
    want = 0.5 * (-np.log(vq) + vq + mq**2 - 1.0).sum(-1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_gaussian_kl_is_zero_for_equal_distributions():
    m = RNG.normal(size=(3, 4)).astype("float32")
    v = RNG.uniform(0.1, 2.0, size=(3, 4)).astype("float32")
    np.testing.assert_allclose(densities.gaussian_kl(m, v, m, v), 0.0, atol=1e-6)


@pytest.mark.parametrize("binary", [True, False])
def test_bernoulli_log_prob_matches_numpy(binary):
    logits = RNG.normal(scale=4.0, size=(6, 2, 5)).astype("float32")
    x = RNG.random(size=logits.shape).astype("float32")
    if binary:
        x = (x < 0.5).astype("float32")
    p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    want = (x * np.log(p) + (1 - x) * np.log1p(-p)).reshape(6, -1).sum(-1)
    np.testing.assert_allclose(densities.bernoulli_log_prob(x, logits), want, rtol=1e-5)


def test_gaussian_log_prob_matches_numpy():
    x, m = RNG.normal(size=(2, 4, 9))
    v = RNG.uniform(0.1, 2.0, size=(4, 9))
    want = (-0.5 * (np.log(2 * np.pi * v) + (x - m) ** 2 / v)).sum(-1)
    got = densities.gaussian_log_prob(*(a.astype("float32") for a in (x, m, v)))
    np.testing.assert_allclose(got, want, rtol=1e-5)
