import contextlib
import math
import warnings

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_lvae import (_checks, densities, distributions, inputs, logistic_mixture, schedules,
                        update_skipping)
from keras_lvae.layers import LadderMerge, MLPBlock, StochasticGaussian
from keras_lvae.schedules import check_warmup_steps, warmup_beta

INFERENCE_TYPES = ("ladder", "bottom_up")
LIKELIHOODS = ("bernoulli", "gaussian")

# Offsets added to `seed` so that every group of layers draws its own stream: layer i of
# a group gets seed + offset + i (layer counts stay far below 1000).
ENCODER_SEED_OFFSET = 0
DECODER_SEED_OFFSET = 1000
TOP_DOWN_SEED_OFFSET = 2000
GENERATION_SEED_OFFSET = 3000
OUTPUT_SEED_OFFSET = 4000
# Weight initialisation uses its own streams, so that seeding it leaves the sampling
# noise of earlier versions unchanged.
INITIALIZER_SEED_OFFSET = 10000


def _checked_positive_int_property(name):
    """A property that stores `_<name>` and refuses anything but a positive int."""
    def get(self):
        return getattr(self, "_" + name)

    def set(self, value):
        setattr(self, "_" + name, _checks.positive_int(name, value))

    return property(get, set)


@keras.saving.register_keras_serializable(package="keras_lvae")
class LadderVAE(keras.Model):
    """Ladder Variational Autoencoder (Sønderby et al., 2016) and its VAE baseline.

    Stochastic layers z_1 (bottom) ... z_L (top). Generative model:
    p(z_L) = N(0, I), p(z_i | z_{i+1}) Gaussian, p(x | z_1) Bernoulli or Gaussian.
    Inference is either the paper's top-down ladder (`"ladder"`: a deterministic
    bottom-up pass, then precision-weighted merges on the way down) or the
    bottom-up chain q(z_1|x) q(z_2|z_1) ... (`"bottom_up"`, the VAE baseline).

    Every map to a stochastic layer is an `MLPBlock` followed by a
    `StochasticGaussian` head; the block that produces z_i has width
    `hidden_dims[i]` in both directions, and p(x | z_1) uses `hidden_dims[0]`.

    KL terms: analytic for the top layer and, with ladder inference, for every
    layer (q(z_i|.) and p(z_i|z_{i+1}) share the sampled z_{i+1}); with bottom-up
    inference z_{i+1} is drawn after z_i, so lower layers use the one-sample
    estimate log q(z_i|z_{i-1}) - log p(z_i|z_{i+1}).

    Args:
        latent_dims: latent sizes, bottom to top, e.g. (64, 32, 16, 8, 4).
        hidden_dims: one MLP width per stochastic layer, e.g. (512, 256, 128, 64, 32).
        inference: "ladder" or "bottom_up".
        dense_per_block: dense layers in each MLP block.
        likelihood: "bernoulli" (binary data) or "gaussian" (continuous data).
        batch_norm: batch norm in the MLP blocks and on the Gaussian heads.
        share_top_down: ladder only; the inference top-down path uses the
            generative p(z_i | z_{i+1}) parameters (True) or its own (False).
        warmup_steps: KL weight beta = min(1, step / warmup_steps); 0 means beta = 1.
            The step is the model's own `trained_steps` counter (training steps
            taken, saved with the model), so a recompile or a new optimizer
            continues the warm-up where it was.
        skip_nonfinite_steps: when a training step's loss or a gradient is NaN
            or Inf (e.g. a batch with NaN pixels), skip the update, restore the
            batch-norm statistics, leave the metrics alone and count the step
            in the logged `skipped_steps` (per epoch), instead of destroying
            the weights. Off by default: a NaN input then raises.
        mc_samples: Monte Carlo samples per example in each training step; the
            loss is their average.
        iw_samples: importance samples per Monte Carlo sample. 1 trains on the
            ELBO; k > 1 trains on the importance-weighted bound L_k (the paper's
            fine-tuning uses 10 and 10). During warm-up beta scales
            log p(z) - log q(z) inside each importance weight.
        skip: generative skip connections: the block that computes
            p(z_i | z_{>i}) also receives the features of the block above
            (concatenated with z_{i+1}), so each prior conditions on every layer
            above, not only the next. p(x | z_1) keeps conditioning on z_1 alone,
            so `decode(z_1)` means the same with and without.
            Reference: `--skip` of addtt/ladder-vae-pytorch.
        free_bits: lambda >= 0 in nats. When > 0 the training loss uses
            max(KL_i, lambda) for each layer i and each example (and sample) in
            place of KL_i: a layer whose KL is below lambda gets no push towards
            the prior. The logged `nelbo`, `kl_loss` and `kl_layer_i` stay the
            true bound and its terms. Not defined for `iw_samples` > 1.
            Reference: Kingma et al. 2016 (IAF), per-layer groups, clamped per
            example as in addtt/ladder-vae-pytorch (`free_bits_kl`).
        kl_balance: during the warm-up (beta < 1) weight each layer's KL by its
            share of the batch's mean KL (`keras_lvae.schedules.kl_balance_weights`,
            NVAE's KL balancing), so no layer switches off early; logged as
            `kl_weight_<i>`. With beta = 1 it changes nothing. Not defined for
            `iw_samples` > 1.
        learn_top_prior: p(z_L) = N(mean, variance) with a trainable mean and
            log-variance per unit (initialised to N(0, I)) instead of N(0, I).
        skip_threshold: > 0 skips (and counts in `skipped_steps`) any update
            whose global gradient norm exceeds it; 0 is off.
        adaptive_skip_factor: > 0 skips updates whose global gradient norm
            exceeds this multiple of the 0.95 quantile of the last
            `adaptive_skip_window` norms (skipped ones included, so the threshold
            follows a lasting change of scale); until 10 norms are known the
            fixed `skip_threshold` (if any) applies. Norms are of the unscaled
            gradients, before the optimizer's own clipping (`global_clipnorm`).
            See `keras_lvae.update_skipping`. Under a multi-replica
            tf.distribute strategy the replicas decide together, on the norm of
            their summed gradients.
        adaptive_skip_window: norms the adaptive rule remembers.
        ema_decay: in [0, 1); > 0 keeps an exponential moving average of the
            trainable weights, ema = decay * ema + (1 - decay) * weights after
            every update (starting from the initial weights, no bias
            correction); the batch norms' moving statistics are averaged
            alike. `evaluate` (and so fit's validation) runs with the
            averages; `with model.ema_weights_applied():` or
            `model.use_ema_weights()` use them elsewhere. Saved with the model
            and in checkpoints. Reference: the EMA weights of openai/vdvae.
        seed: int or None. An int makes the model reproducible: it seeds the
            weight initialisation and every sampling layer (training noise,
            `generate`, evaluation). Data order and binarization are the data
            pipeline's own seed (`keras_lvae.data.load_dataset(seed=...)`).

    The rungs (the deterministic blocks between stochastic layers) are MLP
    blocks here; `ConvLadderVAE` swaps in convolutional rungs with spatial
    latents and keeps everything else.

    Inputs are images of any fixed shape with values in [0, 1]; dataset
    elements may be `x`, `(x, y)` or `{"image": x, ...}`. Calling the model
    returns the deterministic reconstruction (from posterior means), with the
    input's shape.

    Example:
    >>> import numpy as np, keras
    >>> model = LadderVAE(latent_dims=(4, 2), hidden_dims=(16, 8), seed=1)
    >>> model.compile(optimizer=keras.optimizers.Adam(1e-3))
    >>> x = (np.random.default_rng(0).random((64, 10)) < 0.5).astype("float32")
    >>> history = model.fit(x, batch_size=32, epochs=1, verbose=0)
    >>> sorted(history.history)[:4]
    ['beta', 'kl_layer_1', 'kl_layer_2', 'kl_loss']
    >>> tuple(model(x[:3]).shape)
    (3, 10)
    """

    # Pixel likelihoods this architecture offers (ConvLadderVAE adds "logistic_mixture").
    LIKELIHOODS = LIKELIHOODS

    def __init__(
        self,
        latent_dims=(64, 32, 16, 8, 4),
        hidden_dims=(512, 256, 128, 64, 32),
        inference="ladder",
        dense_per_block=2,
        likelihood="bernoulli",
        batch_norm=True,
        share_top_down=True,
        warmup_steps=0,
        mc_samples=1,
        iw_samples=1,
        skip_nonfinite_steps=False,
        skip=False,
        free_bits=0.0,
        kl_balance=False,
        learn_top_prior=False,
        skip_threshold=0.0,
        adaptive_skip_factor=0.0,
        adaptive_skip_window=200,
        ema_decay=0.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.latent_dims = _checks.positive_int_tuple("latent_dims", latent_dims)
        self.hidden_dims = _checks.positive_int_tuple("hidden_dims", hidden_dims)
        _checks.one_per_layer("hidden_dims", self.hidden_dims, "latent_dims", self.latent_dims)
        self.inference = _checks.one_of("inference", inference, INFERENCE_TYPES)
        self.dense_per_block = _checks.positive_int("dense_per_block", dense_per_block)
        self.likelihood = _checks.one_of("likelihood", likelihood, self.LIKELIHOODS)
        self.batch_norm = bool(batch_norm)
        self.share_top_down = bool(share_top_down)
        self.warmup_steps = check_warmup_steps(warmup_steps)
        self.mc_samples = mc_samples
        self.iw_samples = iw_samples
        self.skip_nonfinite_steps = bool(skip_nonfinite_steps)
        self.skip = bool(skip)
        self.free_bits = _checks.non_negative_number("free_bits", free_bits, " (nats per layer)")
        self.learn_top_prior = bool(learn_top_prior)
        self.kl_balance = bool(kl_balance)
        if not (isinstance(ema_decay, (int, float)) and not isinstance(ema_decay, bool)
                and 0 <= ema_decay < 1):
            raise ValueError("Invalid value for argument `ema_decay`: expected a number in "
                             f"[0, 1) (0: no moving average), received {ema_decay!r}.")
        self.ema_decay = float(ema_decay)
        self.ema_variables = []  # filled in build() when ema_decay > 0
        self._holds_averages = False  # use_ema_weights() was called, fit() not since
        self.skip_threshold = _checks.non_negative_number("skip_threshold", skip_threshold,
                                                          " (0: off)")
        self.adaptive_skip_factor = _checks.non_negative_number(
            "adaptive_skip_factor", adaptive_skip_factor, " (0: off)")
        self.adaptive_skip_window = _checks.positive_int("adaptive_skip_window",
                                                         adaptive_skip_window)
        self.seed = _checks.optional_int("seed", seed)
        self.num_layers = len(self.latent_dims)
        block, head = self._block, self._head

        lower = range(self.num_layers - 1)
        # Index i of encoder_* produces z_{i+1}; of decoder_* / top_down_* it maps
        # z_{i+2} to the parameters of z_{i+1} (1-based names as in the paper).
        self.encoder_blocks = [block(i, "encoder_block", ENCODER_SEED_OFFSET)
                               for i in range(self.num_layers)]
        self.encoder_heads = [head(i, "encoder_head", ENCODER_SEED_OFFSET)
                              for i in range(self.num_layers)]
        self.decoder_blocks = [block(i, "decoder_block", DECODER_SEED_OFFSET) for i in lower]
        self.decoder_heads = [head(i, "decoder_head", DECODER_SEED_OFFSET) for i in lower]
        self.separate_top_down = self.inference == "ladder" and not self.share_top_down
        if self.separate_top_down:
            self.top_down_blocks = [block(i, "top_down_block", TOP_DOWN_SEED_OFFSET)
                                    for i in lower]
            self.top_down_heads = [head(i, "top_down_head", TOP_DOWN_SEED_OFFSET)
                                   for i in lower]
        if self.inference == "ladder":
            self.merge = LadderMerge(name="ladder_merge")
        self.output_block = block(0, "output_block", OUTPUT_SEED_OFFSET)
        self.seed_generator = keras.random.SeedGenerator(
            self._offset_seed(GENERATION_SEED_OFFSET), name="generation_seed_generator")
        # The warm-up follows this counter, not the optimizer's step, so that a new
        # optimizer (a second training stage, a recompile, a reload) keeps beta where
        # training left it. Saved with the model and in checkpoints.
        self.trained_steps = self.add_weight(
            shape=(), dtype="int64", initializer="zeros", trainable=False,
            aggregation="only_first_replica", name="trained_steps")

        if self.adaptive_skip_factor:  # the recent gradient norms (saved: exact resume)
            self.grad_norm_history = self.add_weight(
                shape=(self.adaptive_skip_window,), initializer="zeros", trainable=False,
                aggregation="only_first_replica", name="grad_norm_history")
            self.grad_norm_count = self.add_weight(
                shape=(), dtype="int64", initializer="zeros", trainable=False,
                aggregation="only_first_replica", name="grad_norm_count")

        mean = keras.metrics.Mean
        self.loss_tracker = mean(name="loss")
        self.nelbo_tracker = mean(name="nelbo")
        self.reconstruction_tracker = mean(name="reconstruction_loss")
        self.kl_tracker = mean(name="kl_loss")
        self.kl_layer_trackers = [mean(name=f"kl_layer_{i + 1}") for i in range(self.num_layers)]
        self.beta_tracker = mean(name="beta")
        # 8-bit data: the negative ELBO in bits per dimension as well (train and validation).
        self.bits_per_dim_tracker = (mean(name="bits_per_dim")
                                     if self.likelihood == "logistic_mixture" else None)
        self.kl_weight_trackers = ([mean(name=f"kl_weight_{i + 1}") for i in range(self.num_layers)]
                                   if self.kl_balance else [])
        self.skipped_tracker = keras.metrics.Sum(name="skipped_steps")

    # Settable for fine-tuning; call `compile()` afterwards so the step is retraced.
    mc_samples = _checked_positive_int_property("mc_samples")
    iw_samples = _checked_positive_int_property("iw_samples")

    # ------------------------------------------------------------ the parts
    # The rung, the stochastic head and the output layer are the parts an
    # architecture swaps (ConvLadderVAE overrides these methods); the ladder
    # around them is the same.
    def _offset_seed(self, offset):
        return None if self.seed is None else self.seed + offset

    def _block(self, i, name, offset):
        """The deterministic rung of layer i (0-based) in the path `name`."""
        # 16 seeds a block: dense j of block i starts from seed + offset + 16 i + j.
        return MLPBlock(self.hidden_dims[i], self.dense_per_block, self.batch_norm,
                        seed=self._offset_seed(INITIALIZER_SEED_OFFSET + offset + 16 * i),
                        name=f"{name}_{i + 1}")

    def _head(self, i, name, offset):
        """The Gaussian head that gives z_{i+1}'s mean and variance."""
        return StochasticGaussian(self.latent_dims[i], self.batch_norm,
                                  seed=self._offset_seed(offset + i), name=f"{name}_{i + 1}")

    def _layout(self, feature_shape):
        """The per-example shape the rungs work on: flat vectors for MLP rungs."""
        return (math.prod(feature_shape),)

    def _output_layer(self, layout):
        """The layer that maps the output rung's features to p(x | z_1)'s parameters."""
        output_seed = self._offset_seed(OUTPUT_SEED_OFFSET)
        if self.likelihood == "bernoulli":
            initializer = keras.initializers.GlorotUniform(output_seed)
            return keras.layers.Dense(layout[-1], kernel_initializer=initializer,
                                      name="output_logits")
        return StochasticGaussian(layout[-1], batch_norm=False, seed=output_seed,
                                  name="output_gaussian")

    def _encoder_input(self, x):
        """What the first rung sees (ConvLadderVAE pads to its downsampling)."""
        return x

    def _crop(self, params):
        """p(x | z_1)'s parameters cut back to the data's layout (see `_encoder_input`)."""
        return params

    # ------------------------------------------------------------------ build
    def build(self, input_shape):
        if isinstance(input_shape, dict):  # Keras passes a dict of shapes for dict elements
            input_shape = inputs.unpack(input_shape)
        input_shape = tuple(input_shape)
        if len(input_shape) < 2 or any(d is None for d in input_shape[1:]):
            raise ValueError(
                "Invalid input shape: expected (batch, features...) with known feature sizes, "
                f"received {input_shape}."
            )
        self.feature_shape = tuple(int(d) for d in input_shape[1:])
        self.num_features = math.prod(self.feature_shape)
        self.layout = self._layout(self.feature_shape)
        self.output_head = self._output_layer(self.layout)

        def features(layer, shape):  # a rung's output shape, or a head's mean's
            out = layer.compute_output_shape(shape)
            return tuple(out[1] if isinstance(out[0], tuple) else out)

        shape = tuple(self._encoder_input(keras.KerasTensor((1, *self.layout))).shape)
        shape = (None, *shape[1:])
        self.latent_shapes = []
        for i in range(self.num_layers):
            self.encoder_blocks[i].build(shape)
            hidden = features(self.encoder_blocks[i], shape)
            self.encoder_heads[i].build(hidden)
            self.latent_shapes.append(features(self.encoder_heads[i], hidden)[1:])
            # The ladder's bottom-up pass is deterministic; the VAE's chains samples.
            shape = hidden if self.inference == "ladder" else (None, *self.latent_shapes[i])

        def build_path(blocks, heads, skip):
            above = None  # the features of the block above (skip connections)
            for i in reversed(range(self.num_layers - 1)):
                shape = (None, *self.latent_shapes[i + 1])
                if skip and above is not None:
                    shape = shape[:-1] + (shape[-1] + above[-1],)
                blocks[i].build(shape)
                above = features(blocks[i], shape)
                heads[i].build(above)
                if features(heads[i], above)[1:] != self.latent_shapes[i]:
                    raise ValueError(
                        f"{blocks[i].name} maps z_{i + 2} {self.latent_shapes[i + 1]} to "
                        f"{features(heads[i], above)[1:]}, but the bottom-up pass gives z_{i + 1} "
                        f"the shape {self.latent_shapes[i]}.")

        build_path(self.decoder_blocks, self.decoder_heads, self.skip)
        if self.separate_top_down:
            build_path(self.top_down_blocks, self.top_down_heads, False)
        shape = (None, *self.latent_shapes[0])
        self.output_block.build(shape)
        hidden = features(self.output_block, shape)
        self.output_head.build(hidden)
        if self.learn_top_prior:
            top = self.latent_shapes[-1]
            self.top_prior_mean = self.add_weight(
                shape=top, initializer="zeros", name="top_prior_mean")
            self.top_prior_log_variance = self.add_weight(
                shape=top, initializer="zeros", name="top_prior_log_variance")
        if self.ema_decay and not self.ema_variables:
            for weight in self._ema_followed():  # named after the weight they follow
                name = "ema__" + weight.path.split("/", 1)[-1].replace("/", "__")
                average = self.add_weight(shape=weight.shape, initializer="zeros",
                                          trainable=False, aggregation="only_first_replica",
                                          name=name)
                self.ema_variables.append(average)
            self.restart_ema_weights()

    # ----------------------------------------------------------- input checks
    def _prepare(self, x, allow_nan=False):
        """Checked float32 inputs of shape [batch, *layout] (flattened for MLP rungs)."""
        x = inputs.unpack(x)
        if not hasattr(x, "shape"):
            x = np.asarray(x)
        if not self.built:
            self.build(tuple(x.shape))
        return inputs.images(x, self.feature_shape, unit_interval=self.likelihood != "gaussian",
                             allow_nan=allow_nan, layout=self.layout)

    # ---------------------------------------------------------------- passes
    def _prior_params(self, i, z_above, above, training):
        """p(z_{i+1} | z_{>i+1}) for 0-based layer index i: (mean, variance, features).

        `above` is the features of the block above (None at the top); with skip
        connections they join z_{i+2} as the block's input.
        """
        if self.skip and above is not None:
            z_above = ops.concatenate([z_above, ops.cast(above, z_above.dtype)], axis=-1)
        h = self.decoder_blocks[i](z_above, training=training)
        _, mean, variance = self.decoder_heads[i](h, training=training, sample=False)
        return mean, variance, h

    def _top_prior(self):
        """(mean, variance) of p(z_L), broadcastable to [batch, ...]; None for N(0, I)."""
        if not self.learn_top_prior:
            return None, None
        return (ops.expand_dims(ops.convert_to_tensor(self.top_prior_mean), 0),
                ops.expand_dims(ops.exp(self.top_prior_log_variance), 0))

    @staticmethod
    def _layer_seed(seed, i):
        """Stateless seed of layer i from an int32[2] `seed`; None uses the layer's generator."""
        return None if seed is None else tf.random.experimental.stateless_fold_in(seed, i)

    def _draw(self, i, mean, variance, sample, seed):
        """z_{i+1}: a sample from q through encoder head i, or the mean."""
        if not sample:
            return mean
        return self.encoder_heads[i].draw(mean, variance, seed=self._layer_seed(seed, i))

    def _posterior(self, x, training, sample, seed=None):
        """Run inference on flattened x.

        Returns a list, bottom to top, of dicts with the layer's `z` and the
        parameters of q (`q_mean`, `q_variance`) and of p(z_i | z_{i+1})
        (`p_mean`, `p_variance`; None for the top layer, whose prior is N(0, I)).
        With `sample=False` every z is its posterior mean. `seed` (int32[2])
        makes the sampling stateless.
        """
        num = self.num_layers
        trace = [None] * num
        if self.inference == "bottom_up":
            h = self._encoder_input(x)
            for i in range(num):
                d = self.encoder_blocks[i](h, training=training)
                _, q_mean, q_variance = self.encoder_heads[i](d, training=training, sample=False)
                z = self._draw(i, q_mean, q_variance, sample, seed)
                trace[i] = dict(z=z, q_mean=q_mean, q_variance=q_variance)
                h = z
            trace[-1]["p_mean"], trace[-1]["p_variance"] = self._top_prior()
            above = None
            for i in reversed(range(num - 1)):
                p_mean, p_variance, above = self._prior_params(i, trace[i + 1]["z"], above, training)
                trace[i]["p_mean"], trace[i]["p_variance"] = p_mean, p_variance
            return trace

        return self._top_down(self._bottom_up(x, training), training, sample, seed)

    def _bottom_up(self, x, training):
        """The ladder's deterministic pass: (mean_hat, variance_hat) per layer."""
        estimates, d = [], self._encoder_input(x)
        for i in range(self.num_layers):
            d = self.encoder_blocks[i](d, training=training)
            _, mean_hat, variance_hat = self.encoder_heads[i](d, training=training, sample=False)
            estimates.append((mean_hat, variance_hat))
        return estimates

    def _top_down(self, bottom_up, training, sample, seed=None):
        """The ladder's stochastic pass, merging each layer's bottom-up estimate."""
        num = self.num_layers
        trace = [None] * num
        z_above = None
        above = None  # the features of the block above, for skip connections
        for i in reversed(range(num)):
            mean_hat, variance_hat = bottom_up[i]
            if i == num - 1:
                q_mean, q_variance = mean_hat, variance_hat
                p_mean, p_variance = self._top_prior()
            else:
                p_mean, p_variance, above = self._prior_params(i, z_above, above, training)
                if self.separate_top_down:
                    h = self.top_down_blocks[i](z_above, training=training)
                    _, t_mean, t_variance = self.top_down_heads[i](h, training=training, sample=False)
                else:
                    t_mean, t_variance = p_mean, p_variance
                q_mean, q_variance = self.merge((mean_hat, variance_hat, t_mean, t_variance))
            z = self._draw(i, q_mean, q_variance, sample, seed)
            trace[i] = dict(
                z=z, q_mean=q_mean, q_variance=q_variance, p_mean=p_mean, p_variance=p_variance
            )
            z_above = z
        return trace

    def _output_params(self, z_1, training):
        """Logits (Bernoulli), (mean, variance) (Gaussian) or the mixture's parameters
        (logistic mixture) of p(x | z_1)."""
        h = self.output_block(z_1, training=training)
        if self.likelihood == "gaussian":
            _, mean, variance = self.output_head(h, training=training, sample=False)
            return self._crop(mean), self._crop(variance)
        return self._crop(ops.cast(self.output_head(h), "float32"))

    def _output_mean(self, params):
        if self.likelihood == "bernoulli":
            return ops.sigmoid(params)
        if self.likelihood == "gaussian":
            return params[0]
        return logistic_mixture.mean(params, self.mixture_components, self.layout[-1],
                                     self.coupled_means)

    def _log_px(self, x, z_1, training):
        params = self._output_params(z_1, training)
        if self.likelihood == "bernoulli":
            return densities.bernoulli_log_prob(x, params)
        if self.likelihood == "gaussian":
            return densities.gaussian_log_prob(x, *params)
        return logistic_mixture.log_prob(x, params, self.mixture_components, self.coupled_means)

    def _unflatten(self, x_flat):
        return ops.reshape(x_flat, (-1,) + self.feature_shape)

    # ---------------------------------------------------------- public maths
    def _sample(self, x, num_samples, training, seed=None):
        """Posterior samples for flattened x: `num_samples` per example, sample-major.

        Returns (trace, log p(x|z_1)); rows are sample-major, [num_samples * batch].
        The ladder's deterministic bottom-up pass runs once per example and is
        shared by the samples. `num_samples` may be a scalar tensor.
        """
        def tile(t):  # [batch, ...] -> [num_samples * batch, ...], sample-major
            return ops.tile(t, (num_samples,) + (1,) * (len(t.shape) - 1))

        repeat = not isinstance(num_samples, int) or num_samples > 1
        x_tiled = tile(x) if repeat else x
        if self.inference == "ladder":
            bottom_up = self._bottom_up(x, training)
            if repeat:
                bottom_up = [(tile(m), tile(v)) for m, v in bottom_up]
            trace = self._top_down(bottom_up, training, sample=True, seed=seed)
        else:
            trace = self._posterior(x_tiled, training, sample=True, seed=seed)
        return trace, self._log_px(x_tiled, trace[0]["z"], training)

    @staticmethod
    def _log_prior_ratio(trace):
        """log p(z) - log q(z | x) per row, summed over the layers (one sample each)."""
        # p_mean is None for the top layer: the standard normal prior.
        return sum(
            densities.gaussian_log_prob(t["z"], t["p_mean"], t["p_variance"])
            - densities.gaussian_log_prob(t["z"], t["q_mean"], t["q_variance"])
            for t in trace
        )

    def _elbo_terms(self, trace, log_px):
        kl_layers = [densities.per_example_sum(kl) for kl in self._kl_per_unit(trace)]
        kl_loss = ops.sum(ops.stack(kl_layers, axis=0), axis=0)
        return dict(
            reconstruction_loss=-log_px,
            kl_layers=kl_layers,
            kl_loss=kl_loss,
            nelbo=-log_px + kl_loss,
        )

    def elbo_terms(self, x, training=False, seed=None):
        """Per-example ELBO terms (nats, shape [batch]) with one posterior sample.

        Returns a dict with `reconstruction_loss` (-log p(x|z_1)), `kl_layers`
        (a list, bottom to top), `kl_loss` (their sum) and `nelbo` (their total:
        the negative ELBO). `test_step` uses this method. `seed`: an optional
        int32[2] tensor for stateless sampling (same seed, same sample).
        """
        trace, log_px = self._sample(self._prepare(x), 1, training, seed)
        return self._elbo_terms(trace, log_px)

    def training_objective(self, x, beta=1.0, training=False, allow_nan=False):
        """Per-example training loss with `mc_samples` x `iw_samples` samples.

        Returns `(loss, terms)`: `loss` has shape [batch]; `terms` are the ELBO
        terms of `elbo_terms`, averaged over all the samples. With
        `iw_samples` = 1 the loss is reconstruction + beta * KL (analytic KL
        where `elbo_terms` uses it); with k > 1 it is -L_k with importance
        weights log p(x|z) + beta * (log p(z) - log q(z|x)); both are averaged
        over the `mc_samples`. `train_step` minimises the batch mean. `allow_nan`
        lets NaN inputs through (the guarded train step then skips the step).
        """
        mc, iw = self.mc_samples, self.iw_samples
        trace, log_px = self._sample(self._prepare(x, allow_nan), mc * iw, training)
        terms = self._elbo_terms(trace, log_px)

        def per_example(values):  # [samples * batch] -> [samples, batch]
            return ops.reshape(values, (mc * iw, -1))

        kl_weights = None
        if iw == 1:
            kl, kls = terms["kl_loss"], terms["kl_layers"]
            if self.free_bits > 0:
                kls = [ops.maximum(k, self.free_bits) for k in kls]
            if self.kl_balance:
                kl_weights = schedules.kl_balance_weights([ops.mean(k) for k in kls], beta)
                kls = [w * k for w, k in zip(kl_weights, kls)]
            if self.free_bits > 0 or self.kl_balance:
                kl = sum(kls)
            loss = ops.mean(per_example(terms["reconstruction_loss"] + beta * kl), 0)
        elif self.free_bits > 0 or self.kl_balance:
            option = f"free_bits={self.free_bits}" if self.free_bits > 0 else "kl_balance=True"
            raise ValueError(
                f"{option} applies to the ELBO's KL terms, which the importance-weighted loss "
                f"(iw_samples={iw}) does not have: turn it off for importance-weighted "
                "training.")
        else:
            log_weights = ops.reshape(log_px + beta * self._log_prior_ratio(trace), (mc, iw, -1))
            loss = -ops.mean(ops.logsumexp(log_weights, axis=1) - math.log(iw), axis=0)
        terms = {
            name: [ops.mean(per_example(v), 0) for v in value] if name == "kl_layers"
            else ops.mean(per_example(value), 0)
            for name, value in terms.items()
        }
        if kl_weights is not None:
            terms["kl_weights"] = kl_weights
        return loss, terms

    def kl_per_unit(self, x, training=False):
        """KL(q || p) per example and latent unit, one [batch, units] tensor per layer.

        The same estimator as the ELBO: analytic for the top layer and for ladder
        inference, the one-sample log q - log p for lower bottom-up layers.
        """
        return self._kl_per_unit(self._posterior(self._prepare(x), training, sample=True))

    def _kl_per_unit(self, trace):
        kls = []
        for i, t in enumerate(trace):
            if self.inference == "ladder" or i == self.num_layers - 1:
                kl = densities.gaussian_kl_per_unit(
                    t["q_mean"], t["q_variance"], t["p_mean"], t["p_variance"])
            else:  # z_{i+1} was drawn after z_i: no closed form given it
                kl = distributions.normal_log_prob(t["z"], t["q_mean"], t["q_variance"]) - (
                    distributions.normal_log_prob(t["z"], t["p_mean"], t["p_variance"]))
            kls.append(kl)
        return kls

    def importance_log_weights(self, x, num_samples=1, training=False, seed=None):
        """log p(x, z) - log q(z | x) for `num_samples` posterior samples per example.

        Returns shape [num_samples, batch]. Its log-mean-exp over the samples is
        the importance-weighted bound L_k (see `keras_lvae.log_likelihood`). With
        ladder inference the deterministic bottom-up pass depends only on x, so it
        runs once per example and its output is shared by all the samples.
        `seed`: an optional int32[2] tensor for stateless sampling.
        """
        trace, log_px = self._sample(self._prepare(x), num_samples, training, seed)
        return ops.reshape(log_px + self._log_prior_ratio(trace), (num_samples, -1))

    def call(self, inputs, training=None):
        """Deterministic reconstruction: p(x | z_1)'s mean, with every z at its posterior mean."""
        x = self._prepare(inputs)
        trace = self._posterior(x, training, sample=False)
        return self._unflatten(self._output_mean(self._output_params(trace[0]["z"], training)))

    def encode(self, x):
        """Posterior means and variances per layer, bottom to top.

        With ladder inference each layer's posterior is conditioned on the
        posterior means of the layers above. Returns a list of (mean, variance).
        """
        trace = self._posterior(self._prepare(x), training=False, sample=False)
        return [(t["q_mean"], t["q_variance"]) for t in trace]

    def sample_posterior(self, x):
        """One posterior sample z_i ~ q(z_i | .) per example and layer, bottom to top."""
        trace = self._posterior(self._prepare(x), training=False, sample=True)
        return [t["z"] for t in trace]

    def decode(self, z_1):
        """Mean of p(x | z_1) (probabilities for Bernoulli), shaped like the inputs."""
        self._require_built("decode")
        z_1 = inputs.latent(z_1, self.latent_shapes[0])
        return self._unflatten(self._output_mean(self._output_params(z_1, training=False)))

    def generate(self, num_samples, seed=None, temperature=1.0):
        """Ancestral samples from the prior: z_L ~ p(z_L), z_i ~ p(z_i|z_{>i}), then decode.

        Returns the mean of p(x | z_1) for each sample, shaped like the inputs.
        `seed` (int) makes the result reproducible and leaves the model's
        random state untouched; by default the model's SeedGenerator is used.
        `temperature` scales the prior's standard deviation at every layer: one
        number, or one per layer (bottom to top). 0 gives the prior means, 1 the
        model's prior; values below 1 trade diversity for cleaner samples.
        Reference: sampling temperature of NVAE (Vahdat & Kautz, 2020).
        """
        self._require_built("generate")
        _checks.positive_int("num_samples", num_samples)
        if seed is None:
            base_seed = ops.cast(self.seed_generator.next(), "int32")
        else:
            base_seed = tf.constant([seed, 0], dtype=tf.int32)
        return self.generate_stateless(num_samples, base_seed, self._temperatures(temperature))

    def _temperatures(self, temperature):
        """One non-negative float per layer, bottom to top, from a number or a list."""
        values = (list(temperature) if isinstance(temperature, (list, tuple))
                  else [temperature] * self.num_layers)
        note = f" (or one per stochastic layer, {self.num_layers})"
        if len(values) != self.num_layers:
            raise ValueError(f"Invalid value for argument `temperature`: expected a number >= 0"
                             f"{note}, received {temperature!r}.")
        return [_checks.non_negative_number("temperature", t, note) for t in values]

    def generate_stateless(self, num_samples, seed, temperature=None):
        """`generate` from an int32[2] seed tensor, with only stateless ops.

        `num_samples` may be a scalar tensor; the same seed gives the same images.
        `temperature`: None (1 everywhere) or one value per layer, bottom to top
        (floats or a float32 [num_layers] tensor). This is what the exported
        `generate` and `generate_at_temperature` signatures run.
        """
        return self._generate(num_samples, seed, temperature, training=False)

    def _generate(self, num_samples, seed, temperature, training):
        """`generate_stateless`; with `training=True` batch norms of the generative path use
        (and update) the samples' batch statistics, for `readjust_batch_norm`."""
        z = self._sample_top(num_samples, seed, None if temperature is None else temperature[-1])
        z, _ = self._descend(z, None, self.num_layers - 1, 0, seed, sample=True,
                             temperature=temperature, training=training)
        return self._unflatten(self._output_mean(self._output_params(z, training=training)))

    def _sample_top(self, num_samples, seed, temperature=None):
        """z_L ~ p(z_L) for `num_samples` rows (standard deviation x `temperature`)."""
        shape = (num_samples, *self.latent_shapes[-1])
        mean, variance = self._top_prior()
        mean = ops.zeros(shape) if mean is None else ops.broadcast_to(mean, shape)
        variance = ops.ones(shape) if variance is None else ops.broadcast_to(variance, shape)
        if temperature is not None:
            variance = variance * ops.square(ops.cast(temperature, "float32"))
        return distributions.sample_normal(mean, variance, self._layer_seed(seed, self.num_layers))

    def _descend(self, z, above, start, stop, seed, sample, temperature=None, training=False):
        """Down the generative path from z = z_{start+1} (0-based index `start`) to
        z_{stop+1}, each layer drawn from p(z_i | z_{>i}) (`sample`; standard
        deviation x temperature[i] when given) or at its mean. Returns (z, the
        features of the last block, for skip connections)."""
        for i in reversed(range(stop, start)):
            mean, variance, above = self._prior_params(i, z, above, training=training)
            if temperature is not None:
                variance = variance * ops.square(ops.cast(temperature[i], "float32"))
            z = (self.decoder_heads[i].draw(mean, variance, seed=self._layer_seed(seed, i + 1))
                 if sample else mean)
        return z, above

    def interpolate(self, x_a, x_b, steps=8, layer=None, method="slerp"):
        """Images along a path between two inputs in one layer's latent space.

        The chosen `layer` (1 = bottom; default the top) goes from x_a's
        posterior mean to x_b's in `steps` points, spherically ("slerp", around
        the prior's centre) or linearly ("linear"); the layers above sit at their
        prior means, the layers below at their conditional means. Returns means
        of p(x | z_1), shape [steps, *image] for one pair, or [pairs, steps,
        *image] for batches of pairs. With `layer=1` the endpoints are the
        model's reconstructions of x_a and x_b.
        """
        self._require_built("interpolate")
        _checks.positive_int("steps", steps)
        layer = self._checked_layer(self.num_layers if layer is None else layer)
        _checks.one_of("method", method, ("slerp", "linear"))
        single = len(np.shape(inputs.unpack(x_a))) == len(self.feature_shape)
        x_a, x_b = ((x[None] if single else x) for x in (np.asarray(x_a), np.asarray(x_b)))
        images = self._interpolation(x_a, x_b, ops.linspace(0.0, 1.0, steps), layer - 1, method)
        return images[0] if single else images

    def _interpolation(self, x_a, x_b, t, i, method):
        """`interpolate`'s computation on tensors (also the exported signature's): batches
        x_a, x_b, fractions t [steps], 0-based layer i; returns [pairs, steps, *image]."""
        m_a, m_b = (ops.convert_to_tensor(self.encode(x)[i][0]) for x in (x_a, x_b))
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
        above = None
        if i < self.num_layers - 1:  # the features of the layers above, at their prior means
            top_mean, _ = self._top_prior()
            top = ops.zeros((1, *self.latent_shapes[-1])) if top_mean is None else top_mean
            # (down to block i: the features that p(z_layer) is computed from)
            _, above = self._descend(top, None, self.num_layers - 1, i, None, sample=False)
            above = None if above is None else ops.repeat(above, ops.shape(z)[0], axis=0)
        z, _ = self._descend(z, above, i, 0, None, sample=False)
        return ops.reshape(self.decode(z), (ops.shape(m_a)[0], -1, *self.feature_shape))

    def layer_variations(self, layer, rows=4, columns=8, seed=0):
        """What stochastic layer `layer` (1 = bottom) controls, as images.

        Each row draws z_{>layer} once from the prior; each column then draws
        z_layer ~ p(z_layer | z_{>layer}) anew, and the layers below take their
        conditional means. Returns means of p(x | z_1), shape
        [rows, columns, *image]. For the top layer every image is its own
        draw (nothing is above it).

        Reference: the per-layer sample figures of addtt/ladder-vae-pytorch.
        """
        self._require_built("layer_variations")
        self._checked_layer(layer)
        _checks.positive_int("rows", rows)
        _checks.positive_int("columns", columns)
        seed = tf.constant([_checks.optional_int("seed", seed) or 0, 1], tf.int32)
        fold = tf.random.experimental.stateless_fold_in
        i = layer - 1  # 0-based
        if i == self.num_layers - 1:
            z, above = self._sample_top(rows * columns, seed), None
        else:
            z, above = self._descend(self._sample_top(rows, seed), None, self.num_layers - 1,
                                     i + 1, seed, sample=True)
            z, above = (None if t is None else ops.repeat(t, columns, axis=0) for t in (z, above))
            z, above = self._descend(z, above, i + 1, i, fold(seed, 1), sample=True)
        z, _ = self._descend(z, above, i, 0, seed, sample=False)
        return ops.reshape(self.decode(z), (rows, columns, *self.feature_shape))

    def _checked_layer(self, layer):
        """`layer` if it numbers a stochastic layer (1 = bottom), else ValueError."""
        if not (_checks.is_int(layer) and 1 <= layer <= self.num_layers):
            raise ValueError(f"Invalid value for argument `layer`: expected an int from 1 to "
                             f"{self.num_layers}, received {layer!r}.")
        return layer

    def _require_built(self, method):
        if not self.built:
            raise ValueError(
                f"`{method}()` needs a built model: call the model on data, fit it, or "
                "call `model.build((None, *image_shape))` first."
            )

    # ------------------------------------------------------------- training
    @property
    def metrics(self):
        trackers = [
            self.loss_tracker,
            self.nelbo_tracker,
            self.reconstruction_tracker,
            self.kl_tracker,
            *self.kl_layer_trackers,
            self.beta_tracker,
            *self.kl_weight_trackers,
            *([self.bits_per_dim_tracker] if self.bits_per_dim_tracker else []),
        ]
        return trackers + [self.skipped_tracker] if self._guarded() else trackers

    def _guarded(self):
        """Whether training steps may be skipped (and `skipped_steps` is logged)."""
        return self.skip_nonfinite_steps or bool(self.skip_threshold or self.adaptive_skip_factor)

    def _gradient_norm(self, gradients):
        """Global norm of the unscaled gradients."""
        norm = tf.linalg.global_norm([tf.cast(g, "float32") for g in gradients if g is not None])
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            norm = norm / tf.cast(self.optimizer.dynamic_scale, "float32")
        return norm

    def _norm_allowed(self, gradients):
        """True unless the step's gradient norm is over the fixed or adaptive threshold."""
        if not (self.skip_threshold or self.adaptive_skip_factor):
            return tf.constant(True)
        norm = self._gradient_norm(gradients)
        threshold = tf.constant(self.skip_threshold or float("inf"))
        if self.adaptive_skip_factor:
            adaptive = update_skipping.adaptive_threshold(
                self.grad_norm_history, self.grad_norm_count, self.adaptive_skip_factor)
            threshold = tf.where(tf.math.is_inf(adaptive), threshold, adaptive)
            with tf.control_dependencies([threshold]):
                update_skipping.record(self.grad_norm_history, self.grad_norm_count, norm)
        return tf.logical_and(tf.math.is_finite(norm), norm <= threshold)

    def _record(self, loss, terms, beta):
        self._update_trackers(loss, terms, beta)
        return self._logs()

    def _logs(self):
        logs = {m.name: m.result() for m in self.metrics}
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras 3 reduces multi-worker logs with reduce(MEAN, axis=0), which fails on
            # scalars (tensorflow/tensorflow#72388); shape [1] reduces to the scalar.
            logs = {name: ops.reshape(value, (1,)) for name, value in logs.items()}
        return logs

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

    def train_step(self, data):
        x = inputs.unpack(data)
        # Beta from the model's own step counter, a tensor: correct inside a compiled step
        # and unchanged by a new optimizer.
        beta = warmup_beta(self.trained_steps, self.warmup_steps)
        guard = self._guarded()
        if guard:  # what a skipped step must put back: the forward pass updates them
            statistics = self._batch_norm_statistics()
            saved = [tf.identity(v.value) for v in statistics]
        with tf.GradientTape() as tape:
            loss, terms = self.training_objective(x, beta=beta, training=True,
                                                  allow_nan=self.skip_nonfinite_steps)
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
            return self._record(loss, terms, beta)

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
        accept = ops.logical_and(finite, self._norm_allowed(decided_on))
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

    def _apply_if(self, accept, gradients, loss):
        """`_apply` if `accept` (the same on every replica). Under a multi-replica
        strategy the optimizer's step is a synchronisation point, which cannot sit in a
        tf.cond: the update is applied, then undone where `accept` is false."""
        if tf.distribute.get_strategy().num_replicas_in_sync == 1:
            tf.cond(accept, lambda: self._apply(gradients, loss) or tf.constant(True),
                    lambda: tf.constant(False))
            return
        touched = ([self.trained_steps] + self.trainable_variables + self.ema_variables
                   + self.optimizer.variables)
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
        for average, weight in zip(self.ema_variables, self._ema_followed()):
            average.assign(self.ema_decay * average + (1.0 - self.ema_decay) * weight)

    def _ema_followed(self):
        """The weights the moving averages follow, in `ema_variables`' order: the trainable
        ones, then every batch norm's moving mean and variance. The statistics are averaged
        too (as timm's ModelEmaV2 does with a model's buffers) so that the averaged weights
        meet statistics of the same age: with the raw weights' statistics an EMA model
        validates several nats worse (experiments/training_toolkit)."""
        return self.trainable_weights + self._batch_norm_statistics()

    def _batch_norm_statistics(self):
        """Every batch norm's moving mean and variance, in a fixed order."""
        return [weight for layer in self.batch_norm_layers()
                for weight in (layer.moving_mean, layer.moving_variance)]

    def batch_norm_layers(self):
        """Every `keras.layers.BatchNormalization` inside the model, in a fixed order."""
        return [layer for layer in self._flatten_layers()
                if isinstance(layer, keras.layers.BatchNormalization)]

    @contextlib.contextmanager
    def ema_weights_applied(self):
        """Within the block the trainable weights and batch-norm statistics hold their
        moving averages; afterwards they are restored. A no-op without `ema_decay` and
        after `use_ema_weights()` (the model holds the averages already, perhaps with
        statistics recomputed since)."""
        if not self.ema_variables or self._holds_averages:
            yield
            return
        weights = self._ema_followed()
        saved = [tf.identity(w.value) for w in weights]
        for weight, average in zip(weights, self.ema_variables):
            weight.assign(average)
        try:
            yield
        finally:
            for weight, value in zip(weights, saved):
                weight.assign(value)

    def restart_ema_weights(self):
        """Set the moving averages to the current weights and batch-norm statistics, as
        at the start of training (e.g. after assigning weights from elsewhere)."""
        for average, weight in zip(self.ema_variables, self._ema_followed()):
            average.assign(weight)

    def use_ema_weights(self):
        """Replace the trainable weights and batch-norm statistics by their moving
        averages for good (for inference, export or evaluation of a loaded model);
        `evaluate` then uses the model as it is, so statistics recomputed afterwards
        (`recompute_batch_norm_statistics`) count. `fit` trains on from there.
        Returns True if the model had averages."""
        for weight, average in zip(self._ema_followed(), self.ema_variables):
            weight.assign(average)
        self._holds_averages = bool(self.ema_variables)
        return self._holds_averages

    def fit(self, x=None, *args, **kwargs):
        """`keras.Model.fit`, refusing empty data and non-positive batch sizes.

        Data whose size is unknown up front is refused after the fact if it
        yielded no batch (Keras would return an empty history).
        """
        inputs.check_data("x", x, kwargs.get("batch_size"))
        inputs.check_data("validation_data", kwargs.get("validation_data"),
                          kwargs.get("validation_batch_size"))
        self._holds_averages = False  # training moves the weights away from the averages
        history = super().fit(x, *args, **kwargs)
        # Keras logs nothing for an epoch that received no batch.
        if not history.history and kwargs.get("epochs", 1) > kwargs.get("initial_epoch", 0):
            raise inputs.no_batch_error("x")
        return history

    def evaluate(self, x=None, *args, **kwargs):
        """`keras.Model.evaluate`, refusing empty data and non-positive batch sizes."""
        validation = kwargs.get("_use_cached_eval_dataset", False)  # fit's validation pass
        if not validation:
            inputs.check_data("x", x, kwargs.get("batch_size"))
        with self.ema_weights_applied():  # validation and evaluation see the averages
            result = super().evaluate(x, *args, **kwargs)
        if int(self.nelbo_tracker.count.numpy()) == 0:  # no batch ran
            raise inputs.no_batch_error("validation_data" if validation else "x")
        return result

    def test_step(self, data):
        terms = self.elbo_terms(inputs.unpack(data), training=False)
        # Validation reports the true bound (beta = 1), comparable across runs; beta and
        # skipped steps carry no information there, so they are not logged.
        self._update_trackers(ops.mean(terms["nelbo"]), terms, beta=None)
        return {name: value for name, value in self._logs().items()
                if name not in (self.beta_tracker.name, self.skipped_tracker.name)
                and not name.startswith("kl_weight_")}

    def load_own_variables(self, store):
        """Load the model's own variables (`trained_steps`) from a `.keras` file.

        Files written before the model kept its step counter (keras-lvae 0.1) hold
        none; such a model was saved at the end of its training, so its warm-up is
        taken as finished.
        """
        if len(store.keys()) == 0:
            warnings.warn("This .keras file predates the model's step counter; its warm-up "
                          "is taken as finished (trained_steps = warmup_steps).", stacklevel=2)
            self.trained_steps.assign(self.warmup_steps)
            return
        super().load_own_variables(store)

    def get_config(self):
        config = super().get_config()
        config.update(
            latent_dims=list(self.latent_dims),
            hidden_dims=list(self.hidden_dims),
            inference=self.inference,
            dense_per_block=self.dense_per_block,
            likelihood=self.likelihood,
            batch_norm=self.batch_norm,
            share_top_down=self.share_top_down,
            warmup_steps=self.warmup_steps,
            mc_samples=self.mc_samples,
            iw_samples=self.iw_samples,
            skip_nonfinite_steps=self.skip_nonfinite_steps,
            skip=self.skip,
            free_bits=self.free_bits,
            learn_top_prior=self.learn_top_prior,
            kl_balance=self.kl_balance,
            skip_threshold=self.skip_threshold,
            adaptive_skip_factor=self.adaptive_skip_factor,
            adaptive_skip_window=self.adaptive_skip_window,
            ema_decay=self.ema_decay,
            seed=self.seed,
        )
        return config
