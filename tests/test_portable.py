"""ONNX and LiteRT exports run in their own runtimes (onnxruntime's InferenceSession, LiteRT's
interpreter) and compared with the TensorFlow model's own methods on the same inputs and
noise; the noise path itself is checked against numpy."""

import os
import re
import stat

import numpy as np
import pytest
from scipy import stats

import keras_lvae
from keras_lvae import portable

RNG = np.random.default_rng(0)


def build(architecture, likelihood):
    """A tiny built ladder and a batch of 5 images it takes (uint8 for 8-bit data)."""
    options = dict(latent_dims=(3, 2), seed=1, likelihood=likelihood)
    if likelihood == "logistic_mixture":
        options["mixture_components"] = 2
    channels = 3 if likelihood == "logistic_mixture" else 1
    if architecture == "mlp":
        model = keras_lvae.LadderVAE(hidden_dims=(8, 4), **options)
    else:
        model = keras_lvae.ConvLadderVAE(hidden_dims=(6, 6), downsample=(1, 1),
                                         residual_blocks=1, skip=True, learn_top_prior=True,
                                         **options)
    shape = (5, 4, 4, channels)
    if likelihood == "logistic_mixture":
        images = RNG.integers(0, 256, shape).astype(np.uint8)
        model(images.astype(np.float32) / 255.0)
    else:
        images = RNG.random(shape).astype(np.float32)
        if likelihood == "bernoulli":
            images = (images < 0.5).astype(np.float32)
        model(images)
    return model, images


def reference(model, images, inputs):
    """{function: {output: array}} from the model's public methods (TensorFlow)."""
    x = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images
    layers = model.num_layers
    noise = [inputs["generate"][f"noise_{i + 1}"] for i in range(layers)]
    samples = [inputs["score"][f"noise_{i + 1}"] for i in range(layers)]
    k = samples[0].shape[0]
    log_weights = np.asarray(model.importance_log_weights(x, k, noise=samples), np.float64)
    bound = np.logaddexp.reduce(log_weights, axis=0) - np.log(k)
    encoded = {}
    for i, (mean, variance) in enumerate(model.encode(x)):
        encoded[f"mean_{i + 1}"], encoded[f"variance_{i + 1}"] = mean, variance
    score = {"log_likelihood": bound}
    if model.likelihood_class.eight_bit:
        score["bits_per_dim"] = -bound / (x[0].size * np.log(2.0))
    return {"decode": {"images": model.decode(inputs["decode"]["z_1"])}, "encode": encoded,
            "generate": {"images": model.generate_from_noise(noise)}, "score": score}


def feeds(model, images, batch):
    shapes = model.latent_shapes
    normal = lambda *shape: RNG.standard_normal(shape).astype(np.float32)  # noqa: E731
    return {
        "decode": {"z_1": normal(batch, *shapes[0])},
        "encode": {"images": images[:batch]},
        "generate": {f"noise_{i + 1}": normal(batch, *s) for i, s in enumerate(shapes)},
        "score": {"images": images[:batch],
                  **{f"noise_{i + 1}": normal(7, batch, *s) for i, s in enumerate(shapes)}},
    }


def check_runtimes(model, images, tmp_path):
    import onnxruntime
    from ai_edge_litert.interpreter import Interpreter

    onnx_dir = portable.export_model(model, tmp_path / "model.onnx", "onnx")
    assert sorted(os.listdir(onnx_dir)) == sorted(f"{n}.onnx" for n in portable.FUNCTIONS)
    umask = os.umask(0)
    os.umask(umask)  # a folder others can read, as the SavedModel's (not mkdtemp's 0700)
    assert stat.S_IMODE(os.stat(onnx_dir).st_mode) == 0o777 & ~umask
    litert = Interpreter(model_path=portable.export_model(model, tmp_path / "m.tflite",
                                                         "litert"))
    for batch in (3, 5):  # one graph for any batch size
        inputs = feeds(model, images, batch)
        want = reference(model, images[:batch], inputs)
        for name in portable.FUNCTIONS:
            session = onnxruntime.InferenceSession(os.path.join(onnx_dir, f"{name}.onnx"))
            names = [o.name for o in session.get_outputs()]
            outputs = {"onnx": dict(zip(names, session.run(None, inputs[name]))),
                       "litert": litert.get_signature_runner(name)(**inputs[name])}
            for runtime, got in outputs.items():
                assert sorted(got) == sorted(want[name]), (runtime, name)
                for key, value in want[name].items():
                    np.testing.assert_allclose(got[key], np.asarray(value), rtol=1e-4,
                                               atol=1e-5, err_msg=f"{runtime} {name} {key}")


def test_an_mlp_ladder_in_onnxruntime_and_litert_equals_tensorflow(tmp_path):
    check_runtimes(*build("mlp", "bernoulli"), tmp_path)


@pytest.mark.slow  # about 15 s a case
@pytest.mark.parametrize("architecture, likelihood", [  # MLP ladders: no logistic mixture
    ("mlp", "gaussian"), ("conv", "bernoulli"), ("conv", "gaussian"),
    ("conv", "logistic_mixture")])
def test_every_ladder_and_likelihood_in_onnxruntime_and_litert_equals_tensorflow(
        architecture, likelihood, tmp_path):
    check_runtimes(*build(architecture, likelihood), tmp_path)


def test_the_noise_path_is_the_reparameterised_bound_and_prior_sample():
    """One layer, Bernoulli: log w = log p(x | z) + log N(z; 0, 1) - log N(z; mu, var) at
    z = mu + sd x noise, in numpy; generation from noise decodes the noise (N(0, I) top),
    and zero noise through two layers gives the prior means (temperature 0)."""
    model = keras_lvae.LadderVAE(latent_dims=(3,), hidden_dims=(8,), seed=4)
    x = (RNG.random((4, 6)) < 0.5).astype(np.float32)
    model(x)
    noise = RNG.standard_normal((2, 4, 3)).astype(np.float32)
    got = np.asarray(model.importance_log_weights(x, 2, noise=[noise]))
    mean, variance = (np.asarray(t, np.float64) for t in model.encode(x)[0])
    z = mean + np.sqrt(variance) * noise
    p = np.asarray(model.decode(z.reshape(8, 3).astype(np.float32)), np.float64).reshape(2, 4, 6)
    want = ((x * np.log(p) + (1 - x) * np.log1p(-p)).sum(-1)
            + stats.norm.logpdf(z).sum(-1)
            - stats.norm.logpdf(z, mean, np.sqrt(variance)).sum(-1))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.generate_from_noise([noise[0]]), model.decode(noise[0]),
                               rtol=1e-6)
    deep = keras_lvae.LadderVAE(latent_dims=(3, 2), hidden_dims=(8, 4), seed=5)
    deep(x)
    zeros = [np.zeros((2, 3), np.float32), np.zeros((2, 2), np.float32)]
    np.testing.assert_allclose(deep.generate_from_noise(zeros),
                               deep.generate(2, seed=1, temperature=0.0), rtol=1e-5)


def test_onnxruntime_refuses_inputs_of_the_wrong_dtype_or_shape(tmp_path):
    import onnxruntime

    model, images = build("mlp", "bernoulli")
    folder = portable.export_onnx(model, tmp_path / "onnx")
    session = onnxruntime.InferenceSession(os.path.join(folder, "encode.onnx"))
    with pytest.raises(Exception, match=r"Unexpected input data type. Actual: \(tensor\(double"):
        session.run(None, {"images": images.astype(np.float64)})
    with pytest.raises(Exception, match="images"):
        session.run(None, {"images": np.zeros((2, 5, 4, 1), np.float32)})


def test_bad_arguments_and_a_missing_extra_get_clear_errors(tmp_path, monkeypatch):
    model, _ = build("mlp", "bernoulli")
    with pytest.raises(ValueError, match="argument `format`: expected one of tf_saved_model, "
                                         "onnx, litert, received 'tflite'"):
        portable.export_model(model, tmp_path / "m", "tflite")
    (tmp_path / "taken.tflite").write_bytes(b"")
    with pytest.raises(FileExistsError, match="taken.tflite' exists; exports never overwrite"):
        portable.export_litert(model, tmp_path / "taken.tflite")
    with pytest.raises(ValueError, match="expected a built LadderVAE .* received an unbuilt "
                                         "LadderVAE"):
        portable.export_litert(keras_lvae.LadderVAE(latent_dims=(2,), hidden_dims=(4,)),
                               tmp_path / "unbuilt.tflite")
    import sys

    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # as if not installed
    with pytest.raises(ImportError, match=r'pip install "keras-lvae\[onnx\]" \(missing: tf2onnx'):
        portable.export_onnx(model, tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists()


# ------------------------------------------------ saved_models/README.md's examples
def readme_examples(language):
    from tests.conftest import REPO

    section = (REPO / "saved_models" / "README.md").read_text().split(
        "## ONNX and LiteRT")[1]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """(A model of the quickstart recipe's shape, the folder whose runs/served/ holds its
    ONNX and LiteRT exports, where the main README's export commands put them)."""
    folder = tmp_path_factory.mktemp("exports")
    model = keras_lvae.LadderVAE(latent_dims=(32, 16, 8), hidden_dims=(32, 16, 8), seed=3)
    model(np.zeros((1, 28, 28, 1), np.float32))
    portable.export_model(model, folder / "runs" / "served" / "quickstart.onnx", "onnx")
    portable.export_model(model, folder / "runs" / "served" / "quickstart.tflite", "litert")
    return model, folder


@pytest.mark.slow  # the exports take about 10 s
def test_readme_python_examples_give_what_tensorflow_gives(quickstart, monkeypatch):
    model, folder = quickstart
    monkeypatch.chdir(folder)
    scored, sampled = readme_examples("python")
    namespace = {}
    exec(compile(scored, "saved_models/README.md", "exec"), namespace)
    noise = [namespace["noise"][f"noise_{i + 1}"] for i in range(3)]
    log_weights = np.asarray(model.importance_log_weights(namespace["images"], 100,
                                                          noise=noise), np.float64)
    np.testing.assert_allclose(namespace["bound"],
                               np.logaddexp.reduce(log_weights, axis=0) - np.log(100), rtol=1e-4)
    namespace = {}
    exec(compile(sampled, "saved_models/README.md", "exec"), namespace)
    noise = [namespace["noise"][f"noise_{i + 1}"] for i in range(3)]
    assert namespace["samples"].shape == (4, 28, 28, 1)
    np.testing.assert_allclose(namespace["samples"], model.generate_from_noise(noise),
                               rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # the exports take about 10 s
def test_readme_node_example_generates_what_tensorflow_does(quickstart):
    """Runs where onnxruntime-node is installed (CI: `npm install --ignore-scripts
    onnxruntime-node`, its folder in ONNXRUNTIME_NODE_MODULES)."""
    import json
    import shutil
    import subprocess

    modules = os.environ.get("ONNXRUNTIME_NODE_MODULES")
    if not modules or shutil.which("node") is None:
        pytest.skip("needs node and ONNXRUNTIME_NODE_MODULES (a node_modules folder holding "
                    "onnxruntime-node)")
    model, folder = quickstart
    (folder / "generate.js").write_text(readme_examples("javascript")[0])
    result = subprocess.run(["node", "generate.js", "runs/served/quickstart.onnx"],
                            cwd=folder, env={**os.environ, "NODE_PATH": modules},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["dims"] == [1, 28, 28, 1]
    zeros = [np.zeros((1, d), np.float32) for d in (32, 16, 8)]
    np.testing.assert_allclose(np.reshape(output["pixels"], (1, 28, 28, 1)),
                               model.generate_from_noise(zeros), rtol=1e-4, atol=1e-6)
