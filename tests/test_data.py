import gzip
import shutil

import numpy as np
import pytest

from keras_lvae import data


def test_mnist_idx_files(mnist_dir):
    x, y = data.load_arrays("mnist", "train", mnist_dir)
    assert x.shape == (60000, 28, 28) and x.dtype == np.uint8 and y.shape == (60000,)
    assert np.bincount(y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    x_test, y_test = data.load_arrays("mnist", "test", mnist_dir)
    assert x_test.shape == (10000, 28, 28) and y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert x.mean() / 255 == pytest.approx(0.13066, abs=1e-5)


def test_data_dir_may_be_the_parent_folder_or_an_environment_variable(mnist_dir, monkeypatch):
    assert data.load_arrays("mnist", "test", mnist_dir.parent)[0].shape == (10000, 28, 28)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(mnist_dir))
    assert data.load_arrays("mnist", "test")[0].shape == (10000, 28, 28)


def test_mnist_5k_ships_with_the_install():
    x, y = data.load_arrays("mnist_5k", "train")
    x_test, y_test = data.load_arrays("mnist_5k", "test")
    assert x.shape == (4500, 28, 28) and x_test.shape == (500, 28, 28)
    # The shipped file is sorted by label; the pinned permutation mixes every class in.
    assert (np.bincount(y_test, minlength=10) > 30).all()


def test_dynamic_binarization_resamples_each_epoch(mnist_dir):
    grey, _ = data.load_arrays("mnist", "train", mnist_dir)
    ds = data.dynamic_binarization(grey[:2048], 256, shuffle=False, seed=3)
    first, second = (np.concatenate([b.numpy() for b in ds]) for _ in range(2))
    assert first.shape == (2048, 28, 28, 1) and set(np.unique(first)) == {0.0, 1.0}
    # A fresh, independent draw each epoch: pixel i differs with probability
    # 2 p_i (1 - p_i). Over 1.6M pixels the rate's standard error is below 2e-4.
    p = grey[:2048, ..., None] / 255.0
    assert (first != second).mean() == pytest.approx((2 * p * (1 - p)).mean(), abs=1e-3)
    # Pixel mean of the binary images matches the grey-level mean: the standard
    # error over 1.6M Bernoulli pixels is below 3e-4, so 2e-3 is about 7 of them.
    assert first.mean() == pytest.approx(grey[:2048].mean() / 255, abs=2e-3)
    # Pixels that are pure background (0) or pure ink (255) never flip.
    assert first[grey[:2048, ..., None] == 0].max() == 0
    assert first[grey[:2048, ..., None] == 255].min() == 1


def test_training_batches_have_a_static_shape():
    ds = data.load_dataset("mnist_5k", "train", batch_size=1000)
    assert ds.element_spec.shape.as_list() == [1000, 28, 28, 1]
    assert sum(1 for _ in ds) == 4  # 4,500 images, the remainder dropped


def test_test_set_is_binarized_once(mnist_dir):
    a = np.concatenate([b.numpy() for b in data.load_dataset("mnist", "test", batch_size=3000,
                                                             data_dir=mnist_dir)])
    b = np.concatenate([b.numpy() for b in data.load_dataset("mnist", "test", batch_size=1000,
                                                             data_dir=mnist_dir)])
    assert a.shape == (10000, 28, 28, 1)
    np.testing.assert_array_equal(a, b)
    assert a.mean() == pytest.approx(0.13251, abs=2e-3)


def test_unknown_dataset_and_split():
    with pytest.raises(ValueError, match="`name`.*'cifar'"):
        data.load_arrays("cifar", "train")
    with pytest.raises(ValueError, match="`split`.*'valid'"):
        data.load_arrays("mnist_5k", "valid")


def test_missing_directory_and_files(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    with pytest.raises(ValueError, match="data_dir=.*KERAS_LVAE_DATA_DIR"):
        data.load_arrays("mnist", "train")
    with pytest.raises(ValueError, match="not a directory"):
        data.load_arrays("mnist", "train", tmp_path / "nowhere")
    with pytest.raises(ValueError, match="Missing MNIST file.*train-images-idx3-ubyte.gz"):
        data.load_arrays("mnist", "train", tmp_path)


def test_truncated_and_wrong_format_files(tmp_path, mnist_dir):
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
