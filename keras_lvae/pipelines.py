"""tf.data pipelines over image arrays: batching, per-epoch shuffling and dynamic
binarization, and the resumable stream of epochs that `lvae train` uses."""

import numpy as np
import tensorflow as tf

from keras_lvae import _checks

TEST_BINARIZATION_SEED = 0


def binarize_once(images, seed=TEST_BINARIZATION_SEED):
    """x ~ Bernoulli(grey) drawn once with a fixed numpy seed (float32, same shape)."""
    rng = np.random.default_rng(seed)
    return (rng.random(images.shape, dtype=np.float32) < images).astype(np.float32)


def random_flips(x, batch_seed):
    """Each image of the batch `x` [B, H, W, C] mirrored left-right with probability 1/2,
    drawn from the int[2] `batch_seed` (the same seed, the same flips)."""
    flip = tf.random.stateless_uniform([tf.shape(x)[0], 1, 1, 1], seed=batch_seed) < 0.5
    return tf.where(flip, tf.reverse(x, axis=[2]), x)


def make_pipeline(images, labels, batch_size, *, shuffle, drop_remainder, dynamic_binarization,
                  seed=0, epochs=None, shard=None, flips=False):
    """Batches of images [batch, H, W, C] (and labels), optionally re-binarized every epoch.

    `images`: [N, H, W] (a channel axis is added) or [N, H, W, C]; float in
    [0, 1], or uint8 8-bit levels v that the batches carry as v / 255. Images are
    stored as uint8 (levels x 255, exact for 8-bit data) so that `cache()`
    holds a quarter of the bytes; per-batch seeds come from
    `tf.data.Dataset.random`, re-drawn each epoch, so epochs differ while a fixed
    `seed` reproduces the run. `epochs=(first, last)`: the resumable stream of
    `load_dataset` (and `shard`: see `load_dataset`). `flips`: `random_flips` of every
    batch (augmentation for training data).
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
        if flips:  # a seed of its own, so the binarization noise stays as it was
            x = random_flips(x, tf.random.experimental.stateless_fold_in(batch_seed, 1))
        if dynamic_binarization:
            noise = tf.random.stateless_uniform(tf.shape(x), seed=batch_seed)
            x = tf.cast(noise < x, tf.float32)
        return x if labels is None else (x, y)

    if epochs is not None:
        images_tensor = tf.constant(elements)
        label_tensor = None if labels is None else tf.constant(labels)

        def epoch_batches(order, epoch_seed, batch_size):
            indices = tf.data.Dataset.from_tensor_slices(order).batch(
                batch_size, drop_remainder=drop_remainder)

            def gather(index, batch_indices):
                y = None if label_tensor is None else tf.gather(label_tensor, batch_indices)
                batch_seed = tf.random.experimental.stateless_fold_in(epoch_seed, index)
                return finish(tf.gather(images_tensor, batch_indices), y, batch_seed)

            return indices.enumerate().map(gather, num_parallel_calls=tf.data.AUTOTUNE)

        return _epoch_stream(len(elements), batch_size, shuffle, drop_remainder, seed, epochs,
                             epoch_batches, shard)
    _no_shard_without_epochs(shard)
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


def make_file_pipeline(paths, labels, load, batch_size, *, shuffle, drop_remainder, seed=0,
                       epochs=None, shard=None, flips=False):
    """Batches of images decoded from files, never all in memory: `make_pipeline` for
    `paths` (strings) whose `load(path)` gives uint8 pixels, carried as v / 255.

    Shuffling orders the file names (each epoch's order a function of (seed, epoch)
    with `epochs=(first, last)`); decoding runs in parallel with a deterministic order.
    With `shard` (see `load_dataset`) only this worker's files are decoded. `flips`: as
    in `make_pipeline`.
    """
    paths = tf.constant(list(paths))
    label_tensor = None if labels is None else tf.constant(labels)

    def loaded(index):
        x = tf.cast(load(tf.gather(paths, index)), tf.float32) / 255.0
        return x if label_tensor is None else (x, tf.gather(label_tensor, index))

    def flipped(batches, seeds):
        if not flips:
            return batches
        flip = lambda batch, batch_seed: (  # noqa: E731
            random_flips(batch, batch_seed) if label_tensor is None
            else (random_flips(batch[0], batch_seed), batch[1]))
        return tf.data.Dataset.zip((batches, seeds)).map(flip)

    def epoch_batches(order, epoch_seed, batch_size):
        batches = (tf.data.Dataset.from_tensor_slices(order)
                   .map(loaded, num_parallel_calls=tf.data.AUTOTUNE)
                   .batch(batch_size, drop_remainder=drop_remainder))
        seeds = tf.data.Dataset.counter().map(
            lambda index: tf.random.experimental.stateless_fold_in(epoch_seed, index))
        return flipped(batches, seeds)

    count = int(paths.shape[0])
    if epochs is not None:
        return _epoch_stream(count, batch_size, shuffle, drop_remainder, seed, epochs,
                             epoch_batches, shard)
    _no_shard_without_epochs(shard)
    order = tf.data.Dataset.range(count)
    if shuffle:
        order = order.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    batches = (order.map(loaded, num_parallel_calls=tf.data.AUTOTUNE)
               .batch(batch_size, drop_remainder=drop_remainder))
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return flipped(batches, seeds).prefetch(tf.data.AUTOTUNE)


TILE_SHUFFLE_WINDOW = 8192  # tiles mixed together: those of several photographs


def make_tile_pipeline(paths, tile_counts, labels, load, batch_size, *, shuffle, drop_remainder,
                       seed=0, epochs=None, shard=None, flips=False):
    """Batches of the tiles of image files, streamed: `load(path)` gives a file's uint8
    tiles [n, H, W, C] (`tile_counts[i]` of them for file i); each tile has its file's label.

    Shuffling orders the files and then shuffles windows of `TILE_SHUFFLE_WINDOW`
    consecutive tiles (so a batch mixes tiles of several photographs), every epoch's as a
    function of (seed, epoch). Memory holds one window, never the whole split. With
    `shard` every worker decodes every file and keeps its part of each batch.
    """
    paths = tf.constant(list(paths))
    counts = [int(c) for c in tile_counts]
    label_tensor = None if labels is None else tf.constant(labels)
    total = sum(counts)

    def tiles_of(index):
        tiles = load(tf.gather(paths, index))
        if label_tensor is None:
            return tiles
        return tiles, tf.fill([tf.shape(tiles)[0]], tf.gather(label_tensor, index))

    def finish(batch, batch_seed):
        x, y = (batch, None) if label_tensor is None else batch
        x = tf.cast(x, tf.float32) / 255.0
        if flips:
            x = random_flips(x, batch_seed)
        return x if y is None else (x, y)

    def one_epoch(epoch):
        epoch_seed = tf.stack([tf.constant(seed, tf.int64), epoch])
        order = tf.range(len(counts), dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(order, seed=epoch_seed)
        tiles = (tf.data.Dataset.from_tensor_slices(order)
                 .map(tiles_of, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                 .unbatch())
        if shuffle:
            def mix(index, window):  # one permutation for the tiles and their labels
                first = tf.nest.flatten(window)[0]
                permutation = tf.random.experimental.stateless_shuffle(
                    tf.range(tf.shape(first)[0]),
                    seed=tf.random.experimental.stateless_fold_in(epoch_seed, index))
                return tf.data.Dataset.from_tensor_slices(tf.nest.map_structure(
                    lambda t: tf.gather(t, permutation), window))
            tiles = tiles.batch(TILE_SHUFFLE_WINDOW).enumerate().flat_map(mix)
        batches = tiles.batch(batch_size, drop_remainder=drop_remainder)
        if shard is not None:
            index, parts = _checked_shard(shard, batch_size, drop_remainder)
            part = batch_size // parts
            batches = batches.map(lambda b: tf.nest.map_structure(
                lambda t: t[index * part:(index + 1) * part], b))
        seeds = tf.data.Dataset.counter().map(
            lambda i: tf.random.experimental.stateless_fold_in(epoch_seed, i + (1 << 30)))
        return tf.data.Dataset.zip((batches, seeds)).map(finish)

    if epochs is None:
        _no_shard_without_epochs(shard)
        # A new epoch index on every iteration: each pass over the data is ordered anew.
        epoch_index = (tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
                       .take(1)) if shuffle else tf.data.Dataset.from_tensors(
                           tf.constant(0, tf.int64))
        return epoch_index.flat_map(one_epoch).prefetch(tf.data.AUTOTUNE)
    _checked_epochs(epochs)
    return _epochs_back_to_back(one_epoch, epochs,
                                batches_per_epoch(total, batch_size, drop_remainder))


def batches_per_epoch(count, batch_size, drop_remainder):
    """Batches an epoch of `count` examples makes (the last one smaller unless dropped)."""
    return count // batch_size if drop_remainder else -(-count // batch_size)


def _no_shard_without_epochs(shard):
    if shard is not None:
        raise ValueError("Invalid value for argument `shard`: a worker's share of every batch "
                         "needs the stream of epochs (`epochs=(first, last)`), received "
                         f"shard={shard!r} without it.")


def _epoch_stream(count, batch_size, shuffle, drop_remainder, seed, epochs, epoch_batches,
                  shard=None):
    """Epochs first ... last - 1 back to back; epoch e's order (and the seed handed to
    `epoch_batches(order, epoch_seed, batch_size)`, which makes its batches) depend on
    (seed, e). `shard=(index, count)`: every worker orders the epoch alike and keeps the
    index-th of `count` equal parts of each batch (and a seed of its own)."""
    _checked_epochs(epochs)
    batches = batches_per_epoch(count, batch_size, drop_remainder)
    if shard is not None:
        index, parts = _checked_shard(shard, batch_size, drop_remainder)

    def one_epoch(epoch):
        epoch_seed = tf.stack([tf.constant(seed, tf.int64), epoch])
        order = tf.range(count, dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(order, seed=epoch_seed)
        if shard is None:
            return epoch_batches(order, epoch_seed, batch_size)
        part = batch_size // parts
        share = tf.reshape(order[:batches * batch_size], [batches, parts, part])[:, index]
        return epoch_batches(tf.reshape(share, [-1]),
                             tf.random.experimental.stateless_fold_in(epoch_seed, index), part)

    return _epochs_back_to_back(one_epoch, epochs, batches)


def _checked_epochs(epochs):
    first, last = epochs
    _checks.non_negative_int("epochs[0]", first)
    if not (isinstance(last, int) and last > first):
        raise ValueError("Invalid value for argument `epochs`: expected (first, last) with "
                         f"0 <= first < last, received {epochs!r}.")


def _epochs_back_to_back(one_epoch, epochs, batches):
    """`one_epoch(e)`'s batches for e = first ... last - 1, with their known cardinality."""
    first, last = epochs
    return (tf.data.Dataset.range(first, last).flat_map(one_epoch)
            .apply(tf.data.experimental.assert_cardinality((last - first) * batches))
            .prefetch(tf.data.AUTOTUNE))


def _checked_shard(shard, batch_size, drop_remainder):
    """(index, count) of a valid `shard`: equal parts of full batches only."""
    valid = (isinstance(shard, (tuple, list)) and len(shard) == 2
             and all(isinstance(v, int) for v in shard) and 0 <= shard[0] < shard[1])
    if not valid:
        raise ValueError("Invalid value for argument `shard`: expected (index, count) with "
                         f"0 <= index < count, received {shard!r}.")
    if batch_size % shard[1] or not drop_remainder:
        raise ValueError(f"Invalid value for argument `shard`: {shard[1]} equal parts of every "
                         f"batch need drop_remainder=True and a batch_size divisible by "
                         f"{shard[1]}, received batch_size={batch_size}, "
                         f"drop_remainder={drop_remainder}.")
    return tuple(shard)
