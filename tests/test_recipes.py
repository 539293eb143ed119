"""Every recipe loads, builds its model and can be run as a script."""

import subprocess
import sys

import numpy as np
import pytest

from keras_lvae import data, training
from keras_lvae.config import Config, load_recipe

from .conftest import REPO

RECIPES = sorted(p for p in (REPO / "recipes").glob("*.py") if not p.name.startswith("_"))


def test_the_promised_recipes_exist():
    assert {p.stem for p in RECIPES} >= {"quickstart", "mnist_paper", "omniglot", "norb",
                                         "binarized_mnist", "tune_mnist", "mnist_serving",
                                         "colour_quickstart", "cifar10"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_loads_and_builds_its_model(path):
    config = load_recipe(path)
    assert isinstance(config, Config)
    shape = data.image_shape(config.data.dataset, config.data.image_size)
    model = training.build_model(config, steps_per_epoch=10)
    model.build((None,) + shape)
    training.compile_model(model, config, steps_per_epoch=10)
    assert model.latent_dims == config.model.latent_dims
    assert model.warmup_steps == config.train.warmup_epochs * 10
    x = (np.random.default_rng(0).random((2,) + shape) < 0.5).astype("float32")
    assert tuple(model(x).shape) == x.shape


def test_paper_recipe_is_the_paper_protocol():
    config = load_recipe(REPO / "recipes" / "mnist_paper.py")
    assert (config.data.dataset, config.data.batch_size) == ("mnist", 256)
    assert config.model.latent_dims == (64, 32, 16, 8, 4)
    assert config.model.hidden_dims == (512, 256, 128, 64, 32)
    assert (config.train.epochs, config.train.warmup_epochs) == (2000, 200)
    fine_tune = config.fine_tune
    assert (fine_tune.epochs, fine_tune.mc_samples, fine_tune.iw_samples,
            fine_tune.decay_every_epochs, fine_tune.decay_factor) == (2000, 10, 10, 200, 0.75)


def test_a_recipe_runs_as_a_script_with_overrides():
    """`python recipes/quickstart.py --set ...` is `lvae train` on it: a bad key is refused
    with the same message."""
    result = subprocess.run([sys.executable, str(REPO / "recipes" / "quickstart.py"), "--set",
                             "train.epoch=1"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "did you mean `train.epochs`?" in result.stderr


def test_conv_recipe_is_the_pytorch_lvae_mnist_configuration():
    m, t = (getattr(load_recipe(REPO / "recipes" / "conv_static_mnist.py"), s)
            for s in ("model", "train"))
    assert (m.architecture, m.latent_dims, m.hidden_dims, m.residual_blocks, m.downsample) == (
        "conv", (32, 32, 32), (64, 64, 64), 4, (2, 1, 1))
    assert (m.gated, m.activation, m.skip, m.free_bits, m.learn_top_prior) == (
        True, "elu", True, 0.5, True)
    assert (t.optimizer, t.learning_rate, t.warmup_epochs, t.seed) == ("adamax", 3e-4, 0, 42)
    small = load_recipe(REPO / "recipes" / "conv_static_mnist_small.py").model
    assert (small.hidden_dims, small.residual_blocks) == ((32, 32, 32), 2)
    assert small.latent_dims == m.latent_dims and small.skip and small.gated


def test_cifar10_recipe_is_the_pytorch_lvae_cifar_configuration():
    """15 layers of 32 channels, 64 filters, 4 gated blocks, top maps 2 x 2 after the stem and
    three halvings, skip, learned top prior, free bits 1.0, 10 coupled logistics, Adamax 3e-4."""
    config = load_recipe(REPO / "recipes" / "cifar10.py")
    m, t = config.model, config.train
    assert (config.data.dataset, config.data.batch_size) == ("cifar10", 64)
    assert (m.latent_dims, m.hidden_dims, m.residual_blocks) == ((32,) * 15, (64,) * 15, 4)
    assert sum(m.downsample) == 4 and m.downsample[0] == 1
    assert (m.gated, m.activation, m.skip, m.learn_top_prior, m.free_bits) == (
        True, "elu", True, True, 1.0)
    assert (m.likelihood, m.mixture_components, m.coupled_means) == ("logistic_mixture", 10, True)
    assert (t.optimizer, t.learning_rate, t.warmup_epochs) == ("adamax", 3e-4, 0)
    model = training.build_model(config, steps_per_epoch=1)
    model.build((None, 32, 32, 3))
    assert model.latent_shapes[-1] == (2, 2, 32) and model.latent_shapes[0] == (16, 16, 32)
