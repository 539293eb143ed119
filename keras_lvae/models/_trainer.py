"""The training side of `LadderVAE`: metrics, `train_step`, `test_step`, and `fit` and
`evaluate` with their input checks. A mixin, in the spirit of Keras' own `Trainer`.

An update touches the state listed by `_updated_state()`: the step counter, the
trainable weights, the weight averages and the optimizer's variables. A skipped
update leaves all of them (and the batch-norm statistics) as they were.
"""

import contextlib

import keras
import tensorflow as tf
from keras import ops

from keras_lvae import _compat, densities, inputs, weight_average
from keras_lvae.schedules import warmup_beta


class LadderTrainer:
    """Metrics and the train and test steps of the warm-up-weighted ELBO."""

    def _make_trackers(self):
        """The metric trackers, made in __init__ (Keras locks state after build)."""
        mean = keras.metrics.Mean
        self.loss_tracker = mean(name="loss")
        self.nelbo_tracker = mean(name="nelbo")
        self.reconstruction_tracker = mean(name="reconstruction_loss")
        self.kl_tracker = mean(name="kl_loss")
        self.kl_layer_trackers = [mean(name=f"kl_layer_{i + 1}") for i in range(self.num_layers)]
        self.beta_tracker = mean(name="beta")
        # 8-bit data: the negative ELBO in bits per dimension as well (train and validation).
        self.bits_per_dim_tracker = (mean(name="bits_per_dim")
                                     if self.likelihood_class.eight_bit else None)
        self.kl_weight_trackers = ([mean(name=f"kl_weight_{i + 1}") for i in range(self.num_layers)]
                                   if self.kl_balance else [])
        self.skipped_tracker = keras.metrics.Sum(name="skipped_steps")

    @property
    def metrics(self):
        trackers = [
            self.loss_tracker, self.nelbo_tracker, self.reconstruction_tracker, self.kl_tracker,
            *self.kl_layer_trackers, self.beta_tracker, *self.kl_weight_trackers,
            *([self.bits_per_dim_tracker] if self.bits_per_dim_tracker else []),
        ]
        return trackers + [self.skipped_tracker] if self._guarded() else trackers

    def _guarded(self):
        """Whether training steps may be skipped (and `skipped_steps` is logged)."""
        return self.skip_nonfinite_steps or self.gradient_gate.active

    def _gradient_norm(self, gradients):
        """Global norm of the unscaled gradients."""
        norm = tf.linalg.global_norm([tf.cast(g, "float32") for g in gradients if g is not None])
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            norm = norm / tf.cast(self.optimizer.dynamic_scale, "float32")
        return norm

    def _logs(self):
        return _compat.multi_worker_logs({m.name: m.result() for m in self.metrics})

    def _update_trackers(self, loss, terms, beta):
        self.loss_tracker.update_state(loss)
        self.nelbo_tracker.update_state(terms["nelbo"])
        if self.bits_per_dim_tracker is not None:
            self.bits_per_dim_tracker.update_state(
                densities.bits_per_dim(-terms["nelbo"], self.num_features))
        self.reconstruction_tracker.update_state(terms["reconstruction_loss"])
        self.kl_tracker.update_state(terms["kl_loss"])
        for tracker, kl in zip(self.kl_layer_trackers, terms["kl_layers"]):
            tracker.update_state(kl)
        if beta is not None:
            self.beta_tracker.update_state(beta)
        for tracker, weight in zip(self.kl_weight_trackers, terms.get("kl_weights", [])):
            tracker.update_state(weight)

    def _labels_of(self, data):
        """A dataset element's labels for a conditional model; None for an unconditional
        one (which ignores any labels, as before conditioning existed)."""
        return inputs.labels_of(data) if self.num_classes is not None else None

    def train_step(self, data):
        x = inputs.unpack(data)
        if not self.built:  # Keras builds in the step: the statistics below must exist
            self.build(tuple(x.shape))
        # Beta from the model's own step counter, a tensor: correct inside a compiled step
        # and unchanged by a new optimizer.
        beta = warmup_beta(self.trained_steps, self.warmup_steps)
        guard = self._guarded()
        if guard:  # what a skipped step must put back: the forward pass updates them
            statistics = weight_average.batch_norm_statistics(self)
            saved = [tf.identity(v.value) for v in statistics]
        with tf.GradientTape() as tape:
            loss, terms = self.training_objective(x, beta=beta, training=True,
                                                  allow_nan=self.skip_nonfinite_steps,
                                                  labels=self._labels_of(data))
            loss = ops.mean(loss)
            if self.losses:
                loss = loss + ops.sum(self.losses)
            # Gradients are summed over replicas, so each replica's loss is divided
            # by their number; scale_loss applies mixed-precision loss scaling.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled_loss = self.optimizer.scale_loss(loss / replicas)
        gradients = tape.gradient(scaled_loss, self.trainable_variables)
        if not guard:
            self._apply(gradients, loss)
            self._update_trackers(loss, terms, beta)
            return self._logs()

        checked, decided_on = [loss], gradients
        if replicas > 1:  # every replica decides on the summed gradients: all decide alike
            context = tf.distribute.get_replica_context()
            decided_on = context.all_reduce("sum", [g for g in gradients if g is not None])
            checked = [context.all_reduce("sum", loss)]
        # A loss-scaling optimizer handles overflowing (scaled) gradients itself by
        # lowering its scale; skipping those steps here would stop it from adapting.
        if not isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            checked += [g for g in decided_on if g is not None]
        finite = ops.all(ops.stack([ops.all(ops.isfinite(t)) for t in checked]))
        allowed = (self.gradient_gate.allows(self._gradient_norm(decided_on))
                   if self.gradient_gate.active else tf.constant(True))
        accept = ops.logical_and(finite, allowed)
        if not self.optimizer.built:  # build outside the branch that applies
            self.optimizer.build(self.trainable_variables)
        self._apply_if(accept, gradients, loss)
        for variable, value in zip(statistics, saved):  # no control flow: see _apply_if
            variable.assign(tf.where(accept, variable, value))

        def update_trackers():
            self._update_trackers(loss, terms, beta)
            return tf.constant(0.0)

        skipped = tf.cond(accept, update_trackers, lambda: tf.constant(1.0))
        self.skipped_tracker.update_state(skipped / replicas)  # the replicas' counts add up
        return self._logs()

    def _updated_state(self):
        """Every variable an applied update changes."""
        return ([self.trained_steps] + self.trainable_variables + self.ema_variables
                + self.optimizer.variables)

    def _apply_if(self, accept, gradients, loss):
        """`_apply` if `accept` (the same on every replica). Under a multi-replica
        strategy the optimizer's step is a synchronisation point, which cannot sit in a
        tf.cond: the update is applied, then undone where `accept` is false."""
        if tf.distribute.get_strategy().num_replicas_in_sync == 1:
            tf.cond(accept, lambda: self._apply(gradients, loss) or tf.constant(True),
                    lambda: tf.constant(False))
            return
        touched = self._updated_state()
        before = [tf.identity(v.value) for v in touched]
        with tf.control_dependencies(before):
            self._apply(gradients, loss)

        def undo(strategy, accept, before):
            for variable, value in zip(touched, before):
                strategy.extended.update(  # on the TF variable inside Keras's
                    getattr(variable, "value", variable),
                    lambda v, old, keep: v.assign(tf.where(keep, v, old)),
                    args=(value, accept), group=False)

        tf.distribute.get_replica_context().merge_call(undo, args=(accept, before))

    def _apply(self, gradients, loss):
        """Apply the update and count the step (after the loss, so only a step that
        received a batch counts: Keras may start a step that finds no data)."""
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        with tf.control_dependencies([loss]):
            self.trained_steps.assign_add(1)
        if self.weight_average is not None:
            self.weight_average.update(self, self.trained_steps)

    def fit(self, x=None, *args, **kwargs):
        """`keras.Model.fit`, refusing empty data and non-positive batch sizes.

        Data whose size is unknown up front is refused after the fact if it
        yielded no batch (Keras would return an empty history).
        """
        inputs.check_data("x", x, kwargs.get("batch_size"))
        inputs.check_data("validation_data", kwargs.get("validation_data"),
                          kwargs.get("validation_batch_size"))
        inputs.check_values("x", x, self.likelihood_class, allow_nan=self.skip_nonfinite_steps)
        inputs.check_values("validation_data", kwargs.get("validation_data"),
                            self.likelihood_class)
        if isinstance(x, tf.data.Dataset):  # it shuffles itself; Keras would warn of its default
            kwargs.setdefault("shuffle", False)
        if self.weight_average is not None:  # training moves the weights off the averages
            self.weight_average.holds_averages = False
        history = super().fit(x, *args, **kwargs)
        # Keras logs nothing for an epoch that received no batch.
        if not history.history and kwargs.get("epochs", 1) > kwargs.get("initial_epoch", 0):
            raise inputs.no_batch_error("x")
        return history

    def evaluate(self, x=None, *args, **kwargs):
        """`keras.Model.evaluate`, refusing empty data and non-positive batch sizes."""
        validation = _compat.is_fit_validation(kwargs)
        if not validation:
            inputs.check_data("x", x, kwargs.get("batch_size"))
            inputs.check_values("x", x, self.likelihood_class)
        with self.ema_weights_applied():  # validation and evaluation see the averages
            result = super().evaluate(x, *args, **kwargs)
        if int(self.nelbo_tracker.count.numpy()) == 0:  # no batch ran
            raise inputs.no_batch_error("validation_data" if validation else "x")
        return result

    def test_step(self, data):
        terms = self.elbo_terms(inputs.unpack(data), training=False,
                                labels=self._labels_of(data))
        # Validation reports the true bound (beta = 1), comparable across runs; beta and
        # skipped steps carry no information there, so they are not logged.
        self._update_trackers(ops.mean(terms["nelbo"]), terms, beta=None)
        return {name: value for name, value in self._logs().items()
                if name not in (self.beta_tracker.name, self.skipped_tracker.name)
                and not name.startswith("kl_weight_")}

    # ----------------------------------------------------- the weight average
    @property
    def ema_variables(self):
        """The moving averages of `ema_decay` (empty without), saved with the model."""
        return [] if self.weight_average is None else self.weight_average.variables

    def batch_norm_layers(self):
        """Every `keras.layers.BatchNormalization` inside the model, in a fixed order."""
        return _compat.batch_norm_layers(self)

    def ema_weights_applied(self):
        """A context: within it the trainable weights and batch-norm statistics hold
        their moving averages; afterwards they are restored. A no-op without
        `ema_decay` and after `use_ema_weights()` (the model holds the averages
        already, perhaps with statistics recomputed since)."""
        if self.weight_average is None:
            return contextlib.nullcontext()
        return self.weight_average.applied(self)

    def restart_ema_weights(self):
        """Set the moving averages to the current weights and batch-norm statistics, as
        at the start of training (e.g. after assigning weights from elsewhere)."""
        if self.weight_average is not None:
            self.weight_average.restart(self)

    def use_ema_weights(self):
        """Replace the trainable weights and batch-norm statistics by their moving
        averages for good (for inference, export or evaluation of a loaded model);
        `evaluate` then uses the model as it is, so statistics recomputed afterwards
        (`recompute_batch_norm_statistics`) count. `fit` trains on from there.
        Returns True if the model had averages."""
        return self.weight_average is not None and self.weight_average.use(self)
