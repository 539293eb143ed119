"""What each `lvae` command does; `keras_lvae_cli` parses the arguments and calls these.

Each `run_<command>(args)` takes the parsed arguments and returns the exit code;
a ValueError or ImportError is reported as a one-line error.
"""

import os

from keras_lvae import config as config_lib
from keras_lvae import training
from keras_lvae.command_inputs import (configure_threads, dataset_arguments, load_ladder_vae,
                                       output_beside, recompute_statistics, resolve_model_path,
                                       show_data_sources)


def _recipe_config(args):
    """(config, workdir) of a recipe command: the recipe with its --set overrides."""
    config = config_lib.override(config_lib.load_recipe(args.recipe), args.settings)
    name = os.path.splitext(os.path.basename(args.recipe))[0]
    return config, args.workdir or os.path.join("runs", name)


def run_train(args):
    config, workdir = _recipe_config(args)
    configure_threads(config)
    show_data_sources()
    print(f"{args.recipe} -> {workdir}")
    training.train(config, workdir)
    return 0


def run_tune(args):
    from keras_lvae import tuning

    config, workdir = _recipe_config(args)
    configure_threads(config)
    show_data_sources()
    tuning.tune(config, workdir)
    return 0


def run_sample(args):
    from keras_lvae import plots

    args.model = resolve_model_path(args.model)
    output = args.output or output_beside(args.model, "samples.png")
    if not output.endswith(".png"):
        raise ValueError(f"--output: expected a .png path, received {output!r}")
    if args.readjust_bn and args.layer is not None:
        raise ValueError("--readjust-bn: applies to prior samples at --temperature, not to "
                         "--layer figures")
    model = load_ladder_vae(args.model)
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
        from keras_lvae.batch_norm_statistics import readjust_batch_norm

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
    model = load_ladder_vae(args.model)
    if args.format != "tf_saved_model" and model.num_classes is not None:
        raise ValueError(f"--format {args.format}: ONNX and LiteRT exports of conditional "
                         "models (model.num_classes) are not offered yet; export with "
                         "--format tf_saved_model (the default), whose signatures take labels")
    if args.bn_statistics == "recompute":  # bake in the statistics `lvae evaluate` used
        dataset_arguments(args, model)
        recompute_statistics(model, args)
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
