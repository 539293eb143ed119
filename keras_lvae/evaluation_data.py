"""The split `lvae evaluate` scores: arrays for the datasets held in memory, a stream of
the files for image folders and CelebA's local files (never all in memory), either way
as `log_likelihood`, `latent_diagnostics` and `ood_scores` take them.

Example:
>>> split = load("mnist_5k", "test", max_examples=100, seed=3)
>>> split.count, split.shape, split.subset["of"]
(100, (28, 28, 1), 500)
"""

import dataclasses

import numpy as np
import tensorflow as tf

from keras_lvae import data, pipelines


@dataclasses.dataclass(frozen=True)
class EvaluationSplit:
    """`images`: float32 [N, H, W, C] in [0, 1], or a batched tf.data pipeline of them;
    `labels`: int64 [N] or None; `shape`: (H, W, C); `subset`: how `--max-examples`
    chose the images (None: all of the split)."""
    images: object
    labels: object
    count: int
    shape: tuple
    subset: object = None
    batch_size: int = None  # of a stream's batches

    def labelled(self, name):
        """What a conditional model scores: `(images, labels)` arrays, or a stream of
        `(images, labels)` batches; a clear error for a dataset `name` without labels."""
        if self.labels is None:
            raise ValueError(f"--dataset {name} has no labels, and a conditional model "
                             "(model.num_classes) scores log p(x | y)")
        if isinstance(self.images, np.ndarray):
            return self.images, self.labels
        # The stream reads the files in order, in batches of batch_size: so do the labels.
        return tf.data.Dataset.zip(
            self.images, tf.data.Dataset.from_tensor_slices(self.labels).batch(self.batch_size))

    def first(self, n):
        """The first `n` images as an array (for plots), reading no more of a stream."""
        if isinstance(self.images, np.ndarray):
            return self.images[:n]
        batches, read = [], 0
        for batch in self.images:
            batches.append(batch.numpy())
            read += len(batches[-1])
            if read >= n:
                break
        return np.concatenate(batches)[:n]


def load(name, split="test", *, batch_size=100, binarize=None, data_dir=None,
         validation_size=0, image_size=None, max_examples=None, seed=0):
    """An `EvaluationSplit` of `data.load_dataset`'s images (binarized once where the
    dataset's protocol binarizes); at most `max_examples` of them (see `subset`)."""
    files = data.image_file_split(name, split, data_dir, validation_size, image_size)
    if files is None or files[0].tile_counts is not None:  # tiles: held as an array
        images, labels = data.load_evaluation_arrays(
            name, split, binarize=binarize, data_dir=data_dir, validation_size=validation_size,
            image_size=image_size)
        chosen, subset = subset_indices(len(images), max_examples, seed)
        if chosen is not None:
            images, labels = images[chosen], None if labels is None else labels[chosen]
        return EvaluationSplit(images, labels, len(images), images.shape[1:], subset)
    listing, load_file = files
    paths, labels = np.asarray(listing.paths), listing.labels
    chosen, subset = subset_indices(len(paths), max_examples, seed)
    if chosen is not None:
        paths, labels = paths[chosen], None if labels is None else labels[chosen]
    stream = pipelines.make_file_pipeline(paths, None, load_file, batch_size, shuffle=False,
                                          drop_remainder=False)
    return EvaluationSplit(stream, labels, len(paths), tuple(stream.element_spec.shape[1:]),
                           subset, batch_size)


def subset_indices(total, max_examples, seed):
    """(Sorted indices of at most `max_examples` of `total` examples drawn at random with
    `seed`, a description for the report), or (None, None) for all of them: the first N
    can be unrepresentative (binarized MNIST's test set is sorted by digit).

    Example:
    >>> subset_indices(10, 3, seed=0)[0], subset_indices(10, None, seed=0)
    (array([5, 6, 9]), (None, None))
    """
    if max_examples is None or max_examples >= total:
        return None, None
    chosen = np.sort(np.random.default_rng(seed).choice(total, max_examples, replace=False))
    return chosen, {"examples": int(max_examples), "of": int(total), "seed": seed,
                    "drawn": "uniformly at random without replacement (--seed)"}
