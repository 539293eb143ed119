"""The convolutional LVAE of addtt/ladder-vae-pytorch on static binarized MNIST.

Its README's MNIST command, as keras-lvae settings (3 stochastic layers; published:
-ELBO 82.14, L_1000 -79.24 nats on the static MNIST test set, on a GPU):

    python main.py --zdims 32 32 32 --downsample 1 1 1 --nonlin elu --skip
        --blocks-per-layer 4 --gated --freebits 0.5 --learn-top-prior --data-dep-init
        --seed 42 --dataset static_mnist

What differs, on purpose: the merge is the paper's precision weighting (theirs is a
learned convolution), there is no dropout (theirs: 0.2) and no data-dependent
initialisation, the KL is analytic (theirs: one-sample), and training has no fixed
step budget (theirs runs for days on a GPU). 28 x 28 images are padded to 32 x 32,
so the latents are 8 x 8, 4 x 4 and 2 x 2 maps of 32 channels. A training epoch
(50,000 images) takes hours on 2 CPU cores: see `conv_static_mnist_small.py`.

    lvae train recipes/conv_static_mnist.py
"""

import sys

from keras_lvae.config import Config, DataConfig, ModelConfig, TrainConfig

CONFIG = Config(
    data=DataConfig(
        dataset="binarized_mnist",     # Larochelle's fixed binarization, 50k/10k/10k
        batch_size=64,                 # theirs
        validation_split="validation",
    ),
    model=ModelConfig(
        architecture="conv",
        latent_dims=(32, 32, 32),      # --zdims: 32 channels per latent map
        hidden_dims=(64, 64, 64),      # --nfilters 64 in every rung
        residual_blocks=4,             # --blocks-per-layer 4
        downsample=(2, 1, 1),          # their initial stride-2 stem + --downsample 1 1 1
        gated=True,                    # --gated
        activation="elu",              # --nonlin elu
        batch_norm=True,               # theirs (residual blocks "bacdbacd")
        skip=True,                     # --skip
        free_bits=0.5,                 # --freebits 0.5 (nats per layer and example)
        learn_top_prior=True,          # --learn-top-prior
    ),
    train=TrainConfig(
        epochs=1000,                   # theirs is a step budget; resume to continue
        optimizer="adamax",            # theirs
        learning_rate=3e-4,            # theirs
        warmup_epochs=0,               # --beta-anneal 0: free bits instead of warm-up
        seed=42,                       # --seed 42
        eval_samples=0,                # use `lvae evaluate --samples 1000`
        sample_every_epochs=1,
    ),
)

if __name__ == "__main__":  # `python recipes/conv_static_mnist.py [--set ...]` = `lvae train`
    import keras_lvae_cli

    sys.exit(keras_lvae_cli.main(["train", __file__, *sys.argv[1:]]))
