"""Print stage 3's table: L_1000 on the first 1,000 test digits of each evaluated snapshot and
its paired difference (mean, standard error over digits) to stage 2's epoch 950.
Reads the archived per_example.csv files; run from anywhere."""

import csv
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def load(path):
    with open(path) as file:
        return np.array([float(row["L_1000"]) for row in csv.DictReader(file)])


base = load(os.path.join(HERE, "..", "lvae5_best_iw5", "snapshots", "epoch_950_evaluation",
                         "per_example.csv"))
print("| epoch | epochs of 10 x 10 | L_1000 | paired difference to epoch 950 |")
print("|---|---|---|---|")
for epoch in range(951, 965):
    path = os.path.join(HERE, "snapshots", f"epoch_{epoch}_evaluation", "per_example.csv")
    if os.path.exists(path):
        values = load(path)
        difference = values - base
        print(f"| {epoch} | {epoch - 950} | {values.mean():.2f} | {difference.mean():+.3f} ± "
              f"{difference.std(ddof=1) / np.sqrt(len(difference)):.3f} |")
