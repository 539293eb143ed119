"""Run configurations: what `lvae train` and `lvae tune` read from a recipe.

A recipe is a Python file that defines `CONFIG = Config(...)`. Sections hold
the data, the model's architecture, the training run, the optional fine-tuning
stage and the tuning search. Every field has a type; `override` applies
command-line settings such as `train.epochs=3`, parsed by that type, and
refuses unknown keys and values of the wrong type.

Example:
>>> config = Config(model=ModelConfig(latent_dims=(8, 4), hidden_dims=(32, 16)))
>>> config = override(config, ["train.epochs=3", "model.inference=bottom_up"])
>>> config.train.epochs, config.model.inference
(3, 'bottom_up')
>>> override(config, ["train.epoch=3"])
Traceback (most recent call last):
...
ValueError: --set train.epoch=3: unknown key `train.epoch`; did you mean `train.epochs`?
"""

import dataclasses
import difflib
import importlib.util
import json
import os
import typing
from typing import Literal, Optional

from keras_lvae import _checks, data, likelihoods
from keras_lvae.models import ConvLadderVAE, LadderVAE
from keras_lvae.models._arguments import constructor_arguments
from keras_lvae.models.ladder_vae import INFERENCE_TYPES

# The model options only the conv ladder takes, from the constructors themselves.
CONV_ONLY = tuple(name for name in constructor_arguments(ConvLadderVAE)
                  if name not in constructor_arguments(LadderVAE))


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are batched."""
    dataset: str = "mnist_5k"          # a name from keras_lvae.data.list_datasets()
    data_dir: Optional[str] = None     # raw files; None: $KERAS_LVAE_DATA_DIR, else tfds
    batch_size: int = 256              # the global batch (all replicas together)
    validation_split: Literal["test", "validation"] = "test"  # what fit's val_* metrics use;
                                       # the paper reports test numbers, tuning needs validation
    validation_size: int = 0           # hold out the last N training images as the validation
                                       # split (binarized_mnist has its own: leave 0)
    image_size: Optional[int] = None   # image_folder only: the side its images are resized to
    drop_remainder: bool = False       # True: every training batch full (leftovers logged);
                                       # False: the last batch of an epoch is smaller
    random_flips: bool = False         # mirror training images left-right at random


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The model's architecture (the `get_config` of LadderVAE or ConvLadderVAE)."""
    architecture: Literal["mlp", "conv"] = "mlp"  # conv: ConvLadderVAE, spatial latents
    latent_dims: tuple[int, ...] = (64, 32, 16, 8, 4)       # z_1 (bottom) ... z_L (top); conv:
                                                            # channels per latent feature map
    hidden_dims: tuple[int, ...] = (512, 256, 128, 64, 32)  # MLP width / conv filters per rung
    inference: Literal["ladder", "bottom_up"] = "ladder"    # bottom_up: the VAE baseline
    batch_norm: bool = True
    dense_per_block: int = 2           # mlp only
    likelihood: Literal["bernoulli", "gaussian", "logistic_mixture"] = "bernoulli"  # the last:
                                       # 8-bit pixels (conv only), reports in bits/dim too
    share_top_down: bool = True        # ladder inference reuses p(z_i | z_i+1)'s top-down path
    skip: bool = False                 # p(z_i | z_>i) sees the features of the rung above too
    free_bits: float = 0.0             # KL floor in nats per layer and example (0: off)
    kl_balance: bool = False           # NVAE's KL balancing during the warm-up
    learn_top_prior: bool = False      # p(z_L) = N(mean, variance), trained
    residual_blocks: int = 2           # conv only: residual blocks per rung
    downsample: Optional[tuple[int, ...]] = None  # conv only: factor-2 steps per rung; none: 1s
    gated: bool = False                # conv only: gated residual branches
    activation: Literal["elu", "swish", "leaky_relu"] = "elu"  # conv only
    kernel_size: int = 3               # conv only
    mixture_components: int = 10       # conv only: components of the logistic mixture
    coupled_means: bool = True         # conv only: the mixture's channel-coupled means
    num_classes: Optional[int] = None  # N: class-conditional p(x, z | y), trained on the
                                       # dataset's labels 0 ... N-1; none: unconditional

    def model_arguments(self):
        """(model class, its keyword arguments) for this architecture: the fields its
        constructor takes (the constructor is where each option is declared)."""
        model_class = LadderVAE if self.architecture == "mlp" else ConvLadderVAE
        names = constructor_arguments(model_class)
        return model_class, {field.name: getattr(self, field.name)
                             for field in dataclasses.fields(self) if field.name in names}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The training run: optimiser, warm-up, seeds, logging."""
    epochs: int = 10
    learning_rate: float = 1e-3
    optimizer: Literal["adam", "adamax"] = "adam"  # adamax: the PyTorch LVAE's
    warmup_epochs: int = 1             # beta rises linearly from 0 to 1 over these epochs
    mc_samples: int = 1                # Monte Carlo samples per example
    iw_samples: int = 1                # importance samples; >1 trains on L_k
    seed: int = 0                      # seeds the weights, the noise and the data order
    jit_compile: bool = False          # XLA: worth it on GPUs, not on this CPU
    steps_per_execution: Optional[int] = None  # steps per call of Keras' train function (a
                                       # divisor of the epoch's); none: 32 for MLP ladders
                                       # (their steps are short), 1 for conv ladders
    strategy: Literal["none", "mirrored", "multi_worker"] = "none"
    skip_nonfinite_steps: bool = False  # skip (and count) steps with NaN/Inf loss or gradients
    global_clipnorm: float = 0.0       # > 0: the optimizer clips the global gradient norm
    skip_threshold: float = 0.0        # > 0: skip updates whose gradient norm exceeds it
    adaptive_skip_factor: float = 0.0  # > 0: skip above this multiple of the 0.95 quantile of
    adaptive_skip_window: int = 200    # ... the last this many gradient norms
    ema_decay: float = 0.0             # > 0: keep a moving average of the weights (e.g. 0.999),
                                       # used by validation, evaluate, sample and export
    eval_samples: int = 100            # k of the test L_k printed at the end; 0 skips it
    sample_every_epochs: int = 1       # prior-sample images in TensorBoard; 0 never
    keep_epochs: Optional[tuple[int, ...]] = None  # keep snapshots/epoch_<N>.npz of these epochs
    keep_every_epochs: int = 0         # ... and of every N-th epoch; 0 never


@dataclasses.dataclass(frozen=True)
class FineTuneConfig:
    """An optional second stage after `train.epochs` (the paper's fine-tuning)."""
    epochs: int = 0                    # 0: no fine-tuning
    mc_samples: int = 10
    iw_samples: int = 10               # the loss is -L_10
    decay_every_epochs: int = 200      # learning rate x decay_factor every this many epochs
    decay_factor: float = 0.75


@dataclasses.dataclass(frozen=True)
class TuneConfig:
    """The KerasTuner search of `lvae tune` (keras_lvae.tuning.LadderVAEHyperModel)."""
    max_trials: int = 10
    epochs_per_trial: int = 10
    retrain_epochs: int = 50           # the best configuration is then trained for this long
    seed: int = 1                      # KerasTuner ignores 0
    depths: tuple[int, ...] = (1, 2, 3, 4, 5)
    first_hidden_dims: tuple[int, ...] = (128, 256, 512)  # layer 1's width; halved per layer
    first_latent_dims: tuple[int, ...] = (16, 32, 64)     # z_1's size; halved per layer, >= 2
    min_learning_rate: float = 1e-4    # sampled log-uniformly
    max_learning_rate: float = 3e-3
    warmup_epochs: tuple[int, ...] = (0, 1, 5)
    inference: tuple[str, ...] = INFERENCE_TYPES
    architectures: tuple[str, ...] = ("mlp",)  # add "conv" to search ConvLadderVAEs too
    conv_filters: tuple[int, ...] = (16, 32)   # conv: filters of every rung
    residual_blocks: tuple[int, ...] = (1, 2)  # conv: residual blocks per rung


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole run. Sections: data, model, train, fine_tune, tune."""
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    fine_tune: FineTuneConfig = FineTuneConfig()
    tune: TuneConfig = TuneConfig()

    def __post_init__(self):
        validate(self)


SECTIONS = {field.name: field.type for field in dataclasses.fields(Config)}
_POSITIVE = {"data.batch_size", "model.dense_per_block", "train.epochs", "train.mc_samples",
             "train.iw_samples", "fine_tune.mc_samples", "fine_tune.iw_samples",
             "fine_tune.decay_every_epochs", "tune.max_trials", "tune.epochs_per_trial",
             "tune.retrain_epochs", "tune.seed", "train.keep_epochs", "model.residual_blocks",
             "model.kernel_size", "train.adaptive_skip_window", "model.mixture_components",
             "train.steps_per_execution"}
_MAY_BE_ZERO = {"tune.warmup_epochs", "model.free_bits", "model.downsample", "train.ema_decay",
                "train.global_clipnorm", "train.skip_threshold", "train.adaptive_skip_factor"}  # lists and floats that may hold 0


def _types(section_class):
    return typing.get_type_hints(section_class)


def _describe(kind):
    """How a type reads in an error message."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        return "a comma-separated list of " + {int: "ints", str: "strings"}[args[0]]
    if origin is typing.Union:
        return f"{_describe(args[0])} or none"
    return {int: "an int", float: "a number", bool: "true or false", str: "a string"}[kind]


def _is_instance(value, kind):
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Literal:
        return value in args
    if origin is tuple:
        return isinstance(value, tuple) and len(value) > 0 and all(
            _is_instance(v, args[0]) for v in value)
    if origin is typing.Union:
        return value is None or _is_instance(value, args[0])
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _parse(text, kind):
    """`text` as a value of type `kind`, or ValueError."""
    if not text:
        raise ValueError("empty value")
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Union:
        return None if text.lower() in ("none", "null") else _parse(text, args[0])
    if origin is tuple:
        items = [item.strip() for item in text.strip("()[] ").split(",") if item.strip()]
        return tuple(_parse(item, args[0]) for item in items)
    if kind is bool:
        if text.lower() not in ("true", "false"):
            raise ValueError
        return text.lower() == "true"
    if kind is int:
        return int(text)
    if kind is float:
        return float(text)
    return text  # str and Literal; Literal values are checked by _is_instance


def validate(config):
    """Raise ValueError naming the first field of `config` with a wrong type or value."""
    for section_name, section_class in SECTIONS.items():
        section = getattr(config, section_name)
        if not isinstance(section, section_class):
            raise ValueError(f"Invalid config section `{section_name}`: expected a "
                             f"{section_class.__name__}, received {section!r}.")
        for name, kind in _types(section_class).items():
            key, value = f"{section_name}.{name}", getattr(section, name)
            if not _is_instance(value, kind):
                raise ValueError(f"Invalid value for `{key}`: expected {_describe(kind)}, "
                                 f"received {value!r}.")
            numbers = value if isinstance(value, tuple) else (value,)
            if any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
                minimum = 1 if key in _POSITIVE or (
                    kind == tuple[int, ...] and key not in _MAY_BE_ZERO) else 0
                if any(v < minimum for v in numbers) or (
                        kind is float and value <= 0 and key not in _MAY_BE_ZERO):
                    expected = "positive" if minimum or kind is float else "non-negative"
                    raise ValueError(f"Invalid value for `{key}`: expected {expected} values, "
                                     f"received {value!r}.")
    if config.data.dataset not in data.list_datasets():
        raise ValueError(f"Invalid value for `data.dataset`: expected one of "
                         f"{data.list_datasets()}, received {config.data.dataset!r}.")
    try:
        shape = data.image_shape(config.data.dataset, config.data.image_size)
    except ValueError as error:
        raise ValueError(f"Invalid value for `data.image_size`: {error}") from None
    model = config.model
    if shape[-1] == 3 and likelihoods.get(model.likelihood).binary:
        raise ValueError(f"Invalid config: data.dataset={config.data.dataset} has 8-bit colour "
                         "images; model.likelihood=bernoulli is for binary pixels: use "
                         "logistic_mixture (with model.architecture=conv) or gaussian.")
    _checks.one_per_layer("model.hidden_dims", model.hidden_dims, "model.latent_dims",
                          model.latent_dims)
    conv_only = [name for name in CONV_ONLY if getattr(model, name) != getattr(ModelConfig, name)]
    if model.likelihood not in LadderVAE.LIKELIHOODS:
        conv_only.append(f"likelihood={model.likelihood}")
    if model.architecture == "mlp" and conv_only:
        raise ValueError(f"Invalid config: model.{conv_only[0]} applies to "
                         "model.architecture=conv only; this model is mlp.")
    if model.architecture == "conv" and model.dense_per_block != ModelConfig.dense_per_block:
        raise ValueError("Invalid config: model.dense_per_block applies to "
                         "model.architecture=mlp only; conv rungs have model.residual_blocks.")
    if model.architecture == "conv" and model.downsample is not None:
        _checks.one_per_layer("model.downsample", model.downsample, "model.latent_dims",
                              model.latent_dims)
    if config.train.ema_decay >= 1:
        raise ValueError("Invalid value for `train.ema_decay`: expected a number in [0, 1), "
                         f"received {config.train.ema_decay!r}.")
    if config.fine_tune.decay_factor > 1:
        raise ValueError("Invalid value for `fine_tune.decay_factor`: expected a number in "
                         f"(0, 1], received {config.fine_tune.decay_factor!r}.")
    tune = config.tune
    if tune.min_learning_rate > tune.max_learning_rate:
        raise ValueError("Invalid value for `tune.min_learning_rate`: expected at most "
                         f"tune.max_learning_rate ({tune.max_learning_rate}), received "
                         f"{tune.min_learning_rate}.")
    if not set(tune.inference) <= set(INFERENCE_TYPES):
        raise ValueError(f"Invalid value for `tune.inference`: expected values from "
                         f"{list(INFERENCE_TYPES)}, received {list(tune.inference)}.")
    if not set(tune.architectures) <= {"mlp", "conv"}:
        raise ValueError("Invalid value for `tune.architectures`: expected values from "
                         f"['mlp', 'conv'], received {list(tune.architectures)}.")
    if max(tune.depths) > 8:
        raise ValueError("Invalid value for `tune.depths`: expected depths of at most 8 "
                         f"(sizes halve per layer), received {list(tune.depths)}.")


def keys():
    """Every settable key, such as `train.epochs`."""
    return [f"{section}.{name}" for section, cls in SECTIONS.items() for name in _types(cls)]


def override(config, settings):
    """A copy of `config` with each `section.field=value` of `settings` applied.

    Values are parsed by the field's type (ints, numbers, true/false, none for
    optional fields, comma-separated lists); an unknown key or a value that
    does not parse raises a ValueError naming the setting.
    """
    sections = {name: {} for name in SECTIONS}
    for setting in settings:
        key, separator, text = setting.partition("=")
        section, _, name = key.strip().partition(".")
        if not separator or not name:
            raise ValueError(f"--set {setting}: expected SECTION.FIELD=VALUE, such as "
                             "train.epochs=3")
        field_types = _types(SECTIONS[section]) if section in SECTIONS else {}
        if name not in field_types:
            close = difflib.get_close_matches(key.strip(), keys(), n=1)
            hint = f"did you mean `{close[0]}`?" if close else f"known keys: {', '.join(keys())}"
            raise ValueError(f"--set {setting}: unknown key `{key.strip()}`; {hint}")
        kind = field_types[name]
        try:
            value = _parse(text.strip(), kind)
            parsed = _is_instance(value, kind)
        except ValueError:
            parsed = False
        if not parsed:
            raise ValueError(f"--set {setting}: `{key.strip()}` expects {_describe(kind)}, "
                             f"received {text.strip()!r}")
        sections[section][name] = value
    try:
        return Config(**{name: dataclasses.replace(getattr(config, name), **changes)
                         for name, changes in sections.items()})
    except ValueError as error:
        raise ValueError(f"--set: {error}") from None


def to_dict(config):
    """A JSON-ready dict of `config` (lists for tuples)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_dict(values):
    """The Config of a `to_dict` dict (e.g. a run's config.json), checked like a recipe."""
    sections = {}
    for name, section_class in SECTIONS.items():
        given = dict(values.get(name, {}))
        types = _types(section_class)
        unknown = sorted(set(given) - set(types))
        if unknown:
            raise ValueError(f"config: unknown keys {[f'{name}.{k}' for k in unknown]}")
        for key, value in given.items():
            kind = types[key]
            if typing.get_origin(kind) is typing.Union:  # Optional[...]
                kind = typing.get_args(kind)[0]
            if typing.get_origin(kind) is tuple and isinstance(value, list):
                given[key] = tuple(value)
        sections[name] = section_class(**given)
    return Config(**sections)


def load_recipe(path):
    """The `CONFIG` of the recipe file at `path` (a Python file)."""
    path = os.fspath(path)
    if not path.endswith(".py") or not os.path.isfile(path):
        raise ValueError(f"RECIPE: expected the path of a recipe .py file (such as "
                         f"recipes/quickstart.py), received {path!r}")
    name = "lvae_recipe_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = getattr(module, "CONFIG", None)
    if not isinstance(config, Config):
        raise ValueError(f"RECIPE {path!r}: expected a module-level CONFIG = "
                         f"keras_lvae.config.Config(...), found {type(config).__name__}")
    return config
