"""A temperature sweep of prior samples (issue 19): one row of 10 samples per temperature, the
same seed in every row; left with the trained batch-norm statistics, right after NVAE's
readjustment at that temperature (`keras_lvae.readjust_batch_norm`, 20 x 256 samples).
Usage: python temperature_sweep.py RUN_DIR OUTPUT_PNG"""

import sys

import numpy as np

import keras_lvae
from keras_lvae import plots
from keras_lvae.training import model_from_checkpoint

TEMPERATURES = (0.0, 0.4, 0.6, 0.8, 0.9, 1.0)


def sweep(run_dir, readjust):
    rows = []
    for t in TEMPERATURES:
        model, _ = model_from_checkpoint(run_dir + "/checkpoint.npz")  # a fresh copy each time
        if readjust:
            keras_lvae.readjust_batch_norm(model, t, seed=1)
        rows.append(plots.as_images(model.generate(10, seed=0, temperature=t),
                                    model.feature_shape))
    return plots.image_mosaic(np.concatenate(rows), columns=10), rows[0].shape[1]


def main(run_dir, output):
    figure = plots.new_figure(12, 1 + 0.7 * len(TEMPERATURES))
    for column, readjust in enumerate((False, True)):
        mosaic, height = sweep(run_dir, readjust)
        axes = figure.add_axes((0.06 + 0.47 * column, 0.01, 0.45, 0.88))
        axes.imshow(mosaic, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        axes.set_yticks([i * (height + 1) + height / 2 for i in range(len(TEMPERATURES))],
                        [f"t = {t:g}" for t in TEMPERATURES] if column == 0 else [], fontsize=8)
        axes.set_xticks([])
        axes.set_title("batch-norm statistics readjusted at t" if readjust
                       else "trained batch-norm statistics", fontsize=9)
        for spine in axes.spines.values():
            spine.set_visible(False)
    figure.suptitle("prior samples at temperature t (same seed in every row)", fontsize=9)
    print(plots.save_figure(figure, output))


if __name__ == "__main__":
    main(*sys.argv[1:])
