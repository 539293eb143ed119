"""The `photos` dataset (tiles of whole photographs, split by photograph) and random flips."""

import numpy as np
import pytest
from PIL import Image

from keras_lvae import data, pipelines, readers
from tests.conftest import SHARED_DATA

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)


def test_cut_tiles_is_a_centred_grid_read_row_by_row():
    pixels = RNG.integers(0, 256, (70, 99, 3), dtype=np.uint8)
    tiles = readers.cut_tiles(pixels, 32)
    # 70 = 2 x 32 + 6: rows 3 ... 66; 99 = 3 x 32 + 3: columns 1 ... 96.
    expected = [pixels[3 + 32 * r:35 + 32 * r, 1 + 32 * c:33 + 32 * c]
                for r in range(2) for c in range(3)]
    np.testing.assert_array_equal(tiles, np.stack(expected))


def write_corpus(root, sizes):
    """A photos folder: SOURCES.tsv, and PNGs of the given (height, width) per split."""
    (root / "photos").mkdir()
    (root / "photos" / readers.PHOTOS_MARKER).write_text("file\tsource\n")
    written = {}
    for split, shapes in sizes.items():
        (root / "photos" / split).mkdir()
        written[split] = []
        for i, (height, width) in enumerate(shapes):
            pixels = RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "photos" / split / f"p{i}.png")
            written[split].append(pixels)
    return written


def test_photos_are_every_tile_of_each_photograph_labelled_by_photograph(tmp_path):
    written = write_corpus(tmp_path, {"train": [(64, 96), (40, 70)], "test": [(33, 65)]})
    x, y = data.load_arrays("photos", "train", tmp_path)
    expected = np.concatenate([readers.cut_tiles(p, 32) for p in written["train"]])
    assert x.shape == (6 + 2, 32, 32, 3)
    np.testing.assert_array_equal(x, expected / np.float32(255))
    np.testing.assert_array_equal(y, [0] * 6 + [1] * 2)
    x, y = data.load_arrays("photos", "test", tmp_path)
    np.testing.assert_array_equal(x, readers.cut_tiles(written["test"][0], 32) / np.float32(255))
    assert data.image_shape("photos") == (32, 32, 3)


def test_photos_refuses_a_missing_folder_and_a_tile_split_validation(tmp_path):
    with pytest.raises(ValueError, match=r"no files in data_dir=.*SOURCES.tsv"):
        data.load_arrays("photos", "train", tmp_path)
    write_corpus(tmp_path, {"train": [(64, 64)]})
    with pytest.raises(ValueError, match=r"Dataset 'photos': no image files in .*test"):
        data.load_arrays("photos", "test", tmp_path)
    with pytest.raises(ValueError, match=r"`validation_size`: 'photos' is split by photograph"):
        data.load_arrays("photos", "validation", tmp_path, validation_size=1)


def test_random_flips_mirror_some_images_and_repeat_with_the_seed():
    images = RNG.integers(0, 256, (64, 4, 5, 3), dtype=np.uint8)

    def first_epoch(seed):
        ds = pipelines.make_pipeline(images, None, 64, shuffle=False, drop_remainder=False,
                                     dynamic_binarization=False, seed=seed, epochs=(0, 1),
                                     flips=True)
        return next(iter(ds)).numpy()

    batch = first_epoch(0)
    plain, mirrored = images / np.float32(255), images[:, :, ::-1] / np.float32(255)
    same = np.all(batch == plain, axis=(1, 2, 3))
    flipped = np.all(batch == mirrored, axis=(1, 2, 3))
    assert np.all(same | flipped) and 16 < flipped.sum() < 48  # each image one or the other
    np.testing.assert_array_equal(first_epoch(0), batch)
    assert not np.array_equal(first_epoch(1), batch)


def test_random_flips_of_streamed_files(tmp_path):
    images = RNG.integers(0, 256, (8, 6, 6, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    listing = [str(tmp_path / f"{i}.png") for i in range(8)]
    from keras_lvae import image_files

    for epochs in (None, (0, 1)):
        ds = pipelines.make_file_pipeline(listing, None, image_files.decode_pixels, 8,
                                          shuffle=False, drop_remainder=False, epochs=epochs,
                                          flips=True)
        batch = next(iter(ds)).numpy()
        flipped = np.all(batch == images[:, :, ::-1] / np.float32(255), axis=(1, 2, 3))
        same = np.all(batch == images / np.float32(255), axis=(1, 2, 3))
        assert np.all(same | flipped) and flipped.any() and same.any()


def test_the_shared_photos_corpus():
    folder = SHARED_DATA / "photos"
    if not (folder / readers.PHOTOS_MARKER).exists():
        pytest.skip(f"the photos corpus is not in {SHARED_DATA} (set KERAS_LVAE_DATA_DIR)")
    for split, tiles, photographs in (("train", 16736, 25), ("test", 5408, 8)):
        x, y = data.load_arrays("photos", split, SHARED_DATA)
        assert x.shape == (tiles, 32, 32, 3) and len(np.unique(y)) == photographs
