"""Resumable training runs from a `Config`: the work of `lvae train`.

A run's working directory holds:

    config.json      the resolved configuration (keras_lvae.config.from_dict reads it)
    history.csv      one row per finished epoch: its wall time and the logged metrics
    checkpoint.npz   every model and optimizer variable after the last finished epoch
    tensorboard/     per-epoch scalars (train/, validation/; loss, nelbo, kl_layer_<i>,
                     beta, ...) and a grid of prior samples (samples/)
    model.keras      the trained model, written when the run ends

Running again in the same directory resumes from the checkpoint: the optimizer
step (and so the warm-up's beta and the learning rate), the Adam moments, the
batch-norm statistics and the noise generators' states continue; at most the
epoch that was interrupted is lost. A resumed run may change only the settings
in `RESUMABLE_KEYS` (for example `train.epochs`, to train for longer) and, until
fine-tuning has started, the `fine_tune` section.
"""

import json
import os
import sys
import time
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_lvae import config as config_lib
from keras_lvae import data, plots
from keras_lvae._files import atomic_write, read_csv, write_csv
from keras_lvae.evaluation import log_likelihood
from keras_lvae.models import LadderVAE
from keras_lvae.schedules import step_decay

# Settings that may differ between a run and its resumption.
RESUMABLE_KEYS = ("data.data_dir", "train.epochs", "train.eval_samples", "train.jit_compile",
                  "train.sample_every_epochs", "train.strategy", "fine_tune.epochs")
CONFIG_FILE, HISTORY_FILE, CHECKPOINT_FILE, MODEL_FILE = (
    "config.json", "history.csv", "checkpoint.npz", "model.keras")
TENSORBOARD_DIR = "tensorboard"


# ------------------------------------------------------------------ checkpoints
def _state_variables(model):
    """Every variable a resumed run needs, in a fixed order: weights, batch-norm
    statistics, noise generators' states, then the optimizer's step and moments."""
    return list(model.trainable_variables) + list(model.non_trainable_variables) + list(
        model.optimizer.variables)


def save_checkpoint(model, path, epoch):
    """Write every state variable of `model` and the finished `epoch` to `path` atomically."""
    arrays = {f"v{i:04d}": np.asarray(v.numpy()) for i, v in enumerate(_state_variables(model))}
    with atomic_write(path, "wb") as file:
        np.savez(file, epoch=np.int64(epoch), **arrays)


def checkpoint_epoch(path):
    """The finished epoch stored in the checkpoint at `path`, or 0 if there is none."""
    if not os.path.isfile(path):
        return 0
    with np.load(path) as stored:
        return int(stored["epoch"])


def restore_checkpoint(model, path):
    """Load the checkpoint at `path` into the compiled, built `model`; return its epoch."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    variables = _state_variables(model)
    with np.load(path) as stored:
        values = [stored[f"v{i:04d}"] for i in range(len(stored.files) - 1)]
        epoch = int(stored["epoch"])
    if len(values) != len(variables) or any(
            tuple(v.shape) != value.shape for v, value in zip(variables, values)):
        raise ValueError(f"checkpoint {path!r} does not match this configuration "
                         f"({len(values)} stored variables, the model has {len(variables)}); "
                         "use a new --workdir")
    for variable, value in zip(variables, values):
        variable.assign(value)
    return epoch


# ------------------------------------------------------------------ callbacks
class HistoryCSV(keras.callbacks.Callback):
    """Rewrites `path` (atomically) after every epoch with all rows so far.

    Columns: `epoch`, `seconds` (wall time of the epoch, validation included) and
    the logged metrics. `rows` are the rows of earlier epochs ({column: values});
    a column that earlier rows lack is NaN there.
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
        write_csv(self.path, self.rows)


class Checkpoint(keras.callbacks.Callback):
    """Saves the training state to `path` after every epoch (`save_checkpoint`)."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        save_checkpoint(self.model, self.path, epoch + 1)


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
            tf.summary.image("prior_samples", mosaic[None], step=epoch + 1)
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
        cluster = json.loads(os.environ["TF_CONFIG"])
        task = cluster.get("task", {})
        has_chief = bool(cluster.get("cluster", {}).get("chief"))
        chief = task.get("type") == "chief" or (
            not has_chief and task.get("type") == "worker" and task.get("index") == 0)
        return strategy, chief
    return tf.distribute.get_strategy(), True


def build_model(config, steps_per_epoch):
    """The LadderVAE of `config.model` with `config.train`'s warm-up and samples."""
    m, t = config.model, config.train
    return LadderVAE(
        latent_dims=m.latent_dims, hidden_dims=m.hidden_dims, inference=m.inference,
        dense_per_block=m.dense_per_block, likelihood=m.likelihood, batch_norm=m.batch_norm,
        share_top_down=m.share_top_down, warmup_steps=t.warmup_epochs * steps_per_epoch,
        mc_samples=t.mc_samples, iw_samples=t.iw_samples,
        skip_nonfinite_steps=t.skip_nonfinite_steps, seed=t.seed)


def compile_model(model, config, steps_per_epoch, optimizer=None):
    """Compile with Adam (or the given, already used `optimizer`).

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
        optimizer = keras.optimizers.Adam(rate)
    model.compile(optimizer=optimizer, jit_compile=config.train.jit_compile)


def _differences(old, new):
    """The keys (section.field) whose values differ between two configs."""
    a, b = config_lib.to_dict(old), config_lib.to_dict(new)
    return [f"{s}.{k}" for s in a for k in a[s] if a[s][k] != b[s][k]]


def _data_seed(seed, start_epoch):
    """A fresh run shuffles with `seed`; a run resumed at epoch e with a seed derived
    from (seed, e), so it does not replay the first epochs' order and noise."""
    if start_epoch == 0:
        return seed
    return int(np.random.SeedSequence([seed, start_epoch]).generate_state(1)[0] % 2**31)


def datasets(config, start_epoch=0):
    """(train, validation, test) tf.data pipelines of `config.data`.

    The training data's order and binarization come from `train.seed` and, for a
    resumed run, the epoch it resumes at. Raises ValueError if a batch is larger
    than the training set.
    """
    # These pipelines shuffle themselves; Keras' note about fit(shuffle=True) is noise.
    warnings.filterwarnings("ignore", message="`shuffle=True` was passed")
    d, t = config.data, config.train
    load = dict(data_dir=d.data_dir, validation_size=d.validation_size)
    train_ds = data.load_dataset(d.dataset, "train", batch_size=d.batch_size,
                                 seed=_data_seed(t.seed, start_epoch), **load)
    if int(train_ds.cardinality()) == 0:
        raise ValueError(f"data.batch_size={d.batch_size} is larger than the training set")
    validation_ds = data.load_dataset(d.dataset, d.validation_split, batch_size=d.batch_size,
                                      seed=t.seed, **load)
    test_ds = validation_ds if d.validation_split == "test" else data.load_dataset(
        d.dataset, "test", batch_size=d.batch_size, seed=t.seed, **load)
    if t.strategy == "multi_worker":  # each worker takes its share of every global batch
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return tuple(ds.with_options(options) for ds in (train_ds, validation_ds, test_ds))
    return train_ds, validation_ds, test_ds


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
    train_ds, validation_ds, test_ds = datasets(config, start_epoch)
    steps_per_epoch = int(train_ds.cardinality())
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
    callbacks = [
        HistoryCSV(history_path, rows),
        Checkpoint(checkpoint_path),  # after the history row, so a resume can trim it
        keras.callbacks.TensorBoard(log_dir, write_graph=False),
        PriorSamplesSummary(os.path.join(log_dir, "samples"), every=t.sample_every_epochs,
                            seed=t.seed),
    ] if chief else []
    verbose = 1 if sys.stdout.isatty() else 2  # one line per epoch in logs
    stages = [(0, t.epochs, None)]
    if f.epochs:
        stages.append((t.epochs, total_epochs, f))
    for first, last, fine_tune in stages:
        if start_epoch >= last:
            continue
        if fine_tune is not None:
            log(f"fine-tuning: {fine_tune.mc_samples} Monte Carlo x {fine_tune.iw_samples} "
                f"importance samples, learning rate x{fine_tune.decay_factor} every "
                f"{fine_tune.decay_every_epochs} epochs")
            with strategy.scope():
                model.mc_samples, model.iw_samples = fine_tune.mc_samples, fine_tune.iw_samples
                compile_model(model, config, steps_per_epoch, optimizer=model.optimizer)
        model.fit(train_ds, validation_data=validation_ds, epochs=last,
                  initial_epoch=max(first, start_epoch), callbacks=callbacks, verbose=verbose)
        start_epoch = last

    result = model.evaluate(test_ds, return_dict=True, verbose=0)  # every worker takes part
    summary = {"model": model, "history": callbacks[0].rows if chief else {},
               "start_epoch": resumed_from,
               "test_nelbo": float(np.ravel(result["nelbo"])[0])}
    log(f"test L_1 (ELBO): {-summary['test_nelbo']:.2f} nats")
    if not chief:
        log("not the chief worker: worker 0 writes the outputs")
        return summary
    if t.eval_samples:
        bound = log_likelihood(model, test_ds, num_samples=t.eval_samples)
        summary["test_log_likelihood"] = float(np.mean(bound))
        log(f"test L_{t.eval_samples}: {summary['test_log_likelihood']:.2f} nats")
    path = os.path.join(workdir, MODEL_FILE)
    partial = os.path.join(workdir, ".model.partial.keras")  # Keras wants the suffix
    model.save(partial)
    os.replace(partial, path)  # never leave a half-written model.keras
    log(f"saved {path}")
    return summary
