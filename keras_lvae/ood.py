"""Out-of-distribution scores of a ladder, and how well they separate two datasets.

A likelihood model's L_k is a poor out-of-distribution score: models of one image set
give higher likelihood to simpler images of another (Nalisnick et al., ICLR 2019).
Havtorn et al. compare L_k with L^{>k}, the bound whose k lowest latent layers are
drawn from the conditional prior p(z_i | z_{>i}) instead of the posterior: the
likelihood ratio LLR^{>k} = L - L^{>k} measures how well the upper (semantic) layers
explain the input, and is large for inputs unlike the training data.

Reference: Havtorn, Frellsen, Hauberg and Maaløe, "Hierarchical VAEs Know What They
Don't Know", ICML 2021 (github.com/JakobHavtorn/hvae-oodd), section 4.
"""

import math

import numpy as np
import tensorflow as tf

from keras_lvae import _checks, inputs
from keras_lvae.evaluation import batches_of, chunked_log_mean_exp, traced_per_model

DEFAULT_ROWS_PER_PASS = 4096
# The likelihood parameters one pass holds over every bound's p(x | z_1): 2^25 float32
# values, 128 MiB (a 32 x 32 colour model with 10 logistics: 109 rows a pass).
PARAMETERS_PER_PASS = 1 << 25


def skip_bounds(model, x, num_samples, chunk, seed=None, ratios=None, labels=None):
    """[L_S, then L_S^{>k} for each k in `ratios` (default 1 ... L-1)] of x, shape
    [1 + len(ratios), batch], S = `num_samples` drawn in passes of `chunk` that every
    bound shares (`LadderVAE.skip_log_weights`). With an int32[2] `seed` pass j draws
    statelessly with `fold_in(seed, j)` (the served `anomaly_score`). `labels`: a
    conditional model's, [batch]."""
    fold = tf.random.experimental.stateless_fold_in
    return chunked_log_mean_exp(
        lambda j: model.skip_log_weights(x, chunk, None if seed is None else fold(seed, j),
                                         ratios, labels),
        num_samples, chunk)


def rows_per_pass(model, num_bounds):
    """Rows (examples x samples) of one pass: `DEFAULT_ROWS_PER_PASS`, fewer when the
    `num_bounds` bounds' p(x | z_1) parameters would exceed `PARAMETERS_PER_PASS`.

    Example:
    >>> import keras_lvae
    >>> model = keras_lvae.LadderVAE(latent_dims=(3, 2), hidden_dims=(8, 4), seed=1)
    >>> _ = model(np.zeros((1, 28, 28, 1), "float32"))
    >>> rows_per_pass(model, 2)  # 2 x 784 parameters a row: the default
    4096
    """
    per_row = math.prod(model.layout[:-1]) * model.pixel_likelihood.num_parameters()
    return max(1, min(DEFAULT_ROWS_PER_PASS, PARAMETERS_PER_PASS // (num_bounds * per_row)))


def _bounds_function(model, ratios):
    """`skip_bounds` of (x, S, chunk) for the tuple `ratios`, traced once per model."""
    return traced_per_model(model, ("ood_scores", ratios), lambda model_ref: tf.function(
        lambda x, num_samples, chunk: skip_bounds(model_ref(), x, num_samples, chunk,
                                                  ratios=ratios),
        reduce_retracing=True))


def ood_scores(model, data, num_samples=100, *, batch_size=100, ratios=None):
    """Per-example out-of-distribution scores, each oriented so that higher is more unusual.

    Args:
        model: a built `LadderVAE` or `ConvLadderVAE` with ladder inference (use its
            moving averages first, `model.use_ema_weights()`, if it has them).
        data: images as `fit` takes them: an array or a batched tf.data.Dataset.
        num_samples: importance samples S of each bound.
        batch_size: examples per batch when `data` is an array. A pass holds at
            most 4,096 rows (examples x samples) and computes every bound's p(x | z_1)
            on them; for colour images fewer, so that those parameters stay within
            `PARAMETERS_PER_PASS` (128 MiB; `rows_per_pass`).
        ratios: the k of each `llr>k` to compute, from 1 to L-1 (default: all). The
            bounds share their posterior samples, so `llr>k` costs the k lowest
            prior layers and p(x | z_1) beyond L_S: `ratios=(1,)` is the cheapest.

    Returns:
        A dict of numpy float64 arrays [num_examples]: `nll` (-L_S, the plain
        likelihood's score) and `llr>k` for each k (L_S - L_S^{>k}, nats).
        Havtorn et al. find the ratio of the lowest layer (`llr>1` for their models)
        the best single score; the report shows every k.

    Example:
    >>> import numpy as np, keras_lvae
    >>> model = keras_lvae.LadderVAE(latent_dims=(3, 2), hidden_dims=(8, 4), seed=1)
    >>> x = (np.random.default_rng(0).random((5, 6)) < 0.5).astype("float32")
    >>> sorted(keras_lvae.ood_scores(model, x, num_samples=4))
    ['llr>1', 'nll']
    """
    _checks.positive_int("num_samples", num_samples)
    _checks.positive_int("batch_size", batch_size)
    if getattr(model, "inference", "ladder") != "ladder":
        raise ValueError("Invalid value for argument `model`: ood_scores needs a ladder "
                         "(inference='ladder'), received one with inference="
                         f"{model.inference!r}.")
    if model.num_layers < 2:
        raise ValueError("Invalid value for argument `model`: the likelihood ratios need at "
                         "least two latent layers, received a model with one.")
    ratios = _checks.layer_indices("ratios", ratios, 1, model.num_layers - 1)
    # Arrays are checked here, before any pass (datasets inside it, as `fit` does).
    inputs.check_values("data", data, model.likelihood_class)
    per_batch = []
    for batch in batches_of(data, batch_size):
        if not model.built:
            model(batch)
        limit = rows_per_pass(model, 1 + len(ratios))
        for start in range(0, int(batch.shape[0]), limit):  # examples of a pass at most
            part = batch[start:start + limit]
            chunk = max(1, min(num_samples, limit // int(part.shape[0])))
            bounds = _bounds_function(model, ratios)(part, tf.constant(num_samples),
                                                     tf.constant(chunk))
            per_batch.append(np.asarray(bounds, np.float64))
    if not per_batch:
        raise ValueError("Invalid value for argument `data`: expected at least one example, "
                         "received none.")
    bounds = np.concatenate(per_batch, axis=1)  # [1 + ratios, examples]: L_S, then L^{>k}
    scores = {"nll": -bounds[0]}
    for row, k in enumerate(ratios, start=1):
        scores[f"llr>{k}"] = bounds[0] - bounds[row]
    return scores


def _checked_scores(name, scores):
    if not isinstance(scores, dict) or not scores:
        raise ValueError(f"Invalid value for argument `{name}`: expected the dict of "
                         f"ood_scores, received {type(scores).__name__}.")
    return {key: np.asarray(value, np.float64).ravel() for key, value in scores.items()}


def separation(in_scores, out_scores):
    """AUROC, AUPRC (average precision) and FPR at 95% TPR of one score, out = positive.

    AUROC is the Mann-Whitney probability that an out example scores above an in
    example (ties count half); AUPRC the average precision over the thresholds at
    each positive; FPR95 the share of in examples at or above the highest threshold
    that still flags 95% of the out examples.

    Example:
    >>> separation(np.array([0.0, 1.0]), np.array([2.0, 3.0]))["auroc"]
    1.0
    """
    in_scores, out_scores = np.asarray(in_scores, np.float64), np.asarray(out_scores, np.float64)
    if in_scores.size == 0 or out_scores.size == 0:
        raise ValueError("Invalid value: expected at least one in- and one out-of-distribution "
                         f"score, received {in_scores.size} and {out_scores.size}.")
    values = np.concatenate([in_scores, out_scores])
    positive = np.concatenate([np.zeros(in_scores.size), np.ones(out_scores.size)])
    # AUROC from average ranks (ties share their mean rank).
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size)
    sorted_values = values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
    ends = np.r_[starts[1:], values.size]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    n_out, n_in = out_scores.size, in_scores.size
    auroc = (ranks[positive == 1].sum() - n_out * (n_out + 1) / 2.0) / (n_out * n_in)
    # Precision and recall at each distinct threshold, highest first.
    descending = np.argsort(-values, kind="mergesort")
    v, y = values[descending], positive[descending]
    last_of_tie = np.r_[np.flatnonzero(np.diff(v)), v.size - 1]
    true_positives = np.cumsum(y)[last_of_tie]
    flagged = last_of_tie + 1
    precision, recall = true_positives / flagged, true_positives / n_out
    auprc = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    at_95 = np.argmax(recall >= 0.95)
    fpr95 = float((flagged[at_95] - true_positives[at_95]) / n_in)
    return {"auroc": float(auroc), "auprc": auprc, "fpr95": fpr95}


def ood_report(scores_in, scores_out):
    """{score name: `separation`} of each score `ood_scores` gave for in- and
    out-of-distribution data (the out data are the positives).

    Example:
    >>> report = ood_report({"nll": np.array([1.0, 2.0])}, {"nll": np.array([3.0, 0.5])})
    >>> report["nll"]["auroc"]
    0.5
    """
    scores_in = _checked_scores("scores_in", scores_in)
    scores_out = _checked_scores("scores_out", scores_out)
    if set(scores_in) != set(scores_out):
        raise ValueError("Invalid value for argument `scores_out`: expected the scores of "
                         f"scores_in ({sorted(scores_in)}), received {sorted(scores_out)}.")
    return {name: separation(scores_in[name], scores_out[name]) for name in scores_in}
