"""SavedModel export: signatures equal the Keras model, in a process with only TensorFlow."""

import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format  # noqa: F401  (ships with TensorFlow)

import keras_lvae
import keras_lvae_cli
from keras_lvae.export import (DEFAULT_SCORE_CHUNK, SIGNATURES, anomaly_function,
                               export_saved_model, score_function)
from keras_lvae.ood import skip_bounds

RNG = np.random.default_rng(11)
SHAPE = (6, 6, 1)
X = (RNG.random((40, *SHAPE)) < 0.4).astype("float32")
SEED = np.array([7, 3], np.int32)

# Runs in a fresh interpreter that imports TensorFlow only: loads the SavedModel, calls every
# signature, and saves the outputs (and which packages got imported) for the test to compare.
TF_ONLY_CLIENT = r"""
import sys
import numpy as np
import tensorflow as tf
path, inputs_path, outputs_path = sys.argv[1:]
inputs = np.load(inputs_path)
loaded = tf.saved_model.load(path)
s = loaded.signatures
def all_variables():
    return np.concatenate([v.numpy().ravel().astype("float64") for v in loaded.model_variables])
outputs = {"variables_before": all_variables()}
calls = {
    "score": dict(images=inputs["x"], num_samples=np.int32(130), seed=inputs["seed"]),
    "encode": dict(images=inputs["x"]),
    "reconstruct": dict(images=inputs["x"]),
    "decode": dict(z_1=inputs["z"]),
    "generate": dict(num_samples=np.int32(5), seed=inputs["seed"]),
    "generate_at_temperature": dict(num_samples=np.int32(5), seed=inputs["seed"],
                                    temperature=np.array([0.5, 1.0, 0.0], np.float32)),
    "serving_default": dict(images=inputs["x"], num_samples=np.int32(130), seed=inputs["seed"]),
    "interpolate": dict(images_a=inputs["x"][:3], images_b=inputs["x"][3:6], steps=np.int32(5),
                        layer=np.int32(2)),
    "anomaly_score": dict(images=inputs["x"], num_samples=np.int32(70), seed=inputs["seed"]),
}
for name, kwargs in calls.items():
    result = s[name](**{k: tf.constant(v) for k, v in kwargs.items()})
    for key, value in result.items():
        outputs[f"{name}/{key}"] = value.numpy()
outputs["generate_again/images"] = s["generate"](
    num_samples=tf.constant(5), seed=tf.constant(inputs["seed"]))["images"].numpy()
outputs["variables_after"] = all_variables()
imported = [m for m in sys.modules if m.split(".")[0] in ("keras_lvae", "tensorflow_probability")]
outputs["imported"] = np.array(imported or ["none"])
np.savez(outputs_path, **outputs)
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(0)  # fit shuffles with the global RNG: same weights in any test order
    model = keras_lvae.LadderVAE(latent_dims=(4, 3, 2), hidden_dims=(16, 12, 8), seed=5)
    model.compile(optimizer="adam")
    model.fit(X, batch_size=20, epochs=2, verbose=0)  # non-trivial batch-norm statistics
    base = tmp_path_factory.mktemp("served") / "tiny"
    return model, export_saved_model(model, base)


@pytest.fixture(scope="module")
def tf_only_outputs(exported, tmp_path_factory):
    _, path = exported
    work = tmp_path_factory.mktemp("client")
    z = RNG.normal(size=(3, 4)).astype("float32")
    np.savez(work / "inputs.npz", x=X[:9], z=z, seed=SEED)
    result = subprocess.run(
        [sys.executable, "-c", TF_ONLY_CLIENT, path, work / "inputs.npz", work / "out.npz"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(np.load(work / "out.npz")), z


@pytest.mark.slow  # over 10 s
def test_loads_with_tensorflow_only(tf_only_outputs):
    outputs, _ = tf_only_outputs
    assert list(outputs["imported"]) == ["none"]
    # No signature writes a variable (seed states, batch-norm statistics): safe for
    # concurrent requests.
    np.testing.assert_array_equal(outputs["variables_before"], outputs["variables_after"])


@pytest.mark.slow  # over 10 s
def test_deterministic_signatures_equal_the_keras_model(exported, tf_only_outputs):
    model, _ = exported
    outputs, z = tf_only_outputs
    for i, (mean, variance) in enumerate(model.encode(X[:9])):
        np.testing.assert_allclose(outputs[f"encode/mean_{i + 1}"], mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(outputs[f"encode/variance_{i + 1}"], variance, rtol=1e-5)
    np.testing.assert_allclose(outputs["reconstruct/reconstruction"], model(X[:9]), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(outputs["decode/images"], model.decode(z), rtol=1e-5, atol=1e-6)
    assert outputs["reconstruct/reconstruction"].shape == (9, *SHAPE)
    np.testing.assert_allclose(outputs["interpolate/images"],
                               model.interpolate(X[:3], X[3:6], steps=5, layer=2),
                               rtol=1e-5, atol=1e-6)
    assert outputs["interpolate/images"].shape == (3, 5, *SHAPE)


@pytest.mark.slow  # over 10 s
def test_sampling_signatures_equal_the_keras_model_with_the_same_seed(exported, tf_only_outputs):
    model, _ = exported
    outputs, _ = tf_only_outputs
    seed = tf.constant(SEED)
    np.testing.assert_allclose(outputs["generate/images"], model.generate_stateless(5, seed),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(outputs["generate/images"], outputs["generate_again/images"])
    np.testing.assert_allclose(outputs["generate_at_temperature/images"],
                               model.generate_stateless(5, seed, [0.5, 1.0, 0.0]),
                               rtol=1e-5, atol=1e-6)
    want = score_function(model)(tf.constant(X[:9]), tf.constant(130), seed)
    for key in ("elbo", "log_likelihood"):
        np.testing.assert_allclose(outputs[f"score/{key}"], want[key], rtol=1e-5)
        np.testing.assert_array_equal(outputs[f"serving_default/{key}"], outputs[f"score/{key}"])
    # anomaly_score: the Python computation with the same seeds, which is ood_scores' -L
    # and L - L^{>k} of the bounds drawn with that seed.
    want = anomaly_function(model)(tf.constant(X[:9]), tf.constant(70), seed)
    assert sorted(want) == ["llr_above_1", "llr_above_2", "nll"]
    for key in want:
        np.testing.assert_allclose(outputs[f"anomaly_score/{key}"], want[key], rtol=1e-5,
                                   atol=1e-4)
    bounds = skip_bounds(model, tf.constant(X[:9]), tf.constant(70), DEFAULT_SCORE_CHUNK,
                         seed=seed).numpy()
    np.testing.assert_allclose(want["nll"], -bounds[0], rtol=1e-6)
    for k in (1, 2):
        np.testing.assert_allclose(want[f"llr_above_{k}"], bounds[0] - bounds[k], rtol=1e-6,
                                   atol=1e-5)
    # The ELBO is the model's own one-sample ELBO with the layer seeds folded from `seed`.
    fold = tf.random.experimental.stateless_fold_in
    np.testing.assert_allclose(outputs["score/elbo"],
                               -model.elbo_terms(X[:9], seed=fold(seed, 0))["nelbo"], rtol=1e-5)


def test_score_covers_k_in_masked_passes(exported):
    """k = 130 in passes of 64: samples 0-129 of three passes (seeds fold_in(seed, 1..3))."""
    model, _ = exported
    seed = tf.constant(SEED)
    fold = tf.random.experimental.stateless_fold_in
    weights = np.concatenate([
        model.importance_log_weights(X[:9], 64, seed=fold(seed, j + 1)).numpy() for j in range(3)
    ])[:130].astype(np.float64)
    top = weights.max(0)
    want = np.log(np.exp(weights - top).mean(0)) + top
    got = score_function(model)(tf.constant(X[:9]), tf.constant(130), seed)["log_likelihood"]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # The same estimator as keras_lvae.log_likelihood, up to Monte Carlo error: the mean
    # per-example difference is within four of its standard errors (this barely trained model
    # has heavy-tailed weights, so single L_2000 estimates still differ by tenths of a nat).
    reference = keras_lvae.log_likelihood(model, X[:9], num_samples=2000)
    large = score_function(model)(tf.constant(X[:9]), tf.constant(2000), seed)["log_likelihood"]
    difference = np.asarray(large, np.float64) - reference
    assert abs(difference.mean()) < 4 * difference.std(ddof=1) / np.sqrt(len(difference))


def test_saved_model_cli_lists_every_signature_for_predict(exported):
    _, path = exported
    cli_tool = pathlib.Path(sys.executable).with_name("saved_model_cli")
    result = subprocess.run([cli_tool, "show", "--dir", path, "--all"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    blocks = result.stdout.split("signature_def[")[1:]
    methods = {b.split("'")[1]: "Method name is: tensorflow/serving/predict" in b for b in blocks}
    names = (*SIGNATURES, "anomaly_score", "serving_default")
    assert {name: methods.get(name) for name in names} == dict.fromkeys(names, True)
    # Every input declares its shape and dtype, parsed from the tool's listing.
    inputs = {}
    for block in blocks:
        name = block.split("'")[1]
        for entry in block.split("inputs['")[1:]:
            key = entry.split("'")[0]
            dtype = entry.split("dtype: ")[1].split()[0]
            shape = entry.split("shape: ")[1].splitlines()[0]
            inputs[name, key] = (dtype, shape)
    images = ("DT_FLOAT", "(-1, 6, 6, 1)")
    assert inputs == {
        **{(s, "images"): images for s in ("score", "serving_default", "encode", "reconstruct",
                                           "anomaly_score")},
        **{(s, "num_samples"): ("DT_INT32", "()") for s in ("score", "serving_default",
                                                            "generate", "anomaly_score")},
        **{(s, "seed"): ("DT_INT32", "(2)") for s in ("score", "serving_default", "generate",
                                                      "anomaly_score")},
        ("decode", "z_1"): ("DT_FLOAT", "(-1, 4)"),
        ("generate_at_temperature", "num_samples"): ("DT_INT32", "()"),
        ("generate_at_temperature", "seed"): ("DT_INT32", "(2)"),
        ("generate_at_temperature", "temperature"): ("DT_FLOAT", "(3)"),
        ("interpolate", "images_a"): images, ("interpolate", "images_b"): images,
        ("interpolate", "steps"): ("DT_INT32", "()"), ("interpolate", "layer"): ("DT_INT32", "()"),
    }
    assert "unknown_rank" not in result.stdout.split("signature_def['encode']")[1]


def test_only_standard_tensorflow_ops(exported):
    from tensorflow.core.protobuf import saved_model_pb2

    _, path = exported
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString(pathlib.Path(path, "saved_model.pb").read_bytes())
    graph = saved.meta_graphs[0].graph_def
    ops = {node.op for node in graph.node}
    ops |= {node.op for f in graph.library.function for node in f.node_def}
    functions = {f.signature.name for f in graph.library.function}
    unknown = sorted(op for op in ops - functions if not hasattr(tf.raw_ops, op))
    assert not unknown
    # The signatures' functions sample statelessly and write nothing (the main graph
    # holds the restore ops, which do assign).
    function_ops = {node.op for f in graph.library.function for node in f.node_def
                    if "_traced_restore" not in f.signature.name}
    assert "StatelessRandomNormalV2" in function_ops
    assert not function_ops & {"RandomStandardNormal", "AssignVariableOp", "AssignAddVariableOp"}


@pytest.mark.parametrize("signature, inputs, message", [
    ("score", dict(images=2 * X[:2]), "`images`: expected values in [0, 1]"),
    ("score", dict(images=np.full((2, *SHAPE), np.nan, "float32")), "`images`: expected values"),
    ("score", dict(images=X[:2].reshape(2, 36)), "`images`: expected shape [batch, 6, 6, 1]"),
    ("score", dict(num_samples=np.int32(0)), "`num_samples`: expected an int >= 1"),
    # Fully declared shapes are checked by TF's EnsureShape, which names the input.
    ("score", dict(seed=np.array([1, 2, 3], np.int32)),
     "tensor seed [3] is not compatible with expected shape [2]"),
    ("score", dict(num_samples=np.array([3, 4], np.int32)),
     "tensor num_samples [2] is not compatible with expected shape []"),
    ("generate", dict(seed=np.array([[1, 2]], np.int32)),
     "tensor seed [1,2] is not compatible with expected shape [2]"),
    ("encode", dict(images=-X[:2] - 1), "`images`: expected values in [0, 1]"),
    ("reconstruct", dict(images=X[:2, :3]), "`images`: expected shape"),
    ("decode", dict(z_1=np.zeros((2, 5), "float32")), "`z_1`: expected shape [batch, 4]"),
    ("decode", dict(z_1=np.full((2, 4), np.inf, "float32")), "`z_1`: expected finite values"),
    ("generate", dict(num_samples=np.int32(-3)), "`num_samples`: expected an int >= 1"),
    ("interpolate", dict(layer=np.int32(4)), "`layer`: expected an int <= 3"),
    ("interpolate", dict(layer=np.int32(0)), "`layer`: expected an int >= 1"),
    ("interpolate", dict(steps=np.int32(0)), "`steps`: expected an int >= 1"),
    ("interpolate", dict(images_b=X[:3]), "`images_b`: expected as many images as `images_a`"),
    ("interpolate", dict(images_a=2 * X[:2]), "`images_a`: expected values in [0, 1]"),
])
def test_bad_requests_fail_inside_the_signature(exported, signature, inputs, message):
    _, path = exported
    loaded = tf.saved_model.load(path)
    defaults = dict(images=X[:2], num_samples=np.int32(3), seed=SEED, images_a=X[:2],
                    images_b=X[2:4], steps=np.int32(3), layer=np.int32(1))
    names = loaded.signatures[signature].structured_input_signature[1]
    request = {k: tf.constant(inputs.get(k, defaults.get(k))) for k in names}
    with pytest.raises(tf.errors.InvalidArgumentError, match=message.replace("[", r"\[")):
        loaded.signatures[signature](**request)


@pytest.mark.slow  # over 10 s
def test_versions_count_up_and_never_overwrite(exported, tmp_path):
    model, _ = exported
    base = tmp_path / "m"
    assert export_saved_model(model, base).endswith(os.sep + "1")
    (base / "7").mkdir()
    (base / "notes").mkdir()  # non-numeric names are not versions
    assert export_saved_model(model, base).endswith(os.sep + "8")
    with pytest.raises(FileExistsError, match="Version 7 already exists"):
        export_saved_model(model, base, version=7)
    assert sorted(os.listdir(base)) == ["1", "7", "8", "notes"]
    assert export_saved_model(model, base, version=3).endswith(os.sep + "3")


@pytest.mark.slow  # over 10 s since exports trace anomaly_score too
def test_a_failed_export_leaves_nothing(exported, tmp_path, monkeypatch):
    model, _ = exported
    real_save = tf.saved_model.save

    def fail_midway(module, directory, signatures=None):
        real_save(module, directory, signatures=signatures)  # everything written ...
        raise OSError("disk full")  # ... then the failure

    monkeypatch.setattr(tf.saved_model, "save", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        export_saved_model(model, tmp_path / "m")
    assert os.listdir(tmp_path / "m") == []


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(version=0), ValueError, "`version`"),
    (dict(version="2"), ValueError, "`version`"),
    (dict(chunk_samples=0), ValueError, "`chunk_samples`"),
])
def test_bad_export_arguments(exported, tmp_path, kwargs, error, message):
    model, _ = exported
    with pytest.raises(error, match=message):
        export_saved_model(model, tmp_path / "m", **kwargs)
    with pytest.raises(ValueError, match="`model`"):
        export_saved_model(keras_lvae.LadderVAE(), tmp_path / "m")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="`base_dir`"):
        export_saved_model(model, tmp_path / "file")


@pytest.mark.slow  # over 10 s (20 s on 2026-12-03)
def test_lvae_export_command(exported, tmp_path, capsys):
    model, _ = exported
    model.save(tmp_path / "model.keras")
    args = ["export", str(tmp_path / "model.keras"), "--name", "tiny", "--base-dir",
            str(tmp_path / "served")]
    assert keras_lvae_cli.main(args) == 0
    assert keras_lvae_cli.main([*args, "--version", "5"]) == 0
    assert "served/tiny/5" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path / "served" / "tiny")) == ["1", "5"]
    assert keras_lvae_cli.main([*args, "--version", "5"]) == 2  # refused before it loads
    assert ("error: --version 5: " + str(tmp_path / "served" / "tiny" / "5") + " exists; "
            "exports never overwrite: pass another --version") in capsys.readouterr().err
    assert keras_lvae_cli.main([*args[:2], "--name", "../x"]) == 2
    assert "--name" in capsys.readouterr().err


@pytest.mark.parametrize("inference", ["ladder", "bottom_up"])
def test_explicit_seeds_sample_statelessly(inference):
    """What the sampling signatures rely on, for both inference types: the same seed gives
    the same samples, another seed others, and no seed generator moves."""
    model = keras_lvae.LadderVAE(latent_dims=(4, 3), hidden_dims=(16, 8), inference=inference,
                                 seed=5)
    model(X)
    states = [h.seed_generator.state.numpy().copy() for h in model.encoder_heads]
    seed, other = tf.constant([1, 2]), tf.constant([1, 3])
    first = model.importance_log_weights(X[:6], 3, seed=seed)
    np.testing.assert_array_equal(first, model.importance_log_weights(X[:6], 3, seed=seed))
    assert not np.allclose(first, model.importance_log_weights(X[:6], 3, seed=other))
    np.testing.assert_array_equal(model.elbo_terms(X[:6], seed=seed)["nelbo"],
                                  model.elbo_terms(X[:6], seed=seed)["nelbo"])
    for head, state in zip(model.encoder_heads, states):
        np.testing.assert_array_equal(head.seed_generator.state.numpy(), state)
