"""What each `lvae` command does; `keras_lvae_cli` parses the arguments and calls these.

Each `run_<command>(args)` takes the parsed arguments and returns the exit code;
a ValueError or ImportError is reported as a one-line error.
"""

import logging
import os
import sys
import warnings

import keras

import keras_lvae
from keras_lvae import config as config_lib
from keras_lvae import data, threads, training


def _show_data_sources():
    """Print where the data come from (the keras_lvae.data logger) on stdout."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("keras_lvae").addHandler(handler)
    logging.getLogger("keras_lvae").setLevel(logging.INFO)


def _recipe_config(args):
    """(config, workdir) of a recipe command: the recipe with its --set overrides."""
    config = config_lib.override(config_lib.load_recipe(args.recipe), args.settings)
    name = os.path.splitext(os.path.basename(args.recipe))[0]
    return config, args.workdir or os.path.join("runs", name)


def _configure_threads(config):
    """Choose TensorFlow's CPU threads for the run's architecture (before any TF op) and say
    what was chosen."""
    print(threads.describe(threads.configure_for(config.model.architecture)))


def run_train(args):
    config, workdir = _recipe_config(args)
    _configure_threads(config)
    _show_data_sources()
    print(f"{args.recipe} -> {workdir}")
    training.train(config, workdir)
    return 0


def run_tune(args):
    from keras_lvae import tuning

    config, workdir = _recipe_config(args)
    _configure_threads(config)
    _show_data_sources()
    tuning.tune(config, workdir)
    return 0


def _run_config(model_path):
    """The Config of the run that `model_path` (a resolved .keras file or checkpoint)
    belongs to, or None."""
    workdir = training.run_folder(model_path)
    return None if workdir is None else training.load_run_config(workdir)


def _dataset_arguments(args, model):
    """Fill --dataset, --data-dir and --validation-size from the run's config.json, and an
    image folder's image size from the model's input shape."""
    run = _run_config(args.model)
    if args.dataset is None:
        if run is None:
            raise ValueError(f"--dataset is needed: there is no {training.CONFIG_FILE} next to "
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


def run_sample(args):
    from keras_lvae import plots

    args.model = resolve_model_path(args.model)
    output = args.output or _output_beside(args.model, "samples.png")
    if not output.endswith(".png"):
        raise ValueError(f"--output: expected a .png path, received {output!r}")
    if args.readjust_bn and args.layer is not None:
        raise ValueError("--readjust-bn: applies to prior samples at --temperature, not to "
                         "--layer figures")
    model = _load_ladder_vae(args.model)
    classes = getattr(model, "num_classes", None)
    if args.label is not None and (classes is None or not 0 <= args.label < classes):
        raise ValueError(f"--label: expected a class from 0 to {classes - 1}, received "
                         f"{args.label}" if classes else
                         "--label: the model is unconditional (trained without labels)")
    if args.layer is not None:
        if not 1 <= args.layer <= model.num_layers:
            raise ValueError(f"--layer: expected a layer from 1 to {model.num_layers}, "
                             f"received {args.layer}")
        columns = 10
        rows = max(1, args.num_samples // columns)
        plots.plot_layer_variations(model, output, rows=rows, columns=columns, seed=args.seed,
                                    layers=[args.layer])
        print(f"wrote {output} (layer {args.layer} resampled: {rows} rows of {columns}, "
              f"seed {args.seed})")
        return 0
    readjusted = ""
    if args.readjust_bn:
        from keras_lvae.evaluation import readjust_batch_norm

        readjust_batch_norm(model, args.temperature, seed=args.seed)
        readjusted = ", batch norms readjusted at that temperature"
    plots.plot_prior_samples(model, output, num_samples=args.num_samples, seed=args.seed,
                             temperature=args.temperature, label=args.label)
    what = (f"{args.num_samples} prior samples" if classes is None else
            "prior samples, one row per class" if args.label is None else
            f"{args.num_samples} prior samples of class {args.label}")
    print(f"wrote {output} ({what}, seed {args.seed}, temperature {args.temperature:g}"
          f"{readjusted})")
    return 0


def resolve_model_path(path):
    """The file that MODEL names: a .keras file, a checkpoint or kept snapshot (.npz), or a
    run folder (its model.keras, else its checkpoint.npz while it trains)."""
    if os.path.isdir(path):
        for name in (training.MODEL_FILE, training.CHECKPOINT_FILE):
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        if path.rstrip("/\\").endswith(".onnx"):
            raise ValueError(f"MODEL: {path!r} is an ONNX export: lvae reads run folders, "
                             ".keras files and SavedModels; run ONNX and LiteRT files in their "
                             "own runtimes (onnxruntime, LiteRT's interpreter), whose score "
                             "gives L_k: see saved_models/README.md, 'ONNX and LiteRT'")
        raise ValueError(f"MODEL: the folder {path!r} holds no {training.MODEL_FILE} or "
                         f"{training.CHECKPOINT_FILE} (not a run folder)")
    if path.endswith(".tflite"):
        raise ValueError(f"MODEL: {path!r} is a LiteRT export: lvae reads run folders, .keras "
                         "files and SavedModels; run it in LiteRT's interpreter, whose score "
                         "gives L_k: see saved_models/README.md, 'ONNX and LiteRT'")
    if not os.path.isfile(path):
        raise ValueError(f"MODEL: no such file or folder {path!r}")
    return path


def _load_ladder_vae(path):
    """The LadderVAE saved at `path` (see `resolve_model_path`), or a ValueError naming MODEL.

    A model trained with `train.ema_decay` comes back with its moving-average weights in
    place (what evaluate, sample and export then use), and says so.
    """
    model = _load_saved(resolve_model_path(path))
    if model.use_ema_weights():
        print(f"using the moving averages of the weights (ema_decay {model.ema_decay:g})")
    return model


def _load_saved(path):
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


def _output_beside(path, suffix):
    """Default output path next to the resolved MODEL file: `<folder>/<suffix>` for a
    model.keras, `<folder>/<stem>_<suffix>` for another file (snapshots/epoch_300_evaluation)."""
    folder, name = os.path.split(os.path.abspath(path))
    stem = os.path.splitext(name)[0]
    return os.path.join(folder, suffix if name == training.MODEL_FILE else f"{stem}_{suffix}")


def _recompute_statistics(model, args):
    """The paper's protocol, the same in `lvae evaluate` and `lvae export` (same seed, same
    statistics): batch-norm averages over one training-mode pass over the training split."""
    from keras_lvae import evaluation

    keras.utils.set_random_seed(args.seed)
    binarize = None if model.likelihood_class.binary else False  # the dataset's protocol
    train_ds = data.load_dataset(args.dataset, "train", batch_size=256, shuffle=False,
                                 data_dir=args.data_dir, seed=args.seed,
                                 validation_size=args.validation_size, binarize=binarize,
                                 image_size=args.image_size,
                                 with_labels=getattr(model, "num_classes", None) is not None)
    evaluation.recompute_batch_norm_statistics(model, train_ds)


def run_evaluate(args):
    """`lvae evaluate` (in `evaluate_command`, beside this module)."""
    from keras_lvae.evaluate_command import run_evaluate as evaluate

    return evaluate(args)


def run_export(args):
    from keras_lvae.export import export_saved_model, signature_names

    if not args.name or args.name in (".", "..") or os.sep in args.name:
        raise ValueError(f"--name: expected a plain directory name, received {args.name!r}")
    target = _export_target(args)  # refused before the model loads
    args.model = resolve_model_path(args.model)
    model = _load_ladder_vae(args.model)
    if args.format != "tf_saved_model" and model.num_classes is not None:
        raise ValueError(f"--format {args.format}: ONNX and LiteRT exports of conditional "
                         "models (model.num_classes) are not offered yet; export with "
                         "--format tf_saved_model (the default), whose signatures take labels")
    if args.bn_statistics == "recompute":  # bake in the statistics `lvae evaluate` used
        _dataset_arguments(args, model)
        _recompute_statistics(model, args)
    if args.format != "tf_saved_model":
        return _export_portable(model, args, target)
    try:
        path = export_saved_model(model, os.path.join(args.base_dir, args.name), args.version)
    except FileExistsError as error:
        raise ValueError(str(error)) from None
    print(f"exported {args.model} to {path} (signatures: {', '.join(signature_names(model))}; "
          "serving_default = score)")
    return 0


def _export_target(args):
    """The path `lvae export` writes (a SavedModel's: its name folder), refused in the
    terms of the command line when it would overwrite an export."""
    if args.format == "tf_saved_model":
        if args.version is not None:
            path = os.path.join(args.base_dir, args.name, str(args.version))
            if os.path.exists(path):
                raise ValueError(f"--version {args.version}: {path} exists; exports never "
                                 "overwrite: pass another --version, or none for the next free "
                                 "one")
        return os.path.join(args.base_dir, args.name)
    if args.version is not None:
        raise ValueError(f"--version: only --format tf_saved_model has versions, received "
                         f"--format {args.format}")
    path = os.path.join(args.base_dir, args.name + {"onnx": ".onnx", "litert": ".tflite"}[
        args.format])
    if os.path.exists(path):
        raise ValueError(f"--name {args.name}: {path} exists; exports never overwrite: pass "
                         "another --name or --base-dir")
    return path


def _export_portable(model, args, path):
    from keras_lvae import portable

    try:
        path = portable.export_model(model, path, args.format)
    except FileExistsError as error:  # appeared while the model loaded
        raise ValueError(str(error)) from None
    print(f"exported {args.model} to {path} ({', '.join(portable.FUNCTIONS)}; sampling from "
          "the noise the caller passes)")
    return 0
