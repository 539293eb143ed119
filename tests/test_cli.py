import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lvae
import keras_lvae_cli
from keras_lvae import checkpoints, config as config_lib, plots, threads, training
from keras_lvae._files import read_csv

from .conftest import REPO

LVAE = [sys.executable, "-m", "keras_lvae_cli"]
TINY = ["--set", "model.latent_dims=8,4", "--set", "model.hidden_dims=64,32",
        "--set", "data.batch_size=500"]
QUICKSTART = str(REPO / "recipes" / "quickstart.py")
SUBCOMMANDS = {"train": "--set", "tune": "--workdir", "evaluate": "--bn-statistics",
               "sample": "--num-samples", "export": "--base-dir"}


def run(*args, env=None):
    return subprocess.run([*LVAE, *args], capture_output=True, text=True, timeout=600, cwd=REPO,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})


def test_help_of_every_command_imports_no_tensorflow():
    """`lvae --help` and each subcommand's help print without importing TensorFlow (which
    takes seconds); the subprocess reports which heavy modules got imported."""
    probe = ("import sys, contextlib, io, json, keras_lvae_cli\n"
             "for argv in [['--help']] + [[c, '--help'] for c in sys.argv[1:]]:\n"
             "    out = io.StringIO()\n"
             "    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
             "        keras_lvae_cli.main(argv)\n"
             "    print('HELP', json.dumps([' '.join(argv), out.getvalue()]))\n"
             "print('IMPORTED', sorted(m for m in ('tensorflow', 'keras', 'keras_lvae') "
             "if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", probe, *SUBCOMMANDS], capture_output=True,
                            text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "IMPORTED []" in result.stdout
    helps = dict(json.loads(line[5:]) for line in result.stdout.splitlines()
                 if line.startswith("HELP "))
    for command, option in SUBCOMMANDS.items():
        assert command in helps["--help"] and option in helps[f"{command} --help"], command


@pytest.mark.slow  # over 10 s
def test_quickstart_writes_every_promised_file(tmp_path):
    """The README's main command on the shipped digits, shortened to 5 epochs (CI runs the
    full command before the tests)."""
    result = run("train", "recipes/quickstart.py", "--workdir", str(tmp_path),
                 "--set", "train.epochs=5")
    assert result.returncode == 0, result.stderr
    config = config_lib.override(config_lib.load_recipe(REPO / "recipes" / "quickstart.py"),
                                 ["train.epochs=5"])
    epochs = config.train.epochs
    assert f"Epoch {epochs}/{epochs}" in result.stdout and "test L_100:" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint.npz", "config.json", "history.csv", "model.keras", "tensorboard"]
    assert sorted(p.name for p in (tmp_path / "tensorboard").iterdir()) == [
        "samples", "train", "validation"]
    stored = config_lib.from_dict(json.loads((tmp_path / "config.json").read_text()))
    assert stored == config
    history = read_csv(tmp_path / "history.csv")
    assert history["epoch"] == [float(e) for e in range(1, epochs + 1)]
    assert {"kl_layer_1", "kl_layer_3", "val_nelbo", "beta"} <= set(history)
    assert f"val_nelbo: {history['val_nelbo'][-1]:.4f}" in result.stdout
    assert history["val_nelbo"][-1] < history["val_nelbo"][0] - 50  # it learned
    model = keras.saving.load_model(tmp_path / "model.keras")
    assert model.latent_dims == config.model.latent_dims
    assert checkpoints.checkpoint_epoch(tmp_path / "checkpoint.npz") == epochs


# What `lvae train` and `lvae evaluate` print for an MLP run on this machine (no GPU, no thread
# settings in the environment) and for a conv run.
MLP_THREADS = threads.describe(threads.default_thread_counts(threads.usable_cores()))
CONV_THREADS = threads.describe(None)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, mnist_dir):
    """`lvae train` for 1 epoch on the real MNIST files: (workdir, result)."""
    workdir = tmp_path_factory.mktemp("run")
    result = run("train", "recipes/quickstart.py", "--workdir", str(workdir), *TINY,
                 "--set", "data.dataset=mnist", "--set", f"data.data_dir={mnist_dir.parent}",
                 "--set", "train.epochs=1", "--set", "train.eval_samples=5")
    assert result.returncode == 0, result.stderr
    return workdir, result


@pytest.mark.slow  # over 10 s
def test_train_on_real_mnist_files(trained_run):
    workdir, result = trained_run
    assert "120 steps of 500 images per epoch" in result.stdout
    assert "local files in" in result.stdout
    assert "120/120" in result.stdout and "test L_5:" in result.stdout
    assert MLP_THREADS in result.stdout.splitlines()
    model = keras.saving.load_model(workdir / "model.keras")
    assert isinstance(model, keras_lvae.LadderVAE) and model.latent_dims == (8, 4)
    assert int(model.optimizer.iterations.numpy()) == 120
    assert not [p for p in workdir.iterdir() if p.name.startswith(".")]  # no partial files


@pytest.mark.slow  # over 10 s
def test_sample_writes_a_png_grid(trained_run, tmp_path):
    workdir, _ = trained_run
    result = run("sample", str(workdir / "model.keras"), "--num-samples", "30", "--seed", "4")
    assert result.returncode == 0, result.stderr
    assert plots.png_size(workdir / "samples.png") == (800, 800)
    # The same seed draws the same images: an in-process plot is byte-identical.
    model = keras.saving.load_model(workdir / "model.keras")
    plots.plot_prior_samples(model, tmp_path / "again.png", num_samples=30, seed=4)
    assert (tmp_path / "again.png").read_bytes() == (workdir / "samples.png").read_bytes()
    assert keras_lvae_cli.main(["sample", str(workdir / "model.keras"), "--output",
                                str(tmp_path / "grid.jpg")]) == 2


@pytest.mark.slow  # over 10 s
def test_export_of_the_trained_model(trained_run, tmp_path):
    workdir, _ = trained_run
    result = run("export", str(workdir / "model.keras"), "--name", "tiny", "--base-dir",
                 str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "tiny" / "1" / "saved_model.pb").exists()


def test_export_to_onnx_and_litert_and_what_it_refuses(tmp_path, capsys):
    model = keras_lvae.LadderVAE(latent_dims=(3, 2), hidden_dims=(8, 4), seed=1)
    model(np.zeros((1, 28, 28, 1), "float32"))
    model.save(tmp_path / "m.keras")
    export = ["export", str(tmp_path / "m.keras"), "--name", "tiny", "--base-dir",
              str(tmp_path / "out"), "--format"]
    assert keras_lvae_cli.main([*export, "onnx"]) == 0
    assert keras_lvae_cli.main([*export, "litert"]) == 0
    assert sorted(os.listdir(tmp_path / "out" / "tiny.onnx")) == [
        "decode.onnx", "encode.onnx", "generate.onnx", "score.onnx"]
    assert (tmp_path / "out" / "tiny.tflite").stat().st_size > 0
    assert "tiny.tflite (decode, encode, generate, score; sampling from the noise" in (
        capsys.readouterr().out)
    assert keras_lvae_cli.main([*export, "litert"]) == 2
    assert ("error: --name tiny: " + str(tmp_path / "out" / "tiny.tflite") + " exists; exports "
            "never overwrite: pass another --name or --base-dir") in capsys.readouterr().err
    assert keras_lvae_cli.main([*export, "onnx", "--version", "3"]) == 2
    assert ("--version: only --format tf_saved_model has versions, received --format onnx"
            in capsys.readouterr().err)


@pytest.mark.slow  # over 10 s
def test_export_bakes_in_the_evaluated_statistics_and_evaluate_scores_the_export(trained_run,
                                                                               tmp_path):
    """`lvae export --bn-statistics recompute` holds exactly the statistics that `lvae
    evaluate --bn-statistics recompute` uses (the reconstruction, a deterministic
    signature, equals the Keras model's after the same recomputation), and `lvae evaluate`
    scores an exported version through its score signature."""
    import argparse

    import tensorflow as tf

    from keras_lvae import command_inputs, data as data_lib

    workdir, _ = trained_run
    assert keras_lvae_cli.main(["export", str(workdir), "--name", "tiny", "--base-dir",
                                str(tmp_path), "--bn-statistics", "recompute"]) == 0
    version = tmp_path / "tiny" / "1"
    model = keras.saving.load_model(workdir / "model.keras")
    config = training.load_run_config(str(workdir))
    command_inputs.recompute_statistics(model, argparse.Namespace(
        seed=0, dataset="mnist", data_dir=config.data.data_dir, validation_size=0,
        image_size=None))
    images, _ = data_lib.load_evaluation_arrays("mnist", data_dir=config.data.data_dir)
    served = tf.saved_model.load(str(version)).signatures["reconstruct"]
    np.testing.assert_allclose(served(images=tf.constant(images[:20]))["reconstruction"],
                               model(images[:20]), atol=1e-5)

    assert keras_lvae_cli.main(["evaluate", str(version), "--dataset", "mnist", "--data-dir",
                                config.data.data_dir, "--samples", "10", "--max-examples",
                                "50", "--output", str(tmp_path / "scored")]) == 0
    report = json.loads((tmp_path / "scored" / "report.json").read_text())
    assert report["num_examples"] == 50 and report["format"].startswith("SavedModel")
    bounds = report["log_likelihood"]
    assert bounds["L_10"]["mean"] > bounds["L_1"]["mean"]  # L_k >= L_1 on average


REPORT_FIELDS = {"model", "dataset", "split", "num_examples", "settings", "model_config",
                 "log_likelihood", "latent_layers", "plots", "per_example", "timing_seconds",
                 "versions", "created"}
LAYER_FIELDS = {"layer", "shape", "units", "kl", "active_units_kl", "active_units_cov",
                "active_channels", "kl_per_channel", "kl_per_unit", "posterior_mean_variance"}
PLOTS = {"prior_samples", "reconstructions", "layer_variations", "kl_per_layer", "kl_per_unit",
         "latent_pca", "training_curves"}


@pytest.mark.slow  # over 10 s
@pytest.mark.parametrize("bn_statistics", ["moving", "recompute"])
def test_evaluate_writes_report_and_plots(trained_run, tmp_path, bn_statistics):
    output, _ = trained_run
    result = run("evaluate", str(output / "model.keras"), "--samples", "20", "--max-examples",
                 "150", "--bn-statistics", bn_statistics, "--output", str(tmp_path))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report) == REPORT_FIELDS
    assert report["num_examples"] == 150 and report["settings"]["bn_statistics"] == bn_statistics
    assert report["settings"]["subset"] == {
        "examples": 150, "of": 10000, "seed": 0,
        "drawn": "uniformly at random without replacement (--seed)"}
    assert "150 of 10000 examples (a random subset, seed 0)" in result.stdout
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
    assert MLP_THREADS in result.stdout.splitlines()


@pytest.mark.slow  # over 10 s
def test_recomputed_batch_norm_statistics_change_the_bound(trained_run, tmp_path):
    output, _ = trained_run
    bounds = {}
    for mode in ("moving", "recompute"):
        assert keras_lvae_cli.main(["evaluate", str(output / "model.keras"), "--samples", "2",
                         "--max-examples", "50", "--no-plots", "--bn-statistics", mode,
                         "--output", str(tmp_path / mode)]) == 0
        report = json.loads((tmp_path / mode / "report.json").read_text())
        bounds[mode] = report["log_likelihood"]["L_1"]["mean"]
        assert report["plots"] == {}
    assert bounds["moving"] != bounds["recompute"]


@pytest.mark.slow  # over 10 s
@pytest.mark.parametrize("args, message", [
    (["missing.keras"], "no such file"),
    (["{model}", "--history", "missing.csv"], "--history"),
    (["{model}", "--samples", "0"], "--samples"),
])
def test_evaluate_bad_arguments(trained_run, tmp_path, capsys, args, message):
    output, _ = trained_run
    args = [a.format(model=output / "model.keras") for a in args]
    try:
        code = keras_lvae_cli.main(["evaluate", *args, "--max-examples", "5", "--output", str(tmp_path)])
    except SystemExit as exit:  # argparse's own refusals
        code = exit.code
    assert code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--set", "train.epoch=3"], "unknown key `train.epoch`; did you mean `train.epochs`?"),
    (["--set", "train.epochs=three"], "`train.epochs` expects an int, received 'three'"),
    (["--set", "model.latent_dims=8,x"], "`model.latent_dims` expects a comma-separated list"),
    (["--set", "model.latent_dims=8,4"], "`model.hidden_dims`: expected one entry per"),
    (["--set", "data.dataset=cifar"], "`data.dataset`: expected one of"),
    (["--set", "train.epochs"], "expected SECTION.FIELD=VALUE"),
    (["--set", "train.epochs", "3"], "--set train.epochs: expected SECTION.FIELD=VALUE with "
                                     "`=`, such as --set train.epochs=3"),
])
def test_bad_settings_are_refused_before_anything_is_written(args, message, tmp_path, capsys):
    workdir = tmp_path / "run"
    code = keras_lvae_cli.main(["train", QUICKSTART, "--workdir", str(workdir),
                                *args])
    assert code == 2 and message in capsys.readouterr().err
    assert not workdir.exists()


def test_missing_recipe_and_missing_data_give_messages_not_tracebacks(tmp_path, capsys,
                                                                      monkeypatch):
    assert keras_lvae_cli.main(["train", str(tmp_path / "nope.py")]) == 2
    assert "RECIPE: no such file or shipped recipe" in capsys.readouterr().err
    monkeypatch.delenv("KERAS_LVAE_DATA_DIR", raising=False)
    code = keras_lvae_cli.main(["train", QUICKSTART, "--workdir", str(tmp_path),
                                "--set", "data.dataset=mnist",
                                "--set", f"data.data_dir={tmp_path / 'none'}"])
    assert code == 2 and "not a directory" in capsys.readouterr().err


def test_hints_name_flags_that_exist(tmp_path, capsys, monkeypatch):
    """The own-images hint names `--data-dir`, which `lvae train` takes (a shorthand of
    --set data.data_dir); exported ONNX and LiteRT files are pointed to their runtimes."""
    monkeypatch.delenv("KERAS_LVAE_DATA_DIR", raising=False)
    assert keras_lvae_cli.main(["train", "own_images", "--workdir", str(tmp_path / "r")]) == 2
    assert "(`lvae`: --data-dir DIR, or in a recipe data.data_dir)" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()  # --data-dir reaches the recipe's data.data_dir
    assert keras_lvae_cli.main(["train", "own_images", "--data-dir", str(tmp_path / "empty"),
                                "--workdir", str(tmp_path / "r")]) == 2
    assert f"in {tmp_path / 'empty'}" in capsys.readouterr().err
    (tmp_path / "m.onnx").mkdir()
    (tmp_path / "m.tflite").write_bytes(b"TFL3")
    for path, runtime in (("m.onnx", "ONNX export"), ("m.tflite", "LiteRT export")):
        assert keras_lvae_cli.main(["evaluate", str(tmp_path / path), "--samples", "2"]) == 2
        err = capsys.readouterr().err
        assert f"is an {runtime}" in err or f"is a {runtime}" in err
        assert "saved_models/README.md, 'ONNX and LiteRT'" in err


@pytest.mark.slow  # over 10 s
def test_evaluate_needs_a_dataset_without_a_run_config(trained_run, tmp_path, capsys):
    workdir, _ = trained_run
    model = keras.saving.load_model(workdir / "model.keras")
    model.save(tmp_path / "loose.keras")
    assert keras_lvae_cli.main(["evaluate", str(tmp_path / "loose.keras"), "--samples", "2"]) == 2
    assert "--dataset is needed: there is no config.json next to" in capsys.readouterr().err


@pytest.mark.slow  # over 10 s
def test_two_runs_of_the_same_command_are_identical(tmp_path):
    """`lvae train` seeds the weights, the noise and the data order from train.seed."""
    histories = []
    for name in ("a", "b"):
        args = ["train", QUICKSTART, *TINY, "--set", "train.epochs=2", "--set",
                "train.eval_samples=0", "--workdir", str(tmp_path / name)]
        assert keras_lvae_cli.main(args) == 0
        history = training.read_history(tmp_path / name / "history.csv")
        history.pop("seconds")
        histories.append(history)
    assert histories[0] == histories[1]


CHECK_WITHOUT_TENSORFLOW = """
import sys, time
import keras_lvae_cli
start = time.perf_counter()
code = keras_lvae_cli.main(sys.argv[1:])
print(code, "tensorflow" in sys.modules, time.perf_counter() - start)
"""


@pytest.mark.parametrize("args, message", [
    (["train", "no_such_recipe"], "RECIPE: no such file or shipped recipe 'no_such_recipe'"),
    (["evaluate", "runs/nothing_here"], "MODEL: no such file or folder 'runs/nothing_here'"),
    (["export", "nothing.keras", "--name", "x"], "MODEL: no such file or folder"),
    (["train", "quickstart", "--set", "train.epochs", "3"], "such as --set train.epochs=3"),
    (["train", "quickstrat"], "did you mean 'quickstart'?"),
    (["train", "quickstart", "--set", "train.epoch=3"],
     "unknown key `train.epoch`; did you mean `train.epochs`?"),
])
def test_mistakes_answer_before_tensorflow_loads(args, message):
    result = subprocess.run([sys.executable, "-c", CHECK_WITHOUT_TENSORFLOW, *args],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    code, imported, seconds = result.stdout.split()
    assert (code, imported) == ("2", "False") and float(seconds) < 1.0
    assert message in result.stderr and "Traceback" not in result.stderr


def test_evaluate_on_an_image_folder_takes_the_image_size_from_the_model(tmp_path, capsys):
    """A .keras file has no run config; an image folder's images are resized to the size the
    model takes (16 x 16 here, from 20 x 24 files)."""
    from PIL import Image

    import keras_lvae

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        (tmp_path / "photos" / split).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
                tmp_path / "photos" / split / f"{i}.png")
    model = keras_lvae.ConvLadderVAE(latent_dims=(2,), hidden_dims=(4,), residual_blocks=1,
                                     likelihood="logistic_mixture", mixture_components=2, seed=0)
    model.build((None, 16, 16, 3))
    model.save(tmp_path / "colour.keras")
    code = keras_lvae_cli.main(["evaluate", str(tmp_path / "colour.keras"), "--dataset",
                                "image_folder", "--data-dir", str(tmp_path / "photos"),
                                "--samples", "2", "--no-plots", "--output", str(tmp_path / "ev")])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["num_examples"] == 3 and "bits_per_dim" in report


def test_urllib3_retry_warnings_are_hidden_unless_verbose(tmp_path):
    """Offline, tfds' downloads log a warning per retry (after our own error); `lvae` keeps
    urllib3 to errors, `lvae --verbose` shows them."""
    import logging

    model = str(REPO / "tests" / "data" / "v0.1.0" / "model.keras")
    urllib3 = logging.getLogger("urllib3")
    try:
        for verbose, level in (([], logging.ERROR), (["--verbose"], logging.NOTSET)):
            urllib3.setLevel(logging.NOTSET)
            assert keras_lvae_cli.main([*verbose, "sample", model, "--output",
                                        str(tmp_path / "x.txt")]) == 2
            assert urllib3.level == level
    finally:
        urllib3.setLevel(logging.NOTSET)


def test_the_clis_setting_keys_are_the_configs():
    """`lvae` checks --set keys without importing keras_lvae.config (TensorFlow)."""
    assert keras_lvae_cli.setting_keys() == config_lib.keys()


def test_recipes_are_listed_and_run_by_name(capsys):
    assert keras_lvae_cli.main(["recipes"]) == 0
    listing = capsys.readouterr().out
    assert "quickstart " in listing and "mnist_paper " in listing
    assert keras_lvae_cli.resolve_recipe("quickstart") == QUICKSTART
    assert keras_lvae_cli.resolve_recipe("quickstart.py") == QUICKSTART


@pytest.mark.slow  # over 10 s
def test_tensorflow_start_up_noise_is_hidden_unless_verbose(tmp_path):
    """A command that loads TensorFlow and then fails: by default stderr holds only our
    message; --verbose shows TensorFlow's own start-up lines and the error's traceback."""
    model = str(REPO / "tests" / "data" / "v0.1.0" / "model.keras")
    args = ["sample", model, "--output", str(tmp_path / "samples.txt")]
    quiet = run(*args, env={"TF_CPP_MIN_LOG_LEVEL": "0"})
    verbose = run("--verbose", *args, env={"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert quiet.returncode == verbose.returncode == 2
    assert quiet.stderr.strip().splitlines() == [
        "lvae sample: error: --output: expected a .png path, received "
        f"'{tmp_path / 'samples.txt'}'"]
    assert len(verbose.stderr.strip().splitlines()) > 1  # oneDNN, CUDA, absl lines
    assert "Traceback (most recent call last)" in verbose.stderr
    assert "Traceback" not in quiet.stderr
    assert verbose.stderr.strip().splitlines()[-1] == quiet.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_ctrl_c_says_where_to_resume_and_exits_130(tmp_path):
    import signal
    import time

    args = [*LVAE, "train", QUICKSTART, *TINY, "--set", "train.epochs=50",
            "--set", "train.eval_samples=0", "--workdir", str(tmp_path)]
    process = subprocess.Popen(args, cwd=REPO, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while checkpoints.checkpoint_epoch(tmp_path / "checkpoint.npz") < 2:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    sent = time.monotonic()
    _, err = process.communicate(timeout=120)
    assert time.monotonic() - sent < 10  # it stops at the next step and leaves at once
    saved = checkpoints.checkpoint_epoch(tmp_path / "checkpoint.npz")
    assert process.returncode == 130 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 2 and lines[0] == ("lvae train: stopping after the steps in progress "
                                            "(Ctrl-C again to stop at once)")
    assert lines[1].startswith("lvae train: interrupted in epoch ")
    assert lines[1].endswith(f"; run the same command to resume from epoch {saved + 1}")


@pytest.mark.slow  # over 10 s
def test_conv_model_trains_evaluates_samples_and_exports_through_the_cli(tmp_path):
    """The commands work for a ConvLadderVAE as for an MLP one (2 epochs on the shipped
    digits), and use the moving-average weights of a run that kept them."""
    conv = ["--set", "model.architecture=conv", "--set", "model.latent_dims=8,4",
            "--set", "model.hidden_dims=16,16", "--set", "model.residual_blocks=1",
            "--set", "model.downsample=1,1", "--set", "model.skip=true",
            "--set", "model.free_bits=0.1", "--set", "train.epochs=2",
            "--set", "train.ema_decay=0.9",
            "--set", "train.eval_samples=5"]
    result = run("train", "recipes/quickstart.py", "--workdir", str(tmp_path / "run"), *conv)
    assert result.returncode == 0, result.stderr
    assert CONV_THREADS in result.stdout.splitlines()
    history = read_csv(tmp_path / "run" / "history.csv")
    assert history["val_nelbo"][-1] < history["val_nelbo"][0]
    result = run("evaluate", str(tmp_path / "run"), "--samples", "10", "--max-examples", "100")
    assert result.returncode == 0, result.stderr
    assert ", active channels " in result.stdout  # feature-map latents report channels
    report = json.loads((tmp_path / "run" / "evaluation" / "report.json").read_text())
    assert report["latent_layers"][0]["shape"] == [14, 14, 8]
    assert report["model_config"]["skip"] is True
    assert "using the moving averages of the weights" in result.stdout
    assert report["settings"]["weights"] == "moving average"
    assert plots.png_size(tmp_path / "run" / "evaluation" / "layer_variations.png") == (800, 300)
    result = run("sample", str(tmp_path / "run"), "--num-samples", "20", "--temperature", "0.5")
    assert result.returncode == 0, result.stderr
    assert "temperature 0.5" in result.stdout
    assert plots.png_size(tmp_path / "run" / "samples.png") == (800, 800)
    result = run("sample", str(tmp_path / "run"), "--layer", "2", "--num-samples", "20",
                 "--output", str(tmp_path / "layer2.png"))
    assert result.returncode == 0, result.stderr
    assert plots.png_size(tmp_path / "layer2.png") == (400, 300)
    result = run("sample", str(tmp_path / "run"), "--layer", "3")
    assert result.returncode == 2 and "--layer: expected a layer from 1 to 2" in result.stderr
    result = run("sample", str(tmp_path / "run"), "--temperature", "-1")
    assert result.returncode == 2 and "expected a number >= 0" in result.stderr
    result = run("sample", str(tmp_path / "run"), "--temperature", "0.6", "--readjust-bn",
                 "--num-samples", "10", "--output", str(tmp_path / "readjusted.png"))
    assert result.returncode == 0, result.stderr
    assert "temperature 0.6, batch norms readjusted at that temperature" in result.stdout
    result = run("sample", str(tmp_path / "run"), "--readjust-bn", "--layer", "1")
    assert result.returncode == 2 and "--readjust-bn: applies to prior samples" in result.stderr
    result = run("export", str(tmp_path / "run"), "--name", "conv", "--base-dir",
                 str(tmp_path / "served"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "served" / "conv" / "1" / "saved_model.pb").exists()


@pytest.mark.slow  # over 10 s
def test_colour_quickstart_trains_evaluates_in_bits_per_dim_and_serves_uint8(tmp_path):
    """The colour quickstart on the shipped photo tiles, shortened: training logs and the
    evaluation report bits per dimension; the export takes and returns 8-bit images; its
    SavedModel evaluates to the same L_1 as the Keras model (same seed)."""
    small = ["--set", "train.epochs=1", "--set", "model.hidden_dims=8,8",
             "--set", "train.eval_samples=2"]
    result = run("train", "colour_quickstart", "--workdir", str(tmp_path / "run"), *small)
    assert result.returncode == 0, result.stderr
    history = read_csv(tmp_path / "run" / "history.csv")
    assert 0 < history["val_bits_per_dim"][-1] < 8  # uniform 8-bit noise would be 8
    assert "bits/dim" in result.stdout
    result = run("evaluate", str(tmp_path / "run"), "--samples", "2", "--max-examples", "50",
                 "--no-plots")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "run" / "evaluation" / "report.json").read_text())
    nats = report["log_likelihood"]["L_1"]["mean"]
    assert report["bits_per_dim"]["L_1"]["mean"] == pytest.approx(
        -nats / (32 * 32 * 3 * np.log(2)), rel=1e-6)
    result = run("export", str(tmp_path / "run"), "--name", "colour", "--base-dir",
                 str(tmp_path / "served"))
    assert result.returncode == 0, result.stderr
    served = tf.saved_model.load(str(tmp_path / "served" / "colour" / "1"))
    generated = served.signatures["generate"](num_samples=tf.constant(2),
                                              seed=tf.constant([0, 1]))["images"]
    assert generated.dtype == tf.uint8 and generated.shape == (2, 32, 32, 3)
    result = run("evaluate", str(tmp_path / "served" / "colour" / "1"), "--dataset",
                 "photo_patches", "--samples", "2", "--max-examples", "50")
    assert result.returncode == 0, result.stderr
    assert "bits/dim" in result.stdout


@pytest.mark.slow  # over 10 s
def test_own_images_recipe_trains_on_one_folder_and_uses_every_image(tmp_path):
    """The README's 'Your own images' commands on a folder of 50 PNGs of mixed sizes: 40 train
    in batches of 64 (one batch of 40: none dropped), 5 validation, 5 test, then evaluate."""
    from PIL import Image

    rng = np.random.default_rng(1)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(50):
        shape = (40, 48, 3) if i % 2 else (36, 36, 3)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(photos / f"{i}.png")
    result = run("train", "own_images", "--set", f"data.data_dir={photos}", "--set",
                 "train.epochs=1", "--set", "train.eval_samples=2", "--workdir",
                 str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "image_folder train: 40 images of the 50 in" in out
    assert "(one folder: 5 held out for test, 5 for validation" in out
    assert "40 images an epoch in 1 batches of 64, the last of 40" in out
    assert "test L_2" in out
    result = run("evaluate", str(tmp_path / "run"), "--samples", "2", "--no-plots")
    assert result.returncode == 0, result.stderr
    assert "image_folder test: 5 examples" in result.stdout


@pytest.mark.slow  # over 10 s
def test_evaluate_scores_an_out_of_distribution_dataset(trained_run, tmp_path, capsys,
                                                       monkeypatch):
    """`--ood-dataset`: the table, ood_report.json whose metrics follow from its per-example
    scores, the two plots; a dataset of another image shape is refused by name."""
    from PIL import Image

    from keras_lvae import ood

    workdir, _ = trained_run
    code = keras_lvae_cli.main(["evaluate", str(workdir), "--samples", "2", "--max-examples",
                                "40", "--ood-dataset", "mnist_5k", "--ood-samples", "3",
                                "--output", str(tmp_path / "ev")])
    out = capsys.readouterr().out
    assert code == 0
    assert "out-of-distribution: mnist_5k test (40 examples) against mnist test" in out
    report = json.loads((tmp_path / "ev" / "ood_report.json").read_text())
    assert report["in"]["examples"] == report["out"]["examples"] == 40
    per_example = {side: {n: np.array(v) for n, v in report["per_example"][side].items()}
                   for side in ("in", "out")}
    assert report["scores"] == ood.ood_report(per_example["in"], per_example["out"])
    for name, row in report["scores"].items():
        assert f"{name:>8}  {row['auroc']:.3f}  {row['auprc']:.3f}  {row['fpr95']:.3f}" in out
    assert {"ood_roc.png", "ood_scores.png"} <= {p.name for p in (tmp_path / "ev").iterdir()}
    (tmp_path / "photos" / "train").mkdir(parents=True)
    (tmp_path / "photos" / "test").mkdir()
    for split in ("train", "test"):
        Image.fromarray(np.zeros((28, 28, 3), np.uint8)).save(tmp_path / "photos" / split / "a.png")
    code = keras_lvae_cli.main(["evaluate", str(workdir), "--samples", "2", "--max-examples",
                                "5", "--no-plots", "--ood-dataset", "image_folder",
                                "--ood-data-dir", str(tmp_path / "photos"), "--output",
                                str(tmp_path / "ev2")])
    assert code != 0
    assert ("--ood-dataset image_folder has images of shape (28, 28, 3), but the model was "
            "trained on (28, 28, 1)") in capsys.readouterr().err
    assert not (tmp_path / "ev2").exists()  # refused before any evaluation or plot
    # A misspelt name and missing files are refused first too, in the flags' own terms.
    evaluate = ["evaluate", str(workdir), "--samples", "2", "--output", str(tmp_path / "ev3")]
    assert keras_lvae_cli.main([*evaluate, "--ood-dataset", "fashion_mnst"]) == 2
    assert "error: --ood-dataset: expected one of [" in capsys.readouterr().err
    monkeypatch.delenv("KERAS_LVAE_DATA_DIR", raising=False)
    assert keras_lvae_cli.main([*evaluate, "--ood-dataset", "omniglot"]) == 2
    err = capsys.readouterr().err
    assert "error: --ood-dataset omniglot: Dataset 'omniglot' needs local files" in err
    assert "(`lvae`: --ood-data-dir DIR)" in err and " --data-dir" not in err
    assert keras_lvae_cli.main([*evaluate, "--dataset", "mnits"]) == 2
    assert "error: --dataset: expected one of [" in capsys.readouterr().err
    assert not (tmp_path / "ev3").exists()


@pytest.mark.slow  # over 10 s
def test_own_images_as_tiles_of_full_size_photographs(tmp_path):
    """`data.dataset=image_tiles`: 12 photographs of 70 x 100 (6 tiles of 32 each, borders
    dropped) split by file, 10 / 1 / 1; the run trains on their 60 tiles and evaluates on
    the test photograph's 6."""
    from PIL import Image

    rng = np.random.default_rng(2)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (70, 100, 3), dtype=np.uint8)).save(
            photos / f"{i}.png")
    result = run("train", "own_images", "--set", "data.dataset=image_tiles", "--set",
                 f"data.data_dir={photos}", "--set", "train.epochs=1", "--set",
                 "train.eval_samples=2", "--workdir", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert "image_tiles train: 10 images of the 12 in" in result.stdout
    assert "cut into 60 tiles of 32 x 32 at full resolution" in result.stdout
    assert "60 images an epoch in 1 batches of 64, the last of 60" in result.stdout
    result = run("evaluate", str(tmp_path / "run"), "--samples", "2", "--no-plots")
    assert result.returncode == 0, result.stderr
    assert "image_tiles test: 6 examples" in result.stdout
