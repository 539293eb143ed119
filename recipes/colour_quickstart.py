"""Colour quickstart: a 2-layer convolutional LVAE on 32 x 32 photo tiles that ship with the install.

`photo_patches`: 2,058 train / 229 test non-overlapping 32 x 32 tiles of seven colour
photographs in scikit-image (an astronaut, a cat, coffee, the Hubble deep field, ...); 8-bit
pixels under a discretized mixture of logistics, reported in nats and bits per dimension. Its
test tiles come from the same photographs as its training tiles (a split by tile): a smoke
run, not a measure of how new photographs are coded (that is `photos`, recipes/photos.py).
Offline, about 6 minutes on one CPU core (8 epochs of 40 s; test bits/dim about 6 after them):

    lvae train colour_quickstart --workdir runs/colour_quickstart

then `lvae evaluate runs/colour_quickstart`, `lvae sample ...`, `lvae export ...` as for
MNIST. Your own images: the `own_images` recipe (`--set data.data_dir=DIR`).
"""

import sys

from keras_lvae.config import Config, DataConfig, ModelConfig, TrainConfig

CONFIG = Config(
    data=DataConfig(
        dataset="photo_patches",       # 8-bit RGB, never binarized
        batch_size=64,                 # 32 steps per epoch
    ),
    model=ModelConfig(
        architecture="conv",           # spatial latents: 8 x 8 and 4 x 4 maps
        latent_dims=(16, 16),          # channels per latent map, z_1 (bottom), z_2 (top)
        hidden_dims=(32, 32),          # conv filters per rung
        residual_blocks=2,             # the first of each rung downsamples where asked
        downsample=(2, 1),             # 32 -> 8 -> 4
        activation="swish",
        skip=True,                     # p(z_1 | z_2) sees the top rung's features too
        free_bits=0.25,                # nats per layer and example: keeps z_2 in use early
        likelihood="logistic_mixture",
        mixture_components=5,          # PixelCNN++'s 10 is the recipes' default for CIFAR-10
    ),
    train=TrainConfig(
        epochs=8,
        learning_rate=1e-3,            # Adam
        warmup_epochs=2,
        seed=0,
        eval_samples=10,               # test L_10 in nats and bits/dim at the end (L_k of
                                       # colour models is costly on a CPU: lvae evaluate)
    ),
)

if __name__ == "__main__":  # `python recipes/colour_quickstart.py [--set ...]` = `lvae train`
    import keras_lvae_cli

    sys.exit(keras_lvae_cli.main(["train", __file__, *sys.argv[1:]]))
