"""A folder of image files as a dataset: its splits, and decoding them in tf.data.

`list_split(data_dir, split, image_size)` says which files make a split:
- a folder with `train/` and `test/` subfolders (and optionally `validation/`) uses
  them as they are;
- any other folder is one pool: a pinned permutation (seed `SPLIT_SEED`) of its
  sorted file names holds out `HELD_OUT_FRACTION` of the images as `test` and as
  much again as `validation` (at least one each); the rest is `train`. The split is
  a function of the file names alone, so it is the same in every run.
Inside a split's folder, images in class subfolders (and none loose beside them) get
the subfolder's index in sorted order as their label, as Keras'
`image_dataset_from_directory` reads them.

Listing reads each file's header (Pillow, lazily: no pixels; PNG checksums, the end
marker of a JPEG), so that a file that is not an image or is truncated is named before
any training, and grey, RGBA and mixed-size images are said once (about 65 us a small
PNG). `decode_square` reads the pixels inside tf.data: TensorFlow's
decoders (`tf.io.decode_image`: PNG, JPEG, GIF, BMP, WebP), a centre crop to a square
and an area resize, rounded to 8-bit values. TIFF, which TensorFlow does not
decode, goes through Pillow in a `tf.numpy_function`.

Reference: `keras.utils.image_dataset_from_directory` (class subfolders,
`crop_to_aspect_ratio`, `interpolation="area"`, a seeded `validation_split`).
"""

import dataclasses
import os
from typing import Optional

import numpy as np
import tensorflow as tf

from keras_lvae.readers import IMAGE_EXTENSIONS, checked_image_size, logger, read_rgb

HELD_OUT_FRACTION = 0.1  # of a one-folder collection: for test, and as much for validation
SPLIT_SEED = 0
SPLITS = ("train", "validation", "test")
_PILLOW_ONLY = (".tif", ".tiff")  # not among TensorFlow's decoders


@dataclasses.dataclass(frozen=True)
class Listing:
    """The files of one split, sorted, with their class labels (or None)."""
    paths: tuple
    labels: Optional[np.ndarray]
    class_names: tuple
    where: str  # for the "where the data come from" lines


def _image_paths(folder):
    return sorted(os.path.join(parent, name) for parent, _, names in os.walk(folder)
                  for name in names if name.lower().endswith(IMAGE_EXTENSIONS))


def _labelled(folder, paths):
    """(labels, class names) when every image sits in a class subfolder of `folder`."""
    top = [os.path.relpath(p, folder).split(os.sep)[0] for p in paths]
    if not paths or any(part == os.path.relpath(p, folder) for part, p in zip(top, paths)):
        return None, ()
    names = tuple(sorted(set(top)))
    return np.array([names.index(part) for part in top], np.int64), names


def _held_out(count, validation_size):
    """(test, validation) counts of a one-folder collection of `count` images."""
    test = max(1, round(count * HELD_OUT_FRACTION))
    validation = validation_size or test
    return test, validation


def list_split(data_dir, split, image_size, validation_size=0):
    """The `Listing` of `split` ("train", "validation" or "test") of an image folder.

    `validation_size=N`: N images for validation instead of the held-out fraction (of
    one folder), or carved from the end of `train/` (of train/ and test/ folders
    without a `validation/`).
    """
    size = checked_image_size(image_size)
    if not data_dir:
        raise ValueError("Dataset 'image_folder' needs data_dir=... (`lvae`: --data-dir DIR, "
                         "or in a recipe data.data_dir): the folder holding your image files ("
                         + ", ".join(IMAGE_EXTENSIONS) + ").")
    root = os.fspath(data_dir)
    if not os.path.isdir(root):
        raise ValueError(f"Invalid value for argument `data_dir`: {root!r} is not a directory.")
    if split not in SPLITS:
        raise ValueError(f"Invalid value for argument `split`: expected one of {list(SPLITS)}, "
                         f"received {split!r}.")
    if os.path.isdir(os.path.join(root, "train")):
        paths, folder, where = _split_folders(root, split, validation_size)
    else:
        paths, folder, where = _one_folder(root, split, validation_size)
    labels, class_names = _labelled(folder, paths)
    if labels is not None:
        where += f"; labels from {len(class_names)} class subfolders"
    _check_headers(paths, size, folder, split)
    logger.info("image_folder %s: %d images %s, centre-cropped and area-resized to %d x %d",
                split, len(paths), where, size, size)
    return Listing(tuple(paths), labels, class_names, where)


def _split_folders(root, split, validation_size):
    carve = split in ("train", "validation") and validation_size and not os.path.isdir(
        os.path.join(root, "validation"))
    folder = os.path.join(root, "train" if carve else split)
    if not os.path.isdir(folder):
        hint = (" (or pass validation_size=N to hold out training images)"
                if split == "validation" else "")
        raise ValueError(f"Dataset 'image_folder': {root} has a train/ folder but no {split}/ "
                         f"folder{hint}.")
    paths = _image_paths(folder)
    if not paths:
        raise ValueError(f"Dataset 'image_folder': no image files ({', '.join(IMAGE_EXTENSIONS)}) "
                         f"in {folder}.")
    if carve:
        if validation_size >= len(paths):
            raise ValueError(f"Invalid value for argument `validation_size`: expected fewer than "
                             f"the {len(paths)} images in {folder}, received {validation_size}.")
        paths = paths[-validation_size:] if split == "validation" else paths[:-validation_size]
        return paths, folder, (f"in {folder} ({'the last' if split == 'validation' else 'all but the last'} "
                               f"{validation_size} in name order)")
    return paths, folder, f"in {folder}"


def _one_folder(root, split, validation_size):
    paths = _image_paths(root)
    if not paths:
        raise ValueError(f"Dataset 'image_folder': no image files ({', '.join(IMAGE_EXTENSIONS)}) "
                         f"in {root} or its subfolders.")
    test, validation = _held_out(len(paths), validation_size)
    if test + validation >= len(paths):
        raise ValueError(f"Dataset 'image_folder': {root} has {len(paths)} images, too few to hold "
                         f"out {test} for test and {validation} for validation and train on the "
                         "rest; add images, or put them in train/ and test/ subfolders.")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(paths))
    chosen = {"test": order[:test], "validation": order[test:test + validation],
              "train": order[test + validation:]}[split]
    share = (f"{validation} images" if validation_size and split == "validation"
             else f"{HELD_OUT_FRACTION:.0%}")
    return ([paths[i] for i in sorted(chosen)], root,
            f"of the {len(paths)} in {root} (one folder: {share} held out as {split}, fixed by "
            "the file names)" if split != "train" else
            f"of the {len(paths)} in {root} (one folder: {test} held out for test, "
            f"{validation} for validation, fixed by the file names)")


def _check_headers(paths, size, folder, split):
    """Name a file that is not an image, say once what is converted, refuse images
    smaller than `size`."""
    from PIL import Image, UnidentifiedImageError

    converted, sizes, small = 0, set(), []
    for path in paths:
        try:
            with Image.open(path) as image:
                width, height = image.size
                converted += image.mode != "RGB"
                if image.format == "PNG":
                    image.verify()  # every chunk's checksum: finds a truncated file
            if image.format == "JPEG" and not _ends_like_a_jpeg(path):
                raise OSError("truncated JPEG (no end-of-image marker)")
        except (OSError, UnidentifiedImageError, SyntaxError) as error:
            raise ValueError(f"Invalid image file {path}: {error}") from None
        sizes.add((width, height))
        if min(width, height) < size:
            small.append((min(width, height), path))
    if small:
        side, path = min(small)
        raise ValueError(f"Invalid value for argument `image_size`: {len(small)} of the "
                         f"{len(paths)} {split} images in {folder} are smaller than {size} x {size} "
                         f"(the smallest, {path}, has a side of {side}); pass image_size <= {side} "
                         "or remove them (images are cropped and shrunk, never enlarged).")
    if converted:
        logger.info("image_folder: %d of the %d images are grey, paletted or have an alpha "
                    "channel; they are read as RGB (alpha dropped)", converted, len(paths))
    if len(sizes) > 1:
        (w0, h0), (w1, h1) = min(sizes, key=lambda s: s[0] * s[1]), max(sizes, key=lambda s: s[0] * s[1])
        logger.info("image_folder: %d image sizes, from %d x %d to %d x %d; each is centre-cropped "
                    "to a square first", len(sizes), w0, h0, w1, h1)


def _ends_like_a_jpeg(path, tail=65536):
    """Whether the end-of-image marker FF D9 is in the file's last `tail` bytes (a
    truncated JPEG lacks it; TensorFlow's decoder would fail on it mid-epoch)."""
    with open(path, "rb") as file:
        file.seek(max(0, os.path.getsize(path) - tail))
        return b"\xff\xd9" in file.read()


def _pillow_square(path, size):
    path = path.decode() if isinstance(path, bytes) else path
    pixels = read_rgb(path)
    height, width = pixels.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = tf.image.resize(pixels[top:top + side, left:left + side], (size, size), "area")
    return np.clip(np.round(square.numpy()), 0, 255).astype(np.uint8)


def decode_square(path, size):
    """uint8 [size, size, 3] pixels of the image file `path` (a string tensor): the
    centre square, area-resized. For use inside `tf.data.Dataset.map`."""
    def with_tensorflow():
        pixels = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        height, width = tf.shape(pixels)[0], tf.shape(pixels)[1]
        side = tf.minimum(height, width)
        square = tf.image.crop_to_bounding_box(pixels, (height - side) // 2, (width - side) // 2,
                                               side, side)
        resized = tf.image.resize(square, (size, size), method="area")
        return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)

    def with_pillow():
        return tf.numpy_function(lambda p: _pillow_square(p, size), [path], tf.uint8)

    tiff = tf.strings.regex_full_match(tf.strings.lower(path), r".*\.tiff?")
    pixels = tf.cond(tiff, with_pillow, with_tensorflow)
    return tf.ensure_shape(pixels, (size, size, 3))


def read_all(listing, image_size):
    """The listed images as one uint8 array [N, size, size, 3] (decoded in parallel)."""
    ds = (tf.data.Dataset.from_tensor_slices(list(listing.paths))
          .map(lambda p: decode_square(p, image_size), num_parallel_calls=tf.data.AUTOTUNE)
          .batch(256))
    return np.concatenate([batch.numpy() for batch in ds])
