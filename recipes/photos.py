"""A colour ladder of photographs it never saw: a 3-layer conv LVAE on tiles of `photos`.

`photos` holds every 32 x 32 tile of 25 training photographs (16,736 tiles) and of 8
test photographs (5,408 tiles) that no training tile comes from (split by photograph;
shared/data/photos, read through --data-dir or KERAS_LVAE_DATA_DIR). Training tiles are
mirrored at random (`data.random_flips`). The likelihood is a discretized mixture of 10
logistics; latent maps at 16 x 16, 8 x 8 and 4 x 4. The top prior is N(0, I) at every
position (`learn_top_prior=False`), so the model codes images of any size whose sides are
multiples of its total stride, 8. The goal: a test L_k in bits/dim below PNG (3.81 on the
test photographs' tiles), WebP lossless (3.07) and JPEG XL (2.74); `benchmarks/codecs.py`.

A long, resumable run: about 10 minutes an epoch (262 steps of 64 tiles) on one CPU core,
continued over several sessions:

    TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 taskset -c 1 \\
        lvae train photos --data-dir /work/shared/data --workdir /work/runs/photos

(run the same command again to resume). Validation (`val_*`) is measured on the test
photographs' tiles with the averaged weights: it is a learning curve that shows overfitting,
not a choice of epoch; the shipped version is the latest epoch at the time.
"""

import sys

from keras_lvae.config import Config, DataConfig, ModelConfig, TrainConfig

CONFIG = Config(
    data=DataConfig(
        dataset="photos",              # tiles of whole photographs, split by photograph
        batch_size=64,                 # 262 steps per epoch
        random_flips=True,             # mirrored training tiles: augmentation from the
                                       # training photographs only
    ),
    model=ModelConfig(
        architecture="conv",
        latent_dims=(32, 32, 32),      # channels per latent map, z_1 (bottom) ... z_3 (top)
        hidden_dims=(64, 64, 64),      # conv filters per rung
        residual_blocks=2,
        downsample=(1, 1, 1),          # 32 -> 16 -> 8 -> 4
        gated=True,
        activation="swish",
        skip=True,                     # each prior sees the features of the rung above
        free_bits=0.1,                 # nats per layer and example, against early collapse
        learn_top_prior=False,         # N(0, I) everywhere: any image size, not only 32 x 32
        likelihood="logistic_mixture",
        mixture_components=10,         # PixelCNN++'s choice
    ),
    train=TrainConfig(
        epochs=300,                    # a long run: resume it session by session
        learning_rate=1e-3,            # Adam
        warmup_epochs=2,
        seed=0,
        ema_decay=0.999,               # validation, export and sampling use the averages
        skip_nonfinite_steps=True,     # a long run must not die of one bad step
        adaptive_skip_factor=10.0,     # skip updates 10x above the recent 0.95 quantile norm
        eval_samples=10,               # the final test L_10; `lvae evaluate` for larger k
        keep_every_epochs=10,          # snapshots/epoch_<N>.npz for the learning curve
    ),
)

if __name__ == "__main__":  # `python recipes/photos.py [--set ...]` = `lvae train`
    import keras_lvae_cli

    sys.exit(keras_lvae_cli.main(["train", __file__, *sys.argv[1:]]))
