"""The KL warm-up schedule as a pure function of the training step."""

from keras import ops

from keras_lvae import _checks


def check_warmup_steps(warmup_steps):
    """Return `warmup_steps` if it is a non-negative int, else raise ValueError."""
    return _checks.non_negative_int("warmup_steps", warmup_steps)


def warmup_beta(step, warmup_steps):
    """KL weight beta = min(1, step / warmup_steps); beta = 1 when warmup_steps is 0.

    `step` may be a tensor (e.g. `optimizer.iterations`), so the value is right
    inside a compiled train step.

    Example:
    >>> [float(warmup_beta(s, 4)) for s in (0, 2, 4, 9)]
    [0.0, 0.5, 1.0, 1.0]
    >>> float(warmup_beta(0, 0))
    1.0
    """
    check_warmup_steps(warmup_steps)
    if warmup_steps == 0:
        return ops.ones((), dtype="float32")
    return ops.minimum(1.0, ops.cast(step, "float32") / float(warmup_steps))
