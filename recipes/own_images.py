"""Your own colour images: a 2-layer convolutional LVAE on a folder of image files.

    lvae train own_images --set data.data_dir="$IMAGES" --workdir runs/own_images

$IMAGES holds your images (png, jpg, bmp, gif, webp, tif; any sizes, in subfolders or not).
One folder is enough: 10% is held out for test and 10% for validation, fixed by the file
names (train/ and test/ subfolders, and a validation/ one, are used as they are instead).
Each image is centre-cropped to a square and area-resized to 32 x 32 (`--set
data.image_size=64` for more detail, about four times slower); images are streamed from
disk, never all in memory; every image is used every epoch (the last batch is smaller).

About 5 ms per training image and epoch on 2 CPU cores (800 images of 32 x 32: 4 s an
epoch, 6.5 s on one core, plus about 10 s of tracing in the first). `lvae evaluate runs/own_images` then
reports test bits per dimension; `python benchmarks/codecs.py --dataset image_folder
--data-dir "$IMAGES" --model runs/own_images` sets them beside PNG and WebP on the same
images.
"""

import sys

from keras_lvae.config import Config, DataConfig, ModelConfig, TrainConfig

CONFIG = Config(
    data=DataConfig(
        dataset="image_folder",
        image_size=32,                 # the side images are cropped and resized to
        batch_size=64,
        validation_split="validation",  # val_* metrics on the held-out validation images
    ),
    model=ModelConfig(
        architecture="conv",           # spatial latents: 8 x 8 and 4 x 4 maps
        latent_dims=(16, 16),
        hidden_dims=(32, 32),
        residual_blocks=2,
        downsample=(2, 1),             # 32 -> 8 -> 4
        activation="swish",
        skip=True,
        free_bits=0.25,                # nats per layer and example: keeps z_2 in use early
        likelihood="logistic_mixture",
        mixture_components=5,
    ),
    train=TrainConfig(
        epochs=30,
        learning_rate=1e-3,            # Adam
        warmup_epochs=2,
        seed=0,
        ema_decay=0.999,               # validation, export and sampling use the averages
        skip_nonfinite_steps=True,     # one bad step does not end a long run
        eval_samples=10,               # test L_10 at the end; `lvae evaluate` for larger k
    ),
)

if __name__ == "__main__":  # `python recipes/own_images.py [--set ...]` = `lvae train`
    import keras_lvae_cli

    sys.exit(keras_lvae_cli.main(["train", __file__, *sys.argv[1:]]))
