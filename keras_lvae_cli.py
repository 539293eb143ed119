"""The `lvae` command line: argument parsing only, so `lvae --help` needs no TensorFlow.

The commands themselves live in `keras_lvae.commands` and are imported only
when one runs. This module sits outside the `keras_lvae` package on purpose:
importing the package registers its Keras classes, which imports TensorFlow
(seconds), and `lvae --help` should answer at once.

    lvae train recipes/quickstart.py --workdir runs/quickstart
    lvae evaluate runs/quickstart/model.keras --samples 5000
    lvae sample runs/quickstart/model.keras
    lvae export runs/quickstart/model.keras --name quickstart
    lvae tune recipes/tune_mnist.py
"""

import argparse
import sys

# keras_lvae.data.list_datasets(), kept here so help needs no import (a test checks they agree).
DATASETS = ("binarized_mnist", "fashion_mnist", "mnist", "mnist_5k", "norb", "omniglot")


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


def _add_recipe_arguments(parser, workdir_help):
    parser.add_argument("recipe", metavar="RECIPE",
                        help="a recipe file, such as recipes/quickstart.py (a Python file "
                        "defining CONFIG = keras_lvae.config.Config(...))")
    parser.add_argument("--set", dest="settings", action="append", default=[],
                        metavar="SECTION.FIELD=VALUE",
                        help="override one configuration value, type-checked; repeatable. "
                        "Sections: data, model, train, fine_tune, tune. Examples: "
                        "train.epochs=3, model.latent_dims=32,16, model.batch_norm=false, "
                        "data.data_dir=none")
    parser.add_argument("--workdir", default=None, help=workdir_help)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="lvae", description="Ladder Variational Autoencoders on Keras 3: train from "
        "recipes, evaluate, sample, export for TF Serving, tune with KerasTuner.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train", help="train (or resume) a recipe's run",
        description="Train the model of RECIPE. WORKDIR receives config.json (the resolved "
        "configuration), history.csv, tensorboard/ (scalars including per-layer KL, and prior "
        "samples), checkpoint.npz (after every epoch) and model.keras. Running the same "
        "command again resumes an interrupted run from its last finished epoch; "
        "--set train.epochs=N on a finished run trains it on to epoch N.")
    _add_recipe_arguments(train, "run directory (default: runs/<recipe name>)")

    tune = commands.add_parser(
        "tune", help="search architectures and learning rates with KerasTuner, then retrain "
        "the best",
        description="Random search over RECIPE's `tune` section (depth, widths, latent sizes, "
        "learning rate, warm-up, inference) minimising val_nelbo, then train the best "
        "configuration for tune.retrain_epochs in WORKDIR/best (as `lvae train` would). Run "
        "again, it reuses the finished trials. Needs the tuning extra: "
        'pip install "keras-lvae[tuning]".')
    _add_recipe_arguments(tune, "tuning directory (default: runs/<recipe name>)")

    evaluate = commands.add_parser(
        "evaluate",
        help="test L_1 and L_k with standard errors, latent diagnostics, plots, a JSON report",
        description="Evaluate a saved model on a test set as in the paper: L_1 and the "
        "importance-weighted L_k per example (mean and standard error), KL and active units "
        "per layer, and PNG plots. Writes OUTPUT/report.json, OUTPUT/per_example.csv and the "
        "plots, and prints a summary.")
    evaluate.add_argument("model", help="a .keras file written by `lvae train` or model.save")
    evaluate.add_argument("--dataset", default=None, choices=DATASETS,
                          help="the model's dataset (default: the one in the config.json "
                          "next to MODEL)")
    evaluate.add_argument("--data-dir", default=None,
                          help="directory with the raw files (default: the config.json's, "
                          "else KERAS_LVAE_DATA_DIR)")
    evaluate.add_argument("--split", default="test", choices=["test", "validation"])
    evaluate.add_argument("--validation-size", type=_non_negative_int, default=None,
                          help="training images held out as the validation split (default: "
                          "the config.json's, else 0)")
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

    sample = commands.add_parser(
        "sample", help="a PNG grid of samples from the model's prior",
        description="Draw ancestral samples z_L ~ N(0, I), z_i ~ p(z_i | z_i+1) and write the "
        "means of p(x | z_1) as a PNG grid (10 per row, 800 x 800 px). Needs the plotting extra.")
    sample.add_argument("model", help="a .keras file written by `lvae train` or model.save")
    sample.add_argument("--num-samples", type=_positive_int, default=100,
                        help="images in the grid (default: %(default)s)")
    sample.add_argument("--seed", type=int, default=0,
                        help="the same seed gives the same images (default: %(default)s)")
    sample.add_argument("--output", default=None,
                        help="PNG path (default: samples.png next to MODEL)")

    export = commands.add_parser(
        "export",
        help="write a TF Serving SavedModel (signatures score, encode, reconstruct, decode, "
        "generate)",
        description="Export a saved model for TF Serving as BASE_DIR/NAME/VERSION, written to a "
        "temporary directory and renamed; an existing version is never overwritten.")
    export.add_argument("model", help="a .keras file written by `lvae train` or model.save")
    export.add_argument("--name", required=True,
                        help="the model's name in TF Serving (a directory under --base-dir)")
    export.add_argument("--version", type=_positive_int, default=None,
                        help="version number (default: the next free one, 1 for a new name)")
    export.add_argument("--base-dir", default="saved_models",
                        help="directory holding the served models (default: %(default)s)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        from keras_lvae import commands  # TensorFlow loads here, after parsing

        return getattr(commands, f"run_{args.command}")(args)
    # Bad data or arguments, or a missing optional extra: a message, not a traceback.
    except (ValueError, ImportError) as error:
        print(f"lvae {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
