import dataclasses
import json

import pytest

from keras_lvae import config as config_lib, data
from keras_lvae.config import Config, DataConfig, ModelConfig, TrainConfig, override


@pytest.mark.parametrize("setting, section, field, value", [
    ("train.epochs=3", "train", "epochs", 3),
    ("train.learning_rate=2e-4", "train", "learning_rate", 2e-4),
    ("train.learning_rate=1", "train", "learning_rate", 1.0),
    ("model.batch_norm=false", "model", "batch_norm", False),
    ("model.batch_norm=True", "model", "batch_norm", True),
    ("model.latent_dims=32,16,8", "model", "latent_dims", (32, 16, 8)),
    ("model.latent_dims=[32, 16, 8]", "model", "latent_dims", (32, 16, 8)),
    ("data.data_dir=none", "data", "data_dir", None),
    ("data.data_dir=../shared/data", "data", "data_dir", "../shared/data"),
    ("model.inference=bottom_up", "model", "inference", "bottom_up"),
    ("tune.inference=ladder", "tune", "inference", ("ladder",)),
    ("tune.warmup_epochs=0,2", "tune", "warmup_epochs", (0, 2)),
    (" fine_tune.iw_samples = 5 ", "fine_tune", "iw_samples", 5),
])
def test_overrides_are_parsed_by_the_field_type(setting, section, field, value):
    base = Config(model=ModelConfig(latent_dims=(32, 16, 8), hidden_dims=(64, 32, 16)))
    changed = override(base, [setting])
    got = getattr(getattr(changed, section), field)
    assert got == value and type(got) is type(value)
    # Everything else is untouched.
    restored = dataclasses.replace(changed, **{section: getattr(base, section)})
    assert restored == base


@pytest.mark.parametrize("setting, message", [
    ("train.epoch=3", "unknown key `train.epoch`; did you mean `train.epochs`?"),
    ("training.epochs=3", "unknown key `training.epochs`"),
    ("epochs=3", "expected SECTION.FIELD=VALUE"),
    ("train.epochs", "expected SECTION.FIELD=VALUE"),
    ("train.epochs=3.5", "`train.epochs` expects an int, received '3.5'"),
    ("train.epochs=ten", "`train.epochs` expects an int, received 'ten'"),
    ("train.epochs=none", "`train.epochs` expects an int, received 'none'"),
    ("model.batch_norm=yes", "`model.batch_norm` expects true or false, received 'yes'"),
    ("model.inference=topdown", "expects one of 'ladder', 'bottom_up', received 'topdown'"),
    ("model.latent_dims=8,x", "expects a comma-separated list of ints, received '8,x'"),
    ("train.learning_rate=fast", "expects a number, received 'fast'"),
    ("data.data_dir=", "`data.data_dir` expects a string or none, received ''"),
    ("train.epochs=0", "Invalid value for `train.epochs`: expected positive values, received 0"),
    ("train.learning_rate=-1", "`train.learning_rate`: expected positive values"),
    ("train.warmup_epochs=-1", "`train.warmup_epochs`: expected non-negative values"),
    ("model.latent_dims=8,0", "`model.latent_dims`: expected positive values"),
    ("model.latent_dims=8,4", "`model.hidden_dims`: expected one entry per stochastic layer"),
    ("data.dataset=cifar", "`data.dataset`: expected one of ['binarized_mnist'"),
    ("fine_tune.decay_factor=1.5", "`fine_tune.decay_factor`: expected a number in (0, 1]"),
    ("tune.inference=ladder,vae", "`tune.inference`: expected values from"),
])
def test_bad_overrides_are_refused_with_the_setting_named(setting, message):
    with pytest.raises(ValueError) as error:
        override(Config(), [setting])
    assert message in str(error.value)


@pytest.mark.parametrize("section, bad, message", [
    (TrainConfig, dict(epochs="3"), "`train.epochs`: expected an int, received '3'"),
    (TrainConfig, dict(epochs=True), "`train.epochs`: expected an int, received True"),
    (ModelConfig, dict(latent_dims=[8, 4], hidden_dims=[8, 4]), "`model.latent_dims`"),
    (ModelConfig, dict(inference="vae"), "`model.inference`: expected one of"),
    (DataConfig, dict(batch_size=0), "`data.batch_size`: expected positive values"),
])
def test_recipes_with_wrong_types_are_refused(section, bad, message):
    name = {TrainConfig: "train", ModelConfig: "model", DataConfig: "data"}[section]
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        Config(**{name: section(**bad)})


def test_dict_round_trip_and_refusal_of_unknown_keys():
    config = override(Config(), ["model.latent_dims=8,4", "model.hidden_dims=16,8",
                                 "data.data_dir=/data", "train.learning_rate=0.002"])
    stored = json.loads(json.dumps(config_lib.to_dict(config)))
    assert config_lib.from_dict(stored) == config
    stored["train"]["epochz"] = 3
    with pytest.raises(ValueError, match=r"unknown keys \['train.epochz'\]"):
        config_lib.from_dict(stored)


def test_dataset_names_agree_with_the_data_module():
    colour = ModelConfig(architecture="conv", likelihood="logistic_mixture",
                         latent_dims=(8, 4), hidden_dims=(16, 16))
    for name in data.list_datasets():
        size = 16 if data.SOURCES[name].user_folder else None  # image_folder, image_tiles
        model = colour if data.image_shape(name, size)[-1] == 3 else ModelConfig()
        config = Config(data=DataConfig(dataset=name, image_size=size), model=model)
        assert config.data.dataset == name


def test_colour_data_need_a_colour_likelihood_and_image_folder_a_size():
    with pytest.raises(ValueError, match=r"data.dataset=cifar10 has 8-bit colour images; "
                                         r"model.likelihood=bernoulli .* use logistic_mixture"):
        Config(data=DataConfig(dataset="cifar10"))
    with pytest.raises(ValueError, match=r"`data.image_size`: .*image_folder needs .*received None"):
        Config(data=DataConfig(dataset="image_folder"), model=ModelConfig(likelihood="gaussian"))
    with pytest.raises(ValueError, match=r"`data.image_size`: .*only image_folder is resized"):
        Config(data=DataConfig(dataset="mnist", image_size=28))


def test_every_key_is_listed_once():
    keys = config_lib.keys()
    assert len(keys) == len(set(keys)) and "train.epochs" in keys and "tune.depths" in keys


@pytest.mark.parametrize("content, message", [
    ("CONFIG = 3\n", "expected a module-level CONFIG = keras_lvae.config.Config"),
    ("X = 1\n", "found NoneType"),
])
def test_load_recipe_refuses_files_without_a_config(tmp_path, content, message):
    path = tmp_path / "recipe.py"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        config_lib.load_recipe(path)
    with pytest.raises(ValueError, match="RECIPE: expected the path of a recipe .py file"):
        config_lib.load_recipe(tmp_path / "missing.py")


@pytest.mark.parametrize("setting, message", [
    ("model.gated=true", "model.gated applies to model.architecture=conv only"),
    ("model.residual_blocks=3", "model.residual_blocks applies to model.architecture=conv"),
])
def test_conv_settings_are_refused_for_mlp_models(setting, message):
    with pytest.raises(ValueError, match=message):
        override(Config(), [setting])


def test_conv_settings_build_a_conv_ladder():
    from keras_lvae.models import ConvLadderVAE

    config = override(Config(), ["model.architecture=conv", "model.latent_dims=4,2",
                                 "model.hidden_dims=8,8", "model.downsample=0,1",
                                 "model.free_bits=0", "model.skip=true"])
    model_class, arguments = config.model.model_arguments()
    assert model_class is ConvLadderVAE
    assert (arguments["downsample"], arguments["free_bits"], arguments["skip"]) == (
        (0, 1), 0.0, True)
    with pytest.raises(ValueError, match="model.downsample"):
        override(config, ["model.downsample=1"])
    with pytest.raises(ValueError, match="model.dense_per_block applies to model.architecture=mlp"):
        override(config, ["model.dense_per_block=3"])


# The constructor options that `lvae train` sets from the train section, not the model one
# (and row_halves, from the CPU threads: keras_lvae.threads.ops_run_side_by_side).
TRAIN_SECTION_OPTIONS = {"warmup_steps", "mc_samples", "iw_samples", "skip_nonfinite_steps",
                         "skip_threshold", "adaptive_skip_factor", "adaptive_skip_window",
                         "ema_decay", "seed", "row_halves"}


def test_the_model_section_is_the_constructors_options():
    """Each model option is declared in the constructor; the config's model section, the
    conv-only list and `get_config` follow it. A new constructor option fails here until
    a recipe can set it (a field of ModelConfig, or a train option above)."""
    import inspect

    from keras_lvae.models import ConvLadderVAE, LadderVAE
    from keras_lvae.models._arguments import constructor_arguments

    fields = {f.name: f.default for f in dataclasses.fields(ModelConfig) if f.name != "architecture"}
    mlp, conv = set(constructor_arguments(LadderVAE)), set(constructor_arguments(ConvLadderVAE))
    assert set(fields) == (mlp | conv) - TRAIN_SECTION_OPTIONS
    assert set(config_lib.CONV_ONLY) == conv - mlp == {
        "residual_blocks", "downsample", "gated", "activation", "kernel_size",
        "mixture_components", "coupled_means"}
    for name, value in fields.items():  # the defaults of the MLP ladder, then the conv one's
        owner = LadderVAE if name in mlp else ConvLadderVAE
        default = inspect.signature(owner.__init__).parameters[name].default
        assert value == (tuple(default) if isinstance(default, list) else default), name
    for model_class, names in ((LadderVAE, mlp), (ConvLadderVAE, conv)):
        assert names <= set(model_class(latent_dims=(2,), hidden_dims=(4,)).get_config())
