"""Exports that run without TensorFlow: ONNX (onnxruntime) and LiteRT (phones, embedded).

Four functions of a built ladder, each with named inputs and outputs and a dynamic batch:

| function | inputs | outputs |
|---|---|---|
| `decode` | `z_1` float32 [batch, *latent shape 1] | `images`: the mean of p(x | z_1) |
| `encode` | `images` | `mean_<i>`, `variance_<i>` per layer i = 1 (bottom) ... L |
| `generate` | `noise_<i>` float32 [batch, *latent shape i], i = 1 ... L | `images`: z_L = mean + sd x noise_L, then down p(z_i | z_{>i}); the mean of p(x | z_1) |
| `score` | `images`, `noise_<i>` float32 [k, batch, *latent shape i] | `log_likelihood` [batch]: L_k with the k posterior draws made of the noise (nats); `bits_per_dim` too for 8-bit models |

`images` in are float32 in [0, 1], or uint8 in {0, ..., 255} for a model of 8-bit data,
as the SavedModel takes them; `images` out are float32 means in [0, 1] (round(255 x) for
8-bit pixels). Random ops do not travel between runtimes, so the caller passes the
standard-normal draws: the same noise gives the same output in every runtime, and with
k = 1, `score` is the one-sample ELBO estimate. Nothing is checked inside the graphs
(assertions do not convert); the runtimes check dtypes and the declared dimensions.

ONNX: a folder with one graph per function (`decode.onnx`, ...: an ONNX graph has one
entry point). LiteRT: one `.tflite` file holding the four as signatures.

Reference: Keras' own `Model.export(format="onnx" | "litert")` (keras/src/export/onnx.py
and litert.py): a traced function converted by tf2onnx, and a SavedModel converted by
TensorFlow's LiteRT converter; here with these four functions instead of `call`.
"""

import os
import shutil
import tempfile

import tensorflow as tf

from keras_lvae._files import atomic_write, staging_directory
from keras_lvae.densities import bits_per_dim

FUNCTIONS = ("decode", "encode", "generate", "score")
FORMATS = ("tf_saved_model", "onnx", "litert")
ONNX_OPSET = 17  # onnxruntime 1.20 and later run it


def portable_functions(model):
    """{name: (tf.function returning a dict of named outputs, its input signature)}."""
    eight_bit = model.likelihood_class.eight_bit
    image_spec = tf.TensorSpec((None, *model.feature_shape),
                               tf.uint8 if eight_bit else tf.float32, name="images")
    shapes = model.latent_shapes

    def model_images(images):
        return tf.cast(images, tf.float32) / 255.0 if eight_bit else images

    def decode(z_1):
        return {"images": model.decode(z_1)}

    def encode(images):
        outputs = {}
        for i, (mean, variance) in enumerate(model.encode(model_images(images))):
            outputs[f"mean_{i + 1}"], outputs[f"variance_{i + 1}"] = mean, variance
        return outputs

    def generate(*noise):
        return {"images": model.generate_from_noise(list(noise))}

    def score(images, *noise):
        samples = tf.shape(noise[0])[0]
        log_weights = model.importance_log_weights(model_images(images), samples,
                                                   noise=list(noise))  # [k, batch]
        bound = (tf.reduce_logsumexp(log_weights, axis=0)
                 - tf.math.log(tf.cast(samples, tf.float32)))
        outputs = {"log_likelihood": bound}
        if eight_bit:
            outputs["bits_per_dim"] = bits_per_dim(bound, model.num_features)
        return outputs

    noise = [tf.TensorSpec((None, *shape), tf.float32, name=f"noise_{i + 1}")
             for i, shape in enumerate(shapes)]
    sample_noise = [tf.TensorSpec((None, *spec.shape), tf.float32, name=spec.name)
                    for spec in noise]
    specs = {
        "decode": [tf.TensorSpec((None, *shapes[0]), tf.float32, name="z_1")],
        "encode": [image_spec],
        "generate": noise,
        "score": [image_spec, *sample_noise],
    }
    functions = {"decode": decode, "encode": encode, "generate": generate, "score": score}
    return {name: (tf.function(functions[name], input_signature=specs[name], autograph=False),
                   specs[name]) for name in FUNCTIONS}


def export_onnx(model, path, opset=ONNX_OPSET):
    """Write the four functions as ONNX graphs into the new folder `path` (written
    beside it, then renamed: never half a folder). Needs `keras-lvae[onnx]`."""
    tf2onnx = _extra("tf2onnx", "onnx")
    _extra("onnx", "onnx")
    target = _new_path(path)
    staging = staging_directory(".onnx-", os.path.dirname(target) or ".")
    try:
        for name, (function, specs) in portable_functions(_checked(model)).items():
            tf2onnx.convert.from_function(function, input_signature=specs, opset=opset,
                                          output_path=os.path.join(staging, f"{name}.onnx"))
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def export_litert(model, path):
    """Write the four functions as the signatures of one LiteRT flatbuffer `path`
    (`.tflite`; written beside it, then renamed). Converting needs TensorFlow only;
    running it needs `keras-lvae[litert]` (ai-edge-litert) or TensorFlow Lite."""
    target = _new_path(path)
    functions = portable_functions(_checked(model))
    module = tf.Module()
    for name, (function, _) in functions.items():
        setattr(module, name, function)
    concrete = {name: function.get_concrete_function() for name, (function, _) in
                functions.items()}
    used = {id(v): v for c in concrete.values() for v in c.variables}
    module.model_variables = list(used.values())  # tracked, so the SavedModel holds them
    with tempfile.TemporaryDirectory() as saved_model:
        tf.saved_model.save(module, saved_model, signatures=concrete)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model,
                                                             signature_keys=list(FUNCTIONS))
        flatbuffer = converter.convert()
    with atomic_write(target, "wb") as file:
        file.write(flatbuffer)
    return target


def export_model(model, path, format="tf_saved_model"):
    """Export a built ladder: `tf_saved_model` (TF Serving's versioned folder
    `path/<version>/`, every signature: `keras_lvae.export.export_saved_model`),
    `onnx` (a folder of four graphs: `export_onnx`) or `litert` (one `.tflite`
    file: `export_litert`). Returns what was written.

    Example:
    >>> import numpy as np, tempfile, keras_lvae
    >>> model = keras_lvae.LadderVAE(latent_dims=(2,), hidden_dims=(8,), seed=1)
    >>> _ = model(np.zeros((1, 4, 4, 1), "float32"))
    >>> path = export_model(model, os.path.join(tempfile.mkdtemp(), "m.tflite"), "litert")
    >>> os.path.basename(path)
    'm.tflite'
    """
    if format == "tf_saved_model":
        from keras_lvae.export import export_saved_model

        return export_saved_model(model, path)
    if format == "onnx":
        return export_onnx(model, path)
    if format == "litert":
        return export_litert(model, path)
    raise ValueError(f"Invalid value for argument `format`: expected one of {', '.join(FORMATS)}, "
                     f"received {format!r}.")


def _checked(model):
    from keras_lvae.models.ladder_vae import LadderVAE

    if not isinstance(model, LadderVAE) or not model.built:
        raise ValueError("Invalid value for argument `model`: expected a built LadderVAE or "
                         f"ConvLadderVAE (call it on data or fit it first), received "
                         f"{'an unbuilt ' if isinstance(model, LadderVAE) else ''}"
                         f"{type(model).__name__}.")
    if model.num_classes is not None:
        raise ValueError("Invalid value for argument `model`: ONNX and LiteRT exports of "
                         "conditional models (num_classes) are not offered yet; export it "
                         "with format='tf_saved_model', whose signatures take `labels`.")
    return model


def _new_path(path):
    path = os.fspath(path)
    if os.path.exists(path):
        raise FileExistsError(f"Invalid value for argument `path`: {path!r} exists; exports "
                              "never overwrite. Pass a new path.")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return path


def _extra(module, extra):
    """`module`, or a one-line error naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"Exporting to {extra.upper()} needs the `{extra}` extra: "
                          f'pip install "keras-lvae[{extra}]" (missing: {module}).') from None
