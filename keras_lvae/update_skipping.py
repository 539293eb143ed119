"""Skipping updates whose gradient norm is far out of line (VDVAE's rule, made adaptive).

Reference: openai/vdvae `train.py` (an update is skipped when the global gradient
norm exceeds `skip_threshold`). A fixed threshold can stall a run for good once
norms grow past it; the adaptive rule compares each norm with a multiple of a
quantile of the last `window` norms (skipped ones included), so a lasting change
of scale raises the threshold within a few steps.
"""

import tensorflow as tf

# The quantile of recent norms the adaptive threshold multiplies.
ADAPTIVE_QUANTILE = 0.95
# The adaptive rule starts once this many norms (or the whole window, if smaller) are known.
MIN_HISTORY = 10


def adaptive_threshold(history, count, factor, quantile=ADAPTIVE_QUANTILE):
    """`factor` x the `quantile` of the norms recorded so far, or +inf before enough.

    Args:
        history: float32 [window] ring buffer of recent norms.
        count: int64 scalar, how many norms were ever recorded.
        factor: the multiple of the quantile.
        quantile: in (0, 1]; the inverted-CDF quantile (numpy's
            `method="inverted_cdf"`): the ceil(quantile * n)-th smallest of n norms.

    Example:
    >>> float(adaptive_threshold(tf.constant([4., 1., 3., 2.] + [0.] * 6), tf.constant(4, tf.int64),
    ...                          2.0, quantile=0.5))
    inf
    >>> float(adaptive_threshold(tf.range(1., 11.), tf.constant(12, tf.int64), 2.0, quantile=0.5))
    10.0
    """
    window = history.shape[0]
    filled = tf.cast(tf.minimum(count, window), tf.int32)
    # Empty slots hold +inf for sorting purposes; the quantile looks at the filled ones.
    values = tf.where(tf.range(window) < filled, history, tf.fill([window], float("inf")))
    ordered = tf.sort(values)
    rank = tf.cast(tf.math.ceil(quantile * tf.cast(filled, tf.float32)), tf.int32) - 1
    value = tf.gather(ordered, tf.clip_by_value(rank, 0, window - 1))
    enough = filled >= min(MIN_HISTORY, window)
    return tf.where(enough, factor * value, float("inf"))


def record(history, count, norm):
    """Write `norm` into the ring buffer and advance the count."""
    window = history.shape[0]
    slot = tf.cast(count % window, tf.int32)
    history.assign(tf.tensor_scatter_nd_update(history, [[slot]], [norm]))
    count.assign_add(1)


class GradientNormGate:
    """Whether an update's global gradient norm is acceptable: at most `threshold`
    (0: no fixed limit) and, with `factor` > 0, at most `factor` x the 0.95 quantile
    of the last `window` norms. Its history is held in variables the model owns
    (saved with it, so a resumed run decides exactly as an uninterrupted one).
    """

    def __init__(self, model, threshold=0.0, factor=0.0, window=200):
        self.threshold, self.factor = float(threshold), float(factor)
        self.active = bool(self.threshold or self.factor)
        self.history = self.count = None
        if self.factor:  # made here, in the model's __init__: their place in its weights
            self.history = model.add_weight(
                shape=(window,), initializer="zeros", trainable=False,
                aggregation="only_first_replica", name="grad_norm_history")
            self.count = model.add_weight(
                shape=(), dtype="int64", initializer="zeros", trainable=False,
                aggregation="only_first_replica", name="grad_norm_count")

    def allows(self, norm):
        """True unless `norm` is over the fixed or adaptive threshold (or not finite);
        the adaptive rule records every norm, allowed or not. Ask only when `active`
        (the caller then computes the norm at all)."""
        threshold = tf.constant(self.threshold or float("inf"))
        if self.factor:
            adaptive = adaptive_threshold(self.history, self.count, self.factor)
            threshold = tf.where(tf.math.is_inf(adaptive), threshold, adaptive)
            with tf.control_dependencies([threshold]):
                record(self.history, self.count, norm)
        return tf.logical_and(tf.math.is_finite(norm), norm <= threshold)
