"""The shared layer test, in the style of keras-hub's `TestCase.run_layer_test`.

Every public layer runs through `run_layer_test`: the config round trip (a clone
from `get_config` computes the same outputs with the same weights), a symbolic
call on `keras.KerasTensor`s (output shapes without running), an eager call
(shapes and dtypes), one `fit` step of a model around the layer compiled with
`jit_compile=True`, and eager calls under the `mixed_float16` and
`mixed_bfloat16` policies (finite outputs in the policy's compute dtype, or
float32 where the layer promises it).

Reference: keras-team/keras-hub, keras_hub/src/tests/test_case.py (run_layer_test).
"""

import keras
import numpy as np
from keras import ops

from keras_lvae.config import Config, DataConfig, ModelConfig, TrainConfig

# The tiny models the tests share (fast: a few thousand weights): LadderVAE arguments, and a
# run configuration on the shipped mnist_5k digits (9 steps of 500 images an epoch).
TINY_MODEL = dict(latent_dims=(6, 4), hidden_dims=(32, 16), seed=3)
TINIEST_MODEL = dict(latent_dims=(3,), hidden_dims=(8,), seed=1)
TINY_RUN = Config(
    data=DataConfig(dataset="mnist_5k", batch_size=500),
    model=ModelConfig(latent_dims=(8, 4), hidden_dims=(32, 16)),
    train=TrainConfig(epochs=2, warmup_epochs=1, eval_samples=5, seed=3),
)


def _flat(outputs):
    return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]


def _as_inputs(inputs):
    """A layer's call input: one array, or a tuple of arrays (a tuple input)."""
    return tuple(inputs) if isinstance(inputs, (tuple, list)) else inputs


def run_layer_test(layer_class, init_kwargs, inputs, expected_output_shapes, *,
                   call_kwargs=None, float32_outputs=False):
    """Run the shared checks on `layer_class(**init_kwargs)` called on `inputs`.

    Args:
        layer_class: the layer's class.
        init_kwargs: constructor arguments.
        inputs: a float32 array, or a tuple of arrays for a layer taking a tuple.
        expected_output_shapes: a shape, or a list of shapes for several outputs.
        call_kwargs: extra arguments of `call` (e.g. `training=True`).
        float32_outputs: the layer returns float32 whatever the policy.
    """
    call_kwargs = dict(call_kwargs or {})
    expected = (expected_output_shapes if isinstance(expected_output_shapes, list)
                else [expected_output_shapes])
    inputs = _as_inputs(inputs)

    # Eager call: shapes and dtypes.
    layer = layer_class(**init_kwargs)
    outputs = _flat(layer(inputs, **call_kwargs))
    assert [tuple(o.shape) for o in outputs] == [tuple(s) for s in expected]
    assert all(_dtype(o) == "float32" for o in outputs)

    # Config round trip: the clone computes the same outputs with the same weights.
    config = keras.saving.serialize_keras_object(layer)
    clone = keras.saving.deserialize_keras_object(config)
    assert clone.get_config() == layer.get_config()
    clone(inputs, **call_kwargs)
    clone.set_weights(layer.get_weights())
    deterministic = {**call_kwargs, **({"sample": False} if "sample" in _call_arguments(layer)
                                       else {})}
    for got, want in zip(_flat(clone(inputs, **deterministic)),
                         _flat(layer(inputs, **deterministic))):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))

    # Symbolic call on KerasTensors: the same shapes, with the batch left open.
    symbolic = _symbolic_inputs(inputs)
    symbolic_outputs = _flat(layer_class(**init_kwargs)(symbolic, **call_kwargs))
    assert all(isinstance(o, keras.KerasTensor) for o in symbolic_outputs)
    assert [tuple(o.shape)[1:] for o in symbolic_outputs] == [tuple(s)[1:] for s in expected]

    # One training step under XLA of a model around the layer.
    if layer.trainable_weights:
        _fit_one_step(layer_class, init_kwargs, inputs, call_kwargs)

    # Mixed precision: finite outputs in the compute dtype (or float32 where promised).
    for policy in ("mixed_float16", "mixed_bfloat16"):
        mixed = layer_class(**init_kwargs, dtype=policy)
        mixed_outputs = _flat(mixed(inputs, **call_kwargs))
        want = "float32" if float32_outputs else mixed.compute_dtype
        assert all(_dtype(o) == want for o in mixed_outputs), policy
        assert all(np.isfinite(np.asarray(ops.cast(o, "float32"))).all() for o in mixed_outputs)


def _dtype(tensor):
    return keras.backend.standardize_dtype(tensor.dtype)


def _call_arguments(layer):
    import inspect

    return inspect.signature(layer.call).parameters


def _symbolic_inputs(inputs):
    if isinstance(inputs, tuple):
        return tuple(keras.KerasTensor((None, *np.shape(x)[1:])) for x in inputs)
    return keras.KerasTensor((None, *np.shape(inputs)[1:]))


def _fit_one_step(layer_class, init_kwargs, inputs, call_kwargs):
    """A functional model around the layer; one SGD step on the mean of its outputs."""
    symbolic = (tuple(keras.Input(np.shape(x)[1:]) for x in inputs) if isinstance(inputs, tuple)
                else keras.Input(np.shape(inputs)[1:]))
    outputs = _flat(layer_class(**init_kwargs)(symbolic, **call_kwargs))
    total = sum(ops.mean(ops.cast(o, "float32"), axis=-1) for o in outputs)
    model = keras.Model(symbolic, total)
    model.compile(optimizer=keras.optimizers.SGD(1e-3),
                  loss=lambda y_true, y_pred: ops.mean(y_pred), jit_compile=True)
    batch = len(inputs[0]) if isinstance(inputs, tuple) else len(inputs)
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = model.fit(inputs, np.zeros(batch, "float32"), batch_size=batch, epochs=1,
                        verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))
