"""The `lvae` command line.

    lvae train --dataset mnist_5k --epochs 10 --output runs/quickstart
    lvae evaluate runs/quickstart/model.keras --dataset mnist_5k --samples 5000
    lvae export runs/quickstart/model.keras --name mnist_lvae
"""

import argparse
import csv
import datetime
import importlib.metadata
import json
import logging
import os
import platform
import sys
import time
import warnings

import keras
import numpy as np
import tensorflow as tf

import keras_lvae
from keras_lvae import data
from keras_lvae._files import atomic_write


def _int_list(text):
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive ints such as 64,32,16, received {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive ints, received {text!r}")
    return values


def _int_at_least(minimum):
    """An argparse type for ints >= minimum."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an int >= {minimum}, received {text!r}")
        return value
    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="lvae", description="Ladder Variational Autoencoders on Keras 3."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train",
        help="train a model, print the ELBO per epoch, save it",
        description="Train a Ladder VAE on a dynamically binarized dataset, report the test "
        "ELBO (L_1) and importance-weighted bound L_k, and save OUTPUT/model.keras.",
    )
    train.add_argument("--dataset", default="mnist_5k", choices=data.list_datasets(),
                       help="mnist_5k ships with the install (offline); the others read local "
                       "files from --data-dir, else tfds (default: %(default)s)")
    train.add_argument("--data-dir", default=None,
                       help="directory with the raw files (or set KERAS_LVAE_DATA_DIR)")
    train.add_argument("--likelihood", default=None, choices=["bernoulli", "gaussian"],
                       help="default: gaussian for norb, bernoulli otherwise")
    train.add_argument("--latent-dims", type=_int_list, default=[64, 32, 16, 8, 4],
                       help="latent sizes, bottom to top (default: 64,32,16,8,4)")
    train.add_argument("--hidden-dims", type=_int_list, default=[512, 256, 128, 64, 32],
                       help="MLP width per stochastic layer (default: 512,256,128,64,32)")
    train.add_argument("--inference", default="ladder", choices=["ladder", "bottom_up"],
                       help="ladder (LVAE) or bottom_up (the VAE baseline) (default: %(default)s)")
    train.add_argument("--no-batch-norm", action="store_true", help="disable batch norm")
    train.add_argument("--epochs", type=_positive_int, default=10)
    train.add_argument("--batch-size", type=_positive_int, default=256)
    train.add_argument("--learning-rate", type=float, default=1e-3)
    train.add_argument("--warmup-epochs", type=_non_negative_int, default=None,
                       help="epochs of linear KL warm-up (default: a tenth of --epochs, the "
                       "paper's ratio of 200 in 2000)")
    train.add_argument("--eval-samples", type=_non_negative_int, default=100,
                       help="importance samples k for the final test L_k; 0 skips it "
                       "(default: %(default)s)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--jit-compile", action="store_true", help="compile the steps with XLA")
    train.add_argument("--strategy", default="none", choices=["none", "mirrored", "multi_worker"],
                       help="tf.distribute strategy: mirrored (all local devices) or multi_worker "
                       "(the cluster in TF_CONFIG; worker 0 writes the outputs); --batch-size is "
                       "the global batch (default: %(default)s)")
    train.add_argument("--output", default="runs/lvae", help="output directory (default: %(default)s)")
    train.set_defaults(run=run_train)

    evaluate = commands.add_parser(
        "evaluate",
        help="test L_1 and L_k with standard errors, latent diagnostics, plots, a JSON report",
        description="Evaluate a saved model on a test set as in the paper: L_1 and the "
        "importance-weighted L_k per example (mean and standard error), KL and active units "
        "per layer, and PNG plots. Writes OUTPUT/report.json, OUTPUT/per_example.csv and the "
        "plots, and prints a summary.",
    )
    evaluate.add_argument("model", help="a .keras file written by `lvae train` or model.save")
    evaluate.add_argument("--dataset", default="mnist_5k", choices=data.list_datasets(),
                          help="the model's dataset (default: %(default)s)")
    evaluate.add_argument("--data-dir", default=None,
                          help="directory with the raw files (or set KERAS_LVAE_DATA_DIR)")
    evaluate.add_argument("--split", default="test", choices=["test", "validation"])
    evaluate.add_argument("--validation-size", type=_non_negative_int, default=0,
                          help="training images held out as the validation split")
    evaluate.add_argument("--samples", type=_positive_int, default=5000,
                          help="importance samples k for L_k (default: %(default)s, the paper's)")
    evaluate.add_argument("--max-examples", type=_positive_int, default=None,
                          help="evaluate only the first N examples of the split")
    evaluate.add_argument("--batch-size", type=_positive_int, default=100,
                          help="examples per log-likelihood batch (default: %(default)s)")
    evaluate.add_argument("--chunk-size", type=_positive_int, default=None,
                          help="importance samples per pass (default: about 4,096 rows a pass)")
    evaluate.add_argument("--bn-statistics", default="moving", choices=["moving", "recompute"],
                          help="batch-norm statistics: the moving averages saved with the model, "
                          "or recomputed in one training-mode pass over the training split (the "
                          "paper's protocol) (default: %(default)s)")
    evaluate.add_argument("--history", default=None,
                          help="history CSV for the training curves (default: history.csv next "
                          "to MODEL, if present)")
    evaluate.add_argument("--no-plots", action="store_true", help="write the report only")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the prior-sample plot")
    evaluate.add_argument("--jit-compile", action="store_true",
                          help="compile the log-likelihood pass with XLA")
    evaluate.add_argument("--output", default=None,
                          help="output directory (default: MODEL's directory/evaluation)")
    evaluate.set_defaults(run=run_evaluate)

    export = commands.add_parser(
        "export",
        help="write a TF Serving SavedModel (signatures score, encode, reconstruct, decode, "
        "generate)",
        description="Export a saved model for TF Serving as BASE_DIR/NAME/VERSION, written to a "
        "temporary directory and renamed; an existing version is never overwritten.",
    )
    export.add_argument("model", help="a .keras file written by `lvae train` or model.save")
    export.add_argument("--name", required=True,
                        help="the model's name in TF Serving (a directory under --base-dir)")
    export.add_argument("--version", type=_positive_int, default=None,
                        help="version number (default: the next free one, 1 for a new name)")
    export.add_argument("--base-dir", default="saved_models",
                        help="directory holding the served models (default: %(default)s)")
    export.set_defaults(run=run_export)
    return parser


def _write_atomic(path, text):
    with atomic_write(path) as file:
        file.write(text)


def _csv_text(columns):
    """CSV of equal-length columns given as {name: values}."""
    lines = [",".join(columns)]
    lines += [",".join(repr(float(v)) for v in row) for row in zip(*columns.values())]
    return "\n".join(lines) + "\n"


def read_history_csv(path):
    """The {metric: [values per epoch]} dict of a history CSV written by `lvae train`."""
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else [])}


def _strategy(name):
    """(strategy, whether this process writes the outputs) for --strategy."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(), True
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy multi_worker needs the cluster in the TF_CONFIG "
                             "environment variable (see the README)")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        config = json.loads(os.environ["TF_CONFIG"])
        task = config.get("task", {})
        has_chief = bool(config.get("cluster", {}).get("chief"))
        chief = task.get("type") == "chief" or (
            not has_chief and task.get("type") == "worker" and task.get("index") == 0)
        return strategy, chief
    return tf.distribute.get_strategy(), True


def run_train(args):
    if len(args.latent_dims) != len(args.hidden_dims):
        raise ValueError(
            f"--hidden-dims needs one width per latent layer ({len(args.latent_dims)}), "
            f"received {len(args.hidden_dims)}"
        )
    # Our pipelines shuffle themselves; Keras' note about fit(shuffle=True) is noise.
    warnings.filterwarnings("ignore", message="`shuffle=True` was passed")
    keras.utils.set_random_seed(args.seed)
    handler = logging.StreamHandler(sys.stdout)  # say where the data come from
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("keras_lvae").addHandler(handler)
    logging.getLogger("keras_lvae").setLevel(logging.INFO)
    strategy, chief = _strategy(args.strategy)
    load = dict(data_dir=args.data_dir, seed=args.seed)
    train_ds = data.load_dataset(args.dataset, "train", batch_size=args.batch_size, **load)
    test_ds = data.load_dataset(args.dataset, "test", batch_size=args.batch_size, **load)
    if args.strategy == "multi_worker":  # each worker takes its share of every global batch
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        train_ds, test_ds = train_ds.with_options(options), test_ds.with_options(options)
    steps_per_epoch = int(train_ds.cardinality())
    if steps_per_epoch == 0:
        raise ValueError(f"--batch-size {args.batch_size} is larger than the training set")
    warmup_epochs = args.warmup_epochs if args.warmup_epochs is not None else args.epochs // 10
    num_test = int(sum(int(b.shape[0]) for b in test_ds))
    print(f"{args.dataset}: {steps_per_epoch} steps of {args.batch_size} images per epoch, "
          f"{num_test} test images, warm-up over {warmup_epochs} epochs")
    likelihood = args.likelihood or ("gaussian" if args.dataset == "norb" else "bernoulli")

    with strategy.scope():
        model = keras_lvae.LadderVAE(
            latent_dims=args.latent_dims,
            hidden_dims=args.hidden_dims,
            inference=args.inference,
            likelihood=likelihood,
            batch_norm=not args.no_batch_norm,
            warmup_steps=warmup_epochs * steps_per_epoch,
            seed=args.seed,
        )
        model.compile(optimizer=keras.optimizers.Adam(args.learning_rate),
                      jit_compile=args.jit_compile)
    history = model.fit(train_ds, validation_data=test_ds, epochs=args.epochs,
                        verbose=1 if sys.stdout.isatty() else 2)  # one line per epoch in logs

    result = model.evaluate(test_ds, return_dict=True, verbose=0)  # every worker takes part
    print(f"test L_1 (ELBO): {-float(np.ravel(result['nelbo'])[0]):.2f} nats")
    if not chief:
        print("not the chief worker: worker 0 writes the outputs")
        return 0
    if args.eval_samples:
        bound = keras_lvae.log_likelihood(model, test_ds, num_samples=args.eval_samples)
        print(f"test L_{args.eval_samples}: {np.mean(bound):.2f} nats")

    os.makedirs(args.output, exist_ok=True)
    _write_atomic(os.path.join(args.output, "history.csv"),
                  _csv_text({"epoch": range(1, args.epochs + 1), **history.history}))
    path = os.path.join(args.output, "model.keras")
    partial = os.path.join(args.output, ".model.partial.keras")  # Keras wants the suffix
    model.save(partial)
    os.replace(partial, path)  # never leave a half-written model.keras
    print(f"saved {path}")
    return 0


def _load_ladder_vae(path):
    """The LadderVAE saved at `path`, or a ValueError naming MODEL."""
    if not os.path.isfile(path):
        raise ValueError(f"MODEL: no such file {path!r}")
    model = keras.saving.load_model(path)
    if not isinstance(model, keras_lvae.LadderVAE):
        raise ValueError(f"MODEL: expected a saved LadderVAE, received a {type(model).__name__}")
    return model


def _versions():
    names = ["keras-lvae", "keras", "tensorflow", "tensorflow-probability", "numpy", "matplotlib"]
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def run_evaluate(args):
    from keras_lvae import evaluation, plots

    started = time.perf_counter()
    if args.history and not os.path.isfile(args.history):
        raise ValueError(f"--history: no such file {args.history!r}")
    model = _load_ladder_vae(args.model)
    output = args.output or os.path.join(os.path.dirname(os.path.abspath(args.model)), "evaluation")
    os.makedirs(output, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    binarize = None if model.likelihood == "bernoulli" else False  # the dataset's protocol
    images, labels = data.load_evaluation_arrays(
        args.dataset, args.split, data_dir=args.data_dir, validation_size=args.validation_size,
        binarize=binarize)
    if args.max_examples is not None:
        images = images[:args.max_examples]
        labels = None if labels is None else labels[:args.max_examples]
    if images.shape[1:] != model.feature_shape:
        raise ValueError(f"--dataset {args.dataset} has images of shape {images.shape[1:]}, but the "
                         f"model was trained on {model.feature_shape}")
    timings = {}
    if args.bn_statistics == "recompute":
        start = time.perf_counter()
        train_ds = data.load_dataset(args.dataset, "train", batch_size=256, shuffle=False,
                                     data_dir=args.data_dir, seed=args.seed,
                                     validation_size=args.validation_size, binarize=binarize)
        evaluation.recompute_batch_norm_statistics(model, train_ds)
        timings["batch_norm_statistics"] = time.perf_counter() - start

    start = time.perf_counter()
    bounds = evaluation.bound_report(model, images, num_samples=args.samples,
                                     batch_size=args.batch_size, chunk_size=args.chunk_size,
                                     jit_compile=args.jit_compile)
    timings["log_likelihood"] = time.perf_counter() - start
    start = time.perf_counter()
    layers = evaluation.latent_diagnostics(model, images, batch_size=args.batch_size)
    timings["latent_diagnostics"] = time.perf_counter() - start

    written = {}
    if not args.no_plots:
        start = time.perf_counter()
        history_path = args.history or os.path.join(os.path.dirname(os.path.abspath(args.model)),
                                                    "history.csv")
        shown = images[:2000]  # enough points for the PCA scatter
        figures = {
            "prior_samples": lambda p: plots.plot_prior_samples(model, p, seed=args.seed),
            "reconstructions": lambda p: plots.plot_reconstructions(model, images, p),
            "kl_per_layer": lambda p: plots.plot_kl_per_layer(layers, p),
            "kl_per_unit": lambda p: plots.plot_kl_heatmaps(layers, p),
            "latent_pca": lambda p: plots.plot_latent_pca(
                model, shown, p, labels=None if labels is None else labels[:2000]),
        }
        if os.path.isfile(history_path):
            history = read_history_csv(history_path)
            figures["training_curves"] = lambda p: plots.plot_training_curves(history, p)
        for name, draw in figures.items():
            draw(os.path.join(output, f"{name}.png"))
            written[name] = f"{name}.png"
        timings["plots"] = time.perf_counter() - start
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
            "jit_compile": args.jit_compile, "seed": args.seed, "active_unit_threshold": 0.01,
        },
        "model_config": {key: value for key, value in model.get_config().items()
                         if key not in ("name", "trainable", "dtype")},
        "log_likelihood": {"L_1": bounds["L_1"], f"L_{k}": bounds["L_k"],
                           "bound_gap": bounds["bound_gap"], "units": "nats"},
        "latent_layers": [
            {"layer": i + 1, "units": len(layer["kl_per_unit"]), "kl": layer["kl"],
             "active_units_kl": layer["active_units_kl"],
             "active_units_cov": layer["active_units_cov"],
             "kl_per_unit": layer["kl_per_unit"].tolist(),
             "posterior_mean_variance": layer["posterior_mean_variance"].tolist()}
            for i, layer in enumerate(layers)
        ],
        "plots": written,
        "per_example": "per_example.csv",
        "timing_seconds": timings,
        "versions": _versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    _write_atomic(os.path.join(output, "per_example.csv"), _csv_text(
        {"L_1": bounds["per_example_L_1"], f"L_{k}": bounds["per_example_L_k"]}))
    _write_atomic(os.path.join(output, "report.json"), json.dumps(report, indent=2) + "\n")

    def line(name, summary):
        return f"{name:>7} {summary['mean']:9.2f} +- {summary['standard_error']:.2f} nats"

    print(f"{args.dataset} {args.split}: {bounds['num_examples']} examples, k = {k}, "
          f"batch-norm statistics: {args.bn_statistics}, {timings['log_likelihood']:.0f} s")
    print(line("L_1", bounds["L_1"]))
    print(line(f"L_{k}", bounds["L_k"]))
    print(line("gap", bounds["bound_gap"]))
    for i, layer in enumerate(layers):
        print(f"z_{i + 1}: KL {layer['kl']:6.2f} nats, active units "
              f"{layer['active_units_kl']}/{len(layer['kl_per_unit'])} (KL > 0.01), "
              f"{layer['active_units_cov']} (Cov > 0.01)")
    print(f"wrote {os.path.join(output, 'report.json')}, per_example.csv and {len(written)} plots")
    return 0


def run_export(args):
    from keras_lvae.export import SIGNATURES, export_saved_model

    if not args.name or args.name in (".", "..") or os.sep in args.name:
        raise ValueError(f"--name: expected a plain directory name, received {args.name!r}")
    model = _load_ladder_vae(args.model)
    try:
        path = export_saved_model(model, os.path.join(args.base_dir, args.name), args.version)
    except FileExistsError as error:
        raise ValueError(str(error)) from None
    print(f"exported {args.model} to {path} (signatures: {', '.join(SIGNATURES)}; "
          "serving_default = score)")
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    # Bad data or arguments, or a missing optional extra: a message, not a traceback.
    except (ValueError, ImportError) as error:
        print(f"lvae {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
