"""The callbacks of `lvae train`: the history file, checkpoints and kept snapshots, a
prompt Ctrl-C, and prior samples in TensorBoard. Each acts once per epoch."""

import contextlib
import os
import shutil
import signal
import sys
import threading
import time

import keras
import numpy as np
import tensorflow as tf

from keras_lvae import plots
from keras_lvae._files import atomic_write, write_csv
from keras_lvae.checkpoints import SNAPSHOT_DIR, save_checkpoint


class HistoryCSV(keras.callbacks.Callback):
    """Rewrites `path` (atomically) after every epoch with all rows so far.

    Columns: `epoch` (1-based), `seconds` (wall time of the epoch, validation
    included), then the logged metrics sorted by name, the same order in every
    run and resumption. `rows` are the rows of earlier epochs ({column: values});
    a column that earlier rows lack is NaN there.

    Not `keras.callbacks.CSVLogger(append=True)`: it fixes its columns at the first
    epoch it sees, so a resumed run whose stage logs other metrics (fine-tuning,
    skipped steps) would append misaligned rows; it cannot drop the rows of an
    epoch that the checkpoint did not keep; and it has no wall-time column.
    """

    def __init__(self, path, rows=None):
        super().__init__()
        self.path, self.rows = path, dict(rows or {})
        self._started = None

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, "seconds": time.perf_counter() - self._started,
               **{k: float(np.ravel(v)[0]) for k, v in (logs or {}).items()}}
        done = len(self.rows.get("epoch", []))
        for key in set(row) | set(self.rows):
            self.rows.setdefault(key, [float("nan")] * done).append(row.get(key, float("nan")))
        order = ["epoch", "seconds"] + sorted(set(self.rows) - {"epoch", "seconds"})
        self.rows = {key: self.rows[key] for key in order}
        write_csv(self.path, self.rows)


def keeps_epoch(epoch, keep_epochs=None, keep_every_epochs=0):
    """Whether `train.keep_epochs` / `train.keep_every_epochs` keep a snapshot of `epoch`.

    Example:
    >>> [e for e in range(1, 11) if keeps_epoch(e, keep_epochs=(2, 3), keep_every_epochs=5)]
    [2, 3, 5, 10]
    """
    return epoch in (keep_epochs or ()) or bool(keep_every_epochs and epoch % keep_every_epochs == 0)


class Checkpoint(keras.callbacks.Callback):
    """Saves the training state to `path` after every epoch (`save_checkpoint`) and keeps
    a copy, `snapshots/epoch_<N>.npz` beside it, of the epochs that `keep(N)` selects."""

    def __init__(self, path, keep=lambda epoch: False):
        super().__init__()
        self.path, self.keep = path, keep

    def on_epoch_end(self, epoch, logs=None):
        save_checkpoint(self.model, self.path, epoch + 1)
        if self.keep(epoch + 1):
            snapshot = snapshot_path(os.path.dirname(self.path), epoch + 1)
            with atomic_write(snapshot, "wb") as file, open(self.path, "rb") as source:
                shutil.copyfileobj(source, file)


class StopOnInterrupt(keras.callbacks.Callback):
    """Turns Ctrl-C (SIGINT) during `fit` into a KeyboardInterrupt at the end of a batch.

    Python raises KeyboardInterrupt wherever the main thread is when the signal comes; in a
    finaliser or a library's clean-up it is printed and lost, and training goes on. Within
    `catching()` the first SIGINT only sets `interrupted`, which the next batch's end (or
    the epoch's) raises, after any checkpoint in progress is written; a second SIGINT
    interrupts at once, as usual.

    Example:
    >>> stop = StopOnInterrupt()
    >>> with stop.catching():
    ...     os.kill(os.getpid(), signal.SIGINT)
    >>> stop.interrupted
    True
    """

    def __init__(self, message=None):
        super().__init__()
        self.interrupted = False
        self.message = message  # printed on stderr at once when the first SIGINT comes

    @contextlib.contextmanager
    def catching(self):
        if threading.current_thread() is not threading.main_thread():
            yield  # only the main thread may handle signals
            return
        previous = signal.getsignal(signal.SIGINT)

        def note(signum, frame):
            self.interrupted = True
            signal.signal(signal.SIGINT, previous)
            if self.message:
                print(self.message, file=sys.stderr, flush=True)

        signal.signal(signal.SIGINT, note)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _raise_if_interrupted(self, *args, **kwargs):
        if self.interrupted:
            raise KeyboardInterrupt

    on_train_batch_end = on_test_batch_end = on_epoch_end = _raise_if_interrupted


class ProgressLines(keras.callbacks.Callback):
    """A line every `every_seconds` within an epoch, for logs (Keras' progress bar needs a
    terminal): `epoch 3: step 250/781, 73 s, loss 96.1`; after the first epoch, also the
    time an epoch takes.

    Example:
    >>> progress = ProgressLines(steps_per_epoch=10, every_seconds=0)
    >>> progress.on_epoch_begin(0)
    >>> progress.on_train_batch_end(4, {"loss": 2.5})  # doctest: +ELLIPSIS
      epoch 1: step 5/10, 0 s, loss 2.5
    """

    def __init__(self, steps_per_epoch, every_seconds=30.0):
        super().__init__()
        self.steps_per_epoch, self.every_seconds = steps_per_epoch, every_seconds
        self.epoch_seconds = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.started = epoch + 1, time.monotonic()
        self.last = self.started

    def on_train_batch_end(self, batch, logs=None):
        now = time.monotonic()
        if now - self.last < self.every_seconds:
            return
        self.last = now
        loss = (logs or {}).get("loss")
        line = f"  epoch {self.epoch}: step {batch + 1}/{self.steps_per_epoch}, " \
               f"{now - self.started:.0f} s"
        if loss is not None:
            line += f", loss {float(np.ravel(loss)[0]):.4g}"
        if self.epoch_seconds:
            line += f" (an epoch takes about {self.epoch_seconds:.0f} s)"
        print(line, flush=True)

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds = time.monotonic() - self.started


def snapshot_path(workdir, epoch):
    """Where `Checkpoint` keeps the snapshot of `epoch` in `workdir`."""
    return os.path.join(workdir, SNAPSHOT_DIR, f"epoch_{epoch}.npz")


class PriorSamplesSummary(keras.callbacks.Callback):
    """A TensorBoard image of `num_samples` prior samples every `every` epochs.

    The samples come from a fixed seed, so successive images show the same
    latent draws as training proceeds.
    """

    def __init__(self, log_dir, every=1, num_samples=64, seed=0):
        super().__init__()
        self.log_dir, self.every, self.num_samples, self.seed = log_dir, every, num_samples, seed
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if not self.every or (epoch + 1) % self.every:
            return
        try:
            images = plots.as_images(
                self.model.generate(self.num_samples, seed=self.seed,
                                    labels=plots.class_labels(self.model, self.num_samples)),
                self.model.feature_shape)
        except ValueError:
            return  # inputs that are not images (e.g. flat non-square vectors)
        mosaic = plots.image_mosaic(images, columns=int(np.ceil(np.sqrt(self.num_samples))))
        if mosaic.ndim == 2:
            mosaic = mosaic[..., None]
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            # The step of Keras' scalars of the same epoch (0-based).
            tf.summary.image("prior_samples", mosaic[None], step=epoch)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
