"""The 5-layer LVAE on Larochelle's binarized MNIST (a fixed binarization).

50,000 train / 10,000 validation / 10,000 test images, binarized once by
Larochelle and Murray; validation metrics use its own validation split. Static
and dynamic MNIST differ by 1-2 nats: compare with static-MNIST results only.
Reads `binarized_mnist_packbits.npz` (or the three `.amat` files) from DATA_DIR:

    lvae train recipes/binarized_mnist.py
"""

import sys

from keras_lvae.config import Config, DataConfig, ModelConfig, TrainConfig

CONFIG = Config(
    data=DataConfig(
        dataset="binarized_mnist",
        batch_size=256,
        validation_split="validation",  # the dataset's own 10,000 validation images
    ),
    model=ModelConfig(
        latent_dims=(64, 32, 16, 8, 4),
        hidden_dims=(512, 256, 128, 64, 32),
        inference="ladder",
        batch_norm=True,
    ),
    train=TrainConfig(
        epochs=2000,
        learning_rate=1e-3,
        warmup_epochs=200,
        seed=0,
        eval_samples=0,                # use `lvae evaluate --samples 5000`
    ),
)

if __name__ == "__main__":  # `python recipes/binarized_mnist.py [--set ...]` = `lvae train` on it
    import keras_lvae_cli

    sys.exit(keras_lvae_cli.main(["train", __file__, *sys.argv[1:]]))
