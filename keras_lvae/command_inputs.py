"""What the `lvae` commands share: the MODEL they name (resolved, loaded with its moving
averages), its run's configuration and dataset, CPU threads, and where data come from.
`commands` and `evaluate_command` both import it (neither imports the other's helpers).
"""

import logging
import os
import sys
import warnings

import keras

import keras_lvae
from keras_lvae import checkpoints, data, threads, training


def show_data_sources():
    """Print where the data come from (the keras_lvae.data logger) on stdout."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("keras_lvae").addHandler(handler)
    logging.getLogger("keras_lvae").setLevel(logging.INFO)


def configure_threads(config):
    """Choose TensorFlow's CPU threads for the run's architecture (before any TF op) and say
    what was chosen."""
    print(threads.describe(threads.configure_for(config.model.architecture)))


def run_config(model_path):
    """The Config of the run that `model_path` (a resolved .keras file or checkpoint)
    belongs to, or None."""
    workdir = training.run_folder(model_path)
    return None if workdir is None else training.load_run_config(workdir)


def dataset_arguments(args, model):
    """Fill --dataset, --data-dir and --validation-size from the run's config.json, and an
    image folder's image size from the model's input shape."""
    run = run_config(args.model)
    if args.dataset is None:
        if run is None:
            raise ValueError(f"--dataset is needed: there is no {checkpoints.CONFIG_FILE} next to "
                             f"{args.model!r} to take it from")
        args.dataset = run.data.dataset
    if args.dataset not in data.list_datasets():
        raise ValueError(f"--dataset: expected one of {data.list_datasets()}, received "
                         f"{args.dataset!r}")
    same_data = run is not None and run.data.dataset == args.dataset
    if args.data_dir is None and same_data:
        args.data_dir = run.data.data_dir
    if args.validation_size is None:
        args.validation_size = run.data.validation_size if same_data else 0
    args.image_size = run.data.image_size if same_data else None
    source = data.SOURCES.get(args.dataset)
    if args.image_size is None and source is not None and source.user_folder:
        args.image_size = model.feature_shape[0]  # square images, resized to what it takes


def resolve_model_path(path):
    """The file that MODEL names: a .keras file, a checkpoint or kept snapshot (.npz), or a
    run folder (its model.keras, else its checkpoint.npz while it trains)."""
    if os.path.isdir(path):
        for name in (checkpoints.MODEL_FILE, checkpoints.CHECKPOINT_FILE):
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        if path.rstrip("/\\").endswith(".onnx"):
            raise ValueError(f"MODEL: {path!r} is an ONNX export: lvae reads run folders, "
                             ".keras files and SavedModels; run ONNX and LiteRT files in their "
                             "own runtimes (onnxruntime, LiteRT's interpreter), whose score "
                             "gives L_k: see saved_models/README.md, 'ONNX and LiteRT'")
        raise ValueError(f"MODEL: the folder {path!r} holds no {checkpoints.MODEL_FILE} or "
                         f"{checkpoints.CHECKPOINT_FILE} (not a run folder)")
    if path.endswith(".tflite"):
        raise ValueError(f"MODEL: {path!r} is a LiteRT export: lvae reads run folders, .keras "
                         "files and SavedModels; run it in LiteRT's interpreter, whose score "
                         "gives L_k: see saved_models/README.md, 'ONNX and LiteRT'")
    if not os.path.isfile(path):
        raise ValueError(f"MODEL: no such file or folder {path!r}")
    return path


def load_ladder_vae(path):
    """The LadderVAE saved at `path` (see `resolve_model_path`), or a ValueError naming MODEL.

    A model trained with `train.ema_decay` comes back with its moving-average weights in
    place (what evaluate, sample and export then use), and says so.
    """
    model = load_saved(resolve_model_path(path))
    if model.use_ema_weights():
        print(f"using the moving averages of the weights (ema_decay {model.ema_decay:g})")
    return model


def load_saved(path):
    if path.endswith(".npz"):
        model, epoch = training.model_from_checkpoint(path)
        print(f"{path}: the model after epoch {epoch}")
        return model
    if not path.endswith(".keras"):
        raise ValueError(f"MODEL: expected a .keras file, a checkpoint (.npz) or a run folder, "
                         f"received {path!r}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = keras.saving.load_model(path)
    for warning in caught:  # ours as one line; anything else as Python shows it
        if isinstance(model, keras_lvae.LadderVAE) and "step counter" in str(warning.message):
            print(f"note: {path}: {warning.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
    if not isinstance(model, keras_lvae.LadderVAE):
        raise ValueError(f"MODEL: expected a saved LadderVAE, received a {type(model).__name__}")
    return model


def output_beside(path, suffix):
    """Default output path next to the resolved MODEL file: `<folder>/<suffix>` for a
    model.keras, `<folder>/<stem>_<suffix>` for another file (snapshots/epoch_300_evaluation)."""
    folder, name = os.path.split(os.path.abspath(path))
    stem = os.path.splitext(name)[0]
    return os.path.join(folder, suffix if name == checkpoints.MODEL_FILE else f"{stem}_{suffix}")


def recompute_statistics(model, args):
    """The paper's protocol, the same in `lvae evaluate` and `lvae export` (same seed, same
    statistics): batch-norm averages over one training-mode pass over the training split."""
    from keras_lvae.batch_norm_statistics import recompute_batch_norm_statistics

    keras.utils.set_random_seed(args.seed)
    binarize = None if model.likelihood_class.binary else False  # the dataset's protocol
    train_ds = data.load_dataset(args.dataset, "train", batch_size=256, shuffle=False,
                                 data_dir=args.data_dir, seed=args.seed,
                                 validation_size=args.validation_size, binarize=binarize,
                                 image_size=args.image_size,
                                 with_labels=getattr(model, "num_classes", None) is not None)
    recompute_batch_norm_statistics(model, train_ds)
