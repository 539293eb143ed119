import numpy as np
import pytest
import tensorflow as tf

from keras_lvae.schedules import warmup_beta


@pytest.mark.parametrize(
    "step, expected", [(0, 0.0), (50, 0.5), (100, 1.0), (101, 1.0), (10_000, 1.0)]
)
def test_warmup_beta_is_linear_then_one(step, expected):
    assert float(warmup_beta(step, 100)) == pytest.approx(expected)
    assert float(warmup_beta(tf.constant(step, tf.int64), 100)) == pytest.approx(expected)


def test_zero_warmup_means_beta_one_from_the_start():
    assert float(warmup_beta(0, 0)) == 1.0


@pytest.mark.parametrize("bad", [-1, 2.5, "10", None, True])
def test_bad_warmup_steps_are_refused(bad):
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_beta(0, bad)


def test_warmup_beta_inside_a_compiled_function():
    step = tf.Variable(0, dtype=tf.int64)
    compiled = tf.function(lambda: warmup_beta(step, 8), jit_compile=True)
    seen = []
    for _ in range(10):
        seen.append(float(compiled()))
        step.assign_add(1)
    np.testing.assert_allclose(seen, [min(1.0, s / 8) for s in range(10)])
