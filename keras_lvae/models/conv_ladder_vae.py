import math

import keras
from keras import ops

from keras_lvae import _checks
from keras_lvae.layers import ConvRung, StochasticGaussian
from keras_lvae.layers.conv_rung import ACTIVATIONS
from keras_lvae.models.ladder_vae import INITIALIZER_SEED_OFFSET, LIKELIHOODS, LadderVAE


@keras.saving.register_keras_serializable(package="keras_lvae")
class ConvLadderVAE(LadderVAE):
    """A Ladder VAE with convolutional rungs and spatial latents.

    The ladder is `LadderVAE`'s (the bottom-up pass, the precision-weighted
    merge per position and channel, the ELBO and L_k, training, warm-up, skip
    connections, free bits, the learned top prior); only the parts differ:

    - rung i is a `ConvRung` of `residual_blocks` residual blocks with
      `hidden_dims[i]` filters. Bottom-up it downsamples `downsample[i]` times
      by 2; the top-down rung that computes p(z_i | z_{i+1}) upsamples
      `downsample[i + 1]` times, and p(x | z_1)'s rung `downsample[0]` times;
    - z_i is a feature map of `latent_dims[i]` channels, with a Gaussian per
      position and channel from a `kernel_size` convolution (mean, and
      softplus variance plus a floor). The heads have no batch norm; the
      residual branches do when `batch_norm`;
    - images of shape [H, W] or [H, W, C] are zero-padded (centred) to
      multiples of 2^sum(downsample) before the first rung, and p(x | z_1) is
      cut back to the original size, so the bound is over the real pixels
      only (28 x 28 MNIST becomes 32 x 32 with downsample=(2, 1, 1)).

    Reference: the convolutional LVAE of addtt/ladder-vae-pytorch
    (`models/lvae.py`), with the paper's precision-weighted merge in place of
    its learned merge.

    Args:
        residual_blocks: residual blocks per rung, in each direction.
        downsample: per stochastic layer, the factor-2 downsamplings of its
            bottom-up rung (0 keeps the size); at most `residual_blocks`
            each. Default: one per layer.
        gated: gate every residual branch.
        activation: "elu", "swish" or "leaky_relu".
        kernel_size: odd size of the convolutions in rungs and heads.
        mixture_components: K of `likelihood="logistic_mixture"`, the
            discretized mixture of logistics over 8-bit pixels (images given as
            v / 255; see `keras_lvae.logistic_mixture`).
        coupled_means: the mixture's channel-coupled means (PixelCNN++).
        **kwargs: `LadderVAE`'s arguments; `hidden_dims` are filters per rung
            and `latent_dims` channels per latent. `dense_per_block` does not
            apply.

    Example:
    >>> import numpy as np, keras
    >>> model = ConvLadderVAE(latent_dims=(4, 2), hidden_dims=(8, 8), downsample=(1, 1),
    ...                       residual_blocks=1, seed=1)
    >>> x = (np.random.default_rng(0).random((4, 7, 7)) < 0.5).astype("float32")
    >>> [tuple(m.shape) for m, _ in model.encode(x)]
    [(4, 4, 4, 4), (4, 2, 2, 2)]
    >>> tuple(model(x).shape)
    (4, 7, 7)
    """

    LIKELIHOODS = (*LIKELIHOODS, "logistic_mixture")
    REMOVED_ARGUMENTS = ("dense_per_block", "row_halves")

    def __init__(self, latent_dims=(32, 32, 32), hidden_dims=(64, 64, 64), residual_blocks=2,
                 downsample=None, gated=False, activation="elu", kernel_size=3,
                 mixture_components=10, coupled_means=True, **kwargs):
        for name in self.REMOVED_ARGUMENTS:
            if name in kwargs:
                raise ValueError(f"Invalid argument `{name}`: it applies to LadderVAE's MLP "
                                 "rungs; ConvLadderVAE's rungs are residual stacks (set "
                                 "`residual_blocks` instead).")
        # The parts are made inside LadderVAE.__init__, so their settings come first.
        self.residual_blocks = _checks.positive_int("residual_blocks", residual_blocks)
        layers = len(_checks.positive_int_tuple("latent_dims", latent_dims))
        downsample = (1,) * layers if downsample is None else downsample
        if (isinstance(downsample, (str, bytes)) or not hasattr(downsample, "__len__")
                or len(downsample) != layers
                or not all(_checks.is_int(d) and 0 <= d <= residual_blocks for d in downsample)):
            raise ValueError(
                "Invalid value for argument `downsample`: expected one int per stochastic layer "
                f"({layers}) from 0 to residual_blocks ({residual_blocks}), received "
                f"{downsample!r}.")
        self.downsample = tuple(downsample)
        self.gated = bool(gated)
        self.activation = _checks.one_of("activation", activation, tuple(ACTIVATIONS))
        self.kernel_size = _checks.odd_positive_int("kernel_size", kernel_size)
        self.mixture_components = _checks.positive_int("mixture_components", mixture_components)
        self.coupled_means = bool(coupled_means)
        super().__init__(latent_dims=latent_dims, hidden_dims=hidden_dims, **kwargs)

    def _block(self, i, name, offset):
        if name == "encoder_block":
            resample, steps = "down", self.downsample[i]
        elif name == "output_block":
            resample, steps = "up", self.downsample[0]
        else:  # p(z_{i+1} | z_{i+2}): undo the downsampling of layer i + 2's rung
            resample, steps = "up", self.downsample[i + 1]
        # The encoder's rungs above the first continue the previous rung's features;
        # every other rung starts from an image or a latent and projects it first.
        continues = (name == "encoder_block" and i > 0 and self.inference == "ladder"
                     and self.hidden_dims[i - 1] == self.hidden_dims[i])
        return ConvRung(
            self.hidden_dims[i], self.residual_blocks, resample if steps else "none", steps,
            gated=self.gated, activation=self.activation, batch_norm=self.batch_norm,
            kernel_size=self.kernel_size, project_input=not continues,
            # 64 seeds a rung: convolution j of rung i uses seed + offset + 64 i + j.
            seed=self._offset_seed(INITIALIZER_SEED_OFFSET + offset + 64 * i),
            name=f"{name}_{i + 1}")

    def _head(self, i, name, offset):
        return StochasticGaussian(self.latent_dims[i], batch_norm=False,
                                  kernel_size=self.kernel_size,
                                  seed=self._offset_seed(offset + i), name=f"{name}_{i + 1}")

    def _layout(self, feature_shape):
        if len(feature_shape) == 2:
            return (*feature_shape, 1)
        if len(feature_shape) == 3:
            return tuple(feature_shape)
        raise ValueError(
            "Invalid input shape: ConvLadderVAE expects images of shape (batch, height, width) "
            f"or (batch, height, width, channels), received (batch, {', '.join(map(str, feature_shape))}).")

    def _head_kernel_size(self):
        return self.kernel_size

    def _padding(self, height, width):
        """((top, bottom), (left, right)) zeros that make the sizes multiples of the
        total downsampling factor."""
        factor = 2 ** sum(self.downsample)
        pads = []
        for size in (height, width):
            extra = math.ceil(size / factor) * factor - size
            pads.append((extra // 2, extra - extra // 2))
        return pads

    def _encoder_input(self, x):
        (top, bottom), (left, right) = self._padding(x.shape[1], x.shape[2])
        if top + bottom + left + right == 0:
            return x
        return ops.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))

    def _crop(self, params):
        height, width = self.layout[0], self.layout[1]
        (top, _), (left, _) = self._padding(height, width)
        return params[:, top:top + height, left:left + width, :]
