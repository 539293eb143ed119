"""The importance-weighted log-likelihood bound L_k (Burda et al.), vectorised over samples,
`bound_report` (L_1 and L_k side by side), batches of any data a model takes, and the cache
of traced functions per model that every bound's pass uses (`traced_per_model`)."""

import math
import weakref

import numpy as np
import tensorflow as tf

from keras_lvae import _checks
from keras_lvae.inputs import labels_of, unpack
from keras_lvae.report_statistics import summarise_bounds

# Rows (examples x samples) evaluated in one pass. Measured on the paper's MNIST
# model (benchmarks/iw_throughput.py): 4,096 rows keep the activations near the
# CPU caches and are about 15% faster than 16,384; below 2,000 the matrix
# products get too small.
DEFAULT_ROWS_PER_PASS = 4096


def log_likelihood(model, data, num_samples=5000, *, batch_size=100, chunk_size=None,
                   jit_compile=False):
    """Importance-weighted bound L_k = log (1/k) sum_k p(x, z_k) / q(z_k | x), per example.

    L_1 is a one-sample ELBO estimate; L_k grows with k towards log p(x). The
    paper's test log-likelihood is L_5000. The k samples are drawn in chunks of
    `chunk_size` (each chunk one vectorised pass over `batch_size * chunk_size`
    rows) and combined with a running log-sum-exp, so memory does not grow with k.
    The ladder's bottom-up pass runs once per example and is shared by the samples.

    Args:
        model: a built `LadderVAE`.
        data: array of images, or a batched `tf.data.Dataset` of `x`, `(x, ...)`
            or `{"image": x, ...}`.
        num_samples: k, the number of importance samples per example.
        batch_size: examples per batch when `data` is an array.
        chunk_size: samples per pass; by default about 4,096 rows per pass.
        jit_compile: compile the pass with XLA.

    Returns:
        numpy float64 array of shape [num_examples], in nats.

    Example:
    >>> import numpy as np, keras_lvae
    >>> model = keras_lvae.LadderVAE(latent_dims=(2,), hidden_dims=(8,), seed=1)
    >>> x = (np.random.default_rng(0).random((5, 6)) < 0.5).astype("float32")
    >>> _ = model(x)
    >>> keras_lvae.log_likelihood(model, x, num_samples=10).shape
    (5,)
    """
    _checks.positive_int("num_samples", num_samples)
    _checks.positive_int("batch_size", batch_size)
    if chunk_size is not None:
        _checks.positive_int("chunk_size", chunk_size)

    bound_of_batch = _bound_function(model, jit_compile)
    results = []
    for batch, labels in model_batches(model, data, batch_size):
        if not model.built:
            model.build((None, *batch.shape[1:]))
        labels = model.prepare_labels(labels, batch)
        rows = int(batch.shape[0])
        chunk = chunk_size or _even_chunk(num_samples, DEFAULT_ROWS_PER_PASS // max(rows, 1))
        bound = bound_of_batch(batch, labels, tf.constant(num_samples), tf.constant(chunk))
        results.append(np.asarray(bound, dtype=np.float64))
    if not results:
        raise ValueError("Invalid value for argument `data`: expected at least one example, received none.")
    return np.concatenate(results)


def chunked_log_mean_exp(log_weights, num_samples, chunk_samples):
    """log (1/k) sum_s exp(w_s) over k = `num_samples` importance weights drawn in passes.

    The one definition of the chunked L_k, used by `log_likelihood` and the exported
    `score` signature. `log_weights(j)` returns the [chunk_samples, batch] log-weights
    of pass j; passes are combined by a running log-sum-exp (a `tf.while_loop`, so
    memory does not grow with k), and samples of the last pass beyond k are masked.
    `num_samples` and `chunk_samples` may be scalar tensors. Returns [batch] float32;
    log-weights [..., chunk_samples, batch] (several bounds at once) give [..., batch].
    """
    num_samples = tf.convert_to_tensor(num_samples, tf.int32)
    chunk_samples = tf.convert_to_tensor(chunk_samples, tf.int32)
    passes = (num_samples + chunk_samples - 1) // chunk_samples
    sample_index = tf.range(chunk_samples)[:, None]

    def one_pass(j, total):
        weights = log_weights(j)
        used = j * chunk_samples + sample_index < num_samples  # the last pass may overshoot k
        weights = tf.where(used, weights, -math.inf)
        return j + 1, tf.reduce_logsumexp(
            tf.stack([total, tf.reduce_logsumexp(weights, axis=-2)]), axis=0)

    first = log_weights(0)  # gives the batch's shape; usually the only pass
    start = tf.reduce_logsumexp(tf.where(sample_index < num_samples, first, -math.inf), axis=-2)
    _, total = tf.while_loop(lambda j, _: j < passes, one_pass, (tf.constant(1), start))
    return total - tf.math.log(tf.cast(num_samples, tf.float32))


# Traced functions per model and key, reused across calls: tracing the 5-layer model costs
# about a second, as much as 40,000 importance samples. The functions reach their model
# through a weak reference, so the cache keeps no model alive.
_TRACED = weakref.WeakKeyDictionary()


def traced_per_model(model, key, make):
    """The function `make(model_ref)` (a tf.function reaching the model through the weak
    reference `model_ref`) for (`model`, `key`), made once and reused; None of the cache
    keeps `model` alive.

    Example:
    >>> import keras_lvae
    >>> model = keras_lvae.LadderVAE(latent_dims=(2,), hidden_dims=(8,), seed=1)
    >>> first = traced_per_model(model, "doubled", lambda ref: tf.function(lambda x: 2 * x))
    >>> first is traced_per_model(model, "doubled", lambda ref: None)
    True
    """
    functions = _TRACED.setdefault(model, {})
    if key not in functions:
        functions[key] = make(weakref.ref(model))
    return functions[key]


def _bound_function(model, jit_compile):
    """L_k of a batch, (x, labels, k, chunk) -> [batch]: traced once per model."""
    return traced_per_model(model, ("log_likelihood", jit_compile),
                            lambda model_ref: _traced_bound(model_ref, jit_compile))


def _traced_bound(model_ref, jit_compile):
    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def bound(x, labels, num_samples, chunk):
        return chunked_log_mean_exp(
            lambda j: model_ref().importance_log_weights(x, num_samples=chunk, labels=labels),
            num_samples, chunk)

    return bound


def _even_chunk(num_samples, largest):
    """The smallest chunk that covers num_samples in as few passes as chunks of `largest`.

    Equal chunks mean less masked work in the last pass.
    """
    passes = math.ceil(num_samples / max(largest, 1))
    return math.ceil(num_samples / passes)


def bound_report(model, data, num_samples=5000, **options):
    """The paper's test numbers: L_1 and L_k side by side, with standard errors.

    Evaluates `log_likelihood` with one sample (the ELBO estimate) and with
    `num_samples`; `options` go to `log_likelihood`. Returns a dict:
    `num_examples`, `num_samples`, `L_1` and `L_k` (each `mean`, `standard_error`),
    `bound_gap` (mean and standard error of the per-example L_k - L_1) and the
    per-example arrays `per_example_L_1`, `per_example_L_k` (nats). For a model
    of 8-bit pixels (`likelihood="logistic_mixture"`) also `bits_per_dim`:
    {"L_1": ..., "L_k": ...}, each -L / (pixels x channels x ln 2) with its
    standard error, over values discretized to 0..255.

    Example:
    >>> import numpy as np, keras_lvae
    >>> model = keras_lvae.LadderVAE(latent_dims=(2,), hidden_dims=(8,), seed=1)
    >>> x = (np.random.default_rng(0).random((5, 6)) < 0.5).astype("float32")
    >>> report = bound_report(model, x, num_samples=10)
    >>> report["num_examples"], sorted(report["L_k"])
    (5, ['mean', 'standard_error'])
    """
    l_1 = log_likelihood(model, data, num_samples=1, **options)
    l_k = log_likelihood(model, data, num_samples=num_samples, **options)
    return summarise_bounds(l_1, l_k, num_samples,
                            model.num_features if model.likelihood_class.eight_bit else None)


def batches_of(data, batch_size, with_labels=False):
    """Yield float32 batches of images from an array, an `(x, y)` pair of arrays or a
    batched tf.data.Dataset; with `with_labels`, (images, labels or None) pairs."""
    if isinstance(data, tf.data.Dataset):
        for element in data:
            x = tf.convert_to_tensor(unpack(element), dtype=tf.float32)
            yield (x, labels_of(element)) if with_labels else x
        return
    x, y = np.asarray(unpack(data), dtype=np.float32), labels_of(data)
    for start in range(0, len(x), batch_size):
        batch = tf.convert_to_tensor(x[start:start + batch_size])
        if with_labels:
            yield batch, None if y is None else np.asarray(y)[start:start + batch_size]
        else:
            yield batch


def model_batches(model, data, batch_size):
    """`batches_of` with labels: (images, labels) pairs for a conditional model (labels
    None where the data hold none), (images, None) for an unconditional one, which
    ignores any labels the data hold."""
    conditional = getattr(model, "num_classes", None) is not None
    for batch, labels in batches_of(data, batch_size, with_labels=True):
        yield batch, labels if conditional else None


