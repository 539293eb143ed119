"""The discretized mixture of logistics over 8-bit pixels, as pure functions.

Pixels are 8-bit values v in {0, ..., 255}, given to these functions as
x = v / 255 in [0, 1] (the library's image convention) and mapped to
y = 2x - 1 in [-1, 1], where each value owns a bin of width 2/255. A pixel's
channels share one of K mixture components; per component the parameters are
a mixing logit, and per channel a mean and a log-scale; with `coupled` means
(PixelCNN++), channel c's mean also adds sum_{j<c} tanh(a_cj) * y_j of the
channels before it. The probability of a value is the logistic CDF mass of its
bin; the bins of 0 and 255 extend to -inf and +inf, so the 256 probabilities
of a pixel sum to 1 for any parameters. Where a bin's mass underflows
(< 1e-5) its log is the log-density at the bin centre times the bin width.

Parameters come in the last axis of a [batch, H, W, P] tensor:
[logits (K) | means (K * C) | log-scales (K * C) | coefficients (K * C(C-1)/2)],
each block ordered component-major; `num_parameters` gives P.
Everything is computed in float32 (float64 if the parameters are float64),
whatever the layer's mixed-precision policy.

Reference: Salimans et al. 2017 (PixelCNN++), openai/pixel-cnn `nn.py`
(`discretized_mix_logistic_loss`), also used by openai/vdvae.
"""

import math

import tensorflow as tf
from keras import ops

# Smallest log-scale (PixelCNN++'s): scales below e^-7 add nothing at 8-bit resolution.
MIN_LOG_SCALE = -7.0
BIN = 1.0 / 255.0  # half the width of a value's bin in [-1, 1]


def num_parameters(num_components, channels, coupled=True):
    """P, the parameters per pixel position."""
    coefficients = channels * (channels - 1) // 2 if coupled else 0
    return num_components * (1 + 2 * channels + coefficients)


def _split(params, num_components, channels, coupled):
    """(logits [.., K], means [.., K, C], log-scales [.., K, C], coefficients [.., K, C(C-1)/2])."""
    k, c = num_components, channels
    if params.shape[-1] != num_parameters(k, c, coupled):
        raise ValueError(
            f"Invalid logistic-mixture parameters: expected {num_parameters(k, c, coupled)} per "
            f"position for {k} components and {c} channels (coupled={coupled}), received "
            f"{params.shape[-1]}.")
    lead = tuple(params.shape[:-1])
    logits = params[..., :k]
    means = ops.reshape(params[..., k:k + k * c], (-1, *lead[1:], k, c))
    log_scales = ops.maximum(
        ops.reshape(params[..., k + k * c:k + 2 * k * c], (-1, *lead[1:], k, c)), MIN_LOG_SCALE)
    coefficients = None
    if coupled and c > 1:
        coefficients = ops.tanh(ops.reshape(params[..., k + 2 * k * c:],
                                            (-1, *lead[1:], k, c * (c - 1) // 2)))
    return logits, means, log_scales, coefficients


def _coupled_means(means, coefficients, y):
    """Means with channel c shifted by sum_{j<c} coefficient_cj * y_j (y: [.., 1, C])."""
    if coefficients is None:
        return means
    channels = means.shape[-1]
    shifted, index = [means[..., 0]], 0
    for c in range(1, channels):
        shift = 0.0
        for j in range(c):
            shift = shift + coefficients[..., index] * y[..., j]
            index += 1
        shifted.append(means[..., c] + shift)
    return ops.stack(shifted, axis=-1)


def _compute_dtype(params):
    return "float64" if "float64" in str(params.dtype) else "float32"


def log_prob(x, params, num_components, coupled=True):
    """log p(x) per example, summed over positions and channels (nats), shape [batch].

    Args:
        x: images [batch, H, W, C] with values v / 255 (v in 0..255).
        params: [batch, H, W, P] (see the module docstring).
        num_components: K.
        coupled: channel-coupled means (PixelCNN++).
    """
    dtype = _compute_dtype(params)
    params = ops.cast(params, dtype)
    x = ops.cast(x, dtype)
    channels = x.shape[-1]
    logits, means, log_scales, coefficients = _split(params, num_components, channels, coupled)
    y = ops.expand_dims(2.0 * x - 1.0, -2)                      # [.., 1, C]
    centred = y - _coupled_means(means, coefficients, y)        # [.., K, C]
    inverse_scale = ops.exp(-log_scales)
    plus = inverse_scale * (centred + BIN)
    minus = inverse_scale * (centred - BIN)
    log_cdf_plus = plus - ops.softplus(plus)                    # log sigmoid(plus): value 0
    log_survival_minus = -ops.softplus(minus)                   # log (1 - sigmoid(minus)): 255
    mass = ops.sigmoid(plus) - ops.sigmoid(minus)
    middle = inverse_scale * centred
    log_density_mass = middle - log_scales - 2.0 * ops.softplus(middle) + math.log(2 * BIN)
    inner = ops.where(mass > 1e-5, ops.log(ops.maximum(mass, 1e-12)), log_density_mass)
    log_probs = ops.where(y < -1.0 + BIN, log_cdf_plus,
                          ops.where(y > 1.0 - BIN, log_survival_minus, inner))
    per_component = ops.sum(log_probs, axis=-1) + ops.log_softmax(logits, axis=-1)  # [.., K]
    per_position = ops.logsumexp(per_component, axis=-1)
    return ops.sum(ops.reshape(per_position, (ops.shape(per_position)[0], -1)), axis=-1)


def mean(params, num_components, channels, coupled=True):
    """The mean image in [0, 1], [batch, H, W, C]: per channel the mixture's mean, with
    coupled means evaluated at the means of the channels before (an approximation)."""
    dtype = _compute_dtype(params)
    params = ops.cast(params, dtype)
    logits, means, _, coefficients = _split(params, num_components, channels, coupled)
    weights = ops.expand_dims(ops.softmax(logits, axis=-1), -1)   # [.., K, 1]
    y = ops.sum(weights * means, axis=-2, keepdims=True)           # uncoupled means, [.., 1, C]
    if coefficients is not None:
        for _ in range(channels - 1):  # channel c settles after c passes
            y = ops.sum(weights * _coupled_means(means, coefficients, y), axis=-2, keepdims=True)
    y = ops.clip(ops.squeeze(y, -2), -1.0, 1.0)
    return (y + 1.0) / 2.0


def sample(params, num_components, channels, seed, coupled=True):
    """8-bit samples as v / 255, [batch, H, W, C]; `seed` is a stateless int32[2] seed."""
    dtype = _compute_dtype(params)
    params = ops.cast(params, dtype)
    logits, means, log_scales, coefficients = _split(params, num_components, channels, coupled)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    gumbel = -ops.log(-ops.log(tf.random.stateless_uniform(
        tf.shape(logits), seeds[0], minval=1e-5, maxval=1.0 - 1e-5, dtype=dtype)))
    choice = ops.one_hot(ops.argmax(logits + gumbel, axis=-1), num_components, dtype=dtype)
    choice = ops.expand_dims(choice, -1)                              # [.., K, 1]
    u = tf.random.stateless_uniform(tf.shape(means[..., 0, :]), seeds[1], minval=1e-5,
                                    maxval=1.0 - 1e-5, dtype=dtype)   # [.., C]
    noise = ops.exp(ops.sum(choice * log_scales, -2)) * (ops.log(u) - ops.log(1.0 - u))
    chosen_means = ops.sum(choice * means, -2)                        # [.., C]
    values = []
    for c in range(channels):  # channel c's mean shifts by the sampled channels before it
        m = chosen_means[..., c]
        if coefficients is not None and c > 0:
            start = c * (c - 1) // 2  # coefficients of (c, 0), ..., (c, c - 1)
            for j in range(c):
                m = m + ops.sum(choice[..., 0] * coefficients[..., start + j], -1) * values[j]
        values.append(ops.clip(m + noise[..., c], -1.0, 1.0))
    y = ops.stack(values, axis=-1)
    return ops.round((y + 1.0) * 127.5) / 255.0
