"""Adam with one fused TensorFlow op per variable: the same update, fewer ops per step.

Keras 3's `Adam.update_step` builds each variable's update from about ten small ops (the
moments' updates, the square root, the division, three assignments, and the step's powers of
beta_1 and beta_2, made again for every variable). A ladder VAE's step updates many variables
(89 in the paper's model), so on a CPU Adam's hundreds of small ops cost about a fifth of a
training step (9 of 38 ms on one core for the paper's model; `benchmarks/README.md`).
TensorFlow's `ResourceApplyAdam` kernel applies the same formula to a variable in one op:

    alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
    m += (g - m) * (1 - beta_1);  v += (g^2 - v) * (1 - beta_2)
    variable -= alpha * m / (sqrt(v) + epsilon)

`FusedAdam` is `keras.optimizers.Adam` with that kernel, its scalar arguments made once per
step. Its variables, configuration, checkpoints and results (to float round-off) are Adam's.
It falls back to Keras' own update where the kernel does not apply: `amsgrad=True`, sparse
gradients (`tf.IndexedSlices`), inside a `tf.distribute` strategy, and where Keras' private
step hook is missing or the optimizer has an option it does not know (`keras_lvae._compat`).

Example:

>>> import keras, keras_lvae
>>> model = keras_lvae.LadderVAE(latent_dims=(4,), hidden_dims=(16,), seed=1)
>>> model.compile(optimizer=keras_lvae.optimizers.FusedAdam(1e-3))
"""

import keras
import tensorflow as tf

from keras_lvae import _compat


@keras.saving.register_keras_serializable(package="keras_lvae")
class FusedAdam(_compat.AdamWithStepHook):
    """`keras.optimizers.Adam` that updates each variable with one `ResourceApplyAdam` op.

    Takes Adam's arguments. Reference: Kingma & Ba, "Adam" (ICLR 2015), Algorithm 1 with
    the bias correction folded into the step size (section 2), as Keras and TensorFlow do.
    """

    def fused_step(self, grads, trainable_variables, learning_rate):
        """The whole step, its constants made once per dtype, not once per variable;
        False (Keras' Adam updates) under tf.distribute and with amsgrad."""
        if self.amsgrad or tf.distribute.has_strategy():
            return False
        constants = {}
        for gradient, variable in zip(grads, trainable_variables):
            variable = variable.value if isinstance(variable, keras.Variable) else variable
            if isinstance(gradient, tf.IndexedSlices):
                self.update_step(gradient, variable, learning_rate)
                continue
            if variable.dtype not in constants:
                constants[variable.dtype] = self._step_constants(variable.dtype, learning_rate)
            momentum, velocity = self.moments(variable)
            tf.raw_ops.ResourceApplyAdam(
                var=variable.handle, m=momentum.value.handle, v=velocity.value.handle,
                grad=tf.cast(gradient, variable.dtype), **constants[variable.dtype])
        return True

    def _step_constants(self, dtype, learning_rate):
        """ResourceApplyAdam's scalar arguments for this step, in `dtype`."""
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        return dict(beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
                    lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
                    epsilon=tf.cast(self.epsilon, dtype))
