"""`lvae evaluate`: bounds, latent diagnostics, plots and, for conditional models, the
Bayes classifier of a training run, a `.keras` file, a checkpoint or an exported
SavedModel. Called by `commands.run_evaluate`."""

import datetime
import importlib.metadata
import json
import math
import os
import platform
import time

import keras

from keras_lvae import checkpoints, data, diagnostics, evaluation_data, training
from keras_lvae._files import atomic_write, read_csv, write_csv
from keras_lvae.report_statistics import summarise_accuracy, summarise_bounds
from keras_lvae.command_inputs import (configure_threads, dataset_arguments,
                                       load_ladder_vae, output_beside, recompute_statistics,
                                       resolve_model_path, run_config)

BITS_PER_DIM_UNITS = "bits per dimension, -L / (H W C ln 2), values 0..255"


def _bits_text(bits, name):
    """8-bit data: the bound `name` in bits per dimension, to print beside the nats."""
    if bits is None or name not in bits:
        return ""
    return (f"  ({bits[name]['mean']:.3f} +- {bits[name]['standard_error']:.3f} bits/dim, "
            "values 0..255)")


def _is_saved_model(path):
    return os.path.isfile(os.path.join(path, "saved_model.pb"))


def run_evaluate(args):
    from keras_lvae import evaluation

    if _is_saved_model(args.model):
        return _evaluate_saved_model(args)
    started = time.perf_counter()
    if args.history and not os.path.isfile(args.history):
        raise ValueError(f"--history: no such file {args.history!r}")
    args.model = resolve_model_path(args.model)  # the file, once; the rest reads it
    run = run_config(args.model)
    if run is not None:  # a file without its run keeps TensorFlow's threads
        configure_threads(run)
    model = load_ladder_vae(args.model)
    conditional = getattr(model, "num_classes", None) is not None
    if conditional and args.ood_dataset:
        raise ValueError("--ood-dataset: the scores of a conditional model (model.num_classes) "
                         "need each image's label, which out-of-distribution data lack")
    dataset_arguments(args, model)
    output = args.output or output_beside(args.model, "evaluation")
    keras.utils.set_random_seed(args.seed)
    binarize = None if model.likelihood_class.binary else False  # the dataset's protocol
    split = evaluation_data.load(
        args.dataset, args.split, batch_size=args.batch_size, data_dir=args.data_dir,
        validation_size=args.validation_size, binarize=binarize, image_size=args.image_size,
        max_examples=args.max_examples, seed=args.seed)
    if tuple(split.shape) != tuple(model.feature_shape):
        raise ValueError(f"--dataset {args.dataset} has images of shape {tuple(split.shape)}, "
                         f"but the model was trained on {model.feature_shape}")
    outside = None
    if args.ood_dataset:  # checked and loaded before any work
        from keras_lvae import ood_evaluation

        outside = ood_evaluation.load_outside(model, binarize, args)
    os.makedirs(output, exist_ok=True)  # once the arguments are known to be good
    # A conditional model scores log p(x | y): the images with their labels.
    images = split.labelled(args.dataset) if conditional else split.images
    subset = split.subset
    timings = {}
    if args.bn_statistics == "recompute":
        start = time.perf_counter()
        recompute_statistics(model, args)
        timings["batch_norm_statistics"] = time.perf_counter() - start

    start = time.perf_counter()
    bounds = evaluation.bound_report(model, images, num_samples=args.samples,
                                     batch_size=args.batch_size, chunk_size=args.chunk_size,
                                     jit_compile=args.jit_compile)
    timings["log_likelihood"] = time.perf_counter() - start
    start = time.perf_counter()
    layers = diagnostics.latent_diagnostics(model, images, batch_size=args.batch_size)
    timings["latent_diagnostics"] = time.perf_counter() - start
    classifier = None
    if conditional and args.classify_samples:
        from keras_lvae.classification import classify

        start = time.perf_counter()
        predicted = classify(model, images, args.classify_samples,
                             batch_size=args.batch_size).argmax(axis=1)
        classifier = {"samples": args.classify_samples, "class_prior": "uniform",
                      **summarise_accuracy(predicted == split.labels)}
        timings["classify"] = time.perf_counter() - start

    written = {}
    if not args.no_plots:
        start = time.perf_counter()
        written = _evaluation_plots(model, split, layers, args, output)
        timings["plots"] = time.perf_counter() - start
    if outside is not None:
        start = time.perf_counter()
        written.update(ood_evaluation.report(model, split, outside, args, output))
        timings["ood"] = time.perf_counter() - start
    timings["total"] = time.perf_counter() - started

    k = args.samples
    report = {
        "model": os.path.abspath(args.model),
        "dataset": args.dataset,
        "split": args.split,
        "num_examples": bounds["num_examples"],
        "settings": {
            "samples": k, "batch_size": args.batch_size, "chunk_size": args.chunk_size,
            "bn_statistics": args.bn_statistics, "max_examples": args.max_examples,
            "subset": subset,
            "jit_compile": args.jit_compile, "seed": args.seed,
            "weights": "moving average" if model.ema_variables else "trained",
            "active_unit_threshold": diagnostics.ACTIVE_UNIT_THRESHOLD,
        },
        "model_config": {key: value for key, value in model.get_config().items()
                         if key not in ("name", "trainable", "dtype")},
        **_bound_sections(bounds, k),
        **({"bayes_classifier": classifier} if classifier else {}),
        "latent_layers": [
            {"layer": i + 1, "shape": list(layer["kl_per_unit"].shape),
             "units": layer["kl_per_unit"].size, "kl": layer["kl"],
             "active_units_kl": layer["active_units_kl"],
             "active_units_cov": layer["active_units_cov"],
             "active_channels": layer["active_channels"],
             "kl_per_channel": layer["kl_per_channel"].tolist(),
             "kl_per_unit": layer["kl_per_unit"].tolist(),
             "posterior_mean_variance": layer["posterior_mean_variance"].tolist()}
            for i, layer in enumerate(layers)
        ],
        "plots": written,
        "per_example": "per_example.csv",
        "timing_seconds": timings,
    }
    _write_report(output, report, bounds, k)
    print(f"{args.dataset} {args.split}: {_examples_text(bounds['num_examples'], subset)}, k = {k}, "
          f"batch-norm statistics: {args.bn_statistics}, {timings['log_likelihood']:.0f} s")
    _print_bounds(bounds, k, conditional)
    if classifier:
        print(f"Bayes classifier (L_{classifier['samples']} of each class, uniform p(y)): "
              f"accuracy {classifier['accuracy']:.4f} +- {classifier['standard_error']:.4f}")
    threshold = diagnostics.ACTIVE_UNIT_THRESHOLD
    for i, layer in enumerate(layers):
        channels = layer["kl_per_channel"].size
        spatial = (f", active channels {layer['active_channels']}/{channels}"
                   if layer["kl_per_unit"].ndim > 1 else "")
        print(f"z_{i + 1}: KL {layer['kl']:6.2f} nats, active units "
              f"{layer['active_units_kl']}/{layer['kl_per_unit'].size} (KL > {threshold:g}), "
              f"{layer['active_units_cov']} (Cov > {threshold:g}){spatial}")
    print(f"wrote {os.path.join(output, 'report.json')}, per_example.csv and {len(written)} plots")
    return 0


def _evaluation_plots(model, split, layers, args, output):
    """`lvae evaluate`'s PNGs in `output`; returns {name: file name}."""
    from keras_lvae import plots

    run = training.run_folder(args.model)
    history_path = args.history or os.path.join(run or "", checkpoints.HISTORY_FILE)
    shown = split.first(2000)  # enough points for the PCA scatter
    labels = split.labels
    conditional = getattr(model, "num_classes", None) is not None
    figures = {
        "prior_samples": lambda p: plots.plot_prior_samples(model, p, seed=args.seed),
        "reconstructions": lambda p: plots.plot_reconstructions(
            model, shown, p, labels=labels[:2000] if conditional else None),
        "layer_variations": lambda p: plots.plot_layer_variations(model, p, seed=args.seed),
        "kl_per_layer": lambda p: plots.plot_kl_per_layer(
            layers, p, threshold=diagnostics.ACTIVE_UNIT_THRESHOLD),
        "kl_per_unit": lambda p: plots.plot_kl_heatmaps(layers, p),
        "latent_pca": lambda p: plots.plot_latent_pca(
            model, shown, p, labels=None if labels is None else labels[:2000]),
    }
    if os.path.isfile(history_path):
        history = read_csv(history_path)
        figures["training_curves"] = lambda p: plots.plot_training_curves(history, p)
    written = {}
    for name, draw in figures.items():
        draw(os.path.join(output, f"{name}.png"))
        written[name] = f"{name}.png"
    return written


def _evaluate_saved_model(args):
    """`lvae evaluate` of an exported version: L_1 and L_k through its `score` signature,
    with TensorFlow's SavedModel loader alone (what TF Serving would answer)."""
    from keras_lvae.saved_model_client import saved_model_inputs, score_saved_model

    if args.dataset is None:
        raise ValueError("--dataset is needed to evaluate a SavedModel (it has no config.json)")
    output = args.output or args.model.rstrip("/\\") + "_evaluation"
    score_inputs = saved_model_inputs(args.model)
    spec = score_inputs["images"]
    source = data.SOURCES.get(args.dataset)  # a folder's images are resized to the model's
    image_size = spec.shape[1] if source is not None and source.user_folder else None
    split = evaluation_data.load(args.dataset, args.split, batch_size=args.batch_size,
                                 data_dir=args.data_dir, validation_size=args.validation_size or 0,
                                 image_size=image_size, max_examples=args.max_examples,
                                 seed=args.seed)
    subset = split.subset
    start = time.perf_counter()
    # A conditional export's score takes the labels (log p(x | y)).
    scored = split.labelled(args.dataset) if "labels" in score_inputs else split.images
    l_1, l_k = score_saved_model(args.model, scored, args.samples,
                                 batch_size=args.batch_size, seed=args.seed)
    seconds = time.perf_counter() - start
    k = args.samples
    eight_bit = spec.dtype.name == "uint8"  # bits per dimension beside nats
    bounds = summarise_bounds(l_1, l_k, k, math.prod(split.shape) if eight_bit else None)
    report = {
        "model": os.path.abspath(args.model), "format": "SavedModel (score signature)",
        "dataset": args.dataset, "split": args.split, "num_examples": split.count,
        "settings": {"samples": k, "batch_size": args.batch_size, "seed": args.seed,
                     "max_examples": args.max_examples, "subset": subset},
        **_bound_sections(bounds, k),
        "per_example": "per_example.csv", "timing_seconds": {"log_likelihood": seconds},
    }
    _write_report(output, report, bounds, k)
    print(f"{args.dataset} {args.split}: {_examples_text(split.count, subset)}, k = {k}, SavedModel "
          f"{args.model} (its own batch-norm statistics), {seconds:.0f} s")
    _print_bounds(bounds, k, "labels" in score_inputs)
    print(f"wrote {os.path.join(output, 'report.json')} and per_example.csv")
    return 0


def _examples_text(count, subset):
    if subset is None:
        return f"{count} examples"
    return f"{count} of {subset['of']} examples (a random subset, seed {subset['seed']})"


def _bound_sections(bounds, k):
    """The report's `log_likelihood` (and, for 8-bit data, `bits_per_dim`) sections of a
    `bound_report`, keyed L_1 and L_<k>."""
    sections = {"log_likelihood": {"L_1": bounds["L_1"], f"L_{k}": bounds["L_k"],
                                   "bound_gap": bounds["bound_gap"], "units": "nats"}}
    if "bits_per_dim" in bounds:
        bits = bounds["bits_per_dim"]
        sections["bits_per_dim"] = {"L_1": bits["L_1"], f"L_{k}": bits["L_k"],
                                    "units": BITS_PER_DIM_UNITS}
    return sections


def _versions():
    names = ["keras-lvae", "keras", "tensorflow", "tensorflow-probability", "numpy", "matplotlib"]
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def _write_report(output, report, bounds, k):
    """per_example.csv and report.json (with versions and a time stamp) in `output`."""
    report.update(versions=_versions(), created=datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec="seconds"))
    os.makedirs(output, exist_ok=True)
    write_csv(os.path.join(output, "per_example.csv"),
              {"L_1": bounds["per_example_L_1"], f"L_{k}": bounds["per_example_L_k"]})
    with atomic_write(os.path.join(output, "report.json")) as file:
        file.write(json.dumps(report, indent=2) + "\n")


def _print_bounds(bounds, k, conditional=False):
    """L_1, L_k and their gap with standard errors (and bits/dim for 8-bit data); a
    conditional model's are bounds of log p(x | y), said on every line."""
    bits = bounds.get("bits_per_dim")
    given = "(x | y)" if conditional else ""
    if conditional:
        print("bounds of log p(x | y), each image's label given: not comparable with an "
              "unconditional model's log p(x)")
    for label, name in ((f"L_1{given}", "L_1"), (f"L_{k}{given}", "L_k"), ("gap", "bound_gap")):
        summary = bounds[name]
        print(f"{label:>7} {summary['mean']:9.2f} +- {summary['standard_error']:.2f} nats"
              + _bits_text(bits, name))
