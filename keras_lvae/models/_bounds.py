"""The bounds of `LadderVAE` on data: the ELBO's terms, the training loss, KL per unit
and importance weights. A mixin; the maths are `keras_lvae.objectives`' pure functions,
fed by the passes (`_passes.py`)."""

import keras

from keras_lvae import _checks, objectives


class Bounds:
    """Per-example terms of the ELBO and of L_k for images in [0, 1]."""

    def _analytic_kl(self):
        """Per layer, whether its KL has a closed form (see `objectives.kl_per_unit`)."""
        return [self.inference == "ladder" or i == self.num_layers - 1
                for i in range(self.num_layers)]

    def elbo_terms(self, x, training=False, seed=None, labels=None):
        """Per-example ELBO terms (nats, shape [batch]) with one posterior sample.

        Returns a dict with `reconstruction_loss` (-log p(x|z_1)), `kl_layers`
        (a list, bottom to top), `kl_loss` (their sum) and `nelbo` (their total:
        the negative ELBO). `test_step` uses this method. `seed`: an optional
        int32[2] tensor for stateless sampling (same seed, same sample). A conditional
        model (`num_classes`) needs `labels`, one int per example: then the terms
        bound log p(x | y).
        """
        x = self.prepare(x)
        trace, log_px = self._posterior_samples(x, 1, training, seed,
                                               labels=self.prepare_labels(labels, x))
        return objectives.elbo_terms(trace, log_px, self._analytic_kl())

    def training_objective(self, x, beta=1.0, training=False, allow_nan=False, labels=None):
        """Per-example training loss with `mc_samples` x `iw_samples` samples.

        Returns `(loss, terms)`: `loss` has shape [batch]; `terms` are the ELBO
        terms of `elbo_terms`, averaged over all the samples. With
        `iw_samples` = 1 the loss is reconstruction + beta * KL (analytic KL
        where `elbo_terms` uses it); with k > 1 it is -L_k with importance
        weights log p(x|z) + beta * (log p(z) - log q(z|x)); both are averaged
        over the `mc_samples`. `train_step` minimises the batch mean. `allow_nan`
        lets NaN inputs through (the guarded train step then skips the step).
        See `keras_lvae.objectives.training_loss`.
        """
        samples = self.mc_samples * self.iw_samples
        x = self.prepare(x, allow_nan)
        trace, log_px = self._posterior_samples(x, samples, training,
                                               labels=self.prepare_labels(labels, x))
        return objectives.training_loss(
            objectives.elbo_terms(trace, log_px, self._analytic_kl()),
            lambda: log_px + beta * objectives.log_prior_ratio(trace),
            self.mc_samples, self.iw_samples, beta, self.free_bits, self.kl_balance)

    def kl_per_unit(self, x, training=False, labels=None):
        """KL(q || p) per example and latent unit, one [batch, units] tensor per layer.

        The same estimator as the ELBO: analytic for the top layer and for ladder
        inference, the one-sample log q - log p for lower bottom-up layers.
        """
        x = self.prepare(x)
        trace = self.posterior_trace(x, training, sample=True,
                                     labels=self.prepare_labels(labels, x))
        return objectives.kl_per_unit(trace, self._analytic_kl())

    def importance_log_weights(self, x, num_samples=1, training=False, seed=None, noise=None,
                               labels=None):
        """log p(x, z) - log q(z | x) for `num_samples` posterior samples per example.

        Returns shape [num_samples, batch]. Its log-mean-exp over the samples is
        the importance-weighted bound L_k (see `keras_lvae.log_likelihood`). With
        ladder inference the deterministic bottom-up pass depends only on x, so it
        runs once per example and its output is shared by all the samples.
        `seed`: an optional int32[2] tensor for stateless sampling. `noise`: the
        standard-normal draws to use, one [num_samples, batch, *latent shape] tensor
        per layer, bottom to top (the portable exports' `score`). `labels`: see
        `elbo_terms` (the bound is then L_k of log p(x | y)).
        """
        x = self.prepare(x)
        trace, log_px = self._posterior_samples(x, num_samples, training, seed, noise,
                                               self.prepare_labels(labels, x))
        return keras.ops.reshape(log_px + objectives.log_prior_ratio(trace), (num_samples, -1))

    def skip_log_weights(self, x, num_samples=1, seed=None, ratios=None, labels=None):
        """Importance log-weights of L and of Havtorn et al.'s L^{>k} for each k in
        `ratios` (default: 1 ... L-1).

        Returns shape [1 + len(ratios), num_samples, batch]; the log-mean-exp over the
        samples of row 0 is L (the same draws as `importance_log_weights` with the same
        `seed`), of the next rows L^{>k}. L^{>k}'s proposal keeps q for z_{>k} and draws z_k ... z_1 from
        p(z_i | z_{>i}), whose p / q cancels: its weight is log p(x | z_1) +
        sum_{i>k} log p(z_i | z_{>i}) - log q(z_i | x). Every row shares the
        posterior samples of z_{>k}, so a ratio L - L^{>k} costs the k lower prior
        layers and p(x | z_1), not a second pass (and its two bounds' noise is
        shared). Needs ladder inference (with bottom-up inference q(z_{>k} | x)
        depends on the lower layers' samples). See `keras_lvae.ood_scores`.

        Reference: Havtorn, Frellsen, Hauberg and Maaløe, "Hierarchical VAEs Know
        What They Don't Know", ICML 2021, section 4 (the bound L^{>k}).
        """
        if self.inference != "ladder":
            raise ValueError("The bounds L^{>k} need inference='ladder': with bottom-up "
                             "inference q(z_{>k} | x) depends on the lower layers' samples, "
                             f"received inference={self.inference!r}.")
        ratios = _checks.layer_indices("ratios", ratios, 1, self.num_layers - 1)
        x = self.prepare(x)
        labels = self.prepare_labels(labels, x)
        trace, log_px = self._posterior_samples(x, num_samples, seed=seed, labels=labels)
        x_rows = self._sample_rows(x, num_samples)
        label_rows = None if labels is None else self._sample_rows(labels, num_samples)
        weights = [log_px + objectives.log_prior_ratio(trace)]
        for k in ratios:
            # Its own stream: the posterior's layers draw with fold_in(seed, i), i < L.
            branch_seed = self._layer_seed(seed, self.num_layers + k)
            below = trace[k - 1]  # p(z_k | z_{>k}) is known from the posterior pass
            z = self._prior_draw(k - 1, below["p_mean"], below["p_variance"], branch_seed)
            z_1, _ = self._descend(z, below["features"], k - 1, 0, branch_seed, sample=True,
                                  labels=label_rows)
            weights.append(self._log_px(x_rows, z_1, False)
                           + objectives.log_prior_ratio(trace[k:]))
        return keras.ops.reshape(keras.ops.stack(weights), (len(weights), num_samples, -1))
