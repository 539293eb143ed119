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
