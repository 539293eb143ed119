"""Colour datasets: each loader reads files written here in the real format; tfds's mock."""

import logging
import pickle

import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds
from PIL import Image

from keras_lvae import data, pipelines, readers
from tests.test_data import collect

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)


def write_cifar_batch(path, images, labels):
    """CIFAR-10's python format: a pickled dict, rows of 1,024 red, green then blue bytes."""
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"x", b"labels": list(labels), b"data": rows,
                     b"filenames": [b"a.png"] * len(images)}, f, protocol=2)


def colour_images(count, height=32, width=32):
    return RNG.integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def test_cifar10_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"  # as the official archive unpacks
    folder.mkdir()
    train = [colour_images(3) for _ in range(5)]
    for i, images in enumerate(train, 1):
        write_cifar_batch(folder / f"data_batch_{i}", images, [i, i + 1, 9])
    test = colour_images(4)
    write_cifar_batch(folder / "test_batch", test, [0, 1, 2, 3])
    x, y = data.load_arrays("cifar10", "train", tmp_path)
    assert x.shape == (15, 32, 32, 3) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(x, np.concatenate(train) / np.float32(255))
    np.testing.assert_array_equal(y[:3], [1, 2, 9])
    batch = collect(data.load_dataset("cifar10", "test", batch_size=4, data_dir=tmp_path))
    np.testing.assert_array_equal(batch, test / np.float32(255))  # exact 8-bit levels, no binarizing
    assert data.image_shape("cifar10") == batch.shape[1:]


def test_cifar10_refuses_pickles_that_run_code(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("ran",))

    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": Exploit(), b"labels": []}, f)
    with pytest.raises(ValueError, match=r"Invalid CIFAR-10 file .*refused to load builtins.print"):
        data.load_arrays("cifar10", "test", tmp_path)


def test_svhn_mat_files(tmp_path):
    images = colour_images(6)
    labels = np.array([[10], [1], [2], [3], [10], [9]], np.uint8)  # SVHN writes 0 as 10
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": images.transpose(1, 2, 3, 0), "y": labels})
    x, y = data.load_arrays("svhn", "test", tmp_path)
    np.testing.assert_array_equal(x, images / np.float32(255))
    np.testing.assert_array_equal(y, [0, 1, 2, 3, 0, 9])
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": images.transpose(1, 2, 3, 0) / 255.0,
                                                   "y": labels})
    with pytest.raises(ValueError, match=r"expected 8-bit pixels \(uint8\), received float64"):
        data.load_arrays("svhn", "test", tmp_path)


def test_celeba_folder_with_the_standard_crop(tmp_path):
    (tmp_path / readers.CELEBA_IMAGES).mkdir()
    faces = colour_images(3, 218, 178)
    for i, face in enumerate(faces):
        Image.fromarray(face).save(tmp_path / readers.CELEBA_IMAGES / f"{i:06d}.png")
    (tmp_path / readers.CELEBA_PARTITION).write_text("000000.png 0\n000001.png 2\n000002.png 0\n")
    x, labels = data.load_arrays("celeba", "train", tmp_path)
    assert x.shape == (2, 64, 64, 3) and labels is None
    # Independent: the crop by slicing, then the mean of each 2.3125 x 2.3125-pixel cell of the
    # 148 x 148 square, a pixel weighted by the part of it inside the cell (area resizing).
    crop = faces[2, 40:188, 15:163].astype(np.float64)
    edges = np.arange(65) * 148 / 64
    left, right = np.arange(148), np.arange(148) + 1.0
    weights = np.clip(np.minimum(right, edges[1:, None]) - np.maximum(left, edges[:-1, None]),
                      0, None)
    weights /= weights.sum(1, keepdims=True)
    want = np.einsum("ih,jw,hwc->ijc", weights, weights, crop)
    np.testing.assert_allclose(x[1] * 255, want, atol=0.5 + 1e-3)  # rounded to 8 bits
    streamed = collect(data.load_dataset("celeba", "train", batch_size=5, shuffle=False,
                                         data_dir=tmp_path))
    np.testing.assert_array_equal(streamed, x)  # the pipeline decodes the files the same way
    Image.fromarray(colour_images(1, 100, 100)[0]).save(tmp_path / readers.CELEBA_IMAGES / "000001.png")
    with pytest.raises(ValueError, match=r"000001.png: expected 178 x 218 pixels \(width x height\), "
                                         r"received 100 x 100"):
        data.load_arrays("celeba", "test", tmp_path)


def test_only_image_folder_is_resized():
    assert data.image_shape("image_folder", image_size=8) == (8, 8, 3)
    with pytest.raises(ValueError, match=r"only image_folder is resized"):
        data.image_shape("cifar10", image_size=32)


def test_colour_files_missing_from_a_named_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds, "load", lambda *a, **k: pytest.fail("tfds was called"))
    for name, files in (("cifar10", "data_batch_1"), ("svhn", "train_32x32.mat"),
                        ("celeba", "list_eval_partition.txt")):
        with pytest.raises(ValueError, match=rf"no files in data_dir=.*{files}"):
            data.load_arrays(name, "train", tmp_path)


def test_photo_patches_ship_with_the_install():
    x, y = data.load_arrays("photo_patches", "train")
    test, _ = data.load_arrays("photo_patches", "test")
    assert x.shape == (2058, 32, 32, 3) and test.shape == (229, 32, 32, 3)
    assert set(np.unique(y)) == set(range(len(readers.PHOTO_FILES)))
    levels = x * 255
    np.testing.assert_array_equal(levels, np.round(levels))  # 8-bit values
    spans = np.ptp(levels.reshape(len(x), -1), axis=1)
    assert spans.min() > readers.PHOTO_FLAT_LEVELS  # no flat tiles
    # No tile is in both splits (the tiles do not overlap, so equal tiles would be a leak).
    seen = {tile.tobytes() for tile in x}
    assert not any(tile.tobytes() in seen for tile in test)


def test_evaluation_arrays_of_a_colour_set_keep_their_channels():
    images, labels = data.load_evaluation_arrays("photo_patches", "test")
    assert images.shape == (229, 32, 32, 3) and labels.shape == (229,)
    batches = collect(data.load_dataset("photo_patches", "test", batch_size=100))
    np.testing.assert_array_equal(images, batches)


@pytest.mark.parametrize("name, split, shape", [("cifar10", "train", (32, 32, 3)),
                                                ("svhn", "test", (32, 32, 3)),
                                                ("celeba", "validation", (64, 64, 3))])
def test_tfds_path_for_colour_sets(name, split, shape, caplog):
    labelled = name != "celeba"
    with caplog.at_level(logging.INFO, logger="keras_lvae.data"), \
            tfds.testing.mock_data(num_examples=6):
        out = collect(data.load_dataset(name, split, batch_size=3, with_labels=labelled))
    x = out[0] if labelled else out
    assert x.shape == (6, *shape) and x.dtype == np.float32
    assert 0 <= x.min() and x.max() <= 1 and len(np.unique(x)) > 2  # grey levels, not binarized
    assert "trying tfds" in caplog.text


def test_make_pipeline_takes_uint8_and_colour_arrays():
    levels = colour_images(4, 5, 5)
    from_uint8 = collect(pipelines.make_pipeline(levels, None, 2, shuffle=False, drop_remainder=False,
                                            dynamic_binarization=False))
    from_float = collect(pipelines.make_pipeline(levels / np.float32(255), None, 2, shuffle=False,
                                            drop_remainder=False, dynamic_binarization=False))
    np.testing.assert_array_equal(from_uint8, levels / np.float32(255))
    np.testing.assert_array_equal(from_float, from_uint8)
    with pytest.raises(ValueError, match=r"`images`: expected \[N, H, W\] or \[N, H, W, C\]"):
        pipelines.make_pipeline(levels[0, 0], None, 2, shuffle=False, drop_remainder=False,
                           dynamic_binarization=False)
