"""ConvLadderVAE: its bound equals an independent numpy model, its options change
what they promise, and it saves, exports, distributes and trains like LadderVAE.

The numpy model re-implements the convolutional ladder from the layers' weights:
'same' convolutions (stride 1 and 2) and stride-2 transposed convolutions written
as sums over kernel offsets, batch norm with moving statistics, ELU / swish,
gates, softplus variances, the precision-weighted merge, skip connections, the
learned top prior, centred zero padding and cropping, closed-form KL and the
Bernoulli / Gaussian log-likelihood. It borrows only the standard-normal noise,
drawn with the seeds the sampling layers hold.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lvae
from keras_lvae import objectives
from tests.helpers import softplus
from tests.models.test_elbo_reference import np_kl, np_logmeanexp, randomize_weights

BATCH = 6
SMALL = dict(latent_dims=(3, 2), hidden_dims=(6, 6), residual_blocks=2, downsample=(1, 1),
             seed=7)


# ------------------------------------------------------------ numpy model
def np_conv(x, kernel, bias, stride=1):
    """'same' convolution of [batch, H, W, C] with a [kh, kw, C, F] kernel (TF's padding:
    the total padding max((ceil(H/s) - 1) s + k - H, 0), the smaller half before)."""
    k = kernel.shape[0]
    pads = []
    for size in x.shape[1:3]:
        out = math.ceil(size / stride)
        total = max((out - 1) * stride + k - size, 0)
        pads.append((total // 2, total - total // 2))
    xp = np.pad(x, ((0, 0), *pads, (0, 0)))
    out_h, out_w = math.ceil(x.shape[1] / stride), math.ceil(x.shape[2] / stride)
    y = np.zeros((x.shape[0], out_h, out_w, kernel.shape[3]))
    for a in range(k):
        for b in range(k):
            window = xp[:, a:a + stride * out_h:stride, b:b + stride * out_w:stride, :]
            y += window @ kernel[a, b]
    return y + bias


def np_conv_transpose(x, kernel, bias):
    """Stride-2 'same' transposed convolution: each input pixel (i, j) adds
    x[i, j] @ kernel[a, b].T at output (2i + a - p, 2j + b - p), p the padding
    before of the stride-2 convolution it transposes; output size 2H x 2W."""
    k = kernel.shape[0]
    n, h, w, _ = x.shape
    total = max((h - 1) * 2 + k - 2 * h, 0)
    before = total // 2
    full = np.zeros((n, 2 * h + k, 2 * w + k, kernel.shape[2]))
    for a in range(k):
        for b in range(k):
            full[:, a:a + 2 * h:2, b:b + 2 * w:2, :] += x @ kernel[a, b].T
    return full[:, before:before + 2 * h, before:before + 2 * w, :] + bias


def np_batch_norm(norm, h):
    return (norm.gamma.numpy() * (h - norm.moving_mean.numpy())
            / np.sqrt(norm.moving_variance.numpy() + norm.epsilon) + norm.beta.numpy())


ACT = {
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
    "swish": lambda x: x / (1 + np.exp(-x)),
    "leaky_relu": lambda x: np.where(x >= 0, x, 0.1 * x),
}


def weights(conv):
    return conv.kernel.numpy().astype(np.float64), conv.bias.numpy().astype(np.float64)


def np_rung(rung, h):
    act = ACT[rung.activation]
    if rung.project_input:
        h = np_conv(h, *weights(rung.input_conv))
    for b in range(rung.num_blocks):
        if b < rung.resample_steps:
            conv = rung.resample_convs[b]
            h = (np_conv(h, *weights(conv), stride=2) if rung.resample == "down"
                 else np_conv_transpose(h, *weights(conv)))
        r = h
        for k in (2 * b, 2 * b + 1):
            if rung.batch_norm:
                r = np_batch_norm(rung.norms[k], r)
            r = np_conv(act(r), *weights(rung.residual_convs[k]))
        if rung.gated:
            value, gate = np.split(np_conv(r, *weights(rung.gates[b])), 2, axis=-1)
            r = act(value) / (1 + np.exp(-gate))
        h = h + r
    return h


def np_head(head, h):
    mean, pre = np.split(np_conv(h, *weights(head.dense)), 2, axis=-1)
    return mean, softplus(pre) + head.variance_floor


def np_log_normal(z, mean, var):
    values = -0.5 * (np.log(2 * np.pi * var) + (z - mean) ** 2 / var)
    return np.broadcast_to(values, np.broadcast_shapes(values.shape, z.shape)).reshape(
        len(z), -1).sum(-1)


def flat_sum(values):
    return values.reshape(len(values), -1).sum(-1)


def numpy_terms(model, x, noise):
    """Per-example (negative ELBO, log p(x|z), log p(z) - log q(z|x)); noise[i] is the
    standard-normal draw of layer i (zeros: every z at its posterior mean)."""
    x = x.reshape(len(x), *model.layout).astype(np.float64)
    height, width = x.shape[1:3]
    factor = 2 ** sum(model.downsample)
    pads = [((-s) % factor // 2, (-s) % factor - (-s) % factor // 2) for s in (height, width)]
    padded = np.pad(x, ((0, 0), *pads, (0, 0)))
    num = model.num_layers
    z, q, p = [None] * num, [None] * num, [None] * num
    if model.learn_top_prior:
        p[-1] = (model.top_prior_mean.numpy()[None].astype(np.float64),
                 np.exp(model.top_prior_log_variance.numpy()[None].astype(np.float64)))
    else:
        p[-1] = (0.0, 1.0)

    def prior(i, z_above, above):
        inputs = np.concatenate([z_above, above], -1) if model.skip and above is not None \
            else z_above
        h = np_rung(model.decoder_blocks[i], inputs)
        return np_head(model.decoder_heads[i], h), h

    if model.inference == "bottom_up":
        h = padded
        for i in range(num):
            q[i] = np_head(model.encoder_heads[i], np_rung(model.encoder_blocks[i], h))
            z[i] = h = q[i][0] + np.sqrt(q[i][1]) * noise[i]
        above = None
        for i in reversed(range(num - 1)):
            p[i], above = prior(i, z[i + 1], above)
    else:
        d, bottom_up = padded, []
        for i in range(num):
            d = np_rung(model.encoder_blocks[i], d)
            bottom_up.append(np_head(model.encoder_heads[i], d))
        above = None
        for i in reversed(range(num)):
            if i == num - 1:
                q[i] = bottom_up[i]
            else:
                p[i], above = prior(i, z[i + 1], above)
                (mh, vh), (mt, vt) = bottom_up[i], p[i]
                var = 1.0 / (1.0 / vh + 1.0 / vt)
                q[i] = ((mh / vh + mt / vt) * var, var)
            z[i] = q[i][0] + np.sqrt(q[i][1]) * noise[i]

    kl = 0.0
    for i in range(num):
        if model.inference == "ladder" or i == num - 1:
            kl = kl + flat_sum(np.broadcast_to(
                np_kl_elementwise(*q[i], *p[i]), z[i].shape))
        else:
            kl = kl + np_log_normal(z[i], *q[i]) - np_log_normal(z[i], *p[i])

    h = np_rung(model.output_block, z[0])
    (top, _), (left, _) = pads

    def crop(t):
        return t[:, top:top + height, left:left + width, :]

    if model.likelihood == "bernoulli":
        logits = crop(np_conv(h, *weights(model.output_head)))
        log_px = flat_sum(x * logits - softplus(logits))
    elif model.likelihood == "logistic_mixture":
        from tests.test_logistic_mixture import np_log_prob

        params = crop(np_conv(h, *weights(model.output_head)))
        channels = x.shape[-1]
        per_pixel = np_log_prob(np.round(x * 255).reshape(-1, channels),
                                params.reshape(-1, params.shape[-1]),
                                model.mixture_components, model.coupled_means)
        log_px = per_pixel.reshape(len(x), -1).sum(-1)
    else:
        mean, var = np_head(model.output_head, h)
        log_px = np_log_normal(x, crop(mean), crop(var))
    log_prior_ratio = sum(np_log_normal(z[i], *p[i]) - np_log_normal(z[i], *q[i])
                          for i in range(num))
    return -log_px + kl, log_px, log_prior_ratio


def np_kl_elementwise(mq, vq, mp, vp):
    return 0.5 * (np.log(vp / vq) + (vq + (mq - mp) ** 2) / vp - 1.0)


def test_np_kl_elementwise_sums_to_the_shared_reference():
    rng = np.random.default_rng(0)
    mq, mp = rng.normal(size=(2, 2, 5)), rng.normal(size=(2, 2, 5))
    vq, vp = rng.uniform(0.5, 2, size=(2, 2, 5)), rng.uniform(0.5, 2, size=(2, 2, 5))
    np.testing.assert_allclose(np_kl_elementwise(mq, vq, mp, vp).sum(-1), np_kl(mq, vq, mp, vp))


# --------------------------------------------------------------- fixtures
CASES = [
    dict(),
    dict(skip=True, learn_top_prior=True, gated=True, activation="swish"),
    dict(inference="bottom_up", batch_norm=False, activation="leaky_relu"),
    dict(likelihood="gaussian", downsample=(2, 0), skip=True),
    dict(likelihood="logistic_mixture", mixture_components=3, skip=True),
    dict(latent_dims=(3, 2, 2), hidden_dims=(6, 4, 4), downsample=(1, 0, 1), gated=True,
         skip=True, learn_top_prior=True),
]


def make_model_and_data(kwargs, shape=(7, 6), **extra):
    rng = np.random.default_rng(1)
    model = keras_lvae.ConvLadderVAE(**{**SMALL, **kwargs, **extra})
    model.compile()
    x = (rng.random((BATCH, *shape)) < 0.4).astype("float32")
    if model.likelihood == "gaussian":
        x = rng.random((BATCH, *shape)).astype("float32")
    if model.likelihood == "logistic_mixture":  # 8-bit colour images, as v / 255
        x = (rng.integers(0, 256, size=(BATCH, *shape, 3)) / 255).astype("float32")
    model.build(x.shape)
    randomize_weights(model, rng)
    for var in model.weights:  # kernels of [kh, kw, in, out]: scale by the fan-in
        if var.path.endswith("kernel") and len(var.shape) == 4:
            fan_in = var.shape[0] * var.shape[1] * min(var.shape[2], var.shape[3])
            var.assign(rng.normal(scale=1.0 / np.sqrt(fan_in), size=tuple(var.shape)))
    return model, x


def next_noise(model, rows):
    seeds = [tf.cast(head.seed_generator.state, tf.int32) for head in model.encoder_heads]
    return [tf.random.stateless_normal((rows, *shape), seed=s).numpy().astype(np.float64)
            for s, shape in zip(seeds, model.latent_shapes)]


def ids(kwargs):
    return "-".join(f"{k}={v}" for k, v in kwargs.items()) or "default"


# ------------------------------------------------------------------ maths
@pytest.mark.parametrize("kwargs", CASES, ids=ids)
def test_log_weight_at_posterior_means_equals_numpy(kwargs):
    """log w = log p(x, z) - log q(z | x) with every z at its posterior mean."""
    model, x = make_model_and_data(kwargs)
    trace = model.posterior_trace(model.prepare(x), training=False, sample=False)
    log_px = model.pixel_likelihood.log_prob(model.prepare(x), model.output_params(trace[0]["z"]))
    got = log_px + objectives.log_prior_ratio(trace)
    zeros = [np.zeros((BATCH, *s)) for s in model.latent_shapes]
    _, np_log_px, np_ratio = numpy_terms(model, x, zeros)
    np.testing.assert_allclose(got, np_log_px + np_ratio, rtol=2e-5, atol=1e-3)


@pytest.mark.parametrize("kwargs", CASES, ids=ids)
def test_reported_nelbo_equals_numpy_with_the_same_noise(kwargs):
    model, x = make_model_and_data(kwargs)
    noise = next_noise(model, BATCH)
    reported = model.evaluate(x, batch_size=BATCH, return_dict=True, verbose=0)
    reference, _, _ = numpy_terms(model, x, noise)
    assert reported["nelbo"] == pytest.approx(reference.mean(), rel=2e-5)


@pytest.mark.parametrize("kwargs", CASES[:2], ids=ids)
def test_importance_weighted_bound_equals_numpy_and_grows_with_k(kwargs):
    k = 4
    model, x = make_model_and_data(kwargs)
    noise = next_noise(model, k * BATCH)
    bound = keras_lvae.log_likelihood(model, x, num_samples=k, chunk_size=k, batch_size=BATCH)
    log_w = np.stack([sum(numpy_terms(model, x, [n[s * BATCH:(s + 1) * BATCH] for n in noise])[1:])
                      for s in range(k)])
    np.testing.assert_allclose(bound, np_logmeanexp(log_w, 0), rtol=2e-5)
    # L_1 <= L_10 <= L_100 on the batch mean (the bound rises with k; here by nats).
    bounds = [keras_lvae.log_likelihood(model, x, num_samples=n, batch_size=BATCH).mean()
              for n in (1, 10, 100)]
    assert bounds[0] < bounds[1] < bounds[2]


def test_free_bits_loss_is_the_closed_form_and_nelbo_is_unchanged():
    """loss = recon + beta sum_i max(KL_i, lambda), per example; nelbo is the same
    with and without free bits."""
    lam, beta = 2.8, 0.7  # between the two layers' KLs of this model and data
    model, x = make_model_and_data(dict(), free_bits=lam)
    plain, _ = make_model_and_data(dict())
    plain.set_weights(model.get_weights())
    noise = next_noise(model, BATCH)
    loss, got = model.training_objective(x, beta=beta)
    nelbo, log_px, _ = numpy_terms(model, x, noise)
    layer_kls = np.stack([np.asarray(k) for k in got["kl_layers"]])
    assert (layer_kls < lam).any() and (layer_kls > lam).any()  # both sides of the floor
    want = -log_px + beta * np.maximum(layer_kls, lam).sum(0)
    np.testing.assert_allclose(loss, want, rtol=2e-5)
    np.testing.assert_allclose(got["nelbo"], nelbo, rtol=2e-5)
    plain_loss, plain_terms = plain.training_objective(x, beta=beta)
    np.testing.assert_allclose(plain_terms["nelbo"], got["nelbo"], rtol=1e-6)
    assert np.all(np.asarray(loss) >= np.asarray(plain_loss) - 1e-4)


def test_free_bits_refuses_importance_weighted_training():
    model, x = make_model_and_data(dict(), free_bits=0.5, iw_samples=3)
    with pytest.raises(ValueError, match="free_bits=0.5"):
        model.training_objective(x)


# ---------------------------------------------------------- parameter counts
def count(model, shape=(1, 8, 8)):
    model.build(shape)
    return model.count_params()


def test_skip_connections_add_exactly_the_input_kernels_they_need():
    """With 3 layers, only the rung under the top one gets extra input channels: the
    features of the block above (hidden_dims[1]) into a k x k conv of hidden_dims[0]."""
    base = dict(latent_dims=(3, 2, 2), hidden_dims=(6, 5, 4), downsample=(1, 1, 1),
                residual_blocks=1, kernel_size=3)
    extra = count(keras_lvae.ConvLadderVAE(skip=True, **base)) - count(
        keras_lvae.ConvLadderVAE(**base))
    assert extra == 3 * 3 * 5 * 6


def test_mlp_skip_connections_add_exactly_the_dense_inputs_they_need():
    base = dict(latent_dims=(4, 3, 2), hidden_dims=(16, 12, 8))
    extra = count(keras_lvae.LadderVAE(skip=True, **base), (1, 10)) - count(
        keras_lvae.LadderVAE(**base), (1, 10))
    assert extra == 12 * 16


@pytest.mark.parametrize("make, shape, top_units", [
    (lambda **k: keras_lvae.ConvLadderVAE(**SMALL, **k), (1, 8, 8), 2 * 2 * 2),
    (lambda **k: keras_lvae.LadderVAE(latent_dims=(4, 3), hidden_dims=(8, 6), **k), (1, 10), 3),
])
def test_learned_top_prior_adds_a_mean_and_log_variance_per_top_unit(make, shape, top_units):
    assert count(make(learn_top_prior=True), shape) - count(make(), shape) == 2 * top_units


@pytest.mark.slow  # over 10 s
def test_learned_top_prior_is_trained():
    model, x = make_model_and_data(dict(), learn_top_prior=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = model.top_prior_mean.numpy().copy()
    model.fit(x, batch_size=BATCH, epochs=1, verbose=0)
    assert not np.allclose(model.top_prior_mean.numpy(), before)


# ------------------------------------------------------------ bad arguments
@pytest.mark.parametrize("kwargs, match", [
    (dict(downsample=(1,)), "downsample"),
    (dict(downsample=(3, 1)), "downsample"),
    (dict(activation="tanh"), "activation"),
    (dict(kernel_size=2), "kernel_size"),
    (dict(dense_per_block=2), "residual_blocks"),
    (dict(row_halves=True), "`row_halves`.*MLP rungs"),
    (dict(free_bits=-1.0), "free_bits"),
])
def test_bad_arguments_are_refused_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        keras_lvae.ConvLadderVAE(**{**SMALL, **kwargs})


def test_flat_inputs_are_refused_with_the_expected_shape():
    model = keras_lvae.ConvLadderVAE(**SMALL)
    with pytest.raises(ValueError, match=r"\(batch, height, width\)"):
        model(np.zeros((2, 49), "float32"))


# ---------------------------------------------------- saving, export, precision
def trained_small_model(**kwargs):
    """A conv model after a few steps (non-trivial batch-norm statistics)."""
    model, x = make_model_and_data(dict(skip=True, learn_top_prior=True, gated=True), **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(x, batch_size=3, epochs=1, verbose=0)
    return model, x


@pytest.mark.slow  # over 10 s
def test_keras_file_round_trip_gives_identical_outputs(tmp_path):
    model, x = trained_small_model()
    model.save(tmp_path / "conv.keras")
    loaded = keras.saving.load_model(tmp_path / "conv.keras")
    assert type(loaded) is keras_lvae.ConvLadderVAE
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded(x), model(x))
    seed = tf.constant([1, 2])
    np.testing.assert_array_equal(loaded.elbo_terms(x, seed=seed)["nelbo"],
                                  model.elbo_terms(x, seed=seed)["nelbo"])
    np.testing.assert_array_equal(loaded.generate(4, seed=3), model.generate(4, seed=3))


@pytest.mark.slow  # over 10 s
def test_saved_model_signatures_equal_the_keras_model(tmp_path):
    from keras_lvae.export import export_saved_model, score_function
    model, x = trained_small_model()
    loaded = tf.saved_model.load(export_saved_model(model, tmp_path / "conv"))
    s = loaded.signatures
    np.testing.assert_allclose(s["reconstruct"](images=tf.constant(x))["reconstruction"],
                               model(x), rtol=1e-5, atol=1e-6)
    z = np.random.default_rng(0).normal(size=(2, *model.latent_shapes[0])).astype("float32")
    np.testing.assert_allclose(s["decode"](z_1=tf.constant(z))["images"], model.decode(z),
                               rtol=1e-5, atol=1e-6)
    for i, (mean, _) in enumerate(model.encode(x)):
        np.testing.assert_allclose(s["encode"](images=tf.constant(x))[f"mean_{i + 1}"], mean,
                                   rtol=1e-5, atol=1e-6)
    seed = tf.constant([5, 6])
    got = s["score"](images=tf.constant(x), num_samples=tf.constant(7), seed=seed)
    want = score_function(model)(tf.constant(x), tf.constant(7), seed)
    np.testing.assert_allclose(got["log_likelihood"], want["log_likelihood"], rtol=1e-5)
    generated = s["generate"](num_samples=tf.constant(3), seed=seed)["images"]
    np.testing.assert_allclose(generated, model.generate_stateless(3, seed), rtol=1e-5,
                               atol=1e-6)
    for layer in range(1, model.num_layers + 1):  # feature-map latents, every layer's branch
        path = s["interpolate"](images_a=tf.constant(x[:2]), images_b=tf.constant(x[2:4]),
                                steps=tf.constant(4), layer=tf.constant(layer))["images"]
        np.testing.assert_allclose(path, model.interpolate(x[:2], x[2:4], steps=4, layer=layer),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # over 10 s
def test_xla_and_bfloat16_training_steps_are_finite():
    _, x = make_model_and_data(dict())
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model = keras_lvae.ConvLadderVAE(**SMALL, skip=True, gated=True, learn_top_prior=True)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True)
    history = model.fit(x, batch_size=3, epochs=2, verbose=0).history
    assert np.isfinite(history["loss"]).all()
    conv = model.encoder_blocks[0].residual_convs[0]
    assert conv.compute_dtype == "bfloat16" and conv.kernel.dtype == "float32"


# ------------------------------------------------------------ layer figure
@pytest.mark.parametrize("make, shape", [
    (lambda: keras_lvae.ConvLadderVAE(**SMALL, skip=True), (7, 6)),
    (lambda: keras_lvae.LadderVAE(latent_dims=(4, 3, 2), hidden_dims=(16, 12, 8), seed=1,
                                  batch_norm=False),  # the heads then have biases
     (7, 6)),
])
def test_layer_variations_fix_the_layers_above(make, shape):
    """Resampling z_1 with a (near) zero-variance p(z_1 | z_2) changes nothing within a
    row, while rows (different z_2) differ; the top layer's images are all different."""
    model = make()
    model.build((None, *shape))
    for var in model.weights:
        if var.path.endswith("bias") or "beta" in var.path:
            var.assign(np.random.default_rng(0).normal(size=tuple(var.shape)))
    head = model.decoder_heads[0].dense
    units = model.latent_dims[0]
    bias = head.bias.numpy()
    bias[units:] = -60.0  # softplus(-60) ~ 0: p(z_1 | z_2) has only the floor variance
    head.bias.assign(bias)
    kernel = head.kernel.numpy()
    kernel[..., units:] = 0.0
    head.kernel.assign(kernel)
    images = np.asarray(model.layer_variations(1, rows=3, columns=4, seed=5))
    assert images.shape == (3, 4, *shape)
    assert np.abs(images - images[:, :1]).max() < 1e-2  # columns: the same image
    assert np.abs(images[0] - images[1]).max() > 1e-2   # rows: different z_2
    top = np.asarray(model.layer_variations(model.num_layers, rows=2, columns=3, seed=5))
    assert np.abs(top[0, 0] - top[0, 1]).max() > 1e-2
    np.testing.assert_array_equal(model.layer_variations(1, 3, 4, seed=5), images)
    with pytest.raises(ValueError, match="`layer`"):
        model.layer_variations(model.num_layers + 1)


def test_latent_diagnostics_of_feature_maps_per_unit_and_channel():
    model, x = make_model_and_data(dict())
    layers = keras_lvae.latent_diagnostics(model, x, batch_size=BATCH)
    for layer, shape in zip(layers, model.latent_shapes):
        assert layer["kl_per_unit"].shape == layer["posterior_mean_variance"].shape == shape
        np.testing.assert_allclose(layer["kl_per_channel"], layer["kl_per_unit"].sum((0, 1)))
        assert layer["kl"] == pytest.approx(layer["kl_per_unit"].sum())
        active = (layer["kl_per_unit"] > 0.01).reshape(-1, shape[-1]).any(0).sum()
        assert layer["active_channels"] == active


# ------------------------------------------------------------ real data
@pytest.mark.slow  # about a minute
def test_small_conv_recipe_learns_static_mnist(binarized_mnist_dir):
    """300 steps of 64 images of `conv_static_mnist_small.py` take the validation negative
    ELBO from ~545 nats (untrained) to below 165 (measured: 156.4 on one core)."""
    from keras_lvae import config as config_lib, data, training
    from tests.conftest import REPO

    config = config_lib.load_recipe(REPO / "recipes" / "conv_static_mnist_small.py")
    folder = str(binarized_mnist_dir.parent)
    train = data.load_dataset("binarized_mnist", "train", batch_size=64, data_dir=folder,
                              seed=0).take(150)
    validation = data.load_dataset("binarized_mnist", "validation", batch_size=500,
                                   data_dir=folder).take(2)
    model = training.build_model(config, steps_per_epoch=150)
    training.compile_model(model, config, steps_per_epoch=150)
    history = model.fit(train, validation_data=validation, epochs=2, verbose=0).history
    assert history["val_nelbo"][-1] < 165, history["val_nelbo"]


@pytest.mark.slow  # over 10 s
@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_colour_model_trains_with_xla_and_mixed_precision(policy):
    """A tiny 8-bit colour model (logistic mixture, coupled means) takes a few steps under
    jit_compile=True: finite losses that go down; its mean image and samples are images."""
    x = (np.random.default_rng(2).integers(0, 256, size=(24, 8, 8, 3)) / 255).astype("float32")
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        model = keras_lvae.ConvLadderVAE(**SMALL, likelihood="logistic_mixture",
                                         mixture_components=4, skip=True)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=True)
    history = model.fit(x, batch_size=8, epochs=4, verbose=0).history
    assert np.isfinite(history["loss"]).all() and history["loss"][-1] < history["loss"][0]
    for images in (model(x[:2]), model.generate(3, seed=1)):
        images = np.asarray(images)
        assert images.shape[1:] == (8, 8, 3) and images.min() >= 0 and images.max() <= 1
    with pytest.raises(ValueError, match="likelihood"):
        keras_lvae.LadderVAE(latent_dims=(2,), hidden_dims=(4,), likelihood="logistic_mixture")


@pytest.mark.slow  # over 10 s
def test_colour_models_report_bits_per_dimension(tmp_path):
    """bpd = -nats / (H W C ln 2): in bound_report and the logged metrics, on a constructed
    conversion and on a tiny colour model (the export's: the next test)."""
    from keras_lvae.densities import bits_per_dim

    assert bits_per_dim(-2 * 3 * 4 * math.log(2) * 5.0, 2 * 3 * 4) == pytest.approx(5.0)
    model, x = make_model_and_data(dict(likelihood="logistic_mixture", mixture_components=2))
    report = keras_lvae.bound_report(model, x, num_samples=3, batch_size=BATCH)
    dims = 7 * 6 * 3
    assert report["bits_per_dim"]["L_k"]["mean"] == pytest.approx(
        -report["L_k"]["mean"] / (dims * math.log(2)), rel=1e-6)
    logs = model.evaluate(x, batch_size=BATCH, return_dict=True, verbose=0)
    assert logs["bits_per_dim"] == pytest.approx(logs["nelbo"] / (dims * math.log(2)), rel=1e-5)


@pytest.mark.slow  # over 10 s
def test_a_colour_model_serves_uint8_images_and_scores_in_bits_per_dim(tmp_path):
    """The SavedModel of an 8-bit model takes and returns uint8 images; `score` equals the
    Python score and adds bits per dimension; `score_saved_model` sends v / 255 as v."""
    from keras_lvae.densities import bits_per_dim
    from keras_lvae.export import export_saved_model, score_function
    from keras_lvae.saved_model_client import score_saved_model

    model, x = make_model_and_data(dict(likelihood="logistic_mixture", mixture_components=2),
                                   shape=(4, 4))
    loaded = tf.saved_model.load(export_saved_model(model, tmp_path / "colour"))
    s = loaded.signatures
    levels = np.round(x * 255).astype(np.uint8)
    assert s["score"].structured_input_signature[1]["images"].dtype == tf.uint8
    seed = tf.constant([5, 6])
    got = s["score"](images=tf.constant(levels), num_samples=tf.constant(3), seed=seed)
    want = score_function(model)(tf.constant(levels), tf.constant(3), seed)
    np.testing.assert_allclose(got["log_likelihood"], want["log_likelihood"], rtol=1e-5)
    np.testing.assert_allclose(got["bits_per_dim"],
                               -got["log_likelihood"].numpy() / (4 * 4 * 3 * np.log(2)), rtol=1e-6)
    np.testing.assert_allclose(got["bits_per_dim"], bits_per_dim(got["log_likelihood"], 48),
                               rtol=1e-6)
    reconstruction = s["reconstruct"](images=tf.constant(levels))["reconstruction"]
    assert reconstruction.dtype == tf.uint8
    np.testing.assert_allclose(reconstruction.numpy(), np.round(model(x).numpy() * 255), atol=1)
    generated = s["generate"](num_samples=tf.constant(2), seed=seed)["images"]
    assert generated.dtype == tf.uint8 and generated.shape == (2, 4, 4, 3)
    path = s["interpolate"](images_a=tf.constant(levels[:1]), images_b=tf.constant(levels[1:2]),
                            steps=tf.constant(3), layer=tf.constant(1))["images"]
    assert path.dtype == tf.uint8 and path.shape == (1, 3, 4, 4, 3)
    np.testing.assert_allclose(path.numpy(), np.round(model.interpolate(
        x[:1], x[1:2], steps=3, layer=1).numpy() * 255), atol=1)
    # The library's helper sends float images in [0, 1] as the 8-bit values they are.
    _, l_k = score_saved_model(tmp_path / "colour" / "1", x, 3, batch_size=len(x), seed=5)
    np.testing.assert_allclose(l_k, s["score"](images=tf.constant(levels), num_samples=tf.constant(3),
                                                seed=tf.constant([5, 0]))["log_likelihood"], rtol=1e-6)
    with pytest.raises(ValueError, match=r"expected values v / 255 for integers v"):
        score_saved_model(tmp_path / "colour" / "1", x + 0.001, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"Invalid input `images`: expected "
                                                             r"shape \[batch, 4, 4, 3\]"):
        s["score"](images=tf.constant(levels[..., :2]), num_samples=tf.constant(3), seed=seed)
    # The loaded module's functions take uint8 (numpy or tensors, Python ints for counts)
    # and refuse float images by name instead of printing them or truncating them to 0.
    np.testing.assert_allclose(
        loaded.score(levels, 3, [5, 6])["log_likelihood"], got["log_likelihood"], rtol=1e-6)
    for images in (x, tf.constant(x)):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"Invalid input `images`: this model codes 8-bit images: expected"
                                 r" uint8 values in \[0, 255\].*received float32") as error:
            loaded.score(images, 3, [5, 6])
        assert len(str(error.value)) < 1000  # not the array
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"Invalid input `images_a`"):
        loaded.interpolate(x[:1], x[1:2], 3, 1)
