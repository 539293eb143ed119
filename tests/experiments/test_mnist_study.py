"""The scripts of experiments/mnist_study: collect_results.py, continue_saved_model.py and
mnist_study.sh."""

import importlib.util
import json
import os
import shutil
import subprocess

import keras
import numpy as np
import pytest

import keras_lvae
import keras_lvae_cli
from keras_lvae import config as config_lib
from keras_lvae import checkpoints, plots, training

from ..conftest import REPO
from ..test_training import TINY

STUDY = REPO / "experiments" / "mnist_study"


def _script(name):
    spec = importlib.util.spec_from_file_location(name, STUDY / f"{name}.py")
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


@pytest.mark.slow  # over 10 s
def test_a_checkpoint_is_the_saved_model_and_lvae_evaluates_it(run):
    """What replaced snapshot_to_model.py: the public `model_from_checkpoint` and `lvae
    evaluate CHECKPOINT` (the run's config.json gives the architecture and data)."""
    rebuilt, epoch = training.model_from_checkpoint(str(run / "checkpoint.npz"))
    saved = keras.saving.load_model(run / "model.keras")
    assert epoch == 2
    assert len(rebuilt.weights) == len(saved.weights)
    for a, b in zip(rebuilt.weights, saved.weights):
        assert a.path.split("/", 1)[1] == b.path.split("/", 1)[1]
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    assert keras_lvae_cli.main(["evaluate", str(run / "checkpoint.npz"), "--samples", "4",
                                "--max-examples", "40", "--no-plots"]) == 0
    report = json.loads((run / "checkpoint_evaluation" / "report.json").read_text())
    reference = json.loads((run / "evaluation" / "report.json").read_text())
    # The same model with other noise (the checkpoint keeps the generators' states): the
    # bounds agree within their standard errors.
    got, want = (r["log_likelihood"]["L_4"] for r in (report, reference))
    assert abs(got["mean"] - want["mean"]) < 2 * (got["standard_error"] + want["standard_error"])
    lone = run.parent / "lone.npz"
    shutil.copy(run / "checkpoint.npz", lone)
    with pytest.raises(ValueError, match="is not inside a run folder"):
        training.model_from_checkpoint(str(lone))


@pytest.mark.slow  # over 10 s
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
    history = training.read_history(run / "history.csv")
    samples_per_second = 4500 // 500 * 500 / float(np.median(history["seconds"]))
    assert f"{samples_per_second:,.0f} samples/s" in row
    assert f"| LVAE+BN+WU, test L_k | {l4['mean']:.2f} |" in out  # the sweep's one run
    assert "| VAE+BN+WU, test L_k | – |" in out
    assert (f"| 2 | {sum(history['seconds']) / 3600:.2f} | {-history['val_nelbo'][-1]:.2f} | "
            f"{l4['mean']:.2f} ± {l4['standard_error']:.2f} (k=4, 40 digits) |") in out
    archived = tmp_path / "out" / "archive" / "depth2_ladder"
    assert json.loads((archived / "evaluation" / "report.json").read_text()) == report
    assert (archived / "history.csv").read_text() == (run / "history.csv").read_text()
    assert (archived / "evaluation" / "per_example.csv").is_file()
    assert (tmp_path / "out" / "archive" / "lvae5_long" / "snapshots" / "epoch_2_evaluation" /
            "report.json").is_file()
    assert plots.png_size(tmp_path / "out" / "depth_sweep.png") == (500, 350)
    assert plots.png_size(tmp_path / "out" / "trajectory.png") == (600, 350)

    # The working directories gone, the archive gives the same rows; a run archived without
    # its history keeps its numbers and says so; the sweep's pair is compared digit by digit.
    (archived.parent / "depth2_bottom_up").mkdir()
    shutil.copytree(archived / "evaluation", archived.parent / "depth2_bottom_up" / "evaluation")
    (archived.parent / "depth2_bottom_up" / "config.json").write_text(
        (run / "config.json").read_text().replace('"ladder"', '"bottom_up"'))
    page = tmp_path / "results.md"
    page.write_text("# Results\n<!-- BEGIN depth -->\nold\n<!-- END depth -->\nkept\n"
                    "<!-- BEGIN nothing -->\nstays\n<!-- END nothing -->\n")
    _script("collect_results").main(["--runs", str(tmp_path / "gone"),
                                     "--output", str(tmp_path / "out"), "--markdown", str(page)])
    again = capsys.readouterr().out
    depth = next(block for block in again.split("\n\n") if block.startswith("| stochastic"))
    assert page.read_text() == (f"# Results\n<!-- BEGIN depth -->\n{depth}\n<!-- END depth -->"
                                "\nkept\n<!-- BEGIN nothing -->\nstays\n<!-- END nothing -->\n")
    assert row in again.splitlines()
    bottom_up = next(line for line in again.splitlines()
                     if line.startswith("| depth2_bottom_up |"))
    assert "| VAE+BN+WU | 2 | 2 | not archived |" in bottom_up
    assert "| depth2_ladder − depth2_bottom_up | LVAE+BN+WU − VAE+BN+WU | +0.00 ± 0.00 |" in again


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


@pytest.mark.slow  # over 10 s
def test_continue_saved_model_writes_a_resumable_checkpoint(run, tmp_path):
    """A run continued from an export: the export's weights, Adam's moments from the
    gradients (one step: m = g and v = g**2 after bias correction), the optimizer step of
    the given epoch; `training.train` then resumes after that epoch."""
    model = keras.saving.load_model(run / "model.keras")
    export_dir = keras_lvae.export_saved_model(model, str(tmp_path / "served"))
    config = config_lib.override(TINY, ["train.epochs=3", "train.eval_samples=0"])
    continue_saved_model = _script("continue_saved_model").continue_saved_model
    workdir = tmp_path / "continued"
    step = continue_saved_model(export_dir, config, str(workdir), epoch=2, moment_steps=1)
    assert step == 2 * 9  # mnist_5k: 4,500 digits in batches of 500

    restored = training.build_model(config, 9)
    restored.build((None, 28, 28, 1))
    training.compile_model(restored, config, 9)
    assert checkpoints.restore_checkpoint(restored, workdir / "checkpoint.npz") == 2
    for got, want in zip(restored.weights, model.weights):
        np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=got.path)
    optimizer = restored.optimizer
    assert int(optimizer.iterations.numpy()) == 18
    for variable in restored.trainable_variables:
        index = optimizer._get_variable_index(variable)
        m, v = optimizer._momentums[index].numpy(), optimizer._velocities[index].numpy()
        np.testing.assert_allclose(v, m ** 2, rtol=1e-4, atol=1e-12, err_msg=variable.path)
    assert any(np.abs(optimizer._momentums[i].numpy()).max() > 0
               for i in range(len(restored.trainable_variables)))

    summary = training.train(config, str(workdir), log=lambda message: None)
    assert summary["start_epoch"] == 2 and training.read_history(workdir / "history.csv")["epoch"] == [3.0]
    with pytest.raises(FileExistsError, match="workdir: .* already holds a checkpoint"):
        continue_saved_model(export_dir, config, str(workdir), epoch=2)
    with pytest.raises(ValueError, match="epoch: expected fewer than the run's 3 \\+ 0 epochs"):
        continue_saved_model(export_dir, config, str(tmp_path / "other"), epoch=3)
    wider = config_lib.override(config, ["model.hidden_dims=64,16"])
    with pytest.raises(ValueError, match="saved_model_dir: .* has shape"):
        continue_saved_model(export_dir, wider, str(tmp_path / "other"), epoch=2)

    # With train.ema_decay the moving averages (weights and batch-norm statistics) start at
    # the export's values (what stage 4 of issue 20 relies on).
    averaged = config_lib.override(config, ["train.ema_decay=0.999"])
    continue_saved_model(export_dir, averaged, str(tmp_path / "ema"), epoch=2, moment_steps=1)
    restored = training.build_model(averaged, 9)
    restored.build((None, 28, 28, 1))
    training.compile_model(restored, averaged, 9)
    checkpoints.restore_checkpoint(restored, tmp_path / "ema" / "checkpoint.npz")
    statistics = [w for layer in model.batch_norm_layers()  # the averages' order
                  for w in (layer.moving_mean, layer.moving_variance)]
    assert len(restored.ema_variables) == len(model.trainable_weights) + len(statistics)
    for average, want in zip(restored.ema_variables, model.trainable_weights + statistics):
        np.testing.assert_array_equal(average.numpy(), want.numpy(), err_msg=want.path)


def test_mnist_study_runs_only_the_named_runs(tmp_path):
    """mnist_study.sh with run names trains and evaluates just those, in $RUNS; a run with a
    report is not evaluated again. `lvae` is replaced by a stub that records its arguments."""
    stub = tmp_path / "bin" / "lvae"
    stub.parent.mkdir()
    stub.write_text('#!/bin/sh\necho "$@" >> "$CALLS"\n')
    stub.chmod(0o755)
    runs, calls = tmp_path / "study", tmp_path / "calls.txt"
    (runs / "vae5_bn" / "evaluation").mkdir(parents=True)
    (runs / "lvae5_long").mkdir()
    (runs / "vae5_bn" / "evaluation" / "report.json").write_text("{}")
    # A finished long run: no warm start is made.
    np.savez(runs / "lvae5_long" / "checkpoint.npz", epoch=np.int64(590))
    env = {**os.environ, "PATH": f"{stub.parent}:{os.environ['PATH']}", "RUNS": str(runs),
           "CALLS": str(calls)}
    subprocess.run(["bash", "experiments/mnist_study/mnist_study.sh", "DATA", "vae5_bn", "depth2_ladder",
                    "lvae5_long"], cwd=REPO, env=env, check=True)
    lines = calls.read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["train"] * 3 + ["evaluate"] * 2
    assert lines[0].endswith(f"--set model.inference=bottom_up --set train.warmup_epochs=0 "
                             f"--workdir {runs}/vae5_bn")
    assert "data.data_dir=DATA" in lines[0] and "--set train.epochs=100" in lines[0]
    assert "--set model.latent_dims=64,32 --set model.hidden_dims=512,256" in lines[1]
    assert lines[1].endswith(f"--workdir {runs}/depth2_ladder")
    assert "--set train.epochs=510" in lines[2] and "--set fine_tune.epochs=80" in lines[2]
    assert "--set train.keep_epochs=300,400,500,510" in lines[2]
    assert lines[2].endswith(f"--workdir {runs}/lvae5_long")
    assert lines[3:] == [f"evaluate {runs}/{name}/model.keras --samples {k} "
                         "--bn-statistics recompute"
                         for name, k in (("depth2_ladder", 1000), ("lvae5_long", 5000))]


@pytest.mark.slow  # over 10 s (the run fixture)
def test_provenance_records_training_evaluation_and_commands(run, tmp_path):
    output = tmp_path / "provenance.json"
    _script("provenance").main([
        str(run), str(run / "evaluation" / "report.json"), "saved_models/x/2",
        "--recipe", "quickstart", "--set", "train.epochs=2", "--start", "from scratch",
        "--command", "lvae evaluate saved_models/x/2 --dataset mnist_5k", "--output",
        str(output)])
    record = json.loads(output.read_text())
    history = training.read_history(run / "history.csv")
    assert record["epochs"] == 2 and record["epochs_in_this_run"] == 2
    assert record["training_hours_in_this_run"] == round(sum(history["seconds"]) / 3600, 2)
    assert record["configuration"]["model"]["latent_dims"] == [8, 4]
    assert record["evaluation"]["log_likelihood"]["L_4"]["mean"] < 0
    assert [layer["layer"] for layer in record["evaluation"]["latent_layers"]] == [1, 2]
    assert record["commands"] == ["lvae evaluate saved_models/x/2 --dataset mnist_5k"]
    assert record["final_validation"]["val_nelbo"] == history["val_nelbo"][-1]
