from keras_lvae.models.conv_ladder_vae import ConvLadderVAE
from keras_lvae.models.ladder_vae import LadderVAE

__all__ = ["ConvLadderVAE", "LadderVAE"]
