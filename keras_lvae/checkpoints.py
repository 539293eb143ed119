"""A run's checkpoints: every variable a resumed run needs, saved by key in an .npz file.

Keys are variable paths without the model's own name (`optimizer/...` for the
optimizer's), so a checkpoint restores into a model built anew in another process.
Files of keras-lvae 0.1 (positional arrays v0000, v0001, ...) are read once and
rewritten by key. Also the names of a run folder's files.
"""

import logging
import os
import re
import zipfile

import numpy as np

from keras_lvae._files import atomic_write

CONFIG_FILE, HISTORY_FILE, CHECKPOINT_FILE, MODEL_FILE = (
    "config.json", "history.csv", "checkpoint.npz", "model.keras")
TENSORBOARD_DIR = "tensorboard"
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
