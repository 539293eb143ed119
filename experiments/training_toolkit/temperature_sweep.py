"""A temperature sweep of prior samples: one row of 10 samples per temperature, the same
seed in every row (issue 19). Usage: python temperature_sweep.py RUN_DIR OUTPUT_PNG"""

import sys

import numpy as np

from keras_lvae import plots
from keras_lvae.training import model_from_checkpoint

TEMPERATURES = (0.0, 0.4, 0.6, 0.8, 0.9, 1.0)


def main(run_dir, output):
    model, _ = model_from_checkpoint(run_dir + "/checkpoint.npz")
    rows = [plots.as_images(model.generate(10, seed=0, temperature=t), model.feature_shape)
            for t in TEMPERATURES]
    figure = plots.new_figure(8, 1 + 0.9 * len(rows))
    axes = figure.add_axes((0.08, 0.01, 0.91, 0.9))
    axes.imshow(plots.image_mosaic(np.concatenate(rows), columns=10), cmap="gray", vmin=0.0,
                vmax=1.0, interpolation="nearest")
    height = rows[0].shape[1]
    axes.set_yticks([i * (height + 1) + height / 2 for i in range(len(rows))],
                    [f"t = {t:g}" for t in TEMPERATURES], fontsize=8)
    axes.set_xticks([])
    for spine in axes.spines.values():
        spine.set_visible(False)
    figure.suptitle("prior samples at temperature t (same seed in every row)", fontsize=9)
    print(plots.save_figure(figure, output))


if __name__ == "__main__":
    main(*sys.argv[1:])
