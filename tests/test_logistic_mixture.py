"""The discretized logistic mixture against an independent numpy implementation."""

import math

import numpy as np
import pytest
import tensorflow as tf

from keras_lvae import logistic_mixture as lm

RNG = np.random.default_rng(0)


def np_log_sigmoid(z):
    return -np.logaddexp(0.0, -z)


def np_bin_mass(a, b):
    """sigmoid(a) - sigmoid(b) for a > b, without cancellation in either tail."""
    right = b > 0  # both near 1: use sigmoid(-b) - sigmoid(-a), both small
    return np.where(right, np.exp(np_log_sigmoid(-b)) - np.exp(np_log_sigmoid(-a)),
                    np.exp(np_log_sigmoid(a)) - np.exp(np_log_sigmoid(b)))


def np_log_prob(values, params, k, coupled):
    """log p of 8-bit values [n, C] under per-row parameters [n, P], in float64: the open
    edge bins as log-sigmoids, inner bins as CDF differences, and the log-density at the
    bin centre times its width where a bin's mass is below 1e-5."""
    n, c = values.shape
    logits = params[:, :k]
    means = params[:, k:k + k * c].reshape(n, k, c)
    log_scales = np.maximum(params[:, k + k * c:k + 2 * k * c].reshape(n, k, c), -7.0)
    coefficients = (np.tanh(params[:, k + 2 * k * c:].reshape(n, k, c * (c - 1) // 2))
                    if coupled and c > 1 else None)
    y = values / 127.5 - 1.0
    total = np.zeros((n, k))
    for ch in range(c):
        m = means[:, :, ch].copy()
        if coefficients is not None:
            for j in range(ch):
                m += coefficients[:, :, ch * (ch - 1) // 2 + j] * y[:, None, j]
        s = np.exp(log_scales[:, :, ch])
        v = values[:, None, ch]
        upper = (y[:, None, ch] + 1 / 255 - m) / s
        lower = (y[:, None, ch] - 1 / 255 - m) / s
        mid = (y[:, None, ch] - m) / s
        log_density = (-np.log(s) - np.abs(mid) - 2 * np.log1p(np.exp(-np.abs(mid)))
                       + math.log(2 / 255))
        mass = np_bin_mass(upper, lower)
        inner = np.where(mass > 1e-5, np.log(np.maximum(mass, 1e-300)), log_density)
        total += np.where(v == 0, np_log_sigmoid(upper),
                          np.where(v == 255, np_log_sigmoid(-lower), inner))
    top = logits.max(1, keepdims=True)
    log_weights = logits - top - np.log(np.exp(logits - top).sum(1, keepdims=True))
    joint = total + log_weights
    top = joint.max(1, keepdims=True)
    return (np.log(np.exp(joint - top).sum(1, keepdims=True)) + top)[:, 0]


def random_params(n, k, c, coupled, scale_range=(-7.0, 1.0), mean_range=(-1.5, 1.5)):
    p = np.zeros((n, lm.num_parameters(k, c, coupled)))
    p[:, :k] = RNG.normal(size=(n, k)) * 2
    p[:, k:k + k * c] = RNG.uniform(*mean_range, size=(n, k * c))
    p[:, k + k * c:k + 2 * k * c] = RNG.uniform(*scale_range, size=(n, k * c))
    p[:, k + 2 * k * c:] = RNG.normal(size=(n, p.shape[1] - k - 2 * k * c))
    return p


@pytest.mark.parametrize("k, c, coupled", [(10, 1, False), (1, 1, False), (3, 2, True),
                                           (4, 2, False)])
def test_probabilities_of_all_values_sum_to_one(k, c, coupled):
    """For random parameters (log-scales from -7 to 1, means outside [-1, 1] included), the
    probabilities of all 256^C values of a pixel sum to 1, in float64 (C = 2: 65,536 values,
    with channel-coupled means)."""
    values = np.stack(np.meshgrid(*[np.arange(256)] * c, indexing="ij"), -1).reshape(-1, c)
    x = tf.constant(values.reshape(-1, 1, 1, c) / 255.0)
    for row in random_params(4 if c == 1 else 2, k, c, coupled):
        p = tf.constant(np.broadcast_to(row, (len(values), len(row))).reshape(
            len(values), 1, 1, -1))
        total = np.exp(np.asarray(lm.log_prob(x, p, k, coupled))).sum()
        assert total == pytest.approx(1.0, abs=5e-4)


@pytest.mark.parametrize("k, c, coupled", [(10, 3, True), (5, 3, False), (1, 1, False)])
def test_log_prob_equals_numpy(k, c, coupled):
    n = 400
    params = random_params(n, k, c, coupled)
    values = RNG.integers(0, 256, size=(n, c)).astype(np.float64)
    values[:20] = 0
    values[20:40] = 255
    want = np_log_prob(values, params, k, coupled)
    got = lm.log_prob(tf.constant((values / 255).reshape(n, 1, 1, c)),
                      tf.constant(params.reshape(n, 1, 1, -1)), k, coupled)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)
    got32 = lm.log_prob(tf.constant((values / 255).reshape(n, 1, 1, c), tf.float32),
                        tf.constant(params.reshape(n, 1, 1, -1), tf.float16), k, coupled)
    assert np.asarray(got32).dtype == np.float32
    np.testing.assert_allclose(np.asarray(got32), want, rtol=2e-2, atol=0.5)  # float16 params


def test_per_example_sum_over_positions():
    params = random_params(2 * 4 * 5, 3, 3, True).reshape(2, 4, 5, -1)
    values = RNG.integers(0, 256, size=(2, 4, 5, 3)).astype(np.float64)
    got = np.asarray(lm.log_prob(tf.constant(values / 255), tf.constant(params), 3, True))
    want = np_log_prob(values.reshape(-1, 3), params.reshape(40, -1), 3, True).reshape(2, 20)
    np.testing.assert_allclose(got, want.sum(1), rtol=1e-6)


def test_samples_follow_the_distribution_and_the_mean_is_the_expected_value():
    """One uncoupled 2-component pixel: the frequencies of 50,000 draws in 32 groups of 8
    values match the probabilities (total variation < 0.02; its sampling noise is about
    0.01), and `mean` equals sum_v v p(v) / 255 up to the
    clipping of the logistic tails (small here)."""
    k, c = 2, 1
    row = np.array([0.3, -0.5, -0.4, 0.5, -3.0, -2.5])
    values = np.arange(256.0)
    probs = np.exp(np_log_prob(values[:, None], np.broadcast_to(row, (256, 6)), k, False))
    n = 50000
    params = tf.constant(np.broadcast_to(row, (n, 1, 1, 6)))
    draws = np.asarray(lm.sample(params, k, c, tf.constant([1, 2]), coupled=False))
    counts = np.bincount(np.round(draws.ravel() * 255).astype(int), minlength=256) / n
    grouped = counts.reshape(32, 8).sum(1) - probs.reshape(32, 8).sum(1)
    assert 0.5 * np.abs(grouped).sum() < 0.02
    mean = float(np.asarray(lm.mean(params[:1], k, c, coupled=False)).ravel()[0])
    assert mean == pytest.approx((values * probs).sum() / 255, abs=0.01)


def test_wrong_parameter_count_is_refused():
    with pytest.raises(ValueError, match="expected 100 per position"):
        lm.log_prob(tf.zeros((1, 2, 2, 3)), tf.zeros((1, 2, 2, 99)), 10)
