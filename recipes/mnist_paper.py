"""The paper's MNIST study (Sønderby et al. 2016, sections 3-4; ../docs or paper.md).

The 5-layer LVAE with batch norm and KL warm-up on all 60,000 dynamically
binarized MNIST digits: 2,000 epochs with 200 of warm-up, then 2,000 epochs of
fine-tuning on the importance-weighted bound (10 Monte Carlo x 10 importance
samples, learning rate x0.75 every 200 epochs). The paper's test L_5000 is
-82.12 before and -81.74 nats after fine-tuning. On 2 CPU cores a training
epoch takes about 11 s (2,000 epochs: about 6 h); a fine-tuning epoch draws 100
samples per image and is far slower. Runs checkpoint every epoch and resume
when the same command is run again.

    lvae train recipes/mnist_paper.py --workdir runs/lvae5
    lvae evaluate runs/lvae5/model.keras --samples 5000 --bn-statistics recompute

The study's other models are overrides of this one:

    --set model.inference=bottom_up                      the VAE baseline (same p(x, z))
    --set model.batch_norm=false                         without batch norm
    --set train.warmup_epochs=0                          without warm-up
    --set model.latent_dims=64,32 --set model.hidden_dims=512,256
                                                         2 stochastic layers (the paper's
                                                         shallower models drop the top layers)
    --set train.epochs=100 --set fine_tune.epochs=0      a shorter budget, no fine-tuning
"""

import sys

from keras_lvae.config import Config, DataConfig, FineTuneConfig, ModelConfig, TrainConfig

CONFIG = Config(
    data=DataConfig(
        dataset="mnist",               # 60,000 train, dynamically binarized; 10,000 test, fixed
        data_dir=None,                 # the IDX files; None: $KERAS_LVAE_DATA_DIR, else tfds
        batch_size=256,
    ),
    model=ModelConfig(
        latent_dims=(64, 32, 16, 8, 4),        # z_1 .. z_5
        hidden_dims=(512, 256, 128, 64, 32),   # 2 dense layers each, both directions
        inference="ladder",
        batch_norm=True,                       # on every dense layer and the heads
    ),
    train=TrainConfig(
        epochs=2000,
        learning_rate=1e-3,            # Adam; the paper's text (its code's README says 2e-4)
        warmup_epochs=200,             # beta: 0 -> 1 linearly over the first 200 epochs
        seed=0,
        eval_samples=0,                # L_5000 takes ~15 min here: use `lvae evaluate`
    ),
    fine_tune=FineTuneConfig(
        epochs=2000,
        mc_samples=10,
        iw_samples=10,                 # the loss is -L_10
        decay_every_epochs=200,
        decay_factor=0.75,
    ),
)

if __name__ == "__main__":  # `python recipes/mnist_paper.py [--set ...]` = `lvae train` on it
    import keras_lvae_cli

    sys.exit(keras_lvae_cli.main(["train", __file__, *sys.argv[1:]]))
