"""The paper's NORB model: a 5-layer LVAE with a Gaussian p(x | z_1) on smallNORB.

Left-camera 96x96 images averaged to 32x32, grey levels in [0, 1] (continuous,
so no binarization); 24,300 train / 24,300 test; 2,000 epochs with 200 of
warm-up. Differences from the paper, stated: the paper's NORB model uses tanh
units, ours the leaky ReLU of every other model; the widths are MNIST's
(paper.md does not give NORB's). Needs the four smallNORB `-dat.mat`/`-cat.mat`
files in DATA_DIR or DATA_DIR/norb:

    lvae train recipes/norb.py --set data.data_dir=DATA_DIR
"""

import sys

from keras_lvae.config import Config, DataConfig, ModelConfig, TrainConfig

CONFIG = Config(
    data=DataConfig(dataset="norb", batch_size=256),
    model=ModelConfig(
        latent_dims=(64, 32, 16, 8, 4),
        hidden_dims=(512, 256, 128, 64, 32),
        inference="ladder",
        batch_norm=True,
        likelihood="gaussian",         # N(mu(z_1), softplus variance) per pixel
    ),
    train=TrainConfig(
        epochs=2000,
        learning_rate=1e-3,
        warmup_epochs=200,
        seed=0,
        eval_samples=0,
    ),
)

if __name__ == "__main__":  # `python recipes/norb.py [--set ...]` = `lvae train` on it
    import keras_lvae_cli

    sys.exit(keras_lvae_cli.main(["train", __file__, *sys.argv[1:]]))
