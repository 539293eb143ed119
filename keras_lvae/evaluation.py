"""The importance-weighted log-likelihood bound (Burda et al.), vectorised over samples."""

import itertools
import math
import weakref

import numpy as np
import tensorflow as tf

from keras_lvae import _checks
from keras_lvae.densities import bits_per_dim
from keras_lvae.inputs import labels_of, unpack

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


# One traced function per (model, jit_compile), reused across calls: tracing the 5-layer
# model costs about a second, as much as 40,000 importance samples. The functions reach
# their model through a weak reference, so the cache keeps no model alive.
_BOUND_FUNCTIONS = weakref.WeakKeyDictionary()


def _bound_function(model, jit_compile):
    """L_k of a batch, (x, k, chunk) -> [batch]: a tf.function cached per model."""
    functions = _BOUND_FUNCTIONS.setdefault(model, {})
    if jit_compile not in functions:
        functions[jit_compile] = _traced_bound(weakref.ref(model), jit_compile)
    return functions[jit_compile]


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


def mean_and_standard_error(values):
    """Mean and its standard error, std(ddof=1) / sqrt(n) (0 for a single value).

    Example:
    >>> mean_and_standard_error([1.0, 2.0, 3.0, 4.0])
    (2.5, 0.6454972243679028)
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("Invalid value for argument `values`: expected at least one value, received none.")
    if values.size == 1:
        return float(values[0]), 0.0
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))


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


def summarise_accuracy(correct):
    """{"accuracy", "standard_error", "num_examples"} of per-example booleans."""
    accuracy, error = mean_and_standard_error(np.asarray(correct, np.float64))
    return {"accuracy": accuracy, "standard_error": error, "num_examples": int(np.size(correct))}


def summarise_bounds(l_1, l_k, num_samples, bits_per_dim_of=None):
    """`bound_report`'s dict from per-example L_1 and L_k (nats); with `bits_per_dim_of`
    (the dimensions of an 8-bit image) also their bits per dimension. `lvae evaluate`
    builds the same report from a SavedModel's scores."""
    l_1, l_k = np.asarray(l_1, np.float64), np.asarray(l_k, np.float64)

    def summary(values):
        mean, error = mean_and_standard_error(values)
        return dict(mean=mean, standard_error=error)

    report = dict(
        num_examples=int(l_k.size), num_samples=num_samples,
        L_1=summary(l_1), L_k=summary(l_k), bound_gap=summary(l_k - l_1),
        per_example_L_1=l_1, per_example_L_k=l_k,
    )
    if bits_per_dim_of:
        report["bits_per_dim"] = {name: summary(bits_per_dim(values, bits_per_dim_of))
                                  for name, values in (("L_1", l_1), ("L_k", l_k))}
    return report



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


# The paper's active-unit criterion: a unit is active when its KL exceeds this many nats.
ACTIVE_UNIT_THRESHOLD = 0.01


def latent_diagnostics(model, data, *, batch_size=100, threshold=ACTIVE_UNIT_THRESHOLD):
    """How much each stochastic layer is used, averaged over a dataset.

    Per layer (bottom to top) a dict with:
    - `kl_per_unit`: KL(q || p) per latent unit in nats, averaged over the data
      (the ELBO's own estimator, one posterior sample per example), in the
      latent's shape: [units], or [height, width, channels] for feature maps;
    - `kl`: their sum;
    - `kl_per_channel`: `kl_per_unit` summed over positions (the last axis
      kept; for vector latents the same as `kl_per_unit`);
    - `posterior_mean_variance`: Cov_x(E_q[u]), the variance over the data of
      each unit's posterior mean (from `model.encode`), in the latent's shape;
    - `active_units_kl`: units with KL > threshold (the paper's criterion);
    - `active_units_cov`: units with Cov_x(E_q[u]) > threshold (Burda et al.'s);
    - `active_channels`: channels with at least one unit of KL > threshold.

    Example:
    >>> import numpy as np, keras_lvae
    >>> model = keras_lvae.LadderVAE(latent_dims=(3, 2), hidden_dims=(8, 4), seed=1)
    >>> x = (np.random.default_rng(0).random((20, 6)) < 0.5).astype("float32")
    >>> [layer["kl_per_unit"].shape for layer in latent_diagnostics(model, x)]
    [(3,), (2,)]
    """
    _checks.positive_int("batch_size", batch_size)
    kl_sums, mean_sums, square_sums, count = None, None, None, 0
    for batch, labels in model_batches(model, data, batch_size):
        kls = [np.asarray(k, np.float64).sum(0) for k in model.kl_per_unit(batch, labels=labels)]
        means = [np.asarray(m, np.float64) for m, _ in model.encode(batch, labels)]
        if kl_sums is None:
            kl_sums = [np.zeros_like(k) for k in kls]
            mean_sums = [np.zeros(m.shape[1:]) for m in means]
            square_sums = [np.zeros(m.shape[1:]) for m in means]
        for i, (k, m) in enumerate(zip(kls, means)):
            kl_sums[i] += k
            mean_sums[i] += m.sum(0)
            square_sums[i] += (m**2).sum(0)
        count += int(batch.shape[0])
    if count == 0:
        raise ValueError("Invalid value for argument `data`: expected at least one example, received none.")
    layers = []
    for kl_sum, mean_sum, square_sum in zip(kl_sums, mean_sums, square_sums):
        kl = kl_sum / count
        variance = np.maximum(square_sum / count - (mean_sum / count) ** 2, 0.0)
        per_channel = kl.reshape(-1, kl.shape[-1])
        layers.append(dict(kl_per_unit=kl, kl=float(kl.sum()),
                           kl_per_channel=per_channel.sum(0),
                           posterior_mean_variance=variance,
                           active_units_kl=int((kl > threshold).sum()),
                           active_units_cov=int((variance > threshold).sum()),
                           active_channels=int((per_channel > threshold).any(0).sum())))
    return layers


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

