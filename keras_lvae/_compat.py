"""Every private name of Keras, TensorFlow and tfds that keras-lvae uses, in one place.

Each use says what it is for, the versions it was checked against, and the public
path taken when the private one is missing (a newer release renamed it), so a minor
release can slow a feature down but not break it. CI runs the fast suite on the
pinned versions (`constraints.txt`) and on the newest versions the ranges allow.

Checked against keras 3.15.1, tensorflow 2.21.0, tensorflow-datasets 4.9.10.
"""

import contextlib

import keras
import tensorflow as tf

# ---------------------------------------------------------------- Keras layers
def _sublayers(layer):
    """Fallback: the layers a layer tracks, found through its public attributes."""
    found = []
    for value in vars(layer).values():
        values = value if isinstance(value, (list, tuple)) else [value]
        found += [v for v in values if isinstance(v, keras.layers.Layer)]
    return found


def flatten_layers(layer):
    """`layer` and every layer inside it, depth first, each once.

    Private: `Layer._flatten_layers()` (keras 3.15.1). Fallback: a walk over the
    layers held in the public attributes (same layers; the order may differ).
    """
    if hasattr(layer, "_flatten_layers"):
        return list(layer._flatten_layers())
    seen, order, stack = set(), [], [layer]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        order.append(current)
        stack.extend(reversed(_sublayers(current)))
    return order


def batch_norm_layers(model):
    """Every `keras.layers.BatchNormalization` inside `model`, in a fixed order."""
    return [layer for layer in flatten_layers(model)
            if isinstance(layer, keras.layers.BatchNormalization)]


# -------------------------------------------------------------- Keras training
def is_fit_validation(evaluate_kwargs):
    """Whether `Model.evaluate` was called by `fit` for its validation pass.

    Private: the `_use_cached_eval_dataset` keyword `fit` passes (keras 3.15.1).
    Fallback: False (validation data are then checked like evaluate's own `x`).
    """
    return bool(evaluate_kwargs.get("_use_cached_eval_dataset", False))


# The options of `keras.optimizers.Adam.get_config()` in keras 3.15.1: the fused
# update knows what each does; an option added by a later release is not known.
KNOWN_ADAM_OPTIONS = frozenset({
    "amsgrad", "beta_1", "beta_2", "clipnorm", "clipvalue", "ema_momentum",
    "ema_overwrite_frequency", "epsilon", "global_clipnorm", "gradient_accumulation_steps",
    "learning_rate", "loss_scale_factor", "name", "use_ema", "weight_decay"})


class AdamWithStepHook(keras.optimizers.Adam):
    """Keras' Adam that hands a whole step to `fused_step` when `fused_step_applies()`.

    Private: `BaseOptimizer._backend_update_step(grads, variables, learning_rate)`,
    the TensorFlow backend's per-step hook (keras 3.15.1; Keras' own Nadam overrides
    it), and Adam's `_momentums`, `_velocities` and `_get_variable_index`. Fallback:
    if any is missing, or the optimizer has an option the fused step does not know,
    Keras' own Adam update runs.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Decided here, not in the (traced) step: options a later Keras added.
        self.unknown_options = tuple(sorted(set(kwargs) - KNOWN_ADAM_OPTIONS))

    def fused_step_applies(self):
        return not self.unknown_options and all(
            hasattr(self, name) for name in ("_momentums", "_velocities", "_get_variable_index"))

    def moments(self, variable):
        """(first moment, second moment) slots of `variable`."""
        index = self._get_variable_index(variable)
        return self._momentums[index], self._velocities[index]

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if not self.fused_step_applies() or not self.fused_step(
                grads, trainable_variables, learning_rate):
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        return None

    def fused_step(self, grads, trainable_variables, learning_rate):
        """Apply the step and return True, or return False to leave it to Keras."""
        return False


# ------------------------------------------------------------ TensorFlow quirks
def multi_worker_logs(logs):
    """Logs a train or test step returns, fit for Keras' multi-worker reduction.

    Keras 3 reduces multi-worker logs with reduce(MEAN, axis=0), which fails on scalars
    (tensorflow/tensorflow#72388, open in 2.21.0); shape [1] reduces to the scalar.
    """
    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return {name: tf.reshape(value, (1,)) for name, value in logs.items()}
    return logs


# -------------------------------------------------------------------------- tfds
@contextlib.contextmanager
def download_retries(most):
    """tfds retries a failed download at most `most` times within the block.

    Private: `tensorflow_datasets.core.download.downloader.MAX_RETRIES`
    (tensorflow-datasets 4.9.10). Fallback: tfds' own retries (10, about 3.5 minutes
    offline).
    """
    from tensorflow_datasets.core.download import downloader

    if not hasattr(downloader, "MAX_RETRIES"):
        yield
        return
    saved = downloader.MAX_RETRIES
    downloader.MAX_RETRIES = min(saved, most)
    try:
        yield
    finally:
        downloader.MAX_RETRIES = saved
