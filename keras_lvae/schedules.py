"""Schedules of the training step: the KL warm-up and the fine-tuning learning-rate decay."""

import keras
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


def step_decay(learning_rate, steps_per_epoch, every_epochs=200, factor=0.75):
    """Learning rate x `factor` every `every_epochs` epochs (the paper's fine-tuning).

    Returns a Keras schedule to pass as an optimizer's `learning_rate`; it reads
    the optimizer's step, so it continues correctly after a reload.

    Example:
    >>> schedule = step_decay(1e-3, steps_per_epoch=235)
    >>> [round(float(schedule(epoch * 235)), 7) for epoch in (0, 199, 200, 400)]
    [0.001, 0.001, 0.00075, 0.0005625]
    """
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) or not (
            learning_rate > 0):
        raise ValueError("Invalid value for argument `learning_rate`: expected a positive "
                         f"number, received {learning_rate!r}.")
    _checks.positive_int("steps_per_epoch", steps_per_epoch)
    _checks.positive_int("every_epochs", every_epochs)
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor <= 1:
        raise ValueError("Invalid value for argument `factor`: expected a number in (0, 1], "
                         f"received {factor!r}.")
    return keras.optimizers.schedules.ExponentialDecay(
        float(learning_rate), decay_steps=steps_per_epoch * every_epochs,
        decay_rate=float(factor), staircase=True)
