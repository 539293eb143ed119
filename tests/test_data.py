import gzip
import logging
import shutil
import struct

import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds

from keras_lvae import data, pipelines, readers

RNG = np.random.default_rng(0)


def collect(ds):
    """All batches of a pipeline as one array (or a tuple of arrays)."""
    batches = list(ds.as_numpy_iterator())
    if isinstance(batches[0], tuple):
        return tuple(np.concatenate(parts) for parts in zip(*batches))
    return np.concatenate(batches)


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)


# ------------------------------------------------------------ real files
def test_list_datasets():
    assert data.list_datasets() == ["binarized_mnist", "celeba", "cifar10", "fashion_mnist",
                                    "image_folder", "image_tiles", "mnist", "mnist_5k", "norb",
                                    "omniglot", "photo_patches", "photos", "svhn"]


def test_mnist_idx_files(mnist_dir):
    x, y = data.load_arrays("mnist", "train", mnist_dir)
    assert x.shape == (60000, 28, 28) and x.dtype == np.float32 and y.shape == (60000,)
    assert np.bincount(y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    x_test, y_test = data.load_arrays("mnist", "test", mnist_dir)
    assert x_test.shape == (10000, 28, 28) and y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert x.mean() == pytest.approx(0.13066, abs=1e-5) and x.min() == 0 and x.max() == 1


def test_data_dir_may_be_the_parent_folder_or_an_environment_variable(mnist_dir, monkeypatch):
    assert data.load_arrays("mnist", "test", mnist_dir.parent)[0].shape == (10000, 28, 28)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(mnist_dir))
    assert data.load_arrays("mnist", "test")[0].shape == (10000, 28, 28)


def test_source_is_logged(mnist_dir, caplog):
    with caplog.at_level(logging.INFO, logger="keras_lvae.data"):
        data.load_arrays("mnist", "test", mnist_dir)
    assert f"local files in {mnist_dir}" in caplog.text


def test_mnist_pipelines(mnist_dir):
    train = data.load_dataset("mnist", "train", batch_size=1000, data_dir=mnist_dir, seed=3)
    full = data.load_dataset("mnist", "train", batch_size=1000, data_dir=mnist_dir,
                             drop_remainder=True)
    assert full.element_spec.shape.as_list() == [1000, 28, 28, 1]  # static where asked
    first, second = collect(train), collect(train)
    assert first.shape == (60000, 28, 28, 1) and set(np.unique(first)) == {0.0, 1.0}
    # Binary pixel mean matches the grey-level mean 0.13066; over 47M Bernoulli
    # pixels the standard error is below 1e-4, so 1e-3 is about 10 of them.
    assert first.mean() == pytest.approx(0.13066, abs=1e-3)
    # Epochs differ (reshuffled and redrawn; the redraw rate itself is tested below).
    assert (first != second).mean() > 0.05
    test = [collect(data.load_dataset("mnist", "test", batch_size=b, data_dir=mnist_dir))
            for b in (3000, 1000)]
    assert test[0].shape == (10000, 28, 28, 1)
    np.testing.assert_array_equal(test[0], test[1])  # binarized once, the same every time
    assert test[0].mean() == pytest.approx(0.13251, abs=2e-3)


def test_dynamic_binarization_redraws_at_the_expected_rate(mnist_dir):
    grey, _ = data.load_arrays("mnist", "train", mnist_dir)
    grey = grey[:4096]
    ds = pipelines.make_pipeline(grey, None, 256, shuffle=False, drop_remainder=True,
                            dynamic_binarization=True, seed=3)
    first, second = collect(ds), collect(ds)
    # Pixel i differs between epochs with probability 2 p_i (1 - p_i); over 3.2M
    # pixels the rate's standard error is below 2e-4.
    p = grey[..., None]
    assert (first != second).mean() == pytest.approx((2 * p * (1 - p)).mean(), abs=1e-3)
    assert first[p == 0].max() == 0 and first[p == 1].min() == 1  # pure pixels never flip
    # The same seed reproduces the run.
    again = pipelines.make_pipeline(grey, None, 256, shuffle=False, drop_remainder=True,
                               dynamic_binarization=True, seed=3)
    np.testing.assert_array_equal(collect(again), first)


def test_validation_split_is_carved_from_train(mnist_dir):
    train, y_train = data.load_arrays("mnist", "train", mnist_dir, validation_size=10000)
    valid, y_valid = data.load_arrays("mnist", "validation", mnist_dir, validation_size=10000)
    full, y_full = data.load_arrays("mnist", "train", mnist_dir)
    test, _ = data.load_arrays("mnist", "test", mnist_dir, validation_size=10000)
    assert test.shape == (10000, 28, 28)  # the test split is untouched
    assert train.shape == (50000, 28, 28) and valid.shape == (10000, 28, 28)
    np.testing.assert_array_equal(np.concatenate([train, valid]), full)  # pinned: the last N
    ds = data.load_dataset("mnist", "validation", batch_size=5000, data_dir=mnist_dir,
                           validation_size=10000, with_labels=True)
    x, y = collect(ds)
    np.testing.assert_array_equal(y, y_valid)
    np.testing.assert_array_equal(x, collect(data.load_dataset(
        "mnist", "validation", batch_size=2500, data_dir=mnist_dir, validation_size=10000)))


def test_labels(mnist_dir):
    x, y = collect(data.load_dataset("mnist", "test", batch_size=4000, data_dir=mnist_dir,
                                     with_labels=True))
    assert x.shape == (10000, 28, 28, 1) and y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_binarized_mnist_real_file(mnist_dir):
    directory = mnist_dir.parent
    sizes = {"train": 50000, "validation": 10000, "test": 10000}
    means = {"train": 0.13056, "validation": 0.13113, "test": 0.13251}
    for split, size in sizes.items():
        x = collect(data.load_dataset("binarized_mnist", split, batch_size=5000, data_dir=directory))
        assert x.shape == (size, 28, 28, 1) and set(np.unique(x)) == {0.0, 1.0}
        assert x.mean() == pytest.approx(means[split], abs=5e-5)
    # Static: the training set is the same every epoch (no dynamic binarization).
    train = data.load_dataset("binarized_mnist", "train", batch_size=5000, data_dir=directory,
                              shuffle=False)
    np.testing.assert_array_equal(collect(train), collect(train))


def test_mnist_5k_ships_with_the_install():
    x, y = data.load_arrays("mnist_5k", "train")
    x_test, y_test = data.load_arrays("mnist_5k", "test")
    assert x.shape == (4500, 28, 28) and x_test.shape == (500, 28, 28)
    # The shipped file is sorted by label; the pinned permutation mixes every class in.
    assert (np.bincount(y_test, minlength=10) > 30).all()


# -------------------------------------------- files in the real formats
def write_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_from_idx_files(tmp_path, no_env):
    folder = tmp_path / "fashion_mnist"
    folder.mkdir()
    images = RNG.integers(0, 256, size=(30, 28, 28))
    for split, n in (("train", 30), ("test", 10)):
        write_idx(folder / readers.IDX_FILES[split][0], images[:n])
        write_idx(folder / readers.IDX_FILES[split][1], np.arange(n) % 10)
    x, y = data.load_arrays("fashion_mnist", "train", tmp_path)
    np.testing.assert_allclose(x, images / 255.0, atol=1e-7)
    x, y = collect(data.load_dataset("fashion_mnist", "test", batch_size=4, data_dir=tmp_path,
                                     with_labels=True))
    assert x.shape == (10, 28, 28, 1) and set(np.unique(x)) <= {0.0, 1.0} and y.tolist() == list(range(10))


def write_chardata(path, n_train, n_test):
    """A chardata.mat with Burda et al.'s structure: images are column-major columns."""
    def part(n):
        images = RNG.random((n, 28, 28))
        columns = images.transpose(0, 2, 1).reshape(n, 784).T  # MATLAB's column-major layout
        target = np.zeros((50, n))
        target[np.arange(n) % 50, np.arange(n)] = 1
        return images, columns, target
    train, test = part(n_train), part(n_test)
    scipy.io.savemat(path, {"data": train[1], "target": train[2], "testdata": test[1],
                            "testtarget": test[2]})
    return train[0], test[0]


def test_omniglot_from_chardata(tmp_path, no_env):
    train_images, test_images = write_chardata(tmp_path / "chardata.mat", 12, 5)
    x, y = data.load_arrays("omniglot", "train", tmp_path)
    np.testing.assert_allclose(x, train_images, rtol=1e-6)  # upright, not transposed
    assert y.tolist() == list(range(12))
    x = collect(data.load_dataset("omniglot", "test", batch_size=5, data_dir=tmp_path))
    assert x.shape == (5, 28, 28, 1) and set(np.unique(x)) <= {0.0, 1.0}
    train = data.load_dataset("omniglot", "train", batch_size=4, data_dir=tmp_path)
    assert collect(train).shape == (12, 28, 28, 1)


def write_norb(path, array):
    magic = 0x1E3D4C55 if array.dtype == np.uint8 else 0x1E3D4C54
    dims = list(array.shape) + [1] * max(0, 3 - array.ndim)
    path.write_bytes(struct.pack(f"<ii{len(dims)}i", magic, array.ndim, *dims) + array.tobytes())


def test_norb_from_smallnorb_files(tmp_path, no_env):
    pairs = RNG.integers(0, 256, size=(6, 2, 96, 96)).astype(np.uint8)
    for split in ("train", "test"):
        write_norb(tmp_path / readers.NORB_FILES[split][0], pairs)
        write_norb(tmp_path / readers.NORB_FILES[split][1], (np.arange(6) % 5).astype(np.int32))
    x, y = data.load_arrays("norb", "train", tmp_path)
    want = pairs[:, 0].reshape(6, 32, 3, 32, 3).mean(axis=(2, 4)) / 255.0  # left camera, 3x3 means
    np.testing.assert_allclose(x, want, rtol=1e-6)
    assert y.tolist() == [0, 1, 2, 3, 4, 0]
    batch = collect(data.load_dataset("norb", "test", batch_size=3, data_dir=tmp_path))
    np.testing.assert_allclose(batch[..., 0], want, rtol=1e-6)  # continuous, never binarized


# ---------------------------------------------------------------- tfds
@pytest.mark.parametrize("name, split", [("mnist", "train"), ("fashion_mnist", "test"),
                                         ("binarized_mnist", "validation"), ("norb", "train")])
def test_tfds_path(name, split, caplog, no_env):
    labelled = name != "binarized_mnist"
    with caplog.at_level(logging.INFO, logger="keras_lvae.data"), \
            tfds.testing.mock_data(num_examples=12, max_value=2):
        out = collect(data.load_dataset(name, split, batch_size=4, with_labels=labelled))
    x, y = out if labelled else (out, None)
    size = 32 if name == "norb" else 28
    assert x.shape == (12, size, size, 1) and (y is None or y.shape == (12,))
    assert data.image_shape(name) == x.shape[1:]
    assert 0 <= x.min() and x.max() <= 1
    assert "trying tfds" in caplog.text


def test_tfds_failure_names_the_way_out_after_few_retries(no_env, monkeypatch):
    """Offline, tfds's downloader would retry 10 times with backoff (3.5 minutes); during
    our tfds call it retries 3 times (seconds), and the default comes back afterwards."""
    from tensorflow_datasets.core.download import downloader

    retries = []

    def offline(*args, **kwargs):
        retries.append(downloader.MAX_RETRIES)
        raise ConnectionError("Failed to establish a new connection")
    monkeypatch.setattr(tfds, "load", offline)
    with pytest.raises(ValueError, match=r"from tfds \(ConnectionError.*pass data_dir=\.\.\. "
                                         r"\(`lvae`: --data-dir DIR"):
        data.load_arrays("fashion_mnist", "train")
    assert retries == [3] and downloader.MAX_RETRIES == 10


def test_a_data_dir_without_the_files_is_an_error_at_once(tmp_path, no_env, monkeypatch):
    """Never a download instead of the named folder: the error lists the files and where."""
    monkeypatch.setattr(tfds, "load", lambda *a, **k: pytest.fail("tfds was called"))
    with pytest.raises(ValueError, match=r"no files in data_dir=.*Put the four Fashion-MNIST "
                                         r"IDX files .* in .* or in .*fashion_mnist"):
        data.load_arrays("fashion_mnist", "train", tmp_path)


# ------------------------------------------------------------- bad input
def test_unknown_dataset_split_and_arguments():
    with pytest.raises(ValueError, match="`name`.*'cifar'"):
        data.load_arrays("cifar", "train")
    with pytest.raises(ValueError, match="`split`.*'valid'"):
        data.load_arrays("mnist_5k", "valid")
    with pytest.raises(ValueError, match="`split`.*validation_size"):
        data.load_arrays("mnist_5k", "validation")
    with pytest.raises(ValueError, match="`validation_size`"):
        data.load_arrays("mnist_5k", "train", validation_size=4500)
    with pytest.raises(ValueError, match="`validation_size`"):
        data.load_arrays("binarized_mnist", "train", validation_size=10)
    with pytest.raises(ValueError, match="`batch_size`"):
        data.load_dataset("mnist_5k", "train", batch_size=0)


def test_binarized_mnist_has_no_labels(mnist_dir):
    with pytest.raises(ValueError, match="`with_labels`.*no labels"):
        data.load_dataset("binarized_mnist", "test", batch_size=10, data_dir=mnist_dir.parent,
                          with_labels=True)


def test_missing_directory_and_local_only_dataset(tmp_path, no_env):
    with pytest.raises(ValueError, match="not a directory"):
        data.load_arrays("mnist", "train", tmp_path / "nowhere")
    with pytest.raises(ValueError, match="chardata.mat.*in " + str(tmp_path)):
        data.load_arrays("omniglot", "train", tmp_path)
    with pytest.raises(ValueError, match="chardata.mat.*KERAS_LVAE_DATA_DIR"):
        data.load_arrays("omniglot", "train")


def test_missing_and_truncated_files(tmp_path, mnist_dir):
    shutil.copy(mnist_dir / "train-images-idx3-ubyte.gz", tmp_path)
    with pytest.raises(ValueError, match="Missing file.*train-labels-idx1-ubyte.gz"):
        data.load_arrays("mnist", "train", tmp_path)
    for name in ("train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(mnist_dir / name, tmp_path / name)
    raw = gzip.open(mnist_dir / "t10k-images-idx3-ubyte.gz").read()
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(raw[:-100])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz.*truncated"):
        data.load_arrays("mnist", "train", tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz.*decompress"):
        data.load_arrays("mnist", "test", tmp_path)
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(b"\x00\x00\x0d\x03" + raw[4:])
    with pytest.raises(ValueError, match="uint8 IDX header"):
        data.load_arrays("mnist", "test", tmp_path)


def test_wrong_shapes_and_formats(tmp_path, no_env):
    write_idx(tmp_path / readers.IDX_FILES["train"][0], np.zeros((4, 32, 32)))
    write_idx(tmp_path / readers.IDX_FILES["train"][1], np.zeros(4))
    with pytest.raises(ValueError, match=r"images of shape \(N, 28, 28\).*\(4, 32, 32\)"):
        data.load_arrays("mnist", "train", tmp_path)
    (tmp_path / "chardata.mat").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="chardata.mat.*MATLAB"):
        data.load_arrays("omniglot", "train", tmp_path)
    np.savez(tmp_path / readers.BINARIZED_MNIST_NPZ, train=np.zeros((3, 97), np.uint8))
    with pytest.raises(ValueError, match=r"bit-packed train rows of shape \(N, 98\)"):
        data.load_arrays("binarized_mnist", "train", tmp_path)
    with pytest.raises(ValueError, match="no array 'test'"):
        data.load_arrays("binarized_mnist", "test", tmp_path)
    write_norb(tmp_path / readers.NORB_FILES["train"][0], np.zeros((2, 2, 96, 96), np.uint8))
    (tmp_path / readers.NORB_FILES["train"][1]).write_bytes(b"\x00" * 20)
    with pytest.raises(ValueError, match="smallNORB.*magic"):
        data.load_arrays("norb", "train", tmp_path)


def test_evaluation_arrays_match_the_test_pipeline():
    images, labels = data.load_evaluation_arrays("mnist_5k", "test")
    batches = list(data.load_dataset("mnist_5k", "test", batch_size=200, with_labels=True))
    np.testing.assert_array_equal(images, np.concatenate([x for x, _ in batches]))
    np.testing.assert_array_equal(labels, np.concatenate([y for _, y in batches]))
    assert images.shape == (500, 28, 28, 1) and set(np.unique(images)) == {0.0, 1.0}
    grey, _ = data.load_evaluation_arrays("mnist_5k", "test", binarize=False)
    assert len(np.unique(grey)) > 2
    with pytest.raises(ValueError, match="`split`"):
        data.load_evaluation_arrays("mnist_5k", "train")


def test_every_source_says_where_its_images_come_from():
    """One `Source` per dataset: shipped in a package, the user's folder, or local files
    (a marker file and a reader) and/or tfds; its image shape and splits are stated."""
    for name, source in data.SOURCES.items():
        reader = source.read_local or source.stream_local
        local = reader is not None and source.marker is not None
        assert (reader is None) == (source.marker is None), name
        assert not (source.read_local and source.stream_local), name  # one way to read
        assert source.packaged or source.user_folder or local or source.tfds_name, name
        assert "train" in source.splits and "test" in source.splits, name
        assert source.user_folder or len(data.image_shape(name)) == 3, name
    assert data.list_datasets() == sorted(data.SOURCES)
