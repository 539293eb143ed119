"""Generation from the prior: samples, temperature, interpolation, per-layer variations.
A mixin of `LadderVAE`, built on its passes (`_sample_top`, `_descend`)."""

import numpy as np
import tensorflow as tf
from keras import ops

from keras_lvae import _checks, inputs


class Generation:
    """What a trained ladder draws: `generate`, `interpolate`, `layer_variations`."""

    def generate(self, num_samples, seed=None, temperature=1.0, labels=None):
        """Ancestral samples from the prior: z_L ~ p(z_L), z_i ~ p(z_i|z_{>i}), then decode.

        Returns the mean of p(x | z_1) for each sample, shaped like the inputs.
        `seed` (int) makes the result reproducible and leaves the model's
        random state untouched; by default the model's SeedGenerator is used.
        `temperature` scales the prior's standard deviation at every layer: one
        number, or one per layer (bottom to top). 0 gives the prior means, 1 the
        model's prior; values below 1 trade diversity for cleaner samples.
        A conditional model needs `labels`: one int for every sample, or one per
        sample (the class each is drawn from).
        Reference: sampling temperature of NVAE (Vahdat & Kautz, 2020).
        """
        self.require_built("generate")
        _checks.positive_int("num_samples", num_samples)
        labels = inputs.labels(labels, self.num_classes, num_samples)
        if seed is None:
            base_seed = ops.cast(self.seed_generator.next(), "int32")
        else:
            base_seed = tf.constant([seed, 0], dtype=tf.int32)
        return self.generate_stateless(num_samples, base_seed, self.temperatures(temperature),
                                       labels=labels)

    def temperatures(self, temperature):
        """One non-negative float per layer, bottom to top, from a number or a list."""
        values = (list(temperature) if isinstance(temperature, (list, tuple))
                  else [temperature] * self.num_layers)
        note = f" (or one per stochastic layer, {self.num_layers})"
        if len(values) != self.num_layers:
            raise ValueError(f"Invalid value for argument `temperature`: expected a number >= 0"
                             f"{note}, received {temperature!r}.")
        return [_checks.non_negative_number("temperature", t, note) for t in values]

    def generate_stateless(self, num_samples, seed, temperature=None, training=False,
                           labels=None):
        """`generate` from an int32[2] seed tensor, with only stateless ops.

        `num_samples` may be a scalar tensor; the same seed gives the same images.
        `temperature`: None (1 everywhere) or one value per layer, bottom to top
        (floats or a float32 [num_layers] tensor). This is what the exported
        `generate` and `generate_at_temperature` signatures run. With
        `training=True` the batch norms of the generative path use (and update)
        the samples' batch statistics (`readjust_batch_norm`). `labels`: checked
        int32 [num_samples] of a conditional model.
        """
        if labels is None and self.num_classes is not None:
            inputs.labels(None, self.num_classes, num_samples)  # the error naming `labels`
        z = self._sample_top(num_samples, seed, None if temperature is None else temperature[-1],
                            labels=labels)
        z, _ = self._descend(z, None, self.num_layers - 1, 0, seed, sample=True,
                            temperature=temperature, training=training, labels=labels)
        return self._images(self.output_params(z, training=training))

    def generate_from_noise(self, noise, training=False):
        """Prior samples made of the caller's standard-normal draws: `noise`, one
        [batch, *latent shape] tensor per layer, bottom to top; z_L = mean + sd x
        noise_L, then down p(z_i | z_{>i}). Returns the mean of p(x | z_1). What the
        portable exports' `generate` runs (runtimes do not share random numbers).

        Example:
        >>> import numpy as np, keras_lvae
        >>> model = keras_lvae.LadderVAE(latent_dims=(3, 2), hidden_dims=(8, 4), seed=1)
        >>> _ = model(np.zeros((1, 6), "float32"))
        >>> noise = [np.ones((2, 3), "float32"), np.ones((2, 2), "float32")]
        >>> tuple(model.generate_from_noise(noise).shape)
        (2, 6)
        """
        self.require_built("generate_from_noise")
        rows = ops.shape(noise[-1])[0]
        z = self._sample_top(rows, None, noise=noise)
        z, _ = self._descend(z, None, self.num_layers - 1, 0, None, sample=True,
                            training=training, noise=noise)
        return self._images(self.output_params(z, training=training))

    def interpolate(self, x_a, x_b, steps=8, layer=None, method="slerp", labels=None):
        """Images along a path between two inputs in one layer's latent space.

        The chosen `layer` (1 = bottom; default the top) goes from x_a's
        posterior mean to x_b's in `steps` points, spherically ("slerp", around
        the prior's centre) or linearly ("linear"); the layers above sit at their
        prior means, the layers below at their conditional means. Returns means
        of p(x | z_1), shape [steps, *image] for one pair, or [pairs, steps,
        *image] for batches of pairs. With `layer=1` the endpoints are the
        model's reconstructions of x_a and x_b. A conditional model interpolates
        within a class: `labels`, one int (or one per pair), for both ends and the
        path.
        """
        self.require_built("interpolate")
        _checks.positive_int("steps", steps)
        layer = self._checked_layer(self.num_layers if layer is None else layer)
        _checks.one_of("method", method, ("slerp", "linear"))
        single = len(np.shape(inputs.unpack(x_a))) == len(self.feature_shape)
        x_a, x_b = ((x[None] if single else x) for x in (np.asarray(x_a), np.asarray(x_b)))
        labels = inputs.labels(labels, self.num_classes, len(x_a))
        images = self.interpolation(x_a, x_b, ops.linspace(0.0, 1.0, steps), layer - 1, method,
                                    labels)
        return images[0] if single else images

    def interpolation(self, x_a, x_b, t, i, method="slerp", labels=None):
        """`interpolate`'s computation on tensors (also the exported signature's): batches
        x_a, x_b, fractions t [steps], 0-based layer i, checked `labels` [pairs] of a
        conditional model; returns [pairs, steps, *image]."""
        m_a, m_b = (ops.convert_to_tensor(self.encode(x, labels)[i][0]) for x in (x_a, x_b))
        rank = len(self.latent_shapes[i])
        t = ops.reshape(t, (1, -1) + (1,) * rank)
        a, b = ops.expand_dims(m_a, 1), ops.expand_dims(m_b, 1)
        if method == "linear":
            path = (1 - t) * a + t * b
        else:  # slerp of the flattened means; linear where they are (anti)parallel
            flat_a = ops.reshape(m_a, (ops.shape(m_a)[0], -1))
            flat_b = ops.reshape(m_b, (ops.shape(m_b)[0], -1))
            cosine = ops.sum(flat_a * flat_b, -1) / (
                ops.norm(flat_a, axis=-1) * ops.norm(flat_b, axis=-1) + 1e-12)
            omega = ops.reshape(ops.arccos(ops.clip(cosine, -1.0, 1.0)), (-1, 1) + (1,) * rank)
            safe = ops.maximum(ops.sin(omega), 1e-6)
            slerp = (ops.sin((1 - t) * omega) * a + ops.sin(t * omega) * b) / safe
            path = ops.where(omega > 1e-3, slerp, (1 - t) * a + t * b)
        z = ops.reshape(path, (-1, *self.latent_shapes[i]))
        steps = ops.shape(t)[1]
        # A conditional model's label of each image of the path: its pair's.
        path_labels = None if labels is None else ops.repeat(labels, steps, axis=0)
        above = None
        if i < self.num_layers - 1:  # the features of the layers above, at their prior means
            top_mean, _ = self._top_prior(path_labels)
            top = ops.zeros((1, *self.latent_shapes[-1])) if top_mean is None else top_mean
            # (down to rung i: the features that p(z_layer) is computed from)
            _, above = self._descend(top, None, self.num_layers - 1, i, None, sample=False,
                                    labels=path_labels)
            if above is not None and labels is None:
                above = ops.repeat(above, ops.shape(z)[0], axis=0)
        z, _ = self._descend(z, above, i, 0, None, sample=False, labels=path_labels)
        return ops.reshape(self.decode(z), (ops.shape(m_a)[0], -1, *self.feature_shape))

    def layer_variations(self, layer, rows=4, columns=8, seed=0, labels=None):
        """What stochastic layer `layer` (1 = bottom) controls, as images.

        Each row draws z_{>layer} once from the prior; each column then draws
        z_layer ~ p(z_layer | z_{>layer}) anew, and the layers below take their
        conditional means. Returns means of p(x | z_1), shape
        [rows, columns, *image]. For the top layer every image is its own
        draw (nothing is above it). A conditional model needs `labels`: one int, or
        one per row (each row's class).

        Reference: the per-layer sample figures of addtt/ladder-vae-pytorch.
        """
        self.require_built("layer_variations")
        self._checked_layer(layer)
        _checks.positive_int("rows", rows)
        _checks.positive_int("columns", columns)
        labels = inputs.labels(labels, self.num_classes, rows)
        cells = None if labels is None else ops.repeat(labels, columns, axis=0)
        seed = tf.constant([_checks.optional_int("seed", seed) or 0, 1], tf.int32)
        fold = tf.random.experimental.stateless_fold_in
        i = layer - 1  # 0-based
        if i == self.num_layers - 1:
            z, above = self._sample_top(rows * columns, seed, labels=cells), None
        else:
            z, above = self._descend(self._sample_top(rows, seed, labels=labels), None,
                                    self.num_layers - 1, i + 1, seed, sample=True, labels=labels)
            z, above = (None if t is None else ops.repeat(t, columns, axis=0) for t in (z, above))
            z, above = self._descend(z, above, i + 1, i, fold(seed, 1), sample=True, labels=cells)
        z, _ = self._descend(z, above, i, 0, seed, sample=False, labels=cells)
        return ops.reshape(self.decode(z), (rows, columns, *self.feature_shape))

    def _checked_layer(self, layer):
        """`layer` if it numbers a stochastic layer (1 = bottom), else ValueError."""
        if not (_checks.is_int(layer) and 1 <= layer <= self.num_layers):
            raise ValueError(f"Invalid value for argument `layer`: expected an int from 1 to "
                             f"{self.num_layers}, received {layer!r}.")
        return layer

    def require_built(self, method):
        """ValueError naming `method` unless the model is built."""
        if not self.built:
            raise ValueError(
                f"`{method}()` needs a built model: call the model on data, fit it, or "
                "call `model.build((None, *image_shape))` first."
            )
