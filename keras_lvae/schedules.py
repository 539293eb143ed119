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


@keras.saving.register_keras_serializable(package="keras_lvae")
class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """learning_rate x decay_rate ** floor((step - start_step) / decay_steps), after start_step.

    Constant `learning_rate` before `start_step`. Build it with `step_decay`.
    """

    def __init__(self, learning_rate, decay_steps, decay_rate, start_step=0):
        self.learning_rate = float(learning_rate)
        self.decay_steps = int(decay_steps)
        self.decay_rate = float(decay_rate)
        self.start_step = int(start_step)

    def __call__(self, step):
        elapsed = ops.maximum(ops.cast(step, "float32") - float(self.start_step), 0.0)
        decays = ops.floor(elapsed / float(self.decay_steps))
        return self.learning_rate * ops.power(self.decay_rate, decays)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "start_step": self.start_step}


def step_decay(learning_rate, steps_per_epoch, every_epochs=200, factor=0.75, start_epoch=0):
    """Learning rate x `factor` every `every_epochs` epochs (the paper's fine-tuning).

    The rate is constant for the first `start_epoch` epochs (the main training
    stage), then decays. Returns a Keras schedule to pass as an optimizer's
    `learning_rate`; it reads the optimizer's step, so it continues correctly
    after a reload.

    Example:
    >>> schedule = step_decay(1e-3, steps_per_epoch=235)
    >>> [round(float(schedule(epoch * 235)), 7) for epoch in (0, 199, 200, 400)]
    [0.001, 0.001, 0.00075, 0.0005625]
    >>> later = step_decay(1e-3, steps_per_epoch=10, every_epochs=2, start_epoch=5)
    >>> [round(float(later(epoch * 10)), 7) for epoch in (0, 5, 6, 7, 9)]
    [0.001, 0.001, 0.001, 0.00075, 0.0005625]
    """
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) or not (
            learning_rate > 0):
        raise ValueError("Invalid value for argument `learning_rate`: expected a positive "
                         f"number, received {learning_rate!r}.")
    _checks.positive_int("steps_per_epoch", steps_per_epoch)
    _checks.positive_int("every_epochs", every_epochs)
    _checks.non_negative_int("start_epoch", start_epoch)
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor <= 1:
        raise ValueError("Invalid value for argument `factor`: expected a number in (0, 1], "
                         f"received {factor!r}.")
    return StepDecay(learning_rate, decay_steps=steps_per_epoch * every_epochs,
                     decay_rate=factor, start_step=steps_per_epoch * start_epoch)


# Added to each layer's mean KL before normalising, so a collapsed layer keeps a small weight.
KL_BALANCE_OFFSET = 0.01


def kl_balance_weights(mean_kls, beta):
    """Per-layer KL weights of NVAE's KL balancing, used while beta < 1.

    During the warm-up layer i's KL is weighted by
    w_i = (KL_i + 0.01) / mean_j (KL_j + 0.01), where KL_i is the layer's KL
    averaged over the batch (held constant in the gradient): the weights
    average 1 (they sum to the number of layers), and a layer that carries
    little information is pushed towards the prior less, so it does not
    switch off early. With beta >= 1 every weight is 1 (the true ELBO).
    Reference: NVlabs/NVAE `utils.kl_balancer` (with equal group sizes).

    Example:
    >>> [round(float(w), 3) for w in kl_balance_weights([1.99, 0.99, 2.99], beta=0.5)]
    [1.0, 0.5, 1.5]
    >>> [float(w) for w in kl_balance_weights([1.99, 0.99, 2.99], beta=1.0)]
    [1.0, 1.0, 1.0]
    """
    shifted = ops.abs(ops.stop_gradient(ops.stack(
        [ops.cast(k, "float32") for k in mean_kls]))) + KL_BALANCE_OFFSET
    balanced = shifted / ops.mean(shifted)
    weights = ops.where(ops.cast(beta, "float32") < 1.0, balanced, ops.ones_like(balanced))
    return [weights[i] for i in range(len(mean_kls))]
