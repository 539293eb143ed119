"""Bits per dimension of lossless codecs beside a colour model, per tile and per photograph.

Codes each test tile of an 8-bit colour dataset on its own (default `photos`: every 32 x 32
tile of the 8 test photographs, which no training tile comes from) with PNG (Pillow,
optimize), WebP lossless (Pillow, method 6, quality 100: the most effort), JPEG XL lossless
(libjxl through imagecodecs, effort 9, the highest) and AVIF lossless (libavif through
imagecodecs, quality 100 with RGB kept as is, speed 0, the slowest and smallest), and every
whole photograph of `--whole DIR` (every pixel, borders and flat areas included; default:
`photos/test` for `photos`). Each file is checked to decode to the image exactly. With a
model (a run folder, a .keras file or a checkpoint; its moving-average weights if it has
them) its test L_1 and L_k per tile stand beside the codecs. For `photos` every row is
given per photograph too.

    python benchmarks/codecs.py --data-dir ../shared/data
    python benchmarks/codecs.py --data-dir ../shared/data --model /work/runs/photos --samples 100
    python benchmarks/codecs.py --dataset photo_patches      # tiles of the training photographs
    python benchmarks/codecs.py --dataset image_folder --data-dir DIR --model runs/own_images

Needs `pip install "keras-lvae[codecs]"` (imagecodecs) for JPEG XL and AVIF. A codec's size
includes its container (PNG chunks, the RIFF header, the JPEG XL and AVIF boxes), as a file
on disk would; a model's bound is an ideal code length, which an entropy coder (bits-back
ANS) reaches only to within a per-file overhead.
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
from keras_lvae import checkpoints, data, readers, training  # noqa: E402


def _pillow(**options):
    def encode(image):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, **options)
        return buffer.getvalue()

    def decode(encoded):
        with Image.open(io.BytesIO(encoded)) as image:
            return np.asarray(image.convert("RGB"))
    return encode, decode


def _jpegxl():
    import imagecodecs

    return (lambda image: imagecodecs.jpegxl_encode(image, lossless=True, effort=9),
            imagecodecs.jpegxl_decode)


def _avif():
    import imagecodecs

    # level=100 is libavif's lossless mode: 4:4:4 and the identity matrix (RGB as is).
    return (lambda image: imagecodecs.avif_encode(image, level=100, speed=0),
            imagecodecs.avif_decode)


# name -> a function giving (encode(uint8 [H, W, 3]) -> bytes, decode(bytes) -> uint8 array)
CODECS = {
    "PNG (optimize)": lambda: _pillow(format="PNG", optimize=True),
    "WebP lossless (method 6)": lambda: _pillow(format="WEBP", lossless=True, method=6,
                                                quality=100),
    "JPEG XL lossless (effort 9)": _jpegxl,
    "AVIF lossless (speed 0)": _avif,
}


def codec_bits(images, codec):
    """Bits per dimension of each image (uint8 [H, W, 3]) coded on its own as one file by
    `codec` (a value of CODECS); each file is checked to decode to the image exactly."""
    encode, decode = codec()
    bits = []
    for image in images:
        image = np.ascontiguousarray(image)
        encoded = encode(image)
        if not np.array_equal(decode(encoded), image):
            raise AssertionError(f"{codec}: not lossless")
        bits.append(8 * len(encoded) / image.size)
    return np.array(bits)


def codec_bits_per_dim(images, codec):
    """Mean bits per dimension of the images coded one by one (see `codec_bits`)."""
    return float(np.mean(codec_bits(images, codec)))


def load_model(path):
    """A model from a run folder, .keras file or checkpoint, with its averages in place."""
    if os.path.isdir(path):
        keras_file = os.path.join(path, checkpoints.MODEL_FILE)
        path = keras_file if os.path.isfile(keras_file) else os.path.join(
            path, checkpoints.CHECKPOINT_FILE)
    model = (training.model_from_checkpoint(path)[0] if path.endswith(".npz")
             else keras.saving.load_model(path))
    model.use_ema_weights()
    return model


def textured(tiles):
    """photo_patches' rule: tiles whose values span more than PHOTO_FLAT_LEVELS levels."""
    return np.ptp(tiles.reshape(len(tiles), -1), axis=1) > readers.PHOTO_FLAT_LEVELS


def _photo_names(folder):
    return sorted(name for name in os.listdir(folder)
                  if name.lower().endswith(readers.IMAGE_EXTENSIONS))


def _table(title, rows, columns):
    print(f"\n{title}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="photos")
    parser.add_argument("--split", default="test")
    parser.add_argument("--data-dir", default=None,
                        help="the data folder (default: $KERAS_LVAE_DATA_DIR)")
    parser.add_argument("--model", default=None, help="run folder, .keras file or checkpoint")
    parser.add_argument("--samples", type=int, default=100, help="k of the model's L_k")
    parser.add_argument("--image-size", type=int, default=None,
                        help="image_folder: the side images are resized to (default: the "
                             "model's)")
    parser.add_argument("--max-tiles", type=int, default=None,
                        help="code this many tiles drawn at random (seed 0) instead of all")
    parser.add_argument("--textured", action="store_true",
                        help="only tiles whose values span more than 8 levels (photo_patches' "
                             "rule)")
    parser.add_argument("--whole", default=None,
                        help="a folder of images coded whole (default for photos: "
                             "<data dir>/photos/<split>); 'none' skips them")
    parser.add_argument("--codecs", default=",".join(CODECS),
                        help="which codecs, comma-separated (default: all)")
    args = parser.parse_args()
    codecs = [name.strip() for name in args.codecs.split(",")]
    unknown = [name for name in codecs if name not in CODECS]
    if unknown:
        parser.error(f"--codecs: unknown {unknown}; expected names from {list(CODECS)}")

    model = load_model(args.model) if args.model else None
    image_size = args.image_size
    if args.dataset == "image_folder" and image_size is None and model is not None:
        image_size = int(model.feature_shape[0])
    floats, labels = data.load_arrays(args.dataset, args.split, data_dir=args.data_dir,
                                      image_size=image_size)
    if floats.ndim != 4 or floats.shape[-1] != 3:
        raise SystemExit(f"--dataset {args.dataset}: expected 8-bit colour images, received "
                         f"shape {floats.shape}")
    tiles = np.round(floats * 255.0).astype(np.uint8)
    keep = textured(tiles) if args.textured else np.ones(len(tiles), bool)
    if args.max_tiles is not None and args.max_tiles < keep.sum():
        chosen = np.random.default_rng(0).choice(np.flatnonzero(keep), args.max_tiles,
                                                 replace=False)
        keep = np.isin(np.arange(len(tiles)), chosen)
    tiles = tiles[keep]
    labels = None if labels is None else labels[keep]
    print(f"{args.dataset} {args.split}: {len(tiles)} images of {tiles.shape[1:]}"
          + (" (textured only)" if args.textured else ""))

    columns = {}
    for name in codecs:
        start = time.perf_counter()
        columns[name] = codec_bits(tiles, CODECS[name])
        print(f"{name}: {time.perf_counter() - start:.0f} s")
    if model is not None:
        start = time.perf_counter()
        report = keras_lvae.bound_report(model, tiles / 255.0, num_samples=args.samples,
                                         batch_size=50)
        print(f"model {args.model}: bounds in {time.perf_counter() - start:.0f} s")
        to_bits = -1.0 / (np.log(2.0) * np.prod(tiles.shape[1:]))
        columns["model L_1 (ELBO)"] = report["per_example_L_1"] * to_bits
        columns[f"model L_{args.samples}"] = report["per_example_L_k"] * to_bits
    _table("Each tile coded on its own: mean bits/dim (± standard error)",
           [(name, f"{v.mean():.3f} ± {v.std(ddof=1) / np.sqrt(len(v)):.3f}"
             if len(v) > 1 else f"{v.mean():.3f}") for name, v in columns.items()],
           ("code", "bits/dim"))

    photos_folder = None
    if args.dataset == "photos":  # the corpus sits in <data dir>/photos or is <data dir>
        root = args.data_dir or os.environ.get(data.DATA_DIR_ENV)
        nested = os.path.join(root, "photos")
        photos_folder = os.path.join(nested if os.path.isdir(nested) else root, args.split)
    if args.dataset == "photos" and labels is not None:
        names = _photo_names(photos_folder)
        _table("Tiles per photograph: mean bits/dim of its tiles",
               [(names[i], str(int((labels == i).sum())),
                 *(f"{v[labels == i].mean():.3f}" for v in columns.values()))
                for i in np.unique(labels)], ("photograph", "tiles", *columns))

    whole = photos_folder if args.whole is None else (None if args.whole == "none"
                                                     else args.whole)
    if whole:
        names = _photo_names(whole)
        images = [readers.read_rgb(os.path.join(whole, name)) for name in names]
        sizes = np.array([image.size for image in images])
        bits = {}
        for name in codecs:
            start = time.perf_counter()
            bits[name] = codec_bits(images, CODECS[name])
            print(f"{name}, whole images: {time.perf_counter() - start:.0f} s")
        rows = [(names[i], f"{images[i].shape[1]} x {images[i].shape[0]}",
                 *(f"{bits[c][i]:.3f}" for c in codecs)) for i in range(len(names))]
        rows.append(("all (every value counted once)", f"{sizes.sum() // 3:,} pixels",
                     *(f"{(bits[c] * sizes).sum() / sizes.sum():.3f}" for c in codecs)))
        _table(f"Whole images of {whole}, each one file: bits/dim",
               rows, ("image", "width x height", *codecs))


if __name__ == "__main__":
    main()
