from keras_lvae.models.ladder_vae import LadderVAE

__all__ = ["LadderVAE"]
