"""Collect the study's numbers for docs/results.md from runs/study/*/.

Reads each run's config.json, history.csv and evaluation/report.json (written by
`lvae evaluate`), prints the markdown tables, copies the per-unit KL heatmaps and
latent PCA plots into docs/results/ and draws the depth sweep. Run from the
repository root after docs/mnist_study.sh and the evaluations:

    python docs/collect_results.py [--runs runs/study] [--output docs/results]
"""

import argparse
import json
import math
import os
import shutil

from keras_lvae import config as config_lib
from keras_lvae._files import read_csv


def load_run(directory):
    """{name, config, history, report} of one run directory (report None if not evaluated)."""
    with open(os.path.join(directory, "config.json")) as file:
        config = config_lib.from_dict(json.load(file))
    history = read_csv(os.path.join(directory, "history.csv"))
    report_path = os.path.join(directory, "evaluation", "report.json")
    report = None
    if os.path.isfile(report_path):
        with open(report_path) as file:
            report = json.load(file)
    return {"name": os.path.basename(directory), "config": config, "history": history,
            "report": report, "directory": directory}


def describe(config):
    """LVAE / VAE with +BN and +WU as in the paper's tables."""
    name = "LVAE" if config.model.inference == "ladder" else "VAE"
    if config.model.batch_norm:
        name += "+BN"
    if config.train.warmup_epochs:
        name += "+WU"
    return name


def bound(report, key):
    value = report["log_likelihood"][key]
    return f"{value['mean']:.2f} ± {value['standard_error']:.2f}"


def row(run):
    """One markdown table row of a run."""
    config, history, report = run["config"], run["history"], run["report"]
    seconds = [s for s in history.get("seconds", []) if not math.isnan(s)]
    timed = f"{sum(seconds) / 60:.0f} min ({len(seconds)} epochs timed)" if seconds else "n/a"
    cells = [run["name"], describe(config), str(len(config.model.latent_dims)),
             str(len(history["epoch"])), timed]
    if report is None:
        return "| " + " | ".join(cells + ["not evaluated"] * 4) + " |"
    k = report["settings"]["samples"]
    active = "/".join(f"{layer['active_units_kl']}" for layer in report["latent_layers"])
    return "| " + " | ".join(cells + [bound(report, "L_1"), f"{bound(report, f'L_{k}')} (k={k})",
                                      bound(report, "bound_gap"), active]) + " |"


HEADER = ("| run | model | layers | epochs | training time | test L_1 | test L_k | gap | "
          "active units (KL > 0.01), z_1/.../z_L |\n|---|---|---|---|---|---|---|---|---|")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/study")
    parser.add_argument("--output", default="docs/results")
    args = parser.parse_args(argv)
    runs = [load_run(os.path.join(args.runs, name)) for name in sorted(os.listdir(args.runs))
            if os.path.isfile(os.path.join(args.runs, name, "config.json"))]
    print(HEADER)
    for run in runs:
        print(row(run))
    os.makedirs(args.output, exist_ok=True)
    for run in runs:
        plots = (run["report"] or {}).get("plots", {})
        for plot in ("kl_per_unit", "latent_pca"):
            if plot in plots:
                shutil.copyfile(os.path.join(run["directory"], "evaluation", plots[plot]),
                                os.path.join(args.output, f"{run['name']}_{plot}.png"))


if __name__ == "__main__":
    main()
