"""Bits per dimension of lossless codecs on the same test images as a colour model.

Codes each test image of an 8-bit colour dataset (default `photo_patches`' 229 tiles) on its
own with PNG (Pillow, optimize=True) and WebP lossless (Pillow, method 6, quality 100: the
most effort), and prints their bits per dimension (file bits / (H W C)) beside a model's
test L_1 and L_k in bits/dim, when a model is given: a run folder, a .keras file or a
checkpoint, with its moving-average weights if it has them.

    python benchmarks/codecs.py
    python benchmarks/codecs.py --model /work/runs/photo_tiles --samples 100
    python benchmarks/codecs.py --dataset image_folder --data-dir DIR --model runs/own_images

A codec's size includes its container (PNG chunks, the RIFF header), as a file on disk would;
a model's bound is an ideal code length, which an entropy coder (bits-back ANS) reaches to
within a few bits per image.
"""

import argparse
import io
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import keras_lvae  # noqa: E402
from keras_lvae import data, training  # noqa: E402

CODECS = {
    "PNG (optimize)": dict(format="PNG", optimize=True),
    "WebP lossless (method 6)": dict(format="WEBP", lossless=True, method=6, quality=100),
}


def codec_bits_per_dim(images, options):
    """Mean bits per dimension of the images coded one by one; the images are checked to
    decode to themselves."""
    bits = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, **options)
        with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
            assert np.array_equal(np.asarray(decoded.convert("RGB")), image), "not lossless"
        bits.append(8 * len(buffer.getvalue()) / image.size)
    return float(np.mean(bits))


def load_model(path):
    """A model from a run folder, .keras file or checkpoint, with its averages in place."""
    if os.path.isdir(path):
        keras_file = os.path.join(path, training.MODEL_FILE)
        path = keras_file if os.path.isfile(keras_file) else os.path.join(
            path, training.CHECKPOINT_FILE)
    model = (training.model_from_checkpoint(path)[0] if path.endswith(".npz")
             else keras.saving.load_model(path))
    model.use_ema_weights()
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="photo_patches")
    parser.add_argument("--split", default="test")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--model", default=None, help="run folder, .keras file or checkpoint")
    parser.add_argument("--samples", type=int, default=100, help="k of the model's L_k")
    parser.add_argument("--image-size", type=int, default=None,
                        help="image_folder: the side images are resized to (default: the "
                             "model's)")
    args = parser.parse_args()

    model = load_model(args.model) if args.model else None
    image_size = args.image_size
    if args.dataset == "image_folder" and image_size is None and model is not None:
        image_size = int(model.feature_shape[0])
    floats, _ = data.load_arrays(args.dataset, args.split, data_dir=args.data_dir,
                                 image_size=image_size)
    if floats.ndim != 4 or floats.shape[-1] != 3:
        raise SystemExit(f"--dataset {args.dataset}: expected 8-bit colour images, received "
                         f"shape {floats.shape}")
    images = np.round(floats * 255.0).astype(np.uint8)
    print(f"{args.dataset} {args.split}: {len(images)} images of {images.shape[1:]}")
    rows = [(name, codec_bits_per_dim(images, options)) for name, options in CODECS.items()]
    if model is not None:
        start = time.perf_counter()
        report = keras_lvae.bound_report(model, images / 255.0, num_samples=args.samples,
                                         batch_size=50)
        print(f"model {args.model}: bounds in {time.perf_counter() - start:.0f} s")
        bits = report["bits_per_dim"]
        rows += [("model L_1 (ELBO)", bits["L_1"]["mean"]),
                 (f"model L_{args.samples}", bits["L_k"]["mean"])]
    print(f"{'code':<28} bits/dim")
    for name, value in rows:
        print(f"{name:<28} {value:8.3f}")


if __name__ == "__main__":
    main()
