"""The scripts behind docs/results.md: snapshot_to_model.py and collect_results.py."""

import importlib.util
import json
import shutil

import keras
import numpy as np
import pytest

import keras_lvae_cli
from keras_lvae import plots, training
from keras_lvae._files import read_csv

from .conftest import REPO
from .test_training import TINY


def _script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished 2-epoch run of TINY (mnist_5k), evaluated with k = 4 on 40 test digits."""
    workdir = tmp_path_factory.mktemp("runs") / "depth2_ladder"
    training.train(TINY, str(workdir), log=lambda message: None)
    assert keras_lvae_cli.main(["evaluate", str(workdir / "model.keras"), "--samples", "4",
                                "--max-examples", "40", "--no-plots"]) == 0
    return workdir


def test_snapshot_to_model_rebuilds_the_saved_model(run):
    output, epoch = _script("snapshot_to_model").snapshot_to_model(str(run), "checkpoint.npz")
    assert epoch == 2 and output == str(run / "checkpoint.keras")
    rebuilt, saved = (keras.saving.load_model(p) for p in (output, run / "model.keras"))
    def names(model):  # without the model's own (uniquified) name
        return [v.path.split("/", 1)[-1] for v in model.variables]
    assert names(rebuilt) == names(saved)
    for a, b in zip(rebuilt.variables, saved.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    assert int(rebuilt.optimizer.iterations.numpy()) == int(saved.optimizer.iterations.numpy())
    with pytest.raises(ValueError, match="checkpoint: expected an existing .npz file"):
        _script("snapshot_to_model").snapshot_to_model(str(run), "missing.npz")


def test_collect_results_quotes_reports_and_histories(run, tmp_path, capsys):
    runs = tmp_path / "study"
    shutil.copytree(run, runs / "depth2_ladder")
    # The long run's trajectory: its history plus one evaluated snapshot (epoch 2).
    shutil.copytree(run, runs / "lvae5_long")
    shutil.copytree(run / "evaluation", runs / "lvae5_long" / "snapshots" / "epoch_2_evaluation")
    _script("collect_results").main(["--runs", str(runs), "--output", str(tmp_path / "out")])
    out = capsys.readouterr().out

    report = json.loads((run / "evaluation" / "report.json").read_text())
    l1, l4 = report["log_likelihood"]["L_1"], report["log_likelihood"]["L_4"]
    row = next(line for line in out.splitlines() if line.startswith("| depth2_ladder |"))
    assert f"| {l1['mean']:.2f} ± {l1['standard_error']:.2f} |" in row
    assert f"| {l4['mean']:.2f} ± {l4['standard_error']:.2f} (k=4) |" in row
    history = read_csv(run / "history.csv")
    samples_per_second = 4500 // 500 * 500 / float(np.median(history["seconds"]))
    assert f"{samples_per_second:,.0f} samples/s" in row
    assert f"| LVAE+BN+WU, test L_k | {l4['mean']:.2f} |" in out  # the sweep's one run
    assert "| VAE+BN+WU, test L_k | – |" in out
    assert (f"| 2 | {sum(history['seconds']) / 3600:.2f} | {-history['val_nelbo'][-1]:.2f} | "
            f"{l4['mean']:.2f} ± {l4['standard_error']:.2f} (k=4, 40 digits) |") in out
    assert json.loads((tmp_path / "out" / "depth2_ladder_report.json").read_text()) == report
    assert plots.png_size(tmp_path / "out" / "depth_sweep.png") == (500, 350)
    assert plots.png_size(tmp_path / "out" / "trajectory.png") == (600, 350)


def test_paired_difference_matches_numpy(tmp_path):
    """Per-digit L_k differences of two evaluations: mean and standard error (ddof 1)."""
    rng = np.random.default_rng(0)
    base = rng.normal(-85, 10, size=200)
    values = {"a": base + rng.normal(0.3, 0.5, size=200), "b": base}
    runs = {}
    for name, column in values.items():
        directory = tmp_path / name / "evaluation"
        directory.mkdir(parents=True)
        (directory / "per_example.csv").write_text(
            "L_1,L_50\n" + "".join(f"{v - 5},{v}\n" for v in column))
        runs[name] = {"name": name, "directory": str(tmp_path / name),
                      "report": {"settings": {"samples": 50}, "num_examples": 200}}
    collect = _script("collect_results")
    mean, error = collect.paired_difference(runs["a"], runs["b"])
    differences = values["a"] - values["b"]
    assert mean == pytest.approx(differences.mean(), abs=1e-9)
    assert error == pytest.approx(differences.std(ddof=1) / np.sqrt(200), rel=1e-9)
    runs["b"]["report"]["settings"]["samples"] = 100
    with pytest.raises(ValueError, match="a and b were evaluated differently"):
        collect.paired_difference(runs["a"], runs["b"])
