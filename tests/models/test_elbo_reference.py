"""The ELBO that `test_step` reports equals an independent numpy computation.

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


def numpy_nelbo(model, x, noise):
    """Per-example negative ELBO; noise[i] is the standard-normal draw of layer i."""
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
    return -log_px + kl


CASES = [
    dict(inference="ladder"),
    dict(inference="ladder", share_top_down=False),
    dict(inference="bottom_up"),
    dict(inference="ladder", likelihood="gaussian"),
    dict(inference="ladder", batch_norm=False),
    dict(inference="bottom_up", batch_norm=False, likelihood="gaussian"),
]


@pytest.mark.parametrize("kwargs", CASES, ids=lambda k: "-".join(f"{v}" for v in k.values()))
def test_reported_nelbo_equals_numpy_reference(kwargs):
    rng = np.random.default_rng(0)
    model = keras_lvae.LadderVAE(latent_dims=(5, 4, 3), hidden_dims=(16, 12, 8), seed=11, **kwargs)
    model.compile()
    x = (rng.random((BATCH, 4, 5, 1)) < 0.4).astype("float32")
    if kwargs.get("likelihood") == "gaussian":
        x = rng.random((BATCH, 4, 5, 1)).astype("float32")
    model.build(x.shape)
    randomize_weights(model, rng)

    # The noise each sampling layer will draw in the next step, from its seed state.
    seeds = [tf.cast(head.seed_generator.state, tf.int32) for head in model.encoder_heads]
    noise = [tf.random.stateless_normal((BATCH, n), seed=s).numpy().astype(np.float64)
             for s, n in zip(seeds, model.latent_dims)]

    reported = model.evaluate(x, batch_size=BATCH, return_dict=True, verbose=0)
    reference = numpy_nelbo(model, x, noise)
    assert reported["nelbo"] == pytest.approx(reference.mean(), rel=1e-4)
    assert reported["loss"] == pytest.approx(reference.mean(), rel=1e-4)  # beta = 1 in test_step
    assert reported["beta"] == 1.0
    kl_sum = sum(reported[f"kl_layer_{i + 1}"] for i in range(model.num_layers))
    assert kl_sum == pytest.approx(reported["kl_loss"], rel=1e-5, abs=1e-5)
    assert reported["reconstruction_loss"] + reported["kl_loss"] == pytest.approx(
        reported["nelbo"], rel=1e-5)
