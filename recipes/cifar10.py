"""A 15-layer convolutional LVAE on CIFAR-10 in the style of addtt/ladder-vae-pytorch (a GPU recipe).

Its README's CIFAR-10 model (published: 3.36 bits/dim for the ELBO, 3.34 with 100
importance samples): 15 stochastic layers of 32 channels, 64 filters, 4 gated residual
blocks per rung, an initial stride-2 step and 3 more halvings spread evenly so that the
top maps are 2 x 2, skip connections, a learned top prior, free bits 1.0 ("for more than
6 layers"), a mixture of 10 discretized logistics with PixelCNN++'s coupled means, Adamax
3e-4. What differs, on purpose: the paper's precision-weighted merge (theirs is learned),
no dropout and no data-dependent initialisation (as in conv_static_mnist.py).

Cost: 12.1 M weights; 1.47 G multiply-adds per image for the ELBO, so about 8.8 GFLOP per
training image (forward and backward). One GPU that sustains 2-4 TFLOP/s on these 64-channel
convolutions (an estimate for an A100-class card in float32; mixed precision does better)
takes 2-4 minutes an epoch of 50,000 images; their runs take days. Two CPU cores train
5.7 images/s: 2.5 hours an epoch (benchmarks/README.md, "Colour images"). Data: the CIFAR-10 python
pickles (cifar-10-python.tar.gz unpacked) in DATA_DIR, or tfds when online:

    lvae train recipes/cifar10.py --set data.data_dir=DATA_DIR
"""

import sys

from keras_lvae.config import Config, DataConfig, ModelConfig, TrainConfig

LAYERS = 15

CONFIG = Config(
    data=DataConfig(
        dataset="cifar10",             # 50,000 train / 10,000 test, 32 x 32 x 3, 8-bit
        batch_size=64,                 # theirs
    ),
    model=ModelConfig(
        architecture="conv",
        latent_dims=(32,) * LAYERS,    # --zdims 32 x 15
        hidden_dims=(64,) * LAYERS,    # 64 filters in every deterministic map
        residual_blocks=4,             # --blocks-per-layer 4
        # 32 -> 16 at the stem, then halvings at layers 5, 9 and 13: 16, 8, 4, 2 (top).
        downsample=(1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0),
        gated=True,                    # --gated
        activation="elu",              # --nonlin elu
        batch_norm=True,
        skip=True,                     # --skip
        free_bits=1.0,                 # --freebits 1.0 (nats per layer and example)
        learn_top_prior=True,          # --learn-top-prior
        likelihood="logistic_mixture",
        mixture_components=10,         # PixelCNN++'s 10 components
        coupled_means=True,            # PixelCNN++'s channel-coupled means
    ),
    train=TrainConfig(
        epochs=1000,                   # theirs is a step budget; resume to continue
        optimizer="adamax",            # theirs
        learning_rate=3e-4,            # theirs
        warmup_epochs=0,               # free bits instead of warm-up
        seed=42,
        jit_compile=True,              # XLA: the GPU path
        eval_samples=0,                # use `lvae evaluate --samples 100` (bits/dim too)
        sample_every_epochs=1,
    ),
)

if __name__ == "__main__":  # `python recipes/cifar10.py [--set ...]` = `lvae train` on it
    import keras_lvae_cli

    sys.exit(keras_lvae_cli.main(["train", __file__, *sys.argv[1:]]))
