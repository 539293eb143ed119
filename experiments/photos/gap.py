"""The gap between the training and the test photographs, epoch by epoch: the ELBO (L_1, in
bits/dim, with the moving-average weights) of each kept snapshot of a `photos` run on a
fixed random sample of tiles of each split (the same tiles for every snapshot).

    python experiments/photos/gap.py /work/runs/photos --data-dir ../shared/data

writes experiments/photos/results/gap.csv (epoch, train, test, gap) and prints it. Training
tiles are scored unmirrored, as they are in the photographs.
"""

import argparse
import glob
import os
import re

import numpy as np

import keras_lvae
from keras_lvae import data, training

HERE = os.path.dirname(os.path.abspath(__file__))


def sample(split, data_dir, count, seed=0):
    images, _ = data.load_arrays("photos", split, data_dir)
    chosen = np.random.default_rng(seed).choice(len(images), min(count, len(images)),
                                                replace=False)
    return images[np.sort(chosen)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="the run folder (its snapshots/epoch_<N>.npz)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--tiles", type=int, default=1000, help="tiles of each split")
    parser.add_argument("--output", default=os.path.join(HERE, "results", "gap.csv"))
    args = parser.parse_args()
    tiles = {split: sample(split, args.data_dir, args.tiles) for split in ("train", "test")}
    snapshots = sorted(glob.glob(os.path.join(args.run, "snapshots", "epoch_*.npz")),
                       key=lambda path: int(re.findall(r"\d+", os.path.basename(path))[0]))
    rows = {"epoch": [], "train": [], "test": [], "gap": []}
    for path in snapshots:
        model, epoch = training.model_from_checkpoint(path)
        model.use_ema_weights()
        bits = {split: keras_lvae.bound_report(model, x, num_samples=1, batch_size=100)[
            "bits_per_dim"]["L_1"]["mean"] for split, x in tiles.items()}
        for key, value in (("epoch", epoch), ("train", bits["train"]), ("test", bits["test"]),
                           ("gap", bits["test"] - bits["train"])):
            rows[key].append(value)
        print(f"epoch {epoch}: train {bits['train']:.3f}, test {bits['test']:.3f} bits/dim "
              f"(gap {bits['test'] - bits['train']:+.3f})", flush=True)
    partial = args.output + ".partial"
    with open(partial, "w") as file:
        file.write(",".join(rows) + "\n")
        file.writelines(",".join(f"{v:.6g}" for v in row) + "\n" for row in zip(*rows.values()))
    os.replace(partial, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
