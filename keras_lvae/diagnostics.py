"""Latent diagnostics: how much each stochastic layer is used over a dataset (KL per layer,
unit and channel; active units by the paper's and Burda et al.'s criteria)."""

import numpy as np

from keras_lvae import _checks
from keras_lvae.evaluation import model_batches

# The paper's active-unit criterion: a unit is active when its KL exceeds this many nats.
ACTIVE_UNIT_THRESHOLD = 0.01


def latent_diagnostics(model, data, *, batch_size=100, threshold=ACTIVE_UNIT_THRESHOLD):
    """How much each stochastic layer is used, averaged over a dataset.

    Per layer (bottom to top) a dict with:
    - `kl_per_unit`: KL(q || p) per latent unit in nats, averaged over the data
      (the ELBO's own estimator, one posterior sample per example), in the
      latent's shape: [units], or [height, width, channels] for feature maps;
    - `kl`: their sum;
    - `kl_per_channel`: `kl_per_unit` summed over positions (the last axis
      kept; for vector latents the same as `kl_per_unit`);
    - `posterior_mean_variance`: Cov_x(E_q[u]), the variance over the data of
      each unit's posterior mean (from `model.encode`), in the latent's shape;
    - `active_units_kl`: units with KL > threshold (the paper's criterion);
    - `active_units_cov`: units with Cov_x(E_q[u]) > threshold (Burda et al.'s);
    - `active_channels`: channels with at least one unit of KL > threshold.

    Example:
    >>> import numpy as np, keras_lvae
    >>> model = keras_lvae.LadderVAE(latent_dims=(3, 2), hidden_dims=(8, 4), seed=1)
    >>> x = (np.random.default_rng(0).random((20, 6)) < 0.5).astype("float32")
    >>> [layer["kl_per_unit"].shape for layer in latent_diagnostics(model, x)]
    [(3,), (2,)]
    """
    _checks.positive_int("batch_size", batch_size)
    kl_sums, mean_sums, square_sums, count = None, None, None, 0
    for batch, labels in model_batches(model, data, batch_size):
        kls = [np.asarray(k, np.float64).sum(0) for k in model.kl_per_unit(batch, labels=labels)]
        means = [np.asarray(m, np.float64) for m, _ in model.encode(batch, labels)]
        if kl_sums is None:
            kl_sums = [np.zeros_like(k) for k in kls]
            mean_sums = [np.zeros(m.shape[1:]) for m in means]
            square_sums = [np.zeros(m.shape[1:]) for m in means]
        for i, (k, m) in enumerate(zip(kls, means)):
            kl_sums[i] += k
            mean_sums[i] += m.sum(0)
            square_sums[i] += (m**2).sum(0)
        count += int(batch.shape[0])
    if count == 0:
        raise ValueError("Invalid value for argument `data`: expected at least one example, received none.")
    layers = []
    for kl_sum, mean_sum, square_sum in zip(kl_sums, mean_sums, square_sums):
        kl = kl_sum / count
        variance = np.maximum(square_sum / count - (mean_sum / count) ** 2, 0.0)
        per_channel = kl.reshape(-1, kl.shape[-1])
        layers.append(dict(kl_per_unit=kl, kl=float(kl.sum()),
                           kl_per_channel=per_channel.sum(0),
                           posterior_mean_variance=variance,
                           active_units_kl=int((kl > threshold).sum()),
                           active_units_cov=int((variance > threshold).sum()),
                           active_channels=int((per_channel > threshold).any(0).sum())))
    return layers
