"""Batch-norm statistics: the paper's evaluation protocol (population statistics from one
training-mode pass over the training set) and NVAE's readjustment for samples at a
temperature."""

import itertools

import numpy as np
import tensorflow as tf

from keras_lvae import _checks
from keras_lvae.evaluation import model_batches


def recompute_batch_norm_statistics(model, data, *, batch_size=256):
    """Replace every batch norm's moving averages by averages over `data`.

    The paper evaluates with population statistics from the training set; the
    moving averages (momentum 0.9) mostly reflect the last few dozen batches.
    This runs the training-mode pass (batch statistics, one posterior sample per
    example, as in `fit`) over `data` once and sets each layer's moving mean and
    variance to the example-weighted average of its batch means and variances.
    Use batches like the training ones (e.g. 256). It advances the sampling
    seeds. Returns the number of batch-norm layers updated. For a model
    trained with `ema_decay`, call `model.use_ema_weights()` first: the
    statistics are those of the weights the model holds.

    Example:
    >>> import numpy as np, keras_lvae
    >>> model = keras_lvae.LadderVAE(latent_dims=(2,), hidden_dims=(8,), seed=1)
    >>> x = (np.random.default_rng(0).random((40, 6)) < 0.5).astype("float32")
    >>> recompute_batch_norm_statistics(model, x, batch_size=20)
    5
    """
    _checks.positive_int("batch_size", batch_size)
    batches = model_batches(model, data, batch_size)
    first = next(batches, None)
    if first is None:
        raise ValueError("Invalid value for argument `data`: expected at least one example, received none.")
    if not model.built:
        model.build((None, *first[0].shape[1:]))
    step = tf.function(lambda x, y: model.elbo_terms(x, training=True, labels=y)["nelbo"])
    return _average_batch_statistics(model, lambda batch: step(*batch),
                                     itertools.chain([first], batches))


def readjust_batch_norm(model, temperature, *, batches=20, batch_size=256, seed=0):
    """Batch-norm statistics of the generative path from prior samples at `temperature`.

    Samples drawn at a temperature below 1 are less spread than the activations
    the moving averages were taken on, which blurs them; NVAE's readjustment
    replaces the statistics by those of `batches` x `batch_size` samples drawn at
    the temperature (one number, or one per layer, bottom to top), each batch
    norm's moving mean and variance being the average over the batches, as
    `recompute_batch_norm_statistics` does for data. Only layers on the
    generative path change; with ladder inference they are shared with the
    inference path, so use the readjusted model for sampling, not for bounds
    (`lvae sample --readjust-bn` loads a fresh copy). Returns the number of
    batch-norm layers visited.
    Reference: Vahdat & Kautz 2020 (NVAE), section 5 and `evaluate.py --readjust_bn`.

    Example:
    >>> import keras_lvae
    >>> model = keras_lvae.LadderVAE(latent_dims=(2,), hidden_dims=(8,), seed=1)
    >>> model.build((None, 6))
    >>> readjust_batch_norm(model, 0.5, batches=2, batch_size=10)
    5
    """
    _checks.positive_int("batches", batches)
    _checks.positive_int("batch_size", batch_size)
    model.require_built("readjust_batch_norm")
    temperatures = tf.constant(model.temperatures(temperature), tf.float32)
    layers = model.num_layers
    classes = getattr(model, "num_classes", None)  # a conditional model: every class alike
    labels = None if classes is None else tf.range(batch_size) % classes

    @tf.function
    def step(j):
        seed_j = tf.stack([tf.constant(seed, tf.int32), j])
        return model.generate_stateless(batch_size, seed_j,
                                        [temperatures[i] for i in range(layers)], training=True,
                                        labels=labels)

    return _average_batch_statistics(model, step, (tf.constant(j, tf.int32)
                                                   for j in range(batches)))


def _average_batch_statistics(model, step, inputs):
    """Set each batch norm's moving mean and variance to the row-weighted average of its
    batch statistics over `step(input)` for every input (a training-mode pass)."""
    norms = model.batch_norm_layers()
    frozen = [layer.name for layer in norms if not layer.trainable]
    if frozen:
        raise ValueError(f"Cannot recompute batch-norm statistics of frozen layers {frozen}: "
                         "set `trainable = True` on them first.")
    saved = [(layer.momentum, layer.moving_mean.numpy(), layer.moving_variance.numpy())
             for layer in norms]
    sums = [[np.zeros_like(mean, np.float64), np.zeros_like(mean, np.float64)]
            for _, mean, _ in saved]
    count = 0
    try:
        for layer in norms:  # momentum 0: after a step the moving stats are that batch's
            layer.momentum = 0.0
        for batch in inputs:
            rows = int(step(batch).shape[0])
            for layer, (mean_sum, variance_sum) in zip(norms, sums):
                mean_sum += rows * layer.moving_mean.numpy()
                variance_sum += rows * layer.moving_variance.numpy()
            count += rows
    except BaseException:
        for layer, (_, mean, variance) in zip(norms, saved):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)
        raise
    finally:
        for layer, (momentum, _, _) in zip(norms, saved):
            layer.momentum = momentum
    for layer, (mean_sum, variance_sum) in zip(norms, sums):
        layer.moving_mean.assign((mean_sum / count).astype("float32"))
        layer.moving_variance.assign((variance_sum / count).astype("float32"))
    return len(norms)
