"""Runs from a Config: checkpoints, resume after a kill, the files a run writes."""

import gc
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lvae
from keras_lvae import callbacks, checkpoints, training
from keras_lvae._files import read_csv
from keras_lvae.config import override

from .conftest import REPO
from .testing import TINY_RUN

TINY = TINY_RUN


def _build(config, steps_per_epoch=9):
    model = training.build_model(config, steps_per_epoch)
    model.build((None, 28, 28, 1))
    training.compile_model(model, config, steps_per_epoch)
    return model


def _state(model):
    return [np.array(v.numpy()) for v in
            model.variables + model.optimizer.variables]


def test_checkpoint_restores_every_variable(tmp_path):
    """Weights, batch-norm statistics, noise generators' states, the optimizer's step and
    Adam moments all come back; a fresh model differs in each of those groups."""
    x = np.random.default_rng(0).random((64, 28, 28, 1)) < 0.3
    model = _build(TINY)
    model.fit(x.astype("float32"), batch_size=16, epochs=2, verbose=0)
    path = tmp_path / "checkpoint.npz"
    checkpoints.save_checkpoint(model, path, epoch=2)
    assert checkpoints.checkpoint_epoch(path) == 2 and checkpoints.checkpoint_epoch(tmp_path / "no") == 0

    fresh = _build(TINY)
    fresh.optimizer.build(fresh.trainable_variables)
    before = _state(fresh)
    assert checkpoints.restore_checkpoint(fresh, path) == 2
    for got, want, old, variable in zip(_state(fresh), _state(model), before,
                                        fresh.variables + fresh.optimizer.variables):
        np.testing.assert_array_equal(got, want, err_msg=variable.path)
    changed = {v.path.split("/")[-1] for v, a, b in zip(
        fresh.variables + fresh.optimizer.variables, before, _state(model))
        if not np.array_equal(a, b)}
    assert {"moving_mean", "moving_variance", "seed_generator_state", "iteration"} <= changed
    assert any(name.endswith("momentum") for name in changed)  # Adam's first moments
    assert int(fresh.optimizer.iterations.numpy()) == 8

    other = _build(override(TINY, ["model.latent_dims=8", "model.hidden_dims=32"]))
    with pytest.raises(ValueError, match=r"does not match this model \(unexpected decoder_block_1"):
        checkpoints.restore_checkpoint(other, path)


def test_checkpoint_keys_are_variable_paths_and_equal_shapes_cannot_swap(tmp_path):
    """Arrays are stored by key and matched by key: a file whose arrays come in another
    order (moving mean and variance of one batch norm have the same shape) restores
    each to its own variable; a missing or an unexpected key is refused by name."""
    model = _build(TINY)
    model.fit(np.random.default_rng(0).random((64, 28, 28, 1)).round().astype("float32"),
              batch_size=16, epochs=1, verbose=0)
    path = tmp_path / "checkpoint.npz"
    checkpoints.save_checkpoint(model, path, epoch=1)
    with np.load(path) as stored:
        arrays = {name: stored[name] for name in stored.files}
    mean_key = "encoder_block_1/batch_norm_0/moving_mean"
    assert mean_key in arrays and "optimizer/iteration" in arrays and "trained_steps" in arrays
    assert "encoder_head_1_seed_generator/seed_generator_state" in arrays
    np.savez(path, **dict(reversed(list(arrays.items()))))  # another order
    fresh = _build(TINY)
    checkpoints.restore_checkpoint(fresh, path)
    for key, variable in checkpoints.state_variables(fresh).items():
        np.testing.assert_array_equal(variable.numpy(), arrays[key], err_msg=key)

    missing = {k: v for k, v in arrays.items() if k != mean_key}
    np.savez(path, **missing)
    with pytest.raises(ValueError, match=f"missing {mean_key}"):
        checkpoints.restore_checkpoint(_build(TINY), path)
    np.savez(path, **arrays, **{"encoder_block_9/kernel": np.zeros(3)})
    with pytest.raises(ValueError, match="unexpected encoder_block_9/kernel"):
        checkpoints.restore_checkpoint(_build(TINY), path)


def test_positional_checkpoint_of_version_0_1_is_read_once(tmp_path):
    """keras-lvae 0.1 stored arrays by position; they are read with a shape check, and the
    next save writes them by key. Reference values: the same model saved by 0.1."""
    legacy = REPO / "tests" / "data" / "v0.1.0"
    x = (np.random.default_rng(0).random((32, 12)) < 0.5).astype("float32")
    model = keras_lvae.LadderVAE(latent_dims=(3, 2), hidden_dims=(8, 4), seed=1,
                                 warmup_steps=4)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model(x)
    assert checkpoints.restore_checkpoint(model, legacy / "checkpoint.npz") == 2
    with pytest.warns(UserWarning, match="predates the model.s step counter"):
        saved = keras.saving.load_model(legacy / "model.keras")
    for got, want in zip(model.weights, saved.weights):
        if "seed_generator" not in got.path and "trained_steps" not in got.path:  # not in 0.1
            np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=got.path)
    assert int(model.optimizer.iterations) == int(model.trained_steps) == 8
    np.testing.assert_allclose(model(x), np.load(legacy / "reconstruction.npy"), atol=1e-6)
    checkpoints.save_checkpoint(model, tmp_path / "checkpoint.npz", 2)
    with np.load(tmp_path / "checkpoint.npz") as stored:
        assert "trained_steps" in stored.files


def test_a_corrupt_checkpoint_names_itself_and_the_snapshots(tmp_path):
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(b"PK\x03\x04 truncated")
    (tmp_path / "snapshots").mkdir()
    (tmp_path / "snapshots" / "epoch_10.npz").write_bytes(b"")
    (tmp_path / "snapshots" / "epoch_5.npz").write_bytes(b"")
    with pytest.raises(ValueError, match=r"checkpoint .*checkpoint.npz.* is unreadable.*"
                                         r"epoch_5.npz, .*epoch_10.npz"):
        checkpoints.checkpoint_epoch(path)
    with pytest.raises(ValueError, match="is unreadable"):
        checkpoints.restore_checkpoint(_build(TINY), path)


def _event_tags(directory):
    """{tag: [steps]} of every event file under `directory`."""
    tags = {}
    for root, _, files in os.walk(directory):
        for name in files:
            for event in tf.compat.v1.train.summary_iterator(os.path.join(root, name)):
                for value in event.summary.value:
                    tags.setdefault(value.tag, []).append(event.step)
    return tags


@pytest.mark.slow  # over 10 s on one core
def test_train_writes_every_file_and_tensorboard_scalars_and_images(tmp_path, capsys):
    summary = training.train(TINY, str(tmp_path))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["checkpoint.npz", "config.json", "history.csv", "model.keras", "tensorboard"]
    history = read_csv(tmp_path / "history.csv")
    assert history["epoch"] == [1.0, 2.0] and all(0 < t < 120 for t in history["seconds"])
    assert history["val_nelbo"] == pytest.approx(summary["history"]["val_nelbo"])
    assert summary["test_log_likelihood"] > -summary["test_nelbo"]  # L_5 >= L_1 on average
    assert checkpoints.checkpoint_epoch(tmp_path / "checkpoint.npz") == 2
    model = keras.saving.load_model(tmp_path / "model.keras")
    assert int(model.optimizer.iterations.numpy()) == 2 * 9

    train_tags = _event_tags(tmp_path / "tensorboard" / "train")
    validation_tags = _event_tags(tmp_path / "tensorboard" / "validation")
    for tag in ["epoch_loss", "epoch_nelbo", "epoch_beta", "epoch_kl_layer_1", "epoch_kl_layer_2"]:
        assert train_tags[tag] == [0, 1], tag
    assert validation_tags["epoch_nelbo"] == [0, 1]
    samples = _event_tags(tmp_path / "tensorboard" / "samples")
    assert samples == {"prior_samples": [0, 1]}  # the step of the epoch's scalars
    assert "test L_5:" in capsys.readouterr().out


@pytest.mark.parametrize("side_by_side", [False, True])
def test_lvae_train_asks_for_row_halves_where_ops_run_side_by_side(monkeypatch, side_by_side):
    """The layer reads no global state; `lvae train` decides from the CPU threads once."""
    monkeypatch.setattr(training.threads, "ops_run_side_by_side", lambda: side_by_side)
    model = training.build_model(TINY, steps_per_epoch=9)
    assert model.row_halves is side_by_side
    assert all(block.row_halves is side_by_side for block in model.encoder_blocks)


def test_by_default_mlp_ladders_run_32_steps_per_call_and_conv_ladders_one():
    """A conv ladder's long steps gain nothing from Keras' loop of steps, and one step per
    call lets Ctrl-C stop after a step instead of after 32 (9.5 s of a colour epoch)."""
    conv = override(TINY, ["model.architecture=conv", "model.latent_dims=2",
                           "model.hidden_dims=4", "model.residual_blocks=1"])
    assert training.most_steps_per_execution(TINY) == 32
    assert training.most_steps_per_execution(conv) == 1
    assert training.most_steps_per_execution(
        override(conv, ["train.steps_per_execution=8"])) == 8  # a setting wins


def test_compile_runs_a_divisor_of_the_epoch_per_call_and_one_step_under_a_strategy():
    """`train.steps_per_execution=4` with 9 steps an epoch: 3 steps per call (4 would end
    epoch 1 three steps late); under a tf.distribute strategy, where Keras' loop of steps
    fails, 1."""
    config = override(TINY, ["train.steps_per_execution=4"])
    model = training.build_model(config, steps_per_epoch=9)
    training.compile_model(model, config, 9)
    assert model.steps_per_execution == 3
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        model = training.build_model(config, steps_per_epoch=9)
        training.compile_model(model, config, 9)
    assert model.steps_per_execution == 1


@pytest.mark.slow  # over 10 s
def test_steps_per_execution_changes_no_numbers_and_model_keras_fits_a_step_per_call(tmp_path):
    """Training with `train.steps_per_execution=4` (3 steps per call) gives the history and
    weights of one step per call; model.keras is compiled for one step per call."""
    config = override(TINY, ["train.eval_samples=0", "train.sample_every_epochs=0"])
    runs = {n: training.train(override(config, [f"train.steps_per_execution={n}"]),
                              str(tmp_path / str(n)), log=lambda message: None)
            for n in (1, 4)}
    assert runs[4]["history"] == runs[1]["history"] | {"seconds": runs[4]["history"]["seconds"]}
    for a, b in zip(runs[1]["model"].get_weights(), runs[4]["model"].get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert keras.saving.load_model(tmp_path / "4" / "model.keras").steps_per_execution == 1


def test_history_rows_continue_and_missing_columns_are_nan(tmp_path):
    """A resumed run appends to the rows it was given; a column the earlier rows lack (e.g.
    from an older version) is NaN there, never a shifted value."""
    callback = callbacks.HistoryCSV(tmp_path / "h.csv", {"epoch": [1.0], "nelbo": [90.0]})
    callback.on_epoch_begin(1)
    callback.on_epoch_end(1, {"nelbo": np.float32(85.0), "beta": 1.0})
    history = read_csv(tmp_path / "h.csv")
    assert history["epoch"] == [1.0, 2.0] and history["nelbo"] == [90.0, 85.0]
    assert np.isnan(history["beta"][0]) and history["beta"][1] == 1.0
    assert np.isnan(history["seconds"][0]) and history["seconds"][1] >= 0
    # A fixed column order, whatever order the logs came in: epoch, seconds, then by name.
    header = (tmp_path / "h.csv").read_text().splitlines()[0]
    assert header == "epoch,seconds,beta,nelbo"


@pytest.mark.slow  # over 10 s
def test_finished_run_refuses_another_configuration_but_trains_on(tmp_path):
    training.train(TINY, str(tmp_path), log=lambda message: None)
    with pytest.raises(ValueError, match=r"different configuration \(changed: train.seed\)"):
        training.train(override(TINY, ["train.seed=4"]), str(tmp_path))
    summary = training.train(override(TINY, ["train.epochs=3"]), str(tmp_path),
                             log=lambda message: None)
    assert summary["start_epoch"] == 2 and summary["history"]["epoch"] == [1.0, 2.0, 3.0]
    assert int(summary["model"].optimizer.iterations.numpy()) == 3 * 9
    # Fine-tuning may be switched on for a finished run: it continues with the IW bound.
    summary = training.train(override(TINY, ["train.epochs=3", "fine_tune.epochs=1",
                                             "fine_tune.iw_samples=2", "fine_tune.mc_samples=1"]),
                             str(tmp_path), log=lambda message: None)
    assert summary["start_epoch"] == 3 and summary["model"].iw_samples == 2
    assert summary["history"]["loss"][-1] < summary["history"]["nelbo"][-1]


@pytest.mark.slow  # over 10 s on one core
def test_fine_tuning_stage_switches_samples_and_decays_the_rate(tmp_path):
    config = override(TINY, ["fine_tune.epochs=2", "fine_tune.mc_samples=2",
                             "fine_tune.iw_samples=3", "fine_tune.decay_every_epochs=1",
                             "fine_tune.decay_factor=0.5", "train.eval_samples=0"])
    summary = training.train(config, str(tmp_path), log=lambda message: None)
    model = summary["model"]
    assert (model.mc_samples, model.iw_samples) == (2, 3)
    history = summary["history"]
    # Training stage: loss = nelbo at beta 1; fine-tuning: loss = -L_3 < nelbo.
    assert history["loss"][1] == pytest.approx(history["nelbo"][1], rel=1e-5)
    assert all(history["loss"][e] < history["nelbo"][e] for e in (2, 3))
    # 9 steps per epoch; after epoch 4 the step is 36: 0.001 * 0.5 ** ((36 - 18) // 9).
    assert float(model.optimizer.learning_rate) == pytest.approx(0.001 * 0.5 ** 2)


def _run_lvae(args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "keras_lvae_cli", *args], cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, **kwargs)


def test_progress_lines_within_an_epoch_say_the_step_and_then_the_epochs_time(capsys):
    """Without a terminal there is no progress bar: lvae train prints a line every 30 s."""
    import keras_lvae

    model = keras_lvae.LadderVAE(latent_dims=(2,), hidden_dims=(8,), seed=1)
    model.compile(optimizer="adam")
    x = (np.random.default_rng(0).random((40, 6)) < 0.5).astype("float32")
    model.fit(x, batch_size=10, epochs=2, verbose=0,
              callbacks=[callbacks.ProgressLines(steps_per_epoch=4, every_seconds=0)])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in lines] == [
        f"  epoch {e}: step {s}/4" for e in (1, 2) for s in (1, 2, 3, 4)]
    assert "loss " in lines[0] and "(an epoch takes about " in lines[-1]
    assert "an epoch takes" not in lines[3]


def test_ctrl_c_in_fit_is_noted_then_raised_at_a_batch_end_and_a_second_one_at_once(capsys):
    """The first SIGINT inside `StopOnInterrupt.catching` only sets a flag (so it cannot be
    lost in a finaliser); the next batch's end raises it; a second SIGINT raises at once;
    the previous handler is back afterwards."""
    # Python's own handler before, whatever an earlier test in this process left: the second
    # SIGINT goes to the handler that was there before `catching`.
    outside = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        ctrl_c_twice(capsys)
    finally:
        signal.signal(signal.SIGINT, outside)


def ctrl_c_twice(capsys):
    stop, before = callbacks.StopOnInterrupt("stopping soon"), signal.getsignal(signal.SIGINT)
    stop.on_train_batch_end(0)  # nothing to raise yet
    with stop.catching():
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.interrupted
        assert capsys.readouterr().err == "stopping soon\n"  # said at once
        for at_the_end_of in (stop.on_train_batch_end, stop.on_test_batch_end,
                              stop.on_epoch_end):
            with pytest.raises(KeyboardInterrupt):
                at_the_end_of(0)
        # The handler raises between two bytecodes of the main thread: were that inside a
        # finaliser the garbage collector runs (TensorFlow's AtomicFunction.__del__), pytest
        # would report the KeyboardInterrupt as unraisable, so nothing is collected meanwhile.
        gc.collect()
        gc.disable()
        try:
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
        finally:
            gc.enable()
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.slow  # over 10 s
def test_killed_run_resumes_where_it_stopped(tmp_path):
    """SIGKILL mid-run after a checkpoint; the same command continues from that epoch with
    the step count and the warm-up's beta of an uninterrupted run."""
    epochs, steps, warmup_epochs = 8, 90, 3
    args = ["train", "recipes/quickstart.py", "--workdir", str(tmp_path),
            "--set", "data.batch_size=50", "--set", "model.latent_dims=8,4",
            "--set", "model.hidden_dims=32,16", "--set", f"train.epochs={epochs}",
            "--set", f"train.warmup_epochs={warmup_epochs}", "--set", "train.eval_samples=0"]
    first = _run_lvae(args)
    checkpoint = tmp_path / "checkpoint.npz"
    deadline = time.monotonic() + 300
    while checkpoints.checkpoint_epoch(checkpoint) < 2 and first.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    saved = checkpoints.checkpoint_epoch(checkpoint)
    assert 2 <= saved < epochs and not (tmp_path / "model.keras").exists()

    second = _run_lvae(args)
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-3000:]
    assert f"after epoch {saved} of {epochs} (step {saved * steps})" in out
    ran = [line for line in out.splitlines() if line.startswith("Epoch ")]
    assert ran == [f"Epoch {e}/{epochs}" for e in range(saved + 1, epochs + 1)]  # not restarted
    model = keras.saving.load_model(tmp_path / "model.keras")
    assert int(model.optimizer.iterations.numpy()) == epochs * steps
    history = read_csv(tmp_path / "history.csv")
    assert history["epoch"] == [float(e) for e in range(1, epochs + 1)]
    # beta at step s is min(1, s / warm-up steps); the log holds its mean over each epoch.
    beta = np.minimum(1.0, np.arange(epochs * steps) / (warmup_epochs * steps))
    np.testing.assert_allclose(history["beta"], beta.reshape(epochs, steps).mean(axis=1),
                               rtol=1e-5)


EXACT_RESUME = """
import json, sys
import numpy as np
import tensorflow as tf
tf.config.experimental.enable_op_determinism()
from keras_lvae import training
from keras_lvae.config import override
from tests.testing import TINY_RUN

config = override(TINY_RUN, ["train.epochs=3", "train.warmup_epochs=2", "train.eval_samples=0",
                             "train.sample_every_epochs=0"])
quiet = lambda message: None
whole = training.train(override(config, ["train.keep_every_epochs=1"]), sys.argv[1], log=quiet)
training.train(override(config, ["train.epochs=1"]), sys.argv[2], log=quiet)  # stops after 1
resumed = training.train(config, sys.argv[2], log=quiet)
weights = [np.array_equal(a, b) for a, b in zip(whole["model"].get_weights(),
                                                resumed["model"].get_weights())]
print(json.dumps({"whole": whole["history"], "resumed": resumed["history"],
                  "same_weights": all(weights), "start": resumed["start_epoch"]}))
"""


@pytest.mark.slow
def test_a_resumed_run_ends_exactly_as_the_uninterrupted_run(tmp_path):
    """With op determinism and a fixed seed, stopping after epoch 1 and resuming gives the
    weights and history of the run that was never stopped, bit for bit (each epoch's data
    depend on (seed, epoch) alone; the checkpoint holds every state). The uninterrupted
    run also keeps a snapshot of every epoch (train.keep_every_epochs=1)."""
    result = subprocess.run([sys.executable, "-c", EXACT_RESUME, str(tmp_path / "whole"),
                             str(tmp_path / "resumed")], cwd=REPO, capture_output=True,
                            text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["start"] == 1 and report["same_weights"]
    for column in ("nelbo", "val_nelbo", "beta", "loss"):
        assert report["resumed"][column] == report["whole"][column], column
    snapshots = checkpoints.kept_snapshots(str(tmp_path / "whole"))
    assert [os.path.basename(p) for p in snapshots] == [f"epoch_{e}.npz" for e in (1, 2, 3)]
    assert [checkpoints.checkpoint_epoch(p) for p in snapshots] == [1, 2, 3]
    assert not (tmp_path / "resumed" / "snapshots").exists()


@pytest.mark.slow  # over 10 s
def test_a_smaller_last_batch_counts_as_a_step_of_the_warm_up(tmp_path, capsys, monkeypatch):
    """4,500 images in batches of 400: 12 steps an epoch, the last of 100; warm-up over two
    epochs is 24 steps, so after one epoch beta is 12 / 24 and every image was used. The
    final test L_k is of the moving averages, as the test L_1 is."""
    config = override(TINY, ["data.batch_size=400", "train.epochs=1", "train.warmup_epochs=2",
                             "train.eval_samples=2", "train.sample_every_epochs=0",
                             "train.ema_decay=0.9"])
    seen = []

    def recording(model, data, num_samples):
        seen.append([np.array_equal(w.numpy(), a.numpy())
                     for w, a in zip(model.trainable_weights, model.ema_variables)])
        return np.zeros(1)

    monkeypatch.setattr(training, "log_likelihood", recording)
    summary = training.train(config, str(tmp_path))
    assert len(seen) == 1 and all(seen[0])
    model = summary["model"]
    assert int(model.trained_steps.numpy()) == int(model.optimizer.iterations.numpy()) == 12
    assert model.warmup_steps == 24
    assert float(keras_lvae.warmup_beta(model.trained_steps, model.warmup_steps)) == 0.5
    assert "12 steps of 400 images per epoch" in capsys.readouterr().out
