"""Tune the LVAE on MNIST with KerasTuner, then retrain the best configuration.

Random search over depth (1-5 stochastic layers), widths, latent sizes,
learning rate, warm-up length and inference type (ladder or bottom_up),
minimising `val_nelbo` on 10,000 training digits held out for validation (the
test set stays untouched). Each trial trains `tune.epochs_per_trial` epochs;
the best configuration is then trained for `tune.retrain_epochs` epochs in
WORKDIR/best, as `lvae train` would. Needs the tuning extra
(`pip install "keras-lvae[tuning]"`):

    lvae tune recipes/tune_mnist.py --workdir runs/tune_mnist

Run again, it reuses the finished trials and the retrained run.
"""

import sys

from keras_lvae.config import Config, DataConfig, TrainConfig, TuneConfig

CONFIG = Config(
    data=DataConfig(
        dataset="mnist",
        batch_size=256,
        validation_split="validation",  # tune on held-out training digits, never on test
        validation_size=10_000,
    ),
    train=TrainConfig(seed=0, eval_samples=100),  # the retrained model's test L_100
    tune=TuneConfig(
        max_trials=10,
        epochs_per_trial=10,           # about 2 min per trial on 2 CPU cores
        retrain_epochs=100,
        seed=1,                        # KerasTuner ignores 0
        depths=(1, 2, 3, 4, 5),        # stochastic layers
        first_hidden_dims=(128, 256, 512),  # width of layer 1; halved per layer up
        first_latent_dims=(16, 32, 64),     # size of z_1; halved per layer up (at least 2)
        min_learning_rate=1e-4,        # Adam, sampled log-uniformly
        max_learning_rate=3e-3,
        warmup_epochs=(0, 1, 5),
        inference=("ladder", "bottom_up"),
    ),
)

if __name__ == "__main__":  # `python recipes/tune_mnist.py [--set ...]` = `lvae tune` on it
    import keras_lvae_cli

    sys.exit(keras_lvae_cli.main(["tune", __file__, *sys.argv[1:]]))
