"""The ladder's passes: bottom-up, top-down, the bottom-up VAE's chain, and descents
of the generative path. A mixin of `LadderVAE`; every method works on tensors in the
model's layout (flat vectors for MLP rungs, feature maps for conv rungs).

A pass returns a *trace*: a list, bottom to top, of dicts with the layer's `z` and
the parameters of q (`q_mean`, `q_variance`) and of p(z_i | z_{>i}) (`p_mean`,
`p_variance`; None for an N(0, I) top prior). The ladder's top-down pass also keeps
`features`, the output of the rung that gave p(z_i | z_{>i}) (None at the top): what
`_descend` needs to continue down the generative path from that layer.

A conditional model (`num_classes`) takes int32 `labels` [rows] in every pass: their
embedding joins the input of the first bottom-up rung and of every top-down rung
(`_with_labels`), and p(z_L | y) is the class's own Gaussian (`_top_prior`).
"""

import tensorflow as tf
from keras import ops

from keras_lvae import distributions, inputs


class LadderPasses:
    """Inference and generative passes over the model's rungs and heads."""

    def prepare_labels(self, labels, x):
        """Checked int32 labels [batch] for the prepared images `x` (an int: every row),
        or None for an unconditional model; a clear error for missing or bad labels."""
        rows = x.shape[0] if isinstance(x.shape[0], int) else ops.shape(x)[0]
        return inputs.labels(labels, self.num_classes, rows)

    def _with_labels(self, h, labels):
        """`h` with the labels' embedding joined on its last axis (broadcast over any
        spatial axes); `h` itself for an unconditional model (`labels` None)."""
        if labels is None:
            return h
        embedding = ops.cast(ops.take(self.label_embedding, labels, axis=0), h.dtype)
        rank = len(h.shape)
        embedding = ops.reshape(embedding, (-1,) + (1,) * (rank - 2) + (self.label_dims,))
        spatial = ops.shape(h)[1:-1]
        embedding = ops.broadcast_to(embedding, (ops.shape(h)[0], *spatial, self.label_dims))
        return ops.concatenate([h, embedding], axis=-1)

    def prior_params(self, i, z_above, above, training=False, labels=None):
        """p(z_{i+1} | z_{>i+1}) for 0-based layer index i: (mean, variance, features).

        `above` is the features of the rung above (None at the top); with skip
        connections they join z_{i+2} as the rung's input.
        """
        if self.skip and above is not None:
            z_above = ops.concatenate([z_above, ops.cast(above, z_above.dtype)], axis=-1)
        h = self.decoder_blocks[i](self._with_labels(z_above, labels), training=training)
        _, mean, variance = self.decoder_heads[i](h, training=training, sample=False)
        return mean, variance, h

    def _top_prior(self, labels=None):
        """(mean, variance) of p(z_L) (of p(z_L | y) for a conditional model: one row per
        label), broadcastable to [batch, ...]; None for N(0, I)."""
        if labels is not None:
            return (ops.take(self.top_prior_class_mean, labels, axis=0),
                    ops.exp(ops.take(self.top_prior_class_log_variance, labels, axis=0)))
        if not self.learn_top_prior:
            return None, None
        return (ops.expand_dims(ops.convert_to_tensor(self.top_prior_mean), 0),
                ops.expand_dims(ops.exp(self.top_prior_log_variance), 0))

    @staticmethod
    def _layer_seed(seed, i):
        """Stateless seed of layer i from an int32[2] `seed`; None uses the layer's generator."""
        return None if seed is None else tf.random.experimental.stateless_fold_in(seed, i)

    def _draw(self, i, mean, variance, sample, seed, noise=None):
        """z_{i+1}: a sample from q through encoder head i (with `noise`, the caller's
        standard-normal draws: mean + sd x noise[i]), or the mean."""
        if not sample:
            return mean
        if noise is not None:
            return self._given_draw(noise, i, mean, variance)
        return self.encoder_heads[i].draw(mean, variance, seed=self._layer_seed(seed, i))

    def _prior_draw(self, i, mean, variance, seed, noise=None):
        """z_{i+1} ~ p(z_{i+1} | z_{>i+1}) through decoder head i (or from `noise[i]`)."""
        if noise is not None:
            return self._given_draw(noise, i, mean, variance)
        return self.decoder_heads[i].draw(mean, variance, seed=self._layer_seed(seed, i + 1))

    @staticmethod
    def _given_draw(noise, i, mean, variance):
        """A draw from N(mean, variance) made of the caller's standard-normal `noise[i]`
        (the portable exports: their runtimes do not share TensorFlow's random numbers)."""
        return mean + ops.sqrt(variance) * ops.reshape(ops.cast(noise[i], mean.dtype),
                                                       ops.shape(mean))

    def posterior_trace(self, x, training=False, sample=True, seed=None, noise=None,
                        labels=None):
        """Inference on x in the model's layout (see `prepare`): the trace, bottom to top.

        With `sample=False` every z is its posterior mean. `seed` (int32[2]) makes the
        sampling stateless; `noise` (standard-normal draws per layer, bottom to top,
        each shaped like its z) replaces the random draws. `labels`: checked int32
        [batch] of a conditional model (see `prepare_labels`), else None.
        """
        if self.inference == "ladder":
            return self._top_down(self._bottom_up(x, training, labels), training, sample, seed,
                                  noise=noise, labels=labels)
        trace = [None] * self.num_layers
        h = self._with_labels(self._encoder_input(x), labels)
        for i in range(self.num_layers):
            d = self.encoder_blocks[i](h, training=training)
            _, q_mean, q_variance = self.encoder_heads[i](d, training=training, sample=False)
            h = self._draw(i, q_mean, q_variance, sample, seed, noise)
            trace[i] = dict(z=h, q_mean=q_mean, q_variance=q_variance)
        trace[-1]["p_mean"], trace[-1]["p_variance"] = self._top_prior(labels)
        above = None
        for i in reversed(range(self.num_layers - 1)):
            p_mean, p_variance, above = self.prior_params(i, trace[i + 1]["z"], above, training,
                                                          labels)
            trace[i]["p_mean"], trace[i]["p_variance"] = p_mean, p_variance
        return trace

    def _bottom_up(self, x, training, labels=None):
        """The ladder's deterministic pass: (mean_hat, variance_hat) per layer."""
        estimates, d = [], self._with_labels(self._encoder_input(x), labels)
        for i in range(self.num_layers):
            d = self.encoder_blocks[i](d, training=training)
            _, mean_hat, variance_hat = self.encoder_heads[i](d, training=training, sample=False)
            estimates.append((mean_hat, variance_hat))
        return estimates

    def _top_down(self, bottom_up, training, sample, seed=None, noise=None, labels=None):
        """The ladder's stochastic pass, merging each layer's bottom-up estimate.
        `noise`: see `posterior_trace`."""
        num = self.num_layers
        trace = [None] * num
        z_above = above = None  # above: the features of the rung above, for skip connections
        for i in reversed(range(num)):
            mean_hat, variance_hat = bottom_up[i]
            if i == num - 1:
                q_mean, q_variance = mean_hat, variance_hat
                p_mean, p_variance = self._top_prior(labels)
            else:
                p_mean, p_variance, above = self.prior_params(i, z_above, above, training,
                                                              labels)
                if self.separate_top_down:
                    h = self.top_down_blocks[i](self._with_labels(z_above, labels),
                                                training=training)
                    _, t_mean, t_variance = self.top_down_heads[i](h, training=training,
                                                                   sample=False)
                else:
                    t_mean, t_variance = p_mean, p_variance
                q_mean, q_variance = self.merge((mean_hat, variance_hat, t_mean, t_variance))
            z_above = self._draw(i, q_mean, q_variance, sample, seed, noise)
            trace[i] = dict(z=z_above, q_mean=q_mean, q_variance=q_variance, p_mean=p_mean,
                            p_variance=p_variance, features=above)
        return trace

    def output_params(self, z_1, training=False):
        """p(x | z_1)'s parameters, one float32 tensor cut to the data's layout."""
        h = self.output_block(z_1, training=training)
        return self._crop(self.pixel_likelihood.parameters(self.output_head, h, training))

    def _log_px(self, x, z_1, training):
        return self.pixel_likelihood.log_prob(x, self.output_params(z_1, training))

    def _images(self, params):
        """p(x | z_1)'s mean, shaped like the model's inputs."""
        return ops.reshape(self.pixel_likelihood.mean(params), (-1,) + self.feature_shape)

    @staticmethod
    def _sample_rows(t, num_samples):
        """[batch, ...] -> [num_samples * batch, ...], sample-major (as `_posterior_samples`)."""
        if isinstance(num_samples, int) and num_samples == 1:
            return t
        return ops.tile(t, (num_samples,) + (1,) * (len(t.shape) - 1))

    def _posterior_samples(self, x, num_samples, training=False, seed=None, noise=None,
                          labels=None):
        """Posterior samples for x in the model's layout, `num_samples` per example.

        Returns (trace, log p(x|z_1)); rows are sample-major, [num_samples * batch].
        The ladder's deterministic bottom-up pass runs once per example and is
        shared by the samples. `num_samples` may be a scalar tensor. `noise`: see
        `posterior_trace`, each [num_samples, batch, *latent shape] or with those
        rows merged. `labels`: see `posterior_trace`, [batch].
        """
        x_rows = self._sample_rows(x, num_samples)
        label_rows = None if labels is None else self._sample_rows(labels, num_samples)
        if self.inference == "ladder":
            bottom_up = [(self._sample_rows(m, num_samples), self._sample_rows(v, num_samples))
                         for m, v in self._bottom_up(x, training, labels)]
            trace = self._top_down(bottom_up, training, sample=True, seed=seed, noise=noise,
                                   labels=label_rows)
        else:
            trace = self.posterior_trace(x_rows, training, sample=True, seed=seed, noise=noise,
                                         labels=label_rows)
        return trace, self._log_px(x_rows, trace[0]["z"], training)

    def _sample_top(self, num_samples, seed, temperature=None, noise=None, labels=None):
        """z_L ~ p(z_L) (p(z_L | y) with `labels` [num_samples]) for `num_samples` rows
        (standard deviation x `temperature`); `noise`: see `posterior_trace`."""
        shape = (num_samples, *self.latent_shapes[-1])
        mean, variance = self._top_prior(labels)
        mean = ops.zeros(shape) if mean is None else ops.broadcast_to(mean, shape)
        variance = ops.ones(shape) if variance is None else ops.broadcast_to(variance, shape)
        if temperature is not None:
            variance = variance * ops.square(ops.cast(temperature, "float32"))
        if noise is not None:
            return self._given_draw(noise, self.num_layers - 1, mean, variance)
        return distributions.sample_normal(mean, variance, self._layer_seed(seed, self.num_layers))

    def _descend(self, z, above, start, stop, seed, sample, temperature=None, training=False,
                noise=None, labels=None):
        """Down the generative path from z = z_{start+1} (0-based index `start`) to
        z_{stop+1}, each layer drawn from p(z_i | z_{>i}) (`sample`; standard
        deviation x temperature[i] when given; `noise`: see `posterior_trace`) or at
        its mean. `labels`: [rows] of a conditional model. Returns (z, the features of
        the last rung, for skip connections)."""
        for i in reversed(range(stop, start)):
            mean, variance, above = self.prior_params(i, z, above, training, labels)
            if temperature is not None:
                variance = variance * ops.square(ops.cast(temperature[i], "float32"))
            z = self._prior_draw(i, mean, variance, seed, noise) if sample else mean
        return z, above
