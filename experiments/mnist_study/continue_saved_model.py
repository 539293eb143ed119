"""Start a resumable `lvae train` run from the weights of an exported SavedModel.

An experiment of this study, not library code: it writes Adam's private slot
variables (`_momentums`, `_velocities`), which a Keras release may rename.

experiments/mnist_study/README.md's long run continues the model shipped in saved_models/mnist_lvae/1
(200 epochs of recipes/mnist_serving.py) instead of training those epochs again.
A SavedModel holds the weights and batch-norm statistics but not Adam's moments,
so they are re-estimated: `--moment-steps` steps at learning rate 0 (the weights
stay as they are) on the run's training data with beta = 1, bias-corrected as
Adam does. The workdir then holds config.json and a checkpoint after `--epoch`
(the optimizer's step set to epoch x steps per epoch, so the warm-up is over),
and `lvae train` with the same settings resumes it. Run from the repository root:

    python experiments/mnist_study/continue_saved_model.py saved_models/mnist_lvae/1 recipes/mnist_paper.py \\
        --epoch 200 --set data.data_dir=../shared/data --set train.warmup_epochs=20 \\
        --set train.epochs=1000 --set fine_tune.epochs=0 --workdir runs/study/lvae5_long
    lvae train recipes/mnist_paper.py --set data.data_dir=../shared/data \\
        --set train.warmup_epochs=20 --set train.epochs=1000 --set fine_tune.epochs=0 \\
        --workdir runs/study/lvae5_long
"""

import argparse
import os
import sys

import keras
import tensorflow as tf

from keras_lvae import config as config_lib
from keras_lvae import checkpoints, training


def load_saved_weights(model, saved_model_dir):
    """Assign every weight of `model` from the SavedModel's variables of the same name."""
    def key(path):  # without the model's own name, which Keras makes unique per process
        return path.removesuffix(":0").split("/", 1)[-1]

    loaded = tf.saved_model.load(saved_model_dir)
    stored = {key(v.name): v for v in getattr(loaded, "model_variables", [])}
    # Noise generators start from the run's seed; the step counter is set by the caller;
    # moving averages of the weights (train.ema_decay) start from the loaded weights.
    weights = [w for w in model.weights if not any(
        part in w.path for part in ("seed_generator", "trained_steps", "ema__"))]
    missing = [w.path for w in weights if key(w.path) not in stored]
    if missing:
        raise ValueError(f"saved_model_dir: {saved_model_dir!r} has no variable for "
                         f"{len(missing)} of the model's {len(model.weights)} weights "
                         f"(first: {missing[0]}); is it an export of this architecture?")
    for weight in weights:
        value = stored[key(weight.path)].numpy()
        if tuple(weight.shape) != value.shape:
            raise ValueError(f"saved_model_dir: {weight.path} has shape {value.shape}, the "
                             f"model expects {tuple(weight.shape)}")
        weight.assign(value)
    model.restart_ema_weights()


def estimate_adam_moments(config, model, train_ds, steps):
    """Adam's bias-corrected (m, v) per trainable weight of `model`, from `steps` steps of
    gradients at learning rate 0 on a copy (beta = 1), so `model` itself is untouched."""
    copy_config = config_lib.override(config, ["train.warmup_epochs=0"])
    estimator = training.build_model(copy_config, int(train_ds.cardinality()))
    estimator.build(train_ds.element_spec.shape)
    estimator.set_weights(model.get_weights())
    optimizer = keras.optimizers.Adam(0.0)
    estimator.compile(optimizer=optimizer, jit_compile=config.train.jit_compile)
    estimator.fit(train_ds.repeat().take(steps), epochs=1, verbose=0)
    m_correction = 1.0 - optimizer.beta_1 ** steps
    v_correction = 1.0 - optimizer.beta_2 ** steps
    moments = []
    for variable in estimator.trainable_variables:
        index = optimizer._get_variable_index(variable)
        moments.append((optimizer._momentums[index].numpy() / m_correction,
                        optimizer._velocities[index].numpy() / v_correction))
    return moments


def continue_saved_model(saved_model_dir, config, workdir, epoch, moment_steps=500):
    """Write `workdir`'s config.json and a checkpoint after `epoch` holding the SavedModel's
    weights and re-estimated Adam moments; return the optimizer step stored."""
    if epoch < 1:
        raise ValueError(f"epoch: expected an int >= 1, received {epoch}")
    if epoch >= config.train.epochs + config.fine_tune.epochs:
        raise ValueError(f"epoch: expected fewer than the run's {config.train.epochs} + "
                         f"{config.fine_tune.epochs} epochs, received {epoch}")
    if os.path.exists(os.path.join(workdir, checkpoints.CHECKPOINT_FILE)):
        raise FileExistsError(f"workdir: {workdir!r} already holds a checkpoint")
    keras.utils.set_random_seed(config.train.seed)
    train_ds, _, _ = training.datasets(config, epochs=(epoch, epoch + 1))
    steps_per_epoch = int(train_ds.cardinality())
    model = training.build_model(config, steps_per_epoch)
    model.build(train_ds.element_spec.shape)
    training.compile_model(model, config, steps_per_epoch)
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    load_saved_weights(model, saved_model_dir)
    moments = estimate_adam_moments(config, model, train_ds, moment_steps)
    for variable, (m, v) in zip(model.trainable_variables, moments):
        index = optimizer._get_variable_index(variable)
        optimizer._momentums[index].assign(m)
        optimizer._velocities[index].assign(v)
    optimizer.iterations.assign(epoch * steps_per_epoch)
    model.trained_steps.assign(epoch * steps_per_epoch)
    training.prepare_workdir(config, workdir)
    checkpoints.save_checkpoint(model, os.path.join(workdir, checkpoints.CHECKPOINT_FILE), epoch)
    return int(optimizer.iterations.numpy())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("saved_model",
                        help="an exported version folder, e.g. saved_models/mnist_lvae/1")
    parser.add_argument("recipe", help="the run's recipe (its settings must match the export's)")
    parser.add_argument("--set", action="append", default=[], dest="settings",
                        metavar="SECTION.FIELD=VALUE")
    parser.add_argument("--epoch", type=int, required=True,
                        help="the epochs the exported model was trained for")
    parser.add_argument("--moment-steps", type=int, default=500,
                        help="gradient steps for Adam's moments (default 500)")
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args(argv)
    config = config_lib.override(config_lib.load_recipe(args.recipe), args.settings)
    step = continue_saved_model(args.saved_model, config, args.workdir, args.epoch,
                                args.moment_steps)
    print(f"wrote {args.workdir}: {args.saved_model}'s weights after epoch {args.epoch} "
          f"(optimizer step {step}); resume with lvae train")


if __name__ == "__main__":
    sys.exit(main())
