"""`image_tiles`: image folders cut into tiles at full resolution, split by file, streamed;
checked against numpy's cut of the same pixels (`readers.cut_tiles`)."""

import logging

import numpy as np
import pytest

from keras_lvae import data, image_files, readers
from tests.test_data import collect
from tests.test_image_files import write_images


def tiles_of(written, names=None):
    names = sorted(written) if names is None else names
    return np.concatenate([readers.cut_tiles(written[name], 8) for name in names])


def as_set(tiles):
    return sorted(t.tobytes() for t in tiles)


def test_every_tile_once_an_epoch_in_a_new_order_and_split_by_file(tmp_path, caplog):
    written = write_images(tmp_path, 20, height=20, width=27)  # 2 x 3 tiles of 8, borders left
    with caplog.at_level(logging.INFO, logger="keras_lvae.data"):
        test = data.load_arrays("image_tiles", "test", tmp_path, image_size=8)[0]
    assert "cut into 12 tiles of 8 x 8 at full resolution" in caplog.text
    listing = image_files.list_split(tmp_path, "test", 8, tiles=True)
    test_files = [p.split("/")[-1] for p in listing.paths]
    assert len(test_files) == 2 and listing.tile_counts == (6, 6)
    np.testing.assert_array_equal(np.round(test * 255).astype(np.uint8),
                                  tiles_of(written, test_files))
    train_files = sorted(set(written) - set(test_files) - set(
        p.split("/")[-1] for p in image_files.list_split(tmp_path, "validation", 8).paths))
    expected = tiles_of(written, train_files)
    stream = data.load_dataset("image_tiles", "train", data_dir=tmp_path, image_size=8,
                               batch_size=10, epochs=(0, 2))
    both = np.round(collect(stream) * 255).astype(np.uint8)
    first, second = both[:len(expected)], both[len(expected):]
    assert as_set(first) == as_set(expected) == as_set(second)
    assert not np.array_equal(first, second) and not np.array_equal(first, expected)
    resumed = np.round(collect(data.load_dataset(
        "image_tiles", "train", data_dir=tmp_path, image_size=8, batch_size=10,
        epochs=(1, 2))) * 255).astype(np.uint8)
    np.testing.assert_array_equal(resumed, second)  # epoch 2 is a function of (seed, epoch)


def test_tiles_carry_their_files_labels_and_workers_share_each_batch(tmp_path):
    for label in ("cats", "dogs"):
        write_images(tmp_path / "train" / label, 3, height=16, width=16, prefix=label)
        write_images(tmp_path / "test" / label, 1, height=16, width=16, prefix=label)
    x, y = data.load_arrays("image_tiles", "train", tmp_path, image_size=8)
    np.testing.assert_array_equal(y, [0] * 12 + [1] * 12)
    batches = collect(data.load_dataset("image_tiles", "train", data_dir=tmp_path, image_size=8,
                                        batch_size=8, epochs=(0, 1), with_labels=True))
    images, labels = batches
    # each tile's label is its file's: look the tile up among the files' tiles
    lookup = {t.tobytes(): label for t, label in zip(np.round(x * 255).astype(np.uint8), y)}
    assert [lookup[t.tobytes()] for t in np.round(images * 255).astype(np.uint8)] == list(labels)
    parts = [collect(data.load_dataset("image_tiles", "train", data_dir=tmp_path, image_size=8,
                                       batch_size=8, epochs=(0, 1), drop_remainder=True,
                                       shard=(i, 2))) for i in (0, 1)]
    whole = collect(data.load_dataset("image_tiles", "train", data_dir=tmp_path, image_size=8,
                                      batch_size=8, epochs=(0, 1), drop_remainder=True))
    joined = np.concatenate([np.concatenate([parts[0][i:i + 4], parts[1][i:i + 4]])
                             for i in range(0, len(parts[0]), 4)])
    np.testing.assert_array_equal(joined, whole)


def test_tiles_larger_than_an_image_name_the_file_and_both_sizes(tmp_path):
    write_images(tmp_path / "train", 2, height=40, width=40)
    write_images(tmp_path / "test", 1, height=20, width=30, prefix="small")
    with pytest.raises(ValueError, match=r"tiles of 32 x 32 need images at least that large; "
                                         r".*small000.png is 30 x 20"):
        data.load_arrays("image_tiles", "test", tmp_path, image_size=32)


def test_grey_and_rgba_images_are_tiled_as_rgb_and_said_once(tmp_path, caplog):
    grey = write_images(tmp_path, 12, height=16, width=16, mode="L")
    with caplog.at_level(logging.INFO, logger="keras_lvae.data"):
        x, _ = data.load_arrays("image_tiles", "test", tmp_path, image_size=8)
    assert caplog.text.count("read as RGB") == 1
    assert x.shape[-1] == 3 and np.all(x[..., 0] == x[..., 2])
    assert set(as_set(np.round(x * 255).astype(np.uint8))) <= set(as_set(tiles_of(grey)))
