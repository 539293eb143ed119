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

The checkpoint format is `keras_lvae.checkpoints`; the run's callbacks are
`keras_lvae.callbacks`. This module builds, compiles and runs.
"""

import functools
import json
import os
import sys
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_lvae import config as config_lib
from keras_lvae import data, inputs, threads
from keras_lvae._files import atomic_write, read_csv
from keras_lvae.callbacks import (Checkpoint, HistoryCSV, PriorSamplesSummary, ProgressLines,
                                  StopOnInterrupt, keeps_epoch)
from keras_lvae.checkpoints import (CHECKPOINT_FILE, CONFIG_FILE, HISTORY_FILE, MODEL_FILE,
                                    SNAPSHOT_DIR, TENSORBOARD_DIR, checkpoint_epoch,
                                    restore_checkpoint)
from keras_lvae.densities import bits_per_dim
from keras_lvae.evaluation import log_likelihood
from keras_lvae.optimizers import FusedAdam
from keras_lvae.schedules import step_decay

# Settings that may differ between a run and its resumption.
RESUMABLE_KEYS = ("data.data_dir", "train.epochs", "train.eval_samples", "train.jit_compile",
                  "train.steps_per_execution", "train.sample_every_epochs", "train.strategy",
                  "train.keep_epochs", "train.keep_every_epochs", "fine_tune.epochs")


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
    if config.model.architecture == "mlp":  # the same numbers, faster where ops run side by side
        arguments["row_halves"] = threads.ops_run_side_by_side()
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
    most = 1 if tf.distribute.has_strategy() else most_steps_per_execution(config)
    model.compile(optimizer=optimizer, jit_compile=config.train.jit_compile,
                  steps_per_execution=steps_per_execution(most, steps_per_epoch))


# An MLP ladder's step takes a few ms, so Keras' Python round trip per call (about 2.5 ms)
# is worth saving (1.04-1.14x, benchmarks/README.md); a conv ladder's step takes tens of ms
# or more, so one step per call costs under 1% and lets Ctrl-C and progress act per step.
MLP_STEPS_PER_EXECUTION = 32


def most_steps_per_execution(config):
    """`train.steps_per_execution`, or by default 32 for MLP ladders and 1 for conv ones."""
    if config.train.steps_per_execution is not None:
        return config.train.steps_per_execution
    return MLP_STEPS_PER_EXECUTION if config.model.architecture == "mlp" else 1


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
    load = dict(data_dir=d.data_dir, validation_size=d.validation_size, image_size=d.image_size,
                with_labels=config.model.num_classes is not None)
    train_ds = _training_data(config, epochs)
    validation_ds = data.load_dataset(d.dataset, d.validation_split, batch_size=d.batch_size,
                                      seed=t.seed, **load)
    test_ds = validation_ds if d.validation_split == "test" else data.load_dataset(
        d.dataset, "test", batch_size=d.batch_size, seed=t.seed, **load)
    return (train_ds, *(_sharded(config, ds) for ds in (validation_ds, test_ds)))


def _training_data(config, epochs=None, strategy=None):
    """The training pipeline; with a multi-worker `strategy` and `epochs`, each worker's
    own input (`load_dataset`'s `shard`): it decodes only its part of every batch."""
    d = config.data
    multi_worker = config.train.strategy == "multi_worker"
    # Multi-worker: full batches only, so every worker takes the same steps.
    load = functools.partial(
        data.load_dataset, d.dataset, "train", batch_size=d.batch_size, seed=config.train.seed,
        epochs=epochs, data_dir=d.data_dir, validation_size=d.validation_size,
        image_size=d.image_size, drop_remainder=d.drop_remainder or multi_worker,
        flips=d.random_flips, with_labels=config.model.num_classes is not None)
    if multi_worker and strategy is not None and epochs is not None:
        def worker_input(context):
            per_replica = context.get_per_replica_batch_size(d.batch_size)
            return load(shard=(context.input_pipeline_id, context.num_input_pipelines)
                        ).rebatch(per_replica)  # one batch per replica of the worker

        return strategy.distribute_datasets_from_function(worker_input)
    train_ds = load()
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
    if config.model.num_classes is not None:
        log(f"conditional model of {config.model.num_classes} classes: trained on the "
            f"dataset's labels; nelbo and the test bounds are of log p(x | y)")

    with strategy.scope():
        model = build_model(config, steps_per_epoch)
        # So the checkpoint can be restored; a conditional model's elements are (x, y).
        model.build(inputs.unpack(train_ds.element_spec).shape)
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
    if not sys.stdout.isatty():  # no progress bar: a line every 30 s within an epoch
        callbacks.append(ProgressLines(steps_per_epoch))
    progress = {"epoch": start_epoch + 1}  # the epoch in progress, for an interruption
    callbacks.append(keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs=None: progress.update(epoch=epoch + 1)))
    stop = StopOnInterrupt(  # last: it raises after the other callbacks saved the epoch
        "lvae train: stopping after the steps in progress (Ctrl-C again to stop at once)")
    callbacks.append(stop)
    try:
        with stop.catching():
            _fit_stages(model, config, strategy, stages, steps_per_epoch, train_ds,
                        validation_ds, callbacks, verbose, log)
    except KeyboardInterrupt:
        for callback in callbacks:  # close the TensorBoard writers: the CLI exits at once
            callback.on_train_end()
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
    multi_worker = config.train.strategy == "multi_worker"
    for index, (first, last, fine_tune) in enumerate(stages):
        if index or multi_worker:  # else the first stage's stream is already loaded
            train_ds = _training_data(config, epochs=(first, last), strategy=strategy)
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

    given = "" if config.model.num_classes is None else " of log p(x | y)"
    log(f"test L_1 (ELBO){given}: {in_units(-summary['test_nelbo'])}")
    if not chief:
        log("not the chief worker: worker 0 writes the outputs")
        return summary
    if t.eval_samples:
        with model.ema_weights_applied():  # the weights L_1 was evaluated with
            bound = log_likelihood(model, test_ds, num_samples=t.eval_samples)
        summary["test_log_likelihood"] = float(np.mean(bound))
        log(f"test L_{t.eval_samples}{given}: {in_units(summary['test_log_likelihood'])}")
    path = os.path.join(workdir, MODEL_FILE)
    partial = os.path.join(workdir, ".model.partial.keras")  # Keras wants the suffix
    model.save(partial)
    os.replace(partial, path)  # never leave a half-written model.keras
    log(f"saved {path}")
    return summary
