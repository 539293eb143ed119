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

from keras_lvae.readers import (CELEBA_CROP, CELEBA_IMAGES, CELEBA_PARTITION, CELEBA_SIZE,
                                CELEBA_SPLITS, IMAGE_EXTENSIONS, checked_image_size, logger,
                                read_rgb)

CELEBA_ALIGNED = (178, 218)  # (width, height) of every aligned face

HELD_OUT_FRACTION = 0.1  # of a one-folder collection: for test, and as much for validation
FEW_TRAINING_EXAMPLES = 1000  # fewer training examples than this are warned about
SPLIT_SEED = 0
SPLITS = ("train", "validation", "test")
_PILLOW_ONLY = (".tif", ".tiff")  # not among TensorFlow's decoders
_SAID_CONVERTED = set()  # collections whose RGB conversion was logged (said once a process)


@dataclasses.dataclass(frozen=True)
class Listing:
    """The files of one split, sorted, with their class labels (or None); for a split cut
    into tiles, each file's number of tiles."""
    paths: tuple
    labels: Optional[np.ndarray]
    class_names: tuple
    where: str  # for the "where the data come from" lines
    tile_counts: Optional[tuple] = None  # image_tiles: tiles per file; None: one image each

    @property
    def count(self):
        """Examples in the split: files, or tiles of every file."""
        return len(self.paths) if self.tile_counts is None else sum(self.tile_counts)

    def example_labels(self):
        """The labels of the examples (each tile has its file's), or None."""
        if self.labels is None or self.tile_counts is None:
            return self.labels
        return np.repeat(self.labels, self.tile_counts)


def _image_paths(folder):
    return sorted(os.path.join(parent, name) for parent, _, names in os.walk(folder)
                  for name in names if name.lower().endswith(IMAGE_EXTENSIONS))


def _class_names(folder, paths):
    """The sorted class subfolders of `folder` when every image in `paths` sits in one,
    else ()."""
    top = [os.path.relpath(p, folder).split(os.sep) for p in paths]
    if not paths or any(len(parts) == 1 for parts in top):
        return ()
    return tuple(sorted({parts[0] for parts in top}))


def _labels(folder, paths, class_names):
    """Each path's class index in `class_names` (the whole collection's, so that every
    split numbers the classes alike), or None without classes."""
    if not class_names:
        return None
    top = [os.path.relpath(p, folder).split(os.sep)[0] for p in paths]
    unknown = sorted(set(top) - set(class_names))
    if unknown:
        raise ValueError(f"Dataset 'image_folder': {folder} has class folders "
                         f"{unknown} that the training folder lacks; expected classes "
                         f"{list(class_names)}.")
    return np.array([class_names.index(part) for part in top], np.int64)


def _held_out(count, validation_size):
    """(test, validation) counts of a one-folder collection of `count` images."""
    test = max(1, round(count * HELD_OUT_FRACTION))
    validation = validation_size or test
    return test, validation


def list_split(data_dir, split, image_size, validation_size=0, tiles=False):
    """The `Listing` of `split` ("train", "validation" or "test") of an image folder.

    `validation_size=N`: N images for validation instead of the held-out fraction (of
    one folder), or carved from the end of `train/` (of train/ and test/ folders
    without a `validation/`). `tiles=True` (dataset `image_tiles`): each file is cut into
    non-overlapping `image_size` tiles at full resolution (`tile_loader`); the split is
    still made by file, so no two splits share a photograph.
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
    classes_from = root if folder == root else os.path.join(root, "train")
    class_names = _class_names(classes_from, _image_paths(classes_from))
    labels = _labels(folder, paths, class_names)
    if labels is not None:
        where += f"; labels from {len(class_names)} class subfolders"
    sizes = _check_headers(paths, size, folder, split, tiles=tiles, converted_in=root)
    if not tiles:
        logger.info("image_folder %s: %d images %s, centre-cropped and area-resized to %d x %d",
                    split, len(paths), where, size, size)
        listing = Listing(tuple(paths), labels, class_names, where)
    else:
        counts = tuple((height // size) * (width // size) for width, height in sizes)
        logger.info("image_tiles %s: %d images %s, cut into %d tiles of %d x %d at full "
                    "resolution (a centred grid; the borders that do not fill a tile are "
                    "dropped)", split, len(paths), where, sum(counts), size, size)
        listing = Listing(tuple(paths), labels, class_names, where, counts)
    if split == "train" and listing.count < FEW_TRAINING_EXAMPLES:
        logger.warning(
            "%s train: only %d training %s. A model of so few learns them rather than "
            "images in general: expect more bits per dimension on new images than PNG needs "
            "(240 images of 32 x 32 gave 5.9 bits/dim where PNG needs 3.1). What helps: more "
            "images, dataset image_tiles (tiles of full-size photographs: hundreds per "
            "photograph), more epochs; see the README's 'Your own images'.",
            "image_tiles" if tiles else "image_folder", listing.count,
            "tiles" if tiles else "images")
    return listing


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
        which = "the last" if split == "validation" else "all but the last"
        return paths, folder, f"in {folder} ({which} {validation_size} in name order)"
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
    held = test if split == "test" else validation
    return ([paths[i] for i in sorted(chosen)], root,
            f"of the {len(paths)} in {root} (one folder: {held} held out as {split}, fixed by "
            "the file names)" if split != "train" else
            f"of the {len(paths)} in {root} (one folder: {test} held out for test, "
            f"{validation} for validation, fixed by the file names)")


def _check_headers(paths, size, folder, split, exact=None, tiles=False, converted_in=None):
    """Name a file that is not an image, say once what is converted, refuse images
    smaller than `size` (or of another (width, height) than `exact`). Returns each
    file's (width, height)."""
    from PIL import Image, UnidentifiedImageError

    converted, sizes, small, each = 0, set(), [], []
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
        if exact and (width, height) != exact:
            raise ValueError(f"Invalid image file {path}: expected {exact[0]} x {exact[1]} pixels "
                             f"(width x height), received {width} x {height}.")
        sizes.add((width, height))
        each.append((width, height))
        if min(width, height) < size:
            small.append((min(width, height), path))
    if small and tiles:
        side, path = min(small)
        width, height = each[paths.index(path)]
        raise ValueError(f"Invalid value for argument `image_size`: tiles of {size} x {size} "
                         f"need images at least that large; {path} is {width} x {height} "
                         f"({len(small)} of the {len(paths)} {split} images are smaller). Pass "
                         f"image_size <= {side} or remove them.")
    if small:
        side, path = min(small)
        raise ValueError(f"Invalid value for argument `image_size`: {len(small)} of the "
                         f"{len(paths)} {split} images in {folder} are smaller than {size} x {size} "
                         f"(the smallest, {path}, has a side of {side}); pass image_size <= {side} "
                         "or remove them (images are cropped and shrunk, never enlarged).")
    if converted and (converted_in or folder) not in _SAID_CONVERTED:
        _SAID_CONVERTED.add(converted_in or folder)  # once per collection, not per split
        logger.info("image_folder: %d of the %d %s images are grey, paletted or have an alpha "
                    "channel; they are read as RGB (alpha dropped)", converted, len(paths), split)
    if len(sizes) > 1 and not tiles:
        area = lambda size: size[0] * size[1]  # noqa: E731
        (w0, h0), (w1, h1) = min(sizes, key=area), max(sizes, key=area)
        logger.info("image_folder: %d image sizes, from %d x %d to %d x %d; each is centre-cropped "
                    "to a square first", len(sizes), w0, h0, w1, h1)
    return each


def _ends_like_a_jpeg(path, tail=65536):
    """Whether the end-of-image marker FF D9 is in the file's last `tail` bytes (a
    truncated JPEG lacks it; TensorFlow's decoder would fail on it mid-epoch)."""
    with open(path, "rb") as file:
        file.seek(max(0, os.path.getsize(path) - tail))
        return b"\xff\xd9" in file.read()


def _pillow_pixels(path):
    return read_rgb(path.decode() if isinstance(path, bytes) else path)


def decode_pixels(path):
    """uint8 [H, W, 3] pixels of the image file `path` (a string tensor), inside tf.data."""
    def with_tensorflow():
        return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)

    def with_pillow():  # TIFF: TensorFlow has no decoder for it
        pixels = tf.numpy_function(_pillow_pixels, [path], tf.uint8)
        return tf.ensure_shape(pixels, (None, None, 3))

    tiff = tf.strings.regex_full_match(tf.strings.lower(path), r".*\.tiff?")
    return tf.cond(tiff, with_pillow, with_tensorflow)


def crop_and_resize(pixels, box, size):
    """uint8 [size, size, 3]: `box` (left, upper, right, lower) of uint8 `pixels`, area-resized
    (each output pixel the mean of the input area it covers) and rounded."""
    left, upper, right, lower = box
    crop = tf.image.crop_to_bounding_box(pixels, upper, left, lower - upper, right - left)
    resized = tf.image.resize(crop, (size, size), method="area")
    return tf.ensure_shape(tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8),
                           (size, size, 3))


def decode_square(path, size):
    """uint8 [size, size, 3]: the centre square of the image file `path`, area-resized."""
    pixels = decode_pixels(path)
    height, width = tf.shape(pixels)[0], tf.shape(pixels)[1]
    side = tf.minimum(height, width)
    left, upper = (width - side) // 2, (height - side) // 2
    return crop_and_resize(pixels, (left, upper, left + side, upper + side), size)


def square_loader(size):
    """`load(path)` of an image folder's files for `make_file_pipeline` and `read_all`."""
    return lambda path: decode_square(path, size)


def cut_tiles(pixels, size):
    """uint8 [N, size, size, 3]: the tiles of `pixels` [H, W, 3] on a centred grid, row by
    row, as `readers.cut_tiles` cuts them (in TensorFlow, for tf.data)."""
    height, width = tf.shape(pixels)[0], tf.shape(pixels)[1]
    rows, columns = height // size, width // size
    top, left = (height % size) // 2, (width % size) // 2
    grid = pixels[top:top + rows * size, left:left + columns * size]
    grid = tf.transpose(tf.reshape(grid, [rows, size, columns, size, 3]), [0, 2, 1, 3, 4])
    return tf.reshape(grid, [rows * columns, size, size, 3])


def tile_loader(size):
    """`load(path)` giving uint8 [tiles, size, size, 3]: every tile of the file (`cut_tiles`)."""
    return lambda path: cut_tiles(decode_pixels(path), size)


def read_all(listing, load):
    """The listed images (or every tile of them) as one uint8 array [N, ...] (`load(path)`
    run in parallel)."""
    ds = tf.data.Dataset.from_tensor_slices(list(listing.paths)).map(
        load, num_parallel_calls=tf.data.AUTOTUNE)
    if listing.tile_counts is not None:
        ds = ds.unbatch()
    return np.concatenate([batch.numpy() for batch in ds.batch(256)])


# ------------------------------------------------------------------ CelebA
def celeba_split(directory, split):
    """(Listing, load) of CelebA's aligned faces in `directory` (`list_eval_partition.txt`
    and `img_align_celeba/`): NVAE's 148 x 148 crop, area-resized to 64 x 64."""
    partition = os.path.join(directory, CELEBA_PARTITION)
    if not os.path.exists(partition):
        raise ValueError(f"Missing file {partition}.")
    with open(partition) as f:
        rows = [line.split() for line in f if line.strip()]
    if any(len(row) != 2 or row[1] not in ("0", "1", "2") for row in rows):
        raise ValueError(f"Invalid file {partition}: expected lines '<image file> <0|1|2>'.")
    paths = [os.path.join(directory, CELEBA_IMAGES, name) for name, code in rows
             if int(code) == CELEBA_SPLITS[split]]
    _check_headers(paths, CELEBA_SIZE, directory, split, exact=CELEBA_ALIGNED)
    listing = Listing(tuple(paths), None, (), f"in {directory}")
    return listing, lambda path: crop_and_resize(decode_pixels(path), CELEBA_CROP, CELEBA_SIZE)


def celeba_faces(images, split):
    """tfds' aligned faces (uint8 [N, 218, 178, 3]) cropped and resized as the files are."""
    if images.shape[1:] != (CELEBA_ALIGNED[1], CELEBA_ALIGNED[0], 3):
        raise ValueError(f"Invalid CelebA images (tfds celeb_a {split}): expected aligned faces "
                         f"of 178 x 218 pixels, shape (218, 178, 3), received {images.shape[1:]}.")
    faces = tf.data.Dataset.from_tensor_slices(images).map(
        lambda face: crop_and_resize(face, CELEBA_CROP, CELEBA_SIZE)).batch(1024)
    return np.concatenate([batch.numpy() for batch in faces])
