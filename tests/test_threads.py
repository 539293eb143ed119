"""TensorFlow CPU threads for MLP ladders (`keras_lvae.threads`): the rule, where it is applied,
how a user overrides it, and that it changes no numbers. Thread pools are made once per
process, so every check of `configure_for` runs in a fresh one."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_lvae import threads

REPORT = """
import json, os, sys
{before}
import keras_lvae, tensorflow as tf
chosen = keras_lvae.threads.configure_for("{architecture}")
print(json.dumps([chosen, tf.config.threading.get_intra_op_parallelism_threads(),
                  tf.config.threading.get_inter_op_parallelism_threads()]))
"""


def run(code, env=None, cores=None):
    """The finished process of `code` in a fresh Python whose environment has no thread
    settings but `env`, on the CPU set `cores` (default: this process's)."""
    clean = {k: v for k, v in os.environ.items()
             if k not in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
                          threads.ENVIRONMENT_VARIABLE)}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
        env={**clean, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
        preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None)


def report(before="", env=None, cores=None, architecture="mlp"):
    result = run(REPORT.format(before=before, architecture=architecture), env, cores)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("cores, expected", [(1, (1, 1)), (2, (1, 2)), (3, (1, 2)),
                                             (8, (4, 2)), (64, (32, 2))])
def test_two_ops_at_a_time_each_on_half_the_cores(cores, expected):
    assert threads.default_thread_counts(cores) == expected


@pytest.mark.parametrize("cores", [0, -2, 1.5, "2", None, True])
def test_bad_core_count_is_named(cores):
    with pytest.raises(ValueError, match=r"argument `cores`.*positive int.*received"):
        threads.default_thread_counts(cores)


def test_usable_cores_follow_the_affinity():
    every = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(every)})
        assert threads.usable_cores() == 1
    finally:
        os.sched_setaffinity(0, every)
    assert threads.usable_cores() == len(every)


def test_an_mlp_run_gets_the_rule_for_the_usable_cores():
    expected = list(threads.default_thread_counts(threads.usable_cores()))
    assert report() == [expected, *expected]


@pytest.mark.slow  # a fresh process: about 5 s, beside the other fresh-process checks
def test_an_mlp_run_on_one_core_uses_one_thread_of_each_kind():
    assert report(cores={min(os.sched_getaffinity(0))}) == [[1, 1], 1, 1]


def test_a_bare_import_and_a_conv_run_keep_tensorflows_threads():
    # `before` runs after the import: the import alone has set nothing.
    before = ("import keras_lvae, tensorflow as tf; t = tf.config.threading\n"
              "assert (t.get_intra_op_parallelism_threads(), "
              "t.get_inter_op_parallelism_threads()) == (0, 0)")
    assert report(before, architecture="conv") == [None, 0, 0]


def test_ops_run_side_by_side_only_with_one_intra_op_thread_and_more_inter_op():
    # This process keeps TensorFlow's threads (0, 0); the MLP setting is checked in fresh
    # processes (test_the_default_changes_no_numbers).
    assert threads.ops_run_side_by_side() is False


SIDE_BY_SIDE = """
import tensorflow as tf, keras_lvae
{before}
print(keras_lvae.threads.ops_run_side_by_side())
"""


@pytest.mark.parametrize("env, before, expected", [
    ({"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "2"}, "", True),
    ({"TF_NUM_INTRAOP_THREADS": "1"}, "", False),
    ({}, "t = tf.config.threading; t.set_intra_op_parallelism_threads(1); "
         "t.set_inter_op_parallelism_threads(3)", True),
    ({"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "2"},
     "tf.config.threading.set_intra_op_parallelism_threads(2)", False),
], ids=["environment", "intra-op only", "tf.config", "tf.config wins"])
@pytest.mark.slow  # four fresh processes
def test_side_by_side_follows_the_effective_threads(env, before, expected):
    result = run(SIDE_BY_SIDE.format(before=before), env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-1] == str(expected)


def test_bad_architecture_is_named():
    with pytest.raises(ValueError, match=r"argument `architecture`.*'mlp', 'conv'.*'dense'"):
        threads.configure_for("dense")


def test_describe_says_what_was_chosen():
    assert threads.describe((1, 2)) == ("CPU threads: 1 intra-op, 2 inter-op "
                                        "(keras_lvae.threads)")
    assert threads.describe(None) == "CPU threads: TensorFlow's default"


@pytest.mark.parametrize("env, before", [
    ({threads.ENVIRONMENT_VARIABLE: "tensorflow"}, ""),
    ({"TF_NUM_INTRAOP_THREADS": "3"}, ""),
    ({"TF_NUM_INTEROP_THREADS": "3"}, ""),
    ({}, "import tensorflow as tf; tf.config.threading.set_inter_op_parallelism_threads(5)"),
], ids=["variable", "intra-op env", "inter-op env", "tf.config first"])
@pytest.mark.slow  # four fresh processes
def test_a_users_choice_wins(env, before):
    applied, intra_op, inter_op = report(before, env)
    assert applied is None
    # TF's getters report what was set through tf.config (0: TensorFlow's default).
    assert (intra_op, inter_op) == ((0, 5) if before else (0, 0))


@pytest.mark.slow  # a fresh process
def test_too_late_is_left_alone():
    """After TensorFlow ran an op its thread pools exist; the default steps aside."""
    assert report("import tensorflow as tf; tf.constant(1.0) + 1.0") == [None, 0, 0]


def test_bad_variable_value_is_named(monkeypatch):
    """Checked before anything is set, so this runs safely in the test process."""
    monkeypatch.setenv(threads.ENVIRONMENT_VARIABLE, "fast")
    with pytest.raises(ValueError, match=r"KERAS_LVAE_CPU_THREADS: expected one of "
                                         r"\('auto', 'tensorflow'\), received 'fast'"):
        threads.configure_for("mlp")


SAME_NUMBERS = """
import json, numpy as np, keras, keras_lvae
chosen = keras_lvae.threads.configure_for("mlp")
keras.utils.set_random_seed(0)
x = (np.random.default_rng(0).random((512, 28, 28, 1)) < 0.13).astype("float32")
# 256 units: the widest blocks train in halves where ops run side by side (MLPBlock), as
# lvae train asks for
model = keras_lvae.LadderVAE(latent_dims=(16, 8), hidden_dims=(256, 64), warmup_steps=10, seed=1,
                             row_halves=keras_lvae.threads.ops_run_side_by_side())
# SGD: Adam's first steps, lr * m / sqrt(v), turn float rounding in near-zero gradients into
# lr-sized updates (its losses here part by 2e-4 within 24 steps when the halves reorder sums).
model.compile(optimizer=keras.optimizers.SGD(1e-3))
history = model.fit(x, batch_size=64, epochs=3, shuffle=False, verbose=0)
bound = keras_lvae.log_likelihood(model, x[:20], num_samples=200, batch_size=10)
print(json.dumps([chosen, keras_lvae.threads.ops_run_side_by_side(), history.history["loss"],
                  np.asarray(bound, "float64").tolist()]))
"""


@pytest.mark.slow  # two fresh processes that train: about 20 s
def test_the_default_changes_no_numbers():
    """Training losses (fixed seeds) and L_k under the default (with the blocks in halves, on
    2 or 3 cores) and TensorFlow's threads."""
    outputs = []
    for choice in ("auto", "tensorflow"):
        result = run(SAME_NUMBERS, env={threads.ENVIRONMENT_VARIABLE: choice})
        assert result.returncode == 0, result.stderr[-3000:]
        outputs.append(json.loads(result.stdout.splitlines()[-1]))
    (applied, halves, losses, bound), (untouched, no_halves, tf_losses, tf_bound) = outputs
    assert applied is not None and untouched is None
    assert halves == (applied[0] == 1 and applied[1] >= 2) and not no_halves
    assert len(losses) == 3 and losses[-1] < losses[0]  # it trained
    np.testing.assert_allclose(losses, tf_losses, rtol=1e-5)
    np.testing.assert_allclose(bound, tf_bound, rtol=1e-5)
