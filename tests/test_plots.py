import os
import re

import numpy as np
import pytest

import keras_lvae
from keras_lvae import plots

RNG = np.random.default_rng(7)
X = (RNG.random((60, 8, 8, 1)) < 0.4).astype("float32")
LABELS = RNG.integers(0, 10, size=60)


@pytest.fixture(scope="module")
def trained():
    model = keras_lvae.LadderVAE(latent_dims=(4, 3, 2), hidden_dims=(16, 8, 8), seed=1)
    model.compile(optimizer="adam")
    history = model.fit(X, validation_data=(X,), batch_size=20, epochs=3, verbose=0)
    return model, history


def check_png(path, size):
    assert os.path.getsize(path) > 1000
    assert plots.png_size(path) == size
    assert not [f for f in os.listdir(os.path.dirname(path)) if f.startswith(".partial-")]


def test_each_plot_is_written_at_its_stated_size(trained, tmp_path):
    model, history = trained
    diagnostics = keras_lvae.latent_diagnostics(model, X)
    check_png(plots.plot_prior_samples(model, tmp_path / "prior.png", num_samples=30), (800, 800))
    check_png(plots.plot_reconstructions(model, X, tmp_path / "recon.png"), (800, 200))
    check_png(plots.plot_layer_variations(model, tmp_path / "layers.png"), (1200, 300))
    check_png(plots.plot_kl_per_layer(diagnostics, tmp_path / "kl.png"), (600, 400))
    check_png(plots.plot_kl_heatmaps(diagnostics, tmp_path / "heat.png"), (800, 400))
    check_png(plots.plot_latent_pca(model, X, tmp_path / "pca.png", labels=LABELS), (960, 340))
    check_png(plots.plot_latent_pca(model, X, tmp_path / "pca2.png"), (960, 340))
    check_png(plots.plot_training_curves(history, tmp_path / "curves.png"), (1200, 400))
    check_png(plots.plot_training_curves(history.history, tmp_path / "curves2.png"), (1200, 400))


def test_flat_square_inputs_are_drawn_as_images(tmp_path):
    model = keras_lvae.LadderVAE(latent_dims=(2,), hidden_dims=(8,), seed=1)
    model(X.reshape(60, 64))
    check_png(plots.plot_reconstructions(model, X.reshape(60, 64), tmp_path / "r.png"), (800, 200))


def test_bad_inputs(trained, tmp_path):
    model, _ = trained
    with pytest.raises(ValueError, match="`labels`"):
        plots.plot_latent_pca(model, X, tmp_path / "p.png", labels=LABELS[:5])
    with pytest.raises(ValueError, match="`history`"):
        plots.plot_training_curves({"loss": [1.0]}, tmp_path / "c.png")
    with pytest.raises(ValueError, match="`images`"):
        plots.plot_reconstructions(model, X[:0], tmp_path / "r.png")
    flat = keras_lvae.LadderVAE(latent_dims=(2,), hidden_dims=(8,), seed=1)
    flat(np.zeros((2, 10), "float32"))
    with pytest.raises(ValueError, match=r"shape \(10,\) as images"):
        plots.plot_prior_samples(flat, tmp_path / "s.png")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_png_size_refuses_other_files(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not a png at all, really not")
    with pytest.raises(ValueError, match="Not a PNG"):
        plots.png_size(tmp_path / "x.png")


def test_latent_pca_and_kl_per_layer_say_what_they_show(trained, tmp_path, monkeypatch):
    """The PCA figure has a legend of the labels and PC axes with their explained variance;
    the KL figure states the active-unit threshold."""
    model, _ = trained
    figures = []
    real_save = plots.save_figure
    monkeypatch.setattr(plots, "save_figure",
                        lambda figure, path: figures.append(figure) or real_save(figure, path))
    plots.plot_latent_pca(model, X, tmp_path / "pca.png", labels=LABELS)
    plots.plot_kl_per_layer(keras_lvae.latent_diagnostics(model, X), tmp_path / "kl.png",
                            threshold=0.05)
    pca, kl = figures
    (legend,) = pca.legends
    assert legend.get_title().get_text() == "label"
    # Entries read "$\\mathdefault{3}$" (matplotlib's mathtext): the digits are the labels.
    entries = sorted(int(re.sub(r"\D", "", t.get_text())) for t in legend.get_texts())
    assert entries == sorted(set(LABELS.tolist()))
    for axes in pca.axes:
        assert axes.get_xlabel().startswith("PC1 (") and "% of variance" in axes.get_xlabel()
        assert axes.get_ylabel().startswith("PC2 (")
    assert "unit KL > 0.05 nats" in kl.axes[0].get_title()
