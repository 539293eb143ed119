"""A client of an exported version: what its `score` takes, and scoring images through it
with TensorFlow's SavedModel loader alone (what TF Serving would answer). The signatures
themselves are written by `keras_lvae.export`.
"""

import os

import numpy as np
import tensorflow as tf

from keras_lvae import _checks
from keras_lvae.evaluation import batches_of


def saved_model_inputs(path):
    """{name: tf.TensorSpec} of the export at `path`'s `score`: `images` ([None, H, W, C]
    or [None, D]; uint8 for a model of 8-bit data), `num_samples`, `seed`, and `labels`
    for a conditional model."""
    return tf.saved_model.load(os.fspath(path)).signatures["score"].structured_input_signature[1]


def score_saved_model(path, images, num_samples, *, batch_size=100, seed=0):
    """Per-example (L_1, L_k) in nats of `images` through an exported version's `score`.

    Loads the SavedModel at `path` with TensorFlow alone; batch j draws its samples with
    the seed `[seed, j]`. `images`: float32 [N, H, W, C] in [0, 1], or a batched
    tf.data pipeline of them (sent as 8-bit values to a model of 8-bit data); for a
    conditional export (its `score` takes `labels`), `(images, labels)` or a pipeline of
    such pairs. Returns two float64 numpy arrays of shape [N]: the one-sample ELBO and
    the importance-weighted L_k.
    """
    _checks.positive_int("num_samples", num_samples)
    _checks.positive_int("batch_size", batch_size)
    score = tf.saved_model.load(os.fspath(path)).signatures["score"]
    dtype = score.structured_input_signature[1]["images"].dtype
    conditional = "labels" in score.structured_input_signature[1]
    elbo, bound = [], []
    for j, (batch, labels) in enumerate(batches_of(images, batch_size, with_labels=True)):
        if conditional != (labels is not None):
            raise ValueError("Invalid value for argument `images`: "
                             + ("the model is conditional; expected (images, labels)"
                                if conditional else "the model takes no labels"))
        batch = batch.numpy()
        if dtype == tf.uint8:
            levels = np.round(batch * 255.0)
            if not np.array_equal(levels / 255.0, batch):
                raise ValueError("Invalid value for argument `images`: the model scores 8-bit "
                                 "images; expected values v / 255 for integers v in [0, 255].")
            batch = levels.astype(np.uint8)
        given = {} if labels is None else {"labels": tf.cast(labels, tf.int32)}
        out = score(images=tf.constant(batch, dtype),
                    num_samples=tf.constant(num_samples, tf.int32),
                    seed=tf.constant([seed, j], tf.int32), **given)
        elbo.append(out["elbo"].numpy())
        bound.append(out["log_likelihood"].numpy())
    if not bound:
        raise ValueError("Invalid value for argument `images`: expected at least one image, "
                         "received none.")
    return np.concatenate(elbo).astype(np.float64), np.concatenate(bound).astype(np.float64)
