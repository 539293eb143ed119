"""Adam with one fused TensorFlow op per variable: the same update, fewer ops per step.

Keras 3's `Adam.update_step` builds each variable's update from about ten small ops (the
moments' updates, the square root, the division, three assignments). A ladder VAE's step
updates many variables (89 in the paper's model), so on a CPU Adam's hundreds of small ops
cost about a fifth of a training step (9 of 38 ms on one core for the paper's model;
`benchmarks/README.md`). TensorFlow's `ResourceApplyAdam` kernel applies the same formula to a variable in one op:

    alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
    m += (g - m) * (1 - beta_1);  v += (g^2 - v) * (1 - beta_2)
    variable -= alpha * m / (sqrt(v) + epsilon)

`FusedAdam` is `keras.optimizers.Adam` with that kernel in `update_step`. Its variables,
configuration, checkpoints and results (to float round-off) are Adam's. It falls back to
Keras' own update where the kernel does not apply: `amsgrad=True`, sparse gradients
(`tf.IndexedSlices`) and inside a `tf.distribute` strategy.

Example:

>>> import keras, keras_lvae
>>> model = keras_lvae.LadderVAE(latent_dims=(4,), hidden_dims=(16,), seed=1)
>>> model.compile(optimizer=keras_lvae.optimizers.FusedAdam(1e-3))
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_lvae")
class FusedAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` that updates each variable with one `ResourceApplyAdam` op.

    Takes Adam's arguments. Reference: Kingma & Ba, "Adam" (ICLR 2015), Algorithm 1 with
    the bias correction folded into the step size (section 2), as Keras and TensorFlow do.
    """

    def update_step(self, gradient, variable, learning_rate):
        if (self.amsgrad or isinstance(gradient, tf.IndexedSlices)
                or tf.distribute.has_strategy()):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        index = self._get_variable_index(variable)

        def constant(value):
            return tf.cast(value, dtype)

        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].value.handle,
            v=self._velocities[index].value.handle,
            beta1_power=tf.pow(constant(self.beta_1), step),
            beta2_power=tf.pow(constant(self.beta_2), step),
            lr=constant(learning_rate), beta1=constant(self.beta_1),
            beta2=constant(self.beta_2), epsilon=constant(self.epsilon),
            grad=tf.cast(gradient, dtype))
