"""The `lvae` command line: argument parsing and file checks, so that `lvae --help` and
mistakes (a missing recipe or model, `--set` without `=`) answer at once, before
TensorFlow is imported.

The commands themselves live in `keras_lvae.commands` and are imported only
when one runs. This module sits outside the `keras_lvae` package on purpose:
importing the package registers its Keras classes, which imports TensorFlow
(seconds). TensorFlow's start-up messages (oneDNN, CUDA, absl) are hidden
unless `--verbose` is given.

    lvae recipes
    lvae train quickstart --workdir runs/quickstart
    lvae evaluate runs/quickstart/model.keras --samples 5000
    lvae sample runs/quickstart/model.keras
    lvae export runs/quickstart/model.keras --name quickstart
    lvae tune recipes/tune_mnist.py
"""

import argparse
import ast
import contextlib
import difflib
import importlib.util
import logging
import os
import pathlib
import sys
import tempfile
import traceback

# Exit code of a command stopped by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130


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


def _non_negative_float(text):
    """An argparse type for finite numbers >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, received {text!r}")
    return value


def recipe_folders():
    """Where the shipped recipes are: inside the installed package (keras_lvae/recipes),
    or the checkout's recipes/ folder beside this file (an editable install).
    Found without importing keras_lvae, which would import TensorFlow."""
    spec = importlib.util.find_spec("keras_lvae")
    folders = [pathlib.Path(p) / "recipes" for p in (spec.submodule_search_locations or [])]
    folders.append(pathlib.Path(__file__).resolve().parent / "recipes")
    return [f for f in folders if f.is_dir()]


def shipped_recipes():
    """{name: path} of the recipes that ship with keras-lvae."""
    found = {}
    for folder in recipe_folders():
        for path in sorted(folder.glob("*.py")):
            if not path.name.startswith("_"):
                found.setdefault(path.stem, path)
    return found


def resolve_recipe(text):
    """The recipe file that RECIPE names: a path, or the name of a shipped recipe."""
    if os.path.isfile(text):
        return text
    shipped = shipped_recipes()
    name = text[:-3] if text.endswith(".py") else text
    if os.sep not in text and name in shipped:
        return str(shipped[name])
    close = difflib.get_close_matches(name, list(shipped), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(f"RECIPE: no such file or shipped recipe {text!r}; {hint}(shipped: "
                     f"{', '.join(shipped) or 'none found'}; `lvae recipes` lists them)")


def _summary(path):
    """The first line of a recipe's docstring, read without running it."""
    docstring = ast.get_docstring(ast.parse(pathlib.Path(path).read_text()))
    return (docstring or "").strip().splitlines()[0] if docstring else ""


def _add_recipe_arguments(parser, workdir_help):
    parser.add_argument("recipe", metavar="RECIPE",
                        help="a shipped recipe's name (`lvae recipes` lists them, e.g. "
                        "quickstart) or a recipe file (a Python file defining CONFIG = "
                        "keras_lvae.config.Config(...))")
    parser.add_argument("--set", dest="settings", action="append", default=[],
                        metavar="SECTION.FIELD=VALUE",
                        help="override one configuration value, type-checked; repeatable. "
                        "Sections: data, model, train, fine_tune, tune. Examples: "
                        "train.epochs=3, model.latent_dims=32,16, model.batch_norm=false, "
                        "data.data_dir=none")
    parser.add_argument("--workdir", default=None, help=workdir_help)
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="the folder with the dataset's files: the same as --set "
                        "data.data_dir=DIR (default: the recipe's, else KERAS_LVAE_DATA_DIR, "
                        "else tfds)")


MODEL_HELP = ("a run folder (its model.keras), a .keras file, or a checkpoint or kept snapshot "
              "(.npz) inside a run folder")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="lvae", description="Ladder Variational Autoencoders on Keras 3: train from "
        "recipes, evaluate, sample, export for TF Serving, tune with KerasTuner.")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up messages (hidden by default) and the "
                             "traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("recipes", help="list the recipes that ship with keras-lvae",
                        description="The recipes that ship with keras-lvae: pass a name to "
                        "`lvae train` or `lvae tune`, or copy the file to change it.")

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
    evaluate.add_argument("model", help=MODEL_HELP + ", or an exported SavedModel version "
                          "folder (L_1 and L_k through its score signature; needs --dataset)")
    evaluate.add_argument("--dataset", default=None,
                          help="the model's dataset, a name of keras_lvae.data.list_datasets() "
                          "(default: the one in the run's config.json)")
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
                          help="evaluate N examples of the split drawn at random with --seed "
                          "(the first N may not be representative)")
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
    evaluate.add_argument("--seed", type=int, default=0,
                          help="seed of --max-examples' subset and of the prior-sample plot")
    evaluate.add_argument("--jit-compile", action="store_true",
                          help="compile the log-likelihood pass with XLA")
    evaluate.add_argument("--output", default=None,
                          help="output directory (default: MODEL's directory/evaluation)")
    evaluate.add_argument("--ood-dataset", default=None,
                          help="also score this dataset's test split as out-of-distribution "
                          "data: Havtorn et al.'s likelihood ratios beside the likelihood, with "
                          "AUROC, AUPRC and FPR95 (ood_report.json and two plots)")
    evaluate.add_argument("--ood-data-dir", default=None,
                          help="directory with --ood-dataset's files (default: "
                          "KERAS_LVAE_DATA_DIR, else tfds)")
    evaluate.add_argument("--ood-samples", type=_positive_int, default=100,
                          help="importance samples of each out-of-distribution bound "
                          "(default: %(default)s)")
    evaluate.add_argument("--classify-samples", type=int, default=100,
                          help="a conditional model (model.num_classes): the Bayes classifier's "
                          "importance samples of each class's L_k; 0 skips it (default: "
                          "%(default)s)")

    sample = commands.add_parser(
        "sample", help="a PNG grid of samples from the model's prior",
        description="Draw ancestral samples z_L ~ N(0, I), z_i ~ p(z_i | z_i+1) and write the "
        "means of p(x | z_1) as a PNG grid (10 per row, 800 x 800 px). Needs the plotting extra.")
    sample.add_argument("model", help=MODEL_HELP)
    sample.add_argument("--num-samples", type=_positive_int, default=100,
                        help="images in the grid (default: %(default)s)")
    sample.add_argument("--seed", type=int, default=0,
                        help="the same seed gives the same images (default: %(default)s)")
    sample.add_argument("--output", default=None,
                        help="PNG path (default: samples.png next to MODEL)")
    sample.add_argument("--temperature", type=_non_negative_float, default=1.0,
                        help="scale of the prior's standard deviation at every layer (default: "
                        "%(default)s; 0 draws the prior means)")
    sample.add_argument("--readjust-bn", action="store_true",
                        help="first give the generative path's batch norms the statistics of "
                        "samples at --temperature (NVAE's readjustment; 20 x 256 samples)")
    sample.add_argument("--layer", type=_positive_int, default=None,
                        help="instead: what layer LAYER controls (rows fix the layers above, "
                        "columns resample LAYER, layers below at their means)")
    sample.add_argument("--label", type=int, default=None,
                        help="a conditional model (model.num_classes): draw every sample from "
                        "this class (default: a grid of one row of 10 per class)")

    export = commands.add_parser(
        "export",
        help="write a TF Serving SavedModel (signatures score, encode, reconstruct, decode, "
        "generate, generate_at_temperature, interpolate), or ONNX graphs or a LiteRT file",
        description="Export a saved model for TF Serving as BASE_DIR/NAME/VERSION, or with "
        "--format onnx as the folder BASE_DIR/NAME.onnx (decode, encode, generate, score) and "
        "with --format litert as BASE_DIR/NAME.tflite; written to a temporary path and "
        "renamed; nothing is ever overwritten.")
    export.add_argument("model", help=MODEL_HELP)
    export.add_argument("--name", required=True,
                        help="the model's name in TF Serving (a directory under --base-dir)")
    export.add_argument("--format", default="tf_saved_model",
                        choices=["tf_saved_model", "onnx", "litert"],
                        help="tf_saved_model for TF Serving; onnx (needs keras-lvae[onnx]) and "
                        "litert run without TensorFlow, sampling from noise the caller passes "
                        "(default: %(default)s)")
    export.add_argument("--version", type=_positive_int, default=None,
                        help="tf_saved_model's version number (default: the next free one, 1 "
                        "for a new name)")
    export.add_argument("--base-dir", default="saved_models",
                        help="directory holding the served models (default: %(default)s)")
    export.add_argument("--bn-statistics", default="moving", choices=["moving", "recompute"],
                        help="batch-norm statistics to bake in: the moving averages, or those "
                        "`lvae evaluate --bn-statistics recompute` uses (one pass over the "
                        "training split, same --seed) (default: %(default)s)")
    export.add_argument("--dataset", default=None,
                        help="with recompute: the training data (default: the run's config.json)")
    export.add_argument("--data-dir", default=None,
                        help="with recompute: the raw files (default: the run's config.json)")
    export.add_argument("--validation-size", type=_non_negative_int, default=None,
                        help="with recompute: as in lvae evaluate")
    export.add_argument("--seed", type=int, default=0,
                        help="with recompute: as in lvae evaluate (default: %(default)s)")
    return parser


def setting_keys():
    """Every `--set` key (`train.epochs`, ...), read from keras_lvae/config.py's dataclasses
    without importing it (it imports TensorFlow); a test checks it equals config.keys()."""
    spec = importlib.util.find_spec("keras_lvae")
    path = pathlib.Path(spec.submodule_search_locations[0]) / "config.py"
    classes = {node.name: [item for item in node.body if isinstance(item, ast.AnnAssign)]
               for node in ast.parse(path.read_text()).body if isinstance(node, ast.ClassDef)}
    return [f"{section.target.id}.{field.target.id}" for section in classes["Config"]
            for field in classes[section.annotation.id]]


def _check_settings(argv):
    """Refuse `--set KEY VALUE` (a space instead of `=`) with the right form, and unknown
    keys with the closest known one, before TensorFlow loads."""
    settings = [value for option, value in zip(argv, argv[1:]) if option == "--set"]
    for value in settings:
        if "=" not in value:
            return f"--set {value}: expected SECTION.FIELD=VALUE with `=`, such as --set " \
                   f"{value if '.' in value else 'train.epochs'}=3"
    keys = setting_keys() if settings else []
    for value in settings:
        key = value.partition("=")[0].strip()
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=1)
            hint = f"did you mean `{close[0]}`?" if close else f"known keys: {', '.join(keys)}"
            return f"--set {value}: unknown key `{key}`; {hint}"
    return None


def _check_files(args):
    """Check RECIPE or MODEL before TensorFlow is imported; fills args.recipe's path."""
    if args.command in ("train", "tune"):
        args.recipe = resolve_recipe(args.recipe)
    elif args.command in ("evaluate", "sample", "export") and not os.path.exists(args.model):
        raise ValueError(f"MODEL: no such file or folder {args.model!r}")


@contextlib.contextmanager
def _quiet_native_logs(quiet):
    """Hide what TensorFlow's C++ side prints on stderr while it loads and finds devices
    (oneDNN notes, CUDA stubs, a cuInit error without a GPU); shown again if loading fails."""
    if not quiet:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    problem = _check_settings(argv)
    if problem:
        print(f"lvae: error: {problem}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        _check_files(args)
    except ValueError as error:
        print(f"lvae {args.command}: error: {error}", file=sys.stderr)
        return 2
    if args.command in ("train", "tune") and args.data_dir is not None:
        args.settings.append(f"data.data_dir={args.data_dir}")  # after --set: it wins
    if args.command == "recipes":
        for name, path in shipped_recipes().items():
            print(f"{name:<18} {_summary(path)}")
        return 0
    if not args.verbose:  # offline, tfds' downloads log every retry; our error says it all
        logging.getLogger("urllib3").setLevel(logging.ERROR)
    try:
        with _quiet_native_logs(not args.verbose):
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            import tensorflow as tf

            tf.config.list_physical_devices()  # device discovery prints too
            from keras_lvae import commands  # TensorFlow loads here, after parsing
        return getattr(commands, f"run_{args.command}")(args)
    # Bad data or arguments, or a missing optional extra: a message, not a traceback
    # (with --verbose the traceback too, for a bug report).
    except (ValueError, ImportError) as error:
        if args.verbose:
            traceback.print_exc()
        print(f"lvae {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupted:  # one line, no traceback
        print(f"\nlvae {args.command}: {interrupted or 'interrupted'}", file=sys.stderr)
        if args.command in ("train", "tune"):
            # On the way out TensorFlow's data iterators wait for their worker threads (14 s
            # seen in a colour run); what the run keeps is written already (atomically), and
            # its TensorBoard writers are closed, so leave at once.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(INTERRUPTED)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
