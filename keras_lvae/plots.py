"""PNG figures of a trained model: samples, reconstructions, latent usage, curves.

Headless (matplotlib's Agg canvas, no pyplot, no display). Every figure is
drawn at 100 dpi with a fixed size, stated in each function, and written to a
temporary file that is then renamed, so a failure never leaves a partial PNG.
Needs the `plotting` extra: `pip install "keras-lvae[plotting]"`.

Example:
>>> import numpy as np, tempfile, os, keras_lvae
>>> from keras_lvae import plots
>>> model = keras_lvae.LadderVAE(latent_dims=(4, 2), hidden_dims=(16, 8), seed=1)
>>> x = (np.random.default_rng(0).random((50, 8, 8)) < 0.5).astype("float32")
>>> _ = model(x)
>>> path = plots.plot_prior_samples(model, os.path.join(tempfile.mkdtemp(), "s.png"))
>>> plots.png_size(path)
(800, 800)
"""

import math
import os
import struct

import numpy as np

from keras_lvae._files import atomic_write
from keras_lvae.models.ladder_vae import LadderVAE

DPI = 100


def new_figure(width, height):
    """A headless (Agg) matplotlib figure of `width` x `height` inches at 100 dpi.

    For figures of your own beside ours; `save_figure` writes it. Needs matplotlib.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            'keras_lvae.plots needs matplotlib: pip install "keras-lvae[plotting]"'
        ) from None
    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure, path):
    """Write the figure as PNG to `path` atomically; return the path."""
    with atomic_write(path, "wb") as file:
        figure.savefig(file, format="png", dpi=DPI)
    return os.fspath(path)


def png_size(path):
    """(width, height) in pixels of a PNG file, read from its header."""
    with open(path, "rb") as file:
        header = file.read(24)
    if header[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"Not a PNG file: {path!r}.")
    return struct.unpack(">II", header[16:24])


def as_images(values, feature_shape):
    """[n, H, W] (grey) or [n, H, W, 3] arrays for display, from model-shaped values."""
    values = np.asarray(values, dtype=np.float32)
    shape = tuple(feature_shape)
    if len(shape) == 3 and shape[-1] == 1:
        shape = shape[:-1]
    elif len(shape) == 1 and math.isqrt(shape[0]) ** 2 == shape[0]:
        shape = (math.isqrt(shape[0]),) * 2  # flat square images, e.g. 784 = 28 x 28
    if not (len(shape) == 2 or (len(shape) == 3 and shape[-1] == 3)):
        raise ValueError(
            f"Cannot draw inputs of shape {tuple(feature_shape)} as images: expected "
            "(H, W), (H, W, 1), (H, W, 3) or a flat square size."
        )
    return np.clip(values.reshape((-1,) + shape), 0.0, 1.0)


def image_mosaic(images, columns):
    """One [rows x columns] mosaic of `images` [n, H, W(, C)] with one-pixel white gaps."""
    count, height, width = images.shape[:3]
    rows = math.ceil(count / columns)
    mosaic = np.ones((rows * (height + 1) - 1, columns * (width + 1) - 1) + images.shape[3:],
                     dtype=np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        mosaic[r * (height + 1):r * (height + 1) + height, c * (width + 1):c * (width + 1) + width] = image
    return mosaic


def _image_grid(axes, images, columns):
    """`image_mosaic` drawn on `axes`."""
    axes.imshow(image_mosaic(images, columns), cmap="gray", vmin=0.0, vmax=1.0,
                interpolation="nearest")
    axes.set_axis_off()


def class_labels(model, count):
    """Labels 0, 1, ..., N-1, 0, ... for `count` samples of a conditional model (N =
    `num_classes`); None for an unconditional one."""
    classes = getattr(model, "num_classes", None)
    return None if classes is None else np.arange(count, dtype=np.int32) % classes


def plot_prior_samples(model, path, *, num_samples=100, seed=0, temperature=1.0, label=None):
    """A grid of `generate(num_samples, seed, temperature)` images (10 per row); 800 x 800 px.

    A conditional model draws every sample from class `label`, or without one a grid of
    one row of 10 per class (num_samples is then 10 x num_classes).
    """
    what = f"{num_samples} samples from the prior"
    labels = label
    if getattr(model, "num_classes", None) is not None and label is None:
        num_samples = 10 * model.num_classes
        labels = np.repeat(np.arange(model.num_classes, dtype=np.int32), 10)
        what = "samples from the prior, one row per class (0 at the top)"
    elif label is not None:
        what += f" of class {label}"
    images = as_images(model.generate(num_samples, seed=seed, temperature=temperature,
                                      labels=labels), model.feature_shape)
    figure = new_figure(8, 8)
    _image_grid(figure.add_axes((0.01, 0.01, 0.98, 0.94)), images, columns=10)
    at = "" if temperature == 1.0 else f", temperature {temperature:g}"
    figure.suptitle(f"{what} (seed {seed}{at})")
    return save_figure(figure, path)


def plot_layer_variations(model, path, *, rows=4, columns=8, seed=0, layers=None):
    """What each stochastic layer controls: one panel per layer (top layer first) of
    `model.layer_variations` (a row fixes the layers above, its columns resample the
    layer, the layers below take their means). `layers`: which (1 = bottom; default
    all). A conditional model's rows go through the classes 0, 1, ... Size: (400 *
    panels) x 300 px.
    """
    shown = sorted(range(1, model.num_layers + 1) if layers is None else layers, reverse=True)
    num = len(shown)
    figure = new_figure(4 * num, 3)
    for panel, layer in enumerate(shown):
        images = as_images(model.layer_variations(layer, rows, columns, seed=seed,
                                                  labels=class_labels(model, rows)),
                           model.feature_shape)
        axes = figure.add_axes((panel / num + 0.005, 0.02, 1 / num - 0.01, 0.8))
        _image_grid(axes, images, columns=columns)
        top = layer == model.num_layers
        axes.set_title(f"z_{layer} resampled" + (" (top)" if top else ""), fontsize=9)
    figure.suptitle("What each layer controls: a row fixes the layers above, columns resample "
                    "the layer, layers below at their means", fontsize=9)
    return save_figure(figure, path)


def plot_reconstructions(model, images, path, *, num_images=10, labels=None):
    """Inputs (top row) above their deterministic reconstructions; 800 x 200 px. A
    conditional model reconstructs with the images' `labels`."""
    inputs = np.asarray(images[:num_images], dtype=np.float32)
    if len(inputs) == 0:
        raise ValueError("Invalid value for argument `images`: expected at least one image, "
                         "received none.")
    given = inputs if labels is None else (inputs, np.asarray(labels)[:num_images])
    pairs = np.concatenate([as_images(inputs, model.feature_shape),
                            as_images(model(given), model.feature_shape)])
    figure = new_figure(8, 2)
    _image_grid(figure.add_axes((0.01, 0.01, 0.98, 0.84)), pairs, columns=len(inputs))
    figure.suptitle("inputs (top) and reconstructions from the posterior means (bottom)")
    return save_figure(figure, path)


def plot_kl_per_layer(diagnostics, path, *, threshold=0.01):
    """Bar chart of KL(q || p) per stochastic layer, from `latent_diagnostics`; 600 x 400 px.

    Each bar says how many units are active: unit KL > `threshold` (the value
    `latent_diagnostics` used, 0.01 nats by default), which the title states.
    """
    kls = [layer["kl"] for layer in diagnostics]
    figure = new_figure(6, 4)
    axes = figure.add_subplot()
    names = [f"z_{i + 1}" for i in range(len(kls))]
    axes.bar(names, kls, color="tab:blue")
    for i, layer in enumerate(diagnostics):
        axes.annotate(f"{layer['active_units_kl']}/{layer['kl_per_unit'].size} active",
                      (i, kls[i]), ha="center", va="bottom", fontsize=8)
    axes.set_xlabel("stochastic layer (1 = bottom)")
    axes.set_ylabel("KL(q || p) [nats]")
    axes.set_title(f"KL per layer (active: unit KL > {threshold:g} nats)")
    figure.tight_layout()
    return save_figure(figure, path)


def plot_kl_heatmaps(diagnostics, path):
    """KL per unit (per channel, summed over positions, for feature-map latents),
    one strip per layer (top layer first), shared log colour scale.

    Size: 800 x (100 * number of layers + 100) px.
    """
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import MaxNLocator

    num = len(diagnostics)
    figure = new_figure(8, num + 1)
    grid = figure.add_gridspec(num, 2, width_ratios=(40, 1))
    floor = 1e-4
    top = max(floor * 10, max(float(np.max(layer["kl_per_channel"])) for layer in diagnostics))
    norm = LogNorm(vmin=floor, vmax=top)
    for row, i in enumerate(reversed(range(num))):
        kl = np.maximum(np.asarray(diagnostics[i]["kl_per_channel"], dtype=np.float64), floor)
        axes = figure.add_subplot(grid[row, 0])
        image = axes.imshow(kl[None, :], aspect="auto", cmap="viridis", norm=norm,
                            interpolation="nearest")
        axes.set_yticks([])
        axes.set_ylabel(f"z_{i + 1}", rotation=0, ha="right", va="center")
        axes.tick_params(axis="x", labelsize=7)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.colorbar(image, cax=figure.add_subplot(grid[:, 1]), label="KL [nats]")
    spatial = any(np.ndim(layer["kl_per_unit"]) > 1 for layer in diagnostics)
    figure.suptitle("KL per latent channel, summed over positions (channels on the x axis)"
                    if spatial else "KL per latent unit (units on the x axis)")
    return save_figure(figure, path)


def plot_latent_pca(model, images, path, *, labels=None):
    """First two principal components of each layer's posterior samples, coloured
    by label when given. Size: (320 * number of layers) x 340 px."""
    if not isinstance(model, LadderVAE):
        raise TypeError(f"Invalid value for argument `model`: expected a LadderVAE, "
                        f"received {type(model).__name__}.")
    conditional = getattr(model, "num_classes", None) is not None  # q(z | x, y): the labels
    samples = [np.asarray(z, dtype=np.float64).reshape(len(z), -1)  # feature maps: flattened
               for z in model.sample_posterior(images, labels if conditional else None)]
    if labels is not None:
        labels = np.asarray(labels).ravel()
        if len(labels) != len(samples[0]):
            raise ValueError(f"Invalid value for argument `labels`: expected one per image "
                             f"({len(samples[0])}), received {len(labels)}.")
    colours = {}
    if labels is not None:  # ten classes get distinct colours; more get a colour ramp
        colours = (dict(c=labels, cmap="tab10", vmin=-0.5, vmax=9.5) if labels.max() < 10
                   else dict(c=labels, cmap="viridis"))
    figure = new_figure(3.2 * len(samples), 3.4)
    for i, z in enumerate(samples):
        centred = z - z.mean(0)
        _, singular, vectors = np.linalg.svd(centred, full_matrices=False)
        points = centred @ vectors[:2].T
        if points.shape[1] == 1:  # a one-unit layer: plot against zero
            points = np.concatenate([points, np.zeros_like(points)], axis=1)
        explained = singular[:2] ** 2 / max(float((singular**2).sum()), 1e-300)
        axes = figure.add_subplot(1, len(samples), i + 1)
        scatter = axes.scatter(points[:, 0], points[:, 1], s=4, **colours)
        axes.set_title(f"z_{i + 1}", fontsize=9)
        axes.set_xlabel(f"PC1 ({explained[0]:.0%} of variance)", fontsize=8)
        axes.set_ylabel(f"PC2 ({explained[1] if len(explained) > 1 else 0:.0%})", fontsize=8)
        axes.tick_params(labelsize=7)
    if labels is not None and labels.max() < 10:  # a legend of the classes (digits)
        handles, names = scatter.legend_elements(num=sorted(set(labels.tolist())))
        figure.legend(handles, names, title="label", loc="center right", fontsize=7,
                      title_fontsize=8)
    elif labels is not None:
        figure.colorbar(scatter, ax=figure.axes, label="label")
    figure.suptitle("PCA of posterior samples" + (", coloured by label" if labels is not None else ""))
    figure.tight_layout(rect=(0, 0, 0.93 if labels is not None else 1, 1))
    return save_figure(figure, path)


def plot_training_curves(history, path):
    """Negative ELBO (train, validation), KL per layer and beta per epoch; 1200 x 400 px.

    `history` is a Keras `History` or its `.history` dict (e.g. read back from
    the CSV `lvae train` writes).
    """
    history = getattr(history, "history", history)
    if not isinstance(history, dict) or not history.get("nelbo"):
        raise ValueError("Invalid value for argument `history`: expected a Keras History or "
                         "dict with a non-empty 'nelbo' series, received "
                         f"{sorted(history) if isinstance(history, dict) else type(history).__name__}.")
    epochs = np.arange(1, len(history["nelbo"]) + 1)
    figure = new_figure(12, 4)
    elbo, kl, beta = (figure.add_subplot(1, 3, i) for i in (1, 2, 3))
    elbo.plot(epochs, history["nelbo"], label="train")
    if "val_nelbo" in history:
        elbo.plot(epochs, history["val_nelbo"], label="validation")
    elbo.set(xlabel="epoch", ylabel="negative ELBO [nats]", title="negative ELBO")
    elbo.legend()
    layers = sorted((k for k in history if k.startswith("kl_layer_")), key=lambda k: int(k[9:]))
    for key in layers:
        kl.plot(epochs, history[key], label=f"z_{key[9:]}")
    kl.set(xlabel="epoch", ylabel="KL [nats]", title="KL per layer (train)")
    if layers:
        kl.legend(fontsize=7)
    if "beta" in history:
        beta.plot(epochs, history["beta"])
    beta.set(xlabel="epoch", ylabel="beta", title="KL warm-up weight", ylim=(-0.05, 1.05))
    figure.tight_layout()
    return save_figure(figure, path)


def plot_roc_curves(scores_in, scores_out, path):
    """ROC curve of each out-of-distribution score (`ood_scores` of in and out data;
    out = positive), with its AUROC in the legend; 600 x 500 px."""
    from keras_lvae.ood import separation

    figure = new_figure(6, 5)
    axes = figure.add_subplot()
    for name in scores_in:
        values = np.r_[scores_in[name], scores_out[name]]
        positive = np.r_[np.zeros(len(scores_in[name])), np.ones(len(scores_out[name]))]
        order = np.argsort(-values, kind="mergesort")
        true = np.r_[0, np.cumsum(positive[order])] / positive.sum()
        false = np.r_[0, np.cumsum(1 - positive[order])] / (1 - positive).sum()
        auroc = separation(scores_in[name], scores_out[name])["auroc"]
        axes.plot(false, true, label=f"{name} (AUROC {auroc:.3f})")
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axes.set_xlabel("false positive rate (in-distribution flagged)")
    axes.set_ylabel("true positive rate (out-of-distribution flagged)")
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return save_figure(figure, path)


def plot_score_histograms(scores_in, scores_out, path):
    """One histogram panel per score, in- and out-of-distribution data overlaid;
    300 px wide per score, 300 px high."""
    names = list(scores_in)
    figure = new_figure(3 * len(names), 3)
    for i, name in enumerate(names):
        axes = figure.add_subplot(1, len(names), i + 1)
        both = np.r_[scores_in[name], scores_out[name]]
        bins = np.linspace(both.min(), both.max() + 1e-9, 40)
        axes.hist(scores_in[name], bins=bins, alpha=0.6, label="in")
        axes.hist(scores_out[name], bins=bins, alpha=0.6, label="out")
        axes.set_title(name, fontsize=9)
        axes.tick_params(labelsize=7)
    figure.axes[0].legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, path)
