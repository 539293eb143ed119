"""KerasTuner search over LVAE architectures and training settings: `lvae tune`.

`LadderVAEHyperModel` turns a recipe's `tune` section into a search space:
depth, the first layer's width and latent size (both halved per layer up, as
in the paper's 512-256-128-64-32 / 64-32-16-8-4), the learning rate, the
warm-up length and the inference type. `tune` runs a random search minimising
`val_nelbo` and retrains the best configuration with `keras_lvae.training`.
Needs the tuning extra: `pip install "keras-lvae[tuning]"`.

Example (a search space of one point, built without searching):
>>> import keras_tuner
>>> from keras_lvae.config import Config, TuneConfig
>>> config = Config(tune=TuneConfig(depths=(2,), first_hidden_dims=(64,),
...                                 first_latent_dims=(8,), inference=("ladder",)))
>>> hypermodel = LadderVAEHyperModel((28, 28, 1), config=config, steps_per_epoch=10)
>>> model = hypermodel.build(keras_tuner.HyperParameters())
>>> model.latent_dims, model.hidden_dims
((8, 4), (64, 32))

From Python, as with any KerasTuner hypermodel (the default search space of
`keras_lvae.config.TuneConfig`; the warm-up length follows the data's batches):

    tuner = keras_tuner.RandomSearch(LadderVAEHyperModel(input_shape=(28, 28, 1)),
                                     objective=OBJECTIVE, max_trials=10)
    tuner.search(train_ds, validation_data=validation_ds, epochs=10)
"""

import dataclasses
import json
import os

try:
    import keras_tuner
except ImportError:
    raise ImportError(
        'keras_lvae.tuning (and `lvae tune`) needs keras-tuner: pip install "keras-lvae[tuning]"'
    ) from None

from keras_lvae import config as config_lib
from keras_lvae import inputs, training
from keras_lvae._files import atomic_write

OBJECTIVE = keras_tuner.Objective("val_nelbo", direction="min")


def config_for(config, values):
    """`config` with the model and training settings of hyperparameter `values`.

    MLP rungs halve their width per layer from `first_hidden_dim`; conv rungs
    keep `conv_filters` filters and downsample once per layer. Latent sizes (channels for conv) halve per
    layer from `first_latent_dim`, down to 2.
    """
    depth = values["depth"]
    architecture = values.get("architecture", config.model.architecture)
    latent_dims = tuple(max(2, values["first_latent_dim"] >> i) for i in range(depth))
    if architecture == "conv":
        shape = dict(hidden_dims=(values["conv_filters"],) * depth,
                     residual_blocks=values["residual_blocks"], downsample=None)
    else:  # back to the MLP defaults of the conv-only fields
        conv_only = ("residual_blocks", "downsample", "gated", "activation", "kernel_size",
                     "mixture_components", "coupled_means")
        shape = dict(hidden_dims=tuple(max(2, values["first_hidden_dim"] >> i)
                                       for i in range(depth)),
                     **{name: getattr(config_lib.ModelConfig, name) for name in conv_only})
    model = dataclasses.replace(config.model, architecture=architecture,
                                latent_dims=latent_dims, inference=values["inference"], **shape)
    train = dataclasses.replace(config.train, learning_rate=values["learning_rate"],
                                warmup_epochs=values["warmup_epochs"],
                                epochs=config.tune.epochs_per_trial)
    return dataclasses.replace(config, model=model, train=train)


class LadderVAEHyperModel(keras_tuner.HyperModel):
    """Builds a compiled LadderVAE (or ConvLadderVAE) from a trial's hyperparameters.

    Args:
        input_shape: the shape of one image, e.g. `(28, 28, 1)` (a leading None
            batch dimension is accepted too).
        config: an optional `keras_lvae.config.Config`; its `tune` section is the
            search space, its other sections the fixed settings. Default:
            `Config()`, whose `tune` section is a search over depth 1-5, widths,
            latent sizes, learning rate, warm-up and inference type; with
            `tune.architectures=("mlp", "conv")` also over the architecture,
            conv filters and residual blocks.
        steps_per_epoch: training steps per epoch, for the warm-up length in
            steps; by default taken from the data passed to `search` (a
            `tf.data.Dataset` of known size, or an array and its `batch_size`).

    The objective is `OBJECTIVE` (`val_nelbo`, minimised): pass
    `objective=keras_lvae.tuning.OBJECTIVE` to the tuner.
    """

    def __init__(self, input_shape=None, config=None, steps_per_epoch=None, **kwargs):
        super().__init__(**kwargs)
        if input_shape is None or len(tuple(input_shape)) == 0:
            raise ValueError("Invalid value for argument `input_shape`: expected the shape of "
                             f"one image, such as (28, 28, 1), received {input_shape!r}.")
        shape = tuple(input_shape)
        self.input_shape = shape if shape[0] is None else (None, *shape)
        self.config = config_lib.Config() if config is None else config
        self.steps_per_epoch = steps_per_epoch

    def fit(self, hp, model, x=None, *args, **kwargs):
        """`model.fit`, after setting the warm-up length from the data's batches when
        `steps_per_epoch` was not given."""
        if self.steps_per_epoch is None:
            steps = _batches_per_epoch(x, kwargs.get("batch_size"), kwargs.get("steps_per_epoch"))
            model.warmup_steps = hp.values["warmup_epochs"] * steps
        return model.fit(x, *args, **kwargs)

    def declare(self, hp):
        """Declare the search space on `hp`; return the trial's values."""
        tune = self.config.tune
        hp.Choice("depth", list(tune.depths))
        hp.Choice("first_hidden_dim", list(tune.first_hidden_dims))
        hp.Choice("first_latent_dim", list(tune.first_latent_dims))
        if tune.min_learning_rate == tune.max_learning_rate:
            hp.Fixed("learning_rate", tune.min_learning_rate)
        else:
            hp.Float("learning_rate", tune.min_learning_rate, tune.max_learning_rate,
                     sampling="log")
        hp.Choice("warmup_epochs", list(tune.warmup_epochs))
        hp.Choice("inference", list(tune.inference))
        if tune.architectures != ("mlp",):  # (searches of MLPs alone keep their old space)
            hp.Choice("architecture", list(tune.architectures))
            if "conv" in tune.architectures:
                hp.Choice("conv_filters", list(tune.conv_filters))
                hp.Choice("residual_blocks", list(tune.residual_blocks))
        return dict(hp.values)

    def build(self, hp):
        config = config_for(self.config, self.declare(hp))
        model = training.build_model(config, self.steps_per_epoch or 1)  # see fit
        model.build(self.input_shape)  # KerasTuner needs built models
        training.compile_model(model, config, self.steps_per_epoch or 1)
        return model


def _batches_per_epoch(x, batch_size=None, steps_per_epoch=None):
    """Training steps per epoch of `fit`'s data."""
    if steps_per_epoch:
        return steps_per_epoch
    cardinality = getattr(x, "cardinality", None)
    if cardinality is not None:
        count = int(cardinality())
        if count > 0:
            return count
        raise ValueError("Invalid value for argument `x`: a dataset of unknown or infinite size; "
                         "pass steps_per_epoch to LadderVAEHyperModel or to search().")
    return -(-len(x) // (batch_size or 32))  # Keras' default batch size


def tune(config, workdir, log=print):
    """Search `config.tune`'s space in `workdir`, then retrain the best in `workdir/best`.

    Returns (best hyperparameter values, the retrained run's summary from
    `keras_lvae.training.train`). Raises RuntimeError if a trial did not complete.
    """
    d = config.data
    train_ds, validation_ds, _ = training.datasets(config)
    steps_per_epoch = int(train_ds.cardinality())
    if d.validation_split == "test":
        log("warning: tuning on the test split; set data.validation_split=validation")
    hypermodel = LadderVAEHyperModel(inputs.unpack(train_ds.element_spec).shape[1:], config=config,
                                     steps_per_epoch=steps_per_epoch)
    tuner = keras_tuner.RandomSearch(
        hypermodel, objective=OBJECTIVE, max_trials=config.tune.max_trials,
        seed=config.tune.seed, directory=workdir, project_name="search", overwrite=False)
    tuner.search(train_ds, validation_data=validation_ds, epochs=config.tune.epochs_per_trial,
                 verbose=2)
    trials = tuner.oracle.trials.values()
    failed = [t.trial_id for t in trials if t.status != keras_tuner.engine.trial.TrialStatus.COMPLETED]
    if failed:
        raise RuntimeError(f"trials {failed} did not complete (see {workdir}/search)")
    best = tuner.get_best_hyperparameters(1)[0].values
    score = min(t.score for t in trials)
    log(f"best of {len(trials)} trials: val_nelbo {score:.2f} with {best}")
    with atomic_write(os.path.join(workdir, "best_hyperparameters.json")) as file:
        json.dump({"hyperparameters": best, "val_nelbo": score}, file, indent=2)
    retrain = config_for(config, best)
    retrain = dataclasses.replace(retrain, train=dataclasses.replace(
        retrain.train, epochs=config.tune.retrain_epochs))
    log(f"retraining the best configuration for {config.tune.retrain_epochs} epochs")
    return best, training.train(retrain, os.path.join(workdir, "best"), log=log)
