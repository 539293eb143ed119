"""Resumable training runs from a `Config`: the work of `lvae train`.

A run's working directory holds:

    config.json      the resolved configuration (keras_lvae.config.from_dict reads it)
    history.csv      one row per finished epoch: its wall time and the logged metrics
    checkpoint.npz   every model and optimizer variable after the last finished epoch,
                     each under its key (its path without the model's name)
    snapshots/       epoch_<N>.npz: copies of the checkpoint kept at the epochs that
                     `train.keep_epochs` / `train.keep_every_epochs` select
    tensorboard/     per-epoch scalars (train/, validation/; loss, nelbo, kl_layer_<i>,
                     beta, ...) and a grid of prior samples (samples/)
    model.keras      the trained model, written when the run ends

Running again in the same directory resumes from the checkpoint: the model's
step counter (and so the warm-up's beta), the optimizer's step (the learning
rate) and moments, the batch-norm statistics and the noise generators' states
continue, and each epoch's data order and binarization depend on (seed, epoch)
alone, so a resumed run continues exactly as the uninterrupted run would (bit
for bit with `tf.config.experimental.enable_op_determinism()`); at most the
epoch that was interrupted is lost. A resumed run may change only the settings
in `RESUMABLE_KEYS` (for example `train.epochs`, to train for longer) and, until
fine-tuning has started, the `fine_tune` section.
"""

import contextlib
import functools
import json
import logging
import os
import re
import shutil
import signal
import sys
import threading
import time
import warnings
import zipfile

import keras
import numpy as np
import tensorflow as tf

from keras_lvae import config as config_lib
from keras_lvae import data, plots
from keras_lvae._files import atomic_write, read_csv, write_csv
from keras_lvae.densities import bits_per_dim
from keras_lvae.evaluation import log_likelihood
from keras_lvae.optimizers import FusedAdam
from keras_lvae.schedules import step_decay

# Settings that may differ between a run and its resumption.
RESUMABLE_KEYS = ("data.data_dir", "train.epochs", "train.eval_samples", "train.jit_compile",
                  "train.steps_per_execution", "train.sample_every_epochs", "train.strategy",
                  "train.keep_epochs", "train.keep_every_epochs", "fine_tune.epochs")
CONFIG_FILE, HISTORY_FILE, CHECKPOINT_FILE, MODEL_FILE = (
    "config.json", "history.csv", "checkpoint.npz", "model.keras")
TENSORBOARD_DIR = "tensorboard"


# ------------------------------------------------------------------ checkpoints
FORMAT_KEY, EPOCH_KEY = "__format__", "__epoch__"
CHECKPOINT_FORMAT = 2  # 1: keras-lvae 0.1's arrays v0000, v0001, ... restored by position
SNAPSHOT_DIR = "snapshots"


OPTIMIZER_PREFIX = "optimizer/"


def _key(path, model):
    """A model variable's checkpoint key: its path without the model's own name, which
    Keras makes unique per process (`ladder_vae_3/...`)."""
    return path[len(model.name) + 1:] if path.startswith(model.name + "/") else path


def _optimizer_key(path, model):
    """An optimizer variable's key: `optimizer/` and its path after the optimizer's name,
    without the model's name in slot names (`adam/ladder_vae_<path>_momentum`)."""
    name = path.split("/", 1)[-1]
    return OPTIMIZER_PREFIX + name.removeprefix(model.name + "_")


def state_variables(model):
    """{key: variable} of every variable a resumed run needs: weights, batch-norm
    statistics, the step counter, noise generators' states and the optimizer's step
    and moments (keys starting with `optimizer/`)."""
    pairs = [(_key(v.path, model), v)
             for v in list(model.trainable_variables) + list(model.non_trainable_variables)]
    pairs += [(_optimizer_key(v.path, model), v) for v in model.optimizer.variables]
    keyed = {}
    for key, variable in pairs:
        if key in keyed:
            raise RuntimeError(f"two variables share the checkpoint key {key!r}; give their "
                               "layers distinct names")
        keyed[key] = variable
    return keyed


def save_checkpoint(model, path, epoch):
    """Write every state variable of `model` (by key) and the finished `epoch` to `path`,
    atomically."""
    arrays = {key: np.asarray(v.numpy()) for key, v in state_variables(model).items()}
    with atomic_write(path, "wb") as file:
        np.savez(file, **{FORMAT_KEY: np.int64(CHECKPOINT_FORMAT), EPOCH_KEY: np.int64(epoch)},
                 **arrays)


def _unreadable(path, error):
    snapshots = kept_snapshots(os.path.dirname(os.path.abspath(path)))
    fallback = (f"; kept snapshots to fall back on: {', '.join(snapshots)} (copy one to "
                f"{CHECKPOINT_FILE})" if snapshots else "")
    return ValueError(f"checkpoint {path!r} is unreadable, truncated or corrupt "
                      f"({type(error).__name__}: {error}){fallback}")


def _read(path):
    """{name: array} of the checkpoint file at `path`, or a ValueError naming it."""
    try:
        with np.load(path) as stored:
            return {name: stored[name] for name in stored.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
        raise _unreadable(path, error) from None


def checkpoint_epoch(path):
    """The finished epoch stored in the checkpoint at `path`, or 0 if there is none."""
    if not os.path.isfile(path):
        return 0
    stored = _read(path)
    return int(stored[EPOCH_KEY] if EPOCH_KEY in stored else stored.get("epoch", 0))


def kept_snapshots(workdir):
    """Paths of the snapshots kept in `workdir` (train.keep_epochs), oldest first."""
    folder = os.path.join(workdir, SNAPSHOT_DIR)
    if not os.path.isdir(folder):
        return []
    names = [n for n in os.listdir(folder) if re.fullmatch(r"epoch_\d+\.npz", n)]
    return [os.path.join(folder, n) for n in sorted(names, key=lambda n: int(n[6:-4]))]


def restore_checkpoint(model, path):
    """Load the checkpoint at `path` into the built, compiled `model`; return its epoch.

    Arrays are matched to variables by key; missing or unexpected keys and shape
    mismatches are refused, naming them. A keras-lvae 0.1 checkpoint (arrays
    restored by position) is read once with a shape check; the next save
    writes it by name.
    """
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    stored = _read(path)
    if FORMAT_KEY not in stored:
        return _restore_positional(model, path, stored)
    epoch = int(stored.pop(EPOCH_KEY))
    stored.pop(FORMAT_KEY)
    variables = state_variables(model)
    missing = sorted(set(variables) - set(stored))
    unexpected = sorted(set(stored) - set(variables))
    wrong = sorted(k for k in set(variables) & set(stored)
                   if tuple(variables[k].shape) != stored[k].shape)
    if missing or unexpected or wrong:
        def some(keys):
            return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        problems = [f"missing {some(missing)}" if missing else "",
                    f"unexpected {some(unexpected)}" if unexpected else "",
                    f"other shapes for {some(wrong)}" if wrong else ""]
        raise ValueError(f"checkpoint {path!r} does not match this model "
                         f"({'; '.join(p for p in problems if p)}); use a new --workdir")
    for key, variable in variables.items():
        variable.assign(stored[key])
    return epoch


def _restore_positional(model, path, stored):
    """Restore a keras-lvae 0.1 checkpoint: arrays v0000, ... in the order trainable,
    non-trainable (without the later `trained_steps`), optimizer variables."""
    variables = [v for v in list(model.trainable_variables) + list(model.non_trainable_variables)
                 if v is not model.trained_steps] + list(model.optimizer.variables)
    values = [stored[f"v{i:04d}"] for i in range(len(stored) - 1)]
    if len(values) != len(variables) or any(
            tuple(v.shape) != value.shape for v, value in zip(variables, values)):
        raise ValueError(f"checkpoint {path!r} (keras-lvae 0.1's positional format) does not "
                         f"match this configuration ({len(values)} stored variables, the model "
                         f"has {len(variables)}); use a new --workdir")
    for variable, value in zip(variables, values):
        variable.assign(value)
    model.trained_steps.assign(model.optimizer.iterations)  # 0.1's warm-up clock
    logging.getLogger(__name__).warning(
        "read %s in keras-lvae 0.1's positional format; the next save writes it by name", path)
    return int(stored["epoch"])


def read_history(path):
    """The {column: [values per epoch]} of a run's history.csv."""
    return read_csv(path)


def run_folder(path):
    """The run folder (holding config.json) of a checkpoint or snapshot at `path`, or None."""
    folder = os.path.dirname(os.path.abspath(path))
    for candidate in (folder, os.path.dirname(folder)):  # checkpoint.npz, snapshots/epoch_N.npz
        if os.path.isfile(os.path.join(candidate, CONFIG_FILE)):
            return candidate
    return None


def load_run_config(workdir):
    """The Config in `workdir`/config.json."""
    with open(os.path.join(workdir, CONFIG_FILE)) as file:
        return config_lib.from_dict(json.load(file))


def model_from_checkpoint(path):
    """The model of a run's checkpoint or kept snapshot (`path`), for evaluation or export.

    The architecture comes from the run's config.json (beside the checkpoint, or
    above its snapshots/ folder); weights, batch-norm statistics and the step
    counter from the checkpoint. Returns (model, epoch).

    Example: `model, epoch = model_from_checkpoint("runs/lvae5/snapshots/epoch_300.npz")`
    """
    workdir = run_folder(path)
    if workdir is None:
        raise ValueError(f"checkpoint {path!r} is not inside a run folder: there is no "
                         f"{CONFIG_FILE} beside it or above its {SNAPSHOT_DIR}/ folder, so its "
                         "architecture is unknown; pass the run's model.keras instead")
    config = load_run_config(workdir)
    model = build_model(config, steps_per_epoch=1)  # the step counter is restored
    model.build((None, *data.image_shape(config.data.dataset, config.data.image_size)))
    compile_model(model, config, steps_per_epoch=1)  # checkpoints hold the optimizer too
    epoch = restore_checkpoint(model, path)
    return model, epoch


# ------------------------------------------------------------------ callbacks
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

    def __init__(self):
        super().__init__()
        self.interrupted = False

    @contextlib.contextmanager
    def catching(self):
        if threading.current_thread() is not threading.main_thread():
            yield  # only the main thread may handle signals
            return
        previous = signal.getsignal(signal.SIGINT)

        def note(signum, frame):
            self.interrupted = True
            signal.signal(signal.SIGINT, previous)

        signal.signal(signal.SIGINT, note)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _raise_if_interrupted(self, *args, **kwargs):
        if self.interrupted:
            raise KeyboardInterrupt

    on_train_batch_end = on_test_batch_end = on_epoch_end = _raise_if_interrupted


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
            images = plots.as_images(self.model.generate(self.num_samples, seed=self.seed),
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


# ------------------------------------------------------------------ the run
def strategy_for(name):
    """(strategy, whether this process writes the outputs) for `train.strategy`."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(), True
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("train.strategy=multi_worker needs the cluster in the TF_CONFIG "
                             "environment variable (see the README)")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        # TF's rule: the chief task, or worker 0 of a cluster without one.
        resolver = strategy.cluster_resolver
        chief = resolver.task_type == "chief" or (
            resolver.task_type == "worker" and resolver.task_id == 0
            and "chief" not in resolver.cluster_spec().as_dict())
        return strategy, chief
    return tf.distribute.get_strategy(), True


def build_model(config, steps_per_epoch):
    """The model of `config.model` (LadderVAE or ConvLadderVAE) with `config.train`'s
    warm-up and samples."""
    t = config.train
    model_class, arguments = config.model.model_arguments()
    return model_class(
        **arguments, warmup_steps=t.warmup_epochs * steps_per_epoch,
        mc_samples=t.mc_samples, iw_samples=t.iw_samples,
        skip_nonfinite_steps=t.skip_nonfinite_steps, skip_threshold=t.skip_threshold,
        adaptive_skip_factor=t.adaptive_skip_factor, adaptive_skip_window=t.adaptive_skip_window,
        ema_decay=t.ema_decay, seed=t.seed)


# "adam" is Keras' Adam with one fused op per variable (the same update, faster on a CPU).
OPTIMIZERS = {"adam": FusedAdam, "adamax": keras.optimizers.Adamax}


def compile_model(model, config, steps_per_epoch, optimizer=None):
    """Compile with `train.optimizer` (or the given, already used `optimizer`).

    The learning rate is constant for `train.epochs` epochs, then (in the
    fine-tuning stage) multiplied by `fine_tune.decay_factor` every
    `decay_every_epochs`. It is a schedule even without fine-tuning, so the
    optimizer's variables are the same and a finished run can be resumed with
    fine-tuning switched on.
    """
    if optimizer is None:
        rate = step_decay(config.train.learning_rate, steps_per_epoch,
                          config.fine_tune.decay_every_epochs, config.fine_tune.decay_factor,
                          start_epoch=config.train.epochs)
        optimizer = OPTIMIZERS[config.train.optimizer](
            rate, global_clipnorm=config.train.global_clipnorm or None)
    # Under a tf.distribute strategy, one step per call: Keras' in-graph loop of steps fails
    # there ("You must feed a value for placeholder tensor"; keras-team/keras#19246).
    most = 1 if tf.distribute.has_strategy() else config.train.steps_per_execution
    model.compile(optimizer=optimizer, jit_compile=config.train.jit_compile,
                  steps_per_execution=steps_per_execution(most, steps_per_epoch))


def steps_per_execution(most, steps_per_epoch):
    """The largest divisor of `steps_per_epoch` up to `most`: Keras' train function then
    ends each epoch where it should (a call runs its steps even past an epoch's end).

    Example:
    >>> steps_per_execution(32, 195), steps_per_execution(32, 64), steps_per_execution(32, 37)
    (15, 32, 1)
    """
    return max(d for d in range(1, min(most, steps_per_epoch) + 1) if steps_per_epoch % d == 0)


def _differences(old, new):
    """The keys (section.field) whose values differ between two configs."""
    a, b = config_lib.to_dict(old), config_lib.to_dict(new)
    return [f"{s}.{k}" for s in a for k in a[s] if a[s][k] != b[s][k]]


def datasets(config, epochs=None):
    """(train, validation, test) tf.data pipelines of `config.data`.

    The training data's order and binarization come from `train.seed`. With
    `epochs=(first, last)` the training pipeline is `load_dataset`'s resumable
    stream of those epochs (a resumed run sees the data the uninterrupted run
    saw); without, one reshuffling epoch. Raises ValueError if a batch is larger
    than the training set.
    """
    # These pipelines shuffle themselves; Keras' note about fit(shuffle=True) is noise.
    warnings.filterwarnings("ignore", message="`shuffle=True` was passed")
    d, t = config.data, config.train
    load = dict(data_dir=d.data_dir, validation_size=d.validation_size, image_size=d.image_size)
    train_ds = _training_data(config, epochs)
    validation_ds = data.load_dataset(d.dataset, d.validation_split, batch_size=d.batch_size,
                                      seed=t.seed, **load)
    test_ds = validation_ds if d.validation_split == "test" else data.load_dataset(
        d.dataset, "test", batch_size=d.batch_size, seed=t.seed, **load)
    return (train_ds, *(_sharded(config, ds) for ds in (validation_ds, test_ds)))


def _training_data(config, epochs=None):
    d = config.data
    train_ds = data.load_dataset(d.dataset, "train", batch_size=d.batch_size,
                                 seed=config.train.seed, epochs=epochs, data_dir=d.data_dir,
                                 validation_size=d.validation_size, image_size=d.image_size)
    if int(train_ds.cardinality()) == 0:
        raise ValueError(f"data.batch_size={d.batch_size} is larger than the training set")
    return _sharded(config, train_ds)


def _sharded(config, ds):
    if config.train.strategy != "multi_worker":
        return ds
    # Each worker takes its share of every global batch.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def prepare_workdir(config, workdir):
    """Check that `workdir` is new or holds a resumable run of `config`; write config.json.

    Returns the epoch to resume from (0 for a new run).
    """
    os.makedirs(workdir, exist_ok=True)
    config_path = os.path.join(workdir, CONFIG_FILE)
    start_epoch = checkpoint_epoch(os.path.join(workdir, CHECKPOINT_FILE))
    if os.path.isfile(config_path):
        with open(config_path) as file:
            previous = config_lib.from_dict(json.load(file))
        allowed = RESUMABLE_KEYS
        if start_epoch <= previous.train.epochs:  # fine-tuning has not started yet
            allowed += tuple(k for k in config_lib.keys() if k.startswith("fine_tune."))
        changed = [k for k in _differences(previous, config) if k not in allowed]
        if changed and start_epoch:
            raise ValueError(
                f"--workdir {workdir} holds a run of a different configuration (changed: "
                f"{', '.join(changed)}); only {', '.join(RESUMABLE_KEYS)} (and fine_tune.* "
                "before fine-tuning starts) may change when resuming. Use a new --workdir.")
    with atomic_write(config_path) as file:
        json.dump(config_lib.to_dict(config), file, indent=2)
        file.write("\n")
    return start_epoch


def train(config, workdir, log=print):
    """Train (or resume) the run of `config` in `workdir`; return a summary dict.

    The summary holds `model` (the trained LadderVAE), `history` ({metric: values
    per epoch} of every epoch so far), `start_epoch`, `test_nelbo` and, when
    `train.eval_samples` > 0, `test_log_likelihood` (mean L_k).
    """
    d, t, f = config.data, config.train, config.fine_tune
    strategy, chief = strategy_for(t.strategy)
    checkpoint_path = os.path.join(workdir, CHECKPOINT_FILE)
    start_epoch = prepare_workdir(config, workdir) if chief else checkpoint_epoch(
        checkpoint_path)
    resumed_from = start_epoch
    total_epochs = t.epochs + f.epochs
    keras.utils.set_random_seed(t.seed)
    # Stages still to train: (first epoch, last epoch, fine-tuning settings or None).
    stages = [(0, t.epochs, None)] + ([(t.epochs, total_epochs, f)] if f.epochs else [])
    stages = [(max(first, start_epoch), last, ft) for first, last, ft in stages
              if start_epoch < last]
    first, last = stages[0][:2] if stages else (start_epoch, start_epoch + 1)  # shapes only
    train_ds, validation_ds, test_ds = datasets(config, epochs=(first, last))
    steps_per_epoch = int(train_ds.cardinality()) // (last - first)
    log(f"{d.dataset}: {steps_per_epoch} steps of {d.batch_size} images per epoch, "
        f"validation on the {d.validation_split} split, warm-up over {t.warmup_epochs} epochs")

    with strategy.scope():
        model = build_model(config, steps_per_epoch)
        model.build(train_ds.element_spec.shape)  # so the checkpoint can be restored
        compile_model(model, config, steps_per_epoch)
        if start_epoch:
            restore_checkpoint(model, checkpoint_path)
            log(f"resuming from {checkpoint_path} after epoch {start_epoch} of {total_epochs} "
                f"(step {int(model.optimizer.iterations.numpy())})")

    history_path = os.path.join(workdir, HISTORY_FILE)
    rows = read_csv(history_path) if start_epoch and os.path.isfile(history_path) else {}
    rows = {key: values[:start_epoch] for key, values in rows.items()}  # drop unsaved epochs
    log_dir = os.path.join(workdir, TENSORBOARD_DIR)
    keep = functools.partial(keeps_epoch, keep_epochs=t.keep_epochs,
                             keep_every_epochs=t.keep_every_epochs)
    history = HistoryCSV(history_path, rows)
    callbacks = [
        history,
        Checkpoint(checkpoint_path, keep),  # after the history row, so a resume can trim it
        keras.callbacks.TensorBoard(log_dir, write_graph=False),
        PriorSamplesSummary(os.path.join(log_dir, "samples"), every=t.sample_every_epochs,
                            seed=t.seed),
    ] if chief else []
    verbose = 1 if sys.stdout.isatty() else 2  # one line per epoch in logs
    progress = {"epoch": start_epoch + 1}  # the epoch in progress, for an interruption
    callbacks.append(keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs=None: progress.update(epoch=epoch + 1)))
    stop = StopOnInterrupt()  # last: it raises after the other callbacks saved the epoch
    callbacks.append(stop)
    try:
        with stop.catching():
            _fit_stages(model, config, strategy, stages, steps_per_epoch, train_ds,
                        validation_ds, callbacks, verbose, log)
    except KeyboardInterrupt:
        saved = checkpoint_epoch(checkpoint_path)
        resume = (f"run the same command to resume from epoch {saved + 1}" if saved else
                  "no epoch was saved: running the same command starts over")
        raise Interrupted(f"interrupted in epoch {progress['epoch']}; {resume}") from None
    with strategy.scope():  # model.keras then fits one step per call (Keras' default), so
        # a user's own steps_per_epoch cannot end its epochs late
        compile_model(model, config, steps_per_epoch=1, optimizer=model.optimizer)
    return _finish(model, config, workdir, test_ds, chief, history, resumed_from, log)


class Interrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C; the message says where and how to resume."""


def _fit_stages(model, config, strategy, stages, steps_per_epoch, train_ds, validation_ds,
                callbacks, verbose, log):
    for index, (first, last, fine_tune) in enumerate(stages):
        if index:  # the first stage's stream is already loaded
            train_ds = _training_data(config, epochs=(first, last))
        if fine_tune is not None:
            log(f"fine-tuning: {fine_tune.mc_samples} Monte Carlo x {fine_tune.iw_samples} "
                f"importance samples, learning rate x{fine_tune.decay_factor} every "
                f"{fine_tune.decay_every_epochs} epochs")
            with strategy.scope():
                model.mc_samples, model.iw_samples = fine_tune.mc_samples, fine_tune.iw_samples
                compile_model(model, config, steps_per_epoch, optimizer=model.optimizer)
        model.fit(train_ds, validation_data=validation_ds, epochs=last, initial_epoch=first,
                  steps_per_epoch=steps_per_epoch, callbacks=callbacks, verbose=verbose)


def _finish(model, config, workdir, test_ds, chief, history, resumed_from, log):
    """Test L_1 (and L_k), then model.keras: the end of `train`."""
    t = config.train
    result = model.evaluate(test_ds, return_dict=True, verbose=0)  # every worker takes part
    summary = {"model": model, "history": history.rows if chief else {},
               "start_epoch": resumed_from,
               "test_nelbo": float(np.ravel(result["nelbo"])[0])}
    def in_units(nats):  # 8-bit data: bits per dimension beside the nats
        if not model.likelihood_class.eight_bit:
            return f"{nats:.2f} nats"
        return f"{nats:.2f} nats ({bits_per_dim(nats, model.num_features):.3f} bits/dim)"

    log(f"test L_1 (ELBO): {in_units(-summary['test_nelbo'])}")
    if not chief:
        log("not the chief worker: worker 0 writes the outputs")
        return summary
    if t.eval_samples:
        bound = log_likelihood(model, test_ds, num_samples=t.eval_samples)
        summary["test_log_likelihood"] = float(np.mean(bound))
        log(f"test L_{t.eval_samples}: {in_units(summary['test_log_likelihood'])}")
    path = os.path.join(workdir, MODEL_FILE)
    partial = os.path.join(workdir, ".model.partial.keras")  # Keras wants the suffix
    model.save(partial)
    os.replace(partial, path)  # never leave a half-written model.keras
    log(f"saved {path}")
    return summary
