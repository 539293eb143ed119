"""Public layers of keras-lvae."""

from keras_lvae.layers.conv_rung import ConvRung
from keras_lvae.layers.ladder_merge import LadderMerge
from keras_lvae.layers.mlp_block import MLPBlock
from keras_lvae.layers.stochastic_gaussian import StochasticGaussian

__all__ = ["ConvRung", "LadderMerge", "MLPBlock", "StochasticGaussian"]
