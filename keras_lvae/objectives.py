"""The model's objectives as pure functions of a pass's per-layer terms.

A *trace* is what the model's passes return (`LadderVAE.posterior_trace`): per layer,
bottom to top, its sample `z` and the parameters of q and of p(z_i | z_{>i}). From it
and log p(x | z_1) these functions give the ELBO's terms, the importance weights of
L_k, and the training loss with its options (warm-up, free bits, KL balancing,
Monte Carlo and importance samples). All values are per row, in nats.

Example:
>>> import numpy as np
>>> layer = dict(z=np.zeros((2, 3), "float32"), q_mean=np.zeros((2, 3), "float32"),
...              q_variance=np.ones((2, 3), "float32"), p_mean=None, p_variance=None)
>>> terms = elbo_terms([layer], np.array([-5.0, -7.0], "float32"), analytic=[True])
>>> terms["nelbo"].numpy().tolist()
[5.0, 7.0]
"""

import math

from keras import ops

from keras_lvae import densities, distributions, schedules


def kl_per_unit(trace, analytic):
    """KL(q || p) per row and latent unit, one tensor per layer, bottom to top.

    `analytic[i]` says whether layer i's KL has a closed form given the sample above
    (the top layer, and every layer of ladder inference); otherwise it is the
    one-sample estimate log q(z) - log p(z) (bottom-up inference draws z_{i+1}
    after z_i).
    """
    kls = []
    for t, closed_form in zip(trace, analytic):
        if closed_form:
            kls.append(densities.gaussian_kl_per_unit(
                t["q_mean"], t["q_variance"], t["p_mean"], t["p_variance"]))
        else:
            kls.append(distributions.normal_log_prob(t["z"], t["q_mean"], t["q_variance"])
                       - distributions.normal_log_prob(t["z"], t["p_mean"], t["p_variance"]))
    return kls


def elbo_terms(trace, log_px, analytic):
    """The ELBO's terms per row: `reconstruction_loss` (-log p(x|z_1)), `kl_layers`
    (bottom to top), `kl_loss` (their sum) and `nelbo` (the negative ELBO)."""
    kl_layers = [densities.per_example_sum(kl) for kl in kl_per_unit(trace, analytic)]
    kl_loss = ops.sum(ops.stack(kl_layers, axis=0), axis=0)
    return dict(reconstruction_loss=-log_px, kl_layers=kl_layers, kl_loss=kl_loss,
                nelbo=-log_px + kl_loss)


def log_prior_ratio(trace):
    """log p(z) - log q(z | x) per row, summed over the layers (one sample each)."""
    # p_mean is None for an N(0, I) top prior.
    return sum(densities.gaussian_log_prob(t["z"], t["p_mean"], t["p_variance"])
               - densities.gaussian_log_prob(t["z"], t["q_mean"], t["q_variance"])
               for t in trace)


def training_loss(terms, log_weights, mc_samples, iw_samples, beta, free_bits=0.0,
                  kl_balance=False):
    """The per-example training loss and the terms averaged over the samples.

    `terms` are `elbo_terms` of mc_samples x iw_samples sample-major rows per
    example; `log_weights` is a function returning log p(x|z) + beta (log p(z) -
    log q(z|x)) per row (called only for importance-weighted training). With
    `iw_samples` = 1 the loss is reconstruction + beta * KL, each layer's KL
    clamped below at `free_bits` and, with `kl_balance`, weighted by
    `schedules.kl_balance_weights`; with k > 1 it is -L_k. Both are averaged over
    the `mc_samples`. Returns (loss [batch], averaged terms; with `kl_balance`
    the terms also hold `kl_weights`).
    """
    samples = mc_samples * iw_samples

    def per_example(values):  # [samples * batch] -> [samples, batch]
        return ops.reshape(values, (samples, -1))

    kl_weights = None
    if iw_samples == 1:
        kl, kls = terms["kl_loss"], terms["kl_layers"]
        if free_bits > 0:
            kls = [ops.maximum(k, free_bits) for k in kls]
        if kl_balance:
            kl_weights = schedules.kl_balance_weights([ops.mean(k) for k in kls], beta)
            kls = [w * k for w, k in zip(kl_weights, kls)]
        if free_bits > 0 or kl_balance:
            kl = sum(kls)
        loss = ops.mean(per_example(terms["reconstruction_loss"] + beta * kl), 0)
    elif free_bits > 0 or kl_balance:
        option = f"free_bits={free_bits}" if free_bits > 0 else "kl_balance=True"
        raise ValueError(
            f"{option} applies to the ELBO's KL terms, which the importance-weighted loss "
            f"(iw_samples={iw_samples}) does not have: turn it off for importance-weighted "
            "training.")
    else:
        weights = ops.reshape(log_weights(), (mc_samples, iw_samples, -1))
        loss = -ops.mean(ops.logsumexp(weights, axis=1) - math.log(iw_samples), axis=0)
    averaged = {name: [ops.mean(per_example(v), 0) for v in value] if name == "kl_layers"
                else ops.mean(per_example(value), 0) for name, value in terms.items()}
    if kl_weights is not None:
        averaged["kl_weights"] = kl_weights
    return loss, averaged
