import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_lvae
from keras_lvae import cli, plots

LVAE = [sys.executable, "-m", "keras_lvae.cli"]
TINY = ["--latent-dims", "8,4", "--hidden-dims", "64,32", "--batch-size", "500"]


def run(*args, env=None):
    return subprocess.run([*LVAE, *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def test_help_names_the_commands():
    result = run("--help")
    assert result.returncode == 0 and "train" in result.stdout
    for command, option in [("train", "--dataset"), ("evaluate", "--bn-statistics")]:
        command_help = run(command, "--help")
        assert command_help.returncode == 0 and option in command_help.stdout


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """`lvae train` for 2 epochs on the shipped digits: (output directory, result)."""
    output = tmp_path_factory.mktemp("run")
    result = run("train", "--epochs", "2", "--eval-samples", "5", "--output", str(output), *TINY)
    return output, result


def test_train_on_shipped_digits_saves_a_loadable_model(trained_run):
    output, result = trained_run
    assert result.returncode == 0, result.stderr
    assert "Epoch 2/2" in result.stdout and "val_nelbo" in result.stdout
    assert "test L_1 (ELBO)" in result.stdout and "test L_5:" in result.stdout
    model = keras.saving.load_model(output / "model.keras")
    assert isinstance(model, keras_lvae.LadderVAE) and model.latent_dims == (8, 4)
    # No partial file left; the history has one row per epoch.
    assert sorted(p.name for p in output.iterdir()) == ["history.csv", "model.keras"]
    history = cli.read_history_csv(output / "history.csv")
    assert history["epoch"] == [1.0, 2.0] and len(history["val_nelbo"]) == 2
    assert f"val_nelbo: {history['val_nelbo'][1]:.4f}" in result.stdout


REPORT_FIELDS = {"model", "dataset", "split", "num_examples", "settings", "model_config",
                 "log_likelihood", "latent_layers", "plots", "per_example", "timing_seconds",
                 "versions", "created"}
LAYER_FIELDS = {"layer", "units", "kl", "active_units_kl", "active_units_cov", "kl_per_unit",
                "posterior_mean_variance"}
PLOTS = {"prior_samples", "reconstructions", "kl_per_layer", "kl_per_unit", "latent_pca",
         "training_curves"}


@pytest.mark.parametrize("bn_statistics", ["moving", "recompute"])
def test_evaluate_writes_report_and_plots(trained_run, tmp_path, bn_statistics):
    output, _ = trained_run
    result = run("evaluate", str(output / "model.keras"), "--samples", "20", "--max-examples",
                 "150", "--bn-statistics", bn_statistics, "--output", str(tmp_path))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report) == REPORT_FIELDS
    assert report["num_examples"] == 150 and report["settings"]["bn_statistics"] == bn_statistics
    bounds = report["log_likelihood"]
    assert set(bounds) == {"L_1", "L_20", "bound_gap", "units"}
    assert bounds["L_20"]["mean"] > bounds["L_1"]["mean"]
    assert [set(layer) for layer in report["latent_layers"]] == [LAYER_FIELDS] * 2
    assert [layer["units"] for layer in report["latent_layers"]] == [8, 4]
    assert set(report["plots"]) == PLOTS
    for name in report["plots"].values():
        assert plots.png_size(tmp_path / name)[0] >= 600
    assert report["versions"]["tensorflow"] and report["versions"]["keras-lvae"]
    per_example = np.loadtxt(tmp_path / "per_example.csv", delimiter=",", skiprows=1)
    assert per_example.shape == (150, 2)
    assert per_example[:, 1].mean() == pytest.approx(bounds["L_20"]["mean"])
    assert f"L_20 {bounds['L_20']['mean']:9.2f}" in result.stdout


def test_recomputed_batch_norm_statistics_change_the_bound(trained_run, tmp_path):
    output, _ = trained_run
    bounds = {}
    for mode in ("moving", "recompute"):
        assert cli.main(["evaluate", str(output / "model.keras"), "--samples", "2",
                         "--max-examples", "50", "--no-plots", "--bn-statistics", mode,
                         "--output", str(tmp_path / mode)]) == 0
        report = json.loads((tmp_path / mode / "report.json").read_text())
        bounds[mode] = report["log_likelihood"]["L_1"]["mean"]
        assert report["plots"] == {}
    assert bounds["moving"] != bounds["recompute"]


@pytest.mark.parametrize("args, message", [
    (["missing.keras"], "no such file"),
    (["{model}", "--history", "missing.csv"], "--history"),
    (["{model}", "--samples", "0"], "--samples"),
])
def test_evaluate_bad_arguments(trained_run, tmp_path, capsys, args, message):
    output, _ = trained_run
    args = [a.format(model=output / "model.keras") for a in args]
    try:
        code = cli.main(["evaluate", *args, "--max-examples", "5", "--output", str(tmp_path)])
    except SystemExit as exit:  # argparse's own refusals
        code = exit.code
    assert code == 2 and message in capsys.readouterr().err


def test_train_on_real_mnist_files(tmp_path, mnist_dir):
    result = run("train", "--dataset", "mnist", "--data-dir", str(mnist_dir), "--epochs", "1",
                 "--eval-samples", "0", "--inference", "bottom_up", "--output", str(tmp_path),
                 *TINY)
    assert result.returncode == 0, result.stderr
    assert "120 steps of 500 images per epoch, 10000 test images" in result.stdout
    assert "local files in" in result.stdout
    assert (tmp_path / "model.keras").exists()


@pytest.mark.parametrize("args, message", [
    (["--latent-dims", "8,x"], "--latent-dims"),
    (["--epochs", "0"], "--epochs"),
    (["--dataset", "cifar"], "--dataset"),
    (["--latent-dims", "8,4", "--hidden-dims", "64"], "--hidden-dims"),
])
def test_bad_arguments_are_refused(args, message, tmp_path, capsys):
    try:
        code = cli.main(["train", "--output", str(tmp_path), *args])
    except SystemExit as exit:  # argparse's own refusals
        code = exit.code
    assert code == 2 and message in capsys.readouterr().err


def test_missing_mnist_directory_gives_a_message_not_a_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("KERAS_LVAE_DATA_DIR", raising=False)
    code = cli.main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "none")])
    assert code == 2 and "not a directory" in capsys.readouterr().err


def test_mnist_serving_recipe_commands_parse():
    """The recipe that made saved_models/mnist_lvae/1 builds valid `lvae` commands."""
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "..", "recipes", "mnist_serving.py")
    spec = importlib.util.spec_from_file_location("recipe", path)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    stages = recipe.commands("DATA", "WORK", "BASE")
    assert list(stages) == ["train", "evaluate", "export"]
    for arguments in stages.values():
        args = cli.build_parser().parse_args(arguments)
        assert args.command in stages
    train = cli.build_parser().parse_args(stages["train"])
    assert (train.dataset, train.epochs, train.warmup_epochs, train.batch_size) == (
        "mnist", 200, 20, 256)
