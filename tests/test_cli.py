import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_lvae
from keras_lvae import cli

LVAE = [sys.executable, "-m", "keras_lvae.cli"]
TINY = ["--latent-dims", "8,4", "--hidden-dims", "64,32", "--batch-size", "500"]


def run(*args, env=None):
    return subprocess.run([*LVAE, *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def test_help_names_the_commands():
    result = run("--help")
    assert result.returncode == 0 and "train" in result.stdout
    train_help = run("train", "--help")
    assert train_help.returncode == 0 and "--dataset" in train_help.stdout


def test_train_on_shipped_digits_saves_a_loadable_model(tmp_path):
    result = run("train", "--epochs", "2", "--eval-samples", "5", "--output", str(tmp_path), *TINY)
    assert result.returncode == 0, result.stderr
    assert "Epoch 2/2" in result.stdout and "val_nelbo" in result.stdout
    assert "test L_1 (ELBO)" in result.stdout and "test L_5:" in result.stdout
    model = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(model, keras_lvae.LadderVAE) and model.latent_dims == (8, 4)
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]  # no partial file left


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
