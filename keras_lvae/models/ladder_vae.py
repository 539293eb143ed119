"""`LadderVAE`: its arguments, the parts an architecture swaps, `build`, inference and
configuration. The rest is beside it: passes (`_passes.py`), bounds (`_bounds.py`),
generation (`_generation.py`), training (`_trainer.py`), and in the package the
objectives, likelihoods, update skipping and weight average."""

import math
import warnings

import keras
import numpy as np

from keras_lvae import _checks, inputs, likelihoods, update_skipping, weight_average
from keras_lvae.layers import LadderMerge, MLPBlock, StochasticGaussian
from keras_lvae.models._arguments import constructor_arguments
from keras_lvae.models._bounds import Bounds
from keras_lvae.models._generation import Generation
from keras_lvae.models._passes import LadderPasses
from keras_lvae.models._trainer import LadderTrainer
from keras_lvae.schedules import check_warmup_steps

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
LABEL_SEED_OFFSET = 5000
# A conditional model's label embedding has min(num_classes, this) numbers.
MAX_LABEL_DIMS = 64


@keras.saving.register_keras_serializable(package="keras_lvae")
class LadderVAE(LadderPasses, Bounds, Generation, LadderTrainer, keras.Model):
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
            trainable weights, ema = d * ema + (1 - d) * weights after the
            n-th update, d = min(ema_decay, (1 + n) / (10 + n)) (starting
            from the initial weights; n counts `trained_steps`, so the warm-up
            does not repeat after `restart_ema_weights`); the batch norms'
            moving statistics are averaged
            alike. `evaluate` (and so fit's validation) runs with the
            averages; `with model.ema_weights_applied():` or
            `model.use_ema_weights()` use them elsewhere. Saved with the model
            and in checkpoints. Reference: the EMA weights of openai/vdvae.
        seed: int or None. An int makes the model reproducible: it seeds the
            weight initialisation and every sampling layer (training noise,
            `generate`, evaluation). Data order and binarization are the data
            pipeline's own seed (`keras_lvae.data.load_dataset(seed=...)`).
        row_halves: MLP blocks of 256+ units train on the batch's two row halves side by
            side (`MLPBlock`; same numbers, faster where `threads.ops_run_side_by_side()`).
        num_classes: None, or N for a class-conditional ladder p(x, z | y) q(z | x, y)
            with int labels 0 ... N-1: a learned embedding of the label (min(N, 64)
            numbers) joins the input of the first bottom-up rung and of every top-down
            rung, and each class has its own learned top prior p(z_L | y) (initialised
            to N(0, I)); p(x | z_1) stays unconditional, so `decode(z_1)` means the
            same. `fit` takes datasets of `(x, y)`; every bound, sample and encoding
            then needs `labels`. References: the conditional VAE of Sohn, Lee and Yan
            (NeurIPS 2015), which feeds y to the prior, recognition and generation
            networks, and Kingma et al.'s M2 (NeurIPS 2014), whose p(x | y) gives the
            Bayes classifier `keras_lvae.classify`.

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
    # Arguments of a parent class that a subclass does not take (see constructor_arguments).
    REMOVED_ARGUMENTS = ()

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
        row_halves=False,
        num_classes=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.latent_dims = _checks.positive_int_tuple("latent_dims", latent_dims)
        self.hidden_dims = _checks.positive_int_tuple("hidden_dims", hidden_dims)
        _checks.one_per_layer("hidden_dims", self.hidden_dims, "latent_dims", self.latent_dims)
        self.inference = _checks.one_of("inference", inference, INFERENCE_TYPES)
        self.dense_per_block = _checks.positive_int("dense_per_block", dense_per_block)
        self.likelihood = _checks.one_of("likelihood", likelihood, self.LIKELIHOODS)
        self.likelihood_class = likelihoods.get(self.likelihood)
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
        self.ema_decay = _checks.fraction("ema_decay", ema_decay, " (0: no moving average)")
        self.skip_threshold = _checks.non_negative_number("skip_threshold", skip_threshold,
                                                          " (0: off)")
        self.adaptive_skip_factor = _checks.non_negative_number(
            "adaptive_skip_factor", adaptive_skip_factor, " (0: off)")
        self.adaptive_skip_window = _checks.positive_int("adaptive_skip_window",
                                                         adaptive_skip_window)
        self.seed = _checks.optional_int("seed", seed)
        self.row_halves = bool(row_halves)
        self.num_classes = (None if num_classes is None
                            else _checks.positive_int("num_classes", num_classes))
        if self.num_classes is not None and self.learn_top_prior:
            raise ValueError("Invalid value for argument `learn_top_prior`: a conditional model "
                             "(num_classes) learns each class's top prior already; expected "
                             "False, received True.")
        self.label_dims = self.num_classes and min(self.num_classes, MAX_LABEL_DIMS)
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
        # Own weights in a fixed order: trained_steps, the gate's, (build) top prior, averages.
        self.gradient_gate = update_skipping.GradientNormGate(
            self, self.skip_threshold, self.adaptive_skip_factor, self.adaptive_skip_window)
        self.weight_average = (weight_average.WeightAverage(self.ema_decay)
                               if self.ema_decay else None)
        self._make_trackers()

    # Settable for fine-tuning; call `compile()` afterwards so the step is retraced.
    mc_samples = _checks.positive_int_property("mc_samples")
    iw_samples = _checks.positive_int_property("iw_samples")

    # ------------------------------------------------------------ the parts
    # The rung, the stochastic head and the layout are the parts an architecture
    # swaps (ConvLadderVAE overrides these methods); the ladder around them is the same.
    def _offset_seed(self, offset):
        return None if self.seed is None else self.seed + offset

    def _block(self, i, name, offset):
        """The deterministic rung of layer i (0-based) in the path `name`."""
        # 16 seeds a block: dense j of block i starts from seed + offset + 16 i + j.
        return MLPBlock(self.hidden_dims[i], self.dense_per_block, self.batch_norm,
                        seed=self._offset_seed(INITIALIZER_SEED_OFFSET + offset + 16 * i),
                        row_halves=self.row_halves, name=f"{name}_{i + 1}")

    def _head(self, i, name, offset):
        """The Gaussian head that gives z_{i+1}'s mean and variance."""
        return StochasticGaussian(self.latent_dims[i], self.batch_norm,
                                  seed=self._offset_seed(offset + i), name=f"{name}_{i + 1}")

    def _head_kernel_size(self):  # None: a dense output layer (conv: the kernel size)
        return None

    def _layout(self, feature_shape):
        """The per-example shape the rungs work on: flat vectors for MLP rungs."""
        return (math.prod(feature_shape),)

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
        if input_shape and isinstance(input_shape[0], (tuple, list)):  # (x, y) elements
            input_shape = input_shape[0]
        input_shape = tuple(input_shape)
        if len(input_shape) < 2 or any(d is None for d in input_shape[1:]):
            raise ValueError(
                "Invalid input shape: expected (batch, features...) with known feature sizes, "
                f"received {input_shape}."
            )
        self.feature_shape = tuple(int(d) for d in input_shape[1:])
        self.num_features = math.prod(self.feature_shape)
        self.layout = self._layout(self.feature_shape)
        self.pixel_likelihood = self.likelihood_class(
            self.layout[-1], **{name: getattr(self, name) for name in self.likelihood_class.OPTIONS})
        self.output_head = self.pixel_likelihood.head(self._offset_seed(OUTPUT_SEED_OFFSET),
                                                      self._head_kernel_size())

        def features(layer, shape):  # a rung's output shape, or a head's mean's
            out = layer.compute_output_shape(shape)
            return tuple(out[1] if isinstance(out[0], tuple) else out)

        shape = tuple(self._encoder_input(keras.KerasTensor((1, *self.layout))).shape)
        shape = (None, *shape[1:-1], shape[-1] + (self.label_dims or 0))
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
                shape = shape[:-1] + (shape[-1] + (self.label_dims or 0),)
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
        self.output_head.build(features(self.output_block, shape))
        if self.learn_top_prior:
            top = self.latent_shapes[-1]
            self.top_prior_mean = self.add_weight(
                shape=top, initializer="zeros", name="top_prior_mean")
            self.top_prior_log_variance = self.add_weight(
                shape=top, initializer="zeros", name="top_prior_log_variance")
        if self.num_classes is not None:
            classes, top = self.num_classes, self.latent_shapes[-1]
            self.label_embedding = self.add_weight(
                shape=(classes, self.label_dims), name="label_embedding",
                initializer=keras.initializers.RandomNormal(
                    seed=self._offset_seed(INITIALIZER_SEED_OFFSET + LABEL_SEED_OFFSET)))
            self.top_prior_class_mean = self.add_weight(
                shape=(classes, *top), initializer="zeros", name="top_prior_class_mean")
            self.top_prior_class_log_variance = self.add_weight(
                shape=(classes, *top), initializer="zeros", name="top_prior_class_log_variance")
        if self.weight_average is not None:
            self.weight_average.build(self)

    def prepare(self, x, allow_nan=False):
        """Checked float32 inputs in the model's layout (flattened for MLP rungs): what the
        passes take. Builds the model on first use."""
        x = inputs.unpack(x)
        if not hasattr(x, "shape"):
            x = np.asarray(x)
        if not self.built:
            self.build(tuple(x.shape))
        return inputs.images(x, self.feature_shape,
                             unit_interval=self.likelihood_class.unit_interval,
                             allow_nan=allow_nan, layout=self.layout)

    # ------------------------------------------------------- inference
    def call(self, inputs_, training=None):
        """Deterministic reconstruction: p(x | z_1)'s mean, with every z at its posterior
        mean. A conditional model takes `(x, labels)`."""
        x = self.prepare(inputs_)
        labels = self.prepare_labels(
            inputs.labels_of(inputs_) if self.num_classes is not None else None, x)
        trace = self.posterior_trace(x, training, sample=False, labels=labels)
        return self._images(self.output_params(trace[0]["z"], training))

    def encode(self, x, labels=None):
        """Posterior means and variances per layer, bottom to top.

        With ladder inference each layer's posterior is conditioned on the
        posterior means of the layers above. Returns a list of (mean, variance).
        A conditional model needs `labels`, one int per example.
        """
        x = self.prepare(x)
        trace = self.posterior_trace(x, training=False, sample=False,
                                     labels=self.prepare_labels(labels, x))
        return [(t["q_mean"], t["q_variance"]) for t in trace]

    def sample_posterior(self, x, labels=None):
        """One posterior sample z_i ~ q(z_i | .) per example and layer, bottom to top."""
        x = self.prepare(x)
        trace = self.posterior_trace(x, training=False, sample=True,
                                     labels=self.prepare_labels(labels, x))
        return [t["z"] for t in trace]

    def decode(self, z_1):
        """Mean of p(x | z_1) (probabilities for Bernoulli), shaped like the inputs."""
        self.require_built("decode")
        z_1 = inputs.latent(z_1, self.latent_shapes[0])
        return self._images(self.output_params(z_1, training=False))

    # ------------------------------------------------------- configuration
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
        """Keras' config plus every constructor argument (`constructor_arguments`)."""
        config = super().get_config()
        for name in constructor_arguments(type(self)):
            value = getattr(self, name)
            config[name] = list(value) if isinstance(value, tuple) else value
        return config
