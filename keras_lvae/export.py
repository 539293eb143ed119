"""SavedModel export for TF Serving: versioned, atomic, standard TF ops only.

`export_saved_model(model, base_dir)` writes `base_dir/<version>/`, the layout
TF Serving watches, with seven signatures (eight for ladders of two or more layers) (all `tensorflow/serving/predict`,
dynamic batch size, named inputs and outputs). `images`, in and out, have the
model's input shape and are float32 in [0, 1]; for a model of 8-bit data
(`likelihood="logistic_mixture"`) they are uint8 in {0, ..., 255}, as a decoded
PNG or JPEG is (outputs: the model's mean image, rounded):

| signature | inputs | outputs |
|---|---|---|
| `score` (= `serving_default`) | `images`, `num_samples` int32 scalar (k >= 1), `seed` int32[2] | `elbo` [batch], `log_likelihood` [batch] (L_k), nats; for 8-bit colour models also `bits_per_dim` [batch] (of L_k) |
| `encode` | `images` | `mean_<i>`, `variance_<i>` [batch, *latent shape i] per layer i = 1 (bottom) ... L |
| `reconstruct` | `images` | `reconstruction`, shaped like `images` (from posterior means) |
| `decode` | `z_1` float32 [batch, *latent shape 1] | `images`: mean of p(x | z_1) |
| `generate` | `num_samples` int32 scalar, `seed` int32[2] | `images` [num_samples, ...] prior samples |
| `generate_at_temperature` | as `generate`, and `temperature` float32 [L] (bottom to top) | `images`, with each layer's prior standard deviation scaled |
| `interpolate` | `images_a`, `images_b` (as many), `steps` int32 scalar, `layer` int32 scalar in 1 ... L | `images` [batch, steps, ...]: `LadderVAE.interpolate` (spherical) in that layer |
| `anomaly_score` (ladders of 2+ layers) | `images`, `num_samples` int32 scalar (S >= 1), `seed` int32[2] | `nll` [batch] (-L_S) and `llr_above_<k>` [batch] for k = 1 ... L-1 (L_S - L_S^{>k}): `keras_lvae.ood_scores`, higher = more unusual |

A conditional model (`num_classes=N`) takes `labels`, int32 [batch] in 0 ... N-1 (for the
sampling signatures [num_samples], for `interpolate` one per pair), in every signature but
`decode`: scores are then of log p(x | y), samples are of the asked classes.

Sampling signatures are stateless: the same `seed` gives the same output and
no variable is written, so concurrent requests cannot race. Inputs outside
[0, 1] (or NaN), `num_samples` < 1 and wrong shapes fail inside the
signature with a message that names the input.
"""

import os
import re
import shutil

import tensorflow as tf

from keras_lvae import _checks, _files, inputs
from keras_lvae.densities import bits_per_dim
from keras_lvae.evaluation import chunked_log_mean_exp
from keras_lvae.models.ladder_vae import LadderVAE

SIGNATURES = ("score", "encode", "reconstruct", "decode", "generate", "generate_at_temperature",
              "interpolate")
# Importance samples per pass of `score`: rows = batch x this; k is covered by a
# loop of such passes, so memory does not grow with k.
DEFAULT_SCORE_CHUNK = 64


def _checked(tensor, name, shape, *, unit_interval=False, at_least_one=False, at_most=None,
             finite=False):
    """`tensor` after runtime checks that name the input, with static shape `shape`.

    Signature inputs are checked where they enter, so a bad request fails with
    a message about `name` instead of an error deep inside the model (TF
    Serving does not check fed shapes against the signature's declared ones).
    `shape` uses None for the batch dimension. Each check is a `tf.cond` whose
    failing branch asserts, so it runs before any model op sees the input.
    """
    def require(tensor, ok, message, *data):
        def fail():
            with tf.control_dependencies([tf.debugging.Assert(False, [message, *data])]):
                return tf.zeros([1 if d is None else d for d in shape], tensor.dtype)
        return tf.cond(ok, lambda: tf.identity(tensor), fail)

    if None not in shape:
        # A fully declared shape: TF folds a computed shape check into a constant, so
        # EnsureShape itself refuses ("Shape of tensor seed [3] is not compatible ...").
        tensor = tf.ensure_shape(tensor, shape, name=f"{name}_must_have_shape_"
                                 + ("_".join(map(str, shape)) or "scalar"))
    else:
        actual = tf.shape(tensor)
        padded = tf.concat([actual, tf.zeros([len(shape)], tf.int32)], 0)[:len(shape)]
        fixed = [i for i, d in enumerate(shape) if d is not None]
        shape_ok = tf.logical_and(
            tf.equal(tf.size(actual), len(shape)),
            tf.reduce_all(tf.equal(tf.gather(padded, tf.constant(fixed, tf.int32)),
                                   tf.constant([shape[i] for i in fixed], tf.int32))))
        expected = "[" + ", ".join("batch" if d is None else str(d) for d in shape) + "]"
        tensor = require(tensor, shape_ok, f"Invalid input `{name}`: expected shape {expected}, "
                         "received", actual)
    if unit_interval:
        tensor = require(tensor, tf.reduce_all((tensor >= 0.0) & (tensor <= 1.0)),
                         f"Invalid input `{name}`: expected values in [0, 1] (scale 8-bit images "
                         "by 1/255), received values outside [0, 1] or NaN")
    if finite:
        tensor = require(tensor, tf.reduce_all(tf.math.is_finite(tensor)),
                         f"Invalid input `{name}`: expected finite values, received NaN or Inf")
    if at_least_one:
        tensor = require(tensor, tf.reduce_all(tensor >= 1),
                         f"Invalid input `{name}`: expected an int >= 1, received", tensor)
    if at_most is not None:
        tensor = require(tensor, tf.reduce_all(tensor <= at_most),
                         f"Invalid input `{name}`: expected an int <= {at_most}, received", tensor)
    return tf.ensure_shape(tensor, shape)  # static shape for the model code


def score_function(model, chunk_samples=DEFAULT_SCORE_CHUNK):
    """The `score` computation: (images, num_samples, seed) -> {elbo, log_likelihood}.

    `elbo` is the one-sample ELBO (analytic KL where the model uses it) drawn
    with `fold_in(seed, 0)`; `log_likelihood` is L_k over `num_samples`
    importance samples drawn in passes of `chunk_samples`, pass j with
    `fold_in(seed, j + 1)`, combined by a running log-sum-exp.
    """
    chunk_samples = _checks.positive_int("chunk_samples", chunk_samples)

    def score(images, num_samples, seed, labels=None):
        images = _model_images(model, images)
        labels = _labels(model, labels, images)
        num_samples = _checked(num_samples, "num_samples", (), at_least_one=True)
        seed = _checked(seed, "seed", (2,))
        fold = tf.random.experimental.stateless_fold_in
        elbo = -model.elbo_terms(images, seed=fold(seed, 0), labels=labels)["nelbo"]
        log_likelihood = chunked_log_mean_exp(
            lambda j: model.importance_log_weights(images, chunk_samples, seed=fold(seed, j + 1),
                                                   labels=labels),
            num_samples, chunk_samples)
        outputs = {"elbo": elbo, "log_likelihood": log_likelihood}
        if model.likelihood_class.eight_bit:  # 8-bit data: -L_k in bits per dimension
            outputs["bits_per_dim"] = bits_per_dim(log_likelihood, model.num_features)
        return outputs

    return score


def anomaly_function(model, chunk_samples=DEFAULT_SCORE_CHUNK):
    """The `anomaly_score` computation: (images, num_samples, seed) -> {nll,
    llr_above_1, ..., llr_above_<L-1>}, `keras_lvae.ood_scores` per image (higher:
    more unusual). Pass j of the bounds' shared samples draws with `fold_in(seed, j)`.
    """
    from keras_lvae.ood import skip_bounds

    chunk_samples = _checks.positive_int("chunk_samples", chunk_samples)

    def anomaly_score(images, num_samples, seed, labels=None):
        images = _model_images(model, images)
        labels = _labels(model, labels, images)
        num_samples = _checked(num_samples, "num_samples", (), at_least_one=True)
        bounds = skip_bounds(model, images, num_samples, chunk_samples,
                             seed=_checked(seed, "seed", (2,)), labels=labels)
        outputs = {"nll": -bounds[0]}
        for k in range(1, model.num_layers):
            outputs[f"llr_above_{k}"] = bounds[0] - bounds[k]
        return outputs

    return anomaly_score


def _eight_bit(model):
    return model.likelihood_class.eight_bit


def _model_images(model, images, name="images"):
    """Checked signature images (input `name`) as the model's float32 in [0, 1]."""
    if _eight_bit(model):
        if images.dtype != tf.uint8:  # the float trace of the module's functions: refuse
            with tf.control_dependencies([tf.debugging.Assert(False, [
                    f"Invalid input `{name}`: this model codes 8-bit images: expected uint8 "
                    f"values in [0, 255] (as a decoded PNG or JPEG), received {images.dtype.name}; "
                    "send round(255 * x) as uint8 for images x in [0, 1]"])]):
                images = tf.zeros_like(images, tf.uint8)
        images = _checked(images, name, (None, *model.feature_shape))
        return tf.cast(images, tf.float32) / 255.0
    return _checked(images, name, (None, *model.feature_shape),
                    unit_interval=model.likelihood_class.unit_interval, finite=True)


def _labels(model, labels, rows):
    """A conditional model's checked int32 labels, one per row of `rows` (images, or a
    count); None for an unconditional model (whose signatures have no labels)."""
    if model.num_classes is None:
        return None
    labels = _checked(labels, "labels", (None,))
    count = tf.shape(rows)[0] if hasattr(rows, "shape") and rows.shape.rank else rows
    return inputs.labels(labels, model.num_classes, count)


def _output_images(model, images):
    """The model's float images as the signature returns them (uint8 for 8-bit data)."""
    if _eight_bit(model):
        return tf.cast(tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255.0), tf.uint8)
    return images


def _endpoints(model, chunk_samples):
    """{name: (function returning a dict of named outputs, input signature)}, in the
    order of SIGNATURES."""
    # Declared shapes and dtypes tell callers (saved_model_cli, TF Serving's metadata
    # endpoint, client generators) what to send; neither TF Serving nor a loaded signature
    # checks fed shapes against them, so `_checked` checks them again inside.
    image_spec = tf.TensorSpec((None, *model.feature_shape),
                               tf.uint8 if _eight_bit(model) else tf.float32, name="images")
    count_spec = tf.TensorSpec((), tf.int32, name="num_samples")
    seed_spec = tf.TensorSpec((2,), tf.int32, name="seed")
    latent_spec = tf.TensorSpec((None, *model.latent_shapes[0]), tf.float32, name="z_1")

    def encode(images, labels=None):
        images = _model_images(model, images)
        outputs = {}
        for i, (mean, variance) in enumerate(model.encode(images,
                                                          _labels(model, labels, images))):
            outputs[f"mean_{i + 1}"] = mean
            outputs[f"variance_{i + 1}"] = variance
        return outputs

    def reconstruct(images, labels=None):
        images = _model_images(model, images)
        labels = _labels(model, labels, images)
        reconstruction = model(images if labels is None else (images, labels), training=False)
        return {"reconstruction": _output_images(model, reconstruction)}

    def decode(z_1):
        z_1 = _checked(z_1, "z_1", (None, *model.latent_shapes[0]), finite=True)
        return {"images": _output_images(model, model.decode(z_1))}

    def generate(num_samples, seed, labels=None):
        num_samples = _checked(num_samples, "num_samples", (), at_least_one=True)
        images = model.generate_stateless(num_samples, _checked(seed, "seed", (2,)),
                                          labels=_labels(model, labels, num_samples))
        return {"images": _output_images(model, images)}

    temperature_spec = tf.TensorSpec((model.num_layers,), tf.float32, name="temperature")

    def generate_at_temperature(num_samples, seed, temperature, labels=None):
        num_samples = _checked(num_samples, "num_samples", (), at_least_one=True)
        temperature = _checked(temperature, "temperature", (model.num_layers,), finite=True)
        images = model.generate_stateless(num_samples, _checked(seed, "seed", (2,)),
                                          [temperature[i] for i in range(model.num_layers)],
                                          labels=_labels(model, labels, num_samples))
        return {"images": _output_images(model, images)}

    def interpolate(images_a, images_b, steps, layer, labels=None):
        a = _model_images(model, images_a, "images_a")
        b = _model_images(model, images_b, "images_b")
        labels = _labels(model, labels, a)
        pairs_match = tf.debugging.assert_equal(
            tf.shape(a)[0], tf.shape(b)[0],
            message="Invalid input `images_b`: expected as many images as `images_a`")
        steps = _checked(steps, "steps", (), at_least_one=True)
        layer = _checked(layer, "layer", (), at_least_one=True, at_most=model.num_layers)
        fractions = tf.linspace(0.0, 1.0, steps)
        with tf.control_dependencies([pairs_match]):
            images = tf.switch_case(layer - 1, [
                lambda i=i: model.interpolation(a, b, fractions, i, "slerp", labels)
                for i in range(model.num_layers)])
        return {"images": _output_images(model, images)}

    pair_specs = [tf.TensorSpec(image_spec.shape, image_spec.dtype, name=name)
                  for name in ("images_a", "images_b")]
    step_spec = tf.TensorSpec((), tf.int32, name="steps")
    layer_spec = tf.TensorSpec((), tf.int32, name="layer")

    endpoints = {
        "score": (score_function(model, chunk_samples), [image_spec, count_spec, seed_spec]),
        "encode": (encode, [image_spec]),
        "reconstruct": (reconstruct, [image_spec]),
        "decode": (decode, [latent_spec]),
        "generate": (generate, [count_spec, seed_spec]),
        "generate_at_temperature": (generate_at_temperature,
                                    [count_spec, seed_spec, temperature_spec]),
        "interpolate": (interpolate, [*pair_specs, step_spec, layer_spec]),
    }
    if model.inference == "ladder" and model.num_layers > 1:  # Havtorn et al.'s ratios
        endpoints["anomaly_score"] = (anomaly_function(model, chunk_samples),
                                      [image_spec, count_spec, seed_spec])
    if model.num_classes is not None:  # every signature but decode takes the labels
        label_spec = tf.TensorSpec((None,), tf.int32, name="labels")
        endpoints = {name: (function, specs + ([] if name == "decode" else [label_spec]))
                     for name, (function, specs) in endpoints.items()}
    return endpoints


def signature_names(model):
    """The names of the signatures `export_saved_model` writes for `model`."""
    return list(_endpoints(model, DEFAULT_SCORE_CHUNK))


def _versions(base_dir):
    return [int(name) for name in os.listdir(base_dir) if re.fullmatch(r"\d+", name)]


def export_saved_model(model, base_dir, version=None, *, chunk_samples=DEFAULT_SCORE_CHUNK):
    """Write `model` as a TF Serving SavedModel in `base_dir/<version>/`; return that path.

    Args:
        model: a built `LadderVAE`.
        base_dir: the model's directory as TF Serving sees it (created if absent).
        version: positive int; None takes the next free one (1 for a new directory).
            An existing version is never overwritten.
        chunk_samples: importance samples per pass inside `score`.

    The SavedModel is written into a temporary directory inside `base_dir`
    (TF Serving ignores non-numeric names) and renamed into place, so a failed
    export leaves no version behind. See the module docstring for signatures.

    Example:
    >>> import numpy as np, tempfile, keras_lvae
    >>> model = keras_lvae.LadderVAE(latent_dims=(2,), hidden_dims=(8,), seed=1)
    >>> _ = model(np.zeros((1, 4, 4, 1), "float32"))
    >>> base = tempfile.mkdtemp()
    >>> [os.path.basename(export_saved_model(model, base)) for _ in range(2)]
    ['1', '2']
    """
    if not isinstance(model, LadderVAE):
        raise ValueError("Invalid value for argument `model`: expected a LadderVAE, received "
                         f"{type(model).__name__}.")
    if not model.built:
        raise ValueError("Invalid value for argument `model`: expected a built model (call it on "
                         "data or fit it first), received an unbuilt one.")
    if version is not None:
        _checks.positive_int("version", version)
    base_dir = os.fspath(base_dir)
    if os.path.exists(base_dir) and not os.path.isdir(base_dir):
        raise ValueError(f"Invalid value for argument `base_dir`: expected a directory, "
                         f"received the file {base_dir!r}.")
    os.makedirs(base_dir, exist_ok=True)
    if version is None:
        version = max(_versions(base_dir), default=0) + 1
    target = os.path.join(base_dir, str(version))
    if os.path.exists(target):
        raise FileExistsError(f"Version {version} already exists in {base_dir!r}; exports never "
                              "overwrite a version. Pass another `version` or None for the next.")

    # A plain tf.Module rather than keras.export.ExportArchive: the archive saves
    # every variable twice (as Keras and as TF variables), doubling the size.
    module = tf.Module()
    signatures = {}
    for name, (function, input_signature) in _endpoints(model, chunk_samples).items():
        traced = tf.function(function, autograph=False)
        setattr(module, name, traced)
        signatures[name] = traced.get_concrete_function(*input_signature)
        if any(spec.dtype == tf.uint8 for spec in input_signature):
            # The loaded module's functions (`loaded.score(...)`, not the signatures) get
            # a float trace that fails with a named error: without it TensorFlow prints
            # the whole array or, for a numpy array, truncates floats to uint8 silently.
            traced.get_concrete_function(*[
                tf.TensorSpec(spec.shape, tf.float32, spec.name) if spec.dtype == tf.uint8
                else spec for spec in input_signature])
    # `score` is the default: scoring is what a density model is served for.
    signatures["serving_default"] = signatures["score"]
    used = {id(v): v for concrete in signatures.values() for v in concrete.variables}
    module.model_variables = list(used.values())
    staging = _files.staging_directory(f".export-{version}-", base_dir)
    try:
        tf.saved_model.save(module, staging, signatures=signatures)
        if os.path.exists(target):  # appeared while we were writing
            raise FileExistsError(f"Version {version} appeared in {base_dir!r} during the export.")
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
