"""A class-conditional ladder as a generative classifier: p(y | x) by Bayes' rule.

p(y | x) = p(x | y) p(y) / sum_c p(x | c) p(c), with log p(x | y) estimated by the
importance-weighted bound L_k(x | y) (`keras_lvae.log_likelihood` with the label).

Reference: the generative classifiers of Kingma, Rezende, Mohamed and Welling,
"Semi-Supervised Learning with Deep Generative Models", NeurIPS 2014 (model M2).
"""

import numpy as np

from keras_lvae import evaluation


def classify(model, data, num_samples=100, *, class_prior=None, batch_size=100):
    """Class probabilities p(y | x) of a conditional model (`num_classes=N`), [examples, N].

    Args:
        model: a built conditional `LadderVAE` or `ConvLadderVAE`.
        data: images: an array, or a batched tf.data.Dataset of `x` or `(x, y)` (any
            labels it holds are not used).
        num_samples: importance samples k of each L_k(x | y); each class costs one
            `log_likelihood` pass.
        class_prior: p(y), N probabilities; by default uniform. Pass the training
            labels' frequencies, `np.bincount(y_train, minlength=N) / len(y_train)`.
        batch_size: examples per pass.

    Returns:
        numpy float64 [examples, N], rows summing to 1; `argmax(axis=1)` is the
        predicted class.

    Example:
    >>> import numpy as np, keras_lvae
    >>> model = keras_lvae.LadderVAE(latent_dims=(2, 2), hidden_dims=(8, 4), num_classes=3,
    ...                              seed=1)
    >>> x = (np.random.default_rng(0).random((5, 6)) < 0.5).astype("float32")
    >>> model.build((None, 6))
    >>> keras_lvae.classify(model, x, num_samples=4).shape
    (5, 3)
    """
    classes = getattr(model, "num_classes", None)
    if classes is None:
        raise ValueError("Invalid value for argument `model`: classify needs a conditional "
                         "model (num_classes=N), received one without labels.")
    if class_prior is None:
        log_prior = np.full(classes, -np.log(classes))
    else:
        prior = np.asarray(class_prior, np.float64)
        if (prior.shape != (classes,) or not np.isfinite(prior).all() or (prior < 0).any()
                or abs(prior.sum() - 1.0) > 1e-6):
            raise ValueError(f"Invalid value for argument `class_prior`: expected {classes} "
                             f"probabilities (>= 0, summing to 1), received {class_prior!r}.")
        with np.errstate(divide="ignore"):  # a class of probability 0 is never predicted
            log_prior = np.log(prior)
    x = np.concatenate([np.asarray(b) for b in evaluation.batches_of(data, batch_size)])
    logits = np.stack([
        evaluation.log_likelihood(model, (x, np.full(len(x), c, np.int32)), num_samples,
                                  batch_size=batch_size)
        for c in range(classes)], axis=1) + log_prior
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    return probabilities / probabilities.sum(axis=1, keepdims=True)
