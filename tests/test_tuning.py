import dataclasses
import json
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_lvae
from keras_lvae import config as config_lib
from keras_lvae.config import Config, DataConfig, TrainConfig, TuneConfig

from .conftest import REPO

keras_tuner = pytest.importorskip("keras_tuner")
from keras_lvae import tuning  # noqa: E402  (needs keras_tuner)

SEARCH = Config(
    data=DataConfig(dataset="mnist_5k", batch_size=500, validation_split="validation",
                    validation_size=500),
    train=TrainConfig(eval_samples=5, seed=2),
    tune=TuneConfig(max_trials=2, epochs_per_trial=1, retrain_epochs=2, seed=3, depths=(1, 2),
                    first_hidden_dims=(16, 32), first_latent_dims=(4, 8), warmup_epochs=(0, 1)),
)


def test_config_for_halves_sizes_per_layer_with_a_floor():
    values = dict(depth=4, first_hidden_dim=32, first_latent_dim=8, learning_rate=0.002,
                  warmup_epochs=5, inference="bottom_up")
    config = tuning.config_for(SEARCH, values)
    assert config.model.latent_dims == (8, 4, 2, 2) and config.model.hidden_dims == (32, 16, 8, 4)
    assert (config.model.inference, config.train.learning_rate, config.train.warmup_epochs,
            config.train.epochs) == ("bottom_up", 0.002, 5, SEARCH.tune.epochs_per_trial)
    assert config.data == SEARCH.data  # the rest is the recipe's


@pytest.mark.slow  # over 10 s
def test_two_trial_search_completes_and_the_retrained_best_evaluates(tmp_path):
    best, summary = tuning.tune(SEARCH, str(tmp_path), log=lambda message: None)
    tuner = keras_tuner.RandomSearch(
        tuning.LadderVAEHyperModel((None, 28, 28, 1), config=SEARCH, steps_per_epoch=9), objective=tuning.OBJECTIVE,
        max_trials=2, directory=str(tmp_path), project_name="search", overwrite=False)
    trials = list(tuner.oracle.trials.values())
    assert len(trials) == 2
    assert all(t.status == keras_tuner.engine.trial.TrialStatus.COMPLETED for t in trials)
    assert all(np.isfinite(t.score) for t in trials)
    scores = {t.trial_id: t.score for t in trials}
    stored = json.loads((tmp_path / "best_hyperparameters.json").read_text())
    assert stored["val_nelbo"] == min(scores.values()) and stored["hyperparameters"] == best
    assert best["depth"] in (1, 2) and best["inference"] in ("ladder", "bottom_up")
    # The best configuration was retrained as `lvae train` would, and evaluates.
    run = tmp_path / "best"
    config = config_lib.from_dict(json.loads((run / "config.json").read_text()))
    chosen = tuning.config_for(SEARCH, best)
    assert config == dataclasses.replace(chosen, train=dataclasses.replace(chosen.train, epochs=2))
    assert len(config.model.latent_dims) == best["depth"]
    model = keras.saving.load_model(run / "model.keras")
    assert model.latent_dims == config.model.latent_dims
    x = np.random.default_rng(0).random((20, 28, 28, 1)) < 0.3
    assert np.isfinite(model.evaluate(x.astype("float32"), return_dict=True, verbose=0)["nelbo"])
    assert summary["history"]["epoch"] == [1.0, 2.0]
    # Run again: the finished trials and the finished retraining are reused, nothing reruns.
    again, summary = tuning.tune(SEARCH, str(tmp_path), log=lambda message: None)
    assert again == best and summary["start_epoch"] == 2
    assert len(list((tmp_path / "search").glob("trial_*"))) == 2


def test_missing_keras_tuner_names_the_extra(tmp_path):
    probe = ("import sys; sys.modules['keras_tuner'] = None\n"
             "import keras_lvae_cli\n"
             f"sys.exit(keras_lvae_cli.main(['tune', {str(REPO / 'recipes' / 'tune_mnist.py')!r},"
             f" '--workdir', {str(tmp_path)!r}]))\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert 'needs keras-tuner: pip install "keras-lvae[tuning]"' in result.stderr


@pytest.mark.slow  # over 10 s
def test_hypermodel_from_python_with_its_default_search_space(tmp_path):
    """As KerasTuner users expect: only the image shape, any tuner, search(train, validation_data=...);
    the warm-up length follows the data (here 9 batches per epoch)."""
    from keras_lvae import data

    train = data.load_dataset("mnist_5k", "train", batch_size=500, seed=1)
    validation = data.load_dataset("mnist_5k", "test", batch_size=500)
    hypermodel = tuning.LadderVAEHyperModel(input_shape=(28, 28, 1))
    tuner = keras_tuner.RandomSearch(hypermodel, objective=tuning.OBJECTIVE, max_trials=1,
                                     seed=1, directory=str(tmp_path), project_name="python")
    tuner.search(train, validation_data=validation, epochs=1, verbose=0)
    (trial,) = tuner.oracle.trials.values()
    assert trial.status == keras_tuner.engine.trial.TrialStatus.COMPLETED
    values = trial.hyperparameters.values
    assert set(values) == {"depth", "first_hidden_dim", "first_latent_dim", "learning_rate",
                           "warmup_epochs", "inference"}
    hp = keras_tuner.HyperParameters()
    hp.values.update(values)
    model = hypermodel.build(hp)
    hypermodel.fit(hp, model, train, epochs=1, verbose=0)
    assert model.warmup_steps == values["warmup_epochs"] * 9
    with pytest.raises(ValueError, match="`input_shape`"):
        tuning.LadderVAEHyperModel()


def test_config_for_builds_conv_trials_and_mlp_trials_from_one_search():
    values = dict(depth=2, first_hidden_dim=32, first_latent_dim=8, learning_rate=0.002,
                  warmup_epochs=0, inference="ladder", architecture="conv", conv_filters=16,
                  residual_blocks=1)
    search = dataclasses.replace(SEARCH, tune=dataclasses.replace(
        SEARCH.tune, architectures=("mlp", "conv")))
    conv = tuning.config_for(search, values).model
    assert (conv.architecture, conv.hidden_dims, conv.latent_dims, conv.residual_blocks) == (
        "conv", (16, 16), (8, 4), 1)
    mlp = tuning.config_for(dataclasses.replace(search, model=conv),
                            dict(values, architecture="mlp")).model
    assert (mlp.architecture, mlp.hidden_dims, mlp.residual_blocks) == ("mlp", (32, 16), 2)
    hp = keras_tuner.HyperParameters()
    hypermodel = tuning.LadderVAEHyperModel((28, 28, 1), config=search, steps_per_epoch=3)
    declared = hypermodel.declare(hp)
    assert {"architecture", "conv_filters", "residual_blocks"} <= set(declared)
    hp.values.update(values)
    assert isinstance(hypermodel.build(hp), keras_lvae.ConvLadderVAE)
