"""`image_folder`: folders written here, read back through the streaming pipeline and
compared with Pillow and numpy (the reference listing is built independently)."""

import io
import logging
import os

import numpy as np
import pytest
from PIL import Image

from keras_lvae import data, image_files
from tests.test_data import collect

RNG = np.random.default_rng(7)


def write_images(folder, count, height=16, width=16, prefix="img", mode="RGB"):
    """`count` random images as PNG files; returns {file name: uint8 RGB pixels}."""
    os.makedirs(folder, exist_ok=True)
    written = {}
    for i in range(count):
        pixels = RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)
        name = f"{prefix}{i:03d}.png"
        Image.fromarray(pixels).convert(mode).save(os.path.join(folder, name))
        written[name] = np.asarray(Image.fromarray(pixels).convert(mode).convert("RGB"))
    return written


def split_names(folder, split, **kwargs):
    listing = image_files.list_split(folder, split, kwargs.pop("image_size", 16), **kwargs)
    return [os.path.relpath(p, folder) for p in listing.paths]


def test_one_folder_holds_out_a_seeded_tenth_for_test_and_for_validation(tmp_path, caplog):
    write_images(tmp_path, 40)
    with caplog.at_level(logging.INFO, logger="keras_lvae.data"):
        splits = {s: split_names(tmp_path, s) for s in ("train", "validation", "test")}
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [32, 4, 4]
    every = sorted(sum(splits.values(), []))
    assert every == sorted(os.listdir(tmp_path))  # each image in exactly one split
    # The reference: the pinned permutation of the sorted names, written out here.
    order = np.random.default_rng(image_files.SPLIT_SEED).permutation(40)
    assert splits["test"] == sorted(every[i] for i in order[:4])
    assert splits["validation"] == sorted(every[i] for i in order[4:8])
    assert "4 held out for test, 4 for validation" in caplog.text
    # Fixed by the file names: the same split again, and validation_size=N takes N.
    assert split_names(tmp_path, "test") == splits["test"]
    assert len(split_names(tmp_path, "validation", validation_size=6)) == 6
    assert len(split_names(tmp_path, "train", validation_size=6)) == 30


def test_train_and_test_folders_win_and_class_subfolders_give_labels(tmp_path):
    for split, count in (("train", 5), ("test", 3)):
        for label, name in enumerate(("cat", "dog")):
            write_images(tmp_path / split / name, count, prefix=name)
    listing = image_files.list_split(tmp_path, "train", 16)
    assert listing.class_names == ("cat", "dog")
    np.testing.assert_array_equal(listing.labels, [0] * 5 + [1] * 5)
    assert len(image_files.list_split(tmp_path, "test", 16).paths) == 6
    with pytest.raises(ValueError, match=r"has a train/ folder but no validation/ folder \(or "
                                         r"pass validation_size=N"):
        image_files.list_split(tmp_path, "validation", 16)
    held = image_files.list_split(tmp_path, "validation", 16, validation_size=2)
    assert [os.path.basename(p) for p in held.paths] == ["dog003.png", "dog004.png"]
    x, y = data.load_arrays("image_folder", "test", tmp_path, image_size=16)
    assert x.shape == (6, 16, 16, 3) and list(y) == [0, 0, 0, 1, 1, 1]


def test_every_split_of_one_folder_numbers_the_classes_alike(tmp_path):
    write_images(tmp_path / "cat", 37, prefix="cat")
    write_images(tmp_path / "dog", 3, prefix="dog")  # some splits may hold no dog
    for split in ("train", "validation", "test"):
        listing = image_files.list_split(tmp_path, split, 16)
        assert listing.class_names == ("cat", "dog")
        want = [0 if os.path.basename(p).startswith("cat") else 1 for p in listing.paths]
        np.testing.assert_array_equal(listing.labels, want)
    (tmp_path / "only_train").mkdir()
    write_images(tmp_path / "only_train" / "train" / "cat", 2, prefix="cat")
    write_images(tmp_path / "only_train" / "test" / "bird", 1, prefix="bird")
    with pytest.raises(ValueError, match=r"class folders \['bird'\] that the training folder "
                                         r"lacks; expected classes \['cat'\]"):
        image_files.list_split(tmp_path / "only_train", "test", 16)


def test_pixels_bit_for_bit_and_in_listing_order(tmp_path):
    """Same side: Pillow's pixels exactly. Half the side: numpy's 2 x 2 block means,
    rounded (exact in float32: quarters). Unshuffled order: the sorted file names."""
    written = write_images(tmp_path / "train", 7, 8, 12)
    write_images(tmp_path / "test", 1, 8, 12)
    names = sorted(written)
    crops = np.stack([written[n][:, 2:10] for n in names])  # centre 8 x 8 of 8 x 12
    x, _ = data.load_arrays("image_folder", "train", tmp_path, image_size=8)
    np.testing.assert_array_equal(np.round(x * 255).astype(np.uint8), crops)
    half = crops.reshape(7, 4, 2, 4, 2, 3).astype(np.float64).mean((2, 4))
    ds = data.load_dataset("image_folder", "train", batch_size=3, shuffle=False,
                           data_dir=tmp_path, image_size=4)
    streamed = collect(ds)
    assert [len(b) for b in ds.as_numpy_iterator()] == [3, 3, 1]  # no image left out
    np.testing.assert_array_equal(streamed * 255, np.round(half).astype(np.float32))


def test_epochs_are_a_function_of_seed_and_epoch_so_a_resumed_run_sees_the_same(tmp_path):
    write_images(tmp_path, 30)  # 24 train images
    load = dict(batch_size=5, data_dir=tmp_path, image_size=8, seed=4)
    whole = list(data.load_dataset("image_folder", "train", epochs=(0, 3), **load)
                 .as_numpy_iterator())
    resumed = list(data.load_dataset("image_folder", "train", epochs=(2, 3), **load)
                   .as_numpy_iterator())
    assert [len(b) for b in whole] == [5, 5, 5, 5, 4] * 3
    for a, b in zip(whole[10:], resumed, strict=True):
        np.testing.assert_array_equal(a, b)
    epoch = lambda e: np.concatenate(whole[5 * e:5 * e + 5])  # noqa: E731
    assert not np.array_equal(epoch(0), epoch(1))  # reshuffled
    np.testing.assert_array_equal(np.sort(epoch(0).reshape(24, -1), 0),
                                  np.sort(epoch(1).reshape(24, -1), 0))  # the same images
    dropped = data.load_dataset("image_folder", "train", epochs=(0, 1), drop_remainder=True,
                                **load)
    assert [len(b) for b in dropped.as_numpy_iterator()] == [5, 5, 5, 5]


def test_workers_decode_only_their_part_of_each_batch_and_the_parts_make_up_the_batch():
    """Multi-worker input: each of 3 workers reads its third of every full batch, and only
    those files; side by side, the parts are the unsharded stream's batches."""
    import tensorflow as tf

    from keras_lvae.pipelines import make_file_pipeline
    read = []

    def load(path):  # an "image" holding its file's number; records what was read
        def record(p):
            read.append(int(p))
            return np.full((2, 2, 1), int(p), np.uint8)
        return tf.ensure_shape(tf.numpy_function(record, [path], tf.uint8), (2, 2, 1))

    stream = dict(batch_size=6, shuffle=True, drop_remainder=True, seed=3, epochs=(1, 3))
    paths = [str(i) for i in range(20)]  # 3 full batches of 6 an epoch, 2 files left out
    whole = [b[:, 0, 0, 0] * 255 for b in make_file_pipeline(
        paths, None, load, **stream).as_numpy_iterator()]
    parts, reads = [], []
    for worker in range(3):
        read.clear()
        parts.append([b[:, 0, 0, 0] * 255 for b in make_file_pipeline(
            paths, None, load, shard=(worker, 3), **stream).as_numpy_iterator()])
        reads.append(sorted(read))
    assert len(whole) == 6 and [len(p) for p in parts] == [6, 6, 6]
    for step, batch in enumerate(whole):
        np.testing.assert_array_equal(np.concatenate([p[step] for p in parts]), batch)
    for worker in range(3):
        assert reads[worker] == sorted(np.concatenate([b[2 * worker:2 * worker + 2]
                                                       for b in whole]).astype(int).tolist())
    with pytest.raises(ValueError, match="argument `shard`.*drop_remainder=True and a "
                                         "batch_size divisible by 4, received batch_size=6"):
        make_file_pipeline(paths, None, load, **{**stream, "shard": (0, 4)})
    with pytest.raises(ValueError, match=r"`shard`: expected \(index, count\).*\(3, 3\)"):
        make_file_pipeline(paths, None, load, **{**stream, "shard": (3, 3)})


def test_the_batches_of_an_epoch_are_logged(tmp_path, caplog):
    write_images(tmp_path, 25)
    with caplog.at_level(logging.INFO, logger="keras_lvae.data"):
        data.load_dataset("image_folder", "train", batch_size=8, data_dir=tmp_path,
                          image_size=8)
        data.load_dataset("image_folder", "train", batch_size=8, data_dir=tmp_path,
                          image_size=8, drop_remainder=True)
    assert "image_folder train: 21 images an epoch in 3 batches of 8, the last of 5" in caplog.text
    assert "in 2 batches of 8; 5 images left out of each epoch (drop_remainder)" in caplog.text


def test_grey_rgba_and_mixed_sizes_are_converted_and_said_once(tmp_path, caplog):
    grey = write_images(tmp_path, 2, 10, 14, prefix="grey", mode="L")
    rgba = write_images(tmp_path, 2, 12, 12, prefix="rgba", mode="RGBA")
    write_images(tmp_path, 8, 12, 12, prefix="rgb")
    with caplog.at_level(logging.INFO, logger="keras_lvae.data"):
        names = image_files.list_split(tmp_path, "train", 10).paths
        x, _ = data.load_arrays("image_folder", "train", tmp_path, image_size=10)
        for split in ("validation", "test"):  # the collection's note is not repeated
            image_files.list_split(tmp_path, split, 10)
    assert caplog.text.count("are grey, paletted or have an alpha channel") == 1
    assert "2 image sizes, from 14 x 10 to 12 x 12" in caplog.text
    for image, path in zip(x, names):
        name = os.path.basename(path)
        if name in grey:  # R = G = B, the centre 10 x 10 of 10 x 14
            np.testing.assert_array_equal(image * 255, grey[name][:, 2:12])
        elif name in rgba:  # alpha dropped, area-resized 12 -> 10
            assert image.shape == (10, 10, 3)


def test_bad_folders_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"no image files .* in .*empty or its subfolders"):
        (tmp_path / "empty").mkdir()
        data.load_arrays("image_folder", "train", tmp_path / "empty", image_size=8)
    with pytest.raises(ValueError, match=r"`image_size`: image_folder needs .*received None"):
        data.load_arrays("image_folder", "train", tmp_path)
    with pytest.raises(ValueError, match=r"needs data_dir=\.\.\."):
        data.load_arrays("image_folder", "train", image_size=8)
    write_images(tmp_path / "few", 2)
    with pytest.raises(ValueError, match=r"has 2 images, too few to hold out 1 for test"):
        data.load_dataset("image_folder", "train", batch_size=2, data_dir=tmp_path / "few",
                          image_size=8)
    photos = tmp_path / "photos"
    write_images(photos, 10, 16, 16)
    write_images(photos, 1, 9, 30, prefix="small")
    with pytest.raises(ValueError, match=r"`image_size`: 1 of the 9 train images .* smaller than "
                                         r"12 x 12 \(the smallest, .*small000.png, has a side of 9\)"
                                         r"; pass image_size <= 9"):
        data.load_dataset("image_folder", "train", batch_size=2, data_dir=photos, image_size=12)
    whole = {}
    for name, fmt in (("cut.png", "PNG"), ("cut.jpg", "JPEG")):
        buffer = io.BytesIO()
        Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, fmt)
        whole[name] = buffer.getvalue()
    for name, content, message in (
            ("broken.png", b"\x89PNG not really", "cannot identify image file"),
            ("cut.png", whole["cut.png"][:len(whole["cut.png"]) // 2], "Truncated"),
            ("cut.jpg", whole["cut.jpg"][:len(whole["cut.jpg"]) // 2], "truncated JPEG")):
        (photos / name).write_bytes(content)
        with pytest.raises(ValueError, match=rf"Invalid image file .*{name}: .*{message}"):
            data.load_dataset("image_folder", "train", batch_size=2, data_dir=photos,
                              image_size=8)
        (photos / name).unlink()
    (photos / "whole.jpg").write_bytes(whole["cut.jpg"])  # the untruncated file passes
    data.load_dataset("image_folder", "train", batch_size=2, data_dir=photos, image_size=8)


def test_tiff_files_are_read_through_pillow(tmp_path):
    pixels = RNG.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    os.makedirs(tmp_path / "train")
    os.makedirs(tmp_path / "test")
    Image.fromarray(pixels).save(tmp_path / "train" / "a.tif")
    Image.fromarray(pixels).save(tmp_path / "test" / "b.png")
    x, _ = data.load_arrays("image_folder", "train", tmp_path, image_size=6)
    np.testing.assert_array_equal(x[0] * 255, pixels)


def test_a_small_folder_says_how_many_are_held_out_and_warns(tmp_path, caplog):
    """Three images: one each for train, validation and test, said in counts, not as 10%,
    with a warning that names what helps."""
    write_images(tmp_path, 3)
    with caplog.at_level(logging.INFO, logger="keras_lvae.data"):
        listings = {s: image_files.list_split(tmp_path, s, 16) for s in ("train", "test")}
    assert [len(listings[s].paths) for s in ("train", "test")] == [1, 1]
    assert "(one folder: 1 held out as test, fixed by the file names)" in caplog.text
    assert "10%" not in caplog.text
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "only 1 training images" in warnings[0].getMessage()
    assert "image_tiles" in warnings[0].getMessage()
