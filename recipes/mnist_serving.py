"""The recipe of the model shipped in saved_models/mnist_lvae/1.

The paper's 5-layer LVAE (batch norm, KL warm-up) on full MNIST for 200
epochs (the paper trains 2,000; 200 take about 45 min on 2 CPU cores), then
evaluated as in the paper and exported for TF Serving. From the repository root:

    lvae train recipes/mnist_serving.py --workdir runs/mnist_serving
    lvae evaluate runs/mnist_serving/model.keras --samples 5000
    lvae export runs/mnist_serving/model.keras --name mnist_lvae --version 1

The shipped model was trained with the same settings by the earlier flag-based
`lvae train`; saved_models/README.md has its numbers.
"""

import sys

from keras_lvae.config import Config, DataConfig, ModelConfig, TrainConfig

CONFIG = Config(
    data=DataConfig(
        dataset="mnist",               # 60,000 train, dynamically binarized; 10,000 test, fixed
        batch_size=256,                # as in the paper
    ),
    model=ModelConfig(
        latent_dims=(64, 32, 16, 8, 4),
        hidden_dims=(512, 256, 128, 64, 32),
        inference="ladder",
        batch_norm=True,
    ),
    train=TrainConfig(
        epochs=200,
        learning_rate=1e-3,            # Adam, as in the paper
        warmup_epochs=20,              # the paper's ratio: beta 0 -> 1 over the first tenth
        seed=0,
        eval_samples=0,                # `lvae evaluate` computes L_5000
    ),
)

if __name__ == "__main__":  # `python recipes/mnist_serving.py [--set ...]` = `lvae train` on it
    import keras_lvae_cli

    sys.exit(keras_lvae_cli.main(["train", __file__, *sys.argv[1:]]))
