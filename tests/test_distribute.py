"""tf.distribute on two logical CPU devices (each check runs in a fresh process,
because logical devices must be configured before TensorFlow initialises)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.conftest import REPO

SETUP = """
import os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
import keras_lvae
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
"""


def run(code):
    result = subprocess.run([sys.executable, "-c", SETUP + textwrap.dedent(code)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_each_replica_draws_its_own_noise():
    out = run("""
        with strategy.scope():
            layer = keras_lvae.layers.StochasticGaussian(5, seed=1)
            layer.build((None, 4))
        h = tf.ones((3, 4))

        @tf.function
        def step():
            return strategy.run(lambda: layer(h)[0])

        first = [t.numpy() for t in strategy.experimental_local_results(step())]
        second = [t.numpy() for t in strategy.experimental_local_results(step())]
        print("replicas differ:", not np.allclose(first[0], first[1]))
        print("steps differ:", not np.allclose(first[0], second[0]))
    """)
    assert "replicas differ: True" in out and "steps differ: True" in out


@pytest.mark.slow  # over 10 s
def test_fit_under_mirrored_strategy():
    out = run("""
        x = (np.random.default_rng(0).random((128, 20)) < 0.3).astype("float32")
        with strategy.scope():
            model = keras_lvae.LadderVAE(latent_dims=(4, 2), hidden_dims=(16, 8), seed=2,
                                         warmup_steps=4)
            model.compile(optimizer=keras.optimizers.Adam(1e-2))
        history = model.fit(x, batch_size=32, epochs=3, verbose=0).history
        print("finite:", bool(np.isfinite(history["loss"]).all()))
        print("improves:", history["nelbo"][-1] < history["nelbo"][0])
        print("steps:", int(model.optimizer.iterations.numpy()))
    """)
    assert "finite: True" in out and "improves: True" in out and "steps: 12" in out


@pytest.mark.slow  # about 20 s
def test_fused_adam_under_mirrored_strategy_is_keras_adam():
    """Under a strategy FusedAdam hands the update to Keras' Adam: the same weights."""
    out = run("""
        x = (np.random.default_rng(0).random((64, 20)) < 0.3).astype("float32")
        weights = []
        for optimizer in (keras.optimizers.Adam, keras_lvae.optimizers.FusedAdam):
            with strategy.scope():
                model = keras_lvae.LadderVAE(latent_dims=(4, 2), hidden_dims=(16, 8), seed=2)
                model.compile(optimizer=optimizer(1e-2))
            model.fit(x, batch_size=32, epochs=2, shuffle=False, verbose=0)
            weights.append([v.numpy() for v in model.trainable_variables])
        print("same:", all(np.allclose(a, b, rtol=1e-5, atol=1e-6)
                           for a, b in zip(*weights)))
    """)
    assert "same: True" in out


@pytest.mark.slow  # over 10 s
def test_one_mirrored_sgd_step_equals_the_single_device_step():
    """Same weights, same global batch of 8, SGD: two replicas (4 examples each, synchronized
    batch norm, each replica's rows of the global noise) give the single-device update."""
    out = run("""
        x = (np.random.default_rng(0).random((8, 20)) < 0.3).astype("float32")

        def make():
            model = keras_lvae.LadderVAE(latent_dims=(4, 2), hidden_dims=(16, 8), seed=2,
                                         warmup_steps=3)
            model.compile(optimizer=keras.optimizers.SGD(0.1))
            model(x)
            return model

        single = make()
        with strategy.scope():
            mirrored = make()
        mirrored.set_weights(single.get_weights())
        start = [w.copy() for w in single.get_weights()]
        single.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0)
        mirrored.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0)
        moved = max(np.abs(a - b).max() for a, b in zip(single.get_weights(), start))
        gap = max(np.abs(a - b).max() for a, b in zip(single.get_weights(), mirrored.get_weights()))
        print("moved:", moved > 1e-3)
        print("equal:", gap < 1e-5, gap)
    """)
    assert "moved: True" in out and "equal: True" in out, out


def launch_two_workers(lines, tmp_path):
    """Run `lvae` commands [(TF_CONFIG json, arguments)] as the workers of one cluster on
    free local ports; returns each worker's output once all finished."""
    import json
    import os
    import socket

    ports = []
    for _ in lines:
        with socket.socket() as s:
            s.bind(("localhost", 0))
            ports.append(s.getsockname()[1])
    workers = []
    for config, arguments in lines:
        config = json.loads(config)
        config["cluster"]["worker"] = [f"localhost:{p}" for p in ports]
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "keras_lvae_cli", *arguments], cwd=tmp_path,
            env={**os.environ, "TF_CONFIG": json.dumps(config), "TF_CPP_MIN_LOG_LEVEL": "2"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    for worker in workers:
        out, _ = worker.communicate(timeout=900)
        assert worker.returncode == 0, out[-3000:]
        outputs.append(out)
    return outputs


@pytest.mark.slow  # over 10 s
def test_readme_two_worker_launch_trains_and_the_workers_agree(tmp_path):
    """The README's MultiWorkerMirroredStrategy launch, as written (ports moved to free ones):
    both workers finish the epoch with the same loss, worker 0 writes the model."""
    import re

    readme = (REPO / "README.md").read_text()
    lines = re.findall(r"^TF_CONFIG='(.*?)' lvae (.*?)( &)?$", readme, flags=re.M)
    assert len(lines) == 2
    outputs = launch_two_workers(
        [(config, arguments.replace("runs/two_workers", str(tmp_path / "two_workers"))
          .replace("recipes/", f"{REPO}/recipes/").split()) for config, arguments, _ in lines],
        tmp_path)
    losses = [re.search(r" loss: ([0-9.]+)", out).group(1) for out in outputs]
    assert losses[0] == losses[1]
    assert "not the chief worker" in outputs[1]
    assert (tmp_path / "two_workers" / "model.keras").exists()


@pytest.mark.slow  # about 90 s on one core
def test_two_workers_on_an_image_folder_each_decode_their_half_of_every_batch(tmp_path):
    """Streamed files under multi_worker: each worker reads half of every batch of 32 (the
    last, smaller batch dropped so both take the same steps), and they agree."""
    import re

    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(100):  # 80 for training: 2 full batches of 32, 16 left out
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(
            folder / f"{i:03d}.png")
    arguments = ["train", "own_images", "--workdir", str(tmp_path / "run"), "--set",
                 f"data.data_dir={folder}", "--set", "data.image_size=16", "--set",
                 "data.batch_size=32", "--set", "train.epochs=2", "--set",
                 "train.eval_samples=0", "--set", "train.strategy=multi_worker"]
    config = '{"cluster": {"worker": []}, "task": {"type": "worker", "index": %d}}'
    outputs = launch_two_workers([(config % i, arguments) for i in (0, 1)], tmp_path)
    for index, out in enumerate(outputs):
        assert f"worker {index} of 2 takes part {index + 1} of every batch (16 of its 32 " in out
        assert "16 images left out of each epoch" in out
        assert "2 steps of 32 images per epoch" in out
    losses = [re.findall(r" loss: ([0-9.]+)", out) for out in outputs]
    assert len(losses[0]) == 2 and losses[0] == losses[1]
    assert (tmp_path / "run" / "model.keras").exists()


@pytest.mark.slow  # over 10 s
def test_one_mirrored_conv_step_equals_the_single_device_step():
    """The same check for a ConvLadderVAE (batch norm synchronised in its residual blocks,
    skip connections, learned top prior)."""
    out = run("""
        x = (np.random.default_rng(0).random((8, 7, 6)) < 0.3).astype("float32")

        def make():
            model = keras_lvae.ConvLadderVAE(latent_dims=(3, 2), hidden_dims=(6, 6),
                                             downsample=(1, 1), residual_blocks=1, seed=2,
                                             skip=True, learn_top_prior=True, gated=True,
                                             warmup_steps=3)
            model.compile(optimizer=keras.optimizers.SGD(0.1))
            model(x)
            return model

        single = make()
        with strategy.scope():
            mirrored = make()
        synchronized = [l.synchronized for l in mirrored._flatten_layers()
                        if isinstance(l, keras.layers.BatchNormalization)]
        print("synchronized:", len(synchronized) > 0 and all(synchronized))
        mirrored.set_weights(single.get_weights())
        start = [w.copy() for w in single.get_weights()]
        single.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0)
        mirrored.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0)
        moved = max(np.abs(a - b).max() for a, b in zip(single.get_weights(), start))
        gap = max(np.abs(a - b).max() for a, b in zip(single.get_weights(), mirrored.get_weights()))
        print("moved:", moved > 1e-3)
        print("equal:", gap < 1e-5, gap)
    """)
    assert "synchronized: True" in out and "moved: True" in out and "equal: True" in out, out


@pytest.mark.slow  # over 10 s
def test_update_skipping_under_two_replicas_decides_for_all_replicas():
    """Two replicas skip together, on the summed gradients: a generous threshold gives the
    single-device SGD step; a tiny one, or a NaN batch on one replica only, leaves weights,
    batch-norm statistics, optimizer state and the step counter of both replicas as they
    were, and counts each skipped step once."""
    out = run("""
        x = (np.random.default_rng(0).random((16, 20)) < 0.3).astype("float32")

        def make(**options):
            model = keras_lvae.LadderVAE(latent_dims=(4, 2), hidden_dims=(16, 8), seed=2,
                                         warmup_steps=3, **options)
            model.compile(optimizer=keras.optimizers.SGD(0.1))
            model(x)
            model.optimizer.build(model.trainable_variables)
            return model

        def replica_values(model):  # all but the noise states, which advance regardless
            return {v.path: np.stack([np.asarray(t) for t in strategy.experimental_local_results(
                        getattr(v, "value", v))])
                    for v in model.variables + model.optimizer.variables
                    if "seed_generator" not in v.path}

        single = make()
        start = [w.copy() for w in single.get_weights()]
        single.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0)
        for name, options, data in [
                ("generous", dict(skip_threshold=1e9), x),
                ("tiny", dict(skip_threshold=1e-6), x),
                ("nan", dict(skip_nonfinite_steps=True), np.where(np.arange(16)[:, None] % 8 < 4,
                                                                  np.nan, x)),
                ("adaptive", dict(adaptive_skip_factor=1e-6, adaptive_skip_window=4),
                 np.tile(x, (3, 1)))]:
            with strategy.scope():
                model = make(**options)
            for target, value in zip([w for w in model.weights if "grad_norm" not in w.path],
                                     start):
                target.assign(value)
            before = replica_values(model)
            history = model.fit(data.astype("float32"), batch_size=8, epochs=1, shuffle=False,
                                verbose=0).history
            after = replica_values(model)
            agree = all(np.allclose(v[0], v[1], atol=1e-6) for v in after.values())
            changed = [path for path in before if not np.array_equal(before[path], after[path])]
            unchanged = not changed
            gap = max(np.abs(a.numpy() - b.numpy()).max()
                      for a, b in zip(single.trainable_weights, model.trainable_weights))
            print(name, "skipped", history["skipped_steps"][0], "agree", agree,
                  "unchanged", unchanged, "equal", gap < 1e-5, changed[:3])
    """)
    assert "generous skipped 0.0 agree True unchanged False equal True" in out, out
    assert "tiny skipped 2.0 agree True unchanged True" in out, out
    assert "nan skipped 2.0 agree True unchanged True" in out, out
    # Adaptive: 6 steps; the first 4 fill the history (the rule waits for min(10, window)).
    assert "adaptive skipped 2.0 agree True unchanged False" in out, out