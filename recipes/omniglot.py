"""The paper's OMNIGLOT model: the 5-layer LVAE on Burda et al.'s 28x28 OMNIGLOT.

24,345 training and 8,070 test characters, dynamically binarized; 1,500 epochs
(paper.md marks the count unverified) with 200 of warm-up. The paper's test
L_5000 is -102.11 nats. Needs `chardata.mat` in DATA_DIR or DATA_DIR/omniglot
(tfds's omniglot is a different 105x105 set):

    lvae train recipes/omniglot.py --set data.data_dir=DATA_DIR
"""

import sys

from keras_lvae.config import Config, DataConfig, ModelConfig, TrainConfig

CONFIG = Config(
    data=DataConfig(dataset="omniglot", batch_size=256),
    model=ModelConfig(
        latent_dims=(64, 32, 16, 8, 4),        # as for MNIST (paper.md section 2)
        hidden_dims=(512, 256, 128, 64, 32),
        inference="ladder",
        batch_norm=True,
    ),
    train=TrainConfig(
        epochs=1500,
        learning_rate=1e-3,
        warmup_epochs=200,
        seed=0,
        eval_samples=0,                # use `lvae evaluate --samples 5000`
    ),
)

if __name__ == "__main__":  # `python recipes/omniglot.py [--set ...]` = `lvae train` on it
    import keras_lvae_cli

    sys.exit(keras_lvae_cli.main(["train", __file__, *sys.argv[1:]]))
