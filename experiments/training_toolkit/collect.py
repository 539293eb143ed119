"""Copy the issue-19 comparison's records into results/ and print its table (markdown).

Usage, from the repository root after run.sh: python experiments/training_toolkit/collect.py RUNS
"""

import json
import os
import shutil
import sys

import numpy as np

from keras_lvae._files import read_csv

VARIANTS = ("plain", "ema", "kl_balance")
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
KEPT = (("config.json", "config.json"), ("history.csv", "history.csv"),
        ("evaluation/report.json", "report.json"),
        ("evaluation/per_example.csv", "per_example.csv"))


def paired(run, baseline, column):
    """Mean and standard error of the per-digit difference of `column` to the baseline run."""
    def values(folder):
        return np.array(read_csv(os.path.join(folder, "evaluation", "per_example.csv"))[column])
    difference = values(run) - values(baseline)
    return difference.mean(), difference.std(ddof=1) / np.sqrt(len(difference))


def main(runs):
    print("| variant | test L_1 | test L_1000 | paired to plain: L_1, L_1000 | active units "
          "(KL > 0.01), z_1 ... z_5 | training time |")
    print("|---|---|---|---|---|---|")
    for name in VARIANTS:
        run = os.path.join(runs, name)
        if not os.path.isfile(os.path.join(run, "evaluation", "report.json")):
            print(f"| {name} | not finished | | | |")
            continue
        os.makedirs(os.path.join(RESULTS, name), exist_ok=True)
        for source, target in KEPT:
            shutil.copyfile(os.path.join(run, source), os.path.join(RESULTS, name, target))
        with open(os.path.join(run, "evaluation", "report.json")) as f:
            report = json.load(f)
        bounds = report["log_likelihood"]
        k = report["settings"]["samples"]
        active = "/".join(str(layer["active_units_kl"]) for layer in report["latent_layers"])
        seconds = sum(read_csv(os.path.join(run, "history.csv"))["seconds"])
        differences = ", ".join("{:+.2f} ± {:.2f}".format(*paired(run, os.path.join(runs, "plain"),
                                                                  column))
                                for column in ("L_1", f"L_{k}"))
        print(f"| {name} | {bounds['L_1']['mean']:.2f} ± {bounds['L_1']['standard_error']:.2f} | "
              f"{bounds[f'L_{k}']['mean']:.2f} ± {bounds[f'L_{k}']['standard_error']:.2f} | "
              f"{differences} | {active} | {seconds / 60:.0f} min |")


if __name__ == "__main__":
    main(sys.argv[1])
