"""The split `lvae evaluate` scores: arrays, or a stream of an image folder's files, with
the same seeded --max-examples subset either way."""

import numpy as np
import tensorflow as tf

from keras_lvae import data, evaluation_data
from tests.test_data import collect
from tests.test_image_files import write_images


def test_max_examples_draws_a_seeded_random_subset_in_the_splits_order():
    """The first N test images can be unrepresentative (binarized MNIST's are sorted by
    digit): --max-examples draws N at random with --seed, keeps their order, and says so."""
    images, labels = data.load_evaluation_arrays("mnist_5k", "test")
    split = evaluation_data.load("mnist_5k", "test", max_examples=20, seed=3)
    want = np.sort(np.random.default_rng(3).choice(500, 20, replace=False))
    np.testing.assert_array_equal(split.images, images[want])
    np.testing.assert_array_equal(split.labels, labels[want])
    assert not np.array_equal(want, np.arange(20))  # not the first 20
    assert split.count == 20 and split.shape == (28, 28, 1)
    assert split.subset == {"examples": 20, "of": 500, "seed": 3,
                            "drawn": "uniformly at random without replacement (--seed)"}
    other = evaluation_data.load("mnist_5k", "test", max_examples=20, seed=4)
    assert not np.array_equal(other.images, split.images)
    whole = evaluation_data.load("mnist_5k", "test", max_examples=500)
    assert whole.subset is None and whole.count == 500


def test_an_image_folder_is_evaluated_as_a_stream_of_the_same_images(tmp_path):
    """Never all in memory: the test folder is a tf.data stream whose images (and labels)
    are the arrays' own, subset included."""
    for name in ("cats", "dogs"):
        write_images(tmp_path / name, 25, height=12, width=10)
    load = dict(data_dir=tmp_path, image_size=8)
    images, labels = data.load_evaluation_arrays("image_folder", "test", **load)
    assert len(images) == 5
    split = evaluation_data.load("image_folder", "test", batch_size=2, **load)
    assert isinstance(split.images, tf.data.Dataset)
    assert split.count == 5 and split.shape == (8, 8, 3) and split.subset is None
    np.testing.assert_array_equal(collect(split.images), images)
    np.testing.assert_array_equal(split.labels, labels)
    np.testing.assert_array_equal(split.first(3), images[:3])
    chosen = evaluation_data.load("image_folder", "test", batch_size=2, max_examples=3,
                                  seed=1, **load)
    want = evaluation_data.subset_indices(5, 3, seed=1)[0]
    np.testing.assert_array_equal(collect(chosen.images), images[want])
    np.testing.assert_array_equal(chosen.labels, labels[want])
    assert chosen.subset["of"] == 5 and chosen.count == 3
