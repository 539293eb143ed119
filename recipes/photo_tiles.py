"""The colour model behind `saved_models/photo_tiles`: a 3-layer conv LVAE on `photo_patches`.

`photo_patches` (2,058 train / 229 test 32 x 32 tiles of seven scikit-image photographs)
under a discretized mixture of 10 logistics, with latent maps at 16 x 16, 8 x 8 and 4 x 4.
Its test tiles share the seven photographs with its training tiles (a split by tile), so
its test L_k (3.73 bits/dim at epoch 310; PNG 4.69, WebP lossless 4.02, JPEG XL lossless
3.62 on the same tiles) measures how well it remembers them; on photographs it never saw it
needs more bits than PNG (experiments/photo_tiles; recipes/photos.py is the model judged on
unseen photographs). A long, resumable run:
about 75 s an epoch on one CPU core, continued over several sessions:

    TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 taskset -c 1 \\
        lvae train photo_tiles --workdir /work/runs/photo_tiles

(run the same command again to resume; `--set train.epochs=N` trains a finished run on).
"""

import sys

from keras_lvae.config import Config, DataConfig, ModelConfig, TrainConfig

CONFIG = Config(
    data=DataConfig(
        dataset="photo_patches",       # 8-bit RGB tiles, never binarized
        batch_size=64,                 # 32 steps per epoch
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
        learn_top_prior=True,
        likelihood="logistic_mixture",
        mixture_components=10,         # PixelCNN++'s choice
    ),
    train=TrainConfig(
        epochs=1000,                   # a long run: resume it, then export its best epoch
        learning_rate=1e-3,            # Adam
        warmup_epochs=5,
        seed=0,
        ema_decay=0.999,               # validation, export and sampling use the averages
        skip_nonfinite_steps=True,     # a long run must not die of one bad step
        adaptive_skip_factor=10.0,     # skip updates 10x above the recent 0.95 quantile norm
        eval_samples=10,               # the final test L_10; `lvae evaluate` for larger k
        keep_every_epochs=50,          # snapshots/epoch_<N>.npz for the learning curve
    ),
)

if __name__ == "__main__":  # `python recipes/photo_tiles.py [--set ...]` = `lvae train`
    import keras_lvae_cli

    sys.exit(keras_lvae_cli.main(["train", __file__, *sys.argv[1:]]))
