"""The ELBO that `test_step` reports, the importance-weighted bound L_k and the
fine-tuning objective equal an independent numpy computation.

The numpy model below re-implements paper.md section 1 from the layers' weights
(dense, batch norm with moving statistics, leaky ReLU, softplus variances,
precision-weighted merge, closed-form KL, Bernoulli/Gaussian log-likelihood).
The only thing it borrows from TensorFlow is the standard-normal noise, drawn
with the same stateless seeds the model's sampling layers hold.
"""

import numpy as np
import pytest
import tensorflow as tf

import keras_lvae
from tests.helpers import leaky_relu, softplus

BATCH = 12


def randomize_weights(model, rng):
    """Non-trivial values for every float weight (batch-norm statistics included)."""
    for var in model.weights:
        if "int" in str(var.dtype):  # seed-generator states
            continue
        name, shape = var.path, tuple(var.shape)
        if "gamma" in name or "moving_variance" in name:
            var.assign(rng.uniform(0.5, 1.5, size=shape))
        elif "beta" in name or "moving_mean" in name or "bias" in name:
            var.assign(rng.normal(scale=0.2, size=shape))
        else:
            var.assign(rng.normal(scale=1.0 / np.sqrt(shape[0]), size=shape))


def np_batch_norm(norm, h):
    return (norm.gamma.numpy() * (h - norm.moving_mean.numpy())
            / np.sqrt(norm.moving_variance.numpy() + norm.epsilon) + norm.beta.numpy())


def np_block(block, h):
    for i, dense in enumerate(block.dense_layers):
        h = h @ dense.kernel.numpy()
        h = np_batch_norm(block.norm_layers[i], h) if block.batch_norm else h + dense.bias.numpy()
        h = leaky_relu(h, block.negative_slope)
    return h


def np_head(head, h):
    p = h @ head.dense.kernel.numpy()
    p = np_batch_norm(head.norm, p) if head.batch_norm else p + head.dense.bias.numpy()
    mean, pre = np.split(p, 2, axis=-1)
    return mean, softplus(pre) + head.variance_floor


def np_log_normal(z, mean, var):
    return (-0.5 * (np.log(2 * np.pi * var) + (z - mean) ** 2 / var)).sum(-1)


def np_kl(mq, vq, mp, vp):
    return (0.5 * (np.log(vp / vq) + (vq + (mq - mp) ** 2) / vp - 1.0)).sum(-1)


def numpy_terms(model, x, noise):
    """Per-example negative ELBO and importance log-weight log p(x, z) - log q(z | x);
    noise[i] is the standard-normal draw of layer i."""
    x = x.reshape(len(x), -1).astype(np.float64)
    num = model.num_layers
    z, q, p = [None] * num, [None] * num, [None] * num

    def prior(i, z_above):
        return np_head(model.decoder_heads[i], np_block(model.decoder_blocks[i], z_above))

    if model.inference == "bottom_up":
        h = x
        for i in range(num):
            q[i] = np_head(model.encoder_heads[i], np_block(model.encoder_blocks[i], h))
            z[i] = h = q[i][0] + np.sqrt(q[i][1]) * noise[i]
        for i in range(num - 1):
            p[i] = prior(i, z[i + 1])
    else:
        d, bottom_up = x, []
        for i in range(num):
            d = np_block(model.encoder_blocks[i], d)
            bottom_up.append(np_head(model.encoder_heads[i], d))
        for i in reversed(range(num)):
            if i == num - 1:
                q[i] = bottom_up[i]
            else:
                p[i] = prior(i, z[i + 1])
                if model.share_top_down:
                    top_down = p[i]
                else:
                    top_down = np_head(model.top_down_heads[i],
                                       np_block(model.top_down_blocks[i], z[i + 1]))
                (mh, vh), (mt, vt) = bottom_up[i], top_down
                var = 1.0 / (1.0 / vh + 1.0 / vt)
                q[i] = ((mh / vh + mt / vt) * var, var)
            z[i] = q[i][0] + np.sqrt(q[i][1]) * noise[i]

    kl = 0.0
    for i in range(num):
        if i == num - 1:
            kl = kl + np_kl(*q[i], 0.0, 1.0)
        elif model.inference == "ladder":
            kl = kl + np_kl(*q[i], *p[i])
        else:  # one-sample estimate: z_{i+1} was drawn after z_i
            kl = kl + np_log_normal(z[i], *q[i]) - np_log_normal(z[i], *p[i])

    h = np_block(model.output_block, z[0])
    if model.likelihood == "bernoulli":
        logits = h @ model.output_head.kernel.numpy() + model.output_head.bias.numpy()
        log_px = (x * logits - softplus(logits)).sum(-1)
    else:
        log_px = np_log_normal(x, *np_head(model.output_head, h))
    log_prior_ratio = sum(
        (np_log_normal(z[i], *p[i]) if i < num - 1 else np_log_normal(z[i], 0.0, 1.0))
        - np_log_normal(z[i], *q[i]) for i in range(num))
    return -log_px + kl, log_px, log_prior_ratio


def np_logmeanexp(values, axis):
    top = values.max(axis)
    return np.log(np.exp(values - np.expand_dims(top, axis)).mean(axis)) + top


CASES = [
    dict(inference="ladder"),
    dict(inference="ladder", share_top_down=False),
    dict(inference="bottom_up"),
    dict(inference="ladder", likelihood="gaussian"),
    dict(inference="ladder", batch_norm=False),
    dict(inference="bottom_up", batch_norm=False, likelihood="gaussian"),
]


def make_model_and_data(kwargs, **extra):
    rng = np.random.default_rng(0)
    model = keras_lvae.LadderVAE(latent_dims=(5, 4, 3), hidden_dims=(16, 12, 8), seed=11,
                                 **kwargs, **extra)
    model.compile()
    x = (rng.random((BATCH, 4, 5, 1)) < 0.4).astype("float32")
    if kwargs.get("likelihood") == "gaussian":
        x = rng.random((BATCH, 4, 5, 1)).astype("float32")
    model.build(x.shape)
    randomize_weights(model, rng)
    return model, x


def next_noise(model, rows):
    """The noise each sampling layer will draw next for `rows` rows, from its seed state."""
    seeds = [tf.cast(head.seed_generator.state, tf.int32) for head in model.encoder_heads]
    return [tf.random.stateless_normal((rows, n), seed=s).numpy().astype(np.float64)
            for s, n in zip(seeds, model.latent_dims)]


def sample_noise(noise, sample):
    """Rows of one sample in a sample-major [samples * batch, units] draw."""
    return [n[sample * BATCH:(sample + 1) * BATCH] for n in noise]


@pytest.mark.parametrize("kwargs", CASES, ids=lambda k: "-".join(f"{v}" for v in k.values()))
def test_reported_nelbo_equals_numpy_reference(kwargs):
    model, x = make_model_and_data(kwargs)
    noise = next_noise(model, BATCH)
    reported = model.evaluate(x, batch_size=BATCH, return_dict=True, verbose=0)
    reference, _, _ = numpy_terms(model, x, noise)
    assert reported["nelbo"] == pytest.approx(reference.mean(), rel=1e-4)
    assert reported["loss"] == pytest.approx(reference.mean(), rel=1e-4)  # beta = 1 in test_step
    assert "beta" not in reported  # validation logs no beta: it is always 1
    kl_sum = sum(reported[f"kl_layer_{i + 1}"] for i in range(model.num_layers))
    assert kl_sum == pytest.approx(reported["kl_loss"], rel=1e-5, abs=1e-5)
    assert reported["reconstruction_loss"] + reported["kl_loss"] == pytest.approx(
        reported["nelbo"], rel=1e-5)


@pytest.mark.parametrize("kwargs", CASES[:4], ids=lambda k: "-".join(f"{v}" for v in k.values()))
def test_log_likelihood_equals_numpy_loop_over_samples(kwargs):
    """L_k per example: one vectorised pass (shared bottom-up, tiled samples) equals a
    numpy loop over the k samples with the same noise, then a log-mean-exp."""
    k = 6
    model, x = make_model_and_data(kwargs)
    noise = next_noise(model, k * BATCH)
    bound = keras_lvae.log_likelihood(model, x, num_samples=k, chunk_size=k, batch_size=BATCH)
    weights = np.stack([
        sum(numpy_terms(model, x, sample_noise(noise, s))[1:]) for s in range(k)])
    np.testing.assert_allclose(bound, np_logmeanexp(weights, 0), rtol=1e-4)


@pytest.mark.parametrize("kwargs", CASES[:3], ids=lambda k: "-".join(f"{v}" for v in k.values()))
@pytest.mark.parametrize("mc, iw, beta", [(1, 5, 1.0), (2, 3, 0.5), (3, 1, 0.25)])
def test_training_objective_equals_numpy_reference(kwargs, mc, iw, beta):
    """mc x iw samples: the mean over mc of -log-mean-exp over iw of
    log p(x|z) + beta (log p(z) - log q(z|x)); with iw = 1, recon + beta * KL."""
    model, x = make_model_and_data(kwargs, mc_samples=mc, iw_samples=iw)
    noise = next_noise(model, mc * iw * BATCH)
    loss, terms = model.training_objective(x, beta=beta)
    samples = [numpy_terms(model, x, sample_noise(noise, s)) for s in range(mc * iw)]
    nelbo = np.stack([s[0] for s in samples])
    if iw == 1:
        log_px = np.stack([s[1] for s in samples])
        want = (-log_px + beta * (nelbo + log_px)).mean(0)  # nelbo + log_px is the KL
    else:
        weights = np.stack([s[1] + beta * s[2] for s in samples]).reshape(mc, iw, BATCH)
        want = -np_logmeanexp(weights, 1).mean(0)
    np.testing.assert_allclose(loss, want, rtol=1e-4)
    np.testing.assert_allclose(terms["nelbo"], nelbo.mean(0), rtol=1e-4)
